#!/usr/bin/env bash
# Sets everything up and runs the whole test suite.
#   scripts/test.sh            plain build (RelWithDebInfo) in build/
#   scripts/test.sh asan       AddressSanitizer + UBSan in build-asan/
#   scripts/test.sh tsan       ThreadSanitizer in build-tsan/
# Fails on any failed test or sanitizer report.
set -euo pipefail
cd "$(dirname "$0")/.."
preset=${1:-default}
case "$preset" in default|asan|tsan) ;; *) echo "usage: scripts/test.sh [default|asan|tsan]" >&2; exit 2 ;; esac

bash scripts/setup.sh
cmake --preset "$preset" >/dev/null
cmake --build --preset "$preset"
# Sanitizer runtimes: fail the test on the first report.
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:halt_on_error=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:suppressions=$PWD/tests/tsan.supp"
ctest --preset "$preset"
