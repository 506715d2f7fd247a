//! `GET /v1/sla`: availability of nodes, sites and services over a window against a target
//! such as 99.90%, with what fell below it, by how much, and the downtime minutes.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use lingjing_model::{Node, NodeRole, Service, Site};
use serde::Deserialize;

use super::{ApiQuery, AppState};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::sla::{Change, Group, SlaReport, report};
use crate::store::list_docs;
use crate::time::{now_ms, parse_rfc3339_ms, rfc3339_from_ms};

pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/sla", get(sla))
}

#[derive(Debug, Deserialize)]
pub struct SlaParams {
    /// Percent, e.g. 99.90 (default).
    target: Option<f64>,
    /// RFC 3339; default 30 days before `to`.
    from: Option<String>,
    /// RFC 3339; default now.
    to: Option<String>,
}

fn time(field: &str, v: &Option<String>) -> Result<Option<i64>, ApiError> {
    v.as_deref()
        .map(|s| {
            parse_rfc3339_ms(s).ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "`{field}` must be RFC 3339, e.g. 2026-11-01T00:00:00Z"
                ))
            })
        })
        .transpose()
}

/// A service's steering sites and fallback sites: who may serve it.
type SitesKey = (Vec<String>, Vec<String>);

async fn sla(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(params): ApiQuery<SlaParams>,
) -> Result<Json<SlaReport>, ApiError> {
    caller.require_operator()?;
    let target = params.target.unwrap_or(99.9);
    if !(0.0..=100.0).contains(&target) {
        return Err(ApiError::BadRequest(
            "`target` is a percentage from 0 to 100".into(),
        ));
    }
    let to = time("to", &params.to)?.unwrap_or_else(now_ms);
    let from = time("from", &params.from)?.unwrap_or(to - 30 * 86_400_000);
    if from >= to {
        return Err(ApiError::BadRequest("`from` must be before `to`".into()));
    }
    let mut conn = state.store.pool().acquire().await?;
    let changes: BTreeMap<String, Vec<Change>> =
        crate::store::health::health_changes(&mut conn, to).await?;
    let nodes: Vec<Node> = list_docs::<Node>(&mut conn)
        .await?
        .into_iter()
        .filter(|n| {
            n.roles
                .iter()
                .any(|r| matches!(r, NodeRole::Edge | NodeRole::Parent))
        })
        .collect();
    let ids: Vec<String> = nodes.iter().map(|n| n.id.clone()).collect();
    let mut groups: Vec<Group> = Vec::new();
    for site in list_docs::<Site>(&mut conn).await? {
        let members: Vec<String> = nodes
            .iter()
            .filter(|n| n.site == site.id)
            .map(|n| n.id.clone())
            .collect();
        if !members.is_empty() {
            groups.push(("site", site.id, members.into()));
        }
    }
    // Services with the same sites share their members (and so one computation).
    let mut by_steering: HashMap<SitesKey, Arc<[String]>> = HashMap::new();
    for service in list_docs::<Service>(&mut conn).await? {
        let s = service.steering;
        let members = by_steering
            .entry((s.sites, s.fallback_sites))
            .or_insert_with_key(|(sites, fallback)| {
                nodes
                    .iter()
                    .filter(|n| {
                        let edge_here = n.roles.contains(&NodeRole::Edge)
                            && (sites.is_empty() || sites.contains(&n.site));
                        edge_here || fallback.contains(&n.site)
                    })
                    .map(|n| n.id.clone())
                    .collect()
            })
            .clone();
        groups.push(("service", service.id, members));
    }
    let (entries, below_target) = report(&changes, &ids, &groups, from, to, target);
    Ok(Json(SlaReport {
        from: rfc3339_from_ms(from),
        to: rfc3339_from_ms(to),
        target,
        entries,
        below_target,
    }))
}
