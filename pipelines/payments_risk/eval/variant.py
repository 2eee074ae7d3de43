"""The reference pipeline as the eval scripts run it: its printed SELECT dropped, its `out/` files
redirected to an output directory, generator options overridden, and run once with an fsql binary."""

import os
import re
import subprocess
import sys
from datetime import datetime

PIPELINE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def ts(s):
    return datetime.strptime(s, "%Y-%m-%d %H:%M:%S.%f").timestamp()


def pipeline(overrides, out_dir):
    """The pipeline's text with `overrides` ({option: value}) applied to its payments generator."""
    text = open(os.path.join(PIPELINE_DIR, "payments_risk.fsql")).read()
    text, n = re.subn(r"\nSELECT payment_id, card_id, .*?WHERE decision <> 'ALLOW';\n", "\n",
                      text, count=1, flags=re.S)
    assert n == 1, "the pipeline's printed SELECT was not found"
    text = re.sub(r"'path' = 'out/([^']*)'", lambda m: f"'path' = '{out_dir}/{m.group(1)}'", text)
    for key, value in overrides.items():
        pattern = re.compile(r"('%s'\s*=\s*)'[^']*'" % re.escape(key))
        if pattern.search(text):
            text = pattern.sub(lambda m: m.group(1) + "'%s'" % value, text, count=1)
        else:
            text = text.replace("'connector' = 'payments-generator',",
                                "'connector' = 'payments-generator', '%s' = '%s'," % (key, value), 1)
    return text


def run(fsql, text, name):
    """Runs `text` with `fsql`, written next to the pipeline so its relative paths (the model, the
    reference table) resolve; exits with fsql's errors if it fails."""
    probe = os.path.join(PIPELINE_DIR, f".{name}.fsql")
    with open(probe, "w") as f:
        f.write(text)
    try:
        result = subprocess.run([fsql, "run", probe, "--progress", "0"], capture_output=True,
                                text=True)
    finally:
        os.remove(probe)
    if result.returncode != 0:
        sys.exit(result.stderr)
    print(result.stderr.strip().splitlines()[-1], file=sys.stderr)
