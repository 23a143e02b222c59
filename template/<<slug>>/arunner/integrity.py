"""Metric integrity, per run: the calls a run makes at four points (each candidate gets its own).

  before_run(cfg, session)                   record or check the protected files; a change blocks the run
  guard(cfg, session, source)                the static guard on this run's train.py: "" or the offence
  after_training(cfg, session, run, measured) check the files again, then (evaluator mode) judge the
                                              checkpoint in a separate process; returns what result.json keeps
  refused(cfg, session, run, best, note)     the record of a run refused before training

Modes: `off` (trust what training prints), `files` (protected files + guard),
`evaluator` (also the independent evaluator). The default is `evaluator` when
prepare.py defines evaluate(), else `files`. The building blocks are
protect.py (manifest, guard) and evaluate.py (the evaluator process).
"""

from __future__ import annotations

from pathlib import Path

from . import evaluate, protect
from .config import Config, Session
from .errors import UserError
from .record import primary_field, result_record

MODES = ("off", "files", "evaluator")


def mode(cfg: Config, session: Session) -> str:
    """The integrity mode in force: the session's choice, else evaluator when prepare.py has evaluate()."""
    has = evaluate.has_evaluator(cfg.expr_dir / "prepare.py")
    chosen = session.integrity or ("evaluator" if has else "files")
    return "files" if chosen == "evaluator" and not has else chosen


def describe(cfg: Config, session: Session) -> str:
    """One line for `status`."""
    explain = {
        "off": "the metric training prints decides; nothing is checked",
        "files": "protected files and the train.py guard are checked; the metric training prints decides",
        "evaluator": "protected files and the train.py guard are checked; a separate evaluator decides",
    }
    current = mode(cfg, session)
    return f"integrity: {current} ({explain[current]})"


def check_choice(cfg: Config, value: str) -> None:
    """`session --integrity VALUE`: one line when it cannot hold."""
    if value not in MODES:
        raise UserError(f"ar.py session: --integrity {value!r} must be one of {', '.join(MODES)}")
    if value == "evaluator" and not evaluate.has_evaluator(cfg.expr_dir / "prepare.py"):
        raise UserError(
            "ar.py session: --integrity evaluator needs evaluate(checkpoint_path) in prepare.py; "
            "define it there (the comment in prepare.py shows how) or choose files"
        )


def before_run(cfg: Config, session: Session) -> None:
    """Record the manifest at the first run, else check it; a changed file blocks the run (nothing touched)."""
    if mode(cfg, session) == "off":
        return
    changed = protect.ensure(cfg.expr_dir, cfg.project_root, cfg.protected_globs).changed
    if changed:
        raise UserError(protect.changed_message(changed, cfg.expr_dir))


def guard(cfg: Config, session: Session, source: bytes) -> str:
    """The static guard's offence in this run's train.py, or ""."""
    if mode(cfg, session) == "off":
        return ""
    names = protect.protected_names(cfg.expr_dir / "prepare.py", cfg.project_root)
    offence = protect.guard_train_py(source.decode("utf-8", errors="replace"), cfg.primary_metric, names)
    return str(offence) if offence else ""


def after_training(cfg: Config, session: Session, run, measured) -> dict:
    """After a run that trained to the end: files checked again, then the evaluator (evaluator mode).

    Changes `measured` in place: the evaluated primary replaces the reported one,
    and any reason the run is invalid goes to `measured.missing` (verdict.decide
    makes that run invalid/revert). Returns the fields result.json keeps:
    reported, evaluation, holdout (None where they do not apply).
    """
    extra = {"reported": None, "evaluation": None, "holdout": None}
    current = mode(cfg, session)
    if current == "off" or measured.status != "ok":
        return extra
    changed = protect.check(cfg.expr_dir, cfg.project_root).changed
    if changed:  # the manifest keeps the old state: the next run is blocked until restored or accepted
        measured.missing = _join(measured.missing, protect.changed_message(changed, cfg.expr_dir))
        return extra
    if current != "evaluator":
        return extra
    extra["reported"] = measured.value
    if not measured.checkpoint:
        measured.missing = _join(measured.missing, "no checkpoint to evaluate")
        return extra
    ckpt = cfg.expr_dir / measured.checkpoint["stored"]
    result = evaluate.run_evaluator(
        cfg.expr_dir,
        cfg.project_root,
        ckpt,
        run.run_dir,
        timeout_s=evaluate.EVAL_TIMEOUT_S,
        holdout=list(cfg.holdout_metrics or []) or None,
        marker=run.marker,  # a runner killed mid-evaluation: the next run's repair sweeps it by this
    )
    extra["evaluation"] = {"wall_s": result.wall_s, "evaluate_s": result.evaluate_s, "log": result.log_path}
    if not result.ok:
        measured.missing = _join(measured.missing, result.error)
        return extra
    extra["holdout"] = result.holdout or None
    agree, note = evaluate.compare(cfg.primary_metric, measured.value, result.metrics.get(cfg.primary_metric))
    measured.metrics.update(result.metrics)  # the evaluator's values decide, constraints included
    measured.value = _float(result.metrics.get(cfg.primary_metric))
    if measured.value is not None:
        measured.extraction_note = ""  # the evaluator supplied what extraction could not
    if not agree:
        measured.missing = _join(measured.missing, note)
    elif note:
        measured.extraction_note = note
    return extra


def refused(cfg: Config, session: Session, run, best: dict | None, note: str) -> dict:
    """The result of a run the guard refused: invalid/revert, never trained."""
    return result_record(
        run.run_id,
        started_at=run.started_at,
        status="invalid",
        verdict="revert",
        primary=primary_field(cfg.primary_metric, cfg.primary_direction, None),
        log_path=str(Path(run.run_dir) / "run.log"),
        note=" | ".join(n for n in (run.note, f"refused before training: {note}") if n),
        previous_best_run_id=(best or {}).get("run_id"),
    )


def _join(first: str, second: str) -> str:
    return "; ".join(t for t in (first, second) if t)


def _float(value) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def protect_command(cfg: Config, args) -> tuple[list[str], int]:
    """`ar.py protect [--accept]`: what is protected and whether it changed; --accept records it as it is now."""
    expr, root = cfg.expr_dir, cfg.project_root
    if args.accept:
        accepted = protect.accept(expr, root, cfg.protected_globs)
        count = len(protect.load(expr)["files"])
        if not accepted:
            return [f"no protected file had changed; recorded {count} files as they are now"], 0
        return [f"accepted the change of {', '.join(accepted)}; recorded {count} files as they are now"], 0
    if protect.load(expr) is None:
        return ["no protected-file record yet: the first `ar.py run` records it"], 0
    changed = protect.check(expr, root).changed
    count = len(protect.load(expr)["files"])
    if changed:
        return [protect.changed_message(changed, expr)], 1
    return [f"{count} protected files, none changed"], 0


def holdout_by_run(expr_dir: Path, run_ids: list[str]) -> dict:
    """{run id: holdout metrics} from each run's result.json (for `report`; `run` never prints them)."""
    from .fsutil import read_json
    from .runs import run_dir_of

    out = {}
    for run_id in run_ids:
        path = run_dir_of(expr_dir, run_id) / "result.json"
        try:
            data = read_json(path, "run result", "delete it", default=None) if path.exists() else None
        except UserError:
            data = None
        if isinstance(data, dict) and isinstance(data.get("holdout"), dict):
            out[run_id] = data["holdout"]
    return out


def accept_upgrade(cfg: Config) -> list[str]:
    """After `ar.py upgrade`: record the protected files as the new release left them; a line naming them."""
    if protect.load(cfg.expr_dir) is None:
        return []
    accepted = protect.accept(cfg.expr_dir, cfg.project_root, _globs_now(cfg))
    return [f"protected files re-recorded after the upgrade: {', '.join(accepted)}"] if accepted else []


def _globs_now(cfg: Config) -> list[str]:
    """protected_globs as the upgrade rendered them into experiment.json (cfg was read before it)."""
    try:
        return list(Config.load(cfg.expr_dir).protected_globs or [])
    except UserError:
        return list(cfg.protected_globs or [])
