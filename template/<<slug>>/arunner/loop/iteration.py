"""One `ar.py run`, start to finish: the plans it executes, in order, and the repair of what a
killed runner left.

  lock -> repair (Slurm jobs of unrecorded runs, runs without result.json, a cut-short promotion
  or wave) -> the best's re-runs a kill cut short -> the plan: the queue (a wave; .ar-wave.json
  names it while in flight) or train.py as it is (a plan of one) -> confirmations of the
  candidates that need one (unless one advanced outright) -> re-runs of a new best
  -> a wave: train.py set to the best once, .ar-wave.json removed.
Each plan goes through the engine (engine.py): allocate, guard, launch, measure, decide, persist.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from ..core import chain_hash
from ..core.config import Config, Experiment
from ..core.errors import UserError
from ..core.fsutil import atomic_write_json, fault_point, read_json, remove
from ..core.layout import BASELINE, JOB_FILE, LEDGER, LOCK, RESULT, RUN_LOG, STARTED, TRAIN_PY, WAVE_FILE
from ..core.runs import format_run_id, has_runs, highest_run, run_dir_of, runs_from
from ..integrity import checks
from ..procs import outputs, slots, watchdog
from ..rules import noise
from ..state import best as best_state
from ..state import candidates, changes, ledger, messages, noise_groups
from ..state.record import primary_field, result_record
from ..state.results import RunResult
from ..state.snapshots import restore_target, restore_train_py
from . import engine, plans
from .steps import (
    FAULT_POINTS,
    MARKER_KEY,
    SENTINEL,
    check_sentinel,
    run_budget,
    self_test_data,
    survivor_pids,
    write_sentinel,
)

__all__ = ["FAULT_POINTS", "MARKER_KEY", "SENTINEL", "WAVE_FILE", "ExperimentLock", "iterate", "repair"]

WAVE_FAULT_POINTS = ("wave.allocated", "wave.judged", "wave.committed", "wave.restored")


class Iteration:
    """What one `ar.py run` did: every run in run order; for a wave, its id, slots and requeued candidates."""

    def __init__(self, runs: list[RunResult]):
        self.runs = runs
        self.wave: str | None = None
        self.slot_count = 1
        self.requeued: list[str] = []


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
    """Everything a killed runner left: its Slurm jobs, its runs without result.json, a cut-short
    promotion, a cut-short wave (train.py set to the best)."""
    expr = cfg.expr_dir
    notes = []
    ledger.check_header(expr / LEDGER)
    if ledger.repair_tail(expr / LEDGER):
        notes.append("dropped a partial last row of results.tsv")
    recorded = ledger.last_run_number(expr / LEDGER)
    unrecorded, newest = runs_from(expr, recorded)  # rows go in before result.json, in run order
    _cancel_unrecorded_jobs(expr, unrecorded)
    notes += _record_unrecorded(cfg, unrecorded)
    noise_groups.repair_link(expr, newest)
    if (expr / WAVE_FILE).exists():
        restore_train_py(expr, best_state.read_best(expr))
        remove(expr / WAVE_FILE)
        notes.append("finished a wave cut short: train.py is the best snapshot")
    return notes


def _cancel_unrecorded_jobs(expr: Path, numbers: list[int]) -> None:
    """Slurm jobs of runs a killed runner left unrecorded: cancelled (and waited for) before they are recorded."""
    for number in numbers:
        run_dir = run_dir_of(expr, number)
        if (run_dir / JOB_FILE).exists() and not (run_dir / RESULT).exists():
            from ..procs import slurm  # only a run that was a Slurm job pays for its import

            slurm.cancel_recorded(run_dir / JOB_FILE)


def _record_unrecorded(cfg: Config, numbers: list[int]) -> list[str]:
    """Record every run without result.json (as decided, else as a crash); finish a cut-short promotion."""
    expr = cfg.expr_dir
    notes = []
    for number in numbers:
        run_dir = run_dir_of(expr, number)
        if (run_dir / RESULT).exists():
            continue
        started = read_json(run_dir / STARTED, "run start record", "delete it", default={}) or {}
        notes += _stop_leftovers(expr, run_dir, started.get("token"))
        pending, forged = chain_hash.trusted_decision(expr, run_dir)  # never a decision training could write
        notes += best_state.repair(expr, pending if pending and pending.get("verdict") == "advance" else None)
        result = pending or result_record(
            run_dir.name,
            started_at=started.get("started_at", ""),
            status="crash",
            verdict="crash",
            primary=primary_field(cfg.primary_metric, cfg.primary_direction, None),
            log_path=str(run_dir / RUN_LOG),
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
            result["confirms"] = noise_groups.rerun_of(started)
        if result["verdict"] != "advance" or result.get("confirms"):
            restore_train_py(expr, best_state.read_best(expr))
        changes.record(expr, run_dir, result, best_state.read_best(expr), unjudged=not pending)  # idempotent
        if not ledger.has_row(expr / LEDGER, result["run_id"]):
            ledger.append(expr / LEDGER, result)
        ledger.write_result(run_dir, result)
        notes.append(f"recorded interrupted run {run_dir.name} as {result['status']}")
    if not notes:
        notes += best_state.repair(expr, None)
    return notes


# ----------------------------------------------------------------------------- the iteration


def iterate(exp: Experiment, seconds: int | None, live: bool, force: bool = False) -> Iteration:
    """One `ar.py run`: every plan it needs, each through the engine, under the experiment lock.

    `force`: run a train.py already decided against this best (changes.check_same_code refuses it otherwise).
    """
    cfg, session = exp.cfg, exp.session
    expr = cfg.expr_dir
    check_sentinel(expr)
    with ExperimentLock(expr):
        repair(cfg)
        queued = candidates.list_queued(expr)
        spread_out = bool(queued) or session.devices is not None or session.launcher != "local"
        if spread_out and len(slots.for_session(session, len(queued))) > 1:
            outputs.check_parallel(cfg)  # runs at once whose outputs would share a path: refused, nothing moved
        cx = engine.Context(exp, run_budget(exp, seconds), live, spread_out)
        done = Iteration(remeasure_best(cx))  # a SIGKILL cut the best's re-runs short
        best = best_state.read_best(expr)
        if queued:
            _check_train_py(cfg, best)
        if not has_runs(expr):
            self_test_data(cfg)
        checks.before_run(exp)  # protected files changed: blocked, nothing touched
        plan = _plan(cx, queued, best, done, force)
        results, done.requeued = engine.execute(cx, plan, best)
        done.runs += results
        pending = [r for r in results if r.action == noise.CONFIRM]
        if pending and not any(r.record["verdict"] == "advance" for r in results):
            done.runs += engine.execute(cx, plans.confirmations(cfg, pending), best)[0]
        if any(r.record["verdict"] == "advance" for r in done.runs):
            done.runs += remeasure_best(cx)  # the new best measured again: a value that is not luck
        if done.wave:
            restore_train_py(expr, best_state.read_best(expr))  # once: the queue's train.py files are snapshots
            fault_point("wave.restored")
            remove(expr / WAVE_FILE)
        return done


def _plan(cx: engine.Context, queued: list, best: dict | None, done: Iteration, force: bool) -> list:
    """The queue as a wave (.ar-wave.json names it while in flight), else train.py as it is
    (refused when it was already decided against this best, unless `force`)."""
    expr = cx.cfg.expr_dir
    if not queued:
        source = (expr / TRAIN_PY).read_bytes()
        remark = _snapshot_remark(expr, source, best)
        remark = " | ".join(r for r in (remark, changes.check_same_code(expr, source, best, force)) if r)
        return plans.edit(source, remark)
    first = highest_run(expr)[0] + 1
    done.wave = f"w{first:04d}"
    done.slot_count = len(slots.for_session(cx.session, len(queued)))
    marker = {"wave": done.wave, "pid": os.getpid(), "candidates": len(queued), "first_run": format_run_id(first)}
    atomic_write_json(expr / WAVE_FILE, {**marker, "started": time.time()})
    return plans.queue(queued, done.wave)


def _check_train_py(cfg: Config, best: dict | None) -> None:
    """The wave ends with train.py set to the best: refuse to overwrite edits nobody proposed."""
    train = cfg.layout.train_py
    if best and train.exists() and train.read_bytes() != restore_target(cfg.expr_dir, best):
        raise UserError(
            "train.py differs from the best snapshot and the queue is not empty: queue it with "
            "`ar.py propose` (or undo the edit), then run again"
        )


def remeasure_best(cx: engine.Context) -> list[RunResult]:
    """Measure the best again until it has the runs it should (noise_groups.wanted).

    The first baseline gets `repeats` runs: the spread. Each later best gets REMEASURE_BEST
    fresh runs, so its value is the mean of several and not the lucky run that won. On one
    slot they go one after another and a baseline repeat equal to the first run stops them
    (a deterministic host pays one extra run); spread out, every missing run starts at once.
    A run that fails is tried once more, then given up; best.json counts only valid runs.
    """
    expr = cx.cfg.expr_dir
    state, best = noise_groups.load(expr), best_state.read_best(expr)
    if not best or state.get("measured") == best["run_id"]:
        return []
    first = noise_groups.group_of(state, best["run_id"]) or best["run_id"]
    baseline, wanted = not state["groups"], noise_groups.wanted(state, cx.session, best)
    group = dict(state["groups"].get(first) or {best["run_id"]: float(best["primary"]["value"])})
    if wanted <= len(group):
        noise_groups.mark_measured(expr, best["run_id"])
        return []
    source = (expr / best["snapshot"]).read_bytes()
    done, tried = [], len(group) + noise_groups.crashed_repeats(expr, first)
    while len(group) < wanted and tried < wanted + 1:
        count = min(wanted - len(group), wanted + 1 - tried) if cx.spread_out else 1
        kind = "repeat" if baseline else "remeasure"
        planned = plans.reruns(cx.cfg, kind, first, source, range(tried, tried + count))
        results, _ = engine.execute(cx, planned, best)
        tried += count
        for r in results:
            done.append(r)
            if r.record["valid"]:
                group[r.run_id] = float(r.record["primary"]["value"])
                for run_id, value in group.items():  # idempotent: the first values go in with the first repeat
                    noise_groups.add_value(expr, first, run_id, value)
                best_state.remeasure(expr, list(group.values()))
        values = list(group.values())
        if baseline and len(values) == 2 and values[0] == values[1]:  # a deterministic host: one extra run only
            break
    noise_groups.mark_measured(expr, best["run_id"])
    return done


def _snapshot_remark(expr: Path, source: bytes, best: dict | None) -> str:
    """See messages.snapshot_remark: compared with the best snapshot and the rendered baseline."""
    try:
        best_source = restore_target(expr, best) if best else None
    except UserError:
        best_source = None  # a missing snapshot is the restore's error to report, not this remark's
    baseline = expr / BASELINE
    return messages.snapshot_remark(source, baseline.read_bytes() if baseline.exists() else None, best, best_source)
