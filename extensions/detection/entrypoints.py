"""The training entry point: candidate modules, the one most likely, and its pattern.

Candidates come from the docs' training commands (CLAUDE.md, README, docs/,
Makefile, *.sh), wandb-metadata.json's code path, [project.scripts], and every
module of the project, `train*` names first (`train.py`, `scripts/train*.py`,
`src/**/train*.py`, ...), then `main.py` / `run.py`-style names, then the rest.
Each is read with ast and classified: `@hydra.main` -> hydra; LightningCLI /
fire / click / typer -> custom; argparse / HfArgumentParser / simple_parsing
(in main() or at module level) -> argparse-cli; a GPT-style configurator
(`exec(open('configurator.py').read())` over module globals) -> argparse-cli
with `--k=v` arguments; a script that trains at module level from constants
and parses no command line -> argparse-cli whose overrides replace those
constants; an importable `main(...)` whose parameters all have defaults ->
function; a hand-rolled sys.argv loop -> custom. Score = where it was named +
how clear its pattern is.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field

from .commands import Command
from .sources import Project

PARSERS = {"ArgumentParser": "argparse", "HfArgumentParser": "hfparser"}
YACS_MERGES = ("merge_from_args",)  # a yacs-style config node reading `--a.b=value` words from sys.argv
CUSTOM_NOTES = {
    "lightningcli": "LightningCLI entry point: wire the call in train.py's run_host() (pattern custom)",
    "fire": "python-fire entry point: wire the call in train.py's run_host() (pattern custom)",
    "click": "click/typer entry point: wire the call in train.py's run_host() (pattern custom)",
    "sysargv": "reads sys.argv by hand (fire-style): wire the call in train.py's run_host() (pattern custom)",
}
MAX_CANDIDATES = 40
ENTRY_NAMES = ("main", "run", "cli", "launch", "finetune", "pretrain", "fit")  # script names after train*
# How each kind of script reads CLI_OVERRIDES (the cli_style answer).
STYLE_SPACE, STYLE_EQUALS, STYLE_CONSTANTS = "space", "equals", "constants"


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
    configurator: ast.AST | None = None  # the `exec(open('configurator.py').read())` statement
    constants: dict = field(default_factory=dict)  # module-level NAME -> literal value, in file order
    prelude: set = field(default_factory=set)  # constants set before the first statement that does work
    trains_at_top: bool = False  # calls .backward() / .step() outside any function
    line: int = 0  # the line that makes it an entry point
    why: str = ""  # what that line is


@dataclass
class Entry:
    dotted: str = ""
    pattern: str = "custom"
    confidence: str = "low"
    source: str = ""
    facts: Facts | None = None
    command: Command | None = None  # the docs' command that runs it
    cli_style: str = STYLE_SPACE  # space (--k v), equals (--k=v) or constants
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
            elif name in YACS_MERGES:
                f.kinds.add("yacs")
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
    _top_level(f)
    if "yacs" in f.kinds:
        f.kinds.discard("sysargv")  # sys.argv[1:] handed to the config's merge: not a hand-rolled parser
    if {"_imports_click", "_command_decorator"} <= f.kinds:
        f.kinds.add("click")
    f.kinds -= {"_imports_click", "_command_decorator"}
    f.parser_only_in_main_block = bool(parser_calls) and all(id(c) in main_block_nodes for c in parser_calls)
    return f


def _literal(node: ast.AST):
    try:
        return ast.literal_eval(node)
    except (ValueError, SyntaxError, TypeError):
        return _NOT_LITERAL


_NOT_LITERAL = object()


def _prelude(tree: ast.Module) -> set:
    """Names of the literal constants a script sets before its first statement that does work."""
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue  # a docstring
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            if _literal(node.value) is not _NOT_LITERAL:
                names.add(node.targets[0].id)
                continue
        break
    return names


def _top_level(f: Facts) -> None:
    """Module-level facts: literal globals, a configurator exec, training outside functions."""
    f.prelude = _prelude(f.tree)
    for node in f.tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            value = _literal(node.value)
            if value is not _NOT_LITERAL and isinstance(value, (int, float, str, bool)):
                f.constants.setdefault(node.targets[0].id, value)
        elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
            text = ast.unparse(node.value)
            if text.startswith("exec(") and "configurator" in text:
                f.configurator = node
                break  # globals after the configurator are derived, not knobs
    for node in f.tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        for sub in ast.walk(node):
            if isinstance(sub, ast.Call) and isinstance(sub.func, ast.Attribute) and sub.func.attr == "backward":
                f.trains_at_top = True
                return


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
    if f.configurator is not None:
        return "argparse-cli", 3, "a configurator script: CLI_OVERRIDES become --key=value arguments"
    if "yacs" in f.kinds:
        return "argparse-cli", 3, "a yacs-style config: CLI_OVERRIDES become --section.key=value arguments"
    if f.trains_at_top and knob_constants(f) and "sysargv" not in f.kinds:
        return "argparse-cli", 2, "no command line: CLI_OVERRIDES keys replace its module-level constants"
    if f.main_typed:
        return "function", 2, ""
    if "sysargv" in f.kinds and f.main_block:
        return "custom", 2, CUSTOM_NOTES["sysargv"]
    if f.main_block:
        return "argparse-cli", 1, "a script without a parsed command line: it runs with no arguments"
    return "", 0, ""


def style(f: Facts) -> str:
    """How the entry reads CLI_OVERRIDES: --k v, --k=v (configurator) or module constants."""
    if f.kinds & {"argparse", "hfparser", "simple_parsing"}:
        return STYLE_SPACE
    if f.configurator is not None or "yacs" in f.kinds:
        return STYLE_EQUALS
    return STYLE_CONSTANTS if f.trains_at_top and knob_constants(f) else STYLE_SPACE


def knob_constants(f: Facts) -> dict:
    """Module-level literal constants a constants script may have replaced: `n_layer = 4` and `LR = 3e-4`
    alike, set before the script starts working (`step = 0` in the loop's set-up is not a knob)."""
    return {k: v for k, v in f.constants.items() if not k.startswith("_") and k in f.prelude}


def _where(f: Facts, pattern: str) -> tuple[int, str]:
    """(line, why) of what makes the module an entry point, for the detection summary."""
    for node in ast.walk(f.tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and "hydra" in f.kinds and node.decorator_list:
            return node.lineno, "@hydra.main"
        if isinstance(node, ast.Call) and pattern == "argparse-cli":
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name in PARSERS:
                return node.lineno, f"{name}()"
    if f.configurator is not None:
        return f.configurator.lineno, "exec(configurator.py) over module globals"
    for node in ast.walk(f.tree):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") in YACS_MERGES:
            return node.lineno, f"{ast.unparse(node.func)}(): --section.key=value options"
    if pattern == "function" and f.main_func is not None:
        return f.main_func.lineno, "def main(...) with defaults"
    if f.constants and f.trains_at_top:
        first = next(n for n in f.tree.body if isinstance(n, ast.Assign))
        return first.lineno, "module-level constants, trains at import"
    return 1, pattern


def _name_score(rel: str) -> int:
    """How much a file's name and place say "entry point" (0 = only its content can)."""
    name = rel.rsplit("/", 1)[-1]
    stem = name[:-3]
    if name.startswith("train"):
        if rel == "train.py":
            score = 20
        elif rel.startswith(("scripts/", "tools/")):
            score = 15
        else:
            score = 12 if rel.startswith("src/") else 10
        score += 5 if name == "train.py" else 0
        return score - max(0, rel.count("/") - 2)
    if stem in ENTRY_NAMES or stem.startswith(ENTRY_NAMES):
        return max(1, 8 - rel.count("/"))
    return 0


def _named_candidates(project: Project) -> list[tuple[str, int, str]]:
    """Every module, best names first: content decides the rest (train_utils.py classifies as nothing)."""
    out = [(rel, _name_score(rel), "file name") for rel in project.tree.py_files]
    return sorted(out, key=lambda c: (-c[1], c[0].count("/"), c[0]))


def find(project: Project, commands: list[Command], wandb_program: str, forced: str = "") -> Entry:
    """The most likely entry point; `forced` (a dotted module the person chose) wins over every guess."""
    scored: dict[str, tuple[int, str, Command | None]] = {}

    def add(dotted: str, score: int, source: str, cmd: Command | None = None) -> None:
        rel = project.module_file(dotted) if dotted else None
        if rel and (rel not in scored or scored[rel][0] < score):
            scored[rel] = (score, source, cmd)

    if forced:
        add(forced, 1000, "your answer", next((c for c in commands if c.module == forced), None))
    for cmd in commands:
        add(cmd.module, 50 if cmd.trainy else 30, cmd.source or "docs", cmd)
    if wandb_program:
        add(project.dotted(wandb_program) or "", 40, "wandb-metadata.json")
    for module, func in project.scripts():
        add(module, 30 if "train" in f"{module}{func}" else 20, "[project.scripts]")
    for rel, score, source in _named_candidates(project)[:MAX_CANDIDATES]:
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
    entry.cli_style = style(f) if entry.pattern == "argparse-cli" else STYLE_SPACE
    f.line, f.why = _where(f, entry.pattern)
    entry.command = cmd or next((c for c in commands if project.module_file(c.module) == f.rel), None)
    if note:
        entry.notes.append(note)
    tied = [c[0] for c in entry.candidates if c[2] == best[0]]
    if len(tied) > 1 and entry.source == "file name":  # nothing names one of them: say so, do not guess silently
        entry.notes.append(
            f"{len(tied)} equally likely entry points ({', '.join(tied[:4])}): {f.dotted} was taken; "
            "answer entry_main_module with the one you train"
        )
    strong_source = entry.source != "file name"
    entry.confidence = "high" if strength >= 2 and strong_source else "medium" if strength >= 2 else "low"
    entry.nearby = [
        (m, t)
        for m in project.imports(f.tree, f.dotted)[:20]
        if (t := project.parse(project.module_file(m))) is not None
    ]
    return entry
