"""Jinja global `ar_direction`: min or max, guessed from the metric's name."""

from __future__ import annotations

import re

from jinja2.ext import Extension

MINIMISE = (
    "loss",
    "error",
    "err",
    "perplexity",
    "ppl",
    "bpb",
    "wer",
    "cer",
    "mse",
    "mae",
    "rmse",
    "nll",
    "time",
    "latency",
)
MAXIMISE = (
    "acc",
    "accuracy",
    "f1",
    "bleu",
    "auc",
    "r2",
    "reward",
    "score",
    "precision",
    "recall",
    "map",
    "top1",
    "top5",
    "rouge",
)


def ar_direction(metric: str) -> str:
    words = re.split(r"[^a-z0-9]+", str(metric).lower())
    for word in reversed(words):  # the last word is the most specific: eval/acc_loss is a loss
        if word in MINIMISE or any(word.endswith(w) for w in ("loss", "error")):
            return "min"
        if word in MAXIMISE:
            return "max"
    return "min"


class DirectionGuess(Extension):
    def __init__(self, environment):
        super().__init__(environment)
        environment.globals["ar_direction"] = ar_direction
