#!/usr/bin/env bash
# packlock probe: states, holders and waiters, exit codes, --json, -q,
# --try, --wait, --missing-ok; it never creates or locks anything.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
A=$T/a B=$T/b
mkdir -p "$A" "$B"
"$PACKLOCK" run "$A" true

# --- free -------------------------------------------------------------------------
expect 0 "a free pack: 0" "$PACKLOCK" probe "$A"
check "a free pack says free" test "$(cat "$T/out")" = "$A: free"
ls -A "$B" >"$T/before"
expect 0 "a pack without sidecar is free" "$PACKLOCK" probe "$B"
expect 0 "--try on a pack without sidecar" "$PACKLOCK" probe --try "$B"
ls -A "$B" >"$T/after"
check "probe and probe --try created nothing" cmp -s "$T/before" "$T/after"
expect 0 "--try on a free pack" "$PACKLOCK" probe --try "$A"
check "--try: free" test "$(cat "$T/out")" = "$A: free"
check "--try released the lock" sidecar_free "$A"
expect 0 "--json on a free pack" "$PACKLOCK" probe --json "$A"
check "--json: state free" grep -q '"state": "free"' "$T/out"
check "--json: mode null" grep -q '"mode": null' "$T/out"

# --- held by packlock run, with a waiter ------------------------------------------------
start_holder holder "$PACKLOCK" run "$A" --
start_waiter waiter "$PACKLOCK" run -v -s "$A" true
expect 1 "a held pack: 1" "$PACKLOCK" probe "$A"
# The command is shortened to fit the line: what is shown (without the
# "..." of a cut) and the holder's command line start alike, whatever the
# length of the paths in it.
shown=$(sed -n "s|^$A: held exclusive by ${PIDS[holder]} (\(.*\)) on .*|\1|p" "$T/out")
shown=${shown%...}
full="$PACKLOCK run $A -- sh -c"
check "names the holder's pid" test -n "$shown"
check "names the holder's command ('$shown')" \
  test "${full:0:${#shown}}" = "$shown" -o "${shown:0:${#full}}" = "$full"
check "counts the waiter" grep -q "; 1 waiting$" "$T/out"
expect 1 "--json on a held pack" "$PACKLOCK" probe --json "$A"
check "--json: state held" grep -q '"state": "held"' "$T/out"
check "--json: mode exclusive" grep -q '"mode": "exclusive"' "$T/out"
check "--json: the holder's pid" grep -q "\"pid\": ${PIDS[holder]}," "$T/out"
check "--json: the waiter's pid" grep -q "\"pid\": ${PIDS[waiter]}," "$T/out"
check "--json: the waiter waits for a shared lock" \
  bash -c "grep -A1 '\"pid\": ${PIDS[waiter]},' '$T/out' | grep -q '\"mode\": \"shared\"'"
expect 1 "-q: exit code only" "$PACKLOCK" probe -q "$A"
check "-q prints nothing" test ! -s "$T/out"
expect 1 "--quiet" "$PACKLOCK" probe --quiet "$A"
expect 1 "free and held: the worst wins" "$PACKLOCK" probe "$B" "$A"
check "one line per pack, in order" \
  bash -c "[[ \$(wc -l <'$T/out') -eq 2 && \$(head -1 '$T/out') == '$B: free' && \$(tail -1 '$T/out') == '$A: held '* ]]"
start=$(now_ms)
expect 1 "--wait 0.3 on a pack that stays held" "$PACKLOCK" probe --wait 0.3 "$A"
check "--wait 0.3 waited" test $(($(now_ms) - start)) -ge 300
check "the holder was not disturbed" kill -0 "${PIDS[holder]}"
"$PACKLOCK" probe --wait 60 "$A" >"$T/waited" &
PIDS[prober]=$!
release_holder holder
finish_job waiter
check "the waiter got its turn" test $? -eq 0
finish_job prober
check "--wait returns 0 once the pack is free" test $? -eq 0
# The waiter may still be listed: it was leaving the queue at that moment.
check "--wait prints the state it ended with" grep -q "^$A: free\(; 1 waiting\)\?$" "$T/waited"

# --- shared holders ---------------------------------------------------------------
start_holder s1 "$PACKLOCK" run -s "$A" --
start_holder s2 flock -s "$A/.grex-lock"
expect 1 "shared holders" "$PACKLOCK" probe "$A"
check "both shared holders are named" \
  grep -q "held shared by .*${PIDS[s1]} .*${PIDS[s2]} \|held shared by .*${PIDS[s2]} .*${PIDS[s1]} " "$T/out"
release_holder s1
release_holder s2

# --- a holder whose command line has a newline: still one line -----------------------
start_holder newline flock "$A/.grex-lock" env X=$'two\nlines'
expect 1 "a command with a newline" "$PACKLOCK" probe "$A"
check "probe prints one line for it" test "$(wc -l <"$T/out")" -eq 1
check "the newline became a space" grep -q "X=two lines" "$T/out"
release_holder newline

# --- a holder the kernel table does not show (another pid namespace) -----------------
if unshare --pid --fork --mount-proc true 2>/dev/null; then
  start_holder hidden flock "$A/.grex-lock"
  expect 0 "the lock table of another pid namespace shows no holder" \
    unshare --pid --fork --mount-proc "$PACKLOCK" probe "$A"
  expect 1 "--try finds the holder the table does not show" \
    unshare --pid --fork --mount-proc "$PACKLOCK" probe --try "$A"
  check "--try says the holder is not visible" grep -q "held by a holder not visible" "$T/out"
  release_holder hidden
else
  echo "note: no pid namespaces here; --try against an invisible holder not tested" >&2
fi

# --- an orphaned lock: the pid /proc/locks names has exited --------------------------
# flock(1) takes the lock on a descriptor of its shell and exits; the shell
# (now sleep) keeps the lock. probe says who is gone and who keeps it.
mkfifo "$T/orphan.ready"
sh -c 'exec 9>>"$0/.grex-lock"; flock 9; echo ready >"$1"; exec sleep 300' "$A" "$T/orphan.ready" &
PIDS[orphan]=$!
read -r -t 60 _ <>"$T/orphan.ready" || fail "the orphaned lock was never taken"
expect 1 "an orphaned lock is held" "$PACKLOCK" probe "$A"
check "probe says the named holder exited" grep -q "held exclusive by [0-9]* (exited), its lock kept by ${PIDS[orphan]} (sleep 300)" "$T/out"
expect 1 "--json of an orphaned lock" "$PACKLOCK" probe --json "$A"
check "--json: the holder exited" test "$(jq '.[0].holders[0].exited' "$T/out")" = true
check "--json: the keeper is named with its command" \
  test "$(jq -r '.[0].keepers[0] | "\(.pid) \(.command)"' "$T/out")" = "${PIDS[orphan]} sleep 300"
expect 0 "status of an orphaned lock" "$PACKLOCK" status --max-depth 0 "$A"
check "status: the holder is marked exited, the keeper's command shown" \
  grep -q "(exited).*kept by ${PIDS[orphan]}: sleep 300" "$T/out"
expect 75 "run -n: still busy" "$PACKLOCK" run -n "$A" true
kill "${PIDS[orphan]}"; finish_job orphan 2>/dev/null

# --- missing packs ----------------------------------------------------------------
expect_error 66 "a missing pack: 66" "$T/none" "$PACKLOCK" probe "$A" "$T/none"
check "the other packs are still reported" test "$(cat "$T/out")" = "$A: free"
expect 0 "--missing-ok" "$PACKLOCK" probe --missing-ok "$A" "$T/none"
check "--missing-ok says missing" grep -q "^$T/none: missing$" "$T/out"
check "probe created no pack" test ! -e "$T/none"

# --- help and the link -------------------------------------------------------------
expect 0 "probe --help" "$PACKLOCK" probe --help
cp "$T/out" "$T/help.probe"
expect 0 "packlock-probe --help" "$BIN_DIR/packlock-probe" --help
check "packlock-probe is packlock probe" cmp -s "$T/out" "$T/help.probe"
expect 0 "packlock-probe probes" "$BIN_DIR/packlock-probe" --stale-after 1m --missing-ok "$A" "$T/none"
check "packlock-probe reports every pack" test "$(wc -l <"$T/out")" -eq 2

finish
