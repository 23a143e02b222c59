"""What one run of a plan became: RunStart (its folder exists) and RunResult (judged, recorded).

A RunResult keeps what the runner knows as fields: the kind of run, what it belongs to, the
queued candidate, the notes as a list. The ledger note is rendered from them (`note`), never
parsed back. `record` holds the other result.json fields (record.RESULT_FIELDS).

Both are plain classes, as are the runner's other mutable records on the run path: a dataclass
costs about a millisecond to create, and `ar.py run` would pay it for each one at start-up.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..rules.verdict import RERUN_PREFIXES

if TYPE_CHECKING:  # decide() is loaded while the first run trains (loop/engine.py)
    from ..rules.decide import Evidence

KINDS = ("candidate", "repeat", "confirm", "remeasure")
RERUNS = ("repeat", "confirm", "remeasure")  # the same train.py once more, another seed
MARKER_KEY = "AR_RUN_TOKEN"  # environment marker of every process of a run (the sweep finds them by it)


class RunStart:
    """A run folder that exists, with its train.py snapshot and started.json."""

    def __init__(self, run_id: str, run_dir: Path, token: str, started: float, started_at: str, note: str):
        self.run_id = run_id
        self.run_dir = run_dir
        self.token = token  # value of MARKER_KEY in the training's environment
        self.started = started  # time.time() at allocation
        self.started_at = started_at  # the same, ISO 8601 with the local offset
        self.note = note  # the first part of the ledger note: RUN_NOTE, or what a re-run re-runs

    @property
    def marker(self) -> tuple[str, str]:
        return (MARKER_KEY, self.token)


def rerun_label(kind: str, belongs_to: str, seed: str) -> str:
    """`repeat of r0001 (seed 2)`, `confirms r0004 (seed 1)`: the note a re-run starts with (verdict.RERUN_PREFIXES)."""
    prefix = RERUN_PREFIXES[1] if kind == "confirm" else RERUN_PREFIXES[0]
    return f"{prefix}{belongs_to[1:]} (seed {seed})"


class RunResult:
    """One run of the plan, judged: what the runner knows of it, as fields."""

    def __init__(
        self,
        kind: str,
        run: RunStart,
        source: bytes,
        record: dict,
        notes: list[str] | None = None,
        belongs_to: str | None = None,
        candidate: str | None = None,
        wave: str | None = None,
        evidence: Evidence | None = None,
        requeue: bool = False,
        remark: str = "",
    ):
        self.kind = kind  # one of KINDS
        self.run = run
        self.source = source  # the train.py it ran
        self.record = record  # result.json's fields; `note` is rendered from `notes`
        self.notes = [] if notes is None else notes
        self.belongs_to = belongs_to  # re-runs: the first run of the train.py they measure again
        self.candidate = candidate  # the queued candidate (cNNNN) it ran, in a wave
        self.wave = wave
        self.evidence = evidence  # what decide() reads (None: refused before training)
        self.action: str | None = None  # the noise rule's answer for a candidate: advance / revert / confirm
        self.values: list[float] = []  # the valid values behind its verdict (a confirmed pair: 2)
        self.requeue = requeue  # lost to the cluster: the candidate goes back to the queue
        self.remark = remark  # said after the decision: a baseline run, or the best re-run unchanged

    @property
    def run_id(self) -> str:
        return self.run.run_id

    @property
    def note(self) -> str:
        return " | ".join(n for n in self.notes if n)

    def result(self) -> dict:
        """result.json as it is recorded."""
        confirms = self.belongs_to if self.kind in RERUNS else None
        return {**self.record, "note": self.note, "wave": self.wave, "confirms": confirms}
