//! The block census behind `lingjing storage status`: how many buckets, objects and
//! versions the metadata holds, and how many of the distinct blocks they (and uploads in
//! progress) reference have fewer healthy copies (replicated blocks) or shards (coded
//! blocks) than wanted: a copy or shard on a node that is down, drained or gone does not
//! count. It reads every block map once, streaming, and
//! keeps one counter per distinct block: an operator's command, not a request path.

use std::collections::{HashMap, HashSet};

use futures::TryStreamExt;
use serde::Serialize;
use sqlx::Row;

use crate::block::BlockId;
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
    /// Blocks with fewer healthy copies or shards than wanted.
    pub under_replicated: u64,
    /// Blocks one more lost node away from unreadable: a single healthy copy, or `k`
    /// healthy shards of a `k+m` code.
    pub at_risk: u64,
    /// Blocks that cannot be read (no healthy copy, fewer than `k` healthy shards) until
    /// a node comes back.
    pub unavailable: u64,
    /// Of `blocks`, those erasure-coded.
    pub coded_blocks: u64,
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
    let wanted = wanted.max(1);
    // Per distinct block: healthy copies or shards, how many are wanted, how many a read
    // needs.
    let mut copies: HashMap<String, Health> = HashMap::new();
    each_block_map(meta, |version, refs| {
        if let Some(v) = version {
            if v.current && !v.delete_marker {
                c.objects += 1;
            } else {
                c.noncurrent_versions += 1;
            }
            c.bytes += v.size;
        }
        for r in refs {
            let seen = match &r.coded {
                None => Health {
                    up: r.nodes.iter().filter(|n| healthy.contains(*n)).count(),
                    wanted,
                    needed: 1,
                },
                Some(coded) => Health {
                    up: coded
                        .shards
                        .iter()
                        .filter(|s| healthy.contains(&s.node))
                        .count(),
                    wanted: coded.code.total(),
                    needed: coded.code.data(),
                },
            };
            let h = copies.entry(r.id).or_insert(Health { up: 0, ..seen });
            h.up = h.up.max(seen.up);
        }
    })
    .await?;
    c.blocks = copies.len() as u64;
    for h in copies.values() {
        c.under_replicated += u64::from(h.up < h.wanted);
        c.at_risk += u64::from(h.up == h.needed);
        c.unavailable += u64::from(h.up < h.needed);
        c.coded_blocks += u64::from(h.needed > 1);
    }
    Ok(c)
}

/// One block's healthy copies or shards (`up`), how many it should have, and how many a
/// read needs.
#[derive(Debug, Clone, Copy)]
struct Health {
    up: usize,
    wanted: usize,
    needed: usize,
}

/// What the metadata says of one version.
pub(crate) struct VersionRow {
    /// In `objects` (the key's latest), not `versions`.
    current: bool,
    delete_marker: bool,
    size: u64,
}

/// Calls `visit` with every block map the metadata holds, streaming: each version's
/// (with the version) and each upload part's (`None`).
pub(crate) async fn each_block_map(
    meta: &Meta,
    mut visit: impl FnMut(Option<VersionRow>, Vec<BlockRef>),
) -> Result<(), MetaError> {
    let pool = meta.pool();
    let parse = |blocks: &str| -> Result<Vec<BlockRef>, MetaError> {
        serde_json::from_str(blocks).map_err(|e| MetaError::Corrupt(format!("block map: {e}")))
    };
    for (table, current) in [("objects", true), ("versions", false)] {
        let sql = format!("SELECT delete_marker, size, blocks FROM {table}");
        let mut rows = sqlx::query(&sql).fetch(pool);
        while let Some(row) = rows.try_next().await? {
            let marker: i64 = row.try_get(0)?;
            let size: i64 = row.try_get(1)?;
            let version = VersionRow {
                current,
                delete_marker: marker != 0,
                size: u64::try_from(size).unwrap_or(0),
            };
            visit(Some(version), parse(&row.try_get::<String, _>(2)?)?);
        }
    }
    let mut parts = sqlx::query("SELECT blocks FROM parts").fetch(pool);
    while let Some(row) = parts.try_next().await? {
        visit(None, parse(&row.try_get::<String, _>(0)?)?);
    }
    Ok(())
}

/// Every (node, block or shard id) the block maps name: what garbage collection must
/// keep on each node. A map entry whose id does not parse is an error.
pub async fn referenced_on(meta: &Meta) -> Result<HashSet<(String, BlockId)>, MetaError> {
    let mut held = HashSet::new();
    let mut bad: Option<String> = None;
    each_block_map(meta, |_, refs| {
        for r in refs {
            let pieces: Vec<(&String, &String)> = match &r.coded {
                None => r.nodes.iter().map(|n| (n, &r.id)).collect(),
                Some(c) => c.shards.iter().map(|s| (&s.node, &s.id)).collect(),
            };
            for (node, id) in pieces {
                match id.parse::<BlockId>() {
                    Ok(id) => {
                        held.insert((node.clone(), id));
                    }
                    Err(_) => bad = Some(id.clone()),
                }
            }
        }
    })
    .await?;
    match bad {
        Some(id) => Err(MetaError::Corrupt(format!(
            "block map names {id:?}, not a block id"
        ))),
        None => Ok(held),
    }
}

async fn count(pool: &sqlx::AnyPool, sql: &str) -> Result<u64, MetaError> {
    let n: i64 = sqlx::query(sql).fetch_one(pool).await?.try_get(0)?;
    Ok(u64::try_from(n).unwrap_or(0))
}
