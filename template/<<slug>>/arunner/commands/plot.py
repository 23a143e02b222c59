"""`report --plot`: every run on one figure, readable from 5 runs to 1,000+.

  - advances: the running best as a step line (the best's value: the mean of its
    runs when a row carries `best_value`), with a dot at each advance,
  - reverts: small grey dots (a `needs confirmation` run: a hollow ring),
  - crashes, timeouts, interrupted and invalid runs: marks on the x axis, so
    they are never hidden by the y-range,
  - the noise band: best +/- k x sigma around the step line, when a spread is known,
  - a y-range robust to outliers (median +/- OUTLIER_SPREADS robust spreads of the
    values); a point outside is drawn at the edge as an arrow pointing its way.

matplotlib is imported only here, on demand; without it `report --plot` says
how to install it in one line.
"""

from __future__ import annotations

import re
import statistics
from pathlib import Path

from ..core.errors import UserError

OUTLIER_SPREADS = 8.0  # values further than this many robust spreads from the median are clipped
PAD = 0.08  # fraction of the y-range added above and below
LABELLED_CLIPS = 10  # up to this many off-scale points get their value written next to the arrow
DENSE = 200  # from this many runs on, markers shrink
AXIS_MARKS = {  # status -> (marker, color, label)
    "crash": ("x", "tab:red", "crash"),
    "unclean": ("x", "tab:red", "crash"),
    "timeout": ("|", "tab:orange", "timeout"),
    "interrupted": ("|", "0.45", "interrupted"),
    "invalid": ("d", "tab:purple", "invalid"),
}
RUN_NUMBER_RE = re.compile(r"^r(\d+)$")


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise UserError(
            "report --plot needs matplotlib, which this environment lacks: pip install matplotlib"
        ) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _run_number(row: dict, index: int) -> int:
    m = RUN_NUMBER_RE.match(str(row.get("run_id", "")))
    return int(m.group(1)) if m else index + 1


def _value(row: dict):
    v = row.get("primary_value")
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return v if v == v and abs(v) != float("inf") else None


def y_range(values, keep=()) -> tuple[float, float]:
    """Limits that hold the bulk of `values` (and every value in `keep`), ignoring far outliers."""
    values = sorted(values)
    if not values:
        return 0.0, 1.0
    center = statistics.median(values)
    spread = 1.4826 * statistics.median(abs(v - center) for v in values)
    if spread == 0:  # most values equal: fall back to a quantile range
        spread = (values[int(0.9 * (len(values) - 1))] - values[int(0.1 * (len(values) - 1))]) / 2
    if spread == 0:
        spread = abs(center) * 0.05 or 1.0
    inside = [v for v in values if abs(v - center) <= OUTLIER_SPREADS * spread] + list(keep)
    lo, hi = min(inside), max(inside)
    pad = (hi - lo) * PAD or spread
    return lo - pad, hi + pad


def draw(
    rows: list[dict],
    path,
    *,
    metric: str = "primary",
    direction: str = "min",
    sigma: float | None = None,
    k: float = 2.0,
    title: str = "",
    extra: dict | None = None,
) -> Path:
    """Write the progress figure of `rows` (results.tsv rows, oldest first) to `path` (PNG).

    `extra`: {name: [(run number, value), ...]} drawn on a second axis (e.g. holdout metrics,
    whose scale need not be the primary's).
    """
    plt = _pyplot()
    path = Path(path)
    dense = len(rows) >= DENSE
    dot = 5 if dense else 22
    xs_all = [_run_number(r, i) for i, r in enumerate(rows)]
    best_x, best_y, advances = _running_best(xs_all, rows)
    ok = [(x, _value(r), r) for x, r in zip(xs_all, rows) if r.get("status") == "ok" and _value(r) is not None]
    lo, hi = y_range([v for _, v, _ in ok], keep=best_y[-1:])  # the current best is always in view
    if sigma and best_y:
        band_lo, band_hi = best_y[-1] - k * sigma, best_y[-1] + k * sigma
        pad = (max(hi, band_hi) - min(lo, band_lo)) * PAD / 2
        lo, hi = min(lo, band_lo - pad), max(hi, band_hi + pad)

    fig, ax = plt.subplots(figsize=(10, 4.8) if dense else (8, 4.2))
    _best_line(ax, best_x, best_y, sigma, k)
    _points(ax, ok, advances, lo, hi, dot)
    _axis_marks(ax, xs_all, rows, dot)
    _frame(ax, xs_all, (lo, hi), metric, direction)
    n_adv = len(advances)
    ax.set_title(title or f"{len(rows)} runs, {n_adv} advance{'s' if n_adv != 1 else ''}", fontsize=10, loc="left")
    ax.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    if extra:
        twin = ax.twinx()
        for name, points in extra.items():
            if points:
                twin.plot(*zip(*points), marker="^", linestyle=":", color="tab:purple", label=name)
        twin.set_ylabel(", ".join(extra))
        twin.legend(fontsize=8, frameon=False, loc="lower left", bbox_to_anchor=(1.01, 0.0))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _running_best(xs_all: list[int], rows: list[dict]) -> tuple[list, list, list]:
    """(x, y of the best-so-far step line, [(x, value)] of each advance)."""
    best_x, best_y, advances = [], [], []
    running = None
    for x, r in zip(xs_all, rows):
        if r.get("verdict") == "advance" and _value(r) is not None:
            advances.append((x, _value(r)))
            running = _value(r)
        if r.get("best_value") not in (None, ""):  # the best's mean, when the ledger gives it
            try:
                running = float(r["best_value"])
            except (TypeError, ValueError):
                pass
        if running is not None:
            best_x.append(x)
            best_y.append(running)
    return best_x, best_y, advances


def _best_line(ax, best_x: list, best_y: list, sigma: float | None, k: float) -> None:
    if not best_x:
        return
    ax.step(best_x, best_y, where="post", color="tab:green", lw=1.6, label="best so far", zorder=4)
    if sigma:
        band_lo = [y - k * sigma for y in best_y]
        band_hi = [y + k * sigma for y in best_y]
        ax.fill_between(
            best_x,
            band_lo,
            band_hi,
            step="post",
            color="tab:green",
            alpha=0.13,
            lw=0,
            label=f"noise band (best ± {k:g}σ)",
        )


def _points(ax, ok: list, advances: list, lo: float, hi: float, dot: float) -> None:
    """Reverts, runs that needed confirmation, advances; a point off the y-range as an arrow at the edge."""
    reverts = [
        (x, v) for x, v, r in ok if r.get("verdict") != "advance" and "needs confirmation" not in r.get("note", "")
    ]
    pending = [(x, v) for x, v, r in ok if r.get("verdict") != "advance" and "needs confirmation" in r.get("note", "")]
    clipped = [(x, v) for x, v in (*reverts, *pending, *advances) if v < lo or v > hi]

    def inside(points):
        return [(x, v) for x, v in points if lo <= v <= hi]

    reverts, pending, shown_adv = inside(reverts), inside(pending), inside(advances)
    if reverts:
        ax.scatter(*zip(*reverts), s=dot, color="0.6", lw=0, label="revert", zorder=2)
    if pending:
        ax.scatter(
            *zip(*pending),
            s=dot * 1.6,
            facecolors="none",
            edgecolors="0.35",
            lw=0.8,
            label="needs confirmation",
            zorder=3,
        )
    if shown_adv:
        ax.scatter(
            *zip(*shown_adv), s=dot * 2.2, color="tab:green", edgecolors="white", lw=0.5, label="advance", zorder=5
        )
    if not clipped:
        return
    up = [(x, hi) for x, v in clipped if v > hi]
    down = [(x, lo) for x, v in clipped if v < lo]
    for points, marker in ((up, "^"), (down, "v")):
        if points:
            ax.scatter(*zip(*points), s=dot * 2, marker=marker, color="tab:blue", zorder=6, clip_on=False)
    ax.scatter([], [], marker="^", color="tab:blue", s=dot * 2, label=f"off scale ({len(clipped)})")
    if len(clipped) <= LABELLED_CLIPS:  # a few: say where they are
        for x, v in clipped:
            y, va = (hi, "bottom") if v > hi else (lo, "top")
            ax.annotate(
                f"{v:.4g}", (x, y), xytext=(4, 0), textcoords="offset points", fontsize=7, va=va, color="tab:blue"
            )


def _axis_marks(ax, xs_all: list[int], rows: list[dict], dot: float) -> None:
    """Failed runs: marks on the x axis (axes coordinates for y, so they sit on the axis at any range)."""
    trans = ax.get_xaxis_transform()
    seen = set()
    for status, (marker, color, label) in AXIS_MARKS.items():
        xs = [x for x, r in zip(xs_all, rows) if r.get("status") == status]
        if not xs:
            continue
        ax.scatter(
            xs,
            [0.0] * len(xs),
            transform=trans,
            marker=marker,
            color=color,
            s=dot * 1.8 if marker != "|" else dot * 4,
            lw=1.0,
            clip_on=False,
            zorder=6,
            label=f"{label} ({len(xs)})" if label not in seen else None,
        )
        seen.add(label)


def _frame(ax, xs_all: list[int], ylim: tuple, metric: str, direction: str) -> None:
    from matplotlib.ticker import MaxNLocator  # matplotlib is imported only when a figure is drawn

    ax.set_ylim(*ylim)
    ax.set_xlim(min(xs_all, default=0) - 0.5, max(xs_all, default=1) + 0.5)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=12))
    ax.set_xlabel("run")
    ax.set_ylabel(f"{metric} ({'lower' if direction == 'min' else 'higher'} is better)")
    ax.grid(axis="y", color="0.92", lw=0.6)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
