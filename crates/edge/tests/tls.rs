//! HTTPS on the edge: each service's certificate chosen by SNI, handshakes refused for
//! names without one, h2 or HTTP/1.1 by ALPN, certificates replaced by a new snapshot
//! without a restart, and requests for another service's Host on a connection answered 421.
//! Certificates are made here with rcgen; the origin is the demo origin.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use common::pki::Ca;
use common::snapshot;
use lingjing_demo::{OriginConfig, OriginHandle};
use lingjing_edge::tls::CertStore;
use lingjing_edge::{Edge, EdgeConfig, EdgeHandle};
use lingjing_model::{Service, TlsCertificate};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Service `id` for `hosts` (tenant `tenant-{id}`) on `origin`, with certificate `tls`.
fn service(id: &str, hosts: &[&str], origin: SocketAddr, tls: Option<TlsCertificate>) -> Service {
    let mut svc = common::service(id, hosts[0], vec![common::origin(origin)]);
    svc.tenant = format!("tenant-{id}");
    svc.hostnames = hosts.iter().map(|h| (*h).to_owned()).collect();
    svc.tls = tls;
    svc
}

/// The certificates of the services of the first snapshot.
struct Certs {
    ca: Ca,
    a: (TlsCertificate, Vec<u8>),
    b: (TlsCertificate, Vec<u8>),
    w: (TlsCertificate, Vec<u8>),
}

impl Certs {
    fn new() -> Certs {
        let ca = Ca::new("Lingjing test CA 1");
        let a = ca.leaf(&["a.test"]);
        let b = ca.leaf(&["b.test"]);
        let w = ca.leaf(&["*.w.test"]);
        Certs { ca, a, b, w }
    }

    /// Services `a` (a.test), `b` (b.test), `w` (*.w.test), `plain` (plain.w.test, no
    /// certificate) and `broken` (broken.test, a certificate that does not load).
    fn services(&self, origin: SocketAddr) -> Vec<Service> {
        vec![
            service("a", &["a.test"], origin, Some(self.a.0.clone())),
            service("b", &["b.test"], origin, Some(self.b.0.clone())),
            service("w", &["*.w.test"], origin, Some(self.w.0.clone())),
            service("plain", &["plain.w.test"], origin, None),
            service(
                "broken",
                &["broken.test"],
                origin,
                Some(TlsCertificate {
                    cert_pem:
                        "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n"
                            .to_owned(),
                    key_pem: self.a.0.key_pem.clone(),
                }),
            ),
        ]
    }
}

struct Setup {
    origin: OriginHandle,
    edge: Arc<Edge>,
    handle: EdgeHandle,
    certs: Certs,
}

impl Setup {
    async fn start() -> Setup {
        let origin = lingjing_demo::serve(OriginConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..Default::default()
        })
        .await
        .unwrap();
        let certs = Certs::new();
        let local: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let mut config = EdgeConfig::new("tls-1", local, local);
        config.https = vec![local];
        config.access_log = false;
        let edge = Edge::new(&config);
        edge.apply(&snapshot(1, certs.services(origin.addr())))
            .unwrap();
        let handle = lingjing_edge::start(&config, edge.clone()).await.unwrap();
        Setup {
            origin,
            edge,
            handle,
            certs,
        }
    }

    fn https(&self) -> SocketAddr {
        self.handle.https_addrs()[0]
    }

    /// A client trusting only `ca_pem` that resolves `hosts` to the HTTPS listener.
    fn client(&self, ca_pem: &str, hosts: &[&str], http1_only: bool) -> reqwest::Client {
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
            .tls_info(true)
            .no_proxy();
        for host in hosts {
            builder = builder.resolve(host, self.https());
        }
        if http1_only {
            builder = builder.http1_only();
        }
        builder.build().unwrap()
    }

    fn url(&self, host: &str, path: &str) -> String {
        format!("https://{host}:{}{path}", self.https().port())
    }

    async fn stop(self) {
        self.handle.shutdown().await;
        self.origin.shutdown().await.unwrap();
    }
}

/// The DER of the certificate the server presented.
fn peer_certificate(res: &reqwest::Response) -> Vec<u8> {
    res.extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|i| i.peer_certificate())
        .unwrap()
        .to_vec()
}

#[tokio::test]
async fn sni_selects_the_certificate_of_each_service() -> TestResult {
    let s = Setup::start().await;
    let client = s.client(&s.certs.ca.pem(), &["a.test", "b.test", "x.w.test"], false);
    for (host, der) in [
        ("a.test", &s.certs.a.1),
        ("b.test", &s.certs.b.1),
        ("x.w.test", &s.certs.w.1),
    ] {
        let res = client.get(s.url(host, "/")).send().await?;
        assert_eq!(res.status(), 200, "{host}");
        assert_eq!(
            &peer_certificate(&res),
            der,
            "{host} got another certificate"
        );
        assert_eq!(res.headers()["x-origin"], lingjing_demo::ORIGIN_NAME);
        res.bytes().await?;
    }
    assert!(s.origin.requests("/") >= 1);
    s.stop().await;
    Ok(())
}

#[tokio::test]
async fn names_without_a_certificate_fail_the_handshake() -> TestResult {
    let s = Setup::start().await;
    // c.test: no service; plain.w.test: a service without a certificate (it must not get
    // the *.w.test service's); broken.test: a certificate that did not load.
    let client = s.client(
        &s.certs.ca.pem(),
        &["c.test", "plain.w.test", "broken.test"],
        false,
    );
    for host in ["c.test", "plain.w.test", "broken.test"] {
        let err = client.get(s.url(host, "/")).send().await.expect_err(host);
        assert!(err.is_connect(), "{host}: {err:?}");
    }
    // No SNI at all (an IP address): no certificate either.
    let err = client
        .get(format!("https://{}/", s.https()))
        .send()
        .await
        .expect_err("no SNI");
    assert!(err.is_connect(), "{err:?}");
    // The listener and the other services are unaffected.
    let ok = s.client(&s.certs.ca.pem(), &["a.test"], false);
    assert_eq!(ok.get(s.url("a.test", "/")).send().await?.status(), 200);
    s.stop().await;
    Ok(())
}

#[tokio::test]
async fn alpn_negotiates_h2_or_http11() -> TestResult {
    let s = Setup::start().await;
    let h2 = s.client(&s.certs.ca.pem(), &["a.test"], false);
    let res = h2.get(s.url("a.test", "/")).send().await?;
    assert_eq!(res.status(), 200);
    assert_eq!(res.version(), reqwest::Version::HTTP_2);
    res.bytes().await?;
    let h1 = s.client(&s.certs.ca.pem(), &["a.test"], true);
    let res = h1.get(s.url("a.test", "/")).send().await?;
    assert_eq!(res.status(), 200);
    assert_eq!(res.version(), reqwest::Version::HTTP_11);
    res.bytes().await?;
    // TLS 1.2 clients are served too.
    let tls12 = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(s.certs.ca.pem().as_bytes())?)
        .max_tls_version(reqwest::tls::Version::TLS_1_2)
        .resolve("a.test", s.https())
        .no_proxy()
        .build()?;
    let res = tls12.get(s.url("a.test", "/")).send().await?;
    assert_eq!(res.status(), 200);
    assert_eq!(res.version(), reqwest::Version::HTTP_2);
    s.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_new_snapshot_replaces_certificates_without_a_restart() -> TestResult {
    let s = Setup::start().await;
    let old = s.client(&s.certs.ca.pem(), &["a.test", "b.test"], false);
    assert_eq!(
        peer_certificate(&old.get(s.url("a.test", "/")).send().await?),
        s.certs.a.1
    );

    let ca2 = Ca::new("Lingjing test CA 2");
    let (a2, a2_der) = ca2.leaf(&["a.test"]);
    let mut services = s.certs.services(s.origin.addr());
    services[0].tls = Some(a2);
    s.edge.apply(&snapshot(2, services))?;

    // A new connection gets the new certificate, from the same listener.
    let new = s.client(&ca2.pem(), &["a.test"], false);
    let res = new.get(s.url("a.test", "/")).send().await?;
    assert_eq!(res.status(), 200);
    assert_eq!(peer_certificate(&res), a2_der);
    // A client that trusts only the old CA no longer accepts a.test, still accepts b.test.
    let fresh_old = s.client(&s.certs.ca.pem(), &["a.test", "b.test"], false);
    let err = fresh_old
        .get(s.url("a.test", "/"))
        .send()
        .await
        .expect_err("old CA");
    assert!(err.is_connect(), "{err:?}");
    let res = fresh_old.get(s.url("b.test", "/")).send().await?;
    assert_eq!(peer_certificate(&res), s.certs.b.1);
    s.stop().await;
    Ok(())
}

#[tokio::test]
async fn another_services_host_on_a_connection_is_misdirected() -> TestResult {
    let s = Setup::start().await;
    let client = s.client(&s.certs.ca.pem(), &["a.test"], true);
    let res = client
        .get(s.url("a.test", "/"))
        .header("host", "b.test")
        .send()
        .await?;
    assert_eq!(res.status(), 421);
    // Same service (another spelling of the name): served.
    let res = client
        .get(s.url("a.test", "/"))
        .header("host", "A.TEST")
        .send()
        .await?;
    assert_eq!(res.status(), 200);
    s.stop().await;
    Ok(())
}

#[test]
fn store_skips_broken_certificates_and_reuses_unchanged_ones() {
    let certs = Certs::new();
    let origin: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let provider = lingjing_edge::tls::default_provider();
    let first = CertStore::build(&certs.services(origin), &provider, None);
    assert_eq!(first.len(), 3, "a, b and w load; broken does not");
    assert!(first.lookup("a.test").is_some());
    assert!(first.lookup("A.Test.").is_some());
    assert!(first.lookup("deep.x.w.test").is_some());
    assert!(first.lookup("w.test").is_none());
    assert!(first.lookup("plain.w.test").is_none());
    assert!(first.lookup("broken.test").is_none());
    assert!(first.lookup("c.test").is_none());
    let debug = format!("{first:?}");
    assert!(!debug.contains("PRIVATE KEY"), "{debug}");

    let second = CertStore::build(&certs.services(origin), &provider, Some(&first));
    assert!(Arc::ptr_eq(
        &first.lookup("a.test").unwrap(),
        &second.lookup("a.test").unwrap()
    ));

    // A key that does not belong to the certificate is refused.
    let mismatched = service(
        "m",
        &["m.test"],
        origin,
        Some(TlsCertificate {
            cert_pem: certs.a.0.cert_pem.clone(),
            key_pem: certs.b.0.key_pem.clone(),
        }),
    );
    let err = lingjing_edge::tls::load_certified_key(mismatched.tls.as_ref().unwrap(), &provider)
        .err()
        .unwrap();
    assert!(err.contains("does not match"), "{err}");
    let store = CertStore::build(&[mismatched], &provider, None);
    assert!(store.is_empty());
}
