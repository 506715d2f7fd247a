//! Erasure-coded blocks (4+2) over six real storage nodes in three sites on loopback: the
//! shards of a block go to six different nodes, two per site, so a whole site can be
//! lost; reads decode from parity past a node that is down or a shard that rotted (which
//! is quarantined, never served); writes with a site down still succeed, at most `m`
//! shards on any node; a write that cannot keep that fails.

mod common;

use std::collections::{HashMap, HashSet};

use common::{Cluster, SIX, TOKEN, data};
use lingjing_model::ErasureCode;
use lingjing_storage::{BlockId, ReplicaError};

fn code() -> ErasureCode {
    "4+2".parse().expect("code")
}

fn site_of<'a>(cluster: &'a Cluster, node: &str) -> &'a str {
    &cluster.refs[cluster.index(node)].site
}

#[tokio::test]
async fn shards_go_to_six_nodes_two_per_site_and_read_back() {
    let cluster = Cluster::start(&SIX).await;
    let client = cluster.coding_client("4+2", 64 * 1024);
    assert_eq!(client.code_for(1 << 20, false), Some(code()));
    assert_eq!(
        client.code_for(1000, false),
        None,
        "small blocks are replicated"
    );
    let block = data(3, 1 << 20);
    let placed = client
        .put_coded(code(), block.clone())
        .await
        .expect("written");
    assert!(!placed.degraded);
    assert_eq!(placed.shards.len(), 6);
    let nodes: HashSet<&str> = placed.shards.iter().map(|(_, n)| n.as_str()).collect();
    assert_eq!(nodes.len(), 6, "one shard per node");
    let mut per_site: HashMap<&str, usize> = HashMap::new();
    for (sid, node) in &placed.shards {
        assert!(cluster.holds(node, sid), "{node} holds its shard");
        assert!(
            !cluster.holds(node, &placed.id),
            "no node holds the whole block"
        );
        *per_site.entry(site_of(&cluster, node)).or_default() += 1;
    }
    assert!(per_site.values().all(|&n| n == 2), "{per_site:?}");
    // Raw bytes stored: 1.5x the block (6 shards of a quarter each).
    let raw: u64 = placed
        .shards
        .iter()
        .map(|(sid, node)| {
            std::fs::metadata(cluster.block_file(node, sid))
                .expect("file")
                .len()
        })
        .sum();
    assert_eq!(raw, (1 << 20) / 4 * 6);
    let back = client
        .get_coded(&placed.id, placed.len, placed.code, &placed.shards)
        .await
        .expect("read");
    assert_eq!(back, block);
}

#[tokio::test]
async fn with_a_whole_site_down_blocks_read_and_new_writes_succeed() {
    let mut cluster = Cluster::start(&SIX).await;
    let client = cluster.coding_client("4+2", 64 * 1024);
    let before = data(5, 900_001);
    let placed = client
        .put_coded(code(), before.clone())
        .await
        .expect("written");
    // The site holding data shard 0 goes dark: both its nodes.
    let site = site_of(&cluster, &placed.shards[0].1).to_owned();
    let dark: Vec<String> = cluster
        .refs
        .iter()
        .filter(|n| n.site == site)
        .map(|n| n.id.clone())
        .collect();
    for node in &dark {
        cluster.stop(node).await;
    }
    let back = client
        .get_coded(&placed.id, placed.len, placed.code, &placed.shards)
        .await
        .expect("read from parity");
    assert_eq!(back, before);

    // Written while the site is down: all six shards on the four nodes left, no node
    // with more than two, so losing one more node still leaves four.
    let during = data(7, 1 << 20);
    let written = client
        .put_coded(code(), during.clone())
        .await
        .expect("written with a site down");
    assert!(written.degraded, "two sites of three: degraded");
    let mut load: HashMap<&str, usize> = HashMap::new();
    for (_, node) in &written.shards {
        assert!(!dark.contains(node), "{node} is down");
        *load.entry(node.as_str()).or_default() += 1;
    }
    assert!(load.values().all(|&n| n <= 2), "{load:?}");
    let busiest = load
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(node, _)| (*node).to_owned())
        .expect("a node");
    cluster.stop(&busiest).await;
    let back = client
        .get_coded(&written.id, written.len, written.code, &written.shards)
        .await
        .expect("read with a site and a node down");
    assert_eq!(back, during);
}

#[tokio::test]
async fn a_rotted_shard_is_never_served_and_is_quarantined() {
    let cluster = Cluster::start(&SIX).await;
    let client = cluster.coding_client("4+2", 64 * 1024);
    let block = data(11, 300_000);
    let placed = client
        .put_coded(code(), block.clone())
        .await
        .expect("written");
    let (sid, node) = placed.shards[1].clone();
    cluster.rot(&node, &sid, 4_321);
    let back = client
        .get_coded(&placed.id, placed.len, placed.code, &placed.shards)
        .await
        .expect("read");
    assert_eq!(back, block, "decoded from parity, byte-exact");
    assert!(
        !cluster.holds(&node, &sid),
        "the rotted shard was quarantined"
    );
}

#[tokio::test]
async fn more_than_m_shards_lost_is_an_error_naming_each_failure() {
    let mut cluster = Cluster::start(&SIX).await;
    let client = cluster.coding_client("4+2", 64 * 1024);
    let placed = client
        .put_coded(code(), data(13, 200_000))
        .await
        .expect("written");
    for (_, node) in &placed.shards[..3] {
        cluster.stop(node).await;
    }
    let err = client
        .get_coded(&placed.id, placed.len, placed.code, &placed.shards)
        .await
        .expect_err("three of six shards lost");
    let text = err.to_string();
    assert!(matches!(err, ReplicaError::Unreadable { .. }), "{text}");
    for (_, node) in &placed.shards[..3] {
        assert!(text.contains(node.as_str()), "{text}");
    }
}

#[tokio::test]
async fn a_write_that_would_put_more_than_m_shards_on_a_node_fails() {
    let mut cluster = Cluster::start(&SIX).await;
    for node in ["wx-1", "wx-2", "nj-1", "nj-2"] {
        cluster.stop(node).await;
    }
    let err = cluster
        .coding_client("4+2", 64 * 1024)
        .put_coded(code(), data(17, 200_000))
        .await
        .expect_err("two nodes cannot hold six shards, two at most each");
    assert!(
        matches!(
            err,
            ReplicaError::CodedShort {
                durable: 4,
                most: 2,
                ..
            }
        ),
        "{err}"
    );
    let id = BlockId::of(&data(17, 200_000));
    assert!(err.to_string().contains(&id.to_string()), "{err}");
}

#[tokio::test]
async fn a_full_disk_sends_shards_and_copies_to_other_nodes() {
    let cluster = Cluster::start(&SIX).await;
    cluster.fill("nj-1");
    let client = cluster.coding_client("4+2", 64 * 1024);
    let block = data(19, 500_000);
    let placed = client
        .put_coded(code(), block.clone())
        .await
        .expect("written");
    assert!(
        placed.shards.iter().all(|(_, n)| n != "nj-1"),
        "{:?}",
        placed.shards
    );
    assert_eq!(
        client
            .get_coded(&placed.id, placed.len, placed.code, &placed.shards)
            .await
            .expect("read"),
        block
    );
    let copies = client.put(data(23, 100_000)).await.expect("replicated");
    assert!(
        !copies.nodes.iter().any(|n| n == "nj-1"),
        "{:?}",
        copies.nodes
    );
    // The full node says so (507), and counts it.
    let node = &cluster.refs[cluster.index("nj-1")];
    let id = BlockId::of(b"x");
    let res = reqwest::Client::new()
        .put(format!("http://{}/v1/blocks/{id}", node.addr))
        .bearer_auth(TOKEN)
        .body(&b"x"[..])
        .send()
        .await
        .expect("put");
    assert_eq!(res.status(), 507);
    assert!(res.text().await.expect("text").contains("disk is full"));
}
