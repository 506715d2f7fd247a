"""onnxruntime side of bench/aiot.sh: the same model, input and runs as
crates/aiot/examples/infer_bench.rs, on one thread (intra- and inter-op), printing the
same JSON line."""
import json
import sys
import time

import numpy as np
import onnxruntime as ort

model, shape = sys.argv[1], [int(d) for d in sys.argv[2].split(",")]
runs = int(sys.argv[3]) if len(sys.argv) > 3 else 200
opts = ort.SessionOptions()
opts.intra_op_num_threads = 1
opts.inter_op_num_threads = 1
opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
started = time.perf_counter()
session = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
load_ms = (time.perf_counter() - started) * 1000
n = int(np.prod(shape))
data = ((np.arange(n) % 255).astype(np.float32) / np.float32(127.5) - np.float32(1.0)).reshape(shape)
name = session.get_inputs()[0].name
for _ in range(max(3, -(-runs // 10))):
    session.run(None, {name: data})
times = []
t_all = time.perf_counter()
for _ in range(runs):
    t = time.perf_counter()
    session.run(None, {name: data})
    times.append((time.perf_counter() - t) * 1000)
total = time.perf_counter() - t_all
times.sort()
def pct(q):
    return times[min(len(times), max(1, int(-(-len(times) * q // 1)))) - 1]
print(json.dumps({"engine": "onnxruntime " + ort.__version__, "load_ms": round(load_ms, 1),
                  "p50_ms": round(pct(0.5), 3), "p95_ms": round(pct(0.95), 3),
                  "per_s": round(runs / total, 1)}))
