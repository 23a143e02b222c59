"""Jinja global `ar_slug`: today's YYMMDD plus a kebab of the topic or goal."""

from __future__ import annotations

import datetime as dt
import re

import hostpaths
from jinja2.ext import Extension

STOPWORDS = {"a", "an", "the", "of", "for", "to", "and", "or", "in", "on", "with", "by", "at", "from", "into", "is"}
MAX_KEBAB = 40


def kebab(text: str) -> str:
    words = [w for w in re.findall(r"[a-z0-9]+", text.lower().encode("ascii", "ignore").decode()) if w not in STOPWORDS]
    out = ""
    for word in words:
        candidate = f"{out}-{word}" if out else word
        if len(candidate) > MAX_KEBAB:
            break
        out = candidate
    return out or (words[0][:MAX_KEBAB] if words else "experiment")


def ar_slug(text: str, conf=None) -> str:
    """Today's YYMMDD-kebab, made free (`-2`, `-3`, ...) when that folder already exists."""
    slug = f"{dt.date.today():%y%m%d}-{kebab(str(text or ''))}"
    if conf is None:
        return slug
    dst = hostpaths.destination(conf)
    if hostpaths.is_scratch(dst) or hostpaths.operation() == "update":
        return slug
    free, n = slug, 2
    while (dst / free).exists():
        suffix = f"-{n}"
        head, kebab_part = slug.split("-", 1)
        free = f"{head}-{kebab_part[: MAX_KEBAB - len(suffix)].rstrip('-')}{suffix}"
        n += 1
    return free


class SlugDefault(Extension):
    def __init__(self, environment):
        super().__init__(environment)
        environment.globals["ar_slug"] = ar_slug
