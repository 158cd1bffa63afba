#!/usr/bin/env bash
# Runs the benchmarks of SPEC section 5 that exist so far, each figure next
# to its baseline measured in the same run, and prints the table.
#
#   scripts/bench.sh [--json FILE] [--only NAME[,NAME...]] [--plot PNG]
#
# --plot PNG draws the handoff latencies of packlock and of the kernel's
# blocking flock as histograms (installs gnuplot when it is missing).
#
# NAME is one of async_waiters, cluster, counter, drain, handoff, holds,
# run_true, uncontended, wait_cpu, waiting_threads. Exits 1 when a figure
# misses its bar. Takes a few minutes (wait_cpu alone waits 10 s; cluster
# starts an etcd of its own).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${BUILD_DIR:-$root/build}

"$root/scripts/bootstrap.sh"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j 2 --target packlock_bench >/dev/null
args=() plot=
while [[ $# -gt 0 ]]; do
  case $1 in
    --plot) plot=${2:?--plot needs a file}; shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done
echo "machine: $(nproc) cores, $(uname -r), $(date -u +%Y-%m-%d)" >&2
if [[ -z $plot ]]; then
  exec "$build/bench/packlock_bench" "${args[@]}"
fi

"$root/scripts/bootstrap.sh" gnuplot-nox
samples=$(mktemp)
trap 'rm -f "$samples"' EXIT
status=0
PACKLOCK_BENCH_HANDOFF_SAMPLES=$samples "$build/bench/packlock_bench" "${args[@]}" || status=$?
[[ -s $samples ]] || { echo "bench.sh: --plot needs the handoff measurement" >&2; exit 64; }
gnuplot <<GNUPLOT
set terminal png size 900,500
set output '$plot'
set title 'Handoff: holder releases -> waiter in another process owns'
set xlabel 'microseconds (bins of 2 us, up to 200 us)'
set ylabel 'rounds'
set style fill transparent solid 0.5
set xrange [0:200]
bin(x) = 2 * floor(x / 2) + 1
plot '$samples' using (stringcolumn(1) eq 'kernel' ? bin(\$2) : NaN):(1) smooth frequency with boxes title 'blocking flock(2)', \
     '$samples' using (stringcolumn(1) eq 'packlock' ? bin(\$2) : NaN):(1) smooth frequency with boxes title 'packlock'
GNUPLOT
echo "bench.sh: handoff histogram in $plot" >&2
exit $status
