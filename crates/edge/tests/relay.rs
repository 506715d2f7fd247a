//! The artefact relay end to end (`lingjing_edge::relay`): a fake control plane behind
//! the relay checks the Bearer credential it expects and counts requests. A node (an
//! allowed client address) gets the bytes, MISS then HIT, for one upstream request
//! however many ask, concurrently too; the upstream sees the edge's credential, never the
//! client's; other addresses get 403, other paths 404, other methods 405; a child goes
//! through its parent and the control plane still sees one request; over TLS the
//! control plane's certificate for an IP address is checked against the relay's CA. The
//! snapshots keep the default origin policy (loopback refused to tenants): the relay's
//! upstream is a platform endpoint and is reached anyway.

mod common;

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use common::pki::{Ca, TlsOrigin};
use common::*;
use lingjing_model::snapshot::{ArtifactRelay, EdgeSnapshot, Role, Snapshot, UsageSource};

const RELAY_HOST: &str = "artifacts.cdn.lingjing.test";
const EDGE_CREDENTIAL: &str = "edge-node-secret";
const PARENT_CREDENTIAL: &str = "parent-node-secret";
const CLIENT_AUTH: &str = "Bearer the-nodes-own-token";
const ARTEFACT: &[u8] = b"an edge AI model, immutable";

fn digest() -> String {
    "0123456789abcdef".repeat(4)
}

fn artefact_path() -> String {
    format!("/v1/artifacts/sha256/{}", digest())
}

/// The address the tests' nodes connect from.
fn node_ip() -> IpAddr {
    "127.0.0.1".parse().expect("ip")
}

/// A snapshot with nothing but the relay (to `upstream`, trusting `ca`), answering
/// 127.0.0.1; the origin policy is the default one, which refuses loopback origins.
fn relay_snapshot(upstream: &str, ca: Option<String>) -> Snapshot<EdgeSnapshot> {
    Snapshot {
        version: 1,
        role: Role::Edge,
        generated_at: "2025-01-01T00:00:00Z".to_owned(),
        body: EdgeSnapshot {
            artifact_relay: Some(ArtifactRelay {
                hostname: RELAY_HOST.to_owned(),
                upstream: upstream.to_owned(),
                upstream_ca: ca,
                clients: vec![node_ip()],
            }),
            ..EdgeSnapshot::default()
        },
    }
}

/// A fake control plane: `GET /v1/artifacts/sha256/{digest}` with one of `accepted`
/// credentials answers the artefact, immutable, with an ETag; anything else 401/404.
/// Every `Authorization` it is sent is kept (in `seen`, `None` for none). `gate`, when
/// given, holds each answer until it is opened.
struct ControlPlane {
    origin: TestOrigin,
    seen: Arc<Mutex<Vec<Option<String>>>>,
}

impl ControlPlane {
    async fn start(
        accepted: &'static [&'static str],
        gate: Option<tokio::sync::watch::Receiver<bool>>,
    ) -> ControlPlane {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let origin = TestOrigin::start(move |parts| {
            let auth = parts
                .headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            s.lock().expect("seen").push(auth.clone());
            let mut gate = gate.clone();
            async move {
                if let Some(g) = &mut gate {
                    let _ = g.wait_for(|open| *open).await;
                }
                let ok = auth.as_deref().is_some_and(|a| {
                    accepted
                        .iter()
                        .any(|c| a.strip_prefix("Bearer ") == Some(*c))
                });
                if !ok {
                    return respond(401, &[], "who are you?");
                }
                if parts.uri.path() != artefact_path() {
                    return respond(404, &[], "no such artefact");
                }
                let etag = format!("\"sha256:{}\"", digest());
                respond(
                    200,
                    &[
                        ("content-type", "application/octet-stream"),
                        ("cache-control", "public, max-age=31536000, immutable"),
                        ("etag", &etag),
                    ],
                    ARTEFACT,
                )
            }
        })
        .await;
        ControlPlane { origin, seen }
    }

    fn url(&self) -> String {
        format!("http://{}", self.origin.addr())
    }

    fn requests(&self) -> u64 {
        self.origin.total()
    }

    fn authorizations(&self) -> Vec<Option<String>> {
        self.seen.lock().expect("seen").clone()
    }
}

async fn edge_with_credential(node: &str, credential: Option<&str>) -> TestEdge {
    let credential = credential.map(str::to_owned);
    TestEdge::start_configured(node, move |c| c.platform_credential = credential).await
}

/// A client of `edge` connecting from `from`.
fn client_from(edge: &TestEdge, from: IpAddr) -> reqwest::Client {
    edge.client_builder(&[RELAY_HOST])
        .local_address(from)
        .build()
        .expect("client")
}

async fn get_artefact(client: &reqwest::Client, edge: &TestEdge) -> Got {
    get_with(
        client,
        &edge.url(RELAY_HOST, &artefact_path()),
        &[("authorization", CLIENT_AUTH)],
    )
    .await
}

#[tokio::test]
async fn a_node_gets_the_artefact_once_from_upstream_with_the_edges_credential() {
    let cp = ControlPlane::start(&[EDGE_CREDENTIAL], None).await;
    let edge = edge_with_credential("edge-1", Some(EDGE_CREDENTIAL)).await;
    edge.apply(&relay_snapshot(&cp.url(), None));
    let client = client_from(&edge, node_ip());

    let first = get_artefact(&client, &edge).await;
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(first.body.as_ref(), ARTEFACT);
    assert_eq!(first.x_cache(), "MISS");
    assert_eq!(first.header("etag"), format!("\"sha256:{}\"", digest()));
    for _ in 0..3 {
        let again = get_artefact(&client, &edge).await;
        assert_eq!(again.status, 200);
        assert_eq!(again.body.as_ref(), ARTEFACT);
        assert_eq!(again.x_cache(), "HIT");
    }
    // HEAD from the cache too.
    let head = fetch(client.head(edge.url(RELAY_HOST, &artefact_path()))).await;
    assert_eq!((head.status, head.x_cache()), (200, "HIT"));
    assert_eq!(cp.requests(), 1);
    assert_eq!(
        cp.authorizations(),
        [Some(format!("Bearer {EDGE_CREDENTIAL}"))],
        "the edge's own credential, never the client's"
    );

    // Counted under the relay's service, not metered for billing.
    let metrics = edge.metrics().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("lingjing_edge_requests_total{")
                && l.contains(&format!("service=\"{}\"", lingjing_edge::relay::SERVICE_ID))
                && l.contains("cache=\"HIT\"")
                && l.ends_with(" 4")),
        "{metrics}"
    );
    let usage = edge.handle.edge.usage.take();
    assert!(
        usage
            .iter()
            .all(|s| s.service != lingjing_edge::relay::SERVICE_ID),
        "{usage:?}"
    );
    edge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_nodes_cost_the_control_plane_one_request() {
    const CLIENTS: usize = 20;
    let (open, gate) = tokio::sync::watch::channel(false);
    let cp = ControlPlane::start(&[EDGE_CREDENTIAL], Some(gate)).await;
    let edge = edge_with_credential("edge-1", Some(EDGE_CREDENTIAL)).await;
    edge.apply(&relay_snapshot(&cp.url(), None));
    let client = edge
        .client_builder(&[RELAY_HOST])
        .local_address(node_ip())
        .pool_max_idle_per_host(CLIENTS)
        .build()
        .expect("client");
    let all = futures::future::join_all((0..CLIENTS).map(|_| get_artefact(&client, &edge)));
    let release = async {
        // The answer is held until the fill has reached the control plane; clients that
        // come before join it, those after are hits: one request either way.
        wait_until("the control plane is asked", || cp.requests() >= 1).await;
        let _ = open.send(true);
    };
    let (answers, ()) = tokio::join!(all, release);
    for got in &answers {
        assert_eq!(got.status, 200, "{}", got.text());
        assert_eq!(got.body.as_ref(), ARTEFACT);
        assert!(matches!(got.x_cache(), "MISS" | "HIT"), "{}", got.x_cache());
    }
    assert_eq!(cp.requests(), 1);
    assert_eq!(
        cp.authorizations(),
        [Some(format!("Bearer {EDGE_CREDENTIAL}"))]
    );
    edge.shutdown().await;
}

#[tokio::test]
async fn only_nodes_get_artefacts_and_only_artefacts() {
    let cp = ControlPlane::start(&[EDGE_CREDENTIAL], None).await;
    let edge = edge_with_credential("edge-1", Some(EDGE_CREDENTIAL)).await;
    edge.apply(&relay_snapshot(&cp.url(), None));

    // Not a node's address: refused, nothing fetched.
    let stranger = client_from(&edge, "127.0.0.2".parse().expect("ip"));
    let got = get_artefact(&stranger, &edge).await;
    assert_eq!(got.status, 403, "{}", got.text());
    assert!(got.text().contains("platform's nodes"), "{}", got.text());

    let node = client_from(&edge, node_ip());
    for path in [
        "/".to_owned(),
        "/v1/artifacts".to_owned(),
        format!("/v1/artifacts/sha256/{}", digest().to_uppercase()),
        format!("{}?x=1", artefact_path()),
        "/v1/nodes".to_owned(),
    ] {
        let got = get(&node, &edge.url(RELAY_HOST, &path)).await;
        assert_eq!(got.status, 404, "{path}: {}", got.text());
    }
    for method in [
        reqwest::Method::POST,
        reqwest::Method::PUT,
        reqwest::Method::DELETE,
    ] {
        let got = fetch(
            node.request(method.clone(), edge.url(RELAY_HOST, &artefact_path()))
                .body("x"),
        )
        .await;
        assert_eq!(got.status, 405, "{method}");
        assert_eq!(got.header("allow"), "GET, HEAD");
    }
    assert_eq!(
        cp.requests(),
        0,
        "nothing refused reaches the control plane"
    );
    // The refusals are counted under the relay's service.
    let metrics = edge.metrics().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("lingjing_edge_requests_total{")
                && l.contains(&format!("service=\"{}\"", lingjing_edge::relay::SERVICE_ID))
                && l.contains("cache=\"ERROR\"")
                && l.ends_with(" 9")),
        "{metrics}"
    );
    edge.shutdown().await;
}

#[tokio::test]
async fn an_edge_without_a_credential_says_it_cannot_relay() {
    let cp = ControlPlane::start(&[EDGE_CREDENTIAL], None).await;
    let edge = edge_with_credential("edge-1", None).await;
    edge.apply(&relay_snapshot(&cp.url(), None));
    let got = get_artefact(&client_from(&edge, node_ip()), &edge).await;
    assert_eq!(got.status, 503);
    assert!(got.text().contains("no node credential"), "{}", got.text());
    assert_eq!(cp.requests(), 0);
    edge.shutdown().await;
}

#[tokio::test]
async fn a_child_relays_through_its_parent_and_the_control_plane_sees_one_request() {
    let cp = ControlPlane::start(&[PARENT_CREDENTIAL], None).await;
    let parent = edge_with_credential("parent-1", Some(PARENT_CREDENTIAL)).await;
    let child = edge_with_credential("child-1", Some(EDGE_CREDENTIAL)).await;
    let mut snap = relay_snapshot(&cp.url(), None);
    two_tiers(&mut snap, child.port(), parent.port());
    parent.apply(&snap);
    child.apply(&snap);
    let client = client_from(&child, node_ip());

    let first = get_artefact(&client, &child).await;
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(first.body.as_ref(), ARTEFACT);
    assert_eq!(first.x_cache(), "MISS");
    assert_eq!(get_artefact(&client, &child).await.x_cache(), "HIT");
    // Another child's node (here: asking the parent directly) is served from the parent's
    // cache.
    let at_parent = get_artefact(&client_from(&parent, node_ip()), &parent).await;
    assert_eq!((at_parent.status, at_parent.x_cache()), (200, "HIT"));
    assert_eq!(cp.requests(), 1);
    // The parent fetched with its own credential; neither the child's nor the client's
    // went anywhere.
    assert_eq!(
        cp.authorizations(),
        [Some(format!("Bearer {PARENT_CREDENTIAL}"))]
    );
    child.shutdown().await;
    parent.shutdown().await;
}

#[tokio::test]
async fn the_control_planes_certificate_for_its_ip_is_checked_against_the_relays_ca() {
    let ca = Ca::new("Relay test CA");
    let (cert, _) = ca.leaf(&["127.0.0.1"]);
    let tls = TlsOrigin::start(&cert, &["h2", "http/1.1"]).await;
    let upstream = format!("https://{}", tls.addr);
    let edge = edge_with_credential("edge-1", Some(EDGE_CREDENTIAL)).await;
    let client = client_from(&edge, node_ip());

    // Without the CA the certificate is not trusted.
    edge.apply(&relay_snapshot(&upstream, None));
    let got = get_artefact(&client, &edge).await;
    assert_eq!(got.status, 502, "{}", got.text());
    assert!(tls.seen().is_empty());

    let mut snap = relay_snapshot(&upstream, Some(ca.pem()));
    snap.version = 2;
    edge.apply(&snap);
    let got = get_artefact(&client, &edge).await;
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(got.text(), format!("tls origin {}", artefact_path()));
    let seen = tls.seen();
    assert_eq!(seen.len(), 1);
    // No SNI for an address; the Host is the upstream's.
    assert_eq!(seen[0].sni, None);
    assert_eq!(seen[0].host, tls.addr.to_string());
    edge.shutdown().await;
}

#[tokio::test]
async fn the_clients_credential_does_not_go_to_the_parent_either() {
    // A stand-in parent that answers every fill, keeping what it was sent.
    let parent = TestOrigin::start(|_| async {
        respond(
            200,
            &[("cache-control", "public, max-age=31536000, immutable")],
            ARTEFACT,
        )
    })
    .await;
    let child = edge_with_credential("child-1", Some(EDGE_CREDENTIAL)).await;
    let mut snap = relay_snapshot("http://127.0.0.1:9", None);
    two_tiers(&mut snap, child.port(), parent.addr().port());
    child.apply(&snap);
    let got = get_artefact(&client_from(&child, node_ip()), &child).await;
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(parent.requests(&artefact_path()), 1);
    let sent = parent.last_headers(&artefact_path()).expect("headers");
    assert!(sent.get("authorization").is_none(), "{sent:?}");
    assert_eq!(sent["host"], RELAY_HOST);
    assert_eq!(sent["lingjing-parent-fetch"], "child-1");
    child.shutdown().await;
}
