//! Benchmarks of the erasure codec (`lingjing_storage::erasure`) on one core: encoding a
//! 1 MiB block into 4+2 and 6+3 shards, and decoding it with every data shard present
//! (concatenation), one data shard missing, and as many missing as there are parity
//! shards. Throughput is bytes of block per second.
//!
//! Run with `cargo bench -p lingjing-storage --bench erasure` (or `bench/erasure.sh`); the
//! figures are kept in `bench/README.md`.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use lingjing_model::ErasureCode;
use lingjing_storage::erasure::{decode, encode};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const BLOCK: usize = 1 << 20;

fn codec(c: &mut Criterion) {
    let mut block = vec![0u8; BLOCK];
    StdRng::seed_from_u64(7).fill(&mut block[..]);
    let mut group = c.benchmark_group("erasure");
    group.throughput(Throughput::Bytes(BLOCK as u64));
    for text in ["4+2", "6+3"] {
        let code: ErasureCode = text.parse().expect("code");
        group.bench_function(format!("encode {text} 1MiB"), |b| {
            b.iter(|| encode(code, black_box(&block)).expect("encode"))
        });
        let shards: Vec<Option<Bytes>> = encode(code, &block)
            .expect("encode")
            .into_iter()
            .map(Some)
            .collect();
        for lost in [0, 1, code.parity()] {
            let mut have = shards.clone();
            for s in have.iter_mut().take(lost) {
                *s = None;
            }
            group.bench_function(
                format!("decode {text} 1MiB, {lost} data shards lost"),
                |b| b.iter(|| decode(code, BLOCK, black_box(&have)).expect("decode")),
            );
        }
    }
    group.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
