#!/usr/bin/env bash
# Builds the libFuzzer targets with clang and runs each for a bounded time,
# starting from the seed corpus committed in fuzz/corpus/TARGET. What the
# fuzzer finds goes to a scratch corpus (build-fuzz/corpus), never into the
# tree; a crash leaves its input in build-fuzz/ and fails the script.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]   (default 60)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${BUILD_DIR:-$root/build-fuzz}
seconds=${1:-60}
[[ $seconds =~ ^[0-9]+$ ]] || { echo "fuzz.sh: seconds must be a whole number: $seconds" >&2; exit 64; }

"$root/scripts/bootstrap.sh" clang libclang-rt-14-dev
cmake -S "$root" -B "$build" -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DPACKLOCK_FUZZ=ON -DPACKLOCK_BUILD_TESTS=OFF >/dev/null
targets=()
for dir in "$root"/fuzz/corpus/*/; do targets+=("$(basename "$dir")"); done
cmake --build "$build" -j 2 --target "${targets[@]/#/fuzz_}"

for target in "${targets[@]}"; do
  corpus=$build/corpus/$target
  mkdir -p "$corpus"
  echo "fuzzing $target for ${seconds}s" >&2
  (cd "$build" && "./fuzz/fuzz_$target" -max_total_time="$seconds" -print_final_stats=1 \
     "$corpus" "$root/fuzz/corpus/$target" 2>&1 | grep -E '^(stat::number_of_executed_units|Done|==|SUMMARY)' || true)
  # libFuzzer's exit status is lost in the pipe: a crash leaves crash-* files.
  if compgen -G "$build/crash-*" >/dev/null || compgen -G "$build/leak-*" >/dev/null; then
    echo "fuzz.sh: $target crashed; inputs in $build" >&2
    exit 1
  fi
done
echo "fuzz.sh: ${targets[*]}: ${seconds}s each, no crash" >&2
