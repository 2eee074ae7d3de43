#!/usr/bin/env python3
"""Trains the payments-risk LightGBM fraud model (fraud_gbm.txt) on the pipeline's own features.

    FSQL=/path/to/fsql python3 train.py

1. Creates (once) a venv with pinned lightgbm / numpy / pandas / scikit-learn and re-runs itself in it
   (venv path: $FSQL_TRAIN_VENV, default ~/.cache/fsql-train-venv).
2. The features are the ones `../payments_risk.fsql` computes, not a copy of them: for each generator
   seed (training 101-110, held-out 201-202) it takes the pipeline's text up to its model (the line
   `-- Trained by model/train.py`), with the source's `'seed'` replaced, adds a sink that writes
   `payment_id`, the labels and every column of the model's `INPUT` list (as DOUBLE) from the view
   `payment_features`, and runs it with $FSQL (default `fsql` on PATH) into data/<seed>.csv
   (gitignored; the generated .fsql is kept beside it). The model's features are therefore exactly its
   `CREATE MODEL ... INPUT` list, by name and in order: add a feature to a view and to that list, then
   rerun this script.
3. Trains a deterministic binary LightGBM classifier, evaluates it on the held-out seeds, and writes
   fraud_gbm.txt and metrics.json next to this file. Reruns give byte-identical files (metrics.json holds
   the model's sha256).
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
PIPELINE = HERE.parent / "payments_risk.fsql"
LOGIC = HERE.parent / "risk.fsql"
DATA = HERE / "data"
MODEL_FILE = HERE / "fraud_gbm.txt"
METRICS_FILE = HERE / "metrics.json"
MODEL_MARKER = "-- Trained by model/train.py"

REQUIREMENTS = ["lightgbm==4.6.0", "numpy==2.4.6", "pandas==3.1.1", "scikit-learn==1.9.1"]
VENV = Path(os.environ.get("FSQL_TRAIN_VENV", Path.home() / ".cache" / "fsql-train-venv"))

LABEL = "is_fraud"
TRAIN_SEEDS = list(range(101, 111))
HELDOUT_SEEDS = [201, 202]
THRESHOLDS = [0.05, 0.1, 0.3, 0.5, 0.9]

NUM_TREES = 200
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


def pipeline_text() -> str:
    """The local-mode pipeline with its logic (`INCLUDE 'risk.fsql';`) written in place, so the text
    up to the model is the generator source followed by the feature views."""
    entry = PIPELINE.read_text()
    include = "INCLUDE 'risk.fsql';"
    if include not in entry:
        sys.exit(f"{PIPELINE.name} does not {include}")
    return entry.replace(include, LOGIC.read_text(), 1)


def model_inputs(pipeline: str) -> list[str]:
    """The column names of `CREATE MODEL fraud_gbm INPUT (...)` in the pipeline, in order."""
    m = re.search(r"CREATE MODEL fraud_gbm\s+INPUT\s*\((.*?)\)\s*OUTPUT", pipeline, re.S)
    if m is None:
        sys.exit("risk.fsql has no CREATE MODEL fraud_gbm INPUT (...)")
    body = re.sub(r"--[^\n]*", "", m.group(1))
    return [col.split()[0] for col in body.split(",") if col.strip()]


def feature_pipeline(pipeline: str, seed: int, features: list[str], out: Path) -> str:
    """The pipeline's features for one generator seed, written to `out` as CSV."""
    head = pipeline[: pipeline.index(MODEL_MARKER)]
    head, n = re.subn(r"'seed'\s*=\s*'\d+'", f"'seed' = '{seed}'", head, count=1)
    assert n == 1, "the pipeline's source has no 'seed' option"
    cols = ",\n  ".join(f"{f} DOUBLE" for f in features)
    casts = ",\n       ".join(f"CAST({f} AS DOUBLE) AS {f}" for f in features)
    return head + f"""
-- Added by model/train.py: the model's features for seed {seed}.
CREATE TABLE training_rows (
  payment_id BIGINT, is_fraud INT, scenario STRING,
  {cols}
) WITH ('connector' = 'filesystem', 'path' = '{out}', 'format' = 'csv');

INSERT INTO training_rows
SELECT payment_id, CAST(is_fraud AS INT) AS is_fraud, scenario,
       {casts}
FROM payment_features;
"""


def load(path: Path, features: list[str], seed: int):
    import pandas as pd

    columns = ["payment_id", "is_fraud", "scenario", *features]
    dtypes = {c: "float64" for c in features}
    dtypes.update({"payment_id": "int64", "is_fraud": "int64", "scenario": "string"})
    df = pd.read_csv(path, header=None, names=columns, dtype=dtypes, keep_default_na=False,
                     na_values={c: [""] for c in features})
    df["scenario"] = df["scenario"].fillna("")  # NULL: genuine
    df.insert(0, "run_seed", seed)
    return df.sort_values("payment_id", kind="stable").reset_index(drop=True)


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
        "false_positive_rate": round(fp / int(np.sum(y == 0)), 6),
    }


def main() -> None:
    ensure_venv()

    import lightgbm as lgb
    import numpy as np
    import pandas as pd
    from sklearn.metrics import average_precision_score, roc_auc_score

    fsql = fsql_binary()
    pipeline = pipeline_text()
    features = model_inputs(pipeline)
    DATA.mkdir(exist_ok=True)
    frames = {}
    for seed in TRAIN_SEEDS + HELDOUT_SEEDS:
        out = DATA / f"{seed}.csv"
        text = feature_pipeline(pipeline, seed, features, out)
        (DATA / f"features_{seed}.fsql").write_text(text)
        # Run from the pipeline's directory, so its relative paths (merchant_risk.csv) resolve.
        probe = PIPELINE.parent / f".train_features_{seed}.fsql"
        probe.write_text(text)
        try:
            print(f"$ {fsql} run {probe.name}  (seed {seed})", flush=True)
            subprocess.run([fsql, "run", str(probe), "--progress", "0"], check=True)
        finally:
            probe.unlink()
        frames[seed] = load(out, features, seed)

    train = pd.concat([frames[s] for s in TRAIN_SEEDS], ignore_index=True)
    heldout = pd.concat([frames[s] for s in HELDOUT_SEEDS], ignore_index=True)
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
            s: round(float(np.mean(flagged[((heldout.scenario == s) & (heldout[LABEL] == 1)).to_numpy(bool)])), 6)
            for s in sorted(set(heldout.scenario[heldout[LABEL] == 1]))
        }

    gain = booster.feature_importance(importance_type="gain")
    metrics = {
        "lightgbm_version": lgb.__version__,
        "params": PARAMS,
        "num_trees": booster.num_trees(),
        "features": features,
        "rows": "the authorisations of each seed's stream, with the pipeline's source options",
        "train": {"generator_seeds": TRAIN_SEEDS, "rows": int(len(train)), "positives": int(y_train.sum()),
                  "auc": round(float(roc_auc_score(y_train, p_train)), 6)},
        "heldout": {
            "generator_seeds": HELDOUT_SEEDS,
            "rows": int(len(heldout)),
            "positives": int(y.sum()),
            "auc": round(float(roc_auc_score(y, p)), 6),
            "average_precision": round(float(average_precision_score(y, p)), 6),
            "at_threshold": at,
        },
        "feature_importance_gain": {f: round(float(g), 3) for f, g in
                                    sorted(zip(features, gain), key=lambda fg: (-fg[1], fg[0]))},
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
