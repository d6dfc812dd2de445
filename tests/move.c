// SPDX-License-Identifier: GPL-2.0
/*
 * uffdx MOVE tests: MOVE, MOVE_ADDR and MOVE_VEC (UFFDX_FEATURE_MOVE).
 *
 *  - data moved within a region, between regions, between contexts (by
 *    region fd), by address, across processes; the source becomes a hole
 *    in every mapping (zeroes unarmed, a fault event armed);
 *  - zero copy: the page frame is the same (pagemap PFNs, as root);
 *  - every error, and that a rejected move moves nothing; partial moves
 *    and resuming them; pinned pages (io_uring fixed buffers);
 *  - waking faults on armed destinations, DONTWAKE;
 *  - resident counts and context charges travel with the pages, and the
 *    destination context's budget is checked;
 *  - vectors; a 2 MiB batch; TLB coherence seen by other threads; races
 *    with DISCARD, COPY, munmap, fork and the close of the source context.
 *
 * Every wait is bounded (helpers.h: WAIT_MS); "still blocked" is watched
 * for QUIET_MS.  Race tests are progress based: a fixed amount of work,
 * never a time limit that decides the outcome.
 */
#include "helpers.h"

#include <fcntl.h>
#include <linux/io_uring.h>
#include <poll.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kselftest_harness.h"

#define MOVE_FEATURES	(DEFAULT_FEATURES | UFFDX_FEATURE_MOVE)
#define NPAGES		64
/* "result" / "moved" as preset before an ioctl that must not write it */
#define SENTINEL	0x5a5a5a5a5aLL
#define P_CTX_PAGES	UFFDX_PARAM_DIR "/max_pages_per_context"
#define P_USER_PAGES	UFFDX_PARAM_DIR "/max_pages_per_user"
#define CHARGED		"uffdx-charged-pages"

#define PG(map, i)	((uint8_t *)(map) + (size_t)(i) * ps)

static int move_supported(void)
{
	struct uffdx_api a;

	memset(&a, 0, sizeof(a));
	if (uffdx_query(&a))
		return 0;
	return !!(a.features & UFFDX_FEATURE_MOVE);
}

#define SKIP_IF_NO_MOVE() do {						\
	SKIP_IF_NO_UFFDX();						\
	if (!move_supported())						\
		SKIP(return, "the module does not report UFFDX_FEATURE_MOVE"); \
} while (0)

/* ---- raw ioctls: ioctl()'s value with errno kept, out fields preset ---------- */

static int move_ioctl(int ctx, struct uffdx_move *m)
{
	return ioctl(ctx, UFFDX_IOC_MOVE, m);
}

static void move_init(struct uffdx_move *m, uint64_t dst, uint64_t doff,
		      uint64_t src, uint64_t soff, uint64_t len, uint32_t mode)
{
	memset(m, 0, sizeof(*m));
	m->size = sizeof(*m);
	m->mode = mode;
	m->dst_region = dst;
	m->dst_offset = doff;
	m->src_region = src;
	m->src_offset = soff;
	m->len = len;
	m->result = SENTINEL;
}

static int raw_move(int ctx, uint64_t dst, uint64_t doff, uint64_t src,
		    uint64_t soff, uint64_t len, uint32_t mode, int64_t *result)
{
	struct uffdx_move m;
	int ret;

	move_init(&m, dst, doff, src, soff, len, mode);
	ret = move_ioctl(ctx, &m);
	if (result)
		*result = m.result;
	return ret;
}

static void move_addr_init(struct uffdx_move_addr *m, const void *dst,
			   const void *src, uint64_t len, uint32_t mode)
{
	memset(m, 0, sizeof(*m));
	m->size = sizeof(*m);
	m->mode = mode;
	m->dst = (uintptr_t)dst;
	m->src = (uintptr_t)src;
	m->len = len;
	m->result = SENTINEL;
}

static int raw_move_addr(int ctx, const void *dst, const void *src, uint64_t len,
			 uint32_t mode, int64_t *result)
{
	struct uffdx_move_addr m;
	int ret;

	move_addr_init(&m, dst, src, len, mode);
	ret = ioctl(ctx, UFFDX_IOC_MOVE_ADDR, &m);
	if (result)
		*result = m.result;
	return ret;
}

static void vec_init(struct uffdx_move_vec *v, struct uffdx_move_entry *e,
		     uint32_t nr, uint32_t mode)
{
	memset(v, 0, sizeof(*v));
	v->size = sizeof(*v);
	v->mode = mode;
	v->entries = (uintptr_t)e;
	v->nr_entries = nr;
	v->entry_size = sizeof(*e);
	v->moved = (uint64_t)SENTINEL;
}

static int raw_move_vec(int ctx, struct uffdx_move_entry *e, uint32_t nr,
			uint32_t mode, uint64_t *moved)
{
	struct uffdx_move_vec v;
	int ret;

	vec_init(&v, e, nr, mode);
	ret = ioctl(ctx, UFFDX_IOC_MOVE_VEC, &v);
	if (moved)
		*moved = v.moved;
	return ret;
}

static void entry_set(struct uffdx_move_entry *e, const void *dst, const void *src,
		      uint64_t len)
{
	e->dst = (uintptr_t)dst;
	e->src = (uintptr_t)src;
	e->len = len;
	e->result = SENTINEL;
}

/* A move that must have done all of len. */
#define EXPECT_MOVED(ret, res, len) do {					\
	int __e = errno;							\
	EXPECT_EQ(0, ret) TH_LOG("move failed: %s", strerror(__e));		\
	EXPECT_EQ((int64_t)(len), res);						\
} while (0)

/* A move that failed with err and reported want_res. */
#define EXPECT_MOVE_ERR(ret, res, err, want_res) do {				\
	int __e = errno;							\
	EXPECT_EQ(-1, ret) TH_LOG("move succeeded, expected %s", strerror(err)); \
	EXPECT_EQ(err, __e) TH_LOG("errno %d (%s), expected %d (%s)", __e,	\
				   strerror(__e), err, strerror(err));		\
	EXPECT_EQ((int64_t)(want_res), res);					\
} while (0)

/* ---- page contents and counts ------------------------------------------------ */

/* COPY pages [first, first + n) of a region: page first + i gets pattern seed + i. */
static int fill_pages(int ctx, uint64_t id, size_t first, size_t n, uint64_t seed)
{
	uint8_t *b = malloc(n * ps);
	int64_t res = 0;
	size_t i;
	int ret;

	if (!b)
		return -ENOMEM;
	for (i = 0; i < n; i++)
		fill_pattern(b + i * ps, ps, seed + i);
	ret = uffdx_copy(ctx, id, first * ps, b, n * ps, 0, &res);
	free(b);
	if (!ret && res != (int64_t)(n * ps))
		ret = -EIO;
	return ret;
}

/* Index (from first) of the first of n pages that is not pattern seed + i, or -1. */
static long bad_page(const void *map, size_t first, size_t n, uint64_t seed)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (check_pattern(PG(map, first + i), ps, seed + i) != -1)
			return (long)i;
	return -1;
}

static long nonzero_page(const void *map, size_t first, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (!is_zero(PG(map, first + i), ps))
			return (long)i;
	return -1;
}

#define EXPECT_PAGES(map, first, n, seed) do {					\
	long __b = bad_page(map, first, n, seed);				\
	EXPECT_EQ(-1, __b) TH_LOG("page %zu of " #map " is not pattern %llu",	\
				  (size_t)(first) + (size_t)__b,		\
				  (unsigned long long)(seed) + (unsigned long long)__b); \
} while (0)

/* Reading a hole of an unarmed region zero-fills it: check resident first. */
#define EXPECT_ZERO_PAGES(map, first, n) do {					\
	long __b = nonzero_page(map, first, n);					\
	EXPECT_EQ(-1, __b) TH_LOG("page %zu of " #map " is not zero (old data?)", \
				  (size_t)(first) + (size_t)__b);		\
} while (0)

/* REGION_INFO.resident in pages, or -1. */
static long long resident(int rfd)
{
	struct uffdx_region_info info;

	if (uffdx_region_info(rfd, &info))
		return -1;
	return (long long)(info.resident / ps);
}

#define EXPECT_RESIDENT(rfd, pages) \
	EXPECT_EQ((long long)(pages), resident(rfd)) TH_LOG("resident of " #rfd)

static long long charged(int ctx)
{
	long long v = -1;

	if (fdinfo_ll(ctx, CHARGED, &v))
		return -1;
	return v;
}

/* Touch (read) n pages so that they are mapped: fault-around maps the rest. */
static uint64_t touch(const void *p, size_t n)
{
	uint64_t sum = 0;
	size_t i;

	for (i = 0; i < n; i++)
		sum += *(volatile const uint8_t *)PG(p, i);
	return sum;
}

/* Pages with all 64-bit words equal: a stamp.  0 reads as the zero page. */
#define STAMP_TORN	0xdeaddeaddeaddeadull

static void stamp_page(void *p, uint64_t v)
{
	uint64_t *w = p;
	size_t i;

	for (i = 0; i < ps / 8; i++)
		w[i] = v;
}

static uint64_t page_stamp(const void *p)
{
	const volatile uint64_t *w = p;
	uint64_t v = w[0];
	size_t i;

	for (i = 1; i < ps / 8; i++)
		if (w[i] != v)
			return STAMP_TORN;
	return v;
}

/* COPY n stamped pages, stamp(k) for page first + k. */
static int fill_stamps(int ctx, uint64_t id, size_t first, size_t n,
		       uint64_t (*stamp)(unsigned int, unsigned int), unsigned int round)
{
	uint8_t *b = malloc(n * ps);
	int64_t res = 0;
	size_t i;
	int ret;

	if (!b)
		return -ENOMEM;
	for (i = 0; i < n; i++)
		stamp_page(b + i * ps, stamp(round, (unsigned int)(first + i)));
	ret = uffdx_copy(ctx, id, first * ps, b, n * ps, 0, &res);
	free(b);
	if (!ret && res != (int64_t)(n * ps))
		ret = -EIO;
	return ret;
}

/* A shared mapping of a region fd at an address aligned to align. */
static void *map_aligned(int fd, size_t len, size_t align, off_t off)
{
	uint8_t *r = mmap(NULL, len + align, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint8_t *a;

	if (r == MAP_FAILED)
		return MAP_FAILED;
	a = (uint8_t *)(((uintptr_t)r + align - 1) & ~(uintptr_t)(align - 1));
	if (a > r)
		munmap(r, (size_t)(a - r));
	if (r + align > a)
		munmap(a + len, (size_t)(r + align - a));
	return mmap(a, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, off);
}

/* ---- the fixture: a MOVE context and two mapped 64-page regions --------------- */

FIXTURE(mv) {
	int ctx;
	struct uffdx_region_map a, b;
	uint8_t *buf;		/* one page */
};

FIXTURE_SETUP(mv)
{
	int ret;

	self->ctx = -1;
	self->a.fd = self->b.fd = -1;
	self->a.addr = self->b.addr = NULL;
	self->buf = NULL;
	SKIP_IF_NO_MOVE();
	self->ctx = ctx_open(MOVE_FEATURES, 0);
	ASSERT_LE(0, self->ctx) TH_LOG("ctx_open(MOVE): %s", strerror(-self->ctx));
	ret = uffdx_region_map(self->ctx, NPAGES * ps, 0, &self->a);
	ASSERT_EQ(0, ret) TH_LOG("region A: %s", strerror(-ret));
	ret = uffdx_region_map(self->ctx, NPAGES * ps, 0, &self->b);
	ASSERT_EQ(0, ret) TH_LOG("region B: %s", strerror(-ret));
	self->buf = malloc(ps);
	ASSERT_NE(NULL, self->buf);
}

FIXTURE_TEARDOWN(mv)
{
	if (self->ctx >= 0)
		close(self->ctx);	/* releases any faulter left asleep */
	uffdx_region_unmap(&self->a);
	uffdx_region_unmap(&self->b);
	free(self->buf);
}

/* The fixture's two mappings. */
#define A (self->a.addr)
#define B (self->b.addr)

/* ---- 1. data ----------------------------------------------------------------- */

TEST_F(mv, within_region)
{
	int64_t res = 0;
	int ret;

	ASSERT_EQ(0, fill_pages(self->ctx, self->a.id, 0, 8, 100));
	EXPECT_PAGES(A, 0, 8, 100);	/* and now mapped here */
	ret = uffdx_move(self->ctx, self->a.id, 32 * ps, self->a.id, 0, 8 * ps, 0, &res);
	ASSERT_EQ(0, ret) TH_LOG("MOVE: %s", strerror(-ret));
	EXPECT_EQ((int64_t)(8 * ps), res);
	EXPECT_RESIDENT(self->a.fd, 8);	/* same region: still 8 */
	EXPECT_PAGES(A, 32, 8, 100);
	EXPECT_ZERO_PAGES(A, 0, 8);

	/* adjacent, not overlapping: fine too */
	ret = raw_move(self->ctx, self->a.id, 40 * ps, self->a.id, 32 * ps, 8 * ps, 0, &res);
	EXPECT_MOVED(ret, res, 8 * ps);
	EXPECT_PAGES(A, 40, 8, 100);
	EXPECT_RESIDENT(self->a.fd, 16);	/* 8 pages + 8 zero-filled by the reads */
	EXPECT_ZERO_PAGES(A, 32, 8);
}

TEST_F(mv, between_regions)
{
	uint8_t *a2;
	int64_t res = 0;
	int ret;

	/* A mapped twice, both mappings populated */
	a2 = mmap(NULL, NPAGES * ps, PROT_READ | PROT_WRITE, MAP_SHARED, self->a.fd, 0);
	ASSERT_NE(MAP_FAILED, a2);
	ASSERT_EQ(0, fill_pages(self->ctx, self->a.id, 0, 16, 200));
	EXPECT_PAGES(A, 0, 16, 200);
	EXPECT_PAGES(a2, 0, 16, 200);
	EXPECT_EQ(0, pagemap_read(a2, 1, (uint64_t *)self->buf));
	EXPECT_TRUE(((uint64_t *)self->buf)[0] & PM_PRESENT);

	ret = raw_move(self->ctx, self->b.id, 8 * ps, self->a.id, 0, 16 * ps, 0, &res);
	EXPECT_MOVED(ret, res, 16 * ps);
	EXPECT_RESIDENT(self->a.fd, 0);
	EXPECT_RESIDENT(self->b.fd, 16);
	EXPECT_PAGES(B, 8, 16, 200);
	/* every mapping of the source sees the hole */
	EXPECT_ZERO_PAGES(a2, 0, 16);
	EXPECT_ZERO_PAGES(A, 0, 16);
	munmap(a2, NPAGES * ps);
}

TEST_F(mv, between_contexts_by_fd)
{
	struct uffdx_region_map c;
	int64_t res = 0;
	int ctx2, ctx3, ret;

	ctx2 = ctx_open(MOVE_FEATURES, 0);
	ASSERT_LE(0, ctx2);
	ret = uffdx_region_map(ctx2, NPAGES * ps, 0, &c);
	ASSERT_EQ(0, ret);
	ASSERT_EQ(0, fill_pages(self->ctx, self->a.id, 0, 4, 300));
	ASSERT_EQ(0, fill_pages(self->ctx, self->a.id, 16, 4, 310));
	EXPECT_PAGES(A, 0, 4, 300);

	/* our context, into ctx2's region: DST_FD */
	ret = raw_move(self->ctx, (uint64_t)c.fd, 0, self->a.id, 0, 4 * ps,
		       UFFDX_MOVE_DST_FD, &res);
	EXPECT_MOVED(ret, res, 4 * ps);
	EXPECT_RESIDENT(c.fd, 4);
	EXPECT_RESIDENT(self->a.fd, 4);
	EXPECT_PAGES(c.addr, 0, 4, 300);
	EXPECT_ZERO_PAGES(A, 0, 4);

	/* ctx2, out of our region into its own: SRC_FD */
	ret = raw_move(ctx2, c.id, 8 * ps, (uint64_t)self->a.fd, 16 * ps, 4 * ps,
		       UFFDX_MOVE_SRC_FD, &res);
	EXPECT_MOVED(ret, res, 4 * ps);
	EXPECT_PAGES(c.addr, 8, 4, 310);
	EXPECT_RESIDENT(self->a.fd, 4);	/* the 4 zero-filled pages 0-3 */
	EXPECT_ZERO_PAGES(A, 16, 4);

	/* a third context that owns neither region: both by fd */
	ctx3 = ctx_open(MOVE_FEATURES, 0);
	ASSERT_LE(0, ctx3);
	ret = raw_move(ctx3, (uint64_t)self->a.fd, 32 * ps, (uint64_t)c.fd, 8 * ps, 4 * ps,
		       UFFDX_MOVE_SRC_FD | UFFDX_MOVE_DST_FD, &res);
	EXPECT_MOVED(ret, res, 4 * ps);
	EXPECT_PAGES(A, 32, 4, 310);
	EXPECT_ZERO_PAGES(c.addr, 8, 4);
	close(ctx3);
	uffdx_region_unmap(&c);
	close(ctx2);
}

TEST_F(mv, by_address)
{
	uint64_t pm[8];
	uint8_t *b32;
	int64_t res = 0;
	int ret, i;

	ASSERT_EQ(0, fill_pages(self->ctx, self->a.id, 0, 8, 400));
	EXPECT_PAGES(A, 0, 8, 400);
	ret = uffdx_move_addr(self->ctx, PG(B, 4), A, 8 * ps, 0, &res);
	ASSERT_EQ(0, ret) TH_LOG("MOVE_ADDR: %s", strerror(-ret));
	EXPECT_EQ((int64_t)(8 * ps), res);
	/* the destination is mapped for the caller: PTEs present before any access */
	ASSERT_EQ(0, pagemap_read(PG(B, 4), 8, pm));
	for (i = 0; i < 8; i++)
		EXPECT_TRUE(pm[i] & PM_PRESENT) TH_LOG("dst page %d not mapped on return", i);
	EXPECT_RESIDENT(self->a.fd, 0);
	EXPECT_RESIDENT(self->b.fd, 8);
	EXPECT_PAGES(B, 4, 8, 400);
	EXPECT_ZERO_PAGES(A, 0, 8);

	/* addresses are translated through the mapping's offset */
	b32 = mmap(NULL, 16 * ps, PROT_READ | PROT_WRITE, MAP_SHARED, self->b.fd, 32 * ps);
	ASSERT_NE(MAP_FAILED, b32);
	ret = raw_move_addr(self->ctx, PG(b32, 2), PG(B, 4), 4 * ps, 0, &res);
	EXPECT_MOVED(ret, res, 4 * ps);
	EXPECT_PAGES(B, 34, 4, 400);	/* through the other mapping */
	EXPECT_PAGES(b32, 2, 4, 400);
	EXPECT_ZERO_PAGES(B, 4, 4);
	EXPECT_PAGES(B, 8, 4, 404);
	munmap(b32, 16 * ps);
}

TEST_F(mv, armed_source_raises_event)
{
	struct uffdx_event ev;
	struct accessor *acc;
	int64_t res = 0;
	int ret;

	ASSERT_EQ(0, fill_pages(self->ctx, self->a.id, 0, 4, 500));
	EXPECT_PAGES(A, 0, 4, 500);
	ASSERT_EQ(0, uffdx_arm(self->ctx, self->a.id, 0, NPAGES * ps, UFFDX_ARM_MISSING));
	/* populated armed pages read without events */
	EXPECT_PAGES(A, 0, 4, 500);
	EXPECT_EQ(0, event_arrives(self->ctx, 0));

	ret = raw_move(self->ctx, self->b.id, 0, self->a.id, 0, 4 * ps, 0, &res);
	EXPECT_MOVED(ret, res, 4 * ps);
	EXPECT_PAGES(B, 0, 4, 500);

	/* the old place is an armed hole now: a fault event, never the old data */
	acc = acc_new(PG(A, 2) + 99, 0, 0);
	ASSERT_NE(NULL, acc);
	ASSERT_EQ(0, acc_start_thread(acc));
	memset(&ev, 0xcc, sizeof(ev));
	ASSERT_EQ(1, wait_event(self->ctx, &ev, WAIT_MS)) TH_LOG("no event for the moved-out page");
	EXPECT_EQ(UFFDX_EVENT_PAGEFAULT, ev.type);
	EXPECT_EQ(0, ev.flags);
	EXPECT_EQ((uintptr_t)PG(A, 2), ev.address);
	EXPECT_EQ(self->a.id, ev.region_id);
	EXPECT_EQ(2 * ps, ev.offset);
	EXPECT_EQ((uint32_t)getpid(), ev.pid);
	EXPECT_EQ((uint32_t)acc->tid, ev.tid);
	EXPECT_TRUE(acc_blocked(acc, QUIET_MS)) TH_LOG("faulter on the moved-out page did not wait");
	ASSERT_EQ(0, uffdx_zero(self->ctx, self->a.id, 2 * ps, ps, 0, &res));
	ASSERT_EQ(0, acc_wait(acc, WAIT_MS));
	EXPECT_EQ(0, acc->sig);
	EXPECT_EQ(0, acc->first);
	memset(self->buf, 0, ps);
	EXPECT_EQ(checksum(self->buf, ps), acc->sum);
	EXPECT_EQ(0, event_arrives(self->ctx, 0));
	acc_free(acc);
}

TEST_F(mv, poison_entry_moves)
{
	int64_t res = 0;
	uint8_t v;
	int ret;

	ASSERT_EQ(0, uffdx_poison(self->ctx, self->a.id, 0, ps, 0, &res));
	ASSERT_EQ(0, fill_pages(self->ctx, self->a.id, 1, 1, 600));
	EXPECT_EQ(SIGBUS, try_read(A, &v));
	ret = raw_move(self->ctx, self->b.id, 10 * ps, self->a.id, 0, 2 * ps, 0, &res);
	EXPECT_MOVED(ret, res, 2 * ps);
	EXPECT_RESIDENT(self->b.fd, 1);		/* poison is not resident */
	EXPECT_RESIDENT(self->a.fd, 0);
	EXPECT_EQ(SIGBUS, try_read(PG(B, 10), &v)) TH_LOG("poison did not move");
	EXPECT_PAGES(B, 11, 1, 600);
	EXPECT_EQ(0, try_read(A, &v)) TH_LOG("the moved-out poison still raises SIGBUS");
	EXPECT_ZERO_PAGES(A, 0, 2);
}

/* ---- 2. zero copy ------------------------------------------------------------ */

TEST_F(mv, zero_copy_same_pfn)
{
	uint64_t before[8], pm[8];
	int64_t res = 0;
	int i, ret;

	if (getuid() != 0)
		SKIP(return, "pagemap PFNs need root");
	ASSERT_EQ(0, fill_pages(self->ctx, self->a.id, 0, 8, 700));
	EXPECT_PAGES(A, 0, 8, 700);
	for (i = 0; i < 8; i++) {
		before[i] = page_pfn(PG(A, i));
		if (!before[i])
			SKIP(return, "pagemap PFNs read as 0 (no CAP_SYS_ADMIN?)");
	}
	/* region form: the destination is mapped by its first access */
	ret = raw_move(self->ctx, self->b.id, 16 * ps, self->a.id, 0, 8 * ps, 0, &res);
	EXPECT_MOVED(ret, res, 8 * ps);
	EXPECT_PAGES(B, 16, 8, 700);
	for (i = 0; i < 8; i++) {
		uint64_t after = page_pfn(PG(B, 16 + i));

		EXPECT_NE(0, after);
		EXPECT_EQ(before[i], after) TH_LOG("page %d: pfn 0x%llx before, 0x%llx after: copied",
						   i, (unsigned long long)before[i],
						   (unsigned long long)after);
	}
	/* address form: mapped on return, no access needed */
	ret = raw_move_addr(self->ctx, PG(A, 40), PG(B, 16), 8 * ps, 0, &res);
	EXPECT_MOVED(ret, res, 8 * ps);
	ASSERT_EQ(0, pagemap_read(PG(A, 40), 8, pm));
	for (i = 0; i < 8; i++) {
		EXPECT_TRUE(pm[i] & PM_PRESENT);
		EXPECT_EQ(before[i], PM_PFN(pm[i])) TH_LOG("MOVE_ADDR page %d", i);
	}
	EXPECT_PAGES(A, 40, 8, 700);
	/* the old places got fresh zero pages */
	EXPECT_ZERO_PAGES(A, 0, 1);
	EXPECT_NE(before[0], page_pfn(A));
}

/* ---- 3. across processes ---------------------------------------------------- */

/* Read one byte from the socket, bounded: 0 or -1. */
static int sock_wait(int sock, char want)
{
	char c = 0;

	if (wait_fd(sock, POLLIN, WAIT_MS) != 1 || read(sock, &c, 1) != 1 || c != want)
		return -1;
	return 0;
}

static int sock_say(int sock, char c)
{
	return write(sock, &c, 1) == 1 ? 0 : -1;
}

#define XP_PAGES 16

/* The child of cross_process_sees_move: steps as exit codes. */
static int xp_observer(int sock)
{
	uint8_t *ma, *mb;
	int fa, fb;

	fa = recv_fd(sock, WAIT_MS);
	fb = recv_fd(sock, WAIT_MS);
	if (fa < 0 || fb < 0)
		return 10;
	ma = mmap(NULL, XP_PAGES * ps, PROT_READ | PROT_WRITE, MAP_SHARED, fa, 0);
	mb = mmap(NULL, XP_PAGES * ps, PROT_READ | PROT_WRITE, MAP_SHARED, fb, 0);
	if (ma == MAP_FAILED || mb == MAP_FAILED)
		return 11;
	/* populate our mapping of the source (the destination stays untouched) */
	if (bad_page(ma, 0, 8, 800) != -1)
		return 12;
	if (sock_say(sock, 'R'))
		return 13;
	if (sock_wait(sock, 'M'))
		return 14;
	/* our PTEs of the moved pages are gone: holes read as zero */
	if (nonzero_page(ma, 0, 4) != -1)
		return 15;
	if (bad_page(ma, 4, 4, 804) != -1)
		return 16;
	if (bad_page(mb, 8, 4, 800) != -1)
		return 17;
	return 0;
}

TEST(cross_process_sees_move)
{
	struct uffdx_region_map a, b;
	int sv[2], status = -1, ctx, ret;
	int64_t res = 0;
	pid_t pid;

	SKIP_IF_NO_MOVE();
	ASSERT_EQ(0, socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv));
	/* forked before the regions exist: it gets them only over the socket */
	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0) {
		close(sv[0]);
		_exit(xp_observer(sv[1]));
	}
	close(sv[1]);
	ctx = ctx_open(MOVE_FEATURES, 0);
	ASSERT_LE(0, ctx);
	ASSERT_EQ(0, uffdx_region_map(ctx, XP_PAGES * ps, 0, &a));
	ASSERT_EQ(0, uffdx_region_map(ctx, XP_PAGES * ps, 0, &b));
	ASSERT_EQ(0, fill_pages(ctx, a.id, 0, 8, 800));
	ASSERT_EQ(0, send_fd(sv[0], a.fd));
	ASSERT_EQ(0, send_fd(sv[0], b.fd));
	ASSERT_EQ(0, sock_wait(sv[0], 'R')) TH_LOG("child not ready");
	ret = raw_move(ctx, b.id, 8 * ps, a.id, 0, 4 * ps, 0, &res);
	EXPECT_MOVED(ret, res, 4 * ps);
	ASSERT_EQ(0, sock_say(sv[0], 'M'));
	ASSERT_EQ(0, wait_child(pid, &status, WAIT_MS));
	ASSERT_TRUE(WIFEXITED(status)) TH_LOG("child died: status 0x%x", status);
	EXPECT_EQ(0, WEXITSTATUS(status))
		TH_LOG("child step %d failed (10 recv, 11 mmap, 12 src data before, 13/14 sync, 15 old place not a hole, 16 unmoved page, 17 data at the new place)",
		       WEXITSTATUS(status));
	EXPECT_PAGES(b.addr, 8, 4, 800);
	uffdx_region_unmap(&a);
	uffdx_region_unmap(&b);
	close(sv[0]);
	close(ctx);
}

/* The child of cross_process_child_moves: moves with received fds on its own context. */
static int xp_mover(int sock)
{
	uint8_t *ma, *mb;
	int fa, fb, cctx;
	int64_t res = 0;

	fa = recv_fd(sock, WAIT_MS);
	fb = recv_fd(sock, WAIT_MS);
	if (fa < 0 || fb < 0)
		return 10;
	cctx = ctx_open(MOVE_FEATURES, 0);
	if (cctx < 0)
		return 11;
	if (uffdx_move(cctx, (uint64_t)fb, 0, (uint64_t)fa, 0, 4 * ps,
		       UFFDX_MOVE_SRC_FD | UFFDX_MOVE_DST_FD, &res) || res != (int64_t)(4 * ps))
		return 12;
	/* and by address, in our own mappings of another context's regions */
	ma = mmap(NULL, XP_PAGES * ps, PROT_READ | PROT_WRITE, MAP_SHARED, fa, 0);
	mb = mmap(NULL, XP_PAGES * ps, PROT_READ | PROT_WRITE, MAP_SHARED, fb, 0);
	if (ma == MAP_FAILED || mb == MAP_FAILED)
		return 13;
	if (uffdx_move_addr(cctx, PG(mb, 4), PG(ma, 4), 4 * ps, 0, &res) ||
	    res != (int64_t)(4 * ps))
		return 14;
	if (bad_page(mb, 0, 8, 900) != -1)
		return 15;
	if (sock_say(sock, 'D'))
		return 16;
	return 0;
}

TEST(cross_process_child_moves)
{
	struct uffdx_region_map a, b;
	int sv[2], status = -1, ctx;
	pid_t pid;

	SKIP_IF_NO_MOVE();
	ASSERT_EQ(0, socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv));
	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0) {
		close(sv[0]);
		_exit(xp_mover(sv[1]));
	}
	close(sv[1]);
	ctx = ctx_open(MOVE_FEATURES, 0);
	ASSERT_LE(0, ctx);
	ASSERT_EQ(0, uffdx_region_map(ctx, XP_PAGES * ps, 0, &a));
	ASSERT_EQ(0, uffdx_region_map(ctx, XP_PAGES * ps, 0, &b));
	ASSERT_EQ(0, fill_pages(ctx, a.id, 0, 8, 900));
	EXPECT_PAGES(a.addr, 0, 8, 900);	/* our mapping is populated */
	ASSERT_EQ(0, send_fd(sv[0], a.fd));
	ASSERT_EQ(0, send_fd(sv[0], b.fd));
	EXPECT_EQ(0, sock_wait(sv[0], 'D'));
	ASSERT_EQ(0, wait_child(pid, &status, WAIT_MS));
	ASSERT_TRUE(WIFEXITED(status)) TH_LOG("child died: status 0x%x", status);
	EXPECT_EQ(0, WEXITSTATUS(status))
		TH_LOG("child step %d failed (10 recv, 11 ctx_open, 12 MOVE by fds, 13 mmap, 14 MOVE_ADDR, 15 data)",
		       WEXITSTATUS(status));
	EXPECT_RESIDENT(a.fd, 0);
	EXPECT_RESIDENT(b.fd, 8);
	EXPECT_PAGES(b.addr, 0, 8, 900);
	EXPECT_ZERO_PAGES(a.addr, 0, 8);
	uffdx_region_unmap(&a);
	uffdx_region_unmap(&b);
	close(sv[0]);
	close(ctx);
}

/* ---- 4. errors ----------------------------------------------------------------- */

/* The state every rejected move in these tests must leave: A 0-3 filled, B empty. */
#define SETUP_A4(seed) do {							\
	ASSERT_EQ(0, fill_pages(self->ctx, self->a.id, 0, 4, seed));		\
	EXPECT_PAGES(A, 0, 4, seed);						\
} while (0)

#define EXPECT_NOTHING_MOVED(a_pages, b_pages) do {				\
	EXPECT_RESIDENT(self->a.fd, a_pages);					\
	EXPECT_RESIDENT(self->b.fd, b_pages);					\
} while (0)

TEST_F(mv, eexist_dst_page)
{
	int64_t res = 0;
	int ret;

	SETUP_A4(1000);
	ASSERT_EQ(0, fill_pages(self->ctx, self->b.id, 1, 1, 1010));
	ret = raw_move(self->ctx, self->b.id, ps, self->a.id, 0, 4 * ps, 0, &res);
	EXPECT_MOVE_ERR(ret, res, EEXIST, -EEXIST);
	ret = raw_move_addr(self->ctx, PG(B, 1), A, 4 * ps, 0, &res);
	EXPECT_MOVE_ERR(ret, res, EEXIST, -EEXIST);
	EXPECT_NOTHING_MOVED(4, 1);
	EXPECT_PAGES(A, 0, 4, 1000);
	EXPECT_PAGES(B, 1, 1, 1010);
}

TEST_F(mv, eexist_dst_poison)
{
	int64_t res = 0;
	uint8_t v;
	int ret;

	SETUP_A4(1100);
	ASSERT_EQ(0, uffdx_poison(self->ctx, self->b.id, 2 * ps, ps, 0, &res));
	ret = raw_move(self->ctx, self->b.id, 2 * ps, self->a.id, 0, 2 * ps, 0, &res);
	EXPECT_MOVE_ERR(ret, res, EEXIST, -EEXIST);
	ret = raw_move_addr(self->ctx, PG(B, 2), A, ps, 0, &res);
	EXPECT_MOVE_ERR(ret, res, EEXIST, -EEXIST);
	EXPECT_NOTHING_MOVED(4, 0);
	EXPECT_EQ(SIGBUS, try_read(PG(B, 2), &v)) TH_LOG("the poison went away");
	EXPECT_PAGES(A, 0, 4, 1100);
}

TEST_F(mv, enoent_src_hole)
{
	int64_t res = 0;
	int ret;

	ASSERT_EQ(0, fill_pages(self->ctx, self->a.id, 1, 3, 1200));
	ret = raw_move(self->ctx, self->b.id, 0, self->a.id, 0, 4 * ps, 0, &res);
	EXPECT_MOVE_ERR(ret, res, ENOENT, -ENOENT);
	ret = raw_move_addr(self->ctx, B, A, 4 * ps, 0, &res);
	EXPECT_MOVE_ERR(ret, res, ENOENT, -ENOENT);
	EXPECT_NOTHING_MOVED(3, 0);
	EXPECT_PAGES(A, 1, 3, 1200);
}

TEST_F(mv, enoent_unknown_region)
{
	struct uffdx_region_map dead;
	int64_t res = 0;
	uint64_t dead_id;
	int ret;

	SETUP_A4(1300);
	ret = raw_move(self->ctx, self->b.id ^ 0x5a5a0000ULL, 0, self->a.id, 0, ps, 0, &res);
	EXPECT_MOVE_ERR(ret, res, ENOENT, SENTINEL);
	ret = raw_move(self->ctx, self->b.id, 0, self->a.id ^ 0x5a5a0000ULL, 0, ps, 0, &res);
	EXPECT_MOVE_ERR(ret, res, ENOENT, SENTINEL);
	ret = raw_move(self->ctx, 0, 0, self->a.id, 0, ps, 0, &res);
	EXPECT_MOVE_ERR(ret, res, ENOENT, SENTINEL);
	ret = raw_move(self->ctx, self->b.id, 0, 0, 0, ps, 0, &res);
	EXPECT_MOVE_ERR(ret, res, ENOENT, SENTINEL);
	/* a region of ours that has been freed: its id is not reused */
	ASSERT_EQ(0, uffdx_region_map(self->ctx, NPAGES * ps, 0, &dead));
	dead_id = dead.id;
	uffdx_region_unmap(&dead);
	ret = raw_move(self->ctx, dead_id, 0, self->a.id, 0, ps, 0, &res);
	EXPECT_MOVE_ERR(ret, res, ENOENT, SENTINEL);
	EXPECT_NOTHING_MOVED(4, 0);
	EXPECT_PAGES(A, 0, 4, 1300);
}

TEST_F(mv, allow_src_holes_counts_holes)
{
	int64_t res = 0;
	int ret;

	/* A: pages 0, 2, 3 filled; 1 and 4 holes */
	ASSERT_EQ(0, fill_pages(self->ctx, self->a.id, 0, 1, 1400));
	ASSERT_EQ(0, fill_pages(self->ctx, self->a.id, 2, 2, 1402));
	ret = raw_move(self->ctx, self->b.id, 0, self->a.id, 0, 5 * ps,
		       UFFDX_MOVE_ALLOW_SRC_HOLES, &res);
	EXPECT_MOVED(ret, res, 5 * ps);
	EXPECT_RESIDENT(self->a.fd, 0);
	EXPECT_RESIDENT(self->b.fd, 3);		/* the holes stayed holes */
	EXPECT_PAGES(B, 0, 1, 1400);
	EXPECT_PAGES(B, 2, 2, 1402);
	EXPECT_ZERO_PAGES(B, 1, 1);
	EXPECT_ZERO_PAGES(B, 4, 1);

	/* all holes: nothing to do, all of it "moved" */
	ret = raw_move_addr(self->ctx, PG(B, 20), PG(A, 20), 8 * ps,
			    UFFDX_MOVE_ALLOW_SRC_HOLES, &res);
	EXPECT_MOVED(ret, res, 8 * ps);
	EXPECT_RESIDENT(self->a.fd, 0);
	EXPECT_RESIDENT(self->b.fd, 5);		/* + the zero-filled reads of B 1, 4 */
}

/*
 * A sparse source: holes on both sides move as holes without being walked
 * slot by slot (a 64 GiB range with three pages used to take minutes on
 * the debug kernel).  Correctness only: the pages arrive, nothing else.
 */
TEST_F(mv, allow_src_holes_sparse_huge_range)
{
	const uint64_t len = 64ULL << 30;
	uint64_t last = len / ps - 1, mid = len / ps / 2;
	uint64_t sid = 0, did = 0;
	int64_t res = 0;
	int sfd, dfd, ret;
	uint8_t *p;

	sfd = uffdx_region_create(self->ctx, len, 0, &sid);
	ASSERT_LE(0, sfd) TH_LOG("%s", strerror(-sfd));
	dfd = uffdx_region_create(self->ctx, len, 0, &did);
	ASSERT_LE(0, dfd) TH_LOG("%s", strerror(-dfd));
	ASSERT_EQ(0, fill_pages(self->ctx, sid, 0, 1, 1500));
	ASSERT_EQ(0, fill_pages(self->ctx, sid, mid, 1, 1501));
	ASSERT_EQ(0, fill_pages(self->ctx, sid, last, 1, 1502));
	/* a destination page beside the moved ones: must stay as it is */
	ASSERT_EQ(0, fill_pages(self->ctx, did, mid + 1, 1, 1503));

	ret = raw_move(self->ctx, did, 0, sid, 0, (mid + 1) * ps,
		       UFFDX_MOVE_ALLOW_SRC_HOLES, &res);
	EXPECT_MOVED(ret, res, (mid + 1) * ps);
	ret = raw_move(self->ctx, did, (mid + 2) * ps, sid, (mid + 2) * ps,
		       len - (mid + 2) * ps, UFFDX_MOVE_ALLOW_SRC_HOLES, &res);
	EXPECT_MOVED(ret, res, len - (mid + 2) * ps);
	EXPECT_RESIDENT(sfd, 0);
	EXPECT_RESIDENT(dfd, 4);
	p = mmap(NULL, ps, PROT_READ, MAP_SHARED, dfd, mid * ps);
	ASSERT_NE(MAP_FAILED, p);
	EXPECT_EQ(-1, check_pattern(p, ps, 1501));
	munmap(p, ps);
	p = mmap(NULL, ps, PROT_READ, MAP_SHARED, dfd, last * ps);
	ASSERT_NE(MAP_FAILED, p);
	EXPECT_EQ(-1, check_pattern(p, ps, 1502));
	munmap(p, ps);

	/* a populated destination slot still stops a move there */
	ASSERT_EQ(0, fill_pages(self->ctx, sid, mid + 1, 1, 1504));
	res = 0;
	ret = raw_move(self->ctx, did, ps, sid, ps, (mid + 1) * ps,
		       UFFDX_MOVE_ALLOW_SRC_HOLES, &res);
	EXPECT_MOVE_ERR(ret, res, EAGAIN, (mid - 1) * ps);	/* dst mid is full */
	close(sfd);
	close(dfd);
}

struct bad_move {
	const char *what;
	uint64_t doff, soff, len;
	uint32_t mode;
	int same_region;	/* src and dst both A */
	int field;		/* 1 reserved[0], 2 reserved[1], 3 size */
	uint64_t val;
};

TEST_F(mv, einval_args)
{
	const uint64_t P = ps, END = NPAGES * ps, TOP = ~0ULL & ~(uint64_t)(ps - 1);
	const struct bad_move bad[] = {
		{ "overlap, dst after src", 2 * P, 0, 4 * P, 0, 1, 0, 0 },
		{ "overlap, dst before src", 0, P, 4 * P, 0, 1, 0, 0 },
		{ "same range", 0, 0, 4 * P, 0, 1, 0, 0 },
		{ "unaligned src offset", 0, 1, P, 0, 0, 0, 0 },
		{ "unaligned dst offset", P / 2, 0, P, 0, 0, 0, 0 },
		{ "unaligned len", 0, 0, P - 1, 0, 0, 0, 0 },
		{ "unaligned len (page + 1)", 0, 0, P + 1, 0, 0, 0, 0 },
		{ "len 0", 0, 0, 0, 0, 0, 0, 0 },
		{ "src offset + len overflows", 0, TOP, 2 * P, 0, 0, 0, 0 },
		{ "dst offset + len overflows", TOP, 0, 2 * P, 0, 0, 0, 0 },
		{ "huge len", 0, P, TOP, 0, 0, 0, 0 },
		{ "src at region end", 0, END, P, 0, 0, 0, 0 },
		{ "src past region end", 0, END - P, 2 * P, 0, 0, 0, 0 },
		{ "dst past region end", END - P, 0, 2 * P, 0, 0, 0, 0 },
		{ "len larger than the regions", 0, 0, END + P, 0, 0, 0, 0 },
		{ "mode 0x10", 0, 0, P, 0x10, 0, 0, 0 },
		{ "mode 1 << 31", 0, 0, P, 1u << 31, 0, 0, 0 },
		{ "DONTWAKE plus unknown 0x20", 0, 0, P, UFFDX_MOVE_DONTWAKE | 0x20, 0, 0, 0 },
		{ "reserved[0]", 0, 0, P, 0, 0, 1, 1 },
		{ "reserved[1]", 0, 0, P, 0, 0, 2, 1ULL << 40 },
		{ "size 8", 0, 0, P, 0, 0, 3, 8 },
		{ "size 0", 0, 0, P, 0, 0, 3, 0 },
	};
	struct uffdx_move m;
	unsigned int i;

	SETUP_A4(1500);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const struct bad_move *c = &bad[i];
		int ret, e;

		move_init(&m, c->same_region ? self->a.id : self->b.id, c->doff,
			  self->a.id, c->soff, c->len, c->mode);
		if (c->field == 1)
			m.reserved[0] = c->val;
		else if (c->field == 2)
			m.reserved[1] = c->val;
		else if (c->field == 3)
			m.size = (uint32_t)c->val;
		ret = move_ioctl(self->ctx, &m);
		e = errno;
		EXPECT_EQ(-1, ret) TH_LOG("%s: accepted", c->what);
		EXPECT_EQ(EINVAL, e) TH_LOG("%s: errno %d (%s)", c->what, e, strerror(e));
		EXPECT_EQ(SENTINEL, m.result) TH_LOG("%s: result written (%lld)", c->what,
						     (long long)m.result);
	}
	/* a newer, larger struct with a non-zero tail */
	{
		union {
			struct uffdx_move m;
			uint8_t b[sizeof(struct uffdx_move) + 8];
		} u;
		int ret;

		memset(&u, 0, sizeof(u));
		move_init(&u.m, self->b.id, 0, self->a.id, 0, ps, 0);
		u.m.size = sizeof(u);
		u.b[sizeof(u) - 1] = 1;
		ret = move_ioctl(self->ctx, &u.m);
		EXPECT_EQ(-1, ret);
		EXPECT_EQ(E2BIG, errno);
	}
	EXPECT_NOTHING_MOVED(4, 0);
	EXPECT_PAGES(A, 0, 4, 1500);
}

TEST_F(mv, ebadf_region_fds)
{
	struct uffdx_region_info info;
	char path[64];
	int ro_a, ro_b, rw_a, pfd[2], null_fd, closed_fd, ret;
	int64_t res = 0;

	SETUP_A4(1600);
	snprintf(path, sizeof(path), "/proc/self/fd/%d", self->a.fd);
	ro_a = open(path, O_RDONLY | O_CLOEXEC);
	ASSERT_LE(0, ro_a) TH_LOG("reopen %s: %s", path, strerror(errno));
	rw_a = open(path, O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, rw_a) TH_LOG("reopen %s O_RDWR: %s", path, strerror(errno));
	snprintf(path, sizeof(path), "/proc/self/fd/%d", self->b.fd);
	ro_b = open(path, O_RDONLY | O_CLOEXEC);
	ASSERT_LE(0, ro_b);
	/* they are region fds: REGION_INFO works on a read-only one */
	ASSERT_EQ(0, uffdx_region_info(ro_a, &info));
	EXPECT_EQ(self->a.id, info.region_id);
	ASSERT_EQ(0, pipe2(pfd, O_CLOEXEC));
	null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, null_fd);
	closed_fd = dup(null_fd);
	ASSERT_LE(0, closed_fd);
	close(closed_fd);

	ret = raw_move(self->ctx, self->b.id, 0, (uint64_t)ro_a, 0, ps, UFFDX_MOVE_SRC_FD, &res);
	EXPECT_MOVE_ERR(ret, res, EBADF, SENTINEL);
	ret = raw_move(self->ctx, (uint64_t)ro_b, 0, self->a.id, 0, ps, UFFDX_MOVE_DST_FD, &res);
	EXPECT_MOVE_ERR(ret, res, EBADF, SENTINEL);
	ret = raw_move(self->ctx, (uint64_t)ro_b, 0, (uint64_t)rw_a, 0, ps,
		       UFFDX_MOVE_SRC_FD | UFFDX_MOVE_DST_FD, &res);
	EXPECT_MOVE_ERR(ret, res, EBADF, SENTINEL);
	ret = raw_move(self->ctx, self->b.id, 0, (uint64_t)pfd[0], 0, ps, UFFDX_MOVE_SRC_FD, &res);
	EXPECT_MOVE_ERR(ret, res, EBADF, SENTINEL);
	ret = raw_move(self->ctx, (uint64_t)pfd[1], 0, self->a.id, 0, ps, UFFDX_MOVE_DST_FD, &res);
	EXPECT_MOVE_ERR(ret, res, EBADF, SENTINEL);
	ret = raw_move(self->ctx, self->b.id, 0, (uint64_t)null_fd, 0, ps, UFFDX_MOVE_SRC_FD, &res);
	EXPECT_MOVE_ERR(ret, res, EBADF, SENTINEL);
	/* a context fd is not a region fd */
	ret = raw_move(self->ctx, (uint64_t)self->ctx, 0, self->a.id, 0, ps, UFFDX_MOVE_DST_FD, &res);
	EXPECT_MOVE_ERR(ret, res, EBADF, SENTINEL);
	ret = raw_move(self->ctx, self->b.id, 0, (uint64_t)closed_fd, 0, ps, UFFDX_MOVE_SRC_FD, &res);
	EXPECT_MOVE_ERR(ret, res, EBADF, SENTINEL);
	EXPECT_NOTHING_MOVED(4, 0);
	EXPECT_PAGES(A, 0, 4, 1600);

	/* a writable reopen is a region fd like the original */
	ret = raw_move(self->ctx, self->b.id, 0, (uint64_t)rw_a, 0, ps, UFFDX_MOVE_SRC_FD, &res);
	EXPECT_MOVED(ret, res, ps);
	EXPECT_PAGES(B, 0, 1, 1600);
	close(ro_a);
	close(ro_b);
	close(rw_a);
	close(pfd[0]);
	close(pfd[1]);
	close(null_fd);
}

TEST_F(mv, addr_einval)
{
	const uint64_t TOP = ~0ULL & ~(uint64_t)(ps - 1);
	uint8_t *anon, *a2, *split, *hole;
	struct uffdx_move_addr m;
	unsigned int i;
	int ret, e;

	SETUP_A4(1700);
	anon = mmap(NULL, 4 * ps, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, anon);
	memset(anon, 0x77, 4 * ps);
	a2 = mmap(NULL, NPAGES * ps, PROT_READ | PROT_WRITE, MAP_SHARED, self->a.fd, 0);
	ASSERT_NE(MAP_FAILED, a2);
	/* two adjacent mappings of B that cannot merge: offsets 32.. then 0.. */
	split = mmap(NULL, 16 * ps, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, split);
	ASSERT_EQ(split, mmap(split, 8 * ps, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED,
			      self->b.fd, 32 * ps));
	ASSERT_EQ(PG(split, 8), mmap(PG(split, 8), 8 * ps, PROT_READ | PROT_WRITE,
				     MAP_SHARED | MAP_FIXED, self->b.fd, 0));
	/* an address with nothing mapped */
	hole = mmap(NULL, 4 * ps, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, hole);
	munmap(hole, 4 * ps);

	{
		const struct {
			const char *what;
			const void *dst, *src;
			uint64_t len;
			uint32_t mode;
			int field;
		} bad[] = {
			{ "DST_FD", B, A, ps, UFFDX_MOVE_DST_FD, 0 },
			{ "SRC_FD", B, A, ps, UFFDX_MOVE_SRC_FD, 0 },
			{ "mode 0x10", B, A, ps, 0x10, 0 },
			{ "mode 1 << 31", B, A, ps, 1u << 31, 0 },
			{ "reserved[0]", B, A, ps, 0, 1 },
			{ "reserved[1]", B, A, ps, 0, 2 },
			{ "size 8", B, A, ps, 0, 3 },
			{ "unaligned dst", PG(B, 1) + 8, A, ps, 0, 0 },
			{ "unaligned src", B, A + 1, ps, 0, 0 },
			{ "unaligned len", B, A, ps + 1, 0, 0 },
			{ "len 0", B, A, 0, 0, 0 },
			{ "src + len overflows", B, A, TOP, 0, 0 },
			{ "dst + len overflows", (void *)(uintptr_t)TOP, A, 2 * ps, 0, 0 },
			{ "src past the mapping", B, PG(A, NPAGES - 1), 2 * ps, 0, 0 },
			{ "dst past the mapping", PG(B, NPAGES - 1), A, 2 * ps, 0, 0 },
			{ "src not a region (anonymous)", B, anon, ps, 0, 0 },
			{ "dst not a region (anonymous)", anon, A, ps, 0, 0 },
			{ "src unmapped", B, hole, ps, 0, 0 },
			{ "dst unmapped", hole, A, ps, 0, 0 },
			{ "overlap in one mapping", PG(A, 2), A, 4 * ps, 0, 0 },
			{ "same address", A, A, ps, 0, 0 },
			{ "overlap through two mappings", PG(a2, 2), A, 4 * ps, 0, 0 },
			{ "same offset through two mappings", a2, A, ps, 0, 0 },
			{ "dst across two mappings", PG(split, 6), A, 4 * ps, 0, 0 },
		};

		for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			move_addr_init(&m, bad[i].dst, bad[i].src, bad[i].len, bad[i].mode);
			if (bad[i].field == 1)
				m.reserved[0] = 1;
			else if (bad[i].field == 2)
				m.reserved[1] = 1ULL << 33;
			else if (bad[i].field == 3)
				m.size = 8;
			ret = ioctl(self->ctx, UFFDX_IOC_MOVE_ADDR, &m);
			e = errno;
			EXPECT_EQ(-1, ret) TH_LOG("%s: accepted", bad[i].what);
			EXPECT_EQ(EINVAL, e) TH_LOG("%s: errno %d (%s)", bad[i].what, e, strerror(e));
			EXPECT_EQ(SENTINEL, m.result) TH_LOG("%s: result written", bad[i].what);
		}
	}
	EXPECT_NOTHING_MOVED(4, 0);
	EXPECT_PAGES(A, 0, 4, 1700);
	EXPECT_EQ(0x77, anon[0]);
	munmap(anon, 4 * ps);
	munmap(a2, NPAGES * ps);
	munmap(split, 16 * ps);
}

TEST_F(mv, addr_ebadf_readonly_mapping)
{
	char path[64];
	uint8_t *ro_a, *ro_b;
	int fa, fb, ret;
	int64_t res = 0;

	SETUP_A4(1800);
	snprintf(path, sizeof(path), "/proc/self/fd/%d", self->a.fd);
	fa = open(path, O_RDONLY | O_CLOEXEC);
	ASSERT_LE(0, fa);
	snprintf(path, sizeof(path), "/proc/self/fd/%d", self->b.fd);
	fb = open(path, O_RDONLY | O_CLOEXEC);
	ASSERT_LE(0, fb);
	ro_a = mmap(NULL, NPAGES * ps, PROT_READ, MAP_SHARED, fa, 0);
	ASSERT_NE(MAP_FAILED, ro_a);
	ro_b = mmap(NULL, NPAGES * ps, PROT_READ, MAP_SHARED, fb, 0);
	ASSERT_NE(MAP_FAILED, ro_b);
	EXPECT_PAGES(ro_a, 0, 4, 1800);

	ret = raw_move_addr(self->ctx, B, ro_a, ps, 0, &res);
	EXPECT_MOVE_ERR(ret, res, EBADF, SENTINEL);
	ret = raw_move_addr(self->ctx, ro_b, A, ps, 0, &res);
	EXPECT_MOVE_ERR(ret, res, EBADF, SENTINEL);
	{
		struct uffdx_move_entry e;
		uint64_t moved = 0;

		entry_set(&e, B, ro_a, ps);
		ret = raw_move_vec(self->ctx, &e, 1, 0, &moved);
		EXPECT_EQ(-1, ret);
		EXPECT_EQ(EAGAIN, errno);
		EXPECT_EQ(-EBADF, e.result);
		EXPECT_EQ(0, moved);
	}
	EXPECT_NOTHING_MOVED(4, 0);
	EXPECT_PAGES(A, 0, 4, 1800);
	munmap(ro_a, NPAGES * ps);
	munmap(ro_b, NPAGES * ps);
	close(fa);
	close(fb);
}

/* A context that did not negotiate MOVE: all three ioctls are EINVAL. */
TEST(move_ioctls_need_the_feature)
{
	struct uffdx_region_map a, b;
	struct uffdx_move_entry e;
	uint64_t moved = 0;
	int64_t res = 0;
	int ctx, mctx, ret;

	SKIP_IF_NO_MOVE();
	ctx = ctx_open(DEFAULT_FEATURES, 0);
	ASSERT_LE(0, ctx);
	ASSERT_EQ(0, uffdx_region_map(ctx, 8 * ps, 0, &a));
	ASSERT_EQ(0, uffdx_region_map(ctx, 8 * ps, 0, &b));
	ASSERT_EQ(0, fill_pages(ctx, a.id, 0, 2, 1900));

	ret = raw_move(ctx, b.id, 0, a.id, 0, ps, 0, &res);
	EXPECT_EQ(-1, ret);
	EXPECT_EQ(EINVAL, errno);
	EXPECT_EQ(SENTINEL, res);
	ret = raw_move(ctx, (uint64_t)b.fd, 0, (uint64_t)a.fd, 0, ps,
		       UFFDX_MOVE_SRC_FD | UFFDX_MOVE_DST_FD, &res);
	EXPECT_EQ(-1, ret);
	EXPECT_EQ(EINVAL, errno);
	EXPECT_EQ(SENTINEL, res);
	ret = raw_move_addr(ctx, b.addr, a.addr, ps, 0, &res);
	EXPECT_EQ(-1, ret);
	EXPECT_EQ(EINVAL, errno);
	EXPECT_EQ(SENTINEL, res);
	entry_set(&e, b.addr, a.addr, ps);
	ret = raw_move_vec(ctx, &e, 1, 0, &moved);
	EXPECT_EQ(-1, ret);
	EXPECT_EQ(EINVAL, errno);
	EXPECT_EQ(SENTINEL, e.result);
	EXPECT_EQ((uint64_t)SENTINEL, moved);
	/* the library says the same */
	EXPECT_EQ(-EINVAL, uffdx_move(ctx, b.id, 0, a.id, 0, ps, 0, NULL));
	EXPECT_RESIDENT(a.fd, 2);
	EXPECT_RESIDENT(b.fd, 0);
	EXPECT_PAGES(a.addr, 0, 2, 1900);

	/* the regions themselves can move: through a context that has MOVE */
	mctx = ctx_open(MOVE_FEATURES, 0);
	ASSERT_LE(0, mctx);
	ret = raw_move(mctx, (uint64_t)b.fd, 0, (uint64_t)a.fd, 0, ps,
		       UFFDX_MOVE_SRC_FD | UFFDX_MOVE_DST_FD, &res);
	EXPECT_MOVED(ret, res, ps);
	EXPECT_PAGES(b.addr, 0, 1, 1900);
	close(mctx);
	uffdx_region_unmap(&a);
	uffdx_region_unmap(&b);
	close(ctx);
}

/* ---- 5. partial moves ---------------------------------------------------------- */

TEST_F(mv, partial_eagain_then_resume)
{
	int64_t res = 0;
	int ret;

	/* dst page 5 is taken */
	ASSERT_EQ(0, fill_pages(self->ctx, self->a.id, 0, 16, 2000));
	ASSERT_EQ(0, fill_pages(self->ctx, self->b.id, 5, 1, 2099));
	ret = raw_move(self->ctx, self->b.id, 0, self->a.id, 0, 16 * ps, 0, &res);
	EXPECT_MOVE_ERR(ret, res, EAGAIN, 5 * ps);
	/* resume where it stopped: the blocker itself */
	ret = raw_move(self->ctx, self->b.id, 5 * ps, self->a.id, 5 * ps, 11 * ps, 0, &res);
	EXPECT_MOVE_ERR(ret, res, EEXIST, -EEXIST);
	/* skip it */
	ret = raw_move(self->ctx, self->b.id, 6 * ps, self->a.id, 6 * ps, 10 * ps, 0, &res);
	EXPECT_MOVED(ret, res, 10 * ps);
	EXPECT_RESIDENT(self->a.fd, 1);
	EXPECT_RESIDENT(self->b.fd, 16);
	/* every page exactly once */
	EXPECT_PAGES(B, 0, 5, 2000);
	EXPECT_PAGES(B, 5, 1, 2099);
	EXPECT_PAGES(B, 6, 10, 2006);
	EXPECT_PAGES(A, 5, 1, 2005);
	EXPECT_ZERO_PAGES(A, 0, 5);
	EXPECT_ZERO_PAGES(A, 6, 10);

	/* a source hole in the middle: the same, with ENOENT at the hole */
	ASSERT_EQ(0, fill_pages(self->ctx, self->a.id, 20, 4, 2100));
	ASSERT_EQ(0, fill_pages(self->ctx, self->a.id, 25, 3, 2105));
	ret = raw_move_addr(self->ctx, PG(B, 40), PG(A, 20), 8 * ps, 0, &res);
	EXPECT_MOVE_ERR(ret, res, EAGAIN, 4 * ps);
	ret = raw_move_addr(self->ctx, PG(B, 44), PG(A, 24), 4 * ps, 0, &res);
	EXPECT_MOVE_ERR(ret, res, ENOENT, -ENOENT);
	ret = raw_move_addr(self->ctx, PG(B, 45), PG(A, 25), 3 * ps, 0, &res);
	EXPECT_MOVED(ret, res, 3 * ps);
	EXPECT_RESIDENT(self->b.fd, 16 + 7);
	EXPECT_PAGES(B, 40, 4, 2100);
	EXPECT_PAGES(B, 45, 3, 2105);
	EXPECT_ZERO_PAGES(A, 20, 8);
}

/* ---- 6. pinned pages ---------------------------------------------------------- */

/*
 * Register [addr, addr + len) as an io_uring fixed buffer: a FOLL_LONGTERM
 * pin.  Returns the ring fd, or -errno with *why set.
 */
static int uring_pin(void *addr, size_t len, const char **why)
{
	struct io_uring_params p;
	struct iovec iov = { .iov_base = addr, .iov_len = len };
	int fd, err;

	memset(&p, 0, sizeof(p));
	fd = (int)syscall(__NR_io_uring_setup, 4, &p);
	if (fd < 0) {
		*why = "io_uring_setup";
		return -errno;
	}
	if (syscall(__NR_io_uring_register, fd, IORING_REGISTER_BUFFERS, &iov, 1)) {
		err = errno;
		close(fd);
		*why = "IORING_REGISTER_BUFFERS on a region mapping";
		return -err;
	}
	return fd;
}

static int uring_unpin(int fd)
{
	return syscall(__NR_io_uring_register, fd, IORING_UNREGISTER_BUFFERS, NULL, 0) ? -errno : 0;
}

#define PIN_OR_SKIP(fd, addr, len) do {						\
	const char *__why = "";							\
	fd = uring_pin(addr, len, &__why);					\
	if (fd == -ENOSYS || fd == -EOPNOTSUPP || fd == -EFAULT || fd == -EPERM) \
		SKIP(return, "%s: %s: cannot pin a region page this way here", \
		     __why, strerror(-fd));					\
	ASSERT_LE(0, fd) TH_LOG("%s: %s", __why, strerror(-fd));		\
} while (0)

/* A move after the unpin: the unpin is synchronous, but allow for a deferred one. */
static int move_after_unpin(int ctx, uint64_t dst, uint64_t doff, uint64_t src,
			    uint64_t soff, uint64_t len, int64_t *res, int *retries)
{
	uint64_t end = now_ns() + (uint64_t)WAIT_MS * 1000000ull;
	int ret;

	*retries = 0;
	for (;;) {
		ret = raw_move(ctx, dst, doff, src, soff, len, 0, res);
		if (ret == 0 || errno != EBUSY || now_ns() > end)
			return ret;
		++*retries;
		sleep_ms(10);
	}
}

TEST_F(mv, pinned_source_ebusy)
{
	int64_t res = 0;
	int ring, ret, retries;

	ASSERT_EQ(0, fill_pages(self->ctx, self->a.id, 0, 2, 2200));
	EXPECT_PAGES(A, 0, 2, 2200);
	PIN_OR_SKIP(ring, A, ps);
	ret = raw_move(self->ctx, self->b.id, 0, self->a.id, 0, ps, 0, &res);
	EXPECT_MOVE_ERR(ret, res, EBUSY, -EBUSY);
	ret = raw_move_addr(self->ctx, B, A, 2 * ps, 0, &res);
	EXPECT_MOVE_ERR(ret, res, EBUSY, -EBUSY);
	/* the page stayed, readable through the source */
	EXPECT_RESIDENT(self->a.fd, 2);
	EXPECT_RESIDENT(self->b.fd, 0);
	EXPECT_PAGES(A, 0, 2, 2200);
	/* the page next to it is not pinned */
	ret = raw_move(self->ctx, self->b.id, ps, self->a.id, ps, ps, 0, &res);
	EXPECT_MOVED(ret, res, ps);

	ASSERT_EQ(0, uring_unpin(ring));
	ret = move_after_unpin(self->ctx, self->b.id, 0, self->a.id, 0, ps, &res, &retries);
	EXPECT_MOVED(ret, res, ps);
	if (retries)
		TH_LOG("the move after the unpin needed %d retries (deferred unpin)", retries);
	EXPECT_PAGES(B, 0, 2, 2200);
	close(ring);
}

TEST_F(mv, pinned_page_mid_range_eagain)
{
	int64_t res = 0;
	int ring, ret, retries;

	ASSERT_EQ(0, fill_pages(self->ctx, self->a.id, 0, 8, 2300));
	EXPECT_PAGES(A, 0, 8, 2300);
	PIN_OR_SKIP(ring, PG(A, 3), ps);
	ret = raw_move(self->ctx, self->b.id, 0, self->a.id, 0, 8 * ps, 0, &res);
	EXPECT_MOVE_ERR(ret, res, EAGAIN, 3 * ps);
	EXPECT_RESIDENT(self->a.fd, 5);
	EXPECT_RESIDENT(self->b.fd, 3);
	EXPECT_PAGES(B, 0, 3, 2300);
	EXPECT_PAGES(A, 3, 5, 2303);
	ASSERT_EQ(0, uring_unpin(ring));
	ret = move_after_unpin(self->ctx, self->b.id, 3 * ps, self->a.id, 3 * ps, 5 * ps,
			       &res, &retries);
	EXPECT_MOVED(ret, res, 5 * ps);
	EXPECT_RESIDENT(self->a.fd, 0);
	EXPECT_PAGES(B, 0, 8, 2300);
	EXPECT_ZERO_PAGES(A, 0, 8);
	close(ring);
}

/* ---- 7. wakes ----------------------------------------------------------------- */

static void expect_fault_event(struct __test_metadata *_metadata, int ctx,
			       const void *addr, uint64_t id, uint64_t off,
			       const struct accessor *acc)
{
	struct uffdx_event ev;

	memset(&ev, 0xcc, sizeof(ev));
	ASSERT_EQ(1, wait_event(ctx, &ev, WAIT_MS)) TH_LOG("no fault event");
	EXPECT_EQ(UFFDX_EVENT_PAGEFAULT, ev.type);
	EXPECT_EQ(0, ev.flags);
	EXPECT_EQ((uintptr_t)addr, ev.address);
	EXPECT_EQ(id, ev.region_id);
	EXPECT_EQ(off, ev.offset);
	EXPECT_EQ((uint32_t)getpid(), ev.pid);
	EXPECT_EQ((uint32_t)acc->tid, ev.tid);	/* set before the access */
}

TEST_F(mv, move_wakes_armed_dst_faulter)
{
	struct accessor *f1, *f2;
	int64_t res = 0;
	int ret;

	ASSERT_EQ(0, fill_pages(self->ctx, self->a.id, 5, 2, 2400));
	fill_pattern(self->buf, ps, 2400);
	ASSERT_EQ(0, uffdx_arm(self->ctx, self->b.id, 0, NPAGES * ps, UFFDX_ARM_MISSING));

	/* region form */
	f1 = acc_new(PG(B, 5) + 17, 0, 0);
	ASSERT_NE(NULL, f1);
	ASSERT_EQ(0, acc_start_thread(f1));
	expect_fault_event(_metadata, self->ctx, PG(B, 5), self->b.id, 5 * ps, f1);
	EXPECT_TRUE(acc_blocked(f1, QUIET_MS));
	ret = raw_move(self->ctx, self->b.id, 5 * ps, self->a.id, 5 * ps, ps, 0, &res);
	EXPECT_MOVED(ret, res, ps);
	ASSERT_EQ(0, acc_wait(f1, WAIT_MS)) TH_LOG("faulter not woken by MOVE");
	EXPECT_EQ(0, f1->sig);
	EXPECT_EQ(self->buf[17], f1->first);
	EXPECT_EQ(checksum(self->buf, ps), f1->sum);

	/* address form, the faulter writing */
	fill_pattern(self->buf, ps, 2401);
	f2 = acc_new(PG(B, 6) + 3, 1, 0xee);
	ASSERT_NE(NULL, f2);
	ASSERT_EQ(0, acc_start_thread(f2));
	{
		struct uffdx_event ev;

		ASSERT_EQ(1, wait_event(self->ctx, &ev, WAIT_MS));
		EXPECT_EQ(UFFDX_PF_WRITE, ev.flags);
		EXPECT_EQ(6 * ps, ev.offset);
		EXPECT_EQ(self->b.id, ev.region_id);
	}
	EXPECT_TRUE(acc_blocked(f2, QUIET_MS));
	ret = raw_move_addr(self->ctx, PG(B, 6), PG(A, 6), ps, 0, &res);
	EXPECT_MOVED(ret, res, ps);
	ASSERT_EQ(0, acc_wait(f2, WAIT_MS)) TH_LOG("faulter not woken by MOVE_ADDR");
	EXPECT_EQ(0, f2->sig);
	EXPECT_EQ(0xee, f2->first);
	self->buf[3] = 0xee;	/* the write landed on the moved page */
	EXPECT_EQ(0, memcmp(PG(B, 6), self->buf, ps));
	EXPECT_EQ(0, event_arrives(self->ctx, QUIET_MS));
	acc_free(f1);
	acc_free(f2);
}

TEST_F(mv, dontwake_leaves_faulter_asleep)
{
	struct accessor *f;
	int64_t res = 0;
	int ret;

	ASSERT_EQ(0, fill_pages(self->ctx, self->a.id, 9, 1, 2500));
	fill_pattern(self->buf, ps, 2500);
	ASSERT_EQ(0, uffdx_arm(self->ctx, self->b.id, 0, NPAGES * ps, UFFDX_ARM_MISSING));
	f = acc_new(PG(B, 9) + 1, 0, 0);
	ASSERT_NE(NULL, f);
	ASSERT_EQ(0, acc_start_thread(f));
	expect_fault_event(_metadata, self->ctx, PG(B, 9), self->b.id, 9 * ps, f);
	ret = raw_move(self->ctx, self->b.id, 9 * ps, self->a.id, 9 * ps, ps,
		       UFFDX_MOVE_DONTWAKE, &res);
	EXPECT_MOVED(ret, res, ps);
	EXPECT_RESIDENT(self->b.fd, 1);
	EXPECT_TRUE(acc_blocked(f, QUIET_MS)) TH_LOG("DONTWAKE woke the faulter");
	ASSERT_EQ(0, uffdx_wake(self->ctx, self->b.id, 9 * ps, ps));
	ASSERT_EQ(0, acc_wait(f, WAIT_MS)) TH_LOG("faulter not woken by WAKE");
	EXPECT_EQ(0, f->sig);
	EXPECT_EQ(self->buf[1], f->first);
	EXPECT_EQ(checksum(self->buf, ps), f->sum);
	EXPECT_EQ(0, event_arrives(self->ctx, QUIET_MS));
	acc_free(f);
}

/* The faulter sleeps on ctx2's region; the move comes from our context, by fd. */
TEST_F(mv, move_by_fd_wakes_other_contexts_faulter)
{
	struct uffdx_region_map c;
	struct accessor *f;
	int64_t res = 0;
	int ctx2, ret;

	ctx2 = ctx_open(MOVE_FEATURES, 0);
	ASSERT_LE(0, ctx2);
	ASSERT_EQ(0, uffdx_region_map(ctx2, NPAGES * ps, 0, &c));
	ASSERT_EQ(0, uffdx_arm(ctx2, c.id, 0, NPAGES * ps, UFFDX_ARM_MISSING));
	ASSERT_EQ(0, fill_pages(self->ctx, self->a.id, 0, 1, 2600));
	fill_pattern(self->buf, ps, 2600);
	f = acc_new(PG(c.addr, 12) + 7, 0, 0);
	ASSERT_NE(NULL, f);
	ASSERT_EQ(0, acc_start_thread(f));
	expect_fault_event(_metadata, ctx2, PG(c.addr, 12), c.id, 12 * ps, f);
	ret = raw_move(self->ctx, (uint64_t)c.fd, 12 * ps, self->a.id, 0, ps,
		       UFFDX_MOVE_DST_FD, &res);
	EXPECT_MOVED(ret, res, ps);
	ASSERT_EQ(0, acc_wait(f, WAIT_MS)) TH_LOG("faulter of the other context not woken");
	EXPECT_EQ(0, f->sig);
	EXPECT_EQ(self->buf[7], f->first);
	EXPECT_EQ(checksum(self->buf, ps), f->sum);
	acc_free(f);
	close(ctx2);		/* before the region: nobody left asleep */
	uffdx_region_unmap(&c);
}

/* ---- 8. accounting ------------------------------------------------------------- */

TEST_F(mv, resident_moves_with_pages)
{
	long long v = -1;
	int64_t res = 0;
	int ret;

	ASSERT_EQ(0, fill_pages(self->ctx, self->a.id, 0, 10, 2700));
	EXPECT_RESIDENT(self->a.fd, 10);
	EXPECT_RESIDENT(self->b.fd, 0);
	ret = raw_move(self->ctx, self->b.id, 0, self->a.id, 2 * ps, 6 * ps, 0, &res);
	EXPECT_MOVED(ret, res, 6 * ps);
	EXPECT_RESIDENT(self->a.fd, 4);
	EXPECT_RESIDENT(self->b.fd, 6);
	ASSERT_EQ(0, fdinfo_ll(self->a.fd, "uffdx-resident-pages", &v));
	EXPECT_EQ(4, v);
	ASSERT_EQ(0, fdinfo_ll(self->b.fd, "uffdx-resident-pages", &v));
	EXPECT_EQ(6, v);
	/* one context: its charge did not change */
	EXPECT_EQ(10, charged(self->ctx));
}

TEST_F(mv, charge_moves_between_contexts)
{
	struct uffdx_region_map c;
	long long c0, d0;
	int64_t res = 0;
	int ctx2, ret;

	ctx2 = ctx_open(MOVE_FEATURES, 0);
	ASSERT_LE(0, ctx2);
	ASSERT_EQ(0, uffdx_region_map(ctx2, NPAGES * ps, 0, &c));
	ASSERT_EQ(0, fill_pages(self->ctx, self->a.id, 0, 10, 2800));
	c0 = charged(self->ctx);
	d0 = charged(ctx2);
	ASSERT_LE(10, c0);
	ASSERT_LE(0, d0);

	ret = raw_move(self->ctx, (uint64_t)c.fd, 0, self->a.id, 0, 6 * ps,
		       UFFDX_MOVE_DST_FD, &res);
	EXPECT_MOVED(ret, res, 6 * ps);
	EXPECT_EQ(c0 - 6, charged(self->ctx));
	EXPECT_EQ(d0 + 6, charged(ctx2));
	EXPECT_RESIDENT(c.fd, 6);
	EXPECT_RESIDENT(self->a.fd, 4);

	/* back again, by address, from ctx2 */
	ret = raw_move_addr(ctx2, PG(A, 20), c.addr, 2 * ps, 0, &res);
	EXPECT_MOVED(ret, res, 2 * ps);
	EXPECT_EQ(c0 - 4, charged(self->ctx));
	EXPECT_EQ(d0 + 4, charged(ctx2));
	EXPECT_PAGES(A, 20, 2, 2800);
	EXPECT_PAGES(c.addr, 2, 4, 2802);
	uffdx_region_unmap(&c);
	close(ctx2);
}

/*
 * The budgets (module parameters, root only), restored by the parent even
 * if the test dies.  As in limits.c, no other process of this user may
 * hold uffdx memory meanwhile.
 */
FIXTURE(mvbudget) {
	long long old, old_user;
	int saved;
};

FIXTURE_SETUP(mvbudget)
{
	self->saved = 0;
	SKIP_IF_NO_MOVE();
	if (getuid() != 0)
		SKIP(return, "needs root to set the module parameters");
	ASSERT_EQ(0, read_ll_file(P_CTX_PAGES, &self->old)) TH_LOG("cannot read " P_CTX_PAGES);
	ASSERT_EQ(0, read_ll_file(P_USER_PAGES, &self->old_user))
		TH_LOG("cannot read " P_USER_PAGES);
	self->saved = 1;
}

FIXTURE_TEARDOWN_PARENT(mvbudget)
{
	if (self->saved) {
		write_ll_file(P_CTX_PAGES, self->old);
		write_ll_file(P_USER_PAGES, self->old_user);
	}
}

/* A MOVE context opened under max_pages_per_context = pages (read at open). */
static int ctx_open_limited(FIXTURE_DATA(mvbudget) *self, long long pages)
{
	int ctx;

	if (write_ll_file(P_CTX_PAGES, pages))
		return -EIO;
	ctx = ctx_open(MOVE_FEATURES, 0);
	write_ll_file(P_CTX_PAGES, self->old);
	return ctx;
}

TEST_F(mvbudget, cross_context_move_enomem)
{
	struct uffdx_region_map a, c;
	long long c0, d0;
	int64_t res = 0;
	int ctx, ctx2, ret;

	ctx = ctx_open(MOVE_FEATURES, 0);
	ASSERT_LE(0, ctx);
	ASSERT_EQ(0, uffdx_region_map(ctx, 16 * ps, 0, &a));
	ASSERT_EQ(0, fill_pages(ctx, a.id, 0, 8, 2900));
	ctx2 = ctx_open_limited(self, 4);
	ASSERT_LE(0, ctx2);
	ASSERT_EQ(0, uffdx_region_map(ctx2, 16 * ps, 0, &c));
	c0 = charged(ctx);
	d0 = charged(ctx2);
	EXPECT_EQ(0, d0);

	/* 8 pages into a context that may hold 4: nothing moves */
	ret = raw_move(ctx, (uint64_t)c.fd, 0, a.id, 0, 8 * ps, UFFDX_MOVE_DST_FD, &res);
	EXPECT_MOVE_ERR(ret, res, ENOMEM, -ENOMEM);
	EXPECT_RESIDENT(a.fd, 8);
	EXPECT_RESIDENT(c.fd, 0);
	EXPECT_EQ(c0, charged(ctx));
	EXPECT_EQ(d0, charged(ctx2));
	ret = raw_move_addr(ctx, c.addr, a.addr, 8 * ps, 0, &res);
	EXPECT_MOVE_ERR(ret, res, ENOMEM, -ENOMEM);
	EXPECT_RESIDENT(c.fd, 0);

	/* within the budget: fine */
	ret = raw_move(ctx, (uint64_t)c.fd, 0, a.id, 0, 2 * ps, UFFDX_MOVE_DST_FD, &res);
	EXPECT_MOVED(ret, res, 2 * ps);
	/* 2 left: 3 do not fit, 2 do, then nothing */
	ret = raw_move(ctx, (uint64_t)c.fd, 2 * ps, a.id, 2 * ps, 3 * ps, UFFDX_MOVE_DST_FD, &res);
	EXPECT_MOVE_ERR(ret, res, ENOMEM, -ENOMEM);
	ret = raw_move(ctx, (uint64_t)c.fd, 2 * ps, a.id, 2 * ps, 2 * ps, UFFDX_MOVE_DST_FD, &res);
	EXPECT_MOVED(ret, res, 2 * ps);
	ret = raw_move(ctx, (uint64_t)c.fd, 4 * ps, a.id, 4 * ps, ps, UFFDX_MOVE_DST_FD, &res);
	EXPECT_MOVE_ERR(ret, res, ENOMEM, -ENOMEM);
	EXPECT_EQ(c0 - 4, charged(ctx));
	EXPECT_EQ(d0 + 4, charged(ctx2));
	EXPECT_RESIDENT(a.fd, 4);
	EXPECT_RESIDENT(c.fd, 4);
	EXPECT_PAGES(c.addr, 0, 4, 2900);
	EXPECT_PAGES(a.addr, 4, 4, 2904);
	/* within one context the budget plays no part */
	ret = raw_move(ctx2, c.id, 8 * ps, c.id, 0, 4 * ps, 0, &res);
	EXPECT_MOVED(ret, res, 4 * ps);
	uffdx_region_unmap(&c);
	uffdx_region_unmap(&a);
	close(ctx2);
	close(ctx);
}

/*
 * More than one batch into a context with room for less: the batches that
 * fit move, the first that does not stops the move (EAGAIN), or, if it is
 * the first, nothing moves (ENOMEM).  Nothing is lost either way.
 */
#define BIG_PAGES	600
#define BIG_BUDGET	520

TEST_F(mvbudget, cross_context_enomem_stops_between_batches)
{
	struct uffdx_region_map a, c;
	int64_t res = 0;
	long long n;
	int ctx, ctx2, ret, e;

	ctx = ctx_open(MOVE_FEATURES, 0);
	ASSERT_LE(0, ctx);
	ASSERT_EQ(0, uffdx_region_map(ctx, BIG_PAGES * ps, 0, &a));
	ASSERT_EQ(0, fill_pages(ctx, a.id, 0, BIG_PAGES, 5000));
	ctx2 = ctx_open_limited(self, BIG_BUDGET);
	ASSERT_LE(0, ctx2);
	ASSERT_EQ(0, uffdx_region_map(ctx2, BIG_PAGES * ps, 0, &c));

	ret = raw_move(ctx, (uint64_t)c.fd, 0, a.id, 0, BIG_PAGES * ps, UFFDX_MOVE_DST_FD, &res);
	e = errno;
	EXPECT_EQ(-1, ret);
	if (e == ENOMEM) {
		EXPECT_EQ(-ENOMEM, res);
		n = 0;
		TH_LOG("ENOMEM: the first batch did not fit, nothing moved");
	} else {
		EXPECT_EQ(EAGAIN, e) TH_LOG("errno %d (%s)", e, strerror(e));
		EXPECT_LT(0, res);
		EXPECT_EQ(0, res % (int64_t)ps);
		n = res / (int64_t)ps;
		EXPECT_GE(BIG_BUDGET, n);
		TH_LOG("EAGAIN after %lld pages", n);
	}
	EXPECT_EQ(n, charged(ctx2));
	EXPECT_EQ(BIG_PAGES - n, charged(ctx));
	EXPECT_RESIDENT(c.fd, n);
	EXPECT_RESIDENT(a.fd, BIG_PAGES - n);
	EXPECT_PAGES(c.addr, 0, (size_t)n, 5000);
	EXPECT_PAGES(a.addr, (size_t)n, (size_t)(BIG_PAGES - n), 5000 + (uint64_t)n);

	/* what is left of the budget still moves, and then nothing */
	if (n < BIG_BUDGET) {
		ret = raw_move(ctx, (uint64_t)c.fd, n * ps, a.id, n * ps, (BIG_BUDGET - n) * ps,
			       UFFDX_MOVE_DST_FD, &res);
		EXPECT_MOVED(ret, res, (BIG_BUDGET - n) * ps);
	}
	ret = raw_move(ctx, (uint64_t)c.fd, BIG_BUDGET * ps, a.id, BIG_BUDGET * ps, ps,
		       UFFDX_MOVE_DST_FD, &res);
	EXPECT_MOVE_ERR(ret, res, ENOMEM, -ENOMEM);
	EXPECT_EQ(BIG_BUDGET, charged(ctx2));
	EXPECT_PAGES(c.addr, 0, BIG_BUDGET, 5000);
	EXPECT_PAGES(a.addr, BIG_BUDGET, BIG_PAGES - BIG_BUDGET, 5000 + BIG_BUDGET);
	uffdx_region_unmap(&c);
	uffdx_region_unmap(&a);
	close(ctx2);
	close(ctx);
}

/*
 * A move between two contexts of one user does not change what the user
 * holds: it must not need room in max_pages_per_user for a second copy of
 * the charge.  The source fills what the budget allows (n pages), keeps
 * k = n / 2 + 1 of them and moves them: k fit, 2 k do not.
 */
TEST_F(mvbudget, move_between_contexts_of_one_user_needs_no_user_room)
{
	struct uffdx_region_map a, c;
	int64_t res = 0;
	unsigned int n, k;
	int ctx, ctx2, ret;

	ctx = ctx_open(MOVE_FEATURES, 0);
	ASSERT_LE(0, ctx);
	ctx2 = ctx_open(MOVE_FEATURES, 0);
	ASSERT_LE(0, ctx2);
	ASSERT_EQ(0, uffdx_region_map(ctx, 32 * ps, 0, &a));
	ASSERT_EQ(0, uffdx_region_map(ctx2, 32 * ps, 0, &c));
	ASSERT_EQ(0, write_ll_file(P_USER_PAGES, 16));
	for (n = 0; n < 32; n++) {
		ret = fill_pages(ctx, a.id, n, 1, 5100 + n);
		if (ret == -ENOMEM)
			break;
		ASSERT_EQ(0, ret) TH_LOG("page %u: %s", n, strerror(-ret));
	}
	ASSERT_GE(n, 4) TH_LOG("only %u pages fit in a user budget of 16: others hold some", n);
	ASSERT_GE(16, n);
	k = n / 2 + 1;
	ASSERT_EQ(0, uffdx_discard(ctx, a.id, k * ps, (n - k) * ps, &res));
	EXPECT_EQ((long long)k, charged(ctx));

	ret = raw_move(ctx, (uint64_t)c.fd, 0, a.id, 0, k * ps, UFFDX_MOVE_DST_FD, &res);
	EXPECT_MOVED(ret, res, k * ps);
	EXPECT_EQ(0, charged(ctx));
	EXPECT_EQ((long long)k, charged(ctx2));
	write_ll_file(P_USER_PAGES, self->old_user);
	EXPECT_PAGES(c.addr, 0, k, 5100);
	uffdx_region_unmap(&c);
	uffdx_region_unmap(&a);
	close(ctx2);
	close(ctx);
}

/* ---- 9. MOVE_VEC --------------------------------------------------------------- */

TEST_F(mv, vec_eight_single_pages)
{
	struct uffdx_move_entry e[8];
	uint64_t moved = 0, pm;
	int i, ret, mapped = 0;

	ASSERT_EQ(0, fill_pages(self->ctx, self->a.id, 0, 8, 3000));
	EXPECT_PAGES(A, 0, 8, 3000);
	for (i = 0; i < 8; i++)
		entry_set(&e[i], PG(B, 15 - 2 * i), PG(A, i), ps);
	ret = uffdx_move_vec(self->ctx, e, 8, 0, &moved);
	ASSERT_EQ(0, ret) TH_LOG("MOVE_VEC: %s", strerror(-ret));
	EXPECT_EQ(8 * ps, moved);
	for (i = 0; i < 8; i++) {
		EXPECT_EQ((int64_t)ps, e[i].result) TH_LOG("entry %d", i);
		if (!pagemap_read(PG(B, 15 - 2 * i), 1, &pm) && (pm & PM_PRESENT))
			mapped++;
	}
	TH_LOG("%d of 8 destination pages mapped on return", mapped);
	EXPECT_RESIDENT(self->a.fd, 0);
	EXPECT_RESIDENT(self->b.fd, 8);
	for (i = 0; i < 8; i++)
		EXPECT_PAGES(B, 15 - 2 * i, 1, 3000 + i);
	EXPECT_ZERO_PAGES(A, 0, 8);
}

TEST_F(mv, vec_failing_entries_are_independent)
{
	struct uffdx_move_entry e[11];
	uint8_t *anon;
	uint64_t moved = 0;
	int i, ret;

	anon = mmap(NULL, ps, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, anon);
	ASSERT_EQ(0, fill_pages(self->ctx, self->a.id, 0, 8, 3100));	/* 8, 9 holes */
	ASSERT_EQ(0, fill_pages(self->ctx, self->a.id, 10, 4, 3110));
	ASSERT_EQ(0, fill_pages(self->ctx, self->b.id, 3, 1, 3199));	/* taken */
	ASSERT_EQ(0, fill_pages(self->ctx, self->b.id, 12, 1, 3198));	/* taken */
	for (i = 0; i < 8; i++)
		entry_set(&e[i], PG(B, i), PG(A, i), ps);
	e[5].len = ps + 1;				/* -EINVAL */
	entry_set(&e[8], PG(B, 8), anon, ps);		/* -EINVAL: not a region */
	entry_set(&e[9], PG(B, 9), PG(A, 9), ps);	/* -ENOENT: source hole */
	entry_set(&e[10], PG(B, 10), PG(A, 10), 4 * ps);	/* 2 pages, then B 12 */
	ret = raw_move_vec(self->ctx, e, 11, 0, &moved);
	EXPECT_EQ(-1, ret);
	EXPECT_EQ(EAGAIN, errno);
	for (i = 0; i < 8; i++) {
		int64_t want = i == 3 ? -EEXIST : i == 5 ? -EINVAL : (int64_t)ps;

		EXPECT_EQ(want, e[i].result) TH_LOG("entry %d", i);
	}
	EXPECT_EQ(-EINVAL, e[8].result);
	EXPECT_EQ(-ENOENT, e[9].result);
	EXPECT_EQ((int64_t)(2 * ps), e[10].result);
	EXPECT_EQ(8 * ps, moved);
	EXPECT_RESIDENT(self->a.fd, 4);		/* 3, 5, 12, 13 */
	EXPECT_RESIDENT(self->b.fd, 10);	/* 0-2, 4, 6, 7, 10, 11 + 3, 12 */
	EXPECT_PAGES(B, 0, 3, 3100);
	EXPECT_PAGES(B, 3, 1, 3199);
	EXPECT_PAGES(B, 4, 1, 3104);
	EXPECT_PAGES(B, 6, 2, 3106);
	EXPECT_PAGES(B, 10, 2, 3110);
	EXPECT_PAGES(B, 12, 1, 3198);
	EXPECT_PAGES(A, 3, 1, 3103);
	EXPECT_PAGES(A, 5, 1, 3105);
	EXPECT_PAGES(A, 12, 2, 3112);
	EXPECT_EQ(0x00, anon[0]);
	munmap(anon, ps);
}

TEST_F(mv, vec_bad_vectors_einval)
{
	const uint32_t sizes[] = { 0, 16, 24, 31, 33, 40, 64 };
	const uint32_t nr_max = UFFDX_MOVE_VEC_MAX + 1;
	struct uffdx_move_entry *e;
	struct uffdx_move_vec v;
	unsigned int i, j, k;

	SETUP_A4(3200);
	e = calloc(nr_max, sizeof(*e));
	ASSERT_NE(NULL, e);
	for (i = 0; i < nr_max; i++)
		entry_set(&e[i], PG(B, i % 4), PG(A, i % 4), ps);

	for (k = 0; k < sizeof(sizes) / sizeof(sizes[0]) + 8; k++) {
		const char *what = "entry_size";
		uint32_t nr = 4;
		int ret, err;

		vec_init(&v, e, nr, 0);
		if (k < sizeof(sizes) / sizeof(sizes[0])) {
			v.entry_size = sizes[k];
		} else {
			switch (k - sizeof(sizes) / sizeof(sizes[0])) {
			case 0: v.nr_entries = 0; what = "nr_entries 0"; break;
			case 1: v.nr_entries = nr_max; what = "nr_entries > MAX"; break;
			case 2: v.nr_entries = 0xffffffffu; what = "nr_entries ~0"; break;
			case 3: v.mode = UFFDX_MOVE_DST_FD; what = "mode DST_FD"; break;
			case 4: v.mode = UFFDX_MOVE_SRC_FD; what = "mode SRC_FD"; break;
			case 5: v.mode = 0x40; what = "mode 0x40"; break;
			case 6: v.reserved[1] = 1; what = "reserved[1]"; break;
			default: v.size = 8; what = "size 8"; break;
			}
		}
		ret = ioctl(self->ctx, UFFDX_IOC_MOVE_VEC, &v);
		err = errno;
		EXPECT_EQ(-1, ret) TH_LOG("%s (%u): accepted", what, v.entry_size);
		EXPECT_EQ(EINVAL, err) TH_LOG("%s (%u): errno %d (%s)", what, v.entry_size,
					      err, strerror(err));
		EXPECT_EQ((uint64_t)SENTINEL, v.moved) TH_LOG("%s: moved written", what);
		for (j = 0; j < nr_max; j++)
			if (e[j].result != SENTINEL)
				break;
		EXPECT_EQ(nr_max, j) TH_LOG("%s: entry %u touched", what, j);
	}
	EXPECT_NOTHING_MOVED(4, 0);
	EXPECT_PAGES(A, 0, 4, 3200);
	free(e);
}

/* One page named twice, as source or as destination: it moves once. */
TEST_F(mv, vec_same_page_twice_moves_once)
{
	struct uffdx_move_entry e[4];
	uint64_t moved = 0;
	int ret, ok_src, ok_dst;

	ASSERT_EQ(0, fill_pages(self->ctx, self->a.id, 0, 3, 3400));
	entry_set(&e[0], PG(B, 0), PG(A, 0), ps);	/* A0 twice */
	entry_set(&e[1], PG(B, 1), PG(A, 0), ps);
	entry_set(&e[2], PG(B, 5), PG(A, 1), ps);	/* B5 twice */
	entry_set(&e[3], PG(B, 5), PG(A, 2), ps);
	ret = raw_move_vec(self->ctx, e, 4, 0, &moved);
	EXPECT_EQ(-1, ret);
	EXPECT_EQ(EAGAIN, errno);
	EXPECT_EQ(2 * ps, moved);
	ok_src = (e[0].result == (int64_t)ps) + (e[1].result == (int64_t)ps);
	ok_dst = (e[2].result == (int64_t)ps) + (e[3].result == (int64_t)ps);
	EXPECT_EQ(1, ok_src) TH_LOG("same source: results %lld, %lld",
				    (long long)e[0].result, (long long)e[1].result);
	EXPECT_EQ(-ENOENT, e[0].result == (int64_t)ps ? e[1].result : e[0].result);
	EXPECT_EQ(1, ok_dst) TH_LOG("same destination: results %lld, %lld",
				    (long long)e[2].result, (long long)e[3].result);
	EXPECT_EQ(-EEXIST, e[2].result == (int64_t)ps ? e[3].result : e[2].result);
	EXPECT_RESIDENT(self->a.fd, 1);
	EXPECT_RESIDENT(self->b.fd, 2);
	EXPECT_PAGES(B, e[0].result == (int64_t)ps ? 0 : 1, 1, 3400);
	EXPECT_PAGES(B, 5, 1, e[2].result == (int64_t)ps ? 3401 : 3402);
	EXPECT_PAGES(A, e[2].result == (int64_t)ps ? 2 : 1, 1,
		     e[2].result == (int64_t)ps ? 3402 : 3401);
}

/* More entries than the module takes in one pass, all of them real pages. */
#define VEC_PAGES	200
#define VEC_TAKEN	130	/* this entry's destination is populated */

TEST(vec_many_real_pages)
{
	struct uffdx_region_map a, b;
	struct uffdx_move_entry *e;
	uint64_t moved = 0;
	unsigned int i;
	int ctx, ret;

	SKIP_IF_NO_MOVE();
	ctx = ctx_open(MOVE_FEATURES, 0);
	ASSERT_LE(0, ctx);
	ASSERT_EQ(0, uffdx_region_map(ctx, VEC_PAGES * ps, 0, &a));
	ASSERT_EQ(0, uffdx_region_map(ctx, VEC_PAGES * ps, 0, &b));
	ASSERT_EQ(0, fill_pages(ctx, a.id, 0, VEC_PAGES, 3500));
	ASSERT_EQ(0, fill_pages(ctx, b.id, VEC_PAGES - 1 - VEC_TAKEN, 1, 3999));
	e = calloc(VEC_PAGES, sizeof(*e));
	ASSERT_NE(NULL, e);
	for (i = 0; i < VEC_PAGES; i++)	/* reversed */
		entry_set(&e[i], PG(b.addr, VEC_PAGES - 1 - i), PG(a.addr, i), ps);
	ret = raw_move_vec(ctx, e, VEC_PAGES, 0, &moved);
	EXPECT_EQ(-1, ret);
	EXPECT_EQ(EAGAIN, errno);
	for (i = 0; i < VEC_PAGES; i++)
		if (e[i].result != (i == VEC_TAKEN ? -EEXIST : (int64_t)ps))
			break;
	EXPECT_EQ(VEC_PAGES, i) TH_LOG("entry %u: %lld", i,
				       (long long)(i < VEC_PAGES ? e[i].result : 0));
	EXPECT_EQ((VEC_PAGES - 1) * ps, moved);
	EXPECT_RESIDENT(a.fd, 1);
	EXPECT_RESIDENT(b.fd, VEC_PAGES);
	for (i = 0; i < VEC_PAGES; i++)
		if (i != VEC_TAKEN)
			EXPECT_PAGES(b.addr, VEC_PAGES - 1 - i, 1, 3500 + i);
	EXPECT_PAGES(b.addr, VEC_PAGES - 1 - VEC_TAKEN, 1, 3999);
	EXPECT_PAGES(a.addr, VEC_TAKEN, 1, 3500 + VEC_TAKEN);
	free(e);
	uffdx_region_unmap(&a);
	uffdx_region_unmap(&b);
	close(ctx);
}

/* Exactly UFFDX_MOVE_VEC_MAX entries are fine: all holes, with ALLOW_SRC_HOLES. */
TEST(vec_max_entries_accepted)
{
	struct uffdx_region_map a, b;
	struct uffdx_move_entry *e;
	const unsigned int n = UFFDX_MOVE_VEC_MAX;
	uint64_t moved = 0;
	unsigned int i;
	int ctx, ret;

	SKIP_IF_NO_MOVE();
	ctx = ctx_open(MOVE_FEATURES, 0);
	ASSERT_LE(0, ctx);
	ASSERT_EQ(0, uffdx_region_map(ctx, n * ps, 0, &a));
	ASSERT_EQ(0, uffdx_region_map(ctx, n * ps, 0, &b));
	ASSERT_EQ(0, fill_pages(ctx, a.id, n - 1, 1, 3300));	/* the last one is real */
	e = calloc(n, sizeof(*e));
	ASSERT_NE(NULL, e);
	for (i = 0; i < n; i++)
		entry_set(&e[i], PG(b.addr, n - 1 - i), PG(a.addr, i), ps);
	ret = raw_move_vec(ctx, e, n, UFFDX_MOVE_ALLOW_SRC_HOLES, &moved);
	EXPECT_EQ(0, ret) TH_LOG("MOVE_VEC of %u: %s", n, strerror(errno));
	EXPECT_EQ((uint64_t)n * ps, moved);
	for (i = 0; i < n; i++)
		if (e[i].result != (int64_t)ps)
			break;
	EXPECT_EQ(n, i) TH_LOG("entry %u: %lld", i, (long long)(i < n ? e[i].result : 0));
	EXPECT_RESIDENT(a.fd, 0);
	EXPECT_RESIDENT(b.fd, 1);
	EXPECT_PAGES(b.addr, 0, 1, 3300);
	free(e);
	uffdx_region_unmap(&a);
	uffdx_region_unmap(&b);
	close(ctx);
}

/* ---- 10. 2 MiB ----------------------------------------------------------------- */

static void log_smaps(struct __test_metadata *_metadata, const void *addr)
{
	static const char *const keys[] = {
		"Rss:", "AnonHugePages:", "FilePmdMapped:", "ShmemPmdMapped:", "THPeligible:",
	};
	char line[512];
	FILE *f = fopen("/proc/self/smaps", "r");
	int in = 0;
	unsigned int i;

	if (!f) {
		TH_LOG("smaps: %s", strerror(errno));
		return;
	}
	while (fgets(line, sizeof(line), f)) {
		unsigned long lo, hi;

		line[strcspn(line, "\n")] = 0;
		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2) {
			in = lo == (uintptr_t)addr;
			if (in)
				TH_LOG("smaps of the destination: %s", line);
			continue;
		}
		if (!in)
			continue;
		for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
			if (!strncmp(line, keys[i], strlen(keys[i])))
				TH_LOG("  %s", line);
	}
	fclose(f);
}

#define HP_PAGES 512
#define HP_SIZE (HP_PAGES * ps)

TEST(two_mib_in_one_call)
{
	struct uffdx_region_map a, b;
	uint8_t *am, *bm, *data;
	uint64_t *pfn_a, *pm;
	int64_t res = 0;
	int ctx, ret, root_pfns;
	size_t i, absent = 0, differ = 0;

	SKIP_IF_NO_MOVE();
	ctx = ctx_open(MOVE_FEATURES, 0);
	ASSERT_LE(0, ctx);
	/* 4 MiB regions, mapped at 2 MiB aligned addresses */
	ASSERT_LE(0, a.fd = uffdx_region_create(ctx, 2 * HP_SIZE, 0, &a.id));
	ASSERT_LE(0, b.fd = uffdx_region_create(ctx, 2 * HP_SIZE, 0, &b.id));
	am = map_aligned(a.fd, 2 * HP_SIZE, HP_SIZE, 0);
	bm = map_aligned(b.fd, 2 * HP_SIZE, HP_SIZE, 0);
	ASSERT_NE(MAP_FAILED, am);
	ASSERT_NE(MAP_FAILED, bm);
	pfn_a = calloc(HP_PAGES, sizeof(*pfn_a));
	pm = calloc(HP_PAGES, sizeof(*pm));
	data = malloc(HP_SIZE);
	ASSERT_TRUE(pfn_a && pm && data);

	/* the second 2 MiB of A */
	for (i = 0; i < HP_PAGES; i++)
		fill_pattern(data + i * ps, ps, 4000 + i);
	ASSERT_EQ(0, uffdx_copy(ctx, a.id, HP_SIZE, data, HP_SIZE, 0, &res));
	touch(am + HP_SIZE, HP_PAGES);
	ASSERT_EQ(0, pagemap_read(am + HP_SIZE, HP_PAGES, pfn_a));
	root_pfns = getuid() == 0 && PM_PFN(pfn_a[0]) != 0;
	for (i = 0; i < HP_PAGES; i++)
		pfn_a[i] = PM_PFN(pfn_a[i]);

	/* to the first 2 MiB of B, one call */
	ret = raw_move_addr(ctx, bm, am + HP_SIZE, HP_SIZE, 0, &res);
	EXPECT_MOVED(ret, res, HP_SIZE);
	ASSERT_EQ(0, pagemap_read(bm, HP_PAGES, pm));
	for (i = 0; i < HP_PAGES; i++) {
		if (!(pm[i] & PM_PRESENT))
			absent++;
		else if (root_pfns && PM_PFN(pm[i]) != pfn_a[i])
			differ++;
	}
	EXPECT_EQ(0, absent) TH_LOG("%zu of %d destination pages not mapped on return",
				    absent, HP_PAGES);
	if (root_pfns) {
		EXPECT_EQ(0, differ) TH_LOG("%zu of %d pages have another PFN: copied", differ,
					    HP_PAGES);
	} else {
		TH_LOG("PFNs not readable: zero-copy not checked");
	}
	EXPECT_RESIDENT(a.fd, 0);
	EXPECT_RESIDENT(b.fd, HP_PAGES);
	EXPECT_PAGES(bm, 0, HP_PAGES, 4000);
	log_smaps(_metadata, bm);

	/* and back, region form, to 2 MiB aligned offset 0 of A */
	ret = raw_move(ctx, a.id, 0, b.id, 0, HP_SIZE, 0, &res);
	EXPECT_MOVED(ret, res, HP_SIZE);
	EXPECT_PAGES(am, 0, HP_PAGES, 4000);
	if (root_pfns) {
		ASSERT_EQ(0, pagemap_read(am, HP_PAGES, pm));
		for (differ = 0, i = 0; i < HP_PAGES; i++)
			differ += PM_PFN(pm[i]) != pfn_a[i];
		EXPECT_EQ(0, differ);
	}
	EXPECT_ZERO_PAGES(bm, 0, 16);
	free(data);
	free(pm);
	free(pfn_a);
	munmap(am, 2 * HP_SIZE);
	munmap(bm, 2 * HP_SIZE);
	close(a.fd);
	close(b.fd);
	close(ctx);
}

/* ---- 11. TLB coherence ---------------------------------------------------------- */

/*
 * The main thread moves page k (of TLB_NP) back and forth between regions X
 * and Y with MOVE_ADDR, stamping it first.  seq is odd while it works
 * (restamp, DISCARD of the zero page readers left at the destination, the
 * move) and even once the move has returned and (k, in_y, stamp) say where
 * the page is.  A reader that reads seq s (even), then both places of page
 * k, then seq s again, read both entirely after move s returned and before
 * the next change: the destination must show the stamp, the source (an
 * unarmed hole) zeroes.  Anything else is a stale TLB entry or PTE.
 */
#define TLB_NP		2
#define TLB_ITERS	200

struct tlb {
	uint8_t *x, *y;
	uint64_t seq;
	uint64_t k, stamp;
	int in_y;
	int stop;
	unsigned long checks, iter_checked;
	pthread_mutex_t lock;
	int errors;
	char first[256];
};

static void tlb_fail(struct tlb *t, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&t->lock);
	if (!t->errors++) {
		va_start(ap, fmt);
		vsnprintf(t->first, sizeof(t->first), fmt, ap);
		va_end(ap);
	}
	pthread_mutex_unlock(&t->lock);
}

static void *tlb_reader(void *p)
{
	struct tlb *t = p;
	uint64_t last = 0;
	int repeats = 0;

	while (!__atomic_load_n(&t->stop, __ATOMIC_ACQUIRE)) {
		uint64_t s1 = __atomic_load_n(&t->seq, __ATOMIC_ACQUIRE), s2;
		uint64_t k, stamp, d0, d1, s0, sl;
		const volatile uint64_t *dst, *src;
		int in_y;

		if (!s1 || (s1 & 1) || (s1 == last && repeats >= 4)) {
			sched_yield();
			continue;
		}
		k = __atomic_load_n(&t->k, __ATOMIC_ACQUIRE);
		stamp = __atomic_load_n(&t->stamp, __ATOMIC_ACQUIRE);
		in_y = __atomic_load_n(&t->in_y, __ATOMIC_ACQUIRE);
		dst = (const volatile uint64_t *)PG(in_y ? t->y : t->x, k);
		src = (const volatile uint64_t *)PG(in_y ? t->x : t->y, k);
		d0 = dst[0];
		s0 = src[0];
		d1 = dst[ps / 8 - 1];
		sl = src[ps / 8 - 1];
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
		s2 = __atomic_load_n(&t->seq, __ATOMIC_ACQUIRE);
		if (s2 != s1)
			continue;	/* the main thread moved on meanwhile */
		repeats = s1 == last ? repeats + 1 : 1;
		last = s1;
		if (d0 != stamp || d1 != stamp)
			tlb_fail(t, "seq %llu: page %llu at its new place reads 0x%llx/0x%llx, stamp 0x%llx",
				 (unsigned long long)s1, (unsigned long long)k,
				 (unsigned long long)d0, (unsigned long long)d1,
				 (unsigned long long)stamp);
		if (s0 || sl)
			tlb_fail(t, "seq %llu: page %llu at its old place reads 0x%llx/0x%llx after the move returned (stamp 0x%llx)",
				 (unsigned long long)s1, (unsigned long long)k,
				 (unsigned long long)s0, (unsigned long long)sl,
				 (unsigned long long)stamp);
		__atomic_add_fetch(&t->checks, 1, __ATOMIC_RELAXED);
		__atomic_store_n(&t->iter_checked, s1, __ATOMIC_RELEASE);
	}
	return NULL;
}

static uint64_t tlb_stamp(unsigned int iter, unsigned int k)
{
	return 0x544c420000000000ull | ((uint64_t)iter << 8) | k;
}

TEST(tlb_coherence_move_addr)
{
	struct uffdx_region_map x, y;
	int where[TLB_NP] = { 0 };
	struct tlb *t;
	pthread_t rd[2];
	unsigned long retries = 0, unchecked = 0;
	unsigned int iter, k;
	int ctx, ret, i;
	int64_t res;

	SKIP_IF_NO_MOVE();
	t = calloc(1, sizeof(*t));
	ASSERT_NE(NULL, t);
	pthread_mutex_init(&t->lock, NULL);
	ctx = ctx_open(MOVE_FEATURES, 0);
	ASSERT_LE(0, ctx);
	ASSERT_EQ(0, uffdx_region_map(ctx, TLB_NP * ps, 0, &x));
	ASSERT_EQ(0, uffdx_region_map(ctx, TLB_NP * ps, 0, &y));
	t->x = x.addr;
	t->y = y.addr;
	for (k = 0; k < TLB_NP; k++)
		stamp_page(PG(x.addr, k), tlb_stamp(0, k));	/* zero-fill, then stamp */
	for (i = 0; i < 2; i++)
		ASSERT_EQ(0, pthread_create(&rd[i], NULL, tlb_reader, t));

	for (iter = 0; iter < TLB_ITERS && !t->errors; iter++) {
		uint64_t stamp, end;
		uint8_t *src, *dst;
		uint64_t dst_id;
		unsigned int tries;

		k = iter % TLB_NP;
		src = PG(where[k] ? y.addr : x.addr, k);
		dst = PG(where[k] ? x.addr : y.addr, k);
		dst_id = where[k] ? x.id : y.id;
		stamp = tlb_stamp(iter + 1, k);
		__atomic_store_n(&t->seq, 2 * (uint64_t)iter + 1, __ATOMIC_SEQ_CST);
		stamp_page(src, stamp);
		for (tries = 0;; tries++) {
			/* the zero page a reader left at the destination goes first */
			ret = raw_range(ctx, UFFDX_IOC_DISCARD, dst_id, k * ps, ps, NULL, 0, &res);
			if (ret) {
				tlb_fail(t, "DISCARD: %s", strerror(errno));
				break;
			}
			ret = raw_move_addr(ctx, dst, src, ps, 0, &res);
			if (!ret || errno != EEXIST || tries >= 1000)
				break;
			retries++;	/* a late reader zero-filled it again */
		}
		if (ret) {
			tlb_fail(t, "iteration %u: MOVE_ADDR: %s (result %lld)", iter,
				 strerror(errno), (long long)res);
			break;
		}
		where[k] = !where[k];
		__atomic_store_n(&t->k, k, __ATOMIC_RELEASE);
		__atomic_store_n(&t->stamp, stamp, __ATOMIC_RELEASE);
		__atomic_store_n(&t->in_y, where[k], __ATOMIC_RELEASE);
		__atomic_store_n(&t->seq, 2 * (uint64_t)iter + 2, __ATOMIC_SEQ_CST);
		/* let a reader look at this state (bounded: the check is what counts) */
		end = now_ns() + 50 * 1000000ull;
		while (__atomic_load_n(&t->iter_checked, __ATOMIC_ACQUIRE) != 2 * (uint64_t)iter + 2) {
			if (now_ns() > end) {
				unchecked++;
				break;
			}
			sched_yield();
		}
	}
	__atomic_store_n(&t->stop, 1, __ATOMIC_RELEASE);
	for (i = 0; i < 2; i++)
		pthread_join(rd[i], NULL);
	TH_LOG("%u moves, %lu conclusive reader checks, %lu states unchecked, %lu re-discards",
	       iter, t->checks, unchecked, retries);
	EXPECT_EQ(0, t->errors) TH_LOG("%d errors; first: %s", t->errors, t->first);
	EXPECT_EQ(TLB_ITERS, iter);
	EXPECT_LT(0, t->checks);
	/* where the pages ended up */
	for (k = 0; k < TLB_NP; k++)
		EXPECT_EQ(tlb_stamp(TLB_ITERS - TLB_NP + k + 1, k),
			  page_stamp(PG(where[k] ? y.addr : x.addr, k)));
	uffdx_region_unmap(&x);
	uffdx_region_unmap(&y);
	close(ctx);
	free(t);
}

/* ---- 12. races ----------------------------------------------------------------- */

#define RP		32	/* pages per race round */

/* What became of a source page. */
enum { ST_NONE, ST_MOVED, ST_GONE, ST_EITHER, ST_STAYED };

struct rerr {
	pthread_mutex_t lock;
	int n;
	char first[256];
};

static void rerr_init(struct rerr *r)
{
	memset(r, 0, sizeof(*r));
	pthread_mutex_init(&r->lock, NULL);
}

static void rerr_add(struct rerr *r, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&r->lock);
	if (!r->n++) {
		va_start(ap, fmt);
		vsnprintf(r->first, sizeof(r->first), fmt, ap);
		va_end(ap);
	}
	pthread_mutex_unlock(&r->lock);
}

#define EXPECT_NO_RERR(r) \
	EXPECT_EQ(0, (r)->n) TH_LOG("%d errors; first: %s", (r)->n, (r)->first)

static uint64_t race_stamp(unsigned int round, unsigned int k)
{
	return 0x5241434500000000ull | ((uint64_t)round << 16) | k;
}

static uint64_t copy_stamp(unsigned int round, unsigned int k)
{
	return 0x434f505900000000ull | ((uint64_t)round << 16) | k;
}

static uint64_t rng_next(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* Wait (bounded) until a thread has made its first step: the race starts then. */
static void wait_nonzero(const unsigned long *v)
{
	uint64_t end = now_ns() + (uint64_t)WAIT_MS * 1000000ull;

	while (!__atomic_load_n(v, __ATOMIC_ACQUIRE) && now_ns() < end)
		sched_yield();
}

/* Empty both regions of the fixture and stamp A's first RP pages for round. */
static int race_reset(FIXTURE_DATA(mv) *self, unsigned int round)
{
	int ret;

	ret = uffdx_discard(self->ctx, self->a.id, 0, NPAGES * ps, NULL);
	if (!ret)
		ret = uffdx_discard(self->ctx, self->b.id, 0, NPAGES * ps, NULL);
	if (!ret)
		ret = fill_stamps(self->ctx, self->a.id, 0, RP, race_stamp, round);
	return ret;
}

/*
 * Move A[k, k + len) to B at the same offset (by region id, or by address
 * with addr) and record what became of each page.  A page at which the
 * move stopped with stop_errno becomes stop_state.  Returns the number of
 * pages decided.
 */
static unsigned int race_move(struct rerr *err, FIXTURE_DATA(mv) *self, int addr,
			      unsigned int k, unsigned int len, uint32_t mode, int *st,
			      int stop_errno, int stop_state)
{
	int64_t res = SENTINEL;
	unsigned int i, n;
	int ret, e;

	if (addr)
		ret = raw_move_addr(self->ctx, PG(B, k), PG(A, k), len * ps, mode, &res);
	else
		ret = raw_move(self->ctx, self->b.id, k * ps, self->a.id, k * ps, len * ps,
			       mode, &res);
	e = errno;
	if (!ret) {
		if (res != (int64_t)(len * ps))
			rerr_add(err, "move of %u pages at %u: result %lld", len, k, (long long)res);
		for (i = 0; i < len; i++)
			st[k + i] = (mode & UFFDX_MOVE_ALLOW_SRC_HOLES) ? ST_EITHER : ST_MOVED;
		return len;
	}
	if (e == EAGAIN && res > 0 && res < (int64_t)(len * ps) && !(res % (int64_t)ps)) {
		n = (unsigned int)(res / (int64_t)ps);
		for (i = 0; i < n; i++)
			st[k + i] = ST_MOVED;
		st[k + n] = stop_state;
		return n + 1;
	}
	if (e == stop_errno && res == -stop_errno) {
		st[k] = stop_state;
		return 1;
	}
	rerr_add(err, "move of %u pages at %u: %s, result %lld", len, k, strerror(e),
		 (long long)res);
	st[k] = ST_NONE;
	return 1;
}

/* -- move vs DISCARD of the source -- */

struct discarder {
	int ctx;
	uint64_t id;
	int stop;
	unsigned long n;
	unsigned long progress;	/* moves issued by the main thread */
	struct rerr *err;
};

static void *discarder_fn(void *p)
{
	struct discarder *d = p;
	uint64_t rng = now_ns() | 1;

	while (!__atomic_load_n(&d->stop, __ATOMIC_ACQUIRE)) {
		unsigned int k = (unsigned int)(rng_next(&rng) % RP);
		unsigned int len = 1 + (unsigned int)(rng_next(&rng) % 3);
		int64_t res;

		if (k + len > RP)
			len = RP - k;
		/* about one discard per move, so that neither side runs away */
		while (__atomic_load_n(&d->n, __ATOMIC_ACQUIRE) >
		       __atomic_load_n(&d->progress, __ATOMIC_ACQUIRE) &&
		       !__atomic_load_n(&d->stop, __ATOMIC_ACQUIRE))
			sched_yield();
		if (raw_range(d->ctx, UFFDX_IOC_DISCARD, d->id, k * ps, len * ps, NULL, 0, &res))
			rerr_add(d->err, "DISCARD: %s", strerror(errno));
		__atomic_add_fetch(&d->n, 1, __ATOMIC_RELEASE);
		if (d->n % 4 == 0)
			sched_yield();
	}
	return NULL;
}

TEST_F(mv, race_move_vs_discard_of_source)
{
	int st[RP];
	struct discarder d;
	struct rerr err;
	unsigned int round, k;
	unsigned long moved = 0, gone = 0;
	pthread_t th;

	rerr_init(&err);
	for (round = 0; round < 16 && !err.n; round++) {
		int allow = round & 1;
		long long ra, rb;
		unsigned int nb = 0;

		ASSERT_EQ(0, race_reset(self, round));
		memset(&d, 0, sizeof(d));
		d.ctx = self->ctx;
		d.id = self->a.id;
		d.err = &err;
		for (k = 0; k < RP; k++)
			st[k] = ST_NONE;
		ASSERT_EQ(0, pthread_create(&th, NULL, discarder_fn, &d));
		wait_nonzero(&d.n);
		for (k = 0; k < RP;) {
			unsigned int len = RP - k < 4 ? RP - k : 4;

			k += race_move(&err, self, round & 2, k, len,
				       allow ? UFFDX_MOVE_ALLOW_SRC_HOLES : 0, st, ENOENT, ST_GONE);
			__atomic_add_fetch(&d.progress, 1, __ATOMIC_RELEASE);
		}
		__atomic_store_n(&d.stop, 1, __ATOMIC_RELEASE);
		pthread_join(th, NULL);

		/* quiet: every page is in B (moved) or nowhere (discarded) */
		ra = resident(self->a.fd);
		rb = resident(self->b.fd);
		EXPECT_EQ(0, ra) TH_LOG("round %u: A still holds pages", round);
		for (k = 0; k < RP; k++) {
			uint64_t want = race_stamp(round, k);
			uint64_t sb = page_stamp(PG(B, k)), sa = page_stamp(PG(A, k));

			if (sa)
				rerr_add(&err, "round %u page %u: source reads 0x%llx", round, k,
					 (unsigned long long)sa);
			if ((st[k] == ST_MOVED && sb != want) || (st[k] == ST_GONE && sb) ||
			    (st[k] == ST_EITHER && sb && sb != want) || st[k] == ST_NONE)
				rerr_add(&err, "round %u page %u (state %d): destination reads 0x%llx",
					 round, k, st[k], (unsigned long long)sb);
			nb += sb == want;
			moved += st[k] == ST_MOVED;
			gone += st[k] == ST_GONE;
		}
		EXPECT_EQ(nb, rb) TH_LOG("round %u: resident of B", round);
	}
	TH_LOG("%lu pages moved, %lu found discarded, %lu discards in the last round",
	       moved, gone, d.n);
	EXPECT_LT(0, gone) TH_LOG("the discards never met the moves");
	EXPECT_NO_RERR(&err);
}

/* -- move vs COPY into the destination -- */

struct copier {
	int ctx;
	uint64_t id;
	unsigned int round;
	unsigned long started;
	unsigned long progress;	/* pages the main thread has decided */
	int res[RP];
	struct rerr *err;
};

static void *copier_fn(void *p)
{
	struct copier *c = p;
	uint64_t rng = now_ns() | 1;
	unsigned int order[RP], i, j, t;
	void *buf = malloc(ps);

	if (!buf) {
		rerr_add(c->err, "malloc");
		return NULL;
	}
	for (i = 0; i < RP; i++)
		order[i] = i;
	for (i = RP - 1; i > 0; i--) {
		j = (unsigned int)(rng_next(&rng) % (i + 1));
		t = order[i];
		order[i] = order[j];
		order[j] = t;
	}
	for (i = 0; i < RP; i++) {
		unsigned int k = order[i];
		int64_t res;

		stamp_page(buf, copy_stamp(c->round, k));
		__atomic_store_n(&c->started, 1, __ATOMIC_RELEASE);
		/* keep pace with the mover, so that neither side runs away */
		{
			uint64_t end = now_ns() + (uint64_t)WAIT_MS * 1000000ull;

			while (__atomic_load_n(&c->progress, __ATOMIC_ACQUIRE) < i &&
			       now_ns() < end)
				sched_yield();
		}
		if (raw_range(c->ctx, UFFDX_IOC_COPY, c->id, k * ps, ps, buf, 0, &res)) {
			c->res[k] = errno;
			if (errno != EEXIST)
				rerr_add(c->err, "COPY page %u: %s", k, strerror(errno));
		} else {
			c->res[k] = 0;
		}
	}
	free(buf);
	return NULL;
}

TEST_F(mv, race_move_vs_copy_into_destination)
{
	int st[RP];
	struct copier c;
	struct rerr err;
	unsigned int round, k;
	unsigned long moved = 0, copied = 0;
	pthread_t th;

	rerr_init(&err);
	for (round = 0; round < 16 && !err.n; round++) {
		unsigned int nstay = 0;
		long long ra, rb;

		ASSERT_EQ(0, race_reset(self, round));
		memset(&c, 0, sizeof(c));
		c.ctx = self->ctx;
		c.id = self->b.id;
		c.round = round;
		c.err = &err;
		for (k = 0; k < RP; k++)
			st[k] = ST_NONE;
		ASSERT_EQ(0, pthread_create(&th, NULL, copier_fn, &c));
		wait_nonzero(&c.started);
		for (k = 0; k < RP;) {
			unsigned int len = round & 1 ? (RP - k < 4 ? RP - k : 4) : 1;

			k += race_move(&err, self, round & 2, k, len, 0, st, EEXIST, ST_STAYED);
			__atomic_store_n(&c.progress, k, __ATOMIC_RELEASE);
		}
		pthread_join(th, NULL);

		ra = resident(self->a.fd);
		rb = resident(self->b.fd);
		for (k = 0; k < RP; k++)
			nstay += st[k] == ST_STAYED;
		EXPECT_EQ(nstay, ra) TH_LOG("round %u", round);
		EXPECT_EQ(RP, rb) TH_LOG("round %u", round);
		for (k = 0; k < RP; k++) {
			uint64_t sb = page_stamp(PG(B, k)), sa = page_stamp(PG(A, k));

			if (st[k] == ST_MOVED) {
				moved++;
				if (c.res[k] != EEXIST || sb != race_stamp(round, k) || sa)
					rerr_add(&err, "round %u page %u moved: COPY %s, B 0x%llx, A 0x%llx",
						 round, k, strerror(c.res[k]),
						 (unsigned long long)sb, (unsigned long long)sa);
			} else if (st[k] == ST_STAYED) {
				copied++;
				if (c.res[k] || sb != copy_stamp(round, k) || sa != race_stamp(round, k))
					rerr_add(&err, "round %u page %u not moved: COPY %s, B 0x%llx, A 0x%llx",
						 round, k, strerror(c.res[k]),
						 (unsigned long long)sb, (unsigned long long)sa);
			} else {
				rerr_add(&err, "round %u page %u: no outcome", round, k);
			}
		}
	}
	TH_LOG("%lu pages moved, %lu destinations won by COPY", moved, copied);
	EXPECT_LT(0, moved);
	EXPECT_LT(0, copied);
	EXPECT_NO_RERR(&err);
}

/* -- MOVE_ADDR vs munmap of the destination mapping -- */

struct remapper {
	uint8_t *at;
	size_t len;
	int fd;
	int stop;
	unsigned long cycles;
	struct rerr *err;
};

static void *remapper_fn(void *p)
{
	struct remapper *r = p;

	while (!__atomic_load_n(&r->stop, __ATOMIC_ACQUIRE)) {
		void *m;

		munmap(r->at, r->len);
		m = mmap(r->at, r->len, PROT_READ | PROT_WRITE,
			 MAP_SHARED | MAP_FIXED_NOREPLACE, r->fd, 0);
		if (m != r->at) {
			rerr_add(r->err, "remap: %s", m == MAP_FAILED ? strerror(errno) : "moved");
			break;
		}
		__atomic_add_fetch(&r->cycles, 1, __ATOMIC_RELAXED);
		sched_yield();
	}
	return NULL;
}

TEST_F(mv, race_move_addr_vs_munmap_of_destination)
{
	int st[RP];
	struct remapper r;
	struct rerr err;
	unsigned int round, k;
	unsigned long einval = 0, moved = 0;
	pthread_t th;

	rerr_init(&err);
	memset(&r, 0, sizeof(r));
	r.len = RP * ps;
	r.fd = self->b.fd;
	r.err = &err;
	r.at = mmap(NULL, r.len, PROT_READ | PROT_WRITE, MAP_SHARED, self->b.fd, 0);
	ASSERT_NE(MAP_FAILED, r.at);
	ASSERT_EQ(0, pthread_create(&th, NULL, remapper_fn, &r));
	for (round = 0; round < 8 && !err.n; round++) {
		unsigned int nmoved = 0;

		ASSERT_EQ(0, race_reset(self, round));
		for (k = 0; k < RP; k++) {
			unsigned long c0 = __atomic_load_n(&r.cycles, __ATOMIC_ACQUIRE);
			uint64_t end;
			unsigned int tries;

			st[k] = ST_STAYED;
			end = now_ns() + (uint64_t)WAIT_MS * 1000000ull;
			for (tries = 0; now_ns() < end; tries++) {
				int64_t res = SENTINEL;
				int ret = raw_move_addr(self->ctx, PG(r.at, k), PG(A, k), ps, 0, &res);

				if (!ret && res == (int64_t)ps) {
					st[k] = ST_MOVED;
					/* one remap per page at least (bounded) */
					end = now_ns() + (uint64_t)WAIT_MS * 1000000ull;
					while (__atomic_load_n(&r.cycles, __ATOMIC_ACQUIRE) == c0 &&
					       now_ns() < end)
						sched_yield();
					break;
				}
				if (ret && errno == EINVAL && res == SENTINEL) {
					einval++;	/* the destination was not mapped */
					if (tries % 64 == 63)
						sleep_ms(1);	/* let the remap finish */
					else
						sched_yield();
					continue;
				}
				rerr_add(&err, "page %u: ret %d, %s, result %lld", k, ret,
					 strerror(errno), (long long)res);
				break;
			}
		}
		/* check through the fixture's mapping of B, which stays */
		for (k = 0; k < RP; k++)
			nmoved += st[k] == ST_MOVED;
		EXPECT_EQ(nmoved, resident(self->b.fd));
		EXPECT_EQ(RP - nmoved, resident(self->a.fd));
		for (k = 0; k < RP; k++) {
			uint64_t want = race_stamp(round, k);
			uint64_t sb = page_stamp(PG(B, k)), sa = page_stamp(PG(A, k));

			if (st[k] == ST_MOVED ? (sb != want || sa) : (sa != want || sb))
				rerr_add(&err, "round %u page %u (state %d): B 0x%llx, A 0x%llx",
					 round, k, st[k], (unsigned long long)sb,
					 (unsigned long long)sa);
		}
		moved += nmoved;
	}
	__atomic_store_n(&r.stop, 1, __ATOMIC_RELEASE);
	pthread_join(th, NULL);
	TH_LOG("%lu pages moved, %lu EINVAL (unmapped destination), %lu remaps",
	       moved, einval, r.cycles);
	EXPECT_LT(0, moved);
	EXPECT_NO_RERR(&err);
	EXPECT_LT(0, r.cycles);
	munmap(r.at, r.len);
}

/* -- move vs fork: the children read both places -- */

/* Shared (MAP_SHARED) between the test, its forker thread and the children. */
struct forker {
	uint8_t *a, *b;
	unsigned int round;
	unsigned int progress;	/* pages [0, progress) moved: their moves returned */
	int phase;		/* 1 while the main thread moves */
	int busy;		/* a child may be reading */
	int stop;
	unsigned long forks;
	struct rerr err;
};

/*
 * A page read while it may be moved away: all stamp, all zero, or the
 * stamp up to some word and zeroes after it (the page left mid-read).
 */
static int stamp_or_vanishing(const void *p, uint64_t want)
{
	const volatile uint64_t *w = p;
	size_t i = 0;

	while (i < ps / 8 && w[i] == want)
		i++;
	while (i < ps / 8 && w[i] == 0)
		i++;
	return i == ps / 8;
}

/*
 * In the child, with the PTEs of the source inherited from the parent:
 * every page whose move has returned (progress, read live) is a hole at
 * the source and the data at the destination; any other page is at the
 * source or, if being moved right now, a hole there.  It reads the
 * destination only of moved pages: reading a hole there would fill it.
 */
static int fork_child_check(struct forker *f)
{
	unsigned int round = f->round, pass, k;

	for (pass = 0; pass < 4; pass++) {
		unsigned int p = __atomic_load_n(&f->progress, __ATOMIC_ACQUIRE);

		for (k = 0; k < RP; k++) {
			uint64_t want = race_stamp(round, k);

			if (k < p) {
				if (page_stamp(PG(f->a, k)))
					return 1;
				if (page_stamp(PG(f->b, k)) != want)
					return 2;
			} else if (!stamp_or_vanishing(PG(f->a, k), want)) {
				return 3;
			}
		}
	}
	return 0;
}

static void *forker_fn(void *p)
{
	struct forker *f = p;

	while (!__atomic_load_n(&f->stop, __ATOMIC_ACQUIRE)) {
		int status = 0;
		pid_t pid;

		__atomic_store_n(&f->busy, 1, __ATOMIC_SEQ_CST);
		if (!__atomic_load_n(&f->phase, __ATOMIC_SEQ_CST)) {
			__atomic_store_n(&f->busy, 0, __ATOMIC_SEQ_CST);
			sched_yield();
			continue;
		}
		pid = fork();
		if (pid == 0)
			_exit(fork_child_check(f));
		if (pid < 0) {
			rerr_add(&f->err, "fork: %s", strerror(errno));
		} else if (wait_child(pid, &status, 6 * WAIT_MS)) {
			/* 30 s: a busy debug guest is slow, not stuck */
			rerr_add(&f->err, "child hangs");
			kill_child(pid, NULL);
		} else if (!WIFEXITED(status) || WEXITSTATUS(status)) {
			rerr_add(&f->err, "child of round %u: %s %d (1: the source shows a page whose move returned, 2: its destination does not, 3: wrong data)",
				 f->round, WIFEXITED(status) ? "exit" : "signal",
				 WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
		}
		__atomic_add_fetch(&f->forks, 1, __ATOMIC_RELEASE);
		__atomic_store_n(&f->busy, 0, __ATOMIC_SEQ_CST);
	}
	return NULL;
}

TEST_F(mv, race_move_vs_fork)
{
	struct forker *f;
	unsigned int round, k;
	unsigned long moved = 0;
	pthread_t th;
	int st[RP], busy;

	f = mmap(NULL, sizeof(*f), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, f);
	memset(f, 0, sizeof(*f));
	rerr_init(&f->err);
	f->a = A;
	f->b = B;
	fflush(stdout);
	fflush(stderr);
	ASSERT_EQ(0, pthread_create(&th, NULL, forker_fn, f));
	for (round = 0; round < 8 && !f->err.n; round++) {
		unsigned long forks0;
		uint64_t end;
		unsigned int waited = 0;

		ASSERT_EQ(0, race_reset(self, round));
		touch(A, RP);		/* the children inherit these PTEs */
		f->round = round;
		__atomic_store_n(&f->progress, 0, __ATOMIC_RELEASE);
		forks0 = __atomic_load_n(&f->forks, __ATOMIC_ACQUIRE);
		__atomic_store_n(&f->phase, 1, __ATOMIC_SEQ_CST);
		for (k = 0; k < RP; k++)
			st[k] = ST_NONE;
		for (k = 0; k < RP;) {
			unsigned int n = race_move(&f->err, self, 1, k, round & 1 ? 4 : 1, 0, st,
						   EEXIST, ST_STAYED);

			k += n;
			__atomic_store_n(&f->progress, k, __ATOMIC_RELEASE);
			/* a child at each quarter of the round, while the moves go on */
			if (k >= (waited + 1) * RP / 4 && waited < 3) {
				end = now_ns() + (uint64_t)WAIT_MS * 1000000ull;
				while (__atomic_load_n(&f->forks, __ATOMIC_ACQUIRE) == forks0 &&
				       now_ns() < end)
					sched_yield();
				waited++;
				forks0 = __atomic_load_n(&f->forks, __ATOMIC_ACQUIRE);
			}
		}
		/* no child may read while the next round is set up */
		__atomic_store_n(&f->phase, 0, __ATOMIC_SEQ_CST);
		/*
		 * Once busy reads 0 after phase is 0, the forker backs off
		 * without forking (it sets busy, then reads phase): judge by
		 * the value seen, not by a second read, which may catch the
		 * forker's transient busy = 1 on its way to backing off.
		 */
		end = now_ns() + (uint64_t)12 * WAIT_MS * 1000000ull;
		while ((busy = __atomic_load_n(&f->busy, __ATOMIC_SEQ_CST)) && now_ns() < end)
			sched_yield();
		ASSERT_EQ(0, busy) TH_LOG("forker stuck");
		for (k = 0; k < RP; k++) {
			uint64_t want = race_stamp(round, k);
			uint64_t sb = page_stamp(PG(B, k)), sa = page_stamp(PG(A, k));

			if (st[k] != ST_MOVED || sb != want || sa)
				rerr_add(&f->err, "round %u page %u (state %d): B 0x%llx, A 0x%llx",
					 round, k, st[k], (unsigned long long)sb,
					 (unsigned long long)sa);
			moved += st[k] == ST_MOVED;
		}
	}
	__atomic_store_n(&f->stop, 1, __ATOMIC_RELEASE);
	pthread_join(th, NULL);
	TH_LOG("%lu pages moved, %lu children", moved, f->forks);
	EXPECT_NO_RERR(&f->err);
	EXPECT_LT(0, f->forks);
	munmap(f, sizeof(*f));
}

/* -- move vs close of the source context: region fds keep the regions -- */

struct closer {
	int fd;
	unsigned int *progress;
	unsigned int at;
	unsigned long ready;
	int closed;
};

static void *closer_fn(void *p)
{
	struct closer *c = p;
	uint64_t end = now_ns() + (uint64_t)WAIT_MS * 1000000ull;

	__atomic_store_n(&c->ready, 1, __ATOMIC_RELEASE);
	while (__atomic_load_n(c->progress, __ATOMIC_ACQUIRE) < c->at && now_ns() < end)
		;
	close(c->fd);
	__atomic_store_n(&c->closed, 1, __ATOMIC_RELEASE);
	return NULL;
}

/*
 * The moves of the first half race with the close of the source context;
 * those of the second half all come after it.
 */
TEST_F(mv, race_move_vs_close_of_source_context)
{
	struct rerr err;
	unsigned int round, k;
	unsigned long moved = 0, after_close = 0, failed_after_close = 0;
	int last_errno = 0;

	rerr_init(&err);
	for (round = 0; round < 8 && !err.n; round++) {
		struct uffdx_region_info info;
		struct uffdx_region_map s;
		struct closer c;
		unsigned int progress = 0, nmoved = 0;
		int st[RP], sctx;
		pthread_t th;

		ASSERT_EQ(0, uffdx_discard(self->ctx, self->b.id, 0, NPAGES * ps, NULL));
		sctx = ctx_open(MOVE_FEATURES, 0);
		ASSERT_LE(0, sctx);
		ASSERT_EQ(0, uffdx_region_map(sctx, RP * ps, 0, &s));
		ASSERT_EQ(0, fill_stamps(sctx, s.id, 0, RP, race_stamp, round));
		memset(&c, 0, sizeof(c));
		c.fd = sctx;
		c.progress = &progress;
		c.at = 1 + round * 2;
		ASSERT_EQ(0, pthread_create(&th, NULL, closer_fn, &c));
		wait_nonzero(&c.ready);
		for (k = 0; k < RP; k++) {
			int closed = __atomic_load_n(&c.closed, __ATOMIC_ACQUIRE);
			int64_t res = SENTINEL;
			int ret;

			if (k == RP / 2) {
				pthread_join(th, NULL);
				closed = 1;
			}
			ret = raw_move(self->ctx, self->b.id, k * ps, (uint64_t)s.fd, k * ps, ps,
				       UFFDX_MOVE_SRC_FD, &res);
			st[k] = ret ? ST_STAYED : ST_MOVED;
			if (ret)
				last_errno = errno;
			if (!ret && res != (int64_t)ps)
				rerr_add(&err, "page %u: result %lld", k, (long long)res);
			if (ret && !closed)
				rerr_add(&err, "page %u before the close: %s", k, strerror(errno));
			after_close += closed;
			failed_after_close += closed && ret;
			__atomic_store_n(&progress, k + 1, __ATOMIC_RELEASE);
		}
		ASSERT_EQ(0, uffdx_region_info(s.fd, &info));
		EXPECT_TRUE(info.flags & UFFDX_REGION_OWNER_GONE);
		for (k = 0; k < RP; k++)
			nmoved += st[k] == ST_MOVED;
		/* the fixture's context owns only B's pages now */
		EXPECT_EQ(nmoved, resident(self->b.fd));
		EXPECT_EQ(RP - nmoved, resident(s.fd));
		EXPECT_EQ((long long)nmoved, charged(self->ctx));
		for (k = 0; k < RP; k++) {
			uint64_t want = race_stamp(round, k);
			uint64_t sb = page_stamp(PG(B, k)), sa = page_stamp(PG(s.addr, k));

			if (st[k] == ST_MOVED ? (sb != want || sa) : (sa != want || sb))
				rerr_add(&err, "round %u page %u (state %d): B 0x%llx, source 0x%llx",
					 round, k, st[k], (unsigned long long)sb,
					 (unsigned long long)sa);
		}
		moved += nmoved;
		uffdx_region_unmap(&s);
	}
	TH_LOG("%lu pages moved; %lu moves after the close, %lu of them failed (last: %s)",
	       moved, after_close, failed_after_close, last_errno ? strerror(last_errno) : "-");
	EXPECT_NO_RERR(&err);
}

TEST_HARNESS_MAIN
