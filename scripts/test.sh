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
lint() {
    cargo fmt --check
    cargo clippy --release --quiet --all-targets -- -D warnings
    cargo clippy --release --quiet --all-targets --features python -- -D warnings
    ruff check python tests bench scripts
    ruff format --check python tests bench scripts
    # The web page's script parses (it is run for real by tests/test_web.py).
    if command -v node > /dev/null; then node --check python/ugatit_rs/web/app.js; fi
}
phase lint lint
phase "cargo test" cargo test --release --quiet
phase pytest python -m pytest -q --durations=15 "$@"
