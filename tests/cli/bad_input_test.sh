#!/usr/bin/env bash
# Every bad input of SPEC section 5: its exit code, exactly one line on
# stderr naming the path, and nothing touched outside the sidecar.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# --- missing pack ---------------------------------------------------------------
expect_error 66 "run --no-create: missing pack" "$T/missing" "$PACKLOCK" run --no-create "$T/missing" true
expect_error 66 "probe: missing pack" "$T/missing" "$PACKLOCK" probe "$T/missing"
expect_error 66 "status: missing path" "$T/missing" "$PACKLOCK" status "$T/missing"
check "nothing was created" test ! -e "$T/missing"

# --- the pack is a file -----------------------------------------------------------
echo precious >"$T/file"
# A pack that is a symbolic link to nothing: said so, and its target is not
# created (it may be a mount point not mounted yet).
ln -s "$T/nowhere/pack" "$T/dangling"
expect_error 66 "run: dangling symlink pack" "$T/dangling" "$PACKLOCK" run "$T/dangling" true
check "run: the dangling symlink is named as such" grep -q "symbolic link to nothing" "$T/err"
check "run: the link's target was not created" test ! -e "$T/nowhere"
expect_error 66 "probe: dangling symlink pack" "$T/dangling" "$PACKLOCK" probe "$T/dangling"
check "probe: the dangling symlink is named as such" grep -q "symbolic link to nothing" "$T/err"

# A directory whose filesystem cannot hold a sidecar (/proc) is not "no such
# pack": it exists.
expect_error 73 "run: a pack under /proc" "/proc/self" "$PACKLOCK" run /proc/self true
check "run under /proc: the filesystem is named as the cause" grep -q "cannot hold a lock file" "$T/err"

expect_error 66 "run: pack is a file" "$T/file" "$PACKLOCK" run "$T/file" true
expect_error 66 "probe: pack is a file" "$T/file" "$PACKLOCK" probe "$T/file"
expect_error 66 "status: path is a file" "$T/file" "$PACKLOCK" status "$T/file"
check "the file is untouched" test "$(cat "$T/file")" = precious

# --- the sidecar is a symlink, a directory, a FIFO ---------------------------------
mkdir -p "$T/link" "$T/dir/.grex-lock" "$T/fifo"
echo victim >"$T/victim"
touch -d '2001-01-01' "$T/victim"
ln -s "$T/victim" "$T/link/.grex-lock"
mkfifo "$T/fifo/.grex-lock"
for kind in link dir fifo; do
  expect_error 73 "run: sidecar is a $kind" "$T/$kind" timeout 20 "$PACKLOCK" run "$T/$kind" -- touch "$T/ran.$kind"
  check "run: sidecar is a $kind: the command did not run" test ! -e "$T/ran.$kind"
  expect_error 73 "probe: sidecar is a $kind" "$T/$kind" timeout 20 "$PACKLOCK" probe "$T/$kind"
  expect_error 73 "status: sidecar is a $kind" "$T/$kind" timeout 20 "$PACKLOCK" status "$T/$kind"
done
check "the symlink's target is unchanged" test "$(cat "$T/victim")" = victim
check "the symlink's target was not touched" test "$(stat -c %Y "$T/victim")" = "$(date -d 2001-01-01 +%s)"
check "the symlink is still a symlink" test -L "$T/link/.grex-lock"

# --- permission denied, as a user who is not root ------------------------------------
mkdir -p "$T/closed" "$T/locked"
touch "$T/closed/.grex-lock" "$T/locked/.grex-lock"
chmod 700 "$T/closed"
chmod 000 "$T/locked/.grex-lock"
expect_error 77 "run: pack not accessible" "$T/closed" "${NOBODY[@]}" "$NOBODY_BIN/packlock" run "$T/closed" true
expect_error 77 "run: sidecar not readable" "$T/locked" "${NOBODY[@]}" "$NOBODY_BIN/packlock" run "$T/locked" true
expect_error 77 "probe: pack not accessible" "$T/closed" "${NOBODY[@]}" "$NOBODY_BIN/packlock" probe "$T/closed"
expect_error 77 "status: path not accessible" "$T/closed" "${NOBODY[@]}" "$NOBODY_BIN/packlock" status "$T/closed"
mkdir -p "$T/open"
chmod 777 "$T/open"
expect_error 77 "run: cannot create a pack in a directory it may not write" "$T/closed/sub" \
  "${NOBODY[@]}" "$NOBODY_BIN/packlock" run "$T/closed/sub" true
mkdir -p "$T/readonly" && touch "$T/readonly/.grex-lock" && chmod 644 "$T/readonly/.grex-lock"
expect 0 "a user who may only read the sidecar still gets the lock" \
  "${NOBODY[@]}" "$NOBODY_BIN/packlock" run "$T/readonly" -- sh -c 'flock -n "$0/.grex-lock" true; echo $?' "$T/readonly"
check "and holds it while the command runs" test "$(cat "$T/out")" = 1

# --- name too long: a usage error (the path is wrong as written), not "no such pack"
long=$T/$(printf 'x%.0s' $(seq 300))
expect_error 64 "run: name too long" "xxxxxxxx" "$PACKLOCK" run "$long" true
check "run: name too long says so" grep -q "File name too long" "$T/err"
expect_error 64 "probe: name too long" "xxxxxxxx" "$PACKLOCK" probe "$long"
longer=$T/$(printf 'd%.0s/' $(seq 2100))  # over PATH_MAX in all
expect_error 64 "run: path over PATH_MAX" "/d/d/d/" "$PACKLOCK" run "$longer" true

# --- descriptor exhaustion ------------------------------------------------------------------
# With every descriptor above 2 closed, a limit of N leaves N - 3 for run:
# its signal pipe, the pack directory, the sidecar and the exec pipe are
# in turn the ones that fail.
mkdir -p "$T/fds"
# (ldd's output is read whole first: under pipefail, grep -q leaving at the
# first match can kill ldd with SIGPIPE and fail the test of the pipe.)
libraries=$(ldd "$PACKLOCK" 2>/dev/null || true)
if grep -qE 'lib(a|t|ub)san' <<<"$libraries"; then
  # A sanitizer's runtime opens files of its own (/proc/self/maps) and
  # reports false errors when it cannot.
  echo "note: sanitizer build; descriptor exhaustion not tested" >&2
else
  for limit in 4 5 6 7; do
    expect_error 71 "run with $limit descriptors" "$T/fds" bash -c '
      for fd in /proc/$$/fd/*; do fd=${fd##*/}; ((fd > 2)) && eval "exec $fd>&-"; done
      ulimit -n '"$limit"'
      exec "$0" run "$1" true' "$PACKLOCK" "$T/fds"
  done
fi

# --- the command cannot be run -------------------------------------------------------
mkdir -p "$T/pack"
expect_error 127 "command not found" "$T/pack" "$PACKLOCK" run "$T/pack" no-such-command-here
grep -q "no-such-command-here" "$T/err" && pass || fail "not found names the command"
echo 'echo hi' >"$T/not-executable"
expect_error 126 "command not executable" "$T/pack" "$PACKLOCK" run "$T/pack" "$T/not-executable"
expect_error 126 "command is a directory" "$T/pack" "$PACKLOCK" run "$T/pack" "$T/dir"
expect_error 127 "-c: the shell reports a missing command" "not found" \
  env SHELL=/bin/sh "$PACKLOCK" run "$T/pack" -c 'no-such-command-here'
check "the pack is free after failed commands" sidecar_free "$T/pack"

# --- bad options and durations of every subcommand ------------------------------------
expect_error 64 "packlock without a subcommand" "subcommand" "$PACKLOCK"
expect_error 64 "an unknown subcommand" "frob" "$PACKLOCK" frob
expect_error 64 "an unknown global option" "--frob" "$PACKLOCK" --frob
expect_error 64 "help of an unknown subcommand" "frob" "$PACKLOCK" help frob
expect_error 64 "probe without PACK" "PACK" "$PACKLOCK" probe
expect_error 64 "probe --wait 5x" "--wait" "$PACKLOCK" probe --wait 5x "$T/pack"
expect_error 64 "probe --stale-after x" "--stale-after" "$PACKLOCK" probe --stale-after x "$T/pack"
expect_error 64 "probe --json -q" "--json" "$PACKLOCK" probe --json -q "$T/pack"
expect_error 64 "probe --bogus" "--bogus" "$PACKLOCK" probe --bogus "$T/pack"
expect_error 64 "status --interval x" "--interval" "$PACKLOCK" status --interval x
expect_error 64 "status --max-depth -1" "--max-depth" "$PACKLOCK" status --max-depth -1
expect_error 64 "status --max-depth x" "--max-depth" "$PACKLOCK" status --max-depth x
expect_error 64 "status --bogus" "--bogus" "$PACKLOCK" status --bogus
expect_error 64 "run --stale-policy x" "--stale-policy" "$PACKLOCK" run --stale-policy x "$T/pack" true

finish
