"""The decision on the runs of one plan: pure, no files.

decide() folds, in this order:
  1. the single-run outcomes table (verdict.decide): status, constraints, valid, improved;
  2. re-runs that measure a train.py again (repeat, remeasure) never replace the best;
  3. the noise rule (noise.judge) for a valid candidate (one run) or a confirmation (the pair),
     then the seed-only rule (seeds.not_an_improvement) for a candidate the rule would advance or
     confirm (it only ever forces a revert, and parsing train.py twice is not free);
  4. one winner per wave: of the candidates that beat the best, the best value (the earliest on a
     tie) advances; of the confirmed, the best mean; the others are reverted with a note.
"""

from __future__ import annotations

from typing import NamedTuple

from . import noise, seeds, verdict


class Rules(NamedTuple):
    """What a decision depends on besides the runs."""

    direction: str
    constraints: tuple = ()
    best_run: str | None = None
    best_value: float | None = None  # the best's recorded value (the mean of its runs)
    best_values: tuple = ()  # the best's runs
    best_source: str | None = None  # the best's train.py (the seed-only rule)
    spread: noise.Spread | None = None
    k: float = noise.DEFAULT_K
    strict: bool = False
    wave: str | None = None


class Evidence(NamedTuple):
    """One run as measured: what decide() reads."""

    run_id: str
    kind: str
    status: str  # from the launch: ok / crash / timeout / interrupted / unclean
    value: float | None
    metrics: dict
    missing: str = ""  # why the run is invalid though it finished (no checkpoint, integrity), else ""
    source: str = ""  # its train.py (the seed-only rule)
    earlier: tuple = ()  # a confirmation: the candidate's own value


class Decided:
    """One run's decision, filled in rule by rule (a plain class: no dataclass cost at start-up)."""

    def __init__(self, d: verdict.Decision):
        self.status, self.verdict, self.valid, self.improved = d.status, d.verdict, d.valid, d.improved
        self.constraints: list = d.constraints
        self.action: str | None = None  # a candidate's noise rule answer: advance / revert / confirm
        self.margin: float | None = None
        self.values: list = []  # the valid values behind the verdict
        self.notes: list = [d.reason]


def decide(runs: list[Evidence], rules: Rules) -> list[Decided]:
    """One Decided per run, in the same order."""
    decided = [_one(m, rules) for m in runs]
    if rules.wave:
        _one_winner(runs, decided, rules, "candidate")
    _one_winner(runs, decided, rules, "confirm")
    return decided


def _one(m: Evidence, rules: Rules) -> Decided:
    d = verdict.decide(m.status, m.value, rules.direction, rules.best_value, rules.constraints, m.metrics, m.missing)
    out = Decided(d)
    if not d.valid:
        return out
    out.values = [*m.earlier, m.value] if m.kind == "confirm" else [m.value]
    if m.kind in ("repeat", "remeasure"):  # measures the best again: never replaces it
        out.verdict, out.improved = "revert", False
        return out
    if not rules.best_values:
        out.action = noise.ADVANCE if out.verdict == "advance" else noise.REVERT
        return out
    j = noise.judge(out.values, list(rules.best_values), rules.direction, rules.spread, rules.k, strict=rules.strict)
    if j.action != noise.REVERT and m.kind == "candidate" and not rules.strict and rules.best_source is not None:
        # the seed-only rule can only turn an advance or a confirmation into a revert: asked only then
        reason = seeds.not_an_improvement(m.source, rules.best_source)
        if reason:
            j = noise.judge(
                out.values, list(rules.best_values), rules.direction, rules.spread, rules.k, not_improvement=reason
            )
    out.action = j.action
    out.verdict = "advance" if j.action == noise.ADVANCE else "revert"
    out.improved = j.action == noise.ADVANCE
    out.margin = None if j.margin is None else round(j.margin, 4)
    out.notes.append(j.note)
    return out


def _one_winner(runs: list[Evidence], decided: list[Decided], rules: Rules, kind: str) -> None:
    """At most one advance among the runs of `kind`: the best value (a confirmation: the best mean)."""
    mine = [(m, d) for m, d in zip(runs, decided) if m.kind == kind]
    winner, best = None, None
    for m, d in mine:
        if d.verdict == "advance" and (best is None or verdict.better(noise.mean(d.values), best, rules.direction)):
            winner, best = m.run_id, noise.mean(d.values)
    for m, d in mine:
        if m.run_id == winner:
            continue
        if d.verdict == "advance":
            d.verdict, d.improved = "revert", False
            said = "confirmed, but" if kind == "confirm" else "beat the best but"
            d.notes.append(f"{said} {winner} won wave {rules.wave}")
        elif kind == "candidate" and d.status == "ok":
            d.notes.append(f"wave {rules.wave} winner: {winner or 'none'}")
