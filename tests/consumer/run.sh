#!/usr/bin/env bash
# Installs the atask build at $1 into a scratch prefix, then configures,
# builds and runs the consumer project against it with find_package(atask).
set -euo pipefail
build=$1
src=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cmake --install "$build" --prefix "$work/prefix" 
cmake -S "$src" -B "$work/build" -G Ninja -DCMAKE_PREFIX_PATH="$work/prefix" 
cmake --build "$work/build" 
"$work/build/consumer"
