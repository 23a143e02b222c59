"""Benchmark: the cost of metric integrity.

1. The protected-file manifest check on a project with 10,000 source files and
   a 1 GB data file (written, not fallocated, so a sampled digest reads real
   blocks): target <= 30 ms when nothing moved. Cases: the usual manifest
   (prepare.py, the evaluation modules, the runner files, `data/*` with the
   1 GB file), the same after `touch` of the data file (only ctime/mtime moved),
   and a worst case protecting all 10,000 source files.
2. The defenses added per run against an agent that tries: the subreaper sweep
   (nothing to stop), the second file check after the evaluator, the checkpoint
   fingerprint of a 1 GB written file (sampled; taken twice per run: before the
   evaluator and at promotion), the runner's seals (results.tsv blocks of 1,000
   rows, best meta) and the static guard's data-read check.
3. The independent evaluator's overhead over the host's own evaluation: wall of
   `run_evaluator` (sealed interpreter + prepare.py + watchdog) minus the wall of
   a bare script that loads the same checkpoint and calls the same function.

Medians of interleaved repeats. The 1 GB file is deleted at the end.

    .venv/bin/python bench/bench_integrity.py [--repeats 21] [--dir /path/on/the/project/fs]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RUNNER = REPO / "template" / "<<slug>>"
sys.path.insert(0, str(RUNNER))
sys.path.insert(0, str(REPO / "extensions"))

from arunner.core import chain_hash, ledger_seal  # noqa: E402
from arunner.integrity import checks, data_guard, evaluate, protect  # noqa: E402
from arunner.procs import watchdog  # noqa: E402
from arunner.state import ledger  # noqa: E402
from detection.evaluation import propose_evaluate  # noqa: E402

MB = 1 << 20
SOURCE_FILES = 10_000
DATA_BYTES = 1024 * MB
BARE_EVAL = """import sys
import torch
from eval_host.evaluation import evaluate_model
from eval_host.model import Net
saved = torch.load(sys.argv[1], map_location="cpu", weights_only=False)
model = Net(hidden=saved["args"]["hidden"])
model.load_state_dict(saved["model"])
print(evaluate_model(model))
"""


def make_project(root: Path) -> Path:
    """eval_host plus 10,000 small modules and a 1 GB data file; returns the experiment folder."""
    shutil.copytree(REPO / "tests" / "hosts" / "eval_host", root, ignore=shutil.ignore_patterns("__pycache__"))
    for i in range(SOURCE_FILES):
        pkg = root / "src" / f"pkg{i // 100:03d}"
        pkg.mkdir(parents=True, exist_ok=True)
        (pkg / f"mod{i % 100:03d}.py").write_text(f"VALUE = {i}\n")
    data = root / "data"
    data.mkdir()
    block = os.urandom(8 * MB)
    with open(data / "train.bin", "wb") as fh:
        for _ in range(DATA_BYTES // len(block)):
            fh.write(block)
    (data / "val_split.txt").write_text("0 1 2 3\n")
    expr = root / ".autoresearch" / "261125-bench"
    expr.mkdir(parents=True)
    shutil.copytree(RUNNER / "arunner", expr / "arunner", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(RUNNER / "ar.py", expr / "ar.py")
    (expr / "experiment.json").write_text("{}\n")
    code, _ = propose_evaluate(root, "eval_host.train")
    body = "".join(f"    {line}\n" if line else "\n" for line in code.splitlines())
    (expr / "prepare.py").write_text(f'PRIMARY = {{"name": "val_loss"}}\n\n\ndef evaluate(checkpoint_path):\n{body}')
    (expr / "train.py").write_text("RUN_NOTE = 'bench'\n")
    return expr


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def bench_manifest(expr: Path, root: Path, repeats: int) -> None:
    globs = ["data/*"]
    t_record = timed(lambda: protect.record(expr, root, protect.default_paths(expr, root, globs)))
    files = len(protect.load(expr)["files"])
    clean = [timed(lambda: protect.check(expr, root)) for _ in range(repeats)]
    assert protect.check(expr, root).hashed == []
    touched = []
    for _ in range(repeats):
        os.utime(root / "data" / "train.bin")  # mtime moves: a change for large data, no read needed
        touched.append(timed(lambda: protect.check(expr, root)))
        protect.record(expr, root, protect.default_paths(expr, root, globs))
    st = os.stat(root / "data" / "train.bin")
    ctime_only = []
    for _ in range(repeats):
        os.utime(root / "data" / "train.bin", ns=(st.st_atime_ns, st.st_mtime_ns))  # only ctime moves
        ctime_only.append(timed(lambda: protect.check(expr, root)))  # sampled digest, stat written back
    protect.record(expr, root, protect.default_paths(expr, root, ["data/*", "src/**/*.py"]))
    everything = len(protect.load(expr)["files"])
    worst = [timed(lambda: protect.check(expr, root)) for _ in range(repeats)]
    ms = lambda xs: f"{statistics.median(xs) * 1000:.2f} ms"  # noqa: E731
    print(f"manifest: record {files} files (1 GB sampled) once: {t_record * 1000:.1f} ms")
    print(f"manifest: check, nothing moved, {files} files: median {ms(clean)} (target <= 30 ms)")
    print(f"manifest: check, 1 GB file's mtime moved (flagged without reading): median {ms(touched)}")
    print(f"manifest: check, 1 GB file's ctime only moved (sampled digest read): median {ms(ctime_only)}")
    print(f"manifest: check, nothing moved, all {everything} files protected: median {ms(worst)}")


LEDGER_ROWS = 1000


def bench_added(expr: Path, root: Path, repeats: int) -> None:
    """The per-run cost of the defenses against an agent that tries (see the module docstring)."""
    ms = lambda xs: f"{statistics.median(xs) * 1000:.2f} ms"  # noqa: E731
    protect.record(expr, root, protect.default_paths(expr, root, ["data/*"]))
    sweep = [timed(watchdog.sweep_orphans) for _ in range(repeats)]
    second = [timed(lambda: protect.check(expr, root)) for _ in range(repeats)]
    big = root / "data" / "train.bin"
    fingerprint = [timed(lambda: checks.checkpoint_fingerprint(big)) for _ in range(repeats)]
    tsv = expr / "results.tsv"
    ledger.ensure(tsv)
    row = {"run_id": "r0001", "started_at": "x", "wall_seconds": 1.0, "status": "ok", "verdict": "revert"}
    row.update(primary={"name": "val_loss", "value": 0.5}, valid=True, improved_over_best=False, note="bench")
    for i in range(LEDGER_ROWS):
        ledger.append(tsv, {**row, "run_id": f"r{i + 1:04d}"})
    chain_hash.seal_best(expr, {"run_id": "r0001", "primary": {"value": 0.5}})
    seals = [
        timed(
            lambda: (
                ledger_seal._known_stats.clear(),  # a full check each time, as after an edit by someone else
                ledger_seal._appended.clear(),
                ledger_seal.verify_ledger(expr, tsv),
                chain_hash.verify_best(expr, {"run_id": "r0001", "primary": {"value": 0.5}}, tsv),
            )
        )
        for _ in range(repeats)
    ]
    source = (REPO / "template" / "<<slug>>" / "train.py.jinja").read_text()
    data_names = data_guard.evaluation_data_names(expr / "prepare.py", root)
    guard = [
        timed(lambda: data_guard.guard_data_reads(source, data_names, ["data/val_split.txt"])) for _ in range(repeats)
    ]
    total = sum(statistics.median(x) for x in (sweep, second, fingerprint, fingerprint, seals, guard))
    print(
        f"added: subreaper sweep, nothing to stop: median {ms(sweep)} ({'subreaper' if watchdog.become_subreaper() else watchdog.subreaper_note})"
    )
    print(f"added: second file check after the evaluator: median {ms(second)}")
    print(f"added: checkpoint fingerprint, 1 GB written file (sampled): median {ms(fingerprint)} (x2 per run)")
    print(f"added: seals, results.tsv of {LEDGER_ROWS} rows + best meta: median {ms(seals)}")
    print(f"added: guard on the evaluation's data ({', '.join(data_names) or 'none'}): median {ms(guard)}")
    print(f"added: per run in all: {total * 1000:.1f} ms")


def bench_evaluator(expr: Path, root: Path, repeats: int) -> None:
    subprocess.run([sys.executable, "-m", "eval_host.train"], cwd=root, check=True, capture_output=True, env=os.environ)
    ckpt = root / "checkpoints" / "model.pt"
    bare, full, inner = [], [], []
    run_dir = root / "eval_runs"
    run_dir.mkdir()
    for _ in range(repeats):
        bare.append(
            timed(
                lambda: subprocess.run(
                    [sys.executable, "-c", BARE_EVAL, str(ckpt)], cwd=root, check=True, capture_output=True
                )
            )
        )
        result = evaluate.run_evaluator(expr, root, ckpt, run_dir, timeout_s=300)
        assert result.ok, result.error
        full.append(result.wall_s)
        inner.append(result.evaluate_s)
    med = statistics.median
    print(f"evaluator: bare host evaluation script median {med(bare):.3f} s, run_evaluator median {med(full):.3f} s")
    print(f"evaluator: overhead median {med(full) - med(bare):+.3f} s; evaluate() call alone median {med(inner):.3f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--eval-repeats", type=int, default=5)
    parser.add_argument("--dir", default=None, help="where to build the project (default: a temporary folder)")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="bench-integrity-", dir=args.dir))
    os.environ["XDG_STATE_HOME"] = str(base / "state")  # the seals' key: never the user's own
    try:
        root = base / "project"
        t0 = time.perf_counter()
        expr = make_project(root)
        print(f"built {SOURCE_FILES} files + 1 GB data in {time.perf_counter() - t0:.1f} s")
        bench_manifest(expr, root, args.repeats)
        bench_added(expr, root, args.repeats)
        (root / "data" / "train.bin").unlink()  # the evaluator part needs no data file
        bench_evaluator(expr, root, args.eval_repeats)
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
