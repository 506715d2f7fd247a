//! TLS towards upstreams: origins over HTTPS, and parent caches for services that have a
//! certificate.
//!
//! Each distinct (address to connect to, trust) pair gets a pooled client of its own
//! ([`TlsClients`]). The request URI carries the *Host* the upstream should see
//! (`https://www.example.com/path`), so that the SNI name, the name the certificate is
//! checked against and HTTP/2's `:authority` are all that host; the connector underneath
//! ([`FixedAddress`]) connects to the client's one address whatever the URI says. HTTP/2
//! is used when the upstream picks it in ALPN.
//!
//! Trust ([`Trust`]): origins are checked against the public roots (the operating
//! system's store, or the bundled Mozilla set where the system has none) plus the
//! service's own CA certificates; an origin may turn checking off explicitly. A parent is
//! trusted only if it presents exactly the service's certificate (pinned), which only a
//! platform node given that certificate by the control plane holds.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::body::Body;

/// Most pooled TLS clients kept; past it the pools are dropped and rebuilt on demand (a
/// tenant cannot grow the edge's memory by listing many TLS origins).
const MAX_CLIENTS: usize = 4096;

/// How an upstream's certificate is checked.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Trust {
    /// Public roots, plus the service's own CA certificates if it has any.
    Roots { extra_ca: Option<Pem> },
    /// Any certificate (the origin's explicit `tls_skip_verify`).
    SkipVerify,
    /// Exactly this certificate (the first of the PEM chain): a parent serving the
    /// service's certificate.
    Pinned(Pem),
}

/// PEM text, shared, compared and hashed by its SHA-256: made once per snapshot, so that
/// finding a request's pooled client costs a 32-byte hash, not one over a CA bundle of up
/// to 256 KiB.
#[derive(Debug, Clone)]
pub struct Pem {
    text: Arc<str>,
    digest: [u8; 32],
}

impl Pem {
    pub fn new(text: &str) -> Pem {
        use sha2::Digest;
        Pem {
            text: Arc::from(text),
            digest: sha2::Sha256::digest(text.as_bytes()).into(),
        }
    }
}

impl PartialEq for Pem {
    fn eq(&self, other: &Pem) -> bool {
        self.digest == other.digest
    }
}

impl Eq for Pem {}

impl std::hash::Hash for Pem {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.digest.hash(state);
    }
}

/// A connector that connects to one address whatever the request URI names (the URI
/// carries the upstream's host name for SNI and `:authority`).
#[derive(Clone)]
pub struct FixedAddress<C> {
    inner: C,
    address: Uri,
}

impl<C> tower_service::Service<Uri> for FixedAddress<C>
where
    C: tower_service::Service<Uri>,
{
    type Response = C::Response;
    type Error = C::Error;
    type Future = C::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), C::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, _uri: Uri) -> C::Future {
        self.inner.call(self.address.clone())
    }
}

type TlsClient<C> = Client<HttpsConnector<FixedAddress<C>>, Body>;

/// Pooled TLS clients, one per (address, trust), over the plain connector `C` (the origin
/// policy's connector for origins, a plain one for parents).
pub struct TlsClients<C> {
    connector: C,
    clients: Mutex<HashMap<(String, Trust), TlsClient<C>>>,
}

/// Why no TLS client could be made.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("the service's origin_ca_pem holds no usable CA certificate: {0}")]
    BadCa(String),
    #[error("the service's certificate cannot be read to check the parent: {0}")]
    BadPin(String),
    #[error("upstream address `{0}` is not host:port")]
    BadAddress(String),
    #[error("TLS client configuration: {0}")]
    Config(String),
}

impl<C> TlsClients<C>
where
    C: tower_service::Service<Uri> + Clone + Send + Sync + 'static,
    C::Response: hyper_util::client::legacy::connect::Connection
        + hyper::rt::Read
        + hyper::rt::Write
        + Send
        + Unpin
        + 'static,
    C::Future: Send + 'static,
    C::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    pub fn new(connector: C) -> TlsClients<C> {
        TlsClients {
            connector,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// The pooled client that connects to `address` (`host:port`) and checks the
    /// certificate by `trust`.
    pub fn client(&self, address: &str, trust: &Trust) -> Result<TlsClient<C>, TlsSetupError> {
        let key = (address.to_owned(), trust.clone());
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = clients.get(&key) {
            return Ok(c.clone());
        }
        let config = client_config(trust)?;
        let address_uri: Uri = format!("http://{address}")
            .parse()
            .map_err(|_| TlsSetupError::BadAddress(address.to_owned()))?;
        let https = HttpsConnector::from((
            FixedAddress {
                inner: self.connector.clone(),
                address: address_uri,
            },
            config,
        ));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(256)
            .build(https);
        if clients.len() >= MAX_CLIENTS {
            clients.clear();
        }
        clients.insert(key, client.clone());
        Ok(client)
    }

    /// Drops every pooled client (in-flight requests keep their connections).
    pub fn reset(&self) {
        self.clients
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}

fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// The public roots: the operating system's store, or the bundled Mozilla set when the
/// system has none (a minimal container). Loaded once.
pub fn public_roots() -> Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let mut roots = RootCertStore::empty();
            let native = rustls_native_certs::load_native_certs();
            let (added, _ignored) = roots.add_parsable_certificates(native.certs);
            if added == 0 {
                roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
                tracing::info!(
                    roots = roots.len(),
                    "no system CA certificates found; origins are checked against the bundled Mozilla roots"
                );
            } else {
                tracing::info!(roots = added, "origins are checked against the system's CA certificates");
            }
            Arc::new(roots)
        })
        .clone()
}

/// Every certificate in `pem`, or why none could be read.
fn pem_certs(pem: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    if certs.is_empty() {
        return Err("no CERTIFICATE block".to_owned());
    }
    Ok(certs)
}

/// The rustls client configuration for `trust`, offering HTTP/2 and HTTP/1.1 in ALPN.
pub fn client_config(trust: &Trust) -> Result<ClientConfig, TlsSetupError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsSetupError::Config(e.to_string()))?;
    let mut config = match trust {
        Trust::Roots { extra_ca: None } => builder
            .with_root_certificates(public_roots())
            .with_no_client_auth(),
        Trust::Roots {
            extra_ca: Some(pem),
        } => {
            let mut roots = (*public_roots()).clone();
            let certs = pem_certs(&pem.text).map_err(TlsSetupError::BadCa)?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(TlsSetupError::BadCa(
                    "no certificate in it is a usable trust anchor".to_owned(),
                ));
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        Trust::SkipVerify => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Verifier {
                pinned: None,
                provider: provider(),
            }))
            .with_no_client_auth(),
        Trust::Pinned(pem) => {
            let leaf = pem_certs(&pem.text)
                .map_err(TlsSetupError::BadPin)?
                .swap_remove(0);
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Verifier {
                    pinned: Some(leaf),
                    provider: provider(),
                }))
                .with_no_client_auth()
        }
    };
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Accepts the pinned certificate only (or, without a pin, any certificate); the
/// handshake's signatures are always checked, so the peer must hold the key.
#[derive(Debug)]
struct Verifier {
    pinned: Option<CertificateDer<'static>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match &self.pinned {
            Some(pin) if pin.as_ref() != end_entity.as_ref() => {
                Err(rustls::Error::InvalidCertificate(
                    rustls::CertificateError::ApplicationVerificationFailure,
                ))
            }
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
