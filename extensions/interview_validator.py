"""Jinja global `ar_check`: the interview's validator for every answer key."""

from __future__ import annotations

import sys

import answer_rules
import defaults
import hostpaths
import preflight
from jinja2.ext import Extension


def ar_check(key, value, conf, **context) -> str:
    root = hostpaths.host_root(conf)
    if root is not None and not hostpaths.is_project_root(root):
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
    if reason:
        return f"{key} {reason}"
    if key == "cli_args" and context.get("entry_pattern") == "argparse-cli":
        _note_unknown(conf, context.get("entry_main_module", ""), context.get("cli_style", "space"), value)
    if key == "metric_backend":
        preflight.wandb_login_note(root, value, conf)
    return ""


_noted: set = set()  # validators run on every render: each note is printed once


def _note_unknown(conf, module: str, style: str, args) -> None:
    unknown = defaults.unknown_overrides(conf, module, style, args)
    line = (
        f"note: CLI_OVERRIDES {', '.join(map(repr, unknown))} not accepted by {module or 'the entry point'} "
        "as far as detection can tell; the run will say so if it is really unknown"
    )
    if unknown and line not in _noted:
        _noted.add(line)
        print(line, file=sys.stderr)


class AnswerCheck(Extension):
    def __init__(self, environment):
        super().__init__(environment)
        environment.globals["ar_check"] = ar_check
