#!/usr/bin/env bash
# Edge AI rollout time to N simulated nodes (issue 16): crates/control/examples/
# rollout_bench.rs (release build) starts a control plane in its own process on a fresh
# SQLite file per fleet size, N edge AI nodes simulated by tasks that long-poll the `aiot`
# snapshot with their own credentials and commit each target at once, and times
# `POST /v1/rollouts` (default groups: canary 1, 10%, 50%, 100%) to `succeeded`, ROUNDS
# rollouts per size, with the driver's ticks and the time of each driver step. By default
# a simulated node heartbeats when it commits and after 20 s without news;
# AGENT_BEATS_MS=2000 makes it heartbeat like lingjing aiot's agent (every 2 s and on every
# snapshot).
#
#   bench/rollout.sh
#   # knobs: NODES=10,100,1000 ROUNDS=3 SITES=10 AGENT_BEATS_MS=0 SETTLE=90 BUSY_CPU=0.15
#   #        BUSY_WINDOW=2 BUILD=1 (0: use the built example)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
source bench/lib.sh
RUN=""
KEEP_RUN=0
PIDS=()
trap cleanup EXIT
NODES=${NODES:-10,100,1000}
ROUNDS=${ROUNDS:-3}
SITES=${SITES:-10}
AGENT_BEATS_MS=${AGENT_BEATS_MS:-0}
SETTLE=${SETTLE:-90}
BUILD=${BUILD:-1}
BIN=target/release/examples/rollout_bench

if [[ $BUILD == 1 ]]; then
    log "building the benchmark (release)"
    nice -n 19 cargo build -q --release -p lingjing-control --example rollout_bench
fi
[[ -x $BIN ]] || die "$BIN missing (cargo build --release -p lingjing-control --example rollout_bench)"

echo "# edge AI rollouts to simulated nodes: NODES=$NODES ROUNDS=$ROUNDS SITES=$SITES AGENT_BEATS_MS=$AGENT_BEATS_MS"
echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-)"
# One fleet size at a time, each after a quiet machine; its load line before it.
IFS=, read -r -a sizes <<<"$NODES"
table=()
for n in "${sizes[@]}"; do
    line=$(settle "$SETTLE")
    echo "# N=$n: $line"
    out=$("$BIN" --nodes "$n" --rounds "$ROUNDS" --sites "$SITES" --agent-beats-ms "$AGENT_BEATS_MS")
    grep -v '^|' <<<"$out" | sed '/^$/d; /^[0-9]* rounds per size/d'
    row=$(grep '^| [0-9]' <<<"$out")
    [[ $line == *BUSY ]] && row="${row/#| $n |/| $n * |}"
    table+=("$row")
done
echo
grep -m1 -A1 '^| nodes' <<<"$out"
printf '%s\n' "${table[@]}"
echo
echo "# $ROUNDS rounds per size, median (min–max); the driver ticks every second;" \
    "* = started on a busy machine"
echo "# $(load_line)"
