"""Goal candidates and the advisory mutation scope.

Goal: an explicit `Goal:` / `Objective:` line (or `## Goal` section) in
CLAUDE.md; else "lower <primary> of <project>" when a primary metric was
found (raise for metrics where higher is better); recent commit subjects that
read like improvements are kept as further candidates (`git log --oneline
-n 20`, read-only, 2 s timeout, skipped without a .git).
Mutation scope: classes the entry point defines on nn.Module /
LightningModule, then those of the project modules it imports, then those
modules themselves.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess

from .sources import Project

GOAL_LINE_RE = re.compile(r"^\s*(?:[-*]\s*)?\**(?:goal|objective|aim)\**\s*:\**\s*(.+?)\s*$", re.I | re.M)
GOAL_SECTION_RE = re.compile(r"^#+\s*(?:goal|objective)s?\s*\n+\s*(?:[-*]\s*)?(.+?)\s*$", re.I | re.M)
IMPROVE_RE = re.compile(r"\b(improv|reduc|lower|increas|boost|speed|faster|better|tun|optimi[sz])", re.I)
MAX_SCOPE = 6
DEFAULT_GOAL = "lower the validation loss"


def _commit_subjects(project: Project) -> list[str]:
    if not (project.root / ".git").exists():
        return []
    try:
        proc = subprocess.run(
            ["git", "-C", str(project.root), "log", "--oneline", "--no-decorate", "-n", "20"],
            capture_output=True,
            text=True,
            timeout=2,
            env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"},
        )
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.split(" ", 1)[1].strip() for line in proc.stdout.splitlines() if " " in line]


def goal_candidates(project: Project, primary: str, direction) -> list[str]:
    found: list[str] = []
    for rel in sorted(project.tree.docs, key=lambda r: r.count("/"))[:3]:
        text = project.read(rel, limit=256 * 1024) or ""
        for regex in (GOAL_LINE_RE, GOAL_SECTION_RE):
            found += [m.group(1).strip("`* ") for m in regex.finditer(text)]
    if primary:
        verb = "raise" if direction(primary) == "max" else "lower"
        found.append(f"{verb} {primary} of {project.name}")
    found += [s for s in _commit_subjects(project) if IMPROVE_RE.search(s)][:2]
    found = [" ".join(g.split())[:200] for g in found if g.strip()]
    return list(dict.fromkeys(found)) or [DEFAULT_GOAL]


def _module_classes(dotted: str, tree: ast.Module) -> list[str]:
    out = []
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and any(ast.unparse(b).endswith("Module") for b in node.bases):
            out.append(f"{dotted}.{node.name}")
    return out


# Modules the metric depends on (a root `prepare` contract, evaluation or metric code): never
# suggested as a place to patch; they are what the integrity checks protect.
JUDGE_MODULE_RE = re.compile(r"(^|\.)(prepare|eval\w*|metric\w*|scor\w*)$")


def mutation_scope(entry_dotted: str, entry_tree: ast.Module | None, nearby: list) -> list[str]:
    classes = _module_classes(entry_dotted, entry_tree) if entry_tree is not None else []
    for dotted, tree in nearby:
        classes += _module_classes(dotted, tree)
    scope = sorted(classes, key=lambda c: "Data" in c.rsplit(".", 1)[-1])  # models before data modules
    for dotted, _tree in nearby:
        if not any(s.startswith(dotted + ".") for s in scope) and not JUDGE_MODULE_RE.search(dotted):
            scope.append(dotted)
    if not scope and entry_dotted:
        scope = [entry_dotted]  # nothing more precise: the entry module's own functions
    return scope[:MAX_SCOPE]
