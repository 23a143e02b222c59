"""What the evaluation reads: its code and its data, and the guard that keeps train.py off its data.

The evaluation's code is prepare.py and the project modules it imports, followed
transitively (the manifest protects them, with the packages above them). Its data
are the functions it imports from the project to load a split (`val_split`,
`get_test_loader`) and the split files the user protects: a train.py that names
either trains on what it is judged on, so the guard refuses it before the run.
Everything here reads source with `ast`; nothing is imported or run.
"""

from __future__ import annotations

import ast
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple, Optional

from ..core import pysource
from ..core.fsutil import module_file

MAX_IMPORTED_MODULES = 64  # bound on the project modules followed from prepare.py's imports
# A data function of the evaluation names its split as a word: val_split, get_test_loader, holdout_data.
DATA_NAME_RE = re.compile(r"(^|_)(val|valid|validation|test|holdout|heldout|dev|eval)(_|$)", re.I)


class Offence(NamedTuple):
    """What a guard found in train.py (this data guard, and protect's static guard): one line, one reason."""

    line: int
    text: str  # the offending source line, stripped
    reason: str

    def __str__(self) -> str:
        return f"train.py line {self.line}: {self.reason}: {self.text[:120]}"


# ---------------------------------------------------------------- the evaluation's code


def imported_modules(tree: ast.AST, package: str) -> list[tuple[str, list[str]]]:
    """(dotted module, imported names) of every import statement in tree."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".") if package else []
                parts = parts[: max(0, len(parts) - (node.level - 1))]
                base = ".".join([*parts, base] if base else parts)
            names = [a.name for a in node.names]
            out.append((base, names))
            out += [(f"{base}.{n}", []) for n in names]  # `from pkg import mod` imports a module
    return out


def evaluation_modules(project_root: Path, prepare_path: Path) -> list[Path]:
    """Project files that prepare.py imports, followed transitively: the code that judges a run."""
    root = Path(project_root)
    try:
        start = pysource.parse_file(prepare_path)
    except (OSError, SyntaxError, ValueError):
        return []
    found: list[Path] = []
    queue = [(start, "")]
    while queue and len(found) < MAX_IMPORTED_MODULES:
        tree, package = queue.pop(0)
        for dotted, _ in imported_modules(tree, package):
            path = module_file(root, dotted) if dotted else None
            if path is None or path in found:
                continue
            found.append(path)
            try:
                sub = pysource.parse_file(path, errors="replace")
            except (OSError, SyntaxError, ValueError):
                continue
            pkg = dotted if path.name == "__init__.py" else dotted.rpartition(".")[0]
            queue.append((sub, pkg))
    return found


def parent_packages(project_root: Path, modules: Iterable[Path]) -> list[Path]:
    """The `__init__.py` of every package above each module, up to the project root (they run on import)."""
    root, out = Path(os.path.abspath(project_root)), []
    for module in modules:
        folder = Path(os.path.abspath(module)).parent
        while folder != root and root in folder.parents:
            init = folder / "__init__.py"
            if init.is_file() and init not in out:
                out.append(init)
            folder = folder.parent
    return out


def imported_functions(root: Path, tree: ast.AST):
    """(names imported, top-level functions of that module) for each project module `tree` imports from."""
    for dotted, imported in imported_modules(tree, ""):
        path = module_file(root, dotted) if dotted and imported else None
        if path is None:
            continue
        try:
            module = pysource.parse_file(path, errors="replace")
        except (OSError, SyntaxError, ValueError):
            continue
        yield imported, {n.name for n in module.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}


# ---------------------------------------------------------------- the data guard


def evaluation_data_names(prepare_path: Path, project_root: Path) -> list[str]:
    """Functions the evaluation code imports from the project to get its data (`val_split`, `test_loader`):
    a train.py that reads them trains on what it is judged on. Names with `train` in them are left out."""
    names: list[str] = []
    root = Path(project_root)
    for path in [Path(prepare_path), *evaluation_modules(root, prepare_path)]:
        try:
            tree = pysource.parse_file(path, errors="replace")
        except (OSError, SyntaxError, ValueError):
            continue
        for imported, functions in imported_functions(root, tree):
            names += [
                n
                for n in imported
                if n in functions and DATA_NAME_RE.search(n) and "train" not in n.lower() and n not in names
            ]
    return names


def guard_data_reads(source: str, data_names: Iterable[str], data_files: Iterable[str]) -> Optional[Offence]:
    """The first line of train.py that names one of the evaluation's data functions or split files, or None."""
    try:
        tree = pysource.parse(source)
    except SyntaxError:
        return None
    names, files = set(data_names), [f for f in data_files if f]
    found = []
    for node in ast.walk(tree):
        hit = None
        if isinstance(node, ast.Name) and node.id in names:
            hit = node.id
        elif isinstance(node, ast.Attribute) and node.attr in names:
            hit = node.attr
        elif isinstance(node, ast.alias) and node.name.rpartition(".")[2] in names:
            hit = node.name
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
            hit = next((n for n in names if text == n), None) or next(
                (f for f in files if text.endswith(f) or text == Path(f).name), None
            )
        if hit and hasattr(node, "lineno"):
            found.append((node, hit))
    if not found:
        return None
    node, hit = min(found, key=lambda f: (f[0].lineno, f[0].col_offset))
    lines = source.splitlines()
    text = lines[node.lineno - 1].strip() if node.lineno <= len(lines) else ""
    return Offence(node.lineno, text, f"reads the evaluation's data ({hit}): training on it games the metric")
