#!/usr/bin/env bash
# Installs the Debian packages packlock needs to build and test, and nothing
# else. Does nothing when they are all present. Run as root, or as a user who
# may use sudo.
#
# Extra packages can be named as arguments (scripts/bench.sh --plot asks for
# gnuplot this way).
set -euo pipefail

# The CLI tests drive util-linux's flock, setpriv and unshare and bsdutils'
# script, and read JSON with jq; the manual lint runs groff and mandoc. The
# cluster backend is built from etcd's .proto files (the golang-*-dev
# packages ship them) with gRPC, and tested against etcd and etcdctl;
# packlock-etcd links the static archives of gRPC and what it uses.
packages=(
  cmake g++ make pkg-config dpkg-dev
  libboost-filesystem-dev libboost-program-options-dev libboost-test-dev
  libasio-dev nlohmann-json3-dev
  libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc
  libgrpc-dev libabsl-dev libc-ares-dev libre2-dev libssl-dev zlib1g-dev
  golang-etcd-server-dev golang-github-gogo-protobuf-dev
  golang-github-grpc-ecosystem-grpc-gateway-dev etcd-server etcd-client
  util-linux bsdutils coreutils procps groff-base mandoc jq
  "$@"
)

missing=()
for pkg in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  [[ $status == "install ok installed" ]] || missing+=("$pkg")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

if [[ $(id -u) -eq 0 ]]; then
  as_root=()
elif command -v sudo >/dev/null; then
  as_root=(sudo)
else
  echo "bootstrap.sh: missing packages (${missing[*]}) and no root or sudo to install them" >&2
  exit 77
fi

echo "bootstrap.sh: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt_install() {
  "${as_root[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
}
# A fresh image often has empty package lists: refresh them once and retry
# rather than fail.
if ! apt_install; then
  "${as_root[@]}" apt-get update -q
  apt_install
fi
