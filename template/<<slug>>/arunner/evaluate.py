"""The independent evaluator: prepare.py's `evaluate(checkpoint_path)` in a fresh interpreter.

The training process runs the agent's train.py, whose sandbox may patch any
host code, so the value it prints can be anything. The evaluator is a new
Python process started from the project root that loads prepare.py by path and
calls its `evaluate` on the run's captured checkpoint. The experiment folder is
not on its sys.path and train.py is never imported (checked after the call),
so nothing the candidate patched in memory can reach it. It runs under its own
time limit through the same launcher and watchdog as training, with its output
in runs/rNNNN/eval.log; the metrics come back in a JSON file, not on stdout, so
host prints cannot forge them.
"""

from __future__ import annotations

import ast
import json
import math
import os
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from . import launch

EVAL_TIMEOUT_S = 600.0  # the evaluator's own limit, never charged to the training budget
EVAL_GRACE_S = 5.0  # SIGTERM to SIGKILL when the evaluator runs past its limit
REL_TOLERANCE = 1e-3  # reported vs evaluated primary: relative difference allowed
MARKER_KEY = "AR_EVAL_TOKEN"  # environment marker the watchdog sweeps the evaluator's tree by
LOG_NAME = "eval.log"
OUT_NAME = "eval.json"

# Runs in the fresh interpreter (python -c): argv = expr_dir, checkpoint, output file.
_BOOTSTRAP = r"""
import importlib.util, json, math, os, sys, time
expr_dir, ckpt, out = sys.argv[1:4]
expr_dir = os.path.abspath(expr_dir)
root = os.path.dirname(os.path.dirname(expr_dir))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != expr_dir]
sys.path.insert(0, root)
spec = importlib.util.spec_from_file_location("_ar_prepare", os.path.join(expr_dir, "prepare.py"))
prepare = importlib.util.module_from_spec(spec)
sys.modules["_ar_prepare"] = prepare
spec.loader.exec_module(prepare)
if not callable(getattr(prepare, "evaluate", None)):
    raise SystemExit("prepare.py defines no evaluate(checkpoint_path)")
t0 = time.monotonic()
metrics = prepare.evaluate(ckpt)
wall = time.monotonic() - t0
train_py = os.path.join(expr_dir, "train.py")
for mod in list(sys.modules.values()):
    if os.path.abspath(getattr(mod, "__file__", None) or os.devnull) == train_py:
        raise SystemExit("the evaluator imported the experiment's train.py; prepare.py must not import it")
if not isinstance(metrics, dict):
    raise SystemExit(f"evaluate() returned {type(metrics).__name__}, expected dict[str, float]")
clean = {}
for name, value in metrics.items():
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise SystemExit(f"evaluate() returned {name}={value!r}, not a number")
    clean[str(name)] = value if math.isfinite(value) else str(value)
tmp = out + ".tmp"
with open(tmp, "w") as fh:
    json.dump({"metrics": clean, "evaluate_seconds": wall}, fh)
os.replace(tmp, out)
"""


@dataclass
class Evaluation:
    ok: bool
    metrics: dict = field(default_factory=dict)  # shown to the agent
    holdout: dict = field(default_factory=dict)  # names in HOLDOUT_METRICS: stored, never printed
    wall_s: float = 0.0  # the whole evaluator process, start-up included
    evaluate_s: Optional[float] = None  # the evaluate() call alone
    error: str = ""  # on failure: what happened, with the log's last line
    log_path: str = ""


def has_evaluator(prepare_path: Path) -> bool:
    """Whether prepare.py defines a top-level evaluate() (read with ast, not run)."""
    try:
        tree = ast.parse(Path(prepare_path).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return False
    return any(isinstance(n, ast.FunctionDef) and n.name == "evaluate" for n in tree.body)


def holdout_names(prepare_path: Path) -> list[str]:
    """HOLDOUT_METRICS of prepare.py (a literal list, read with ast)."""
    try:
        tree = ast.parse(Path(prepare_path).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return []
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "HOLDOUT_METRICS" for t in node.targets):
            try:
                value = ast.literal_eval(node.value)
            except ValueError:
                return []
            return [str(v) for v in value] if isinstance(value, (list, tuple)) else []
    return []


def evaluator_env(run_dir: Path) -> dict:
    """The runner's environment without the training run's own variables (nothing of the run leaks in)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AR_")}
    env.update({"AR_EVAL": "1", "AR_RUN_DIR": str(run_dir), "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"})
    return env


def run_evaluator(
    expr_dir: Path,
    project_root: Path,
    checkpoint: Path,
    run_dir: Path,
    timeout_s: float = EVAL_TIMEOUT_S,
    holdout: Optional[list[str]] = None,
    python: str = sys.executable,
    marker: Optional[tuple[str, str]] = None,
) -> Evaluation:
    """Evaluate `checkpoint` with prepare.py's evaluate() in a fresh process; never raises for a
    failure of the evaluation itself (crash, timeout, bad return value): that is `ok=False`.

    `marker` is the environment marker its processes carry (default: a fresh one); the
    run's own marker lets the repair after a killed runner sweep a surviving evaluator."""
    expr_dir, run_dir = Path(expr_dir).resolve(), Path(run_dir)
    log_path, out_path = run_dir / LOG_NAME, run_dir / OUT_NAME
    out_path.unlink(missing_ok=True)
    holdout = holdout_names(expr_dir / "prepare.py") if holdout is None else holdout
    cmd = [python, "-c", _BOOTSTRAP, str(expr_dir), str(checkpoint), str(out_path)]
    t0 = time.monotonic()
    done = launch.run_training(
        cmd,
        Path(project_root),
        evaluator_env(run_dir),
        log_path,
        timeout_s,
        EVAL_GRACE_S,
        marker or (MARKER_KEY, uuid.uuid4().hex),
        live=False,
    )
    wall = round(time.monotonic() - t0, 3)
    base = {"wall_s": wall, "log_path": str(log_path)}
    if done.interrupted:
        raise KeyboardInterrupt
    if done.timed_out or done.survivors:
        return Evaluation(
            False, error=f"evaluator ran past its {timeout_s:g} s limit; last line: {done.last_line}", **base
        )
    if done.exit_code != 0 or not out_path.exists():
        return Evaluation(False, error=f"evaluator failed (exit {done.exit_code}): {done.last_line}", **base)
    try:
        data = json.loads(out_path.read_text())
    except (OSError, ValueError) as exc:
        return Evaluation(False, error=f"evaluator output {out_path} unreadable: {exc}", **base)
    metrics = data["metrics"]
    hidden = {k: metrics.pop(k) for k in list(metrics) if k in set(holdout)}
    return Evaluation(True, metrics, hidden, evaluate_s=round(data["evaluate_seconds"], 3), **base)


def compare(name: str, reported, evaluated, rel_tol: float = REL_TOLERANCE) -> tuple[bool, str]:
    """(agree, note) for the primary the training printed vs the evaluator's value.

    No reported value is not a disagreement (the evaluator decides); a missing
    or non-finite evaluated value is.
    """
    try:
        ev = float(evaluated)
    except (TypeError, ValueError):
        return False, f"evaluator returned no {name}"
    if not math.isfinite(ev):
        return False, f"evaluator returned {name}={ev}"
    if reported is None:
        return True, f"{name} {ev:.6g} from the evaluator (training reported none)"
    try:
        rep = float(reported)
    except (TypeError, ValueError):
        rep = math.nan
    if math.isfinite(rep) and math.isclose(rep, ev, rel_tol=rel_tol, abs_tol=1e-12):
        return True, ""
    return False, (
        f"reported {name}={reported:.6g} disagrees with the evaluator's {ev:.6g} (relative tolerance {rel_tol:g})"
        if isinstance(reported, (int, float))
        else f"reported {name}={reported!r} disagrees with the evaluator's {ev:.6g}"
    )
