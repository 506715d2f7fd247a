//! TLS for the HTTPS listeners: each service's certificate from the edge snapshot, chosen
//! by SNI, and the rustls server configuration (TLS 1.2 and 1.3, ALPN `h2` and
//! `http/1.1`).
//!
//! [`Certificates`] holds the current [`CertStore`] behind an `ArcSwap`: `Edge::apply`
//! swaps in the store built from each new snapshot, and every later handshake uses it, so
//! certificates are replaced without a restart. A name that no service serves, a service
//! without a certificate (or with one that did not load), or a ClientHello without SNI gets
//! no certificate and the handshake fails: an edge never answers with another tenant's
//! certificate.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use lingjing_model::{Service, TlsCertificate};
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// ALPN protocols offered, in order of preference.
pub const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// A loaded certificate, remembered with the PEM it came from so that an unchanged
/// certificate is not parsed again (nor warned about again) on every snapshot.
#[derive(Clone)]
struct Loaded {
    pem: TlsCertificate,
    /// `None`: the PEM did not load (already logged).
    key: Option<Arc<CertifiedKey>>,
}

/// Leaves the PEM (and so the private key) out.
impl std::fmt::Debug for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loaded")
            .field("loaded", &self.key.is_some())
            .finish_non_exhaustive()
    }
}

/// SNI name -> certificate, for one snapshot. Names are matched like `routes::Routes`
/// matches Hosts: exact names first, then `*.suffix` wildcards, longest suffix first; a
/// name of a service without a usable certificate maps to no certificate (it does not fall
/// through to a wildcard of another service).
#[derive(Debug, Default)]
pub struct CertStore {
    exact: HashMap<String, Option<Arc<CertifiedKey>>>,
    /// `*.example.com` entries, stored as `.example.com`.
    wildcard: Vec<(String, Option<Arc<CertifiedKey>>)>,
    /// Service id -> its certificate, for reuse by the next build.
    loaded: HashMap<String, Loaded>,
}

impl CertStore {
    /// Loads the certificate of every service of `services` that has one. A certificate that
    /// does not load is logged (with the service id and the reason) and left out; it never
    /// fails the whole store. Certificates whose PEM is unchanged since `previous` are
    /// reused as they are.
    pub fn build(
        services: &[Service],
        provider: &CryptoProvider,
        previous: Option<&CertStore>,
    ) -> CertStore {
        let mut store = CertStore::default();
        for service in services {
            let key = match &service.tls {
                None => None,
                Some(pem) => {
                    let reused = previous
                        .and_then(|p| p.loaded.get(&service.id))
                        .filter(|l| l.pem == *pem);
                    let loaded = match reused {
                        Some(l) => l.clone(),
                        None => {
                            let key = match load_certified_key(pem, provider) {
                                Ok(k) => Some(Arc::new(k)),
                                Err(reason) => {
                                    tracing::warn!(
                                        service = %service.id,
                                        %reason,
                                        "TLS certificate of the service not loaded: its hostnames get no HTTPS"
                                    );
                                    None
                                }
                            };
                            Loaded {
                                pem: pem.clone(),
                                key,
                            }
                        }
                    };
                    let key = loaded.key.clone();
                    store.loaded.insert(service.id.clone(), loaded);
                    key
                }
            };
            for host in &service.hostnames {
                let host = host.to_ascii_lowercase();
                match host.strip_prefix('*') {
                    Some(suffix) => store.wildcard.push((suffix.to_owned(), key.clone())),
                    None => {
                        store.exact.insert(host, key.clone());
                    }
                }
            }
        }
        // Longest suffix first, so the most specific wildcard wins.
        store
            .wildcard
            .sort_by_key(|(s, _)| std::cmp::Reverse(s.len()));
        store
    }

    /// The certificate for the SNI name `name` (case and a trailing dot ignored).
    pub fn lookup(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        let name = name.trim_end_matches('.');
        let lower;
        let name = if name.bytes().any(|b| b.is_ascii_uppercase()) {
            lower = name.to_ascii_lowercase();
            lower.as_str()
        } else {
            name
        };
        if let Some(k) = self.exact.get(name) {
            return k.clone();
        }
        self.wildcard
            .iter()
            .find(|(suffix, _)| name.ends_with(suffix.as_str()) && name.len() > suffix.len())
            .and_then(|(_, k)| k.clone())
    }

    /// How many services have a loaded certificate.
    pub fn len(&self) -> usize {
        self.loaded.values().filter(|l| l.key.is_some()).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The certificates an edge node serves, replaced per snapshot; the server certificate
/// resolver of every HTTPS listener.
#[derive(Debug)]
pub struct Certificates {
    provider: Arc<CryptoProvider>,
    store: ArcSwap<CertStore>,
}

impl Default for Certificates {
    fn default() -> Self {
        Certificates::new(default_provider())
    }
}

impl Certificates {
    /// No certificates yet, loading keys with `provider`.
    pub fn new(provider: Arc<CryptoProvider>) -> Certificates {
        Certificates {
            provider,
            store: ArcSwap::from_pointee(CertStore::default()),
        }
    }

    /// Takes the certificates of a new snapshot's services. Handshakes in progress finish
    /// with the certificate they chose; new ones use the new store.
    pub fn update(&self, services: &[Service]) {
        let previous = self.store.load_full();
        let store = CertStore::build(services, &self.provider, Some(previous.as_ref()));
        self.store.store(Arc::new(store));
    }

    /// The current store.
    pub fn current(&self) -> Arc<CertStore> {
        self.store.load_full()
    }

    pub fn provider(&self) -> &Arc<CryptoProvider> {
        &self.provider
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = hello.server_name()?;
        self.store.load().lookup(name)
    }
}

/// The process-wide rustls crypto provider if one is installed, else *ring*.
pub fn default_provider() -> Arc<CryptoProvider> {
    CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()))
}

/// Parses a PEM certificate chain (end-entity certificate first) and private key, and
/// checks that they belong together.
pub fn load_certified_key(
    pem: &TlsCertificate,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, String> {
    let chain = CertificateDer::pem_slice_iter(pem.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("certificate chain: {e}"))?;
    if chain.is_empty() {
        return Err("certificate chain: no certificate in the PEM".to_owned());
    }
    let key = PrivateKeyDer::from_pem_slice(pem.key_pem.as_bytes())
        .map_err(|e| format!("private key: {e}"))?;
    CertifiedKey::from_der(chain, key, provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => {
            "the private key does not match the certificate".to_owned()
        }
        e => format!("private key: {e}"),
    })
}

/// The rustls configuration of the HTTPS listeners: TLS 1.2 and 1.3, certificates from
/// `certs` by SNI, ALPN `h2` then `http/1.1`, rustls' default session resumption.
pub fn server_config(certs: Arc<Certificates>) -> Result<Arc<ServerConfig>, rustls::Error> {
    let mut config = ServerConfig::builder_with_provider(certs.provider().clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(certs);
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}
