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

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from . import arguments, checkpoints, commands, entrypoints, goals, launch, pathglob, trackers
from .sources import Project
from .walk import walk


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
    confidence: dict = field(default_factory=dict)  # answer key -> high / medium / low
    notes: list = field(default_factory=list)  # one line each, for the person confirming the defaults
    candidates: dict = field(default_factory=dict)  # answer key -> alternatives, best first
    stats: dict = field(default_factory=dict)  # names listed, files parsed, bytes read, seconds


def analyse(root: Path, direction: Callable[[str], str]) -> Findings:
    """Everything detection can say about the project at `root`; `direction(metric)` -> min/max."""
    t0 = time.perf_counter()
    project = Project(Path(root), walk(Path(root)))
    out = Findings()
    cmds = commands.from_docs(project)
    wandb = trackers.read_wandb(project)

    entry = entrypoints.find(project, cmds, wandb.program)
    out.entry_pattern, out.entry_main_module = entry.pattern, entry.dotted
    out.confidence["entry_pattern"] = out.confidence["entry_main_module"] = entry.confidence
    out.candidates["entry_main_module"] = entry.candidates
    out.notes += entry.notes

    opts = arguments.options(project, entry)
    out.resume_flag_name = arguments.resume_flag(opts)
    out.cli_args, source = arguments.baseline(entry, opts, out.resume_flag_name, wandb.config, wandb.argv)
    out.confidence["cli_args"] = {
        "wandb config.yaml": "high",
        "wandb-metadata.json": "high",
        "CLAUDE.md": "high",
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
    out.confidence.update(tracked.confidence)
    out.notes += tracked.notes

    payload_roots = {p.split("/")[0] for dirs in project.tree.payload.values() for p in dirs} - {"wandb"}
    ckpt = checkpoints.detect(modules, scopes, option, project.tree.ckpts, payload_roots)
    out.checkpoint_glob = ckpt.glob
    out.confidence["checkpoint_glob"] = ckpt.confidence

    command = entry.command or next((c for c in cmds if c.trainy), None)
    launched = launch.detect(modules, command, project.tree.configs)
    out.runner, out.distributed_framework = launched.runner, launched.framework
    out.confidence["runner"] = launched.runner_confidence
    out.confidence["distributed_framework"] = launched.framework_confidence

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


def _as_mapping(args: Any) -> dict:
    if isinstance(args, dict):
        return args
    pairs = (str(a).lstrip("+~").split("=", 1) for a in args or [] if "=" in str(a))
    return {k: v for k, v in pairs}
