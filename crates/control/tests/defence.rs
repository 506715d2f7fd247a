//! Traffic defence in the control plane: who may add, see and remove rules (a tenant only
//! for its own services, a rule for every service only the operator), bad rules refused
//! naming the field, and edge reports turned into events and one fleet-wide rule that the
//! next edge snapshot carries (not in monitor mode; not from a node that is no edge).

mod common;

use common::{Api, service, tenant, tenant_key};
use serde_json::{Value, json};

async fn credential(api: &Api, node: &str) -> Api {
    let t = api
        .post(&format!("/v1/nodes/{node}/join-token"), json!({}))
        .await
        .ok(201);
    let token = t["join_token"].as_str().expect("join_token");
    let c = api
        .anonymous()
        .post(
            &format!("/v1/nodes/{node}/credential"),
            json!({ "join_token": token }),
        )
        .await
        .ok(201);
    api.with_token(c["credential"].as_str().expect("credential"))
}

fn report(incident: &str, mode: &str, blocked: &[&str], dropped: u64, now: u64) -> Value {
    json!({
        "incident": incident,
        "service": "shop",
        "started_ms": now - 2000,
        "detected_ms": now - 1000,
        "last_ms": now,
        "mode": mode,
        "dimensions": ["source"],
        "peak_rps": 900,
        "top_sources": blocked.iter().map(|b| json!({ "source": b, "rps": 300 })).collect::<Vec<_>>(),
        "blocked": blocked,
        "dropped": dropped,
    })
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[tokio::test]
async fn tenants_manage_rules_only_for_their_own_services() {
    let (mut plane, api) = common::start_seeded().await;
    api.create("tenants", tenant("rival")).await;
    api.create(
        "services",
        service("rival-shop", "rival", &["www.rival.example"]),
    )
    .await;
    let demo = api.with_token(&tenant_key(&api, "demo").await);
    let rival = api.with_token(&tenant_key(&api, "rival").await);

    let before = api.version().await;
    let rule = demo
        .post(
            "/v1/defence/rules",
            json!({ "service": "shop", "action": "block", "match": { "sources": ["192.0.2.7", "198.51.100.0/24"] }, "ttl_seconds": 600 }),
        )
        .await
        .ok(201);
    assert!(api.version().await > before, "a rule is a new version");
    let id = rule["id"].as_str().expect("id").to_owned();
    assert_eq!(
        rule["match"]["sources"],
        json!(["192.0.2.7/32", "198.51.100.0/24"])
    );
    assert_eq!(rule["tenant"], "demo");
    assert_eq!(rule["origin"], "manual");

    // Another tenant: not for the service, not for every service, and blind to the rule.
    rival
        .post(
            "/v1/defence/rules",
            json!({ "service": "shop", "action": "allow", "match": { "sources": ["203.0.113.9"] } }),
        )
        .await
        .err(404, "not_found");
    rival
        .post(
            "/v1/defence/rules",
            json!({ "action": "block", "match": { "sources": ["203.0.113.9"] } }),
        )
        .await
        .err_field(422, "invalid", "service");
    assert_eq!(rival.get("/v1/defence/rules").await.ok(200), json!([]));
    rival
        .get(&format!("/v1/defence/rules/{id}"))
        .await
        .err(404, "not_found");
    rival
        .delete(&format!("/v1/defence/rules/{id}"))
        .await
        .err(404, "not_found");

    // Bad rules, each refused naming the field; nothing written.
    let version = api.version().await;
    for (body, field) in [
        (
            json!({ "service": "shop", "action": "block", "match": { "sources": ["300.1.2.3"] } }),
            "match.sources",
        ),
        (
            json!({ "service": "shop", "action": "limit", "match": {} }),
            "rate",
        ),
        (
            json!({ "service": "shop", "action": "allow", "match": {} }),
            "match",
        ),
        (
            json!({ "service": "shop", "action": "block", "match": { "path": "login" } }),
            "match.path",
        ),
        (
            json!({ "service": "shop", "action": "block", "match": { "methods": ["get"] } }),
            "match.methods[0]",
        ),
        (
            json!({ "service": "shop", "action": "block", "match": { "user_agent": "x" }, "ttl_seconds": 0 }),
            "ttl_seconds",
        ),
    ] {
        let r = demo.post("/v1/defence/rules", body.clone()).await;
        let status = r.status;
        assert_eq!(status, 422, "{body}: {r:?}");
        assert!(
            r.field().is_some_and(|f| f.starts_with(field)),
            "{body}: field {:?}",
            r.field()
        );
    }
    assert_eq!(api.version().await, version);

    // The operator sees every rule and adds one for every service; the owner removes its own.
    api.post(
        "/v1/defence/rules",
        json!({ "action": "allow", "match": { "sources": ["10.0.0.0/8"] }, "note": "monitoring" }),
    )
    .await
    .ok(201);
    assert_eq!(
        api.get("/v1/defence/rules")
            .await
            .ok(200)
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    assert_eq!(
        demo.get("/v1/defence/rules")
            .await
            .ok(200)
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    demo.delete(&format!("/v1/defence/rules/{id}"))
        .await
        .ok(204);
    assert_eq!(demo.get("/v1/defence/rules").await.ok(200), json!([]));
    plane.shutdown().await;
}

#[tokio::test]
async fn edge_reports_become_one_event_and_one_fleet_wide_rule_sqlite() {
    let (mut plane, api) = common::start_seeded().await;
    reports(&api).await;
    plane.shutdown().await;
}

#[tokio::test]
async fn edge_reports_become_one_event_and_one_fleet_wide_rule_postgres() {
    lingjing_control::testing::with_scratch_postgres("the defence reports", |url| async move {
        let store = lingjing_control::Store::open(&url).await.expect("store");
        let (handle, api) = common::serve_store(store).await;
        common::seed_topology(&api).await;
        reports(&api).await;
        handle.shutdown().await.expect("shutdown");
    })
    .await;
}

/// Reports of one attack from two nodes, its end, refused reports, and monitor mode.
async fn reports(api: &Api) {
    api.create("nodes", common::node("dns-1", "nj-1", &["dns"]))
        .await;
    let a = credential(api, "wx-1-a").await;
    let b = credential(api, "wx-1-b").await;
    let dns = credential(api, "dns-1").await;
    let now = now_ms();

    // Node A finds two attackers and refuses them.
    let before = api.version().await;
    a.post(
        "/v1/nodes/wx-1-a/heartbeat",
        json!({ "role": "edge", "defence": [report("a-1", "enforce", &["192.0.2.1/32", "192.0.2.2/32"], 50, now)] }),
    )
    .await
    .ok(204);
    assert!(
        api.version().await > before,
        "the fleet-wide rule is a new version"
    );
    let snap = api
        .get("/v1/snapshots/edge?after=0&timeout_ms=10")
        .await
        .ok(200);
    let rules = snap["body"]["defence_rules"].as_array().expect("rules");
    assert_eq!(rules.len(), 1, "{rules:?}");
    assert_eq!(rules[0]["action"], "block");
    assert_eq!(rules[0]["service"], "shop");
    assert_eq!(
        rules[0]["match"]["sources"],
        json!(["192.0.2.1/32", "192.0.2.2/32"])
    );
    assert!(
        rules[0]["expires_ms"].as_u64() > Some(now),
        "it expires by itself"
    );

    // Node B reports the same attack with a third source: the same event, a grown rule.
    b.post(
        "/v1/nodes/wx-1-b/heartbeat",
        json!({ "role": "edge", "defence": [report("b-1", "enforce", &["192.0.2.3/32"], 30, now)] }),
    )
    .await
    .ok(204);
    // A resent report is the same report, not more of it.
    a.post(
        "/v1/nodes/wx-1-a/heartbeat",
        json!({ "role": "edge", "defence": [report("a-1", "enforce", &["192.0.2.1/32", "192.0.2.2/32"], 50, now)] }),
    )
    .await
    .ok(204);
    let events = api.get("/v1/defence/events").await.ok(200);
    let events = events.as_array().expect("events");
    assert_eq!(events.len(), 1, "{events:?}");
    let e = &events[0];
    assert_eq!(e["service"], "shop");
    assert_eq!(e["dropped"], 80);
    assert_eq!(e["peak_rps"], 900);
    assert_eq!(e["nodes"], json!(["wx-1-a", "wx-1-b"]));
    assert!(e["ended"].is_null());
    let rule = e["rule"].as_str().expect("rule");
    let shown = api.get(&format!("/v1/defence/rules/{rule}")).await.ok(200);
    assert_eq!(shown["match"]["sources"].as_array().map(Vec::len), Some(3));
    assert_eq!(shown["origin"]["detected"]["event"], e["id"]);

    // The tenant sees its event; another tenant does not.
    let demo = api.with_token(&tenant_key(api, "demo").await);
    assert_eq!(
        demo.get("/v1/defence/events")
            .await
            .ok(200)
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    api.create("tenants", tenant("rival")).await;
    let rival = api.with_token(&tenant_key(api, "rival").await);
    assert_eq!(rival.get("/v1/defence/events").await.ok(200), json!([]));
    assert_eq!(
        rival.get("/v1/defence/events?service=shop").await.ok(200),
        json!([]),
        "naming another tenant's service shows nothing"
    );
    api.get("/v1/defence/events?limit=0")
        .await
        .err_field(422, "invalid", "limit");
    api.get("/v1/defence/events?limit=lots")
        .await
        .err(400, "bad_request");

    // Both nodes report the end: the event ends.
    let mut end = report("a-1", "enforce", &["192.0.2.1/32", "192.0.2.2/32"], 60, now);
    end["ended"] = json!(true);
    a.post(
        "/v1/nodes/wx-1-a/heartbeat",
        json!({ "role": "edge", "defence": [end] }),
    )
    .await
    .ok(204);
    let mut end = report("b-1", "enforce", &["192.0.2.3/32"], 30, now);
    end["ended"] = json!(true);
    b.post(
        "/v1/nodes/wx-1-b/heartbeat",
        json!({ "role": "edge", "defence": [end] }),
    )
    .await
    .ok(204);
    let e = &api.get("/v1/defence/events").await.ok(200)[0];
    assert!(e["ended"].is_string(), "{e}");
    assert_eq!(e["dropped"], 90);

    // Only edges report attacks, and only well-formed ones.
    dns.post(
        "/v1/nodes/dns-1/heartbeat",
        json!({ "role": "dns", "defence": [report("d-1", "enforce", &["192.0.2.9/32"], 1, now)] }),
    )
    .await
    .err_field(422, "invalid", "defence");
    let mut bad = report("a-2", "enforce", &[], 1, now);
    bad["service"] = json!("Not An Id");
    a.post(
        "/v1/nodes/wx-1-a/heartbeat",
        json!({ "role": "edge", "defence": [bad] }),
    )
    .await
    .err(422, "invalid");

    // Monitor mode: an event, no rule.
    let version = api.version().await;
    let later = now + 60_000;
    let mut watch = report("a-3", "monitor", &["198.51.100.7/32"], 0, later);
    watch["started_ms"] = json!(later - 1000);
    a.post(
        "/v1/nodes/wx-1-a/heartbeat",
        json!({ "role": "edge", "defence": [watch] }),
    )
    .await
    .ok(204);
    assert_eq!(api.version().await, version, "monitor mode makes no rule");
    let events = api.get("/v1/defence/events").await.ok(200);
    assert_eq!(events.as_array().map(Vec::len), Some(2), "{events}");
    assert!(events[0]["rule"].is_null(), "{}", events[0]);
    assert_eq!(events[0]["mode"], "monitor");

    // A node's report never blocks the whole Internet, nor the platform's own nodes.
    let mut wide = report("a-9", "enforce", &["0.0.0.0/0"], 1, now);
    wide["started_ms"] = json!(now - 1000);
    a.post(
        "/v1/nodes/wx-1-a/heartbeat",
        json!({ "role": "edge", "defence": [wide] }),
    )
    .await
    .err_field(422, "invalid", "defence[0].blocked[0]");
    api.allocate(
        "wx-1-telecom",
        json!({ "node": "wx-1-a", "address": "10.1.0.1" }),
    )
    .await;
    let fleet = now + 90_000;
    let mut child = report(
        "b-9",
        "enforce",
        &["10.1.0.1/32", "192.0.2.50/32"],
        5,
        fleet,
    );
    child["started_ms"] = json!(fleet - 1000);
    b.post(
        "/v1/nodes/wx-1-b/heartbeat",
        json!({ "role": "edge", "defence": [child] }),
    )
    .await
    .ok(204);
    let events = api.get("/v1/defence/events").await.ok(200);
    let rule = events[0]["rule"].as_str().expect("a rule");
    let shown = api.get(&format!("/v1/defence/rules/{rule}")).await.ok(200);
    assert_eq!(shown["match"]["sources"], json!(["192.0.2.50/32"]));

    // Learned thresholds: 100 minutes of history from two nodes (the larger value kept).
    let first = (now / 60_000 - 200) * 60_000;
    let samples = |source: u64| -> Vec<Value> {
        (0..100u64)
            .map(|i| {
                json!({ "service": "shop", "minute_ms": first + i * 60_000,
                             "service_rps": 1000 + i, "source_rps": source, "prefix_rps": 300 })
            })
            .collect()
    };
    a.post(
        "/v1/nodes/wx-1-a/heartbeat",
        json!({ "role": "edge", "defence_baseline": samples(100) }),
    )
    .await
    .ok(204);
    b.post(
        "/v1/nodes/wx-1-b/heartbeat",
        json!({ "role": "edge", "defence_baseline": samples(40) }),
    )
    .await
    .ok(204);
    let version = api.version().await;
    let learned = api.post("/v1/defence/learned", json!({})).await.ok(200);
    assert_eq!(
        learned,
        json!([{ "service": "shop", "source_rps": 300, "prefix_rps": 900, "service_rps": 3282, "minutes": 100 }])
    );
    assert!(
        api.version().await > version,
        "learned thresholds are a new version"
    );
    let snap = api
        .get("/v1/snapshots/edge?after=0&timeout_ms=10")
        .await
        .ok(200);
    assert_eq!(snap["body"]["defence_learned"], learned);
    let version = api.version().await;
    api.post("/v1/defence/learned", json!({})).await.ok(200);
    assert_eq!(
        api.version().await,
        version,
        "unchanged thresholds publish nothing"
    );
    assert_eq!(demo.get("/v1/defence/learned").await.ok(200), learned);
    assert_eq!(rival.get("/v1/defence/learned").await.ok(200), json!([]));
    demo.post("/v1/defence/learned", json!({}))
        .await
        .err(403, "forbidden");
    let bad = json!([{ "service": "shop", "minute_ms": first + 7, "service_rps": 1, "source_rps": 1, "prefix_rps": 1 }]);
    a.post(
        "/v1/nodes/wx-1-a/heartbeat",
        json!({ "role": "edge", "defence_baseline": bad }),
    )
    .await
    .err_field(422, "invalid", "defence_baseline[0].minute_ms");
    dns.post(
        "/v1/nodes/dns-1/heartbeat",
        json!({ "role": "dns", "defence_baseline": samples(1) }),
    )
    .await
    .err_field(422, "invalid", "defence_baseline");
}
