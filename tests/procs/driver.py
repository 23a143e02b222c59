"""Fixture: a tiny runner that calls run_training on tree.py and prints the LaunchResult as JSON.

usage: driver.py LOG PIDFILE BUDGET GRACE MARKER_VALUE TERM   (marker key: AR_TEST_TOKEN)
"""

import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "template" / "<<slug>>"))

from arunner.procs.launch import run_training  # noqa: E402

log, pidfile, budget, grace, token, term = sys.argv[1:7]
cmd = [sys.executable, str(HERE / "tree.py"), pidfile, "--children", "2", "--grandchild", "--term", term]
res = run_training(
    cmd,
    cwd=HERE,
    env=dict(os.environ),
    log_path=Path(log),
    budget_s=float(budget),
    grace_s=float(grace),
    marker=("AR_TEST_TOKEN", token),
    live=False,
)
print(json.dumps(vars(res)), flush=True)
