"""The custom backend: the user's own extraction snippet from the answers.

`metric_extract_code` is the BODY of `def extract(run_dir, run_log_text):`.
It runs in the runner's process with `re`, `json`, `math` and `Path` in scope,
gets the run folder and the (bounded) tail of run.log as text, and returns
dict[str, float]. Any failure (syntax error, exception, wrong return type)
gives no metrics and a one-line note naming the error, never a traceback:
the run is then judged invalid instead of crashing the runner.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from ..core.layout import RUN_LOG
from ..core.text import one_line
from .logregex import read_tail_text

ERROR_CAP = 160  # characters of an error quoted in the note


def _one_line(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return one_line(" ".join(text.split()), ERROR_CAP, "...")


def compile_extract(code: str):
    """The `extract` function defined by the snippet (SyntaxError propagates)."""
    import textwrap  # only a custom backend pays for it

    source = "def extract(run_dir, run_log_text):\n" + textwrap.indent(textwrap.dedent(code), "    ")
    namespace = {"re": re, "json": json, "math": math, "Path": Path}
    exec(compile(source, "<metric_extract_code>", "exec"), namespace)
    return namespace["extract"]


def extract_custom(cfg, run_dir: Path) -> tuple[dict[str, float], str]:
    """(metrics the snippet returned, note). The note is non-empty exactly when the snippet failed."""
    code = getattr(cfg, "metric_extract_code", "") or ""
    if not code.strip():
        return {}, "metric_extract_code is empty"
    try:
        fn = compile_extract(code)
    except SyntaxError as exc:
        return {}, f"custom metric code has a syntax error: {exc.msg} (line {(exc.lineno or 2) - 1})"
    text = read_tail_text(Path(run_dir) / RUN_LOG)
    try:
        out = fn(Path(run_dir), text)
    except Exception as exc:  # the user's code: report it, never crash the runner
        return {}, f"custom metric code raised {_one_line(exc)}"
    if not isinstance(out, dict):
        return {}, f"custom metric code returned {type(out).__name__}, expected dict[str, float]"
    metrics = {}
    for key, value in out.items():
        try:
            metrics[str(key)] = float(value)
        except (TypeError, ValueError) as exc:
            return {}, f"custom metric code returned a non-number for {key!r} ({_one_line(exc)})"
    return metrics, ""
