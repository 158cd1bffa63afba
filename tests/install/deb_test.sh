#!/usr/bin/env bash
# cpack -G DEB makes an installable package: unpacked into a scratch root
# (dpkg -x), it holds the command and its links, the library, the headers,
# the CMake package, the pkg-config file, the manual pages and the bash
# completion, and its command runs from there.
set -euo pipefail
build=$1
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

cpack -G DEB --config "$build/CPackConfig.cmake" -B "$scratch/out" >/dev/null
deb=$(find "$scratch/out" -maxdepth 1 -name 'packlock_*.deb')
test -n "$deb"
info=$(dpkg-deb --info "$deb")
grep -q '^ Depends: .*libc6' <<<"$info"
dpkg -x "$deb" "$scratch/root"
usr=$scratch/root/usr
for path in bin/packlock bin/packlock-run bin/packlock-probe bin/packlock-status \
            include/packlock/packlock.hpp lib/libpacklock.so \
            lib/cmake/packlock/packlock-config.cmake lib/pkgconfig/packlock.pc \
            share/man/man1/packlock.1 share/man/man1/packlock-run.1 \
            share/man/man1/packlock-probe.1 share/man/man1/packlock-status.1 \
            share/man/man3/libpacklock.3 share/bash-completion/completions/packlock; do
  test -e "$usr/$path" || { echo "deb lacks /usr/$path" >&2; exit 1; }
done
export LD_LIBRARY_PATH=$usr/lib
version=$("$usr/bin/packlock" --version)
[[ $version == "packlock "* ]]
"$usr/bin/packlock" run "$scratch/pack" -- true
test -f "$scratch/pack/.grex-lock"
echo "the .deb installs into a scratch root and its packlock runs"
