#!/usr/bin/env bash
# Set-up, build and the whole test suite:  scripts/test.sh
#
#   scripts/test.sh [--sanitize LIST]
#
#   --sanitize LIST  build and test with these sanitizers, in a build
#                    directory of their own (build-LIST): "address,undefined"
#                    or "thread"
#   BUILD_DIR        where to build (default: build/ in the checkout, or
#                    build-LIST with --sanitize)
#   CTEST_ARGS       extra arguments for ctest (e.g. "-R pack_lock")
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

sanitize=
while [[ $# -gt 0 ]]; do
  case $1 in
    --sanitize) sanitize=${2:?--sanitize needs a list}; shift 2 ;;
    --sanitize=*) sanitize=${1#*=}; shift ;;
    -h|--help) sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "test.sh: unknown argument: $1" >&2; exit 64 ;;
  esac
done
build=${BUILD_DIR:-$root/build${sanitize:+-${sanitize//,/-}}}

"$root/scripts/bootstrap.sh"
cmake -S "$root" -B "$build" -DPACKLOCK_WERROR=ON -DPACKLOCK_BUILD_TESTS=ON \
  -DPACKLOCK_SANITIZE="$sanitize"
cmake --build "$build" -j 2
cd "$build"
if [[ -n $sanitize ]]; then
  # Any report fails the test that triggered it.
  export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}
  export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
  # die_after_fork=0: forked test children take locks, which starts their
  # heartbeat thread.
  export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1:die_after_fork=0}
fi
# shellcheck disable=SC2086
ctest --output-on-failure -j 2 --timeout 600 ${CTEST_ARGS:-}
