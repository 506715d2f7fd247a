#!/usr/bin/env bash
# Object storage benchmark: Lingjing's S3 service ("ours": three storage nodes and one
# gateway, standalone, 3 copies of every block) against Garage (three nodes, replication
# factor 3) and s3s-fs (the s3s crate's sample server over a plain directory: one
# process, one copy, no fsync: a ceiling, not a peer in durability), all on loopback,
# driven by the same load generator (bench/s3/loadgen, "s3load": SigV4, HTTP/1.1
# keep-alive, one connection per worker).
#
#   bench/s3.sh                                   # default run: 3 runs, about 35-45 minutes
#   RUNS=5 DURATION=20 bench/s3.sh                # more runs / longer
#   SERVERS="ours garage" SIZES="1m" bench/s3.sh  # a subset
#   RUNS=1 DURATION=2 WARMUP=0 SIZES=4k CONCURRENCY="1 8" SETTLE=0 FORCE=1 bench/s3.sh
#                                                 # smoke run (figures meaningless)
#   bench/s3.sh --help                            # this text
#
# RUNS runs; in each, every server in turn (the others are stopped), the order rotated
# from run to run (run 1: ours garage s3s-fs, run 2: garage s3s-fs ours, ...) so that no
# server always goes first or last. Every turn starts the server afresh on an empty data
# directory and removes it afterwards. Before the first turn the script refuses to
# measure (exits) when the cores stay busy for SETTLE seconds (more than BUSY_CPU of
# their time busy over BUSY_WINDOW s, /proc/stat: someone else is building or testing);
# FORCE=1 measures anyway. Before each turn it waits again (SETTLE s at most) and prints
# the busy share and the load average; a turn that still starts busy is marked: its
# figures carry a "*" (not comparable; do not quote them).
#
# In a turn, for each size of SIZES and each concurrency (CONCURRENCY; LARGE_CONCURRENCY
# for sizes of 16 MiB and more), s3load runs for DURATION seconds after WARMUP seconds
# not counted:
#   - PUT: every worker PUTs new keys back to back (single-part PUT, unique content:
#     content-addressed stores cannot deduplicate);
#   - GET: the workers GET a set of objects of that size (written once, not timed:
#     GET_OBJECTS_SMALL of sizes under 1 MiB, GET_OBJECTS_MEDIUM under 16 MiB,
#     GET_OBJECTS_LARGE above) in turn, reading every body to the end.
# Each run gives ops/s, MiB/s, time to first byte (TTFB: to the response head; for a PUT
# the head comes once the object is stored, so it is the whole request) p50 and p99, and
# errors (non-2xx, failed connections, short bodies); plus the server's CPU time per
# operation (user + system, /proc/PID/stat, all of its processes) and, per size, the
# peak resident memory of the process serving S3 (ours: the gateway; Garage: node 1;
# s3s-fs: its process) and of all of the server's processes, from VmHWM (reset through
# /proc/PID/clear_refs before the size's first run), to show what one request holds.
# Figures reported are medians over the runs; the summary gives the spread (min-max) of
# ours/peer ratios of MiB/s, each computed within one run.
#
# Ports (all 127.0.0.1, away from `lingjing up`'s 7800-7810, 15300, 17700-17953,
# 18080-19090 and bench/cdn.sh's 18000-18011): ours gateway 18100 (admin 18101), storage
# nodes 18102-18104 (18102-18107 with OURS_EC, 18102-18109 with OURS_EC_SITES=4); Garage S3 18110-18112, RPC 18113-18115;
# s3s-fs 18120.
#
# Tools: s3load is built with cargo on first use (bench/s3/loadgen, standalone project);
# Garage and s3s-fs are installed with `cargo install --locked` into TOOLS_DIR when
# missing (Garage takes ~30 min to build on 2 cores). Data directories are under RUN_BASE
# (on disk by default: 64 MiB PUTs at full speed write several GiB per turn, three copies
# each); the script needs MIN_FREE_GB free there before each turn.
#
# Environment (defaults in brackets):
#   RUNS [3]  SETTLE [90] (s)  BUSY_CPU [0.15]  BUSY_WINDOW [2] (s)  FORCE [0]
#                                         runs; wait for a quiet machine; FORCE=1: measure
#                                         even when it stays busy (turns marked *)
#   SIZES ["4k 1m 64m"]                   object sizes (k/m suffixes: KiB, MiB)
#   CONCURRENCY ["1 8 32"]                workers (= connections) for sizes under 16 MiB
#   LARGE_CONCURRENCY ["1 4"]             workers for sizes of 16 MiB and more
#   OPS ["put get"]                       which operations
#   DURATION [10] (s)  WARMUP [1] (s)     measured time and warm-up of each run
#   LARGE_DURATION [2 x DURATION] (s)     measured time of the runs of 16 MiB and more
#   GET_OBJECTS_SMALL [256]  GET_OBJECTS_MEDIUM [32]  GET_OBJECTS_LARGE [6]
#   CLIENT_THREADS [2]                    s3load's runtime threads
#   SERVERS ["ours garage s3s-fs"]        which servers (run 1's order)
#   LINGJING_BIN [target/dist/lingjing]   our binary (cargo build --profile dist -p lingjing)
#   BUILD_OURS [0]                        1: cargo build --profile dist -p lingjing first
#   OURS_ARGS []                          extra flags for `lingjing s3`
#   DISK_CHECK_OBJECTS [8]                at the end of each turn, that many 64 MiB objects
#                                         more, and the data directory's growth over their
#                                         bytes: raw disk per stored byte (0: skip)
#   OURS_EC_SITES [3]                     with OURS_EC: sites (3 or 4), two nodes in each;
#                                         6+2 over 4 sites survives a site on 1.33x disk
#   OURS_EC []                            e.g. 4+2: ours runs six storage nodes, two in each
#                                         of the three sites, and erasure-codes blocks of
#                                         128 KiB and more (`--erasure OURS_EC`) instead of
#                                         keeping 3 copies: as Garage's 3 copies, it
#                                         survives a whole site, on half the raw disk
#   TOOLS_DIR [/work/bench-tools]         where peers are installed (TOOLS_DIR/bin)
#   GARAGE_BIN [TOOLS_DIR/bin/garage]  GARAGE_VERSION [2.5.0]  GARAGE_FSYNC [1]
#   S3S_FS_BIN [TOOLS_DIR/bin/s3s-fs]  S3S_FS_VERSION [0.14.1]
#   S3LOAD_BIN [bench/s3/loadgen/target/release/s3load]
#   INSTALL [1]                           0: never build or install anything (fail instead)
#   MIN_FREE_GB [20]                      free space needed under RUN_BASE before a turn
#   KEEP_RUN [0]                          1: keep the run directory (logs, data) on exit
#   RESULTS [$TMPDIR/lingjing-s3-results.tsv]   machine-readable results
#   RUN_BASE [$TMPDIR or /var/tmp]        where the run directory goes (not tmpfs)
set -euo pipefail

if [[ ${1:-} == -h || ${1:-} == --help ]]; then
    sed -n '2,/^set -euo pipefail$/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
    exit 0
fi

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CONF="$ROOT/bench/s3"

RUNS=${RUNS:-3}
SETTLE=${SETTLE:-90}
FORCE=${FORCE:-0}
SIZES=${SIZES:-4k 1m 64m}
CONCURRENCY=${CONCURRENCY:-1 8 32}
LARGE_CONCURRENCY=${LARGE_CONCURRENCY:-1 4}
OPS=${OPS:-put get}
DURATION=${DURATION:-10}
LARGE_DURATION=${LARGE_DURATION:-$((DURATION * 2))}
WARMUP=${WARMUP:-1}
GET_OBJECTS_SMALL=${GET_OBJECTS_SMALL:-256}
GET_OBJECTS_MEDIUM=${GET_OBJECTS_MEDIUM:-32}
GET_OBJECTS_LARGE=${GET_OBJECTS_LARGE:-6}
CLIENT_THREADS=${CLIENT_THREADS:-2}
SERVERS=${SERVERS:-ours garage s3s-fs}
OURS_EC_SITES=${OURS_EC_SITES:-3}
DISK_CHECK_OBJECTS=${DISK_CHECK_OBJECTS:-8}
LINGJING_BIN=${LINGJING_BIN:-$ROOT/target/dist/lingjing}
BUILD_OURS=${BUILD_OURS:-0}
TOOLS_DIR=${TOOLS_DIR:-/work/bench-tools}
GARAGE_VERSION=${GARAGE_VERSION:-2.5.0}
GARAGE_BIN=${GARAGE_BIN:-$TOOLS_DIR/bin/garage}
GARAGE_FSYNC=${GARAGE_FSYNC:-1}
S3S_FS_VERSION=${S3S_FS_VERSION:-0.14.1}
S3S_FS_BIN=${S3S_FS_BIN:-$TOOLS_DIR/bin/s3s-fs}
S3LOAD_BIN=${S3LOAD_BIN:-$CONF/loadgen/target/release/s3load}
INSTALL=${INSTALL:-1}
MIN_FREE_GB=${MIN_FREE_GB:-20}
KEEP_RUN=${KEEP_RUN:-0}
RESULTS=${RESULTS:-${TMPDIR:-/tmp}/lingjing-s3-results.tsv}
# Not /dev/shm: three copies of GiBs of 64 MiB PUTs would take the machine's memory.
RUN_BASE=${RUN_BASE:-${TMPDIR:-/var/tmp}}

ADDR=127.0.0.1
REGION=us-east-1
BUCKET=bench
PORT_OURS=18100
PORT_OURS_ADMIN=18101
PORT_OURS_ST=(18102 18103 18104 18105 18106 18107 18108 18109)
PORT_GARAGE_S3=(18110 18111 18112)
PORT_GARAGE_RPC=(18113 18114 18115)
PORT_S3S=18120
# Garage wants its key ids as GK + 24 hex digits and secrets as 64 hex digits; the same
# key serves every server.
ACCESS_KEY=GK1d1a4b3e5c6f708192a3b4c5
SECRET_KEY=""     # made per invocation

RUN=""            # private run directory (configs, data, logs)
SERVER_PID=""     # the process serving S3 (lib.sh's name for the measured server)
SRV_PIDS=()       # every process of the server in its turn (ours: 3 nodes + gateway)
SRV_NAMES=()      # their names, in the same order
PIDS=()           # every process this script started, stopped on exit
declare -A R=()   # results: R[server|test|field] (the current run's; medians after all)
declare -A RUNR=() # every run's results: RUNR[run|server|test|field]
declare -A BUSY=() # BUSY[server|run]=1: that turn started on a busy machine
declare -A LOADS=() # LOADS[server|run]: the load line before that turn
RUN_NO=0

# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

# ---------------------------------------------------------------------------------------
# Sizes and tests
# ---------------------------------------------------------------------------------------

# size_bytes SIZE: 4k -> 4096, 1m -> 1048576, 123 -> 123.
size_bytes() {
    case $1 in
        *[kK]) echo $((${1%?} * 1024)) ;;
        *[mM]) echo $((${1%?} * 1024 * 1024)) ;;
        *) echo "$1" ;;
    esac
}

# size_label SIZE: "4 KiB", "64 MiB".
size_label() {
    case $1 in
        *[kK]) echo "${1%?} KiB" ;;
        *[mM]) echo "${1%?} MiB" ;;
        *) echo "$1 B" ;;
    esac
}

# concurrencies SIZE: the worker counts for SIZE.
concurrencies() {
    if (($(size_bytes "$1") >= 16 * 1024 * 1024)); then echo "$LARGE_CONCURRENCY"; else echo "$CONCURRENCY"; fi
}

# get_objects SIZE: how many objects the GET runs of SIZE read.
get_objects() {
    local b
    b=$(size_bytes "$1")
    if ((b < 1024 * 1024)); then
        echo "$GET_OBJECTS_SMALL"
    elif ((b < 16 * 1024 * 1024)); then
        echo "$GET_OBJECTS_MEDIUM"
    else
        echo "$GET_OBJECTS_LARGE"
    fi
}

# tests: every "op/size/conc", in the order they run within a turn.
tests() {
    local size conc op
    for size in $SIZES; do
        for conc in $(concurrencies "$size"); do
            for op in $OPS; do echo "$op/$size/$conc"; done
        done
    done
}

# ---------------------------------------------------------------------------------------
# Tools
# ---------------------------------------------------------------------------------------

# cargo_job LOG CMD...: runs a cargo command niced (the machine is shared), output to LOG.
cargo_job() {
    local logf=$1
    shift
    nice -n 10 "$@" >"$logf" 2>&1 || { tail -n 20 "$logf" >&2; return 1; }
}

ensure_s3_tools() {
    ensure_tools curl=curl cc=gcc
    command -v cargo >/dev/null 2>&1 || die "cargo is needed (to build s3load and the peers)"
    mkdir -p "$TOOLS_DIR/logs"
    if [[ ! -x $S3LOAD_BIN ]]; then
        [[ $INSTALL == 1 ]] || die "$S3LOAD_BIN missing (INSTALL=0)"
        log "building s3load (bench/s3/loadgen)"
        cargo_job "$TOOLS_DIR/logs/s3load-build.log" cargo build --release --locked \
            --manifest-path "$CONF/loadgen/Cargo.toml" || die "s3load did not build"
    fi
    if [[ " $SERVERS " == *" garage "* && ! -x $GARAGE_BIN ]]; then
        [[ $INSTALL == 1 ]] || die "$GARAGE_BIN missing (INSTALL=0)"
        log "installing garage $GARAGE_VERSION into $TOOLS_DIR (cargo install; ~30 min on 2 cores)"
        cargo_job "$TOOLS_DIR/logs/garage-install.log" cargo install --locked \
            --root "$TOOLS_DIR" garage --version "$GARAGE_VERSION" || die "garage did not build"
    fi
    if [[ " $SERVERS " == *" s3s-fs "* && ! -x $S3S_FS_BIN ]]; then
        [[ $INSTALL == 1 ]] || die "$S3S_FS_BIN missing (INSTALL=0)"
        log "installing s3s-fs $S3S_FS_VERSION into $TOOLS_DIR"
        cargo_job "$TOOLS_DIR/logs/s3s-fs-install.log" cargo install --locked \
            --root "$TOOLS_DIR" s3s-fs --version "$S3S_FS_VERSION" --features binary ||
            die "s3s-fs did not build"
    fi
}

build_ours() {
    [[ $BUILD_OURS == 1 && " $SERVERS " == *" ours "* ]] || return 0
    log "ours: cargo build --profile dist -p lingjing"
    (cd "$ROOT" && cargo_job "$RUN/ours-build.log" cargo build --profile dist -p lingjing) ||
        log "ours: build failed (see $RUN/ours-build.log)"
}

versions() {
    local g s o
    o=$("$LINGJING_BIN" --version 2>/dev/null | head -n 1 || true)
    [[ -n $o ]] || o="lingjing $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?')"
    g=$("$GARAGE_BIN" --version 2>/dev/null | head -n 1 || echo "garage n/a")
    s=$("$S3S_FS_BIN" --version 2>/dev/null | head -n 1 || echo "s3s-fs n/a")
    echo "$o (commit $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?')$(
        cd "$ROOT" && git diff --quiet HEAD 2>/dev/null || echo ', with uncommitted changes')), $g, $s"
}

check_ports_free() {
    local p
    for p in "$PORT_OURS" "$PORT_OURS_ADMIN" "${PORT_OURS_ST[@]}" "${PORT_GARAGE_S3[@]}" \
        "${PORT_GARAGE_RPC[@]}" "$PORT_S3S"; do
        tcp_port_in_use "$ADDR" "$p" && die "port $ADDR:$p is already in use; stop whatever listens there"
    done
    return 0
}

check_disk() {
    local avail
    avail=$(df -Pk "$RUN_BASE" | awk 'NR == 2 {print int($4 / 1024 / 1024)}')
    ((avail >= MIN_FREE_GB)) ||
        die "only $avail GiB free under $RUN_BASE (MIN_FREE_GB=$MIN_FREE_GB); free some or set RUN_BASE"
}

make_run_dir() {
    mkdir -p "$RUN_BASE"
    RUN=$(mktemp -d "$RUN_BASE/lingjing-s3.XXXXXX")
    SECRET_KEY=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')
}

# ---------------------------------------------------------------------------------------
# Servers. Each start_* fills SRV_PIDS, sets SERVER_PID (the S3 endpoint's process) and
# leaves the bucket BUCKET created by ACCESS_KEY, or returns non-zero.
# ---------------------------------------------------------------------------------------

port_open() { tcp_port_in_use "$ADDR" "$1"; }

# wait_port PORT PID: waits (20 s at most) until PORT accepts connections while PID lives.
wait_port() { wait_for 200 "$2" port_open "$1"; }

s3load() { "$S3LOAD_BIN" "$@" --access-key "$ACCESS_KEY" --secret-key "$SECRET_KEY" --region "$REGION"; }

# make_bucket SRV PORT: creates BUCKET over S3, retrying for 30 s (a cluster may still be
# settling its layout).
make_bucket() {
    local i
    for ((i = 0; i < 60; i++)); do
        if s3load mkbucket --endpoint "$ADDR:$2" --bucket "$BUCKET" >>"$RUN/$1-mkbucket.log" 2>&1; then
            return 0
        fi
        sleep 0.5
    done
    log "$1: could not create the bucket:"
    tail -n 3 "$RUN/$1-mkbucket.log" >&2
    return 1
}

# ===================================== HOOK: ours =======================================
# Lingjing's S3 service without a control plane: three storage nodes (sites a, b, c) and
# one gateway, 3 copies of each block (written to 3 nodes, acknowledged by a quorum of 2
# in 2 sites), 1 MiB blocks (the default), metadata in SQLite; with OURS_EC=K+M, six
# nodes (two per site) and `--erasure K+M` instead of `--replicas 3`. The contract:
#   lingjing storage --node st-N --listen 127.0.0.1:PORT --token-file TOKEN \
#       --blocks-dir DIR --state-dir DIR
#   lingjing s3 --storage-node st-1@site-a=127.0.0.1:P1 (x3) --token-file TOKEN \
#       --keys-file KEYS --listen 127.0.0.1:18100 --admin 127.0.0.1:18101 \
#       --meta-url sqlite://DIR/meta.db --replicas 3 --state-dir DIR
# (keys file: "ACCESS_KEY SECRET TENANT"). Returns non-zero (the run goes on with the
# peers) when the binary is missing or the service does not come up.
start_ours() {
    if [[ ! -x $LINGJING_BIN ]]; then
        log "ours: $LINGJING_BIN not found (cargo build --profile dist -p lingjing)"
        return 1
    fi
    local d="$RUN/ours" i nodes=()
    mkdir -p "$d"
    (umask 077 && od -An -N32 -tx1 /dev/urandom | tr -d ' \n' >"$d/token" &&
        echo "$ACCESS_KEY $SECRET_KEY bench" >"$d/keys")
    local sites=(site-a site-b site-c) redundancy=(--replicas 3)
    if [[ -n ${OURS_EC:-} ]]; then
        # Two nodes in each of OURS_EC_SITES sites: round-robin placement puts m shards
        # in a site for K+M = 2 x sites (4+2 over 3 sites, 6+2 over 4).
        local letters=(a b c d) n
        sites=()
        for ((n = 0; n < 2 * OURS_EC_SITES; n++)); do
            sites+=("site-${letters[n % OURS_EC_SITES]}")
        done
        redundancy=(--erasure "$OURS_EC")
    fi
    for i in "${!sites[@]}"; do
        mkdir -p "$d/st-$((i + 1))"
        start_bg "ours-st-$((i + 1))" "$LINGJING_BIN" --data-dir "$d/data" storage \
            --node "st-$((i + 1))" --listen "$ADDR:${PORT_OURS_ST[i]}" --token-file "$d/token" \
            --blocks-dir "$d/st-$((i + 1))/blocks" --state-dir "$d/st-$((i + 1))/state"
        SRV_PIDS+=("$LAST_PID")
        SRV_NAMES+=("st-$((i + 1))")
        nodes+=(--storage-node "st-$((i + 1))@${sites[i]}=$ADDR:${PORT_OURS_ST[i]}")
    done
    for i in "${!sites[@]}"; do
        if ! wait_port "${PORT_OURS_ST[i]}" "${SRV_PIDS[i]}"; then
            log "ours: storage node st-$((i + 1)) did not start; its output:"
            tail -n 5 "$RUN/ours-st-$((i + 1)).log" >&2 || true
            return 1
        fi
    done
    # shellcheck disable=SC2206 # OURS_ARGS is a list of extra flags, split on spaces
    local extra=(${OURS_ARGS:-})
    log "ours: $LINGJING_BIN s3 ${nodes[*]} ${redundancy[*]} ... ${extra[*]}"
    start_bg ours "$LINGJING_BIN" --data-dir "$d/data" s3 "${nodes[@]}" \
        --token-file "$d/token" --keys-file "$d/keys" --listen "$ADDR:$PORT_OURS" \
        --admin "$ADDR:$PORT_OURS_ADMIN" --meta-url "sqlite://$d/meta.db" "${redundancy[@]}" \
        --state-dir "$d/gateway" "${extra[@]+"${extra[@]}"}"
    SERVER_PID=$LAST_PID
    SRV_PIDS+=("$SERVER_PID")
    SRV_NAMES+=(gateway)
    if ! wait_port "$PORT_OURS" "$SERVER_PID"; then
        log "ours: \`lingjing s3\` did not start; its output:"
        tail -n 5 "$RUN/ours.log" >&2 || true
        return 1
    fi
    make_bucket ours "$PORT_OURS"
}
# ========================================================================================

# Garage: three nodes on loopback (zones site-a, site-b, site-c), replication factor 3,
# consistent mode (write quorum 2), 1 MiB blocks, no compression, fsync on (GARAGE_FSYNC);
# the load goes to node 1's S3 API, as to our single gateway.
garage_cli() { "$GARAGE_BIN" -c "$RUN/garage/n1.toml" "$@"; }

start_garage() {
    [[ -x $GARAGE_BIN ]] || { log "garage: $GARAGE_BIN not found"; return 1; }
    local d="$RUN/garage" i secret fsync=false ids=() id
    [[ $GARAGE_FSYNC == 1 ]] && fsync=true
    secret=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')
    mkdir -p "$d"
    for i in 1 2 3; do
        mkdir -p "$d/n$i"
        (umask 077 && sed -e "s|@NODE@|$i|; s|@DIR@|$d/n$i|g; s|@FSYNC@|$fsync|g" \
            -e "s|@RPC_SECRET@|$secret|; s|@RPC_PORT@|${PORT_GARAGE_RPC[i - 1]}|g" \
            -e "s|@S3_PORT@|${PORT_GARAGE_S3[i - 1]}|; s|@REGION@|$REGION|" \
            "$CONF/garage.toml.in" >"$d/n$i.toml")
        RUST_LOG=${GARAGE_LOG:-garage=warn} start_bg "garage-n$i" "$GARAGE_BIN" -c "$d/n$i.toml" server
        SRV_PIDS+=("$LAST_PID")
        SRV_NAMES+=("node-$i")
    done
    SERVER_PID=${SRV_PIDS[0]}
    for i in 1 2 3; do
        if ! wait_port "${PORT_GARAGE_RPC[i - 1]}" "${SRV_PIDS[i - 1]}"; then
            log "garage: node $i did not start; its output:"
            tail -n 5 "$RUN/garage-n$i.log" >&2 || true
            return 1
        fi
    done
    for i in 1 2 3; do
        id=$("$GARAGE_BIN" -c "$d/n$i.toml" node id -q 2>>"$RUN/garage-cli.log") ||
            { log "garage: no node id for node $i (see $RUN/garage-cli.log)"; return 1; }
        ids+=("$id")
    done
    {
        garage_cli node connect "${ids[1]}" && garage_cli node connect "${ids[2]}" &&
            garage_cli layout assign -z site-a -c 100G "${ids[0]%%@*}" &&
            garage_cli layout assign -z site-b -c 100G "${ids[1]%%@*}" &&
            garage_cli layout assign -z site-c -c 100G "${ids[2]%%@*}" &&
            garage_cli layout apply --version 1 &&
            garage_cli key import --yes -n bench "$ACCESS_KEY" "$SECRET_KEY" &&
            garage_cli key allow --create-bucket bench
    } >>"$RUN/garage-cli.log" 2>&1 || {
        log "garage: cluster setup failed; see $RUN/garage-cli.log:"
        tail -n 5 "$RUN/garage-cli.log" >&2
        return 1
    }
    make_bucket garage "${PORT_GARAGE_S3[0]}"
}

start_s3s-fs() {
    [[ -x $S3S_FS_BIN ]] || { log "s3s-fs: $S3S_FS_BIN not found"; return 1; }
    mkdir -p "$RUN/s3s-fs/root"
    start_bg s3s-fs "$S3S_FS_BIN" --host "$ADDR" --port "$PORT_S3S" \
        --access-key "$ACCESS_KEY" --secret-key "$SECRET_KEY" "$RUN/s3s-fs/root"
    SERVER_PID=$LAST_PID
    SRV_PIDS+=("$SERVER_PID")
    SRV_NAMES+=(s3s-fs)
    wait_port "$PORT_S3S" "$SERVER_PID" || { tail -n 5 "$RUN/s3s-fs.log" >&2; return 1; }
    make_bucket s3s-fs "$PORT_S3S"
}

server_port() {
    case $1 in
        ours) echo "$PORT_OURS" ;;
        garage) echo "${PORT_GARAGE_S3[0]}" ;;
        s3s-fs) echo "$PORT_S3S" ;;
        *) die "unknown server $1" ;;
    esac
}

start_server() {
    case $1 in
        ours) start_ours ;;
        garage) start_garage ;;
        s3s-fs) start_s3s-fs ;;
        *) die "unknown server $1" ;;
    esac
}

# stop_server: stops every process of the server (gateway first), removes its data.
stop_server() {
    local i
    for ((i = ${#SRV_PIDS[@]} - 1; i >= 0; i--)); do stop_pid "${SRV_PIDS[i]}"; done
    SRV_PIDS=()
    SRV_NAMES=()
    SERVER_PID=""
}

# servers_alive: every process of the server is still running.
servers_alive() {
    local p
    for p in "${SRV_PIDS[@]}"; do kill -0 "$p" 2>/dev/null || return 1; done
}

# ---------------------------------------------------------------------------------------
# Measurements
# ---------------------------------------------------------------------------------------

# hwm_reset: resets the peak RSS (VmHWM) of every server process.
hwm_reset() {
    local p
    for p in "${SRV_PIDS[@]}"; do echo 5 >"/proc/$p/clear_refs" 2>/dev/null || true; done
}

# hwm_kib PID: its VmHWM in KiB.
hwm_kib() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status" 2>/dev/null || true; }

# cpu_marks: "pid:ticks ..." for every server process.
cpu_marks() {
    local p out=""
    for p in "${SRV_PIDS[@]}"; do out+="$p:$(pid_ticks "$p") "; done
    echo "$out"
}

# cpu_ticks_since MARKS: CPU ticks the server processes spent since cpu_marks.
cpu_ticks_since() {
    local e p t total=0
    for e in $1; do
        p=${e%%:*}
        t=$(pid_ticks "$p")
        [[ -n $t && -n ${e#*:} ]] && total=$((total + t - ${e#*:}))
    done
    echo "$total"
}

# load_run SRV TEST: one s3load run (TEST = op/size/conc); results in R[SRV|TEST|...].
load_run() {
    local srv=$1 t=$2 op size conc out err line kv ticks mark ops
    IFS=/ read -r op size conc <<<"$t"
    out="$RUN/load-$srv-${t//\//-}-$RUN_NO.txt"
    err="${out%.txt}.err"
    local common=(--endpoint "$ADDR:$(server_port "$srv")" --bucket "$BUCKET"
        --access-key "$ACCESS_KEY" --secret-key "$SECRET_KEY" --region "$REGION"
        --size "$(size_bytes "$size")" --concurrency "$conc" --objects "$(get_objects "$size")"
        --threads "$CLIENT_THREADS")
    if [[ $op == get ]]; then
        # The objects to read, written once per size and turn (HEAD-checked after that);
        # not timed, not in the CPU figure.
        if ! timeout 900 "$S3LOAD_BIN" fill "${common[@]}" --concurrency 8 >"${out%.txt}.fill" 2>&1; then
            log "$srv: $t: writing the objects to read failed:"
            tail -n 5 "${out%.txt}.fill" >&2
            R["$srv|$t|fill_failed"]=1
            return 0
        fi
    fi
    mark=$(cpu_marks)
    local secs=$DURATION
    (($(size_bytes "$size") >= 16 * 1024 * 1024)) && secs=$LARGE_DURATION
    timeout $((secs + WARMUP + 600)) "$S3LOAD_BIN" "$op" "${common[@]}" --fill 0 \
        --duration "$secs" --warmup "$WARMUP" >"$out" 2>"$err" || true
    ticks=$(cpu_ticks_since "$mark")
    line=$(grep '^S3LOAD ' "$out" | tail -n 1) || {
        log "$srv: $t: s3load gave no result:"
        tail -n 5 "$err" >&2
        return 0
    }
    for kv in ${line#S3LOAD }; do R["$srv|$t|${kv%%=*}"]=${kv#*=}; done
    ops=${R["$srv|$t|ops"]:-0}
    R["$srv|$t|cpu_us"]=$(cpu_us_per_req "$ticks" "$ops")
    local msg
    msg=$(printf '%s %-4s %-4s c=%-3s %8s ops/s %8s MiB/s  ttfb p50/p99 %s/%s ms  total p50/p99 %s/%s ms  cpu %s us/op' \
        "$srv:" "$op" "$size" "$conc" "${R["$srv|$t|ops_s"]}" "${R["$srv|$t|mib_s"]}" \
        "${R["$srv|$t|ttfb_p50_ms"]}" "${R["$srv|$t|ttfb_p99_ms"]}" \
        "${R["$srv|$t|lat_p50_ms"]}" "${R["$srv|$t|lat_p99_ms"]}" "${R["$srv|$t|cpu_us"]}")
    if [[ ${R["$srv|$t|errors"]:-0} != 0 ]]; then
        msg+="  ERRORS ${R["$srv|$t|errors"]}"
        log "$msg"
        log "$srv: $t: first errors:"
        grep 's3load: error' "$err" | head -n 3 >&2 || true
    else
        log "$msg"
    fi
    grep -q 'preparing the GET objects failed' "$err" && { log "$srv: $t:"; cat "$err" >&2; }
    return 0
}

# bench_turn SRV: starts SRV, runs every test, stops it.
bench_turn() {
    local srv=$1 size t kib sum
    if ! start_server "$srv"; then
        log "$srv: not available (see $RUN/$srv*.log)"
        stop_server
        R["$srv|available"]=0
        return 0
    fi
    R["$srv|available"]=1
    for size in $SIZES; do
        hwm_reset
        while read -r t; do
            [[ $t == */"$size"/* ]] || continue
            if ! servers_alive; then
                log "$srv: a server process exited; $t skipped (see $RUN/$srv*.log)"
                R["$srv|died"]=1
                continue
            fi
            load_run "$srv" "$t"
        done < <(tests)
        R["$srv|mem/$size|gw_hwm_kib"]=$(hwm_kib "$SERVER_PID")
        sum=0
        local each="" i
        for i in "${!SRV_PIDS[@]}"; do
            kib=$(hwm_kib "${SRV_PIDS[i]}")
            sum=$((sum + ${kib:-0}))
            R["$srv|mem/$size|${SRV_NAMES[i]}_hwm_kib"]=${kib:-}
            each+="${SRV_NAMES[i]} $(fmt_mib "${kib:-}"), "
        done
        R["$srv|mem/$size|all_hwm_kib"]=$sum
        log "$srv: peak RSS (MiB) during the $(size_label "$size") runs: ${each%, }; sum $(fmt_mib "$sum")"
    done
    disk_check "$srv"
    R["$srv|data_kib"]=$(du -sk "$RUN/$srv" 2>/dev/null | awk '{print $1}')
    stop_server
    rm -rf "${RUN:?}/$srv"
}

# disk_check SRV: raw disk per stored byte: what the server's data directory grows by
# when DISK_CHECK_OBJECTS more objects of 64 MiB (unique content) are stored, over their
# bytes. Not timed.
disk_check() {
    local srv=$1 before after n=$DISK_CHECK_OBJECTS
    ((n > 0)) || return 0
    sync
    before=$(du -sk "$RUN/$srv" 2>/dev/null | awk '{print $1}')
    if ! timeout 900 "$S3LOAD_BIN" fill --endpoint "$ADDR:$(server_port "$srv")" --bucket "$BUCKET" \
        --access-key "$ACCESS_KEY" --secret-key "$SECRET_KEY" --region "$REGION" \
        --prefix diskcheck --size $((64 * 1024 * 1024)) --objects "$n" --concurrency 4 \
        --threads "$CLIENT_THREADS" >"$RUN/disk-$srv-$RUN_NO.txt" 2>&1; then
        log "$srv: disk check: writing failed"
        return 0
    fi
    sync
    after=$(du -sk "$RUN/$srv" 2>/dev/null | awk '{print $1}')
    R["$srv|raw_per_byte"]=$(awk -v b="$before" -v a="$after" -v n="$n" 'BEGIN {printf "%.3f", (a - b) / (n * 65536)}')
    log "$srv: raw disk per stored byte: ${R["$srv|raw_per_byte"]} ($n x 64 MiB stored: $(((after - before) / 1024)) MiB on disk)"
}

# bench_server SRV: one turn of SRV in run RUN_NO (waits for a quiet machine first).
bench_server() {
    local srv=$1 k load
    for k in "${!R[@]}"; do [[ $k == "$srv|"* ]] && unset "R[$k]"; done
    check_disk
    load=$(settle "$SETTLE")
    LOADS["$srv|$RUN_NO"]=$load
    [[ $load == *BUSY ]] && BUSY["$srv|$RUN_NO"]=1
    log "=== $srv (run $RUN_NO/$RUNS): $load"
    bench_turn "$srv"
    for k in "${!R[@]}"; do [[ $k == "$srv|"* ]] && RUNR["$RUN_NO|$k"]=${R[$k]}; done
    return 0
}

# rotated RUN: SERVERS rotated left by RUN - 1 (run 1: as given).
rotated() {
    local -a s
    read -r -a s <<<"$SERVERS"
    local n=${#s[@]} i order=()
    for ((i = 0; i < n; i++)); do order+=("${s[(i + $1 - 1) % n]}"); done
    echo "${order[*]}"
}

# summarize: R[key] = the median of RUNR[run|key] over the runs.
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
        if [[ $key == *"|available" || $key == *"|died" ]]; then
            R[$key]=0
            [[ " ${vals[*]} " == *" 1 "* ]] && R[$key]=1
        else
            R[$key]=$(median "${vals[@]}")
            [[ $key == *"|errors" ]] && R[$key]=$(printf '%s\n' "${vals[@]}" | awk '{s += $1} END {print s + 0}')
        fi
    done
    return 0
}

# ---------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------

fmt_mib() { [[ -n ${1:-} ]] && awk -v v="$1" 'BEGIN {printf "%.1f", v / 1024}' || echo n/a; }
fmt_num() { [[ -n ${1:-} && $1 != n/a ]] && awk -v v="$1" -v f="$2" 'BEGIN {printf f, v}' || echo n/a; }

busy_star() {
    local r
    for ((r = 1; r <= RUNS; r++)); do
        [[ -n ${BUSY["$1|$r"]:-} ]] && { echo "*"; return 0; }
    done
    return 0
}

busy_note() {
    [[ ${#BUSY[@]} -gt 0 ]] || return 0
    echo "* = at least one of its turns started with more than $BUSY_CPU of the" \
        "$(nproc) cores' time busy (a busy machine: figures not comparable)."
}

# run_ratios A B TEST FIELD: "xM (min–max)" of A/B over the runs, each within one run.
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

report() {
    local size t srv op conc r
    echo
    echo "S3 benchmark, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, load tool and servers on the same cores"
    versions
    echo "s3load: ${DURATION}s per run (${LARGE_DURATION}s from 16 MiB) after ${WARMUP}s warm-up, $CLIENT_THREADS client threads," \
        "one keep-alive connection per worker; data under $RUN_BASE"
    echo "Medians of $RUNS runs (server order rotated between runs); before each turn:"
    for ((r = 1; r <= RUNS; r++)); do
        for srv in $(rotated "$r"); do
            printf '  run %d %-7s %s\n' "$r" "$srv" "${LOADS["$srv|$r"]:-n/a}"
        done
    done
    for size in $SIZES; do
        echo
        echo "$(size_label "$size") objects"
        printf '  %-8s %-4s %5s %10s %10s %11s %11s %11s %11s %7s %10s\n' server op conc 'ops/s' \
            'MiB/s' 'TTFB p50' 'TTFB p99' 'total p50' 'total p99' errors 'CPU us/op'
        for srv in $SERVERS; do
            if [[ ${R["$srv|available"]:-0} != 1 ]]; then
                printf '  %-8s %s\n' "$srv$(busy_star "$srv")" "not available"
                continue
            fi
            while read -r t; do
                [[ $t == */"$size"/* ]] || continue
                IFS=/ read -r op _ conc <<<"$t"
                printf '  %-8s %-4s %5s %10s %10s %8s ms %8s ms %8s ms %8s ms %7s %10s\n' \
                    "$srv$(busy_star "$srv")" "$op" "$conc" \
                    "$(fmt_num "${R["$srv|$t|ops_s"]:-}" %.1f)" "$(fmt_num "${R["$srv|$t|mib_s"]:-}" %.2f)" \
                    "$(fmt_num "${R["$srv|$t|ttfb_p50_ms"]:-}" %.2f)" \
                    "$(fmt_num "${R["$srv|$t|ttfb_p99_ms"]:-}" %.2f)" \
                    "$(fmt_num "${R["$srv|$t|lat_p50_ms"]:-}" %.2f)" \
                    "$(fmt_num "${R["$srv|$t|lat_p99_ms"]:-}" %.2f)" \
                    "${R["$srv|$t|errors"]:-n/a}" "$(fmt_num "${R["$srv|$t|cpu_us"]:-}" %.0f)"
            done < <(tests)
        done
        printf '  peak RSS (MiB, S3 process / all processes):'
        for srv in $SERVERS; do
            printf ' %s %s/%s;' "$srv" "$(fmt_mib "${R["$srv|mem/$size|gw_hwm_kib"]:-}")" \
                "$(fmt_mib "${R["$srv|mem/$size|all_hwm_kib"]:-}")"
        done
        echo
    done
    for srv in $SERVERS; do
        [[ ${R["$srv|died"]:-0} == 1 ]] && echo "  $srv: a server process exited during a turn (see its log)"
    done
    if ((DISK_CHECK_OBJECTS > 0)); then
        printf 'raw disk per stored byte (%d x 64 MiB more, data directory growth):' "$DISK_CHECK_OBJECTS"
        for srv in $SERVERS; do printf ' %s %s;' "$srv" "${R["$srv|raw_per_byte"]:-n/a}"; done
        echo
    fi
    echo "errors: summed over the runs. $(busy_note)"
}

summary_table() {
    local peers=() srv t label op size conc
    [[ " $SERVERS " == *" ours "* ]] || return 0
    for srv in garage s3s-fs; do [[ " $SERVERS " == *" $srv "* ]] && peers+=("$srv"); done
    local srvs=(ours "${peers[@]+"${peers[@]}"}")
    echo
    echo "Summary: MiB/s medians of $RUNS runs; ratio: ours/peer MiB/s per run, median (min–max);"
    echo "p99 in ms (TTFB: to the response head; total: to the body's end); above 1: ours moves more"
    printf '  %-18s' test
    for srv in "${srvs[@]}"; do printf ' %10s' "$srv"; done
    for srv in "${peers[@]+"${peers[@]}"}"; do printf ' %20s' "ours/$srv"; done
    printf ' %26s %26s\n' "TTFB p99 $(IFS=/; echo "${srvs[*]}")" "total p99 $(IFS=/; echo "${srvs[*]}")"
    while read -r t; do
        IFS=/ read -r op size conc <<<"$t"
        label="$op $(size_label "$size") c=$conc"
        printf '  %-18s' "$label"
        for srv in "${srvs[@]}"; do
            printf ' %10s' "$(fmt_num "${R["$srv|$t|mib_s"]:-}" %.2f)$(busy_star "$srv")"
        done
        # ops/s: the same ratio as MiB/s (same size), without MiB/s's rounding.
        for srv in "${peers[@]+"${peers[@]}"}"; do printf ' %20s' "$(run_ratios ours "$srv" "$t" ops_s)"; done
        local p99="" tot99=""
        for srv in "${srvs[@]}"; do
            p99+="$(fmt_num "${R["$srv|$t|ttfb_p99_ms"]:-}" %.1f)/"
            tot99+="$(fmt_num "${R["$srv|$t|lat_p99_ms"]:-}" %.1f)/"
        done
        printf ' %26s %26s\n' "${p99%/}" "${tot99%/}"
    done < <(tests)
    echo "  $(busy_note)"
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
    local srv load
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    check_ports_free
    trap cleanup EXIT
    trap 'exit 130' INT TERM
    make_run_dir
    log "run directory: $RUN"
    build_ours
    ensure_s3_tools
    load=$(settle "$SETTLE")
    if [[ $load == *BUSY ]]; then
        [[ $FORCE == 1 ]] || die "the machine is busy ($load) after waiting ${SETTLE}s;" \
            "measure when it is quiet, or FORCE=1 to run anyway (every turn marked *)"
        log "machine busy ($load); FORCE=1: measuring anyway"
    else
        log "machine: $load"
    fi
    log "$RUNS runs of: $SERVERS; tests: $(tests | paste -sd ' ' -)"
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
