//! TLS towards upstreams, end to end on loopback: an HTTPS origin with a certificate from a
//! test CA, reached over HTTP/2 (or HTTP/1.1 when that is all it offers) with the SNI and
//! certificate name of the host header, checked against the service's CA bundle (refused
//! without it, or for another name; accepted without checking only when the origin says
//! `tls_skip_verify`), pooled; and a parent cache reached over TLS for a service that has
//! a certificate, trusted only when it presents exactly that certificate.

mod common;

use common::pki::{Ca, TlsOrigin};
use common::*;
use lingjing_model::snapshot::{EdgeSnapshot, Snapshot};
use lingjing_model::{Origin, TlsCertificate};

/// A TLS origin at `origin` with `host_header`.
fn tls_origin(origin: &TlsOrigin, host_header: Option<&str>, skip_verify: bool) -> Origin {
    Origin {
        tls: true,
        tls_skip_verify: skip_verify,
        host_header: host_header.map(str::to_owned),
        ..common::origin(origin.addr)
    }
}

/// A snapshot serving [`HOST`] from `origin`, trusting `ca` for it.
fn tls_snapshot(origin: Origin, ca: Option<String>) -> Snapshot<EdgeSnapshot> {
    let mut svc = service("svc-tls", HOST, vec![origin]);
    svc.origin_ca_pem = ca;
    snapshot(1, vec![svc])
}

/// A fresh test CA and a TLS origin (h2 or HTTP/1.1) with its certificate for
/// `origin.test`.
async fn origin_test() -> (Ca, TlsOrigin) {
    let ca = Ca::new("origin test CA");
    let (cert, _) = ca.leaf(&["origin.test"]);
    let origin = TlsOrigin::start(&cert, &["h2", "http/1.1"]).await;
    (ca, origin)
}

/// [`origin_test`] and a snapshot that reaches it as `origin.test`, trusting its CA.
async fn trusted_origin() -> (TlsOrigin, Snapshot<EdgeSnapshot>) {
    let (ca, origin) = origin_test().await;
    let snap = tls_snapshot(
        tls_origin(&origin, Some("origin.test"), false),
        Some(ca.pem()),
    );
    (origin, snap)
}

#[tokio::test]
async fn an_https_origin_is_checked_with_the_service_ca_and_reached_over_h2() {
    let (origin, snap) = trusted_origin().await;
    let edge = TestEdge::start("edge-1", &snap).await;
    let client = edge.client(&[HOST]);

    let got = get(&client, &edge.url(HOST, "/a")).await;
    assert_eq!((got.status, got.x_cache()), (200, "MISS"), "{}", got.text());
    assert_eq!(got.text(), "tls origin /a");
    let got = get(&client, &edge.url(HOST, "/a")).await;
    assert_eq!((got.status, got.x_cache()), (200, "HIT"));
    let got = get(&client, &edge.url(HOST, "/b")).await;
    assert_eq!((got.status, got.text().as_str()), (200, "tls origin /b"));

    let seen = origin.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    for s in &seen {
        assert_eq!(s.sni.as_deref(), Some("origin.test"), "{s:?}");
        assert_eq!(s.version, "HTTP/2.0", "{s:?}");
        assert_eq!(s.host, "origin.test", "{s:?}");
    }
    assert_eq!(
        origin.connections(),
        1,
        "the second miss reused the pooled connection"
    );
    edge.shutdown().await;
}

#[tokio::test]
async fn an_http1_only_origin_gets_http1_and_the_clients_host_as_sni() {
    let ca = Ca::new("origin test CA");
    let (cert, _) = ca.leaf(&[HOST]);
    let origin = TlsOrigin::start(&cert, &["http/1.1"]).await;
    let snap = tls_snapshot(tls_origin(&origin, None, false), Some(ca.pem()));
    let edge = TestEdge::start("edge-1", &snap).await;
    let client = edge.client(&[HOST]);
    for path in ["/one", "/two"] {
        let got = get(&client, &edge.url(HOST, path)).await;
        assert_eq!(got.status, 200, "{}", got.text());
    }
    let seen = origin.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    for s in &seen {
        assert_eq!(s.sni.as_deref(), Some(HOST), "{s:?}");
        assert_eq!(s.version, "HTTP/1.1", "{s:?}");
        assert_eq!(s.host, HOST, "{s:?}");
    }
    assert_eq!(origin.connections(), 1, "keep-alive over TLS");
    edge.shutdown().await;
}

#[tokio::test]
async fn an_origin_certificate_that_does_not_check_out_is_refused() {
    let (ca, origin) = origin_test().await;

    // No CA bundle: the test CA is not a public root.
    let edge = TestEdge::start(
        "edge-1",
        &tls_snapshot(tls_origin(&origin, Some("origin.test"), false), None),
    )
    .await;
    let client = edge.client(&[HOST]);
    let got = get(&client, &edge.url(HOST, "/x")).await;
    assert_eq!(got.status, 502, "{}", got.text());
    assert!(got.text().contains("certificate"), "{}", got.text());

    // The CA, but a host header the certificate does not name.
    edge.apply(&tls_snapshot(
        tls_origin(&origin, Some("other.test"), false),
        Some(ca.pem()),
    ));
    let got = get(&client, &edge.url(HOST, "/y")).await;
    assert_eq!(got.status, 502, "{}", got.text());
    assert!(got.text().contains("certificate"), "{}", got.text());

    // A CA bundle that holds no certificate at all is named as the cause.
    edge.apply(&tls_snapshot(
        tls_origin(&origin, Some("origin.test"), false),
        Some("-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n".to_owned()),
    ));
    let got = get(&client, &edge.url(HOST, "/z")).await;
    assert_eq!(got.status, 502, "{}", got.text());
    assert!(got.text().contains("origin_ca_pem"), "{}", got.text());

    assert!(origin.seen().is_empty(), "no request reached the origin");

    // Checking turned off explicitly: served.
    edge.apply(&tls_snapshot(
        tls_origin(&origin, Some("anything.test"), true),
        None,
    ));
    let got = get(&client, &edge.url(HOST, "/w")).await;
    assert_eq!((got.status, got.text().as_str()), (200, "tls origin /w"));
    edge.shutdown().await;
}

/// A two-tier snapshot: the service for [`HOST`] with certificate `cert` at `origin`, a
/// child site filling from the parent site, `parent-1` listening for HTTPS on
/// `https_port` (its HTTP port closed, so only TLS can reach it).
fn tiered_tls_snapshot(
    origin: std::net::SocketAddr,
    cert: &TlsCertificate,
    https_port: u16,
) -> Snapshot<EdgeSnapshot> {
    let mut svc = service("svc-a", HOST, vec![common::origin(origin)]);
    svc.tls = Some(cert.clone());
    let mut snap = snapshot(1, vec![svc]);
    two_tiers(&mut snap, 1, closed_port().port());
    snap.body.nodes[1].node.ports.https = https_port;
    snap
}

#[tokio::test]
async fn a_parent_is_reached_over_tls_and_must_present_the_services_certificate() {
    let origin = demo_origin(1024).await;
    let ca = Ca::new("service test CA");
    let (cert, _) = ca.leaf(&[HOST]);
    let parent = TestEdge::start_configured("parent-1", |c| c.https = vec![c.http[0]]).await;
    let https_port = parent.handle.https_addrs()[0].port();
    let snap = tiered_tls_snapshot(origin.addr(), &cert, https_port);
    parent.apply(&snap);
    let child = TestEdge::start("child-1", &snap).await;
    let client = child.client(&[HOST]);

    let got = get(&client, &child.url(HOST, "/")).await;
    assert_eq!(got.status, 200, "{}", got.text());
    let via = got.all("via").join(", ");
    assert!(
        via.contains("lingjing-parent-1"),
        "filled through the parent: {via}"
    );

    // The parent now holds another certificate for the service (e.g. a node that is not
    // the platform's answering on its address): a child connecting afresh does not trust
    // it and goes to the origin.
    let (other, _) = Ca::new("impostor CA").leaf(&[HOST]);
    parent.apply(&Snapshot {
        version: 2,
        ..tiered_tls_snapshot(origin.addr(), &other, https_port)
    });
    child.shutdown().await;
    let child = TestEdge::start("child-1", &snap).await;
    let client = child.client(&[HOST]);
    let got = get(&client, &child.url(HOST, "/")).await;
    assert_eq!(got.status, 200, "{}", got.text());
    let via = got.all("via").join(", ");
    assert!(
        !via.contains("lingjing-parent-1"),
        "went around the parent: {via}"
    );
    child.shutdown().await;
    parent.shutdown().await;
}

#[tokio::test]
async fn a_tls_origin_is_held_to_the_origin_policy_like_a_plain_one() {
    let (origin, mut snap) = trusted_origin().await;
    // The default policy: loopback is not a public address.
    snap.body.origin_policy = lingjing_model::OriginPolicy::default();
    let edge = TestEdge::start("edge-1", &snap).await;
    let got = get(&edge.client(&[HOST]), &edge.url(HOST, "/")).await;
    assert_eq!(got.status, 502, "{}", got.text());
    assert_eq!(
        origin.connections(),
        0,
        "nothing connected to a refused address"
    );
    edge.shutdown().await;
}

#[tokio::test]
async fn a_pooled_tls_connection_is_not_reused_after_the_origin_policy_changes() {
    let (origin, snap) = trusted_origin().await;
    let edge = TestEdge::start("edge-1", &snap).await;
    let client = edge.client(&[HOST]);
    let got = get(&client, &edge.url(HOST, "/before")).await;
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(origin.connections(), 1, "one pooled connection");
    // The operator withdraws loopback from the allowed networks: the pooled connection,
    // made under the old policy, must not carry another request.
    let mut refused = snap.clone();
    refused.version = 2;
    refused.body.origin_policy = lingjing_model::OriginPolicy::default();
    edge.apply(&refused);
    let got = get(&client, &edge.url(HOST, "/after")).await;
    assert_eq!(got.status, 502, "{}", got.text());
    assert!(
        origin.seen().iter().all(|s| s.path != "/after"),
        "{:?}",
        origin.seen()
    );
    edge.shutdown().await;
}
