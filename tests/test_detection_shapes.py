"""Detection on research code as it is published: the shapes of tests/hosts/README.md's last table.

Each host was written from scratch after a public repository's layout (a char-level trainer
under a main guard, a GPT script of module constants, a yacs-style project inside a library
repo, a host that saves to a hard-coded path, a host that prints a test metric after the
validation one). The expected values come from reading each host's code. The end-to-end test
renders each with `copier copy --defaults` and no answer typed at all.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import COPIER, REPO
from detection_support import Detected, assert_valid, clean_copy, write

BIN = Path(sys.executable).parent

TRUTH = {
    "charlevel_host": dict(
        entry_main_module="makechars",
        cli_style="space",
        output_key="work-dir",
        output_fixed="[]",
        length_key="max-steps",
        time_key="",
        seed_key="seed",
        primary_metric="Loss/test",  # its only held-out metric: nothing better to optimise
        holdout_metrics="[]",
        mutation_scope="[makechars.NewGELU, makechars.CharMLP]",
        cli_args={"learning-rate": 0.005, "max-steps": 1000, "batch-size": 32, "n-embd": 16},
    ),
    "gptmodule_host": dict(
        entry_main_module="gpt",
        cli_style="constants",
        output_key="",
        length_key="max_iters",
        seed_key="",
        primary_metric="val loss",
        cli_args={"learning_rate": 0.001, "batch_size": 16, "n_embd": 16, "n_layer": 1, "n_head": 2},
    ),
    "libproj_host": dict(
        entry_main_module="projects.chars.chars",
        cli_style="equals",
        output_key="system.work_dir",
        length_key="trainer.max_iters",
        seed_key="system.seed",
        primary_metric="val loss",
        cli_args={"trainer.max_iters": 300},  # its README's command, from the repository root
    ),
    "fixedpath_host": dict(
        entry_main_module="train",
        cli_style="space",
        output_key="",
        output_fixed="[ckpt/model.bin]",
        length_key="steps",
        primary_metric="val_loss",
        cli_args={"steps": 40},
    ),
    "testmetric_host": dict(
        entry_main_module="train",
        output_key="save",
        length_key="epochs",
        time_key="max_time",
        primary_metric="valid loss",
        holdout_metrics="[test loss]",
        seconds=50,
        cli_args={"epochs": 3, "lr": 0.0005},  # the README line's comment, redirection and && are not arguments
    ),
}


@pytest.mark.parametrize("name", sorted(TRUTH))
def test_each_shape_is_detected_right_the_first_time(name, tmp_path):
    root = clean_copy(name, tmp_path / name)
    d = Detected(root)
    truth = dict(TRUTH[name])
    assert yaml.safe_load(d.cli_args_for(d.entry_pattern)) == truth.pop("cli_args"), d.notes
    assert d.entry_pattern == "argparse-cli"
    for key, value in truth.items():
        assert getattr(d, key) == value, (key, d.notes)
    assert_valid(d, root)
    assert "entry point  none found" not in d.summary()


def test_forever_step_limit_is_named_in_the_summary_and_made_finite(tmp_path):
    d = Detected(clean_copy("charlevel_host", tmp_path / "c"))
    assert d.found.output.forever and d.found.output.length_default == -1
    assert "max-steps, default -1 = trains forever: the baseline proposes 1000" in d.summary()
    # without a step count in the printed progress, nothing is proposed: the summary names the knob
    root = write(
        tmp_path / "epochs",
        {
            "train.py": (
                "import argparse\nimport torch\np = argparse.ArgumentParser()\n"
                "p.add_argument('--max_epochs', type=int, default=-1)\np.add_argument('--lr', type=float, default=0.1)\n"
                "args = p.parse_args()\nepoch = 0\nwhile True:\n    torch.zeros(1).backward()\n"
                "    print(f'val_loss={0.5}')\n    epoch += 1\n"
                "    if args.max_epochs >= 0 and epoch >= args.max_epochs:\n        break\n"
            )
        },
    )
    e = Detected(root)
    assert e.length_key == "max_epochs" and e.found.output.forever
    assert yaml.safe_load(e.cli_args_for("argparse-cli")).get("max_epochs", -1) == -1  # nothing proposed
    assert "max_epochs, default -1 = trains forever: set max_epochs in cli_args" in e.summary()


def test_none_or_zero_means_forever_only_with_an_open_loop(tmp_path):
    loop = "while True:\n    step += 1\n    if args.max_steps and step >= args.max_steps:\n        break\n"
    bounded = "for step in range(args.max_steps or 10):\n    pass\n"
    head = (
        "import argparse\np = argparse.ArgumentParser()\np.add_argument('--max_steps', type=int, default={d})\n"
        "args = p.parse_args()\nstep = 0\nprint(f'step {{step}} val_loss={{0.1}}')\n"
    )
    found = {}
    for default in ("None", "0"):
        for body_name, body in (("open", loop), ("bounded", bounded)):
            root = write(tmp_path / f"{default}{body_name}", {"train.py": head.format(d=default) + body})
            found[default, body_name] = Detected(root).found.output.forever
    assert found == {("None", "open"): True, ("None", "bounded"): False, ("0", "open"): True, ("0", "bounded"): False}


def test_output_knob_through_each_convention(tmp_path):
    """`torch.save` under a configurator global, a path constant, Lightning's and HF's own folder options."""
    cases = {
        "gptconf_host": "out_dir",  # configurator global
        "constants_host": "CHECKPOINT",  # a path constant
        "argparse_host": "output_dir",  # HfArgumentParser dataclass field
        "hydra_host": "hydra.run.dir",  # HydraConfig.get().runtime.output_dir
        "wordlm_host": "save",  # with open(args.save, 'wb') as f: torch.save(model, f)
    }
    for name, key in cases.items():
        assert Detected(clean_copy(name, tmp_path / name)).output_key == key, name
    lit = write(
        tmp_path / "lit",
        {
            "train.py": (
                "import argparse\nimport lightning as L\np = argparse.ArgumentParser()\n"
                "p.add_argument('--root', default='logs')\np.add_argument('--max_epochs', type=int, default=3)\n"
                "args = p.parse_args()\ntrainer = L.Trainer(default_root_dir=args.root, max_epochs=args.max_epochs)\n"
                "trainer.fit(None)\nprint(f'val_loss={0.1}')\n"
            )
        },
    )
    d = Detected(lit)
    assert (d.output_key, d.length_key) == ("root", "max_epochs")


def test_val_beats_test_and_test_becomes_holdout(tmp_path):
    root = write(
        tmp_path / "m",
        {
            "train.py": (
                "import argparse\np = argparse.ArgumentParser()\np.add_argument('--lr', type=float, default=0.1)\n"
                "args = p.parse_args()\nprint(f'test_acc={0.5}')\nprint(f'dev_acc={0.4}')\nprint(f'train_acc={0.9}')\n"
            )
        },
    )
    d = Detected(root)
    assert d.primary_metric == "dev_acc" and d.holdout_metrics == "[test_acc]"
    assert "holdout      test_acc" in d.summary()


def test_readme_command_stops_at_comments_redirections_and_chains():
    sys.path.insert(0, str(REPO / "extensions"))
    from detection.commands import shell_words

    assert shell_words("python main.py --accel --epochs 6   # Train a LSTM on Wikitext-2.") == [
        "python",
        "main.py",
        "--accel",
        "--epochs",
        "6",
    ]
    assert shell_words("python train.py --lr 1e-3 > log.txt 2>&1 && tail log.txt") == [
        "python",
        "train.py",
        "--lr",
        "1e-3",
    ]
    assert shell_words("python a.py --x=1 2>err.txt | tee out; echo done") == ["python", "a.py", "--x=1"]
    assert shell_words("python a.py --name 'a # b' >>log") == ["python", "a.py", "--name", "a # b"]


def _copier_defaults(host: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    cmd = [COPIER, "copy", "--trust", "--defaults", "--vcs-ref", "HEAD", str(REPO), ".autoresearch"]
    return subprocess.run(cmd, cwd=host, capture_output=True, text=True, env=env)


@pytest.mark.parametrize("name", sorted(TRUTH))
def test_copier_defaults_render_each_shape_with_no_answer_typed(name, tmp_path):
    """Zero answers typed (not even the slug): the experiment renders with detection's answers."""
    host = clean_copy(name, tmp_path / name)
    proc = _copier_defaults(host)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (expr,) = (host / ".autoresearch").iterdir()
    config = json.loads((expr / "experiment.json").read_text())
    truth = TRUTH[name]
    for key in ("entry_main_module", "output_key", "length_key", "primary_metric"):
        assert config[key] == truth[key], key
    assert config["cli_args"] == truth["cli_args"]
    for key in ("output_fixed", "holdout_metrics"):
        if key in truth:
            assert config[key] == yaml.safe_load(truth[key]), key
    answers = yaml.safe_load((expr / ".copier-answers.yml").read_text())
    for key in ("output_key", "output_fixed", "length_key", "time_key"):
        assert key in answers  # stored: copier update keeps them
    assert "detected (static analysis" in proc.stderr
    summary = proc.stderr[proc.stderr.index("detected (static analysis") :]
    assert "outputs" in summary and "length" in summary
    numbers = [v for v in config["cli_args"].values() if isinstance(v, str)]
    assert not [v for v in numbers if v.replace(".", "").replace("e-", "").isdigit()], numbers


def test_yacs_config_keys_come_from_the_config_functions_and_classes(tmp_path):
    d = Detected(clean_copy("libproj_host", tmp_path / "lib"))
    knobs = {k["name"]: k["default"] for k in d.knobs}
    assert knobs["system.seed"] == 3407 and knobs["system.work_dir"] == "./out/chars"
    assert knobs["model.n_embd"] == 16  # from GPT.get_default_config() in the library
    assert knobs["trainer.learning_rate"] == 0.005  # the project's own value wins over the library's 5e-4
    assert knobs["trainer.max_iters"] is None and d.found.output.forever
    assert "score" not in d.candidates["primary_metric"]  # the other project's metric is not mixed in
    other = d.for_module("projects.adder.adder")
    assert other.primary_metric == "score" and other.output_key == "system.work_dir"


def test_library_repo_without_a_command_says_which_projects_tie(tmp_path):
    root = clean_copy("libproj_host", tmp_path / "lib")
    (root / "projects" / "chars" / "README.md").unlink()
    d = Detected(root)
    assert any("2 equally likely entry points" in n for n in d.notes), d.notes
    # whichever was taken, its findings are its own: metric and output folder of that project
    own = {"projects.adder.adder": ("score", "./out/adder"), "projects.chars.chars": ("val loss", "./out/chars")}
    metric, folder = own[d.entry_main_module]
    assert d.primary_metric == metric and d.found.output.key_default == folder


def test_answered_entry_module_rederives_and_the_summary_shows_it(tmp_path):
    host = clean_copy("libproj_host", tmp_path / "lib")
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    cmd = [
        COPIER,
        "copy",
        "--trust",
        "--defaults",
        "--vcs-ref",
        "HEAD",
        "--data",
        "entry_main_module=projects.adder.adder",
    ]
    proc = subprocess.run([*cmd, str(REPO), ".autoresearch"], cwd=host, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = proc.stderr[proc.stderr.index("detected (static analysis") :]
    assert "entry point  projects.adder.adder [argparse-cli, --k=v]" in summary
    assert "chars" not in summary and "score (max)" in summary
    (expr,) = (host / ".autoresearch").iterdir()
    config = json.loads((expr / "experiment.json").read_text())
    assert (config["primary_metric"], config["primary_direction"], config["output_key"]) == (
        "score",
        "max",
        "system.work_dir",
    )
    assert config["cli_args"]["trainer.max_iters"] == 1000  # its own forever default, made finite


def test_a_literal_global_seed_is_reported_a_data_generator_is_not(tmp_path):
    d = Detected(clean_copy("gptmodule_host", tmp_path / "gpt"))
    assert d.seed_key == "" and d.found.seed_fixed.startswith("gpt.py:21 (torch.manual_seed(1337))")
    assert "the host fixes its seed at gpt.py:21" in d.summary()
    f = Detected(clean_copy("fixedpath_host", tmp_path / "fixed"))  # only torch.Generator().manual_seed(1234)
    assert f.found.seed_fixed == "" and "fixes its seed" not in f.summary()


def test_minus_one_steps_beside_a_finite_epoch_count_is_not_forever(tmp_path):
    root = write(
        tmp_path / "hf",
        {
            "train.py": (
                "import argparse\np = argparse.ArgumentParser()\np.add_argument('--max_steps', type=int, default=-1)\n"
                "p.add_argument('--num_train_epochs', type=int, default=3)\n"
                "p.add_argument('--timeout', type=int, default=1800)\nargs = p.parse_args()\n"
                "print(f'step 1 eval_loss={0.1}')\n"
            )
        },
    )
    d = Detected(root)
    assert d.length_key == "max_steps" and not d.found.output.forever
    assert yaml.safe_load(d.cli_args_for("argparse-cli")).get("max_steps", -1) == -1
    assert d.time_key == ""  # a distributed or I/O timeout is not a training-time cap
