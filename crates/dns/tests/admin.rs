//! The admin HTTP server and the metrics: `/healthz` before and after the first snapshot,
//! `/metrics` counters moving with queries, `/explain` as JSON (and its 400, 404 and 503
//! answers), and the query log.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on unexpected failures

mod common;

use std::io::Write;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Ask, DEMO, addr_of, demo_dns, snapshot, tcp, udp};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use lingjing_dns::{DnsConfig, DnsHandle, DnsServer, start};
use lingjing_model::DnsSnapshot;

/// A server on 127.0.0.1:0 with its admin server on 127.0.0.1:0; no snapshot yet.
async fn serve_with_admin(query_log: bool) -> DnsHandle {
    let mut config = DnsConfig::on("127.0.0.1:0".parse().unwrap());
    config.admin = Some("127.0.0.1:0".parse().unwrap());
    config.query_log = query_log;
    start(&config, Arc::new(DnsServer::new())).await.unwrap()
}

async fn get(h: &DnsHandle, path: &str) -> (u16, String) {
    let url = format!("http://{}{path}", h.admin_addr().unwrap());
    let r = reqwest::get(&url).await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// The value of the sample `name{labels}` (or `name` alone) in OpenMetrics text.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.trim().parse().unwrap())
}

/// The site and the line of `node`'s first address, as the metrics label them.
fn site_of(body: &DnsSnapshot, node: &str) -> String {
    body.nodes
        .iter()
        .find(|n| n.node.id == node)
        .unwrap()
        .node
        .site
        .clone()
}

fn line_of(body: &DnsSnapshot, addr: &str) -> String {
    let a: IpAddr = addr.parse().unwrap();
    body.prefixes
        .iter()
        .filter(|p| p.cidr.contains(&a))
        .max_by_key(|p| p.cidr.prefix_len())
        .unwrap()
        .line
        .clone()
}

#[tokio::test]
async fn healthz_turns_ok_once_a_snapshot_is_applied() {
    let h = serve_with_admin(false).await;
    let (status, body) = get(&h, "/healthz").await;
    assert_eq!(status, 503, "{body}");
    let (status, body) = get(&h, "/explain?name=demo.cdn.lingjing.test&client=192.0.2.1").await;
    assert_eq!(status, 503, "{body}");
    let (_, metrics) = get(&h, "/metrics").await;
    assert_eq!(sample(&metrics, "lingjing_dns_snapshot_version"), Some(0.0));

    h.server.apply(&snapshot(7, demo_dns())).unwrap();
    let (status, body) = get(&h, "/healthz").await;
    assert_eq!(status, 200);
    assert_eq!(body.trim(), "ok 7");
    let (_, metrics) = get(&h, "/metrics").await;
    assert_eq!(sample(&metrics, "lingjing_dns_snapshot_version"), Some(7.0));
    h.shutdown().await;
}

#[tokio::test]
async fn metrics_count_queries_answers_truncation_and_drops() {
    let body = demo_dns();
    let h = serve_with_admin(false).await;
    h.server.apply(&snapshot(3, body.clone())).unwrap();
    let server = h.udp_addrs()[0];

    // Two A queries over UDP from a Wuxi telecom subnet, one over TCP, one NXDOMAIN.
    let ask = Ask::new(DEMO, RecordType::A).ecs("198.51.100.0/26");
    for _ in 0..2 {
        let m = udp(server, &ask).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    }
    tcp(h.tcp_addrs()[0], &ask).await;
    let m = udp(
        server,
        &Ask::new("nope.cdn.lingjing.test.", RecordType::AAAA),
    )
    .await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    // 127.0.0.1 is on no line: answered from the fallback site, line "unknown".
    udp(server, &Ask::new(DEMO, RecordType::A)).await;

    // A runt then a query on one socket: when the query's answer is back, the runt (sent
    // first, answered by the same loop) has been counted.
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(&[1, 2, 3], server).await.unwrap();
    sock.send_to(&ask.bytes(), server).await.unwrap();
    let mut buf = vec![0u8; 4096];
    tokio::time::timeout(Duration::from_secs(5), sock.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();

    let (status, text) = get(&h, "/metrics").await;
    assert_eq!(status, 200);
    assert_eq!(
        sample(
            &text,
            r#"lingjing_dns_queries_total{qtype="A",rcode="NOERROR",transport="udp"}"#
        ),
        Some(4.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            r#"lingjing_dns_queries_total{qtype="A",rcode="NOERROR",transport="tcp"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            r#"lingjing_dns_queries_total{qtype="AAAA",rcode="NXDOMAIN",transport="udp"}"#
        ),
        Some(1.0)
    );
    let wuxi = format!(
        r#"lingjing_dns_answers_total{{site="{}",line="{}"}}"#,
        site_of(&body, "wuxi-1-e1"),
        line_of(&body, "198.51.100.0")
    );
    assert_eq!(sample(&text, &wuxi), Some(4.0), "{text}");
    let fallback = format!(
        r#"lingjing_dns_answers_total{{site="{}",line="unknown"}}"#,
        site_of(&body, "nanjing-1-p1")
    );
    assert_eq!(sample(&text, &fallback), Some(1.0), "{text}");
    assert_eq!(
        sample(&text, "lingjing_dns_dropped_packets_total"),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "lingjing_dns_query_duration_seconds_count"),
        Some(7.0)
    );
    assert_eq!(
        sample(&text, "lingjing_dns_truncated_responses_total"),
        Some(0.0)
    );
    assert!(
        text.contains("lingjing_dns_query_duration_seconds_bucket{le=\"0.00001\"}"),
        "{text}"
    );
    h.shutdown().await;
}

#[test]
fn a_truncated_response_is_counted() {
    // Pure: a response over 512 bytes without EDNS is truncated; the metrics see it.
    let mut body = demo_dns();
    for s in &mut body.services {
        s.steering.answer_count = 200;
    }
    // Many nodes on the fallback site: a large answer for a client on no line.
    let template = common::node_mut(&mut body, "nanjing-1-p1").clone();
    for i in 0..60u8 {
        let mut n = template.clone();
        n.node.id = format!("extra-{i}");
        n.node.roles = vec![lingjing_model::NodeRole::Edge];
        n.addresses = vec![format!("192.0.2.{i}").parse().unwrap()];
        body.nodes.push(n);
    }
    let gslb = lingjing_dns::Gslb::build(&body, 1).unwrap();
    let metrics = lingjing_dns::DnsMetrics::default();
    let (bytes, outcome) = lingjing_dns::respond_traced(
        &gslb,
        &Ask::new(DEMO, RecordType::A).bytes(),
        "127.0.0.1".parse().unwrap(),
        lingjing_dns::Transport::Udp,
        true,
    );
    let m = Message::from_vec(&bytes.unwrap()).unwrap();
    assert!(m.metadata.truncation);
    assert!(outcome.truncated);
    metrics.record(&outcome, true, lingjing_dns::Transport::Udp, Duration::ZERO);
    let text = metrics.encode();
    assert_eq!(
        sample(&text, "lingjing_dns_truncated_responses_total"),
        Some(1.0)
    );
}

#[tokio::test]
async fn explain_answers_json_and_rejects_bad_parameters() {
    let body = demo_dns();
    let h = serve_with_admin(false).await;
    h.server.apply(&snapshot(5, body.clone())).unwrap();

    let (status, text) = get(
        &h,
        "/explain?name=demo.cdn.lingjing.test&client=203.0.113.70&subnet=32",
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let e: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(e["service"], "demo");
    assert_eq!(e["classified_by"], "ecs");
    assert_eq!(e["snapshot_version"], 5);
    assert_eq!(
        e["answer"],
        serde_json::json!([addr_of(&body, "suqian-1-e1").to_string()])
    );
    assert!(!e["candidates"].as_array().unwrap().is_empty());
    // The same as the DNS answer to that client.
    let m = udp(
        h.udp_addrs()[0],
        &Ask::new(DEMO, RecordType::A).ecs("203.0.113.70/32"),
    )
    .await;
    assert_eq!(common::addresses(&m), vec![addr_of(&body, "suqian-1-e1")]);

    // AAAA, case-insensitive, trailing dot: still JSON.
    let (status, text) = get(
        &h,
        "/explain?name=DEMO.cdn.lingjing.test.&client=203.0.113.70&type=aaaa",
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let e: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        e["family"],
        serde_json::to_value(lingjing_dns::Family::V6).unwrap()
    );

    for bad in [
        "/explain?client=203.0.113.70",
        "/explain?name=demo.cdn.lingjing.test",
        "/explain?name=demo.cdn.lingjing.test&client=not-an-ip",
        "/explain?name=demo.cdn.lingjing.test&client=203.0.113.70&subnet=33",
        "/explain?name=demo.cdn.lingjing.test&client=203.0.113.70&subnet=x",
        "/explain?name=demo.cdn.lingjing.test&client=203.0.113.70&type=MX",
    ] {
        let (status, text) = get(&h, bad).await;
        assert_eq!(status, 400, "{bad}: {text}");
        let e: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert!(e["error"].is_string(), "{bad}: {text}");
    }
    for missing in [
        "/explain?name=nope.cdn.lingjing.test&client=203.0.113.70",
        "/explain?name=demo.example.org&client=203.0.113.70",
        "/explain?name=cdn.lingjing.test&client=203.0.113.70",
    ] {
        let (status, text) = get(&h, missing).await;
        assert_eq!(status, 404, "{missing}: {text}");
        let e: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert!(e["error"].is_string());
    }
    h.shutdown().await;
}

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn the_query_log_logs_each_query_and_serving_goes_on() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    // The test runtime is single-threaded: the server's tasks log on this thread.
    let _guard = tracing::subscriber::set_default(subscriber);

    let body = demo_dns();
    let h = serve_with_admin(true).await;
    h.server.apply(&snapshot(2, body.clone())).unwrap();
    let ask = Ask::new(DEMO, RecordType::A).ecs("198.51.100.0/26");
    let m = udp(h.udp_addrs()[0], &ask).await;
    assert_eq!(common::addresses(&m), vec![addr_of(&body, "wuxi-1-e1")]);
    let m = tcp(h.tcp_addrs()[0], &ask).await;
    assert_eq!(common::addresses(&m), vec![addr_of(&body, "wuxi-1-e1")]);
    h.shutdown().await;

    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let queries: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("lingjing::dns::query"))
        .collect();
    assert_eq!(queries.len(), 2, "{log}");
    let wuxi = addr_of(&body, "wuxi-1-e1").to_string();
    for q in queries {
        for part in [
            "qname=\"demo.cdn.lingjing.test.\"",
            "qtype=\"A\"",
            "rcode=\"NOERROR\"",
            "ecs=\"198.51.100.0/26\"",
            wuxi.as_str(),
        ] {
            assert!(q.contains(part), "{part} not in {q}");
        }
    }
}
