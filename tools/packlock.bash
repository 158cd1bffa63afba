# bash completion for packlock and its links packlock-run, packlock-probe
# and packlock-status. Needs nothing but bash itself.

# The options of a subcommand ("" for packlock's own); tests/cli checks
# that these are exactly the options its --help lists.
_packlock_options() {
  case $1 in
    run) echo "-s --shared -x --exclusive -n --nonblock -w --timeout -E --conflict-exit-code
               -c --command --stale-after --heartbeat --stale-policy --no-create
               --no-record-command --etcd --key --cacert --cert --key-file --user
               --password --dial-timeout
               -v --verbose -q --quiet -h --help" ;;
    probe) echo "--json -q --quiet --try --stale-after --wait --missing-ok --etcd --cacert --cert
                 --key-file --user --password --dial-timeout -h --help" ;;
    status) echo "--json --max-depth --held --stale-after --watch --interval --etcd --cacert
                  --cert --key-file --user --password --dial-timeout -h --help" ;;
    *) echo "-h --help -V --version" ;;
  esac
}

# Options whose value is the next word.
_packlock_takes_value() {
  case $1 in
    -w | --timeout | -E | --conflict-exit-code | -c | --command | --stale-after | --heartbeat | \
      --stale-policy | --wait | --max-depth | --interval | --etcd | --key | --cacert | --cert | \
      --key-file | --user | --password | --dial-timeout) return 0 ;;
  esac
  return 1
}

# run: after PACK come the command and its arguments.
_packlock_run_command() {
  local first=$1 i pack=0
  for ((i = first; i < COMP_CWORD; i++)); do
    if _packlock_takes_value "${COMP_WORDS[i]}"; then
      ((i++))
    elif [[ ${COMP_WORDS[i]} != -* || ${COMP_WORDS[i]} == - ]]; then
      pack=$i
      break
    fi
  done
  ((pack > 0)) || return 1
  local command_at=$((pack + 1))
  [[ ${COMP_WORDS[command_at]:-} == -- ]] && ((command_at++))
  if ((COMP_CWORD == command_at)); then
    COMPREPLY=($(compgen -c -- "$cur"))
    ((COMP_CWORD == pack + 1)) && COMPREPLY+=($(compgen -W "-- -c" -- "$cur"))
  else
    compopt -o filenames 2>/dev/null
    COMPREPLY=($(compgen -f -- "$cur"))
  fi
  return 0
}

_packlock() {
  local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD - 1]}
  local sub="" first=1 i
  COMPREPLY=()
  case ${COMP_WORDS[0]##*/} in
    packlock-run) sub=run ;;
    packlock-probe) sub=probe ;;
    packlock-status) sub=status ;;
    *)
      for ((i = 1; i < COMP_CWORD; i++)); do
        if [[ ${COMP_WORDS[i]} != -* ]]; then
          sub=${COMP_WORDS[i]}
          first=$((i + 1))
          break
        fi
      done
      if [[ -z $sub ]]; then
        if [[ $cur == -* ]]; then
          COMPREPLY=($(compgen -W "$(_packlock_options "")" -- "$cur"))
        else
          COMPREPLY=($(compgen -W "run probe status help" -- "$cur"))
        fi
        return
      fi
      ;;
  esac
  if [[ $sub == help ]]; then
    ((COMP_CWORD == first)) && COMPREPLY=($(compgen -W "run probe status" -- "$cur"))
    return
  fi
  [[ $sub == run ]] && _packlock_run_command "$first" && return
  if [[ $prev == --stale-policy ]]; then
    COMPREPLY=($(compgen -W "safe mtime" -- "$cur"))
    return
  fi
  _packlock_takes_value "$prev" && return  # a duration, a number, a shell command
  if [[ $cur == -* ]]; then
    COMPREPLY=($(compgen -W "$(_packlock_options "$sub")" -- "$cur"))
  else
    compopt -o filenames 2>/dev/null
    COMPREPLY=($(compgen -d -- "$cur"))  # packs are directories
  fi
}

complete -F _packlock packlock packlock-run packlock-probe packlock-status
