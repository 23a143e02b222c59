"""Propose the body of prepare.py's `evaluate(checkpoint_path)`, by reading the host with `ast`.

The body must load the checkpoint the entry point saves and score it with the
host's own evaluation function. Recognised checkpoint shapes:
  * a whole pickled model, `torch.save(model, path)`;
  * a Hugging Face style folder, `model.save_pretrained(path)`;
  * a Lightning `.ckpt` of a LightningModule defined in the project;
  * a state dict saved beside the constructor arguments,
    `torch.save({"model": model.state_dict(), "args": vars(args)}, path)`.
The evaluation function is a project function named like evaluate / eval /
validate / compute_metrics that the entry point calls with the model; its other
arguments must have defaults, or be rebuilt from constant-argument calls at the
call site. Anything else: no proposal, and the explanation says what is missing.
Host code is parsed only, never imported or run.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from arunner.core.fsutil import module_file

MAX_MODULES = 40  # project modules followed from the entry point's imports
MAX_FILE_BYTES = 512 * 1024  # bigger sources are skipped
EVAL_NAME_RE = re.compile(r"^(evaluate|eval|validate|validation|compute_metrics?|score)(_\w+)?$|_(eval|evaluate)$")
ARGS_KEYS = ("args", "config", "cfg", "hparams", "hyper_parameters", "kwargs", "model_args", "model_config")
STATE_KEYS = ("model", "state_dict", "model_state_dict", "model_state", "weights", "net")
MODULE_BASES = {"Module", "nn.Module", "torch.nn.Module"}
LIGHTNING_BASES = {"LightningModule", "L.LightningModule", "pl.LightningModule"}
DATAMODULE_BASES = {"LightningDataModule", "L.LightningDataModule", "pl.LightningDataModule"}
# A LightningModule with no plain evaluation function: its own validation loop scores it.
LIGHTNING_VALIDATE = """trainer = lightning.Trainer(
    accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False
)
results = trainer.validate(model, datamodule={data}(), verbose=False)
return {{str(k): float(v) for k, v in results[0].items()}}"""


@dataclass
class Module:
    dotted: str
    rel: str
    tree: ast.Module
    classes: dict = field(default_factory=dict)  # name -> ClassDef
    functions: dict = field(default_factory=dict)  # name -> FunctionDef


def _imports(tree: ast.Module, package: str) -> list[str]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: max(0, len(package.split(".")) - (node.level - 1))] if package else []
                base = ".".join([*parts, base] if base else parts)
            out += [base, *(f"{base}.{a.name}" for a in node.names)]
    return [n for n in out if n]


def _load(root: Path, entry: str) -> list[Module]:
    """The entry module first, then the project modules it imports, breadth first."""
    modules: list[Module] = []
    queue, seen = [entry], set()
    while queue and len(modules) < MAX_MODULES:
        dotted = queue.pop(0)
        path = module_file(root, dotted)
        if dotted in seen or path is None or path.stat().st_size > MAX_FILE_BYTES:
            continue
        seen.add(dotted)
        try:
            tree = ast.parse(path.read_text(encoding="utf-8", errors="replace"))
        except (SyntaxError, ValueError):
            continue
        mod = Module(dotted, path.relative_to(root).as_posix(), tree)
        for node in tree.body:
            if isinstance(node, ast.ClassDef):
                mod.classes[node.name] = node
            elif isinstance(node, ast.FunctionDef):
                mod.functions[node.name] = node
        modules.append(mod)
        package = dotted if path.name == "__init__.py" else dotted.rpartition(".")[0]
        queue += [n for n in _imports(tree, package) if n not in seen]
    return modules


def _text(node: ast.AST) -> str:
    return ast.unparse(node)


def _calls(modules: list[Module]):
    for mod in modules:
        for node in ast.walk(mod.tree):
            if isinstance(node, ast.Call):
                yield mod, node


def _base_names(cls: ast.ClassDef) -> set[str]:
    return {_text(b) for b in cls.bases}


def _classes(modules: list[Module], bases: set[str]) -> list[tuple[Module, str]]:
    """Project classes deriving (directly or through another project class) from one of bases."""
    known = {name: (mod, cls) for mod in modules for name, cls in mod.classes.items()}
    found: list[tuple[Module, str]] = []

    def derives(name: str, depth: int = 0) -> bool:
        mod_cls = known.get(name)
        if mod_cls is None or depth > 5:
            return False
        names = _base_names(mod_cls[1])
        return bool(names & bases) or any(derives(n.rpartition(".")[2], depth + 1) for n in names)

    for name, (mod, _) in known.items():
        if derives(name):
            found.append((mod, name))
    return found


# ---------------------------------------------------------------- the evaluation function


@dataclass
class Scorer:
    module: str
    name: str
    extra_args: list[str]  # source of the arguments after the model
    imports: list[str]  # import lines those arguments need
    returns_dict: bool


def _required_params(fn: ast.FunctionDef) -> list[str]:
    args = [*fn.args.posonlyargs, *fn.args.args]
    return [a.arg for a in args[: len(args) - len(fn.args.defaults)]]


def _returns_dict(fn: ast.FunctionDef) -> bool:
    for node in ast.walk(fn):
        if isinstance(node, ast.Return) and node.value is not None:
            value = node.value
            if isinstance(value, (ast.Dict, ast.DictComp)) or (
                isinstance(value, ast.Call) and _text(value.func) == "dict"
            ):
                return True
    return False


def _rebuild(arg: ast.AST, assigned: dict, owners: dict) -> Optional[tuple[str, list[str]]]:
    """Source and imports that rebuild a call-site argument: a constant, or a constant-argument
    call of a project function or class (directly or through a local variable)."""
    if isinstance(arg, ast.Constant):
        return repr(arg.value), []
    if isinstance(arg, ast.Name) and arg.id in assigned:
        arg = assigned[arg.id]
    if isinstance(arg, ast.Call) and isinstance(arg.func, ast.Name) and arg.func.id in owners:
        pieces = [*arg.args, *(k.value for k in arg.keywords)]
        if all(isinstance(p, ast.Constant) for p in pieces) and all(k.arg for k in arg.keywords):
            return _text(arg), [f"from {owners[arg.func.id]} import {arg.func.id}"]
    return None


def runs_at_import(tree: ast.Module) -> bool:
    """Whether importing the module does work beyond definitions: a top-level loop, call or
    `with`, or a parse_args() (module-level scripts: importing them trains)."""
    for node in tree.body:
        if isinstance(node, (ast.For, ast.While, ast.With, ast.AsyncFor, ast.AsyncWith)):
            return True
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
            return True
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and "parse_args" in ast.unparse(node):
            return True
    return False


def find_scorer(modules: list[Module]) -> tuple[Optional[Scorer], str]:
    """The host's evaluation function and how to call it on a loaded model (the first call site
    whose other arguments can be rebuilt wins)."""
    owners = {name: mod.dotted for mod in modules for name in [*mod.functions, *mod.classes]}
    found = [(mod, fn) for mod in modules for name, fn in mod.functions.items() if EVAL_NAME_RE.search(name)]
    if not found:
        return None, "no evaluation function found (a project function named evaluate*, eval*, validate*)"
    # Importing a script that parses its CLI or trains at module level would train inside the evaluator.
    candidates = [(mod, fn) for mod, fn in found if not runs_at_import(mod.tree)]
    if not candidates:
        mod, fn = found[0]
        return None, (
            f"{mod.dotted}.{fn.name} lives in {mod.rel}, which runs training when imported: "
            "move it into a module of its own, or write evaluate() by hand"
        )
    for caller, call in _calls(modules):
        name = call.func.id if isinstance(call.func, ast.Name) else ""
        match = next(((m, f) for m, f in candidates if f.name == name), None)
        if match is None or not call.args:
            continue
        mod, fn = match
        required = _required_params(fn)
        extra, imports = [], []
        assigned = {
            t.id: n.value
            for n in ast.walk(caller.tree)
            if isinstance(n, ast.Assign)
            for t in n.targets
            if isinstance(t, ast.Name)
        }
        for arg in call.args[1 : max(1, len(required))]:
            rebuilt = _rebuild(arg, assigned, owners)
            if rebuilt is None:
                extra = None
                break
            extra.append(rebuilt[0])
            imports += rebuilt[1]
        if extra is None or len(call.args) < len(required):
            continue
        return Scorer(mod.dotted, fn.name, extra, imports, _returns_dict(fn)), f"evaluation {mod.dotted}.{fn.name}"
    mod, fn = candidates[0]
    if len(_required_params(fn)) <= 1:
        return Scorer(mod.dotted, fn.name, [], [], _returns_dict(fn)), f"evaluation {mod.dotted}.{fn.name}"
    return None, f"{mod.dotted}.{fn.name} needs arguments that could not be rebuilt from the entry point"


# ---------------------------------------------------------------- the checkpoint shape


def _constructor_call(modules: list[Module], classes: set[str]) -> Optional[tuple[Module, ast.Call]]:
    for mod, call in _calls(modules):
        if isinstance(call.func, ast.Name) and call.func.id in classes:
            return mod, call
    return None


def _args_expr(node: ast.AST, saved: str) -> Optional[str]:
    """A constructor argument rebuilt from the saved arguments mapping `saved`."""
    if isinstance(node, ast.Constant):
        return repr(node.value)
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        return f"{saved}[{node.attr!r}]"
    if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
        return f"{saved}[{node.slice.value!r}]"
    return None


def _from_state_dict(
    modules: list[Module], saved_dict: ast.Dict, where: str
) -> tuple[Optional[list[str]], list[str], str]:
    keys = {k.value: v for k, v in zip(saved_dict.keys, saved_dict.values) if isinstance(k, ast.Constant)}
    state_key = next(
        (k for k, v in keys.items() if isinstance(v, ast.Call) and _text(v.func).endswith(".state_dict")), None
    )
    if state_key is None:
        return None, [], f"{where}: a dict without a model state_dict()"
    args_key = next((k for k in ARGS_KEYS if k in keys), None)
    nets = _classes(modules, MODULE_BASES)
    found = _constructor_call(modules, {name for _, name in nets})
    if found is None:
        return None, [], f"{where}: state dict saved, but no construction of a project nn.Module found"
    mod, call = found
    cls = call.func.id
    owner = next(m.dotted for m, n in nets if n == cls)
    saved = "saved[" + repr(args_key) + "]" if args_key else None
    pieces = []
    for arg in call.args:
        expr = _args_expr(arg, saved) if saved else (repr(arg.value) if isinstance(arg, ast.Constant) else None)
        pieces.append(expr)
    for kw in call.keywords:
        if kw.arg is None:
            pieces.append(f"**{saved}" if saved else None)
        else:
            expr = _args_expr(kw.value, saved) if saved else None
            expr = expr or (repr(kw.value.value) if isinstance(kw.value, ast.Constant) else None)
            pieces.append(f"{kw.arg}={expr}" if expr else None)
    if None in pieces:
        return None, [], f"{where}: state dict saved, but the arguments of {cls}(...) ({mod.rel}) are not in it"
    lines = [
        "import torch",
        f"from {owner} import {cls}",
        "",
        'saved = torch.load(checkpoint_path, map_location="cpu", weights_only=True)  # tensors and plain values only',
        f"model = {cls}({', '.join(pieces)})",
        f"model.load_state_dict(saved[{state_key!r}])",
    ]
    return lines, [], f"state dict beside constructor arguments ({where}), model {owner}.{cls}"


def find_loader(modules: list[Module]) -> tuple[Optional[list[str]], str]:
    """Lines that load the checkpoint into `model`, and what they rest on."""
    entry = modules[0]
    lit = _classes(modules, LIGHTNING_BASES)
    saves = [(m, c) for m, c in _calls(modules) if _text(c.func) in ("torch.save", "save")]
    saves.sort(key=lambda mc: mc[0] is not entry)  # the entry point's own save first
    pretrained = [(m, c) for m, c in _calls(modules) if _text(c.func).endswith(".save_pretrained")]
    lightning_saves = [(m, c) for m, c in _calls(modules) if _text(c.func).endswith(".save_checkpoint")]
    if lit and (lightning_saves or any("Trainer" in _text(c.func) for _, c in _calls(modules))):
        mod, cls = lit[0]
        return [
            f"from {mod.dotted} import {cls}",
            "",
            f'model = {cls}.load_from_checkpoint(checkpoint_path, map_location="cpu")',
        ], f"Lightning checkpoint of {mod.dotted}.{cls}"
    if pretrained:
        mod, call = pretrained[0]
        owners = [
            (m, n)
            for m in modules
            for n, c in m.classes.items()
            if any(isinstance(f, ast.FunctionDef) and f.name == "from_pretrained" for f in c.body)
        ]
        hf = [
            (m.dotted, a.asname or a.name)
            for m in modules
            for node in ast.walk(m.tree)
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("transformers")
            for a in node.names
            if a.name.startswith("Auto") and "Model" in a.name
        ]
        if owners:
            owner, cls = owners[0][0].dotted, owners[0][1]
        elif hf:
            owner, cls = "transformers", hf[0][1]
        else:
            return None, f"save_pretrained ({mod.rel} line {call.lineno}) of a class with no from_pretrained found"
        return [
            f"from {owner} import {cls}",
            "",
            f"model = {cls}.from_pretrained(checkpoint_path)",
        ], f"save_pretrained folder ({mod.rel} line {call.lineno}), model {owner}.{cls}"
    for mod, call in saves:
        if not call.args:
            continue
        obj, where = call.args[0], f"{mod.rel} line {call.lineno}"
        if isinstance(obj, ast.Dict):
            lines, _, why = _from_state_dict(modules, obj, where)
            if lines:
                return lines, why
            return None, why
        if isinstance(obj, ast.Call) and _text(obj.func).endswith(".state_dict"):
            return None, f"{where}: a bare state dict, saved without the model's constructor arguments"
        if isinstance(obj, ast.Name):
            return [
                "import torch",
                "",
                "# a whole pickled model: unpickling runs code, so only load checkpoints your runs wrote",
                'model = torch.load(checkpoint_path, map_location="cpu", weights_only=False)',
            ], f"whole pickled model ({where}, torch.save({obj.id}, ...))"
    return None, "no checkpoint save found (torch.save, save_pretrained, a Lightning Trainer)"


def propose_evaluate(project_root: Path, entry_module: str) -> tuple[Optional[str], str]:
    """(body of evaluate(checkpoint_path), explanation); (None, what is missing) when no proposal."""
    root = Path(project_root)
    if not entry_module or module_file(root, entry_module) is None:
        return None, f"entry module {entry_module or '(none)'} is not a file of the project"
    modules = _load(root, entry_module)
    if not modules:
        return None, f"entry module {entry_module} could not be parsed"
    loader, why_loader = find_loader(modules)
    if loader is None:
        return None, why_loader
    scorer, why_scorer = find_scorer(modules)
    if scorer is None and why_loader.startswith("Lightning"):
        data = _classes(modules, DATAMODULE_BASES)
        if data:
            mod, cls = data[0]
            lines = [
                *loader,
                f"from {mod.dotted} import {cls}",
                "import lightning",
                *LIGHTNING_VALIDATE.format(data=cls).splitlines(),
            ]
            return _tidy(lines), f"{why_loader}; Trainer.validate with {mod.dotted}.{cls}"
    if scorer is None:
        return None, why_scorer
    lines = [*loader[:1], *dict.fromkeys(scorer.imports), f"from {scorer.module} import {scorer.name}", *loader[1:]]
    lines = [line for i, line in enumerate(lines) if line or (i and lines[i - 1])]  # no doubled blank lines
    call = f"{scorer.name}({', '.join(['model', *scorer.extra_args])})"
    if scorer.returns_dict:
        lines += [f"result = {call}", "return {str(k): float(v) for k, v in result.items()}"]
    else:
        lines += [f'return {{PRIMARY["name"]: float({call})}}']
    return _tidy(lines), f"{why_loader}; {why_scorer}"


def _tidy(lines: list[str]) -> str:
    """Imports first (plain imports before from-imports), then the code."""
    imports = sorted(set(line for line in lines if line.startswith(("import ", "from "))), key=lambda s: (s[0], s))
    body = [line for line in lines if not line.startswith(("import ", "from "))]
    while body and not body[0]:
        body.pop(0)
    imports.sort(key=lambda line: (not line.startswith("import "), line))
    return "\n".join([*imports, "", *body]) + "\n"
