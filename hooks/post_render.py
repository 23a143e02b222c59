"""Copier task: create the experiment's runtime state after a copy or update.

Runtime state (results.tsv, runs/, the baseline snapshot) is never a template
file: Copier would delete a dropped `_skip_if_exists` file on a later update.
`copier update` runs tasks in two scratch copies too; only the real
destination is touched.

usage: post_render.py SLUG   (Copier runs tasks inside the destination folder)
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.dont_write_bytecode = True  # never leave __pycache__ in the template checkout
TEMPLATE_ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(TEMPLATE_ROOT / "extensions"), str(TEMPLATE_ROOT / "template" / "<<slug>>")]
from hostpaths import is_scratch  # noqa: E402

from arunner.commands.upgrades import drop_bytecode, keep_rendered  # noqa: E402
from arunner.core.layout import BASELINE  # noqa: E402
from arunner.state.ledger import HEADER  # noqa: E402


def main(slug: str) -> int:
    dst = Path.cwd()
    if is_scratch(dst.absolute()):
        return 0
    expr = dst / slug
    if not (expr / "train.py").is_file():
        print(f"post_render: {expr}/train.py is missing; nothing to set up", file=sys.stderr)
        return 1
    (expr / "runs").mkdir(exist_ok=True)
    ledger = expr / "results.tsv"
    if not ledger.exists():
        ledger.write_text(HEADER, encoding="utf-8")
    # The fresh rendering of this template version. Copier runs tasks before it
    # merges the agent's edits back in, so this is the new baseline and the source
    # of the FROZEN blocks the runner splices into every restore.
    (expr / BASELINE).write_bytes((expr / "train.py").read_bytes())
    # experiment.json as rendered from the answers, before Copier merges anything into it: the
    # after-update step puts it back if the merge leaves it conflicted. Bytecode goes, so an
    # experiment that committed its __pycache__ before .gitignore said otherwise merges without it.
    keep_rendered(expr)
    drop_bytecode(expr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
