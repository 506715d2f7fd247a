//! Artefacts in the database: an upload's chunks written under its own id as they arrive
//! (each its own short statement, so a slow upload holds no lock), then, once the digest
//! matches, recorded and handed to the artefact in one transaction; an abandoned upload
//! is swept. Reads go chunk by chunk.

use lingjing_model::artifact::ArtifactInfo;
use sqlx::{AnyConnection, Row};

use crate::error::StoreError;

/// Bytes per stored chunk.
pub const CHUNK_BYTES: usize = 1 << 20;

fn db(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Artefact `digest`, if it is kept.
pub async fn info(
    conn: &mut AnyConnection,
    digest: &str,
) -> Result<Option<ArtifactInfo>, StoreError> {
    let row = sqlx::query("SELECT size, created_at FROM artifacts WHERE digest = $1")
        .bind(digest.to_owned())
        .fetch_optional(conn)
        .await?;
    row.map(|r| {
        Ok(ArtifactInfo {
            digest: digest.to_owned(),
            size: u64::try_from(r.try_get::<i64, _>(0)?).unwrap_or(0),
            created_at: r.try_get(1)?,
        })
    })
    .transpose()
}

/// Every artefact, newest first.
pub async fn list(conn: &mut AnyConnection) -> Result<Vec<ArtifactInfo>, StoreError> {
    let rows = sqlx::query(
        "SELECT digest, size, created_at FROM artifacts ORDER BY created_at DESC, digest",
    )
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(ArtifactInfo {
                digest: r.try_get(0)?,
                size: u64::try_from(r.try_get::<i64, _>(1)?).unwrap_or(0),
                created_at: r.try_get(2)?,
            })
        })
        .collect()
}

/// Starts upload `id` of `digest`.
pub async fn begin(
    conn: &mut AnyConnection,
    id: &str,
    digest: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO artifact_uploads (id, digest, started_ms) VALUES ($1, $2, $3)")
        .bind(id.to_owned())
        .bind(digest.to_owned())
        .bind(now_ms)
        .execute(conn)
        .await?;
    Ok(())
}

/// Writes chunk `seq` of upload (or artefact) `owner`.
pub async fn put_chunk(
    conn: &mut AnyConnection,
    owner: &str,
    seq: u64,
    data: Vec<u8>,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO artifact_chunks (owner, seq, data) VALUES ($1, $2, $3)")
        .bind(owner.to_owned())
        .bind(db(seq))
        .bind(data)
        .execute(conn)
        .await?;
    Ok(())
}

/// Drops upload `id` and its chunks.
pub async fn discard(conn: &mut AnyConnection, id: &str) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM artifact_chunks WHERE owner = $1")
        .bind(id.to_owned())
        .execute(&mut *conn)
        .await?;
    forget_upload(conn, id).await
}

/// Drops the record of upload `id` (not its chunks).
async fn forget_upload(conn: &mut AnyConnection, id: &str) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM artifact_uploads WHERE id = $1")
        .bind(id.to_owned())
        .execute(conn)
        .await?;
    Ok(())
}

/// Drops uploads started before `before_ms` (their uploader is gone); how many.
pub async fn sweep(conn: &mut AnyConnection, before_ms: i64) -> Result<usize, StoreError> {
    let rows = sqlx::query("SELECT id FROM artifact_uploads WHERE started_ms < $1")
        .bind(before_ms)
        .fetch_all(&mut *conn)
        .await?;
    for r in &rows {
        discard(&mut *conn, &r.try_get::<String, _>(0)?).await?;
    }
    Ok(rows.len())
}

/// Whether [`finish`] recorded a new artefact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finished {
    Created,
    /// Another upload of the same digest finished first: this one's chunks are dropped.
    Existed,
}

/// Records upload `id` as artefact `digest` (its bytes checked by the caller) and hands it
/// its chunks; within the caller's transaction.
pub async fn finish(
    conn: &mut AnyConnection,
    id: &str,
    digest: &str,
    size: u64,
    chunks: u64,
    created_at: &str,
) -> Result<Finished, StoreError> {
    if info(&mut *conn, digest).await?.is_some() {
        discard(conn, id).await?;
        return Ok(Finished::Existed);
    }
    sqlx::query("INSERT INTO artifacts (digest, size, chunks, created_at) VALUES ($1, $2, $3, $4)")
        .bind(digest.to_owned())
        .bind(db(size))
        .bind(db(chunks))
        .bind(created_at.to_owned())
        .execute(&mut *conn)
        .await?;
    sqlx::query("UPDATE artifact_chunks SET owner = $1 WHERE owner = $2")
        .bind(digest.to_owned())
        .bind(id.to_owned())
        .execute(&mut *conn)
        .await?;
    forget_upload(conn, id).await?;
    Ok(Finished::Created)
}

/// Chunk `seq` of artefact `digest`.
pub async fn chunk(
    conn: &mut AnyConnection,
    digest: &str,
    seq: u64,
) -> Result<Option<Vec<u8>>, StoreError> {
    let row = sqlx::query("SELECT data FROM artifact_chunks WHERE owner = $1 AND seq = $2")
        .bind(digest.to_owned())
        .bind(db(seq))
        .fetch_optional(conn)
        .await?;
    row.map(|r| r.try_get::<Vec<u8>, _>(0).map_err(StoreError::from))
        .transpose()
}
