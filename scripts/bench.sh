#!/usr/bin/env bash
# Sets everything up and runs the benchmarks: a table per benchmark and one
# JSON line each (bench_pool, bench_workers, bench_queue, bench_process, then bench_http,
# which drives the HTTP control plane with wrk).
# `--quick` for a short run of each.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake --preset default >/dev/null
cmake --build --preset default --target bench_pool bench_workers bench_queue bench_process bench_http
./build/benchmarks/bench_pool "$@"
./build/benchmarks/bench_workers "$@"
./build/benchmarks/bench_queue "$@"
./build/benchmarks/bench_process "$@"
quick=()
for a in "$@"; do [ "$a" = "--quick" ] && quick=(--duration 2 --rounds 1); done
./build/benchmarks/bench_http "${quick[@]}"
