"""One `ar.py run`, start to finish, and the repair of runs a killed runner left behind.

Order of a run (each state change is atomic; a SIGKILL between any two steps
is repaired by the next `run`):
  lock -> repair debris -> allocate rNNNN -> snapshot train.py + started.json
  -> launch under the watchdog -> extract metrics -> capture checkpoint
  -> decision.json -> promote (advance) or restore train.py (anything else)
  -> results.tsv row -> result.json (the run is now recorded) -> prune.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import os
import re
import shlex
import sys
import time
import uuid
from pathlib import Path

from . import best as best_state
from . import checkpoints, ledger, verdict
from .config import PYTHON_RE, Config, Session
from .errors import UserError
from .fsutil import atomic_write_json, fault_point, read_json
from .snapshots import has_conflict_markers, read_run_note, restore_train_py

RUN_ID_RE = re.compile(r"^r(\d{4,})$")
SENTINEL = ".ar-unclean"
LOCK = ".ar-lock"
MARKER_KEY = "AR_RUN_TOKEN"
FAULT_POINTS = ("run.started", "run.decided", "run.restored", "run.ledger", "run.recorded")
DEFAULT_GRACE = {"python": 5.0, "torchrun": 15.0, "accelerate": 15.0, "deepspeed": 15.0, "srun": 15.0, "mpirun": 15.0}
METRICS_CAP = 24  # keeps result.json under 2 KB


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


def run_numbers(expr_dir: Path) -> list[int]:
    """Numbers of the run folders, ascending (names only: cheap with 10,000 runs)."""
    try:
        names = os.listdir(expr_dir / "runs")
    except FileNotFoundError:
        return []
    return sorted(int(m.group(1)) for name in names if (m := RUN_ID_RE.match(name)))


def run_dir_of(expr_dir: Path, number: int) -> Path:
    return expr_dir / "runs" / f"r{number:04d}"


def next_run_id(numbers: list[int]) -> str:
    return f"r{(numbers[-1] if numbers else 0) + 1:04d}"


def build_command(cfg: Config) -> list[str]:
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
    return [*words, str(cfg.expr_dir / "train.py")]


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


def training_env(cfg: Config, run_id: str, run_dir: Path, budget: int, started: float, token: str) -> dict:
    env = dict(os.environ)
    env.update(
        {
            "AR_RUN_ID": run_id,
            "AR_RUN_DIR": str(run_dir),
            "AR_EXPR_DIR": str(cfg.expr_dir),
            "AR_TIME_BUDGET_S": str(budget),
            "AR_DEADLINE": f"{started + budget:.3f}",
            MARKER_KEY: token,
            "WANDB_DIR": str(run_dir),  # binds this run's wandb files to this iteration
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.pop("AR_FAULT_AT", None)  # fault injection targets the runner, never the training
    if cfg.wandb_project:
        env.setdefault("WANDB_PROJECT", cfg.wandb_project)
    resume = resume_checkpoint(cfg)
    if resume:
        env["AR_RESUME_CKPT"] = resume
    return env


def check_sentinel(expr_dir: Path) -> None:
    sentinel = expr_dir / SENTINEL
    if sentinel.exists():
        first = sentinel.read_text(errors="replace").splitlines()[:1]
        raise UserError(
            f"{sentinel} blocks runs: {first[0] if first else 'processes survived a kill'}; "
            f"kill those PIDs yourself, then delete {sentinel}"
        )


PRUNED = ".ar-pruned.json"


def record_pruned(expr_dir: Path, run_ids: list[str]) -> None:
    """Keep a running tally of pruned checkpoints for `status` (the runs themselves stay)."""
    tally = read_json(expr_dir / PRUNED, "pruned-checkpoint tally", "delete it", default=None) or {}
    count = int(tally.get("count", 0)) + len(run_ids)
    last = [*tally.get("last", []), *run_ids][-5:]
    atomic_write_json(expr_dir / PRUNED, {"count": count, "last": last})


def self_test_data(cfg: Config) -> None:
    """Full-prep experiments: load one batch through prepare.py before the very first run."""
    import subprocess

    prepare = cfg.expr_dir / "prepare.py"
    if b"FULL_PREP = True" not in prepare.read_bytes():
        return
    proc = subprocess.run(
        [sys.executable, str(prepare), "--self-test"], cwd=cfg.project_root, capture_output=True, text=True, timeout=600
    )
    if proc.returncode != 0:
        last = (proc.stderr.strip() or proc.stdout.strip() or "no output").splitlines()[-1]
        raise UserError(
            f"prepare.py self-test failed before the first run: {last[:200]}; "
            f"fix the host's data loaders (python {prepare} --self-test shows it all)"
        )


def launch_status(launched) -> str:
    """How the training ended, before any metric is read (SPEC §7's status column)."""
    if launched.survivors:
        return "unclean"
    if launched.interrupted:
        return "interrupted"
    if launched.timed_out:
        return "timeout"
    return "crash" if launched.exit_code != 0 else "ok"


def write_sentinel(expr_dir: Path, run_id: str, survivors: list) -> None:
    """Block further runs until a person has dealt with processes that outlived a kill."""
    pids = " ".join(str(p["pid"] if isinstance(p, dict) else p) for p in survivors)
    detail = "".join(f"{p}\n" for p in survivors)
    (expr_dir / SENTINEL).write_text(f"run {run_id} left processes alive after kill: pids {pids}\n{detail}")


def primary_value(metrics: dict, name: str):
    value = metrics.get(name)
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def compact_metrics(metrics: dict, keep: list[str]) -> dict:
    out = {k: metrics[k] for k in keep if k in metrics}
    for k, v in metrics.items():
        if len(out) >= METRICS_CAP:
            break
        out.setdefault(k, v)
    return {k: (v if verdict.is_finite(v) else str(v)) for k, v in out.items()}


# ----------------------------------------------------------------------------- repair


def repair(cfg: Config) -> list[str]:
    """Record every run a killed runner left without result.json; finish a cut-short promotion."""
    from . import watchdog

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
        token = started.get("token")
        if token:
            found, survivors = watchdog.stop_processes(None, (MARKER_KEY, token), 2.0)
            if survivors:
                write_sentinel(expr, run_dir.name, survivors)
                raise UserError(
                    f"{run_dir.name}: processes of a killed run survive (pids "
                    f"{' '.join(str(p['pid'] if isinstance(p, dict) else p) for p in survivors)}); "
                    f"kill them, then delete {expr / SENTINEL}"
                )
            if found:
                notes.append(f"{run_dir.name}: killed {len(found)} leftover process(es)")
        pending = read_json(run_dir / "decision.json", "run decision", "delete it", default=None)
        notes += best_state.repair(expr, pending if pending and pending.get("verdict") == "advance" else None)
        if pending:
            result = pending
        else:
            result = {
                "run_id": run_dir.name,
                "started_at": started.get("started_at", ""),
                "wall_seconds": 0.0,
                "status": "crash",
                "verdict": "crash",
                "metrics": {},
                "primary": {"name": cfg.primary_metric, "direction": cfg.primary_direction, "value": None},
                "constraints": [],
                "valid": False,
                "improved_over_best": False,
                "previous_best_run_id": None,
                "log_path": str(run_dir / "run.log"),
                "note": f"runner was killed before recording this run (recorded by repair); {started.get('note', '')}",
                "checkpoint": None,
                "should_terminate": False,
                "terminated_by": None,
                "exit_code": None,
            }
        best = best_state.read_best(expr)
        if result["verdict"] != "advance":
            restore_train_py(expr, best)
        if not ledger.has_row(expr / "results.tsv", result["run_id"]):
            ledger.append(expr / "results.tsv", result)
        ledger.write_result(run_dir, result)
        notes.append(f"recorded interrupted run {run_dir.name} as {result['status']}")
    if not notes:
        notes += best_state.repair(expr, None)
    return notes


# ----------------------------------------------------------------------------- run


def run_once(cfg: Config, session: Session, seconds: int | None, live: bool) -> dict:
    from . import launch, metrics

    expr = cfg.expr_dir
    check_sentinel(expr)
    with ExperimentLock(expr):
        repair(cfg)
        budget = int(seconds or session.seconds or cfg.seconds)
        grace = session.grace_s if session.grace_s is not None else DEFAULT_GRACE.get(cfg.launcher_kind, 5.0)
        best = best_state.read_best(expr)
        numbers = run_numbers(expr)
        if not numbers:
            self_test_data(cfg)
        source = (expr / "train.py").read_bytes()
        if has_conflict_markers(source):
            raise UserError("train.py has merge conflict markers (from copier update); resolve them, then run again")
        run_id = next_run_id(numbers)
        run_dir = expr / "runs" / run_id
        run_dir.mkdir(parents=True)
        (run_dir / "train.py").write_bytes(source)
        note = read_run_note(source.decode("utf-8", errors="replace"))
        token = uuid.uuid4().hex
        started = time.time()
        started_iso = dt.datetime.fromtimestamp(started).astimezone().isoformat(timespec="seconds")
        atomic_write_json(run_dir / "started.json", {"token": token, "started_at": started_iso, "note": note})
        fault_point("run.started")
        env = training_env(cfg, run_id, run_dir, budget, started, token)
        launched = launch.run_training(
            build_command(cfg), cfg.project_root, env, run_dir / "run.log", budget, grace, (MARKER_KEY, token), live
        )

        status = launch_status(launched)
        if status == "unclean":
            write_sentinel(expr, run_id, launched.survivors)

        wanted = [cfg.primary_metric, *(c.name for c in cfg.constraints)]
        extraction = metrics.extract(cfg, run_dir, launched.started_at, wanted) if status == "ok" else None
        found = extraction.metrics if extraction else {}
        value = primary_value(found, cfg.primary_metric)
        capture, missing = None, ""
        if status == "ok":
            capture = checkpoints.capture(cfg, run_dir, launched.started_at)
            if capture is None and cfg.checkpoint_glob:
                missing = f"no checkpoint written by this run (checkpoint_glob {cfg.checkpoint_glob})"
        best_value = (best or {}).get("primary", {}).get("value")
        decision = verdict.decide(status, value, cfg.primary_direction, best_value, cfg.constraints, found, missing)

        notes = [note] if note else []
        if decision.reason:
            notes.append(decision.reason)
        if extraction and extraction.note:
            notes.append(extraction.note)
        if launched.leaked:
            notes.append(f"swept {len(launched.leaked)} process(es) the training left running")
        if status in ("crash", "timeout", "unclean") and launched.last_line:
            notes.append(f"last log line: {launched.last_line}")
        recent, total = ledger.since_last_advance(expr / "results.tsv")
        result = {
            "run_id": run_id,
            "started_at": started_iso,
            "wall_seconds": round(launched.wall_s, 3),
            "status": decision.status,
            "verdict": decision.verdict,
            "metrics": compact_metrics(found, wanted),
            "primary": {
                "name": cfg.primary_metric,
                "direction": cfg.primary_direction,
                "value": value if value is None or verdict.is_finite(value) else str(value),
            },
            "constraints": decision.constraints,
            "valid": decision.valid,
            "improved_over_best": decision.improved,
            "previous_best_run_id": (best or {}).get("run_id"),
            "log_path": str(run_dir / "run.log"),
            "note": " | ".join(notes),
            "checkpoint": capture,
            "exit_code": launched.exit_code,
        }
        this_row = {"status": decision.status, "verdict": decision.verdict}
        result["terminated_by"] = verdict.termination(
            session, [*recent, this_row], total + 1, value if decision.valid else None, cfg.primary_direction
        )
        result["should_terminate"] = result["terminated_by"] is not None
        best_record = {
            "run_id": run_id,
            "primary": result["primary"],
            "snapshot": f"runs/{run_id}/train.py",
            "lineage": {"parent_expr": cfg.parent_expr, "parent_ckpt": cfg.parent_ckpt},
        }
        # decision.json carries what repair needs to finish this run exactly as planned.
        atomic_write_json(run_dir / "decision.json", {**result, **best_record})
        fault_point("run.decided")

        if decision.verdict == "advance":
            best_state.promote(expr, run_dir, best_record)
        else:
            restore_train_py(expr, best)
        fault_point("run.restored")
        ledger.append(expr / "results.tsv", result)
        fault_point("run.ledger")
        ledger.write_result(run_dir, result)
        fault_point("run.recorded")
        pruned = checkpoints.prune(expr, session.keep_checkpoints)
        if pruned:
            record_pruned(expr, pruned)
        return result


def summary_lines(cfg: Config, result: dict) -> list[str]:
    """At most 3 short lines for the agent (SPEC §9: <= 400 bytes)."""
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
        second = "train.py restored to the best snapshot"
        if result["status"] in ("crash", "timeout", "unclean"):
            second += f"; see: ar.py tail --run {result['run_id']}"
    if result.get("note"):
        second += f"; note: {result['note']}"
    lines = [head, second[:240]]
    if result["should_terminate"]:
        lines.append(f"STOP: terminated_by={result['terminated_by']}")
    return lines
