//! A stable stand-in for the cargo-fuzz targets (`fuzz/`): 200,000 random and mutated
//! packets (deterministic PRNG) through `respond_traced` over the fuzz targets' snapshot.
//! Each must be answered without a panic; every response must parse with hickory-proto,
//! be a response, echo the query's id, fit the UDP limit over UDP, and report the
//! response code it carries.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on unexpected failures

#[path = "../fuzz/fuzz_targets/common.rs"]
mod fuzz_common;

use std::net::IpAddr;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::rdata::opt::EdnsOption;
use hickory_proto::rr::{DNSClass, Name, RecordType};
use lingjing_dns::wire::MAX_UDP_PAYLOAD;
use lingjing_dns::{Transport, respond_traced};
use rand::{Rng, SeedableRng};

fn seed(name: &str, qtype: RecordType, ecs: Option<&str>, edns: bool) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.id = 0x1234;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    if edns || ecs.is_some() {
        let mut e = Edns::new();
        if let Some(ecs) = ecs {
            e.options_mut()
                .insert(EdnsOption::Subnet(ecs.parse().unwrap()));
        }
        m.set_edns(e);
    }
    m.to_vec().unwrap()
}

#[test]
fn two_hundred_thousand_packets_never_panic_and_always_parse() {
    let gslb = fuzz_common::gslb();
    let mut seeds = vec![
        seed(
            "demo.cdn.lingjing.test.",
            RecordType::A,
            Some("198.51.100.0/24"),
            true,
        ),
        seed(
            "DEMO.cdn.lingjing.test.",
            RecordType::AAAA,
            Some("2001:db8:1::/48"),
            true,
        ),
        seed("demo.cdn.lingjing.test.", RecordType::ANY, None, false),
        seed("cdn.lingjing.test.", RecordType::SOA, None, true),
        seed("cdn.lingjing.test.", RecordType::NS, None, false),
        seed(
            "ns1.cdn.lingjing.test.",
            RecordType::A,
            Some("0.0.0.0/0"),
            true,
        ),
        seed("x.demo.cdn.lingjing.test.", RecordType::TXT, None, true),
        seed("example.org.", RecordType::AXFR, None, false),
    ];
    // A CH-class query and an IQUERY.
    let mut ch = Message::query();
    let mut q = Query::query(
        Name::from_ascii("cdn.lingjing.test.").unwrap(),
        RecordType::SOA,
    );
    q.set_query_class(DNSClass::CH);
    ch.add_query(q);
    seeds.push(ch.to_vec().unwrap());
    let mut iq = Message::query();
    iq.metadata.op_code = OpCode::Status;
    seeds.push(iq.to_vec().unwrap());

    let sources: [IpAddr; 2] = [
        "198.51.100.7".parse().unwrap(),
        "2001:db8:1::9".parse().unwrap(),
    ];
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x11_6a_11_6a);
    let (mut answered, mut noerror) = (0u32, 0u32);
    for i in 0..200_000usize {
        let packet: Vec<u8> = if i % 4 == 0 {
            let len = rng.random_range(0..300);
            (0..len).map(|_| rng.random()).collect()
        } else {
            let mut p = seeds[rng.random_range(0..seeds.len())].clone();
            for _ in 0..rng.random_range(1..6) {
                match rng.random_range(0..5) {
                    0 | 1 => {
                        let at = rng.random_range(0..p.len());
                        p[at] = rng.random();
                    }
                    2 => {
                        let at = rng.random_range(0..p.len());
                        p[at] ^= 1 << rng.random_range(0..8);
                    }
                    3 => p.truncate(rng.random_range(1..=p.len())),
                    _ => {
                        let at = rng.random_range(0..=p.len());
                        p.insert(at, rng.random());
                    }
                }
            }
            p
        };
        let src = sources[i % 2];
        let transport = if i % 3 == 0 {
            Transport::Tcp
        } else {
            Transport::Udp
        };
        let (bytes, outcome) = respond_traced(&gslb, &packet, src, transport, i % 5 == 0);
        let Some(r) = bytes else {
            continue;
        };
        answered += 1;
        let m = Message::from_vec(&r)
            .unwrap_or_else(|e| panic!("response to {packet:02x?} does not parse: {e}"));
        assert_eq!(m.metadata.message_type, MessageType::Response);
        assert_eq!(r[..2], packet[..2], "id echoed for {packet:02x?}");
        // By value: 16 reads back as BADSIG, which shares BADVERS's code.
        assert_eq!(
            u16::from(m.metadata.response_code),
            u16::from(outcome.rcode),
            "{packet:02x?}"
        );
        assert_eq!(m.metadata.truncation, outcome.truncated, "{packet:02x?}");
        if transport == Transport::Udp {
            assert!(r.len() <= usize::from(MAX_UDP_PAYLOAD));
        }
        if outcome.rcode == hickory_proto::op::ResponseCode::NoError {
            noerror += 1;
        }
    }
    // The mutations reach past the parser: many answered, some with NOERROR.
    assert!(answered > 100_000, "{answered}");
    assert!(noerror > 2_000, "{noerror}");
}
