//! Traffic defence with real processes on loopback: a control plane and two `lingjing edge`
//! nodes serving the demo service, clients bound to their own addresses in 127.77.0.0/16.
//!
//! In turn: a flash crowd (60 sources in 60 /24s, each far below the per-source threshold,
//! together above the service threshold) is not refused, and it overflows the small
//! address table, which degrades to prefixes and says so in the metrics; a flood from six
//! sources against one node is detected there and refused on both nodes (the other one by
//! the fleet-wide rule the control plane made of the first's report), while an ordinary
//! client keeps getting 200s and an allow-listed flood source is never refused; the attack
//! is reported as an event. A rule in monitor mode refuses nothing but is counted; a rule
//! with a time to live stops applying by itself; past the per-source connection cap new
//! connections are closed at accept.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::{Access, EdgeProc, eventually, join_token, record_ports, start_edge_with};
use lingjing_client::Client;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const TOKEN: &str = "defence-test-operator-token";
const HOST: &str = "www.demo.example";
const BIN: &str = env!("CARGO_BIN_EXE_lingjing");

fn src(c: u8, d: u8) -> IpAddr {
    IpAddr::from([127, 77, c, d])
}

/// A connection from `source` to `to`.
async fn connect(source: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source, 0))?;
    tokio::time::timeout(Duration::from_secs(5), socket.connect(to))
        .await
        .map_err(|_| std::io::Error::other("connect timed out"))?
}

/// One `GET /` on `conn` (kept alive): the status and whether the server closes after it.
async fn request(conn: &mut TcpStream) -> std::io::Result<(u16, bool)> {
    conn.write_all(
        format!("GET / HTTP/1.1\r\nHost: {HOST}\r\nUser-Agent: defence-test\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut buf = Vec::with_capacity(4096);
    let head_end = loop {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut chunk))
            .await
            .map_err(|_| std::io::Error::other("response timed out"))??;
        if n == 0 {
            return Err(std::io::Error::other("closed before a response"));
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("bad status line"))?;
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut have = buf.len() - head_end;
    while have < length {
        let mut chunk = vec![0u8; (length - have).min(65536)];
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::Error::other("body cut short"));
        }
        have += n;
    }
    Ok((status, head.contains("connection: close")))
}

/// One request from `source` on a new connection.
async fn get_from(source: IpAddr, to: SocketAddr) -> std::io::Result<u16> {
    let mut conn = connect(source, to).await?;
    Ok(request(&mut conn).await?.0)
}

/// Answers a client got, by status.
#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    refused: AtomicU64,
    other: AtomicU64,
}

impl Tally {
    fn count(&self, status: u16) {
        let n = match status {
            200 => &self.ok,
            403 | 429 => &self.refused,
            _ => &self.other,
        };
        n.fetch_add(1, Ordering::Relaxed);
    }
}

/// A client sending `rate` requests per second from `source` to `to` until `stop`,
/// over a kept-alive connection (a new one when the server closes it).
fn client(
    source: IpAddr,
    to: SocketAddr,
    rate: u32,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(1) / rate);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut conn: Option<TcpStream> = None;
        while !stop.load(Ordering::Relaxed) {
            every.tick().await;
            if conn.is_none() {
                conn = connect(source, to).await.ok();
            }
            let Some(c) = conn.as_mut() else {
                tally.other.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            match request(c).await {
                Ok((status, close)) => {
                    tally.count(status);
                    if close {
                        conn = None;
                    }
                }
                Err(_) => {
                    tally.other.fetch_add(1, Ordering::Relaxed);
                    conn = None;
                }
            }
        }
    })
}

/// A metric's value summed over its series whose labels contain every one of `labels`.
async fn metric(admin: SocketAddr, name: &str, labels: &[&str]) -> f64 {
    let text = reqwest::get(format!("http://{admin}/metrics"))
        .await
        .and_then(|r| r.error_for_status())
        .expect("metrics")
        .text()
        .await
        .expect("metrics body");
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.split(['{', ' '])
                .next()
                .is_some_and(|n| n == name || n == format!("{name}_total"))
        })
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Polls `check` every `every` until it gives something, for at most 30 s.
async fn until<T, F, Fut>(what: &str, every: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not within 30 s: {what}"
        );
        tokio::time::sleep(every).await;
    }
}

/// How often a poll repeats; slow enough that a poller from one address stays below the
/// test's 10 requests/s threshold.
const POLL: Duration = Duration::from_millis(250);

/// Waits until every one of `edges` serves the control plane's current version.
async fn applied(api: &Client, edges: &[EdgeProc]) {
    let snap: Value = api.get("/v1/snapshots/edge").await.expect("snapshot");
    let version = snap["version"].as_f64().expect("version");
    for e in edges {
        until(
            "the edge applies the version",
            Duration::from_millis(50),
            || async {
                (metric(e.admin, "lingjing_edge_snapshot_version", &[]).await >= version)
                    .then_some(())
            },
        )
        .await;
    }
}

/// Sets the demo service's defence settings.
async fn set_defence(api: &Client, defence: Value) {
    let mut view: Value = api.get("/v1/services/demo").await.expect("service");
    if let Some(o) = view.as_object_mut() {
        o.remove("cname");
        o.remove("hostname_status");
        o.insert("defence".into(), defence);
    }
    let _: Value = api
        .put("/v1/services/demo", &view)
        .await
        .expect("update the service");
}

/// `lingjing ARGS` as the operator; its standard output.
fn lingjing(endpoint: &str, args: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(args)
        .args(["--endpoint", endpoint])
        .env("LINGJING_TOKEN", TOKEN)
        .output()
        .expect("run lingjing");
    assert!(
        out.status.success(),
        "lingjing {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn floods_are_refused_fleet_wide_and_crowds_are_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let platform = common::DemoPlatform::start(dir.path(), TOKEN).await;
    let (url, api) = (platform.url.clone(), platform.api.clone());
    // Low thresholds so that a test's modest rates cross them: 10 requests/s from one
    // address; a surge is the service above 100/s.
    set_defence(
        &api,
        json!({ "source_rps": 10, "prefix_rps": 100000, "service_rps": 100, "block_seconds": 120 }),
    )
    .await;
    let nodes: Vec<Value> = api.get("/v1/nodes").await.expect("nodes");
    let mut edges: Vec<EdgeProc> = Vec::new();
    for id in ["wuxi-1-e1", "suqian-1-e1"] {
        let n = nodes.iter().find(|n| n["id"] == id).expect("node");
        let ip: IpAddr = n["addresses"][0]
            .as_str()
            .expect("address")
            .parse()
            .expect("ip");
        let token = join_token(&api, id).await;
        let access = Access {
            join_token: Some(&token),
            ..Default::default()
        };
        let edge = start_edge_with(
            id,
            ip,
            &url,
            access,
            &dir.path().join(id),
            false,
            &["--defence-sources", "32", "--max-conns-per-source", "8"],
        );
        record_ports(&api, &edge).await.expect("record the ports");
        edges.push(edge);
    }
    let (a, b) = (edges[0].http, edges[1].http);
    for e in [a, b] {
        eventually(
            "the edge serves the demo site",
            Duration::from_secs(30),
            || {
                let r = common::get(e, HOST, "/").ok()?;
                (r.status == 200).then_some(())
            },
        );
    }

    // A flash crowd on node B: 60 sources, each in its own /24, 3 requests/s each.
    let stop = Arc::new(AtomicBool::new(false));
    let crowd = Arc::new(Tally::default());
    let tasks: Vec<_> = (0..60)
        .map(|i| client(src(100 + i, 1), b, 3, stop.clone(), crowd.clone()))
        .collect();
    tokio::time::sleep(Duration::from_secs(5)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("crowd client");
    }
    let ok = crowd.ok.load(Ordering::Relaxed);
    assert!(ok > 200, "the crowd got {ok} answers");
    assert_eq!(
        crowd.refused.load(Ordering::Relaxed),
        0,
        "a crowd was refused"
    );
    let degraded = metric(
        edges[1].admin,
        "lingjing_edge_defence_table_degraded",
        &["table=\"sources\""],
    )
    .await;
    assert!(
        degraded > 0.0,
        "60 sources overflow a 32-address table: counted under prefixes"
    );
    let events: Vec<Value> = api.get("/v1/defence/events").await.expect("events");
    assert!(events.is_empty(), "a crowd is not an attack: {events:?}");

    // The operator's monitoring is allow-listed (one of the flood's sources, to prove it).
    let allowed = src(0, 6);
    let out = lingjing(
        &url,
        &[
            "defence",
            "rule",
            "add",
            "--service",
            "demo",
            "--action",
            "allow",
            "--source",
            &allowed.to_string(),
            "--note",
            "monitoring",
        ],
    );
    assert!(out.contains("added"), "{out}");
    applied(&api, &edges).await;

    // The flood, on node A only: six sources at 50 requests/s; an ordinary client at 2/s.
    let stop = Arc::new(AtomicBool::new(false));
    let flood = Arc::new(Tally::default());
    let spared = Arc::new(Tally::default());
    let ordinary = Arc::new(Tally::default());
    let mut tasks: Vec<_> = (1..=5)
        .map(|i| client(src(0, i), a, 50, stop.clone(), flood.clone()))
        .collect();
    tasks.push(client(allowed, a, 50, stop.clone(), spared.clone()));
    tasks.push(client(src(50, 1), a, 2, stop.clone(), ordinary.clone()));
    let flooder = src(0, 1);
    until(
        "node A refuses the flood",
        Duration::from_millis(50),
        || async { (flood.refused.load(Ordering::Relaxed) > 0).then_some(()) },
    )
    .await;
    // Node B never saw the flood: it refuses its sources by the fleet-wide rule.
    until("node B refuses the flood's source", POLL, || async {
        (get_from(flooder, b).await.ok() == Some(429)).then_some(())
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("client");
    }
    assert_eq!(
        ordinary.refused.load(Ordering::Relaxed),
        0,
        "an ordinary client was refused"
    );
    assert_eq!(
        ordinary.other.load(Ordering::Relaxed),
        0,
        "an ordinary client failed"
    );
    assert!(ordinary.ok.load(Ordering::Relaxed) > 0);
    assert_eq!(
        spared.refused.load(Ordering::Relaxed),
        0,
        "an allow-listed source was refused"
    );
    assert!(
        get_from(src(50, 1), b).await.expect("ordinary on B") == 200,
        "the ordinary client is served by node B"
    );

    // The attack as an event, with the fleet-wide rule made of it.
    let event = until("the attack is reported", POLL, || async {
        let events: Vec<Value> = api
            .get("/v1/defence/events?service=demo")
            .await
            .expect("events");
        events
            .into_iter()
            .find(|e| e["rule"].is_string() && e["dropped"].as_u64() > Some(0))
    })
    .await;
    let tops = event["top_sources"].to_string();
    assert!(tops.contains("127.77.0."), "top sources: {tops}");
    assert!(
        !tops.contains(&allowed.to_string()),
        "the allowed source is no attacker: {tops}"
    );
    assert!(event["nodes"].to_string().contains("wuxi-1-e1"), "{event}");
    assert!(event["peak_rps"].as_u64() >= Some(100), "{event}");
    let rule_id = event["rule"].as_str().expect("rule");
    let rules = lingjing(&url, &["defence", "rule", "list", "--json"]);
    assert!(rules.contains(rule_id), "{rules}");
    let listed = lingjing(&url, &["defence", "events"]);
    assert!(
        listed.contains(event["id"].as_str().expect("id")),
        "{listed}"
    );

    // A rule in monitor mode refuses nothing and is counted.
    let watched = src(60, 1);
    lingjing(
        &url,
        &[
            "defence",
            "rule",
            "add",
            "--service",
            "demo",
            "--action",
            "block",
            "--source",
            &watched.to_string(),
            "--mode",
            "monitor",
        ],
    );
    let admin = edges[1].admin;
    until("monitor mode counts", POLL, || async {
        let status = get_from(watched, b).await.expect("monitored");
        assert_eq!(status, 200, "monitor mode refused");
        let counted = metric(
            admin,
            "lingjing_edge_defence_requests_monitored",
            &["reason=\"rule_block\""],
        )
        .await;
        (counted > 0.0).then_some(())
    })
    .await;

    // A rule with a time to live applies, then expires by itself.
    let brief = src(61, 1);
    let added: Value = api
        .post(
            "/v1/defence/rules",
            &json!({ "service": "demo", "action": "block", "match": { "sources": [brief.to_string()] }, "ttl_seconds": 3 }),
        )
        .await
        .expect("add a brief rule");
    assert!(added["expires_ms"].as_u64().is_some());
    // (Polled at 4 requests/s: below the 10/s that would make the poller an attacker.)
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let status = get_from(brief, b).await.expect("brief");
        if seen.last() != Some(&status) {
            seen.push(status);
        }
        if seen.ends_with(&[403, 200]) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the brief rule never applied or never expired: answers {seen:?}"
        );
        tokio::time::sleep(POLL).await;
    }

    // Past 8 open connections from one address, new ones are closed at accept (which
    // ones depends on the order the two serving threads accept them in).
    let greedy = src(70, 1);
    let mut held = Vec::new();
    for _ in 0..12 {
        held.push(
            connect(greedy, a)
                .await
                .expect("the TCP handshake completes"),
        );
    }
    let admin = edges[0].admin;
    until(
        "four of twelve connections refused",
        Duration::from_millis(50),
        || async {
            let refused = metric(
                admin,
                "lingjing_edge_defence_connections_refused",
                &["reason=\"connections_open\""],
            )
            .await;
            (refused >= 4.0).then_some(())
        },
    )
    .await;
    let mut served = 0;
    for conn in &mut held {
        if matches!(request(conn).await, Ok((200, _))) {
            served += 1;
        }
    }
    assert_eq!(served, 8, "eight connections admitted and served");
}
