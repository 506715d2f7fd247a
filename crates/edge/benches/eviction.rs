//! Eviction policies of the edge cache on skewed workloads: the hit ratio of the disk
//! tier's S3-FIFO (`lingjing_edge::cache::eviction::S3Fifo`) against plain LRU and against
//! moka's W-TinyLFU (the memory tier), then criterion timings of the policies and of the
//! disk tier's reads and writes.
//!
//! The workloads are fixed-seed request traces over 100,000 equal-size objects, keys drawn
//! from a Zipf distribution (s = 0.9, and s = 0.7), alone and with 30% of the requests for
//! one-hit wonders (keys never requested again: the long tail of a CDN, or a crawler).
//! Each policy starts empty; a miss inserts the object. The hit ratios are printed first.
//!
//! Run with `cargo bench -p lingjing-edge --bench eviction`; the figures are kept in
//! `bench/README.md`.

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group};
use http::{HeaderMap, HeaderValue, StatusCode};
use lingjing_edge::cache::disk::{DiskOptions, DiskStore};
use lingjing_edge::cache::eviction::S3Fifo;
use lingjing_edge::cache::policy::Freshness;
use lingjing_edge::cache::store::{CachedResponse, Entry};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const KEYS: u64 = 100_000;
const REQUESTS: usize = 1_000_000;

/// Draws ranks 0..n with probability proportional to 1 / (rank + 1)^s.
struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    fn new(n: u64, s: f64) -> Zipf {
        let mut total = 0.0;
        let cdf = (0..n)
            .map(|i| {
                total += 1.0 / ((i + 1) as f64).powf(s);
                total
            })
            .collect();
        Zipf { cdf }
    }

    fn sample(&self, rng: &mut StdRng) -> u64 {
        let total = self.cdf.last().copied().unwrap_or(0.0);
        let u = rng.random::<f64>() * total;
        self.cdf.partition_point(|&c| c < u) as u64
    }
}

/// A trace of `REQUESTS` keys: Zipf(s) over `KEYS`, with `one_hit` of the requests
/// replaced by keys that never repeat.
fn trace(s: f64, one_hit: f64, seed: u64) -> Vec<u64> {
    let zipf = Zipf::new(KEYS, s);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut unique = 1u64 << 40;
    (0..REQUESTS)
        .map(|_| {
            if rng.random::<f64>() < one_hit {
                unique += 1;
                unique
            } else {
                // Scatter the ranks so that key order says nothing about popularity.
                zipf.sample(&mut rng).wrapping_mul(0x9E37_79B9_7F4A_7C15)
            }
        })
        .collect()
}

/// Plain LRU: a hash map into a doubly linked list kept in a vector.
struct Lru {
    capacity: usize,
    map: HashMap<u64, usize>,
    nodes: Vec<Node>,
    head: usize,
    tail: usize,
}

struct Node {
    key: u64,
    prev: usize,
    next: usize,
}

const NIL: usize = usize::MAX;

impl Lru {
    fn new(capacity: usize) -> Lru {
        Lru {
            capacity,
            map: HashMap::with_capacity(capacity),
            nodes: Vec::with_capacity(capacity),
            head: NIL,
            tail: NIL,
        }
    }

    fn unlink(&mut self, i: usize) {
        let (prev, next) = (self.nodes[i].prev, self.nodes[i].next);
        if prev == NIL {
            self.head = next;
        } else {
            self.nodes[prev].next = next;
        }
        if next == NIL {
            self.tail = prev;
        } else {
            self.nodes[next].prev = prev;
        }
    }

    fn push_front(&mut self, i: usize) {
        self.nodes[i].prev = NIL;
        self.nodes[i].next = self.head;
        if self.head != NIL {
            self.nodes[self.head].prev = i;
        }
        self.head = i;
        if self.tail == NIL {
            self.tail = i;
        }
    }

    /// A request: true on a hit; a miss inserts the key, evicting the least recent.
    fn request(&mut self, key: u64) -> bool {
        if let Some(&i) = self.map.get(&key) {
            self.unlink(i);
            self.push_front(i);
            return true;
        }
        let i = if self.nodes.len() < self.capacity {
            self.nodes.push(Node {
                key,
                prev: NIL,
                next: NIL,
            });
            self.nodes.len() - 1
        } else {
            let i = self.tail;
            self.unlink(i);
            self.map.remove(&self.nodes[i].key);
            self.nodes[i].key = key;
            i
        };
        self.map.insert(key, i);
        self.push_front(i);
        false
    }
}

fn s3fifo_request(p: &mut S3Fifo<u64>, evicted: &mut Vec<u64>, key: u64) -> bool {
    if p.access(&key) {
        return true;
    }
    p.insert(key, 1, evicted);
    evicted.clear();
    false
}

fn hit_ratio(trace: &[u64], mut request: impl FnMut(u64) -> bool) -> f64 {
    let hits = trace.iter().filter(|&&k| request(k)).count();
    hits as f64 / trace.len() as f64
}

fn lru_ratio(trace: &[u64], capacity: usize) -> f64 {
    let mut lru = Lru::new(capacity);
    hit_ratio(trace, |k| lru.request(k))
}

fn s3fifo_ratio(trace: &[u64], capacity: usize) -> f64 {
    let mut p = S3Fifo::new(capacity as u64);
    let mut evicted = Vec::new();
    hit_ratio(trace, |k| s3fifo_request(&mut p, &mut evicted, k))
}

fn tinylfu_ratio(trace: &[u64], capacity: usize) -> f64 {
    let cache: moka::sync::Cache<u64, ()> = moka::sync::Cache::new(capacity as u64);
    hit_ratio(trace, |k| {
        if cache.get(&k).is_some() {
            return true;
        }
        cache.insert(k, ());
        false
    })
}

fn print_hit_ratios() {
    println!();
    println!(
        "Hit ratios: {REQUESTS} requests, {KEYS} Zipf-distributed keys (fixed seed), equal sizes"
    );
    println!(
        "| workload                         | cache        | LRU    | S3-FIFO | W-TinyLFU (moka) | S3-FIFO vs LRU |"
    );
    println!(
        "|----------------------------------|--------------|--------|---------|------------------|----------------|"
    );
    let workloads = [
        ("Zipf s=0.9", 0.9, 0.0),
        ("Zipf s=0.9 + 30% one-hit wonders", 0.9, 0.3),
        ("Zipf s=0.7", 0.7, 0.0),
        ("Zipf s=0.7 + 30% one-hit wonders", 0.7, 0.3),
    ];
    for (name, s, one_hit) in workloads {
        let t = trace(s, one_hit, 42);
        for share in [10, 1] {
            let capacity = (KEYS as usize) * share / 100;
            let lru = lru_ratio(&t, capacity);
            let s3 = s3fifo_ratio(&t, capacity);
            let tiny = tinylfu_ratio(&t, capacity);
            println!(
                "| {name:<32} | {capacity:>6} ({share:>2}%) | {:>5.1}% | {:>6.1}% | {:>15.1}% | {:>+11.1} pp |",
                lru * 100.0,
                s3 * 100.0,
                tiny * 100.0,
                (s3 - lru) * 100.0,
            );
        }
    }
    println!();
}

fn policies(c: &mut Criterion) {
    let t = trace(0.9, 0.0, 7);
    let slice = &t[..100_000];
    let capacity = (KEYS / 10) as usize;
    let mut group = c.benchmark_group("eviction");
    group.throughput(Throughput::Elements(slice.len() as u64));
    group.bench_function("lru_100k_requests", |b| {
        let mut lru = Lru::new(capacity);
        b.iter(|| {
            for &k in slice {
                black_box(lru.request(k));
            }
        });
    });
    group.bench_function("s3fifo_100k_requests", |b| {
        let mut p = S3Fifo::new(capacity as u64);
        let mut evicted = Vec::new();
        b.iter(|| {
            for &k in slice {
                black_box(s3fifo_request(&mut p, &mut evicted, k));
            }
        });
    });
    group.finish();
}

fn entry(body_len: usize) -> Arc<Entry> {
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("image/png"));
    headers.insert("etag", HeaderValue::from_static("\"abc123\""));
    headers.insert("cache-control", HeaderValue::from_static("max-age=3600"));
    let now = SystemTime::now();
    Arc::new(Entry::single(CachedResponse {
        status: StatusCode::OK,
        headers,
        body: Bytes::from(vec![7u8; body_len]),
        freshness: Freshness {
            lifetime: Duration::from_secs(3600),
            initial_age: Duration::ZERO,
            stored_at: now,
            stale_while_revalidate: Duration::ZERO,
            stale_if_error: Duration::ZERO,
            must_revalidate: false,
        },
        variant: String::new(),
        tags: Vec::new(),
        stored_at: now,
    }))
}

fn disk(c: &mut Criterion) {
    let Ok(dir) = tempfile::tempdir() else {
        return;
    };
    let mut options = DiskOptions::new(1 << 30);
    options.fsync = false;
    let Ok(store) = DiskStore::open(dir.path(), options) else {
        return;
    };
    let mut group = c.benchmark_group("disk");
    for size in [16 << 10, 1 << 20] {
        let e = entry(size);
        store.put("bench.example/object".to_owned(), e.clone());
        store.flush();
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(format!("get_{}k", size >> 10), |b| {
            b.iter(|| black_box(store.get("bench.example/object")));
        });
        group.bench_function(format!("put_flush_{}k", size >> 10), |b| {
            b.iter(|| {
                store.put("bench.example/written".to_owned(), e.clone());
                store.flush();
            });
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = policies, disk
}

fn main() {
    print_hit_ratios();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
