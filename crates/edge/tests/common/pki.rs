//! Test certificates and a TLS origin: a certificate authority made with rcgen
//! ([`Ca`]), and [`TlsOrigin`], an HTTPS origin on loopback that speaks HTTP/2 or
//! HTTP/1.1 by ALPN and records what each request arrived with (SNI, protocol version,
//! Host or `:authority`) and how many connections it accepted.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use lingjing_model::TlsCertificate;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A test certificate authority.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("CA key");
        let issuer = CertifiedIssuer::self_signed(params, key).expect("CA certificate");
        Ca { issuer }
    }

    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A leaf certificate for `names` (chain: leaf, then this CA) and the leaf's DER.
    pub fn leaf(&self, names: &[&str]) -> (TlsCertificate, Vec<u8>) {
        let key = KeyPair::generate().expect("leaf key");
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names.clone()).expect("leaf params");
        params
            .distinguished_name
            .push(DnType::CommonName, names[0].as_str());
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("leaf certificate");
        let tls = TlsCertificate {
            cert_pem: format!("{}{}", cert.pem(), self.pem()),
            key_pem: key.serialize_pem(),
        };
        (tls, cert.der().to_vec())
    }
}

/// What one request reached the TLS origin with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSeen {
    /// The SNI name of its connection.
    pub sni: Option<String>,
    /// `HTTP/2.0` or `HTTP/1.1`.
    pub version: String,
    /// The Host header, or HTTP/2's `:authority`.
    pub host: String,
    pub path: String,
}

/// An HTTPS origin on 127.0.0.1 serving `cert`, offering `alpn` (e.g. `["h2",
/// "http/1.1"]`). Every answer is `200`, `Cache-Control: max-age=60`, body `tls origin
/// {path}`.
pub struct TlsOrigin {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<TlsSeen>>>,
    connections: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl TlsOrigin {
    pub async fn start(cert: &TlsCertificate, alpn: &[&str]) -> TlsOrigin {
        let certs = CertificateDer::pem_slice_iter(cert.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .expect("certificate PEM");
        let key = PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).expect("key PEM");
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server certificate");
        config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicU64::new(0));
        let task = {
            let seen = seen.clone();
            let connections = connections.clone();
            tokio::spawn(async move {
                while let Ok((tcp, _)) = listener.accept().await {
                    connections.fetch_add(1, Ordering::SeqCst);
                    let acceptor = acceptor.clone();
                    let seen = seen.clone();
                    tokio::spawn(async move {
                        let Ok(tls) = acceptor.accept(tcp).await else {
                            return;
                        };
                        let sni = tls.get_ref().1.server_name().map(str::to_owned);
                        let service =
                            service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                                let host = req
                                    .headers()
                                    .get(http::header::HOST)
                                    .and_then(|h| h.to_str().ok())
                                    .map(str::to_owned)
                                    .or_else(|| req.uri().authority().map(|a| a.to_string()))
                                    .unwrap_or_default();
                                let path = req.uri().path().to_owned();
                                seen.lock().expect("seen").push(TlsSeen {
                                    sni: sni.clone(),
                                    version: format!("{:?}", req.version()),
                                    host,
                                    path: path.clone(),
                                });
                                async move {
                                    hyper::Response::builder()
                                        .header("cache-control", "max-age=60")
                                        .body(http_body_util::Full::new(bytes::Bytes::from(
                                            format!("tls origin {path}"),
                                        )))
                                }
                            });
                        let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                            .serve_connection(TokioIo::new(tls), service)
                            .await;
                    });
                }
            })
        };
        TlsOrigin {
            addr,
            seen,
            connections,
            task,
        }
    }

    /// Every request so far, in arrival order.
    pub fn seen(&self) -> Vec<TlsSeen> {
        self.seen.lock().expect("seen").clone()
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for TlsOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}
