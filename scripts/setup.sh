#!/usr/bin/env bash
# Create .venv and install ffd-edge with the extras for training, calibration, scale-out, PyAV (real-codec
# test clips) and tests.
# torch is pinned to 2.13.0 (the CPU wheel on this machine); TensorRT/pycuda ([gpu]) are for GPU hosts only.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[[ -x .venv/bin/python ]] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q -e ".[dev]"

# TensorRT binding wheels for tests/test_trt_api.py (API conformance without a GPU): their
# tensorrt.so string tables list every TensorRT Python name of 10.3 (JetPack 6) and 11.4 (desktop).
# ~1 MB each, not installed, only read. Idempotent; a failure (no network) only skips that test.
TRT_WHEELS=.cache/trt-bindings
mkdir -p "$TRT_WHEELS"
for spec in "tensorrt-cu12-bindings==10.3.0" "tensorrt-cu13-bindings==11.4.0.106"; do
  stem=$(echo "${spec%%==*}" | tr - _)-"${spec##*==}"
  if ! ls "$TRT_WHEELS/$stem"-*.whl >/dev/null 2>&1; then
    .venv/bin/python -m pip download -q --no-deps "$spec" -d "$TRT_WHEELS" >/dev/null 2>&1 \
      || echo "setup: could not download $spec (offline?); tests/test_trt_api.py will skip" >&2
  fi
done

# Debian's Chromium and its driver for the headless-browser tests (tests/test_live_view.py: the live view of
# `ffd detect --serve`). Idempotent; as root or with password-less sudo; a failure (no apt, no root, offline)
# only skips those tests, with the reason.
apt_install() {
  local sudo=()
  [[ $(id -u) -eq 0 ]] || sudo=(sudo -n)
  command -v apt-get >/dev/null 2>&1 || return 1
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null 2>&1 \
    || { "${sudo[@]}" apt-get update -qq >/dev/null 2>&1 \
         && "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null 2>&1; }
}
if ! { command -v chromium && command -v chromedriver; } >/dev/null 2>&1; then
  apt_install chromium chromium-driver \
    || echo "setup: could not install chromium + chromium-driver (no apt, root or network?); browser tests will skip" >&2
fi
