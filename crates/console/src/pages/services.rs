//! Services: the list (a tenant's own, or all for the operator), the form that creates
//! one (the API's validation errors shown beside their fields), and a service's page:
//! its hostnames' verification state with the TXT record to publish, the CNAME to set,
//! traffic and hit ratio over 5-minute samples with the 95th percentile, and purge.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::Method;
use axum::response::{IntoResponse, Redirect, Response};
use lingjing_model::metering::UsageReport;
use serde::Deserialize;
use serde_json::json;

use super::fleet::encode;
use super::{Chrome, Posted, Shared, Signed, failure_page, form_field, render, render_status};
use crate::format::{When, bytes, count, percent};
use crate::listing::{Column, ListQuery, Listing};

/// A service as the API shows it (the fields the pages use).
#[derive(Debug, Clone, Deserialize)]
struct ServiceView {
    id: String,
    tenant: String,
    #[serde(default)]
    hostnames: Vec<String>,
    #[serde(default)]
    origins: Vec<lingjing_model::Origin>,
    #[serde(default)]
    cache_rules: Vec<lingjing_model::CacheRule>,
    #[serde(default)]
    cname: String,
    #[serde(default)]
    hostname_status: Vec<HostnameStatus>,
}

#[derive(Debug, Clone, Deserialize)]
struct HostnameStatus {
    hostname: String,
    state: String,
    #[serde(default)]
    challenge_name: String,
    #[serde(default)]
    challenge_value: String,
    #[serde(default)]
    verified_at: Option<String>,
    #[serde(default)]
    detail: Option<String>,
}

/// A row of the services table.
pub(crate) struct ServiceRow {
    id: String,
    tenant: String,
    hostnames: String,
    origins: String,
    /// `3 of 4 verified`.
    verified: String,
    all_verified: bool,
}

#[derive(Template)]
#[template(path = "services.html")]
struct ServicesPage {
    chrome: Chrome,
    listing: Listing<ServiceRow>,
}

const COLUMNS: &[Column] = &[
    Column {
        key: "service",
        title: "Service",
    },
    Column {
        key: "tenant",
        title: "Tenant",
    },
];

/// `GET /services`.
pub async fn list(
    State(console): State<Shared>,
    Signed(session): Signed,
    Query(query): Query<ListQuery>,
) -> Response {
    let c = &session.credential;
    // The API filters, sorts and cuts the page; the total before the filter only tells
    // "no services yet" from "none matches".
    let params = Listing::<ServiceRow>::api_query(&query, COLUMNS, |k| match k {
        "tenant" => "tenant",
        _ => "id",
    });
    let (services, matching) = match console
        .api
        .get_page::<ServiceView>(c, &format!("/v1/services?{params}"))
        .await
    {
        Ok(p) => p,
        Err(f) => return failure_page(&session, f),
    };
    let count = |n: Option<u64>| n.map_or(0, |t| usize::try_from(t).unwrap_or(usize::MAX));
    let matching = count(matching).max(services.len());
    let filtered = query.q.as_deref().is_some_and(|q| !q.trim().is_empty());
    let total = if filtered {
        match console
            .api
            .get_page::<serde_json::Value>(c, "/v1/services?limit=1")
            .await
        {
            Ok((_, t)) => count(t),
            Err(f) => return failure_page(&session, f),
        }
    } else {
        matching
    };
    let rows: Vec<ServiceRow> = services.into_iter().map(ServiceRow::of).collect();
    let mut listing = Listing::of_page("/services", rows, &query, COLUMNS, matching, total);
    listing.hint = "service, tenant or hostname";
    render(&ServicesPage {
        chrome: Chrome::new(&session, "Services", "services"),
        listing,
    })
}

impl ServiceRow {
    fn of(s: ServiceView) -> ServiceRow {
        let verified = s
            .hostname_status
            .iter()
            .filter(|h| h.state == "verified")
            .count();
        ServiceRow {
            verified: format!("{verified} of {}", s.hostnames.len()),
            all_verified: verified == s.hostnames.len(),
            hostnames: s.hostnames.join(", "),
            origins: s
                .origins
                .iter()
                .map(|o| o.address.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            id: s.id,
            tenant: s.tenant,
        }
    }
}

/// What the new-service form holds (kept when the API refuses it).
#[derive(Debug, Default, Deserialize)]
pub struct ServiceForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    id: String,
    /// The operator's choice; a tenant's own otherwise.
    #[serde(default)]
    tenant: String,
    /// One per line (or separated by commas or spaces).
    #[serde(default)]
    hostnames: String,
    /// `host:port` or `bucket:NAME`, one per line.
    #[serde(default)]
    origins: String,
}

super::csrf_field!(ServiceForm);

#[derive(Template)]
#[template(path = "service_new.html")]
struct NewServicePage {
    chrome: Chrome,
    form: ServiceForm,
    /// Field -> message, from the API.
    errors: HashMap<String, String>,
    /// An error about no field of the form.
    general: Option<String>,
}

impl NewServicePage {
    /// The message for `field`, empty when it has none.
    fn error(&self, field: &str) -> &str {
        self.errors.get(field).map(String::as_str).unwrap_or("")
    }
}

/// `GET /services/new`.
pub async fn new_form(Signed(session): Signed) -> Response {
    render(&NewServicePage {
        chrome: Chrome::new(&session, "New service", "services"),
        form: ServiceForm {
            tenant: session.tenant().unwrap_or_default().to_owned(),
            ..Default::default()
        },
        errors: HashMap::new(),
        general: None,
    })
}

/// Splits a text box's lines, commas and spaces into its entries.
pub(crate) fn entries(text: &str) -> Vec<String> {
    text.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `POST /services`: creates the service through the API; its refusal re-renders the
/// form with the message beside the field it names.
pub async fn create(
    State(console): State<Shared>,
    Posted(session, mut form): Posted<ServiceForm>,
) -> Response {
    if let Some(t) = session.tenant() {
        // A tenant's service is its own, whatever the form says (the API would refuse
        // another tenant anyway).
        form.tenant = t.to_owned();
    }
    let origins = match super::service_edit::parse_origins(&form.origins) {
        Ok(o) => o,
        Err(e) => {
            let errors = HashMap::from([("origins".to_owned(), e)]);
            return render_status(
                axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                &NewServicePage {
                    chrome: Chrome::new(&session, "New service", "services"),
                    form,
                    errors,
                    general: None,
                },
            );
        }
    };
    let body = json!({
        "id": form.id.trim(),
        "tenant": form.tenant.trim(),
        "hostnames": entries(&form.hostnames),
        "origins": origins,
    });
    match console
        .api
        .call::<serde_json::Value>(
            Method::POST,
            &session.credential,
            "/v1/services",
            Some(&body),
        )
        .await
    {
        Ok(_) => Redirect::to(&format!("/services/{}", encode(form.id.trim()))).into_response(),
        Err(f) if f.status.is_client_error() => {
            let mut errors = HashMap::new();
            let mut general = None;
            match f.field.as_deref().map(form_field) {
                Some(field @ ("id" | "tenant" | "hostnames" | "origins")) => {
                    errors.insert(field.to_owned(), f.message);
                }
                _ => general = Some(f.message),
            }
            render_status(
                f.status,
                &NewServicePage {
                    chrome: Chrome::new(&session, "New service", "services"),
                    form,
                    errors,
                    general,
                },
            )
        }
        Err(f) => failure_page(&session, f),
    }
}

/// A hostname's row on the service page.
struct HostnameRow {
    hostname: String,
    verified: bool,
    state: String,
    challenge_name: String,
    challenge_value: String,
    verified_at: When,
    detail: String,
}

/// The traffic chart's numbers, handed to `console.js` as JSON in the page.
#[derive(serde::Serialize)]
struct ChartData {
    /// Sample starts, seconds since the epoch (every 5 minutes of the range).
    t: Vec<i64>,
    /// Mbit/s sent to clients in each sample.
    mbps: Vec<f64>,
    /// Share of requests answered from the cache, percent (null without requests).
    hit: Vec<Option<f64>>,
    /// The 95th percentile of `mbps` (the highest sample once the top 5% are dropped).
    p95: f64,
}

#[derive(Template)]
#[template(path = "service.html")]
struct ServicePage {
    chrome: Chrome,
    id: String,
    tenant: String,
    cname: String,
    origins: Vec<String>,
    cache_rules: Vec<lingjing_model::CacheRule>,
    hostnames: Vec<HostnameRow>,
    /// JSON for the chart (escaped by the template: read back with `textContent`).
    chart_json: String,
    requests: String,
    hit_ratio: String,
    bytes_out: String,
    p95: String,
}

/// Five minutes, in seconds: the metering step.
const STEP_S: i64 = 300;

/// The chart of `report` (one series, 5-minute steps) over the `steps` samples that
/// start at `from_s`: steps without traffic are zeros (they count toward the 95th
/// percentile, as carriers count them).
fn chart(report: &UsageReport, from_s: i64, steps: usize) -> ChartData {
    let mut mbps = vec![0.0; steps];
    let mut hit: Vec<Option<f64>> = vec![None; steps];
    for p in report.series.iter().flat_map(|s| &s.points) {
        let Ok(start) =
            time::OffsetDateTime::parse(&p.start, &time::format_description::well_known::Rfc3339)
        else {
            continue;
        };
        let i = (start.unix_timestamp() - from_s) / STEP_S;
        let Some(i) = usize::try_from(i).ok().filter(|&i| i < steps) else {
            continue;
        };
        mbps[i] += p.counts.bytes_out as f64 * 8.0 / STEP_S as f64 / 1e6;
        if p.counts.requests > 0 {
            hit[i] = Some(p.counts.hit_requests as f64 * 100.0 / p.counts.requests as f64);
        }
    }
    let mut sorted = mbps.clone();
    sorted.sort_by(f64::total_cmp);
    let drop = steps / 20;
    let p95 = sorted
        .len()
        .checked_sub(drop + 1)
        .and_then(|i| sorted.get(i))
        .copied()
        .unwrap_or(0.0);
    ChartData {
        t: (0..steps as i64).map(|i| from_s + i * STEP_S).collect(),
        mbps,
        hit,
        p95,
    }
}

/// `GET /services/{id}`.
pub async fn show(
    State(console): State<Shared>,
    Signed(session): Signed,
    Path(id): Path<String>,
) -> Response {
    let c = &session.credential;
    let service: ServiceView = match console
        .api
        .get(c, &format!("/v1/services/{}", encode(&id)))
        .await
    {
        Ok(s) => s,
        Err(f) => return failure_page(&session, f),
    };
    // The last 24 hours in 5-minute samples, the last one the step now running.
    let now_s = time::OffsetDateTime::now_utc().unix_timestamp();
    let to_s = (now_s / STEP_S + 1) * STEP_S;
    let steps = 24 * 12;
    let from_s = to_s - steps as i64 * STEP_S;
    let rfc = |s: i64| {
        time::OffsetDateTime::from_unix_timestamp(s)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default()
    };
    let usage_path = format!(
        "/v1/usage?group=service&step=5m&service={}&from={}&to={}",
        encode(&service.id),
        rfc(from_s),
        rfc(to_s)
    );
    let report: UsageReport = match console.api.get(c, &usage_path).await {
        Ok(r) => r,
        Err(f) => return failure_page(&session, f),
    };
    let data = chart(&report, from_s, steps);
    let total = &report.total;
    render(&ServicePage {
        chrome: Chrome::new(&session, format!("Service {}", service.id), "services"),
        p95: format!("{:.2} Mbit/s", data.p95),
        chart_json: serde_json::to_string(&data).unwrap_or_else(|_| "{}".into()),
        requests: count(total.requests),
        hit_ratio: percent(total.hit_requests, total.requests),
        bytes_out: bytes(total.bytes_out),
        hostnames: service
            .hostname_status
            .into_iter()
            .map(|h| HostnameRow {
                verified: h.state == "verified",
                verified_at: When::of(h.verified_at.as_deref()),
                detail: h.detail.unwrap_or_default(),
                hostname: h.hostname,
                state: h.state,
                challenge_name: h.challenge_name,
                challenge_value: h.challenge_value,
            })
            .collect(),
        origins: service
            .origins
            .iter()
            .map(super::service_edit::origin_line)
            .collect(),
        cache_rules: service.cache_rules,
        cname: service.cname,
        tenant: service.tenant,
        id: service.id,
    })
}

#[derive(Debug, Default, Deserialize)]
pub struct VerifyForm {
    #[serde(default)]
    csrf: String,
}

super::csrf_field!(VerifyForm);

/// `POST /services/{id}/verify`: asks the control plane to check the TXT records now.
pub async fn verify(
    State(console): State<Shared>,
    Path(id): Path<String>,
    Posted(session, _): Posted<VerifyForm>,
) -> Response {
    let path = format!("/v1/services/{}/verify", encode(&id));
    match console
        .api
        .call::<serde_json::Value>(Method::POST, &session.credential, &path, None)
        .await
    {
        Ok(_) => Redirect::to(&format!("/services/{}", encode(&id))).into_response(),
        Err(f) => failure_page(&session, f),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lingjing_model::metering::{UsageCounts, UsagePoint, UsageSeries};

    #[test]
    fn the_chart_fills_silent_steps_and_drops_the_top_five_percent() {
        let from_s = 1_764_547_200; // 2025-12-01T00:00:00Z
        let point = |i: i64, mbit: u64| UsagePoint {
            start: time::OffsetDateTime::from_unix_timestamp(from_s + i * STEP_S)
                .expect("time")
                .format(&time::format_description::well_known::Rfc3339)
                .expect("format"),
            counts: UsageCounts {
                requests: 10,
                hit_requests: 9,
                bytes_out: mbit * 1_000_000 / 8 * STEP_S as u64,
                ..Default::default()
            },
        };
        // 40 steps: 2 bursts of 100 Mbit/s (the top 5%), 10 at 10, the rest silent.
        let mut points = vec![point(0, 100), point(1, 100)];
        points.extend((2..12).map(|i| point(i, 10)));
        let report = UsageReport {
            from: String::new(),
            to: String::new(),
            group: lingjing_model::metering::UsageGroup::Service,
            step: lingjing_model::metering::UsageStep::FiveMinutes,
            series: vec![UsageSeries {
                key: "svc".into(),
                points,
                total: UsageCounts::default(),
            }],
            total: UsageCounts::default(),
        };
        let c = chart(&report, from_s, 40);
        assert_eq!(c.t.len(), 40);
        assert!((c.mbps[0] - 100.0).abs() < 1e-9 && c.mbps[39] == 0.0);
        assert!((c.p95 - 10.0).abs() < 1e-9, "{}", c.p95);
        assert_eq!(c.hit[2], Some(90.0));
        assert_eq!(c.hit[20], None);
    }
}
