"""Runner overhead per iteration (SPEC §9: <= 0.3 s median, also with 10,000 ledger rows).

overhead = wall of `python ar.py run` minus wall of the bare training command
(`python train.py` of the same experiment, same cwd), measured interleaved.

usage: python bench/bench_overhead.py [--repeats 15] [--integrity off|files]
(the integrity checks' own cost: the difference between a run with --integrity off and files)
"""

from __future__ import annotations

import argparse
import json
import os
import pty
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SLUG = "261125-bench"


def setup(root: Path) -> Path:
    host = root / "host"
    shutil.copytree(REPO / "tests" / "hosts" / "minimal", host)
    for args in (["init", "-q"], ["add", "-A"], ["-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "h"]):
        subprocess.run(["git", *args], cwd=host, check=True, capture_output=True)
    subprocess.run(
        [
            str(Path(sys.executable).parent / "copier"),
            "copy",
            "--trust",
            "--defaults",
            "--quiet",
            "--vcs-ref",
            "HEAD",
            "--data",
            "entry_main_module=minipkg.train",
            "--data",
            "cli_args={lr: 0.1}",
            "--data",
            "metric_backend=log",
            "--data",
            f"slug={SLUG}",
            str(REPO),
            ".autoresearch",
        ],
        cwd=host,
        check=True,
        capture_output=True,
        env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"},
    )
    return host


def fill_history(expr: Path, rows: int) -> None:
    """rows finished runs: a ledger row, a run folder and its result.json each."""
    lines = []
    for i in range(1, rows + 1):
        run_id = f"r{i:04d}"
        run_dir = expr / "runs" / run_id
        run_dir.mkdir(parents=True)
        (run_dir / "result.json").write_text(json.dumps({"run_id": run_id, "verdict": "revert"}))
        lines.append(f"{run_id}\t2026-11-25T00:00:00+00:00\t1.00\tok\trevert\teval/loss\t0.5\ttrue\tfalse\tfiller\n")
    with open(expr / "results.tsv", "a") as fh:
        fh.writelines(lines)


# The runner's modules are compiled once and cached, as on a user's machine: this sandbox
# sets PYTHONDONTWRITEBYTECODE, which would add ~40 ms of compiling to every run.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def timed(cmd: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, env=ENV)
    return time.perf_counter() - start


def measure(host: Path, repeats: int) -> tuple[float, float, float]:
    expr = host / ".autoresearch" / SLUG
    runner, bare = [], []
    for _ in range(repeats):
        bare.append(timed([sys.executable, str(expr / "train.py")], host))
        runner.append(timed([sys.executable, str(expr / "ar.py"), "run"], host))
    diffs = [r - b for r, b in zip(runner, bare)]
    return statistics.median(bare), statistics.median(runner), statistics.median(diffs)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--integrity", choices=("off", "files"), help="integrity mode of the runs (default: files)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        fresh = setup(Path(tmp) / "fresh")
        big = setup(Path(tmp) / "big")
        fill_history(big / ".autoresearch" / SLUG, 10_000)
        for host in (fresh, big) if args.integrity else ():
            expr = host / ".autoresearch" / SLUG
            master, terminal = pty.openpty()  # the integrity mode is a person's choice: typed at a terminal
            cmd = [sys.executable, str(expr / "ar.py"), "session", "--integrity", args.integrity]
            subprocess.run(cmd, stdin=terminal, stdout=terminal, check=True)
            os.close(terminal)
            os.close(master)
        print(
            f"{'ledger':>14} {'bare train':>11} {'ar.py run':>10} {'overhead':>9}  (medians, {args.repeats} interleaved)"
        )
        for label, host in (("empty", fresh), ("10,000 rows", big)):
            bare, run, over = measure(host, args.repeats)
            print(f"{label:>14} {bare * 1000:9.0f}ms {run * 1000:8.0f}ms {over * 1000:7.0f}ms")


if __name__ == "__main__":
    main()
