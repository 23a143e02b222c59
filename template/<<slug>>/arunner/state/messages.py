"""What the runner tells the agent, worded so it can act on it without guessing: paths and
commands runnable from the project root as printed, the budget and the counts toward
termination, the refusal after a stop, and what a run's train.py was (baseline, unchanged).
"""

from __future__ import annotations

from pathlib import Path

from ..core.config import Config, Experiment, Session
from ..core.errors import UserError
from ..core.layout import TRAIN_PY
from ..rules import verdict
from . import tally
from .tally import Tally

SEP = " · "  # between the parts of a run's first line


def shown_path(cfg: Config, path: Path) -> str:
    """`path` as the agent types it from the project root (relative when inside it)."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(cfg.project_root.resolve()))
    except ValueError:
        return str(path)


def ar_command(cfg: Config, *args: str) -> str:
    """`python .autoresearch/<slug>/ar.py <args>`, runnable from the project root."""
    return " ".join(["python", f"{shown_path(cfg, cfg.expr_dir)}/ar.py", *args])


def fmt_seconds(value) -> str:
    return f"{value:g}s" if isinstance(value, (int, float)) else ""


def counts(session: Session, summary: Tally) -> str:
    """` · run 4/10 · plateau 2/4`: the run count (against max_runs) and the plateau count, when set."""
    parts = [f"run {summary.rows}" + (f"/{session.max_runs}" if session.max_runs and not session.unlimited else "")]
    if session.plateau and not session.unlimited:
        parts.append(f"plateau {summary.plateau}/{session.plateau}")
    return "".join(SEP + p for p in parts)


def head_line(result: dict, session: Session, summary: Tally) -> str:
    """`r0004 ok/revert val_loss=0.85 (19.0s of 20s) · run 4/10 · plateau 2/4` (`summary`: the ledger's, this run in)."""
    p = result["primary"]
    value = p["value"]
    shown = f"{value:.6g}" if isinstance(value, float) else (value if value is not None else "-")
    budget = fmt_seconds(result.get("budget_seconds"))
    wall = f"{result['wall_seconds']:.1f}s" + (f" of {budget}" if budget else "")
    return f"{result['run_id']} {result['status']}/{result['verdict']} {p['name']}={shown} ({wall})" + counts(
        session, summary
    )


def verdict_counts(counts: dict) -> str:
    """`verdicts: advance=1, revert=2 over 3 candidates; re-runs: 4 repeats, 1 confirmation (advance=1)`.

    `counts` is {(kind, verdict): runs} with kind candidate / repeat / confirm (verdict.row_kind).
    """

    def by_verdict(kind: str) -> str:
        return ", ".join(f"{v}={counts[(kind, v)]}" for v in verdict.VERDICTS if counts.get((kind, v)))

    def total(kind: str) -> int:
        return sum(n for (k, _), n in counts.items() if k == kind)

    candidates = total("candidate")
    line = f"verdicts: {by_verdict('candidate')} over {candidates} candidate(s)" if candidates else "verdicts: none"
    repeats, confirms = total("repeat"), total("confirm")
    if repeats or confirms:
        line += f"; re-runs: {repeats} repeat(s), {confirms} confirmation(s)"
        if confirms:
            line += f" ({by_verdict('confirm')})"
    return line


def stop_in_force(exp: Experiment) -> str | None:
    """The termination condition that already holds before another run (None: runs may go on)."""
    cfg, session = exp.cfg, exp.session
    summary = tally.load(cfg.expr_dir)
    if not summary.rows and not session.stopped:
        return None
    return verdict.termination(session, summary.plateau, summary.rows, summary.last_value, cfg.primary_direction)


def refuse_after_stop(exp: Experiment) -> None:
    """`run` after STOP: one line, nothing changed, until the session changes or --force."""
    cfg = exp.cfg
    stop = stop_in_force(exp)
    if stop is None:
        return
    change = {
        "manual": ar_command(cfg, "session", "--resume"),
        "max_runs": ar_command(cfg, "session", "--max-runs", "N"),
        "plateau": ar_command(cfg, "session", "--plateau", "N"),
        "primary_threshold": ar_command(cfg, "session", "--threshold", "X"),
    }.get(stop, ar_command(cfg, "session", "--unlimited"))
    raise UserError(
        f"run refused: the session has ended (STOP: terminated_by={stop}); "
        f"write the report ({ar_command(cfg, 'report')}) and end, "
        f"or a person changes the session ({change}) or passes --force"
    )


def snapshot_remark(source: bytes, baseline: bytes | None, best: dict | None, best_source: bytes | None) -> str:
    """What this run's train.py is, when it is no new idea: the rendered baseline, or the best unchanged."""
    if best and best_source is not None and source == best_source:
        return f"train.py is unchanged from the best ({best['run_id']}): this re-runs it"
    if baseline is not None and source == baseline:
        return "baseline: train.py as rendered"
    return ""


def crash_hint(cfg: Config, result: dict) -> str:
    """Where a crashed edit lives and how to see its traceback, as commands from the project root."""
    run_id = result["run_id"]
    snapshot = shown_path(cfg, cfg.layout.runs / run_id / TRAIN_PY)
    return (
        f"edit kept at {snapshot} (the traceback's train.py line numbers refer to it); "
        f"see: {ar_command(cfg, 'tail', '--run', run_id)}"
    )


def timeout_hint(cfg: Config, result: dict) -> str:
    """A run cut at the budget has no traceback: name the knob that makes training end in time."""
    budget = fmt_seconds(result.get("budget_seconds")) or "the budget"
    train_py = shown_path(cfg, cfg.layout.train_py)
    if cfg.length_key:
        now = cfg.cli_args.get(cfg.length_key) if isinstance(cfg.cli_args, dict) else None
        was = f" (the baseline has {now!r})" if now is not None else ""
        knob = f"set {cfg.length_key!r} in CLI_OVERRIDES of {train_py} to a value that ends within {budget}{was}"
    else:
        knob = f"set the host's step or epoch limit in CLI_OVERRIDES of {train_py} so it ends within {budget}"
    what = "the baseline" if not result.get("previous_best_run_id") else "training"
    see = ar_command(cfg, "tail", "--run", result["run_id"])
    return f"timeout: {what} did not end within {budget}, so no metric was read; {knob}; see: {see}"
