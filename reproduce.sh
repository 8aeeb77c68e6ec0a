#!/usr/bin/env bash
# Install into .venv and reproduce the whole paper into a folder (default: results/), ending with
# results/report.html. Usage: bash reproduce.sh [OUT] [--quick] [--force]
set -euo pipefail
cd "$(dirname "$0")"
out="${1:-results}"
shift || true
bash scripts/setup.sh plot
exec .venv/bin/superposition reproduce --all --out "$out" "$@"
