#!/usr/bin/env bash
# Runs every test: installs what they need, starts the servers, runs the workspace tests,
# and ends with one summary line ("tests: N passed, M failed").
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
eval "$(scripts/services.sh)"
log=$(mktemp)
status=0
cargo test --workspace --all-targets --locked --no-fail-fast "$@" 2>&1 | tee "$log" || status=$?
passed=$(awk '/^test result:/ {for (i = 1; i <= NF; i++) if ($i == "passed;") s += $(i-1)} END {print s + 0}' "$log")
failed=$(awk '/^test result:/ {for (i = 1; i <= NF; i++) if ($i == "failed;") s += $(i-1)} END {print s + 0}' "$log")
rm -f "$log"
echo "tests: $passed passed, $failed failed"
exit "$status"
