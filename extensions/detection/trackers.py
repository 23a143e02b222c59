"""Metric backend, TensorBoard events glob, primary-metric candidates, wandb project.

Evidence, strongest first: tracker artifacts on disk (wandb run folders ->
wandb; event files -> tensorboard, with a glob generalised from where they
are; mlruns/ -> custom, as there is no native mlflow backend), then tracker
calls in the entry point and the modules it imports (wandb.init / WandbLogger,
SummaryWriter / TensorBoardLogger / a Lightning Trainer), else the log. Only
small JSON/YAML files of the newest wandb runs are read; event files never.
Metric names come from wandb-summary.json keys and from the code: logged
scalars (`add_scalar("eval/loss", ...)`, `self.log("val_loss", ...)`,
`wandb.log({...})`) and stdout anchors (`print(f"val_loss={v}")`).
"""

from __future__ import annotations

import ast
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import yaml

from . import pathglob
from .sources import Project

RUN_RE = re.compile(r"^(offline-)?run-(\d{8}_\d{6})-\w+$")
VALIDATION_WORDS = {"eval", "val", "valid", "validation", "dev"}
TEST_WORDS = {"test", "testing", "holdout"}
EVAL_WORDS = VALIDATION_WORDS | TEST_WORDS
METRIC_WORDS = {
    "loss",
    "acc",
    "accuracy",
    "f1",
    "bleu",
    "auc",
    "ppl",
    "perplexity",
    "bpb",
    "wer",
    "cer",
    "error",
    "err",
    "mse",
    "mae",
    "rmse",
    "nll",
    "reward",
    "score",
    "top1",
    "top5",
    "precision",
    "recall",
    "r2",
    "map",
    "rouge",
    "iou",
    "dice",
}
# A printed name just before its value: `val_loss=`, `val_bpb:   `, `valid loss ` (f-string pieces),
# and inside format strings `val_loss=%.4f`, `valid loss {:5.2f}`, `eval_loss %.6f`. The word before
# the name is captured too: an eval/train word there makes a two-word name (`valid loss`, `val loss`).
_NAME = r"(?:([A-Za-z_]\w*)\s)?\s*([A-Za-z_][\w./-]*)"
ANCHOR_RE = re.compile(_NAME + r"['\"]?(?:\s*[=:]\s*|\s+)$")
INLINE_ANCHOR_RE = re.compile(_NAME + r"(?:\s*[=:]\s*|\s+)(?:%[-+ 0#]*[\d.]*[dfeEgGsr]|\{[^{}]*\})")
NAME_PREFIXES = {"eval", "val", "valid", "validation", "dev", "test", "train", "training"}
LOG_CALLS = {"log", "add_scalar", "log_metric", "log_metrics", "log_dict", "add_scalars"}
EVENTS = "events.out.tfevents.*"
MAX_RUNS = 3


@dataclass
class Wandb:
    """The newest wandb runs' small files."""

    runs: list = field(default_factory=list)  # relative run folders, newest first
    config: dict = field(default_factory=dict)  # config.yaml, {key: value} (wandb's {value: X} unwrapped)
    argv: list = field(default_factory=list)  # wandb-metadata.json args
    program: str = ""  # wandb-metadata.json codePath, relative to the root
    summary: list = field(default_factory=list)  # numeric wandb-summary.json keys
    project: str = ""


@dataclass
class Trackers:
    backend: str = "log"
    tb_events_glob: str = ""
    primary: str = ""
    candidates: list = field(default_factory=list)  # metric names, best first
    wandb_project: str = ""
    holdout: list = field(default_factory=list)  # test metrics the host reports beside a validation primary
    confidence: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    where: dict = field(default_factory=dict)  # metric name -> "module:line" it is printed or logged at


def read_wandb(project: Project) -> Wandb:
    out = Wandb()
    for folder in project.tree.payload.get("wandb", []):
        try:
            names = [e.name for e in (project.root / folder).iterdir() if RUN_RE.match(e.name) and not e.is_symlink()]
        except OSError:
            continue
        out.runs += [f"{folder}/{n}" for n in names]
    out.runs.sort(key=lambda rel: RUN_RE.match(rel.rsplit("/", 1)[-1]).group(2), reverse=True)
    for run in out.runs[:MAX_RUNS]:
        files = f"{run}/files"
        if not out.config:
            try:
                raw = yaml.safe_load(project.read(f"{files}/config.yaml", limit=1 << 20) or "") or {}
            except yaml.YAMLError:
                raw = {}
            if isinstance(raw, dict):
                out.config = {k: v.get("value") if isinstance(v, dict) and "value" in v else v for k, v in raw.items()}
                wb = out.config.get("_wandb")
                out.project = str(wb.get("project") or "") if isinstance(wb, dict) else ""
        meta = _json(project, f"{files}/wandb-metadata.json")
        if not out.program and meta:
            out.argv = [str(a) for a in meta.get("args") or []]
            out.program = str(meta.get("codePath") or "")
        summary = _json(project, f"{files}/wandb-summary.json")
        for key, value in summary.items():
            if not key.startswith("_") and isinstance(value, (int, float)) and key not in out.summary:
                out.summary.append(key)
    return out


def _json(project: Project, rel: str) -> dict:
    try:
        data = json.loads(project.read(rel, limit=1 << 20) or "{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def generalise(paths: list[str]) -> str:
    """The most common glob of found files: folder names with digits (dates, versions, run ids) -> *."""
    globs = Counter()
    for path in paths:
        parts = path.split("/")
        folders = ["*" if re.search(r"\d", p) else p for p in parts[:-1]]
        name = parts[-1]
        name = (
            EVENTS
            if name.startswith("events.out.tfevents.")
            else (
                "checkpoint-*"
                if name.startswith("checkpoint-")
                else "*" + name[name.rindex(".") :]
                if "." in name
                else "*"
            )
        )
        globs["/".join(folders + [name])] += 1
    return globs.most_common(1)[0][0] if globs else ""


def _metric_score(name: str) -> int:
    words = set(re.split(r"[^a-z0-9]+", name.lower()))
    score = 2 if words & VALIDATION_WORDS else 1 if words & TEST_WORDS else 0  # never optimise on the test set
    score -= 3 if "train" in words or "training" in words else 0
    return score + (1 if words & METRIC_WORDS or any(w.endswith(("loss", "acc")) for w in words) else 0)


def _words(name: str) -> set:
    return set(re.split(r"[^a-z0-9]+", name.lower()))


def is_validation(name: str) -> bool:
    return bool(_words(name) & VALIDATION_WORDS) and not _words(name) & TEST_WORDS


def is_test(name: str) -> bool:
    return bool(_words(name) & TEST_WORDS)


def _same_measure(test: str, primary: str) -> bool:
    """`test loss` beside `valid loss`: the same quantity on the held-out split (not `test_acc` beside a loss)."""
    rest = lambda n: _words(n) - EVAL_WORDS - {""}  # noqa: E731
    return not rest(primary) or not rest(test) or bool(rest(primary) & rest(test))


def _is_metric(name: str) -> bool:
    words = set(re.split(r"[^a-z0-9]+", name.lower()))
    return bool(words & METRIC_WORDS) or any(w.endswith(("loss", "acc", "accuracy")) for w in words)


def code_signals(modules: list, where: dict | None = None) -> tuple[set, list, dict]:
    """(tracker kinds used, metric names in order seen, tracker call nodes) over (dotted, ast) modules.

    `where`, when given, gets metric name -> "module:line" of the first place it is printed or logged.
    """
    kinds, names, calls = set(), [], {}
    for dotted, tree in modules:
        seen, line = len(names), 0
        lightning = bool(import_roots(tree) & {"lightning", "pytorch_lightning"})
        for node in [*ast.walk(tree), None]:
            if where is not None and len(names) > seen:  # names the previous node added
                for name in names[seen:]:
                    where.setdefault(name, f"{dotted}:{line}")
                seen = len(names)
            if node is None:
                break
            line = getattr(node, "lineno", line)
            if isinstance(node, ast.JoinedStr):
                for piece, nxt in zip(node.values, node.values[1:]):
                    if isinstance(piece, ast.Constant) and isinstance(nxt, ast.FormattedValue):
                        m = ANCHOR_RE.search(str(piece.value))
                        if m:
                            names.append(_printed_name(*m.groups()))
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and len(node.value) < 200:
                names += [_printed_name(*g) for g in INLINE_ANCHOR_RE.findall(node.value)]
            elif isinstance(node, ast.Subscript) and ast.unparse(node.value).endswith("summary"):
                if isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str):
                    names.append(node.slice.value)
            if not isinstance(node, ast.Call):
                continue
            func = ast.unparse(node.func)
            short = func.rsplit(".", 1)[-1]
            if short in LOG_CALLS:
                first = node.args[0] if node.args else None
                if isinstance(first, ast.Constant) and isinstance(first.value, str):
                    names.append(first.value)
                elif isinstance(first, ast.Dict):
                    names += [k.value for k in first.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)]
            if func in ("wandb.init", "WandbLogger") or short == "WandbLogger":
                kinds.add("wandb")
                calls.setdefault("wandb", node)
            elif short in ("SummaryWriter", "TensorBoardLogger"):
                kinds.add("tensorboard")
                calls.setdefault(short, node)
            elif short == "Trainer" and lightning:
                logger = ast.unparse(_kwarg(node, "logger") or ast.Constant(True))
                if logger != "True" and "TensorBoardLogger" not in logger:
                    continue  # another logger (or none): not Lightning's default TensorBoard files
                kinds.add("lightning")
                calls.setdefault("Trainer", node)
            elif func.startswith("mlflow."):
                kinds.add("mlflow")
    return kinds, [n for n in dict.fromkeys(names) if _is_metric(n)], calls


def _printed_name(before: str | None, name: str) -> str:
    """`valid` + `loss` -> "valid loss" (the log shows both words); `epoch` + `val_loss` -> "val_loss"."""
    return f"{before} {name}" if before and before.lower() in NAME_PREFIXES else name


def import_roots(tree: ast.Module) -> set:
    """Top-level packages a module imports (`from lightning.pytorch import X` -> lightning)."""
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            roots.add(node.module.split(".")[0])
    return roots


def _kwarg(call: ast.Call, name: str, position: int | None = None) -> ast.AST | None:
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value
    return call.args[position] if position is not None and len(call.args) > position else None


def code_events_glob(calls: dict, scope_for) -> str:
    """Where the code's TensorBoard writer puts event files, as a glob ('' when unknown)."""
    if "SummaryWriter" in calls:
        node = calls["SummaryWriter"]
        log_dir = _kwarg(node, "log_dir", 0)
        if log_dir is None:
            return f"runs/*/{EVENTS}"  # SummaryWriter's default runs/<date>_<host>
        folder = pathglob.resolve(log_dir, scope_for(node))
        return f"{folder}/{EVENTS}" if folder else (EVENTS if folder == "" else "")
    node = calls.get("TensorBoardLogger") or calls.get("Trainer")
    if node is None:
        return ""
    save_dir = _kwarg(node, "save_dir", 0) if "TensorBoardLogger" in calls else _kwarg(node, "default_root_dir")
    folder = pathglob.resolve(save_dir, scope_for(node)) if save_dir is not None else ""
    name = _kwarg(node, "name", 1) if "TensorBoardLogger" in calls else None
    sub = name.value if isinstance(name, ast.Constant) and isinstance(name.value, str) else "lightning_logs"
    if folder is None:
        return ""
    return "/".join(p for p in (folder, sub, "*", EVENTS) if p)


def detect(project: Project, modules: list, wandb: Wandb, scope_for) -> Trackers:
    out = Trackers()
    kinds, anchors, calls = code_signals(modules, out.where)
    events = project.tree.events
    if wandb.runs and ("wandb" in kinds or not events or "tensorboard" not in kinds):
        out.backend, why = "wandb", "high"
    elif events:
        out.backend, why = "tensorboard", "high"
        out.tb_events_glob = generalise(events)
    elif "mlruns" in project.tree.payload:
        out.backend, why = "custom", "medium"
        out.notes.append(
            "mlruns/ found: no native mlflow backend yet; paste a metric_extract_code snippet "
            "that reads the run's metrics (the log is the fallback)"
        )
    elif "wandb" in kinds:
        out.backend, why = "wandb", "medium"
    elif kinds & {"tensorboard", "lightning"} and (glob := code_events_glob(calls, scope_for)):
        out.backend, why = "tensorboard", "medium"
        out.tb_events_glob = glob
    else:
        out.backend, why = "log", "medium" if anchors else "low"
        if "mlflow" in kinds:
            out.notes.append(
                "the code logs to mlflow: no native backend yet; metrics are read from the log "
                "unless you choose custom with a metric_extract_code snippet"
            )
    out.confidence["metric_backend"] = why
    if out.tb_events_glob:
        out.confidence["tb_events_glob"] = why  # from the files themselves, or from the writer's code

    summary = wandb.summary if out.backend == "wandb" else []
    ranked = sorted(dict.fromkeys(summary + anchors), key=lambda n: -_metric_score(n))
    out.candidates = ranked[:8]
    if ranked:
        out.primary = ranked[0]
        out.confidence["primary_metric"] = "high" if _metric_score(ranked[0]) >= 3 else "medium"
        if is_validation(out.primary):
            out.holdout = [n for n in ranked if is_test(n) and _same_measure(n, out.primary)]
    out.wandb_project = wandb.project or _wandb_project(calls.get("wandb"))
    return out


def _wandb_project(call: Any) -> str:
    value = _kwarg(call, "project") if isinstance(call, ast.Call) else None
    if isinstance(value, ast.Constant) and isinstance(value.value, str) and "\n" not in value.value:
        return value.value
    return ""
