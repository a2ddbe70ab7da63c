#!/usr/bin/env bash
# Fails when an include points up the layers (docs/architecture.md).
#
#   check_layers.sh ROOT      checks ROOT/include/atask and ROOT/src
#
# A file's area is the folder under include/atask/ or src/ that holds it.
# It may include its own area and any lower layer, never a higher one, never
# a peer area of the same layer, and never the short top-level headers
# (<atask/supervisor.hpp> and the like), which exist for users only.
set -euo pipefail
root=${1:?usage: check_layers.sh ROOT}

declare -A rank=(
  [util]=0
  [core]=1
  [pool]=2 [aloop]=2 [process]=2
  [supervisor]=3
  [workers]=4 [timers]=4 [helpers]=4 [jobs]=4 [tasks]=4 [distributed]=5
  [http]=5
  [plugins]=6 [cluster]=6 [cli]=7
)

area_of() {  # path relative to include/atask or src -> area ('' for a top-level file)
  case "$1" in */*) echo "${1%%/*}" ;; *) echo "" ;; esac
}

bad=0
check() {  # file, its area, the area it includes, the include as written
  local file=$1 from=$2 to=$3 inc=$4
  if [ -z "$to" ]; then
    echo "$file: includes the top-level header $inc; include the area header instead"; bad=1; return
  fi
  if [ -z "${rank[$to]+x}" ]; then
    echo "$file: includes $inc from an unknown area '$to' (add it to ${BASH_SOURCE[0]})"; bad=1; return
  fi
  [ "$to" = "$from" ] && return
  if [ "${rank[$to]}" -ge "${rank[$from]}" ]; then
    echo "$file: area '$from' (layer ${rank[$from]}) includes $inc from area '$to' (layer ${rank[$to]})"; bad=1
  fi
}

n=0
while IFS= read -r -d '' f; do
  case "$f" in
    "$root"/include/atask/*) rel=${f#"$root"/include/atask/} ;;
    *) rel=${f#"$root"/src/} ;;
  esac
  from=$(area_of "$rel")
  [ -z "$from" ] && continue  # the umbrella and the short headers may include anything
  if [ -z "${rank[$from]+x}" ]; then echo "$f: unknown area '$from'"; bad=1; continue; fi
  n=$((n + 1))
  while IFS= read -r inc; do
    check "$f" "$from" "$(area_of "$inc")" "<atask/$inc>"
  done < <(sed -n 's|^[[:space:]]*#[[:space:]]*include[[:space:]]*<atask/\([^>]*\)>.*|\1|p' "$f")
  case "$f" in "$root"/src/*)
    while IFS= read -r inc; do
      case "$inc" in */*) check "$f" "$from" "$(area_of "$inc")" "\"$inc\"" ;; *) ;; esac
    done < <(sed -n 's|^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*|\1|p' "$f")
  esac
done < <(find "$root/include/atask" "$root/src" -type f \( -name '*.hpp' -o -name '*.cpp' \) -print0 2>/dev/null | sort -z)

if [ "$n" -eq 0 ]; then echo "no files found under $root/include/atask or $root/src"; exit 1; fi
if [ "$bad" -ne 0 ]; then echo "layers: FAILED"; exit 1; fi
echo "layers: $n files, every include points down"
