"""Jinja globals `ar_config_keys` and `ar_answer(key)`: experiment.json rendered from the answer table.

The table is the runner's (arunner.answers); experiment.json.jinja loops over
its keys, so a key declared there is rendered, with the same fallback `Config`
uses when the answer is missing or null.
"""

from __future__ import annotations

import copy

from jinja2 import pass_context
from jinja2.ext import Extension
from jinja2.utils import missing
from pyliteral import as_numbers

from arunner.core.answers import ANSWERS, CONFIG_KEYS, INT, NO_VALUE, YAML


@pass_context
def ar_answer(context, key: str):
    """The answer `key` as experiment.json holds it: `absent` when not asked or null, ints as ints."""
    answer = ANSWERS[key]
    value = context.resolve_or_missing(key)
    if value is missing or value is None:
        if answer.absent is not NO_VALUE:
            return copy.deepcopy(answer.absent)
        if value is missing:  # an answer that is always there is not: stop the render naming it
            context.environment.undefined(name=key)._fail_with_undefined_error()
        return None
    if answer.type == INT:
        return int(value)
    if answer.type == YAML:
        return as_numbers(value)  # YAML 1.1 reads 3e-4 as a string: experiment.json holds the number
    return value.strip() if isinstance(value, str) and "\n" not in value else value  # whitespace-only = empty


class AnswerTable(Extension):
    def __init__(self, environment):
        super().__init__(environment)
        environment.globals["ar_config_keys"] = CONFIG_KEYS
        environment.globals["ar_answer"] = ar_answer
