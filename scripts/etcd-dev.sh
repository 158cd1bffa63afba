#!/usr/bin/env bash
# A one-member etcd on loopback, for trying packlock's cluster locks:
#
#   scripts/etcd-dev.sh [PORT]    clients on 127.0.0.1:PORT (default 2379),
#                                 peers on PORT+1
#
# Runs in the foreground until Ctrl-C. Its data lives in a temporary
# directory, removed when it stops.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$root/scripts/bootstrap.sh"
port=${1:-2379}
peer=$((port + 1))
data=$(mktemp -d)
trap 'rm -rf "$data"' EXIT
echo "etcd-dev.sh: etcd on 127.0.0.1:$port; in another shell:" >&2
echo "  export PACKLOCK_ETCD_ENDPOINTS=127.0.0.1:$port" >&2
etcd --name dev --data-dir "$data" --logger zap --log-level warn \
  --listen-client-urls "http://127.0.0.1:$port" --advertise-client-urls "http://127.0.0.1:$port" \
  --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
  --initial-cluster "dev=http://127.0.0.1:$peer"
