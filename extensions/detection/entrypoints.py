"""The training entry point: candidate modules, the one most likely, and its pattern.

Candidates come from CLAUDE.md's training command, wandb-metadata.json's code
path, [project.scripts], and file names (`train.py`, `scripts/train*.py`,
`tools/train*.py`, `src/**/train*.py`, `**/train*.py`). Each is read with ast
and classified: `@hydra.main` -> hydra; LightningCLI / fire / click / typer ->
custom; argparse / HfArgumentParser / simple_parsing -> argparse-cli; an
importable `main(...)` whose parameters all have defaults -> function; a
hand-rolled sys.argv loop -> custom. Score = where it was named + how clear
its pattern is.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field

from .commands import Command
from .sources import Project

PARSERS = {"ArgumentParser": "argparse", "HfArgumentParser": "hfparser"}
CUSTOM_NOTES = {
    "lightningcli": "LightningCLI entry point: wire the call in train.py's run_host() (pattern custom)",
    "fire": "python-fire entry point: wire the call in train.py's run_host() (pattern custom)",
    "click": "click/typer entry point: wire the call in train.py's run_host() (pattern custom)",
    "sysargv": "reads sys.argv by hand (fire-style): wire the call in train.py's run_host() (pattern custom)",
}
MAX_CANDIDATES = 40


@dataclass
class Facts:
    """What one module's ast says about it as an entry point."""

    dotted: str
    rel: str
    tree: ast.Module
    kinds: set = field(default_factory=set)  # argparse hfparser simple_parsing hydra lightningcli fire click sysargv
    main_block: bool = False
    main_func: ast.FunctionDef | None = None
    main_typed: bool = False  # main(...) callable with keywords only, annotated
    parser_only_in_main_block: bool = False
    hydra: dict = field(default_factory=dict)  # config_path / config_name of @hydra.main


@dataclass
class Entry:
    dotted: str = ""
    pattern: str = "custom"
    confidence: str = "low"
    source: str = ""
    facts: Facts | None = None
    command: Command | None = None  # the CLAUDE.md command that runs it
    nearby: list = field(default_factory=list)  # (dotted, ast) of the project modules it imports
    notes: list = field(default_factory=list)
    candidates: list = field(default_factory=list)  # (dotted, pattern, score), best first


def _is_main_block(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.If)
        and isinstance(node.test, ast.Compare)
        and "__name__" in ast.unparse(node.test)
        and "__main__" in ast.unparse(node.test)
    )


def _hydra_decorator(dec: ast.AST, hydra_names: set) -> dict | None:
    call = dec if isinstance(dec, ast.Call) else None
    func = call.func if call else dec
    name = ast.unparse(func)
    if name != "hydra.main" and name not in hydra_names:
        return None
    out = {}
    if call:
        for i, arg in enumerate(call.args[:2]):
            if isinstance(arg, ast.Constant):
                out[("config_path", "config_name")[i]] = arg.value
        for kw in call.keywords:
            if kw.arg in ("config_path", "config_name") and isinstance(kw.value, ast.Constant):
                out[kw.arg] = kw.value.value
    return out


def _typed_main(func: ast.FunctionDef) -> tuple[bool, bool]:
    """(callable with keywords only, annotated) for main(...)."""
    args = func.args
    params = [a for a in args.posonlyargs + args.args if a.arg != "self"] + args.kwonlyargs
    if not params and not args.kwarg:
        return False, False
    all_default = len(args.defaults) >= len(args.posonlyargs + args.args) and all(
        d is not None for d in args.kw_defaults
    )
    return all_default, any(p.annotation is not None for p in params)


def facts(dotted: str, rel: str, tree: ast.Module) -> Facts:
    f = Facts(dotted, rel, tree)
    hydra_names = {
        a.asname or a.name
        for n in ast.walk(tree)
        if isinstance(n, ast.ImportFrom) and n.module == "hydra"
        for a in n.names
        if a.name == "main"
    }
    main_block_nodes: set = set()
    for node in tree.body:
        if _is_main_block(node):
            f.main_block = True
            main_block_nodes = {id(n) for n in ast.walk(node)}
        elif isinstance(node, ast.FunctionDef) and node.name == "main":
            f.main_func = node
            callable_kw, typed = _typed_main(node)
            f.main_typed = callable_kw and typed
    parser_calls = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name in PARSERS:
                f.kinds.add(PARSERS[name])
                parser_calls.append(node)
            elif name == "LightningCLI":
                f.kinds.add("lightningcli")
            elif name == "Fire":
                f.kinds.add("fire")
            elif name == "parse" and ast.unparse(node.func).startswith("simple_parsing"):
                f.kinds.add("simple_parsing")
                parser_calls.append(node)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            roots = {m.split(".")[0] for m in mods}
            if "simple_parsing" in roots:
                f.kinds.add("simple_parsing")
            if roots & {"click", "typer"}:
                f.kinds.add("_imports_click")
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for dec in node.decorator_list:
                found = _hydra_decorator(dec, hydra_names)
                if found is not None:
                    f.kinds.add("hydra")
                    f.hydra = found
                elif "command" in ast.unparse(dec):
                    f.kinds.add("_command_decorator")
        elif isinstance(node, ast.Attribute) and ast.unparse(node) == "sys.argv" and isinstance(node.ctx, ast.Load):
            f.kinds.add("sysargv")
    if {"_imports_click", "_command_decorator"} <= f.kinds:
        f.kinds.add("click")
    f.kinds -= {"_imports_click", "_command_decorator"}
    f.parser_only_in_main_block = bool(parser_calls) and all(id(c) in main_block_nodes for c in parser_calls)
    return f


def classify(f: Facts) -> tuple[str, int, str]:
    """(pattern, strength 0-3, note) of one module."""
    if "hydra" in f.kinds:
        return "hydra", 3, ""
    for kind in ("lightningcli", "fire", "click"):
        if kind in f.kinds:
            return "custom", 3, CUSTOM_NOTES[kind]
    if f.kinds & {"argparse", "hfparser", "simple_parsing"}:
        if f.parser_only_in_main_block and f.main_typed:
            return "function", 2, "the CLI is parsed only under __main__, so main(**kwargs) is the entry"
        return "argparse-cli", 3, ""
    if f.main_typed:
        return "function", 2, ""
    if "sysargv" in f.kinds and f.main_block:
        return "custom", 2, CUSTOM_NOTES["sysargv"]
    if f.main_block:
        return "argparse-cli", 1, "a script without a parsed command line: it runs with no arguments"
    return "", 0, ""


def _named_candidates(project: Project) -> list[tuple[str, int, str]]:
    out = []
    for rel in project.tree.py_files:
        name = rel.rsplit("/", 1)[-1]
        if not name.startswith("train"):
            continue
        if rel == "train.py":
            score = 20
        elif rel.startswith(("scripts/", "tools/")):
            score = 15
        else:
            score = 12 if rel.startswith("src/") else 10
        score += 5 if name == "train.py" else 0
        out.append((rel, score - max(0, rel.count("/") - 2), "file name"))
    return out


def find(project: Project, commands: list[Command], wandb_program: str) -> Entry:
    scored: dict[str, tuple[int, str, Command | None]] = {}

    def add(dotted: str, score: int, source: str, cmd: Command | None = None) -> None:
        rel = project.module_file(dotted) if dotted else None
        if rel and (rel not in scored or scored[rel][0] < score):
            scored[rel] = (score, source, cmd)

    for cmd in commands:
        add(cmd.module, 50 if cmd.trainy else 30, "CLAUDE.md", cmd)
    if wandb_program:
        add(project.dotted(wandb_program) or "", 40, "wandb-metadata.json")
    for module, func in project.scripts():
        add(module, 30 if "train" in f"{module}{func}" else 20, "[project.scripts]")
    for rel, score, source in _named_candidates(project):
        if rel not in scored:
            scored[rel] = (score, source, None)

    best, ranked = None, []
    for rel, (score, source, cmd) in sorted(scored.items(), key=lambda kv: -kv[1][0])[:MAX_CANDIDATES]:
        tree = project.parse(rel)
        dotted = project.dotted(rel)
        if tree is None or dotted is None:
            continue
        f = facts(dotted, rel, tree)
        pattern, strength, note = classify(f)
        if strength == 0 and source == "file name":
            continue  # train_utils.py and friends: not an entry point
        total = score + 10 * strength
        ranked.append((dotted, pattern or "argparse-cli", total))
        if best is None or total > best[0]:
            best = (total, f, pattern or "argparse-cli", strength, note, source, cmd)
    entry = Entry(candidates=sorted(ranked, key=lambda c: -c[2]))
    if best is None:
        entry.notes.append("no training entry point found: wire the call in train.py's run_host() (pattern custom)")
        return entry
    _, f, entry.pattern, strength, note, entry.source, cmd = best
    entry.dotted, entry.facts = f.dotted, f
    entry.command = cmd or next((c for c in commands if project.module_file(c.module) == f.rel), None)
    if note:
        entry.notes.append(note)
    strong_source = entry.source != "file name"
    entry.confidence = "high" if strength >= 2 and strong_source else "medium" if strength >= 2 else "low"
    entry.nearby = [
        (m, t)
        for m in project.imports(f.tree, f.dotted)[:20]
        if (t := project.parse(project.module_file(m))) is not None
    ]
    return entry
