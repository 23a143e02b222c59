"""What one run of a plan became: RunStart (its folder exists) and RunResult (judged, recorded).

A RunResult keeps what the runner knows as fields: the kind of run, what it belongs to, the
queued candidate, the notes as a list. The ledger note is rendered from them (`note`), never
parsed back. `record` holds the other result.json fields (record.RESULT_FIELDS).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..rules.decide import Evidence
from ..rules.verdict import RERUN_PREFIXES

KINDS = ("candidate", "repeat", "confirm", "remeasure")
RERUNS = ("repeat", "confirm", "remeasure")  # the same train.py once more, another seed
MARKER_KEY = "AR_RUN_TOKEN"  # environment marker of every process of a run (the sweep finds them by it)


@dataclass
class RunStart:
    """A run folder that exists, with its train.py snapshot and started.json."""

    run_id: str
    run_dir: Path
    token: str  # value of MARKER_KEY in the training's environment
    started: float  # time.time() at allocation
    started_at: str  # the same, ISO 8601 with the local offset
    note: str  # the first part of the ledger note: RUN_NOTE, or what a re-run re-runs

    @property
    def marker(self) -> tuple[str, str]:
        return (MARKER_KEY, self.token)


def rerun_label(kind: str, belongs_to: str, seed: str) -> str:
    """`repeat of r0001 (seed 2)`, `confirms r0004 (seed 1)`: the note a re-run starts with (verdict.RERUN_PREFIXES)."""
    prefix = RERUN_PREFIXES[1] if kind == "confirm" else RERUN_PREFIXES[0]
    return f"{prefix}{belongs_to[1:]} (seed {seed})"


@dataclass
class RunResult:
    kind: str  # one of KINDS
    run: RunStart
    source: bytes  # the train.py it ran
    record: dict  # result.json's fields; `note` is rendered from `notes`
    notes: list[str] = field(default_factory=list)
    belongs_to: str | None = None  # re-runs: the first run of the train.py they measure again
    candidate: str | None = None  # the queued candidate (cNNNN) it ran, in a wave
    wave: str | None = None
    action: str | None = None  # the noise rule's answer for a candidate: advance / revert / confirm
    values: list[float] = field(default_factory=list)  # the valid values behind its verdict (a confirmed pair: 2)
    requeue: bool = False  # lost to the cluster: the candidate goes back to the queue
    evidence: Evidence | None = None  # what decide() reads (None: refused before training)
    remark: str = ""  # said after the decision: a baseline run, or the best re-run unchanged

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
