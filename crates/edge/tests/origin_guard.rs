//! Origins stay outside the platform: the edge checks every address an origin resolves to
//! against the snapshot's origin policy before connecting (loopback, private and platform
//! addresses are refused unless the operator allowed them; platform addresses always), and
//! a request that already passed through the platform (our `Via`, or our RFC 8586
//! `CDN-Loop` entry, which survives CDNs that strip `Via`) is answered 508 instead of being
//! fetched again.

mod common;

use std::sync::{Arc, Mutex};

use common::*;
use lingjing_model::snapshot::{EdgeSnapshot, Snapshot};
use lingjing_model::{NodeRole, OriginPolicy};

/// An origin answering every request 200, not cacheable (each request reaches it).
async fn plain_origin() -> TestOrigin {
    TestOrigin::start(|_| async {
        respond(200, &[("cache-control", "no-store")], "from the origin")
    })
    .await
}

fn with_policy(
    version: u64,
    origins: Vec<lingjing_model::Origin>,
    policy: OriginPolicy,
) -> Snapshot<EdgeSnapshot> {
    let mut snap = snapshot(version, vec![service("svc-a", HOST, origins)]);
    snap.body.origin_policy = policy;
    snap
}

fn allowing(allowed: &[&str]) -> OriginPolicy {
    OriginPolicy {
        allowed: allowed.iter().map(|s| s.to_string()).collect(),
        ..OriginPolicy::default()
    }
}

/// The value of metric `name` on `edge` (0 when absent).
async fn metric(edge: &TestEdge, name: &str) -> u64 {
    metric_value(&edge.metrics().await, name).unwrap_or(0)
}

#[tokio::test]
async fn a_loopback_origin_is_refused_unless_its_network_is_allowed() {
    let origin = plain_origin().await;
    let refused = with_policy(
        1,
        vec![common::origin(origin.addr())],
        OriginPolicy::default(),
    );
    let edge = TestEdge::start("edge-a", &refused).await;
    let client = edge.client(&[HOST]);

    let got = get(&client, &edge.url(HOST, "/")).await;
    assert_eq!(got.status, 502, "{}", got.text());
    assert!(
        got.text().contains("non-public or platform") && got.text().contains("loopback"),
        "{}",
        got.text()
    );
    assert_eq!(origin.total(), 0, "the origin was never connected to");
    assert!(metric(&edge, "lingjing_edge_origin_refused_total").await >= 1);

    // The operator allows loopback: the same origin works.
    edge.apply(&with_policy(
        2,
        vec![common::origin(origin.addr())],
        allowing(&["127.0.0.0/8"]),
    ));
    let got = get(&client, &edge.url(HOST, "/")).await;
    assert_eq!((got.status, got.text().as_str()), (200, "from the origin"));
    assert_eq!(origin.total(), 1);

    // And refuses it again: the pooled connection made under the old policy is not
    // reused.
    edge.apply(&with_policy(
        3,
        vec![common::origin(origin.addr())],
        OriginPolicy::default(),
    ));
    let got = get(&client, &edge.url(HOST, "/")).await;
    assert_eq!(got.status, 502, "{}", got.text());
    assert_eq!(origin.total(), 1);
}

#[tokio::test]
async fn a_name_that_resolves_to_loopback_is_refused() {
    let origin = plain_origin().await;
    let by_name = lingjing_model::Origin {
        address: format!("localhost:{}", origin.addr().port()),
        ..common::origin(origin.addr())
    };
    let edge = TestEdge::start(
        "edge-a",
        &with_policy(1, vec![by_name], OriginPolicy::default()),
    )
    .await;
    let client = edge.client(&[HOST]);
    let got = get(&client, &edge.url(HOST, "/")).await;
    assert_eq!(got.status, 502, "{}", got.text());
    assert!(
        got.text().contains("localhost") && got.text().contains("loopback"),
        "{}",
        got.text()
    );
    assert_eq!(origin.total(), 0);
}

#[tokio::test]
async fn an_allowed_endpoint_works_and_a_refused_primary_falls_through_to_it() {
    let refused = plain_origin().await;
    let allowed = plain_origin().await;
    let backup = lingjing_model::Origin {
        backup: true,
        ..common::origin(allowed.addr())
    };
    let endpoint = allowed.addr().to_string();
    let edge = TestEdge::start(
        "edge-a",
        &with_policy(
            1,
            vec![common::origin(refused.addr()), backup],
            allowing(&[&endpoint]),
        ),
    )
    .await;
    let client = edge.client(&[HOST]);
    for _ in 0..3 {
        let got = get(&client, &edge.url(HOST, "/")).await;
        assert_eq!((got.status, got.text().as_str()), (200, "from the origin"));
    }
    assert_eq!(
        refused.total(),
        0,
        "only the allowed endpoint is connected to"
    );
    assert_eq!(allowed.total(), 3);
}

#[tokio::test]
async fn a_platform_address_is_refused_even_when_its_network_is_allowed() {
    let origin = plain_origin().await;
    for policy in [
        OriginPolicy {
            platform_addresses: vec![origin.addr().ip()],
            ..loopback_allowed()
        },
        OriginPolicy {
            platform_endpoints: vec![origin.addr()],
            ..loopback_allowed()
        },
    ] {
        let edge = TestEdge::start(
            "edge-a",
            &with_policy(1, vec![common::origin(origin.addr())], policy),
        )
        .await;
        let client = edge.client(&[HOST]);
        let got = get(&client, &edge.url(HOST, "/")).await;
        assert_eq!(got.status, 502, "{}", got.text());
        assert!(got.text().contains("platform itself"), "{}", got.text());
    }
    assert_eq!(origin.total(), 0);
}

#[tokio::test]
async fn an_origin_pointing_back_at_the_edge_is_a_loop_not_an_endless_fetch() {
    // The edge's own port is the origin (its network allowed, as on a one-host platform).
    let edge = TestEdge::start_empty("edge-a").await;
    edge.apply(&with_policy(
        1,
        vec![common::origin(edge.addr)],
        loopback_allowed(),
    ));
    let client = edge.client(&[HOST]);
    let got = get(&client, &edge.url(HOST, "/loop")).await;
    assert_eq!(got.status, 508, "{}", got.text());
    assert!(got.text().contains("loop detected"), "{}", got.text());
    assert_eq!(metric(&edge, "lingjing_edge_loops_total").await, 1);

    // A client that forges our Via is refused at once.
    let got = get_with(
        &client,
        &edge.url(HOST, "/"),
        &[("via", "1.1 lingjing-edge-a")],
    )
    .await;
    assert_eq!(got.status, 508);
}

#[tokio::test]
async fn an_origin_pointing_at_another_edge_of_the_platform_is_a_loop() {
    let origin = plain_origin().await;
    let b = TestEdge::start_empty("edge-b").await;
    let a = TestEdge::start_empty("edge-a").await;
    // Service `svc-a` on both; edge-a's origin for it is edge-b, whose origin is the real
    // one. Both nodes are in the snapshot (same edge site, no parent tier).
    let mut snap_a = with_policy(1, vec![common::origin(b.addr)], loopback_allowed());
    let mut snap_b = with_policy(1, vec![common::origin(origin.addr())], loopback_allowed());
    for snap in [&mut snap_a, &mut snap_b] {
        snap.body.sites = vec![site("edge-site", None)];
        snap.body.nodes = vec![
            node("edge-a", "edge-site", vec![NodeRole::Edge], a.port()),
            node("edge-b", "edge-site", vec![NodeRole::Edge], b.port()),
        ];
    }
    a.apply(&snap_a);
    b.apply(&snap_b);
    let got = get(&a.client(&[HOST]), &a.url(HOST, "/")).await;
    assert_eq!(got.status, 508, "{}", got.text());
    assert_eq!(origin.total(), 0);
    // edge-b itself serves clients.
    let got = get(&b.client(&[HOST]), &b.url(HOST, "/")).await;
    assert_eq!(got.status, 200, "{}", got.text());
}

#[tokio::test]
async fn a_parent_whose_origin_points_back_at_a_child_detects_the_loop() {
    let parent = TestEdge::start_empty("parent-1").await;
    let child = TestEdge::start_empty("child-1").await;
    let mut snap = with_policy(1, vec![common::origin(child.addr)], loopback_allowed());
    two_tiers(&mut snap, child.port(), parent.port());
    parent.apply(&snap);
    child.apply(&snap);
    // child -> parent (accepted: a marked parent fetch) -> origin = child: a loop.
    let got = get(&child.client(&[HOST]), &child.url(HOST, "/")).await;
    assert_eq!(got.status, 508, "{}", got.text());
    assert_eq!(metric(&parent, "lingjing_edge_loops_total").await, 0);
    assert_eq!(metric(&child, "lingjing_edge_loops_total").await, 1);
}

// ---------------------------------------------------------------------------------------
// RFC 8586 CDN-Loop
// ---------------------------------------------------------------------------------------

/// An origin answering 200 (not cacheable) that records every `CDN-Loop` value it sees.
async fn recording_origin() -> (TestOrigin, Arc<Mutex<Vec<Vec<String>>>>) {
    let seen: Arc<Mutex<Vec<Vec<String>>>> = Arc::default();
    let record = seen.clone();
    let origin = TestOrigin::start(move |parts| {
        let values = parts
            .headers
            .get_all("cdn-loop")
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_owned))
            .collect();
        record.lock().expect("lock").push(values);
        async { respond(200, &[("cache-control", "no-store")], "from the origin") }
    })
    .await;
    (origin, seen)
}

/// The `CDN-Loop` entries of one request, split at commas.
fn entries(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .flat_map(|l| l.split(','))
        .map(|e| e.trim().to_owned())
        .collect()
}

#[tokio::test]
async fn a_request_carrying_our_cdn_loop_entry_is_refused_without_a_fetch() {
    let (origin, _) = recording_origin().await;
    let edge = TestEdge::start(
        "edge-a",
        &with_policy(1, vec![common::origin(origin.addr())], loopback_allowed()),
    )
    .await;
    let client = edge.client(&[HOST]);
    for (i, value) in [
        "lingjing",
        "cloudflare, lingjing; node=edge-b",
        "lingjing; node=edge-a",
    ]
    .into_iter()
    .enumerate()
    {
        let got = get_with(&client, &edge.url(HOST, "/"), &[("cdn-loop", value)]).await;
        assert_eq!(got.status, 508, "{value}: {}", got.text());
        assert!(got.text().contains("CDN-Loop"), "{}", got.text());
        assert_eq!(
            metric(&edge, "lingjing_edge_loops_total").await,
            i as u64 + 1
        );
    }
    assert_eq!(origin.total(), 0, "nothing was fetched");
}

#[tokio::test]
async fn another_cdns_entry_is_served_and_ours_is_appended() {
    let (origin, seen) = recording_origin().await;
    let edge = TestEdge::start(
        "edge-a",
        &with_policy(1, vec![common::origin(origin.addr())], loopback_allowed()),
    )
    .await;
    let client = edge.client(&[HOST]);
    let got = get_with(&client, &edge.url(HOST, "/"), &[("cdn-loop", "cloudflare")]).await;
    assert_eq!((got.status, got.text().as_str()), (200, "from the origin"));
    // Without one: ours alone. (Passed through too: a POST carries it.)
    let got = fetch(client.post(edge.url(HOST, "/form")).body("x")).await;
    assert_eq!(got.status, 200);
    let seen = seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), 2);
    assert_eq!(entries(&seen[0]), ["cloudflare", "lingjing; node=edge-a"]);
    assert_eq!(entries(&seen[1]), ["lingjing; node=edge-a"]);
    assert_eq!(metric(&edge, "lingjing_edge_loops_total").await, 0);
}

#[tokio::test]
async fn a_tiered_fetch_carries_both_hops_and_still_works() {
    let (origin, seen) = recording_origin().await;
    let parent = TestEdge::start_empty("parent-1").await;
    let child = TestEdge::start_empty("child-1").await;
    let mut snap = with_policy(1, vec![common::origin(origin.addr())], loopback_allowed());
    two_tiers(&mut snap, child.port(), parent.port());
    parent.apply(&snap);
    child.apply(&snap);
    let got = get_with(
        &child.client(&[HOST]),
        &child.url(HOST, "/"),
        &[("cdn-loop", "cloudflare")],
    )
    .await;
    assert_eq!((got.status, got.text().as_str()), (200, "from the origin"));
    let via = got.all("via").join(", ");
    assert!(
        via.contains("lingjing-parent-1"),
        "went through the parent: {via}"
    );
    let seen = seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        entries(&seen[0]),
        [
            "cloudflare",
            "lingjing; node=child-1",
            "lingjing; node=parent-1"
        ]
    );
    assert_eq!(metric(&parent, "lingjing_edge_loops_total").await, 0);
    assert_eq!(metric(&child, "lingjing_edge_loops_total").await, 0);
}

#[tokio::test]
async fn a_loop_through_another_cdn_that_strips_via_is_caught() {
    // The "other CDN": forwards every request to the edge, dropping `Via` (as many CDNs
    // do) and keeping `CDN-Loop` (as RFC 8586 asks).
    let edge = TestEdge::start_empty("edge-a").await;
    let edge_addr = edge.addr;
    let forwarder = TestOrigin::start(move |parts| async move {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(REQUEST_TIMEOUT)
            .resolve(HOST, edge_addr)
            .build()
            .expect("client");
        let mut req = client.get(format!("http://{HOST}:{}{}", edge_addr.port(), parts.uri));
        for (name, value) in &parts.headers {
            if name != "via" && name != "host" {
                req = req.header(name.as_str(), value.as_bytes());
            }
        }
        let got = fetch(req).await;
        respond(
            got.status,
            &[("cache-control", "no-store")],
            got.body.to_vec(),
        )
    })
    .await;
    edge.apply(&with_policy(
        1,
        vec![common::origin(forwarder.addr())],
        loopback_allowed(),
    ));
    let got = get(&edge.client(&[HOST]), &edge.url(HOST, "/cdn")).await;
    assert_eq!(got.status, 508, "{}", got.text());
    assert!(got.text().contains("CDN-Loop"), "{}", got.text());
    assert_eq!(forwarder.total(), 1, "the loop stopped at its second pass");
    assert_eq!(metric(&edge, "lingjing_edge_loops_total").await, 1);
}
