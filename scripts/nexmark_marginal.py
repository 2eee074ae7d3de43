#!/usr/bin/env python3
"""Steady-state Nexmark figures from two runs of scripts/nexmark_compare.sh at different sizes.

    EVENTS=10000000 scripts/nexmark_compare.sh > big.txt
    EVENTS=1000000 scripts/nexmark_compare.sh > small.txt
    scripts/nexmark_marginal.py big.txt small.txt

A short Flink job is mostly its start (the JVM, the mini-cluster, the job's submission and warm-up),
which a whole-run rate charges to the events. The difference of the two runs (rows read, Flink's job
time and its JVM's CPU time, fsql's process wall time and CPU time) leaves that fixed cost out: the
marginal events per second, and per CPU-second (per core), of each engine. Prints a Markdown table.
"""
import re
import sys


def parse(path):
    """Per query: rows read, Flink job time and JVM CPU time, fsql wall and CPU time."""
    out, q = {}, None
    patterns = {
        "flink_job": r"\| Flink 2\.3 \(p=\d+\) \| ([\d.]+) s job",
        "flink_cpu": r"Flink JVM CPU time \(user \+ system, whole process\): ([\d.]+) s",
        "fsql_wall": r"\| fsql \| ([\d.]+) s process",
        "fsql_cpu": r"fsql CPU time \(user \+ system\): ([\d.]+) s",
    }
    for line in open(path, encoding="utf-8"):
        m = re.match(r"== (q\d+) \((\d+) rows read\)", line)
        if m:
            q = m.group(1)
            out[q] = {"rows": int(m.group(2))}
            continue
        for name, pattern in patterns.items():
            m = re.match(pattern, line)
            if q is not None and m:
                out[q][name] = float(m.group(1))
    return out


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: nexmark_marginal.py BIG.txt SMALL.txt (outputs of scripts/nexmark_compare.sh)")
    big, small = parse(sys.argv[1]), parse(sys.argv[2])
    fields = ("rows", "flink_job", "flink_cpu", "fsql_wall", "fsql_cpu")
    print("| query | rows read, big / small | Flink events/s | fsql events/s | fsql / Flink "
          "| Flink events per CPU-s | fsql events per CPU-s | fsql / Flink per core |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for q, b in big.items():
        s = small.get(q)
        if s is None or any(f not in b or f not in s for f in fields):
            print(f"| {q} | (missing from one of the runs) | | | | | | |")
            continue
        rows = b["rows"] - s["rows"]
        spans = {f: b[f] - s[f] for f in fields[1:]}
        if rows <= 0 or min(spans.values()) <= 0:
            print(f"| {q} | (the big run is not larger) | | | | | | |")
            continue
        flink_eps, fsql_eps = rows / spans["flink_job"], rows / spans["fsql_wall"]
        flink_cpu, fsql_cpu = rows / spans["flink_cpu"], rows / spans["fsql_cpu"]
        millions = lambda x: f"{x / 1e6:.2f} M"
        print(f"| {q} | {b['rows']:,} / {s['rows']:,} | {millions(flink_eps)} | {millions(fsql_eps)} "
              f"| {fsql_eps / flink_eps:.1f}× | {millions(flink_cpu)} | {millions(fsql_cpu)} "
              f"| **{fsql_cpu / flink_cpu:.1f}×** |")


if __name__ == "__main__":
    main()
