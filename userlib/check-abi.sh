#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# check-abi.sh LIB MAP: the shared library exports exactly the public
# functions declared in libuffdx.h, each listed in MAP, and nothing else.
set -eu
lib=$1 map=$2
dir=$(dirname "$0")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

nm -D --defined-only "$lib" | awk '$2 == "T" { sub(/@.*/, "", $3); print $3 }' |
	sort -u > "$tmp/exported"
sed -n 's/^[[:space:]]*\(uffdx_[a-z_]*\);$/\1/p' "$map" | sort -u > "$tmp/map"
sed -n 's/^[a-z].*[ *]\(uffdx_[a-z_]*\)(.*/\1/p' "$dir/libuffdx.h" |
	sort -u > "$tmp/header"

status=0
if ! cmp -s "$tmp/exported" "$tmp/map"; then
	echo "check-abi: exported symbols differ from $map:" >&2
	diff "$tmp/map" "$tmp/exported" >&2 || true
	status=1
fi
if ! cmp -s "$tmp/header" "$tmp/map"; then
	echo "check-abi: libuffdx.h declarations differ from $map:" >&2
	diff "$tmp/map" "$tmp/header" >&2 || true
	status=1
fi
soname=$(readelf -d "$lib" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
case $soname in
libuffdx.so.[0-9]*) ;;
*) echo "check-abi: bad soname '$soname'" >&2; status=1 ;;
esac
[ $status -eq 0 ] && echo "check-abi: $(wc -l < "$tmp/map") symbols, soname $soname: ok"
exit $status
