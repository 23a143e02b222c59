"""Device slots: parsing, auto-detection, and machine-wide leases between real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RUNNER_SRC = REPO / "template" / "<<slug>>"
sys.path.insert(0, str(RUNNER_SRC))

from arunner.core.errors import UserError  # noqa: E402
from arunner.procs import slots  # noqa: E402

HOLDER = Path(__file__).resolve().parent / "procs" / "slot_holder.py"


@pytest.fixture
def lock_dir(tmp_path, monkeypatch):
    folder = tmp_path / "locks"
    monkeypatch.setenv(slots.LOCK_DIR_ENV, str(folder))
    return folder


def test_parse_and_group():
    assert slots.parse_devices(" 0, 1,2 ,3") == ["0", "1", "2", "3"]
    groups = slots.make_slots(["0", "1", "2", "3", "4"], 2)
    assert [s.devices for s in groups] == [("0", "1"), ("2", "3")]  # device 4 alone is no slot of 2
    assert slots.make_slots([], 1) == [slots.Slot(0, ())]
    with pytest.raises(UserError, match="twice"):
        slots.parse_devices("0,1,0")
    with pytest.raises(UserError, match="needs 4 devices"):
        slots.make_slots(["0", "1"], 4)
    with pytest.raises(UserError, match="1 or more"):
        slots.make_slots(["0"], 0)


def test_detect_devices():
    assert slots.detect_devices({"CUDA_VISIBLE_DEVICES": "2,3"}) == ["2", "3"]
    assert slots.detect_devices({"CUDA_VISIBLE_DEVICES": ""}) == []
    assert slots.detect_devices({"CUDA_VISIBLE_DEVICES": "-1"}) == []
    smi = (
        "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-aaa)\n"
        "  MIG 1g.10gb     Device  0: (UUID: MIG-bbb)\n"
        "GPU 1: NVIDIA H100 80GB HBM3 (UUID: GPU-ccc)\n"
    )
    assert slots.parse_nvidia_smi(smi) == [("0", "GPU-aaa"), ("1", "GPU-ccc")]
    assert slots.parse_nvidia_smi("No devices were found\n") == []


def test_lease_env_and_release(lock_dir):
    slot = slots.make_slots(["0", "1", "2", "3"], 2)[1]
    lease = slots.try_lease(slot, "exp-a")
    assert lease.env() == {"CUDA_VISIBLE_DEVICES": "2,3", "AR_DEVICES": "2,3", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
    assert slots.holder("2").endswith("exp-a") and slots.holder("0") == ""
    assert slots.try_lease(slot) is None  # a second lease on the same devices, even in-process
    lease.release()
    assert slots.holder("2") == ""
    assert slots.try_lease(slot) is not None


def _start_holder(devices: str, per_run: int, index: int) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, str(HOLDER), str(RUNNER_SRC), devices, str(per_run), str(index)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_leases_disjoint_across_processes_and_freed_on_sigkill(lock_dir):
    holder = _start_holder("0,1,2,3", 2, 0)  # another runner holds devices 0 and 1
    try:
        pool = slots.SlotPool(slots.make_slots(["0", "1", "2", "3"], 2), "me")
        mine = pool.try_acquire()
        assert mine.slot.devices == ("2", "3")
        assert pool.try_acquire() is None  # no oversubscription: both slots are taken
        assert pool.acquire(timeout=0.3) is None
        assert str(holder.pid) in slots.holder("0")
        os.kill(holder.pid, signal.SIGKILL)  # the holder dies: the kernel drops its locks
        holder.wait()
        freed = pool.acquire(timeout=10)  # noticed by the retry
        assert freed is not None and freed.slot.devices == ("0", "1")
    finally:
        if holder.poll() is None:
            os.kill(holder.pid, signal.SIGKILL)
            holder.wait()


def test_release_wakes_a_waiter_in_process(lock_dir):
    import threading

    pool = slots.SlotPool(slots.make_slots(["7"], 1))
    first = pool.acquire()
    got = []
    waiter = threading.Thread(target=lambda: got.append(pool.acquire(timeout=10)))
    waiter.start()
    time.sleep(0.2)
    assert not got  # still waiting: the only slot is leased
    first.release()
    waiter.join(10)
    assert got and got[0].slot.devices == ("7",)


def test_deviceless_slot_is_one_at_a_time(lock_dir):
    pool = slots.SlotPool(slots.make_slots([], 1))
    lease = pool.try_acquire()
    assert lease.env() == {}  # the host picks its devices as it does today
    assert pool.try_acquire() is None
    lease.release()
    assert pool.try_acquire() is not None


def test_detect_through_nvidia_smi(tmp_path, monkeypatch):
    """A stand-in nvidia-smi on PATH: indexes when nothing is set, UUIDs mapped to the same indexes."""
    smi = tmp_path / "nvidia-smi"
    smi.write_text(
        "#!/bin/sh\necho 'GPU 0: NVIDIA H200 (UUID: GPU-1111)'\necho 'GPU 1: NVIDIA H200 (UUID: GPU-2222)'\n"
    )
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert slots.detect_devices({}) == ["0", "1"]
    assert slots.detect_devices({"CUDA_VISIBLE_DEVICES": "GPU-2222"}) == ["1"]
    assert slots.detect_devices({"CUDA_VISIBLE_DEVICES": "MIG-abc"}) == ["MIG-abc"]


def test_orphan_candidate_keeps_its_device(lock_dir):
    """A candidate whose runner was SIGKILLed (its lock is gone) still blocks its device until it ends."""
    orphan = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], env={**os.environ, "AR_DEVICES": "4,5"}
    )
    try:
        time.sleep(0.2)  # let exec finish: /proc/<pid>/environ is the new program's
        assert slots.try_lease(slots.Slot(0, ("5",))) is None
        assert slots.try_lease(slots.Slot(1, ("6",))) is not None
    finally:
        orphan.kill()
        orphan.wait()
    assert slots.try_lease(slots.Slot(0, ("5",))) is not None
