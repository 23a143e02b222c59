"""train.py's versions: the snapshot each run keeps, and the restore after a non-advance.

After any non-advance train.py becomes the best run's snapshot (before any best:
the rendered baseline, `.ar-baseline.py`), with the FROZEN blocks of the current
template version: `copier update` refreshes the baseline, and a restore splices
its frozen blocks in, so an upgrade is never undone by a revert.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from .errors import UserError
from .fsutil import atomic_write_bytes

BASELINE = ".ar-baseline.py"
CONFLICT_MARK = b"\n<<<<<<< "


def has_conflict_markers(source: bytes) -> bool:
    return CONFLICT_MARK in b"\n" + source


def read_run_note(source: str) -> str:
    """RUN_NOTE from train.py, read with ast (the agent's file is never executed here)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return ""
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "RUN_NOTE" for t in node.targets):
            if isinstance(node.value, ast.Constant):
                return str(node.value.value)
    return ""


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
        wanted = FROZEN_RE.sub(lambda _: next(pieces).replace(b"\\", b"\\\\"), wanted)
    return wanted


def restore_train_py(expr_dir: Path, best: dict | None) -> bool:
    """Put train.py back to the best version (see restore_target). True when it changed."""
    target = expr_dir / "train.py"
    wanted = restore_target(expr_dir, best)
    if target.exists() and target.read_bytes() == wanted:
        return False
    atomic_write_bytes(target, wanted)
    return True
