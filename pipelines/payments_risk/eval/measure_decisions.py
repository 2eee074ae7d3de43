#!/usr/bin/env python3
"""Measures the reference pipeline's decisions on the generator's labelled data.

Runs ../payments_risk.fsql with its generator options overridden (`--set key=value`, e.g.
`--set seed=301`), its printed SELECT dropped, its file sinks written to --out, and two sinks added
that write every decision with its label: `decisions` (each authorisation) and `refund_decisions`
(each refund request). Those are the pipeline's decision points; captures are not decided.

A decision *flags* an event when it is not ALLOW (BLOCK or REVIEW). Labels are the generator's
`is_fraud`, unchanged (`auth_without_capture` is genuine). Three readings:

- **payment level**: recall = flagged fraud events / fraud events, false-positive rate = flagged
  genuine events / genuine events, precision = flagged fraud / flagged; over authorisations alone and
  over every decision point (authorisations and refunds);
- **instance level**: an instance of a scenario is its events on one card (merchant_burst: on one
  merchant), runs no more than 30 minutes apart; it is caught when any of its events is flagged;
- **after the first event**: payment-level recall without each instance's first authorisation. The
  first payment of a velocity spike, geo jump, device switch, refund spree or merchant burst is, by
  construction of the generator, a payment like any other of its card / merchant (the home device,
  IP and country, a usual amount, a merchant at its usual pace), so no decision taken when it arrives
  can tell it apart; the reading shows what the rest of each scenario gives.

With `--misses PATH` it also writes, one JSON object a line, every fraud event the decisions let through
and every genuine event they flag: its kind, scenario, position in its instance (1: the first event),
decision, rule, score and, for an authorisation, the model's input features (the pipeline's
`CREATE MODEL fraud_gbm INPUT` columns) as the model saw them: what to compare when looking for a feature
that separates the misses from the genuine events the decisions already flag.

Usage (from the repository root):
  python3 pipelines/payments_risk/eval/measure_decisions.py [--fsql PATH] [--set KEY=VALUE ...] [--misses PATH]
"""
import argparse
import collections
import json
import os
import re

import variant
from variant import ts




def model_inputs(text):
    """The column names of `CREATE MODEL fraud_gbm INPUT (...)`, in order."""
    body = re.search(r"CREATE MODEL fraud_gbm\s+INPUT\s*\((.*?)\)\s*OUTPUT", text, re.S).group(1)
    body = re.sub(r"--[^\n]*", "", body)
    return [col.split()[0] for col in body.split(",") if col.strip()]


def feature_sink(text, out_dir):
    """A sink of every authorisation's model inputs (as DOUBLE), for --misses."""
    features = model_inputs(text)
    cols = ", ".join(f"{f} DOUBLE" for f in features)
    casts = ", ".join(f"CAST({f} AS DOUBLE) AS {f}" for f in features)
    return f"""
CREATE TABLE all_features_out (payment_id BIGINT, {cols})
  WITH ('connector' = 'filesystem', 'path' = '{out_dir}/all_features.jsonl', 'format' = 'json');
INSERT INTO all_features_out SELECT payment_id, {casts} FROM decisions;
"""


def pipeline(overrides, out_dir, with_features=False):
    text = variant.pipeline(overrides, out_dir)
    if with_features:
        text += feature_sink(text, out_dir)
    text += f"""
CREATE TABLE all_decisions_out (payment_id BIGINT, kind STRING, card_id STRING, merchant_id STRING,
  ts TIMESTAMP(3), decision STRING, rule STRING, score DOUBLE, is_fraud BOOLEAN, scenario STRING)
  WITH ('connector' = 'filesystem', 'path' = '{out_dir}/all_decisions.jsonl', 'format' = 'json');
INSERT INTO all_decisions_out
SELECT payment_id, 'AUTH' AS kind, card_id, merchant_id, ts, decision, rule, score, is_fraud, scenario
FROM decisions;
CREATE TABLE all_refund_decisions_out (payment_id BIGINT, kind STRING, card_id STRING,
  merchant_id STRING, ts TIMESTAMP(3), decision STRING, rule STRING, is_fraud BOOLEAN, scenario STRING)
  WITH ('connector' = 'filesystem', 'path' = '{out_dir}/all_refund_decisions.jsonl', 'format' = 'json');
INSERT INTO all_refund_decisions_out
SELECT payment_id, 'REFUND' AS kind, card_id, merchant_id, ts, decision, rule, is_fraud, scenario
FROM refund_decisions;
"""
    return text


def pct(a, b):
    return f"{a / b:.1%}" if b else "-"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fsql", default=os.environ.get("FSQL", "fsql"))
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a payments-generator option of the pipeline's source")
    ap.add_argument("--out", default="/tmp/fsql-decision-eval")
    ap.add_argument("--misses", metavar="PATH",
                    help="write the missed fraud and the flagged genuine events, with features, here (JSONL)")
    args = ap.parse_args()
    overrides = dict(kv.split("=", 1) for kv in args.set)
    os.makedirs(args.out, exist_ok=True)
    out_dir = os.path.abspath(args.out)
    variant.run(args.fsql, pipeline(overrides, out_dir, with_features=bool(args.misses)), "measure_decisions")

    events = [json.loads(line) for name in ("all_decisions.jsonl", "all_refund_decisions.jsonl")
              for line in open(os.path.join(out_dir, name))]
    ids = collections.Counter((e["kind"], e["payment_id"]) for e in events)
    dup = [k for k, n in ids.items() if n > 1]
    assert not dup, f"events decided twice: {dup[:5]}"
    for e in events:
        e["flagged"] = e["decision"] != "ALLOW"
        e["t"] = ts(e["ts"])

    # Instances: per scenario and key (merchant_burst: merchant, others: card), runs of events no
    # more than 30 minutes apart; the first authorisation of each.
    by_key = collections.defaultdict(list)
    for e in sorted(events, key=lambda e: (e["t"], e["payment_id"])):
        if e["is_fraud"]:
            key = e["merchant_id"] if e["scenario"] == "merchant_burst" else e["card_id"]
            by_key[(e["scenario"], key)].append(e)
    instances = collections.defaultdict(list)  # scenario -> [[events]]
    for (scenario, _), evs in by_key.items():
        runs = []
        for e in evs:
            if runs and e["t"] - runs[-1][-1]["t"] <= 1800:
                runs[-1].append(e)
            else:
                runs.append([e])
        instances[scenario].extend(runs)
    first = set()
    for runs in instances.values():
        for run in runs:
            for position, e in enumerate(run, 1):
                e["position"] = position
            auths = [e for e in run if e["kind"] == "AUTH"]
            if auths:
                first.add(auths[0]["payment_id"])

    def payment_level(evs):
        fraud = [e for e in evs if e["is_fraud"]]
        genuine = [e for e in evs if not e["is_fraud"]]
        tp = sum(e["flagged"] for e in fraud)
        fp = sum(e["flagged"] for e in genuine)
        return len(fraud), tp, len(genuine), fp

    print("\n**Payment level** (flagged = BLOCK or REVIEW)\n")
    print("| decision points | fraud | flagged fraud | recall | genuine | flagged genuine | "
          "false-positive rate | precision |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for label, evs in (("authorisations", [e for e in events if e["kind"] == "AUTH"]),
                       ("refund requests", [e for e in events if e["kind"] == "REFUND"]),
                       ("all (authorisations + refunds)", events)):
        nf, tp, ng, fp = payment_level(evs)
        print(f"| {label} | {nf:,} | {tp:,} | {pct(tp, nf)} | {ng:,} | {fp:,} | "
              f"{fp / ng:.2%} | {pct(tp, tp + fp)} |")
    after = [e for e in events if e["is_fraud"] and e["payment_id"] not in first]
    nf_after = len(after)
    tp_after = sum(e["flagged"] for e in after)

    print("\n**Per scenario** (all decision points)\n")
    print("| scenario | instances | caught | instance recall | events (auth + refund) | flagged | "
          "payment recall | after the first event: flagged / events | recall |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    tot = collections.Counter()
    for scenario in sorted(instances):
        runs = instances[scenario]
        caught = sum(any(e["flagged"] for e in run) for run in runs)
        evs = [e for run in runs for e in run]
        n_auth = sum(e["kind"] == "AUTH" for e in evs)
        flagged = sum(e["flagged"] for e in evs)
        rest = [e for e in evs if e["payment_id"] not in first]
        rest_flagged = sum(e["flagged"] for e in rest)
        tot.update(instances=len(runs), caught=caught, events=len(evs), flagged=flagged,
                   rest=len(rest), rest_flagged=rest_flagged)
        print(f"| {scenario} | {len(runs)} | {caught} | {pct(caught, len(runs))} | "
              f"{len(evs)} ({n_auth} + {len(evs) - n_auth}) | {flagged} | {pct(flagged, len(evs))} | "
              f"{rest_flagged} / {len(rest)} | {pct(rest_flagged, len(rest))} |")
    print(f"| **all** | {tot['instances']} | {tot['caught']} | {pct(tot['caught'], tot['instances'])} "
          f"| {tot['events']} | {tot['flagged']} | {pct(tot['flagged'], tot['events'])} | "
          f"{tot['rest_flagged']} / {tot['rest']} | {pct(tot['rest_flagged'], tot['rest'])} |")
    assert tot["rest"] == nf_after and tot["rest_flagged"] == tp_after

    rules = collections.Counter((e["rule"], e["is_fraud"]) for e in events if e["flagged"])
    print("\n**Rules** (the rule that decided: fraud / genuine events)\n")
    print("| rule | fraud | genuine |")
    print("|---|---:|---:|")
    for rule in sorted({r for r, _ in rules}, key=lambda r: -(rules[(r, True)] + rules[(r, False)])):
        print(f"| {rule} | {rules[(rule, True)]} | {rules[(rule, False)]} |")

    if args.misses:
        features = {}
        with open(os.path.join(out_dir, "all_features.jsonl")) as f:
            for line in f:
                row = json.loads(line)
                features[row.pop("payment_id")] = row
        with open(args.misses, "w") as out:
            for e in events:
                if e["is_fraud"] != e["flagged"]:
                    row = {k: e.get(k) for k in ("payment_id", "kind", "card_id", "merchant_id", "ts", "is_fraud",
                                                 "scenario", "position", "decision", "rule", "score")}
                    if e["kind"] == "AUTH":
                        row.update(features[e["payment_id"]])
                    out.write(json.dumps(row) + "\n")
        print(f"\n(missed fraud and flagged genuine events: {args.misses})")


if __name__ == "__main__":
    main()
