//! The attacks of a hostile tenant and a hostile client, tried black-box against the real
//! binaries: `lingjing control`, a `lingjing edge` and a `lingjing dns`, each node with
//! its own credential, serving the demo topology. A second tenant, `evil`, with its own
//! API key, tries to take the demo tenant's names, names of the platform, origins inside
//! the platform and the demo's cache; a client tries a many-range request, a forged `Via`
//! and `ANY`. Each is refused, and the legitimate path keeps working.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::{Access, DemoPlatform, eventually, get, join_token, record_ports};
use common::{start_dns, start_edge};
use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RecordType};
use lingjing_client::{Client, ClientError};
use serde_json::{Value, json};

const TOKEN: &str = "security-test-operator-token-0123456789";
const HOST: &str = "www.demo.example";
const EDGE: &str = "wuxi-1-e1";

/// A raw HTTP/1.1 request with extra header lines; the head (lowercased) and body bytes.
fn request(addr: SocketAddr, method: &str, path: &str, headers: &str) -> (String, Vec<u8>) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {HOST}\r\n{headers}Connection: close\r\n\r\n"
    )
    .expect("write");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP head");
    (
        String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase(),
        raw[split + 4..].to_vec(),
    )
}

fn refused(r: Result<Value, ClientError>, status: u16, code: &str) -> String {
    match r {
        Ok(v) => panic!("expected {status} {code}, got a success: {v}"),
        Err(e) => {
            assert_eq!(e.status(), Some(status), "{e}");
            assert_eq!(e.code(), Some(code), "{e}");
            e.to_string()
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_tenant_and_client_are_refused_by_the_running_platform() {
    let dir = tempfile::tempdir().expect("tempdir");
    let platform = DemoPlatform::start(dir.path(), TOKEN).await;
    let (url, op) = (platform.url.clone(), platform.api.clone());

    let edge_ip = "127.0.1.1".parse().expect("ip");
    let token = join_token(&op, EDGE).await;
    let access = Access {
        join_token: Some(&token),
        ..Default::default()
    };
    let edge = start_edge(EDGE, edge_ip, &url, access, &dir.path().join(EDGE), false);
    record_ports(&op, &edge).await.expect("record the ports");
    let token = join_token(&op, "nanjing-1-dns1").await;
    let access = Access {
        join_token: Some(&token),
        ..Default::default()
    };
    let (_dns, dns) = start_dns("nanjing-1-dns1", &url, access, &dir.path().join("dns"));

    // The legitimate path: the demo page through the edge, cached.
    eventually("the demo page", Duration::from_secs(20), || {
        get(edge.http, HOST, "/").ok().filter(|r| r.status == 200)
    });
    let hit = get(edge.http, HOST, "/").expect("second fetch");
    assert!(hit.head.contains("x-cache: hit"), "{}", hit.head);

    // A second tenant with its own key.
    let _: Value = op
        .post("/v1/tenants", &json!({"id": "evil", "name": "Evil"}))
        .await
        .expect("tenant");
    let key: Value = op
        .post("/v1/tenants/evil/keys", &json!({}))
        .await
        .expect("key");
    let evil = Client::new(&url, key["secret"].as_str().expect("secret")).expect("client");
    let svc = |id: &str, host: &str, origin: &str| {
        json!({"id": id, "tenant": "evil", "hostnames": [host],
               "origins": [{"address": origin}]})
    };
    let public = "93.184.216.34:80";

    // Another tenant's names, wildcards over them, the platform's zone and labels.
    let m = refused(
        evil.post("/v1/services", &svc("grab", "*.demo.example", public))
            .await,
        409,
        "hostname_taken",
    );
    // It names one of the demo tenant's names it would cover.
    assert!(
        m.contains("www.demo.example") || m.contains("site.demo.example"),
        "{m}"
    );
    refused(
        evil.post("/v1/services", &svc("grab", HOST, public)).await,
        409,
        "hostname_taken",
    );
    refused(
        evil.post(
            "/v1/services",
            &svc("grab", "www.cdn.lingjing.test", public),
        )
        .await,
        422,
        "invalid",
    );
    refused(
        evil.post("/v1/services", &svc("www", "www.evil.example", public))
            .await,
        409,
        "name_reserved",
    );
    refused(
        evil.post("/v1/services", &svc("grab", "*.com", public))
            .await,
        422,
        "invalid",
    );
    // Origins inside the platform: an edge's admin port, the control plane, loopback.
    let control_addr = url
        .split("://")
        .nth(1)
        .expect("url")
        .trim_end_matches('/')
        .to_owned();
    for origin in [
        edge.admin.to_string(),
        control_addr,
        "127.0.0.2:80".to_owned(),
        "169.254.169.254:80".to_owned(),
    ] {
        refused(
            evil.post("/v1/services", &svc("grab", "www.evil.example", &origin))
                .await,
            422,
            "invalid",
        );
    }
    // A name the tenant has not proven is accepted but served by nobody.
    let view: Value = evil
        .post("/v1/services", &svc("evil", "shop.demo.example", public))
        .await
        .expect("a pending name");
    assert_eq!(view["hostname_status"][0]["state"], "pending");
    let version: Value = op.get("/v1/snapshots/edge").await.expect("snapshot");
    let v = version["version"].as_u64().expect("version");
    eventually(
        "the edge applies the change",
        Duration::from_secs(20),
        || {
            let status: Value = futures_lite_block(op.get(&format!("/v1/nodes/{EDGE}")))?;
            (status["status"]["applied"]["edge"].as_u64()? >= v).then_some(())
        },
    );
    let r = get(edge.http, "shop.demo.example", "/").expect("fetch");
    assert_eq!(r.status, 404, "a pending name is not served");
    // Evil cannot purge the demo's cache: not by naming the service, not by its URL.
    refused(
        evil.post(
            "/v1/purges",
            &json!({"service": "demo", "kind": "prefix", "targets": ["http://www.demo.example/"]}),
        )
        .await,
        404,
        "not_found",
    );
    refused(
        evil.post(
            "/v1/purges",
            &json!({"kind": "prefix", "targets": ["http://www.demo.example/"]}),
        )
        .await,
        404,
        "not_found",
    );
    let hit = get(edge.http, HOST, "/").expect("fetch");
    assert!(
        hit.head.contains("x-cache: hit"),
        "still cached: {}",
        hit.head
    );

    // A client's 16 overlapping ranges get no more than the object (plus multipart parts).
    let whole = get(edge.http, HOST, "/large.bin").expect("large");
    assert_eq!(whole.status, 200);
    let ranges = vec!["0-"; 16].join(",");
    let (head, body) = request(
        edge.http,
        "GET",
        "/large.bin",
        &format!("Range: bytes={ranges}\r\n"),
    );
    assert!(
        body.len() <= whole.body.len() + 4096,
        "{} bytes for a {}-byte object: {head}",
        body.len(),
        whole.body.len()
    );
    // HEAD of a ranged request builds no body.
    let (_, body) = request(
        edge.http,
        "HEAD",
        "/large.bin",
        "Range: bytes=0-9,20-29\r\n",
    );
    assert!(body.is_empty());

    // A request carrying this platform's Via is a loop.
    let (head, _) = request(
        edge.http,
        "GET",
        "/",
        &format!("Via: 1.1 lingjing-{EDGE}\r\n"),
    );
    assert!(head.starts_with("http/1.1 508"), "{head}");

    // DNS: `ANY` gets one RRset, never everything.
    let mut q = Message::query();
    q.metadata.id = 4242;
    q.add_query(Query::query(
        Name::from_ascii("cdn.lingjing.test.").expect("name"),
        RecordType::ANY,
    ));
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
    sock.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let bytes = q.to_vec().expect("encode");
    let answer = eventually("an ANY answer", Duration::from_secs(20), || {
        sock.send_to(&bytes, dns).ok()?;
        let mut buf = [0u8; 4096];
        let n = sock.recv(&mut buf).ok()?;
        Message::from_vec(&buf[..n]).ok()
    });
    let types: std::collections::BTreeSet<RecordType> =
        answer.answers.iter().map(|r| r.record_type()).collect();
    assert_eq!(types.len(), 1, "one RRset: {:?}", answer.answers);
}

/// Runs a future to completion from a synchronous `eventually` check.
fn futures_lite_block<T>(
    f: impl std::future::Future<Output = Result<T, ClientError>>,
) -> Option<T> {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f)).ok()
}
