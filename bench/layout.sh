#!/usr/bin/env bash
# The share of block pieces that move when one storage node joins or leaves a layout of N
# (crates/model/examples/layout_moves.rs), against the least possible. Deterministic: no
# load, no peer; the placement rule is the one every gateway runs.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --quiet --release -p lingjing-model --example layout_moves
