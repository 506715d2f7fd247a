//! Benchmarks of the client classifier (`lingjing_model::classify`): lookups of IPv4 and
//! IPv6 client addresses in a table of 120,000 IPv4 and 20,000 IPv6 line prefixes, and
//! the time to build that table.
//!
//! Run with `cargo bench -p lingjing-model --bench classify`; the figures are kept in
//! `bench/README.md`.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use lingjing_model::LinePrefix;
use lingjing_model::classify::Classifier;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const V4_PREFIXES: usize = 120_000;
const V6_PREFIXES: usize = 20_000;
const LINES: [&str; 4] = ["telecom", "unicom", "mobile", "edu"];
const REGIONS: usize = 30;
/// Addresses looked up per iteration.
const BATCH: usize = 1024;

/// An IPv4 prefix length with roughly the mix of a carrier routing table: mostly /24s
/// and /22-/23s, some /16-/21, a few /8-/15.
fn v4_len(rng: &mut StdRng) -> u8 {
    match rng.random_range(0..100) {
        0..55 => 24,
        55..75 => rng.random_range(22..=23),
        75..95 => rng.random_range(16..=21),
        _ => rng.random_range(8..=15),
    }
}

/// An IPv6 prefix length: mostly /32 and /48 allocations, some in between, a few short.
fn v6_len(rng: &mut StdRng) -> u8 {
    match rng.random_range(0..100) {
        0..30 => 32,
        30..70 => 48,
        70..95 => rng.random_range(29..=44),
        _ => rng.random_range(19..=28),
    }
}

fn line_prefixes(rng: &mut StdRng) -> Vec<LinePrefix> {
    let regions: Vec<String> = (0..REGIONS).map(|i| format!("cn-r{i:02}")).collect();
    let mut out = Vec::with_capacity(V4_PREFIXES + V6_PREFIXES);
    let mut push = |rng: &mut StdRng, cidr: IpNet| {
        let line = LINES[rng.random_range(0..LINES.len())].to_owned();
        // One prefix in ten names no region.
        let region =
            (rng.random_range(0..10) != 0).then(|| regions[rng.random_range(0..REGIONS)].clone());
        out.push(LinePrefix { cidr, line, region });
    };
    for _ in 0..V4_PREFIXES {
        let len = v4_len(rng);
        let net = Ipv4Net::new(Ipv4Addr::from(rng.random::<u32>()), len).expect("v4 length <= 32");
        push(rng, IpNet::V4(net.trunc()));
    }
    for _ in 0..V6_PREFIXES {
        let len = v6_len(rng);
        // Global unicast, 2000::/3.
        let addr = (rng.random::<u128>() >> 3) | (1u128 << 125);
        let net = Ipv6Net::new(Ipv6Addr::from(addr), len).expect("v6 length <= 128");
        push(rng, IpNet::V6(net.trunc()));
    }
    out
}

/// `BATCH` client addresses of one family, each inside a randomly chosen source prefix
/// (clients are mostly in the table), so lookups land all over it.
fn addresses(rng: &mut StdRng, prefixes: &[LinePrefix], v4: bool) -> Vec<IpAddr> {
    let family: Vec<IpNet> = prefixes
        .iter()
        .map(|p| p.cidr)
        .filter(|n| matches!(n, IpNet::V4(_)) == v4)
        .collect();
    (0..BATCH)
        .map(|_| match family[rng.random_range(0..family.len())] {
            IpNet::V4(n) => {
                let host = rng.random::<u32>() & u32::from(n.hostmask());
                IpAddr::V4(Ipv4Addr::from(u32::from(n.network()) | host))
            }
            IpNet::V6(n) => {
                let host = rng.random::<u128>() & u128::from(n.hostmask());
                IpAddr::V6(Ipv6Addr::from(u128::from(n.network()) | host))
            }
        })
        .collect()
}

fn bench_classify(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(0x11a9_0711);
    let prefixes = line_prefixes(&mut rng);
    let classifier = Classifier::from_prefixes(&prefixes);
    let v4 = addresses(&mut rng, &prefixes, true);
    let v6 = addresses(&mut rng, &prefixes, false);
    eprintln!(
        "classifier: {} prefixes, {} lines, {} regions, {} ranges",
        classifier.len(),
        classifier.lines().len(),
        classifier.regions().len(),
        classifier.range_count(),
    );

    let mut group = c.benchmark_group("classify");
    group.throughput(Throughput::Elements(BATCH as u64));
    for (name, addrs) in [("lookup_v4", &v4), ("lookup_v6", &v6)] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut found = 0usize;
                for &ip in addrs {
                    if let Some(c) = classifier.classify(black_box(ip)) {
                        found += c.line.len() + usize::from(c.region.is_some());
                    }
                }
                black_box(found)
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("classify_build");
    group.sample_size(10);
    group.throughput(Throughput::Elements(prefixes.len() as u64));
    group.bench_function("from_prefixes_140k", |b| {
        b.iter_with_large_drop(|| Classifier::from_prefixes(black_box(&prefixes)))
    });
    group.finish();
}

criterion_group!(benches, bench_classify);
criterion_main!(benches);
