#!/usr/bin/env bash
# Edge AI inference: our backend (tract, crates/aiot/examples/infer_bench.rs, release
# build) against onnxruntime (the PyPI package, bench/aiot/ort_bench.py) on the same ONNX
# models, input and runs, each on ONE thread: median and p95 latency and inferences per
# second per core, each engine run ROUNDS times in rotating order, medians and spread
# printed with the ratio tract/onnxruntime (above 1: tract is slower).
#
# Models (stand-ins; no road-distress model ships in any package): PaddleOCR's
# text-direction classifier (crates/aiot/tests/fixtures, 48x192) and ddddocr's YOLOX-style
# detector common_det.onnx (416x416, downloaded from PyPI with ddddocr 1.6.1).
#
#   bench/aiot.sh [ROUNDS (3)] [RUNS per round (200 classifier; detector RUNS/10)]
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
source bench/lib.sh
RUN=$(mktemp -d /tmp/lingjing-bench-aiot.XXXXXX)
KEEP_RUN=0
PIDS=()
trap cleanup EXIT
ROUNDS=${1:-3}
RUNS=${2:-200}
VENV=${LINGJING_BENCH_VENV:-/tmp/lingjing-bench-venv}

if [[ ! -x $VENV/bin/python ]] || ! "$VENV/bin/python" -c 'import onnxruntime, numpy' 2>/dev/null; then
    log "making $VENV with onnxruntime 1.32.0"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q onnxruntime==1.32.0 numpy
fi
DET=$VENV/ddddocr/common_det.onnx
if [[ ! -f $DET ]]; then
    log "fetching ddddocr 1.6.1 (MIT) for its detector"
    mkdir -p "$VENV/ddddocr"
    "$VENV/bin/pip" download -q --no-deps ddddocr==1.6.1 -d "$RUN/wheel"
    (cd "$RUN/wheel" && python3 -m zipfile -e ddddocr-1.6.1-py3-none-any.whl x)
    cp "$RUN/wheel/x/ddddocr/common_det.onnx" "$DET"
fi
log "building the tract side (release)"
cargo build -q --release -p lingjing-aiot --example infer_bench
TRACT=target/release/examples/infer_bench

declare -A SHAPE=([classifier]=1,3,48,192 [detector]=1,3,416,416)
declare -A MODEL=([classifier]=crates/aiot/tests/fixtures/text-direction.onnx [detector]=$DET)
declare -A N=([classifier]=$RUNS [detector]=$((RUNS / 10 > 5 ? RUNS / 10 : 5)))

field() { sed -E "s/.*\"$1\": ([0-9.]+).*/\1/" <<<"$2"; }

echo "# edge AI inference, one thread each; $(load_line)"
for m in classifier detector; do
    declare -a T50=() T95=() TPS=() O50=() O95=() OPS=()
    for ((r = 0; r < ROUNDS; r++)); do
        order=(tract ort)
        ((r % 2)) && order=(ort tract)
        for e in "${order[@]}"; do
            settle 20 >/dev/null
            if [[ $e == tract ]]; then
                out=$(taskset -c 0 "$TRACT" "${MODEL[$m]}" "${SHAPE[$m]}" "${N[$m]}")
                T50+=("$(field p50_ms "$out")") T95+=("$(field p95_ms "$out")") TPS+=("$(field per_s "$out")")
            else
                out=$(taskset -c 0 "$VENV/bin/python" bench/aiot/ort_bench.py "${MODEL[$m]}" "${SHAPE[$m]}" "${N[$m]}")
                O50+=("$(field p50_ms "$out")") O95+=("$(field p95_ms "$out")") OPS+=("$(field per_s "$out")")
            fi
            log "$m $e: $out"
        done
    done
    printf '%-10s %-12s p50 %8s ms (%s)  p95 %8s ms  %8s/s per core\n' \
        "$m" tract "$(median "${T50[@]}")" "$(spread "${T50[@]}")" "$(median "${T95[@]}")" "$(median "${TPS[@]}")"
    printf '%-10s %-12s p50 %8s ms (%s)  p95 %8s ms  %8s/s per core\n' \
        "$m" onnxruntime "$(median "${O50[@]}")" "$(spread "${O50[@]}")" "$(median "${O95[@]}")" "$(median "${OPS[@]}")"
    echo "$m: tract/onnxruntime p50 latency $(ratio "$(median "${T50[@]}")" "$(median "${O50[@]}")")"
done
echo "# $(load_line)"
