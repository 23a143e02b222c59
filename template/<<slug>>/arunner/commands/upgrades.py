"""What a `copier update` leaves in an experiment: conflicts, the regenerated config, bytecode.

Copier merges every rendered file three-way, experiment.json included, and reports nothing
(conflicts exit 0). experiment.json is generated from the answers and read by the runner, so a
conflict there is settled by the template itself: the real render keeps a copy of what it wrote
(`keep_rendered`), and after the merge that copy replaces a conflicted or unreadable file
(`restore_generated`). Conflicts anywhere else are the person's to resolve; they are recorded,
and `run` refuses until none is left (`refuse_while_conflicted`).

Bytecode is never state: Python writes `__pycache__/` beside the runner's modules, and an
experiment rendered before its .gitignore said so may even have it committed. The real render
drops it (`drop_bytecode`) so the merge never sees it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from ..core import chain_hash
from ..core.errors import UserError
from ..core.layout import CONFIG_FILE, MANIFEST, MANIFEST_BEFORE, PENDING, RENDERED, RUNNER_DIR
from ..state.snapshots import has_conflict_markers

SEAL_BEFORE = "manifest before upgrade"  # its seal (chain_hash): an edited copy is never restored
BYTECODE_DIR = "__pycache__"
NOT_TEXT = (".pyc", ".pyo", ".png", ".pt", ".bin")


def is_bytecode(path: str) -> bool:
    return BYTECODE_DIR in Path(path).parts or path.endswith((".pyc", ".pyo"))


def drop_bytecode(expr_dir: Path) -> list[str]:
    """Remove the experiment's own __pycache__ folders (runs/ and the best are not code)."""
    dropped = []
    for folder in [expr_dir / BYTECODE_DIR, *(expr_dir / RUNNER_DIR).rglob(BYTECODE_DIR)]:
        if folder.is_dir():
            shutil.rmtree(folder, ignore_errors=True)
            dropped.append(str(folder.relative_to(expr_dir)))
    return dropped


def untrack_bytecode(expr_dir: Path, project_root: Path) -> list[str]:
    """Take committed bytecode out of git's index (staged deletions), or Python's next write
    shows up as a change to commit; the .gitignore rule keeps it out from then on."""
    rel = str(expr_dir.relative_to(project_root))
    listed = subprocess.run(["git", "ls-files", "-z", "--", rel], cwd=project_root, capture_output=True, text=True)
    tracked = [path for path in listed.stdout.split("\0") if path and is_bytecode(path)]
    if not tracked:
        return []
    subprocess.run(["git", "rm", "-q", "--cached", "--", *tracked], cwd=project_root, capture_output=True)
    return [f"{len(tracked)} committed bytecode file(s) untracked (staged deletions): commit them with the upgrade"]


def keep_rendered(expr_dir: Path) -> None:
    """Copy the experiment.json this render produced from the answers (before any merge)."""
    source = expr_dir / CONFIG_FILE
    if source.is_file():
        (expr_dir / RENDERED).write_bytes(source.read_bytes())


def _readable(path: Path) -> bool:
    try:
        data = path.read_bytes()
        return not has_conflict_markers(data) and isinstance(json.loads(data), dict)
    except (OSError, ValueError):
        return False


def restore_generated(expr_dir: Path, project_root: Path) -> list[str]:
    """Put the rendered experiment.json back when the merge left it conflicted or unreadable.

    A file that merged cleanly is left alone (it may hold a deliberate edit). Git's index keeps
    Copier's conflict stages for the file until reset, so the index entry goes back to HEAD's.
    """
    target, rendered = expr_dir / CONFIG_FILE, expr_dir / RENDERED
    if _readable(target) or not _readable(rendered):
        return []
    target.write_bytes(rendered.read_bytes())
    rel = target.relative_to(project_root)
    subprocess.run(["git", "reset", "-q", "--", str(rel)], cwd=project_root, capture_output=True)
    return [f"{target.name} had merge conflicts: regenerated from the answers"]


def conflicts(expr_dir: Path) -> list[str]:
    """Rendered files with conflict markers or .rej leftovers (runtime state and bytecode skipped)."""
    found = []
    for path in [*expr_dir.iterdir(), *(expr_dir / RUNNER_DIR).rglob("*")]:
        rel = str(path.relative_to(expr_dir))
        if not path.is_file() or path.name.startswith(".ar-") or is_bytecode(rel):
            continue
        if path.suffix == ".rej" or (path.suffix not in NOT_TEXT and has_conflict_markers(path.read_bytes())):
            found.append(rel)
    return sorted(found)


def record_conflicts(expr_dir: Path, found: list[str]) -> None:
    pending = expr_dir / PENDING
    if found:
        pending.write_text("\n".join(found) + "\n", encoding="utf-8")
    else:
        pending.unlink(missing_ok=True)


def refuse_while_conflicted(expr_dir: Path) -> None:
    """Refuse to run while files an upgrade left conflicted still are (cheap: only those are read)."""
    pending = expr_dir / PENDING
    if not pending.exists():
        return
    left = []
    for rel in pending.read_text(encoding="utf-8").split():
        path = expr_dir / rel
        if path.exists() and (path.suffix == ".rej" or has_conflict_markers(path.read_bytes())):
            left.append(rel)
    record_conflicts(expr_dir, left)
    if left:
        raise UserError(
            f"the last upgrade left merge conflicts in {', '.join(left)}: resolve the <<<<<<< markers "
            "(delete any .rej file once applied), then run again"
        )


def keep_manifest(expr_dir: Path) -> None:
    """The integrity reference before an upgrade, sealed: --rollback restores only the runner's own."""
    source = expr_dir / MANIFEST
    if source.is_file():
        text = source.read_text(encoding="utf-8")
        chain_hash.seal_text(expr_dir, SEAL_BEFORE, text)
        (expr_dir / MANIFEST_BEFORE).write_text(text, encoding="utf-8")


def rollback(expr_dir: Path, project_root: Path) -> list[str]:
    """Undo an upgrade that has not been committed: the committed files, the pre-upgrade reference."""
    before = expr_dir / MANIFEST_BEFORE
    pending = expr_dir / PENDING
    if not before.exists() and not pending.exists():
        raise UserError(
            "upgrade --rollback: no upgrade to roll back here (it restores the committed experiment "
            "after `ar.py upgrade` only); to drop other changes use git yourself"
        )
    if before.exists() and not chain_hash.holds_seal(expr_dir, SEAL_BEFORE, before):
        raise UserError(
            f"upgrade --rollback: {before.name} is not the reference this runner kept before the upgrade "
            "(edited since); nothing rolled back: a person must look at it"
        )
    rel = str(expr_dir.relative_to(project_root))
    for cmd in (["git", "checkout", "-q", "HEAD", "--", rel], ["git", "clean", "-fdq", "--", rel]):
        proc = subprocess.run(cmd, cwd=project_root, capture_output=True, text=True)
        if proc.returncode != 0:
            raise UserError(f"upgrade --rollback: `{' '.join(cmd)}` failed: {proc.stderr.strip()[:200]}")
    if before.exists():
        text = before.read_text(encoding="utf-8")
        chain_hash.seal_text(expr_dir, "manifest", text)
        before.replace(expr_dir / MANIFEST)
    pending.unlink(missing_ok=True)
    return [f"rolled back {expr_dir.name} to its committed state (the upgrade's changes are gone)"]
