#!/usr/bin/env bash
# Runs the dashboard browser test against a demo binary (or --url <base-url>).
# Usage: tests/http/browser/run.sh <demo-binary> [--screenshot file.png]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
[ $# -ge 1 ] || { echo "usage: $0 <demo-binary> | --url <base-url>" >&2; exit 2; }
args=()
for a in "$@"; do  # the test runs in this folder: make relative paths (binary, screenshot) absolute
  [[ "$a" == /* || "$a" == -* || "$a" == *://* ]] || a="$PWD/$a"
  args+=("$a")
done
cd "$here"
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules ]; then
  npm ci --silent --no-audit --no-fund
  touch node_modules
fi
exec node dashboard.test.mjs "${args[@]}"
