#!/usr/bin/env bash
# Set-up, build, and a short real demonstration:  scripts/demo.sh
#
# Two `packlock run` jobs contend for one pack and take turns; while the
# first holds it, `packlock probe` and `packlock status` show who holds it
# and who waits; util-linux flock(1) and packlock exclude each other.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${BUILD_DIR:-$root/build}

"$root/scripts/bootstrap.sh"
cmake -S "$root" -B "$build" >/dev/null
cmake --build "$build" -j 2 --target packlock_cli >/dev/null

export PATH=$build/tools:$PATH
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
mkfifo started finish job2.err

# job1 works until it is told to finish; it says when it has started.
cat >job1 <<'JOB'
#!/bin/sh
echo "job 1: holding the pack, working..."
echo >started; read -r _ <finish
echo "job 1: done"
JOB
printf '#!/bin/sh\necho "job 2: my turn, job 1 has finished"\n' >job2
chmod +x job1 job2

say() { printf '\n== %s\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@" || echo "(exit status $?)"; }

say "job 1 takes the pack:  packlock run srv/pack -- ./job1"
packlock run srv/pack -- ./job1 &
job1=$!
read -r _ <started

say "job 2 wants it too:  packlock run -v srv/pack -- ./job2"
packlock run -v srv/pack -- ./job2 2>job2.err &
job2=$!
exec 3<job2.err
while IFS= read -r line <&3; do
  echo "$line"
  [[ $line == *waiting* ]] && break
done
cat <&3 &

say "while job 1 holds the pack, probe and status show the holder and the waiter"
show packlock probe srv/pack
show packlock status
show flock -n srv/pack/.grex-lock echo "flock(1) got the lock"

say "job 1 finishes; job 2 gets the lock at once"
echo go >finish
wait "$job1" "$job2"
exec 3<&-
wait

say "flock(1) holds the pack now; packlock run -n says who holds it"
flock srv/pack/.grex-lock sh -c 'echo >started; read -r _ <finish' &
holder=$!
read -r _ <started
show packlock run -n srv/pack -- ./job2
echo go >finish
wait "$holder"
show packlock probe srv/pack
