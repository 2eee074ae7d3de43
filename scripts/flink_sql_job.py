#!/usr/bin/env python3
"""Runs a SQL file's pipeline on a local PyFlink mini-cluster as ONE job and prints its time.

    $FLINK_VENV/bin/python scripts/flink_sql_job.py SCRIPT.sql [-p N] [--timing]

Like ../shared/tools/flink_oracle.py for a file that ends with its INSERT INTOs, except that every
`INSERT INTO` of the file is submitted together, as one statement set: one Flink job computes all of
them, sharing the views they read, as `fsql run` runs every INSERT INTO of a file as one pipeline
(the oracle runs each INSERT as its own job, one after the other). `SET 'k' = 'v';` statements go to
the table config first; every other statement (CREATE TABLE / VIEW) is executed in order. It prints
the oracle's summary line, so scripts/flink_compare.sh can use it (FLINK_ORACLE):

    {"status": "FINISHED", "job_seconds": <submission to end of the job>, "total_seconds": <whole run>}

Exit code 0 on success, 1 on a SQL or job error (message on stderr), 2 without INSERT INTO.
"""
import argparse
import json
import os
import re
import sys
import time

SET = re.compile(r"^SET\s+'([^']+)'\s*=\s*'((?:[^']|'')*)'\s*$", re.I | re.S)


def split_sql(text):
    """The statements of `text`, split on ';' outside quotes and comments (comments dropped)."""
    stmts, buf, i, n, quote = [], [], 0, len(text), None
    while i < n:
        c = text[i]
        if quote:
            buf.append(c)
            if c == quote:
                if i + 1 < n and text[i + 1] == quote:  # '' or `` inside a quoted text
                    buf.append(c)
                    i += 1
                else:
                    quote = None
        elif c in "'\"`":
            quote = c
            buf.append(c)
        elif text.startswith("--", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
            continue
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            i = n if j < 0 else j + 2
            buf.append(" ")
            continue
        elif c == ";":
            stmts.append("".join(buf).strip())
            buf = []
        else:
            buf.append(c)
        i += 1
    stmts.append("".join(buf).strip())
    return [s for s in stmts if s]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("script")
    ap.add_argument("-p", "--parallelism", type=int, default=1)
    ap.add_argument("--timing", action="store_true", help="log the steps' times on stderr")
    a = ap.parse_args()

    t0 = time.time()

    def log(msg):
        if a.timing:
            print(f"[flink_sql_job {time.time() - t0:7.2f}s] {msg}", file=sys.stderr, flush=True)

    with open(a.script) as f:
        stmts = split_sql(f.read())
    inserts = [s for s in stmts if s.upper().startswith("INSERT")]
    if not inserts:
        print(f"{a.script}: no INSERT INTO statement", file=sys.stderr)
        return 2

    from pyflink.table import EnvironmentSettings, TableEnvironment

    env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    conf = env.get_config()
    conf.set("parallelism.default", str(a.parallelism))
    conf.set("table.local-time-zone", "UTC")
    conf.set("pipeline.name", os.path.basename(a.script))
    log("environment ready")
    try:
        for s in stmts:
            m = SET.match(s)
            if m:
                conf.set(m.group(1), m.group(2).replace("''", "'"))
        for s in stmts:
            if not SET.match(s) and not s.upper().startswith("INSERT"):
                env.execute_sql(s)
        statements = env.create_statement_set()
        for s in inserts:
            statements.add_insert_sql(s)
        t1 = time.time()
        statements.execute().wait()
        job = time.time() - t1
        log(f"job of {len(inserts)} INSERT INTO finished in {job:.2f}s")
        print(json.dumps({"status": "FINISHED", "job_seconds": round(job, 3),
                          "total_seconds": round(time.time() - t0, 3)}))
        return 0
    except Exception as e:  # py4j / Flink errors
        print("ERROR: " + str(e)[:4000], file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
