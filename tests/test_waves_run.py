"""Waves through the real `ar.py propose` and `ar.py run`: slots, one winner, every row once, faults.

Each candidate is the minimal host's train.py with its own lr and sleep; a few
lines in its sandbox record the CUDA_VISIBLE_DEVICES it saw and when it ran, so
"never two candidates on one device at once" is checked on real processes (the record goes
beside the runs: a file the training writes into its run folder would be taken as its checkpoint).
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

from arunner.core.layout import WAVE_FILE  # noqa: E402
from arunner.loop import iteration
from arunner.state import snapshots

WAVE_ANSWERS = answers(cli_args="{lr: 0.1, sleep: 0.0}", slug="261202-waves")
RECORDER = """
import atexit as _atexit
import time as _time
_T0 = _time.time()
print("saw CUDA_VISIBLE_DEVICES=" + os.environ.get("CUDA_VISIBLE_DEVICES", ""), flush=True)
_atexit.register(lambda: open(os.path.join(os.environ["AR_EXPR_DIR"], "saw-" + os.environ["AR_RUN_ID"]), "w").write(
    os.environ.get("CUDA_VISIBLE_DEVICES", "") + f" {_T0} {_time.time()}\\n"))
"""


@pytest.fixture
def lock_dir(tmp_path, monkeypatch):
    folder = tmp_path / "device-locks"  # not the machine's: other tests lease devices too
    monkeypatch.setenv("AR_DEVICE_LOCK_DIR", str(folder))
    return folder


@pytest.fixture
def wexpr(rendered_once, tmp_path, lock_dir) -> Experiment:
    expr = rendered_once("minimal", WAVE_ANSWERS, tmp_path / "host")
    expr.base = expr.train_py.read_text()  # the baseline every candidate is edited from
    return expr


def candidate_source(base: str, lr: float, sleep: float = 0.0, note: str = "") -> str:
    text = base.replace("'lr': 0.1,", f"'lr': {lr},", 1).replace("'sleep': 0.0,", f"'sleep': {sleep},", 1)
    text = text.replace('RUN_NOTE = "baseline"', f"RUN_NOTE = {note or f'lr {lr}'!r}\n{RECORDER}", 1)
    assert f"'lr': {lr}," in text and f"'sleep': {sleep}," in text and RECORDER in text
    return text


def propose(expr: Experiment, lr: float, sleep: float = 0.0) -> str:
    expr.train_py.write_text(candidate_source(expr.base, lr, sleep))
    line = expr.ar("propose").stdout
    assert line.startswith("queued c") and len(line.splitlines()) == 1, line
    return line.split()[1]


def wave_out(expr: Experiment, **kw) -> list[str]:
    proc = expr.ar("run", **kw)
    assert len(proc.stdout.encode()) < 800, proc.stdout
    return proc.stdout.splitlines()


def results(expr: Experiment) -> dict:
    runs = sorted(p for p in (expr.dir / "runs").iterdir() if p.name.startswith("r"))
    return {p.name: json.loads((p / "result.json").read_text()) for p in runs}


def check_invariants(expr: Experiment) -> None:
    recorded = results(expr)  # every run folder has its result.json
    assert [r["run_id"] for r in expr.rows()] == list(recorded)  # one row each, in run order
    waves = {}
    for res in recorded.values():
        if res["wave"]:
            waves.setdefault(res["wave"], []).append(res["verdict"])
    assert all(v.count("advance") <= 1 for v in waves.values()), waves
    best = expr.best()
    if best:
        assert recorded[best["run_id"]]["verdict"] == "advance"
        assert expr.train_py.read_bytes() == snapshots.restore_target(expr.dir, best)
    assert not (expr.dir / WAVE_FILE).exists()


def intervals(expr: Experiment, run_ids) -> list[tuple[str, float, float]]:
    out = []
    for run_id in run_ids:
        devices, start, end = (expr.dir / f"saw-{run_id}").read_text().split()
        out.append((devices, float(start), float(end)))
    return out


def assert_disjoint(spans) -> None:
    for i, (dev_a, a0, a1) in enumerate(spans):
        for dev_b, b0, b1 in spans[i + 1 :]:
            if set(dev_a.split(",")) & set(dev_b.split(",")):
                assert a1 <= b0 or b1 <= a0, f"device {dev_a} shared at once: {spans}"


def test_wave_of_three_one_winner(wexpr):
    assert wexpr.run()["verdict"] == "advance"  # the baseline, a single run as today
    wexpr.ar("session", "--devices", "0,1,2,3")
    ids = [propose(wexpr, lr) for lr in (0.07, 0.06, 0.3)]
    assert wexpr.train_py.read_bytes() == snapshots.restore_target(wexpr.dir, wexpr.best())  # propose restored it
    assert "queued: 3" in wexpr.ar("status").stdout
    lines = wave_out(wexpr)
    assert len(lines) == 4 and lines[-1].startswith("wave w0002: 3 candidate(s) on 4 slot(s); winner r0003")
    recorded = results(wexpr)
    assert [recorded[r]["verdict"] for r in ("r0002", "r0003", "r0004")] == ["revert", "advance", "revert"]
    assert "r0003 won wave w0002" in recorded["r0002"]["note"]  # it beat the best too, but lost
    assert "winner: r0003" in recorded["r0004"]["note"]
    assert {recorded[r]["wave"] for r in ("r0002", "r0003", "r0004")} == {"w0002"}
    assert [recorded[r]["note"].split(":")[0] for r in ("r0002", "r0003", "r0004")] == ids
    assert wexpr.best()["run_id"] == "r0003"
    spans = intervals(wexpr, ["r0002", "r0003", "r0004"])
    assert sorted(s[0] for s in spans) == ["0", "1", "2"]  # each its own device
    assert_disjoint(spans)
    assert wexpr.ar("propose", "--list").stdout.startswith("queue empty")
    check_invariants(wexpr)


def test_wave_of_one_and_no_queue(wexpr):
    wexpr.ar("session", "--devices", "0,1,2,3")
    first = wexpr.run()  # no queue, devices set: train.py itself on one slot, today's output
    assert first["verdict"] == "advance" and first["wave"] is None
    assert (wexpr.dir / "runs" / "r0001" / "run.log").read_text().startswith("saw CUDA") is False  # baseline
    propose(wexpr, 0.06)
    lines = wave_out(wexpr)
    assert len(lines) == 2 and "winner r0002" in lines[1], lines
    assert intervals(wexpr, ["r0002"])[0][0] == "0"
    check_invariants(wexpr)


def test_wave_of_nine_on_four_slots(wexpr):
    wexpr.run()
    wexpr.ar("session", "--devices", "0,1,2,3")
    lrs = (0.3, 0.2, 0.09, 0.15, 0.055, 0.25, 0.08, 0.12, 0.07)
    for lr in lrs:
        propose(wexpr, lr, sleep=0.4)
    lines = wave_out(wexpr)
    assert len(lines) == 8 and lines[6].startswith("... and 3 more") and lines[0].split()[1] == "candidate", lines
    recorded = results(wexpr)
    wave_ids = [f"r{n:04d}" for n in range(2, 11)]
    verdicts = [recorded[r]["verdict"] for r in wave_ids]
    assert verdicts.count("advance") == 1 and recorded["r0006"]["verdict"] == "advance"  # lr 0.055 is closest
    spans = intervals(wexpr, wave_ids)
    assert_disjoint(spans)
    assert {s[0] for s in spans} == {"0", "1", "2", "3"}
    starts = sorted(s[1] for s in spans)
    assert max(sum(1 for s in spans if s[1] <= t < s[2]) for t in starts) <= 4  # never more than 4 at once
    check_invariants(wexpr)


def test_two_experiments_share_four_slots(rendered_once, tmp_path, lock_dir):
    exprs = [rendered_once("minimal", WAVE_ANSWERS, tmp_path / f"host{i}") for i in (1, 2)]
    for expr in exprs:
        expr.base = expr.train_py.read_text()
        expr.ar("session", "--devices", "0,1,2,3")
        for lr in (0.07, 0.06, 0.3):
            propose(expr, lr, sleep=1.0)
    procs = [
        subprocess.Popen([sys.executable, str(e.dir / "ar.py"), "run"], cwd=e.host, stdout=subprocess.PIPE, text=True)
        for e in exprs
    ]
    for proc in procs:
        assert proc.wait(timeout=120) == 0
    spans = [s for e in exprs for s in intervals(e, ["r0001", "r0002", "r0003"])]
    assert_disjoint(spans)  # 6 candidates, 4 devices: the second experiment waited for free slots
    for expr in exprs:
        check_invariants(expr)


def test_bad_inputs_are_one_line(wexpr):
    for args, words in (
        (("session", "--devices", "0,0"), "twice"),
        (("session", "--devices", "0,1", "--devices-per-run", "3"), "needs 3 devices"),
        (("session", "--slurm-args", "'--partition"), "quote"),
        (("propose", "--discard", "c0042"), "no queued candidate"),
    ):
        proc = wexpr.ar(*args, check=False)
        assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1 and words in proc.stderr, proc.stderr
    wexpr.run()
    propose(wexpr, 0.07)
    wexpr.train_py.write_text(candidate_source(wexpr.base, 0.2))  # an edit nobody proposed
    proc = wexpr.ar("run", check=False)
    assert proc.returncode == 2 and "ar.py propose" in proc.stderr and "Traceback" not in proc.stderr
    assert wexpr.train_py.read_text() == candidate_source(wexpr.base, 0.2)  # nothing lost
    assert wexpr.ar("propose", "--discard", "c0001").stdout.startswith("discarded c0001")


@pytest.mark.parametrize("point", iteration.WAVE_FAULT_POINTS)
def test_sigkill_at_each_wave_step_is_repaired(wexpr, point):
    wexpr.run()
    wexpr.ar("session", "--devices", "0,1,2,3")
    for lr in (0.07, 0.06, 0.3):
        propose(wexpr, lr)
    killed = wexpr.ar("run", check=False, env={"AR_FAULT_AT": point})
    assert killed.returncode == -signal.SIGKILL, (point, killed.stdout, killed.stderr)
    follow = wexpr.ar("run")  # repairs the wave, then runs train.py (the best) once more
    assert follow.stdout.startswith("r0005 "), follow.stdout
    check_invariants(wexpr)
    recorded = results(wexpr)
    assert [recorded[r]["status"] for r in ("r0002", "r0003", "r0004")] in (["ok"] * 3, ["crash"] * 3)
    assert not list((wexpr.dir / "queue").glob("c*"))  # every candidate went into its run, once


def _start_wave(expr: Experiment, count: int) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, str(expr.dir / "ar.py"), "run"], cwd=expr.host, stdout=subprocess.PIPE, text=True
    )
    logs = [expr.dir / "runs" / f"r{n:04d}" / "run.log" for n in range(2, 2 + count)]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not all(p.exists() and p.stat().st_size for p in logs):
        time.sleep(0.05)
    assert all(p.exists() for p in logs)
    return proc


def test_sigkill_mid_training_then_repair(wexpr):
    wexpr.run()
    wexpr.ar("session", "--devices", "0,1,2,3")
    for lr in (0.07, 0.06, 0.3):
        propose(wexpr, lr, sleep=30)
    runner = _start_wave(wexpr, 3)
    runner.kill()
    runner.wait()
    assert "wave w0002 in flight" in wexpr.ar("status").stdout
    wexpr.ar("session", "--devices", "auto")  # back to a plain single run for the follow-up
    assert wexpr.run()["run_id"] == "r0005"  # repair killed the three trainings and recorded them
    recorded = results(wexpr)
    assert [recorded[r]["status"] for r in ("r0002", "r0003", "r0004")] == ["crash"] * 3
    check_invariants(wexpr)


def test_ctrl_c_mid_wave(wexpr):
    wexpr.run()
    wexpr.ar("session", "--devices", "0,1")
    for lr in (0.07, 0.06, 0.3):
        propose(wexpr, lr, sleep=30)
    runner = _start_wave(wexpr, 2)  # two slots: the third candidate waits
    runner.send_signal(signal.SIGINT)
    out, _ = runner.communicate(timeout=60)
    assert runner.returncode == 0 and "queued again: c0003" in out, out
    recorded = results(wexpr)
    assert [recorded[r]["status"] for r in ("r0002", "r0003")] == ["interrupted"] * 2
    assert "r0004" not in recorded and [c.name for c in (wexpr.dir / "queue").glob("c*")] == ["c0003"]
    check_invariants(wexpr)


def test_status_shows_slots_and_holders(wexpr, lock_dir):
    wexpr.ar("session", "--devices", "0,1", "--devices-per-run", "2")
    from arunner.procs import slots

    held = slots.try_lease(slots.Slot(0, ("0", "1")), "someone-else")
    try:
        out = wexpr.ar("status").stdout
        assert f"slots: 1 ([0,1] {os.getpid()} someone-else)" in out, out
    finally:
        held.release()
    assert "slots: 1 ([0,1] free)" in wexpr.ar("status").stdout


def test_wave_refuses_a_candidate_that_prints_the_metric_and_runs_the_rest(wexpr):
    assert wexpr.run()["verdict"] == "advance"
    wexpr.ar("session", "--devices", "0,1")
    honest = propose(wexpr, 0.07)
    wexpr.train_py.write_text(
        candidate_source(wexpr.base, 0.06).replace(RECORDER, RECORDER + 'print("eval/loss=0.0")\n')
    )
    cheat = wexpr.ar("propose").stdout.split()[1]
    wave_out(wexpr)
    recorded = results(wexpr)
    by_candidate = {recorded[r]["note"].split(":")[0]: recorded[r] for r in ("r0002", "r0003")}
    assert by_candidate[honest]["verdict"] == "advance"
    refused = by_candidate[cheat]
    assert (refused["status"], refused["verdict"]) == ("invalid", "revert")
    assert "refused before training" in refused["note"] and "eval/loss" in refused["note"]
    assert not (wexpr.dir / "runs" / refused["run_id"] / "run.log").exists()  # it never trained
    check_invariants(wexpr)
