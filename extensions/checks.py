"""Jinja global `ar_check`: the interview's validator for every answer key."""

from __future__ import annotations

import sys
from pathlib import Path

from jinja2.ext import Extension

sys.path.insert(0, str(Path(__file__).parent))
import answer_rules  # noqa: E402
import hostpaths  # noqa: E402


def ar_check(key, value, conf, **context) -> str:
    root = hostpaths.host_root(conf)
    if root is not None and not (root / "pyproject.toml").is_file():
        root = None
    try:
        value = answer_rules.parse_value(key, value)
    except ValueError as exc:
        return f"{key} {exc}"
    reason = answer_rules.check(
        key,
        value,
        root=root,
        dst=hostpaths.destination(conf),
        creating=hostpaths.operation() != "update",
        **context,
    )
    return f"{key} {reason}" if reason else ""


class AnswerCheck(Extension):
    def __init__(self, environment):
        super().__init__(environment)
        environment.globals["ar_check"] = ar_check
