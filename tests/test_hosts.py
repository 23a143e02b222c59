"""The keep/discard loop end to end on real training hosts, one per entry pattern.

Each host trains a tiny torch model for a few seconds on CPU and reports its
metric its own way (log, tensorboard, wandb offline, Lightning); each saves its
checkpoints in its own layout. The same agent script runs on all of them:
baseline, a worse edit, a crashing edit, a hanging edit, a NaN edit.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field

import pytest
from conftest import Experiment, make_host, render

from arunner.state.ledger import RESULT_FIELDS

OVERRIDES_RE = re.compile(r"^CLI_OVERRIDES = (?:\{\}|\[\]|\{\n.*?^\}|\[\n.*?^\])$", re.M | re.S)
CUSTOM_CALL = """def run_host():
    from lit_host.cli import run

    return run(**CLI_OVERRIDES)"""


@dataclass
class Host:
    name: str
    data: dict
    worse: object
    nan: object
    ckpt_kind: str
    wire: str = ""  # a one-time edit for the custom pattern (the user's own wiring)
    extra: dict = field(default_factory=dict)


HOSTS = [
    Host(
        "argparse_host",
        {
            "entry_pattern": "argparse-cli",
            "entry_main_module": "hfargs_lm.train",
            "cli_args": "{}",
            "resume_flag_name": "resume_from_checkpoint",
            "metric_backend": "log",
            "primary_metric": "eval/loss",
            "checkpoint_glob": "checkpoints/*.pt",
            "hard_constraints": '["peak_mem_mb <= 100000"]',
        },
        worse={"learning_rate": 1e-4},
        nan={"learning_rate": 1e30},
        ckpt_kind="file",
    ),
    Host(
        "hydra_host",
        {
            "entry_pattern": "hydra",
            "entry_main_module": "hydra_app.train",
            "cli_args": "[]",
            "resume_flag_name": "trainer.resume_from_checkpoint",
            "metric_backend": "tensorboard",
            "tb_events_glob": "outputs/*/*/tb/events.out.tfevents.*",
            "primary_metric": "eval/loss",
            "checkpoint_glob": "outputs/*/*/checkpoints/*.pt",
        },
        worse=["optimizer.lr=1e-4"],
        nan=["optimizer.lr=1e30"],
        ckpt_kind="file",
    ),
    Host(
        "function_host",
        {
            "entry_pattern": "function",
            "entry_main_module": "fn_host.train",
            "cli_args": "{}",
            "metric_backend": "wandb",
            "primary_metric": "eval/loss",
            "checkpoint_glob": "out/checkpoint-*",
        },
        worse={"lr": 1e-4},
        nan={"lr": 1e30},
        ckpt_kind="dir",
    ),
    Host(
        "custom_host",
        {
            "entry_pattern": "custom",
            "metric_backend": "tensorboard",
            "primary_metric": "val_loss",
            "tb_events_glob": "lightning_logs/*/events.out.tfevents.*",
            "checkpoint_glob": "lightning_logs/*/checkpoints/*.ckpt",
        },
        worse={"lr": 1e-4},
        nan={"lr": 1e30},
        ckpt_kind="file",
        wire=CUSTOM_CALL,
    ),
]


def set_overrides(expr: Experiment, value) -> None:
    text = expr.train_py.read_text()
    assert OVERRIDES_RE.search(text), "CLI_OVERRIDES not found"
    expr.train_py.write_text(OVERRIDES_RE.sub(lambda _: f"CLI_OVERRIDES = {value!r}", text, count=1))


def sha(path) -> str:
    if path.is_dir():
        return hashlib.sha256(b"".join(sha(p).encode() for p in sorted(path.rglob("*")) if p.is_file())).hexdigest()
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(params=HOSTS, ids=[h.name for h in HOSTS])
def host_expr(request, tmp_path):
    spec: Host = request.param
    root = make_host(spec.name, tmp_path / spec.name)
    slug = f"261125-{spec.name.replace('_', '-')}"
    render(root, {**spec.data, "slug": slug, "seconds": "90", "goal": "lower the loss"})
    expr = Experiment(root, slug)
    if spec.wire:
        text = expr.train_py.read_text()
        text = re.sub(r"def run_host\(\):\n(?:    .*\n|\n)*?    raise SystemExit\(.*\)\n", spec.wire + "\n", text)
        expr.train_py.write_text(text)
        (expr.dir / ".ar-baseline.py").write_text(text)  # wiring the call once is part of setup
    return spec, expr


def test_keep_discard_loop(host_expr):
    spec, expr = host_expr

    baseline = expr.run()
    assert (baseline["status"], baseline["verdict"]) == ("ok", "advance"), baseline["note"]
    assert isinstance(baseline["primary"]["value"], float)
    assert baseline["checkpoint"]["method"] == "rename" and baseline["checkpoint"]["kind"] == spec.ckpt_kind
    best_ckpt = expr.dir / "best_ckpt" / expr.best()["name"]
    assert best_ckpt.exists() and expr.best()["run_id"] == "r0001"
    best_hash = sha(best_ckpt)
    kept = expr.train_py.read_bytes()
    assert kept == (expr.dir / "runs" / "r0001" / "train.py").read_bytes()

    set_overrides(expr, spec.worse)
    worse = expr.run()
    assert (worse["status"], worse["verdict"]) == ("ok", "revert"), worse["note"]
    assert worse["primary"]["value"] > baseline["primary"]["value"]
    assert expr.train_py.read_bytes() == kept  # restored byte for byte
    assert sha(best_ckpt) == best_hash  # the host wrote its path again; the best did not change

    expr.edit("# Example:", "raise RuntimeError('agent bug')\n# Example:")
    crash = expr.run()
    assert (crash["status"], crash["verdict"], crash["exit_code"]) == ("crash", "crash", 1)
    assert "agent bug" in crash["note"] and expr.train_py.read_bytes() == kept

    expr.edit("# Example:", "import time\ntime.sleep(600)\n# Example:")
    hang = expr.run("--seconds", "4")
    assert (hang["status"], hang["verdict"]) == ("timeout", "timeout")
    assert hang["exit_code"] is None  # stopped by the runner (how fast is bench/bench_watchdog.py's job)
    assert expr.train_py.read_bytes() == kept

    set_overrides(expr, spec.nan)
    nan = expr.run()
    assert (nan["status"], nan["verdict"], nan["valid"]) == ("invalid", "revert", False)
    assert "nan" in nan["note"] and expr.train_py.read_bytes() == kept

    assert [(r["status"], r["verdict"]) for r in expr.rows()] == [
        ("ok", "advance"),
        ("ok", "revert"),
        ("crash", "crash"),
        ("timeout", "timeout"),
        ("invalid", "revert"),
    ]
    for run in expr.dir.joinpath("runs").glob("r*"):
        text = (run / "result.json").read_text()
        assert len(text.encode()) <= 2048 and set(json.loads(text)) == set(RESULT_FIELDS)
    status = expr.ar("status", "--compact").stdout.splitlines()
    assert len(status) <= 10
    assert any("at r0001" in line for line in status)
    assert any(
        "advance=1" in line and "revert=2" in line and "crash=1" in line and "timeout=1" in line for line in status
    )
    assert expr.best()["run_id"] == "r0001" and sha(best_ckpt) == best_hash


def test_chained_child_resumes_from_parent_best(tmp_path):
    root = make_host("argparse_host", tmp_path / "argparse_host")
    spec = HOSTS[0]
    render(root, {**spec.data, "slug": "261125-parent", "seconds": "90"})
    parent = Experiment(root, "261125-parent")
    assert parent.run()["verdict"] == "advance"
    out = parent.ar(
        "chain",
        "--new-slug",
        "261125-child",
        "--goal",
        "fine-tune longer",
        "--rationale",
        "the parent plateaued; continue from its best weights",
    ).stdout
    assert "chained 261125-child" in out
    child = Experiment(root, "261125-child")
    decision = json.loads((child.dir / "chain_decision.json").read_text())
    assert decision["parent_expr"] == "261125-parent" and decision["parent_best_run_id"] == "r0001"
    assert "parent_expr: 261125-parent" in (child.dir / ".copier-answers.yml").read_text()
    assert "Chained from `261125-parent`" in (child.dir / "program.md").read_text()
    result = child.run()
    parent_ckpt = parent.dir / "best_ckpt" / "model.pt"
    assert f"resumed_from={parent_ckpt}" in (child.dir / "runs" / "r0001" / "run.log").read_text()
    assert result["status"] == "ok"
    # Without the parent's checkpoint the child refuses with one line.
    parent_ckpt.rename(parent_ckpt.with_suffix(".moved"))
    proc = child.ar("run", check=False)
    assert proc.returncode == 2 and "parent checkpoint" in proc.stderr and "Traceback" not in proc.stderr


def test_full_prep_self_test_guards_the_first_run(tmp_path):
    root = make_host("function_host", tmp_path / "function_host")
    render(root, {**HOSTS[2].data, "slug": "261125-prep"})
    expr = Experiment(root, "261125-prep")
    prepare = (expr.dir / "prepare.py").read_text()
    assert "FULL_PREP = True" in prepare and "from fn_host.data import build_train_loader" in prepare
    data = root / "fn_host" / "data.py"
    data.write_text(
        data.read_text().replace(
            "def build_train_loader(",
            "def build_train_loader(*_, **__):\n    raise FileNotFoundError('shard 0 missing')\n\n\ndef _unused(",
            1,
        )
    )
    proc = expr.ar("run", check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "prepare.py self-test failed" in proc.stderr and "shard 0 missing" in proc.stderr
    assert not list((expr.dir / "runs").iterdir())  # nothing was launched
