"""Verdicts: the status x verdict table, constraint checks, and termination.

This module is the one place that defines which (status, verdict) pairs exist;
the runner, `status`, `report` and the tests all read OUTCOMES.
"""

from __future__ import annotations

import math
from typing import NamedTuple

# status -> the verdicts it may carry. `ok` is the one status with two (advance or revert).
OUTCOMES: dict[str, tuple[str, ...]] = {
    "ok": ("advance", "revert"),
    "invalid": ("revert",),
    "crash": ("crash",),
    "timeout": ("timeout",),
    "interrupted": ("interrupted",),
    "unclean": ("crash",),
}
VERDICTS = ("advance", "revert", "crash", "timeout", "interrupted")


def is_finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def better(value: float, best: float | None, direction: str) -> bool:
    """Strictly better; any finite value beats no best."""
    if best is None:
        return True
    return value < best if direction == "min" else value > best


class Decision(NamedTuple):
    status: str
    verdict: str
    valid: bool
    improved: bool
    constraints: list[dict]
    reason: str = ""


def decide(
    status: str,
    primary: float | None,
    direction: str,
    best_value: float | None,
    constraints,
    metrics: dict,
    checkpoint_missing_reason: str = "",
) -> Decision:
    """The verdict for one finished run. `status` is ok/crash/timeout/interrupted/unclean from the launch."""
    checked = []
    for c in constraints:
        value = metrics.get(c.name)
        checked.append(
            {
                "name": c.name,
                "op": c.op,
                "threshold": c.threshold,
                "value": value,
                "passed": value is not None and c.holds(value),
            }
        )
    if status != "ok":
        return Decision(status, OUTCOMES[status][0], False, False, checked)
    reasons = []
    if primary is None:
        reasons.append("primary metric not found")
    elif not is_finite(primary):
        reasons.append(f"primary metric is {primary}")
    failed = [f"{c['name']} {c['op']} {c['threshold']:g} violated ({c['value']})" for c in checked if not c["passed"]]
    reasons.extend(failed)
    if checkpoint_missing_reason:
        reasons.append(checkpoint_missing_reason)
    if reasons:
        return Decision("invalid", "revert", False, False, checked, "; ".join(reasons))
    improved = better(primary, best_value, direction)
    return Decision("ok", "advance" if improved else "revert", True, improved, checked)


RERUN_PREFIXES = ("repeat of r", "confirms r")  # ledger notes of re-runs: a plateau does not count them


def row_kind(note: str) -> str:
    """What a ledger row measured, from its note: `repeat` (of a baseline or a best), `confirm` or `candidate`."""
    if note.startswith(RERUN_PREFIXES[0]):
        return "repeat"
    return "confirm" if note.startswith(RERUN_PREFIXES[1]) else "candidate"


def termination(session, plateau: int, total: int, this_primary: float | None, direction: str) -> str | None:
    """Which condition (if any) says the loop should stop.

    `plateau` = ok candidate runs since the last advance, this run included (re-runs of the
    noise rule are not candidates); `total` = every run, this one included.
    """
    if session.stopped:
        return "manual"
    if session.unlimited:
        return None
    if session.threshold is not None and is_finite(this_primary):
        reached = this_primary <= session.threshold if direction == "min" else this_primary >= session.threshold
        if reached:
            return "primary_threshold"
    if session.plateau and plateau >= session.plateau:
        return "plateau"
    if session.max_runs and total >= session.max_runs:
        return "max_runs"
    return None
