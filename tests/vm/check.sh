#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Run the uffdx test suite in QEMU guests, one per kernel of the matrix.
#
#   tests/vm/check.sh default   make check:     stock 6.1, bpo 6.12, debug 6.12
#   tests/vm/check.sh all       make check-all: adds bullseye 5.10 and sid 7.x
#   tests/vm/check.sh bench     make bench:     BENCH programs, stock kernels
#   tests/vm/check.sh bench-all make bench-all: adds sid 7.x
#   tests/vm/check.sh stress    make stress:    STRESS programs, debug kernel
#   tests/vm/check.sh demo      make demo:      uffdx-info + demo, stock 6.1
#
# Environment:
#   UFFDX_CACHE      cache directory (default /var/cache/uffdx)
#   UFFDX_KERNELS    space-separated kernel names, overriding the mode's list
#   UFFDX_STRESS_SECS  -s argument of the stress programs (default 120)
#   UFFDX_NO_BUILD=1   do not run `make lib tests`; use what is built
#
# Per kernel: fetch or build the kernel (tests/vm/kernels.sh), `dkms build`
# and `dkms install` the module, pack an initramfs (tests/vm/initramfs.sh),
# boot it under a timeout, parse the guest's TAP output and scan its kernel
# log.  The last line printed is always "N passed, N failed, N skipped"; the
# exit status is non-zero if anything failed.

set -euo pipefail

# shellcheck source=tests/vm/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=tests/vm/kernels.sh
. "$UFFDX_VM/kernels.sh"
# shellcheck source=tests/vm/foreign.sh
. "$UFFDX_VM/foreign.sh"

# Kernel log lines that are reports (see docs/design.md section 7).  Bare
# "lockdep" and "KASAN" are not here: boot prints both harmlessly.
REPORT_RE='WARNING:|BUG:|Oops|general protection fault|UBSAN:|Kernel panic'
REPORT_RE+='|possible circular locking|inconsistent lock state'
REPORT_RE+='|possible recursive locking|kmemleak: [0-9]+ new suspected memory leaks'
REPORT_RE+='|blocked for more than [0-9]+ seconds'

# Machine-wide, not per cache: see run_kernel.
DKMS_LOCK=/run/lock/uffdx-dkms.lock

TOTAL_PASS=0
TOTAL_FAIL=0
TOTAL_SKIP=0
SUMMARY=()
RATIOS=()
# The one-line verdict of the fault-injection round, "fault-injection: N
# runs, N failures (...)", counts as one result and is repeated at the end;
# the fuzzer's "fuzz: ..." line is repeated too (its KTAP result counts).
ROUNDS=()
ROUND_RE='^(fault-injection): [0-9]+ [a-z]+, ([0-9]+) failures'
FUZZ=()

# Per-kernel counters, reset by run_kernel.
K_PASS=0
K_FAIL=0
K_SKIP=0

# result NAME pass|fail|skip LINE: count one result and print it.
result() {
	case $2 in
	pass) K_PASS=$((K_PASS + 1)) ;;
	fail) K_FAIL=$((K_FAIL + 1)) ;;
	skip) K_SKIP=$((K_SKIP + 1)) ;;
	esac
	printf '%s: %s\n' "$1" "$3"
}

# ---- guest output ------------------------------------------------------------

# classify LINE: pass, fail, skip for a TAP result line, or nothing.
classify() {
	local line=$1
	if [[ $line =~ ^not\ ok\  ]] || [[ $line == "Bail out!"* ]]; then
		echo fail
	elif [[ $line =~ ^ok\  ]]; then
		if [[ ${line,,} =~ \#\ *skip ]]; then
			echo skip
		else
			echo pass
		fi
	fi
}

# parse_output NAME OUTLOG KERNLOG: count the guest's results and scan its
# kernel log.  Sets GUEST_DONE=1 if the guest got to the end.
parse_output() {
	local name=$1 out=$2 klog=$3
	local line prog="" rc cls section="" nfail=0 ntap=0 counting=1 fuzzline=0
	# block: the program's output; ctx: its lines since its last result.
	local -a block=() ctx=() dmesg=() kml=() reports=()

	[ "$GUEST_MODE" = bench ] && counting=0
	GUEST_DONE=0
	while IFS= read -r line || [ -n "$line" ]; do
		line=${line%$'\r'}
		case $line in
		"@@uffdx prog-begin "*)
			prog=${line#@@uffdx prog-begin }
			fuzzline=0
			block=()
			ctx=()
			nfail=0
			ntap=0
			continue
			;;
		"@@uffdx prog-end "*)
			rc=${line##*rc=}
			if [ "$prog" = fuzz ] && [ "$fuzzline" = 0 ]; then
				FUZZ+=("fuzz: 0 calls, 1 failures, seed - ($name: exited with status $rc before its summary)")
			fi
			if [ "$counting" = 1 ]; then
				if [ "$rc" != 0 ] && [ "$nfail" = 0 ]; then
					if [ "$rc" = 4 ]; then
						[ "$ntap" = 0 ] &&
							result "$name" skip "ok - $prog # SKIP exited with KSFT_SKIP"
					else
						result "$name" fail "not ok - $prog exited with status $rc$([ "$rc" = 137 ] && echo ' (killed: per-program timeout?)')"
						nfail=1
					fi
				elif [ "$rc" = 0 ] && [ "$ntap" = 0 ]; then
					result "$name" pass "ok - $prog"
				fi
			fi
			# bench and demo output verbatim; for a program that
			# failed without a TAP line, its last lines.
			if [ "$counting" = 0 ] || [ "$GUEST_MODE" = demo ]; then
				printf '%s\n' "${block[@]}" | indent
			elif [ "$nfail" != 0 ] && [ "${#ctx[@]}" -gt 0 ]; then
				printf '%s\n' "${ctx[@]}" | tail -n 30 | indent
			fi
			prog=""
			continue
			;;
		"@@uffdx dmesg-begin") section=dmesg; continue ;;
		"@@uffdx kmemleak-begin") section=kmemleak; continue ;;
		"@@uffdx info-begin") section=info; echo "$name: uffdx-info:"; continue ;;
		"@@uffdx dmesg-end" | "@@uffdx kmemleak-end" | "@@uffdx info-end"*)
			section=""
			continue
			;;
		"@@uffdx done") GUEST_DONE=1; continue ;;
		"@@uffdx "*) continue ;;
		esac
		case $section in
		dmesg) dmesg+=("$line"); continue ;;
		kmemleak) kml+=("$line"); continue ;;
		info) printf '%s\n' "$line" | indent; continue ;;
		esac
		if [ -n "$prog" ]; then
			block+=("$line")
			ctx+=("$line")
		fi
		if [ "$GUEST_MODE" = bench ] && [[ $line == ratio\ * ]]; then
			RATIOS+=("$name: $line")
		fi
		# The fuzzer's one line per kernel (its KTAP result counts).
		if [[ $line =~ ^fuzz:\ [0-9]+\ calls ]]; then
			FUZZ+=("$line")
			fuzzline=1
		fi
		if [[ $line =~ $ROUND_RE ]]; then
			ROUNDS+=("$name: $line")
			if [ "${BASH_REMATCH[2]}" = 0 ]; then cls=pass; else cls=fail; fi
		else
			cls=$(classify "$line")
		fi
		[ -n "$cls" ] || continue
		[ -n "$prog" ] && ntap=$((ntap + 1))
		[ "$cls" = fail ] && nfail=$((nfail + 1))
		if [ "$counting" = 1 ] || [ -z "$prog" ]; then
			if [[ $line =~ $ROUND_RE ]] && [ "$cls" = pass ]; then
				line="ok - $line"
			elif [[ $line =~ $ROUND_RE ]]; then
				line="not ok - $line"
			fi
			result "$name" "$cls" "${prog:+$prog: }$line"
			# A failed test's diagnostics (the harness prints them
			# before its "not ok" line).
			if [ "$cls" = fail ] && [ "${#ctx[@]}" -gt 1 ]; then
				printf '%s\n' "${ctx[@]}" | sed '$d' | tail -n 40 | indent
			fi
		fi
		ctx=()
	done <"$out"

	if [ -n "$prog" ]; then
		[ "$prog" = fuzz ] && [ "$fuzzline" = 0 ] &&
			FUZZ+=("fuzz: 0 calls, 1 failures, seed - ($name: did not finish)")
		result "$name" fail "not ok - $prog did not finish"
		printf '%s\n' "${block[@]}" | tail -n 30 | indent
	fi

	# The kernel log scan: the guest's dmesg, or the kernel console if the
	# guest never got to print it.
	if [ "${#dmesg[@]}" -eq 0 ]; then
		mapfile -t dmesg <"$klog"
	fi
	mapfile -t reports < <(printf '%s\n' "${dmesg[@]}" | grep -E "$REPORT_RE" || true)
	if printf '%s\n' "${kml[@]}" | grep -q 'unreferenced object'; then
		reports+=("kmemleak: $(printf '%s\n' "${kml[@]}" | grep -c 'unreferenced object') unreferenced objects after the tests")
	fi
	if [ "${#reports[@]}" -eq 0 ]; then
		result "$name" pass "ok - kernel_log # no WARNING/BUG/KASAN/lockdep/kmemleak reports"
	else
		result "$name" fail "not ok - kernel_log # ${#reports[@]} report line(s)"
		printf '%s\n' "${reports[@]}" | head -n 20 | indent
		# The first report with its context (call trace).
		printf '%s\n' "${dmesg[@]}" | grep -E -m 1 -A 40 "$REPORT_RE" | indent
		if [ "${#kml[@]}" -gt 0 ]; then
			printf '%s\n' "${kml[@]}" | head -n 40 | indent
		fi
	fi
}

# ---- one kernel --------------------------------------------------------------

# list_secs: the seconds that the "-t SECONDS" arguments in the guest's
# program list (tests/build/TESTS or STRESS, the fuzzer's line) add up to.
list_secs() {
	local f
	case $GUEST_MODE in
	check) f=TESTS ;;
	stress) f=STRESS ;;
	*) echo 0; return ;;
	esac
	f=$UFFDX_TOP/tests/build/$f
	[ -f "$f" ] || { echo 0; return; }
	sed -n 's/.*[[:space:]]-t[[:space:]]\{1,\}\([0-9]\{1,\}\).*/\1/p' "$f" |
		awk '{ s += $1 + 120 } END { print s + 0 }'
}

# run_guest NAME KVER VMLINUZ INITRD TIMEOUT: boot, wait, parse.
run_guest() {
	local name=$1 kver=$2 vmlinuz=$3 initrd=$4 limit=$5
	local out="$LOGDIR/$name.console.log" klog="$LOGDIR/$name.kernel.log"
	local cmdline rc=0 start ptimeout=180

	cmdline="console=ttyS0,115200 panic=-1 panic_on_warn=0 uffdx_mode=$GUEST_MODE"
	if [[ $name == debug-* ]]; then
		cmdline+=" kasan.fault=report kmemleak=on"
		ptimeout=300
	fi
	[ "$GUEST_MODE" = stress ] && ptimeout=$((STRESS_SECS + 300))
	# (a program that bounds itself with -t gets that plus 120 s in the
	# guest: guest-init.sh's prog_timeout; run_kernel adds it to the limit)
	cmdline+=" uffdx_timeout=$ptimeout uffdx_stress=$STRESS_SECS"

	log "$name: booting $kver (guest timeout ${limit} s)"
	start=$(date +%s)
	# ttyS0: the kernel console (kernel.log); ttyS1: /init's output
	# (console.log), which the kernel's own messages never interleave.
	# -cpu max gives the guest SMAP/SMEP/UMIP and friends; but not LA57:
	# with 5-level paging the debug kernel intermittently reports a KASAN
	# wild-memory-access in an early interrupt during boot (identify_cpu).
	timeout -k 10 "$limit" qemu-system-x86_64 -accel tcg -cpu max,la57=off \
		-m 2048 -smp 2 -nodefaults -display none -no-reboot \
		-kernel "$vmlinuz" -initrd "$initrd" -append "$cmdline" \
		-serial "file:$klog" -serial "file:$out" \
		</dev/null >"$LOGDIR/$name.qemu.log" 2>&1 || rc=$?
	log "$name: guest ran $(elapsed "$start") s"

	parse_output "$name" "$out" "$klog"
	if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
		result "$name" fail "not ok - guest # killed after ${limit} s; last console lines:"
		tail -n 20 "$out" | indent
		tail -n 30 "$klog" | indent
	elif [ "$GUEST_DONE" != 1 ]; then
		result "$name" fail "not ok - guest # did not finish (qemu status $rc); last console lines:"
		indent <"$LOGDIR/$name.qemu.log"
		tail -n 10 "$out" | indent
		tail -n 40 "$klog" | indent
	fi
}

# dkms_module NAME KVER [DKMSROOT]: dkms build + install of the
# repository's module, on the host or in the chroot DKMSROOT.
dkms_module() {
	local name=$1 kver=$2 root=${3:-} ver flags="" mklog rc=0
	ver=$(mod_version)
	if [ ! -e "$UFFDX_TOP/Kbuild" ] || [ ! -d "$UFFDX_TOP/module" ]; then
		result "$name" fail "not ok - dkms_build # no Kbuild/module/ in $UFFDX_TOP"
		return 1
	fi
	[[ $name == debug-* ]] &&
		flags="--kernelsourcedir=$(readlink -f "/lib/modules/$kver/build")"
	log "$name: dkms build + install uffdx/$ver for $kver${root:+ (in $root)}"
	if [ -z "$root" ]; then
		as_root make -C "$UFFDX_TOP" dkms-install KVER="$kver" \
			DKMS_FLAGS="$flags" >"$LOGDIR/$name.dkms.log" 2>&1 || rc=$?
	else
		# The same Makefile target, run inside the chroot.
		as_root rm -rf "$root/root/uffdx"
		as_root mkdir -p "$root/root/uffdx"
		(cd "$UFFDX_TOP" && as_root cp -r Makefile dkms.conf Kbuild module uapi \
			"$root/root/uffdx/")
		in_chroot "$root" make -C /root/uffdx dkms-install KVER="$kver" \
			>"$LOGDIR/$name.dkms.log" 2>&1 || rc=$?
	fi
	if [ "$rc" -ne 0 ]; then
		result "$name" fail "not ok - dkms_build # module does not build for $kver"
		mklog="$root/var/lib/dkms/uffdx/$ver/build/make.log"
		if [ -f "$mklog" ]; then
			echo "    dkms make.log (tail):"
			tail -n 40 "$mklog" | indent
		else
			tail -n 30 "$LOGDIR/$name.dkms.log" | indent
		fi
		return 1
	fi
	result "$name" pass "ok - dkms_build"
}

# run_kernel NAME: everything for one kernel of the matrix.
run_kernel() {
	local name=$1 info kver vmlinuz moddir dkmsroot skip limit lockfd ok=0
	local initrd="$LOGDIR/$name.initrd.gz"
	K_PASS=0 K_FAIL=0 K_SKIP=0
	kver=$name

	echo "== $name =="
	if info=$("$UFFDX_VM/kernels.sh" prepare "$name" 2> >(tee "$LOGDIR/$name.prepare.log" |
		grep --line-buffered '^\[uffdx-vm' >&2)); then
		skip=$(sed -n 's/^SKIP=//p' <<<"$info")
		kver=$(sed -n 's/^KVER=//p' <<<"$info")
		vmlinuz=$(sed -n 's/^VMLINUZ=//p' <<<"$info")
		moddir=$(sed -n 's/^MODDIR=//p' <<<"$info")
		dkmsroot=$(sed -n 's/^DKMSROOT=//p' <<<"$info")
		if [ -n "$skip" ]; then
			result "$name" skip "ok - kernel # SKIP $skip"
		else
			# DKMS state (/usr/src, /var/lib/dkms, /lib/modules) is
			# shared by every run on this machine, whatever its cache:
			# install and pack under a machine-wide lock.
			exec {lockfd}>"$DKMS_LOCK"
			flock "$lockfd"
			if dkms_module "$name" "$kver" "$dkmsroot"; then
				if "$UFFDX_VM/initramfs.sh" "$kver" "$moddir" "$initrd" \
					"$dkmsroot" 2>"$LOGDIR/$name.initramfs.log"; then
					ok=1
				else
					result "$name" fail "not ok - initramfs"
					indent <"$LOGDIR/$name.initramfs.log"
				fi
			fi
			exec {lockfd}>&-
			if [ "$ok" = 1 ]; then
				limit=480
				[[ $name == debug-* ]] && limit=900
				[ "$GUEST_MODE" = stress ] &&
					limit=$((limit + 3 * STRESS_SECS))
				limit=$((limit + $(list_secs)))
				run_guest "$name" "$kver" "$vmlinuz" "$initrd" "$limit"
				rm -f "$initrd"
			fi
		fi
	else
		result "$name" fail "not ok - kernel # could not fetch or build the kernel"
		tail -n 30 "$LOGDIR/$name.prepare.log" | indent
	fi
	SUMMARY+=("kernel $name ($kver): $K_PASS passed, $K_FAIL failed, $K_SKIP skipped")
	echo "${SUMMARY[-1]}"
	TOTAL_PASS=$((TOTAL_PASS + K_PASS))
	TOTAL_FAIL=$((TOTAL_FAIL + K_FAIL))
	TOTAL_SKIP=$((TOTAL_SKIP + K_SKIP))
}

# build_userspace: the library and the static test programs.
build_userspace() {
	log "building libuffdx and the tests (make lib tests)"
	if ! make -C "$UFFDX_TOP" lib tests >"$LOGDIR/userspace.log" 2>&1; then
		echo "userspace: not ok - make lib tests failed:"
		tail -n 40 "$LOGDIR/userspace.log" | indent
		return 1
	fi
}

main() {
	local mode=${1:-default} kernels k start
	start=$(date +%s)
	case $mode in
	default | all) GUEST_MODE=check ;;
	bench | stress | demo) GUEST_MODE=$mode ;;
	bench-all) GUEST_MODE=bench ;;
	*) die "usage: $0 default|all|bench|bench-all|stress|demo" ;;
	esac
	STRESS_SECS=${UFFDX_STRESS_SECS:-120}
	kernels=${UFFDX_KERNELS:-$(kernel_list "$mode")}

	LOGDIR="$UFFDX_CACHE/logs/$(date +%Y%m%d-%H%M%S)-$mode"
	mkdir -p "$LOGDIR"
	ln -sfn "$LOGDIR" "$UFFDX_CACHE/logs/latest"
	log "logs: $LOGDIR"

	"$UFFDX_VM/deps.sh"
	if [ "$mode" = demo ]; then
		# The demo needs the library; the example program is optional.
		make -C "$UFFDX_TOP" lib >"$LOGDIR/userspace.log" 2>&1 ||
			die "make lib failed: $(tail -n 20 "$LOGDIR/userspace.log")"
		make -C "$UFFDX_TOP" tests >>"$LOGDIR/userspace.log" 2>&1 ||
			log "warning: make tests failed; the demo runs without tests/build/demo"
	elif [ "${UFFDX_NO_BUILD:-0}" != 1 ] && ! build_userspace; then
		echo "0 passed, 1 failed, 0 skipped"
		exit 1
	fi
	for k in $kernels; do
		run_kernel "$k"
	done

	echo
	if [ "${#RATIOS[@]}" -gt 0 ]; then
		printf '%s\n' "${RATIOS[@]}"
	fi
	if [ "${#ROUNDS[@]}" -gt 0 ]; then
		printf '%s\n' "${ROUNDS[@]}"
	fi
	if [ "${#FUZZ[@]}" -gt 0 ]; then
		printf '%s\n' "${FUZZ[@]}"
	fi
	printf '%s\n' "${SUMMARY[@]}"
	log "total time $(elapsed "$start") s; logs in $LOGDIR"
	echo "$TOTAL_PASS passed, $TOTAL_FAIL failed, $TOTAL_SKIP skipped"
	[ "$TOTAL_FAIL" -eq 0 ]
}

# Sourcing this file (to test parse_output) does not run anything.
# (main and exit on one line: bash reads scripts as it runs them, so a run
# must not read on if the file is edited meanwhile.)
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
	main "$@"; exit $?
fi
