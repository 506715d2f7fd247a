//! IDC monitoring in the console over HTTP: the operator's alert list (a sensor's alert
//! linked to its chart, the platform's listed too), acknowledging a firing alert with the
//! form, a sensor's chart (SVG band and mean line, the points' table) for each span; a
//! tenant gets neither page. Readings and transitions are posted as the site's node
//! would forward them.

mod common;

use common::{Browser, OPERATOR_TOKEN};
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn alerts_and_sensor_charts() {
    let plane = common::start().await;
    let url = plane.url.clone();
    common::operator(
        &url,
        Method::POST,
        "/v1/nodes",
        Some(json!({"id": "ai-1", "site": "wx-1", "roles": ["aiot"]})),
    )
    .await;
    common::operator(
        &url,
        Method::POST,
        "/v1/sensors",
        Some(
            json!({"id": "inlet-1", "site": "wx-1", "room": "hall-1", "kind": "temperature",
                    "device": "env-1"}),
        ),
    )
    .await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    let t0 = now - 20 * 60_000;
    let mut records: Vec<serde_json::Value> = (0..10)
        .map(|i| {
            json!({"seq": i + 1, "site": "wx-1", "event": {"kind": "readings",
                   "at_ms": t0 + i * 60_000, "values": [{"sensor": "inlet-1", "value": 22.0 + i as f64}]}})
        })
        .collect();
    records.push(json!({"seq": 11, "site": "wx-1", "event": {"kind": "alert",
        "key": "inlet-too-hot/inlet-1", "rule": "inlet-too-hot", "sensor": "inlet-1",
        "site": "wx-1", "severity": "critical", "state": "firing", "since_ms": t0 + 540_000,
        "at_ms": t0 + 540_000, "value": 31.0, "labels": {}}}));
    common::operator(
        &url,
        Method::POST,
        "/v1/monitor/records",
        Some(json!({"node": "ai-1", "stream": "ab12", "records": records})),
    )
    .await;

    let op = Browser::new(&url);
    op.sign_in(OPERATOR_TOKEN).await;
    let page = op.get("/alerts").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("href=\"/alerts\" aria-current=\"page\""));
    assert!(
        page.body
            .contains("<a href=\"/sensors/inlet-1\">inlet-too-hot/inlet-1</a>")
    );
    assert!(page.body.contains("Acknowledge inlet-too-hot/inlet-1"));
    assert!(
        page.body.contains("wx-1: 1 firing of 1"),
        "grouped per site"
    );
    let csrf = page.csrf();
    let done = op
        .post(
            "/alerts/ack",
            &[("csrf", &csrf), ("key", "inlet-too-hot/inlet-1")],
            None,
        )
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    let page = op.get("/alerts").await;
    assert!(page.body.contains("operator (console)"), "{}", page.body);
    assert!(!page.body.contains("Acknowledge inlet-too-hot/inlet-1"));
    // A forged form (no session token) changes nothing.
    let forged = op
        .post("/alerts/ack", &[("key", "inlet-too-hot/inlet-1")], None)
        .await;
    assert!(forged.status.is_client_error(), "{}", forged.status);

    let chart = op.get("/sensors/inlet-1?span=1h").await;
    assert_eq!(chart.status, StatusCode::OK, "{}", chart.body);
    assert!(
        chart.body.contains("<svg class=\"chart\""),
        "{}",
        chart.body
    );
    assert_eq!(chart.body.matches("class=\"band\"").count(), 10);
    assert!(chart.body.contains("<polyline class=\"mean\""));
    assert!(chart.body.contains("31.00"), "the last minute's mean");
    for span in ["6h", "24h", "7d", "nonsense"] {
        let p = op.get(&format!("/sensors/inlet-1?span={span}")).await;
        assert_eq!(p.status, StatusCode::OK, "{span}: {}", p.body);
    }
    let missing = op.get("/sensors/nobody").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND, "{}", missing.body);

    // A tenant reaches neither.
    let alpha = Browser::new(&url);
    alpha.sign_in(&plane.alpha_key).await;
    for path in ["/alerts", "/sensors/inlet-1"] {
        let p = alpha.get(path).await;
        assert_eq!(p.status, StatusCode::FORBIDDEN, "{path}: {}", p.body);
    }
    let p = alpha.get("/services").await;
    assert!(
        !p.body.contains("href=\"/alerts\""),
        "no nav entry for a tenant"
    );
    // Nor acknowledge, even with its own good form token.
    let csrf = p.csrf();
    let refused = alpha
        .post(
            "/alerts/ack",
            &[("csrf", &csrf), ("key", "inlet-too-hot/inlet-1")],
            None,
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
}
