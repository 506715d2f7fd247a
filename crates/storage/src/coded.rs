//! The gateway's side of erasure-coded blocks: writing a block as `k + m` shards on
//! different nodes, and reading it back from any `k` of them.
//!
//! A shard is stored as a block of its own (content-addressed by its SHA-256, checked by
//! the node on scrub and by this side on every read), so the storage nodes need nothing
//! new for coding; the block map (`meta::BlockRef::coded`) records each shard's id and
//! the node that acknowledged it.
//!
//! **Writes**: shard `i` goes to the `i`-th node of the block's [`placement::order`] (so
//! shards spread over sites round-robin: with `s` sites, each holds at most
//! `ceil((k + m) / s)`), all at once; a shard whose node fails goes to the node with the
//! fewest shards of this block among those that have not failed, next in the order on a
//! tie. With fewer nodes up than shards a node takes more than one, never more than `m`.
//! The write is acknowledged when every shard is durable (so losing any one node keeps
//! the block readable); a write that spans fewer sites than it
//! could is logged (`degraded`) for the repairer to spread later.
//!
//! **Reads** fetch the `k` data shards at once; each one missing (node down, shard gone,
//! bytes that do not match its id) starts a fetch of the next parity shard, until `k`
//! shards are in or none are left. Parity is decoded only when a data shard is missing,
//! and a decoded block is checked against its id before it is returned (with every data
//! shard in, each already checked against its own id, the block is their concatenation).

use std::collections::HashSet;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use lingjing_model::ErasureCode;

use crate::block::BlockId;
use crate::erasure;
use crate::meta::{BlockRef, CodedRef, ShardRef};
use crate::placement::{self, NodeRef};
use crate::replicas::{ReplicaError, Replicas};

/// Where a coded block's shards were written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodedPlaced {
    /// The block's id (SHA-256 of the whole block).
    pub id: BlockId,
    pub len: u64,
    pub code: ErasureCode,
    /// Shard `i`: its id and the node that acknowledged it.
    pub shards: Vec<(BlockId, String)>,
    /// Whether the shards reach fewer sites than the cluster has (or than there are
    /// shards): a site lost now could take more than `m` of them.
    pub degraded: bool,
}

impl CodedPlaced {
    /// The block map entry recording this write (with the codec that made the shards).
    pub fn block_ref(&self) -> BlockRef {
        BlockRef {
            id: self.id.to_string(),
            len: self.len,
            nodes: Vec::new(),
            coded: Some(CodedRef {
                codec: erasure::CODEC.to_owned(),
                code: self.code,
                shards: self
                    .shards
                    .iter()
                    .map(|(id, node)| ShardRef {
                        id: id.to_string(),
                        node: node.clone(),
                    })
                    .collect(),
            }),
        }
    }
}

impl Replicas {
    /// Writes `data` as `code`'s shards (see the module docs).
    pub async fn put_coded(
        &self,
        code: ErasureCode,
        data: Bytes,
    ) -> Result<CodedPlaced, ReplicaError> {
        let id = BlockId::of(&data);
        let len = data.len() as u64;
        let shards = tokio::task::spawn_blocking(move || {
            let shards = erasure::encode(code, &data)?;
            let ids: Vec<BlockId> = shards.iter().map(|s| BlockId::of(s)).collect();
            Ok::<_, erasure::CodecError>((shards, ids))
        })
        .await
        .map_err(|e| ReplicaError::Codec(format!("encoder task: {e}")))?
        .map_err(|e| ReplicaError::Codec(e.to_string()))?;
        let (shards, ids) = shards;
        let c = self.cluster();
        let order = c.write_order(&id);
        let n = code.total();
        // Per node of `order`: shards of this block it holds, and whether it failed one.
        let mut load = vec![0usize; order.len()];
        let mut failed = vec![false; order.len()];
        let mut holder: Vec<Option<usize>> = vec![None; n];
        let mut failures: Vec<String> = Vec::new();
        loop {
            let pending: Vec<usize> = (0..n).filter(|&s| holder[s].is_none()).collect();
            if pending.is_empty() {
                break;
            }
            // Each pending shard to the least-loaded node that has not failed and holds
            // fewer than `m` (counting this round's assignments), the earliest in the
            // order on a tie.
            let mut planned = load.clone();
            let mut batch: Vec<(usize, usize)> = Vec::new();
            for &s in &pending {
                let Some(node) = (0..order.len())
                    .filter(|&i| !failed[i] && planned[i] < code.parity())
                    .min_by_key(|&i| (planned[i], i))
                else {
                    break;
                };
                planned[node] += 1;
                batch.push((s, node));
            }
            if batch.is_empty() {
                break;
            }
            let results =
                futures::future::join_all(batch.iter().map(|&(s, node)| {
                    self.put_one(&c.token, order[node], &ids[s], shards[s].clone())
                }))
                .await;
            for ((s, node), result) in batch.into_iter().zip(results) {
                match result {
                    Ok(()) => {
                        holder[s] = Some(node);
                        load[node] += 1;
                    }
                    Err(e) => {
                        failed[node] = true;
                        failures.push(e);
                    }
                }
            }
        }
        let durable = holder.iter().filter(|h| h.is_some()).count();
        let most = load.iter().copied().max().unwrap_or(0);
        if durable < n || most > code.parity() {
            return Err(ReplicaError::CodedShort {
                id,
                code,
                durable,
                most,
                failures: failures.join("; "),
            });
        }
        let used: Vec<&NodeRef> = holder.iter().flatten().map(|&i| order[i]).collect();
        let sites = placement::site_count(used.iter().copied());
        let degraded = sites < c.writable_sites().min(n);
        if degraded || !failures.is_empty() {
            tracing::warn!(block = %id, code = %code, sites, degraded,
                failures = %failures.join("; "), "coded block written with replacements");
        }
        Ok(CodedPlaced {
            id,
            len,
            code,
            shards: holder
                .iter()
                .zip(ids)
                .map(|(h, sid)| (sid, h.map(|i| order[i].id.clone()).unwrap_or_default()))
                .collect(),
            degraded,
        })
    }

    /// The coded block `id` of `len` bytes from its `shards` (id and node each, in shard
    /// order; see the module docs).
    pub async fn get_coded(
        &self,
        id: &BlockId,
        len: u64,
        code: ErasureCode,
        shards: &[(BlockId, String)],
    ) -> Result<Bytes, ReplicaError> {
        self.get_coded_parts(id, len, code, shards)
            .await
            .map(crate::replicas::join)
    }

    /// [`Self::get_coded`] as pieces whose concatenation is the block: with every data
    /// shard in, the pieces the shards arrived in (nothing copied or joined, so a large
    /// object streams through the gateway without a copy per block).
    pub async fn get_coded_parts(
        &self,
        id: &BlockId,
        len: u64,
        code: ErasureCode,
        shards: &[(BlockId, String)],
    ) -> Result<Vec<Bytes>, ReplicaError> {
        let (k, n) = (code.data(), code.total());
        if shards.len() != n {
            return Err(ReplicaError::Codec(format!(
                "block {id}: the map lists {} shards for a {code} code",
                shards.len()
            )));
        }
        let c = self.cluster();
        let fetch = |s: usize| {
            let (sid, node_id) = &shards[s];
            let c = &c;
            async move {
                let result = match c.nodes.iter().find(|n| &n.id == node_id) {
                    Some(node) => self.get_verified_parts(&c.token, node, sid).await,
                    None => Err(format!("{node_id}: not in the cluster")),
                };
                (s, result)
            }
        };
        let mut got: Vec<Option<Vec<Bytes>>> = vec![None; n];
        let mut have = 0;
        let mut failures = Vec::new();
        let mut inflight: FuturesUnordered<_> = (0..k).map(fetch).collect();
        let mut next_parity = k;
        let mut down: HashSet<usize> = HashSet::new();
        while let Some((s, result)) = inflight.next().await {
            match result {
                Ok(bytes) => {
                    got[s] = Some(bytes);
                    have += 1;
                    if have == k {
                        break;
                    }
                }
                Err(e) => {
                    failures.push(format!("shard {s}: {e}"));
                    down.insert(s);
                    if next_parity < n {
                        inflight.push(fetch(next_parity));
                        next_parity += 1;
                    }
                }
            }
        }
        drop(inflight);
        if have < k {
            return Err(ReplicaError::Unreadable {
                id: *id,
                failures: failures.join("; "),
            });
        }
        if !down.is_empty() {
            tracing::warn!(block = %id, failures = %failures.join("; "), "coded block read with parity");
        }
        let block_len = usize::try_from(len).map_err(|e| ReplicaError::Codec(e.to_string()))?;
        if got[..k].iter().all(Option::is_some) {
            // Every data shard is in and checked against its id: the block is their
            // concatenation (less the last shard's padding), nothing to decode.
            return data_parts(code, block_len, got)
                .map_err(|e| ReplicaError::Codec(e.to_string()));
        }
        let got: Vec<Option<Bytes>> = got
            .into_iter()
            .map(|parts| parts.map(crate::replicas::join))
            .collect();
        let block = tokio::task::spawn_blocking(move || erasure::decode(code, block_len, &got))
            .await
            .map_err(|e| ReplicaError::Codec(format!("decoder task: {e}")))?
            .map_err(|e| ReplicaError::Codec(e.to_string()))?;
        if BlockId::of(&block) != *id {
            return Err(ReplicaError::Codec(format!(
                "block {id}: decoded bytes do not match the id"
            )));
        }
        Ok(vec![block])
    }
}

/// The block of `block_len` bytes as the pieces of its data shards `got[..k]` (every one
/// present), each shard checked for the length the code gives it, the padding at the end
/// cut off.
fn data_parts(
    code: ErasureCode,
    block_len: usize,
    got: Vec<Option<Vec<Bytes>>>,
) -> Result<Vec<Bytes>, erasure::CodecError> {
    let want = erasure::shard_len(code, block_len);
    let mut parts = Vec::new();
    let mut left = block_len;
    for (index, shard) in got.into_iter().take(code.data()).enumerate() {
        let shard = shard.unwrap_or_default();
        let got_len: usize = shard.iter().map(Bytes::len).sum();
        if got_len != want {
            return Err(erasure::CodecError::BadShardLength {
                index,
                got: got_len,
                want,
            });
        }
        for part in shard {
            if left == 0 {
                break;
            }
            let take = part.len().min(left);
            left -= take;
            parts.push(part.slice(..take));
        }
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_shards_in_pieces_are_the_block_without_its_padding() {
        let code = ErasureCode::new(4, 2).expect("code");
        // 1001 bytes over 4 shards: the last one ends in padding.
        let block: Vec<u8> = (0..1001u32).map(|i| (i * 7 % 251) as u8).collect();
        let shards = erasure::encode(code, &block).expect("encode");
        let got: Vec<Option<Vec<Bytes>>> = shards
            .iter()
            .map(|s| {
                let s = Bytes::copy_from_slice(s);
                Some(vec![s.slice(..100), s.slice(100..101), s.slice(101..)])
            })
            .collect();
        let parts = data_parts(code, block.len(), got.clone()).expect("parts");
        assert_eq!(parts.concat(), block);
        // A shard of the wrong length is refused, not cut or padded.
        let mut short = got;
        short[1] = Some(vec![Bytes::from_static(b"short")]);
        assert!(data_parts(code, block.len(), short).is_err());
    }
}
