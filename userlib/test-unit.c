/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of libuffdx that need no module: pure functions, argument
 * checks made before any system call, and opening a missing device.
 * Exit 0 on success, 1 on failure (prints TAP).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "libuffdx.h"

static int failed, n;

#define CHECK(cond) do {						\
	n++;								\
	if (cond) {							\
		printf("ok %d - %s\n", n, #cond);			\
	} else {							\
		printf("not ok %d - %s (line %d)\n", n, #cond, __LINE__); \
		failed++;						\
	}								\
} while (0)

static void test_feature_names(void)
{
	static const struct { uint64_t f; const char *name; } t[] = {
		{ UFFDX_FEATURE_REGIONS, "regions" },
		{ UFFDX_FEATURE_MISSING, "missing" },
		{ UFFDX_FEATURE_POISON, "poison" },
		{ UFFDX_FEATURE_KERNEL_FAULTS, "kernel-faults" },
		{ UFFDX_FEATURE_MOVE, "move" },
		{ UFFDX_FEATURE_MOVE_HUGE, "move-huge" },
		{ UFFDX_FEATURE_WP, "wp" },
		{ UFFDX_FEATURE_WP_ASYNC, "wp-async" },
		{ UFFDX_FEATURE_DEVICE_EXCLUSIVE, "device-exclusive" },
		{ UFFDX_FEATURE_DEVICE_MIGRATE, "device-migrate" },
		{ UFFDX_FEATURE_HMM_MIRROR, "hmm-mirror" },
		{ UFFDX_FEATURE_HMM_EXCLUSIVE, "hmm-exclusive" },
		{ UFFDX_FEATURE_HMM_MIGRATE, "hmm-migrate" },
	};
	unsigned int i, bit, known = 0;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		const char *s = uffdx_feature_name(t[i].f);

		CHECK(s && !strcmp(s, t[i].name));
	}
	for (bit = 0; bit < 64; bit++)
		known += uffdx_feature_name(1ULL << bit) != NULL;
	CHECK(known == sizeof(t) / sizeof(t[0]));
	CHECK(uffdx_feature_name(0) == NULL);
	CHECK(uffdx_feature_name(UFFDX_FEATURE_REGIONS |
				 UFFDX_FEATURE_MISSING) == NULL);
	CHECK(uffdx_feature_name(1ULL << 63) == NULL);
}

static void test_strerror(void)
{
	CHECK(strstr(uffdx_strerror(-EEXIST), "wake") != NULL);
	CHECK(uffdx_strerror(EEXIST) == uffdx_strerror(-EEXIST));
	CHECK(strstr(uffdx_strerror(-EAGAIN), "partial") != NULL);
	CHECK(strstr(uffdx_strerror(-ENOTTY), "not a uffdx fd") != NULL);
	CHECK(strstr(uffdx_strerror(-ENOENT), "no such region") != NULL);
	CHECK(strstr(uffdx_strerror(-ENOMEM), "max_pages_per_context") != NULL);
	CHECK(strstr(uffdx_strerror(-ENODEV), "not loaded") != NULL);
	CHECK(strstr(uffdx_strerror(-EPERM), "CAP_SYS_PTRACE") != NULL);
	CHECK(strstr(uffdx_strerror(-EPERM), "mirrors") != NULL);
	CHECK(strstr(uffdx_strerror(-ESRCH), "exited") != NULL);
	CHECK(!strcmp(uffdx_strerror(-ENOSPC), strerror(ENOSPC)));
	CHECK(uffdx_strerror(0) != NULL);
	CHECK(uffdx_strerror(-100000) != NULL);
}

static void test_version(void)
{
	const char *v = uffdx_version();
	int maj = -1, min = -1, pat = -1;

	CHECK(v && !strcmp(v, LIBUFFDX_VERSION));
	CHECK(sscanf(v, "%d.%d.%d", &maj, &min, &pat) == 3);
	CHECK(uffdx_check_version(maj, min) == 0);
	CHECK(uffdx_check_version(0, 0) == 0);
	CHECK(uffdx_check_version(maj, min + 1) == -EINVAL);
	CHECK(uffdx_check_version(maj + 1, 0) == -EINVAL);
	CHECK(uffdx_check_version(-1, 0) == -EINVAL);
	if (maj > 0)
		CHECK(uffdx_check_version(maj - 1, 99) == 0);
}

static void test_open(void)
{
	struct uffdx_api api;
	int fd;

	setenv("UFFDX_DEVICE", "/nonexistent/uffdx", 1);
	CHECK(uffdx_open(0) == -ENOENT);
	CHECK(uffdx_open(O_NONBLOCK) == -ENOENT);
	CHECK(uffdx_open(O_RDONLY | O_APPEND) == -EINVAL);
	CHECK(uffdx_open(O_CLOEXEC) == -EINVAL);
	CHECK(uffdx_open_api(0, 0, &api) == -ENOENT);
	CHECK(uffdx_query(&api) == -ENOENT);

	/* Not a uffdx device: the ioctl is -ENOTTY and the fd is closed. */
	setenv("UFFDX_DEVICE", "/dev/null", 1);
	fd = uffdx_open(0);
	CHECK(fd >= 0);
	if (fd >= 0) {
		CHECK((fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0);
		CHECK(uffdx_api(fd, 0, &api) == -ENOTTY);
		close(fd);
	}
	fd = uffdx_open_api(0, 0, NULL);
	CHECK(fd == -ENOTTY);
	/* open_api closed its fd: the next open reuses the lowest number. */
	fd = uffdx_open(0);
	CHECK(fd >= 0);
	if (fd >= 0) {
		int fd2 = uffdx_open_api(0, 0, NULL);
		int fd3 = uffdx_open(0);

		CHECK(fd2 == -ENOTTY && fd3 == fd + 1);
		close(fd3);
		close(fd);
	}
	unsetenv("UFFDX_DEVICE");
}

/* The device calls: -EBADF from the kernel, after the library filled in. */
static void test_device_bad_fds(void)
{
	static int (*const cmds[])(int, struct uffdx_dev_cmd *) = {
		uffdx_dev_read, uffdx_dev_write, uffdx_dev_migrate_to_dev,
		uffdx_dev_migrate_to_sys, uffdx_dev_snapshot,
		uffdx_dev_exclusive, uffdx_dev_check_exclusive,
		uffdx_dev_release,
	};
	struct uffdx_dev_event dev_ev[2];
	struct uffdx_dev_stats st;
	struct uffdx_dev_atomic a;
	struct uffdx_dev_cmd cmd;
	unsigned int i;

	CHECK(uffdx_device_create(-1, 0) == -EBADF);
	for (i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		CHECK(cmds[i](-1, NULL) == -EINVAL);
		memset(&cmd, 0xcc, sizeof(cmd));
		CHECK(cmds[i](-1, &cmd) == -EBADF);
		/* size and reserved set, outputs cleared, inputs kept */
		CHECK(cmd.size == sizeof(cmd) && cmd.reserved[0] == 0 &&
		      cmd.reserved[1] == 0);
		CHECK(cmd.cpages == 0 && cmd.faults == 0);
		CHECK(cmd.flags == 0xccccccccU &&
		      cmd.addr == 0xccccccccccccccccULL &&
		      cmd.npages == 0xccccccccccccccccULL);
	}

	CHECK(uffdx_dev_atomic(-1, NULL) == -EINVAL);
	memset(&a, 0xcc, sizeof(a));
	CHECK(uffdx_dev_atomic(-1, &a) == -EBADF);
	CHECK(a.size == sizeof(a) && a.reserved[0] == 0 && a.reserved[1] == 0);
	CHECK(a.old == 0 && a.faults == 0);
	CHECK(a.op == 0xccccccccU && a.value == 0xccccccccccccccccULL &&
	      a.expected == 0xccccccccccccccccULL);

	CHECK(uffdx_dev_stats(-1, NULL) == -EINVAL);
	memset(&st, 0xcc, sizeof(st));
	CHECK(uffdx_dev_stats(-1, &st) == -EBADF);
	CHECK(st.size == sizeof(st) && st.flags == 0 && st.faults == 0 &&
	      st.invalidations[UFFDX_DEV_INVAL_NR - 1] == 0 &&
	      st.events_lost == 0 && st.reserved[3] == 0);

	CHECK(uffdx_dev_read_events(-1, dev_ev, 2) == -EBADF);
	CHECK(uffdx_dev_read_events(0, dev_ev, 0) == -EINVAL);
	CHECK(uffdx_dev_read_events(0, NULL, 1) == -EINVAL);
	CHECK(sizeof(struct uffdx_dev_event) == 64);
}

static void test_bad_fds(void)
{
	struct uffdx_region_map map;
	struct uffdx_event ev[2];
	struct uffdx_scan scan;
	int64_t result = 1234;
	char page[64];

	CHECK(uffdx_ioctl(-1, UFFDX_IOC_API, NULL) == -EBADF);
	CHECK(uffdx_copy(-1, 1, 0, page, 4096, 0, &result) == -EBADF);
	CHECK(result == 0);	/* rejected before the module ran: 0 */
	CHECK(uffdx_zero(-1, 1, 0, 4096, 0, NULL) == -EBADF);
	CHECK(uffdx_region_create(-1, 4096, 0, NULL) == -EBADF);
	CHECK(uffdx_region_info(-1, NULL) == -EBADF);
	CHECK(uffdx_read_events(-1, ev, 2) == -EBADF);
	CHECK(uffdx_read_events(0, ev, 0) == -EINVAL);

	memset(&map, 0xcc, sizeof(map));
	CHECK(uffdx_region_map(-1, 4096, 0, &map) == -EBADF);
	CHECK(map.fd == -1 && map.addr == NULL && map.len == 0);
	CHECK(uffdx_region_unmap(&map) == 0);
	CHECK(uffdx_region_unmap(&map) == 0);
	CHECK(uffdx_region_map(-1, 4096, 0, NULL) == -EINVAL);

	result = 1234;
	CHECK(uffdx_writeprotect(-1, 1, 0, 4096, UFFDX_WP_PROTECT,
				 &result) == -EBADF);
	CHECK(result == 0);
	result = 1234;
	CHECK(uffdx_writeprotect_addr(-1, page, 4096, 0, &result) == -EBADF);
	CHECK(result == 0);
	CHECK(uffdx_scan(-1, NULL) == -EINVAL);
	/* The library fills size and reserved, and clears the outputs. */
	memset(&scan, 0xcc, sizeof(scan));
	CHECK(uffdx_scan(-1, &scan) == -EBADF);
	CHECK(scan.size == sizeof(scan) && scan.reserved[0] == 0 &&
	      scan.reserved[1] == 0);
	CHECK(scan.scanned == 0 && scan.nr_out == 0 && scan.written == 0);
	CHECK(scan.flags == 0xccccccccU && scan.out_len == 0xccccccccccccccccULL);

	memset(ev, 0, sizeof(ev));
	ev[0].type = UFFDX_EVENT_PAGEFAULT;
	CHECK(uffdx_serve_copy(-1, &ev[0], page, 4096) == -EBADF);
	CHECK(uffdx_serve_copy(-1, &ev[0], page, 3000) == -EINVAL);
	ev[0].type = 0;
	CHECK(uffdx_serve_copy(-1, &ev[0], page, 4096) == -EINVAL);
}

int main(void)
{
	test_feature_names();
	test_strerror();
	test_version();
	test_open();
	test_bad_fds();
	test_device_bad_fds();
	printf("1..%d\n", n);
	printf("# %d passed, %d failed\n", n - failed, failed);
	return failed ? 1 : 0;
}
