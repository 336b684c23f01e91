#!/usr/bin/env bash
# Unpacks Debian's exim4-daemon-heavy into a cache dir of the checkout and prints the
# path of its exim4 binary. The peer tests (tests/peers/test_exim.py) run that binary
# with a private config; it is never installed, because every Debian MTA package
# conflicts with postfix, which the tests need too. Its shared libraries are in
# bootstrap.sh's test_pkgs. Safe to run again: an existing unpacked copy is reused.
# Usage: scripts/fetch-exim.sh [CACHE_DIR]   (default: .cache/exim in the checkout)
set -euo pipefail
cd "$(dirname "$0")/.."

dest=${1:-.cache/exim}
binary=$dest/heavy/usr/sbin/exim4

if [ ! -x "$binary" ]; then
    mkdir -p "$dest"
    (
        cd "$dest"
        rm -f exim4-daemon-heavy_*.deb
        # apt-get download works unprivileged; as root it warns that the download is
        # not sandboxed (the _apt user cannot write here), which is harmless.
        apt-get download -q exim4-daemon-heavy >&2
        rm -rf heavy.tmp
        dpkg -x exim4-daemon-heavy_*.deb heavy.tmp
        rm -rf heavy
        mv heavy.tmp heavy
    )
fi
realpath "$binary"
