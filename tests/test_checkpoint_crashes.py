"""Checkpoints under faults: real subprocesses SIGKILLed at every fault point of capture, promotion
and pruning, then repaired; best.json read while promotions churn; captures across filesystems.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
from ckpt_driver import make_cfg, record
from ckpt_support import DRIVER, assert_agree, assert_no_debris, launch, new_run, run_driver, tree

from arunner.core.errors import UserError
from arunner.state import best, checkpoints


@pytest.fixture
def proj(tmp_path):
    root = tmp_path / "proj"
    expr = root / ".autoresearch" / "exp"
    (expr / "runs").mkdir(parents=True)
    return root, expr


@pytest.fixture(autouse=True)
def exchange_default():
    best.exchange_supported = None
    yield
    best.exchange_supported = None


# ---------------------------------------------------------------- crash consistency

KILL_POINTS = checkpoints.FAULT_POINTS + ("driver.decided",) + best.FAULT_POINTS


def setup_history(root, expr, kind):
    """r0001 is the best (content A); r0000 and r0002 reverted with their checkpoints kept; r0003 starts."""
    cfg = make_cfg(root, expr, glob="out/*.pt" if kind == "file" else "out/checkpoint-*")
    (root / "out").mkdir(parents=True, exist_ok=True)

    def save(content):
        if kind == "file":
            (root / "out" / "model.pt").write_bytes(content)
        else:
            (root / "out" / "checkpoint-7").mkdir()
            for i in range(3):
                (root / "out" / "checkpoint-7" / f"part{i}.bin").write_bytes(content + b"%d" % i)

    for run_id, content in (("r0000", b"D"), ("r0001", b"A"), ("r0002", b"C")):
        run_dir = new_run(expr, run_id)
        started = launch()
        save(content * 1000)
        checkpoints.capture(cfg, run_dir, started)
        if run_id == "r0001":
            best.promote(expr, run_dir, record(run_id, 0.9))
    new_run(expr, "r0003")
    started = launch()
    save(b"B" * 1000)
    name = "model.pt" if kind == "file" else "checkpoint-7"
    content_a = tree(expr / "best_ckpt" / name)
    return started, name, content_a, tree(root / "out" / name)


def check_after_kill(root, expr, name, content_a, content_b, copied):
    decision = expr / "runs" / "r0003" / "decision.json"
    pending = json.loads(decision.read_text()) if decision.exists() else None
    best.repair(expr, pending)
    expected = "r0003" if pending else "r0001"
    assert_agree(expr, expected)
    assert_no_debris(expr)
    # B (r0003's checkpoint) is whole in exactly one place; A (the old best) only while r0001 is the best.
    places = [
        p
        for p in (root / "out" / name, expr / "runs" / "r0003" / "ckpt" / name, expr / "best_ckpt" / name)
        if os.path.lexists(p) and not (expected == "r0001" and p.parent.name == "best_ckpt")
    ]
    assert places and all(tree(p) == content_b for p in places)
    if not copied:
        assert len(places) == 1  # a rename never duplicates
    assert (expr / "best_ckpt" / name in places) == (expected == "r0003")
    if expected == "r0001":
        assert tree(expr / "best_ckpt" / name) == content_a
    assert os.path.lexists(expr / "runs" / "r0002" / "ckpt" / name)  # the latest revert keeps its ckpt
    assert best.repair(expr, pending) == []  # idempotent


SCENARIOS = {"rename-file": ("file", False), "rename-dir": ("dir", False), "no-exchange-file": ("file", True)}


@pytest.mark.parametrize("point", KILL_POINTS)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_sigkill_at_every_point_then_repair(tmp_path, scenario, point):
    kind, fallback = SCENARIOS[scenario]
    root = tmp_path / "proj"
    expr = root / ".autoresearch" / "exp"
    started, name, content_a, content_b = setup_history(root, expr, kind)
    args = {
        "root": str(root),
        "expr": str(expr),
        "run_id": "r0003",
        "started_at": started,
        "glob": "out/*.pt" if kind == "file" else "out/checkpoint-*",
    }
    killed = run_driver(args, point, fallback)
    # Every point on this path really kills (copy-only points are killed in the cross-filesystem test).
    off_path = {"capture.copied", "capture.source_removed", "promote.old_trashed" if fallback else "promote.old_moved"}
    assert killed == (point not in off_path)
    check_after_kill(root, expr, name, content_a, content_b, copied=False)


@pytest.mark.parametrize("fallback", [False, True])
def test_best_json_and_meta_agree_at_every_instant(proj, fallback):
    root, expr = proj
    args = {"root": str(root), "expr": str(expr), "first": 1, "n": 60, "fallback": fallback}
    writer = subprocess.Popen([sys.executable, str(DRIVER), "churn", json.dumps(args)], stderr=subprocess.PIPE)
    link, meta = expr / "best.json", expr / "best_ckpt" / "meta.json"

    def run_id(path):
        try:
            return json.loads(path.read_text())["run_id"]
        except FileNotFoundError:
            return None

    checks = 0
    seen = set()
    try:
        while writer.poll() is None or checks == 0:
            a, m, c = run_id(link), run_id(meta), run_id(link)
            if a == c:  # no swap between the two link reads: the meta read in between must match
                assert m == a
                checks += 1
            got = best.read_best(expr)
            if got is not None:
                seen.add(got["run_id"])
            elif not fallback:
                assert not seen  # with RENAME_EXCHANGE, once there is a best it never disappears
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
    assert writer.returncode == 0, writer.stderr.read()
    assert checks > 50 and len(seen) > 5
    assert_agree(expr, "r0060")
    assert_no_debris(expr)
    assert sorted(p.parent.name for p in expr.glob("runs/*/ckpt")) == []  # each best moved out, nothing else


def test_repair_redoes_a_promotion_that_never_started(proj):
    root, expr = proj
    cfg = make_cfg(root, expr, glob="*.pt")
    run_dir = new_run(expr, "r0001")
    started = launch()
    (root / "m.pt").write_bytes(b"w")
    checkpoints.capture(cfg, run_dir, started)
    decision = dict(record("r0001", 0.3), verdict="advance")
    notes = best.repair(expr, decision)
    assert notes == ["redid the promotion of r0001"]
    assert_agree(expr, "r0001")
    assert (expr / "best_ckpt" / "m.pt").read_bytes() == b"w"
    assert best.repair(expr, dict(decision, verdict="revert")) == []


def test_read_best_damaged_is_one_clear_line(proj):
    root, expr = proj
    assert best.read_best(expr) is None
    run_dir = new_run(expr, "r0001")
    best.promote(expr, run_dir, record("r0001", 0.3))  # no checkpoint: meta.json only
    assert sorted(os.listdir(expr / "best_ckpt")) == ["meta.json"]
    assert best.read_best(expr)["name"] is None
    (expr / "best_ckpt" / "meta.json").write_text("{not json")
    with pytest.raises(UserError) as exc:
        best.read_best(expr)
    msg = str(exc.value)
    assert "\n" not in msg and "best.json" in msg and "delete" in msg


# ---------------------------------------------------------------- across filesystems


def other_fs_root():
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tempfile.gettempdir()).st_dev:
        pytest.skip("/dev/shm is not a separate filesystem here")
    return Path(tempfile.mkdtemp(prefix="ar-ckpt-", dir=shm))


@pytest.mark.parametrize("kind", ["file", "dir"])
def test_cross_filesystem_capture_copies(tmp_path, kind):
    root = other_fs_root()
    try:
        expr = tmp_path / ".autoresearch" / "exp"
        run_dir = new_run(expr, "r0001")
        cfg = make_cfg(root, expr, glob="out/*.pt" if kind == "file" else "out/checkpoint-*")
        (root / "out").mkdir()
        started = launch()
        if kind == "file":
            torch.save({"w": torch.ones(100)}, root / "out" / "model.pt")
            name = "model.pt"
        else:
            (root / "out" / "checkpoint-1").mkdir()
            for i in range(3):
                (root / "out" / "checkpoint-1" / f"f{i}").write_bytes(os.urandom(1000))
            name = "checkpoint-1"
        expected = tree(root / "out" / name)
        info = checkpoints.capture(cfg, run_dir, started)
        assert info["method"] == "copy" and info["source"] == f"out/{name}"  # tmpfs has no reflink
        assert not (root / "out" / name).exists() and tree(run_dir / "ckpt" / name) == expected
        best.promote(expr, run_dir, record("r0001", 0.1))
        assert best.read_best(expr)["method"] == "copy"
        assert tree(expr / "best_ckpt" / name) == expected
    finally:
        shutil.rmtree(root)


def test_cross_filesystem_kill_mid_copy(tmp_path):
    root = other_fs_root()
    try:
        for point in ("capture.copied", "capture.stored", "capture.recorded", "capture.source_removed"):
            expr = tmp_path / point / ".autoresearch" / "exp"
            new_run(expr, "r0001")
            (root / "out").mkdir(exist_ok=True)
            started = launch()
            (root / "out" / "model.pt").write_bytes(b"B" * 5000)
            args = {"root": str(root), "expr": str(expr), "run_id": "r0001", "started_at": started, "glob": "out/*.pt"}
            assert run_driver(args, point)
            best.repair(expr, None)
            assert_no_debris(expr)
            places = [
                p for p in (root / "out" / "model.pt", expr / "runs" / "r0001" / "ckpt" / "model.pt") if p.exists()
            ]
            assert places and all(p.read_bytes() == b"B" * 5000 for p in places)
            remove = root / "out" / "model.pt"
            if remove.exists():
                remove.unlink()
    finally:
        shutil.rmtree(root)
