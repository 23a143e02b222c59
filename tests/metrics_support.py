"""What the metric tests share: a Config for a bare project and a run folder inside it."""

from __future__ import annotations

from pathlib import Path

from arunner.core.config import Config


def make_cfg(root: Path, **kw) -> Config:
    values = dict(expr_dir=root / ".autoresearch" / "x", project_root=root, slug="x", primary_metric="eval/loss")
    values.update(kw)
    return Config(**values)


def make_run_dir(root: Path) -> tuple[Path, Path]:
    """(project root, run dir inside it) with an empty run.log."""
    run_dir = root / ".autoresearch" / "x" / "runs" / "r0001"
    run_dir.mkdir(parents=True)
    (run_dir / "run.log").write_text("")
    return root, run_dir
