//! Purge endpoints: issue a purge (by URL, prefix or tag; hard or soft), list them, and see
//! per purge which edge nodes have applied it. A purge rides in the edge snapshot of the
//! version it was issued at, so a node that was down receives it when it catches up.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use lingjing_model::purge::split_url;
use lingjing_model::service::host_matches;
use lingjing_model::snapshot::NodeStatus;
use lingjing_model::{
    Node, NodeRole, Purge, PurgeKind, PurgeMode, PurgeRequest, Service, Tenant, Validate,
};
use serde::Serialize;
use sqlx::AnyConnection;
use utoipa::ToSchema;

use super::{ApiJson, AppState};
use crate::auth::Caller;
use crate::error::{ApiError, StoreError};
use crate::store::purges::{
    NewPurge, insert_purge, recent_purges, recent_tenant_purges, tenant_purges_since,
};
use crate::store::{get_doc, list_docs, node_statuses};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/purges", get(list).post(create))
        .route("/v1/purges/{id}", get(show))
}

/// A purge and where it has been applied.
#[derive(Debug, Serialize, ToSchema)]
pub struct PurgeStatus {
    #[serde(flatten)]
    pub purge: Purge,
    /// Edge and parent nodes whose acknowledged edge snapshot includes the purge.
    pub applied: Vec<String>,
    /// Edge and parent nodes that have not acknowledged it yet.
    pub pending: Vec<String>,
}

/// The service a URL purge applies to, from the URLs' hosts.
fn service_for(req: &PurgeRequest, services: &[Service]) -> Result<String, ApiError> {
    let mut found: Option<&str> = None;
    for (i, t) in req.targets.iter().enumerate() {
        let field = format!("targets[{i}]");
        let (host, _) =
            split_url(t).ok_or_else(|| ApiError::invalid(field.clone(), "not a URL"))?;
        let service = services
            .iter()
            .find(|s| s.hostnames.iter().any(|h| host_matches(h, &host)))
            .ok_or_else(|| {
                ApiError::invalid(field.clone(), format!("no service serves `{host}`"))
            })?;
        match found {
            Some(f) if f != service.id => {
                return Err(ApiError::invalid(
                    field,
                    "all URLs of one purge must belong to one service; send one purge per service",
                ));
            }
            _ => found = Some(&service.id),
        }
    }
    found
        .map(str::to_owned)
        .ok_or_else(|| ApiError::invalid("targets", "give at least one URL"))
}

/// Refuses a tenant's purge once its `purges_per_minute` quota is used up (429).
async fn check_purge_rate(conn: &mut AnyConnection, tenant: &str) -> Result<(), ApiError> {
    let quota = get_doc::<Tenant>(&mut *conn, tenant)
        .await?
        .map(|t| t.quotas.purges_per_minute)
        .unwrap_or_default();
    let since = crate::time::rfc3339_from_ms(crate::time::now_ms() - 60_000);
    let issued = tenant_purges_since(conn, tenant, &since).await?;
    if issued >= i64::from(quota) {
        return Err(ApiError::RateLimited {
            message: format!(
                "tenant `{tenant}` issued {issued} purges in the last minute; its quota is {quota} per minute (the operator sets `quotas.purges_per_minute`): retry later, or purge by prefix or tag to cover more at once"
            ),
            retry_after_s: 60,
        });
    }
    Ok(())
}

async fn status(conn: &mut AnyConnection, purge: Purge) -> Result<PurgeStatus, StoreError> {
    let statuses = node_statuses(&mut *conn).await?;
    let mut applied = Vec::new();
    let mut pending = Vec::new();
    for node in list_docs::<Node>(conn).await? {
        if !node
            .roles
            .iter()
            .any(|r| matches!(r, NodeRole::Edge | NodeRole::Parent))
        {
            continue;
        }
        let acked = statuses
            .get(&node.id)
            .and_then(|s: &NodeStatus| s.applied.get("edge").copied())
            .unwrap_or(0);
        if acked >= purge.version {
            applied.push(node.id);
        } else {
            pending.push(node.id);
        }
    }
    Ok(PurgeStatus {
        purge,
        applied,
        pending,
    })
}

async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<PurgeRequest>,
) -> Result<(StatusCode, Json<PurgeStatus>), ApiError> {
    req.validate()?;
    let mut w = state.store.write(true).await?;
    let service_id = match (&req.service, req.kind) {
        (Some(s), _) => s.clone(),
        (None, PurgeKind::Tag) => {
            return Err(ApiError::invalid(
                "service",
                "a tag purge needs the service",
            ));
        }
        (None, _) => service_for(&req, &list_docs::<Service>(&mut w.tx).await?)?,
    };
    let service = get_doc::<Service>(&mut w.tx, &service_id)
        .await?
        .filter(|s| match &caller {
            Caller::Operator => true,
            Caller::Tenant(t) => &s.tenant == t,
        })
        .ok_or_else(|| ApiError::not_found("service", &service_id))?;
    if let Caller::Tenant(t) = &caller {
        check_purge_rate(&mut w.tx, t).await?;
    }
    if req.kind != PurgeKind::Tag {
        for (i, t) in req.targets.iter().enumerate() {
            let host = split_url(t).map(|(h, _)| h).unwrap_or_default();
            if !service.hostnames.iter().any(|h| host_matches(h, &host)) {
                return Err(ApiError::invalid(
                    format!("targets[{i}]"),
                    format!("`{host}` is not a hostname of service `{}`", service.id),
                ));
            }
        }
    }
    let version = w.version.unwrap_or_default();
    let kind = match req.kind {
        PurgeKind::Url => "url",
        PurgeKind::Prefix => "prefix",
        PurgeKind::Tag => "tag",
    };
    let mode = match req.mode {
        PurgeMode::Hard => "hard",
        PurgeMode::Soft => "soft",
    };
    let targets =
        serde_json::to_string(&req.targets).map_err(|e| ApiError::Internal(e.to_string()))?;
    let now = crate::time::now_rfc3339();
    let id = insert_purge(
        &mut w.tx,
        NewPurge {
            service: &service.id,
            kind,
            mode,
            targets: &targets,
            version,
            created_at: &now,
        },
    )
    .await?;
    let purge = Purge {
        id,
        service: service.id,
        kind: req.kind,
        targets: req.targets,
        mode: req.mode,
        version,
        created_at: now,
    };
    let st = status(&mut w.tx, purge).await?;
    state.published(w.commit().await?);
    tracing::info!(id = st.purge.id, service = %st.purge.service, kind, mode, "purge issued");
    Ok((StatusCode::CREATED, Json(st)))
}

async fn list(State(state): State<AppState>, caller: Caller) -> Result<Json<Vec<Purge>>, ApiError> {
    let mut conn = state.store.pool().acquire().await?;
    // A tenant's own most recent, picked by the database (not the platform's most recent
    // with others' left out).
    let purges = match &caller {
        Caller::Operator => recent_purges(&mut conn, 100).await?,
        Caller::Tenant(t) => recent_tenant_purges(&mut conn, t, 100).await?,
    };
    Ok(Json(purges))
}

async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<u64>,
) -> Result<Json<PurgeStatus>, ApiError> {
    let mut conn = state.store.pool().acquire().await?;
    let purge = crate::store::purges::purge(&mut conn, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("purge {id} does not exist")))?;
    if let Caller::Tenant(t) = &caller {
        let owner = get_doc::<Service>(&mut conn, &purge.service).await?;
        if owner.is_none_or(|s| &s.tenant != t) {
            return Err(ApiError::NotFound(format!("purge {id} does not exist")));
        }
    }
    Ok(Json(status(&mut conn, purge).await?))
}
