//! Shared harness of the control plane's integration tests: start a real control plane on
//! a loopback port over a fresh SQLite file, talk to it with reqwest, and build the JSON
//! bodies of a small topology.
//!
//! Every request made through [`Api`] fails the test on a 5xx answer and on an error
//! answer that is not the JSON error body, so each test also checks that.

// Each test binary uses a different part of this module.
#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use lingjing_control::server::DEFAULT_ZONE;
use lingjing_control::{ControlConfig, ControlHandle, Store, serve};
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use tempfile::TempDir;

/// The operator token every test control plane is started with.
pub const OPERATOR_TOKEN: &str = "test-operator-token";

/// A control plane over a SQLite file in its own temporary directory.
pub struct TestPlane {
    /// `None` once [`TestPlane::shutdown`] ran.
    pub handle: Option<ControlHandle>,
    /// A client holding the operator token.
    pub api: Api,
    /// The database file.
    pub db: PathBuf,
    pub dir: TempDir,
}

impl TestPlane {
    /// Stops the control plane and closes its store.
    pub async fn shutdown(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.shutdown().await.expect("clean shutdown");
        }
    }
}

/// Starts a control plane on `127.0.0.1:0` over a fresh SQLite file.
pub async fn start() -> TestPlane {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("control.db");
    let store = Store::open_sqlite_file(&db).await.expect("open the store");
    let (handle, api) = serve_store(store).await;
    TestPlane {
        handle: Some(handle),
        api,
        db,
        dir,
    }
}

/// A control plane on a fresh SQLite store with [`seed_topology`], and a clone of its
/// operator client.
pub async fn start_seeded() -> (TestPlane, Api) {
    let plane = start().await;
    let api = plane.api.clone();
    seed_topology(&api).await;
    (plane, api)
}

/// The `sqlite://` URL of a database file.
pub fn sqlite_url(path: &std::path::Path) -> String {
    format!("sqlite://{}", path.display())
}

/// The trust policy of test control planes: origins on loopback allowed (test origins
/// listen there).
pub fn loopback_policy() -> lingjing_control::TrustPolicy {
    lingjing_control::TrustPolicy {
        allow_origins: vec!["127.0.0.0/8".into(), "::1/128".into()],
        ..Default::default()
    }
}

/// Starts a control plane with `policy` on `127.0.0.1:0` over a fresh SQLite file.
pub async fn start_with(policy: lingjing_control::TrustPolicy) -> TestPlane {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("control.db");
    let store = Store::open_sqlite_file(&db).await.expect("open the store");
    let (handle, api) = serve_store_with(store, policy).await;
    TestPlane {
        handle: Some(handle),
        api,
        db,
        dir,
    }
}

/// Serves `store` on `127.0.0.1:0`; returns the handle and an operator client.
pub async fn serve_store(store: Store) -> (ControlHandle, Api) {
    serve_store_with(store, loopback_policy()).await
}

/// Serves `store` with `policy` on `127.0.0.1:0`.
pub async fn serve_store_with(
    store: Store,
    policy: lingjing_control::TrustPolicy,
) -> (ControlHandle, Api) {
    let config = ControlConfig {
        listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        operator_token: OPERATOR_TOKEN.to_owned(),
        zone: DEFAULT_ZONE.to_owned(),
        health: None,
        storage: Default::default(),
        meter_retention_days: lingjing_control::server::DEFAULT_METER_RETENTION_DAYS,
        policy,
    };
    let handle = serve(config, store).await.expect("serve");
    let api = Api::new(&handle.url(), Some(OPERATOR_TOKEN));
    (handle, api)
}

/// A request body.
pub enum Body {
    None,
    Json(Value),
    /// Bytes sent as they are, with this content type (or none).
    Raw(Option<&'static str>, Vec<u8>),
}

/// A client of one control plane, with one token (or none).
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

/// An answer: status, headers and the body parsed as JSON (`Null` when empty, a string
/// when it is not JSON).
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Value,
    pub what: String,
}

impl Api {
    pub fn new(base: &str, token: Option<&str>) -> Api {
        let http = reqwest::Client::builder()
            // Only ever hit on a hang: long polls in the tests wait at most 10 s.
            .timeout(Duration::from_secs(60))
            .build()
            .expect("http client");
        Api {
            http,
            base: base.trim_end_matches('/').to_owned(),
            token: token.map(str::to_owned),
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// The same control plane with another token.
    pub fn with_token(&self, token: &str) -> Api {
        Api {
            token: Some(token.to_owned()),
            ..self.clone()
        }
    }

    /// The same control plane without a token.
    pub fn anonymous(&self) -> Api {
        Api {
            token: None,
            ..self.clone()
        }
    }

    /// Sends a request with the `Authorization` header as given (not from the token).
    pub async fn send_with_auth(
        &self,
        method: Method,
        path: &str,
        auth: Option<&str>,
        body: Body,
    ) -> Resp {
        let what = format!("{method} {path}");
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(auth) = auth {
            req = req.header(reqwest::header::AUTHORIZATION, auth);
        }
        req = match body {
            Body::None => req,
            Body::Json(v) => req.json(&v),
            Body::Raw(content_type, bytes) => {
                if let Some(ct) = content_type {
                    req = req.header(reqwest::header::CONTENT_TYPE, ct);
                }
                req.body(bytes)
            }
        };
        let res = req.send().await.unwrap_or_else(|e| panic!("{what}: {e}"));
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let bytes = res
            .bytes()
            .await
            .unwrap_or_else(|e| panic!("{what}: reading the body: {e}"));
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        let resp = Resp {
            status,
            headers,
            body,
            what,
        };
        assert!(
            status < 500,
            "{}: answered {status}, never expected: {}",
            resp.what,
            resp.body
        );
        if status >= 400 {
            resp.assert_error_body();
        }
        resp
    }

    pub async fn send(&self, method: Method, path: &str, body: Body) -> Resp {
        let auth = self.token.as_ref().map(|t| format!("Bearer {t}"));
        self.send_with_auth(method, path, auth.as_deref(), body)
            .await
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.send(Method::GET, path, Body::None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Resp {
        self.send(Method::POST, path, Body::Json(body)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> Resp {
        self.send(Method::PUT, path, Body::Json(body)).await
    }

    pub async fn delete(&self, path: &str) -> Resp {
        self.send(Method::DELETE, path, Body::None).await
    }

    pub async fn post_text(&self, path: &str, text: &str) -> Resp {
        self.send(
            Method::POST,
            path,
            Body::Raw(Some("text/plain"), text.as_bytes().to_vec()),
        )
        .await
    }

    /// Allocates an address from pool `pool` (`body`: the node, and the address if
    /// chosen), expecting 201; returns the allocation.
    pub async fn allocate(&self, pool: &str, body: Value) -> Value {
        self.post(&format!("/v1/pools/{pool}/allocations"), body)
            .await
            .ok(201)
    }

    /// Creates `body` under `/v1/{plural}`, expecting 201; returns the view. A service
    /// created with the operator token is approved too (its hostnames verified), so it
    /// reaches the snapshots; post to `/v1/services` directly to keep it pending.
    pub async fn create(&self, plural: &str, body: Value) -> Value {
        let view = self.post(&format!("/v1/{plural}"), body).await.ok(201);
        if plural == "services" && self.token.as_deref() == Some(OPERATOR_TOKEN) {
            let id = view["id"].as_str().expect("service id");
            self.post(
                &format!("/v1/services/{id}/verify"),
                json!({ "approve": true }),
            )
            .await
            .ok(200);
            return self.get(&format!("/v1/services/{id}")).await.ok(200);
        }
        view
    }

    /// The ids of `/v1/{plural}`, in the order listed.
    pub async fn ids(&self, plural: &str) -> Vec<String> {
        ids(&self.get(&format!("/v1/{plural}")).await.ok(200))
    }

    /// The current configuration version, from the edge snapshot.
    pub async fn version(&self) -> u64 {
        let snap = self.get("/v1/snapshots/edge?after=0&timeout_ms=0").await;
        match snap.status {
            200 => snap.body["version"].as_u64().expect("version"),
            304 => 0,
            other => panic!("snapshot answered {other}: {}", snap.body),
        }
    }
}

impl Resp {
    /// Expects `status`; returns the body.
    #[track_caller]
    pub fn ok(self, status: u16) -> Value {
        assert_eq!(
            self.status, status,
            "{}: expected {status}, got {}: {}",
            self.what, self.status, self.body
        );
        self.body
    }

    /// Expects an error answer with `status` and `code`; returns the answer.
    #[track_caller]
    pub fn err(self, status: u16, code: &str) -> Resp {
        assert_eq!(
            (self.status, self.code()),
            (status, code),
            "{}: expected {status} `{code}`: {}",
            self.what,
            self.body
        );
        self
    }

    /// Expects an error answer with `status` and `code` naming `field`.
    #[track_caller]
    pub fn err_field(self, status: u16, code: &str, field: &str) -> Resp {
        let resp = self.err(status, code);
        assert_eq!(
            resp.field(),
            Some(field),
            "{}: expected the error to name `{field}`: {}",
            resp.what,
            resp.body
        );
        resp
    }

    /// `error.code` of an error answer ("" when absent).
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }

    pub fn field(&self) -> Option<&str> {
        self.body["error"]["field"].as_str()
    }

    pub fn message(&self) -> &str {
        self.body["error"]["message"].as_str().unwrap_or("")
    }

    /// The `x-lingjing-version` header.
    pub fn version_header(&self) -> Option<u64> {
        self.headers
            .get("x-lingjing-version")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
    }

    #[track_caller]
    fn assert_error_body(&self) {
        let ok = self.body["error"]["code"]
            .as_str()
            .is_some_and(|c| !c.is_empty())
            && self.body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty());
        assert!(
            ok,
            "{}: the {} answer is not the JSON error body: {:?}",
            self.what, self.status, self.body
        );
    }
}

/// The `id`s of a JSON array of resources.
pub fn ids(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("expected an array: {list}"))
        .iter()
        .map(|v| v["id"].as_str().expect("id").to_owned())
        .collect()
}

/// Asserts that every member of `expected` is in `actual`, recursively: objects may have
/// more members, arrays must have the same length.
#[track_caller]
pub fn assert_subset(actual: &Value, expected: &Value) {
    fn walk(actual: &Value, expected: &Value, path: &str) -> Result<(), String> {
        match (actual, expected) {
            (Value::Object(a), Value::Object(e)) => {
                for (k, ev) in e {
                    let av = a.get(k).ok_or_else(|| format!("{path}.{k} is missing"))?;
                    walk(av, ev, &format!("{path}.{k}"))?;
                }
                Ok(())
            }
            (Value::Array(a), Value::Array(e)) if a.len() == e.len() => {
                for (i, (av, ev)) in a.iter().zip(e).enumerate() {
                    walk(av, ev, &format!("{path}[{i}]"))?;
                }
                Ok(())
            }
            (a, e) if a == e => Ok(()),
            (a, e) => Err(format!("{path}: expected {e}, got {a}")),
        }
    }
    if let Err(e) = walk(actual, expected, "$") {
        panic!("{e}\nactual: {actual}\nexpected within it: {expected}");
    }
}

// --- bodies ---------------------------------------------------------------------------

pub fn region(id: &str, parent: Option<&str>, level: &str) -> Value {
    json!({ "id": id, "name": format!("Region {id}"), "parent": parent, "level": level })
}

pub fn line(id: &str) -> Value {
    json!({ "id": id, "name": format!("Line {id}") })
}

pub fn site(id: &str, region: &str, lines: &[&str], parent: Option<&str>) -> Value {
    json!({
        "id": id,
        "name": format!("Site {id}"),
        "region": region,
        "lines": lines,
        "bandwidth_mbps": 10000,
        "parent": parent,
    })
}

pub fn node(id: &str, site: &str, roles: &[&str]) -> Value {
    json!({ "id": id, "site": site, "roles": roles })
}

pub fn pool(id: &str, site: &str, line: Option<&str>, cidr: &str) -> Value {
    json!({ "id": id, "site": site, "line": line, "cidr": cidr })
}

pub fn tenant(id: &str) -> Value {
    json!({ "id": id, "name": format!("Tenant {id}") })
}

pub fn service(id: &str, tenant: &str, hostnames: &[&str]) -> Value {
    json!({
        "id": id,
        "tenant": tenant,
        "hostnames": hostnames,
        "origins": [{ "address": "127.0.0.1:7900", "weight": 1 }],
    })
}

/// Loads a small topology:
/// - regions `cn` > `cn-js` > `cn-js-wuxi`, `cn-js-nanjing`;
/// - lines `telecom`, `unicom`;
/// - sites `nj-1` (Nanjing, the parent) and `wx-1` (Wuxi, fills from `nj-1`);
/// - nodes `nj-1-a` (parent, dns), `wx-1-a` and `wx-1-b` (edge);
/// - pool `wx-1-telecom` (10.1.0.0/28 at `wx-1`);
/// - tenant `demo` with service `shop` (`www.demo.example`).
pub async fn seed_topology(api: &Api) {
    seed_topology_with_origin(api, "127.0.0.1:7900").await;
}

/// [`seed_topology`] with the service's origin at `origin`.
pub async fn seed_topology_with_origin(api: &Api, origin: &str) {
    api.create("regions", region("cn", None, "country")).await;
    api.create("regions", region("cn-js", Some("cn"), "province"))
        .await;
    api.create("regions", region("cn-js-wuxi", Some("cn-js"), "city"))
        .await;
    api.create("regions", region("cn-js-nanjing", Some("cn-js"), "city"))
        .await;
    api.create("lines", line("unicom")).await;
    api.create("lines", line("telecom")).await;
    api.create(
        "sites",
        site("nj-1", "cn-js-nanjing", &["telecom", "unicom"], None),
    )
    .await;
    api.create(
        "sites",
        site("wx-1", "cn-js-wuxi", &["telecom", "unicom"], Some("nj-1")),
    )
    .await;
    api.create("nodes", node("nj-1-a", "nj-1", &["parent", "dns"]))
        .await;
    api.create("nodes", node("wx-1-b", "wx-1", &["edge"])).await;
    api.create("nodes", node("wx-1-a", "wx-1", &["edge"])).await;
    api.create(
        "pools",
        pool("wx-1-telecom", "wx-1", Some("telecom"), "10.1.0.0/28"),
    )
    .await;
    api.create("tenants", tenant("demo")).await;
    let mut shop = service("shop", "demo", &["www.demo.example"]);
    shop["origins"] = json!([{ "address": origin, "weight": 1 }]);
    api.create("services", shop).await;
}

/// Creates an API key of `tenant`; returns its secret.
pub async fn tenant_key(api: &Api, tenant: &str) -> String {
    let key = api
        .send(
            Method::POST,
            &format!("/v1/tenants/{tenant}/keys"),
            Body::None,
        )
        .await
        .ok(201);
    assert_eq!(key["tenant"], tenant);
    key["secret"].as_str().expect("secret").to_owned()
}

/// A client holding node `node`'s own credential (join token issued and exchanged).
pub async fn node_credential(api: &Api, node: &str) -> Api {
    let t = api
        .post(&format!("/v1/nodes/{node}/join-token"), json!({}))
        .await
        .ok(201);
    let c = api
        .anonymous()
        .post(
            &format!("/v1/nodes/{node}/credential"),
            json!({ "join_token": t["join_token"] }),
        )
        .await
        .ok(201);
    api.with_token(c["credential"].as_str().expect("credential"))
}
