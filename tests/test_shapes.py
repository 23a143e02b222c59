"""Script-shaped research projects: `copier copy --defaults` with only small baseline args, then real runs.

Each fixture under tests/hosts/ is one common shape of public ML code (see
tests/hosts/README.md). The expected answers come from reading each host,
not from detection's output. Every case renders with no answers but
cli_args, checks what detection chose and printed, then runs twice: the
baseline advances with its checkpoint captured, a worse edit reverts.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from conftest import Experiment, git, make_host, render

SHAPES = {
    # no pyproject.toml; main() parses argparse; .format + logging prints; torch.save(args.checkpoint)
    "script_host": dict(
        args="{epochs: 2}",
        expect=dict(
            entry_main_module="main",
            primary_metric="val_loss",
            checkpoint_glob="checkpoints/*.pt",
            runner="python",
        ),
        style="space",
        summary="main.py:14 (ArgumentParser()",
        worse="CLI_OVERRIDES['lr'] = 0.0001",
        ckpt="model.pt",
    ),
    # module-level argparse, trains at import; `| valid loss  2.17 |` table rows; torch.save(model, open(f))
    "wordlm_host": dict(
        args="{epochs: 2}",
        expect=dict(entry_main_module="main", primary_metric="valid loss", checkpoint_glob="model.pt", runner="python"),
        style="space",
        summary="main.py:8 (ArgumentParser()",
        worse="CLI_OVERRIDES['lr'] = 0.001",
        ckpt="model.pt",
    ),
    # configurator globals, --key=value, a positional config file, os.path.join(out_dir, 'ckpt.pt')
    "gptconf_host": dict(
        args=None,  # the README's own command: config/small.py --device=cpu
        expect=dict(
            entry_main_module="train",
            primary_metric="val loss",
            checkpoint_glob="out*/*.pt",
            runner="python",
            cli_args={"config/small.py": True, "device": "cpu"},
        ),
        style="equals",
        summary="train.py:18 (exec(configurator.py)",
        worse="CLI_OVERRIDES['learning_rate'] = 1e-05",
        ckpt="ckpt.pt",
    ),
    # constants only, TIME_BUDGET imported from prepare.py, `uv run train.py`, .gitignore lists results.tsv
    "constants_host": dict(
        args="{MAX_STEPS: 100}",
        expect=dict(entry_main_module="train", primary_metric="val_bpb", checkpoint_glob="ckpt/*.pt", seconds=34),
        style="constants",
        summary="prepare.TIME_BUDGET = 4 s",
        worse="CLI_OVERRIDES['MATRIX_LR'] = 1e-05",
        ckpt="model.pt",
    ),
    # a package module (not train*) launched by torchrun from CLAUDE.md
    "launcher_host": dict(
        args="{steps: 60, lr: 0.001}",
        expect=dict(
            entry_main_module="pkg.run",
            primary_metric="eval_loss",
            checkpoint_glob="checkpoints/*.pt",
            runner="torchrun --nproc-per-node 2",
            resume_flag_name="resume",
        ),
        style="space",
        summary="pkg/run.py:12 (ArgumentParser()",
        worse="CLI_OVERRIDES['lr'] = 1e-06",
        ckpt="last.pt",
    ),
}


def _copy(host, slug: str, args: str | None) -> subprocess.CompletedProcess:
    data = {"slug": slug} | ({"cli_args": args} if args else {})
    return render(host, data)


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_shape_defaults_pick_the_entry_and_the_loop_advances_then_reverts(name, tmp_path):
    shape = SHAPES[name]
    host = make_host(name, tmp_path / name)
    proc = _copy(host, "261202-shape", shape["args"])
    cfg = json.loads((host / ".autoresearch/261202-shape/experiment.json").read_text())
    for key, value in shape["expect"].items():
        assert cfg[key] == value, (key, cfg[key], proc.stderr)
    assert cfg["entry_pattern"] == "argparse-cli" and cfg["primary_direction"] == "min"
    answers = (host / ".autoresearch/261202-shape/.copier-answers.yml").read_text()
    assert f"cli_style: {shape['style']}" in answers
    # the detection summary, printed with --defaults: entry file:line and why, metric, checkpoint, runner
    assert "detected (static analysis" in proc.stderr
    assert shape["summary"] in proc.stderr, proc.stderr
    assert f"metric       {cfg['primary_metric']} (min)" in proc.stderr
    assert f"checkpoint   {cfg['checkpoint_glob']} (torch.save at" in proc.stderr

    expr = Experiment(host, "261202-shape")
    first = expr.run()
    assert first["status"] == "ok" and first["verdict"] == "advance", first
    captured = [p.name for p in (expr.dir / "best_ckpt").rglob("*") if p.is_file()]
    assert shape["ckpt"] in captured, captured
    expr.edit("# ---- monkey-patch sandbox", shape["worse"] + "\n# ---- monkey-patch sandbox")
    second = expr.run()
    assert second["verdict"] == "revert", second
    assert second["primary"]["value"] > first["primary"]["value"], (first["primary"], second["primary"])
    assert shape["worse"] not in expr.train_py.read_text()  # restored to the best
    assert expr.best()["run_id"] == first["run_id"]


def test_constants_script_host_file_untouched_and_unknown_key_is_one_line(tmp_path):
    host = make_host("constants_host", tmp_path / "constants_host")
    before = (host / "train.py").read_bytes()
    proc = _copy(host, "261202-const", "{MAX_STEPS: 30, DEPTHH: 3}")
    assert "note: CLI_OVERRIDES 'DEPTHH' not accepted by train" in proc.stderr
    expr = Experiment(host, "261202-const")
    result = expr.run(check=False)
    log = (expr.dir / "runs" / result["run_id"] / "run.log").read_text()
    assert "train.py: CLI_OVERRIDES 'DEPTHH' names no module-level constant" in log
    assert "Traceback" not in log and "DEPTH, WIDTH, MATRIX_LR" in log
    assert result["status"] != "ok"
    assert (host / "train.py").read_bytes() == before


def test_configurator_unknown_key_is_one_line_at_copy_and_run_time(tmp_path):
    host = make_host("gptconf_host", tmp_path / "gptconf_host")
    proc = _copy(host, "261202-conf", '{"config/small.py": true, "lr": 0.1}')
    assert "note: CLI_OVERRIDES 'lr' not accepted by train" in proc.stderr
    expr = Experiment(host, "261202-conf")
    result = expr.run(check=False)
    log = (expr.dir / "runs" / result["run_id"] / "run.log").read_text()
    assert "train.py: CLI_OVERRIDES 'lr' names no setting of" in log and "learning_rate" in log
    assert "Traceback" not in log and result["status"] != "ok"


def test_host_gitignore_does_not_hide_the_ledger(tmp_path):
    host = make_host("constants_host", tmp_path / "constants_host")  # its .gitignore lists results.tsv
    _copy(host, "261202-ledger", "{MAX_STEPS: 10}")
    for rel in ("results.tsv", "train.py", "experiment.json"):
        path = f".autoresearch/261202-ledger/{rel}"
        ignored = subprocess.run(["git", "check-ignore", "-q", path], cwd=host).returncode == 0
        assert not ignored, rel
    git(host, "add", "-A")
    assert ".autoresearch/261202-ledger/results.tsv" in git(host, "ls-files", "--cached")


def test_defaults_twice_on_one_day_get_a_free_slug_and_an_explicit_one_is_one_line(tmp_path):
    host = make_host("script_host", tmp_path / "script_host")
    for _ in range(2):
        render(host, {"cli_args": "{epochs: 1}", "topic": "tiny regression"})
    slugs = sorted(p.name for p in (host / ".autoresearch").iterdir() if p.is_dir())
    assert len(slugs) == 2 and slugs[1] == slugs[0] + "-2", slugs
    proc = render(host, {"cli_args": "{epochs: 1}", "slug": slugs[0]}, expect_ok=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if "already exists" in line]
    assert len(lines) == 1 and slugs[0] in lines[0], proc.stderr


def test_no_python_code_is_refused_in_one_line_and_wandb_note_only_for_wandb(tmp_path):
    empty = tmp_path / "notes"
    empty.mkdir()
    (empty / "README.md").write_text("# just notes\n")
    git(empty, "init", "-q")
    proc = render(empty, {}, expect_ok=False)
    assert proc.returncode != 0 and "no Python code found in" in proc.stderr and "Traceback" not in proc.stderr
    host = make_host("script_host", tmp_path / "script_host")
    proc = render(host, {"cli_args": "{epochs: 1}", "slug": "261202-nowandb"})
    assert "wandb login" not in proc.stderr  # the log backend: no wandb note
    if not (Path.home() / ".netrc").is_file():  # a wandb host does get it (wandb is installed here)
        wandb_host = make_host("function_host", tmp_path / "function_host")
        proc = render(wandb_host, {"slug": "261202-wandb"})
        assert proc.stderr.count("wandb login") == 1, proc.stderr


def test_pretend_prints_the_answers_and_writes_nothing(tmp_path):
    host = make_host("wordlm_host", tmp_path / "wordlm_host")
    cmd = [a for a in _pretend_cmd()]
    proc = subprocess.run(cmd, cwd=host, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "answers it would use" in proc.stderr
    assert "  primary_metric: valid loss" in proc.stderr and "  checkpoint_glob: model.pt" in proc.stderr
    assert "\n  seconds: 300\n" in proc.stderr and "\n  seed_key: seed\n" in proc.stderr  # every answer, plainly
    assert not (host / ".autoresearch").exists()


def _pretend_cmd() -> list[str]:
    from conftest import COPIER, REPO

    return [
        COPIER,
        "copy",
        "--trust",
        "--defaults",
        "--pretend",
        "--quiet",
        "--vcs-ref",
        "HEAD",
        str(REPO),
        ".autoresearch",
    ]
