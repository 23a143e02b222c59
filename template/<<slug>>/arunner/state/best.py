"""The best run: best_ckpt/ (its checkpoint + meta.json) and best.json, switched atomically.

best.json is a relative symlink to best_ckpt/meta.json, so the two are one file
and cannot disagree at any instant. A promotion builds best_ckpt.staging/
(meta.json first, then the checkpoint moved in by rename) and swaps it with
best_ckpt/ in one renameat2(RENAME_EXCHANGE); the old best, now at the staging
path, is renamed to best_ckpt.trash/ and deleted. Where the system has no
RENAME_EXCHANGE the old best is renamed to the trash path and the new one
renamed in: for that instant best.json dangles (readers retry), and repair()
closes the gap after a kill. meta.json is never rewritten in place.

Durability (power loss, beyond SIGKILL): file contents are fsynced before a
rename publishes them, renames are journaled in order by ext4/xfs/btrfs, and
one directory fsync after the swap makes the new best durable before the
caller records the run.
"""

from __future__ import annotations

import errno
import json
import math
import os
import sys
import time
from pathlib import Path

from ..core import chain_hash
from ..core.errors import UserError
from ..core.fsutil import atomic_write_json, fault_point, fsync_dir, read_json, remove, tree_bytes
from ..core.layout import BEST, CAPTURE_FILE, CKPT, LINK, META, OLD_PREFIX, STAGING, TRASH
from ..core.runs import run_dir_of, run_key
from .checkpoints import mark_held, sweep_debris
from .record import best_record

LINK_TARGET = f"{BEST}/{META}"
CKPT_FIELDS = ("source", "stored", "name", "kind", "bytes", "method")

# Every place a test may SIGKILL promote(), in order. promote.old_moved is reached only
# without RENAME_EXCHANGE, promote.old_trashed only with it (and an earlier best).
FAULT_POINTS = (
    "promote.staged_meta",
    "promote.staged_ckpt",
    "promote.linked",
    "promote.old_moved",
    "promote.swapped",
    "promote.old_trashed",
    "promote.done",
)

READ_RETRIES = 200  # read_best retries a dangling best.json this often (the swap instant without RENAME_EXCHANGE)
READ_RETRY_S = 0.005  # ... this long apart: 1 s in all, far longer than two renames take

# None: not tried yet; False: this system cannot (tests set False to exercise the fallback).
exchange_supported: bool | None = None
_SYSCALL_NR = {"x86_64": 316, "amd64": 316, "aarch64": 276, "arm64": 276, "riscv64": 276}
_AT_FDCWD, _RENAME_EXCHANGE = -100, 2


def _renameat2():
    """libc's renameat2, or the raw syscall where an older libc lacks the wrapper."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes  # here, not at the top: only a promotion pays for it
    import platform

    libc = ctypes.CDLL(None, use_errno=True)
    if hasattr(libc, "renameat2"):
        fn = libc.renameat2
        fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
        return fn
    nr = _SYSCALL_NR.get(platform.machine().lower())
    if nr is None:
        return None
    return lambda *args: libc.syscall(nr, *args)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one atomic step; False where this system cannot."""
    global exchange_supported
    if exchange_supported is False:
        return False
    fn = _renameat2()
    if fn is None:
        exchange_supported = False
        return False
    if fn(_AT_FDCWD, os.fsencode(str(a)), _AT_FDCWD, os.fsencode(str(b)), _RENAME_EXCHANGE) == 0:
        exchange_supported = True
        return True
    import ctypes

    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        exchange_supported = False  # e.g. NFS, some FUSE filesystems
        return False
    raise OSError(err, os.strerror(err), str(a), None, str(b))


def _meta(folder: Path) -> dict | None:
    """meta.json of a best_ckpt-like folder, or None when absent or unreadable (debris)."""
    try:
        data = json.loads((folder / META).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("run_id"), str) else None


def _newer(a: str, b: str) -> bool:
    return run_key(a) > run_key(b)


# ---------------------------------------------------------------- reading


def read_best(expr_dir: Path) -> dict | None:
    """The best run's meta (run_id, primary, checkpoint fields, lineage, snapshot); None before any best."""
    expr_dir = Path(expr_dir)
    link = expr_dir / LINK
    if not os.path.lexists(link):
        return None
    fix = (
        f"restore {expr_dir / LINK_TARGET}, or delete {link} and {expr_dir / BEST} "
        "to forget the best run (the next improving run becomes the best)"
    )
    missing = object()
    for _ in range(READ_RETRIES):
        data = read_json(link, "best-run record", fix, default=missing)
        if data is not missing:
            break
        # Dangling: no promotion finished yet, or we are inside the instant of a swap
        # without RENAME_EXCHANGE (the old best sits at the trash path meanwhile).
        if not os.path.lexists(expr_dir / TRASH):
            data = read_json(link, "best-run record", fix, default=missing)
            if data is missing:
                return None
            break
        time.sleep(READ_RETRY_S)
    else:
        raise UserError(
            f"{link} points at a missing {LINK_TARGET}: a promotion was interrupted; "
            f"run `python {Path(*expr_dir.resolve().parts[-2:])}/ar.py run` once, it repairs this before anything else"
        )
    if not isinstance(data, dict) or not isinstance(data.get("run_id"), str):
        raise UserError(f"best-run record {link} has no run_id; {fix}")
    return data


# ---------------------------------------------------------------- promoting


def _ensure_link(expr_dir: Path) -> bool:
    """Make best.json the relative symlink to best_ckpt/meta.json; True if it had to change."""
    link = expr_dir / LINK
    if os.path.islink(link) and os.readlink(link) == LINK_TARGET:
        return False
    tmp = expr_dir / f".{LINK}.tmp{os.getpid()}"
    remove(tmp)
    os.symlink(LINK_TARGET, tmp)
    os.replace(tmp, link)
    return True


def _checkpoint_fields(run_dir: Path, name: str | None) -> dict:
    if name is None:
        return dict.fromkeys(CKPT_FIELDS) | {"bytes": 0}
    path = run_dir / CKPT / name
    cap = read_json(run_dir / CAPTURE_FILE, "capture record", "delete it", default=None) or {}
    return {
        "source": cap.get("source"),
        "stored": f"{BEST}/{name}",
        "name": name,
        "kind": cap.get("kind") or ("dir" if path.is_dir() else "file"),
        "bytes": cap.get("bytes") if isinstance(cap.get("bytes"), int) else tree_bytes(path),
        "method": cap.get("method") or "rename",
    }


def _commit(expr_dir: Path) -> None:
    """Put the complete staging folder in place of best_ckpt/, then set the old best aside for drop_old."""
    best, staging, trash = expr_dir / BEST, expr_dir / STAGING, expr_dir / TRASH
    if not os.path.lexists(best):
        os.rename(staging, best)  # first best: a plain rename is already atomic
        fsync_dir(expr_dir)
        fault_point("promote.swapped")
    elif _exchange(staging, best):
        fsync_dir(expr_dir)
        fault_point("promote.swapped")
        os.rename(staging, trash)  # staging now holds the previous best
        fault_point("promote.old_trashed")
    else:
        os.rename(best, trash)
        fault_point("promote.old_moved")
        os.rename(staging, best)
        fsync_dir(expr_dir)
        fault_point("promote.swapped")
    if os.path.lexists(trash):  # O(1) here; drop_old deletes it once the result is recorded and printed
        os.rename(trash, expr_dir / f"{OLD_PREFIX}{os.getpid()}-{time.time_ns()}")
    fault_point("promote.done")


def drop_old(expr_dir: Path) -> int:
    """Delete the previous bests promote() set aside; called once the result is recorded and printed."""
    count = 0
    for path in Path(expr_dir).glob(OLD_PREFIX + "*"):
        remove(path)
        count += 1
    return count


def remeasure(expr_dir: Path, values: list[float]) -> None:
    """The best measured again (its baseline repeats): meta.json says the mean of its runs and how many.

    The one rewrite of meta.json in place, and atomic (a temp file renamed over it): the
    checkpoint does not change, only what the record says about its value.
    """
    expr_dir = Path(expr_dir)
    meta = _meta(expr_dir / BEST)
    if meta is None or not values:
        return
    primary = {**(meta.get("primary") or {}), "value": math.fsum(values) / len(values)}
    meta = {**meta, "primary": primary, "n": len(values)}
    chain_hash.seal_best(expr_dir, meta)
    atomic_write_json(expr_dir / BEST / META, meta)


def promote(expr_dir: Path, run_dir: Path, record: dict) -> None:
    """Make the run the best: its ckpt (if any) and meta become best_ckpt/, atomically; the old best goes."""
    expr_dir, run_dir = Path(expr_dir), Path(run_dir)
    if not isinstance(record.get("run_id"), str):
        raise ValueError(f"promote() needs record['run_id'] as a string, got {record.get('run_id')!r}")
    staging = expr_dir / STAGING
    if os.path.lexists(staging) or os.path.lexists(expr_dir / TRASH):
        repair(expr_dir, None)  # debris of a killed promotion: roll it back before starting anew
    ckpt_dir = run_dir / CKPT
    names = sorted(n for n in os.listdir(ckpt_dir) if not n.startswith(".")) if ckpt_dir.is_dir() else []
    if len(names) > 1:
        raise UserError(
            f"{ckpt_dir} holds {len(names)} entries ({', '.join(names)}), expected one checkpoint; "
            "keep the one to promote and delete the rest"
        )
    name = names[0] if names else None
    meta = {k: v for k, v in record.items() if k not in CKPT_FIELDS}
    meta.update(_checkpoint_fields(run_dir, name))
    meta["promoted_at"] = time.time()
    # meta.json goes in first so staging always says whose checkpoint it holds (repair reads it).
    os.mkdir(staging)
    chain_hash.seal_best(expr_dir, meta)  # sealed before it is published: an edited meta.json is seen
    atomic_write_json(staging / META, meta)  # content fsynced before any rename can publish it
    fault_point("promote.staged_meta")
    if name is not None:
        os.rename(ckpt_dir / name, staging / name)
    try:
        os.rmdir(ckpt_dir)  # empty now; prune reads an absent ckpt/ as "nothing held here"
    except OSError:
        pass
    fault_point("promote.staged_ckpt")
    _ensure_link(expr_dir)
    fault_point("promote.linked")
    _commit(expr_dir)


# ---------------------------------------------------------------- repairing


def _pending_record(pending: dict, current: dict | None) -> dict:
    """The meta record to redo a promotion from the run's decision.json."""
    lineage = pending.get("lineage") or (current or {}).get("lineage") or {}
    return best_record(
        pending["run_id"], pending.get("primary"), lineage, pending.get("snapshot"), pending.get("n") or 1
    )


def repair(expr_dir: Path, pending: dict | None) -> list[str]:
    """After a kill anywhere in capture/promote/prune: finish or roll back, remove debris; notes of what it did.

    `pending` is the decision.json of the unrecorded run whose verdict was advance, else None.
    """
    expr_dir = Path(expr_dir)
    best, staging, trash = expr_dir / BEST, expr_dir / STAGING, expr_dir / TRASH
    pending_id = pending.get("run_id") if isinstance(pending, dict) else None
    if pending is not None and pending.get("verdict", "advance") != "advance":
        pending_id = None
    notes: list[str] = []
    redo_record = None  # the record of a rolled-back promotion of the pending run, to redo below

    # Killed between "old best renamed away" and "new best renamed in" (no RENAME_EXCHANGE).
    if not os.path.lexists(best) and _meta(trash) is not None:
        os.rename(trash, best)
        notes.append("restored the previous best from an interrupted swap")

    if os.path.lexists(staging):
        redo_record = _repair_staging(expr_dir, pending_id, notes)

    if os.path.lexists(trash):
        remove(trash)
        notes.append("removed the previous best left by an interrupted promotion")
    if os.path.lexists(best) and _ensure_link(expr_dir):
        notes.append(f"re-linked {LINK} to {LINK_TARGET}")
    for debris in expr_dir.glob(f".{LINK}.tmp*"):
        remove(debris)

    # The decision said advance but no swap happened (or it was rolled back): do it now.
    if pending_id is not None:
        current = read_best(expr_dir)
        if current is None or _newer(pending_id, current["run_id"]):
            promote(expr_dir, run_dir_of(expr_dir, pending_id), redo_record or _pending_record(pending, current))
            notes.append(f"redid the promotion of {pending_id}")

    drop_old(expr_dir)  # a runner killed before it got to them
    return notes + sweep_debris(expr_dir)


def _repair_staging(expr_dir: Path, pending_id: str | None, notes: list[str]) -> dict | None:
    """A promotion interrupted with its staging folder in place: finish it when the pending run is
    the one staged and its checkpoint is whole, else roll it back. Returns the pending run's record
    when its promotion was rolled back (to be redone), else None."""
    staging = expr_dir / STAGING
    sm, bm = _meta(staging), _meta(expr_dir / BEST)
    if sm is None:
        # Killed before staging/meta.json existed: nothing was moved in yet.
        remove(staging)
        notes.append("removed an empty promotion staging folder")
        return None
    if bm is not None and _newer(bm["run_id"], sm["run_id"]):
        remove(staging)  # the swap happened; staging is the previous best
        notes.append(f"removed the previous best {sm['run_id']} left by an interrupted promotion")
        return None
    name = sm.get("name")
    whole = name is None or os.path.lexists(staging / name)
    if pending_id == sm["run_id"] and whole:
        _ensure_link(expr_dir)
        _commit(expr_dir)
        notes.append(f"finished the interrupted promotion of {sm['run_id']}")
        return None
    # Roll back: the checkpoint returns to its run folder, where promote() found it.
    if name and os.path.lexists(staging / name):
        home = run_dir_of(expr_dir, sm["run_id"]) / CKPT
        home.mkdir(parents=True, exist_ok=True)
        mark_held(expr_dir, sm["run_id"])
        os.rename(staging / name, home / name)
    remove(staging)
    notes.append(f"rolled back the interrupted promotion of {sm['run_id']}")
    if pending_id == sm["run_id"]:
        return {k: v for k, v in sm.items() if k not in CKPT_FIELDS + ("promoted_at",)}
    return None
