#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Pack the guest initramfs for one kernel.
#
#   tests/vm/initramfs.sh KVER MODDIR OUTPUT [DKMSROOT]
#
# KVER    the kernel release; the DKMS-installed module is taken from
#         /lib/modules/KVER/updates/dkms/uffdx.ko[.xz|.zst|.gz]
# MODDIR  that kernel's own /lib/modules/KVER tree (dependencies of uffdx,
#         test_hmm.ko when the kernel has it)
# OUTPUT  the gzip'ed newc cpio to write
# DKMSROOT  the root DKMS installed into (a chroot); default: the host
#
# Contents: busybox-static and its applet links, /init (guest-init.sh), the
# module tree (decompressed: busybox's modprobe reads plain .ko files; the
# bytes the kernel loads are the same), depmod'ed with `depmod -b`, the test
# programs of tests/build listed in TESTS, BENCH and STRESS (plus demo), and
# userlib's uffdx-info when it is built and static.

set -euo pipefail

# shellcheck source=tests/vm/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# copy_module SRC DEST: copy a module, decompressing .xz/.zst/.gz.
copy_module() {
	local src=$1 dest=$2
	mkdir -p "$(dirname "$dest")"
	case $src in
	*.ko.xz) xz -dc "$src" >"$dest" ;;
	*.ko.zst) zstd -qdc "$src" >"$dest" ;;
	*.ko.gz) gzip -dc "$src" >"$dest" ;;
	*.ko) cp "$src" "$dest" ;;
	*) die "not a module: $src" ;;
	esac
}

# add_deps MODULE_FILE: copy the modules MODULE_FILE depends on (recursively)
# from $MODDIR, using its modules.dep.
add_deps() {
	local ko=$1 dep path
	for dep in $(modinfo -F depends "$ko" | tr ',' ' '); do
		dep=${dep//-/_}
		path=$(sed -n 's/:.*//p' "$MODDIR/modules.dep" |
			awk -v m="$dep" '{ b = $0; sub(/.*\//, "", b); sub(/\.ko.*/, "", b);
				gsub(/-/, "_", b); if (b == m) { print; exit } }')
		[ -n "$path" ] || die "uffdx needs module '$dep', not found in $MODDIR"
		[ -e "$MODROOT/${path%.ko*}.ko" ] && continue
		copy_module "$MODDIR/$path" "$MODROOT/${path%.ko*}.ko"
		add_deps "$MODROOT/${path%.ko*}.ko"
	done
}

# is_static FILE: FILE is an ELF executable without a program interpreter.
is_static() {
	! readelf -l "$1" 2>/dev/null | grep -q 'INTERP'
}

# add_programs ROOT: the test programs listed by the test build.
add_programs() {
	local root=$1 build="$UFFDX_TOP/tests/build" list prog f
	mkdir -p "$root/tests"
	for list in TESTS BENCH STRESS; do
		[ -f "$build/$list" ] || continue
		cp "$build/$list" "$root/tests/$list"
		while read -r prog _; do
			case $prog in '' | '#'*) continue ;; esac
			if [ -x "$build/$prog" ]; then
				cp "$build/$prog" "$root/tests/"
				is_static "$build/$prog" ||
					log "warning: tests/build/$prog is not static; it will not run in the guest"
			else
				log "warning: $list names '$prog', but tests/build/$prog does not exist"
			fi
		done <"$build/$list"
	done
	[ -x "$build/demo" ] && cp "$build/demo" "$root/tests/"
	# userlib builds uffdx-info-static for exactly this; a uffdx-info that
	# happens to be static does as well.
	for f in uffdx-info-static uffdx-info; do
		f="$UFFDX_TOP/userlib/$f"
		if [ -x "$f" ] && is_static "$f"; then
			cp "$f" "$root/bin/uffdx-info"
			break
		fi
	done
	[ -e "$root/bin/uffdx-info" ] ||
		log "warning: no static userlib/uffdx-info-static; the guest will not run uffdx-info"
	return 0
}

main() {
	[ $# -eq 3 ] || [ $# -eq 4 ] || die "usage: $0 KVER MODDIR OUTPUT [DKMSROOT]"
	local kver=$1 out=$3 dkmsroot=${4:-} root ko f applet
	MODDIR=$2

	root=$(mktemp -d /tmp/uffdx-initramfs.XXXXXX)
	# shellcheck disable=SC2064  # expand now: $root is local
	trap "rm -rf '$root'" EXIT
	mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,tmp,run,root}
	# mktemp -d made the root 0700: the guest's / would be closed to every
	# user but root, and the tests that run as another uid would see
	# EACCES for the wrong reason.  /tmp is a tmpfs (1777) in the guest.
	chmod 0755 "$root"

	cp /bin/busybox "$root/bin/busybox"
	for applet in $(/bin/busybox --list-full); do
		[ -e "$root/$applet" ] || ln -s /bin/busybox "$root/$applet"
	done
	printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' \
		>"$root/etc/passwd"
	printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
	if [ "$(id -u)" -eq 0 ]; then
		mknod -m 600 "$root/dev/console" c 5 1
	fi
	install -m 0755 "$UFFDX_VM/guest-init.sh" "$root/init"

	# The module DKMS installed for this kernel, never a local build.
	MODROOT="$root/lib/modules/$kver"
	ko=$(find "$dkmsroot/lib/modules/$kver/updates/dkms" -maxdepth 1 -name 'uffdx.ko*' 2>/dev/null | head -n 1)
	[ -n "$ko" ] || die "no DKMS-installed uffdx.ko under $dkmsroot/lib/modules/$kver/updates/dkms"
	copy_module "$ko" "$MODROOT/updates/dkms/uffdx.ko"
	add_deps "$MODROOT/updates/dkms/uffdx.ko"
	# The reference peer of the debug kernel, loaded only by tests that want it.
	f=$(find "$MODDIR" -name 'test_hmm.ko*' | head -n 1)
	[ -n "$f" ] && copy_module "$f" "$MODROOT/kernel/lib/test_hmm.ko"
	for f in modules.order modules.builtin modules.builtin.modinfo; do
		[ -f "$MODDIR/$f" ] && cp "$MODDIR/$f" "$MODROOT/"
	done
	depmod -b "$root" "$kver"

	add_programs "$root"

	(cd "$root" && find . -print0 | cpio --null -o -H newc --quiet) |
		gzip -1 >"$out.tmp"
	mv "$out.tmp" "$out"
}

main "$@"; exit $?
