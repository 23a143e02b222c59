"""Every entry pattern (and every cli_style of argparse-cli) renders Python that compiles and passes ruff.

The rendered experiment is what users read and agents edit: it is held to the
repo's own ruff.toml. The minimal host is enough (no run needed): the
answers are given, so only rendering is exercised.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, make_host, render

RUFF = str(Path(sys.executable).parent / "ruff")
ANSWERS = {
    "argparse-space": {"entry_pattern": "argparse-cli", "cli_style": "space", "cli_args": "{lr: 3e-4, fast: true}"},
    "argparse-equals": {"entry_pattern": "argparse-cli", "cli_style": "equals", "cli_args": '{"config/a.py": true}'},
    "argparse-constants": {"entry_pattern": "argparse-cli", "cli_style": "constants", "cli_args": "{DEPTH: 4}"},
    "hydra": {"entry_pattern": "hydra", "cli_args": '["optimizer.lr=3e-4", "model=wide"]', "resume_flag_name": "ckpt"},
    "function": {"entry_pattern": "function", "cli_args": "{lr: 0.01}"},
    "custom": {"entry_pattern": "custom"},
}


@pytest.mark.parametrize("case", sorted(ANSWERS))
def test_rendered_python_compiles_and_passes_ruff(case, tmp_path):
    host = make_host("minimal", tmp_path / "host")
    data = {"entry_main_module": "minipkg.train", "metric_backend": "log", "slug": "261202-lint", **ANSWERS[case]}
    render(host, data)
    expr = host / ".autoresearch" / "261202-lint"
    files = sorted(expr.rglob("*.py"))
    assert expr / "train.py" in files and expr / "prepare.py" in files
    for path in files:
        compile(path.read_text(encoding="utf-8"), str(path), "exec")
    proc = subprocess.run(
        [RUFF, "check", "--no-cache", "--config", str(REPO / "ruff.toml"), *map(str, files)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    if case.startswith("argparse-"):
        style = case.split("-", 1)[1]
        assert f'CLI_STYLE = "{style}"' in (expr / "train.py").read_text()
