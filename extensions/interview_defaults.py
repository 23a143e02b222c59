"""Jinja globals `ar_detected(conf, module="")` and `ar_show_answers(conf)`: the interview's defaults.

The logic lives in defaults.py (a plain module, so its cache is one whatever
name Copier loads this file under).
"""

from __future__ import annotations

import defaults
from jinja2.ext import Extension


class Detection(Extension):
    def __init__(self, environment):
        super().__init__(environment)
        environment.globals["ar_detected"] = defaults.detected
        environment.globals["ar_show_answers"] = defaults.ar_show_answers
