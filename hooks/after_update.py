"""Copier migration (after every update): settle what the merge left in machine-read files.

Copier merges experiment.json three-way like any file and exits 0 on conflicts; the runner
cannot read a config with conflict markers. The real render kept a copy of what it generated
from the answers (post_render.py); this puts it back when the merge left the file conflicted or
unreadable, and takes bytecode an older .gitignore let through out of git's index. Conflicts in
other files are reported by `ar.py upgrade` and block `ar.py run`.

usage: after_update.py ANSWERS_FILE   (run inside the destination, .autoresearch/)
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

sys.dont_write_bytecode = True  # never leave __pycache__ in the template checkout
TEMPLATE_ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(TEMPLATE_ROOT / "extensions"), str(TEMPLATE_ROOT / "template" / "<<slug>>")]
from hostpaths import is_scratch  # noqa: E402

from arunner.commands.upgrades import restore_generated, untrack_bytecode  # noqa: E402


def main(answers_file: str) -> int:
    dst = Path.cwd()
    expr = (dst / answers_file).parent
    if is_scratch(dst.absolute()) or not (expr / "experiment.json").exists():
        return 0
    top = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=dst, capture_output=True, text=True)
    root = Path(top.stdout.strip()) if top.returncode == 0 else dst.parent
    for line in [*restore_generated(expr, root), *untrack_bytecode(expr, root)]:
        print(f"{expr.name}: {line}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else ""))
