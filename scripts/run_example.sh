#!/usr/bin/env bash
# The main job on the bundled example: scaffold an experiment into a copy of
# examples/tinyproj and run a few real iterations (baseline, better, crash).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
export WANDB_MODE=offline
export PATH="$PWD/.venv/bin:$PATH"  # the example project trains with this environment, as if activated
exec .venv/bin/python examples/run_example.py "$@"
