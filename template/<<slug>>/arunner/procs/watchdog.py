"""Find and stop every process of one training run.

A run's processes are found two ways, because neither alone is enough (measured:
torchrun workers and wandb-core run in their own sessions, and a parent killed
first orphans its children to init):
  * ancestry of the root, plus members of the root's process group and session;
  * the environment marker KEY=VALUE the runner put into the training command's
    environment, which every descendant inherits, even across setsid().
Stopping is SIGTERM to all (TensorBoard's SummaryWriter flushes only on close, so
a graceful stop must come first), a grace period, SIGKILL to what is left, and a
final sweep for anything forked meanwhile.

On Linux the process table is read from /proc in one pass (no dependency, and
faster than going through psutil); elsewhere psutil is used when importable.
Where pidfds exist (Linux 5.3+), signals go through them, so a PID reused by an
unrelated process during the grace period is never hit, and exits are awaited
with poll() instead of a sleep loop.
"""

from __future__ import annotations

import os
import select
import signal
import time
from collections.abc import Iterable
from typing import Callable, Optional

psutil = None  # imported on first use: only off Linux (or in tests), and it costs 25 ms


def _ps():
    """psutil when importable, else None (the /proc reader needs nothing)."""
    global psutil
    if psutil is None:
        try:
            import psutil as module
        except ImportError:
            module = False
        psutil = module
    return psutil or None


Marker = tuple[str, str]
KillFn = Callable[[int, int], None]

_USE_PROC = os.path.isdir("/proc/self")  # tests flip this to exercise the psutil path
_KTHREAD = 0x00200000  # PF_KTHREAD in /proc/<pid>/stat flags: kernel threads have no environment
_POLL_S = 0.02  # liveness polling interval where no pidfd is available
_KILL_WAIT_S = 1.0  # after SIGKILL: it takes effect at once, so a stop costs at most grace + 1 s
_KILL_ROUNDS = 5  # SIGKILL passes at most, each catching what forked since the last scan
SWEEP_GRACE_S = 2.0  # SIGTERM -> SIGKILL for a sweep by marker alone (no launcher to wait for)
_CMDLINE_CAP = 200  # result.json stays small


# ---------------------------------------------------------------- process table


def _read(path: str) -> bytes:
    with open(path, "rb", buffering=0) as fh:
        return fh.read()


def _proc_stat(pid: int) -> Optional[tuple[str, int, int, int, int, int]]:
    """(state, ppid, pgid, sid, flags, starttime) of pid, or None when it is gone."""
    try:
        data = _read(f"/proc/{pid}/stat")
    except OSError:
        return None
    # comm (field 2) may contain spaces and parentheses: split after the last ')'
    f = data[data.rindex(b")") + 2 :].split()
    return f[0].decode(), int(f[1]), int(f[2]), int(f[3]), int(f[6]), int(f[19])


def _table() -> dict[int, tuple]:
    """pid -> (ppid, pgid, sid, may_have_environ) for every live, non-zombie process."""
    out: dict[int, tuple] = {}
    if _USE_PROC:
        for name in os.listdir("/proc"):
            if name.isdigit():
                st = _proc_stat(int(name))
                if st and st[0] not in "ZX":
                    out[int(name)] = (st[1], st[2], st[3], not st[4] & _KTHREAD)
    elif _ps() is not None:
        for p in psutil.process_iter(["ppid", "status"]):
            if p.info["status"] in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD):
                continue
            out[p.pid] = (p.info["ppid"] or 0, _or_none(os.getpgid, p.pid), _or_none(os.getsid, p.pid), True)
    return out


def _or_none(fn, pid):
    try:
        return fn(pid)
    except OSError:  # gone, or (macOS) another session's id is not ours to read
        return None


def _has_marker(pid: int, marker: Marker) -> bool:
    """True when pid's environment holds KEY=VALUE; unreadable processes (other users) are skipped."""
    if _USE_PROC:
        try:
            env = _read(f"/proc/{pid}/environ")
        except OSError:
            return False
        return b"\0" + f"{marker[0]}={marker[1]}".encode() + b"\0" in b"\0" + env + b"\0"
    try:
        return psutil.Process(pid).environ().get(marker[0]) == marker[1]
    except (psutil.Error, OSError):
        return False


def _identity(pid: int) -> Optional[int]:
    """A start-time token that changes when the PID is reused; None when gone or a zombie."""
    if _USE_PROC:
        st = _proc_stat(pid)
        return st[5] if st and st[0] not in "ZX" else None
    if _ps() is None:
        return None
    try:
        p = psutil.Process(pid)
        return None if p.status() == psutil.STATUS_ZOMBIE else int(p.create_time() * 1000)
    except psutil.Error:
        return None


def _describe(pid: int) -> dict:
    name, cmd = "?", ""
    try:
        if _USE_PROC:
            name = _read(f"/proc/{pid}/comm").decode(errors="replace").strip()
            cmd = _read(f"/proc/{pid}/cmdline").rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace")
        elif _ps() is not None:
            p = psutil.Process(pid)
            name, cmd = p.name(), " ".join(p.cmdline())
    except Exception:  # gone or unreadable (OSError, psutil.Error): keep what we have
        pass
    return {"pid": pid, "name": name, "cmdline": cmd[:_CMDLINE_CAP]}


def find_marked(marker: tuple[str, str]) -> list[int]:
    """PIDs of live processes whose environment holds marker KEY=VALUE (never this process)."""
    me = os.getpid()
    return sorted(pid for pid, row in _table().items() if pid != me and row[3] and _has_marker(pid, marker))


def collect_tree(root_pid: int, marker: tuple[str, str]) -> set[int]:
    """Live descendants of root_pid (itself included), members of its process group and
    session, and every process carrying the marker.

    root_pid must be an unreaped child of ours (alive or a zombie): only then can its
    PID, and so its group and session ids, not belong to someone else.
    """
    table = _table()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found = {pid for pid, (_, pgid, sid, _) in table.items() if root_pid in (pgid, sid)}
    stack = [root_pid] + list(found)
    if root_pid in table:
        found.add(root_pid)
    while stack:
        for child in children.get(stack.pop(), ()):
            if child not in found:
                found.add(child)
                stack.append(child)
    found |= {pid for pid, row in table.items() if pid not in found and row[3] and _has_marker(pid, marker)}
    found.discard(os.getpid())  # never ourselves, whatever our environment says
    return found


# ---------------------------------------------------------------- handles


class _Proc:
    """One process we decided to stop, pinned against PID reuse."""

    __slots__ = ("pid", "ident", "fd", "pgid", "info", "gone")

    def __init__(self, pid: int, ident: int, fd: Optional[int]):
        self.pid, self.ident, self.fd = pid, ident, fd
        try:
            self.pgid: Optional[int] = os.getpgid(pid)
        except OSError:
            self.pgid = None
        self.info = _describe(pid)
        self.gone = False

    @classmethod
    def open(cls, pid: int) -> Optional[_Proc]:
        ident = _identity(pid)
        if ident is None:
            return None
        fd = None
        if hasattr(os, "pidfd_open"):
            try:
                fd = os.pidfd_open(pid)
            except ProcessLookupError:
                return None
            except OSError:
                fd = None
            # the PID could have been reused between the scan and pidfd_open: check again
            if fd is not None and _identity(pid) != ident:
                os.close(fd)
                return None
        return cls(pid, ident, fd)

    def alive(self) -> bool:
        if not self.gone:
            if self.fd is not None:
                poller = select.poll()
                poller.register(self.fd, select.POLLIN)
                self.gone = bool(poller.poll(0))  # a pidfd turns readable when the process exits
            else:
                self.gone = _identity(self.pid) != self.ident
        return not self.gone

    def send(self, sig: int, kill: Optional[KillFn]) -> None:
        if self.gone:
            return
        try:
            if kill is not None:
                kill(self.pid, sig)
            elif self.fd is not None:
                signal.pidfd_send_signal(self.fd, sig)
            elif _identity(self.pid) == self.ident:
                os.kill(self.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _wait_gone(procs: Iterable[_Proc], timeout: float) -> None:
    """Return as soon as every process has exited, or when timeout passes."""
    deadline = time.monotonic() + timeout
    alive = [p for p in procs if p.alive()]
    while alive:
        left = deadline - time.monotonic()
        if left <= 0:
            return
        with_fd = [p for p in alive if p.fd is not None]
        if with_fd:
            poller = select.poll()
            for p in with_fd:
                poller.register(p.fd, select.POLLIN)
            step = left if len(with_fd) == len(alive) else min(left, _POLL_S)
            poller.poll(max(1, int(step * 1000 + 0.999)))
        else:
            time.sleep(min(left, _POLL_S))
        alive = [p for p in alive if p.alive()]


def _signal_group(root_pid: Optional[int], sig: int, kill: Optional[KillFn]) -> bool:
    """Signal the root's process group (the root leads its own session and group)."""
    if root_pid is None:
        return False
    try:
        (kill or os.kill)(-root_pid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


# ---------------------------------------------------------------- stopping


def stop_processes(
    root_pid: Optional[int], marker: tuple[str, str], grace_s: float, kill: Optional[KillFn] = None
) -> tuple[list[dict], list[dict]]:
    """Stop the tree of root_pid (or, with root_pid None, every marked process).

    Returns (every process found, the survivors), each as {"pid", "name", "cmdline"}.
    A KeyboardInterrupt meanwhile (a second Ctrl+C) SIGKILLs everything found so far
    without waiting, then propagates.
    """
    procs: dict[int, _Proc] = {}

    def gather() -> list[_Proc]:
        pids = collect_tree(root_pid, marker) if root_pid is not None else find_marked(marker)
        new = [p for p in (_Proc.open(pid) for pid in pids if pid not in procs) if p is not None]
        procs.update((p.pid, p) for p in new)
        return new

    try:
        if not gather():
            return [], []  # nothing of the tree exists, so nothing can fork either: the common case
        # One SIGTERM per process: a second one can cut short the very cleanup the first
        # started (torchrun's handler raises again mid-shutdown). The group gets it once.
        group_done = _signal_group(root_pid, signal.SIGTERM, kill)
        for p in procs.values():
            if not (group_done and p.pgid == root_pid):
                p.send(signal.SIGTERM, kill)
        _signal_group(root_pid, signal.SIGCONT, kill)
        for p in procs.values():
            p.send(signal.SIGCONT, kill)  # a stopped process cannot act on SIGTERM
        _wait_gone(procs.values(), grace_s)
        gather()  # children started during the grace period got no SIGTERM: they get SIGKILL now
        kill_deadline = time.monotonic() + _KILL_WAIT_S
        targets = list(procs.values())
        _signal_group(root_pid, signal.SIGKILL, kill)
        for _ in range(_KILL_ROUNDS):
            for p in targets:
                p.send(signal.SIGKILL, kill)
            _wait_gone(procs.values(), max(0.0, kill_deadline - time.monotonic()))
            targets = gather()  # anything forked between our scan and the kill
            if not targets:
                break
        survivors = [p.info for p in procs.values() if p.alive()]
        return [p.info for p in procs.values()], survivors
    except KeyboardInterrupt:
        _signal_group(root_pid, signal.SIGKILL, kill)
        for p in procs.values():
            p.send(signal.SIGKILL, kill)
        raise
    finally:
        for p in procs.values():
            p.close()


def stop_tree(root_pid: int, marker: tuple[str, str], grace_s: float, *, kill: Optional[KillFn] = None) -> list[dict]:
    """SIGTERM the whole tree of root_pid (group, descendants, marked), wait up to grace_s,
    SIGKILL the rest, sweep again; return the survivors as {"pid", "name", "cmdline"}.

    `kill(pid, sig)` replaces os.kill (negative pid = group); tests use it to make one
    process unkillable.
    """
    return stop_processes(root_pid, marker, grace_s, kill)[1]


def sweep(marker: tuple[str, str], grace_s: float = SWEEP_GRACE_S, *, kill: Optional[KillFn] = None) -> list[int]:
    """Stop every process carrying the marker (found by environment only, e.g. after the
    runner itself was killed); return the PIDs that survived (empty: clean)."""
    return [d["pid"] for d in stop_processes(None, marker, grace_s, kill)[1]]


# ---------------------------------------------------------------- orphans (the runner as child subreaper)

PR_SET_CHILD_SUBREAPER = 36  # prctl option (Linux 3.4+)
subreaper_note = ""  # why the runner is not a subreaper ("" when it is); said by integrity in the run's note
_is_subreaper = False  # set by become_subreaper(): only then do a run's orphans come back to this process


def _prctl(option: int, arg: int) -> None:
    """prctl(option, arg, 0, 0, 0) of this process; OSError when the kernel refuses it.

    Called through _ctypes, the C core of ctypes: importing ctypes' Python layer costs every
    run 2-3 ms more. Where that core differs (another Python), through ctypes itself."""
    try:
        import _ctypes

        class Int(_ctypes._SimpleCData):
            _type_ = "i"

        class Function(_ctypes.CFuncPtr):
            _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
            _restype_ = Int

        process = type("Process", (), {"_handle": _ctypes.dlopen(None, 0)})  # what ctypes.CDLL(None) opens
        prctl, get_errno = Function(("prctl", process)), _ctypes.get_errno
    except (ImportError, AttributeError, TypeError, ValueError, OSError):
        import ctypes

        prctl, get_errno = ctypes.CDLL(None, use_errno=True).prctl, ctypes.get_errno
    if prctl(option, arg, 0, 0, 0) != 0:
        raise OSError(get_errno(), "prctl")


def become_subreaper() -> bool:
    """Make orphans of our descendants ours (not init's), so a double-forked daemon can still be swept.

    Linux only (prctl PR_SET_CHILD_SUBREAPER); elsewhere returns False and sets subreaper_note."""
    global subreaper_note, _is_subreaper
    if not os.path.isdir("/proc/self"):
        subreaper_note = "orphans of a run are not collected on this system (no PR_SET_CHILD_SUBREAPER)"
        return False
    try:
        _prctl(PR_SET_CHILD_SUBREAPER, 1)
    except (OSError, AttributeError) as exc:
        subreaper_note = f"orphans of a run are not collected (prctl PR_SET_CHILD_SUBREAPER failed: {exc})"
        return False
    subreaper_note, _is_subreaper = "", True
    return True


def _children() -> list[int] | None:
    """This process's children, zombies included (the kernel's list for our one thread); None when
    unsure: more threads (a child's parent may be any of them, and one that exits hands its children
    to another), or no such file (an older kernel).

    No other child means no other descendant: every live process's parent is alive (an orphan is
    re-parented at once, to us as the subreaper or, outside our tree, to init), so a descendant's
    chain of parents would pass through one of our children."""
    if not _USE_PROC:
        return None
    try:
        tasks = os.listdir("/proc/self/task")
        return [int(pid) for pid in _read(f"/proc/self/task/{tasks[0]}/children").split()] if len(tasks) == 1 else None
    except (OSError, ValueError):
        return None


def _childless() -> bool:
    """True only when this process has no child at all (see _children); False when unsure."""
    return _children() == []


def nothing_left_of(pid: int) -> bool:
    """True when `pid`, an exited child not yet reaped, left no process behind: the runner is the
    subreaper (an orphan of that run comes to it at once) and `pid` is its only child. False when
    unsure, and the caller scans every process. What this cannot see is a process some other
    service started for the run with the run's environment (it is no descendant); the scan finds it
    by its marker, and that scan is skipped here, the common case: a command that exited alone."""
    return _is_subreaper and _children() == [pid]


def sweep_orphans(keep_markers: Iterable[tuple[str, str]] = (), grace_s: float = SWEEP_GRACE_S) -> list[dict]:
    """Stop every descendant of this process except the trees of live runs in `keep_markers`
    (a wave's other candidates); reap them. Returns what was stopped.

    With the runner a subreaper, a daemon that double-forked and scrubbed its environment
    is our child: found here, whatever its marker, session or group."""
    if _childless():  # no child, so no descendant either: nothing to stop, and no scan of every process
        return []
    me = os.getpid()
    table = _table()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    keep = list(keep_markers)
    found: set[int] = set()
    stack = [pid for pid in children.get(me, ()) if not any(_has_marker(pid, m) for m in keep)]
    while stack:
        pid = stack.pop()
        if pid not in found:
            found.add(pid)
            stack += children.get(pid, ())
    procs = [p for p in (_Proc.open(pid) for pid in sorted(found)) if p is not None]
    try:
        for p in procs:
            p.send(signal.SIGTERM, None)
            p.send(signal.SIGCONT, None)
        _wait_gone(procs, grace_s)
        for p in procs:
            p.send(signal.SIGKILL, None)
        _wait_gone(procs, _KILL_WAIT_S)
        stopped = [p.info for p in procs]
    finally:
        for p in procs:
            p.close()
    for p in procs:  # our zombies now: reap them by pid (never waitpid(-1), which could take a Popen's)
        try:
            os.waitpid(p.pid, os.WNOHANG)
        except ChildProcessError:
            pass
    return stopped
