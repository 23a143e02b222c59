"""One `ar.py run`, start to finish, and the repair of runs a killed runner left behind.

Order of a run (each state change is atomic; a SIGKILL between any two steps
is repaired by the next `run`):
  lock -> repair debris -> allocate rNNNN -> snapshot train.py + started.json
  -> integrity guard on train.py -> launch under the watchdog -> extract metrics -> capture checkpoint
  -> protected files checked, independent evaluator (integrity.py)
  -> decision.json -> promote (advance) or restore train.py (anything else)
  -> results.tsv row -> result.json (the run is now recorded) -> prune.
The steps themselves are in steps.py.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from . import best as best_state
from . import integrity, ledger, watchdog
from .config import Config, Session
from .errors import UserError
from .fsutil import read_json
from .record import primary_field, result_record
from .runs import run_dir_of, run_numbers
from .snapshots import read_run_note, restore_train_py
from .steps import (
    FAULT_POINTS,
    MARKER_KEY,
    SENTINEL,
    allocate,
    check_sentinel,
    commit,
    judge,
    launch_run,
    measure,
    run_budget,
    self_test_data,
    survivor_pids,
    write_sentinel,
)
from .text import one_line

__all__ = ["FAULT_POINTS", "MARKER_KEY", "SENTINEL", "ExperimentLock", "repair", "run_once", "summary_lines"]

LOCK = ".ar-lock"
SUMMARY_LINE_CAP = 240  # characters of the second summary line (all of stdout stays under 400 bytes)


class ExperimentLock:
    """One run at a time per experiment: an flock on .ar-lock (released by the kernel if we die)."""

    def __init__(self, expr_dir: Path):
        self.path = expr_dir / LOCK
        self.fd = None

    def __enter__(self):
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self.fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(self.fd)
            raise UserError(
                f"another `ar.py run` is running on this experiment (pid {holder}); "
                "wait for it to finish (one run at a time per experiment)"
            ) from None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, str(os.getpid()).encode(), 0)
        return self

    def __exit__(self, *exc):
        os.close(self.fd)


# ----------------------------------------------------------------------------- repair


def _stop_leftovers(expr: Path, run_dir: Path, token: str | None) -> list[str]:
    """Kill what still runs of a killed run (found by its marker); notes of what went."""
    if not token:
        return []
    found, survivors = watchdog.stop_processes(None, (MARKER_KEY, token), watchdog.SWEEP_GRACE_S)
    if survivors:
        write_sentinel(expr, run_dir.name, survivors)
        raise UserError(
            f"{run_dir.name}: processes of a killed run survive (pids {survivor_pids(survivors)}); "
            f"kill them, then delete {expr / SENTINEL}"
        )
    return [f"{run_dir.name}: killed {len(found)} leftover process(es)"] if found else []


def repair(cfg: Config) -> list[str]:
    """Record every run a killed runner left without result.json; finish a cut-short promotion."""
    expr = cfg.expr_dir
    notes = []
    ledger.check_header(expr / "results.tsv")
    if ledger.repair_tail(expr / "results.tsv"):
        notes.append("dropped a partial last row of results.tsv")
    recorded = ledger.last_run_number(expr / "results.tsv")
    for number in run_numbers(expr):
        if number < recorded:  # rows go in before result.json, in run order: only the last may lack it
            continue
        run_dir = run_dir_of(expr, number)
        if (run_dir / "result.json").exists():
            continue
        started = read_json(run_dir / "started.json", "run start record", "delete it", default={}) or {}
        notes += _stop_leftovers(expr, run_dir, started.get("token"))
        pending = read_json(run_dir / "decision.json", "run decision", "delete it", default=None)
        notes += best_state.repair(expr, pending if pending and pending.get("verdict") == "advance" else None)
        result = pending or result_record(
            run_dir.name,
            started_at=started.get("started_at", ""),
            status="crash",
            verdict="crash",
            primary=primary_field(cfg.primary_metric, cfg.primary_direction, None),
            log_path=str(run_dir / "run.log"),
            note=f"runner was killed before recording this run (recorded by repair); {started.get('note', '')}",
        )
        if result["verdict"] != "advance":
            restore_train_py(expr, best_state.read_best(expr))
        if not ledger.has_row(expr / "results.tsv", result["run_id"]):
            ledger.append(expr / "results.tsv", result)
        ledger.write_result(run_dir, result)
        notes.append(f"recorded interrupted run {run_dir.name} as {result['status']}")
    if not notes:
        notes += best_state.repair(expr, None)
    return notes


# ----------------------------------------------------------------------------- run


def run_once(cfg: Config, session: Session, seconds: int | None, live: bool) -> dict:
    """One iteration: snapshot train.py, train, measure, judge against the best, record. Returns result.json."""
    expr = cfg.expr_dir
    check_sentinel(expr)
    with ExperimentLock(expr):
        # -- finish whatever a killed runner left, then read the state this run is judged against
        repair(cfg)
        best = best_state.read_best(expr)
        if not run_numbers(expr):
            self_test_data(cfg)
        integrity.before_run(cfg, session)  # protected files changed: blocked, nothing touched

        # -- snapshot: runs/rNNNN/ gets this train.py and started.json
        source = (expr / "train.py").read_bytes()
        run = allocate(cfg, source, read_run_note(source.decode("utf-8", errors="replace")))

        # -- the static guard: a train.py that reports the metric itself or rebinds the judge never trains
        offence = integrity.guard(cfg, session, source)
        if offence:
            result = integrity.refused(cfg, session, run, best, offence)
            commit(cfg, session, run, result, best)
            return result

        # -- train under the watchdog, within the budget
        launched = launch_run(cfg, session, run, run_budget(cfg, session, seconds), live)

        # -- measure: metrics of this run only, and its checkpoint moved into the run folder
        measured = measure(cfg, run, launched)
        checked = integrity.after_training(cfg, session, run, measured)  # files again; the evaluator decides

        # -- judge against the best as it was when the run started
        result = {**judge(cfg, session, run, launched, measured, best), **checked}

        # -- commit: decision.json, promote or restore, ledger row, result.json, prune
        commit(cfg, session, run, result, best)
        return result


def summary_lines(cfg: Config, result: dict) -> list[str]:
    """At most 3 short lines for the agent (under 400 bytes in all)."""
    p = result["primary"]
    value = p["value"]
    shown = (
        f"{p['name']}={value:.6g}" if isinstance(value, float) else f"{p['name']}={value if value is not None else '-'}"
    )
    head = f"{result['run_id']} {result['status']}/{result['verdict']} {shown} ({result['wall_seconds']:.1f}s)"
    if result["verdict"] == "advance":
        prev = result.get("previous_best_run_id")
        second = f"new best (previous {prev or 'none'}); train.py kept"
    else:
        if result.get("previous_best_run_id"):
            second = "train.py restored to the best snapshot"
        else:
            second = "no best run yet: train.py left as it is"
        if result["status"] in ("crash", "timeout", "unclean"):
            second += f"; see: ar.py tail --run {result['run_id']}"
    if result.get("note"):
        second += f"; note: {result['note']}"
    lines = [head, one_line(second, SUMMARY_LINE_CAP)]
    if result["should_terminate"]:
        lines.append(f"STOP: terminated_by={result['terminated_by']}")
    return lines
