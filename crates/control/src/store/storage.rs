//! Object storage's rows in the control plane: tenants' S3 access keys (`s3_keys`, with
//! their secrets, which the gateways need for SigV4), the cluster token storage nodes and
//! gateways share (in `meta`), and the storage nodes' disk reports (`storage_reports`).

use std::collections::BTreeMap;

use lingjing_model::snapshot::{S3Credential, StorageReport};
use lingjing_model::tenant::S3KeyInfo;
use sqlx::{AnyConnection, Row};

use crate::error::StoreError;

/// The `meta` key of the cluster token.
pub const CLUSTER_TOKEN_KEY: &str = "storage_cluster_token";

/// How many S3 keys `tenant` has.
pub async fn s3_key_count(conn: &mut AnyConnection, tenant: &str) -> Result<i64, StoreError> {
    Ok(
        sqlx::query("SELECT COUNT(*) FROM s3_keys WHERE tenant_id = $1")
            .bind(tenant.to_owned())
            .fetch_one(conn)
            .await?
            .try_get(0)?,
    )
}

/// Stores a new S3 key of `tenant`.
pub async fn insert_s3_key(
    conn: &mut AnyConnection,
    key: &S3Credential,
    created_at: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO s3_keys (access_key, tenant_id, secret, created_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(key.access_key.clone())
    .bind(key.tenant.clone())
    .bind(key.secret.clone())
    .bind(created_at.to_owned())
    .execute(conn)
    .await?;
    Ok(())
}

/// The S3 keys of `tenant`, oldest first (never their secrets).
pub async fn s3_keys(conn: &mut AnyConnection, tenant: &str) -> Result<Vec<S3KeyInfo>, StoreError> {
    let rows = sqlx::query(
        "SELECT access_key, created_at FROM s3_keys WHERE tenant_id = $1 ORDER BY created_at, access_key",
    )
    .bind(tenant.to_owned())
    .fetch_all(conn)
    .await?;
    let mut out = Vec::new();
    for r in rows {
        out.push(S3KeyInfo {
            access_key: r.try_get(0)?,
            tenant: tenant.to_owned(),
            created_at: r.try_get(1)?,
        });
    }
    Ok(out)
}

/// The console's S3 key of `tenant` (access key starting with
/// [`lingjing_model::tenant::CONSOLE_S3_KEY_PREFIX`]), if it has one.
pub async fn console_s3_key(
    conn: &mut AnyConnection,
    tenant: &str,
) -> Result<Option<S3Credential>, StoreError> {
    let row = sqlx::query(
        "SELECT access_key, secret FROM s3_keys WHERE tenant_id = $1 AND access_key LIKE $2 ORDER BY access_key LIMIT 1",
    )
    .bind(tenant.to_owned())
    .bind(format!("{}%", lingjing_model::tenant::CONSOLE_S3_KEY_PREFIX))
    .fetch_optional(conn)
    .await?;
    row.map(|r| {
        Ok(S3Credential {
            access_key: r.try_get(0)?,
            secret: r.try_get(1)?,
            tenant: tenant.to_owned(),
            read_only_bucket: None,
        })
    })
    .transpose()
}

/// Deletes S3 key `access_key` of `tenant`; false when it has no such key.
pub async fn delete_s3_key(
    conn: &mut AnyConnection,
    tenant: &str,
    access_key: &str,
) -> Result<bool, StoreError> {
    let done = sqlx::query("DELETE FROM s3_keys WHERE tenant_id = $1 AND access_key = $2")
        .bind(tenant.to_owned())
        .bind(access_key.to_owned())
        .execute(conn)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// Every tenant's S3 keys with their secrets, for the gateways' snapshot.
pub async fn all_s3_credentials(conn: &mut AnyConnection) -> Result<Vec<S3Credential>, StoreError> {
    let rows = sqlx::query("SELECT access_key, secret, tenant_id FROM s3_keys ORDER BY access_key")
        .fetch_all(conn)
        .await?;
    let mut out = Vec::new();
    for r in rows {
        out.push(S3Credential {
            access_key: r.try_get(0)?,
            secret: r.try_get(1)?,
            tenant: r.try_get(2)?,
            read_only_bucket: None,
        });
    }
    Ok(out)
}

/// The cluster token, if one was made.
pub async fn cluster_token(conn: &mut AnyConnection) -> Result<Option<String>, StoreError> {
    let row = sqlx::query("SELECT value FROM meta WHERE key = $1")
        .bind(CLUSTER_TOKEN_KEY)
        .fetch_optional(conn)
        .await?;
    Ok(match row {
        Some(r) => Some(r.try_get::<String, _>(0)?),
        None => None,
    })
}

/// Records a storage node's disk report.
pub async fn record_report(
    conn: &mut AnyConnection,
    node: &str,
    report: &StorageReport,
    at: &str,
) -> Result<(), StoreError> {
    let clamp = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    sqlx::query("DELETE FROM storage_reports WHERE node_id = $1")
        .bind(node.to_owned())
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO storage_reports (node_id, used_bytes, free_bytes, blocks, reported_at, \
         last_scrub_ms, scrub_running, corrupt_found) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(node.to_owned())
    .bind(clamp(report.used_bytes))
    .bind(clamp(report.free_bytes))
    .bind(clamp(report.blocks))
    .bind(at.to_owned())
    .bind(report.last_scrub_ms.map(clamp))
    .bind(i64::from(report.scrub_running))
    .bind(clamp(report.corrupt_found))
    .execute(conn)
    .await?;
    Ok(())
}

/// The last disk report of every storage node that sent one, with its time.
pub async fn reports(
    conn: &mut AnyConnection,
) -> Result<BTreeMap<String, (StorageReport, String)>, StoreError> {
    let rows = sqlx::query(
        "SELECT node_id, used_bytes, free_bytes, blocks, reported_at, last_scrub_ms, \
         scrub_running, corrupt_found FROM storage_reports",
    )
    .fetch_all(conn)
    .await?;
    let mut out = BTreeMap::new();
    for r in rows {
        let n = |i: usize| -> Result<u64, StoreError> {
            Ok(u64::try_from(r.try_get::<i64, _>(i)?).unwrap_or(0))
        };
        out.insert(
            r.try_get::<String, _>(0)?,
            (
                StorageReport {
                    used_bytes: n(1)?,
                    free_bytes: n(2)?,
                    blocks: n(3)?,
                    last_scrub_ms: r
                        .try_get::<Option<i64>, _>(5)?
                        .map(|v| u64::try_from(v).unwrap_or(0)),
                    scrub_running: n(6)? != 0,
                    corrupt_found: n(7)?,
                },
                r.try_get::<String, _>(4)?,
            ),
        );
    }
    Ok(out)
}

/// The cluster token, made (random) on first call; every control-plane replica that
/// races here ends with the same one.
pub async fn ensure_cluster_token(conn: &mut AnyConnection) -> Result<String, StoreError> {
    if let Some(t) = cluster_token(&mut *conn).await? {
        return Ok(t);
    }
    let token = format!("ljs_{}", crate::auth::random_hex(24));
    sqlx::query("INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
        .bind(CLUSTER_TOKEN_KEY)
        .bind(token)
        .execute(&mut *conn)
        .await?;
    cluster_token(conn)
        .await?
        .ok_or_else(|| StoreError::Corrupt("the storage cluster token was not stored".into()))
}

/// The `meta` key the applied storage layout is kept under (JSON).
pub const LAYOUT_KEY: &str = "storage_layout";

/// The applied storage layout; version 0 (no nodes) when none was applied.
pub async fn layout(
    conn: &mut AnyConnection,
) -> Result<lingjing_model::storage_layout::StorageLayout, StoreError> {
    let row = sqlx::query("SELECT value FROM meta WHERE key = $1")
        .bind(LAYOUT_KEY)
        .fetch_optional(conn)
        .await?;
    match row {
        Some(r) => serde_json::from_str(&r.try_get::<String, _>(0)?)
            .map_err(|e| StoreError::Corrupt(format!("storage layout: {e}"))),
        None => Ok(Default::default()),
    }
}

/// Stores `layout` as the applied one.
pub async fn set_layout(
    conn: &mut AnyConnection,
    layout: &lingjing_model::storage_layout::StorageLayout,
) -> Result<(), StoreError> {
    let body = serde_json::to_string(layout).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    sqlx::query(
        "INSERT INTO meta (key, value) VALUES ($1, $2) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )
    .bind(LAYOUT_KEY)
    .bind(body)
    .execute(conn)
    .await?;
    Ok(())
}
