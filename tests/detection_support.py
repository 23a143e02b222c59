"""Helpers shared by the detection tests: fixture hosts as a fresh clone has them, small
synthetic projects, and the check that every detected default passes the interview's rule."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from conftest import HOSTS, REPO, git, make_host

sys.path.insert(0, str(REPO / "extensions"))
import answer_rules  # noqa: E402
from defaults import KEYS, Detected  # noqa: E402


def source_of(name: str) -> Path:
    return REPO / "examples" / "tinyproj" if name == "tinyproj" else HOSTS / name


def clean_copy(name: str, dest: Path) -> Path:
    """The host as a fresh clone has it: sources only, a git repository."""
    if name == "tinyproj":
        shutil.copytree(source_of(name), dest, ignore=shutil.ignore_patterns("__pycache__", "checkpoints"))
        git(dest, "init", "-q")
        git(dest, "add", "-A")
        git(dest, "commit", "-qm", "host")
        return dest
    return make_host(name, dest)


def write(root: Path, files: dict) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def assert_valid(d: Detected, root: Path) -> None:
    """Every default passes the interview's own rule for its key."""
    for key in KEYS:
        if key == "entry_main_module" and d.entry_pattern == "custom":
            continue  # not asked for the custom pattern
        raw = d.cli_args_for(d.entry_pattern) if key == "cli_args" else getattr(d, key)
        value = answer_rules.parse_value(key, raw)
        assert answer_rules.check(key, value, root=root, entry_pattern=d.entry_pattern) == "", (key, raw)
    assert not [n for n in d.notes if "dropped" in n], d.notes
