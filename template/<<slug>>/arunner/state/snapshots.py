"""train.py's versions: the snapshot each run keeps, and the restore after a non-advance.

After a non-advance train.py becomes the best run's snapshot, with the FROZEN
blocks of the current template version: `copier update` refreshes the rendered
baseline (`.ar-baseline.py`), and a restore splices its frozen blocks in, so an
upgrade is never undone by a revert. Before any run has advanced there is
nothing better to go back to, and train.py stays as the user wrote it (it often
holds their own wiring of the host's entry point).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from ..core.errors import UserError
from ..core.fsutil import atomic_write_bytes
from ..core.layout import BASELINE, TRAIN_PY

CONFLICT_MARK = b"\n<<<<<<< "


def has_conflict_markers(source: bytes) -> bool:
    return CONFLICT_MARK in b"\n" + source


RUN_NOTE_RE = re.compile(r"^RUN_NOTE\s*(?::[^=]*)?=(?!=)", re.M)  # a top-level assignment starts a line
NOTE_MAX_LINES = 20  # a note's value may span lines (parentheses, triple quotes): look this far


def _assigned_constant(lines: list[str]):
    """The constant assigned by the statement starting at lines[0], or None."""
    for end in range(1, min(len(lines), NOTE_MAX_LINES) + 1):
        try:
            tree = ast.parse("\n".join(lines[:end]))
        except SyntaxError:
            continue
        node = tree.body[0] if tree.body else None
        value = getattr(node, "value", None)
        return value.value if isinstance(value, ast.Constant) else None
    return None


def read_run_note(source: str) -> str:
    """RUN_NOTE of train.py: the value of its LAST top-level assignment, as Python would bind it.

    Only those statements are parsed (never the whole file, never executed), so a
    syntax error elsewhere in train.py does not lose the note.
    """
    starts = [m.start() for m in RUN_NOTE_RE.finditer(source)]
    if not starts:
        return ""
    value = _assigned_constant(source[starts[-1] :].splitlines())
    return "" if value is None else str(value)


def best_snapshot(expr_dir: Path, best: dict | None) -> Path:
    if best and best.get("snapshot"):
        return expr_dir / best["snapshot"]
    return expr_dir / BASELINE


FROZEN_RE = re.compile(rb"^# ---- FROZEN:.*?^# ---- end FROZEN[^\n]*\n", re.M | re.S)


def restore_target(expr_dir: Path, best: dict | None) -> bytes:
    """What train.py must be after a non-advance: the best snapshot (or the baseline), with the
    FROZEN blocks of the current template version (`copier update` refreshes .ar-baseline.py)."""
    source = best_snapshot(expr_dir, best)
    try:
        wanted = source.read_bytes()
        baseline = (expr_dir / BASELINE).read_bytes()
    except FileNotFoundError as exc:
        raise UserError(
            f"cannot restore train.py: {exc.filename} is missing; "
            "re-render it with copier update (or copy a good train.py there)"
        ) from None
    old_blocks, new_blocks = FROZEN_RE.findall(wanted), FROZEN_RE.findall(baseline)
    if len(old_blocks) == len(new_blocks) and old_blocks != new_blocks:
        pieces = iter(new_blocks)
        wanted = FROZEN_RE.sub(lambda _: next(pieces), wanted)  # a callable's result goes in verbatim
    return wanted


def restore_train_py(expr_dir: Path, best: dict | None) -> bool:
    """Put train.py back to the best version (see restore_target). True when it changed.

    With no best yet, train.py is left as it is (see the module docstring).
    """
    if not best:
        return False
    target = expr_dir / TRAIN_PY
    wanted = restore_target(expr_dir, best)
    if target.exists() and target.read_bytes() == wanted:
        return False
    atomic_write_bytes(target, wanted)
    return True
