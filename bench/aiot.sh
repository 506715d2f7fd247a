#!/usr/bin/env bash
# Edge AI inference (issue 16): our backend (tract, through lingjing_aiot's TractBackend:
# crates/aiot/examples/infer_bench.rs, release build) against onnxruntime 1.32.0 (the
# PyPI package, bench/aiot/ort_bench.py) on the same ONNX models and the same input, each
# on ONE thread pinned to one core (taskset -c $CORE): median (p50) and p95 latency and
# inferences per second per core. Each round runs every model on both engines, the
# engines' order alternating from round to round; a turn waits for a quiet machine first
# (bench/lib.sh's settle) and is marked busy (*) when it did not get one. Printed: per
# model and engine the median over the rounds with the spread (min–max), and the ratios
# tract/onnxruntime taken within each round (median and spread).
#
# Before the rounds, a check: both engines run each model once on the same input (its
# SHA-256 must match) and their outputs are compared (max |difference|).
#
# Models (stand-ins; no road-distress model ships in any package): PaddleOCR's
# text-direction classifier (crates/aiot/tests/fixtures/text-direction.onnx, 1x3x48x192)
# and ddddocr 1.6.1's YOLOX detector common_det.onnx (1x3x416x416, MIT; fetched from PyPI
# with pip download, or taken from $LINGJING_TEST_MODELS when it holds it).
#
#   bench/aiot.sh
#   # knobs: ROUNDS=3 RUNS=200 (classifier calls per turn) DET_RUNS=30 (detector) CORE=0
#   #        SETTLE=90 BUSY_CPU=0.15 BUSY_WINDOW=2 BUILD=1 (0: use the built example)
#   #        LINGJING_BENCH_VENV=/tmp/lingjing-bench-venv (onnxruntime's virtualenv)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
source bench/lib.sh
RUN=$(mktemp -d "${TMPDIR:-/tmp}/lingjing-bench-aiot.XXXXXX")
KEEP_RUN=${KEEP_RUN:-0}
PIDS=()
trap cleanup EXIT
ROUNDS=${ROUNDS:-3}
RUNS=${RUNS:-200}
DET_RUNS=${DET_RUNS:-30}
CORE=${CORE:-0}
SETTLE=${SETTLE:-90}
BUILD=${BUILD:-1}
VENV=${LINGJING_BENCH_VENV:-/tmp/lingjing-bench-venv}
RESULTS=${RESULTS:-${TMPDIR:-/tmp}/lingjing-aiot-results.tsv}
ORT_VERSION=1.32.0
DET_SHA256=6faa8ea85a8c1a634e5050c4a138fca10f30194e0d7abbe9ade1fcd423af6ed6

command -v taskset >/dev/null || die "taskset (util-linux) is needed"
if [[ ! -x $VENV/bin/python ]] ||
    [[ $("$VENV/bin/python" -c 'import numpy, onnxruntime; print(onnxruntime.__version__)' 2>/dev/null) != "$ORT_VERSION" ]]; then
    log "making $VENV with onnxruntime $ORT_VERSION"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q "onnxruntime==$ORT_VERSION" numpy
fi
PY=$VENV/bin/python

# The detector: $LINGJING_TEST_MODELS/common_det.onnx, else a copy kept in the venv, else
# fetched (the wheel is 90 MB; only the model is extracted). Its SHA-256 is checked.
DET=$VENV/ddddocr/common_det.onnx
if [[ -n ${LINGJING_TEST_MODELS:-} && -f $LINGJING_TEST_MODELS/common_det.onnx ]]; then
    DET=$LINGJING_TEST_MODELS/common_det.onnx
elif [[ ! -f $DET ]]; then
    log "fetching ddddocr 1.6.1 (MIT) for its detector"
    mkdir -p "$VENV/ddddocr" "$RUN/wheel"
    "$VENV/bin/pip" download -q --no-deps ddddocr==1.6.1 -d "$RUN/wheel"
    "$PY" - "$RUN/wheel/ddddocr-1.6.1-py3-none-any.whl" "$DET" <<'EOF'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open("ddddocr/common_det.onnx") as src, \
        open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
EOF
fi
[[ $(sha256sum "$DET" | cut -d' ' -f1) == "$DET_SHA256" ]] || die "$DET: not ddddocr 1.6.1's common_det.onnx"

TRACT=target/release/examples/infer_bench
if [[ $BUILD == 1 ]]; then
    log "building the tract side (release)"
    nice -n 19 cargo build -q --release -p lingjing-aiot --example infer_bench
fi
[[ -x $TRACT ]] || die "$TRACT missing (cargo build --release -p lingjing-aiot --example infer_bench)"

MODELS=(classifier detector)
declare -A SHAPE=([classifier]="1,3,48,192" [detector]="1,3,416,416")
declare -A MODEL=([classifier]=crates/aiot/tests/fixtures/text-direction.onnx [detector]=$DET)
declare -A N=([classifier]=$RUNS [detector]=$DET_RUNS)
declare -A TITLE=(
    [classifier]="text-direction classifier (PaddleOCR, 1x3x48x192)"
    [detector]="common_det YOLOX detector (ddddocr 1.6.1, 1x3x416x416)"
)

# field NAME JSON: the value of NAME in one line of JSON (a number or a string).
field() { sed -nE "s/.*\"$1\": \"?([^\",}]+).*/\1/p" <<<"$2"; }

# engine_run ENGINE MODEL RUNS [OUTPUT]: one run of ENGINE (tract or ort) on MODEL,
# pinned to $CORE; prints its JSON line.
engine_run() {
    local e=$1 m=$2 n=$3
    shift 3
    if [[ $e == tract ]]; then
        taskset -c "$CORE" "$TRACT" "${MODEL[$m]}" "${SHAPE[$m]}" "$n" "$@"
    else
        taskset -c "$CORE" "$PY" bench/aiot/ort_bench.py "${MODEL[$m]}" "${SHAPE[$m]}" "$n" "$@"
    fi
}

: >"$RESULTS"
echo "# edge AI inference: tract vs onnxruntime $ORT_VERSION, one thread on core $CORE each"
echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(load_line), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-)"

# The check: same input bits, outputs alike.
for m in "${MODELS[@]}"; do
    t=$(engine_run tract "$m" 1 "$RUN/$m.tract.f32")
    o=$(engine_run ort "$m" 1 "$RUN/$m.ort.f32")
    [[ $(field input_sha256 "$t") == "$(field input_sha256 "$o")" ]] ||
        die "$m: the engines' inputs differ: $t / $o"
    check=$("$PY" - "$RUN/$m.tract.f32" "$RUN/$m.ort.f32" <<'EOF'
import sys
import numpy as np
a, b = (np.fromfile(p, dtype="<f4").astype(np.float64) for p in sys.argv[1:3])
if a.shape != b.shape:
    sys.exit(f"output sizes differ: {a.size} / {b.size}")
diff = float(np.abs(a - b).max())
scale = float(np.abs(b).max())
print(f"{a.size} values, max |tract - onnxruntime| {diff:.3g} (max |value| {scale:.3g})")
sys.exit(0 if diff <= 1e-3 * max(scale, 1.0) else 1)
EOF
    ) || die "$m: the engines' outputs differ: ${check:-}"
    echo "# check $m: same input (sha256 $(field input_sha256 "$t" | cut -c1-16)...), output $check"
done

declare -A V=() BUSY=()
for ((r = 1; r <= ROUNDS; r++)); do
    order=(tract ort)
    if ((r % 2 == 0)); then order=(ort tract); fi
    for m in "${MODELS[@]}"; do
        for e in "${order[@]}"; do
            line=$(settle "$SETTLE")
            [[ $line == *BUSY ]] && BUSY[$m.$e]=1
            out=$(engine_run "$e" "$m" "${N[$m]}")
            log "round $r $m $e ($line): $out"
            for f in p50_ms p95_ms per_s load_ms; do
                V[$r.$m.$e.$f]=$(field "$f" "$out")
                printf 'round %s|%s|%s|%s\t%s\n' "$r" "$m" "$e" "$f" "${V[$r.$m.$e.$f]}" >>"$RESULTS"
            done
            printf 'round %s|%s|%s|load\t%s\n' "$r" "$m" "$e" "$line" >>"$RESULTS"
        done
    done
done

# values M E FIELD: the FIELD of engine E on model M in each round.
values() {
    local r
    for ((r = 1; r <= ROUNDS; r++)); do echo "${V[$r.$1.$2.$3]:-}"; done
}
# ratios M FIELD: tract's FIELD / onnxruntime's, within each round.
ratios() {
    local r
    for ((r = 1; r <= ROUNDS; r++)); do
        frac "${V[$r.$1.tract.$2]:-}" "${V[$r.$1.ort.$2]:-}"
    done
}
# cell FORMAT VALUES...: "median (min–max)", each number printed with the awk FORMAT.
cell() {
    local fmt=$1 m
    shift
    m=$(median "$@")
    [[ -n $m ]] || { echo n/a; return 0; }
    echo "$(awk -v v="$m" -v f="$fmt" 'BEGIN {printf f, v}') ($(spread --format "$fmt" "$@"))"
}

echo
echo "# $ROUNDS rounds; each figure the median over the rounds (min–max); * = a turn started on a busy machine"
for m in "${MODELS[@]}"; do
    echo
    echo "${TITLE[$m]}: ${N[$m]} timed calls per turn"
    echo
    echo "| engine | p50 ms | p95 ms | inferences/s per core | load ms |"
    echo "|---|---|---|---|---|"
    for e in tract ort; do
        name=tract
        [[ $e == ort ]] && name="onnxruntime $ORT_VERSION"
        [[ -n ${BUSY[$m.$e]:-} ]] && name+=" *"
        # shellcheck disable=SC2046 # one value a line, no spaces
        echo "| $name | $(cell %.2f $(values "$m" "$e" p50_ms)) | $(cell %.2f $(values "$m" "$e" p95_ms)) |" \
            "$(cell %.1f $(values "$m" "$e" per_s)) | $(cell %.0f $(values "$m" "$e" load_ms)) |"
    done
    # shellcheck disable=SC2046 # one value a line, no spaces
    echo "| tract/onnxruntime | x$(cell %.2f $(ratios "$m" p50_ms)) | x$(cell %.2f $(ratios "$m" p95_ms)) |" \
        "x$(cell %.2f $(ratios "$m" per_s)) | |"
done
echo
echo "# ratios taken within each round; above 1 in latency (below 1 in inferences/s): tract is slower"
echo "# every turn in $RESULTS; $(load_line)"
