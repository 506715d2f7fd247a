//! The real server on 127.0.0.1:0, queried over UDP and TCP with hand-built messages:
//! answers per line through ECS, the protocol's error paths, truncation and retry over
//! TCP, live snapshot updates, and garbage input.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on unexpected failures

mod common;

use std::net::IpAddr;
use std::sync::Arc;

use common::{
    Ask, DEMO, addr_of, addresses, demo_dns, ecs_of, node_mut, serve, serve_with, snapshot, tcp,
    tcp_many, udp, udp_raw,
};
use hickory_proto::op::{Message, OpCode, ResponseCode};
use hickory_proto::rr::{RData, RecordType};
use lingjing_dns::{ClientInfo, DnsConfig, DnsServer, Family, start};
use rand::{Rng, SeedableRng};

#[tokio::test]
async fn answers_per_line_through_ecs_and_echoes_the_scope() {
    let body = demo_dns();
    let h = serve(3, body.clone()).await;
    let server = h.udp_addrs()[0];
    let m = udp(
        server,
        &Ask::new(DEMO, RecordType::A).ecs("198.51.100.0/26"),
    )
    .await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.metadata.authoritative);
    assert_eq!(m.metadata.id, 0x4a4a);
    assert_eq!(addresses(&m), vec![addr_of(&body, "wuxi-1-e1")]);
    assert_eq!(m.answers[0].ttl, 30);
    let echoed = ecs_of(&m).expect("ECS echoed");
    assert_eq!(echoed.source_prefix(), 26);
    assert_eq!(echoed.scope_prefix(), 26);
    assert_eq!(echoed.addr(), "198.51.100.0".parse::<IpAddr>().unwrap());

    let m = udp(
        server,
        &Ask::new(DEMO, RecordType::A).ecs("203.0.113.64/32"),
    )
    .await;
    assert_eq!(addresses(&m), vec![addr_of(&body, "suqian-1-e1")]);
    assert_eq!(ecs_of(&m).unwrap().scope_prefix(), 26);

    // Over TCP as well.
    let m = tcp(
        h.tcp_addrs()[0],
        &Ask::new(DEMO, RecordType::A).ecs("192.0.2.128/26"),
    )
    .await;
    assert_eq!(addresses(&m), vec![addr_of(&body, "taizhou-1-e1")]);

    // Without ECS, no option comes back; 127.0.0.1 is on no line: the fallback site.
    let m = udp(server, &Ask::new(DEMO, RecordType::A).edns(1232)).await;
    assert!(m.edns.is_some());
    assert!(ecs_of(&m).is_none());
    assert_eq!(addresses(&m), vec![addr_of(&body, "nanjing-1-p1")]);
    // Without EDNS, no OPT record.
    let m = udp(server, &Ask::new(DEMO, RecordType::A)).await;
    assert!(m.edns.is_none());
    h.shutdown().await;
}

#[tokio::test]
async fn soa_ns_nxdomain_nodata_and_refused() {
    let body = demo_dns();
    let h = serve(42, body.clone()).await;
    let server = h.udp_addrs()[0];

    let m = udp(server, &Ask::new("cdn.lingjing.test.", RecordType::SOA)).await;
    let RData::SOA(soa) = &m.answers[0].data else {
        panic!("an SOA: {m:?}");
    };
    assert_eq!(soa.serial, 42);
    assert_eq!(soa.mname.to_ascii(), "ns1.cdn.lingjing.test.");

    let m = udp(server, &Ask::new("cdn.lingjing.test.", RecordType::NS)).await;
    assert!(
        matches!(&m.answers[0].data, RData::NS(ns) if ns.0.to_ascii() == "ns1.cdn.lingjing.test.")
    );
    assert_eq!(
        m.additionals
            .iter()
            .filter_map(|r| match &r.data {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                _ => None,
            })
            .collect::<Vec<_>>(),
        vec![addr_of(&body, "nanjing-1-dns1")]
    );

    // NXDOMAIN with the SOA, its TTL the negative TTL.
    let m = udp(
        server,
        &Ask::new("nothing.cdn.lingjing.test.", RecordType::A),
    )
    .await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert!(m.metadata.authoritative);
    assert!(m.answers.is_empty());
    assert_eq!(m.authorities.len(), 1);
    let RData::SOA(soa) = &m.authorities[0].data else {
        panic!("an SOA in authority");
    };
    assert_eq!(m.authorities[0].ttl, soa.minimum);
    assert_eq!(m.authorities[0].name.to_ascii(), "cdn.lingjing.test.");

    // NODATA: the name exists, the type does not.
    let m = udp(server, &Ask::new(DEMO, RecordType::TXT)).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty());
    assert!(matches!(&m.authorities[0].data, RData::SOA(_)));

    // Outside the zone: REFUSED, not authoritative.
    let m = udp(server, &Ask::new("www.example.com.", RecordType::A)).await;
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    assert!(!m.metadata.authoritative);
    assert!(m.answers.is_empty() && m.authorities.is_empty());
    h.shutdown().await;
}

#[tokio::test]
async fn matching_ignores_case_and_the_answer_echoes_it() {
    let body = demo_dns();
    let h = serve(1, body.clone()).await;
    let name = "DeMo.CDN.lingJING.test.";
    let m = udp(
        h.udp_addrs()[0],
        &Ask::new(name, RecordType::A).ecs("198.51.100.0/26"),
    )
    .await;
    assert_eq!(m.queries[0].name().to_ascii(), name);
    assert_eq!(m.answers[0].name.to_ascii(), name);
    assert_eq!(addresses(&m), vec![addr_of(&body, "wuxi-1-e1")]);
    h.shutdown().await;
}

#[tokio::test]
async fn a_large_answer_is_truncated_over_udp_and_whole_over_tcp() {
    let mut body = demo_dns();
    // 24 nodes at Wuxi, each with an IPv6 address: 24 AAAA records (~ 700 bytes; more
    // than the control plane's policy validation allows, which the server does not
    // re-check).
    let template = body
        .nodes
        .iter()
        .find(|n| n.node.id == "wuxi-1-e1")
        .unwrap()
        .clone();
    body.nodes.retain(|n| n.node.id != "wuxi-1-e1");
    for i in 0..24u16 {
        let mut n = template.clone();
        n.node.id = format!("wuxi-1-e{i}");
        n.addresses = vec![IpAddr::V6(std::net::Ipv6Addr::new(
            0x2001,
            0xdb8,
            0xffff,
            0,
            0,
            0,
            0,
            i + 1,
        ))];
        body.nodes.push(n);
    }
    body.services[0].steering.answer_count = 24;
    let h = serve(1, body).await;
    let ask = Ask::new(DEMO, RecordType::AAAA).ecs("198.51.100.0/26");

    // No EDNS: 512 bytes at most.
    let plain = Ask {
        ecs: None,
        ..Ask::new(DEMO, RecordType::AAAA)
    };
    let bytes = udp_raw(h.udp_addrs()[0], &plain.bytes()).await.unwrap();
    assert!(bytes.len() <= 512);
    let m = Message::from_vec(&bytes).unwrap();
    assert!(m.metadata.truncation);
    assert!(m.answers.is_empty());

    // A client offering 1232 bytes gets it all over UDP.
    let m = udp(h.udp_addrs()[0], &ask).await;
    assert!(!m.metadata.truncation);
    assert_eq!(addresses(&m).len(), 24);

    // A client offering 512: TC, question and OPT (with ECS) only; then TCP has it all.
    let small = Ask::new(DEMO, RecordType::AAAA)
        .ecs("198.51.100.0/26")
        .edns(512);
    let bytes = udp_raw(h.udp_addrs()[0], &small.bytes()).await.unwrap();
    assert!(bytes.len() <= 512);
    let m = Message::from_vec(&bytes).unwrap();
    assert!(m.metadata.truncation);
    assert!(m.answers.is_empty());
    assert_eq!(m.queries.len(), 1);
    assert!(ecs_of(&m).is_some());
    let m = tcp(h.tcp_addrs()[0], &small).await;
    assert!(!m.metadata.truncation);
    assert_eq!(addresses(&m).len(), 24);
    h.shutdown().await;
}

#[tokio::test]
async fn badvers_formerr_and_notimp() {
    let h = serve(1, demo_dns()).await;
    let server = h.udp_addrs()[0];

    // EDNS version 1: BADVERS (extended rcode 16), with an OPT of version 0.
    let mut m = Ask::new(DEMO, RecordType::A).edns(1232).message(7);
    m.edns.as_mut().unwrap().set_version(1);
    let r = Message::from_vec(&udp_raw(server, &m.to_vec().unwrap()).await.unwrap()).unwrap();
    // BADVERS and BADSIG share the code 16; hickory decodes it as BADSIG.
    assert_eq!(u16::from(r.metadata.response_code), 16);
    assert_eq!(r.edns.as_ref().unwrap().version(), 0);
    assert!(r.answers.is_empty());

    // Garbage after a valid header: FORMERR, id kept.
    let mut garbage = vec![0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0];
    garbage.extend_from_slice(&[0xff; 20]);
    let r = Message::from_vec(&udp_raw(server, &garbage).await.unwrap()).unwrap();
    assert_eq!(r.metadata.id, 0x1234);
    assert_eq!(r.metadata.response_code, ResponseCode::FormErr);

    // Two questions: FORMERR.
    let mut m = Ask::new(DEMO, RecordType::A).message(8);
    m.add_query(m.queries[0].clone());
    let r = Message::from_vec(&udp_raw(server, &m.to_vec().unwrap()).await.unwrap()).unwrap();
    assert_eq!(r.metadata.response_code, ResponseCode::FormErr);

    // ECS with address bits past the source prefix: FORMERR.
    let r = udp(
        server,
        &Ask::new(DEMO, RecordType::A).ecs("198.51.100.7/26"),
    )
    .await;
    assert_eq!(r.metadata.response_code, ResponseCode::FormErr);

    // NOTIFY and UPDATE: NOTIMP.
    for op in [OpCode::Notify, OpCode::Update] {
        let mut m = Ask::new("cdn.lingjing.test.", RecordType::SOA).message(9);
        m.metadata.op_code = op;
        let r = Message::from_vec(&udp_raw(server, &m.to_vec().unwrap()).await.unwrap()).unwrap();
        assert_eq!(r.metadata.response_code, ResponseCode::NotImp, "{op:?}");
        assert_eq!(r.metadata.op_code, op);
    }

    // Too short to have a header, or a response: no answer at all. The server answers
    // in order, so the first reply on this socket must be the one to the query after.
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut resp = Ask::new(DEMO, RecordType::A).message(10);
    resp.metadata.message_type = hickory_proto::op::MessageType::Response;
    sock.send_to(&[1, 2, 3], server).await.unwrap();
    sock.send_to(&resp.to_vec().unwrap(), server).await.unwrap();
    let probe = Ask::new("cdn.lingjing.test.", RecordType::SOA).message(11);
    sock.send_to(&probe.to_vec().unwrap(), server)
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let (n, _) = tokio::time::timeout(std::time::Duration::from_secs(5), sock.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let r = Message::from_vec(&buf[..n]).unwrap();
    assert_eq!(r.metadata.id, 11);
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    h.shutdown().await;
}

#[tokio::test]
async fn random_packets_never_break_the_server() {
    let body = demo_dns();
    // Without rate limiting: the garbage's answers would spend the client network's
    // tokens before the check that the server still answers.
    let h = serve_with(1, body.clone(), |c| c.rrl = lingjing_dns::RrlConfig::off()).await;
    let server = h.udp_addrs()[0];
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let valid = Ask::new(DEMO, RecordType::A).ecs("198.51.100.0/26").bytes();
    for i in 0..3000 {
        let packet: Vec<u8> = if i % 2 == 0 {
            let len = rng.random_range(0..600);
            (0..len).map(|_| rng.random()).collect()
        } else {
            // A valid query with a few bytes flipped: reaches deeper into the parser.
            let mut p = valid.clone();
            for _ in 0..rng.random_range(1..6) {
                let at = rng.random_range(0..p.len());
                p[at] = rng.random();
            }
            p
        };
        sock.send_to(&packet, server).await.unwrap();
    }
    // Over TCP too: garbage frames on one connection.
    let mut stream = tokio::net::TcpStream::connect(h.tcp_addrs()[0])
        .await
        .unwrap();
    use tokio::io::AsyncWriteExt;
    let junk: Vec<u8> = (0..4000).map(|_| rng.random()).collect();
    let _ = stream.write_all(&junk).await;
    drop(stream);

    // Still answering, over both transports.
    let ask = Ask::new(DEMO, RecordType::A).ecs("198.51.100.0/26");
    assert_eq!(
        addresses(&udp(server, &ask).await),
        vec![addr_of(&body, "wuxi-1-e1")]
    );
    assert_eq!(
        addresses(&tcp(h.tcp_addrs()[0], &ask).await),
        vec![addr_of(&body, "wuxi-1-e1")]
    );
    h.shutdown().await;
}

#[tokio::test]
async fn several_queries_on_one_tcp_connection() {
    let body = demo_dns();
    let h = serve(1, body.clone()).await;
    let requests: Vec<Vec<u8>> = ["198.51.100.0/26", "198.51.100.64/26", "198.51.100.128/26"]
        .into_iter()
        .enumerate()
        .map(|(i, subnet)| {
            Ask::new(DEMO, RecordType::A)
                .ecs(subnet)
                .message(i as u16)
                .to_vec()
                .unwrap()
        })
        .collect();
    let got = tcp_many(h.tcp_addrs()[0], &requests).await;
    let want = ["wuxi-1-e1", "suqian-1-e1", "taizhou-1-e1"];
    for (i, (m, node)) in got.iter().zip(want).enumerate() {
        assert_eq!(m.metadata.id, i as u16);
        assert_eq!(addresses(m), vec![addr_of(&body, node)]);
    }
    h.shutdown().await;
}

#[tokio::test]
async fn a_new_snapshot_moves_clients_off_a_failed_node() {
    let mut body = demo_dns();
    let server = Arc::new(DnsServer::new());
    let h = start(
        &DnsConfig::on("127.0.0.1:0".parse().unwrap()),
        server.clone(),
    )
    .await
    .unwrap();
    let udp_addr = h.udp_addrs()[0];
    let ask = Ask::new(DEMO, RecordType::A).ecs("198.51.100.0/26");

    // Before any snapshot: REFUSED.
    let m = udp(udp_addr, &ask).await;
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);

    server.apply(&snapshot(1, body.clone())).unwrap();
    assert_eq!(
        addresses(&udp(udp_addr, &ask).await),
        vec![addr_of(&body, "wuxi-1-e1")]
    );

    node_mut(&mut body, "wuxi-1-e1").healthy = false;
    server.apply(&snapshot(2, body.clone())).unwrap();
    let got = addresses(&udp(udp_addr, &ask).await);
    assert_eq!(got.len(), 1);
    assert_ne!(got[0], addr_of(&body, "wuxi-1-e1"));

    node_mut(&mut body, "wuxi-1-e1").healthy = true;
    node_mut(&mut body, "suqian-1-e1").node.drained = true;
    server.apply(&snapshot(3, body.clone())).unwrap();
    assert_eq!(
        addresses(&udp(udp_addr, &ask).await),
        vec![addr_of(&body, "wuxi-1-e1")]
    );

    // Older versions and bad zones are refused and change nothing.
    assert!(server.apply(&snapshot(2, body.clone())).is_err());
    let mut bad = body.clone();
    bad.zone = "not a zone".into();
    assert!(server.apply(&snapshot(4, bad)).is_err());
    assert_eq!(server.version(), 3);

    // Explain: how that client is answered, and why.
    let client = ClientInfo {
        addr: "127.0.0.1".parse().unwrap(),
        ecs: Some(("198.51.100.0".parse().unwrap(), 26)),
    };
    let e = server.explain(DEMO, Family::V4, &client).unwrap();
    assert_eq!(e.line.as_deref(), Some("telecom"));
    assert_eq!(e.region.as_deref(), Some("cn-js-wuxi"));
    assert_eq!(e.rule_text, "client line telecom, same city");
    assert_eq!(e.snapshot_version, 3);
    let suqian = e
        .candidates
        .iter()
        .find(|c| c.node == "suqian-1-e1")
        .unwrap();
    assert_eq!(suqian.verdict, "dropped: drained");
    h.shutdown().await;
}

/// A query for `demo` A with one ECS option of IPv4 `address` bytes and `source` bits,
/// built by hand so the address goes out exactly as given.
fn query_with_ecs(source: u8, address: &[u8]) -> Vec<u8> {
    let mut p = vec![0x51, 0x52, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1];
    for label in DEMO.trim_end_matches('.').split('.') {
        p.push(label.len() as u8);
        p.extend(label.as_bytes());
    }
    p.extend([0, 0, 1, 0, 1]);
    let mut ecs = vec![0, 8];
    ecs.extend(((4 + address.len()) as u16).to_be_bytes());
    ecs.extend([0, 1, source, 0]);
    ecs.extend(address);
    p.extend([0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0]);
    p.extend((ecs.len() as u16).to_be_bytes());
    p.extend(ecs);
    p
}

#[tokio::test]
async fn ecs_address_bits_past_the_source_prefix_are_formerr() {
    // RFC 7871 §6: 198.51.100.1/24 sets bits past /24: FORMERR over UDP and TCP (the
    // fast path leaves it to the hickory path, which refuses it); 198.51.100.0/24 is
    // answered.
    let h = serve(1, demo_dns()).await;
    let bad = query_with_ecs(24, &[198, 51, 100, 1]);
    let good = query_with_ecs(24, &[198, 51, 100]);
    let r = Message::from_vec(&udp_raw(h.udp_addrs()[0], &bad).await.unwrap()).unwrap();
    assert_eq!(r.metadata.id, 0x5152);
    assert_eq!(r.metadata.response_code, ResponseCode::FormErr);
    assert!(r.answers.is_empty());
    let r = tcp_many(h.tcp_addrs()[0], &[bad, good.clone()]).await;
    assert_eq!(r[0].metadata.response_code, ResponseCode::FormErr);
    assert_eq!(r[1].metadata.response_code, ResponseCode::NoError);
    assert!(!addresses(&r[1]).is_empty());
    // A bit past /26 within the last address byte, sent the usual way.
    let m = udp(
        h.udp_addrs()[0],
        &Ask::new(DEMO, RecordType::A).ecs("198.51.100.65/26"),
    )
    .await;
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
    h.shutdown().await;
}
