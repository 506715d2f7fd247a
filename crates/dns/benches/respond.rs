//! A micro benchmark of answering one query, without sockets: the fast path
//! (`respond`) against the hickory path (`respond_traced` with `detail`), and the full
//! decision alone (`Gslb::answer_labels`, what the hickory path steers with), for a
//! plain A query and one with ECS, over the fuzz targets' snapshot; and what response
//! rate limiting adds to a UDP answer within the rate (`Rrl::allow`, over 4,096 client
//! networks). No criterion: a fixed number of rounds, the best of a few runs, in ns per
//! query.
//!
//!     cargo bench -p lingjing-dns --bench respond [-- FILTER]   # e.g. `-- fast`

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark may panic on failures

#[path = "../fuzz/fuzz_targets/common.rs"]
mod fuzz_common;

use std::hint::black_box;
use std::net::IpAddr;
use std::time::Instant;

use lingjing_dns::rrl::{Clock, Rrl};
use lingjing_dns::{Gslb, RrlConfig, Transport, respond, respond_traced};

const ROUNDS: u32 = 300_000;

/// `demo.cdn.lingjing.test. A`, RD, with an OPT record carrying `ecs` when given.
fn query(ecs: Option<&[u8]>) -> Vec<u8> {
    let mut p = vec![
        0x12,
        0x34,
        0x01,
        0x00,
        0,
        1,
        0,
        0,
        0,
        0,
        0,
        u8::from(ecs.is_some()),
    ];
    for label in ["demo", "cdn", "lingjing", "test"] {
        p.push(label.len() as u8);
        p.extend(label.as_bytes());
    }
    p.extend([0, 0, 1, 0, 1]);
    if let Some(ecs) = ecs {
        p.extend([0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0]);
        p.extend(((ecs.len() + 4) as u16).to_be_bytes());
        p.extend([0, 8]);
        p.extend((ecs.len() as u16).to_be_bytes());
        p.extend(ecs);
    }
    p
}

fn time(label: &str, mut f: impl FnMut()) {
    // cargo passes `--bench`; the first other argument filters by label.
    if let Some(filter) = std::env::args().skip(1).find(|a| !a.starts_with("--"))
        && !label.contains(&filter)
    {
        return;
    }
    let mut best = f64::MAX;
    for _ in 0..5 {
        let start = Instant::now();
        for _ in 0..ROUNDS {
            f();
        }
        best = best.min(start.elapsed().as_nanos() as f64 / f64::from(ROUNDS));
    }
    println!("{label:<28} {best:>8.0} ns/query");
}

fn main() {
    let gslb: Gslb = fuzz_common::gslb();
    let src: IpAddr = "127.0.0.1".parse().unwrap();
    let plain = query(None);
    let ecs = query(Some(&[0, 1, 26, 0, 203, 0, 113, 64]));
    let labels: [&[u8]; 4] = [b"demo", b"cdn", b"lingjing", b"test"];
    for (name, ecs) in [
        ("plain", None),
        ("ecs", Some(("203.0.113.64".parse().unwrap(), 26))),
    ] {
        let client = lingjing_dns::ClientInfo { addr: src, ecs };
        time(&format!("{name}: answer_labels only"), || {
            black_box(gslb.answer_labels(
                black_box(&labels),
                hickory_proto::rr::RecordType::A,
                &client,
                false,
            ));
        });
    }
    for (name, q) in [("plain", &plain), ("ecs", &ecs)] {
        time(&format!("{name}: fast path"), || {
            black_box(respond(&gslb, black_box(q), src, Transport::Udp));
        });
        time(&format!("{name}: hickory path"), || {
            black_box(respond_traced(
                &gslb,
                black_box(q),
                src,
                Transport::Udp,
                true,
            ));
        });
    }
    // A rate no client reaches here: every check passes, as for most answers.
    let config = RrlConfig {
        responses_per_second: 1_000_000,
        burst: 1_000_000,
        ..RrlConfig::default()
    };
    let rrl = Rrl::new(&config, Clock::monotonic()).unwrap();
    let now = rrl.now();
    let mut i = 0u32;
    time("rrl: allow, within the rate", || {
        i = i.wrapping_add(1);
        let client = IpAddr::from(((i & 4095) << 8).to_be_bytes());
        assert!(rrl.allow(black_box(client), now));
    });
}
