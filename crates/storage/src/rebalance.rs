//! Rebalancing: moves copies and shards to where the cluster layout places them now, so
//! that a node added to the layout takes its share of the data already stored, a node
//! taken out of it (capacity 0, or gone from the layout) is emptied, a node down for
//! longer than the gone-after period (`Replicas::set_gone_after`, an hour by default) has
//! its pieces rebuilt on the nodes left (from the other copies or shards), and the shards
//! of a block written while a site was down are spread over the sites again.
//!
//! One pass, [`rebalance`], pages through every block map (latest versions, older
//! versions, parts of uploads in progress). For each map entry whose pieces are not where
//! the layout wants them ([`wanted`]: the first nodes of the block's placement order among
//! those that take data; a coded block's shard `i` on the `i`-th), it reads the block
//! (from its copies, or from any `k` shards, checked against its id), writes the pieces
//! the wanted nodes lack, and only when all of them are durable rewrites that row's map,
//! if the row still holds the map it read (`Meta::rewrite_map`, compare-and-set; a row
//! written meanwhile is left for the next pass). A block whose wanted nodes include one
//! that is down is left for a later pass. Pieces the maps no longer name are left where
//! they are, written again so that their time is renewed: garbage collection removes
//! them once no map names them on that node and a whole grace period has passed, so a
//! read or a copy that still holds an old map finds them, and a write in flight never
//! loses one.
//!
//! Reads keep working throughout: a map always names pieces that are durable, before and
//! after its rewrite. The pass throttles itself to `bytes_per_sec` of blocks read.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::block::BlockId;
use crate::meta::{BlockRef, MapTable, Meta, MetaError, ShardRef};
use crate::placement::{self, NodeRef};
use crate::replicas::{Cluster, Replicas};

/// Rows read per page.
const PAGE: i64 = 200;
/// Most moved entries remembered for the rows after (then forgotten; a row sharing a
/// forgotten one just moves it again, writing nothing new).
const MAX_REMEMBERED: usize = 100_000;

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RebalanceReport {
    /// Rows (versions and parts) whose maps were read.
    pub rows: u64,
    /// Map entries not placed as the layout wants.
    pub misplaced: u64,
    /// Pieces written to the nodes the layout wants.
    pub pieces_written: u64,
    /// Rows whose maps were rewritten.
    pub maps_rewritten: u64,
    /// Entries left for a later pass (a wanted node down, a row changed meanwhile, a
    /// write or read that failed).
    pub deferred: u64,
    /// Bytes read to move pieces.
    pub bytes_read: u64,
}

/// Where the layout wants `block`'s pieces: for a replicated block, its copy count's
/// first nodes of its placement order (among those that take data); for a coded block,
/// shard `i` on the `i`-th. None when the cluster has too few such nodes.
pub(crate) fn wanted<'a>(
    cluster: &'a Cluster,
    gone: &HashSet<String>,
    block: &BlockRef,
) -> Option<Vec<&'a NodeRef>> {
    let id: BlockId = block.id.parse().ok()?;
    let order: Vec<&NodeRef> = placement::order(&id, &cluster.nodes)
        .into_iter()
        .filter(|n| n.weight > 0 && !gone.contains(&n.id))
        .collect();
    // A replicated block keeps as many copies as it has, or as the policy wants if more
    // (a block written short of a copy gets it back here).
    let pieces = match &block.coded {
        Some(c) => c.code.total(),
        None => block.nodes.len().max(cluster.replicas).max(1),
    };
    (order.len() >= pieces).then(|| order[..pieces].to_vec())
}

/// Whether `block`'s pieces are where `want` says.
fn placed_as(block: &BlockRef, want: &[&NodeRef]) -> bool {
    match &block.coded {
        Some(c) => c.shards.iter().zip(want).all(|(s, n)| s.node == n.id),
        None => block.nodes.len() == want.len() && want.iter().all(|n| block.nodes.contains(&n.id)),
    }
}

/// One rebalancing pass (see the module docs), reading at most `bytes_per_sec` (0: no
/// limit).
pub async fn rebalance(
    meta: &Meta,
    replicas: &Replicas,
    bytes_per_sec: u64,
) -> Result<RebalanceReport, MetaError> {
    let cluster = replicas.cluster();
    let gone = replicas.gone();
    let mut report = RebalanceReport::default();
    // Map entries already moved this pass, by the entry as it was (a block shared by
    // rows with the same entry moves once; a row whose entry differs moves on its own):
    // the entry to write instead.
    let mut moved: HashMap<String, BlockRef> = HashMap::new();
    let started = Instant::now();
    for table in MapTable::ALL {
        let mut after: Option<Vec<String>> = None;
        loop {
            let page = meta.map_page(table, after.as_deref(), PAGE).await?;
            let Some((last, _)) = page.last() else {
                break;
            };
            after = Some(last.clone());
            for (key, stored) in page {
                report.rows += 1;
                let mut refs: Vec<BlockRef> = serde_json::from_str(&stored)
                    .map_err(|e| MetaError::Corrupt(format!("block map: {e}")))?;
                let mut changed = false;
                for r in &mut refs {
                    let Some(want) = wanted(&cluster, &gone, r) else {
                        continue;
                    };
                    if placed_as(r, &want) {
                        continue;
                    }
                    report.misplaced += 1;
                    let cache_key = serde_json::to_string(&*r)
                        .map_err(|e| MetaError::Corrupt(e.to_string()))?;
                    if let Some(done) = moved.get(&cache_key) {
                        *r = done.clone();
                        changed = true;
                        continue;
                    }
                    if want.iter().any(|n| cluster.down.contains(&n.id)) {
                        report.deferred += 1;
                        continue;
                    }
                    match move_block(replicas, &cluster, r, &want).await {
                        Ok((next, written, read)) => {
                            report.pieces_written += written;
                            report.bytes_read += read;
                            if moved.len() >= MAX_REMEMBERED {
                                moved.clear();
                            }
                            moved.insert(cache_key, next.clone());
                            *r = next;
                            changed = true;
                        }
                        Err(e) => {
                            report.deferred += 1;
                            tracing::warn!(block = %r.id, error = %e, "rebalance: block not moved");
                        }
                    }
                    if bytes_per_sec > 0 {
                        let due = Duration::from_secs_f64(
                            report.bytes_read as f64 / bytes_per_sec as f64,
                        );
                        if let Some(wait) = due.checked_sub(started.elapsed()) {
                            tokio::time::sleep(wait).await;
                        }
                    }
                }
                if changed {
                    let next = serde_json::to_string(&refs)
                        .map_err(|e| MetaError::Corrupt(e.to_string()))?;
                    if meta.rewrite_map(table, &key, &stored, &next).await? {
                        report.maps_rewritten += 1;
                    } else {
                        report.deferred += 1;
                    }
                }
            }
        }
    }
    if report.misplaced > 0 {
        tracing::info!(
            rows = report.rows,
            misplaced = report.misplaced,
            pieces_written = report.pieces_written,
            maps_rewritten = report.maps_rewritten,
            deferred = report.deferred,
            "rebalance pass"
        );
    }
    Ok(report)
}

/// Writes `piece` again to node `node` (best effort: a node that is down or gone keeps
/// nothing anyway), so that its time is renewed.
async fn renew(
    replicas: &Replicas,
    cluster: &Cluster,
    node: &str,
    id: &BlockId,
    piece: bytes::Bytes,
) {
    if let Some(n) = cluster.nodes.iter().find(|n| n.id == node)
        && !cluster.down.contains(node)
        && let Err(e) = replicas.put_one(&cluster.token, n, id, piece).await
    {
        tracing::debug!(block = %id, node, error = %e, "rebalance: old piece not renewed");
    }
}

/// Reads `block`, writes the pieces `want` lacks, and returns the map entry placing it
/// there, the pieces written and the bytes read; an error leaves everything as it was.
async fn move_block(
    replicas: &Replicas,
    cluster: &Cluster,
    block: &BlockRef,
    want: &[&NodeRef],
) -> Result<(BlockRef, u64, u64), String> {
    let id: BlockId = block.id.parse().map_err(|e| format!("{e}"))?;
    let mut written = 0;
    match &block.coded {
        None => {
            let data = replicas
                .get(&id, &block.nodes)
                .await
                .map_err(|e| e.to_string())?;
            for node in want.iter().filter(|n| !block.nodes.contains(&n.id)) {
                replicas
                    .put_one(&cluster.token, node, &id, data.clone())
                    .await?;
                written += 1;
            }
            // The copies left behind are written again (the node only renews their time):
            // garbage collection keeps them for its whole grace period from now, so a
            // read or a copy that took the old map before the rewrite still finds them.
            for old in block
                .nodes
                .iter()
                .filter(|n| !want.iter().any(|w| &w.id == *n))
            {
                renew(replicas, cluster, old, &id, data.clone()).await;
            }
            let next = BlockRef {
                nodes: want.iter().map(|n| n.id.clone()).collect(),
                ..block.clone()
            };
            Ok((next, written, data.len() as u64))
        }
        Some(c) => {
            let (shards, rebuilt, read) =
                crate::repair::reencode(replicas, &id, block.len, c).await?;
            for (i, (sid, node)) in shards.iter().enumerate() {
                if want.get(i).is_some_and(|w| w.id != *node)
                    && let Some(bytes) = rebuilt.get(i)
                {
                    renew(replicas, cluster, node, sid, bytes.clone()).await;
                }
            }
            let mut next_shards = Vec::with_capacity(shards.len());
            for (i, ((sid, node), target)) in shards.iter().zip(want).enumerate() {
                if *node != target.id {
                    let bytes = rebuilt.get(i).ok_or("the codec made too few shards")?;
                    if BlockId::of(bytes) != *sid {
                        return Err(format!("rebuilt shard {i} does not match its id"));
                    }
                    replicas
                        .put_one(&cluster.token, target, sid, bytes.clone())
                        .await?;
                    written += 1;
                }
                next_shards.push(ShardRef {
                    id: sid.to_string(),
                    node: target.id.clone(),
                });
            }
            let next = BlockRef {
                coded: Some(crate::meta::CodedRef {
                    shards: next_shards,
                    ..c.clone()
                }),
                ..block.clone()
            };
            Ok((next, written, read))
        }
    }
}
