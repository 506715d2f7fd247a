//! Editing a service in the console: hostnames, origins with their options and cache
//! rules saved through the API; the form's own errors and the API's beside the rule they
//! name; a form opened before someone else's change is refused; a tenant cannot edit
//! another tenant's service by URL.

mod common;

use common::Browser;
use reqwest::{Method, StatusCode};

async fn service(url: &str, id: &str) -> serde_json::Value {
    common::operator(url, Method::GET, &format!("/v1/services/{id}"), None).await
}

/// The value of the hidden field `name` on `body`.
fn hidden(body: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let at = body
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in {body}"));
    let rest = &body[at + marker.len()..];
    rest[..rest.find('"').expect("end")].to_owned()
}

#[tokio::test]
async fn a_tenant_edits_hostnames_origins_and_cache_rules() {
    let plane = common::start().await;
    let b = Browser::new(&plane.url);
    b.sign_in(&plane.alpha_key).await;
    let form = b.get("/services/a-site/edit").await;
    assert_eq!(form.status, StatusCode::OK, "{}", form.body);
    assert!(
        form.body.contains("name=\"rule.0.path\""),
        "a blank rule row"
    );
    let csrf = form.csrf();
    let base = hidden(&form.body, "base");
    let edit = |base: String, ttl: &'static str, path1: &'static str| {
        vec![
            ("csrf", csrf.clone()),
            ("base", base),
            ("hostnames", "www.alpha.example\napi.alpha.example".into()),
            (
                "origins",
                "127.0.0.1:7900 weight=2\n127.0.0.1:7902 backup".into(),
            ),
            ("rule.0.path", "/assets/*".into()),
            ("rule.0.ttl", ttl.into()),
            ("rule.0.ignore_query", "on".into()),
            ("rule.1.path", path1.into()),
            ("rule.2.path", String::new()),
        ]
    };
    let post = |fields: Vec<(&'static str, String)>| {
        let b = &b;
        async move {
            let pairs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
            b.post("/services/a-site/edit", &pairs, None).await
        }
    };
    let before = service(&plane.url, "a-site").await;

    // The form's own check: a TTL that is not a number, shown beside its rule.
    let bad = post(edit(base.clone(), "soon", "")).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.body.contains("id=\"rule-0-error\""), "{}", bad.body);
    assert!(bad.body.contains("`soon`"));
    // The API's: a second rule whose path does not start with `/`, beside that rule.
    let bad = post(edit(base.clone(), "3600", "images/*")).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.body);
    assert!(bad.body.contains("id=\"rule-1-error\""), "{}", bad.body);
    assert!(!bad.body.contains("id=\"rule-0-error\""));
    assert!(
        bad.body.contains("value=\"images/*\""),
        "the values are kept"
    );
    assert_eq!(
        service(&plane.url, "a-site").await,
        before,
        "nothing changed"
    );

    let saved = post(edit(base.clone(), "3600", "")).await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    assert_eq!(saved.location(), "/services/a-site");
    let after = service(&plane.url, "a-site").await;
    assert_eq!(
        after["hostnames"],
        serde_json::json!(["www.alpha.example", "api.alpha.example"])
    );
    assert_eq!(after["origins"][0]["weight"], 2);
    assert_eq!(after["origins"][1]["backup"], true);
    let rules = after["cache_rules"].as_array().expect("rules");
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0]["path"], "/assets/*");
    assert_eq!(rules[0]["ttl_secs"], 3600);
    assert_eq!(rules[0]["ignore_query"], true);
    let page = b.get("/services/a-site").await;
    assert!(
        page.body.contains("<code>/assets/*</code>"),
        "{}",
        page.body
    );
    assert!(page.body.contains("127.0.0.1:7902 backup"));
    let again = b.get("/services/a-site/edit").await;
    assert!(again.body.contains("127.0.0.1:7900 weight=2"));
    assert!(again.body.contains("name=\"rule.0.ignore_query\" checked"));

    // The same form posted again (opened before that save): refused, nothing changed.
    let stale = post(edit(base, "60", "")).await;
    assert_eq!(stale.status, StatusCode::CONFLICT);
    assert!(stale.body.contains("someone changed this service"));
    assert_eq!(service(&plane.url, "a-site").await, after);
    plane.handle.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_tenant_cannot_edit_another_tenants_service() {
    let plane = common::start().await;
    let b = Browser::new(&plane.url);
    let page = b.sign_in(&plane.alpha_key).await;
    let csrf = page.csrf();
    assert_eq!(
        b.get("/services/b-site/edit").await.status,
        StatusCode::NOT_FOUND
    );
    let before = service(&plane.url, "b-site").await;
    let tried = b
        .post(
            "/services/b-site/edit",
            &[
                ("csrf", &csrf),
                ("base", "0"),
                ("hostnames", "www.beta.example"),
                ("origins", "203.0.113.9:80"),
            ],
            None,
        )
        .await;
    assert_eq!(tried.status, StatusCode::NOT_FOUND);
    assert_eq!(service(&plane.url, "b-site").await, before);
    plane.handle.shutdown().await.expect("shutdown");
}
