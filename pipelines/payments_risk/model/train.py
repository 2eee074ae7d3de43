#!/usr/bin/env python3
"""Trains the payments-risk LightGBM fraud model (fraud_gbm.txt) on fsql's own features.

    FSQL=/path/to/fsql python3 train.py

1. Creates (once) a venv with pinned lightgbm / numpy / pandas / scikit-learn and re-runs itself in it
   (venv path: $FSQL_TRAIN_VENV, default ~/.cache/fsql-train-venv).
2. Runs `fsql check` and `fsql run` on features.fsql ($FSQL, default `fsql` on PATH), which writes
   data/train.csv (generator seeds 101-105) and data/heldout.csv (seeds 201-202).
3. Trains a deterministic binary LightGBM classifier whose feature names are the feature columns of
   features.fsql's sink tables, evaluates it on the held-out seeds, and writes fraud_gbm.txt and
   metrics.json next to this file. Reruns give byte-identical files (metrics.json holds the model's sha256).
"""

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
FEATURES_FSQL = HERE / "features.fsql"
MODEL_FILE = HERE / "fraud_gbm.txt"
METRICS_FILE = HERE / "metrics.json"

REQUIREMENTS = ["lightgbm==4.6.0", "numpy==2.4.6", "pandas==3.1.1", "scikit-learn==1.9.1"]
VENV = Path(os.environ.get("FSQL_TRAIN_VENV", Path.home() / ".cache" / "fsql-train-venv"))

# Columns of the sink tables that are not features.
META_COLUMNS = ["run_seed", "payment_id", "is_fraud", "scenario"]
LABEL = "is_fraud"
TRAIN_SEEDS = [101, 102, 103, 104, 105]
HELDOUT_SEEDS = [201, 202]
THRESHOLDS = [0.5, 0.9]

NUM_TREES = 150
PARAMS = {
    "objective": "binary",
    "metric": ["auc", "binary_logloss"],
    "num_leaves": 31,
    "learning_rate": 0.05,
    "min_data_in_leaf": 50,
    "feature_fraction": 1.0,
    "bagging_fraction": 1.0,
    "seed": 7,
    "deterministic": True,
    "force_row_wise": True,
    "num_threads": 1,
    "verbose": -1,
}


def ensure_venv() -> None:
    """Re-executes this script inside the training venv, creating it first if needed."""
    python = VENV / "bin" / "python"
    if Path(sys.prefix).resolve() == VENV.resolve():
        return
    stamp = VENV / ".fsql-train-requirements"
    wanted = "\n".join(REQUIREMENTS)
    if not python.exists() or not stamp.exists() or stamp.read_text() != wanted:
        print(f"setting up venv {VENV} ({', '.join(REQUIREMENTS)})", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *REQUIREMENTS], check=True)
        stamp.write_text(wanted)
    os.execv(str(python), [str(python), str(Path(__file__).resolve()), *sys.argv[1:]])


def fsql_binary() -> str:
    fsql = os.environ.get("FSQL", "fsql")
    found = shutil.which(fsql)
    if found is None:
        sys.exit(f"fsql binary not found: {fsql!r} (set FSQL=/path/to/fsql)")
    return found


def sink_columns(source: str, table: str) -> list[str]:
    """The column names of `CREATE TABLE table (...)` in features.fsql, in order."""
    m = re.search(rf"CREATE TABLE {table} \((.*?)\)\s*WITH", source, re.S)
    if m is None:
        sys.exit(f"features.fsql has no CREATE TABLE {table}")
    return [col.split()[0] for col in m.group(1).split(",") if col.strip()]


def load(path: Path, columns: list[str]):
    import pandas as pd

    dtypes = {c: "float64" for c in columns}
    dtypes.update({"run_seed": "int64", "payment_id": "int64", "is_fraud": "int64", "scenario": "string"})
    df = pd.read_csv(path, header=None, names=columns, dtype=dtypes, keep_default_na=False,
                     na_values={c: [""] for c in columns})
    df["scenario"] = df["scenario"].fillna("")  # NULL: not fraud
    return df


def precision_recall(y, flagged):
    import numpy as np

    tp = int(np.sum(flagged & (y == 1)))
    fp = int(np.sum(flagged & (y == 0)))
    fn = int(np.sum(~flagged & (y == 1)))
    return {
        "flagged": tp + fp,
        "true_positives": tp,
        "false_positives": fp,
        "precision": round(tp / (tp + fp), 6) if tp + fp else None,
        "recall": round(tp / (tp + fn), 6) if tp + fn else None,
    }


def main() -> None:
    ensure_venv()

    import lightgbm as lgb
    import numpy as np
    from sklearn.metrics import average_precision_score, roc_auc_score

    fsql = fsql_binary()
    for cmd in ([fsql, "check", str(FEATURES_FSQL)], [fsql, "run", str(FEATURES_FSQL)]):
        print("$", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)

    source = FEATURES_FSQL.read_text()
    columns = sink_columns(source, "train_features")
    if sink_columns(source, "heldout_features") != columns:
        sys.exit("train_features and heldout_features must have the same columns")
    if columns[: len(META_COLUMNS)] != META_COLUMNS:
        sys.exit(f"the sink tables must start with {META_COLUMNS}, not {columns[:len(META_COLUMNS)]}")
    features = columns[len(META_COLUMNS):]

    train = load(HERE / "data" / "train.csv", columns)
    heldout = load(HERE / "data" / "heldout.csv", columns)
    assert sorted(train.run_seed.unique().tolist()) == TRAIN_SEEDS, train.run_seed.unique()
    assert sorted(heldout.run_seed.unique().tolist()) == HELDOUT_SEEDS, heldout.run_seed.unique()
    print(f"train: {len(train)} rows, {int(train[LABEL].sum())} fraud; "
          f"held-out: {len(heldout)} rows, {int(heldout[LABEL].sum())} fraud; {len(features)} features",
          flush=True)

    dtrain = lgb.Dataset(train[features].to_numpy(), label=train[LABEL].to_numpy(),
                         feature_name=features, free_raw_data=False)
    booster = lgb.train(PARAMS, dtrain, num_boost_round=NUM_TREES)
    booster.save_model(str(MODEL_FILE))

    # Score the held-out seeds with the saved model, as a consumer of fraud_gbm.txt would.
    model = lgb.Booster(model_file=str(MODEL_FILE))
    assert model.feature_name() == features
    y = heldout[LABEL].to_numpy()
    p = model.predict(heldout[features].to_numpy())
    y_train = train[LABEL].to_numpy()
    p_train = model.predict(train[features].to_numpy())

    at = {}
    for t in THRESHOLDS:
        flagged = p >= t
        at[str(t)] = precision_recall(y, flagged)
        at[str(t)]["recall_by_scenario"] = {
            s: round(float(np.mean(flagged[(heldout.scenario == s).to_numpy(dtype=bool)])), 6)
            for s in sorted(set(heldout.scenario) - {""})
        }

    # The reference pipeline's ruleset (any decision other than ALLOW), on the same held-out rows.
    h = heldout
    rules = (((h.tiny_amount == 1) & (h.card_txn_10m >= 3)) | ((h.declined == 1) & (h.large_amount == 1))
             | (h.card_txn_10m >= 8) | ((h.night_time == 1) & (h.amount > 5000))
             | ((h.exotic_currency == 1) & (h.large_amount == 1)) | (h.tiny_amount == 1)).to_numpy()

    gain = booster.feature_importance(importance_type="gain")
    metrics = {
        "lightgbm_version": lgb.__version__,
        "params": PARAMS,
        "num_trees": booster.num_trees(),
        "features": features,
        "train": {"generator_seeds": TRAIN_SEEDS, "rows": int(len(train)), "positives": int(y_train.sum()),
                  "auc": round(float(roc_auc_score(y_train, p_train)), 6)},
        "heldout": {
            "generator_seeds": HELDOUT_SEEDS,
            "rows": int(len(heldout)),
            "positives": int(y.sum()),
            "auc": round(float(roc_auc_score(y, p)), 6),
            "average_precision": round(float(average_precision_score(y, p)), 6),
            "at_threshold": at,
            "reference_ruleset_not_allow": precision_recall(y, rules),
        },
        "feature_importance_gain": {f: round(float(g), 3) for f, g in
                                    sorted(zip(features, gain), key=lambda fg: -fg[1])},
        "model_file": MODEL_FILE.name,
        "model_bytes": MODEL_FILE.stat().st_size,
        "model_sha256": hashlib.sha256(MODEL_FILE.read_bytes()).hexdigest(),
    }
    METRICS_FILE.write_text(json.dumps(metrics, indent=2) + "\n")
    print(json.dumps({k: metrics[k] for k in ("num_trees", "train", "heldout", "model_bytes", "model_sha256")},
                     indent=2))
    if metrics["model_bytes"] > 2 * 1024 * 1024:
        sys.exit(f"{MODEL_FILE.name} is {metrics['model_bytes']} bytes, over the 2 MB budget")


if __name__ == "__main__":
    main()
