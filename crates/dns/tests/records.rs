//! The operator's static records, served by a running server over UDP and TCP: A, AAAA,
//! TXT (long texts split into character strings), MX and CNAME at their names and at
//! the apex beside SOA and NS; NODATA for other types and for the ancestors of static
//! names; NXDOMAIN below them; the steered service names unaffected; CNAMEs chased
//! within the zone (static and steered targets), bounded, cycles cut, outside targets
//! left alone.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on unexpected failures

mod common;

use common::{Ask, DEMO, ZONE, addresses, demo_dns, ecs_of, name, record, serve, tcp, udp};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};
use lingjing_model::DnsSnapshot;
use lingjing_model::record::RecordType as Kind;

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

    // A CNAME answers for every type with itself, followed by its target's records
    // when the target is in the zone (here the steered service name).
    let m = udp(udp_addr, &Ask::new(&name("www"), RecordType::A)).await;
    assert_eq!(m.answers.len(), 2);
    match &m.answers[0].data {
        RData::CNAME(c) => assert_eq!(c.0.to_ascii(), DEMO),
        other => panic!("not a CNAME: {other:?}"),
    }
    assert_eq!(m.answers[1].name.to_ascii(), DEMO);
    assert_eq!(m.answers[1].record_type(), RecordType::A);

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

fn chains() -> DnsSnapshot {
    let mut body = demo_dns();
    body.records = vec![
        record("www4", "www", Kind::A, &["192.0.2.10", "192.0.2.11"]),
        record("www6", "www", Kind::Aaaa, &["2001:db8::10"]),
        record("api", "api", Kind::Cname, &["www"]),
        record("v1", "v1.api", Kind::Cname, &["api"]),
        record("edge", "edge", Kind::Cname, &["demo"]),
        record("gone", "gone", Kind::Cname, &["nothing"]),
        record("apex", "top", Kind::Cname, &["cdn.lingjing.test."]),
        record("ext", "ext", Kind::Cname, &["www.example.com."]),
        record("loop1", "loop1", Kind::Cname, &["loop2"]),
        record("loop2", "loop2", Kind::Cname, &["LOOP1"]),
        record("self", "self", Kind::Cname, &["self"]),
    ];
    // c0 -> c1 -> ... -> c11 -> www: longer than an answer follows.
    for i in 0..12 {
        let target = if i == 11 {
            "www".to_owned()
        } else {
            format!("c{}", i + 1)
        };
        body.records.push(record(
            &format!("c{i}"),
            &format!("c{i}"),
            Kind::Cname,
            &[&target],
        ));
    }
    body
}

/// The answer section as (owner, type, CNAME target or address) text.
fn answer_text(m: &hickory_proto::op::Message) -> Vec<(String, RecordType, String)> {
    m.answers
        .iter()
        .map(|r| {
            let data = match &r.data {
                RData::CNAME(c) => c.0.to_ascii(),
                RData::A(a) => a.0.to_string(),
                RData::AAAA(a) => a.0.to_string(),
                other => format!("{other:?}"),
            };
            (r.name.to_ascii(), r.record_type(), data)
        })
        .collect()
}

fn cname(owner: &str, target: &str) -> (String, RecordType, String) {
    (owner.to_owned(), RecordType::CNAME, target.to_owned())
}

#[tokio::test]
async fn in_zone_cnames_are_chased_into_the_answer() {
    let h = serve(4, chains()).await;
    let udp_addr = h.udp_addrs()[0];
    let tcp_addr = h.tcp_addrs()[0];

    // api -> www: the CNAME, then www's A set, owned by www (RFC 1034 §4.3.2 step 3a),
    // alike over UDP and TCP.
    for m in [
        udp(udp_addr, &Ask::new(&name("API"), RecordType::A)).await,
        tcp(tcp_addr, &Ask::new(&name("API"), RecordType::A)).await,
    ] {
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.metadata.authoritative);
        assert_eq!(
            answer_text(&m),
            vec![
                cname(&name("API"), &name("www")),
                (name("www"), RecordType::A, "192.0.2.10".into()),
                (name("www"), RecordType::A, "192.0.2.11".into()),
            ]
        );
        assert!(m.authorities.is_empty());
    }
    // Two links: v1.api -> api -> www, for AAAA.
    let m = udp(udp_addr, &Ask::new(&name("v1.api"), RecordType::AAAA)).await;
    assert_eq!(
        answer_text(&m),
        vec![
            cname(&name("v1.api"), &name("api")),
            cname(&name("api"), &name("www")),
            (name("www"), RecordType::AAAA, "2001:db8::10".into()),
        ]
    );

    // A type the target lacks: the chain, then NODATA (the SOA in the authority).
    let m = udp(udp_addr, &Ask::new(&name("api"), RecordType::MX)).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(answer_text(&m), vec![cname(&name("api"), &name("www"))]);
    assert_eq!(m.authorities[0].record_type(), RecordType::SOA);
    // A target that does not exist: NXDOMAIN, the last name's code (RFC 6604), with
    // the CNAME and the SOA.
    let m = udp(udp_addr, &Ask::new(&name("gone"), RecordType::A)).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(
        answer_text(&m),
        vec![cname(&name("gone"), &name("nothing"))]
    );
    assert_eq!(m.authorities[0].record_type(), RecordType::SOA);

    // A CNAME or ANY question is answered by the CNAME alone.
    for qtype in [RecordType::CNAME, RecordType::ANY] {
        let m = udp(udp_addr, &Ask::new(&name("api"), qtype)).await;
        assert_eq!(answer_text(&m), vec![cname(&name("api"), &name("www"))]);
    }
    // A target outside the zone is the resolver's to chase.
    let m = udp(udp_addr, &Ask::new(&name("ext"), RecordType::A)).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(
        answer_text(&m),
        vec![cname(&name("ext"), "www.example.com.")]
    );
    assert!(m.authorities.is_empty());
    // The apex as a target: its SOA.
    let m = udp(udp_addr, &Ask::new(&name("top"), RecordType::SOA)).await;
    assert_eq!(m.answers.len(), 2);
    assert_eq!(m.answers[1].name.to_ascii(), ZONE);
    assert_eq!(m.answers[1].record_type(), RecordType::SOA);
    h.shutdown().await;
}

#[tokio::test]
async fn a_cname_to_a_service_name_is_steered_like_the_name_itself() {
    let h = serve(5, chains()).await;
    let udp_addr = h.udp_addrs()[0];
    for subnet in ["198.51.100.0/26", "203.0.113.64/26"] {
        let direct = udp(udp_addr, &Ask::new(DEMO, RecordType::A).ecs(subnet)).await;
        let aliased = udp(
            udp_addr,
            &Ask::new(&name("edge"), RecordType::A).ecs(subnet),
        )
        .await;
        assert_eq!(aliased.metadata.response_code, ResponseCode::NoError);
        assert_eq!(aliased.answers[0].record_type(), RecordType::CNAME);
        assert!(
            aliased.answers[1..]
                .iter()
                .all(|r| r.name.to_ascii() == DEMO)
        );
        assert!(!addresses(&direct).is_empty());
        assert_eq!(addresses(&aliased), addresses(&direct), "{subnet}");
        // The scope is the steered answer's, as for the service name.
        assert_eq!(
            ecs_of(&aliased).map(|e| e.scope_prefix()),
            ecs_of(&direct).map(|e| e.scope_prefix())
        );
    }
    h.shutdown().await;
}

#[tokio::test]
async fn cname_chains_are_bounded_and_cycles_cut() {
    let h = serve(6, chains()).await;
    let udp_addr = h.udp_addrs()[0];

    // loop1 -> loop2 -> loop1: each link once, then stop.
    let m = udp(udp_addr, &Ask::new(&name("loop1"), RecordType::A)).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(
        answer_text(&m),
        vec![
            cname(&name("loop1"), &name("loop2")),
            cname(&name("loop2"), &name("loop1")),
        ]
    );
    let m = udp(udp_addr, &Ask::new(&name("self"), RecordType::AAAA)).await;
    assert_eq!(answer_text(&m), vec![cname(&name("self"), &name("self"))]);

    // Twelve links to www: the answer holds the first eight CNAMEs, in order, and no
    // address (the resolver follows the rest).
    let m = tcp(h.tcp_addrs()[0], &Ask::new(&name("c0"), RecordType::A)).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    let expected: Vec<_> = (0..8)
        .map(|i| cname(&name(&format!("c{i}")), &name(&format!("c{}", i + 1))))
        .collect();
    assert_eq!(answer_text(&m), expected);
    // From c4, eight links reach www: the chain, then its addresses.
    let m = udp(udp_addr, &Ask::new(&name("c4"), RecordType::A)).await;
    assert_eq!(m.answers.len(), 8 + 2);
    assert_eq!(addresses(&m).len(), 2);
    h.shutdown().await;
}
