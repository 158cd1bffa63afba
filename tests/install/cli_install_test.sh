#!/usr/bin/env bash
# cmake --install puts the packlock command, its three links, the manual
# pages and the bash completion in place, and the installed command runs.
set -euo pipefail
build=$1
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
prefix=$scratch/prefix

cmake --install "$build" --prefix "$prefix" >/dev/null
for name in packlock packlock-run packlock-probe packlock-status; do
  test -x "$prefix/bin/$name"
  test -e "$prefix/share/bash-completion/completions/$name"
done
for link in packlock-run packlock-probe packlock-status; do
  test "$(readlink "$prefix/bin/$link")" = packlock
done
for page in man1/packlock.1 man1/packlock-run.1 man1/packlock-probe.1 man1/packlock-status.1 \
            man3/libpacklock.3; do
  test -f "$prefix/share/man/$page"
done
# An empty entry of a run path makes the loader search the current
# directory: the installed command may not have one, nor the built one
# when it carries the engine (the default build; CMake leaves a trailing
# empty entry in the build tree's run path of a command it must rewrite).
binaries=("$prefix/bin/packlock")
# (Outputs are read whole before grep -q: under pipefail, grep leaving at
# the first match can kill the writer with SIGPIPE and fail the pipe.)
dynamic=$(readelf -d "$build/tools/packlock")
grep -q 'NEEDED.*libpacklock' <<<"$dynamic" || binaries+=("$build/tools/packlock")
for binary in "${binaries[@]}"; do
  runpath=$(readelf -d "$binary" | sed -n 's/.*(R\(UN\)\{0,1\}PATH).*\[\(.*\)\]$/\2/p')
  case ":$runpath:" in
    *::*) [[ -z $runpath ]] || { echo "$binary: run path with an empty entry: $runpath" >&2; exit 1; } ;;
  esac
done
grep -q '^packlock ' <<<"$("$prefix/bin/packlock" --version)"
"$prefix/bin/packlock-run" "$scratch/pack" -- sh -c 'test "$PACKLOCK_MODE" = exclusive'
grep -q ': free$' <<<"$("$prefix/bin/packlock-probe" "$scratch/pack")"
grep -q -- '--max-depth' <<<"$("$prefix/bin/packlock-status" --help)"
bash -c 'source "$1"; complete -p packlock-run' _ "$prefix/share/bash-completion/completions/packlock" >/dev/null
echo "the command, its links, manual pages and completion are installed and work"
