"""Jinja global `ar_detected(conf)`: interview defaults from static analysis of the host.

The analysis lives in the `detection` package beside this file. Read-only and
bounded: never imports or runs host code. Results are cached on the class per
host root (Copier renders several times per command). In a scratch render
(copier update's temporary copies) there is no host to read: the literal
defaults below stand. Every detected default is checked with the interview's
own rules; one that would not pass falls back to its literal default, so
`copier copy --defaults` never fails on a detection guess.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml
from jinja2.ext import Extension

sys.path.insert(0, str(Path(__file__).parent))
import answer_rules  # noqa: E402
import hostpaths  # noqa: E402
from direction import ar_direction  # noqa: E402

import detection  # noqa: E402

KEYS = (
    "entry_pattern",
    "entry_main_module",
    "cli_args",
    "resume_flag_name",
    "distributed_framework",
    "goal",
    "metric_backend",
    "tb_events_glob",
    "checkpoint_glob",
    "primary_metric",
    "mutation_scope",
    "runner",
    "wandb_project",
)


class Detected:
    """What detection found; every attribute is a ready-to-use interview default."""

    entry_pattern = "argparse-cli"
    entry_main_module = ""
    resume_flag_name = ""
    distributed_framework = "auto"
    goal = "lower the validation loss"
    metric_backend = "auto"
    tb_events_glob = "runs/**/events.out.tfevents.*"
    log_metric_regex = ""  # empty = the runner's built-in name=value / name: value rule
    checkpoint_glob = ""
    primary_metric = "eval/loss"
    mutation_scope = "[]"
    runner = "python"
    wandb_project = ""

    def __init__(self, root: Path | None):
        self.root = root
        self.cli_args: dict | list = {}
        self.confidence: dict[str, str] = {}
        self.notes: list[str] = []
        self.candidates: dict[str, list] = {}
        self.stats: dict = {}
        if root is not None:
            self._detect(Path(root))

    def _detect(self, root: Path) -> None:
        try:
            found = detection.analyse(root, ar_direction)
        except Exception as exc:  # noqa: BLE001 - a detection bug must never block the setup
            self.notes.append(f"detection failed ({type(exc).__name__}: {exc}); literal defaults used")
            return
        self.confidence, self.notes, self.candidates, self.stats = (
            found.confidence,
            found.notes,
            found.candidates,
            found.stats,
        )
        for key in KEYS:
            value = getattr(found, key)
            if key == "mutation_scope":
                value = yaml.safe_dump(value, default_flow_style=True).strip()
            if value in ("", None) and key not in ("resume_flag_name", "checkpoint_glob", "wandb_project"):
                continue  # nothing found: keep the literal default
            setattr(self, key, value)
        self._keep_valid(root if (root / "pyproject.toml").is_file() else None)

    def _keep_valid(self, root: Path | None) -> None:
        """Put back the literal default of any detected value the interview would refuse."""
        for key in KEYS:
            if key == "entry_main_module" and self.entry_pattern == "custom":
                continue  # not asked for the custom pattern (and may be empty)
            raw = self.cli_args_for(self.entry_pattern) if key == "cli_args" else getattr(self, key)
            try:
                value = answer_rules.parse_value(key, raw)
                reason = answer_rules.check(key, value, root=root, entry_pattern=self.entry_pattern)
            except ValueError as exc:
                reason = str(exc)
            if reason:
                self.notes.append(f"detected {key}={raw!r} dropped: {reason}")
                if key == "cli_args":
                    self.cli_args = {}
                elif key == "entry_main_module":
                    self.entry_pattern, self.entry_main_module = "custom", ""  # custom asks for no module
                else:
                    setattr(self, key, getattr(type(self), key))

    def cli_args_for(self, pattern: str) -> str:
        """cli_args as YAML for `pattern`: key=value strings for hydra, a mapping otherwise.

        Custom gets {}: the question is not asked for it, and an unconfirmed guess
        must not land in train.py unseen.
        """
        args = self.cli_args if pattern != "custom" else {}
        if pattern == "hydra" and isinstance(args, dict):
            args = [f"{k}={_hydra_value(v)}" for k, v in args.items()]
        if pattern != "hydra" and isinstance(args, list):
            args = {k.lstrip("+~"): detection.sources.scalar(v) for k, v in (a.split("=", 1) for a in args if "=" in a)}
        return yaml.safe_dump(args, default_flow_style=True, sort_keys=False, width=1 << 16).strip()


def _hydra_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "null" if value is None else str(value)


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
