"""The entry point's options, its resume flag and the baseline cli_args.

Options are what the entry point accepts, with their defaults: argparse
`add_argument("--name", default=...)`, the fields of the dataclasses handed to
HfArgumentParser / simple_parsing, the Hydra config's keys (plus the chosen
config groups), or the parameters of `main(...)`. The baseline cli_args
come, first found wins, from the newest wandb run's config.yaml, its
wandb-metadata.json argv, CLAUDE.md's command, then a few distinctive
defaults; names the entry point does not accept are dropped, so the baseline
never breaks run 1.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from .commands import CONFIG_FILE_SUFFIXES, parse_args
from .entrypoints import STYLE_CONSTANTS, STYLE_EQUALS, Entry, knob_constants
from .sources import Project

MISSING = object()  # an option whose default is not a literal
RESUME_NAMES = ("resume_from_checkpoint", "resume", "resume_checkpoint", "ckpt_path", "pretrained_checkpoint")
HYPER = (
    "learning_rate",
    "lr",
    "max_steps",
    "steps",
    "num_train_epochs",
    "epochs",
    "max_epochs",
    "num_epochs",
    "batch_size",
    "per_device_train_batch_size",
    "train_batch_size",
    "weight_decay",
    "warmup_steps",
    "warmup_ratio",
    "hidden",
    "hidden_size",
    "hidden_dim",
    "d_model",
    "n_embd",
    "n_layer",
    "num_layers",
    "layers",
    "n_head",
    "dropout",
    "momentum",
    "gradient_accumulation_steps",
    "block_size",
    "max_seq_length",
    "model",
    "model_name_or_path",
    "config",
    "optimizer",
    "lr_scheduler_type",
)
COSMETIC = {
    "log_level",
    "logging_steps",
    "logging_dir",
    "logging_first_step",
    "logging_strategy",
    "report_to",
    "run_name",
    "wandb_mode",
    "wandb_project",
    "wandb_entity",
    "disable_tqdm",
    "push_to_hub",
    "hub_model_id",
    "hub_token",
    "hub_strategy",
    "overwrite_output_dir",
    "save_total_limit",
    "save_steps",
    "save_strategy",
    "eval_strategy",
    "evaluation_strategy",
    "dataloader_num_workers",
    "num_workers",
    "local_rank",
    "device",
    "verbose",
    "quiet",
    "debug",
    "log_every",
    "log_interval",
    "print_every",
    "use_wandb",
    "wandb",
    "project",
    "tags",
    "notes",
    "output_dir",
    "out_dir",
}
HF_TRAINING_ARGS = {
    "output_dir",
    "learning_rate",
    "num_train_epochs",
    "max_steps",
    "per_device_train_batch_size",
    "weight_decay",
    "warmup_steps",
    "warmup_ratio",
    "seed",
    "resume_from_checkpoint",
    "gradient_accumulation_steps",
    "lr_scheduler_type",
    "eval_steps",
    "save_steps",
}
MAX_ARGS = 8
MAX_DEFAULT_ARGS = 5


@dataclass
class Options:
    values: dict = field(default_factory=dict)  # option name -> default (MISSING when not a literal)
    open: bool = False  # accepts names we could not list (transformers' TrainingArguments, **kwargs)
    groups: dict = field(default_factory=dict)  # hydra config group -> chosen option
    help: dict = field(default_factory=dict)  # option name -> its help text, when the host gives one

    def default(self, name: str) -> Any:
        value = self.values.get(name, self.values.get(name.replace("_", "-"), None))
        return None if value is MISSING else value

    def accepts(self, name: str) -> bool:
        if self.open or not self.values:
            return True
        return name in self.values or name.split(".")[0] in self.groups


def _literal(node: ast.AST | None) -> Any:
    if node is None:
        return MISSING
    try:
        return ast.literal_eval(node)
    except (ValueError, SyntaxError, TypeError):
        return MISSING


def _argparse(tree: ast.Module, out: Options) -> None:
    """`add_argument("--name", default=...)` calls: long options only, store_true/false as booleans."""
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument"):
            continue
        flags = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
        long = [f for f in flags if f.startswith("--")]
        if not long:
            continue  # a positional: cli_args cannot pass it
        kw = {k.arg: k.value for k in node.keywords}
        action = _literal(kw.get("action"))
        default = {"store_true": False, "store_false": True}.get(action, _literal(kw.get("default")))
        out.values[long[0][2:]] = None if default is MISSING and "default" not in kw else default
        text = _literal(kw.get("help"))
        if isinstance(text, str):
            out.help[long[0][2:]] = " ".join(text.split())


def _dataclass_fields(cls: ast.ClassDef, out: Options) -> None:
    for node in cls.body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        value = node.value
        if isinstance(value, ast.Call) and getattr(value.func, "id", getattr(value.func, "attr", "")) == "field":
            value = next((k.value for k in value.keywords if k.arg == "default"), None)
        out.values[node.target.id] = _literal(value)


def _dataclasses(project: Project, entry: Entry, out: Options) -> None:
    """Fields of the dataclasses an HfArgumentParser / simple_parsing parser is built from."""
    tree = entry.facts.tree
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    origin = {
        a.asname or a.name: n.module
        for n in ast.walk(tree)
        if isinstance(n, ast.ImportFrom) and n.module
        for a in n.names
    }
    wanted: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and ast.unparse(node.func).split(".")[-1] in (
            "HfArgumentParser",
            "add_arguments",
            "parse",
        ):
            for arg in node.args[:1]:
                items = arg.elts if isinstance(arg, (ast.Tuple, ast.List)) else [arg]
                wanted += [i.id for i in items if isinstance(i, ast.Name)]
    for name in wanted or list(classes):
        if name in classes:
            _dataclass_fields(classes[name], out)
        elif origin.get(name, "").startswith("transformers"):
            out.open = True
            out.values.update({k: MISSING for k in HF_TRAINING_ARGS})
        elif origin.get(name) and (rel := project.module_file(origin[name])):
            other = project.parse(rel)
            for node in other.body if other else []:
                if isinstance(node, ast.ClassDef) and node.name == name:
                    _dataclass_fields(node, out)


def _flatten(data: Any, prefix: str, out: dict) -> None:
    """Nested mappings as dotted keys: {"a": {"b": 1}} -> {"a.b": 1} (defaults list and _private skipped)."""
    if not isinstance(data, dict):
        return
    for key, value in data.items():
        if str(key) == "defaults" or str(key).startswith("_"):
            continue
        if isinstance(value, dict):
            _flatten(value, f"{prefix}{key}.", out)
        else:
            out.setdefault(f"{prefix}{key}", value)


def _hydra(project: Project, entry: Entry, out: Options) -> None:
    """Keys of the Hydra primary config and of the config groups its defaults list picks."""
    folder = entry.facts.rel.rsplit("/", 1)[0] if "/" in entry.facts.rel else ""
    conf_path = str(entry.facts.hydra.get("config_path") or "")
    conf_dir = "/".join(p for p in (folder, conf_path) if p and p != ".")
    name = str(entry.facts.hydra.get("config_name") or "config").removesuffix(".yaml")

    def load(rel: str) -> Any:
        try:
            return yaml.safe_load(project.read(rel, limit=256 * 1024) or "") or {}
        except yaml.YAMLError:
            return {}

    primary = load(f"{conf_dir}/{name}.yaml" if conf_dir else f"{name}.yaml")
    for item in primary.get("defaults") or [] if isinstance(primary, dict) else []:
        if isinstance(item, dict):
            for group, choice in item.items():
                if isinstance(choice, str) and "/" not in str(group) and not str(group).startswith("override"):
                    out.groups[str(group)] = choice
                    _flatten({group: load(f"{conf_dir}/{group}/{choice}.yaml")}, "", out.values)
    _flatten(primary, "", out.values)


CONFIG_NODES = ("CN", "CfgNode", "ConfigNode", "ConfigDict")  # a nested section, not a value
MAX_NESTING = 4


def _yacs(entry: Entry, out: Options) -> None:
    """Dotted keys of a yacs-style config: `C.system.seed = 3407` in `get_config()`, and the sections it
    fills from classes (`C.model = GPT.get_default_config()`), later assignments winning."""
    modules = [(entry.dotted, entry.facts.tree)] + entry.nearby
    funcs = {n.name: n for n in entry.facts.tree.body if isinstance(n, ast.FunctionDef)}
    classes = {}
    for _dotted, tree in modules:
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                classes.setdefault(node.name, node)

    def builder(call: ast.AST) -> ast.FunctionDef | None:
        """The function a `get_config()` / `GPT.get_default_config()` call runs, when it is in the project."""
        if not isinstance(call, ast.Call):
            return None
        func = call.func
        if isinstance(func, ast.Name):
            return funcs.get(func.id)
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id in classes:
            body = classes[func.value.id].body
            return next((n for n in body if isinstance(n, ast.FunctionDef) and n.name == func.attr), None)
        return None

    def read(func: ast.FunctionDef, prefix: str, depth: int) -> None:
        for stmt in func.body:
            if not (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1):
                continue
            chain = []
            target = stmt.targets[0]
            while isinstance(target, ast.Attribute):
                chain.insert(0, target.attr)
                target = target.value
            if not chain or not isinstance(target, ast.Name):
                continue
            key = prefix + ".".join(chain)
            inner = builder(stmt.value)
            if inner is not None and depth < MAX_NESTING:
                read(inner, key + ".", depth + 1)
            elif isinstance(stmt.value, ast.Call) and ast.unparse(stmt.value.func).split(".")[-1] in CONFIG_NODES:
                continue
            else:
                out.values[key] = _literal(stmt.value)

    calls = [n for n in ast.walk(entry.facts.tree) if isinstance(n, ast.Call)]
    calls.sort(key=lambda c: not isinstance(c.func, ast.Name))  # the script's own get_config() first
    for call in calls:
        func = builder(call)
        if func is not None and ("config" in func.name or "cfg" in func.name):
            read(func, "", 0)
            break


def options(project: Project, entry: Entry) -> Options:
    out = Options()
    f = entry.facts
    if f is None:
        return out
    if entry.pattern == "hydra":
        _hydra(project, entry, out)
        return out
    if "yacs" in f.kinds:
        _yacs(entry, out)
        return out
    if entry.cli_style == STYLE_EQUALS:  # configurator: the globals it may override
        out.values = {k: v for k, v in f.constants.items() if not k.startswith("_")}
        return out
    if entry.cli_style == STYLE_CONSTANTS:
        out.values = knob_constants(f)
        return out
    if f.kinds & {"hfparser", "simple_parsing"}:
        _dataclasses(project, entry, out)
    _argparse(f.tree, out)
    if not out.values and entry.pattern == "argparse-cli":
        for _dotted, tree in entry.nearby:  # the parser may be built in a helper module
            _argparse(tree, out)
    funcs = (
        [f.main_func]
        if entry.pattern == "function" and f.main_func
        else ([n for n in f.tree.body if isinstance(n, ast.FunctionDef)] if entry.pattern == "custom" else [])
    )
    for func in funcs:
        args = func.args
        positional = args.posonlyargs + args.args
        defaults = [MISSING] * (len(positional) - len(args.defaults)) + [_literal(d) for d in args.defaults]
        for arg, default in zip(positional + args.kwonlyargs, defaults + [_literal(d) for d in args.kw_defaults]):
            if arg.arg != "self":
                out.values.setdefault(arg.arg, default)
        out.open = out.open or args.kwarg is not None
    return out


def knobs(opts: Options) -> list[dict]:
    """What the agent may set through CLI_OVERRIDES: [{"name", "default", "help"}] in the host's order.

    A default that is not a literal is None; help is "" when the host gives none.
    """
    out = []
    for name, default in opts.values.items():
        value = None if default is MISSING else default
        out.append({"name": name, "default": value, "help": opts.help.get(name, "")})
    return out


def resume_flag(opts: Options) -> str:
    """The option that resumes from a checkpoint path: the usual names first, then any *resume*."""

    def leaf(name: str) -> str:
        return name.split(".")[-1].replace("-", "_")

    paths = [n for n, d in opts.values.items() if not isinstance(d, bool)]  # a bool flag takes no path
    for wanted in RESUME_NAMES:
        for name in paths:
            if leaf(name) == wanted:
                return name
    for name in paths:
        if "resume" in leaf(name):
            return name
    return "resume_from_checkpoint" if opts.open and "resume_from_checkpoint" in opts.values else ""


def _rank(names: list[str]) -> list[str]:
    leaf = {n: n.split(".")[-1].replace("-", "_") for n in names}
    return sorted(names, key=lambda n: (HYPER.index(leaf[n]) if leaf[n] in HYPER else len(HYPER), names.index(n)))


def hydra_item(key: str, value: Any) -> str:
    """One Hydra override `key=value`: booleans and None in YAML spelling, odd strings quoted."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif value is None:
        text = "null"
    else:
        text = str(value)
        text = text if re.fullmatch(r"[\w./:+-]*", text) else "'" + text.replace("'", "\\'") + "'"
    return f"{key}={text}"


def _is_resume(name: str) -> bool:
    """Resume options never belong in a baseline: the runner passes the resume flag itself."""
    leaf = name.split(".")[-1].replace("-", "_")
    return leaf in RESUME_NAMES or "resume" in leaf


def _keep(args: dict, opts: Options, resume: str) -> dict:
    return {
        k: v
        for k, v in args.items()
        if isinstance(k, str)
        and (opts.accepts(k) or (v is True and k.endswith(CONFIG_FILE_SUFFIXES)))
        and k != resume
        and not _is_resume(k)
        and v is not None
        and isinstance(v, (int, float, str, bool, list))
    }


def _from_wandb(config: dict, pattern: str, opts: Options, resume: str) -> dict | list:
    flat: dict = {}
    if pattern == "hydra":
        _flatten(config, "", flat)
    else:
        flat = {k: v for k, v in config.items() if not isinstance(v, (dict, list))}
    flat = {
        k: v
        for k, v in flat.items()
        if not k.startswith("_") and k.split(".")[-1] not in COSMETIC and isinstance(v, (int, float, str, bool))
    }
    if pattern == "hydra":
        names = _rank([k for k in flat if k in opts.values and not _is_resume(k)])
        return [hydra_item(k, flat[k]) for k in names[:MAX_ARGS]]
    kept = _keep(flat, opts, resume)
    if not opts.values:  # what the entry accepts is unknown: only the usual hyperparameter names
        kept = {k: v for k, v in kept.items() if k.replace("-", "_") in HYPER}
    return {k: kept[k] for k in _rank(list(kept))[:MAX_ARGS]}


def _from_defaults(pattern: str, opts: Options, resume: str) -> dict | list:
    def distinctive(name: str, value: Any) -> bool:
        leaf = name.split(".")[-1].replace("-", "_")
        return (
            leaf in HYPER
            and leaf not in COSMETIC
            and value is not MISSING
            and value is not None
            and not isinstance(value, bool)
            and isinstance(value, (int, float, str))
        )

    names = _rank([n for n, v in opts.values.items() if n != resume and distinctive(n, v)])
    if pattern == "hydra":
        picks = [f"{g}={c}" for g, c in opts.groups.items()]
        return picks + [hydra_item(n, opts.values[n]) for n in names[: MAX_ARGS - len(picks)]]
    return {n: opts.values[n] for n in names[:MAX_DEFAULT_ARGS]}


def baseline(entry: Entry, opts: Options, resume: str, wandb_config: dict, wandb_argv: list) -> tuple[Any, str]:
    """(cli_args, where they came from) for the entry's pattern: a mapping, or key=value strings for hydra."""
    if wandb_config:
        args = _from_wandb(wandb_config, entry.pattern, opts, resume)
        if args:
            return args, "wandb config.yaml"
    command_args = entry.command.args if entry.command else {}
    for source, parsed in (("wandb-metadata.json", parse_args(wandb_argv)), ("docs", command_args)):
        args = parsed if isinstance(parsed, list) else _keep(parsed, opts, resume)
        if args and isinstance(args, list) == (entry.pattern == "hydra"):
            return args, source
    args = _from_defaults(entry.pattern, opts, resume)
    return args, ("defaults" if args else "")
