"""Where a run's outputs (checkpoints, tracker logs) go: always into its own run folder.

Two ways, from the answers:
  output_key    the host's option for its output folder (`--out_dir`, `output_dir`, a constant):
                every run gets it set to runs/rNNNN/out (train.py adds it to CLI_OVERRIDES
                from AR_OUTPUT_KEY / AR_OUTPUT_DIR, like the seed of a repeat);
  fixed paths   a host that always writes the same project paths (output_fixed, else the
                folder checkpoint_glob names) runs in runs/rNNNN/work/ (workdir.py).
Measuring then reads the run's metrics and checkpoint there, never at the shared path, so a
wave's candidates can neither swap values nor checkpoints.

Calls from the run path: `env` (the training's environment), `cwd` (its working folder),
`measuring` (the config measure reads with), `tidy` (after measuring), `check_parallel`
(before several runs at once).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path, PurePosixPath

from ..core.config import Config
from ..core.errors import UserError
from ..core.layout import OUT, WORK
from . import workdir


def fixed_paths(cfg: Config) -> list[str]:
    """The project paths every run writes, when no option moves them: output_fixed, else the
    checkpoint_glob's folder (`checkpoints/*.pt` -> checkpoints)."""
    if cfg.output_key:
        return []
    if cfg.output_fixed:
        return [str(p) for p in cfg.output_fixed]
    glob = (cfg.checkpoint_glob or "").strip()
    parts = PurePosixPath(glob).parts if glob else ()
    if len(parts) > 1:
        return [parts[0]]
    return [glob] if glob else []


def output_file(cfg: Config) -> str:
    """The file name when the host's output option names a file, not a folder (`--save model.pt`):
    the answer output_file (detected from the option's default), else a checkpoint_glob that is
    one plain file name (experiments rendered before that answer existed)."""
    if cfg.output_file:
        return cfg.output_file
    glob = (cfg.checkpoint_glob or "").strip()
    parts = PurePosixPath(glob).parts if glob else ()
    return parts[0] if len(parts) == 1 and not any(c in glob for c in "*?[") else ""


def env(cfg: Config, run_dir: Path) -> dict[str, str]:
    """AR_OUTPUT_KEY / AR_OUTPUT_DIR for train.py when the host has an output option (AR_OUTPUT_FILE
    when that option names a file: the run's folder then holds that file)."""
    if not cfg.output_key:
        return {}
    out = Path(run_dir) / OUT
    name = output_file(cfg)
    if name:
        return {"AR_OUTPUT_KEY": cfg.output_key, "AR_OUTPUT_DIR": str(out), "AR_OUTPUT_FILE": name}
    return {"AR_OUTPUT_KEY": cfg.output_key, "AR_OUTPUT_DIR": str(out)}


def cwd(cfg: Config, run_dir: Path, parallel: bool) -> Path:
    """The run's working folder: when it runs beside others on a host that writes fixed paths, its
    own mirror of the project (check_parallel refused the paths that cannot have one)."""
    paths = fixed_paths(cfg)
    if not parallel or not paths or any(workdir.bad_path(p) for p in paths):
        return cfg.project_root  # one run at a time: the shared path is sound, capture moves it away
    return workdir.make(cfg.project_root, run_dir, paths)


def check_parallel(cfg: Config) -> None:
    """Several runs at once: refuse in one line when their outputs would share a path."""
    fix = (
        "answer output_key (the host's output-folder option) or output_fixed (the folders it writes) and run "
        "copier update, or let candidates run one after another (ar.py session --devices '')"
    )
    paths = fixed_paths(cfg)
    inferred = not cfg.output_key and not cfg.output_fixed and cfg.checkpoint_glob
    for path in paths:
        why = workdir.bad_path(path)
        if why and inferred:
            raise UserError(
                f"checkpoint_glob {cfg.checkpoint_glob!r} names no single folder the host writes, so runs at "
                f"once would write the same files; {fix}"
            )
        if why:
            raise UserError(f"output path {path!r} cannot get a folder per run ({why}); {fix}")


def measuring(cfg: Config, run_dir: Path) -> Config:
    """The config a finished run is measured with: its globs read where this run wrote, not the project."""
    run_dir = Path(run_dir)
    if (run_dir / WORK).is_dir():
        return dataclasses.replace(cfg, project_root=(run_dir / WORK).resolve())
    out = run_dir / OUT
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()  # train.py made it and the host wrote nothing: no checkpoint, said as such
    if cfg.output_key and out.is_dir():
        return dataclasses.replace(
            cfg,
            project_root=out.resolve(),
            checkpoint_glob=_within_output(out, cfg.checkpoint_glob),
            tb_events_glob=_within_output(out, cfg.tb_events_glob),
        )
    return cfg


def _within_output(out: Path, pattern: str) -> str:
    """The glob as it reads inside the run's output folder: the longest tail of it that matches there."""
    parts = PurePosixPath(pattern).parts if pattern else ()
    for i in range(len(parts)):
        tail = str(PurePosixPath(*parts[i:]))
        if any(out.glob(tail)):
            return tail
    return ""  # nothing there: the checkpoint is the run's output folder itself (found in the run folder)


def tidy(run_dir: Path) -> None:
    """After measuring: the working folder's links go, the run's real outputs stay."""
    workdir.unlink(Path(run_dir) / WORK)
