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
ruff check python tests bench
ruff format --check python tests bench
cargo test --release --quiet
python -m pytest -q "$@"
