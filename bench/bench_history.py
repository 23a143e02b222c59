"""Benchmark: `ar.py history` and `ar.py report --html` on an experiment of 10,000 runs (targets 0.3 s, 3 s).

The experiment is the minimal fixture host rendered with copier; its first runs are real
`ar.py run`s (REAL_RUNS), the rest are synthesised with the runner's own record writers
(steps.allocate for the folder and train.py, changes.record, ledger.append, ledger.write_result,
decision.json for advances), so the files are the ones a real loop leaves: a varied mix of
reverts, advances (one in 40), crashes, baseline-style repeats and sandbox patches. It is built once
into bench/.cache/ and reused.

Both commands are timed as a user runs them (a fresh `python ar.py ...` process each time,
PYTHONDONTWRITEBYTECODE unset so bytecode caches work as in a user's shell), interleaved,
after one warm-up each; medians reported.

    /work/main/.venv/bin/python bench/bench_history.py [--runs 10000] [--repeats 7]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "template" / "<<slug>>"))

REAL_RUNS = 3
TARGETS = {"history": 0.3, "report --html": 3.0}


def build(dest: Path, runs: int) -> Path:
    """The rendered experiment with `runs` recorded runs (see the module docstring)."""
    from conftest import MINIMAL_ANSWERS, make_host, render

    from arunner.core.config import Config
    from arunner.core.fsutil import atomic_write_json
    from arunner.loop.steps import allocate
    from arunner.state import changes, ledger
    from arunner.state.record import best_record, primary_field, result_record

    host = make_host("minimal", dest)
    render(host, MINIMAL_ANSWERS)
    expr = host / ".autoresearch" / MINIMAL_ANSWERS["slug"]
    env = {**os.environ, "AR_REPEATS": "1"}
    train = expr / "train.py"
    base = train.read_text()
    for i in range(REAL_RUNS):
        train.write_text(base.replace("'lr': 0.1", f"'lr': {0.1 - 0.01 * i}").replace('"baseline"', f'"real {i}"'))
        subprocess.run([sys.executable, str(expr / "ar.py"), "run"], cwd=host, env=env, check=True, capture_output=True)
    cfg = Config.load(expr)
    rng = random.Random(0)
    os.fsync = lambda fd: None  # building only: durability of the synthesised records is not what is measured
    best_id, best_value = "r0003", 0.03
    best = {"run_id": best_id, "primary": {"value": best_value}}
    knobs = ["lr", "wd", "warmup", "dropout", "batch_size", "hidden"]
    for n in range(REAL_RUNS + 1, runs + 1):
        source = train.read_text()
        knob = rng.choice(knobs)
        note = f"try {knob} #{n}"
        extra = f"\n{knob.upper()}_{n % 17} = {rng.random():.4f}\n" if n % 3 == 0 else ""
        patched = source.replace("# Example:\n", f"# Example:\n{extra}", 1) if extra else source
        patched = patched.replace("RUN_NOTE = ", f"RUN_NOTE = {note!r}  # ", 1)
        run = allocate(cfg, patched.encode(), note)
        crash = rng.random() < 0.05
        value = None if crash else best_value + rng.gauss(0.01, 0.01)
        advance = not crash and value < best_value and n % 40 == 0
        result = result_record(
            run.run_id,
            started_at=run.started_at,
            status="crash" if crash else "ok",
            verdict="advance" if advance else "crash" if crash else "revert",
            primary=primary_field(cfg.primary_metric, cfg.primary_direction, value),
            log_path=str(run.run_dir / "run.log"),
            note=note + (" | RuntimeError: CUDA out of memory" if crash else ""),
            valid=not crash,
            improved_over_best=advance,
            previous_best_run_id=best_id,
            wall_seconds=1.0,
        )
        if advance:
            atomic_write_json(
                run.run_dir / "decision.json", {**result, **best_record(run.run_id, result["primary"], {})}
            )
        changes.record(expr, run.run_dir, result, best)
        ledger.append(expr / "results.tsv", result)
        ledger.write_result(run.run_dir, result)
        if advance:
            best_id, best_value = run.run_id, value
            best = {"run_id": best_id, "primary": {"value": best_value}}
            train.write_text(patched)
    return host


def timed(host: Path, expr: Path, args: list[str]) -> float:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, str(expr / "ar.py"), *args], cwd=host, env=env, check=True, capture_output=True)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--rebuild", action="store_true")
    args = parser.parse_args()
    cache = REPO / "bench" / ".cache" / f"history-{args.runs}"
    if args.rebuild or not (cache / "done").exists():
        shutil.rmtree(cache, ignore_errors=True)
        t0 = time.perf_counter()
        build(cache / "host", args.runs)
        (cache / "done").write_text("")
        print(f"built {args.runs} runs in {time.perf_counter() - t0:.0f}s")
    host = cache / "host"
    expr = next((host / ".autoresearch").iterdir())
    shutil.rmtree(expr / "arunner", ignore_errors=True)  # the runner under test: this checkout's
    shutil.copytree(REPO / "template" / "<<slug>>" / "arunner", expr / "arunner")
    commands = {"history": ["history"], "report --html": ["report", "--html"]}
    times = {name: [] for name in commands}
    for argv in commands.values():  # warm-up: bytecode caches written
        timed(host, expr, argv)
    for _ in range(args.repeats):
        for name, argv in commands.items():
            times[name].append(timed(host, expr, argv))
    size = (expr / "report.html").stat().st_size
    for name, values in times.items():
        med = statistics.median(values)
        print(
            f"{name:14s} median {med:.3f}s (min {min(values):.3f}, max {max(values):.3f}, n={len(values)}) "
            f"target <= {TARGETS[name]}s: {'ok' if med <= TARGETS[name] else 'OVER'}"
        )
    print(
        f"report.html {size / 1e6:.2f} MB; history lines: {len(subprocess.run([sys.executable, str(expr / 'ar.py'), 'history', '--last', '100000'], cwd=host, capture_output=True, text=True).stdout.splitlines())}"
    )


if __name__ == "__main__":
    main()
