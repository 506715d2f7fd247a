//! Node join tokens (`node_join_tokens`) and credentials (`node_credentials`), both stored
//! only as SHA-256 hashes of their secrets.

use sqlx::{AnyConnection, Row};

use crate::error::StoreError;
use crate::store::Store;

/// Stores a new join token for `node`.
pub async fn insert_join_token(
    conn: &mut AnyConnection,
    secret_sha256: &str,
    node: &str,
    created_at: &str,
    expires_at_ms: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO node_join_tokens (secret_sha256, node_id, created_at, expires_at_ms) VALUES ($1, $2, $3, $4)",
    )
    .bind(secret_sha256.to_owned())
    .bind(node.to_owned())
    .bind(created_at.to_owned())
    .bind(expires_at_ms)
    .execute(conn)
    .await?;
    Ok(())
}

/// Uses up the join token: true when it was `node`'s, unused and not expired at `now_ms`
/// (it is then marked used at `used_at`).
pub async fn use_join_token(
    conn: &mut AnyConnection,
    secret_sha256: &str,
    node: &str,
    used_at: &str,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let used = sqlx::query(
        "UPDATE node_join_tokens SET used_at = $1 WHERE secret_sha256 = $2 AND node_id = $3 AND used_at IS NULL AND expires_at_ms > $4 RETURNING node_id",
    )
    .bind(used_at.to_owned())
    .bind(secret_sha256.to_owned())
    .bind(node.to_owned())
    .bind(now_ms)
    .fetch_optional(conn)
    .await?;
    Ok(used.is_some())
}

/// A stored join token, as far as a refusal needs to explain it.
#[derive(Debug, Clone)]
pub struct JoinTokenRow {
    /// The node it was issued for.
    pub node: String,
    /// When it was used, if it was.
    pub used_at: Option<String>,
}

/// The join token with this hash, if any.
pub async fn join_token(
    conn: &mut AnyConnection,
    secret_sha256: &str,
) -> Result<Option<JoinTokenRow>, StoreError> {
    let row = sqlx::query(
        "SELECT node_id, used_at, expires_at_ms FROM node_join_tokens WHERE secret_sha256 = $1",
    )
    .bind(secret_sha256.to_owned())
    .fetch_optional(conn)
    .await?;
    Ok(match row {
        Some(r) => Some(JoinTokenRow {
            node: r.try_get(0)?,
            used_at: r.try_get(1)?,
        }),
        None => None,
    })
}

/// Stores a new credential of `node`.
pub async fn insert_credential(
    conn: &mut AnyConnection,
    node: &str,
    secret_sha256: &str,
    created_at: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO node_credentials (node_id, secret_sha256, created_at) VALUES ($1, $2, $3)",
    )
    .bind(node.to_owned())
    .bind(secret_sha256.to_owned())
    .bind(created_at.to_owned())
    .execute(conn)
    .await?;
    Ok(())
}

/// The node whose credential has this hash, if any.
pub async fn node_for_credential(
    store: &Store,
    secret_sha256: &str,
) -> Result<Option<String>, StoreError> {
    let row = sqlx::query("SELECT node_id FROM node_credentials WHERE secret_sha256 = $1")
        .bind(secret_sha256.to_owned())
        .fetch_optional(store.pool())
        .await?;
    Ok(match row {
        Some(row) => Some(row.try_get::<String, _>(0)?),
        None => None,
    })
}

/// Deletes every credential of `node`; returns how many there were.
pub async fn delete_credentials(conn: &mut AnyConnection, node: &str) -> Result<u64, StoreError> {
    Ok(
        sqlx::query("DELETE FROM node_credentials WHERE node_id = $1")
            .bind(node.to_owned())
            .execute(conn)
            .await?
            .rows_affected(),
    )
}

/// Deletes the unused join tokens of `node`; returns how many there were.
pub async fn delete_unused_join_tokens(
    conn: &mut AnyConnection,
    node: &str,
) -> Result<u64, StoreError> {
    Ok(
        sqlx::query("DELETE FROM node_join_tokens WHERE node_id = $1 AND used_at IS NULL")
            .bind(node.to_owned())
            .execute(conn)
            .await?
            .rows_affected(),
    )
}
