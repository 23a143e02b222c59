"""A run's own working folder, for a host that writes its outputs to fixed project paths.

`runs/rNNNN/work/` mirrors the project root: every entry is a symlink to the project's,
except the output paths, which are real (empty) folders of this run. The training runs
with that folder as its working directory, so `torch.save("ckpt/model.pt")` lands in this
run's folder and two candidates of a wave never write the same file. Imports are
unaffected (train.py puts the real project root on sys.path). After the run is measured
the links go; the real output folders stay with the run.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from ..core.fsutil import remove
from ..core.layout import WORK

GLOB_CHARS = frozenset("*?[")


def bad_path(path: str) -> str:
    """Why a fixed output path cannot be given a per-run folder ("" when it can)."""
    p = PurePosixPath(path)
    if not path.strip() or p.is_absolute() or ".." in p.parts:
        return "it is not a path inside the project"
    if any(GLOB_CHARS & set(part) for part in p.parts):
        return "it is a pattern, not a path"
    if p.parts[0] in (".git", ".autoresearch"):
        return "it is the project's own bookkeeping"
    return ""


def make(project_root: Path, run_dir: Path, paths: list[str]) -> Path:
    """runs/rNNNN/work/: the project's entries linked, the output paths real folders; returns it."""
    work = Path(run_dir) / WORK
    work.mkdir(exist_ok=True)
    _mirror(Path(project_root), work, [PurePosixPath(p).parts for p in paths])
    return work


def _mirror(src: Path, dst: Path, outputs: list[tuple[str, ...]]) -> None:
    heads = {parts[0] for parts in outputs}
    for name in sorted(os.listdir(src)):
        target = dst / name
        if name not in heads:
            if not os.path.lexists(target):
                os.symlink(src / name, target)
            continue
        inner = [parts[1:] for parts in outputs if parts[0] == name and len(parts) > 1]
        if inner and (src / name).is_dir():  # a folder that holds an output path: real, its other entries linked
            target.mkdir(exist_ok=True)
            _mirror(src / name, target, inner)
        elif (src / name).is_dir():
            target.mkdir(exist_ok=True)  # the output folder itself: this run's, empty
        # an output file: left for the host to create
    for parts in outputs:  # output paths the project does not have yet: their parent folders, real
        if len(parts) > 1 and not (src / parts[0]).exists():
            (dst / Path(*parts[:-1])).mkdir(parents=True, exist_ok=True)


def unlink(work: Path) -> None:
    """Remove the links of a working folder (never what they point to); the run's real outputs stay."""
    if not Path(work).is_dir():
        return
    for top, dirs, files in os.walk(work):
        for name in dirs + files:
            path = os.path.join(top, name)
            if os.path.islink(path):
                os.unlink(path)
    for top, dirs, _ in os.walk(work, topdown=False):  # folders left empty by the links going
        for name in dirs:
            path = os.path.join(top, name)
            if not os.listdir(path):
                os.rmdir(path)
    if not os.listdir(work):
        remove(Path(work))
