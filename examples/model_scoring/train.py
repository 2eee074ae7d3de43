#!/usr/bin/env python3
"""Trains fraud_small.txt, the model of scoring.fsql, on the features scoring.fsql computes.

    FSQL=/path/to/fsql python3 examples/model_scoring/train.py

For generator seeds 101 and 102 (training) and 201 (held-out) it runs scoring.fsql's text above the
line `-- The model: ...` with the source's seed and row count replaced and a CSV sink of the model's
features and the `is_fraud` label added, trains a deterministic LightGBM binary classifier on the
training seeds, writes fraud_small.txt, and prints precision and recall at 0.5 on the held-out seed.
It uses the venv and pinned packages of pipelines/payments_risk/model/train.py (created on first use).
"""

import os
import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PIPELINE = HERE / "scoring.fsql"
MODEL_FILE = HERE / "fraud_small.txt"
MODEL_MARKER = re.compile(r"^-- The model:", re.M)  # a line that starts so
FEATURES = ["amount", "card_cnt_1m", "card_cnt_10m", "card_amt_10m", "card_secs_since_prev"]
TRAIN_SEEDS, HELDOUT_SEED, ROWS = [101, 102], 201, 200_000
PARAMS = {
    "objective": "binary", "num_leaves": 8, "learning_rate": 0.2, "min_data_in_leaf": 20,
    "seed": 7, "deterministic": True, "force_row_wise": True, "num_threads": 1, "verbose": -1,
}
NUM_TREES = 30

# The same venv and packages as the reference pipeline's trainer.
REQUIREMENTS = ["lightgbm==4.6.0", "numpy==2.4.6", "pandas==3.1.1", "scikit-learn==1.9.1"]
VENV = Path(os.environ.get("FSQL_TRAIN_VENV", Path.home() / ".cache" / "fsql-train-venv"))


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


def features(seed: int, work: Path):
    """The model's features and labels for one generator seed, computed by scoring.fsql's SQL."""
    import numpy as np

    head = MODEL_MARKER.split(PIPELINE.read_text())[0]
    head, n = re.subn(r"'seed' = '\d+'", f"'seed' = '{seed}'", head)
    head, m = re.subn(r"'number-of-rows' = '\d+'", f"'number-of-rows' = '{ROWS}'", head)
    assert n == m == 1, "scoring.fsql's source has no 'seed' or 'number-of-rows'"
    out = work / f"features_{seed}.csv"
    casts = ", ".join(f"CAST({f} AS DOUBLE)" for f in FEATURES)
    pipeline = work / f"features_{seed}.fsql"
    pipeline.write_text(head + f"""
CREATE TABLE training_rows ({", ".join(f"{f} DOUBLE" for f in FEATURES)}, is_fraud INT)
  WITH ('connector' = 'filesystem', 'path' = '{out}', 'format' = 'csv');
INSERT INTO training_rows SELECT {casts}, CAST(is_fraud AS INT) FROM card_velocity;
""")
    subprocess.run([os.environ.get("FSQL", "fsql"), "run", str(pipeline), "--progress", "0"], check=True)
    rows = np.genfromtxt(out, delimiter=",", dtype=float)  # an empty field (NULL) is NaN: missing
    return rows[:, :-1], rows[:, -1]


def main() -> None:
    ensure_venv()
    import tempfile

    import lightgbm as lgb
    import numpy as np

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        train = [features(s, work) for s in TRAIN_SEEDS]
        x, y = np.vstack([t[0] for t in train]), np.concatenate([t[1] for t in train])
        x_held, y_held = features(HELDOUT_SEED, work)
    booster = lgb.train(PARAMS, lgb.Dataset(x, label=y, feature_name=FEATURES), num_boost_round=NUM_TREES)
    booster.save_model(str(MODEL_FILE))
    flagged = lgb.Booster(model_file=str(MODEL_FILE)).predict(x_held) >= 0.5
    tp, fp = int(np.sum(flagged & (y_held == 1))), int(np.sum(flagged & (y_held == 0)))
    print(f"trained on {len(y)} payments ({int(y.sum())} fraud); held-out seed {HELDOUT_SEED}: "
          f"{len(y_held)} payments, {int(y_held.sum())} fraud, at 0.5 precision {tp / max(tp + fp, 1):.3f}, "
          f"recall {tp / max(int(y_held.sum()), 1):.3f}; wrote {MODEL_FILE.name}")


if __name__ == "__main__":
    main()
