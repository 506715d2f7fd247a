//! End-to-end test of the binary: `lingjing up` on a fresh data directory seeds the demo
//! topology, operator commands read it back, its GSLB DNS answers a client of a demo line
//! with that line's node (and another once that node is drained, and the operator's static
//! records), SIGTERM stops it cleanly, and a second `up` on the same directory reuses it
//! without duplicating anything.

mod common;

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_lingjing");

/// A running `up`: the child, the control plane URL, the edge node URLs by node id and
/// the DNS server's address.
struct Up {
    child: Child,
    url: String,
    edges: Vec<(String, String)>,
    dns: SocketAddr,
}

/// Starts `lingjing up` on free ports.
fn start_up(data_dir: &Path) -> Up {
    let mut child = Command::new(BIN)
        .args([
            "up",
            "--listen",
            "127.0.0.1:0",
            "--origin-listen",
            "127.0.0.1:0",
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
            "--data-dir",
        ])
        .arg(data_dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn lingjing up");
    let stdout = child.stdout.take().expect("stdout");
    let mut url = None;
    let mut dns = None;
    let mut edges = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("read stdout");
        if let Some(rest) = line.trim().strip_prefix("control plane") {
            url = rest.split_whitespace().next().map(str::to_owned);
        }
        if let Some(rest) = line.trim().strip_prefix("GSLB DNS") {
            dns = rest.split_whitespace().next().and_then(|a| a.parse().ok());
        }
        if let Some(rest) = line.trim().strip_prefix("edge ") {
            let mut words = rest.split_whitespace();
            if let (Some(node), Some(http)) = (words.next(), words.next()) {
                edges.push((node.to_owned(), http.to_owned()));
            }
        }
        if line.contains("Ctrl-C stops everything") {
            break;
        }
    }
    Up {
        child,
        url: url.expect("up printed the control plane URL"),
        edges,
        dns: dns.expect("up printed the DNS address"),
    }
}

fn lingjing(data_dir: &Path, endpoint: &str, args: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--endpoint")
        .arg(endpoint)
        .env_remove("LINGJING_TOKEN")
        .output()
        .expect("run lingjing");
    assert!(
        out.status.success(),
        "lingjing {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn terminate(mut child: Child) {
    let pid = child.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    for _ in 0..200 {
        if let Some(status) = child.try_wait().expect("wait") {
            assert!(status.success(), "lingjing up exited with {status}");
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    panic!("lingjing up did not stop on SIGTERM");
}

#[test]
fn up_seeds_once_and_serves_operator_commands() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");

    let Up {
        child,
        url,
        edges,
        dns,
    } = start_up(&data);
    assert_eq!(edges.len(), 4, "three edge nodes and one parent: {edges:?}");
    let wuxi = &edges
        .iter()
        .find(|(n, _)| n == "wuxi-1-e1")
        .expect("wuxi edge")
        .1;
    let page = |n: u32| {
        let out = Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-D",
                "-",
                "-H",
                "Host: www.demo.example",
            ])
            .arg(format!("{wuxi}/?n={n}"))
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).to_ascii_lowercase()
    };
    let first = page(1);
    assert!(first.contains("x-cache: miss"), "{first}");
    let second = page(1);
    assert!(second.contains("x-cache: hit"), "{second}");
    let purged = lingjing(
        &data,
        &url,
        &["purge", "url", "http://www.demo.example/?n=1"],
    );
    assert!(purged.contains("applied on all 4 nodes"), "{purged}");
    let third = page(1);
    assert!(third.contains("x-cache: miss"), "after purge: {third}");

    // The edge reports its traffic with its heartbeats (every 2 s).
    let token = std::fs::read_to_string(data.join("operator.token")).expect("token file");
    let mut reported = 0;
    for _ in 0..100 {
        let out = Command::new("curl")
            .args(["-s", "-H"])
            .arg(format!("Authorization: Bearer {}", token.trim()))
            .arg(format!("{url}/v1/services/demo/usage"))
            .output()
            .expect("curl");
        let usage: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        reported = usage["requests"].as_u64().unwrap_or(0);
        if reported >= 3 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(reported >= 3, "usage reported: {reported} requests");
    let sites = lingjing(&data, &url, &["site", "list"]);
    for site in ["wuxi-1", "suqian-1", "taizhou-1", "nanjing-1"] {
        assert!(sites.contains(site), "{site} missing from:\n{sites}");
    }
    let nodes: serde_json::Value =
        serde_json::from_str(&lingjing(&data, &url, &["node", "list", "--json"])).expect("json");
    let nodes = nodes.as_array().expect("array");
    assert_eq!(nodes.len(), 5);
    assert!(
        nodes
            .iter()
            .all(|n| n["addresses"].as_array().is_some_and(|a| a.len() == 1))
    );
    let services = lingjing(&data, &url, &["service", "list"]);
    assert!(services.contains("www.demo.example") && services.contains("demo.cdn.lingjing.test."));
    let token = std::fs::read_to_string(data.join("operator.token")).expect("token file");
    assert!(token.trim().len() >= 32);
    dns_follows_lines_drains_and_static_records(&data, &url, dns);
    terminate(child);

    let Up { child, url, .. } = start_up(&data);
    let again: serde_json::Value =
        serde_json::from_str(&lingjing(&data, &url, &["node", "list", "--json"])).expect("json");
    assert_eq!(
        again.as_array().map(Vec::len),
        Some(5),
        "second up duplicated nodes"
    );
    assert!(
        again
            .as_array()
            .into_iter()
            .flatten()
            .all(|n| n["addresses"].as_array().is_some_and(|a| a.len() == 1)),
        "second up allocated more addresses"
    );
    let pools = lingjing(&data, &url, &["pool", "allocations", "nanjing-1-lo"]);
    assert_eq!(pools.lines().count(), 3, "{pools}");
    terminate(child);
}

/// `dig @DNS demo.cdn.lingjing.test A +subnet=...` for clients of each demo line: a node of
/// that line; after `node drain` of the answered node, another one within seconds (and it
/// back after `undrain`); a static record added with `lingjing record add` is served.
fn dns_follows_lines_drains_and_static_records(data: &Path, url: &str, dns: SocketAddr) {
    const DEMO: &str = "demo.cdn.lingjing.test.";
    let wuxi: IpAddr = "127.0.1.1".parse().expect("addr");
    let answer = |ecs: &str| {
        common::eventually(
            &format!("DNS answers {DEMO} for {ecs}"),
            Duration::from_secs(10),
            || {
                common::resolve(dns, DEMO, ecs)
                    .ok()
                    .filter(|a| !a.is_empty())
            },
        )
    };
    // Telecom and unicom Wuxi clients get the Wuxi node; a unicom Suqian client the Suqian one.
    assert_eq!(answer("198.51.100.1/32"), vec![wuxi]);
    assert_eq!(answer("203.0.113.0/26"), vec![wuxi]);
    assert_eq!(
        answer("203.0.113.70/32"),
        vec!["127.0.1.9".parse::<IpAddr>().expect("addr")]
    );

    lingjing(data, url, &["node", "drain", "wuxi-1-e1"]);
    let moved = common::eventually(
        "the drained node leaves the answers",
        Duration::from_secs(10),
        || {
            common::resolve(dns, DEMO, "198.51.100.1/32")
                .ok()
                .filter(|a| !a.is_empty() && !a.contains(&wuxi))
        },
    );
    assert!(
        moved.iter().all(|a| a.to_string().starts_with("127.0.1.")),
        "{moved:?}"
    );
    lingjing(data, url, &["node", "undrain", "wuxi-1-e1"]);
    common::eventually(
        "the node is handed out again",
        Duration::from_secs(10),
        || (common::resolve(dns, DEMO, "198.51.100.1/32").ok()? == vec![wuxi]).then_some(()),
    );

    lingjing(
        data,
        url,
        &[
            "record",
            "add",
            "api",
            "--name",
            "api",
            "--type",
            "A",
            "--value",
            "192.0.2.10",
        ],
    );
    let api: IpAddr = "192.0.2.10".parse().expect("addr");
    common::eventually(
        "the static record is served",
        Duration::from_secs(10),
        || {
            (common::resolve(dns, "api.cdn.lingjing.test.", "198.51.100.1/32").ok()? == vec![api])
                .then_some(())
        },
    );
}
