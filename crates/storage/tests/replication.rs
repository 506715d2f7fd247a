//! Blocks replicated over three real storage nodes in three sites on loopback: a write is
//! acknowledged only when durable on a majority spanning two sites, so it survives a node
//! (or a site) being down; reads fail over past a node that is down, lacks the block, or
//! holds a rotted copy; a write that cannot reach a quorum fails instead of pretending.

use std::path::Path;

use bytes::Bytes;
use lingjing_storage::node::{NodeConfig, NodeHandle};
use lingjing_storage::placement::{self, NodeRef};
use lingjing_storage::{BlockId, ReplicaError, Replicas};

const TOKEN: &str = "replication-test-token";

struct Cluster {
    _dirs: Vec<tempfile::TempDir>,
    nodes: Vec<Option<NodeHandle>>,
    refs: Vec<NodeRef>,
}

impl Cluster {
    async fn start() -> Cluster {
        let mut dirs = Vec::new();
        let mut nodes = Vec::new();
        let mut refs = Vec::new();
        for (id, site) in [
            ("st-wuxi", "wuxi"),
            ("st-nanjing", "nanjing"),
            ("st-suzhou", "suzhou"),
        ] {
            let dir = tempfile::tempdir().expect("tempdir");
            let node = lingjing_storage::start(NodeConfig {
                node_id: id.into(),
                listen: "127.0.0.1:0".parse().expect("addr"),
                data_dir: dir.path().to_owned(),
                token: TOKEN.into(),
                max_block_bytes: 1 << 20,
            })
            .await
            .expect("node starts");
            refs.push(NodeRef {
                id: id.into(),
                site: site.into(),
                addr: node.addr(),
            });
            nodes.push(Some(node));
            dirs.push(dir);
        }
        Cluster {
            _dirs: dirs,
            nodes,
            refs,
        }
    }

    fn replicas(&self) -> Replicas {
        Replicas::new(self.refs.clone(), 3, TOKEN).expect("replicas")
    }

    fn index(&self, node_id: &str) -> usize {
        self.refs
            .iter()
            .position(|n| n.id == node_id)
            .expect("node")
    }

    fn dir(&self, node_id: &str) -> &Path {
        self._dirs[self.index(node_id)].path()
    }

    async fn stop(&mut self, node_id: &str) {
        let i = self.index(node_id);
        if let Some(n) = self.nodes[i].take() {
            n.shutdown().await;
        }
    }

    fn holds(&self, node_id: &str, id: &BlockId) -> bool {
        self.nodes[self.index(node_id)]
            .as_ref()
            .is_some_and(|n| n.store.len(id).expect("len").is_some())
    }
}

fn data(seed: u8) -> Bytes {
    Bytes::from(
        (0..200_000u32)
            .map(|i| (i as u8).wrapping_mul(seed))
            .collect::<Vec<u8>>(),
    )
}

#[tokio::test]
async fn a_block_is_durable_on_every_replica_and_reads_back() {
    let cluster = Cluster::start().await;
    let replicas = cluster.replicas();
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
    let mut cluster = Cluster::start().await;
    let replicas = cluster.replicas();
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
    let mut cluster = Cluster::start().await;
    cluster.stop("st-nanjing").await;
    cluster.stop("st-suzhou").await;
    let err = cluster
        .replicas()
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
    let cluster = Cluster::start().await;
    let replicas = cluster.replicas();
    let placed = replicas.put(data(11)).await.expect("written");
    // Rot the copy of the node a read tries first.
    let first = &placed.nodes[0];
    let hex = placed.id.to_string();
    let file = cluster
        .dir(first)
        .join("blocks")
        .join(&hex[0..2])
        .join(&hex[2..4])
        .join(&hex);
    let mut bytes = std::fs::read(&file).expect("block file");
    bytes[12_345] ^= 0xff;
    std::fs::write(&file, bytes).expect("rot");

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
    let cluster = Cluster::start().await;
    let id = BlockId::of(b"never written");
    let err = cluster
        .replicas()
        .get(&id, &[])
        .await
        .expect_err("unreadable");
    let text = err.to_string();
    for node in &cluster.refs {
        assert!(text.contains(&format!("{}: 404", node.id)), "{text}");
    }
}
