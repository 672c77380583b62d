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

# The Helm chart: rendered with the real Helm SDK, checked by pytest.
plog=$(mktemp)
pstatus=0
python3 -m pytest -q charts/tests 2>&1 | tee "$plog" || pstatus=$?
summary='/^=* *[0-9]+ (passed|failed|errors?|skipped|deselected|xfailed|xpassed)/'
ppassed=$(awk "$summary"' {p = 0; for (i = 2; i <= NF; i++) if ($i ~ /^passed/) p = $(i-1)} END {print p + 0}' "$plog")
pfailed=$(awk "$summary"' {f = 0; for (i = 2; i <= NF; i++) if ($i ~ /^(failed|errors?)/) f += $(i-1)} END {print f + 0}' "$plog")
rm -f "$plog"
# A run that failed without a summary (collection error, no tests) still counts as a failure.
if [ "$pstatus" -ne 0 ] && [ "$pfailed" -eq 0 ]; then pfailed=1; fi

echo "tests: $((passed + ppassed)) passed, $((failed + pfailed)) failed"
if [ "$status" -ne 0 ]; then exit "$status"; fi
exit "$pstatus"
