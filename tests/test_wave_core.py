"""Waves of fake candidates on 4 CPU "slots": disjoint devices at every moment, every candidate once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RUNNER_SRC = REPO / "template" / "<<slug>>"
sys.path.insert(0, str(RUNNER_SRC))

from arunner.procs import slot_pool, slots, watchdog  # noqa: E402

PROCS = Path(__file__).resolve().parent / "procs"
HOST = PROCS / "slot_host.py"
DRIVER = PROCS / "wave_driver.py"
DEVICES = ["0", "1", "2", "3"]


@pytest.fixture
def lock_dir(tmp_path, monkeypatch):
    folder = tmp_path / "locks"
    monkeypatch.setenv(slots.LOCK_DIR_ENV, str(folder))
    return folder


def _cands(out: Path, count: int, seconds: float, prefix: str = "c", codes=None) -> list[slot_pool.SlotJob]:
    codes = codes or [0] * count
    return [
        slot_pool.SlotJob(
            name=f"{prefix}{i}",
            cmd=[sys.executable, str(HOST), str(out / f"{prefix}{i}.rec"), str(seconds), str(codes[i])],
            cwd=out,
            env=dict(os.environ),
            log_path=out / f"{prefix}{i}.log",
            budget_s=60,
            grace_s=2,
            marker=("AR_TEST_RUN", uuid.uuid4().hex),
        )
        for i in range(count)
    ]


def _records(out: Path) -> list[tuple[str, str, float, float]]:
    rows = []
    for path in sorted(out.glob("*.rec")):
        cvd, ar, start, end = path.read_text().split()
        rows.append((path.stem, cvd, float(start), float(end), ar))
    return rows


def _assert_disjoint(rows) -> None:
    """No two candidates that ran at the same moment saw a common device."""
    for i, a in enumerate(rows):
        for b in rows[i + 1 :]:
            overlap = a[2] < b[3] and b[2] < a[3]
            if overlap:
                assert set(a[1].split(",")).isdisjoint(b[1].split(",")), (a, b)


@pytest.mark.parametrize("count", [1, 3, 9])
def test_wave_runs_each_candidate_once_on_disjoint_slots(tmp_path, lock_dir, count):
    cands = _cands(tmp_path, count, 0.3, codes=[1 if i == 1 else 0 for i in range(count)])
    pool = slots.SlotPool(slots.make_slots(DEVICES, 1))
    outcomes = slot_pool.run_jobs(cands, pool)
    assert [o.candidate.name for o in outcomes] == [c.name for c in cands]
    assert all(o.slot is not None and o.result is not None for o in outcomes)
    assert [o.result.exit_code for o in outcomes] == [1 if i == 1 else 0 for i in range(count)]
    rows = _records(tmp_path)
    assert sorted(r[0] for r in rows) == sorted(c.name for c in cands)  # every candidate ran, once
    for row, o in zip(rows, sorted(outcomes, key=lambda o: o.candidate.name)):
        assert row[1] == row[4] == ",".join(o.slot.devices)  # it saw the slot it was given
        assert "saw CUDA_VISIBLE_DEVICES=" + row[1] in (tmp_path / f"{row[0]}.log").read_text()
    _assert_disjoint(rows)
    assert len({o.slot.devices for o in outcomes}) == min(count, 4)
    assert not list(lock_dir.glob("*.lock")) or all(slots.holder(d) == "" for d in DEVICES)


def test_two_waves_in_two_processes_never_overlap(tmp_path, lock_dir):
    procs = [
        subprocess.Popen(
            [sys.executable, str(DRIVER), str(RUNNER_SRC), str(lock_dir), str(tmp_path), "3", "0.4", prefix],
            stdout=subprocess.PIPE,
            text=True,
        )
        for prefix in ("a", "b")
    ]
    for proc in procs:
        out, _ = proc.communicate(timeout=60)
        assert out.split() == ["0", "0", "0"]
    rows = _records(tmp_path)
    assert len(rows) == 6
    _assert_disjoint(rows)


def test_ctrl_c_stops_every_candidate(tmp_path, lock_dir):
    cands = _cands(tmp_path, 6, 30)  # 4 start, 2 wait for a slot
    pool = slots.SlotPool(slots.make_slots(DEVICES, 1))
    main = threading.main_thread().ident
    timer = threading.Timer(1.0, lambda: signal.pthread_kill(main, signal.SIGINT))
    timer.start()
    outcomes = slot_pool.run_jobs(cands, pool)
    timer.join()
    started = [o for o in outcomes if o.slot is not None]
    assert len(started) == 4
    assert all(o.result.interrupted and not o.result.timed_out for o in started)
    assert all(o.result is None for o in outcomes if o.slot is None)
    assert not _records(tmp_path)  # nobody reached the end of its sleep
    for c in cands:
        assert not watchdog.find_marked(c.marker)  # no process of any candidate is left
    assert pool.acquire() is None  # a stopped pool hands out nothing more
    assert all(slots.holder(d) == "" for d in DEVICES)  # every lease was given back


def test_budget_applies_per_candidate(tmp_path, lock_dir):
    cands = _cands(tmp_path, 2, 30)
    cands[0] = cands[0]._replace(budget_s=0.5)  # a SlotJob is a NamedTuple
    cands[1].cmd[-2] = "0.2"
    outcomes = slot_pool.run_jobs(cands, slots.SlotPool(slots.make_slots(DEVICES, 1)))
    assert outcomes[0].result.timed_out and outcomes[0].result.exit_code is None
    assert outcomes[1].result.exit_code == 0 and not outcomes[1].result.timed_out
