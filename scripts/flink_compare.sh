#!/usr/bin/env bash
# Runs the same datagen -> filter/project -> blackhole SQL on Apache Flink and on fsql, one after the
# other on this machine, and prints both throughputs and their ratio (docs/BENCHMARKS.md).
#
#   scripts/flink_compare.sh [SQL_FILE]      # default: benches/sql/datagen_filter_project.sql
#
# Environment:
#   ROWS=N            rows per run (default 10000000; replaces every '10000000' in the SQL file)
#   FLINK_VENV=DIR    the PyFlink venv (default $HOME/.cache/flink-venv; created with pip if missing)
#   FLINK_ORACLE=PY   flink_oracle.py (default ../shared/tools/flink_oracle.py next to the repository)
#   FLINK_PARALLELISM=N  Flink's parallelism.default (default 1: fsql runs on one thread)
#   FLINK_STEADY=0    skip the second, tiny Flink run (ROWS/100) that measures Flink's fixed cost and
#                     its steady-state (marginal) rate
#   FSQL_BIN=PATH     the fsql binary (default $CARGO_TARGET_DIR/release/fsql, else target/release/fsql;
#                     built with `cargo build --release --bin fsql` if missing)
#
# Flink's events/s use the job time the oracle reports (submission to the end of the job: it excludes
# the JVM and mini-cluster start, ~5 s, but includes the job's own start, ~6 s). A second Flink run on
# ROWS/100 rows measures that fixed cost, and the difference of the two job times gives Flink's
# steady-state rate. fsql's events/s use the wall time of `fsql run --unthrottled`, process start and
# compilation included.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
sql="${1:-$repo/benches/sql/datagen_filter_project.sql}"
sql="$(cd "$(dirname "$sql")" && pwd)/$(basename "$sql")"
rows="${ROWS:-10000000}"
venv="${FLINK_VENV:-$HOME/.cache/flink-venv}"
oracle="${FLINK_ORACLE:-$repo/../shared/tools/flink_oracle.py}"
parallelism="${FLINK_PARALLELISM:-1}"

if [[ ! -f "$oracle" ]]; then
  echo "error: flink_oracle.py not found at $oracle (set FLINK_ORACLE)" >&2
  exit 2
fi

# Flink 2.3 from PyPI into a venv (~50 s, ~850 MB; needs Java 17).
if ! "$venv/bin/python" -c 'import pyflink' 2>/dev/null; then
  echo "installing apache-flink==2.3.0 into $venv ..." >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet apache-flink==2.3.0
fi

fsql="${FSQL_BIN:-${CARGO_TARGET_DIR:-$repo/target}/release/fsql}"
if [[ ! -x "$fsql" ]]; then
  echo "building $fsql ..." >&2
  (cd "$repo" && cargo build --release --bin fsql)
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
script="$work/$(basename "$sql")"
sed "s/10000000/$rows/g" "$sql" >"$script"

"$fsql" check "$script" >&2

now() { date +%s.%N; }

# Runs SCRIPT on Flink; prints "job_seconds total_seconds wall_seconds".
flink_run() {
  local t0 t1 out json
  t0=$(now)
  out=$("$venv/bin/python" "$oracle" "$1" -p "$parallelism" --timing)
  t1=$(now)
  json=$(grep '"job_seconds"' <<<"$out" | tail -1)
  if [[ -z "$json" ]]; then
    echo "error: no job timing from the Flink run:" >&2
    echo "$out" >&2
    return 1
  fi
  python3 -c 'import json,sys; j = json.loads(sys.argv[1]); print(j["job_seconds"], j["total_seconds"], round(float(sys.argv[3]) - float(sys.argv[2]), 3))' \
    "$json" "$t0" "$t1"
}

# --- Flink ---------------------------------------------------------------------------------------
echo "Flink: $rows rows, parallelism $parallelism ..." >&2
read -r flink_job flink_total flink_wall < <(flink_run "$script") || true
[[ -n "${flink_wall:-}" ]] || exit 1
small_rows=0 small_job=0 small_total=0
if [[ "${FLINK_STEADY:-1}" != 0 ]]; then
  small_rows=$((rows / 100 > 1000 ? rows / 100 : 1000))
  small="$work/small-$(basename "$sql")"
  sed "s/10000000/$small_rows/g" "$sql" >"$small"
  echo "Flink: $small_rows rows (fixed cost) ..." >&2
  read -r small_job small_total _ < <(flink_run "$small") || true
  [[ -n "${small_total:-}" ]] || exit 1
fi

# --- fsql ----------------------------------------------------------------------------------------
echo "fsql: $rows rows ..." >&2
t0=$(now)
fsql_summary=$("$fsql" run --unthrottled "$script" 2>&1 >/dev/null | tail -1)
t1=$(now)
fsql_wall=$(python3 -c "print(round($t1 - $t0, 3))")
# `finished: N rows in, M out, K malformed in T s` (T: the run, without process start and compile)
fsql_run=$(sed -n 's/.* in \([0-9.]*\) s$/\1/p' <<<"$fsql_summary")
fsql_in=$(sed -n 's/^finished: \([0-9]*\) rows in.*/\1/p' <<<"$fsql_summary")
if [[ "$fsql_in" != "$rows" ]]; then
  echo "error: fsql read '$fsql_in' rows, expected $rows: $fsql_summary" >&2
  exit 1
fi

python3 - "$rows" "$flink_job" "$flink_total" "$flink_wall" "$fsql_wall" "$fsql_run" "$parallelism" "$sql" \
  "$small_rows" "$small_job" "$small_total" <<'EOF'
import sys
rows = int(sys.argv[1])
flink_job, flink_total, flink_wall, fsql_wall, fsql_run = map(float, sys.argv[2:7])
p, sql = sys.argv[7], sys.argv[8]
small_rows, small_job, small_total = int(sys.argv[9]), float(sys.argv[10]), float(sys.argv[11])
flink_eps = rows / flink_job
fsql_eps = rows / fsql_wall
process_start = flink_total - flink_job
print(f"SQL: {sql} ({rows} rows)")
print()
print("| engine | time | events/s | fixed start cost | process wall time |")
print("| --- | ---: | ---: | ---: | ---: |")
if small_rows:
    fixed = f"{process_start:.1f} s process + {small_job:.1f} s job start"
else:
    fixed = f"{process_start:.1f} s process (+ job start, in the job time)"
print(f"| Flink 2.3 (p={p}) | {flink_job:.2f} s job | {flink_eps / 1e6:.2f} M | {fixed} | {flink_wall:.1f} s |")
print(f"| fsql | {fsql_wall:.2f} s process (run {fsql_run:.2f} s) | {fsql_eps / 1e6:.2f} M | — | {fsql_wall:.1f} s |")
print()
print(f"ratio fsql / Flink, events/s (fsql process wall time vs Flink job time): {fsql_eps / flink_eps:.1f}x")
if small_rows and flink_job > small_job:
    steady = (rows - small_rows) / (flink_job - small_job)
    print(f"Flink steady state ((job time - job time of {small_rows} rows) / rows): {steady / 1e6:.2f} M events/s;"
          f" fsql / Flink steady state: {fsql_eps / steady:.1f}x")
print(f"end to end (both processes' wall time): {flink_wall / fsql_wall:.1f}x")
EOF
