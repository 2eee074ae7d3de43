#!/usr/bin/env bash
# Bounded fuzzing of fsql's untrusted-input surfaces with cargo-fuzz (libFuzzer):
#   front_end   .fsql text -> parse -> analyse (DataFusion) -> lower -> plan artefact round trip
#   plan_bytes  arbitrary bytes -> Plan::from_bytes
#   decoders    a filesystem table's JSON-lines / CSV files -> Arrow batches -> rendered rows
#   jit         generated expressions and batches -> JIT kernel vs interpreter (equal results)
#   model_text  LightGBM model text -> parser, LightGBM, compiled scorer (equal results)
#
# Usage: scripts/fuzz.sh [SECONDS] [TARGET]
#   SECONDS  time per target (default 60); TARGET  one target (default: all of them).
# Exits non-zero on a crash, timeout or OOM and prints the reproducer's path and the command that
# replays it. Seeds (committed) are in fuzz/seeds/TARGET; what the fuzzer finds goes to
# fuzz/corpus/TARGET (git-ignored; keep it between runs to go deeper). See fuzz/README.md.
#
# Environment: FSQL_FUZZ_TARGET_DIR (default ~/.cache/fsql-fuzz-target, kept between runs and CI
# runs so that only fsql's own crates rebuild), FSQL_FUZZ_ARGS (extra libFuzzer flags).
set -euo pipefail
cd "$(dirname "$0")/.."
# System packages and the build's environment (ROCKSDB_LIB_DIR: the runtime links Debian's RocksDB).
source scripts/deps.sh

SECONDS_PER_TARGET="${1:-60}"
ONLY="${2:-}"
ALL_TARGETS=(front_end plan_bytes decoders jit model_text)
CARGO_FUZZ_VERSION=0.13.2

# cargo-fuzz passes nightly-only flags to rustc (-Zsanitizer, -Cpasses=sancov-module with
# -Cllvm-args for libFuzzer's coverage counters, --cfg fuzzing) and the project only has the stable
# toolchain. RUSTC_BOOTSTRAP=1 lets the stable compiler accept those -Z flags; it is set for the
# fuzz build alone (never for the main workspace) and changes nothing about the code generated for
# fsql itself.
export RUSTC_BOOTSTRAP=1
export CARGO_TERM_COLOR=never
FUZZ_TARGET_DIR="${FSQL_FUZZ_TARGET_DIR:-$HOME/.cache/fsql-fuzz-target}"
# A caller's CARGO_TARGET_DIR (scripts/test.sh exports the main workspace's) must not mix the
# instrumented build into the main one.
export CARGO_TARGET_DIR="$FUZZ_TARGET_DIR"

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz $CARGO_FUZZ_VERSION"
  cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi

if [ -n "$ONLY" ]; then
  targets=("$ONLY")
else
  targets=("${ALL_TARGETS[@]}")
fi

# No sanitizer (-s none): Rust code is memory safe, and what we hunt is panics (which abort under
# libFuzzer), infinite loops (-timeout) and runaway memory (-rss_limit_mb). Without ASan the targets
# run about twice as fast and need no separate sanitizer build of the dependencies.
FUZZ_FLAGS=(-s none --target-dir "$FUZZ_TARGET_DIR")

echo "== cargo fuzz build (${targets[*]})"
build_start=$SECONDS
if [ -n "$ONLY" ]; then
  cargo fuzz build "${FUZZ_FLAGS[@]}" "$ONLY"
else
  cargo fuzz build "${FUZZ_FLAGS[@]}"
fi
echo "built in $((SECONDS - build_start)) s"

log_dir="fuzz/logs"
mkdir -p "$log_dir"
failed=0
for target in "${targets[@]}"; do
  seeds="fuzz/seeds/$target"
  corpus="fuzz/corpus/$target"
  mkdir -p "$corpus" "fuzz/artifacts/$target"
  args=(
    -max_total_time="$SECONDS_PER_TARGET"
    -max_len=4096
    -timeout=10
    -rss_limit_mb=2048
    -print_final_stats=1
  )
  [ -f "fuzz/$target.dict" ] && args+=(-dict="fuzz/$target.dict")
  # shellcheck disable=SC2206
  args+=(${FSQL_FUZZ_ARGS:-})
  log="$log_dir/$target.log"
  echo "== fuzz $target for ${SECONDS_PER_TARGET} s (log: $log)"
  # The corpus directory comes first: libFuzzer writes new inputs to the first directory only, so the
  # committed seeds are read but never modified.
  set +e
  cargo fuzz run "${FUZZ_FLAGS[@]}" "$target" "$corpus" "$seeds" -- "${args[@]}" >"$log" 2>&1
  status=$?
  set -e
  # libFuzzer's closing stats: the last status line (#runs, coverage, corpus, exec/s, rss) and the
  # -print_final_stats block.
  grep -E '^#[0-9]+[[:space:]]+(DONE|pulse|NEW|REDUCE|INITED)' "$log" | tail -n 1 || true
  grep -E '^(stat::number_of_executed_units|stat::average_exec_per_sec|stat::peak_rss_mb|Done [0-9]+ runs)' "$log" || true
  if [ "$status" -ne 0 ]; then
    failed=1
    artifact=$(grep -oE '[Tt]est unit written to [^ ]+' "$log" | tail -n 1 | awk '{print $NF}' || true)
    echo "!! fuzz target $target FAILED (exit $status)"
    { grep -A1 'panicked at' "$log" | head -n 2; grep -E '^==[0-9]+== ERROR' "$log" | head -n 1; } || true
    if [ -n "$artifact" ]; then
      echo "!! reproducer: $artifact"
      echo "!! replay:     RUSTC_BOOTSTRAP=1 cargo fuzz run -s none --target-dir $FUZZ_TARGET_DIR $target $artifact"
    else
      tail -n 30 "$log"
    fi
  fi
done

if [ "$failed" -ne 0 ]; then
  echo "fuzz: FAILED (see above)"
  exit 1
fi
echo "fuzz: ok (${targets[*]}, ${SECONDS_PER_TARGET} s each)"
