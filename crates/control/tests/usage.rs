//! Usage reports ride on heartbeats: summed per service, counted once per sequence number
//! (a resent report is not double-counted), readable per service by its tenant only.

mod common;

use serde_json::json;

#[tokio::test]
async fn usage_is_summed_counted_once_and_scoped_to_the_tenant() {
    let mut plane = common::start().await;
    let api = plane.api.clone();
    common::seed_topology(&api).await;
    let beat = |seq: u64, requests: u64, bytes: u64| {
        json!({"role": "edge", "applied_version": 1, "usage_seq": seq,
               "usage": [{"service": "www", "requests": requests, "bytes_out": bytes}]})
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
    let usage = api.get("/v1/services/www/usage").await.ok(200);
    assert_eq!(usage["requests"], 8, "{usage}");
    assert_eq!(usage["bytes_out"], 521);
    assert!(!usage["minutes"].as_array().expect("minutes").is_empty());

    let empty = api
        .get("/v1/services/www/usage?from=2020-01-01T00:00:00Z&to=2020-01-02T00:00:00Z")
        .await
        .ok(200);
    assert_eq!(empty["requests"], 0);
    api.get("/v1/services/www/usage?from=yesterday")
        .await
        .err(400, "bad_request");
    api.get("/v1/services/nope/usage")
        .await
        .err(404, "not_found");

    api.create("tenants", common::tenant("other")).await;
    let other = api.with_token(&common::tenant_key(&api, "other").await);
    other
        .get("/v1/services/www/usage")
        .await
        .err(404, "not_found");
    let demo = api.with_token(&common::tenant_key(&api, "demo").await);
    assert_eq!(
        demo.get("/v1/services/www/usage").await.ok(200)["requests"],
        8
    );
    plane.shutdown().await;
}
