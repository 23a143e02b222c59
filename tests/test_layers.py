"""The runner's layers: no module imports one listed below it in arunner/__init__.py's map."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import arunner

PACKAGE = Path(arunner.__file__).parent


def layer_order() -> list[str]:
    return re.findall(r"^  ([a-z_]+)/? +\S", arunner.__doc__, re.M)


def imported(path: Path) -> set[str]:
    """Sibling modules `path` imports (`from . import x`, `from .x import y`), at any depth."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            found |= {node.module.split(".")[0]} if node.module else {a.name for a in node.names}
    return found


def test_every_module_is_on_the_map_and_imports_only_downward():
    order = layer_order()
    modules = {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"} | {"metrics"}
    assert modules == set(order), (modules - set(order), set(order) - modules)
    rank = {name: i for i, name in enumerate(order)}
    upward = []
    for path in PACKAGE.glob("*.py"):
        if path.stem == "__init__":
            continue
        upward += [f"{path.stem} -> {name}" for name in imported(path) if rank.get(name, -1) >= rank[path.stem]]
    assert not upward, upward
    missing = [
        f"{path.stem} -> {name}" for path in PACKAGE.glob("*.py") for name in imported(path) if name not in modules
    ]
    assert not missing, missing  # a module that is gone (renamed) but still imported somewhere
