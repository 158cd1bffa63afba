#!/usr/bin/env bash
# Installs the build into a scratch prefix, then builds and runs a consumer
# project that finds it with find_package(packlock CONFIG) and another with
# pkg-config.
set -euo pipefail
build=$1 consumer=$2 sanitize=${3:-}
# A sanitized library needs its runtime in the consumer too.
flags=${sanitize:+-fsanitize=$sanitize}
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

cmake --install "$build" --prefix "$scratch/prefix" >/dev/null
cmake -S "$consumer" -B "$scratch/build" -DCMAKE_PREFIX_PATH="$scratch/prefix" \
  -DCMAKE_CXX_FLAGS="$flags" >/dev/null
cmake --build "$scratch/build" >/dev/null
libdir=$(dirname "$(find "$scratch/prefix" -name 'libpacklock.so' | head -n1)")
LD_LIBRARY_PATH=$libdir "$scratch/build/consumer" "$scratch/pack"
test -f "$scratch/pack/.grex-lock"

PKG_CONFIG_PATH=$libdir/pkgconfig
export PKG_CONFIG_PATH
# shellcheck disable=SC2046
g++ $flags "$consumer/main.cpp" -o "$scratch/consumer-pc" $(pkg-config --cflags --libs packlock)
LD_LIBRARY_PATH=$libdir "$scratch/consumer-pc" "$scratch/pack2"
test -f "$scratch/pack2/.grex-lock"
test -f "$scratch/prefix/share/man/man3/libpacklock.3"
echo "find_package and pkg-config consumers built and ran"
