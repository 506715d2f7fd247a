#!/usr/bin/env bash
# CDN edge benchmark: Lingjing's edge node ("ours") against nginx (proxy_cache) and
# Varnish configured for the same job, all on loopback in front of one nginx origin.
#
#   bench/cdn.sh                              # default run, about 2-3 minutes
#   DURATION=30s CONNS=128 bench/cdn.sh       # longer / wider
#   SERVERS="nginx ours" bench/cdn.sh         # a subset
#
# For each server, one at a time (the others are stopped), it measures:
#   - cache hits of /1k.bin and /100k.bin over keep-alive HTTP/1.1 with wrk:
#     requests/s, p50 and p99 latency, resident memory of the server after the run, and
#     how many requests reached the origin during the run (a hit run must add none);
#   - the same over cleartext HTTP/2 (h2c, prior knowledge) with h2load, where supported;
#   - the miss path: every request a new URL, so every one is fetched from the origin;
#   - request collapsing: COLLAPSE_N clients ask at once for one uncached URL whose origin
#     response takes about a second; the origin's access log says how many fetches it got.
#
# Ports (all 127.0.0.1): origin 18000; nginx 18001 (h2c 18011); varnish 18002 (h1 + h2c);
# ours 18003 (admin 18004). Configs are in bench/cdn/. Servers run in the foreground of
# background jobs with a private run directory; everything is stopped on exit.
#
# Missing tools are installed with apt-get (Debian/Ubuntu, as root).
# Environment (defaults in brackets):
#   DURATION [10s]  CONNS [64]  THREADS [2]          wrk runs (hits and miss)
#   H2_DURATION [5] (seconds)  H2_STREAMS [10]       h2load runs (-D, -m); H2=0 skips them
#   MISS_DURATION [$DURATION]                        miss-path run
#   COLLAPSE_N [200]                                 concurrent clients in the collapse test
#   SERVERS ["nginx varnish ours"]                   which servers, in order
#   LINGJING_BIN [target/release/lingjing]           our binary
#   OURS_ARGS []                                     extra flags for `lingjing edge`
#   BUILD_OURS [0]                                   1: cargo build --release -p lingjing first
#   KEEP_RUN [0]                                     1: keep the run directory (logs) on exit
#   RESULTS [$TMPDIR/lingjing-cdn-results.tsv]       machine-readable results
#   RUN_BASE [/dev/shm if writable, else $TMPDIR]    where the run directory (caches) goes
set -euo pipefail
PATH=$PATH:/usr/sbin:/sbin # nginx and varnishd live in sbin

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CONF="$ROOT/bench/cdn"

DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
H2=${H2:-1}
H2_DURATION=${H2_DURATION:-5}
H2_STREAMS=${H2_STREAMS:-10}
MISS_DURATION=${MISS_DURATION:-$DURATION}
COLLAPSE_N=${COLLAPSE_N:-200}
SERVERS=${SERVERS:-nginx varnish ours}
LINGJING_BIN=${LINGJING_BIN:-$ROOT/target/release/lingjing}
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
declare -A R=()   # results: R[server|test|field]
NONCE="$(date +%s)-$$"

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------------------------------
# Setup and teardown
# ---------------------------------------------------------------------------------------

# Installs the tools that are missing (one apt-get update, one install).
ensure_tools() {
    local -A pkg_of=([nginx]=nginx [varnishd]=varnish [wrk]=wrk [h2load]=nghttp2-client
        [curl]=curl [python3]=python3 [cc]=gcc)
    local missing=() cmd
    for cmd in "${!pkg_of[@]}"; do
        command -v "$cmd" >/dev/null 2>&1 || missing+=("${pkg_of[$cmd]}")
    done
    [[ ${#missing[@]} -eq 0 ]] && return 0
    [[ $(id -u) -eq 0 ]] || die "missing packages (${missing[*]}); run as root or install them"
    command -v apt-get >/dev/null 2>&1 || die "missing packages (${missing[*]}) and no apt-get"
    log "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # policy-rc.d may or may not stop the packages' services from starting; we never use
    # them (our servers have their own configs and ports), but stop them if they did start.
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    local p
    for p in nginx varnish; do
        if [[ " ${missing[*]} " == *" $p "* ]] && command -v service >/dev/null 2>&1; then
            service "$p" stop >/dev/null 2>&1 || true
        fi
    done
}

# Stops every process we started (by pid), then removes the run directory.
cleanup() {
    local pid
    for pid in "${PIDS[@]+"${PIDS[@]}"}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]+"${PIDS[@]}"}"; do
        wait_gone "$pid" 50 || kill -KILL "$pid" 2>/dev/null || true
    done
    if [[ -n $RUN && -d $RUN ]]; then
        if [[ $KEEP_RUN == 1 ]]; then log "run directory kept: $RUN"; else rm -rf "$RUN"; fi
    fi
}

# wait_gone PID TENTHS: waits until PID has exited; fails after TENTHS/10 seconds.
wait_gone() {
    local i
    for ((i = 0; i < $2; i++)); do
        kill -0 "$1" 2>/dev/null || return 0
        sleep 0.1
    done
    return 1
}

port_in_use() { (exec 3<>"/dev/tcp/$ADDR/$1") 2>/dev/null; }

check_ports_free() {
    local p
    for p in "$PORT_ORIGIN" "$PORT_NGINX" "$PORT_NGINX_H2" "$PORT_VARNISH" "$PORT_OURS" \
        "$PORT_OURS_ADMIN"; do
        port_in_use "$p" && die "port $ADDR:$p is already in use; stop whatever listens there"
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

# start_bg NAME CMD...: starts CMD in the background, output to $RUN/NAME.log.
start_bg() {
    local name=$1
    shift
    "$@" >"$RUN/$name.log" 2>&1 &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
}

# stop_pid PID: stops one server we started, waits for it and forgets it.
stop_pid() {
    local p keep=()
    kill -TERM "$1" 2>/dev/null || true
    wait_gone "$1" 100 || kill -KILL "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
    for p in "${PIDS[@]+"${PIDS[@]}"}"; do [[ $p == "$1" ]] || keep+=("$p"); done
    PIDS=("${keep[@]+"${keep[@]}"}")
}

# wait_http PORT PID: waits (10 s at most) until a GET of / on PORT gets any HTTP answer
# while PID stays alive.
wait_http() {
    local i
    for ((i = 0; i < 100; i++)); do
        kill -0 "$2" 2>/dev/null || return 1
        if curl -s -o /dev/null --max-time 1 "http://$ADDR:$1/" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}

# ---------------------------------------------------------------------------------------
# Servers. Each start_* sets SERVER_PID (or returns non-zero); stop with stop_pid.
# ---------------------------------------------------------------------------------------

start_origin() {
    nginx -t -q -p "$RUN/origin/" -c "$CONF/nginx-origin.conf" -e stderr ||
        die "origin config does not load"
    start_bg origin nginx -p "$RUN/origin/" -c "$CONF/nginx-origin.conf" -e stderr \
        -g 'daemon off;'
    ORIGIN_PID=$LAST_PID
    wait_http "$PORT_ORIGIN" "$ORIGIN_PID" || die "origin did not start (see $RUN/origin.log)"
}

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
#   cargo build --release -p lingjing      ->  target/release/lingjing (or LINGJING_BIN)
#   lingjing edge --standalone bench/cdn/edge-snapshot.json \
#       --listen 127.0.0.1:18003 --admin 127.0.0.1:18004 --node bench-edge
# serving bench.example from the origin 127.0.0.1:18000 over HTTP/1.1 keep-alive (and h2c
# with prior knowledge on the same port, if supported: otherwise the h2 rows read n/a).
# --no-access-log and --memory-cache-mb 256 are added when `lingjing edge --help` lists
# them. Returns non-zero (and the run goes on with the peers) when it is not there or does
# not answer HTTP within 10 s.
start_ours() {
    if [[ $BUILD_OURS == 1 ]]; then
        log "ours: cargo build --release -p lingjing"
        (cd "$ROOT" && cargo build --release -p lingjing) >"$RUN/ours-build.log" 2>&1 ||
            { log "ours: build failed (see $RUN/ours-build.log)"; return 1; }
    fi
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
    local root=$1 field=$2 total=0 pid ppid v
    local -a todo=("$root") all=()
    local -A children=()
    while read -r pid ppid; do
        children[$ppid]+="$pid "
    done < <(awk '/^Pid:/ {p = $2} /^PPid:/ {print p, $2; nextfile}' \
        /proc/[0-9]*/status 2>/dev/null)
    while [[ ${#todo[@]} -gt 0 ]]; do
        pid=${todo[0]}
        todo=("${todo[@]:1}")
        all+=("$pid")
        # shellcheck disable=SC2206 # splitting the list of child pids is intended
        [[ -n ${children[$pid]:-} ]] && todo+=(${children[$pid]})
    done
    for pid in "${all[@]}"; do
        if [[ $field == VmRSS ]]; then
            v=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
        else
            v=$(awk '/^Pss:/ {print $2}' "/proc/$pid/smaps_rollup" 2>/dev/null || true)
        fi
        total=$((total + ${v:-0}))
    done
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
    out="$RUN/wrk-$srv-${obj#/}.txt"
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
    out="$RUN/h2load-$srv-${obj#/}.txt"
    reqlog="$RUN/h2load-$srv-${obj#/}.log"
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
    out="$RUN/wrk-$srv-miss.txt"
    before=$(origin_requests)
    wrk -t"$THREADS" -c"$CONNS" -d"$MISS_DURATION" --latency -H "Host: $HOST_HEADER" \
        -s "$CONF/miss.lua" "http://$ADDR:$port/" -- "$NONCE-$srv" >"$out" 2>&1 || true
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
    path="/slow/collapse-$NONCE-$srv"
    out="$RUN/collapse-$srv.txt"
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

# bench_server SRV: starts SRV, runs every measurement, stops it.
bench_server() {
    local srv=$1 obj
    SERVER_PID=""
    log "=== $srv"
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
    stop_pid "$SERVER_PID"
    SERVER_PID=""
    rm -rf "${RUN:?}/$srv/cache" # the miss run's objects; free the memory for the next one
}

# ---------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------

fmt_rps() { [[ -n ${1:-} ]] && awk -v v="$1" 'BEGIN {printf "%.0f", v}' || echo n/a; }
fmt_ms() { [[ -n ${1:-} ]] && awk -v v="$1" 'BEGIN {printf "%.2f ms", v / 1000}' || echo n/a; }
fmt_mib() { [[ -n ${1:-} ]] && awk -v v="$1" 'BEGIN {printf "%.1f", v / 1024}' || echo n/a; }
# ratio A B: "x" A/B with two decimals, or n/a.
ratio() {
    if [[ -z ${1:-} || -z ${2:-} ]]; then echo n/a; return; fi
    awk -v a="$1" -v b="$2" 'BEGIN {if (b == 0) print "n/a"; else printf "x%.2f", a / b}'
}

# frac A B: A/B with two decimals, or n/a.
frac() { ratio "$@" | sed 's/^x//'; }

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

report() {
    local obj t srv
    echo
    echo "CDN edge benchmark, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, load tool and servers on the same cores"
    echo "wrk -t$THREADS -c$CONNS -d$DURATION --latency; h2load -D $H2_DURATION -c $CONNS -m $H2_STREAMS -t $THREADS (h2c)"
    echo "$(versions); run directory on $RUN_BASE"
    echo "load average before the run: $LOAD_START (the run itself drives it up)"
    for obj in "${OBJECTS[@]}"; do
        t="hit$obj"
        echo
        echo "Cache hits, ${OBJECT_LABEL[$obj]} ($obj), HTTP/1.1 keep-alive"
        printf '  %-8s %10s %10s %10s %9s %9s %8s   %10s %10s %10s\n' server 'req/s' p50 p99 \
            'RSS MiB' 'PSS MiB' 'origin' 'h2c req/s' 'h2c p50' 'h2c p99'
        for srv in $SERVERS; do
            if [[ ${R["$srv|available"]:-0} != 1 ]]; then
                printf '  %-8s %10s\n' "$srv" "not available"
                continue
            fi
            printf '  %-8s %10s %10s %10s %9s %9s %8s   %10s %10s %10s\n' "$srv" \
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
            { printf '  %-8s %10s\n' "$srv" "not available"; continue; }
        printf '  %-8s %10s %10s %10s %12s\n' "$srv" "$(fmt_rps "${R["$srv|miss|rps"]:-}")" \
            "$(fmt_ms "${R["$srv|miss|p50_us"]:-}")" "$(fmt_ms "${R["$srv|miss|p99_us"]:-}")" \
            "$(frac "${R["$srv|miss|origin"]:-}" "${R["$srv|miss|requests"]:-}")"
    done
    echo "  $(ratios_line miss)"
    echo
    echo "Collapse: $COLLAPSE_N clients at once for one uncached URL (origin takes ~1 s)"
    printf '  %-8s %16s %10s %10s\n' server 'origin fetches' ratio 'clients ok'
    for srv in $SERVERS; do
        [[ ${R["$srv|available"]:-0} == 1 ]] ||
            { printf '  %-8s %16s\n' "$srv" "not available"; continue; }
        printf '  %-8s %16s %10s %10s\n' "$srv" \
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
    echo "above 1 and p99, RSS below 1 mean ours is ahead."
}

write_results() {
    local k
    {
        printf 'key\tvalue\n'
        for k in "${!R[@]}"; do printf '%s\t%s\n' "$k" "${R[$k]}"; done | sort
    } >"$RESULTS"
    log "results: $RESULTS"
}

main() {
    ensure_tools
    # Room for every connection (the servers inherit it).
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    check_ports_free
    trap cleanup EXIT
    trap 'exit 130' INT TERM
    LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
    if awk -v l="${LOAD_START%% *}" 'BEGIN {exit !(l > 0.5)}'; then
        log "note: load average $LOAD_START before the run; something else is busy, expect noise"
    fi
    make_run_dir
    log "run directory: $RUN"
    start_origin
    local srv
    for srv in $SERVERS; do bench_server "$srv"; done
    report
    write_results
}

main "$@"
