//! A control plane with the console beside its API, on loopback port 0 over a fresh
//! SQLite file, seeded through the API: two sites, three nodes, a pool with one address
//! allocated (10.1.0.1 to wx-1-a), tenants `alpha` and `beta` with a service each and an
//! API key each.

#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use lingjing_control::server::{DEFAULT_ZONE, HttpOptions, Mount};
use lingjing_control::{ControlConfig, ControlHandle, Store};
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use serde_json::{Value, json};

pub const OPERATOR_TOKEN: &str = "console-test-operator-token";

pub struct Plane {
    pub handle: ControlHandle,
    pub url: String,
    pub alpha_key: String,
    pub beta_key: String,
    _dir: tempfile::TempDir,
}

/// Starts and seeds the plane.
pub async fn start() -> Plane {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open_sqlite_file(&dir.path().join("control.db"))
        .await
        .expect("store");
    let config = ControlConfig {
        listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        operator_token: OPERATOR_TOKEN.to_owned(),
        zone: DEFAULT_ZONE.to_owned(),
        health: None,
        storage: Default::default(),
        meter_retention_days: lingjing_control::server::DEFAULT_METER_RETENTION_DAYS,
        policy: lingjing_control::TrustPolicy {
            allow_origins: vec!["127.0.0.0/8".into()],
            ..Default::default()
        },
    };
    let http = HttpOptions {
        mount: Some(Mount(Arc::new(lingjing_console::beside))),
        ..Default::default()
    };
    let handle = lingjing_control::serve_with(config, http, store)
        .await
        .expect("serve");
    let url = handle.url();
    for (kind, body) in [
        (
            "regions",
            json!({"id": "cn", "name": "China", "level": "country"}),
        ),
        (
            "regions",
            json!({"id": "cn-js", "name": "Jiangsu", "parent": "cn", "level": "province"}),
        ),
        ("lines", json!({"id": "telecom", "name": "China Telecom"})),
        (
            "sites",
            json!({"id": "nj-1", "name": "Nanjing 1", "region": "cn-js", "lines": ["telecom"]}),
        ),
        (
            "sites",
            json!({"id": "wx-1", "name": "Wuxi 1", "region": "cn-js", "lines": ["telecom"], "parent": "nj-1"}),
        ),
        (
            "nodes",
            json!({"id": "nj-1-a", "site": "nj-1", "roles": ["parent", "dns"]}),
        ),
        (
            "nodes",
            json!({"id": "wx-1-a", "site": "wx-1", "roles": ["edge"]}),
        ),
        (
            "nodes",
            json!({"id": "wx-1-b", "site": "wx-1", "roles": ["edge"]}),
        ),
        (
            "pools",
            json!({"id": "wx-1-telecom", "site": "wx-1", "line": "telecom", "cidr": "10.1.0.0/28"}),
        ),
        (
            "pools/wx-1-telecom/allocations",
            json!({"node": "wx-1-a", "address": "10.1.0.1"}),
        ),
        ("tenants", json!({"id": "alpha", "name": "Alpha"})),
        ("tenants", json!({"id": "beta", "name": "Beta"})),
        (
            "services",
            json!({"id": "a-site", "tenant": "alpha", "hostnames": ["www.alpha.example"], "origins": [{"address": "127.0.0.1:7900"}]}),
        ),
        (
            "services",
            json!({"id": "b-site", "tenant": "beta", "hostnames": ["www.beta.example"], "origins": [{"address": "127.0.0.1:7901"}]}),
        ),
    ] {
        operator(
            &url,
            reqwest::Method::POST,
            &format!("/v1/{kind}"),
            Some(body),
        )
        .await;
    }
    let alpha_key = key(&url, "alpha").await;
    let beta_key = key(&url, "beta").await;
    Plane {
        handle,
        url,
        alpha_key,
        beta_key,
        _dir: dir,
    }
}

/// An operator API call that must succeed; its answer.
pub async fn operator(
    url: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Value {
    let mut req = reqwest::Client::new()
        .request(method.clone(), format!("{url}{path}"))
        .bearer_auth(OPERATOR_TOKEN);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("send");
    let status = resp.status();
    let text = resp.text().await.expect("body");
    assert!(status.is_success(), "{method} {path}: {status} {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

async fn key(url: &str, tenant: &str) -> String {
    let k = operator(
        url,
        reqwest::Method::POST,
        &format!("/v1/tenants/{tenant}/keys"),
        None,
    )
    .await;
    k["secret"].as_str().expect("secret").to_owned()
}

/// A cookie-keeping client that does not follow redirects (so they can be checked).
pub struct Browser {
    pub http: reqwest::Client,
    pub base: String,
}

pub struct Page {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Page {
    pub fn location(&self) -> &str {
        self.headers
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The value of the first `name="csrf"` hidden field.
    pub fn csrf(&self) -> String {
        let at = self
            .body
            .find("name=\"csrf\" value=\"")
            .unwrap_or_else(|| panic!("no csrf field in {}", self.body));
        let rest = &self.body[at + "name=\"csrf\" value=\"".len()..];
        rest[..rest.find('"').expect("end of value")].to_owned()
    }
}

impl Browser {
    pub fn new(base: &str) -> Browser {
        Browser {
            http: reqwest::Client::builder()
                .cookie_store(true)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            base: base.to_owned(),
        }
    }

    pub async fn get(&self, path: &str) -> Page {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("get");
        Page {
            status: resp.status(),
            headers: resp.headers().clone(),
            body: resp.text().await.expect("body"),
        }
    }

    pub async fn post(&self, path: &str, form: &[(&str, &str)], origin: Option<&str>) -> Page {
        let mut req = self.http.post(format!("{}{path}", self.base)).form(form);
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        let resp = req.send().await.expect("post");
        Page {
            status: resp.status(),
            headers: resp.headers().clone(),
            body: resp.text().await.expect("body"),
        }
    }

    /// Signs in with `token`; the page it lands on.
    pub async fn sign_in(&self, token: &str) -> Page {
        let form = self.get("/sign-in").await;
        assert_eq!(form.status, StatusCode::OK);
        let csrf = form.csrf();
        let done = self
            .post("/sign-in", &[("token", token), ("csrf", &csrf)], None)
            .await;
        assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
        let cookie = done
            .headers
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|c| c.starts_with("lj_session="))
            .expect("session cookie")
            .to_owned();
        assert!(
            cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
            "{cookie}"
        );
        let home = self.get(done.location()).await;
        assert_eq!(home.status, StatusCode::SEE_OTHER);
        self.get(home.location()).await
    }
}
