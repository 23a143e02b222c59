"""Benchmark: detection on a 50,000-file repository, alone and inside `copier copy --defaults` (SPEC §9: <= 3 s).

Builds (once, cached under /tmp) a synthetic host project: a real entry point
(mypkg/train.py, argparse + wandb), a few deep package trees of small Python
files (some named train_*.py, to exercise candidate ranking), a big data/
folder, wandb runs with media, Hydra-style outputs/, node_modules and a
virtualenv. Then, interleaved: detection alone in this process (a fresh
analysis each time, OS cache warm), and `copier copy --trust --defaults`
end to end into .autoresearch (removed after each). For reference the same
copier command runs on a tiny copy of examples/tinyproj, so the part due to
the repository's size is visible. Medians reported.

    /work/venv/bin/python bench/bench_detection.py [--repeats 5] [--copier-repeats 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "extensions"), str(REPO / "template" / "<<slug>>")]  # as preflight.py sets it

from direction import ar_direction  # noqa: E402

import detection  # noqa: E402

BIN = Path(sys.executable).parent
BIG = Path("/tmp/ar-bench-detection-50k")
SMALL = Path("/tmp/ar-bench-detection-tiny")
VERSION = "v1"  # bump to rebuild the cached repository
TARGET_FILES = 50_000

ENTRY = '''"""Synthetic entry point."""
import argparse
import torch
import wandb
from mypkg.models.core import Net


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--out_dir", default="checkpoints")
    p.add_argument("--resume_from_checkpoint", default=None)
    args = p.parse_args()
    run = wandb.init(project="bench")
    print(f"val_loss={0.5}")
    torch.save({}, f"{args.out_dir}/model.pt")


if __name__ == "__main__":
    main()
'''


def build(root: Path) -> int:
    """Create the synthetic repository; returns its file count."""
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    count = 0

    def write(rel: str, text: str = "") -> None:
        nonlocal count
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        count += 1

    write("pyproject.toml", '[project]\nname = "bench-host"\nversion = "0"\n')
    write("CLAUDE.md", "# bench\n\n## Training command\n\n```bash\npython -m mypkg.train --lr 3e-4\n```\n")
    write("mypkg/__init__.py")
    write("mypkg/train.py", ENTRY)
    write("mypkg/models/__init__.py")
    write("mypkg/models/core.py", "import torch\n\n\nclass Net(torch.nn.Module):\n    pass\n")
    # Deep package trees: 4 trees x 10 x 10 x 5 folders x 10 files = 20,000 + __init__ files.
    for tree in ("mypkg/ops", "mypkg/layers", "third_party/lib", "tools/gen"):
        for a in range(10):
            for b in range(10):
                for c in range(5):
                    folder = f"{tree}/a{a}/b{b}/c{c}"
                    write(f"{folder}/__init__.py")
                    for i in range(9):
                        name = f"train_step{i}.py" if (a, b, c, i) == (0, 0, 0, 0) else f"mod{i}.py"
                        write(f"{folder}/{name}", f"def f{i}(x):\n    return x + {i}\n")
    for run in range(40):  # wandb runs with media
        base = f"wandb/run-20260101_{run:06d}-r{run:05d}/files"
        write(f"{base}/config.yaml", "lr:\n  value: 0.0003\nbatch_size:\n  value: 64\n_wandb:\n  value: {}\n")
        write(f"{base}/wandb-summary.json", '{"val_loss": 0.5, "_step": 10}')
        write(f"{base}/wandb-metadata.json", '{"codePath": "mypkg/train.py", "args": ["--lr", "3e-4"]}')
        for m in range(20):
            write(f"{base}/media/images/img_{m}.png", "x")
    for run in range(100):  # Hydra-style outputs
        for name in ("a.log", ".hydra/config.yaml", "checkpoints/last.pt", "tb/events.out.tfevents.1.host"):
            write(f"outputs/2026-01-01/{run:02d}-00-00/{name}", "x")
    for i in range(1000):
        write(f"node_modules/pkg{i % 50}/index{i}.js", "x")
    write(".venv/pyvenv.cfg", "home = /usr/bin\n")
    for i in range(1000):
        write(f".venv/lib/python3.11/site-packages/p{i % 40}/m{i}.py", "x = 1\n")
    i = 0
    while count < TARGET_FILES:  # the big data folder fills up the rest
        write(f"data/shard{i // 1000:03d}/sample_{i:06d}.txt", "0 1 2\n")
        i += 1
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run(["git", "add", "-A"], cwd=root, check=True)
    subprocess.run(
        ["git", "-c", "user.name=bench", "-c", "user.email=b@example.com", "commit", "-qm", "bench"],
        cwd=root,
        check=True,
    )
    (root / ".bench-version").write_text(VERSION)
    return count


def ensure(root: Path, builder) -> None:
    marker = root / ".bench-version"
    if not (marker.exists() and marker.read_text() == VERSION):
        print(f"building {root} ...", flush=True)
        builder(root)


def build_small(root: Path) -> None:
    if root.exists():
        shutil.rmtree(root)
    shutil.copytree(REPO / "examples" / "tinyproj", root, ignore=shutil.ignore_patterns("__pycache__", "checkpoints"))
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run(["git", "add", "-A"], cwd=root, check=True)
    subprocess.run(
        ["git", "-c", "user.name=bench", "-c", "user.email=b@example.com", "commit", "-qm", "tiny"],
        cwd=root,
        check=True,
    )
    (root / ".bench-version").write_text(VERSION)


def time_detection(root: Path) -> tuple[float, dict]:
    t0 = time.perf_counter()
    found = detection.analyse(root, ar_direction)
    return time.perf_counter() - t0, found.stats


def time_copier(root: Path) -> float:
    shutil.rmtree(root / ".autoresearch", ignore_errors=True)
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    cmd = [
        str(BIN / "copier"),
        "copy",
        "--trust",
        "--defaults",
        "--quiet",
        "--vcs-ref",
        "HEAD",
        "--data",
        "slug=261125-bench",
        str(REPO),
        ".autoresearch",
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"copier failed in {root}:\n{proc.stderr[-2000:]}")
    shutil.rmtree(root / ".autoresearch", ignore_errors=True)
    return wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--copier-repeats", type=int, default=3)
    opts = ap.parse_args()
    ensure(BIG, build)
    ensure(SMALL, build_small)
    files = sum(len(f) for _, _, f in os.walk(BIG)) - sum(len(f) for _, _, f in os.walk(BIG / ".git"))
    print(f"repository: {BIG} ({files} files outside .git)")

    detect_s, copier_big, copier_small, stats = [], [], [], {}
    for i in range(max(opts.repeats, opts.copier_repeats)):
        if i < opts.repeats:
            seconds, stats = time_detection(BIG)
            detect_s.append(seconds)
        if i < opts.copier_repeats:
            copier_big.append(time_copier(BIG))
            copier_small.append(time_copier(SMALL))

    def ms(values: list[float]) -> str:
        return f"median {statistics.median(values) * 1000:.0f} ms (min {min(values) * 1000:.0f}, n={len(values)})"

    print(f"detection alone, 50k files:          {ms(detect_s)}; {stats}")
    print(f"copier copy --defaults, 50k files:   {ms(copier_big)}  (SPEC §9: <= 3000 ms)")
    print(f"copier copy --defaults, tinyproj:    {ms(copier_small)}")


if __name__ == "__main__":
    main()
