//! 1xx interim responses from the origin (RFC 9110 §15.2, RFC 8297 103 Early Hints): the
//! edge reads past them to the final response, which it serves and caches; the interim
//! response itself is never stored or served from cache. (Passing 103 on to the client
//! needs a server that can send interim responses; hyper 1.x cannot yet — see
//! hyperium/hyper#4114 — and RFC 8297 §2 lets an intermediary drop them.)

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// An origin that answers every request on a connection with `103 Early Hints` (a `Link`
/// header), then a `200` with `Cache-Control: max-age=60`; counts
/// requests.
async fn early_hints_origin() -> (std::net::SocketAddr, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let count = Arc::new(AtomicU64::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    // One request head at a time (GETs without bodies).
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match conn.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let end = buf
                        .windows(4)
                        .position(|w| w == b"\r\n\r\n")
                        .expect("head end")
                        + 4;
                    buf.drain(..end);
                    let n = seen.fetch_add(1, Ordering::SeqCst) + 1;
                    let body = format!("final {n}");
                    let answer = format!(
                        "HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload; as=style\r\n\r\n\
                         HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Type: text/plain\r\n\
                         Content-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if conn.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, count)
}

#[tokio::test]
async fn early_hints_are_read_past_and_never_cached() {
    let (addr, count) = early_hints_origin().await;
    let edge = TestEdge::start("edge-1", &snapshot_for("svc", addr)).await;
    let client = edge.client(&[HOST]);
    let first = get(&client, &edge.url(HOST, "/page")).await;
    assert_eq!((first.status, first.x_cache()), (200, "MISS"));
    assert_eq!(first.text(), "final 1");
    let again = get(&client, &edge.url(HOST, "/page")).await;
    assert_eq!((again.status, again.x_cache()), (200, "HIT"));
    assert_eq!(again.text(), "final 1", "the final response was stored");
    assert!(
        again.header("link").is_empty(),
        "the interim response's fields are not merged into the stored one"
    );
    assert_eq!(count.load(Ordering::SeqCst), 1);
    edge.shutdown().await;
}
