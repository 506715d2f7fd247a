//! One store test suite, run against both backends: [`suite`] opens a [`Store`] at a URL,
//! serves a control plane over it, and checks writes, reads, versions, two control planes
//! sharing one database, and that reopening the database keeps everything.
//!
//! `sqlite` always runs, on a temporary file. `postgres` runs when `LINGJING_TEST_POSTGRES`
//! holds a server URL (e.g. `postgres://postgres@127.0.0.1:5432/postgres`): it creates a
//! database of its own there and drops it afterwards. A third test crashes a child process
//! (abort, no shutdown) right after its writes were acknowledged and checks that SQLite
//! still has them.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{
    Api, Body, node, seed_topology, serve_store, service, sqlite_url, tenant, tenant_key,
};
use lingjing_control::Store;
use lingjing_control::store::Backend;
use reqwest::Method;
use serde_json::{Value, json};

/// Everything the API shows, to compare before and after a reopen.
async fn dump(api: &Api) -> Vec<Value> {
    let mut all = Vec::new();
    for kind in [
        "regions", "lines", "sites", "nodes", "pools", "tenants", "services",
    ] {
        all.push(api.get(&format!("/v1/{kind}")).await.ok(200));
    }
    all.push(api.get("/v1/lines/telecom/prefixes").await.ok(200));
    all.push(api.get("/v1/pools/wx-1-telecom/allocations").await.ok(200));
    all.push(api.get("/v1/tenants/demo/keys").await.ok(200));
    all
}

/// The store checks every backend must pass. `url` names an empty database.
async fn suite(url: &str, backend: Backend) {
    // A fresh database starts at version 0.
    let store = Store::open(url).await.expect("open the store");
    assert_eq!(store.backend(), backend);
    assert_eq!(store.version().await.expect("version"), 0);
    let (first, api) = serve_store(store).await;

    // Create through the API; every write bumps the version.
    seed_topology(&api).await;
    let v = api.version().await;
    assert_eq!(
        v, 15,
        "one version per created resource, and the service's approval"
    );
    assert_eq!(first.store().version().await.expect("version"), v);

    // Read back.
    assert_eq!(api.ids("nodes").await, ["nj-1-a", "wx-1-a", "wx-1-b"]);
    let svc = api.get("/v1/services/shop").await.ok(200);
    assert_eq!(svc["hostnames"], json!(["www.demo.example"]));

    // Update: visible, and a newer version.
    let mut changed = service("shop", "demo", &["www.demo.example", "cdn.demo.example"]);
    changed["origins"][0]["weight"] = json!(5);
    api.put("/v1/services/shop", changed).await.ok(200);
    let svc = api.get("/v1/services/shop").await.ok(200);
    assert_eq!(svc["origins"][0]["weight"], 5);
    assert_eq!(svc["hostnames"][1], "cdn.demo.example");
    let v2 = api.version().await;
    assert!(v2 > v);

    // Delete: gone, and a newer version.
    api.delete("/v1/nodes/wx-1-b").await.ok(204);
    api.get("/v1/nodes/wx-1-b").await.err(404, "not_found");
    let v3 = api.version().await;
    assert!(v3 > v2);

    // Refused writes leave no trace, also in the version.
    api.post("/v1/nodes", node("x", "nowhere", &["edge"]))
        .await
        .err_field(422, "invalid", "site");
    api.delete("/v1/sites/wx-1").await.err(409, "in_use");
    assert_eq!(api.version().await, v3);

    // The other tables: allocations, prefixes, keys, node status.
    let a = api
        .allocate("wx-1-telecom", json!({ "node": "wx-1-a" }))
        .await;
    assert_eq!(a["address"], "10.1.0.1");
    api.post_text(
        "/v1/lines/import",
        "198.51.100.0/24 telecom cn-js-wuxi\n203.0.113.0/24 unicom\n",
    )
    .await
    .ok(200);
    api.post(
        "/v1/nodes/wx-1-a/heartbeat",
        json!({ "role": "edge", "applied_version": 9 }),
    )
    .await
    .ok(204);
    let key = tenant_key(&api, "demo").await;
    let tenant_api = api.with_token(&key);
    assert_eq!(tenant_api.ids("services").await, ["shop"]);

    // A second control plane on the same database (a replica) sees all of it.
    let store2 = Store::open(url).await.expect("open the store again");
    let (second, api2) = serve_store(store2).await;
    let seen = dump(&api).await;
    assert_eq!(dump(&api2).await, seen);
    assert_eq!(api2.version().await, api.version().await);
    let tenant_api2 = api2.with_token(&key);
    assert_eq!(tenant_api2.ids("services").await, ["shop"]);

    // A write through one replica wakes a long poll on the other (200 long before the
    // poll's own 10 s timeout, which would answer 304).
    let current = api.version().await;
    let poller = {
        let api = api.clone();
        tokio::spawn(async move {
            api.get(&format!(
                "/v1/snapshots/edge?after={current}&timeout_ms=10000"
            ))
            .await
        })
    };
    api2.create("tenants", tenant("from-replica")).await;
    let woke = tokio::time::timeout(Duration::from_secs(30), poller)
        .await
        .expect("the poll returns")
        .expect("poll task");
    assert_eq!(woke.status, 200, "woken by the other replica's write");
    assert!(woke.body["version"].as_u64().expect("version") > current);
    api.get("/v1/tenants/from-replica").await.ok(200);

    // Writes through both replicas at once are serialised: no address is handed out twice
    // and no version is lost.
    let before = api.version().await;
    let requests = (0..20).map(|i| {
        let api = if i % 2 == 0 {
            api.clone()
        } else {
            api2.clone()
        };
        async move {
            api.post(
                "/v1/pools/wx-1-telecom/allocations",
                json!({ "node": "wx-1-a" }),
            )
            .await
        }
    });
    let answers = futures::future::join_all(requests).await;
    let mut granted = BTreeSet::new();
    for a in answers {
        if a.status == 201 {
            let addr = a.body["address"].as_str().expect("address").to_owned();
            assert!(granted.insert(addr.clone()), "{addr} handed out twice");
        } else {
            a.err(409, "pool_exhausted");
        }
    }
    // 10.1.0.0/28: 14 addresses, one taken above.
    assert_eq!(granted.len(), 13);
    let after = api2.version().await;
    assert_eq!(after, before + 13, "one version per allocation");
    assert_eq!(
        api.get("/v1/pools/wx-1-telecom/allocations")
            .await
            .ok(200)
            .as_array()
            .expect("allocations")
            .len(),
        14
    );

    let seen = dump(&api).await;
    let version = api.version().await;
    second.shutdown().await.expect("shutdown");
    first.shutdown().await.expect("shutdown");

    // Reopened, the database holds everything, at the same version, and goes on.
    let store = Store::open(url).await.expect("reopen the store");
    assert_eq!(store.version().await.expect("version"), version);
    let (third, api) = serve_store(store).await;
    assert_eq!(dump(&api).await, seen);
    assert_eq!(api.version().await, version);
    let node = api.get("/v1/nodes/wx-1-a").await.ok(200);
    assert_eq!(node["status"]["applied"]["edge"], 9);
    assert_eq!(node["addresses"].as_array().expect("addresses").len(), 14);
    api.with_token(&key).get("/v1/services/shop").await.ok(200);
    api.delete("/v1/services/shop").await.ok(204);
    assert!(api.version().await > version);
    // The tables of the migrations were not applied twice: the ids are still unique.
    api.post("/v1/tenants", tenant("demo"))
        .await
        .err(409, "already_exists");
    third.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn sqlite() {
    let dir = tempfile::tempdir().expect("temp dir");
    suite(&sqlite_url(&dir.path().join("control.db")), Backend::Sqlite).await;
}

#[tokio::test]
async fn postgres() {
    lingjing_control::testing::with_scratch_postgres("the store suite", |url| async move {
        suite(&url, Backend::Postgres).await
    })
    .await;
}

/// The environment variable that turns [`crash_child`] into the crashing writer.
const CRASH_DB: &str = "LINGJING_TEST_CRASH_DB";
/// What the crashing writer prints once its writes were acknowledged.
const ACKNOWLEDGED: &str = "lingjing-test: acknowledged at version ";

#[tokio::test]
async fn sqlite_keeps_acknowledged_writes_across_a_crash() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("control.db");
    let exe = std::env::current_exe().expect("the test binary");
    let out = tokio::process::Command::new(exe)
        .args([
            "crash_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CRASH_DB, &db)
        .output()
        .await
        .expect("run the crashing child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success(),
        "the child should have crashed: {stdout}"
    );
    let version: u64 = stdout
        .lines()
        .find_map(|l| l.split_once(ACKNOWLEDGED).map(|(_, v)| v))
        .unwrap_or_else(|| {
            panic!(
                "the child acknowledged nothing:\n{stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
        .trim()
        .parse()
        .expect("a version");

    let store = Store::open_sqlite_file(&db)
        .await
        .expect("reopen after the crash");
    assert_eq!(store.version().await.expect("version"), version);
    let (handle, api) = serve_store(store).await;
    assert_eq!(api.version().await, version);
    assert_eq!(api.ids("services").await, ["last", "shop"]);
    let node = api.get("/v1/nodes/wx-1-a").await.ok(200);
    assert_eq!(node["addresses"], json!(["10.1.0.1"]));
    assert_eq!(node["status"]["applied"]["edge"], 3);
    handle.shutdown().await.expect("shutdown");
}

/// Not a test of its own: run by `sqlite_keeps_acknowledged_writes_across_a_crash` in a
/// child process, it writes through the API and aborts without any shutdown.
#[tokio::test]
#[ignore = "the crashing child of sqlite_keeps_acknowledged_writes_across_a_crash"]
async fn crash_child() {
    let Some(db) = std::env::var_os(CRASH_DB) else {
        return;
    };
    let store = Store::open_sqlite_file(std::path::Path::new(&db))
        .await
        .expect("open the store");
    let (_handle, api) = serve_store(store).await;
    seed_topology(&api).await;
    api.allocate("wx-1-telecom", json!({ "node": "wx-1-a" }))
        .await;
    api.post(
        "/v1/nodes/wx-1-a/heartbeat",
        json!({ "role": "edge", "applied_version": 3 }),
    )
    .await
    .ok(204);
    api.send(
        Method::POST,
        "/v1/services",
        Body::Json(service("last", "demo", &["last.demo.example"])),
    )
    .await
    .ok(201);
    let version = api.version().await;
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{ACKNOWLEDGED}{version}").expect("stdout");
    out.flush().expect("stdout");
    std::process::abort();
}
