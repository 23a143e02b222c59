"""Read-side commands: status, tail, report."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from . import best as best_state
from . import ledger, verdict
from .checkpoints import read_pruned
from .config import Config, Session
from .errors import UserError
from .fsutil import read_tail
from .runs import parse_run_id, run_dir_of, run_numbers
from .snapshots import restore_target
from .steps import SENTINEL

COMPACT_LINES = 10  # status --compact prints at most this many lines
STATUS_NOTE_CAP = 80  # characters of a note in the status table
REPORT_NOTE_CAP = 60  # characters of a note in the report table
TAIL_BYTES = 256 * 1024  # `tail` reads no more than this of the log's end
TAIL_LINE_CAP = 300  # characters per printed log line


def _fmt(value) -> str:
    if value is None:
        return "-"
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def status(cfg: Config, args) -> tuple[list[str], int]:
    rows = ledger.read(cfg.expr_dir / "results.tsv")
    best = best_state.read_best(cfg.expr_dir)
    session = Session.load(cfg.expr_dir)
    counts = Counter(r["verdict"] for r in rows)
    lines = [f"experiment {cfg.slug}: {cfg.primary_metric} ({cfg.primary_direction}), {len(rows)} runs"]
    if best:
        lines.append(f"best {_fmt(best['primary']['value'])} at {best['run_id']}")
    else:
        lines.append("best: none yet")
    lines.append("verdicts: " + (", ".join(f"{v}={counts[v]}" for v in verdict.VERDICTS if counts[v]) or "none"))
    lines.append(session.describe())
    if rows:
        recent, _ = ledger.since_last_advance(cfg.expr_dir / "results.tsv")
        stop = verdict.termination(
            session,
            recent,
            len(rows),
            rows[-1]["primary_value"] if rows[-1]["valid"] == "true" else None,
            cfg.primary_direction,
        )
        if stop:
            lines.append(f"STOP: terminated_by={stop}")
    train = cfg.expr_dir / "train.py"
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
        lines.append(f"BLOCKED: {SENTINEL} exists (processes survived a kill); see the file")
    from .waves_run import status_lines  # slots, the wave in flight, the queue

    lines += status_lines(cfg, session)
    if args.compact:
        return lines[:COMPACT_LINES], 0
    lines.append("")
    lines.append("run_id\tstatus\tverdict\tprimary\tnote")
    for r in rows[-args.last :]:
        lines.append(
            f"{r['run_id']}\t{r['status']}\t{r['verdict']}\t{_fmt(r['primary_value'])}\t{r['note'][:STATUS_NOTE_CAP]}"
        )
    return lines, 0


def _run_dir(cfg: Config, run_id: str) -> Path:
    if parse_run_id(run_id) is None:
        raise UserError(f"--run {run_id!r} is not a run id like r0003")
    path = run_dir_of(cfg.expr_dir, run_id)
    if not path.is_dir():
        known = [run_dir_of(cfg.expr_dir, n).name for n in run_numbers(cfg.expr_dir)]
        hint = f"known: {known[0]}..{known[-1]}" if known else "no runs yet"
        raise UserError(f"no run {run_id} in this experiment ({hint})")
    return path


TRACEBACK_RE = re.compile(r"^Traceback \(most recent call last\):")


def tail(cfg: Config, args) -> tuple[list[str], int]:
    """From the last traceback to the end of the log (or the last N lines), read from the file's tail only."""
    log = _run_dir(cfg, args.run) / "run.log"
    if not log.exists():
        return [f"{args.run}: no run.log"], 0
    text = read_tail(log, TAIL_BYTES).decode("utf-8", errors="replace")
    lines = text.replace("\r", "\n").splitlines()
    starts = [i for i, line in enumerate(lines) if TRACEBACK_RE.match(line)]
    region = lines[starts[-1] :] if starts else lines
    region = region[-args.lines :]
    return [line[:TAIL_LINE_CAP] for line in region] or [f"{args.run}: run.log is empty"], 0


def report(cfg: Config, args) -> tuple[list[str], int]:
    rows = ledger.read(cfg.expr_dir / "results.tsv")
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
    out += ["", "| run | status | verdict | primary | best so far | note |", "|---|---|---|---|---|---|"]
    running = None
    for r in rows:
        v = r["primary_value"]
        if r["verdict"] == "advance" and v is not None:
            running = v
        out.append(
            f"| {r['run_id']} | {r['status']} | {r['verdict']} | {_fmt(v)} | {_fmt(running)} | {r['note'][:REPORT_NOTE_CAP].replace('|', '/')} |"
        )
    if args.plot:
        out += ["", plot(cfg, rows)]
    return out, 0


def plot(cfg: Config, rows: list[dict]) -> str:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "(--plot needs matplotlib in this environment: pip install matplotlib)"
    xs = [i + 1 for i, r in enumerate(rows) if r["primary_value"] is not None]
    ys = [r["primary_value"] for r in rows if r["primary_value"] is not None]
    kept = [(i + 1, r["primary_value"]) for i, r in enumerate(rows) if r["verdict"] == "advance"]
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.scatter(xs, ys, s=12, color="0.6", label="run")
    if kept:
        kx, ky = zip(*kept)
        ax.scatter(kx, ky, s=30, color="tab:green", label="kept", zorder=3)
        ax.step(list(kx) + [len(rows)], list(ky) + [ky[-1]], where="post", color="tab:green", label="best so far")
    ax.set_xlabel("run")
    ax.set_ylabel(cfg.primary_metric)
    ax.legend()
    path = cfg.expr_dir / "progress.png"
    fig.savefig(path, dpi=100, bbox_inches="tight")
    return f"![progress]({path.name})"
