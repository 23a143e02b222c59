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
from . import chain_hash, changes, integrity, ledger, messages, noise, noise_runs, sandbox, watchdog
from .config import Config, Session
from .errors import UserError
from .fsutil import read_json
from .logtail import exception_line
from .record import primary_field, result_record
from .runs import run_dir_of, run_numbers
from .snapshots import BASELINE, read_run_note, restore_target, restore_train_py
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
SUMMARY_LINE_CAP = 320  # characters of the second summary line at most
SUMMARY_BYTES = 400  # all of `run`'s stdout (an agent reads it every iteration)
SUMMARY_EXCEPTION_CAP = 90  # characters of a crash's `Type: message` in the summary (result.json has more)


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
        pending, forged = chain_hash.trusted_decision(expr, run_dir)  # never a decision training could write
        notes += best_state.repair(expr, pending if pending and pending.get("verdict") == "advance" else None)
        result = pending or result_record(
            run_dir.name,
            started_at=started.get("started_at", ""),
            status="crash",
            verdict="crash",
            primary=primary_field(cfg.primary_metric, cfg.primary_direction, None),
            log_path=str(run_dir / "run.log"),
            note=" ".join(
                t
                for t in (
                    "runner was killed before recording this run (recorded by repair);",
                    forged,
                    started.get("note", ""),
                )
                if t
            ),
        )
        if not pending:
            result["confirms"] = noise_runs.rerun_of(started.get("note", ""))
        if result["verdict"] != "advance" or result.get("confirms"):
            restore_train_py(expr, best_state.read_best(expr))
        changes.record(expr, run_dir, result, best_state.read_best(expr), unjudged=not pending)  # idempotent
        if not ledger.has_row(expr / "results.tsv", result["run_id"]):
            ledger.append(expr / "results.tsv", result)
        ledger.write_result(run_dir, result)
        notes.append(f"recorded interrupted run {run_dir.name} as {result['status']}")
    if not notes:
        notes += best_state.repair(expr, None)
    noise_runs.repair_link(expr)
    return notes


# ----------------------------------------------------------------------------- run


def run_once(cfg: Config, session: Session, seconds: int | None, live: bool, force: bool = False) -> dict:
    """One iteration: snapshot train.py, train, measure, judge against the best, record. Returns result.json.

    `force`: run a train.py already decided against this best (changes.same_code refuses it otherwise).
    """
    expr = cfg.expr_dir
    check_sentinel(expr)
    with ExperimentLock(expr):
        # -- finish whatever a killed runner left, then read the state this run is judged against
        repair(cfg)
        noise_runs.finish_repeats(cfg, session, seconds, live)  # a SIGKILL cut the baseline's repeats short
        best = best_state.read_best(expr)
        if not run_numbers(expr):
            self_test_data(cfg)
        integrity.before_run(cfg, session)  # protected files changed: blocked, nothing touched

        # -- snapshot: runs/rNNNN/ gets this train.py and started.json
        source = (expr / "train.py").read_bytes()
        remark = _snapshot_remark(expr, source, best)
        remark = " | ".join(r for r in (remark, changes.check_same_code(expr, source, best, force)) if r)
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
        history = ledger.since_last_advance(expr / "results.tsv")
        result = {**judge(cfg, session, run, launched, measured, best, history), **checked}
        action = None
        if result["valid"] and best:  # the noise rule: advance, revert, or confirm with another seed
            value = float(result["primary"]["value"])
            action = noise_runs.apply_rule(cfg, session, result, [value], best, source, history)
            vetoed = integrity.holdout_veto(cfg, result, best, candidate=action == noise.CONFIRM)
            if vetoed is not result:  # better on validation, worse on the hidden holdout: not kept
                result, action = vetoed, None
        remark = " | ".join(r for r in (remark, sandbox_remark(expr, source, best, result)) if r)
        if remark:  # said, never silent: a baseline run, the best re-run unchanged, a patch that did nothing
            result["note"] = " | ".join(n for n in (result["note"], remark) if n)

        # -- commit: decision.json, promote or restore, ledger row, result.json, prune
        result = integrity.before_commit(cfg, result)  # the checkpoint promoted is the one evaluated
        commit(cfg, session, run, result, best)
        if action == noise.CONFIRM:  # the same train.py once more, another seed: the pair decides
            result = noise_runs.confirm(cfg, session, seconds, live, result, source, best)
        if result["verdict"] == "advance":  # the new best measured again: the spread, a value that is not luck
            again = noise_runs.finish_repeats(cfg, session, seconds, live)
            if again:
                what = "baseline repeated" if best is None else "new best run again"
                said = f"{what} {len(again)}x: " + noise_runs.status_line(expr, session)
                result = {**result, "note": " | ".join(n for n in (result["note"], said) if n)}
        return result


def sandbox_remark(expr: Path, source: bytes, best: dict | None, result: dict) -> str:
    """A sandbox-only edit whose value is the best's, bit for bit: the note asks whether the patch ran."""
    if not best or result["status"] != "ok":
        return ""
    try:
        best_source = restore_target(expr, best)
    except UserError:
        return ""
    return sandbox.unchanged_patch_note(expr, source, best_source, best, result["primary"]["value"])


def _snapshot_remark(expr: Path, source: bytes, best: dict | None) -> str:
    """See messages.snapshot_remark: compared with the best snapshot and the rendered baseline."""
    try:
        best_source = restore_target(expr, best) if best else None
    except UserError:
        best_source = None  # a missing snapshot is the restore's error to report, not this remark's
    baseline = expr / BASELINE
    return messages.snapshot_remark(source, baseline.read_bytes() if baseline.exists() else None, best, best_source)


def summary_lines(cfg: Config, result: dict) -> list[str]:
    """At most 3 short lines for the agent (SUMMARY_BYTES in all); paths and commands run from the project root."""
    rows = ledger.read(cfg.expr_dir / "results.tsv")
    head = messages.head_line(result, Session.load(cfg.expr_dir), rows)
    note = result.get("note") or ""
    if result["verdict"] == "advance":
        prev = result.get("previous_best_run_id")
        parts = [f"new best (previous {prev or 'none'}); train.py kept"]
    else:
        if result.get("previous_best_run_id"):
            parts = ["train.py restored to the best snapshot"]
        else:
            parts = ["no best run yet: train.py left as it is"]
        if result["status"] in ("crash", "timeout", "unclean"):
            exception = exception_line(cfg.expr_dir / "runs" / result["run_id"] / "run.log")
            hint = [messages.crash_hint(cfg, result)]  # before the rest: it must survive the cut
            if result["status"] == "timeout":  # no traceback to point at: the knob that ends training
                hint = [messages.timeout_hint(cfg, result)]
            if exception and result["status"] == "crash":
                hint.insert(0, f"crash: {one_line(exception, SUMMARY_EXCEPTION_CAP, '...')}")
                note = " | ".join(n for n in note.split(" | ") if n != exception)  # said once
            parts = hint + parts
    if note:
        parts.append(f"note: {note}")
    stop = [f"STOP: terminated_by={result['terminated_by']}"] if result["should_terminate"] else []
    room = SUMMARY_BYTES - len(head.encode()) - sum(len(s) + 1 for s in stop) - 2
    second = one_line("; ".join(parts), min(SUMMARY_LINE_CAP, room), "...")
    while len(second.encode()) > room:  # non-ASCII notes: cut by bytes
        second = second[:-4] + "..."
    return [head, second, *stop]
