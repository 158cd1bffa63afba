#!/usr/bin/env bash
# Runs the benchmarks of SPEC section 5 that exist so far, each figure next
# to its baseline measured in the same run, and prints the table.
#
#   scripts/bench.sh [--json FILE] [--only NAME[,NAME...]]
#
# NAME is one of async_waiters, counter, handoff, holds, run_true,
# uncontended, wait_cpu. Exits 1 when a figure misses its bar. Takes about
# a minute (wait_cpu alone waits 10 s).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${BUILD_DIR:-$root/build}

"$root/scripts/bootstrap.sh"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j 2 --target packlock_bench >/dev/null
echo "machine: $(nproc) cores, $(uname -r), $(date -u +%Y-%m-%d)" >&2
exec "$build/bench/packlock_bench" "$@"
