//! The storage cluster layout and the placement rule every gateway computes from it.
//!
//! The layout ([`StorageLayout`]) is versioned by the control plane: which storage nodes
//! hold data and with what capacity (a node's share of new blocks is its capacity over the
//! total; capacity 0 takes nothing new, e.g. before it is removed). Version 0 is the
//! implicit layout before any was applied: every storage node, equal shares.
//!
//! Placement ([`rank`]) is weighted rendezvous hashing: for each block, each node scores
//! `capacity / -ln(u)` with `u` uniform from `SHA-256(block, node)`; nodes are taken by
//! score, then spread over sites round by round (the best node of each site before any
//! site's second), so a block's first `n` pieces cover `min(n, sites)` sites. Any gateway
//! computes the same order from the same layout without coordinating; a node added takes
//! just its share of each other node's blocks, and a node removed gives up only its own
//! ([`moved_fraction`] measures it). With equal capacities the order is that of plain
//! rendezvous hashing (by hash), so version 0 places exactly as before layouts existed.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::validate::{ValidationError, check_max_items};

/// Most nodes in a layout.
pub const MAX_LAYOUT_NODES: usize = 1000;
/// Most capacity of one node, in GiB (1 EiB).
pub const MAX_CAPACITY_GIB: u64 = 1 << 30;

/// Which storage nodes hold data, and how much each may.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StorageLayout {
    /// 0: none applied yet (every storage node, equal shares); each apply is the previous
    /// version plus one.
    pub version: u64,
    /// The nodes holding data (at most 1000).
    #[schema(max_items = 1000)]
    pub nodes: Vec<LayoutNode>,
    /// When it was applied (RFC 3339).
    #[serde(default)]
    pub applied_at: Option<String>,
}

/// One node of a layout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LayoutNode {
    /// A node with the `storage` role.
    pub node: String,
    /// Its usable capacity in GiB: its share of new blocks is this over the total (0:
    /// nothing new).
    pub capacity_gib: u64,
}

impl StorageLayout {
    /// Checks the shape: unique nodes, capacities in range, at least one above 0.
    pub fn check(&self) -> Result<(), ValidationError> {
        check_max_items("nodes", &self.nodes, MAX_LAYOUT_NODES)?;
        let mut seen = HashSet::new();
        for (i, n) in self.nodes.iter().enumerate() {
            if !seen.insert(n.node.as_str()) {
                return Err(ValidationError::new(
                    format!("nodes[{i}].node"),
                    format!("`{}` is listed twice", n.node),
                ));
            }
            if n.capacity_gib > MAX_CAPACITY_GIB {
                return Err(ValidationError::new(
                    format!("nodes[{i}].capacity_gib"),
                    format!("must be at most {MAX_CAPACITY_GIB}"),
                ));
            }
        }
        if !self.nodes.iter().any(|n| n.capacity_gib > 0) {
            return Err(ValidationError::new(
                "nodes",
                "at least one node must have a capacity above 0",
            ));
        }
        Ok(())
    }

    /// The capacity of `node` in this layout: its own, 1 for every node in version 0, and
    /// 0 for a node a later layout leaves out.
    pub fn capacity(&self, node: &str) -> u64 {
        if self.version == 0 {
            return 1;
        }
        self.nodes
            .iter()
            .find(|n| n.node == node)
            .map_or(0, |n| n.capacity_gib)
    }
}

/// What `POST /v1/storage/layout` answers: the layout (applied, or only checked on a dry
/// run) and the share of block pieces that go to other nodes under it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LayoutChange {
    pub layout: StorageLayout,
    /// Estimated share (0 to 1) of the pieces of blocks written from now on that the new
    /// layout places on other nodes than the old one, for blocks of `pieces` pieces.
    pub moved_fraction: f64,
    /// The pieces per block the estimate is for (copies, or data + parity shards).
    pub pieces: u32,
    /// Nothing was applied.
    pub dry_run: bool,
    /// Each node's expected share of new pieces under the new layout, beside its share of
    /// the capacity. They differ where sites do: pieces are spread over sites first, so
    /// a site with less capacity than its share of pieces fills first.
    #[serde(default)]
    pub shares: Vec<NodeShare>,
    /// Raw GiB the cluster takes in before its first node is full, at these shares
    /// (the sum of capacities when shares follow capacities exactly).
    #[serde(default)]
    pub usable_gib: u64,
    /// What the operator should know before applying: nodes that fill early.
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// One node's expected share of new block pieces under a layout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NodeShare {
    pub node: String,
    pub site: String,
    pub capacity_gib: u64,
    /// Its capacity over the layout's total (0 to 1).
    pub capacity_share: f64,
    /// The share (0 to 1) of new pieces placement gives it.
    pub piece_share: f64,
}

/// A node whose share of pieces is more than this times its share of capacity is
/// warned about (it fills before the others).
pub const OVERLOAD_WARNING: f64 = 1.2;

/// The expected share of new pieces of each of `nodes` (blocks of `pieces` pieces),
/// estimated over `samples` block ids; shares sum to 1 when anything is writable.
pub fn piece_shares(nodes: &[Candidate<'_>], pieces: usize, samples: u32) -> Vec<f64> {
    let mut counts = vec![0u64; nodes.len()];
    let mut total = 0u64;
    for n in 0..samples {
        let block = Sha256::digest(n.to_be_bytes());
        for i in rank(&block, nodes)
            .into_iter()
            .filter(|i| nodes[*i].weight > 0)
            .take(pieces)
        {
            counts[i] += 1;
            total += 1;
        }
    }
    counts
        .iter()
        .map(|c| {
            if total == 0 {
                0.0
            } else {
                *c as f64 / total as f64
            }
        })
        .collect()
}

/// Each node's share of pieces beside its share of capacity, the raw GiB taken in before
/// the first node fills, and a warning per node that fills early (see [`LayoutChange`]).
pub fn shares_report(
    nodes: &[Candidate<'_>],
    pieces: usize,
    samples: u32,
) -> (Vec<NodeShare>, u64, Vec<String>) {
    let total: u64 = nodes.iter().map(|n| n.weight).sum();
    let piece = piece_shares(nodes, pieces, samples);
    let mut shares = Vec::with_capacity(nodes.len());
    let mut warnings = Vec::new();
    let mut usable = f64::INFINITY;
    for (n, p) in nodes.iter().zip(&piece) {
        let capacity_share = if total == 0 {
            0.0
        } else {
            n.weight as f64 / total as f64
        };
        if *p > 0.0 {
            usable = usable.min(n.weight as f64 / p);
        }
        if *p > capacity_share * OVERLOAD_WARNING {
            warnings.push(format!(
                "node {} (site {}) would take {:.1}% of new pieces with {:.1}% of the capacity: pieces are spread over sites first, so it fills {:.1}x as fast as the others; give site {} more capacity or its nodes less",
                n.id,
                n.site,
                p * 100.0,
                capacity_share * 100.0,
                p / capacity_share.max(f64::MIN_POSITIVE),
                n.site
            ));
        }
        shares.push(NodeShare {
            node: n.id.to_owned(),
            site: n.site.to_owned(),
            capacity_gib: n.weight,
            capacity_share,
            piece_share: *p,
        });
    }
    let usable = if usable.is_finite() {
        usable.round() as u64
    } else {
        0
    };
    (shares, usable, warnings)
}

/// A node as placement sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate<'a> {
    pub id: &'a str,
    pub site: &'a str,
    /// Its capacity (any unit, the same for all); 0 takes nothing new.
    pub weight: u64,
}

/// `nodes` given as (id, site, weight) as placement sees them.
pub fn candidates(nodes: &[(String, String, u64)]) -> Vec<Candidate<'_>> {
    nodes
        .iter()
        .map(|(id, site, weight)| Candidate {
            id,
            site,
            weight: *weight,
        })
        .collect()
}

/// The indices of `nodes` in the order block `block` prefers them (see the module docs):
/// the first pieces of the block go to the first nodes; nodes of weight 0 come last (by
/// hash), so that a read can still find a piece there.
pub fn rank(block: &[u8], nodes: &[Candidate<'_>]) -> Vec<usize> {
    let mut scored: Vec<(usize, f64, u64)> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let mut h = Sha256::new();
            h.update(block);
            h.update(n.id.as_bytes());
            let digest = h.finalize();
            let mut top = [0u8; 8];
            top.copy_from_slice(&digest[..8]);
            let hash = u64::from_be_bytes(top);
            let score = if n.weight == 0 {
                f64::NEG_INFINITY
            } else {
                // u in (0, 1); -ln(u) > 0. Equal weights: the order of `hash`.
                let u = (hash as f64 + 0.5) / 18_446_744_073_709_551_616.0;
                n.weight as f64 / -u.ln()
            };
            (i, score, hash)
        })
        .collect();
    scored.sort_by(|a, b| {
        b.1.total_cmp(&a.1)
            .then_with(|| b.2.cmp(&a.2))
            .then_with(|| nodes[a.0].id.cmp(nodes[b.0].id))
    });
    // Round by round: in each, the best-ranked node not yet taken of each site.
    let weighted = scored.iter().take_while(|s| s.1.is_finite()).count();
    let mut out = Vec::with_capacity(nodes.len());
    let mut taken = vec![false; weighted];
    while out.len() < weighted {
        let mut sites: HashSet<&str> = HashSet::new();
        for (j, (i, _, _)) in scored[..weighted].iter().enumerate() {
            if !taken[j] && sites.insert(nodes[*i].site) {
                taken[j] = true;
                out.push(*i);
            }
        }
    }
    out.extend(scored[weighted..].iter().map(|s| s.0));
    out
}

/// The share of block pieces that move when the layout goes from `before` to `after`,
/// for blocks of `pieces` pieces (copies, or data + parity shards), estimated over
/// `samples` block ids: pieces whose node set differs, over all pieces.
pub fn moved_fraction(
    before: &[Candidate<'_>],
    after: &[Candidate<'_>],
    pieces: usize,
    samples: u32,
) -> f64 {
    let mut moved = 0u64;
    let mut total = 0u64;
    for n in 0..samples {
        let block = Sha256::digest(n.to_be_bytes());
        let first = |nodes: &[Candidate<'_>]| -> HashSet<String> {
            rank(&block, nodes)
                .into_iter()
                .filter(|i| nodes[*i].weight > 0)
                .take(pieces)
                .map(|i| nodes[i].id.to_owned())
                .collect()
        };
        let (b, a) = (first(before), first(after));
        moved += b.difference(&a).count() as u64;
        total += b.len() as u64;
    }
    if total == 0 {
        0.0
    } else {
        moved as f64 / total as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::candidates as nodes;

    fn spec(n: usize, weight: u64) -> Vec<(String, String, u64)> {
        (0..n)
            .map(|i| (format!("n{i}"), format!("s{i}"), weight))
            .collect()
    }

    #[test]
    fn shares_follow_capacities() {
        let mut s = spec(4, 100);
        s[0].2 = 300; // three times the others: half of all first pieces
        let ns = nodes(&s);
        let mut first = [0u32; 4];
        for n in 0..20_000u32 {
            first[rank(&n.to_be_bytes(), &ns)[0]] += 1;
        }
        assert!((9_300..10_700).contains(&first[0]), "{first:?}");
        for count in &first[1..] {
            assert!((2_900..3_800).contains(count), "{first:?}");
        }
    }

    #[test]
    fn shares_follow_capacities_within_a_site_and_sites_first_across() {
        // One site: shares follow capacities, no warning, the whole capacity usable.
        let one_site: Vec<(String, String, u64)> = [("a", 100), ("b", 100), ("c", 200)]
            .iter()
            .map(|(n, w)| ((*n).to_owned(), "s".to_owned(), *w))
            .collect();
        let (shares, usable, warnings) = shares_report(&nodes(&one_site), 1, 20_000);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert!((0.47..0.53).contains(&shares[2].piece_share), "{shares:?}");
        assert!((360..=400).contains(&usable), "{usable}");
        // Three sites, one of them small, three copies: every site takes a third of the
        // pieces whatever its capacity, so the small site's node fills first and is warned
        // about, and the usable capacity is three times the small one.
        let sites = vec![
            ("a".to_owned(), "s1".to_owned(), 1000),
            ("b".to_owned(), "s2".to_owned(), 1000),
            ("c".to_owned(), "s3".to_owned(), 100),
        ];
        let (shares, usable, warnings) = shares_report(&nodes(&sites), 3, 5_000);
        for s in &shares {
            assert!((0.33..0.34).contains(&s.piece_share), "{shares:?}");
        }
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].starts_with("node c (site s3)"), "{warnings:?}");
        assert_eq!(usable, 300);
        // Writable nodes with nothing to take: no shares, nothing usable.
        assert_eq!(piece_shares(&nodes(&sites), 0, 100), vec![0.0; 3]);
    }

    #[test]
    fn zero_weight_nodes_take_nothing_new_but_stay_in_the_order() {
        let mut s = spec(5, 10);
        s[2].2 = 0;
        let ns = nodes(&s);
        for n in 0..2_000u32 {
            let order = rank(&n.to_be_bytes(), &ns);
            assert_eq!(order.len(), 5);
            assert_eq!(order[4], 2, "the drained node comes last");
        }
    }

    #[test]
    fn adding_or_removing_a_node_moves_about_its_share() {
        for (n, pieces) in [(6usize, 3usize), (12, 6), (24, 6)] {
            let before = spec(n, 100);
            let after = spec(n + 1, 100);
            let moved = moved_fraction(&nodes(&before), &nodes(&after), pieces, 5_000);
            // The least any placement can move is the new node's share, 1/(n+1) of the
            // pieces; rendezvous moves about that much.
            let ideal = 1.0 / (n + 1) as f64;
            assert!(
                (ideal * 0.8..ideal * 1.25).contains(&moved),
                "{n}+1 nodes, {pieces} pieces: moved {moved:.4}, ideal {ideal:.4}"
            );
            let back = moved_fraction(&nodes(&after), &nodes(&before), pieces, 5_000);
            assert!(
                (ideal * 0.8..ideal * 1.25).contains(&back),
                "removing: {back:.4}"
            );
        }
        // Doubling one node's capacity moves about the share it gains.
        let before = spec(8, 100);
        let mut after = before.clone();
        after[0].2 = 200;
        let moved = moved_fraction(&nodes(&before), &nodes(&after), 3, 5_000);
        assert!(moved < 0.15, "moved {moved:.4}");
    }

    #[test]
    fn a_layout_is_checked() {
        let ok = StorageLayout {
            version: 1,
            nodes: vec![
                LayoutNode {
                    node: "a".into(),
                    capacity_gib: 100,
                },
                LayoutNode {
                    node: "b".into(),
                    capacity_gib: 0,
                },
            ],
            applied_at: None,
        };
        assert!(ok.check().is_ok());
        assert_eq!(ok.capacity("a"), 100);
        assert_eq!(ok.capacity("b"), 0);
        assert_eq!(ok.capacity("gone"), 0);
        assert_eq!(StorageLayout::default().capacity("any"), 1);
        let mut twice = ok.clone();
        twice.nodes[1].node = "a".into();
        assert_eq!(twice.check().expect_err("twice").field, "nodes[1].node");
        let mut empty = ok.clone();
        empty.nodes[0].capacity_gib = 0;
        assert_eq!(empty.check().expect_err("empty").field, "nodes");
        let mut huge = ok;
        huge.nodes[0].capacity_gib = MAX_CAPACITY_GIB + 1;
        assert_eq!(
            huge.check().expect_err("huge").field,
            "nodes[0].capacity_gib"
        );
    }
}
