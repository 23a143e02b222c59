"""Helpers shared by the checkpoint tests: run folders, launch times, file trees, the fault driver."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from arunner.state import best

DRIVER = Path(__file__).resolve().parent / "procs" / "ckpt_driver.py"


def new_run(expr, run_id):
    run_dir = expr / "runs" / run_id
    run_dir.mkdir(parents=True)
    (run_dir / "train.py").write_text("RUN_NOTE = ''\n")
    (run_dir / "run.log").write_text("step 1\n")
    return run_dir


def launch():
    """started_at of a run: strictly after anything written before, strictly before anything after."""
    time.sleep(0.01)
    t = time.time()
    time.sleep(0.01)
    return t


def tree(path):
    """Content of a file or folder: bytes, or {relative name: bytes}."""
    path = Path(path)
    if path.is_file():
        return path.read_bytes()
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def assert_agree(expr, run_id):
    link = expr / "best.json"
    assert os.readlink(link) == "best_ckpt/meta.json"
    via_link = json.loads(link.read_text())
    meta = json.loads((expr / "best_ckpt" / "meta.json").read_text())
    assert via_link == meta == best.read_best(expr)
    assert meta["run_id"] == run_id
    return meta


def assert_no_debris(expr):
    left = [
        p.name
        for p in (expr / "best_ckpt.staging", expr / "best_ckpt.trash", expr / ".ckpt-trash")
        if os.path.lexists(p)
    ]
    left += [str(p) for p in expr.glob("runs/*/.ckpt-partial")] + [str(p) for p in expr.glob(".best.json.tmp*")]
    assert left == []


def run_driver(args, fault=None, fallback=False):
    env = dict(os.environ)
    env.pop("AR_FAULT_AT", None)
    if fault:
        env["AR_FAULT_AT"] = fault
    args = dict(args, fallback=fallback)
    proc = subprocess.run(
        [sys.executable, str(DRIVER), "step", json.dumps(args)], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode in (0, -signal.SIGKILL), proc.stderr
    return proc.returncode == -signal.SIGKILL
