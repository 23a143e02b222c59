"""The queue of proposed candidates: train.py versions waiting to be run together in a wave.

Each candidate is a folder queue/cNNNN/ holding train.py and meta.json. It is
written complete under a hidden temporary name, fsynced, then renamed into place,
so a SIGKILL at any instant leaves either no candidate or a whole one (leftover
temporaries are removed by the next call). Ids only grow; a counter file makes
the next id O(1), and one flock serialises proposers and takers.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple, Optional

from ..core import digests
from ..core.errors import UserError
from ..core.fsutil import atomic_write_text, fault_point, fsync_dir
from ..core.layout import QUEUE_DIR, TRAIN_PY
from .snapshots import has_conflict_markers, read_run_note

MAX_QUEUED = 1000  # a runaway agent loop is stopped here, not by a full disk
_ID = r"^c(\d{4,})$"  # compiled on first use (re caches it): most runs have no queue
_TMP_PREFIX = ".new-"


class Candidate(NamedTuple):
    id: str  # c0001
    path: Path  # its folder; train.py inside is the version to run
    note: str  # the RUN_NOTE it was proposed with
    sha256: str
    proposed_at: float


def _queue(exp_dir: Path) -> Path:
    return Path(exp_dir) / QUEUE_DIR


@contextmanager
def _locked(queue: Path):
    queue.mkdir(parents=True, exist_ok=True)
    fd = os.open(queue / ".lock", os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        for tmp in queue.glob(_TMP_PREFIX + "*"):  # only a dead proposer leaves one: we hold the lock
            shutil.rmtree(tmp, ignore_errors=True)
        yield
    finally:
        os.close(fd)


def _next_number(queue: Path) -> int:
    try:
        number = int((queue / ".next").read_text())
    except (OSError, ValueError):
        number = max((int(m.group(1)) for m in (re.match(_ID, name) for name in os.listdir(queue)) if m), default=0) + 1
    while (queue / f"c{number:04d}").exists():  # killed after the rename, before the counter write
        number += 1
    return number


def propose_train_py(exp_dir: Path) -> Candidate:
    """Queue the experiment's current train.py with its RUN_NOTE (train.py itself is left as it is)."""
    path = Path(exp_dir) / TRAIN_PY
    try:
        source = path.read_bytes()
    except OSError as exc:
        raise UserError(
            f"cannot read {path}: {exc.strerror}; restore it with `git checkout` or copier update"
        ) from None
    if has_conflict_markers(source):
        raise UserError(f"{path} has merge conflict markers (<<<<<<<); resolve them before proposing it")
    return propose(exp_dir, source, read_run_note(source.decode("utf-8", "replace")))


def propose(exp_dir: Path, source: bytes, note: str) -> Candidate:
    """Queue `source` (train.py's bytes) with its note; returns the new candidate."""
    queue = _queue(exp_dir)
    digest = digests.sha256(source).hexdigest()
    with _locked(queue):
        queued = list_queued(exp_dir)
        if len(queued) >= MAX_QUEUED:
            raise UserError(
                f"{len(queued)} candidates are already queued in {queue}; run them with `ar.py run` "
                "or drop some with `ar.py propose --discard ID`"
            )
        same = next((c.id for c in queued if c.sha256 == digest), None)
        if same:
            raise UserError(f"this train.py is already queued as {same}; edit it before proposing again")
        number = _next_number(queue)
        cand_id = f"c{number:04d}"
        meta = {"id": cand_id, "note": note, "sha256": digest, "proposed_at": time.time()}
        tmp = queue / f"{_TMP_PREFIX}{cand_id}-{os.getpid()}"
        tmp.mkdir()
        with open(tmp / TRAIN_PY, "wb") as fh:
            fh.write(source)
            fh.flush()
            os.fsync(fh.fileno())
        atomic_write_text(tmp / "meta.json", json.dumps(meta, indent=1) + "\n")
        fsync_dir(tmp)
        fault_point("propose-before-rename")
        os.rename(tmp, queue / cand_id)  # the candidate appears whole, or not at all
        fsync_dir(queue)
        fault_point("propose-after-rename")
        atomic_write_text(queue / ".next", f"{number + 1}\n")
    return _load(queue / cand_id)


def _load(path: Path) -> Candidate:
    try:
        meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"queued candidate {path} is damaged ({exc}); delete that folder") from None
    return Candidate(meta["id"], path, meta.get("note", ""), meta.get("sha256", ""), meta.get("proposed_at", 0.0))


def list_queued(exp_dir: Path) -> list[Candidate]:
    """Queued candidates, oldest first."""
    queue = _queue(exp_dir)
    try:
        names = os.listdir(queue)
    except FileNotFoundError:
        return []
    numbered = sorted((int(m.group(1)), m.group(0)) for m in (re.match(_ID, name) for name in names) if m)
    return [_load(queue / name) for _, name in numbered]


def get(exp_dir: Path, cand_id: str) -> Candidate:
    path = _queue(exp_dir) / cand_id
    if not re.match(_ID, cand_id) or not path.is_dir():
        queued = ", ".join(c.id for c in list_queued(exp_dir)) or "none"
        raise UserError(f"no queued candidate {cand_id!r} (queued: {queued}); see `ar.py status`")
    return _load(path)


def pop(exp_dir: Path, dest: Path, cand_id: Optional[str] = None) -> Optional[Candidate]:
    """Move the oldest (or the named) candidate's folder to `dest` in one rename; None when the queue is empty.

    `dest` must not exist and must be on the same filesystem (e.g. runs/r0007/candidate):
    the candidate is then either still queued or at dest, never lost or doubled.
    """
    queue = _queue(exp_dir)
    with _locked(queue):
        cand = get(exp_dir, cand_id) if cand_id else next(iter(list_queued(exp_dir)), None)
        if cand is None:
            return None
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.rename(cand.path, dest)
        fsync_dir(queue)
        fsync_dir(dest.parent)
    return _load(dest)


def discard(exp_dir: Path, cand_id: str) -> Candidate:
    """Drop a queued candidate (renamed away first, so a kill mid-delete leaves no half candidate)."""
    queue = _queue(exp_dir)
    with _locked(queue):
        cand = get(exp_dir, cand_id)
        doomed = queue / f"{_TMP_PREFIX}discard-{cand_id}"
        os.rename(cand.path, doomed)
        fsync_dir(queue)
        shutil.rmtree(doomed, ignore_errors=True)
    return cand
