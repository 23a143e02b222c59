"""Launcher and watchdog against real process trees (fixtures in tests/procs/).

Every fixture process appends "<role> <pid>" to a PID file; each test checks that
every PID it learned is dead afterwards, and kills leftovers itself (by PID) so a
failing test leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from conftest import pid_alive as alive

from arunner.procs import watchdog
from arunner.procs.launch import last_line, run_training

PROCS = Path(__file__).resolve().parent / "procs"
TREE = PROCS / "tree.py"
PY = sys.executable


def roles(pidfile: Path) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    if pidfile.exists():
        for line in pidfile.read_text().splitlines():
            role, pid = line.split()
            out.setdefault(role, []).append(int(pid))
    return out


def members(pidfile: Path) -> list[int]:
    return [pid for role, pids in roles(pidfile).items() if role not in ("TERM", "flushed") for pid in pids]


def wait_for(pred, timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.02)
    return pred()


@pytest.fixture
def run(tmp_path):
    """A marker, a PID file and a log per test; kills any leftover by PID afterwards."""
    ctx = type("Ctx", (), {})()
    ctx.marker = ("AR_TEST_TOKEN", uuid.uuid4().hex)
    ctx.pidfile = tmp_path / "pids"
    ctx.log = tmp_path / "run.log"
    ctx.env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ctx.started: list[subprocess.Popen] = []
    yield ctx
    for pid in set(members(ctx.pidfile)) | set(watchdog.find_marked(ctx.marker)):
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
    for p in ctx.started:
        p.kill()
        p.wait()


def tree(ctx, *args: str) -> list[str]:
    return [PY, str(TREE), str(ctx.pidfile), *args]


def launch(ctx, cmd, budget: float, grace: float, live: bool = False):
    return run_training(
        cmd, cwd=PROCS, env=ctx.env, log_path=ctx.log, budget_s=budget, grace_s=grace, marker=ctx.marker, live=live
    )


def spawn_tree(ctx, *args: str, expect: int) -> subprocess.Popen:
    """Start tree.py directly (as the launcher would) and wait until `expect` members run."""
    p = subprocess.Popen(tree(ctx, *args), env={**ctx.env, ctx.marker[0]: ctx.marker[1]}, start_new_session=True)
    ctx.started.append(p)
    assert wait_for(lambda: len(members(ctx.pidfile)) >= expect), roles(ctx.pidfile)
    return p


def test_hang_times_out_and_whole_tree_dies(run):
    res = launch(
        run,
        tree(run, "--children", "2", "--grandchild", "--setsid-orphan", "--say", "epoch 1\nstep 3/10\rstep 4/10\r"),
        budget=1.5,
        grace=1.0,
    )
    r = roles(run.pidfile)
    assert [len(r.get(k, [])) for k in ("root", "child", "grandchild", "orphan")] == [1, 2, 2, 1]
    assert res.timed_out and not res.interrupted and res.exit_code is None
    assert res.survivors == [] and res.leaked == []
    assert [pid for pid in members(run.pidfile) if alive(pid)] == []
    assert watchdog.find_marked(run.marker) == []
    assert res.last_line == "step 4/10"


@pytest.mark.parametrize("term", ["ignore", "record"])
def test_sigterm_ignored_gets_sigkill_after_grace(run, term):
    res = launch(run, tree(run, "--children", "2", "--term", term), budget=1.0, grace=0.5)
    assert res.timed_out and res.survivors == []
    pids = members(run.pidfile)
    assert len(pids) == 3 and [pid for pid in pids if alive(pid)] == []
    if term == "record":  # each one saw SIGTERM first, and was SIGKILLed later
        assert set(roles(run.pidfile)["TERM"]) == set(pids)


def test_graceful_writer_gets_its_grace_before_sigkill(run):
    res = launch(run, tree(run, "--children", "2", "--term", "graceful"), budget=1.0, grace=3.0)
    assert res.timed_out and res.survivors == []
    pids = members(run.pidfile)
    assert sorted(roles(run.pidfile).get("flushed", [])) == sorted(pids)  # all flushed: none SIGKILLed
    assert [pid for pid in pids if alive(pid)] == []


@pytest.mark.parametrize("use_proc", [True, False], ids=["proc", "psutil"])
def test_setsid_orphan_found_by_marker_only(run, monkeypatch, use_proc):
    if not use_proc:
        pytest.importorskip("psutil")
    monkeypatch.setattr(watchdog, "_USE_PROC", use_proc)
    p = spawn_tree(run, "--children", "1", "--setsid-orphan", expect=3)
    orphan = roles(run.pidfile)["orphan"][0]
    assert os.getsid(orphan) != p.pid and os.getpgid(orphan) != p.pid  # escaped session and group
    found = watchdog.collect_tree(p.pid, run.marker)
    assert found == set(members(run.pidfile))
    assert watchdog.find_marked(run.marker) == sorted(members(run.pidfile))
    assert orphan not in watchdog.collect_tree(p.pid, ("AR_TEST_TOKEN", "other"))  # only the marker finds it
    assert watchdog.stop_tree(p.pid, run.marker, grace_s=1.0) == []
    assert [pid for pid in members(run.pidfile) if alive(pid)] == []


def test_torchrun_gloo_workers_and_setsid_grandchild_die(run):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [
        PY,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "--master-addr",
        "127.0.0.1",
        "--master-port",
        str(port),
        str(PROCS / "ddp_hang.py"),
        str(run.pidfile),
    ]
    # torchrun + 2 workers need ~4 s to start on an idle 2-core machine; under load the
    # tree may not be up by the deadline: then retry once with a longer budget
    for budget in (8.0, 30.0):
        res = launch(run, cmd, budget=budget, grace=3.0)
        r = roles(run.pidfile)
        if sorted(r) == ["orphan", "rank0", "rank1"]:
            break
        assert res.timed_out and [pid for pid in members(run.pidfile) if alive(pid)] == []
        run.pidfile.unlink(missing_ok=True)  # the retry must bring up all three on its own
    assert sorted(r) == ["orphan", "rank0", "rank1"], f"tree not up by the deadline: {r}\n{run.log.read_text()[-2000:]}"
    assert res.timed_out and res.survivors == []
    assert [pid for pid in members(run.pidfile) if alive(pid)] == []
    assert watchdog.find_marked(run.marker) == []


def test_exit_zero_with_leaked_children_is_swept(run):
    res = launch(
        run,
        tree(run, "--children", "1", "--setsid-orphan", "--exit-after", "0.3", "--say", "done\n"),
        budget=20.0,
        grace=1.0,
    )
    r = roles(run.pidfile)
    assert res.exit_code == 0 and not res.timed_out and not res.interrupted
    assert sorted(d["pid"] for d in res.leaked) == sorted(r["child"] + r["orphan"])
    assert all(d["cmdline"] and d["name"] for d in res.leaked)
    assert res.survivors == [] and not alive(r["child"][0]) and not alive(r["orphan"][0])
    assert res.last_line == "done"


def test_clean_exit_reports_nothing(run):
    res = launch(run, [PY, "-c", "import sys; print('loss 0.5'); sys.exit(3)"], budget=20.0, grace=1.0)
    assert (res.exit_code, res.timed_out, res.leaked, res.survivors) == (3, False, [], [])
    assert res.last_line == "loss 0.5"


def test_unkillable_process_is_reported_as_survivor(run):
    p = spawn_tree(run, "--children", "1", "--setsid-orphan", expect=3)
    orphan = roles(run.pidfile)["orphan"][0]

    def kill(pid, sig):  # the orphan ignores even SIGKILL, as one stuck in the kernel would
        if pid != orphan:
            os.kill(pid, sig)

    survivors = watchdog.stop_tree(p.pid, run.marker, grace_s=0.3, kill=kill)
    assert [d["pid"] for d in survivors] == [orphan] and set(survivors[0]) == {"pid", "name", "cmdline"}
    assert [pid for pid in members(run.pidfile) if alive(pid)] == [orphan]
    os.kill(orphan, signal.SIGKILL)  # our own cleanup, by PID
    assert wait_for(lambda: not alive(orphan))
    assert watchdog.sweep(run.marker) == []


def test_sweep_stops_marked_processes_without_a_root(run):
    spawn_tree(run, "--children", "2", "--grandchild", "--term", "ignore", expect=5)
    assert watchdog.sweep(run.marker, grace_s=0.2) == []
    assert [pid for pid in members(run.pidfile) if alive(pid)] == []


def start_driver(run, term: str, grace: float) -> subprocess.Popen:
    p = subprocess.Popen(
        [PY, str(PROCS / "driver.py"), str(run.log), str(run.pidfile), "60", str(grace), run.marker[1], term],
        stdout=subprocess.PIPE,
        text=True,
    )
    run.started.append(p)
    assert wait_for(lambda: len(members(run.pidfile)) >= 5), roles(run.pidfile)
    return p


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupt_of_real_runner_stops_tree(run, sig):
    p = start_driver(run, "default", grace=5.0)
    p.send_signal(sig)
    out, _ = p.communicate(timeout=20)
    res = json.loads(out)
    assert res["interrupted"] and not res["timed_out"] and res["exit_code"] is None
    assert res["survivors"] == []
    assert [pid for pid in members(run.pidfile) if alive(pid)] == []


def test_second_sigint_exits_at_once_and_still_kills_tree(run):
    p = start_driver(run, "record", grace=60.0)  # members survive SIGTERM: the stop would take 60 s
    p.send_signal(signal.SIGINT)
    assert wait_for(lambda: len(roles(run.pidfile).get("TERM", [])) >= 5)  # the stop is under way
    p.send_signal(signal.SIGINT)
    p.communicate(timeout=10)  # far below the 60 s grace: the runner left at once
    assert p.returncode != 0  # KeyboardInterrupt escaped run_training, as intended
    assert wait_for(lambda: not any(alive(pid) for pid in members(run.pidfile)), timeout=5)


def test_live_line_on_stderr_and_silence_otherwise(run, capsys):
    res = launch(run, tree(run, "--children", "0", "--say", "hello live\n"), budget=1.3, grace=0.5, live=True)
    err = capsys.readouterr().err
    assert res.timed_out
    assert "/1.3s | hello live" in err and err.endswith("\r\x1b[K") and "\n" not in err
    res = launch(run, tree(run, "--children", "0", "--say", "quiet\n"), budget=0.5, grace=0.5, live=False)
    assert capsys.readouterr() == ("", "") and res.last_line == "quiet"


def test_last_line_reads_only_the_tail(tmp_path):
    log = tmp_path / "big.log"
    log.write_bytes(b"x" * 10_000_000 + b"\nreal last\x1b[0m line\n\n  \r\n")
    assert last_line(log) == "real last line"
    assert last_line(tmp_path / "missing.log") == ""


ORPHAN_SWEEP = """
import json, os, subprocess, sys, time
from arunner.procs import watchdog
out = {"subreaper": watchdog.become_subreaper(), "childless_at_start": watchdog._childless()}
code = "import os, time\\nif os.fork() == 0:\\n    os.setsid(); os.close(1); time.sleep(60)\\nelse:\\n    print(os.getpid())"
child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
child.communicate(timeout=20)  # the child exited: its setsid'd child is an orphan, ours as the subreaper
out["childless_with_orphan"] = watchdog._childless()
out["swept"] = [d["pid"] for d in watchdog.sweep_orphans(grace_s=5.0)]
out["childless_after"] = watchdog._childless()
out["swept_again"] = watchdog.sweep_orphans()
print(json.dumps(out))
"""


def test_sweep_orphans_reads_the_child_list_and_still_finds_an_orphan():
    """One thread, no child: nothing to sweep (no scan of every process); a double-forked orphan is
    a child again (the runner is its subreaper) and is found and stopped."""
    env = {**os.environ, "PYTHONPATH": str(Path(watchdog.__file__).resolve().parents[2])}
    done = subprocess.run([PY, "-c", ORPHAN_SWEEP], capture_output=True, text=True, env=env, timeout=60)
    out = json.loads(done.stdout)
    assert out["subreaper"] and out["childless_at_start"]
    assert not out["childless_with_orphan"] and len(out["swept"]) == 1
    assert out["childless_after"] and out["swept_again"] == []
    assert not alive(out["swept"][0])


LEFTOVERS = """
import json, sys
from pathlib import Path
from arunner.procs import launch, watchdog
scans = []
table = watchdog._table
watchdog._table = lambda: scans.append(1) or table()
watchdog.become_subreaper()
log, out = Path(sys.argv[1]), {}
def run(code):
    res = launch.run_training([sys.executable, "-c", code], Path.cwd(), {}, log, 20, 2.0, ("AR_TEST_TOKEN", "t"), False)
    return {"scans": len(scans), "leaked": [p["pid"] for p in res.leaked], "exit": res.exit_code}
out["alone"] = run("print('done')")
scans.clear()
out["daemon"] = run("import os, time\\nif os.fork() == 0:\\n    os.setsid(); time.sleep(60)")
print(json.dumps(out))
"""


def test_a_command_that_exited_alone_costs_no_scan_and_one_that_left_a_daemon_is_still_swept(tmp_path):
    """The runner as subreaper with the exited command its only child: nothing of the run is left, so no
    scan of every process; a setsid'd daemon it left is a child of ours again: scanned, found, stopped."""
    env = {**os.environ, "PYTHONPATH": str(Path(watchdog.__file__).resolve().parents[2])}
    cmd = [PY, "-c", LEFTOVERS, str(tmp_path / "run.log")]
    out = json.loads(subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60, check=True).stdout)
    assert out["alone"] == {"scans": 0, "leaked": [], "exit": 0}
    assert out["daemon"]["scans"] > 0 and out["daemon"]["exit"] == 0 and len(out["daemon"]["leaked"]) == 1
    assert not alive(out["daemon"]["leaked"][0])
