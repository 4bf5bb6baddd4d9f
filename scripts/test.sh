#!/usr/bin/env bash
# Install (scripts/setup.sh) and run the whole test suite, as CI does (.ci/run calls this file).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
