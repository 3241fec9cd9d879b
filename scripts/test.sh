#!/usr/bin/env bash
# Sets up everything (scripts/setup.sh), then runs the lint gates, the Rust unit tests and the
# Python test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
# Each phase prints how long it took, to see where a slow CI run spends its time.
phase() {
    local name=$1 start=$SECONDS
    shift
    "$@"
    echo "test.sh: $name took $((SECONDS - start)) s (total $SECONDS s)"
}
phase set-up bash scripts/setup.sh
source .venv/bin/activate
rustup component add rustfmt clippy >/dev/null 2>&1 || true
# The Rust gates use the features scripts/setup.sh built the extension with, so they reuse its
# compiled libtorch bindings: torch-sys compiles its C++ once per feature set, about 3 minutes on
# 2 cores, and a second set (no features) made CI compile it twice. Clippy also checks `python`
# alone, what a released wheel compiles (crash-tests changes only this crate: seconds).
FEATURES=python,crash-tests
lint() {
    cargo fmt --check
    cargo clippy --release --quiet --all-targets --features "$FEATURES" -- -D warnings
    cargo clippy --release --quiet --all-targets --features python -- -D warnings
    ruff check python tests bench scripts
    ruff format --check python tests bench scripts
    # The web page's script parses (it is run for real by tests/test_web.py).
    if command -v node > /dev/null; then node --check python/ugatit_rs/web/app.js; fi
}
phase lint lint
# The extension finds libtorch relative to site-packages (build.rs); the test binaries, in
# target/, find it through LD_LIBRARY_PATH.
TORCH_LIB=$(python -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
LD_LIBRARY_PATH="$TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" phase "cargo test" cargo test --release --quiet --features "$FEATURES"
phase pytest python -m pytest -q --durations=15 "$@"
