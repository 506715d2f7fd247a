//! Garbage collection: removes from the storage nodes the blocks (and shards) that no
//! version, upload part or object references any more (deleted versions, aborted
//! multipart uploads, writes that failed after some blocks landed).
//!
//! One pass, [`collect`]: (1) list every node's blocks (`GET /v1/blocks`, paged) and keep
//! those last written before the cutoff, `now - grace`; (2) read every block map in the
//! metadata ([`crate::census::referenced_on`]), *after* the listing; (3) delete each
//! listed piece that no map names on that node with
//! `DELETE /v1/blocks/{id}?older_than_ms=cutoff`. Per node: a copy or shard left behind
//! on a node when rebalancing moved it elsewhere (`crate::rebalance`) goes too.
//!
//! **Invariant: a block a commit in flight still needs is never deleted.** A write puts
//! its blocks before it commits the row that references them, and a node renews a
//! block's time when it is written again (under the same lock as the conditional delete):
//! so every block of a write in flight was last written after the cutoff, as long as no
//! write takes longer than `grace` (24 hours by default) from its first block to its
//! commit, and the node keeps it (409). A row committed before step (2) is seen by it. A
//! copy (CopyObject, UploadPartCopy) references existing blocks without writing them;
//! its commit checks, under the source key's lock, that the source version is still there
//! (`Meta::put_object_copy`), so a copy whose source was deleted before step (2) fails
//! instead of committing a reference to collected blocks.
//!
//! A node that cannot be listed is skipped (reported); one that fails a delete keeps
//! that block until the next pass. Nothing here runs on a request path.

use std::collections::HashSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::block::{BlockId, Removed};
use crate::meta::{Meta, MetaError};
use crate::replicas::Replicas;

/// The default grace period: a block younger than this is never collected.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(24 * 3600);

/// What one pass did on one node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NodeGc {
    pub node: String,
    /// Blocks listed (all ages).
    pub listed: u64,
    /// Listed, older than the cutoff and referenced by nothing.
    pub unreferenced: u64,
    pub deleted: u64,
    pub freed_bytes: u64,
    /// Unreferenced but written again since the cutoff (a write in flight): kept.
    pub renewed: u64,
    /// Why the node could not be listed, or the first delete that failed.
    pub error: Option<String>,
}

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GcReport {
    /// (node, block or shard) pairs the metadata's maps name.
    pub referenced: u64,
    /// The cutoff, ms since the Unix epoch.
    pub cutoff_ms: u64,
    pub nodes: Vec<NodeGc>,
}

impl GcReport {
    pub fn deleted(&self) -> u64 {
        self.nodes.iter().map(|n| n.deleted).sum()
    }

    pub fn freed_bytes(&self) -> u64 {
        self.nodes.iter().map(|n| n.freed_bytes).sum()
    }
}

fn ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// One garbage-collection pass over every node of `replicas`' cluster (see the module
/// docs); blocks last written within `grace` of now are kept. Fails, deleting nothing,
/// when the metadata cannot be read whole.
pub async fn collect(
    meta: &Meta,
    replicas: &Replicas,
    grace: Duration,
) -> Result<GcReport, MetaError> {
    let cutoff = SystemTime::now().checked_sub(grace).unwrap_or(UNIX_EPOCH);
    let cutoff_ms = ms(cutoff);
    let cluster = replicas.cluster();
    // (1) Every node's blocks older than the cutoff.
    let mut listed: Vec<(NodeGc, Vec<(BlockId, u64)>)> = Vec::new();
    for node in &cluster.nodes {
        let mut gc = NodeGc {
            node: node.id.clone(),
            ..NodeGc::default()
        };
        let mut old = Vec::new();
        let listed_all = replicas
            .each_listed(&cluster.token, node, |id, b| {
                gc.listed += 1;
                if b.modified_ms < cutoff_ms {
                    old.push((id, b.len));
                }
            })
            .await;
        let old = match listed_all {
            Ok(()) => old,
            Err(e) => {
                tracing::warn!(node = %node.id, error = %e, "garbage collection cannot list a node");
                gc.error = Some(e);
                Vec::new()
            }
        };
        listed.push((gc, old));
    }
    // (2) What the metadata references, read after the listing.
    let referenced: HashSet<(String, BlockId)> = crate::census::referenced_on(meta).await?;
    // (3) The rest goes, unless written again since the cutoff.
    let mut report = GcReport {
        referenced: referenced.len() as u64,
        cutoff_ms,
        nodes: Vec::new(),
    };
    for ((mut gc, old), node) in listed.into_iter().zip(&cluster.nodes) {
        for (id, len) in old
            .into_iter()
            .filter(|(id, _)| !referenced.contains(&(node.id.clone(), *id)))
        {
            gc.unreferenced += 1;
            match replicas
                .delete_if_older(&cluster.token, node, &id, cutoff_ms)
                .await
            {
                Ok(Removed::Deleted(_)) => {
                    gc.deleted += 1;
                    gc.freed_bytes += len;
                }
                Ok(Removed::Kept) => gc.renewed += 1,
                // Gone meanwhile (quarantined, or another pass).
                Ok(Removed::Absent) => {}
                Err(e) => {
                    gc.error.get_or_insert(e);
                }
            }
        }
        if gc.deleted > 0 || gc.error.is_some() {
            tracing::info!(node = %gc.node, deleted = gc.deleted, freed_bytes = gc.freed_bytes,
                renewed = gc.renewed, error = ?gc.error, "garbage collection");
        }
        report.nodes.push(gc);
    }
    Ok(report)
}
