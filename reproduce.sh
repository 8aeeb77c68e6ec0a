#!/usr/bin/env bash
# Install into .venv and reproduce the paper's figures into a folder (default: results/).
# Usage: bash reproduce.sh [OUT] [--quick] [--force]
set -euo pipefail
cd "$(dirname "$0")"
out="${1:-results}"
shift || true
bash scripts/setup.sh plot
exec .venv/bin/superposition reproduce intro --out "$out" "$@"
