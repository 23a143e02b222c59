"""Start one training run, enforce its time budget, stop its whole process tree.

The command runs in a new session (so the terminal's Ctrl+C reaches only the
runner) with stdout+stderr appended to run.log: no pipe, no reader thread. The
runner blocks on a pidfd with poll() until the child exits or the deadline
passes; no sleep loop. Stopping and sweeping are watchdog's job.
"""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Optional

from ..core.fsutil import read_tail
from . import watchdog

TAIL_BYTES = 4096  # last_line reads no more than this, however large the log
TICK_S = 1.0  # live line refresh period
_MAX_STEP_S = 3600.0  # poll() takes an int of milliseconds: stay far from its limit
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
_CTRL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


class LaunchResult:
    """How a training command ended. A plain class: a dataclass costs ~1 ms at every start-up."""

    def __init__(
        self,
        exit_code: int | None,
        timed_out: bool,
        interrupted: bool,
        started_at: float,
        wall_s: float,
        survivors: list[dict] | None = None,
        leaked: list[dict] | None = None,
        last_line: str = "",
    ):
        self.exit_code = exit_code  # None when killed by us
        self.timed_out = timed_out
        self.interrupted = interrupted  # Ctrl+C, or SIGTERM to the runner
        self.started_at = started_at  # time.time() just before Popen
        self.wall_s = wall_s  # until the command exited, or until its tree was stopped
        self.survivors = survivors or []  # alive after kill + sweep -> status "unclean"
        self.leaked = leaked or []  # left running by a command that exited; swept
        self.last_line = last_line  # last non-empty line of the log
        self.budget_s: Optional[float] = None  # the time budget it ran under (set by the engine)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({vars(self)!r})"


def last_line(log_path: Path) -> str:
    """The last non-empty line of the log's tail; progress bars joined by \\r count as lines."""
    text = read_tail(log_path, TAIL_BYTES).decode("utf-8", "replace")
    for line in reversed(re.split(r"[\r\n]", _ANSI.sub("", text))):
        line = _CTRL.sub("", line).strip()
        if line:
            return line
    return ""


class _LiveLine:
    """One line on stderr, rewritten in place with \\r, for a person watching."""

    def __init__(self, log_path: Path, budget_s: float, t0: float):
        self.log_path, self.budget_s, self.t0 = log_path, budget_s, t0

    def show(self) -> None:
        try:
            width = os.get_terminal_size(sys.stderr.fileno()).columns
        except (OSError, ValueError, AttributeError):
            width = 0
        width = width or 80  # a terminal that reports no size (some ptys, CI consoles)
        text = f"{time.monotonic() - self.t0:.0f}/{self.budget_s:g}s | {last_line(self.log_path)}"
        sys.stderr.write("\r\x1b[K" + text[: max(10, width - 1)])  # never wrap: \r could not undo it
        sys.stderr.flush()

    @staticmethod
    def clear() -> None:
        sys.stderr.write("\r\x1b[K")
        sys.stderr.flush()


def _wait(proc: subprocess.Popen, deadline: float, tick: Optional[Callable[[], None]]) -> tuple:
    """Block until proc exits or the deadline passes; returns (exited, reaped).

    With a pidfd the child is left unreaped, so its PID (and group id) stay ours
    while the sweep runs; the fallback Popen.wait reaps it.
    """
    fd = None
    if hasattr(os, "pidfd_open"):
        try:
            fd = os.pidfd_open(proc.pid)
        except OSError:
            fd = None
    poller = select.poll()
    if fd is not None:
        poller.register(fd, select.POLLIN)
    try:
        if tick:
            tick()
        while True:
            left = deadline - time.monotonic()
            step = max(0.0, min(left, TICK_S if tick else _MAX_STEP_S))
            if fd is not None:
                if poller.poll(int(step * 1000 + 0.999)):  # rounded up: never wake early and spin
                    return True, False
            else:
                try:
                    proc.wait(step)
                    return True, True
                except subprocess.TimeoutExpired:
                    pass
            if time.monotonic() >= deadline:
                return False, False
            if tick:
                tick()
    finally:
        if fd is not None:
            os.close(fd)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def run_training(
    cmd: list[str],
    cwd: Path,
    env: dict[str, str],
    log_path: Path,
    budget_s: float,
    grace_s: float,
    marker: tuple[str, str],
    live: bool,
    pass_fds: tuple = (),
    meanwhile: Optional[Callable[[], None]] = None,
) -> LaunchResult:
    """Start cmd in a NEW SESSION (start_new_session=True) with stdout+stderr to log_path,
    wait for it without polling sleeps until budget_s elapses, then stop the whole tree.
    `meanwhile`: called once the command has started, before the wait (work that need not
    be paid for after training); the deadline runs from the start all the same.

    A second Ctrl+C while the tree is being stopped SIGKILLs what was found and
    re-raises KeyboardInterrupt.
    """
    env = dict(env)
    env[marker[0]] = marker[1]  # the sweep depends on it: never launch without it
    live_line = _LiveLine(Path(log_path), budget_s, time.monotonic()) if live else None
    prev_term = _sigterm_stops_the_run()
    try:
        started_at = time.time()
        t0 = time.monotonic()
        proc = _start(cmd, cwd, env, log_path, pass_fds)
        if live_line:
            live_line.t0 = t0
        interrupted, exited, reaped = _wait_or_interrupt(proc, t0 + budget_s, live_line, meanwhile)
        wall_s = time.monotonic() - t0
        if exited:
            leaked, survivors, exit_code = _stop_leftovers(proc, reaped, marker, grace_s)
        else:
            leaked, survivors, exit_code = [], _stop_unfinished(proc, marker, grace_s), None
            wall_s = time.monotonic() - t0
        return LaunchResult(
            exit_code=exit_code,
            timed_out=not exited and not interrupted,
            interrupted=interrupted,
            started_at=started_at,
            wall_s=wall_s,
            survivors=survivors,
            leaked=leaked,
            last_line=last_line(Path(log_path)),
        )
    finally:
        _restore_sigterm(prev_term)


def _sigterm_stops_the_run():
    """SIGTERM to the runner (kill, systemd, a CI cancel) stops the run like Ctrl+C does; the previous handler."""
    try:
        return signal.signal(signal.SIGTERM, _raise_interrupt)
    except ValueError:  # not the main thread: signals cannot be handled here
        return _raise_interrupt


def _restore_sigterm(prev_term) -> None:
    if prev_term is not _raise_interrupt:
        signal.signal(signal.SIGTERM, prev_term if prev_term is not None else signal.SIG_DFL)


def _start(cmd: list[str], cwd: Path, env: dict[str, str], log_path: Path, pass_fds: tuple) -> subprocess.Popen:
    """The command in a new session, stdout and stderr appended to the log, stdin closed."""
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            cmd,
            cwd=str(cwd),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            pass_fds=pass_fds,  # the evaluator's result pipe
        )


def _wait_or_interrupt(proc: subprocess.Popen, deadline: float, live_line, meanwhile) -> tuple[bool, bool, bool]:
    """(interrupted, exited, reaped): wait until the command exits, the deadline passes or Ctrl+C comes."""
    try:
        if meanwhile:
            try:
                meanwhile()
            except Exception:  # noqa: BLE001 -- never at the cost of watching the run: what failed here
                pass  # fails again where its result is needed, and is reported there
        exited, reaped = _wait(proc, deadline, live_line.show if live_line else None)
        return False, exited, reaped
    except KeyboardInterrupt:
        return True, False, False
    finally:
        if live_line:
            live_line.clear()


def _stop_leftovers(proc: subprocess.Popen, reaped: bool, marker: tuple[str, str], grace_s: float):
    """(leaked, survivors, exit code) after the command exited on its own.

    A command that exited may have left children (a data-loader worker, a server): they are
    stopped the same way. Its zombie keeps its group id ours."""
    if not reaped and watchdog.nothing_left_of(proc.pid):  # no scan of every process (~3 ms)
        return [], [], proc.wait()
    leaked, survivors = watchdog.stop_processes(None if reaped else proc.pid, marker, grace_s)
    return leaked, survivors, proc.wait()


def _stop_unfinished(proc: subprocess.Popen, marker: tuple[str, str], grace_s: float) -> list:
    """Stop the tree of a command over its budget or interrupted; the processes that survived."""
    survivors = watchdog.stop_tree(proc.pid, marker, grace_s)
    if not any(s["pid"] == proc.pid for s in survivors):
        proc.wait()  # reap; it is dead
    return survivors
