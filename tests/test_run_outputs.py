"""What a run's outputs and its end look like to the agent: a baseline that never ends names its knob.

Host: tests/hosts/forever_host (`--max_steps -1` trains forever; pure Python).
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import answers

FOREVER = answers(
    entry_main_module="loop",
    cli_args="{max_steps: -1}",
    primary_metric="val_loss",
    length_key="max_steps",
    slug="261203-forever",
)


def test_a_baseline_that_times_out_names_the_length_knob(rendered_once, tmp_path):
    expr = rendered_once("forever_host", FOREVER, tmp_path / "forever")
    assert '"length_key": "max_steps"' in (expr.dir / "experiment.json").read_text()
    proc = expr.ar("run", "--seconds", "2")
    head, second = proc.stdout.splitlines()[:2]
    assert " timeout/" in head
    assert "timeout: the baseline did not end within 2s" in second
    assert "set 'max_steps' in CLI_OVERRIDES of .autoresearch/261203-forever/train.py" in second
    assert "(the baseline has -1)" in second and "traceback" not in second


# --------------------------------------------------------------------------- outputs per run

FIXED = answers(
    entry_main_module="gpt",
    cli_style="constants",
    cli_args="{max_iters: 200, learning_rate: 0.05}",
    primary_metric="val loss",
    checkpoint_glob="ckpt/*.json",
    slug="261203-fixed",
)
OPTION = answers(
    entry_main_module="chargen",
    cli_args="{steps: 200}",
    primary_metric="val_loss",
    checkpoint_glob="out/*.json",
    output_key="work_dir",
    slug="261203-option",
)


def sha(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def direct_checkpoint(host: Path, tmp: Path, **constants) -> str:
    """The checkpoint the host writes on its own for these constants (a deterministic script): its hash."""
    src = (host / "gpt.py").read_text()
    for name, value in constants.items():
        src, n = re.subn(rf"^{name} = .*$", f"{name} = {value!r}", src, flags=re.M)
        assert n == 1
    tmp.mkdir()
    (tmp / "gpt.py").write_text(src)
    subprocess.run([sys.executable, "gpt.py"], cwd=tmp, check=True, capture_output=True)
    return sha(tmp / "ckpt" / "model.json")


def propose_lr(expr, base: str, lr: float) -> str:
    text = base.replace("'learning_rate': 0.05", f"'learning_rate': {lr}", 1)
    assert text != base
    expr.train_py.write_text(text.replace('RUN_NOTE = "baseline"', f'RUN_NOTE = "lr {lr}"', 1))
    return expr.ar("propose").stdout.split()[1]


@pytest.fixture
def lock_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("AR_DEVICE_LOCK_DIR", str(tmp_path / "device-locks"))  # not the machine's locks


@pytest.mark.parametrize("explicit", [False, True], ids=["glob-folder", "output_fixed"])
def test_a_wave_on_a_fixed_path_host_promotes_the_winners_own_checkpoint(rendered_once, tmp_path, lock_dir, explicit):
    data = {**FIXED, "output_fixed": '["ckpt"]'} if explicit else FIXED
    expr = rendered_once("modlevel_host", data, tmp_path / "host")
    assert expr.run()["verdict"] == "advance"
    expr.ar("session", "--devices", "0,1,2,3", "--keep-checkpoints", "5")  # every candidate keeps its own
    base = expr.train_py.read_text()
    lrs = (0.2, 0.1, 0.01)
    for lr in lrs:
        propose_lr(expr, base, lr)
    lines = expr.ar("run").stdout.splitlines()
    assert lines[-1].startswith("wave w0002: 3 candidate(s)"), lines
    results = {r: json.loads((expr.dir / "runs" / r / "result.json").read_text()) for r in ("r0002", "r0003", "r0004")}
    assert [res["status"] for res in results.values()] == ["ok"] * 3, [res["note"] for res in results.values()]
    assert all(res["valid"] for res in results.values())  # no candidate lost its checkpoint to another
    assert not list((expr.host / "ckpt").iterdir())  # nothing left at the shared path (the baseline's was moved)
    for (run_id, res), lr in zip(results.items(), lrs):  # each value is its own run's, from its own log
        ckpt = expr.dir / "runs" / run_id / "ckpt" / "model.json"
        if res["verdict"] != "advance":
            assert json.loads(ckpt.read_text())["learning_rate"] == lr
        assert (
            f"step 200: val loss {res['primary']['value']:.6f}" in (expr.dir / "runs" / run_id / "run.log").read_text()
        )
    winner = next(r for r, res in results.items() if res["verdict"] == "advance")
    promoted = expr.dir / "best_ckpt" / "ckpt" / "model.json"
    if not promoted.exists():
        promoted = next((expr.dir / "best_ckpt").rglob("model.json"))
    lr = lrs[list(results).index(winner)]
    assert sha(promoted) == direct_checkpoint(expr.host, tmp_path / "direct", learning_rate=lr, max_iters=200)
    assert not (expr.dir / "runs" / winner / "work").exists()  # the working folder's links went


def test_a_wave_refuses_a_fixed_path_it_cannot_separate_in_one_line(rendered_once, tmp_path, lock_dir):
    data = {**FIXED, "checkpoint_glob": "ck*/*.json", "output_fixed": "[]"}  # detection's ckpt/model.json unsaid
    expr = rendered_once("modlevel_host", data, tmp_path / "host")
    expr.run()
    expr.ar("session", "--devices", "0,1")
    base = expr.train_py.read_text()
    ids = [propose_lr(expr, base, lr) for lr in (0.2, 0.1)]
    proc = expr.ar("run", check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    line = proc.stderr.strip()
    assert len(line.splitlines()) == 1 and "checkpoint_glob 'ck*/*.json'" in line and "output_fixed" in line, line
    assert expr.ar("propose", "--list").stdout.count("c0") == len(ids)  # nothing moved: both still queued


def test_the_output_option_points_every_run_into_its_own_folder(rendered_once, tmp_path, lock_dir):
    expr = rendered_once("guard_host", OPTION, tmp_path / "host")
    first = expr.run()
    assert first["status"] == "ok" and first["checkpoint"]["source"].endswith("model.json"), first
    assert json.loads(next((expr.dir / "best_ckpt").rglob("model.json")).read_text())["lr"] == 0.05
    assert not (expr.host / "out").exists()  # the host's default folder is never written
    expr.ar("session", "--devices", "0,1", "--keep-checkpoints", "5")
    base = expr.train_py.read_text()
    for lr in (0.1, 0.02):
        expr.train_py.write_text(base.replace("'steps': 200", f"'steps': 200, 'lr': {lr}", 1))
        expr.ar("propose")
    expr.ar("run")
    for run_id, lr in (("r0002", 0.1), ("r0003", 0.02)):
        res = json.loads((expr.dir / "runs" / run_id / "result.json").read_text())
        assert res["status"] == "ok" and res["valid"], res["note"]
        kept = expr.dir / "runs" / run_id / "ckpt" / "model.json"
        if res["verdict"] != "advance":
            assert json.loads(kept.read_text())["lr"] == lr


def test_an_output_option_that_names_a_file_gets_that_file_in_the_run_folder(rendered_once, tmp_path):
    """`--save model.pt` (detected with --defaults): each run saves runs/rNNNN/out/model.pt, and that
    file is the one promoted; pointing the option at a folder would have crashed `open(path, "wb")`."""
    expr = rendered_once("testmetric_host", {"slug": "261203-savefile"}, tmp_path / "host")
    cfg = json.loads((expr.dir / "experiment.json").read_text())
    assert cfg["output_key"] == "save" and cfg["checkpoint_glob"] == "model.pt", cfg
    result = expr.run()
    assert result["status"] == "ok" and result["verdict"] == "advance", result
    assert not (expr.host / "model.pt").exists()  # nothing written at the shared path
    promoted = [p.name for p in (expr.dir / "best_ckpt").rglob("*") if p.is_file()]
    assert "model.pt" in promoted, promoted
