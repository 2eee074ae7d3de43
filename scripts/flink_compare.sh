#!/usr/bin/env bash
# Runs the same SQL (a datagen source -> query -> blackhole `INSERT INTO`) on Apache Flink and on fsql,
# one after the other on this machine, and prints both throughputs, their ratio and both peak RSS
# (docs/BENCHMARKS.md).
#
#   scripts/flink_compare.sh [SQL_FILE]      # default: benches/sql/datagen_filter_project.sql
#   scripts/flink_compare.sh benches/sql/datagen_over_card_1h.sql     # per-card 1 h RANGE OVER
#
# SQL_FILE must be accepted by `fsql check`, end with an `INSERT INTO` (the oracle waits for that job)
# and write its row count as '10000000' (the number of rows each source reads). With several sources
# (a join), events/s count the rows of all of them.
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
#   REFERENCE_ROWS=N  rows of bounded reference tables the SQL reads besides its events (not counted
#                     as events; fsql must report reading events + N rows; default 0)
#
# Flink's events/s use the job time the oracle reports (submission to the end of the job: it excludes
# the JVM and mini-cluster start, ~5 s, but includes the job's own start, ~6 s). A second Flink run on
# ROWS/100 rows measures that fixed cost, and the difference of the two job times gives Flink's
# steady-state rate. fsql's events/s use the wall time of `fsql run --unthrottled`, process start and
# compilation included; its events per CPU-second divide by the process's user + system time (from
# /usr/bin/time, when installed). Peak RSS: fsql's from /usr/bin/time; Flink's is the JVM's (the
# mini-cluster runs in the PyFlink gateway JVM) VmHWM, sampled from /proc while the job runs.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
sql="${1:-$repo/benches/sql/datagen_filter_project.sql}"
sql="$(cd "$(dirname "$sql")" && pwd)/$(basename "$sql")"
rows="${ROWS:-10000000}"
oracle="${FLINK_ORACLE:-$repo/../shared/tools/flink_oracle.py}"
parallelism="${FLINK_PARALLELISM:-1}"
reference_rows="${REFERENCE_ROWS:-0}"

if [[ ! -f "$oracle" ]]; then
  echo "error: flink_oracle.py not found at $oracle (set FLINK_ORACLE)" >&2
  exit 2
fi

source "$repo/scripts/engines.sh"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
script="$work/$(basename "$sql")"
sed "s/10000000/$rows/g" "$sql" >"$script"
# Sources reading ROWS rows each: every event of every source counts.
sources=$(grep -c "'number-of-rows' = '10000000'" "$sql" || true)
events=$((rows * (sources > 0 ? sources : 1)))

"$fsql" check "$script" >&2

now() { date +%s.%N; }

# "peak_kb cpu_ticks" of the largest java process below PID (VmHWM, and utime + stime from
# /proc/PID/stat), or nothing.
jvm_stat() {
  local pids=("$1") kids=() p best="" ticks=""
  while ((${#pids[@]})); do
    kids=()
    for p in "${pids[@]}"; do
      if [[ "$(cat "/proc/$p/comm" 2>/dev/null)" == java ]]; then
        local kb st
        kb=$(sed -n 's/^VmHWM:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$p/status" 2>/dev/null || true)
        st=$(awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null || true)
        if [[ -n "$kb" && -n "$st" && ( -z "$best" || "$kb" -gt "$best" ) ]]; then
          best=$kb ticks=$st
        fi
      fi
      kids+=($(cat /proc/"$p"/task/*/children 2>/dev/null || true))
    done
    pids=("${kids[@]}")
  done
  [[ -z "$best" ]] || echo "$best $ticks"
}

# Runs SCRIPT on Flink; prints "job_seconds total_seconds wall_seconds jvm_peak_kb jvm_cpu_seconds"
# (0: not measured). The JVM's CPU time is its last sample (every 0.5 s), so it misses the JVM's
# last moments (shutdown).
flink_run() {
  local t0 t1 out json pid s peak=0 ticks=0
  t0=$(now)
  "$venv/bin/python" "$oracle" "$1" -p "$parallelism" --timing >"$work/flink.out" 2>"$work/flink.err" &
  pid=$!
  # VmHWM is the kernel's high-water mark, so sampling until the JVM exits loses nothing of it.
  while kill -0 "$pid" 2>/dev/null; do
    s=$(jvm_stat "$pid" || true)
    if [[ -n "$s" ]]; then
      read -r peak ticks <<<"$s"
    fi
    sleep 0.5
  done
  wait "$pid" || true
  t1=$(now)
  out=$(cat "$work/flink.out")
  json=$(grep '"job_seconds"' <<<"$out" | tail -1)
  if [[ -z "$json" ]]; then
    echo "error: no job timing from the Flink run:" >&2
    cat "$work/flink.out" "$work/flink.err" >&2
    return 1
  fi
  python3 -c 'import json,sys; j = json.loads(sys.argv[1]); print(j["job_seconds"], j["total_seconds"], round(float(sys.argv[3]) - float(sys.argv[2]), 3), sys.argv[4], round(int(sys.argv[5]) / int(sys.argv[6]), 2))' \
    "$json" "$t0" "$t1" "$peak" "$ticks" "$(getconf CLK_TCK)"
}

# --- Flink ---------------------------------------------------------------------------------------
echo "Flink: $rows rows, parallelism $parallelism ..." >&2
read -r flink_job flink_total flink_wall flink_peak flink_cpu < <(flink_run "$script") || true
[[ -n "${flink_wall:-}" ]] || exit 1
small_rows=0 small_job=0 small_total=0 small_cpu=0
if [[ "${FLINK_STEADY:-1}" != 0 ]]; then
  small_rows=$((rows / 100 > 1000 ? rows / 100 : 1000))
  small="$work/small-$(basename "$sql")"
  sed "s/10000000/$small_rows/g" "$sql" >"$small"
  echo "Flink: $small_rows rows (fixed cost) ..." >&2
  read -r small_job small_total _ _ small_cpu < <(flink_run "$small") || true
  [[ -n "${small_total:-}" ]] || exit 1
fi

# --- fsql ----------------------------------------------------------------------------------------
echo "fsql: $rows rows ..." >&2
timing=()
[[ -x /usr/bin/time ]] && timing=(/usr/bin/time -v -o "$work/fsql.time")
t0=$(now)
fsql_summary=$("${timing[@]}" "$fsql" run --unthrottled "$script" 2>&1 >/dev/null | tail -1)
t1=$(now)
fsql_wall=$(python3 -c "print(round($t1 - $t0, 3))")
# `finished: N rows in, M out, K malformed in T s` (T: the run, without process start and compile)
fsql_run=$(sed -n 's/.* in \([0-9.]*\) s$/\1/p' <<<"$fsql_summary")
fsql_in=$(sed -n 's/^finished: \([0-9]*\) rows in.*/\1/p' <<<"$fsql_summary")
fsql_cpu=0 fsql_peak=0
if [[ -f "$work/fsql.time" ]]; then
  fsql_cpu=$(awk -F': ' '/User time|System time/ { s += $2 } END { print s }' "$work/fsql.time")
  fsql_peak=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$work/fsql.time")
fi
if [[ "$fsql_in" != "$((events + reference_rows))" ]]; then
  echo "error: fsql read '$fsql_in' rows, expected $((events + reference_rows)): $fsql_summary" >&2
  exit 1
fi

python3 - "$events" "$flink_job" "$flink_total" "$flink_wall" "$fsql_wall" "$fsql_run" "$parallelism" "$sql" \
  "$((small_rows * (sources > 0 ? sources : 1)))" "$small_job" "$small_total" "${flink_peak:-0}" "$fsql_cpu" "$fsql_peak" "$(uptime)" \
  "${flink_cpu:-0}" "${small_cpu:-0}" <<'EOF'
import sys
rows = int(sys.argv[1])
flink_job, flink_total, flink_wall, fsql_wall, fsql_run = map(float, sys.argv[2:7])
p, sql = sys.argv[7], sys.argv[8]
small_rows, small_job, small_total = int(sys.argv[9]), float(sys.argv[10]), float(sys.argv[11])
flink_peak_kb, fsql_cpu, fsql_peak_kb = int(sys.argv[12]), float(sys.argv[13]), int(sys.argv[14])
load = sys.argv[15].split('load average:')[-1].strip()
flink_cpu, small_cpu = float(sys.argv[16]), float(sys.argv[17])
flink_eps = rows / flink_job
fsql_eps = rows / fsql_wall
process_start = flink_total - flink_job
mib = lambda kb: f"{kb / 1024:.0f} MiB" if kb else "not measured"
# Millions, or thousands below 100k (the reference pipeline runs at thousands per second).
rate = lambda eps: f"{eps / 1e6:.3f} M" if eps >= 1e5 else f"{eps / 1e3:.2f} k"
print(f"SQL: {sql} ({rows} rows); load average at the end: {load}")
print()
print("| engine | time | events/s | fixed start cost | process wall time | peak RSS |")
print("| --- | ---: | ---: | ---: | ---: | ---: |")
if small_rows:
    fixed = f"{process_start:.1f} s process + {small_job:.1f} s job start"
else:
    fixed = f"{process_start:.1f} s process (+ job start, in the job time)"
print(f"| Flink 2.3 (p={p}) | {flink_job:.2f} s job | {rate(flink_eps)} | {fixed} | {flink_wall:.1f} s"
      f" | {mib(flink_peak_kb)} (JVM) |")
print(f"| fsql | {fsql_wall:.2f} s process (run {fsql_run:.2f} s) | {rate(fsql_eps)} | — | {fsql_wall:.1f} s"
      f" | {mib(fsql_peak_kb)} |")
print()
print(f"ratio fsql / Flink, events/s (fsql process wall time vs Flink job time): {fsql_eps / flink_eps:.1f}x")
if small_rows and flink_job > small_job:
    steady = (rows - small_rows) / (flink_job - small_job)
    print(f"Flink steady state ((job time - job time of {small_rows} rows) / rows): {rate(steady)} events/s;"
          f" fsql / Flink steady state: {fsql_eps / steady:.1f}x")
print(f"end to end (both processes' wall time): {flink_wall / fsql_wall:.1f}x")
if flink_cpu > 0:
    line = f"Flink JVM CPU time (user + system, whole process): {flink_cpu:.1f} s"
    if small_rows and small_cpu > 0 and flink_cpu > small_cpu:
        line += (f"; marginal, minus the {small_rows}-row run's {small_cpu:.1f} s:"
                 f" {rate((rows - small_rows) / (flink_cpu - small_cpu))} events per CPU-second")
    print(line)
if fsql_cpu > 0:
    print(f"fsql CPU time (user + system): {fsql_cpu:.2f} s, {rate(rows / fsql_cpu)} events per CPU-second"
          f" ({100 * fsql_cpu / fsql_wall:.0f} % of one core over its wall time)")
EOF
