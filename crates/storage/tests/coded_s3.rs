//! The S3 gateway on erasure-coded storage (4+2 over six real storage nodes in three
//! sites), driven by boto3 (`tests/clients/boto3_site_loss.py`): objects of one and many
//! blocks, multipart and copied objects are written as shards; with every node of one
//! site stopped, each reads back byte-exact (whole and by range) and new writes succeed.

mod common;

use common::{Cluster, SIX, TOKEN, boto3_available, run_client};
use lingjing_storage::census::census;
use lingjing_storage::gateway::{self, GatewayConfig, S3Key};
use lingjing_storage::meta::Meta;
use lingjing_storage::{Erasure, Redundancy};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_survive_a_whole_site_going_dark() {
    if !boto3_available() {
        return;
    }
    let mut cluster = Cluster::start(&SIX).await;
    let meta_dir = tempfile::tempdir().expect("tempdir");
    let meta_url = format!("sqlite://{}", meta_dir.path().join("meta.db").display());
    let gw = gateway::start(GatewayConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        domain: "s3.lingjing.test".into(),
        meta_url: meta_url.clone(),
        nodes: cluster.refs.clone(),
        redundancy: Redundancy {
            replicas: 3,
            erasure: Some(Erasure {
                code: "4+2".parse().expect("code"),
                min_bytes: 16 * 1024,
            }),
        },
        cluster_token: TOKEN.into(),
        block_bytes: 64 * 1024,
        gc: None,
        repair: None,
        keys: vec![S3Key {
            access_key: "SHOPKEY".into(),
            secret: "shop-secret".into(),
            tenant: "shop".into(),
            read_only_bucket: None,
        }],
    })
    .await
    .expect("gateway");
    let endpoint = format!("http://{}", gw.addr());
    let record = meta_dir.path().join("objects.json");
    let record = record.to_str().expect("utf-8 path");
    run_client("boto3_site_loss.py", &["write", record], endpoint.clone()).await;

    // Blocks are cut at 4 x 64 KiB (each shard as large as a replicated block) and every
    // one is coded but the 2 KB object's: 4 for the 1 MB object, 1 for the 60 KB one, 20
    // and 2 for the multipart parts (the copy shares the 1 MB object's); none is at risk.
    let meta = Meta::open(&meta_url).await.expect("meta");
    let all = cluster.refs.iter().map(|n| n.id.clone()).collect();
    let c = census(&meta, &all, 3).await.expect("census");
    assert_eq!(c.coded_blocks, 27, "{c:?}");
    assert_eq!(c.blocks - c.coded_blocks, 1, "{c:?}");
    assert_eq!(
        (c.under_replicated, c.at_risk, c.unavailable),
        (0, 0, 0),
        "{c:?}"
    );

    for node in ["nj-1", "nj-2"] {
        cluster.stop(node).await;
    }
    let up = cluster
        .refs
        .iter()
        .filter(|n| n.site != "nanjing")
        .map(|n| n.id.clone())
        .collect();
    let c = census(&meta, &up, 3).await.expect("census");
    assert_eq!(c.unavailable, 0, "{c:?}");
    assert!(c.under_replicated >= c.coded_blocks, "{c:?}");
    run_client("boto3_site_loss.py", &["check", record], endpoint).await;
    gw.shutdown().await;
}
