//! The control plane's REST API end to end: each test starts a real control plane on a
//! loopback port over a fresh SQLite file and talks HTTP to it. Covers CRUD of every
//! resource kind, validation and refusals (which must change nothing), deletes refused
//! while referenced, tenant isolation, concurrent IPAM, snapshot long-polling, heartbeats,
//! line tables, and the OpenAPI document.

mod common;

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::time::Duration;

use common::{
    Api, Body, assert_subset, ids, line, node, pool, region, service, site, start, start_seeded,
    tenant, tenant_key,
};
use reqwest::Method;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

const KINDS: [&str; 7] = [
    "regions", "lines", "sites", "nodes", "pools", "tenants", "services",
];

/// Every resource list, to check that a refused request changed nothing.
async fn everything(api: &Api) -> Vec<Value> {
    let mut all = Vec::new();
    for kind in KINDS {
        all.push(api.get(&format!("/v1/{kind}")).await.ok(200));
    }
    for line in ["telecom", "unicom"] {
        all.push(api.get(&format!("/v1/lines/{line}/prefixes")).await.ok(200));
    }
    all.push(api.get("/v1/pools/wx-1-telecom/allocations").await.ok(200));
    all
}

#[tokio::test]
async fn crud_round_trip_of_every_kind() {
    let (mut plane, api) = start_seeded().await;

    // Lists are ordered by id, whatever the order of creation.
    assert_eq!(
        api.ids("regions").await,
        ["cn", "cn-js", "cn-js-nanjing", "cn-js-wuxi"]
    );
    assert_eq!(api.ids("lines").await, ["telecom", "unicom"]);
    assert_eq!(api.ids("sites").await, ["nj-1", "wx-1"]);
    assert_eq!(api.ids("nodes").await, ["nj-1-a", "wx-1-a", "wx-1-b"]);
    assert_eq!(api.ids("pools").await, ["wx-1-telecom"]);
    assert_eq!(api.ids("tenants").await, ["demo"]);
    assert_eq!(api.ids("services").await, ["shop"]);

    // What was created reads back, with defaults and the views' extra fields.
    let r = api.get("/v1/regions/cn-js-wuxi").await.ok(200);
    assert_subset(&r, &region("cn-js-wuxi", Some("cn-js"), "city"));
    assert_eq!(r["tier"], "edge");
    let l = api.get("/v1/lines/telecom").await.ok(200);
    assert_subset(&l, &line("telecom"));
    assert_eq!(l["prefix_count"], 0);
    let s = api.get("/v1/sites/wx-1").await.ok(200);
    assert_subset(
        &s,
        &site("wx-1", "cn-js-wuxi", &["telecom", "unicom"], Some("nj-1")),
    );
    let n = api.get("/v1/nodes/wx-1-a").await.ok(200);
    assert_subset(&n, &node("wx-1-a", "wx-1", &["edge"]));
    assert_eq!(
        n["ports"],
        json!({ "http": 8080, "https": 8443, "admin": 9090 })
    );
    assert_eq!(n["drained"], false);
    assert_eq!(n["addresses"], json!([]));
    assert_eq!(n["status"]["last_heartbeat"], Value::Null);
    let p = api.get("/v1/pools/wx-1-telecom").await.ok(200);
    assert_subset(
        &p,
        &pool("wx-1-telecom", "wx-1", Some("telecom"), "10.1.0.0/28"),
    );
    assert_eq!(
        (p["allocated"].clone(), p["capacity"].clone()),
        (json!(0), json!(14))
    );
    let t = api.get("/v1/tenants/demo").await.ok(200);
    assert_subset(&t, &tenant("demo"));
    let svc = api.get("/v1/services/shop").await.ok(200);
    assert_subset(&svc, &service("shop", "demo", &["www.demo.example"]));
    assert_eq!(svc["cname"], "shop.cdn.lingjing.test.");
    assert_eq!(svc["steering"]["answer_count"], 2);

    // Creating any of them again is refused and names the id.
    let again = [
        ("regions", region("cn", None, "country")),
        ("lines", line("telecom")),
        ("sites", site("nj-1", "cn-js-nanjing", &[], None)),
        ("nodes", node("wx-1-a", "wx-1", &["edge"])),
        ("pools", pool("wx-1-telecom", "wx-1", None, "10.9.0.0/24")),
        ("tenants", tenant("demo")),
        ("services", service("shop", "demo", &["other.demo.example"])),
    ];
    for (kind, body) in again {
        api.post(&format!("/v1/{kind}"), body)
            .await
            .err_field(409, "already_exists", "id");
    }

    // Updates through PUT are visible to GET and to the list.
    let mut r = region("cn-js-wuxi", Some("cn-js"), "city");
    r["name"] = json!("Wuxi City");
    r["tier"] = json!("regional");
    assert_subset(
        &api.put("/v1/regions/cn-js-wuxi", r.clone()).await.ok(200),
        &r,
    );
    let mut l = line("telecom");
    l["description"] = json!("China Telecom");
    api.put("/v1/lines/telecom", l.clone()).await.ok(200);
    let mut s = site("wx-1", "cn-js-wuxi", &["telecom"], None);
    s["bandwidth_mbps"] = json!(40000);
    api.put("/v1/sites/wx-1", s.clone()).await.ok(200);
    let mut n = node("wx-1-a", "wx-1", &["edge", "parent"]);
    n["drained"] = json!(true);
    n["ports"] = json!({ "http": 80, "https": 443, "admin": 9100 });
    api.put("/v1/nodes/wx-1-a", n.clone()).await.ok(200);
    let mut p = pool("wx-1-telecom", "wx-1", Some("telecom"), "10.1.0.0/28");
    p["reserved"] = json!(["10.1.0.1", "10.1.0.2"]);
    let pv = api.put("/v1/pools/wx-1-telecom", p.clone()).await.ok(200);
    assert_eq!(pv["capacity"], 12);
    let mut t = tenant("demo");
    t["contact"] = json!("ops@demo.example");
    api.put("/v1/tenants/demo", t.clone()).await.ok(200);
    let mut svc = service("shop", "demo", &["www.demo.example", "img.demo.example"]);
    svc["origins"] = json!([
        { "address": "origin.demo.example:443", "weight": 3, "tls": true },
        { "address": "127.0.0.1:7901", "backup": true }
    ]);
    svc["cache_rules"] = json!([{ "path": "/assets/*", "ttl_secs": 3600 }]);
    svc["steering"] = json!({ "sites": ["wx-1"], "fallback_sites": ["nj-1"], "ttl": 30 });
    api.put("/v1/services/shop", svc.clone()).await.ok(200);

    assert_subset(&api.get("/v1/regions/cn-js-wuxi").await.ok(200), &r);
    assert_subset(&api.get("/v1/lines/telecom").await.ok(200), &l);
    assert_subset(&api.get("/v1/sites/wx-1").await.ok(200), &s);
    assert_subset(&api.get("/v1/nodes/wx-1-a").await.ok(200), &n);
    assert_subset(&api.get("/v1/pools/wx-1-telecom").await.ok(200), &p);
    assert_subset(&api.get("/v1/tenants/demo").await.ok(200), &t);
    let got = api.get("/v1/services/shop").await.ok(200);
    assert_subset(&got, &svc);
    assert_eq!(got["origins"][1]["weight"], 1, "default weight");
    assert_eq!(got["steering"]["answer_count"], 2, "default answer count");
    let listed = api.get("/v1/services").await.ok(200);
    assert_subset(&listed[0], &svc);

    // Unknown ids answer 404 to every verb.
    for kind in KINDS {
        api.get(&format!("/v1/{kind}/nope"))
            .await
            .err(404, "not_found");
        api.delete(&format!("/v1/{kind}/nope"))
            .await
            .err(404, "not_found");
    }
    api.put("/v1/tenants/nope", tenant("nope"))
        .await
        .err(404, "not_found");

    // Delete everything, referrers first; each is gone afterwards.
    let order = [
        ("services", "shop"),
        ("tenants", "demo"),
        ("pools", "wx-1-telecom"),
        ("nodes", "wx-1-a"),
        ("nodes", "wx-1-b"),
        ("nodes", "nj-1-a"),
        ("sites", "wx-1"),
        ("sites", "nj-1"),
        ("lines", "telecom"),
        ("lines", "unicom"),
        ("regions", "cn-js-wuxi"),
        ("regions", "cn-js-nanjing"),
        ("regions", "cn-js"),
        ("regions", "cn"),
    ];
    for (kind, id) in order {
        let path = format!("/v1/{kind}/{id}");
        api.delete(&path).await.ok(204);
        api.get(&path).await.err(404, "not_found");
        api.delete(&path).await.err(404, "not_found");
    }
    for kind in KINDS {
        assert!(api.ids(kind).await.is_empty(), "{kind} left over");
    }

    // A deleted id can be used again.
    api.create("tenants", tenant("demo")).await;
    plane.shutdown().await;
}

#[tokio::test]
async fn refused_requests_answer_clearly_and_change_nothing() {
    let (mut plane, api) = start_seeded().await;
    let before = everything(&api).await;
    let version = api.version().await;

    // Not JSON at all: 400.
    let bad_json = [
        "{",
        "{\"id\": \"x\",}",
        "nonsense",
        "",
        // A complete, valid body followed by more.
        "{\"id\": \"x\", \"name\": \"X\", \"level\": \"country\"} trailing",
        "{\"id\": \"x\", \"name\": \"X\", \"level\": \"country\"} {}",
    ];
    for body in bad_json {
        api.send(
            Method::POST,
            "/v1/regions",
            Body::Raw(Some("application/json"), body.as_bytes().to_vec()),
        )
        .await
        .err(400, "bad_request");
    }
    // JSON without the JSON content type: 400.
    api.send(
        Method::POST,
        "/v1/tenants",
        Body::Raw(Some("text/plain"), tenant("x").to_string().into_bytes()),
    )
    .await
    .err(400, "bad_request");
    api.send(
        Method::POST,
        "/v1/tenants",
        Body::Raw(None, tenant("x").to_string().into_bytes()),
    )
    .await
    .err(400, "bad_request");

    // Wrong types and missing fields: 422 naming the field.
    let mut s = service("new", "demo", &["new.demo.example"]);
    s["origins"][0]["weight"] = json!("heavy");
    api.post("/v1/services", s)
        .await
        .err_field(422, "invalid", "origins[0].weight");
    let mut s = service("new", "demo", &["new.demo.example"]);
    s["origins"][0]["weight"] = json!(-1);
    api.post("/v1/services", s)
        .await
        .err_field(422, "invalid", "origins[0].weight");
    let mut s = service("new", "demo", &["new.demo.example"]);
    s["steering"] = json!({ "answer_count": 300 });
    api.post("/v1/services", s)
        .await
        .err_field(422, "invalid", "steering.answer_count");
    let mut s = service("new", "demo", &["new.demo.example"]);
    s["origins"] = json!([{ "weight": 2 }]);
    api.post("/v1/services", s)
        .await
        .err_field(422, "invalid", "origins[0].address");
    api.post(
        "/v1/sites",
        json!({ "id": "x-1", "name": "X", "lines": [] }),
    )
    .await
    .err_field(422, "invalid", "region");
    api.post(
        "/v1/regions",
        json!({ "id": "x", "name": "X", "level": "planet" }),
    )
    .await
    .err_field(422, "invalid", "level");
    api.post("/v1/tenants", json!(["demo"]))
        .await
        .err(422, "invalid");
    let mut t = tenant("x");
    t["unknown_field"] = json!(1);
    api.post("/v1/tenants", t).await.err(422, "invalid");

    // Well-formed but invalid: 422 naming the field.
    let mut s = service("new", "demo", &["new.demo.example"]);
    s["origins"][0]["weight"] = json!(0);
    api.post("/v1/services", s)
        .await
        .err_field(422, "invalid", "origins[0].weight");
    api.post("/v1/services", service("new", "demo", &["Bad_Host"]))
        .await
        .err_field(422, "invalid", "hostnames[0]");
    api.post("/v1/tenants", tenant("Not-A-Slug"))
        .await
        .err_field(422, "invalid", "id");
    api.post("/v1/regions", region("x", None, "city"))
        .await
        .err_field(422, "invalid", "parent");
    api.post("/v1/pools", pool("p", "wx-1", None, "10.1.0.1/28"))
        .await
        .err_field(422, "invalid", "cidr");
    api.post("/v1/nodes", node("n", "wx-1", &[]))
        .await
        .err_field(422, "invalid", "roles");

    // References to what does not exist: 422 naming the referring field.
    api.post("/v1/sites", site("x-1", "nowhere", &[], None))
        .await
        .err_field(422, "invalid", "region");
    api.post(
        "/v1/sites",
        site("x-1", "cn-js", &["telecom", "nocarrier"], None),
    )
    .await
    .err_field(422, "invalid", "lines[1]");
    api.post("/v1/nodes", node("n", "nosite", &["edge"]))
        .await
        .err_field(422, "invalid", "site");
    api.post(
        "/v1/pools",
        pool("p", "wx-1", Some("noline"), "10.2.0.0/24"),
    )
    .await
    .err_field(422, "invalid", "line");
    api.post("/v1/regions", region("x", Some("noparent"), "city"))
        .await
        .err_field(422, "invalid", "parent");
    api.post(
        "/v1/services",
        service("new", "nobody", &["new.demo.example"]),
    )
    .await
    .err_field(422, "invalid", "tenant");
    let mut s = service("new", "demo", &["new.demo.example"]);
    s["steering"] = json!({ "sites": ["wx-1", "nosite"] });
    api.post("/v1/services", s)
        .await
        .err_field(422, "invalid", "steering.sites[1]");

    // A region inside a smaller one, and a PUT that would make the tree inconsistent.
    api.post("/v1/regions", region("x", Some("cn-js-wuxi"), "province"))
        .await
        .err_field(422, "invalid", "level");
    api.put(
        "/v1/regions/cn",
        region("cn", Some("cn-js-wuxi"), "country"),
    )
    .await
    .err(422, "invalid");

    // The id of a PUT body must be the one in the path.
    api.put("/v1/tenants/demo", tenant("other"))
        .await
        .err_field(422, "invalid", "id");
    api.put(
        "/v1/services/shop",
        service("www2", "demo", &["www.demo.example"]),
    )
    .await
    .err_field(422, "invalid", "id");
    // ... and the owner of a service cannot change.
    api.create("tenants", tenant("other")).await;
    api.put(
        "/v1/services/shop",
        service("shop", "other", &["www.demo.example"]),
    )
    .await
    .err_field(422, "invalid", "tenant");
    api.delete("/v1/tenants/other").await.ok(204);

    // Without a valid token: 401.
    let anon = api.anonymous();
    anon.get("/v1/regions").await.err(401, "unauthorized");
    anon.post("/v1/tenants", tenant("x"))
        .await
        .err(401, "unauthorized");
    anon.get("/v1/snapshots/edge?after=0")
        .await
        .err(401, "unauthorized");
    let wrong = api.with_token("not-the-operator-token");
    wrong.get("/v1/regions").await.err(401, "unauthorized");
    wrong
        .delete("/v1/services/shop")
        .await
        .err(401, "unauthorized");
    api.with_token("ljk_000000000000_bogus")
        .get("/v1/services")
        .await
        .err(401, "unauthorized");
    for auth in [
        common::OPERATOR_TOKEN.to_owned(),
        format!("Basic {}", common::OPERATOR_TOKEN),
        "Bearer".to_owned(),
    ] {
        api.send_with_auth(Method::GET, "/v1/tenants", Some(&auth), Body::None)
            .await
            .err(401, "unauthorized");
    }

    // Unknown endpoints are JSON 404s too.
    api.get("/v1/widgets").await.err(404, "not_found");
    api.get("/v1/snapshots/widget").await.err(404, "not_found");

    // None of that changed anything, not even the configuration version.
    assert_eq!(everything(&api).await, before);
    assert_eq!(
        api.version().await,
        version + 2,
        "only the two writes of `other`"
    );
    plane.shutdown().await;
}

/// A child region may not be as large as its parent, also after its parent is changed.
#[tokio::test]
async fn region_tree_stays_ordered_when_a_parent_changes() {
    let (mut plane, api) = start_seeded().await;
    let before = everything(&api).await;
    // `cn-js` has the cities `cn-js-wuxi` and `cn-js-nanjing` inside it.
    api.put("/v1/regions/cn-js", region("cn-js", Some("cn"), "county"))
        .await
        .err_field(422, "invalid", "level");
    assert_eq!(everything(&api).await, before);
    plane.shutdown().await;
}

/// Sites fill their caches from their parent site: the chain must not loop.
#[tokio::test]
async fn site_parents_cannot_form_a_cycle() {
    let (mut plane, api) = start_seeded().await;
    let before = everything(&api).await;
    // `wx-1` fills from `nj-1`; making `nj-1` fill from `wx-1` would loop.
    api.put(
        "/v1/sites/nj-1",
        site(
            "nj-1",
            "cn-js-nanjing",
            &["telecom", "unicom"],
            Some("wx-1"),
        ),
    )
    .await
    .err_field(422, "invalid", "parent");
    assert_eq!(everything(&api).await, before);
    plane.shutdown().await;
}

#[tokio::test]
async fn deletes_are_refused_while_referenced() {
    let (mut plane, api) = start_seeded().await;
    api.allocate("wx-1-telecom", json!({ "node": "wx-1-a" }))
        .await;
    api.put(
        "/v1/lines/unicom/prefixes",
        json!([{ "cidr": "203.0.113.0/24", "line": "unicom", "region": "cn-js-nanjing" }]),
    )
    .await
    .ok(200);
    let before = everything(&api).await;

    let in_use = [
        "/v1/regions/cn",            // parent of cn-js
        "/v1/regions/cn-js-wuxi",    // region of wx-1
        "/v1/regions/cn-js-nanjing", // region of nj-1 and of a unicom prefix
        "/v1/lines/telecom",         // a line of the sites and of the pool
        "/v1/sites/nj-1",            // parent of wx-1, site of nj-1-a
        "/v1/sites/wx-1",            // site of nodes, the pool and in the service's steering
        "/v1/tenants/demo",          // owner of www
        "/v1/pools/wx-1-telecom",    // has an allocation
    ];
    for path in in_use {
        let resp = api.delete(path).await.err(409, "in_use");
        assert!(!resp.message().is_empty());
    }
    assert_eq!(everything(&api).await, before);

    // Once the last referrer is gone, the delete goes through.
    api.put(
        "/v1/lines/unicom/prefixes",
        json!([{ "cidr": "203.0.113.0/24", "line": "unicom" }]),
    )
    .await
    .ok(200);
    api.delete("/v1/sites/nj-1").await.err(409, "in_use");
    api.delete("/v1/nodes/nj-1-a").await.ok(204);
    api.put(
        "/v1/sites/wx-1",
        site("wx-1", "cn-js-wuxi", &["telecom", "unicom"], None),
    )
    .await
    .ok(200);
    api.delete("/v1/sites/nj-1").await.ok(204);
    api.delete("/v1/regions/cn-js-nanjing").await.ok(204);
    plane.shutdown().await;
}

#[tokio::test]
async fn a_hostname_belongs_to_one_service() {
    let (mut plane, api) = start_seeded().await;
    api.create("tenants", tenant("other")).await;

    // Another service (of any tenant) cannot take `www.demo.example`.
    api.post(
        "/v1/services",
        service("stolen", "other", &["a.other.example", "www.demo.example"]),
    )
    .await
    .err_field(409, "hostname_taken", "hostnames[1]");
    api.get("/v1/services/stolen").await.err(404, "not_found");
    api.create("services", service("mine", "other", &["a.other.example"]))
        .await;
    api.put(
        "/v1/services/mine",
        service("mine", "other", &["a.other.example", "www.demo.example"]),
    )
    .await
    .err_field(409, "hostname_taken", "hostnames[1]");
    assert_eq!(
        api.get("/v1/services/mine").await.ok(200)["hostnames"],
        json!(["a.other.example"])
    );

    // A service may keep its own hostnames across updates, and give one up.
    api.put(
        "/v1/services/shop",
        service("shop", "demo", &["www.demo.example", "static.demo.example"]),
    )
    .await
    .ok(200);
    api.put(
        "/v1/services/shop",
        service("shop", "demo", &["static.demo.example"]),
    )
    .await
    .ok(200);
    // What it gave up is free for another service.
    api.put(
        "/v1/services/mine",
        service("mine", "other", &["a.other.example", "www.demo.example"]),
    )
    .await
    .ok(200);
    // A deleted service frees its hostnames.
    api.post(
        "/v1/services",
        service("static2", "other", &["static.demo.example"]),
    )
    .await
    .err(409, "hostname_taken");
    api.delete("/v1/services/shop").await.ok(204);
    api.create(
        "services",
        service("static2", "other", &["static.demo.example"]),
    )
    .await;
    plane.shutdown().await;
}

#[tokio::test]
async fn tenant_keys_see_and_change_only_their_own_services() {
    let (mut plane, op) = start_seeded().await;
    op.create("tenants", tenant("alpha")).await;
    op.create("tenants", tenant("beta")).await;
    op.create(
        "services",
        service("a-site", "alpha", &["www.alpha.example"]),
    )
    .await;
    op.create("services", service("b-site", "beta", &["www.beta.example"]))
        .await;
    let alpha = op.with_token(&tenant_key(&op, "alpha").await);
    let beta_view = op.get("/v1/services/b-site").await.ok(200);

    // Each credential says whom it speaks for.
    assert_eq!(
        alpha.get("/v1/whoami").await.ok(200),
        json!({ "role": "tenant", "tenant": "alpha" })
    );
    assert_eq!(
        op.get("/v1/whoami").await.ok(200),
        json!({ "role": "operator" })
    );

    // Alpha sees its own service only.
    assert_eq!(alpha.ids("services").await, ["a-site"]);
    // Lists page in id order and say how many there are in all; a tenant's count is its
    // own.
    let total = |r: &common::Resp| {
        r.headers
            .get("x-total-count")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let page = op.get("/v1/services?limit=1&offset=1").await;
    assert_eq!(total(&page).as_deref(), Some("3"), "shop, a-site, b-site");
    let listed = page.ok(200);
    let ids: Vec<&str> = listed
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|s| s["id"].as_str())
        .collect();
    assert_eq!(ids, ["b-site"]);
    let own = alpha.get("/v1/services?limit=10").await;
    assert_eq!(total(&own).as_deref(), Some("1"));
    assert_eq!(own.ok(200).as_array().map(Vec::len), Some(1));
    assert_eq!(alpha.get("/v1/services?offset=1").await.ok(200), json!([]));
    op.get("/v1/services?limit=0").await.err(422, "invalid");
    assert_eq!(
        op.get("/v1/services?offset=18446744073709551615")
            .await
            .ok(200),
        json!([])
    );
    common::Api::new(op.base(), None)
        .get("/v1/whoami")
        .await
        .err(401, "unauthorized");
    op.get("/v1/services?limit=x").await.err(400, "bad_request");
    alpha.get("/v1/services/a-site").await.ok(200);
    for id in ["b-site", "shop"] {
        let path = format!("/v1/services/{id}");
        alpha.get(&path).await.err(404, "not_found");
        let mut changed = op.get(&path).await.ok(200);
        changed["origins"] = json!([{ "address": "evil.example:80" }]);
        // The view's `cname` is not part of a service.
        for view_only in ["cname", "hostname_status"] {
            changed.as_object_mut().expect("object").remove(view_only);
        }
        let resp = alpha.put(&path, changed.clone()).await;
        assert!(
            resp.status == 404 || resp.status == 403,
            "PUT {path} as alpha: {resp:?}"
        );
        // Even claiming the service for itself does not reach it.
        changed["tenant"] = json!("alpha");
        let resp = alpha.put(&path, changed).await;
        assert!(
            resp.status == 404 || resp.status == 403,
            "PUT {path} as alpha: {resp:?}"
        );
        alpha.delete(&path).await.err(404, "not_found");
    }
    // Alpha cannot create services for others, nor take their ids or hostnames.
    for (svc, status, code) in [
        (
            service("b-two", "beta", &["two.beta.example"]),
            403,
            "forbidden",
        ),
        (
            service("b-site", "alpha", &["x.alpha.example"]),
            409,
            "already_exists",
        ),
        (
            service("a-two", "alpha", &["www.beta.example"]),
            409,
            "hostname_taken",
        ),
    ] {
        alpha.post("/v1/services", svc).await.err(status, code);
    }
    assert_eq!(op.get("/v1/services/b-site").await.ok(200), beta_view);

    // Alpha may read its own tenant record, and no other.
    assert_eq!(alpha.ids("tenants").await, ["alpha"]);
    alpha.get("/v1/tenants/alpha").await.ok(200);
    alpha.get("/v1/tenants/beta").await.err(404, "not_found");

    // Changing its tenant record, and the fleet, are the operator's.
    for kind in ["regions", "lines", "sites", "nodes", "pools"] {
        alpha
            .get(&format!("/v1/{kind}"))
            .await
            .err(403, "forbidden");
    }
    let text = |t: &str| Body::Raw(Some("text/plain"), t.as_bytes().to_vec());
    for (method, path, body) in [
        (
            Method::PUT,
            "/v1/tenants/alpha",
            Body::Json(tenant("alpha")),
        ),
        (Method::DELETE, "/v1/tenants/alpha", Body::None),
        (Method::GET, "/v1/sites/wx-1", Body::None),
        (
            Method::POST,
            "/v1/regions",
            Body::Json(region("evil", Some("cn"), "province")),
        ),
        (
            Method::PUT,
            "/v1/nodes/wx-1-a",
            Body::Json(node("wx-1-a", "wx-1", &["edge"])),
        ),
        (Method::DELETE, "/v1/nodes/wx-1-a", Body::None),
        (Method::POST, "/v1/tenants", Body::Json(tenant("gamma"))),
        (
            Method::POST,
            "/v1/pools/wx-1-telecom/allocations",
            Body::Json(json!({ "node": "wx-1-a" })),
        ),
        (
            Method::GET,
            "/v1/pools/wx-1-telecom/allocations",
            Body::None,
        ),
        (Method::GET, "/v1/lines/telecom/prefixes", Body::None),
        (
            Method::POST,
            "/v1/lines/import",
            text("198.51.100.0/24 telecom\n"),
        ),
        (Method::POST, "/v1/tenants/alpha/keys", Body::None),
        (
            Method::GET,
            "/v1/snapshots/edge?after=0&timeout_ms=0",
            Body::None,
        ),
        (
            Method::POST,
            "/v1/nodes/wx-1-a/heartbeat",
            Body::Json(json!({ "role": "edge", "applied_version": 1 })),
        ),
    ] {
        alpha.send(method, path, body).await.err(403, "forbidden");
    }

    // Alpha manages its own services.
    let mut own = service("a-two", "alpha", &["two.alpha.example"]);
    let created = alpha.create("services", own.clone()).await;
    assert_eq!(created["cname"], "a-two.cdn.lingjing.test.");
    own["origins"] = json!([{ "address": "origin.alpha.example:443", "tls": true }]);
    alpha.put("/v1/services/a-two", own.clone()).await.ok(200);
    assert_subset(&op.get("/v1/services/a-two").await.ok(200), &own);
    own["tenant"] = json!("beta");
    alpha
        .put("/v1/services/a-two", own)
        .await
        .err_field(422, "invalid", "tenant");
    assert_eq!(alpha.ids("services").await, ["a-site", "a-two"]);
    alpha.delete("/v1/services/a-two").await.ok(204);
    alpha.get("/v1/services/a-two").await.err(404, "not_found");

    // Beta's service is untouched; the operator sees everyone's.
    assert_eq!(op.get("/v1/services/b-site").await.ok(200), beta_view);
    assert_eq!(op.ids("services").await, ["a-site", "b-site", "shop"]);

    // A revoked key stops working at once.
    let keys = op.get("/v1/tenants/alpha/keys").await.ok(200);
    let keys = keys.as_array().expect("keys");
    assert_eq!(keys.len(), 1);
    assert!(keys[0].get("secret").is_none(), "secrets are never listed");
    let key_id = keys[0]["id"].as_str().expect("key id");
    op.delete(&format!("/v1/tenants/alpha/keys/{key_id}"))
        .await
        .ok(204);
    alpha.get("/v1/services").await.err(401, "unauthorized");
    op.delete(&format!("/v1/tenants/alpha/keys/{key_id}"))
        .await
        .err(404, "not_found");
    op.send(Method::POST, "/v1/tenants/nobody/keys", Body::None)
        .await
        .err(404, "not_found");
    plane.shutdown().await;
}

#[tokio::test]
async fn concurrent_allocations_hand_out_each_address_once() {
    let (mut plane, api) = start_seeded().await;
    api.create("pools", pool("wx-1-big", "wx-1", None, "10.0.0.0/26"))
        .await;

    // 100 requests at once for a pool of 62 usable addresses.
    let requests = (0..100).map(|i| {
        let api = api.clone();
        let node = if i % 2 == 0 { "wx-1-a" } else { "wx-1-b" };
        async move {
            api.post("/v1/pools/wx-1-big/allocations", json!({ "node": node }))
                .await
        }
    });
    let answers = futures::future::join_all(requests).await;
    let mut granted = BTreeSet::new();
    let mut exhausted = 0;
    for a in answers {
        match a.status {
            201 => {
                let addr: Ipv4Addr = a.body["address"]
                    .as_str()
                    .expect("address")
                    .parse()
                    .expect("an IPv4 address");
                assert_eq!(a.body["pool"], "wx-1-big");
                assert!(granted.insert(addr), "{addr} handed out twice");
            }
            _ => {
                a.err(409, "pool_exhausted");
                exhausted += 1;
            }
        }
    }
    assert_eq!(granted.len(), 62);
    assert_eq!(exhausted, 38);
    let all: BTreeSet<Ipv4Addr> = (1..=62).map(|i| Ipv4Addr::new(10, 0, 0, i)).collect();
    assert_eq!(granted, all, "every host address, no network or broadcast");

    let list = api.get("/v1/pools/wx-1-big/allocations").await.ok(200);
    let list = list.as_array().expect("allocations");
    assert_eq!(list.len(), 62);
    let listed: BTreeSet<&str> = list
        .iter()
        .map(|a| a["address"].as_str().expect("address"))
        .collect();
    assert_eq!(listed.len(), 62);
    let view = api.get("/v1/pools/wx-1-big").await.ok(200);
    assert_eq!(
        (view["allocated"].clone(), view["capacity"].clone()),
        (json!(62), json!(62))
    );
    let a = api.get("/v1/nodes/wx-1-a").await.ok(200);
    let b = api.get("/v1/nodes/wx-1-b").await.ok(200);
    let count = |v: &Value| v["addresses"].as_array().expect("addresses").len();
    assert_eq!(count(&a) + count(&b), 62);

    // Full: one more is refused.
    api.post(
        "/v1/pools/wx-1-big/allocations",
        json!({ "node": "wx-1-a" }),
    )
    .await
    .err(409, "pool_exhausted");

    // Release one, and it is the next one handed out.
    api.delete("/v1/pools/wx-1-big/allocations/10.0.0.17")
        .await
        .ok(204);
    api.delete("/v1/pools/wx-1-big/allocations/10.0.0.17")
        .await
        .err(404, "not_found");
    assert_eq!(
        api.get("/v1/pools/wx-1-big/allocations")
            .await
            .ok(200)
            .as_array()
            .expect("allocations")
            .len(),
        61
    );
    let again = api.allocate("wx-1-big", json!({ "node": "wx-1-b" })).await;
    assert_eq!(again["address"], "10.0.0.17");
    assert_eq!(again["node"], "wx-1-b");
    api.post(
        "/v1/pools/wx-1-big/allocations",
        json!({ "node": "wx-1-a" }),
    )
    .await
    .err(409, "pool_exhausted");
    plane.shutdown().await;
}

#[tokio::test]
async fn allocation_requests_are_checked() {
    let (mut plane, api) = start_seeded().await;
    let path = "/v1/pools/wx-1-telecom/allocations";

    // The lowest free address, or the one asked for.
    let first = api.post(path, json!({ "node": "wx-1-a" })).await.ok(201);
    assert_eq!(first["address"], "10.1.0.1");
    let chosen = api
        .post(path, json!({ "node": "wx-1-b", "address": "10.1.0.9" }))
        .await
        .ok(201);
    assert_eq!(chosen["node"], "wx-1-b");
    api.post(path, json!({ "node": "wx-1-a", "address": "10.1.0.9" }))
        .await
        .err_field(409, "address_taken", "address");
    for address in ["10.1.0.0", "10.1.0.15", "10.1.1.1"] {
        api.post(path, json!({ "node": "wx-1-a", "address": address }))
            .await
            .err_field(422, "invalid", "address");
    }
    api.post(path, json!({ "node": "wx-1-a", "address": "not-an-ip" }))
        .await
        .err_field(422, "invalid", "address");
    // The node must exist and be at the pool's site.
    api.post(path, json!({ "node": "nj-1-a" }))
        .await
        .err_field(422, "invalid", "node");
    api.post(path, json!({ "node": "ghost" }))
        .await
        .err_field(422, "invalid", "node");
    api.post(path, json!({}))
        .await
        .err_field(422, "invalid", "node");
    api.post("/v1/pools/nope/allocations", json!({ "node": "wx-1-a" }))
        .await
        .err(404, "not_found");
    api.get("/v1/pools/nope/allocations")
        .await
        .err(404, "not_found");
    api.delete("/v1/pools/wx-1-telecom/allocations/banana")
        .await
        .err(400, "bad_request");

    // The node view lists its addresses.
    assert_eq!(
        api.get("/v1/nodes/wx-1-b").await.ok(200)["addresses"],
        json!(["10.1.0.9"])
    );
    // The pool cannot shrink below an allocated address.
    api.put(
        "/v1/pools/wx-1-telecom",
        pool("wx-1-telecom", "wx-1", Some("telecom"), "10.1.0.0/29"),
    )
    .await
    .err(409, "in_use");
    let mut reserving = pool("wx-1-telecom", "wx-1", Some("telecom"), "10.1.0.0/28");
    reserving["reserved"] = json!(["10.1.0.9"]);
    api.put("/v1/pools/wx-1-telecom", reserving)
        .await
        .err(409, "in_use");
    let list = api.get(path).await.ok(200);
    assert_eq!(list.as_array().expect("allocations").len(), 2);

    // IPv6 pools skip the subnet-router anycast address; releases take any spelling.
    api.create("pools", pool("wx-1-v6", "wx-1", None, "2001:db8:7::/125"))
        .await;
    let v6 = api.allocate("wx-1-v6", json!({ "node": "wx-1-a" })).await;
    assert_eq!(v6["address"], "2001:db8:7::1");
    api.delete("/v1/pools/wx-1-v6/allocations/2001:DB8:7:0::1")
        .await
        .ok(204);
    assert_eq!(
        api.get("/v1/pools/wx-1-v6/allocations").await.ok(200),
        json!([])
    );
    plane.shutdown().await;
}

/// Pools may not overlap: an address in two pools could be handed to two nodes.
#[tokio::test]
async fn pools_cannot_overlap() {
    let (mut plane, api) = start_seeded().await;
    // wx-1-telecom is 10.1.0.0/28.
    let before = everything(&api).await;
    for (id, site, cidr) in [
        ("same", "nj-1", "10.1.0.0/28"),
        ("inside", "wx-1", "10.1.0.8/29"),
        ("around", "nj-1", "10.1.0.0/24"),
    ] {
        let resp = api.post("/v1/pools", pool(id, site, None, cidr)).await;
        assert_conflict(&resp, &format!("pool {cidr} overlapping 10.1.0.0/28"));
    }
    assert_eq!(everything(&api).await, before);
    // Neighbours are fine, and so is a PUT of a pool onto itself.
    api.create("pools", pool("next", "nj-1", None, "10.1.0.16/28"))
        .await;
    api.put(
        "/v1/pools/next",
        pool("next", "nj-1", Some("unicom"), "10.1.0.16/28"),
    )
    .await
    .ok(200);
    let resp = api
        .put("/v1/pools/next", pool("next", "nj-1", None, "10.1.0.0/27"))
        .await;
    assert_conflict(&resp, "growing a pool over another");
    plane.shutdown().await;
}

/// A node holding addresses of a site's pool cannot move to another site, and a pool with
/// allocations cannot move to another site: the addresses would be at the wrong site.
#[tokio::test]
async fn allocated_addresses_stay_at_their_site() {
    let (mut plane, api) = start_seeded().await;
    api.allocate("wx-1-telecom", json!({ "node": "wx-1-a" }))
        .await;
    let before = everything(&api).await;
    let moved = api
        .put("/v1/nodes/wx-1-a", node("wx-1-a", "nj-1", &["edge"]))
        .await;
    assert_conflict(&moved, "moving a node away from its pool's site");
    let moved = api
        .put(
            "/v1/pools/wx-1-telecom",
            pool("wx-1-telecom", "nj-1", Some("telecom"), "10.1.0.0/28"),
        )
        .await;
    assert_conflict(&moved, "moving a pool with allocations to another site");
    assert_eq!(everything(&api).await, before);
    plane.shutdown().await;
}

/// Asserts `resp` refused a change that conflicts with the rest: 409, or 422.
#[track_caller]
fn assert_conflict(resp: &common::Resp, what: &str) {
    assert!(resp.status == 409 || resp.status == 422, "{what}: {resp:?}");
}

/// Parses an RFC 3339 timestamp of the API.
fn timestamp(s: &str) -> OffsetDateTime {
    OffsetDateTime::parse(s, &Rfc3339).unwrap_or_else(|e| panic!("`{s}` is not RFC 3339: {e}"))
}

/// Polls `role` for a version after `after`, waiting up to `timeout_ms`.
async fn poll(api: &Api, role: &str, after: u64, timeout_ms: u64) -> common::Resp {
    api.get(&format!(
        "/v1/snapshots/{role}?after={after}&timeout_ms={timeout_ms}"
    ))
    .await
}

#[tokio::test]
async fn long_polls_wake_on_changes_and_versions_only_grow() {
    let (mut plane, api) = start_seeded().await;

    // The first poll answers at once with the current version.
    let first = poll(&api, "edge", 0, 10_000).await;
    let first_body = first.body.clone();
    assert_eq!(first.status, 200, "{first_body}");
    let v0 = first_body["version"].as_u64().expect("version");
    assert!(v0 > 0);
    assert_eq!(first.version_header(), Some(v0));
    assert_eq!(first_body["role"], "edge");
    assert!(first_body["generated_at"].is_string());
    assert_eq!(ids(&first_body["body"]["services"]), ["shop"]);
    assert_eq!(ids(&first_body["body"]["sites"]), ["nj-1", "wx-1"]);

    // Nothing newer: a short poll times out with 304 and the current version.
    let idle = poll(&api, "edge", v0, 200).await;
    assert_eq!(idle.status, 304);
    assert_eq!(idle.version_header(), Some(v0));
    let idle = poll(&api, "dns", v0, 200).await;
    assert_eq!(idle.status, 304);

    // A change wakes a waiting poller (long before its own 10 s timeout: 200, not 304).
    let mut last = v0;
    for (i, role) in ["edge", "dns", "edge"].into_iter().enumerate() {
        // A new service is pending (not in snapshots) until approved: the approval is the
        // change the poller waits for.
        let id = format!("svc-{i}");
        api.post(
            "/v1/services",
            service(&id, "demo", &[&format!("{id}.demo.example")]),
        )
        .await
        .ok(201);
        last = api.version().await;
        let poller = {
            let api = api.clone();
            tokio::spawn(async move { poll(&api, role, last, 10_000).await })
        };
        // Give the poller a moment to start waiting; correctness does not depend on it.
        tokio::time::sleep(Duration::from_millis(100)).await;
        api.post(
            &format!("/v1/services/{id}/verify"),
            json!({ "approve": true }),
        )
        .await
        .ok(200);
        let woke = tokio::time::timeout(Duration::from_secs(30), poller)
            .await
            .expect("the poller returns")
            .expect("poller task");
        assert_eq!(woke.status, 200, "woken by the change, not timed out");
        let v = woke.body["version"].as_u64().expect("version");
        assert!(v > last, "version {v} after {last}");
        assert_eq!(woke.version_header(), Some(v));
        assert_eq!(woke.body["role"], role);
        assert!(
            ids(&woke.body["body"]["services"]).contains(&id),
            "the snapshot holds the change"
        );
        last = v;
    }

    // Every kind of change bumps the version; reads and refusals do not.
    let changes: Vec<(Method, &str, Value)> = vec![
        (Method::PUT, "/v1/tenants/demo", tenant("demo")),
        (
            Method::POST,
            "/v1/pools/wx-1-telecom/allocations",
            json!({ "node": "wx-1-a" }),
        ),
        (
            Method::DELETE,
            "/v1/pools/wx-1-telecom/allocations/10.1.0.1",
            Value::Null,
        ),
        (
            Method::PUT,
            "/v1/lines/telecom/prefixes",
            json!([{ "cidr": "198.51.100.0/24", "line": "telecom" }]),
        ),
        (Method::DELETE, "/v1/services/svc-0", Value::Null),
    ];
    for (method, path, body) in changes {
        let body = if body.is_null() {
            Body::None
        } else {
            Body::Json(body)
        };
        let resp = api.send(method.clone(), path, body).await;
        assert!(resp.status < 300, "{method} {path}: {resp:?}");
        let v = api.version().await;
        assert!(v > last, "{method} {path}: version {v} after {last}");
        last = v;
    }
    api.get("/v1/services").await.ok(200);
    api.post("/v1/tenants", tenant("demo"))
        .await
        .err(409, "already_exists");
    assert_eq!(api.version().await, last);
    let snap = poll(&api, "dns", last - 1, 0).await;
    assert_eq!(snap.status, 200);
    assert_eq!(snap.body["version"], last);
    assert_eq!(poll(&api, "edge", last, 0).await.status, 304);

    // Polls naming a node need that node.
    api.get(&format!(
        "/v1/snapshots/edge?node=wx-1-a&after={}&timeout_ms=0",
        last - 1
    ))
    .await
    .ok(200);
    api.get("/v1/snapshots/edge?node=ghost&after=0&timeout_ms=0")
        .await
        .err(404, "not_found");
    plane.shutdown().await;
}

#[tokio::test]
async fn dns_snapshots_carry_no_tls_keys() {
    let (mut plane, api) = start_seeded().await;
    let mut svc = service("shop", "demo", &["www.demo.example"]);
    svc["tls"] = json!({
        "cert_pem": "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n",
        "key_pem": "-----BEGIN PRIVATE KEY-----\nAA==\n-----END PRIVATE KEY-----\n",
    });
    api.put("/v1/services/shop", svc).await.ok(200);
    let edge = poll(&api, "edge", 0, 0).await.ok(200);
    assert!(edge["body"]["services"][0]["tls"]["key_pem"].is_string());
    let dns = poll(&api, "dns", 0, 0).await.ok(200);
    assert_eq!(dns["body"]["services"][0]["tls"], Value::Null);
    assert!(!dns.to_string().contains("PRIVATE KEY"));
    assert_eq!(dns["body"]["zone"], "cdn.lingjing.test.");
    plane.shutdown().await;
}

#[tokio::test]
async fn heartbeats_show_in_the_node_view() {
    let (mut plane, api) = start_seeded().await;
    let version = api.version().await;

    api.post(
        "/v1/nodes/wx-1-a/heartbeat",
        json!({ "role": "edge", "applied_version": 5, "agent": "lingjing-edge 0.1" }),
    )
    .await
    .ok(204);
    let n = api.get("/v1/nodes/wx-1-a").await.ok(200);
    assert_eq!(n["status"]["applied"]["edge"], 5);
    assert_eq!(n["status"]["agent"], "lingjing-edge 0.1");
    let first_beat = n["status"]["last_heartbeat"]
        .as_str()
        .expect("last_heartbeat")
        .to_owned();
    assert_eq!(
        n["status"]["registered_at"].as_str(),
        Some(first_beat.as_str())
    );

    // Later beats update the version per role; each role is kept apart.
    api.post(
        "/v1/nodes/wx-1-a/heartbeat",
        json!({ "role": "edge", "applied_version": 7 }),
    )
    .await
    .ok(204);
    let before_last = OffsetDateTime::now_utc();
    api.post(
        "/v1/nodes/wx-1-a/heartbeat",
        json!({ "role": "dns", "applied_version": 3 }),
    )
    .await
    .ok(204);
    let n = api.get("/v1/nodes/wx-1-a").await.ok(200);
    assert_eq!(n["status"]["applied"], json!({ "edge": 7, "dns": 3 }));
    // `last_heartbeat` is the newest beat of any role, `registered_at` the first.
    let last_beat = n["status"]["last_heartbeat"].as_str().expect("beat");
    let last = timestamp(last_beat);
    let whole_ms = before_last
        .replace_nanosecond(before_last.millisecond() as u32 * 1_000_000)
        .expect("nanoseconds");
    assert!(
        last >= whole_ms,
        "last_heartbeat {last_beat} is older than the last beat, sent after {before_last}"
    );
    assert!(last >= timestamp(&first_beat));
    assert_eq!(
        n["status"]["registered_at"].as_str(),
        Some(first_beat.as_str())
    );
    // Timestamps sort as strings the way they sort as times (the store relies on it).
    assert!(
        last_beat >= first_beat.as_str(),
        "{last_beat} < {first_beat}"
    );
    // The list shows the same; other nodes have not reported.
    let list = api.get("/v1/nodes").await.ok(200);
    let listed = list
        .as_array()
        .expect("nodes")
        .iter()
        .find(|n| n["id"] == "wx-1-a")
        .expect("wx-1-a listed");
    assert_eq!(listed["status"]["applied"]["edge"], 7);
    let other = api.get("/v1/nodes/wx-1-b").await.ok(200);
    assert_eq!(other["status"]["applied"], json!({}));
    assert_eq!(other["status"]["last_heartbeat"], Value::Null);

    // Unknown nodes and bad beats are refused.
    api.post(
        "/v1/nodes/ghost/heartbeat",
        json!({ "role": "edge", "applied_version": 1 }),
    )
    .await
    .err(404, "not_found");
    api.post(
        "/v1/nodes/wx-1-a/heartbeat",
        json!({ "role": "widget", "applied_version": 1 }),
    )
    .await
    .err_field(422, "invalid", "role");
    api.post(
        "/v1/nodes/wx-1-a/heartbeat",
        json!({ "role": "edge", "applied_version": "seven" }),
    )
    .await
    .err_field(422, "invalid", "applied_version");

    // Liveness is not desired state: heartbeats bump no version.
    assert_eq!(api.version().await, version);
    plane.shutdown().await;
}

#[tokio::test]
async fn line_tables_import_and_reach_the_dns_snapshot() {
    let (mut plane, api) = start_seeded().await;

    let table = "\
# carrier list, CIDR line [region]
198.51.100.0/24  telecom  cn-js-wuxi
198.51.101.0/24  telecom

203.0.113.0/24   unicom   cn-js-nanjing   # Nanjing Unicom
2001:db8::/32    mobile
";
    let summary = api.post_text("/v1/lines/import", table).await.ok(200);
    assert_eq!(
        summary["lines"],
        json!({ "telecom": 2, "unicom": 1, "mobile": 1 })
    );
    assert_eq!(summary["created_lines"], json!(["mobile"]));
    assert_eq!(api.ids("lines").await, ["mobile", "telecom", "unicom"]);
    assert_eq!(
        api.get("/v1/lines/telecom").await.ok(200)["prefix_count"],
        2
    );
    let telecom = api.get("/v1/lines/telecom/prefixes").await.ok(200);
    assert_eq!(
        telecom,
        json!([
            { "cidr": "198.51.100.0/24", "line": "telecom", "region": "cn-js-wuxi" },
            { "cidr": "198.51.101.0/24", "line": "telecom", "region": null },
        ])
    );
    api.get("/v1/lines/nope/prefixes")
        .await
        .err(404, "not_found");

    // The DNS snapshot carries the tables.
    let dns = poll(&api, "dns", 0, 0).await.ok(200);
    let prefixes = dns["body"]["prefixes"].as_array().expect("prefixes");
    assert_eq!(prefixes.len(), 4);
    assert!(prefixes.contains(
        &json!({ "cidr": "203.0.113.0/24", "line": "unicom", "region": "cn-js-nanjing" })
    ));
    assert!(
        prefixes.contains(&json!({ "cidr": "2001:db8::/32", "line": "mobile", "region": null }))
    );
    assert_eq!(ids(&dns["body"]["lines"]), ["mobile", "telecom", "unicom"]);

    // Bad tables are refused as a whole, naming the line of the file.
    let before = everything(&api).await;
    let version = api.version().await;
    let bad = [
        // An unknown region.
        (
            "# header\n198.51.102.0/24 telecom\n\n198.51.103.0/24 telecom cn-nowhere\n",
            "line 4",
        ),
        ("198.51.102.0/24 telecom\nnot-a-cidr telecom\n", "line 2"),
        ("198.51.102.1/24 telecom\n", "line 1"),
        ("198.51.102.0/24\n", "line 1"),
        ("198.51.102.0/24 telecom cn-js extra\n", "line 1"),
        ("198.51.102.0/24 Tele_com\n", "line 1"),
        // The same prefix twice.
        (
            "# dup\n198.51.102.0/24 telecom\n198.51.102.0/24 unicom\n",
            "line 3",
        ),
    ];
    for (text, field) in bad {
        let resp = api.post_text("/v1/lines/import", text).await;
        assert_eq!(
            (resp.status, resp.code(), resp.field()),
            (422, "invalid", Some(field)),
            "importing {text:?}: {:?}",
            resp.body
        );
    }
    api.post_text(
        "/v1/lines/import?create_lines=false",
        "198.51.102.0/24 edu\n",
    )
    .await
    .err_field(422, "invalid", "line");
    api.send(
        Method::POST,
        "/v1/lines/import",
        Body::Raw(Some("text/plain"), vec![0xff, 0xfe, 0x00]),
    )
    .await
    .err(400, "bad_request");
    assert_eq!(everything(&api).await, before);
    assert_eq!(api.version().await, version);

    // A new table for a line replaces that line's prefixes only.
    let summary = api
        .post_text("/v1/lines/import", "192.0.2.0/24 telecom cn-js\n")
        .await
        .ok(200);
    assert_eq!(summary["lines"], json!({ "telecom": 1 }));
    assert_eq!(summary["created_lines"], json!([]));
    assert_eq!(
        api.get("/v1/lines/telecom/prefixes").await.ok(200),
        json!([{ "cidr": "192.0.2.0/24", "line": "telecom", "region": "cn-js" }])
    );
    assert_eq!(api.get("/v1/lines/unicom").await.ok(200)["prefix_count"], 1);

    // The JSON form, per line.
    let put = json!([
        { "cidr": "198.18.0.0/15", "line": "unicom", "region": "cn-js-wuxi" },
        { "cidr": "2001:db8:1::/48", "line": "unicom" },
    ]);
    let summary = api
        .put("/v1/lines/unicom/prefixes", put.clone())
        .await
        .ok(200);
    assert_eq!(summary["lines"], json!({ "unicom": 2 }));
    let mut expected = put.clone();
    expected[1]["region"] = Value::Null;
    assert_eq!(api.get("/v1/lines/unicom/prefixes").await.ok(200), expected);
    let before = everything(&api).await;
    api.put(
        "/v1/lines/unicom/prefixes",
        json!([{ "cidr": "198.18.0.0/15", "line": "telecom" }]),
    )
    .await
    .err_field(422, "invalid", "[0].line");
    api.put(
        "/v1/lines/unicom/prefixes",
        json!([{ "cidr": "198.18.0.1/15", "line": "unicom" }]),
    )
    .await
    .err_field(422, "invalid", "[0].cidr");
    api.put(
        "/v1/lines/unicom/prefixes",
        json!([{ "cidr": "nope", "line": "unicom" }]),
    )
    .await
    .err_field(422, "invalid", "[0].cidr");
    api.put(
        "/v1/lines/unicom/prefixes",
        json!([
            { "cidr": "198.18.0.0/15", "line": "unicom" },
            { "cidr": "198.19.0.0/16", "line": "unicom", "region": "cn-nowhere" },
        ]),
    )
    .await
    .err_field(422, "invalid", "[1]");
    api.put(
        "/v1/lines/ghost/prefixes",
        json!([{ "cidr": "198.18.0.0/15", "line": "ghost" }]),
    )
    .await
    .err(404, "not_found");
    assert_eq!(everything(&api).await, before);

    // Deleting a line drops its prefixes.
    api.delete("/v1/lines/mobile").await.ok(204);
    let dns = poll(&api, "dns", 0, 0).await.ok(200);
    assert!(
        !dns["body"]["prefixes"]
            .as_array()
            .expect("prefixes")
            .iter()
            .any(|p| p["line"] == "mobile")
    );
    plane.shutdown().await;
}

/// Malformed query strings get the JSON error body, like every other refusal.
#[tokio::test]
async fn bad_query_strings_get_the_json_error_body() {
    let (mut plane, api) = start_seeded().await;
    // The harness checks the error body of each of these.
    api.get("/v1/snapshots/edge?after=soon")
        .await
        .err(400, "bad_request");
    api.get("/v1/snapshots/edge?timeout_ms=-5")
        .await
        .err(400, "bad_request");
    api.post_text("/v1/lines/import?create_lines=maybe", "")
        .await
        .err(400, "bad_request");
    plane.shutdown().await;
}

/// A method a route does not serve gets 405 with the JSON error body.
#[tokio::test]
async fn unserved_methods_get_the_json_error_body() {
    let mut plane = start().await;
    let api = plane.api.clone();
    // The harness checks the error body.
    let resp = api
        .send(Method::PATCH, "/v1/regions/cn", Body::Json(json!({})))
        .await;
    assert_eq!(resp.status, 405);
    let resp = api.send(Method::DELETE, "/v1/regions", Body::None).await;
    assert_eq!(resp.status, 405);
    plane.shutdown().await;
}

#[tokio::test]
async fn openapi_document_lists_every_route() {
    let mut plane = start().await;
    let api = plane.api.clone();
    let health = api.anonymous().get("/healthz").await.ok(200);
    assert_eq!(health, json!("ok\n"));

    let doc = api.anonymous().get("/v1/openapi.json").await.ok(200);
    assert!(
        doc["openapi"].as_str().expect("openapi").starts_with("3."),
        "{}",
        doc["openapi"]
    );
    assert!(doc["info"]["title"].is_string());
    let paths = doc["paths"].as_object().expect("paths");

    // Every route this suite exercises, with its methods.
    let mut routes: Vec<(String, &[&str])> = Vec::new();
    for kind in KINDS {
        routes.push((format!("/v1/{kind}"), &["get", "post"]));
        routes.push((format!("/v1/{kind}/{{id}}"), &["get", "put", "delete"]));
    }
    let others: [(&str, &[&str]); 85] = [
        ("/v1/sensors", &["get", "post"]),
        ("/v1/sensors/{id}", &["get", "put", "delete"]),
        ("/v1/receivers", &["get", "post"]),
        ("/v1/receivers/{id}", &["get", "put", "delete"]),
        ("/v1/silences", &["get", "post"]),
        ("/v1/silences/{id}", &["get", "put", "delete"]),
        ("/v1/monitor/records", &["post"]),
        ("/v1/sensors/{id}/readings", &["get"]),
        ("/v1/alerts", &["get"]),
        ("/v1/alerts/ack", &["post"]),
        ("/v1/devices", &["get", "post"]),
        ("/v1/devices/{id}", &["get", "put", "delete"]),
        ("/v1/devices/{id}/token", &["post"]),
        ("/v1/crews", &["get", "post"]),
        ("/v1/crews/{id}", &["get", "put", "delete"]),
        ("/v1/tenants/{id}/inspect-policy", &["get", "put"]),
        ("/v1/inspect/frames", &["post"]),
        ("/v1/inspect/runs", &["get"]),
        ("/v1/inspect/runs/{id}", &["get"]),
        ("/v1/inspect/report", &["get"]),
        ("/v1/defects", &["get"]),
        ("/v1/defects/{id}", &["get"]),
        ("/v1/defects/{id}/evidence/{stream}/{seq}", &["get"]),
        ("/v1/work-orders", &["get"]),
        ("/v1/work-orders/{id}", &["get"]),
        ("/v1/work-orders/{id}/actions", &["post"]),
        ("/open311/v2/{file}", &["get", "post"]),
        ("/open311/v2/requests/{file}", &["get"]),
        ("/v1/models", &["get"]),
        ("/v1/models/{model}/versions", &["get", "post"]),
        ("/v1/models/{model}/versions/{version}", &["get"]),
        ("/v1/rollouts", &["get", "post"]),
        ("/v1/rollouts/{id}", &["get"]),
        ("/v1/rollouts/{id}/pause", &["post"]),
        ("/v1/rollouts/{id}/resume", &["post"]),
        ("/v1/rollouts/{id}/abort", &["post"]),
        ("/v1/artifacts", &["get"]),
        ("/v1/artifacts/sha256/{digest}", &["get", "put"]),
        ("/v1/tenants/{id}/s3-keys/console", &["post"]),
        ("/v1/nodes/{id}/health", &["get"]),
        ("/v1/whoami", &["get"]),
        ("/v1/dns-records", &["get", "post"]),
        ("/v1/dns-records/{id}", &["get", "put", "delete"]),
        ("/v1/sla", &["get"]),
        ("/v1/purges", &["get", "post"]),
        ("/v1/purges/{id}", &["get"]),
        ("/v1/defence/rules", &["get", "post"]),
        ("/v1/defence/rules/{id}", &["get", "delete"]),
        ("/v1/defence/events", &["get"]),
        ("/v1/defence/learned", &["get", "post"]),
        ("/v1/services/{id}/usage", &["get"]),
        ("/v1/usage", &["get"]),
        ("/v1/cabinets", &["get", "post"]),
        ("/v1/cabinets/{id}/cross-connects/{xc}/samples", &["post"]),
        ("/v1/costs", &["get"]),
        ("/v1/costs/{id}", &["put", "delete"]),
        ("/v1/incidents", &["get", "post"]),
        ("/v1/incidents/{id}", &["delete"]),
        ("/v1/reports/segments", &["get"]),
        ("/v1/cabinets/{id}", &["get", "put", "delete"]),
        ("/v1/plans", &["get", "post"]),
        ("/v1/plans/{id}", &["get", "put", "delete"]),
        ("/v1/tenants/{id}/plan", &["get", "put"]),
        ("/v1/billing/runs", &["post"]),
        ("/v1/invoices", &["get"]),
        ("/v1/invoices/{number}", &["get"]),
        ("/v1/invoices/{number}/credit-notes", &["post"]),
        ("/v1/pools/{id}/allocations", &["get", "post"]),
        ("/v1/pools/{id}/allocations/{address}", &["delete"]),
        ("/v1/lines/{id}/prefixes", &["get", "put"]),
        ("/v1/lines/import", &["post"]),
        ("/v1/tenants/{id}/keys", &["get", "post"]),
        ("/v1/tenants/{id}/keys/{key}", &["delete"]),
        ("/v1/tenants/{id}/s3-keys", &["get", "post"]),
        ("/v1/tenants/{id}/s3-keys/{key}", &["delete"]),
        ("/v1/storage/status", &["get"]),
        ("/v1/storage/scrub", &["post"]),
        ("/v1/storage/layout", &["get", "post"]),
        ("/v1/storage/usage", &["get"]),
        ("/v1/snapshots/{role}", &["get"]),
        ("/v1/nodes/{id}/heartbeat", &["post"]),
        ("/v1/nodes/{id}/join-token", &["post"]),
        ("/v1/nodes/{id}/credential", &["post"]),
        ("/v1/nodes/{id}/revoke", &["post"]),
        ("/v1/services/{id}/verify", &["post"]),
    ];
    routes.extend(others.iter().map(|(p, m)| ((*p).to_owned(), *m)));
    for (path, methods) in &routes {
        let item = paths
            .get(path)
            .unwrap_or_else(|| panic!("{path} is missing from the OpenAPI paths"));
        for m in *methods {
            let op = &item[*m];
            assert!(
                op.is_object(),
                "{m} {path} is missing from the OpenAPI document"
            );
            assert!(op["responses"].is_object(), "{m} {path} has no responses");
        }
    }
    assert_eq!(
        paths.len(),
        routes.len(),
        "documented paths: {:?}",
        paths.keys().collect::<Vec<_>>()
    );

    // Every schema reference resolves.
    let schemas = doc["components"]["schemas"].as_object().expect("schemas");
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(!refs.is_empty());
    for r in refs {
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("unexpected reference {r}"));
        assert!(schemas.contains_key(name), "{r} does not resolve");
    }
    for name in [
        "Region",
        "Service",
        "ServiceView",
        "NodeView",
        "ErrorBody",
        "Allocation",
    ] {
        assert!(schemas.contains_key(name), "schema {name} is missing");
    }
    plane.shutdown().await;
}

fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => out.push(r.clone()),
                    _ => collect_refs(v, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn static_dns_records_are_checked_and_reach_the_dns_snapshot() {
    let (mut plane, op) = start_seeded().await;
    let rec = |id: &str, name: &str, rtype: &str, values: &[&str]| json!({"id": id, "name": name, "type": rtype, "values": values});
    let view = op
        .create("dns-records", rec("api", "api", "A", &["192.0.2.10"]))
        .await;
    assert_eq!(view["fqdn"], "api.cdn.lingjing.test.");
    assert_eq!(view["ttl"], 300);
    let apex = op
        .create("dns-records", rec("spf", "@", "TXT", &["v=spf1 -all"]))
        .await;
    assert_eq!(apex["fqdn"], "cdn.lingjing.test.");
    op.create("dns-records", rec("api6", "API", "AAAA", &["2001:db8::10"]))
        .await;

    let before = op.version().await;
    // Bad values, reserved names, clashes: clear errors naming the field, nothing changed.
    op.post("/v1/dns-records", rec("bad", "x", "A", &["2001:db8::1"]))
        .await
        .err_field(422, "invalid", "values[0]");
    op.post("/v1/dns-records", rec("ns", "ns1", "A", &["192.0.2.1"]))
        .await
        .err_field(422, "invalid", "name");
    op.post(
        "/v1/dns-records",
        rec("shop-a", "shop", "A", &["192.0.2.1"]),
    )
    .await
    .err_field(409, "name_taken", "name");
    op.post("/v1/dns-records", rec("api-2", "api", "A", &["192.0.2.11"]))
        .await
        .err_field(409, "name_taken", "name");
    op.post("/v1/dns-records", rec("api-c", "api", "CNAME", &["shop"]))
        .await
        .err_field(409, "name_taken", "name");
    op.create("tenants", tenant("t2")).await;
    let after_tenant = op.version().await;
    op.post("/v1/services", service("api", "t2", &["api.t2.example"]))
        .await
        .err_field(409, "name_reserved", "id");
    assert_eq!(op.version().await, after_tenant);
    assert!(after_tenant == before + 1, "{before} -> {after_tenant}");
    op.create("dns-records", rec("docs", "docs", "A", &["192.0.2.12"]))
        .await;
    let after_docs = op.version().await;
    op.post("/v1/services", service("docs", "t2", &["docs.t2.example"]))
        .await
        .err_field(409, "name_taken", "id");
    assert_eq!(op.version().await, after_docs);
    let demo_key = tenant_key(&op, "demo").await;
    op.with_token(&demo_key)
        .post("/v1/dns-records", rec("t", "t", "A", &["192.0.2.1"]))
        .await
        .err(403, "forbidden");

    let dns = poll(&op, "dns", 0, 0).await.ok(200);
    let names: Vec<&str> = dns["body"]["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|r| r["id"].as_str().expect("id"))
        .collect();
    assert_eq!(names, ["api", "api6", "docs", "spf"]);
    op.delete("/v1/dns-records/api6").await.ok(204);
    assert_eq!(op.ids("dns-records").await, ["api", "docs", "spf"]);
    plane.shutdown().await;
}

/// Lists search (`q`: id, tenant, a service's hostnames; `%` and `_` are plain text) and
/// sort (`sort=tenant`, `dir=desc`) in the database; a tenant searches its own rows only.
async fn lists_search_and_sort(op: &common::Api) {
    op.create("tenants", tenant("alpha")).await;
    op.create("tenants", tenant("beta")).await;
    op.create(
        "services",
        service("a-site", "alpha", &["www.alpha.example"]),
    )
    .await;
    op.create("services", service("b-site", "beta", &["img.beta.example"]))
        .await;
    let ids = |v: Value| -> Vec<String> {
        v.as_array()
            .expect("list")
            .iter()
            .filter_map(|s| s["id"].as_str().map(str::to_owned))
            .collect()
    };
    let get = |path: &'static str| async move { ids(op.get(path).await.ok(200)) };
    assert_eq!(get("/v1/services?q=ALPHA").await, ["a-site"]);
    assert_eq!(
        get("/v1/services?q=img.beta").await,
        ["b-site"],
        "a hostname"
    );
    assert_eq!(get("/v1/services?q=demo").await, ["shop"], "a tenant");
    for literal in ["%", "_", "\\"] {
        let path = format!(
            "/v1/services?q={}",
            literal.replace('%', "%25").replace('\\', "%5C")
        );
        assert!(ids(op.get(&path).await.ok(200)).is_empty(), "{literal}");
    }
    let counted = op.get("/v1/services?q=site&limit=1").await;
    assert_eq!(
        counted
            .headers
            .get("x-total-count")
            .and_then(|v| v.to_str().ok()),
        Some("2")
    );
    assert_eq!(get("/v1/services?q=").await.len(), 3);
    assert_eq!(
        get("/v1/services?sort=tenant").await,
        ["a-site", "b-site", "shop"]
    );
    assert_eq!(
        get("/v1/services?sort=tenant&dir=desc").await,
        ["shop", "b-site", "a-site"]
    );
    assert_eq!(
        get("/v1/services?dir=desc&limit=1&offset=1").await,
        ["b-site"]
    );
    op.get("/v1/services?sort=hostnames")
        .await
        .err_field(422, "invalid", "sort");
    op.get("/v1/services?dir=up")
        .await
        .err_field(422, "invalid", "dir");
    op.get("/v1/sites?sort=tenant")
        .await
        .err_field(422, "invalid", "sort");
    let long = format!("/v1/services?q={}", "a".repeat(201));
    op.get(&long).await.err_field(422, "invalid", "q");
    let alpha = op.with_token(&tenant_key(op, "alpha").await);
    assert!(ids(alpha.get("/v1/services?q=b-site").await.ok(200)).is_empty());
    assert_eq!(
        ids(alpha.get("/v1/services?q=site").await.ok(200)),
        ["a-site"]
    );
}

#[tokio::test]
async fn lists_search_and_sort_in_the_database_sqlite() {
    let (mut plane, op) = start_seeded().await;
    lists_search_and_sort(&op).await;
    plane.shutdown().await;
}

#[tokio::test]
async fn lists_search_and_sort_in_the_database_postgres() {
    lingjing_control::testing::with_scratch_postgres("listsearch", |url| async move {
        let store = lingjing_control::Store::open(&url).await.expect("store");
        let (handle, op) = common::serve_store(store).await;
        common::seed_topology(&op).await;
        lists_search_and_sort(&op).await;
        handle.shutdown().await.expect("shutdown");
    })
    .await;
}
