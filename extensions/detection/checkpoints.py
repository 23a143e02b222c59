"""Checkpoint glob: where the host saves, from its save calls, its framework, or files on disk.

Code first: `torch.save(obj, path)` / safetensors `save_file` with a path we
can resolve (`f"{out}/model.pt"` -> `<out default>/*.pt`, an HF-style
`checkpoint-{step}` folder -> `.../checkpoint-*`), `accelerator.save_state`,
`save_pretrained` / `save_model` folders, Lightning's ModelCheckpoint(dirpath)
or Trainer default (`lightning_logs/*/checkpoints/*.ckpt`), HF Trainer
(`<output_dir>/checkpoint-*`). Then checkpoint files seen by the walk in
tracker or checkpoint folders. A glob that starts with a wildcard, leaves the
root or cannot be resolved is never proposed: empty is the safe answer.
"""

from __future__ import annotations

import ast
import fnmatch
from dataclasses import dataclass

from . import pathglob
from .trackers import generalise, import_roots

FILE_SAVES = {"save": 1, "save_file": 1}  # call -> position of the path argument
FOLDER_SAVES = {"save_state": 0, "save_pretrained": 0, "save_model": 0}
PATH_KWARGS = ("f", "filename", "output_dir", "save_directory")
CKPT_HINTS = ("checkpoint", "ckpt")


@dataclass
class Found:
    glob: str = ""
    confidence: str = "low"
    source: str = ""


def usable(glob: str | None) -> bool:
    if not glob:
        return False
    parts = glob.split("/")
    return not glob.startswith(("/", "~", "*")) and ".." not in parts and "*" not in parts[0]


def _path_arg(call: ast.Call, position: int) -> ast.AST | None:
    for kw in call.keywords:
        if kw.arg in PATH_KWARGS:
            return kw.value
    return call.args[position] if len(call.args) > position else None


def _kwarg(call: ast.Call, name: str) -> ast.AST | None:
    return next((kw.value for kw in call.keywords if kw.arg == name), None)


def from_code(modules: list, scopes, option) -> list[tuple[str, str]]:
    """(glob, what it came from) for each save convention found, most explicit first."""
    saves, conventions = [], []
    for dotted, tree in modules:
        roots = import_roots(tree)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = ast.unparse(node.func)
            short = func.rsplit(".", 1)[-1]
            if short in FILE_SAVES and (short != "save" or func == "torch.save"):
                path = pathglob.resolve(_path_arg(node, FILE_SAVES[short]), scopes(node))
                if usable(path):
                    saves.append((pathglob.file_glob(path), f"{func} at {dotted}:{node.lineno}"))
            elif short in FOLDER_SAVES and not func.startswith(("torch.", "np.")):
                path = pathglob.resolve(_path_arg(node, FOLDER_SAVES[short]), scopes(node))
                if usable(path):
                    saves.append(
                        (
                            pathglob.file_glob(path) if "checkpoint-" in path else path,
                            f"{short} at {dotted}:{node.lineno}",
                        )
                    )
            elif short == "ModelCheckpoint":
                folder = pathglob.resolve(_kwarg(node, "dirpath"), scopes(node))
                if usable(folder):
                    conventions.append((f"{folder}/*.ckpt", "ModelCheckpoint"))
            elif short == "Trainer" and roots & {"lightning", "pytorch_lightning"}:
                off = _kwarg(node, "enable_checkpointing")
                if isinstance(off, ast.Constant) and off.value is False:
                    continue
                root_dir = _kwarg(node, "default_root_dir")
                folder = pathglob.resolve(root_dir, scopes(node)) if root_dir is not None else ""
                if folder is not None:
                    conventions.append(
                        ("/".join(p for p in (folder, "lightning_logs/*/checkpoints/*.ckpt") if p), "Lightning Trainer")
                    )
            elif short == "Trainer" and "transformers" in roots:
                out = option("output_dir")
                if isinstance(out, str) and usable(out.strip("/")):
                    conventions.append((f"{out.strip('/')}/checkpoint-*", "HF Trainer"))
    return saves + conventions


def from_disk(paths: list[str], payload_roots: set) -> str:
    """A glob for the checkpoints the walk saw in tracker or checkpoint folders."""
    kept = [p for p in paths if p.split("/")[0] in payload_roots or any(h in p.lower() for h in CKPT_HINTS)]
    glob = generalise(kept)
    return glob if usable(glob) else ""


def detect(modules: list, scopes, option, ckpt_paths: list[str], payload_roots: set) -> Found:
    code = from_code(modules, scopes, option)
    disk = from_disk(ckpt_paths, payload_roots)
    for glob, source in code:
        if any(fnmatch.fnmatch(p, glob) or fnmatch.fnmatch(p, glob + "/*") for p in ckpt_paths):
            return Found(glob, "high", f"{source}, and files on disk match")
    if code:
        return Found(code[0][0], "medium", code[0][1])
    if disk:
        return Found(disk, "medium", "files on disk")
    return Found()
