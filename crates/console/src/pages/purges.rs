//! Purges: the form (URLs, prefixes or tags; hard or soft), the list, and a purge's
//! progress per edge node, refreshed live until every node has applied it.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::Method;
use axum::response::{IntoResponse, Redirect, Response};
use lingjing_model::purge::Purge;
use serde::Deserialize;
use serde_json::json;

use super::{Chrome, Posted, Shared, Signed, failure_page, form_field, render, render_status};
use crate::format::When;
use crate::listing::{Column, ListQuery, Listing};

/// A purge with its progress, as the API shows it.
#[derive(Debug, Clone, Deserialize)]
struct PurgeStatus {
    #[serde(flatten)]
    purge: Purge,
    #[serde(default)]
    applied: Vec<String>,
    #[serde(default)]
    pending: Vec<String>,
}

/// A row of the purge list.
pub(crate) struct PurgeRow {
    id: u64,
    service: String,
    kind: String,
    mode: String,
    targets: String,
    created: When,
}

impl PurgeRow {
    fn of(p: &Purge) -> PurgeRow {
        PurgeRow {
            id: p.id,
            service: p.service.clone(),
            kind: enum_word(&p.kind),
            mode: enum_word(&p.mode),
            targets: p.targets.join(" "),
            created: When::of(Some(&p.created_at)),
        }
    }
}

/// A serde enum's word (`url`, `hard`).
fn enum_word<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

#[derive(Template)]
#[template(path = "purges.html")]
struct PurgesPage {
    chrome: Chrome,
    listing: Listing<PurgeRow>,
    form: PurgeForm,
    errors: std::collections::HashMap<String, String>,
    general: Option<String>,
}

impl PurgesPage {
    fn error(&self, field: &str) -> &str {
        self.errors.get(field).map(String::as_str).unwrap_or("")
    }
}

const COLUMNS: &[Column] = &[
    Column {
        key: "id",
        title: "Purge",
    },
    Column {
        key: "service",
        title: "Service",
    },
    Column {
        key: "created",
        title: "Issued",
    },
];

/// What the purge form holds.
#[derive(Debug, Default, Deserialize)]
pub struct PurgeForm {
    #[serde(default)]
    csrf: String,
    /// Optional for URL and prefix purges (found from the URLs' host).
    #[serde(default)]
    service: String,
    /// `url`, `prefix` or `tag`.
    #[serde(default)]
    kind: String,
    /// One per line.
    #[serde(default)]
    targets: String,
    /// `hard` or `soft`.
    #[serde(default)]
    mode: String,
}

super::csrf_field!(PurgeForm);

async fn page(
    console: &Shared,
    session: &crate::session::Session,
    query: &ListQuery,
    form: PurgeForm,
    failure: Option<crate::api::Failure>,
) -> Response {
    let purges: Vec<Purge> = match console.api.get(&session.credential, "/v1/purges").await {
        Ok(p) => p,
        Err(f) => return failure_page(session, f),
    };
    let rows = purges.iter().map(PurgeRow::of).collect();
    // Newest first unless asked otherwise.
    let mut query = query.clone();
    if query.sort.is_none() {
        query.sort = Some("id".into());
        query.dir = Some("desc".into());
    }
    let listing = Listing::of(
        "/purges",
        rows,
        &query,
        COLUMNS,
        |r| format!("{} {} {}", r.id, r.service, r.targets),
        |r, key| match key {
            "service" => (r.service.clone(), r.id),
            "created" => (r.created.iso.clone(), r.id),
            _ => (String::new(), r.id),
        },
    );
    let mut errors = std::collections::HashMap::new();
    let mut general = None;
    let status = failure.as_ref().map(|f| f.status);
    if let Some(f) = failure {
        match f.field.as_deref().map(form_field) {
            Some(field @ ("service" | "kind" | "targets" | "mode")) => {
                errors.insert(field.to_owned(), f.message);
            }
            _ => general = Some(f.message),
        }
    }
    let page = PurgesPage {
        chrome: Chrome::new(session, "Purges", "purges"),
        listing,
        form,
        errors,
        general,
    };
    match status {
        Some(s) => render_status(s, &page),
        None => render(&page),
    }
}

/// `GET /purges`.
pub async fn list(
    State(console): State<Shared>,
    Signed(session): Signed,
    Query(query): Query<ListQuery>,
) -> Response {
    let form = PurgeForm {
        kind: "url".into(),
        mode: "hard".into(),
        ..Default::default()
    };
    page(&console, &session, &query, form, None).await
}

/// `POST /purges`: issues the purge through the API and shows its progress.
pub async fn create(
    State(console): State<Shared>,
    Posted(session, form): Posted<PurgeForm>,
) -> Response {
    let service = form.service.trim();
    let targets: Vec<&str> = form.targets.split_whitespace().collect();
    let mut body = json!({
        "kind": if form.kind.is_empty() { "url" } else { form.kind.as_str() },
        "mode": if form.mode.is_empty() { "hard" } else { form.mode.as_str() },
        "targets": targets,
    });
    if !service.is_empty() {
        body["service"] = json!(service);
    }
    match console
        .api
        .call::<PurgeStatus>(Method::POST, &session.credential, "/v1/purges", Some(&body))
        .await
    {
        Ok(p) => Redirect::to(&format!("/purges/{}", p.purge.id)).into_response(),
        Err(f) if f.status.is_client_error() => {
            page(&console, &session, &ListQuery::default(), form, Some(f)).await
        }
        Err(f) => failure_page(&session, f),
    }
}

#[derive(Template)]
#[template(path = "purge.html")]
struct PurgePage {
    chrome: Chrome,
    purge: PurgeRow,
    progress: Progress,
}

#[derive(Template)]
#[template(path = "purge_live.html")]
struct PurgeLive {
    purge: PurgeRow,
    progress: Progress,
}

/// Which edge nodes have applied a purge.
struct Progress {
    applied: Vec<String>,
    pending: Vec<String>,
    /// `3 of 4 nodes`.
    summary: String,
    done: bool,
}

async fn status(
    console: &Shared,
    session: &crate::session::Session,
    id: &str,
) -> Result<(PurgeRow, Progress), Response> {
    let id: u64 = id.parse().map_err(|_| {
        super::error_page(
            Some(session),
            axum::http::StatusCode::NOT_FOUND,
            format!("no purge {id:?}: purge ids are numbers"),
        )
    })?;
    let s: PurgeStatus = console
        .api
        .get(&session.credential, &format!("/v1/purges/{id}"))
        .await
        .map_err(|f| failure_page(session, f))?;
    let total = s.applied.len() + s.pending.len();
    Ok((
        PurgeRow::of(&s.purge),
        Progress {
            summary: format!("{} of {total} edge nodes", s.applied.len()),
            done: s.pending.is_empty(),
            applied: s.applied,
            pending: s.pending,
        },
    ))
}

/// `GET /purges/{id}`.
pub async fn show(
    State(console): State<Shared>,
    Signed(session): Signed,
    Path(id): Path<String>,
) -> Response {
    match status(&console, &session, &id).await {
        Ok((purge, progress)) => render(&PurgePage {
            chrome: Chrome::new(&session, format!("Purge {}", purge.id), "purges"),
            purge,
            progress,
        }),
        Err(r) => r,
    }
}

/// `GET /purges/{id}/live`: the progress alone, for the page's refresh (which stops
/// once every node has applied the purge).
pub async fn live(
    State(console): State<Shared>,
    Signed(session): Signed,
    Path(id): Path<String>,
) -> Response {
    match status(&console, &session, &id).await {
        Ok((purge, progress)) => render(&PurgeLive { purge, progress }),
        Err(r) => r,
    }
}
