#!/usr/bin/env bash
# The bash completion offers the subcommands, exactly the options each
# --help lists, the stale policies, directories for packs and commands
# after PACK.
#
#   completion_test.sh PACKLOCK_BINARY COMPLETION_FILE
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$2"

# complete WORD...: what completing the last WORD offers, one per line.
complete_words() {
  COMP_WORDS=("$@")
  COMP_CWORD=$(($# - 1))
  COMPREPLY=()
  _packlock
  printf '%s\n' "${COMPREPLY[@]}" | grep . | sort -u
}

check "subcommands" test "$(complete_words packlock "" | tr '\n' ' ')" = "help probe run status "
check "a subcommand by its start" test "$(complete_words packlock pr)" = probe
check "help's topics" test "$(complete_words packlock help "" | tr '\n' ' ')" = "probe run status "

for sub in "" run probe status; do
  "$PACKLOCK" $sub --help | sed -n '/^Options:/,/^$/p' | grep -oE '^ +(-[A-Za-z], )?--[a-z-]+' |
    tr -d ',' | tr ' ' '\n' | grep . | sort -u >"$T/help.$sub"
  if [[ -z $sub ]]; then
    complete_words packlock - >"$T/offered.$sub"
  else
    complete_words packlock "$sub" - >"$T/offered.$sub"
  fi
  check "packlock $sub: the options offered are those of --help" cmp -s "$T/help.$sub" "$T/offered.$sub"
done
check "the links complete as their subcommand" \
  test "$(complete_words packlock-probe --mi)" = "--missing-ok"
check "--stale-policy values" test "$(complete_words packlock run --stale-policy "" | tr '\n' ' ')" = "mtime safe "
check "a duration is not completed" test -z "$(complete_words packlock run -w "")"

mkdir -p "$T/packs/alpha" "$T/packs/beta"
touch "$T/packs/afile"
check "packs are directories" \
  test "$(complete_words packlock probe "$T/packs/a")" = "$T/packs/alpha"
check "run's PACK after options with values" \
  test "$(complete_words packlock run -w 5 "$T/packs/b")" = "$T/packs/beta"
check "after PACK, a command" bash -c "grep -qx echo <<<'$(complete_words packlock run "$T/packs/alpha" ech)'"
check "after PACK --, a command" bash -c "grep -qx echo <<<'$(complete_words packlock run -s "$T/packs/alpha" -- ech)'"
check "the command's arguments are files" \
  test "$(complete_words packlock run "$T/packs/alpha" ls "$T/packs/af")" = "$T/packs/afile"

finish
