#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# /init of the test guest (busybox sh; packed by tests/vm/initramfs.sh).
#
# The kernel console is the first serial port (the host saves it as the
# kernel log).  Everything this script prints goes to the second serial port,
# which the host parses: lines starting with "@@uffdx " are markers, the rest
# is the test programs' output, verbatim.
#
# Kernel command line parameters (no dot, so the kernel passes them on):
#   uffdx_mode=check|bench|stress|demo   which programs to run
#   uffdx_timeout=SECONDS                per-program timeout
#   uffdx_stress=SECONDS                 stress programs' -s argument

PATH=/bin:/sbin:/usr/bin:/usr/sbin
export PATH

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t tmpfs tmpfs /tmp
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
mount -t cgroup2 cgroup2 /sys/fs/cgroup 2>/dev/null

if [ -c /dev/ttyS1 ]; then
	exec >/dev/ttyS1 2>&1 </dev/null
fi

# cmdline_arg NAME DEFAULT: value of NAME=... on the kernel command line.
cmdline_arg() {
	# shellcheck disable=SC2013  # the command line is words
	for arg in $(cat /proc/cmdline); do
		case $arg in
		"$1"=*)
			echo "${arg#*=}"
			return
			;;
		esac
	done
	echo "$2"
}

MODE=$(cmdline_arg uffdx_mode check)
TIMEOUT=$(cmdline_arg uffdx_timeout 300)
STRESS_SECS=$(cmdline_arg uffdx_stress 120)
KMEMLEAK=/sys/kernel/debug/kmemleak

marker() {
	echo "@@uffdx $*"
}

# prog_timeout ARGS...: the per-program timeout, or more for a program
# that bounds its own run with "-t SECONDS" (the fuzzer): that plus 120 s.
prog_timeout() {
	t=$TIMEOUT
	while [ $# -gt 0 ]; do
		if [ "$1" = -t ] && [ $# -gt 1 ] && [ $(($2 + 120)) -gt "$t" ]; then
			t=$(($2 + 120))
		fi
		shift
	done
	echo "$t"
}

# run_prog NAME ARGS...: run one test program under a timeout, between
# markers that carry its exit status.
run_prog() {
	name=$1
	shift
	if [ ! -x "/tests/$name" ]; then
		marker "prog-begin $name"
		echo "uffdx-init: /tests/$name is missing"
		marker "prog-end $name rc=127"
		return
	fi
	marker "prog-begin $name"
	(cd /tmp && timeout -s KILL "$(prog_timeout "$@")" "/tests/$name" "$@")
	rc=$?
	marker "prog-end $name rc=$rc"
}

# run_list FILE ARGS...: run every program named in FILE (one a line).  A
# line may give the program's own arguments after its name; they replace
# ARGS (the fuzzer's -t is seconds, its -s a seed).
run_list() {
	[ -f "$1" ] || return 0
	list=$1
	shift
	while read -r prog args; do
		case $prog in
		'' | '#'*) continue ;;
		esac
		if [ -n "$args" ]; then
			# shellcheck disable=SC2086  # the line's words
			run_prog "$prog" $args
		else
			run_prog "$prog" "$@"
		fi
	done <"$list"
}

kmemleak_scan() {
	echo scan >"$KMEMLEAK"
	sleep 1
	echo scan >"$KMEMLEAK"
}

marker "begin mode=$MODE"
marker "uname $(uname -r)"

# Forget leaks (and false positives) from boot: only new ones count.
if [ -w "$KMEMLEAK" ]; then
	kmemleak_scan
	echo clear >"$KMEMLEAK"
fi

if modprobe uffdx; then
	echo "ok - module_load"
	loaded=1
else
	echo "not ok - module_load # modprobe uffdx failed"
	loaded=0
fi

if [ "$loaded" = 1 ]; then
	if [ -x /bin/uffdx-info ]; then
		marker "info-begin"
		uffdx-info
		marker "info-end rc=$?"
	fi
	case $MODE in
	check) run_list /tests/TESTS ;;
	bench) run_list /tests/BENCH ;;
	stress) run_list /tests/STRESS -s "$STRESS_SECS" ;;
	demo) [ -x /tests/demo ] && run_prog demo ;;
	esac
	# A test may unload and reload the module itself; if it left it
	# unloaded, load it again so that the final unload is still checked.
	grep -q '^uffdx ' /proc/modules || modprobe uffdx
	if rmmod uffdx; then
		echo "ok - module_unload"
	else
		echo "not ok - module_unload # rmmod uffdx failed"
	fi
fi

if [ -w "$KMEMLEAK" ]; then
	# kmemleak does not report objects younger than 5 s.
	sleep 5
	kmemleak_scan
	marker "kmemleak-begin"
	cat "$KMEMLEAK"
	marker "kmemleak-end"
fi

marker "dmesg-begin"
dmesg
marker "dmesg-end"
marker "done"
sync
poweroff -f
