"""Upgrades never break an experiment: every fixture shape, from each of the last two landed
commits of this repository to this checkout, and from this checkout to this checkout plus a
change, with bytecode caching on as in a user's shell.

The template repositories are rebuilt from git history (no release tags needed): the old
commit becomes v1.0.0, the newer tree v2.0.0, which is what a user's `copier update` sees.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml
from conftest import COPIER, LANDED, REPO, Experiment, git, make_host

HEAD = "HEAD"  # this checkout, upgraded to itself plus a change
SKIP_COPY = (".git", "__pycache__", ".pytest_cache", ".venv", "tests", "bench", "examples")

# One host per cli_style, each with a seed option (a flag, a configurator global, a constant).
SHAPES = {
    "minimal": {"cli_args": "{lr: 0.1}", "metric_backend": "log", "primary_metric": "eval/loss"},
    "script_host": {"cli_args": "{epochs: 2}"},  # main-guard script, --k v, --seed
    "gptconf_host": {},  # configurator: --k=v and config files, `seed = 1337`
    "constants_host": {"cli_args": "{MAX_STEPS: 30}"},  # module constants, SEED
}
CASES = [
    (LANDED[0], "minimal"),
    *((LANDED[1], name) for name in SHAPES),
    *((HEAD, name) for name in ("script_host", "constants_host")),
]
EDIT = "agent edit kept across the upgrade"


def _extract(commit: str, dest: Path) -> None:
    try:
        archive = subprocess.run(["git", "archive", commit], cwd=REPO, check=True, capture_output=True).stdout
    except subprocess.CalledProcessError as exc:
        pytest.fail(f"commit {commit} is not in this clone's history ({exc.stderr.decode().strip()})")
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(dest)


def _checkout_tree(dest: Path) -> None:
    for child in dest.iterdir():
        if child.name != ".git":
            shutil.rmtree(child) if child.is_dir() else child.unlink()
    for child in REPO.iterdir():
        if child.name in SKIP_COPY:
            continue
        target = dest / child.name
        if child.is_dir():
            shutil.copytree(child, target, ignore=shutil.ignore_patterns(*SKIP_COPY))
        else:
            shutil.copy2(child, target)


def _tag(repo: Path, tag: str) -> None:
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", tag)
    git(repo, "tag", tag)


def _a_change(repo: Path) -> None:
    """The next release: a line of the runner and of the agent's instructions change."""
    ar = repo / "template" / "<<slug>>" / "ar.py"
    ar.write_text(ar.read_text() + "# the next release\n")
    program = repo / "template" / "<<slug>>" / "program.md.jinja"
    program.write_text(program.read_text() + "\nOne more line from the next release.\n")


def _a_conflicting_change(repo: Path) -> None:
    """The next release adds a line where the agent adds its own: a three-way conflict in train.py."""
    _a_change(repo)
    train = repo / "template" / "<<slug>>" / "train.py.jinja"
    text = train.read_text()
    assert "RUN_NOTE = " in text
    train.write_text(text.replace("RUN_NOTE = ", "# one line the next release adds\nRUN_NOTE = ", 1))


@pytest.fixture(scope="session")
def template_repo(tmp_path_factory):
    """template_repo(old) -> a git template whose v1.0.0 is `old` and v2.0.0 the newer tree."""
    built: dict[str, Path] = {}

    def build(old: str, change=_a_change) -> Path:
        if (old, change) not in built:
            repo = tmp_path_factory.mktemp("template") / "repo"
            repo.mkdir()
            git(repo, "init", "-q")
            if old == HEAD:
                _checkout_tree(repo)
                _tag(repo, "v1.0.0")
                change(repo)
            else:
                _extract(old, repo)
                _tag(repo, "v1.0.0")
                _checkout_tree(repo)
            _tag(repo, "v2.0.0")
            built[old, change] = repo
        return built[old, change]

    return build


@pytest.fixture
def bytecode_on(monkeypatch):
    """A user's shell: Python writes __pycache__ (this machine's default says otherwise)."""
    monkeypatch.delenv("PYTHONDONTWRITEBYTECODE", raising=False)


def _copier(host: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([COPIER, *args], cwd=host, capture_output=True, text=True)


def _answers(expr: Experiment) -> dict:
    return yaml.safe_load((expr.dir / ".copier-answers.yml").read_text())


def _config(expr: Experiment) -> dict:
    return json.loads((expr.dir / "experiment.json").read_text())


def _marked(expr: Experiment) -> list[str]:
    """Files of the experiment (runtime state aside) with a conflict marker or a .rej leftover."""
    found = []
    for path in expr.dir.rglob("*"):
        rel = path.relative_to(expr.dir)
        if path.is_file() and rel.parts[0] not in ("runs", "best_ckpt"):
            if path.suffix == ".rej" or b"\n<<<<<<< " in b"\n" + path.read_bytes():
                found.append(str(rel))
    return found


def _upgrade(expr: Experiment, *, first_try: bool) -> subprocess.CompletedProcess:
    """`ar.py upgrade` as a user runs it; an older runner refuses its own fresh bytecode once,
    and the user does what it says (commit, retry)."""
    proc = expr.ar("upgrade", check=False)
    if proc.returncode != 0 and not first_try and "__pycache__" in proc.stderr:
        git(expr.host, "add", "-A")
        git(expr.host, "commit", "-qm", "commit what upgrade asked for")
        proc = expr.ar("upgrade", check=False)
    return proc


@pytest.mark.parametrize(("old", "shape"), CASES, ids=[f"{old}-{shape}" for old, shape in CASES])
def test_upgrade_keeps_answers_edits_and_history_and_the_loop_runs_on(old, shape, template_repo, tmp_path, bytecode_on):
    repo = template_repo(old)
    host = make_host(shape, tmp_path / shape)
    data = {"slug": "261203-upgrade", **SHAPES[shape]}
    args = [arg for key, value in data.items() for arg in ("--data", f"{key}={value}")]
    proc = _copier(
        host, "copy", "--trust", "--defaults", "--quiet", "--vcs-ref", "v1.0.0", *args, str(repo), ".autoresearch"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    expr = Experiment(host, "261203-upgrade")
    first = expr.run()
    assert first["status"] == "ok", first
    expr.run()
    expr.edit('RUN_NOTE = "', f'RUN_NOTE = "{EDIT} ')  # the agent's next idea, not run yet
    git(host, "add", "-A")
    git(host, "commit", "-qm", "experiment state")
    answers_before, config_before = _answers(expr), _config(expr)
    rows_before = expr.rows()

    proc = _upgrade(expr, first_try=old == HEAD)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr

    answers, config = _answers(expr), _config(expr)
    assert answers["_commit"] == "v2.0.0" and config["template_version"] == "v2.0.0"
    for key, value in answers_before.items():
        if not key.startswith("_"):
            assert answers[key] == value, (key, answers[key], value)
    for key, value in config_before.items():
        if key != "template_version":
            assert config[key] == value, (key, config[key], value)  # nothing re-derived behind the user's back
    assert answers["seed_key"] == config["seed_key"]  # stored, so the next update keeps it
    assert (config["seed_key"] != "") == (shape != "minimal"), config["seed_key"]
    assert EDIT in expr.train_py.read_text()
    assert _marked(expr) == []
    flat = sorted(p.name for p in (expr.dir / "arunner").glob("*.py"))
    assert flat == ["__init__.py", "hostentry.py", "module_split.py"], flat  # modules the new version moved are gone
    assert expr.rows() == rows_before  # history untouched
    status = git(host, "status", "--porcelain")
    untracked_bytecode = [line for line in status.splitlines() if line.startswith("??") and "__pycache__" in line]
    assert not untracked_bytecode, status  # bytecode never shows as something to commit
    assert "UU " not in status, status

    after = expr.run()
    assert after["status"] == "ok", after
    assert [row["run_id"] for row in expr.rows()] == [*(row["run_id"] for row in rows_before), after["run_id"]]
    git(host, "add", "-A")
    staged = git(host, "diff", "--cached", "--name-status").splitlines()
    assert not [line for line in staged if "__pycache__" in line and not line.startswith("D")], staged


def test_conflicts_are_named_run_refuses_and_the_rollback_restores(template_repo, tmp_path, bytecode_on):
    """The agent edited the very line the next release changes: upgrade names the file and exits 1,
    run refuses in one line, and the printed rollback restores the committed experiment."""
    repo = template_repo(HEAD, _a_conflicting_change)
    host = make_host("script_host", tmp_path / "host")
    args = ["--data", "slug=261203-conflict", "--data", "cli_args={epochs: 2}"]
    proc = _copier(
        host, "copy", "--trust", "--defaults", "--quiet", "--vcs-ref", "v1.0.0", *args, str(repo), ".autoresearch"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    expr = Experiment(host, "261203-conflict")
    expr.run()
    text = expr.train_py.read_text()
    expr.train_py.write_text(text.replace("RUN_NOTE = ", "# the agent's own line here\nRUN_NOTE = ", 1))
    git(host, "add", "-A")
    git(host, "commit", "-qm", "state")

    proc = expr.ar("upgrade", check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stdout + proc.stderr
    assert "WITH CONFLICTS in train.py" in proc.stdout
    assert json.loads((expr.dir / "experiment.json").read_text())["template_version"] == "v2.0.0"
    refused = expr.ar("run", check=False)
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert "left merge conflicts in train.py" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1

    rollback = proc.stdout.split("roll back with `", 1)[1].split("`", 1)[0]
    assert rollback == "python .autoresearch/261203-conflict/ar.py upgrade --rollback"
    kept = expr.dir / ".ar-protected.before-upgrade.json"
    genuine = kept.read_bytes()
    kept.write_bytes(genuine.replace(b'"files"', b'"files" ', 1))  # an agent's own reference
    forged = expr.ar("upgrade", "--rollback", check=False)
    assert forged.returncode == 2 and "nothing rolled back" in forged.stderr, forged.stderr
    kept.write_bytes(genuine)
    assert "rolled back" in expr.ar("upgrade", "--rollback").stdout
    assert git(host, "status", "--porcelain", "--", ".autoresearch") == ""
    assert json.loads((expr.dir / "experiment.json").read_text())["template_version"] == "v1.0.0"
    after = expr.run()
    log = (expr.dir / "runs" / after["run_id"] / "run.log").read_text()[-1500:]
    assert after["status"] == "ok", log  # the pending-conflict record clears itself once resolved
