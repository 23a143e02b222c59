"""The running summary of results.tsv (.ar-tally.json): what termination, the plateau count and
`status` need, kept up to date as each row goes in, so no run re-reads a ledger of 10,000 rows.

  rows        rows in the ledger
  plateau     ok candidate runs since the last advance (re-runs of the noise rule aside)
  last_value  the last row's primary value when it was valid, else null
  counts      {"kind/verdict": rows}, kind candidate / repeat / confirm (verdict.row_kind)
  size, last_run  the ledger's size in bytes and its last run id when the summary was written

The summary is trusted only while the ledger still has that size and last run id; anything
else (a kill between the row and the summary, a repaired tail, a hand edit) rebuilds it from
one full read. The fold (`after`) is pure: the rebuild and the running update are one rule.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

from ..core.errors import UserError
from ..core.fsutil import atomic_write_json, read_json
from ..core.layout import LEDGER, TALLY_FILE
from ..core.runs import format_run_id
from ..rules import verdict
from . import ledger


class Tally(NamedTuple):
    rows: int = 0
    plateau: int = 0
    last_value: float | None = None
    counts: dict = {}  # {"kind/verdict": rows}; never changed in place: after() builds a new one
    size: int = 0
    last_run: str = ""

    def after(self, run_id: str, status: str, verdict_: str, note: str, value: float | None) -> Tally:
        """The summary with one more row (value: the primary when the run was valid, else None)."""
        kind = verdict.row_kind(note or "")
        if verdict_ == "advance":
            plateau = 0
        else:
            plateau = self.plateau + (1 if status == "ok" and kind == "candidate" else 0)
        key = f"{kind}/{verdict_}"
        counts = {**self.counts, key: self.counts.get(key, 0) + 1}
        return self._replace(rows=self.rows + 1, plateau=plateau, last_value=value, counts=counts, last_run=run_id)

    def after_result(self, result: dict) -> Tally:
        value = result["primary"]["value"] if result["valid"] else None
        return self.after(result["run_id"], result["status"], result["verdict"], result.get("note") or "", value)

    def by_kind(self) -> dict:
        """{(kind, verdict): rows}, as messages.verdict_counts reads it."""
        return {tuple(key.split("/", 1)): n for key, n in self.counts.items()}


def _ledger(expr: Path) -> Path:
    return Path(expr) / LEDGER


def _size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0


def rebuild(expr: Path) -> Tally:
    """The summary from one full read of the ledger (written back for the next run)."""
    path = _ledger(expr)
    tally = Tally()
    for row in ledger.read(path):
        value = row["primary_value"] if row["valid"] == "true" else None
        tally = tally.after(row["run_id"], row["status"], row["verdict"], row["note"], value)
    tally = tally._replace(size=_size(path))
    save(expr, tally)
    return tally


def load(expr: Path) -> Tally:
    """The summary of the ledger as it is now (rebuilt when it no longer matches the file)."""
    path = _ledger(expr)
    try:
        data = read_json(Path(expr) / TALLY_FILE, "ledger summary", "delete it", default=None)
        tally = Tally(**data) if isinstance(data, dict) else None
    except (UserError, TypeError, ValueError, OSError):  # a damaged summary is rebuilt, never an error
        tally = None
    size = _size(path)
    if (
        tally is not None
        and tally.size == size
        and (size == 0 or format_run_id(ledger.last_run_number(path)) == (tally.last_run or format_run_id(0)))
    ):
        return tally
    return rebuild(expr)


def save(expr: Path, tally: Tally) -> None:
    # not fsynced: load() checks the summary against the ledger (size, last run) and rebuilds it
    atomic_write_json(Path(expr) / TALLY_FILE, tally._asdict(), durable=False)


def recorded(expr: Path, before: Tally, result: dict) -> Tally:
    """After `result`'s row went into the ledger: the summary moves on by that row."""
    tally = before.after_result(result)._replace(size=_size(_ledger(expr)))
    save(expr, tally)
    return tally
