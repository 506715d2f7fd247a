//! Garbage collection over three real storage nodes on loopback and a real metadata
//! database: blocks and shards no version or part references are deleted once older
//! than the grace period; referenced ones, young ones and ones written again since the
//! cutoff (a write in flight) are kept; a node that is down is reported, the others
//! collected.

mod common;

use std::time::Duration;

use common::{Cluster, data};
use lingjing_storage::BlockId;
use lingjing_storage::gc::{self, DEFAULT_GRACE};
use lingjing_storage::meta::{Condition, Meta, Object};

const THREE: [(&str, &str); 3] = [("st-a", "a"), ("st-b", "b"), ("st-c", "c")];

/// How many of the nodes hold `id`.
fn copies(cluster: &Cluster, id: &BlockId) -> usize {
    cluster
        .refs
        .iter()
        .filter(|n| cluster.holds(&n.id, id))
        .count()
}

#[tokio::test]
async fn unreferenced_old_blocks_go_and_everything_else_stays() {
    let mut cluster = Cluster::start(&THREE).await;
    let client = cluster.coding_client("2+1", 1);
    let dir = tempfile::tempdir().expect("tempdir");
    let meta = Meta::open(&format!(
        "sqlite://{}",
        dir.path().join("meta.db").display()
    ))
    .await
    .expect("meta");
    meta.create_bucket("b", "shop", 1).await.expect("bucket");

    let kept = client.put(data(1, 50_000)).await.expect("kept");
    let dropped = client.put(data(2, 50_000)).await.expect("dropped");
    let kept_coded = client
        .put_coded("2+1".parse().expect("code"), data(3, 90_000))
        .await
        .expect("coded");
    let dropped_coded = client
        .put_coded("2+1".parse().expect("code"), data(4, 90_000))
        .await
        .expect("coded");
    let in_flight = client.put(data(5, 50_000)).await.expect("in flight");
    meta.put_object(
        &Object {
            size: 140_000,
            etag: "e".into(),
            blocks: vec![kept.block_ref(), kept_coded.block_ref()],
            ..Object::new("b", "kept")
        },
        &Condition::None,
    )
    .await
    .expect("row")
    .expect("written");

    // Everything looks two days old; then a write in flight puts its block again (the
    // node renews it), and a new unreferenced block is written.
    cluster.age_all(Duration::from_secs(2 * 24 * 3600));
    client.put(data(5, 50_000)).await.expect("written again");
    let young = client.put(data(6, 50_000)).await.expect("young");

    let report = gc::collect(&meta, &client, DEFAULT_GRACE)
        .await
        .expect("gc");
    // The referenced (node, piece) pairs: the kept block's 3 copies and the kept coded
    // block's 3 shards.
    assert_eq!(report.referenced, 6, "{report:?}");
    // Deleted: 3 copies of `dropped` and the 3 shards of `dropped_coded`.
    assert_eq!(report.deleted(), 6, "{report:?}");
    assert_eq!(report.freed_bytes(), 3 * 50_000 + 3 * 45_000, "{report:?}");
    assert!(report.nodes.iter().all(|n| n.error.is_none()), "{report:?}");

    assert_eq!(copies(&cluster, &kept.id), 3);
    assert_eq!(copies(&cluster, &dropped.id), 0);
    for (shard, _) in &kept_coded.shards {
        assert_eq!(copies(&cluster, shard), 1);
    }
    for (shard, _) in &dropped_coded.shards {
        assert_eq!(copies(&cluster, shard), 0);
    }
    assert_eq!(
        copies(&cluster, &in_flight.id),
        3,
        "renewed by the second write"
    );
    assert_eq!(
        copies(&cluster, &young.id),
        3,
        "younger than the grace period"
    );
    assert_eq!(
        client
            .get_coded(
                &kept_coded.id,
                kept_coded.len,
                kept_coded.code,
                &kept_coded.shards
            )
            .await
            .expect("read"),
        data(3, 90_000)
    );

    // A node that is down is reported; the others are collected.
    cluster.age_all(Duration::from_secs(2 * 24 * 3600));
    cluster.stop("st-c").await;
    let report = gc::collect(&meta, &client, DEFAULT_GRACE)
        .await
        .expect("gc");
    let down = report
        .nodes
        .iter()
        .find(|n| n.node == "st-c")
        .expect("st-c");
    assert!(
        down.error.as_deref().is_some_and(|e| e.contains("st-c")),
        "{report:?}"
    );
    assert_eq!(
        report.deleted(),
        4,
        "in_flight and young on two nodes: {report:?}"
    );
    assert_eq!(copies(&cluster, &kept.id), 2, "st-c is down, not emptied");
}
