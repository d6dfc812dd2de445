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

TEST_HARNESS_MAIN
