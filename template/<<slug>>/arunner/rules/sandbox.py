"""The monkey-patch sandbox of train.py, seen from the runner: did a sandbox-only edit do anything?

A patch that never reaches the objects training uses leaves the run exactly as the best was: the
same value to the last bit. The runner cannot prove a patch ran, but that coincidence is worth a
question in the run's note instead of a confirmation run spent on a no-op.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..core.fsutil import read_json
from ..core.layout import RESULT, RUNS_DIR

SANDBOX_START = re.compile(rb"^# ---- monkey-patch sandbox", re.M)
SANDBOX_END = re.compile(rb"^(# ---- FROZEN|def run_host\b)", re.M)
RUN_NOTE_LINE = re.compile(rb"^RUN_NOTE\s*=.*$", re.M)


def split_sandbox(source: bytes) -> tuple[bytes, bytes]:
    """(train.py without its sandbox and RUN_NOTE line, the sandbox); the sandbox is b"" when not found."""
    start = SANDBOX_START.search(source)
    end = SANDBOX_END.search(source, start.end()) if start else None
    if not start or not end:
        return RUN_NOTE_LINE.sub(b"", source), b""
    rest = source[: start.start()] + source[end.start() :]
    return RUN_NOTE_LINE.sub(b"", rest), source[start.start() : end.start()]


def only_sandbox_changed(source: bytes, best_source: bytes) -> bool:
    """train.py differs from the best's only in the sandbox (RUN_NOTE aside)."""
    rest, box = split_sandbox(source)
    best_rest, best_box = split_sandbox(best_source)
    return bool(box) and rest == best_rest and box != best_box


def best_run_value(expr_dir: Path, best: dict | None):
    """The primary value the best run itself measured (not the mean of its re-runs)."""
    if not best or not best.get("run_id"):
        return None
    result = read_json(Path(expr_dir) / RUNS_DIR / best["run_id"] / RESULT, "best run result", "ignore", None)
    return ((result or {}).get("primary") or {}).get("value")


def unchanged_patch_note(expr_dir: Path, source: bytes, best_source: bytes | None, best: dict | None, value) -> str:
    """The note for a sandbox-only edit whose value equals the best's bit for bit, else ""."""
    if best_source is None or not isinstance(value, float) or not only_sandbox_changed(source, best_source):
        return ""
    if value != best_run_value(expr_dir, best):
        return ""
    return (
        f"only the sandbox changed and the value equals {best['run_id']}'s to the last digit: did the patch run? "
        "(a patch on an object training never uses changes nothing; print from the patched code to check)"
    )
