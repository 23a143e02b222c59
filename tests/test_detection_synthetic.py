"""Detection on small synthetic projects built in tmp_path: the cases no fixture host covers
(wandb run folders, mlruns, accelerate configs, torchrun in CLAUDE.md, HF Trainer output dirs,
TensorBoard folders, data folders never read, no entry point at all)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from detection_support import Detected, assert_valid, write

# ---------------------------------------------------------------- synthetic projects

ARGPARSE_TRAIN = """import argparse
def main():
    p = argparse.ArgumentParser()
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--logging_steps", type=int, default=5)
    p.add_argument("--resume", action="store_true")
    args = p.parse_args()
    print(f"val_acc={0.5}")
if __name__ == "__main__":
    main()
"""


def wandb_run(root: Path, name: str, config: dict, summary: dict, argv: list) -> None:
    files = f"wandb/{name}/files"
    write(
        root,
        {
            f"{files}/config.yaml": yaml.safe_dump({k: {"desc": None, "value": v} for k, v in config.items()}),
            f"{files}/wandb-summary.json": json.dumps(summary),
            f"{files}/wandb-metadata.json": json.dumps({"codePath": "train.py", "args": argv}),
            f"{files}/media/images/big.png": "not read",
        },
    )


def test_wandb_run_folder_gives_backend_args_and_metric(tmp_path):
    root = write(tmp_path / "p", {"pyproject.toml": "[project]\nname='p'\n", "train.py": ARGPARSE_TRAIN})
    wandb_run(root, "run-20260101_120000-old", {"lr": 0.5}, {"old_metric_acc": 1.0}, [])
    wandb_run(
        root,
        "offline-run-20260301_120000-new",
        {
            "_wandb": {"cli_version": "0.19"},
            "lr": 0.003,
            "batch_size": 64,
            "logging_steps": 10,
            "not_an_option": 7,
            "resume": True,
        },
        {"eval/accuracy": 0.91, "train/loss": 0.2, "_runtime": 4.0},
        ["--lr", "0.003"],
    )
    d = Detected(root)
    assert d.metric_backend == "wandb" and d.confidence["metric_backend"] == "high"
    # newest run; _wandb, cosmetic logging_steps, names train.py does not accept and the resume flag skipped
    assert yaml.safe_load(d.cli_args_for("argparse-cli")) == {"lr": 0.003, "batch_size": 64}
    assert d.primary_metric == "eval/accuracy"
    assert d.resume_flag_name == ""  # --resume is a store_true switch: it cannot take a checkpoint path
    assert_valid(d, root)


def test_mlruns_means_custom_backend_with_a_note(tmp_path):
    root = write(
        tmp_path / "p",
        {
            "pyproject.toml": "[project]\nname='p'\n",
            "train.py": ARGPARSE_TRAIN,
            "mlruns/0/meta.yaml": "name: Default\n",
        },
    )
    d = Detected(root)
    assert d.metric_backend == "custom"
    assert any("mlflow" in n and "metric_extract_code" in n for n in d.notes)
    assert_valid(d, root)


def test_accelerate_config_and_save_state(tmp_path):
    train = """import argparse
from accelerate import Accelerator
def main():
    p = argparse.ArgumentParser()
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--save_dir", default="ckpts")
    args = p.parse_args()
    accelerator = Accelerator()
    for step in range(10):
        accelerator.save_state(f"{args.save_dir}/step_{step}")
    accelerator.print(f"eval_loss: {0.1}")
if __name__ == "__main__":
    main()
"""
    root = write(
        tmp_path / "p",
        {
            "pyproject.toml": "[project]\nname='p'\n",
            "src/pkg/__init__.py": "",
            "src/pkg/train.py": train,
            "configs/accelerate_2gpu.yaml": "num_processes: 2\n",
        },
    )
    d = Detected(root)
    assert (d.entry_pattern, d.entry_main_module) == ("argparse-cli", "pkg.train")
    assert d.runner == "accelerate launch --config_file configs/accelerate_2gpu.yaml"
    assert d.distributed_framework == "accelerate"
    assert d.checkpoint_glob == "ckpts/step_*"
    assert d.primary_metric == "eval_loss"
    assert_valid(d, root)


def test_torchrun_command_in_claude_md(tmp_path):
    train = """import argparse
import torch.distributed as dist
def main():
    p = argparse.ArgumentParser()
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--ckpt_path", default=None)
    args = p.parse_args()
    dist.init_process_group("gloo")
if __name__ == "__main__":
    main()
"""
    doc = "# p\n\n## Training\n\n```bash\nOMP_NUM_THREADS=1 torchrun --nproc-per-node 4 -m pkg.train --lr 0.05\n```\n"
    root = write(
        tmp_path / "p",
        {
            "pyproject.toml": "[project]\nname='p'\n",
            "CLAUDE.md": doc,
            "pkg/__init__.py": "",
            "pkg/train.py": train,
            "pkg/train_utils.py": "def helper():\n    return 1\n",
        },
    )
    d = Detected(root)
    assert d.runner == "torchrun --nproc-per-node 4"
    assert d.distributed_framework == "ddp"
    assert d.entry_main_module == "pkg.train" and d.confidence["entry_main_module"] == "high"
    assert yaml.safe_load(d.cli_args_for("argparse-cli")) == {"lr": 0.05}
    assert d.resume_flag_name == "ckpt_path"
    assert_valid(d, root)


def test_hf_trainer_output_dir_checkpoints(tmp_path):
    train = """from dataclasses import dataclass, field
from transformers import HfArgumentParser, Trainer, TrainingArguments
@dataclass
class ModelArguments:
    model_name_or_path: str = "gpt2"
def main():
    model_args, args = HfArgumentParser((ModelArguments, TrainingArguments)).parse_args_into_dataclasses()
    Trainer(args=args).train(resume_from_checkpoint=args.resume_from_checkpoint)
if __name__ == "__main__":
    main()
"""
    doc = "```\npython scripts/train_lm.py --output_dir out/lm --learning_rate 5e-5 --report_to wandb\n```\n"
    root = write(
        tmp_path / "p", {"pyproject.toml": "[project]\nname='p'\n", "CLAUDE.md": doc, "scripts/train_lm.py": train}
    )
    d = Detected(root)
    assert (d.entry_pattern, d.entry_main_module) == ("argparse-cli", "scripts.train_lm")
    assert d.resume_flag_name == "resume_from_checkpoint"
    assert d.checkpoint_glob == "out/lm/checkpoint-*"
    assert yaml.safe_load(d.cli_args_for("argparse-cli"))["learning_rate"] == 5e-5
    assert_valid(d, root)


def test_tensorboard_runs_folder(tmp_path):
    train = """import argparse
from torch.utils.tensorboard import SummaryWriter
def main():
    argparse.ArgumentParser().parse_args()
    w = SummaryWriter()
    w.add_scalar("val/top1", 0.5, 1)
if __name__ == "__main__":
    main()
"""
    root = write(tmp_path / "p", {"pyproject.toml": "[project]\nname='p'\n", "train.py": train})
    assert Detected(root).tb_events_glob == "runs/*/events.out.tfevents.*"  # SummaryWriter's default, from code
    write(root, {"runs/Mar01_12-00-00_host/events.out.tfevents.1.host.0": "x"})
    d = Detected(root)
    assert d.metric_backend == "tensorboard" and d.tb_events_glob == "runs/*/events.out.tfevents.*"
    assert d.primary_metric == "val/top1"
    assert_valid(d, root)


def test_data_folders_are_not_read_and_host_code_never_runs(tmp_path):
    hydra_decoy = "import hydra\n@hydra.main(config_path='c')\ndef main(cfg):\n    pass\n"
    marker = tmp_path / "executed"
    train = ARGPARSE_TRAIN.replace("import argparse", f"import argparse\nopen({str(marker)!r}, 'w').close()")
    root = write(tmp_path / "p", {"pyproject.toml": "[project]\nname='p'\n", "scripts/train.py": train})
    for i in range(3000):
        write(root, {f"data/shard{i // 500}/train_{i}.py": hydra_decoy})
    write(
        root,
        {
            ".venv/pyvenv.cfg": "home=/usr\n",
            ".venv/lib/train_x.py": hydra_decoy,
            "myenv/pyvenv.cfg": "home=/usr\n",
            "myenv/train_y.py": hydra_decoy,
            "node_modules/x/train_z.py": hydra_decoy,
        },
    )
    d = Detected(root)
    assert (d.entry_pattern, d.entry_main_module) == ("argparse-cli", "scripts.train")
    assert d.stats["listed"] < 50 and d.stats["parsed"] <= 2, d.stats  # data/ was not even listed
    assert not marker.exists()
    assert_valid(d, root)


def test_no_entry_point_falls_back_to_custom(tmp_path):
    root = write(
        tmp_path / "p",
        {"pyproject.toml": "[project]\nname='p'\n", "pkg/__init__.py": "", "pkg/model.py": "class Net:\n    pass\n"},
    )
    d = Detected(root)
    assert d.entry_pattern == "custom" and d.entry_main_module == ""
    assert d.goal == "lower the validation loss" and d.metric_backend == "log"
    assert_valid(d, root)
