#!/usr/bin/env bash
# packlock run and signals: forwarded to the command, ending a wait, the
# command's death by signal, packlock's own death, and signals that must
# not matter.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
P=$T/pack
mkdir -p "$P"

# A command that traps SIGNAL, says it is ready, and on the signal writes
# its name and exits 7.
cat >"$T/trapper.sh" <<'SCRIPT'
#!/bin/sh
sig=$1 ready=$2 out=$3
sleep 300 & s=$!
trap 'echo "$sig" >"$out"; kill $s; exit 7' "$sig"
echo ready >"$ready"
wait $s
SCRIPT
chmod +x "$T/trapper.sh"

# --- every forwarded signal reaches a command that traps it ----------------
for sig in INT TERM HUP QUIT USR1 USR2 WINCH; do
  mkfifo "$T/ready.$sig"
  "$PACKLOCK" run "$P" -- "$T/trapper.sh" "$sig" "$T/ready.$sig" "$T/got.$sig" &
  PIDS[run]=$!
  read -r -t 60 _ <>"$T/ready.$sig" || fail "$sig: the command never started"
  kill -"$sig" "${PIDS[run]}"
  finish_job run
  status=$?
  check "SIG$sig: run exits with the command's status" test "$status" -eq 7
  check "SIG$sig reached the command" test "$(cat "$T/got.$sig" 2>/dev/null)" = "$sig"
  check "SIG$sig: the pack is free afterwards" sidecar_free "$P"
done

# start_sleeper NAME: `packlock run P -- sleep 300` in the background as
# PIDS[run]; the sleep's pid becomes PIDS[NAME].
start_sleeper() {
  local pid
  mkfifo "$T/$1.pid"
  "$PACKLOCK" run "$P" -- sh -c 'echo $$ >"$0"; exec sleep 300' "$T/$1.pid" &
  PIDS[run]=$!
  read -r -t 60 pid <>"$T/$1.pid"
  PIDS[$1]=$pid
}

# --- SIGTERM to run: the command dies of it, run exits 143 ------------------
start_sleeper sleeper
kill -TERM "${PIDS[run]}"
finish_job run
check "SIGTERM to run: exit 143" test $? -eq 143
check "SIGTERM to run: the command is gone" gone "${PIDS[sleeper]}"
check "SIGTERM to run: the pack is free" sidecar_free "$P"

# --- SIGKILL to run: the command gets SIGTERM (PR_SET_PDEATHSIG) -----------
start_sleeper orphan
kill -KILL "${PIDS[run]}"
finish_job run 2>/dev/null
check "SIGKILL to run: the command dies too" gone "${PIDS[orphan]}"
check "SIGKILL to run: the pack is free" sidecar_free "$P"

# --- a stop signal during the wait ends it; the command never runs ---------
for sig in TERM INT HUP QUIT; do
  start_holder holder flock "$P/.grex-lock"
  start_waiter waiter "$PACKLOCK" run -v "$P" -- touch "$T/ran.$sig"
  kill -"$sig" "${PIDS[waiter]}"
  finish_job waiter
  status=$?
  want=$((128 + $(kill -l "$sig")))
  check "SIG$sig during the wait: exit $want (got $status)" test "$status" -eq "$want"
  check "SIG$sig during the wait: the command never ran" test ! -e "$T/ran.$sig"
  release_holder holder
  check "SIG$sig during the wait: the command did not run later either" test ! -e "$T/ran.$sig"
done

# --- -w 0.5 with SIGALRM ignored still times out -------------------------------
start_holder holder flock "$P/.grex-lock"
start=$(now_ms)
(trap '' ALRM; exec "$PACKLOCK" run -w 0.5 "$P" true) 2>/dev/null
status=$?
elapsed=$(($(now_ms) - start))
check "-w 0.5 with SIGALRM ignored: conflict exit (got $status)" test "$status" -eq 75
check "-w 0.5 with SIGALRM ignored: waited 0.5 s" test "$elapsed" -ge 500
check "-w 0.5 with SIGALRM ignored: within 20 s" test "$elapsed" -lt 20000

# --- SIGCHLD and SIGUSR1 storms do not end a wait ------------------------------
start_waiter waiter "$PACKLOCK" run -v -w 30 "$P" -- touch "$T/ran.storm"
for round in $(seq 20); do
  kill -CHLD "${PIDS[waiter]}" && kill -USR1 "${PIDS[waiter]}" || break
  sleep 0.05  # the storm's pace, not a readiness wait
done
check "after 20 rounds of SIGCHLD and SIGUSR1 run still waits" kill -0 "${PIDS[waiter]}"
check "and has not run the command" test ! -e "$T/ran.storm"
release_holder holder
finish_job waiter
check "after the storm run got the lock and ran the command" \
  bash -c "[[ $? -eq 0 && -e '$T/ran.storm' ]]"

# --- the live waiting line on a terminal --------------------------------------
start_holder holder flock "$P/.grex-lock"
script -qec "'$PACKLOCK' run -w 1.5 '$P' true" "$T/typescript" >/dev/null 2>&1
status=$?
check "on a terminal -w 1.5: conflict exit (got $status)" test "$status" -eq 75
check "the terminal shows a live waiting line naming the holder" \
  grep -q "waiting .* held exclusive by ${PIDS[holder]}" "$T/typescript"
check "the live line is erased (ESC [ K)" grep -q $'\r\e\\[K' "$T/typescript"
expect 75 "off a terminal and without -v, no waiting line" "$PACKLOCK" run -w 0.2 "$P" true
check "only the conflict line" test "$(wc -l <"$T/err")" -eq 1
release_holder holder

finish
