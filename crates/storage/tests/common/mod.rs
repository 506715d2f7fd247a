//! A cluster of real storage nodes on loopback for the block tests (replicated and
//! coded): each node its own server and data directory, nodes stopped and their files
//! damaged by name.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use bytes::Bytes;
use lingjing_storage::BlockId;
use lingjing_storage::node::{NodeConfig, NodeHandle};
use lingjing_storage::placement::NodeRef;

pub const TOKEN: &str = "block-test-token";

/// Six nodes, two in each of three sites.
pub const SIX: [(&str, &str); 6] = [
    ("wx-1", "wuxi"),
    ("wx-2", "wuxi"),
    ("nj-1", "nanjing"),
    ("nj-2", "nanjing"),
    ("sz-1", "suzhou"),
    ("sz-2", "suzhou"),
];

pub struct Cluster {
    dirs: Vec<tempfile::TempDir>,
    nodes: Vec<Option<NodeHandle>>,
    pub refs: Vec<NodeRef>,
    /// The ports of stopped nodes, held (every connection closed at once) so that no
    /// other test's node, which shares the token, takes a port this cluster's clients
    /// still write to.
    tombstones: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for t in &self.tombstones {
            t.abort();
        }
    }
}

impl Cluster {
    /// Starts one node per `(id, site)`.
    pub async fn start(spec: &[(&str, &str)]) -> Cluster {
        let mut dirs = Vec::new();
        let mut nodes = Vec::new();
        let mut refs = Vec::new();
        for (id, site) in spec {
            let dir = tempfile::tempdir().expect("tempdir");
            let node = lingjing_storage::start(NodeConfig {
                node_id: (*id).into(),
                listen: "127.0.0.1:0".parse().expect("addr"),
                data_dir: dir.path().to_owned(),
                token: TOKEN.into(),
                max_block_bytes: 1 << 20,
                scrub: lingjing_storage::scrub::ScrubSchedule::on_request(),
                reserve_bytes: 0,
            })
            .await
            .expect("node starts");
            refs.push(NodeRef {
                id: (*id).into(),
                site: (*site).into(),
                addr: node.addr(),
                weight: 1,
            });
            nodes.push(Some(node));
            dirs.push(dir);
        }
        Cluster {
            dirs,
            nodes,
            refs,
            tombstones: Vec::new(),
        }
    }

    /// A block client for this cluster coding blocks of `min_bytes` or more with `code`
    /// (e.g. "4+2"), keeping 3 copies of smaller ones.
    pub fn coding_client(&self, code: &str, min_bytes: u64) -> lingjing_storage::Replicas {
        lingjing_storage::Replicas::new(
            self.refs.clone(),
            lingjing_storage::Redundancy {
                replicas: 3,
                erasure: Some(lingjing_storage::Erasure {
                    code: code.parse().expect("code"),
                    min_bytes,
                }),
            },
            TOKEN,
        )
        .expect("client")
    }

    pub fn index(&self, node_id: &str) -> usize {
        self.refs
            .iter()
            .position(|n| n.id == node_id)
            .expect("node")
    }

    pub fn dir(&self, node_id: &str) -> &Path {
        self.dirs[self.index(node_id)].path()
    }

    /// Where `node_id` keeps block (or shard) `id`.
    pub fn block_file(&self, node_id: &str, id: &BlockId) -> PathBuf {
        let hex = id.to_string();
        self.dir(node_id)
            .join("blocks")
            .join(&hex[0..2])
            .join(&hex[2..4])
            .join(&hex)
    }

    /// Flips one byte of `node_id`'s copy of `id`, at `at` (modulo its length).
    pub fn rot(&self, node_id: &str, id: &BlockId, at: usize) {
        let file = self.block_file(node_id, id);
        let mut bytes = std::fs::read(&file).expect("block file");
        let at = at % bytes.len();
        bytes[at] ^= 0xff;
        std::fs::write(&file, bytes).expect("rot");
    }

    /// Makes every block file of every node look last written `by` ago.
    pub fn age_all(&self, by: std::time::Duration) {
        let when = std::time::SystemTime::now() - by;
        for dir in &self.dirs {
            let mut stack = vec![dir.path().join("blocks")];
            while let Some(d) = stack.pop() {
                for entry in std::fs::read_dir(&d).expect("read dir").flatten() {
                    let path = entry.path();
                    if path.is_dir() {
                        stack.push(path);
                    } else {
                        std::fs::File::options()
                            .write(true)
                            .open(&path)
                            .and_then(|f| f.set_modified(when))
                            .expect("age a block file");
                    }
                }
            }
        }
    }

    /// Removes `node_id`'s copy of `id` behind the node's back (a lost disk, say).
    pub fn lose(&self, node_id: &str, id: &BlockId) {
        std::fs::remove_file(self.block_file(node_id, id)).expect("remove a block file");
    }

    pub async fn stop(&mut self, node_id: &str) {
        let i = self.index(node_id);
        if let Some(n) = self.nodes[i].take() {
            n.shutdown().await;
            if let Ok(held) = tokio::net::TcpListener::bind(self.refs[i].addr).await {
                self.tombstones.push(tokio::spawn(async move {
                    while let Ok((conn, _)) = held.accept().await {
                        drop(conn);
                    }
                }));
            }
        }
    }

    /// Makes `node_id`'s disk look full (it keeps more free than there is).
    pub fn fill(&self, node_id: &str) {
        self.nodes[self.index(node_id)]
            .as_ref()
            .expect("running")
            .store
            .set_reserve_bytes(u64::MAX / 2);
    }

    pub fn holds(&self, node_id: &str, id: &BlockId) -> bool {
        self.nodes[self.index(node_id)]
            .as_ref()
            .is_some_and(|n| n.store.len(id).expect("len").is_some())
    }
}

/// `len` bytes that differ with `seed`.
pub fn data(seed: u8, len: u32) -> Bytes {
    Bytes::from(
        (0..len)
            .map(|i| (i as u8).wrapping_mul(seed) ^ (i >> 8) as u8)
            .collect::<Vec<u8>>(),
    )
}

/// Whether python3 can import boto3; when not, the test is skipped unless
/// `LINGJING_TEST_BOTO3` is set (as `.ci/run` sets it), which makes it a failure.
pub fn boto3_available() -> bool {
    let found = std::process::Command::new("python3")
        .args(["-c", "import boto3"])
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var_os("LINGJING_TEST_BOTO3").is_none(),
            "LINGJING_TEST_BOTO3 is set but python3 cannot import boto3 (pip install boto3)"
        );
        eprintln!("skipped: python3 with boto3 not found (pip install boto3)");
    }
    found
}

/// Runs `tests/clients/{script}` with `args` against the gateway at `endpoint` as
/// tenant `shop` (`SHOPKEY`/`shop-secret`) and tenant `rival` (`RIVALKEY`/`rival-secret`),
/// and asserts that it passed every check.
pub async fn run_client(script: &str, args: &[&str], endpoint: String) {
    let path = format!("{}/tests/clients/{script}", env!("CARGO_MANIFEST_DIR"));
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .arg(path)
            .args(args)
            .env("S3_ENDPOINT", endpoint)
            .env("S3_DOMAIN", "s3.lingjing.test")
            .env("SHOP_KEY", "SHOPKEY")
            .env("SHOP_SECRET", "shop-secret")
            .env("RIVAL_KEY", "RIVALKEY")
            .env("RIVAL_SECRET", "rival-secret")
            .env_remove("AWS_PROFILE")
            .env_remove("HTTP_PROXY")
            .env_remove("http_proxy")
            .output()
    })
    .await
    .expect("joined")
    .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{script} failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("all checks passed"), "{script}: {stdout}");
}

/// A metadata database in `dir` with bucket `b` of tenant `shop`.
pub async fn meta_with_bucket(dir: &tempfile::TempDir) -> lingjing_storage::meta::Meta {
    let meta = lingjing_storage::meta::Meta::open(&format!(
        "sqlite://{}",
        dir.path().join("meta.db").display()
    ))
    .await
    .expect("meta");
    meta.create_bucket("b", "shop", 1).await.expect("bucket");
    meta
}

/// Writes object `key` of bucket `b` made of `blocks`.
pub async fn store(
    meta: &lingjing_storage::meta::Meta,
    key: &str,
    blocks: Vec<lingjing_storage::meta::BlockRef>,
) {
    meta.put_object(
        &lingjing_storage::meta::Object {
            size: blocks.iter().map(|b| b.len).sum(),
            etag: "e".into(),
            blocks,
            ..lingjing_storage::meta::Object::new("b", key)
        },
        &lingjing_storage::meta::Condition::None,
    )
    .await
    .expect("row")
    .expect("written");
}
