//! Thread-per-core serving (`EdgeConfig::threads`): each core accepts on its own
//! `SO_REUSEPORT` socket and keeps its own upstream pools, and the node still behaves as
//! one: what one core stored is a hit on every core, a policy change closes every core's
//! pooled origin connections, and shutdown stops every core.

mod common;

use common::*;
use lingjing_model::OriginPolicy;
use lingjing_model::snapshot::{EdgeSnapshot, Snapshot};

/// Clients with a connection each: the kernel spreads new connections over the cores'
/// sockets, so with this many every core gets some (all on one of two: 2 in 65,536).
const CLIENTS: usize = 16;

async fn per_core_edge(snapshot: &Snapshot<EdgeSnapshot>) -> TestEdge {
    let edge = TestEdge::start_configured("edge-cores", |c| c.threads = 2).await;
    edge.apply(snapshot);
    edge
}

#[tokio::test]
async fn what_one_core_stored_is_a_hit_on_every_core() {
    let origin = TestOrigin::start(|_| async {
        respond(200, &[("cache-control", "max-age=600")], "cached body")
    })
    .await;
    let edge = per_core_edge(&snapshot_for("svc-a", origin.addr())).await;
    let first = get(&edge.client(&[HOST]), &edge.url(HOST, "/a")).await;
    assert_eq!((first.status, first.x_cache()), (200, "MISS"));
    for _ in 0..CLIENTS {
        let got = get(&edge.client(&[HOST]), &edge.url(HOST, "/a")).await;
        assert_eq!((got.status, got.text().as_str()), (200, "cached body"));
        assert_eq!(got.x_cache(), "HIT");
    }
    assert_eq!(origin.total(), 1);
    edge.shutdown().await;
}

#[tokio::test]
async fn an_origin_policy_change_closes_the_pooled_connections_of_every_core() {
    let origin = TestOrigin::start(|_| async {
        respond(200, &[("cache-control", "no-store")], "from the origin")
    })
    .await;
    let allowed = snapshot_for("svc-a", origin.addr());
    let edge = per_core_edge(&allowed).await;
    // Keep-alive connections from many clients: every core pools an origin connection.
    let clients: Vec<_> = (0..CLIENTS).map(|_| edge.client(&[HOST])).collect();
    for client in &clients {
        let got = get(client, &edge.url(HOST, "/")).await;
        assert_eq!((got.status, got.text().as_str()), (200, "from the origin"));
    }
    let reached = origin.total();
    assert_eq!(reached, CLIENTS as u64);

    let mut refused = allowed.clone();
    refused.version += 1;
    refused.body.origin_policy = OriginPolicy::default();
    edge.apply(&refused);
    for client in &clients {
        let got = get(client, &edge.url(HOST, "/")).await;
        assert_eq!(got.status, 502, "{}", got.text());
    }
    assert_eq!(origin.total(), reached, "no pooled connection was reused");
    edge.shutdown().await;
}
