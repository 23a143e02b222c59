"""Jinja global `ar_data_builders(conf, module)`: where the host defines its data-loader builders.

Looks (statically, with ast) at the entry module and the project modules it
imports for `def build_train_loader` / `def build_val_loader`. Returns the
dotted module that defines them, or "" (prepare.py then stays a thin wrapper).
"""

from __future__ import annotations

import ast

import hostpaths
from jinja2.ext import Extension

from arunner.core.fsutil import module_file

BUILDERS = {"build_train_loader", "build_val_loader"}


def _defines_builders(tree: ast.Module) -> bool:
    names = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    return BUILDERS <= names


def ar_data_builders(conf, module: str) -> str:
    root = hostpaths.host_root(conf)
    if root is None or not module:
        return ""
    path = module_file(root, module)
    if path is None:
        return ""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8", errors="replace"))
    except SyntaxError:
        return ""
    if _defines_builders(tree):
        return module
    package = module.rsplit(".", 1)[0] if "." in module else ""
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            name = node.module if node.level == 0 else ".".join(filter(None, [package, node.module]))
        elif isinstance(node, ast.Import):
            name = node.names[0].name
        else:
            continue
        imported = module_file(root, name)
        if imported is None:
            continue
        try:
            if _defines_builders(ast.parse(imported.read_text(encoding="utf-8", errors="replace"))):
                return name
        except SyntaxError:
            continue
    return ""


class DataBuilders(Extension):
    def __init__(self, environment):
        super().__init__(environment)
        environment.globals["ar_data_builders"] = ar_data_builders
