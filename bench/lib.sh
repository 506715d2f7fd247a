# shellcheck shell=bash
# Shared shell helpers of the benchmark scripts (bench/cdn.sh, bench/dns.sh); sourced, never
# run. It owns: logging, installing missing tools, starting and stopping the servers a
# script runs (by pid, never by name) and cleaning up on exit, waiting for a server to
# answer, the load average line and the busy-machine mark, median and spread of repeated
# runs, a process tree's CPU time from /proc/PID/stat (utime + stime) and CPU time per
# request, and ratio printing.
#
# The sourcing script sets, before calling these: RUN (its private run directory, "" until
# made), KEEP_RUN (1: keep RUN on exit), PIDS=() (every process it started) and
# SERVER_PID (the server being measured).

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------------------------------
# Tools
# ---------------------------------------------------------------------------------------

# ensure_tools [--stop SERVICE]... CMD=PACKAGE...: installs, with one apt-get update and
# one install, the packages of the commands missing (Debian/Ubuntu, as root). The packages'
# own services (if the install started them) are stopped afterwards: we never use them
# (our servers have their own configs and ports), and they would take CPU during the runs.
ensure_tools() {
    local stop=() missing=() pair
    while [[ ${1:-} == --stop ]]; do
        stop+=("$2")
        shift 2
    done
    for pair in "$@"; do
        command -v "${pair%%=*}" >/dev/null 2>&1 || missing+=("${pair#*=}")
    done
    [[ ${#missing[@]} -eq 0 ]] && return 0
    # shellcheck disable=SC2207 # dedupe package names
    missing=($(printf '%s\n' "${missing[@]}" | sort -u))
    [[ $(id -u) -eq 0 ]] || die "missing packages (${missing[*]}); run as root or install them"
    command -v apt-get >/dev/null 2>&1 || die "missing packages (${missing[*]}) and no apt-get"
    log "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    local p
    for p in "${stop[@]+"${stop[@]}"}"; do
        if [[ " ${missing[*]} " == *" $p "* ]] && command -v service >/dev/null 2>&1; then
            service "$p" stop >/dev/null 2>&1 || true
        fi
    done
}

# ---------------------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------------------

# wait_gone PID TENTHS: waits until PID has exited; fails after TENTHS/10 seconds.
wait_gone() {
    local i
    for ((i = 0; i < $2; i++)); do
        kill -0 "$1" 2>/dev/null || return 0
        sleep 0.1
    done
    return 1
}

# cleanup: stops every process we started (by pid), then removes the run directory.
# Installed as the EXIT trap.
cleanup() {
    local pid
    for pid in "${PIDS[@]+"${PIDS[@]}"}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]+"${PIDS[@]}"}"; do
        wait_gone "$pid" 50 || kill -KILL "$pid" 2>/dev/null || true
    done
    if [[ -n $RUN && -d $RUN ]]; then
        if [[ $KEEP_RUN == 1 ]]; then log "run directory kept: $RUN"; else rm -rf "$RUN"; fi
    fi
}

# start_bg NAME CMD...: starts CMD in the background, output to $RUN/NAME.log; its pid in
# LAST_PID (and PIDS).
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

# tcp_port_in_use ADDR PORT: something accepts TCP connections on ADDR:PORT.
tcp_port_in_use() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# udp_port_in_use PORT: something listens on UDP PORT.
udp_port_in_use() { ss -Hlun "sport = :$1" 2>/dev/null | grep -q .; }

# wait_for TENTHS PID CMD...: waits (TENTHS/10 seconds at most, 0.1 s apart) until CMD
# succeeds while PID stays alive; fails when PID exits or time runs out.
wait_for() {
    local n=$1 pid=$2 i
    shift 2
    for ((i = 0; i < n; i++)); do
        kill -0 "$pid" 2>/dev/null || return 1
        "$@" && return 0
        sleep 0.1
    done
    return 1
}

# tree_pids PID: PID and all its descendants, one a line (nginx's workers, varnish's child).
tree_pids() {
    local pid ppid
    local -a todo=("$1")
    local -A children=()
    while read -r pid ppid; do
        children[$ppid]+="$pid "
    done < <(awk '/^Pid:/ {p = $2} /^PPid:/ {print p, $2; nextfile}' \
        /proc/[0-9]*/status 2>/dev/null)
    while [[ ${#todo[@]} -gt 0 ]]; do
        pid=${todo[0]}
        todo=("${todo[@]:1}")
        echo "$pid"
        # shellcheck disable=SC2206 # splitting the list of child pids is intended
        [[ -n ${children[$pid]:-} ]] && todo+=(${children[$pid]})
    done
    return 0
}

# pid_ticks PID: user + system CPU time of PID (/proc/PID/stat fields 14 and 15, all its
# threads) in clock ticks, or nothing when it is gone.
pid_ticks() {
    # The command name (field 2) may hold spaces: count the fields after its ")".
    sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | awk '{print $12 + $13}' || true
}

# cpu_mark PID: the CPU time of PID and of each descendant alive now, as "pid:ticks ...",
# for cpu_since.
cpu_mark() {
    local pid t out=""
    while read -r pid; do
        t=$(pid_ticks "$pid")
        [[ -n $t ]] && out+="$pid:$t "
    done < <(tree_pids "$1")
    echo "$out"
}

# cpu_since MARK PID: the CPU ticks PID and its descendants spent since cpu_mark gave MARK:
# for each process alive now, its ticks less those at the mark (all of them for one
# started since). A process that exited in between (nginx's cache loader) counts nothing.
cpu_since() {
    local e pid t total=0
    local -A before=()
    for e in $1; do before[${e%%:*}]=${e#*:}; done
    while read -r pid; do
        t=$(pid_ticks "$pid")
        [[ -n $t ]] && total=$((total + t - ${before[$pid]:-0}))
    done < <(tree_pids "$2")
    echo "$total"
}

# cpu_us_per_req TICKS REQUESTS: CPU microseconds per request, two decimals, or n/a.
cpu_us_per_req() {
    awk -v d="$1" -v hz="$(getconf CLK_TCK)" -v n="${2:-0}" \
        'BEGIN {if (n > 0) printf "%.2f", d / hz / n * 1e6; else print "n/a"}'
}

# ---------------------------------------------------------------------------------------
# The machine: load average and the busy mark
# ---------------------------------------------------------------------------------------

# BUSY_CPU: a run is marked busy when, just before it, more than this share of all cores'
# time was busy (user, system, irq, steal) over BUSY_WINDOW seconds: something else is
# running. The 1-minute load average is printed too, but it is not the test: it still
# carries the previous server's turn for a minute or more (Varnish's ~100 threads keep it
# near 4 on this box), though the machine is idle once that server stopped.
BUSY_CPU=${BUSY_CPU:-0.15}
BUSY_WINDOW=${BUSY_WINDOW:-2}

# cpu_ticks: "busy idle" jiffies of all cores from /proc/stat.
cpu_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9, $5 + $6}' /proc/stat; }

# cpu_busy_share: the share (0-1) of all cores' time spent busy over BUSY_WINDOW seconds.
cpu_busy_share() {
    local a b
    a=$(cpu_ticks)
    sleep "$BUSY_WINDOW"
    b=$(cpu_ticks)
    awk -v a="$a" -v b="$b" 'BEGIN {
        split(a, x, " "); split(b, y, " ");
        busy = y[1] - x[1]; idle = y[2] - x[2];
        if (busy + idle > 0) printf "%.2f", busy / (busy + idle); else print "0.00"
    }'
}

# load_line [SHARE]: "load average L1 L5 L15 on N cores" (", cpu busy P%" with SHARE).
load_line() {
    local line
    line="load average $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
    [[ -n ${1:-} ]] && line+=", cpu busy $(awk -v s="$1" 'BEGIN {printf "%d", s * 100}')%"
    echo "$line"
}

# share_busy SHARE: SHARE is above BUSY_CPU.
share_busy() { awk -v s="$1" -v f="$BUSY_CPU" 'BEGIN {exit !(s > f)}'; }

# machine_busy: more than BUSY_CPU of the cores' time was busy over the next BUSY_WINDOW s.
machine_busy() { share_busy "$(cpu_busy_share)"; }

# settle SECONDS: waits (SECONDS at most) until the cores are quiet (at most BUSY_CPU of
# their time busy over BUSY_WINDOW s); then prints the load line with the busy share, and
# " BUSY" appended when they are still busy (another process is using the machine: the
# turn is marked).
settle() {
    local start=$SECONDS share
    while :; do
        share=$(cpu_busy_share)
        share_busy "$share" || break
        ((SECONDS - start < $1)) || break
    done
    if share_busy "$share"; then echo "$(load_line "$share") BUSY"; else load_line "$share"; fi
}

# ---------------------------------------------------------------------------------------
# Figures: medians, spreads, ratios
# ---------------------------------------------------------------------------------------

# stats VALUE...: "median min max" of the numeric values (others, such as n/a or empty,
# are skipped), or nothing when there is none. The median of an even count is the mean
# of the two middle values.
stats() {
    printf '%s\n' "$@" | awk '/^-?[0-9]+(\.[0-9]*)?([eE][-+]?[0-9]+)?$/' | sort -g |
        awk '{v[NR] = $1}
             END {if (NR == 0) exit
                  m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
                  print m, v[1], v[NR]}'
}

# median VALUE...: the median of the numeric values, or nothing.
median() { local m; read -r m _ < <(stats "$@") || true; echo "${m:-}"; }

# spread VALUE...: "min–max" of the numeric values (with FORMAT, an awk printf format for
# each, default %.2f), or nothing.
spread() {
    local fmt=%.2f lo hi
    if [[ ${1:-} == --format ]]; then
        fmt=$2
        shift 2
    fi
    read -r _ lo hi < <(stats "$@") || return 0
    awk -v a="$lo" -v b="$hi" -v f="$fmt" 'BEGIN {printf f "–" f "\n", a, b}'
}

# ratio A B [MISSING]: "x" A/B with two decimals, or MISSING (default n/a) when either is
# missing or n/a, or B is 0.
ratio() {
    local absent=${3-n/a}
    if [[ -z ${1:-} || -z ${2:-} || $1 == n/a || $2 == n/a ]]; then
        [[ -z $absent ]] || echo "$absent"
        return 0
    fi
    awk -v a="$1" -v b="$2" -v m="$absent" \
        'BEGIN {if (b == 0) {if (m != "") print m} else printf "x%.2f\n", a / b}'
}

# frac A B: A/B with two decimals, or n/a.
frac() { ratio "$@" | sed 's/^x//'; }

# http_answers PORT: a GET of / on $ADDR:PORT gets any HTTP answer.
http_answers() { curl -s -o /dev/null --max-time 1 "http://$ADDR:$1/" 2>/dev/null; }

# wait_http PORT PID: waits (10 s at most) until PORT gets any HTTP answer while PID stays
# alive.
wait_http() { wait_for 100 "$2" http_answers "$1"; }

# start_nginx_origin CONF_DIR: the nginx origin of bench/cdn (CONF_DIR/nginx-origin.conf,
# prefix $RUN/origin/) on $PORT_ORIGIN; sets ORIGIN_PID.
start_nginx_origin() {
    nginx -t -q -p "$RUN/origin/" -c "$1/nginx-origin.conf" -e stderr ||
        die "origin config does not load"
    start_bg origin nginx -p "$RUN/origin/" -c "$1/nginx-origin.conf" -e stderr \
        -g 'daemon off;'
    ORIGIN_PID=$LAST_PID
    wait_http "$PORT_ORIGIN" "$ORIGIN_PID" || die "origin did not start (see $RUN/origin.log)"
}
