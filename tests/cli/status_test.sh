#!/usr/bin/env bash
# packlock status: the packs at or below some paths, as a table or JSON;
# --max-depth, --held, --watch.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
R=$T/tree
mkdir -p "$R/plain/deeper" "$R/b"
"$PACKLOCK" run "$R/a" true
"$PACKLOCK" run "$R/b/c" true
"$PACKLOCK" run "$R/plain/deeper/d" true
ln -s .. "$R/b/loop"           # a link loop: never followed
ln -s "$R/a" "$R/link-to-a"    # a link to a pack: not listed twice

# --- the table ----------------------------------------------------------------------
start_holder holder "$PACKLOCK" run "$R/b/c" --
start_waiter waiter "$PACKLOCK" run -v "$R/b/c" true
# The waiter says it waits a moment before the kernel's table shows it.
# (The COMMAND column is cut to its width: only its start is checked.)
for _ in $(seq 100); do
  grep -q "^$R/b/c  *held  *exclusive  *[0-9]*  *1 " <<<"$("$PACKLOCK" status "$R/b/c")" && break
  sleep 0.05
done
expect 0 "status of a tree" "$PACKLOCK" status "$R"
check "a header and one row per pack" test "$(wc -l <"$T/out")" -eq 4
check "the header" grep -q "^PACK  *STATE  *MODE  *HOLDERS  *WAITERS  *HELD-FOR  *HEARTBEAT  *COMMAND$" "$T/out"
check "the free pack" grep -q "^$R/a  *free  *-  *-  *0  *-  *-  *-$" "$T/out"
check "the held pack with holder, waiter count and command" \
  grep -q "^$R/b/c  *held  *exclusive  *${PIDS[holder]}  *1  *[0-9.]*m\?s  *[0-9.]*m\?s  *${PACKLOCK:0:16}" "$T/out"
check "the deep pack" grep -q "^$R/plain/deeper/d  *free" "$T/out"
check "columns are aligned" test "$(awk '{print index($0, $2)}' "$T/out" | sort -u | wc -l)" -eq 1

expect 0 "--held" "$PACKLOCK" status --held "$R"
check "--held lists only the held pack" test "$(tail -n +2 "$T/out" | cut -d' ' -f1)" = "$R/b/c"
expect 0 "--max-depth 1" "$PACKLOCK" status --max-depth 1 "$R"
check "--max-depth 1: only a" test "$(tail -n +2 "$T/out" | cut -d' ' -f1)" = "$R/a"
expect 0 "--max-depth 2" "$PACKLOCK" status --max-depth 2 "$R"
check "--max-depth 2: a and b/c" test "$(tail -n +2 "$T/out" | cut -d' ' -f1 | tr '\n' ' ')" = "$R/a $R/b/c "
expect 0 "--max-depth 0 on a pack" "$PACKLOCK" status --max-depth 0 "$R/a"
check "--max-depth 0: the path itself" test "$(tail -n +2 "$T/out" | cut -d' ' -f1)" = "$R/a"
expect 0 "--max-depth 0 on a plain directory" "$PACKLOCK" status --max-depth 0 "$R"
check "--max-depth 0: nothing but the header" test "$(wc -l <"$T/out")" -eq 1
expect 0 "several paths" "$PACKLOCK" status "$R/b" "$R/a"
check "several paths: sorted" test "$(tail -n +2 "$T/out" | cut -d' ' -f1 | tr '\n' ' ')" = "$R/a $R/b/c "
expect 0 "default path ." bash -c 'cd "$1/b" && "$0" status' "$PACKLOCK" "$R"
check "default path: relative names" grep -q "^c  *held" "$T/out"

# --- JSON ----------------------------------------------------------------------------
expect 0 "--json" "$PACKLOCK" status --json "$R"
check "--json: three packs" test "$(grep -c '"pack":' "$T/out")" -eq 3
check "--json: the holder" grep -q "\"pid\": ${PIDS[holder]}," "$T/out"
check "--json: the waiter" grep -q "\"pid\": ${PIDS[waiter]}," "$T/out"
expect 0 "--json --held" "$PACKLOCK" status --json --held "$R"
check "--json --held: one pack" test "$(grep -c '"pack":' "$T/out")" -eq 1

# --- --watch ---------------------------------------------------------------------------
mkfifo "$T/watch.out"
"$PACKLOCK" status --watch --interval 50ms --held "$R" >"$T/watch.out" &
PIDS[watch]=$!
headers=0
exec {watch_fd}<"$T/watch.out"
while IFS= read -r -t 60 line <&$watch_fd; do
  [[ $line == PACK* ]] && headers=$((headers + 1))
  [[ $headers -ge 3 ]] && break
done
check "--watch refreshes (3 tables seen)" test "$headers" -ge 3
kill -TERM "${PIDS[watch]}"
cat <&$watch_fd >/dev/null
exec {watch_fd}<&-
finish_job watch
check "--watch ends with 0 when interrupted" test $? -eq 0

release_holder holder
finish_job waiter
expect 0 "after release" "$PACKLOCK" status --held "$R"
check "--held: nothing held" test "$(wc -l <"$T/out")" -eq 1

# --- hostile names: escapes, a newline, bytes that are not UTF-8 ---------------
# Text output shows them escaped (as ls -b does), so they can neither drive
# the terminal nor forge a row; JSON stays valid and names them reversibly.
H=$T/hostile
evil=$'a\e]0;PWNED\a\e[31mRED\rfake'
nl=$'two\nlines'
bad=$'caf\xe9'
mkdir -p "$H/$evil" "$H/$nl" "$H/$bad"
for d in "$evil" "$nl" "$bad"; do : >"$H/$d/.grex-lock"; done
start_holder hostile flock "$H/$bad/.grex-lock" env "X=$(printf '\xff\x1b[2J')"
expect 0 "status of a tree with hostile names" "$PACKLOCK" status "$H"
check "status: no escape character reaches the output" bash -c "! grep -q \$'\\e' '$T/out'"
check "status: the escape sequences are shown escaped" grep -qF 'a\e]0;PWNED\a\e[31mRED\rfake' "$T/out"
check "status: a newline in a name forges no row" test "$(wc -l <"$T/out")" -eq 4
check "status: a name that is not UTF-8 shows its byte" grep -qF 'caf\xe9' "$T/out"
expect 0 "status --json of a tree with hostile names" "$PACKLOCK" status --json "$H"
check "status --json is valid JSON with 3 packs" test "$(jq length "$T/out")" -eq 3
check "status --json names the pack that is not UTF-8 reversibly" \
  test "$(jq -r '.[].pack' "$T/out" | grep -c 'caf\\xe9$')" -eq 1
check "status --json keeps the newline of a name (JSON escapes it)" \
  test "$(jq -r '.[].pack | select(endswith("lines"))' "$T/out")" = "$H/$nl"
expect 1 "probe --json of a holder whose command is not UTF-8" "$PACKLOCK" probe --json "$H/$bad"
check "probe --json is valid JSON" test "$(jq -r '.[0].state' "$T/out")" = held
check "probe --json shows the command's bytes reversibly" grep -qF '\\xff' "$T/out"
expect 1 "probe of that holder" "$PACKLOCK" probe "$H/$bad"
check "probe: no escape character reaches the output" bash -c "! grep -q \$'\\e' '$T/out'"
expect 75 "run -n on that pack" "$PACKLOCK" run -n "$H/$bad" true
check "run: no escape character reaches stderr" bash -c "! grep -q \$'\\e' '$T/err'"
# The command as JSON has it whole, whatever the length of the paths in it.
expect 1 "probe --json of that pack" "$PACKLOCK" probe --json "$H/$bad"
check "the holder's command in JSON keeps its bytes, escaped" \
  test "$(jq -r '.[0].holders[0].command' "$T/out" | grep -c 'X=\\xff')" -eq 1
release_holder hostile

# --- a tree that changes while status walks it --------------------------------
# Directories (packs among them) appear and vanish under status's feet: an
# entry gone since it was listed is skipped; the walk never fails for it.
C=$T/churn
mkdir -p "$C"
(
  while :; do
    for i in $(seq 40); do mkdir -p "$C/d$i/sub" && : >"$C/d$i/.grex-lock"; done
    for i in $(seq 40); do rm -rf "$C/d$i"; done
  done
) &
PIDS[churner]=$!
churn_failures=0
for round in $(seq 60); do
  "$PACKLOCK" status "$C" >"$T/out" 2>"$T/err" || { churn_failures=$((churn_failures + 1)); cp "$T/err" "$T/churn.err"; }
done
kill "${PIDS[churner]}"; finish_job churner
check "status of a churning tree: 60 walks, none failed ($(head -c 300 "$T/churn.err" 2>/dev/null))" \
  test "$churn_failures" -eq 0
expect 66 "a PATH argument that does not exist is still 66" "$PACKLOCK" status "$C/never"

# --- help and the link -----------------------------------------------------------------
expect 0 "status --help" "$PACKLOCK" status --help
cp "$T/out" "$T/help.status"
expect 0 "packlock-status --help" "$BIN_DIR/packlock-status" --help
check "packlock-status is packlock status" cmp -s "$T/out" "$T/help.status"
expect 0 "packlock-status lists" "$BIN_DIR/packlock-status" "$R/a"
check "packlock-status output" grep -q "^$R/a  *free" "$T/out"

finish
