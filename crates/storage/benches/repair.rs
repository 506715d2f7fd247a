//! Repair speed: six real storage nodes (two in each of three sites, in this process, on
//! loopback, each with its own directory), 1 GiB of objects written erasure-coded (4+2,
//! 4 MiB blocks: 1 MiB shards) or replicated (3 copies, 1 MiB blocks); one node's disk is
//! then wiped and a single repair pass (`lingjing_storage::repair::repair`, unthrottled)
//! writes back every copy or shard it held. Prints the bytes rebuilt (written back to the
//! node) and read, the pass's time, and GiB rebuilt per minute.
//!
//! Run with `cargo bench -p lingjing-storage --bench repair` (or `bench/repair.sh`); the
//! figures are kept in `bench/README.md`. `REPAIR_GIB` sets the data written (default 1).

use std::time::Instant;

use bytes::Bytes;
use lingjing_storage::meta::{Condition, Meta, Object};
use lingjing_storage::node::NodeConfig;
use lingjing_storage::placement::NodeRef;
use lingjing_storage::{Erasure, Redundancy, Replicas};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const TOKEN: &str = "repair-bench-token";

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let gib: u64 = std::env::var("REPAIR_GIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    for coded in [true, false] {
        runtime.block_on(run(coded, gib));
    }
}

async fn run(coded: bool, gib: u64) {
    let sites = ["wuxi", "wuxi", "nanjing", "nanjing", "suzhou", "suzhou"];
    let mut dirs = Vec::new();
    let mut refs = Vec::new();
    let mut handles = Vec::new();
    for (i, site) in sites.iter().enumerate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let node = lingjing_storage::start(NodeConfig {
            node_id: format!("st-{i}"),
            listen: "127.0.0.1:0".parse().expect("addr"),
            data_dir: dir.path().to_path_buf(),
            token: TOKEN.into(),
            max_block_bytes: 8 << 20,
            scrub: lingjing_storage::scrub::ScrubSchedule::on_request(),
            reserve_bytes: 0,
        })
        .await
        .expect("node");
        refs.push(NodeRef {
            id: format!("st-{i}"),
            site: (*site).into(),
            addr: node.addr(),
            weight: 1,
        });
        handles.push(node);
        dirs.push(dir);
    }
    let policy = Redundancy {
        replicas: 3,
        erasure: coded.then(|| Erasure {
            code: "4+2".parse().expect("code"),
            min_bytes: 1,
        }),
    };
    let replicas = Replicas::new(refs.clone(), policy, TOKEN).expect("client");
    let meta_dir = tempfile::tempdir().expect("tempdir");
    let meta = Meta::open(&format!(
        "sqlite://{}",
        meta_dir.path().join("meta.db").display()
    ))
    .await
    .expect("meta");
    meta.create_bucket("b", "bench", 1).await.expect("bucket");
    let block_len: usize = if coded { 4 << 20 } else { 1 << 20 };
    let blocks = (gib << 30) as usize / block_len;
    let mut rng = StdRng::seed_from_u64(42);
    let mut refs_written = Vec::new();
    for n in 0..blocks {
        let mut data = vec![0u8; block_len];
        rng.fill(&mut data[..]);
        let data = Bytes::from(data);
        let r = if coded {
            replicas
                .put_coded("4+2".parse().expect("code"), data)
                .await
                .expect("coded write")
                .block_ref()
        } else {
            replicas.put(data).await.expect("write").block_ref()
        };
        refs_written.push(r.clone());
        if refs_written.len() == 64 || n + 1 == blocks {
            let key = format!("obj-{n}");
            let blocks = std::mem::take(&mut refs_written);
            meta.put_object(
                &Object {
                    size: blocks.iter().map(|b| b.len).sum(),
                    etag: "e".into(),
                    blocks,
                    ..Object::new("b", &key)
                },
                &Condition::None,
            )
            .await
            .expect("row")
            .expect("written");
        }
    }
    // The node loses its disk (replaced): every copy or shard it held is gone.
    let lost = &dirs[2];
    let before = dir_bytes(lost.path());
    for entry in std::fs::read_dir(lost.path().join("blocks")).expect("blocks dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            std::fs::remove_dir_all(&path).expect("wipe");
        }
    }
    let started = Instant::now();
    let report = lingjing_storage::repair::repair(&meta, &replicas, 0)
        .await
        .expect("repair pass");
    let secs = started.elapsed().as_secs_f64();
    let rebuilt = dir_bytes(lost.path());
    assert_eq!(report.unrecoverable, 0, "{report:?}");
    assert!(
        rebuilt >= before * 99 / 100,
        "rebuilt {rebuilt} of {before} bytes"
    );
    let gib_rebuilt = rebuilt as f64 / f64::from(1 << 30);
    println!(
        "repair {}: {gib} GiB stored; node st-2 lost {:.2} GiB in {} pieces; rebuilt in {:.1} s \
         ({:.2} GiB read): {:.2} GiB rebuilt per minute",
        if coded { "4+2" } else { "3 copies" },
        gib_rebuilt,
        report.repaired,
        secs,
        report.bytes_read as f64 / f64::from(1 << 30),
        gib_rebuilt / secs * 60.0
    );
    for h in handles {
        h.shutdown().await;
    }
}

/// Bytes of the files under `dir`.
fn dir_bytes(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                total += e.metadata().map_or(0, |m| m.len());
            }
        }
    }
    total
}
