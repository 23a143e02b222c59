"""The noise rule's state, .ar-noise.json, and its settings.

State (rewritten atomically after each re-run is recorded):
  groups        {first run id: {run id: primary value}}: every train.py measured more than once
                (the first group is the baseline and its repeats)
  spread        noise.Spread of those groups, or null before two values exist
  measured      the best whose re-measuring is over (its baseline repeats, or REMEASURE_BEST fresh runs)
  repeats_done  the baseline repeats are over (true also when they stopped early)

A re-run's ledger note starts with `repeat of rNNNN` or `confirms rNNNN` (verdict.RERUN_PREFIXES),
so termination's plateau does not count it; started.json names what it belongs to.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..core.config import Session
from ..core.fsutil import atomic_write_json, read_json
from ..core.layout import LEDGER, NOISE_FILE, RESULT, STARTED
from ..core.runs import run_dir_of
from ..rules import noise, verdict
from . import ledger

REPEATS_ENV = "AR_REPEATS"  # the default of `session --repeats` when set (the test suite sets 1: one place)


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


# ----------------------------------------------------------------------------- re-runs


def group_of(state: dict, run_id: str) -> str | None:
    """The first run of the group holding run_id (a confirmed best's group is its candidate's first run)."""
    return next((key for key, group in state["groups"].items() if run_id in group), None)


def wanted(state: dict, session: Session, best: dict) -> int:
    """How many runs the best should have: the baseline `repeats`; a later best REMEASURE_BEST more than it has."""
    if not state["groups"]:
        return repeats(session)
    found = spread(state)
    if session.strict or found is None or found.deterministic:
        return 0  # no noise to average out
    have = len(best_values(state, best))
    return have + noise.REMEASURE_BEST if state.get("measured") != best["run_id"] else have


def mark_measured(expr: Path, run_id: str) -> None:
    state = load(expr)
    state["measured"], state["repeats_done"] = run_id, True
    atomic_write_json(Path(expr) / NOISE_FILE, state)


def crashed_repeats(expr: Path, first: str) -> int:
    """Repeats of `first` that crashed or were killed since the last advance (their seeds are not reused)."""
    prefix = verdict.RERUN_PREFIXES[0] + first[1:]
    recent, _ = ledger.since_last_advance(expr / LEDGER)
    return sum(
        1
        for row in recent
        if row.get("valid") != "true"
        and (prefix in (row.get("note") or "") or (row.get("note") or "").startswith(prefix))
    )


# ----------------------------------------------------------------------------- confirmation


def link(expr: Path, first_id: str, confirm_id: str) -> None:
    """first's result.json names its confirmation (the ledger row stays as it was written)."""
    path = run_dir_of(expr, first_id) / RESULT
    result = read_json(path, "run result", "delete it", default=None)
    if result and result.get("confirmed_by") != confirm_id:
        ledger.write_result(path.parent, {**result, "confirmed_by": confirm_id})


def rerun_of(started: dict) -> str | None:
    """The run a re-run belongs to, from its started.json (older runs: its note `repeat of r0001 ...`)."""
    if started.get("belongs_to"):
        return started["belongs_to"]
    note = str(started.get("note", ""))
    for prefix in verdict.RERUN_PREFIXES:
        if note.startswith(prefix):
            digits = note[len(prefix) :].split(" ", 1)[0]
            return "r" + digits if digits.isdigit() else None
    return None


def repair_link(expr: Path, newest: int | None) -> None:
    """A SIGKILL after a confirmation was recorded, before the candidate named it: name it now.

    `newest`: the number of the last run folder (None: no runs)."""
    if newest is None:
        return
    run_dir = run_dir_of(expr, newest)
    result = read_json(run_dir / RESULT, "run result", "delete it", default=None)
    started = read_json(run_dir / STARTED, "run start record", "delete it", default={}) or {}
    confirm = started.get("kind") == "confirm" or str(started.get("note", "")).startswith(verdict.RERUN_PREFIXES[1])
    if result and result.get("confirms") and confirm:
        link(expr, result["confirms"], result["run_id"])  # also a confirmation the repair recorded as a crash
