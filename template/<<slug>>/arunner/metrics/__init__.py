"""Metric extraction for one finished run: pick the backend, fall back to the log.

Backends (one module each): `wandb`, `tensorboard`, `logregex` (the log),
`custom`. `auto` tries wandb, then tensorboard, then the log; the first that
yields the primary metric wins. wandb and tensorboard fall back to the log
regex when their source is absent or lacks the primary; `source` says where
the primary came from and `note` says why the configured backend did not
deliver it. A custom snippet that fails is reported as such (no fallback: a
broken snippet must not be silently replaced by another rule); one that runs
but returns no primary falls back to the log like the others.

Only artifacts of this run count (never an earlier run's): run_dir/run.log, wandb
folders under run_dir (or created after `started_at`), event files written
after `started_at`. wandb and tensorboard are imported only when their
backend actually finds files to read.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from ..core.answers import METRIC_BACKENDS as BACKENDS
from ..core.text import one_line
from .logregex import DEFAULT_LOG_REGEX, build_patterns, extract_log

__all__ = ["Extraction", "extract", "prepare", "DEFAULT_LOG_REGEX", "BACKENDS"]

_READERS = ("wandb", "tensorboard")  # backends with files of their own (the log is read by every backend)
NOTE_MAX = 200  # characters of the extraction note


class Extraction(NamedTuple):
    metrics: dict[str, float]  # every metric found (may include nan/inf floats)
    source: str  # "wandb" | "tensorboard" | "log" | "custom" | "none"
    note: str = ""  # one short line when something was off, else ""


def _read(name: str, cfg, run_dir: Path, started_at: float, wanted: list[str]):
    """A backend module is imported only when a run's backend tries it (each costs milliseconds)."""
    if name == "wandb":
        from .wandb import extract_wandb as read
    else:
        from .tensorboard import extract_tensorboard as read
    return read(cfg, run_dir, started_at, wanted)


def prepare(cfg, wanted: list[str]) -> None:
    """Compile the log patterns extract() will use (the re module keeps them): called while a run
    trains, so that cost is not paid after it."""
    build_patterns(getattr(cfg, "log_metric_regex", "") or "", list(dict.fromkeys(wanted)))


def _short(text: str) -> str:
    return one_line(" ".join(text.split()), NOTE_MAX, "...")


def extract(cfg, run_dir: Path, started_at: float, wanted: list[str]) -> Extraction:
    """Metrics of the run in `run_dir` (launched at `started_at`); wanted = [primary, *constraint names]."""
    run_dir = Path(run_dir)
    wanted = list(dict.fromkeys(wanted or [cfg.primary_metric]))  # primary first, no duplicates
    primary = wanted[0]
    backend = cfg.metric_backend
    if backend not in BACKENDS:
        return Extraction({}, "none", _short(f"unknown metric_backend {backend!r}; allowed: {', '.join(BACKENDS)}"))

    found: dict[str, float] = {}  # what the backends found besides the primary
    found_in = ""  # the first backend that found anything
    reasons: list[str] = []  # why the configured backend did not deliver the primary
    if backend == "custom":
        from .custom import extract_custom

        metrics, note = extract_custom(cfg, run_dir)
        if note:
            return Extraction({}, "none", _short(note))
        if primary in metrics:
            return Extraction(metrics, "custom")
        found, found_in = metrics, ("custom" if metrics else "")
        reasons.append(f"custom code returned no {primary!r}")

    order = ["wandb", "tensorboard"] if backend == "auto" else [backend] if backend in _READERS else []
    for name in order:
        metrics, note = _read(name, cfg, run_dir, started_at, wanted)
        if metrics is not None and primary in metrics:
            return Extraction(metrics, name, _short(note))
        if metrics:
            found_in = found_in or name
            found = {**metrics, **found}
        # metrics None: the source is absent, normal in auto mode; {} or more: it is there
        # but unreadable or without the primary, worth a word in any mode
        if backend != "auto":
            reasons.append(note or f"{name} had no {primary!r}")
        elif metrics is not None:
            reasons.append(f"{name}: " + (note or f"no {primary!r}"))

    log_metrics, log_note = extract_log(cfg, run_dir, wanted)
    merged = {**log_metrics, **found}  # the log only fills gaps: a backend's own values are exact
    if primary in log_metrics:
        note = "; ".join(reasons + [log_note]).strip("; ")
        return Extraction(merged, "log", _short(note + ("; took it from run.log" if reasons else "")))
    looked = (order + ["run.log"]) if backend != "custom" else ["custom code", "run.log"]
    reasons.append(log_note or f"no {primary!r} in {' or '.join(looked)}")
    source = found_in or ("log" if log_metrics else "none")
    return Extraction(merged, source, _short("; ".join(r for r in reasons if r)))
