"""What `ar.py run` prints: one line per run it made (kind first), then what was decided.

A single iteration (at most SUMMARY_BYTES, an agent reads it every time):
  r0004 candidate ok/revert val_loss=1.0471 (3.9s of 30s)
  r0005 confirm timeout val_loss=- (30.0s of 30s) · run 8/20 · plateau 1/8
  not confirmed (confirmation r0005 timed out): train.py restored to the best snapshot; note: ...
  STOP: terminated_by=...                                             (only when the loop should stop)
A wave: one line per run (at most WAVE_RUN_LINES, then a count) and one `wave ...` line.
Re-runs (repeat, remeasure) show their status only: their verdict never changes the best.
"""

from __future__ import annotations

from ..core.config import Config, Experiment
from ..core.errors import UserError
from ..core.layout import RUN_LOG
from ..core.logtail import exception_line
from ..core.text import one_line
from ..loop.iteration import Iteration
from ..state import best as best_state
from ..state import messages, noise_groups, tally
from ..state.messages import crash_hint, fmt_seconds

SUMMARY_BYTES = 400  # all of a single iteration's stdout
SUMMARY_LINE_CAP = 320  # characters of the decision line at most
SUMMARY_EXCEPTION_CAP = 90  # characters of a crash's `Type: message` (result.json has more)
RUN_LINES = 6  # run lines of a single iteration; the rest are counted
WAVE_RUN_LINES = 7  # run lines of a wave (with the summary: 8 lines); the rest are counted
WAVE_LINE_CAP = 86  # characters of one run line of a wave (7 lines + summary stay under 800 bytes)
WAVE_SUMMARY_CAP = 130  # characters of the wave's summary line
RERUN_KINDS = ("repeat", "remeasure")  # measure a train.py again: their verdict is never a decision
FAILED = ("crash", "timeout", "unclean", "interrupted")
_WHAT_FAILED = {
    "crash": "crashed",
    "timeout": "timed out",
    "unclean": "left processes",
    "interrupted": "was interrupted",
}


def lines(exp: Experiment, done: Iteration) -> list[str]:
    """What `ar.py run` prints for what it did."""
    cfg, session = exp.cfg, exp.session
    runs = [(r.result(), r.kind) for r in done.runs]
    if done.wave:
        labels = {r.run_id: r.candidate for r in done.runs if r.candidate}
        return wave_lines(runs, labels, done.wave, done.slot_count, done.requeued)
    if not runs:
        return ["nothing ran"]
    extra = []
    found = noise_groups.spread(noise_groups.load(cfg.expr_dir))
    if found and any(kind == "repeat" for _, kind in runs):  # the spread the first baseline's runs measured
        extra.append(f"noise: sigma={found.sigma:.4g} (df {found.df}), margin k={noise_groups.margin_k(session):g}")
    counts = messages.counts(session, tally.load(cfg.expr_dir))
    return iteration_lines(cfg, runs, counts, best_state.read_best(cfg.expr_dir), extra)


def value_text(result: dict) -> str:
    p = result["primary"]
    v = p["value"]
    return f"{p['name']}={v:.6g}" if isinstance(v, float) else f"{p['name']}={v if v is not None else '-'}"


def run_line(result: dict, kind: str, with_budget: bool = True) -> str:
    """`r0005 confirm ok/advance val_loss=1.04 (3.8s of 30s)`; a repeat or remeasure shows its status alone."""
    outcome = result["status"] if kind in RERUN_KINDS else f"{result['status']}/{result['verdict']}"
    budget = fmt_seconds(result.get("budget_seconds")) if with_budget and kind not in RERUN_KINDS else ""
    wall = f"{result['wall_seconds']:.1f}s" + (f" of {budget}" if budget else "")
    return f"{result['run_id']} {kind} {outcome} {value_text(result)} ({wall})"


def deciding(runs: list) -> dict:
    """The run whose verdict is the iteration's decision: the last candidate or confirmation."""
    return next((r for r, kind in reversed(runs) if kind in ("candidate", "confirm")), runs[-1][0])


def _decision(cfg: Config, runs: list, best: dict | None) -> tuple[list[str], str]:
    """(parts of the decision line, the note said with it)."""
    result = deciding(runs)
    kind = next(k for r, k in runs if r is result)
    note = result.get("note") or ""
    if result["verdict"] == "advance":
        parts = [f"new best (previous {result.get('previous_best_run_id') or 'none'}); train.py kept"]
        if best and best.get("run_id") == result["run_id"] and (best.get("n") or 1) > 1:
            parts[0] += f"; best: {value_text(best)}, the mean of {best['n']} runs"
        return parts, note
    restored = (
        "train.py restored to the best snapshot"
        if result.get("previous_best_run_id")
        else "no best run yet: train.py left as it is"
    )
    if kind == "confirm" and result["status"] in FAILED:  # never read as a failure of the edit itself
        what = _WHAT_FAILED.get(result["status"], result["status"])
        return [f"not confirmed (confirmation {result['run_id']} {what}): {restored}"], note
    parts = [restored]
    if result["status"] in FAILED and result["status"] != "interrupted":
        exception = exception_line(cfg.layout.runs / result["run_id"] / RUN_LOG)
        hint = [crash_hint(cfg, result)]  # before the rest: it must survive the cut
        if result["status"] == "timeout":  # no traceback to point at: the knob that ends training
            hint = [messages.timeout_hint(cfg, result)]
        if exception and result["status"] == "crash":
            hint.insert(0, f"crash: {one_line(exception, SUMMARY_EXCEPTION_CAP, '...')}")
            note = " | ".join(n for n in note.split(" | ") if n != exception)  # said once
        parts = hint + parts
    return parts, note


def iteration_lines(cfg: Config, runs: list, counts: str, best: dict | None, extra: list[str]) -> list[str]:
    """Lines of a single iteration: `runs` is [(result, kind)] in run order; `counts` ends the last run line;
    `extra` is said after the decision, before the note."""
    shown = [run_line(r, k) for r, k in runs[:RUN_LINES]]
    if len(runs) > RUN_LINES:
        shown.append(f"... and {len(runs) - RUN_LINES} more runs")
    shown[-1] += counts  # after the last run: the counts include the re-runs that followed the candidate
    parts, note = _decision(cfg, runs, best)
    parts += extra
    if note:
        parts.append(f"note: {note}")
    last = runs[-1][0]
    stop = [f"STOP: terminated_by={last['terminated_by']}"] if last.get("should_terminate") else []
    room = SUMMARY_BYTES - sum(len(s.encode()) + 1 for s in (*shown, *stop)) - 1
    if room < 40:
        raise UserError(f"internal: {len(runs)} runs leave no room for the decision line")  # RUN_LINES keeps room
    second = one_line("; ".join(parts), min(SUMMARY_LINE_CAP, room), "...")
    while len(second.encode()) > room:  # non-ASCII notes: cut by bytes
        second = second[:-4] + "..."
    return [*shown, second, *stop]


def wave_lines(runs: list, labels: dict, wave_id: str, slot_count: int, requeued: list[str]) -> list[str]:
    """One line per run of the wave (its candidates, confirmations, re-runs) and one summary line: under 800 bytes.

    `labels`: {run id: queued candidate id} of the wave's candidates.
    """
    lines = []
    for res, kind in runs[:WAVE_RUN_LINES]:
        cand = labels.get(res["run_id"], "")
        lines.append(one_line(f"{run_line(res, kind, with_budget=False)} {cand}".rstrip(), WAVE_LINE_CAP))
    if len(runs) > WAVE_RUN_LINES:
        lines[-1] = f"... and {len(runs) - WAVE_RUN_LINES + 1} more (ar.py status --last {len(runs)})"
    results = [r for r, _ in runs]
    candidates = sum(1 for _, k in runs if k == "candidate")
    winner = next((r for r in results if r["verdict"] == "advance"), None)
    summary = f"wave {wave_id}: {candidates} candidate(s) on {slot_count} slot(s); "
    if winner:
        summary += f"winner {winner['run_id']} is the new best, train.py is its snapshot"
    else:
        summary += "no advance, train.py is the best snapshot"
    if requeued:
        summary += f"; queued again: {','.join(requeued)}"
    crashed = [r["run_id"] for r, k in runs if k == "candidate" and r["status"] in ("crash", "timeout", "unclean")]
    if crashed:
        summary += f"; see: ar.py tail --run {crashed[0]}"
    if results and results[-1]["should_terminate"]:
        summary += f"; STOP: terminated_by={results[-1]['terminated_by']}"
    return [*lines, one_line(summary, WAVE_SUMMARY_CAP)]
