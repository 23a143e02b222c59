"""Faults through the real `ar.py run`: SIGKILL at every step, Ctrl+C, leaks, sentinels.

The minimal host writes a small checkpoint file whose content names the lr it
trained with, so "which run does best_ckpt hold" is checkable byte for byte.
"""

from __future__ import annotations

import io
import json
import os
import signal
import sys
import time

import pytest
from conftest import REPO, Experiment, answers, make_host, pid_alive, render
from test_interview import literal_assignment

from arunner.loop import iteration
from arunner.state import best as best_module
from arunner.state import checkpoints as ckpt_module
from arunner.state import snapshots

# Points reachable in a same-filesystem promotion with RENAME_EXCHANGE and a previous best.
UNREACHABLE = {"capture.copied", "capture.source_removed", "promote.old_moved"}
POINTS = [
    p for p in (*iteration.FAULT_POINTS, *ckpt_module.FAULT_POINTS, *best_module.FAULT_POINTS) if p not in UNREACHABLE
]


FAULT_ANSWERS = answers(cli_args="{lr: 0.1, save: ckpt/model.txt}", checkpoint_glob="ckpt/*.txt", slug="261125-faults")


@pytest.fixture
def ckpt_expr(rendered_once, tmp_path) -> Experiment:
    return rendered_once("minimal", FAULT_ANSWERS, tmp_path / "host")


def check_invariants(expr: Experiment) -> None:
    runs = sorted(p for p in (expr.dir / "runs").iterdir() if p.name.startswith("r"))
    results = {p.name: json.loads((p / "result.json").read_text()) for p in runs}  # every run recorded
    assert [r["run_id"] for r in expr.rows()] == [p.name for p in runs]  # one row each, in order
    best = expr.best()
    meta = json.loads((expr.dir / "best_ckpt" / "meta.json").read_text())
    assert best == meta
    assert results[best["run_id"]]["verdict"] == "advance"
    snapshot = (expr.dir / "runs" / best["run_id"] / "train.py").read_text()
    lr = literal_assignment(snapshot, "CLI_OVERRIDES")["lr"]
    assert (expr.dir / "best_ckpt" / best["name"]).read_text() == f"lr={lr}\n"  # the best run's own weights
    assert not [p for p in expr.dir.iterdir() if p.name.startswith(("best_ckpt.", ".ckpt-trash")) and any(p.iterdir())]
    assert expr.train_py.read_bytes() == snapshots.restore_target(expr.dir, best)


@pytest.mark.parametrize("point", POINTS)
def test_sigkill_at_every_step_is_repaired(ckpt_expr: Experiment, point):
    assert ckpt_expr.run()["verdict"] == "advance"
    if point.startswith("prune."):  # keep no latest: the reverted run's checkpoint is pruned at once
        ckpt_expr.ar("session", "--keep-checkpoints", "0")
        ckpt_expr.edit("'lr': 0.1,", "'lr': 0.3,")
    else:
        ckpt_expr.edit("'lr': 0.1,", "'lr': 0.06,")
    killed = ckpt_expr.ar("run", check=False, env={"AR_FAULT_AT": point})
    assert killed.returncode == -signal.SIGKILL, (point, killed.stdout, killed.stderr)
    killed_id = sorted((ckpt_expr.dir / "runs").iterdir())[-1].name
    follow_up = ckpt_expr.run()  # repairs first, then runs the next id
    assert int(follow_up["run_id"][1:]) == int(killed_id[1:]) + 1
    check_invariants(ckpt_expr)
    recorded = json.loads((ckpt_expr.dir / "runs" / killed_id / "result.json").read_text())
    assert recorded["status"] in ("ok", "crash")  # finished as decided, or recorded as killed mid-run


def test_runner_killed_mid_training_is_recorded_next_time(ckpt_expr: Experiment):
    ckpt_expr.run()
    ckpt_expr.edit("'lr': 0.1,", "'lr': 0.06, 'sleep': 30,")
    runner = ckpt_expr.start_run()
    started = ckpt_expr.dir / "runs" / "r0002" / "started.json"
    time.sleep(0.5)
    token = json.loads(started.read_text())["token"]
    runner.kill()
    runner.wait()
    orphan = find_marked(token)
    assert orphan, "the training should outlive its killed runner until repair"
    result = ckpt_expr.run()
    assert result["run_id"] == "r0003"
    recorded = json.loads((ckpt_expr.dir / "runs" / "r0002" / "result.json").read_text())
    assert recorded["status"] == "crash" and "killed" in recorded["note"]
    assert (ckpt_expr.dir / "runs" / "r0002" / "train.py").read_text().count("'sleep': 30") == 1  # snapshot kept
    assert not any(pid_alive(pid) for pid in orphan)
    check_invariants(ckpt_expr)


def find_marked(token: str) -> list[int]:
    from arunner.procs import watchdog

    return watchdog.find_marked((iteration.MARKER_KEY, token))


def test_ctrl_c_records_interrupted_and_restores(ckpt_expr: Experiment):
    ckpt_expr.run()
    ckpt_expr.edit("'lr': 0.1,", "'lr': 0.06, 'sleep': 30,")
    runner = ckpt_expr.start_run()
    time.sleep(0.5)
    runner.send_signal(signal.SIGINT)
    out, err = runner.communicate(timeout=60)
    assert runner.returncode == 0, err
    result = json.loads((ckpt_expr.dir / "runs" / "r0002" / "result.json").read_text())
    assert (result["status"], result["verdict"]) == ("interrupted", "interrupted")
    assert "'sleep': 30" not in ckpt_expr.train_py.read_text()
    assert ckpt_expr.run()["run_id"] == "r0003"  # the loop continues
    check_invariants(ckpt_expr)


def test_leaked_child_is_swept_and_reported(ckpt_expr: Experiment):
    ckpt_expr.edit(
        "# Example:",
        "import subprocess, sys\nsubprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n# Example:",
    )
    result = ckpt_expr.run()
    assert result["status"] == "ok" and "swept 1 process" in result["note"]
    token = json.loads((ckpt_expr.dir / "runs" / "r0001" / "started.json").read_text())["token"]
    assert find_marked(token) == []


def test_sentinel_blocks_runs_until_removed(ckpt_expr: Experiment):
    (ckpt_expr.dir / ".ar-unclean").write_text("run r0007 left processes alive after kill: pids 12345\n")
    proc = ckpt_expr.ar("run", check=False)
    assert proc.returncode == 2 and "pids 12345" in proc.stderr and "delete" in proc.stderr
    assert not list((ckpt_expr.dir / "runs").iterdir())
    (ckpt_expr.dir / ".ar-unclean").unlink()
    assert ckpt_expr.run()["run_id"] == "r0001"


def test_run_that_saves_nothing_new_is_invalid(ckpt_expr: Experiment):
    assert ckpt_expr.run()["checkpoint"]["method"] == "rename"
    ckpt_expr.edit("    'save': 'ckpt/model.txt',\n", "")
    ckpt_expr.edit("'lr': 0.1,", "'lr': 0.06,")
    (ckpt_expr.host / "ckpt").mkdir(exist_ok=True)
    (ckpt_expr.host / "ckpt" / "stale.txt").write_text("old\n")
    os.utime(ckpt_expr.host / "ckpt" / "stale.txt", (time.time() - 3600, time.time() - 3600))
    result = ckpt_expr.run()
    assert (result["status"], result["verdict"]) == ("invalid", "revert")
    assert "no checkpoint written by this run" in result["note"] and result["checkpoint"] is None
    assert ckpt_expr.best()["run_id"] == "r0001"


class _Writes(io.RawIOBase):
    """A raw stream that keeps each write call: what two processes sharing run.log would interleave."""

    def __init__(self):
        self.calls = []

    def writable(self):
        return True

    def write(self, data):
        self.calls.append(bytes(data))
        return len(data)


def test_a_printed_line_is_one_write_even_under_pythonunbuffered(monkeypatch):
    """ar.py sets PYTHONUNBUFFERED; two torchrun ranks once left `eval/loss=0.05eval/loss=0.05` in run.log."""
    from arunner import hostentry

    raw = _Writes()
    unbuffered = io.TextIOWrapper(raw, encoding="utf-8", write_through=True)  # what `python -u` gives
    monkeypatch.setattr(sys, "stdout", unbuffered)
    print("before")
    hostentry.whole_lines()
    print("eval/loss=0.05")
    print("step", 3, "loss", 0.5)
    sys.stdout.write("partial")
    sys.stdout.flush()
    monkeypatch.undo()
    assert raw.calls[:2] == [b"before", b"\n"]  # the split the fix removes
    assert raw.calls[2:] == [b"eval/loss=0.05\n", b"step 3 loss 0.5\n", b"partial"]


def test_torchrun_tree_is_gone_after_timeout(tmp_path):
    """Runner `torchrun --nproc-per-node 2`: both gloo ranks hang, rank 0 leaves a setsid grandchild."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    host = make_host("minimal", tmp_path / "host")
    runner = f"torchrun --nproc-per-node 2 --master-addr 127.0.0.1 --master-port {port}"
    render(host, answers(slug="261125-ddp", distributed_framework="ddp", runner=runner, seconds="300"))
    expr = Experiment(host, "261125-ddp")
    expr.ar("session", "--grace", "3")
    first = expr.run()  # both ranks run the host; each prints the metric, the last line wins
    log = (expr.dir / "runs" / first["run_id"] / "run.log").read_text()
    assert (first["status"], first["verdict"]) == ("ok", "advance"), (first["note"], log[-400:])
    pidfile = tmp_path / "pids.txt"
    hang = (
        f"import runpy, sys\nsys.argv = ['ddp_hang.py', {str(pidfile)!r}]\n"
        f"runpy.run_path({str(REPO / 'tests' / 'procs' / 'ddp_hang.py')!r})\n# Example:"
    )
    for budget in ("20", "45"):  # torchrun may need >12 s to start on a loaded 2-core machine: retry once
        pidfile.unlink(missing_ok=True)
        expr.edit("# Example:", hang)  # (train.py is restored after each run)
        result = expr.run("--seconds", budget)
        lines = pidfile.read_text().splitlines() if pidfile.exists() else []
        roles = {line.split()[0]: int(line.split()[1]) for line in lines}
        assert [pid for pid in roles.values() if pid_alive(pid)] == []
        if sorted(roles) == ["orphan", "rank0", "rank1"]:
            break
    assert sorted(roles) == ["orphan", "rank0", "rank1"], "the tree was not up by the deadline"
    assert (result["status"], result["verdict"]) == ("timeout", "timeout")
    assert [pid for pid in roles.values() if pid_alive(pid)] == []
    assert not (expr.dir / ".ar-unclean").exists()
