#!/usr/bin/env bash
# packlock run and util-linux flock(1) exclude each other on the sidecar,
# both ways, and many shell loops through packlock run lose no update.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
P=$T/pack
mkdir -p "$P"

# --- packlock holds: flock(1) waits ------------------------------------------
start_holder ours "$PACKLOCK" run "$P" --
expect 1 "flock -n fails while packlock run holds" flock -n "$P/.grex-lock" true
expect 1 "flock -s -n fails too" flock -s -n "$P/.grex-lock" true
flock -w 60 "$P/.grex-lock" sh -c 'echo flock >>"$0"' "$T/order" &
PIDS[theirs]=$!
echo packlock >>"$T/order"
release_holder ours
check "packlock run exits 0 after its command" test $? -eq 0
finish_job theirs
check "the waiting flock(1) got the lock" test $? -eq 0
check "flock(1) ran after packlock released" test "$(tr '\n' ' ' <"$T/order")" = "packlock flock "

# --- shared packlock beside shared flock(1) ------------------------------------
start_holder ours "$PACKLOCK" run -s "$P" --
expect 0 "flock -s -n gets in beside packlock run -s" flock -s -n "$P/.grex-lock" true
expect 1 "flock -x -n does not" flock -x -n "$P/.grex-lock" true
expect 0 "a second packlock run -s gets in" "$PACKLOCK" run -s -n "$P" true
expect 75 "packlock run -x -n does not" "$PACKLOCK" run -n "$P" true
release_holder ours

# --- flock(1) holds: packlock waits, and probe names flock's pid -----------------
start_holder theirs flock "$P/.grex-lock"
expect 75 "packlock run -n fails while flock(1) holds" "$PACKLOCK" run -n "$P" true
expect 1 "probe: held" "$PACKLOCK" probe "$P"
check "probe names flock's pid" grep -q "held exclusive by ${PIDS[theirs]} (flock " "$T/out"
expect 1 "probe --json: held" "$PACKLOCK" probe --json "$P"
check "probe --json gives flock's pid" grep -q "\"pid\": ${PIDS[theirs]}," "$T/out"
start_waiter ours "$PACKLOCK" run -v "$P" -- sh -c 'echo packlock >>"$0"' "$T/order2"
echo flock >>"$T/order2"
release_holder theirs
finish_job ours
check "packlock run got the lock when flock(1) released" test $? -eq 0
check "packlock ran after flock(1) released" test "$(tr '\n' ' ' <"$T/order2")" = "flock packlock "

start_holder theirs flock -s "$P/.grex-lock"
expect 0 "packlock run -s -n beside flock -s" "$PACKLOCK" run -s -n "$P" true
expect 75 "packlock run -x -n not beside flock -s" "$PACKLOCK" run -n "$P" true
expect 1 "probe: shared" "$PACKLOCK" probe "$P"
check "probe says shared" grep -q "held shared by ${PIDS[theirs]}" "$T/out"
release_holder theirs

# --- 8 shell loops x 25 increments through packlock run -----------------------
echo 0 >"$T/counter"
for loop in $(seq 8); do
  (
    for i in $(seq 25); do
      "$PACKLOCK" run "$P" -- sh -c 'n=$(cat "$0"); echo $((n + 1)) >"$0"' "$T/counter" || exit 1
    done
  ) &
  PIDS[loop$loop]=$!
done
loops_ok=0
for loop in $(seq 8); do
  wait "${PIDS[loop$loop]}" && loops_ok=$((loops_ok + 1))
  unset "PIDS[loop$loop]"
done
check "every loop's runs succeeded" test "$loops_ok" -eq 8
check "no lost update: 200 increments (got $(cat "$T/counter"))" test "$(cat "$T/counter")" -eq 200

finish
