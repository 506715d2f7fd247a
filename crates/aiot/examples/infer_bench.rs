//! Inference benchmark of the tract backend (`bench/aiot.sh` runs it beside
//! `bench/aiot/ort_bench.py`, the same measurement with onnxruntime): loads an ONNX model
//! for a fixed input shape through [`TractBackend`] (as a node does), feeds it the same
//! deterministic input `RUNS` times on the calling thread after a warm-up, and prints one
//! JSON line: the load time, median and p95 latency, inferences per second on this one
//! thread (`per_s`: `RUNS` / the sum of the timed calls), the SHA-256 of the input's
//! little-endian `f32` bytes (the script checks both engines got the same input) and the
//! output's shape and sums. With `OUTPUT`, the first run's output is written there as raw
//! little-endian `f32`, for the script to compare with onnxruntime's.
//!
//! What one timed call covers: [`lingjing_aiot::backend::Runner::run`], i.e. copying the
//! input into tract's tensor, running the optimised plan and copying the first output out,
//! as a node's inference does. Cloning the input (the runner takes it by value) is outside
//! the timed span.
//!
//! `cargo run --release -p lingjing-aiot --example infer_bench -- MODEL.onnx 1,3,48,192 [RUNS [OUTPUT]]`

use std::time::Instant;

use lingjing_aiot::backend::{Backend, Tensor};
use lingjing_aiot::tract_backend::TractBackend;
use sha2::{Digest, Sha256};

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [model, shape, rest @ ..] = args.as_slice() else {
        return Err("usage: infer_bench MODEL.onnx 1,3,H,W [RUNS [OUTPUT]]".into());
    };
    let shape: Vec<usize> = shape
        .split(',')
        .map(|d| d.parse().map_err(|e| format!("shape {shape}: {e}")))
        .collect::<Result<_, _>>()?;
    let runs: usize = rest
        .first()
        .map_or(Ok(200), |r| r.parse())
        .map_err(|e| format!("runs: {e}"))?;
    if runs == 0 {
        return Err("runs: at least 1".into());
    }
    let dump = rest.get(1);
    let bytes = std::fs::read(model).map_err(|e| format!("{model}: {e}"))?;
    let started = Instant::now();
    let runner = TractBackend.load(&bytes, &shape)?;
    let load_ms = started.elapsed().as_secs_f64() * 1000.0;
    // The same input as bench/aiot/ort_bench.py: a ramp over [-1, 1), in f32 arithmetic
    // ((i mod 255) / 127.5 - 1), so both sides hold the very same bits.
    let n: usize = shape.iter().product();
    let data: Vec<f32> = (0..n).map(|i| (i % 255) as f32 / 127.5 - 1.0).collect();
    let mut hash = Sha256::new();
    for v in &data {
        hash.update(v.to_le_bytes());
    }
    let input_sha256 = hex::encode(hash.finalize());
    let input = Tensor::new(shape.clone(), data)?;
    // Warm-up (a tenth of the runs, at least 3), its first output kept for the summary.
    let first = runner.run(input.clone())?;
    for _ in 1..runs.div_ceil(10).max(3) {
        runner.run(input.clone())?;
    }
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let owned = input.clone();
        let t = Instant::now();
        let out = runner.run(owned)?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        drop(out);
    }
    let busy_s: f64 = times.iter().sum::<f64>() / 1000.0;
    times.sort_by(f64::total_cmp);
    // The q-quantile as the ceil(n*q)-th smallest, as ort_bench.py computes it.
    let p = |q: f64| times[((times.len() as f64 * q).ceil() as usize).clamp(1, times.len()) - 1];
    if let Some(path) = dump {
        let raw: Vec<u8> = first.data.iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(path, raw).map_err(|e| format!("{path}: {e}"))?;
    }
    let out_sum: f64 = first.data.iter().map(|&v| f64::from(v)).sum();
    let out_abs_sum: f64 = first.data.iter().map(|&v| f64::from(v).abs()).sum();
    let out_shape: Vec<String> = first.shape.iter().map(ToString::to_string).collect();
    println!(
        "{{\"engine\": \"tract\", \"runs\": {runs}, \"load_ms\": {load_ms:.1}, \"p50_ms\": {:.3}, \
         \"p95_ms\": {:.3}, \"per_s\": {:.2}, \"input_sha256\": \"{input_sha256}\", \
         \"out_shape\": [{}], \"out_sum\": {out_sum:.6e}, \"out_abs_sum\": {out_abs_sum:.6e}}}",
        p(0.5),
        p(0.95),
        runs as f64 / busy_s,
        out_shape.join(", "),
    );
    Ok(())
}
