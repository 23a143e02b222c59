"""The README's main job: scaffold an experiment into the bundled example project and loop.

Copies examples/tinyproj to a scratch git repository, runs `copier copy` with
--data answers (what the skill does), then plays the agent for a few real
iterations: the baseline, a better learning rate, a crashing edit (and its
folded traceback). Ends with `ar.py status --compact`. Commands are printed as
an agent types them from the project root.

usage: python examples/run_example.py [WORKDIR]
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SLUG = "261125-tinyproj-lr"


def sh(cmd: list[str], cwd: Path, echo: bool = True) -> str:
    if echo:  # as typed from the project root: `python` is this interpreter
        print(f"$ {' '.join(['python', *cmd[1:]] if cmd[0] == sys.executable else cmd)}", flush=True)
    proc = subprocess.run(cmd, cwd=cwd, text=True, capture_output=True)
    out = (proc.stdout + proc.stderr).strip()
    if echo and out:
        print(out, flush=True)
    if proc.returncode != 0:
        raise SystemExit(f"command failed ({proc.returncode}): {' '.join(cmd)}")
    return out


def edit(train: Path, old: str, new: str, note: str) -> None:
    text = train.read_text()
    text = re.sub(r"^RUN_NOTE = .*$", f'RUN_NOTE = "{note}"', text.replace(old, new, 1), count=1, flags=re.M)
    train.write_text(text)
    print(f"# agent: {note}", flush=True)


def main() -> None:
    work = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="ar-example-")) / "tinyproj"
    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(
        REPO / "examples" / "tinyproj",
        work,
        ignore=shutil.ignore_patterns("__pycache__", "checkpoints", ".autoresearch"),
    )
    for args in (
        ["init", "-q"],
        ["add", "-A"],
        ["-c", "user.name=example", "-c", "user.email=ex@example.com", "commit", "-qm", "tinyproj"],
    ):
        sh(["git", *args], work, echo=False)
    print(f"# host project: {work}")
    sh(
        [
            str(BIN / "copier"),
            "copy",
            "--trust",
            "--defaults",
            "--quiet",
            "--vcs-ref",
            "HEAD",
            "--data",
            "entry_pattern=argparse-cli",
            "--data",
            "entry_main_module=tinyproj.train",
            "--data",
            "cli_args={lr: 3e-3, steps: 300, hidden: 32}",
            "--data",
            "metric_backend=log",
            "--data",
            "primary_metric=val_loss",
            "--data",
            "checkpoint_glob=",
            "--data",
            "goal=lower val_loss of the tiny next-token model",
            "--data",
            "seconds=60",
            "--data",
            f"slug={SLUG}",
            str(REPO),
            ".autoresearch",
        ],
        work,
    )
    expr = work / ".autoresearch" / SLUG
    ar = [sys.executable, str(expr.relative_to(work) / "ar.py")]
    sh([*ar, "session", "--max-runs", "20", "--plateau", "8", "--seconds", "30"], work)
    sh([*ar, "run"], work)
    edit(expr / "train.py", "'lr': 0.003,", "'lr': 0.02,", "raise lr to 0.02")
    sh([*ar, "run"], work)
    edit(
        expr / "train.py",
        "# Example:",
        "import tinyproj.train as t\nt.TinyMLP = None  # breaks model creation\n# Example:",
        "try a broken patch",
    )
    crashed = sh([*ar, "run"], work).split()[0]  # the run id opens the first line
    sh([*ar, "tail", "--run", crashed], work)
    sh([*ar, "status", "--compact"], work)
    print(f"# experiment folder: {expr}")


if __name__ == "__main__":
    main()
