//! Inference benchmark of the tract backend (`bench/aiot.sh` runs it beside onnxruntime):
//! loads an ONNX model for a fixed input shape, feeds it the same deterministic input
//! `--runs` times on one thread after a warm-up, and prints one JSON line with the load
//! time, median and p95 latency and inferences per second per core.
//!
//! `cargo run --release -p lingjing-aiot --example infer_bench -- MODEL.onnx 1,3,48,192 [RUNS]`

use std::time::Instant;

use lingjing_aiot::backend::{Backend, Tensor};
use lingjing_aiot::tract_backend::TractBackend;

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [model, shape, rest @ ..] = args.as_slice() else {
        return Err("usage: infer_bench MODEL.onnx 1,3,H,W [RUNS]".into());
    };
    let shape: Vec<usize> = shape
        .split(',')
        .map(|d| d.parse().map_err(|e| format!("shape {shape}: {e}")))
        .collect::<Result<_, _>>()?;
    let runs: usize = rest
        .first()
        .map_or(Ok(200), |r| r.parse())
        .map_err(|e| format!("runs: {e}"))?;
    let bytes = std::fs::read(model).map_err(|e| format!("{model}: {e}"))?;
    let started = Instant::now();
    let runner = TractBackend.load(&bytes, &shape)?;
    let load_ms = started.elapsed().as_secs_f64() * 1000.0;
    // The same input as bench/aiot/ort_bench.py: a ramp over [-1, 1).
    let n: usize = shape.iter().product();
    let data: Vec<f32> = (0..n).map(|i| (i % 255) as f32 / 127.5 - 1.0).collect();
    let input = Tensor::new(shape.clone(), data)?;
    for _ in 0..runs.div_ceil(10).max(3) {
        runner.run(input.clone())?;
    }
    let mut times = Vec::with_capacity(runs);
    let all = Instant::now();
    for _ in 0..runs {
        let t = Instant::now();
        runner.run(input.clone())?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let total = all.elapsed().as_secs_f64();
    times.sort_by(f64::total_cmp);
    let p = |q: f64| times[((times.len() as f64 * q).ceil() as usize).clamp(1, times.len()) - 1];
    println!(
        "{{\"engine\": \"tract\", \"load_ms\": {load_ms:.1}, \"p50_ms\": {:.3}, \"p95_ms\": {:.3}, \"per_s\": {:.1}}}",
        p(0.5),
        p(0.95),
        runs as f64 / total
    );
    Ok(())
}
