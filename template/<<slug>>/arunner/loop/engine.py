"""The engine: executes any plan (plans.py) the same way, a single run being a plan of one.

  allocate   runs/rNNNN/ per planned run: its train.py and started.json (a queued candidate's
             folder is moved in first: one rename, never doubled)
  guard      the static integrity guard per run: an offence is recorded, never trained
  launch     every run on a pool of slots (local or Slurm, one launcher interface); a run
             waits for a free slot; a plan of one runs in this thread with the live line;
             a local run's launcher loads what judging needs while it trains (_while_training)
  measure    status, metrics, checkpoint; then integrity (files again, the evaluator)
  decide     decide.decide(): pure, over the whole plan (one winner per wave)
  persist    steps.commit per run in run order (decision.json first; termination there)
Crash consistency: each state change is atomic and FAULT_POINTS are reached in this order;
a SIGKILL between any two is repaired by the next run (iteration.repair).
"""

from __future__ import annotations

import os
import shlex
import shutil
import time
from typing import TYPE_CHECKING, Callable, NamedTuple

from ..core import chain_hash
from ..core.config import Config, Experiment, Session
from ..core.errors import UserError
from ..core.fsutil import fault_point
from ..core.layout import CANDIDATE, JOB_FILE, QUEUE_DIR, RUN_LOG, TRAIN_PY
from ..core.logtail import exception_line
from ..core.text import one_line
from ..integrity import checks
from ..procs import outputs, slot_pool, slots
from ..procs.launch import LaunchResult
from ..rules import noise, verdict
from ..state import best as best_state
from ..state import candidates, noise_groups
from ..state.record import best_record, primary_field, result_record
from ..state.results import RunResult, RunStart
from ..state.snapshots import restore_target
from . import steps
from .plans import PlannedRun

if TYPE_CHECKING:  # rules.decide and rules.sandbox are loaded while the first run trains (_while_training)
    from ..rules.decide import Rules

FAULT_POINTS = ("rerun.started", "wave.allocated", "wave.judged", "wave.committed", "confirm.recorded")
LAUNCH_ERROR_CAP = 200  # characters of a launcher's exception kept as the run's last line


class Context(NamedTuple):
    """What every run of one `ar.py run` shares: the experiment, and how its runs are launched."""

    exp: Experiment
    budget_s: int
    live: bool  # a person watches: the live line for a plan of one
    spread_out: bool  # a wave, leased devices or Slurm: runs go to slots; else one slot, no device env

    @property
    def cfg(self) -> Config:
        return self.exp.cfg

    @property
    def session(self) -> Session:
        return self.exp.session


# ----------------------------------------------------------------------------- the loop


def execute(cx: Context, plan: list[PlannedRun], best: dict | None) -> tuple[list[RunResult], list[str]]:
    """Run every planned run against `best` (the best as the plan started); returns (results, requeued ids)."""
    started = [_allocate(cx, planned) for planned in plan]
    if any(planned.candidate for planned in plan):  # a wave of queued candidates
        fault_point("wave.allocated")
    offences = {run.run_id: checks.guard(cx.exp, source) for _, run, source in started}
    runnable = [(planned, run) for planned, run, _ in started if not offences[run.run_id]]
    pool_slots = slots.for_session(cx.session, len(runnable), cx.spread_out)
    cands = _candidates(cx, runnable, parallel=len(runnable) > 1 and len(pool_slots) > 1)
    pool = slots.SlotPool(pool_slots, label=cx.cfg.slug)
    live = cx.live and len(cands) == 1
    outcomes = slot_pool.run_jobs(cands, pool, launcher(cx.session, _while_training(cx)), live) if cands else []
    launched = {o.candidate.name: _launched(o, cx.budget_s) for o in outcomes}  # None: it never started
    results, requeued = [], []
    for planned, run, source in started:
        if offences[run.run_id]:
            results.append(_refused(cx, planned, run, source, best, offences[run.run_id]))
        elif launched[run.run_id] is None and planned.candidate:  # Ctrl+C before it got a slot: queued again
            _never_started(cx.cfg, run, planned.candidate.id)
            requeued.append(planned.candidate.id)
        else:
            results.append(_measured(cx, planned, run, source, launched[run.run_id], best))
    _record_pairs(cx, results)
    _decide(cx, results, best)
    _integrity_vetoes(cx, results, best)
    requeued += _requeue_lost(cx.cfg, results)
    _persist(cx, results, best)
    return results, requeued


# ----------------------------------------------------------------------------- allocate


def _allocate(cx: Context, planned: PlannedRun) -> tuple[PlannedRun, RunStart, bytes]:
    run = steps.allocate(cx.cfg, planned)
    if planned.kind != "candidate":
        fault_point("rerun.started")
    return planned, run, (run.run_dir / TRAIN_PY).read_bytes()


def _never_started(cfg: Config, run: RunStart, cand_id: str) -> None:
    os.rename(run.run_dir / CANDIDATE, cfg.expr_dir / QUEUE_DIR / cand_id)
    shutil.rmtree(run.run_dir, ignore_errors=True)


def _refused(cx: Context, planned: PlannedRun, run: RunStart, source: bytes, best, offence: str) -> RunResult:
    record = checks.refused(cx.exp, run, best, offence)
    notes = [record.pop("note")]
    return RunResult(planned.kind, run, source, record, notes, planned.belongs_to, _cand(planned), planned.wave)


def _cand(planned: PlannedRun) -> str | None:
    return planned.candidate.id if planned.candidate else None


# ----------------------------------------------------------------------------- launch


def launcher(session: Session, meanwhile: Callable[[], None] | None = None) -> slot_pool.Launcher:
    if session.launcher == "slurm":
        from ..procs import slurm  # only a Slurm session pays for its import

        return slurm.SlurmLauncher(shlex.split(session.slurm_args), JOB_FILE)
    return slot_pool.LocalLauncher(meanwhile)


def _while_training(cx: Context) -> Callable[[], None]:
    """What a local launcher does once a run has started: load what judging the run will need, while
    it trains rather than after (the decision and sandbox rules, the metric patterns: ~4 ms)."""

    def warm_up() -> None:
        from .. import metrics
        from ..rules import decide, sandbox  # noqa: F401 -- imported again where used: from sys.modules

        metrics.prepare(cx.cfg, steps.wanted_metrics(cx.cfg))

    return warm_up


def _candidates(cx: Context, runs: list[tuple[PlannedRun, RunStart]], parallel: bool) -> list[slot_pool.SlotJob]:
    """What the pool launches for each run: its command, working folder (its own on a fixed-path host
    when runs go at the same time), environment, log, budget and marker."""
    cfg, grace = cx.cfg, steps.grace_seconds(cx.exp)
    cands = []
    for planned, run in runs:
        env = {**steps.training_env(cfg, run, cx.budget_s), **planned.env}
        if planned.wave:
            env["AR_WAVE"] = planned.wave
        in_place = planned.kind == "candidate" and not planned.wave  # train.py itself, as a plain run would
        cmd = steps.build_command(cfg, cfg.layout.train_py if in_place else run.run_dir / TRAIN_PY)
        cands.append(
            slot_pool.SlotJob(
                run.run_id,
                cmd,
                outputs.cwd(cfg, run.run_dir, parallel),  # its own working folder on a fixed-path host
                env,
                run.run_dir / RUN_LOG,
                cx.budget_s,
                grace,
                run.marker,
            )
        )
    return cands


def _launched(outcome: slot_pool.Outcome, budget_s: int) -> LaunchResult | None:
    if outcome.slot is None:
        return None
    launched = outcome.result or _failed_launch(outcome.error or "it never started")
    launched.budget_s = budget_s
    return launched


def _failed_launch(why) -> LaunchResult:
    """A run the launcher could not start or follow: recorded as a crash with why as its last line."""
    return LaunchResult(
        exit_code=1,
        timed_out=False,
        interrupted=False,
        started_at=time.time(),
        wall_s=0.0,
        last_line=one_line(f"the launcher failed: {why}", LAUNCH_ERROR_CAP),
    )


# ----------------------------------------------------------------------------- measure


def _measured(cx: Context, planned: PlannedRun, run: RunStart, source: bytes, launched, best) -> RunResult:
    """Measure a finished run and check it (integrity); its record before any decision."""
    from ..rules.decide import Evidence  # loaded while the run trained (_while_training)

    cfg = cx.cfg
    if launched is None:  # interrupted before it got a slot
        launched = _failed_launch("it never started (interrupted)")
        launched.budget_s = cx.budget_s
    measured = steps.measure(cfg, run, launched)
    checked = checks.after_training(cx.exp, run, measured)  # files again; the evaluator decides
    record = result_record(
        run.run_id,
        started_at=run.started_at,
        wall_seconds=launched.wall_s,
        budget_seconds=launched.budget_s,
        status=measured.status,
        verdict=measured.status,
        metrics=steps.compact_metrics(measured.metrics, measured.wanted),
        primary=primary_field(cfg.primary_metric, cfg.primary_direction, measured.value),
        previous_best_run_id=(best or {}).get("run_id"),
        log_path=str(run.run_dir / RUN_LOG),
        note="",
        checkpoint=measured.checkpoint,
        exit_code=launched.exit_code,
        **checked,
    )
    if getattr(launched, "job_id", ""):
        record["slurm"] = {"job_id": launched.job_id, "state": launched.state}
    notes = [run.note, "", measured.extraction_note, *_launch_notes(run, launched, measured.status)]
    evidence = Evidence(
        run.run_id,
        planned.kind,
        measured.status,
        measured.value,
        measured.metrics,
        measured.missing,
        source.decode("utf-8", errors="replace"),
        planned.earlier,
    )
    return RunResult(
        planned.kind,
        run,
        source,
        record,
        notes,
        planned.belongs_to,
        _cand(planned),
        planned.wave,
        evidence=evidence,
        requeue=bool(getattr(launched, "requeue", False)),
        remark=planned.remark,
    )


def _launch_notes(run: RunStart, launched: LaunchResult, status: str) -> list[str]:
    notes = []
    if launched.leaked:
        notes.append(f"swept {len(launched.leaked)} process(es) the training left running")
    exception = exception_line(run.run_dir / RUN_LOG) if status == "crash" else ""
    if exception:  # `Type: message` from the traceback, not whatever the log printed last
        notes.append(exception)
    elif status in ("crash", "timeout", "unclean") and launched.last_line:
        notes.append(f"last log line: {launched.last_line}")
    notes.append(getattr(launched, "note", ""))  # Slurm: why a job ended as it did
    return notes


# ----------------------------------------------------------------------------- decide


def _record_pairs(cx: Context, results: list[RunResult]) -> None:
    """A confirmation's valid pair refines the spread before it is judged (the pair is measured twice)."""
    for r in results:
        e = r.evidence
        if r.kind != "confirm" or e is None:
            continue
        d = verdict.decide(e.status, e.value, cx.cfg.primary_direction, None, cx.cfg.constraints, e.metrics, e.missing)
        if d.valid:
            noise_groups.add_value(cx.cfg.expr_dir, r.belongs_to, r.belongs_to, float(e.earlier[0]))
            noise_groups.add_value(cx.cfg.expr_dir, r.belongs_to, r.run_id, float(e.value))


def rules(cx: Context, best: dict | None, wave_id: str | None) -> Rules:
    """What the runs of a plan are judged against: the best as it was when the plan started."""
    from ..rules.decide import Rules  # loaded while the run trained (_while_training)

    state = noise_groups.load(cx.cfg.expr_dir)
    best_source = None
    if best:
        try:
            best_source = (cx.cfg.expr_dir / best["snapshot"]).read_text(errors="replace")
        except OSError:
            best_source = None
    return Rules(
        direction=cx.cfg.primary_direction,
        constraints=tuple(cx.cfg.constraints),
        best_run=(best or {}).get("run_id"),
        best_value=(best or {}).get("primary", {}).get("value"),
        best_values=tuple(noise_groups.best_values(state, best)),
        best_source=best_source,
        spread=noise_groups.spread(state),
        k=noise_groups.margin_k(cx.session),
        strict=cx.session.strict,
        wave=wave_id,
    )


def _decide(cx: Context, results: list[RunResult], best: dict | None) -> None:
    from ..rules.decide import decide  # loaded while the run trained (_while_training)

    judged = [r for r in results if r.evidence]
    wave_id = next((r.wave for r in judged if r.wave), None)
    for r, d in zip(judged, decide([r.evidence for r in judged], rules(cx, best, wave_id))):
        r.record.update(
            status=d.status,
            verdict=d.verdict,
            valid=d.valid,
            improved_over_best=d.improved,
            constraints=d.constraints,
            margin=d.margin,
        )
        r.notes[1:2] = [d.notes[0]]  # the outcome's reason, right after the label
        said = sandbox_remark(cx.cfg.expr_dir, r.source, best, r.record) if r.kind == "candidate" else ""
        r.notes += [*d.notes[1:], r.remark, said]
        r.action, r.values = d.action, d.values


def sandbox_remark(expr, source: bytes, best: dict | None, record: dict) -> str:
    """A sandbox-only edit whose value is the best's, bit for bit: the note asks whether the patch ran."""
    from ..rules import sandbox  # loaded while the run trained (_while_training)

    if not best or record["status"] != "ok":
        return ""
    try:
        best_source = restore_target(expr, best)
    except UserError:
        return ""
    return sandbox.unchanged_patch_note(expr, source, best_source, best, record["primary"]["value"])


def _integrity_vetoes(cx: Context, results: list[RunResult], best: dict | None) -> None:
    """After the decision: a candidate whose hidden holdout got worse is not kept (nor confirmed), and
    an advance whose checkpoint is not the one evaluated is never promoted (integrity.py)."""
    for r in results:
        if r.kind == "candidate" and r.evidence:
            bare = {**r.result(), "note": ""}  # the veto's own note comes back alone
            vetoed = checks.holdout_veto(cx.cfg, bare, best, candidate=r.action == noise.CONFIRM)
            if vetoed is not bare:
                r.record.update(verdict=vetoed["verdict"], improved_over_best=vetoed["improved_over_best"])
                r.notes.append(vetoed["note"])
                r.action = None
        bare = {**r.result(), "note": ""}
        checked = checks.before_commit(cx.cfg, bare)
        if checked is not bare:
            r.record.update({k: checked[k] for k in ("status", "verdict", "valid", "improved_over_best")})
            r.notes.append(checked["note"])


def _requeue_lost(cfg: Config, results: list[RunResult]) -> list[str]:
    """Candidates the cluster lost (preempted, node failure) go back to the queue by themselves."""
    again = []
    for r in results:
        if r.requeue:
            cand = candidates.propose(cfg.expr_dir, r.source, r.run.note)
            r.notes.append(f"queued again as {cand.id}")
            again.append(cand.id)
    return again


# ----------------------------------------------------------------------------- persist


def _persist(cx: Context, results: list[RunResult], best: dict | None) -> None:
    """Every decision on disk first (a wave: repair finishes each as decided), then commit in run order."""
    cfg, expr = cx.cfg, cx.cfg.expr_dir
    wave_id = next((r.wave for r in results if r.candidate), None)
    if wave_id:
        lineage = {"parent_expr": cfg.parent_expr, "parent_ckpt": cfg.parent_ckpt}
        for r in results:
            record = best_record(r.run_id, r.record["primary"], lineage)
            chain_hash.write_decision(expr, r.run.run_dir, {**r.result(), **record})  # sealed: repair trusts no other
        fault_point("wave.judged")
    current = best
    for i, r in enumerate(results):
        result = r.result()
        advanced = result["verdict"] == "advance"
        steps.commit(cx.exp, r.run, result, current, r.values if advanced and r.kind == "confirm" else None)
        r.record.update(terminated_by=result["terminated_by"], should_terminate=result["should_terminate"])
        if advanced:
            current = best_state.read_best(expr)
        if i == 0 and wave_id:
            fault_point("wave.committed")
        if r.kind == "confirm":
            fault_point("confirm.recorded")
            noise_groups.link(expr, r.belongs_to, r.run_id)
