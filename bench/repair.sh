#!/usr/bin/env bash
# Repair speed (issue 12): six storage nodes in this machine's loopback, 1 GiB
# (REPAIR_GIB) written 4+2-coded and then 3x-replicated, one node's disk wiped, one
# repair pass timed: GiB rebuilt per minute (crates/storage/benches/repair.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench -p lingjing-storage --bench repair
