//! Shared harness of the edge node's integration tests: build an edge snapshot with
//! services pointing at test origins, start real edge nodes on loopback ports, talk to them
//! with reqwest (DNS for the test hostnames is pinned to the edge with `resolve`) or raw TCP,
//! and run small scripted origins ([`TestOrigin`]) where the demo origin does not behave as
//! a test needs (specific `Cache-Control`, `Vary`, 5xx, 304, header echo, going away).
//!
//! Everything binds `127.0.0.1:0`; nothing waits on timing beyond generous hang guards.

// Each test binary uses a different part of this module.
#![allow(dead_code)]

pub mod pki;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode, request::Parts};
use futures::future::BoxFuture;
use lingjing_edge::{Edge, EdgeConfig, EdgeHandle};
use lingjing_model::snapshot::{EdgeSnapshot, NodeInfo, Role, Snapshot};
use lingjing_model::{CacheRule, Node, NodePorts, NodeRole, Origin, Service, Site, SteeringPolicy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The hostname of the test service in most tests.
pub const HOST: &str = "www.test.example";

/// Hang guard for one HTTP exchange.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Hang guard for waiting on something that happens in the background.
pub const WAIT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------
// Snapshots
// ---------------------------------------------------------------------------------------

/// A primary origin at `addr`, weight 1.
pub fn origin(addr: SocketAddr) -> Origin {
    Origin {
        address: addr.to_string(),
        weight: 1,
        backup: false,
        tls: false,
        host_header: None,
        tls_skip_verify: false,
    }
}

/// A service `id` for `host`, fetching from `origins`, without cache rules.
pub fn service(id: &str, host: &str, origins: Vec<Origin>) -> Service {
    Service {
        id: id.to_owned(),
        tenant: "tenant-a".to_owned(),
        hostnames: vec![host.to_owned()],
        origins,
        cache_rules: Vec::new(),
        steering: SteeringPolicy::default(),
        tls: None,
        targeted_cache_control: lingjing_model::service::default_targeted_cache_control(),
        forward_targeted_cache_control: false,
        origin_ca_pem: None,
        // Every test client is 127.0.0.1, often far above a real client's rate: no
        // detection here (tests/defence.rs turns it on).
        defence: lingjing_model::defence::DefenceSettings {
            enabled: false,
            ..Default::default()
        },
    }
}

/// A cache rule for `path` that changes nothing yet.
pub fn rule(path: &str) -> CacheRule {
    CacheRule {
        path: path.to_owned(),
        ttl_secs: None,
        bypass: false,
        ignore_query: false,
        sort_query: false,
        key_headers: Vec::new(),
        cache_set_cookie: false,
    }
}

/// An edge snapshot of `services`, without sites or nodes (no parent tier), whose origin
/// policy allows loopback origins (every test origin listens on 127.0.0.1).
pub fn snapshot(version: u64, services: Vec<Service>) -> Snapshot<EdgeSnapshot> {
    Snapshot {
        version,
        role: Role::Edge,
        generated_at: "2025-01-01T00:00:00Z".to_owned(),
        body: EdgeSnapshot {
            services,
            origin_policy: loopback_allowed(),
            ..EdgeSnapshot::default()
        },
    }
}

/// A version 1 snapshot of one service `id` for [`HOST`], fetching from `origin`.
pub fn snapshot_for(id: &str, origin: SocketAddr) -> Snapshot<EdgeSnapshot> {
    snapshot(1, vec![service(id, HOST, vec![self::origin(origin)])])
}

/// An origin policy that allows loopback origins (`127.0.0.0/8`, `::1`).
pub fn loopback_allowed() -> lingjing_model::OriginPolicy {
    lingjing_model::OriginPolicy {
        allowed: vec!["127.0.0.0/8".to_owned(), "::1/128".to_owned()],
        ..lingjing_model::OriginPolicy::default()
    }
}

/// A site `id`, filling from `parent` when given.
pub fn site(id: &str, parent: Option<&str>) -> Site {
    Site {
        id: id.to_owned(),
        name: format!("Site {id}"),
        region: "region-a".to_owned(),
        lines: Vec::new(),
        bandwidth_mbps: 0,
        parent: parent.map(str::to_owned),
    }
}

/// A healthy node `id` at `site` with `roles`, on 127.0.0.1 with HTTP port `http_port`.
pub fn node(id: &str, site: &str, roles: Vec<NodeRole>, http_port: u16) -> NodeInfo {
    NodeInfo {
        node: Node {
            id: id.to_owned(),
            site: site.to_owned(),
            roles,
            ports: NodePorts {
                http: http_port,
                ..NodePorts::default()
            },
            capacity_mbps: 0,
            drained: false,
        },
        addresses: vec!["127.0.0.1".parse().expect("loopback")],
        healthy: true,
        load_percent: 0,
    }
}

/// Makes `snap` two tiers: node `child-1` (edge role) at site `edge-site`, which fills
/// from site `parent-site` with node `parent-1` (parent role); their HTTP ports are
/// `child_port` and `parent_port`. The nodes are listed child first.
pub fn two_tiers(snap: &mut Snapshot<EdgeSnapshot>, child_port: u16, parent_port: u16) {
    snap.body.sites = vec![
        site("edge-site", Some("parent-site")),
        site("parent-site", None),
    ];
    snap.body.nodes = vec![
        node("child-1", "edge-site", vec![NodeRole::Edge], child_port),
        node(
            "parent-1",
            "parent-site",
            vec![NodeRole::Parent],
            parent_port,
        ),
    ];
}

/// A loopback address nothing listens on: connecting to it is refused at once.
pub fn closed_port() -> SocketAddr {
    // Bound but not listening, and held until the test process ends: connects are
    // refused, and no other test's server can take the port meanwhile (a port freed
    // right away could be, and then it answers).
    static HELD: Mutex<Vec<socket2::Socket>> = Mutex::new(Vec::new());
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
        .expect("a TCP socket");
    socket
        .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .expect("bind a free port");
    let addr = socket
        .local_addr()
        .expect("local addr")
        .as_socket()
        .expect("an inet address");
    HELD.lock().expect("held sockets").push(socket);
    addr
}

// ---------------------------------------------------------------------------------------
// Edge nodes
// ---------------------------------------------------------------------------------------

/// A running edge node on loopback ports.
pub struct TestEdge {
    pub node_id: String,
    pub handle: EdgeHandle,
    /// The HTTP listener.
    pub addr: SocketAddr,
}

impl TestEdge {
    /// Starts node `node_id` on 127.0.0.1:0 (HTTP and admin) and applies `snapshot`.
    pub async fn start(node_id: &str, snapshot: &Snapshot<EdgeSnapshot>) -> TestEdge {
        let edge = Self::start_empty(node_id).await;
        edge.apply(snapshot);
        edge
    }

    /// Starts node `node_id` without a snapshot.
    pub async fn start_empty(node_id: &str) -> TestEdge {
        Self::start_configured(node_id, |_| {}).await
    }

    /// Starts node `node_id` with `slice_bytes` and `memory_bytes`, and applies `snapshot`.
    pub async fn start_sliced(
        node_id: &str,
        snapshot: &Snapshot<EdgeSnapshot>,
        slice_bytes: u64,
        memory_bytes: u64,
    ) -> TestEdge {
        let edge = Self::start_configured(node_id, |c| {
            c.slice_bytes = slice_bytes;
            c.memory_bytes = memory_bytes;
        })
        .await;
        edge.apply(snapshot);
        edge
    }

    /// Starts node `node_id` without a snapshot, `tweak` adjusting the test configuration.
    pub async fn start_configured(node_id: &str, tweak: impl FnOnce(&mut EdgeConfig)) -> TestEdge {
        let any: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        let mut config = EdgeConfig::new(node_id, any, any);
        config.memory_bytes = 64 * 1024 * 1024;
        config.access_log = false;
        // The tests' many clients all come from 127.0.0.1: no per-source connection caps
        // (tests/defence.rs and crates/cli/tests/defence.rs test them).
        config.defence.connections.max_open = 0;
        config.defence.connections.max_new_per_second = 0;
        tweak(&mut config);
        let edge = Edge::new(&config);
        let handle = lingjing_edge::start(&config, edge)
            .await
            .expect("edge starts");
        let addr = handle.http_addrs()[0];
        TestEdge {
            node_id: node_id.to_owned(),
            handle,
            addr,
        }
    }

    pub fn apply(&self, snapshot: &Snapshot<EdgeSnapshot>) {
        self.handle.edge.apply(snapshot).expect("snapshot applies");
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://{host}:{port}{path}`, for a client from [`TestEdge::client`].
    pub fn url(&self, host: &str, path: &str) -> String {
        format!("http://{host}:{}{path}", self.port())
    }

    /// A client that resolves `hosts` to this edge.
    pub fn client(&self, hosts: &[&str]) -> reqwest::Client {
        self.client_builder(hosts).build().expect("client")
    }

    /// A client builder that resolves `hosts` to this edge, without proxies, with a hang
    /// guard and no automatic redirects.
    pub fn client_builder(&self, hosts: &[&str]) -> reqwest::ClientBuilder {
        let mut b = reqwest::Client::builder()
            .no_proxy()
            .timeout(REQUEST_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none());
        for h in hosts {
            b = b.resolve(h, self.addr);
        }
        b
    }

    /// `http://{admin}{path}`.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.handle.admin_addr())
    }

    /// The admin port's `/metrics` page.
    pub async fn metrics(&self) -> String {
        reqwest::get(self.admin_url("/metrics"))
            .await
            .expect("metrics answered")
            .text()
            .await
            .expect("metrics read")
    }

    pub async fn shutdown(self) {
        tokio::time::timeout(WAIT, self.handle.shutdown())
            .await
            .expect("edge shuts down in time");
    }
}

/// The value of the first sample in the `/metrics` page `metrics` whose line starts with
/// `name`.
pub fn metric_value(metrics: &str, name: &str) -> Option<u64> {
    metrics
        .lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// One response, read whole.
#[derive(Debug)]
pub struct Got {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: bytes::Bytes,
}

impl Got {
    /// The first value of `name` ("" when absent).
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// All values of `name`.
    pub fn all(&self, name: &str) -> Vec<String> {
        self.headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_owned))
            .collect()
    }

    pub fn x_cache(&self) -> &str {
        self.header("x-cache")
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Checks `got` is a 206 with bytes `start..=end_incl` of a `total`-byte object, and that
/// those bytes are `expected`.
pub fn assert_partial(got: &Got, start: u64, end_incl: u64, total: u64, expected: &[u8]) {
    assert_eq!(got.status, 206, "{start}-{end_incl}: {:?}", got.headers);
    assert_eq!(
        got.header("content-range"),
        format!("bytes {start}-{end_incl}/{total}")
    );
    assert_eq!(
        got.header("content-length"),
        (end_incl - start + 1).to_string()
    );
    assert!(got.body == expected, "wrong bytes for {start}-{end_incl}");
}

/// One part of a `multipart/byteranges` answer.
#[derive(Debug)]
pub struct Part {
    /// The first byte of the span, from the part's `Content-Range`.
    pub first: u64,
    /// The last byte of the span (inclusive).
    pub last: u64,
    /// The total length the part's `Content-Range` announces.
    pub total: u64,
    /// The part's bytes.
    pub data: bytes::Bytes,
}

/// Splits a `multipart/byteranges` answer into its parts, in order, checking on the way
/// that it is a 206 with a multipart content type and a `Content-Length` equal to the
/// body, that every part has a `Content-Range` and that the closing delimiter is there.
pub fn parse_multipart(got: &Got) -> Vec<Part> {
    assert_eq!(got.status, 206);
    let ct = got.header("content-type");
    let boundary = ct
        .strip_prefix("multipart/byteranges; boundary=")
        .unwrap_or_else(|| panic!("content-type {ct}"));
    assert_eq!(got.header("content-length"), got.body.len().to_string());
    let delimiter = format!("\r\n--{boundary}");
    let mut parts = Vec::new();
    let mut at = 0;
    loop {
        let i = find_bytes(&got.body[at..], delimiter.as_bytes()).expect("delimiter");
        at += i + delimiter.len();
        if got.body[at..].starts_with(b"--") {
            break;
        }
        let head_end = find_bytes(&got.body[at..], b"\r\n\r\n").expect("part head");
        let head = String::from_utf8_lossy(&got.body[at..at + head_end]).into_owned();
        let range = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Range: bytes "))
            .expect("part Content-Range");
        let (span, total) = range.split_once('/').expect("span/total");
        let (first, last) = span.split_once('-').expect("first-last");
        let (first, last): (u64, u64) =
            (first.parse().expect("first"), last.parse().expect("last"));
        let start = at + head_end + 4;
        let end = start + usize::try_from(last - first + 1).expect("part length");
        parts.push(Part {
            first,
            last,
            total: total.parse().expect("total"),
            data: got.body.slice(start..end),
        });
        at = end;
    }
    parts
}

/// Checks a `multipart/byteranges` answer holds exactly `ranges` (inclusive) of the demo
/// origin's `/large.bin`, each part announcing `total`.
pub fn assert_multipart(got: &Got, ranges: &[(u64, u64)], total: u64) {
    let parts = parse_multipart(got);
    for p in &parts {
        assert_eq!(p.total, total, "part {}-{}", p.first, p.last);
        assert!(
            p.data == large_bytes(p.first, p.last + 1).as_slice(),
            "part {}-{}",
            p.first,
            p.last
        );
    }
    let spans: Vec<(u64, u64)> = parts.iter().map(|p| (p.first, p.last)).collect();
    assert_eq!(spans, ranges);
}

/// Where `needle` first starts in `hay`.
pub fn find_bytes(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Sends `req` and reads the whole answer.
pub async fn fetch(req: reqwest::RequestBuilder) -> Got {
    let res = req.send().await.expect("request answered");
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let body = res.bytes().await.expect("body read");
    Got {
        status,
        headers,
        body,
    }
}

/// `GET url`.
pub async fn get(client: &reqwest::Client, url: &str) -> Got {
    fetch(client.get(url)).await
}

/// `GET url` with extra request headers.
pub async fn get_with(client: &reqwest::Client, url: &str, headers: &[(&str, &str)]) -> Got {
    let mut req = client.get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    fetch(req).await
}

/// Writes `request` on a fresh connection to `addr` and reads until the server closes it
/// (or the hang guard fires); returns everything read.
pub async fn raw(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    // The server may answer (and close) before reading everything: ignore write errors.
    let _ = stream.write_all(request).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(REQUEST_TIMEOUT, stream.read_to_end(&mut out)).await;
    out
}

/// The status code of a raw HTTP/1.1 answer.
pub fn raw_status(answer: &[u8]) -> u16 {
    let text = String::from_utf8_lossy(answer);
    let line = text.lines().next().unwrap_or("");
    line.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {line:?}"))
}

/// Polls `cond` until it holds, failing the test after [`WAIT`].
pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// ---------------------------------------------------------------------------------------
// Scripted origins
// ---------------------------------------------------------------------------------------

type Handler = Arc<dyn Fn(Parts) -> BoxFuture<'static, Response<Body>> + Send + Sync>;

#[derive(Default)]
struct Seen {
    counts: Mutex<HashMap<String, u64>>,
    last: Mutex<HashMap<String, HeaderMap>>,
}

/// A small origin whose every answer a test writes: `handler` gets the request head (the
/// body is dropped) and returns the response. Requests are counted per path (no query)
/// before the handler runs, and the headers of the latest request per path are kept.
pub struct TestOrigin {
    addr: SocketAddr,
    seen: Arc<Seen>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl TestOrigin {
    pub async fn start<F, Fut>(handler: F) -> TestOrigin
    where
        F: Fn(Parts) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<Body>> + Send + 'static,
    {
        let handler: Handler = Arc::new(move |parts| Box::pin(handler(parts)));
        let seen = Arc::new(Seen::default());
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind origin");
        let addr = listener.local_addr().expect("origin addr");
        let app = {
            let seen = seen.clone();
            Router::new().fallback(move |req: Request| {
                let handler = handler.clone();
                let seen = seen.clone();
                async move {
                    let (parts, _body) = req.into_parts();
                    let path = parts.uri.path().to_owned();
                    *seen
                        .counts
                        .lock()
                        .expect("lock")
                        .entry(path.clone())
                        .or_default() += 1;
                    seen.last
                        .lock()
                        .expect("lock")
                        .insert(path, parts.headers.clone());
                    handler(parts).await
                }
            })
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await;
        });
        TestOrigin {
            addr,
            seen,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Requests seen for exactly `path` (no query), any method.
    pub fn requests(&self, path: &str) -> u64 {
        self.seen
            .counts
            .lock()
            .expect("lock")
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    /// All requests seen.
    pub fn total(&self) -> u64 {
        self.seen.counts.lock().expect("lock").values().sum()
    }

    /// The headers of the latest request for `path`.
    pub fn last_headers(&self, path: &str) -> Option<HeaderMap> {
        self.seen.last.lock().expect("lock").get(path).cloned()
    }

    /// Stops the origin and waits until its port is closed and its connections are gone,
    /// so that the edge can no longer reach it.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(WAIT, task).await;
        }
    }
}

impl Drop for TestOrigin {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A response with `status`, `headers` and `body`.
pub fn respond(status: u16, headers: &[(&str, &str)], body: impl Into<Body>) -> Response<Body> {
    let mut res = Response::new(body.into());
    *res.status_mut() = StatusCode::from_u16(status).expect("status code");
    for (k, v) in headers {
        res.headers_mut().append(
            HeaderName::from_bytes(k.as_bytes()).expect("header name"),
            HeaderValue::from_str(v).expect("header value"),
        );
    }
    res
}

/// The value of request header `name` ("" when absent).
pub fn req_header<'a>(parts: &'a Parts, name: &str) -> &'a str {
    parts
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// A demo origin on a free loopback port with a `/large.bin` of `large_size` bytes.
pub async fn demo_origin(large_size: u64) -> lingjing_demo::OriginHandle {
    lingjing_demo::serve(lingjing_demo::OriginConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        large_size,
    })
    .await
    .expect("demo origin starts")
}

/// The bytes `start..end` of the demo origin's `/large.bin`.
pub fn large_bytes(start: u64, end: u64) -> Vec<u8> {
    let mut buf = vec![0u8; usize::try_from(end - start).expect("size")];
    lingjing_demo::fill_large(start, &mut buf);
    buf
}
