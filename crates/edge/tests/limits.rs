//! The limits of the edge's HTTP servers, over real connections: a client that never
//! finishes its request head is disconnected after the header-read timeout (slowloris), an
//! idle connection is closed after the idle timeout, connections over the cap are closed
//! at accept while the admitted ones keep working, and HTTP/2 advertises its stream and
//! header-list limits in SETTINGS.
//!
//! The timeouts are configured short (1 s) and the tests assert the outcome (the server
//! closed the connection) within a generous bound, never a duration.

mod common;

use std::time::Duration;

use common::*;
use http_body_util::{BodyExt, Empty};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a test waits for the server to close a connection before failing.
const CLOSED_WITHIN: Duration = Duration::from_secs(30);

/// Reads until the server closes the connection; `Err` if it is still open after
/// [`CLOSED_WITHIN`]. Returns what was read (a reset counts as closed).
async fn until_closed(stream: &mut TcpStream) -> Result<Vec<u8>, &'static str> {
    let mut out = Vec::new();
    match tokio::time::timeout(CLOSED_WITHIN, stream.read_to_end(&mut out)).await {
        Ok(_) => Ok(out),
        Err(_) => Err("the server kept the connection open"),
    }
}

async fn demo_edge_with(
    tweak: impl FnOnce(&mut lingjing_edge::EdgeConfig),
) -> (lingjing_demo::OriginHandle, TestEdge) {
    let origin = demo_origin(1024).await;
    let edge = TestEdge::start_configured("edge-a", tweak).await;
    edge.apply(&snapshot_for("svc-a", origin.addr()));
    (origin, edge)
}

#[tokio::test]
async fn a_client_that_never_finishes_its_request_head_is_disconnected() {
    let (_origin, edge) = demo_edge_with(|c| {
        c.limits.header_read_timeout = Duration::from_secs(1);
        // Only the header-read timeout can close it.
        c.limits.idle_timeout = Duration::from_secs(3600);
    })
    .await;
    let mut slow = TcpStream::connect(edge.addr).await.expect("connect");
    slow.write_all(b"GET / HT")
        .await
        .expect("half a request line");
    let answer = until_closed(&mut slow).await.expect("disconnected");
    if !answer.is_empty() {
        assert_eq!(raw_status(&answer), 408);
    }
    // The server still serves everyone else.
    let got = get(&edge.client(&[HOST]), &edge.url(HOST, "/")).await;
    assert_eq!(got.status, 200);
}

#[tokio::test]
async fn an_idle_connection_is_closed() {
    let (_origin, edge) = demo_edge_with(|c| {
        c.limits.idle_timeout = Duration::from_secs(1);
        c.limits.header_read_timeout = Duration::from_secs(3600);
    })
    .await;
    // Never a byte (the server cannot even tell HTTP/1.1 from HTTP/2 yet).
    let mut silent = TcpStream::connect(edge.addr).await.expect("connect");
    let answer = until_closed(&mut silent).await.expect("closed when idle");
    assert!(answer.is_empty());
    // The admin port too.
    let mut silent = TcpStream::connect(edge.handle.admin_addr())
        .await
        .expect("connect admin");
    until_closed(&mut silent).await.expect("admin closes idle");
}

/// An HTTP/1.1 connection to `addr` (hyper's client).
async fn h1(
    addr: std::net::SocketAddr,
) -> hyper::client::conn::http1::SendRequest<Empty<bytes::Bytes>> {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    send
}

async fn h1_get(
    send: &mut hyper::client::conn::http1::SendRequest<Empty<bytes::Bytes>>,
) -> Result<u16, hyper::Error> {
    let req = http::Request::get("/")
        .header(http::header::HOST, HOST)
        .body(Empty::new())
        .expect("request");
    let res = tokio::time::timeout(REQUEST_TIMEOUT, send.send_request(req))
        .await
        .expect("answered in time")?;
    let status = res.status().as_u16();
    res.into_body().collect().await?;
    Ok(status)
}

#[tokio::test]
async fn connections_over_the_cap_are_closed_and_the_admitted_ones_keep_working() {
    const CAP: usize = 4;
    let (_origin, edge) = demo_edge_with(|c| c.limits.max_connections = CAP).await;
    let mut admitted = Vec::new();
    for _ in 0..CAP {
        let mut send = h1(edge.addr).await;
        // A full exchange: the server has admitted this one.
        assert_eq!(h1_get(&mut send).await.expect("admitted"), 200);
        admitted.push(send);
    }
    // One more: accepted by the kernel, closed by the edge without an answer.
    let mut over = TcpStream::connect(edge.addr).await.expect("connect");
    let _ = over
        .write_all(format!("GET / HTTP/1.1\r\nHost: {HOST}\r\n\r\n").as_bytes())
        .await;
    let answer = until_closed(&mut over).await.expect("closed at accept");
    assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
    // The admin port has its own cap: the operator still gets in.
    let metrics = edge.metrics().await;
    assert!(
        metrics.lines().any(|l| l
            .starts_with("lingjing_edge_connections_refused_total{listener=\"http\"} ")
            && !l.ends_with(" 0")),
        "{metrics}"
    );
    // The admitted connections still work.
    for send in &mut admitted {
        assert_eq!(h1_get(send).await.expect("still served"), 200);
    }
    // One closes: its slot is free again (once the server has seen it go).
    admitted.pop();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let mut send = h1(edge.addr).await;
        if let Ok(status) = h1_get(&mut send).await {
            assert_eq!(status, 200);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the freed slot was never reused"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The server's SETTINGS, read from a raw HTTP/2 (h2c prior knowledge) connection.
async fn server_settings(addr: std::net::SocketAddr) -> Vec<(u16, u32)> {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .expect("preface");
    // An empty SETTINGS frame of our own.
    s.write_all(&[0, 0, 0, 0x4, 0, 0, 0, 0, 0])
        .await
        .expect("settings");
    loop {
        let mut head = [0u8; 9];
        tokio::time::timeout(REQUEST_TIMEOUT, s.read_exact(&mut head))
            .await
            .expect("a frame in time")
            .expect("frame header");
        let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
        let mut payload = vec![0u8; len];
        s.read_exact(&mut payload).await.expect("frame payload");
        // SETTINGS, not an ACK.
        if head[3] == 0x4 && head[4] & 0x1 == 0 {
            return payload
                .chunks_exact(6)
                .map(|c| {
                    (
                        u16::from_be_bytes([c[0], c[1]]),
                        u32::from_be_bytes([c[2], c[3], c[4], c[5]]),
                    )
                })
                .collect();
        }
    }
}

#[tokio::test]
async fn http2_advertises_its_stream_and_header_limits() {
    let (_origin, edge) = demo_edge_with(|c| {
        c.limits.h2_max_concurrent_streams = 7;
        c.limits.max_header_bytes = 32 * 1024;
    })
    .await;
    let settings = server_settings(edge.addr).await;
    const MAX_CONCURRENT_STREAMS: u16 = 0x3;
    const MAX_HEADER_LIST_SIZE: u16 = 0x6;
    assert!(
        settings.contains(&(MAX_CONCURRENT_STREAMS, 7)),
        "{settings:?}"
    );
    assert!(
        settings.contains(&(MAX_HEADER_LIST_SIZE, 32 * 1024)),
        "{settings:?}"
    );
    // The defaults: 128 streams.
    let (_origin, edge) = demo_edge_with(|_| {}).await;
    let settings = server_settings(edge.addr).await;
    assert!(
        settings.contains(&(MAX_CONCURRENT_STREAMS, 128)),
        "{settings:?}"
    );
    // And h2c requests are served.
    let client = edge
        .client_builder(&[HOST])
        .http2_prior_knowledge()
        .build()
        .expect("client");
    assert_eq!(get(&client, &edge.url(HOST, "/")).await.status, 200);
}
