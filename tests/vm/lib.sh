# SPDX-License-Identifier: GPL-2.0
# shellcheck shell=bash
#
# Common helpers for the tests/vm scripts.  Sourced, never executed.
#
# Everything that is downloaded or built lives outside the repository, under
# $UFFDX_CACHE (default /var/cache/uffdx):
#
#   src/linux-source-<ver>/     pristine extracted Debian linux-source trees
#   kernels/<kver>/             one directory per kernel of the matrix:
#       vmlinuz                 the boot image
#       modroot/lib/modules/<kver>/  the kernel's own modules tree (guest side)
#       build/                  (debug kernel only) the O= build tree that is
#                               /lib/modules/<kver>/build on the host
#       READY                   written last; a directory without it is
#                               incomplete and never used
#   debs/                       downloaded .deb files
#   apt-<suite>/                private apt configurations (bullseye, sid)
#   logs/                       console logs of every guest run
#   locks/                      flock files

UFFDX_TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck disable=SC2034  # used by the scripts that source this
UFFDX_VM="$UFFDX_TOP/tests/vm"
UFFDX_CACHE=${UFFDX_CACHE:-/var/cache/uffdx}
export UFFDX_CACHE

# log MSG...: progress message on stderr, so stdout stays parseable.
log() {
	printf '[uffdx-vm %(%H:%M:%S)T] %s\n' -1 "$*" >&2
}

die() {
	printf 'uffdx-vm: error: %s\n' "$*" >&2
	exit 1
}

# as_root CMD...: run a command as root (the scripts install packages and
# write under /lib/modules and /usr/src).
as_root() {
	if [ "$(id -u)" -eq 0 ]; then
		"$@"
	else
		sudo "$@"
	fi
}

# with_lock NAME CMD...: run CMD holding an exclusive flock on NAME, so two
# concurrent runs never build or download the same thing at once.
with_lock() {
	local name=$1
	shift
	mkdir -p "$UFFDX_CACHE/locks"
	(
		flock 9
		"$@"
	) 9>"$UFFDX_CACHE/locks/$name.lock"
}

# version_of PACKAGE: the package version installed on the host, or empty.
version_of() {
	dpkg-query -W -f='${db:Status-Status} ${Version}\n' "$1" 2>/dev/null |
		sed -n 's/^installed //p'
}

# mod_version: PACKAGE_VERSION from dkms.conf.
mod_version() {
	sed -n 's/^PACKAGE_VERSION="\(.*\)"/\1/p' "$UFFDX_TOP/dkms.conf"
}

# indent: print stdin indented, for blocks of context under a result line.
indent() {
	sed 's/^/    | /'
}

# elapsed START: seconds since START (an epoch value from `date +%s`).
elapsed() {
	echo $(($(date +%s) - $1))
}
