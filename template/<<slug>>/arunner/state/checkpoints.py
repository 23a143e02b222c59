"""A run's checkpoint: find what THIS run saved, take it into the run's folder, prune old ones.

Discovery only credits files or folders created or modified since the run was
launched (mtime or ctime >= started_at; for a folder, the newest of anything
inside), so a run that saves nothing is never credited with an older run's
weights. Capture is a move: a rename on the same filesystem (O(1)), else a
reflink clone or a real copy followed by removing the source. It never
hard-links or symlinks a host path: `torch.save` to a fixed path truncates the
same inode, so a linked checkpoint would silently become the next run's weights.

Bookkeeping beside the runs (all dot-names, ignored by discovery):
  runs/rNNNN/.capture.json   what capture() returned, read back by best.promote()
  runs/rNNNN/.ckpt-partial   a cross-filesystem copy in progress (renamed to ckpt/<name> when whole)
  .ckpt-held/rNNNN           marker: this run may hold runs/rNNNN/ckpt (keeps prune O(held), not O(runs))
  .ckpt-trash/               checkpoints being pruned (renamed here first, so a kill never leaves half a ckpt/)
"""

from __future__ import annotations

import errno
import fnmatch
import os
import re
import shutil
from pathlib import Path, PurePath

from ..core.errors import UserError
from ..core.fsutil import atomic_write_json, fault_point, fsync_dir, read_json, remove, tree_bytes
from ..core.layout import CAPTURE_FILE, CKPT, HELD_DIR, PARTIAL, PRUNED, RUN_OWN_NAMES, TRASH_DIR
from ..core.runs import run_dir_of, run_key

PRUNED_LAST = 5  # how many of the latest pruned run ids the tally keeps
FICLONE = 0x40049409  # linux/fs.h _IOW(0x94, 9, int)

# Every place a test may SIGKILL capture() or prune(), in the order they are reached.
# capture.copied and capture.source_removed are only reached on a cross-filesystem capture.
FAULT_POINTS = (
    "capture.discovered",
    "capture.marked",
    "capture.copied",
    "capture.stored",
    "capture.recorded",
    "capture.source_removed",
    "prune.moved",
    "prune.removed",
)


# ---------------------------------------------------------------- discovery


def newest_time(path: Path) -> float:
    """Latest mtime/ctime of `path` and, for a folder, of anything inside (symlinks not followed).

    ctime counts too: a copy that preserves mtime (cp -p, shutil.copy2) is still new.
    """
    st = os.lstat(path)
    newest = max(st.st_mtime, st.st_ctime)
    if os.path.isdir(path) and not os.path.islink(path):
        for top, dirs, files in os.walk(path):
            for name in dirs + files:
                try:
                    st = os.lstat(os.path.join(top, name))
                except FileNotFoundError:
                    continue
                newest = max(newest, st.st_mtime, st.st_ctime)
    return newest


def _within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _newest_fresh(candidates, started_at: float) -> Path | None:
    """The most recently written candidate not older than the launch; symlinks never count."""
    best, best_key = None, None
    for path in candidates:
        if os.path.islink(path):
            continue  # taking a link would store a pointer to a host path, not the weights
        try:
            t = newest_time(path)
        except FileNotFoundError:
            continue
        # No slack: a host process writes tens of ms after launch at the earliest,
        # far beyond any filesystem timestamp granularity.
        if t < started_at:
            continue
        key = (t, _step(path.name), path.name)
        if best_key is None or key > best_key:
            best, best_key = path, key
    return best


def _step(name: str) -> int:
    m = re.search(r"(\d+)$", name)
    return int(m.group(1)) if m else -1


def _from_glob(cfg, root: Path, started_at: float) -> Path | None:
    pattern = (cfg.checkpoint_glob or "").strip()
    if not pattern:
        return None
    if os.path.isabs(pattern) or PurePath(pattern).drive or ".." in PurePath(pattern).parts:
        raise UserError(
            f"checkpoint_glob {pattern!r} reaches outside the project root {root}; "
            "use a pattern relative to the project root without '..' (fix the answers and run copier update)"
        )
    # The experiments' own stores (best_ckpt/, runs/*/ckpt, a parent experiment's best) are never a host save.
    stores = Path(cfg.expr_dir).resolve().parent
    if stores == root:  # an experiment folder directly in the root: exclude only itself
        stores = Path(cfg.expr_dir).resolve()
    matches = []
    for m in root.glob(pattern):
        real = m.resolve()
        if not _within(real, root):
            raise UserError(
                f"checkpoint_glob {pattern!r} matched {m} which resolves to {real}, outside the project "
                f"root {root}; checkpoints are only taken from inside the project (fix the glob or the link)"
            )
        if _within(root, stores) or not _within(real, stores):  # a run's own working folder is inside them
            matches.append(m)
    return _newest_fresh(matches, started_at)


def _from_run_dir(run_dir: Path, started_at: float) -> Path | None:
    try:
        names = os.listdir(run_dir)
    except FileNotFoundError:
        return None
    # One file or one folder is the cooperative contract; if the host left several, the newest wins.
    return _newest_fresh([run_dir / n for n in names if not n.startswith(".") and n not in RUN_OWN_NAMES], started_at)


def output_dirs(cli_args) -> list[str]:
    """`output_dir` values named in CLI_OVERRIDES: a dict key, or a list item `[+]…output_dir=X` / `--output_dir X`."""
    found = []
    if isinstance(cli_args, dict):
        for key, value in cli_args.items():
            if str(key).lstrip("-+~").split(".")[-1] == "output_dir" and value not in (None, ""):
                found.append(str(value))
    elif isinstance(cli_args, (list, tuple)):
        items = [str(x) for x in cli_args]
        for i, item in enumerate(items):
            key, eq, value = item.partition("=")
            if key.lstrip("-+~").split(".")[-1] != "output_dir":
                continue
            if not eq and item.startswith("-") and i + 1 < len(items):
                value = items[i + 1]
            elif not eq:
                continue
            value = value.strip().strip("'\"")
            if value and "${" not in value:  # a Hydra interpolation is not a path we can read
                found.append(value)
    return found


def _from_output_dir(cfg, root: Path, started_at: float) -> Path | None:
    candidates = []
    for value in output_dirs(cfg.cli_args):
        out = (root / value).resolve()
        if not _within(out, root) or not out.is_dir():
            continue  # outside the project we take nothing (the run then has no checkpoint)
        candidates += [out / n for n in os.listdir(out) if fnmatch.fnmatch(n, "checkpoint-*") and (out / n).is_dir()]
    return _newest_fresh(candidates, started_at)


def discover(cfg, run_dir: Path, started_at: float) -> Path | None:
    """This run's checkpoint: checkpoint_glob, else a save into $AR_RUN_DIR, else HF output_dir/checkpoint-*."""
    root = Path(cfg.project_root).resolve()
    return (
        _from_glob(cfg, root, started_at)
        or _from_run_dir(Path(run_dir), started_at)
        or _from_output_dir(cfg, root, started_at)
    )


# ---------------------------------------------------------------- moving


def _clone_file(src: str, dst: str) -> bool:
    """Copy one file, copy-on-write (FICLONE) where the filesystem can; True when it was a clone."""
    cloned = False
    try:
        import fcntl

        with open(src, "rb") as fin, open(dst, "wb") as fout:
            fcntl.ioctl(fout.fileno(), FICLONE, fin.fileno())
            cloned = True
    except (OSError, ImportError):
        cloned = False
    if not cloned:
        shutil.copyfile(src, dst)
    shutil.copystat(src, dst)
    with open(dst, "rb") as fh:
        os.fsync(fh.fileno())  # the source is deleted next: the copy must be on disk first
    return cloned


def _clone_tree(src: Path, dst: Path) -> str:
    """Clone or copy `src` (file or folder) to `dst`; 'reflink' if every file was cloned, else 'copy'."""
    results = []

    def copy_one(s, d):
        results.append(_clone_file(s, d))
        return d

    if src.is_dir():
        shutil.copytree(src, dst, symlinks=True, copy_function=copy_one)
    else:
        copy_one(str(src), str(dst))
    return "reflink" if results and all(results) else "copy"


def mark_held(expr_dir: Path, run_id: str) -> None:
    """Record that runs/<run_id>/ may hold a ckpt/ (prune reads these markers, not every run)."""
    held = Path(expr_dir) / HELD_DIR
    held.mkdir(exist_ok=True)
    (held / run_id).touch()  # not fsynced: a power loss can at worst leave one ckpt/ unpruned


def capture(cfg, run_dir: Path, started_at: float) -> dict | None:
    """Discover this run's checkpoint and move it to run_dir/ckpt/<its name>; None when there is none."""
    run_dir = Path(run_dir).resolve()
    recorded = read_json(run_dir / CAPTURE_FILE, "capture record", "delete it", default=None)
    if recorded is not None:
        return recorded  # already captured (a second call must not take an older save)
    src = discover(cfg, run_dir, started_at)
    if src is None:
        return None
    fault_point("capture.discovered")
    expr_dir = Path(cfg.expr_dir).resolve()
    mark_held(expr_dir, run_dir.name)
    fault_point("capture.marked")
    kind = "dir" if src.is_dir() else "file"
    nbytes = tree_bytes(src)
    store = run_dir / CKPT
    store.mkdir(exist_ok=True)
    dest = store / src.name
    try:
        os.rename(src, dest)
        method = "rename"
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        # Another filesystem: build the copy beside ckpt/ and rename it in whole, so a kill
        # mid-copy leaves only .ckpt-partial debris (repair removes it) and the source intact.
        partial = run_dir / PARTIAL
        remove(partial)
        method = _clone_tree(src, partial)
        fault_point("capture.copied")
        os.rename(partial, dest)
        fsync_dir(store)  # the source is deleted below: the copy must be durable first
    fault_point("capture.stored")
    info = {
        "source": os.path.relpath(src, Path(cfg.project_root).resolve()),
        "stored": os.path.relpath(dest, expr_dir),
        "kind": kind,
        "bytes": nbytes,
        "method": method,
    }
    atomic_write_json(run_dir / CAPTURE_FILE, info)
    fault_point("capture.recorded")
    if method != "rename":
        remove(src)  # a move, whatever the filesystem: the host no longer finds it at its path
        fault_point("capture.source_removed")
    return info


# ---------------------------------------------------------------- pruning


def prune(expr_dir: Path, keep_latest: int, best_id: str | None) -> list[str]:
    """Delete runs/*/ckpt except the best run's (`best_id`) and the keep_latest newest; the run ids pruned."""
    expr_dir = Path(expr_dir)
    held_dir, trash = expr_dir / HELD_DIR, expr_dir / TRASH_DIR
    remove(trash)  # an earlier prune killed mid-delete
    try:
        held = sorted(os.listdir(held_dir), key=run_key, reverse=True)
    except FileNotFoundError:
        return []
    removed, kept = [], 0
    for run_id in held:
        ckpt = run_dir_of(expr_dir, run_id) / CKPT
        if not os.path.lexists(ckpt):
            remove(held_dir / run_id)  # its checkpoint was promoted or is gone: stale marker
            continue
        if run_id == best_id:
            continue  # never the best, and it does not use up a keep_latest slot
        if kept < keep_latest:
            kept += 1
            continue
        # Rename first: a kill mid-delete must not leave a half checkpoint that looks whole.
        trash.mkdir(exist_ok=True)
        os.rename(ckpt, trash / run_id)
        fault_point("prune.moved")
        remove(trash / run_id)
        remove(held_dir / run_id)
        fault_point("prune.removed")
        removed.append(run_id)
    remove(trash)
    return removed


def sweep_debris(expr_dir: Path) -> list[str]:
    """Remove what a kill inside capture() or prune() left behind; notes of what went."""
    expr_dir = Path(expr_dir)
    notes = []
    if os.path.lexists(expr_dir / TRASH_DIR):
        remove(expr_dir / TRASH_DIR)
        notes.append("removed checkpoints left half-pruned by an interrupted prune")
    try:
        held = os.listdir(expr_dir / HELD_DIR)
    except FileNotFoundError:
        held = []
    for run_id in held:
        partial = run_dir_of(expr_dir, run_id) / PARTIAL
        if os.path.lexists(partial):
            remove(partial)
            notes.append(f"removed the partial checkpoint copy of {run_id} (the host still has the original)")
    return notes


def record_pruned(expr_dir: Path, run_ids: list[str]) -> None:
    """Add pruned run ids to the tally `status` shows (the runs themselves stay)."""
    tally = read_pruned(expr_dir) or {}
    count = int(tally.get("count", 0)) + len(run_ids)
    last = [*tally.get("last", []), *run_ids][-PRUNED_LAST:]
    atomic_write_json(Path(expr_dir) / PRUNED, {"count": count, "last": last})


def read_pruned(expr_dir: Path) -> dict | None:
    """The pruned-checkpoint tally ({"count", "last"}), None before anything was pruned."""
    return read_json(Path(expr_dir) / PRUNED, "pruned-checkpoint tally", "delete it", default=None)
