"""Noise-aware verdicts: the run-to-run spread, and when a better value is a real improvement.

Pure functions, stdlib only. The runner drives them; nothing here touches files.

The spread. The first baseline is run several times with different seeds; every
later candidate that is re-run (a confirmation) adds its pair of runs. Each group
of runs of one train.py says how much the metric moves with the seed alone:
  - `sigma`  the noise of one run used by the rule. With few degrees of freedom
             (df = sum of n_i - 1 < ROBUST_MIN_DF) it is the pooled standard
             deviation: from 3 Gaussian runs the scaled MAD is the smaller of two
             gaps, under half the true noise in 47% of cases (the standard
             deviation: 22%), and luck passes a margin measured with it. From
             ROBUST_MIN_DF on it is the scaled MAD of the pooled residuals, so one
             wild run no longer inflates it.
  - `mad`    1.4826 x the median absolute deviation of the first group (shown to people),
  - `lo`, `hi`, `n` the range and count of the first group.
A sigma of exactly 0 (a deterministic host: every repeat printed the same value)
means the strict rule: better once is better.

The rule (d = improvement of the candidate's mean over the best's mean, in the
metric's direction; n_c, n_b = runs of each; SE = sigma x sqrt(1/n_c + 1/n_b), the
standard error of d; z = d / SE; k = the margin, default 2):
  - one run, z > k_df                 -> advance at once
  - one run, CONFIRM_FLOOR < z <= k_df -> confirm: re-run once with another seed
                                         (recorded `ok/revert`, note `needs confirmation`)
  - one run, smaller z (or worse)     -> revert
  - two runs (mean of both), z > k    -> advance, else revert.
k_df is k widened to the t quantile for the spread's degrees of freedom (4.53 at
df 2, 2.87 at df 4, 2.28 at df 10, -> k): a spread from few runs is often too
small, and judged against it a single lucky run would pass. The confirmation
decides at plain k: by then the difference is measured twice, and its own pair
has refined the spread. The best's value is the mean of its runs.

Measured (bench/bench_noise.py, tests/test_noise.py; Gaussian noise, 5 repeats):
candidates that change nothing advance 3% of the time (strict: 19%), a true
improvement of 3 sigma advances in 93% of trials (89.5% with 3 repeats, hence 5),
and a loop of 12 candidates spends 2.7 confirmation runs. The floor (half a
standard error) skips confirmations that would almost never reach k: in a
simulation it cut confirmations from 3.7 to 2.0 per loop at the same rates.

A best is the run that won, so its value is lucky (the winner's curse): later real
improvements must beat luck, and the loop stalls. REMEASURE_BEST fresh runs of
each new best (seeds as for repeats; they also refine the spread) bring its mean
back: in the bench's mixed loop the final best's bias goes from -1.15 to -0.46
sigma and the true gain from 5 to 9 sigma (strict: -1.32 sigma, 12 sigma with
4.8 false advances per loop), for 2 runs per advance.

Candidates whose only change is a seed never advance: see seeds.py.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

DEFAULT_K = 2.0  # margin in standard errors of the difference (`session --margin`)
DEFAULT_REPEATS = 5  # runs of the first baseline (`session --repeats`); 3 leaves too rough a spread
CONFIRM_FLOOR = 0.5  # below this many standard errors of improvement a confirmation is not worth a run
MAX_RUNS = 2  # runs of one candidate: the first plus one confirmation
REMEASURE_BEST = 2  # fresh runs of each new best, so its value is not the lucky run that won
MAD_SCALE = 1.4826  # makes the MAD estimate the standard deviation of Gaussian noise
ROBUST_MIN_DF = 8  # degrees of freedom from which sigma is the robust (MAD) estimate

ADVANCE, REVERT, CONFIRM = "advance", "revert", "confirm"
NEEDS_CONFIRMATION = "needs confirmation"


class Spread(NamedTuple):
    """The noise estimate, as stored (to_json) and shown by `status`."""

    sigma: float  # noise of one run, used by the rule
    mad: float  # 1.4826 x MAD of the first group (the baseline repeats)
    lo: float  # min and max of the first group
    hi: float
    n: int  # runs in the first group
    df: int  # degrees of freedom behind sigma (all groups)

    @property
    def deterministic(self) -> bool:
        return self.sigma == 0.0

    def to_json(self) -> dict:
        return self._asdict()

    @classmethod
    def from_json(cls, data: dict | None) -> Spread | None:
        if not data:
            return None
        return cls(**{k: data[k] for k in cls._fields})

    def describe(self) -> str:
        """One line for `status`."""
        if self.deterministic:
            return f"noise: none over {self.n} repeats (deterministic host): strict rule"
        return (
            f"noise: sigma={self.sigma:.4g} (MAD {self.mad:.4g}, range {self.lo:.6g}..{self.hi:.6g}, "
            f"{self.n} repeats, df {self.df})"
        )


def median(values) -> float:
    """The median (statistics.median without importing statistics, which costs a run ~10 ms)."""
    ordered = sorted(float(v) for v in values)
    if not ordered:
        raise ValueError("median of no values")
    half = len(ordered) // 2
    return ordered[half] if len(ordered) % 2 else (ordered[half - 1] + ordered[half]) / 2


def mad(values) -> float:
    """1.4826 x the median absolute deviation from the median (0.0 for fewer than 2 values)."""
    values = [float(v) for v in values]
    if len(values) < 2:
        return 0.0
    center = median(values)
    return MAD_SCALE * median(abs(v - center) for v in values)


def mean(values) -> float:
    values = [float(v) for v in values]
    if not values:
        raise ValueError("mean of no values")
    return math.fsum(values) / len(values)


def estimate(groups) -> Spread | None:
    """The spread from groups of runs of one train.py each (the first group: the baseline repeats).

    Groups of one run carry no information about noise and are skipped; None when
    no group has two runs.
    """
    groups = [[float(v) for v in g] for g in groups if len(g) >= 2]
    if not groups:
        return None
    residuals = []  # x - group median, scaled by sqrt(n/(n-1)): a residual keeps only (n-1)/n of the variance
    squares, df = 0.0, 0
    for g in groups:
        m, center = mean(g), median(g)
        scale = math.sqrt(len(g) / (len(g) - 1))
        residuals += [(v - center) * scale for v in g]
        squares += math.fsum((v - m) ** 2 for v in g)
        df += len(g) - 1
    if df >= ROBUST_MIN_DF:
        sigma = MAD_SCALE * median(abs(r) for r in residuals)
    else:
        sigma = math.sqrt(squares / df)
    first = groups[0]
    return Spread(sigma, mad(first), min(first), max(first), len(first), df)


def improvement(candidate_mean: float, best_mean: float, direction: str) -> float:
    """How much better the candidate is (positive = better), in the metric's units."""
    return best_mean - candidate_mean if direction == "min" else candidate_mean - best_mean


def _t_cdf(x: float, df: int) -> float:
    """Student's t distribution function (Simpson's rule on the density; x >= 0)."""
    c = math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(df * math.pi)
    steps = 400
    h = x / steps
    total = sum((4 if i % 2 else 2) * (1 + (i * h) ** 2 / df) ** (-(df + 1) / 2) for i in range(1, steps))
    total += 1 + (1 + x * x / df) ** (-(df + 1) / 2)
    return 0.5 + c * total * h / 3


@functools.lru_cache(maxsize=256)
def k_for_df(k: float, df: int | None) -> float:
    """The margin k widened for a spread estimated from df degrees of freedom (the t quantile of Phi(k)).

    A spread from few runs is often too small; judged against it, luck passes. The
    widened margin keeps the chance of advancing on noise at that of k with a known spread.
    """
    if not df or df >= 1000:
        return k
    target = 0.5 * (1 + math.erf(k / math.sqrt(2)))
    lo, hi = k, k * 20
    for _ in range(50):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _t_cdf(mid, df) < target else (lo, mid)
    return (lo + hi) / 2


def needed(sigma: float, k: float, n_candidate: int, n_best: int) -> float:
    """The improvement a candidate with n_candidate runs needs over a best with n_best runs."""
    return k * sigma * math.sqrt(1.0 / n_candidate + 1.0 / n_best)


def margin(candidate_values, best_values, direction: str, sigma: float | None) -> float | None:
    """Improvement of the means in units of sigma (result.json `margin`); None without a noise estimate."""
    if not sigma or not best_values or not candidate_values:
        return None
    return improvement(mean(candidate_values), mean(best_values), direction) / sigma


class Judgement(NamedTuple):
    action: str  # advance / revert / confirm
    note: str  # why, for the ledger ("" when a plain strict verdict says it all)
    margin: float | None  # improvement in units of sigma
    rule: str  # strict / noise


def judge(
    candidate_values,
    best_values,
    direction: str,
    spread: Spread | float | None,
    k: float = DEFAULT_K,
    *,
    strict: bool = False,
    not_improvement: str | None = None,
) -> Judgement:
    """The decision for a candidate with 1 or 2 valid runs against the best's runs.

    `spread`: the current Spread (its sigma and df), or a sigma known exactly (a float).
    `strict` (session --strict), no noise estimate yet (None) or a sigma of 0: the
    single-run rule, strictly better than the best's mean. `not_improvement` (from
    seeds.not_an_improvement) forces a revert with that note.
    """
    values = [float(v) for v in candidate_values]
    if not values or len(values) > MAX_RUNS:
        raise ValueError(f"a candidate has 1 to {MAX_RUNS} runs, got {len(values)}")
    sigma, df = (spread.sigma, spread.df) if isinstance(spread, Spread) else (spread, None)
    best = [float(v) for v in best_values or []]
    m = margin(values, best, direction, sigma)
    if not best:
        return Judgement(ADVANCE, "", m, "strict")
    noisy = bool(sigma) and not strict
    if not_improvement:
        return Judgement(REVERT, not_improvement, m, "noise" if noisy else "strict")
    d = improvement(mean(values), mean(best), direction)
    if not noisy:
        return Judgement(ADVANCE if d > 0 else REVERT, "", m, "strict")
    se = sigma * math.sqrt(1.0 / len(values) + 1.0 / len(best))  # standard error of the difference
    z = d / se
    shown = f"{z:+.2f} SE, {k:g} needed ({len(values)}+{len(best)} runs)"
    if len(values) == 1:
        at_once = k_for_df(k, df)
        if z > at_once:
            return Judgement(ADVANCE, "", m, "noise")
        if z > CONFIRM_FLOOR:
            return Judgement(CONFIRM, f"{NEEDS_CONFIRMATION} ({z:+.2f} SE, {at_once:.2f} needed at once)", m, "noise")
        return Judgement(REVERT, f"within noise ({shown})" if d > 0 else "", m, "noise")
    if z > k:
        return Judgement(ADVANCE, f"confirmed ({shown})", m, "noise")
    return Judgement(REVERT, f"not confirmed ({shown})", m, "noise")


def best_value(best_values) -> float:
    """The best's value: the mean of its runs."""
    return mean(best_values)
