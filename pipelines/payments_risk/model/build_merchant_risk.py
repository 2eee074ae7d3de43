#!/usr/bin/env python3
"""Builds ../merchant_risk.csv, the merchant reference table the pipeline joins every payment with.

    FSQL=/path/to/fsql python3 build_merchant_risk.py

A merchant's profile is what a payments company knows about it from *history*: here, three streams of
the pipeline's generator with seeds that neither training (101-105), the held-out check (201-202) nor
the evaluation (42, 301) use: 501, 502, 503, each with the pipeline's own options (200,000 rows,
1,000 events per second of event time, every scenario). Per merchant, over their authorisations:

- `txn_per_min`: payments per minute of event time (over the span of the genuine ones) (the generator's popular merchants take many
  more payments than its long tail: this is what a burst is measured against);
- `avg_amount`: the mean amount;
- `decline_rate`: the share of declined payments;
- `fraud_rate`: the share of payments labelled fraud (the chargeback history a real profile keeps;
  in this generator scenarios pick merchants uniformly, so it carries little signal).

Every merchant id the generator can produce (`merchants` = 5000: m-0000 ... m-4999) gets a row,
one never seen in the history the population's values (rates 0), because the pipeline's join with
the table is an inner join: a payment at a merchant missing from it would not be decided.
Deterministic: reruns write the same bytes.
"""
import collections
import os
import shutil
import subprocess
import sys
import tempfile
from datetime import datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE.parent / "merchant_risk.csv"
SEEDS = [501, 502, 503]
MERCHANTS = 5000

SOURCE = """
CREATE TABLE payments_{seed} (
  merchant_id STRING, amount DOUBLE, status STRING, kind STRING, ts TIMESTAMP(3), is_fraud BOOLEAN,
  WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
) WITH ('connector' = 'payments-generator', 'seed' = '{seed}', 'number-of-rows' = '200000',
        'fraud-rate' = '0.002', 'scenarios' = 'all', 'auth-capture' = 'true', 'drain-at-end' = 'true');
CREATE TABLE history_{seed} (merchant_id STRING, amount DOUBLE, status STRING, ts TIMESTAMP(3),
  is_fraud BOOLEAN) WITH ('connector' = 'filesystem', 'path' = '{out}/history_{seed}.csv', 'format' = 'csv');
INSERT INTO history_{seed} SELECT merchant_id, amount, status, ts, is_fraud FROM payments_{seed}
WHERE kind = 'AUTH';
"""


def main():
    fsql = shutil.which(os.environ.get("FSQL", "fsql"))
    if fsql is None:
        sys.exit("fsql binary not found (set FSQL=/path/to/fsql)")
    stats = collections.defaultdict(lambda: [0, 0.0, 0, 0])  # n, amount, declined, fraud
    minutes = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "history.fsql"
        src.write_text("".join(SOURCE.format(seed=s, out=tmp) for s in SEEDS))
        subprocess.run([fsql, "run", str(src), "--progress", "0"], check=True)
        for seed in SEEDS:
            times = []
            for line in open(Path(tmp) / f"history_{seed}.csv"):
                merchant, amount, status, ts, fraud = line.rstrip("\n").split(",")
                s = stats[merchant]
                s[0] += 1
                s[1] += float(amount)
                s[2] += status == "DECLINED"
                s[3] += fraud == "true"
                if fraud == "true":
                    continue
                times.append(datetime.strptime(ts, "%Y-%m-%d %H:%M:%S.%f").timestamp())
            # The span of genuine payments, from the 0.1th to the 99.9th percentile of their
            # times: the drained tail (scenario steps, captures and refunds scheduled up to an
            # hour later, and a last payment or two) starts no new payment.
            times.sort()
            minutes += (times[len(times) * 999 // 1000] - times[len(times) // 1000]) / 60.0
    total = [sum(s[i] for s in stats.values()) for i in range(4)]
    width = len(str(MERCHANTS - 1))
    lines = ["# merchant_id,txn_per_min,avg_amount,decline_rate,fraud_rate "
             f"(built by model/build_merchant_risk.py from generator seeds {SEEDS})"]
    for m in range(MERCHANTS):
        merchant = f"m-{m:0{width}d}"
        n, amount, declined, fraud = stats.get(merchant, (0, 0.0, 0, 0))
        if n:
            row = (n / minutes, amount / n, declined / n, fraud / n)
        else:
            row = (0.0, total[1] / total[0], total[2] / total[0], total[3] / total[0])
        lines.append(merchant + "," + ",".join(f"{v:.6g}" for v in row))
    unknown = set(stats) - {f"m-{m:0{width}d}" for m in range(MERCHANTS)}
    if unknown:
        sys.exit(f"merchant ids outside m-0..m-{MERCHANTS - 1}: {sorted(unknown)[:5]}")
    OUT.write_text("\n".join(lines) + "\n")
    print(f"{OUT}: {MERCHANTS} merchants, {total[0]} history payments over {minutes:.1f} min")


if __name__ == "__main__":
    main()
