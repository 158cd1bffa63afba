#!/usr/bin/env bash
# Liveness through the command: the owner record and heartbeat of a
# `packlock run` holder as probe and status show them, a stopped holder
# that goes stale, its recovery under each --stale-policy and the hijacked
# holder's reaction, hard-linked sidecars, an empty sidecar's unknown
# owner and a read-only sidecar's -v note. Timing knobs are milliseconds;
# whatever must have happened first is waited for as a condition with a
# deadline, never by sleeping.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
HOST=$(hostname)

# until_exit CODE SECONDS COMMAND...: runs COMMAND (output in $T/out and
# $T/err) until it exits with CODE; false if it never does within SECONDS.
until_exit() {
  local want=$1 deadline=$(($(now_ms) + $2 * 1000)); shift 2
  while (($(now_ms) < deadline)); do
    "$@" >"$T/out" 2>"$T/err"
    [[ $? -eq $want ]] && return 0
    sleep 0.02  # the poll's period; the deadline bounds the wait
  done
  return 1
}

# start_run_holder NAME PACK RUN_OPTIONS...: `packlock run RUN_OPTIONS PACK`
# in the background as PIDS[NAME], its stderr in $T/NAME.err, running a
# command that says it is ready and then waits for release_holder NAME.
start_run_holder() {
  local name=$1 pack=$2; shift 2
  start_holder "$name" sh -c 'exec "$@" 2>"$0"' "$T/$name.err" "$PACKLOCK" run "$@" "$pack"
}

# --- a live holder: owner record, ages, and a heartbeat that keeps it fresh ---------
A=$T/a
mkdir -p "$A"
start_run_holder live "$A" --heartbeat 50ms --stale-after 1s
expect 1 "a live holder is held" "$PACKLOCK" probe "$A"
check "the line names the holder's host and ages" \
  grep -q "^$A: held exclusive by ${PIDS[live]} (.*) on $HOST, held for [0-9.]*m\?s, heartbeat [0-9.]*m\?s ago$" "$T/out"
expect 1 "--json of a live holder" "$PACKLOCK" probe --json --stale-after 300ms "$A"
check "--json: the owner's pid" \
  bash -c "grep -A1 '\"owner\": {' '$T/out' | grep -q '\"pid\": ${PIDS[live]},'"
check "--json: the owner's host" grep -qF "\"host\": \"$HOST\"" "$T/out"
check "--json: the owner's command is run's command line" \
  grep -qF '"command": "sh -c exec 3<>\"$1\"; echo ready' "$T/out"
check "--json: acquired_at in UTC" grep -q '"acquired_at": "[0-9-]*T[0-9:]*Z"' "$T/out"
check "--json: held_for_ms" grep -q '"held_for_ms": [0-9][0-9]*,' "$T/out"
check "--json: heartbeat_age_ms" grep -q '"heartbeat_age_ms": [0-9][0-9]*,' "$T/out"
check "--json: judged by the holder's 1s, longer than the reader's" grep -q '"stale_after_ms": 1000,' "$T/out"
check "--json: one link" grep -q '"links": 1$' "$T/out"
# Three of the holder's stale periods: with its 50 ms heartbeat the lock
# never looks stale, though a reader with a shorter period is asking.
deadline=$(($(now_ms) + 3500)) probes=0 stale_seen=0
while (($(now_ms) < deadline)); do
  "$PACKLOCK" probe --stale-after 300ms "$A" >"$T/out" 2>"$T/err"
  status=$?
  probes=$((probes + 1))
  [[ $status -eq 1 ]] || { stale_seen=1; echo "probe exit $status: $(cat "$T/out" "$T/err")" >&2; break; }
done
check "the heartbeat kept the holder fresh over 3 stale periods ($probes probes)" \
  test "$stale_seen" -eq 0 -a "$probes" -gt 0
start_waiter waiter "$PACKLOCK" run -v "$A" true
check "run -v's waiting line names the holder's host and time held" \
  grep -q "^packlock run: $A: waiting for an exclusive lock, held exclusive by ${PIDS[live]} (.*) on $HOST, held for [0-9.]*m\?s, heartbeat [0-9.]*m\?s ago$" "$T/waiter.err"
release_holder live
check "the live holder's command ended normally" test $? -eq 0
finish_job waiter
check "the waiter ran after it" test $? -eq 0

# --- a stopped holder goes stale; safe leaves it, mtime takes it -------------------
start_run_holder stopped "$A" -q --heartbeat 100ms --stale-after 300ms
kill -STOP "${PIDS[stopped]}"
check "a stopped holder's heartbeat ages past stale-after: probe exits 2" \
  until_exit 2 30 "$PACKLOCK" probe --stale-after 300ms "$A"
check "probe says stale, with the holder and the period" \
  grep -q "^$A: stale exclusive by ${PIDS[stopped]} (.*) on $HOST, held for .*, heartbeat .* ago (stale after 300ms)$" "$T/out"
expect 1 "the default 30s reader does not call it stale yet" "$PACKLOCK" probe "$A"
expect 2 "stale and free: the worst wins" "$PACKLOCK" probe --stale-after 300ms "$T" "$A"
expect 2 "--json of a stale pack" "$PACKLOCK" probe --stale-after 300ms --json "$A"
check "--json: state stale" grep -q '"state": "stale"' "$T/out"
expect 0 "status of a stale pack" "$PACKLOCK" status --stale-after 300ms --max-depth 0 "$A"
check "status shows it stale with its ages" \
  grep -q "^$A  *stale  *exclusive  *${PIDS[stopped]}  *0  *[0-9.]*m\?s  *[0-9.]*m\?s  *${PACKLOCK:0:16}" "$T/out"
expect 0 "status --held lists a stale pack" "$PACKLOCK" status --stale-after 300ms --held --max-depth 0 "$A"
check "status --held: the stale pack" grep -q "^$A  *stale " "$T/out"
expect 75 "safe: a stopped holder on this host is not robbed" \
  "$PACKLOCK" run -n -v --heartbeat 100ms --stale-after 300ms "$A" true
check "safe: -v says the stale lock was left alone" grep -q "^packlock run: $A: lock looks stale" "$T/err"
expect 2 "the stopped holder still holds the lock" "$PACKLOCK" probe --stale-after 300ms "$A"
check "still held by the stopped holder" grep -q "^$A: stale exclusive by ${PIDS[stopped]} " "$T/out"
expect 0 "mtime: a second run recovers the stale lock" \
  "$PACKLOCK" run -n -v --stale-policy mtime --heartbeat 100ms --stale-after 300ms "$A" true
check "mtime: -v says it recovered a stale lock" grep -q "^packlock run: $A: recovered a stale lock" "$T/err"
kill -CONT "${PIDS[stopped]}"
# Under job control `wait` also returns for the stop (128 + SIGSTOP), even
# after SIGCONT until the shell has seen the job go on: wait again then.
gone "${PIDS[stopped]}" || { fail "the hijacked holder never ended"; kill -KILL "${PIDS[stopped]}"; }
status=$((128 + 19))
while [[ $status -eq $((128 + 19)) ]]; do
  wait "${PIDS[stopped]}"
  status=$?
done
unset "PIDS[stopped]"
check "the hijacked holder's command got SIGTERM: exit 143 (got $status: $(cat "$T/stopped.err"))" test "$status" -eq 143
check "the hijacked holder said so in one line, even with -q" \
  test "$(wc -l <"$T/stopped.err")" -eq 1 -a "$(grep -c "^packlock run: $A: lock lost" "$T/stopped.err")" -eq 1
expect 0 "after the hijack the pack is free" "$PACKLOCK" probe "$A"

# --- a hard-linked copy shares the lock -------------------------------------------
B=$T/b
mkdir -p "$B"
"$PACKLOCK" run "$B" true
cp -al "$B" "$T/copy"
expect 0 "a hard-linked copy is free" "$PACKLOCK" probe "$T/copy"
check "probe names the shared lock" \
  test "$(cat "$T/out")" = "$T/copy: free; shares its lock with 1 other hard link"
expect 0 "--json of the copy" "$PACKLOCK" probe --json "$T/copy"
check "--json: two links" grep -q '"links": 2$' "$T/out"
start_run_holder linked "$B"
expect 1 "the copy is held through the original" "$PACKLOCK" probe "$T/copy"
check "probe: held, and shared" grep -q "^$T/copy: held exclusive by ${PIDS[linked]} .*; shares its lock with 1 other hard link$" "$T/out"
expect 0 "status of the copy" "$PACKLOCK" status --max-depth 0 "$T/copy"
check "status notes the shared lock under the table" \
  grep -qx "$T/copy: shares its lock with 1 other hard link" "$T/out"
release_holder linked

# --- an empty sidecar held by flock(1): owner unknown ------------------------------
E=$T/empty
mkdir -p "$E"
: >"$E/.grex-lock"
start_holder foreign flock "$E/.grex-lock"
expect 1 "an empty sidecar held by flock(1) is held" "$PACKLOCK" probe --stale-after 300ms "$E"
check "probe: owner unknown" \
  grep -q "^$E: held exclusive by ${PIDS[foreign]} (flock .*), owner unknown (no owner record)$" "$T/out"
expect 1 "--json: held" "$PACKLOCK" probe --json "$E"
check "--json: owner null" grep -q '"owner": null,' "$T/out"
expect 0 "status of the empty sidecar" "$PACKLOCK" status --max-depth 0 "$E"
check "status: HELD-FOR unknown" grep -q "^$E  *held  *exclusive  *${PIDS[foreign]}  *0  *unknown  *-  *flock " "$T/out"
expect 75 "run -n on it: busy" "$PACKLOCK" run -n "$E" true
release_holder foreign
expect 0 "run takes the empty sidecar once flock(1) has gone" "$PACKLOCK" run "$E" true

# --- a read-only sidecar: held without record or heartbeat, said once with -v -----------
R=$T/ro
mkdir -p "$R"
"$PACKLOCK" run "$R" true
chmod 644 "$R/.grex-lock"
expect 0 "read-only: run -v takes the lock" "${NOBODY[@]}" "$NOBODY_BIN/packlock" run -v "$R" true
check "read-only: -v says once that there is no record and no heartbeat" \
  test "$(grep -c "^packlock run: $R: .*read-only.*no owner record, no heartbeat" "$T/err")" -eq 1
expect 0 "read-only: run without -v" "${NOBODY[@]}" "$NOBODY_BIN/packlock" run "$R" true
check "read-only: nothing said without -v" test ! -s "$T/err"

finish
