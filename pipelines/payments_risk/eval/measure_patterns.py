#!/usr/bin/env python3
"""Measures the reference pipeline's MATCH_RECOGNIZE patterns on the generator's labelled data.

Runs ../payments_risk.fsql with its source options overridden (`--set key=value`, any number), its
decisions SELECT dropped and a second sink added that writes the generator's labelled rows; then
compares each pattern's alerts with the scenario instances the generator injected:

- an *instance* of a card scenario is the scenario's rows on one card (merchant_burst: on one
  merchant; auth_without_capture: one authorisation), spanning its first to its last row;
- an alert *hits* an instance of its own scenario when it names the same card (merchant,
  authorisation) and its time span overlaps the instance's;
- otherwise it is *other fraud* when it overlaps an instance of another scenario on the same key or
  the payment that completed it is labelled, and a *false alert on genuine traffic* when not.

Usage (from the repository root):
  python3 pipelines/payments_risk/eval/measure_patterns.py [--fsql PATH] [--set KEY=VALUE ...]
"""
import argparse
import collections
import json
import os

import variant
from variant import ts

PATTERNS = {
    # alert name: (scenario it looks for, instance key)
    "card_testing": ("card_testing", "card_id"),
    "account_takeover": ("account_takeover", "card_id"),
    "auth_without_capture": ("auth_without_capture", "payment_id"),
    "refund_abuse": ("refund_abuse", "card_id"),
    "merchant_burst": ("merchant_burst", "merchant_id"),
    "geo_jump": ("geo_jump", "card_id"),
    "device_switching": ("device_switching", "card_id"),
    "decline_retry": ("decline_retry", "card_id"),
}
KEYS = ("card_id", "merchant_id", "payment_id")



def pipeline(overrides, out_dir):
    text = variant.pipeline(overrides, out_dir)
    text += f"""
CREATE TABLE labelled_out (payment_id BIGINT, card_id STRING, merchant_id STRING, kind STRING,
  scenario STRING, ts TIMESTAMP(3))
  WITH ('connector' = 'filesystem', 'path' = '{out_dir}/labelled.jsonl', 'format' = 'json');
INSERT INTO labelled_out SELECT payment_id, card_id, merchant_id, kind, scenario, ts FROM payments
WHERE scenario IS NOT NULL;
"""
    return text


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fsql", default=os.environ.get("FSQL", "fsql"))
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a payments-generator option of the pipeline's source")
    ap.add_argument("--out", default="/tmp/fsql-pattern-eval")
    ap.add_argument("--warmup", type=float, default=20.0,
                    help="minutes: the second recall counts only instances that start later "
                         "(patterns that compare with a card's or merchant's history need some)")
    args = ap.parse_args()
    overrides = dict(kv.split("=", 1) for kv in args.set)
    os.makedirs(args.out, exist_ok=True)
    out_dir = os.path.abspath(args.out)
    variant.run(args.fsql, pipeline(overrides, out_dir), "measure_patterns")

    # Instances: per scenario and key, runs of rows no more than 30 minutes apart.
    spans = collections.defaultdict(list)  # (scenario, key value) -> [[first, last]]
    for line in open(os.path.join(out_dir, "labelled.jsonl")):
        r = json.loads(line)
        if r["kind"] != "AUTH" and r["scenario"] != "refund_abuse":
            continue
        for key in KEYS:
            k = (r["scenario"], key, r[key])
            t = ts(r["ts"])
            runs = spans[k]
            if runs and t - runs[-1][1] <= 1800:
                runs[-1][1] = max(runs[-1][1], t)
            else:
                runs.append([t, t])

    def instances(scenario, key):
        return {(k[2], i): run for k, runs in spans.items() if k[0] == scenario and k[1] == key
                for i, run in enumerate(runs)}

    start = min(run[0] for runs in spans.values() for run in runs)
    warm = start + args.warmup * 60
    alerts = [json.loads(line) for line in open(os.path.join(out_dir, "pattern_alerts.jsonl"))]
    rows = []
    for name, (scenario, key) in PATTERNS.items():
        mine = [a for a in alerts if a["alert"] == name]
        injected = instances(scenario, key)
        by_key = collections.defaultdict(list)
        for (value, i), run in injected.items():
            by_key[value].append((i, run))
        found, hits, other, genuine = set(), 0, 0, 0
        for a in mine:
            lo, hi = ts(a["first_ts"]) - 1, ts(a["last_ts"]) + 1
            matched = [(a[key], i) for i, (f, l) in by_key.get(a[key], []) if f <= hi and lo <= l]
            if matched:
                hits += 1
                found.update(matched)
                continue
            overlaps_other = a["scenario"] is not None or any(
                f <= hi and lo <= l
                for (s, k, v), runs in ((k, spans[k]) for k in spans)
                if k[1] in ("card_id", "merchant_id") and a.get(k[1]) == v
                for f, l in runs)
            if overlaps_other:
                other += 1
            else:
                genuine += 1
        late = {k for k, run in injected.items() if run[0] >= warm}
        rows.append((name, len(mine), hits, len(found), len(injected), len(found & late),
                     len(late), other, genuine))
    print(f"| pattern | alerts | hits | found / injected | recall | after {args.warmup:g} min: "
          "found / injected | recall | other fraud | false on genuine |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    pct = lambda a, b: f"{a / b:.1%}" if b else "-"
    for name, n, hits, found, injected, wfound, winjected, other, genuine in rows:
        print(f"| {name} | {n} | {hits} | {found} / {injected} | {pct(found, injected)} | "
              f"{wfound} / {winjected} | {pct(wfound, winjected)} | {other} | {genuine} |")


if __name__ == "__main__":
    main()
