"""`copier update` upgrades an experiment in place: new runner, same answers, agent edits and history kept."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import COPIER, REPO, Experiment, git, make_host

DATA = [
    "--data",
    "entry_pattern=argparse-cli",
    "--data",
    "entry_main_module=minipkg.train",
    "--data",
    "cli_args={lr: 0.1}",
    "--data",
    "metric_backend=log",
    "--data",
    "slug=261125-upd",
    "--data",
    "primary_metric=eval/loss",
]


@pytest.fixture
def template_v1(tmp_path) -> Path:
    """This working tree as a tagged template repository (Copier updates between tags)."""
    tmpl = tmp_path / "template-repo"
    shutil.copytree(REPO, tmpl, ignore=shutil.ignore_patterns(".git", "__pycache__", ".pytest_cache", "tests", "bench"))
    git(tmpl, "init", "-q")
    git(tmpl, "add", "-A")
    git(tmpl, "commit", "-qm", "v1")
    git(tmpl, "tag", "v1.0.0")
    return tmpl


def release_v2(tmpl: Path) -> None:
    """A new template version that changes the vendored runner and the frozen part of train.py."""
    runner = tmpl / "template" / "<<slug>>" / "arunner" / "__init__.py"
    runner.write_text(runner.read_text() + "\nRUNNER_RELEASE = 2\n")
    train = tmpl / "template" / "<<slug>>" / "train.py.jinja"
    train.write_text(train.read_text().replace("# ---- end FROZEN ----\n", "# ---- end FROZEN (v2) ----\n"))
    git(tmpl, "commit", "-qam", "v2")
    git(tmpl, "tag", "v2.0.0")


def copy(host: Path, tmpl: Path, *extra: str) -> None:
    subprocess.run(
        [COPIER, "copy", "--trust", "--defaults", "--quiet", *DATA, *extra, str(tmpl), ".autoresearch"],
        cwd=host,
        check=True,
        capture_output=True,
        text=True,
    )


def update(host: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [COPIER, "update", "--trust", "--defaults", "--quiet", "-a", "261125-upd/.copier-answers.yml", ".autoresearch"],
        cwd=host,
        capture_output=True,
        text=True,
    )


def test_update_keeps_edits_history_and_lineage(tmp_path, template_v1):
    host = make_host("minimal", tmp_path / "host")
    copy(host, template_v1, "--data", "parent_expr=261120-parent")
    expr = Experiment(host, "261125-upd")
    assert expr.run()["verdict"] == "advance"
    expr.edit("'lr': 0.1,", "'lr': 0.2,")
    expr.edit('RUN_NOTE = "baseline"', 'RUN_NOTE = "lr 0.2"')
    assert expr.run()["verdict"] == "revert"  # |0.2-0.05| > 0.05: restored
    expr.edit("'lr': 0.1,", "'lr': 0.06,")
    expr.edit('RUN_NOTE = "baseline"', 'RUN_NOTE = "lr 0.06"')
    assert expr.run()["verdict"] == "advance"
    ledger_before = (expr.dir / "results.tsv").read_text()
    git(host, "add", "-A")
    git(host, "commit", "-qm", "experiment state")

    release_v2(template_v1)
    proc = update(host)
    assert proc.returncode == 0, proc.stderr
    assert "RUNNER_RELEASE = 2" in (expr.dir / "arunner" / "__init__.py").read_text()
    merged = expr.train_py.read_text()
    assert "'lr': 0.06," in merged and 'RUN_NOTE = "lr 0.06"' in merged  # the agent's edits survive
    assert "end FROZEN (v2)" in merged  # and the frozen block is the new one
    assert "<<<<<<<" not in merged
    program = (expr.dir / "program.md").read_text()  # the knob list (read from the host) survives the update
    assert "- `sleep` = `0.0`" in program and "<<<<<<<" not in program and "None could be read" not in program
    assert (expr.dir / "results.tsv").read_text() == ledger_before
    assert expr.best()["run_id"] == "r0003"
    assert "parent_expr: 261120-parent" in (expr.dir / ".copier-answers.yml").read_text()
    assert '"parent_expr": "261120-parent"' in (expr.dir / "experiment.json").read_text()
    # The loop goes on with the new runner, and a revert restores the merged file, not the pre-update one.
    git(host, "add", "-A")
    git(host, "commit", "-qm", "update")
    # A plain `copier update` changed protected runner files: runs wait until a person accepts them.
    blocked = expr.ar("run", check=False)
    assert (
        blocked.returncode == 2
        and "experiment.json" in blocked.stderr
        and "stop and report this to the person" in blocked.stderr
    )
    assert "experiment.json" in expr.person("protect", "--accept").stdout
    expr.edit("'lr': 0.06,", "'lr': 0.3,")
    result = expr.run()
    assert (result["run_id"], result["verdict"]) == ("r0004", "revert")
    assert expr.train_py.read_text() == merged


def test_update_refused_when_experiment_is_git_ignored(tmp_path, template_v1):
    host = make_host("minimal", tmp_path / "host")
    (host / ".gitignore").write_text(".autoresearch/\n")
    git(host, "add", "-A")
    git(host, "commit", "-qm", "ignore experiments")
    copy(host, template_v1)
    expr = Experiment(host, "261125-upd")
    expr.edit("'lr': 0.1,", "'lr': 0.06,")
    release_v2(template_v1)
    proc = update(host)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert "git-ignored" in proc.stderr and "git add -f" in proc.stderr
    assert "'lr': 0.06," in expr.train_py.read_text()  # nothing was touched
    assert "RUNNER_RELEASE" not in (expr.dir / "arunner" / "__init__.py").read_text()


def test_conflict_markers_block_runs_without_a_trace(minimal_expr):
    """A conflicted train.py (copier update exits 0 on conflicts) is refused before anything is allocated."""
    minimal_expr.edit(
        "# Example:", "<<<<<<< before updating\nx = 1\n=======\nx = 2\n>>>>>>> after updating\n# Example:"
    )
    proc = minimal_expr.ar("run", check=False)
    assert proc.returncode == 2 and "merge conflict markers" in proc.stderr
    assert list((minimal_expr.dir / "runs").iterdir()) == []
    assert len(minimal_expr.rows()) == 0


def test_ar_upgrade_checks_git_and_reports_conflicts(tmp_path, template_v1):
    host = make_host("minimal", tmp_path / "host")
    copy(host, template_v1)
    expr = Experiment(host, "261125-upd")
    assert expr.run()["verdict"] == "advance"
    proc = expr.ar("upgrade", check=False)
    assert proc.returncode == 2 and "is not committed" in proc.stderr
    git(host, "add", "-A")
    git(host, "commit", "-qm", "experiment")
    # v2 rewrites the RUN_NOTE comment line; the agent edited that same line: a real conflict.
    expr.edit("# One line saying what this run tries", "# agent: one line about the run")
    proc = expr.ar("upgrade", check=False)
    assert proc.returncode == 2 and "uncommitted change" in proc.stderr  # dirty: refused, nothing touched
    git(host, "add", "-A")
    git(host, "commit", "-qm", "state")
    train = tmpl_train(template_v1)
    train.write_text(
        train.read_text().replace("# One line saying what this run tries", "# v2: say what this run tries")
    )
    release_v2(template_v1)
    proc = expr.ar("upgrade", check=False)
    assert proc.returncode == 1 and "WITH CONFLICTS in train.py" in proc.stdout, proc.stdout + proc.stderr
    assert "RUNNER_RELEASE = 2" in (expr.dir / "arunner" / "__init__.py").read_text()
    refused = expr.ar("run", check=False)
    assert refused.returncode == 2 and "left merge conflicts in train.py" in refused.stderr


def tmpl_train(tmpl: Path) -> Path:
    return tmpl / "template" / "<<slug>>" / "train.py.jinja"
