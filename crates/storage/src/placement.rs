//! Where a block's pieces go: a deterministic order of the storage nodes for each block,
//! by the layout's rule ([`lingjing_model::storage_layout::rank`]: weighted rendezvous
//! hashing over the nodes' capacities, spread over sites), so every gateway computes the
//! same order from the same layout without coordinating, and adding or removing a node
//! changes the order of only the blocks whose top ranks it enters or leaves. The first
//! `r` nodes cover `min(r, sites)` sites, so losing one site loses at most
//! `ceil(r / sites)` replicas. Nodes of weight 0 (left out of the layout, or drained of
//! new data) come last: nothing new goes there, reads still find what is there.

use std::collections::HashSet;
use std::net::SocketAddr;

use lingjing_model::storage_layout::{Candidate, rank};

use crate::block::BlockId;

/// A storage node as the gateways see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRef {
    /// The node's id in the inventory.
    pub id: String,
    /// The site it is at: replicas go to different sites first.
    pub site: String,
    /// Its block API (`http://{addr}/v1/blocks/...`).
    pub addr: SocketAddr,
    /// Its capacity in the layout (its share of new blocks; 0: nothing new).
    pub weight: u64,
}

/// Every node of `nodes`, in the order block `id` prefers them: the first `r` are where
/// its `r` replicas go, the rest are where a write goes when one of those fails.
pub fn order<'a>(id: &BlockId, nodes: &'a [NodeRef]) -> Vec<&'a NodeRef> {
    let candidates: Vec<Candidate<'_>> = nodes
        .iter()
        .map(|n| Candidate {
            id: &n.id,
            site: &n.site,
            weight: n.weight,
        })
        .collect();
    rank(id.as_bytes(), &candidates)
        .into_iter()
        .map(|i| &nodes[i])
        .collect()
}

/// The nodes that take new blocks (weight above 0).
pub fn writable(nodes: &[NodeRef]) -> impl Iterator<Item = &NodeRef> {
    nodes.iter().filter(|n| n.weight > 0)
}

/// The number of distinct sites among `nodes`.
pub fn site_count<'a>(nodes: impl IntoIterator<Item = &'a NodeRef>) -> usize {
    nodes
        .into_iter()
        .map(|n| n.site.as_str())
        .collect::<HashSet<_>>()
        .len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(spec: &[(&str, &str)]) -> Vec<NodeRef> {
        spec.iter()
            .enumerate()
            .map(|(i, (id, site))| NodeRef {
                id: (*id).to_owned(),
                site: (*site).to_owned(),
                addr: SocketAddr::from(([127, 0, 0, 1], 7810 + i as u16)),
                weight: 1,
            })
            .collect()
    }

    fn block(n: u32) -> BlockId {
        BlockId::of(&n.to_be_bytes())
    }

    #[test]
    fn the_order_is_a_permutation_and_the_same_for_every_caller() {
        let ns = nodes(&[("a", "s1"), ("b", "s2"), ("c", "s3"), ("d", "s1")]);
        for n in 0..100 {
            let o = order(&block(n), &ns);
            assert_eq!(o.len(), 4);
            let ids: HashSet<_> = o.iter().map(|n| n.id.as_str()).collect();
            assert_eq!(ids.len(), 4);
            let mut reversed: Vec<NodeRef> = ns.clone();
            reversed.reverse();
            let again: Vec<_> = order(&block(n), &reversed)
                .iter()
                .map(|n| n.id.clone())
                .collect();
            let first: Vec<_> = o.iter().map(|n| n.id.clone()).collect();
            assert_eq!(first, again, "the input order does not matter");
        }
    }

    #[test]
    fn the_first_replicas_cover_as_many_sites_as_there_are() {
        // Six nodes in three sites, two in each.
        let ns = nodes(&[
            ("a1", "wuxi"),
            ("a2", "wuxi"),
            ("b1", "nanjing"),
            ("b2", "nanjing"),
            ("c1", "suzhou"),
            ("c2", "suzhou"),
        ]);
        for n in 0..1000 {
            let o = order(&block(n), &ns);
            assert_eq!(site_count(o[..3].iter().copied()), 3, "block {n}");
        }
        // Two sites, three replicas: both sites among the first two.
        let two = nodes(&[("a1", "x"), ("a2", "x"), ("b1", "y")]);
        for n in 0..1000 {
            assert_eq!(site_count(order(&block(n), &two)[..2].iter().copied()), 2);
        }
    }

    #[test]
    fn replicas_spread_evenly_over_the_nodes() {
        let ns = nodes(&[("a", "s1"), ("b", "s2"), ("c", "s3"), ("d", "s4")]);
        let mut first = std::collections::HashMap::new();
        for n in 0..10_000 {
            *first
                .entry(order(&block(n), &ns)[0].id.clone())
                .or_insert(0u32) += 1;
        }
        for (node, count) in &first {
            assert!((2_200..2_800).contains(count), "{node}: {count} of 10000");
        }
    }

    #[test]
    fn adding_a_node_moves_only_the_blocks_it_takes() {
        // Ten nodes in ten sites, three replicas; then an eleventh node in a new site.
        let spec: Vec<(String, String)> = (0..11)
            .map(|i| (format!("n{i}"), format!("s{i}")))
            .collect();
        let spec: Vec<(&str, &str)> = spec.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        let before = nodes(&spec[..10]);
        let after = nodes(&spec);
        let blocks = 10_000;
        let mut moved_replicas = 0u32;
        for n in 0..blocks {
            let b: HashSet<_> = order(&block(n), &before)[..3]
                .iter()
                .map(|n| n.id.clone())
                .collect();
            let a: HashSet<_> = order(&block(n), &after)[..3]
                .iter()
                .map(|n| n.id.clone())
                .collect();
            moved_replicas += b.difference(&a).count() as u32;
        }
        // The new node takes 3/11 of the replica slots; moving that many replicas is the
        // least any placement can do. Rendezvous moves exactly those.
        let share = f64::from(moved_replicas) / f64::from(blocks * 3);
        assert!(
            (0.07..0.11).contains(&share),
            "moved {share:.3} of the replicas"
        );
    }
}
