"""An experiment rendered by an earlier landed commit of this repository upgrades to this
checkout with `copier update` and the loop runs on: answers, agent edits and history kept.

The template repository is rebuilt from git history (no release tags needed): the landed
commit becomes v1.0.0, this working tree v2.0.0, which is what a user's `copier update` sees.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from conftest import COPIER, MINIMAL_ANSWERS, REPO, Experiment, git, make_host

# The last commit of main before the session that added script shapes, waves, integrity and
# noise-aware verdicts: experiments rendered by it exist in the wild.
LANDED = "9528f93"
SKIP_COPY = (".git", "__pycache__", ".pytest_cache", ".venv", "tests", "bench", "examples")


def landed_tree(dest: Path) -> None:
    try:
        archive = subprocess.run(["git", "archive", LANDED], cwd=REPO, check=True, capture_output=True).stdout
    except subprocess.CalledProcessError as exc:
        pytest.fail(f"commit {LANDED} is not in this clone's history ({exc.stderr.decode().strip()})")
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(dest)


def replace_with_checkout(tmpl: Path) -> None:
    for child in tmpl.iterdir():
        if child.name != ".git":
            shutil.rmtree(child) if child.is_dir() else child.unlink()
    for child in REPO.iterdir():
        if child.name in SKIP_COPY:
            continue
        target = tmpl / child.name
        if child.is_dir():
            shutil.copytree(child, target, ignore=shutil.ignore_patterns(*SKIP_COPY))
        else:
            shutil.copy2(child, target)


def copier(host: Path, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([COPIER, *args], cwd=host, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_experiment_from_landed_commit_upgrades_to_head_and_runs_on(tmp_path):
    tmpl = tmp_path / "template-repo"
    tmpl.mkdir()
    landed_tree(tmpl)
    git(tmpl, "init", "-q")
    git(tmpl, "add", "-A")
    git(tmpl, "commit", "-qm", "landed")
    git(tmpl, "tag", "v1.0.0")

    host = make_host("minimal", tmp_path / "host")
    data = [arg for key, value in MINIMAL_ANSWERS.items() for arg in ("--data", f"{key}={value}")]
    copier(host, "copy", "--trust", "--defaults", "--quiet", *data, str(tmpl), ".autoresearch")
    expr = Experiment(host, MINIMAL_ANSWERS["slug"])
    first = expr.run()
    assert first["verdict"] == "advance"
    expr.edit('RUN_NOTE = "baseline"', 'RUN_NOTE = "agent edit kept across the upgrade"')
    git(host, "add", "-A")
    git(host, "commit", "-qm", "experiment state")

    replace_with_checkout(tmpl)
    git(tmpl, "add", "-A")
    git(tmpl, "commit", "-qm", "head")
    git(tmpl, "tag", "v2.0.0")
    answers_file = f"{expr.slug}/.copier-answers.yml"
    copier(host, "update", "--trust", "--defaults", "--quiet", "-a", answers_file, ".autoresearch")

    answers = (expr.dir / ".copier-answers.yml").read_text()
    assert "_commit: v2.0.0" in answers
    assert f"entry_main_module: {MINIMAL_ANSWERS['entry_main_module']}" in answers
    train = expr.train_py.read_text()
    assert 'RUN_NOTE = "agent edit kept across the upgrade"' in train
    assert "<<<<<<<" not in train and not list(expr.dir.rglob("*.rej"))
    assert [row["run_id"] for row in expr.rows()] == ["r0001"]  # history untouched

    second = expr.run()
    assert second["run_id"] == "r0002" and second["status"] == "ok", second
    assert [row["run_id"] for row in expr.rows()] == ["r0001", "r0002"]
    assert expr.rows()[1]["note"].startswith("agent edit kept across the upgrade")
