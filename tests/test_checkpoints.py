"""Checkpoints: discovery per layout, O(1) capture and promotion, and pruning.

Real files saved with torch. Crash consistency is in test_checkpoint_crashes.py.
"""

import json

import pytest
import torch
from ckpt_driver import make_cfg, record
from ckpt_support import assert_agree, launch, new_run, tree
from safetensors.torch import load_file, save_file

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
