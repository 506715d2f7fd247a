//! Helpers shared by the end-to-end tests that run real `lingjing` processes: a child that
//! is killed when the test ends (also when it fails), found ready by the line it prints;
//! the control plane, edge and DNS processes; a small DNS client (queries built with
//! hickory-proto, sent over UDP, with EDNS Client Subnet); a plain HTTP/1.1 GET; and the
//! demo topology seeded through the REST API the way `lingjing up` seeds it.

// Each test binary uses a different part of this module.
#![allow(dead_code)]

pub mod aiot;

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, Query};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsOption};
use hickory_proto::rr::{Name, RData, RecordType};
use lingjing_client::{Client, ClientError};
use lingjing_demo::DemoTopology;
use serde::Serialize;
use serde_json::{Value, json};

pub const BIN: &str = env!("CARGO_BIN_EXE_lingjing");

/// How long a process may take to say it is ready.
const READY: Duration = Duration::from_secs(30);

/// A running `lingjing` process, killed (SIGKILL) and reaped when dropped. Its stdout and
/// stderr lines are read by threads (so it never blocks on a full pipe) and kept, the
/// last few hundred, for failure messages.
pub struct Proc {
    pub name: String,
    child: Child,
    lines: Receiver<String>,
    tail: Arc<Mutex<VecDeque<String>>>,
}

impl Proc {
    /// Spawns `args` of the `lingjing` binary with `RUST_LOG=warn`.
    pub fn spawn<I, S>(name: &str, args: I) -> Proc
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut child = Command::new(BIN)
            .args(args)
            .env("RUST_LOG", "warn")
            .env_remove("LINGJING_TOKEN")
            .env_remove("LINGJING_ENDPOINT")
            .env_remove("LINGJING_CA")
            .env_remove("LINGJING_JOIN_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        let (tx, lines) = channel();
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let stdout: Box<dyn Read + Send> = Box::new(child.stdout.take().expect("stdout"));
        let stderr: Box<dyn Read + Send> = Box::new(child.stderr.take().expect("stderr"));
        for pipe in [stdout, stderr] {
            let (tx, tail) = (tx.clone(), tail.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    {
                        let mut t = tail.lock().expect("tail");
                        if t.len() >= 300 {
                            t.pop_front();
                        }
                        t.push_back(line.clone());
                    }
                    // Nobody may be listening any more; keep draining regardless.
                    let _ = tx.send(line);
                }
            });
        }
        Proc {
            name: name.to_owned(),
            child,
            lines,
            tail,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the process printed last, for failure messages.
    pub fn tail(&self) -> String {
        let t = self.tail.lock().expect("tail");
        t.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    /// Waits for the first output line for which `find` gives something.
    pub fn wait_for<T>(&mut self, what: &str, mut find: impl FnMut(&str) -> Option<T>) -> T {
        let deadline = Instant::now() + READY;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(found) = find(&line) {
                        return found;
                    }
                }
                Err(RecvTimeoutError::Timeout) => panic!(
                    "{} did not print {what} within {READY:?}; it printed:\n{}",
                    self.name,
                    self.tail()
                ),
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait().ok();
                    panic!(
                        "{} exited ({status:?}) before printing {what}; it printed:\n{}",
                        self.name,
                        self.tail()
                    )
                }
            }
        }
    }

    /// `kill -9`: no shutdown of any kind; returns when the process is gone.
    pub fn kill9(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reap");
    }

    /// SIGTERM, then waits (bounded) for a clean exit.
    pub fn terminate(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                assert!(
                    status.success(),
                    "{} exited with {status}:\n{}",
                    self.name,
                    self.tail()
                );
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("{} did not stop on SIGTERM:\n{}", self.name, self.tail());
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The first `[ADDR` after `marker` in `line`, e.g. `serving on [127.0.0.1:5300]`.
fn addr_after(line: &str, marker: &str) -> Option<SocketAddr> {
    let rest = line.split(marker).nth(1)?;
    let rest = rest.trim_start_matches(['[', ' ']);
    let end = rest
        .find(|c: char| !(c.is_ascii_hexdigit() || ".:[]".contains(c)))
        .unwrap_or(rest.len());
    rest[..end].trim_end_matches(']').parse().ok()
}

/// `lingjing control` on `db` (a database URL), listening on `listen`; returns it and
/// its URL.
pub fn start_control(db: &str, token_file: &Path, listen: &str) -> (Proc, String) {
    start_control_with(db, token_file, listen, &[])
}

/// [`start_control`] with `extra` command-line arguments.
pub fn start_control_with(
    db: &str,
    token_file: &Path,
    listen: &str,
    extra: &[&str],
) -> (Proc, String) {
    let mut args: Vec<std::ffi::OsString> = vec![
        "control".into(),
        "--db".into(),
        db.into(),
        "--listen".into(),
        listen.into(),
        "--token-file".into(),
        token_file.into(),
        // Test origins listen on 127.0.0.1 (the nodes are on 127.0.1.x).
        "--allow-origin".into(),
        "127.0.0.1/32".into(),
    ];
    args.extend(extra.iter().map(Into::into));
    let mut p = Proc::spawn("lingjing control", args);
    let url = p.wait_for("its URL", |l| {
        l.split("lingjing control plane on ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .map(str::to_owned)
    });
    (p, url)
}

/// The demo origin (in the test) and a plain-HTTP `lingjing control` over SQLite in a
/// directory, seeded with the demo topology through the API, as `lingjing up` would.
pub struct DemoPlatform {
    pub origin: lingjing_demo::OriginHandle,
    pub control: Proc,
    /// The control plane's URL.
    pub url: String,
    /// The operator's client.
    pub api: Client,
}

impl DemoPlatform {
    /// Starts it in `dir` with the operator token `token`.
    pub async fn start(dir: &Path, token: &str) -> DemoPlatform {
        let token_file = dir.join("operator.token");
        std::fs::write(&token_file, token).expect("token file");
        let origin = lingjing_demo::serve(lingjing_demo::OriginConfig {
            listen: "127.0.0.1:0".parse().expect("addr"),
            ..lingjing_demo::OriginConfig::default()
        })
        .await
        .expect("demo origin");
        let db = format!("sqlite://{}", dir.join("control.db").display());
        let (control, url) = start_control(&db, &token_file, "127.0.0.1:0");
        let api = Client::new(&url, token).expect("client");
        seed(&api, &lingjing_demo::demo_topology(origin.addr())).await;
        DemoPlatform {
            origin,
            control,
            url,
            api,
        }
    }
}

/// How a data-plane process authenticates: the CA of an HTTPS control plane, and a join
/// token for its first start (none: it uses the credential kept in its state directory).
#[derive(Clone, Copy, Default)]
pub struct Access<'a> {
    pub ca: Option<&'a Path>,
    pub join_token: Option<&'a str>,
}

impl Access<'_> {
    fn args(&self) -> Vec<std::ffi::OsString> {
        let mut args = Vec::new();
        if let Some(ca) = self.ca {
            args.push("--ca".into());
            args.push(ca.into());
        }
        if let Some(t) = self.join_token {
            args.push("--join-token".into());
            args.push(t.into());
        }
        args
    }
}

/// Issues a one-time join token for `node` (the operator's client).
pub async fn join_token(c: &Client, node: &str) -> String {
    let t: Value = c
        .post(&format!("/v1/nodes/{node}/join-token"), &json!({}))
        .await
        .unwrap_or_else(|e| panic!("join token for {node}: {e}"));
    t["join_token"].as_str().expect("join_token").to_owned()
}

/// A running `lingjing edge`.
pub struct EdgeProc {
    pub node: String,
    pub proc: Proc,
    pub http: SocketAddr,
    pub admin: SocketAddr,
}

/// `lingjing edge` for `node` on `ip` (free ports), following the control plane at
/// `endpoint`, keeping its snapshot (and disk cache, when `disk_cache`) in `state_dir`.
pub fn start_edge(
    node: &str,
    ip: IpAddr,
    endpoint: &str,
    access: Access<'_>,
    state_dir: &Path,
    disk_cache: bool,
) -> EdgeProc {
    start_edge_with(node, ip, endpoint, access, state_dir, disk_cache, &[])
}

/// [`start_edge`] with `extra` command-line arguments.
pub fn start_edge_with(
    node: &str,
    ip: IpAddr,
    endpoint: &str,
    access: Access<'_>,
    state_dir: &Path,
    disk_cache: bool,
    extra: &[&str],
) -> EdgeProc {
    let any = SocketAddr::new(ip, 0).to_string();
    let mut args: Vec<std::ffi::OsString> = [
        "edge",
        "--node",
        node,
        "--listen",
        &any,
        "--admin",
        &any,
        "--memory-cache-mb",
        "16",
        "--no-access-log",
        "--endpoint",
        endpoint,
        "--state-dir",
    ]
    .iter()
    .map(Into::into)
    .collect();
    args.push(state_dir.into());
    args.extend(access.args());
    args.extend(extra.iter().map(Into::into));
    if disk_cache {
        args.push("--disk-cache-dir".into());
        args.push(state_dir.join("cache").into());
        args.push("--disk-cache-mb".into());
        args.push("64".into());
    }
    let mut proc = Proc::spawn(&format!("lingjing edge {node}"), args);
    let (http, admin) = proc.wait_for("its addresses", |l| {
        Some((
            addr_after(l, "serving on")?,
            addr_after(l, "admin http://")?,
        ))
    });
    EdgeProc {
        node: node.to_owned(),
        proc,
        http,
        admin,
    }
}

/// `lingjing dns` for `node` on 127.0.0.1 (free ports), following the control plane at
/// `endpoint`, keeping its snapshot in `state_dir`; returns it and its DNS address.
pub fn start_dns(
    node: &str,
    endpoint: &str,
    access: Access<'_>,
    state_dir: &Path,
) -> (Proc, SocketAddr) {
    let mut args: Vec<std::ffi::OsString> = [
        "dns",
        "--node",
        node,
        "--listen",
        "127.0.0.1:0",
        "--admin",
        "127.0.0.1:0",
        "--endpoint",
        endpoint,
        "--state-dir",
    ]
    .iter()
    .map(Into::into)
    .collect();
    args.push(state_dir.into());
    args.extend(access.args());
    let mut p = Proc::spawn(&format!("lingjing dns {node}"), args);
    let addr = p.wait_for("its address", |l| addr_after(l, "serving on"));
    (p, addr)
}

/// The A records `server` answers for `name` to a client in `ecs` (e.g.
/// `198.51.100.1/32`), over UDP; `Err` when no answer came within a second or the
/// response is not a NOERROR.
pub fn resolve(server: SocketAddr, name: &str, ecs: &str) -> Result<Vec<IpAddr>, String> {
    let mut m = Message::query();
    static NEXT_ID: AtomicU16 = AtomicU16::new(1);
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    m.metadata.id = id;
    m.add_query(Query::query(
        Name::from_ascii(name).map_err(|e| e.to_string())?,
        RecordType::A,
    ));
    let mut edns = Edns::new();
    edns.set_max_payload(1232);
    let subnet: ClientSubnet = ecs.parse().map_err(|e| format!("{ecs}: {e:?}"))?;
    edns.options_mut().insert(EdnsOption::Subnet(subnet));
    m.set_edns(edns);
    let bytes = m.to_vec().map_err(|e| e.to_string())?;
    let sock = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(Duration::from_secs(1)))
        .map_err(|e| e.to_string())?;
    sock.send_to(&bytes, server).map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 65_535];
    loop {
        let (n, from) = sock.recv_from(&mut buf).map_err(|e| e.to_string())?;
        if from != server {
            continue;
        }
        let r = Message::from_vec(&buf[..n]).map_err(|e| e.to_string())?;
        if r.metadata.id != id {
            continue;
        }
        if r.metadata.response_code != hickory_proto::op::ResponseCode::NoError {
            return Err(format!("{:?}", r.metadata.response_code));
        }
        return Ok(r
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                _ => None,
            })
            .collect());
    }
}

/// Polls `check` every 50 ms until it gives something, for at most `within`.
pub fn eventually<T>(what: &str, within: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A response to [`get`].
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// The head, lowercased.
    pub head: String,
    pub body: Vec<u8>,
}

/// `GET path` with `Host: host` from `addr` over HTTP/1.1 (one connection, closed after).
pub fn get(addr: SocketAddr, host: &str, path: &str) -> std::io::Result<Response> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: lingjing-test\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no HTTP head"))?;
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line: {head}")))?;
    let mut body = raw[split + 4..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        body = dechunk(&body);
    }
    Ok(Response { status, head, body })
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") {
        let size = String::from_utf8_lossy(&raw[..eol]);
        let size = size.split(';').next().unwrap_or("").trim();
        let Ok(n) = usize::from_str_radix(size, 16) else {
            break;
        };
        if n == 0 || raw.len() < eol + 2 + n {
            break;
        }
        out.extend_from_slice(&raw[eol + 2..eol + 2 + n]);
        raw = &raw[(eol + 4 + n).min(raw.len())..];
    }
    out
}

/// Creates `item` unless one with its id exists.
async fn ensure<T: Serialize>(c: &Client, plural: &str, id: &str, item: &T) {
    match c.get::<Value>(&format!("/v1/{plural}/{id}")).await {
        Ok(_) => {}
        Err(e) if e.status() == Some(404) => {
            c.post::<_, Value>(&format!("/v1/{plural}"), item)
                .await
                .unwrap_or_else(|e| panic!("create {plural}/{id}: {e}"));
        }
        Err(e) => panic!("read {plural}/{id}: {e}"),
    }
}

/// Seeds the demo topology through the REST API, as `lingjing up` does.
pub async fn seed(c: &Client, t: &DemoTopology) {
    for r in &t.regions {
        ensure(c, "regions", &r.id, r).await;
    }
    for l in &t.lines {
        ensure(c, "lines", &l.id, l).await;
        let mine: Vec<_> = t.prefixes.iter().filter(|p| p.line == l.id).collect();
        c.put::<_, Value>(&format!("/v1/lines/{}/prefixes", l.id), &mine)
            .await
            .expect("line prefixes");
    }
    for s in &t.sites {
        ensure(c, "sites", &s.id, s).await;
    }
    for n in &t.nodes {
        ensure(c, "nodes", &n.id, n).await;
    }
    for p in &t.pools {
        ensure(c, "pools", &p.id, p).await;
    }
    for (pool, node) in &t.allocations {
        let _: Value = c
            .post(
                &format!("/v1/pools/{pool}/allocations"),
                &json!({ "node": node }),
            )
            .await
            .expect("allocate an address");
    }
    for tenant in &t.tenants {
        ensure(c, "tenants", &tenant.id, tenant).await;
    }
    for s in &t.services {
        ensure(c, "services", &s.id, s).await;
        // The demo's hostnames are approved by the operator, as `lingjing up` does.
        let _: Value = c
            .post(
                &format!("/v1/services/{}/verify", s.id),
                &json!({ "approve": true }),
            )
            .await
            .expect("approve the demo hostnames");
    }
}

/// Writes where `edge` really listens into its node's inventory entry (health probes and
/// parent-tier fetches go by the inventory's ports), as `lingjing up` does.
pub async fn record_ports(c: &Client, edge: &EdgeProc) -> Result<(), ClientError> {
    let mut view: Value = c.get(&format!("/v1/nodes/{}", edge.node)).await?;
    if let Some(o) = view.as_object_mut() {
        o.remove("addresses");
        o.remove("status");
    }
    let mut node: lingjing_model::Node =
        serde_json::from_value(view).map_err(|e| ClientError::Decode(e.to_string()))?;
    node.ports.http = edge.http.port();
    node.ports.admin = edge.admin.port();
    c.put::<_, Value>(&format!("/v1/nodes/{}", edge.node), &node)
        .await
        .map(drop)
}

/// Milliseconds since the Unix epoch (the control plane's clock: same machine).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Whether python3 can import boto3. Where `LINGJING_TEST_BOTO3` is set (`.ci/run` sets
/// it) its absence is a failure; elsewhere the boto3 checks say they were skipped.
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
        eprintln!("skipped the boto3 checks: python3 with boto3 not found (pip install boto3)");
    }
    found
}
