//! Money: invoices (a tenant's own, or every tenant's for the operator), one invoice with
//! its lines, SLA uptime and credits and a CSV download, and the operator's segment report
//! (revenue, cost and margin per segment and site for a month).

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use lingjing_billing::{Invoice, SegmentReport};
use rust_decimal::Decimal;
use serde::Deserialize;

use super::fleet::encode;
use super::{Chrome, Operator, Shared, Signed, failure_page, render, render_status};
use crate::format::{When, word};
use crate::listing::{Column, ListQuery, Listing};

/// An invoice as `/v1/invoices` gives it.
#[derive(Debug, Clone, Deserialize)]
struct Record {
    /// `invoice`, `draft` or `credit_note`.
    kind: String,
    issued: String,
    #[serde(default)]
    refers_to: Option<String>,
    #[serde(default)]
    reason: Option<String>,
    invoice: Invoice,
}

impl Record {
    /// The kind in words.
    fn kind_words(&self) -> &'static str {
        match self.kind.as_str() {
            "invoice" => "final",
            "draft" => "draft (month so far)",
            "credit_note" => "credit note",
            _ => "other",
        }
    }
}

/// A row of the invoices table.
pub(crate) struct InvoiceRow {
    number: String,
    tenant: String,
    month: String,
    kind: &'static str,
    total: String,
    /// For sorting by amount.
    amount: Decimal,
    issued: When,
}

#[derive(Template)]
#[template(path = "invoices.html")]
struct InvoicesPage {
    chrome: Chrome,
    listing: Listing<InvoiceRow>,
}

const COLUMNS: &[Column] = &[
    Column {
        key: "month",
        title: "Month",
    },
    Column {
        key: "number",
        title: "Number",
    },
    Column {
        key: "tenant",
        title: "Tenant",
    },
    Column {
        key: "kind",
        title: "Kind",
    },
    Column {
        key: "total",
        title: "Total",
    },
];

/// `GET /invoices`.
pub async fn list(
    State(console): State<Shared>,
    Signed(session): Signed,
    Query(mut query): Query<ListQuery>,
) -> Response {
    let records: Vec<Record> = match console.api.get(&session.credential, "/v1/invoices").await {
        Ok(r) => r,
        Err(f) => return failure_page(&session, f),
    };
    let rows = records
        .into_iter()
        .map(|r| InvoiceRow {
            kind: r.kind_words(),
            total: format!("{} {}", r.invoice.total, r.invoice.currency),
            amount: r.invoice.total,
            issued: When::of(Some(&r.issued)),
            number: r.invoice.number,
            tenant: r.invoice.tenant,
            month: r.invoice.month.to_string(),
        })
        .collect();
    // Newest month first unless asked otherwise.
    if query.sort.is_none() {
        query.dir.get_or_insert_with(|| "desc".into());
    }
    let listing = Listing::of(
        "/invoices",
        rows,
        &query,
        COLUMNS,
        |r| format!("{} {} {} {}", r.number, r.tenant, r.month, r.kind),
        |r, key| match key {
            "number" => (r.number.clone(), Decimal::ZERO, String::new()),
            "tenant" => (r.tenant.clone(), Decimal::ZERO, r.month.clone()),
            "kind" => (r.kind.to_owned(), Decimal::ZERO, r.number.clone()),
            "total" => (String::new(), r.amount, r.number.clone()),
            _ => (r.month.clone(), Decimal::ZERO, r.number.clone()),
        },
    );
    render(&InvoicesPage {
        chrome: Chrome::new(&session, "Invoices", "invoices"),
        listing,
    })
}

/// An invoice line as the page shows it.
struct LineRow {
    category: String,
    description: String,
    quantity: String,
    unit: String,
    unit_price: String,
    amount: String,
    basis: String,
}

/// An outage the SLA counted.
struct OutageRow {
    what: String,
    from: When,
    to: When,
}

struct UptimeRow {
    category: String,
    percent: String,
    target: String,
    downtime_minutes: String,
    credit_percent: String,
    met: bool,
    outages: Vec<OutageRow>,
}

#[derive(Template)]
#[template(path = "invoice.html")]
struct InvoicePage {
    chrome: Chrome,
    number: String,
    tenant: String,
    month: String,
    plan: String,
    kind: &'static str,
    issued: When,
    refers_to: String,
    reason: String,
    currency: String,
    lines: Vec<LineRow>,
    subtotal: String,
    credits: String,
    tax: String,
    total: String,
    uptime: Vec<UptimeRow>,
}

/// `GET /invoices/{number}`.
pub async fn show(
    State(console): State<Shared>,
    Signed(session): Signed,
    Path(number): Path<String>,
) -> Response {
    let path = format!("/v1/invoices/{}", encode(&number));
    let r: Record = match console.api.get(&session.credential, &path).await {
        Ok(r) => r,
        Err(f) => return failure_page(&session, f),
    };
    let kind = r.kind_words();
    let i = r.invoice;
    render(&InvoicePage {
        chrome: Chrome::new(&session, format!("Invoice {}", i.number), "invoices"),
        kind,
        issued: When::of(Some(&r.issued)),
        refers_to: r.refers_to.unwrap_or_default(),
        reason: r.reason.unwrap_or_default(),
        lines: i
            .lines
            .iter()
            .map(|l| LineRow {
                category: word(&l.category),
                description: l.description.clone(),
                quantity: l.quantity.to_string(),
                unit: l.unit.clone(),
                unit_price: l.unit_price.to_string(),
                amount: l.amount.to_string(),
                basis: l.basis.clone(),
            })
            .collect(),
        uptime: i
            .uptime
            .iter()
            .map(|u| UptimeRow {
                category: word(&u.category),
                percent: u.percent.to_string(),
                target: u.target_percent.to_string(),
                downtime_minutes: u.downtime_minutes.to_string(),
                credit_percent: u.credit_percent.to_string(),
                met: u.percent >= u.target_percent,
                outages: u
                    .outages
                    .iter()
                    .map(|o| OutageRow {
                        what: o.what.clone(),
                        from: When::of_ms(o.start_ms),
                        to: When::of_ms(o.end_ms),
                    })
                    .collect(),
            })
            .collect(),
        subtotal: i.subtotal.to_string(),
        credits: i.credits.to_string(),
        tax: i.tax.to_string(),
        total: i.total.to_string(),
        currency: i.currency,
        plan: i.plan,
        month: i.month.to_string(),
        tenant: i.tenant,
        number: i.number,
    })
}

/// `GET /invoices/{number}/csv`: the API's CSV of the invoice, as a download.
pub async fn csv(
    State(console): State<Shared>,
    Signed(session): Signed,
    Path(number): Path<String>,
) -> Response {
    let path = format!("/v1/invoices/{}?format=csv", encode(&number));
    match console
        .api
        .raw(Method::GET, &session.credential, &path, None)
        .await
    {
        Ok((headers, bytes)) => {
            let mut response = bytes.into_response();
            for name in [header::CONTENT_TYPE, header::CONTENT_DISPOSITION] {
                if let Some(v) = headers.get(&name) {
                    response.headers_mut().insert(name, v.clone());
                }
            }
            response
        }
        Err(f) => failure_page(&session, f),
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct MonthQuery {
    /// `YYYY-MM`; this month when absent.
    #[serde(default)]
    month: Option<String>,
}

#[derive(Template)]
#[template(path = "segments.html")]
struct SegmentsPage {
    chrome: Chrome,
    /// What the month box holds.
    month: String,
    error: Option<String>,
    report: Option<SegmentReport>,
}

/// `GET /reports/segments`: the operator's segment report for a month.
pub async fn segments(
    State(console): State<Shared>,
    Operator(session): Operator,
    Query(q): Query<MonthQuery>,
) -> Response {
    let month = q.month.unwrap_or_default().trim().to_owned();
    let path = if month.is_empty() {
        "/v1/reports/segments".to_owned()
    } else {
        format!("/v1/reports/segments?month={}", encode(&month))
    };
    let chrome = Chrome::new(&session, "Segment report", "segments");
    match console
        .api
        .get::<SegmentReport>(&session.credential, &path)
        .await
    {
        Ok(report) => render(&SegmentsPage {
            chrome,
            month: report.month.to_string(),
            error: None,
            report: Some(report),
        }),
        Err(f) if f.status.is_client_error() => render_status(
            StatusCode::BAD_REQUEST,
            &SegmentsPage {
                chrome,
                month,
                error: Some(f.message),
                report: None,
            },
        ),
        Err(f) => failure_page(&session, f),
    }
}
