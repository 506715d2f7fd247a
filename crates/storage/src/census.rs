//! The block census behind `lingjing storage status`: how many buckets, objects and
//! versions the metadata holds, and how many of the distinct blocks they (and uploads in
//! progress) reference have fewer healthy copies than wanted: a copy on a node that is
//! down, drained or gone does not count. It reads every block map once, streaming, and
//! keeps one counter per distinct block: an operator's command, not a request path.

use std::collections::{HashMap, HashSet};

use futures::TryStreamExt;
use serde::Serialize;
use sqlx::Row;

use crate::meta::{BlockRef, Meta, MetaError};

/// What the census found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Census {
    pub buckets: u64,
    /// Keys whose latest version is an object (not a delete marker).
    pub objects: u64,
    /// Older versions and delete markers kept.
    pub noncurrent_versions: u64,
    /// Bytes of every version kept (before replication).
    pub bytes: u64,
    /// Distinct blocks referenced by versions and upload parts.
    pub blocks: u64,
    /// Blocks with fewer healthy copies than wanted.
    pub under_replicated: u64,
    /// Blocks with no healthy copy at all (unreadable until a node comes back).
    pub unavailable: u64,
}

/// Counts what `meta` holds; a block wants `wanted` copies (the replication factor, or
/// the number of storage nodes when there are fewer) on the nodes in `healthy`.
pub async fn census(
    meta: &Meta,
    healthy: &HashSet<String>,
    wanted: usize,
) -> Result<Census, MetaError> {
    let pool = meta.pool();
    let mut c = Census {
        buckets: count(pool, "SELECT COUNT(*) FROM buckets").await?,
        ..Census::default()
    };
    // Healthy copies per distinct block.
    let mut copies: HashMap<String, usize> = HashMap::new();
    let mut note = |blocks: &str| -> Result<(), MetaError> {
        let refs: Vec<BlockRef> = serde_json::from_str(blocks)
            .map_err(|e| MetaError::Corrupt(format!("block map: {e}")))?;
        for r in refs {
            let up = r.nodes.iter().filter(|n| healthy.contains(*n)).count();
            let n = copies.entry(r.id).or_insert(0);
            *n = (*n).max(up);
        }
        Ok(())
    };
    for (table, current) in [("objects", true), ("versions", false)] {
        let sql = format!("SELECT delete_marker, size, blocks FROM {table}");
        let mut rows = sqlx::query(&sql).fetch(pool);
        while let Some(row) = rows.try_next().await? {
            let marker: i64 = row.try_get(0)?;
            let size: i64 = row.try_get(1)?;
            if current && marker == 0 {
                c.objects += 1;
            } else {
                c.noncurrent_versions += 1;
            }
            c.bytes += u64::try_from(size).unwrap_or(0);
            note(&row.try_get::<String, _>(2)?)?;
        }
    }
    let mut parts = sqlx::query("SELECT blocks FROM parts").fetch(pool);
    while let Some(row) = parts.try_next().await? {
        note(&row.try_get::<String, _>(0)?)?;
    }
    let wanted = wanted.max(1);
    c.blocks = copies.len() as u64;
    c.under_replicated = copies.values().filter(|n| **n < wanted).count() as u64;
    c.unavailable = copies.values().filter(|n| **n == 0).count() as u64;
    Ok(c)
}

async fn count(pool: &sqlx::AnyPool, sql: &str) -> Result<u64, MetaError> {
    let n: i64 = sqlx::query(sql).fetch_one(pool).await?.try_get(0)?;
    Ok(u64::try_from(n).unwrap_or(0))
}
