//! The console over HTTP, as a browser without JavaScript uses it: sign-in and its
//! cookie, the trust boundary between tenants (by URL too), CSRF and origin checks on
//! every form, validation errors beside their field, drain and purge, the security
//! headers, the vendored assets.

mod common;

use common::Browser;
use reqwest::StatusCode;

#[tokio::test]
async fn a_tenant_sees_and_changes_only_its_own_things() {
    let plane = common::start().await;
    let b = Browser::new(&plane.url);

    // Signed out, every page sends the browser to sign in.
    for path in ["/", "/services", "/fleet", "/services/a-site", "/purges"] {
        let p = b.get(path).await;
        assert_eq!(p.status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(p.location(), "/sign-in", "{path}");
    }
    // A wrong key does not sign in.
    let form = b.get("/sign-in").await;
    let bad = b
        .post(
            "/sign-in",
            &[("token", "ljk_nope_0000"), ("csrf", &form.csrf())],
            None,
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    assert!(
        bad.body
            .contains("neither the operator token nor a tenant API key")
    );
    // Nor does a right one without the form's token.
    let forged = b
        .post(
            "/sign-in",
            &[("token", &plane.alpha_key), ("csrf", "x")],
            None,
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);

    let services = b.sign_in(&plane.alpha_key).await;
    assert_eq!(services.status, StatusCode::OK);
    assert!(services.body.contains("<title>Services · Lingjing</title>"));
    assert!(services.body.contains("a-site") && services.body.contains("tenant alpha"));
    assert!(!services.body.contains("b-site"), "{}", services.body);
    assert!(
        !services.body.contains("href=\"/fleet\""),
        "no fleet link for a tenant"
    );

    // Another tenant's service, by URL: the API's 404, nothing of it shown.
    let other = b.get("/services/b-site").await;
    assert_eq!(other.status, StatusCode::NOT_FOUND);
    assert!(!other.body.contains("www.beta.example"), "{}", other.body);
    // The operator's pages: refused.
    for path in [
        "/fleet",
        "/fleet/live",
        "/nodes/wx-1-a",
        "/sla",
        "/network",
        "/pools/wx-1-telecom",
        "/dns",
        "/storage",
    ] {
        let p = b.get(path).await;
        assert_eq!(p.status, StatusCode::FORBIDDEN, "{path}");
        assert!(!p.body.contains("wx-1-b"), "{path}: {}", p.body);
    }
    let csrf = services.csrf();
    // Nor can it drain a node, or purge another tenant's service, with a good token.
    let drain = b
        .post(
            "/nodes/wx-1-a/drain",
            &[("csrf", &csrf), ("drained", "true")],
            None,
        )
        .await;
    assert_eq!(drain.status, StatusCode::FORBIDDEN);
    let purge = b
        .post(
            "/purges",
            &[
                ("csrf", &csrf),
                ("service", "b-site"),
                ("kind", "url"),
                ("targets", "http://www.beta.example/x"),
            ],
            None,
        )
        .await;
    assert!(
        purge.status == StatusCode::NOT_FOUND || purge.status == StatusCode::FORBIDDEN,
        "{}",
        purge.status
    );
    let node = common::operator(&plane.url, reqwest::Method::GET, "/v1/nodes/wx-1-a", None).await;
    assert_eq!(node["drained"], false);
    let purges = common::operator(&plane.url, reqwest::Method::GET, "/v1/purges", None).await;
    assert_eq!(purges.as_array().map(Vec::len), Some(0));

    // A service for another tenant is created as its own, or not at all.
    let made = b
        .post(
            "/services",
            &[
                ("csrf", &csrf),
                ("id", "a-two"),
                ("tenant", "beta"),
                ("hostnames", "two.alpha.example"),
                ("origins", "127.0.0.1:7900"),
            ],
            None,
        )
        .await;
    assert_eq!(made.status, StatusCode::SEE_OTHER, "{}", made.body);
    let two = common::operator(&plane.url, reqwest::Method::GET, "/v1/services/a-two", None).await;
    assert_eq!(two["tenant"], "alpha");

    // Sign-out ends the session on the server: the old cookie no longer works.
    let out = b.post("/sign-out", &[("csrf", &csrf)], None).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert_eq!(b.get("/services").await.location(), "/sign-in");
    plane.handle.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn forms_refuse_forgery_and_show_the_apis_errors_beside_their_field() {
    let plane = common::start().await;
    let b = Browser::new(&plane.url);
    let page = b.sign_in(&plane.alpha_key).await;
    let csrf = page.csrf();
    let bad_host = [
        ("csrf", csrf.as_str()),
        ("id", "shop"),
        ("hostnames", "not a hostname!"),
        ("origins", "127.0.0.1:7900"),
    ];
    // Without the session's token, or from another site: refused, nothing created.
    let mut no_token = bad_host;
    no_token[0] = ("csrf", "0000");
    assert_eq!(
        b.post("/services", &no_token, None).await.status,
        StatusCode::FORBIDDEN
    );
    let mut good = bad_host;
    good[2] = ("hostnames", "shop.alpha.example");
    let cross = b
        .post("/services", &good, Some("https://evil.example"))
        .await;
    assert_eq!(cross.status, StatusCode::FORBIDDEN);
    let services = common::operator(&plane.url, reqwest::Method::GET, "/v1/services", None).await;
    assert_eq!(services.as_array().map(Vec::len), Some(2));

    // A bad hostname: the form again, values kept, the API's message beside the field.
    let refused = b.post("/services", &bad_host, None).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        refused.body.contains("id=\"hostnames-error\""),
        "{}",
        refused.body
    );
    assert!(
        refused.body.contains("not a hostname!"),
        "the value is kept"
    );
    assert!(refused.body.contains("aria-invalid=\"true\""));

    // A good one is created and shows what to publish and the CNAME.
    let made = b.post("/services", &good, None).await;
    assert_eq!(made.status, StatusCode::SEE_OTHER, "{}", made.body);
    assert_eq!(made.location(), "/services/shop");
    let shop = b.get("/services/shop").await;
    assert_eq!(shop.status, StatusCode::OK);
    assert!(
        shop.body.contains("shop.cdn.lingjing.test."),
        "{}",
        shop.body
    );
    assert!(
        shop.body
            .contains("_lingjing-challenge.shop.alpha.example TXT \"lingjing-verify="),
        "{}",
        shop.body
    );
    assert!(shop.body.contains("data-chart=\""), "the chart's numbers");

    // Every page says what it may load, and is not cached.
    let h = &shop.headers;
    let csp = h
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert!(
        csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert_eq!(
        h.get("cache-control").and_then(|v| v.to_str().ok()),
        Some("no-store")
    );
    for asset in [
        "/assets/htmx-2.0.11/htmx.min.js",
        "/assets/uplot-1.6.32/uPlot.iife.min.js",
        "/assets/htmx-2.0.11/LICENSE",
        "/assets/console.js",
    ] {
        let a = b.get(asset).await;
        assert_eq!(a.status, StatusCode::OK, "{asset}");
        assert!(a.body.len() > 100, "{asset}");
    }
    assert_eq!(b.get("/assets/nope.js").await.status, StatusCode::NOT_FOUND);
    plane.handle.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn the_operator_drains_a_node_and_purges_with_progress() {
    let plane = common::start().await;
    let b = Browser::new(&plane.url);
    let fleet = b.sign_in(common::OPERATOR_TOKEN).await;
    assert_eq!(fleet.status, StatusCode::OK);
    assert!(fleet.body.contains("<title>Fleet · Lingjing</title>"));
    for node in ["nj-1-a", "wx-1-a", "wx-1-b"] {
        assert!(
            fleet.body.contains(&format!("data-node=\"{node}\"")),
            "{node}"
        );
    }
    assert!(fleet.body.contains("not probed yet"), "health in words");
    assert!(
        fleet.body.contains("hx-get=\"/fleet/live?"),
        "refreshes live"
    );
    // Sorted by site, descending; filtered.
    let sorted = b.get("/fleet?sort=site&dir=desc").await;
    let (a, n) = (
        sorted.body.find("data-node=\"wx-1-a\""),
        sorted.body.find("data-node=\"nj-1-a\""),
    );
    assert!(a < n, "wx before nj");
    let filtered = b.get("/fleet/live?q=nj-1").await;
    assert!(filtered.body.contains("nj-1-a") && !filtered.body.contains("wx-1-b"));

    let csrf = fleet.csrf();
    let drained = b
        .post(
            "/nodes/wx-1-a/drain",
            &[("csrf", &csrf), ("drained", "true")],
            None,
        )
        .await;
    assert_eq!(drained.status, StatusCode::SEE_OTHER);
    let node = common::operator(&plane.url, reqwest::Method::GET, "/v1/nodes/wx-1-a", None).await;
    assert_eq!(node["drained"], true);
    let page = b.get("/nodes/wx-1-a").await;
    assert!(page.body.contains("id=\"undrain\""), "{}", page.body);
    let live = b.get("/fleet/live?q=wx-1-a").await;
    assert!(live.body.contains(">drained<"), "{}", live.body);

    let purged = b
        .post(
            "/purges",
            &[
                ("csrf", &csrf),
                ("kind", "url"),
                ("mode", "hard"),
                ("targets", "http://www.alpha.example/index.html"),
            ],
            None,
        )
        .await;
    assert_eq!(purged.status, StatusCode::SEE_OTHER, "{}", purged.body);
    let progress = b.get(purged.location()).await;
    assert_eq!(progress.status, StatusCode::OK);
    // No node has applied it (none is running): both edges pending, and the page polls.
    assert!(
        progress.body.contains("0 of 3 edge nodes"),
        "{}",
        progress.body
    );
    assert!(progress.body.contains("hx-trigger=\"every 1s\""));
    // The SLA report: every node, site and service, none down (nothing was probed).
    let sla = b.get("/sla?target=99.95").await;
    assert_eq!(sla.status, StatusCode::OK, "{}", sla.body);
    assert!(sla.body.contains("everything met 99.95%"), "{}", sla.body);
    assert!(sla.body.contains("href=\"/nodes/wx-1-a\"") && sla.body.contains("100.000%"));
    assert_eq!(
        b.get("/sla?target=101").await.status,
        StatusCode::BAD_REQUEST
    );
    let network = b.get("/network").await;
    assert_eq!(network.status, StatusCode::OK, "{}", network.body);
    assert!(
        network.body.contains("wx-1-telecom") && network.body.contains("1 of "),
        "{}",
        network.body
    );
    let pool = b.get("/pools/wx-1-telecom").await;
    assert!(
        pool.body.contains("10.1.0.1") && pool.body.contains("href=\"/nodes/wx-1-a\""),
        "{}",
        pool.body
    );
    assert_eq!(b.get("/pools/nope").await.status, StatusCode::NOT_FOUND);
    // DNS explain: the GSLB's answer for a client, with every candidate.
    // (A service is in DNS once a hostname of it is verified: the operator approves.)
    common::operator(
        &plane.url,
        reqwest::Method::POST,
        "/v1/services/a-site/verify",
        Some(serde_json::json!({"approve": true})),
    )
    .await;
    let form = b.get("/dns").await;
    assert_eq!(form.status, StatusCode::OK);
    let explained = b
        .get("/dns?name=a-site&client=198.51.100.7&subnet=24")
        .await;
    assert_eq!(explained.status, StatusCode::OK, "{}", explained.body);
    assert!(
        explained.body.contains("id=\"explanation\"") && explained.body.contains("10.1.0.1"),
        "{}",
        explained.body
    );
    assert!(
        explained.body.contains("href=\"/nodes/wx-1-a\""),
        "{}",
        explained.body
    );
    // The GSLB is kept between requests, and rebuilt when the configuration changes:
    // wx-1-a (drained above) undrained is an answer again.
    assert!(
        explained.body.contains("dropped: drained"),
        "{}",
        explained.body
    );
    let mut node =
        common::operator(&plane.url, reqwest::Method::GET, "/v1/nodes/wx-1-a", None).await;
    node.as_object_mut()
        .expect("node")
        .retain(|k, _| ["id", "site", "roles", "ports", "capacity_mbps"].contains(&k.as_str()));
    node["drained"] = serde_json::json!(false);
    common::operator(
        &plane.url,
        reqwest::Method::PUT,
        "/v1/nodes/wx-1-a",
        Some(node),
    )
    .await;
    let again = b
        .get("/dns?name=a-site&client=198.51.100.7&subnet=24")
        .await;
    assert!(!again.body.contains("dropped: drained"), "{}", again.body);
    for bad in [
        "name=a-site&client=nope",
        "name=nope&client=198.51.100.7",
        "name=a-site&client=198.51.100.7&subnet=33",
    ] {
        let refused = b.get(&format!("/dns?{bad}")).await;
        assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
        assert!(
            refused.body.contains("id=\"explain-error\""),
            "{bad}: {}",
            refused.body
        );
    }
    // Storage: no storage node in this fleet, and the page says so.
    let storage = b.get("/storage").await;
    assert_eq!(storage.status, StatusCode::OK, "{}", storage.body);
    assert!(
        storage.body.contains("No storage nodes yet"),
        "{}",
        storage.body
    );
    let paged = b.get("/sla?target=99.95&sort=id&dir=desc&page=1").await;
    assert_eq!(paged.status, StatusCode::OK, "{}", paged.body);
    // An unknown target names its field.
    let refused = b
        .post(
            "/purges",
            &[("csrf", &csrf), ("kind", "url"), ("targets", "not-a-url")],
            None,
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        refused.body.contains("id=\"targets-error\""),
        "{}",
        refused.body
    );
    plane.handle.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn the_services_list_filters_and_sorts_at_the_api() {
    let plane = common::start().await;
    let b = Browser::new(&plane.url);
    b.sign_in(common::OPERATOR_TOKEN).await;
    let found = b.get("/services?q=www.beta").await;
    assert_eq!(found.status, StatusCode::OK);
    assert!(found.body.contains(">b-site</a>"), "{}", found.body);
    assert!(!found.body.contains(">a-site</a>"));
    assert!(found.body.contains("1 of 2"), "matching of total");
    let none = b.get("/services?q=nothing-like-it").await;
    assert!(
        none.body.contains("No service matches the filter"),
        "{}",
        none.body
    );
    let by_tenant = b.get("/services?sort=tenant&dir=desc").await;
    let (a, beta) = (
        by_tenant.body.find(">a-site</a>").expect("a-site"),
        by_tenant.body.find(">b-site</a>").expect("b-site"),
    );
    assert!(beta < a, "beta before alpha, descending");
    assert!(by_tenant.body.contains("aria-sort=\"descending\""));
    plane.handle.shutdown().await.expect("shutdown");
}

/// A browser over HTTP/2 (as over TLS in `up`) names the host in `:authority`, not
/// `Host`: its same-origin form posts are accepted, another origin's still refused.
#[tokio::test]
async fn forms_posted_over_http2_pass_the_origin_check() {
    let plane = common::start().await;
    let http = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .http2_prior_knowledge()
        .build()
        .expect("client");
    let origin = plane.url.clone();
    let form = http
        .get(format!("{}/sign-in", plane.url))
        .send()
        .await
        .expect("form");
    assert_eq!(form.version(), reqwest::Version::HTTP_2);
    let body = form.text().await.expect("body");
    let at = body.find("name=\"csrf\" value=\"").expect("csrf") + 19;
    let csrf = body[at..at + body[at..].find('"').expect("end")].to_owned();
    let post = |path: &str, fields: Vec<(&str, String)>, origin: &str| {
        http.post(format!("{}{path}", plane.url))
            .header("origin", origin)
            .form(&fields)
            .send()
    };
    let signed = post(
        "/sign-in",
        vec![("token", plane.alpha_key.clone()), ("csrf", csrf)],
        &origin,
    )
    .await
    .expect("sign in");
    assert_eq!(
        signed.status(),
        StatusCode::SEE_OTHER,
        "{:?}",
        signed.text().await
    );
    let page = http
        .get(format!("{}/services/a-site", plane.url))
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("body");
    let at = page.find("name=\"csrf\" value=\"").expect("csrf") + 19;
    let csrf = page[at..at + page[at..].find('"').expect("end")].to_owned();
    let verify = vec![("csrf", csrf)];
    let elsewhere = post(
        "/services/a-site/verify",
        verify.clone(),
        "https://evil.example",
    )
    .await
    .expect("post");
    assert_eq!(elsewhere.status(), StatusCode::FORBIDDEN);
    let ours = post("/services/a-site/verify", verify, &origin)
        .await
        .expect("post");
    assert_eq!(ours.status(), StatusCode::SEE_OTHER);
    plane.handle.shutdown().await.expect("shutdown");
}

/// The operator's models page lists what `lingjing model push` registered; tenants are
/// refused.
#[tokio::test]
async fn the_operator_sees_model_versions() {
    let plane = common::start().await;
    let b = Browser::new(&plane.url);
    b.sign_in(common::OPERATOR_TOKEN).await;
    let empty = b.get("/models").await;
    assert_eq!(empty.status, StatusCode::OK);
    assert!(empty.body.contains("No models yet"), "{}", empty.body);
    // An artefact (its digest is its name) and a version of it, through the API.
    let bytes = b"stand-in for an ONNX file".to_vec();
    let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
    let put = reqwest::Client::new()
        .put(format!("{}/v1/artifacts/sha256/{digest}", plane.url))
        .bearer_auth(common::OPERATOR_TOKEN)
        .body(bytes)
        .send()
        .await
        .expect("put");
    assert_eq!(put.status(), StatusCode::CREATED);
    common::operator(
        &plane.url,
        reqwest::Method::POST,
        "/v1/models/road-distress/versions",
        Some(serde_json::json!({
            "model": "road-distress", "version": 1, "artifact": digest,
            "input": {"shape": [1, 3, 416, 416], "resize": "letterbox"},
            "output": {"kind": "detector", "classes": ["crack", "pothole"], "score_threshold": 0.5},
        })),
    )
    .await;
    let list = b.get("/models").await;
    assert!(
        list.body.contains("href=\"/models/road-distress\""),
        "{}",
        list.body
    );
    let model = b.get("/models/road-distress").await;
    assert_eq!(model.status, StatusCode::OK);
    assert!(
        model.body.contains("detector: crack, pothole"),
        "{}",
        model.body
    );
    assert!(
        model.body.contains("1x3x416x416 nchw, rgb letterbox"),
        "{}",
        model.body
    );
    assert_eq!(b.get("/models/nope").await.status, StatusCode::NOT_FOUND);
    let tenant = Browser::new(&plane.url);
    tenant.sign_in(&plane.alpha_key).await;
    assert_eq!(tenant.get("/models").await.status, StatusCode::FORBIDDEN);
    plane.handle.shutdown().await.expect("shutdown");
}
