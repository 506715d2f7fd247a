//! Traffic defence endpoints: rules (`/v1/defence/rules`: add, list, show, remove; a
//! tenant's only for its own services, a rule for every service only by the operator)
//! and attack events (`/v1/defence/events`). Adding or removing a rule bumps the version,
//! so every edge has it with its next snapshot.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use lingjing_model::defence::{DefenceEvent, DefenceRule, LearnedThresholds, RuleOrigin, RuleSpec};
use lingjing_model::{Service, Validate};
use serde::Deserialize;
use utoipa::IntoParams;

use super::{ApiJson, ApiQuery, AppState};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::store::defence as store;
use crate::store::get_doc;

/// Rules in force a tenant may hold at once.
pub const MAX_TENANT_RULES: i64 = 200;
/// Rules in force the platform holds at once (all tenants', the operator's, detected).
pub const MAX_RULES: i64 = 10_000;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/defence/rules", get(list_rules).post(add_rule))
        .route("/v1/defence/rules/{id}", get(show_rule).delete(remove_rule))
        .route("/v1/defence/events", get(list_events))
        .route("/v1/defence/learned", get(list_learned).post(learn_now))
}

/// Whether `caller` may see and change `rule`.
fn owns(caller: &Caller, rule: &DefenceRule) -> bool {
    match caller {
        Caller::Operator => true,
        Caller::Tenant(t) => rule.tenant.as_deref() == Some(t.as_str()),
    }
}

pub async fn add_rule(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(spec): ApiJson<RuleSpec>,
) -> Result<(StatusCode, Json<DefenceRule>), ApiError> {
    spec.validate()?;
    let now = crate::time::now_ms();
    let mut w = state.store.write(true).await?;
    let tenant = match &spec.service {
        Some(id) => {
            let service = get_doc::<Service>(&mut w.tx, id)
                .await?
                .filter(|s| match &caller {
                    Caller::Operator => true,
                    Caller::Tenant(t) => &s.tenant == t,
                })
                .ok_or_else(|| ApiError::not_found("service", id))?;
            Some(service.tenant)
        }
        None => {
            if let Caller::Tenant(_) = caller {
                return Err(ApiError::invalid(
                    "service",
                    "name one of your services: only the operator adds rules for every service",
                ));
            }
            None
        }
    };
    store::sweep_rules(&mut w.tx, now).await?;
    if let Caller::Tenant(t) = &caller
        && store::count_rules(&mut w.tx, now, Some(t)).await? >= MAX_TENANT_RULES
    {
        return Err(ApiError::invalid(
            "service",
            format!(
                "a tenant holds at most {MAX_TENANT_RULES} rules in force: remove some, or give rules a ttl_seconds"
            ),
        ));
    }
    if store::count_rules(&mut w.tx, now, None).await? >= MAX_RULES {
        return Err(ApiError::invalid(
            "service",
            format!("the platform holds at most {MAX_RULES} rules in force: remove some first"),
        ));
    }
    let id = format!("rule-{}", &hex::encode(rand_bytes())[..12]);
    let rule = DefenceRule {
        id,
        expires_ms: spec.ttl_seconds.map(|t| now as u64 + t * 1000),
        spec,
        tenant,
        origin: RuleOrigin::Manual,
        created_ms: now as u64,
    };
    store::put_rule(&mut w.tx, &rule, None).await?;
    state.published(w.commit().await?);
    tracing::info!(id = %rule.id, action = ?rule.spec.action, service = ?rule.spec.service, "defence rule added");
    Ok((StatusCode::CREATED, Json(rule)))
}

fn rand_bytes() -> [u8; 16] {
    rand::random()
}

pub async fn list_rules(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<DefenceRule>>, ApiError> {
    let mut conn = state.store.pool().acquire().await?;
    let tenant = match &caller {
        Caller::Operator => None,
        Caller::Tenant(t) => Some(t.as_str()),
    };
    let rules = store::live_rules(&mut conn, crate::time::now_ms(), tenant).await?;
    Ok(Json(rules))
}

pub async fn show_rule(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<DefenceRule>, ApiError> {
    let mut conn = state.store.pool().acquire().await?;
    store::rule(&mut conn, &id)
        .await?
        .filter(|r| owns(&caller, r))
        .map(Json)
        .ok_or_else(|| ApiError::not_found("rule", &id))
}

pub async fn remove_rule(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let mut w = state.store.write(true).await?;
    store::rule(&mut w.tx, &id)
        .await?
        .filter(|r| owns(&caller, r))
        .ok_or_else(|| ApiError::not_found("rule", &id))?;
    store::delete_rule(&mut w.tx, &id).await?;
    state.published(w.commit().await?);
    tracing::info!(id, "defence rule removed");
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct EventParams {
    /// Only this service's events.
    pub service: Option<String>,
    /// At most this many, newest first (default 100, at most 1000).
    pub limit: Option<u32>,
}

pub async fn list_events(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(params): ApiQuery<EventParams>,
) -> Result<Json<Vec<DefenceEvent>>, ApiError> {
    let limit = params.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid("limit", "1 to 1000"));
    }
    let mut conn = state.store.pool().acquire().await?;
    let tenant = match &caller {
        Caller::Operator => None,
        Caller::Tenant(t) => Some(t.as_str()),
    };
    let rows = store::events(
        &mut conn,
        tenant,
        params.service.as_deref(),
        i64::from(limit),
    )
    .await?;
    let events = rows
        .iter()
        .map(crate::defence::view)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Json(events))
}

pub async fn list_learned(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<LearnedThresholds>>, ApiError> {
    let mut conn = state.store.pool().acquire().await?;
    let mut learned = store::learned(&mut conn).await?;
    if let Caller::Tenant(t) = &caller {
        let mine: Vec<String> = crate::store::list_docs::<Service>(&mut conn)
            .await?
            .into_iter()
            .filter(|s| &s.tenant == t)
            .map(|s| s.id)
            .collect();
        learned.retain(|l| mine.contains(&l.service));
    }
    Ok(Json(learned))
}

/// Runs a learning pass now (operator only); the thresholds in force afterwards.
pub async fn learn_now(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<LearnedThresholds>>, ApiError> {
    if !matches!(caller, Caller::Operator) {
        return Err(ApiError::Forbidden(
            "only the operator starts a learning pass (tenants read GET /v1/defence/learned)"
                .into(),
        ));
    }
    Ok(Json(crate::defence::learn_pass(&state).await?))
}
