//! Traffic defence: the attacks the edges detected (newest first, with who sent most and
//! the rule made of it), the rules in force (a tenant's own; the operator's for every
//! service too) with a button that removes one, and the form that adds one, its errors
//! beside the field the API names.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use lingjing_model::defence::{DefenceEvent, DefenceRule, RuleOrigin};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::fleet::encode;
use super::{Chrome, Posted, Shared, Signed, failure_page, form_field, render_status};
use crate::format::{When, count, word};
use crate::listing::{Column, ListQuery, Listing};
use crate::session::Session;

/// An event's row.
struct EventRow {
    service: String,
    started: When,
    /// `ongoing`, or when it ended.
    ended: Option<When>,
    mode: String,
    dimensions: String,
    peak_rps: String,
    dropped: String,
    top_sources: String,
    rule: Option<String>,
    nodes: usize,
}

/// A rule's row.
struct RuleRow {
    id: String,
    service: String,
    action: String,
    /// The conditions in words.
    matches: String,
    mode: String,
    expires: Option<When>,
    expires_ms: Option<u64>,
    /// `manual`, or the event it was made of.
    origin: String,
    detected_event: bool,
    note: String,
}

/// What the add-rule form holds (kept when the API refuses it).
#[derive(Debug, Default, Deserialize)]
pub struct RuleForm {
    #[serde(default)]
    csrf: String,
    /// Empty: every service (the operator's).
    #[serde(default)]
    service: String,
    #[serde(default)]
    action: String,
    /// Addresses or prefixes, a line (or comma) each.
    #[serde(default)]
    sources: String,
    #[serde(default)]
    path: String,
    /// Space- or comma-separated.
    #[serde(default)]
    methods: String,
    #[serde(default)]
    user_agent: String,
    #[serde(default)]
    rate: String,
    #[serde(default)]
    mode: String,
    #[serde(default)]
    ttl_seconds: String,
    #[serde(default)]
    note: String,
}

super::csrf_field!(RuleForm);

#[derive(Template)]
#[template(path = "defence.html")]
struct DefencePage {
    chrome: Chrome,
    events: Vec<EventRow>,
    rules: Listing<RuleRow>,
    /// The services the form offers.
    services: Vec<String>,
    form: RuleForm,
    errors: HashMap<String, String>,
    general: Option<String>,
}

impl DefencePage {
    fn error(&self, field: &str) -> &str {
        self.errors.get(field).map(String::as_str).unwrap_or("")
    }

    /// What the form's text field `field` holds.
    fn value(&self, field: &str) -> &str {
        let f = &self.form;
        match field {
            "service" => &f.service,
            "path" => &f.path,
            "methods" => &f.methods,
            "user_agent" => &f.user_agent,
            "rate" => &f.rate,
            "ttl_seconds" => &f.ttl_seconds,
            "note" => &f.note,
            _ => "",
        }
    }
}

impl RuleRow {
    fn of(r: DefenceRule) -> RuleRow {
        let m = &r.spec.matches;
        let mut conditions = Vec::new();
        if !m.sources.is_empty() {
            let shown: Vec<String> = m.sources.iter().take(5).map(|s| s.to_string()).collect();
            let more = m.sources.len().saturating_sub(shown.len());
            conditions.push(format!(
                "from {}{}",
                shown.join(", "),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            ));
        }
        if !m.methods.is_empty() {
            conditions.push(format!("method {}", m.methods.join(" or ")));
        }
        if let Some(p) = &m.path {
            conditions.push(format!("path {p}"));
        }
        if let Some(h) = &m.header {
            conditions.push(format!("header {} contains \"{}\"", h.name, h.contains));
        }
        if let Some(ua) = &m.user_agent {
            conditions.push(format!("user agent contains \"{ua}\""));
        }
        let action = match (&r.spec.rate, word(&r.spec.action).as_str()) {
            (Some(rate), "limit") => format!("limit to {rate}/s per address"),
            (_, a) => a.to_owned(),
        };
        let (origin, detected_event) = match &r.origin {
            RuleOrigin::Manual => ("added by hand".to_owned(), false),
            RuleOrigin::Detected { event } => (event.clone(), true),
        };
        RuleRow {
            service: r
                .spec
                .service
                .clone()
                .unwrap_or_else(|| "every service".into()),
            action,
            matches: if conditions.is_empty() {
                "every request".into()
            } else {
                conditions.join("; ")
            },
            mode: word(&r.spec.mode),
            expires: r
                .expires_ms
                .map(|ms| When::of_ms(i64::try_from(ms).unwrap_or(i64::MAX))),
            expires_ms: r.expires_ms,
            origin,
            detected_event,
            note: r.spec.note.clone().unwrap_or_default(),
            id: r.id,
        }
    }
}

impl EventRow {
    fn of(e: DefenceEvent) -> EventRow {
        EventRow {
            started: When::of(Some(&e.started)),
            ended: e.ended.as_deref().map(|t| When::of(Some(t))),
            mode: word(&e.mode),
            dimensions: e.dimensions.iter().map(word).collect::<Vec<_>>().join(", "),
            peak_rps: count(e.peak_rps),
            dropped: count(e.dropped),
            top_sources: e
                .top_sources
                .iter()
                .take(3)
                .map(|s| format!("{} ({}/s)", s.source, count(s.rps)))
                .collect::<Vec<_>>()
                .join(", "),
            rule: e.rule,
            nodes: e.nodes.len(),
            service: e.service,
        }
    }
}

/// The page with `form` (and what the API said about it).
async fn page(
    console: &Shared,
    session: &Session,
    query: &ListQuery,
    form: RuleForm,
    errors: HashMap<String, String>,
    general: Option<String>,
    status: StatusCode,
) -> Response {
    let c = &session.credential;
    let events: Vec<DefenceEvent> = match console.api.get(c, "/v1/defence/events?limit=100").await {
        Ok(e) => e,
        Err(f) => return failure_page(session, f),
    };
    let rules: Vec<DefenceRule> = match console.api.get(c, "/v1/defence/rules").await {
        Ok(r) => r,
        Err(f) => return failure_page(session, f),
    };
    // A tenant picks from its services; the operator types one (there may be 10,000).
    let services: Vec<Value> = if session.is_operator() {
        Vec::new()
    } else {
        match console.api.get(c, "/v1/services?limit=1000").await {
            Ok(s) => s,
            Err(f) => return failure_page(session, f),
        }
    };
    render_status(
        status,
        &DefencePage {
            chrome: Chrome::new(session, "Traffic defence", "defence"),
            events: events.into_iter().map(EventRow::of).collect(),
            rules: Listing::of(
                "/defence",
                rules.into_iter().map(RuleRow::of).collect(),
                query,
                RULE_COLUMNS,
                |r| {
                    format!(
                        "{} {} {} {} {}",
                        r.id, r.service, r.action, r.matches, r.note
                    )
                },
                |r, key| match key {
                    "service" => (r.service.clone(), 0, r.id.clone()),
                    "action" => (r.action.clone(), 0, r.id.clone()),
                    "expires" => (
                        String::new(),
                        r.expires_ms.unwrap_or(u64::MAX),
                        r.id.clone(),
                    ),
                    _ => (r.id.clone(), 0, String::new()),
                },
            ),
            services: services
                .iter()
                .filter_map(|s| s["id"].as_str().map(str::to_owned))
                .collect(),
            form,
            errors,
            general,
        },
    )
}

/// The rules table's sortable columns.
const RULE_COLUMNS: &[Column] = &[
    Column {
        key: "rule",
        title: "Rule",
    },
    Column {
        key: "service",
        title: "Service",
    },
    Column {
        key: "action",
        title: "Action",
    },
    Column {
        key: "expires",
        title: "Expires",
    },
];

/// `GET /defence`.
pub async fn overview(
    State(console): State<Shared>,
    Signed(session): Signed,
    Query(query): Query<ListQuery>,
) -> Response {
    let form = RuleForm {
        action: "block".into(),
        mode: "enforce".into(),
        ..Default::default()
    };
    page(
        &console,
        &session,
        &query,
        form,
        HashMap::new(),
        None,
        StatusCode::OK,
    )
    .await
}

/// Splits on commas and white space.
fn list(text: &str) -> Vec<String> {
    super::services::entries(text)
}

/// The API's rule for `form`, or the form field that does not read and why.
fn spec(form: &RuleForm) -> Result<Value, (&'static str, String)> {
    let number = |field: &'static str, text: &str| -> Result<Option<u64>, (&'static str, String)> {
        let t = text.trim();
        if t.is_empty() {
            return Ok(None);
        }
        t.parse::<u64>()
            .map(Some)
            .map_err(|_| (field, format!("`{t}` is not a whole number")))
    };
    let mut m = Map::new();
    let sources = list(&form.sources);
    if !sources.is_empty() {
        m.insert("sources".into(), json!(sources));
    }
    let methods: Vec<String> = list(&form.methods)
        .into_iter()
        .map(|s| s.to_ascii_uppercase())
        .collect();
    if !methods.is_empty() {
        m.insert("methods".into(), json!(methods));
    }
    if !form.path.trim().is_empty() {
        m.insert("path".into(), json!(form.path.trim()));
    }
    if !form.user_agent.trim().is_empty() {
        m.insert("user_agent".into(), json!(form.user_agent.trim()));
    }
    let mut spec = Map::new();
    if !form.service.trim().is_empty() {
        spec.insert("service".into(), json!(form.service.trim()));
    }
    spec.insert("action".into(), json!(form.action.trim()));
    spec.insert("match".into(), Value::Object(m));
    if let Some(rate) = number("rate", &form.rate)? {
        spec.insert("rate".into(), json!(rate));
    }
    if !form.mode.trim().is_empty() {
        spec.insert("mode".into(), json!(form.mode.trim()));
    }
    if let Some(ttl) = number("ttl_seconds", &form.ttl_seconds)? {
        spec.insert("ttl_seconds".into(), json!(ttl));
    }
    if !form.note.trim().is_empty() {
        spec.insert("note".into(), json!(form.note.trim()));
    }
    Ok(Value::Object(spec))
}

/// The form field an API field is about (`match.sources[2]` -> `sources`).
fn rule_field(api: &str) -> &str {
    let f = api.strip_prefix("match.").unwrap_or(api);
    form_field(f)
}

/// `POST /defence/rules`: adds a rule through the API.
pub async fn add(
    State(console): State<Shared>,
    Posted(session, form): Posted<RuleForm>,
) -> Response {
    let refused = |field: &str, message: String| {
        let mut errors = HashMap::new();
        let mut general = None;
        match field {
            f @ ("service" | "action" | "sources" | "path" | "methods" | "user_agent" | "rate"
            | "mode" | "ttl_seconds" | "note") => {
                errors.insert(f.to_owned(), message);
            }
            _ => general = Some(message),
        }
        (errors, general)
    };
    let body = match spec(&form) {
        Ok(b) => b,
        Err((field, message)) => {
            let (errors, general) = refused(field, message);
            return page(
                &console,
                &session,
                &ListQuery::default(),
                form,
                errors,
                general,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await;
        }
    };
    match console
        .api
        .call::<Value>(
            Method::POST,
            &session.credential,
            "/v1/defence/rules",
            Some(&body),
        )
        .await
    {
        Ok(_) => Redirect::to("/defence").into_response(),
        Err(f) if f.status.is_client_error() => {
            let field = f.field.clone().unwrap_or_default();
            let (errors, general) = refused(rule_field(&field), f.message);
            page(
                &console,
                &session,
                &ListQuery::default(),
                form,
                errors,
                general,
                f.status,
            )
            .await
        }
        Err(f) => failure_page(&session, f),
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct RemoveForm {
    #[serde(default)]
    csrf: String,
}

super::csrf_field!(RemoveForm);

/// `POST /defence/rules/{id}/remove`.
pub async fn remove(
    State(console): State<Shared>,
    Path(id): Path<String>,
    Posted(session, _): Posted<RemoveForm>,
) -> Response {
    let path = format!("/v1/defence/rules/{}", encode(&id));
    match console
        .api
        .call::<Value>(Method::DELETE, &session.credential, &path, None)
        .await
    {
        Ok(_) => Redirect::to("/defence").into_response(),
        Err(f) => failure_page(&session, f),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_form_becomes_the_apis_rule() {
        let form = RuleForm {
            service: "shop".into(),
            action: "limit".into(),
            sources: "192.0.2.7\n198.51.100.0/24".into(),
            methods: "post, get".into(),
            rate: "50".into(),
            ..Default::default()
        };
        let s = spec(&form).expect("reads");
        assert_eq!(s["match"]["sources"][1], "198.51.100.0/24");
        assert_eq!(s["match"]["methods"], json!(["POST", "GET"]));
        assert_eq!(s["rate"], 50);
        assert!(s.get("ttl_seconds").is_none());
        let bad = RuleForm {
            rate: "fast".into(),
            ..Default::default()
        };
        assert_eq!(spec(&bad).expect_err("no rate").0, "rate");
        assert_eq!(rule_field("match.sources[1]"), "sources");
        assert_eq!(rule_field("rate"), "rate");
    }
}
