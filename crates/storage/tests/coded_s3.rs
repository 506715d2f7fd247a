//! The S3 gateway on erasure-coded storage (4+2 over six real storage nodes in three
//! sites), driven by boto3 (`tests/clients/boto3_site_loss.py`): objects of one and many
//! blocks, multipart and copied objects are written as shards; with every node of one
//! site stopped, each reads back byte-exact (whole and by range) and new writes succeed.
//! And storage classes on a cluster that only replicates by policy: objects of the cold
//! classes (`STANDARD_IA`, `GLACIER_IR`) are erasure-coded all the same
//! (`tests/clients/boto3_storage_class.py`), STANDARD ones replicated.

mod common;

use common::{Cluster, SIX, TOKEN, boto3_available, run_client};
use lingjing_storage::census::census;
use lingjing_storage::gateway::{self, GatewayConfig, S3Key};
use lingjing_storage::meta::Meta;
use lingjing_storage::{Erasure, Redundancy};

/// A gateway over `cluster` keeping blocks as `redundancy` says (64 KiB blocks), metadata
/// at `meta_url`, tenant `shop`'s key.
async fn shop_gateway(
    cluster: &Cluster,
    meta_url: &str,
    redundancy: Redundancy,
) -> gateway::GatewayHandle {
    gateway::start(GatewayConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        domain: "s3.lingjing.test".into(),
        meta_url: meta_url.to_owned(),
        nodes: cluster.refs.clone(),
        redundancy,
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
    .expect("gateway")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_survive_a_whole_site_going_dark() {
    if !boto3_available() {
        return;
    }
    let mut cluster = Cluster::start(&SIX).await;
    let meta_dir = tempfile::tempdir().expect("tempdir");
    let meta_url = format!("sqlite://{}", meta_dir.path().join("meta.db").display());
    let gw = shop_gateway(
        &cluster,
        &meta_url,
        Redundancy {
            replicas: 3,
            erasure: Some(Erasure {
                code: "4+2".parse().expect("code"),
                min_bytes: 16 * 1024,
            }),
        },
    )
    .await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_storage_classes_are_erasure_coded() {
    if !boto3_available() {
        return;
    }
    let cluster = Cluster::start(&SIX).await;
    let meta_dir = tempfile::tempdir().expect("tempdir");
    let meta_url = format!("sqlite://{}", meta_dir.path().join("meta.db").display());
    // The policy codes nothing: only the storage class does.
    let gw = shop_gateway(&cluster, &meta_url, Redundancy::replicated(3)).await;
    run_client(
        "boto3_storage_class.py",
        &[],
        format!("http://{}", gw.addr()),
    )
    .await;
    let meta = Meta::open(&meta_url).await.expect("meta");
    let blocks = |key: &'static str| {
        let meta = meta.clone();
        async move {
            meta.object("classes", key)
                .await
                .expect("read")
                .expect("object")
                .blocks
        }
    };
    // Cold: cut at 4 x 64 KiB and coded (4+2, the default cold code), but for a tail
    // below the coding threshold (128 KiB); hot: 64 KiB copies.
    let cold = blocks("cold.bin").await;
    assert_eq!(cold.len(), 2, "{cold:?}");
    assert_eq!(
        cold[0].coded.as_ref().map(|c| c.code.to_string()),
        Some("4+2".to_owned())
    );
    assert!(cold[1].coded.is_none(), "a 37 KB tail is replicated");
    let hot = blocks("hot.bin").await;
    assert!(
        hot.iter().all(|b| b.coded.is_none() && b.nodes.len() == 3),
        "{hot:?}"
    );
    let big = blocks("big.bin").await;
    assert!(
        big.iter().filter(|b| b.coded.is_some()).count() >= 10,
        "{big:?}"
    );
    // The usage sample for billing: five objects (three of them cold), their bytes, the
    // disk they take and its parity part.
    let sample = lingjing_storage::usage::sample(&meta, 300_000)
        .await
        .expect("sample");
    let classes = sample
        .iter()
        .find(|s| s.bucket == "classes")
        .expect("bucket");
    assert_eq!(
        (classes.tenant.as_str(), classes.objects),
        ("shop", 5),
        "{classes:?}"
    );
    let big_len = 2 * 5 * 1024 * 1024 + 4000;
    assert_eq!(classes.stored_bytes, 4 * 300_000 + big_len, "{classes:?}");
    // Hot copies 3x, cold coded 1.5x (plus copied tails): between the two.
    assert!(classes.parity_bytes > 0, "{classes:?}");
    assert!(
        classes.raw_bytes > classes.stored_bytes * 3 / 2
            && classes.raw_bytes < classes.stored_bytes * 3,
        "{classes:?}"
    );
    gw.shutdown().await;
}
