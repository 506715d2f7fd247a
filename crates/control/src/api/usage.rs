//! Metering (`GET /v1/usage`): the edges' 5-minute samples summed per service, node,
//! site or tenant in steps of 5 minutes, an hour, a day or a month; a tenant reads its
//! own only. Usage per service: requests and bytes sent, per minute, as the edge nodes
//! reported them (the live view); and per bucket: requests, bytes in and out, and what each holds (stored bytes, raw disk
//! and parity), as the S3 gateways reported them.

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use lingjing_model::Service;
use lingjing_model::metering::{
    MAX_USAGE_POINTS, UsageCounts, UsageGroup, UsagePoint, UsageReport, UsageSeries, UsageStep,
};
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
        .route("/v1/usage", get(metered))
}

#[derive(Debug, Deserialize)]
pub struct MeteredParams {
    /// Start (RFC 3339); default 24 hours before `to`.
    from: Option<String>,
    /// End (RFC 3339, exclusive); default now.
    to: Option<String>,
    /// `service` (default), `node`, `site` or `tenant`.
    group: Option<String>,
    /// `5m`, `1h` (default), `1d` or `month`.
    step: Option<String>,
    tenant: Option<String>,
    service: Option<String>,
    node: Option<String>,
    site: Option<String>,
    line: Option<String>,
}

/// Metered traffic in a range, grouped and stepped.
async fn metered(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(params): ApiQuery<MeteredParams>,
) -> Result<Json<UsageReport>, ApiError> {
    let tenant = match (&caller, params.tenant) {
        (Caller::Operator, t) => t,
        (Caller::Tenant(me), Some(t)) if &t != me => {
            return Err(ApiError::Forbidden(format!(
                "this API key belongs to tenant `{me}`: it reads only its own usage"
            )));
        }
        (Caller::Tenant(me), _) => Some(me.clone()),
    };
    let group: UsageGroup = params
        .group
        .as_deref()
        .unwrap_or("service")
        .parse()
        .map_err(ApiError::BadRequest)?;
    let step: UsageStep = params
        .step
        .as_deref()
        .unwrap_or("1h")
        .parse()
        .map_err(ApiError::BadRequest)?;
    let to = parse("to", &params.to)?.unwrap_or_else(now_ms);
    let from = parse("from", &params.from)?.unwrap_or(to - 86_400_000);
    if from > to {
        return Err(ApiError::BadRequest("`from` must not be after `to`".into()));
    }
    let steps = usize::try_from((to - from) / step.sql_ms() + 1).unwrap_or(usize::MAX);
    if steps > MAX_USAGE_POINTS {
        return Err(ApiError::BadRequest(format!(
            "{steps} steps in the range; at most {MAX_USAGE_POINTS}: take a longer step or a shorter range"
        )));
    }
    let filter = crate::store::meter::Filter {
        tenant,
        service: params.service,
        node: params.node,
        site: params.site,
        line: params.line,
    };
    let mut conn = state.store.pool().acquire().await?;
    let rows = crate::store::meter::series(
        &mut conn,
        group,
        step.sql_ms(),
        from,
        to,
        &filter,
        MAX_USAGE_POINTS + 1,
    )
    .await?;
    let points: usize = rows.values().map(|s| s.len()).sum();
    if points > MAX_USAGE_POINTS {
        return Err(ApiError::BadRequest(format!(
            "{points} points in the answer; at most {MAX_USAGE_POINTS}: take a longer step, a shorter range or a filter"
        )));
    }
    let mut total = UsageCounts::default();
    let series = rows
        .into_iter()
        .map(|(key, steps)| {
            let mut sum = UsageCounts::default();
            let mut points: Vec<UsagePoint> = Vec::new();
            for (start, counts) in steps {
                sum.add(&counts);
                let start = match step {
                    UsageStep::Month => month_start(start),
                    _ => crate::time::rfc3339_from_ms(start),
                };
                match points.last_mut() {
                    Some(last) if last.start == start => last.counts.add(&counts),
                    _ => points.push(UsagePoint { start, counts }),
                }
            }
            total.add(&sum);
            UsageSeries {
                key,
                points,
                total: sum,
            }
        })
        .collect();
    Ok(Json(UsageReport {
        from: crate::time::rfc3339_from_ms(from),
        to: crate::time::rfc3339_from_ms(to),
        group,
        step,
        series,
        total,
    }))
}

/// The start of the UTC month holding `ms`, as RFC 3339.
fn month_start(ms: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000)) {
        Ok(t) => match time::Date::from_calendar_date(t.year(), t.month(), 1) {
            Ok(d) => crate::time::rfc3339_from_ms(
                d.with_time(time::Time::MIDNIGHT)
                    .assume_utc()
                    .unix_timestamp()
                    * 1000,
            ),
            Err(_) => crate::time::rfc3339_from_ms(ms),
        },
        Err(_) => crate::time::rfc3339_from_ms(ms),
    }
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
