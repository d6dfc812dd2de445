#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# make lint: static checks, each step must be silent.
#
#   checkpatch   scripts/checkpatch.pl --strict of Debian's linux-source-6.12
#                over module/ and the uapi header
#   W=1          the module built with W=1 against Debian 6.1 and 6.12
#                headers: no warning at all
#   sparse       C=2 against Debian 6.12 headers: no sparse output
#   abi-c90      the uapi header alone, gcc -std=c90 -pedantic -Werror
#   abi-c++      the uapi header alone, g++ -Wall -Wextra -Werror
#   userlib      the library with -Wall -Wextra -Werror (WERROR=1)
#   tests        the test programs (their Makefile uses -Werror)
#   shell lint   shellcheck over the tests/vm and tests scripts and .ci/run
#
# Builds run in a temporary copy of the tree, so lint leaves no objects
# behind.  Prints PASS/FAIL per step; exits non-zero if any step failed.

# The lint_* functions run through step(), which shellcheck cannot follow.
# shellcheck disable=SC2317
set -euo pipefail

# shellcheck source=tests/vm/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=tests/vm/kernels.sh
. "$UFFDX_VM/kernels.sh"

# checkpatch types ignored, each because it cannot apply to this tree:
#   FILE_PATH_CHANGES  "added, moved or deleted file(s), does MAINTAINERS
#                      need updating?": there is no MAINTAINERS out of tree.
CHECKPATCH_IGNORE=FILE_PATH_CHANGES

PASSED=0
FAILED=0
FAILED_STEPS=()

# step NAME CMD...: run one lint step, its output indented; PASS or FAIL.
step() {
	local name=$1 out rc=0
	shift
	out=$("$@" 2>&1) || rc=$?
	if [ "$rc" -eq 0 ]; then
		echo "lint: PASS $name"
		PASSED=$((PASSED + 1))
	else
		echo "lint: FAIL $name"
		[ -z "$out" ] || indent <<<"$out"
		FAILED=$((FAILED + 1))
		FAILED_STEPS+=("$name")
	fi
}

# tree_copy: a scratch copy of the repository (sources only), printed.
tree_copy() {
	local dir
	dir=$(mktemp -d "$WORK/tree.XXXXXX")
	rsync -a --exclude .git --exclude /tests/build --exclude /tests/include \
		--exclude '*.o' --exclude '*.ko' --exclude '*.a' --exclude '*.so*' \
		--exclude '.*.cmd' "$UFFDX_TOP/" "$dir/"
	echo "$dir"
}

# no_output CMD...: run CMD; fail if it fails or prints anything matching
# "warning:" or "error:" (compiler and sparse diagnostics).
no_diagnostics() {
	local out rc=0
	out=$("$@" 2>&1) || rc=$?
	if [ "$rc" -ne 0 ] || grep -qE '(warning|error):' <<<"$out"; then
		grep -E '(warning|error):|Error [0-9]' <<<"$out" || tail -n 20 <<<"$out"
		return 1
	fi
}

lint_checkpatch() {
	local -a files
	mapfile -t files < <(cd "$UFFDX_TOP" && ls module/*.c module/*.h uapi/linux/uffdx.h 2>/dev/null)
	[ "${#files[@]}" -gt 1 ] || { echo "no module sources"; return 1; }
	# --no-tree: checkpatch then reads spelling.txt and
	# const_structs.checkpatch next to itself, in the source tree.
	(cd "$UFFDX_TOP" && "$SRC/scripts/checkpatch.pl" --strict --no-tree \
		--no-summary --quiet --terse --show-types \
		--ignore "$CHECKPATCH_IGNORE" -f "${files[@]}")
}

# lint_kbuild KVER MAKEARGS...: build the module for KVER in a fresh copy.
lint_kbuild() {
	local kver=$1 dir
	shift
	dir=$(tree_copy)
	no_diagnostics make -C "/lib/modules/$kver/build" M="$dir" "$@" modules
}

lint_abi_c90() {
	printf '#include <linux/uffdx.h>\n' |
		gcc -std=c90 -pedantic -Wall -Wextra -Werror -fsyntax-only \
			-I "$UFFDX_TOP/uapi" -x c -
}

lint_abi_cxx() {
	printf '#include <linux/uffdx.h>\nint main() { return 0; }\n' |
		g++ -Wall -Wextra -Werror -fsyntax-only -I "$UFFDX_TOP/uapi" -x c++ -
}

lint_userlib() {
	local dir
	dir=$(tree_copy)
	no_diagnostics make -C "$dir/userlib" WERROR=1
}

lint_tests() {
	local dir
	dir=$(tree_copy)
	no_diagnostics make -C "$dir" tests
}

lint_shellcheck() {
	command -v shellcheck >/dev/null || { echo "shellcheck is not installed"; return 1; }
	(cd "$UFFDX_TOP" && shellcheck -x tests/vm/*.sh tests/*.sh .ci/run)
}

# kver_of NAME: prepare a Debian kernel's headers; print its release.
kver_of() {
	"$UFFDX_VM/kernels.sh" prepare "$1" 2>>"$WORK/prepare.log" | sed -n 's/^KVER=//p'
}

main() {
	local k61 k612
	"$UFFDX_VM/deps.sh"
	WORK=$(mktemp -d /tmp/uffdx-lint.XXXXXX)
	# shellcheck disable=SC2064  # expand now
	trap "rm -rf '$WORK'" EXIT
	SRC=$(linux_source 6.12)
	k61=$(kver_of stock-6.1) || die "cannot get the 6.1 headers: $(tail -n 5 "$WORK/prepare.log")"
	k612=$(kver_of bpo-6.12) || die "cannot get the 6.12 headers: $(tail -n 5 "$WORK/prepare.log")"

	step checkpatch lint_checkpatch
	step "W=1 ($k61)" lint_kbuild "$k61" W=1
	step "W=1 ($k612)" lint_kbuild "$k612" W=1
	step "sparse C=2 ($k612)" lint_kbuild "$k612" C=2
	step abi-c90 lint_abi_c90
	step abi-c++ lint_abi_cxx
	step "userlib -Werror" lint_userlib
	step "tests -Werror" lint_tests
	step shellcheck lint_shellcheck

	if [ "$FAILED" -eq 0 ]; then
		echo "lint: all $PASSED steps passed"
	else
		echo "lint: $FAILED of $((PASSED + FAILED)) steps failed: ${FAILED_STEPS[*]}"
		exit 1
	fi
}

main "$@"; exit $?
