"""Jinja filters `pyliteral` (an answer as Python source for train.py) and `numbers`.

YAML 1.1 reads `3e-4` as a string, so number-looking strings become numbers
(CLI_OVERRIDES must hold 0.0003, not '3e-4'; experiment.json and program.md
show 0.0003 too); Hydra `key=value` strings stay.
"""

from __future__ import annotations

import re

from jinja2.ext import Extension

NUMBER_RE = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


def as_number(text: str) -> int | float | None:
    """The number a number-looking string spells (`3e-4` -> 0.0003, `12` -> 12), else None."""
    if not NUMBER_RE.match(text):
        return None
    return int(text) if re.fullmatch(r"[-+]?\d+", text) else float(text)


def as_numbers(value):
    if isinstance(value, str) and as_number(value.strip()) is not None:
        return as_number(value.strip())
    if isinstance(value, dict):
        return {k: as_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_numbers(v) for v in value]
    return value


def pyliteral(value, indent: int = 4) -> str:
    value = as_numbers(value)
    if isinstance(value, dict) and value:
        items = "".join(f"{' ' * indent}{k!r}: {v!r},\n" for k, v in value.items())
        return "{\n" + items + "}"
    if isinstance(value, list) and value:
        items = "".join(f"{' ' * indent}{v!r},\n" for v in value)
        return "[\n" + items + "]"
    return repr(value)


class PythonLiteral(Extension):
    def __init__(self, environment):
        super().__init__(environment)
        environment.filters["pyliteral"] = pyliteral
        environment.filters["numbers"] = as_numbers
