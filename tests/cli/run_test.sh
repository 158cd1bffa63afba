#!/usr/bin/env bash
# packlock run: the command, its exit status, its environment, the lock
# while it runs, and every option of SPEC section 3.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
P=$T/pack

# --- exit status of the command -------------------------------------------
expect 3 "exit status propagates" "$PACKLOCK" run "$P" -- sh -c 'exit 3'
expect 1 "false gives 1" "$PACKLOCK" run "$P" false
expect 137 "a command killed by SIGKILL gives 128+9" "$PACKLOCK" run "$P" -- sh -c 'kill -KILL $$'
expect 143 "a command killed by SIGTERM gives 128+15" "$PACKLOCK" run "$P" -- sh -c 'kill -TERM $$'
expect 4 "-c after PACK runs a shell command" "$PACKLOCK" run "$P" -c 'exit 4'
expect 5 "-c before PACK runs a shell command" "$PACKLOCK" run -c 'exit 5' "$P"
expect 0 "SHELL runs -c commands" env SHELL=/bin/bash "$PACKLOCK" run "$P" -c 'echo $BASH_VERSION'
check "-c uses \$SHELL" test -s "$T/out"

# --- arguments after PACK belong to the command -----------------------------
expect 0 "the command's options are its own" "$PACKLOCK" run "$P" printf '%s|' -v -n --help
check "options after PACK reach the command" test "$(cat "$T/out")" = "-v|-n|--help|"
expect 0 "-- before the command" "$PACKLOCK" run "$P" -- printf '%s|' -x
check "-- is not passed on" test "$(cat "$T/out")" = "-x|"
expect 0 "-- before PACK" "$PACKLOCK" run -- "$P" printf '%s|' a
check "-- before PACK: command runs" test "$(cat "$T/out")" = "a|"

# --- environment --------------------------------------------------------------
expect 0 "environment" "$PACKLOCK" run "$P" -- sh -c 'echo "$PACKLOCK_PACK $PACKLOCK_MODE"'
check "PACKLOCK_PACK is the canonical pack, PACKLOCK_MODE exclusive" \
  test "$(cat "$T/out")" = "$(realpath "$P") exclusive"
expect 0 "environment, shared" "$PACKLOCK" run -s "$P" -- sh -c 'echo "$PACKLOCK_MODE"'
check "PACKLOCK_MODE shared" test "$(cat "$T/out")" = "shared"
expect 0 "a variable already set is replaced" \
  env PACKLOCK_MODE=bogus "$PACKLOCK" run "$P" -- sh -c 'env | grep -c "^PACKLOCK_MODE="'
check "PACKLOCK_MODE once" test "$(cat "$T/out")" = "1"

# --- the lock while the command runs ----------------------------------------
expect 0 "exclusive: flock(1) cannot get in while the command runs" "$PACKLOCK" run "$P" -- \
  sh -c 'flock -n "$0/.grex-lock" true; echo "x=$?"; flock -s -n "$0/.grex-lock" true; echo "s=$?"' "$P"
check "exclusive excludes flock -x and flock -s" test "$(tr '\n' ' ' <"$T/out")" = "x=1 s=1 "
expect 0 "shared: flock -s shares, flock -x waits" "$PACKLOCK" run -s "$P" -- \
  sh -c 'flock -n "$0/.grex-lock" true; echo "x=$?"; flock -s -n "$0/.grex-lock" true; echo "s=$?"' "$P"
check "shared admits flock -s only" test "$(tr '\n' ' ' <"$T/out")" = "x=1 s=0 "
expect 0 "-x is exclusive" "$PACKLOCK" run -x "$P" -- sh -c 'flock -s -n "$0/.grex-lock" true; echo "s=$?"' "$P"
check "-x excludes flock -s" test "$(cat "$T/out")" = "s=1"
check "the lock is free after run" sidecar_free "$P"
check "the sidecar stays" test -f "$P/.grex-lock"

# --- the lock descriptor is not inherited -------------------------------------
expect 0 "the command's descriptors" "$PACKLOCK" run "$P" -- sh -c 'ls -l /proc/$$/fd/'
check "no lock descriptor reaches the command" bash -c "! grep -q grex-lock '$T/out'"
check "the descriptor listing is real" grep -q -- '->' "$T/out"

# --- a background child does not keep the lock ---------------------------------
expect 0 "a command that leaves a daemon behind" "$PACKLOCK" run "$P" -- \
  sh -c 'sleep 300 >/dev/null 2>&1 & echo $! >"$0"' "$T/daemon.pid"
PIDS[daemon]=$(cat "$T/daemon.pid")
check "the daemon is still alive" kill -0 "${PIDS[daemon]}"
check "the pack is free as soon as run returns" sidecar_free "$P"

# --- -v, -q and the child's stdout ------------------------------------------
head -c 100000 /dev/urandom >"$T/data"
"$PACKLOCK" run -v "$P" -- cat "$T/data" >"$T/cat.out" 2>"$T/cat.err"
check "-v output does not leak into the command's stdout" cmp -s "$T/data" "$T/cat.out"
check "-v says it locked, runs and released" \
  bash -c "grep -q 'locked (exclusive)' '$T/cat.err' && grep -q 'running cat' '$T/cat.err' && grep -q 'released' '$T/cat.err'"
expect 0 "without -v, run says nothing" "$PACKLOCK" run "$P" true
check "silent by default" test ! -s "$T/err"

# --- busy: -n, -w, -E, -q -------------------------------------------------
start_holder flock_holder flock "$P/.grex-lock"
expect 75 "-n on a busy pack gives 75" "$PACKLOCK" run -n "$P" -- touch "$T/ran-n"
check "-n: the command did not run" test ! -e "$T/ran-n"
one_line_naming "-n names the pack and the holder" "${PIDS[flock_holder]}"
expect 9 "-E sets the conflict exit code" "$PACKLOCK" run -n -E 9 "$P" true
expect 0 "-E 0 is allowed" "$PACKLOCK" run -n -E 0 "$P" true
expect 75 "-q silences the conflict" "$PACKLOCK" run -n -q "$P" true
check "-q: nothing on stderr" test ! -s "$T/err"
expect 75 "-w 0 means -n" "$PACKLOCK" run -v -w 0 "$P" true
check "-w 0 never waits" bash -c "! grep -q waiting '$T/err'"
start=$(now_ms)
expect 75 "-w 0.5 times out" "$PACKLOCK" run -w 0.5 "$P" -- touch "$T/ran-w"
elapsed=$(($(now_ms) - start))
check "-w 0.5 waited at least 0.5 s" test "$elapsed" -ge 500
check "-w 0.5 gave up within 20 s" test "$elapsed" -lt 20000
check "-w: the command did not run" test ! -e "$T/ran-w"
grep -q "still locked after 500ms" "$T/err" && pass || fail "-w names the wait: $(cat "$T/err")"
expect 75 "--timeout=300ms" "$PACKLOCK" run --timeout=300ms "$P" true
expect 75 "--nonblock" "$PACKLOCK" run --nonblock "$P" true
expect 7 "--conflict-exit-code" "$PACKLOCK" run --nonblock --conflict-exit-code 7 "$P" true
release_holder flock_holder
expect 0 "free again" "$PACKLOCK" run -n "$P" true

# --- durations --------------------------------------------------------------
for duration in 5 0.5 500ms 2s 1m 1h 1.5m 0; do
  expect 0 "duration $duration is accepted" "$PACKLOCK" run -w "$duration" "$P" true
done
for duration in 5x -1 "" 1.2.3 ms 1e3 inf 0x10 " 5" 5s5 1d 99999999999h; do
  expect_error 64 "duration '$duration' is a usage error" "--timeout" \
    "$PACKLOCK" run -w "$duration" "$P" true
done

# --- liveness options: validated now --------------------------------------
expect 0 "liveness options" "$PACKLOCK" run --stale-after 2m --heartbeat 5s --stale-policy mtime "$P" true
expect 0 "--stale-policy safe" "$PACKLOCK" run --stale-policy safe "$P" true
expect_error 64 "bad --stale-policy" "--stale-policy" "$PACKLOCK" run --stale-policy never "$P" true
expect_error 64 "bad --stale-after" "--stale-after" "$PACKLOCK" run --stale-after soon "$P" true
expect_error 64 "bad --heartbeat" "--heartbeat" "$PACKLOCK" run --heartbeat 0x "$P" true
expect_error 64 "--heartbeat 0" "--heartbeat" "$PACKLOCK" run --heartbeat 0 "$P" true
expect_error 64 "--heartbeat not shorter than --stale-after" "--stale-after" \
  "$PACKLOCK" run --heartbeat 30s --stale-after 30s "$P" true

# --- --no-create ----------------------------------------------------------
expect_error 66 "--no-create, no pack" "$T/nopack" "$PACKLOCK" run --no-create "$T/nopack" true
check "--no-create created no pack" test ! -e "$T/nopack"
mkdir "$T/bare"
expect_error 66 "--no-create, no sidecar" "$T/bare" "$PACKLOCK" run --no-create "$T/bare" true
check "--no-create created nothing in the pack" test -z "$(ls -A "$T/bare")"
expect 0 "--no-create on an existing pack" "$PACKLOCK" run --no-create "$P" true
expect 0 "without --no-create a pack is created" "$PACKLOCK" run "$T/new/deeper" true
check "the pack and its sidecar were created" test -f "$T/new/deeper/.grex-lock"

# --- usage errors -----------------------------------------------------------
expect_error 64 "no PACK" "PACK" "$PACKLOCK" run
expect_error 64 "no command" "command" "$PACKLOCK" run "$P"
expect_error 64 "-s and -x" "-s and -x" "$PACKLOCK" run -s -x "$P" true
expect_error 64 "-n and -w" "-n and -w" "$PACKLOCK" run -n -w 1 "$P" true
expect_error 64 "-v and -q" "-v and -q" "$PACKLOCK" run -v -q "$P" true
expect_error 64 "-E 256" "-E" "$PACKLOCK" run -E 256 "$P" true
expect_error 64 "-E not a number" "conflict-exit-code" "$PACKLOCK" run -E x "$P" true
expect_error 64 "unknown option" "--frobnicate" "$PACKLOCK" run --frobnicate "$P" true
expect_error 64 "-c with extra arguments" "-c" "$PACKLOCK" run "$P" -c 'true' extra
expect_error 64 "-c and a command" "-c" "$PACKLOCK" run -c true "$P" true
expect_error 64 "an empty PACK" "PACK" "$PACKLOCK" run "" true
mkdir "$T/bin" && printf '#!/bin/sh\nexit 12\n' >"$T/bin/help" && chmod +x "$T/bin/help"
expect 12 "-c whose command is an option's name" \
  env SHELL=/bin/sh PATH="$T/bin:$PATH" "$PACKLOCK" run -c help "$P"
expect 12 "a command named like an option" env PATH="$T/bin:$PATH" "$PACKLOCK" run -E 3 "$P" help
expect_error 64 "-w without a value" "timeout" "$PACKLOCK" run -w
expect 127 "-w after PACK is the command" "$PACKLOCK" run "$P" -w
expect_error 64 "no guessing of long options" "--time" "$PACKLOCK" run --time 1 "$P" true
expect_error 64 "no hidden positional option" "--positional" "$PACKLOCK" run --positional x "$P" true
check "nothing was created by usage errors" test ! -e "$P/true"

# --- the period not given follows the one given -------------------------------
expect 0 "--stale-after 6s alone: the heartbeat follows" \
  "$PACKLOCK" run --stale-after 6s "$P" -- sh -c 'tr "," "\n" <"$0/.grex-lock" | grep -E "_ns"' "$P"
check "--stale-after 6s alone: heartbeat 2s" grep -q '"heartbeat_ns":2000000000' "$T/out"
expect 0 "--heartbeat 60s alone: the stale period follows" \
  "$PACKLOCK" run --heartbeat 60s "$P" -- sh -c 'tr "," "\n" <"$0/.grex-lock" | grep -E "_ns"' "$P"
check "--heartbeat 60s alone: stale after 3m" grep -q '"stale_after_ns":180000000000' "$T/out"
expect_error 64 "--heartbeat 60s --stale-after 30s: refused" "--heartbeat" \
  "$PACKLOCK" run --heartbeat 60s --stale-after 30s "$P" true
check "the refusal names both values" grep -q "1m.*--stale-after 30" "$T/err"

# --- the sidecar truncated, then filled with garbage, under a run holder and
# a run waiter: neither crashes, the holder's command ends as it would, the
# waiter gets the lock after it --------------------------------------------
start_holder holder "$PACKLOCK" run "$P" --
start_waiter waiter "$PACKLOCK" run -v -w 60 "$P" -- touch "$T/ran.after.garbage"
: >"$P/.grex-lock"
head -c 10000 /dev/zero | tr '\0' '\377' >"$P/.grex-lock"
truncate -s 3 "$P/.grex-lock"
release_holder holder
status=$?
check "garbage in the sidecar: the holder ends normally (got $status)" test "$status" -eq 0
finish_job waiter
status=$?
check "garbage in the sidecar: the waiter ends normally (got $status)" test "$status" -eq 0
check "garbage in the sidecar: the waiter ran its command" test -e "$T/ran.after.garbage"

# --- no command line after release; none at all with --no-record-command ----
expect 0 "a run whose command line holds a secret" \
  "$PACKLOCK" run "$P" -- sh -c 'grep -c "hunter2" "$0/.grex-lock"' "$P" --password=hunter2
check "while it runs, the record holds its command line" test "$(cat "$T/out")" = 1
check "after release the sidecar holds no command line" not grep -q hunter2 "$P/.grex-lock"
check "after release the sidecar holds no record" not grep -q '"pid"' "$P/.grex-lock"
expect 127 "a command that cannot start" "$PACKLOCK" run "$P" -- "$T/no-such-command" --password=hunter2
check "a command that never started leaves no command line" not grep -q hunter2 "$P/.grex-lock"
expect 0 "--no-record-command" "$PACKLOCK" run --no-record-command "$P" -- \
  sh -c 'tr "," "\n" <"$0/.grex-lock"' "$P" --password=hunter2
check "--no-record-command: a record without the command line" \
  bash -c "grep -qx '\"command\":\"\"' '$T/out' && ! grep -q hunter2 '$T/out'"

# --- -v warns of another user's sidecar in a directory open to all -----------
# (not sticky: with fs.protected_regular, even root may not open another
# user's file there with O_CREAT in a sticky one)
W=$T/open-to-all
mkdir -m 0777 "$W"
touch "$W/.grex-lock"
chown 65534:65534 "$W/.grex-lock"
expect 0 "-v, another user's sidecar in a directory open to all" "$PACKLOCK" run -v "$W" true
check "-v warns that anyone can hold or replace it" \
  grep -q "warning: .*uid 65534.*(not sticky): anyone can hold" "$T/err"
expect 0 "without -v, no warning" "$PACKLOCK" run "$W" true
check "without -v, nothing said" test ! -s "$T/err"
chown 0:0 "$W/.grex-lock"
expect 0 "-v, one's own sidecar there" "$PACKLOCK" run -v "$W" true
check "-v does not warn of one's own sidecar" not grep -q warning "$T/err"

# --- the pack renamed away while run waits: the command runs under the lock
# of what PACKLOCK_PACK names, which nobody else can take ---------------------
M=$T/moved-pack
mkdir -p "$M"
start_holder holder flock "$M/.grex-lock"
start_waiter waiter "$PACKLOCK" run -v -w 60 "$M" -- sh -c \
  'if flock -n "$PACKLOCK_PACK/.grex-lock" true; then echo free; else echo locked; fi >"$0"' \
  "$T/moved.verdict"
mv "$M" "$M.old"
mkdir "$M"
release_holder holder
finish_job waiter
status=$?
check "a pack renamed under a waiter: run ends normally (got $status)" test "$status" -eq 0
check "the command ran while PACKLOCK_PACK's sidecar was locked" \
  test "$(cat "$T/moved.verdict" 2>/dev/null)" = locked

# --- help and the link --------------------------------------------------------
expect 0 "run --help" "$PACKLOCK" run --help
check "--help goes to stdout" grep -q -- "--conflict-exit-code" "$T/out"
cp "$T/out" "$T/help.run"
expect 0 "packlock-run --help" "$BIN_DIR/packlock-run" --help
check "packlock-run is packlock run" cmp -s "$T/out" "$T/help.run"
expect 0 "packlock help run" "$PACKLOCK" help run
check "help run is run --help" cmp -s "$T/out" "$T/help.run"
expect 6 "packlock-run runs" "$BIN_DIR/packlock-run" "$P" -- sh -c 'exit 6'
expect_error 64 "packlock-run usage errors are named" "packlock-run" "$BIN_DIR/packlock-run" --bogus

finish
