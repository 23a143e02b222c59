"""The ledger: results.tsv (append-only, one row per run) and result.json.

results.tsv stays parseable after a SIGKILL at any instant: each row is one
O_APPEND write, and a trailing partial line (a write cut short) is dropped by
`repair_tail` before the next row goes in.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..core import ledger_seal
from ..core.errors import UserError
from ..core.fsutil import atomic_write_json, read_tail
from ..core.layout import RESULT
from ..core.runs import parse_run_id
from ..core.text import one_line
from .record import RESULT_FIELDS

NOTE_CAP = 200  # characters of the note column
CELL_CAP = 400  # characters of any other cell
REPAIR_TAIL_BYTES = 65536  # a row cut short by a kill is far shorter than this
LAST_ROW_BYTES = 4096  # enough to hold the last whole row
RECENT_ROWS_BYTES = 65536  # has_row looks this far back (rows are appended in run order)

COLUMNS = ("run_id", "ts", "wall_s", "status", "verdict", "primary_name", "primary_value", "valid", "improved", "note")
HEADER = "\t".join(COLUMNS) + "\n"


def clean_text(text, cap: int = NOTE_CAP) -> str:
    """Free text for one TSV cell: tabs and newlines become spaces, capped."""
    return one_line(text, cap)


def ensure(path: Path) -> None:
    if not path.exists():
        with open(path, "x", encoding="utf-8") as fh:
            fh.write(HEADER)


def check_header(path: Path) -> None:
    """A cheap guard for `run`: the ledger starts with the header (a full parse is for `status`)."""
    try:
        with open(path, "rb") as fh:
            first = fh.readline().decode("utf-8", errors="replace").rstrip("\r\n")
    except FileNotFoundError:
        return
    if first and first != HEADER.rstrip("\n"):
        raise UserError(f"{path}: first line is not the results header; restore it (columns: {' '.join(COLUMNS)})")


def repair_tail(path: Path) -> bool:
    """Drop a trailing partial row (no newline). Returns True when something was dropped."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        ensure(path)
        return False
    if size == 0:
        path.write_text(HEADER, encoding="utf-8")
        return True
    tail = read_tail(path, REPAIR_TAIL_BYTES)
    if tail.endswith(b"\n"):
        return False
    cut = tail.rfind(b"\n")
    os.truncate(path, size - len(tail) + cut + 1 if cut >= 0 else 0)
    if path.stat().st_size == 0:
        path.write_text(HEADER, encoding="utf-8")
    return True


def format_value(value) -> str:
    if value is None:
        return ""
    return repr(float(value)) if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


def append(path: Path, result: dict) -> None:
    primary = result.get("primary") or {}
    cells = [
        result["run_id"],
        result["started_at"],
        f"{result['wall_seconds']:.2f}",
        result["status"],
        result["verdict"],
        primary.get("name", ""),
        format_value(primary.get("value")),
        str(bool(result["valid"])).lower(),
        str(bool(result["improved_over_best"])).lower(),
        clean_text(result.get("note")),
    ]
    line = "\t".join(clean_text(c, CELL_CAP) for c in cells) + "\n"
    ledger_seal.before_append(Path(path).parent, Path(path), line.encode("utf-8"))  # the runner's seal first
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode("utf-8"))
        os.fsync(fd)
        ledger_seal.appended(Path(path), fd)
    finally:
        os.close(fd)


def read(path: Path) -> list[dict]:
    """All rows; a damaged file is one clear UserError naming the line."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    lines = text.split("\n")
    if not lines or lines[0].rstrip("\r") != HEADER.rstrip("\n"):
        raise UserError(f"{path}: first line is not the results header; restore it (columns: {' '.join(COLUMNS)})")
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        cells = line.rstrip("\r").split("\t")
        if len(cells) != len(COLUMNS):
            if number == len(lines):  # a row cut short by a kill; `run` drops it before appending
                continue
            raise UserError(
                f"{path}: line {number} has {len(cells)} columns, expected {len(COLUMNS)}; "
                f"fix or delete that line ({path.parent / 'runs'}/<id>/result.json keeps every run's full record)"
            )
        row = dict(zip(COLUMNS, cells))
        try:
            row["primary_value"] = float(row["primary_value"]) if row["primary_value"] else None
        except ValueError:
            raise UserError(
                f"{path}: line {number}: primary_value {row['primary_value']!r} is not a number; fix that line"
            ) from None
        rows.append(row)
    return rows


def last_rows(path: Path, count: int) -> list[dict]:
    """The last `count` rows, read from the file's tail (cheap at any ledger size); rows that do not parse are skipped."""
    want = LAST_ROW_BYTES * 4
    while True:
        data = read_tail(path, want)
        whole = len(data) < want
        lines = data.decode("utf-8", errors="replace").split("\n")[(0 if whole else 1) :]
        found = [line.rstrip("\r") for line in lines if line.strip() and not line.startswith(COLUMNS[0] + "\t")]
        if len(found) >= count or whole:
            break
        want *= 4
    rows = []
    for line in found[-count:]:
        cells = line.split("\t")
        if len(cells) != len(COLUMNS):
            continue
        row = dict(zip(COLUMNS, cells))
        try:
            row["primary_value"] = float(row["primary_value"]) if row["primary_value"] else None
        except ValueError:
            row["primary_value"] = None
        rows.append(row)
    return rows


def since_last_advance(path: Path) -> tuple[list[dict], int]:
    """The rows after the last `advance` (oldest first) and the total row count.

    What termination needs, without parsing the whole ledger (it may hold 10,000+ rows).
    """
    try:
        lines = path.read_bytes().decode("utf-8", errors="replace").splitlines()[1:]
    except FileNotFoundError:
        return [], 0
    lines = [line for line in lines if line.strip()]
    recent = []
    for line in reversed(lines):
        row = dict(zip(COLUMNS, line.split("\t")))
        if row.get("verdict") == "advance":
            break
        recent.append(row)
    return recent[::-1], len(lines)


def last_run_number(path: Path) -> int:
    """The number of the last recorded run (rNNNN), read from the file's tail; 0 when none."""
    tail = read_tail(path, LAST_ROW_BYTES).decode("utf-8", errors="replace").splitlines()
    for line in reversed(tail):
        number = parse_run_id(line.split("\t", 1)[0])
        if number is not None:
            return number
    return 0


def has_row(path: Path, run_id: str) -> bool:
    """Whether run_id already has a row (checks the tail only: rows are appended in run order)."""
    tail = read_tail(path, RECENT_ROWS_BYTES).decode("utf-8", errors="replace")
    return any(line.split("\t", 1)[0] == run_id for line in tail.splitlines())


def write_result(run_dir: Path, result: dict) -> None:
    atomic_write_json(run_dir / RESULT, {k: result.get(k) for k in RESULT_FIELDS})
