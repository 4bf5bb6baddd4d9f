#!/usr/bin/env bash
# Create .venv and install ffd-edge with the extras for training, calibration, scale-out and tests.
# torch is pinned to 2.13.0 (the CPU wheel on this machine); TensorRT/pycuda ([gpu]) are for GPU hosts only.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[[ -x .venv/bin/python ]] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e ".[dev]"
