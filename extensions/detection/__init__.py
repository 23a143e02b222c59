"""Static detection of a host project's training setup (SPEC §4): the interview's defaults.

`analyse(root)` walks the project once (walk), reads CLAUDE.md's commands
(commands) and the newest wandb runs' small files (trackers), picks the entry
point and its pattern (entrypoints), its options, resume flag and baseline
arguments (arguments), then the metric backend and primary metric
(trackers), the checkpoint glob (checkpoints), the runner and distributed
framework (launch), goal candidates and mutation scope (goals). Read-only,
bounded, and host code is only ever parsed, never imported or run.
"""

from __future__ import annotations

import ast
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from arunner.core.answers import ANSWERS

from . import arguments, checkpoints, commands, entrypoints, goals, launch, outputs, pathglob, trackers
from .sources import Project
from .walk import walk

DEFAULT_SECONDS = ANSWERS["seconds"].default  # per-run budget when the host caps nothing itself
# A host that caps its own training time (TIME_BUDGET = 300) still needs start-up
# (imports, data) and a final evaluation inside the runner's budget: the cap plus
# this margin, at least BUDGET_MARGIN_MIN_S, never below the cap.
BUDGET_MARGIN = 0.2
BUDGET_MARGIN_MIN_S = 30
BUDGET_NAMES = ("budget", "time_limit", "max_time", "max_seconds", "max_runtime", "time_cap")


@dataclass
class Findings:
    entry_pattern: str = "custom"
    entry_main_module: str = ""
    cli_args: Any = field(default_factory=dict)
    resume_flag_name: str = ""
    distributed_framework: str = "auto"
    goal: str = goals.DEFAULT_GOAL
    metric_backend: str = "log"
    tb_events_glob: str = ""
    checkpoint_glob: str = ""
    primary_metric: str = ""
    mutation_scope: list = field(default_factory=list)
    runner: str = "python"
    wandb_project: str = ""
    cli_style: str = entrypoints.STYLE_SPACE  # how train.py passes CLI_OVERRIDES: space, equals, constants
    seconds: int = DEFAULT_SECONDS
    output_key: str = ""  # the knob that decides where the host writes checkpoints and tracker logs
    output_fixed: list = field(default_factory=list)  # project-relative paths the host writes to with no knob
    output_file: str = ""  # the file name output_key's default names (`--save model.pt`); "" = a folder
    length_key: str = ""  # the step / epoch / iteration limit knob
    time_key: str = ""  # a knob that caps the host's own training time
    holdout_metrics: list = field(default_factory=list)  # test metrics printed beside a validation primary
    seed_fixed: str = ""  # "gpt.py:20 (torch.manual_seed(1337))": the host seeds itself with a literal
    output: outputs.Outputs = field(default_factory=outputs.Outputs)  # the details, for the summary
    knobs: list = field(default_factory=list)  # [{"name", "default", "help"}]: what CLI_OVERRIDES may set
    knobs_open: bool = True  # the entry accepts more than the knobs listed (or what it accepts is unknown)
    where: dict = field(default_factory=dict)  # entry / metric / checkpoint / runner / budget -> "what, where"
    confidence: dict = field(default_factory=dict)  # answer key -> high / medium / low
    notes: list = field(default_factory=list)  # one line each, for the person confirming the defaults
    candidates: dict = field(default_factory=dict)  # answer key -> alternatives, best first
    stats: dict = field(default_factory=dict)  # names listed, files parsed, bytes read, seconds


def analyse(root: Path, direction: Callable[[str], str], entry_module: str = "") -> Findings:
    """Everything detection can say about the project at `root`; `direction(metric)` -> min/max.

    `entry_module`, when given, is the entry point (the person's answer): the answers that
    depend on it (metric, checkpoint, arguments, resume, runner) are derived from it.
    """
    t0 = time.perf_counter()
    project = Project(Path(root), walk(Path(root)))
    out = Findings()
    cmds = commands.from_docs(project)
    wandb = trackers.read_wandb(project)

    entry = entrypoints.find(project, cmds, wandb.program, forced=entry_module)
    out.entry_pattern, out.entry_main_module = entry.pattern, entry.dotted
    out.confidence["entry_pattern"] = out.confidence["entry_main_module"] = entry.confidence
    out.candidates["entry_main_module"] = entry.candidates
    out.notes += entry.notes

    out.cli_style = entry.cli_style
    if entry.facts is not None:
        src = entry.command.source if entry.command else entry.source
        out.where["entry"] = f"{entry.facts.rel}:{entry.facts.line} ({entry.facts.why}; found by {src})"
    opts = arguments.options(project, entry)
    out.knobs = arguments.knobs(opts)
    out.knobs_open = opts.open or not opts.values or entry.pattern in ("hydra", "custom")
    out.resume_flag_name = arguments.resume_flag(opts)
    out.cli_args, source = arguments.baseline(entry, opts, out.resume_flag_name, wandb.config, wandb.argv)
    out.confidence["cli_args"] = {
        "wandb config.yaml": "high",
        "wandb-metadata.json": "high",
        "docs": "high",
        "defaults": "medium",
    }.get(source, "low")
    out.confidence["resume_flag_name"] = "medium" if out.resume_flag_name else "low"

    given = _as_mapping(out.cli_args)

    def option(name: str) -> Any:
        """An option's value for the baseline run: the baseline's own, else the default."""
        return given[name] if name in given else opts.default(name)

    modules = ([(entry.dotted, entry.facts.tree)] if entry.facts else []) + entry.nearby
    scopes = pathglob.Scopes(modules, option)

    tracked = trackers.detect(project, modules, wandb, scopes)
    out.metric_backend, out.tb_events_glob, out.wandb_project = (
        tracked.backend,
        tracked.tb_events_glob,
        tracked.wandb_project,
    )
    out.primary_metric = tracked.primary
    out.candidates["primary_metric"] = tracked.candidates
    out.holdout_metrics = tracked.holdout
    out.confidence.update(tracked.confidence)
    out.notes += tracked.notes

    payload_roots = {p.split("/")[0] for dirs in project.tree.payload.values() for p in dirs} - {"wandb"}
    ckpt = checkpoints.detect(modules, scopes, option, project.tree.ckpts, payload_roots)
    out.checkpoint_glob = _config_variants(ckpt.glob, entry)
    out.confidence["checkpoint_glob"] = ckpt.confidence
    if ckpt.glob:
        out.where["checkpoint"] = ckpt.source
    if out.primary_metric in tracked.where:
        out.where["metric"] = f"printed at {tracked.where[out.primary_metric]}"

    command = entry.command or next((c for c in cmds if c.trainy), None)
    launched = launch.detect(modules, command, project.tree.configs)
    out.runner, out.distributed_framework = launched.runner, launched.framework
    out.confidence["runner"] = launched.runner_confidence
    out.confidence["distributed_framework"] = launched.framework_confidence
    out.where["runner"] = launched.source
    out.seconds, out.where["budget"] = _budget(modules, opts)

    globals_are_knobs = entry.cli_style in (entrypoints.STYLE_EQUALS, entrypoints.STYLE_CONSTANTS)
    found = outputs.outputs(modules, scopes, opts.values, globals_are_knobs, entry.pattern)
    outputs.length_and_time(found, modules, opts.values, option)
    out.output, out.output_key, out.output_fixed = found, found.key, found.fixed
    out.output_file = outputs.file_name(found.key_default) if found.key else ""
    out.length_key, out.time_key = found.length_key, found.time_key
    files = {dotted: project.module_file(dotted) or dotted for dotted, _tree in modules}
    out.seed_fixed = outputs.fixed_seed(modules[:1], files)  # the entry's own call, not a library helper's
    if found.proposed is not None:
        out.cli_args = _with_length(out.cli_args, found.length_key, found.proposed)

    out.candidates["goal"] = goals.goal_candidates(project, out.primary_metric, direction)
    out.goal = out.candidates["goal"][0]
    out.mutation_scope = goals.mutation_scope(entry.dotted, entry.facts.tree if entry.facts else None, entry.nearby)

    if project.tree.truncated:
        out.notes.append(f"the project has more than {project.tree.seen} files: detection looked at the first ones")
    out.stats = {
        "listed": project.tree.seen,
        "parsed": len(project.parsed),
        "bytes_read": project.bytes_read,
        "seconds": round(time.perf_counter() - t0, 4),
    }
    return out


def _budget(modules: list, opts) -> tuple[int, str]:
    """(seconds, why): the host's own time cap plus a margin, else DEFAULT_SECONDS."""
    found = []
    for dotted, tree in modules:
        for node in tree.body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                found.append((f"{dotted}.{node.targets[0].id}", node.targets[0].id, node.value))
    found = [(w, n, v.value) for w, n, v in found if isinstance(v, ast.Constant)]
    found += [(f"--{n}", n, v) for n, v in opts.values.items()]
    for where, name, value in found:
        low = name.lower()
        if (
            any(word in low for word in BUDGET_NAMES)
            and isinstance(value, (int, float))
            and not isinstance(value, bool)
        ):
            if value > 0:
                cap = math.ceil(value)
                total = cap + max(BUDGET_MARGIN_MIN_S, math.ceil(cap * BUDGET_MARGIN))
                return total, f"{total} s = the host's cap {where} = {value} s + margin for start-up and evaluation"
    return DEFAULT_SECONDS, f"{DEFAULT_SECONDS} s (the host caps no time itself)"


def _config_variants(glob: str, entry) -> str:
    """`out/*.pt` -> `out*/*.pt` when a configurator's config files may rename `out` (out-small, ...)."""
    if not glob or entry.cli_style != entrypoints.STYLE_EQUALS or entry.facts is None:
        return glob
    first, _, rest = glob.partition("/")
    if rest and first in {v for v in entry.facts.constants.values() if isinstance(v, str)}:
        return f"{first}*/{rest}"
    return glob


def _with_length(args: Any, key: str, value: Any) -> Any:
    """The baseline with a finite training length (the host's default trains forever)."""
    if isinstance(args, list):
        return [a for a in args if not str(a).lstrip("+~").startswith(f"{key}=")] + [f"{key}={value}"]
    return {**(args or {}), key: value}


def _as_mapping(args: Any) -> dict:
    if isinstance(args, dict):
        return args
    pairs = (str(a).lstrip("+~").split("=", 1) for a in args or [] if "=" in str(a))
    return {k: v for k, v in pairs}
