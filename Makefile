# SPDX-License-Identifier: GPL-2.0
#
# uffdx top-level Makefile.
#
# The kernel build reads ./Kbuild, never this file.  This Makefile must keep
# working when DKMS appends KERNELRELEASE=<kver> to its command line, so it
# never branches on KERNELRELEASE (see dkms.conf).
#
#   make module        build uffdx.ko for KDIR (default: the running kernel)
#   make lib           build libuffdx and uffdx-info
#   make install       install library, headers, man pages, udev rule
#   make dkms-install  register, build and install the module with DKMS
#   make demo          the main job: the module on Debian's stock kernel, in QEMU
#   make check         the test suite on the kernel matrix, in QEMU
#   make lint          checkpatch, sparse, W=1, ABI header, -Werror library

TOP := $(CURDIR)
VERSION := $(shell sed -n 's/^PACKAGE_VERSION="\(.*\)"/\1/p' $(TOP)/dkms.conf)
KVER ?= $(shell uname -r)
KDIR ?= /lib/modules/$(KVER)/build

prefix ?= /usr/local
DESTDIR ?=
UDEVDIR ?= /lib/udev/rules.d

export VERSION

.PHONY: all module module-clean lib tests install uninstall install-udev \
	dkms-install dkms-remove clean lint check check-all demo bench bench-all \
	stress check-host

all: lib tests

# ---- module -----------------------------------------------------------
module:
	$(MAKE) -C $(KDIR) M=$(TOP) modules

module-clean:
	$(MAKE) -C $(KDIR) M=$(TOP) clean

# ---- library and tests ----------------------------------------------------
lib:
	$(MAKE) -C userlib

tests: lib
	$(MAKE) -C tests

install: lib install-udev
	$(MAKE) -C userlib install DESTDIR=$(DESTDIR) prefix=$(prefix)

uninstall:
	$(MAKE) -C userlib uninstall DESTDIR=$(DESTDIR) prefix=$(prefix)
	rm -f $(DESTDIR)$(UDEVDIR)/60-uffdx.rules

install-udev:
	install -D -m 0644 udev/60-uffdx.rules $(DESTDIR)$(UDEVDIR)/60-uffdx.rules

# ---- DKMS -----------------------------------------------------------------
DKMS_SRC := $(DESTDIR)/usr/src/uffdx-$(VERSION)
DKMS_FILES := dkms.conf Kbuild Makefile module uapi

# DKMS_FLAGS: extra dkms options, e.g. --kernelsourcedir=DIR (tests/vm).
# The source is replaced on every run, so this kernel's earlier build of
# the same version is removed first: dkms would otherwise reuse it, and
# dkms 2.8 (Debian 11) ignores "build --force".
DKMS_FLAGS ?=

dkms-install:
	-dkms remove -m uffdx -v $(VERSION) -k $(KVER) >/dev/null 2>&1
	rm -rf $(DKMS_SRC)
	mkdir -p $(DKMS_SRC)
	cp -r $(DKMS_FILES) $(DKMS_SRC)/
	dkms status -m uffdx -v $(VERSION) | grep -q . || \
		dkms add -m uffdx -v $(VERSION)
	dkms build -m uffdx -v $(VERSION) -k $(KVER) $(DKMS_FLAGS)
	dkms install -m uffdx -v $(VERSION) -k $(KVER) --force $(DKMS_FLAGS)

dkms-remove:
	-dkms remove -m uffdx -v $(VERSION) --all
	rm -rf $(DKMS_SRC)

clean:
	-$(MAKE) -C userlib clean
	-$(MAKE) -C tests clean
	rm -rf .tmp_versions *.o *.ko *.mod* modules.order Module.symvers \
		module/*.o module/.*.cmd module/uffdx_conftest.h .*.cmd

# ---- guest test runner (tests/vm) -------------------------------------------
lint:
	tests/vm/lint.sh

check:
	tests/vm/check.sh default

check-all:
	tests/vm/check.sh all

demo:
	tests/vm/demo.sh

bench:
	tests/vm/check.sh bench

bench-all:
	tests/vm/check.sh bench-all

stress:
	tests/vm/check.sh stress

# Run the suite against the running kernel (a real machine with the module
# loaded): no guest.
check-host: tests
	tests/run-tests.sh
