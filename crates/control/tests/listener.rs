//! The control API's HTTP server: HTTPS that clients verify against the CA they are given
//! (and refuse, with a clear message, without it), and the limits that keep slow or
//! numerous clients from holding it: header-read timeout, idle timeout (a long-poll in
//! flight is not idle), connection cap. Timeouts are configured short; the assertions are
//! on outcomes (the connection is closed) within generous bounds.

use std::path::Path;
use std::time::Duration;

use lingjing_control::server::{DEFAULT_ZONE, HttpOptions, ServeError, ServerLimits, TlsFiles};
use lingjing_control::{ControlConfig, ControlHandle, Store, serve_with};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TOKEN: &str = "listener-test-operator-token";
/// Only reached when the server fails to close a connection it should close.
const BOUND: Duration = Duration::from_secs(30);

/// Serves a control plane on a store in `dir`, with `http`, on a free loopback port.
async fn try_start(dir: &Path, http: HttpOptions) -> Result<ControlHandle, ServeError> {
    let store = Store::open_sqlite_file(&dir.join("db.sqlite"))
        .await
        .expect("store");
    let config = ControlConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        operator_token: TOKEN.into(),
        zone: DEFAULT_ZONE.into(),
        health: None,
        storage: Default::default(),
        meter_retention_days: lingjing_control::server::DEFAULT_METER_RETENTION_DAYS,
        policy: Default::default(),
    };
    serve_with(config, http, store).await
}

async fn start(dir: &Path, http: HttpOptions) -> ControlHandle {
    try_start(dir, http).await.expect("serve")
}

/// A plain-HTTP control plane on a store in `dir`, under `limits`.
async fn start_limited(dir: &Path, limits: ServerLimits) -> ControlHandle {
    start(
        dir,
        HttpOptions {
            tls: None,
            limits,
            mount: None,
            relay: None,
        },
    )
    .await
}

/// A CA and a server certificate for `localhost` and `127.0.0.1`, as PEM files in `dir`.
fn certificates(dir: &Path) -> (TlsFiles, std::path::PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose};
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "listener test CA");
    let ca_cert = ca.self_signed(&ca_key).expect("ca cert");
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().expect("key");
    let params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .expect("params");
    let cert = params.signed_by(&key, &issuer).expect("cert");
    let files = TlsFiles {
        cert: dir.join("server.pem"),
        key: dir.join("server-key.pem"),
    };
    std::fs::write(&files.cert, cert.pem()).expect("write cert");
    std::fs::write(&files.key, key.serialize_pem()).expect("write key");
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca_cert.pem()).expect("write ca");
    (files, ca_file)
}

#[tokio::test]
async fn https_is_verified_against_the_given_ca() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (files, ca) = certificates(dir.path());
    let cp = start(
        dir.path(),
        HttpOptions {
            tls: Some(files),
            ..Default::default()
        },
    )
    .await;
    let url = cp.url();
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");

    let trusted = lingjing_client::Client::with_ca(&url, TOKEN, Some(&ca)).expect("client");
    let sites: Vec<serde_json::Value> = trusted.get("/v1/sites").await.expect("over TLS");
    assert!(sites.is_empty());
    let by_name = url.replace("127.0.0.1", "localhost");
    let trusted = lingjing_client::Client::with_ca(&by_name, TOKEN, Some(&ca)).expect("client");
    let _: Vec<serde_json::Value> = trusted.get("/v1/sites").await.expect("by name");

    let untrusted = lingjing_client::Client::new(&url, TOKEN).expect("client");
    let err = untrusted
        .get::<serde_json::Value>("/v1/sites")
        .await
        .expect_err("an unknown CA is refused");
    let msg = err.to_string();
    assert!(
        matches!(err, lingjing_client::ClientError::Certificate { .. }),
        "{msg}"
    );
    assert!(msg.contains("not trusted") && msg.contains("--ca"), "{msg}");

    // Plain HTTP to the TLS port gets no API answer.
    let plain = lingjing_client::Client::new(&url.replace("https", "http"), TOKEN).expect("c");
    assert!(plain.get::<serde_json::Value>("/v1/sites").await.is_err());
    cp.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_missing_or_bad_certificate_file_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = TlsFiles {
        cert: dir.path().join("nope.pem"),
        key: dir.path().join("nope-key.pem"),
    };
    let err = try_start(
        dir.path(),
        HttpOptions {
            tls: Some(missing),
            ..Default::default()
        },
    )
    .await
    .err()
    .expect("refused");
    let msg = err.to_string();
    assert!(
        msg.contains("nope.pem") && msg.contains("--tls-cert"),
        "{msg}"
    );
}

/// Reads until the server closes the connection (EOF or reset); panics past [`BOUND`].
async fn closed_by_server(stream: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let read = tokio::time::timeout(BOUND, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the server kept the connection open");
    got
}

/// Sends `GET /healthz` on `stream` (keep-alive) and reads its answer.
async fn healthz(stream: &mut TcpStream) -> bool {
    if stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .is_err()
    {
        return false;
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.ends_with(b"ok\n") {
        match tokio::time::timeout(BOUND, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return false,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => panic!("no answer to /healthz"),
        }
    }
    got.starts_with(b"HTTP/1.1 200")
}

#[tokio::test]
async fn a_slow_request_head_is_cut_off() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cp = start_limited(
        dir.path(),
        ServerLimits {
            header_read_timeout: Duration::from_millis(200),
            // Far longer than the test's bound: only the header timeout can close it.
            idle_timeout: Duration::from_secs(600),
            ..Default::default()
        },
    )
    .await;
    // Half a request head, then silence.
    let mut slow = TcpStream::connect(cp.addr()).await.expect("connect");
    slow.write_all(b"GET /v1/sites HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    closed_by_server(&mut slow).await;
    // A whole head is served.
    let mut quick = TcpStream::connect(cp.addr()).await.expect("connect");
    assert!(healthz(&mut quick).await);
    cp.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn an_idle_connection_is_closed_but_a_long_poll_is_not() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cp = start_limited(
        dir.path(),
        ServerLimits {
            idle_timeout: Duration::from_millis(300),
            ..Default::default()
        },
    )
    .await;

    // Nothing at all.
    let mut silent = TcpStream::connect(cp.addr()).await.expect("connect");
    assert!(closed_by_server(&mut silent).await.is_empty());

    // A long-poll that waits longer than the idle timeout is a request in flight.
    let version = cp.store().version().await.expect("version");
    let polled = reqwest::Client::new()
        .get(format!(
            "{}/v1/snapshots/edge?after={version}&timeout_ms=1500",
            cp.url()
        ))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("the long-poll is answered");
    assert_eq!(polled.status(), 304);
    cp.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn connections_over_the_cap_are_closed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cp = start_limited(
        dir.path(),
        ServerLimits {
            max_connections: 2,
            ..Default::default()
        },
    )
    .await;
    let mut first = TcpStream::connect(cp.addr()).await.expect("connect");
    let mut second = TcpStream::connect(cp.addr()).await.expect("connect");
    assert!(healthz(&mut first).await);
    assert!(healthz(&mut second).await);
    // Both are held open (keep-alive): a third is closed at once, unanswered.
    let mut third = TcpStream::connect(cp.addr()).await.expect("connect");
    let _ = third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    assert!(closed_by_server(&mut third).await.is_empty());
    assert!(healthz(&mut first).await, "the held connections still work");

    // Once one closes, its slot is free again (the server notices the close on its own
    // schedule, so try until it has).
    drop(first);
    let freed = tokio::time::timeout(BOUND, async {
        loop {
            let mut next = TcpStream::connect(cp.addr()).await.expect("connect");
            if healthz(&mut next).await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        freed.is_ok(),
        "the slot of a closed connection was never freed"
    );
    drop(second);
    cp.shutdown().await.expect("shutdown");
}
