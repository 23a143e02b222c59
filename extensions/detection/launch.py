"""Runner (launcher prefix) and distributed framework.

The runner is the launcher prefix of CLAUDE.md's training command, verbatim
(`torchrun --nproc-per-node 4`, `accelerate launch --config_file cfg.yaml`,
`uv run python`); else `accelerate launch --config_file <found yaml>` when the
code uses accelerate and such a config exists; else `python`. The framework
comes from the entry point and the modules it imports, in the seed's order
(lightning, deepspeed, accelerate, fsdp, ddp), then from the launcher, else
`auto` (resolved at launch from the runner).
"""

from __future__ import annotations

import ast
import shlex
import shutil
from dataclasses import dataclass

from arunner.core.config import PYTHON_RE

from .commands import Command

FRAMEWORKS = ("lightning", "deepspeed", "accelerate", "fsdp", "ddp")
LAUNCHER_FRAMEWORK = {
    "torchrun": "ddp",
    "torch.distributed.run": "ddp",
    "torch.distributed.launch": "ddp",
    "accelerate": "accelerate",
    "deepspeed": "deepspeed",
}


@dataclass
class Launch:
    runner: str = "python"
    runner_confidence: str = "low"
    framework: str = "auto"
    framework_confidence: str = "low"
    source: str = "default"  # where the runner came from, for the detection summary


def frameworks_used(modules: list) -> set:
    """Which distributed frameworks the (dotted, ast) modules import or call."""
    used = set()
    for _dotted, tree in modules:
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                for name in names:
                    root = name.split(".")[0]
                    if root in ("lightning", "pytorch_lightning"):
                        used.add("lightning")
                    elif root in ("deepspeed", "accelerate"):
                        used.add(root)
                    elif name.startswith("torch.distributed.fsdp"):
                        used.add("fsdp")
            elif isinstance(node, ast.Call):
                func = ast.unparse(node.func).rsplit(".", 1)[-1]
                if func in ("FullyShardedDataParallel", "FSDP"):
                    used.add("fsdp")
                elif func in ("init_process_group", "DistributedDataParallel", "DDP"):
                    used.add("ddp")
                elif func == "Accelerator":
                    used.add("accelerate")
    return used


def _accelerate_config(configs: list[str]) -> str:
    found = sorted((c for c in configs if "accelerate" in c.lower()), key=lambda c: (c.count("/"), c))
    return found[0] if found else ""


def detect(modules: list, command: Command | None, configs: list[str]) -> Launch:
    out = Launch()
    used = frameworks_used(modules)
    prefix = command.prefix if command else []
    if command is not None:
        out.source = f"{command.source or 'docs'}: {command.line}"
    if prefix and prefix[0] == "uv" and shutil.which("uv") is None:
        prefix = ["python"]  # `uv run` without uv installed here: ar.py's interpreter is the project's
        out.source += "; uv is not installed here, so ar.py's python"
    if prefix and len(prefix) == 1 and PYTHON_RE.fullmatch(prefix[0].rsplit("/", 1)[-1]):
        out.runner, out.runner_confidence = "python", "high"  # ar.py's own interpreter: the project's
    elif prefix:
        out.runner, out.runner_confidence = shlex.join(prefix), "high"
    elif "accelerate" in used and _accelerate_config(configs):
        out.runner = f"accelerate launch --config_file {shlex.quote(_accelerate_config(configs))}"
        out.runner_confidence = "medium"
    else:
        out.runner_confidence = "medium"
    for name in FRAMEWORKS:
        if name in used:
            out.framework, out.framework_confidence = name, "medium"
            return out
    for word in shlex.split(out.runner):
        if word.rsplit("/", 1)[-1] in LAUNCHER_FRAMEWORK:
            out.framework, out.framework_confidence = LAUNCHER_FRAMEWORK[word.rsplit("/", 1)[-1]], "medium"
            break
    return out
