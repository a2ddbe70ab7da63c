#!/usr/bin/env bash
# Runs the benchmarks of a baseline commit and of the working tree back to
# back on this machine, alternating (base, head, base, head, ...), and prints
# every figure of the JSON lines side by side with head/base.
# "Must not get slower" claims are checked this way (docs/performance.md).
#
# Usage: scripts/bench_compare.sh BASE_REV [ROUNDS] [BENCH...]
#   BASE_REV  a commit; its benchmarks are built in a worktree under
#             build-compare/base (kept, so a second run reuses it)
#   ROUNDS    alternations per benchmark (default 2)
#   BENCH     bench_pool bench_workers bench_process bench_http (default: all)
# Output: build-compare/<bench>.<base|head>.<round>.txt and the table on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
base_rev=${1:?usage: scripts/bench_compare.sh BASE_REV [ROUNDS] [BENCH...]}
rounds=${2:-2}
shift $(( $# >= 2 ? 2 : 1 ))
benches=("$@")
[ ${#benches[@]} -gt 0 ] || benches=(bench_pool bench_workers bench_process bench_http)

bash scripts/setup.sh
out=build-compare
mkdir -p "$out"
# ATASK_BASE_TREE: an existing checkout of BASE_REV to build in instead.
wt=${ATASK_BASE_TREE:-$out/base}
if [ ! -d "$wt" ]; then
  git worktree add --detach "$wt" "$base_rev" >/dev/null
elif [ -z "${ATASK_BASE_TREE:-}" ]; then
  git -C "$wt" checkout --detach -q "$base_rev"
fi
[ "$(git -C "$wt" rev-parse HEAD)" = "$(git rev-parse "$base_rev^{commit}")" ] ||
  { echo "bench_compare: $wt is not at $base_rev" >&2; exit 2; }
for tree in "$wt" .; do  # the same preset (build type, flags) on both sides
  (cd "$tree" && cmake --preset default >/dev/null && cmake --build --preset default --target "${benches[@]}" >/dev/null)
done

for b in "${benches[@]}"; do
  for r in $(seq 1 "$rounds"); do
    for side in base head; do
      dir=$([ $side = base ] && echo "$wt" || echo .)
      echo "== $b $side round $r" >&2
      "$dir/build/benchmarks/$b" > "$out/$b.$side.$r.txt" 2>&1
    done
  done
done
python3 scripts/bench_compare.py "$out" "${benches[@]}"
