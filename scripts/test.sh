#!/usr/bin/env bash
# The test command (README, .ci/run): sets the machine up (idempotent), then lint, types and tests.
# Extra arguments go to pytest, e.g. scripts/test.sh -k scan -x
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --with-test-tools
export PATH="$PWD/.venv/bin:$PATH"
echo "[test] ruff"; ruff check leakhunt tests scripts
echo "[test] ruff format --check"; ruff format --check leakhunt tests scripts
echo "[test] mypy --strict"; mypy
echo "[test] pytest"
pytest -p no:cacheprovider -ra "$@"
