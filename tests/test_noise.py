"""Noise-aware verdicts: the spread, the rule, seed-only candidates, the seeds of repeats, the plot.

The simulated loops sample values exactly as the noisy fixture host prints them
(its own `val_loss(seed, ...)`), with fixed seeds, so every count is deterministic.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys

import pytest
from conftest import HOSTS

from arunner.core.errors import UserError
from arunner.rules import noise, seeds

sys.path.insert(0, str(HOSTS / "noisy_host"))
from noisy.train import NOISE, TRUE_LOSS, val_loss  # noqa: E402

LOOPS, CANDIDATES, REPEATS = 20, 12, noise.DEFAULT_REPEATS


def simulate(loop: int, strict: bool, effect: float = 0.0, candidates: int = CANDIDATES) -> dict:
    """One loop on the noisy host: a baseline, then candidates that each change the loss by `effect`.

    Seeds are fixed per loop and run, so the strict and the noise-aware loop see the same first runs.
    """
    seed = iter(range(loop * 1000, loop * 1000 + 1000))
    baseline = [val_loss(next(seed)) for _ in range(1 if strict else REPEATS)]
    groups = [baseline]
    best, advances, runs = baseline, 0, len(baseline)
    for _ in range(candidates):
        values = [val_loss(next(seed), effect=effect)]
        runs += 1
        spread = noise.estimate(groups)
        j = noise.judge(values, best, "min", spread, strict=strict)
        if j.action == noise.CONFIRM:
            values.append(val_loss(next(seed), effect=effect))
            runs += 1
            groups.append(values)
            spread = noise.estimate(groups)
            j = noise.judge(values, best, "min", spread)
            assert j.action != noise.CONFIRM  # a candidate is confirmed at most once
        if j.action == noise.ADVANCE:
            advances += 1
            best = values
    return {"advances": advances, "runs": runs, "best": noise.best_value(best)}


def test_no_true_effect_strict_advances_luck_noise_aware_almost_none():
    strict = sum(simulate(i, strict=True)["advances"] for i in range(LOOPS))
    aware = sum(simulate(i, strict=False)["advances"] for i in range(LOOPS))
    # 240 candidates that change nothing: strict keeps every new record low (about H(13) - 1 = 2.2 per loop)
    assert strict >= 30, strict
    assert aware <= 6, aware  # measured: strict 50, noise-aware 4
    assert aware * 6 <= strict


def test_true_effect_of_three_noise_units_advances_in_90_percent():
    trials = 200
    advanced = sum(simulate(i, strict=False, effect=3 * NOISE, candidates=1)["advances"] for i in range(trials))
    assert advanced >= 0.9 * trials, advanced


def test_final_best_within_noise_while_strict_is_biased():
    strict = [simulate(i, strict=True)["best"] - TRUE_LOSS for i in range(LOOPS)]
    aware = [simulate(i, strict=False)["best"] - TRUE_LOSS for i in range(LOOPS)]
    assert statistics.mean(strict) < -1.2 * NOISE  # the luckiest run of 13
    assert abs(statistics.mean(aware)) < 0.75 * NOISE  # measured -0.52 sigma: the few false advances


def test_zero_spread_is_exactly_the_strict_rule():
    spread = noise.estimate([[0.5, 0.5, 0.5]])
    assert spread.sigma == 0.0 and spread.deterministic and "strict" in spread.describe()
    assert "sigma=0.1" in noise.estimate([[0.9, 1.0, 1.1]]).describe()
    for value in (0.4999999, 0.5, 0.5000001, 0.1, 0.9):
        for sigma in (0.0, None):
            j = noise.judge([value], [0.5, 0.5, 0.5], "min", sigma)
            expected = noise.ADVANCE if value < 0.5 else noise.REVERT
            assert (j.action, j.rule, j.margin) == (expected, "strict", None)
    assert noise.judge([0.6], [0.5], "max", 0.0).action == noise.ADVANCE
    assert noise.judge([0.5], [0.5], "max", 0.0).action == noise.REVERT
    # session --strict with a real spread: the single-run rule too
    assert noise.judge([0.499], [0.5], "min", 0.1, strict=True).action == noise.ADVANCE


def test_rule_thresholds_and_notes():
    best = [1.0, 1.0, 1.0]  # n_b = 3, sigma 0.1: one run needs 2 * 0.1 * sqrt(4/3) = 0.2309
    assert noise.needed(0.1, 2.0, 1, 3) == pytest.approx(0.23094, abs=1e-5)
    fast = noise.judge([0.76], best, "min", 0.1)
    assert fast.action == noise.ADVANCE and fast.margin == pytest.approx(2.4) and fast.note == ""
    close = noise.judge([0.85], best, "min", 0.1)
    assert close.action == noise.CONFIRM and close.note.startswith("needs confirmation")
    tiny = noise.judge([0.97], best, "min", 0.1)  # below half a standard error: not worth a run
    assert tiny.action == noise.REVERT and "within noise" in tiny.note
    worse = noise.judge([1.2], best, "min", 0.1)
    assert worse.action == noise.REVERT and worse.margin == pytest.approx(-2.0)
    # two runs need 2 * 0.1 * sqrt(1/2 + 1/3) = 0.1826
    assert noise.judge([0.85, 0.78], best, "min", 0.1).action == noise.ADVANCE
    no = noise.judge([0.85, 0.95], best, "min", 0.1)
    assert no.action == noise.REVERT and no.note.startswith("not confirmed")
    assert noise.judge([1.25], best, "max", 0.1).action == noise.ADVANCE  # direction max
    assert noise.judge([0.5], [], "min", 0.1).action == noise.ADVANCE  # nothing to beat yet
    forced = noise.judge([0.1], best, "min", 0.1, not_improvement="only a seed changed")
    assert forced.action == noise.REVERT and forced.note == "only a seed changed"
    with pytest.raises(ValueError):
        noise.judge([1, 2, 3], best, "min", 0.1)
    # a spread from 3 runs (df 2) is rough: one run must beat the best by 4.53 SE to advance at once
    rough = noise.Spread(sigma=0.1, mad=0.1, lo=0.9, hi=1.1, n=3, df=2)
    assert noise.k_for_df(2.0, 2) == pytest.approx(4.5265, abs=1e-3)  # t quantile of Phi(2), 2 df
    assert noise.judge([0.76], best, "min", rough).action == noise.CONFIRM
    assert noise.judge([0.4], best, "min", rough).action == noise.ADVANCE
    assert noise.judge([0.85, 0.78], best, "min", rough).action == noise.ADVANCE  # the confirmation: plain k


def test_spread_numbers_on_a_known_sample():
    sample = [1.0, 1.1, 1.3, 0.9, 5.0]  # median 1.1, |dev| 0.1 0 0.2 0.2 3.9 -> MAD 0.2
    assert noise.mad(sample) == pytest.approx(1.4826 * 0.2)
    assert noise.mad([3.0]) == 0.0
    s = noise.estimate([sample])
    assert (s.lo, s.hi, s.n, s.df) == (0.9, 5.0, 5, 4)
    assert s.sigma == pytest.approx(statistics.stdev(sample))  # few df: pooled standard deviation
    pooled = noise.estimate([[1.0, 1.2, 1.4], [2.0, 2.2], [3.0, 3.1]])  # df 2+1+1
    expected = ((0.04 + 0 + 0.04) + (0.01 + 0.01) + (0.0025 + 0.0025)) / 4
    assert pooled.sigma == pytest.approx(expected**0.5)
    assert pooled.n == 3 and pooled.mad == pytest.approx(1.4826 * 0.2)
    many = noise.estimate([[float(i % 2) for i in range(9)] + [100.0]])  # df 9: robust, one outlier ignored
    assert many.sigma < 2.0 < statistics.stdev([float(i % 2) for i in range(9)] + [100.0])
    assert noise.estimate([[1.0], [2.0]]) is None
    assert noise.Spread.from_json(s.to_json()) == s and noise.Spread.from_json(None) is None
    assert noise.margin([0.9], [1.0, 1.2], "min", 0.05) == pytest.approx(4.0)
    assert noise.margin([0.9], [1.0], "min", None) is None


# ----------------------------------------------------------------------------- seeds

BEST_SRC = '''"""exp"""
import torch
RUN_NOTE = "baseline"
CLI_OVERRIDES = {"lr": 0.01, "seed": 0, "steps": 100}
torch.manual_seed(0)
'''


@pytest.mark.parametrize(
    "candidate",
    [
        BEST_SRC.replace('"seed": 0', '"seed": 7').replace('"baseline"', '"try seed 7"'),
        BEST_SRC.replace("torch.manual_seed(0)", "torch.manual_seed(123)"),
        BEST_SRC + "SEED = 3\nnp.random.seed(SEED)\nrandom.seed(4)\n",
        BEST_SRC + 'CLI_OVERRIDES["data_seed"] = 5\n',
        BEST_SRC.replace("torch.manual_seed(0)", "torch.manual_seed(0)  # a comment"),
        BEST_SRC + "rng = np.random.default_rng(11)\n",
    ],
)
def test_seed_only_changes_never_advance(candidate):
    if "default_rng" in candidate:
        best = BEST_SRC + "rng = np.random.default_rng(0)\n"
    elif candidate.endswith("random.seed(4)\n") or 'CLI_OVERRIDES["data_seed"]' in candidate:
        best = BEST_SRC + ("SEED = 1\nnp.random.seed(SEED)\nrandom.seed(1)\n" if "SEED" in candidate else "")
        best += 'CLI_OVERRIDES["data_seed"] = 1\n' if "data_seed" in candidate else ""
    else:
        best = BEST_SRC
    reason = seeds.not_an_improvement(candidate, best)
    assert reason and ("seed" in reason or "re-run" in reason)
    j = noise.judge([0.1], [1.0, 1.0, 1.0], "min", 0.01, not_improvement=reason)  # far better, still reverted
    assert j.action == noise.REVERT and j.note == reason


def test_hydra_seed_override_is_seed_only_and_real_changes_are_not():
    hydra = 'CLI_OVERRIDES = ["optimizer.lr=0.05", "trainer.seed=0"]\n'
    assert "seed" in seeds.not_an_improvement(hydra.replace("seed=0", "seed=9"), hydra)
    assert seeds.not_an_improvement(hydra.replace("lr=0.05", "lr=0.1"), hydra) is None
    assert seeds.not_an_improvement(BEST_SRC.replace('"lr": 0.01', '"lr": 0.02'), BEST_SRC) is None
    both = BEST_SRC.replace('"lr": 0.01', '"lr": 0.02').replace('"seed": 0', '"seed": 1')
    assert seeds.not_an_improvement(both, BEST_SRC) is None
    assert seeds.not_an_improvement("def broken(:\n", BEST_SRC) is None  # left to the run to crash


def test_seed_of_repeats_and_confirmations():
    assert seeds.seed_key({"lr": 0.1, "data_seed": 1, "seed": 3}) == "seed"
    assert seeds.seed_key({"lr": 0.1}, ["--lr", "--random_seed"]) == "random_seed"
    assert seeds.seed_key(["trainer.seed=0", "x=1"]) == "trainer.seed"
    assert seeds.seed_key({"lr": 0.1}, ["--lr", "--seeds_file"]) is None
    env, over = seeds.seed_run({"lr": 0.1, "seed": 42}, 0)
    assert env == {"AR_SEED": "42"} and over == {"lr": 0.1, "seed": 42}
    env, over = seeds.seed_run({"lr": 0.1, "seed": 42}, 2)
    assert env == {"AR_SEED": "44"} and over == {"lr": 0.1, "seed": 44}
    env, over = seeds.seed_run({"lr": 0.1}, 1, ["--seed"])
    assert env == {"AR_SEED": "1"} and over == {"lr": 0.1, "seed": 1}
    env, over = seeds.seed_run({"lr": 0.1}, 1)  # no seed option: AR_SEED only
    assert env == {"AR_SEED": "1"} and over == {"lr": 0.1}
    assert seeds.seed_run(["a=1", "trainer.seed=5"], 1)[1] == ["a=1", "trainer.seed=6"]
    assert seeds.with_seed(["a=1"], "+trainer.seed", 3) == ["a=1", "+trainer.seed=3"]


# ----------------------------------------------------------------------------- the real host


def test_noisy_host_spread_from_real_runs(tmp_path):
    """Repeats as the runner will make them: seeds from seeds.seed_run, passed as the host's own --seed."""
    overrides = {"steps": 10, "seed": 0, "out_dir": str(tmp_path)}
    values = []
    for attempt in range(12):
        env, args = seeds.seed_run(overrides, attempt, ["--lr", "--seed", "--effect"])
        assert env == {"AR_SEED": str(attempt)} and args["seed"] == attempt
        argv = [word for key, value in args.items() for word in (f"--{key}", str(value))]
        proc = subprocess.run(
            [sys.executable, "-m", "noisy.train", *argv],
            cwd=HOSTS / "noisy_host",
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, **env},
        )
        assert proc.returncode == 0, proc.stderr
        values.append(float(re.findall(r"val_loss=([-\d.eE]+)", proc.stdout)[-1]))
    assert len(set(values)) == 12  # the seed moves the metric
    spread = noise.estimate([values])
    assert 0.5 * NOISE < spread.sigma < 1.6 * NOISE, spread
    assert 0.4 * NOISE < spread.mad < 2.0 * NOISE, spread
    assert abs(statistics.mean(values) - TRUE_LOSS) < 2 * NOISE


# ----------------------------------------------------------------------------- the plot


def _rows(n: int, crashes: bool, outlier: bool) -> list[dict]:
    rows, best = [], None
    for i in range(n):
        row = {"run_id": f"r{i + 1:04d}", "status": "ok", "verdict": "revert", "note": "", "primary_value": None}
        if crashes and i % 37 == 5:
            row.update(status="crash", verdict="crash")
        elif crashes and i % 53 == 7:
            row.update(status="timeout", verdict="timeout")
        else:
            value = val_loss(i, effect=0.0002 * i)
            if outlier and i == n // 2:
                value = 1e3
            row["primary_value"] = value
            if best is None or value < best - 2 * NOISE:
                row["verdict"], best = "advance", value
        rows.append(row)
    return rows


@pytest.mark.parametrize("n,crashes,outlier", [(5, False, False), (1000, True, True)])
def test_plot_writes_png(tmp_path, n, crashes, outlier):
    pytest.importorskip("matplotlib")
    from arunner.commands import plot

    rows = _rows(n, crashes, outlier)
    path = plot.draw(rows, tmp_path / "progress.png", metric="val_loss", sigma=NOISE)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    lo, hi = plot.y_range([r["primary_value"] for r in rows if r["primary_value"] is not None])
    assert hi < 10  # the 1e3 outlier does not squash the rest


def test_plot_without_matplotlib_is_one_line(monkeypatch):
    from arunner.commands import plot

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(UserError, match="pip install matplotlib"):
        plot.draw([], "unused.png")
