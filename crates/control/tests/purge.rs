//! Purges through the API: issued by URL (service found from the host), prefix or tag,
//! carried in the edge snapshot, shown applied per node once the node acknowledges the
//! version, refused when invalid, and confined to the tenant's own services.

mod common;

use serde_json::{Value, json};

fn names(v: &Value) -> Vec<String> {
    let mut out: Vec<String> = v
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_owned))
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn purges_reach_the_snapshot_and_report_per_node_progress() {
    let (mut plane, api) = common::start_seeded().await;

    let issued = api
        .post(
            "/v1/purges",
            json!({"kind": "url", "targets": ["http://www.demo.example/index.html"]}),
        )
        .await
        .ok(201);
    assert_eq!(issued["service"], "shop");
    assert_eq!(issued["mode"], "hard");
    let version = issued["version"].as_u64().expect("version");
    assert_eq!(version, api.version().await);
    assert_eq!(names(&issued["pending"]), ["nj-1-a", "wx-1-a", "wx-1-b"]);

    let snapshot = api.get("/v1/snapshots/edge?after=0").await.ok(200);
    let purges = snapshot["body"]["purges"].as_array().expect("purges");
    assert_eq!(purges.len(), 1);
    assert_eq!(
        purges[0]["targets"][0],
        "http://www.demo.example/index.html"
    );
    assert_eq!(snapshot["body"]["purges_complete_after"], 0);

    api.post(
        "/v1/nodes/wx-1-a/heartbeat",
        json!({"role": "edge", "applied_version": version}),
    )
    .await
    .ok(204);
    let status = api
        .get(&format!("/v1/purges/{}", issued["id"]))
        .await
        .ok(200);
    assert_eq!(names(&status["applied"]), ["wx-1-a"]);
    assert_eq!(status["pending"].as_array().map(Vec::len), Some(2));

    let soft = api
        .post(
            "/v1/purges",
            json!({"kind": "tag", "service": "shop", "targets": ["product-7"], "mode": "soft"}),
        )
        .await
        .ok(201);
    assert!(soft["version"].as_u64() > Some(version));
    let listed = api.get("/v1/purges").await.ok(200);
    assert_eq!(listed.as_array().map(Vec::len), Some(2));
    assert_eq!(listed[0]["id"], soft["id"], "newest first");
    plane.shutdown().await;
}

#[tokio::test]
async fn bad_purges_are_refused_and_change_nothing() {
    let (mut plane, api) = common::start_seeded().await;
    let before = api.version().await;
    api.post(
        "/v1/purges",
        json!({"kind": "url", "targets": ["http://nobody.example/"]}),
    )
    .await
    .err_field(422, "invalid", "targets[0]");
    api.post(
        "/v1/purges",
        json!({"kind": "url", "targets": ["not a url"]}),
    )
    .await
    .err_field(422, "invalid", "targets[0]");
    api.post("/v1/purges", json!({"kind": "tag", "targets": ["t"]}))
        .await
        .err_field(422, "invalid", "service");
    api.post("/v1/purges", json!({"kind": "url", "targets": []}))
        .await
        .err_field(422, "invalid", "targets");
    api.post(
        "/v1/purges",
        json!({"kind": "everything", "targets": ["x"]}),
    )
    .await
    .err_field(422, "invalid", "kind");
    api.post(
        "/v1/purges",
        json!({"kind": "tag", "service": "nope", "targets": ["t"]}),
    )
    .await
    .err(404, "not_found");
    api.get("/v1/purges/999").await.err(404, "not_found");
    assert_eq!(api.version().await, before);
    assert_eq!(api.get("/v1/purges").await.ok(200), json!([]));
    plane.shutdown().await;
}

#[tokio::test]
async fn tenants_purge_only_their_own_services() {
    let (mut plane, api) = common::start_seeded().await;
    api.create("tenants", common::tenant("other")).await;
    api.create(
        "services",
        common::service("store", "other", &["shop.other.example"]),
    )
    .await;
    let demo = api.with_token(&common::tenant_key(&api, "demo").await);
    demo.post(
        "/v1/purges",
        json!({"kind": "prefix", "targets": ["http://www.demo.example/assets/"]}),
    )
    .await
    .ok(201);
    demo.post(
        "/v1/purges",
        json!({"kind": "tag", "service": "store", "targets": ["t"]}),
    )
    .await
    .err(404, "not_found");
    let theirs = api
        .post(
            "/v1/purges",
            json!({"kind": "url", "targets": ["http://shop.other.example/"]}),
        )
        .await
        .ok(201);
    demo.get(&format!("/v1/purges/{}", theirs["id"]))
        .await
        .err(404, "not_found");
    assert_eq!(
        demo.get("/v1/purges")
            .await
            .ok(200)
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    plane.shutdown().await;
}

/// A tenant's purge list is its own most recent purges, however many other tenants
/// issued since (not the platform's last 100 with the others' left out).
#[tokio::test]
async fn a_tenant_lists_its_own_purges_behind_another_tenants_many() {
    let (mut plane, api) = common::start_seeded().await;
    let mine = api
        .post(
            "/v1/purges",
            json!({"kind": "tag", "service": "shop", "targets": ["mine"]}),
        )
        .await
        .ok(201);
    let mut busy = common::tenant("busy");
    busy["quotas"] = json!({"purges_per_minute": 1000});
    api.create("tenants", busy).await;
    api.create(
        "services",
        common::service("busy-site", "busy", &["www.busy.example"]),
    )
    .await;
    for i in 0..100 {
        api.post(
            "/v1/purges",
            json!({"kind": "tag", "service": "busy-site", "targets": [format!("t{i}")]}),
        )
        .await
        .ok(201);
    }
    let demo = api.with_token(&common::tenant_key(&api, "demo").await);
    let listed = demo.get("/v1/purges").await.ok(200);
    let ids: Vec<&Value> = listed
        .as_array()
        .expect("list")
        .iter()
        .map(|p| &p["id"])
        .collect();
    assert_eq!(ids, [&mine["id"]], "{listed}");
    let all = api.get("/v1/purges").await.ok(200);
    assert_eq!(all.as_array().map(Vec::len), Some(100));
    assert!(
        all.as_array()
            .expect("list")
            .iter()
            .all(|p| p["service"] == "busy-site")
    );
    plane.shutdown().await;
}
