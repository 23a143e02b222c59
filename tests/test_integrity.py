"""Metric integrity building blocks on a real host: the protected-file manifest, the static
guard on train.py, the independent evaluator and the evaluate() bodies detection proposes.

The host (tests/hosts/eval_host) keeps its evaluation in its own module,
eval_host/evaluation.py; one entry point per checkpoint shape.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import EVAL_ANSWERS, HOLDOUT_BODY, REPO, Experiment, make_host, render

from arunner.core.layout import MANIFEST  # noqa: E402
from arunner.integrity.checks import evaluate, protect

sys.path.insert(0, str(REPO / "extensions"))
from detection.evaluation import propose_evaluate  # noqa: E402

BASE = EVAL_ANSWERS
PATCH = "import eval_host.evaluation as ev\nev.evaluate_model = lambda model: 0.0\n"
SANDBOX = "# ---- monkey-patch sandbox: patch host code here before training starts ----\n"
VAL_RE = re.compile(r"val_loss=([0-9.eE+-]+|nan)")


def train(host: Path, *cmd: str) -> float:
    """Run a training command in the host root; the val_loss it printed."""
    proc = subprocess.run([sys.executable, *cmd], cwd=host, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return float(VAL_RE.findall(proc.stdout)[-1])


def patch_sandbox(expr: Experiment, code: str) -> int:
    """Insert code right after the sandbox header; returns the first inserted line's number."""
    text = expr.train_py.read_text()
    assert SANDBOX in text
    line = text[: text.index(SANDBOX)].count("\n") + 2
    expr.train_py.write_text(text.replace(SANDBOX, SANDBOX + code, 1))
    return line


@pytest.fixture(scope="module")
def holdout_expr(tmp_path_factory) -> Experiment:
    host = make_host("eval_host", tmp_path_factory.mktemp("integrity") / "eval_host")
    render(host, {**BASE, "slug": "261125-holdout", "evaluate_code": HOLDOUT_BODY, "holdout_metrics": "[test_loss]"})
    return Experiment(host, "261125-holdout")


# ---------------------------------------------------------------- manifest


def test_manifest_sees_edits_of_evaluation_code_and_prepare_until_accepted(tmp_path):
    host = make_host("eval_host", tmp_path / "eval_host")
    code, _ = propose_evaluate(host, "eval_host.train")
    render(host, {**BASE, "slug": "261125-manifest", "evaluate_code": code})
    expr = host / ".autoresearch" / "261125-manifest"
    big = host / "data" / "train.bin"
    big.parent.mkdir()
    big.write_bytes(os.urandom(protect.FULL_HASH_MAX_BYTES + 1))  # large: a sampled digest

    assert protect.ensure(expr, host, ["data/*.bin"]).changed == []  # first run: recorded
    recorded = protect.load(expr)["files"]
    for rel in ("eval_host/evaluation.py", "eval_host/model.py", "eval_host/data.py", "data/train.bin"):
        assert rel in recorded, rel  # prepare.py's imports, followed transitively, and the glob
    assert {".autoresearch/261125-manifest/prepare.py", ".autoresearch/261125-manifest/ar.py"} <= set(recorded)
    assert ".autoresearch/261125-manifest/arunner/integrity/protect.py" in recorded
    assert not any(rel.endswith("/train.py") and rel.startswith(".autoresearch") for rel in recorded)
    assert recorded["data/train.bin"]["digest"].startswith("sampled:")

    clean = protect.check(expr, host)
    assert clean.changed == [] and clean.hashed == []  # nothing moved: nothing read

    evaluation = host / "eval_host" / "evaluation.py"
    original = evaluation.read_text()
    st = evaluation.stat()
    evaluation.write_text(original.replace("mse_loss(model(x), y)", "mse_loss(model(x), y) * 0", 1)[: len(original)])
    os.utime(evaluation, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size, mtime set back: ctime still moves
    assert protect.check(expr, host).changed == ["eval_host/evaluation.py"]

    evaluation.write_text(original)  # restored by hand: same content, new stat
    restored = protect.check(expr, host)
    assert restored.changed == [] and restored.hashed == ["eval_host/evaluation.py"]
    assert protect.check(expr, host).hashed == []  # the new stat was written back

    prepare = expr / "prepare.py"
    prepare.write_text(prepare.read_text().replace('"min"', '"max"'))
    with big.open("r+b") as fh:
        fh.write(b"tampered")
    changed = protect.check(expr, host).changed
    assert sorted(changed) == [".autoresearch/261125-manifest/prepare.py", "data/train.bin"]
    message = protect.changed_message(changed, expr)
    assert (
        "prepare.py" in message
        and "stop and report this to the person" in message
        and "--accept" not in message
        and "\n" not in message
    )

    assert sorted(protect.accept(expr, host, ["data/*.bin"])) == sorted(changed)
    assert protect.check(expr, host).changed == []
    (host / "eval_host" / "data.py").unlink()
    assert protect.check(expr, host).changed == ["eval_host/data.py"]  # a deleted file is a change


def test_damaged_manifest_is_one_line(tmp_path):
    (tmp_path / MANIFEST).write_text("{not json")
    with pytest.raises(protect.UserError, match="protected-file manifest .* is not valid JSON"):
        protect.check(tmp_path, tmp_path)
    with pytest.raises(protect.UserError, match="must be relative to the project root"):
        protect.default_paths(tmp_path, tmp_path, ["../outside/*"])


# ---------------------------------------------------------------- static guard


@pytest.mark.parametrize(
    "code, reason",
    [
        ('print(f"val_loss={0.0}")', "prints the primary metric"),
        ('print("val_loss: %f" % 0.0)', "prints the primary metric"),
        ('import sys\nsys.stdout.write("val_loss=0.0\\n")', "prints the primary metric"),
        ('import logging\nlogging.info("val_loss=%s", 0.0)', "logs the primary metric"),
        ('import wandb\nwandb.log({"val_loss": 0.0})', "logs the primary metric"),
        ('writer = None\nwriter.add_scalar("val_loss", 0.0, 1)', "logs the primary metric"),
        ("import eval_host.evaluation as ev\nev.evaluate_model = lambda model: 0.0", "evaluate_model"),
        ('import eval_host.evaluation as ev\nsetattr(ev, "evaluate_model", len)', "evaluate_model"),
        ("import eval_host.evaluation as ev\nev.evaluate_model.__code__ = len.__code__", "evaluate_model"),
        ('import eval_host.evaluation as ev\nvars(ev)["evaluate_model"] = len', "evaluate_model"),
        ('from unittest import mock\nmock.patch("eval_host.evaluation.evaluate_model", len).start()', "evaluate_model"),
        ("import prepare\nprepare.evaluate = len", "evaluate"),
        ('import prepare\nsetattr(prepare, "evaluate", len)', "evaluate"),
        ('import wandb\nwandb.run.summary["val_loss"] = 0.0', "logs the primary metric"),
    ],
)
def test_guard_refuses_metric_prints_and_rebinding_with_the_line(holdout_expr, code, reason):
    names = protect.protected_names(holdout_expr.dir / "prepare.py", holdout_expr.host)
    assert "evaluate_model" in names and "holdout_loss" in names and "prepare.evaluate" in names
    assert "Net" not in names  # the model class stays patchable: that is the research
    source = holdout_expr.train_py.read_text()
    assert protect.guard_train_py(source, "val_loss", names) is None  # the rendered file passes
    head, _, tail = source.partition(SANDBOX)
    patched = head + SANDBOX + code + "\n" + tail
    offence = protect.guard_train_py(patched, "val_loss", names)
    assert offence is not None and reason in offence.reason
    last = code.splitlines()[-1]
    assert offence.line == head.count("\n") + 1 + len(code.splitlines()) and offence.text == last.strip()
    assert str(offence).startswith(f"train.py line {offence.line}: ")


@pytest.mark.parametrize(
    "code",
    [
        'print("train_loss=0.3")',
        'print(f"{name}={value}")',
        'print("val_loss_smoothed=1")',
        "import torch\nmodel = torch.nn.Linear(1, 1)\nmodel.evaluate = len",  # not prepare's evaluate
        "import eval_host.model as m\nm.Net.forward = lambda self, x: x",  # an architecture patch
        'CLI_OVERRIDES = {}\nCLI_OVERRIDES["evaluate"] = True\nsetattr(object(), "evaluate", 1)',
    ],
)
def test_guard_lets_ordinary_code_through(holdout_expr, code):
    names = protect.protected_names(holdout_expr.dir / "prepare.py", holdout_expr.host)
    assert protect.guard_train_py(code, "val_loss", names) is None


@pytest.mark.parametrize(
    "pattern, cli_args",
    [("argparse-cli", "{lr: 0.1}"), ("hydra", "['lr=0.1']"), ("function", "{lr: 0.1}"), ("custom", None)],
)
def test_guard_passes_the_rendered_train_py_of_every_entry_pattern(minimal_host, pattern, cli_args):
    data = {
        "entry_pattern": pattern,
        "entry_main_module": "minipkg.train",
        "metric_backend": "log",
        "primary_metric": "eval/loss",
        "slug": "261125-guard",
        "seconds": "30",
    }
    if cli_args:
        data["cli_args"] = cli_args
    render(minimal_host, data)
    expr = minimal_host / ".autoresearch" / "261125-guard"
    names = [*protect.protected_names(expr / "prepare.py", minimal_host), "evaluate_model", "evaluate"]
    source = (expr / "train.py").read_text()
    assert protect.guard_train_py(source, "eval/loss", names) is None
    assert not evaluate.has_evaluator(expr / "prepare.py")  # no evaluate_code: the commented stub
    assert "def evaluate(checkpoint_path):" in (expr / "prepare.py").read_text()  # ... which says what to write
    assert evaluate.holdout_names(expr / "prepare.py") == []


# ---------------------------------------------------------------- independent evaluator


def test_evaluator_ignores_a_sandbox_patch_and_agrees_with_an_honest_run(holdout_expr, tmp_path):
    expr, host = holdout_expr, holdout_expr.host
    assert evaluate.has_evaluator(expr.dir / "prepare.py")
    assert evaluate.holdout_names(expr.dir / "prepare.py") == ["test_loss"]
    baseline = expr.train_py.read_text()
    ckpt = host / "checkpoints" / "model.pt"

    honest = train(host, str(expr.train_py))
    run_dir = tmp_path / "r0001"
    run_dir.mkdir()
    result = evaluate.run_evaluator(expr.dir, host, ckpt, run_dir, timeout_s=120)
    assert result.ok, result.error
    assert set(result.metrics) == {"val_loss"} and set(result.holdout) == {"test_loss"}  # holdout kept apart
    assert evaluate.compare("val_loss", honest, result.metrics["val_loss"]) == (True, "")
    assert (run_dir / "eval.log").exists() and result.wall_s > 0 and result.evaluate_s is not None

    patch_sandbox(expr, PATCH)
    try:
        reported = train(host, str(expr.train_py))
    finally:
        expr.train_py.write_text(baseline)
    assert reported == 0.0  # the patch fooled the training process ...
    run_dir = tmp_path / "r0002"
    run_dir.mkdir()
    gamed = evaluate.run_evaluator(expr.dir, host, ckpt, run_dir, timeout_s=120)
    assert gamed.ok, gamed.error
    assert gamed.metrics["val_loss"] == pytest.approx(honest, rel=1e-5)  # ... not the evaluator (printed to 6 digits)
    agree, note = evaluate.compare("val_loss", reported, gamed.metrics["val_loss"])
    assert not agree and "val_loss=0" in note and f"{gamed.metrics['val_loss']:.6g}" in note


def test_evaluator_crash_is_reported_with_its_last_line(holdout_expr, tmp_path):
    result = evaluate.run_evaluator(holdout_expr.dir, holdout_expr.host, tmp_path / "missing.pt", tmp_path)
    assert not result.ok and result.metrics == {}
    assert "FileNotFoundError" in result.error and "missing.pt" in result.error
    assert "FileNotFoundError" in (tmp_path / "eval.log").read_text()


def test_evaluator_time_limit_and_bad_return_value(tmp_path):
    host = make_host("minimal", tmp_path / "minimal")
    expr = host / ".autoresearch" / "x"
    expr.mkdir(parents=True)
    (expr / "prepare.py").write_text("import time\n\ndef evaluate(checkpoint_path):\n    time.sleep(60)\n")
    slow = evaluate.run_evaluator(expr, host, host / "nothing", tmp_path, timeout_s=1)
    assert not slow.ok and "past its 1 s limit" in slow.error and slow.wall_s < 30
    (expr / "prepare.py").write_text("def evaluate(checkpoint_path):\n    return 0.5\n")
    bad = evaluate.run_evaluator(expr, host, host / "nothing", tmp_path)
    assert not bad.ok and "returned float, expected dict[str, float]" in bad.error
    (expr / "prepare.py").write_text("import train\n\ndef evaluate(checkpoint_path):\n    return {'x': 1}\n")
    (expr / "train.py").write_text("print('the experiment train.py was imported')\n")
    shadow = evaluate.run_evaluator(expr, host, host / "nothing", tmp_path)
    assert not shadow.ok and "No module named 'train'" in shadow.error  # the experiment folder is not on sys.path


def test_compare_tolerance():
    assert evaluate.compare("loss", 1.0, 1.0005)[0]
    agree, note = evaluate.compare("loss", 1.0, 1.01)
    assert not agree and "reported loss=1" in note and "1.01" in note
    assert evaluate.compare("loss", None, 0.3) == (True, "loss 0.3 from the evaluator (training reported none)")
    assert not evaluate.compare("loss", 0.3, float("nan"))[0]


# ---------------------------------------------------------------- proposed bodies, per checkpoint shape

SHAPES = [
    ("eval_host.train", "checkpoints/model.pt", "state dict beside constructor arguments"),
    ("eval_host.train_pickle", "checkpoints/model.pt", "whole pickled model"),
    ("eval_host.train_hf", "checkpoints/hf", "save_pretrained folder"),
    ("eval_host.train_lit", "checkpoints/model.ckpt", "Lightning checkpoint"),
]


@pytest.mark.parametrize("entry, ckpt, shape", SHAPES, ids=[s[0].rpartition(".")[2] for s in SHAPES])
def test_each_checkpoint_shape_evaluates_through_the_proposed_body(tmp_path, entry, ckpt, shape):
    host = make_host("eval_host", tmp_path / "eval_host")
    code, why = propose_evaluate(host, entry)
    assert code is not None and why.startswith(shape) and "eval_host.evaluation.evaluate_model" in why
    render(host, {**BASE, "entry_main_module": entry, "slug": "261125-shape", "evaluate_code": code})
    expr = host / ".autoresearch" / "261125-shape"
    reported = train(host, "-m", entry)
    result = evaluate.run_evaluator(expr, host, host / ckpt, tmp_path, timeout_s=180)
    assert result.ok, result.error
    assert evaluate.compare("val_loss", reported, result.metrics["val_loss"]) == (True, "")


def test_no_proposal_says_what_is_missing():
    hosts = REPO / "tests" / "hosts"
    assert propose_evaluate(hosts / "minimal", "minipkg.train") == (
        None,
        "no checkpoint save found (torch.save, save_pretrained, a Lightning Trainer)",
    )
    code, why = propose_evaluate(hosts / "argparse_host", "hfargs_lm.train")
    assert code is None and "could not be rebuilt" in why
    assert propose_evaluate(hosts / "minimal", "nope.train")[0] is None


def test_no_evaluator_proposed_from_a_script_that_trains_when_imported():
    code, why = propose_evaluate(REPO / "tests" / "hosts" / "wordlm_host", "main")
    assert code is None and "runs training when imported" in why
