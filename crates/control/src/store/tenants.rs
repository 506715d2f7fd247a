//! Tenant API keys (`api_keys`), stored only as SHA-256 hashes of their secrets.

use lingjing_model::tenant::ApiKeyInfo;
use sqlx::{AnyConnection, Row};

use crate::error::StoreError;
use crate::store::Store;

/// How many API keys `tenant` has.
pub async fn api_key_count(conn: &mut AnyConnection, tenant: &str) -> Result<i64, StoreError> {
    Ok(
        sqlx::query("SELECT COUNT(*) FROM api_keys WHERE tenant_id = $1")
            .bind(tenant.to_owned())
            .fetch_one(conn)
            .await?
            .try_get(0)?,
    )
}

/// Stores a new API key of `tenant`.
pub async fn insert_api_key(
    conn: &mut AnyConnection,
    id: &str,
    tenant: &str,
    secret_sha256: &str,
    created_at: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO api_keys (id, tenant_id, secret_sha256, created_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(id.to_owned())
    .bind(tenant.to_owned())
    .bind(secret_sha256.to_owned())
    .bind(created_at.to_owned())
    .execute(conn)
    .await?;
    Ok(())
}

/// The API keys of `tenant`, oldest first (never their secrets).
pub async fn api_keys(store: &Store, tenant: &str) -> Result<Vec<ApiKeyInfo>, StoreError> {
    let rows =
        sqlx::query("SELECT id, created_at FROM api_keys WHERE tenant_id = $1 ORDER BY created_at")
            .bind(tenant.to_owned())
            .fetch_all(store.pool())
            .await?;
    let mut out = Vec::new();
    for r in rows {
        out.push(ApiKeyInfo {
            id: r.try_get(0)?,
            tenant: tenant.to_owned(),
            created_at: r.try_get(1)?,
        });
    }
    Ok(out)
}

/// Deletes API key `key` of `tenant`; false when it has no such key.
pub async fn delete_api_key(
    conn: &mut AnyConnection,
    tenant: &str,
    key: &str,
) -> Result<bool, StoreError> {
    let done = sqlx::query("DELETE FROM api_keys WHERE tenant_id = $1 AND id = $2")
        .bind(tenant.to_owned())
        .bind(key.to_owned())
        .execute(conn)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// The tenant whose API key has this hash, if any.
pub async fn tenant_for_api_key(
    store: &Store,
    secret_sha256: &str,
) -> Result<Option<String>, StoreError> {
    let row = sqlx::query("SELECT tenant_id FROM api_keys WHERE secret_sha256 = $1")
        .bind(secret_sha256.to_owned())
        .fetch_optional(store.pool())
        .await?;
    Ok(match row {
        Some(row) => Some(row.try_get::<String, _>(0)?),
        None => None,
    })
}
