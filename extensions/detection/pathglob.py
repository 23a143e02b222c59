"""Turn a path expression from host code into a glob relative to the project root.

`f"{args.output_dir}/model.pt"` with `--output_dir` defaulting to
"checkpoints" becomes `checkpoints/model.pt`; `Path(out) / f"checkpoint-{step}"`
becomes `out/checkpoint-*`; a path under Hydra's run folder
(`HydraConfig.get().runtime.output_dir`) becomes `outputs/*/*/...`. Names are
looked up in the enclosing function (parameters' defaults, assignments), then
the module; `args.X` / `cfg.a.b` in the entry point's options. Whatever cannot
be resolved statically gives None, never a guess.
"""

from __future__ import annotations

import ast
import re
from typing import Any, Callable

HYDRA_RUN_DIR = "outputs/*/*"  # Hydra's default run dir: outputs/${now:%Y-%m-%d}/${now:%H-%M-%S}
WRAPPERS = {"Path", "PurePath", "str", "fspath", "abspath", "realpath", "to_absolute_path", "expanduser", "open"}
MAX_DEPTH = 8
RUNNER_DIR_VARS = ("AR_RUN_DIR", "AR_EXPR_DIR")  # env vars the runner sets to its own folders
MAX_STEPS = 200  # resolve() calls per expression: names with many assignments must not explode


class Scope:
    """Names visible from one function: its parameters' defaults and assignments, then the module's."""

    def __init__(self, module: ast.Module, func: ast.AST | None, option: Callable[[str], Any]):
        self.names: dict[str, list[ast.AST]] = {}
        self.option = option  # "output_dir" or "trainer.out" -> the option's default (or None)
        self.steps = MAX_STEPS
        for body in ([func] if func is not None else []) + [module]:
            for name, value in _bindings(body, top=body is module):
                self.names.setdefault(name, []).append(value)


def _bindings(node: ast.AST, top: bool):
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        args = node.args
        positional = args.posonlyargs + args.args
        for arg, default in zip(positional[len(positional) - len(args.defaults) :], args.defaults):
            yield arg.arg, default
        for arg, default in zip(args.kwonlyargs, args.kw_defaults):
            if default is not None:
                yield arg.arg, default
    nodes = _module_level(node) if top else ast.walk(node)
    for sub in nodes:
        if isinstance(sub, ast.With):  # `with open(path, "wb") as f: torch.save(model, f)`
            for item in sub.items:
                if isinstance(item.optional_vars, ast.Name):
                    yield item.optional_vars.id, item.context_expr
        elif isinstance(sub, ast.Assign):
            for target in sub.targets:
                if isinstance(target, ast.Name):
                    yield target.id, sub.value
        elif isinstance(sub, (ast.AnnAssign, ast.NamedExpr)) and isinstance(sub.target, ast.Name) and sub.value:
            yield sub.target.id, sub.value


def _module_level(module: ast.AST):
    """The module's statements, nested ones included (if / for / with bodies), but not function bodies."""
    stack = list(reversed(module.body))
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            continue
        for child in reversed(list(ast.iter_child_nodes(node))):
            if isinstance(child, ast.stmt):
                stack.append(child)


def _join(parts: list[str]) -> str | None:
    out: list[str] = []
    for part in parts:
        if part.startswith(("/", "~")):
            return None  # an absolute path: outside the project root
        out += [p for p in part.split("/") if p not in ("", ".")]
    if ".." in out:
        return None
    return "/".join(out)


def _attr_path(node: ast.AST) -> list[str] | None:
    """`args.a.b` -> ["args", "a", "b"]; None for anything but a chain of names."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return [node.id, *reversed(parts)]


def resolve(node: ast.AST, scope: Scope, depth: int = 0) -> str | None:
    """The glob a path expression stands for ('' is the project root), or None."""
    scope.steps -= 1
    if depth > MAX_DEPTH or node is None or scope.steps < 0:
        return None
    if isinstance(node, (ast.Attribute, ast.Call)):
        text = ast.unparse(node)
        if "HydraConfig" in text and "output_dir" in text:
            run_dir = scope.option("hydra.run.dir")  # the config may move Hydra's run folder
            return _join([re.sub(r"\$\{[^}]*\}", "*", run_dir)]) if isinstance(run_dir, str) else HYDRA_RUN_DIR
    if isinstance(node, ast.Constant):
        return _join([node.value]) if isinstance(node.value, str) else None
    if isinstance(node, ast.JoinedStr):
        pieces = []
        for value in node.values:
            if isinstance(value, ast.Constant):
                pieces.append(str(value.value))
            else:  # a {placeholder}: its value when known, else any name
                inner = resolve(value.value, scope, depth + 1) if isinstance(value, ast.FormattedValue) else None
                pieces.append("*" if inner is None else inner)
        text = "".join(pieces)
        return None if text.startswith("*") else _join([text])  # an unknown leading folder could be anywhere
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
        left, right = resolve(node.left, scope, depth + 1), resolve(node.right, scope, depth + 1)
        return _join([left, right]) if left is not None and right is not None else None
    if isinstance(node, ast.BoolOp) and isinstance(node.op, ast.Or):
        for value in node.values:  # `args.out or os.environ.get(...) or "checkpoints"`: first known wins
            if any(name in ast.unparse(value) for name in RUNNER_DIR_VARS):
                return None  # under the runner this is its run folder: the runner captures it, no glob
            found = resolve(value, scope, depth + 1)
            if found is not None:
                return found
        return None
    if isinstance(node, ast.Call):
        func = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        if func in WRAPPERS and node.args:
            return resolve(node.args[0], scope, depth + 1)
        if func == "join" and node.args:
            parts = [resolve(a, scope, depth + 1) for a in node.args]
            return _join(parts) if all(p is not None for p in parts) else None
        return None
    if isinstance(node, ast.Name):
        for value in scope.names.get(node.id, []):
            found = resolve(value, scope, depth + 1)
            if found is not None:
                return found
        return None
    chain = _attr_path(node)
    if chain and len(chain) > 1:
        value = scope.option(".".join(chain[1:]))  # args.output_dir -> option "output_dir"
        if isinstance(value, str):
            return _join([value])
    return None


def file_glob(path: str) -> str:
    """A saved file's glob: `out/model.pt` -> `out/*.pt`; an HF `checkpoint-*` folder wins over the file."""
    parts = path.split("/")
    for i, part in enumerate(parts):
        if part.startswith("checkpoint-"):
            return "/".join(parts[:i] + ["checkpoint-*"])
    name = parts[-1]
    if len(parts) == 1:
        return path  # a file in the project root: its own name (a leading * would match too much)
    if "." in name.lstrip("*"):
        parts[-1] = "*" + name[name.rindex(".") :]
    return "/".join(parts)


def enclosing_functions(tree: ast.Module):
    """(function or None, node) for every node: calls are resolved in their function's scope."""
    owned = set()
    for func in ast.walk(tree):
        if isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(func):
                if node is not func and id(node) not in owned:
                    owned.add(id(node))
                    yield func, node
    for node in ast.walk(tree):
        if id(node) not in owned:
            yield None, node


class Scopes:
    """Finds the Scope of any node of the given (dotted, ast) modules: `scopes(node) -> Scope`."""

    def __init__(self, modules: list, option: Callable[[str], Any]):
        self.option = option
        self.owner: dict[int, tuple] = {}
        for _dotted, tree in modules:
            for func, node in enclosing_functions(tree):
                self.owner[id(node)] = (tree, func)

    def __call__(self, node: ast.AST) -> Scope:
        tree, func = self.owner.get(id(node), (ast.Module(body=[], type_ignores=[]), None))
        return Scope(tree, func, self.option)
