"""The runs the noise rule asks for: repeats of the first baseline, and the confirmation of a
candidate in the confirm zone; plus their state, .ar-noise.json.

State (.ar-noise.json, rewritten atomically after each re-run is recorded):
  groups        {first run id: {run id: primary value}}: every train.py measured more than once
                (the first group is the baseline and its repeats)
  spread        noise.Spread of those groups, or null before two values exist
  measured      the best whose re-measuring is over (its baseline repeats, or REMEASURE_BEST fresh runs)
  repeats_done  the baseline repeats are over (true also when they stopped early)

A re-run's ledger note starts with `repeat of rNNNN` or `confirms rNNNN` (verdict.RERUN_PREFIXES),
so termination's plateau does not count it and repair can link it after a SIGKILL.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

from . import best as best_state
from . import integrity, ledger, noise, seeds, verdict
from .config import Config, Session
from .fsutil import atomic_write_json, fault_point, read_json
from .runs import run_dir_of

NOISE_FILE = ".ar-noise.json"
REPEATS_ENV = "AR_REPEATS"  # the default of `session --repeats` when set (the test suite sets 1: one place)
SEED_KEY_ENV = "AR_SEED_KEY"  # the host's seed option, set by train.py like any override (re-runs only)
FAULT_POINTS = ("rerun.started", "confirm.recorded")


# ----------------------------------------------------------------------------- settings


def repeats(session: Session) -> int:
    """Runs of the first baseline: `session --repeats`, else AR_REPEATS, else noise.DEFAULT_REPEATS; 1 when strict."""
    if session.strict:
        return 1
    if session.repeats is not None:
        return session.repeats
    try:
        return max(1, int(os.environ.get(REPEATS_ENV, "")))
    except ValueError:
        return noise.DEFAULT_REPEATS


def margin_k(session: Session) -> float:
    return session.margin if session.margin is not None else noise.DEFAULT_K


# ----------------------------------------------------------------------------- state


def load(expr: Path) -> dict:
    data = read_json(Path(expr) / NOISE_FILE, "noise record", "delete it (the spread is measured again)", default={})
    data = data if isinstance(data, dict) else {}
    data.setdefault("groups", {})
    data.setdefault("spread", None)
    data.setdefault("repeats_done", False)
    data.setdefault("measured", None)
    return data


def spread(state: dict) -> noise.Spread | None:
    return noise.Spread.from_json(state.get("spread"))


def add_value(expr: Path, first_id: str, run_id: str, value: float) -> dict:
    """Record one value of a train.py measured more than once (idempotent) and re-estimate the spread."""
    state = load(expr)
    state["groups"].setdefault(first_id, {})[run_id] = float(value)
    found = noise.estimate([list(g.values()) for g in state["groups"].values()])
    state["spread"] = found.to_json() if found else None
    atomic_write_json(Path(expr) / NOISE_FILE, state)
    return state


def best_values(state: dict, best: dict | None) -> list[float]:
    """The best's runs: its group when it was measured more than once, else its one value."""
    if not best:
        return []
    for group in state["groups"].values():
        if best["run_id"] in group:
            return list(group.values())
    value = (best.get("primary") or {}).get("value")
    return [float(value)] if verdict.is_finite(value) else []


def status_line(expr: Path, session: Session) -> str:
    """What `status` says about the rule in force."""
    if session.strict:
        return "noise: strict rule (session --strict): better once is better"
    found = spread(load(expr))
    if found is None:
        return f"noise: not measured yet (the first baseline runs {repeats(session)} times); strict rule until then"
    return f"{found.describe()}; margin k={margin_k(session):g}"


# ----------------------------------------------------------------------------- seeds


def overrides_of(source: bytes):
    """CLI_OVERRIDES of a train.py (its last top-level literal assignment), or {}."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return {}
    found = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "CLI_OVERRIDES" for t in node.targets
        ):
            try:
                found = ast.literal_eval(node.value)
            except ValueError:
                pass
    return found


def seed_env(cfg: Config, source: bytes, attempt: int) -> dict[str, str]:
    """AR_SEED always; AR_SEED_KEY when the host has a seed option (train.py sets it like any override)."""
    overrides = overrides_of(source)
    host = [cfg.seed_key] if cfg.seed_key else []
    key = seeds.seed_key(overrides, host)
    env, _ = seeds.seed_run(overrides, attempt, host)
    if key and attempt:
        env[SEED_KEY_ENV] = key
    return env


# ----------------------------------------------------------------------------- re-runs


def local_launcher(cfg: Config, session: Session, seconds, live):
    """launch(items) for re-runs on this machine, one after another: items are (run, seed env) pairs."""
    from .steps import launch_run, run_budget

    def launch(items):
        budget = run_budget(cfg, session, seconds)
        return [
            launch_run(cfg, session, run, budget, live, train_py=run.run_dir / "train.py", extra_env=env)
            for run, env in items
        ]

    return launch


def allocate_rerun(cfg: Config, *, of_id: str, source: bytes, attempt: int, kind: str):
    """runs/rNNNN/ for `source` run again with the attempt-th seed: (run, seed env)."""
    from .steps import allocate

    env = seed_env(cfg, source, attempt)
    prefix = verdict.RERUN_PREFIXES[0 if kind == "repeat" else 1]
    run = allocate(cfg, source, f"{prefix}{of_id[1:]} (seed {env[seeds.SEED_ENV]})")
    fault_point("rerun.started")
    return run, env


def _judged(cfg: Config, session: Session, run, launched, best) -> dict:
    from .steps import judge, measure

    measured = measure(cfg, run, launched)
    checked = integrity.after_training(cfg, session, run, measured)
    return {**judge(cfg, session, run, launched, measured, best), **checked}


def _group_of(state: dict, run_id: str) -> str | None:
    """The first run of the group holding run_id (a confirmed best's group is its candidate's first run)."""
    return next((key for key, group in state["groups"].items() if run_id in group), None)


def _wanted(state: dict, session: Session, best: dict) -> int:
    """How many runs the best should have: the baseline `repeats`; a later best REMEASURE_BEST more than it has."""
    if not state["groups"]:
        return repeats(session)
    found = spread(state)
    if session.strict or found is None or found.deterministic:
        return 0  # no noise to average out
    have = len(best_values(state, best))
    return have + noise.REMEASURE_BEST if state.get("measured") != best["run_id"] else have


def finish_repeats(
    cfg: Config, session: Session, seconds, live, launch=None, parallel: bool = False
) -> list[tuple[dict, str]]:
    """Measure the best again until it has the runs it should (see _wanted); returns (result, kind) of each:
    kind `repeat` for the first baseline's runs, `remeasure` for a later best's.

    The first baseline gets `repeats` runs: the spread. Each later best gets
    REMEASURE_BEST fresh runs, so its value is the mean of several and not the lucky
    run that won. One after another (`launch` None: this machine) a baseline repeat
    equal to the first run stops them (a deterministic host pays one extra run);
    `parallel` (device slots) launches every missing run at once.
    """
    from .steps import commit

    expr = cfg.expr_dir
    state, best = load(expr), best_state.read_best(expr)
    if not best or state.get("measured") == best["run_id"]:
        return []
    first = _group_of(state, best["run_id"]) or best["run_id"]
    baseline = not state["groups"]
    kind = "repeat" if baseline else "remeasure"
    wanted = _wanted(state, session, best)
    group = dict(state["groups"].get(first) or {best["run_id"]: float(best["primary"]["value"])})
    if wanted <= len(group):
        _mark_measured(expr, best["run_id"])
        return []
    launch = launch or local_launcher(cfg, session, seconds, live)
    source = (expr / best["snapshot"]).read_bytes()
    results, tried = [], len(group) + _crashed_repeats(expr, first)
    while len(group) < wanted and tried < wanted + 1:  # a crashing repeat is tried once more, then given up
        count = min(wanted - len(group), wanted + 1 - tried) if parallel else 1
        items = [
            allocate_rerun(cfg, of_id=first, source=source, attempt=tried + i, kind="repeat") for i in range(count)
        ]
        tried += count
        for (run, _), launched in zip(items, launch(items)):
            result = {**_judged(cfg, session, run, launched, best), "confirms": first}
            if result["verdict"] == "advance":  # a repeat measures the best again; it never replaces it
                result["verdict"], result["improved_over_best"] = "revert", False
            commit(cfg, session, run, result, best)
            results.append((result, kind))
            if result["valid"]:
                group[run.run_id] = float(result["primary"]["value"])
                for run_id, value in group.items():
                    add_value(expr, first, run_id, value)  # idempotent: the first values go in with the first repeat
                best_state.remeasure(expr, list(group.values()))
        values = list(group.values())
        if baseline and len(values) == 2 and values[0] == values[1]:  # a deterministic host: one extra run only
            break
    _mark_measured(expr, best["run_id"])
    return results


def _mark_measured(expr: Path, run_id: str) -> None:
    state = load(expr)
    state["measured"], state["repeats_done"] = run_id, True
    atomic_write_json(Path(expr) / NOISE_FILE, state)


def _crashed_repeats(expr: Path, first: str) -> int:
    """Repeats of `first` that crashed or were killed since the last advance (their seeds are not reused)."""
    prefix = verdict.RERUN_PREFIXES[0] + first[1:]
    recent, _ = ledger.since_last_advance(expr / "results.tsv")
    return sum(
        1
        for row in recent
        if row.get("valid") != "true"
        and (prefix in (row.get("note") or "") or (row.get("note") or "").startswith(prefix))
    )


# ----------------------------------------------------------------------------- confirmation


def apply_rule(
    cfg: Config, session: Session, result: dict, values: list[float], best: dict | None, source: bytes
) -> str:
    """The noise rule on a judged candidate (its 1 or 2 valid runs): changes `result`; returns the action."""
    state = load(cfg.expr_dir)
    if not result["valid"] or not best:
        return noise.REVERT if best else noise.ADVANCE
    reason = None
    if len(values) == 1:
        try:
            best_source = (cfg.expr_dir / best["snapshot"]).read_text(errors="replace")
            reason = seeds.not_an_improvement(source.decode("utf-8", errors="replace"), best_source)
        except OSError:
            reason = None
    found = spread(state)
    j = noise.judge(
        values,
        best_values(state, best),
        cfg.primary_direction,
        found,
        margin_k(session),
        strict=session.strict,
        not_improvement=None if session.strict else reason,
    )
    advanced = j.action == noise.ADVANCE
    result["verdict"] = "advance" if advanced else "revert"
    result["improved_over_best"] = advanced
    result["margin"] = None if j.margin is None else round(j.margin, 4)
    if j.note:
        result["note"] = " | ".join(n for n in (result["note"], j.note) if n)
    return j.action


def link(expr: Path, first_id: str, confirm_id: str) -> None:
    """first's result.json names its confirmation (the ledger row stays as it was written)."""
    path = run_dir_of(expr, first_id) / "result.json"
    result = read_json(path, "run result", "delete it", default=None)
    if result and result.get("confirmed_by") != confirm_id:
        ledger.write_result(path.parent, {**result, "confirmed_by": confirm_id})


def rerun_of(note: str) -> str | None:
    """The run a re-run's ledger note names (`repeat of r0001 ...`, `confirms r0005 ...`), else None."""
    for prefix in verdict.RERUN_PREFIXES:
        if note.startswith(prefix):
            digits = note[len(prefix) :].split(" ", 1)[0]
            return "r" + digits if digits.isdigit() else None
    return None


def repair_link(expr: Path) -> None:
    """A SIGKILL after a confirmation was recorded, before the candidate named it: name it now."""
    from .runs import run_numbers

    numbers = run_numbers(expr)
    if not numbers:
        return
    run_dir = run_dir_of(expr, max(numbers))
    result = read_json(run_dir / "result.json", "run result", "delete it", default=None)
    started = read_json(run_dir / "started.json", "run start record", "delete it", default={}) or {}
    if result and result.get("confirms") and str(started.get("note", "")).startswith(verdict.RERUN_PREFIXES[1]):
        link(expr, result["confirms"], result["run_id"])  # also a confirmation the repair recorded as a crash


def confirm(cfg: Config, session: Session, seconds, live, first: dict, source: bytes, best: dict | None) -> dict:
    """Re-run a candidate that needs confirmation with another seed; the pair decides. Returns its result."""
    return confirm_many(cfg, session, [(first, source)], best, local_launcher(cfg, session, seconds, live))[0]


def confirm_many(cfg: Config, session: Session, pending, best: dict | None, launch, wave_id=None) -> list[dict]:
    """Confirm every (first result, source) at once (a wave's); at most one advances: the best mean."""
    from .steps import commit

    expr = cfg.expr_dir
    items = [
        allocate_rerun(cfg, of_id=first["run_id"], source=source, attempt=1, kind="confirm")
        for first, source in pending
    ]
    decided = []
    for (first, source), (run, _), launched in zip(pending, items, launch(items)):
        result = {**_judged(cfg, session, run, launched, best), "confirms": first["run_id"], "wave": wave_id}
        values = [float(first["primary"]["value"])]
        if result["valid"]:
            values.append(float(result["primary"]["value"]))
            add_value(expr, first["run_id"], first["run_id"], values[0])
            add_value(expr, first["run_id"], run.run_id, values[1])
            apply_rule(cfg, session, result, values, best, source)
        elif result["verdict"] == "advance":
            result["verdict"] = "revert"
        decided.append((run, result, values))
    winners = [(noise.mean(v), res["run_id"]) for _, res, v in decided if res["verdict"] == "advance"]
    if len(winners) > 1:  # one advance per wave: the best mean of the confirmed
        pick = (min if cfg.primary_direction == "min" else max)(winners)[1]
        for _, res, _ in decided:
            if res["verdict"] == "advance" and res["run_id"] != pick:
                res["verdict"], res["improved_over_best"] = "revert", False
                res["note"] = f"{res['note']} | confirmed, but {pick} won wave {wave_id}"
    current = best
    for run, result, values in decided:
        commit(cfg, session, run, result, current, values if result["verdict"] == "advance" else None)
        if result["verdict"] == "advance":
            current = best_state.read_best(expr)
        fault_point("confirm.recorded")
        link(expr, result["confirms"], run.run_id)
    return [res for _, res, _ in decided]
