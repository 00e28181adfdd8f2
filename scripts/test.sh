#!/usr/bin/env bash
# Runs the uvu suites through tsx and ends with one plain "N passed, N failed" line.
# Usage: scripts/test.sh [PATTERN]   (a regex on test file names, default every *.test.ts)
set -uo pipefail
cd "$(dirname "$0")/.."
pattern=${1:-'\.test\.ts$'}
log=$(mktemp "${TMPDIR:-/tmp}/usmld-test.XXXXXX")
trap 'rm -f "$log"' EXIT
# A hung test must fail the run in minutes, not eat CI's whole budget: the suite takes well under
# a minute here, so 20 minutes (TEST_TIMEOUT) is only ever reached by a hang.
NO_COLOR=1 timeout --kill-after=10 "${TEST_TIMEOUT:-1200}" node_modules/.bin/tsx node_modules/uvu/bin.js test "$pattern" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
  echo "scripts/test.sh: the suite did not finish within ${TEST_TIMEOUT:-1200} s (hung in the last file named above)" >&2
fi
total=$(grep -E '^\s*Total:' "$log" | tail -1 | grep -oE '[0-9]+' || echo 0)
passed=$(grep -E '^\s*Passed:' "$log" | tail -1 | grep -oE '[0-9]+' || echo 0)
skipped=$(grep -E '^\s*Skipped:' "$log" | tail -1 | grep -oE '[0-9]+' || echo 0)
# uvu counts a skipped test (test.skip) in Skipped only, not in Total.
failed=$(( ${total:-0} - ${passed:-0} ))
if [ "$status" -ne 0 ] && [ "$failed" -le 0 ]; then failed=1; fi
skips=$(grep -c '^SKIP ' "$log" || true)
echo "uvu: ${passed:-0} passed, ${failed} failed, ${skips} skipped"
exit "$status"
