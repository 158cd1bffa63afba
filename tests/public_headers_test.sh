#!/usr/bin/env bash
# The public headers declare the API; what implements their templates lives
# in packlock/detail/. In a header outside detail/, a `namespace detail`
# block may only forward-declare (class X; struct Y;) or comment.
#
#   public_headers_test.sh INCLUDE_DIR
set -uo pipefail
failed=0
for header in "$1"/packlock/*.hpp; do
  offending=$(awk '
    /^namespace detail \{/ { inside = 1; next }
    /^\}  \/\/ namespace detail/ { inside = 0; next }
    inside && !/^(class|struct) [A-Za-z_]+;$/ && !/^ *\/\// && !/^ *$/ { print FILENAME ":" FNR ": " $0 }
  ' "$header")
  if [[ -n $offending ]]; then
    echo "FAIL: detail code in a public header:"
    echo "$offending"
    failed=1
  fi
done
[[ $failed -eq 0 ]] && echo "public headers: only forward declarations of detail"
exit $failed
