//! The operator's static records, served by a running server over UDP and TCP: A, AAAA,
//! TXT (long texts split into character strings), MX and CNAME at their names and at
//! the apex beside SOA and NS; NODATA for other types and for the ancestors of static
//! names; NXDOMAIN below them; the steered service names unaffected.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on unexpected failures

mod common;

use common::{Ask, DEMO, ZONE, addresses, demo_dns, serve, tcp, udp};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};
use lingjing_model::record::RecordType as Kind;
use lingjing_model::{DnsRecord, DnsSnapshot};

fn record(id: &str, name: &str, rtype: Kind, values: &[&str]) -> DnsRecord {
    DnsRecord {
        id: id.into(),
        name: name.into(),
        rtype,
        ttl: 120,
        values: values.iter().map(|v| (*v).to_owned()).collect(),
    }
}

fn with_records() -> DnsSnapshot {
    let mut body = demo_dns();
    let long_txt = "x".repeat(600);
    body.records = vec![
        record("api4", "api", Kind::A, &["192.0.2.10", "192.0.2.11"]),
        record("api6", "API", Kind::Aaaa, &["2001:db8::10"]),
        record("mx", "@", Kind::Mx, &["10 mail.example.com."]),
        record("spf", "@", Kind::Txt, &["v=spf1 -all"]),
        record("www", "www", Kind::Cname, &["demo"]),
        record("acme", "_acme-challenge.deep.api", Kind::Txt, &[&long_txt]),
        record("empty", "empty", Kind::Txt, &[""]),
        // A record clashing with the service name `demo` is not served.
        record("clash", "demo", Kind::A, &["192.0.2.99"]),
    ];
    body
}

fn name(n: &str) -> String {
    format!("{n}.{ZONE}")
}

#[tokio::test]
async fn static_records_are_served_beside_the_steered_names() {
    let h = serve(3, with_records()).await;
    let udp_addr = h.udp_addrs()[0];

    let m = udp(udp_addr, &Ask::new(&name("Api"), RecordType::A)).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.metadata.authoritative);
    let mut got = addresses(&m);
    got.sort();
    assert_eq!(
        got,
        vec![
            "192.0.2.10".parse::<std::net::IpAddr>().unwrap(),
            "192.0.2.11".parse().unwrap()
        ]
    );
    assert_eq!(m.answers[0].ttl, 120);
    assert_eq!(m.answers[0].name.to_ascii(), name("Api"), "case echoed");
    let m = udp(udp_addr, &Ask::new(&name("api"), RecordType::AAAA)).await;
    assert_eq!(
        addresses(&m),
        vec!["2001:db8::10".parse::<std::net::IpAddr>().unwrap()]
    );

    // Another type at a static name: NODATA with the SOA.
    let m = udp(udp_addr, &Ask::new(&name("api"), RecordType::MX)).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty());
    assert_eq!(m.authorities[0].record_type(), RecordType::SOA);

    // The apex keeps SOA and NS and adds the operator's MX and TXT.
    let m = udp(udp_addr, &Ask::new(ZONE, RecordType::MX)).await;
    match &m.answers[0].data {
        RData::MX(mx) => {
            assert_eq!(mx.preference, 10);
            assert_eq!(mx.exchange.to_ascii(), "mail.example.com.");
        }
        other => panic!("not an MX: {other:?}"),
    }
    let m = udp(udp_addr, &Ask::new(ZONE, RecordType::SOA)).await;
    assert_eq!(m.answers[0].record_type(), RecordType::SOA);
    let m = udp(udp_addr, &Ask::new(ZONE, RecordType::TXT)).await;
    assert_eq!(m.answers.len(), 1);

    // A CNAME answers for every type with itself.
    let m = udp(udp_addr, &Ask::new(&name("www"), RecordType::A)).await;
    assert_eq!(m.answers.len(), 1);
    match &m.answers[0].data {
        RData::CNAME(c) => assert_eq!(c.0.to_ascii(), DEMO),
        other => panic!("not a CNAME: {other:?}"),
    }

    // A long TXT goes as several character strings, over TCP (it does not fit 512).
    let acme = name("_acme-challenge.deep.api");
    let m = udp(udp_addr, &Ask::new(&acme, RecordType::TXT)).await;
    assert!(
        m.metadata.truncation,
        "600 bytes do not fit a 512-byte answer"
    );
    let m = tcp(h.tcp_addrs()[0], &Ask::new(&acme, RecordType::TXT)).await;
    match &m.answers[0].data {
        RData::TXT(t) => {
            let parts: Vec<usize> = t.txt_data.iter().map(|p| p.len()).collect();
            assert_eq!(parts, vec![255, 255, 90]);
        }
        other => panic!("not a TXT: {other:?}"),
    }

    // An empty text is one empty character string (RDATA may not be empty).
    let m = udp(udp_addr, &Ask::new(&name("empty"), RecordType::TXT)).await;
    match &m.answers[0].data {
        RData::TXT(t) => assert_eq!(t.txt_data.len(), 1),
        other => panic!("not a TXT: {other:?}"),
    }

    // `deep.api` exists only as an ancestor: NODATA; below a static name: NXDOMAIN.
    let m = udp(udp_addr, &Ask::new(&name("deep.api"), RecordType::A)).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty());
    let m = udp(udp_addr, &Ask::new(&name("nothing.api"), RecordType::A)).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    let m = udp(udp_addr, &Ask::new(&name("nothing"), RecordType::A)).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);

    // The service name is steered as before; the clashing record is not served.
    let m = udp(
        udp_addr,
        &Ask::new(DEMO, RecordType::A).ecs("198.51.100.0/26"),
    )
    .await;
    let got = addresses(&m);
    assert_eq!(got.len(), 1);
    assert_ne!(got[0], "192.0.2.99".parse::<std::net::IpAddr>().unwrap());
    h.shutdown().await;
}
