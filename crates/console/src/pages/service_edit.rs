//! Editing a service: its hostnames, its origins (one per line, with their options in
//! words) and its cache rules (a row each, first match wins), saved with one `PUT` of the
//! whole service through the API, whose validation errors come back beside the field or
//! the rule they name. A form opened before someone else saved the service is refused
//! rather than silently undoing their change.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};

use askama::Template;
use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use lingjing_model::{CacheRule, Origin, Service};
use serde::Deserialize;

use super::fleet::encode;
use super::{Chrome, Posted, Shared, Signed, WithCsrf, failure_page, form_field, render_status};
use crate::api::Failure;
use crate::session::Session;

/// Blank rule rows offered below a service's rules, to add new ones without script.
const BLANK_RULES: usize = 3;
/// The most rule rows a form may post (the API allows 100 rules).
const MAX_ROWS: usize = 200;

/// One cache rule's row as the form shows and posts it.
#[derive(Debug, Default, Clone)]
pub(crate) struct RuleRow {
    path: String,
    ttl: String,
    bypass: bool,
    ignore_query: bool,
    sort_query: bool,
    key_headers: String,
    cache_set_cookie: bool,
    /// What is wrong with this rule (from the form or the API); empty when nothing.
    error: String,
}

impl RuleRow {
    fn of(rule: &CacheRule) -> RuleRow {
        RuleRow {
            path: rule.path.clone(),
            ttl: rule.ttl_secs.map(|t| t.to_string()).unwrap_or_default(),
            bypass: rule.bypass,
            ignore_query: rule.ignore_query,
            sort_query: rule.sort_query,
            key_headers: rule.key_headers.join(", "),
            cache_set_cookie: rule.cache_set_cookie,
            error: String::new(),
        }
    }

    /// The rule this row asks for (`None` for a blank row), or what is wrong with it.
    fn rule(&self) -> Result<Option<CacheRule>, String> {
        let path = self.path.trim();
        if path.is_empty() {
            return Ok(None);
        }
        let ttl = self.ttl.trim();
        let ttl_secs = if ttl.is_empty() {
            None
        } else {
            Some(ttl.parse::<u64>().map_err(|_| {
                format!("TTL `{ttl}` is not a whole number of seconds: leave it empty to keep the origin's")
            })?)
        };
        Ok(Some(CacheRule {
            path: path.to_owned(),
            ttl_secs,
            bypass: self.bypass,
            ignore_query: self.ignore_query,
            sort_query: self.sort_query,
            key_headers: super::services::entries(&self.key_headers),
            cache_set_cookie: self.cache_set_cookie,
        }))
    }
}

/// An origin as one line of the form: its address, then `tls`, `skip-verify`, `backup`,
/// `weight=N` and `host=NAME` where they differ from the defaults.
pub(crate) fn origin_line(o: &Origin) -> String {
    let mut line = o.address.clone();
    for (on, word) in [
        (o.tls, "tls"),
        (o.tls_skip_verify, "skip-verify"),
        (o.backup, "backup"),
    ] {
        if on {
            line.push(' ');
            line.push_str(word);
        }
    }
    if o.weight != 1 {
        line.push_str(&format!(" weight={}", o.weight));
    }
    if let Some(h) = &o.host_header {
        line.push_str(&format!(" host={h}"));
    }
    line
}

/// The origins a text box names, a line each (see [`origin_line`]); or what is wrong with
/// a line.
pub(crate) fn parse_origins(text: &str) -> Result<Vec<Origin>, String> {
    let mut origins = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let mut words = line.split_whitespace();
        let Some(address) = words.next() else {
            continue;
        };
        let mut origin = Origin {
            address: address.to_owned(),
            weight: 1,
            backup: false,
            tls: false,
            tls_skip_verify: false,
            host_header: None,
        };
        for word in words {
            match word.split_once('=') {
                None if word == "tls" => origin.tls = true,
                None if word == "skip-verify" => origin.tls_skip_verify = true,
                None if word == "backup" => origin.backup = true,
                Some(("weight", w)) => {
                    origin.weight = w.parse().map_err(|_| {
                        format!(
                            "line {}: weight `{w}` is not a whole number (1 is the default)",
                            n + 1
                        )
                    })?;
                }
                Some(("host", h)) if !h.is_empty() => origin.host_header = Some(h.to_owned()),
                _ => {
                    return Err(format!(
                        "line {}: `{word}` is not an origin option: after the address write any of tls, skip-verify, backup, weight=N, host=NAME",
                        n + 1
                    ));
                }
            }
        }
        origins.push(origin);
    }
    Ok(origins)
}

/// The edit form as posted: its fields in order (rule rows are `rule.N.FIELD`).
#[derive(Debug, Deserialize)]
#[serde(transparent)]
pub struct EditPost(Vec<(String, String)>);

impl WithCsrf for EditPost {
    fn csrf(&self) -> &str {
        self.value("csrf")
    }
}

impl EditPost {
    fn value(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }

    /// The rule rows, in row order (at most [`MAX_ROWS`]).
    fn rules(&self) -> Vec<RuleRow> {
        let mut rows: Vec<RuleRow> = Vec::new();
        for (name, value) in &self.0 {
            let Some(rest) = name.strip_prefix("rule.") else {
                continue;
            };
            let Some((n, field)) = rest.split_once('.') else {
                continue;
            };
            let Some(n) = n.parse::<usize>().ok().filter(|&n| n < MAX_ROWS) else {
                continue;
            };
            if rows.len() <= n {
                rows.resize(n + 1, RuleRow::default());
            }
            let row = &mut rows[n];
            let on = value == "on";
            match field {
                "path" => row.path = value.clone(),
                "ttl" => row.ttl = value.clone(),
                "bypass" => row.bypass = on,
                "ignore_query" => row.ignore_query = on,
                "sort_query" => row.sort_query = on,
                "key_headers" => row.key_headers = value.clone(),
                "cache_set_cookie" => row.cache_set_cookie = on,
                _ => {}
            }
        }
        rows
    }
}

#[derive(Template)]
#[template(path = "service_edit.html")]
struct EditPage {
    chrome: Chrome,
    id: String,
    /// The fingerprint of the service as this form was opened.
    base: String,
    hostnames: String,
    origins: String,
    rules: Vec<RuleRow>,
    /// Field (`hostnames`, `origins`) -> message.
    errors: HashMap<String, String>,
    general: Option<String>,
}

impl EditPage {
    fn error(&self, field: &str) -> &str {
        self.errors.get(field).map(String::as_str).unwrap_or("")
    }
}

/// A fingerprint of a service's settings, to tell whether it changed since a form showed
/// it (not a secret: the API checks who may change what).
fn fingerprint(service: &Service) -> String {
    let mut h = DefaultHasher::new();
    serde_json::to_string(service)
        .unwrap_or_default()
        .hash(&mut h);
    format!("{:016x}", h.finish())
}

/// The service `id` as the API shows it to the session, without the fields it adds.
async fn load(console: &Shared, session: &Session, id: &str) -> Result<Service, Failure> {
    let mut view: serde_json::Value = console
        .api
        .get(&session.credential, &format!("/v1/services/{}", encode(id)))
        .await?;
    if let Some(o) = view.as_object_mut() {
        o.remove("cname");
        o.remove("hostname_status");
    }
    serde_json::from_value(view).map_err(|e| Failure {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        code: "internal".into(),
        message: format!("the API's service did not read as a service: {e}"),
        field: None,
    })
}

fn with_blanks(mut rules: Vec<RuleRow>) -> Vec<RuleRow> {
    while rules.last().is_some_and(|r| r.path.trim().is_empty()) {
        rules.pop();
    }
    rules.extend(std::iter::repeat_n(RuleRow::default(), BLANK_RULES));
    rules
}

/// `GET /services/{id}/edit`.
pub async fn form(
    State(console): State<Shared>,
    Signed(session): Signed,
    Path(id): Path<String>,
) -> Response {
    let service = match load(&console, &session, &id).await {
        Ok(s) => s,
        Err(f) => return failure_page(&session, f),
    };
    render_status(
        StatusCode::OK,
        &EditPage {
            chrome: Chrome::new(&session, format!("Edit {}", service.id), "services"),
            base: fingerprint(&service),
            hostnames: service.hostnames.join("\n"),
            origins: service
                .origins
                .iter()
                .map(origin_line)
                .collect::<Vec<_>>()
                .join("\n"),
            rules: with_blanks(service.cache_rules.iter().map(RuleRow::of).collect()),
            errors: HashMap::new(),
            general: None,
            id: service.id,
        },
    )
}

/// `POST /services/{id}/edit`: saves hostnames, origins and cache rules with one `PUT`.
pub async fn save(
    State(console): State<Shared>,
    Path(id): Path<String>,
    Posted(session, post): Posted<EditPost>,
) -> Response {
    let mut page = EditPage {
        chrome: Chrome::new(&session, format!("Edit {id}"), "services"),
        id: id.clone(),
        base: post.value("base").to_owned(),
        hostnames: post.value("hostnames").to_owned(),
        origins: post.value("origins").to_owned(),
        rules: post.rules(),
        errors: HashMap::new(),
        general: None,
    };
    let refuse = |mut page: EditPage, status: StatusCode| {
        page.rules = with_blanks(std::mem::take(&mut page.rules));
        render_status(status, &page)
    };
    let mut service = match load(&console, &session, &id).await {
        Ok(s) => s,
        Err(f) => return failure_page(&session, f),
    };
    if fingerprint(&service) != page.base {
        page.general = Some(
            "someone changed this service after you opened this form: nothing was saved. Open the service again to see their change, then make yours.".into(),
        );
        return refuse(page, StatusCode::CONFLICT);
    }
    // The form's own checks first; nothing goes to the API while one fails.
    let origins = parse_origins(&page.origins);
    if let Err(e) = &origins {
        page.errors.insert("origins".into(), e.clone());
    }
    // Which form row each rule sent came from, to put the API's error beside it.
    let mut rows_sent = Vec::new();
    let mut rules = Vec::new();
    for (n, row) in page.rules.iter_mut().enumerate() {
        match row.rule() {
            Ok(Some(rule)) => {
                rules.push(rule);
                rows_sent.push(n);
            }
            Ok(None) => {}
            Err(e) => row.error = e,
        }
    }
    let Ok(origins) = origins else {
        return refuse(page, StatusCode::UNPROCESSABLE_ENTITY);
    };
    if page.rules.iter().any(|r| !r.error.is_empty()) {
        return refuse(page, StatusCode::UNPROCESSABLE_ENTITY);
    }
    service.hostnames = super::services::entries(&page.hostnames);
    service.origins = origins;
    service.cache_rules = rules;
    let body = match serde_json::to_value(&service) {
        Ok(b) => b,
        Err(e) => {
            page.general = Some(format!("the service did not serialise: {e}"));
            return refuse(page, StatusCode::INTERNAL_SERVER_ERROR);
        }
    };
    let path = format!("/v1/services/{}", encode(&id));
    match console
        .api
        .call::<serde_json::Value>(Method::PUT, &session.credential, &path, Some(&body))
        .await
    {
        Ok(_) => Redirect::to(&format!("/services/{}", encode(&id))).into_response(),
        Err(f) if f.status.is_client_error() => {
            let field = f.field.clone().unwrap_or_default();
            match form_field(&field) {
                "hostnames" | "origins" => {
                    page.errors.insert(form_field(&field).to_owned(), f.message);
                }
                "cache_rules" => match rule_index(&field).and_then(|i| rows_sent.get(i)) {
                    Some(&row) => page.rules[row].error = f.message,
                    None => page.general = Some(f.message),
                },
                _ => page.general = Some(f.message),
            }
            refuse(page, f.status)
        }
        Err(f) => failure_page(&session, f),
    }
}

/// The rule an API field names: `cache_rules[2].ttl_secs` -> 2.
fn rule_index(field: &str) -> Option<usize> {
    let rest = field.strip_prefix("cache_rules[")?;
    rest[..rest.find(']')?].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_lines_read_back_as_written() {
        let text = "a.example:443 tls weight=3 host=www.example\nbackup.example:80 backup\n\n";
        let origins = parse_origins(text).expect("parses");
        assert_eq!(origins.len(), 2);
        assert!(origins[0].tls && origins[0].weight == 3 && !origins[0].backup);
        assert_eq!(origins[0].host_header.as_deref(), Some("www.example"));
        assert!(origins[1].backup);
        let lines: Vec<String> = origins.iter().map(origin_line).collect();
        assert_eq!(
            lines,
            [
                "a.example:443 tls weight=3 host=www.example",
                "backup.example:80 backup"
            ]
        );
        let bad = parse_origins("a:1 fast").expect_err("unknown option");
        assert!(bad.contains("`fast`") && bad.contains("line 1"), "{bad}");
        assert!(parse_origins("a:1 weight=x").is_err());
    }

    #[test]
    fn rule_rows_come_back_in_order_and_blank_rows_are_dropped() {
        let post = EditPost(vec![
            ("rule.1.path".into(), "/b/*".into()),
            ("rule.0.path".into(), "/a".into()),
            ("rule.0.ttl".into(), "60".into()),
            ("rule.0.bypass".into(), "on".into()),
            ("rule.2.path".into(), "  ".into()),
            ("rule.999.path".into(), "/too-far".into()),
        ]);
        let rows = post.rules();
        assert_eq!(rows.len(), 3);
        let a = rows[0].rule().expect("ok").expect("a rule");
        assert_eq!(
            (a.path.as_str(), a.ttl_secs, a.bypass),
            ("/a", Some(60), true)
        );
        assert_eq!(rows[2].rule(), Ok(None));
        let bad = RuleRow {
            path: "/x".into(),
            ttl: "soon".into(),
            ..Default::default()
        };
        assert!(bad.rule().expect_err("bad ttl").contains("`soon`"));
        assert_eq!(rule_index("cache_rules[12].ttl_secs"), Some(12));
        assert_eq!(rule_index("hostnames[0]"), None);
    }
}
