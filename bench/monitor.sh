#!/usr/bin/env bash
# IDC monitoring on a site's node (issue 18): readings per second a node ingests and
# evaluates with 10,000 sensors and 50,000 rules (crates/monitor/examples/ingest_bench.rs,
# release build): the rule engine alone, then through the monitor with every message made
# durable (fsynced to the outbox) before it is acknowledged, 100 readings a message and 1;
# and the time of one pass of time over the 50,000 series. ROUNDS runs, each after the
# machine is quiet; prints each figure's median and spread.
#
#   bench/monitor.sh
#   # knobs: ROUNDS=3 SECONDS_PER_STAGE=5 SETTLE=60 BUSY_CPU=0.15 BUSY_WINDOW=2 BUILD=1
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
source bench/lib.sh
RUN=""
KEEP_RUN=0
PIDS=()
trap cleanup EXIT
ROUNDS=${ROUNDS:-3}
SETTLE=${SETTLE:-60}
BUSY_CPU=${BUSY_CPU:-0.15}
BUSY_WINDOW=${BUSY_WINDOW:-2}
BUILD=${BUILD:-1}
export SECONDS_PER_STAGE=${SECONDS_PER_STAGE:-5}
BIN=target/release/examples/ingest_bench

if [[ $BUILD == 1 ]]; then
    log "building the benchmark (release)"
    nice -n 19 cargo build -q --release -p lingjing-monitor --example ingest_bench
fi
[[ -x $BIN ]] || die "$BIN missing (cargo build --release -p lingjing-monitor --example ingest_bench)"

echo "# IDC monitoring ingest: 10,000 sensors, 50,000 rules; ROUNDS=$ROUNDS SECONDS_PER_STAGE=$SECONDS_PER_STAGE"
echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-)"
declare -A seen
for round in $(seq 1 "$ROUNDS"); do
    echo "# round $round: $(settle "$SETTLE")"
    while read -r stage value; do
        seen[$stage]+="$value "
        echo "  $stage $value"
    done < <("$BIN")
done
echo
printf '%-12s %14s %22s\n' stage median spread
for stage in engine durable_100 durable_1 tick_ms; do
    fmt=%.0f
    [[ $stage == tick_ms ]] && fmt=%.2f
    # shellcheck disable=SC2086
    printf '%-12s %14s %22s\n' "$stage" "$(median ${seen[$stage]})" \
        "$(spread --format "$fmt" ${seen[$stage]})"
done
echo "(readings per second; tick_ms: ms per pass over every series)"
