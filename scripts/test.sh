#!/usr/bin/env bash
# Runs every check and test of the project on a fresh Debian machine with the Rust toolchain:
# installs what is missing, then formatting, lints, unit and end-to-end tests, and the `fsql test`
# suites. This is the README's test command; `.ci/run` calls it.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/fsql-target}"
export CARGO_TERM_COLOR=never
source scripts/deps.sh
# A local Kafka broker for the Kafka tests (scripts/kafka.sh), stopped on every exit, failures included.
trap 'bash scripts/kafka.sh stop || true' EXIT
kafka_env="$(bash scripts/kafka.sh start)"
export FSQL_KAFKA_BROKERS="${kafka_env#FSQL_KAFKA_BROKERS=}"
echo "== kafka broker at $FSQL_KAFKA_BROKERS"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo test"
cargo test --workspace 2>&1 | tee "$CARGO_TARGET_DIR/cargo-test.log"
echo "== fuzz (bounded)"; bash scripts/fuzz.sh 60
echo "== fsql test (semantics suites, examples, pipelines, the SQL library, the Nexmark queries)"
cargo build --bin fsql
mapfile -t suites < <(find tests/suites examples pipelines stdlib benches -name '*.test.fsql' | sort)
"$CARGO_TARGET_DIR/debug/fsql" test "${suites[@]}"
echo "== fsql test, the same suites with state in RocksDB, one key per operator resident (every access spills and reads back)"
"$CARGO_TARGET_DIR/debug/fsql" test --state-backend rocksdb --state-resident-keys 1 "${suites[@]}"
