#!/usr/bin/env bash
# Sets everything up and runs the benchmarks: a table per benchmark and one
# JSON line each. `--quick` for a short run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake --preset default >/dev/null
cmake --build --preset default --target bench_pool
./build/benchmarks/bench_pool "$@"
