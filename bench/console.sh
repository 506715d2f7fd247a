#!/usr/bin/env bash
# The web console at scale: how long each page takes to render with a large fleet and
# many services (issue 15: every page under 200 ms with 1,000 nodes and 10,000 services).
#
# Starts `lingjing control` on a fresh SQLite file, seeds it through the REST API
# (bench/console/seed.py: regions, sites, NODES nodes, tenants, SERVICES services), signs
# in to the console as the operator and as a tenant, and times each page with curl
# (RUNS times each, median and spread), in the order given and again reversed.
#
#   bench/console.sh                       # 1,000 nodes, 10,000 services
#   NODES=100 SERVICES=1000 bench/console.sh
#
# Environment:
#   LINGJING_BIN [target/release/lingjing]   NODES [1000]   SERVICES [10000]   RUNS [5]
#   PORT [17700]
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${LINGJING_BIN:-target/release/lingjing}
NODES=${NODES:-1000}
SERVICES=${SERVICES:-10000}
RUNS=${RUNS:-5}
PORT=${PORT:-17700}
URL="http://127.0.0.1:$PORT"
TOKEN="console-bench-operator-token"

[[ -x $BIN ]] || { echo "build first: cargo build --release -p lingjing (or set LINGJING_BIN)" >&2; exit 1; }
WORK=$(mktemp -d)
trap 'kill $PID 2>/dev/null || true; wait $PID 2>/dev/null || true; rm -rf "$WORK"' EXIT

LINGJING_OPERATOR_TOKEN=$TOKEN RUST_LOG=warn "$BIN" control --listen "127.0.0.1:$PORT" \
  --db "sqlite://$WORK/control.db" >"$WORK/control.log" 2>&1 &
PID=$!
for _ in $(seq 1 100); do curl -sf "$URL/healthz" >/dev/null && break; sleep 0.1; done

echo "seeding $NODES nodes and $SERVICES services ..."
started=$(date +%s)
TENANT_KEY=$(python3 bench/console/seed.py "$URL" "$TOKEN" "$NODES" "$SERVICES")
echo "seeded in $(( $(date +%s) - started )) s"

# Signs in with $2 into cookie jar $1.
sign_in() {
  local jar=$1 token=$2 csrf
  csrf=$(curl -s -c "$jar" "$URL/sign-in" | sed -n 's/.*name="csrf" value="\([0-9a-f]*\)".*/\1/p' | head -n1)
  curl -s -b "$jar" -c "$jar" -o /dev/null -w '%{http_code}' \
    --data-urlencode "token=$token" --data-urlencode "csrf=$csrf" "$URL/sign-in" | grep -q 303 ||
    { echo "sign-in failed" >&2; exit 1; }
}
sign_in "$WORK/operator.jar" "$TOKEN"
sign_in "$WORK/tenant.jar" "$TENANT_KEY"

OPERATOR_PAGES=(
  /fleet "/fleet?page=10" "/fleet?sort=health&dir=desc" "/fleet/live?q=site-07" /nodes/node-0500
  /services "/services?page=150" "/services?q=svc-09999" "/services?sort=tenant&dir=desc&page=100"
  /services/svc-05000 /services/svc-05000/edit /purges /network /dns
  "/dns?name=svc-05000.cdn.lingjing.test&client=1.2.3.4" /storage /sla /defence
  /invoices /reports/segments
)
TENANT_PAGES=(/services "/services?q=svc-0099" /services/svc-00000 /services/svc-00000/edit
  /purges /defence /invoices)

# Times `path` with cookie jar `jar` RUNS times; prints "median min max" in ms.
time_page() {
  local jar=$1 path=$2 times=() code
  for _ in $(seq 1 "$RUNS"); do
    read -r code t < <(curl -s -b "$jar" -o /dev/null -w '%{http_code} %{time_total}\n' "$URL$path")
    [[ $code == 200 ]] || { echo "$path: HTTP $code" >&2; exit 1; }
    times+=("$(awk -v t="$t" 'BEGIN { printf "%.1f", t * 1000 }')")
  done
  printf '%s\n' "${times[@]}" | sort -n | awk '{ a[NR] = $1 } END { printf "%s %s %s", a[int((NR + 1) / 2)], a[1], a[NR] }'
}

report() {
  local who=$1 jar=$2; shift 2
  for path in "$@"; do
    read -r median lo hi < <(time_page "$jar" "$path"; echo)
    printf '%-8s %-34s median %7s ms  (min %s, max %s)\n' "$who" "$path" "$median" "$lo" "$hi"
  done
}

echo "load average: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores; $RUNS runs per page"
report operator "$WORK/operator.jar" "${OPERATOR_PAGES[@]}"
report tenant "$WORK/tenant.jar" "${TENANT_PAGES[@]}"
echo "again, reversed:"
reversed=()
for ((i = ${#OPERATOR_PAGES[@]} - 1; i >= 0; i--)); do reversed+=("${OPERATOR_PAGES[$i]}"); done
report operator "$WORK/operator.jar" "${reversed[@]}"
