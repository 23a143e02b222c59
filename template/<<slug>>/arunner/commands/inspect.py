"""Read-side commands: status, tail, report."""

from __future__ import annotations

from pathlib import Path

from ..core.config import Config, Experiment, Session, run_budget
from ..core.errors import UserError
from ..core.fsutil import atomic_write_text, read_json
from ..core.layout import LEDGER, PLOT, RESULT, RUN_LOG, SENTINEL
from ..core.logtail import fold_frames, last_traceback, log_lines
from ..core.runs import parse_run_id, run_dir_of, run_key, run_numbers
from ..integrity import checks
from ..rules import verdict
from ..state import best as best_state
from ..state import ledger, noise_groups, tally
from ..state.checkpoints import read_pruned
from ..state.messages import head_line, shown_path, verdict_counts
from ..state.snapshots import restore_target

COMPACT_LINES = 10  # status --compact prints at most this many lines
STATUS_NOTE_CAP = 80  # characters of a note in the status table
REPORT_NOTE_CAP = 60  # characters of a note in the report table
TAIL_LINE_CAP = 300  # characters per printed log line


def _fmt(value) -> str:
    if value is None:
        return "-"
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def status(cfg: Config, args) -> tuple[list[str], int]:
    summary = tally.load(cfg.expr_dir)  # never a full read of a ledger that may hold 10,000 rows
    best = best_state.read_best(cfg.expr_dir)
    exp = Experiment.load(cfg)
    session = exp.session
    lines = [
        f"experiment {cfg.slug}: {cfg.primary_metric} ({cfg.primary_direction}), {summary.rows} runs, "
        f"budget {run_budget(exp, None)}s per run"
    ]
    last = _last_result(cfg, summary.last_run)
    if last:
        lines.append("last: " + head_line(last, session, summary))
    if best:
        lines.append(f"best {_fmt(best['primary']['value'])} at {best['run_id']}")
    else:
        lines.append("best: none yet")
    lines.append(verdict_counts(summary.by_kind()))
    lines.append(session.describe())
    lines.append(checks.describe(exp))
    lines += checks.status_lines(cfg)  # the runner's seals, and every rule change a person should see
    lines.append(noise_groups.status_line(cfg.expr_dir, session))
    if summary.rows:
        stop = verdict.termination(session, summary.plateau, summary.rows, summary.last_value, cfg.primary_direction)
        if stop:
            lines.append(f"STOP: terminated_by={stop}")
    train = cfg.layout.train_py
    same = train.exists() and train.read_bytes() == restore_target(cfg.expr_dir, best)
    base = "best snapshot" if best else "baseline"
    lines.append(
        f"train.py {'equals' if same else 'DIFFERS from'} the {base}" + ("" if same else " (uncommitted edit)")
    )
    pruned = read_pruned(cfg.expr_dir)
    if pruned:
        lines.append(
            f"checkpoints pruned so far: {pruned['count']} (last: {', '.join(pruned['last'])}); "
            f"kept: the best and the latest {session.keep_checkpoints}"
        )
    if (cfg.expr_dir / SENTINEL).exists():
        lines.append(
            f"BLOCKED: {shown_path(cfg, cfg.expr_dir / SENTINEL)} exists (processes survived a kill); see the file"
        )
    from .proposals import status_lines  # slots, the wave in flight, the queue

    lines += status_lines(exp)
    if args.compact:
        return lines[:COMPACT_LINES], 0
    lines.append("")
    lines.append("run_id\tstatus\tverdict\tprimary\tnote")
    for r in ledger.last_rows(cfg.expr_dir / LEDGER, args.last):
        lines.append(
            f"{r['run_id']}\t{r['status']}\t{r['verdict']}\t{_fmt(r['primary_value'])}\t{r['note'][:STATUS_NOTE_CAP]}"
        )
    return lines, 0


def _last_result(cfg: Config, run_id: str) -> dict | None:
    """The last ledger row's result.json (None when there is none or it cannot be read)."""
    if not run_id:
        return None
    path = run_dir_of(cfg.expr_dir, run_id) / RESULT
    try:
        result = read_json(path, "run result", "delete that run's row or folder", default=None)
    except UserError:
        return None
    return result if isinstance(result, dict) and "primary" in result else None


def _run_dir(cfg: Config, run_id: str) -> Path:
    if parse_run_id(run_id) is None:
        raise UserError(f"--run {run_id!r} is not a run id like r0003")
    path = run_dir_of(cfg.expr_dir, run_id)
    if not path.is_dir():
        known = [run_dir_of(cfg.expr_dir, n).name for n in run_numbers(cfg.expr_dir)]
        hint = f"known: {known[0]}..{known[-1]}" if known else "no runs yet"
        raise UserError(f"no run {run_id} in this experiment ({hint})")
    return path


def tail(cfg: Config, args) -> tuple[list[str], int]:
    """The last traceback of the log (frames inside installed packages and the stdlib folded),
    else its last N lines; read from the file's tail only."""
    run_dir = _run_dir(cfg, args.run)
    log = run_dir / RUN_LOG
    if not log.exists():
        return [f"{args.run}: no run.log ({shown_path(cfg, log)})"], 0
    lines = log_lines(log)
    region = fold_frames(last_traceback(lines))
    head = []
    if region:
        head = [
            f"# {args.run}'s train.py is {shown_path(cfg, run_dir / 'train.py')}: "
            "the line numbers of train.py below refer to it"
        ]
    region = (region or lines)[-args.lines :]
    return head + [line[:TAIL_LINE_CAP] for line in region] or [f"{args.run}: run.log is empty"], 0


def report(cfg: Config, args) -> tuple[list[str], int]:
    if getattr(args, "html", False):  # one self-contained page: report_html
        from .report_html import write

        path = write(Experiment.load(cfg))
        return [f"wrote {shown_path(cfg, path)}"], 0
    rows = ledger.read(cfg.layout.ledger)
    best = best_state.read_best(cfg.expr_dir)
    out = [
        f"# {cfg.slug}",
        "",
        f"Goal: {cfg.goal}",
        "",
        f"Primary: `{cfg.primary_metric}` ({cfg.primary_direction}); runs: {len(rows)}",
    ]
    if best:
        out.append(f"Best: **{_fmt(best['primary']['value'])}** at {best['run_id']}")
    if cfg.parent_expr:
        out.append(f"Lineage: chained from `{cfg.parent_expr}` (checkpoint `{cfg.parent_ckpt}`)")
    out += checks.report_lines(cfg)  # rule changes (acceptances, integrity mode), from a terminal or not
    holdout = checks.holdout_by_run(cfg.expr_dir, [r["run_id"] for r in rows])  # for a person, never `run`
    hidden = sorted({name for values in holdout.values() for name in values})
    head = "".join(f" {name} (holdout) |" for name in hidden)
    out += ["", f"| run | status | verdict | primary |{head} best so far | note |", "|---" * (6 + len(hidden)) + "|"]
    running = None
    for r in _with_best_means(rows, noise_groups.load(cfg.expr_dir)):  # a best measured again: its mean, as Best says
        v = r["primary_value"]
        if r["verdict"] == "advance" and v is not None:
            running = v
        running = r.get("best_value", running)
        cells = "".join(f" {_fmt(holdout.get(r['run_id'], {}).get(name))} |" for name in hidden)
        out.append(
            f"| {r['run_id']} | {r['status']} | {r['verdict']} | {_fmt(v)} |{cells} {_fmt(running)} | {r['note'][:REPORT_NOTE_CAP].replace('|', '/')} |"
        )
    said = []
    if args.plot:
        out += ["", plot(cfg, rows)]
        if (cfg.expr_dir / PLOT).exists():
            said.append(f"wrote {shown_path(cfg, cfg.expr_dir / 'progress.png')}")
        else:
            said.append(out[-1])
    path = cfg.expr_dir / "report.md"
    atomic_write_text(path, "\n".join(out) + "\n")
    return [f"wrote {shown_path(cfg, path)} ({len(rows)} runs)", *said], 0


def plot(cfg: Config, rows: list[dict]) -> str:
    """progress.png: every run, the best as a step line with its noise band (plot.draw)."""
    from . import plot as figure

    state = noise_groups.load(cfg.expr_dir)
    found = noise_groups.spread(state)
    rows = _with_best_means(rows, state)
    holdout = checks.holdout_by_run(cfg.expr_dir, [r["run_id"] for r in rows])
    names = sorted({name for values in holdout.values() for name in values})
    extra = {}
    for name in names:  # a non-finite value is kept as text: not drawn
        values = [(i + 1, holdout.get(r["run_id"], {}).get(name)) for i, r in enumerate(rows)]
        extra[f"{name} (holdout)"] = [(x, v) for x, v in values if isinstance(v, (int, float))]
    path = cfg.expr_dir / PLOT
    session = Session.load(cfg.expr_dir)
    try:
        figure.draw(
            rows,
            path,
            metric=cfg.primary_metric,
            direction=cfg.primary_direction,
            sigma=None if session.strict or not found else found.sigma,
            k=noise_groups.margin_k(session),
            extra=extra,
        )
    except UserError as exc:
        return f"({exc})"
    return f"![progress]({path.name})"


def _with_best_means(rows: list[dict], state: dict) -> list[dict]:
    """Rows with `best_value` where a best measured several times got its mean (after its last run)."""
    advanced = {r["run_id"] for r in rows if r["verdict"] == "advance"}
    at = {}
    for group in state["groups"].values():
        if advanced & set(group):
            at[max(group, key=run_key)] = sum(group.values()) / len(group)
    return [{**r, "best_value": at[r["run_id"]]} if r["run_id"] in at else r for r in rows]
