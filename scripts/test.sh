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
# Arguments (a file, -k, -x, ...): one plain pytest, as typed. None: the whole suite on two
# pytest-xdist workers, then the tests marked `serial` alone (tests/conftest.py says which and why).
# Two workers, not more: that is what the suite's budgets and groups were checked with.
if [ $# -gt 0 ] || [ "$(nproc)" -lt 2 ]; then
  exec .venv/bin/python -m pytest -q "$@"
fi
parallel=0 serial=0
.venv/bin/python -m pytest -q -n 2 --dist worksteal -m "not serial" || parallel=$?
.venv/bin/python -m pytest -q -m serial || serial=$?
exit $((parallel ? parallel : serial))
