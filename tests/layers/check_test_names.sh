#!/bin/bash
# A doctest case whose name holds a ';' never runs under CTest: CMake splits
# the name into two list items, each becomes a "test" whose --test-case
# filter matches nothing, and doctest passes with no case run. Fails listing
# such names.
set -euo pipefail
root=${1:?usage: check_test_names.sh SOURCE_DIR}
bad=$(grep -rhoPz 'TEST_CASE\(\s*"[^"]*;[^"]*"' "$root/tests" | tr '\0' '\n' || true)
if [ -n "$bad" ]; then
  echo "test case names with ';' (CTest would split them and run nothing):"
  echo "$bad"
  exit 1
fi
echo "no test case name holds a ';'"
