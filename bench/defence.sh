#!/usr/bin/env bash
# Traffic defence benchmark (issue 13): how fast an edge node finds a flood and how fast
# every other node refuses it too, and what the per-request accounting costs on cache hits.
#
#   bench/defence.sh                                  # default: 5 runs of each part
#   PARTS=detect bench/defence.sh                     # only part 1; PARTS=throughput: part 2
#   RUNS=3 DURATION=5s bench/defence.sh               # fewer / shorter runs
#   RUNS=1 DURATION=2s SETTLE=0 bench/defence.sh      # smoke run (figures meaningless)
#
# Part 1, detection and fleet-wide block. Each run starts a fresh `lingjing up` (control
# plane, demo origin and the demo topology's edge nodes, each on its own 127.0.1.x
# address; every port picked free) in a new data directory, lowers the demo service's
# per-source threshold (`defence.source_rps`, SOURCE_RPS) through the API, waits until
# both edges run the new snapshot (their /healthz version), then runs
# bench/defence/flood.py: FLOOD_SOURCES addresses 127.9.RUN.1.. each send FLOOD_RPS
# requests a second to edge A (EDGE_A) for www.demo.example, while every source also
# asks edge B (EDGE_B, which the flood never touches) once every PROBE_INTERVAL seconds.
# Recorded, in seconds after t0 (the flood's start):
#   detect       the first 429 edge A answers a flood request (detected there);
#   fleet        the first 429 edge B answers a flood source (the control plane made a
#                fleet-wide rule of A's report, and B got it);
#   fleet all    when every flood source has had its 429 from B.
# Goals: detected within 2 s, blocked on every node within 5 s. Also logged per run: the
# flood rate reached, the answers of each edge, the control plane's event for the attack
# (`GET /v1/defence/events`: detected, relative to t0; its `started` is the start of the
# edge's first one-second window over the threshold, so it may precede t0), and edge A's
# `lingjing_edge_defence_detection_seconds` histogram (window-granular).
#
# Part 2, throughput cost on cache hits. wrk on a cached 1 KiB object (/1k.bin, from the
# nginx origin of bench/cdn) against four servers, one at a time, the order rotated from
# run to run:
#   ours-on      `lingjing edge --standalone bench/defence/edge-snapshot.json`, defence
#                on (the default), thresholds so high that nothing is refused: every
#                request is screened and counted, none refused;
#   ours-off     the same with --no-defence;
#   nginx        nginx proxy_cache (bench/defence/nginx-cache.conf);
#   nginx-limit  the same with limit_req per client address at 1,000,000 r/s (accounting
#                only: nothing is refused).
# Figures: requests/s (median over the runs, min-max), the server's CPU time per request
# in that run (/proc/PID/stat, as bench/cdn.sh), and the cost ratios ours-on/ours-off and
# nginx-limit/nginx-plain, each computed within one run (median, min-max). Goal: ours
# costs under 5 % (ratio at least 0.95). A turn whose wrk saw any non-2xx answer, or ours
# refused anything, is reported (the comparison would be void).
#
# Before each run (part 1) and each turn (part 2) the script waits (SETTLE seconds at most)
# until the cores are quiet (bench/lib.sh `settle`), prints the load line, and marks the
# run BUSY (a "*" in the tables) when they are not.
#
# Ports (part 2, all 127.0.0.1): origin 18000 (bench/cdn/nginx-origin.conf), nginx 18021,
# ours 18023 (admin 18024). Part 1's `lingjing up` picks free ports. Missing tools are
# installed with apt-get (Debian/Ubuntu, as root). Everything started is stopped on exit.
#
# Environment (defaults in brackets):
#   RUNS [5]  TP_RUNS [$RUNS]                     runs of part 1 / of part 2 (at least 3
#                                                 for figures worth reporting)
#   PARTS ["detect throughput"]                   which parts
#   SETTLE [60] (seconds)  BUSY_CPU [0.15]  BUSY_WINDOW [2]   wait for a quiet machine
#   SOURCE_RPS [50]                               the service's defence.source_rps
#   FLOOD_SOURCES [8]  FLOOD_RPS [3 x SOURCE_RPS]  FLOOD_CONNS [2]   the flood
#   PROBE_INTERVAL [0.05] (seconds)               probes of B per source (below SOURCE_RPS)
#   FLOOD_TIMEOUT [30] (seconds)                  give up on a run after this
#   EDGE_A [wuxi-1-e1]  EDGE_B [suqian-1-e1]      the flooded and the probed node
#   DURATION [10s]  CONNS [64]  THREADS [2]       wrk runs of part 2
#   SERVERS ["ours-on ours-off nginx nginx-limit"]  part 2's servers (run 1's order)
#   OURS_ARGS []                                  extra flags for `lingjing edge` (part 2)
#   LINGJING_BIN [target/dist/lingjing]           our binary (cargo build --profile dist -p lingjing)
#   KEEP_RUN [0]                                  1: keep the run directory (logs) on exit
#   RESULTS [$TMPDIR/lingjing-defence-results.tsv]  machine-readable results
#   RUN_BASE [/dev/shm if writable, else $TMPDIR]   where the run directory goes
set -euo pipefail
PATH=$PATH:/usr/sbin:/sbin # nginx lives in sbin

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CONF="$ROOT/bench/defence"
CDN_CONF="$ROOT/bench/cdn"

RUNS=${RUNS:-5}
TP_RUNS=${TP_RUNS:-$RUNS}
PARTS=${PARTS:-detect throughput}
SETTLE=${SETTLE:-60}
SOURCE_RPS=${SOURCE_RPS:-50}
FLOOD_SOURCES=${FLOOD_SOURCES:-8}
FLOOD_RPS=${FLOOD_RPS:-$((SOURCE_RPS * 3))}
FLOOD_CONNS=${FLOOD_CONNS:-2}
PROBE_INTERVAL=${PROBE_INTERVAL:-0.05}
FLOOD_TIMEOUT=${FLOOD_TIMEOUT:-30}
EDGE_A=${EDGE_A:-wuxi-1-e1}
EDGE_B=${EDGE_B:-suqian-1-e1}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
SERVERS=${SERVERS:-ours-on ours-off nginx nginx-limit}
LINGJING_BIN=${LINGJING_BIN:-$ROOT/target/dist/lingjing}
KEEP_RUN=${KEEP_RUN:-0}
RESULTS=${RESULTS:-${TMPDIR:-/tmp}/lingjing-defence-results.tsv}
if [[ -z ${RUN_BASE:-} ]]; then
    if [[ -d /dev/shm && -w /dev/shm ]]; then RUN_BASE=/dev/shm; else RUN_BASE=${TMPDIR:-/tmp}; fi
fi

DEMO_HOST=www.demo.example # the demo service's hostname (part 1)
HOST_HEADER=bench.example  # the standalone snapshot's (part 2)
OBJECT=/1k.bin
ADDR=127.0.0.1
PORT_ORIGIN=18000
PORT_NGINX=18021
PORT_OURS=18023
PORT_OURS_ADMIN=18024

RUN=""             # private run directory (data directories, configs, logs)
SERVER_PID=""      # the server being measured
PIDS=()            # every process this script started, stopped on exit
declare -A D=()    # part 1, per run: D[run|field]
declare -A T=()    # part 2, per run: T[run|server|field]
declare -A BUSY=() # BUSY[part|run] or BUSY[server|run]=1: started on a busy machine
declare -A LOADS=() # the load line before each run / turn

# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

has_part() { [[ " $PARTS " == *" $1 "* ]]; }

# ---------------------------------------------------------------------------------------
# Setup
# ---------------------------------------------------------------------------------------

check_setup() {
    [[ -x $LINGJING_BIN ]] || die "$LINGJING_BIN not found: build it with" \
        "\`cargo build --profile dist -p lingjing\` or point LINGJING_BIN at a lingjing binary"
    "$LINGJING_BIN" edge --help 2>&1 | grep -q -- --no-defence ||
        die "$LINGJING_BIN has no traffic defence (\`lingjing edge --help\` lists no --no-defence)"
    local tools=(python3=python3 curl=curl)
    has_part throughput && tools+=(nginx=nginx wrk=wrk)
    ensure_tools --stop nginx "${tools[@]}"
    # A flood must be over the threshold, and the probes of B well under it (or B would
    # detect the probes itself and the fleet-wide figure would mean nothing).
    awk -v f="$FLOOD_RPS" -v s="$SOURCE_RPS" 'BEGIN {exit !(f > s)}' ||
        die "FLOOD_RPS ($FLOOD_RPS) must be above SOURCE_RPS ($SOURCE_RPS)"
    awk -v i="$PROBE_INTERVAL" -v s="$SOURCE_RPS" 'BEGIN {exit !(i > 0 && 1 / i <= s / 2)}' ||
        die "probes every ${PROBE_INTERVAL}s are too many for SOURCE_RPS $SOURCE_RPS (at most half of it)"
    ((RUNS <= 250)) || die "RUNS is at most 250 (a run's sources are 127.9.RUN.x)"
    ((FLOOD_SOURCES >= 1 && FLOOD_SOURCES <= 250)) || die "FLOOD_SOURCES is 1 to 250"
    if has_part throughput; then
        local p
        for p in "$PORT_ORIGIN" "$PORT_NGINX" "$PORT_OURS" "$PORT_OURS_ADMIN"; do
            tcp_port_in_use "$ADDR" "$p" && die "port $ADDR:$p is already in use; stop whatever listens there"
        done
        ((TP_RUNS >= 3)) || log "note: TP_RUNS=$TP_RUNS; use at least 3 for figures worth reporting"
        ((CONNS <= 200)) || log "note: CONNS=$CONNS is above the edge's per-source caps" \
            "(--max-new-conns-per-source 200/s); pass OURS_ARGS to raise them"
    fi
    return 0
}

make_run_dir() {
    RUN=$(mktemp -d "$RUN_BASE/lingjing-defence.XXXXXX")
    chmod 755 "$RUN" # nginx workers drop privileges; they must reach their dirs
    if has_part throughput; then
        mkdir -p "$RUN/origin/www" "$RUN/origin/tmp" "$RUN/nginx/tmp"
        head -c 1024 /dev/urandom >"$RUN/origin/www/1k.bin"
        head -c 102400 /dev/urandom >"$RUN/origin/www/100k.bin"
        chmod 644 "$RUN"/origin/www/*
    fi
}

# duration_s: DURATION (wrk's -d: 10, 10s, 2m) in seconds.
duration_s() {
    case $DURATION in
        *m) echo $((${DURATION%m} * 60)) ;;
        *s) echo "${DURATION%s}" ;;
        *) echo "$DURATION" ;;
    esac
}

# ---------------------------------------------------------------------------------------
# Part 1: detection and fleet-wide block
# ---------------------------------------------------------------------------------------

# edge_addr LOG NODE FIELD: from `lingjing up`'s summary line
# "  edge NODE  http://IP:PORT  admin http://IP:PORT ...", the http (FIELD 1) or admin
# (FIELD 2) address.
edge_addr() {
    awk -v n="$2" -v f="$3" '$1 == "edge" && $2 == n {
        k = 0
        for (i = 3; i <= NF; i++) if ($i ~ /^http:\/\//) { k++; if (k == f) { sub("http://", "", $i); print $i; exit } }
    }' "$1"
}

# demo_ok ADDR: the edge at ADDR serves the demo site (200).
demo_ok() {
    [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 2 -H "Host: $DEMO_HOST" \
        "http://$1/" 2>/dev/null) == 200 ]]
}

# snapshot_version ADMIN: the snapshot version an edge runs (its /healthz says "ok N").
snapshot_version() { curl -s --max-time 2 "http://$1/healthz" 2>/dev/null | awk '{print $2}'; }

# versions_past A_ADMIN B_ADMIN VA VB: both edges run a snapshot newer than VA / VB.
versions_past() {
    local a b
    a=$(snapshot_version "$1")
    b=$(snapshot_version "$2")
    [[ -n $a && -n $b && $a -gt $3 && $b -gt $4 ]]
}

# metric ADMIN NAME [LABEL_FILTER]: the sum of NAME's series (whose labels contain the
# filter) on the edge's /metrics, or 0.
metric() {
    curl -s --max-time 2 "http://$1/metrics" 2>/dev/null |
        awk -v n="$2" -v f="${3:-}" '!/^#/ {
            name = $1; sub(/\{.*/, "", name)
            if (name == n && index($1, f) > 0) s += $NF
        } END {printf "%g\n", s + 0}'
}

# detect_run: one run of part 1 (RUN_NO): a fresh `lingjing up`, the flood, its figures
# into D[RUN_NO|...].
detect_run() {
    local r=$RUN_NO data="$RUN/up-$RUN_NO" log="$RUN/up-$RUN_NO.log" load
    local a b a_admin b_admin va vb i sources="" out line kv
    load=$(settle "$SETTLE")
    LOADS["detect|$r"]=$load
    [[ $load == *BUSY ]] && BUSY["detect|$r"]=1
    log "=== detect run $r/$RUNS: $load"

    # Every port free (0); the access log off (it would write a line per flood request);
    # the rest of the servers' info log kept (what defence detects, snapshots applied).
    start_bg "up-$r" env RUST_LOG="info,lingjing::access=warn" "$LINGJING_BIN" --data-dir "$data" up \
        --listen "$ADDR:0" --origin-listen "$ADDR:0" --dns-listen "$ADDR:0" \
        --dns-admin "$ADDR:0" --edge-http-port 0 --edge-https-port 0 --edge-admin-port 0 \
        --s3-listen "$ADDR:0" --s3-admin "$ADDR:0" --storage-port 0
    local up=$LAST_PID
    wait_for 600 "$up" grep -qs 'Lingjing is up' "$log" ||
        die "lingjing up did not start within 60 s (see $log)"
    a=$(edge_addr "$log" "$EDGE_A" 1)
    a_admin=$(edge_addr "$log" "$EDGE_A" 2)
    b=$(edge_addr "$log" "$EDGE_B" 1)
    b_admin=$(edge_addr "$log" "$EDGE_B" 2)
    [[ -n $a && -n $b && -n $a_admin && -n $b_admin ]] ||
        die "edges $EDGE_A and $EDGE_B not found in lingjing up's summary (see $log)"
    wait_for 300 "$up" demo_ok "$a" || die "$EDGE_A ($a) does not serve $DEMO_HOST (see $log)"
    wait_for 300 "$up" demo_ok "$b" || die "$EDGE_B ($b) does not serve $DEMO_HOST (see $log)"

    # The threshold, through the API; then wait until both edges run a snapshot made
    # after it, and a few seconds more (a snapshot that raced the change is followed by
    # the next within milliseconds; health checks settle: rise is 3 checks 1 s apart).
    va=$(snapshot_version "$a_admin")
    vb=$(snapshot_version "$b_admin")
    python3 "$CONF/api.py" "$data" set-defence demo "{\"source_rps\": $SOURCE_RPS}" \
        >"$RUN/defence-$r.json" || die "cannot set the demo service's defence settings"
    wait_for 200 "$up" versions_past "$a_admin" "$b_admin" "${va:-0}" "${vb:-0}" ||
        die "the edges did not take the new settings within 20 s (versions $va $vb)"
    sleep 3
    log "up: $EDGE_A http://$a (admin $a_admin), $EDGE_B http://$b; defence" \
        "$(cat "$RUN/defence-$r.json")"

    for ((i = 1; i <= FLOOD_SOURCES; i++)); do sources+="127.9.$r.$i,"; done
    out="$RUN/flood-$r.txt"
    python3 "$CONF/flood.py" --target "$a" --probe "$b" --host "$DEMO_HOST" \
        --sources "${sources%,}" --rate "$FLOOD_RPS" --conns "$FLOOD_CONNS" \
        --probe-interval "$PROBE_INTERVAL" --timeout "$FLOOD_TIMEOUT" >"$out" 2>&1 || true
    line=$(grep '^FLOOD_KV ' "$out" | tail -n 1) || {
        log "run $r: the flood gave no result:"
        tail -n 5 "$out" >&2
        stop_pid "$up"
        return 0
    }
    for kv in ${line#FLOOD_KV }; do D["$r|${kv%%=*}"]=${kv#*=}; done

    # What the control plane and edge A say about it.
    sleep 1
    python3 "$CONF/api.py" "$data" events demo "${D["$r|t0_wall_ms"]}" >"$RUN/events-$r.txt" 2>&1 || true
    D["$r|event"]=$(awk '/^EVENT / {sub(/^EVENT /, ""); print; exit}' "$RUN/events-$r.txt")
    D["$r|event_detected"]=$(awk '/^EVENT / {
        for (i = 2; i <= NF; i++) if ($i ~ /^detected=/) {sub(/^detected=/, "", $i); print $i}
        exit}' "$RUN/events-$r.txt")
    D["$r|a_hist_sum"]=$(metric "$a_admin" lingjing_edge_defence_detection_seconds_sum)
    D["$r|a_hist_count"]=$(metric "$a_admin" lingjing_edge_defence_detection_seconds_count)
    D["$r|a_refused"]=$(metric "$a_admin" lingjing_edge_defence_requests_refused_total)
    D["$r|b_refused"]=$(metric "$b_admin" lingjing_edge_defence_requests_refused_total)
    D["$r|b_refused_detected"]=$(metric "$b_admin" lingjing_edge_defence_requests_refused_total 'reason="detected"')
    curl -s --max-time 2 "http://$a_admin/metrics" >"$RUN/metrics-a-$r.txt" 2>/dev/null || true
    curl -s --max-time 2 "http://$b_admin/metrics" >"$RUN/metrics-b-$r.txt" 2>/dev/null || true
    stop_pid "$up"

    if [[ ${D["$r|rate_per_source"]:-n/a} != n/a ]] &&
        awk -v r="${D["$r|rate_per_source"]}" -v t="$FLOOD_RPS" 'BEGIN {exit !(r < 0.9 * t)}'; then
        log "run $r: WARNING: the flood reached ${D["$r|rate_per_source"]} of $FLOOD_RPS req/s per source"
    fi
    log "run $r: detect ${D["$r|t_detect"]:-n/a} s, fleet ${D["$r|t_fleet"]:-n/a} s," \
        "fleet (all sources) ${D["$r|t_fleet_all"]:-n/a} s; flood ${D["$r|rate_per_source"]:-?}" \
        "req/s per source; A answered ${D["$r|a"]:-n/a}, B ${D["$r|b"]:-n/a}" \
        "(first refusal on A: ${D["$r|a_first_kind"]:-none}, on B: ${D["$r|b_first_kind"]:-none})"
    log "run $r: control plane event: ${D["$r|event"]:-none}; edge A detection_seconds" \
        "sum ${D["$r|a_hist_sum"]} count ${D["$r|a_hist_count"]}; refused A ${D["$r|a_refused"]}," \
        "B ${D["$r|b_refused"]} (detected: ${D["$r|b_refused_detected"]})"
}

# ---------------------------------------------------------------------------------------
# Part 2: throughput cost on cache hits
# ---------------------------------------------------------------------------------------


start_origin() { start_nginx_origin "$CDN_CONF"; }

# start_nginx [limit]: nginx proxy_cache; with "limit", limit_req per client address.
start_nginx() {
    cp "$CONF/nginx-cache.conf" "$RUN/nginx/nginx.conf"
    if [[ ${1:-} == limit ]]; then
        # shellcheck disable=SC2016 # nginx's variable, written as is
        printf '%s\n' 'limit_req_zone $binary_remote_addr zone=perip:10m rate=1000000r/s;' \
            'limit_req zone=perip burst=1000000 nodelay;' >"$RUN/nginx/limit.conf"
    else
        echo '# no limit_req' >"$RUN/nginx/limit.conf"
    fi
    rm -rf "$RUN/nginx/cache"
    nginx -t -q -p "$RUN/nginx/" -c "$RUN/nginx/nginx.conf" -e stderr ||
        die "nginx config does not load"
    start_bg "nginx-${1:-plain}" nginx -p "$RUN/nginx/" -c "$RUN/nginx/nginx.conf" -e stderr \
        -g 'daemon off;'
    SERVER_PID=$LAST_PID
    wait_http "$PORT_NGINX" "$SERVER_PID" || die "nginx did not start (see $RUN/nginx-${1:-plain}.log)"
}

# start_ours on|off: the edge, standalone, defence on (default) or --no-defence.
start_ours() {
    local extra=(--no-access-log --memory-cache-mb 256)
    [[ $1 == off ]] && extra+=(--no-defence)
    # shellcheck disable=SC2206 # OURS_ARGS is a list of extra flags, split on spaces
    extra+=(${OURS_ARGS:-})
    start_bg "ours-$1" "$LINGJING_BIN" edge --standalone "$CONF/edge-snapshot.json" \
        --listen "$ADDR:$PORT_OURS" --admin "$ADDR:$PORT_OURS_ADMIN" --node bench-edge \
        "${extra[@]}"
    SERVER_PID=$LAST_PID
    wait_http "$PORT_OURS" "$SERVER_PID" || die "lingjing edge did not start (see $RUN/ours-$1.log)"
}

server_port() { case $1 in ours-*) echo "$PORT_OURS" ;; *) echo "$PORT_NGINX" ;; esac; }

# warm SRV: fetches the object three times; fails unless the last answer is a 200 with
# the whole object; logs its cache header.
warm() {
    local port hdrs i
    port=$(server_port "$1")
    for i in 1 2 3; do
        hdrs=$(curl -s -D - -o /dev/null -w 'size=%{size_download}\n' -H "Host: $HOST_HEADER" \
            "http://$ADDR:$port$OBJECT" || true)
    done
    [[ $hdrs == "HTTP/1.1 200"* && $hdrs == *size=1024* ]] || {
        log "$1: $OBJECT did not come back whole: $(head -n 1 <<<"$hdrs")"
        return 1
    }
    log "$1: $OBJECT warm: $(grep -iE '^(x-cache-status|x-cache):' <<<"$hdrs" | tr -d '\r' | paste -sd ' ' -)"
}

# tp_turn SRV: one turn of SRV in run RUN_NO: settle, start, warm, wrk, stop.
tp_turn() {
    local srv=$1 r=$RUN_NO load port out mark ticks mid line kv counted="" refused=""
    load=$(settle "$SETTLE")
    LOADS["$srv|$r"]=$load
    [[ $load == *BUSY ]] && BUSY["$srv|$r"]=1
    log "=== $srv (run $r/$TP_RUNS): $load"
    case $srv in
        ours-on) start_ours on ;;
        ours-off) start_ours off ;;
        nginx) start_nginx ;;
        nginx-limit) start_nginx limit ;;
        *) die "unknown server $srv" ;;
    esac
    warm "$srv" || die "$srv does not serve $OBJECT (see $RUN)"
    port=$(server_port "$srv")
    out="$RUN/wrk-$srv-$r.txt"
    mark=$(cpu_mark "$SERVER_PID")
    wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" -H "Host: $HOST_HEADER" \
        -s "$CDN_CONF/report.lua" "http://$ADDR:$port$OBJECT" >"$out" 2>&1 &
    local wrk_pid=$!
    # Half-way, ours says how many requests defence counted in the last second (0 or
    # absent with --no-defence).
    mid=$(duration_s)
    sleep "$(awk -v d="$mid" 'BEGIN {printf "%.1f", d / 2}')"
    if [[ $srv == ours-* ]]; then
        counted=$(metric "$ADDR:$PORT_OURS_ADMIN" lingjing_edge_defence_service_rate \
            'reason="requests"')
    fi
    wait "$wrk_pid" || true
    ticks=$(cpu_since "$mark" "$SERVER_PID")
    if [[ $srv == ours-* ]]; then
        refused=$(metric "$ADDR:$PORT_OURS_ADMIN" lingjing_edge_defence_requests_refused_total)
        T["$r|$srv|counted_rps"]=$counted
        T["$r|$srv|refused"]=$refused
    fi
    stop_pid "$SERVER_PID"
    SERVER_PID=""
    line=$(grep '^WRK_RESULT ' "$out" | tail -n 1) || { log "$srv: wrk gave no result ($out)"; return 0; }
    for kv in ${line#WRK_RESULT }; do T["$r|$srv|${kv%%=*}"]=${kv#*=}; done
    local errs=$((T["$r|$srv|err_connect"] + T["$r|$srv|err_read"] + T["$r|$srv|err_write"] +
        T["$r|$srv|err_status"] + T["$r|$srv|err_timeout"]))
    T["$r|$srv|errors"]=$errs
    T["$r|$srv|cpu_us"]=$(cpu_us_per_req "$ticks" "${T["$r|$srv|requests"]}")
    ((errs == 0)) || log "$srv: WARNING: $errs errors or non-2xx answers (see $out): the comparison is void"
    [[ -z $refused || $refused == 0 ]] || log "$srv: WARNING: defence refused $refused requests"
    log "$srv: $(fmt_rps "${T["$r|$srv|rps"]}") req/s, ${T["$r|$srv|cpu_us"]} us CPU per request" \
        "${counted:+(defence counted $counted req in the last second, half-way)}"
}

# rotated RUN: SERVERS rotated left by RUN - 1.
rotated() {
    local -a s
    read -r -a s <<<"$SERVERS"
    local n=${#s[@]} i order=()
    for ((i = 0; i < n; i++)); do order+=("${s[(i + $1 - 1) % n]}"); done
    echo "${order[*]}"
}

# ---------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------

fmt_rps() { [[ -n ${1:-} ]] && awk -v v="$1" 'BEGIN {printf "%.0f", v}' || echo n/a; }
fmt_s() { [[ -n ${1:-} && $1 != n/a ]] && awk -v v="$1" 'BEGIN {printf "%.2f s", v}' || echo n/a; }

# column PREFIX FIELD RUNS: FIELD of every run (D[run|FIELD] or T[run|PREFIX|FIELD]).
column() {
    local r
    for ((r = 1; r <= $3; r++)); do
        if [[ -z $1 ]]; then echo "${D["$r|$2"]:-n/a}"; else echo "${T["$r|$1|$2"]:-n/a}"; fi
    done
}

# verdict FIELD GOAL: "met" when FIELD was measured in every run, each within GOAL
# seconds; else "NOT met" and why.
verdict() {
    local missing hi="" vals=()
    missing=$(count_missing "$1")
    mapfile -t vals < <(column "" "$1" "$RUNS")
    read -r _ _ hi < <(stats "${vals[@]}") || true
    if [[ -z $hi ]]; then
        echo "not measured"
    elif ((missing > 0)); then
        echo "NOT met ($missing of $RUNS runs not within ${FLOOD_TIMEOUT}s)"
    else
        awk -v v="$hi" -v g="$2" 'BEGIN {printf "%s (max %.2f s)\n", (v <= g) ? "met" : "NOT met", v}'
    fi
}

# count_missing FIELD: runs in which FIELD was not measured.
count_missing() {
    local n=0 v
    while read -r v; do [[ $v == n/a ]] && n=$((n + 1)); done < <(column "" "$1" "$RUNS")
    echo "$n"
}

report_detect() {
    local r f m lo hi label vals=()
    echo
    echo "1. Detection and fleet-wide block: $RUNS runs, a fresh \`lingjing up\` each"
    echo "   flood: $FLOOD_SOURCES sources (127.9.RUN.1-$FLOOD_SOURCES) x $FLOOD_RPS req/s on $EDGE_A" \
        "($FLOOD_CONNS keep-alive connections each); demo service source_rps=$SOURCE_RPS;"
    echo "   $EDGE_B probed from every source every ${PROBE_INTERVAL}s; times in seconds after the flood's start"
    printf '   %-4s %8s %8s %10s %9s  %-22s %-22s %s\n' run detect fleet 'fleet all' 'req/s/src' \
        'A answered' 'B answered' 'load before'
    for ((r = 1; r <= RUNS; r++)); do
        printf '   %-4s %8s %8s %10s %9s  %-22s %-22s %s\n' "$r${BUSY["detect|$r"]:+*}" \
            "${D["$r|t_detect"]:-n/a}" "${D["$r|t_fleet"]:-n/a}" "${D["$r|t_fleet_all"]:-n/a}" \
            "${D["$r|rate_per_source"]:-n/a}" "${D["$r|a"]:-n/a}" \
            "${D["$r|b"]:-n/a}" "${LOADS["detect|$r"]:-n/a}"
    done
    for f in t_detect t_fleet t_fleet_all event_detected; do
        case $f in
            t_detect) label="detected on $EDGE_A (first 429)" ;;
            t_fleet) label="refused on $EDGE_B (first 429)" ;;
            t_fleet_all) label="refused on $EDGE_B (every source)" ;;
            event_detected) label="control plane event 'detected'" ;;
        esac
        mapfile -t vals < <(column "" "$f" "$RUNS")
        read -r m lo hi < <(stats "${vals[@]}") || true
        printf '   %-38s median %-8s max %-8s (not measured in %s of %s runs)\n' "$label" \
            "$(fmt_s "${m:-}")" "$(fmt_s "${hi:-}")" "$(count_missing "$f")" "$RUNS"
        m="" hi=""
    done
    echo "   goal: detected within 2 s: $(verdict t_detect 2)"
    echo "   goal: blocked on every node within 5 s: first source $(verdict t_fleet 5);" \
        "every source $(verdict t_fleet_all 5)"
    if [[ $(count_missing t_detect) != 0 || $(count_missing t_fleet_all) != 0 ]]; then
        echo "   a run without a figure: nothing within FLOOD_TIMEOUT=${FLOOD_TIMEOUT}s (see the log lines above)"
    fi
    for ((r = 1; r <= RUNS; r++)); do
        if [[ -n ${BUSY["detect|$r"]:-} ]]; then
            echo "   * = the run started on a busy machine (more than $BUSY_CPU of the cores' time busy)"
            break
        fi
    done
}

# cost_ratio A B [FIELD]: "x0.970 (0.950–0.990)": A/B of FIELD (default rps) within each
# run, median (min–max).
cost_ratio() {
    local r a b vals=() m f=${3:-rps}
    for ((r = 1; r <= TP_RUNS; r++)); do
        a=${T["$r|$1|$f"]:-}
        b=${T["$r|$2|$f"]:-}
        [[ -n $a && -n $b && $a != n/a && $b != n/a ]] && vals+=("$(frac "$a" "$b")")
    done
    m=$(median "${vals[@]+"${vals[@]}"}")
    [[ -n $m ]] || { echo n/a; return 0; }
    printf 'x%.3f (%s)\n' "$m" "$(spread --format %.3f "${vals[@]}")"
}

report_throughput() {
    local srv r busy m rps=() cpu=()
    echo
    echo "2. Throughput on cache hits: $OBJECT (1 KiB), wrk -t$THREADS -c$CONNS -d$DURATION" \
        "(keep-alive, one client address); $TP_RUNS runs, server order rotated"
    printf '   %-12s %10s %18s %12s %8s  %s\n' server 'req/s' 'min-max' 'CPU us/req' errors \
        'defence counted (req/s, half-way)'
    for srv in $SERVERS; do
        busy=""
        for ((r = 1; r <= TP_RUNS; r++)); do [[ -n ${BUSY["$srv|$r"]:-} ]] && busy="*"; done
        mapfile -t rps < <(column "$srv" rps "$TP_RUNS")
        mapfile -t cpu < <(column "$srv" cpu_us "$TP_RUNS")
        printf '   %-12s %10s %18s %12s %8s  %s\n' "$srv$busy" "$(fmt_rps "$(median "${rps[@]}")")" \
            "$(spread --format %.0f "${rps[@]}")" "$(median "${cpu[@]}")" \
            "$(column "$srv" errors "$TP_RUNS" | awk '{s += $1} END {print s + 0}')" \
            "$(column "$srv" counted_rps "$TP_RUNS" | paste -sd' ' -)"
    done
    local ours nginx
    ours=$(cost_ratio ours-on ours-off)
    nginx=$(cost_ratio nginx-limit nginx)
    echo "   req/s, with / without: ours (defence) $ours; nginx (limit_req) $nginx"
    echo "   CPU us per request, with / without: ours $(cost_ratio ours-on ours-off cpu_us);" \
        "nginx $(cost_ratio nginx-limit nginx cpu_us)"
    if [[ $ours != n/a ]]; then
        m=${ours%% *}
        m=${m#x}
        echo "   goal: ours costs under 5 %: $(awk -v r="$m" 'BEGIN {
            printf "%s (cost %.1f %%)", (r >= 0.95) ? "met" : "NOT met", (1 - r) * 100}')"
    fi
    for ((r = 1; r <= TP_RUNS; r++)); do
        for srv in $(rotated "$r"); do
            printf '   run %d %-12s %s\n' "$r" "$srv" "${LOADS["$srv|$r"]:-n/a}"
        done
    done
    [[ ${#BUSY[@]} -eq 0 ]] || echo "   * = at least one turn started on a busy machine" \
        "(more than $BUSY_CPU of the cores' time busy): figures not comparable"
    echo "   Ratios are computed within each run (same load on the machine), then the median."
    echo "   wrk and the server share the cores: CPU us per request tells the costs apart"
    echo "   where the request rates converge on wrk's own limit."
}

versions() {
    local out
    out="lingjing: $("$LINGJING_BIN" --version 2>&1 | head -n 1)"
    if has_part throughput; then
        out+=", nginx $(nginx -v 2>&1 | sed 's/.*nginx\///; s/ .*//'), wrk $(wrk -v 2>&1 | awk 'NR == 1 {print $2}')"
    fi
    echo "$out"
}

write_results() {
    local k
    {
        printf 'key\tvalue\n'
        for k in "${!D[@]}"; do printf 'detect %s\t%s\n' "$k" "${D[$k]}"; done | sort -V
        for k in "${!T[@]}"; do printf 'throughput %s\t%s\n' "$k" "${T[$k]}"; done | sort -V
        for k in "${!LOADS[@]}"; do printf 'load %s\t%s\n' "$k" "${LOADS[$k]}"; done | sort -V
    } >"$RESULTS"
    log "results: $RESULTS"
}

main() {
    check_setup
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    trap cleanup EXIT
    trap 'exit 130' INT TERM
    make_run_dir
    log "machine: $(load_line); run directory: $RUN; binary: $LINGJING_BIN"
    if has_part detect; then
        for ((RUN_NO = 1; RUN_NO <= RUNS; RUN_NO++)); do detect_run; done
    fi
    if has_part throughput; then
        start_origin
        local srv
        for ((RUN_NO = 1; RUN_NO <= TP_RUNS; RUN_NO++)); do
            log "=== throughput run $RUN_NO/$TP_RUNS: $(rotated "$RUN_NO")"
            for srv in $(rotated "$RUN_NO"); do tp_turn "$srv"; done
        done
    fi
    echo
    echo "Traffic defence benchmark, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores; $(versions)"
    has_part detect && report_detect
    has_part throughput && report_throughput
    write_results
}

main "$@"
