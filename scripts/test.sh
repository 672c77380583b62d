#!/usr/bin/env bash
# Runs every test: installs what they need, starts the servers, runs the workspace tests.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
eval "$(scripts/services.sh)"
cargo test --workspace --locked "$@"
