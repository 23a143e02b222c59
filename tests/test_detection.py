"""Detection (SPEC §4): the interview's defaults computed from the host project, statically.

The fixture hosts are real projects; the expected values below come from
reading their code and CLAUDE.md (what each one really uses), not from
detection's output. Cases no host covers are small projects built in tmp_path.
"""

from __future__ import annotations

import fnmatch
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import COPIER, REPO
from detection_support import Detected, answer_rules, assert_valid, clean_copy, source_of, write

BIN = Path(sys.executable).parent

# What each host really does (its code and CLAUDE.md), and a file a real run of it produced.
TRUTH = {
    "argparse_host": dict(
        entry_pattern="argparse-cli",
        entry_main_module="hfargs_lm.train",
        resume_flag_name="resume_from_checkpoint",
        metric_backend="log",
        checkpoint_glob="checkpoints/*.pt",
        primary_metric="eval/loss",
        produced="checkpoints/model.pt",
    ),
    "hydra_host": dict(
        entry_pattern="hydra",
        entry_main_module="hydra_app.train",
        resume_flag_name="trainer.resume_from_checkpoint",
        metric_backend="tensorboard",
        tb_events_glob="outputs/*/*/tb/events.out.tfevents.*",
        checkpoint_glob="outputs/*/*/checkpoints/*.pt",
        primary_metric="eval/loss",
        produced="outputs/2026-11-25/19-51-36/checkpoints/last.pt",
        events="outputs/2026-11-25/19-51-36/tb/events.out.tfevents.1795636297.vm.21363.0",
    ),
    "function_host": dict(
        entry_pattern="function",
        entry_main_module="fn_host.train",
        resume_flag_name="resume_from_checkpoint",
        metric_backend="wandb",
        wandb_project="fn-host",
        checkpoint_glob="out/checkpoint-*",
        primary_metric="eval/loss",
        produced="out/checkpoint-20",
    ),
    "custom_host": dict(
        entry_pattern="custom",
        entry_main_module="lit_host.cli",
        resume_flag_name="ckpt_path",
        distributed_framework="lightning",
        metric_backend="tensorboard",
        tb_events_glob="lightning_logs/*/events.out.tfevents.*",
        checkpoint_glob="lightning_logs/*/checkpoints/*.ckpt",
        primary_metric="val_loss",
        produced="lightning_logs/version_0/checkpoints/epoch=1-step=60.ckpt",
        events="lightning_logs/version_0/events.out.tfevents.1795636313.vm.21723.0",
    ),
    "minimal": dict(
        entry_pattern="argparse-cli",
        entry_main_module="minipkg.train",
        resume_flag_name="",
        metric_backend="log",
        checkpoint_glob="",
        primary_metric="eval/loss",
    ),
    "tinyproj": dict(
        entry_pattern="argparse-cli",
        entry_main_module="tinyproj.train",
        resume_flag_name="resume",
        metric_backend="log",
        checkpoint_glob="",  # it saves into $AR_RUN_DIR under the runner: captured there, no glob
        primary_metric="val_loss",
    ),
    # The script shapes (tests/test_shapes.py runs them): read from each host's code and README.
    "script_host": dict(
        entry_pattern="argparse-cli",
        entry_main_module="main",
        cli_style="space",
        metric_backend="log",
        checkpoint_glob="checkpoints/*.pt",
        primary_metric="val_loss",
        produced="checkpoints/model.pt",
    ),
    "wordlm_host": dict(
        entry_pattern="argparse-cli",
        entry_main_module="main",
        cli_style="space",
        checkpoint_glob="model.pt",
        primary_metric="valid loss",
        produced="model.pt",
    ),
    "gptconf_host": dict(
        entry_pattern="argparse-cli",
        entry_main_module="train",
        cli_style="equals",
        checkpoint_glob="out*/*.pt",
        primary_metric="val loss",
        produced="out-small/ckpt.pt",
    ),
    "constants_host": dict(
        entry_pattern="argparse-cli",
        entry_main_module="train",
        cli_style="constants",
        checkpoint_glob="ckpt/*.pt",
        primary_metric="val_bpb",
        seconds=34,
        produced="ckpt/model.pt",
    ),
    "launcher_host": dict(
        entry_pattern="argparse-cli",
        entry_main_module="pkg.run",
        resume_flag_name="resume",
        checkpoint_glob="checkpoints/*.pt",
        primary_metric="eval_loss",
        runner="torchrun --nproc-per-node 2",
        distributed_framework="ddp",
        produced="checkpoints/last.pt",
    ),
}
ATTRS = (
    "entry_pattern",
    "entry_main_module",
    "resume_flag_name",
    "metric_backend",
    "tb_events_glob",
    "checkpoint_glob",
    "primary_metric",
    "wandb_project",
    "distributed_framework",
    "cli_style",
    "runner",
    "seconds",
)


# ---------------------------------------------------------------- the fixture hosts


@pytest.mark.parametrize("name", sorted(TRUTH))
@pytest.mark.parametrize("where", ["in-place", "clean-clone"])
def test_fixture_host(name, where, tmp_path):
    root = source_of(name) if where == "in-place" else clean_copy(name, tmp_path / name)
    d = Detected(root)
    truth = TRUTH[name]
    for attr in ATTRS:
        if attr in truth:
            assert getattr(d, attr) == truth[attr], (attr, d.notes)
    for key in ("produced", "events"):
        glob = d.checkpoint_glob if key == "produced" else d.tb_events_glob
        if key in truth:  # the glob matches what a real run of the host wrote
            assert fnmatch.fnmatch(truth[key], glob), (glob, truth[key])
    assert_valid(d, root)


def test_baseline_args_come_from_each_hosts_command(tmp_path):
    found = {
        name: Detected(clean_copy(name, tmp_path / name))
        for name in ("argparse_host", "hydra_host", "function_host", "tinyproj")
    }
    # CLAUDE.md: python -m hfargs_lm.train --learning_rate 1e-2 --steps 60 --hidden 32 --output_dir checkpoints
    assert yaml.safe_load(found["argparse_host"].cli_args_for("argparse-cli")) == {
        "learning_rate": 0.01,
        "steps": 60,
        "hidden": 32,
        "output_dir": "checkpoints",
    }
    # CLAUDE.md: python -m hydra_app.train optimizer=sgd optimizer.lr=0.01 model=small trainer.steps=60
    assert yaml.safe_load(found["hydra_host"].cli_args_for("hydra")) == [
        "optimizer=sgd",
        "optimizer.lr=0.01",
        "model=small",
        "trainer.steps=60",
    ]
    # CLAUDE.md: python -c "from fn_host.train import main; print(main(lr=0.01, steps=60))"
    assert yaml.safe_load(found["function_host"].cli_args_for("function")) == {"lr": 0.01, "steps": 60}
    assert yaml.safe_load(found["tinyproj"].cli_args_for("argparse-cli")) == {"lr": 0.003}
    # switching the pattern in the interview converts the shape
    assert yaml.safe_load(found["hydra_host"].cli_args_for("argparse-cli"))["optimizer.lr"] == 0.01
    assert yaml.safe_load(found["function_host"].cli_args_for("hydra")) == ["lr=0.01", "steps=60"]


def test_artifacts_of_real_runs_raise_confidence(tmp_path):
    """With the files a real run left (event files, checkpoints), backend and globs are confirmed."""
    for name in ("hydra_host", "custom_host"):
        root = clean_copy(name, tmp_path / name)
        code_only = Detected(root)
        for rel in (TRUTH[name]["produced"], TRUTH[name]["events"]):
            write(root, {rel: "x"})
        d = Detected(root)
        assert d.metric_backend == "tensorboard" and d.confidence["metric_backend"] == "high"
        assert d.tb_events_glob == code_only.tb_events_glob == TRUTH[name]["tb_events_glob"]
        assert d.checkpoint_glob == TRUTH[name]["checkpoint_glob"] and d.confidence["checkpoint_glob"] == "high"


def test_scratch_render_keeps_literal_defaults():
    d = Detected(None)
    assert (d.entry_pattern, d.entry_main_module, d.metric_backend, d.runner) == ("argparse-cli", "", "auto", "python")
    assert d.cli_args_for("hydra") == "[]" and d.mutation_scope == "[]"


# ---------------------------------------------------------------- end to end


def test_copier_defaults_in_tinyproj_render_and_advance(tmp_path):
    host = clean_copy("tinyproj", tmp_path / "tinyproj")
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
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
            "slug=261125-x",
            str(REPO),
            ".autoresearch",
        ],
        cwd=host,
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    expr = host / ".autoresearch" / "261125-x"
    config = json.loads((expr / "experiment.json").read_text())
    assert config["entry_main_module"] == "tinyproj.train" and config["entry_pattern"] == "argparse-cli"
    assert config["primary_metric"] == "val_loss" and config["cli_args"] == {"lr": 0.003}
    run = subprocess.run(
        [sys.executable, str(expr / "ar.py"), "run", "--seconds", "60"],
        cwd=host,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    result = json.loads((expr / "runs" / run.stdout.split()[0] / "result.json").read_text())
    assert result["verdict"] == "advance" and result["primary"]["name"] == "val_loss"


# ---------------------------------------------------------------- script shapes, knobs, one rule each


def test_knobs_list_name_default_help_for_each_kind_of_host(tmp_path):
    knobs = {
        name: Detected(clean_copy(name, tmp_path / name)).knobs
        for name in ("script_host", "gptconf_host", "constants_host", "hydra_host", "function_host")
    }
    assert {"name": "lr", "default": 0.01, "help": "learning rate"} in knobs["script_host"]  # argparse
    assert {"name": "learning_rate", "default": 0.01, "help": ""} in knobs["gptconf_host"]  # configurator globals
    assert [k["name"] for k in knobs["constants_host"]][:3] == ["DEPTH", "WIDTH", "MATRIX_LR"]  # module constants
    assert {"name": "trainer.steps", "default": 60, "help": ""} in knobs["hydra_host"]  # Hydra config keys
    assert {"name": "lr", "default": 0.01, "help": ""} in knobs["function_host"]  # typed main() parameters
    for found in knobs.values():
        assert all(set(k) == {"name", "default", "help"} for k in found)


def test_correcting_the_entry_module_rederives_its_answers(tmp_path):
    root = write(
        tmp_path / "two",
        {
            "train.py": (
                "import argparse\nimport torch\np = argparse.ArgumentParser()\n"
                "p.add_argument('--lr', type=float, default=0.1)\n"
                "p.add_argument('--resume', default=None)\nargs = p.parse_args()\n"
                "print(f'val_loss={0.5}')\ntorch.save({}, 'checkpoints/a.pt')\n"
            ),
            "tools/finetune_cls.py": (
                "import argparse\nimport os\nimport torch\n\n\ndef main():\n"
                "    p = argparse.ArgumentParser()\n    p.add_argument('--out', default='ft')\n"
                "    p.add_argument('--warmup_steps', type=int, default=10)\n    args = p.parse_args()\n"
                "    print('eval_acc: %.3f' % 0.9)\n    torch.save({}, os.path.join(args.out, 'best.pt'))\n\n\n"
                "if __name__ == '__main__':\n    main()\n"
            ),
        },
    )
    d = Detected(root)
    assert (d.entry_main_module, d.primary_metric, d.checkpoint_glob, d.resume_flag_name) == (
        "train",
        "val_loss",
        "checkpoints/*.pt",
        "resume",
    )
    other = d.for_module("tools.finetune_cls")
    assert (other.entry_main_module, other.primary_metric, other.checkpoint_glob, other.resume_flag_name) == (
        "tools.finetune_cls",
        "eval_acc",
        "ft/*.pt",
        "",
    )
    assert [k["name"] for k in other.knobs] == ["out", "warmup_steps"]
    assert d.for_module("") is d and d.for_module("train") is d


def test_commands_from_readme_makefile_and_scripts_with_their_launcher(tmp_path):
    root = write(
        tmp_path / "cmds",
        {
            "pkg/__init__.py": "",
            "pkg/launch_job.py": "import argparse\np = argparse.ArgumentParser()\np.add_argument('--lr')\np.parse_args()\n",
            "Makefile": "train:\n\taccelerate launch --num_processes 2 -m pkg.launch_job --lr 0.1\n",
        },
    )
    d = Detected(root)
    assert d.entry_main_module == "pkg.launch_job" and d.runner == "accelerate launch --num_processes 2"
    assert yaml.safe_load(d.cli_args_for("argparse-cli")) == {"lr": 0.1}
    (root / "Makefile").unlink()
    (root / "scripts").mkdir()
    (root / "scripts/run.sh").write_text("#!/bin/sh\npython -m pkg.launch_job --lr 0.2\n")
    d = Detected(root)
    assert d.entry_main_module == "pkg.launch_job" and d.runner == "python"
    assert yaml.safe_load(d.cli_args_for("argparse-cli")) == {"lr": 0.2}


def test_no_entry_point_says_so_plainly(tmp_path):
    root = write(tmp_path / "lib", {"util.py": "def helper():\n    return 1\n"})
    d = Detected(root)
    assert d.entry_pattern == "custom"
    assert "entry point  none found: answer entry_main_module" in d.summary()


def test_copier_choices_match_the_runners_rules():
    """copier.yml's choices and the interview's rules name exactly what the runner accepts."""
    from arunner.core.answers import ANSWERS
    from arunner.core.config import CONSTRAINT_RE, LAUNCHERS, PYTHON_RE
    from arunner.metrics import BACKENDS
    from detection import commands

    questions = yaml.safe_load((REPO / "copier.yml").read_text())
    assert set(questions["metric_backend"]["choices"]) == set(BACKENDS)
    assert set(questions["cli_style"]["choices"].values()) == set(ANSWERS["cli_style"].choices)
    assert set(questions["entry_pattern"]["choices"].values()) == set(ANSWERS["entry_pattern"].choices)
    assert answer_rules.CONSTRAINT_RE is CONSTRAINT_RE and commands.LAUNCHERS is LAUNCHERS
    assert commands.PYTHON_RE is PYTHON_RE
    # metric_extract_code: the runner's wrapping (dedented), so indented code is fine in both
    assert answer_rules.check("metric_extract_code", "    x = 1\n    return {'a': x}") == ""
    assert "not valid Python" in answer_rules.check("metric_extract_code", "return {")


def test_default_log_rule_reads_table_cells_and_spaced_values(tmp_path):
    from arunner.metrics.logregex import build_patterns, scan_log

    log = tmp_path / "run.log"
    log.write_text(
        "| end of epoch   1 | time:  0.05s | valid loss  6.45 | valid ppl   631.37\n"
        "step 250: train loss 1.9000, val loss 2.0100\n"
        "val_bpb:          0.997900\n"
    )
    patterns, literals, _ = build_patterns("", ["valid loss", "val loss", "val_bpb", "valid ppl", "loss"])
    values, _ = scan_log(log, patterns, "valid loss", literals)
    # a bare name matches any cell ending in it: `loss` reads the last `... loss <v>` (val loss here)
    assert values == {"valid loss": 6.45, "val loss": 2.01, "val_bpb": 0.9979, "valid ppl": 631.37, "loss": 2.01}


def test_mutation_scope_never_suggests_the_metric_contract(tmp_path):
    # constants_host's train.py imports its own prepare.py (TIME_BUDGET): the integrity checks
    # protect that module, so it must not be offered as a place to patch.
    scope = yaml.safe_load(Detected(clean_copy("constants_host", tmp_path / "c")).mutation_scope)
    assert "prepare" not in scope
    assert yaml.safe_load(Detected(clean_copy("script_host", tmp_path / "s")).mutation_scope)  # still a scope
