"""`ar.py run` over the queue of proposed candidates: one wave, judged together; and `ar.py propose`.

Order of a wave (each state change is atomic; a SIGKILL between any two steps is
repaired by the next `run`, as for a single run):
  lock -> cancel Slurm jobs of unrecorded runs -> repair -> finish a cut-short wave
  -> .ar-wave.json -> per candidate: queue/cNNNN moved into runs/rNNNN/candidate,
  then train.py + started.json -> every candidate launched on a free slot (the rest
  wait) -> measure and judge each against the best as it was when the wave started
  -> the best of those that beat it advances, the others are reverted -> every
  decision.json (repair then finishes each candidate as decided) -> commit each
  in run order (rows stay in run order, so repair's rule holds) -> train.py set to
  the best once -> .ar-wave.json removed.
A wave of one with no queue, the local launcher and no devices set is not run here:
it is iteration.run_once, exactly a single run.
"""

from __future__ import annotations

import os
import shlex
import shutil
import time

from . import best as best_state
from . import candidates, chain_hash, changes, integrity, ledger, noise, noise_runs, outputs, slots, verdict, wave
from .config import Config, Session
from .errors import UserError
from .fsutil import atomic_write_json, fault_point, remove
from .launch import LaunchResult
from .record import best_record
from .runs import format_run_id, run_dir_of, run_numbers
from .snapshots import read_run_note, restore_target, restore_train_py
from .steps import (
    RunStart,
    allocate,
    build_command,
    check_sentinel,
    commit,
    grace_seconds,
    judge,
    measure,
    run_budget,
    self_test_data,
    training_env,
)
from .text import one_line

WAVE_FILE = ".ar-wave.json"  # exists while a wave is in flight: names it for `status` and repair
JOB_FILE = ".slurm_job"  # in runs/rNNNN/: the Slurm job id, written right after sbatch (a dot file: never a checkpoint)
SHOWN_CANDIDATES = 8  # lines of `run` output, one per candidate; the rest are counted
CANDIDATE_LINE_CAP = 76  # characters of one candidate line (8 lines + summary stay under 800 bytes)
SUMMARY_CAP = 130  # characters of the summary line
FAULT_POINTS = ("wave.allocated", "wave.judged", "wave.committed", "wave.restored")


# ----------------------------------------------------------------------------- routing


def needs_wave(cfg: Config, session: Session) -> bool:
    """A queue, a Slurm launcher or leased devices: the run goes through a wave (else run_once)."""
    return bool(candidates.list_queued(cfg.expr_dir)) or session.launcher != "local" or session.devices is not None


def run(cfg: Config, session: Session, seconds: int | None, live: bool, force: bool = False) -> list[str]:
    """`ar.py run`: a wave when needed, else today's single run; returns the lines to print.

    `force`: run a train.py already decided against this best (see changes.check_same_code).
    """
    from . import iteration

    if not needs_wave(cfg, session):
        if (cfg.expr_dir / WAVE_FILE).exists():  # a wave was cut short: finish it under the lock first
            with iteration.ExperimentLock(cfg.expr_dir):
                _repair(cfg)
        return iteration.summary_lines(cfg, iteration.run_once(cfg, session, seconds, live, force))
    results, wave_id, slot_count, requeued = run_wave(cfg, session, seconds, live, force)
    if wave_id is None:
        return iteration.summary_lines(cfg, results[0])
    return wave_summary(cfg, results, wave_id, slot_count, requeued)


# ----------------------------------------------------------------------------- repair


def _cancel_unrecorded_jobs(cfg: Config) -> None:
    """Slurm jobs of runs a killed runner left unrecorded: cancelled (and waited for) before repair records them."""
    expr = cfg.expr_dir
    recorded = ledger.last_run_number(expr / "results.tsv")
    for number in run_numbers(expr):
        run_dir = run_dir_of(expr, number)
        if number >= recorded and (run_dir / JOB_FILE).exists() and not (run_dir / "result.json").exists():
            from . import slurm

            slurm.cancel_recorded(run_dir / JOB_FILE)


def _repair(cfg: Config) -> list[str]:
    """Everything a killed wave left: its Slurm jobs, its runs (iteration.repair), train.py = the best."""
    from . import iteration

    _cancel_unrecorded_jobs(cfg)
    notes = iteration.repair(cfg)
    marker = cfg.expr_dir / WAVE_FILE
    if marker.exists():
        restore_train_py(cfg.expr_dir, best_state.read_best(cfg.expr_dir))
        remove(marker)
        notes.append("finished a wave cut short: train.py is the best snapshot")
    return notes


# ----------------------------------------------------------------------------- the wave


def pool_slots(cfg: Config, session: Session, count: int) -> list[slots.Slot]:
    if session.launcher == "slurm":  # Slurm places the jobs: submit them all, it queues what does not fit
        return [slots.Slot(i, ()) for i in range(max(1, count))]
    devices = session.devices if session.devices is not None else slots.detect_devices()
    return slots.make_slots(devices, session.devices_per_run)


def _launcher(session: Session):
    if session.launcher == "slurm":
        from .slurm import SlurmLauncher

        return _StartsNow(SlurmLauncher(shlex.split(session.slurm_args), JOB_FILE))
    return _StartsNow(wave.LocalLauncher())


class _StartsNow:
    """A candidate that waited for a slot gets its AR_DEADLINE from the moment it starts."""

    def __init__(self, inner):
        self.inner = inner

    def run(self, cand, env, live):
        return self.inner.run(cand, {**env, "AR_DEADLINE": f"{time.time() + cand.budget_s:.3f}"}, live)

    def cancel(self, cand, force=False):
        self.inner.cancel(cand, force)


def _allocate_candidate(cfg: Config, number: int, cand: candidates.Candidate, wave_id: str) -> RunStart:
    """runs/rNNNN/ for a queued candidate: its folder moved in first (one rename), then train.py and
    started.json. A kill in between leaves a run repair records as a crash: the candidate is never doubled."""
    import datetime as dt
    import uuid

    run_dir = run_dir_of(cfg.expr_dir, number)
    popped = candidates.pop(cfg.expr_dir, run_dir / "candidate", cand.id)
    source = (popped.path / "train.py").read_bytes()
    (run_dir / "train.py").write_bytes(source)
    started = time.time()
    started_at = dt.datetime.fromtimestamp(started).astimezone().isoformat(timespec="seconds")
    note = f"{cand.id}: {cand.note}" if cand.note else cand.id
    run = RunStart(format_run_id(number), run_dir, uuid.uuid4().hex, started, started_at, note)
    record = {"token": run.token, "started_at": started_at, "note": note, "candidate": cand.id, "wave": wave_id}
    atomic_write_json(run_dir / "started.json", record)
    return run


def _check_train_py(cfg: Config, best: dict | None) -> None:
    """The wave ends with train.py set to the best: refuse to overwrite edits nobody proposed."""
    train = cfg.expr_dir / "train.py"
    if best and train.exists() and train.read_bytes() != restore_target(cfg.expr_dir, best):
        raise UserError(
            "train.py differs from the best snapshot and the queue is not empty: queue it with "
            "`ar.py propose` (or undo the edit), then run again"
        )


def _never_started(cfg: Config, run: RunStart, cand_id: str) -> None:
    """Ctrl+C before this candidate got a slot: it goes back to the queue, its run folder goes."""
    os.rename(run.run_dir / "candidate", cfg.expr_dir / candidates.QUEUE_DIR / cand_id)
    shutil.rmtree(run.run_dir, ignore_errors=True)


def _error_result(exc: BaseException) -> LaunchResult:
    return LaunchResult(
        exit_code=1,
        timed_out=False,
        interrupted=False,
        started_at=time.time(),
        wall_s=0.0,
        last_line=one_line(f"the launcher failed: {exc}", 200),
    )


def run_wave(cfg: Config, session: Session, seconds: int | None, live: bool, force: bool = False):
    """Run the queue (or train.py itself when it is empty) as one wave.

    Returns (results in run order, wave id or None for a wave of train.py alone, slot count, requeued ids).
    """
    from . import iteration

    expr = cfg.expr_dir
    check_sentinel(expr)
    with iteration.ExperimentLock(expr):
        _repair(cfg)
        if len(pool_slots(cfg, session, len(candidates.list_queued(expr)))) > 1:
            outputs.check_parallel(cfg)  # runs at once whose outputs would share a path: refused, nothing moved
        reruns = _rerun_launcher(cfg, session, seconds, live)
        noise_runs.finish_repeats(cfg, session, seconds, live, reruns, parallel=True)  # a SIGKILL cut them short
        best = best_state.read_best(expr)
        queued = candidates.list_queued(expr)
        if queued:
            _check_train_py(cfg, best)
        if not run_numbers(expr):
            self_test_data(cfg)
        integrity.before_run(cfg, session)  # protected files changed: blocked, nothing touched
        budget = run_budget(cfg, session, seconds)
        wave_slots = pool_slots(cfg, session, len(queued))
        first = (run_numbers(expr) or [0])[-1] + 1
        wave_id = f"w{first:04d}" if queued else None
        if queued:
            atomic_write_json(
                expr / WAVE_FILE,
                {
                    "wave": wave_id,
                    "pid": os.getpid(),
                    "candidates": len(queued),
                    "first_run": format_run_id(first),
                    "started": time.time(),
                },
            )
            runs = [_allocate_candidate(cfg, first + i, c, wave_id) for i, c in enumerate(queued)]
            ids = {format_run_id(first + i): c.id for i, c in enumerate(queued)}
        else:
            source = (expr / "train.py").read_bytes()
            changes.check_same_code(expr, source, best, force)  # decided against this best: refused
            runs = [allocate(cfg, source, read_run_note(source.decode("utf-8", errors="replace")))]
        fault_point("wave.allocated")

        # -- the static guard, per candidate: one that reports the metric itself or rebinds the judge never trains
        refused = {}
        for r in runs:
            offence = integrity.guard(cfg, session, (r.run_dir / "train.py").read_bytes())
            if offence:
                refused[r.run_id] = integrity.refused(cfg, session, r, best, offence)
        to_launch = [r for r in runs if r.run_id not in refused]

        # -- train every candidate on its own slot, under its own watchdog and budget
        grace = grace_seconds(cfg, session)
        parallel = len(to_launch) > 1 and len(wave_slots) > 1  # at the same time: each in its own folder
        cands = [
            wave.Candidate(
                r.run_id,
                build_command(cfg, r.run_dir / "train.py"),
                outputs.cwd(cfg, r.run_dir, parallel),  # its own working folder on a fixed-path host
                {**training_env(cfg, r, budget), **({"AR_WAVE": wave_id} if wave_id else {})},
                r.run_dir / "run.log",
                budget,
                grace,
                r.marker,
            )
            for r in to_launch
        ]
        pool = slots.SlotPool(wave_slots, label=cfg.slug)
        launched_by_id = dict(
            zip(
                (r.run_id for r in to_launch),
                wave.run_wave(cands, pool, _launcher(session), live and len(cands) == 1) if cands else [],
            )
        )

        # -- measure and judge each against the best of the wave's start
        history = ledger.since_last_advance(expr / "results.tsv")
        judged, requeued, to_confirm = [], [], []
        for r in runs:
            if r.run_id in refused:
                result = {**refused[r.run_id], "wave": wave_id}
                judged.append((r, result))
                continue
            outcome = launched_by_id[r.run_id]
            if outcome.slot is None and wave_id:
                _never_started(cfg, r, ids[r.run_id])
                requeued.append(ids[r.run_id])
                continue
            launched = outcome.result or _error_result(outcome.error or RuntimeError("it never started"))
            measured = measure(cfg, r, launched)
            checked = integrity.after_training(cfg, session, r, measured)  # files again; the evaluator decides
            result = {**judge(cfg, session, r, launched, measured, best, history), **checked}
            result = integrity.before_commit(cfg, result)  # the checkpoint promoted is the one evaluated
            result["wave"] = wave_id
            said = iteration.sandbox_remark(expr, (r.run_dir / "train.py").read_bytes(), best, result)
            if said:  # a sandbox-only edit that measured exactly the best's value
                result["note"] = " | ".join(n for n in (result["note"], said) if n)
            if result["valid"] and best:  # the noise rule: advance, revert, or confirm with another seed
                source = (r.run_dir / "train.py").read_bytes()
                value = float(result["primary"]["value"])
                action = noise_runs.apply_rule(cfg, session, result, [value], best, source, history)
                vetoed = integrity.holdout_veto(cfg, result, best, candidate=action == noise.CONFIRM)
                if vetoed is not result:  # better on validation, worse on the hidden holdout: not kept
                    result.clear()
                    result.update(vetoed)
                elif action == noise.CONFIRM:
                    to_confirm.append((result, source))
            job = getattr(launched, "job_id", "")
            if job:
                result["slurm"] = {"job_id": job, "state": launched.state}
            extra = getattr(launched, "note", "")
            if getattr(launched, "requeue", False):
                again = candidates.propose(expr, (r.run_dir / "train.py").read_bytes(), r.note)
                extra += f"; queued again as {again.id}"
                requeued.append(again.id)
            if extra:
                result["note"] = " | ".join(n for n in (result["note"], extra) if n)
            judged.append((r, result))
        winner = _pick_winner(cfg, [res for _, res in judged])
        _settle(cfg, session, [res for _, res in judged], winner, wave_id, history)
        lineage = {"parent_expr": cfg.parent_expr, "parent_ckpt": cfg.parent_ckpt}
        for r, result in judged:  # every decision on disk before any commit: repair finishes each as decided
            record = best_record(r.run_id, result["primary"], lineage)
            chain_hash.write_decision(expr, r.run_dir, {**result, **record})  # sealed: repair trusts no other
        fault_point("wave.judged")

        # -- commit in run order; each later candidate is recorded against the best so far
        current = best
        for i, (r, result) in enumerate(judged):
            commit(cfg, session, r, result, current)
            if result["verdict"] == "advance":
                current = best_state.read_best(expr)
            if i == 0:
                fault_point("wave.committed")
        results = [res for _, res in judged]
        if to_confirm and winner is None:  # before the wave ends: every confirmation at once, one advance at most
            confirmed = noise_runs.confirm_many(cfg, session, to_confirm, best, reruns, wave_id)
            results += confirmed
            current = best_state.read_best(expr)
            if not wave_id:
                results = confirmed
        if any(res["verdict"] == "advance" for res in results):  # the new best measured again, all at once
            noise_runs.finish_repeats(cfg, session, seconds, live, reruns, parallel=True)
            current = best_state.read_best(expr)
        if wave_id:
            restore_train_py(expr, current)  # once, at the end: the queue's train.py files are the runs' snapshots
            fault_point("wave.restored")
            remove(expr / WAVE_FILE)
        return results, wave_id, len(wave_slots), requeued


def _rerun_launcher(cfg: Config, session: Session, seconds: int | None, live: bool):
    """launch(items) for repeats and confirmations: all at once on the session's slots (or Slurm)."""
    budget = run_budget(cfg, session, seconds)

    def launch(items):
        slots_now = pool_slots(cfg, session, len(items))
        parallel = len(items) > 1 and len(slots_now) > 1  # at the same time: each in its own folder
        cands = [
            wave.Candidate(
                run.run_id,
                build_command(cfg, run.run_dir / "train.py"),
                outputs.cwd(cfg, run.run_dir, parallel),
                {**training_env(cfg, run, budget), **env},
                run.run_dir / "run.log",
                budget,
                grace_seconds(cfg, session),
                run.marker,
            )
            for run, env in items
        ]
        pool = slots.SlotPool(slots_now, label=cfg.slug)
        outcomes = wave.run_wave(cands, pool, _launcher(session), live and len(cands) == 1)
        done = []
        for o in outcomes:
            launched = o.result or _error_result(o.error or RuntimeError("it never started"))
            launched.budget_s = budget
            done.append(launched)
        return done

    return launch


def _pick_winner(cfg: Config, results: list[dict]) -> dict | None:
    """The best of the candidates that beat the wave's starting best (the earliest on a tie)."""
    winner = None
    for res in results:
        if res["verdict"] != "advance":
            continue
        if winner is None or verdict.better(res["primary"]["value"], winner["primary"]["value"], cfg.primary_direction):
            winner = res
    return winner


def _settle(cfg: Config, session: Session, results: list[dict], winner, wave_id, history) -> None:
    """At most one advance per wave; notes name the winner; termination over the wave's rows in run order."""
    if wave_id:
        for res in results:
            if res is winner or res["status"] != "ok":
                continue
            if res["verdict"] == "advance":
                res["verdict"] = "revert"
                why = f"beat the best but {winner['run_id']} won wave {wave_id}"
            else:
                why = f"wave {wave_id} winner: {winner['run_id'] if winner else 'none'}"
            res["note"] = " | ".join(n for n in (res["note"], why) if n)
    recent, total = list(history[0]), history[1]
    for res in results:
        row = {"status": res["status"], "verdict": res["verdict"]}
        value = res["primary"]["value"] if res["valid"] else None
        stop = verdict.termination(session, [*recent, row], total + 1, value, cfg.primary_direction)
        res["terminated_by"], res["should_terminate"] = stop, stop is not None
        recent = [] if res["verdict"] == "advance" else [*recent, row]
        total += 1


# ----------------------------------------------------------------------------- output


def _value(result: dict) -> str:
    p = result["primary"]
    v = p["value"]
    return f"{p['name']}={v:.6g}" if isinstance(v, float) else f"{p['name']}={v if v is not None else '-'}"


def wave_summary(cfg: Config, results: list[dict], wave_id: str, slot_count: int, requeued: list[str]) -> list[str]:
    """One line per candidate (up to SHOWN_CANDIDATES, then a count) and one summary line: under 800 bytes."""
    lines = []
    for res in results[:SHOWN_CANDIDATES]:
        head = f"{res['run_id']} {res['status']}/{res['verdict']} {_value(res)} ({res['wall_seconds']:.1f}s)"
        cand = res["note"].split(":")[0] if res["note"][:1] == "c" and ":" in res["note"][:12] else ""
        lines.append(one_line(f"{head} {cand}", CANDIDATE_LINE_CAP))
    if len(results) > SHOWN_CANDIDATES:
        lines.append(f"... and {len(results) - SHOWN_CANDIDATES} more (ar.py status --last {len(results)})")
    winner = next((r for r in results if r["verdict"] == "advance"), None)
    summary = f"wave {wave_id}: {len(results)} candidate(s) on {slot_count} slot(s); "
    if winner:
        summary += f"winner {winner['run_id']} is the new best, train.py is its snapshot"
    else:
        summary += "no advance, train.py is the best snapshot"
    if requeued:
        summary += f"; queued again: {','.join(requeued)}"
    crashed = [r["run_id"] for r in results if r["status"] in ("crash", "timeout", "unclean")]
    if crashed:
        summary += f"; see: ar.py tail --run {crashed[0]}"
    if results and results[-1]["should_terminate"]:
        summary += f"; STOP: terminated_by={results[-1]['terminated_by']}"
    return [*lines, one_line(summary, SUMMARY_CAP)]
