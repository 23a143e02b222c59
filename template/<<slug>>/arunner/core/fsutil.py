"""File helpers of the runner: atomic writes, checked reads, tails, removal.

Every state file is written to a temporary sibling, fsynced, then renamed over
the target, so a SIGKILL at any instant leaves either the old or the new file.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from .errors import UserError


def atomic_write_bytes(path: Path, data: bytes, durable: bool = True) -> None:
    """`path` replaced in one step. `durable=False` skips the fsync (~2-10 ms a file): only for a
    cache that is checked against its source when read and rebuilt, so a crash of the machine
    that loses or empties it costs a rebuild, never a wrong value."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as fh:
        fh.write(data)
        if durable:
            fh.flush()
            os.fsync(fh.fileno())
    os.replace(tmp, path)


def atomic_write_text(path: Path, text: str, durable: bool = True) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), durable)


def atomic_write_json(path: Path, obj: Any, durable: bool = True) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1, sort_keys=False, allow_nan=True) + "\n", durable)


def read_json(path: Path, what: str, fix: str, default: Any = None) -> Any:
    """Read a JSON state file; a missing file gives `default`, a damaged one a UserError.

    `what` names the file for the user, `fix` says how to recover.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return default
    except OSError as exc:
        raise UserError(f"cannot read {what} {path}: {exc.strerror}; {fix}") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise UserError(f"{what} {path} is not valid JSON ({exc.msg}, line {exc.lineno}); {fix}") from None


def read_tail(path: Path, limit: int) -> bytes:
    """The last `limit` bytes of a file (all of it when smaller); b"" when it is missing or unreadable."""
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            fh.seek(max(0, size - limit))
            return fh.read(limit)
    except OSError:
        return b""


def remove(path: Path) -> None:
    """Delete a file or folder tree; already gone is fine."""
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)
    except FileNotFoundError:
        pass


def tree_bytes(path: Path) -> int:
    """Apparent size of a file, or of all regular files in a folder."""
    if not os.path.isdir(path) or os.path.islink(path):
        return os.lstat(path).st_size
    total = 0
    for top, _dirs, files in os.walk(path):
        for name in files:
            total += os.lstat(os.path.join(top, name)).st_size
    return total


def fsync_dir(path: Path) -> None:
    """Make a rename inside `path` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fault_point(name: str) -> None:
    """Crash-consistency tests only: SIGKILL this process at the named step.

    Set AR_FAULT_AT=<name> in the runner's environment; unset, this costs one dict lookup.
    """
    if os.environ.get("AR_FAULT_AT") == name:
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


def module_file(root: Path, dotted: str) -> Path | None:
    """The file of a dotted module of the project (`pkg.mod` -> pkg/mod.py or pkg/mod/__init__.py,
    also under src/), or None: the one rule the interview and the runner share."""
    for base in (root, root / "src"):
        stem = base.joinpath(*dotted.split("."))
        for candidate in (stem.with_suffix(".py"), stem / "__init__.py"):
            if candidate.is_file():
                return candidate
    return None
