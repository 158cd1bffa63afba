#!/usr/bin/env bash
# Every manual page renders without a single warning under groff, and under
# mandoc's linter when it is installed.
set -uo pipefail
status=0
for page in "$@"; do
  out=$(groff -ww -z -man "$page" 2>&1)
  [[ -z $out ]] || { echo "groff: $page: $out"; status=1; }
  if command -v mandoc >/dev/null; then
    out=$(mandoc -Tlint -W warning "$page" 2>&1)
    [[ -z $out ]] || { echo "mandoc: $out"; status=1; }
  fi
done
[[ $status -eq 0 ]] && echo "$# pages clean"
exit $status
