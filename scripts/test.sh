#!/usr/bin/env bash
# Install (scripts/setup.sh), lint (ruff: the rules and line length are in pyproject.toml) and run the whole
# test suite, as CI does (.ci/run calls this file).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
exec .venv/bin/python -m pytest "$@"
