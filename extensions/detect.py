"""Jinja global `ar_detected(conf)`: interview defaults from static analysis of the host.

Read-only and bounded: never imports or runs host code. Results are cached on
the class per host root (Copier renders several times per command).
"""
from __future__ import annotations

import sys
from pathlib import Path

import yaml
from jinja2.ext import Extension

sys.path.insert(0, str(Path(__file__).parent))
import hostpaths  # noqa: E402


class Detected:
    """What detection found; every attribute is a ready-to-use interview default."""

    entry_pattern = "argparse-cli"
    entry_main_module = ""
    resume_flag_name = ""
    distributed_framework = "auto"
    goal = "lower the validation loss"
    metric_backend = "auto"
    tb_events_glob = "runs/**/events.out.tfevents.*"
    log_metric_regex = ""
    checkpoint_glob = ""
    primary_metric = "eval/loss"
    mutation_scope = "[]"
    runner = "python"
    wandb_project = ""

    def __init__(self, root: Path | None):
        self.root = root
        self.cli_args: dict | list = {}

    def cli_args_for(self, pattern: str) -> str:
        args = self.cli_args
        if pattern == "hydra" and isinstance(args, dict):
            args = [f"{k}={v}" for k, v in args.items()]
        if pattern != "hydra" and isinstance(args, list):
            args = dict(a.split("=", 1) for a in args if "=" in a)
        return yaml.safe_dump(args, default_flow_style=True).strip()


class Detection(Extension):
    cache: dict[str, Detected] = {}

    def __init__(self, environment):
        super().__init__(environment)
        environment.globals["ar_detected"] = self.detected

    @classmethod
    def detected(cls, conf) -> Detected:
        root = hostpaths.host_root(conf)
        key = str(root)
        if key not in cls.cache:
            cls.cache[key] = Detected(root)
        return cls.cache[key]
