//! Offline autonomy of an edge node, with real processes: an edge fed by `lingjing up`'s
//! control plane caches a page; then the whole control side (control plane and origin) is
//! killed with SIGKILL, and the edge keeps serving the page — also after the edge itself
//! is restarted, from the snapshot and the disk cache it kept.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_lingjing");

fn start_up(data: &Path) -> (Child, String) {
    let mut child = Command::new(BIN)
        .args([
            "up",
            "--listen",
            "127.0.0.1:0",
            "--origin-listen",
            "127.0.0.1:0",
        ])
        .args([
            "--dns-listen",
            "127.0.0.1:0",
            "--dns-admin",
            "127.0.0.1:0",
            "--edge-http-port",
            "0",
            "--edge-https-port",
            "0",
            "--edge-admin-port",
            "0",
        ])
        .arg("--data-dir")
        .arg(data)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn up");
    let stdout = child.stdout.take().expect("stdout");
    let mut url = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("line");
        if let Some(rest) = line.trim().strip_prefix("control plane") {
            url = rest.split_whitespace().next().map(str::to_owned);
        }
        if line.contains("Ctrl-C stops everything") {
            break;
        }
    }
    (child, url.expect("control plane URL"))
}

/// Starts `lingjing edge` for the Wuxi node; returns it and its HTTP address.
fn start_edge(data: &Path, endpoint: &str) -> (Child, String) {
    let mut child = Command::new(BIN)
        .args([
            "edge",
            "--node",
            "wuxi-1-e1",
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
        ])
        .arg("--state-dir")
        .arg(data.join("standalone-edge"))
        .arg("--disk-cache-dir")
        .arg(data.join("standalone-edge/cache"))
        .args([
            "--disk-cache-mb",
            "64",
            "--endpoint",
            endpoint,
            "--data-dir",
        ])
        .arg(data)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn edge");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let mut addr = None;
    for line in lines.by_ref() {
        let line = line.expect("line");
        if let Some(rest) = line.split("serving on [").nth(1) {
            addr = rest.split(']').next().map(str::to_owned);
            break;
        }
    }
    // Keep draining stderr so the edge never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, addr.expect("edge address"))
}

fn fetch(addr: &str) -> (String, String) {
    let out = Command::new("curl")
        .args([
            "-s",
            "-D",
            "-",
            "-H",
            "Host: www.demo.example",
            "--max-time",
            "10",
        ])
        .arg(format!("http://{addr}/"))
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (head.to_ascii_lowercase(), body.to_owned())
}

fn kill(child: &mut Child, signal: &str) {
    let _ = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status();
    let _ = child.wait();
}

#[test]
fn an_edge_keeps_serving_without_the_control_plane_also_after_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let (mut up, endpoint) = start_up(&data);
    let (mut edge, addr) = start_edge(&data, &endpoint);

    // The edge gets its snapshot from the control plane; then it caches the page.
    let mut first = (String::new(), String::new());
    for _ in 0..100 {
        first = fetch(&addr);
        if first.0.starts_with("http/1.1 200") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(first.0.starts_with("http/1.1 200"), "{}", first.0);
    let (hit, body) = fetch(&addr);
    assert!(hit.contains("x-cache: hit"), "{hit}");

    // The control plane and the origin die.
    kill(&mut up, "-KILL");
    let (still, _) = fetch(&addr);
    assert!(
        still.contains("x-cache: hit"),
        "without the control plane: {still}"
    );

    // The edge restarts with nothing but its state directory.
    kill(&mut edge, "-TERM");
    let (mut edge, addr) = start_edge(&data, &endpoint);
    let (after, again) = fetch(&addr);
    assert!(after.starts_with("http/1.1 200"), "after restart: {after}");
    assert!(
        after.contains("x-cache: hit"),
        "served from the disk cache: {after}"
    );
    assert_eq!(again, body);
    kill(&mut edge, "-TERM");
}
