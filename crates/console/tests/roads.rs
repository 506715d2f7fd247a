//! Road inspection in the console over HTTP: a tenant's defects by position (with the
//! scatter, counts and weekly report), a work order's page (defect, evidence proxied as
//! an image only, history, the forms for the actions allowed now, the API's refusal
//! beside the form), acting on it, and a crew's queue; another tenant sees none of it.
//! Defects and orders come from citizens' Open311 reports and one patrol frame, so no
//! edge node runs.

mod common;

use common::{Browser, Page};
use reqwest::header::{CONTENT_TYPE, X_CONTENT_TYPE_OPTIONS};
use reqwest::{Method, StatusCode};
use serde_json::json;

/// A PNG's signature and a few bytes (the API and the console check only the start).
const PNG_B64: &str = "iVBORw0KGgpub3QgcmVhbGx5IGEgcG5n";
/// `<html><script>alert(1)</script></html>`: kept as evidence, never served as an image.
const HTML_B64: &str = "PGh0bWw+PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0PjwvaHRtbD4=";

/// A citizen's report for `key`'s tenant; the work order it opened.
async fn report(url: &str, key: &str, code: &str, lat: &str, long: &str, text: &str) -> String {
    let resp = reqwest::Client::new()
        .post(format!("{url}/open311/v2/requests.json"))
        .form(&[
            ("api_key", key),
            ("service_code", code),
            ("lat", lat),
            ("long", long),
            ("description", text),
        ])
        .send()
        .await
        .expect("open311");
    let status = resp.status();
    let body: serde_json::Value = resp.json().await.expect("json");
    assert!(status.is_success(), "{status} {body}");
    body[0]["service_request_id"]
        .as_str()
        .expect("request id")
        .to_owned()
}

async fn act(b: &Browser, order: &str, csrf: &str, fields: &[(&str, &str)]) -> Page {
    let mut form = vec![("csrf", csrf)];
    form.extend_from_slice(fields);
    b.post(&format!("/roads/orders/{order}/act"), &form, None)
        .await
}

#[tokio::test]
async fn roads_orders_and_crews() {
    let plane = common::start().await;
    let url = plane.url.clone();
    let area = json!([{"south": 31.0, "west": 120.0, "north": 32.0, "east": 121.0}]);
    for (kind, body) in [
        (
            "nodes",
            json!({"id": "ai-1", "site": "wx-1", "roles": ["aiot"]}),
        ),
        (
            "crews",
            json!({"id": "alpha-east", "tenant": "alpha", "name": "East crew", "areas": area, "capacity": 10}),
        ),
        (
            "crews",
            json!({"id": "alpha-west", "tenant": "alpha", "name": "West crew", "areas": [{"south": 30.0, "west": 119.0, "north": 30.5, "east": 119.5}]}),
        ),
        (
            "crews",
            json!({"id": "beta-crew", "tenant": "beta", "name": "Beta crew", "areas": area}),
        ),
        (
            "devices",
            json!({"id": "cam-1", "tenant": "alpha", "slot": "road-distress", "detects": [{"label": "pothole", "class": "D40"}]}),
        ),
    ] {
        common::operator(&url, Method::POST, &format!("/v1/{kind}"), Some(body)).await;
    }
    let wo1 = report(
        &url,
        &plane.alpha_key,
        "D40",
        "31.5",
        "120.3",
        "Deep pothole by the school",
    )
    .await;
    let wo2 = report(
        &url,
        &plane.alpha_key,
        "D20",
        "31.6",
        "120.45",
        "Cracked lane",
    )
    .await;
    let wo3 = report(
        &url,
        &plane.beta_key,
        "D40",
        "31.7",
        "120.5",
        "Beta's own hole",
    )
    .await;
    // A patrol frame over the first: evidence with an image, and one that is not one.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    let frame = |seq: u64, score: f64, image: &str| {
        json!({"seq": seq, "device": "cam-1", "run": "run-1", "frame": format!("f-{seq}"),
            "taken_ms": now, "lat": 31.50001, "lon": 120.30001, "model": "road-distress", "version": 1,
            "detections": [{"class": "D40", "label": "pothole", "score": score, "bbox": [0, 0, 10, 10]}],
            "image": image})
    };
    common::operator(
        &url,
        Method::POST,
        "/v1/inspect/frames",
        Some(json!({"node": "ai-1", "stream": "s-1", "records": [frame(1, 0.8, PNG_B64), frame(2, 0.7, HTML_B64)]})),
    )
    .await;
    let order1 = common::operator(&url, Method::GET, &format!("/v1/work-orders/{wo1}"), None).await;
    let defect1 = order1["defect"].as_str().expect("defect").to_owned();
    assert_eq!(order1["crew"], "alpha-east", "dispatched by area: {order1}");

    let alpha = Browser::new(&url);
    alpha.sign_in(&plane.alpha_key).await;
    let beta = Browser::new(&url);
    let beta_home = beta.sign_in(&plane.beta_key).await;

    // The list: alpha's defects by position, linked to their orders; counts; report.
    let roads = alpha.get("/roads").await;
    assert_eq!(roads.status, StatusCode::OK, "{}", roads.body);
    assert!(
        roads.body.contains("href=\"/roads\" aria-current=\"page\""),
        "nav entry"
    );
    assert!(
        roads
            .body
            .contains(&format!("href=\"/roads/orders/{wo1}\"")),
        "{}",
        roads.body
    );
    assert!(
        roads
            .body
            .contains(&format!("href=\"/roads/orders/{wo2}\""))
    );
    assert!(
        !roads.body.contains(&format!("/roads/orders/{wo3}\"")),
        "beta's is not listed"
    );
    assert!(roads.body.contains("31.60000, 120.45000"), "5 decimals");
    assert!(
        roads.body.contains("Open: <strong>2</strong>"),
        "{}",
        roads.body
    );
    assert!(roads.body.contains("<svg class=\"scatter\""));
    assert_eq!(
        roads.body.matches("<circle class=\"dot st-open\"").count(),
        2
    );
    assert!(!roads.body.contains("<script>"), "no inline script");
    assert!(
        roads.body.contains("<dt>Found</dt><dd>2</dd>"),
        "{}",
        roads.body
    );
    assert!(roads.body.contains("href=\"/roads/crews/alpha-east\""));
    assert!(!roads.body.contains("beta-crew"));
    // North first: WO-2 (31.6) before WO-1 (31.5).
    let at = |s: &str| {
        roads
            .body
            .find(&format!("/roads/orders/{s}\">"))
            .expect("row")
    };
    assert!(at(&wo2) < at(&wo1));
    let potholes = alpha.get("/roads?class=D40&state=open").await;
    assert!(potholes.body.contains(&format!("/roads/orders/{wo1}\">")));
    assert!(!potholes.body.contains(&format!("/roads/orders/{wo2}\">")));
    let odd = alpha.get("/roads?state=melted").await;
    assert!(
        odd.body.contains("there is no defect state `melted`"),
        "{}",
        odd.body
    );
    // A tenant naming another tenant still reads its own.
    let sneaky = alpha.get("/roads?tenant=beta").await;
    assert!(!sneaky.body.contains(&format!("/roads/orders/{wo3}\">")));
    assert!(sneaky.body.contains(&format!("/roads/orders/{wo1}\">")));

    // The order: the defect, evidence, history, and the forms allowed when dispatched.
    let page = alpha.get(&format!("/roads/orders/{wo1}")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let body = &page.body;
    assert!(body.contains("<strong>dispatched</strong>"), "{body}");
    assert!(body.contains("Pothole") && body.contains("Deep pothole by the school"));
    for form in [
        "form-dispatch",
        "form-start",
        "form-fix",
        "form-cancel",
        "form-duplicate",
    ] {
        assert!(body.contains(&format!("id=\"{form}\"")), "{form}: {body}");
    }
    assert!(!body.contains("id=\"form-reopen\""));
    assert!(body.contains("<option value=\"alpha-west\""));
    assert!(!body.contains("beta-crew"), "only the tenant's crews");
    assert!(
        body.contains("<td>system</td>") && body.contains("open → dispatched"),
        "{body}"
    );
    let img = format!("/roads/defects/{defect1}/evidence/s-1/1");
    assert!(body.contains(&format!("<img src=\"{img}\"")), "{body}");
    let csrf = page.csrf();

    // Evidence: the image as what it is, with nosniff; bytes that are not one refused.
    let image = alpha
        .http
        .get(format!("{url}{img}"))
        .send()
        .await
        .expect("image");
    assert_eq!(image.status(), StatusCode::OK);
    assert_eq!(image.headers()[CONTENT_TYPE], "image/png");
    assert_eq!(image.headers()[X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert!(image.bytes().await.expect("bytes").starts_with(b"\x89PNG"));
    let html = alpha
        .get(&format!("/roads/defects/{defect1}/evidence/s-1/2"))
        .await;
    assert_eq!(
        html.status,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "{}",
        html.body
    );
    assert!(
        html.headers[CONTENT_TYPE]
            .to_str()
            .expect("type")
            .starts_with("text/plain")
    );
    assert!(!html.body.contains("<script>"));

    // Another tenant: 404 for the order, its evidence, its crew, and acting on it.
    let theirs = beta.get(&format!("/roads/orders/{wo1}")).await;
    assert_eq!(theirs.status, StatusCode::NOT_FOUND);
    assert!(!theirs.body.contains("Deep pothole"), "{}", theirs.body);
    assert_eq!(beta.get(&img).await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        beta.get("/roads/crews/alpha-east").await.status,
        StatusCode::NOT_FOUND
    );
    let forced = act(&beta, &wo1, &beta_home.csrf(), &[("action", "start")]).await;
    assert_eq!(forced.status, StatusCode::NOT_FOUND);
    assert!(
        !beta
            .get("/roads")
            .await
            .body
            .contains(&format!("/roads/orders/{wo1}\">"))
    );
    // Without the token: refused before the API is called.
    let forged = alpha
        .post(
            &format!("/roads/orders/{wo1}/act"),
            &[("csrf", "nope"), ("action", "start")],
            None,
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);

    // The crew's queue lists both of alpha's orders, oldest first.
    let east = alpha.get("/roads/crews/alpha-east").await;
    assert_eq!(east.status, StatusCode::OK, "{}", east.body);
    let pos = |p: &Page, s: &str| p.body.find(&format!("/roads/orders/{s}\">"));
    assert!(
        pos(&east, &wo1).expect("wo1") < pos(&east, &wo2).expect("wo2"),
        "{}",
        east.body
    );
    assert!(east.body.contains("Pothole") && east.body.contains("31.60000, 120.45000"));

    // Dispatch the second to the other crew: it moves queues.
    let moved = act(
        &alpha,
        &wo2,
        &csrf,
        &[("action", "dispatch"), ("crew", "alpha-west")],
    )
    .await;
    assert_eq!(moved.status, StatusCode::SEE_OTHER, "{}", moved.body);
    assert_eq!(moved.location(), format!("/roads/orders/{wo2}"));
    assert!(pos(&alpha.get("/roads/crews/alpha-west").await, &wo2).is_some());
    assert!(pos(&alpha.get("/roads/crews/alpha-east").await, &wo2).is_none());

    // Refusals beside their form: a fix without a note, a duplicate of another's order.
    let no_note = act(
        &alpha,
        &wo1,
        &csrf,
        &[("action", "fix"), ("note", " "), ("by", "Li")],
    )
    .await;
    assert_eq!(
        no_note.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        no_note.body
    );
    assert!(
        no_note.body.contains("id=\"fix-error\""),
        "{}",
        no_note.body
    );
    assert!(
        no_note.body.contains("note: must not be empty"),
        "{}",
        no_note.body
    );
    let dup = act(
        &alpha,
        &wo1,
        &csrf,
        &[("action", "duplicate"), ("of", &wo3)],
    )
    .await;
    assert_eq!(dup.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", dup.body);
    assert!(dup.body.contains("id=\"duplicate-error\""), "{}", dup.body);
    assert!(
        dup.body.contains(&format!("value=\"{wo3}\"")),
        "the value is kept"
    );

    // Fixed: verifying, shown with the note, the photo and the history; only reopen left.
    let fixed = act(
        &alpha,
        &wo1,
        &csrf,
        &[
            ("action", "fix"),
            ("note", "Filled and rolled"),
            ("photo", "https://photos.example/wo1.jpg"),
            ("by", "Li"),
        ],
    )
    .await;
    assert_eq!(fixed.status, StatusCode::SEE_OTHER, "{}", fixed.body);
    let page = alpha.get(&format!("/roads/orders/{wo1}")).await;
    assert!(
        page.body.contains("<strong>verifying</strong>"),
        "{}",
        page.body
    );
    assert!(page.body.contains("tenant:alpha (Li)"));
    assert!(page.body.contains("dispatched → fixed") && page.body.contains("fixed → verifying"));
    assert!(
        page.body.contains(r#"<dd id="waiting">since"#) && page.body.contains("0 clear frame(s)"),
        "the order shows how long it has waited for a patrol: {}",
        page.body
    );
    assert!(page.body.contains("Filled and rolled"));
    assert!(
        page.body
            .contains("href=\"https://photos.example/wo1.jpg\"")
    );
    assert!(page.body.contains("id=\"form-reopen\""));
    assert!(!page.body.contains("id=\"form-fix\""));
    // A form from before: the API's 409, shown on the page.
    let stale = act(&alpha, &wo1, &csrf, &[("action", "start")]).await;
    assert_eq!(stale.status, StatusCode::CONFLICT, "{}", stale.body);
    assert!(stale.body.contains("id=\"action-error\""), "{}", stale.body);
    assert!(
        stale
            .body
            .contains("a work order that is verifying cannot be started"),
        "{}",
        stale.body
    );
    // The crew page shows it waiting for a patrol.
    let east = alpha.get("/roads/crews/alpha-east").await;
    assert!(east.body.contains("verifying"), "{}", east.body);
    assert!(pos(&east, &wo1).is_some());

    // The operator: every tenant's defects; the report once a tenant is chosen.
    let operator = Browser::new(&url);
    operator.sign_in(common::OPERATOR_TOKEN).await;
    let all = operator.get("/roads").await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.body);
    assert!(all.body.contains(&format!("/roads/orders/{wo3}\">")));
    assert!(all.body.contains("choose a tenant above"), "{}", all.body);
    let one = operator.get("/roads?tenant=beta").await;
    assert!(one.body.contains(&format!("/roads/orders/{wo3}\">")));
    assert!(!one.body.contains(&format!("/roads/orders/{wo1}\">")));
    assert!(
        one.body.contains("<dt>Found</dt><dd>1</dd>"),
        "{}",
        one.body
    );
    assert!(operator.get(&format!("/roads/orders/{wo1}")).await.status == StatusCode::OK);
    plane.handle.shutdown().await.expect("shutdown");
}
