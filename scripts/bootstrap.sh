#!/usr/bin/env bash
# Create (or reuse) .venv with everything the example and the tests need.
# Idempotent: a second call with everything installed takes about a second.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.bootstrap-$(cat requirements-dev.txt scripts/bootstrap.sh | sha1sum | cut -c1-12)
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install -q --disable-pip-version-check torch==2.13.0
  echo "torch==2.13.0" > .venv/torch-pin.txt
  .venv/bin/python -m pip install -q --disable-pip-version-check -c .venv/torch-pin.txt -r requirements-dev.txt
  touch "$stamp"
fi
