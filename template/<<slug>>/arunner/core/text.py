"""Trimming free text for one-line outputs (results.tsv cells, notes, the agent's summary)."""

from __future__ import annotations


def one_line(text, cap: int, mark: str = "") -> str:
    """`text` on one line (tabs and line breaks become spaces), at most `cap` characters.

    With `mark` (e.g. "..."), a cut text ends with it and still fits in `cap`.
    """
    text = " ".join(str(text or "").replace("\t", " ").splitlines())
    if len(text) <= cap:
        return text
    return text[: cap - len(mark)] + mark if mark else text[:cap]
