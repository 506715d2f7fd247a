//! Line prefix tables: replace or read a line's prefixes as JSON, or import the operators'
//! plain `CIDR line [region]` files (tens of thousands of prefixes at once).

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use lingjing_model::line::parse_line_table;
use lingjing_model::{Line, LinePrefix, Region, Validate};
use serde::{Deserialize, Serialize};
use sqlx::AnyConnection;
use utoipa::ToSchema;

use super::{ApiBytes, ApiJson, ApiQuery, AppState};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::store::{get_doc, insert_doc, list_docs};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/lines/{id}/prefixes", get(list).put(replace))
        .route("/v1/lines/import", post(import))
}

/// What an import or replace changed.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ImportSummary {
    /// Prefixes now held, per line touched.
    pub lines: BTreeMap<String, u64>,
    /// Lines that did not exist and were created.
    pub created_lines: Vec<String>,
}

#[derive(Debug, Deserialize)]
pub struct ImportParams {
    /// Create lines named in the file that do not exist (default true).
    #[serde(default = "yes")]
    create_lines: bool,
}

fn yes() -> bool {
    true
}

async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Vec<LinePrefix>>, ApiError> {
    caller.require_operator()?;
    let mut conn = state.store.pool().acquire().await?;
    get_doc::<Line>(&mut conn, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("line", &id))?;
    let all = crate::store::lines::all_prefixes(&mut conn).await?;
    Ok(Json(all.into_iter().filter(|p| p.line == id).collect()))
}

async fn replace(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(prefixes): ApiJson<Vec<LinePrefix>>,
) -> Result<Json<ImportSummary>, ApiError> {
    caller.require_operator()?;
    for (i, p) in prefixes.iter().enumerate() {
        p.validate().map_err(|e| e.within(format!("[{i}]")))?;
        if p.line != id {
            return Err(ApiError::invalid(
                format!("[{i}].line"),
                format!("`{}` differs from the line `{id}` in the path", p.line),
            ));
        }
    }
    let mut w = state.store.write(true).await?;
    get_doc::<Line>(&mut w.tx, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("line", &id))?;
    let summary = store_prefixes(&mut w.tx, &prefixes, &[id], |i| format!("[{i}]")).await?;
    state.published(w.commit().await?);
    Ok(Json(summary))
}

async fn import(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(params): ApiQuery<ImportParams>,
    ApiBytes(body): ApiBytes,
) -> Result<Json<ImportSummary>, ApiError> {
    caller.require_operator()?;
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::BadRequest("the line table must be UTF-8 text".into()))?;
    let prefixes = parse_line_table(text)?;
    // The file's line number of each entry, so that errors found below name it the way
    // the parser's do (`parse_line_table` skips exactly the blank and comment-only lines).
    let line_numbers: Vec<usize> = text
        .lines()
        .enumerate()
        .filter(|(_, raw)| !raw.split('#').next().unwrap_or("").trim().is_empty())
        .map(|(n, _)| n + 1)
        .collect();
    let lines: BTreeSet<String> = prefixes.iter().map(|p| p.line.clone()).collect();
    let mut w = state.store.write(true).await?;
    let mut created = Vec::new();
    for line in &lines {
        if get_doc::<Line>(&mut w.tx, line).await?.is_none() {
            if !params.create_lines {
                return Err(ApiError::invalid(
                    "line",
                    format!(
                        "line `{line}` does not exist: create it first or import with create_lines=true"
                    ),
                ));
            }
            let new = Line {
                id: line.clone(),
                name: line.clone(),
                description: None,
            };
            insert_doc(&mut w.tx, &new).await?;
            created.push(line.clone());
        }
    }
    let lines: Vec<String> = lines.into_iter().collect();
    let mut summary = store_prefixes(&mut w.tx, &prefixes, &lines, |i| {
        format!("line {}", line_numbers.get(i).copied().unwrap_or(i + 1))
    })
    .await?;
    summary.created_lines = created;
    state.published(w.commit().await?);
    tracing::info!(
        prefixes = prefixes.len(),
        lines = summary.lines.len(),
        "line table imported"
    );
    Ok(Json(summary))
}

/// Replaces the prefixes of `lines` with `prefixes`, checking regions and duplicates.
async fn store_prefixes(
    conn: &mut AnyConnection,
    prefixes: &[LinePrefix],
    lines: &[String],
    field: impl Fn(usize) -> String,
) -> Result<ImportSummary, ApiError> {
    let regions: BTreeSet<String> = list_docs::<Region>(conn)
        .await?
        .into_iter()
        .map(|r| r.id)
        .collect();
    let mut seen = BTreeMap::new();
    for (i, p) in prefixes.iter().enumerate() {
        if let Some(r) = &p.region
            && !regions.contains(r)
        {
            return Err(ApiError::invalid(
                field(i),
                format!("region `{r}` does not exist: create it first (lingjing region add)"),
            ));
        }
        if let Some(first) = seen.insert(p.cidr, i) {
            return Err(ApiError::invalid(
                field(i),
                format!("{} is listed twice (also as {})", p.cidr, field(first)),
            ));
        }
    }
    crate::store::lines::replace_prefixes(&mut *conn, lines, prefixes).await?;
    let mut counts: BTreeMap<String, u64> = lines.iter().map(|l| (l.clone(), 0)).collect();
    for p in prefixes {
        *counts.entry(p.line.clone()).or_default() += 1;
    }
    Ok(ImportSummary {
        lines: counts,
        created_lines: Vec::new(),
    })
}
