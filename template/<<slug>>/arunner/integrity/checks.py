"""Metric integrity, per run: the calls a run makes at four points (each candidate gets its own).

  before_run(exp)                   record or check the protected files; a change blocks the run
  guard(exp, source)                the static guard on this run's train.py: "" or the offence
  after_training(exp, run, measured) check the files again, then (evaluator mode) judge the
                                              checkpoint in a separate process; returns what result.json keeps
  refused(exp, run, best, note)     the record of a run refused before training

Modes: `off` (trust what training prints), `files` (protected files + guard),
`evaluator` (also the independent evaluator). The default is `evaluator` when
prepare.py defines evaluate(), else `files`. The building blocks are
protect.py (manifest, guard) and evaluate.py (the evaluator process).
"""

from __future__ import annotations

import os
from pathlib import Path

from ..core import chain_hash, digests, ledger_seal
from ..core.config import Config, Experiment, Session
from ..core.errors import UserError
from ..core.layout import CKPT, LEDGER, RESULT, RUN_LOG, SESSION_FILE
from ..rules import gates
from ..state import noise_groups
from ..state.record import primary_field, result_record
from . import data_guard, evaluate, protect

MODES = ("off", "files", "evaluator")


def mode(exp: Experiment) -> str:
    """The integrity mode in force: the session's choice, else evaluator when prepare.py has evaluate()."""
    cfg, session = exp.cfg, exp.session
    has = evaluate.has_evaluator(cfg.layout.prepare_py)
    chosen = session.integrity or ("evaluator" if has else "files")
    return "files" if chosen == "evaluator" and not has else chosen


def describe(exp: Experiment) -> str:
    """One line for `status`."""
    explain = {
        "off": "the metric training prints decides; nothing is checked",
        "files": "protected files and the train.py guard are checked; the metric training prints decides: "
        "a guard against accidents, not against deliberate gaming",
        "evaluator": "protected files and the train.py guard are checked; a separate evaluator decides",
    }
    current = mode(exp)
    return f"integrity: {current} ({explain[current]})"


def change_rules(cfg: Config, before: Session, after: Session, command: str) -> None:
    """`ar.py session` changing a rule: a person only (gates.py), recorded, and the manifest follows."""
    old, new = gates.rules_of(before), gates.rules_of(after)
    if old == new:
        return
    if gates.weakens(old, new):
        gates.require_person(cfg.expr_dir, command, "it changes how strictly runs are checked")
    for name in (k for k in new if new[k] != old[k]):
        gates.record_change(cfg.expr_dir, f"session {name}", old[name], new[name])
    protect.set_rules(cfg.expr_dir, new)


def check_choice(cfg: Config, value: str) -> None:
    """`session --integrity VALUE`: one line when it cannot hold."""
    if value not in MODES:
        raise UserError(f"ar.py session: --integrity {value!r} must be one of {', '.join(MODES)}")
    if value == "evaluator" and not evaluate.has_evaluator(cfg.layout.prepare_py):
        raise UserError(
            "ar.py session: --integrity evaluator needs evaluate(checkpoint_path) in prepare.py; "
            "define it there (the comment in prepare.py shows how) or choose files"
        )


def before_run(exp: Experiment) -> None:
    """Check the runner's own state and the rules, record the manifest at the first run, else check it;
    anything changed blocks the run (nothing touched)."""
    cfg, session = exp.cfg, exp.session
    verify_state(cfg)
    manifest = protect.load(cfg.expr_dir)
    rules = gates.rules_of(session)
    if manifest is not None and "rules" in manifest and manifest["rules"] != rules:
        changed = ", ".join(k for k in rules if rules[k] != manifest["rules"].get(k))
        raise UserError(
            f"{cfg.expr_dir / SESSION_FILE} changes {changed} outside `ar.py session`; "
            "stop and report this to the person (only they change the rules)"
        )
    if mode(exp) == "off":
        return
    # the manifest just loaded and verified above (nothing ran since): not read and verified twice more
    changed = protect.ensure(cfg.expr_dir, cfg.project_root, cfg.protected_globs, rules, manifest).changed
    if manifest is not None and "rules" not in manifest:
        protect.set_rules(cfg.expr_dir, rules)  # a manifest from before the rules were recorded
    if changed:
        raise UserError(protect.changed_message(changed, cfg.expr_dir))


def verify_state(cfg: Config) -> None:
    """results.tsv and the best's meta.json are the runner's own (its keyed seals); else one line naming the file."""
    from ..state.best import LINK_TARGET, read_best

    expr = cfg.expr_dir
    ledger_seal.verify_ledger(expr, expr / LEDGER)
    chain_hash.verify_best(expr, read_best(expr), expr / LINK_TARGET)


def status_lines(cfg: Config) -> list[str]:
    """For `status`: a seal that does not hold, then the rule changes."""
    try:
        verify_state(cfg)
        protect.load(cfg.expr_dir)
        lines = []
    except UserError as exc:
        lines = [f"runner state: {exc}"]
    return lines + gates.status_lines(cfg.expr_dir)


def report_lines(cfg: Config) -> list[str]:
    """For `report`: every rule change, when, what, and whether it came from a terminal."""
    entries = gates.changes(cfg.expr_dir)
    return ["", "Rule changes:", *([f"- {gates.describe_change(e)}" for e in entries] or ["- none"])]


def start_run() -> None:
    """At the start of `ar.py run`: the runner becomes the subreaper of everything it starts."""
    from ..procs import watchdog  # the run path only: status reads this module too

    watchdog.become_subreaper()


def guard(exp: Experiment, source: bytes) -> str:
    """The static guard's offence in this run's train.py, or ""."""
    cfg = exp.cfg
    if mode(exp) == "off":
        return ""
    prepare, text = cfg.layout.prepare_py, source.decode("utf-8", errors="replace")
    names = protect.protected_names(prepare, cfg.project_root)
    offence = protect.guard_train_py(text, cfg.primary_metric, names)
    if not offence:  # the evaluation's data functions and the protected (split) files: never read by training
        data = data_guard.evaluation_data_names(prepare, cfg.project_root)
        files = [g for g in _glob_files(cfg) if not g.endswith((".py", ".toml", ".cfg", ".json", ".yaml", ".yml"))]
        offence = data_guard.guard_data_reads(text, data, files)
    return str(offence) if offence else ""


def _glob_files(cfg: Config) -> list[str]:
    """The files protected_globs name, relative to the project root."""
    out = []
    for pattern in cfg.protected_globs or []:
        import glob  # only a session with patterns pays for it

        out += [
            os.path.relpath(p, cfg.project_root) for p in glob.glob(str(cfg.project_root / pattern), recursive=True)
        ]
    return out


HOLDOUT_REL_TOL = 0.02  # a holdout metric worse by less than this (relative) is noise ...
HOLDOUT_K = 2.0  # ... or by less than this many standard deviations of the best's own repeats


def holdout_veto(cfg: Config, result: dict, best: dict | None, candidate: bool = False) -> dict:
    """A run about to advance (or, with candidate=True, to be confirmed) whose holdout metric got worse
    than the best's beyond noise: ok/revert, with a note naming the metric, never its value.
    Returns the result (changed or not). Holdout metrics are read in the primary's direction."""
    holdout = result.get("holdout") or {}
    if not best or not holdout or not (result.get("verdict") == "advance" or candidate):
        return result
    groups = _best_group(cfg, best["run_id"])
    before = holdout_by_run(cfg.expr_dir, groups)
    sign = 1.0 if cfg.primary_direction == "min" else -1.0
    worse = []
    for name, value in sorted(holdout.items()):
        old = [float(v[name]) for v in before.values() if isinstance(v.get(name), (int, float))]
        if not old or not isinstance(value, (int, float)):
            continue
        mean = sum(old) / len(old)
        sd = (sum((o - mean) ** 2 for o in old) / (len(old) - 1)) ** 0.5 if len(old) > 1 else 0.0
        if sign * (float(value) - mean) > max(HOLDOUT_REL_TOL * abs(mean), HOLDOUT_K * sd):
            worse.append(name)
    if not worse:
        return result
    note = f"holdout got worse: {', '.join(worse)} (the validation gain does not carry over; not kept)"
    return {
        **result,
        "verdict": "revert",
        "improved_over_best": False,
        "note": _join_note(result.get("note", ""), note),
    }


def _best_group(cfg: Config, best_id: str) -> list[str]:
    """The best run and its repeats (the noise rule's group), whose holdout values say what noise is."""
    try:
        for group in noise_groups.load(cfg.expr_dir)["groups"].values():
            if best_id in group:
                return sorted(group)
    except (UserError, KeyError, TypeError):
        pass
    return [best_id]


def after_training(exp: Experiment, run, measured) -> dict:
    """After a run that trained to the end: files checked again, then the evaluator (evaluator mode).

    Changes `measured` in place: the evaluated primary replaces the reported one,
    and any reason the run is invalid goes to `measured.missing` (verdict.decide
    makes that run invalid/revert). Returns the fields result.json keeps:
    reported, evaluation, holdout (None where they do not apply).
    """
    cfg = exp.cfg
    extra = {"reported": None, "evaluation": None, "holdout": None}
    current = mode(exp)
    if current == "off":
        return extra
    verify_state(cfg)  # training edited results.tsv or the best's meta.json: blocked here, nothing recorded
    _sweep_after_training(run)
    if measured.status != "ok":
        return extra
    if _protected_files_changed(cfg, measured):  # the manifest keeps the old state: the next run is blocked
        return extra  # until the files are restored or accepted
    if current != "evaluator":
        return extra
    extra["reported"] = measured.value
    if not measured.checkpoint:
        measured.missing = _join(measured.missing, "no checkpoint to evaluate")
        return extra
    _evaluate_checkpoint(cfg, run, measured, extra)
    return extra


def _sweep_after_training(run) -> None:
    """Double-forked leftovers of training: gone before anything is judged, and said in the run's note."""
    from ..procs import watchdog  # the run path only: status reads this module too

    escaped = watchdog.sweep_orphans()
    if escaped:
        run.note = _join_note(run.note, f"stopped {len(escaped)} process(es) that outlived training")
    if watchdog.subreaper_note:
        run.note = _join_note(run.note, watchdog.subreaper_note)


def _protected_files_changed(cfg: Config, measured) -> bool:
    """Whether a protected file changed; if so the run is invalid, with the files named in `measured.missing`."""
    changed = protect.check(cfg.expr_dir, cfg.project_root).changed
    if changed:
        measured.missing = _join(measured.missing, protect.changed_message(changed, cfg.expr_dir))
    return bool(changed)


def _evaluate_checkpoint(cfg: Config, run, measured, extra: dict) -> None:
    """The evaluator on the run's stored checkpoint; its values replace the reported ones unless
    a protected file or the checkpoint changed meanwhile, or the evaluation failed."""
    from ..procs import watchdog  # the run path only: status reads this module too

    ckpt = cfg.expr_dir / measured.checkpoint["stored"]
    fingerprint = checkpoint_fingerprint(ckpt)  # what the evaluator judges is what gets promoted
    result = evaluate.run_evaluator(
        cfg.expr_dir,
        cfg.project_root,
        ckpt,
        run.run_dir,
        timeout_s=evaluate.EVAL_TIMEOUT_S,
        holdout=list(cfg.holdout_metrics or []) or None,
        marker=run.marker,  # a runner killed mid-evaluation: the next run's repair sweeps it by this
    )
    extra["evaluation"] = {
        "wall_s": result.wall_s,
        "evaluate_s": result.evaluate_s,
        "log": result.log_path,
        "checkpoint": fingerprint,
    }
    if watchdog.sweep_orphans():  # the evaluator's leftovers (or a daemon that hid from the first sweep)
        run.note = _join_note(run.note, "stopped process(es) that outlived the evaluator")
    if _protected_files_changed(cfg, measured):  # edited while it ran, restored after?
        return
    if checkpoint_fingerprint(ckpt) != fingerprint:
        measured.missing = _join(measured.missing, "the checkpoint changed while it was evaluated")
        return
    if not result.ok:
        measured.missing = _join(measured.missing, result.error)
        return
    extra["holdout"] = result.holdout or None
    _take_evaluated_values(cfg, measured, result)


def _take_evaluated_values(cfg: Config, measured, result) -> None:
    """The evaluator's values decide (constraints included); a reported value that disagrees invalidates the run."""
    agree, note = evaluate.compare(cfg.primary_metric, measured.value, result.metrics.get(cfg.primary_metric))
    measured.metrics.update(result.metrics)
    measured.value = _float(result.metrics.get(cfg.primary_metric))
    if measured.value is not None:
        measured.extraction_note = ""  # the evaluator supplied what extraction could not
    if not agree:
        measured.missing = _join(measured.missing, note)
    elif note:
        measured.extraction_note = note


def refused(exp: Experiment, run, best: dict | None, note: str) -> dict:
    """The result of a run the guard refused: invalid/revert, never trained."""
    cfg = exp.cfg
    return result_record(
        run.run_id,
        started_at=run.started_at,
        status="invalid",
        verdict="revert",
        primary=primary_field(cfg.primary_metric, cfg.primary_direction, None),
        log_path=str(Path(run.run_dir) / RUN_LOG),
        note=" | ".join(n for n in (run.note, f"refused before training: {note}") if n),
        previous_best_run_id=(best or {}).get("run_id"),
    )


def _join(first: str, second: str) -> str:
    return "; ".join(t for t in (first, second) if t)


def _join_note(first: str, second: str) -> str:
    return " | ".join(t for t in (first, second) if t)


def checkpoint_fingerprint(path: Path) -> str:
    """A digest of the checkpoint (file or folder): whole up to 16 MiB per file, sampled above,
    with each file's size, mtime and inode (a swapped or rewritten file changes them)."""
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    parts = []
    for f in files:
        try:
            st = f.stat()
            parts.append(
                f"{f.relative_to(path) if path.is_dir() else f.name}:{st.st_size}:{st.st_mtime_ns}:{st.st_ino}"
            )
            parts.append(protect.digest(f, st.st_size))
        except OSError:
            parts.append(f"{f}:missing")
    return digests.sha256("\n".join(parts).encode()).hexdigest()


def before_commit(cfg: Config, result: dict) -> dict:
    """Just before a run is committed: an advance whose checkpoint is not the one evaluated becomes
    invalid/revert (a file swapped after the evaluation is never promoted). Returns the result."""
    fingerprint = ((result.get("evaluation") or {}).get("checkpoint")) if isinstance(result, dict) else None
    if result.get("verdict") != "advance" or not fingerprint:
        return result
    ckpt = run_checkpoint(cfg, result["run_id"])
    if ckpt is not None and checkpoint_fingerprint(ckpt) == fingerprint:
        return result
    note = "the checkpoint changed after it was evaluated; not promoted"
    return {
        **result,
        "status": "invalid",
        "verdict": "revert",
        "valid": False,
        "improved_over_best": False,
        "note": _join_note(result.get("note", ""), note),
    }


def run_checkpoint(cfg: Config, run_id: str) -> Path | None:
    """The checkpoint captured into runs/<id>/ckpt/ (None when absent)."""
    from ..core.runs import run_dir_of

    folder = run_dir_of(cfg.expr_dir, run_id) / CKPT
    names = sorted(n for n in os.listdir(folder) if not n.startswith(".")) if folder.is_dir() else []
    return folder / names[0] if len(names) == 1 else None


def _float(value) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def protect_command(cfg: Config, args) -> tuple[list[str], int]:
    """`ar.py protect [--accept]`: what is protected and whether it changed; --accept records it as it is now."""
    expr, root = cfg.expr_dir, cfg.project_root
    if args.accept:
        gates.require_person(expr, "ar.py protect --accept", "it makes the files as they are now the reference")
        try:
            old_rules = (protect.load(expr) or {}).get("rules")
        except UserError:
            old_rules = None
        rules = gates.rules_of(Session.load(expr))
        accepted = protect.accept(expr, root, cfg.protected_globs, rules)
        gates.record_change(expr, "protect --accept", None, accepted)
        if old_rules is not None and old_rules != rules:  # the session file was edited: accepted too, said so
            gates.record_change(expr, "protect --accept of the session rules", old_rules, rules)
            accepted = [*accepted, f"{SESSION_FILE} rules {rules}"]
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
    from ..core.fsutil import read_json
    from ..core.runs import run_dir_of

    out = {}
    for run_id in run_ids:
        path = run_dir_of(expr_dir, run_id) / RESULT
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
    if accepted:  # on record like any acceptance: `status` and `report` show who ran it, and how
        gates.record_change(cfg.expr_dir, "upgrade re-recorded protected files", None, accepted)
    return [f"protected files re-recorded after the upgrade: {', '.join(accepted)}"] if accepted else []


def _globs_now(cfg: Config) -> list[str]:
    """protected_globs as the upgrade rendered them into experiment.json (cfg was read before it)."""
    try:
        return list(Config.load(cfg.expr_dir).protected_globs or [])
    except UserError:
        return list(cfg.protected_globs or [])
