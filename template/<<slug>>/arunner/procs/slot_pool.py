"""Run a wave of prepared candidates at once, one per free device slot, each under its own watchdog.

The calling thread hands out slots in candidate order (a candidate waits until a
slot is free: never two on one device) and starts one thread per candidate;
each thread runs the launcher, which blocks on its child without polling. A
wave of one runs in the calling thread with the live line: exactly a single
run. Ctrl+C (or SIGTERM) stops every running candidate and starts no new one.
Judging, the ledger and the best are the caller's job.
"""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Callable, NamedTuple, Optional, Protocol

from . import launch, watchdog
from .slots import Lease, Slot, SlotPool

JOIN_TICK_S = 0.5  # how often an interrupted wave re-sweeps candidates that were just starting


class SlotJob(NamedTuple):
    name: str  # the run id (e.g. r0007): names the thread and the output line
    cmd: list[str]
    cwd: Path
    env: dict[str, str]
    log_path: Path
    budget_s: float
    grace_s: float
    marker: tuple[str, str]  # unique per candidate: the interrupt sweep finds its processes by it


class Outcome:
    """What became of one job; filled in by the thread that ran it (a plain class: no dataclass cost at start-up)."""

    def __init__(self, candidate: SlotJob):
        self.candidate = candidate
        self.slot: Optional[Slot] = None  # None: it never started (Ctrl+C came first); it stays queued
        self.result: Optional[launch.LaunchResult] = None
        self.error: Optional[BaseException] = None  # the launcher raised (a bug or UserError)
        # Set by the worker when it is done. Not Thread.is_alive(): a join() cut short by Ctrl+C can
        # mark a running thread as stopped (CPython 3.11), and its candidate would never be cancelled.
        self.done = threading.Event()


class Launcher(Protocol):
    def run(self, cand: SlotJob, env: dict[str, str], live: bool) -> launch.LaunchResult: ...

    def cancel(self, cand: SlotJob, force: bool = False) -> None: ...


class LocalLauncher:
    """Today's launch: the command on this machine under run_training's watchdog; `meanwhile`
    (optional) is called in each run once its command has started."""

    def __init__(self, meanwhile: Optional[Callable[[], None]] = None):
        self.meanwhile = meanwhile

    def run(self, cand: SlotJob, env: dict[str, str], live: bool) -> launch.LaunchResult:
        return launch.run_training(
            cand.cmd,
            cand.cwd,
            env,
            cand.log_path,
            cand.budget_s,
            cand.grace_s,
            cand.marker,
            live,
            meanwhile=self.meanwhile,
        )

    def cancel(self, cand: SlotJob, force: bool = False) -> None:
        # From another thread: stop its marked processes; its own run_training then sees the
        # exit, sweeps what is left and returns. force: SIGKILL without grace.
        watchdog.stop_processes(None, cand.marker, 0.0 if force else cand.grace_s)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def run_jobs(
    candidates: list[SlotJob], pool: SlotPool, launcher: Optional[Launcher] = None, live: bool = False
) -> list[Outcome]:
    """Run every candidate on a slot of `pool`; one Outcome per candidate, in the given order.

    On Ctrl+C (or SIGTERM) every running candidate is stopped and reported with
    interrupted=True and the ones not started yet come back with slot None, as a
    single run returns an interrupted result; a second Ctrl+C while stopping kills
    without grace and propagates.
    """
    launcher = launcher or LocalLauncher()
    outcomes = [Outcome(c) for c in candidates]
    if len(candidates) == 1:  # in this thread, so Ctrl+C and the live line behave exactly as in a single run
        lease = pool.acquire()
        if lease is not None:
            outcomes[0].slot = lease.slot
            try:
                outcomes[0].result = launcher.run(candidates[0], _env(candidates[0], lease), live)
            finally:
                lease.release()
        return outcomes
    started: list[tuple[Outcome, threading.Thread, Lease]] = []
    try:
        prev_term = signal.signal(signal.SIGTERM, _interrupt)
    except ValueError:  # not the main thread
        prev_term = None
    try:
        for outcome in outcomes:
            lease = pool.acquire()  # blocks until a slot is free; interruptible by Ctrl+C
            if lease is None:
                break
            outcome.slot = lease.slot
            thread = threading.Thread(
                target=_worker, args=(outcome, lease, launcher), name=f"wave-{outcome.candidate.name}", daemon=True
            )
            started.append((outcome, thread, lease))
            thread.start()
        for outcome, _, _ in started:
            while not outcome.done.wait(JOIN_TICK_S):
                pass
    except KeyboardInterrupt:
        pool.stop()
        _stop_all(started, launcher)
    finally:
        if prev_term is not None:
            signal.signal(signal.SIGTERM, prev_term)
    return outcomes


def _env(cand: SlotJob, lease: Lease) -> dict[str, str]:
    """The slot's devices, and AR_DEADLINE from the moment it starts (it may have waited for a slot)."""
    return {**cand.env, **lease.env(), "AR_DEADLINE": f"{time.time() + cand.budget_s:.3f}"}


def _worker(outcome: Outcome, lease: Lease, launcher: Launcher) -> None:
    cand = outcome.candidate
    try:
        outcome.result = launcher.run(cand, _env(cand, lease), False)
    except BaseException as exc:  # reported to the caller, never lost in a thread
        outcome.error = exc
    finally:
        lease.release()
        outcome.done.set()


def _stop_all(started: list[tuple[Outcome, threading.Thread, Lease]], launcher: Launcher) -> None:
    """Cancel every started candidate until its thread returns; a second Ctrl+C kills without grace."""
    for outcome, thread, lease in started:
        if thread.ident is None:  # interrupted between its lease and its start: it never ran
            lease.release()
            outcome.slot = None
    started = [item for item in started if item[0].slot is not None]
    running = {o.candidate.name for o, _, _ in started if not o.done.is_set()}
    try:
        while any(not o.done.is_set() for o, _, _ in started):
            for o, _, _ in started:
                if not o.done.is_set():
                    launcher.cancel(o.candidate)  # again each tick: one may have been between lease and start
            for o, _, _ in started:
                o.done.wait(JOIN_TICK_S)
    except KeyboardInterrupt:
        for o, _, _ in started:
            launcher.cancel(o.candidate, force=True)
        for o, _, _ in started:
            o.done.wait(JOIN_TICK_S)
        raise
    finally:
        _mark_interrupted([o for o, _, _ in started], running)


def _mark_interrupted(started: list[Outcome], running: set[str]) -> None:
    for o in started:
        r = o.result
        if o.candidate.name in running and r is not None and not r.interrupted and r.exit_code != 0:
            # stopped by us, not by itself: an interrupted run, whatever the signal made it return
            r.interrupted, r.timed_out, r.exit_code = True, False, None
