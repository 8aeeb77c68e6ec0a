#!/usr/bin/env bash
# Install into .venv (with the dev tools) and run the whole check: ruff, mypy and the test suite.
# Usage: bash test.sh [extra pytest arguments]
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup.sh dev
echo "== ruff"
.venv/bin/ruff check src tests benchmarks
echo "== mypy"
.venv/bin/mypy
echo "== pytest"
# pytest exits 5 when it collected no test: that is a failure here too (set -e propagates it)
.venv/bin/python -m pytest "$@"
