#!/usr/bin/env bash
# The Nexmark queries fsql runs (benches/nexmark/q*.fsql) on Apache Flink and on fsql, over the same
# events: fsql's `nexmark` generator writes EVENTS events to JSON-lines files
# (benches/nexmark/generate.fsql), and each query runs with its tables read from those files
# (benches/nexmark/files.sql in place of its `INCLUDE 'nexmark.fsql';`) — the same SQL text on both
# engines. docs/BENCHMARKS.md ("Nexmark") has the method and the figures measured.
#
#   scripts/nexmark_compare.sh                    # throughput: every query, 1,000,000 events
#   EVENTS=200000 scripts/nexmark_compare.sh q5 q7
#   scripts/nexmark_compare.sh --check            # results: each query's rows on Flink and on fsql, compared
#
# Throughput (default): each query's INSERT INTO a blackhole sink goes through scripts/flink_compare.sh
# (Flink 2.3 at FLINK_PARALLELISM, default 1, through ../shared/tools/flink_oracle.py; then
# `fsql run --unthrottled`), whose full report is printed; a summary table follows with both engines'
# events/s and their ratio. Events are the rows the query reads (the files of the tables it uses),
# Flink's rate uses its job time and fsql's its process wall time (see flink_compare.sh).
#
# --check: each query's INSERT INTO is dropped, so its SELECT is the script's last statement; Flink
# (flink_oracle.py, parallelism 1) and `fsql run --format jsonl` print its rows, which are compared as
# multisets. Windows and joins emit in different orders on the two engines; the rows must be equal.
# An updating query (q4, q15-q19: GROUP BY or TopN without a window) is compared by its final rows: Flink's
# changelog applied by the oracle (--final), fsql's (its `op` column) applied here, since the two
# engines fold updates differently (Flink row by row, fsql per batch).
#
# Environment:
#   EVENTS=N        events generated, all three kinds (default 1000000; 1 person, 3 auctions, 46 bids in 50)
#   FSQL_BIN=PATH   the fsql binary (default $CARGO_TARGET_DIR/release/fsql, else target/release/fsql;
#                   built with `cargo build --release --bin fsql` if missing). A debug build is fine for --check
#   FLINK_VENV, FLINK_ORACLE, FLINK_PARALLELISM as for scripts/flink_compare.sh. Its fixed-cost run
#                   (FLINK_STEADY=1) cannot work here: it shrinks a generator's row count, and these
#                   queries read files. For the steady state, run two sizes and take the difference:
#                     EVENTS=10000000 scripts/nexmark_compare.sh > big.txt
#                     EVENTS=1000000 scripts/nexmark_compare.sh > small.txt
#                     scripts/nexmark_marginal.py big.txt small.txt
#   KEEP_DATA=DIR   write the event files to DIR and keep them (reused when already there for EVENTS)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
nexmark="$repo/benches/nexmark"
events="${EVENTS:-1000000}"
oracle="${FLINK_ORACLE:-$repo/../shared/tools/flink_oracle.py}"
check=0
queries=()
for arg in "$@"; do
  case "$arg" in
    --check) check=1 ;;
    q[0-9]*) queries+=("$arg") ;;
    *) echo "usage: $0 [--check] [q0 q1 ...]" >&2; exit 2 ;;
  esac
done
# The queries fsql runs (benches/nexmark/README.md lists the others and why not).
[[ ${#queries[@]} -gt 0 ]] || queries=(q0 q1 q2 q3 q4 q5 q7 q8 q13 q14 q15 q16 q17 q18 q19 q20 q21 q22)

if [[ "${FLINK_STEADY:-0}" != 0 ]]; then
  echo "error: FLINK_STEADY: the queries read files, which a fixed-cost run cannot shrink;" \
    "run two EVENTS sizes and compare them with scripts/nexmark_marginal.py (see the header)" >&2
  exit 2
fi

source "$repo/scripts/engines.sh"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
data="${KEEP_DATA:-$work/data}"
mkdir -p "$data"
data="$(cd "$data" && pwd)"

# --- the events ----------------------------------------------------------------------------------
# nexmark.fsql's tables with EVENTS events, in place of generate.fsql's INCLUDE; files into $data.
tables="$work/nexmark_tables.fsql"
sed "s/'10000000'/'$events'/" "$nexmark/nexmark.fsql" >"$tables"
if [[ -n "${KEEP_DATA:-}" && -s "$data/bid.jsonl" && "$(cat "$data/events" 2>/dev/null)" == "$events" ]]; then
  echo "events: reusing $data" >&2
else
  echo "events: $events from the nexmark generator into $data ..." >&2
  sed -e "/^INCLUDE 'nexmark.fsql';/{r $tables" -e 'd}' -e "s|'data/|'$data/|" \
    "$nexmark/generate.fsql" >"$work/generate.fsql"
  "$fsql" run --unthrottled "$work/generate.fsql" >&2
  echo "$events" >"$data/events"
fi
declare -A lines
for t in person auction bid; do
  lines[$t]=$(wc -l <"$data/$t.jsonl")
done
echo "events: ${lines[person]} persons, ${lines[auction]} auctions, ${lines[bid]} bids" >&2

sed "s|@DATA@|$data|g" "$nexmark/files.sql" >"$work/files.sql"

# The query's text over the files: files.sql in place of the INCLUDE, and q13's side input by its
# absolute path.
over_files() {
  sed -e "/^INCLUDE 'nexmark.fsql';/{r $work/files.sql" -e 'd}' \
    -e "s|'path' = 'side_input.csv'|'path' = '$nexmark/side_input.csv'|" "$nexmark/$1.fsql"
}

# --- each query ----------------------------------------------------------------------------------
summary=()
failed=0
for q in "${queries[@]}"; do
  if [[ ! -f "$nexmark/$q.fsql" ]]; then
    echo "error: no benches/nexmark/$q.fsql" >&2
    exit 2
  fi
  if ((check)); then
    script="$work/$q.check.sql"
    over_files "$q" | sed '/^INSERT INTO /d' >"$script"
    echo "$q: Flink ..." >&2
    "$venv/bin/python" "$oracle" "$script" -p 1 --final >"$work/$q.flink" 2>"$work/$q.flink.err" || {
      echo "$q: Flink failed:" >&2; cat "$work/$q.flink.err" >&2; failed=1; continue; }
    echo "$q: fsql ..." >&2
    "$fsql" run --unthrottled --format jsonl "$script" >"$work/$q.fsql" 2>"$work/$q.fsql.err" || {
      echo "$q: fsql failed:" >&2; cat "$work/$q.fsql.err" >&2; failed=1; continue; }
    result=$(python3 - "$work/$q.flink" "$work/$q.fsql" <<'EOF'
import collections, json, sys
def rows(path):
    # Final rows: a row with "op" -U or -D retracts one equal row (fsql's updating queries).
    out = collections.Counter()
    for line in open(path):
        line = line.strip()
        if line.startswith('{'):
            obj = json.loads(line)
            op = obj.pop('op', '+I')
            key = json.dumps(obj, sort_keys=True)
            out[key] += 1 if op in ('+I', '+U') else -1
    return +out
flink, fsql = rows(sys.argv[1]), rows(sys.argv[2])
n = sum(flink.values())
if flink == fsql:
    print(f"same {n} rows")
else:
    only_flink, only_fsql = flink - fsql, fsql - flink
    print(f"DIFFERENT: Flink {n} rows, fsql {sum(fsql.values())}; only Flink {sum(only_flink.values())},"
          f" only fsql {sum(only_fsql.values())}")
    for r in list(only_flink)[:3]:
        print(f"  - {r}")
    for r in list(only_fsql)[:3]:
        print(f"  + {r}")
EOF
)
    echo "$q: $result" >&2
    [[ "$result" == same* ]] || failed=1
    summary+=("| $q | $(head -1 <<<"$result") |")
  else
    script="$work/$q.sql"
    over_files "$q" >"$script"
    # Events: the rows of the event tables the plan reads; a reference table's rows (q13's side input)
    # are read by both engines but not counted.
    read_rows=0 reference_rows=0
    for t in $("$fsql" explain "$script" 2>/dev/null | sed -n 's/^#[0-9]* Source `\([a-z_]*\)`.*/\1/p'); do
      case "$t" in
        person | auction | bid) read_rows=$((read_rows + lines[$t])) ;;
        side_input) reference_rows=$((reference_rows + $(wc -l <"$nexmark/side_input.csv"))) ;;
        *) echo "error: $q reads an unknown table '$t'" >&2; exit 2 ;;
      esac
    done
    echo "== $q ($read_rows rows read)"
    out=$(ROWS="$read_rows" REFERENCE_ROWS="$reference_rows" FSQL_BIN="$fsql" FLINK_STEADY=0 FLINK_ORACLE="$oracle" \
      "$repo/scripts/flink_compare.sh" "$script") || { echo "$q: failed" >&2; failed=1; continue; }
    echo "$out"
    flink_eps=$(awk -F'|' '/^\| Flink/ { gsub(/ /, "", $4); print $4 }' <<<"$out")
    fsql_eps=$(awk -F'|' '/^\| fsql/ { gsub(/ /, "", $4); print $4 }' <<<"$out")
    ratio=$(sed -n 's/^ratio fsql \/ Flink.*: \([0-9.]*x\)$/\1/p' <<<"$out")
    summary+=("| $q | $read_rows | $flink_eps | $fsql_eps | $ratio |")
  fi
done

echo
if ((check)); then
  echo "Rows of each query on Flink 2.3 and fsql over $events events ($data):"
  echo
  echo "| query | result |"
  echo "| --- | --- |"
else
  echo "Nexmark over $events events (${lines[person]} persons, ${lines[auction]} auctions, ${lines[bid]} bids),"
  echo "Flink 2.3 at parallelism ${FLINK_PARALLELISM:-1} (job time) and fsql $fsql (process wall time);"
  echo "load average at the end: $(uptime | sed 's/.*load average: //')"
  echo
  echo "| query | rows read | Flink events/s | fsql events/s | fsql / Flink |"
  echo "| --- | ---: | ---: | ---: | ---: |"
fi
printf '%s\n' "${summary[@]}"
exit "$failed"
