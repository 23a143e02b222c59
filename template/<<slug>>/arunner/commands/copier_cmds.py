"""Commands that drive Copier for this experiment: chain (a child experiment) and upgrade.

Copier is not needed to run the loop; these two look for the `copier` command
on PATH and say how to install it when it is missing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from ..core.answers import CONFIG_KEYS
from ..core.config import Config
from ..core.errors import UserError
from ..core.fsutil import atomic_write_json
from ..core.layout import BEST, CHAIN_DECISION, CONFIG_FILE, TRAIN_PY
from ..state import best as best_state
from .upgrades import (
    conflicts,
    is_bytecode,
    keep_manifest,
    record_conflicts,
    restore_generated,
    rollback,
    untrack_bytecode,
)

INSTALL = "uv tool install copier --with copier-template-extensions"


def _copier() -> str:
    path = shutil.which("copier")
    if not path:
        raise UserError(f"the copier command is not on PATH; install it ({INSTALL})")
    return path


def _last_line(proc: subprocess.CompletedProcess) -> str:
    lines = [
        line
        for line in (proc.stderr + proc.stdout).strip().splitlines()
        if line.strip() and "Warning" not in line and line.strip() != "warn(" and "git tags" not in line
    ]
    return lines[-1] if lines else f"exit code {proc.returncode}"


def _answers_source(cfg: Config) -> tuple[str, str]:
    text = (cfg.expr_dir / ".copier-answers.yml").read_text(encoding="utf-8")
    src = re.search(r"^_src_path:\s*(.+)$", text, re.M)
    commit = re.search(r"^_commit:\s*(.+)$", text, re.M)
    if not src:
        raise UserError(f"{cfg.expr_dir / '.copier-answers.yml'} has no _src_path; pass --template")
    return src.group(1).strip().strip("'\""), commit.group(1).strip().strip("'\"") if commit else ""


def chain(cfg: Config, args) -> tuple[list[str], int]:
    """Render a child experiment through copier, inheriting this one's answers."""
    if not args.rationale.strip():
        raise UserError("chain: --rationale is empty; say why the child experiment is worth running")
    best = best_state.read_best(cfg.expr_dir)
    if not best:
        raise UserError("chain: this experiment has no best run yet; run until one advances")
    copier = _copier()
    src, commit = _answers_source(cfg)
    if args.template:
        src, commit = args.template, ""
    rendered = json.loads((cfg.layout.config).read_text())
    data = {k: rendered[k] for k in CONFIG_KEYS if k in rendered}  # the answers, not template_version
    parent_ckpt = ""
    if best.get("name"):  # the best run's checkpoint, by its original name inside best_ckpt/
        parent_ckpt = str((cfg.expr_dir / BEST / best["name"]).relative_to(cfg.project_root))
    data.update(slug=args.new_slug, goal=args.goal, topic="", parent_expr=cfg.slug, parent_ckpt=parent_ckpt)
    if args.primary_metric:
        data["primary_metric"] = args.primary_metric
    if args.primary_direction:
        data["primary_direction"] = args.primary_direction
    data = {k: v for k, v in data.items() if v is not None}
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as fh:
        json.dump(data, fh)
    try:
        cmd = [copier, "copy", "--trust", "--defaults", "--quiet", "--data-file", fh.name]
        pinned = ["--vcs-ref", commit] if commit else []  # the parent's template version, when it still exists
        dest = str(cfg.expr_dir.parent)
        proc = subprocess.run([*cmd, *pinned, src, dest], cwd=cfg.project_root, capture_output=True, text=True)
        if proc.returncode != 0 and pinned and "Unknown revision" in proc.stderr:
            proc = subprocess.run([*cmd, src, dest], cwd=cfg.project_root, capture_output=True, text=True)
    finally:
        os.unlink(fh.name)
    if proc.returncode != 0:
        raise UserError(f"chain: copier failed: {_last_line(proc)}")
    child = cfg.expr_dir.parent / args.new_slug
    decision = child / CHAIN_DECISION
    atomic_write_json(
        decision,
        {
            "parent_expr": cfg.slug,
            "parent_best_run_id": best["run_id"],
            "parent_best": best["primary"],
            "parent_ckpt": parent_ckpt,
            "goal": args.goal,
            "rationale": args.rationale.strip(),
        },
    )
    decision.chmod(0o444)
    return [
        f"chained {args.new_slug} from {cfg.slug} best {best['run_id']}",
        f"Next: python {child.relative_to(cfg.project_root)}/ar.py run",
    ], 0


def _git(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)


def _set_bytecode_aside(root: Path, dirty: list[str]) -> list[str]:
    """Bytecode Python wrote into the experiment is not a change to commit: drop it, keep the rest.

    Untracked caches are deleted (Python writes them again); committed ones that Python rewrote
    go back to their committed bytes, and the update's real render drops them for good.
    """
    kept = []
    for line in dirty:
        path = line[3:].strip('"')
        if not is_bytecode(path):
            kept.append(line)
        elif line.startswith("??"):
            target = root / path
            shutil.rmtree(target, ignore_errors=True) if target.is_dir() else target.unlink(missing_ok=True)
        else:
            _git(root, "checkout", "-q", "HEAD", "--", path)
    return kept


def _template_version(expr_dir: Path) -> str:
    try:
        return str(json.loads((expr_dir / CONFIG_FILE).read_text(encoding="utf-8")).get("template_version", ""))
    except (OSError, ValueError):
        return "?"


def upgrade(cfg: Config, args) -> tuple[list[str], int]:
    """`copier update` for this experiment only, with the checks Copier does not do, and a conflict report."""
    root, rel = cfg.project_root, cfg.expr_dir.relative_to(cfg.project_root)
    if getattr(args, "rollback", False):
        return rollback(cfg.expr_dir, root), 0
    copier = _copier()
    if _git(root, "rev-parse", "--is-inside-work-tree").returncode != 0:
        raise UserError(f"upgrade: {root} is not a git repository; copier update needs git (git init, commit, retry)")
    if _git(root, "check-ignore", "-q", str(rel / TRAIN_PY)).returncode == 0:
        raise UserError(
            f"upgrade: {rel} is git-ignored, so copier update would delete its files and revert "
            f"train.py; run `git add -f {rel} && git commit` first"
        )
    if _git(root, "ls-files", "--error-unmatch", str(rel / TRAIN_PY)).returncode != 0:
        raise UserError(f"upgrade: {rel} is not committed; run `git add {rel} && git commit` first")
    dirty = _git(root, "status", "--porcelain", "--", str(rel.parent)).stdout.splitlines()
    dirty = _set_bytecode_aside(root, dirty)
    if dirty:
        raise UserError(
            f"upgrade: {len(dirty)} uncommitted change(s) under {rel.parent} (e.g. {dirty[0][3:]}); "
            "copier refuses a dirty repository: commit them first"
        )
    before = cfg.template_version
    keep_manifest(cfg.expr_dir)  # --rollback puts the pre-upgrade reference back
    cmd = [copier, "update", "--trust", "--defaults", "--quiet", "--conflict", "inline"]
    answers = f"{cfg.slug}/.copier-answers.yml"
    proc = subprocess.run([*cmd, "-a", answers, str(rel.parent)], cwd=root, capture_output=True, text=True)
    if proc.returncode != 0:
        raise UserError(f"upgrade: copier update failed: {_last_line(proc)}")
    # both also done by the template's own after-update step (when both versions are tagged)
    notes = [*restore_generated(cfg.expr_dir, root), *untrack_bytecode(cfg.expr_dir, root)]
    after = _template_version(cfg.expr_dir)
    from ..integrity.checks import accept_upgrade

    notes += accept_upgrade(cfg)  # the new release's runner files are the new reference; says which
    found = conflicts(cfg.expr_dir)
    record_conflicts(cfg.expr_dir, found)
    if found:
        return [
            f"upgraded {cfg.slug} ({before} -> {after}) WITH CONFLICTS in {', '.join(found)}: resolve the "
            f"<<<<<<< markers and commit (ar.py run refuses until then), or roll back with "
            f"`python {rel}/ar.py upgrade --rollback`",
            *notes,
        ], 1
    return [f"upgraded {cfg.slug} ({before} -> {after}); review `git diff {rel}` and commit", *notes], 0
