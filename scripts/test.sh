#!/usr/bin/env bash
# The test suite: real Copier renders into fixture host projects, real CPU training.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
# A real one-node Slurm for tests/test_slurm.py (root + apt-get; elsewhere those tests skip, saying why)
scripts/install-slurm.sh || echo "install-slurm.sh failed: the Slurm tests will skip" >&2
# Lint and format are part of the suite (ruff.toml): a finding fails it like a test.
.venv/bin/ruff check --quiet .
.venv/bin/ruff format --check --quiet .
export WANDB_MODE=offline WANDB_SILENT=true
exec .venv/bin/python -m pytest -q "$@"
