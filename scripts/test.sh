#!/usr/bin/env bash
# Sets up everything (scripts/setup.sh), then runs the lint gates, the Rust unit tests and the
# Python test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source .venv/bin/activate
rustup component add rustfmt clippy >/dev/null 2>&1 || true
cargo fmt --check
cargo clippy --release --quiet --all-targets -- -D warnings
cargo clippy --release --quiet --all-targets --features python -- -D warnings
ruff check python tests bench scripts
ruff format --check python tests bench scripts
# The web page's script parses (it is run for real by tests/test_web.py).
if command -v node > /dev/null; then node --check python/ugatit_rs/web/app.js; fi
cargo test --release --quiet
python -m pytest -q --durations=15 "$@"
