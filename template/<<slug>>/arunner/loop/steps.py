"""The steps of one run, each a function the engine (engine.py) runs per planned run:

  allocate(cfg, planned)                -> RunStart   runs/rNNNN/ with train.py + started.json
  build_command, training_env           what is launched, and its environment
  measure(cfg, run, launched)           -> Measured   metrics + checkpoint capture
  commit(exp, run, result, best, values)     decision.json (termination decided there, from
                                        the ledger's running summary), promote or restore, ledger row,
                                        result.json, prune
Crash consistency: each state change is atomic and the FAULT_POINTS are
reached in this order; a SIGKILL between any two is repaired by the next run.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from ..core import chain_hash
from ..core.config import LAUNCHERS, PYTHON_RE, Config, Experiment, run_budget
from ..core.errors import UserError
from ..core.fsutil import atomic_write_json, fault_point
from ..core.layout import CANDIDATE, LEDGER, SENTINEL, STARTED, TRAIN_PY
from ..core.runs import make_next_run_dir
from ..core.text import one_line
from ..procs import outputs
from ..procs.launch import LaunchResult
from ..rules import verdict
from ..state import best as best_state
from ..state import candidates, changes, checkpoints, ledger, tally
from ..state.record import best_record
from ..state.results import MARKER_KEY, RunStart
from ..state.snapshots import has_conflict_markers, restore_train_py
from .plans import PlannedRun

__all__ = ["MARKER_KEY", "SENTINEL", "RunStart", "run_budget"]

# ---- knobs
GRACE_S_PYTHON = 5.0  # SIGTERM -> SIGKILL on timeout for one process: time to flush and exit
GRACE_S_LAUNCHER = 15.0  # the same for torchrun & co: they forward SIGTERM to every rank first
METRICS_CAP = 24  # metrics kept in result.json (the primary and constraints first): under 2 KB
SELF_TEST_TIMEOUT_S = 600  # prepare.py --self-test before the first run of a full-prep experiment
SELF_TEST_LINE_CAP = 200  # characters of its last output line quoted in the error

DEFAULT_GRACE = {"python": GRACE_S_PYTHON, **dict.fromkeys(LAUNCHERS, GRACE_S_LAUNCHER)}
FAULT_POINTS = ("run.started", "run.decided", "run.restored", "run.ledger", "run.recorded")


class Measured:
    """What a finished run produced, before any judgement (integrity may still amend it)."""

    def __init__(self, status, wanted, metrics, value, extraction_note, checkpoint, missing):
        self.status: str = status  # ok / crash / timeout / interrupted / unclean, from the launch alone
        self.wanted: list[str] = wanted  # the primary metric, then the constraint metrics
        self.metrics: dict = metrics  # every metric found (may hold nan/inf)
        self.value: float | None = value  # the primary, as a float
        self.extraction_note: str = extraction_note  # why the configured metric backend fell short, else ""
        self.checkpoint: dict | None = checkpoint  # what checkpoints.capture() took
        self.missing: str = missing  # why a required checkpoint is missing, else ""


# ----------------------------------------------------------------------------- sentinel


def check_sentinel(expr_dir: Path) -> None:
    sentinel = expr_dir / SENTINEL
    if sentinel.exists():
        first = sentinel.read_text(errors="replace").splitlines()[:1]
        raise UserError(
            f"{sentinel} blocks runs: {first[0] if first else 'processes survived a kill'}; "
            f"kill those PIDs yourself, then delete {sentinel}"
        )


def survivor_pids(survivors: list) -> str:
    return " ".join(str(p["pid"] if isinstance(p, dict) else p) for p in survivors)


def write_sentinel(expr_dir: Path, run_id: str, survivors: list) -> None:
    """Block further runs until a person has dealt with processes that outlived a kill."""
    detail = "".join(f"{p}\n" for p in survivors)
    (expr_dir / SENTINEL).write_text(
        f"run {run_id} left processes alive after kill: pids {survivor_pids(survivors)}\n{detail}"
    )


# ----------------------------------------------------------------------------- before the first run


def self_test_data(cfg: Config) -> None:
    """Full-prep experiments: load one batch through prepare.py before the very first run."""
    prepare = cfg.layout.prepare_py
    if b"FULL_PREP = True" not in prepare.read_bytes():
        return
    proc = subprocess.run(
        [sys.executable, str(prepare), "--self-test"],
        cwd=cfg.project_root,
        capture_output=True,
        text=True,
        timeout=SELF_TEST_TIMEOUT_S,
    )
    if proc.returncode != 0:
        last = (proc.stderr.strip() or proc.stdout.strip() or "no output").splitlines()[-1]
        raise UserError(
            f"prepare.py self-test failed before the first run: {one_line(last, SELF_TEST_LINE_CAP)}; "
            f"fix the host's data loaders (python {prepare} --self-test shows it all)"
        )


# ----------------------------------------------------------------------------- 1. allocate


def iso_local(t: float) -> str:
    """ISO 8601 local time with its offset, to the second (datetime's isoformat, without importing datetime)."""
    local = time.localtime(t)
    offset = local.tm_gmtoff or 0
    sign, offset = ("+" if offset >= 0 else "-"), abs(offset)
    return time.strftime("%Y-%m-%dT%H:%M:%S", local) + f"{sign}{offset // 3600:02d}:{offset % 3600 // 60:02d}"


def allocate(cfg: Config, planned: PlannedRun) -> RunStart:
    """The next runs/rNNNN/ with the planned train.py and started.json.

    A queued candidate's folder is moved in first (one rename), then its train.py is copied
    out: a kill in between leaves a run repair records as a crash, never a doubled candidate.
    """
    if planned.candidate:
        run_dir = make_next_run_dir(cfg.expr_dir)
        popped = candidates.pop(cfg.expr_dir, run_dir / CANDIDATE, planned.candidate.id)
        source = (popped.path / TRAIN_PY).read_bytes()
    else:
        source = planned.source
        if has_conflict_markers(source):
            raise UserError("train.py has merge conflict markers (from copier update); resolve them, then run again")
        run_dir = make_next_run_dir(cfg.expr_dir)
    run_id = run_dir.name
    (run_dir / TRAIN_PY).write_bytes(source)
    started = time.time()
    started_at = iso_local(started)
    run = RunStart(run_id, run_dir, os.urandom(16).hex(), started, started_at, planned.label)
    record = {"token": run.token, "started_at": started_at, "note": planned.label, "kind": planned.kind}
    if planned.belongs_to:
        record["belongs_to"] = planned.belongs_to
    if planned.candidate:
        record.update(candidate=planned.candidate.id, wave=planned.wave)
    atomic_write_json(run_dir / STARTED, record)
    fault_point("run.started")
    return run


# ----------------------------------------------------------------------------- 2. launch


def grace_seconds(exp: Experiment) -> float:
    cfg, session = exp.cfg, exp.session
    return session.grace_s if session.grace_s is not None else DEFAULT_GRACE.get(cfg.launcher_kind, GRACE_S_PYTHON)


def build_command(cfg: Config, train_py: Path | None = None) -> list[str]:
    """The runner prefix, verbatim, plus train.py; a bare `python` means the interpreter running ar.py."""
    words = shlex.split(cfg.runner)
    if not words:
        raise UserError("runner is empty in experiment.json; set it (e.g. python) and run copier update")
    if PYTHON_RE.fullmatch(words[0]):
        words[0] = sys.executable
    elif "/" not in words[0]:
        local = Path(sys.executable).parent / words[0]  # torchrun/accelerate of this same environment
        if local.exists():
            words[0] = str(local)
    return [*words, str(train_py or cfg.layout.train_py)]


def resume_checkpoint(cfg: Config) -> str | None:
    """The chained parent's best checkpoint, exported as AR_RESUME_CKPT."""
    if not cfg.parent_ckpt:
        return None
    path = Path(cfg.parent_ckpt)
    path = path if path.is_absolute() else cfg.project_root / path
    if not path.exists():
        raise UserError(
            f"parent checkpoint {path} does not exist (parent_ckpt in the answers); "
            "restore the parent's best_ckpt or clear parent_ckpt and run copier update"
        )
    return str(path)


def training_env(cfg: Config, run: RunStart, budget_s: int) -> dict:
    env = dict(os.environ)
    env.update(
        {
            "AR_RUN_ID": run.run_id,
            "AR_RUN_DIR": str(run.run_dir),
            "AR_EXPR_DIR": str(cfg.expr_dir),
            "AR_TIME_BUDGET_S": str(budget_s),
            "AR_DEADLINE": f"{run.started + budget_s:.3f}",
            MARKER_KEY: run.token,
            "AR_INSIDE_RUN": "1",  # gates.py: rule-changing commands refuse inside a run
            "WANDB_DIR": str(run.run_dir),  # binds this run's wandb files to this iteration
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(outputs.env(cfg, run.run_dir))  # the host's output option -> runs/rNNNN/out
    env.pop("AR_FAULT_AT", None)  # fault injection targets the runner, never the training
    if cfg.wandb_project:
        env.setdefault("WANDB_PROJECT", cfg.wandb_project)
    resume = resume_checkpoint(cfg)
    if resume:
        env["AR_RESUME_CKPT"] = resume
    return env


# ----------------------------------------------------------------------------- 3. measure


def launch_status(launched: LaunchResult) -> str:
    """How the training ended, before any metric is read."""
    if launched.survivors:
        return "unclean"
    if launched.interrupted:
        return "interrupted"
    if launched.timed_out:
        return "timeout"
    return "crash" if launched.exit_code != 0 else "ok"


def primary_value(metrics: dict, name: str) -> float | None:
    value = metrics.get(name)
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def wanted_metrics(cfg: Config) -> list[str]:
    """The metrics a run is measured by: the primary, then the constraints'."""
    return [cfg.primary_metric, *(c.name for c in cfg.constraints)]


def measure(cfg: Config, run: RunStart, launched: LaunchResult) -> Measured:
    """Status, metrics and checkpoint of a finished run (an unclean one also blocks further runs)."""
    from .. import metrics  # the backends are loaded only once a run has finished

    cfg = outputs.measuring(cfg, run.run_dir)  # globs read where this run wrote (its own folders)
    status = launch_status(launched)
    if status == "unclean":
        write_sentinel(cfg.expr_dir, run.run_id, launched.survivors)
    wanted = wanted_metrics(cfg)
    extraction = metrics.extract(cfg, run.run_dir, launched.started_at, wanted) if status == "ok" else None
    found = extraction.metrics if extraction else {}
    capture, missing = None, ""
    if status == "ok":
        capture = checkpoints.capture(cfg, run.run_dir, launched.started_at)
        if capture is None and cfg.checkpoint_glob:
            missing = f"no checkpoint written by this run (checkpoint_glob {cfg.checkpoint_glob})"
    note = extraction.note if extraction else ""
    outputs.tidy(run.run_dir)  # a working folder's links go; the run's outputs stay
    return Measured(status, wanted, found, primary_value(found, cfg.primary_metric), note, capture, missing)


# ----------------------------------------------------------------------------- 4. record


def compact_metrics(metrics: dict, keep: list[str]) -> dict:
    out = {k: metrics[k] for k in keep if k in metrics}
    for k, v in metrics.items():
        if len(out) >= METRICS_CAP:
            break
        out.setdefault(k, v)
    return {k: (v if verdict.is_finite(v) else str(v)) for k, v in out.items()}


# ----------------------------------------------------------------------------- 5. commit


def commit(exp: Experiment, run: RunStart, result: dict, best: dict | None, values: list | None = None) -> list[str]:
    """Make the outcome true on disk, in crash-consistent order; returns the run ids whose checkpoint was pruned.

    decision.json first (it carries what repair needs to finish exactly as planned),
    then promote (advance) or restore train.py, the ledger row, result.json, prune.
    """
    cfg, session = exp.cfg, exp.session
    expr = cfg.expr_dir
    before = tally.load(expr)  # termination is decided here, once, from the ledger's running summary
    after = before.after_result(result)
    stop = verdict.termination(session, after.plateau, after.rows, after.last_value, cfg.primary_direction)
    result["terminated_by"], result["should_terminate"] = stop, stop is not None
    lineage = {"parent_expr": cfg.parent_expr, "parent_ckpt": cfg.parent_ckpt}
    primary, n = result["primary"], 1
    if values and len(values) > 1:  # a confirmed candidate: the best's value is the mean of its runs
        primary, n = {**primary, "value": sum(values) / len(values)}, len(values)
    record = best_record(run.run_id, primary, lineage, n=n)
    chain_hash.write_decision(expr, run.run_dir, {**result, **record})  # sealed: repair trusts no other
    fault_point("run.decided")
    advanced = result["verdict"] == "advance"
    if advanced:
        best_state.promote(expr, run.run_dir, record)
        if result.get("confirms"):  # train.py was restored after the first run: the candidate comes back
            restore_train_py(expr, record)
    else:
        restore_train_py(expr, best)
    fault_point("run.restored")
    changes.record(expr, run.run_dir, result, best)  # change.json, train.diff, .ar-changes.tsv: before the row
    ledger.append(expr / LEDGER, result)
    tally.recorded(expr, before, result)
    fault_point("run.ledger")
    ledger.write_result(run.run_dir, result)
    fault_point("run.recorded")
    best_id = run.run_id if advanced else (best or {}).get("run_id")
    pruned = checkpoints.prune(expr, session.keep_checkpoints, best_id)
    if pruned:
        checkpoints.record_pruned(expr, pruned)
    return pruned
