# SPDX-License-Identifier: GPL-2.0
# shellcheck shell=bash disable=SC2034
# (SC2034: the K_* variables set here are read by kernels.sh.)
#
# check-all kernels from other Debian suites (sourced by kernels.sh):
#
#   bullseye-5.10  Debian 11's linux-image-5.10.0-N-amd64
#   sid-7.x        the newest linux-image-7.*-amd64 in sid
#
# Their headers want the compiler of their own suite (gcc-10, gcc-16), which
# Debian 12 does not have, so each gets a `debootstrap --variant=minbase`
# chroot under $UFFDX_CACHE/chroot/<suite>, with the kernel image, headers,
# gcc and dkms installed inside it.  The module is DKMS-built and installed
# in that chroot (check.sh runs `make dkms-install` there); the guest boots
# the chroot's /boot/vmlinuz.  Nothing of these suites touches the host's
# apt sources or packages.
#
# If the chroot or the kernel cannot be had (no network, a suite's archive
# key that this machine does not know), the kernel is skipped with the
# reason; if the module does not build for it, that is a failure.

FOREIGN_MIRROR=http://deb.debian.org/debian

# in_chroot DIR CMD...: run CMD in the chroot with /proc, /sys and /dev
# mounted in a private mount namespace (they vanish with it).
in_chroot() {
	local dir=$1
	shift
	# shellcheck disable=SC2016  # expanded by the inner shell
	as_root unshare --mount --propagation private /bin/sh -ec '
		dir=$1; shift
		mount -t proc proc "$dir/proc"
		mount -t sysfs sysfs "$dir/sys"
		mount --rbind /dev "$dir/dev"
		exec chroot "$dir" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
			HOME=/root LC_ALL=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"
	' sh "$dir" "$@"
}

# chroot_sources SUITE: the chroot's sources.list.
chroot_sources() {
	echo "deb $FOREIGN_MIRROR $1 main"
	case $1 in
	bullseye)
		echo "deb $FOREIGN_MIRROR bullseye-updates main"
		echo "deb http://deb.debian.org/debian-security bullseye-security main"
		;;
	esac
}

# chroot_setup SUITE: build the chroot once (READY marker); sets CHROOT.
chroot_setup() {
	local suite=$1
	CHROOT="$UFFDX_CACHE/chroot/$suite"
	[ -f "$CHROOT/.uffdx-ready" ] && return 0
	log "$suite: debootstrap --variant=minbase into $CHROOT (a few minutes)"
	as_root rm -rf "$CHROOT"
	mkdir -p "$CHROOT"
	as_root debootstrap --variant=minbase \
		--keyring=/usr/share/keyrings/debian-archive-keyring.gpg \
		"$suite" "$CHROOT" "$FOREIGN_MIRROR" >"$CHROOT.debootstrap.log" 2>&1 || {
		tail -n 5 "$CHROOT.debootstrap.log" >&2
		return 1
	}
	chroot_sources "$suite" >"$CHROOT/etc/apt/sources.list"
	# The archive's sid Release files can be past their Valid-Until.
	cat >"$CHROOT/etc/apt/apt.conf.d/99uffdx" <<-'EOF'
		Acquire::Check-Valid-Until "false";
		APT::Install-Recommends "false";
	EOF
	in_chroot "$CHROOT" apt-get update -q >&2
	in_chroot "$CHROOT" apt-get install -y -q make gcc dkms kmod xz-utils \
		zstd >&2
	touch "$CHROOT/.uffdx-ready"
}

# chroot_kernel NAME SUITE REGEX: install the newest kernel image matching
# REGEX and its headers (same version) in the chroot.
chroot_kernel() {
	local name=$1 suite=$2 regex=$3 pkg kver ver

	if ! chroot_setup "$suite"; then
		K_SKIP="cannot debootstrap $suite from $FOREIGN_MIRROR (see $CHROOT.debootstrap.log)"
		return 0
	fi
	in_chroot "$CHROOT" apt-get update -q >&2 || true
	pkg=$(in_chroot "$CHROOT" apt-cache search --names-only "$regex" |
		awk '{ print $1 }' | sort -V | tail -n 1)
	if [ -z "$pkg" ]; then
		K_SKIP="$suite has no kernel package matching $regex"
		return 0
	fi
	kver=${pkg#linux-image-}
	ver=$(in_chroot "$CHROOT" apt-cache policy "$pkg" | sed -n 's/^ *Candidate: //p')
	if [ ! -f "$CHROOT/boot/vmlinuz-$kver" ] ||
		[ ! -e "$CHROOT/usr/src/linux-headers-$kver/Makefile" ]; then
		log "$name: installing $pkg=$ver and its headers in the $suite chroot"
		in_chroot "$CHROOT" apt-get install -y -q "$pkg=$ver" \
			"linux-headers-$kver=$ver" >&2
	fi
	K_KVER=$kver
	K_VMLINUZ="$CHROOT/boot/vmlinuz-$kver"
	K_MODDIR="$CHROOT/lib/modules/$kver"
	K_DKMSROOT=$CHROOT
}

# prepare_foreign NAME: sets K_KVER K_VMLINUZ K_MODDIR K_DKMSROOT, or K_SKIP.
# One run at a time per chroot (the lock is released when this process
# exits: kernels.sh prepare is its own process).
prepare_foreign() {
	local lockfd
	mkdir -p "$UFFDX_CACHE/locks"
	exec {lockfd}>"$UFFDX_CACHE/locks/chroot-$1.lock"
	flock "$lockfd"
	case $1 in
	bullseye-5.10)
		chroot_kernel "$1" bullseye '^linux-image-5\.10\.0-[0-9]+-amd64$'
		;;
	sid-7.x)
		chroot_kernel "$1" sid '^linux-image-7\.[0-9]+\.[0-9]+\+deb[0-9]+-amd64$'
		;;
	esac
}
