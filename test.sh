#!/usr/bin/env bash
# Install into .venv (with the dev tools) and run the whole check: ruff, mypy, the docs build and
# the test suite.
# Usage: bash test.sh [extra pytest arguments]
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup.sh dev
# The report's browser test drives Debian's chromium through Playwright (never `playwright install`:
# no browser downloads). Install it when it is missing and we may (root on Debian, as in CI).
if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "== installing chromium (for the report's browser test)"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq && apt-get install -y -qq chromium >/dev/null
    else
        echo "test.sh: the browser test needs Debian's chromium; install it with:" \
            "sudo apt-get install chromium" >&2
        exit 1
    fi
fi
echo "== ruff"
.venv/bin/ruff check src tests benchmarks
echo "== mypy"
.venv/bin/mypy
echo "== docs (mkdocs, warnings are errors)"
.venv/bin/python -m mkdocs build --strict --quiet --site-dir "$(mktemp -d)"
echo "== pytest"
# pytest exits 5 when it collected no test: that is a failure here too (set -e propagates it)
.venv/bin/python -m pytest "$@"
