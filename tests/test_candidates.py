"""The candidate queue: propose, list, pop, discard, and a SIGKILL at each step of propose."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RUNNER_SRC = REPO / "template" / "<<slug>>"
sys.path.insert(0, str(RUNNER_SRC))

from arunner.core.errors import UserError  # noqa: E402
from arunner.state import candidates  # noqa: E402

TRAIN = 'RUN_NOTE = "{note}"\nprint("train")\n'


def _write(exp: Path, note: str) -> None:
    (exp / "train.py").write_text(TRAIN.format(note=note))


def test_propose_list_pop_discard(tmp_path):
    _write(tmp_path, "lr 3e-4")
    first = candidates.propose_train_py(tmp_path)
    assert (first.id, first.note) == ("c0001", "lr 3e-4")
    assert (tmp_path / "train.py").read_text() == TRAIN.format(note="lr 3e-4")  # left as it is
    with pytest.raises(UserError, match="already queued as c0001"):
        candidates.propose_train_py(tmp_path)
    _write(tmp_path, "wider")
    second = candidates.propose_train_py(tmp_path)
    _write(tmp_path, "deeper")
    candidates.propose_train_py(tmp_path)
    assert [c.id for c in candidates.list_queued(tmp_path)] == ["c0001", "c0002", "c0003"]
    assert candidates.discard(tmp_path, "c0002") == second
    with pytest.raises(UserError, match=r"no queued candidate 'c0002' \(queued: c0001, c0003\)"):
        candidates.discard(tmp_path, "c0002")
    taken = candidates.pop(tmp_path, tmp_path / "runs" / "r0001" / "candidate")
    assert taken.id == "c0001" and (taken.path / "train.py").read_text() == TRAIN.format(note="lr 3e-4")
    assert [c.id for c in candidates.list_queued(tmp_path)] == ["c0003"]
    _write(tmp_path, "again")
    assert candidates.propose_train_py(tmp_path).id == "c0004"  # ids never come back
    assert candidates.pop(tmp_path, tmp_path / "x", "c0004").id == "c0004"
    candidates.pop(tmp_path, tmp_path / "y")
    assert candidates.pop(tmp_path, tmp_path / "z") is None


def test_conflict_markers_refused(tmp_path):
    (tmp_path / "train.py").write_text("a = 1\n<<<<<<< HEAD\nb = 2\n")
    with pytest.raises(UserError, match="conflict markers"):
        candidates.propose_train_py(tmp_path)
    assert candidates.list_queued(tmp_path) == []


@pytest.mark.parametrize("point,expected", [("propose-before-rename", []), ("propose-after-rename", ["c0001"])])
def test_sigkill_mid_propose_leaves_no_half_candidate(tmp_path, point, expected):
    _write(tmp_path, "killed")
    code = f"import sys; sys.path.insert(0, {str(RUNNER_SRC)!r}); from arunner.state import candidates; "
    code += f"candidates.propose_train_py({str(tmp_path)!r})"
    proc = subprocess.run([sys.executable, "-c", code], env={**os.environ, "AR_FAULT_AT": point})
    assert proc.returncode == -9
    queued = candidates.list_queued(tmp_path)
    assert [c.id for c in queued] == expected
    for cand in queued:
        assert cand.note == "killed" and (cand.path / "train.py").read_text() == TRAIN.format(note="killed")
    _write(tmp_path, "next")
    assert candidates.propose_train_py(tmp_path).id == ("c0002" if expected else "c0001")
    assert not [p for p in (tmp_path / "queue").iterdir() if p.name.startswith(".new-")]  # leftovers cleaned
