#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# Run the uffdx test programs listed in tests/build/TESTS on this machine
# (a real machine with the module loaded: "make check-host"; the QEMU
# guests use tests/vm instead).  Prints each program's TAP, then
#   N passed, N failed, N skipped
# counted over the individual test cases.  Exits 1 if anything failed.
#
#   run-tests.sh [-t SECONDS] [PROGRAM...]   per-program timeout (default 300)
set -u

here=$(cd "$(dirname "$0")" && pwd)
build=$here/build
timeout_s=300

while getopts t: opt; do
	case $opt in
	t) timeout_s=$OPTARG ;;
	*) echo "usage: $0 [-t SECONDS] [PROGRAM...]" >&2; exit 2 ;;
	esac
done
shift $((OPTIND - 1))

# One program a line, optionally with its own arguments (the fuzzer's).
if [ $# -gt 0 ]; then
	progs=$(printf '%s\n' "$@")
else
	[ -f "$build/TESTS" ] || { echo "run-tests: $build/TESTS missing; run make -C tests" >&2; exit 2; }
	progs=$(cat "$build/TESTS")
fi

if [ ! -e /dev/uffdx ]; then
	echo "# run-tests: /dev/uffdx not present; load the module (modprobe uffdx) — tests will skip" >&2
fi

have_timeout=0
command -v timeout >/dev/null 2>&1 && have_timeout=1

pass=0 fail=0 skip=0
out=$(mktemp)
trap 'rm -f "$out"' EXIT

while read -r p args; do
	[ -n "$p" ] || continue
	bin=$build/$p
	# A program that bounds itself with -t SECONDS gets that plus 120 s.
	t=$timeout_s
	# shellcheck disable=SC2086  # the line's words
	set -- $args
	while [ $# -gt 0 ]; do
		if [ "$1" = -t ] && [ $# -gt 1 ] && [ $(($2 + 120)) -gt "$t" ]; then
			t=$(($2 + 120))
		fi
		shift
	done
	echo "# ---- $p"
	if [ ! -x "$bin" ]; then
		echo "not ok - $p # missing binary $bin"
		fail=$((fail + 1))
		continue
	fi
	if [ $have_timeout = 1 ]; then
		# shellcheck disable=SC2086  # the line's words
		timeout -k 10 "$t" "$bin" $args >"$out" 2>&1 </dev/null
	else
		# shellcheck disable=SC2086
		"$bin" $args >"$out" 2>&1 </dev/null
	fi
	rc=$?
	cat "$out"
	# Result lines of the program's own plan (not indented sub-tests).
	p_ok=$(grep -E '^ok [0-9]+' "$out" | grep -cvE '# *(SKIP|skip)')
	p_skip=$(grep -cE '^ok [0-9]+.*# *(SKIP|skip)' "$out")
	p_fail=$(grep -cE '^not ok [0-9]+' "$out")
	if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
		echo "not ok - $p # TIMEOUT ${t} seconds"
		p_fail=$((p_fail + 1))
	elif [ "$rc" = 4 ] && [ $((p_ok + p_skip + p_fail)) = 0 ]; then
		p_skip=1
	elif [ "$rc" != 0 ] && [ "$rc" != 4 ] && [ "$p_fail" = 0 ]; then
		echo "not ok - $p # exit status $rc"
		p_fail=1
	elif [ $((p_ok + p_skip + p_fail)) = 0 ]; then
		echo "not ok - $p # no test results"
		p_fail=1
	fi
	pass=$((pass + p_ok))
	skip=$((skip + p_skip))
	fail=$((fail + p_fail))
done <<EOF
$progs
EOF

echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" = 0 ]
