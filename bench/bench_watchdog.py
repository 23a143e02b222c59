"""Benchmark of the launcher and watchdog against SPEC section 9.

1. Stop latency: time from the deadline to run_training returning, for
   (a) torchrun with 2 gloo workers hanging after init and a setsid grandchild,
   (b) a tree.py tree whose members ignore SIGTERM (the worst case: grace + SIGKILL).
   SPEC: the whole tree gone within grace + 1 s of the deadline.
2. Overhead of run_training over a bare subprocess.run for `python -c pass`
   (median of interleaved repeats; part of SPEC's 0.3 s per-iteration budget).
3. Cost of one process-table scan (collect_tree) with the /proc reader and with psutil.

usage: /work/venv/bin/python bench/bench_watchdog.py [--repeats N] [--overhead-repeats M]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "template" / "<<slug>>"))
sys.path.insert(0, str(REPO / "tests" / "procs"))

from liveness import pid_alive as alive  # noqa: E402

from arunner.procs import watchdog  # noqa: E402
from arunner.procs.launch import run_training  # noqa: E402

PROCS = REPO / "tests" / "procs"
PY = sys.executable
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def pids_in(pidfile: Path) -> list[int]:
    if not pidfile.exists():
        return []
    return [int(line.split()[1]) for line in pidfile.read_text().splitlines() if not line.startswith("TERM")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_latency(make_cmd, expect: int, budget: float, grace: float) -> float | None:
    """Seconds from the deadline to run_training returning; checks the tree came up and died."""
    with tempfile.TemporaryDirectory() as tmp:
        pidfile, log = Path(tmp) / "pids", Path(tmp) / "run.log"
        marker = ("AR_BENCH_TOKEN", uuid.uuid4().hex)
        res = run_training(
            make_cmd(pidfile),
            cwd=PROCS,
            env=ENV,
            log_path=log,
            budget_s=budget,
            grace_s=grace,
            marker=marker,
            live=False,
        )
        returned = time.time()
        pids = pids_in(pidfile)
        left = [pid for pid in pids if alive(pid)]
        for pid in left:  # never leave anything behind, even when the check fails
            os.kill(pid, 9)
        if left or res.survivors or not res.timed_out:
            raise SystemExit(f"bad run: pids={pids} alive={left} survivors={res.survivors} timed_out={res.timed_out}")
        if len(pids) < expect:  # not up by the deadline (a loaded machine): not a valid sample
            print(f"  (tree not up by the deadline, sample dropped; log tail: {log.read_text()[-300:]!r})")
            return None
        return returned - (res.started_at + budget)


def samples(n: int, *args, **kw) -> list[float]:
    out: list[float] = []
    for _ in range(2 * n):
        if len(out) == n:
            break
        x = stop_latency(*args, **kw)
        if x is not None:
            out.append(x)
    return out


def torchrun_cmd(pidfile: Path) -> list[str]:
    return [
        PY,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "--master-addr",
        "127.0.0.1",
        "--master-port",
        str(free_port()),
        str(PROCS / "ddp_hang.py"),
        str(pidfile),
    ]


def stubborn_cmd(pidfile: Path) -> list[str]:
    return [PY, str(PROCS / "tree.py"), str(pidfile), "--children", "2", "--grandchild", "--term", "ignore"]


def overhead(repeats: int) -> tuple[float, float]:
    cmd = [PY, "-c", "pass"]
    bare, ours = [], []
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "run.log"
        for i in range(repeats):
            for which in (0, 1) if i % 2 else (1, 0):  # interleave, alternating the order
                t = time.perf_counter()
                if which == 0:
                    subprocess.run(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    bare.append(time.perf_counter() - t)
                else:
                    run_training(
                        cmd,
                        cwd=Path(tmp),
                        env=ENV,
                        log_path=log,
                        budget_s=60,
                        grace_s=5,
                        marker=("AR_BENCH_TOKEN", uuid.uuid4().hex),
                        live=False,
                    )
                    ours.append(time.perf_counter() - t)
    return statistics.median(bare), statistics.median(ours)


def scan_cost(use_proc: bool, repeats: int = 30) -> float:
    watchdog._USE_PROC = use_proc
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        watchdog.collect_tree(os.getpid(), ("AR_BENCH_TOKEN", "none"))
        times.append(time.perf_counter() - t)
    watchdog._USE_PROC = os.path.isdir("/proc/self")
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--overhead-repeats", type=int, default=21)
    a = ap.parse_args()
    nproc = sum(name.isdigit() for name in os.listdir("/proc"))
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus, {nproc} processes on the machine")

    grace = 3.0
    lat = samples(a.repeats, torchrun_cmd, 3, budget=12.0, grace=grace)
    print(
        f"torchrun 2 gloo workers + setsid grandchild, grace {grace:g}s: deadline -> return "
        f"median {statistics.median(lat):.3f}s (max {max(lat):.3f}s; SPEC <= {grace + 1:g}s) "
        f"runs: {' '.join(f'{x:.3f}' for x in lat)}"
    )
    grace = 1.0
    lat = samples(a.repeats, stubborn_cmd, 5, budget=1.0, grace=grace)
    print(
        f"5 processes ignoring SIGTERM, grace {grace:g}s: deadline -> return "
        f"median {statistics.median(lat):.3f}s (max {max(lat):.3f}s; SPEC <= {grace + 1:g}s)"
    )

    bare, ours = overhead(a.overhead_repeats)
    print(
        f"python -c pass: bare subprocess.run median {bare * 1000:.1f} ms, run_training median "
        f"{ours * 1000:.1f} ms, overhead {(ours - bare) * 1000:.1f} ms ({a.overhead_repeats} interleaved repeats)"
    )
    line = f"one collect_tree scan: /proc {scan_cost(True) * 1000:.2f} ms"
    if watchdog.psutil is not None:
        line += f", psutil {scan_cost(False) * 1000:.2f} ms"
    print(line + " (median of 30)")


if __name__ == "__main__":
    main()
