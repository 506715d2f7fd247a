//! Billing records: price plans, which plan each tenant is on, invoices (final ones at
//! most once per tenant and month, enforced by a unique index; drafts replaced; credit
//! notes), and the month's usage a rating needs (storage samples and traffic).

use lingjing_billing::Plan;
use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row};
use utoipa::ToSchema;

use crate::error::StoreError;

/// What an invoice record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum InvoiceKind {
    /// A month that has ended: final, never rewritten.
    Invoice,
    /// The month so far: replaced by each run until the month ends.
    Draft,
    /// A correction of a final invoice (negative).
    CreditNote,
}

impl InvoiceKind {
    fn as_str(self) -> &'static str {
        match self {
            InvoiceKind::Invoice => "invoice",
            InvoiceKind::Draft => "draft",
            InvoiceKind::CreditNote => "credit_note",
        }
    }
}

/// An invoice as kept and served.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct InvoiceRecord {
    pub kind: InvoiceKind,
    /// When it was made (RFC 3339).
    pub issued: String,
    /// The invoice a credit note corrects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refers_to: Option<String>,
    /// Why a credit note was issued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub invoice: lingjing_billing::Invoice,
}

fn json<T: Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn parse<T: for<'de> Deserialize<'de>>(s: &str) -> Result<T, StoreError> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Creates or replaces plan `plan.id`; true when it was new.
pub async fn put_plan(
    conn: &mut AnyConnection,
    plan: &Plan,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let existed = get_plan(conn, &plan.id).await?.is_some();
    sqlx::query(
        "INSERT INTO plans (id, doc, updated_ms) VALUES ($1, $2, $3) \
         ON CONFLICT (id) DO UPDATE SET doc = excluded.doc, updated_ms = excluded.updated_ms",
    )
    .bind(plan.id.clone())
    .bind(json(plan)?)
    .bind(now_ms)
    .execute(&mut *conn)
    .await?;
    Ok(!existed)
}

pub async fn get_plan(conn: &mut AnyConnection, id: &str) -> Result<Option<Plan>, StoreError> {
    let row = sqlx::query("SELECT doc FROM plans WHERE id = $1")
        .bind(id.to_owned())
        .fetch_optional(&mut *conn)
        .await?;
    row.map(|r| parse(&r.try_get::<String, _>(0)?)).transpose()
}

pub async fn list_plans(conn: &mut AnyConnection) -> Result<Vec<Plan>, StoreError> {
    let rows = sqlx::query("SELECT doc FROM plans ORDER BY id")
        .fetch_all(&mut *conn)
        .await?;
    rows.iter()
        .map(|r| parse(&r.try_get::<String, _>(0)?))
        .collect()
}

/// Deletes plan `id`: `Ok(None)` when there is none, `Ok(Some(tenants))` naming the
/// tenants on it (then nothing is deleted), `Ok(Some([]))` when deleted.
pub async fn delete_plan(
    conn: &mut AnyConnection,
    id: &str,
) -> Result<Option<Vec<String>>, StoreError> {
    if get_plan(conn, id).await?.is_none() {
        return Ok(None);
    }
    let users: Vec<String> =
        sqlx::query("SELECT tenant_id FROM tenant_plans WHERE plan_id = $1 ORDER BY tenant_id")
            .bind(id.to_owned())
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, _>>()?;
    if users.is_empty() {
        sqlx::query("DELETE FROM plans WHERE id = $1")
            .bind(id.to_owned())
            .execute(&mut *conn)
            .await?;
    }
    Ok(Some(users))
}

/// Puts `tenant` on `plan` (or on none).
pub async fn set_tenant_plan(
    conn: &mut AnyConnection,
    tenant: &str,
    plan: Option<&str>,
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM tenant_plans WHERE tenant_id = $1")
        .bind(tenant.to_owned())
        .execute(&mut *conn)
        .await?;
    if let Some(plan) = plan {
        sqlx::query("INSERT INTO tenant_plans (tenant_id, plan_id) VALUES ($1, $2)")
            .bind(tenant.to_owned())
            .bind(plan.to_owned())
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Every (tenant, plan), by tenant.
pub async fn tenant_plans(conn: &mut AnyConnection) -> Result<Vec<(String, String)>, StoreError> {
    sqlx::query("SELECT tenant_id, plan_id FROM tenant_plans ORDER BY tenant_id")
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
}

/// Keeps `record`: a final invoice only if the tenant has none for the month (false:
/// there was one, nothing written); a draft replaces the month's draft; a credit note is
/// added.
pub async fn put_invoice(
    conn: &mut AnyConnection,
    record: &InvoiceRecord,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let inv = &record.invoice;
    if record.kind == InvoiceKind::Draft {
        sqlx::query("DELETE FROM invoices WHERE tenant_id = $1 AND month = $2 AND kind = 'draft'")
            .bind(inv.tenant.clone())
            .bind(inv.month.to_string())
            .execute(&mut *conn)
            .await?;
    }
    let done = sqlx::query(
        "INSERT INTO invoices (number, tenant_id, month, kind, refers_to, currency, total, created_ms, doc) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING",
    )
    .bind(inv.number.clone())
    .bind(inv.tenant.clone())
    .bind(inv.month.to_string())
    .bind(record.kind.as_str())
    .bind(record.refers_to.clone())
    .bind(inv.currency.clone())
    .bind(inv.total.to_string())
    .bind(now_ms)
    .bind(json(record)?)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(done == 1)
}

/// The tenant's final invoice for `month`, if any.
pub async fn final_invoice(
    conn: &mut AnyConnection,
    tenant: &str,
    month: &str,
) -> Result<Option<InvoiceRecord>, StoreError> {
    let row = sqlx::query(
        "SELECT doc FROM invoices WHERE tenant_id = $1 AND month = $2 AND kind = 'invoice'",
    )
    .bind(tenant.to_owned())
    .bind(month.to_owned())
    .fetch_optional(&mut *conn)
    .await?;
    row.map(|r| parse(&r.try_get::<String, _>(0)?)).transpose()
}

pub async fn get_invoice(
    conn: &mut AnyConnection,
    number: &str,
) -> Result<Option<InvoiceRecord>, StoreError> {
    let row = sqlx::query("SELECT doc FROM invoices WHERE number = $1")
        .bind(number.to_owned())
        .fetch_optional(&mut *conn)
        .await?;
    row.map(|r| parse(&r.try_get::<String, _>(0)?)).transpose()
}

/// Invoices, drafts and credit notes (of `tenant` and `month` when given), by month then
/// number.
pub async fn list_invoices(
    conn: &mut AnyConnection,
    tenant: Option<&str>,
    month: Option<&str>,
) -> Result<Vec<InvoiceRecord>, StoreError> {
    let rows = sqlx::query(
        "SELECT doc FROM invoices WHERE ($1 = '' OR tenant_id = $1) AND ($2 = '' OR month = $2) \
         ORDER BY month, number",
    )
    .bind(tenant.unwrap_or("").to_owned())
    .bind(month.unwrap_or("").to_owned())
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|r| parse(&r.try_get::<String, _>(0)?))
        .collect()
}

/// How many credit notes refer to `number`.
pub async fn credit_notes_of(conn: &mut AnyConnection, number: &str) -> Result<i64, StoreError> {
    let n: i64 = sqlx::query("SELECT COUNT(*) FROM invoices WHERE refers_to = $1")
        .bind(number.to_owned())
        .fetch_one(&mut *conn)
        .await?
        .try_get(0)?;
    Ok(n)
}

/// The tenant's stored-bytes samples in `[from_ms, to_ms)`: (time, bytes over all its
/// buckets).
pub async fn stored_samples(
    conn: &mut AnyConnection,
    tenant: &str,
    from_ms: i64,
    to_ms: i64,
) -> Result<Vec<(i64, u64)>, StoreError> {
    sqlx::query(
        "SELECT at_ms, CAST(SUM(stored_bytes) AS BIGINT) FROM bucket_stored \
         WHERE tenant_id = $1 AND at_ms >= $2 AND at_ms < $3 GROUP BY at_ms ORDER BY at_ms",
    )
    .bind(tenant.to_owned())
    .bind(from_ms)
    .bind(to_ms)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|r| {
        Ok((
            r.try_get(0)?,
            u64::try_from(r.try_get::<i64, _>(1)?).unwrap_or(0),
        ))
    })
    .collect()
}

/// The tenant's storage requests and egress bytes in `[from_ms, to_ms)`.
pub async fn storage_traffic(
    conn: &mut AnyConnection,
    tenant: &str,
    from_ms: i64,
    to_ms: i64,
) -> Result<(u64, u64), StoreError> {
    let r = sqlx::query(
        "SELECT CAST(COALESCE(SUM(requests), 0) AS BIGINT), CAST(COALESCE(SUM(bytes_out), 0) AS BIGINT) \
         FROM bucket_traffic_minutes WHERE tenant_id = $1 AND minute_ms >= $2 AND minute_ms < $3",
    )
    .bind(tenant.to_owned())
    .bind(from_ms)
    .bind(to_ms)
    .fetch_one(&mut *conn)
    .await?;
    let n = |i: usize| -> Result<u64, StoreError> {
        Ok(u64::try_from(r.try_get::<i64, _>(i)?).unwrap_or(0))
    };
    Ok((n(0)?, n(1)?))
}
