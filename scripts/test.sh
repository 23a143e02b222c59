#!/usr/bin/env bash
# The test suite: real Copier renders into fixture host projects, real CPU training.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
export WANDB_MODE=offline WANDB_SILENT=true
exec .venv/bin/python -m pytest -q "$@"
