#!/usr/bin/env bash
# Sets up everything (scripts/setup.sh), then runs the Rust unit tests and the Python test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source .venv/bin/activate
cargo test --release --quiet
python -m pytest -q "$@"
