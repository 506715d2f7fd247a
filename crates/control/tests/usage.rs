//! Usage reports ride on heartbeats: summed per service, counted once per sequence number
//! (a resent report is not double-counted), readable per service by its tenant only; and
//! they set each node's load share, which the DNS snapshot carries for capacity steering.

mod common;

use serde_json::json;

#[tokio::test]
async fn usage_is_summed_counted_once_and_scoped_to_the_tenant() {
    let (mut plane, api) = common::start_seeded().await;
    let beat = |seq: u64, requests: u64, bytes: u64| {
        json!({"role": "edge", "applied_version": 1, "usage_seq": seq,
               "usage": [{"service": "shop", "requests": requests, "bytes_out": bytes}]})
    };
    api.post("/v1/nodes/wx-1-a/heartbeat", beat(10, 5, 500))
        .await
        .ok(204);
    api.post("/v1/nodes/wx-1-a/heartbeat", beat(10, 5, 500))
        .await
        .ok(204);
    api.post("/v1/nodes/wx-1-b/heartbeat", beat(10, 2, 20))
        .await
        .ok(204);
    api.post("/v1/nodes/wx-1-a/heartbeat", beat(11, 1, 1))
        .await
        .ok(204);
    // A late copy of an older report is not counted either.
    api.post("/v1/nodes/wx-1-a/heartbeat", beat(10, 5, 500))
        .await
        .ok(204);
    let usage = api.get("/v1/services/shop/usage").await.ok(200);
    assert_eq!(usage["requests"], 8, "{usage}");
    assert_eq!(usage["bytes_out"], 521);
    assert!(!usage["minutes"].as_array().expect("minutes").is_empty());

    let empty = api
        .get("/v1/services/shop/usage?from=2020-01-01T00:00:00Z&to=2020-01-02T00:00:00Z")
        .await
        .ok(200);
    assert_eq!(empty["requests"], 0);
    api.get("/v1/services/shop/usage?from=yesterday")
        .await
        .err(400, "bad_request");
    api.get("/v1/services/nope/usage")
        .await
        .err(404, "not_found");

    api.create("tenants", common::tenant("other")).await;
    let other = api.with_token(&common::tenant_key(&api, "other").await);
    other
        .get("/v1/services/shop/usage")
        .await
        .err(404, "not_found");
    let demo = api.with_token(&common::tenant_key(&api, "demo").await);
    assert_eq!(
        demo.get("/v1/services/shop/usage").await.ok(200)["requests"],
        8
    );
    plane.shutdown().await;
}

/// The load share of a node, from the DNS snapshot.
async fn load_in_dns_snapshot(api: &common::Api, node: &str) -> serde_json::Value {
    let dns = api
        .get("/v1/snapshots/dns?after=0&timeout_ms=0")
        .await
        .ok(200);
    dns["body"]["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .find(|n| n["node"]["id"] == node)
        .expect("node in snapshot")["load_percent"]
        .clone()
}

#[tokio::test]
async fn usage_reports_set_the_nodes_load_share_in_the_dns_snapshot() {
    let (mut plane, api) = common::start_seeded().await;
    let mut node = api.get("/v1/nodes/wx-1-a").await.ok(200);
    for k in ["addresses", "status"] {
        node.as_object_mut().expect("object").remove(k);
    }
    node["capacity_mbps"] = json!(1);
    api.put("/v1/nodes/wx-1-a", node).await.ok(200);
    let beat = |seq: u64, bytes: u64| {
        json!({"role": "edge", "applied_version": 1, "usage_seq": seq,
               "usage": [{"service": "shop", "requests": 1, "bytes_out": bytes}]})
    };
    // The first report starts the clock; traffic is measured over windows of at least
    // 5 s: 100 MB in a window of well under 80 s is far above 1 Mbit/s.
    let window = std::time::Duration::from_millis(5_100);
    api.post("/v1/nodes/wx-1-a/heartbeat", beat(1, 10))
        .await
        .ok(204);
    assert_eq!(load_in_dns_snapshot(&api, "wx-1-a").await, 0);
    tokio::time::sleep(window).await;
    let before = api.version().await;
    api.post("/v1/nodes/wx-1-a/heartbeat", beat(2, 100_000_000))
        .await
        .ok(204);
    assert!(
        api.version().await > before,
        "a new load share is a new version"
    );
    assert_eq!(load_in_dns_snapshot(&api, "wx-1-a").await, 255);
    let view = api.get("/v1/nodes/wx-1-a").await.ok(200);
    assert_eq!(view["status"]["load_percent"], 255, "{view}");
    assert!(view["status"]["load_mbps"].as_u64().expect("mbps") > 1);

    // Edge heartbeats without a report: nothing served. Within the window nothing is
    // measured (no noisy shares from heartbeats milliseconds apart); after it, 0.
    let idle = json!({"role": "edge", "applied_version": 1});
    api.post("/v1/nodes/wx-1-a/heartbeat", idle.clone())
        .await
        .ok(204);
    assert_eq!(load_in_dns_snapshot(&api, "wx-1-a").await, 255);
    tokio::time::sleep(window).await;
    api.post("/v1/nodes/wx-1-a/heartbeat", idle).await.ok(204);
    assert_eq!(load_in_dns_snapshot(&api, "wx-1-a").await, 0);
    plane.shutdown().await;
}
