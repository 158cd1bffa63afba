#!/usr/bin/env bash
# The --help of packlock and of each subcommand agrees with its manual
# page: every option --help lists is an entry of the page's OPTIONS, and
# every entry there is an option --help lists.
#
#   help_matches_man_test.sh PACKLOCK_BINARY MAN_DIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
MAN_DIR=$2

# The options of a --help text: "-s, --shared ..." -> "-s" "--shared".
help_options() {
  sed -n '/^Options:/,/^$/p' | grep -oE '^ +(-[A-Za-z], )?--[a-z-]+' | tr -d ',' | tr ' ' '\n' | grep .
}

# The options of the OPTIONS section of a page: the first line of each
# .TP entry, with troff's escapes and fonts taken off.
page_options() {
  sed 's/\\-/-/g; s/\\f[BIRP]//g' "$1" |
    awk '/^\.SH /{in_options = ($2 == "OPTIONS")} in_options && tp {print; tp = 0} /^\.TP/{tp = 1}' |
    grep -oE '(^|[ "])-{1,2}[A-Za-z][a-z-]*' | tr -d ' "' | sort -u
}

for sub in "" run probe status; do
  page=$MAN_DIR/packlock${sub:+-$sub}.1
  "$PACKLOCK" $sub --help | help_options | sort -u >"$T/help.$sub"
  page_options "$page" >"$T/page.$sub"
  check "packlock $sub --help lists options" test -s "$T/help.$sub"
  while read -r option; do
    grep -qxF -- "$option" "$T/page.$sub" && pass ||
      fail "packlock $sub --help has $option, $(basename "$page") does not describe it"
  done <"$T/help.$sub"
  while read -r option; do
    grep -qxF -- "$option" "$T/help.$sub" && pass ||
      fail "$(basename "$page") describes $option, packlock $sub --help does not list it"
  done <"$T/page.$sub"
done

finish
