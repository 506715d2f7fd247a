//! Rebalancing over real storage nodes and a real metadata database: when a node joins
//! the layout, copies move to it as the placement rule says (a block shared by two
//! objects moves once, both maps follow); when a node leaves it, its copies and shards
//! move off it; a node down past its grace has its copies rebuilt on the others; every
//! read stays byte-exact throughout; a second pass finds nothing to do; and garbage
//! collection then removes the pieces left behind, so that each node holds exactly what
//! the maps name on it.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{Cluster, SIX, TOKEN, data, meta_with_bucket, store};
use lingjing_storage::meta::{BlockRef, Meta};
use lingjing_storage::placement::{self, NodeRef};
use lingjing_storage::rebalance::rebalance;
use lingjing_storage::{BlockId, Erasure, Redundancy, Replicas};

/// Four nodes, each in a site of its own.
const FOUR_SITES: [(&str, &str); 4] = [
    ("a", "wuxi"),
    ("b", "nanjing"),
    ("c", "suzhou"),
    ("d", "taizhou"),
];

async fn map_of(meta: &Meta, key: &str) -> Vec<BlockRef> {
    meta.object("b", key)
        .await
        .expect("read")
        .expect("object")
        .blocks
}

/// `refs` with `node`'s weight set.
fn weighted(refs: &[NodeRef], node: &str, weight: u64) -> Vec<NodeRef> {
    let mut out = refs.to_vec();
    out.iter_mut()
        .filter(|n| n.id == node)
        .for_each(|n| n.weight = weight);
    out
}

/// Every (node, piece) the maps of `keys` name.
async fn named(meta: &Meta, keys: &[String]) -> HashSet<(String, BlockId)> {
    let mut out = HashSet::new();
    for key in keys {
        for r in map_of(meta, key).await {
            match &r.coded {
                None => {
                    for n in &r.nodes {
                        out.insert((n.clone(), r.id.parse().expect("id")));
                    }
                }
                Some(c) => {
                    for s in &c.shards {
                        out.insert((s.node.clone(), s.id.parse().expect("id")));
                    }
                }
            }
        }
    }
    out
}

/// Every (node, piece) the nodes hold.
fn held(cluster: &Cluster, pieces: &HashSet<BlockId>) -> HashSet<(String, BlockId)> {
    let mut out = HashSet::new();
    for n in &cluster.refs {
        for id in pieces {
            if cluster.holds(&n.id, id) {
                out.insert((n.id.clone(), *id));
            }
        }
    }
    out
}

#[tokio::test]
async fn a_joining_node_takes_its_share_and_leftovers_are_collected() {
    let cluster = Cluster::start(&FOUR_SITES).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let meta = meta_with_bucket(&dir).await;
    // Written while `d` had no capacity: three copies each on a, b and c.
    let before = Replicas::new(
        weighted(&cluster.refs, "d", 0),
        Redundancy::replicated(3),
        TOKEN,
    )
    .expect("client");
    let mut keys = Vec::new();
    let mut pieces = HashSet::new();
    for seed in 0..24u8 {
        let placed = before.put(data(seed, 50_000)).await.expect("written");
        assert!(!placed.nodes.contains(&"d".to_owned()));
        pieces.insert(placed.id);
        let key = format!("k{seed}");
        store(&meta, &key, vec![placed.block_ref()]).await;
        keys.push(key);
    }
    // One block shared by two objects (the same bytes written twice).
    let shared = before.put(data(0, 50_000)).await.expect("written");
    store(&meta, "twin", vec![shared.block_ref()]).await;
    keys.push("twin".into());

    // `d` joins with an equal share.
    let after =
        Replicas::new(cluster.refs.clone(), Redundancy::replicated(3), TOKEN).expect("client");
    let report = rebalance(&meta, &after, 0).await.expect("pass");
    // d is among the first three of four nodes for about three blocks in four.
    assert!(report.misplaced >= 10, "{report:?}");
    assert_eq!(report.deferred, 0, "{report:?}");
    // One copy moved per misplaced block; the shared block (if it moved) moved once, and
    // both maps follow it.
    let shared_moved = u64::from(
        !placement::order(&shared.id, &cluster.refs)[..3]
            .iter()
            .all(|n| shared.nodes.contains(&n.id)),
    );
    assert_eq!(
        report.pieces_written + shared_moved,
        report.misplaced,
        "{report:?}"
    );
    for (i, key) in keys.iter().enumerate() {
        let seed = if key == "twin" { 0 } else { i as u8 };
        let r = &map_of(&meta, key).await[0];
        let id: BlockId = r.id.parse().expect("id");
        let want: HashSet<String> = placement::order(&id, &cluster.refs)[..3]
            .iter()
            .map(|n| n.id.clone())
            .collect();
        let got: HashSet<String> = r.nodes.iter().cloned().collect();
        assert_eq!(got, want, "{key}");
        assert_eq!(
            after.get(&id, &r.nodes).await.expect("read"),
            data(seed, 50_000),
            "{key}"
        );
        for n in &r.nodes {
            assert!(cluster.holds(n, &id), "{key}: {n} holds it");
        }
    }
    let again = rebalance(&meta, &after, 0).await.expect("pass");
    assert_eq!((again.misplaced, again.pieces_written), (0, 0), "{again:?}");

    // Garbage collection removes the copies left behind: each node then holds exactly
    // what the maps name on it.
    assert_ne!(held(&cluster, &pieces), named(&meta, &keys).await);
    cluster.age_all(Duration::from_secs(3600));
    lingjing_storage::gc::collect(&meta, &after, Duration::from_secs(60))
        .await
        .expect("gc");
    assert_eq!(held(&cluster, &pieces), named(&meta, &keys).await);
}

#[tokio::test]
async fn a_leaving_node_is_emptied_of_copies_and_shards() {
    let mut spec = SIX.to_vec();
    spec.push(("tz-1", "taizhou"));
    let cluster = Cluster::start(&spec).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let meta = meta_with_bucket(&dir).await;
    let policy = Redundancy {
        replicas: 3,
        erasure: Some(Erasure {
            code: "4+2".parse().expect("code"),
            min_bytes: 100_000,
        }),
    };
    let all = Replicas::new(cluster.refs.clone(), policy, TOKEN).expect("client");
    let code = "4+2".parse().expect("code");
    let mut keys = Vec::new();
    let mut pieces = HashSet::new();
    for seed in 0..12u8 {
        let coded = all
            .put_coded(code, data(seed, 300_000))
            .await
            .expect("coded");
        let small = all.put(data(seed + 100, 20_000)).await.expect("copies");
        pieces.extend(coded.shards.iter().map(|(id, _)| *id));
        pieces.insert(small.id);
        let key = format!("k{seed}");
        store(&meta, &key, vec![coded.block_ref(), small.block_ref()]).await;
        keys.push(key);
    }
    let leaving = "nj-1";
    assert!(
        named(&meta, &keys).await.iter().any(|(n, _)| n == leaving),
        "{leaving} holds something to move"
    );
    // `nj-1` leaves the layout (capacity 0).
    let rest = Replicas::new(weighted(&cluster.refs, leaving, 0), policy, TOKEN).expect("client");
    let report = rebalance(&meta, &rest, 0).await.expect("pass");
    assert!(report.pieces_written > 0, "{report:?}");
    assert_eq!(report.deferred, 0, "{report:?}");
    assert!(
        !named(&meta, &keys).await.iter().any(|(n, _)| n == leaving),
        "no map names {leaving}"
    );
    for (seed, key) in keys.iter().enumerate() {
        let refs = map_of(&meta, key).await;
        let c = refs[0].coded.as_ref().expect("coded");
        let shards: Vec<(BlockId, String)> = c
            .shards
            .iter()
            .map(|s| (s.id.parse().expect("id"), s.node.clone()))
            .collect();
        // Six shards on six different nodes, and every site (three with two nodes left
        // in them, one with one) holds at most two.
        let nodes: HashSet<&String> = shards.iter().map(|(_, n)| n).collect();
        assert_eq!(nodes.len(), 6, "{key}: {shards:?}");
        for site in ["wuxi", "nanjing", "suzhou", "taizhou"] {
            let in_site = shards
                .iter()
                .filter(|(_, n)| cluster.refs.iter().any(|r| &r.id == n && r.site == site))
                .count();
            assert!(in_site <= 2, "{key}: {in_site} shards in {site}");
        }
        assert_eq!(
            rest.get_coded(
                &refs[0].id.parse().expect("id"),
                refs[0].len,
                c.code,
                &shards
            )
            .await
            .expect("coded read"),
            data(seed as u8, 300_000)
        );
        assert_eq!(
            rest.get(&refs[1].id.parse().expect("id"), &refs[1].nodes)
                .await
                .expect("copy read"),
            data(seed as u8 + 100, 20_000)
        );
    }
    cluster.age_all(Duration::from_secs(3600));
    lingjing_storage::gc::collect(&meta, &rest, Duration::from_secs(60))
        .await
        .expect("gc");
    let left = held(&cluster, &pieces);
    assert!(
        !left.iter().any(|(n, _)| n == leaving),
        "{leaving} still holds pieces"
    );
    assert_eq!(left, named(&meta, &keys).await);
}

/// A node reported down is waited for (nothing moves) until it has been down for the
/// gone-after period; then its copies are rebuilt on the nodes left, from the others.
#[tokio::test]
async fn a_node_down_past_its_grace_has_its_copies_rebuilt_elsewhere() {
    let mut cluster = Cluster::start(&FOUR_SITES).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let meta = meta_with_bucket(&dir).await;
    let client =
        Replicas::new(cluster.refs.clone(), Redundancy::replicated(3), TOKEN).expect("client");
    let mut keys = Vec::new();
    for seed in 0..16u8 {
        let placed = client.put(data(seed, 30_000)).await.expect("written");
        let key = format!("k{seed}");
        store(&meta, &key, vec![placed.block_ref()]).await;
        keys.push(key);
    }
    let down = "b";
    assert!(named(&meta, &keys).await.iter().any(|(n, _)| n == down));
    cluster.stop(down).await;
    client
        .update(
            cluster.refs.clone(),
            HashSet::from([down.to_owned()]),
            Redundancy::replicated(3),
            TOKEN,
        )
        .expect("update");
    // Within the grace: `b` is waited for, nothing moves.
    let waiting = rebalance(&meta, &client, 0).await.expect("pass");
    assert_eq!(
        (waiting.misplaced, waiting.pieces_written),
        (0, 0),
        "{waiting:?}"
    );
    // Past it: rebuilt on a, c and d.
    client.set_gone_after(Duration::ZERO);
    let report = rebalance(&meta, &client, 0).await.expect("pass");
    assert_eq!(report.deferred, 0, "{report:?}");
    assert!(report.pieces_written > 0, "{report:?}");
    assert!(
        !named(&meta, &keys).await.iter().any(|(n, _)| n == down),
        "no map names {down}"
    );
    for (seed, key) in keys.iter().enumerate() {
        let r = &map_of(&meta, key).await[0];
        assert_eq!(r.nodes.len(), 3, "{key}: {r:?}");
        let id: BlockId = r.id.parse().expect("id");
        for n in &r.nodes {
            assert!(cluster.holds(n, &id), "{key}: {n} holds it");
        }
        assert_eq!(
            client.get(&id, &r.nodes).await.expect("read"),
            data(seed as u8, 30_000)
        );
    }
}
