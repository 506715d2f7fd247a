//! Object storage under `kill -9`, with the real binary and boto3: three storage nodes
//! and a gateway (standalone, from token and key files).
//!
//! - A storage node killed while objects are being written: writes go on with the two
//!   left (a quorum in two sites); with a second node killed they fail cleanly; every
//!   acknowledged object reads back byte-exact (from whichever replica is left) and no
//!   failed one is visible.
//! - The gateway killed in the middle of an upload: after a restart on the same metadata
//!   database, the half-sent object is not visible and what was acknowledged is.
//! - A presigned URL past its expiry is refused.
//!
//! Skipped (saying so) without python3 and boto3, unless `LINGJING_TEST_BOTO3` is set.

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

fn python(args: &[&str]) -> Command {
    let mut c = Command::new("python3");
    c.arg(script())
        .args(args)
        .env("AWS_ACCESS_KEY_ID", KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_CA_BUNDLE")
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy");
    c
}

fn run_python(args: &[&str]) -> String {
    let out = python(args).output().expect("python3");
    assert!(
        out.status.success(),
        "s3_writer.py {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
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
}

impl Cluster {
    fn start() -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("token"), "crash-cluster-token\n").expect("token");
        std::fs::write(dir.path().join("keys"), format!("{KEY} {SECRET} shop\n")).expect("keys");
        let mut nodes = Vec::new();
        let mut node_urls = Vec::new();
        for i in 1..=3 {
            let blocks = dir.path().join(format!("st-{i}"));
            let mut p = Proc::spawn(
                &format!("storage st-{i}"),
                [
                    "storage".as_ref(),
                    "--node".as_ref(),
                    format!("st-{i}").as_ref(),
                    "--listen".as_ref(),
                    "127.0.0.1:0".as_ref(),
                    "--token-file".as_ref(),
                    dir.path().join("token").as_os_str(),
                    "--blocks-dir".as_ref(),
                    blocks.as_os_str(),
                ] as [&std::ffi::OsStr; 9],
            );
            let url = p.wait_for("its address", |l| url_after(l, "serving blocks"));
            node_urls.push(url);
            nodes.push(p);
        }
        Cluster {
            dir,
            nodes,
            node_urls,
        }
    }

    fn meta(&self) -> PathBuf {
        self.dir.path().join("meta.db")
    }

    /// A gateway over the three nodes (blocks of 64 KiB, so objects span several).
    fn gateway(&self) -> (Proc, String) {
        let mut args: Vec<std::ffi::OsString> = vec![
            "s3".into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--admin".into(),
            "127.0.0.1:0".into(),
            "--block-kb".into(),
            "64".into(),
            "--token-file".into(),
            self.dir.path().join("token").into(),
            "--keys-file".into(),
            self.dir.path().join("keys").into(),
            "--meta-url".into(),
            format!("sqlite://{}", self.meta().display()).into(),
        ];
        for (i, url) in self.node_urls.iter().enumerate() {
            let addr = url.trim_start_matches("http://");
            args.push("--storage-node".into());
            args.push(format!("st-{}@site-{}={addr}", i + 1, i + 1).into());
        }
        let mut p = Proc::spawn("s3 gateway", args);
        let url = p.wait_for("its address", |l| url_after(l, "lingjing s3 serving"));
        (p, url)
    }
}

/// The writer's lines, read by a thread.
fn lines_of(child: &mut Child) -> Receiver<String> {
    let (tx, rx) = channel();
    let stdout = child.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Reads writer lines until `n` more of kind `kind` (`ACK` or `ERR`) came; returns them
/// all, sorted into acknowledged and failed keys.
fn until(
    rx: &Receiver<String>,
    kind: &str,
    n: usize,
    acked: &mut Vec<String>,
    failed: &mut Vec<String>,
) {
    let mut seen = 0;
    while seen < n {
        let line = rx
            .recv_timeout(Duration::from_secs(120))
            .unwrap_or_else(|_| {
                panic!("the writer stopped before {n} {kind}s (acked {acked:?}, failed {failed:?})")
            });
        let mut words = line.splitn(3, ' ');
        let (what, key) = (
            words.next().unwrap_or(""),
            words.next().unwrap_or("").to_owned(),
        );
        match what {
            "ACK" => acked.push(key),
            "ERR" => failed.push(key),
            _ => continue,
        }
        if what == kind {
            seen += 1;
        }
    }
}

fn stop_writer(
    mut writer: Child,
    rx: &Receiver<String>,
    stop: &Path,
    acked: &mut Vec<String>,
    failed: &mut Vec<String>,
) {
    std::fs::write(stop, b"stop").expect("stop file");
    let status = writer.wait().expect("writer exits");
    assert!(status.success(), "the writer failed: {status}");
    for line in rx.try_iter() {
        let mut words = line.splitn(3, ' ');
        match (words.next(), words.next()) {
            (Some("ACK"), Some(k)) => acked.push(k.to_owned()),
            (Some("ERR"), Some(k)) => failed.push(k.to_owned()),
            _ => {}
        }
    }
}

#[test]
fn killed_storage_nodes_lose_no_acknowledged_object() {
    if !common::boto3_available() {
        return;
    }
    let mut cluster = Cluster::start();
    let (_gateway, s3) = cluster.gateway();
    run_python(&["bucket", &s3, "photos"]);
    let stop = cluster.dir.path().join("stop");
    let mut writer = python(&["write", &s3, "photos", stop.to_str().expect("utf-8")])
        .stdout(Stdio::piped())
        .spawn()
        .expect("writer");
    let rx = lines_of(&mut writer);
    let (mut acked, mut failed) = (Vec::new(), Vec::new());

    until(&rx, "ACK", 5, &mut acked, &mut failed);
    cluster.nodes[0].kill9();
    // Two nodes in two sites are a write quorum: writing goes on.
    until(&rx, "ACK", 10, &mut acked, &mut failed);
    cluster.nodes[1].kill9();
    // One node is not: writes fail, cleanly.
    until(&rx, "ERR", 3, &mut acked, &mut failed);
    stop_writer(writer, &rx, &stop, &mut acked, &mut failed);

    assert!(acked.len() >= 15, "{acked:?}");
    let mut args = vec!["verify", s3.as_str(), "photos"];
    args.extend(acked.iter().map(String::as_str));
    assert!(run_python(&args).contains(&format!("verified {}", acked.len())));
    let mut args = vec!["absent", s3.as_str(), "photos"];
    args.extend(failed.iter().map(String::as_str));
    run_python(&args);
}

#[test]
fn a_gateway_killed_mid_upload_leaves_no_partial_object() {
    if !common::boto3_available() {
        return;
    }
    let cluster = Cluster::start();
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
    let out = Command::new("python3")
        .args(["-c", &presign])
        .env("AWS_ACCESS_KEY_ID", KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env_remove("AWS_CA_BUNDLE")
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let url = String::from_utf8_lossy(&out.stdout).trim().to_owned();
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
    let out = Command::new("python3")
        .args(["-c", &check])
        .env("AWS_ACCESS_KEY_ID", KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env_remove("AWS_CA_BUNDLE")
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
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
