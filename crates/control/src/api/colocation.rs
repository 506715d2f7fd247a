//! Colocation and the operator's books: cross-connects' traffic samples from collectors
//! (`POST /v1/cabinets/{id}/cross-connects/{xc}/samples`), the costs per site
//! (`/v1/costs`), incidents (`/v1/incidents`: a site's uplinks down, which colocation
//! tenants there are credited for) and the segment report (`/v1/reports/segments`). All
//! the operator's. (Cabinets themselves are a resource: `crate::resource`.)

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use lingjing_billing::{CostBasis, Month};
use lingjing_model::Site;
use rust_decimal::Decimal;
use serde::Deserialize;
use utoipa::ToSchema;

use super::{ApiJson, ApiQuery, AppState};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::store::colocation::{self, CrossConnectSample, Incident, SiteCost};
use crate::store::get_doc;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/costs", get(list_costs))
        .route("/v1/costs/{id}", put(put_cost).delete(delete_cost))
        .route("/v1/incidents", get(list_incidents).post(add_incident))
        .route("/v1/incidents/{id}", axum::routing::delete(delete_incident))
        .route("/v1/reports/segments", get(segment_report))
        .route(
            "/v1/cabinets/{id}/cross-connects/{xc}/samples",
            post(put_colo_samples),
        )
}

/// Most samples one request may carry (a month and a half of one cross-connect).
pub const MAX_COLO_SAMPLES: usize = 20_000;

/// A collector's measurements of one cross-connect.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ColoSamples {
    /// At most 20,000, each on a 5-minute boundary.
    pub samples: Vec<CrossConnectSample>,
}

/// Takes a collector's 5-minute samples of a cross-connect (the tenant holding it is
/// billed its committed bandwidth and the 95th percentile above it).
async fn put_colo_samples(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, xc)): Path<(String, String)>,
    ApiJson(body): ApiJson<ColoSamples>,
) -> Result<StatusCode, ApiError> {
    caller.require_operator()?;
    if body.samples.len() > MAX_COLO_SAMPLES {
        return Err(ApiError::invalid(
            "samples",
            format!("at most {MAX_COLO_SAMPLES} per request"),
        ));
    }
    for (i, s) in body.samples.iter().enumerate() {
        if s.start_ms < 0 || s.start_ms % 300_000 != 0 {
            return Err(ApiError::invalid(
                format!("samples[{i}].start_ms"),
                "the start of a 5-minute interval (a multiple of 300000 ms)",
            ));
        }
        if i64::try_from(s.bytes_in).is_err() || i64::try_from(s.bytes_out).is_err() {
            return Err(ApiError::invalid(
                format!("samples[{i}]"),
                "byte counts below 2^63",
            ));
        }
    }
    let mut w = state.store.write(false).await?;
    let cabinet = get_doc::<lingjing_model::colocation::Cabinet>(&mut w.tx, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("cabinet", &id))?;
    let connect = cabinet
        .cross_connects
        .iter()
        .find(|c| c.id == xc)
        .ok_or_else(|| ApiError::not_found("cross-connect", &xc))?;
    colocation::put_colo_samples(&mut w.tx, &id, &xc, &connect.tenant, &body.samples).await?;
    w.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_costs(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<SiteCost>>, ApiError> {
    caller.require_operator()?;
    let mut conn = state.store.pool().acquire().await?;
    Ok(Json(colocation::costs(&mut conn).await?))
}

/// A price or amount: at least 0, below 10^12, at most 6 decimal places.
fn check_amount(field: &str, d: Decimal) -> Result<(), ApiError> {
    if d.is_sign_negative() || d >= Decimal::from(1_000_000_000_000i64) || d.normalize().scale() > 6
    {
        return Err(ApiError::invalid(
            field,
            "at least 0, below 10^12, at most 6 decimal places",
        ));
    }
    Ok(())
}

/// Creates or replaces a cost of a site.
async fn put_cost(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(cost): ApiJson<SiteCost>,
) -> Result<Json<SiteCost>, ApiError> {
    caller.require_operator()?;
    if cost.id != id {
        return Err(ApiError::invalid(
            "id",
            format!("the body's id `{}` is not the path's `{id}`", cost.id),
        ));
    }
    lingjing_model::ident::check_id("id", &cost.id)?;
    if let Some(line) = &cost.line {
        lingjing_model::ident::check_id("line", line)?;
    }
    lingjing_model::validate::check_name("description", &cost.description)?;
    match &cost.basis {
        CostBasis::Flat { monthly } => check_amount("basis.monthly", *monthly)?,
        CostBasis::Percentile95 {
            price_per_mbps,
            commit_mbps,
            ..
        } => {
            check_amount("basis.price_per_mbps", *price_per_mbps)?;
            check_amount("basis.commit_mbps", *commit_mbps)?;
        }
    }
    let mut w = state.store.write(false).await?;
    get_doc::<Site>(&mut w.tx, &cost.site)
        .await?
        .ok_or_else(|| ApiError::invalid("site", format!("no site `{}`", cost.site)))?;
    colocation::put_cost(&mut w.tx, &cost).await?;
    w.commit().await?;
    Ok(Json(cost))
}

async fn delete_cost(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    delete_record(&state, &caller, colocation::Record::Cost, &id).await
}

/// Deletes `what` `id` (operator only): 404 when there is none.
async fn delete_record(
    state: &AppState,
    caller: &Caller,
    what: colocation::Record,
    id: &str,
) -> Result<StatusCode, ApiError> {
    caller.require_operator()?;
    let mut w = state.store.write(false).await?;
    if !colocation::delete(&mut w.tx, what, id).await? {
        return Err(ApiError::not_found(what.kind(), id));
    }
    w.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
pub struct Window {
    from: Option<String>,
    to: Option<String>,
}

/// Incidents overlapping a window (default: the last 31 days).
async fn list_incidents(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(window): ApiQuery<Window>,
) -> Result<Json<Vec<Incident>>, ApiError> {
    caller.require_operator()?;
    let ms = |field: &str, v: &Option<String>| -> Result<Option<i64>, ApiError> {
        v.as_deref()
            .map(|t| {
                crate::time::parse_rfc3339_ms(t)
                    .ok_or_else(|| ApiError::BadRequest(format!("`{field}` must be RFC 3339")))
            })
            .transpose()
    };
    let to = ms("to", &window.to)?.unwrap_or_else(crate::time::now_ms);
    let from = ms("from", &window.from)?.unwrap_or(to - 31 * 86_400_000);
    let mut conn = state.store.pool().acquire().await?;
    Ok(Json(
        colocation::incidents(&mut conn, from, to)
            .await?
            .into_iter()
            .map(|(i, _, _)| i)
            .collect(),
    ))
}

/// Records an outage of a site's uplinks: the colocation tenants there lose uptime.
async fn add_incident(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(incident): ApiJson<Incident>,
) -> Result<(StatusCode, Json<Incident>), ApiError> {
    caller.require_operator()?;
    lingjing_model::ident::check_id("id", &incident.id)?;
    lingjing_model::validate::check_name("what", &incident.what)?;
    let start = crate::time::parse_rfc3339_ms(&incident.start)
        .ok_or_else(|| ApiError::invalid("start", "RFC 3339, e.g. 2026-11-14T10:00:00Z"))?;
    let end = crate::time::parse_rfc3339_ms(&incident.end)
        .ok_or_else(|| ApiError::invalid("end", "RFC 3339, e.g. 2026-11-14T12:00:00Z"))?;
    if end <= start || end - start > 366 * 86_400_000 {
        return Err(ApiError::invalid(
            "end",
            "after `start`, at most a year later",
        ));
    }
    let mut w = state.store.write(false).await?;
    get_doc::<Site>(&mut w.tx, &incident.site)
        .await?
        .ok_or_else(|| ApiError::invalid("site", format!("no site `{}`", incident.site)))?;
    if !colocation::put_incident(&mut w.tx, &incident, start, end).await? {
        return Err(ApiError::conflict(
            "already_exists",
            format!("incident `{}` is recorded already", incident.id),
        ));
    }
    w.commit().await?;
    Ok((StatusCode::CREATED, Json(incident)))
}

async fn delete_incident(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    delete_record(&state, &caller, colocation::Record::Incident, &id).await
}

#[derive(Debug, Deserialize)]
pub struct MonthParam {
    /// YYYY-MM (default: the current month).
    month: Option<String>,
}

/// Revenue, cost and gross margin per segment and per site for a month.
async fn segment_report(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(p): ApiQuery<MonthParam>,
) -> Result<Json<lingjing_billing::SegmentReport>, ApiError> {
    caller.require_operator()?;
    let month = match &p.month {
        Some(m) => Month::parse(m).map_err(|e| ApiError::BadRequest(format!("`month`: {e}")))?,
        None => Month::of_ms(crate::time::now_ms()),
    };
    let mut conn = state.store.pool().acquire().await?;
    Ok(Json(crate::billing::segments(&mut conn, month).await?))
}
