"""What the agent is told, checked as an agent holding only program.md would use it: the budget and
counts on the first line, the refusal after STOP, project-root paths it can run as printed, crashes
named by their exception, the folded tail, the baseline and unchanged-train.py remarks, the knobs."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys

import pytest
from conftest import REPO, Experiment, answers, git, make_host, render

SLUG = "261125-minimal"
PREFIX = f"python .autoresearch/{SLUG}/ar.py"


def run_printed(expr: Experiment, command: str) -> subprocess.CompletedProcess:
    """A command exactly as the runner printed it, from the project root (`python` = this interpreter)."""
    words = shlex.split(command)
    assert words[0] == "python", command
    return subprocess.run([sys.executable, *words[1:]], cwd=expr.host, capture_output=True, text=True, timeout=120)


def test_first_line_shows_budget_run_count_and_plateau(minimal_expr: Experiment):
    minimal_expr.ar("session", "--seconds", "20", "--max-runs", "10", "--plateau", "4")
    proc = minimal_expr.ar("run")
    head = proc.stdout.splitlines()[0]
    assert re.fullmatch(
        r"r0001 candidate ok/advance eval/loss=0\.05 \(\d+\.\ds of 20s\) · run 1/10 · plateau 0/4", head
    ), head
    assert len(proc.stdout.encode()) <= 400
    result = json.loads((minimal_expr.dir / "runs" / "r0001" / "result.json").read_text())
    assert result["budget_seconds"] == 20
    minimal_expr.edit("'lr': 0.1,", "'lr': 0.3,")
    second = minimal_expr.ar("run", "--seconds", "15").stdout.splitlines()[0]
    assert "s of 15s) · run 2/10 · plateau 1/4" in second, second
    status = minimal_expr.ar("status", "--compact").stdout.splitlines()
    assert len(status) <= 10 and "budget 20s per run" in status[0]
    assert any(
        line.startswith("last: r0002 ok/revert") and line.endswith("of 15s) · run 2/10 · plateau 1/4")
        for line in status
    )
    # unset parts are left out
    minimal_expr.ar("session", "--unlimited")
    minimal_expr.edit("'lr': 0.1,", "'lr': 0.2,")
    third = minimal_expr.ar("run").stdout.splitlines()[0]
    assert third.endswith("of 20s) · run 3"), third


def test_run_after_stop_is_refused_until_the_session_changes(minimal_expr: Experiment):
    minimal_expr.ar("session", "--max-runs", "1")
    assert minimal_expr.ar("run").stdout.splitlines()[-1] == "STOP: terminated_by=max_runs"
    ledger = (minimal_expr.dir / "results.tsv").read_text()
    proc = minimal_expr.ar("run", check=False)
    assert proc.returncode == 2 and proc.stdout == "" and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "terminated_by=max_runs" in proc.stderr
    assert f"{PREFIX} session --max-runs N" in proc.stderr and "--force" in proc.stderr
    assert sorted(p.name for p in (minimal_expr.dir / "runs").iterdir()) == ["r0001"]
    assert (minimal_expr.dir / "results.tsv").read_text() == ledger
    # the report command it names runs from the project root as printed
    report = re.search(r"\((python [^)]*report)\)", proc.stderr).group(1)
    assert run_printed(minimal_expr, report).returncode == 0 and (minimal_expr.dir / "report.md").exists()
    # --force runs once anyway; a changed session lets the loop go on
    assert minimal_expr.ar("run", "--force").stdout.startswith("r0002 ")
    minimal_expr.ar("session", "--stop")
    assert "terminated_by=manual" in minimal_expr.ar("run", check=False).stderr
    minimal_expr.ar("session", "--resume", "--max-runs", "5")
    assert minimal_expr.ar("run").stdout.startswith("r0003 ")


def test_baseline_then_unchanged_train_py_are_said(minimal_expr: Experiment):
    first = minimal_expr.run()
    assert "baseline: train.py as rendered" in first["note"]
    proc = minimal_expr.ar("run")  # nothing edited since: the best is re-run, and the output says so
    assert "train.py is unchanged from the best (r0001)" in proc.stdout
    minimal_expr.edit("'lr': 0.1,", "'lr': 0.3,")
    third = minimal_expr.run()
    assert third["note"] == "baseline"  # the RUN_NOTE alone: an edited train.py gets no remark


def test_last_run_note_wins():
    from arunner.state.snapshots import read_run_note

    assert read_run_note('RUN_NOTE = "a"\nx = 1\nRUN_NOTE = (\n    "b"\n)\n') == "b"
    assert read_run_note('RUN_NOTE: str = "typed"\ndef f(:\n') == "typed"  # a syntax error elsewhere is fine


CARET_CRASH = """
def _matmul():
    raise RuntimeError("shape mismatch in matmul" + "!" * 300 + "\\n  y = x @ w\\n      ^^^^^")
_matmul()
"""


def test_crash_names_the_exception_and_where_the_edit_lives(minimal_expr: Experiment):
    minimal_expr.edit('RUN_NOTE = "baseline"', f'RUN_NOTE = "{"a long note " * 30}"')
    minimal_expr.edit("# Example:", CARET_CRASH + "# Example:")
    proc = minimal_expr.ar("run")
    assert len(proc.stdout.encode()) <= 400 and len(proc.stdout.splitlines()) <= 3, proc.stdout
    result = json.loads((minimal_expr.dir / "runs" / "r0001" / "result.json").read_text())
    assert result["status"] == "crash"
    assert "RuntimeError: shape mismatch in matmul" in result["note"] and "last log line" not in result["note"]
    second = proc.stdout.splitlines()[1]
    assert "crash: RuntimeError: shape mismatch in matmul" in second
    snapshot = f".autoresearch/{SLUG}/runs/r0001/train.py"
    assert snapshot in second and (minimal_expr.host / snapshot).read_text().count("_matmul()") == 2
    tail = re.search(rf"see: ({re.escape(PREFIX)} tail --run r0001)", second).group(1)
    shown = run_printed(minimal_expr, tail)
    assert shown.returncode == 0 and snapshot in shown.stdout.splitlines()[0]
    assert "RuntimeError: shape mismatch in matmul" in shown.stdout


FOREIGN_CRASH = """
import json
json.loads("{bad json")
"""


def test_tail_folds_frames_inside_installed_packages_and_the_stdlib(minimal_expr: Experiment):
    minimal_expr.edit("# Example:", FOREIGN_CRASH + "# Example:")
    result = minimal_expr.run()
    assert "json.decoder.JSONDecodeError: Expecting property name enclosed in double quotes" in result["note"]
    lines = minimal_expr.ar("tail", "--run", "r0001").stdout.splitlines()
    assert lines[1].startswith("Traceback")
    assert any("train.py" in line and line.lstrip().startswith("File") for line in lines)
    folded = [line for line in lines if "folded" in line]
    assert len(folded) == 1 and re.search(r"\.\.\. \d+ frame\(s\) inside installed packages", folded[0])
    assert not any("json/decoder.py" in line or "site-packages" in line for line in lines)
    assert lines[-1].startswith("json.decoder.JSONDecodeError: Expecting property name")


def test_exception_line_rules():
    from arunner.core.logtail import exception_of, fold_frames

    caret = [
        "Traceback (most recent call last):",
        '  File "/p/train.py", line 3, in <module>',
        "    f()",
        "torch._dynamo.exc.Unsupported: call_function in skip_files",
        "  x = y[0]",
        "      ^",
        "wandb: Synced 1 run",
    ]
    assert exception_of(caret) == "torch._dynamo.exc.Unsupported: call_function in skip_files"
    frames = [
        "Traceback (most recent call last):",
        '  File "/p/train.py", line 3, in <module>',
        "    main()",
        '  File "/env/lib/python3.11/site-packages/torch/nn/modules/module.py", line 1, in _call_impl',
        "    return forward(*args)",
        "    ^^^^^^^^^^^^^^^^^^^^^",
        '  File "/env/lib/python3.11/site-packages/torch/nn/functional.py", line 2, in linear',
        "    return torch._C._nn.linear(x, w)",
        "RuntimeError: mat1 and mat2 shapes cannot be multiplied",
    ]
    out = fold_frames(frames)
    assert out[:3] == frames[:3] and out[-1] == frames[-1]
    assert out[3] == "  ... 2 frame(s) inside installed packages / the standard library folded" and len(out) == 5


HOSTS_KNOBS = [
    # host, entry pattern, how an override is passed, a knob line
    ("minimal", "argparse-cli", "passes `--lr <value>`", "- `lr` = `0.1`"),
    ("gptconf_host", "argparse-cli", "passes `--out_dir=<value>`", "- `learning_rate` = `0.01`"),
    ("constants_host", "argparse-cli", "replaces `DEPTH = ...` in memory", "- `MATRIX_LR` = `0.04`"),
    ("hydra_host", "hydra", 'CLI_OVERRIDES = ["model.hidden=<value>"]', "- `trainer.steps` = `60`"),
    ("function_host", "function", "calls `main(lr=<value>)`", "- `steps` = `60`"),
]


@pytest.mark.parametrize("host, pattern, passed, knob", HOSTS_KNOBS)
def test_program_md_lists_the_hosts_knobs(tmp_path, host, pattern, passed, knob):
    root = make_host(host, tmp_path / host)
    render(root, {"slug": "261201-knobs"})
    program = (root / ".autoresearch" / "261201-knobs" / "program.md").read_text()
    section = program.split("## Knobs you may set", 1)[1].split("\n## ", 1)[0]
    assert f"- Pattern: `{pattern}`" in program
    assert passed in section and knob in section, section
    assert "**Read**: any file of the project" in program and "**Patch**: only from `train.py`" in program


def test_checkpoints_saved_into_the_run_folder_are_named_there(tmp_path):
    host = tmp_path / "tinyproj"
    shutil.copytree(REPO / "examples" / "tinyproj", host, ignore=shutil.ignore_patterns("__pycache__", "checkpoints"))
    git(host, "init", "-q")
    git(host, "add", "-A")
    git(host, "commit", "-qm", "host")
    render(host, {"slug": "261201-tiny"})
    expr = host / ".autoresearch" / "261201-tiny"
    assert json.loads((expr / "experiment.json").read_text())["checkpoint_glob"] == ""
    program = (expr / "program.md").read_text()
    assert "checkpoints/*.pt" not in program
    assert "writes straight into the run folder, `.autoresearch/261201-tiny/runs/<id>/`" in program


def test_paths_in_summary_and_status_run_from_the_project_root(rendered_once, tmp_path):
    expr = rendered_once("minimal", answers(), tmp_path / "minimal")
    expr.edit("# Example:", "raise ValueError('bad idea')\n# Example:")
    out = expr.ar("run").stdout
    assert "ar.py tail" in out and f"see: {PREFIX} tail" in out  # never a bare `ar.py tail`
    assert not re.search(r"(?<![/\w])runs/r\d{4}", out)  # no path relative to the experiment folder
