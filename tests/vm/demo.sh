#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# make demo: the main job on a fresh Debian 12 machine.  Installs what is
# needed, builds and DKMS-installs uffdx for Debian's stock 6.1 kernel, boots
# that kernel in QEMU, loads the module, and shows uffdx-info and the example
# program tests/build/demo (when the tests provide it).  Only the relevant
# part of the guest's output is shown; the full console logs are kept under
# $UFFDX_CACHE/logs/latest.

set -euo pipefail

exec "$(dirname "${BASH_SOURCE[0]}")/check.sh" demo
