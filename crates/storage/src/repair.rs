//! Self-repair: puts back the copies and shards that the block maps say a node holds but
//! the node does not (a disk replaced or wiped, a node that came back empty, a copy the
//! node quarantined after a failed checksum on read or scrub).
//!
//! One pass, [`repair`]: (1) list every node's blocks (`GET /v1/blocks`); a node that
//! cannot be listed is left alone this pass (its holdings are unknown, not missing);
//! (2) read every block map ([`crate::census`]) and note each recorded copy or shard that
//! its (listed) node lacks; (3) for each block with something missing, read it (from any
//! copy, or from any `k` shards, checked against its id), and write the missing pieces
//! back to the nodes the map names: a replicated block's bytes, or the missing shards
//! re-encoded (the codec is deterministic, so a rebuilt shard has the id the map holds,
//! which is checked before it is written). So the block maps never change here.
//!
//! The pass throttles itself to `bytes_per_sec` of blocks read, so foreground requests
//! keep their latency. A block with too few pieces left to read is counted
//! `unrecoverable` (and logged); it stays in the maps, readable again if a node that
//! holds it comes back.
//!
//! Moving pieces elsewhere (off a node taken out of the layout, onto a node added, or to
//! spread a block written while a site was down) rewrites the maps: that is
//! `crate::rebalance`, which runs after each repair pass.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use serde::Serialize;

use crate::block::BlockId;
use crate::erasure;
use crate::meta::{BlockRef, CodedRef, Meta, MetaError};
use crate::replicas::{Cluster, Replicas};

/// Blocks rebuilt at once by a pass.
const REBUILDS_AT_ONCE: usize = 4;

/// What one pass found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RepairReport {
    /// Distinct blocks whose maps were checked.
    pub blocks: u64,
    /// Copies and shards the maps name that their node lacks.
    pub missing: u64,
    /// Of those, written back.
    pub repaired: u64,
    /// Blocks that could not be read (too few pieces left): their missing pieces stay.
    pub unrecoverable: u64,
    /// Pieces whose write back failed (retried next pass).
    pub failed: u64,
    /// Bytes read to rebuild.
    pub bytes_read: u64,
    /// Nodes that could not be listed (skipped), with why.
    pub unlisted: Vec<String>,
}

/// One block with something missing: its map (the first one seen) and the pieces lacking.
struct Damaged {
    block: BlockRef,
    /// Replicated: the nodes lacking the block. Coded: `(shard index, node)`.
    lacking: Vec<(usize, String)>,
}

/// One repair pass over `replicas`' cluster (see the module docs), reading at most
/// `bytes_per_sec` (0: no limit).
pub async fn repair(
    meta: &Meta,
    replicas: &Replicas,
    bytes_per_sec: u64,
) -> Result<RepairReport, MetaError> {
    let cluster = replicas.cluster();
    let mut report = RepairReport::default();
    // (1) What each node holds.
    let mut held: HashMap<String, HashSet<BlockId>> = HashMap::new();
    for node in &cluster.nodes {
        let mut ids = HashSet::new();
        match replicas
            .each_listed(&cluster.token, node, |id, _| {
                ids.insert(id);
            })
            .await
        {
            Ok(()) => {
                held.insert(node.id.clone(), ids);
            }
            Err(e) => report.unlisted.push(e),
        }
    }
    // (2) What the maps say each node should hold.
    let damaged = find_damaged(meta, &held, &mut report).await?;
    // (3) Rebuild, a few blocks at a time (each waits on reads from several nodes, then
    // writes), throttled.
    let started = Instant::now();
    let rebuilds: Vec<_> = damaged
        .iter()
        .map(|d| rebuild_tagged(replicas, &cluster, d))
        .collect();
    let mut rebuilt = futures::stream::iter(rebuilds).buffer_unordered(REBUILDS_AT_ONCE);
    while let Some((d, read)) = rebuilt.next().await {
        match read {
            Ok((bytes, repaired, failed)) => {
                report.bytes_read += bytes;
                report.repaired += repaired;
                report.failed += failed;
            }
            Err(e) => {
                report.unrecoverable += 1;
                tracing::error!(block = %d.block.id, error = %e, "repair: block cannot be read; its missing pieces stay missing");
            }
        }
        if bytes_per_sec > 0 {
            let due = Duration::from_secs_f64(report.bytes_read as f64 / bytes_per_sec as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                tokio::time::sleep(wait).await;
            }
        }
    }
    if report.missing > 0 || !report.unlisted.is_empty() {
        tracing::info!(blocks = report.blocks, missing = report.missing, repaired = report.repaired,
            unrecoverable = report.unrecoverable, failed = report.failed,
            unlisted = ?report.unlisted, "repair pass");
    }
    Ok(report)
}

/// The blocks some listed node lacks a piece of, each once.
async fn find_damaged(
    meta: &Meta,
    held: &HashMap<String, HashSet<BlockId>>,
    report: &mut RepairReport,
) -> Result<Vec<Damaged>, MetaError> {
    let mut seen: HashSet<String> = HashSet::new();
    let mut damaged = Vec::new();
    let mut bad_id: Option<String> = None;
    // Whether `node` is listed and lacks `id` (an id that does not parse is reported).
    let mut lacks = |node: &str, id: &str| -> bool {
        let Some(ids) = held.get(node) else {
            return false;
        };
        match id.parse::<BlockId>() {
            Ok(id) => !ids.contains(&id),
            Err(_) => {
                bad_id = Some(id.to_owned());
                false
            }
        }
    };
    crate::census::each_block_map(meta, |_, refs| {
        for r in refs {
            if !seen.insert(r.id.clone()) {
                continue;
            }
            let lacking: Vec<(usize, String)> = match &r.coded {
                None => r
                    .nodes
                    .iter()
                    .enumerate()
                    .filter(|(_, n)| lacks(n, &r.id))
                    .map(|(i, n)| (i, n.clone()))
                    .collect(),
                Some(c) => c
                    .shards
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| lacks(&s.node, &s.id))
                    .map(|(i, s)| (i, s.node.clone()))
                    .collect(),
            };
            if !lacking.is_empty() {
                report.missing += lacking.len() as u64;
                damaged.push(Damaged { block: r, lacking });
            }
        }
    })
    .await?;
    report.blocks = seen.len() as u64;
    match bad_id {
        Some(id) => Err(MetaError::Corrupt(format!(
            "block map names {id:?}, not a block id"
        ))),
        None => Ok(damaged),
    }
}

/// [`rebuild`] of `d`, with `d`.
async fn rebuild_tagged<'a>(
    replicas: &'a Replicas,
    cluster: &'a Cluster,
    d: &'a Damaged,
) -> (&'a Damaged, Result<(u64, u64, u64), String>) {
    (d, rebuild(replicas, cluster, d).await)
}

/// Reads `d`'s block and writes its missing pieces back: bytes read, pieces repaired,
/// pieces whose write failed.
async fn rebuild(
    replicas: &Replicas,
    cluster: &Cluster,
    d: &Damaged,
) -> Result<(u64, u64, u64), String> {
    let id: BlockId = d.block.id.parse().map_err(|e| format!("{e}"))?;
    let (mut repaired, mut failed) = (0, 0);
    let mut count = |ok: bool| {
        if ok {
            repaired += 1;
        } else {
            failed += 1;
        }
    };
    match &d.block.coded {
        None => {
            let data = replicas
                .get(&id, &d.block.nodes)
                .await
                .map_err(|e| e.to_string())?;
            let len = data.len() as u64;
            for (_, target) in &d.lacking {
                count(write_back(replicas, cluster, target, &id, data.clone()).await);
            }
            Ok((len, repaired, failed))
        }
        Some(c) => {
            let (shards, rebuilt, len) = reencode(replicas, &id, d.block.len, c).await?;
            for (i, target) in &d.lacking {
                let (want, _) = &shards[*i];
                let Some(bytes) = rebuilt.get(*i) else {
                    count(false);
                    continue;
                };
                if BlockId::of(bytes) != *want {
                    // Not the shard the map holds (another codec build?): never write it.
                    tracing::error!(block = %id, shard = i, "repair: a rebuilt shard does not match its id");
                    count(false);
                    continue;
                }
                count(write_back(replicas, cluster, target, want, bytes.clone()).await);
            }
            Ok((len, repaired, failed))
        }
    }
}

/// Reads coded block `id` (`len` bytes) from any `k` of the shards `c` names, checked
/// against its id, and codes it again: the shards as the map names them (id, node), the
/// rebuilt shards in the same order (the codec is deterministic: each has the id the map
/// holds, which callers check before writing one), and the bytes read.
pub(crate) async fn reencode(
    replicas: &Replicas,
    id: &BlockId,
    len: u64,
    c: &CodedRef,
) -> Result<(Vec<(BlockId, String)>, Vec<Bytes>, u64), String> {
    erasure::check_codec(&c.codec).map_err(|e| e.to_string())?;
    let shards: Vec<(BlockId, String)> = c
        .shards
        .iter()
        .map(|s| Ok((s.id.parse().map_err(|e| format!("{e}"))?, s.node.clone())))
        .collect::<Result<_, String>>()?;
    let data = replicas
        .get_coded(id, len, c.code, &shards)
        .await
        .map_err(|e| e.to_string())?;
    let read = data.len() as u64;
    let code = c.code;
    let rebuilt = tokio::task::spawn_blocking(move || erasure::encode(code, &data))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    Ok((shards, rebuilt, read))
}

/// Writes `piece` (a block or a shard) back to the node named `target`; whether it is
/// durable there.
async fn write_back(
    replicas: &Replicas,
    cluster: &Cluster,
    target: &str,
    id: &BlockId,
    piece: Bytes,
) -> bool {
    let Some(node) = cluster.nodes.iter().find(|n| n.id == target) else {
        return false;
    };
    match replicas.put_one(&cluster.token, node, id, piece).await {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(block = %id, node = target, error = %e, "repair: write back failed");
            false
        }
    }
}
