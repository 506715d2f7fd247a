//! Blocks replicated over three real storage nodes in three sites on loopback: a write is
//! acknowledged only when durable on a majority spanning two sites, so it survives a node
//! (or a site) being down; reads fail over past a node that is down, lacks the block, or
//! holds a rotted copy; a write that cannot reach a quorum fails instead of pretending.

mod common;

use common::{Cluster, TOKEN, data as sized};
use lingjing_storage::placement;
use lingjing_storage::{BlockId, Redundancy, ReplicaError, Replicas};

const SITES: [(&str, &str); 3] = [
    ("st-wuxi", "wuxi"),
    ("st-nanjing", "nanjing"),
    ("st-suzhou", "suzhou"),
];

fn replicas(cluster: &Cluster) -> Replicas {
    Replicas::new(cluster.refs.clone(), Redundancy::replicated(3), TOKEN).expect("replicas")
}

fn data(seed: u8) -> bytes::Bytes {
    sized(seed, 200_000)
}

#[tokio::test]
async fn a_block_is_durable_on_every_replica_and_reads_back() {
    let cluster = Cluster::start(&SITES).await;
    let replicas = replicas(&cluster);
    let placed = replicas.put(data(3)).await.expect("written");
    assert_eq!(placed.nodes.len(), 3);
    for node in &cluster.refs {
        assert!(cluster.holds(&node.id, &placed.id), "{} holds it", node.id);
    }
    let got = replicas.get(&placed.id, &placed.nodes).await.expect("read");
    assert_eq!(got, data(3));
}

#[tokio::test]
async fn with_one_site_down_writes_still_succeed_and_reads_fail_over() {
    let mut cluster = Cluster::start(&SITES).await;
    let replicas = replicas(&cluster);
    // The node a block prefers most goes away after the write: the read fails over.
    let before = replicas.put(data(5)).await.expect("written");
    let first = placement::order(&before.id, &cluster.refs)[0].id.clone();
    cluster.stop(&first).await;
    assert_eq!(
        replicas.get(&before.id, &before.nodes).await.expect("read"),
        data(5)
    );

    // Written while that site is down: durable on the two others, in two sites.
    let during = replicas
        .put(data(7))
        .await
        .expect("written with one site down");
    assert_eq!(during.nodes.len(), 2);
    assert!(!during.nodes.contains(&first));
    assert_eq!(
        replicas.get(&during.id, &during.nodes).await.expect("read"),
        data(7)
    );
}

#[tokio::test]
async fn a_write_that_reaches_only_one_site_fails() {
    let mut cluster = Cluster::start(&SITES).await;
    cluster.stop("st-nanjing").await;
    cluster.stop("st-suzhou").await;
    let err = replicas(&cluster)
        .put(data(9))
        .await
        .expect_err("no quorum");
    match &err {
        ReplicaError::NoQuorum { acked, quorum, .. } => assert_eq!((*acked, *quorum), (1, 2)),
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains("needs 2"), "{err}");
}

#[tokio::test]
async fn a_rotted_replica_is_skipped_and_the_block_read_from_another() {
    let cluster = Cluster::start(&SITES).await;
    let replicas = replicas(&cluster);
    let placed = replicas.put(data(11)).await.expect("written");
    // Rot the copy of the node a read tries first.
    let first = &placed.nodes[0];
    cluster.rot(first, &placed.id, 12_345);

    assert_eq!(
        replicas.get(&placed.id, &placed.nodes).await.expect("read"),
        data(11)
    );
    assert!(
        !cluster.holds(first, &placed.id),
        "the rotted copy was quarantined"
    );
}

#[tokio::test]
async fn a_block_nobody_holds_is_reported_with_every_nodes_answer() {
    let cluster = Cluster::start(&SITES).await;
    let id = BlockId::of(b"never written");
    let err = replicas(&cluster)
        .get(&id, &[])
        .await
        .expect_err("unreadable");
    let text = err.to_string();
    for node in &cluster.refs {
        assert!(text.contains(&format!("{}: 404", node.id)), "{text}");
    }
}

/// A node the layout gives no capacity (being removed) takes no new copy, even when a
/// node that should take one fails; what it already holds still reads, as the map names
/// it. With capacity back, it takes its share again.
#[tokio::test]
async fn a_node_without_capacity_takes_nothing_new_but_still_serves_what_it_holds() {
    let mut cluster = Cluster::start(&[
        ("st-a", "wuxi"),
        ("st-b", "nanjing"),
        ("st-c", "suzhou"),
        ("st-d", "suzhou"),
    ])
    .await;
    let full = replicas(&cluster);
    let old = full.put(data(40)).await.expect("written before");
    let mut refs = cluster.refs.clone();
    let drained = "st-d";
    refs.iter_mut()
        .filter(|n| n.id == drained)
        .for_each(|n| n.weight = 0);
    let layout = Replicas::new(refs.clone(), Redundancy::replicated(3), TOKEN).expect("replicas");
    for seed in 0..20 {
        let placed = layout.put(data(seed)).await.expect("written");
        assert!(!placed.nodes.iter().any(|n| n == drained), "{placed:?}");
        assert!(!cluster.holds(drained, &placed.id), "block {seed}");
    }
    let got = layout
        .get(&old.id, &old.nodes)
        .await
        .expect("old block reads");
    assert_eq!(got, data(40));
    // Even with a node down, the write goes to the other nodes with capacity only.
    cluster.stop("st-a").await;
    for seed in 20..30 {
        let placed = layout
            .put(data(seed))
            .await
            .expect("written with st-a down");
        assert!(!placed.nodes.iter().any(|n| n == drained), "{placed:?}");
    }
    // Only capacity-less nodes: refused, nothing to write to.
    let mut none = refs;
    none.iter_mut().for_each(|n| n.weight = 0);
    assert!(matches!(
        Replicas::new(none, Redundancy::replicated(3), TOKEN),
        Err(ReplicaError::NoNodes)
    ));
    // Capacity back: some of the next blocks go there again.
    let back = replicas(&cluster);
    let mut took = 0;
    for seed in 100..130 {
        let placed = back.put(data(seed)).await.expect("written with st-a down");
        took += usize::from(placed.nodes.iter().any(|n| n == drained));
    }
    assert!(took > 0, "st-d took none of 30 blocks");
}
