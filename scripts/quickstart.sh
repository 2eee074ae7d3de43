#!/usr/bin/env bash
# Builds fsql and runs the reference payments-risk pipeline on the built-in payments generator,
# printing the decisions that are not ALLOW as JSON lines.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/fsql-target}"
source scripts/deps.sh
cargo build --release --bin fsql
exec "$CARGO_TARGET_DIR/release/fsql" run pipelines/payments_risk/payments_risk.fsql --format jsonl "$@"
