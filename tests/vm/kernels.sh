#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# The kernel matrix: fetch (or build) each kernel once, cache it under
# $UFFDX_CACHE/kernels, and make its headers available to DKMS at
# /lib/modules/<kver>/build.
#
#   tests/vm/kernels.sh list default|all|bench|stress|demo
#   tests/vm/kernels.sh prepare NAME      prints KVER=, VMLINUZ=, MODDIR=,
#                                         DKMSROOT= (or SKIP=reason)
#
# Kernel names:
#   stock-6.1    Debian 12's own kernel, linux-image-6.1.0-N-amd64
#   bpo-6.12     bookworm-backports, linux-image-6.12.X+deb12-amd64
#   debug-6.12   self-built from Debian's linux-source-6.12 with KASAN,
#                lockdep, kmemleak, DEBUG_VM and DEVICE_PRIVATE (test_hmm)
#   bullseye-5.10, sid-7.x   check-all only (tests/vm/foreign.sh)
#
# Package names are resolved at run time with apt-cache (newest ABI), and
# image and headers are always the same package version (modversions CRCs
# must match).  Images are never installed on the host: `apt-get download`
# and `dpkg-deb -x` into the cache.  Headers likewise (see install_headers),
# with /lib/modules/<kver>/build pointing at them.
#
# When sourced, prepare_kernel NAME sets K_KVER, K_VMLINUZ and K_MODDIR (the
# kernel's own /lib/modules/<kver> tree, used to resolve module dependencies
# and to find test_hmm.ko), K_DKMSROOT (the root DKMS runs in: empty for
# the host, a chroot for foreign kernels), or K_SKIP (a reason this kernel
# cannot run).

set -euo pipefail

# shellcheck source=tests/vm/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Bump when the debug kernel's build recipe (not its config) changes.
DEBUG_RECIPE_REV=1

# kernel_list MODE: the kernel names MODE runs on, in order.
kernel_list() {
	case $1 in
	default) echo "stock-6.1 bpo-6.12 debug-6.12" ;;
	all) echo "stock-6.1 bpo-6.12 debug-6.12 bullseye-5.10 sid-7.x" ;;
	bench) echo "stock-6.1 bpo-6.12" ;;
	bench-all) echo "stock-6.1 bpo-6.12 sid-7.x" ;;
	stress) echo "debug-6.12" ;;
	demo) echo "stock-6.1" ;;
	*) die "unknown mode '$1'" ;;
	esac
}

# ---- Debian kernels ---------------------------------------------------------

# newest_pkg REGEX [SUITE]: the newest package name matching REGEX (apt-cache
# search --names-only), by version sort of the name; with SUITE, the newest
# that SUITE carries (bookworm-security also carries a 6.12 now, and the
# matrix wants bookworm-backports' one).
newest_pkg() {
	local p
	apt-cache search --names-only "$1" | awk '{ print $1 }' | sort -V -r |
		while read -r p; do
			if [ -z "${2:-}" ] || [ -n "$(suite_version "$p" "$2")" ]; then
				echo "$p"
				break
			fi
		done
}

# suite_version PKG SUITE: PKG's version in SUITE, or nothing.
suite_version() {
	apt-cache madison "$1" |
		awk -F'|' -v s=" $2/" 'index($3, s) { gsub(/ /, "", $2); print $2; exit }'
}

# candidate PKG: the candidate version apt would install.
candidate() {
	apt-cache policy "$1" | sed -n 's/^ *Candidate: //p'
}

# apt_download DIR PKG=VER: download a .deb into DIR.
apt_download() {
	local dir=$1 spec=$2
	mkdir -p "$dir"
	# apt drops privileges to _apt for downloads: let it write here.
	if [ "$(id -u)" -eq 0 ] && id _apt >/dev/null 2>&1; then
		chown _apt "$dir"
	fi
	(cd "$dir" && apt-get download -q "$spec" >&2)
}

# extract_image KVER PKG VER: unpack a linux-image .deb into
# kernels/<kver>/root, run depmod on its module tree (Debian's image does
# not ship modules.dep; postinst generates it), mark it READY.
extract_image() {
	local kver=$1 pkg=$2 ver=$3
	local kdir="$UFFDX_CACHE/kernels/$kver"

	if [ -f "$kdir/READY" ] && [ "$(cat "$kdir/READY")" = "$ver" ]; then
		return 0
	fi
	log "$kver: downloading $pkg=$ver"
	rm -rf "$kdir"
	mkdir -p "$kdir"
	# (Explicit returns: prepare_debian runs this where set -e is off.)
	apt_download "$UFFDX_CACHE/debs" "$pkg=$ver" || return 1
	dpkg-deb -x "$UFFDX_CACHE/debs/${pkg}_${ver//:/%3a}_amd64.deb" "$kdir/root" ||
		return 1
	[ -f "$kdir/root/boot/vmlinuz-$kver" ] ||
		die "$pkg has no boot/vmlinuz-$kver"
	depmod -b "$kdir/root" "$kver" || return 1
	echo "$ver" >"$kdir/READY"
}

# install_headers KVER PKG VER: make /lib/modules/<kver>/build point at
# linux-headers-<kver> at exactly VER.
#
# The headers are not installed with apt: Debian's 6.12 headers depend on
# the matching linux-image, and the host must not get kernel images (nor
# the initramfs and bootloader updates they trigger).  Instead the headers
# package and the two packages its build tree needs (linux-headers-*-common,
# linux-kbuild-*) are unpacked into kernels/<kver>/hdr, and the one absolute
# path in its Makefile is rewritten.  Headers that apt already installed at
# VER are used as they are.
install_headers() {
	local kver=$1 pkg=$2 ver=$3
	local kdir="$UFFDX_CACHE/kernels/$kver" hdr deps d mk

	if [ "$(version_of "linux-headers-$kver")" = "$ver" ] &&
		[ -e "/lib/modules/$kver/build/Makefile" ]; then
		return 0
	fi
	hdr="$kdir/hdr"
	if [ "$(cat "$hdr/READY" 2>/dev/null)" != "$ver" ]; then
		log "$kver: unpacking linux-headers-$kver=$ver into the cache"
		rm -rf "$hdr"
		mkdir -p "$hdr"
		# linux-headers-X-common and linux-kbuild-X come from the same
		# source package, at the same version.
		deps=$(apt-cache show "linux-headers-$kver=$ver" |
			sed -n 's/^Depends: //p' | head -n 1 | tr ',|' '\n' |
			sed -n 's/^ *\(linux-\(headers\|kbuild\)-[^ ]*\).*/\1/p')
		for d in "linux-headers-$kver" $deps; do
			apt_download "$UFFDX_CACHE/debs" "$d=$ver" || return 1
			dpkg-deb -x "$UFFDX_CACHE/debs/${d}_${ver//:/%3a}_"*.deb "$hdr" ||
				return 1
		done
		mk="$hdr/usr/src/linux-headers-$kver/Makefile"
		sed -i "s|^include /usr/src/|include $hdr/usr/src/|" "$mk"
		grep -q "^include $hdr/" "$mk" ||
			die "$kver: unexpected headers Makefile: $(cat "$mk")"
		echo "$ver" >"$hdr/READY"
	fi
	if [ -e "/lib/modules/$kver/build" ] && dpkg -S "/lib/modules/$kver/build" >/dev/null 2>&1; then
		log "warning: replacing dpkg's /lib/modules/$kver/build (installed headers are not $ver)"
	fi
	as_root mkdir -p "/lib/modules/$kver"
	as_root ln -sfn "$hdr/usr/src/linux-headers-$kver" "/lib/modules/$kver/build"
}

# prepare_debian NAME REGEX [SUITE]: newest kernel whose image package matches
# REGEX.  If that fails, the package lists are probably stale (the archive
# dropped that version, or has a newer ABI): update them and try again.  The
# second fetch_debian of a successful first one only finds everything cached.
prepare_debian() {
	if ! (fetch_debian "$@"); then
		log "$1: fetching the kernel failed; refreshing package lists and retrying"
		as_root apt-get update -q >&2
	fi
	fetch_debian "$@"
}

fetch_debian() {
	local name=$1 regex=$2 suite=${3:-} pkg kver ver hver

	pkg=$(newest_pkg "$regex" "$suite")
	[ -n "$pkg" ] || die "$name: no package matches $regex${suite:+ in $suite} (apt-get update?)"
	kver=${pkg#linux-image-}
	if [ -n "$suite" ]; then
		ver=$(suite_version "$pkg" "$suite")
	else
		ver=$(candidate "$pkg")
	fi
	hver=$(candidate "linux-headers-$kver")
	if [ "$ver" != "$hver" ]; then
		# Headers must match the image; prefer the image version if the
		# archive still has headers for it.
		apt-cache madison "linux-headers-$kver" | awk '{ print $3 }' |
			grep -qxF "$ver" ||
			die "$name: $pkg is $ver but linux-headers-$kver is $hver"
	fi
	with_lock "kernel-$kver" extract_image "$kver" "$pkg" "$ver" || return 1
	with_lock "kernel-$kver" install_headers "$kver" "$pkg" "$ver" || return 1

	K_KVER=$kver
	K_VMLINUZ="$UFFDX_CACHE/kernels/$kver/root/boot/vmlinuz-$kver"
	K_MODDIR="$UFFDX_CACHE/kernels/$kver/root/lib/modules/$kver"
}

# ---- the debug kernel ---------------------------------------------------------

# linux_source SERIES: path of the extracted Debian linux-source-SERIES tree,
# (re)extracted when the installed package version changes.  Prints the path.
linux_source() {
	with_lock "src-$1" extract_source "$1" >&2
	echo "$UFFDX_CACHE/src/linux-source-$1"
}

extract_source() {
	local series=$1 ver src
	ver=$(version_of "linux-source-$series")
	[ -n "$ver" ] || die "linux-source-$series is not installed (run tests/vm/deps.sh)"
	src="$UFFDX_CACHE/src/linux-source-$series"
	if [ "$(cat "$src/.uffdx-extracted" 2>/dev/null)" != "$ver" ]; then
		log "extracting linux-source-$series $ver"
		rm -rf "$src"
		mkdir -p "$UFFDX_CACHE/src"
		tar -C "$UFFDX_CACHE/src" -xf "/usr/src/linux-source-$series.tar.xz"
		echo "$ver" >"$src/.uffdx-extracted"
	fi
}

# apply_fragment CONFIG FRAGMENT: apply a Kconfig fragment with
# scripts/config (run before olddefconfig).
apply_fragment() {
	local config=$1 frag=$2 line sym val
	local -a args=()

	while IFS= read -r line; do
		if [[ $line =~ ^CONFIG_([A-Za-z0-9_]+)=(.*)$ ]]; then
			sym=${BASH_REMATCH[1]}
			val=${BASH_REMATCH[2]}
			case $val in
			y) args+=(-e "$sym") ;;
			m) args+=(-m "$sym") ;;
			\"*\") val=${val#\"}; args+=(--set-str "$sym" "${val%\"}") ;;
			*) args+=(--set-val "$sym" "$val") ;;
			esac
		elif [[ $line =~ ^#\ CONFIG_([A-Za-z0-9_]+)\ is\ not\ set$ ]]; then
			args+=(-d "${BASH_REMATCH[1]}")
		fi
	done <"$frag"
	"$SRC/scripts/config" --file "$config" "${args[@]}"
}

# verify_fragment CONFIG FRAGMENT: every option of FRAGMENT has the value it
# asked for (a "not set" option may also be absent: its dependencies are off).
verify_fragment() {
	local config=$1 frag=$2 line bad=0

	while IFS= read -r line; do
		if [[ $line =~ ^CONFIG_ ]]; then
			grep -qxF "$line" "$config" || {
				echo "debug kernel: '$line' did not stick: $(grep "^${line%%=*}=" "$config" || echo unset)" >&2
				bad=1
			}
		elif [[ $line =~ ^#\ (CONFIG_[A-Za-z0-9_]+)\ is\ not\ set$ ]]; then
			if grep -q "^${BASH_REMATCH[1]}=" "$config"; then
				echo "debug kernel: ${BASH_REMATCH[1]} is still enabled" >&2
				bad=1
			fi
		fi
	done <"$frag"
	return "$bad"
}

# build_debug KDIR: configure and build the debug kernel into KDIR/build
# (O= tree), install its modules into KDIR/modroot, copy the image.
build_debug() {
	local kdir=$1 frag="$UFFDX_VM/debug-kernel.config"
	local out="$kdir/build" start jobs kver
	local -a mk

	[ -f "$kdir/READY" ] && return 0
	start=$(date +%s)
	jobs=$(($(nproc) + 1))
	mk=(nice -n 10 make -C "$SRC" O="$out" -j"$jobs")
	log "building the debug kernel in $kdir (about 10 minutes on 2 CPUs)"
	rm -rf "$kdir"
	mkdir -p "$out"
	"${mk[@]}" -s x86_64_defconfig
	apply_fragment "$out/.config" "$frag"
	"${mk[@]}" -s olddefconfig
	verify_fragment "$out/.config" "$frag" ||
		die "debug kernel: config fragment does not apply"
	"${mk[@]}" bzImage modules >"$kdir/build.log" 2>&1 || {
		tail -n 40 "$kdir/build.log" >&2
		die "debug kernel build failed (log: $kdir/build.log)"
	}
	"${mk[@]}" -s INSTALL_MOD_PATH="$kdir/modroot" modules_install \
		>>"$kdir/build.log" 2>&1
	kver=$(make -s -C "$SRC" O="$out" kernelrelease)
	cp "$out/arch/x86/boot/bzImage" "$kdir/vmlinuz"
	echo "$kver" >"$kdir/KVER"
	log "debug kernel $kver built in $(elapsed "$start") s"
	echo "$kver" >"$kdir/READY"
}

# link_debug_headers KVER KDIR: make /lib/modules/<kver> on the host point
# at the build tree, so DKMS finds the headers.  The host never boots this
# kernel; only build/, source/ and the depmod inputs are there.
link_debug_headers() {
	local kver=$1 kdir=$2 f
	local mods="$kdir/modroot/lib/modules/$kver"

	as_root mkdir -p "/lib/modules/$kver"
	as_root ln -sfn "$kdir/build" "/lib/modules/$kver/build"
	as_root ln -sfn "$SRC" "/lib/modules/$kver/source"
	for f in modules.order modules.builtin modules.builtin.modinfo; do
		[ -f "$mods/$f" ] && as_root cp "$mods/$f" "/lib/modules/$kver/"
	done
	return 0
}

prepare_debug() {
	local key kdir
	SRC=$(linux_source 6.12)
	key="$(cat "$SRC/.uffdx-extracted")-$(sha256sum "$UFFDX_VM/debug-kernel.config" | cut -c1-12)-r$DEBUG_RECIPE_REV"
	key=${key//[~:]/_}
	kdir="$UFFDX_CACHE/kernels/debug-$key"
	with_lock debug-kernel build_debug "$kdir"
	K_KVER=$(cat "$kdir/KVER")
	K_VMLINUZ="$kdir/vmlinuz"
	K_MODDIR="$kdir/modroot/lib/modules/$K_KVER"
	with_lock debug-kernel link_debug_headers "$K_KVER" "$kdir"
}

# ---- entry point ---------------------------------------------------------------

# prepare_kernel NAME: sets K_KVER K_VMLINUZ K_MODDIR K_DKMSROOT, or K_SKIP.
prepare_kernel() {
	K_KVER="" K_VMLINUZ="" K_MODDIR="" K_SKIP="" K_DKMSROOT=""
	case $1 in
	stock-6.1) prepare_debian "$1" '^linux-image-6\.1\.0-[0-9]+-amd64$' ;;
	bpo-6.12) prepare_debian "$1" '^linux-image-6\.12\.[0-9]+\+deb12-amd64$' \
		bookworm-backports ;;
	debug-6.12) prepare_debug ;;
	bullseye-5.10 | sid-7.x)
		# shellcheck source=tests/vm/foreign.sh
		. "$UFFDX_VM/foreign.sh"
		prepare_foreign "$1"
		;;
	*) die "unknown kernel '$1'" ;;
	esac
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
	case ${1:-} in
	list) kernel_list "${2:-default}" ;;
	prepare)
		[ $# -eq 2 ] || die "usage: $0 prepare NAME"
		prepare_kernel "$2"
		if [ -n "$K_SKIP" ]; then
			echo "SKIP=$K_SKIP"
		else
			printf 'KVER=%s\nVMLINUZ=%s\nMODDIR=%s\nDKMSROOT=%s\n' \
				"$K_KVER" "$K_VMLINUZ" "$K_MODDIR" "$K_DKMSROOT"
		fi
		;;
	*) die "usage: $0 list MODE | prepare NAME" ;;
	esac
	exit 0
fi
