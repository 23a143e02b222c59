"""`ar.py report --html`: one self-contained page for a person reviewing a night's work (report.html).

Everything is inline (CSS, a small sorting script, the SVG figure): the page opens from disk with no
network. Sections: the progress figure with the noise band, the candidates (a sortable table), each
kept run's diff against the best it beat, the reverted ideas grouped by what they changed, crashes
with their one-line cause, the lineage of chained experiments, the integrity mode and the refused
runs. Long sections are folded (<details>) so 1,000+ runs stay readable.
"""

from __future__ import annotations

import html
import json
import statistics
from pathlib import Path

from ..core.config import Config, Experiment
from ..core.layout import CHAIN_DECISION, DIFF_FILE, LEDGER, REPORT
from ..core.runs import run_dir_of
from ..integrity import checks
from ..state import best as best_state
from ..state import ledger, noise_groups
from .history import Tried, delta_text, tried

OPEN_TABLE_ROWS = 200  # the candidates table is folded from this many rows on
OPEN_KEPT = 10  # kept diffs are open up to this many kept runs
DIFF_CAP = 60_000  # characters of one diff shown (train.diff keeps it all)
GROUP_SHOWN = 50  # tries listed per group of reverted ideas
PLOT_W, PLOT_H, MARGIN = 900, 320, 50
CLIP_SPREADS = 8.0  # values further than this many robust spreads from the median sit on the edge
FAILED = ("crash", "timeout", "unclean")

STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1100px;color:#222;padding:0 12px}
h1{font-size:22px;margin-bottom:4px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}
.meta{color:#555}.meta div{margin:2px 0}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{padding:3px 6px;border-bottom:1px solid #eee;text-align:left;vertical-align:top}
th{cursor:pointer;background:#f4f4f4;position:sticky;top:0;user-select:none}
th:after{content:" \\2195";color:#aaa}
td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.advance td:first-child{border-left:3px solid #2a7}tr.crash td:first-child{border-left:3px solid #c33}
pre.diff{background:#fafafa;border:1px solid #ddd;padding:8px;overflow:auto;font-size:12px;max-height:480px}
.add{color:#075;background:#e6ffed}.del{color:#a11;background:#ffeef0}.hunk{color:#55a}
details{margin:4px 0}summary{cursor:pointer}code{background:#f4f4f4;padding:0 3px}
.muted{color:#888}svg{background:#fff;border:1px solid #eee}
"""

# Sorting by a header click; any script error is written into the page (tests read it back).
SCRIPT = """
document.querySelectorAll("table.sortable th").forEach(function (th, col) {
  th.addEventListener("click", function () {
    var body = th.closest("table").tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    var up = th.dataset.dir !== "up";
    th.dataset.dir = up ? "up" : "down";
    rows.sort(function (a, b) {
      var x = a.cells[col].dataset.v !== undefined ? parseFloat(a.cells[col].dataset.v) : a.cells[col].textContent;
      var y = b.cells[col].dataset.v !== undefined ? parseFloat(b.cells[col].dataset.v) : b.cells[col].textContent;
      if (typeof x === "number" && isNaN(x)) x = up ? Infinity : -Infinity;
      if (typeof y === "number" && isNaN(y)) y = up ? Infinity : -Infinity;
      return (x < y ? -1 : x > y ? 1 : 0) * (up ? 1 : -1);
    });
    rows.forEach(function (r) { body.appendChild(r); });
  });
});
document.documentElement.setAttribute("data-report-ready", "1");
"""
SENTINEL = """window.addEventListener("error", function (e) {
  var el = document.documentElement;
  el.setAttribute("data-js-errors", (el.getAttribute("data-js-errors") || "") + e.message + ";");
});"""


def esc(text) -> str:
    return html.escape(str(text if text is not None else ""), quote=True)


def _num(value) -> str:
    return "-" if value is None else f"{value:.6g}"


# ----------------------------------------------------------------------------- the figure


def _robust_range(values: list[float]) -> tuple[float, float]:
    med = statistics.median(values)
    spread = statistics.median(abs(v - med) for v in values) or (max(values) - min(values)) / 4 or abs(med) or 1.0
    lo = max(min(values), med - CLIP_SPREADS * spread)
    hi = min(max(values), med + CLIP_SPREADS * spread)
    if hi <= lo:
        lo, hi = lo - 1.0, hi + 1.0
    pad = (hi - lo) * 0.08
    return lo - pad, hi + pad


def progress_svg(rows: list[dict], direction: str, sigma: float | None, k: float, best_means: dict) -> str:
    """Every run: reverts as grey dots, the best as a step line with its noise band, failures on the x axis."""
    if not rows:
        return "<p class=muted>no runs yet</p>"
    valid = [
        (i, r["primary_value"]) for i, r in enumerate(rows) if r["valid"] == "true" and r["primary_value"] is not None
    ]
    steps = _best_steps(rows, best_means)
    known = [v for v in steps if v is not None]
    if not valid and not known:
        return "<p class=muted>no valid value yet</p>"
    lo, hi = _robust_range([v for _, v in valid] + known)
    if sigma:  # the band around the best stays in view
        lo, hi = min(lo, min(known) - k * sigma), max(hi, max(known) + k * sigma)
    plot = _Plot(len(rows), lo, hi)
    band, line = _best_band_and_line(plot, steps, sigma, k)
    parts = [*_frame(plot, rows), *band, _reverted_dots(plot, rows, valid), *line, *_advances(plot, rows)]
    parts += _failure_ticks(plot, rows)
    legend = "green: the best (band: ± k·σ noise)" if sigma else "green: the best"
    parts.append(
        f'<text x="{MARGIN}" y="{MARGIN - 10}" font-size="11">{legend}; grey: reverted; red ticks: crashes ({direction})</text>'
    )
    parts.append("</svg>")
    return "".join(parts)


def _best_steps(rows: list[dict], best_means: dict) -> list:
    """The best's value after each run (None before the first advance); a re-measured best shows its mean."""
    steps, current = [], None
    for r in rows:
        if r["verdict"] == "advance" and r["primary_value"] is not None:
            current = r["primary_value"]
        if r["run_id"] in best_means:
            current = best_means[r["run_id"]]
        steps.append(current)
    return steps


class _Plot:
    """Run index and metric value to pixel coordinates (values outside [lo, hi] are clamped)."""

    def __init__(self, n: int, lo: float, hi: float):
        self.n, self.lo, self.hi = n, lo, hi
        self.w, self.h = PLOT_W - 2 * MARGIN, PLOT_H - 2 * MARGIN

    def x(self, i: float) -> float:
        return MARGIN + (i + 0.5) * self.w / self.n

    def y(self, v: float) -> float:
        v = min(max(v, self.lo), self.hi)
        return MARGIN + (self.hi - v) * self.h / (self.hi - self.lo)


def _frame(plot: _Plot, rows: list[dict]) -> list[str]:
    """The svg element, the plot box, three value labels and the first and last run ids."""
    w, h, lo, hi = plot.w, plot.h, plot.lo, plot.hi
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{PLOT_W}" height="{PLOT_H}" role="img" aria-label="progress">'
    ]
    parts.append(f'<rect x="{MARGIN}" y="{MARGIN}" width="{w}" height="{h}" fill="none" stroke="#ccc"/>')
    for frac in (0, 0.5, 1):
        v = hi - frac * (hi - lo)
        parts.append(
            f'<text x="{MARGIN - 4}" y="{MARGIN + frac * h + 4:.1f}" font-size="11" text-anchor="end">{v:.4g}</text>'
        )
    parts.append(f'<text x="{MARGIN}" y="{PLOT_H - 12}" font-size="11">{esc(rows[0]["run_id"])}</text>')
    parts.append(
        f'<text x="{PLOT_W - MARGIN}" y="{PLOT_H - 12}" font-size="11" text-anchor="end">{esc(rows[-1]["run_id"])}</text>'
    )
    return parts


def _best_band_and_line(plot: _Plot, steps: list, sigma: float | None, k: float) -> tuple[list[str], list[str]]:
    """The best as a step line, and its ± k·σ band when the noise is known (each [] when there is no best)."""
    band, line = [], []
    for i, v in enumerate(steps):
        if v is None:
            continue
        x0, x1 = MARGIN + i * plot.w / plot.n, MARGIN + (i + 1) * plot.w / plot.n
        line.append(f"{'M' if not line else 'L'}{x0:.1f} {plot.y(v):.1f}L{x1:.1f} {plot.y(v):.1f}")
        if sigma:
            band.append(
                f'<rect x="{x0:.1f}" y="{plot.y(v + k * sigma):.1f}" width="{x1 - x0 + 0.3:.1f}" '
                f'height="{max(0.5, plot.y(v - k * sigma) - plot.y(v + k * sigma)):.1f}"/>'
            )
    band_svg = ['<g fill="#2a7" fill-opacity="0.13" class="noise-band">' + "".join(band) + "</g>"] if band else []
    line_svg = [f'<path d="{"".join(line)}" stroke="#2a7" stroke-width="2" fill="none"/>'] if line else []
    return band_svg, line_svg


def _reverted_dots(plot: _Plot, rows: list[dict], valid: list) -> str:
    dots = "".join(f"M{plot.x(i):.1f} {plot.y(v):.1f}h0" for i, v in valid if rows[i]["verdict"] != "advance")
    size = 4 if plot.n < 200 else 2.5
    return f'<path d="{dots}" stroke="#999" stroke-width="{size}" stroke-linecap="round" fill="none"/>'


def _advances(plot: _Plot, rows: list[dict]) -> list[str]:
    return [
        f'<circle cx="{plot.x(i):.1f}" cy="{plot.y(r["primary_value"]):.1f}" r="4" fill="#2a7"><title>{esc(r["run_id"])} {r["primary_value"]:.6g}</title></circle>'
        for i, r in enumerate(rows)
        if r["verdict"] == "advance" and r["primary_value"] is not None
    ]


def _failure_ticks(plot: _Plot, rows: list[dict]) -> list[str]:
    fails = "".join(f"M{plot.x(i):.1f} {MARGIN + plot.h - 6}v12" for i, r in enumerate(rows) if r["status"] in FAILED)
    return [f'<path d="{fails}" stroke="#c33" stroke-width="1.5"/>'] if fails else []


# ----------------------------------------------------------------------------- sections


def _table(cands: list[Tried]) -> str:
    head = "".join(f"<th>{h}</th>" for h in ("run", "verdict", "primary", "change", "what changed", "note"))
    rows = []
    for c in cands:
        margin = c.margin or c.delta
        rows.append(
            f'<tr class="{esc(c.verdict if c.status not in FAILED else "crash")}"><td>{esc(c.run_id)}</td>'
            f"<td>{esc(c.verdict)}{' (confirmed)' if c.confirmed_by else ''}</td>"
            f'<td class=n data-v="{c.value if c.value is not None else "NaN"}">{_num(c.value)}</td>'
            f'<td class=n data-v="{esc(margin or "NaN")}">{esc(delta_text(c))}</td>'
            f"<td>{esc(c.summary)}</td><td>{esc(c.note)}</td></tr>"
        )
    opened = " open" if len(cands) < OPEN_TABLE_ROWS else ""
    return (
        f"<details{opened}><summary>{len(cands)} candidates (click a header to sort)</summary>"
        f'<table class="sortable" id="candidates"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table></details>'
    )


def _diff_html(text: str) -> str:
    out = []
    for line in text[:DIFF_CAP].splitlines():
        cls = (
            "hunk"
            if line.startswith("@@")
            else "add"
            if line.startswith("+")
            else "del"
            if line.startswith("-")
            else ""
        )
        out.append(f'<span class="{cls}">{esc(line)}</span>' if cls else esc(line))
    more = "\n... (cut: the whole diff is in train.diff)" if len(text) > DIFF_CAP else ""
    return "\n".join(out) + more


def _kept(expr: Path, cands: list[Tried]) -> str:
    kept = [c for c in cands if c.kept]
    if not kept:
        return "<p class=muted>no run has advanced yet</p>"
    opened = " open" if len(kept) <= OPEN_KEPT else ""
    out = []
    for c in kept:
        try:
            diff = (run_dir_of(expr, c.run_id) / DIFF_FILE).read_text(errors="replace")
        except OSError:
            diff = ""
        body = f'<pre class="diff">{_diff_html(diff)}</pre>' if diff.strip() else "<p class=muted>no diff recorded</p>"
        against = c.against or "the baseline"
        out.append(
            f'<details class="kept"{opened}><summary><b>{esc(c.run_id)}</b> {_num(c.value)} ({esc(delta_text(c))} '
            f"vs {esc(against)}): {esc(c.summary)} <span class=muted>{esc(c.note)}</span></summary>{body}</details>"
        )
    return "".join(out)


def _reverted(cands: list[Tried]) -> str:
    groups: dict[str, list[Tried]] = {}
    for c in cands:
        if not c.kept and c.status not in FAILED and c.status != "invalid":
            groups.setdefault(c.touched or c.summary or "-", []).append(c)
    if not groups:
        return "<p class=muted>none</p>"
    out = []
    for key, members in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        items = "".join(
            f"<li>{esc(c.run_id)} {esc(delta_text(c))}: {esc(c.summary)} <span class=muted>{esc(c.note)}</span></li>"
            for c in members[-GROUP_SHOWN:]
        )
        more = f"<li class=muted>and {len(members) - GROUP_SHOWN} earlier</li>" if len(members) > GROUP_SHOWN else ""
        out.append(f"<details><summary>{esc(key)} ({len(members)} tries)</summary><ul>{more}{items}</ul></details>")
    return "".join(out)


def _crashes(cands: list[Tried]) -> str:
    failed = [c for c in cands if c.status in FAILED]
    if not failed:
        return "<p class=muted>none</p>"
    items = "".join(
        f"<li>{esc(c.run_id)} {esc(c.status)}: {esc(c.cause() or 'no cause recorded')} "
        f"<span class=muted>({esc(c.summary)})</span></li>"
        for c in failed
    )
    opened = " open" if len(failed) <= OPEN_KEPT else ""
    return f"<details{opened}><summary>{len(failed)} runs</summary><ul>{items}</ul></details>"


def _lineage(cfg: Config) -> str:
    """Ancestors (parent_expr, recursively) and the children chained from this experiment."""
    root = cfg.expr_dir.parent
    chain, slug, seen = [], cfg.slug, set()
    while slug and slug not in seen:
        seen.add(slug)
        decision = _json(root / slug / CHAIN_DECISION)
        parent = decision.get("parent_expr") or (cfg.parent_expr if slug == cfg.slug else "")
        chain.append((slug, decision))
        slug = parent
    items = []
    for slug, decision in reversed(chain):
        why = decision.get("rationale") or ""
        start = f" from {decision.get('parent_expr')} best {decision.get('parent_best_run_id')}" if decision else ""
        items.append(f"<li><b>{esc(slug)}</b>{esc(start)} <span class=muted>{esc(why)}</span></li>")
    children = []
    for child in sorted(root.iterdir()) if root.is_dir() else []:
        decision = _json(child / CHAIN_DECISION)
        if decision.get("parent_expr") == cfg.slug:
            children.append(
                f"<li>child <b>{esc(child.name)}</b> from best {esc(decision.get('parent_best_run_id'))}: "
                f"{esc(decision.get('goal'))}</li>"
            )
    return f"<ul>{''.join(items)}{''.join(children)}</ul>"


def _json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _integrity(exp: Experiment, cands: list[Tried]) -> str:
    refused = [c for c in cands if c.status == "invalid"]
    items = "".join(f"<li>{esc(c.run_id)}: {esc(c.ledger_note)}</li>" for c in refused)
    listing = f"<ul>{items}</ul>" if refused else "<p class=muted>no refused or invalid run</p>"
    return f"<p>{esc(checks.describe(exp))}</p>{listing}"


# ----------------------------------------------------------------------------- the page


def render(exp: Experiment) -> str:
    cfg, session = exp.cfg, exp.session
    expr = cfg.expr_dir
    rows = ledger.read(expr / LEDGER)
    cands, _ = tried(expr)
    best = best_state.read_best(expr)
    state = noise_groups.load(expr)
    found = noise_groups.spread(state)
    sigma = None if session.strict or not found or found.deterministic else found.sigma
    means = {}
    advanced = {r["run_id"] for r in rows if r["verdict"] == "advance"}
    for group in state["groups"].values():
        if advanced & set(group):
            means[max(group)] = sum(group.values()) / len(group)
    best_line = (
        f"best {_num((best or {}).get('primary', {}).get('value'))} at {best['run_id']}" if best else "no best yet"
    )
    meta = [
        f"goal: {cfg.goal}",
        f"primary: {cfg.primary_metric} ({cfg.primary_direction}); {len(rows)} runs, {len(cands)} candidates; {best_line}",
        noise_groups.status_line(expr, session),
    ]
    sections = [
        ("Progress", progress_svg(rows, cfg.primary_direction, sigma, noise_groups.margin_k(session), means)),
        ("Candidates", _table(cands)),
        ("Kept: each diff against the best it beat", _kept(expr, cands)),
        ("Reverted ideas, grouped by what they changed", _reverted(cands)),
        ("Crashes", _crashes(cands)),
        ("Lineage", _lineage(cfg)),
        ("Integrity", _integrity(exp, cands)),
    ]
    body = "".join(
        f'<h2 id="{esc(title.split(":")[0].split(",")[0].lower().replace(" ", "-"))}">{esc(title)}</h2>{content}'
        for title, content in sections
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{esc(cfg.slug)}: report</title><style>{STYLE}</style><script>{SENTINEL}</script></head><body>"
        f"<h1>{esc(cfg.slug)}</h1><div class=meta>{''.join(f'<div>{esc(m)}</div>' for m in meta)}</div>"
        f"{body}<script>{SCRIPT}</script></body></html>\n"
    )


def write(exp: Experiment) -> Path:
    cfg = exp.cfg
    from ..core.fsutil import atomic_write_text

    path = cfg.expr_dir / REPORT
    atomic_write_text(path, render(exp))
    return path
