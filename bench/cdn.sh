#!/usr/bin/env bash
# CDN edge benchmark: Lingjing's edge node ("ours") against nginx (proxy_cache) and
# Varnish configured for the same job, all on loopback in front of one nginx origin.
#
#   bench/cdn.sh                              # default run: 3 runs, about 20-25 minutes
#   RUNS=5 DURATION=30s CONNS=128 bench/cdn.sh  # more runs / longer / wider
#   SERVERS="nginx ours" bench/cdn.sh         # a subset
#   DURATION=2s RUNS=1 SETTLE=0 bench/cdn.sh  # smoke run (figures meaningless)
#
# RUNS runs; in each, every server in turn (the others are stopped), the order rotated
# from run to run (run 1: nginx varnish ours, run 2: varnish ours nginx, ...) so that no
# server always goes first or last. Before each server's turn the script waits (SETTLE
# seconds at most) until at most BUSY_CPU of the cores' time is busy over BUSY_WINDOW
# seconds (/proc/stat), then prints that share and the load average; if the cores are
# still busy, something else is using the machine and that turn is marked BUSY: its
# figures carry a "*" in the tables. Each turn measures:
#   - cache hits of /1k.bin and /100k.bin over keep-alive HTTP/1.1 with wrk:
#     requests/s, p50 and p99 latency, resident memory of the server after the run, and
#     how many requests reached the origin during the run (a hit run must add none);
#   - the same over cleartext HTTP/2 (h2c, prior knowledge) with h2load, where supported;
#   - the miss path: every request a new URL, so every one is fetched from the origin;
#   - request collapsing: COLLAPSE_N clients ask at once for one uncached URL whose origin
#     response takes about a second; the origin's access log says how many fetches it got;
#   - CPU time per request at a fixed request rate, for each of those scenarios: the
#     server's user + system CPU time (/proc/PID/stat of it and its child processes)
#     over the requests answered while h2load sends CPU_RATE requests a second (h2load
#     --rps, a fixed rate per connection: wrk2 is not in Debian, nor are oha or vegeta;
#     h2load comes with nghttp2-client) for CPU_DURATION seconds, over HTTP/1.1 (--h1) or
#     h2c as the scenario; the miss path at MISS_CPU_RATE on one connection (every URL
#     new: h2load's URL list is per connection). The unlimited-rate runs share the cores
#     with the load tool, so fast servers converge on its limit; the CPU each spends per
#     request still tells them apart.
# Figures reported are medians over the runs; the summary table gives the spread
# (min-max over the runs) of ours/peer ratios, each computed within one run.
#
# Ports (all 127.0.0.1): origin 18000; nginx 18001 (h2c 18011); varnish 18002 (h1 + h2c);
# ours 18003 (admin 18004). Configs are in bench/cdn/. Servers run in the foreground of
# background jobs with a private run directory; everything is stopped on exit. Shared
# helpers are in bench/lib.sh.
#
# Missing tools are installed with apt-get (Debian/Ubuntu, as root).
# Environment (defaults in brackets):
#   RUNS [3]  SETTLE [90] (seconds)  BUSY_CPU [0.15]  BUSY_WINDOW [2] (seconds)
#                                                    runs, wait for a quiet machine
#   DURATION [10s]  CONNS [64]  THREADS [2]          wrk runs (hits and miss)
#   H2_DURATION [5] (seconds)  H2_STREAMS [10]       h2load runs (-D, -m); H2=0 skips them
#   MISS_DURATION [$DURATION]                        miss-path run
#   COLLAPSE_N [200]                                 concurrent clients in the collapse test
#   CPU_RATE [5000]  CPU_CONNS [10]  CPU_DURATION [5] (seconds)   fixed-rate CPU runs
#   MISS_CPU_RATE [500]                              fixed-rate CPU run of the miss path
#   CPU_H2_STREAMS [100]                             streams a connection may have open in
#                                                    the h2c CPU runs (h2load -m): the rate
#                                                    holds even with slow answers
#   CPU=0                                            skips the fixed-rate CPU runs
#   SERVERS ["nginx varnish ours"]                   which servers (run 1's order)
#   LINGJING_BIN [target/dist/lingjing]           our binary
#   OURS_ARGS []                                     extra flags for `lingjing edge`
#   BUILD_OURS [0]                                   1: cargo build --profile dist -p lingjing first
#   KEEP_RUN [0]                                     1: keep the run directory (logs) on exit
#   RESULTS [$TMPDIR/lingjing-cdn-results.tsv]       machine-readable results
#   RUN_BASE [/dev/shm if writable, else $TMPDIR]    where the run directory (caches) goes
set -euo pipefail
PATH=$PATH:/usr/sbin:/sbin # nginx and varnishd live in sbin

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CONF="$ROOT/bench/cdn"

RUNS=${RUNS:-3}
SETTLE=${SETTLE:-90}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
H2=${H2:-1}
H2_DURATION=${H2_DURATION:-5}
H2_STREAMS=${H2_STREAMS:-10}
MISS_DURATION=${MISS_DURATION:-$DURATION}
COLLAPSE_N=${COLLAPSE_N:-200}
CPU=${CPU:-1}
CPU_RATE=${CPU_RATE:-5000}
CPU_CONNS=${CPU_CONNS:-10}
CPU_DURATION=${CPU_DURATION:-5}
MISS_CPU_RATE=${MISS_CPU_RATE:-500}
CPU_H2_STREAMS=${CPU_H2_STREAMS:-100}
SERVERS=${SERVERS:-nginx varnish ours}
LINGJING_BIN=${LINGJING_BIN:-$ROOT/target/dist/lingjing}
BUILD_OURS=${BUILD_OURS:-0}
KEEP_RUN=${KEEP_RUN:-0}
RESULTS=${RESULTS:-${TMPDIR:-/tmp}/lingjing-cdn-results.tsv}
# nginx's cache is files: on a journaling disk its miss path is ~5x slower than on tmpfs.
if [[ -z ${RUN_BASE:-} ]]; then
    if [[ -d /dev/shm && -w /dev/shm ]]; then RUN_BASE=/dev/shm; else RUN_BASE=${TMPDIR:-/tmp}; fi
fi

HOST_HEADER=bench.example
ADDR=127.0.0.1
PORT_ORIGIN=18000
PORT_NGINX=18001
PORT_NGINX_H2=18011
PORT_VARNISH=18002
PORT_OURS=18003
PORT_OURS_ADMIN=18004

OBJECTS=("/1k.bin" "/100k.bin")
declare -A OBJECT_SIZE=([/1k.bin]=1024 [/100k.bin]=102400)
declare -A OBJECT_LABEL=([/1k.bin]="1 KiB" [/100k.bin]="100 KiB")

RUN=""            # private run directory (configs, caches, logs)
SERVER_PID=""     # the server being measured (its processes are this one and descendants)
PIDS=()           # every process this script started, stopped on exit
declare -A R=()   # results: R[server|test|field] (the current run's; medians after all)
declare -A RUNR=() # every run's results: RUNR[run|server|test|field]
declare -A BUSY=() # BUSY[server|run]=1: that turn started on a busy machine
declare -A LOADS=() # LOADS[server|run]: the load line before that turn
RUN_NO=0          # the run in progress (1..RUNS)
NONCE="$(date +%s)-$$"

# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

# ---------------------------------------------------------------------------------------
# Setup and teardown
# ---------------------------------------------------------------------------------------

# Installs the tools that are missing (one apt-get update, one install).
ensure_cdn_tools() {
    ensure_tools --stop nginx --stop varnish nginx=nginx varnishd=varnish wrk=wrk \
        h2load=nghttp2-client curl=curl python3=python3 cc=gcc
}

check_ports_free() {
    local p
    for p in "$PORT_ORIGIN" "$PORT_NGINX" "$PORT_NGINX_H2" "$PORT_VARNISH" "$PORT_OURS" \
        "$PORT_OURS_ADMIN"; do
        tcp_port_in_use "$ADDR" "$p" && die "port $ADDR:$p is already in use; stop whatever listens there"
    done
    return 0
}

make_run_dir() {
    RUN=$(mktemp -d "$RUN_BASE/lingjing-cdn.XXXXXX")
    # nginx workers and varnish's child drop privileges; they must reach their dirs.
    chmod 755 "$RUN"
    mkdir -p "$RUN/origin/www" "$RUN/origin/tmp" "$RUN/nginx/tmp" "$RUN/varnish" "$RUN/ours"
    head -c 1024 /dev/urandom >"$RUN/origin/www/1k.bin"
    head -c 102400 /dev/urandom >"$RUN/origin/www/100k.bin"
    chmod 644 "$RUN"/origin/www/*
    cp "$CONF/varnish.vcl" "$RUN/varnish.vcl"
    chmod 644 "$RUN/varnish.vcl"
}


# ---------------------------------------------------------------------------------------
# Servers. Each start_* sets SERVER_PID (or returns non-zero); stop with stop_pid.
# ---------------------------------------------------------------------------------------

start_origin() { start_nginx_origin "$CONF"; }

start_nginx() {
    nginx -t -q -p "$RUN/nginx/" -c "$CONF/nginx-cache.conf" -e stderr ||
        die "nginx cache config does not load"
    start_bg nginx nginx -p "$RUN/nginx/" -c "$CONF/nginx-cache.conf" -e stderr \
        -g 'daemon off;'
    SERVER_PID=$LAST_PID
    wait_http "$PORT_NGINX" "$SERVER_PID"
}

start_varnish() {
    # Two thread pools (one per core); 50..500 workers each covers 64 busy keep-alive
    # connections plus the collapse test's 200 clients without thread creation in the run.
    start_bg varnish varnishd -F -n "$RUN/varnish" -a "$ADDR:$PORT_VARNISH" -T none \
        -f "$RUN/varnish.vcl" -s malloc,256m \
        -p feature=+http2 -p thread_pools=2 -p thread_pool_min=50 -p thread_pool_max=500
    SERVER_PID=$LAST_PID
    wait_http "$PORT_VARNISH" "$SERVER_PID"
}

# ===================================== HOOK: ours =======================================
# Lingjing's edge node. The contract (see bench/README.md, "CDN edge vs nginx and Varnish"):
#   cargo build --profile dist -p lingjing      ->  target/dist/lingjing (or LINGJING_BIN)
#   lingjing edge --standalone bench/cdn/edge-snapshot.json \
#       --listen 127.0.0.1:18003 --admin 127.0.0.1:18004 --node bench-edge
# serving bench.example from the origin 127.0.0.1:18000 over HTTP/1.1 keep-alive (and h2c
# with prior knowledge on the same port, if supported: otherwise the h2 rows read n/a).
# --no-access-log and --memory-cache-mb 256 are added when `lingjing edge --help` lists
# them. Returns non-zero (and the run goes on with the peers) when it is not there or does
# not answer HTTP within 10 s.
# build_ours: with BUILD_OURS=1, cargo build --profile dist -p lingjing (once, before the runs).
build_ours() {
    [[ $BUILD_OURS == 1 && " $SERVERS " == *" ours "* ]] || return 0
    log "ours: cargo build --profile dist -p lingjing"
    (cd "$ROOT" && cargo build --profile dist -p lingjing) >"$RUN/ours-build.log" 2>&1 ||
        log "ours: build failed (see $RUN/ours-build.log)"
}

start_ours() {
    if [[ ! -x $LINGJING_BIN ]]; then
        log "ours: $LINGJING_BIN not found"
        return 1
    fi
    # Same footing as the peers where the binary offers it: no access log (nginx and
    # Varnish log nothing here) and a 256 MiB memory cache (Varnish's -s malloc,256m).
    local help extra=()
    help=$("$LINGJING_BIN" edge --help 2>&1 || true)
    [[ $help == *--no-access-log* ]] && extra+=(--no-access-log)
    [[ $help == *--memory-cache-mb* ]] && extra+=(--memory-cache-mb 256)
    # shellcheck disable=SC2206 # OURS_ARGS is a list of extra flags, split on spaces
    extra+=(${OURS_ARGS:-})
    log "ours: $LINGJING_BIN edge --standalone ... ${extra[*]}"
    start_bg ours "$LINGJING_BIN" edge --standalone "$CONF/edge-snapshot.json" \
        --listen "$ADDR:$PORT_OURS" --admin "$ADDR:$PORT_OURS_ADMIN" --node bench-edge \
        "${extra[@]}"
    SERVER_PID=$LAST_PID
    if ! wait_http "$PORT_OURS" "$SERVER_PID"; then
        log "ours: \`lingjing edge --standalone\` did not start; its output:"
        tail -n 5 "$RUN/ours.log" >&2 || true
        stop_pid "$SERVER_PID"
        return 1
    fi
}
# ========================================================================================

# server_port NAME [h1|h2]: the port to benchmark NAME on with that protocol.
server_port() {
    case "$1:${2:-h1}" in
        nginx:h1) echo "$PORT_NGINX" ;;
        nginx:h2) echo "$PORT_NGINX_H2" ;;
        varnish:*) echo "$PORT_VARNISH" ;;
        ours:*) echo "$PORT_OURS" ;;
        *) die "unknown server $1" ;;
    esac
}

# ---------------------------------------------------------------------------------------
# Measurements
# ---------------------------------------------------------------------------------------

# mem_kib PID FIELD: sums FIELD (VmRSS from status, or Pss from smaps_rollup) in KiB over
# PID and all its descendants.
mem_kib() {
    local field=$2 total=0 pid v
    while read -r pid; do
        if [[ $field == VmRSS ]]; then
            v=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
        else
            v=$(awk '/^Pss:/ {print $2}' "/proc/$pid/smaps_rollup" 2>/dev/null || true)
        fi
        total=$((total + ${v:-0}))
    done < <(tree_pids "$1")
    echo "$total"
}

# origin_requests: the origin's request counter (stub_status counts itself too).
origin_requests() {
    curl -s --max-time 2 "http://$ADDR:$PORT_ORIGIN/status" | awk 'NR == 3 {print $3}'
}

# warm SERVER PORT: fetches each object three times; fails unless each answer is 2xx with
# the whole object. Warns when the second and third fetches reached the origin (not
# cached) and reports the cache header of the third (X-Cache-Status, X-Cache or Age).
warm() {
    local srv=$1 port=$2 obj before after i hdrs size hit
    for obj in "${OBJECTS[@]}"; do
        if ! curl -sf -o /dev/null -H "Host: $HOST_HEADER" "http://$ADDR:$port$obj"; then
            log "$srv: GET $obj failed or was not 2xx"
            return 1
        fi
        before=$(origin_requests)
        for i in 2 3; do
            hdrs=$(curl -s -D - -o /dev/null -w 'size=%{size_download}\n' \
                -H "Host: $HOST_HEADER" "http://$ADDR:$port$obj" || true)
        done
        after=$(origin_requests)
        size=$(sed -n 's/^size=//p' <<<"$hdrs")
        hit=$(grep -iE '^(x-cache-status|x-cache|age):' <<<"$hdrs" | tr -d '\r' | paste -sd ' ' -)
        if [[ $size != "${OBJECT_SIZE[$obj]}" ]]; then
            log "$srv: $obj came back with ${size:-no} bytes, expected ${OBJECT_SIZE[$obj]}"
            return 1
        fi
        # 1 of the delta is the status request itself.
        if [[ $((after - before - 1)) -ne 0 ]]; then
            log "$srv: WARNING: repeat fetches of $obj reached the origin ($((after - before - 1))x): not cached?"
        fi
        log "$srv: $obj warm; repeat fetch: ${hit:-no cache header}"
    done
}

# parse_wrk FILE SRV TEST: reads the WRK_RESULT line into R[SRV|TEST|...].
parse_wrk() {
    local line kv
    line=$(grep '^WRK_RESULT ' "$1" | tail -n 1) || { log "$2: wrk gave no result ($1)"; return 1; }
    for kv in ${line#WRK_RESULT }; do
        R["$2|$3|${kv%%=*}"]=${kv#*=}
    done
    local errs=$((R["$2|$3|err_connect"] + R["$2|$3|err_read"] + R["$2|$3|err_write"] +
        R["$2|$3|err_status"] + R["$2|$3|err_timeout"]))
    R["$2|$3|errors"]=$errs
    [[ $errs -eq 0 ]] || log "$2: $3: $errs errors/non-2xx responses (see $1)"
}

# hit_run SRV OBJ: wrk on one cached object; records rps, latency, memory, origin requests.
hit_run() {
    local srv=$1 obj=$2 port out before after
    port=$(server_port "$srv")
    out="$RUN/wrk-$srv-${obj#/}-$RUN_NO.txt"
    before=$(origin_requests)
    wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency -H "Host: $HOST_HEADER" \
        -s "$CONF/report.lua" "http://$ADDR:$port$obj" >"$out" 2>&1 || true
    after=$(origin_requests)
    parse_wrk "$out" "$srv" "hit$obj" || return 0
    R["$srv|hit$obj|origin"]=$((after - before - 1))
    R["$srv|hit$obj|rss_kib"]=$(mem_kib "$SERVER_PID" VmRSS)
    R["$srv|hit$obj|pss_kib"]=$(mem_kib "$SERVER_PID" Pss)
    log "$srv: hit $obj: $(fmt_rps "${R["$srv|hit$obj|rps"]}") req/s," \
        "p50 $(fmt_ms "${R["$srv|hit$obj|p50_us"]}"), p99 $(fmt_ms "${R["$srv|hit$obj|p99_us"]}")"
}

# h2_run SRV OBJ: h2load over h2c (prior knowledge) on one cached object.
h2_run() {
    local srv=$1 obj=$2 port out reqlog ok rps
    port=$(server_port "$srv" h2)
    out="$RUN/h2load-$srv-${obj#/}-$RUN_NO.txt"
    reqlog="$RUN/h2load-$srv-${obj#/}-$RUN_NO.log"
    timeout $((H2_DURATION + 30)) h2load -D "$H2_DURATION" -c "$CONNS" -m "$H2_STREAMS" \
        -t "$THREADS" -H ":authority: $HOST_HEADER" --log-file="$reqlog" \
        "http://$ADDR:$port$obj" >"$out" 2>&1 || true
    ok=$(awk '/^requests:/ {print $8}' "$out")
    rps=$(awk '/^finished in/ {gsub(",", "", $4); print $4}' "$out")
    if [[ -z $ok || $ok -eq 0 || -z $rps ]]; then
        log "$srv: h2c $obj: no successful requests (no h2c support?), see $out"
        return 0
    fi
    R["$srv|h2$obj|rps"]=$rps
    R["$srv|h2$obj|errors"]=$(awk '/^requests:/ {print $2 - $8}' "$out")
    # Per-request log lines: start time (us), status, duration (us).
    read -r R["$srv|h2$obj|p50_us"] R["$srv|h2$obj|p99_us"] < <(
        awk '{print $3}' "$reqlog" | sort -n | awk '{v[NR] = $1}
            END {i50 = int(NR * 0.50); i99 = int(NR * 0.99); if (i50 < 1) i50 = 1;
                 if (i99 < 1) i99 = 1; print v[i50], v[i99]}')
    rm -f "$reqlog"
    log "$srv: h2c $obj: $(fmt_rps "$rps") req/s"
}

# miss_run SRV: wrk with a new URL per request (all fetched from the origin).
miss_run() {
    local srv=$1 port out before after
    port=$(server_port "$srv")
    out="$RUN/wrk-$srv-miss-$RUN_NO.txt"
    before=$(origin_requests)
    wrk -t"$THREADS" -c"$CONNS" -d"$MISS_DURATION" --latency -H "Host: $HOST_HEADER" \
        -s "$CONF/miss.lua" "http://$ADDR:$port/" -- "$NONCE-$srv-$RUN_NO" >"$out" 2>&1 || true
    after=$(origin_requests)
    parse_wrk "$out" "$srv" miss || return 0
    R["$srv|miss|origin"]=$((after - before - 1))
    log "$srv: miss: $(fmt_rps "${R["$srv|miss|rps"]}") req/s," \
        "origin saw ${R["$srv|miss|origin"]} of ${R["$srv|miss|requests"]} requests"
}

# collapse_run SRV: COLLAPSE_N simultaneous requests for one new, slow URL; counts the
# origin's fetches of it.
collapse_run() {
    local srv=$1 port path out fetched
    port=$(server_port "$srv")
    path="/slow/collapse-$NONCE-$srv-$RUN_NO"
    out="$RUN/collapse-$srv-$RUN_NO.txt"
    python3 "$CONF/collapse.py" --addr "$ADDR" --port "$port" --path "$path" \
        --host-header "$HOST_HEADER" -n "$COLLAPSE_N" >"$out" 2>&1 || true
    sleep 0.5 # the origin writes its log line when a response has been sent
    fetched=$(grep -cF "\"GET $path HTTP" "$RUN/origin/access.log" 2>/dev/null || true)
    R["$srv|collapse|fetched"]=${fetched:-0}
    R["$srv|collapse|ok"]=$(sed -n 's/.* ok=\([0-9]*\).*/\1/p' "$out")
    R["$srv|collapse|elapsed_ms"]=$(sed -n 's/.* elapsed_ms=\([0-9]*\).*/\1/p' "$out")
    log "$srv: collapse: origin fetched ${R["$srv|collapse|fetched"]} for $COLLAPSE_N" \
        "clients (${R["$srv|collapse|ok"]:-0} ok, ${R["$srv|collapse|elapsed_ms"]:-?} ms)"
}

# cpu_run SRV TEST: h2load at a fixed rate for CPU_DURATION seconds against TEST's
# scenario (hit/OBJ: HTTP/1.1, h2/OBJ: h2c, miss: HTTP/1.1 with a new URL per request);
# records the server's CPU time per request answered (cpu_us) and the rate reached
# (cpu_rps). A rate not reached (below 90 %) is logged: the figure then is at that rate.
cpu_run() {
    local srv=$1 test=$2 proto=h1 target=$CPU_RATE port out urls mark ticks ok i args=()
    case $test in
        hit/*) args=(-c "$CPU_CONNS" --rps "$(((CPU_RATE + CPU_CONNS - 1) / CPU_CONNS))") ;;
        h2/*) proto=h2
            args=(-c "$CPU_CONNS" -m "$CPU_H2_STREAMS"
                --rps "$(((CPU_RATE + CPU_CONNS - 1) / CPU_CONNS))") ;;
        miss) target=$MISS_CPU_RATE ;;
        *) die "unknown test $test" ;;
    esac
    port=$(server_port "$srv" "$proto")
    out="$RUN/cpu-$srv-${test//\//-}-$RUN_NO.txt"
    if [[ $test == miss ]]; then
        # One connection (h2load's URL list is per connection), each URL new.
        urls="$RUN/cpu-miss-urls.txt"
        for ((i = 1; i <= MISS_CPU_RATE * CPU_DURATION * 2 + 100; i++)); do
            echo "http://$ADDR:$port/miss/cpu-$NONCE-$srv-$RUN_NO-$i"
        done >"$urls"
        args=(-c 1 --rps "$MISS_CPU_RATE" -i "$urls")
    else
        args+=("http://$ADDR:$port/${test#*/}")
    fi
    [[ $proto == h1 ]] && args=(--h1 "${args[@]}")
    mark=$(cpu_mark "$SERVER_PID")
    timeout $((CPU_DURATION + 30)) h2load -D "$CPU_DURATION" -t 1 \
        -H ":authority: $HOST_HEADER" "${args[@]}" >"$out" 2>&1 || true
    ticks=$(cpu_since "$mark" "$SERVER_PID")
    ok=$(awk '/^requests:/ {print $8}' "$out")
    if [[ -z $ok || $ok -eq 0 ]]; then
        log "$srv: cpu $test: no successful requests, see $out"
        return 0
    fi
    R["$srv|$test|cpu_us"]=$(cpu_us_per_req "$ticks" "$ok")
    R["$srv|$test|cpu_rps"]=$(awk -v n="$ok" -v d="$CPU_DURATION" 'BEGIN {printf "%.0f", n / d}')
    if awk -v r="${R["$srv|$test|cpu_rps"]}" -v t="$target" 'BEGIN {exit !(r < 0.9 * t)}'; then
        log "$srv: cpu $test: WARNING: ${R["$srv|$test|cpu_rps"]} req/s of $target reached"
    fi
    log "$srv: cpu $test @ ${R["$srv|$test|cpu_rps"]} req/s: ${R["$srv|$test|cpu_us"]} us CPU per request"
}

# The scenarios of the fixed-rate CPU runs and of the summary table.
cpu_tests() {
    local obj
    for obj in "${OBJECTS[@]}"; do echo "hit$obj"; done
    if [[ $H2 == 1 ]]; then
        for obj in "${OBJECTS[@]}"; do echo "h2$obj"; done
    fi
    echo miss
}

# bench_server SRV: one turn of SRV in run RUN_NO: waits for a quiet machine, starts SRV,
# runs every measurement, stops it; keeps its results in RUNR.
bench_server() {
    local srv=$1 k load
    SERVER_PID=""
    for k in "${!R[@]}"; do [[ $k == "$srv|"* ]] && unset "R[$k]"; done
    load=$(settle "$SETTLE")
    LOADS["$srv|$RUN_NO"]=$load
    [[ $load == *BUSY ]] && BUSY["$srv|$RUN_NO"]=1
    log "=== $srv (run $RUN_NO/$RUNS): $load"
    bench_turn "$srv"
    for k in "${!R[@]}"; do [[ $k == "$srv|"* ]] && RUNR["$RUN_NO|$k"]=${R[$k]}; done
    return 0
}

# bench_turn SRV: starts SRV, runs every measurement, stops it.
bench_turn() {
    local srv=$1 obj t
    if ! "start_$srv"; then
        if [[ $srv == ours ]]; then
            echo "ours: not available yet"
            R["ours|available"]=0
            return 0
        fi
        die "$srv did not start (see $RUN/$srv.log)"
    fi
    R["$srv|rss_idle_kib"]=$(mem_kib "$SERVER_PID" VmRSS)
    if ! warm "$srv" "$(server_port "$srv")"; then
        [[ $srv == ours ]] || die "$srv does not serve the objects (see $RUN/$srv.log)"
        echo "ours: started but does not serve bench.example correctly; skipped"
        stop_pid "$SERVER_PID"
        R["ours|available"]=0
        return 0
    fi
    R["$srv|available"]=1
    for obj in "${OBJECTS[@]}"; do hit_run "$srv" "$obj"; done
    if [[ -d $RUN/$srv/cache ]]; then
        R["$srv|cache_files_kib"]=$(du -sk "$RUN/$srv/cache" | awk '{print $1}')
    fi
    if [[ $H2 == 1 ]]; then
        for obj in "${OBJECTS[@]}"; do h2_run "$srv" "$obj"; done
    fi
    miss_run "$srv"
    collapse_run "$srv"
    if [[ $CPU == 1 ]]; then
        while read -r t; do cpu_run "$srv" "$t"; done < <(cpu_tests)
    fi
    stop_pid "$SERVER_PID"
    SERVER_PID=""
    rm -rf "${RUN:?}/$srv/cache" # the miss run's objects; free the memory for the next one
}

# rotated RUN: SERVERS rotated left by RUN - 1 (run 1: as given).
rotated() {
    local -a s
    read -r -a s <<<"$SERVERS"
    local n=${#s[@]} i order=()
    for ((i = 0; i < n; i++)); do order+=("${s[(i + $1 - 1) % n]}"); done
    echo "${order[*]}"
}

# summarize: R[key] = the median of RUNR[run|key] over the runs (available: 1 if any run
# had the server available).
summarize() {
    local k key r
    local -A keys=()
    for k in "${!RUNR[@]}"; do keys[${k#*|}]=1; done
    R=()
    for key in "${!keys[@]}"; do
        local vals=()
        for ((r = 1; r <= RUNS; r++)); do
            [[ -n ${RUNR["$r|$key"]+set} ]] && vals+=("${RUNR["$r|$key"]}")
        done
        if [[ $key == *"|available" ]]; then
            R[$key]=0
            [[ " ${vals[*]} " == *" 1 "* ]] && R[$key]=1
        else
            R[$key]=$(median "${vals[@]}")
        fi
    done
}

# ---------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------

fmt_rps() { [[ -n ${1:-} ]] && awk -v v="$1" 'BEGIN {printf "%.0f", v}' || echo n/a; }
fmt_ms() { [[ -n ${1:-} ]] && awk -v v="$1" 'BEGIN {printf "%.2f ms", v / 1000}' || echo n/a; }
fmt_mib() { [[ -n ${1:-} ]] && awk -v v="$1" 'BEGIN {printf "%.1f", v / 1024}' || echo n/a; }
# ratios_line TEST: ours against each peer for req/s (higher is better), p99 and, for
# hits, RSS (lower is better).
ratios_line() {
    local t=$1 peer out=""
    for peer in nginx varnish; do
        out+="ours/$peer: req/s $(ratio "${R["ours|$t|rps"]:-}" "${R["$peer|$t|rps"]:-}")"
        out+=", p99 $(ratio "${R["ours|$t|p99_us"]:-}" "${R["$peer|$t|p99_us"]:-}")"
        if [[ $t == hit/* ]]; then
            out+=", RSS $(ratio "${R["ours|$t|rss_kib"]:-}" "${R["$peer|$t|rss_kib"]:-}")"
        fi
        out+="; "
    done
    echo "${out%; }"
}

versions() {
    local n v w h
    n=$(nginx -v 2>&1 | sed 's/.*nginx\///; s/ .*//')
    v=$(varnishd -V 2>&1 | sed -n '1s/.*varnish-\([0-9.]*\).*/\1/p')
    w=$(wrk -v 2>&1 | awk 'NR == 1 {print $2}')
    h=$(h2load --version 2>&1 | awk '{print $2}')
    echo "nginx $n, varnish $v, wrk $w, h2load $h"
}

# busy_star SRV: "*" when any of SRV's turns started on a busy machine.
busy_star() {
    local r
    for ((r = 1; r <= RUNS; r++)); do
        [[ -n ${BUSY["$1|$r"]:-} ]] && { echo "*"; return 0; }
    done
    return 0
}

# srv_label SRV: SRV and its busy_star.
srv_label() { echo "$1$(busy_star "$1")"; }

# busy_note: the footnote for the "*" mark, when any turn was busy.
busy_note() {
    [[ ${#BUSY[@]} -gt 0 ]] || return 0
    echo "* = at least one of its turns started with more than $BUSY_CPU of the" \
        "$(nproc) cores' time busy (a busy machine: figures not comparable)."
}

# run_ratios SRV_A SRV_B TEST FIELD: "median (min–max)" of A/B over the runs, each ratio
# within one run, or n/a.
run_ratios() {
    local r a b vals=() m
    for ((r = 1; r <= RUNS; r++)); do
        a=${RUNR["$r|$1|$3|$4"]:-}
        b=${RUNR["$r|$2|$3|$4"]:-}
        [[ -n $a && -n $b ]] && vals+=("$(frac "$a" "$b")")
    done
    m=$(median "${vals[@]+"${vals[@]}"}")
    [[ -n $m ]] || { echo n/a; return 0; }
    printf 'x%.2f (%s)\n' "$m" "$(spread "${vals[@]}")"
}

# slash_join FORMATTER TEST FIELD SRV...: FORMATTER's figure of each server, joined by "/".
slash_join() {
    local fmt=$1 t=$2 f=$3 out="" srv
    shift 3
    for srv in "$@"; do out+="$("$fmt" "${R["$srv|$t|$f"]:-}")/"; done
    echo "${out%/}"
}
fmt_msn() { [[ -n ${1:-} ]] && awk -v v="$1" 'BEGIN {printf "%.2f", v / 1000}' || echo n/a; }
fmt_2f() { [[ -n ${1:-} && $1 != n/a ]] && awk -v v="$1" 'BEGIN {printf "%.2f", v}' || echo n/a; }

# summary_table: one line per scenario: each server's median req/s, ours/peer req/s
# ratio (median and spread over the runs), p99 (ms) and CPU us per request at a fixed
# rate, servers in the order ours, nginx, varnish.
summary_table() {
    local srvs=() peers=() srv t label ratios rps
    for srv in ours nginx varnish; do
        [[ " $SERVERS " == *" $srv "* ]] && srvs+=("$srv")
    done
    for srv in nginx varnish; do
        [[ " $SERVERS " == *" $srv "* && " $SERVERS " == *" ours "* ]] && peers+=("$srv")
    done
    local -A label_of=([hit/1k.bin]="1 KiB hit, HTTP/1.1" [hit/100k.bin]="100 KiB hit, HTTP/1.1"
        [h2/1k.bin]="1 KiB hit, h2c" [h2/100k.bin]="100 KiB hit, h2c" [miss]="miss, 1 KiB")
    echo
    echo "Summary: medians of $RUNS runs; ratio: ours/peer req/s per run, median (min–max);"
    echo "p99 in ms; CPU: us of server CPU per request at a fixed rate (h2load --rps:" \
        "$CPU_RATE req/s, miss $MISS_CPU_RATE req/s)"
    printf '  %-22s' scenario
    for srv in "${srvs[@]}"; do printf ' %13s' "$srv req/s"; done
    for srv in "${peers[@]}"; do printf ' %20s' "ours/$srv"; done
    printf ' %24s %24s\n' "p99 $(IFS=/; echo "${srvs[*]}")" "CPU $(IFS=/; echo "${srvs[*]}")"
    while read -r t; do
        label=${label_of[$t]:-$t}
        printf '  %-22s' "$label"
        for srv in "${srvs[@]}"; do
            rps=$(fmt_rps "${R["$srv|$t|rps"]:-}")
            [[ $rps == n/a ]] || rps+=$(busy_star "$srv")
            printf ' %13s' "$rps"
        done
        for srv in "${peers[@]}"; do
            ratios=$(run_ratios ours "$srv" "$t" rps)
            printf ' %20s' "$ratios"
        done
        printf ' %24s %24s\n' "$(slash_join fmt_msn "$t" p99_us "${srvs[@]}")" \
            "$(slash_join fmt_2f "$t" cpu_us "${srvs[@]}")"
    done < <(cpu_tests)
    echo "  ratio above 1: ours serves more; p99 and CPU: lower is better. $(busy_note)"
}

report() {
    local obj t srv
    echo
    echo "CDN edge benchmark, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, load tool and servers on the same cores"
    echo "wrk -t$THREADS -c$CONNS -d$DURATION --latency; h2load -D $H2_DURATION -c $CONNS -m $H2_STREAMS -t $THREADS (h2c)"
    echo "$(versions); run directory on $RUN_BASE"
    echo "Medians of $RUNS runs (server order rotated between runs); before each turn:"
    local r
    for ((r = 1; r <= RUNS; r++)); do
        for srv in $(rotated "$r"); do
            printf '  run %d %-8s %s\n' "$r" "$srv" "${LOADS["$srv|$r"]:-n/a}"
        done
    done
    for obj in "${OBJECTS[@]}"; do
        t="hit$obj"
        echo
        echo "Cache hits, ${OBJECT_LABEL[$obj]} ($obj), HTTP/1.1 keep-alive"
        printf '  %-8s %10s %10s %10s %9s %9s %8s   %10s %10s %10s\n' server 'req/s' p50 p99 \
            'RSS MiB' 'PSS MiB' 'origin' 'h2c req/s' 'h2c p50' 'h2c p99'
        for srv in $SERVERS; do
            if [[ ${R["$srv|available"]:-0} != 1 ]]; then
                printf '  %-8s %10s\n' "$(srv_label "$srv")" "not available"
                continue
            fi
            printf '  %-8s %10s %10s %10s %9s %9s %8s   %10s %10s %10s\n' "$(srv_label "$srv")" \
                "$(fmt_rps "${R["$srv|$t|rps"]:-}")" "$(fmt_ms "${R["$srv|$t|p50_us"]:-}")" \
                "$(fmt_ms "${R["$srv|$t|p99_us"]:-}")" "$(fmt_mib "${R["$srv|$t|rss_kib"]:-}")" \
                "$(fmt_mib "${R["$srv|$t|pss_kib"]:-}")" "${R["$srv|$t|origin"]:-n/a}" \
                "$(fmt_rps "${R["$srv|h2$obj|rps"]:-}")" "$(fmt_ms "${R["$srv|h2$obj|p50_us"]:-}")" \
                "$(fmt_ms "${R["$srv|h2$obj|p99_us"]:-}")"
        done
        echo "  h1:  $(ratios_line "$t")"
        echo "  h2c: $(ratios_line "h2$obj")"
    done
    echo
    echo "Miss path (a new URL per request, 1 KiB from the origin on loopback), wrk -d$MISS_DURATION"
    printf '  %-8s %10s %10s %10s %12s\n' server 'req/s' p50 p99 'origin/reqs'
    for srv in $SERVERS; do
        [[ ${R["$srv|available"]:-0} == 1 ]] ||
            { printf '  %-8s %10s\n' "$(srv_label "$srv")" "not available"; continue; }
        printf '  %-8s %10s %10s %10s %12s\n' "$(srv_label "$srv")" "$(fmt_rps "${R["$srv|miss|rps"]:-}")" \
            "$(fmt_ms "${R["$srv|miss|p50_us"]:-}")" "$(fmt_ms "${R["$srv|miss|p99_us"]:-}")" \
            "$(frac "${R["$srv|miss|origin"]:-}" "${R["$srv|miss|requests"]:-}")"
    done
    echo "  $(ratios_line miss)"
    echo
    echo "Collapse: $COLLAPSE_N clients at once for one uncached URL (origin takes ~1 s)"
    printf '  %-8s %16s %10s %10s\n' server 'origin fetches' ratio 'clients ok'
    for srv in $SERVERS; do
        [[ ${R["$srv|available"]:-0} == 1 ]] ||
            { printf '  %-8s %16s\n' "$(srv_label "$srv")" "not available"; continue; }
        printf '  %-8s %16s %10s %10s\n' "$(srv_label "$srv")" \
            "${R["$srv|collapse|fetched"]:-n/a}/$COLLAPSE_N" \
            "$(awk -v a="${R["$srv|collapse|fetched"]:-0}" -v n="$COLLAPSE_N" \
                'BEGIN {printf "%.3f", a / n}')" \
            "${R["$srv|collapse|ok"]:-n/a}"
    done
    echo
    echo "RSS: VmRSS summed over the server's processes after the run (PSS: shared pages"
    echo "counted once). nginx keeps cached bodies in files (here on $RUN_BASE: page cache,"
    echo "not in its RSS; $(fmt_mib "${R["nginx|cache_files_kib"]:-}") MiB after the hit runs);"
    echo "Varnish keeps them in its malloc storage (in its RSS). origin: requests that"
    echo "reached the origin during the hit run (0 = all hits). Ratios: ours/peer; req/s"
    echo "above 1 and p99, RSS below 1 mean ours is ahead. $(busy_note)"
}

write_results() {
    local k
    {
        printf 'key\tvalue\n'
        for k in "${!R[@]}"; do printf '%s\t%s\n' "$k" "${R[$k]}"; done | sort
        for k in "${!RUNR[@]}"; do printf 'run %s\t%s\n' "$k" "${RUNR[$k]}"; done | sort -V
        for k in "${!LOADS[@]}"; do printf 'load %s\t%s\n' "$k" "${LOADS[$k]}"; done | sort
    } >"$RESULTS"
    log "results: $RESULTS"
}

main() {
    ensure_cdn_tools
    # Room for every connection (the servers inherit it).
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    check_ports_free
    trap cleanup EXIT
    trap 'exit 130' INT TERM
    log "machine: $(load_line); $RUNS runs, servers rotated between runs"
    make_run_dir
    log "run directory: $RUN"
    build_ours
    start_origin
    local srv
    for ((RUN_NO = 1; RUN_NO <= RUNS; RUN_NO++)); do
        log "=== run $RUN_NO/$RUNS: $(rotated "$RUN_NO")"
        for srv in $(rotated "$RUN_NO"); do bench_server "$srv"; done
    done
    summarize
    report
    summary_table
    write_results
}

main "$@"
