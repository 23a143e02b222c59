"""Only a person changes the rules, and every change is on record.

A command that weakens a check (`protect --accept`, `session --integrity`,
`session --strict`, a smaller `session --margin`) runs only when a person could
be typing it: stdin and stdout are a terminal, and the process is not inside a
run. Inside a run means: the runner's mark is in this process's environment, or
an ancestor is a process of a run (its environment holds a run marker, or it is
`ar.py run` itself). The runner sets the mark for every training and evaluator
process; the ancestor walk catches a child that scrubbed its environment.

A terminal can be faked (a pseudo-terminal), so every rule change is recorded
in `.ar-rules.jsonl` (when, what, before and after, from a terminal or not, the
parent command) and shown by `status` and `report`: a person reads them in the
morning. The rules in force (integrity mode, strict, margin) are also recorded
in the protected-file manifest, so an edit of `.ar-session.json` blocks the run.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
from pathlib import Path

from ..core.errors import UserError
from ..core.layout import LOCK, RULES_LOG

RUN_ENV = "AR_INSIDE_RUN"  # set by the runner in every training and evaluator process
RUN_MARKERS = ("AR_RUN_TOKEN", "AR_EVAL_TOKEN")  # the watchdog's markers: a process of a run carries one
MAX_ANCESTORS = 64  # the parent chain walked at most this far
SHOWN_CHANGES = 3  # `status` shows the latest rule changes, this many


# ---------------------------------------------------------------- who is asking


def _ancestors() -> list[int]:
    """Parent, grandparent, ... up to init (Linux /proc; elsewhere only the parent)."""
    out, pid = [], os.getppid()
    while pid > 1 and len(out) < MAX_ANCESTORS:
        out.append(pid)
        try:
            with open(f"/proc/{pid}/stat", "rb") as fh:
                data = fh.read()
            pid = int(data[data.rindex(b")") + 2 :].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return out


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError:
        return b""


def _lock_holder(expr_dir: Path) -> int | None:
    """The pid of the `ar.py run` holding this experiment's lock, or None when no run holds it."""
    path = Path(expr_dir) / LOCK
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None  # nobody holds it
    except BlockingIOError:
        try:
            return int(os.pread(fd, 32, 0).decode().strip() or 0) or None
        except ValueError:
            return None
    finally:
        os.close(fd)


def inside_run(expr_dir: Path) -> str:
    """Why this process is part of a run ("" when it is not)."""
    if os.environ.get(RUN_ENV):
        return f"{RUN_ENV} is set"
    holder = _lock_holder(expr_dir)
    for pid in _ancestors():
        if holder and pid == holder:
            return f"it was started by the running `ar.py run` (pid {pid})"
        env = b"\0" + _read(f"/proc/{pid}/environ")
        if any(b"\0" + m.encode() + b"=" in env for m in (*RUN_MARKERS, RUN_ENV)):
            return f"its ancestor pid {pid} is a process of a run"
        argv = _read(f"/proc/{pid}/cmdline").split(b"\0")
        if any(a.endswith(b"ar.py") for a in argv) and b"run" in argv:
            return f"its ancestor pid {pid} is `ar.py run`"
    return ""


def at_terminal() -> bool:
    try:
        return sys.stdin.isatty() and sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


def require_person(expr_dir: Path, command: str, why: str) -> None:
    """Refuse `command` unless a person could be typing it; one line saying so and why."""
    inside = inside_run(expr_dir)
    if inside:
        reason = f"it was started from inside a run ({inside})"
    elif not at_terminal():
        reason = "stdin and stdout are not a terminal"
    else:
        return
    raise UserError(
        f"{command}: only a person at a terminal may run this, because {why}; refused: {reason}. "
        "An agent stops here and reports to the person"
    )


# ---------------------------------------------------------------- the record of rule changes


def _parent_command() -> str:
    argv = _read(f"/proc/{os.getppid()}/cmdline").rstrip(b"\0").replace(b"\0", b" ")
    return argv.decode(errors="replace")[:160]


def record_change(expr_dir: Path, what: str, before, after) -> None:
    """Append one rule change to .ar-rules.jsonl (never rewritten)."""
    import datetime as dt  # here: a rule change is rare, every command imports this module

    entry = {
        "at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "what": what,
        "before": before,
        "after": after,
        "terminal": at_terminal(),
        "inside_run": inside_run(expr_dir) or None,
        "parent": _parent_command(),
    }
    with open(Path(expr_dir) / RULES_LOG, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(entry, sort_keys=True) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def changes(expr_dir: Path) -> list[dict]:
    """Every recorded rule change, oldest first (unreadable lines are shown as such, not dropped)."""
    path = Path(expr_dir) / RULES_LOG
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    out = []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            entry = None
        out.append(entry if isinstance(entry, dict) else {"at": "?", "what": f"unreadable line {line[:60]!r}"})
    return out


def describe_change(entry: dict) -> str:
    where = "from a terminal" if entry.get("terminal") else "NOT from a terminal"
    if entry.get("inside_run"):
        where += ", inside a run"
    change = f"{entry.get('before')!r} -> {entry.get('after')!r}" if "after" in entry else ""
    return f"{entry.get('at', '?')} {entry.get('what', '?')} {change} ({where})".replace("  ", " ")


def status_lines(expr_dir: Path) -> list[str]:
    """For `status`: how many rule changes, the latest ones."""
    entries = changes(expr_dir)
    if not entries:
        return ["rule changes: none"]
    shown = [f"  {describe_change(e)}" for e in entries[-SHOWN_CHANGES:]]
    return [f"rule changes: {len(entries)} (latest last)", *shown]


# ---------------------------------------------------------------- the rules in force


def rules_of(session) -> dict:
    """What the manifest records of the session: the settings that decide how strict the checks are."""
    return {"integrity": session.integrity, "strict": bool(session.strict), "margin": session.margin}


def weakens(before: dict, after: dict) -> list[str]:
    """The names of the rules `after` changes from `before` in a way that needs a person."""
    out = []
    if before.get("integrity") != after.get("integrity"):
        out.append("integrity")
    if after.get("strict") and not before.get("strict"):
        out.append("strict")
    from .noise import DEFAULT_K

    b, a = before.get("margin"), after.get("margin")
    if a is not None and a < (DEFAULT_K if b is None else b):  # a smaller margin lets more noise through
        out.append("margin")
    return out
