//! IDC monitoring (issue 18), the operator's: `/alerts` lists the alerts grouped per
//! site (the sites' sensors' and the platform's own, pending and firing by default, or
//! all; critical first) with a button
//! that acknowledges a firing one, and the sensors with a link to each one's chart;
//! `/sensors/{id}` draws a sensor's series (per-step min-max band, mean line, last
//! point) as a server-side SVG with the table of its points beside it. Everything is
//! read and done through the API (`/v1/alerts`, `/v1/alerts/ack`, `/v1/sensors`,
//! `/v1/sensors/{id}/readings`).

use std::time::{SystemTime, UNIX_EPOCH};

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::Method;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::fleet::encode;
use super::{Chrome, Operator, Posted, Shared, failure_page, render};
use crate::format::When;

/// The chart's size in SVG units.
const CHART_WIDTH: f64 = 720.0;
const CHART_HEIGHT: f64 = 240.0;
/// The spans a chart offers: (query value, hours, step in seconds).
const SPANS: [(&str, i64, u32); 4] = [
    ("1h", 1, 60),
    ("6h", 6, 300),
    ("24h", 24, 900),
    ("7d", 168, 3600),
];

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

struct AlertRow {
    key: String,
    site: String,
    severity: String,
    state: String,
    since: When,
    value: String,
    acked_by: String,
    silenced: bool,
    /// The sensor's chart, for a sensor's alert.
    chart: Option<String>,
}

struct SensorRow {
    id: String,
    site: String,
    room: String,
    cabinet: String,
    kind: String,
    device: String,
}

/// A site's alerts (the platform's own services' under `platform`).
struct SiteGroup {
    site: String,
    firing: usize,
    rows: Vec<AlertRow>,
}

#[derive(Template)]
#[template(path = "alerts.html")]
struct AlertsPage {
    chrome: Chrome,
    all: bool,
    groups: Vec<SiteGroup>,
    sensors: Vec<SensorRow>,
}

/// Groups alerts per site (sites in order), critical first, then by key.
fn by_site(mut rows: Vec<AlertRow>) -> Vec<SiteGroup> {
    rows.sort_by(|a, b| {
        (&a.site, b.severity == "critical", &a.key).cmp(&(
            &b.site,
            a.severity == "critical",
            &b.key,
        ))
    });
    let mut groups: Vec<SiteGroup> = Vec::new();
    for r in rows {
        match groups.last_mut() {
            Some(g) if g.site == r.site => g.rows.push(r),
            _ => groups.push(SiteGroup {
                site: r.site.clone(),
                firing: 0,
                rows: vec![r],
            }),
        }
    }
    for g in &mut groups {
        g.firing = g.rows.iter().filter(|r| r.state == "firing").count();
    }
    groups
}

#[derive(Debug, Deserialize)]
pub struct AlertsQuery {
    #[serde(default)]
    state: Option<String>,
}

/// `GET /alerts`.
pub async fn list(
    State(console): State<Shared>,
    Operator(session): Operator,
    Query(q): Query<AlertsQuery>,
) -> Response {
    let all = q.state.as_deref() == Some("all");
    let path = if all {
        "/v1/alerts?state=all"
    } else {
        "/v1/alerts"
    };
    let alerts: Vec<Value> = match console.api.get(&session.credential, path).await {
        Ok(a) => a,
        Err(f) => return failure_page(&session, f),
    };
    let sensors: Vec<Value> = match console.api.get(&session.credential, "/v1/sensors").await {
        Ok(s) => s,
        Err(f) => return failure_page(&session, f),
    };
    let known = |id: &str| sensors.iter().any(|s| s["id"] == id);
    let s = |v: &Value, k: &str| v[k].as_str().unwrap_or("").to_owned();
    let rows: Vec<AlertRow> = alerts
        .iter()
        .map(|a| {
            let sensor = s(a, "sensor");
            AlertRow {
                key: s(a, "key"),
                site: s(a, "site"),
                severity: s(a, "severity"),
                state: s(a, "state"),
                since: When::of_ms(a["since_ms"].as_i64().unwrap_or(0)),
                value: a["value"]
                    .as_f64()
                    .map(|v| format!("{v}"))
                    .unwrap_or_default(),
                acked_by: s(a, "acked_by"),
                silenced: a["silenced"].as_bool().unwrap_or(false),
                chart: known(&sensor).then(|| format!("/sensors/{}", encode(&sensor))),
            }
        })
        .collect();
    let sensors = sensors
        .iter()
        .map(|x| SensorRow {
            id: s(x, "id"),
            site: s(x, "site"),
            room: s(x, "room"),
            cabinet: s(x, "cabinet"),
            kind: s(x, "kind"),
            device: s(x, "device"),
        })
        .collect();
    render(&AlertsPage {
        chrome: Chrome::new(&session, "Alerts", "alerts"),
        all,
        groups: by_site(rows),
        sensors,
    })
}

#[derive(Debug, Default, Deserialize)]
pub struct AckForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    key: String,
}

super::csrf_field!(AckForm);

/// `POST /alerts/ack`: acknowledged by the console's operator.
pub async fn ack(
    State(console): State<Shared>,
    Posted(session, form): Posted<AckForm>,
) -> Response {
    let body = json!({"key": form.key, "by": "operator (console)"});
    match console
        .api
        .call::<Value>(
            Method::POST,
            &session.credential,
            "/v1/alerts/ack",
            Some(&body),
        )
        .await
    {
        Ok(_) => Redirect::to("/alerts").into_response(),
        Err(f) => failure_page(&session, f),
    }
}

/// One step of the chart.
struct Bar {
    x: String,
    /// The min-max band's top and height.
    y: String,
    h: String,
    w: String,
}

struct Chart {
    width: f64,
    height: f64,
    bars: Vec<Bar>,
    /// The mean line's points, `x,y x,y ...`.
    line: String,
    low: String,
    high: String,
}

struct PointRow {
    at: When,
    min: String,
    max: String,
    mean: String,
    last: String,
    count: u64,
}

#[derive(Template)]
#[template(path = "sensor.html")]
struct SensorPage {
    chrome: Chrome,
    id: String,
    unit: String,
    span: String,
    spans: Vec<&'static str>,
    chart: Option<Chart>,
    points: Vec<PointRow>,
}

#[derive(Debug, Deserialize)]
pub struct SpanQuery {
    #[serde(default)]
    span: Option<String>,
}

/// Scales the series' points into the chart (none: no point).
fn chart(points: &[Value], from: i64, to: i64, step_ms: i64) -> Option<Chart> {
    let num = |p: &Value, k: &str| p[k].as_f64();
    let lows = points.iter().filter_map(|p| num(p, "min"));
    let highs = points.iter().filter_map(|p| num(p, "max"));
    let lo = lows.fold(f64::INFINITY, f64::min);
    let hi = highs.fold(f64::NEG_INFINITY, f64::max);
    if !lo.is_finite() || !hi.is_finite() || to <= from {
        return None;
    }
    let pad = if hi > lo { (hi - lo) * 0.1 } else { 1.0 };
    let (lo, hi) = (lo - pad, hi + pad);
    let x = |t: i64| (t - from) as f64 / (to - from) as f64 * CHART_WIDTH;
    let y = |v: f64| CHART_HEIGHT - (v - lo) / (hi - lo) * CHART_HEIGHT;
    let w = (step_ms as f64 / (to - from) as f64 * CHART_WIDTH).max(1.0);
    let mut bars = Vec::new();
    let mut line = Vec::new();
    for p in points {
        let (Some(at), Some(min), Some(max), Some(mean)) = (
            p["at_ms"].as_i64(),
            num(p, "min"),
            num(p, "max"),
            num(p, "mean"),
        ) else {
            continue;
        };
        bars.push(Bar {
            x: format!("{:.1}", x(at)),
            y: format!("{:.1}", y(max)),
            h: format!("{:.1}", (y(min) - y(max)).max(1.0)),
            w: format!("{w:.1}"),
        });
        line.push(format!("{:.1},{:.1}", x(at) + w / 2.0, y(mean)));
    }
    Some(Chart {
        width: CHART_WIDTH,
        height: CHART_HEIGHT,
        bars,
        line: line.join(" "),
        low: format!("{lo:.1}"),
        high: format!("{hi:.1}"),
    })
}

/// `GET /sensors/{id}?span=1h|6h|24h|7d`.
pub async fn sensor(
    State(console): State<Shared>,
    Operator(session): Operator,
    Path(id): Path<String>,
    Query(q): Query<SpanQuery>,
) -> Response {
    let (span, hours, step) = SPANS
        .iter()
        .find(|(s, _, _)| Some(*s) == q.span.as_deref())
        .copied()
        .unwrap_or(SPANS[0]);
    let to = now_ms();
    let from = to - hours * 3_600_000;
    let path = format!(
        "/v1/sensors/{}/readings?from={from}&to={to}&step={step}",
        encode(&id)
    );
    let series: Value = match console.api.get(&session.credential, &path).await {
        Ok(s) => s,
        Err(f) => return failure_page(&session, f),
    };
    let points: Vec<Value> = series["points"].as_array().cloned().unwrap_or_default();
    let f = |p: &Value, k: &str| p[k].as_f64().map(|v| format!("{v:.2}")).unwrap_or_default();
    render(&SensorPage {
        chrome: Chrome::new(&session, format!("Sensor {id}"), "alerts"),
        unit: series["unit"].as_str().unwrap_or("").to_owned(),
        span: span.to_owned(),
        spans: SPANS.iter().map(|(s, _, _)| *s).collect(),
        chart: chart(&points, from, to, i64::from(step) * 1000),
        points: points
            .iter()
            .rev()
            .map(|p| PointRow {
                at: When::of_ms(p["at_ms"].as_i64().unwrap_or(0)),
                min: f(p, "min"),
                max: f(p, "max"),
                mean: f(p, "mean"),
                last: f(p, "last"),
                count: p["count"].as_u64().unwrap_or(0),
            })
            .collect(),
        id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(site: &str, key: &str, severity: &str, state: &str) -> AlertRow {
        AlertRow {
            key: key.into(),
            site: site.into(),
            severity: severity.into(),
            state: state.into(),
            since: When::of_ms(0),
            value: String::new(),
            acked_by: String::new(),
            silenced: false,
            chart: None,
        }
    }

    #[test]
    fn alerts_are_grouped_per_site_critical_first() {
        let groups = by_site(vec![
            row("wx-1", "a/1", "warning", "firing"),
            row("nj-1", "b/1", "warning", "pending"),
            row("wx-1", "c/1", "critical", "firing"),
        ]);
        let got: Vec<(&str, usize, Vec<&str>)> = groups
            .iter()
            .map(|g| {
                (
                    g.site.as_str(),
                    g.firing,
                    g.rows.iter().map(|r| r.key.as_str()).collect(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [("nj-1", 0, vec!["b/1"]), ("wx-1", 2, vec!["c/1", "a/1"])]
        );
    }

    #[test]
    fn a_series_is_scaled_into_the_chart() {
        let points = vec![
            json!({"at_ms": 0, "min": 20.0, "max": 22.0, "mean": 21.0, "last": 21.5, "count": 3}),
            json!({"at_ms": 60_000, "min": 24.0, "max": 30.0, "mean": 27.0, "last": 30.0, "count": 3}),
        ];
        let c = chart(&points, 0, 120_000, 60_000).expect("chart");
        assert_eq!(c.bars.len(), 2);
        assert_eq!(c.bars[0].x, "0.0");
        assert_eq!(c.bars[1].x, "360.0");
        assert_eq!(c.bars[0].w, "360.0");
        // 10% padding: 19.0 to 31.0.
        assert_eq!((c.low.as_str(), c.high.as_str()), ("19.0", "31.0"));
        assert!(chart(&[], 0, 1, 1).is_none());
    }
}
