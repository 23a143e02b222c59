"""Benchmark of waves (arunner.wave) and of the slurm launcher (arunner.slurm).

1. 8 fake candidates of 2 s on 8 slots: wave wall time (target: <= 2 s + 0.5 s).
2. 16 fake candidates of 2 s on 8 slots: wave wall time, and its ratio to (1) (target: about 2).
3. The real `ar.py run` of a wave of 8 candidates (the minimal host sleeping 2 s) on 8 slots.
4. Local Slurm (started here, as tests/slurm_cluster.py does; needs root): per job,
   submit-to-start (sbatch called -> the job's process starts) and end-to-recorded
   (the job's process ends -> run_job returns its result), for a job that sleeps 0.5 s.

usage: .venv/bin/python bench/bench_wave.py [--repeats N] [--jobs M] [--no-slurm]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "template" / "<<slug>>"))
sys.path.insert(0, str(REPO / "tests"))

from arunner.procs import slot_pool, slots, slurm  # noqa: E402

HOST = REPO / "tests" / "procs" / "slot_host.py"
PY = sys.executable


def candidates(out: Path, count: int, seconds: float) -> list[slot_pool.SlotJob]:
    return [
        slot_pool.SlotJob(
            name=f"c{i}",
            cmd=[PY, str(HOST), str(out / f"c{i}.rec"), str(seconds)],
            cwd=out,
            env=dict(os.environ),
            log_path=out / f"c{i}.log",
            budget_s=60,
            grace_s=2,
            marker=("AR_BENCH_RUN", uuid.uuid4().hex),
        )
        for i in range(count)
    ]


def time_wave(count: int, seconds: float, slot_count: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        os.environ[slots.LOCK_DIR_ENV] = str(out / "locks")
        pool = slots.SlotPool(slots.make_slots([str(i) for i in range(slot_count)], 1))
        cands = candidates(out, count, seconds)
        t0 = time.monotonic()
        outcomes = slot_pool.run_jobs(cands, pool)
        wall = time.monotonic() - t0
        assert all(o.result and o.result.exit_code == 0 for o in outcomes), outcomes
        return wall


def bench_slurm(jobs: int) -> None:
    from slurm_cluster import local_slurm, why_unavailable

    reason = why_unavailable()
    if reason:
        print(f"slurm: skipped ({reason})")
        return
    with tempfile.TemporaryDirectory() as tmp, local_slurm(Path(tmp) / "slurm"):
        starts, ends = [], []
        for i in range(jobs):
            run = Path(tmp) / f"r{i}"
            run.mkdir()
            cmd = [PY, str(HOST), str(run / "rec"), "0.5"]
            t_submit = time.time()
            result = slurm.run_job(cmd, run, dict(os.environ), run / "run.log", 60, 2, ("AR_BENCH_RUN", str(i)), False)
            t_recorded = time.time()
            assert result.exit_code == 0, result
            start, end = (run / "rec").read_text().split()[-2:]
            starts.append(float(start) - t_submit)
            ends.append(t_recorded - float(end))
        print(
            f"slurm ({jobs} jobs): submit-to-start median {statistics.median(starts):.2f} s "
            f"(min {min(starts):.2f}, max {max(starts):.2f}); end-to-recorded median "
            f"{statistics.median(ends):.2f} s (min {min(ends):.2f}, max {max(ends):.2f})"
        )


def time_ar_wave(count: int, seconds: float, slot_count: int, repeats: int) -> list[float]:
    """The real `ar.py propose` x count then `ar.py run` on a rendered minimal experiment: the run's wall time."""
    import shutil
    import subprocess

    from conftest import answers, make_host, render

    walls = []
    with tempfile.TemporaryDirectory() as tmp:
        os.environ[slots.LOCK_DIR_ENV] = str(Path(tmp) / "locks")
        host = make_host("minimal", Path(tmp) / "proj")
        render(host, answers(cli_args=f"{{lr: 0.1, sleep: {seconds}}}", slug="261202-bench"))
        expr = host / ".autoresearch" / "261202-bench"
        base = (expr / "train.py").read_text()

        def ar(*args):
            subprocess.run([PY, str(expr / "ar.py"), *args], cwd=host, check=True, capture_output=True)

        ar("session", "--devices", ",".join(str(i) for i in range(slot_count)))
        for r in range(repeats):
            for i in range(count):
                lr = 0.2 + 0.01 * (r * count + i)  # worse each time: one promotion, in the first wave only
                (expr / "train.py").write_text(base.replace("'lr': 0.1,", f"'lr': {lr:.3f},"))
                ar("propose")
            t0 = time.monotonic()
            ar("run")
            walls.append(time.monotonic() - t0)
        shutil.rmtree(host / ".autoresearch", ignore_errors=True)
    return walls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=5)
    parser.add_argument("--no-slurm", action="store_true")
    args = parser.parse_args()
    eight = [time_wave(8, 2.0, 8) for _ in range(args.repeats)]
    sixteen = [time_wave(16, 2.0, 8) for _ in range(args.repeats)]
    m8, m16 = statistics.median(eight), statistics.median(sixteen)
    print(f"wave 8 x 2 s on 8 slots: median {m8:.2f} s (target <= 2.5 s) {'ok' if m8 <= 2.5 else 'OVER'}")
    print(f"wave 16 x 2 s on 8 slots: median {m16:.2f} s = {m16 / m8:.2f} x the 8-wave (target about 2)")
    real = time_ar_wave(8, 2.0, 8, args.repeats)
    print(f"ar.py run, wave of 8 x 2 s on 8 slots (rendered experiment): median {statistics.median(real):.2f} s")
    if not args.no_slurm:
        bench_slurm(args.jobs)


if __name__ == "__main__":
    main()
