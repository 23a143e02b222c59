"""The slurm launcher through a real local Slurm (started by tests/slurm_cluster.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "template" / "<<slug>>"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from slurm_cluster import slurm_cluster  # noqa: E402, F401

from arunner.core.errors import UserError  # noqa: E402
from arunner.procs import slot_pool, slots, slurm, watchdog  # noqa: E402

HOST = Path(__file__).resolve().parent / "procs" / "slot_host.py"


def _run(tmp_path: Path, seconds: float, code: int = 0, budget: float = 30, **kw) -> tuple:
    marker = ("AR_TEST_RUN", uuid.uuid4().hex)
    run_dir = tmp_path / "runs" / "r0001"
    run_dir.mkdir(parents=True, exist_ok=True)
    log = run_dir / "run.log"
    cmd = [sys.executable, str(HOST), str(run_dir / "rec"), str(seconds), str(code)]
    env = {**os.environ, "AR_RUN_ID": "r0001"}
    result = slurm.run_job(cmd, tmp_path, env, log, budget, 2, marker, False, job_file=run_dir / "slurm_job", **kw)
    return result, log, marker


def _gone(job_id: str, marker) -> bool:
    listed = subprocess.run(["squeue", "-h", "-j", job_id], capture_output=True, text=True).stdout.strip()
    return not listed and not watchdog.find_marked(marker)


def test_format_time():
    assert slurm.format_time(1) == "0-00:01:00"  # never "0:01", which Slurm reads as one second
    assert slurm.format_time(61) == "0-00:02:00"
    assert slurm.format_time(86400 + 3600) == "1-01:00:00"


@pytest.mark.usefixtures("slurm_cluster")
def test_job_ok_output_in_run_log(tmp_path):
    result, log, marker = _run(tmp_path, 0.1)
    assert (result.exit_code, result.state, result.timed_out, result.interrupted) == (0, "COMPLETED", False, False)
    assert (log.parent / "slurm_job").read_text().strip() == result.job_id
    assert "saw CUDA_VISIBLE_DEVICES=" in log.read_text()  # written by the job, straight into run.log
    assert (log.parent / "rec").exists()
    assert result.last_line.startswith("saw CUDA_VISIBLE_DEVICES")


@pytest.mark.usefixtures("slurm_cluster")
def test_job_exit_1_is_a_crash(tmp_path):
    result, _, _ = _run(tmp_path, 0.1, code=1)
    assert (result.exit_code, result.state, result.requeue) == (1, "FAILED", False)


@pytest.mark.usefixtures("slurm_cluster")
def test_timeout_cancels_the_job(tmp_path):
    result, _, marker = _run(tmp_path, 60, budget=1.5)
    assert result.timed_out and result.exit_code is None and not result.interrupted
    assert result.state in ("CANCELLED", "TIMEOUT")
    assert _gone(result.job_id, marker)  # the job itself, not just our view of it
    assert not (tmp_path / "runs" / "r0001" / "rec").exists()


@pytest.mark.usefixtures("slurm_cluster")
def test_ctrl_c_cancels_the_job(tmp_path):
    main = threading.main_thread().ident
    timer = threading.Timer(1.5, lambda: signal.pthread_kill(main, signal.SIGINT))
    timer.start()
    result, _, marker = _run(tmp_path, 60)
    timer.join()
    assert result.interrupted and not result.timed_out and result.state == "CANCELLED"
    assert _gone(result.job_id, marker)


@pytest.mark.usefixtures("slurm_cluster")
def test_wave_through_slurm(tmp_path):
    cands = []
    for i, code in enumerate((0, 3)):
        (tmp_path / f"r{i}").mkdir()
        cands.append(
            slot_pool.SlotJob(
                name=f"r{i}",
                cmd=[sys.executable, str(HOST), str(tmp_path / f"r{i}" / "rec"), "0.5", str(code)],
                cwd=tmp_path,
                env=dict(os.environ),
                log_path=tmp_path / f"r{i}" / "run.log",
                budget_s=30,
                grace_s=2,
                marker=("AR_TEST_RUN", uuid.uuid4().hex),
            )
        )
    pool = slots.SlotPool([slots.Slot(0, ()), slots.Slot(1, ())])  # at most two jobs in flight
    outcomes = slot_pool.run_jobs(cands, pool, slurm.SlurmLauncher())
    assert [o.result.exit_code for o in outcomes] == [0, 3]
    assert len({o.result.job_id for o in outcomes}) == 2


@pytest.mark.usefixtures("slurm_cluster")
def test_bad_options_and_visibility(tmp_path):
    with pytest.raises(UserError, match="sbatch refused the job: .*partition"):
        _run(tmp_path, 0.1, sbatch_args=["--partition=nosuchpartition"])
    slurm.check_visible(tmp_path)  # the node shares this filesystem: no error
    assert not list(tmp_path.glob(".ar-slurm-check-*"))  # the token is removed
    with pytest.raises(UserError, match="a Slurm job cannot see"):
        slurm.check_visible(tmp_path, ["--partition=nosuchpartition"])


def test_state_mapping():
    r = slurm._result("7", "NODE_FAIL", "0:0", "", 0.0, 1.0, Path("/nonexistent"))
    assert r.requeue and r.interrupted and r.exit_code is None and "not a crash" in r.note
    r = slurm._result("7", "PREEMPTED", "0:15", "", 0.0, 1.0, Path("/nonexistent"))
    assert r.requeue and "PREEMPTED" in r.note
    r = slurm._result("7", "OUT_OF_MEMORY", "125:0", "", 0.0, 1.0, Path("/nonexistent"))
    assert r.exit_code == 125 and not r.requeue and "out of memory" in r.note
    r = slurm._result("7", "TIMEOUT", "0:0", "", 0.0, 1.0, Path("/nonexistent"))
    assert r.timed_out and r.exit_code is None
    r = slurm._result("7", "CANCELLED", "0:15", "", 0.0, 1.0, Path("/nonexistent"))
    assert r.interrupted and "outside the runner" in r.note
    r = slurm._result("7", "FAILED", "0:9", "", 0.0, 1.0, Path("/nonexistent"))
    assert r.exit_code == -9


@pytest.mark.usefixtures("slurm_cluster")
def test_ctrl_c_cancels_every_job_of_a_wave(tmp_path):
    cands = []
    for i in range(3):
        (tmp_path / f"r{i}").mkdir()
        cands.append(
            slot_pool.SlotJob(
                name=f"r{i}",
                cmd=[sys.executable, str(HOST), str(tmp_path / f"r{i}" / "rec"), "60"],
                cwd=tmp_path,
                env=dict(os.environ),
                log_path=tmp_path / f"r{i}" / "run.log",
                budget_s=60,
                grace_s=2,
                marker=("AR_TEST_RUN", uuid.uuid4().hex),
            )
        )
    pool = slots.SlotPool([slots.Slot(0, ()), slots.Slot(1, ())])  # the third waits, and never starts
    main = threading.main_thread().ident
    timer = threading.Timer(2.0, lambda: signal.pthread_kill(main, signal.SIGINT))
    timer.start()
    outcomes = slot_pool.run_jobs(cands, pool, slurm.SlurmLauncher())
    timer.join()
    assert [o.slot is not None for o in outcomes] == [True, True, False]
    for o in outcomes[:2]:
        assert o.result.interrupted and o.result.state == "CANCELLED"
        assert _gone(o.result.job_id, o.candidate.marker)
        assert (o.candidate.log_path.parent / "slurm_job").read_text().strip() == o.result.job_id


@pytest.mark.usefixtures("slurm_cluster")
def test_repair_cancels_the_job_of_a_killed_runner(tmp_path):
    marker = ("AR_TEST_RUN", uuid.uuid4().hex)
    cmd = [sys.executable, str(HOST), str(tmp_path / "rec"), "60"]
    job_id = slurm.submit(cmd, tmp_path, {**os.environ, marker[0]: marker[1]}, tmp_path / "run.log", 120, "orphan", [])
    (tmp_path / "slurm_job").write_text(job_id + "\n")
    assert slurm.cancel_recorded(tmp_path / "slurm_job") == "CANCELLED"
    assert _gone(job_id, marker)
    assert slurm.cancel_recorded(tmp_path / "nothing") == ""
