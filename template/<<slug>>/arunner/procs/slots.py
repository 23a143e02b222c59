"""Device slots on one machine, leased machine-wide so two experiments never share a GPU.

A slot is a group of devices one candidate runs on (one GPU, or N for a
`torchrun --nproc-per-node N` runner). Leasing a slot takes an flock on one file
per device in a folder every runner on the machine shares; the kernel drops the
locks when the holder dies, however it dies, so there is nothing to clean up.
Devices are found from CUDA_VISIBLE_DEVICES or `nvidia-smi -L`; torch is never
imported here (it costs seconds and may grab a GPU).
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import threading
import time
from pathlib import Path
from typing import NamedTuple, Optional

from ..core.errors import UserError

LOCK_DIR = "/tmp/autoresearch-devices"  # machine-wide: every experiment of every user leases here
LOCK_DIR_ENV = "AR_DEVICE_LOCK_DIR"  # overrides LOCK_DIR (tests, or machines without a shared /tmp)
NVIDIA_SMI_TIMEOUT_S = 10.0  # a hung driver must not hang the runner
WAIT_MIN_S = 0.05  # first retry when every slot is leased by another process
WAIT_MAX_S = 1.0  # retry period ceiling: a free slot is noticed within this long
_SAFE = r"[^A-Za-z0-9_.-]"  # device ids (indexes, GPU-UUIDs, MIG-...) -> file names


class Slot(NamedTuple):
    index: int
    devices: tuple[str, ...]  # empty: run on whatever the host picks (no device env is set)


def parse_devices(text: str) -> list[str]:
    """'0,1, 2' -> ['0', '1', '2']; duplicates are refused (two slots would share a device)."""
    devices = [d.strip() for d in str(text).split(",") if d.strip()]
    dupes = sorted({d for d in devices if devices.count(d) > 1})
    if dupes:
        raise UserError(f"--devices lists {','.join(dupes)} twice; give each device once, e.g. --devices 0,1,2,3")
    return devices


def detect_devices(environ: Optional[dict] = None) -> list[str]:
    """Visible GPUs: CUDA_VISIBLE_DEVICES when set (empty or -1: none), else `nvidia-smi -L`, else []."""
    environ = os.environ if environ is None else environ
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        devices = parse_devices(visible)
        # CUDA stops at the first invalid entry; -1 is the usual "no GPU" spelling
        if not devices or devices[0].startswith("-"):
            return []
        if any(d.startswith("GPU-") for d in devices):  # UUIDs: lock by index, as every other runner does
            index = {uuid: i for i, uuid in parse_nvidia_smi(_nvidia_smi())}
            devices = [index.get(d, d) for d in devices]
        return devices
    return [i for i, _ in parse_nvidia_smi(_nvidia_smi())]


def _nvidia_smi() -> str:
    smi = shutil.which("nvidia-smi")
    if not smi:
        return ""
    import subprocess  # here: `status` reads the slots and most machines have no nvidia-smi

    try:
        return subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=NVIDIA_SMI_TIMEOUT_S).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def parse_nvidia_smi(text: str) -> list[tuple[str, str]]:
    """(index, UUID) of the 'GPU <n>: ... (UUID: GPU-...)' lines of `nvidia-smi -L` (MIG lines are not slots)."""
    return [
        (m.group(1), m.group(2) or "")
        for m in re.finditer(r"^GPU (\d+):[^\n]*?(?:\(UUID: (GPU-[^)]+)\))?$", text, re.M)
    ]


def make_slots(devices: list[str], per_run: int = 1) -> list[Slot]:
    """Consecutive groups of `per_run` devices; no devices gives one slot with none (today's single run)."""
    if per_run < 1:
        raise UserError(f"--devices-per-run must be 1 or more, got {per_run}")
    if not devices:
        return [Slot(0, ())]
    if per_run > len(devices):
        raise UserError(
            f"--devices-per-run {per_run} needs {per_run} devices but only {len(devices)} are given "
            f"({','.join(devices)}); lower --devices-per-run or list more with --devices"
        )
    count = len(devices) // per_run  # a remainder smaller than one slot stays unused
    return [Slot(i, tuple(devices[i * per_run : (i + 1) * per_run])) for i in range(count)]


def lock_dir() -> Path:
    return Path(os.environ.get(LOCK_DIR_ENV) or LOCK_DIR)


class Lease:
    """Held devices of one slot; release() (or the holder's death) frees them."""

    def __init__(self, slot: Slot, fds: list[int], pool: Optional[SlotPool] = None):
        self.slot, self._fds, self._pool = slot, fds, pool

    def env(self) -> dict[str, str]:
        """What the candidate's environment gets: its devices, for CUDA and for the training script."""
        if not self.slot.devices:
            return {}
        ids = ",".join(self.slot.devices)
        # PCI order: CUDA's default (fastest first) may number GPUs unlike nvidia-smi and the locks
        return {"CUDA_VISIBLE_DEVICES": ids, "AR_DEVICES": ids, "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}

    def release(self) -> None:
        fds, self._fds = self._fds, []
        for fd in fds:
            os.close(fd)  # closing the only descriptor drops its flock
        pool, self._pool = self._pool, None
        if pool:
            pool._released(self.slot)

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _open_lock(folder: Path, device: str) -> int:
    path = folder / f"{re.sub(_SAFE, '_', device)}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
    try:
        os.fchmod(fd, 0o666)  # another user's runner must be able to lock it too
    except OSError:
        pass  # created by someone else: their mode stands
    return fd


def try_lease(slot: Slot, label: str = "", pool: Optional[SlotPool] = None) -> Optional[Lease]:
    """Lease every device of `slot` without waiting, or none of them (returns None)."""
    if not slot.devices:
        return Lease(slot, [], pool)
    folder = lock_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        os.chmod(folder, 0o1777)  # shared like /tmp; fails harmlessly when another user made it
    except OSError:
        pass
    fds: list[int] = []
    try:
        for device in sorted(slot.devices):  # one global order: two partial holders cannot deadlock
            fd = _open_lock(folder, device)
            fds.append(fd)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        for fd in fds:
            os.close(fd)
        return None
    except OSError as exc:
        for fd in fds:
            os.close(fd)
        raise UserError(
            f"cannot lock devices in {folder}: {exc.strerror}; make it writable or set {LOCK_DIR_ENV}"
        ) from None
    users = _device_users(slot.devices)
    if users:  # a candidate whose runner was killed still runs there: its lock died, its work did not
        for fd in fds:
            os.close(fd)
        return None
    note = f"{os.getpid()} {label}\n".encode()
    for fd in fds:  # who holds it, for `status`; the lock, not this text, is the truth
        os.ftruncate(fd, 0)
        os.pwrite(fd, note, 0)
    return Lease(slot, fds, pool)


def _device_users(devices: tuple[str, ...]) -> list[int]:
    """PIDs of live processes whose environment gives them one of `devices` (AR_DEVICES, set by a lease).

    One pass over /proc, paid only when the locks were free; other users' processes
    cannot be read and are left out. Elsewhere than Linux: none found.
    """
    if not os.path.isdir("/proc/self"):
        return []
    wanted, found = set(devices), []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as fh:
                environ = fh.read()
        except OSError:
            continue
        value = next((e[11:] for e in environ.split(b"\0") if e.startswith(b"AR_DEVICES=")), None)
        if value is not None and wanted.intersection(value.decode("utf-8", "replace").split(",")):
            found.append(int(name))
    return found


def holder(device: str) -> str:
    """'<pid> <label>' of the runner holding `device`, or '' when it is free."""
    path = lock_dir() / f"{re.sub(_SAFE, '_', device)}.lock"
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return ""
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return ""  # we could lock it: nobody holds it
    except BlockingIOError:
        return os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
    finally:
        os.close(fd)


class SlotPool:
    """Hands out free slots to the threads of one runner; waits, without oversubscribing, when none is free.

    A release in this process wakes waiters at once; slots freed by other
    processes are noticed by a retry that backs off from WAIT_MIN_S to WAIT_MAX_S.
    """

    def __init__(self, slots: list[Slot], label: str = ""):
        self.slots, self.label = list(slots), label
        self._cond = threading.Condition()
        self._stopped = False
        self._busy: set[int] = set()  # slot indexes leased by this process

    def _released(self, slot: Slot) -> None:
        with self._cond:
            self._busy.discard(slot.index)
            self._cond.notify_all()

    def try_acquire(self) -> Optional[Lease]:
        with self._cond:
            for slot in self.slots:
                if slot.index in self._busy:
                    continue  # ours already (a device-less slot has no flock to say so)
                lease = try_lease(slot, self.label, self)
                if lease:
                    self._busy.add(slot.index)
                    return lease
        return None

    def acquire(self, timeout: Optional[float] = None) -> Optional[Lease]:
        """A lease on the first free slot; None after `timeout` seconds or once stop() was called."""
        deadline = None if timeout is None else time.monotonic() + timeout
        wait = WAIT_MIN_S
        with self._cond:
            while not self._stopped:
                lease = self.try_acquire()
                if lease:
                    return lease
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return None
                self._cond.wait(wait if left is None else min(wait, left))
                wait = min(WAIT_MAX_S, wait * 2)
        return None

    def stop(self) -> None:
        """Wake every waiter with None (Ctrl+C: nothing new may start)."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()


def for_session(session, count: int, spread_out: bool = True) -> list[Slot]:
    """The slots `count` runs go to: one per job under Slurm (it places them), the session's devices
    (found when not set), or, for a run that is not spread out, one slot with no device env
    (whatever the host picks, as a plain `python train.py` would)."""
    if session.launcher == "slurm":
        return [Slot(i, ()) for i in range(max(1, count))]
    if session.devices is None and not spread_out:
        return [Slot(0, ())]
    devices = session.devices if session.devices is not None else detect_devices()
    return make_slots(devices, session.devices_per_run)
