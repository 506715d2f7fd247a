//! Where the edge fetches from, end to end: tiered caching through a parent edge node (and
//! falling back to the origins when the parent is down), weighted primary origins, backup
//! origins used only when no primary answers, retries on another origin after a connect
//! failure, and snapshot changes applied under load without dropping in-flight requests.

mod common;

use common::*;
use lingjing_model::NodeRole;
use lingjing_model::snapshot::{EdgeSnapshot, Snapshot};

/// A snapshot with the service for [`HOST`] at `origin`, an edge site filling from the
/// parent site, the child nodes `children` and one parent node on `parent_port`.
fn tiered_snapshot(
    origin: std::net::SocketAddr,
    children: &[&str],
    parent_port: u16,
) -> Snapshot<EdgeSnapshot> {
    let mut snap = snapshot_for("svc-a", origin);
    snap.body.sites = vec![
        site("edge-site", Some("parent-site")),
        site("parent-site", None),
    ];
    snap.body.nodes = children
        .iter()
        .map(|id| node(id, "edge-site", vec![NodeRole::Edge], 1))
        .collect();
    snap.body.nodes.push(node(
        "parent-1",
        "parent-site",
        vec![NodeRole::Parent],
        parent_port,
    ));
    snap
}

#[tokio::test]
async fn a_child_fills_from_its_parent_and_falls_back_to_the_origin() {
    let origin = demo_origin(1024).await;
    // The parent first, to learn its port.
    let parent = TestEdge::start_empty("parent-1").await;
    let snap = tiered_snapshot(
        origin.addr(),
        &["child-1", "child-2", "child-3"],
        parent.port(),
    );
    parent.apply(&snap);
    let child1 = TestEdge::start("child-1", &snap).await;
    let child2 = TestEdge::start("child-2", &snap).await;

    let c1 = child1.client(&[HOST]);
    let got = get(&c1, &child1.url(HOST, "/")).await;
    assert_eq!((got.status, got.x_cache()), (200, "MISS"));
    let via = got.all("via").join(", ");
    assert!(
        via.contains("lingjing-parent-1") && via.contains("lingjing-child-1"),
        "{via}"
    );
    let statuses = got.all("cache-status");
    assert!(
        statuses
            .iter()
            .any(|s| s.starts_with("lingjing-parent-1; fwd=uri-miss")),
        "{statuses:?}"
    );
    assert_eq!(origin.requests("/"), 1);

    // Another child misses too, but the parent has it.
    let c2 = child2.client(&[HOST]);
    let got = get(&c2, &child2.url(HOST, "/")).await;
    assert_eq!((got.status, got.x_cache()), (200, "MISS"));
    let statuses = got.all("cache-status");
    assert!(
        statuses
            .iter()
            .any(|s| s.starts_with("lingjing-parent-1; hit")),
        "{statuses:?}"
    );
    assert!(
        statuses
            .iter()
            .any(|s| s.starts_with("lingjing-child-2; fwd=uri-miss")),
        "{statuses:?}"
    );
    assert_eq!(
        origin.requests("/"),
        1,
        "the second child was served by the parent"
    );
    // The children cache it themselves.
    assert_eq!(get(&c1, &child1.url(HOST, "/")).await.x_cache(), "HIT");
    assert_eq!(get(&c2, &child2.url(HOST, "/")).await.x_cache(), "HIT");
    // Metering: the clients' requests are the children's; the parent's answers to them
    // are the platform's own (marked, from a node's address: not metered), and the body
    // entered the platform once, from the origin at the parent.
    let counted = |e: &TestEdge| e.handle.edge.usage.counters("svc-a").counted("svc-a");
    let (m1, m2, p) = (counted(&child1), counted(&child2), counted(&parent));
    assert_eq!(
        (m1.requests, m1.hit_requests, m1.miss_requests),
        (2, 1, 1),
        "{m1:?}"
    );
    assert_eq!((m2.requests, m2.hit_requests), (2, 1), "{m2:?}");
    assert_eq!((p.requests, p.bytes_out), (0, 0), "{p:?}");
    assert_eq!(
        (m1.bytes_in, m2.bytes_in),
        (0, 0),
        "from the parent: {m1:?} {m2:?}"
    );
    assert!(
        p.bytes_in > 0 && p.bytes_in == m1.bytes_out / 2,
        "{p:?} {m1:?}"
    );

    // The parent goes down: a child that was using it, and a fresh one, go to the origin.
    parent.shutdown().await;
    let got = get(&c1, &child1.url(HOST, "/assets/app.css")).await;
    assert_eq!((got.status, got.x_cache()), (200, "MISS"), "{}", got.text());
    assert_eq!(origin.requests("/assets/app.css"), 1);
    let child3 = TestEdge::start("child-3", &snap).await;
    let c3 = child3.client(&[HOST]);
    let got = get(&c3, &child3.url(HOST, "/")).await;
    assert_eq!((got.status, got.x_cache()), (200, "MISS"));
    assert_eq!(origin.requests("/"), 2);
}

#[tokio::test]
async fn a_parent_that_is_unhealthy_or_drained_is_not_used() {
    let origin = demo_origin(1024).await;
    let parent = TestEdge::start_empty("parent-1").await;
    let mut snap = tiered_snapshot(origin.addr(), &["child-1"], parent.port());
    parent.apply(&snap);
    for (healthy, drained) in [(false, false), (true, true)] {
        let parent_node = snap
            .body
            .nodes
            .iter_mut()
            .find(|n| n.node.id == "parent-1")
            .expect("parent node");
        parent_node.healthy = healthy;
        parent_node.node.drained = drained;
        let child = TestEdge::start("child-1", &snap).await;
        let client = child.client(&[HOST]);
        let got = get(&client, &child.url(HOST, "/")).await;
        assert_eq!(got.status, 200);
        assert!(
            !got.all("via").join(",").contains("lingjing-parent-1"),
            "healthy={healthy} drained={drained}: went through the parent"
        );
    }
    assert_eq!(origin.requests("/"), 2);
}

#[tokio::test]
async fn primary_origins_share_traffic_by_weight() {
    const REQUESTS: u64 = 200;
    let heavy = demo_origin(1024).await;
    let light = demo_origin(1024).await;
    let mut o_heavy = common::origin(heavy.addr());
    o_heavy.weight = 3;
    let svc = service("svc-a", HOST, vec![o_heavy, common::origin(light.addr())]);
    let edge = TestEdge::start("edge-a", &snapshot(1, vec![svc])).await;
    let client = edge.client(&[HOST]);
    for _ in 0..REQUESTS {
        // `/api/` is `no-store`: every request goes upstream.
        let got = get(&client, &edge.url(HOST, "/api/w")).await;
        assert_eq!(got.status, 200);
    }
    let (h, l) = (heavy.requests("/api/w"), light.requests("/api/w"));
    assert_eq!(h + l, REQUESTS);
    let share = h as f64 / REQUESTS as f64;
    assert!(
        (0.55..=0.90).contains(&share),
        "weight 3:1 gave {h}:{l} ({:.0}%)",
        share * 100.0
    );
}

#[tokio::test]
async fn backup_origins_are_used_only_when_no_primary_is_reachable() {
    let primary = demo_origin(1024).await;
    let backup = demo_origin(1024).await;
    let mut o_backup = common::origin(backup.addr());
    o_backup.backup = true;
    let svc = service(
        "svc-a",
        HOST,
        vec![common::origin(primary.addr()), o_backup.clone()],
    );
    let edge = TestEdge::start("edge-a", &snapshot(1, vec![svc])).await;
    let client = edge.client(&[HOST]);
    for _ in 0..20 {
        assert_eq!(get(&client, &edge.url(HOST, "/api/b")).await.status, 200);
    }
    assert_eq!(primary.requests("/api/b"), 20);
    assert_eq!(
        backup.requests("/api/b"),
        0,
        "the backup is not used while the primary is up"
    );

    // The primary is now a port nothing listens on.
    let svc = service("svc-a", HOST, vec![common::origin(closed_port()), o_backup]);
    edge.apply(&snapshot(2, vec![svc]));
    for _ in 0..10 {
        let got = get(&client, &edge.url(HOST, "/api/b")).await;
        assert_eq!(got.status, 200, "{}", got.text());
    }
    assert_eq!(backup.requests("/api/b"), 10);
}

#[tokio::test]
async fn a_get_is_retried_on_another_origin_after_a_connect_failure() {
    let up = demo_origin(1024).await;
    let svc = service(
        "svc-a",
        HOST,
        vec![
            common::origin(closed_port()),
            common::origin(up.addr()),
            common::origin(closed_port()),
        ],
    );
    let edge = TestEdge::start("edge-a", &snapshot(1, vec![svc])).await;
    let client = edge.client(&[HOST]);
    for _ in 0..30 {
        let got = get(&client, &edge.url(HOST, "/api/r")).await;
        assert_eq!(got.status, 200, "{}", got.text());
    }
    assert_eq!(up.requests("/api/r"), 30);

    // No origin reachable at all: 502, with the reasons.
    let svc = service("svc-a", HOST, vec![common::origin(closed_port())]);
    edge.apply(&snapshot(2, vec![svc]));
    let got = get(&client, &edge.url(HOST, "/api/r")).await;
    assert_eq!((got.status, got.x_cache()), (502, "ERROR"));
    assert!(got.text().contains("could not fetch"), "{}", got.text());
}

#[tokio::test]
async fn a_new_snapshot_applies_without_dropping_requests_in_flight() {
    let origin = demo_origin(1024).await;
    let other = demo_origin(1024).await;
    let svc_a = service("svc-a", HOST, vec![common::origin(origin.addr())]);
    let edge = TestEdge::start("edge-a", &snapshot(1, vec![svc_a.clone()])).await;
    let client = edge.client(&[HOST, "new.test.example"]);

    let slow = {
        let (client, url) = (client.clone(), edge.url(HOST, "/slow?ms=1500"));
        tokio::spawn(async move { get(&client, &url).await })
    };
    wait_until("the slow request reaches the origin", || {
        origin.requests("/slow") == 1
    })
    .await;

    // A second service appears (and the first one is unchanged) while the request runs.
    let svc_b = service(
        "svc-b",
        "new.test.example",
        vec![common::origin(other.addr())],
    );
    edge.apply(&snapshot(2, vec![svc_a.clone(), svc_b]));
    assert_eq!(edge.handle.edge.version(), 2);
    let got = get(&client, &edge.url("new.test.example", "/")).await;
    assert_eq!(got.status, 200, "the new host is served at once");
    assert_eq!(other.requests("/"), 1);

    let got = tokio::time::timeout(WAIT, slow)
        .await
        .expect("the slow request completes")
        .expect("task");
    assert_eq!(got.status, 200);
    assert_eq!(got.text(), "slow answer after 1500 ms\n");

    // The service goes away again while one of its requests is in flight: that request
    // still completes, later ones get 404.
    let slow = {
        let (client, url) = (
            client.clone(),
            edge.url("new.test.example", "/slow?ms=1000"),
        );
        tokio::spawn(async move { get(&client, &url).await })
    };
    wait_until("the slow request reaches the origin", || {
        other.requests("/slow") == 1
    })
    .await;
    edge.apply(&snapshot(3, vec![svc_a]));
    assert_eq!(
        get(&client, &edge.url("new.test.example", "/"))
            .await
            .status,
        404
    );
    let got = tokio::time::timeout(WAIT, slow)
        .await
        .expect("the slow request completes")
        .expect("task");
    assert_eq!(
        (got.status, got.text().as_str()),
        (200, "slow answer after 1000 ms\n")
    );
    assert_eq!(get(&client, &edge.url(HOST, "/")).await.status, 200);
}
