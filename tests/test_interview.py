"""The interview through `copier copy --data`: good answers render, bad ones stop with one line."""

from __future__ import annotations

import ast
import json
import os
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from conftest import COPIER, REPO, Experiment, make_host, render

GOOD = {
    "entry_pattern": "argparse-cli",
    "entry_main_module": "minipkg.train",
    "cli_args": "{lr: 0.1}",
    "metric_backend": "log",
    "primary_metric": "eval/loss",
    "slug": "261125-good",
}


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    """The single line Copier printed for a refused answer (ignoring Copier's own template warnings)."""
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [
        line
        for line in proc.stderr.splitlines()
        if line.strip()
        and "git tags" not in line
        and "Warning" not in line
        and line.strip() != "warn("
        and "Dirty template" not in line
    ]
    assert len(lines) == 1, proc.stderr
    return lines[0]


@pytest.mark.parametrize(
    "key, value, expected",
    [
        ("hard_constraints", '["peak_vram_mb <== 4"]', "peak_vram_mb <== 4"),
        ("hard_constraints", '["peak_vram_mb <= four"]', "not a number"),
        ("primary_direction", "up", "min, max"),
        ("seconds", "0", "integer > 0"),
        ("seconds", "ten", "not an integer"),
        ("entry_main_module", "minipkg.nothere", "resolves to no file"),
        ("entry_main_module", "not a module", "dotted module"),
        ("entry_pattern", "notebook", "argparse-cli, hydra, function, custom"),
        ("metric_backend", "mlflow", "wandb, tensorboard, log, custom, auto"),
        ("cli_args", "[lr=0.1]", "mapping"),
        ("cli_args", "{lr: ", "not valid YAML"),
        ("slug", "Bad_Slug", "YYMMDD-kebab"),
        ("slug", "261399-x", "not a YYMMDD date"),
        ("slug", "261125-" + "-".join(["word"] * 10), "at most 40"),
        ("checkpoint_glob", "../elsewhere/*.pt", "inside the project root"),
        ("log_metric_regex", "loss=\\d+", "exactly one capture group"),
        ("mutation_scope", "[not a path]", "dotted paths"),
        ("resume_flag_name", "--resume", "without leading dashes"),
    ],
)
def test_bad_answer_is_one_line_naming_key_and_value(minimal_host, key, value, expected):
    proc = render(minimal_host, {**GOOD, key: value}, expect_ok=False)
    line = one_line_error(proc)
    assert key in line and expected in line, line
    assert not (minimal_host / ".autoresearch" / GOOD["slug"]).exists()


def test_hydra_cli_args_must_be_a_list(minimal_host):
    proc = render(minimal_host, {**GOOD, "entry_pattern": "hydra", "cli_args": "{lr: 0.1}"}, expect_ok=False)
    assert "list of key=value" in one_line_error(proc)


def test_metric_code_syntax_error_is_refused(minimal_host):
    proc = render(
        minimal_host, {**GOOD, "metric_backend": "custom", "metric_extract_code": "return {'a': 1"}, expect_ok=False
    )
    assert "metric_extract_code" in one_line_error(proc)


def test_existing_slug_is_refused_and_left_untouched(minimal_host):
    render(minimal_host, GOOD)
    train = minimal_host / ".autoresearch" / GOOD["slug"] / "train.py"
    train.write_text(train.read_text() + "# agent edit\n")
    before = train.read_text()
    line = one_line_error(render(minimal_host, GOOD, expect_ok=False))
    assert "already exists" in line
    assert train.read_text() == before


def test_not_a_project_root(tmp_path):
    proc = subprocess.run(
        [
            COPIER,
            "copy",
            "--trust",
            "--defaults",
            "--quiet",
            "--vcs-ref",
            "HEAD",
            "--data",
            "entry_main_module=x",
            str(REPO),
            ".autoresearch",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    line = one_line_error(proc)
    assert "no Python code found in" in line and str(tmp_path) in line


def test_torch_missing_names_what_was_tried(minimal_host, tmp_path):
    # A real interpreter without torch first on PATH (the system Python this machine ships).
    bare = tmp_path / "bare-bin"
    bare.mkdir()
    system_python = next((p for p in ("/usr/bin/python3", "/usr/local/bin/python3") if Path(p).exists()), None)
    if (
        system_python is None
        or subprocess.run([system_python, "-c", "import torch"], capture_output=True).returncode == 0
    ):
        pytest.skip("no interpreter without torch on this machine")
    (bare / "python").symlink_to(system_python)
    env = {**os.environ, "PATH": f"{bare}:/usr/bin:/bin"}
    cmd = [COPIER, "copy", "--trust", "--defaults", "--quiet", "--vcs-ref", "HEAD"] + sum(
        (["--data", f"{k}={v}"] for k, v in GOOD.items()), []
    )
    proc = subprocess.run(cmd + [str(REPO), ".autoresearch"], cwd=minimal_host, capture_output=True, text=True, env=env)
    line = one_line_error(proc)
    assert "torch is not importable" in line and "python on PATH" in line


def literal_assignment(source: str, name: str):
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError(f"{name} not assigned")


@pytest.mark.parametrize(
    "pattern, cli_args, expected",
    [
        ("argparse-cli", "{lr: 3e-4, layers: 2, name: run}", {"lr": 3e-4, "layers": 2, "name": "run"}),
        ("hydra", "['optimizer.lr=3e-4', 'model=wide']", ["optimizer.lr=3e-4", "model=wide"]),
        ("function", "{lr: 1e-3, use_wandb: false}", {"lr": 1e-3, "use_wandb": False}),
        ("custom", None, {}),
    ],
)
def test_each_pattern_renders_a_valid_train_py(minimal_host, pattern, cli_args, expected):
    data = {**GOOD, "entry_pattern": pattern, "slug": "261125-pattern", "goal": "reach {{ loss }} < 1"}
    if cli_args is None:
        data.pop("cli_args")
    else:
        data["cli_args"] = cli_args
    render(minimal_host, data)
    expr = minimal_host / ".autoresearch" / "261125-pattern"
    source = (expr / "train.py").read_text()
    assert literal_assignment(source, "CLI_OVERRIDES") == expected  # numbers are numbers, not '3e-4'
    assert literal_assignment(source, "RUN_NOTE") == "baseline"
    compile((expr / "prepare.py").read_text(), "prepare.py", "exec")
    assert "reach {{ loss }} < 1" in (expr / "program.md").read_text()  # custom delimiters keep {{ }}
    config = json.loads((expr / "experiment.json").read_text())
    assert config["entry_pattern"] == pattern and config["goal"] == "reach {{ loss }} < 1"
    assert (expr / "results.tsv").read_text().startswith("run_id\tts\twall_s\tstatus\tverdict")
    assert (expr / ".ar-baseline.py").read_bytes() == (expr / "train.py").read_bytes()
    assert not list(expr.rglob("__pycache__"))


def test_two_experiments_side_by_side(minimal_host):
    render(minimal_host, {**GOOD, "slug": "261125-first"})
    render(minimal_host, {**GOOD, "slug": "261125-second", "cli_args": "{lr: 0.3}"})
    first, second = Experiment(minimal_host, "261125-first"), Experiment(minimal_host, "261125-second")
    assert first.run()["primary"]["value"] == pytest.approx(0.05)
    assert second.run()["primary"]["value"] == pytest.approx(0.25)
    assert [r["run_id"] for r in first.rows()] == ["r0001"] and [r["run_id"] for r in second.rows()] == ["r0001"]
    answers = (minimal_host / ".autoresearch" / "261125-second" / ".copier-answers.yml").read_text()
    assert "slug: 261125-second" in answers


def test_slug_defaults_to_date_and_kebab_of_topic(minimal_host):
    data = {k: v for k, v in GOOD.items() if k != "slug"}
    render(minimal_host, {**data, "topic": "The Effect of Warmup on Loss!"})
    made = [p.name for p in (minimal_host / ".autoresearch").iterdir() if p.is_dir()]
    assert len(made) == 1 and made[0].endswith("-effect-warmup-loss") and made[0][:6].isdigit()


# ---------------------------------------------------------------- a person at a terminal

QUESTION_WIDTH = 76  # Copier prefixes each question with an emoji and a space: 80 columns in all


def _helps() -> dict:
    """Every question's help text; a templated help gives each of its quoted alternatives."""
    import re

    import yaml

    out = {}
    for key, spec in yaml.safe_load((REPO / "copier.yml").read_text()).items():
        if key.startswith("_") or not isinstance(spec, dict) or "help" not in spec:
            continue
        help_text = str(spec["help"])
        out[key] = re.findall(r"'([^']*)'", help_text) if help_text.startswith("<<") else [help_text]
        for label in spec.get("choices") or []:
            out.setdefault(f"{key} choice", []).append(str(label))
    return out


def test_every_question_fits_one_terminal_line():
    too_long = {k: t for k, texts in _helps().items() for t in texts if len(t) > QUESTION_WIDTH}
    assert not too_long, too_long
    # a multi-line question says how to finish in the question itself
    for key in ("evaluate_code", "metric_extract_code"):
        assert any("Esc then Enter" in t for t in _helps()[key]), key


def test_whitespace_only_is_an_empty_answer(minimal_host):
    proc = render(
        minimal_host,
        {**GOOD, "evaluate_code": "\n\n  \n", "resume_flag_name": "  ", "output_key": " ", "slug": "261125-ws"},
    )
    assert proc.returncode == 0
    config = json.loads((minimal_host / ".autoresearch" / "261125-ws" / "experiment.json").read_text())
    assert (config["evaluate_code"].strip(), config["resume_flag_name"], config["output_key"]) == ("", "", "")


@pytest.mark.skipif(not shutil.which("tmux"), reason="needs tmux for a real terminal")
@pytest.mark.parametrize("host_name", ["eval_host", "charlevel_host"])
def test_enter_alone_at_every_question_renders_the_experiment(host_name, tmp_path):
    """`copier copy --trust` in a real pseudo-terminal (tmux), a person pressing Enter at every question."""
    host = make_host(host_name, tmp_path / host_name)
    status = tmp_path / "status"
    socket = f"ar-test-{os.getpid()}-{host_name}"
    env_path = f"{Path(COPIER).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    command = (
        f"cd {shlex.quote(str(host))} && PATH={shlex.quote(env_path)} "
        f"{shlex.quote(COPIER)} copy --trust --vcs-ref HEAD {shlex.quote(str(REPO))} .autoresearch; "
        f"echo $? > {shlex.quote(str(status))}; sleep 120"
    )
    tmux = ["tmux", "-L", socket]
    subprocess.run([*tmux, "new-session", "-d", "-x", "80", "-y", "50", command], check=True)
    try:
        presses = 0
        for _ in range(300):  # about 2 minutes: many renders per question on a loaded machine
            if status.exists():
                break
            screen = subprocess.run([*tmux, "capture-pane", "-p"], capture_output=True, text=True).stdout
            if "Validation error" in screen:
                break
            if screen.rstrip().splitlines()[-1:] != [] and "🎤" in screen:
                subprocess.run([*tmux, "send-keys", "Enter"], capture_output=True)
                presses += 1
            time.sleep(0.4)
        screen = subprocess.run([*tmux, "capture-pane", "-p", "-S", "-400"], capture_output=True, text=True).stdout
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)
    assert "Validation error" not in screen, screen[-2000:]
    assert status.exists() and status.read_text().strip() == "0", screen[-2000:]
    (expr,) = (host / ".autoresearch").iterdir()
    config = json.loads((expr / "experiment.json").read_text())
    assert config["entry_main_module"] and presses >= 15
    if host_name == "eval_host":  # the proposed multi-line evaluate() body was kept by Enter
        assert "def" not in config["evaluate_code"] and "evaluate_model" in config["evaluate_code"]
        assert "\n" in config["evaluate_code"]


def test_numbers_stay_numbers_in_experiment_json_and_program_md(minimal_host):
    render(minimal_host, {**GOOD, "cli_args": "{lr: 5e-4, name: run1}", "slug": "261125-num"})
    expr = minimal_host / ".autoresearch" / "261125-num"
    assert json.loads((expr / "experiment.json").read_text())["cli_args"] == {"lr": 0.0005, "name": "run1"}
    program = (expr / "program.md").read_text()
    assert '{"lr": 0.0005, "name": "run1"}' in program and "5e-4" not in program
