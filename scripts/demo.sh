#!/usr/bin/env bash
# Sets up everything (scripts/setup.sh), then runs the main job: `ugatit-rs demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source .venv/bin/activate
ugatit-rs demo "$@"
