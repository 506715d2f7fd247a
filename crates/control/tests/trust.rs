//! Tenant trust boundaries at the control API: hostnames belong to one tenant (no equal,
//! covering or covered name of another tenant; no public suffix; nothing in the platform
//! zone; no reserved service id), new names stay pending until domain control is proven
//! through a real DNS server (or the operator approves), origins cannot point inside the
//! platform, and TLS private keys are never read back. Every refusal changes nothing.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use common::{TestPlane, loopback_policy, service, start_with, tenant, tenant_key};
use hickory_resolver::proto::op::{Message, MessageType, ResponseCode};
use hickory_resolver::proto::rr::rdata::TXT;
use hickory_resolver::proto::rr::{RData, Record, RecordType};
use serde_json::{Value, json};
use tokio::net::UdpSocket;

/// A real authoritative DNS server on loopback answering TXT queries from a map that the
/// test changes as a tenant would publish records.
struct TxtServer {
    addr: std::net::SocketAddr,
    records: Arc<Mutex<HashMap<String, Vec<String>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl TxtServer {
    async fn start() -> TxtServer {
        let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind udp");
        let addr = sock.local_addr().expect("addr");
        let records: Arc<Mutex<HashMap<String, Vec<String>>>> = Arc::default();
        let map = records.clone();
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let Ok((n, peer)) = sock.recv_from(&mut buf).await else {
                    return;
                };
                let Ok(query) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                let mut answer = Message::response(query.metadata.id, query.metadata.op_code);
                answer.metadata.message_type = MessageType::Response;
                answer.metadata.authoritative = true;
                answer.metadata.recursion_desired = query.metadata.recursion_desired;
                answer.add_queries(query.queries.clone());
                let mut found = false;
                if let Some(q) = query.queries.first() {
                    let name = q.name().to_ascii().trim_end_matches('.').to_lowercase();
                    let values = map.lock().expect("lock").get(&name).cloned();
                    if let Some(values) = values {
                        found = true;
                        if q.query_type() == RecordType::TXT {
                            for v in values {
                                answer.add_answer(Record::from_rdata(
                                    q.name().clone(),
                                    0,
                                    RData::TXT(TXT::new(vec![v])),
                                ));
                            }
                        }
                    }
                }
                if !found {
                    answer.metadata.response_code = ResponseCode::NXDomain;
                }
                if let Ok(bytes) = answer.to_vec() {
                    let _ = sock.send_to(&bytes, peer).await;
                }
            }
        });
        TxtServer {
            addr,
            records,
            task,
        }
    }

    fn publish(&self, name: &str, value: &str) {
        self.records
            .lock()
            .expect("lock")
            .insert(name.to_owned(), vec![value.to_owned()]);
    }
}

impl Drop for TxtServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn plane_with_tenants() -> (TestPlane, common::Api, common::Api) {
    let plane = start_with(loopback_policy()).await;
    common::seed_topology(&plane.api).await;
    plane.api.create("tenants", tenant("evil")).await;
    let demo = plane.api.with_token(&tenant_key(&plane.api, "demo").await);
    let evil = plane.api.with_token(&tenant_key(&plane.api, "evil").await);
    (plane, demo, evil)
}

#[tokio::test]
async fn a_hostname_belongs_to_one_tenant() {
    let (mut plane, demo, evil) = plane_with_tenants().await;
    let op = plane.api.clone();
    // demo holds www.demo.example (service `shop`) and gets a wildcard of its own.
    demo.post(
        "/v1/services",
        service("img", "demo", &["*.img.demo.example"]),
    )
    .await
    .ok(201);
    let before = op.version().await;

    // Equal, covering, covered: refused with the name that conflicts.
    for (id, host, mentions) in [
        (
            "e1",
            "*.demo.example",
            "demo.example`, which another tenant holds",
        ),
        ("e2", "www.demo.example", "www.demo.example"),
        ("e3", "a.img.demo.example", "*.img.demo.example"),
        ("e4", "*.x.img.demo.example", "*.img.demo.example"),
        ("e5", "*.img.demo.example", "*.img.demo.example"),
    ] {
        let r = evil
            .post(
                "/v1/services",
                service(id, "evil", &["ok.evil.example", host]),
            )
            .await
            .err_field(409, "hostname_taken", "hostnames[1]");
        assert!(r.message().contains(mentions), "{host}: {}", r.message());
    }
    // Public suffixes, wildcards right under one, the platform zone.
    for host in [
        "com",
        "*.com",
        "co.uk",
        "*.co.uk",
        "*.github.io",
        "www.cdn.lingjing.test",
        "*.lingjing.test",
    ] {
        evil.post("/v1/services", service("e6", "evil", &[host]))
            .await
            .err_field(422, "invalid", "hostnames[0]");
    }
    // Reserved labels of the platform zone as service ids.
    for id in ["www", "ns", "ns2", "api"] {
        evil.post("/v1/services", service(id, "evil", &["a.evil.example"]))
            .await
            .err_field(409, "name_reserved", "id");
    }
    assert_eq!(op.version().await, before, "refusals change nothing");

    // The same tenant may overlap its own names (the edge routes exact names first).
    demo.post("/v1/services", service("all", "demo", &["*.demo.example"]))
        .await
        .ok(201);
    // And another tenant's unrelated names are fine.
    evil.post(
        "/v1/services",
        service("evil", "evil", &["www.evil.example"]),
    )
    .await
    .ok(201);
    plane.shutdown().await;
}

#[tokio::test]
async fn new_hostnames_wait_for_proof_of_domain_control() {
    let dns = TxtServer::start().await;
    let mut policy = loopback_policy();
    policy.challenge_resolver = Some(dns.addr);
    let mut plane = start_with(policy).await;
    let op = plane.api.clone();
    common::seed_topology(&op).await;
    op.create("tenants", tenant("evil")).await;
    let evil = op.with_token(&tenant_key(&op, "evil").await);

    let view = evil
        .post(
            "/v1/services",
            service("evil", "evil", &["www.evil.example", "*.cdn.evil.example"]),
        )
        .await
        .ok(201);
    let status = &view["hostname_status"];
    assert_eq!(status[0]["state"], "pending");
    assert_eq!(
        status[0]["challenge_name"],
        "_lingjing-challenge.www.evil.example"
    );
    assert_eq!(
        status[1]["challenge_name"],
        "_lingjing-challenge.cdn.evil.example"
    );
    let token = status[0]["challenge_value"]
        .as_str()
        .expect("token")
        .to_owned();
    assert_ne!(token, status[1]["challenge_value"].as_str().expect("token"));

    // Pending names reach no data plane.
    for role in ["edge", "dns"] {
        let snap = op.get(&format!("/v1/snapshots/{role}")).await.ok(200);
        assert_eq!(common::ids(&snap["body"]["services"]), ["shop"], "{role}");
    }

    // No record: still pending, and the answer says what to publish.
    let r = evil
        .post("/v1/services/evil/verify", json!({}))
        .await
        .ok(200);
    assert_eq!(r["hostnames"][0]["state"], "pending");
    assert!(
        r["hostnames"][0]["detail"]
            .as_str()
            .expect("detail")
            .contains(&token),
        "{r}"
    );
    // A wrong value does not pass; a tenant cannot approve itself.
    dns.publish(
        "_lingjing-challenge.www.evil.example",
        "lingjing-verify=guess",
    );
    let r = evil
        .post("/v1/services/evil/verify", Value::Null)
        .await
        .ok(200);
    assert_eq!(r["hostnames"][0]["state"], "pending");
    evil.post("/v1/services/evil/verify", json!({"approve": true}))
        .await
        .err(403, "forbidden");
    // A malformed body is refused, naming the field.
    evil.post("/v1/services/evil/verify", json!({"approve": "yes"}))
        .await
        .err_field(422, "invalid", "approve");
    evil.post("/v1/services/evil/verify", json!({"nope": 1}))
        .await
        .err(422, "invalid");
    // Another tenant cannot verify (or see) it.
    let demo = op.with_token(&tenant_key(&op, "demo").await);
    demo.post("/v1/services/evil/verify", json!({}))
        .await
        .err(404, "not_found");

    // The right value proves control of that name only.
    dns.publish("_lingjing-challenge.www.evil.example", &token);
    let before = op.version().await;
    let r = evil
        .post("/v1/services/evil/verify", json!({}))
        .await
        .ok(200);
    assert_eq!(r["hostnames"][0]["state"], "verified");
    assert_eq!(r["hostnames"][1]["state"], "pending");
    assert!(op.version().await > before, "verification is a change");
    let snap = op.get("/v1/snapshots/edge").await.ok(200);
    let served = snap["body"]["services"]
        .as_array()
        .expect("services")
        .iter()
        .find(|s| s["id"] == "evil")
        .expect("evil is served now")
        .clone();
    assert_eq!(served["hostnames"], json!(["www.evil.example"]));

    // The operator may approve the rest.
    let r = op
        .post("/v1/services/evil/verify", json!({"approve": true}))
        .await
        .ok(200);
    assert_eq!(r["hostnames"][1]["state"], "verified");
    // A kept name keeps its state across an update; a new one starts pending.
    let mut changed = service(
        "evil",
        "evil",
        &["www.evil.example", "*.cdn.evil.example", "new.evil.example"],
    );
    changed["tenant"] = json!("evil");
    let view = evil.put("/v1/services/evil", changed).await.ok(200);
    let states: Vec<&str> = view["hostname_status"]
        .as_array()
        .expect("status")
        .iter()
        .map(|s| s["state"].as_str().expect("state"))
        .collect();
    assert_eq!(states, ["verified", "verified", "pending"]);
    plane.shutdown().await;
}

#[tokio::test]
async fn origins_stay_outside_the_platform() {
    // The operator allows no private network here.
    let mut plane = start_with(lingjing_control::TrustPolicy::default()).await;
    let op = plane.api.clone();
    common::seed_topology_with_origin(&op, "93.184.216.34:80").await;
    op.create("tenants", tenant("evil")).await;
    let evil = op.with_token(&tenant_key(&op, "evil").await);
    // A node with a public address.
    op.create(
        "pools",
        common::pool("wx-1-pub", "wx-1", None, "1.2.3.0/29"),
    )
    .await;
    op.allocate("wx-1-pub", json!({"node": "wx-1-a", "address": "1.2.3.1"}))
        .await;
    let control = plane.handle.as_ref().expect("running").addr().to_string();
    let before = op.version().await;
    for origin in [
        "127.0.0.1:7900",
        control.as_str(),
        "127.0.1.1:9090",
        "10.0.0.1:80",
        "192.168.1.1:80",
        "169.254.169.254:80",
        "[::1]:80",
        "[::ffff:127.0.0.1]:80",
        "0.0.0.0:80",
        "1.2.3.1:8080",
        "1.2.3.1:22",
        "localhost:80",
        "api.cdn.lingjing.test:80",
    ] {
        let mut s = service("evil", "evil", &["www.evil.example"]);
        s["origins"] = json!([{ "address": origin }]);
        let r = evil
            .post("/v1/services", s)
            .await
            .err_field(422, "invalid", "origins[0].address");
        assert!(
            r.message().contains("platform")
                || r.message().contains("not a public address")
                || r.message().contains("this machine"),
            "{origin}: {}",
            r.message()
        );
    }
    assert_eq!(op.version().await, before, "refusals change nothing");
    let mut s = service("evil", "evil", &["www.evil.example"]);
    s["origins"] = json!([{ "address": "93.184.216.35:443", "tls": true }, { "address": "origin.evil.example:80" }]);
    evil.post("/v1/services", s).await.ok(201);

    // Edges get the same policy to check at connect time, after resolving names.
    let snap = op.get("/v1/snapshots/edge").await.ok(200);
    let policy = &snap["body"]["origin_policy"];
    assert_eq!(policy["allowed"], json!([]));
    assert!(
        policy["platform_addresses"]
            .as_array()
            .expect("addresses")
            .contains(&json!("1.2.3.1"))
    );
    assert!(
        policy["platform_endpoints"]
            .as_array()
            .expect("endpoints")
            .contains(&json!(control)),
        "{policy}"
    );
    plane.shutdown().await;
}

#[tokio::test]
async fn allowed_networks_still_refuse_platform_endpoints() {
    let mut plane = start_with(loopback_policy()).await;
    let op = plane.api.clone();
    common::seed_topology(&op).await;
    op.create("pools", common::pool("lo", "wx-1", None, "127.0.3.0/30"))
        .await;
    op.allocate("lo", json!({"node": "wx-1-a", "address": "127.0.3.1"}))
        .await;
    let control = plane.handle.as_ref().expect("running").addr().to_string();
    // Inside an allowed network a node's own ports and the control plane stay refused...
    for origin in [control.as_str(), "127.0.3.1:8080", "127.0.3.1:9090"] {
        let mut s = service("t", "demo", &["t.demo.example"]);
        s["origins"] = json!([{ "address": origin }]);
        op.post("/v1/services", s)
            .await
            .err_field(422, "invalid", "origins[0].address");
    }
    // ... other ports of that network are the operator's to allow.
    let mut s = service("t", "demo", &["t.demo.example"]);
    s["origins"] = json!([{ "address": "127.0.3.1:7900" }]);
    op.post("/v1/services", s).await.ok(201);
    plane.shutdown().await;
}

#[tokio::test]
async fn tls_private_keys_are_write_only() {
    let mut plane = start_with(loopback_policy()).await;
    let op = plane.api.clone();
    common::seed_topology(&op).await;
    let demo = op.with_token(&tenant_key(&op, "demo").await);
    let cert = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    let key = "-----BEGIN PRIVATE KEY-----\nsecret-key-material\n-----END PRIVATE KEY-----\n";
    let mut s = service("shop", "demo", &["www.demo.example"]);
    s["tls"] = json!({ "cert_pem": cert, "key_pem": key });
    let view = demo.put("/v1/services/shop", s.clone()).await.ok(200);
    assert_eq!(view["tls"]["cert_pem"], cert);
    assert_eq!(view["tls"]["key_pem"], "");
    for who in [&op, &demo] {
        let got = who.get("/v1/services/shop").await;
        assert!(!got.body.to_string().contains("secret-key-material"));
        let list = who.get("/v1/services").await;
        assert!(!list.body.to_string().contains("secret-key-material"));
    }
    // A PUT of what was read (key left empty) keeps the stored key; edges still get it.
    s["tls"]["key_pem"] = json!("");
    demo.put("/v1/services/shop", s).await.ok(200);
    let snap = op.get("/v1/snapshots/edge").await.ok(200);
    assert_eq!(snap["body"]["services"][0]["tls"]["key_pem"], key);
    // The DNS snapshot carries no keys at all.
    let snap = op.get("/v1/snapshots/dns").await.ok(200);
    assert!(!snap.to_string().contains("secret-key-material"));
    plane.shutdown().await;
}

#[tokio::test]
async fn limits_and_quotas_answer_with_the_limit() {
    let (mut plane, _demo, evil) = plane_with_tenants().await;
    let op = plane.api.clone();
    let before = op.version().await;

    // A body over the route's limit: 413 with the JSON error, before any parsing.
    let huge = format!(
        "{{\"id\": \"x\", \"pad\": \"{}\"}}",
        "a".repeat(2 * 1024 * 1024)
    );
    let r = evil
        .send(
            reqwest::Method::POST,
            "/v1/services",
            common::Body::Raw(Some("application/json"), huge.into_bytes()),
        )
        .await
        .err(413, "too_large");
    assert!(r.message().contains("limit"), "{}", r.message());

    // Lists per service are capped, naming the limit.
    let many: Vec<String> = (0..101).map(|i| format!("h{i}.evil.example")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let r = evil
        .post("/v1/services", service("evil", "evil", &many))
        .await
        .err_field(422, "invalid", "hostnames");
    assert!(r.message().contains("limit of 100"), "{}", r.message());
    let mut s = service("evil", "evil", &["www.evil.example"]);
    s["origins"] = json!(
        (0..17)
            .map(|i| json!({"address": format!("origin{i}.evil.example:80")}))
            .collect::<Vec<_>>()
    );
    evil.post("/v1/services", s)
        .await
        .err_field(422, "invalid", "origins");
    assert_eq!(op.version().await, before, "refusals change nothing");

    // API keys per tenant (two exist: plane_with_tenants made one for each tenant).
    for _ in 1..lingjing_model::tenant::MAX_API_KEYS {
        op.send(
            reqwest::Method::POST,
            "/v1/tenants/evil/keys",
            common::Body::None,
        )
        .await
        .ok(201);
    }
    op.send(
        reqwest::Method::POST,
        "/v1/tenants/evil/keys",
        common::Body::None,
    )
    .await
    .err(409, "limit_reached");

    // Quotas the operator sets: a tenant may read them, not raise them.
    let mut t = tenant("evil");
    t["quotas"] = json!({"services": 1, "purges_per_minute": 2});
    op.put("/v1/tenants/evil", t.clone()).await.ok(200);
    assert_eq!(
        evil.get("/v1/tenants/evil").await.ok(200)["quotas"]["services"],
        1
    );
    t["quotas"]["services"] = json!(1000);
    evil.put("/v1/tenants/evil", t).await.err(403, "forbidden");
    evil.post(
        "/v1/services",
        service("evil", "evil", &["www.evil.example"]),
    )
    .await
    .ok(201);
    let r = evil
        .post(
            "/v1/services",
            service("evil2", "evil", &["two.evil.example"]),
        )
        .await
        .err(403, "quota_exceeded");
    assert!(r.message().contains("quotas.services"), "{}", r.message());
    // A quota at its limit still lets the tenant change what it has.
    evil.put(
        "/v1/services/evil",
        service("evil", "evil", &["www.evil.example", "two.evil.example"]),
    )
    .await
    .ok(200);
    op.post("/v1/services/evil/verify", json!({"approve": true}))
        .await
        .ok(200);
    let purge =
        json!({"service": "evil", "kind": "prefix", "targets": ["http://www.evil.example/"]});
    for _ in 0..2 {
        evil.post("/v1/purges", purge.clone()).await.ok(201);
    }
    let r = evil.post("/v1/purges", purge.clone()).await;
    assert_eq!(
        r.headers.get("retry-after").map(|v| v.as_bytes()),
        Some(&b"60"[..])
    );
    let r = r.err(429, "rate_limited");
    assert!(r.message().contains("purges_per_minute"), "{}", r.message());
    // The operator is not held to a tenant's quota.
    op.post("/v1/purges", purge).await.ok(201);

    // The OpenAPI document states the list limits.
    let doc = op.get("/v1/openapi.json").await.ok(200);
    assert_eq!(
        doc["components"]["schemas"]["Service"]["properties"]["hostnames"]["maxItems"],
        100
    );
    plane.shutdown().await;
}

#[tokio::test]
async fn an_unverified_claim_holds_a_name_only_for_a_while() {
    // Default policy: another tenant's fresh pending claim holds the name.
    let (mut plane, demo, evil) = plane_with_tenants().await;
    evil.post(
        "/v1/services",
        service("evil", "evil", &["shop.demo.example"]),
    )
    .await
    .ok(201);
    let r = demo
        .post(
            "/v1/services",
            service("shop2", "demo", &["shop.demo.example"]),
        )
        .await
        .err_field(409, "hostname_taken", "hostnames[0]");
    assert!(r.message().contains("not verified yet"), "{}", r.message());
    plane.shutdown().await;

    // With claims released at once (pending_ttl 0): the real owner takes the name, and a
    // late proof of control cannot override another tenant's verified name.
    let dns = TxtServer::start().await;
    let mut policy = loopback_policy();
    policy.pending_ttl = std::time::Duration::ZERO;
    policy.challenge_resolver = Some(dns.addr);
    let mut plane = start_with(policy).await;
    let op = plane.api.clone();
    common::seed_topology(&op).await;
    op.create("tenants", tenant("evil")).await;
    let demo = op.with_token(&tenant_key(&op, "demo").await);
    let evil = op.with_token(&tenant_key(&op, "evil").await);
    let view = evil
        .post(
            "/v1/services",
            service(
                "evil",
                "evil",
                &[
                    "shop.demo.example",
                    "*.img.demo.example",
                    "www.evil.example",
                ],
            ),
        )
        .await
        .ok(201);
    let wildcard_token = view["hostname_status"][1]["challenge_value"]
        .as_str()
        .expect("token")
        .to_owned();
    demo.post(
        "/v1/services",
        service(
            "shop2",
            "demo",
            &["shop.demo.example", "a.img.demo.example"],
        ),
    )
    .await
    .ok(201);
    let evil_view = evil.get("/v1/services/evil").await.ok(200);
    assert_eq!(
        evil_view["hostnames"],
        json!(["*.img.demo.example", "www.evil.example"]),
        "the unverified claim was released"
    );
    op.post("/v1/services/shop2/verify", json!({"approve": true}))
        .await
        .ok(200);
    dns.publish("_lingjing-challenge.img.demo.example", &wildcard_token);
    let r = evil
        .post("/v1/services/evil/verify", json!({}))
        .await
        .ok(200);
    let wildcard = &r["hostnames"][0];
    assert_eq!(wildcard["hostname"], "*.img.demo.example");
    assert_eq!(wildcard["state"], "pending");
    assert!(
        wildcard["detail"]
            .as_str()
            .expect("detail")
            .contains("a.img.demo.example"),
        "{r}"
    );
    plane.shutdown().await;
}

/// Rows from before ownership checks (their `reversed` column empty, all verified): at
/// the next start a wildcard covering another tenant's name is withdrawn (pending), the
/// specific name keeps being served.
#[tokio::test]
async fn an_upgrade_withdraws_wildcards_over_other_tenants_names() {
    let (mut plane, _demo, evil) = plane_with_tenants().await;
    evil.post(
        "/v1/services",
        service("evil", "evil", &["*.elsewhere.example"]),
    )
    .await
    .ok(201);
    plane.shutdown().await;
    // As an older release would have stored it: evil's wildcard over demo's name.
    {
        let store = lingjing_control::Store::open_sqlite_file(&plane.db)
            .await
            .expect("open");
        sqlx::query(
            "UPDATE service_hostnames SET hostname = '*.demo.example', state = 'verified' \
             WHERE service_id = 'evil'",
        )
        .execute(store.pool())
        .await
        .expect("update");
        sqlx::query("UPDATE service_hostnames SET reversed = ''")
            .execute(store.pool())
            .await
            .expect("update");
        store.close().await;
    }
    let store = lingjing_control::Store::open_sqlite_file(&plane.db)
        .await
        .expect("reopen");
    let (handle, api) = common::serve_store(store).await;
    let snap = api.get("/v1/snapshots/edge").await.ok(200);
    let served: Vec<&str> = snap["body"]["services"]
        .as_array()
        .expect("services")
        .iter()
        .map(|s| s["id"].as_str().expect("id"))
        .collect();
    assert_eq!(served, ["shop"], "the covering wildcard is withdrawn");
    handle.shutdown().await.expect("shutdown");
}
