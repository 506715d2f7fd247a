//! The fast path against the hickory path: many random, structured and mutated queries
//! through `respond` (fast path first) and `respond_traced` with `detail` (always the
//! hickory path), over the fuzz targets' snapshot and the demo topology, over UDP and
//! TCP, from IPv4 and IPv6 sources. The responses must be the same bytes and the
//! outcomes (type, response code, TC, ECS, line, sites) the same.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on unexpected failures

mod common;
#[path = "../fuzz/fuzz_targets/common.rs"]
mod fuzz_common;

use std::net::IpAddr;

use lingjing_dns::{Gslb, Outcome, Transport, respond, respond_traced};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Names asked: the zone, the name server, the service, names below them, the
/// hostmaster and name-server names the SOA uses, outside names and the root.
const NAMES: &[&str] = &[
    "cdn.lingjing.test",
    "ns1.cdn.lingjing.test",
    "demo.cdn.lingjing.test",
    "nope.cdn.lingjing.test",
    "x.demo.cdn.lingjing.test",
    "hostmaster.cdn.lingjing.test",
    "a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q.cdn.lingjing.test",
    "lingjing.test",
    "example.org",
    "test",
    "",
];

const QTYPES: &[u16] = &[1, 28, 255, 6, 2, 16, 15, 5, 33, 65, 41, 251, 252, 0, 99];

/// ECS addresses: demo and fuzz prefixes (so lines and scopes vary) and others.
const ECS_V4: &[[u8; 4]] = &[
    [198, 51, 100, 64],
    [198, 51, 100, 1],
    [203, 0, 113, 64],
    [203, 0, 113, 200],
    [192, 0, 2, 130],
    [10, 1, 2, 3],
    [0, 0, 0, 0],
];
const ECS_V6: &[[u16; 8]] = &[
    [0x2001, 0xdb8, 1, 0, 0, 0, 0, 1],
    [0x2001, 0xdb8, 3, 2, 0, 0, 0, 0],
    [0xfd00, 0, 0, 0, 0, 0, 0, 0],
];

/// The question name in wire form, each letter in random case.
fn name(rng: &mut StdRng, text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for label in text.split('.').filter(|l| !l.is_empty()) {
        out.push(label.len() as u8);
        for b in label.bytes() {
            out.push(if rng.random_bool(0.3) {
                b.to_ascii_uppercase()
            } else {
                b
            });
        }
    }
    out.push(0);
    out
}

/// An ECS option's data: mostly valid, sometimes with host bits set, a wrong length,
/// an unknown family or a nonzero scope.
fn ecs_data(rng: &mut StdRng) -> Vec<u8> {
    let v6 = rng.random_bool(0.3);
    let (family, bits, addr): (u16, u8, Vec<u8>) = if v6 {
        let a = ECS_V6[rng.random_range(0..ECS_V6.len())];
        (2, 128, a.iter().flat_map(|x| x.to_be_bytes()).collect())
    } else {
        (1, 32, ECS_V4[rng.random_range(0..ECS_V4.len())].to_vec())
    };
    let source: u8 = match rng.random_range(0..6) {
        0 => 0,
        1 => bits,
        2 => rng.random(),
        _ => rng.random_range(0..=bits),
    };
    let n = usize::from(source.div_ceil(8)).min(addr.len());
    let mut address = addr[..n].to_vec();
    // Clear the bits past the source prefix, mostly.
    if rng.random_bool(0.9) && !source.is_multiple_of(8) && n > 0 {
        address[n - 1] &= 0xffu8 << (8 - source % 8);
    }
    match rng.random_range(0..20) {
        0 => address.push(0),
        1 => {
            address.pop();
        }
        _ => {}
    }
    let family = if rng.random_range(0..30) == 0 {
        rng.random_range(0..4)
    } else {
        family
    };
    let scope = if rng.random_range(0..10) == 0 {
        rng.random()
    } else {
        0
    };
    let mut data = family.to_be_bytes().to_vec();
    data.extend([source, scope]);
    data.extend(address);
    data
}

fn option(code: u16, data: &[u8]) -> Vec<u8> {
    let mut o = code.to_be_bytes().to_vec();
    o.extend((data.len() as u16).to_be_bytes());
    o.extend(data);
    o
}

/// A random query of the kind the fast path takes, or nearly.
fn query(rng: &mut StdRng) -> Vec<u8> {
    let mut p: Vec<u8> = vec![rng.random(), rng.random()];
    p.push(match rng.random_range(0..10) {
        0 => rng.random(),
        1 => 0x00,
        _ => 0x01, // RD
    });
    p.push(match rng.random_range(0..10) {
        0 => rng.random(),
        1 => 0x20, // AD, as dig sends
        2 => 0x10, // CD
        _ => 0x00,
    });
    let edns = rng.random_bool(0.7);
    p.extend([0, 1, 0, 0, 0, 0, 0, u8::from(edns)]);
    if rng.random_range(0..30) == 0 {
        let at = rng.random_range(4..12);
        p[at] = rng.random_range(0..3);
    }
    // The service's name and A/AAAA half the time: the answers steering computes.
    let text = if rng.random_bool(0.5) {
        "demo.cdn.lingjing.test"
    } else {
        NAMES[rng.random_range(0..NAMES.len())]
    };
    p.extend(name(rng, text));
    let qtype = if rng.random_range(0..20) == 0 {
        rng.random()
    } else if rng.random_bool(0.5) {
        [1, 28][rng.random_range(0..2)]
    } else {
        QTYPES[rng.random_range(0..QTYPES.len())]
    };
    p.extend(qtype.to_be_bytes());
    let class: u16 = if rng.random_range(0..20) == 0 {
        rng.random_range(0..5)
    } else {
        1
    };
    p.extend(class.to_be_bytes());
    if edns {
        let mut options = Vec::new();
        for _ in 0..rng.random_range(0..3) {
            options.extend(match rng.random_range(0..10) {
                0 => option(10, &rng.random::<[u8; 8]>()), // COOKIE
                1 => option(12, &[0; 5]),                  // padding
                2 => option(3, &[]),                       // NSID
                3 => option(rng.random(), &[1, 2, 3]),
                _ => option(8, &ecs_data(rng)),
            });
        }
        p.push(0);
        p.extend(41u16.to_be_bytes());
        let payload: u16 = match rng.random_range(0..6) {
            0 => rng.random(),
            1 => 512,
            2 => 4096,
            3 => rng.random_range(0..600),
            _ => 1232,
        };
        p.extend(payload.to_be_bytes());
        let version = if rng.random_range(0..20) == 0 { 1 } else { 0 };
        let ext_rcode = if rng.random_range(0..20) == 0 {
            rng.random()
        } else {
            0
        };
        let flags: u16 = if rng.random_bool(0.3) { 0x8000 } else { 0 };
        p.extend([ext_rcode, version]);
        p.extend(flags.to_be_bytes());
        p.extend((options.len() as u16).to_be_bytes());
        p.extend(options);
    }
    p
}

/// A few random byte flips, cuts and insertions.
fn mutate(rng: &mut StdRng, p: &mut Vec<u8>) {
    for _ in 0..rng.random_range(1..4) {
        if p.is_empty() {
            return;
        }
        match rng.random_range(0..4) {
            0 => {
                let at = rng.random_range(0..p.len());
                p[at] = rng.random();
            }
            1 => {
                let at = rng.random_range(0..p.len());
                p[at] ^= 1 << rng.random_range(0..8);
            }
            2 => p.truncate(rng.random_range(0..p.len())),
            _ => {
                let at = rng.random_range(0..=p.len());
                p.insert(at, rng.random());
            }
        }
    }
}

/// The outcome without the fields only the query log's detail fills.
fn comparable(o: &Outcome) -> Outcome {
    Outcome {
        qname: None,
        answer: Vec::new(),
        ..o.clone()
    }
}

fn same_as_hickory(gslb: &Gslb, packet: &[u8], src: IpAddr, transport: Transport) {
    let (fast, fast_outcome) = respond_traced(gslb, packet, src, transport, false);
    let (slow, slow_outcome) = respond_traced(gslb, packet, src, transport, true);
    assert_eq!(
        fast, slow,
        "{transport:?} from {src}, query {packet:02x?}: fast != hickory"
    );
    assert_eq!(
        comparable(&fast_outcome),
        comparable(&slow_outcome),
        "{transport:?} from {src}, query {packet:02x?}"
    );
    assert_eq!(respond(gslb, packet, src, transport), fast);
}

fn differential(gslb: &Gslb, seed: u64, count: usize) {
    let sources: [IpAddr; 4] = [
        "127.0.0.1".parse().unwrap(),
        "198.51.100.7".parse().unwrap(),
        "203.0.113.9".parse().unwrap(),
        "2001:db8:1::9".parse().unwrap(),
    ];
    let mut rng = StdRng::seed_from_u64(seed);
    for i in 0..count {
        let mut p = query(&mut rng);
        if i % 3 == 0 {
            mutate(&mut rng, &mut p);
        }
        let src = sources[i % sources.len()];
        for transport in [Transport::Udp, Transport::Tcp] {
            same_as_hickory(gslb, &p, src, transport);
        }
    }
}

#[test]
fn fast_path_matches_hickory_on_the_fuzz_snapshot() {
    differential(&fuzz_common::gslb(), 0xfa57, 60_000);
}

#[test]
fn fast_path_matches_hickory_on_the_demo_topology() {
    let gslb = Gslb::build(&common::demo_dns(), 42).unwrap();
    differential(&gslb, 0xdead_beef, 60_000);
}

#[test]
fn every_question_type_matches() {
    let gslb = fuzz_common::gslb();
    let src: IpAddr = "198.51.100.7".parse().unwrap();
    let mut rng = StdRng::seed_from_u64(7);
    for qtype in 0..=u16::MAX {
        for text in [
            "demo.cdn.lingjing.test",
            "cdn.lingjing.test",
            "x.cdn.lingjing.test",
        ] {
            let mut p = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
            p.extend(name(&mut rng, text));
            p.extend(qtype.to_be_bytes());
            p.extend(1u16.to_be_bytes());
            same_as_hickory(&gslb, &p, src, Transport::Udp);
        }
    }
}

#[test]
fn large_answers_are_truncated_alike() {
    // Many nodes answered at once: over 512 bytes without EDNS, cut by the slow path.
    let mut body = common::demo_dns();
    for s in &mut body.services {
        s.steering.answer_count = 255;
    }
    let extra: Vec<_> = (0..80u8)
        .map(|i| {
            let mut n = body.nodes[0].clone();
            n.node.id = format!("extra-{i}");
            n.addresses = vec![IpAddr::from([127, 2, 0, i])];
            n
        })
        .collect();
    body.nodes.extend(extra);
    let gslb = Gslb::build(&body, 3).unwrap();
    differential(&gslb, 99, 5_000);
}

#[test]
fn weights_capacities_loads_and_fallbacks_match() {
    // The demo topology with the steering knobs turned: two answers, site weights,
    // node capacities and loads (some over the policy's share), a fallback line, a
    // drained and an unhealthy node; and a second service on a subset of sites.
    let mut body = common::demo_dns();
    let sites: Vec<String> = body.sites.iter().map(|s| s.id.clone()).collect();
    let lines: Vec<String> = body.lines.iter().map(|l| l.id.clone()).collect();
    for (i, n) in body.nodes.iter_mut().enumerate() {
        n.node.capacity_mbps = [0, 1000, 400][i % 3];
        n.load_percent = [0, 95, 10, 100][i % 4];
        n.node.drained = i % 7 == 3;
        n.healthy = i % 5 != 2;
    }
    let mut second = body.services[0].clone();
    second.id = "second".into();
    second.hostnames = vec!["www.second.example".into()];
    second.steering.sites = sites.iter().take(2).cloned().collect();
    second.steering.fallback_lines = lines.iter().rev().take(1).cloned().collect();
    second.steering.answer_count = 3;
    second.steering.max_load_percent = 90;
    for s in &mut body.services {
        s.steering.answer_count = s.steering.answer_count.max(2);
        s.steering.site_weights = sites
            .iter()
            .enumerate()
            .map(|(i, id)| (id.clone(), [1, 3, 0, 7][i % 4]))
            .collect();
        s.steering.max_load_percent = 80;
    }
    body.services.push(second);
    let gslb = Gslb::build(&body, 9).unwrap();
    differential(&gslb, 0x5eed, 40_000);
    // The second service's name, asked directly with ECS from every demo prefix.
    let src: IpAddr = "127.0.0.1".parse().unwrap();
    let mut rng = StdRng::seed_from_u64(3);
    for _ in 0..20_000 {
        let mut p = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1];
        p.extend(name(&mut rng, "second.cdn.lingjing.test"));
        p.extend([0, if rng.random_bool(0.5) { 1 } else { 28 }, 0, 1]);
        let ecs = ecs_data(&mut rng);
        let opt = option(8, &ecs);
        p.extend([0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0]);
        p.extend((opt.len() as u16).to_be_bytes());
        p.extend(opt);
        same_as_hickory(&gslb, &p, src, Transport::Udp);
    }
}

#[test]
fn cname_chains_match() {
    // Static CNAMEs chased in the zone (to static names, the service, the apex, a
    // missing name, a cycle, outside), asked for several types with and without ECS.
    use lingjing_model::DnsRecord;
    use lingjing_model::record::RecordType as Kind;
    let mut body = common::demo_dns();
    let rec = |name: &str, rtype: Kind, value: &str| DnsRecord {
        id: name.into(),
        name: name.into(),
        rtype,
        ttl: 60,
        values: vec![value.into()],
    };
    body.records = vec![
        rec("www", Kind::A, "192.0.2.10"),
        rec("api", Kind::Cname, "www"),
        rec("v1.api", Kind::Cname, "api"),
        rec("edge", Kind::Cname, "demo"),
        rec("top", Kind::Cname, "cdn.lingjing.test."),
        rec("gone", Kind::Cname, "nothing"),
        rec("ext", Kind::Cname, "www.example.com."),
        rec("loop1", Kind::Cname, "loop2"),
        rec("loop2", Kind::Cname, "loop1"),
    ];
    let gslb = Gslb::build(&body, 5).unwrap();
    let src: IpAddr = "198.51.100.7".parse().unwrap();
    let mut rng = StdRng::seed_from_u64(11);
    for text in ["api", "v1.api", "edge", "top", "gone", "ext", "loop1"] {
        let qname = format!("{text}.cdn.lingjing.test");
        for qtype in [1u16, 28, 5, 6, 2, 15, 255] {
            for ecs in [false, true] {
                let mut p = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, u8::from(ecs)];
                p.extend(name(&mut rng, &qname));
                p.extend(qtype.to_be_bytes());
                p.extend(1u16.to_be_bytes());
                if ecs {
                    let opt = option(8, &[0, 1, 24, 0, 198, 51, 100]);
                    p.extend([0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0]);
                    p.extend((opt.len() as u16).to_be_bytes());
                    p.extend(opt);
                }
                for transport in [Transport::Udp, Transport::Tcp] {
                    same_as_hickory(&gslb, &p, src, transport);
                }
            }
        }
    }
}
