//! Object storage end to end with the real binary: three storage nodes and a gateway
//! (standalone, from token and key files), driven by the clients people use.
//!
//! - The AWS CLI (`s3 cp` with multipart, `sync` both ways, `ls`, `presign`, `rm
//!   --recursive`, `s3api` versioning) and `rclone sync` round-trip a directory tree
//!   byte-exact.
//!
//! - A storage node killed while objects are being written: writes go on with the two
//!   left (a quorum in two sites); with a second node killed they fail cleanly; every
//!   acknowledged object reads back byte-exact (from whichever replica is left) and no
//!   failed one is visible.
//! - Erasure-coded (4+2 over six nodes in three sites): both nodes of one site killed
//!   while objects are being written: writes go on, every acknowledged object reads back
//!   byte-exact (from parity for those written before), no failed one is visible.
//! - Then that site returns, one node as it was and one with a replaced (empty) disk: one
//!   repair pass and one rebalancing pass later, another whole site can go dark and
//!   every acknowledged object still reads byte-exact.
//! - The gateway killed in the middle of an upload (replicated, and erasure-coded): after
//!   a restart on the same metadata database, the half-sent object is not visible and
//!   what was acknowledged is.
//! - A presigned URL past its expiry is refused; a PUT or part declaring more than 5 GiB
//!   is refused from its head (`EntityTooLarge`), before any of its body.
//! - Two gateways on one PostgreSQL (with `LINGJING_TEST_POSTGRES`): what one writes the
//!   other reads; racing conditional creates through both end with one winner; racing
//!   overwrites end with one latest version both agree on.
//!
//! The crash tests need python3 with boto3 (a failure where `LINGJING_TEST_BOTO3` is set),
//! the tools test the AWS CLI and rclone (a failure where `LINGJING_TEST_S3_TOOLS` is
//! set); elsewhere they say they were skipped.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::Duration;

use common::Proc;

const KEY: &str = "CRASHKEY";
const SECRET: &str = "crash-secret-0123456789";

fn script() -> String {
    format!("{}/tests/clients/s3_writer.py", env!("CARGO_MANIFEST_DIR"))
}

/// python3 with `args` (a script of ours, or `-c CODE`) and the test's key.
fn python3(args: &[&str]) -> Command {
    let mut c = Command::new("python3");
    c.args(args)
        .env("AWS_ACCESS_KEY_ID", KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_CA_BUNDLE")
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy");
    c
}

/// `s3_writer.py ARGS`.
fn python(args: &[&str]) -> Command {
    let script = script();
    let mut all = vec![script.as_str()];
    all.extend_from_slice(args);
    python3(&all)
}

/// Runs `command`; its stdout, or a failure with what it printed.
fn stdout_of(mut command: Command) -> String {
    let out = command.output().expect("python3");
    assert!(
        out.status.success(),
        "python3 {:?} failed:\n{}{}",
        command.get_args().collect::<Vec<_>>(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn run_python3(args: &[&str]) -> String {
    stdout_of(python3(args))
}

fn run_python(args: &[&str]) -> String {
    stdout_of(python(args))
}

/// The `http://ADDR` a process printed after `marker`.
fn url_after(line: &str, marker: &str) -> Option<String> {
    let rest = line.split(marker).nth(1)?;
    let start = rest.find("http://")?;
    let url = rest[start..].split_whitespace().next()?;
    Some(url.trim_end_matches(',').to_owned())
}

struct Cluster {
    dir: tempfile::TempDir,
    nodes: Vec<Proc>,
    node_urls: Vec<String>,
    /// More flags for every gateway (e.g. `--erasure 4+2`).
    gateway_flags: Vec<String>,
}

impl Cluster {
    /// Three storage nodes, one in each of three sites.
    fn start() -> Cluster {
        Cluster::start_n(3)
    }

    /// `n` storage nodes; node `i` (from 1) in site `(i - 1) % 3 + 1`.
    fn start_n(n: usize) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("token"), "crash-cluster-token\n").expect("token");
        std::fs::write(dir.path().join("keys"), format!("{KEY} {SECRET} shop\n")).expect("keys");
        let mut nodes = Vec::new();
        let mut node_urls = Vec::new();
        for i in 1..=n {
            let (p, url) = spawn_node(dir.path(), i, "127.0.0.1:0");
            node_urls.push(url);
            nodes.push(p);
        }
        Cluster {
            dir,
            nodes,
            node_urls,
            gateway_flags: Vec::new(),
        }
    }

    /// Starts node `i` (from 1) again on its address and blocks directory.
    fn restart(&mut self, i: usize) {
        let addr = self.node_urls[i - 1]
            .trim_start_matches("http://")
            .to_owned();
        self.nodes[i - 1] = spawn_node(self.dir.path(), i, &addr).0;
    }

    fn meta(&self) -> PathBuf {
        self.dir.path().join("meta.db")
    }

    /// A gateway over the three nodes (blocks of 64 KiB, so objects span several).
    fn gateway(&self) -> (Proc, String) {
        self.gateway_with_blocks_kb(64)
    }

    fn gateway_with_blocks_kb(&self, block_kb: u32) -> (Proc, String) {
        self.gateway_on(&format!("sqlite://{}", self.meta().display()), block_kb)
    }

    /// A gateway keeping its metadata in `meta_url`.
    fn gateway_on(&self, meta_url: &str, block_kb: u32) -> (Proc, String) {
        let mut args: Vec<std::ffi::OsString> = vec![
            "s3".into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--admin".into(),
            "127.0.0.1:0".into(),
            "--block-kb".into(),
            block_kb.to_string().into(),
            "--token-file".into(),
            self.dir.path().join("token").into(),
            "--keys-file".into(),
            self.dir.path().join("keys").into(),
            "--meta-url".into(),
            meta_url.into(),
        ];
        for (i, url) in self.node_urls.iter().enumerate() {
            let addr = url.trim_start_matches("http://");
            args.push("--storage-node".into());
            args.push(format!("st-{}@site-{}={addr}", i + 1, i % 3 + 1).into());
        }
        args.extend(self.gateway_flags.iter().map(Into::into));
        let mut p = Proc::spawn("s3 gateway", args);
        let url = p.wait_for("its address", |l| url_after(l, "lingjing s3 serving"));
        (p, url)
    }
}

/// Storage node `st-{i}` on `listen`, its blocks in `dir/st-{i}`: the process and its URL.
fn spawn_node(dir: &Path, i: usize, listen: &str) -> (Proc, String) {
    let blocks = dir.join(format!("st-{i}"));
    let mut p = Proc::spawn(
        &format!("storage st-{i}"),
        [
            "storage".as_ref(),
            "--node".as_ref(),
            format!("st-{i}").as_ref(),
            "--listen".as_ref(),
            listen.as_ref(),
            "--token-file".as_ref(),
            dir.join("token").as_os_str(),
            "--blocks-dir".as_ref(),
            blocks.as_os_str(),
        ] as [&std::ffi::OsStr; 9],
    );
    let url = p.wait_for("its address", |l| url_after(l, "serving blocks"));
    (p, url)
}

/// `s3_writer.py write` into bucket `photos` (made first) through the gateway at `s3`:
/// objects written one after another until told to stop, each line `ACK key` or `ERR key`,
/// read by a thread.
struct Writer {
    child: Child,
    lines: Receiver<String>,
    stop: PathBuf,
    acked: Vec<String>,
    failed: Vec<String>,
}

impl Writer {
    fn start(dir: &Path, s3: &str) -> Writer {
        run_python(&["bucket", s3, "photos"]);
        let stop = dir.join("stop");
        let mut child = python(&["write", s3, "photos", stop.to_str().expect("utf-8")])
            .stdout(Stdio::piped())
            .spawn()
            .expect("writer");
        let (tx, lines) = channel();
        let stdout = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Writer {
            child,
            lines,
            stop,
            acked: Vec::new(),
            failed: Vec::new(),
        }
    }

    /// Takes one line; true if it was of kind `kind`.
    fn take(&mut self, line: &str, kind: Option<&str>) -> bool {
        let mut words = line.splitn(3, ' ');
        let (what, key) = (
            words.next().unwrap_or(""),
            words.next().unwrap_or("").to_owned(),
        );
        match what {
            "ACK" => self.acked.push(key),
            "ERR" => self.failed.push(key),
            _ => return false,
        }
        kind == Some(what)
    }

    /// Reads lines until `n` more of kind `kind` (`ACK` or `ERR`) came.
    fn until(&mut self, kind: &str, n: usize) {
        let mut seen = 0;
        while seen < n {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(120))
                .unwrap_or_else(|_| {
                    panic!(
                        "the writer stopped before {n} {kind}s (acked {:?}, failed {:?})",
                        self.acked, self.failed
                    )
                });
            seen += usize::from(self.take(&line, Some(kind)));
        }
    }

    /// Stops the writer: the keys acknowledged and the keys that failed.
    fn finish(mut self) -> (Vec<String>, Vec<String>) {
        std::fs::write(&self.stop, b"stop").expect("stop file");
        let status = self.child.wait().expect("writer exits");
        assert!(status.success(), "the writer failed: {status}");
        let rest: Vec<String> = self.lines.try_iter().collect();
        for line in rest {
            self.take(&line, None);
        }
        (self.acked, self.failed)
    }
}

/// Every key of `acked` reads back byte-exact from bucket `photos` at `s3`.
fn verify_acked(s3: &str, acked: &[String]) {
    let mut args = vec!["verify", s3, "photos"];
    args.extend(acked.iter().map(String::as_str));
    assert!(run_python(&args).contains(&format!("verified {}", acked.len())));
}

/// No key of `failed` is visible in bucket `photos` at `s3`.
fn verify_absent(s3: &str, failed: &[String]) {
    let mut args = vec!["absent", s3, "photos"];
    args.extend(failed.iter().map(String::as_str));
    run_python(&args);
}

#[test]
fn killed_storage_nodes_lose_no_acknowledged_object() {
    if !common::boto3_available() {
        return;
    }
    let mut cluster = Cluster::start();
    let (_gateway, s3) = cluster.gateway();
    let mut writer = Writer::start(cluster.dir.path(), &s3);

    writer.until("ACK", 5);
    cluster.nodes[0].kill9();
    // Two nodes in two sites are a write quorum: writing goes on.
    writer.until("ACK", 10);
    cluster.nodes[1].kill9();
    // One node is not: writes fail, cleanly.
    writer.until("ERR", 3);
    let (acked, failed) = writer.finish();

    assert!(acked.len() >= 15, "{acked:?}");
    verify_acked(&s3, &acked);
    verify_absent(&s3, &failed);
}

#[test]
fn erasure_coded_objects_survive_a_site_killed_mid_write() {
    if !common::boto3_available() {
        return;
    }
    // Six nodes, two in each of three sites; 4+2 shards of every 64 KiB block.
    let mut cluster = Cluster::start_n(6);
    cluster.gateway_flags = ["--erasure", "4+2", "--erasure-min-kib", "16"]
        .map(String::from)
        .to_vec();
    let (_gateway, s3) = cluster.gateway();
    let mut writer = Writer::start(cluster.dir.path(), &s3);

    writer.until("ACK", 5);
    // Site 1 (nodes 1 and 4) goes dark in the middle of writes: two shards of every
    // block written so far are gone, and new blocks put their six shards on the four
    // nodes left (at most two on any).
    cluster.nodes[0].kill9();
    cluster.nodes[3].kill9();
    writer.until("ACK", 10);
    let (acked, failed) = writer.finish();

    assert!(acked.len() >= 15, "{acked:?}");
    // The blocks were coded: cut at 4 x 64 KiB, node 2 holds 64 KiB shards of full ones.
    assert!(
        files_of_size(&cluster.dir.path().join("st-2"), 64 * 1024) >= 5,
        "no 64 KiB shards on st-2"
    );
    verify_acked(&s3, &acked);
    verify_absent(&s3, &failed);
}

/// Erasure-coded (4+2 over six nodes in three sites): a site goes dark while objects are
/// written, so the blocks written meanwhile put their six shards on the four nodes left
/// (three in one site). The site then comes back: one node as it was, the other with an
/// empty disk (replaced), and a byte flips in a shard file elsewhere (a scrub quarantines
/// it). One repair pass writes back the replaced node's shards and the rotted one, one
/// rebalancing pass spreads the degraded blocks over the three sites again: afterwards a
/// *different* site can go dark and every acknowledged object still reads byte-exact.
#[test]
fn a_site_that_returns_or_is_replaced_gets_full_redundancy_back() {
    if !common::boto3_available() {
        return;
    }
    let mut cluster = Cluster::start_n(6);
    // Repair and rebalancing are run below, one pass each, not on the gateway's clock.
    cluster.gateway_flags = [
        "--erasure",
        "4+2",
        "--erasure-min-kib",
        "16",
        "--repair-interval-min",
        "0",
        "--gc-interval-min",
        "0",
    ]
    .map(String::from)
    .to_vec();
    let (_gateway, s3) = cluster.gateway();
    let mut writer = Writer::start(cluster.dir.path(), &s3);
    writer.until("ACK", 4);
    // Site 1 (nodes 1 and 4) goes dark; writes go on over sites 2 and 3.
    cluster.nodes[0].kill9();
    cluster.nodes[3].kill9();
    writer.until("ACK", 8);
    let (acked, _failed) = writer.finish();

    // Site 1 returns: st-1 with its disk, st-4 replaced (an empty one), same addresses.
    let _ = std::fs::remove_dir_all(cluster.dir.path().join("st-4"));
    cluster.restart(1);
    cluster.restart(4);
    // And a byte flips in one of st-3's shard files: its scrub finds it (the node never
    // serves it again) and quarantines it.
    let rotted = paths_of_size(&cluster.dir.path().join("st-3"), 64 * 1024)
        .into_iter()
        .next()
        .expect("a 64 KiB shard on st-3");
    let good = std::fs::read(&rotted).expect("shard");
    let mut bad = good.clone();
    bad[4242] ^= 0x10;
    std::fs::write(&rotted, &bad).expect("rot");
    let st3 = &cluster.node_urls[2];
    let asked = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-X",
            "POST",
            "-H",
        ])
        .arg("Authorization: Bearer crash-cluster-token")
        .arg(format!("{st3}/v1/scrub"))
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&asked.stdout), "202");
    common::eventually(
        "st-3's scrub finds the rot",
        Duration::from_secs(30),
        || {
            let out = Command::new("curl")
                .args(["-s", "-H", "Authorization: Bearer crash-cluster-token"])
                .arg(format!("{st3}/v1/status"))
                .output()
                .ok()?;
            let status: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
            (status["scrub"]["corrupt_total"].as_u64()? >= 1).then_some(())
        },
    );
    let (repaired, moved) = heal(&cluster);
    assert_eq!(
        std::fs::read(&rotted).ok(),
        Some(good),
        "the rotted shard was written back as it was"
    );
    assert!(repaired > 0, "the replaced node's shards were written back");
    assert!(
        moved > 0,
        "the blocks written during the outage were spread again"
    );

    // Another site (nodes 2 and 5) goes dark: everything still reads byte-exact.
    cluster.nodes[1].kill9();
    cluster.nodes[4].kill9();
    assert!(acked.len() >= 12, "{acked:?}");
    verify_acked(&s3, &acked);
}

/// One repair pass and one rebalancing pass over `cluster`'s metadata and nodes, as a
/// gateway runs them: pieces written back, pieces moved.
fn heal(cluster: &Cluster) -> (u64, u64) {
    let nodes: Vec<lingjing_storage::NodeRef> = cluster
        .node_urls
        .iter()
        .enumerate()
        .map(|(i, url)| lingjing_storage::NodeRef {
            id: format!("st-{}", i + 1),
            site: format!("site-{}", i % 3 + 1),
            addr: url.trim_start_matches("http://").parse().expect("addr"),
            weight: 1,
        })
        .collect();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let meta =
            lingjing_storage::meta::Meta::open(&format!("sqlite://{}", cluster.meta().display()))
                .await
                .expect("meta");
        let replicas = lingjing_storage::Replicas::new(
            nodes,
            lingjing_storage::Redundancy {
                replicas: 3,
                erasure: Some(lingjing_storage::Erasure {
                    code: "4+2".parse().expect("code"),
                    min_bytes: 16 * 1024,
                }),
            },
            "crash-cluster-token",
        )
        .expect("client");
        let repair = lingjing_storage::repair::repair(&meta, &replicas, 0)
            .await
            .expect("repair pass");
        assert_eq!(repair.unrecoverable, 0, "{repair:?}");
        let rebalance = lingjing_storage::rebalance::rebalance(&meta, &replicas, 0)
            .await
            .expect("rebalance pass");
        assert_eq!(rebalance.deferred, 0, "{rebalance:?}");
        (repair.repaired, rebalance.pieces_written)
    })
}

/// How many files under `dir` are `len` bytes long.
fn files_of_size(dir: &Path, len: u64) -> usize {
    paths_of_size(dir, len).len()
}

/// The files under `dir` that are `len` bytes long.
fn paths_of_size(dir: &Path, len: u64) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(paths_of_size(&path, len));
        } else if entry.metadata().is_ok_and(|m| m.len() == len) {
            out.push(path);
        }
    }
    out
}

#[test]
fn a_gateway_killed_mid_upload_leaves_no_partial_object() {
    if !common::boto3_available() {
        return;
    }
    gateway_killed_mid_upload(&Cluster::start());
}

#[test]
fn a_gateway_killed_mid_upload_leaves_no_partial_object_with_erasure_coding() {
    if !common::boto3_available() {
        return;
    }
    let mut cluster = Cluster::start_n(6);
    cluster.gateway_flags = ["--erasure", "4+2", "--erasure-min-kib", "16"]
        .map(String::from)
        .to_vec();
    gateway_killed_mid_upload(&cluster);
}

/// A presigned 64 MiB PUT sent slowly through a gateway of `cluster`, the gateway
/// killed -9 while blocks (or shards) reach the nodes; after a restart on the same
/// metadata, the half-sent object is absent and the acknowledged one is there.
fn gateway_killed_mid_upload(cluster: &Cluster) {
    let (mut gateway, s3) = cluster.gateway();
    run_python(&["bucket", &s3, "video"]);
    let stop = cluster.dir.path().join("stop");
    std::fs::write(&stop, b"stop").expect("stop file");
    // A presigned PUT of 64 MiB sent slowly, and the gateway killed while it streams.
    let presign = format!(
        "import boto3\n\
         s3 = boto3.client('s3', endpoint_url='{s3}', region_name='us-east-1')\n\
         print(s3.generate_presigned_url('put_object', Params={{'Bucket': 'video', 'Key': 'big.mp4'}}, ExpiresIn=600))\n\
         s3.put_object(Bucket='video', Key='small', Body=b'acknowledged')\n"
    );
    let url = run_python3(&["-c", &presign]).trim().to_owned();
    let big = cluster.dir.path().join("big.mp4");
    // Bytes that differ block to block (equal blocks would be stored once).
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let bytes: Vec<u8> = (0..64 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(&big, bytes).expect("big file");
    let mut curl = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "--limit-rate", "4M", "-T"])
        .arg(&big)
        .arg(&url)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("curl");
    // Wait until the gateway has stored some of it: blocks on the nodes.
    common::eventually(
        "the upload reaches the storage nodes",
        Duration::from_secs(60),
        || {
            let blocks = walk_files(&cluster.dir.path().join("st-1"));
            (blocks >= 8).then_some(())
        },
    );
    gateway.kill9();
    let _ = curl.wait();

    let (_gateway, s3) = cluster.gateway();
    run_python(&["absent", &s3, "video", "big.mp4"]);
    let check = format!(
        "import boto3\n\
         s3 = boto3.client('s3', endpoint_url='{s3}', region_name='us-east-1')\n\
         assert s3.get_object(Bucket='video', Key='small')['Body'].read() == b'acknowledged'\n\
         assert [o['Key'] for o in s3.list_objects_v2(Bucket='video')['Contents']] == ['small']\n\
         import time, urllib.request, urllib.error\n\
         url = s3.generate_presigned_url('get_object', Params={{'Bucket': 'video', 'Key': 'small'}}, ExpiresIn=1)\n\
         time.sleep(2.5)\n\
         try:\n    urllib.request.urlopen(url)\n    raise SystemExit('an expired presigned URL was served')\n\
         except urllib.error.HTTPError as e:\n    body = e.read().decode()\n    assert e.code == 403 and 'expired' in body, (e.code, body)\n"
    );
    run_python3(&["-c", &check]);
}

/// Files under `dir`, recursively (a missing directory has none).
fn walk_files(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| {
            let p = e.path();
            if p.is_dir() { walk_files(&p) } else { 1 }
        })
        .sum()
}

/// Whether the AWS CLI and rclone are installed; where `LINGJING_TEST_S3_TOOLS` is set
/// (`.ci/run` installs both) their absence is a failure.
fn s3_tools_available() -> bool {
    let found = ["aws", "rclone"].iter().all(|tool| {
        Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    if !found {
        assert!(
            std::env::var_os("LINGJING_TEST_S3_TOOLS").is_none(),
            "LINGJING_TEST_S3_TOOLS is set but the AWS CLI or rclone is missing (pip install awscli; apt-get install rclone)"
        );
        eprintln!("skipped: the AWS CLI or rclone is not installed");
    }
    found
}

/// Runs a tool with the test's key and no proxy or CA overrides; returns its stdout.
fn tool(dir: &Path, program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .env("AWS_ACCESS_KEY_ID", KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_CONFIG_FILE", dir.join("aws-config"))
        .env("RCLONE_CONFIG", dir.join("rclone.conf"))
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_CA_BUNDLE")
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every file under `dir` with its bytes, by path relative to `dir`.
fn tree(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut std::collections::BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(dir).expect("read dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).expect("under root");
                out.insert(
                    rel.to_string_lossy().into_owned(),
                    std::fs::read(&p).expect("read"),
                );
            }
        }
    }
    let mut out = std::collections::BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// Pseudo-random bytes (equal blocks would be stored once).
fn noise(n: usize, mut x: u64) -> Vec<u8> {
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn the_aws_cli_and_rclone_round_trip_a_tree_byte_exact() {
    if !s3_tools_available() {
        return;
    }
    let cluster = Cluster::start();
    let (_gateway, s3) = cluster.gateway_with_blocks_kb(256);
    let dir = cluster.dir.path();
    // Multipart from 5 MiB on, in 5 MiB parts.
    std::fs::write(
        dir.join("aws-config"),
        "[default]\ns3 =\n  multipart_threshold = 5MB\n  multipart_chunksize = 5MB\n",
    )
    .expect("aws config");
    std::fs::write(
        dir.join("rclone.conf"),
        format!(
            "[lj]\ntype = s3\nprovider = Other\nendpoint = {s3}\naccess_key_id = {KEY}\nsecret_access_key = {SECRET}\nregion = us-east-1\n"
        ),
    )
    .expect("rclone config");
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("sub/deeper")).expect("dirs");
    std::fs::write(src.join("a.txt"), b"hello from the edge\n").expect("file");
    std::fs::write(src.join("sub/big.bin"), noise(12 << 20, 7)).expect("file");
    std::fs::write(src.join("sub/deeper/c.txt"), noise(300_000, 11)).expect("file");
    std::fs::write(src.join("space name.txt"), b"spaces").expect("file");
    std::fs::write(src.join("sub/\u{65e5}\u{672c}.txt"), b"unicode key").expect("file");
    std::fs::write(src.join("empty"), b"").expect("file");
    let src_s = src.to_str().expect("utf-8");
    let aws = |args: &[&str]| {
        let mut all = vec!["--endpoint-url", s3.as_str()];
        all.extend_from_slice(args);
        tool(dir, "aws", &all)
    };

    aws(&["s3", "mb", "s3://tools"]);
    // A 12 MiB file goes up in three parts: S3's multipart ETag says so.
    aws(&[
        "s3",
        "cp",
        &format!("{src_s}/sub/big.bin"),
        "s3://tools/big.bin",
    ]);
    let head = aws(&[
        "s3api",
        "head-object",
        "--bucket",
        "tools",
        "--key",
        "big.bin",
    ]);
    assert!(head.contains("-3\\\""), "{head}");
    aws(&["s3", "sync", src_s, "s3://tools/tree/"]);
    let listed = aws(&["s3", "ls", "--recursive", "s3://tools/tree/"]);
    assert_eq!(listed.lines().count(), 6, "{listed}");
    let back = dir.join("back");
    aws(&[
        "s3",
        "sync",
        "s3://tools/tree/",
        back.to_str().expect("utf-8"),
    ]);
    assert!(tree(&src) == tree(&back), "aws s3 sync did not round-trip");
    let url = aws(&["s3", "presign", "s3://tools/tree/a.txt"]);
    let got = Command::new("curl")
        .args(["-s", "-f", url.trim()])
        .output()
        .expect("curl");
    assert_eq!(got.stdout, b"hello from the edge\n");
    // Versioning through s3api: two writes of a key keep two versions.
    aws(&[
        "s3api",
        "put-bucket-versioning",
        "--bucket",
        "tools",
        "--versioning-configuration",
        "Status=Enabled",
    ]);
    for _ in 0..2 {
        aws(&[
            "s3",
            "cp",
            &format!("{src_s}/a.txt"),
            "s3://tools/versioned.txt",
        ]);
    }
    let versions = aws(&[
        "s3api",
        "list-object-versions",
        "--bucket",
        "tools",
        "--prefix",
        "versioned.txt",
    ]);
    assert_eq!(versions.matches("\"VersionId\"").count(), 2, "{versions}");
    aws(&["s3", "rm", "--recursive", "s3://tools/tree/"]);
    // (`s3 ls` of nothing exits 1: ask s3api.)
    let left = aws(&[
        "s3api",
        "list-objects-v2",
        "--bucket",
        "tools",
        "--prefix",
        "tree/",
    ]);
    assert!(!left.contains("\"Contents\""), "{left}");

    // rclone: sync up, check, sync down.
    tool(dir, "rclone", &["sync", src_s, "lj:tools/rc"]);
    tool(dir, "rclone", &["check", src_s, "lj:tools/rc"]);
    let down = dir.join("down");
    tool(
        dir,
        "rclone",
        &["sync", "lj:tools/rc", down.to_str().expect("utf-8")],
    );
    assert!(tree(&src) == tree(&down), "rclone sync did not round-trip");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_share_one_postgresql() {
    if !common::boto3_available() {
        return;
    }
    lingjing_control::testing::with_scratch_postgres(
        "two S3 gateways on one PostgreSQL",
        |url| async move {
            tokio::task::spawn_blocking(move || {
                let cluster = Cluster::start();
                let (_a, s3a) = cluster.gateway_on(&url, 64);
                let (_b, s3b) = cluster.gateway_on(&url, 64);
                let out = run_python(&["two", &s3a, "shared", &s3b]);
                assert!(out.contains("two gateways agree"), "{out}");
            })
            .await
            .expect("joined");
        },
    )
    .await;
}

#[test]
fn bodies_over_five_gib_are_refused_from_their_head() {
    if !common::boto3_available() {
        return;
    }
    let cluster = Cluster::start();
    let (_gateway, s3) = cluster.gateway();
    assert!(run_python(&["oversize", &s3, "limits"]).contains("oversize refused"));
}
