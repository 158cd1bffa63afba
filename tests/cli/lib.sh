# Sourced by every tests/cli/*_test.sh. They drive the built packlock
# command as a user would, with real processes, real signals and real
# flock(1); readiness comes through FIFOs, never from sleeping.
#
#   TEST.sh PACKLOCK_BINARY
set -uo pipefail
# Job control: background jobs get their own process group and keep SIGINT
# and SIGQUIT, which a non-interactive shell would otherwise ignore in them.
set -m

PACKLOCK=$(realpath "$1")
BIN_DIR=$(dirname "$PACKLOCK")
T=$(mktemp -d)
chmod 755 "$T"  # reachable by the unprivileged user of the permission tests
# That user runs a copy of the command in $T, with the libpacklock it links
# when it links one (a sanitizer build does): the build tree may lie where
# the user cannot go (a clone under a 0700 directory).
NOBODY_BIN=$T/bin-for-nobody
mkdir "$NOBODY_BIN"
cp "$PACKLOCK" "$NOBODY_BIN/packlock"
while read -r library; do
  cp "$library" "$NOBODY_BIN/"
done < <(ldd "$PACKLOCK" 2>/dev/null | awk '$1 ~ /^libpacklock/ && $3 ~ /^\// { print $3 }')
chmod -R a+rX "$NOBODY_BIN"
NOBODY=(env "LD_LIBRARY_PATH=$NOBODY_BIN" setpriv --reuid=65534 --regid=65534 --clear-groups)
declare -A PIDS=()
passed=0 failed=0

cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null; done
  chmod -R u+rwx "$T" 2>/dev/null
  rm -rf "$T"
}
trap cleanup EXIT

pass() { passed=$((passed + 1)); }
fail() { failed=$((failed + 1)); echo "FAIL: $*" >&2; }

# What the last `expect` saw, for a failure's message.
last_said() {
  local out err
  out=$(head -c 600 "$T/out" 2>/dev/null)
  err=$(head -c 600 "$T/err" 2>/dev/null)
  echo "last command's stdout: ${out:-(none)}; stderr: ${err:-(none)}"
}

# check NAME COMMAND...: passes when COMMAND succeeds.
check() {
  local name=$1; shift
  if "$@"; then pass; else fail "$name; $(last_said)"; fi
}

# not COMMAND...: succeeds when COMMAND fails (for check, which runs a
# command, not a shell pipeline).
not() { ! "$@"; }

# expect EXIT NAME COMMAND...: runs COMMAND with stdout in $T/out and stderr
# in $T/err; passes when it exits with EXIT.
expect() {
  local want=$1 name=$2; shift 2
  "$@" >"$T/out" 2>"$T/err"
  local got=$?
  if [[ $got -eq $want ]]; then
    pass
  else
    fail "$name: exit $got, expected $want; stderr: $(head -c 400 "$T/err")"
  fi
}

# one_line_naming NAME TEXT: $T/err is exactly one line and contains TEXT.
one_line_naming() {
  local name=$1 text=$2 lines
  lines=$(wc -l <"$T/err")
  if [[ $lines -eq 1 ]] && grep -qF -- "$text" "$T/err"; then
    pass
  else
    fail "$name: expected one stderr line naming '$text', got $lines: $(head -c 400 "$T/err")"
  fi
}

# expect_error EXIT NAME TEXT COMMAND...: EXIT and one stderr line naming TEXT.
expect_error() {
  local want=$1 name=$2 text=$3; shift 3
  expect "$want" "$name" "$@"
  one_line_naming "$name" "$text"
}

# start_holder NAME COMMAND...: runs `COMMAND... sh -c SCRIPT` in the
# background, where SCRIPT says it is ready and holds until release_holder
# NAME. Returns once it is ready (fails after 60 s if it never is).
# SCRIPT opens its release FIFO before it says it is ready: a "go" written
# into a FIFO that nobody has open is lost, and the holder would wait for
# ever.
start_holder() {
  local name=$1 line; shift
  rm -f "$T/$name.ready" "$T/$name.release"
  mkfifo "$T/$name.ready" "$T/$name.release"
  "$@" sh -c 'exec 3<>"$1"; echo ready >"$0"; read -r x <&3' "$T/$name.ready" "$T/$name.release" &
  PIDS[$name]=$!
  read -r -t 60 line <>"$T/$name.ready" || fail "$name never became ready"
}

# release_holder NAME: lets it go and waits for it; its exit code is returned.
release_holder() {
  echo go 1<>"$T/$1.release"
  finish_job "$1"
}

# start_waiter NAME COMMAND...: runs COMMAND (a `packlock run -v` that will
# wait) in the background, its stderr copied to $T/NAME.err; returns once
# its "waiting" line has been written, so it has registered as a waiter.
start_waiter() {
  local name=$1 line fd; shift
  rm -f "$T/$name.errpipe" "$T/$name.err"
  mkfifo "$T/$name.errpipe"
  "$@" 2>"$T/$name.errpipe" &
  PIDS[$name]=$!
  exec {fd}<"$T/$name.errpipe"
  while IFS= read -r -t 60 line <&$fd; do
    echo "$line" >>"$T/$name.err"
    [[ $line == *waiting* ]] && break
  done
  [[ ${line:-} == *waiting* ]] || fail "$name never said it was waiting: $(cat "$T/$name.err" 2>/dev/null)"
  cat <&$fd >>"$T/$name.err" &
  exec {fd}<&-
}

# describe_stuck NAME PID: what a job that never ended was doing, thread by
# thread, and the locks of the system, for the failure's message.
describe_stuck() {
  local name=$1 pid=$2 task
  echo "--- $name (pid $pid) did not end; its processes and threads:"
  ps -o pid,ppid,stat,wchan:24,args --ppid "$pid" -p "$pid" 2>&1
  for task in /proc/"$pid"/task/*; do
    echo "thread ${task##*/} $(cat "$task/comm" 2>/dev/null):" \
      "$(grep -E '^(State|SigPnd|ShdPnd|SigBlk|SigCgt)' "$task/status" 2>/dev/null | tr -s '\t\n' '  ')"
    sed 's/^/    /' "$task/stack" 2>/dev/null
  done
  if command -v gdb >/dev/null; then
    timeout 30 gdb -batch -p "$pid" -ex 'thread apply all bt' 2>&1 | grep -E '^(Thread|#)'
  fi
  echo "--- /proc/locks:"
  cat /proc/locks
}

# finish_job NAME: waits for the background job PIDS[NAME] and returns its
# exit code. A job still running after 60 s is described and killed: the
# test then fails on that step, not on CTest's timeout of the whole script.
finish_job() {
  local pid=${PIDS[$1]}
  # A background job leads its own process group (set -m): kill it whole.
  (timeout 60 tail -s 0.05 --pid="$pid" -f /dev/null ||
    { describe_stuck "$1" "$pid" >&2; kill -KILL -- -"$pid" 2>/dev/null || kill -KILL "$pid"; }) &
  local watchdog=$!
  wait "$pid"
  local status=$?
  wait "$watchdog"
  unset "PIDS[$1]"
  return $status
}

now_ms() { date +%s%3N; }

# gone PID: true once PID has exited (waits up to 20 s for it).
gone() { timeout 20 tail -s 0.05 --pid="$1" -f /dev/null; }

# sidecar_free PACK: util-linux flock(1) can take the lock at once.
sidecar_free() { flock -n "$1/.grex-lock" true; }

finish() {
  echo "$passed passed, $failed failed"
  [[ $failed -eq 0 ]]
}
