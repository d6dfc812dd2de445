// SPDX-License-Identifier: GPL-2.0
/*
 * uffdx module-reference tests (issue 2): the module cannot be removed while
 * a context, a region fd, or only a region mapping is alive, and keeps
 * working afterwards.
 *
 * Runs LAST in the suite: if a test fails because delete_module() succeeded,
 * the module is gone for everything that would come after it.
 */
#include "helpers.h"

#include <fcntl.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kselftest_harness.h"

static int try_rmmod(void)
{
	return (int)syscall(SYS_delete_module, "uffdx", O_NONBLOCK);
}

/* The module still works: a new context fills and reads back a region. */
static void module_works(struct __test_metadata *_metadata)
{
	struct uffdx_region_map m;
	int64_t res = 0;
	uint8_t *buf;
	int ctx, ret;

	ASSERT_EQ(0, access(UFFDX_DEV, F_OK)) TH_LOG("/dev/uffdx vanished");
	ctx = ctx_open(DEFAULT_FEATURES, 0);
	ASSERT_LE(0, ctx) TH_LOG("%s", strerror(-ctx));
	ret = uffdx_region_map(ctx, 2 * ps, 0, &m);
	ASSERT_EQ(0, ret) TH_LOG("%s", strerror(-ret));
	buf = malloc(ps);
	ASSERT_NE(NULL, buf);
	fill_pattern(buf, ps, 77);
	ASSERT_EQ(0, uffdx_copy(ctx, m.id, ps, buf, ps, 0, &res));
	EXPECT_EQ((int64_t)ps, res);
	EXPECT_EQ(-1, check_pattern((uint8_t *)m.addr + ps, ps, 77));
	EXPECT_TRUE(is_zero(m.addr, ps));
	free(buf);
	uffdx_region_unmap(&m);
	close(ctx);
}

static void expect_busy(struct __test_metadata *_metadata)
{
	int ret = try_rmmod();

	if (ret == 0)
		TH_LOG("delete_module(uffdx) SUCCEEDED while in use");
	ASSERT_EQ(-1, ret);
	/* EWOULDBLOCK == EAGAIN: module refcount non-zero */
	EXPECT_EQ(EWOULDBLOCK, errno) TH_LOG("errno %d (%s)", errno, strerror(errno));
}

FIXTURE(mod) {
	int dummy;
};

FIXTURE_SETUP(mod)
{
	SKIP_IF_NO_UFFDX();
	if (getuid() != 0)
		SKIP(return, "needs root (CAP_SYS_MODULE)");
	if (access("/sys/module/uffdx", F_OK))
		SKIP(return, "uffdx is not a loadable module here");
}

FIXTURE_TEARDOWN(mod)
{
}

TEST_F(mod, rmmod_with_unnegotiated_context)
{
	int fd = open(UFFDX_DEV, O_RDWR | O_CLOEXEC);

	ASSERT_LE(0, fd);
	expect_busy(_metadata);
	close(fd);
	module_works(_metadata);
}

TEST_F(mod, rmmod_with_context_open)
{
	int ctx = ctx_open(DEFAULT_FEATURES, 0);
	uint64_t id = 0;
	int rfd;

	ASSERT_LE(0, ctx);
	expect_busy(_metadata);
	/* the context itself still works */
	rfd = uffdx_region_create(ctx, ps, 0, &id);
	EXPECT_LE(0, rfd);
	if (rfd >= 0)
		close(rfd);
	close(ctx);
	module_works(_metadata);
}

TEST_F(mod, rmmod_with_region_fd_only)
{
	struct uffdx_region_info info;
	uint64_t id = 0;
	uint8_t *p;
	int ctx, rfd;

	ctx = ctx_open(DEFAULT_FEATURES, 0);
	ASSERT_LE(0, ctx);
	rfd = uffdx_region_create(ctx, 2 * ps, 0, &id);
	ASSERT_LE(0, rfd);
	close(ctx);

	expect_busy(_metadata);
	ASSERT_EQ(0, uffdx_region_info(rfd, &info));
	EXPECT_EQ(id, info.region_id);
	EXPECT_TRUE(info.flags & UFFDX_REGION_OWNER_GONE);
	p = mmap(NULL, 2 * ps, PROT_READ | PROT_WRITE, MAP_SHARED, rfd, 0);
	ASSERT_NE(MAP_FAILED, p);
	p[0] = 0x42;
	EXPECT_EQ(0x42, p[0]);
	munmap(p, 2 * ps);
	close(rfd);
	module_works(_metadata);
}

TEST_F(mod, rmmod_with_mapping_only)
{
	uint64_t id = 0;
	uint8_t *p;
	int ctx, rfd;

	ctx = ctx_open(DEFAULT_FEATURES, 0);
	ASSERT_LE(0, ctx);
	rfd = uffdx_region_create(ctx, 4 * ps, 0, &id);
	ASSERT_LE(0, rfd);
	p = mmap(NULL, 4 * ps, PROT_READ | PROT_WRITE, MAP_SHARED, rfd, 0);
	ASSERT_NE(MAP_FAILED, p);
	fill_pattern(p, ps, 5);
	close(rfd);
	close(ctx);

	/* only the VMA holds the region file, and through it the module */
	expect_busy(_metadata);
	EXPECT_EQ(-1, check_pattern(p, ps, 5));
	fill_pattern(p + 3 * ps, ps, 6);
	EXPECT_EQ(-1, check_pattern(p + 3 * ps, ps, 6));
	munmap(p, 4 * ps);
	module_works(_metadata);
}

/* ---- module references, counted ---------------------------------------------- */

#define REFCNT "/sys/module/uffdx/refcnt"

static long long refcnt(void)
{
	long long v = -1;

	if (read_ll_file(REFCNT, &v))
		return -1;
	return v;
}

/* modprobe, found where a system keeps it; NULL if there is none. */
static const char *modprobe_path(void)
{
	static const char *const paths[] = {
		"/sbin/modprobe", "/usr/sbin/modprobe", "/bin/modprobe", "/usr/bin/modprobe",
	};
	unsigned int i;

	for (i = 0; i < sizeof(paths) / sizeof(paths[0]); i++)
		if (access(paths[i], X_OK) == 0)
			return paths[i];
	return NULL;
}

/* Load the module again and wait for its node: 0 or -errno. */
static int reload(void)
{
	const char *mp = modprobe_path();
	uint64_t end;
	int status = 0, ret;
	pid_t pid;

	if (!mp)
		return -ENOENT;
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		execl(mp, "modprobe", "uffdx", (char *)NULL);
		_exit(127);
	}
	ret = wait_child(pid, &status, 6 * WAIT_MS);
	if (ret) {
		kill_child(pid, NULL);
		return ret;
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status))
		return -EIO;
	end = now_ns() + (uint64_t)WAIT_MS * 1000000ull;
	while (access(UFFDX_DEV, F_OK)) {
		if (now_ns() > end)
			return -ETIMEDOUT;
		usleep(1000);
	}
	return 0;
}

/* Unload (the count must be 0 by now) and load again. */
static void rmmod_and_reload(struct __test_metadata *_metadata)
{
	int ret = try_rmmod();

	ASSERT_EQ(0, ret) TH_LOG("rmmod with nothing open: %s (refcnt %lld)",
				 strerror(errno), refcnt());
	EXPECT_NE(0, access("/sys/module/uffdx", F_OK));
	ret = reload();
	ASSERT_EQ(0, ret) TH_LOG("modprobe uffdx: %s; the module is left UNLOADED",
				 strerror(-ret));
}

/*
 * Who holds the module: a context file, each region file (the one
 * REGION_CREATE returned and any reopen), and the region filesystem while
 * any region lives (its superblock).  A mapping holds a region file, and
 * so the rest.
 */
TEST_F(mod, refcount_of_contexts_and_regions)
{
	uint64_t id1 = 0, id2 = 0;
	int ctx, r1, r2, r3;
	char path[64];
	uint8_t *p;

	if (refcnt() < 0)
		SKIP(return, REFCNT " not readable");
	if (!modprobe_path())
		SKIP(return, "no modprobe to load the module again");
	if (refcnt() != 0)
		SKIP(return, "uffdx is in use elsewhere (refcnt %lld)", refcnt());

	ctx = ctx_open(DEFAULT_FEATURES, 0);
	ASSERT_LE(0, ctx);
	EXPECT_EQ(1, refcnt());
	r1 = uffdx_region_create(ctx, 2 * ps, 0, &id1);
	ASSERT_LE(0, r1);
	EXPECT_EQ(3, refcnt()) TH_LOG("context + region file + filesystem");
	r2 = uffdx_region_create(ctx, 2 * ps, 0, &id2);
	ASSERT_LE(0, r2);
	EXPECT_EQ(4, refcnt());
	snprintf(path, sizeof(path), "/proc/self/fd/%d", r1);
	r3 = open(path, O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, r3) TH_LOG("reopen: %s", strerror(errno));
	EXPECT_EQ(5, refcnt()) TH_LOG("a reopened region file");
	close(r3);
	EXPECT_EQ(4, refcnt());
	close(r2);
	EXPECT_EQ(3, refcnt());

	/* a mapping holds the region file; the fd can go */
	p = mmap(NULL, 2 * ps, PROT_READ | PROT_WRITE, MAP_SHARED, r1, 0);
	ASSERT_NE(MAP_FAILED, p);
	close(r1);
	EXPECT_EQ(3, refcnt());
	p[0] = 1;
	munmap(p, 2 * ps);
	EXPECT_EQ(1, refcnt()) TH_LOG("regions gone: only the context");

	/* a region that outlives its context */
	r1 = uffdx_region_create(ctx, ps, 0, &id1);
	ASSERT_LE(0, r1);
	EXPECT_EQ(3, refcnt());
	close(ctx);
	EXPECT_EQ(2, refcnt()) TH_LOG("region file + filesystem");
	close(r1);
	EXPECT_EQ(0, refcnt());

	rmmod_and_reload(_metadata);
	module_works(_metadata);
	EXPECT_EQ(0, refcnt());
}

/* Regions come and go, and so does the module, every time. */
TEST_F_TIMEOUT(mod, rmmod_after_regions_loop, 240)
{
	int round;

	if (refcnt() < 0)
		SKIP(return, REFCNT " not readable");
	if (!modprobe_path())
		SKIP(return, "no modprobe to load the module again");
	if (refcnt() != 0)
		SKIP(return, "uffdx is in use elsewhere (refcnt %lld)", refcnt());

	for (round = 0; round < 20; round++) {
		struct uffdx_region_map m;
		int64_t res = 0;
		int ctx, ret;

		ctx = ctx_open(DEFAULT_FEATURES, 0);
		ASSERT_LE(0, ctx) TH_LOG("round %d: %s", round, strerror(-ctx));
		ret = uffdx_region_map(ctx, 4 * ps, 0, &m);
		ASSERT_EQ(0, ret) TH_LOG("round %d: %s", round, strerror(-ret));
		ASSERT_EQ(0, uffdx_zero(ctx, m.id, ps, ps, 0, &res));
		((uint8_t *)m.addr)[0] = (uint8_t)round;
		EXPECT_EQ((uint8_t)round, ((uint8_t *)m.addr)[0]);
		if (round & 1) {
			/* the region outlives the context, briefly */
			close(ctx);
			uffdx_region_unmap(&m);
		} else {
			uffdx_region_unmap(&m);
			close(ctx);
		}
		ASSERT_EQ(0, refcnt()) TH_LOG("round %d", round);
		rmmod_and_reload(_metadata);
	}
	module_works(_metadata);
}

/* ---- the last close with faulters asleep -------------------------------------- */

#define SLEEPERS 4

/* Wait (bounded) for the module's reference count to reach zero. */
static int refcnt_settles(void)
{
	uint64_t end = now_ns() + (uint64_t)WAIT_MS * 1000000ull;

	while (refcnt() != 0) {
		if (now_ns() > end)
			return -1;
		usleep(1000);
	}
	return 0;
}

/* SLEEPERS threads asleep in faults on armed holes of m: 0 or -1. */
static int start_sleepers(struct uffdx_region_map *m, int ctx, struct accessor **a)
{
	long long pending = 0;
	uint64_t end;
	int i;

	for (i = 0; i < SLEEPERS; i++) {
		a[i] = acc_new((uint8_t *)m->addr + (size_t)(2 + i) * ps, i & 1, 0x11);
		if (!a[i] || acc_start_thread(a[i]))
			return -1;
	}
	end = now_ns() + (uint64_t)WAIT_MS * 1000000ull;
	while (pending < SLEEPERS) {
		if (fdinfo_ll(ctx, "uffdx-events-pending", &pending) || now_ns() > end)
			return -1;
		usleep(500);
	}
	return 0;
}

/*
 * Unloading is refused while faulters sleep, and succeeds as soon as the
 * last reference goes, however it goes: the context's last close wakes
 * them (SIGBUS), or, their mapping already gone, the wake-up finds no VMA
 * (SIGSEGV), and their file references are the last; or the faulting
 * process is killed; or it exits with them asleep.  Looped.
 */
TEST_F_TIMEOUT(mod, rmmod_after_last_close_with_faulters_asleep, 300)
{
	int round;

	if (refcnt() < 0)
		SKIP(return, REFCNT " not readable");
	if (!modprobe_path())
		SKIP(return, "no modprobe to load the module again");
	if (refcnt() != 0)
		SKIP(return, "uffdx is in use elsewhere (refcnt %lld)", refcnt());

	for (round = 0; round < 12; round++) {
		struct accessor *a[SLEEPERS];
		struct uffdx_region_map m;
		int variant = round % 4, ctx, ret, i, status, sig;
		pid_t pid = -1;

		memset(a, 0, sizeof(a));
		ctx = ctx_open(DEFAULT_FEATURES, 0);
		ASSERT_LE(0, ctx) TH_LOG("round %d: %s", round, strerror(-ctx));
		ret = uffdx_region_map(ctx, 16 * ps, 0, &m);
		ASSERT_EQ(0, ret) TH_LOG("round %d: %s", round, strerror(-ret));
		fill_pattern(m.addr, ps, round);
		ASSERT_EQ(0, uffdx_arm(ctx, m.id, 2 * ps, 8 * ps, UFFDX_ARM_MISSING));
		if (variant >= 2) {
			/* the faulters in a child process */
			fflush(stdout);
			fflush(stderr);
			pid = fork();
			ASSERT_LE(0, pid);
			if (pid == 0) {
				if (start_sleepers(&m, ctx, a))
					_exit(10);
				if (variant == 3)
					exit(0);	/* with its threads asleep */
				for (;;)
					pause();
			}
			if (variant == 2) {
				long long pending = 0;
				uint64_t end = now_ns() + (uint64_t)WAIT_MS * 1000000ull;

				while (pending < SLEEPERS && now_ns() < end) {
					fdinfo_ll(ctx, "uffdx-events-pending", &pending);
					usleep(500);
				}
				ASSERT_EQ(SLEEPERS, pending) TH_LOG("round %d", round);
				expect_busy(_metadata);
				kill(pid, SIGKILL);
			}
			ASSERT_EQ(0, wait_child(pid, &status, WAIT_MS)) TH_LOG("round %d", round);
			if (variant == 3)
				ASSERT_TRUE(WIFEXITED(status) && !WEXITSTATUS(status))
					TH_LOG("round %d: status 0x%x", round, status);
			uffdx_region_unmap(&m);
			expect_busy(_metadata);	/* the context */
			close(ctx);
		} else {
			ASSERT_EQ(0, start_sleepers(&m, ctx, a)) TH_LOG("round %d", round);
			close(m.fd);
			m.fd = -1;
			if (variant == 1) {
				/* only the sleeping faults hold the region now */
				munmap(m.addr, m.len);
				m.addr = NULL;
			}
			expect_busy(_metadata);
			close(ctx);	/* the last close: they wake */
			sig = variant == 1 ? SIGSEGV : SIGBUS;
			for (i = 0; i < SLEEPERS; i++) {
				ASSERT_EQ(0, acc_wait(a[i], WAIT_MS))
					TH_LOG("round %d: faulter %d still asleep", round, i);
				EXPECT_EQ(sig, a[i]->sig) TH_LOG("round %d: faulter %d", round, i);
				acc_free(a[i]);
			}
			if (m.addr) {
				EXPECT_EQ(-1, check_pattern(m.addr, ps, round));
				munmap(m.addr, m.len);
			}
		}
		ASSERT_EQ(0, refcnt_settles())
			TH_LOG("round %d (variant %d): refcnt %lld after everything went",
			       round, variant, refcnt());
		rmmod_and_reload(_metadata);
	}
	module_works(_metadata);
}

TEST_HARNESS_MAIN
