#!/usr/bin/env bash
# The fuzz suite (tests/test_fuzz.py) with many examples per test: generated command lines, TOML
# config and sweep files, corrupted run folders and explorer request bodies. Usage:
#   scripts/fuzz.sh [EXAMPLES]   (default 200; extra arguments go to pytest)
set -euo pipefail
cd "$(dirname "$0")/.."
examples="${1:-200}"
shift || true
python=.venv/bin/python  # test.sh's environment; otherwise the python on the path
[ -x "$python" ] || python=python
SUPERPOSITION_FUZZ_EXAMPLES="$examples" exec "$python" -m pytest tests/test_fuzz.py -q -p no:cacheprovider "$@"
