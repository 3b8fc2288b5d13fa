#!/usr/bin/env bash
# The whole test suite: installs what the tests need, runs every test target, and closes with one
# summary line ("N passed, N failed") over all test binaries.
set -uo pipefail
cd "$(dirname "$0")/.."
./scripts/test-deps.sh || exit 1
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --all-targets "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
read -r passed failed < <(grep -E '^test result: ' "$log" \
  | sed -E 's/.* ([0-9]+) passed; ([0-9]+) failed.*/\1 \2/' \
  | awk '{p += $1; f += $2} END {print p + 0, f + 0}')
echo
echo "tests: ${passed} passed, ${failed} failed"
exit "$status"
