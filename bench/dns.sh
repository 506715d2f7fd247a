#!/usr/bin/env bash
# GSLB DNS benchmark: Lingjing's authoritative DNS ("ours", inside `lingjing up`) against
# gdnsd (plugin_geoip with an inline `nets` map + plugin_weighted, the same job as far as
# gdnsd allows) and Knot DNS (a plain static zone), all on loopback, with dnsperf.
#
#   bench/dns.sh                              # default run, about 1.5-2 minutes
#   DURATION=30 CLIENTS=16 bench/dns.sh       # longer / wider
#   SERVERS="ours knot" bench/dns.sh          # a subset
#
# For each server, one at a time (the others are stopped):
#   - correctness: dig answers for a set of client subnets (ECS) must be the expected
#     edge addresses (Knot: one fixed address, it has no steering), else the server is
#     reported as wrong and not measured;
#   - throughput: dnsperf for DURATION seconds, unlimited rate, A queries for
#     demo.cdn.lingjing.test, (a) plain and (b) with an ECS option (203.0.113.64/26, a
#     unicom Suqian client): queries/s, average latency, lost queries, response codes;
#   - latency at a fixed rate: dnsperf -v at LAT_QPS for LAT_DURATION seconds, p50/p99
#     computed from the per-query latencies;
#   - CPU per query at a fixed rate: dnsperf at CPU_QPS for CPU_DURATION seconds, the
#     server process's user + system CPU time (/proc/PID/stat) divided by the queries
#     answered. On a 2-core machine dnsperf needs one core, so the unlimited-rate q/s of
#     fast servers converge; the CPU each one spends per query still tells them apart
#     (ours: the whole `lingjing up` process, its idle control plane and edges included);
#   - correctness again after the load (the server must still answer right).
#
# Ports (127.0.0.1): ours 15300 (plus `lingjing up`'s control plane 17700, demo origin
# 17900, DNS admin 17953, edges on 127.0.1.x:18080/18443/19090, S3 17800, storage
# nodes 127.0.1.x:17810); gdnsd 15301; knot
# 15302. Configs are in bench/dns/. Servers run in the foreground of background jobs
# with a private run directory; everything is stopped on exit. Never systemd.
#
# Missing tools are installed with apt-get (Debian/Ubuntu, as root).
# Environment (defaults in brackets):
#   DURATION [10]  CLIENTS [8]  THREADS [1]  OUTSTANDING [100]   dnsperf throughput runs
#   LAT_QPS [20000]  LAT_DURATION [3]                            fixed-rate latency runs
#   CPU_QPS [100000]  CPU_DURATION [3]                           fixed-rate CPU runs
#   SERVERS ["ours gdnsd knot"]                                  which servers, in order
#   LINGJING_BIN [target/dist/lingjing]                       our binary
#   BUILD_OURS [0]                     1: cargo build --profile dist -p lingjing first
#   KEEP_RUN [0]                       1: keep the run directory (logs) on exit
#   RESULTS [$TMPDIR/lingjing-dns-results.tsv]                   machine-readable results
set -euo pipefail
PATH=$PATH:/usr/sbin:/sbin # gdnsd and knotd live in sbin

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CONF="$ROOT/bench/dns"

DURATION=${DURATION:-10}
CLIENTS=${CLIENTS:-8}
THREADS=${THREADS:-1}
OUTSTANDING=${OUTSTANDING:-100}
LAT_QPS=${LAT_QPS:-20000}
CPU_QPS=${CPU_QPS:-100000}
CPU_DURATION=${CPU_DURATION:-3}
LAT_DURATION=${LAT_DURATION:-3}
SERVERS=${SERVERS:-ours gdnsd knot}
LINGJING_BIN=${LINGJING_BIN:-$ROOT/target/dist/lingjing}
BUILD_OURS=${BUILD_OURS:-0}
KEEP_RUN=${KEEP_RUN:-0}
RESULTS=${RESULTS:-${TMPDIR:-/tmp}/lingjing-dns-results.tsv}
if [[ -z ${RUN_BASE:-} ]]; then
    if [[ -d /dev/shm && -w /dev/shm ]]; then RUN_BASE=/dev/shm; else RUN_BASE=${TMPDIR:-/tmp}; fi
fi

ADDR=127.0.0.1
QNAME=demo.cdn.lingjing.test
declare -A PORT=([ours]=15300 [gdnsd]=15301 [knot]=15302)
# ECS for the "with ECS" runs: family 1, source /26, scope 0, 203.0.113.64 (4 bytes).
ECS_LABEL="203.0.113.64/26"
ECS_HEX="00011a00cb717140"
# Correctness: dig +subnet -> expected answer (a|b = any of them). Knot serves one fixed
# address for everyone. "-" = no ECS (the loopback source address: unknown client).
CHECKS=(
    "-=127.0.1.25"
    "198.51.100.1/32=127.0.1.1"
    "203.0.113.64/26=127.0.1.9"
    "192.0.2.130/32=127.0.1.17"
    "198.51.100.70/32=127.0.1.9"
    "192.0.2.200/32=127.0.1.1|127.0.1.9|127.0.1.17"
)
KNOT_ANSWER=127.0.1.1

RUN=""
SERVER_PID=""
PIDS=()
declare -A R=() # R[server|test|field]

# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

ensure_dns_tools() {
    ensure_tools --stop gdnsd --stop knot dnsperf=dnsperf gdnsd=gdnsd knotd=knot knotc=knot \
        dig=dnsutils python3=python3
}

check_ports_free() {
    local s p
    for s in $SERVERS; do
        p=${PORT[$s]:-}
        [[ -n $p ]] || die "unknown server $s"
        udp_port_in_use "$p" && die "UDP port $p is already in use; stop whatever listens there"
    done
    if [[ " $SERVERS " == *" ours "* ]]; then
        for p in 17700 17900 17953; do
            tcp_port_in_use "$ADDR" "$p" && die "port $ADDR:$p is already in use"
        done
    fi
    return 0
}

# answer PORT [SUBNET]: the A records of QNAME (sorted, comma-joined) or "rcode:X".
answer() {
    local out rcode sub=()
    [[ -n ${2:-} && $2 != - ]] && sub=("+subnet=$2")
    out=$(dig @"$ADDR" -p "$1" "$QNAME" A "${sub[@]}" +time=1 +tries=1 +noall +comments \
        +answer 2>/dev/null) || { echo "no-answer"; return 0; }
    rcode=$(sed -n 's/.*status: \([A-Z]*\),.*/\1/p' <<<"$out" | head -n1)
    [[ $rcode == NOERROR ]] || { echo "rcode:${rcode:-none}"; return 0; }
    awk '$4 == "A" {print $5}' <<<"$out" | sort | paste -sd, -
}

# answers_ok PORT: PORT answers QNAME A with NOERROR and addresses.
answers_ok() {
    local a
    a=$(answer "$1")
    [[ $a != no-answer && $a != rcode:* && -n $a ]]
}

# wait_dns PORT PID: waits (30 s at most) until PORT answers QNAME A with NOERROR.
wait_dns() { wait_for 300 "$2" answers_ok "$1"; }

# check_answers NAME WHEN: digs every CHECKS entry; records and prints mismatches.
check_answers() {
    local name=$1 when=$2 c sub want got bad=0
    for c in "${CHECKS[@]}"; do
        sub=${c%%=*}
        want=${c#*=}
        [[ $name == knot ]] && want=$KNOT_ANSWER
        got=$(answer "${PORT[$name]}" "$sub")
        if [[ "|$want|" != *"|$got|"* ]]; then
            log "$name: WRONG ($when) for client subnet $sub: got $got, want $want"
            bad=$((bad + 1))
        fi
    done
    R[$name|check|$when]=$bad
    [[ $bad -eq 0 ]] && log "$name: answers correct ($when, ${#CHECKS[@]} client subnets)"
    return 0
}

start_gdnsd() {
    mkdir -p "$RUN/gdnsd/zones"
    sed "s#@RUN@#$RUN#g" "$CONF/gdnsd.config" >"$RUN/gdnsd/config"
    cp "$CONF/gdnsd.zone" "$RUN/gdnsd/zones/cdn.lingjing.test"
    gdnsd -c "$RUN/gdnsd" checkconf >"$RUN/gdnsd-checkconf.log" 2>&1 ||
        die "gdnsd config does not load (see $RUN/gdnsd-checkconf.log)"
    start_bg gdnsd gdnsd -c "$RUN/gdnsd" start
    SERVER_PID=$LAST_PID
    wait_dns "${PORT[gdnsd]}" "$SERVER_PID"
}

start_knot() {
    mkdir -p "$RUN/knot/db"
    sed "s#@RUN@#$RUN#g" "$CONF/knot.conf" >"$RUN/knot/knot.conf"
    cp "$CONF/knot.zone" "$RUN/knot/cdn.lingjing.test.zone"
    start_bg knot knotd -c "$RUN/knot/knot.conf"
    SERVER_PID=$LAST_PID
    wait_dns "${PORT[knot]}" "$SERVER_PID"
}

# ===================================== HOOK: ours =======================================
# There is no standalone mode for `lingjing dns` (it is fed by the control plane), so ours
# is the whole platform: `lingjing up` in a private data dir, whose GSLB DNS serves zone
# cdn.lingjing.test. on 127.0.0.1:15300 from the demo topology. Everything (control plane,
# demo origin, 3 edges, parent, DNS) is one process: idle apart from the DNS, but its
# memory is not comparable with the peers', so no RSS column.
start_ours() {
    if [[ $BUILD_OURS == 1 ]]; then
        log "ours: cargo build --profile dist -p lingjing"
        (cd "$ROOT" && cargo build --profile dist -p lingjing) >"$RUN/ours-build.log" 2>&1 ||
            { log "ours: build failed (see $RUN/ours-build.log)"; return 1; }
    fi
    [[ -x $LINGJING_BIN ]] || { log "ours: $LINGJING_BIN not found"; return 1; }
    if ! "$LINGJING_BIN" up --help 2>/dev/null | grep -q -- --dns-listen; then
        log "ours: \`lingjing up\` has no --dns-listen (old binary?)"
        return 1
    fi
    mkdir -p "$RUN/ours"
    log "ours: $LINGJING_BIN up --data-dir $RUN/ours/data --dns-listen $ADDR:${PORT[ours]} ..."
    start_bg ours "$LINGJING_BIN" up --data-dir "$RUN/ours/data" \
        --listen "$ADDR:17700" --origin-listen "$ADDR:17900" --dns-listen "$ADDR:${PORT[ours]}" \
        --dns-admin "$ADDR:17953" --dns-rrl-rate 0 \
        --edge-http-port 18080 --edge-https-port 18443 --edge-admin-port 19090 \
        --s3-listen "$ADDR:17800" --s3-admin "$ADDR:17801" --storage-port 17810
    SERVER_PID=$LAST_PID
    if ! wait_dns "${PORT[ours]}" "$SERVER_PID"; then
        log "ours: DNS did not answer within 30 s; its output:"
        tail -n 5 "$RUN/ours.log" >&2 || true
        stop_pid "$SERVER_PID"
        return 1
    fi
    # The DNS answers before the edges' snapshot may be final: let the demo settle.
    sleep 1
}
# ========================================================================================

# perf NAME TEST [ECS]: unlimited-rate dnsperf run; records qps, avg latency, lost, rcodes.
perf() {
    local name=$1 test=$2 ecs=() out
    [[ ${3:-} == ecs ]] && ecs=(-E "8:$ECS_HEX")
    out="$RUN/$name-$test.dnsperf"
    dnsperf -s "$ADDR" -p "${PORT[$name]}" -d "$RUN/queries.txt" -l "$DURATION" \
        -c "$CLIENTS" -T "$THREADS" -q "$OUTSTANDING" -t 2 "${ecs[@]}" >"$out" 2>&1 ||
        log "$name $test: dnsperf exited non-zero"
    R[$name|$test|qps]=$(awk '/Queries per second:/ {printf "%.0f", $4}' "$out")
    R[$name|$test|avg]=$(awk '/Average Latency/ {printf "%.3f", $4 * 1000}' "$out")
    R[$name|$test|lost]=$(awk '/Queries lost:/ {print $3}' "$out")
    R[$name|$test|sent]=$(awk '/Queries sent:/ {print $3}' "$out")
    R[$name|$test|rcodes]=$(sed -n 's/.*Response codes: *//p' "$out")
    log "$name $test: ${R[$name|$test|qps]:-?} q/s, avg ${R[$name|$test|avg]:-?} ms," \
        "lost ${R[$name|$test|lost]:-?}/${R[$name|$test|sent]:-?}, ${R[$name|$test|rcodes]:-?}"
}

# lat NAME TEST [ECS]: fixed-rate dnsperf -v run; records p50 and p99 (ms).
lat() {
    local name=$1 test=$2 ecs=() out
    [[ ${3:-} == ecs ]] && ecs=(-E "8:$ECS_HEX")
    out="$RUN/$name-$test.lat"
    dnsperf -s "$ADDR" -p "${PORT[$name]}" -d "$RUN/queries.txt" -l "$LAT_DURATION" \
        -c "$CLIENTS" -T 1 -Q "$LAT_QPS" -t 2 -v "${ecs[@]}" >"$out" 2>&1 || true
    awk '/^> / {print $NF * 1000; if ($2 != "NOERROR") bad++}
         END {print "bad", bad + 0 > "/dev/stderr"}' "$out" 2>"$out.bad" | sort -n >"$out.ms"
    local p50 p99
    read -r p50 p99 < <(awk '{v[NR] = $1}
        END {if (NR == 0) {print "n/a n/a"; exit}
             i50 = int(NR * 0.50); if (i50 < 1) i50 = 1
             i99 = int(NR * 0.99); if (i99 < 1) i99 = 1
             printf "%.3f %.3f\n", v[i50], v[i99]}' "$out.ms")
    R[$name|$test|p50]=$p50
    R[$name|$test|p99]=$p99
    R[$name|$test|latbad]=$(awk '{print $2}' "$out.bad")
    log "$name $test @ $LAT_QPS q/s: p50 $p50 ms, p99 $p99 ms," \
        "$(wc -l <"$out.ms") answers, ${R[$name|$test|latbad]:-?} not NOERROR"
}

# cpu NAME TEST [ECS]: fixed-rate dnsperf run at CPU_QPS; records the server's CPU time
# per query answered, in microseconds.
cpu() {
    local name=$1 test=$2 ecs=() out mark ticks answered
    [[ ${3:-} == ecs ]] && ecs=(-E "8:$ECS_HEX")
    out="$RUN/$name-$test.cpu"
    mark=$(cpu_mark "$SERVER_PID")
    dnsperf -s "$ADDR" -p "${PORT[$name]}" -d "$RUN/queries.txt" -l "$CPU_DURATION" \
        -c "$CLIENTS" -T 1 -Q "$CPU_QPS" -t 2 "${ecs[@]}" >"$out" 2>&1 || true
    ticks=$(cpu_since "$mark" "$SERVER_PID")
    answered=$(awk '/Queries completed:/ {print $3}' "$out")
    R[$name|$test|cpu]=$(cpu_us_per_req "$ticks" "${answered:-0}")
    log "$name $test @ $CPU_QPS q/s: ${R[$name|$test|cpu]} us CPU per query" \
        "(${answered:-?} answered)"
}

measure() {
    local name=$1
    check_answers "$name" before
    # 1 s of warm-up load, not counted (same for every server)
    dnsperf -s "$ADDR" -p "${PORT[$name]}" -d "$RUN/queries.txt" -l 1 -c "$CLIENTS" \
        -T "$THREADS" -q "$OUTSTANDING" -t 2 >"$RUN/$name-warmup.dnsperf" 2>&1 || true
    perf "$name" plain
    perf "$name" ecs ecs
    lat "$name" plain
    lat "$name" ecs ecs
    cpu "$name" plain
    cpu "$name" ecs ecs
    if kill -0 "$SERVER_PID" 2>/dev/null; then
        check_answers "$name" after
    else
        log "$name: the server DIED during the runs (see $RUN/$name.log)"
        R[$name|check|after]=died
    fi
    R[$name|ok]=1
}

report() {
    local s t label
    printf '\nGSLB DNS: dnsperf -l %s -c %s -T %s -q %s (q/s, avg); -Q %s -l %s (p50, p99); -Q %s -l %s (CPU); ECS %s\n' \
        "$DURATION" "$CLIENTS" "$THREADS" "$OUTSTANDING" "$LAT_QPS" "$LAT_DURATION" \
        "$CPU_QPS" "$CPU_DURATION" "$ECS_LABEL"
    printf '%-6s %-6s %10s %9s %9s %9s %9s %9s %12s %12s %8s\n' test server "q/s" "avg ms" \
        "p50 ms" "p99 ms" "cpu us/q" lost ours/gdnsd ours/knot wrong
    : >"$RESULTS"
    for t in plain ecs; do
        for s in $SERVERS; do
            [[ -n ${R[$s|ok]:-} ]] || { printf '%-6s %-6s %10s\n' "$t" "$s" "n/a"; continue; }
            local og="" ok=""
            if [[ $s == ours ]]; then
                og=$(ratio "${R[ours|$t|qps]:-}" "${R[gdnsd|$t|qps]:-}" "")
                ok=$(ratio "${R[ours|$t|qps]:-}" "${R[knot|$t|qps]:-}" "")
            fi
            label="${R[$s|check|before]:-?}/${R[$s|check|after]:-?}"
            printf '%-6s %-6s %10s %9s %9s %9s %9s %9s %12s %12s %8s\n' "$t" "$s" \
                "${R[$s|$t|qps]:-?}" "${R[$s|$t|avg]:-?}" "${R[$s|$t|p50]:-?}" \
                "${R[$s|$t|p99]:-?}" "${R[$s|$t|cpu]:-?}" "${R[$s|$t|lost]:-?}" "$og" "$ok" \
                "$label"
            printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$s" "${R[$s|$t|qps]:-}" \
                "${R[$s|$t|avg]:-}" "${R[$s|$t|p50]:-}" "${R[$s|$t|p99]:-}" \
                "${R[$s|$t|lost]:-}" "${R[$s|$t|rcodes]:-}" "${R[$s|$t|cpu]:-}" >>"$RESULTS"
        done
    done
    printf '%s\n' "ratios: ours q/s divided by the peer's (above 1 = ours ahead);" \
        "wrong = wrong answers before/after the load (of ${#CHECKS[@]} client subnets)." \
        "Latency ratios (p99, ours/peer; below 1 = ours faster):"
    for t in plain ecs; do
        printf '  %-5s ours/gdnsd %s  ours/knot %s\n' "$t" \
            "$(ratio "${R[ours|$t|p99]:-}" "${R[gdnsd|$t|p99]:-}" "")" \
            "$(ratio "${R[ours|$t|p99]:-}" "${R[knot|$t|p99]:-}" "")"
    done
    echo "CPU per query ratios (ours/peer; below 1 = ours cheaper):"
    for t in plain ecs; do
        printf '  %-5s ours/gdnsd %s  ours/knot %s\n' "$t" \
            "$(ratio "${R[ours|$t|cpu]:-}" "${R[gdnsd|$t|cpu]:-}" "")" \
            "$(ratio "${R[ours|$t|cpu]:-}" "${R[knot|$t|cpu]:-}" "")"
    done
    log "results: $RESULTS; dnsperf outputs in the run directory (KEEP_RUN=1 keeps it)"
}

main() {
    ensure_dns_tools
    check_ports_free
    RUN=$(mktemp -d "$RUN_BASE/lingjing-dns.XXXXXX")
    trap cleanup EXIT
    trap 'exit 130' INT TERM
    echo "$QNAME A" >"$RUN/queries.txt"
    log "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg);" \
        "$(dnsperf -h 2>&1 | grep -m1 Version), gdnsd $(gdnsd -h 2>&1 | sed -n 's/.*gdnsd version \([^ ]*\).*/\1/p' | head -n1)," \
        "knotd $(knotd -V 2>&1 | awk '{print $NF}')"
    local s
    for s in $SERVERS; do
        SERVER_PID=""
        if "start_$s"; then
            measure "$s"
            stop_pid "$SERVER_PID"
        else
            log "$s: not available (did not start or answer); skipped"
            [[ -n $SERVER_PID ]] && stop_pid "$SERVER_PID"
        fi
    done
    report
}

main "$@"
