#!/usr/bin/env bash
# Every manual page renders without a single warning under groff, and under
# mandoc's linter when it is installed, and every reference to one of
# packlock's own pages names a page that exists.
set -uo pipefail
status=0
declare -A present=()
for page in "$@"; do
  name=$(basename "$page")
  present[${name%.*}(${name##*.})]=1
done
for page in "$@"; do
  out=$(groff -ww -z -man "$page" 2>&1)
  [[ -z $out ]] || { echo "groff: $page: $out"; status=1; }
  if command -v mandoc >/dev/null; then
    out=$(mandoc -Tlint -W warning "$page" 2>&1)
    [[ -z $out ]] || { echo "mandoc: $out"; status=1; }
  fi
  # ".BR packlock\-run (1)," -> packlock-run(1)
  while read -r reference; do
    [[ -n ${present[$reference]:-} ]] || { echo "$page: refers to missing page $reference"; status=1; }
  done < <(sed -n 's/^\.BR \(\(lib\)\{0,1\}packlock[^ ]*\) (\([0-9]\)).*/\1(\3)/p' "$page" | sed 's/\\-/-/g')
done
[[ $status -eq 0 ]] && echo "$# pages clean"
exit $status
