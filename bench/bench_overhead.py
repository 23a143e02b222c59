"""Runner overhead per iteration (SPEC §9: <= 0.3 s median, also with 10,000 ledger rows).

overhead = wall of `python ar.py run` minus wall of the bare training command
(`python train.py` of the same experiment, same cwd), measured interleaved with the entry
floor (`ar.py --help`: the interpreter and the runner's imports, nothing else) and
`status --compact`. Each experiment gets one untimed run first (a summary rebuilt once,
bytecode compiled once, as on a user's machine after the first run).

usage: python bench/bench_overhead.py [--repeats 15] [--integrity off|files] [--compare OTHER_CHECKOUT]
(--compare: the same measurements of another checkout's runner, interleaved with this one's;
`over --help` is the overhead beyond the entry floor; `cpu over --help` the same in CPU time,
user + sys, which other load on a shared machine barely moves)
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


def setup(root: Path, repo: Path = REPO) -> Path:
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
            str(repo),
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


def timed(cmd: list[str], cwd: Path, cpu: list | None = None) -> float:
    """Wall seconds of cmd; its CPU seconds (user + sys, its waited-for children included) go to `cpu`."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"{' '.join(cmd)} failed (wait status {status}) in {cwd}")
    if cpu is not None:
        cpu.append(usage.ru_utime + usage.ru_stime)
    return wall


def measure(hosts: dict[str, Path], repeats: int) -> dict:
    """{label: medians} for every experiment, each command interleaved across all of them."""
    ars = {label: [sys.executable, str(host / ".autoresearch" / SLUG / "ar.py")] for label, host in hosts.items()}
    for label, host in hosts.items():
        timed([*ars[label], "run"], host)  # untimed: compiles the bytecode, builds the ledger summary once
    times = {label: {"help": [], "bare": [], "run": [], "status": []} for label in hosts}
    cpus = {label: {"help": [], "bare": [], "run": []} for label in hosts}
    for _ in range(repeats):
        for label, host in hosts.items():
            ar, t, c = ars[label], times[label], cpus[label]
            t["help"].append(timed([*ar, "--help"], host, c["help"]))
            t["bare"].append(timed([sys.executable, str(host / ".autoresearch" / SLUG / "train.py")], host, c["bare"]))
            t["run"].append(timed([*ar, "run"], host, c["run"]))
            t["status"].append(timed([*ar, "status", "--compact"], host))
    out = {}
    for label, t in times.items():
        c = cpus[label]
        out[label] = {k: statistics.median(v) for k, v in t.items()}
        out[label]["over"] = statistics.median(r - b for r, b in zip(t["run"], t["bare"]))
        out[label]["over_floor"] = statistics.median(r - b - h for r, b, h in zip(t["run"], t["bare"], t["help"]))
        # the same in CPU time: what the runner itself computes, barely moved by other load on the machine
        out[label]["cpu_floor"] = statistics.median(r - b - h for r, b, h in zip(c["run"], c["bare"], c["help"]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--integrity", choices=("off", "files"), help="integrity mode of the runs (default: files)")
    parser.add_argument("--compare", type=Path, metavar="REPO", help="another checkout, measured side by side")
    args = parser.parse_args()
    repos = {"this": REPO, **({"other": args.compare.resolve()} if args.compare else {})}
    with tempfile.TemporaryDirectory() as tmp:
        hosts = {}
        for name, repo in repos.items():
            hosts[f"{name} empty"] = setup(Path(tmp) / name / "fresh", repo)
            hosts[f"{name} 10k"] = setup(Path(tmp) / name / "big", repo)
            fill_history(hosts[f"{name} 10k"] / ".autoresearch" / SLUG, 10_000)
        for host in hosts.values() if args.integrity else ():
            expr = host / ".autoresearch" / SLUG
            master, terminal = pty.openpty()  # the integrity mode is a person's choice: typed at a terminal
            cmd = [sys.executable, str(expr / "ar.py"), "session", "--integrity", args.integrity]
            subprocess.run(cmd, stdin=terminal, stdout=terminal, check=True)
            os.close(terminal)
            os.close(master)
        print(
            f"{'runner, ledger':>16} {'--help':>7} {'bare train':>11} {'ar.py run':>10} {'overhead':>9}"
            f" {'over --help':>12} {'status -c':>10} {'cpu over --help':>16}  (medians, {args.repeats} interleaved)"
        )
        for label, m in measure(hosts, args.repeats).items():
            m = {k: v * 1000 for k, v in m.items()}
            print(
                f"{label:>16} {m['help']:5.0f}ms {m['bare']:9.0f}ms {m['run']:8.0f}ms {m['over']:7.0f}ms"
                f" {m['over_floor']:10.0f}ms {m['status']:8.0f}ms {m['cpu_floor']:14.0f}ms"
            )


if __name__ == "__main__":
    main()
