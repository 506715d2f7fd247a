//! The gateway's side of the storage nodes: writing a block to its replicas and reading
//! it back from whichever replica answers.
//!
//! **Writes** go to the first `replicas` nodes of the block's [`placement::order`] at
//! once; a node that fails is replaced by the next in the order. A write is acknowledged
//! only when it is durable on a write quorum (a majority of `replicas`) spanning at least
//! two sites when the cluster has two or more: then losing any one site loses no
//! acknowledged block. A write short of that fails (what reached some nodes is harmless:
//! blocks are content-addressed, and unreferenced ones are collected later).
//!
//! **Reads** try the nodes that acknowledged the block first (the object's block map),
//! then the rest in placement order; a node that is down, does not hold the block, or
//! holds a corrupt copy is skipped. The node sends a block without hashing it
//! (`?check=false`): the bytes are hashed here, once, before they are returned; when they
//! do not match, the node is asked again with its own check, which quarantines a rotted
//! copy (500) or sends good bytes (the first ones were damaged on the way). So every read
//! is checked end to end, a replica that lies is skipped, and rot is quarantined where it is.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::join_all;

use crate::block::{BlockId, Removed};
use crate::node::{BlockList, ListedBlock, MAX_LIST};
use crate::placement::{self, NodeRef};
use lingjing_model::ErasureCode;

/// Time allowed for one block request to one node.
pub const NODE_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a block could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    #[error(
        "block {id} is durable on {acked} node(s) in {sites} site(s); a write needs {quorum} in {sites_needed} site(s): {failures}"
    )]
    NoQuorum {
        id: BlockId,
        acked: usize,
        sites: usize,
        quorum: usize,
        sites_needed: usize,
        failures: String,
    },
    #[error("no storage node could serve block {id}: {failures}")]
    Unreadable { id: BlockId, failures: String },
    #[error(
        "the cluster has no storage nodes that take data (check `lingjing storage layout show`)"
    )]
    NoNodes,
    #[error(
        "coded block {id} ({code}): {durable} shard(s) durable, at most {most} on one node; a write needs all of them with at most the parity count on any node: {failures}"
    )]
    CodedShort {
        id: BlockId,
        code: ErasureCode,
        durable: usize,
        most: usize,
        failures: String,
    },
    #[error("erasure coding: {0}")]
    Codec(String),
}

/// Where a block was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    pub id: BlockId,
    pub len: u64,
    /// The nodes that acknowledged it (durable there), by id.
    pub nodes: Vec<String>,
}

impl Placed {
    /// The block map entry recording this write.
    pub fn block_ref(&self) -> crate::meta::BlockRef {
        crate::meta::BlockRef {
            id: self.id.to_string(),
            len: self.len,
            nodes: self.nodes.clone(),
            coded: None,
        }
    }
}

/// How blocks are kept: `replicas` copies, or erasure-coded when `erasure` says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Redundancy {
    pub replicas: usize,
    pub erasure: Option<Erasure>,
}

impl Redundancy {
    /// `replicas` copies of every block, nothing coded.
    pub fn replicated(replicas: usize) -> Redundancy {
        Redundancy {
            replicas,
            erasure: None,
        }
    }
}

/// Talks to the storage nodes with the cluster token.
pub struct Replicas {
    http: reqwest::Client,
    cluster: std::sync::RwLock<Arc<Cluster>>,
    /// Since when each node reported down has been down (as this client saw it).
    down_since: std::sync::Mutex<HashMap<String, std::time::Instant>>,
    /// A node down longer than this is taken for gone: rebalancing moves its pieces to
    /// the nodes left (`crate::rebalance`).
    gone_after: std::sync::Mutex<Duration>,
}

/// How long a node may be down before rebalancing moves its pieces elsewhere.
pub const DEFAULT_GONE_AFTER: Duration = Duration::from_secs(3600);

/// The nodes, token and replication a request works with, from start to end (a new
/// snapshot applies to the requests after it).
pub(crate) struct Cluster {
    pub(crate) token: String,
    /// Up nodes first, then the ones the control plane reports down (tried last).
    pub(crate) nodes: Vec<NodeRef>,
    pub(crate) down: HashSet<String>,
    pub(crate) replicas: usize,
    /// How large blocks are written: erasure-coded with this code when set
    /// (`crate::coded`), else replicated.
    pub(crate) erasure: Option<Erasure>,
}

/// The code cold data (infrequent-access storage classes) is kept with when the policy
/// sets none: any two of six shards may be lost, at 1.5x the disk.
pub const DEFAULT_COLD_CODE: &str = "4+2";

/// The erasure-coding policy: blocks of at least `min_bytes` are coded with `code` when
/// the cluster has enough nodes for it (`code.data() + 1`: a write must survive losing
/// one node); smaller ones, and every block of a smaller cluster, are replicated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Erasure {
    pub code: ErasureCode,
    pub min_bytes: u64,
}

impl Cluster {
    fn new(nodes: Vec<NodeRef>, down: HashSet<String>, policy: Redundancy, token: &str) -> Cluster {
        let writable = placement::writable(&nodes).count();
        Cluster {
            replicas: policy.replicas.clamp(1, writable.max(1)),
            erasure: policy.erasure,
            token: token.to_owned(),
            nodes,
            down,
        }
    }

    /// The code a block of `len` bytes is written with, if it is coded: by the policy's
    /// code; for cold data (`cold`: an infrequent-access storage class) by the policy's
    /// code or [`DEFAULT_COLD_CODE`], even where the policy codes nothing. Never when the
    /// cluster has no more nodes taking data than the code's data shards.
    pub(crate) fn code_for(&self, len: usize, cold: bool) -> Option<ErasureCode> {
        let e = match (self.erasure, cold) {
            (Some(e), _) => e,
            (None, true) => Erasure {
                code: DEFAULT_COLD_CODE.parse().ok()?,
                min_bytes: lingjing_model::snapshot::DEFAULT_ERASURE_MIN_BYTES,
            },
            (None, false) => return None,
        };
        let writable = placement::writable(&self.nodes).count();
        (len as u64 >= e.min_bytes && writable > e.code.data()).then_some(e.code)
    }

    /// Where block `id`'s pieces are written, in order: the nodes that take new blocks
    /// (weight above 0) by the block's placement order, those reported down last.
    pub(crate) fn write_order(&self, id: &BlockId) -> Vec<&NodeRef> {
        self.up_first(
            placement::order(id, &self.nodes)
                .into_iter()
                .filter(|n| n.weight > 0)
                .collect(),
        )
    }

    /// The number of sites with nodes that take new blocks.
    pub(crate) fn writable_sites(&self) -> usize {
        placement::site_count(placement::writable(&self.nodes))
    }

    /// `order` with the nodes reported down moved to the end (stable).
    pub(crate) fn up_first<'a>(&self, order: Vec<&'a NodeRef>) -> Vec<&'a NodeRef> {
        let (up, down): (Vec<_>, Vec<_>) =
            order.into_iter().partition(|n| !self.down.contains(&n.id));
        up.into_iter().chain(down).collect()
    }
}

impl Replicas {
    /// A client for `nodes`, keeping blocks as `policy` says (at least 1 copy, at most
    /// the number of nodes).
    pub fn new(
        nodes: Vec<NodeRef>,
        policy: Redundancy,
        token: &str,
    ) -> Result<Replicas, ReplicaError> {
        if placement::writable(&nodes).next().is_none() {
            return Err(ReplicaError::NoNodes);
        }
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(NODE_TIMEOUT)
            .pool_max_idle_per_host(64)
            .build()
            .unwrap_or_default();
        Ok(Replicas {
            http,
            cluster: std::sync::RwLock::new(Arc::new(Cluster::new(
                nodes,
                HashSet::new(),
                policy,
                token,
            ))),
            down_since: std::sync::Mutex::new(HashMap::new()),
            gone_after: std::sync::Mutex::new(DEFAULT_GONE_AFTER),
        })
    }

    /// Replaces the nodes (with those reported `down` tried last), the redundancy and
    /// the token, for the requests that start after this. An empty node list is refused.
    pub fn update(
        &self,
        nodes: Vec<NodeRef>,
        down: HashSet<String>,
        policy: Redundancy,
        token: &str,
    ) -> Result<(), ReplicaError> {
        if placement::writable(&nodes).next().is_none() {
            return Err(ReplicaError::NoNodes);
        }
        {
            let mut since = self
                .down_since
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            since.retain(|n, _| down.contains(n));
            let now = std::time::Instant::now();
            for n in &down {
                since.entry(n.clone()).or_insert(now);
            }
        }
        let next = Arc::new(Cluster::new(nodes, down, policy, token));
        match self.cluster.write() {
            Ok(mut c) => *c = next,
            Err(e) => *e.into_inner() = next,
        }
        Ok(())
    }

    /// How long a node may be down before its pieces are moved elsewhere.
    pub fn set_gone_after(&self, after: Duration) {
        *self
            .gone_after
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = after;
    }

    /// The nodes down for longer than the gone-after period (see [`Replicas::set_gone_after`]).
    pub fn gone(&self) -> HashSet<String> {
        let after = *self
            .gone_after
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.down_since
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .filter(|(_, t)| t.elapsed() >= after)
            .map(|(n, _)| n.clone())
            .collect()
    }

    pub(crate) fn cluster(&self) -> Arc<Cluster> {
        match self.cluster.read() {
            Ok(c) => c.clone(),
            Err(e) => e.into_inner().clone(),
        }
    }

    /// The erasure code a new block of `len` bytes is written with, if the cluster's
    /// policy codes it (see [`Erasure`]).
    pub fn code_for(&self, len: usize, cold: bool) -> Option<ErasureCode> {
        self.cluster().code_for(len, cold)
    }

    fn url(node: &NodeRef, id: &BlockId) -> String {
        format!("http://{}/v1/blocks/{id}", node.addr)
    }

    /// Sends block `data` to `node`; `Err` says why it is not durable there.
    pub(crate) async fn put_one(
        &self,
        token: &str,
        node: &NodeRef,
        id: &BlockId,
        data: Bytes,
    ) -> Result<(), String> {
        match self
            .http
            .put(Self::url(node, id))
            .bearer_auth(token)
            .body(data)
            .send()
            .await
        {
            Ok(res) if res.status().is_success() => Ok(()),
            Ok(res) => {
                let status = res.status();
                let text = res.text().await.unwrap_or_default();
                Err(format!("{}: {status} {}", node.id, text.trim()))
            }
            Err(e) => Err(format!("{}: {e}", node.id)),
        }
    }

    /// Writes `data` as a block, durably on enough replicas (see the module docs).
    pub async fn put(&self, data: Bytes) -> Result<Placed, ReplicaError> {
        let id = BlockId::of(&data);
        let c = self.cluster();
        let order = c.write_order(&id);
        let quorum = c.replicas / 2 + 1;
        let sites_needed = c.writable_sites().min(2).min(c.replicas);
        let mut acked: Vec<&NodeRef> = Vec::new();
        let mut failures: Vec<String> = Vec::new();
        let mut next = 0;
        // Rounds: the missing replicas go to the next nodes in order, all at once.
        while acked.len() < c.replicas && next < order.len() {
            let want = c.replicas - acked.len();
            let batch: Vec<&NodeRef> = order[next..].iter().take(want).copied().collect();
            next += batch.len();
            let results = join_all(
                batch
                    .iter()
                    .map(|node| self.put_one(&c.token, node, &id, data.clone())),
            )
            .await;
            for (node, result) in batch.into_iter().zip(results) {
                match result {
                    Ok(()) => acked.push(node),
                    Err(e) => failures.push(e),
                }
            }
        }
        let sites = placement::site_count(acked.iter().copied());
        if acked.len() < quorum || sites < sites_needed {
            return Err(ReplicaError::NoQuorum {
                id,
                acked: acked.len(),
                sites,
                quorum,
                sites_needed,
                failures: failures.join("; "),
            });
        }
        if !failures.is_empty() {
            tracing::warn!(block = %id, failures = %failures.join("; "), "block written with replacements");
        }
        Ok(Placed {
            id,
            len: data.len() as u64,
            nodes: acked.iter().map(|n| n.id.clone()).collect(),
        })
    }

    /// A page of `node`'s blocks after `after` (garbage collection, scrub).
    async fn list_blocks(
        &self,
        token: &str,
        node: &NodeRef,
        after: Option<&str>,
        limit: usize,
    ) -> Result<BlockList, String> {
        let mut url = format!("http://{}/v1/blocks?limit={limit}", node.addr);
        if let Some(a) = after {
            url.push_str("&after=");
            url.push_str(a);
        }
        match self.http.get(url).bearer_auth(token).send().await {
            Ok(res) if res.status().is_success() => res
                .json::<BlockList>()
                .await
                .map_err(|e| format!("{}: listing: {e}", node.id)),
            Ok(res) => Err(format!("{}: listing: {}", node.id, res.status())),
            Err(e) => Err(format!("{}: listing: {e}", node.id)),
        }
    }

    /// Every block `node` holds, page after page in id order, each handed to `visit`
    /// (garbage collection, repair); a listing that fails midway is an error.
    pub(crate) async fn each_listed(
        &self,
        token: &str,
        node: &NodeRef,
        mut visit: impl FnMut(BlockId, &ListedBlock),
    ) -> Result<(), String> {
        let mut after: Option<String> = None;
        loop {
            let page = self
                .list_blocks(token, node, after.as_deref(), MAX_LIST)
                .await?;
            let Some(last) = page.blocks.last() else {
                return Ok(());
            };
            after = Some(last.id.clone());
            for b in &page.blocks {
                let id =
                    b.id.parse::<BlockId>()
                        .map_err(|e| format!("{}: listed {e}", node.id))?;
                visit(id, b);
            }
        }
    }

    /// Deletes block `id` from `node` if it was last written before `cutoff_ms`
    /// (garbage collection; `Removed::Deleted(0)`: the node does not say the length).
    pub(crate) async fn delete_if_older(
        &self,
        token: &str,
        node: &NodeRef,
        id: &BlockId,
        cutoff_ms: u64,
    ) -> Result<Removed, String> {
        let url = format!("{}?older_than_ms={cutoff_ms}", Self::url(node, id));
        match self.http.delete(url).bearer_auth(token).send().await {
            Ok(res) => match res.status() {
                s if s.is_success() => Ok(Removed::Deleted(0)),
                reqwest::StatusCode::CONFLICT => Ok(Removed::Kept),
                reqwest::StatusCode::NOT_FOUND => Ok(Removed::Absent),
                s => Err(format!("{}: delete {id}: {s}", node.id)),
            },
            Err(e) => Err(format!("{}: delete {id}: {e}", node.id)),
        }
    }

    /// Block `id`'s bytes as `node` sends them (not yet checked here), as the pieces
    /// they arrived in (kept, not joined: a large block is never copied on its way
    /// through); `check`: the node hashes them first and quarantines a copy that does
    /// not match.
    async fn get_one(
        &self,
        token: &str,
        node: &NodeRef,
        id: &BlockId,
        check: bool,
    ) -> Result<Vec<Bytes>, String> {
        let mut url = Self::url(node, id);
        if !check {
            url.push_str("?check=false");
        }
        match self.http.get(url).bearer_auth(token).send().await {
            Ok(mut res) if res.status().is_success() => {
                let mut parts = Vec::new();
                while let Some(part) = res.chunk().await.map_err(|e| format!("{}: {e}", node.id))? {
                    parts.push(part);
                }
                Ok(parts)
            }
            Ok(res) => Err(format!("{}: {}", node.id, res.status())),
            Err(e) => Err(format!("{}: {e}", node.id)),
        }
    }

    /// Block `id`'s bytes from `node`, checked against the id here, as the pieces they
    /// arrived in. The node sends them without hashing them (this side does); when they
    /// do not match, it is asked again to check its copy, which quarantines a rotted one
    /// (500) or sends good bytes (the first copy was damaged on the way).
    pub(crate) async fn get_verified_parts(
        &self,
        token: &str,
        node: &NodeRef,
        id: &BlockId,
    ) -> Result<Vec<Bytes>, String> {
        for check in [false, true] {
            match self.get_one(token, node, id, check).await {
                Ok(parts) if BlockId::of_parts(&parts) == *id => return Ok(parts),
                Ok(_) if !check => continue,
                Ok(_) => {
                    return Err(format!(
                        "{}: served bytes that do not match the id",
                        node.id
                    ));
                }
                Err(e) => return Err(e),
            }
        }
        Err(format!("{}: no answer", node.id))
    }

    /// [`Self::get_verified_parts`], joined.
    pub(crate) async fn get_verified(
        &self,
        token: &str,
        node: &NodeRef,
        id: &BlockId,
    ) -> Result<Bytes, String> {
        self.get_verified_parts(token, node, id).await.map(join)
    }

    /// Block `id`'s bytes from the first replica that serves a correct copy, trying the
    /// nodes in `hint` (where it was written) first.
    pub async fn get(&self, id: &BlockId, hint: &[String]) -> Result<Bytes, ReplicaError> {
        let c = self.cluster();
        let mut tried: HashSet<&str> = HashSet::new();
        let hinted = hint
            .iter()
            .filter_map(|h| c.nodes.iter().find(|n| &n.id == h));
        let candidates: Vec<&NodeRef> = c.up_first(
            hinted
                .chain(placement::order(id, &c.nodes))
                .filter(|n| tried.insert(n.id.as_str()))
                .collect(),
        );
        let mut failures = Vec::new();
        for node in candidates {
            match self.get_verified(&c.token, node, id).await {
                Ok(bytes) => return Ok(bytes),
                Err(e) => failures.push(e),
            }
        }
        Err(ReplicaError::Unreadable {
            id: *id,
            failures: failures.join("; "),
        })
    }
}

/// `parts` as one buffer (without a copy when there is only one).
pub(crate) fn join(mut parts: Vec<Bytes>) -> Bytes {
    match parts.len() {
        0 => Bytes::new(),
        1 => parts.pop().unwrap_or_default(),
        _ => {
            let mut all = bytes::BytesMut::with_capacity(parts.iter().map(Bytes::len).sum());
            for part in &parts {
                all.extend_from_slice(part);
            }
            all.freeze()
        }
    }
}
