"""Run ids and the runs/ layout: the one place that parses, formats and allocates `rNNNN`.

Every run lives in runs/rNNNN/ (at least four digits, numbered from r0001 in
the order runs start). Listing reads folder names only, so it stays cheap
with 10,000 runs.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .layout import RUNS_DIR

ID_DIGITS = 4  # r0001; r10000 follows r9999
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
    """Numbers of the run folders, ascending."""
    try:
        names = os.listdir(runs_dir(expr_dir))
    except FileNotFoundError:
        return []
    return sorted(n for n in map(_number, names) if n is not None)


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
