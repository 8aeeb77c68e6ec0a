#!/usr/bin/env bash
# Create .venv (if needed) and install the project into it, torch pinned to the CPU wheel by
# constraints.txt. Usage: scripts/setup.sh [EXTRAS], e.g. scripts/setup.sh dev
# Re-running is cheap: the install is skipped while pyproject.toml and constraints.txt are unchanged.
# Then the CPU kernels are compiled into numba's cache (`superposition warmup`: up to a minute the
# first time, a few seconds once cached), so no later run waits for the compiler.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
stamp=".venv/.installed-${extras:-base}"
want="$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
    spec="."
    [ -n "$extras" ] && spec=".[$extras]"
    .venv/bin/python -m pip install --quiet --upgrade pip >/dev/null 2>&1 || true
    # the distribution was called `superposition` before it became `toy-superposition`
    .venv/bin/python -m pip uninstall --quiet --yes superposition >/dev/null 2>&1 || true
    .venv/bin/python -m pip install --quiet -c constraints.txt -e "$spec"
    echo "$want" > "$stamp"
fi
.venv/bin/superposition warmup
