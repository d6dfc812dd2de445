#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Install everything `make check`, `make lint` and `make demo` need on a
# Debian 12 machine that has only git, make and gcc.  Idempotent: when every
# package is present it changes nothing and takes well under a second.
#
# Only bookworm and bookworm-backports are ever added to the system's apt
# sources.  Packages from other suites (bullseye, sid) are fetched with a
# private apt configuration by tests/vm/foreign.sh, never from here.

set -euo pipefail

# shellcheck source=tests/vm/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

BPO_SOURCES=/etc/apt/sources.list.d/bookworm-backports.sources

PACKAGES=(
	# toolchain, kernel and module builds
	gcc g++ make libc6-dev bc flex bison libelf-dev libssl-dev dwarves
	kmod cpio xz-utils zstd perl python3 rsync
	dkms
	# guests
	qemu-system-x86 busybox-static
	# lint
	sparse shellcheck
	# check-all: chroots for kernels whose headers want another gcc
	debootstrap
)

# linux-source-6.12: bookworm-security carries it now, as does backports.
BPO_PACKAGES=(linux-source-6.12)

# missing PKG...: print the packages of the list that are not installed.
missing() {
	local p
	for p in "$@"; do
		[ -n "$(version_of "$p")" ] || echo "$p"
	done
}

# ensure_backports: add bookworm-backports to apt sources when missing.
# Returns 0 if the file was created (package lists need an update).
ensure_backports() {
	[ -f "$BPO_SOURCES" ] && return 1
	grep -rqs '^[^#]*bookworm-backports' /etc/apt/sources.list \
		/etc/apt/sources.list.d/ && return 1
	log "adding bookworm-backports to $BPO_SOURCES"
	as_root tee "$BPO_SOURCES" >/dev/null <<'EOF'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
	return 0
}

main() {
	local -a need
	local updated=0

	grep -qs 'VERSION_CODENAME=bookworm' /etc/os-release ||
		log "warning: this is not Debian 12 (bookworm); continuing anyway"

	if ensure_backports; then
		as_root apt-get update -q
		updated=1
	fi
	mapfile -t need < <(missing "${PACKAGES[@]}" "${BPO_PACKAGES[@]}")
	if [ "${#need[@]}" -eq 0 ]; then
		return 0
	fi
	log "installing: ${need[*]}"
	[ "$updated" -eq 1 ] || as_root apt-get update -q
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
		--no-install-recommends "${need[@]}"
}

main "$@"; exit $?
