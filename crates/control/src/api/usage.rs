//! Usage per service: requests and bytes sent, per minute, as the edge nodes reported them;
//! and per bucket: requests, bytes in and out, and what each holds (stored bytes, raw disk
//! and parity), as the S3 gateways reported them.

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use lingjing_model::Service;
use lingjing_model::snapshot::{BucketUsage, ServiceUsage};
use serde::Deserialize;

use super::{ApiQuery, AppState};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::store::{get_doc, service_usage};
use crate::time::{now_ms, parse_rfc3339_ms};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/services/{id}/usage", get(usage))
        .route("/v1/storage/usage", get(bucket_usage))
}

#[derive(Debug, Deserialize)]
pub struct BucketUsageParams {
    /// Start (RFC 3339); default one hour before `to`.
    from: Option<String>,
    /// End (RFC 3339, exclusive); default now.
    to: Option<String>,
    /// Only this tenant's buckets (a tenant's key sees only its own anyway).
    tenant: Option<String>,
}

/// Every bucket's usage in the window: the operator's, or a tenant's own.
async fn bucket_usage(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(params): ApiQuery<BucketUsageParams>,
) -> Result<Json<Vec<BucketUsage>>, ApiError> {
    let tenant = match (&caller, params.tenant) {
        (Caller::Operator, t) => t,
        (Caller::Tenant(me), Some(t)) if &t != me => {
            return Err(ApiError::Forbidden(format!(
                "this API key belongs to tenant `{me}`: it reads only its own buckets' usage"
            )));
        }
        (Caller::Tenant(me), _) => Some(me.clone()),
    };
    let to = parse("to", &params.to)?.unwrap_or_else(now_ms);
    let from = parse("from", &params.from)?.unwrap_or(to - 3_600_000);
    if from > to {
        return Err(ApiError::BadRequest("`from` must not be after `to`".into()));
    }
    let mut conn = state.store.pool().acquire().await?;
    Ok(Json(
        crate::store::bucket_usage::usage(&mut conn, tenant.as_deref(), from, to).await?,
    ))
}

#[derive(Debug, Deserialize)]
pub struct UsageParams {
    /// Start (RFC 3339); default one hour before `to`.
    from: Option<String>,
    /// End (RFC 3339, exclusive); default now.
    to: Option<String>,
}

fn parse(field: &str, v: &Option<String>) -> Result<Option<i64>, ApiError> {
    v.as_deref()
        .map(|s| {
            parse_rfc3339_ms(s).ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "`{field}` must be RFC 3339, e.g. 2026-01-02T03:04:05Z"
                ))
            })
        })
        .transpose()
}

async fn usage(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(params): ApiQuery<UsageParams>,
) -> Result<Json<ServiceUsage>, ApiError> {
    let mut conn = state.store.pool().acquire().await?;
    get_doc::<Service>(&mut conn, &id)
        .await?
        .filter(|s| match &caller {
            Caller::Operator => true,
            Caller::Tenant(t) => &s.tenant == t,
        })
        .ok_or_else(|| ApiError::not_found("service", &id))?;
    let to = parse("to", &params.to)?.unwrap_or_else(now_ms);
    let from = parse("from", &params.from)?.unwrap_or(to - 3_600_000);
    if from > to {
        return Err(ApiError::BadRequest("`from` must not be after `to`".into()));
    }
    let minutes: Vec<_> = service_usage(&mut conn, &id, from, to)
        .await?
        .into_iter()
        .map(|(_, m)| m)
        .collect();
    Ok(Json(ServiceUsage {
        service: id,
        requests: minutes.iter().map(|m| m.requests).sum(),
        bytes_out: minutes.iter().map(|m| m.bytes_out).sum(),
        minutes,
    }))
}
