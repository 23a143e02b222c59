"""The runner's layers: packages in the order of arunner/__init__.py's map, modules in the order of
their package's map; nothing imports upward, and every module is on a map."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import arunner

PACKAGE = Path(arunner.__file__).parent
ROOT_MODULES = {"hostentry", "module_split"}  # loaded by path in the training process: stdlib only
UNORDERED = {"metrics"}  # one backend per module behind one entry point; they import only lower layers


def _map(doc: str) -> list[str]:
    return re.findall(r"^  ([a-z_]+)/? +\S", doc or "", re.M)


def package_order() -> list[str]:
    return _map(arunner.__doc__)


def module_order(package: str) -> list[str]:
    return _map(ast.get_docstring(ast.parse((PACKAGE / package / "__init__.py").read_text())))


def imported(path: Path) -> set[tuple[str, ...]]:
    """The runner modules `path` imports (relative imports, at any depth), as (package, module) or (module,)."""
    here = path.relative_to(PACKAGE).parent.parts
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.ImportFrom) or node.level == 0:
            continue
        base = list(here[: len(here) - (node.level - 1)]) + (node.module.split(".") if node.module else [])
        if len(base) >= 2:
            found.add(tuple(base[:2]))
        else:
            for alias in node.names:
                found.add(tuple(base + [alias.name])[:2])
    return found


def test_every_module_is_on_its_packages_map():
    packages = package_order()
    on_disk = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists())
    assert sorted(packages) == on_disk
    assert {p.stem for p in PACKAGE.glob("*.py")} == {"__init__"} | ROOT_MODULES
    for package in set(packages) - UNORDERED:
        modules = {p.stem for p in (PACKAGE / package).glob("*.py")} - {"__init__"}
        listed = module_order(package)
        assert modules == set(listed), (package, modules - set(listed), set(listed) - modules)


def test_no_module_imports_upward_or_a_module_that_is_gone():
    packages = package_order()
    rank = {name: i for i, name in enumerate(packages)}
    inner = {p: {m: i for i, m in enumerate(module_order(p))} for p in packages if p not in UNORDERED}
    upward, missing = [], []
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE)
        if "__pycache__" in rel.parts or path.name == "__init__.py" and len(rel.parts) == 1:
            continue
        own = rel.parts[0] if len(rel.parts) > 1 else None
        if own is None:  # a root module: loaded by path, so it imports only the other root modules
            upward += [f"{rel} -> {'.'.join(t)}" for t in imported(path) if t[0] not in ROOT_MODULES]
            continue
        for target in imported(path):
            name = ".".join(target)
            if target[0] not in rank:
                missing.append(f"{rel} -> {name}")
            elif len(target) == 2 and not (PACKAGE / target[0] / f"{target[1]}.py").exists():
                if not hasattr(importlib.import_module(f"arunner.{target[0]}"), target[1]):
                    missing.append(f"{rel} -> {name}")  # renamed or gone, still imported
                elif rank[target[0]] >= rank[own] and target[0] != own:
                    upward.append(f"{rel} -> {name}")
            elif rank[target[0]] > rank[own]:
                upward.append(f"{rel} -> {name}")
            elif target[0] == own and own in inner and path.stem != "__init__" and len(target) == 2:
                if inner[own].get(target[1], -1) >= inner[own][path.stem]:
                    upward.append(f"{rel} -> {name}")
    assert not upward, upward
    assert not missing, missing


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
