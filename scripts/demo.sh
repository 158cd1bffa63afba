#!/usr/bin/env bash
# Set-up, build, and a short real demonstration:  scripts/demo.sh
#
# Two processes contend for one pack and take turns; util-linux flock(1)
# sees packlock's lock, and packlock waits for flock(1)'s.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${BUILD_DIR:-$root/build}

"$root/scripts/bootstrap.sh"
cmake -S "$root" -B "$build" >/dev/null
cmake --build "$build" -j 2 --target packlock-example-hold >/dev/null

hold=$build/examples/packlock-example-hold
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
pack=$work/pack

say() { printf '\n== %s\n' "$*"; }

say "two holders start together on $pack; the second waits for the first"
"$hold" "$pack" 1 &
"$hold" "$pack" 1 &
sleep 0.3
if flock -n "$pack/.grex-lock" true; then
  echo "flock -n: the pack was free (unexpected)"
else
  echo "flock -n: the pack is locked, as packlock holds it"
fi
wait

say "flock(1) holds the pack for 1 s; packlock waits for it"
flock "$pack/.grex-lock" sleep 1 &
sleep 0.2
"$hold" "$pack" 0
wait

say "shared holders share; flock -s gets in beside them, flock -x does not"
"$hold" "$pack" 1 shared &
"$hold" "$pack" 1 shared &
sleep 0.3
flock -s -n "$pack/.grex-lock" true && echo "flock -s -n: got a shared lock beside them"
flock -x -n "$pack/.grex-lock" true || echo "flock -x -n: refused, the pack is shared-locked"
wait
