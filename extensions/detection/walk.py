"""Bounded, read-only walk of the host project: names and stats only, never file contents.

Breadth-first with os.scandir, so shallow files (train.py, configs, CLAUDE.md)
are found before deep package trees, and the walk stops after MAX_ENTRIES
listed entries whatever the repository's size. Pruned without descending:
dot-folders (.git, .autoresearch, .venv), virtualenvs (any folder holding
pyvenv.cfg), node_modules, __pycache__, build output, test folders and data
folders. Tracker payload folders (wandb, runs, outputs, lightning_logs,
mlruns, checkpoints) are only glanced at: a few levels, a few hundred names,
to learn which event files and checkpoints exist and where.
"""

from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

SKIP = {"node_modules", "__pycache__", "site-packages", "venv", "build", "dist", "htmlcov", "tests", "test"}
DATA = {"data", "datasets", "dataset"}
PAYLOAD = {
    "wandb",
    "runs",
    "outputs",
    "multirun",
    "lightning_logs",
    "mlruns",
    "tb_logs",
    "tensorboard",
    "checkpoints",
    "ckpt",
    "ckpts",
}
CKPT_SUFFIXES = (".pt", ".pth", ".ckpt", ".safetensors")
EVENTS_PREFIX = "events.out.tfevents."
MAX_DEPTH = 12
MAX_ENTRIES = 150_000  # names listed in the whole walk
PAYLOAD_ENTRIES = 400  # names listed inside one payload folder
PAYLOAD_DEPTH = 4


@dataclass
class Tree:
    """What the walk saw; every path is relative to the root, with / separators."""

    root: Path
    py_files: list[str] = field(default_factory=list)
    payload: dict[str, list[str]] = field(default_factory=dict)  # folder name -> where it was found
    events: list[str] = field(default_factory=list)  # TensorBoard event files
    ckpts: list[str] = field(default_factory=list)  # checkpoint files and checkpoint-* folders
    configs: list[str] = field(default_factory=list)  # accelerate / deepspeed config files
    docs: list[str] = field(
        default_factory=list
    )  # where commands are written: CLAUDE.md, README, docs/, Makefile, *.sh
    seen: int = 0  # names listed
    truncated: bool = False


def _is_config(rel: str, name: str) -> bool:
    lower = name.lower()
    if not lower.endswith((".yaml", ".yml", ".json")):
        return False
    return "accelerate" in lower or lower.startswith(("ds_config", "deepspeed")) or "/accelerate/" in f"/{rel.lower()}"


def _is_doc(rel: str, name: str) -> bool:
    """A file that may spell out the training command (CLAUDE.md, README*, docs/*.md, Makefile, *.sh)."""
    lower = name.lower()
    if name == "CLAUDE.md" or name == "Makefile" or lower.endswith(".sh"):
        return True
    if lower.startswith("readme") and lower.endswith((".md", ".rst", ".txt")):
        return True
    return lower.endswith(".md") and rel.startswith("docs/")


def _glance(tree: Tree, top: str) -> None:
    """List a payload folder a few levels deep, recording event files and checkpoints by name."""
    queue, listed = deque([(top, 0)]), 0
    while queue and listed < PAYLOAD_ENTRIES:
        rel, depth = queue.popleft()
        try:
            with os.scandir(tree.root / rel) as it:
                entries = list(it)
        except OSError:
            continue
        listed += len(entries)
        tree.seen += len(entries)
        for entry in entries:
            sub = f"{rel}/{entry.name}"
            if entry.name.startswith(EVENTS_PREFIX):
                tree.events.append(sub)
            elif entry.name.endswith(CKPT_SUFFIXES):
                tree.ckpts.append(sub)
            elif entry.is_dir(follow_symlinks=False):
                if entry.name.startswith("checkpoint-"):
                    tree.ckpts.append(sub)  # an HF Trainer checkpoint folder: no need to look inside
                elif depth < PAYLOAD_DEPTH and entry.name not in ("media", "logs") and not top.endswith("wandb"):
                    queue.append((sub, depth + 1))


def walk(root: Path) -> Tree:
    tree = Tree(Path(root))
    queue = deque([("", 0)])
    while queue:
        rel, depth = queue.popleft()
        try:
            with os.scandir(tree.root / rel if rel else tree.root) as it:
                entries = list(it)
        except OSError:
            continue
        if rel and any(e.name == "pyvenv.cfg" for e in entries):
            continue  # a virtualenv under another name
        tree.seen += len(entries)
        if tree.seen > MAX_ENTRIES:
            tree.truncated = True
            return tree
        prefix = f"{rel}/" if rel else ""
        for entry in entries:
            name, sub = entry.name, prefix + entry.name
            if entry.is_dir(follow_symlinks=False):
                if name.startswith(".") or name in SKIP:
                    continue
                if name in DATA and not os.path.exists(os.path.join(entry.path, "__init__.py")):
                    continue  # a data folder, unless it is a Python package named data
                if name in PAYLOAD and not os.path.exists(os.path.join(entry.path, "__init__.py")):
                    tree.payload.setdefault(name, []).append(sub)
                    _glance(tree, sub)
                elif depth < MAX_DEPTH:
                    queue.append((sub, depth + 1))
            elif name.endswith(".py"):
                tree.py_files.append(sub)
            elif _is_doc(sub, name):
                tree.docs.append(sub)
            elif name.startswith(EVENTS_PREFIX):
                tree.events.append(sub)
            elif name.endswith(CKPT_SUFFIXES):
                tree.ckpts.append(sub)
            elif _is_config(sub, name):
                tree.configs.append(sub)
    return tree
