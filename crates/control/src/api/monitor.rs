//! IDC monitoring's API: sites' nodes forward readings and alert transitions (`POST
//! /v1/monitor/records`, node credential, role `aiot`); the operator reads a sensor's
//! series (`GET /v1/sensors/{id}/readings?from&to&step`: raw readings for a step under a
//! minute, per-minute rollups merged into the step otherwise), the alerts (`GET
//! /v1/alerts?state&site`) and acknowledges one (`POST /v1/alerts/ack`).

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use lingjing_model::inspect::{FrameAck, RejectedRecord};
use lingjing_model::monitor::{MonitorBatch, MonitorEvent, Sensor};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{ApiJson, ApiQuery, AppState};
use crate::auth::{Caller, DataPlaneCaller};
use crate::error::ApiError;
use crate::store::get_doc;
use crate::store::inspect as streams;
use crate::store::monitor::{self as db, AlertRow, Point};
use crate::time::now_ms;

/// Most points a series answer holds.
pub const MAX_POINTS: u32 = 10_000;
/// Largest records batch body.
pub const MAX_RECORDS_BODY: usize = 16 * 1024 * 1024;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/v1/monitor/records",
            post(records).layer(axum::extract::DefaultBodyLimit::max(MAX_RECORDS_BODY)),
        )
        .route("/v1/sensors/{id}/readings", get(readings))
        .route("/v1/alerts", get(alerts))
        .route("/v1/alerts/ack", post(ack))
}

async fn records(
    State(state): State<AppState>,
    caller: DataPlaneCaller,
    ApiJson(batch): ApiJson<MonitorBatch>,
) -> Result<Json<FrameAck>, ApiError> {
    caller.require_node(&batch.node)?;
    let node = batch.node.clone();
    crate::inspection::check_batch(
        &batch.stream,
        batch.records.iter().map(|r| r.seq),
        lingjing_model::monitor::MAX_BATCH_RECORDS,
    )?;
    let mut tx = state.store.write(false).await?;
    let conn = &mut *tx.tx;
    let known = get_doc::<lingjing_model::Node>(conn, &node).await?;
    let Some(known) = known.filter(|n| n.roles.contains(&lingjing_model::NodeRole::Aiot)) else {
        return Err(ApiError::Forbidden(format!(
            "node `{node}` is not an edge AI node (role `aiot`): only those forward monitoring records"
        )));
    };
    let mut through = crate::inspection::kept_through(conn, &batch.stream, &node).await?;
    let before = through;
    let mut accepted = 0;
    let mut rejected = Vec::new();
    let mut sensors: std::collections::HashMap<String, Option<Sensor>> = Default::default();
    for (i, r) in batch
        .records
        .iter()
        .enumerate()
        .filter(|(_, r)| r.seq > before)
    {
        through = r.seq;
        let refuse = |field: String, message: String| RejectedRecord {
            seq: r.seq,
            field,
            message,
        };
        if let Err(e) = r.check(&format!("records[{i}]")) {
            rejected.push(refuse(e.field, e.message));
            continue;
        }
        // A node speaks only for its own site.
        if r.site != known.site {
            rejected.push(refuse(
                format!("records[{i}].site"),
                format!(
                    "node `{node}` is at site `{}`, not `{}`",
                    known.site, r.site
                ),
            ));
            continue;
        }
        match &r.event {
            MonitorEvent::Readings { at_ms, values } => {
                let mut ours = Vec::with_capacity(values.len());
                for v in values {
                    if !sensors.contains_key(&v.sensor) {
                        let s = get_doc::<Sensor>(conn, &v.sensor).await?;
                        sensors.insert(v.sensor.clone(), s);
                    }
                    if sensors[&v.sensor]
                        .as_ref()
                        .is_some_and(|s| s.site == r.site)
                    {
                        ours.push(v.clone());
                    }
                }
                db::insert_readings(conn, *at_ms, &ours).await?;
                accepted += 1;
            }
            MonitorEvent::Alert(e) => {
                if e.site != r.site {
                    rejected.push(refuse(
                        format!("records[{i}].site"),
                        "an alert of another site".into(),
                    ));
                    continue;
                }
                if db::record_alert(conn, &node, e).await? {
                    accepted += 1;
                }
            }
        }
    }
    if !batch.records.is_empty() {
        streams::set_stream(conn, &batch.stream, &node, through, now_ms()).await?;
    }
    tx.commit().await?;
    Ok(Json(FrameAck {
        through,
        accepted,
        rejected,
    }))
}

/// A series' query: `from` and `to` in ms since the epoch (default the last hour), `step`
/// in seconds (default 60; under 60: raw readings).
#[derive(Debug, Deserialize, IntoParams)]
pub struct SeriesQuery {
    pub from: Option<i64>,
    pub to: Option<i64>,
    pub step: Option<u32>,
}

/// A sensor's series.
#[derive(Debug, Serialize, ToSchema)]
pub struct Series {
    pub sensor: String,
    pub unit: String,
    pub from: i64,
    pub to: i64,
    pub step: u32,
    pub points: Vec<Point>,
}

async fn readings(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<SeriesQuery>,
) -> Result<Json<Series>, ApiError> {
    caller.require_operator()?;
    let to = q.to.unwrap_or_else(now_ms);
    let from = q.from.unwrap_or(to - 3_600_000);
    let step = q.step.unwrap_or(60);
    if from >= to {
        return Err(ApiError::invalid("from", "must be before `to`"));
    }
    if step == 0 || step > 86_400 {
        return Err(ApiError::invalid("step", "1 to 86400 seconds"));
    }
    if step >= 60 && step % 60 != 0 {
        return Err(ApiError::invalid(
            "step",
            "a step of a minute or more is whole minutes (60, 300, 3600, ...)",
        ));
    }
    let mut conn = state.store.pool().acquire().await?;
    let sensor = get_doc::<Sensor>(&mut conn, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("sensor", &id))?;
    let points = if step < 60 {
        db::raw(&mut conn, &id, from, to, MAX_POINTS).await?
    } else {
        if (to - from) / (i64::from(step) * 1000) > i64::from(MAX_POINTS) {
            return Err(ApiError::invalid(
                "step",
                format!("the range holds more than {MAX_POINTS} steps: take a longer step"),
            ));
        }
        db::rolled(&mut conn, &id, from, to, i64::from(step) * 1000).await?
    };
    Ok(Json(Series {
        sensor: id,
        unit: sensor.kind.unit().to_owned(),
        from,
        to,
        step,
        points,
    }))
}

/// Which alerts: `state` one of pending, firing, resolved, cancelled (default pending
/// and firing; `all`: every one), `site`.
#[derive(Debug, Deserialize, IntoParams)]
pub struct AlertQuery {
    pub state: Option<String>,
    pub site: Option<String>,
    pub limit: Option<u32>,
}

async fn alerts(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<AlertQuery>,
) -> Result<Json<Vec<AlertRow>>, ApiError> {
    caller.require_operator()?;
    let states: Vec<&str> = match q.state.as_deref() {
        None => vec!["pending", "firing"],
        Some("all") => vec![],
        Some(s @ ("pending" | "firing" | "resolved" | "cancelled")) => vec![s],
        Some(_) => {
            return Err(ApiError::invalid(
                "state",
                "one of pending, firing, resolved, cancelled, all",
            ));
        }
    };
    let limit = q.limit.unwrap_or(500).clamp(1, 5000);
    let mut conn = state.store.pool().acquire().await?;
    Ok(Json(
        db::alerts(&mut conn, &states, q.site.as_deref(), limit).await?,
    ))
}

/// An acknowledgement: who takes the alert in hand.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AckRequest {
    pub key: String,
    pub by: String,
}

async fn ack(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<AckRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require_operator()?;
    lingjing_model::validate::check_name("by", &req.by).map_err(ApiError::Invalid)?;
    let mut tx = state.store.write(true).await?;
    if !db::ack(&mut tx.tx, &req.key, &req.by, now_ms()).await? {
        return Err(ApiError::conflict(
            "not_firing",
            format!(
                "alert `{}` is not firing: only a firing alert is acknowledged",
                req.key
            ),
        ));
    }
    // The nodes learn it with the next snapshot (it stops escalation).
    let version = tx.commit().await?;
    state.published(version);
    Ok(Json(
        serde_json::json!({"key": req.key, "acked_by": req.by}),
    ))
}
