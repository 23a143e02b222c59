"""`ar.py history`: what was tried, one line per candidate, from results.tsv and .ar-changes.tsv.

A candidate is a run that is not a re-run: its baseline repeats and its confirmation fold into
its line (a confirmation decides its verdict). Reading two files keeps it fast at 10,000 runs.
"""

from __future__ import annotations

from pathlib import Path

from ..core.config import Config
from ..core.layout import CHANGES_INDEX, LEDGER
from ..rules.verdict import RERUN_PREFIXES
from ..state import changes, ledger

LINE_BYTES = 120  # one history line at most (an agent reads them after a context reset)
DEFAULT_LAST = 100  # candidates shown without --last
NOTE_SEP = " | "


class Tried:
    """One candidate and the re-runs folded into it (slots: 10,000 of them are built per command)."""

    __slots__ = (
        "run_id", "status", "verdict", "value", "delta", "margin", "summary", "note", "ledger_note", "against",
        "touched", "repeats", "confirmed_by",
    )  # fmt: skip

    def __init__(self, run_id, status, verdict, value, delta, margin, summary, note, ledger_note, against, touched):
        self.run_id, self.status, self.verdict, self.value = run_id, status, verdict, value
        self.delta, self.margin = delta, margin  # "" when unknown / without a noise spread
        self.summary, self.note, self.ledger_note = summary, note, ledger_note  # note: RUN_NOTE
        self.against, self.touched = against, touched
        self.repeats: list[str] = []
        self.confirmed_by = ""  # its confirmation run, which decided its verdict

    @property
    def kept(self) -> bool:
        return self.verdict == "advance"

    def cause(self) -> str:
        """Why a run that did not finish ok failed: the last part of its ledger note."""
        if self.status == "ok":
            return ""
        parts = [p for p in self.ledger_note.split(NOTE_SEP) if p and p != self.note]
        return parts[-1] if parts else ""


def _rerun_in_note(note: str) -> str:
    for prefix in RERUN_PREFIXES:
        if note.startswith(prefix):
            digits = note[len(prefix) :].split(" ", 1)[0]
            return "r" + digits if digits.isdigit() else ""
    return ""


def ledger_cells(path: Path) -> list[list[str]]:
    """results.tsv rows as lists of cells (ledger.COLUMNS order), read in one pass.

    A damaged ledger goes through ledger.read, whose one-line error names the line to fix.
    """
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").split("\n")
    except FileNotFoundError:
        return []
    rows = [line.rstrip("\r").split("\t") for line in lines[1:] if line.strip()]
    width = len(ledger.COLUMNS)
    if rows and len(rows[-1]) != width and lines[-1]:  # a row cut short by a kill: `run` drops it
        rows.pop()
    if lines[0].rstrip("\r") != ledger.HEADER.rstrip("\n") or any(len(r) != width for r in rows):
        ledger.read(path)  # raises the one-line UserError
    return rows


def _float(text: str):
    try:
        return float(text) if text else None
    except ValueError:
        return None


def _index_lines(expr: Path) -> dict[str, str]:
    """.ar-changes.tsv lines by run id, split into cells only when used (10,000 lines, a few shown)."""
    try:
        text = (Path(expr) / CHANGES_INDEX).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return {}
    return {line[: line.find("\t")]: line for line in text.split("\n")[1:] if line}


def tried(expr: Path, last: int | None = None) -> tuple[list[Tried], int]:
    """(the candidates in run order, re-runs folded in; how many there are in all).

    `last`: only the last N candidates are built (their re-runs come after them in the ledger).
    """
    col = {name: i for i, name in enumerate(ledger.COLUMNS)}
    i_id, i_status, i_verdict, i_value, i_note = (
        col["run_id"], col["status"], col["verdict"], col["primary_value"], col["note"]
    )  # fmt: skip
    x = {name: i for i, name in enumerate(changes.INDEX_COLUMNS)}
    x_rerun, x_delta, x_margin, x_summary, x_note, x_against, x_touched = (
        x["rerun_of"], x["delta"], x["margin"], x["summary"], x["note"], x["against"], x["touched"]
    )  # fmt: skip
    rows = ledger_cells(Path(expr) / LEDGER)
    starts = [i for i, row in enumerate(rows) if not row[i_note].startswith(RERUN_PREFIXES)]
    total = len(starts)
    first_row = starts[-last] if last and last < total else 0
    index, width = _index_lines(expr), len(changes.INDEX_COLUMNS)
    out, by_id, empty = [], {}, [""] * width
    for row in rows[first_row:]:
        run_id, note = row[i_id], row[i_note]
        line = index.get(run_id)
        indexed = line.split("\t") if line else None
        indexed = indexed if indexed and len(indexed) == width else None
        first = (indexed[x_rerun] if indexed else "") or _rerun_in_note(note)
        if first and first in by_id:
            cand = by_id[first]
            if note.startswith(RERUN_PREFIXES[1]):  # a confirmation decides
                cand.confirmed_by, cand.verdict = run_id, row[i_verdict]
                if indexed:
                    cand.delta, cand.margin = indexed[x_delta] or cand.delta, indexed[x_margin] or cand.margin
            else:
                cand.repeats.append(run_id)
            continue
        if first and first_row:  # the re-run of a candidate before the ones asked for
            continue
        indexed = indexed or empty
        cand = Tried(
            run_id,
            row[i_status],
            row[i_verdict],
            _float(row[i_value]),
            indexed[x_delta],
            indexed[x_margin],
            indexed[x_summary] or "-",
            indexed[x_note] or note.split(NOTE_SEP, 1)[0],
            note,
            indexed[x_against],
            indexed[x_touched],
        )
        by_id[run_id] = cand
        out.append(cand)
    return out, total


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
    last = args.last or DEFAULT_LAST
    filtered = args.kept or args.grep
    shown, total = tried(cfg.expr_dir, None if filtered else last)  # unfiltered: only the last N are built
    if not total:
        return ["no runs yet: `ar.py run` records the first"], 0
    if args.kept:
        shown = [c for c in shown if c.kept]
    if args.grep:
        word = args.grep.lower()
        shown = [c for c in shown if word in f"{line_of(c)} {c.summary} {c.ledger_note}".lower()]
    matched = len(shown) if filtered else total
    shown = shown[-last:]
    head = (
        f"# {len(shown)} of {matched} {'matching ' if filtered else ''}candidates"
        + (f" ({total} in all)" if filtered else "")
        + "; id verdict(x2: confirmed) change(σ: noise sigmas, + better; Δ: raw) what changed | note"
    )
    return [fit_bytes(head), *(line_of(c) for c in shown)], 0
