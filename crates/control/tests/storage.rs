//! Object storage in the control plane: tenants' S3 keys (created by the operator or the
//! tenant itself, never by another tenant; secrets shown once and never listed), the
//! `storage` and `s3` snapshots (only gateways get the keys; each role only its own
//! nodes), the cluster token, and storage nodes' disk reports.

mod common;

use serde_json::{Value, json};

async fn snapshot(api: &common::Api, role: &str) -> Value {
    api.get(&format!("/v1/snapshots/{role}?after=0&timeout_ms=10"))
        .await
        .ok(200)
}

fn keys_of(snapshot: &Value) -> Vec<String> {
    snapshot["body"]["s3_keys"]
        .as_array()
        .expect("s3_keys")
        .iter()
        .map(|k| k["access_key"].as_str().expect("access_key").to_owned())
        .collect()
}

#[tokio::test]
async fn s3_keys_belong_to_their_tenant_and_reach_only_the_gateways() {
    let (mut plane, api) = common::start_seeded().await;
    api.create("tenants", common::tenant("rival")).await;
    api.create("nodes", common::node("wx-1-s", "wx-1", &["storage"]))
        .await;
    api.create("nodes", common::node("nj-1-g", "nj-1", &["s3"]))
        .await;

    let before = api.version().await;
    let key = api
        .post("/v1/tenants/demo/s3-keys", json!({}))
        .await
        .ok(201);
    let access = key["access_key"].as_str().expect("access_key").to_owned();
    let secret = key["secret"].as_str().expect("secret").to_owned();
    assert!(access.starts_with("LJ") && access.len() == 20, "{key}");
    assert_eq!(secret.len(), 40, "{key}");
    assert_eq!(key["tenant"], "demo");
    assert!(
        api.version().await > before,
        "a new key is a new snapshot version"
    );

    // A tenant manages its own keys, not another's.
    let demo = api.with_token(&common::tenant_key(&api, "demo").await);
    let rival = api.with_token(&common::tenant_key(&api, "rival").await);
    let own = demo
        .post("/v1/tenants/demo/s3-keys", json!({}))
        .await
        .ok(201);
    let r = rival
        .post("/v1/tenants/demo/s3-keys", json!({}))
        .await
        .err(403, "forbidden");
    assert!(r.message().contains("rival"), "{r:?}");
    rival
        .get("/v1/tenants/demo/s3-keys")
        .await
        .err(403, "forbidden");
    rival
        .delete(&format!("/v1/tenants/demo/s3-keys/{access}"))
        .await
        .err(403, "forbidden");
    // Nor through its own path: the key is not the rival's.
    rival
        .delete(&format!("/v1/tenants/rival/s3-keys/{access}"))
        .await
        .err(404, "not_found");
    api.post("/v1/tenants/nobody/s3-keys", json!({}))
        .await
        .err(404, "not_found");

    // Listed without secrets.
    let listed = demo.get("/v1/tenants/demo/s3-keys").await.ok(200);
    let text = listed.to_string();
    assert!(text.contains(&access), "{listed}");
    assert!(
        !text.contains(&secret) && !text.contains("secret"),
        "{listed}"
    );
    assert_eq!(listed.as_array().map(Vec::len), Some(2));

    // Only the gateway's snapshot carries the keys; both share the cluster token; each
    // role's credential reads only its own role.
    let storage = common::node_credential(&api, "wx-1-s").await;
    let gateway = common::node_credential(&api, "nj-1-g").await;
    let edge = common::node_credential(&api, "wx-1-a").await;
    let st = snapshot(&storage, "storage").await;
    let gw = snapshot(&gateway, "s3").await;
    let token = st["body"]["cluster_token"].as_str().expect("token");
    assert!(token.starts_with("ljs_") && token.len() > 20, "{st}");
    assert_eq!(gw["body"]["cluster_token"], token);
    assert_eq!(
        gw["body"]["replicas"], 3,
        "the platform's replication factor"
    );
    assert!(
        keys_of(&st).is_empty(),
        "storage nodes get no S3 keys: {st}"
    );
    let gw_keys = keys_of(&gw);
    assert!(gw_keys.contains(&access), "{gw}");
    assert!(gw.to_string().contains(&secret), "gateways need the secret");
    let nodes: Vec<&str> = gw["body"]["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| n["node"]["id"].as_str().expect("id"))
        .collect();
    assert_eq!(nodes, ["wx-1-s"], "only storage nodes");
    for (who, role) in [
        (&storage, "s3"),
        (&edge, "s3"),
        (&edge, "storage"),
        (&gateway, "storage"),
        (&gateway, "edge"),
    ] {
        who.get(&format!("/v1/snapshots/{role}?after=0&timeout_ms=10"))
            .await
            .err(403, "forbidden");
    }
    demo.get("/v1/snapshots/s3?after=0&timeout_ms=10")
        .await
        .err(403, "forbidden");

    // Revoked: gone from the next snapshot.
    demo.delete(&format!("/v1/tenants/demo/s3-keys/{access}"))
        .await
        .ok(204);
    demo.delete(&format!("/v1/tenants/demo/s3-keys/{access}"))
        .await
        .err(404, "not_found");
    let gw = snapshot(&gateway, "s3").await;
    assert!(!keys_of(&gw).contains(&access), "{gw}");
    assert!(keys_of(&gw).contains(&own["access_key"].as_str().expect("own").to_owned()));

    // A bounded number per tenant.
    for _ in 0..lingjing_model::tenant::MAX_S3_KEYS {
        api.post("/v1/tenants/rival/s3-keys", json!({}))
            .await
            .ok(201);
    }
    let r = api
        .post("/v1/tenants/rival/s3-keys", json!({}))
        .await
        .err(409, "limit_reached");
    assert!(r.message().contains("s3-key-revoke"), "{r:?}");
    plane.shutdown().await;
}

#[tokio::test]
async fn storage_nodes_report_their_disk_to_the_operator() {
    let (mut plane, api) = common::start_seeded().await;
    api.create("nodes", common::node("wx-1-s", "wx-1", &["storage"]))
        .await;
    let storage = common::node_credential(&api, "wx-1-s").await;
    let edge = common::node_credential(&api, "wx-1-a").await;

    let status = api.get("/v1/storage/status").await.ok(200);
    assert_eq!(status[0]["node"]["node"]["id"], "wx-1-s", "{status}");
    assert!(status[0]["report"].is_null(), "{status}");

    let report = json!({"used_bytes": 1000, "free_bytes": 5000, "blocks": 3,
        "last_scrub_ms": 1_764_000_000_000u64, "scrub_running": true, "corrupt_found": 2});
    storage
        .post(
            "/v1/nodes/wx-1-s/heartbeat",
            json!({"role": "storage", "applied_version": 1, "storage": report}),
        )
        .await
        .ok(204);
    let status = api.get("/v1/storage/status").await.ok(200);
    assert_eq!(status[0]["report"], report, "{status}");
    assert!(status[0]["reported_at"].is_string(), "{status}");

    // Only a storage node's heartbeat carries a disk report, and only for itself.
    edge.post(
        "/v1/nodes/wx-1-a/heartbeat",
        json!({"role": "edge", "storage": report}),
    )
    .await
    .err_field(422, "invalid", "storage");
    storage
        .post(
            "/v1/nodes/wx-1-a/heartbeat",
            json!({"role": "storage", "storage": report}),
        )
        .await
        .err(403, "forbidden");
    // The status is the operator's.
    let tenant = api.with_token(&common::tenant_key(&api, "demo").await);
    tenant.get("/v1/storage/status").await.err(403, "forbidden");
    storage
        .get("/v1/storage/status")
        .await
        .err(403, "forbidden");
    // So is asking the nodes to scrub (the control plane does it with the cluster token):
    // neither a tenant nor a node credential nor an anonymous caller may.
    tenant
        .post("/v1/storage/scrub", json!({}))
        .await
        .err(403, "forbidden");
    storage
        .post("/v1/storage/scrub", json!({}))
        .await
        .err(403, "forbidden");
    assert_eq!(
        api.anonymous()
            .post("/v1/storage/scrub", json!({}))
            .await
            .status,
        401
    );
    plane.shutdown().await;
}

/// The storage layout: version 0 lists every storage node with equal shares; a new one
/// must be the next version and name storage nodes only; a dry run changes nothing; an
/// applied layout reaches the gateways and storage nodes in their snapshot; only the
/// operator reads or changes it.
#[tokio::test]
async fn the_storage_layout_is_versioned_and_reaches_the_gateways() {
    let (mut plane, api) = common::start_seeded().await;
    for (id, site) in [
        ("wx-1-s", "wx-1"),
        ("wx-1-t", "wx-1"),
        ("nj-1-s", "nj-1"),
        ("nj-1-t", "nj-1"),
    ] {
        api.create("nodes", common::node(id, site, &["storage"]))
            .await;
    }
    api.create("nodes", common::node("nj-1-g", "nj-1", &["s3"]))
        .await;
    let layout = api.get("/v1/storage/layout").await.ok(200);
    assert_eq!(layout["version"], 0, "{layout}");
    assert_eq!(
        layout["nodes"].as_array().map(Vec::len),
        Some(4),
        "{layout}"
    );

    let next = |version: u64, nodes: Value| json!({"version": version, "nodes": nodes});
    let three = json!([
        {"node": "wx-1-s", "capacity_gib": 100},
        {"node": "wx-1-t", "capacity_gib": 100},
        {"node": "nj-1-s", "capacity_gib": 100},
        {"node": "nj-1-t", "capacity_gib": 400}
    ]);
    api.post("/v1/storage/layout", next(2, three.clone()))
        .await
        .err(409, "version_mismatch");
    api.post(
        "/v1/storage/layout",
        next(1, json!([{"node": "wx-1-a", "capacity_gib": 100}])),
    )
    .await
    .err_field(422, "invalid", "nodes[0].node");
    api.post(
        "/v1/storage/layout",
        next(1, json!([{"node": "wx-1-s", "capacity_gib": 0}])),
    )
    .await
    .err_field(422, "invalid", "nodes");
    // Fewer nodes with capacity than the policy's three copies: refused.
    api.post(
        "/v1/storage/layout",
        next(
            1,
            json!([{"node": "wx-1-s", "capacity_gib": 100}, {"node": "nj-1-s", "capacity_gib": 100}]),
        ),
    )
    .await
    .err_field(422, "invalid", "nodes");
    let tenant = api.with_token(&common::tenant_key(&api, "demo").await);
    tenant.get("/v1/storage/layout").await.err(403, "forbidden");
    tenant
        .post("/v1/storage/layout", next(1, three.clone()))
        .await
        .err(403, "forbidden");

    let dry = api
        .post("/v1/storage/layout?dry_run=true", next(1, three.clone()))
        .await
        .ok(200);
    assert_eq!(dry["dry_run"], true);
    assert_eq!(api.get("/v1/storage/layout").await.ok(200)["version"], 0);
    // nj-1-t going from a quarter to half of the shares moves some of the others'
    // pieces to it (three copies of each block on four nodes).
    let moved = dry["moved_fraction"].as_f64().expect("moved_fraction");
    assert!((0.02..0.4).contains(&moved), "{dry}");
    // Each node's share of pieces beside its capacity: nj-1-t has 4/7 of the capacity
    // but takes at most one of a block's three copies (a third), while wx-1's two nodes
    // take at least one copy of every block between them; so wx-1 fills first and less
    // than the 700 GiB is usable.
    let shares = dry["shares"].as_array().expect("shares");
    assert_eq!(shares.len(), 4, "{dry}");
    let total: f64 = shares
        .iter()
        .filter_map(|s| s["piece_share"].as_f64())
        .sum();
    assert!((0.99..1.01).contains(&total), "{dry}");
    let big = shares
        .iter()
        .find(|s| s["node"] == "nj-1-t")
        .expect("nj-1-t");
    assert!(big["piece_share"].as_f64() <= Some(0.34), "{dry}");
    let usable = dry["usable_gib"].as_u64().expect("usable_gib");
    assert!((300..700).contains(&usable), "{dry}");

    let applied = api
        .post("/v1/storage/layout", next(1, three.clone()))
        .await
        .ok(200);
    assert_eq!(applied["layout"]["version"], 1, "{applied}");
    assert!(applied["layout"]["applied_at"].is_string(), "{applied}");
    for role in ["s3", "storage"] {
        let s = snapshot(&api, role).await;
        assert_eq!(s["body"]["layout"]["version"], 1, "{role}: {s}");
        assert_eq!(s["body"]["layout"]["nodes"], three, "{role}: {s}");
    }
    // The next change must build on version 1.
    api.post("/v1/storage/layout", next(1, three))
        .await
        .err(409, "version_mismatch");
    plane.shutdown().await;
}

/// Per-bucket usage from the S3 gateways' heartbeats: traffic counted once per report
/// (a resend changes nothing), stored samples kept once per time, the mean over samples;
/// tenants read their own buckets only; only a gateway may report, within bounds.
#[tokio::test]
async fn bucket_usage_is_counted_once_and_read_per_tenant() {
    let (mut plane, api) = common::start_seeded().await;
    api.create("tenants", common::tenant("rival")).await;
    api.create("nodes", common::node("nj-1-g", "nj-1", &["s3"]))
        .await;
    let gateway = common::node_credential(&api, "nj-1-g").await;
    let edge = common::node_credential(&api, "wx-1-a").await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    let at = now - now % 300_000;
    let stored = |at_ms: u64, bytes: u64| {
        json!({"bucket": "photos", "tenant": "demo", "at_ms": at_ms, "objects": 2,
               "stored_bytes": bytes, "raw_bytes": bytes * 3 / 2, "parity_bytes": bytes / 2})
    };
    let beat = |seq: u64| {
        json!({"role": "s3", "usage_seq": seq,
            "bucket_traffic": [
                {"bucket": "photos", "tenant": "demo", "requests": 3, "bytes_in": 1000, "bytes_out": 5000},
                {"bucket": "rival-data", "tenant": "rival", "requests": 1, "bytes_in": 10, "bytes_out": 0}
            ],
            "bucket_stored": [stored(at - 300_000, 1000), stored(at, 3000)]})
    };
    gateway
        .post("/v1/nodes/nj-1-g/heartbeat", beat(now))
        .await
        .ok(204);
    // The same report again (its answer lost): counted once.
    gateway
        .post("/v1/nodes/nj-1-g/heartbeat", beat(now))
        .await
        .ok(204);
    let usage = api.get("/v1/storage/usage").await.ok(200);
    let photos = usage
        .as_array()
        .expect("array")
        .iter()
        .find(|u| u["bucket"] == "photos")
        .expect("photos")
        .clone();
    assert_eq!(photos["requests"], 3, "{usage}");
    assert_eq!(photos["bytes_in"], 1000, "{usage}");
    assert_eq!(photos["bytes_out"], 5000, "{usage}");
    assert_eq!(photos["samples"], 2, "{usage}");
    assert_eq!(photos["mean_stored_bytes"], 2000, "{usage}");
    assert_eq!(photos["stored"]["stored_bytes"], 3000, "{usage}");
    assert_eq!(photos["stored"]["parity_bytes"], 1500, "{usage}");

    // A tenant sees its own buckets only.
    let demo = api.with_token(&common::tenant_key(&api, "demo").await);
    let own = demo.get("/v1/storage/usage").await.ok(200);
    let buckets: Vec<&str> = own
        .as_array()
        .expect("array")
        .iter()
        .map(|u| u["bucket"].as_str().expect("bucket"))
        .collect();
    assert_eq!(buckets, ["photos"], "{own}");
    demo.get("/v1/storage/usage?tenant=rival")
        .await
        .err(403, "forbidden");

    // Only a gateway reports bucket usage; traffic needs a sequence number; names are
    // checked.
    edge.post(
        "/v1/nodes/wx-1-a/heartbeat",
        json!({"role": "edge", "usage_seq": 1, "bucket_traffic": [
            {"bucket": "photos", "tenant": "demo", "requests": 1, "bytes_in": 0, "bytes_out": 0}]}),
    )
    .await
    .err_field(422, "invalid", "bucket_traffic");
    gateway
        .post(
            "/v1/nodes/nj-1-g/heartbeat",
            json!({"role": "s3", "bucket_traffic": [
                {"bucket": "photos", "tenant": "demo", "requests": 1, "bytes_in": 0, "bytes_out": 0}]}),
        )
        .await
        .err_field(422, "invalid", "usage_seq");
    gateway
        .post(
            "/v1/nodes/nj-1-g/heartbeat",
            json!({"role": "s3", "bucket_stored": [
                {"bucket": "../etc", "tenant": "demo", "at_ms": at, "objects": 0,
                 "stored_bytes": 0, "raw_bytes": 0, "parity_bytes": 0}]}),
        )
        .await
        .err_field(422, "invalid", "bucket");
    let again = api.get("/v1/storage/usage").await.ok(200);
    assert_eq!(again, usage, "refused reports changed nothing");
    plane.shutdown().await;
}

/// The console's S3 key: one per tenant, made on first use (a new version then, none
/// after), only for the tenant itself or the operator, in the gateways' snapshot, and
/// replaced after it is revoked.
#[tokio::test]
async fn a_tenants_console_s3_key_is_made_once_and_reaches_the_gateways() {
    let (mut plane, api) = common::start_seeded().await;
    api.create("tenants", common::tenant("rival")).await;
    api.create("nodes", common::node("nj-1-g", "nj-1", &["s3"]))
        .await;
    let demo = api.with_token(&common::tenant_key(&api, "demo").await);
    let rival = api.with_token(&common::tenant_key(&api, "rival").await);

    let before = api.version().await;
    let first = demo
        .post("/v1/tenants/demo/s3-keys/console", json!({}))
        .await
        .ok(200);
    let access = first["access_key"].as_str().expect("access_key").to_owned();
    assert!(access.starts_with("LJW") && access.len() == 20, "{first}");
    assert_eq!(first["created"], true);
    let made = api.version().await;
    assert!(made > before, "a new key is a new snapshot version");
    assert!(keys_of(&snapshot(&api, "s3").await).contains(&access));
    assert!(
        first["gateways"].is_array(),
        "the gateways that are up: {first}"
    );

    let again = demo
        .post("/v1/tenants/demo/s3-keys/console", json!({}))
        .await
        .ok(200);
    assert_eq!(again["access_key"], first["access_key"]);
    assert_eq!(again["secret"], first["secret"]);
    assert_eq!(again["created"], false);
    assert_eq!(api.version().await, made, "reading it changes nothing");
    let by_operator = api
        .post("/v1/tenants/demo/s3-keys/console", json!({}))
        .await
        .ok(200);
    assert_eq!(by_operator["access_key"], first["access_key"]);
    rival
        .post("/v1/tenants/demo/s3-keys/console", json!({}))
        .await
        .err(403, "forbidden");

    // Listed and revoked like any key; the next use makes another.
    let listed = demo.get("/v1/tenants/demo/s3-keys").await.ok(200);
    assert!(listed.to_string().contains(&access), "{listed}");
    demo.delete(&format!("/v1/tenants/demo/s3-keys/{access}"))
        .await
        .ok(204);
    assert!(!keys_of(&snapshot(&api, "s3").await).contains(&access));
    let fresh = demo
        .post("/v1/tenants/demo/s3-keys/console", json!({}))
        .await
        .ok(200);
    assert_ne!(fresh["access_key"], first["access_key"]);
    assert_eq!(fresh["created"], true);
    plane.shutdown().await;
}
