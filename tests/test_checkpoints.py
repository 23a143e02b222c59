"""Checkpoints: discovery per layout, O(1) capture and promotion, pruning, and crash consistency.

Real files saved with torch, real subprocesses SIGKILLed at every fault point.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "template" / "<<slug>>"))

from arunner.core.errors import UserError  # noqa: E402
from arunner.state import best, checkpoints  # noqa: E402

sys.path.insert(0, str(REPO / "tests" / "procs"))
from ckpt_driver import make_cfg, record  # noqa: E402

DRIVER = REPO / "tests" / "procs" / "ckpt_driver.py"


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


def new_run(expr, run_id):
    run_dir = expr / "runs" / run_id
    run_dir.mkdir(parents=True)
    (run_dir / "train.py").write_text("RUN_NOTE = ''\n")
    (run_dir / "run.log").write_text("step 1\n")
    return run_dir


def launch():
    """started_at of a run: strictly after anything written before, strictly before anything after."""
    time.sleep(0.01)
    t = time.time()
    time.sleep(0.01)
    return t


def tree(path):
    """Content of a file or folder: bytes, or {relative name: bytes}."""
    path = Path(path)
    if path.is_file():
        return path.read_bytes()
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def assert_agree(expr, run_id):
    link = expr / "best.json"
    assert os.readlink(link) == "best_ckpt/meta.json"
    via_link = json.loads(link.read_text())
    meta = json.loads((expr / "best_ckpt" / "meta.json").read_text())
    assert via_link == meta == best.read_best(expr)
    assert meta["run_id"] == run_id
    return meta


def assert_no_debris(expr):
    left = [
        p.name
        for p in (expr / "best_ckpt.staging", expr / "best_ckpt.trash", expr / ".ckpt-trash")
        if os.path.lexists(p)
    ]
    left += [str(p) for p in expr.glob("runs/*/.ckpt-partial")] + [str(p) for p in expr.glob(".best.json.tmp*")]
    assert left == []


# ---------------------------------------------------------------- layouts


def test_torch_save_fixed_path_never_rewrites_best(proj):
    root, expr = proj
    cfg = make_cfg(root, expr, glob="checkpoints/model.pt")
    host = root / "checkpoints" / "model.pt"
    host.parent.mkdir(parents=True)
    run_dir = new_run(expr, "r0001")
    started = launch()
    torch.save({"w": torch.ones(64, 64)}, host)
    info = checkpoints.capture(cfg, run_dir, started)
    assert info == {
        "source": "checkpoints/model.pt",
        "stored": "runs/r0001/ckpt/model.pt",
        "kind": "file",
        "bytes": info["bytes"],
        "method": "rename",
    }
    assert info["bytes"] == (run_dir / "ckpt" / "model.pt").stat().st_size > 16000
    assert not host.exists()  # a move: the host no longer finds it at its own path
    best.promote(expr, run_dir, record("r0001", 0.9))
    stored = expr / "best_ckpt" / "model.pt"
    before = stored.read_bytes()
    meta = assert_agree(expr, "r0001")
    assert meta["stored"] == "best_ckpt/model.pt" and meta["source"] == "checkpoints/model.pt"
    assert meta["kind"] == "file" and meta["method"] == "rename" and meta["snapshot"] == "runs/r0001/train.py"
    assert not (run_dir / "ckpt").exists()

    # The next run saves to the same fixed path (torch.save opens it with O_TRUNC).
    torch.save({"w": torch.zeros(64, 64)}, host)
    assert stored.stat().st_nlink == 1 and stored.stat().st_ino != host.stat().st_ino
    assert stored.read_bytes() == before
    assert torch.equal(torch.load(stored)["w"], torch.ones(64, 64))


@pytest.mark.parametrize(
    "cli_args",
    [
        {"output_dir": "out", "learning_rate": 1e-3},
        ["trainer.output_dir=out", "lr=0.1"],
        ["++output_dir='out'"],
        ["--output_dir", "out"],
    ],
)
def test_hf_output_dir_checkpoint_folder(proj, cli_args):
    root, expr = proj
    cfg = make_cfg(root, expr, cli_args=cli_args)
    stale = root / "out" / "checkpoint-3"
    stale.mkdir(parents=True)
    save_file({"w": torch.zeros(2)}, stale / "model.safetensors")
    run_dir = new_run(expr, "r0001")
    started = launch()
    for step in (5, 10):
        ck = root / "out" / f"checkpoint-{step}"
        ck.mkdir()
        save_file({"w": torch.full((8,), float(step))}, ck / "model.safetensors")
        torch.save({"state": {}, "lr": 0.1}, ck / "optimizer.pt")
        (ck / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    expected = tree(root / "out" / "checkpoint-10")
    assert checkpoints.discover(cfg, run_dir, started) == root.resolve() / "out" / "checkpoint-10"
    info = checkpoints.capture(cfg, run_dir, started)
    assert info["kind"] == "dir" and info["source"] == "out/checkpoint-10"
    assert info["bytes"] == sum(len(b) for b in expected.values())
    best.promote(expr, run_dir, record("r0001", 0.5))
    stored = expr / "best_ckpt" / "checkpoint-10"
    assert stored.is_dir() and tree(stored) == expected  # folders stay folders
    assert torch.equal(load_file(stored / "model.safetensors")["w"], torch.full((8,), 10.0))
    assert (root / "out" / "checkpoint-5").is_dir() and stale.is_dir()  # other host files untouched
    assert_agree(expr, "r0001")


def test_lightning_ckpt_under_versioned_logs(proj):
    root, expr = proj
    cfg = make_cfg(root, expr, glob="lightning_logs/*/checkpoints/*.ckpt")
    old = root / "lightning_logs" / "version_0" / "checkpoints" / "epoch=0-step=1.ckpt"
    old.parent.mkdir(parents=True)
    torch.save({"state_dict": {}, "global_step": 1}, old)
    run_dir = new_run(expr, "r0001")
    started = launch()
    new = root / "lightning_logs" / "version_0" / "checkpoints" / "epoch=0-step=5.ckpt"
    torch.save({"state_dict": {"w": torch.ones(3)}, "epoch": 0, "global_step": 5}, new)
    info = checkpoints.capture(cfg, run_dir, started)
    assert info["source"] == "lightning_logs/version_0/checkpoints/epoch=0-step=5.ckpt"
    assert info["stored"] == "runs/r0001/ckpt/epoch=0-step=5.ckpt" and old.exists()
    assert torch.load(run_dir / "ckpt" / "epoch=0-step=5.ckpt")["global_step"] == 5


def test_accelerate_save_state_folder(proj):
    root, expr = proj
    cfg = make_cfg(root, expr, glob="state/checkpoint_*")
    run_dir = new_run(expr, "r0001")
    started = launch()
    st = root / "state" / "checkpoint_0"
    st.mkdir(parents=True)
    save_file({"w": torch.arange(4.0)}, st / "model.safetensors")
    torch.save({"state": {}}, st / "optimizer.bin")
    torch.save({"last_epoch": 1}, st / "scheduler.bin")
    torch.save({"torch": torch.get_rng_state()}, st / "random_states_0.pkl")
    expected = tree(st)
    info = checkpoints.capture(cfg, run_dir, started)
    assert info["kind"] == "dir" and info["method"] == "rename" and info["source"] == "state/checkpoint_0"
    best.promote(expr, run_dir, record("r0001", 0.5))
    assert tree(expr / "best_ckpt" / "checkpoint_0") == expected
    assert_agree(expr, "r0001")


def test_cooperative_save_into_run_dir_and_priority(proj):
    root, expr = proj
    cfg = make_cfg(root, expr)
    run_dir = new_run(expr, "r0001")
    started = launch()
    # The runner's own files are fresh too but never a checkpoint.
    (run_dir / "decision.json").write_text("{}")
    (run_dir / "wandb").mkdir()
    (run_dir / ".hidden.pt").write_bytes(b"x")
    torch.save({"w": torch.ones(2)}, run_dir / "weights.pt")
    info = checkpoints.capture(cfg, run_dir, started)
    assert info["source"] == ".autoresearch/exp/runs/r0001/weights.pt"
    assert info["stored"] == "runs/r0001/ckpt/weights.pt" and info["method"] == "rename"
    assert checkpoints.capture(cfg, run_dir, started) == info  # idempotent

    # checkpoint_glob comes first when both exist.
    run2 = new_run(expr, "r0002")
    started = launch()
    torch.save({}, run2 / "weights.pt")
    (root / "model.pt").write_bytes(b"glob")
    glob_cfg = make_cfg(root, expr, glob="*.pt")
    assert checkpoints.discover(glob_cfg, run2, started) == root.resolve() / "model.pt"


def test_stale_checkpoints_are_never_credited(proj):
    root, expr = proj
    (root / "out" / "checkpoint-7").mkdir(parents=True)
    torch.save({}, root / "out" / "checkpoint-7" / "model.pt")
    torch.save({}, root / "model.pt")
    run_dir = new_run(expr, "r0002")
    torch.save({}, run_dir / "leftover.pt")
    started = launch()
    cfg = make_cfg(root, expr, glob="*.pt", cli_args={"output_dir": "out"})
    assert checkpoints.discover(cfg, run_dir, started) is None
    assert checkpoints.capture(cfg, run_dir, started) is None
    assert (root / "model.pt").exists() and not (run_dir / "ckpt").exists()

    # A fresh file in another experiment's store is never a host save either.
    other = root / ".autoresearch" / "parent" / "best_ckpt"
    other.mkdir(parents=True)
    torch.save({}, other / "model.pt")
    assert checkpoints.discover(make_cfg(root, expr, glob="**/*.pt"), run_dir, started) is None

    # Writing into an old folder during this run makes that folder this run's.
    torch.save({"w": 1}, root / "out" / "checkpoint-7" / "model.pt")
    assert checkpoints.discover(cfg, run_dir, started) == root.resolve() / "out" / "checkpoint-7"


def test_glob_outside_project_refused(proj, tmp_path):
    root, expr = proj
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "m.pt").write_bytes(b"x")
    (root / "linked").symlink_to(outside)
    run_dir = new_run(expr, "r0001")
    for glob in ("../elsewhere/*.pt", str(outside / "*.pt"), "linked/*.pt"):
        with pytest.raises(UserError) as exc:
            checkpoints.discover(make_cfg(root, expr, glob=glob), run_dir, 0.0)
        msg = str(exc.value)
        assert "\n" not in msg and "project root" in msg
    assert (outside / "m.pt").exists()


# ---------------------------------------------------------------- pruning


def test_prune_keeps_best_and_latest(proj):
    root, expr = proj
    cfg = make_cfg(root, expr, glob="*.pt")
    for i in range(1, 6):
        run_dir = new_run(expr, f"r{i:04d}")
        started = launch()
        (root / "m.pt").write_bytes(b"%d" % i)
        checkpoints.capture(cfg, run_dir, started)
        if i == 2:
            best.promote(expr, run_dir, record("r0002", 0.1))
    held = lambda: sorted(p.parent.name for p in expr.glob("runs/*/ckpt"))  # noqa: E731
    assert held() == ["r0001", "r0003", "r0004", "r0005"]
    assert checkpoints.prune(expr, 1, "r0002") == ["r0004", "r0003", "r0001"]
    assert held() == ["r0005"]
    assert checkpoints.prune(expr, 1, "r0002") == []  # idempotent
    # A stray ckpt in the best run's own folder is never pruned, not even with keep_latest=0.
    (expr / "runs" / "r0002" / "ckpt").mkdir()
    (expr / "runs" / "r0002" / "ckpt" / "m.pt").write_bytes(b"x")
    checkpoints.mark_held(expr, "r0002")
    assert checkpoints.prune(expr, 0, "r0002") == ["r0005"]
    assert held() == ["r0002"]
    assert (expr / "best_ckpt" / "m.pt").read_bytes() == b"2"
    assert_agree(expr, "r0002")


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


def run_driver(args, fault=None, fallback=False):
    env = dict(os.environ)
    env.pop("AR_FAULT_AT", None)
    if fault:
        env["AR_FAULT_AT"] = fault
    args = dict(args, fallback=fallback)
    proc = subprocess.run(
        [sys.executable, str(DRIVER), "step", json.dumps(args)], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode in (0, -signal.SIGKILL), proc.stderr
    return proc.returncode == -signal.SIGKILL


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
