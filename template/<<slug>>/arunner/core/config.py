"""The experiment's configuration: the rendered answers plus the session settings.

`experiment.json` is rendered by Copier from the answers (so `copier update`
keeps it true); `.ar-session.json` holds what `ar.py session` set. Both are
read once per command.
"""

from __future__ import annotations

import copy
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .answers import ANSWERS, CONFIG_KEYS, DIRECTIONS
from .errors import UserError
from .fsutil import atomic_write_json, read_json
from .layout import CONFIG_FILE, SESSION_FILE, Layout

OPS = ("<=", ">=", "<", ">")
CONSTRAINT_RE = re.compile(r"^\s*([^\s<>=]+)\s*(<=|>=|<|>)\s*(\S+)\s*$")  # as the interview checks it
LAUNCHERS = ("torchrun", "accelerate", "deepspeed", "srun", "mpirun")
PYTHON_RE = re.compile(r"python(3(\.\d+)?)?")  # a bare interpreter name: means the one running ar.py


def path_list(value: Any, what: str, fix: str) -> list[str]:
    """A list of project paths; one path, or a JSON list written as text, is read as such."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except ValueError:
                raise UserError(f"{what} {value!r} is not a list of paths; {fix}") from None
        else:
            value = [text] if text else []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise UserError(f"{what} must be a list of project paths, got {value!r}; {fix}")
    return value


@dataclass(frozen=True)
class Constraint:
    name: str
    op: str
    threshold: float

    @classmethod
    def parse(cls, text: str) -> Constraint:
        m = CONSTRAINT_RE.match(str(text))
        if not m:
            raise UserError(
                f"hard constraint {text!r} is not 'name op threshold' with op one of {', '.join(OPS)}; "
                "fix hard_constraints in the answers and run copier update"
            )
        try:
            threshold = float(m.group(3))
        except ValueError:
            raise UserError(f"hard constraint {text!r}: threshold {m.group(3)!r} is not a number") from None
        return cls(m.group(1), m.group(2), threshold)

    def holds(self, value: float) -> bool:
        if value is None or not math.isfinite(value):
            return False
        return {
            "<=": value <= self.threshold,
            "<": value < self.threshold,
            ">=": value >= self.threshold,
            ">": value > self.threshold,
        }[self.op]


@dataclass
class Session:
    """Termination conditions and run defaults, set with `ar.py session`."""

    max_runs: int | None = None
    plateau: int | None = None
    threshold: float | None = None
    unlimited: bool = False
    seconds: int | None = None
    grace_s: float | None = None
    keep_checkpoints: int = 1  # besides the best: how many of the latest runs keep theirs
    chain_mode: str = "off"
    integrity: str | None = None  # off / files / evaluator; None: evaluator when prepare.py has evaluate(), else files
    stopped: bool = False  # `session --stop`: terminated_by=manual
    devices: list[str] | None = None  # device ids a wave leases (None: the visible GPUs, detected)
    devices_per_run: int = 1  # devices per candidate (torchrun --nproc-per-node N wants N)
    launcher: str = "local"  # local (this machine) or slurm (one batch job per candidate)
    slurm_args: str = ""  # sbatch options of every job, e.g. --partition=gpu --gres=gpu:1
    repeats: int | None = None  # runs of the first baseline (None: the default, see noise_groups.repeats)
    margin: float | None = None  # k of the noise rule (None: noise.DEFAULT_K)
    strict: bool = False  # the single-run rule: better once is better

    @classmethod
    def load(cls, expr_dir: Path) -> Session:
        path = Path(expr_dir) / SESSION_FILE
        again = (
            f"run `python {Path(*Path(expr_dir).resolve().parts[-2:])}/ar.py session` again"  # from the project root
        )
        data = read_json(path, "session file", f"fix it or delete it and {again}", default={})
        if not isinstance(data, dict):
            raise UserError(f"session file {path} must hold a JSON object; delete it and {again}")
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UserError(f"session file {path} has unknown keys {unknown}; delete them or the file")
        try:
            s = cls(**data)
            s.validate()
        except (TypeError, ValueError) as exc:
            raise UserError(f"session file {path} is invalid ({exc}); delete it and {again}") from None
        return s

    def validate(self) -> None:
        for name in ("max_runs", "plateau", "seconds", "repeats"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v <= 0):
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if self.margin is not None and (not isinstance(self.margin, (int, float)) or self.margin <= 0):
            raise ValueError(f"margin must be a number > 0, got {self.margin!r}")
        if self.threshold is not None and not isinstance(self.threshold, (int, float)):
            raise ValueError(f"threshold must be a number, got {self.threshold!r}")
        if self.grace_s is not None and (not isinstance(self.grace_s, (int, float)) or self.grace_s < 0):
            raise ValueError(f"grace_s must be a number >= 0, got {self.grace_s!r}")
        if self.launcher not in ("local", "slurm"):
            raise ValueError(f"launcher must be local or slurm, got {self.launcher!r}")
        if not isinstance(self.devices_per_run, int) or self.devices_per_run < 1:
            raise ValueError(f"devices_per_run must be an integer >= 1, got {self.devices_per_run!r}")
        if not isinstance(self.keep_checkpoints, int) or self.keep_checkpoints < 0:
            raise ValueError(f"keep_checkpoints must be an integer >= 0, got {self.keep_checkpoints!r}")
        if self.integrity not in (None, "off", "files", "evaluator"):
            raise ValueError(f"integrity must be off, files or evaluator, got {self.integrity!r}")

    def save(self, expr_dir: Path) -> None:
        atomic_write_json(Path(expr_dir) / SESSION_FILE, self.__dict__)

    def describe(self) -> str:
        """One line: the termination conditions and run defaults in force."""
        if self.stopped:
            stop = "stopped by hand"
        elif self.unlimited:
            stop = "unlimited"
        else:
            parts = [
                f"max_runs={self.max_runs}" if self.max_runs else "",
                f"plateau={self.plateau}" if self.plateau else "",
                f"threshold={self.threshold:g}" if self.threshold is not None else "",
            ]
            stop = ", ".join(p for p in parts if p) or "no limit set"
        extra = f"; seconds={self.seconds}" if self.seconds else ""
        if self.devices is not None or self.devices_per_run != 1:
            extra += (
                f"; devices={','.join(self.devices) if self.devices is not None else 'auto'}x{self.devices_per_run}"
            )
        if self.launcher != "local":
            extra += f"; launcher={self.launcher}" + (f" {self.slurm_args}" if self.slurm_args else "")
        if self.strict:
            extra += "; strict"
        else:
            extra += f"; repeats={self.repeats}" if self.repeats is not None else ""
            extra += f"; margin={self.margin:g}" if self.margin is not None else ""
        return f"session: {stop}{extra}; keep_checkpoints={self.keep_checkpoints}; chain_mode={self.chain_mode}"


@dataclass
class Config:
    """Answers of the setup interview, as rendered into experiment.json.

    One field per answer of `answers.CONFIG_KEYS` (a test holds them equal).
    `load` reads them by that table; the defaults here serve code and tests that
    build a Config by hand.
    """

    expr_dir: Path
    project_root: Path
    slug: str = ""
    entry_pattern: str = "argparse-cli"
    entry_main_module: str = ""
    cli_style: str = "space"  # how train.py passes CLI_OVERRIDES to an argparse-cli script
    cli_args: Any = field(default_factory=dict)
    resume_flag_name: str = ""
    distributed_framework: str = "none"
    goal: str = ""
    metric_backend: str = "log"
    tb_events_glob: str = ""
    log_metric_regex: str = ""
    metric_extract_code: str = ""
    checkpoint_glob: str = ""
    primary_metric: str = "loss"
    primary_direction: str = "min"
    hard_constraints: list[str] = field(default_factory=list)
    mutation_scope: list[str] = field(default_factory=list)
    seconds: int = 60
    runner: str = "python"
    wandb_project: str = ""
    parent_expr: str = ""
    parent_ckpt: str = ""
    template_version: str = ""
    evaluate_code: str = ""  # body of prepare.py's evaluate() (rendered there; kept here for reference)
    protected_globs: list[str] = field(default_factory=list)  # extra files the agent must not change
    holdout_metrics: list[str] = field(default_factory=list)  # evaluate() metrics never shown to the agent
    seed_key: str = ""  # the host's seed option (detected), varied by repeats and confirmations
    output_key: str = ""  # the host's option or constant that decides where it writes (its default may be a file)
    output_fixed: list[str] = field(default_factory=list)  # paths the host writes to that no option moves
    length_key: str = ""  # the host's step / epoch / iteration limit
    time_key: str = ""  # the host's own time cap, set to the run's budget
    output_file: str = ""  # the file output_key names (`--save model.pt`); "" when it names a folder
    constraints: list[Constraint] = field(default_factory=list)

    @property
    def layout(self) -> Layout:
        """Every path of this experiment."""
        return Layout(self.expr_dir)

    @classmethod
    def load(cls, expr_dir: Path) -> Config:
        expr_dir = Path(expr_dir).resolve()
        path = expr_dir / CONFIG_FILE
        fix = "re-render it with `copier update --trust -a <slug>/.copier-answers.yml .autoresearch`"
        unreadable = (
            f"restore the committed one with `git checkout HEAD -- {path.name}` (in {path.parent}), then "
            "`ar.py upgrade` again if an upgrade left it so"
        )
        data = read_json(path, "experiment config", unreadable)
        if data is None:
            raise UserError(f"{path} is missing; this folder is not a rendered experiment ({fix})")
        missing = sorted(k for k in CONFIG_KEYS if k not in data and ANSWERS[k].required)
        if missing:
            raise UserError(f"{path} lacks {missing}; {fix}")
        values = {k: data[k] if k in data else copy.deepcopy(ANSWERS[k].absent) for k in CONFIG_KEYS}
        values["template_version"] = data.get("template_version", "")
        cfg = cls(expr_dir=expr_dir, project_root=expr_dir.parent.parent, **values)
        if cfg.primary_direction not in DIRECTIONS:
            raise UserError(f"{path}: primary_direction must be min or max, got {cfg.primary_direction!r}; {fix}")
        if not isinstance(cfg.seconds, int) or cfg.seconds <= 0:
            raise UserError(f"{path}: seconds must be a positive integer, got {cfg.seconds!r}; {fix}")
        cfg.constraints = [Constraint.parse(c) for c in (cfg.hard_constraints or [])]
        cfg.output_fixed = path_list(cfg.output_fixed, f"{path}: output_fixed", fix)
        return cfg

    @property
    def launcher_kind(self) -> str:
        """The first word of the runner that is a known multi-process launcher, else 'python'."""
        for word in self.runner.split():
            base = Path(word).name
            if base in LAUNCHERS:
                return base
        return "python"


@dataclass
class Experiment:
    """What every command works with: the rendered config, this session's settings, the paths.

    Loaded once per command and passed as one object (never a config and a session apart)."""

    cfg: Config
    session: Session

    @classmethod
    def load(cls, cfg: Config) -> Experiment:
        return cls(cfg, Session.load(cfg.expr_dir))

    @property
    def layout(self) -> Layout:
        return self.cfg.layout


def run_budget(exp: Experiment, seconds: int | None) -> int:
    """This run's time budget: --seconds, else the session's, else the answers'."""
    return int(seconds or exp.session.seconds or exp.cfg.seconds)
