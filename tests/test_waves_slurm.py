"""The same experiment through `ar.py run` with `session --launcher slurm`, on a real local Slurm.

Baseline, better, crash, timeout (the job itself is gone afterwards), a wave of
three jobs, Ctrl+C (its jobs cancelled), and a node failure (the candidate queued
again, not a crash), each checked in result.json
(job id, final Slurm state) and results.tsv.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import Experiment, answers
from slurm_cluster import slurm_cluster  # noqa: F401

from arunner.core.layout import JOB_FILE, WAVE_FILE  # noqa: E402
from arunner.state import snapshots

SLURM_ANSWERS = answers(cli_args="{lr: 0.1, sleep: 0.0}", slug="261202-slurm")


@pytest.fixture
def sexpr(rendered_once, tmp_path, slurm_cluster) -> Experiment:  # noqa: F811
    expr = rendered_once("minimal", SLURM_ANSWERS, tmp_path / "host")
    expr.base = expr.train_py.read_text()
    out = expr.ar("session", "--launcher", "slurm", "--slurm-args=--ntasks=1", "--grace", "1").stdout
    assert "launcher=slurm --ntasks=1" in out, out
    return expr


def source(expr: Experiment, lr, sleep: float = 0.0) -> str:
    text = expr.base.replace("'lr': 0.1,", f"'lr': {lr},", 1).replace("'sleep': 0.0,", f"'sleep': {sleep},", 1)
    return text.replace('RUN_NOTE = "baseline"', f'RUN_NOTE = "lr {lr}"', 1)


def job_gone(job_id: str) -> bool:
    return not subprocess.run(["squeue", "-h", "-j", job_id], capture_output=True, text=True).stdout.strip()


def test_baseline_better_crash_timeout_through_slurm(sexpr):
    base = sexpr.run()
    assert base["verdict"] == "advance" and base["slurm"]["state"] == "COMPLETED" and base["slurm"]["job_id"]
    sexpr.train_py.write_text(source(sexpr, 0.06))
    better = sexpr.run()
    assert better["verdict"] == "advance" and better["primary"]["value"] == pytest.approx(0.01)
    sexpr.train_py.write_text(source(sexpr, "'oops'"))  # argparse refuses it: exit 2 on the node
    crash = sexpr.run()
    assert (crash["status"], crash["slurm"]["state"]) == ("crash", "FAILED") and crash["exit_code"] == 2
    assert sexpr.train_py.read_bytes() == snapshots.restore_target(sexpr.dir, sexpr.best())
    sexpr.train_py.write_text(source(sexpr, 0.07, sleep=60))
    timeout = sexpr.run("--seconds", "2")
    assert timeout["status"] == "timeout" and job_gone(timeout["slurm"]["job_id"])
    assert [r["verdict"] for r in sexpr.rows()] == ["advance", "advance", "crash", "timeout"]


def test_wave_of_three_jobs_and_ctrl_c(sexpr):
    sexpr.run()
    for lr in (0.07, 0.06, 0.3):
        sexpr.train_py.write_text(source(sexpr, lr))
        sexpr.ar("propose")
    lines = sexpr.ar("run").stdout.splitlines()
    assert len(lines) == 4 and "winner r0003" in lines[-1], lines
    recorded = {r: json.loads((sexpr.dir / "runs" / r / "result.json").read_text()) for r in ("r0002", "r0003")}
    assert recorded["r0002"]["wave"] == "w0002" and recorded["r0002"]["slurm"]["state"] == "COMPLETED"
    assert len({recorded[r]["slurm"]["job_id"] for r in recorded}) == 2

    for lr in (0.08, 0.09):
        sexpr.train_py.write_text(source(sexpr, lr, sleep=60))
        sexpr.ar("propose")
    runner = subprocess.Popen(
        [sys.executable, str(sexpr.dir / "ar.py"), "run"], cwd=sexpr.host, stdout=subprocess.PIPE, text=True
    )
    logs = [sexpr.dir / "runs" / r / "run.log" for r in ("r0005", "r0006")]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not all(p.exists() for p in logs):
        time.sleep(0.1)
    runner.send_signal(signal.SIGINT)
    out, _ = runner.communicate(timeout=120)
    assert runner.returncode == 0, out
    for run_id in ("r0005", "r0006"):
        res = json.loads((sexpr.dir / "runs" / run_id / "result.json").read_text())
        assert res["status"] == "interrupted" and job_gone(res["slurm"]["job_id"]), res
    assert not (sexpr.dir / WAVE_FILE).exists()
    assert [r["run_id"] for r in sexpr.rows()] == [f"r{n:04d}" for n in range(1, 7)]


def test_invisible_folder_is_refused_in_one_line(rendered_once, tmp_path, slurm_cluster):  # noqa: F811
    # the job runs as nobody, who cannot enter the test folder (mode 700): as a node without the filesystem
    expr = rendered_once("minimal", SLURM_ANSWERS, tmp_path / "host")
    proc = expr.ar("session", "--launcher", "slurm", "--slurm-args=--uid=65534", check=False)
    assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1 and "cannot see" in proc.stderr, proc.stderr
    session = expr.dir / ".ar-session.json"
    assert not session.exists() or json.loads(session.read_text()).get("launcher") != "slurm"  # not saved


def test_node_failure_requeues_the_candidate(sexpr):
    from arunner.procs import watchdog

    sexpr.run()
    sexpr.train_py.write_text(source(sexpr, 0.07, sleep=60))
    sexpr.ar("propose")
    runner = subprocess.Popen(
        [sys.executable, str(sexpr.dir / "ar.py"), "run"], cwd=sexpr.host, stdout=subprocess.PIPE, text=True
    )
    job_file, log = sexpr.dir / "runs" / "r0002" / JOB_FILE, sexpr.dir / "runs" / "r0002" / "run.log"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (job_file.exists() and log.exists()):
        time.sleep(0.1)
    node = subprocess.run(["sinfo", "-h", "-o", "%N"], capture_output=True, text=True).stdout.strip()
    subprocess.run(["scontrol", "update", f"NodeName={node}", "State=DOWN", "Reason=ar-test"], check=True)
    try:
        out, _ = runner.communicate(timeout=120)
    finally:
        subprocess.run(["scontrol", "update", f"NodeName={node}", "State=RESUME"])  # refused if it is back already
        token = json.loads((sexpr.dir / "runs" / "r0002" / "started.json").read_text())["token"]
        for pid in watchdog.find_marked(("AR_RUN_TOKEN", token)):  # the job's processes, if the node kept them
            os.kill(pid, signal.SIGKILL)
    res = json.loads((sexpr.dir / "runs" / "r0002" / "result.json").read_text())
    assert res["status"] == "interrupted" and res["slurm"]["state"] == "NODE_FAIL", res
    assert "not a crash" in res["note"] and "queued again as c0002" in res["note"]
    assert "queued again: c0002" in out and [c.name for c in (sexpr.dir / "queue").glob("c*")] == ["c0002"]
    deadline = time.monotonic() + 60
    while (
        time.monotonic() < deadline
        and "idle" not in subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True).stdout
    ):
        time.sleep(0.2)
