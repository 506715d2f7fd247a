//! Traffic defence in the console: a tenant adds and removes rules for its own services
//! only (the API's errors beside the field), never sees or removes another tenant's; the
//! operator sees every rule.

mod common;

use common::Browser;
use reqwest::{Method, StatusCode};

async fn rules(url: &str) -> Vec<serde_json::Value> {
    common::operator(url, Method::GET, "/v1/defence/rules", None)
        .await
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test]
async fn tenants_manage_their_own_defence_rules() {
    let plane = common::start().await;
    let alpha = Browser::new(&plane.url);
    alpha.sign_in(&plane.alpha_key).await;
    let page = alpha.get("/defence").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("No attack detected yet"));
    assert!(page.body.contains("No rules"));
    let csrf = page.csrf();
    let rule = |service: &'static str, sources: &'static str| {
        [
            ("csrf", csrf.clone()),
            ("service", service.to_owned()),
            ("action", "block".to_owned()),
            ("sources", sources.to_owned()),
            ("mode", "enforce".to_owned()),
            ("ttl_seconds", "3600".to_owned()),
        ]
    };
    let post = |form: [(&'static str, String); 6]| {
        let b = &alpha;
        async move {
            let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
            b.post("/defence/rules", &pairs, None).await
        }
    };

    // A source that is not an address: the message beside the sources box.
    let bad = post(rule("a-site", "192.0.2.7\nnot-an-address")).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.body);
    assert!(bad.body.contains("id=\"sources-error\""), "{}", bad.body);
    assert!(bad.body.contains("not-an-address"), "the value is kept");
    // Another tenant's service, or every service: refused.
    assert_eq!(
        post(rule("b-site", "192.0.2.7")).await.status,
        StatusCode::NOT_FOUND
    );
    let every = post(rule("", "192.0.2.7")).await;
    assert_eq!(every.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        every.body.contains("id=\"service-error\""),
        "{}",
        every.body
    );
    assert!(rules(&plane.url).await.is_empty(), "nothing was added");

    let added = post(rule("a-site", "192.0.2.7\n198.51.100.0/24")).await;
    assert_eq!(added.status, StatusCode::SEE_OTHER, "{}", added.body);
    let all = rules(&plane.url).await;
    assert_eq!(all.len(), 1);
    let id = all[0]["id"].as_str().expect("id").to_owned();
    assert!(all[0]["expires_ms"].is_u64());
    let page = alpha.get("/defence").await;
    assert!(
        page.body.contains("from 192.0.2.7/32, 198.51.100.0/24"),
        "{}",
        page.body
    );

    // Beta neither sees nor removes it.
    let beta = Browser::new(&plane.url);
    let beta_page = beta.sign_in(&plane.beta_key).await;
    let theirs = beta.get("/defence").await;
    assert!(!theirs.body.contains(&id), "{}", theirs.body);
    let tried = beta
        .post(
            &format!("/defence/rules/{id}/remove"),
            &[("csrf", &beta_page.csrf())],
            None,
        )
        .await;
    assert_eq!(tried.status, StatusCode::NOT_FOUND);
    assert_eq!(rules(&plane.url).await.len(), 1);

    // The operator sees it; alpha removes it.
    let operator = Browser::new(&plane.url);
    operator.sign_in(common::OPERATOR_TOKEN).await;
    assert!(operator.get("/defence").await.body.contains(&id));
    let filtered = operator.get("/defence?q=198.51.100").await;
    assert!(filtered.body.contains(&id), "{}", filtered.body);
    let none = operator.get("/defence?q=nothing-like-it").await;
    assert!(
        none.body.contains("No rule matches the filter"),
        "{}",
        none.body
    );
    let removed = alpha
        .post(
            &format!("/defence/rules/{id}/remove"),
            &[("csrf", &csrf)],
            None,
        )
        .await;
    assert_eq!(removed.status, StatusCode::SEE_OTHER, "{}", removed.body);
    assert!(rules(&plane.url).await.is_empty());
    plane.handle.shutdown().await.expect("shutdown");
}
