# Sourced by the comparison scripts (flink_compare.sh, flink_compare_reference.sh, nexmark_compare.sh):
# the two engines they run, each installed or built when missing. Needs $repo (the repository root).
#
#   $fsql  the fsql release binary: FSQL_BIN, else $CARGO_TARGET_DIR/release/fsql, else target/release/fsql;
#          built with `cargo build --release --bin fsql` (after scripts/deps.sh) if missing.
#   $venv  a Python venv with Apache Flink 2.3 from PyPI: FLINK_VENV, default $HOME/.cache/flink-venv;
#          installed if missing (~50 s, ~850 MB; Flink needs Java 17).
fsql="${FSQL_BIN:-${CARGO_TARGET_DIR:-$repo/target}/release/fsql}"
if [[ ! -x "$fsql" ]]; then
  echo "building $fsql ..." >&2
  (cd "$repo" && source scripts/deps.sh && cargo build --release --bin fsql)
fi

venv="${FLINK_VENV:-$HOME/.cache/flink-venv}"
if ! "$venv/bin/python" -c 'import pyflink' 2>/dev/null; then
  echo "installing apache-flink==2.3.0 into $venv ..." >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet apache-flink==2.3.0
fi
