"""Where the host writes, how long it trains, what caps its time: the knobs the runner sets per run.

Output: every save or tracker call whose path we can read (`torch.save`,
`save_file`, `save_pretrained` / `save_state` / `save_model`, `open(path,
"w")`, `SummaryWriter(log_dir)`, `TensorBoardLogger(save_dir)`,
Lightning's `ModelCheckpoint(dirpath)` and `Trainer(default_root_dir)`, an HF
Trainer's `output_dir`, Hydra's run folder). A path that goes through one of
the entry point's knobs (`args.work_dir`, a configurator global `out_dir`, a
path constant, `config.system.work_dir`) makes that knob the output key; a
path that is spelled out in the code (`"ckpt/model.bin"`) is recorded as
fixed, so the runner can keep concurrent runs apart or refuse.

Length: the step / epoch / iteration limit among the knobs, and whether its
default means "forever" (-1 or None, or 0 when the code has an open
`while True` loop). Time: a knob that caps the host's own training time.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, Callable

from . import pathglob
from .trackers import import_roots

FILE_SAVES = {"save": 1, "save_file": 1, "save_checkpoint": 1}  # call -> position of the path argument
FOLDER_SAVES = {"save_state": 0, "save_pretrained": 0, "save_model": 0}
WRITER_DIRS = {"SummaryWriter": ("log_dir", 0), "TensorBoardLogger": ("save_dir", 0), "ModelCheckpoint": ("dirpath", 0)}
PATH_KWARGS = ("f", "filename", "output_dir", "save_directory", "path")
MAX_DEPTH = 8
# Leaf names of a training-length knob, steps before epochs (the finer one is the one to cap).
STEP_NAMES = ("max_steps", "max_iters", "max_iter", "max_iterations", "num_steps", "n_steps", "total_steps")
STEP_NAMES += ("train_steps", "num_iterations", "iterations", "iters", "steps")
EPOCH_NAMES = ("max_epochs", "num_train_epochs", "num_epochs", "n_epochs", "epochs")
TIME_NAMES = ("max_time", "time_limit", "time_budget", "max_seconds", "max_runtime", "time_cap", "budget")
PROPOSED_STEPS = 1000  # a finite step limit proposed for a host whose default trains forever
PROGRESS_RE = re.compile(r"\b(step|iter|iteration)s?\b", re.I)


FILE_SUFFIX_RE = re.compile(r"^\.[A-Za-z0-9_]{1,12}$")  # model.pt, ckpt.bin, weights.safetensors


def file_name(default: Any) -> str:
    """The file an output option's default names (`checkpoints/model.pt` -> model.pt); "" for a folder."""
    if not isinstance(default, str) or not default.strip() or default.rstrip().endswith(("/", "\\")):
        return ""
    name = PurePosixPath(default.strip()).name
    return name if FILE_SUFFIX_RE.match(PurePosixPath(name).suffix or "-") else ""


@dataclass
class Outputs:
    key: str = ""  # the knob that decides where the host writes ("" = none found)
    key_default: Any = None  # its default (a folder such as out, or a file such as model.pt)
    key_source: str = ""  # "torch.save at makechars:93"
    fixed: list = field(default_factory=list)  # project-relative paths written with no knob
    fixed_source: dict = field(default_factory=dict)  # fixed path -> "torch.save at train:32"
    length_key: str = ""
    length_default: Any = None
    forever: bool = False  # the length default never ends training
    proposed: Any = None  # a finite value for length_key when the baseline would train forever, in steps
    time_key: str = ""
    time_default: Any = None


def _leaf(name: str) -> str:
    return name.split(".")[-1].lstrip("-").replace("-", "_").lower()


class Knobs:
    """Looks a name up among the entry point's options (`work_dir` finds `--work-dir`)."""

    def __init__(self, values: dict, globals_are_knobs: bool):
        self.values = values
        self.globals_are_knobs = globals_are_knobs
        self.by_norm = {n.replace("-", "_"): n for n in values}

    def find(self, name: str) -> str:
        return self.by_norm.get(name.replace("-", "_"), "")


def _knob_in(node: ast.AST | None, scope: pathglob.Scope, knobs: Knobs, depth: int = 0) -> str:
    """The knob a path expression depends on ('' when none): `os.path.join(args.work_dir, 'm.pt')` -> work-dir."""
    if node is None or depth > MAX_DEPTH:
        return ""
    if isinstance(node, ast.Attribute):
        chain = pathglob._attr_path(node)
        if chain and len(chain) > 1:
            for start in range(1, len(chain)):  # args.a.b, then a.b's shorter tails (self.config.work_dir)
                found = knobs.find(".".join(chain[start:]))
                if found:
                    return found
        if "HydraConfig" in ast.unparse(node) and "output_dir" in ast.unparse(node):
            return "hydra.run.dir"
        return ""
    if isinstance(node, ast.Name):
        if knobs.globals_are_knobs and knobs.find(node.id):
            return knobs.find(node.id)
        for value in scope.names.get(node.id, [])[:4]:
            found = _knob_in(value, scope, knobs, depth + 1)
            if found:
                return found
        return ""
    if isinstance(node, ast.Call) and "HydraConfig" in ast.unparse(node.func):
        return ""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.expr):
            found = _knob_in(child, scope, knobs, depth + 1)
            if found:
                return found
    return ""


def _kwarg(call: ast.Call, names: tuple, position: int | None) -> ast.AST | None:
    for kw in call.keywords:
        if kw.arg in names:
            return kw.value
    return call.args[position] if position is not None and len(call.args) > position else None


def _path_nodes(modules: list):
    """(path expression or None, call, what) for every call that writes under a path."""
    for dotted, tree in modules:
        roots = import_roots(tree)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = ast.unparse(node.func)
            short = func.rsplit(".", 1)[-1]
            what = f"{func if short == 'save' else short} at {dotted}:{node.lineno}"
            if short in FILE_SAVES and (short != "save" or func == "torch.save"):
                yield _kwarg(node, PATH_KWARGS, FILE_SAVES[short]), node, what
            elif short in FOLDER_SAVES and not func.startswith(("torch.", "np.")):
                yield _kwarg(node, PATH_KWARGS, FOLDER_SAVES[short]), node, what
            elif short in WRITER_DIRS:
                name, pos = WRITER_DIRS[short]
                path = _kwarg(node, (name,), pos)
                if path is None and short == "SummaryWriter":
                    yield ast.Constant("runs"), node, what  # SummaryWriter's default runs/<date>_<host>
                elif path is not None:
                    yield path, node, what
            elif short == "Trainer" and roots & {"lightning", "pytorch_lightning"}:
                yield _kwarg(node, ("default_root_dir",), None) or ast.Constant(""), node, what
            elif func == "open" and _writes(node):
                yield _kwarg(node, ("file",), 0), node, what
            elif short in ("TrainingArguments", "Seq2SeqTrainingArguments"):
                yield _kwarg(node, ("output_dir",), 0), node, what


def _writes(call: ast.Call) -> bool:
    """`open(path, "w")` / "wb" / "a": the host writes a file there."""
    mode = _kwarg(call, ("mode",), 1)
    return isinstance(mode, ast.Constant) and isinstance(mode.value, str) and bool(set(mode.value) & set("wax"))


def outputs(modules: list, scopes, values: dict, globals_are_knobs: bool, pattern: str) -> Outputs:
    """Where the host writes: its output knob, else the fixed paths it writes to."""
    out = Outputs()
    knobs = Knobs(values, globals_are_knobs)
    for path, call, what in _path_nodes(modules):
        if path is None:
            continue
        scope = scopes(call)
        key = _knob_in(path, scope, knobs)
        if key == "hydra.run.dir" or (not key and pattern == "hydra" and "HydraConfig" in ast.unparse(path)):
            key = "hydra.run.dir"
        if key:
            default = values.get(key) if key in values else None
            names_file = what.split(" ", 1)[0] in ("torch.save", "open", *FILE_SAVES)  # not a folder argument
            direct = isinstance(path, ast.Attribute) or (isinstance(path, ast.Name) and knobs.find(path.id))
            if names_file and direct and not file_name(default):
                continue  # the option IS the file and names none by default: the host saves nothing unasked
            if not out.key:
                out.key, out.key_source, out.key_default = key, what, default
            continue
        resolved = pathglob.resolve(path, scope)
        if resolved and not resolved.startswith("*") and resolved not in out.fixed:
            out.fixed.append(resolved)
            out.fixed_source[resolved] = what
    if not out.key and "output_dir" in values and any("TrainingArguments" in w for _p, _c, w in _path_nodes(modules)):
        out.key, out.key_source = "output_dir", "TrainingArguments"
    return out


def _open_loop(modules: list) -> bool:
    return any(
        isinstance(n, ast.While) and isinstance(n.test, ast.Constant) and n.test.value is True
        for _d, tree in modules
        for n in ast.walk(tree)
    )


def _prints_steps(modules: list) -> bool:
    """The host's printed progress counts steps or iterations (a finite step limit then makes sense)."""
    for _d, tree in modules:
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and len(node.value) < 200:
                if PROGRESS_RE.search(node.value):
                    return True
    return False


def length_and_time(out: Outputs, modules: list, values: dict, given: Callable[[str], Any]) -> None:
    """The step/epoch limit (and whether its default never ends) and the time-cap knob, among `values`."""
    names = list(values)
    for wanted in STEP_NAMES + EPOCH_NAMES:
        match = next((n for n in names if _leaf(n) == wanted), "")
        if match:
            out.length_key, out.length_default = match, values[match]
            break
    for wanted in TIME_NAMES:
        match = next((n for n in names if _leaf(n) == wanted and isinstance(values[n], (int, float, type(None)))), "")
        if match:
            out.time_key, out.time_default = match, values[match]
            break
    if not out.length_key:
        return
    default = out.length_default
    if default is not None and not isinstance(default, (int, float, str)):
        out.length_default = None  # not a literal (a library's default): nothing to say about it
        return
    number = isinstance(default, (int, float)) and not isinstance(default, bool)
    out.forever = (number and default < 0) or ((default is None or default == 0) and _open_loop(modules))
    others = [values[n] for n in names if n != out.length_key and _leaf(n) in STEP_NAMES + EPOCH_NAMES]
    if any(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in others):
        out.forever = False  # `--max_steps -1` beside `--epochs 3`: -1 means "count epochs" (HF's convention)
    baseline = given(out.length_key)
    if out.forever and baseline == default and _leaf(out.length_key) in STEP_NAMES and _prints_steps(modules):
        out.proposed = PROPOSED_STEPS


SEED_CALLS = ("manual_seed", "seed", "set_seed", "seed_everything", "manual_seed_all")


def fixed_seed(modules: list, files: dict) -> str:
    """`gpt.py:20` where the host seeds its generators with a literal (torch.manual_seed(1337)), else ''."""
    for dotted, tree in modules:
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and pathglob._attr_path(node.func) is not None  # a global seed, not torch.Generator().manual_seed
                and ast.unparse(node.func).rsplit(".", 1)[-1] in SEED_CALLS
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, int)
                and not isinstance(node.args[0].value, bool)
            ):
                return f"{files.get(dotted, dotted)}:{node.lineno} ({ast.unparse(node)})"
    return ""
