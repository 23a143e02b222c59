"""The two records a run leaves: its result (result.json, the ledger row, decision.json) and,
when it advances, the best record (best_ckpt/meta.json). Built here and nowhere else."""

from __future__ import annotations

from ..rules.verdict import is_finite

# result.json holds exactly these keys, in this order.
RESULT_FIELDS = (
    "run_id",
    "started_at",
    "wall_seconds",
    "budget_seconds",
    "status",
    "verdict",
    "metrics",
    "primary",
    "constraints",
    "valid",
    "improved_over_best",
    "previous_best_run_id",
    "log_path",
    "note",
    "checkpoint",
    "should_terminate",
    "terminated_by",
    "exit_code",
    "reported",  # integrity: the primary training printed, when an evaluator decided
    "evaluation",  # integrity: the evaluator's {wall_s, evaluate_s, log}, not charged to the budget
    "holdout",  # integrity: metrics kept from the agent (never printed by `run`)
    "wave",  # the wave id (w + its first run's number) when the run was one candidate of a wave, else null
    "slurm",  # {"job_id", "state"} when the run was a Slurm job, else null
    "margin",  # improvement over the best in units of the noise spread, null without a spread
    "confirms",  # the run this one re-runs (a baseline repeat or a confirmation), else null
    "confirmed_by",  # the confirmation run of this candidate, else null
)


def primary_field(name: str, direction: str, value) -> dict:
    """The primary metric as recorded: a non-finite value is kept as its text (JSON has no nan)."""
    if value is not None and not is_finite(value):
        value = str(value)
    return {"name": name, "direction": direction, "value": value}


def result_record(
    run_id: str,
    *,
    started_at: str,
    status: str,
    verdict: str,
    primary: dict,
    log_path: str,
    note: str,
    wall_seconds: float = 0.0,
    budget_seconds: int | None = None,
    metrics: dict | None = None,
    constraints: list | None = None,
    valid: bool = False,
    improved_over_best: bool = False,
    previous_best_run_id: str | None = None,
    checkpoint: dict | None = None,
    exit_code: int | None = None,
    terminated_by: str | None = None,
    reported: float | None = None,
    evaluation: dict | None = None,
    holdout: dict | None = None,
    wave: str | None = None,
    slurm: dict | None = None,
    margin: float | None = None,
    confirms: str | None = None,
    confirmed_by: str | None = None,
) -> dict:
    """One run's result, every field of RESULT_FIELDS set."""
    record = {
        "run_id": run_id,
        "started_at": started_at,
        "wall_seconds": round(wall_seconds, 3),
        "budget_seconds": budget_seconds,
        "status": status,
        "verdict": verdict,
        "metrics": metrics or {},
        "primary": primary,
        "constraints": constraints or [],
        "valid": valid,
        "improved_over_best": improved_over_best,
        "previous_best_run_id": previous_best_run_id,
        "log_path": log_path,
        "note": note,
        "checkpoint": checkpoint,
        "should_terminate": terminated_by is not None,
        "terminated_by": terminated_by,
        "exit_code": exit_code,
        "reported": reported,
        "evaluation": evaluation,
        "holdout": holdout,
        "wave": wave,
        "slurm": slurm,
        "margin": margin,
        "confirms": confirms,
        "confirmed_by": confirmed_by,
    }
    assert tuple(record) == RESULT_FIELDS
    return record


def snapshot_path(run_id: str) -> str:
    """Where a run's train.py is kept, relative to the experiment folder."""
    return f"runs/{run_id}/train.py"


def best_record(run_id: str, primary: dict, lineage: dict, snapshot: str | None = None, n: int = 1) -> dict:
    """What best_ckpt/meta.json says about the best run (promote() adds the checkpoint fields).

    `n`: runs behind primary.value (their mean) when the best was measured more than once.
    """
    return {
        "run_id": run_id,
        "primary": primary,
        "snapshot": snapshot or snapshot_path(run_id),
        "lineage": lineage,
        "n": n,
    }
