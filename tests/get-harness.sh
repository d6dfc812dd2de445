#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# Fetch the kselftest harness headers (GPL-2.0-only, from Debian's
# linux-source-6.12) into tests/include/.  They are never committed
# (tests/include/ is gitignored); the test binaries built with them are
# GPL-2.0-only.
#
# Sources, in order:
#   1. ${UFFDX_CACHE}/src/linux-source-6.*/ (an extracted tree)
#   2. ${UFFDX_CACHE}/kselftest/            (copies cached by an earlier run)
#   3. /usr/src/linux-source-6.12.tar.xz    (extract just the two files)
#   4. as root: apt-get install linux-source-6.12, then 3.
set -eu

UFFDX_CACHE=${UFFDX_CACHE:-/var/cache/uffdx}
here=$(cd "$(dirname "$0")" && pwd)
dest=$here/include
cache=$UFFDX_CACHE/kselftest
files="kselftest_harness.h kselftest.h"
sub=tools/testing/selftests

have_all() {
	for f in $files; do [ -s "$1/$f" ] || return 1; done
}

install_from() {
	mkdir -p "$dest"
	for f in $files; do cp "$1/$f" "$dest/$f.tmp" && mv "$dest/$f.tmp" "$dest/$f"; done
	echo "get-harness: kselftest headers from $2" >&2
	# Cache them, best effort (the cache may not be writable).
	if [ "$1" != "$cache" ] && mkdir -p "$cache" 2>/dev/null; then
		for f in $files; do cp "$1/$f" "$cache/$f" 2>/dev/null || true; done
		echo "$2" > "$cache/SOURCE" 2>/dev/null || true
	fi
}

for tree in "$UFFDX_CACHE"/src/linux-source-6.*; do
	if [ -d "$tree/$sub" ] && have_all "$tree/$sub"; then
		install_from "$tree/$sub" "$tree"
		exit 0
	fi
done

if have_all "$cache"; then
	install_from "$cache" "$(cat "$cache/SOURCE" 2>/dev/null || echo "$cache")"
	exit 0
fi

extract() {
	tarball=$1
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	top=$(basename "$tarball" .tar.xz)
	members=""
	for f in $files; do members="$members $top/$sub/$f"; done
	# shellcheck disable=SC2086
	tar -xJf "$tarball" -C "$tmp" $members
	install_from "$tmp/$top/$sub" "$tarball"
	rm -rf "$tmp"
	trap - EXIT
}

tarball=
for t in /usr/src/linux-source-6.12.tar.xz /usr/src/linux-source-6.*.tar.xz; do
	if [ -f "$t" ]; then tarball=$t; break; fi
done

if [ -z "$tarball" ]; then
	if [ "$(id -u)" != 0 ]; then
		echo "get-harness: no kselftest headers found; install linux-source-6.12 (as root) or set UFFDX_CACHE" >&2
		exit 1
	fi
	apt-get install -y --no-install-recommends linux-source-6.12 >&2
	tarball=/usr/src/linux-source-6.12.tar.xz
	[ -f "$tarball" ] || { echo "get-harness: $tarball missing after install" >&2; exit 1; }
fi

extract "$tarball"
