"""A run log's last Python traceback: the exception it ends with, and its frames with those
inside installed packages and the standard library folded.

Read from the log's tail only (a log may be gigabytes). The exception line is
what Python prints unindented after the frames (`Type: message`), never the
log's last line: a library message with a caret diagram or a shutdown banner
may follow it.
"""

from __future__ import annotations

import re
import sys
from functools import cache
from pathlib import Path

from .fsutil import read_tail

# ---- knobs
TAIL_BYTES = 256 * 1024  # how much of the log's end is searched for the traceback
EXCEPTION_CAP = 160  # characters of `Type: message` quoted in the run's note

# Patterns are kept as text: re compiles and caches each on first use, so a run that did not
# crash never pays for them.
TRACEBACK_RE = r"^Traceback \(most recent call last\):"
FRAME_RE = r'^\s*File "(?P<path>[^"]+)", line (?P<line>\d+)'
# `pkg.module.SomeError: message` or a bare `KeyboardInterrupt`; no spaces in the name part.
EXCEPTION_RE = r"^(?P<type>[A-Za-z_][\w.]*)(?::\s?(?P<msg>.*))?$"
INSTALLED_PARTS = ("site-packages", "dist-packages")
_ANSI = r"\x1b\[[0-9;?]*[ -/]*[@-~]"


@cache
def _stdlib_dirs() -> tuple[str, ...]:
    """The standard library's folders (sysconfig, imported only when a traceback is read: ~10 ms)."""
    import sysconfig

    paths = sysconfig.get_paths()
    dirs = {paths.get("stdlib", ""), paths.get("platstdlib", ""), sys.base_prefix + "/lib"}
    return tuple(d.rstrip("/") + "/" for d in dirs if d)


def log_lines(log: Path) -> list[str]:
    """The log's tail as lines (progress bars joined by \\r count as lines), colour codes removed."""
    text = read_tail(log, TAIL_BYTES).decode("utf-8", errors="replace")
    return re.sub(_ANSI, "", text).replace("\r", "\n").splitlines()


def last_traceback(lines: list[str]) -> list[str]:
    """From the last `Traceback (most recent call last):` to the end, or [] when there is none."""
    starts = [i for i, line in enumerate(lines) if re.match(TRACEBACK_RE, line)]
    return lines[starts[-1] :] if starts else []


def exception_of(region: list[str]) -> str:
    """`Type: message` of a traceback region: the first unindented line after its frames."""
    for line in region[1:]:
        if not line.strip() or line[:1].isspace():
            continue  # a frame, its source line, or a caret line
        m = re.match(EXCEPTION_RE, line.rstrip())
        if m and (m.group("msg") is not None or m.group("type")[:1].isupper()):
            return line.strip()
    return ""


BARE_TYPE_RE = r"(Error|Exception|Interrupt|Exit)$"
BARE_LOOKBACK = 40  # lines searched from the end when the log has no traceback header


def _bare_exception(lines: list[str]) -> str:
    """A syntax error in the launched script prints no `Traceback` header: its last exception line."""
    for line in reversed(lines[-BARE_LOOKBACK:]):
        m = re.match(EXCEPTION_RE, line.rstrip())
        if m and not line[:1].isspace() and re.search(BARE_TYPE_RE, m.group("type")):
            return line.strip()
    return ""


def exception_line(log: Path) -> str:
    """The exception the log's last traceback ends with, trimmed to EXCEPTION_CAP; "" if none."""
    try:
        lines = log_lines(log)
    except OSError:
        return ""
    text = exception_of(last_traceback(lines)) or _bare_exception(lines)
    return text if len(text) <= EXCEPTION_CAP else text[: EXCEPTION_CAP - 3] + "..."


def is_foreign(path: str) -> bool:
    """A frame inside an installed package or the standard library (not the project's code)."""
    if path.startswith("<"):  # <frozen importlib._bootstrap>, <string>
        return True
    if any(f"/{part}/" in path for part in INSTALLED_PARTS):
        return True
    return path.startswith(_stdlib_dirs())


def fold_frames(region: list[str]) -> list[str]:
    """The traceback with each run of foreign frames replaced by one line saying how many."""
    out: list[str] = []
    folded = 0
    in_foreign = False
    for line in region:
        frame = re.match(FRAME_RE, line)
        if frame:
            in_foreign = is_foreign(frame.group("path"))
        elif not line[:1].isspace() or not line.strip():
            in_foreign = False  # the exception line, a chained-exception banner, a blank line
        if in_foreign:
            folded += 1 if frame else 0
            continue
        if folded:
            out.append(f"  ... {folded} frame(s) inside installed packages / the standard library folded")
            folded = 0
        out.append(line)
    if folded:
        out.append(f"  ... {folded} frame(s) inside installed packages / the standard library folded")
    return out
