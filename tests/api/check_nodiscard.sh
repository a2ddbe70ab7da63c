#!/usr/bin/env bash
# Convention (c): every call in the DROP block of nodiscard_misuse.cpp drops
# a result that owns something, and each one must draw an unused-result
# warning; the control (DROP=0) keeps them all and must compile with
# -Werror=unused-result.
# Usage: check_nodiscard.sh <c++ compiler> <include dir>
set -u
cxx=$1 inc=$2
src=$(dirname "$0")/nodiscard_misuse.cpp
flags=(-std=c++20 -fsyntax-only -DBOOST_ASIO_SEPARATE_COMPILATION -I"$inc")
fail=0

out=$("$cxx" "${flags[@]}" -DDROP=1 -Wunused-result "$src" 2>&1)
# The lines of the DROP block that are calls (not comments).
calls=$(awk '/^#if DROP/{on=1; next} /^#else/{on=0} on && $0 !~ /^ *\/\// {print NR}' "$src")
[ -n "$calls" ] || { echo "no calls found in the DROP block"; exit 1; }
for n in $calls; do
  line=$(sed -n "${n}p" "$src" | sed 's/^ *//')
  if grep -Eq "nodiscard_misuse\.cpp:${n}:[0-9]+: warning: ignoring return(ed)? value" <<<"$out"; then
    echo "warns: $line"
  else
    echo "NO WARNING for line $n: $line"
    fail=1
  fi
done

if ! "$cxx" "${flags[@]}" -DDROP=0 -Werror=unused-result "$src"; then
  echo "the control (every result kept) does not compile"
  fail=1
fi
[ $fail = 0 ] && echo "every dropped result warns" || { echo "$out" | grep -E 'warning|error' | head -40; echo "nodiscard: FAILED"; }
exit $fail
