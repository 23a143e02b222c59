"""The independent evaluator: prepare.py's `evaluate(checkpoint_path)` in a sealed interpreter.

The training process runs the agent's train.py, whose sandbox may patch any
host code, so the value it prints can be anything. The evaluator is a new
Python process that loads prepare.py by path and calls its `evaluate` on the
run's captured checkpoint; train.py is never imported (checked after the call).
What training could have left behind cannot reach it:
  * `python -I`: no PYTHONPATH / PYTHON* variables, no user site-packages, no
    script or current folder on sys.path;
  * an allow-listed environment (ENV_ALLOW): nothing else of the runner's
    environment, LD_PRELOAD and PYTHON* included, is passed on;
  * the project root is appended after the standard library and site-packages,
    so a `json.py` or `torch.py` written there shadows nothing;
  * its own bytecode cache (`-X pycache_prefix`): no `__pycache__` file of the
    project or the environment is read, however plausible its header. By default
    the cache persists under the runner's state folder, outside every project
    (a fresh one per run re-compiles torch each time: seconds per run), set
    EVAL_PYCACHE_FRESH for an empty one per run;
  * the start-up hooks of its import path (.pth, sitecustomize) are in the
    protected-file manifest (protect.py): a new one blocks the run;
  * the metrics come back over a pipe the runner holds, not a file in the
    writable run folder.
It runs under its own time limit through the same launcher and watchdog as
training, with its output in runs/rNNNN/eval.log.
"""

from __future__ import annotations

import ast
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, Optional

from ..core import pysource
from ..core.layout import EVAL_LOG, PREPARE_PY

if TYPE_CHECKING:  # the launcher is imported only where an evaluation runs
    from ..procs.launch import LaunchResult

EVAL_TIMEOUT_S = 600.0  # the evaluator's own limit, never charged to the training budget
EVAL_GRACE_S = 5.0  # SIGTERM to SIGKILL when the evaluator runs past its limit
REL_TOLERANCE = 1e-3  # reported vs evaluated primary: relative difference allowed
MARKER_KEY = "AR_EVAL_TOKEN"  # environment marker the watchdog sweeps the evaluator's tree by
EVAL_PYCACHE_FRESH = False  # True: an empty bytecode cache per evaluation (+3-5 s for torch), not the runner's own
RESULT_MAX_BYTES = 60_000  # the result pipe is read after the evaluator exits: it must fit the pipe buffer
# The evaluator's environment: these names and prefixes of the runner's, nothing else.
ENV_ALLOW = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TERM", "TMPDIR", "TZ", "LD_LIBRARY_PATH")
ENV_ALLOW_PREFIXES = ("LC_", "CUDA_", "NVIDIA_", "HIP_", "ROCR_", "OMP_", "MKL_", "HF_", "XDG_", "WANDB_")

# Runs in the fresh interpreter (python -I -c): argv = expr_dir, checkpoint, result fd, project root.
_BOOTSTRAP = r"""
import importlib.util, json, math, os, sys, time
expr_dir, ckpt, fd, root = sys.argv[1:5]
expr_dir, root = os.path.abspath(expr_dir), os.path.abspath(root)
drop = {expr_dir, root, os.path.abspath(os.curdir)}
sys.path[:] = [p for p in sys.path if p and os.path.abspath(p) not in drop]
sys.path.append(root)  # after the standard library and site-packages: the project shadows nothing
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
os.write(int(fd), json.dumps({"metrics": clean, "evaluate_seconds": wall}).encode())
"""


class Evaluation(NamedTuple):
    ok: bool
    metrics: dict = {}  # shown to the agent (never mutated: the default is shared)
    holdout: dict = {}  # names in HOLDOUT_METRICS: stored, never printed
    wall_s: float = 0.0  # the whole evaluator process, start-up included
    evaluate_s: Optional[float] = None  # the evaluate() call alone
    error: str = ""  # on failure: what happened, with the log's last line
    log_path: str = ""


def has_evaluator(prepare_path: Path) -> bool:
    """Whether prepare.py defines a top-level evaluate() (read with ast, not run)."""
    try:
        tree = pysource.parse_file(prepare_path)  # parsed once per run, whichever check asks first
    except (OSError, SyntaxError, ValueError):
        return False
    return any(isinstance(n, ast.FunctionDef) and n.name == "evaluate" for n in tree.body)


def holdout_names(prepare_path: Path) -> list[str]:
    """HOLDOUT_METRICS of prepare.py (a literal list, read with ast)."""
    try:
        tree = pysource.parse_file(prepare_path)  # parsed once per run, whichever check asks first
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
    """The allow-listed part of the runner's environment, plus the evaluator's own marks."""
    env = {k: v for k, v in os.environ.items() if k in ENV_ALLOW or k.startswith(ENV_ALLOW_PREFIXES)}
    env.update({"AR_EVAL": "1", "AR_RUN_DIR": str(run_dir), "AR_INSIDE_RUN": "1"})
    return env


def evaluator_command(
    python: str, expr_dir: Path, checkpoint: Path, fd: int, root: Path, cache: str, fresh: bool
) -> list[str]:
    """`python -I -u -X pycache_prefix=<the evaluator's cache> -c <bootstrap> ...` (-B too when the
    cache is a fresh one: nothing is written to it); see the module docstring."""
    flags = ["-I", *(["-B"] if fresh else []), "-u", "-X", f"pycache_prefix={cache}"]
    return [python, *flags, "-c", _BOOTSTRAP, str(expr_dir), str(checkpoint), str(fd), str(root)]


def runner_pycache() -> str:
    """The evaluator's own bytecode cache, under the runner's state folder (outside every project)."""
    from ..core.chain_hash import state_dir

    path = state_dir() / "pycache"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return str(path)


def _read_pipe(fd: int) -> bytes:
    """What the evaluator wrote to its result pipe (read after it exited: never blocks)."""
    os.set_blocking(fd, False)
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


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
    """Evaluate `checkpoint` with prepare.py's evaluate() in a sealed process; never raises for a
    failure of the evaluation itself (crash, timeout, bad return value): that is `ok=False`.

    `marker` is the environment marker its processes carry (default: a fresh one); the
    run's own marker lets the repair after a killed runner sweep a surviving evaluator."""
    expr_dir, run_dir = Path(expr_dir).resolve(), Path(run_dir)
    log_path = run_dir / EVAL_LOG
    holdout = holdout_names(expr_dir / PREPARE_PY) if holdout is None else holdout
    fresh = EVAL_PYCACHE_FRESH
    import tempfile  # only the evaluator pays for these (status and guard read this module too)
    import uuid

    from ..procs import launch

    cache = tempfile.mkdtemp(prefix="ar-eval-pycache-") if fresh else runner_pycache()
    read_fd, write_fd = os.pipe()
    cmd = evaluator_command(python, expr_dir, checkpoint, write_fd, Path(project_root).resolve(), cache, fresh)
    t0 = time.monotonic()
    try:
        done = launch.run_training(
            cmd,
            Path(project_root),
            evaluator_env(run_dir),
            log_path,
            timeout_s,
            EVAL_GRACE_S,
            marker or (MARKER_KEY, uuid.uuid4().hex),
            live=False,
            pass_fds=(write_fd,),
        )
        os.close(write_fd)
        write_fd = -1
        raw = _read_pipe(read_fd)
    finally:
        if write_fd >= 0:
            os.close(write_fd)
        os.close(read_fd)
        if fresh:
            shutil.rmtree(cache, ignore_errors=True)
    wall = round(time.monotonic() - t0, 3)
    if done.interrupted:
        raise KeyboardInterrupt
    return _evaluation(done, raw, timeout_s, holdout, {"wall_s": wall, "log_path": str(log_path)})


def _evaluation(done: LaunchResult, raw: bytes, timeout_s: float, holdout: list[str], base: dict) -> Evaluation:
    """What the evaluator process left: its metrics with the holdout ones set apart, or why there are none."""
    if done.timed_out or done.survivors:
        return Evaluation(
            False, error=f"evaluator ran past its {timeout_s:g} s limit; last line: {done.last_line}", **base
        )
    if done.exit_code != 0 or not raw:
        return Evaluation(False, error=f"evaluator failed (exit {done.exit_code}): {done.last_line}", **base)
    try:
        data = json.loads(raw[:RESULT_MAX_BYTES])
        metrics, seconds = dict(data["metrics"]), float(data["evaluate_seconds"])
    except (ValueError, KeyError, TypeError) as exc:
        return Evaluation(False, error=f"evaluator result unreadable: {exc}", **base)
    hidden = {k: metrics.pop(k) for k in list(metrics) if k in set(holdout)}
    return Evaluation(True, metrics, hidden, evaluate_s=round(seconds, 3), **base)


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
