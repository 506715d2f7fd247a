//! Purges (`purges`): each stored with the configuration version it was issued at, so it
//! rides in the edge snapshots from that version on.

use lingjing_model::Purge;
use sqlx::{AnyConnection, Row};

use crate::error::StoreError;

const COLUMNS: &str = "id, service_id, kind, mode, targets, version, created_at";

fn row_to_purge(r: &sqlx::any::AnyRow) -> Result<Purge, StoreError> {
    let kind: String = r.try_get(2)?;
    let mode: String = r.try_get(3)?;
    let targets: String = r.try_get(4)?;
    let corrupt = |what: &str| StoreError::Corrupt(format!("purge {what}"));
    Ok(Purge {
        id: r.try_get::<i64, _>(0)? as u64,
        service: r.try_get(1)?,
        kind: serde_json::from_value(serde_json::Value::String(kind))
            .map_err(|_| corrupt("kind"))?,
        mode: serde_json::from_value(serde_json::Value::String(mode))
            .map_err(|_| corrupt("mode"))?,
        targets: serde_json::from_str(&targets).map_err(|_| corrupt("targets"))?,
        version: r.try_get::<i64, _>(5)? as u64,
        created_at: r.try_get(6)?,
    })
}

/// The newest `limit` purges, newest first.
pub async fn recent_purges(conn: &mut AnyConnection, limit: i64) -> Result<Vec<Purge>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM purges ORDER BY id DESC LIMIT $1");
    let rows = sqlx::query(&sql).bind(limit).fetch_all(conn).await?;
    rows.iter().map(row_to_purge).collect()
}

/// The `limit` most recent purges of `tenant`'s services, newest first.
pub async fn recent_tenant_purges(
    conn: &mut AnyConnection,
    tenant: &str,
    limit: i64,
) -> Result<Vec<Purge>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM purges WHERE service_id IN \
         (SELECT id FROM services WHERE tenant_id = $1) ORDER BY id DESC LIMIT $2"
    );
    let rows = sqlx::query(&sql)
        .bind(tenant.to_owned())
        .bind(limit)
        .fetch_all(conn)
        .await?;
    rows.iter().map(row_to_purge).collect()
}

/// Purge `id`, if it exists.
pub async fn purge(conn: &mut AnyConnection, id: u64) -> Result<Option<Purge>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM purges WHERE id = $1");
    let row = sqlx::query(&sql)
        .bind(id as i64)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(row_to_purge).transpose()
}

/// How many purges of `tenant`'s services were issued at or after `since` (RFC 3339).
pub async fn tenant_purges_since(
    conn: &mut AnyConnection,
    tenant: &str,
    since: &str,
) -> Result<i64, StoreError> {
    let row = sqlx::query(
        "SELECT COUNT(*) FROM purges p JOIN services s ON s.id = p.service_id \
         WHERE s.tenant_id = $1 AND p.created_at >= $2",
    )
    .bind(tenant.to_owned())
    .bind(since.to_owned())
    .fetch_one(conn)
    .await?;
    Ok(row.try_get(0)?)
}

/// A purge to store: its kind, mode and targets as stored (`url`, `hard`, a JSON array).
#[derive(Debug, Clone, Copy)]
pub struct NewPurge<'a> {
    pub service: &'a str,
    pub kind: &'a str,
    pub mode: &'a str,
    pub targets: &'a str,
    pub version: u64,
    pub created_at: &'a str,
}

/// Stores a purge; returns its id.
pub async fn insert_purge(conn: &mut AnyConnection, p: NewPurge<'_>) -> Result<u64, StoreError> {
    let row = sqlx::query(
        "INSERT INTO purges (service_id, kind, mode, targets, version, created_at) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(p.service.to_owned())
    .bind(p.kind.to_owned())
    .bind(p.mode.to_owned())
    .bind(p.targets.to_owned())
    .bind(p.version as i64)
    .bind(p.created_at.to_owned())
    .fetch_one(conn)
    .await?;
    Ok(row.try_get::<i64, _>(0)? as u64)
}
