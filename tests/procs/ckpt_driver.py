"""Test driver: one iteration's checkpoint bookkeeping in its own process, so a test can SIGKILL it.

  ckpt_driver.py step  '<json>'   capture -> decision.json -> promote -> prune, as the orchestrator does
  ckpt_driver.py churn '<json>'   N back-to-back capture+promote iterations (for the concurrent reader)

The JSON carries root, expr, glob, cli_args, fallback (no RENAME_EXCHANGE) and step/churn specifics.
AR_FAULT_AT in the environment picks the step at which the process SIGKILLs itself.
"""

import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "template" / "<<slug>>"))

from arunner.core.config import Config  # noqa: E402
from arunner.core.fsutil import atomic_write_json, fault_point  # noqa: E402
from arunner.state import best, checkpoints  # noqa: E402


def make_cfg(root, expr, glob="", cli_args=None):
    return Config(
        expr_dir=Path(expr),
        project_root=Path(root),
        slug=Path(expr).name,
        checkpoint_glob=glob,
        cli_args=cli_args or {},
    )


def record(run_id, value):
    return {
        "run_id": run_id,
        "primary": {"name": "loss", "direction": "min", "value": value},
        "snapshot": f"runs/{run_id}/train.py",
        "lineage": {"parent_expr": "", "parent_ckpt": ""},
    }


def step(a):
    cfg = make_cfg(a["root"], a["expr"], a.get("glob", ""), a.get("cli_args"))
    expr = Path(a["expr"])
    run_dir = expr / "runs" / a["run_id"]
    checkpoints.capture(cfg, run_dir, a["started_at"])
    decision = dict(record(a["run_id"], 0.5), verdict="advance")
    atomic_write_json(run_dir / "decision.json", decision)
    fault_point("driver.decided")
    best.promote(expr, run_dir, record(a["run_id"], 0.5))
    checkpoints.prune(expr, a.get("keep", 1), a["run_id"])


def churn(a):
    cfg = make_cfg(a["root"], a["expr"], "out/*.pt")
    expr, root = Path(a["expr"]), Path(a["root"])
    (root / "out").mkdir(exist_ok=True)
    for i in range(a["first"], a["first"] + a["n"]):
        run_id = f"r{i:04d}"
        run_dir = expr / "runs" / run_id
        run_dir.mkdir(parents=True)
        started = time.time()
        (root / "out" / "model.pt").write_bytes(run_id.encode() * 100)
        checkpoints.capture(cfg, run_dir, started)
        best.promote(expr, run_dir, record(run_id, 1.0 / i))
        checkpoints.prune(expr, 1, run_id)


if __name__ == "__main__":
    args = json.loads(sys.argv[2])
    if args.get("fallback"):
        best.exchange_supported = False
    {"step": step, "churn": churn}[sys.argv[1]](args)
