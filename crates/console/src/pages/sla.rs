//! The operator's SLA report: availability of every node, site and service over a window
//! against a target, from the recorded health changes (`GET /v1/sla`), worst first.

use askama::Template;
use axum::extract::{Query, State};
use axum::response::Response;
use serde::Deserialize;

use super::{Chrome, Operator, Shared, failure_page, render};
use crate::format::When;
use crate::listing::{Column, ListQuery, Listing};

#[derive(Debug, Deserialize)]
struct Report {
    from: String,
    to: String,
    target: f64,
    entries: Vec<Entry>,
    below_target: Vec<Entry>,
}

#[derive(Debug, Deserialize)]
struct Entry {
    kind: String,
    id: String,
    availability: f64,
    downtime_minutes: f64,
    shortfall: f64,
    meets_target: bool,
}

/// A row of the report.
pub(crate) struct Row {
    kind: String,
    id: String,
    availability: f64,
    /// `99.950%`.
    percent: String,
    downtime: String,
    shortfall: String,
    meets_target: bool,
}

#[derive(Template)]
#[template(path = "sla.html")]
struct SlaPage {
    chrome: Chrome,
    target: String,
    from: When,
    to: When,
    below: usize,
    listing: Listing<Row>,
}

/// The target asked for (the table's own query is read beside it: serde's `flatten`
/// would read `page` as a string).
#[derive(Debug, Default, Deserialize)]
pub struct SlaQuery {
    /// Percent, e.g. `99.9`.
    #[serde(default)]
    target: Option<String>,
}

const COLUMNS: &[Column] = &[
    Column {
        key: "availability",
        title: "Availability",
    },
    Column {
        key: "kind",
        title: "Kind",
    },
    Column {
        key: "id",
        title: "Name",
    },
];

/// `GET /sla[?target=99.9]`.
pub async fn report(
    State(console): State<Shared>,
    Operator(session): Operator,
    Query(query): Query<SlaQuery>,
    Query(list): Query<ListQuery>,
) -> Response {
    let target = query
        .target
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .unwrap_or("99.9");
    let path = format!(
        "/v1/sla?{}",
        serde_urlencoded::to_string([("target", target)]).unwrap_or_default()
    );
    let report: Report = match console.api.get(&session.credential, &path).await {
        Ok(r) => r,
        Err(f) => return failure_page(&session, f),
    };
    let rows = report
        .entries
        .into_iter()
        .map(|e| Row {
            percent: format!("{:.3}%", e.availability),
            downtime: format!("{:.1} min", e.downtime_minutes),
            shortfall: if e.meets_target {
                "-".into()
            } else {
                format!("{:.3} points", e.shortfall)
            },
            kind: e.kind,
            id: e.id,
            availability: e.availability,
            meets_target: e.meets_target,
        })
        .collect();
    let base = format!(
        "/sla?{}",
        serde_urlencoded::to_string([("target", target)]).unwrap_or_default()
    );
    let listing = Listing::of(
        &base,
        rows,
        &list,
        COLUMNS,
        |r| format!("{} {}", r.kind, r.id),
        |r, key| match key {
            "kind" => (r.kind.clone(), r.id.clone(), 0),
            "id" => (r.id.clone(), r.kind.clone(), 0),
            // Worst first reads best: by availability in thousandths of a point.
            _ => (
                String::new(),
                r.id.clone(),
                (r.availability * 1000.0) as i64,
            ),
        },
    );
    render(&SlaPage {
        chrome: Chrome::new(&session, "SLA report", "sla"),
        target: format!("{}", report.target),
        from: When::of(Some(&report.from)),
        to: When::of(Some(&report.to)),
        below: report.below_target.len(),
        listing,
    })
}
