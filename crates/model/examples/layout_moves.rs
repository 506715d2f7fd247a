//! The share of block pieces that move when one node joins (or leaves) a storage layout of
//! N equal nodes, against the least any placement can move (the new node's share,
//! 1/(N+1)), for replicated blocks (3 copies) and erasure-coded ones (4+2, 6+3), nodes
//! spread over N/2 sites. Run by `bench/layout.sh`; the numbers are in bench/README.md.

use lingjing_model::storage_layout::{candidates, moved_fraction};

fn layout(n: usize) -> Vec<(String, String, u64)> {
    (0..n)
        .map(|i| (format!("node-{i}"), format!("site-{}", i / 2), 100))
        .collect()
}

fn main() {
    let samples = 20_000;
    println!(
        "| nodes N -> N+1 | pieces | moved on add | moved on remove | least possible 1/(N+1) | ratio |"
    );
    println!("|---|---|---|---|---|---|");
    for n in [4usize, 8, 16, 32, 64, 128] {
        for (label, pieces) in [("3 copies", 3usize), ("4+2", 6), ("6+3", 9)] {
            if pieces > n {
                continue;
            }
            let (before, after) = (layout(n), layout(n + 1));
            let add = moved_fraction(&candidates(&before), &candidates(&after), pieces, samples);
            let remove = moved_fraction(&candidates(&after), &candidates(&before), pieces, samples);
            let ideal = 1.0 / (n + 1) as f64;
            println!(
                "| {n} -> {} | {label} | {:.2}% | {:.2}% | {:.2}% | {:.2} |",
                n + 1,
                add * 100.0,
                remove * 100.0,
                ideal * 100.0,
                add / ideal
            );
        }
    }
}
