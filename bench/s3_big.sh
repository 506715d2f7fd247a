#!/usr/bin/env bash
# One very large object through Lingjing's S3 gateway with the AWS CLI, to show that
# memory per request is bounded whatever the object size: a multipart upload of SIZE_GB
# (default 5) GiB streamed from a generator (no file on disk), then a download to a hash,
# with the gateway's and the storage nodes' peak RSS (VmHWM) before and after.
#
#   bench/s3_big.sh                      # 5 GiB, target/dist/lingjing
#   SIZE_GB=1 LINGJING_BIN=target/release/lingjing bench/s3_big.sh
#
# Ports (127.0.0.1): gateway 17850, admin 17851, storage nodes 17861-17863. Needs the AWS
# CLI (pip install awscli) and 3 x SIZE_GB GiB free disk in TMPDIR (three replicas).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

SIZE_GB=${SIZE_GB:-5}
LINGJING_BIN=${LINGJING_BIN:-target/dist/lingjing}
[ -x "$LINGJING_BIN" ] || die "$LINGJING_BIN missing: cargo build --profile dist -p lingjing"
command -v aws >/dev/null || die "the AWS CLI is missing: pip install awscli"

RUN=$(mktemp -d "${TMPDIR:-/tmp}/lingjing-s3-big.XXXXXX")
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$RUN"
}
trap cleanup EXIT

echo "bench-cluster-token" > "$RUN/token"
echo "BIGKEY big-secret-0123456789 bench" > "$RUN/keys"
chmod 600 "$RUN/token" "$RUN/keys"
NODES=()
for i in 1 2 3; do
    "$LINGJING_BIN" storage --node "st-$i" --listen "127.0.0.1:1786$i" \
        --token-file "$RUN/token" --blocks-dir "$RUN/st-$i" >"$RUN/st-$i.log" 2>&1 &
    PIDS+=($!)
    NODES+=(--storage-node "st-$i@site-$i=127.0.0.1:1786$i")
done
sleep 1
RUST_LOG=warn "$LINGJING_BIN" s3 --listen 127.0.0.1:17850 --admin 127.0.0.1:17851 \
    --token-file "$RUN/token" --keys-file "$RUN/keys" \
    --meta-url "sqlite://$RUN/meta.db" "${NODES[@]}" >"$RUN/gw.log" 2>&1 &
GW=$!
PIDS+=($GW)
for _ in $(seq 1 50); do
    curl -sf http://127.0.0.1:17851/healthz >/dev/null && break
    sleep 0.2
done

export AWS_ACCESS_KEY_ID=BIGKEY AWS_SECRET_ACCESS_KEY=big-secret-0123456789 AWS_DEFAULT_REGION=us-east-1
unset AWS_CA_BUNDLE AWS_PROFILE
printf '[default]\ns3 =\n  multipart_chunksize = 64MB\n  max_concurrent_requests = 8\n' >"$RUN/aws-config"
export AWS_CONFIG_FILE="$RUN/aws-config"
S3="aws --endpoint-url http://127.0.0.1:17850"
$S3 s3 mb s3://big >/dev/null

hwm() { awk '/VmHWM/ {print int($2/1024)}' "/proc/$1/status"; }
BYTES=$((SIZE_GB * 1024 * 1024 * 1024))
log "gateway peak RSS before: $(hwm "$GW") MiB"
# Deterministic, incompressible, not deduplicated: AES-CTR of zeros.
gen() { (openssl enc -aes-128-ctr -nosalt -pass pass:lingjing -pbkdf2 </dev/zero 2>/dev/null || true) | head -c "$BYTES"; }
log "uploading $SIZE_GB GiB (multipart, 64 MiB parts, 8 at once)"
T0=$(date +%s.%N)
gen | $S3 s3 cp - s3://big/object --expected-size "$BYTES"
T1=$(date +%s.%N)
UP_HWM=$(hwm "$GW")
log "upload: $(echo "$BYTES / ($T1 - $T0) / 1048576" | bc) MiB/s; gateway peak RSS $UP_HWM MiB"
$S3 s3api head-object --bucket big --key object | grep -E '"ContentLength"|"ETag"' >&2
log "downloading"
T2=$(date +%s.%N)
GOT=$($S3 s3 cp s3://big/object - | sha256sum | cut -d' ' -f1)
T3=$(date +%s.%N)
WANT=$(gen | sha256sum | cut -d' ' -f1)
[ "$GOT" = "$WANT" ] || die "the download differs from what was uploaded"
DOWN_HWM=$(hwm "$GW")
log "download: $(echo "$BYTES / ($T3 - $T2) / 1048576" | bc) MiB/s, byte-exact; gateway peak RSS $DOWN_HWM MiB"
for i in 1 2 3; do
    log "storage node st-$i peak RSS $(hwm "${PIDS[$((i - 1))]}") MiB, $(du -sh "$RUN/st-$i" | cut -f1) on disk"
done
echo "size_gib=$SIZE_GB gateway_peak_rss_mib_after_upload=$UP_HWM after_download=$DOWN_HWM"
