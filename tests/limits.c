// SPDX-License-Identifier: GPL-2.0
/*
 * uffdx limits (issue 13): the per-user budgets (contexts, regions, pages),
 * what is charged (store pages, arming bitmaps, poison entries, pages a
 * pipe still holds after a DISCARD), how long a charge lasts, freeing a
 * huge region without stalling a CPU, and the page lookup protocol under
 * DISCARD racing with faults and fills.
 *
 * The budget tests change module parameters (root only) and restore them
 * in a FIXTURE_TEARDOWN_PARENT, which runs even if the test dies.  They
 * assume that no other process of the same user holds uffdx memory while
 * they run (true in the test guest, which runs one program at a time).
 */
#include "helpers.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <grp.h>
#include <time.h>
#include <unistd.h>

#include "kselftest_harness.h"

#define P_CTX_PAGES	UFFDX_PARAM_DIR "/max_pages_per_context"
#define P_USER_PAGES	UFFDX_PARAM_DIR "/max_pages_per_user"
#define P_USER_CTXS	UFFDX_PARAM_DIR "/max_contexts_per_user"
#define P_USER_REGIONS	UFFDX_PARAM_DIR "/max_regions_per_user"

static const char *const budget_params[] = {
	P_CTX_PAGES, P_USER_PAGES, P_USER_CTXS, P_USER_REGIONS,
};
#define NPARAMS (sizeof(budget_params) / sizeof(budget_params[0]))

FIXTURE(budget) {
	long long old[NPARAMS];
	int saved[NPARAMS];
	mode_t dev_mode;
	int mode_saved;
};

FIXTURE_SETUP(budget)
{
	struct stat st;
	unsigned int i;

	memset(self->saved, 0, sizeof(self->saved));
	self->mode_saved = 0;
	SKIP_IF_NO_UFFDX();
	if (getuid() != 0)
		SKIP(return, "needs root to set the module parameters");
	/* the parameters must exist: fail, do not skip */
	for (i = 0; i < NPARAMS; i++) {
		ASSERT_EQ(0, read_ll_file(budget_params[i], &self->old[i]))
			TH_LOG("cannot read %s", budget_params[i]);
		self->saved[i] = 1;
	}
	ASSERT_EQ(0, stat(UFFDX_DEV, &st));
	self->dev_mode = st.st_mode & 07777;
	self->mode_saved = 1;
}

FIXTURE_TEARDOWN_PARENT(budget)
{
	unsigned int i;

	for (i = 0; i < NPARAMS; i++)
		if (self->saved[i])
			write_ll_file(budget_params[i], self->old[i]);
	if (self->mode_saved)
		chmod(UFFDX_DEV, self->dev_mode);
}

#define SET_PARAM(path, val) \
	ASSERT_EQ(0, write_ll_file(path, val)) TH_LOG("cannot write %s", path)

/* Open a context under max_pages_per_context = pages (read at open), restore it. */
static int ctx_open_limited(struct __test_metadata *_metadata, FIXTURE_DATA(budget) *self,
			    long long pages)
{
	int ctx;

	if (write_ll_file(P_CTX_PAGES, pages)) {
		TH_LOG("cannot write " P_CTX_PAGES);
		return -EIO;
	}
	ctx = ctx_open(DEFAULT_FEATURES, 0);
	write_ll_file(P_CTX_PAGES, self->old[0]);
	return ctx;
}


#define EXPECT_FILL_ENOMEM(ctx, nr, id, off) do {				\
	int64_t __res = 0;							\
	EXPECT_EQ(-1, raw_range(ctx, nr, id, off, ps, NULL, 0, &__res));		\
	EXPECT_EQ(ENOMEM, errno);						\
	EXPECT_EQ(-ENOMEM, __res);						\
} while (0)

/* ZERO of npages at page index first: expect it whole. */
#define EXPECT_ZERO_OK(ctx, id, first, npages) do {				\
	int64_t __res = 0;							\
	EXPECT_EQ(0, raw_range(ctx, UFFDX_IOC_ZERO, id, (uint64_t)(first) * ps,	\
			   (uint64_t)(npages) * ps, NULL, 0, &__res))		\
		TH_LOG("ZERO %d pages: %s", (int)(npages), strerror(errno));	\
	EXPECT_EQ((int64_t)(npages) * (int64_t)ps, __res);			\
} while (0)

/* ZERO of npages that can do only done of them: EAGAIN, result done pages. */
#define EXPECT_ZERO_PARTIAL(ctx, id, first, npages, done) do {			\
	int64_t __res = 0;							\
	EXPECT_EQ(-1, raw_range(ctx, UFFDX_IOC_ZERO, id, (uint64_t)(first) * ps,	\
			    (uint64_t)(npages) * ps, NULL, 0, &__res));		\
	EXPECT_EQ(EAGAIN, errno);						\
	EXPECT_EQ((int64_t)(done) * (int64_t)ps, __res)			\
		TH_LOG("%lld pages done, expected %d",				\
		       (long long)(__res / (int64_t)ps), (int)(done));		\
} while (0)

/* ---- contexts and regions per user ----------------------------------------- */

#define CTX_CAP 8

TEST_F(budget, contexts_per_user_emfile)
{
	int fds[CTX_CAP + 1], i, fd;

	SET_PARAM(P_USER_CTXS, CTX_CAP);
	for (i = 0; i < CTX_CAP; i++) {
		fds[i] = open(UFFDX_DEV, O_RDWR | O_CLOEXEC);
		ASSERT_LE(0, fds[i]) TH_LOG("context %d of %d: %s", i + 1, CTX_CAP,
					    strerror(errno));
	}
	fd = open(UFFDX_DEV, O_RDWR | O_CLOEXEC);
	EXPECT_EQ(-1, fd);
	EXPECT_EQ(EMFILE, errno) TH_LOG("%s", strerror(errno));
	if (fd >= 0)
		close(fd);
	/* negotiated or not, each counts; the library says so too */
	EXPECT_EQ(0, uffdx_api(fds[0], DEFAULT_FEATURES, NULL));
	EXPECT_EQ(-EMFILE, ctx_open(DEFAULT_FEATURES, 0));

	/* closing one frees its slot */
	close(fds[3]);
	fds[3] = open(UFFDX_DEV, O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, fds[3]) TH_LOG("after a close: %s", strerror(errno));
	EXPECT_EQ(-1, open(UFFDX_DEV, O_RDWR | O_CLOEXEC));
	EXPECT_EQ(EMFILE, errno);
	for (i = 0; i < CTX_CAP; i++)
		close(fds[i]);
	/* all free again */
	fd = ctx_open(DEFAULT_FEATURES, 0);
	EXPECT_LE(0, fd);
	if (fd >= 0)
		close(fd);
}

#define REGION_CAP 16

TEST_F(budget, regions_per_user_enospc)
{
	struct uffdx_region_create rc;
	int fds[REGION_CAP], i, ctx, ctx2, fd;
	uint64_t id;
	uint8_t *p;

	SET_PARAM(P_USER_REGIONS, REGION_CAP);
	ctx = ctx_open(DEFAULT_FEATURES, 0);
	ASSERT_LE(0, ctx);
	ctx2 = ctx_open(DEFAULT_FEATURES, 0);
	ASSERT_LE(0, ctx2);
	for (i = 0; i < REGION_CAP; i++) {
		fds[i] = uffdx_region_create(i & 1 ? ctx2 : ctx, ps, 0, &id);
		ASSERT_LE(0, fds[i]) TH_LOG("region %d of %d: %s", i + 1, REGION_CAP,
					    strerror(-fds[i]));
	}
	memset(&rc, 0, sizeof(rc));
	rc.size = sizeof(rc);
	rc.len = ps;
	EXPECT_EQ(-1, ioctl(ctx, UFFDX_IOC_REGION_CREATE, &rc));
	EXPECT_EQ(ENOSPC, errno) TH_LOG("%s", strerror(errno));
	/* the budget is the user's: the other context is full too */
	EXPECT_EQ(-ENOSPC, uffdx_region_create(ctx2, ps, 0, &id));

	/* freeing a region frees its slot */
	close(fds[4]);
	fds[4] = uffdx_region_create(ctx2, ps, 0, &id);
	ASSERT_LE(0, fds[4]) TH_LOG("after a close: %s", strerror(-fds[4]));
	EXPECT_EQ(-ENOSPC, uffdx_region_create(ctx, ps, 0, &id));

	/* a region only a mapping holds still counts, until the munmap */
	p = mmap(NULL, ps, PROT_READ | PROT_WRITE, MAP_SHARED, fds[7], 0);
	ASSERT_NE(MAP_FAILED, p);
	close(fds[7]);
	fds[7] = -1;
	EXPECT_EQ(-ENOSPC, uffdx_region_create(ctx, ps, 0, &id));
	munmap(p, ps);
	fd = uffdx_region_create(ctx, ps, 0, &id);
	EXPECT_LE(0, fd) TH_LOG("after the munmap: %s", strerror(-fd));
	if (fd >= 0)
		close(fd);
	for (i = 0; i < REGION_CAP; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	close(ctx2);
	close(ctx);
}

/* ---- pages per user ------------------------------------------------------------- */

TEST_F(budget, pages_shared_by_contexts_of_a_user)
{
	struct uffdx_region_map m1, m2;
	int c1, c2;
	int64_t res;

	SET_PARAM(P_USER_PAGES, 64);
	c1 = ctx_open(DEFAULT_FEATURES, 0);
	ASSERT_LE(0, c1);
	c2 = ctx_open(DEFAULT_FEATURES, 0);
	ASSERT_LE(0, c2);
	ASSERT_EQ(0, uffdx_region_map(c1, 128 * ps, 0, &m1));
	ASSERT_EQ(0, uffdx_region_map(c2, 128 * ps, 0, &m2));

	EXPECT_ZERO_OK(c1, m1.id, 0, 40);
	/* the other context gets what is left of the user's 64 */
	EXPECT_ZERO_PARTIAL(c2, m2.id, 0, 64, 24);
	EXPECT_FILL_ENOMEM(c2, UFFDX_IOC_ZERO, m2.id, 100 * ps);
	EXPECT_FILL_ENOMEM(c1, UFFDX_IOC_ZERO, m1.id, 100 * ps);
	/* a fault that would allocate: SIGBUS, in either */
	EXPECT_EQ(SIGBUS, try_write((uint8_t *)m2.addr + 90 * ps, 1));
	EXPECT_EQ(SIGBUS, try_write((uint8_t *)m1.addr + 90 * ps, 1));

	/* what one context gives back, the other can take */
	ASSERT_EQ(0, uffdx_discard(c1, m1.id, 0, 10 * ps, &res));
	EXPECT_ZERO_PARTIAL(c2, m2.id, 24, 20, 10);
	EXPECT_EQ(0, try_write((uint8_t *)m1.addr + 15 * ps, 1));	/* populated: no charge */
	EXPECT_EQ(SIGBUS, try_write((uint8_t *)m1.addr + 95 * ps, 1));

	/* closing a context and its regions gives all of its share back */
	uffdx_region_unmap(&m2);
	close(c2);
	EXPECT_ZERO_OK(c1, m1.id, 40, 34);
	EXPECT_FILL_ENOMEM(c1, UFFDX_IOC_ZERO, m1.id, 100 * ps);
	uffdx_region_unmap(&m1);
	close(c1);
}

TEST_F(budget, other_user_has_own_budget)
{
	struct uffdx_region_map m;
	int ctx, status = -1;
	pid_t pid;

	SET_PARAM(P_USER_PAGES, 64);
	ctx = ctx_open(DEFAULT_FEATURES, 0);
	ASSERT_LE(0, ctx);
	ASSERT_EQ(0, uffdx_region_map(ctx, 128 * ps, 0, &m));
	EXPECT_ZERO_OK(ctx, m.id, 0, 64);
	EXPECT_FILL_ENOMEM(ctx, UFFDX_IOC_ZERO, m.id, 64 * ps);

	/* another user may open the node now */
	ASSERT_EQ(0, chmod(UFFDX_DEV, 0666));
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0) {
		struct uffdx_region_map cm;
		int64_t r = 0;
		int c;

		close(ctx);
		if (setgroups(0, NULL) || setresgid(65534, 65534, 65534) ||
		    setresuid(65534, 65534, 65534))
			_exit(10);
		c = ctx_open(DEFAULT_FEATURES, 0);
		if (c < 0) {
			struct stat st;

			stat(UFFDX_DEV, &st);
			fprintf(stderr, "child: ctx_open: %s (uid %d euid %d, node mode %o uid %d)\n",
				strerror(-c), getuid(), geteuid(), st.st_mode & 07777, st.st_uid);
			_exit(11);
		}
		if (uffdx_region_map(c, 128 * ps, 0, &cm))
			_exit(12);
		/* a budget of its own: 64 pages */
		if (raw_range(c, UFFDX_IOC_ZERO, cm.id, 0, 64 * ps, NULL, 0, &r) || r != (int64_t)(64 * ps))
			_exit(13);
		/* and bounded the same way */
		if (raw_range(c, UFFDX_IOC_ZERO, cm.id, 64 * ps, ps, NULL, 0, &r) != -1 || errno != ENOMEM)
			_exit(14);
		if (try_write((uint8_t *)cm.addr + 100 * ps, 1) != SIGBUS)
			_exit(15);
		_exit(0);
	}
	ASSERT_EQ(0, wait_child(pid, &status, 4 * WAIT_MS));
	ASSERT_TRUE(WIFEXITED(status));
	EXPECT_EQ(0, WEXITSTATUS(status))
		TH_LOG("child step %d failed (10 setresuid, 11 open, 12 region, 13 its 64 pages refused, 14 over its budget, 15 fault over it)",
		       WEXITSTATUS(status));
	/* ours did not change */
	EXPECT_FILL_ENOMEM(ctx, UFFDX_IOC_ZERO, m.id, 64 * ps);
	uffdx_region_unmap(&m);
	close(ctx);
}

/* A region's charge lasts as long as the region, even if only a mapping holds it. */
TEST_F(budget, mapping_alone_keeps_the_charge)
{
	struct uffdx_region_map m, m2;
	int ctx, ctx2;
	uint8_t *p;
	int k;

	SET_PARAM(P_USER_PAGES, 32);
	ctx = ctx_open(DEFAULT_FEATURES, 0);
	ASSERT_LE(0, ctx);
	ASSERT_EQ(0, uffdx_region_map(ctx, 32 * ps, 0, &m));
	for (k = 0; k < 32; k++)
		ASSERT_EQ(0, try_write((uint8_t *)m.addr + k * ps, (uint8_t)(k + 1)))
			TH_LOG("page %d", k);
	p = m.addr;
	close(m.fd);
	close(ctx);

	/* the context and the fd are gone; the mapping holds 32 pages */
	ctx2 = ctx_open(DEFAULT_FEATURES, 0);
	ASSERT_LE(0, ctx2);
	ASSERT_EQ(0, uffdx_region_map(ctx2, 64 * ps, 0, &m2));
	EXPECT_FILL_ENOMEM(ctx2, UFFDX_IOC_ZERO, m2.id, 0);
	EXPECT_EQ(SIGBUS, try_write(m2.addr, 1));
	for (k = 0; k < 32; k++)
		EXPECT_EQ((uint8_t)(k + 1), p[k * ps]);

	munmap(p, 32 * ps);
	EXPECT_ZERO_OK(ctx2, m2.id, 0, 32);
	EXPECT_FILL_ENOMEM(ctx2, UFFDX_IOC_ZERO, m2.id, 40 * ps);
	uffdx_region_unmap(&m2);
	close(ctx2);
}

/* ---- what is charged -------------------------------------------------------- */

/* The arming bitmap, allocated by the first ARM, is charged in whole pages. */
TEST_F(budget, arming_bitmap_is_charged)
{
	uint64_t tib = 1ULL << 40, id = 0, id2 = 0;
	/* one bit per page: this region's bitmap is exactly two pages */
	uint64_t two_page_bitmap = (uint64_t)ps * 8 * 2 * ps;
	int ctx, fd, fd2;
	int64_t res;

	ctx = ctx_open_limited(_metadata, self, 64);
	ASSERT_LE(0, ctx) TH_LOG("%s", strerror(-ctx));

	/* 1 TiB: a 32 MiB bitmap is far over 64 pages */
	fd = uffdx_region_create(ctx, tib, 0, &id);
	ASSERT_LE(0, fd) TH_LOG("%s", strerror(-fd));
	EXPECT_EQ(-1, raw_range(ctx, UFFDX_IOC_ARM, id, 0, tib, NULL, UFFDX_ARM_MISSING, NULL));
	EXPECT_EQ(ENOMEM, errno) TH_LOG("%s", strerror(errno));
	EXPECT_EQ(-1, raw_range(ctx, UFFDX_IOC_ARM, id, tib - ps, ps, NULL, UFFDX_ARM_MISSING, NULL));
	EXPECT_EQ(ENOMEM, errno);
	/* and the failed ARMs left nothing charged: all 64 pages fill */
	EXPECT_ZERO_OK(ctx, id, 1000, 64);
	EXPECT_FILL_ENOMEM(ctx, UFFDX_IOC_ZERO, id, 0);
	ASSERT_EQ(0, uffdx_discard(ctx, id, 1000 * ps, 64 * ps, &res));
	close(fd);

	/* a small region's bitmap: rounded up to one page */
	fd = uffdx_region_create(ctx, 64 * ps, 0, &id);
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, uffdx_arm(ctx, id, 0, 32 * ps, UFFDX_ARM_MISSING));
	EXPECT_ZERO_PARTIAL(ctx, id, 0, 64, 63);
	/* only the first ARM allocates: more ARMs cost nothing */
	EXPECT_EQ(0, uffdx_arm(ctx, id, 32 * ps, 32 * ps, UFFDX_ARM_MISSING));
	EXPECT_EQ(0, uffdx_arm(ctx, id, 0, 64 * ps, UFFDX_ARM_MISSING));
	/* freeing the region gives back its pages and its bitmap */
	close(fd);

	/* a bitmap of two pages lowers what can be filled by two */
	fd = uffdx_region_create(ctx, two_page_bitmap, 0, &id);
	ASSERT_LE(0, fd) TH_LOG("%s", strerror(-fd));
	fd2 = uffdx_region_create(ctx, 128 * ps, 0, &id2);
	ASSERT_LE(0, fd2);
	ASSERT_EQ(0, uffdx_arm(ctx, id, 0, two_page_bitmap, UFFDX_ARM_MISSING));
	EXPECT_ZERO_PARTIAL(ctx, id2, 0, 64, 62);
	close(fd);
	/* gone with its region */
	EXPECT_ZERO_OK(ctx, id2, 62, 2);
	EXPECT_FILL_ENOMEM(ctx, UFFDX_IOC_ZERO, id2, 100 * ps);
	close(fd2);
	close(ctx);
}

/* A poison entry costs 512 bytes of budget: ps / 512 of them per page. */
TEST_F(budget, poison_is_charged_and_discard_refunds)
{
	uint64_t gib = 1ULL << 30, id = 0;
	const int64_t per_page = (int64_t)ps / 512;
	int64_t res = 0;
	int ctx, fd;

	ctx = ctx_open_limited(_metadata, self, 64);
	ASSERT_LE(0, ctx) TH_LOG("%s", strerror(-ctx));
	fd = uffdx_region_create(ctx, gib, 0, &id);
	ASSERT_LE(0, fd);

	/* 64 pages of budget: 64 * ps / 512 poison entries */
	EXPECT_EQ(-1, raw_range(ctx, UFFDX_IOC_POISON, id, 0, gib, NULL, 0, &res));
	EXPECT_EQ(EAGAIN, errno);
	EXPECT_EQ(64 * per_page * (int64_t)ps, res)
		TH_LOG("%lld poison entries", (long long)(res / (int64_t)ps));
	EXPECT_FILL_ENOMEM(ctx, UFFDX_IOC_POISON, id, gib - ps);
	EXPECT_FILL_ENOMEM(ctx, UFFDX_IOC_ZERO, id, gib - ps);

	/* DISCARD gives it all back: the same again */
	ASSERT_EQ(0, raw_range(ctx, UFFDX_IOC_DISCARD, id, 0, gib, NULL, 0, &res));
	EXPECT_EQ((int64_t)gib, res);
	EXPECT_EQ(-1, raw_range(ctx, UFFDX_IOC_POISON, id, 0, gib, NULL, 0, &res));
	EXPECT_EQ(EAGAIN, errno);
	EXPECT_EQ(64 * per_page * (int64_t)ps, res);
	ASSERT_EQ(0, raw_range(ctx, UFFDX_IOC_DISCARD, id, 0, gib, NULL, 0, &res));

	/* one poison entry is never free: a page's budget holds ps / 512 */
	EXPECT_ZERO_OK(ctx, id, 0, 63);
	EXPECT_EQ(-1, raw_range(ctx, UFFDX_IOC_POISON, id, 100 * ps, 4 * per_page * ps, NULL, 0, &res));
	EXPECT_EQ(EAGAIN, errno);
	EXPECT_EQ(per_page * (int64_t)ps, res);
	EXPECT_FILL_ENOMEM(ctx, UFFDX_IOC_POISON, id, gib - ps);
	ASSERT_EQ(0, raw_range(ctx, UFFDX_IOC_DISCARD, id, 0, gib, NULL, 0, &res));
	EXPECT_ZERO_OK(ctx, id, 0, 64);
	close(fd);
	close(ctx);
}

/*
 * A page DISCARDed while a pipe still references it (vmsplice) stays
 * charged until the pipe lets go: map, splice, discard in a loop cannot
 * hold more than the budget.  The data stays with the pipe.
 */
#define SPLICE_ROUNDS 64

TEST_F(budget, spliced_page_stays_charged_after_discard)
{
	struct uffdx_region_map m;
	uint8_t *buf;
	int ctx, p[2], ret, i, failed = -1;
	int64_t res = 0;

	ctx = ctx_open_limited(_metadata, self, 32);
	ASSERT_LE(0, ctx) TH_LOG("%s", strerror(-ctx));
	ASSERT_EQ(0, uffdx_region_map(ctx, 4 * ps, 0, &m));
	buf = malloc(ps);
	ASSERT_NE(NULL, buf);
	ASSERT_EQ(0, pipe2(p, O_CLOEXEC | O_NONBLOCK));
	ret = fcntl(p[1], F_SETPIPE_SZ, 1 << 20);
	if (ret < (int)(SPLICE_ROUNDS * ps))
		SKIP(return, "pipe of %d bytes, need %zu", ret, SPLICE_ROUNDS * ps);

	for (i = 0; i < SPLICE_ROUNDS; i++) {
		struct iovec iov = { .iov_base = m.addr, .iov_len = ps };
		ssize_t n;

		fill_pattern(buf, ps, 1000 + i);
		ret = uffdx_copy(ctx, m.id, 0, buf, ps, 0, &res);
		if (ret == -ENOMEM || ret == -EAGAIN) {
			failed = i;
			break;
		}
		ASSERT_EQ(0, ret) TH_LOG("round %d: %s", i, strerror(-ret));
		/* the pipe takes a reference on the mapped page */
		n = vmsplice(p[1], &iov, 1, SPLICE_F_NONBLOCK);
		ASSERT_EQ((ssize_t)ps, n) TH_LOG("round %d: vmsplice: %s", i, strerror(errno));
		ASSERT_EQ(0, uffdx_discard(ctx, m.id, 0, ps, &res));
	}
	TH_LOG("the fill failed at round %d (budget 32 pages)", failed);
	ASSERT_LE(0, failed) TH_LOG("discarded pages held by the pipe were not charged");
	EXPECT_LE(31, failed);
	EXPECT_GE(33, failed);
	/* a fault cannot get around it */
	EXPECT_EQ(SIGBUS, try_write((uint8_t *)m.addr + 2 * ps, 1));

	/* the pipe kept each round's data */
	for (i = 0; i < failed; i++) {
		ssize_t n = read(p[0], buf, ps);

		ASSERT_EQ((ssize_t)ps, n) TH_LOG("pipe buffer %d: %s", i, strerror(errno));
		EXPECT_EQ(-1, check_pattern(buf, ps, 1000 + i)) TH_LOG("pipe buffer %d", i);
	}
	EXPECT_EQ(-1, read(p[0], buf, ps));
	EXPECT_EQ(EAGAIN, errno);

	/* the pipe let go: the module reaps them when it next needs budget */
	fill_pattern(buf, ps, 2000);
	ret = uffdx_copy(ctx, m.id, 0, buf, ps, 0, &res);
	EXPECT_EQ(0, ret) TH_LOG("after draining the pipe: %s", strerror(-ret));
	EXPECT_EQ(0, memcmp(m.addr, buf, ps));
	EXPECT_ZERO_OK(ctx, m.id, 1, 3);
	free(buf);
	close(p[0]);
	close(p[1]);
	uffdx_region_unmap(&m);
	close(ctx);
}

/* ---- freeing a huge region -------------------------------------------------- */

#define HUGE_LEN (256ULL << 20)
#define TICKS_MAX (1 << 20)

struct ticker {
	int cpu;
	volatile int stop;
	volatile int ready;	/* 1 running, -errno setup failed */
	uint64_t *ts;
	unsigned long n;	/* atomic */
};

static void *ticker_thread(void *p)
{
	struct ticker *t = p;
	struct sched_param sp = { .sched_priority = 50 };
	struct timespec ms = { 0, 1000000 };
	cpu_set_t set;
	int ret;

	CPU_ZERO(&set);
	CPU_SET(t->cpu, &set);
	ret = pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
	if (!ret)
		ret = pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp);
	if (ret) {
		__atomic_store_n(&t->ready, -ret, __ATOMIC_SEQ_CST);
		return NULL;
	}
	__atomic_store_n(&t->ready, 1, __ATOMIC_SEQ_CST);
	while (!__atomic_load_n(&t->stop, __ATOMIC_SEQ_CST)) {
		unsigned long n = __atomic_load_n(&t->n, __ATOMIC_RELAXED);

		clock_nanosleep(CLOCK_MONOTONIC, 0, &ms, NULL);
		if (n < TICKS_MAX) {
			t->ts[n] = now_ns();
			__atomic_store_n(&t->n, n + 1, __ATOMIC_RELEASE);
		}
	}
	return NULL;
}

/*
 * Freeing a fully populated 256 MiB region (in close(), the last reference)
 * must reschedule: a SCHED_FIFO thread on the same CPU keeps ticking.
 */
TEST_F_TIMEOUT(budget, huge_region_free_does_not_stall_cpu, 240)
{
	struct uffdx_region_info info;
	struct ticker t;
	uint64_t id = 0, t0, t1, T, prev, gap, maxgap = 0;
	unsigned long i, n, during = 0;
	cpu_set_t set;
	pthread_t th;
	int ctx, fd, ret;
	int64_t res = 0;

	ctx = ctx_open(DEFAULT_FEATURES, 0);
	ASSERT_LE(0, ctx);
	fd = uffdx_region_create(ctx, HUGE_LEN, 0, &id);
	ASSERT_LE(0, fd);
	ret = uffdx_zero(ctx, id, 0, HUGE_LEN, 0, &res);
	if (ret == -ENOMEM || ret == -EAGAIN)
		SKIP(return, "cannot populate 256 MiB: %s (%lld bytes done)", strerror(-ret),
		     (long long)res);
	ASSERT_EQ(0, ret) TH_LOG("ZERO: %s", strerror(-ret));
	EXPECT_EQ((int64_t)HUGE_LEN, res);
	ASSERT_EQ(0, uffdx_region_info(fd, &info));
	ASSERT_EQ(HUGE_LEN, info.resident);
	close(ctx);	/* the region fd is the last reference */

	memset(&t, 0, sizeof(t));
	t.cpu = sched_getcpu();
	ASSERT_LE(0, t.cpu);
	CPU_ZERO(&set);
	CPU_SET(t.cpu, &set);
	ASSERT_EQ(0, pthread_setaffinity_np(pthread_self(), sizeof(set), &set));
	t.ts = malloc(TICKS_MAX * sizeof(*t.ts));
	ASSERT_NE(NULL, t.ts);
	memset(t.ts, 0, TICKS_MAX * sizeof(*t.ts));	/* no faults while ticking */
	ASSERT_EQ(0, pthread_create(&th, NULL, ticker_thread, &t));
	t0 = now_ns();
	while (!t.ready && now_ns() - t0 < (uint64_t)WAIT_MS * 1000000ull)
		usleep(1000);
	if (t.ready < 0) {
		pthread_join(th, NULL);
		SKIP(return, "cannot run a SCHED_FIFO thread: %s", strerror(-t.ready));
	}
	ASSERT_EQ(1, t.ready);
	/* let it tick a little first */
	t0 = now_ns();
	while (__atomic_load_n(&t.n, __ATOMIC_ACQUIRE) < 10 &&
	       now_ns() - t0 < (uint64_t)WAIT_MS * 1000000ull)
		usleep(1000);

	t0 = now_ns();
	close(fd);	/* frees 65536 pages, here */
	t1 = now_ns();
	__atomic_store_n(&t.stop, 1, __ATOMIC_SEQ_CST);
	pthread_join(th, NULL);

	/*
	 * Progress, not a deadline: the ticker must run during close() (a
	 * free loop that never reschedules lets it run not once), and no
	 * gap may be the whole close().  A loaded host can stop the vCPU for
	 * a good part of it, so the gap alone proves nothing.
	 */
	n = __atomic_load_n(&t.n, __ATOMIC_ACQUIRE);
	prev = t0;
	for (i = 0; i < n; i++) {
		if (t.ts[i] <= t0)
			continue;
		if (t.ts[i] >= t1)
			break;
		during++;
		gap = t.ts[i] - prev;
		if (gap > maxgap)
			maxgap = gap;
		prev = t.ts[i];
	}
	gap = t1 - prev;
	if (gap > maxgap)
		maxgap = gap;
	T = t1 - t0;
	TH_LOG("close() took %llu ms; %lu ticks during it, longest gap %llu ms",
	       (unsigned long long)(T / 1000000), during,
	       (unsigned long long)(maxgap / 1000000));
	if (T < 200000000ull) {
		TH_LOG("close() too fast to tell a stall from none: pass");
	} else {
		EXPECT_GE(during, 2ul) TH_LOG("the free loop does not reschedule");
		EXPECT_LT(maxgap, T) TH_LOG("the free loop does not reschedule");
	}
	free(t.ts);
}

/* ---- DISCARD racing with faults and fills ------------------------------------- */

/*
 * Page contents encode their identity: every 64-bit word of page k filled
 * by a COPY of generation g is (k << 32 | g).  A page is otherwise zero (a
 * zero fill).  Any read of a page must see zero or its own index with a
 * generation that was issued; within one thread, reads of one page never
 * go back to an older generation (that would be a mapping that survived a
 * DISCARD); and a full scan of a page sees at most one non-zero generation
 * per run, non-decreasing.
 */
#define RACE_PAGES	64
#define RACE_SECONDS	3ull
#define RACE_ITER_CAP	500000ul	/* per thread: a fast machine stops here */
#define RACE_MIN_ITERS	10ul		/* progress every thread must show */
#define RACE_STALL_NS	15000000000ull	/* a thread this long without progress is stuck */
#define RACE_MAXTHREADS	8

enum race_role { R_READER, R_WRITER, R_DISCARD, R_FILL, R_INFO, R_FAULTER, R_HANDLER };

struct race;

struct race_thread {
	struct race *r;
	enum race_role role;
	int idx;
	uint64_t rng;
	unsigned long iters;	/* atomic */
	volatile int done;
	pthread_t th;
};

struct race {
	int ctx, rfd, armed;
	uint64_t id;
	size_t len;
	uint8_t *map[2];
	volatile int stop;		/* the accessors and the ioctl threads */
	volatile int stop_handler;	/* the handler, last */
	uint32_t gen;			/* COPY generations, atomic */
	uint32_t issued[RACE_PAGES];	/* newest generation COPY may have written */
	unsigned long events, eexist;
	pthread_mutex_t lock;
	int errors;
	char first_err[256];
	int nthreads;
	struct race_thread t[RACE_MAXTHREADS];
};

static void race_fail(struct race *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void race_fail(struct race *r, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&r->lock);
	if (!r->errors++) {
		va_start(ap, fmt);
		vsnprintf(r->first_err, sizeof(r->first_err), fmt, ap);
		va_end(ap);
	}
	pthread_mutex_unlock(&r->lock);
}

static uint64_t rnd(struct race_thread *t)
{
	t->rng ^= t->rng << 13;
	t->rng ^= t->rng >> 7;
	t->rng ^= t->rng << 17;
	return t->rng;
}

static inline uint64_t race_word(uint64_t k, uint32_t g)
{
	return k << 32 | g;
}

/* Is v something page k may hold now?  May be zero only if zero_ok. */
static int race_check(struct race *r, uint64_t k, uint64_t v, int zero_ok)
{
	uint32_t g = (uint32_t)v, issued;

	if (!v)
		return zero_ok;
	if (v >> 32 != k || !g)
		return 0;
	issued = __atomic_load_n(&r->issued[k], __ATOMIC_ACQUIRE);
	return g <= issued;
}

static volatile uint64_t *race_page(struct race *r, int m, uint64_t k)
{
	return (volatile uint64_t *)(r->map[m] + k * ps);
}

/* Scan a whole page: valid words, non-decreasing generations. */
static void race_scan(struct race_thread *t, int m, uint64_t k)
{
	struct race *r = t->r;
	volatile uint64_t *w = race_page(r, m, k);
	size_t i, nw = ps / 8;
	uint32_t last = 0;

	for (i = 0; i < nw; i++) {
		uint64_t v = __atomic_load_n(&w[i], __ATOMIC_ACQUIRE);

		if (!race_check(r, k, v, !r->armed)) {
			race_fail(r, "page %llu word %zu: 0x%llx", (unsigned long long)k, i,
				  (unsigned long long)v);
			return;
		}
		if (v && (uint32_t)v < last) {
			race_fail(r, "page %llu word %zu: generation %u after %u (stale mapping)",
				  (unsigned long long)k, i, (uint32_t)v, last);
			return;
		}
		if (v)
			last = (uint32_t)v;
	}
}

/* Two words of one page, in order: valid, and never older the second time. */
static void race_sample(struct race_thread *t, int write)
{
	struct race *r = t->r;
	uint64_t k = rnd(t) % RACE_PAGES;
	int m = r->map[1] ? (int)(rnd(t) & 1) : 0;
	volatile uint64_t *w = race_page(r, m, k);
	size_t nw = ps / 8, i1 = rnd(t) % nw, i2 = rnd(t) % nw;
	uint64_t v1, v2;

	if (write) {
		/* a write access that changes nothing: contents stay consistent */
		v1 = __atomic_fetch_or(&w[i1], 0, __ATOMIC_ACQ_REL);
	} else {
		v1 = __atomic_load_n(&w[i1], __ATOMIC_ACQUIRE);
	}
	v2 = __atomic_load_n(&w[i2], __ATOMIC_ACQUIRE);
	if (!race_check(r, k, v1, !r->armed) || !race_check(r, k, v2, !r->armed)) {
		race_fail(r, "page %llu: words %zu, %zu hold 0x%llx, 0x%llx",
			  (unsigned long long)k, i1, i2, (unsigned long long)v1,
			  (unsigned long long)v2);
		return;
	}
	if (v1 && v2 && (uint32_t)v2 < (uint32_t)v1)
		race_fail(r, "page %llu: generation %u read after %u (stale mapping)",
			  (unsigned long long)k, (uint32_t)v2, (uint32_t)v1);
	if ((t->iters & 63) == 0)
		race_scan(t, m, k);
}

/* Build n pages for page k on: generation g, and publish g first. */
static void race_prepare(struct race *r, uint64_t *buf, uint64_t k, unsigned int n, uint32_t g)
{
	size_t nw = ps / 8, i;
	unsigned int j;

	for (j = 0; j < n; j++) {
		for (i = 0; i < nw; i++)
			buf[j * nw + i] = race_word(k + j, g);
		__atomic_store_n(&r->issued[k + j], g, __ATOMIC_RELEASE);
	}
}

static void race_fill(struct race_thread *t, uint64_t *buf)
{
	struct race *r = t->r;
	uint64_t k = rnd(t) % RACE_PAGES;
	unsigned int n = 1 + rnd(t) % 4;
	int64_t res = 0;
	int ret;

	if (k + n > RACE_PAGES)
		n = (unsigned int)(RACE_PAGES - k);
	if (rnd(t) % 4 == 0) {
		ret = raw_range(r->ctx, UFFDX_IOC_ZERO, r->id, k * ps, n * ps, NULL, 0, &res);
	} else {
		race_prepare(r, buf, k, n, __atomic_add_fetch(&r->gen, 1, __ATOMIC_SEQ_CST));
		ret = raw_range(r->ctx, UFFDX_IOC_COPY, r->id, k * ps, n * ps, buf, 0, &res);
	}
	if (ret == 0 && res == (int64_t)(n * ps))
		return;
	if (ret == -1 && errno == EEXIST && res == -EEXIST)
		return;
	if (ret == -1 && errno == EAGAIN && res > 0 && res < (int64_t)(n * ps) &&
	    res % (int64_t)ps == 0)
		return;
	race_fail(r, "fill of %u pages at %llu: %d (%s), result %lld", n,
		  (unsigned long long)k, ret, strerror(errno), (long long)res);
}

static void race_discard(struct race_thread *t)
{
	struct race *r = t->r;
	uint64_t k = rnd(t) % RACE_PAGES;
	unsigned int n = 1 + rnd(t) % 8;
	int64_t res = 0;
	int ret;

	if (k + n > RACE_PAGES)
		n = (unsigned int)(RACE_PAGES - k);
	ret = raw_range(r->ctx, UFFDX_IOC_DISCARD, r->id, k * ps, n * ps, NULL, 0, &res);
	if (ret || res != (int64_t)(n * ps))
		race_fail(r, "discard of %u pages at %llu: %d (%s), result %lld", n,
			  (unsigned long long)k, ret, strerror(errno), (long long)res);
	if (r->armed)
		usleep(100);	/* let faulters finish a page now and then */
}

static void race_info(struct race_thread *t)
{
	struct race *r = t->r;
	struct uffdx_region_info info;
	int ret;

	memset(&info, 0, sizeof(info));
	info.size = sizeof(info);
	ret = ioctl(r->rfd, UFFDX_IOC_REGION_INFO, &info);
	if (ret)
		race_fail(r, "REGION_INFO: %s", strerror(errno));
	else if (info.resident > r->len || info.resident % ps)
		race_fail(r, "REGION_INFO: resident %llu of %zu bytes",
			  (unsigned long long)info.resident, r->len);
}

/* The handler of the armed variant: every event gets a COPY (or a WAKE). */
static void race_handle(struct race_thread *t, uint64_t *buf)
{
	struct race *r = t->r;
	struct uffdx_event ev[16];
	int n, i, ret;
	int64_t res;

	n = wait_events(r->ctx, ev, 16, 20);
	if (n == -EAGAIN || n == 0)
		return;
	if (n < 0) {
		race_fail(r, "read events: %s", strerror(-n));
		return;
	}
	for (i = 0; i < n; i++) {
		uint64_t k = ev[i].offset / ps;

		if (ev[i].type != UFFDX_EVENT_PAGEFAULT || ev[i].region_id != r->id ||
		    k >= RACE_PAGES || ev[i].offset % ps ||
		    (ev[i].address != (uintptr_t)(r->map[0] + k * ps) &&
		     (!r->map[1] || ev[i].address != (uintptr_t)(r->map[1] + k * ps)))) {
			race_fail(r, "bad event: region %llu offset 0x%llx address 0x%llx",
				  (unsigned long long)ev[i].region_id,
				  (unsigned long long)ev[i].offset,
				  (unsigned long long)ev[i].address);
			continue;
		}
		__atomic_add_fetch(&r->events, 1, __ATOMIC_RELAXED);
		race_prepare(r, buf, k, 1, __atomic_add_fetch(&r->gen, 1, __ATOMIC_SEQ_CST));
		ret = raw_range(r->ctx, UFFDX_IOC_COPY, r->id, k * ps, ps, buf, 0, &res);
		if (ret == -1 && errno == EEXIST) {
			__atomic_add_fetch(&r->eexist, 1, __ATOMIC_RELAXED);
			ret = raw_range(r->ctx, UFFDX_IOC_WAKE, r->id, k * ps, ps, NULL, 0, NULL);
		}
		if (ret)
			race_fail(r, "resolving page %llu: %s", (unsigned long long)k,
				  strerror(errno));
	}
}

static void *race_thread_fn(void *p)
{
	struct race_thread *t = p;
	struct race *r = t->r;
	uint64_t *buf = malloc(4 * ps);

	if (!buf) {
		race_fail(r, "malloc");
		goto out;
	}
	for (;;) {
		volatile int *stop = t->role == R_HANDLER ? &r->stop_handler : &r->stop;

		if (__atomic_load_n(stop, __ATOMIC_SEQ_CST))
			break;
		if (t->role != R_HANDLER &&
		    __atomic_load_n(&t->iters, __ATOMIC_RELAXED) >= RACE_ITER_CAP) {
			usleep(1000);
			continue;
		}
		switch (t->role) {
		case R_READER:
		case R_FAULTER:
			race_sample(t, 0);
			break;
		case R_WRITER:
			race_sample(t, 1);
			break;
		case R_DISCARD:
			race_discard(t);
			break;
		case R_FILL:
			race_fill(t, buf);
			break;
		case R_INFO:
			race_info(t);
			break;
		case R_HANDLER:
			race_handle(t, buf);
			break;
		}
		__atomic_add_fetch(&t->iters, 1, __ATOMIC_SEQ_CST);
	}
	free(buf);
out:
	__atomic_store_n(&t->done, 1, __ATOMIC_SEQ_CST);
	return NULL;
}

static const char *const role_names[] = {
	"reader", "writer", "discard", "fill", "info", "faulter", "handler",
};

static int race_add(struct race *r, enum race_role role)
{
	struct race_thread *t = &r->t[r->nthreads];

	t->r = r;
	t->role = role;
	t->idx = r->nthreads;
	t->rng = 0x9e3779b97f4a7c15ull * (uint64_t)(r->nthreads + 1) ^ now_ns();
	if (!t->rng)
		t->rng = 1;
	if (pthread_create(&t->th, NULL, race_thread_fn, t))
		return -1;
	r->nthreads++;
	return 0;
}

/* Wait (bounded) until these threads are done: each has one iteration to finish. */
static int race_wait_done(struct race *r, enum race_role a, enum race_role b)
{
	uint64_t start = now_ns();
	int i, left;

	for (;;) {
		for (left = 0, i = 0; i < r->nthreads; i++) {
			if (r->t[i].role != a && r->t[i].role != b)
				continue;
			left += !__atomic_load_n(&r->t[i].done, __ATOMIC_SEQ_CST);
		}
		if (!left)
			return 0;
		if (now_ns() - start > RACE_STALL_NS)
			return -1;
		usleep(1000);
	}
}

/*
 * Run the threads: at least RACE_SECONDS (or until each hit its iteration
 * cap), and until every thread made RACE_MIN_ITERS iterations; a thread
 * that makes no progress for RACE_STALL_NS fails the test.
 */
static void race_run(struct __test_metadata *_metadata, struct race *r)
{
	unsigned long last_iters[RACE_MAXTHREADS] = { 0 };
	uint64_t last_change[RACE_MAXTHREADS];
	uint64_t start = now_ns();
	int i, stuck = -1;

	for (i = 0; i < r->nthreads; i++)
		last_change[i] = start;
	for (;;) {
		int all_capped = 1, all_min = 1;
		uint64_t now = now_ns();

		for (i = 0; i < r->nthreads; i++) {
			unsigned long it = __atomic_load_n(&r->t[i].iters, __ATOMIC_SEQ_CST);

			if (it != last_iters[i]) {
				last_iters[i] = it;
				last_change[i] = now;
			} else if (it < RACE_ITER_CAP && now - last_change[i] > RACE_STALL_NS) {
				stuck = i;
			}
			if (r->t[i].role != R_HANDLER && it < RACE_ITER_CAP)
				all_capped = 0;
			if (it < RACE_MIN_ITERS)
				all_min = 0;
		}
		if (stuck >= 0 || r->errors)
			break;
		if (all_min && (all_capped || now - start >= RACE_SECONDS * 1000000000ull))
			break;
		usleep(10000);
	}
	__atomic_store_n(&r->stop, 1, __ATOMIC_SEQ_CST);
	EXPECT_EQ(-1, stuck) TH_LOG("%s thread %d made no progress for %llu s",
				    stuck >= 0 ? role_names[r->t[stuck].role] : "",
				    stuck, RACE_STALL_NS / 1000000000ull);
	/* accessors and ioctl threads first, while the handler still serves */
	EXPECT_EQ(0, race_wait_done(r, R_FAULTER, R_READER)) TH_LOG("accessors stuck");
	EXPECT_EQ(0, race_wait_done(r, R_WRITER, R_DISCARD)) TH_LOG("writers/discard stuck");
	EXPECT_EQ(0, race_wait_done(r, R_FILL, R_INFO)) TH_LOG("fill/info stuck");
	__atomic_store_n(&r->stop_handler, 1, __ATOMIC_SEQ_CST);
	EXPECT_EQ(0, race_wait_done(r, R_HANDLER, R_HANDLER)) TH_LOG("handler stuck");
	for (i = 0; i < r->nthreads; i++) {
		if (__atomic_load_n(&r->t[i].done, __ATOMIC_SEQ_CST))
			pthread_join(r->t[i].th, NULL);
		TH_LOG("%s %d: %lu iterations", role_names[r->t[i].role], i, r->t[i].iters);
	}
	EXPECT_EQ(0, r->errors) TH_LOG("%d errors; first: %s", r->errors, r->first_err);
}

/* Afterwards, quiet: each page is all zero or all one generation of itself. */
static void race_final_check(struct __test_metadata *_metadata, struct race *r)
{
	struct uffdx_region_info info;
	size_t nw = ps / 8, i;
	uint64_t k;

	for (k = 0; k < RACE_PAGES; k++) {
		volatile uint64_t *w = race_page(r, 0, k);
		uint64_t v0 = w[0];

		EXPECT_TRUE(race_check(r, k, v0, 1)) TH_LOG("page %llu: 0x%llx",
							    (unsigned long long)k,
							    (unsigned long long)v0);
		for (i = 1; i < nw; i++)
			if (w[i] != v0)
				break;
		EXPECT_EQ(nw, i) TH_LOG("page %llu torn at word %zu: 0x%llx vs 0x%llx",
					(unsigned long long)k, i,
					(unsigned long long)(i < nw ? w[i] : 0),
					(unsigned long long)v0);
	}
	ASSERT_EQ(0, uffdx_region_info(r->rfd, &info));
	EXPECT_EQ(r->len, info.resident);	/* every page was read just now */
}

FIXTURE(race) {
	struct race *r;
};

FIXTURE_SETUP(race)
{
	self->r = NULL;
	SKIP_IF_NO_UFFDX();
	self->r = calloc(1, sizeof(*self->r));
	ASSERT_NE(NULL, self->r);
	pthread_mutex_init(&self->r->lock, NULL);
	self->r->ctx = self->r->rfd = -1;
	self->r->len = RACE_PAGES * ps;
}

FIXTURE_TEARDOWN(race)
{
	struct race *r = self->r;

	if (!r)
		return;
	if (r->ctx >= 0)
		close(r->ctx);
	if (r->map[0])
		munmap(r->map[0], r->len);
	if (r->map[1])
		munmap(r->map[1], r->len);
	if (r->rfd >= 0)
		close(r->rfd);
	free(r);
}

static void race_prepare_region(struct __test_metadata *_metadata, struct race *r, int armed, int maps)
{
	int m;

	r->armed = armed;
	r->ctx = ctx_open(DEFAULT_FEATURES, O_NONBLOCK);
	ASSERT_LE(0, r->ctx) TH_LOG("%s", strerror(-r->ctx));
	r->rfd = uffdx_region_create(r->ctx, r->len, 0, &r->id);
	ASSERT_LE(0, r->rfd);
	for (m = 0; m < maps; m++) {
		r->map[m] = mmap(NULL, r->len, PROT_READ | PROT_WRITE, MAP_SHARED, r->rfd, 0);
		ASSERT_NE(MAP_FAILED, r->map[m]);
	}
	if (armed)
		ASSERT_EQ(0, uffdx_arm(r->ctx, r->id, 0, r->len, UFFDX_ARM_MISSING));
}

/*
 * Unarmed: faults (fault-around maps 16-page windows), zero fills, COPY
 * and ZERO fills, DISCARD hole punches and REGION_INFO, all at once on one
 * region mapped twice.
 */
TEST_F_TIMEOUT(race, discard_races_faults_and_fills, 120)
{
	struct race *r = self->r;

	race_prepare_region(_metadata, r, 0, 2);
	ASSERT_EQ(0, race_add(r, R_READER));
	ASSERT_EQ(0, race_add(r, R_READER));
	ASSERT_EQ(0, race_add(r, R_WRITER));
	ASSERT_EQ(0, race_add(r, R_WRITER));
	ASSERT_EQ(0, race_add(r, R_DISCARD));
	ASSERT_EQ(0, race_add(r, R_FILL));
	ASSERT_EQ(0, race_add(r, R_INFO));
	race_run(_metadata, r);
	race_final_check(_metadata, r);
}

/*
 * Armed: faulters on armed holes, a handler that COPYs each event's page
 * (mapping it for the waiter) or WAKEs, and DISCARD punching the pages out
 * again.  Every faulter keeps completing its accesses, and never sees a
 * zero or a foreign page.
 */
TEST_F_TIMEOUT(race, discard_races_armed_faults_and_handler, 120)
{
	struct race *r = self->r;

	race_prepare_region(_metadata, r, 1, 2);
	ASSERT_EQ(0, race_add(r, R_HANDLER));
	ASSERT_EQ(0, race_add(r, R_FAULTER));
	ASSERT_EQ(0, race_add(r, R_FAULTER));
	ASSERT_EQ(0, race_add(r, R_FAULTER));
	ASSERT_EQ(0, race_add(r, R_WRITER));
	ASSERT_EQ(0, race_add(r, R_DISCARD));
	ASSERT_EQ(0, race_add(r, R_INFO));
	race_run(_metadata, r);
	TH_LOG("%lu events, %lu EEXIST (woken instead)", r->events, r->eexist);
	EXPECT_LT(0, r->events);
	/* quiet now: disarm so that reading the holes zero-fills them */
	ASSERT_EQ(0, uffdx_disarm(r->ctx, r->id, 0, r->len));
	race_final_check(_metadata, r);
}

TEST_HARNESS_MAIN
