//! Road inspection's API: nodes forward frames (`POST /v1/inspect/frames`, node
//! credential); tenants (and the operator) issue device credentials, set their policy,
//! read runs, defects (with their evidence frames) and work orders (with their history),
//! act on orders as the state machine allows, and read the weekly report. A tenant sees
//! only its own (another tenant's answer 404).

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use lingjing_inspect::{Action, WorkOrderState};
use lingjing_model::Validate;
use lingjing_model::inspect::{Crew, Device, FrameAck, FrameBatch, InspectPolicy};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ApiJson, ApiQuery, AppState};
use crate::auth::{Caller, DataPlaneCaller, random_hex, sha256_hex};
use crate::error::ApiError;
use crate::inspection;
use crate::store::get_doc;
use crate::store::inspect::{
    self as db, Defect, DefectFilter, Evidence, OrderEvent, OrderFilter, Run, WorkOrder,
};
use crate::time::{now_ms, now_rfc3339, parse_rfc3339_ms};

/// Largest frame batch body: 500 frames, a few with evidence images.
pub const MAX_FRAMES_BODY: usize = 16 * 1024 * 1024;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/v1/inspect/frames",
            post(frames).layer(axum::extract::DefaultBodyLimit::max(MAX_FRAMES_BODY)),
        )
        .route("/v1/devices/{id}/token", post(device_token))
        .route(
            "/v1/tenants/{id}/inspect-policy",
            get(get_policy).put(put_policy),
        )
        .route("/v1/inspect/runs", get(list_runs))
        .route("/v1/inspect/runs/{id}", get(show_run))
        .route("/v1/inspect/report", get(report))
        .route("/v1/defects", get(list_defects))
        .route("/v1/defects/{id}", get(show_defect))
        .route(
            "/v1/defects/{id}/evidence/{stream}/{seq}",
            get(evidence_image),
        )
        .route("/v1/work-orders", get(list_orders))
        .route("/v1/work-orders/{id}", get(show_order))
        .route("/v1/work-orders/{id}/actions", post(act))
}

/// The tenant a read is confined to: a tenant's own, or the operator's choice (none: all).
pub fn scope(caller: &Caller, asked: Option<String>) -> Result<Option<String>, ApiError> {
    match (caller, asked) {
        (Caller::Operator, t) => Ok(t),
        (Caller::Tenant(me), Some(t)) if &t != me => Err(ApiError::Forbidden(format!(
            "this API key belongs to tenant `{me}`: it reads only its own inspections"
        ))),
        (Caller::Tenant(me), _) => Ok(Some(me.clone())),
    }
}

/// Refuses (404) an item of another tenant.
fn visible(caller: &Caller, tenant: &str, kind: &str, id: &str) -> Result<(), ApiError> {
    match caller {
        Caller::Tenant(me) if me != tenant => Err(ApiError::not_found(kind, id)),
        _ => Ok(()),
    }
}

/// Frames from a node's outbox (node credential).
async fn frames(
    State(state): State<AppState>,
    caller: DataPlaneCaller,
    ApiJson(batch): ApiJson<FrameBatch>,
) -> Result<Json<FrameAck>, ApiError> {
    let node = match &caller {
        DataPlaneCaller::Node(n) => n.clone(),
        DataPlaneCaller::Operator => batch.node.clone(),
    };
    caller.require_node(&batch.node)?;
    let mut conn = acquire(&state).await?;
    let known = get_doc::<lingjing_model::Node>(&mut conn, &node).await?;
    drop(conn);
    if !known.is_some_and(|n| n.roles.contains(&lingjing_model::NodeRole::Aiot)) {
        return Err(ApiError::Forbidden(format!(
            "node `{node}` is not an edge AI node (role `aiot`): only those forward patrol frames"
        )));
    }
    let ack = inspection::take_batch(&state.store, &node, &batch, now_ms()).await?;
    Ok(Json(ack))
}

/// A device's new credential (shown once).
#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceToken {
    pub device: String,
    /// `Authorization: Bearer <token>` on the node's `POST /v1/patrol/frames`; it
    /// replaces any earlier one.
    pub token: String,
}

async fn device_token(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<DeviceToken>, ApiError> {
    let mut tx = state.store.write(true).await?;
    let device = get_doc::<Device>(&mut tx.tx, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("device", &id))?;
    visible(&caller, &device.tenant, "device", &id)?;
    let token = format!("ljd_{}", random_hex(24));
    db::set_device_token(&mut tx.tx, &id, &sha256_hex(&token), &now_rfc3339()).await?;
    let version = tx.commit().await?;
    state.published(version);
    Ok(Json(DeviceToken { device: id, token }))
}

async fn get_policy(
    State(state): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
) -> Result<Json<InspectPolicy>, ApiError> {
    scope(&caller, Some(tenant.clone()))?;
    let mut conn = state
        .store
        .pool()
        .acquire()
        .await
        .map_err(crate::error::StoreError::from)?;
    if get_doc::<lingjing_model::Tenant>(&mut conn, &tenant)
        .await?
        .is_none()
    {
        return Err(ApiError::not_found("tenant", &tenant));
    }
    Ok(Json(db::policy(&mut conn, &tenant).await?))
}

async fn put_policy(
    State(state): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
    ApiJson(policy): ApiJson<InspectPolicy>,
) -> Result<Json<InspectPolicy>, ApiError> {
    scope(&caller, Some(tenant.clone()))?;
    policy.validate().map_err(ApiError::Invalid)?;
    let mut tx = state.store.write(false).await?;
    if get_doc::<lingjing_model::Tenant>(&mut tx.tx, &tenant)
        .await?
        .is_none()
    {
        return Err(ApiError::not_found("tenant", &tenant));
    }
    db::set_policy(&mut tx.tx, &tenant, &policy).await?;
    tx.commit().await?;
    Ok(Json(policy))
}

#[derive(Debug, Deserialize)]
pub struct ListParams {
    tenant: Option<String>,
    state: Option<String>,
    class: Option<String>,
    crew: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

fn window(p: &ListParams) -> Result<(i64, i64), ApiError> {
    let limit = p.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::BadRequest("`limit` must be 1 to 1000".into()));
    }
    let offset = p.offset.unwrap_or(0);
    if offset < 0 {
        return Err(ApiError::BadRequest("`offset` must not be negative".into()));
    }
    Ok((limit, offset))
}

fn total_header(total: u64) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("x-total-count", HeaderValue::from(total));
    h
}

async fn list_runs(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(p): ApiQuery<ListParams>,
) -> Result<(HeaderMap, Json<Vec<Run>>), ApiError> {
    let tenant = scope(&caller, p.tenant.clone())?;
    let (limit, offset) = window(&p)?;
    let mut conn = acquire(&state).await?;
    let (runs, total) = db::runs(&mut conn, tenant.as_deref(), limit, offset).await?;
    Ok((total_header(total), Json(runs)))
}

/// A run with the path it covered.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunView {
    #[serde(flatten)]
    pub run: Run,
    /// `[lat, lon]` of its frames in time order (at most 5,000: thinned evenly).
    pub path: Vec<[f64; 2]>,
}

#[derive(Debug, Deserialize)]
pub struct RunParams {
    tenant: Option<String>,
    /// The device whose run it is (needed when two devices used the name).
    device: Option<String>,
}

async fn show_run(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(p): ApiQuery<RunParams>,
) -> Result<Json<RunView>, ApiError> {
    let tenant = scope(&caller, p.tenant)?.ok_or_else(|| {
        ApiError::BadRequest("runs are named per tenant: add `?tenant=ID`".into())
    })?;
    let mut conn = acquire(&state).await?;
    let run = match p.device {
        Some(device) => db::run(&mut conn, &tenant, &device, &id).await?,
        None => {
            let mut named = db::runs_named(&mut conn, &tenant, &id).await?;
            if named.len() > 1 {
                let devices: Vec<&str> = named.iter().map(|r| r.device.as_str()).collect();
                return Err(ApiError::BadRequest(format!(
                    "devices {} each have a run `{id}`: add `?device=ID`",
                    devices.join(", ")
                )));
            }
            named.pop()
        }
    }
    .ok_or_else(|| ApiError::not_found("run", &id))?;
    let full = db::run_path(&mut conn, &tenant, &run.device, &id).await?;
    let step = full.len().div_ceil(5000).max(1);
    let mut path: Vec<[f64; 2]> = full.iter().step_by(step).map(|p| [p.0, p.1]).collect();
    if let Some(last) = full.last()
        && path.last() != Some(&[last.0, last.1])
    {
        path.push([last.0, last.1]);
    }
    Ok(Json(RunView { run, path }))
}

async fn acquire(state: &AppState) -> Result<sqlx::pool::PoolConnection<sqlx::Any>, ApiError> {
    Ok(state
        .store
        .pool()
        .acquire()
        .await
        .map_err(crate::error::StoreError::from)?)
}

async fn list_defects(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(p): ApiQuery<ListParams>,
) -> Result<(HeaderMap, Json<Vec<Defect>>), ApiError> {
    let tenant = scope(&caller, p.tenant.clone())?;
    let (limit, offset) = window(&p)?;
    let mut conn = acquire(&state).await?;
    let (items, total) = db::defects(
        &mut conn,
        &DefectFilter {
            tenant,
            state: p.state.clone(),
            class: p.class.clone(),
            limit,
            offset,
        },
    )
    .await?;
    Ok((total_header(total), Json(items)))
}

/// A defect with its evidence and its newest work order.
#[derive(Debug, Serialize, ToSchema)]
pub struct DefectView {
    #[serde(flatten)]
    pub defect: Defect,
    pub name: String,
    pub evidence: Vec<Evidence>,
    pub work_order: Option<WorkOrder>,
}

async fn show_defect(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<DefectView>, ApiError> {
    let mut conn = acquire(&state).await?;
    let defect = db::defect(&mut conn, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("defect", &id))?;
    visible(&caller, &defect.tenant, "defect", &id)?;
    let evidence = db::evidence(&mut conn, &id).await?;
    let work_order = db::order_of_defect(&mut conn, &id).await?;
    Ok(Json(DefectView {
        name: lingjing_inspect::classes::class_name(&defect.class),
        defect,
        evidence,
        work_order,
    }))
}

async fn evidence_image(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, stream, seq)): Path<(String, String, u64)>,
) -> Result<Response, ApiError> {
    let mut conn = acquire(&state).await?;
    let defect = db::defect(&mut conn, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("defect", &id))?;
    visible(&caller, &defect.tenant, "defect", &id)?;
    let image = db::evidence_image(&mut conn, &id, &stream, seq)
        .await?
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "defect `{id}` keeps no image of frame {stream}/{seq}"
            ))
        })?;
    drop(conn);
    let object = match image {
        db::EvidenceImage::Blob(image) => {
            return Ok(image_response(image_kind(&image), Body::from(image)));
        }
        db::EvidenceImage::Object(object) => object,
    };
    // In the tenant's evidence bucket: its first bytes say the type, the rest streams on.
    let mut resp =
        crate::evidence::fetch(&state.store, &state.hub, &defect.tenant, &object).await?;
    let broken = |e: reqwest::Error| {
        ApiError::BadGateway(format!(
            "the evidence image is kept in the tenant's bucket (`{object}`) and reading it failed: {e}"
        ))
    };
    let mut head = Vec::new();
    while head.len() < 8 {
        match resp.chunk().await.map_err(broken)? {
            Some(c) => head.extend_from_slice(&c),
            None => break,
        }
    }
    let kind = image_kind(&head);
    let rest = futures::stream::unfold(Some(resp), |resp| async move {
        let mut resp = resp?;
        match resp.chunk().await {
            Ok(Some(c)) => Some((Ok(c), Some(resp))),
            Ok(None) => None,
            Err(e) => Some((Err(e), None)),
        }
    });
    let body = futures::StreamExt::chain(
        futures::stream::once(async { Ok::<_, reqwest::Error>(Bytes::from(head)) }),
        rest,
    );
    Ok(image_response(kind, Body::from_stream(body)))
}

/// `image/jpeg` or `image/png` by the image's magic bytes, else not an image.
fn image_kind(image: &[u8]) -> &'static str {
    crate::evidence::image_kind(image).0
}

/// An evidence image, never taken for anything but an image.
fn image_response(kind: &'static str, body: Body) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CONTENT_SECURITY_POLICY, "sandbox"),
        ],
        body,
    )
        .into_response()
}

async fn list_orders(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(p): ApiQuery<ListParams>,
) -> Result<(HeaderMap, Json<Vec<WorkOrder>>), ApiError> {
    let tenant = scope(&caller, p.tenant.clone())?;
    let (limit, offset) = window(&p)?;
    if let Some(s) = &p.state {
        s.parse::<WorkOrderState>().map_err(ApiError::BadRequest)?;
    }
    let mut conn = acquire(&state).await?;
    let (items, total) = db::orders(
        &mut conn,
        &OrderFilter {
            tenant,
            state: p.state.clone(),
            crew: p.crew.clone(),
            limit,
            offset,
        },
    )
    .await?;
    Ok((total_header(total), Json(items)))
}

/// A work order with its defect and every transition.
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkOrderView {
    #[serde(flatten)]
    pub order: WorkOrder,
    pub defect_detail: Defect,
    pub history: Vec<OrderEvent>,
    /// Whether its due time has passed while it is not fixed.
    pub overdue: bool,
}

async fn order_view(
    conn: &mut sqlx::AnyConnection,
    caller: &Caller,
    id: &str,
) -> Result<WorkOrderView, ApiError> {
    let order = db::order(conn, id)
        .await?
        .ok_or_else(|| ApiError::not_found("work order", id))?;
    visible(caller, &order.tenant, "work order", id)?;
    let defect_detail = db::defect(conn, &order.defect)
        .await?
        .ok_or_else(|| ApiError::Internal(format!("work order {id} names no defect")))?;
    let history = db::events(conn, id).await?;
    let overdue = !order.state.is_terminal()
        && !matches!(
            order.state,
            WorkOrderState::Fixed | WorkOrderState::Verifying
        )
        && order.due_ms.is_some_and(|d| d < now_ms());
    Ok(WorkOrderView {
        order,
        defect_detail,
        history,
        overdue,
    })
}

async fn show_order(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<WorkOrderView>, ApiError> {
    let mut conn = acquire(&state).await?;
    Ok(Json(order_view(&mut conn, &caller, &id).await?))
}

/// A person's action on a work order.
#[derive(Debug, Deserialize, ToSchema)]
pub struct OrderAction {
    #[serde(flatten)]
    pub action: Action,
    /// The person who acts (a crew member, a dispatcher), kept in the history.
    #[serde(default)]
    pub by: Option<String>,
}

async fn act(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<OrderAction>,
) -> Result<Json<WorkOrderView>, ApiError> {
    if body.action.by_system() {
        return Err(ApiError::invalid(
            "action",
            "verify and close are the system's: an order closes when a later inspection run sees the spot repaired",
        ));
    }
    if let Some(by) = &body.by
        && (by.is_empty() || by.chars().count() > 100 || by.chars().any(char::is_control))
    {
        return Err(ApiError::invalid(
            "by",
            "1 to 100 characters, no control characters",
        ));
    }
    let mut tx = state.store.write(false).await?;
    let conn = &mut *tx.tx;
    let tenant = db::order(conn, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("work order", &id))?
        .tenant;
    visible(&caller, &tenant, "work order", &id)?;
    // Serialised with the tenant's intake, then read again: what intake decided stands.
    db::lock_tenant(conn, &tenant).await?;
    let mut order = db::order(conn, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("work order", &id))?;
    match &body.action {
        Action::Dispatch { crew } => {
            let found = get_doc::<Crew>(conn, crew).await?;
            if found.is_none_or(|c| c.tenant != order.tenant) {
                return Err(ApiError::invalid(
                    "crew",
                    format!("tenant `{}` has no crew `{crew}`", order.tenant),
                ));
            }
        }
        Action::Duplicate { of } => {
            let other = db::order(conn, of).await?;
            if of == &id || other.is_none_or(|o| o.tenant != order.tenant) {
                return Err(ApiError::invalid(
                    "of",
                    format!("another work order of tenant `{}`", order.tenant),
                ));
            }
        }
        _ => {}
    }
    let mut who = match &caller {
        Caller::Operator => "operator".to_owned(),
        Caller::Tenant(t) => format!("tenant:{t}"),
    };
    if let Some(by) = &body.by {
        who = format!("{who} ({by})");
    }
    inspection::apply(conn, &mut order, &body.action, &who, None, now_ms()).await?;
    let view = order_view(conn, &caller, &id).await?;
    tx.commit().await?;
    Ok(Json(view))
}

#[derive(Debug, Deserialize)]
pub struct ReportParams {
    tenant: Option<String>,
    /// Start (RFC 3339); default 7 days before `to`.
    from: Option<String>,
    /// End (RFC 3339, exclusive); default now.
    to: Option<String>,
}

async fn report(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(p): ApiQuery<ReportParams>,
) -> Result<Json<lingjing_inspect::report::WeeklyReport>, ApiError> {
    let tenant = scope(&caller, p.tenant)?
        .ok_or_else(|| ApiError::BadRequest("the report is per tenant: add `?tenant=ID`".into()))?;
    let parse = |name: &str, v: &Option<String>| -> Result<Option<i64>, ApiError> {
        v.as_deref()
            .map(|t| {
                parse_rfc3339_ms(t).ok_or_else(|| {
                    ApiError::BadRequest(format!(
                        "`{name}` must be an RFC 3339 time, e.g. 2026-12-01T00:00:00Z"
                    ))
                })
            })
            .transpose()
    };
    let now = now_ms();
    let to = parse("to", &p.to)?.unwrap_or(now);
    let from = parse("from", &p.from)?.unwrap_or(to - 7 * 86_400_000);
    if from >= to {
        return Err(ApiError::BadRequest("`from` must be before `to`".into()));
    }
    let mut conn = acquire(&state).await?;
    let found = db::found_between(&mut conn, &tenant, from, to).await?;
    let orders = db::order_facts(&mut conn, &tenant).await?;
    Ok(Json(lingjing_inspect::report::weekly(
        &found, &orders, from, to, now,
    )))
}
