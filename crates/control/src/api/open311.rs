//! Open311 GeoReport v2 (<https://wiki.open311.org/GeoReport_v2/>) for cities' systems:
//! `GET /open311/v2/services.{json|xml}` (the defect classes), `GET
//! /open311/v2/requests.{json|xml}` and `/open311/v2/requests/{id}.{json|xml}` (work
//! orders), and `POST /open311/v2/requests.{json|xml}` (a citizen's report, which enters
//! the same defect flow as a model's detection). The jurisdiction is the tenant: its API
//! key (`api_key`, or `Authorization: Bearer`) names it; the operator names it with
//! `jurisdiction_id`. Errors are the spec's error lists, in the format asked for.

use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Router, extract::FromRequestParts};
use lingjing_inspect::classes;
use lingjing_inspect::open311::{self, ServiceRequest};

use super::AppState;
use crate::auth::{Caller, Principal};
use crate::error::ApiError;
use crate::inspection::{self, Sighting};
use crate::store::inspect::{self as db, Defect, WorkOrder};
use crate::time::{now_ms, parse_rfc3339_ms};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/open311/v2/{file}", get(get_file).post(post_file))
        .route("/open311/v2/requests/{file}", get(get_one))
}

#[derive(Clone, Copy, PartialEq)]
enum Format {
    Json,
    Xml,
}

/// `name.json` or `name.xml`.
fn split(file: &str) -> Option<(&str, Format)> {
    let (name, ext) = file.rsplit_once('.')?;
    match ext {
        "json" => Some((name, Format::Json)),
        "xml" => Some((name, Format::Xml)),
        _ => None,
    }
}

fn errors(format: Format, status: StatusCode, description: impl Into<String>) -> Response {
    let list = [(status.as_u16(), description.into())];
    match format {
        Format::Json => (status, axum::Json(open311::errors_json(&list))).into_response(),
        Format::Xml => xml(status, open311::errors_xml(&list)),
    }
}

fn xml(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
        body,
    )
        .into_response()
}

fn from_api(format: Format, e: ApiError) -> Response {
    errors(format, e.status(), e.to_string())
}

fn not_found_format() -> Response {
    errors(
        Format::Json,
        StatusCode::NOT_FOUND,
        "no such Open311 resource: use services.json, requests.json or requests/{id}.json (or .xml)",
    )
}

/// The query string's pairs (and the form body's, for a POST).
fn pairs(raw: &[u8]) -> Vec<(String, String)> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(raw).unwrap_or_default()
}

fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

/// The jurisdiction (tenant) a request speaks for.
async fn jurisdiction(
    state: &AppState,
    headers: &HeaderMap,
    pairs: &[(String, String)],
) -> Result<String, ApiError> {
    let mut parts = Request::builder()
        .body(())
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .into_parts()
        .0;
    parts.headers = headers.clone();
    if !parts.headers.contains_key(header::AUTHORIZATION)
        && let Some(key) = param(pairs, "api_key")
    {
        let value = format!("Bearer {key}")
            .parse()
            .map_err(|_| ApiError::Unauthorized("`api_key` is not a valid key".into()))?;
        parts.headers.insert(header::AUTHORIZATION, value);
    }
    let caller = match Principal::from_request_parts(&mut parts, state).await {
        Ok(Principal::Operator) => Caller::Operator,
        Ok(Principal::Tenant(t)) => Caller::Tenant(t),
        Ok(Principal::Node(_)) => {
            return Err(ApiError::Forbidden(
                "a node credential does not speak for a jurisdiction: use the city's API key"
                    .into(),
            ));
        }
        Err(ApiError::Unauthorized(_)) => {
            return Err(ApiError::Unauthorized(
                "Open311 here needs the jurisdiction's API key: `api_key=...` or `Authorization: Bearer ...`".into(),
            ));
        }
        Err(e) => return Err(e),
    };
    let asked = param(pairs, "jurisdiction_id").map(str::to_owned);
    super::inspect::scope(&caller, asked)?.ok_or_else(|| {
        ApiError::BadRequest("the operator names the city with `jurisdiction_id`".into())
    })
}

async fn get_file(
    State(state): State<AppState>,
    Path(file): Path<String>,
    headers: HeaderMap,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Response {
    let Some((name, format)) = split(&file) else {
        return not_found_format();
    };
    match name {
        "services" => {
            let items = open311::services();
            match format {
                Format::Json => axum::Json(items).into_response(),
                Format::Xml => xml(StatusCode::OK, open311::services_xml(&items)),
            }
        }
        "requests" => {
            let q = pairs(query.unwrap_or_default().as_bytes());
            match list(&state, &headers, &q).await {
                Ok(items) => render(format, &items),
                Err(e) => from_api(format, e),
            }
        }
        _ => not_found_format(),
    }
}

fn render(format: Format, items: &[ServiceRequest]) -> Response {
    match format {
        Format::Json => axum::Json(items).into_response(),
        Format::Xml => xml(StatusCode::OK, open311::requests_xml(items)),
    }
}

/// Most requests one answer lists (the spec's default).
const MAX_REQUESTS: i64 = 1000;

async fn list(
    state: &AppState,
    headers: &HeaderMap,
    q: &[(String, String)],
) -> Result<Vec<ServiceRequest>, ApiError> {
    let tenant = jurisdiction(state, headers, q).await?;
    let time = |name: &str| -> Result<Option<i64>, ApiError> {
        param(q, name)
            .map(|v| {
                parse_rfc3339_ms(v).ok_or_else(|| {
                    ApiError::BadRequest(format!(
                        "`{name}` must be a w3c date and time, e.g. 2026-12-01T00:00:00Z"
                    ))
                })
            })
            .transpose()
    };
    let now = now_ms();
    let end = time("end_date")?.unwrap_or(now);
    let start = time("start_date")?.unwrap_or(end - 90 * 86_400_000);
    let ids: Option<Vec<String>> = param(q, "service_request_id").map(|v| {
        v.split(',')
            .take(MAX_REQUESTS as usize)
            .map(str::to_owned)
            .collect()
    });
    let codes: Option<Vec<String>> = param(q, "service_code").map(|v| {
        v.split(',')
            .take(100)
            .map(classes::canonical_code)
            .collect()
    });
    let open = match param(q, "status") {
        None => None,
        Some("open") => Some(true),
        Some("closed") => Some(false),
        Some(_) => {
            return Err(ApiError::BadRequest(
                "`status` is `open` or `closed`".into(),
            ));
        }
    };
    let mut conn = state
        .store
        .pool()
        .acquire()
        .await
        .map_err(crate::error::StoreError::from)?;
    let found = db::open311_orders(
        &mut conn,
        &db::Open311Filter {
            tenant: tenant.clone(),
            ids,
            start_ms: start,
            end_ms: end,
            open,
            classes: codes,
            limit: MAX_REQUESTS,
        },
    )
    .await?;
    let ids: Vec<String> = found.iter().map(|(o, _)| o.id.clone()).collect();
    let last = db::last_events(&mut conn, &ids).await?;
    let crews = crew_names(&mut conn, &tenant).await?;
    Ok(found
        .iter()
        .map(|(o, d)| request_of(o, d, last.get(&o.id), &crews))
        .collect())
}

/// The names of a tenant's crews, by id.
async fn crew_names(
    conn: &mut sqlx::AnyConnection,
    tenant: &str,
) -> Result<std::collections::HashMap<String, String>, ApiError> {
    Ok(crate::inspection::crews_of(conn, tenant)
        .await?
        .into_iter()
        .map(|c| (c.id, c.name))
        .collect())
}

fn request_of(
    o: &WorkOrder,
    d: &Defect,
    last: Option<&db::OrderEvent>,
    crews: &std::collections::HashMap<String, String>,
) -> ServiceRequest {
    let status_notes = last.map(|e| match &e.detail {
        Some(detail) => format!("{}: {detail}", e.to),
        None => e.to.clone(),
    });
    let description = d.description.clone().or_else(|| {
        Some(format!(
            "{} seen {} time{} ({})",
            classes::class_name(&d.class),
            d.sightings,
            if d.sightings == 1 { "" } else { "s" },
            d.source
        ))
    });
    ServiceRequest {
        service_request_id: o.id.clone(),
        status: o.state.open311_status().to_owned(),
        status_notes,
        service_name: classes::class_name(&d.class),
        service_code: d.class.clone(),
        description,
        agency_responsible: o.crew.as_ref().and_then(|c| crews.get(c).cloned()),
        service_notice: None,
        requested_datetime: open311::format_time_ms(o.opened_ms),
        updated_datetime: open311::format_time_ms(o.updated_ms),
        expected_datetime: o
            .due_ms
            .filter(|_| !o.state.is_terminal())
            .map(open311::format_time_ms),
        address: None,
        address_id: None,
        zipcode: None,
        lat: d.lat,
        long: d.lon,
        media_url: None,
    }
}

async fn get_one(
    State(state): State<AppState>,
    Path(file): Path<String>,
    headers: HeaderMap,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Response {
    let Some((id, format)) = split(&file) else {
        return not_found_format();
    };
    let q = pairs(query.unwrap_or_default().as_bytes());
    let result = async {
        let tenant = jurisdiction(&state, &headers, &q).await?;
        let mut conn = state
            .store
            .pool()
            .acquire()
            .await
            .map_err(crate::error::StoreError::from)?;
        let order = db::order(&mut conn, id)
            .await?
            .filter(|o| o.tenant == tenant)
            .ok_or_else(|| ApiError::NotFound(format!("service request `{id}` does not exist")))?;
        let defect = db::defect(&mut conn, &order.defect)
            .await?
            .ok_or_else(|| ApiError::Internal(format!("work order {id} names no defect")))?;
        let last = db::last_events(&mut conn, std::slice::from_ref(&order.id)).await?;
        let crews = crew_names(&mut conn, &tenant).await?;
        Ok::<_, ApiError>(vec![request_of(
            &order,
            &defect,
            last.get(&order.id),
            &crews,
        )])
    }
    .await;
    match result {
        Ok(items) => render(format, &items),
        Err(e) => from_api(format, e),
    }
}

async fn post_file(
    State(state): State<AppState>,
    Path(file): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(("requests", format)) = split(&file) else {
        return not_found_format();
    };
    let form = pairs(&body);
    match create(&state, &headers, &form).await {
        Ok(id) => match format {
            Format::Json => axum::Json(open311::created_json(&id, None)).into_response(),
            Format::Xml => xml(StatusCode::OK, open311::created_xml(&id, None)),
        },
        Err(e) => from_api(format, e),
    }
}

/// A citizen's report: a sighting of its class at its place (merged with a defect
/// already known there), whose work order is the answer.
async fn create(
    state: &AppState,
    headers: &HeaderMap,
    form: &[(String, String)],
) -> Result<String, ApiError> {
    let tenant = jurisdiction(state, headers, form).await?;
    let report =
        open311::parse_new_request(form).map_err(|(_, message)| ApiError::BadRequest(message))?;
    let now = now_ms();
    let mut tx = state.store.write(false).await?;
    let conn = &mut *tx.tx;
    db::lock_tenant(conn, &tenant).await?;
    let policy = db::policy(conn, &tenant).await?;
    let who = match (&report.first_name, &report.last_name) {
        (Some(f), Some(l)) => format!("reported by {f} {l}"),
        (Some(n), None) | (None, Some(n)) => format!("reported by {n}"),
        _ => "reported by a citizen".to_owned(),
    };
    let sighting = Sighting {
        tenant: &tenant,
        class: &report.service_code,
        at: (report.lat, report.long),
        score: 1.0,
        taken_ms: now,
        source: "citizen",
        what: who.clone(),
        description: report.description.clone(),
    };
    let defect = inspection::sight(conn, &policy, &sighting, now).await?;
    let order = match db::order_of_defect(conn, &defect.id).await? {
        Some(o) if !o.state.is_terminal() => o,
        // Below the tenant's threshold for models (or dismissed before), a person's
        // report still opens one.
        _ => {
            if defect.state != "open" {
                let mut d = defect.clone();
                d.state = "open".into();
                db::put_defect(conn, &d).await?;
            }
            inspection::open_order(conn, &defect, &who, now).await?
        }
    };
    tx.commit().await?;
    Ok(order.id)
}
