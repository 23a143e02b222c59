"""A host script split in two: its definitions, which run when the sandbox imports it, and the rest.

Read with `ast`, never run here. A script with an `if __name__ == "__main__":` block splits at that
block. A script that trains at module level keeps its imports, functions, classes and constant
assignments up to the first other statement; functions and classes defined further down move up
with them when nothing they read while being defined comes later and nothing rebinds them.
Loaded next to hostentry inside the training process: standard library only, imports nothing else.
"""

import ast
import types

HOISTABLE = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
BUILTIN_NAMES = frozenset(dir(__builtins__) if isinstance(__builtins__, types.ModuleType) else __builtins__)


def is_main_guard(node):
    """`if __name__ == "__main__":` at the top level."""
    if not isinstance(node, ast.If) or not isinstance(node.test, ast.Compare):
        return False
    sides = [node.test.left, *node.test.comparators]
    names = [s for s in sides if isinstance(s, ast.Name) and s.id == "__name__"]
    mains = [s for s in sides if isinstance(s, ast.Constant) and s.value == "__main__"]
    return bool(names and mains)


def is_constant(expr):
    """Literals, containers of them, names and arithmetic: nothing that calls or reads an attribute."""
    if isinstance(expr, (ast.Constant, ast.Name)):
        return True
    if isinstance(expr, ast.UnaryOp):
        return is_constant(expr.operand)
    if isinstance(expr, ast.BinOp):
        return is_constant(expr.left) and is_constant(expr.right)
    if isinstance(expr, (ast.Tuple, ast.List, ast.Set)):
        return all(is_constant(e) for e in expr.elts)
    if isinstance(expr, ast.Dict):
        return all(k is None or is_constant(k) for k in expr.keys) and all(is_constant(v) for v in expr.values)
    return False


def is_definition(node):
    """An import, a function or class, a docstring, or a constant assignment (`n_layer = 4`)."""
    if isinstance(node, (ast.Import, ast.ImportFrom, *HOISTABLE)):
        return True
    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
        return True
    if isinstance(node, ast.Assign):
        return all(isinstance(t, ast.Name) for t in node.targets) and is_constant(node.value)
    if isinstance(node, ast.AnnAssign):
        return isinstance(node.target, ast.Name) and (node.value is None or is_constant(node.value))
    if isinstance(node, ast.Try):  # try: import x / except ImportError: x = None
        return all(is_definition(n) for n in node.body)
    return False


def bound_names(nodes):
    """Names the top-level statements bind."""
    names = set()
    for node in nodes:
        for sub in ast.walk(node) if not isinstance(node, HOISTABLE) else [node]:
            if isinstance(sub, HOISTABLE):
                names.add(sub.name)
            elif isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store):
                names.add(sub.id)
            elif isinstance(sub, (ast.Import, ast.ImportFrom)):
                names |= {(a.asname or a.name).split(".")[0] for a in sub.names}
    return names


def definition_time_loads(node, future_annotations):
    """Names a def or class statement reads when it runs (not when it is called)."""
    exprs = list(node.decorator_list)
    if isinstance(node, ast.ClassDef):
        exprs += node.bases + [k.value for k in node.keywords]
        local = set()
        for stmt in node.body:
            if isinstance(stmt, HOISTABLE):
                exprs += definition_time_exprs(stmt, future_annotations)
                local.add(stmt.name)
            else:
                exprs.append(stmt)
                local |= bound_names([stmt])
        return {n.id for e in exprs for n in ast.walk(e) if isinstance(n, ast.Name)} - local
    return {
        n.id for e in definition_time_exprs(node, future_annotations) for n in ast.walk(e) if isinstance(n, ast.Name)
    }


def definition_time_exprs(node, future_annotations):
    if isinstance(node, ast.ClassDef):
        return [*node.decorator_list, *node.bases, *(k.value for k in node.keywords), *node.body]
    args = node.args
    exprs = [*node.decorator_list, *args.defaults, *(d for d in args.kw_defaults if d is not None)]
    if not future_annotations:
        every = [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]
        exprs += [a.annotation for a in every if a is not None and a.annotation is not None]
        exprs += [node.returns] if node.returns is not None else []
    return exprs


def split_module(tree):
    """(definitions, rest): what runs when the module is imported for the sandbox, and what runs after it."""
    body = tree.body
    for i, node in enumerate(body):
        if is_main_guard(node):
            return body[:i], body[i:]
    head_len = 0
    while head_len < len(body) and is_definition(body[head_len]):
        head_len += 1
    head, tail = list(body[:head_len]), list(body[head_len:])
    future = any(
        isinstance(n, ast.ImportFrom) and n.module == "__future__" and any(a.name == "annotations" for a in n.names)
        for n in head
    )
    bound = bound_names(head) | BUILTIN_NAMES
    hoisted = []
    for node in tail:
        if not isinstance(node, HOISTABLE):
            continue
        others = bound_names([n for n in tail if n is not node])
        # Moved up only if what it reads while being defined is already there, and nothing rebinds it.
        if node.name not in others and definition_time_loads(node, future) <= bound:
            hoisted.append(node)
            bound.add(node.name)
    return head + hoisted, [n for n in tail if not any(n is h for h in hoisted)]


def compile_part(nodes, path, future_flags):
    return compile(ast.Module(body=nodes, type_ignores=[]), path, "exec", flags=future_flags, dont_inherit=True)


def future_flags(tree):
    import __future__

    flags = 0
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module == "__future__":
            for alias in node.names:
                feature = getattr(__future__, alias.name, None)
                flags |= getattr(feature, "compiler_flag", 0)
    return flags
