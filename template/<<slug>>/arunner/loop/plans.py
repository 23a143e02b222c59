"""Plans: what an iteration runs, as a list of runs each with a kind and what it belongs to.

  edit          train.py as it is now: one candidate
  queue         the queued candidates (`ar.py propose`): a wave, one candidate each
  reruns        the same train.py again with other seeds: the first baseline's repeats,
                a new best's remeasures, or the confirmation of a candidate
The engine (engine.py) executes any plan the same way; a single run is a plan of one.
"""

from __future__ import annotations

import ast
from typing import NamedTuple

from ..core import pysource
from ..core.config import Config
from ..rules import seeds
from ..state import candidates
from ..state.results import RunResult, rerun_label
from ..state.snapshots import read_run_note

SEED_KEY_ENV = "AR_SEED_KEY"  # the host's seed option, set by train.py like any override (re-runs only)


class PlannedRun(NamedTuple):
    kind: str  # results.KINDS
    source: bytes | None  # the train.py to run (None for a queued candidate: read once it is taken)
    label: str  # the first part of its note
    belongs_to: str | None = None  # re-runs: the run whose train.py they measure again
    candidate: candidates.Candidate | None = None
    env: dict[str, str] = {}  # the seed of a re-run (read, never changed in place)
    wave: str | None = None
    earlier: tuple = ()  # a confirmation: the candidate's own value
    remark: str = ""  # said after the decision (messages.snapshot_remark)


def edit(source: bytes, remark: str = "") -> list[PlannedRun]:
    label = read_run_note(source.decode("utf-8", errors="replace"))
    return [PlannedRun("candidate", source, label, remark=remark)]


def queue(queued: list[candidates.Candidate], wave_id: str) -> list[PlannedRun]:
    return [
        PlannedRun("candidate", None, f"{c.id}: {c.note}" if c.note else c.id, candidate=c, wave=wave_id)
        for c in queued
    ]


def reruns(cfg: Config, kind: str, belongs_to: str, source: bytes, attempts, wave: str | None = None) -> list:
    """`source` again, the attempt-th seed each (attempt 0 is the run as written)."""
    planned = []
    for attempt in attempts:
        env = seed_env(cfg, source, attempt)
        label = rerun_label(kind, belongs_to, env[seeds.SEED_ENV])
        planned.append(PlannedRun(kind, source, label, belongs_to, env=env, wave=wave))
    return planned


def confirmations(cfg: Config, pending: list[RunResult]) -> list[PlannedRun]:
    """Each candidate that needs confirmation once more, with its first other seed."""
    planned = []
    for r in pending:
        (again,) = reruns(cfg, "confirm", r.run_id, r.source, [1], r.wave)
        planned.append(again._replace(earlier=tuple(r.values)))
    return planned


# ----------------------------------------------------------------------------- seeds


def overrides_of(source: bytes):
    """CLI_OVERRIDES of a train.py (its last top-level literal assignment), or {}."""
    try:
        tree = pysource.parse(source)  # shared: read, never changed
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
