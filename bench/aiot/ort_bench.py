"""onnxruntime side of bench/aiot.sh: the same measurement as
crates/aiot/examples/infer_bench.rs (same model, input, warm-up and runs), with
onnxruntime's CPU provider on ONE thread (intra- and inter-op threads 1, sequential
execution, default graph optimisations), printing the same JSON line: load time, median
and p95 latency, inferences per second on this thread (RUNS / the sum of the timed
calls), the SHA-256 of the input's little-endian f32 bytes and the output's shape and
sums. With OUTPUT, the first run's first output is written there as raw little-endian f32.

    python3 bench/aiot/ort_bench.py MODEL.onnx 1,3,48,192 [RUNS [OUTPUT]]
"""
import hashlib
import json
import sys
import time

import numpy as np
import onnxruntime as ort

if len(sys.argv) < 3:
    sys.exit("usage: ort_bench.py MODEL.onnx 1,3,H,W [RUNS [OUTPUT]]")
model, shape = sys.argv[1], [int(d) for d in sys.argv[2].split(",")]
runs = int(sys.argv[3]) if len(sys.argv) > 3 else 200
dump = sys.argv[4] if len(sys.argv) > 4 else None
if runs < 1:
    sys.exit("runs: at least 1")
opts = ort.SessionOptions()
opts.intra_op_num_threads = 1
opts.inter_op_num_threads = 1
opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
started = time.perf_counter()
session = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
load_ms = (time.perf_counter() - started) * 1000
# The same input as infer_bench.rs: a ramp over [-1, 1) in f32 arithmetic
# ((i mod 255) / 127.5 - 1), so both sides hold the very same bits.
n = int(np.prod(shape))
data = ((np.arange(n) % 255).astype(np.float32) / np.float32(127.5) - np.float32(1.0)).reshape(shape)
input_sha256 = hashlib.sha256(data.astype("<f4").tobytes()).hexdigest()
feed = {session.get_inputs()[0].name: data}
# Warm-up (a tenth of the runs, at least 3), its first output kept for the summary.
first = np.asarray(session.run(None, feed)[0], dtype=np.float32)
for _ in range(1, max(3, -(-runs // 10))):
    session.run(None, feed)
times = []
for _ in range(runs):
    t = time.perf_counter()
    session.run(None, feed)
    times.append((time.perf_counter() - t) * 1000)
busy_s = sum(times) / 1000
times.sort()


def pct(q):
    """The q-quantile as the ceil(n*q)-th smallest, as infer_bench.rs computes it."""
    k = -(-len(times) * q // 1)
    return times[min(len(times), max(1, int(k))) - 1]


if dump:
    first.astype("<f4").tofile(dump)
print(json.dumps({
    "engine": "onnxruntime " + ort.__version__,
    "runs": runs,
    "load_ms": round(load_ms, 1),
    "p50_ms": round(pct(0.5), 3),
    "p95_ms": round(pct(0.95), 3),
    "per_s": round(runs / busy_s, 2),
    "input_sha256": input_sha256,
    "out_shape": list(first.shape),
    "out_sum": float(first.astype(np.float64).sum()),
    "out_abs_sum": float(np.abs(first.astype(np.float64)).sum()),
}))
