"""Run ids and the runs/ layout: the one place that parses, formats and allocates `rNNNN`.

Every run lives in runs/rNNNN/ (at least four digits, numbered from r0001 in
the order runs start). Listing reads folder names only, so it stays cheap
with 10,000 runs.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from . import chain_hash
from .errors import UserError
from .fsutil import atomic_write_json
from .layout import RUN_INDEX, RUNS_DIR

ID_DIGITS = 4  # r0001; r10000 follows r9999
PROBE_LIMIT = 64  # run numbers looked up one by one before listing runs/ is cheaper
RUN_ID_RE = re.compile(r"r(\d{4,})")


def parse_run_id(text) -> int | None:
    """The number of a run id like r0003, or None when `text` is not one."""
    m = RUN_ID_RE.fullmatch(str(text or ""))
    return int(m.group(1)) if m else None


def format_run_id(number: int) -> str:
    return f"r{number:0{ID_DIGITS}d}"


def run_key(run_id: str) -> tuple:
    """Sort key ordering run ids by number (r9999 < r10000); anything else sorts first."""
    number = parse_run_id(run_id)
    return (-1 if number is None else number, run_id)


def runs_dir(expr_dir: Path) -> Path:
    return Path(expr_dir) / RUNS_DIR


def run_dir_of(expr_dir: Path, run: int | str) -> Path:
    """runs/rNNNN/ of a run given by number or by id."""
    return runs_dir(expr_dir) / (format_run_id(run) if isinstance(run, int) else run)


def _number(name: str) -> int | None:
    """parse_run_id without the regex: this runs once per run folder, and there may be 10,000."""
    digits = name[1:]
    if name[:1] == "r" and len(digits) >= ID_DIGITS and digits.isascii() and digits.isdigit():
        return int(digits)
    return None


def run_numbers(expr_dir: Path) -> list[int]:
    """Numbers of the run folders, ascending (a listing of runs/: ~20 ms at 10,000 runs)."""
    return _listed(expr_dir, index=False)[0]


def _listed(expr_dir: Path, index: bool = True) -> tuple[list[int], list | None]:
    """(run numbers ascending, the runs/ stamp they hold for: None when runs/ changed while listed);
    `index`: the runner's own listing (under the experiment lock) rewrites the index."""
    stamp = _stamp(expr_dir)
    try:
        names = os.listdir(runs_dir(expr_dir))
    except FileNotFoundError:
        return [], None
    numbers = sorted(n for n in map(_number, names) if n is not None)
    if stamp is None or _stamp(expr_dir) != stamp:  # something came or went while listing
        return numbers, None
    if index:
        _write_index(expr_dir, stamp, numbers[-1] if numbers else 0)
    return numbers, stamp


# The index spares the runner a listing of runs/ per run. It holds the highest run number and
# the stat of runs/ (inode, mtime, ctime, link count) at a moment that number was true: any
# folder made, removed or renamed in runs/ since changes that stat, and then runs/ is listed
# again. The index is signed (chain_hash.sign): training can write the experiment folder, and
# an index it wrote is ignored, never trusted.


def _stamp(expr_dir: Path) -> list | None:
    try:
        st = os.stat(runs_dir(expr_dir))
    except FileNotFoundError:
        return None
    return [st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_nlink]


def _write_index(expr_dir: Path, stamp: list, highest: int) -> None:
    """Not fsynced: an index lost or emptied by a crash of the machine only costs a listing."""
    entry = {"stamp": stamp, "highest": highest}
    atomic_write_json(Path(expr_dir) / RUN_INDEX, {**entry, "mac": chain_hash.sign(entry)}, durable=False)


def _indexed(expr_dir: Path, stamp: list) -> int | None:
    """The highest run number when the index is the runner's and runs/ is unchanged since; else None."""
    try:
        data = json.loads((Path(expr_dir) / RUN_INDEX).read_bytes())
    except (OSError, ValueError):  # missing or damaged: runs/ is listed, and the index written again
        return None
    if not isinstance(data, dict) or data.get("stamp") != stamp or type(data.get("highest")) is not int:
        return None
    entry = {"stamp": data["stamp"], "highest": data["highest"]}
    return data["highest"] if chain_hash.signed(entry, data.get("mac")) else None


def highest_run(expr_dir: Path) -> tuple[int, list | None]:
    """(the highest run number, 0 without runs; the runs/ stamp it holds for, None when unknown)."""
    stamp = _stamp(expr_dir)
    if stamp is None:
        return 0, None
    highest = _indexed(expr_dir, stamp)
    if highest is not None:
        return highest, stamp
    numbers, known = _listed(expr_dir)
    return (numbers[-1] if numbers else 0), known


def runs_from(expr_dir: Path, first: int) -> tuple[list[int], int | None]:
    """(numbers of the run folders >= first, ascending; the highest run number, None without runs).

    With a valid index no folder is above its highest, so the few numbers from `first` up are
    looked up one by one instead of listing runs/."""
    stamp = _stamp(expr_dir)
    highest = _indexed(expr_dir, stamp) if stamp is not None else None
    if highest is None or highest - first > PROBE_LIMIT:
        numbers = _listed(expr_dir)[0]
        return [n for n in numbers if n >= first], (numbers[-1] if numbers else None)
    found = [n for n in range(max(first, 1), highest + 1) if os.path.lexists(run_dir_of(expr_dir, n))]
    return found, (highest or None)


def make_next_run_dir(expr_dir: Path) -> Path:
    """runs/rNNNN/ of the next run, made (never exist_ok: two allocations must not share a folder).

    The index moves on to it: the runner holds the experiment lock, so nothing else allocates."""
    highest, known = highest_run(expr_dir)
    run_dir = run_dir_of(expr_dir, highest + 1)
    try:
        run_dir.mkdir(parents=True)
    except FileExistsError:  # a folder made behind the runner's back (within the index's clock tick): list
        numbers, known = _listed(expr_dir)
        run_dir = run_dir_of(expr_dir, (numbers[-1] if numbers else 0) + 1)
        try:
            run_dir.mkdir(parents=True)
        except FileExistsError:
            raise UserError(
                f"{run_dir} appeared while this run was allocated: something else is making run folders "
                "(a copy of the experiment sharing runs/?); stop it, then run again"
            ) from None
    if known is not None:
        _write_index(expr_dir, _stamp(expr_dir), _number(run_dir.name))
    return run_dir


def has_runs(expr_dir: Path) -> bool:
    """Whether any run folder exists (stops at the first one found)."""
    try:
        with os.scandir(runs_dir(expr_dir)) as entries:
            return any(_number(e.name) is not None for e in entries)
    except FileNotFoundError:
        return False


def next_run_id(numbers: list[int]) -> str:
    """The id after the highest of `numbers` (ascending, as run_numbers returns them)."""
    return format_run_id((numbers[-1] if numbers else 0) + 1)
