//! Billing endpoints: price plans (`/v1/plans`, the operator's; a tenant reads the plan
//! it is on), which plan a tenant is on (`/v1/tenants/{id}/plan`), billing runs
//! (`POST /v1/billing/runs`), invoices (`/v1/invoices`, a tenant reads its own; as JSON,
//! CSV or a printable HTML page) and credit notes, the one way to correct a final invoice.

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use lingjing_billing::{Category, Invoice, Line, Month, Plan, round_money};
use lingjing_model::Tenant;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ApiJson, ApiQuery, AppState};
use crate::auth::Caller;
use crate::billing::RunResult;
use crate::error::ApiError;
use crate::store::billing::{self as store, InvoiceKind, InvoiceRecord};
use crate::store::get_doc;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/plans", get(list_plans).post(create_plan))
        .route(
            "/v1/plans/{id}",
            get(show_plan).put(replace_plan).delete(delete_plan),
        )
        .route(
            "/v1/tenants/{id}/plan",
            get(tenant_plan).put(set_tenant_plan),
        )
        .route("/v1/billing/runs", post(run))
        .route("/v1/invoices", get(list_invoices))
        .route("/v1/invoices/{number}", get(show_invoice))
        .route("/v1/invoices/{number}/credit-notes", post(credit_note))
}

fn check(plan: &Plan) -> Result<(), ApiError> {
    plan.check().map_err(
        |lingjing_billing::BillingError::Invalid { field, message }| {
            ApiError::invalid(field, message)
        },
    )
}

/// The plan `caller` is on (a tenant), or every plan (the operator).
async fn list_plans(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<Plan>>, ApiError> {
    let mut conn = state.store.pool().acquire().await?;
    let plans = store::list_plans(&mut conn).await?;
    Ok(Json(match caller {
        Caller::Operator => plans,
        Caller::Tenant(t) => {
            let mine = tenant_plan_id(&mut conn, &t).await?;
            plans
                .into_iter()
                .filter(|p| Some(&p.id) == mine.as_ref())
                .collect()
        }
    }))
}

async fn tenant_plan_id(
    conn: &mut sqlx::AnyConnection,
    tenant: &str,
) -> Result<Option<String>, ApiError> {
    Ok(store::tenant_plans(conn)
        .await?
        .into_iter()
        .find(|(t, _)| t == tenant)
        .map(|(_, p)| p))
}

async fn create_plan(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(plan): ApiJson<Plan>,
) -> Result<(StatusCode, Json<Plan>), ApiError> {
    caller.require_operator()?;
    check(&plan)?;
    let mut w = state.store.write(false).await?;
    if store::get_plan(&mut w.tx, &plan.id).await?.is_some() {
        return Err(ApiError::conflict(
            "already_exists",
            format!(
                "plan `{}` exists: change it with PUT /v1/plans/{}",
                plan.id, plan.id
            ),
        ));
    }
    store::put_plan(&mut w.tx, &plan, crate::time::now_ms()).await?;
    w.commit().await?;
    Ok((StatusCode::CREATED, Json(plan)))
}

async fn show_plan(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Plan>, ApiError> {
    let mut conn = state.store.pool().acquire().await?;
    if let Caller::Tenant(t) = &caller
        && tenant_plan_id(&mut conn, t).await?.as_deref() != Some(id.as_str())
    {
        return Err(ApiError::not_found("plan", &id));
    }
    store::get_plan(&mut conn, &id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("plan", &id))
}

/// Replaces a plan: invoices already made keep the prices they were made with; the next
/// run (drafts, and months not yet invoiced) uses the new ones.
async fn replace_plan(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(plan): ApiJson<Plan>,
) -> Result<Json<Plan>, ApiError> {
    caller.require_operator()?;
    if plan.id != id {
        return Err(ApiError::invalid(
            "id",
            format!("the body's id `{}` is not the path's `{id}`", plan.id),
        ));
    }
    check(&plan)?;
    let mut w = state.store.write(false).await?;
    if store::get_plan(&mut w.tx, &id).await?.is_none() {
        return Err(ApiError::not_found("plan", &id));
    }
    store::put_plan(&mut w.tx, &plan, crate::time::now_ms()).await?;
    w.commit().await?;
    Ok(Json(plan))
}

async fn delete_plan(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require_operator()?;
    let mut w = state.store.write(false).await?;
    match store::delete_plan(&mut w.tx, &id).await? {
        None => Err(ApiError::not_found("plan", &id)),
        Some(users) if !users.is_empty() => Err(ApiError::conflict(
            "in_use",
            format!(
                "tenants {} are on plan `{id}`: move them first (PUT /v1/tenants/ID/plan)",
                users.join(", ")
            ),
        )),
        Some(_) => {
            w.commit().await?;
            Ok(StatusCode::NO_CONTENT)
        }
    }
}

/// Which plan a tenant is on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantPlan {
    /// The plan's id; null: on none (not billed).
    pub plan: Option<String>,
}

async fn tenant_plan(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<TenantPlan>, ApiError> {
    caller.require_tenant_or_operator(&id)?;
    let mut conn = state.store.pool().acquire().await?;
    get_doc::<Tenant>(&mut conn, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("tenant", &id))?;
    Ok(Json(TenantPlan {
        plan: tenant_plan_id(&mut conn, &id).await?,
    }))
}

async fn set_tenant_plan(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<TenantPlan>,
) -> Result<Json<TenantPlan>, ApiError> {
    caller.require_operator()?;
    let mut w = state.store.write(false).await?;
    get_doc::<Tenant>(&mut w.tx, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("tenant", &id))?;
    if let Some(plan) = &body.plan
        && store::get_plan(&mut w.tx, plan).await?.is_none()
    {
        return Err(ApiError::invalid(
            "plan",
            format!("no plan `{plan}`: create it first (POST /v1/plans)"),
        ));
    }
    store::set_tenant_plan(&mut w.tx, &id, body.plan.as_deref()).await?;
    w.commit().await?;
    Ok(Json(body))
}

/// What to bill.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    /// `YYYY-MM`: an ended month (final invoices, made once) or the current one (drafts).
    pub month: String,
}

async fn run(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<RunRequest>,
) -> Result<Json<RunResult>, ApiError> {
    caller.require_operator()?;
    let month = Month::parse(&req.month).map_err(|e| ApiError::invalid("month", e.to_string()))?;
    Ok(Json(
        crate::billing::run(&state, month, crate::time::now_ms()).await?,
    ))
}

#[derive(Debug, Deserialize)]
pub struct InvoiceFilter {
    tenant: Option<String>,
    month: Option<String>,
}

async fn list_invoices(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(filter): ApiQuery<InvoiceFilter>,
) -> Result<Json<Vec<InvoiceRecord>>, ApiError> {
    let tenant = match (&caller, filter.tenant) {
        (Caller::Operator, t) => t,
        (Caller::Tenant(me), Some(t)) if &t != me => {
            return Err(ApiError::Forbidden(format!(
                "this API key belongs to tenant `{me}`: it reads only its own invoices"
            )));
        }
        (Caller::Tenant(me), _) => Some(me.clone()),
    };
    if let Some(m) = &filter.month {
        Month::parse(m).map_err(|e| ApiError::BadRequest(format!("`month`: {e}")))?;
    }
    let mut conn = state.store.pool().acquire().await?;
    Ok(Json(
        store::list_invoices(&mut conn, tenant.as_deref(), filter.month.as_deref()).await?,
    ))
}

#[derive(Debug, Deserialize)]
pub struct Format {
    /// `json` (default), `csv` or `html`.
    format: Option<String>,
}

async fn show_invoice(
    State(state): State<AppState>,
    caller: Caller,
    Path(number): Path<String>,
    ApiQuery(format): ApiQuery<Format>,
) -> Result<Response, ApiError> {
    let mut conn = state.store.pool().acquire().await?;
    let record = store::get_invoice(&mut conn, &number)
        .await?
        .filter(|r| match &caller {
            Caller::Operator => true,
            Caller::Tenant(t) => &r.invoice.tenant == t,
        })
        .ok_or_else(|| ApiError::not_found("invoice", &number))?;
    Ok(match format.format.as_deref().unwrap_or("json") {
        "json" => Json(record).into_response(),
        "csv" => (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"{number}.csv\""),
                ),
            ],
            lingjing_billing::to_csv(&record.invoice),
        )
            .into_response(),
        "html" => (
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            lingjing_billing::to_html(&record.invoice),
        )
            .into_response(),
        other => {
            return Err(ApiError::BadRequest(format!(
                "format {other:?}: use json, csv or html"
            )));
        }
    })
}

/// A correction of a final invoice.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreditRequest {
    /// How much to credit (positive, at most what the invoice and its earlier credit
    /// notes leave), in the invoice's currency; rounded to the cent.
    #[schema(value_type = String, example = "12.50")]
    pub amount: Decimal,
    /// Why (shown on the credit note).
    pub reason: String,
}

async fn credit_note(
    State(state): State<AppState>,
    caller: Caller,
    Path(number): Path<String>,
    ApiJson(req): ApiJson<CreditRequest>,
) -> Result<(StatusCode, Json<InvoiceRecord>), ApiError> {
    caller.require_operator()?;
    let reason = req.reason.trim();
    if reason.is_empty() || reason.chars().count() > 500 {
        return Err(ApiError::invalid("reason", "1 to 500 characters"));
    }
    let amount = round_money(req.amount);
    if amount <= Decimal::ZERO {
        return Err(ApiError::invalid("amount", "must be above 0"));
    }
    let mut w = state.store.write(false).await?;
    let original = store::get_invoice(&mut w.tx, &number)
        .await?
        .ok_or_else(|| ApiError::not_found("invoice", &number))?;
    if original.kind != InvoiceKind::Invoice {
        return Err(ApiError::conflict(
            "not_final",
            format!(
                "{number} is not a final invoice: only those are corrected by credit notes (a draft changes with the next run)"
            ),
        ));
    }
    let earlier: Decimal = store::list_invoices(
        &mut w.tx,
        Some(&original.invoice.tenant),
        Some(&original.invoice.month.to_string()),
    )
    .await?
    .iter()
    .filter(|r| r.refers_to.as_deref() == Some(number.as_str()))
    .map(|r| r.invoice.total)
    .sum();
    let left = original.invoice.total + earlier;
    if amount > left {
        return Err(ApiError::invalid(
            "amount",
            format!(
                "at most {left} {} is left to credit on {number}",
                original.invoice.currency
            ),
        ));
    }
    let n = store::credit_notes_of(&mut w.tx, &number).await? + 1;
    let inv = &original.invoice;
    let credit = Invoice {
        number: format!("CN-{number}-{n}"),
        lines: vec![Line {
            category: Category::Credit,
            description: format!("Credit on {number}: {reason}"),
            quantity: Decimal::ONE,
            unit: "credit".into(),
            unit_price: -amount,
            amount: -amount,
            basis: format!("credit note {n} on invoice {number}"),
        }],
        subtotal: Decimal::ZERO,
        credits: -amount,
        tax: Decimal::ZERO,
        total: -amount,
        uptime: Vec::new(),
        ..inv.clone()
    };
    let now = crate::time::now_ms();
    let record = InvoiceRecord {
        kind: InvoiceKind::CreditNote,
        issued: crate::time::rfc3339_from_ms(now),
        refers_to: Some(number.clone()),
        reason: Some(reason.to_owned()),
        invoice: credit,
    };
    if !store::put_invoice(&mut w.tx, &record, now).await? {
        return Err(ApiError::conflict(
            "concurrent_change",
            format!("another credit note on {number} was made at the same moment: retry"),
        ));
    }
    w.commit().await?;
    Ok((StatusCode::CREATED, Json(record)))
}
