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


MAX_FUNCTION_LINES = 60  # decorators and docstring included: a function reads in one screen
MAX_FILE_LINES = 500  # a runner module or a test file reads in one sitting


def function_lengths(path: Path) -> list[tuple[int, str]]:
    """(lines, name) of every function and method in path, nested ones included."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            out.append((node.end_lineno - first + 1, f"{path.relative_to(PACKAGE).as_posix()}:{node.name}"))
    return out


def test_no_runner_function_is_longer_than_a_screen():
    lengths = [item for path in sorted(PACKAGE.rglob("*.py")) for item in function_lengths(path)]
    assert len(lengths) > 100  # the walk found the runner's functions
    too_long = sorted((n, name) for n, name in lengths if n > MAX_FUNCTION_LINES)
    assert not too_long, [f"{name}: {n} lines (at most {MAX_FUNCTION_LINES})" for n, name in too_long]


def test_no_runner_module_or_test_file_is_longer_than_a_sitting():
    files = [*PACKAGE.rglob("*.py"), *Path(__file__).parent.glob("*.py")]
    too_long = sorted(f"{p.name}: {n} lines" for p in files if (n := len(p.read_text().splitlines())) > MAX_FILE_LINES)
    assert not too_long, f"at most {MAX_FILE_LINES} lines each: {too_long}"
