//! Self-repair over six real storage nodes in three sites and a real metadata database:
//! copies and shards a node lost (a wiped disk, a copy quarantined after rot) are written
//! back to the node the block map names, byte-exact; a block with too few pieces left is
//! reported, not guessed; a node that is down is skipped, not emptied.

mod common;

use common::{Cluster, SIX, data, meta_with_bucket, store};
use lingjing_storage::repair::repair;

#[tokio::test]
async fn lost_and_rotted_pieces_are_written_back_where_the_map_says() {
    let mut cluster = Cluster::start(&SIX).await;
    let client = cluster.coding_client("4+2", 1);
    let dir = tempfile::tempdir().expect("tempdir");
    let meta = meta_with_bucket(&dir).await;
    let code = "4+2".parse().expect("code");
    let c = client
        .put_coded(code, data(1, 400_000))
        .await
        .expect("coded");
    let r = client.put(data(2, 100_000)).await.expect("replicated");
    let doomed = client
        .put_coded(code, data(3, 400_000))
        .await
        .expect("coded");
    store(&meta, "kept", vec![c.block_ref(), r.block_ref()]).await;
    store(&meta, "doomed", vec![doomed.block_ref()]).await;

    // Nothing missing: nothing to do.
    let report = repair(&meta, &client, 0).await.expect("repair");
    assert_eq!(
        (report.blocks, report.missing, report.repaired),
        (3, 0, 0),
        "{report:?}"
    );

    // A node loses everything it held; another's shard rots and a read quarantines it;
    // three shards of `doomed` are gone (one more than its parity).
    let wiped = c.shards[0].1.clone();
    for (sid, node) in c.shards.iter().chain(&doomed.shards) {
        if *node == wiped {
            cluster.lose(node, sid);
        }
    }
    if r.nodes.contains(&wiped) {
        cluster.lose(&wiped, &r.id);
    }
    let (rotted, rot_node) = c.shards[3].clone();
    cluster.rot(&rot_node, &rotted, 99);
    assert_eq!(
        client
            .get_coded(&c.id, c.len, c.code, &c.shards)
            .await
            .expect("read"),
        data(1, 400_000)
    );
    assert!(
        !cluster.holds(&rot_node, &rotted),
        "quarantined by the read"
    );
    for (sid, node) in doomed.shards.iter().filter(|(_, n)| *n != wiped).take(2) {
        cluster.lose(node, sid);
    }

    let report = repair(&meta, &client, 0).await.expect("repair");
    let lost_r = usize::from(r.nodes.contains(&wiped)) as u64;
    // c: the wiped node's shard and the rotted one; r: the wiped copy if it had one;
    // doomed: three shards.
    assert_eq!(report.missing, 2 + lost_r + 3, "{report:?}");
    assert_eq!(report.repaired, 2 + lost_r, "{report:?}");
    assert_eq!((report.unrecoverable, report.failed), (1, 0), "{report:?}");
    for (sid, node) in &c.shards {
        assert!(cluster.holds(node, sid), "{node} has its shard of c back");
    }
    for node in &r.nodes {
        assert!(cluster.holds(node, &r.id), "{node} has its copy of r back");
    }
    // Every data shard of c is back: it reads without parity, byte-exact.
    for (sid, node) in &c.shards[..4] {
        let bytes = std::fs::read(cluster.block_file(node, sid)).expect("shard file");
        assert_eq!(lingjing_storage::BlockId::of(&bytes), *sid);
    }

    // A node that is down is skipped (its holdings are unknown), nothing else happens.
    let down = c.shards[1].1.clone();
    cluster.stop(&down).await;
    let report = repair(&meta, &client, 0).await.expect("repair");
    assert!(
        report.unlisted.iter().any(|e| e.contains(&down)),
        "{report:?}"
    );
    assert_eq!(report.repaired, 0, "{report:?}");
    assert_eq!(
        report.unrecoverable, 1,
        "doomed stays unrecoverable: {report:?}"
    );
}
