"""The steps of one run, each a function a caller can run per candidate:

  allocate(cfg, source, note)                          -> RunStart   runs/rNNNN/ with train.py + started.json
  launch_run(cfg, session, run, budget_s, live)        -> LaunchResult   the training under the watchdog
                                                          (keywords: train_py, extra_env)
  measure(cfg, run, launched)                          -> Measured   metrics + checkpoint capture
  judge(cfg, session, run, launched, measured, best)   -> result dict (nothing written)
  commit(cfg, session, run, result, best)              -> pruned run ids: decision.json, promote or
                                                          restore, ledger row, result.json, prune

`judge` takes the best record as an argument (not read from disk), so several
candidates can be judged against the best as it was when they started.
Crash consistency: each state change is atomic and the FAULT_POINTS are
reached in this order; a SIGKILL between any two is repaired by the next run.
"""

from __future__ import annotations

import datetime as dt
import os
import shlex
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from . import best as best_state
from . import chain_hash, changes, checkpoints, ledger, outputs, verdict
from .config import LAUNCHERS, PYTHON_RE, Config, Session
from .errors import UserError
from .fsutil import atomic_write_json, fault_point
from .launch import LaunchResult, run_training
from .logtail import exception_line
from .record import best_record, primary_field, result_record
from .runs import next_run_id, run_dir_of, run_numbers
from .snapshots import has_conflict_markers, restore_train_py
from .text import one_line

# ---- knobs
GRACE_S_PYTHON = 5.0  # SIGTERM -> SIGKILL on timeout for one process: time to flush and exit
GRACE_S_LAUNCHER = 15.0  # the same for torchrun & co: they forward SIGTERM to every rank first
METRICS_CAP = 24  # metrics kept in result.json (the primary and constraints first): under 2 KB
SELF_TEST_TIMEOUT_S = 600  # prepare.py --self-test before the first run of a full-prep experiment
SELF_TEST_LINE_CAP = 200  # characters of its last output line quoted in the error

DEFAULT_GRACE = {"python": GRACE_S_PYTHON, **dict.fromkeys(LAUNCHERS, GRACE_S_LAUNCHER)}
MARKER_KEY = "AR_RUN_TOKEN"  # environment marker of every process of a run (the sweep finds them by it)
SENTINEL = ".ar-unclean"  # blocks runs while processes of a killed run survive
FAULT_POINTS = ("run.started", "run.decided", "run.restored", "run.ledger", "run.recorded")


@dataclass
class RunStart:
    """A run folder that exists, with its train.py snapshot and started.json."""

    run_id: str
    run_dir: Path
    token: str  # value of MARKER_KEY in the training's environment
    started: float  # time.time() at allocation
    started_at: str  # the same, ISO 8601 with the local offset
    note: str  # RUN_NOTE of the snapshot

    @property
    def marker(self) -> tuple[str, str]:
        return (MARKER_KEY, self.token)


@dataclass
class Measured:
    """What a finished run produced, before any judgement."""

    status: str  # ok / crash / timeout / interrupted / unclean, from the launch alone
    wanted: list[str]  # the primary metric, then the constraint metrics
    metrics: dict  # every metric found (may hold nan/inf)
    value: float | None  # the primary, as a float
    extraction_note: str  # why the configured metric backend fell short, else ""
    checkpoint: dict | None  # what checkpoints.capture() took
    missing: str  # why a required checkpoint is missing, else ""


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
    prepare = cfg.expr_dir / "prepare.py"
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


def allocate(cfg: Config, source: bytes, note: str) -> RunStart:
    """Create the next runs/rNNNN/ holding `source` as its train.py, and its started.json."""
    if has_conflict_markers(source):
        raise UserError("train.py has merge conflict markers (from copier update); resolve them, then run again")
    run_id = next_run_id(run_numbers(cfg.expr_dir))
    run_dir = run_dir_of(cfg.expr_dir, run_id)
    run_dir.mkdir(parents=True)  # never exist_ok: two allocations must not share a folder
    (run_dir / "train.py").write_bytes(source)
    started = time.time()
    started_at = dt.datetime.fromtimestamp(started).astimezone().isoformat(timespec="seconds")
    run = RunStart(run_id, run_dir, uuid.uuid4().hex, started, started_at, note)
    atomic_write_json(run_dir / "started.json", {"token": run.token, "started_at": started_at, "note": note})
    fault_point("run.started")
    return run


# ----------------------------------------------------------------------------- 2. launch


def run_budget(cfg: Config, session: Session, seconds: int | None) -> int:
    """This run's time budget: --seconds, else the session's, else the answers'."""
    return int(seconds or session.seconds or cfg.seconds)


def grace_seconds(cfg: Config, session: Session) -> float:
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
    return [*words, str(train_py or cfg.expr_dir / "train.py")]


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


def launch_run(
    cfg: Config,
    session: Session,
    run: RunStart,
    budget_s: int,
    live: bool,
    *,
    train_py: Path | None = None,
    extra_env: dict[str, str] | None = None,
) -> LaunchResult:
    """Train under the watchdog until the training exits or the budget is spent.

    `train_py` is the file launched (default: the experiment's train.py); `extra_env`
    is added to the training's environment (e.g. the devices of a slot).
    """
    launched = run_training(
        build_command(cfg, train_py),
        cfg.project_root,
        {**training_env(cfg, run, budget_s), **(extra_env or {})},
        run.run_dir / "run.log",
        budget_s,
        grace_seconds(cfg, session),
        run.marker,
        live,
    )
    launched.budget_s = budget_s  # result.json records it; the run's first line shows it
    return launched


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


def measure(cfg: Config, run: RunStart, launched: LaunchResult) -> Measured:
    """Status, metrics and checkpoint of a finished run (an unclean one also blocks further runs)."""
    from . import metrics  # the backends are loaded only once a run has finished

    cfg = outputs.measuring(cfg, run.run_dir)  # globs read where this run wrote (its own folders)
    status = launch_status(launched)
    if status == "unclean":
        write_sentinel(cfg.expr_dir, run.run_id, launched.survivors)
    wanted = [cfg.primary_metric, *(c.name for c in cfg.constraints)]
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


# ----------------------------------------------------------------------------- 4. judge


def compact_metrics(metrics: dict, keep: list[str]) -> dict:
    out = {k: metrics[k] for k in keep if k in metrics}
    for k, v in metrics.items():
        if len(out) >= METRICS_CAP:
            break
        out.setdefault(k, v)
    return {k: (v if verdict.is_finite(v) else str(v)) for k, v in out.items()}


def judge(
    cfg: Config,
    session: Session,
    run: RunStart,
    launched: LaunchResult,
    measured: Measured,
    best: dict | None,
    history: tuple[list[dict], int] | None = None,
) -> dict:
    """The run's result record, judged against `best`; writes nothing.

    `history` is (ledger rows since the last advance, total rows) before this run;
    read from results.tsv when not given.
    """
    best_value = (best or {}).get("primary", {}).get("value")
    decision = verdict.decide(
        measured.status,
        measured.value,
        cfg.primary_direction,
        best_value,
        cfg.constraints,
        measured.metrics,
        measured.missing,
    )
    notes = [run.note, decision.reason, measured.extraction_note]
    if launched.leaked:
        notes.append(f"swept {len(launched.leaked)} process(es) the training left running")
    exception = exception_line(run.run_dir / "run.log") if measured.status == "crash" else ""
    if exception:  # `Type: message` from the traceback, not whatever the log printed last
        notes.append(exception)
    elif measured.status in ("crash", "timeout", "unclean") and launched.last_line:
        notes.append(f"last log line: {launched.last_line}")
    recent, total = history if history is not None else ledger.since_last_advance(cfg.expr_dir / "results.tsv")
    this_row = {"status": decision.status, "verdict": decision.verdict}
    stop = verdict.termination(
        session,
        [*recent, this_row],
        total + 1,
        measured.value if decision.valid else None,
        cfg.primary_direction,
    )
    return result_record(
        run.run_id,
        started_at=run.started_at,
        wall_seconds=launched.wall_s,
        budget_seconds=launched.budget_s if launched.budget_s is not None else run_budget(cfg, session, None),
        status=decision.status,
        verdict=decision.verdict,
        metrics=compact_metrics(measured.metrics, measured.wanted),
        primary=primary_field(cfg.primary_metric, cfg.primary_direction, measured.value),
        constraints=decision.constraints,
        valid=decision.valid,
        improved_over_best=decision.improved,
        previous_best_run_id=(best or {}).get("run_id"),
        log_path=str(run.run_dir / "run.log"),
        note=" | ".join(n for n in notes if n),
        checkpoint=measured.checkpoint,
        exit_code=launched.exit_code,
        terminated_by=stop,
    )


# ----------------------------------------------------------------------------- 5. commit


def commit(
    cfg: Config, session: Session, run: RunStart, result: dict, best: dict | None, values: list | None = None
) -> list[str]:
    """Make the outcome true on disk, in crash-consistent order; returns the run ids whose checkpoint was pruned.

    decision.json first (it carries what repair needs to finish exactly as planned),
    then promote (advance) or restore train.py, the ledger row, result.json, prune.
    """
    expr = cfg.expr_dir
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
    ledger.append(expr / "results.tsv", result)
    fault_point("run.ledger")
    ledger.write_result(run.run_dir, result)
    fault_point("run.recorded")
    best_id = run.run_id if advanced else (best or {}).get("run_id")
    pruned = checkpoints.prune(expr, session.keep_checkpoints, best_id)
    if pruned:
        checkpoints.record_pruned(expr, pruned)
    return pruned
