#!/usr/bin/env bash
# Set-up, build and the whole test suite:  scripts/test.sh
#
#   BUILD_DIR   where to build (default: build/ in the checkout)
#   CTEST_ARGS  extra arguments for ctest (e.g. "-R pack_lock")
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${BUILD_DIR:-$root/build}

"$root/scripts/bootstrap.sh"
cmake -S "$root" -B "$build" -DPACKLOCK_WERROR=ON -DPACKLOCK_BUILD_TESTS=ON
cmake --build "$build" -j 2
cd "$build"
# shellcheck disable=SC2086
ctest --output-on-failure -j 2 --timeout 600 ${CTEST_ARGS:-}
