"""Metric integrity through `ar.py run`, end to end: real renders of tests/hosts/eval_host (its
evaluation lives in eval_host/evaluation.py), real CPU training of a few seconds.

Every gaming attempt fails to advance and is named in the run's note; an honest
improvement still advances; the holdout metric is stored, never printed by `run`.
"""

from __future__ import annotations

import json
import time

import pytest
from conftest import EVAL_ANSWERS, HOLDOUT_BODY, git, make_host, pid_alive, render

BASE = EVAL_ANSWERS
WITH_HOLDOUT = {**BASE, "evaluate_code": HOLDOUT_BODY, "holdout_metrics": "[test_loss]"}
SANDBOX = "# ---- monkey-patch sandbox: patch host code here before training starts ----\n"
# Patches the host's evaluation in the training process, dodging the static guard (no literal name).
SNEAKY_PATCH = 'import eval_host.evaluation as ev\nvars(ev).update({"evaluate_" + "model": lambda model: 0.0})\n'
REWRITE_EVAL = (
    "import pathlib, eval_host.evaluation as ev\n"
    "p = pathlib.Path(ev.__file__)\n"
    'p.write_text(p.read_text().replace("mse_loss(model(x), y).item()", "0.0"))\n'
)


def patch_sandbox(expr, code: str) -> None:
    text = expr.train_py.read_text()
    assert SANDBOX in text
    expr.train_py.write_text(text.replace(SANDBOX, SANDBOX + code, 1))


@pytest.fixture
def expr(rendered_once, tmp_path):
    return rendered_once("eval_host", WITH_HOLDOUT, tmp_path / "eval_host")


@pytest.fixture
def baselined(baselined_once, tmp_path):
    """`expr` after its baseline r0001 advanced (the baseline runs once per session; see conftest)."""
    expr, baseline = baselined_once("eval_host", WITH_HOLDOUT, tmp_path / "eval_host")
    assert baseline["run_id"] == "r0001" and baseline["verdict"] == "advance", baseline["note"]
    return expr


def test_honest_improvement_advances_with_the_evaluator_agreeing_and_holdout_hidden(expr):
    assert "integrity: evaluator" in expr.ar("status").stdout
    proc = expr.ar("run")
    assert "test_loss" not in proc.stdout + proc.stderr  # the holdout is never printed by run
    first = json.loads((expr.dir / "runs" / "r0001" / "result.json").read_text())
    assert first["verdict"] == "advance", first["note"]
    assert first["reported"] == pytest.approx(first["primary"]["value"], rel=1e-3)  # printed to 6 digits
    assert set(first["holdout"]) == {"test_loss"} and "test_loss" not in first["metrics"]
    assert first["evaluation"]["wall_s"] > 0 and (expr.dir / "runs" / "r0001" / "eval.log").exists()
    expr.edit("'steps': 60", "'steps': 200")
    second = expr.run()
    assert second["verdict"] == "advance", second["note"]
    assert second["primary"]["value"] < first["primary"]["value"]
    assert second["reported"] == pytest.approx(second["primary"]["value"], rel=1e-3)
    assert "report.md" in expr.ar("report").stdout
    report = (expr.dir / "report.md").read_text()
    assert "test_loss (holdout)" in report and f"{second['holdout']['test_loss']:.6g}" in report
    expr.ar("report", "--plot")
    assert (expr.dir / "progress.png").stat().st_size > 0  # holdout drawn against the primary


@pytest.mark.parametrize("mode", ["evaluator", "off"])
def test_patched_evaluation_function_advances_only_without_the_evaluator(expr, mode):
    expr.person("session", "--integrity", mode)
    baseline = expr.run()
    assert baseline["verdict"] == "advance", baseline["note"]
    patch_sandbox(expr, SNEAKY_PATCH)
    gamed = expr.run()
    if mode == "off":  # what the evaluator prevents: the forged 0.0 would have been kept
        assert gamed["verdict"] == "advance" and gamed["primary"]["value"] == 0.0
        return
    assert gamed["status"] == "invalid" and gamed["verdict"] == "revert"
    assert "reported val_loss=0 disagrees with the evaluator's" in gamed["note"]
    assert gamed["reported"] == 0.0 and gamed["primary"]["value"] > 0
    assert SNEAKY_PATCH not in expr.train_py.read_text()  # train.py restored to the best
    assert expr.best()["run_id"] == baseline["run_id"]


def test_train_py_printing_the_metric_is_refused_before_training(baselined):
    expr = baselined
    patch_sandbox(expr, 'print("val_loss=0.0")\n')
    result = expr.run()
    assert result["status"] == "invalid" and result["verdict"] == "revert"
    assert "refused before training" in result["note"] and 'print("val_loss=0.0")' in result["note"]
    assert "prints the primary metric val_loss itself" in result["note"]
    assert not (expr.dir / "runs" / result["run_id"] / "run.log").exists()  # it never trained
    assert 'print("val_loss=0.0")' not in expr.train_py.read_text()  # restored to the best
    assert expr.best()["run_id"] == "r0001"


def test_rewritten_evaluation_module_is_invalid_and_blocks_until_restored_or_accepted(baselined):
    expr = baselined
    evaluation = expr.host / "eval_host" / "evaluation.py"
    patch_sandbox(expr, REWRITE_EVAL)
    tampered = expr.run()
    assert "mse_loss(model(x), y).item()" not in evaluation.read_text()  # the sandbox did rewrite it
    assert tampered["status"] == "invalid" and "protected files changed: eval_host/evaluation.py" in tampered["note"]
    blocked = expr.ar("run", check=False)
    assert blocked.returncode == 2 and blocked.stdout == ""
    assert len(blocked.stderr.strip().splitlines()) == 1 and "eval_host/evaluation.py" in blocked.stderr
    assert "stop and report this to the person" in blocked.stderr and "--accept" not in blocked.stderr
    assert not (expr.dir / "runs" / "r0003").exists()
    assert expr.ar("protect", check=False).returncode == 1
    git(expr.host, "checkout", "--", "eval_host/evaluation.py")  # a person restores it
    assert expr.run()["verdict"] in ("advance", "revert")  # not blocked any more
    evaluation.write_text(evaluation.read_text() + "\n# reviewed by a person\n")  # a deliberate change ...
    assert expr.ar("run", check=False).returncode == 2
    accepted = expr.person("protect", "--accept").stdout
    assert "accepted the change of eval_host/evaluation.py" in accepted  # ... accepted, and said so
    assert expr.run()["status"] == "ok"


def test_files_mode_without_an_evaluator_and_the_proposed_default(rendered_once, tmp_path):
    expr = rendered_once("eval_host", {**BASE, "protected_globs": "[pyproject.toml]"}, tmp_path / "eval_host")
    prepare = (expr.dir / "prepare.py").read_text()
    assert "def evaluate(checkpoint_path):" in prepare and "evaluate_model" in prepare  # proposed by detection
    assert json.loads((expr.dir / "experiment.json").read_text())["protected_globs"] == ["pyproject.toml"]
    program = (expr.dir / "program.md").read_text()
    assert "## Integrity" in program and "never" in program and "`pyproject.toml`" in program
    text = prepare.split("def evaluate(checkpoint_path):")[0] + "\nFOO = 1\n"
    (expr.dir / "prepare.py").write_text(text)  # no evaluate() any more, before the first run
    assert "integrity: files" in expr.ar("status").stdout
    bad = expr.ar("session", "--integrity", "evaluator", check=False)
    assert bad.returncode == 2 and "needs evaluate(checkpoint_path) in prepare.py" in bad.stderr
    result = expr.run()
    assert result["verdict"] == "advance" and result["evaluation"] is None and result["reported"] is None
    with open(expr.host / "pyproject.toml", "a") as fh:  # a user glob is protected like the evaluation code
        fh.write("# edited\n")
    blocked = expr.ar("run", check=False)
    assert blocked.returncode == 2 and "protected files changed: pyproject.toml" in blocked.stderr


def test_bad_integrity_value_is_one_line(expr):
    bad = expr.ar("session", "--integrity", "strict", check=False)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    assert "--integrity 'strict' must be one of off, files, evaluator" in bad.stderr


@pytest.mark.parametrize(
    "key, value, says",
    [
        ("evaluate_code", "return {'val_loss': (1.0}", "is not a valid Python function body"),
        ("protected_globs", "[/etc/passwd]", "entry '/etc/passwd' must stay inside the project root"),
        ("protected_globs", "data/*.txt", "must be a list of globs relative to the project root"),
        ("holdout_metrics", "{a: 1}", "must be a list of metric names"),
    ],
)
def test_bad_integrity_answers_are_one_line(tmp_path, key, value, says):
    host = make_host("eval_host", tmp_path / "eval_host")
    proc = render(host, {**BASE, key: value}, expect_ok=False)
    line = [ln for ln in proc.stderr.splitlines() if ln.startswith("bad answer")]
    assert proc.returncode != 0 and len(line) == 1, proc.stderr[-1500:]
    assert line[0].startswith(f"bad answer {key}=") and says in line[0]
    assert "Traceback" not in proc.stderr and not (host / ".autoresearch" / BASE["slug"]).exists()


# Sleeps (and says its pid) only while the project holds a file named `slow`.
SLOW_BODY = """import os, time
if os.path.exists("slow"):
    with open("eval.pid", "w") as fh:
        fh.write(str(os.getpid()))
    time.sleep(120)
return {"val_loss": 1.0}
"""


def test_runner_killed_during_evaluation_is_repaired_and_the_evaluator_swept(rendered_once, tmp_path):
    expr = rendered_once("eval_host", {**BASE, "evaluate_code": SLOW_BODY}, tmp_path / "eval_host")
    (expr.host / "slow").write_text("")
    runner = expr.start_run(wait_for="eval.log")
    pid_file = expr.host / "eval.pid"
    deadline = time.monotonic() + 60
    while not pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    evaluator = int(pid_file.read_text())
    runner.kill()  # SIGKILL mid-evaluation: no decision.json yet
    runner.wait()
    assert pid_alive(evaluator) and not (expr.dir / "runs" / "r0001" / "decision.json").exists()
    (expr.host / "slow").unlink()
    expr.run()  # repairs r0001 first
    first = json.loads((expr.dir / "runs" / "r0001" / "result.json").read_text())
    assert first["status"] == "crash" and "killed before recording" in first["note"]
    assert not pid_alive(evaluator)  # swept by the run's marker
