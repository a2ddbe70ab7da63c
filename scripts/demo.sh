#!/usr/bin/env bash
# Sets everything up, builds, and runs the demo service (Ctrl-C stops it
# early; it also stops by itself). Extra arguments go to the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake --preset default >/dev/null
cmake --build --preset default --target atask_demo
exec ./build/examples/atask_demo "$@"
