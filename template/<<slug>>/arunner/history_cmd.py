"""`ar.py history`: what was tried, one line per candidate, from results.tsv and .ar-changes.tsv.

A candidate is a run that is not a re-run: its baseline repeats and its confirmation fold into
its line (a confirmation decides its verdict). Reading two files keeps it fast at 10,000 runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from . import changes, ledger
from .config import Config
from .verdict import RERUN_PREFIXES

LINE_BYTES = 120  # one history line at most (an agent reads them after a context reset)
DEFAULT_LAST = 100  # candidates shown without --last
NOTE_SEP = " | "


@dataclass
class Tried:
    """One candidate and the re-runs folded into it."""

    run_id: str
    status: str
    verdict: str  # after its confirmation, when it had one
    value: float | None
    delta: str  # "" when unknown
    margin: str  # "" without a noise spread
    summary: str
    note: str  # RUN_NOTE
    ledger_note: str
    against: str
    touched: str
    repeats: list[str] = field(default_factory=list)
    confirmed_by: str = ""

    @property
    def kept(self) -> bool:
        return self.verdict == "advance"

    def cause(self) -> str:
        """Why a run that did not finish ok failed: the last part of its ledger note."""
        if self.status == "ok":
            return ""
        parts = [p for p in self.ledger_note.split(NOTE_SEP) if p and p != self.note]
        return parts[-1] if parts else ""


def rerun_of(row: dict, indexed: dict | None) -> str:
    if indexed and indexed.get("rerun_of"):
        return indexed["rerun_of"]
    note = row.get("note") or ""
    for prefix in RERUN_PREFIXES:
        if note.startswith(prefix):
            digits = note[len(prefix) :].split(" ", 1)[0]
            return "r" + digits if digits.isdigit() else ""
    return ""


def tried(expr: Path) -> list[Tried]:
    """Every candidate in run order, re-runs folded in."""
    rows = ledger.read(Path(expr) / "results.tsv")
    index = changes.read_index(expr)
    out, by_id = [], {}
    for row in rows:
        run_id = row["run_id"]
        indexed = index.get(run_id)
        first = rerun_of(row, indexed)
        if first and first in by_id:
            cand = by_id[first]
            if (row.get("note") or "").startswith(RERUN_PREFIXES[1]):  # a confirmation decides
                cand.confirmed_by, cand.verdict = run_id, row["verdict"]
                if indexed:
                    cand.delta, cand.margin = indexed["delta"] or cand.delta, indexed["margin"] or cand.margin
            else:
                cand.repeats.append(run_id)
            continue
        indexed = indexed or {}
        note = indexed.get("note") or (row.get("note") or "").split(NOTE_SEP, 1)[0]
        cand = Tried(
            run_id,
            row["status"],
            row["verdict"],
            row["primary_value"],
            indexed.get("delta", ""),
            indexed.get("margin", ""),
            indexed.get("summary") or "-",
            note,
            row.get("note") or "",
            indexed.get("against", ""),
            indexed.get("touched", ""),
        )
        by_id[run_id] = cand
        out.append(cand)
    return out


def _number(text: str, fmt: str) -> str:
    try:
        return format(float(text), fmt)
    except ValueError:
        return ""


def delta_text(cand: Tried) -> str:
    """`+2.1σ` (improvement in noise sigmas, + is better) when a spread is known, else the raw change `Δ-0.012`."""
    if cand.margin:
        return _number(cand.margin, "+.1f") + "σ"
    if cand.delta:
        return "Δ" + _number(cand.delta, "+.3g")
    return "-"


def fit_bytes(text: str, cap: int = LINE_BYTES) -> str:
    data = text.encode("utf-8")
    if len(data) <= cap:
        return text
    return data[: cap - 3].decode("utf-8", errors="ignore") + "..."


def line_of(cand: Tried) -> str:
    verdict = cand.verdict + (f"x{2}" if cand.confirmed_by else "")
    extra = f" +{len(cand.repeats)}rep" if cand.repeats else ""
    note = NOTE_SEP.join(p for p in (cand.note, cand.cause()) if p)
    text = f"{cand.run_id} {verdict:<8} {delta_text(cand):>7} {cand.summary}{extra}"
    return fit_bytes(text + (f"{NOTE_SEP}{note}" if note else ""))


def history(cfg: Config, args) -> tuple[list[str], int]:
    everything = tried(cfg.expr_dir)
    shown = everything
    if args.kept:
        shown = [c for c in shown if c.kept]
    if args.grep:
        word = args.grep.lower()
        shown = [c for c in shown if word in f"{line_of(c)} {c.summary} {c.ledger_note}".lower()]
    last = args.last or DEFAULT_LAST
    head = (
        f"# {len(shown[-last:])} of {len(everything)} candidates"
        + (f" (--last {last})" if len(shown) > last else "")
        + "; id verdict(x2: confirmed) change(σ: noise sigmas, + better; Δ: raw) what changed | note"
    )
    if not everything:
        return ["no runs yet: `ar.py run` records the first"], 0
    return [fit_bytes(head), *(line_of(c) for c in shown[-last:])], 0
