//! Invoices and the segment report in the console: a tenant sees its own invoices only
//! (by URL too), an invoice's lines and total and its CSV, the operator every tenant's
//! and the segment report, whose month is checked.

mod common;

use common::Browser;
use lingjing_billing::Month;
use reqwest::{Method, StatusCode};
use serde_json::json;

/// Bills the month before last (closed) for alpha and beta on a plan with a commit fee:
/// that month.
async fn bill(url: &str) -> Month {
    let now_ms = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis(),
    )
    .expect("ms");
    let this = Month::of_ms(now_ms);
    let month = Month::of_ms(Month::of_ms(this.start_ms() - 1).start_ms() - 1);
    common::operator(
        url,
        Method::POST,
        "/v1/plans",
        Some(
            json!({"id": "cdn-std", "name": "CDN standard", "currency": "CNY", "tax_rate": "0.06",
            "cdn": {"kind": "percentile95", "direction": "out", "commit_mbps": "10",
                    "commit_fee": "1000", "overage_per_mbps": "20"}}),
        ),
    )
    .await;
    for t in ["alpha", "beta"] {
        common::operator(
            url,
            Method::PUT,
            &format!("/v1/tenants/{t}/plan"),
            Some(json!({"plan": "cdn-std"})),
        )
        .await;
    }
    let run = common::operator(
        url,
        Method::POST,
        "/v1/billing/runs",
        Some(json!({"month": month.to_string()})),
    )
    .await;
    assert_eq!(run["closed"], true, "{run}");
    month
}

#[tokio::test]
async fn tenants_read_their_own_invoices_and_the_operator_the_segment_report() {
    let plane = common::start().await;
    let month = bill(&plane.url).await;
    let number = |t: &str| format!("INV-{}{:02}-{t}", month.year, month.month);

    let alpha = Browser::new(&plane.url);
    alpha.sign_in(&plane.alpha_key).await;
    let list = alpha.get("/invoices").await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(list.body.contains(&number("alpha")), "{}", list.body);
    assert!(!list.body.contains(&number("beta")), "only its own");
    let invoice = alpha.get(&format!("/invoices/{}", number("alpha"))).await;
    assert_eq!(invoice.status, StatusCode::OK, "{}", invoice.body);
    // The commit fee and 6% tax on it.
    assert!(
        invoice.body.contains("<strong>1060.00 CNY</strong>"),
        "{}",
        invoice.body
    );
    let csv = alpha
        .get(&format!("/invoices/{}/csv", number("alpha")))
        .await;
    assert_eq!(csv.status, StatusCode::OK);
    assert!(
        csv.headers["content-type"]
            .to_str()
            .unwrap_or("")
            .starts_with("text/csv")
    );
    assert!(csv.body.contains("1060.00"), "{}", csv.body);
    for path in [
        format!("/invoices/{}", number("beta")),
        format!("/invoices/{}/csv", number("beta")),
    ] {
        let refused = alpha.get(&path).await;
        assert_eq!(refused.status, StatusCode::NOT_FOUND, "{path}");
        assert!(!refused.body.contains("1060.00"));
    }
    assert_eq!(
        alpha.get("/reports/segments").await.status,
        StatusCode::FORBIDDEN
    );

    let operator = Browser::new(&plane.url);
    operator.sign_in(common::OPERATOR_TOKEN).await;
    let all = operator.get("/invoices?q=beta").await;
    assert!(all.body.contains(&number("beta")), "{}", all.body);
    assert!(!all.body.contains(&number("alpha")), "the filter");
    let report = operator
        .get(&format!("/reports/segments?month={month}"))
        .await;
    assert_eq!(report.status, StatusCode::OK, "{}", report.body);
    // Both tenants' final invoices are edge revenue (before tax).
    assert!(report.body.contains("2000.00"), "{}", report.body);
    let bad = operator.get("/reports/segments?month=someday").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("id=\"month-error\""), "{}", bad.body);
    assert!(bad.body.contains("value=\"someday\""));
    plane.handle.shutdown().await.expect("shutdown");
}
