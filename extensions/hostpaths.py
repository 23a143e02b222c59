"""Where the host project is, as seen from a Copier render.

`copier update` renders three times (an old copy and a new copy in temporary
folders, plus the real destination); only the real one has the host project
around it, so anything that reads the host or refuses the run acts only there.
"""

from __future__ import annotations

import functools
import os
from collections import deque
from pathlib import Path
from typing import Any

# What the project's interpreter can import, per host root (the preflight's probe), so the
# renders of one command probe once and later questions can read it.
PROBES: dict = {}
SCRATCH_MARKERS = ("copier._main.old_copy.", "copier._main.new_copy.")


def operation() -> str:
    """'copy' or 'update' (Copier keeps it in a context variable; unknown -> 'copy')."""
    try:
        from copier._main import _operation  # private, present in Copier 9.x

        return str(_operation.get("copy"))
    except Exception:  # noqa: BLE001 - an older or newer Copier: assume the safe default
        return "copy"


def conf_value(conf: Any, key: str, default: Any = None) -> Any:
    """A field of `_copier_conf` (a mapping in Copier 9.19, attributes in older versions)."""
    try:
        return conf[key]
    except (KeyError, TypeError):
        return getattr(conf, key, default)


def destination(conf: Any) -> Path:
    return Path(str(conf_value(conf, "dst_path"))).absolute()


def is_scratch(dst: Path) -> bool:
    return any(part.startswith(SCRATCH_MARKERS) for part in dst.parts)


ROOT_SCAN_DEPTH = 3  # how deep is_project_root looks for Python code
ROOT_SCAN_ENTRIES = 20_000  # and how many names at most
SKIP_DIRS = {"node_modules", "__pycache__", "site-packages", "data", "datasets", "wandb", "outputs", "runs"}


@functools.lru_cache(maxsize=16)  # validators ask once per answer: scan each root once
def is_project_root(root: Path) -> bool:
    """A folder with Python code to train (a packaging file or git alone is not enough).

    Research code is mostly scripts: main.py beside model.py, no pyproject.toml.
    Breadth-first, so shallow code is found before deep data or dependency trees;
    dot-folders (.git, .venv, .autoresearch) and virtualenvs are not entered.
    """
    queue, listed = deque([(Path(root), 0)]), 0
    while queue and listed < ROOT_SCAN_ENTRIES:
        folder, depth = queue.popleft()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        listed += len(entries)
        if depth and any(e.name == "pyvenv.cfg" for e in entries):
            continue
        for entry in entries:
            if entry.name.endswith(".py") and entry.is_file():
                return True
        for entry in entries:
            name = entry.name
            if depth < ROOT_SCAN_DEPTH and not name.startswith(".") and name not in SKIP_DIRS:
                if entry.is_dir(follow_symlinks=False):
                    queue.append((Path(entry.path), depth + 1))
    return False


def host_root(conf: Any) -> Path | None:
    """The host project root (the folder holding .autoresearch), or None in a scratch render."""
    dst = destination(conf)
    if is_scratch(dst):
        return None
    return dst.parent


# The answers an experiment was rendered with, per experiment.json path: read once, before the
# update's real render overwrites the file.
RECORDED: dict = {}


def recorded_answers(conf: Any) -> dict:
    """The answers in the experiment.json being updated ({} for a copy or a scratch render).

    `copier update` recomputes every answer missing from .copier-answers.yml (hidden ones, or
    ones an older template version did not store); the experiment's own experiment.json says
    what they were, so an update never changes them behind the person's back.
    """
    dst = destination(conf)
    if operation() != "update" or is_scratch(dst):
        return {}  # (answers_file renders <<slug>>: reading it before slug is answered fails a copy)
    answers_file = str(conf_value(conf, "answers_file", "") or "")
    if not answers_file or "<<" in answers_file:
        return {}
    path = (dst / answers_file).parent / "experiment.json"
    key = str(path)
    if key not in RECORDED:
        try:
            import json

            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = None  # unreadable (conflict markers): detection's defaults stand
        RECORDED[key] = data if isinstance(data, dict) else {}
    return RECORDED[key]
