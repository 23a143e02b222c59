"""Noise-aware verdicts vs the strict single-run rule, on simulated loops of the noisy fixture host.

Values are sampled exactly as tests/hosts/noisy_host prints them (true loss plus
seeded Gaussian noise, sigma = NOISE). Two scenarios, each run with both rules on
the same seeds:

  null   12 candidates per loop that change nothing: every advance is a false one.
  mixed  40 candidates per loop built on the current best: 20% truly improve it by
         1-3 sigma, 50% change nothing, 30% make it 1 sigma worse.

Reported (medians over loops where it says so, otherwise means):
  false advances per loop     advances of a candidate whose true effect is <= 0
  extra runs                  repeats of the baseline beyond the first + confirmation runs
  extra runs per advance      extra runs / true advances (mixed)
  best bias                   the recorded best's value minus its code's true loss, in sigma
  true gain                   how much the final best's code truly improved on the baseline, in sigma
  noise-aware                 the rule with confirmations only
  runner+N                    what `ar.py run` does: the rule plus N fresh runs of each new best (its
                              value is then less the lucky one; --remeasure N, noise.REMEASURE_BEST)

    .venv/bin/python bench/bench_noise.py [--loops 400] [--out bench/.cache]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "template" / "<<slug>>"))
sys.path.insert(0, str(REPO / "tests" / "hosts" / "noisy_host"))

from noisy.train import NOISE, TRUE_LOSS, val_loss  # noqa: E402

from arunner.rules import noise  # noqa: E402


def mixed_effects(rng: random.Random, n: int) -> list[float]:
    """True effect of each candidate on the best it is built on, in sigma (positive = better)."""
    out = []
    for _ in range(n):
        u = rng.random()
        out.append(rng.choice((1.0, 2.0, 3.0)) if u < 0.2 else 0.0 if u < 0.7 else -1.0)
    return out


def loop(
    seed0: int, effects: list[float], strict: bool, repeats: int, k: float, keep_rows: bool = False, remeasure: int = 0
) -> dict:
    seeds = iter(range(seed0, seed0 + 10_000))
    true_best = TRUE_LOSS

    def sample(true_loss: float) -> float:
        return val_loss(next(seeds), effect=TRUE_LOSS - true_loss)

    baseline = [sample(true_best) for _ in range(1 if strict else repeats)]
    groups, best = [baseline], baseline
    rows = [{"run_id": "r0001", "status": "ok", "verdict": "advance", "primary_value": baseline[0], "note": ""}]
    for v in baseline[1:]:
        rows.append({"run_id": "", "status": "ok", "verdict": "revert", "primary_value": v, "note": "repeat"})
    rows[-1]["best_value"] = noise.best_value(baseline)
    extra = len(baseline) - 1
    false_adv = true_adv = 0
    for effect in effects:
        true_c = true_best - effect * NOISE
        values = [sample(true_c)]
        spread = noise.estimate(groups)
        j = noise.judge(values, best, "min", spread, k, strict=strict)
        if j.action == noise.CONFIRM:
            rows.append({"status": "ok", "verdict": "revert", "primary_value": values[0], "note": "needs confirmation"})
            values.append(sample(true_c))
            extra += 1
            groups.append(values)
            j = noise.judge(values, best, "min", noise.estimate(groups), k)
        advanced = j.action == noise.ADVANCE
        row = {"status": "ok", "verdict": "advance" if advanced else "revert", "primary_value": values[-1], "note": ""}
        if advanced:
            best, true_best = values, true_c
            if (
                remeasure and not strict
            ):  # noise.REMEASURE_BEST  # fresh runs of the new best: its value is no longer the lucky one
                fresh = [sample(true_c) for _ in range(remeasure)]
                extra += remeasure
                groups[-1:] = [values + fresh] if groups[-1] is values else [groups[-1], values + fresh]
                best = values + fresh
            row["best_value"] = noise.best_value(best)
            true_adv += effect > 0
            false_adv += effect <= 0
        rows.append(row)
    for i, r in enumerate(rows):
        r["run_id"] = f"r{i + 1:04d}"
    spread = noise.estimate(groups)
    return {
        "false": false_adv,
        "true": true_adv,
        "extra": extra,
        "runs": len(rows),
        "bias": (noise.best_value(best) - true_best) / NOISE,
        "gain": (TRUE_LOSS - true_best) / NOISE,
        "rows": rows if keep_rows else None,
        "sigma": spread.sigma if spread else None,
    }


def scenario(name: str, loops: int, repeats: int, k: float, remeasure: int = 0) -> dict:
    out = {}
    for strict in (True, False):
        results = []
        for i in range(loops):
            rng = random.Random(10_000 + i)
            effects = [0.0] * 12 if name == "null" else mixed_effects(rng, 40)
            results.append(loop(i * 100_000, effects, strict, repeats, k, remeasure=remeasure))
        out["strict" if strict else "noise-aware"] = results
    return out


def summarize(results: list[dict]) -> dict:
    true_adv = sum(r["true"] for r in results)
    return {
        "false/loop": statistics.mean(r["false"] for r in results),
        "true/loop": statistics.mean(r["true"] for r in results),
        "extra/loop": statistics.mean(r["extra"] for r in results),
        "extra/advance": sum(r["extra"] for r in results) / true_adv if true_adv else float("nan"),
        "bias (sigma)": statistics.median(r["bias"] for r in results),
        "true gain (sigma)": statistics.median(r["gain"] for r in results),
    }


def figure(tables: dict, example_rows: list[dict], sigma: float, out: Path, k: float) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from arunner.commands import plot

    rules = tuple(tables["null"])
    colors = dict(zip(rules, ("tab:red", "tab:green", "tab:olive")))
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    panels = [
        ("null: false advances per loop of 12", "null", "false/loop"),
        ("mixed: extra runs per true advance", "mixed", "extra/advance"),
    ]
    for ax, (title, name, key) in zip(axes, panels):
        values = [summarize(tables[name][r])[key] for r in rules]
        ax.bar(rules, values, color=[colors[r] for r in rules], width=0.55)
        for i, v in enumerate(values):
            ax.annotate(f"{v:.2f}", (i, v), ha="center", va="bottom", fontsize=9)
        ax.set_title(title, fontsize=10, loc="left")
        ax.spines[["top", "right"]].set_visible(False)
    ax = axes[2]
    data = [[r["bias"] for r in tables["mixed"][rule]] for rule in rules]
    ax.boxplot(data, showfliers=False, widths=0.5)
    ax.set_xticks(range(1, len(rules) + 1), rules)
    ax.axhline(0, color="0.5", lw=0.8)
    ax.axhspan(-1, 1, color="tab:green", alpha=0.1, lw=0)
    ax.set_title("mixed: final best minus its true loss (sigma)", fontsize=10, loc="left")
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    summary = out / "noise_rules.png"
    fig.savefig(summary, dpi=110)
    plt.close(fig)
    trajectory = plot.draw(
        example_rows,
        out / "noise_loop.png",
        metric="val_loss",
        sigma=sigma,
        k=k,
        title="one loop of the runner's rule (mixed)",
    )
    return [summary, trajectory]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loops", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=noise.DEFAULT_REPEATS)
    parser.add_argument("--margin", type=float, default=noise.DEFAULT_K)
    parser.add_argument(
        "--remeasure", type=int, default=noise.REMEASURE_BEST, help="also try: N fresh runs of a new best"
    )
    parser.add_argument("--out", type=Path, default=REPO / "bench" / ".cache")
    args = parser.parse_args()
    tables = {name: scenario(name, args.loops, args.repeats, args.margin) for name in ("null", "mixed")}
    variant = f"runner+{args.remeasure}"
    for name in tables:
        tables[name][variant] = scenario(name, args.loops, args.repeats, args.margin, args.remeasure)["noise-aware"]
    print(f"{args.loops} loops per scenario, repeats {args.repeats}, margin k={args.margin:g}, sigma {NOISE}")
    keys = list(summarize(tables["null"]["strict"]))
    print(f"{'scenario':8} {'rule':12} " + " ".join(f"{k:>17}" for k in keys))
    for name, table in tables.items():
        for rule, results in table.items():
            s = summarize(results)
            print(f"{name:8} {rule:12} " + " ".join(f"{s[k]:17.2f}" for k in keys))
    args.out.mkdir(parents=True, exist_ok=True)
    example = loop(
        7 * 100_000,
        mixed_effects(random.Random(10_007), 40),
        False,
        args.repeats,
        args.margin,
        True,
        remeasure=args.remeasure,
    )
    try:
        paths = figure(tables, example["rows"], example["sigma"], args.out, args.margin)
    except ImportError:
        print("(no figure: matplotlib is missing)")
        return
    for path in paths:
        print(f"figure: {path}")


if __name__ == "__main__":
    main()
