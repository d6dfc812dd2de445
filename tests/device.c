// SPDX-License-Identifier: GPL-2.0
/*
 * uffdx simulated-device tests: UFFDX_IOC_DEVICE_CREATE and the ioctls of
 * a device fd (UFFDX_FEATURE_HMM_MIRROR, DEVICE_EXCLUSIVE, DEVICE_MIGRATE),
 * against docs/design.md section 7 and <linux/uffdx.h>.
 *
 *  - DEVICE_CREATE: the fd (O_CLOEXEC), its argument checks, the features
 *    it needs; the device commands' argument checks, each with its errno;
 *  - DEV_READ / DEV_WRITE of process memory and region memory: the data,
 *    the fault counters (a second access of mirrored pages is a hit), the
 *    errnos of unmapped, PROT_NONE and read-only memory, armed and unarmed
 *    holes;
 *  - the mirror's coherence: munmap, mprotect, MADV_DONTNEED, mremap, fork
 *    and COW, DISCARD, COPY, MOVE, WRITEPROTECT each invalidate it (the
 *    counters prove it) and the next device access sees the new state;
 *  - SNAPSHOT's state bytes;
 *  - exclusive access on region memory: CHECK_EXCLUSIVE, revocation by CPU
 *    reads and writes of this and another process, the REVOKED event's
 *    contents, RELEASE, DISCARD (DROPPED), MOVE (EBUSY), two devices
 *    (EBUSY), process memory (EINVAL);
 *  - atomics: FETCH_ADD, CMPXCHG, checked from the CPU; their errnos;
 *  - write protection: async records device writes, sync refuses them,
 *    protection survives a revocation;
 *  - migration to device memory and back: the data, SNAPSHOT, MIGRATED
 *    events for CPU reads, writes and kernel-mode reads, DEV_READ of a
 *    resident page, status bytes, holes (allocated) and armed holes (not),
 *    pool exhaustion, DISCARD;
 *  - lifetime: closing the device, the region, the context in either
 *    order; an fd in another process (EPERM) and after its creator exited;
 *  - a short stress run of device and CPU atomics on the same words.
 *
 * The device library wrappers are not used: every device command is a raw
 * ioctl through dev_cmd() and friends below.  Every wait is bounded.
 */
#include "helpers.h"

#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/userfaultfd.h>

#include "kselftest_harness.h"

#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE	25
#endif

#define NPAGES		16	/* the fixture's region and anonymous buffer */
#define SENTINEL	0x5a5a5a5a5a5a5a5aULL
#define DEV_ALL		(UFFDX_FEATURE_DEVICE_EXCLUSIVE | UFFDX_FEATURE_DEVICE_MIGRATE | \
			 UFFDX_FEATURE_HMM_MIRROR | UFFDX_FEATURE_HMM_EXCLUSIVE | \
			 UFFDX_FEATURE_HMM_MIGRATE)
/* Process memory (hmm.c): only on kernels with CONFIG_DEVICE_PRIVATE. */
#define F_HMM_EXCL	UFFDX_FEATURE_HMM_EXCLUSIVE
#define F_HMM_MIGR	UFFDX_FEATURE_HMM_MIGRATE
#define F_MIRROR	UFFDX_FEATURE_HMM_MIRROR
#define F_EXCL		UFFDX_FEATURE_DEVICE_EXCLUSIVE
#define F_MIGR		UFFDX_FEATURE_DEVICE_MIGRATE
#define POOL_PARAM	UFFDX_PARAM_DIR "/device_pool_pages"

/* The kind of a SNAPSHOT byte: what is there, without READ/WRITE/PMD/PUD. */
#define PROT_KIND(b)	((uint8_t)(b) == UFFDX_DEV_PROT_ERROR ? UFFDX_DEV_PROT_ERROR : \
			 (uint8_t)((b) & 0xf0))
#define PROT_PERM(b)	((uint8_t)((b) & (UFFDX_DEV_PROT_READ | UFFDX_DEV_PROT_WRITE)))
/* Without the mapping-size bits. */
#define PROT_NOSIZE(b)	((uint8_t)(b) == UFFDX_DEV_PROT_ERROR ? UFFDX_DEV_PROT_ERROR : \
			 (uint8_t)((b) & ~(UFFDX_DEV_PROT_PMD | UFFDX_DEV_PROT_PUD)))

#define PG(map, i)	((uint8_t *)(map) + (size_t)(i) * ps)

/* ---- features ---------------------------------------------------------------- */

static uint64_t supported(void)
{
	struct uffdx_api a;

	memset(&a, 0, sizeof(a));
	if (uffdx_query(&a))
		return 0;
	return a.features;
}

/* A context with the defaults, every device feature there is, and extra. */
static uint64_t dev_features(uint64_t extra)
{
	return DEFAULT_FEATURES | extra |
	       (supported() & (DEV_ALL | UFFDX_FEATURE_MOVE | UFFDX_FEATURE_WP |
			       UFFDX_FEATURE_WP_ASYNC));
}

#define SKIP_IF_NO_DEVICE() do {						\
	SKIP_IF_NO_UFFDX();							\
	if (!(supported() & DEV_ALL))						\
		SKIP(return, "the module reports no device feature");		\
} while (0)

/* Inside a TEST_F of the dev fixture: skip unless all of feats are there. */
#define REQUIRE(feats) do {							\
	if ((self->feat & (feats)) != (feats))					\
		SKIP(return, "the module does not report %s (0x%llx)", #feats,	\
		     (unsigned long long)(feats));				\
} while (0)

/* ---- raw device ioctls: ioctl()'s value with errno kept ------------------------ */

static int raw_create(int ctx, struct uffdx_device_create *c)
{
	return ioctl(ctx, UFFDX_IOC_DEVICE_CREATE, c);
}

/* A device on ctx: its fd or -errno. */
static int dev_create(int ctx)
{
	struct uffdx_device_create c;

	memset(&c, 0, sizeof(c));
	c.size = sizeof(c);
	c.fd = -1;
	if (raw_create(ctx, &c))
		return -errno;
	return c.fd;
}

static void cmd_init(struct uffdx_dev_cmd *c, const void *addr, void *ptr, uint64_t npages)
{
	memset(c, 0, sizeof(*c));
	c->size = sizeof(*c);
	c->addr = (uintptr_t)addr;
	c->ptr = (uintptr_t)ptr;
	c->npages = npages;
	c->cpages = c->faults = SENTINEL;
}

/* A device command: 0 or -errno; cpages and faults out when not NULL. */
static int dev_cmd2(int dev, unsigned long nr, const void *addr, void *ptr, uint64_t npages,
		    uint64_t *cpages, uint64_t *faults)
{
	struct uffdx_dev_cmd c;
	int ret;

	cmd_init(&c, addr, ptr, npages);
	ret = ioctl(dev, nr, &c) ? -errno : 0;
	if (cpages)
		*cpages = c.cpages;
	if (faults)
		*faults = c.faults;
	return ret;
}

static int dev_cmd(int dev, unsigned long nr, const void *addr, void *ptr, uint64_t npages)
{
	return dev_cmd2(dev, nr, addr, ptr, npages, NULL, NULL);
}

static int dev_atomic(int dev, uint32_t op, void *addr, uint64_t value, uint64_t expected,
		      uint64_t *old)
{
	struct uffdx_dev_atomic a;
	int ret;

	memset(&a, 0, sizeof(a));
	a.size = sizeof(a);
	a.op = op;
	a.addr = (uintptr_t)addr;
	a.value = value;
	a.expected = expected;
	a.old = a.faults = SENTINEL;
	ret = ioctl(dev, UFFDX_IOC_DEV_ATOMIC, &a) ? -errno : 0;
	if (old)
		*old = a.old;
	return ret;
}

static int dev_stats(int dev, struct uffdx_dev_stats *st)
{
	memset(st, 0, sizeof(*st));
	st->size = sizeof(*st);
	return ioctl(dev, UFFDX_IOC_DEV_STATS, st) ? -errno : 0;
}

static uint64_t inval_total(const struct uffdx_dev_stats *st)
{
	uint64_t n = 0;
	int i;

	for (i = 0; i < UFFDX_DEV_INVAL_NR; i++)
		n += st->invalidations[i];
	return n;
}

/* One SNAPSHOT byte, or 0xee if the command failed. */
static uint8_t snap1(int dev, const void *addr)
{
	uint8_t b = 0xee;

	if (dev_cmd(dev, UFFDX_IOC_DEV_SNAPSHOT, addr, &b, 1))
		return 0xee;
	return b;
}

/* Wait up to timeout_ms for one device event: 1, 0 (none), -errno. */
static int dev_event(int dev, struct uffdx_dev_event *ev, int timeout_ms)
{
	int ret = wait_fd(dev, POLLIN, timeout_ms);
	ssize_t n;

	if (ret <= 0)
		return ret;
	memset(ev, 0xcc, sizeof(*ev));
	n = read(dev, ev, sizeof(*ev));
	if (n < 0)
		return -errno;
	return n == (ssize_t)sizeof(*ev) ? 1 : -EIO;
}

static int set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	return fl < 0 ? -errno : fcntl(fd, F_SETFL, fl | O_NONBLOCK) ? -errno : 0;
}

/* A read() of a device fd that nothing is queued on: -EAGAIN under O_NONBLOCK. */
static int dev_read_nonblock(int dev)
{
	struct uffdx_dev_event ev;
	int fl = fcntl(dev, F_GETFL);
	ssize_t n;
	int err;

	fcntl(dev, F_SETFL, fl | O_NONBLOCK);
	n = read(dev, &ev, sizeof(ev));
	err = errno;
	fcntl(dev, F_SETFL, fl);
	return n < 0 ? -err : (int)n;
}

static void check_dev_event(struct __test_metadata *_metadata, const struct uffdx_dev_event *ev,
			    uint16_t type, const void *addr, uint64_t id, uint64_t off,
			    uint32_t flags, pid_t pid, pid_t tid)
{
	EXPECT_EQ(type, ev->type);
	EXPECT_EQ(0, ev->__pad);
	EXPECT_EQ(flags, ev->flags);
	EXPECT_EQ((uintptr_t)addr, ev->address);
	EXPECT_EQ(id, ev->region_id);
	EXPECT_EQ(off, ev->offset);
	if (pid)
		EXPECT_EQ((uint32_t)pid, ev->pid);
	if (tid)
		EXPECT_EQ((uint32_t)tid, ev->tid);
	EXPECT_EQ(0, ev->reserved[0]);
	EXPECT_EQ(0, ev->reserved[1]);
	EXPECT_EQ(0, ev->reserved[2]);
}

/* Exactly one event of this kind must come, and nothing after it. */
static void expect_dev_event(struct __test_metadata *_metadata, int dev, uint16_t type,
			     const void *addr, uint64_t id, uint64_t off, uint32_t flags,
			     pid_t pid, pid_t tid)
{
	struct uffdx_dev_event ev;

	ASSERT_EQ(1, dev_event(dev, &ev, WAIT_MS))
		TH_LOG("no device event (type %u) for %p", type, addr);
	check_dev_event(_metadata, &ev, type, addr, id, off, flags, pid, tid);
	EXPECT_EQ(-EAGAIN, dev_read_nonblock(dev)) TH_LOG("more than one device event");
}

#define EXPECT_NO_DEV_EVENT(dev) do {						\
	EXPECT_EQ(0, wait_fd(dev, POLLIN, QUIET_MS)) TH_LOG("unexpected device event"); \
	EXPECT_EQ(-EAGAIN, dev_read_nonblock(dev));				\
} while (0)

/* ---- region helpers ------------------------------------------------------------ */

/* COPY pages [first, first + n) of region id with pattern seed + page: 0 or -errno. */
static int fill_pages(int ctx, uint64_t id, size_t first, size_t n, uint64_t seed)
{
	uint8_t *b = malloc(n * ps);
	int64_t res = 0;
	size_t i;
	int ret;

	if (!b)
		return -ENOMEM;
	for (i = 0; i < n; i++)
		fill_pattern(b + i * ps, ps, seed + first + i);
	ret = uffdx_copy(ctx, id, first * ps, b, n * ps, 0, &res);
	free(b);
	if (!ret && res != (int64_t)(n * ps))
		ret = -EIO;
	return ret;
}

/* -1 if pages [first, first + n) of buf hold their patterns, else the first bad page. */
static long bad_page(const uint8_t *buf, size_t first, size_t n, uint64_t seed)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (check_pattern(buf + i * ps, ps, seed + first + i) >= 0)
			return (long)(first + i);
	return -1;
}

static long long resident_pages(int region_fd)
{
	struct uffdx_region_info info;

	memset(&info, 0, sizeof(info));
	if (uffdx_region_info(region_fd, &info))
		return -1;
	return (long long)(info.resident / ps);
}

static int discard(int ctx, uint64_t id, size_t first, size_t n)
{
	int64_t res = 0;
	int ret = uffdx_discard(ctx, id, first * ps, n * ps, &res);

	return ret ? ret : res == (int64_t)(n * ps) ? 0 : -EIO;
}

/* ---- the fixture: a context with every device feature, a region, a device ------ */

FIXTURE(dev) {
	uint64_t feat;
	int ctx, dev;
	struct uffdx_region_map r;
	uint8_t *anon;		/* NPAGES, MAP_PRIVATE | MAP_ANONYMOUS, untouched */
	uint8_t *buf;		/* NPAGES, touched */
};

FIXTURE_SETUP(dev)
{
	int ret;

	self->ctx = self->dev = -1;
	self->r.fd = -1;
	self->r.addr = NULL;
	self->anon = self->buf = NULL;
	SKIP_IF_NO_DEVICE();
	self->feat = supported();
	self->ctx = ctx_open(dev_features(0), 0);
	ASSERT_LE(0, self->ctx) TH_LOG("ctx_open: %s", strerror(-self->ctx));
	ret = uffdx_region_map(self->ctx, NPAGES * ps, 0, &self->r);
	ASSERT_EQ(0, ret) TH_LOG("region: %s", strerror(-ret));
	self->dev = dev_create(self->ctx);
	ASSERT_LE(0, self->dev) TH_LOG("DEVICE_CREATE: %s", strerror(-self->dev));
	self->anon = mmap(NULL, NPAGES * ps, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, self->anon);
	self->buf = mmap(NULL, NPAGES * ps, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, self->buf);
	memset(self->buf, 0x77, NPAGES * ps);
}

FIXTURE_TEARDOWN(dev)
{
	if (self->dev >= 0)
		close(self->dev);
	if (self->ctx >= 0)
		close(self->ctx);
	uffdx_region_unmap(&self->r);
	if (self->anon && self->anon != MAP_FAILED)
		munmap(self->anon, NPAGES * ps);
	if (self->buf && self->buf != MAP_FAILED)
		munmap(self->buf, NPAGES * ps);
}

#define R		(self->r.addr)
#define RID		(self->r.id)
#define DEV(nr, addr, ptr, n)	dev_cmd(self->dev, UFFDX_IOC_DEV_##nr, (addr), (ptr), (n))
#define STATS(st)	ASSERT_EQ(0, dev_stats(self->dev, &(st)))
#define FILL(first, n, seed) \
	ASSERT_EQ(0, fill_pages(self->ctx, RID, (first), (n), (seed)))

/* ---- 1. DEVICE_CREATE and the argument checks --------------------------------------- */

TEST(create_fd_cloexec_and_argument_checks)
{
	struct uffdx_device_create c;
	struct uffdx_api api;
	int ctx, fd, fd2, fl;

	SKIP_IF_NO_DEVICE();
	memset(&api, 0, sizeof(api));
	ctx = uffdx_open_api(dev_features(0), 0, &api);
	ASSERT_LE(0, ctx);
	EXPECT_TRUE(api.ioctls & (1ULL << _UFFDX_DEVICE_CREATE))
		TH_LOG("a device feature does not grant DEVICE_CREATE");

	memset(&c, 0, sizeof(c));
	c.size = sizeof(c);
	c.fd = -1;
	ASSERT_EQ(0, raw_create(ctx, &c)) TH_LOG("%s", strerror(errno));
	fd = c.fd;
	ASSERT_LE(0, fd);
	EXPECT_NE(ctx, fd);
	fl = fcntl(fd, F_GETFD);
	EXPECT_TRUE(fl & FD_CLOEXEC);
	/* several devices per context */
	fd2 = dev_create(ctx);
	EXPECT_LE(0, fd2);
	EXPECT_NE(fd, fd2);

	/* flags, __pad and reserved */
	memset(&c, 0, sizeof(c));
	c.size = sizeof(c);
	c.fd = -7;
	c.flags = 1;
	EXPECT_EQ(-1, raw_create(ctx, &c));
	EXPECT_EQ(EINVAL, errno);
	EXPECT_EQ(-7, c.fd);
	c.flags = 0x80000000U;
	EXPECT_EQ(-1, raw_create(ctx, &c));
	EXPECT_EQ(EINVAL, errno);
	c.flags = 0;
	c.__pad = 1;
	EXPECT_EQ(-1, raw_create(ctx, &c));
	EXPECT_EQ(EINVAL, errno);
	c.__pad = 0;
	c.reserved[0] = 1;
	EXPECT_EQ(-1, raw_create(ctx, &c));
	EXPECT_EQ(EINVAL, errno);
	c.reserved[0] = 0;
	c.reserved[1] = 1ULL << 63;
	EXPECT_EQ(-1, raw_create(ctx, &c));
	EXPECT_EQ(EINVAL, errno);
	EXPECT_EQ(-7, c.fd);

	/* a device fd is not a context: an unknown ioctl is ENOTTY */
	EXPECT_EQ(-1, ioctl(fd, _IOWR(UFFDX_IOC_MAGIC, 0x5f, struct uffdx_dev_cmd), &c));
	EXPECT_EQ(ENOTTY, errno);
	/* nothing queued: not readable, and a short buffer is EINVAL */
	EXPECT_EQ(0, wait_fd(fd, POLLIN, 0));
	EXPECT_EQ(-EAGAIN, dev_read_nonblock(fd));
	{
		char small[32];

		ASSERT_EQ(0, set_nonblock(fd));
		EXPECT_EQ(-1, read(fd, small, sizeof(small)));
		EXPECT_EQ(EINVAL, errno);
	}
	close(fd2);
	close(fd);
	close(ctx);
}

TEST(create_needs_a_device_feature_and_the_api)
{
	struct uffdx_api api;
	int ctx, fd;

	SKIP_IF_NO_DEVICE();
	/* negotiated without a device feature */
	memset(&api, 0, sizeof(api));
	ctx = uffdx_open_api(DEFAULT_FEATURES, 0, &api);
	ASSERT_LE(0, ctx);
	EXPECT_FALSE(api.ioctls & (1ULL << _UFFDX_DEVICE_CREATE));
	EXPECT_EQ(-EINVAL, dev_create(ctx));
	close(ctx);
	/* not negotiated at all */
	ctx = uffdx_open(0);
	ASSERT_LE(0, ctx);
	EXPECT_EQ(-EINVAL, dev_create(ctx));
	close(ctx);
	/* each device feature alone is enough */
	{
		uint64_t f[] = { F_MIRROR, F_EXCL, F_MIGR };
		unsigned int i;

		for (i = 0; i < 3; i++) {
			if (!(supported() & f[i]))
				continue;
			ctx = ctx_open(DEFAULT_FEATURES | f[i], 0);
			ASSERT_LE(0, ctx);
			fd = dev_create(ctx);
			EXPECT_LE(0, fd) TH_LOG("feature 0x%llx alone: %s",
						(unsigned long long)f[i], strerror(-fd));
			if (fd >= 0)
				close(fd);
			close(ctx);
		}
	}
}

/* A device of a context without DEVICE_MIGRATE does not migrate, nor one without
 * DEVICE_EXCLUSIVE take exclusive access. */
TEST(device_ioctls_need_their_features)
{
	struct uffdx_region_map m;
	uint8_t st = 0x33;
	int ctx, dev;

	SKIP_IF_NO_DEVICE();
	if ((supported() & (F_EXCL | F_MIGR)) != (F_EXCL | F_MIGR))
		SKIP(return, "needs DEVICE_EXCLUSIVE and DEVICE_MIGRATE");
	ctx = ctx_open(DEFAULT_FEATURES | F_EXCL, 0);
	ASSERT_LE(0, ctx);
	ASSERT_EQ(0, uffdx_region_map(ctx, 2 * ps, 0, &m));
	ASSERT_EQ(0, fill_pages(ctx, m.id, 0, 2, 5));
	dev = dev_create(ctx);
	ASSERT_LE(0, dev);
	EXPECT_EQ(-EINVAL, dev_cmd(dev, UFFDX_IOC_DEV_MIGRATE_TO_DEV, m.addr, &st, 1));
	EXPECT_EQ(0x33, st);
	EXPECT_EQ(-EINVAL, dev_cmd(dev, UFFDX_IOC_DEV_MIGRATE_TO_SYS, m.addr, NULL, 1));
	EXPECT_EQ(0, dev_cmd(dev, UFFDX_IOC_DEV_EXCLUSIVE, m.addr, NULL, 1));
	close(dev);
	uffdx_region_unmap(&m);
	close(ctx);

	ctx = ctx_open(DEFAULT_FEATURES | F_MIGR, 0);
	ASSERT_LE(0, ctx);
	ASSERT_EQ(0, uffdx_region_map(ctx, 2 * ps, 0, &m));
	ASSERT_EQ(0, fill_pages(ctx, m.id, 0, 2, 5));
	dev = dev_create(ctx);
	ASSERT_LE(0, dev);
	EXPECT_EQ(-EINVAL, dev_cmd(dev, UFFDX_IOC_DEV_EXCLUSIVE, m.addr, NULL, 1));
	EXPECT_EQ(-EINVAL, dev_atomic(dev, UFFDX_DEV_ATOMIC_FETCH_ADD, m.addr, 1, 0, NULL));
	EXPECT_EQ(-1, bad_page(m.addr, 0, 2, 5));
	EXPECT_EQ(0, dev_cmd(dev, UFFDX_IOC_DEV_MIGRATE_TO_DEV, m.addr, &st, 1));
	EXPECT_EQ(1, st);
	close(dev);
	uffdx_region_unmap(&m);
	close(ctx);
}

TEST_F(dev, command_argument_checks)
{
	unsigned long nrs[] = { UFFDX_IOC_DEV_READ, UFFDX_IOC_DEV_WRITE, UFFDX_IOC_DEV_SNAPSHOT,
				UFFDX_IOC_DEV_MIGRATE_TO_DEV, UFFDX_IOC_DEV_MIGRATE_TO_SYS,
				UFFDX_IOC_DEV_EXCLUSIVE, UFFDX_IOC_DEV_CHECK_EXCLUSIVE,
				UFFDX_IOC_DEV_RELEASE };
	struct uffdx_dev_cmd c;
	struct uffdx_dev_stats st;
	unsigned int i;

	FILL(0, 4, 1);
	memcpy(self->anon, "x", 1);
	for (i = 0; i < sizeof(nrs) / sizeof(nrs[0]); i++) {
		unsigned long nr = nrs[i];
		uint8_t *addr = (nr == UFFDX_IOC_DEV_READ || nr == UFFDX_IOC_DEV_WRITE ||
				 nr == UFFDX_IOC_DEV_SNAPSHOT) ? self->anon : R;

		/* unaligned address */
		cmd_init(&c, addr + 8, self->buf, 1);
		EXPECT_EQ(-1, ioctl(self->dev, nr, &c));
		EXPECT_EQ(EINVAL, errno) TH_LOG("cmd 0x%lx: unaligned addr", nr);
		/* npages 0, and too many */
		cmd_init(&c, addr, self->buf, 0);
		EXPECT_EQ(-1, ioctl(self->dev, nr, &c));
		EXPECT_EQ(EINVAL, errno) TH_LOG("cmd 0x%lx: npages 0", nr);
		cmd_init(&c, addr, self->buf, (uint64_t)UFFDX_DEV_MAX_PAGES + 1);
		EXPECT_EQ(-1, ioctl(self->dev, nr, &c));
		EXPECT_EQ(EINVAL, errno) TH_LOG("cmd 0x%lx: npages > MAX", nr);
		cmd_init(&c, addr, self->buf, ~0ULL);
		EXPECT_EQ(-1, ioctl(self->dev, nr, &c));
		EXPECT_EQ(EINVAL, errno) TH_LOG("cmd 0x%lx: npages ~0", nr);
		/* flags, reserved */
		cmd_init(&c, addr, self->buf, 1);
		c.flags = 1;
		EXPECT_EQ(-1, ioctl(self->dev, nr, &c));
		EXPECT_EQ(EINVAL, errno) TH_LOG("cmd 0x%lx: flags", nr);
		cmd_init(&c, addr, self->buf, 1);
		c.reserved[0] = 1;
		EXPECT_EQ(-1, ioctl(self->dev, nr, &c));
		EXPECT_EQ(EINVAL, errno) TH_LOG("cmd 0x%lx: reserved[0]", nr);
		cmd_init(&c, addr, self->buf, 1);
		c.reserved[1] = 1;
		EXPECT_EQ(-1, ioctl(self->dev, nr, &c));
		EXPECT_EQ(EINVAL, errno) TH_LOG("cmd 0x%lx: reserved[1]", nr);
		/* an address range that wraps */
		cmd_init(&c, (void *)(uintptr_t)(~(uint64_t)0 & ~(uint64_t)(ps - 1)), self->buf, 2);
		EXPECT_EQ(-1, ioctl(self->dev, nr, &c));
		EXPECT_TRUE(errno == EINVAL || errno == EFAULT)
			TH_LOG("cmd 0x%lx: wrapping range: %s", nr, strerror(errno));
	}
	/* a larger struct with non-zero unknown bytes: E2BIG; zero ones are fine */
	if (self->feat & F_MIRROR) {
		struct { struct uffdx_dev_cmd c; uint64_t extra; } big;

		cmd_init(&big.c, self->anon, self->buf, 1);
		big.c.size = sizeof(big);
		big.extra = 1;
		EXPECT_EQ(-1, ioctl(self->dev, UFFDX_IOC_DEV_SNAPSHOT, &big));
		EXPECT_EQ(E2BIG, errno);
		big.extra = 0;
		EXPECT_EQ(0, ioctl(self->dev, UFFDX_IOC_DEV_SNAPSHOT, &big))
			TH_LOG("%s", strerror(errno));
	}
	/* STATS: flags */
	memset(&st, 0, sizeof(st));
	st.size = sizeof(st);
	st.flags = 1;
	EXPECT_EQ(-1, ioctl(self->dev, UFFDX_IOC_DEV_STATS, &st));
	EXPECT_EQ(EINVAL, errno);
	/* nothing of the above did anything */
	STATS(st);
	EXPECT_EQ(0, st.faults);
	EXPECT_EQ(0, st.migrated_to_dev);
	EXPECT_EQ(0, st.pool_used);
	if (self->feat & F_MIGR)
		EXPECT_LT(0, st.pool_pages);
	EXPECT_EQ(0, st.events_lost);
	EXPECT_EQ(-1, bad_page(R, 0, 4, 1));
	EXPECT_NO_DEV_EVENT(self->dev);
}

TEST_F(dev, atomic_argument_checks)
{
	struct uffdx_dev_atomic a;
	uint64_t *w = (uint64_t *)PG(R, 1);
	uint64_t old = 0;

	REQUIRE(F_EXCL);
	FILL(0, 2, 10);
	*w = 1000;
	/* misaligned */
	EXPECT_EQ(-EINVAL, dev_atomic(self->dev, UFFDX_DEV_ATOMIC_FETCH_ADD, (uint8_t *)w + 4,
				      1, 0, NULL));
	EXPECT_EQ(-EINVAL, dev_atomic(self->dev, UFFDX_DEV_ATOMIC_FETCH_ADD, (uint8_t *)w + 1,
				      1, 0, NULL));
	/* unknown ops */
	EXPECT_EQ(-EINVAL, dev_atomic(self->dev, 0, w, 1, 0, NULL));
	EXPECT_EQ(-EINVAL, dev_atomic(self->dev, 3, w, 1, 0, NULL));
	EXPECT_EQ(-EINVAL, dev_atomic(self->dev, ~0U, w, 1, 0, NULL));
	/* reserved */
	memset(&a, 0, sizeof(a));
	a.size = sizeof(a);
	a.op = UFFDX_DEV_ATOMIC_FETCH_ADD;
	a.addr = (uintptr_t)w;
	a.value = 1;
	a.reserved[1] = 1;
	EXPECT_EQ(-1, ioctl(self->dev, UFFDX_IOC_DEV_ATOMIC, &a));
	EXPECT_EQ(EINVAL, errno);
	/* process memory: through make_device_exclusive*() where the kernel has it */
	*(uint64_t *)self->anon = 5;
	if (self->feat & F_HMM_EXCL) {
		uint64_t old = 0;

		EXPECT_EQ(0, dev_atomic(self->dev, UFFDX_DEV_ATOMIC_FETCH_ADD, self->anon, 1, 0,
					&old));
		EXPECT_EQ(5, old);
		EXPECT_EQ(6, *(uint64_t *)self->anon);
	} else {
		EXPECT_EQ(-EINVAL, dev_atomic(self->dev, UFFDX_DEV_ATOMIC_FETCH_ADD, self->anon,
					      1, 0, NULL));
		EXPECT_EQ(5, *(uint64_t *)self->anon);
	}
	/* unmapped */
	EXPECT_EQ(-EFAULT, dev_atomic(self->dev, UFFDX_DEV_ATOMIC_FETCH_ADD,
				      (uint8_t *)R + NPAGES * ps + 4096 * ps, 1, 0, NULL));
	/* nothing changed, nothing held */
	EXPECT_EQ(-EPERM, DEV(CHECK_EXCLUSIVE, w, NULL, 1));
	EXPECT_EQ(1000, *w);
	/* and a good one works */
	EXPECT_EQ(0, dev_atomic(self->dev, UFFDX_DEV_ATOMIC_FETCH_ADD, w, 1, 0, &old));
	EXPECT_EQ(1000, old);
}

/* ---- 2. DEV_READ and DEV_WRITE ---------------------------------------------------- */

TEST_F(dev, read_write_anon_and_mirror_hits)
{
	struct uffdx_dev_stats s0, s1, s2;
	uint64_t cp = 0, f1 = 0, f2 = 0;
	uint8_t *heap;
	int i;

	REQUIRE(F_MIRROR);
	for (i = 0; i < 4; i++)
		fill_pattern(PG(self->anon, i), ps, 40 + i);
	STATS(s0);
	ASSERT_EQ(0, dev_cmd2(self->dev, UFFDX_IOC_DEV_READ, self->anon, self->buf, 4, &cp, &f1));
	EXPECT_EQ(4, cp);
	EXPECT_LT(0, f1) TH_LOG("a first access took no device fault");
	EXPECT_EQ(-1, bad_page(self->buf, 0, 4, 40));
	STATS(s1);
	EXPECT_EQ(s0.faults + f1, s1.faults);
	/* the same pages again: mirror hits */
	memset(self->buf, 0, 4 * ps);
	ASSERT_EQ(0, dev_cmd2(self->dev, UFFDX_IOC_DEV_READ, self->anon, self->buf, 4, &cp, &f2));
	EXPECT_EQ(4, cp);
	EXPECT_EQ(0, f2) TH_LOG("a second read of mirrored pages faulted");
	EXPECT_EQ(-1, bad_page(self->buf, 0, 4, 40));
	STATS(s2);
	EXPECT_EQ(s1.faults, s2.faults);

	/* a device write is the CPU's data */
	for (i = 0; i < 2; i++)
		fill_pattern(PG(self->buf, i), ps, 60 + i);
	ASSERT_EQ(0, dev_cmd2(self->dev, UFFDX_IOC_DEV_WRITE, PG(self->anon, 1), self->buf, 2,
			      &cp, NULL));
	EXPECT_EQ(2, cp);
	EXPECT_EQ(-1, bad_page(PG(self->anon, 1), 0, 2, 60));
	EXPECT_EQ(-1, check_pattern(PG(self->anon, 0), ps, 40));
	EXPECT_EQ(-1, check_pattern(PG(self->anon, 3), ps, 43));
	/* a CPU write after it is the device's data */
	PG(self->anon, 1)[9] ^= 0xa5;
	ASSERT_EQ(0, DEV(READ, PG(self->anon, 1), self->buf, 1));
	EXPECT_EQ(0, memcmp(self->buf, PG(self->anon, 1), ps));

	/* malloc()ed memory, page aligned */
	ASSERT_EQ(0, posix_memalign((void **)&heap, ps, 3 * ps));
	for (i = 0; i < 3; i++)
		fill_pattern(PG(heap, i), ps, 70 + i);
	ASSERT_EQ(0, DEV(READ, heap, self->buf, 3));
	EXPECT_EQ(-1, bad_page(self->buf, 0, 3, 70));
	free(heap);

	/* untouched anonymous memory reads zeroes */
	memset(self->buf, 0xff, ps);
	ASSERT_EQ(0, DEV(READ, PG(self->anon, 8), self->buf, 1));
	EXPECT_TRUE(is_zero(self->buf, ps));
	EXPECT_TRUE(is_zero(PG(self->anon, 8), ps));
}

TEST_F(dev, read_write_errnos)
{
	uint8_t *m, *hole;

	REQUIRE(F_MIRROR);
	m = mmap(NULL, 4 * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, m);
	fill_pattern(m, 4 * ps, 80);
	/* unmapped: a hole punched into the mapping */
	hole = PG(m, 1);
	ASSERT_EQ(0, munmap(hole, ps));
	EXPECT_EQ(-EFAULT, DEV(READ, hole, self->buf, 1));
	EXPECT_EQ(-EFAULT, DEV(WRITE, hole, self->buf, 1));
	/* a range that runs into the hole */
	EXPECT_EQ(-EFAULT, DEV(READ, PG(m, 0), self->buf, 2));
	/* PROT_NONE */
	ASSERT_EQ(0, mprotect(PG(m, 2), ps, PROT_NONE));
	EXPECT_EQ(-EFAULT, DEV(READ, PG(m, 2), self->buf, 1));
	EXPECT_EQ(-EFAULT, DEV(WRITE, PG(m, 2), self->buf, 1));
	/* PROT_READ: read, but no write */
	ASSERT_EQ(0, mprotect(PG(m, 3), ps, PROT_READ));
	ASSERT_EQ(0, DEV(READ, PG(m, 3), self->buf, 1));
	EXPECT_EQ(0, memcmp(self->buf, PG(m, 3), ps));
	memset(self->buf, 0x42, ps);
	EXPECT_EQ(-EPERM, DEV(WRITE, PG(m, 3), self->buf, 1));
	ASSERT_EQ(0, mprotect(PG(m, 3), ps, PROT_READ | PROT_WRITE));
	{
		/* the page is the pattern's fourth page */
		uint8_t *ref = malloc(4 * ps);

		ASSERT_NE(NULL, ref);
		fill_pattern(ref, 4 * ps, 80);
		EXPECT_EQ(0, memcmp(PG(m, 3), PG(ref, 3), ps)) TH_LOG("EPERM write changed data");
		EXPECT_EQ(0, memcmp(PG(m, 0), PG(ref, 0), ps));
		free(ref);
	}
	/* a read-only region mapping refuses writes too */
	{
		uint8_t *ro;

		FILL(0, 1, 85);
		ro = mmap(NULL, ps, PROT_READ, MAP_SHARED, self->r.fd, 0);
		ASSERT_NE(MAP_FAILED, ro);
		ASSERT_EQ(0, DEV(READ, ro, self->buf, 1));
		EXPECT_EQ(-1, check_pattern(self->buf, ps, 85));
		EXPECT_EQ(-EPERM, DEV(WRITE, ro, self->buf + ps, 1));
		EXPECT_EQ(-1, check_pattern(R, ps, 85));
		munmap(ro, ps);
	}
	munmap(m, 4 * ps);
}

TEST_F(dev, read_write_region_and_holes)
{
	struct uffdx_dev_stats s0, s1;
	long long pending = -1, delivered = -1;
	uint64_t cp = 0, f = 0;

	REQUIRE(F_MIRROR);
	FILL(0, 4, 100);
	STATS(s0);
	ASSERT_EQ(0, dev_cmd2(self->dev, UFFDX_IOC_DEV_READ, R, self->buf, 4, &cp, &f));
	EXPECT_EQ(4, cp);
	EXPECT_LT(0, f);
	EXPECT_EQ(-1, bad_page(self->buf, 0, 4, 100));
	ASSERT_EQ(0, dev_cmd2(self->dev, UFFDX_IOC_DEV_READ, R, self->buf, 4, &cp, &f));
	EXPECT_EQ(0, f);
	STATS(s1);
	EXPECT_LT(s0.faults, s1.faults);

	/* device writes, the CPU sees them */
	fill_pattern(self->buf, ps, 111);
	ASSERT_EQ(0, DEV(WRITE, PG(R, 2), self->buf, 1));
	EXPECT_EQ(-1, check_pattern(PG(R, 2), ps, 111));
	EXPECT_EQ(-1, check_pattern(PG(R, 1), ps, 101));
	EXPECT_EQ(-1, check_pattern(PG(R, 3), ps, 103));

	/* an unarmed hole reads zeroes and is populated */
	EXPECT_EQ(4, resident_pages(self->r.fd));
	memset(self->buf, 0xff, ps);
	ASSERT_EQ(0, DEV(READ, PG(R, 6), self->buf, 1));
	EXPECT_TRUE(is_zero(self->buf, ps));
	EXPECT_EQ(5, resident_pages(self->r.fd));
	EXPECT_TRUE(is_zero(PG(R, 6), ps));
	/* a device write into a hole fills it */
	fill_pattern(self->buf, ps, 117);
	ASSERT_EQ(0, DEV(WRITE, PG(R, 7), self->buf, 1));
	EXPECT_EQ(6, resident_pages(self->r.fd));
	EXPECT_EQ(-1, check_pattern(PG(R, 7), ps, 117));

	/* an armed hole: EFAULT, no event, nobody asleep; the page stays a hole */
	ASSERT_EQ(0, uffdx_arm(self->ctx, RID, 9 * ps, 2 * ps, UFFDX_ARM_MISSING));
	EXPECT_EQ(-EFAULT, DEV(READ, PG(R, 9), self->buf, 1));
	EXPECT_EQ(-EFAULT, DEV(WRITE, PG(R, 10), self->buf, 1));
	EXPECT_EQ(-EFAULT, DEV(READ, PG(R, 7), self->buf, 3));	/* 7 fine, 8 fine, 9 not */
	EXPECT_EQ(0, event_arrives(self->ctx, QUIET_MS)) TH_LOG("an event for a device access");
	ASSERT_EQ(0, fdinfo_ll(self->ctx, "uffdx-events-pending", &pending));
	ASSERT_EQ(0, fdinfo_ll(self->ctx, "uffdx-events-delivered", &delivered));
	EXPECT_EQ(0, pending);
	EXPECT_EQ(0, delivered) TH_LOG("a faulter is asleep on the context");
	/* after the fill, the device reads it */
	FILL(9, 1, 200);
	ASSERT_EQ(0, DEV(READ, PG(R, 9), self->buf, 1));
	EXPECT_EQ(-1, check_pattern(self->buf, ps, 209));
	/* poison is EFAULT */
	if (self->feat & UFFDX_FEATURE_POISON) {
		int64_t res = 0;

		ASSERT_EQ(0, uffdx_poison(self->ctx, RID, 12 * ps, ps, 0, &res));
		EXPECT_EQ(-EFAULT, DEV(READ, PG(R, 12), self->buf, 1));
	}
}

/* ---- 3. coherence of the mirror ------------------------------------------------------ */

/* The device reads n pages at addr (mirroring them), and the stats after. */
static void mirror(struct __test_metadata *_metadata, int dev, const void *addr, size_t n,
		   uint8_t *buf, struct uffdx_dev_stats *st)
{
	uint64_t f = 0;

	ASSERT_EQ(0, dev_cmd2(dev, UFFDX_IOC_DEV_READ, addr, buf, n, NULL, &f));
	/* mirrored now: the second read is all hits */
	ASSERT_EQ(0, dev_cmd2(dev, UFFDX_IOC_DEV_READ, addr, buf, n, NULL, &f));
	ASSERT_EQ(0, f);
	ASSERT_EQ(0, dev_stats(dev, st));
}

/*
 * The mirror of n pages was invalidated since s0: some invalidation ran and
 * dropped at least n entries; with reason >= 0, one of that reason.
 */
static void expect_invalidated(struct __test_metadata *_metadata, int dev,
			       const struct uffdx_dev_stats *s0, uint64_t n, int reason)
{
	struct uffdx_dev_stats s;

	ASSERT_EQ(0, dev_stats(dev, &s));
	EXPECT_LT(inval_total(s0), inval_total(&s)) TH_LOG("no invalidation");
	EXPECT_LE(s0->invalidated_pages + n, s.invalidated_pages)
		TH_LOG("%llu entries dropped, %llu mirrored",
		       (unsigned long long)(s.invalidated_pages - s0->invalidated_pages),
		       (unsigned long long)n);
	if (reason >= 0 && reason < UFFDX_DEV_INVAL_NR)
		EXPECT_LT(s0->invalidations[reason], s.invalidations[reason])
			TH_LOG("no invalidation of reason %d", reason);
}

#define EXPECT_INVALIDATED(s0, n, reason) \
	expect_invalidated(_metadata, self->dev, &(s0), (n), (reason))

TEST_F(dev, coherence_munmap_mprotect_dontneed)
{
	struct uffdx_dev_stats s;
	uint8_t *m;
	uint64_t f = 0;

	REQUIRE(F_MIRROR);
	m = mmap(NULL, 8 * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, m);
	fill_pattern(m, 8 * ps, 300);

	/* munmap */
	mirror(_metadata, self->dev, PG(m, 6), 2, self->buf, &s);
	ASSERT_EQ(0, munmap(PG(m, 6), 2 * ps));
	EXPECT_INVALIDATED(s, 2, UFFDX_DEV_INVAL_UNMAP);
	EXPECT_EQ(-EFAULT, DEV(READ, PG(m, 6), self->buf, 1));
	EXPECT_EQ(-EFAULT, DEV(READ, PG(m, 7), self->buf, 1));

	/* mprotect(PROT_NONE), and back */
	mirror(_metadata, self->dev, PG(m, 4), 2, self->buf, &s);
	ASSERT_EQ(0, mprotect(PG(m, 4), 2 * ps, PROT_NONE));
	EXPECT_INVALIDATED(s, 2, UFFDX_DEV_INVAL_PROTECTION_VMA);
	EXPECT_EQ(-EFAULT, DEV(READ, PG(m, 4), self->buf, 1));
	EXPECT_EQ(-EFAULT, DEV(READ, PG(m, 5), self->buf, 1));
	ASSERT_EQ(0, mprotect(PG(m, 4), 2 * ps, PROT_READ | PROT_WRITE));
	ASSERT_EQ(0, dev_cmd2(self->dev, UFFDX_IOC_DEV_READ, PG(m, 4), self->buf, 2, NULL, &f));
	EXPECT_LT(0, f);
	EXPECT_EQ(0, memcmp(self->buf, PG(m, 4), 2 * ps));
	/* mprotect(PROT_READ): reads stay, writes are refused */
	mirror(_metadata, self->dev, PG(m, 3), 1, self->buf, &s);
	ASSERT_EQ(0, DEV(WRITE, PG(m, 3), self->buf, 1));	/* writable in the mirror */
	ASSERT_EQ(0, mprotect(PG(m, 3), ps, PROT_READ));
	EXPECT_EQ(-EPERM, DEV(WRITE, PG(m, 3), self->buf + ps, 1));
	EXPECT_EQ(0, memcmp(self->buf, PG(m, 3), ps));

	/* MADV_DONTNEED: zeroes */
	mirror(_metadata, self->dev, PG(m, 0), 3, self->buf, &s);
	EXPECT_EQ(0, memcmp(self->buf, PG(m, 0), 3 * ps));
	ASSERT_EQ(0, madvise(PG(m, 0), 3 * ps, MADV_DONTNEED));
	EXPECT_INVALIDATED(s, 3, -1);
	memset(self->buf, 0xff, 3 * ps);
	ASSERT_EQ(0, DEV(READ, PG(m, 0), self->buf, 3));
	EXPECT_TRUE(is_zero(self->buf, 3 * ps)) TH_LOG("the device read stale data");
	munmap(m, 8 * ps);
}

TEST_F(dev, coherence_mremap)
{
	struct uffdx_dev_stats s;
	uint8_t *m, *dst, *got;

	REQUIRE(F_MIRROR);
	m = mmap(NULL, 4 * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, m);
	dst = mmap(NULL, 4 * ps, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, dst);
	fill_pattern(m, 4 * ps, 310);
	mirror(_metadata, self->dev, m, 4, self->buf, &s);
	got = mremap(m, 4 * ps, 4 * ps, MREMAP_MAYMOVE | MREMAP_FIXED, dst);
	ASSERT_EQ(dst, got);
	EXPECT_INVALIDATED(s, 4, -1);
	EXPECT_EQ(-EFAULT, DEV(READ, m, self->buf, 1));
	memset(self->buf, 0, 4 * ps);
	ASSERT_EQ(0, DEV(READ, dst, self->buf, 4));
	EXPECT_EQ(0, memcmp(self->buf, dst, 4 * ps));
	EXPECT_EQ(-1, check_pattern(self->buf, 4 * ps, 310));
	/* the region too */
	FILL(0, 2, 320);
	{
		uint8_t *r2 = mmap(NULL, 2 * ps, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		uint8_t *r1 = mmap(NULL, 2 * ps, PROT_READ | PROT_WRITE, MAP_SHARED,
				   self->r.fd, 0);

		ASSERT_NE(MAP_FAILED, r2);
		ASSERT_NE(MAP_FAILED, r1);
		mirror(_metadata, self->dev, r1, 2, self->buf, &s);
		ASSERT_EQ(r2, mremap(r1, 2 * ps, 2 * ps, MREMAP_MAYMOVE | MREMAP_FIXED, r2));
		EXPECT_INVALIDATED(s, 2, -1);
		EXPECT_EQ(-EFAULT, DEV(READ, r1, self->buf, 1));
		ASSERT_EQ(0, DEV(READ, r2, self->buf, 2));
		EXPECT_EQ(-1, bad_page(self->buf, 0, 2, 320));
		munmap(r2, 2 * ps);
	}
	munmap(dst, 4 * ps);
}

TEST_F(dev, coherence_fork_cow)
{
	struct uffdx_dev_stats s;
	int go[2], st = 0;
	uint8_t *m;
	pid_t pid;

	REQUIRE(F_MIRROR);
	m = mmap(NULL, 2 * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, m);
	fill_pattern(m, 2 * ps, 330);
	mirror(_metadata, self->dev, m, 2, self->buf, &s);
	ASSERT_EQ(0, pipe(go));
	fflush(stdout);
	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0) {
		char c;

		close(go[1]);
		/* hold the old pages until the parent has written */
		if (read_timeout(go[0], &c, 1, 2 * WAIT_MS) != 1)
			_exit(2);
		_exit(check_pattern(m, 2 * ps, 330) == -1 ? 0 : 1);
	}
	close(go[0]);
	/* the parent writes: COW gives it new pages */
	fill_pattern(m, ps, 340);
	EXPECT_INVALIDATED(s, 1, -1);
	memset(self->buf, 0, 2 * ps);
	ASSERT_EQ(0, DEV(READ, m, self->buf, 2));
	EXPECT_EQ(-1, check_pattern(self->buf, ps, 340)) TH_LOG("the device sees the old page");
	EXPECT_EQ(0, memcmp(PG(self->buf, 1), PG(m, 1), ps));
	/* a device write lands in the parent's page, not the child's */
	fill_pattern(self->buf, ps, 345);
	ASSERT_EQ(0, DEV(WRITE, PG(m, 1), self->buf, 1));
	EXPECT_EQ(-1, check_pattern(PG(m, 1), ps, 345));
	ASSERT_EQ(1, write(go[1], "g", 1));
	close(go[1]);
	ASSERT_EQ(0, wait_child(pid, &st, WAIT_MS));
	EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0)
		TH_LOG("the child's pages changed (status 0x%x)", st);
	munmap(m, 2 * ps);
}

/*
 * THP collapse and split of process memory: MADV_COLLAPSE replaces the
 * mirrored small pages by one huge page (a copy), an mprotect() of part of
 * it splits it again; each time the device's mirror must be invalidated,
 * and the next device read sees the same data, through the new mapping.
 */
TEST_F(dev, coherence_thp_collapse_and_split)
{
	size_t huge = 2UL << 20;
	struct uffdx_dev_stats s;
	uint8_t *raw, *m, *buf, b;
	int ret;

	REQUIRE(F_MIRROR);
	raw = mmap(NULL, 2 * huge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, raw);
	m = (uint8_t *)(((uintptr_t)raw + huge - 1) & ~(uintptr_t)(huge - 1));
	buf = malloc(huge);
	ASSERT_NE(NULL, buf);
	/* small pages first, mirrored */
	madvise(m, huge, MADV_NOHUGEPAGE);
	fill_pattern(m, huge, 360);
	mirror(_metadata, self->dev, m, huge / ps, buf, &s);
	madvise(m, huge, MADV_HUGEPAGE);
	ret = madvise(m, huge, MADV_COLLAPSE);
	if (ret) {
		TH_LOG("MADV_COLLAPSE: %s", strerror(errno));
		free(buf);
		munmap(raw, 2 * huge);
		SKIP(return, "no THP collapse here (%s)", strerror(errno));
	}
	EXPECT_INVALIDATED(s, huge / ps, -1);
	memset(buf, 0, huge);
	ASSERT_EQ(0, DEV(READ, m, buf, huge / ps));
	EXPECT_EQ(-1, check_pattern(buf, huge, 360)) TH_LOG("data after the collapse");
	ASSERT_EQ(0, DEV(SNAPSHOT, m, &b, 1));
	EXPECT_TRUE(b & UFFDX_DEV_PROT_PMD) TH_LOG("snapshot 0x%02x: not PMD-mapped", b);
	/* split: protect one page of it */
	ASSERT_EQ(0, dev_stats(self->dev, &s));
	ASSERT_EQ(0, mprotect(m + 5 * ps, ps, PROT_READ));
	EXPECT_INVALIDATED(s, 1, -1);
	ASSERT_EQ(0, DEV(SNAPSHOT, m, &b, 1));
	EXPECT_FALSE(b & UFFDX_DEV_PROT_PMD) TH_LOG("snapshot 0x%02x: still PMD-mapped", b);
	EXPECT_EQ(-EPERM, DEV(WRITE, m + 5 * ps, buf, 1));
	memset(buf, 0, huge);
	ASSERT_EQ(0, DEV(READ, m, buf, huge / ps));
	EXPECT_EQ(-1, check_pattern(buf, huge, 360)) TH_LOG("data after the split");
	free(buf);
	munmap(raw, 2 * huge);
}


TEST_F(dev, coherence_region_discard_and_copy)
{
	struct uffdx_dev_stats s;

	REQUIRE(F_MIRROR);
	FILL(0, 4, 400);
	EXPECT_EQ(-1, bad_page(R, 0, 4, 400));	/* CPU-mapped too */
	mirror(_metadata, self->dev, R, 4, self->buf, &s);
	EXPECT_EQ(-1, bad_page(self->buf, 0, 4, 400));
	ASSERT_EQ(0, discard(self->ctx, RID, 0, 2));
	EXPECT_INVALIDATED(s, 2, -1);
	/* unarmed holes: zeroes */
	memset(self->buf, 0xff, 4 * ps);
	ASSERT_EQ(0, DEV(READ, R, self->buf, 4));
	EXPECT_TRUE(is_zero(self->buf, 2 * ps)) TH_LOG("the device read a discarded page");
	EXPECT_EQ(-1, bad_page(PG(self->buf, 2), 2, 2, 400));
	/* discard again, then a COPY: the device sees the new data */
	mirror(_metadata, self->dev, R, 2, self->buf, &s);
	ASSERT_EQ(0, discard(self->ctx, RID, 0, 2));
	EXPECT_INVALIDATED(s, 2, -1);
	FILL(0, 2, 410);
	ASSERT_EQ(0, DEV(READ, R, self->buf, 2));
	EXPECT_EQ(-1, bad_page(self->buf, 0, 2, 410));
	/* armed after the discard: EFAULT */
	ASSERT_EQ(0, discard(self->ctx, RID, 3, 1));
	ASSERT_EQ(0, uffdx_arm(self->ctx, RID, 3 * ps, ps, UFFDX_ARM_MISSING));
	EXPECT_EQ(-EFAULT, DEV(READ, PG(R, 3), self->buf, 1));
	EXPECT_EQ(0, event_arrives(self->ctx, 0));
}

TEST_F(dev, coherence_region_move)
{
	struct uffdx_region_map b;
	struct uffdx_dev_stats s;
	int64_t res = 0;

	REQUIRE(F_MIRROR | UFFDX_FEATURE_MOVE);
	ASSERT_EQ(0, uffdx_region_map(self->ctx, 4 * ps, 0, &b));
	FILL(0, 2, 420);
	mirror(_metadata, self->dev, R, 2, self->buf, &s);
	ASSERT_EQ(0, uffdx_move(self->ctx, b.id, 0, RID, 0, 2 * ps, 0, &res));
	EXPECT_EQ((int64_t)(2 * ps), res);
	EXPECT_INVALIDATED(s, 2, -1);
	/* at the destination: the moved data */
	ASSERT_EQ(0, DEV(READ, b.addr, self->buf, 2));
	EXPECT_EQ(-1, bad_page(self->buf, 0, 2, 420));
	/* at the source: holes; unarmed reads zeroes, armed is EFAULT */
	ASSERT_EQ(0, uffdx_arm(self->ctx, RID, ps, ps, UFFDX_ARM_MISSING));
	memset(self->buf, 0xff, ps);
	ASSERT_EQ(0, DEV(READ, R, self->buf, 1));
	EXPECT_TRUE(is_zero(self->buf, ps));
	EXPECT_EQ(-EFAULT, DEV(READ, PG(R, 1), self->buf, 1));
	/* and by address */
	mirror(_metadata, self->dev, b.addr, 2, self->buf, &s);
	ASSERT_EQ(0, uffdx_move_addr(self->ctx, PG(b.addr, 2), b.addr, ps, 0, &res));
	EXPECT_INVALIDATED(s, 1, -1);
	ASSERT_EQ(0, DEV(READ, PG(b.addr, 2), self->buf, 1));
	EXPECT_EQ(-1, check_pattern(self->buf, ps, 420));
	ASSERT_EQ(0, DEV(READ, b.addr, self->buf, 1));
	EXPECT_TRUE(is_zero(self->buf, ps));
	uffdx_region_unmap(&b);
}

TEST_F(dev, coherence_region_writeprotect)
{
	struct uffdx_region_map w;
	struct uffdx_dev_stats s;

	REQUIRE(F_MIRROR | UFFDX_FEATURE_WP);
	ASSERT_EQ(0, uffdx_region_map(self->ctx, 4 * ps, UFFDX_REGION_CREATE_WP, &w));
	ASSERT_EQ(0, fill_pages(self->ctx, w.id, 0, 2, 430));
	/* writable in the mirror: the device wrote through it */
	fill_pattern(self->buf, ps, 435);
	ASSERT_EQ(0, DEV(WRITE, w.addr, self->buf, 1));
	ASSERT_EQ(0, DEV(WRITE, w.addr, self->buf, 1));
	ASSERT_EQ(0, DEV(READ, PG(w.addr, 1), self->buf + ps, 1));
	EXPECT_EQ(-1, check_pattern(w.addr, ps, 435));
	ASSERT_EQ(0, dev_stats(self->dev, &s));
	ASSERT_EQ(0, uffdx_writeprotect(self->ctx, w.id, 0, 2 * ps, UFFDX_WP_PROTECT, NULL));
	EXPECT_INVALIDATED(s, 1, -1);
	/* protected: device writes refused, data unchanged; reads fine */
	fill_pattern(self->buf, ps, 436);
	EXPECT_EQ(-EFAULT, DEV(WRITE, w.addr, self->buf, 1));
	EXPECT_EQ(-EFAULT, DEV(WRITE, PG(w.addr, 1), self->buf, 1));
	EXPECT_EQ(-1, check_pattern(w.addr, ps, 435));
	EXPECT_EQ(-1, check_pattern(PG(w.addr, 1), ps, 431));
	ASSERT_EQ(0, DEV(READ, w.addr, self->buf, 2));
	EXPECT_EQ(-1, check_pattern(self->buf, ps, 435));
	EXPECT_EQ(0, event_arrives(self->ctx, 0)) TH_LOG("a device write queued a WP event");
	/* unprotected: the write goes through */
	ASSERT_EQ(0, uffdx_writeprotect(self->ctx, w.id, 0, ps, 0, NULL));
	fill_pattern(self->buf, ps, 437);
	EXPECT_EQ(0, DEV(WRITE, w.addr, self->buf, 1));
	EXPECT_EQ(-1, check_pattern(w.addr, ps, 437));
	uffdx_region_unmap(&w);
}

/* ---- 4. SNAPSHOT ------------------------------------------------------------------- */

TEST_F(dev, snapshot_process_memory)
{
	uint8_t *m, *un, b[4];
	uint8_t v;

	REQUIRE(F_MIRROR);
	m = mmap(NULL, 4 * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, m);
	/* 0: untouched (nothing there); 1: zero page; 2: written; 3: read-only */
	v = *(volatile uint8_t *)PG(m, 1);
	(void)v;
	memset(PG(m, 2), 1, ps);
	memset(PG(m, 3), 3, ps);
	ASSERT_EQ(0, mprotect(PG(m, 3), ps, PROT_READ));
	memset(b, 0xee, sizeof(b));
	ASSERT_EQ(0, DEV(SNAPSHOT, m, b, 4));
	EXPECT_EQ(UFFDX_DEV_PROT_NONE, PROT_NOSIZE(b[0]));
	EXPECT_EQ(UFFDX_DEV_PROT_ZERO | UFFDX_DEV_PROT_READ, PROT_NOSIZE(b[1]))
		TH_LOG("zero page: 0x%02x", b[1]);
	EXPECT_EQ(UFFDX_DEV_PROT_WRITE, PROT_NOSIZE(b[2])) TH_LOG("written: 0x%02x", b[2]);
	EXPECT_EQ(UFFDX_DEV_PROT_READ, PROT_NOSIZE(b[3])) TH_LOG("read-only: 0x%02x", b[3]);
	/* a snapshot does not fault anything in */
	EXPECT_EQ(UFFDX_DEV_PROT_NONE, PROT_NOSIZE(snap1(self->dev, m)));
	/* a device write makes page 0 writable */
	memset(self->buf, 9, ps);
	ASSERT_EQ(0, DEV(WRITE, m, self->buf, 1));
	EXPECT_EQ(UFFDX_DEV_PROT_WRITE, PROT_NOSIZE(snap1(self->dev, m)));
	EXPECT_EQ(9, m[100]);
	/* PROT_NONE and unmapped: no valid translation */
	ASSERT_EQ(0, mprotect(PG(m, 2), ps, PROT_NONE));
	EXPECT_EQ(UFFDX_DEV_PROT_ERROR, snap1(self->dev, PG(m, 2)));
	un = mmap(NULL, ps, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, un);
	munmap(un, ps);
	EXPECT_EQ(UFFDX_DEV_PROT_ERROR, snap1(self->dev, un));
	/* a range across the unmapped page: every byte written */
	memset(b, 0xee, sizeof(b));
	{
		int ret = DEV(SNAPSHOT, PG(m, 1), b, 2);

		EXPECT_EQ(0, ret) TH_LOG("snapshot over PROT_NONE: %s", strerror(-ret));
		EXPECT_EQ(UFFDX_DEV_PROT_ZERO | UFFDX_DEV_PROT_READ, PROT_NOSIZE(b[0]));
		EXPECT_EQ(UFFDX_DEV_PROT_ERROR, b[1]);
		EXPECT_EQ(0xee, b[2]);
	}
	munmap(m, 4 * ps);
}

TEST_F(dev, snapshot_region_states)
{
	uint8_t b[6];
	int dev2 = -1;

	REQUIRE(F_MIRROR);
	FILL(0, 2, 500);
	EXPECT_EQ(-1, bad_page(R, 0, 2, 500));	/* mapped by the CPU */
	memset(b, 0xee, sizeof(b));
	ASSERT_EQ(0, DEV(SNAPSHOT, R, b, 4));
	EXPECT_TRUE(PROT_KIND(b[0]) == 0 && PROT_PERM(b[0])) TH_LOG("mapped page: 0x%02x", b[0]);
	EXPECT_EQ(UFFDX_DEV_PROT_NONE, b[2]) TH_LOG("hole: 0x%02x", b[2]);
	EXPECT_EQ(UFFDX_DEV_PROT_NONE, b[3]);
	if (self->feat & F_EXCL) {
		ASSERT_EQ(0, DEV(EXCLUSIVE, PG(R, 0), NULL, 1));
		EXPECT_EQ(UFFDX_DEV_PROT_EXCLUSIVE, PROT_KIND(snap1(self->dev, R)))
			TH_LOG("exclusive: 0x%02x", snap1(self->dev, R));
		/* a snapshot neither revokes nor queues anything */
		EXPECT_EQ(0, DEV(CHECK_EXCLUSIVE, R, NULL, 1));
		EXPECT_NO_DEV_EVENT(self->dev);
	}
	if (self->feat & F_MIGR) {
		uint8_t st = 0;

		ASSERT_EQ(0, DEV(MIGRATE_TO_DEV, PG(R, 1), &st, 1));
		EXPECT_EQ(1, st);
		EXPECT_EQ(UFFDX_DEV_PROT_DEV_LOCAL, PROT_KIND(snap1(self->dev, PG(R, 1))))
			TH_LOG("resident: 0x%02x", snap1(self->dev, PG(R, 1)));
		/* another device sees it as another's */
		dev2 = dev_create(self->ctx);
		ASSERT_LE(0, dev2);
		EXPECT_EQ(UFFDX_DEV_PROT_DEV_REMOTE, PROT_KIND(snap1(dev2, PG(R, 1))))
			TH_LOG("remote: 0x%02x", snap1(dev2, PG(R, 1)));
		EXPECT_NO_DEV_EVENT(self->dev);
		EXPECT_EQ(UFFDX_DEV_PROT_DEV_LOCAL, PROT_KIND(snap1(self->dev, PG(R, 1))));
		close(dev2);
	}
}

/* ---- 5. exclusive access ------------------------------------------------------------ */

TEST_F(dev, exclusive_revoked_by_cpu_read_and_write)
{
	struct uffdx_dev_stats s0, s1;
	uint8_t v = 0;
	uint8_t *ref;

	REQUIRE(F_EXCL);
	FILL(0, 4, 600);
	EXPECT_EQ(-1, bad_page(R, 0, 4, 600));
	ref = malloc(4 * ps);
	ASSERT_NE(NULL, ref);
	memcpy(ref, R, 4 * ps);
	STATS(s0);
	ASSERT_EQ(0, DEV(EXCLUSIVE, PG(R, 1), NULL, 2));
	EXPECT_EQ(0, DEV(CHECK_EXCLUSIVE, PG(R, 1), NULL, 2));
	EXPECT_EQ(0, DEV(CHECK_EXCLUSIVE, PG(R, 2), NULL, 1));
	EXPECT_EQ(-EPERM, DEV(CHECK_EXCLUSIVE, PG(R, 0), NULL, 1));
	EXPECT_EQ(-EPERM, DEV(CHECK_EXCLUSIVE, PG(R, 0), NULL, 3));
	/* taking it again is fine */
	EXPECT_EQ(0, DEV(EXCLUSIVE, PG(R, 1), NULL, 1));
	EXPECT_NO_DEV_EVENT(self->dev);
	/* the neighbours are untouched by it */
	ASSERT_EQ(0, try_read(PG(R, 0) + 5, &v));
	EXPECT_EQ(ref[5], v);
	EXPECT_NO_DEV_EVENT(self->dev);

	/* a CPU read revokes page 1 */
	ASSERT_EQ(0, try_read(PG(R, 1) + 17, &v));
	EXPECT_EQ(ref[ps + 17], v);
	expect_dev_event(_metadata, self->dev, UFFDX_DEV_EVENT_REVOKED, PG(R, 1), RID, ps, 0,
			 getpid(), sys_gettid());
	EXPECT_EQ(-EPERM, DEV(CHECK_EXCLUSIVE, PG(R, 1), NULL, 1));
	EXPECT_EQ(0, DEV(CHECK_EXCLUSIVE, PG(R, 2), NULL, 1));
	STATS(s1);
	EXPECT_EQ(s0.revocations + 1, s1.revocations);
	/* a second touch: nothing more */
	ASSERT_EQ(0, try_read(PG(R, 1) + 18, &v));
	EXPECT_NO_DEV_EVENT(self->dev);

	/* a CPU write revokes page 2, flagged a write */
	ASSERT_EQ(0, try_write(PG(R, 2) + 33, (uint8_t)(ref[2 * ps + 33] ^ 0xff)));
	ref[2 * ps + 33] ^= 0xff;
	expect_dev_event(_metadata, self->dev, UFFDX_DEV_EVENT_REVOKED, PG(R, 2), RID, 2 * ps,
			 UFFDX_PF_WRITE, getpid(), sys_gettid());
	EXPECT_EQ(-EPERM, DEV(CHECK_EXCLUSIVE, PG(R, 2), NULL, 1));
	STATS(s1);
	EXPECT_EQ(s0.revocations + 2, s1.revocations);
	/* the data survived exactly */
	EXPECT_EQ(0, memcmp(R, ref, 4 * ps));
	free(ref);
}

TEST_F(dev, exclusive_revoked_by_another_process)
{
	struct uffdx_dev_stats s0, s1;
	uint8_t *ref;
	int st = 0;
	pid_t pid;

	REQUIRE(F_EXCL);
	FILL(0, 2, 610);
	ref = malloc(2 * ps);
	ASSERT_NE(NULL, ref);
	memcpy(ref, R, 2 * ps);
	ASSERT_EQ(0, DEV(EXCLUSIVE, R, NULL, 2));
	STATS(s0);
	fflush(stdout);
	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0) {
		struct uffdx_dev_stats cs;
		uint8_t cb[64];

		sig_install();
		/* commands of another mm: EPERM, even on what the device holds */
		if (dev_cmd(self->dev, UFFDX_IOC_DEV_CHECK_EXCLUSIVE, R, NULL, 1) != -EPERM)
			_exit(10);
		if (dev_cmd(self->dev, UFFDX_IOC_DEV_RELEASE, R, NULL, 1) != -EPERM)
			_exit(11);
		if (dev_atomic(self->dev, UFFDX_DEV_ATOMIC_FETCH_ADD, R, 1, 0, NULL) != -EPERM)
			_exit(12);
		/* the counters may be read */
		if (dev_stats(self->dev, &cs) || cs.revocations != s0.revocations)
			_exit(13);
		/* a CPU write through the inherited mapping revokes */
		if (try_write(PG(R, 1) + 3, (uint8_t)(ref[ps + 3] + 1)))
			_exit(14);
		/* and the child's read of the other page too */
		if (try_read(PG(R, 0) + 3, cb))
			_exit(15);
		_exit(cb[0] == ref[3] ? 0 : 16);
	}
	ASSERT_EQ(0, wait_child(pid, &st, WAIT_MS));
	ASSERT_TRUE(WIFEXITED(st)) TH_LOG("child status 0x%x", st);
	ASSERT_EQ(0, WEXITSTATUS(st));
	ref[ps + 3]++;
	{
		struct uffdx_dev_event ev[2];
		int i;

		for (i = 0; i < 2; i++)
			ASSERT_EQ(1, dev_event(self->dev, &ev[i], WAIT_MS)) TH_LOG("event %d", i);
		check_dev_event(_metadata, &ev[0], UFFDX_DEV_EVENT_REVOKED, PG(R, 1), RID, ps,
				UFFDX_PF_WRITE | UFFDX_PF_REMOTE, pid, pid);
		check_dev_event(_metadata, &ev[1], UFFDX_DEV_EVENT_REVOKED, R, RID, 0,
				UFFDX_PF_REMOTE,
				pid, pid);
	}
	EXPECT_NO_DEV_EVENT(self->dev);
	STATS(s1);
	EXPECT_EQ(s0.revocations + 2, s1.revocations);
	EXPECT_EQ(-EPERM, DEV(CHECK_EXCLUSIVE, R, NULL, 1));
	EXPECT_EQ(-EPERM, DEV(CHECK_EXCLUSIVE, PG(R, 1), NULL, 1));
	EXPECT_EQ(0, memcmp(R, ref, 2 * ps));
	free(ref);
}

TEST_F(dev, exclusive_release_discard_move)
{
	struct uffdx_dev_stats s0, s1;
	int64_t res = 0;
	uint8_t v = 0;

	REQUIRE(F_EXCL);
	FILL(0, 4, 620);
	ASSERT_EQ(0, DEV(EXCLUSIVE, R, NULL, 4));
	STATS(s0);
	/* RELEASE: no longer held, a touch raises nothing */
	ASSERT_EQ(0, DEV(RELEASE, R, NULL, 1));
	EXPECT_EQ(-EPERM, DEV(CHECK_EXCLUSIVE, R, NULL, 1));
	EXPECT_EQ(0, DEV(CHECK_EXCLUSIVE, PG(R, 1), NULL, 3));
	ASSERT_EQ(0, try_read(R + 1, &v));
	EXPECT_NO_DEV_EVENT(self->dev);
	STATS(s1);
	EXPECT_EQ(s0.revocations, s1.revocations);
	EXPECT_EQ(-1, check_pattern(R, ps, 620));
	/* releasing what is not held is harmless */
	EXPECT_EQ(0, DEV(RELEASE, R, NULL, 1));
	/* MOVE refuses a held page */
	if (self->feat & UFFDX_FEATURE_MOVE) {
		res = 0;
		EXPECT_EQ(-EBUSY, uffdx_move(self->ctx, RID, 10 * ps, RID, ps, ps, 0, &res));
		EXPECT_EQ(-EBUSY, res);
		EXPECT_EQ(0, DEV(CHECK_EXCLUSIVE, PG(R, 1), NULL, 1));
	}
	/* DISCARD drops the hold, with an event */
	ASSERT_EQ(0, discard(self->ctx, RID, 2, 1));
	{
		struct uffdx_dev_event ev;

		ASSERT_EQ(1, dev_event(self->dev, &ev, WAIT_MS));
		check_dev_event(_metadata, &ev, UFFDX_DEV_EVENT_DROPPED, PG(R, 2), RID, 2 * ps, 0,
				0, 0);
		EXPECT_TRUE(ev.pid == 0 || ev.pid == (uint32_t)getpid()) TH_LOG("pid %u", ev.pid);
	}
	EXPECT_NO_DEV_EVENT(self->dev);
	EXPECT_EQ(-EPERM, DEV(CHECK_EXCLUSIVE, PG(R, 2), NULL, 1));
	EXPECT_EQ(0, DEV(CHECK_EXCLUSIVE, PG(R, 3), NULL, 1));
	ASSERT_EQ(0, try_read(PG(R, 2) + 7, &v));
	EXPECT_EQ(0, v);
	EXPECT_TRUE(is_zero(PG(R, 2), ps));
	EXPECT_NO_DEV_EVENT(self->dev);
	/* release the rest, then nothing is held and nothing comes */
	ASSERT_EQ(0, DEV(RELEASE, PG(R, 1), NULL, 3));
	EXPECT_EQ(-1, check_pattern(PG(R, 1), ps, 621));
	EXPECT_EQ(-1, check_pattern(PG(R, 3), ps, 623));
	EXPECT_NO_DEV_EVENT(self->dev);
	STATS(s1);
	EXPECT_EQ(s0.revocations, s1.revocations);
}

TEST_F(dev, exclusive_two_devices_and_process_memory)
{
	int dev2;

	REQUIRE(F_EXCL);
	FILL(0, 2, 630);
	dev2 = dev_create(self->ctx);
	ASSERT_LE(0, dev2);
	ASSERT_EQ(0, dev_cmd(dev2, UFFDX_IOC_DEV_EXCLUSIVE, R, NULL, 1));
	/*
	 * Another device takes it over through the CPU's fault path, as
	 * make_device_exclusive() does: the first holder loses it, and is
	 * told (a kernel-mode access, by this process).
	 */
	EXPECT_EQ(0, DEV(EXCLUSIVE, R, NULL, 2));
	EXPECT_EQ(0, DEV(CHECK_EXCLUSIVE, R, NULL, 2));
	EXPECT_EQ(-EPERM, dev_cmd(dev2, UFFDX_IOC_DEV_CHECK_EXCLUSIVE, R, NULL, 1));
	expect_dev_event(_metadata, dev2, UFFDX_DEV_EVENT_REVOKED, R, RID, 0, UFFDX_PF_KERNEL,
			 getpid(), sys_gettid());
	/* and back, with an atomic */
	EXPECT_EQ(0, dev_atomic(dev2, UFFDX_DEV_ATOMIC_FETCH_ADD, R, 0, 0, NULL));
	EXPECT_EQ(0, dev_cmd(dev2, UFFDX_IOC_DEV_CHECK_EXCLUSIVE, R, NULL, 1));
	EXPECT_EQ(-EPERM, DEV(CHECK_EXCLUSIVE, R, NULL, 1));
	EXPECT_EQ(0, DEV(CHECK_EXCLUSIVE, PG(R, 1), NULL, 1));
	expect_dev_event(_metadata, self->dev, UFFDX_DEV_EVENT_REVOKED, R, RID, 0,
			 UFFDX_PF_KERNEL, getpid(), sys_gettid());
	close(dev2);
	/* process memory: through make_device_exclusive*() where the kernel has it */
	memset(self->anon, 1, ps);
	if (self->feat & F_HMM_EXCL) {
		EXPECT_EQ(0, DEV(EXCLUSIVE, self->anon, NULL, 1));
		EXPECT_EQ(0, DEV(CHECK_EXCLUSIVE, self->anon, NULL, 1));
		/* a CPU read revokes it: the counter and an event say so */
		EXPECT_EQ(1, self->anon[7]);
		EXPECT_EQ(-EPERM, DEV(CHECK_EXCLUSIVE, self->anon, NULL, 1));
		ASSERT_EQ(0, DEV(RELEASE, R, NULL, 2));
	} else {
		EXPECT_EQ(-EINVAL, DEV(EXCLUSIVE, self->anon, NULL, 1));
		EXPECT_EQ(-EPERM, DEV(CHECK_EXCLUSIVE, self->anon, NULL, 1));
		EXPECT_EQ(-EINVAL, DEV(EXCLUSIVE, self->buf, NULL, 1));
	}
	/* a range of region memory that runs into process memory is not region memory */
	EXPECT_EQ(-1, check_pattern(R, ps, 630));
}

/* ---- 6. atomics ------------------------------------------------------------------ */

TEST_F(dev, atomic_fetch_add_and_cmpxchg)
{
	struct uffdx_dev_stats s0, s1;
	uint64_t *w = (uint64_t *)(PG(R, 1) + 64);
	uint64_t old = 0, v;

	REQUIRE(F_EXCL);
	FILL(0, 3, 700);
	*w = 41;
	STATS(s0);
	/* fetch-add */
	ASSERT_EQ(0, dev_atomic(self->dev, UFFDX_DEV_ATOMIC_FETCH_ADD, w, 1, 0, &old));
	EXPECT_EQ(41, old);
	/* it took exclusive access of the page */
	EXPECT_EQ(0, DEV(CHECK_EXCLUSIVE, PG(R, 1), NULL, 1));
	EXPECT_EQ(-EPERM, DEV(CHECK_EXCLUSIVE, PG(R, 0), NULL, 1));
	/* a second one without a CPU touch in between */
	ASSERT_EQ(0, dev_atomic(self->dev, UFFDX_DEV_ATOMIC_FETCH_ADD, w, 0xffffffffULL, 0, &old));
	EXPECT_EQ(42, old);
	EXPECT_NO_DEV_EVENT(self->dev);
	/* the CPU reads the right value, and revokes */
	v = __atomic_load_n(w, __ATOMIC_SEQ_CST);
	EXPECT_EQ(42 + 0xffffffffULL, v);
	expect_dev_event(_metadata, self->dev, UFFDX_DEV_EVENT_REVOKED, PG(R, 1), RID, ps, 0,
			 getpid(), sys_gettid());
	EXPECT_EQ(-EPERM, DEV(CHECK_EXCLUSIVE, PG(R, 1), NULL, 1));
	STATS(s1);
	EXPECT_EQ(s0.revocations + 1, s1.revocations);
	/* wrapping add */
	*w = ~0ULL;
	ASSERT_EQ(0, dev_atomic(self->dev, UFFDX_DEV_ATOMIC_FETCH_ADD, w, 2, 0, &old));
	EXPECT_EQ(~0ULL, old);
	EXPECT_EQ(1, *w);
	EXPECT_EQ(1, dev_event(self->dev, &(struct uffdx_dev_event){ 0 }, WAIT_MS));

	/* compare-exchange that succeeds */
	*w = 100;
	ASSERT_EQ(0, dev_atomic(self->dev, UFFDX_DEV_ATOMIC_CMPXCHG, w, 555, 100, &old));
	EXPECT_EQ(100, old);
	EXPECT_EQ(0, DEV(CHECK_EXCLUSIVE, PG(R, 1), NULL, 1));
	EXPECT_EQ(555, *w);
	EXPECT_EQ(1, dev_event(self->dev, &(struct uffdx_dev_event){ 0 }, WAIT_MS));
	/* and one that fails: the old value, nothing written */
	ASSERT_EQ(0, dev_atomic(self->dev, UFFDX_DEV_ATOMIC_CMPXCHG, w, 777, 100, &old));
	EXPECT_EQ(555, old);
	EXPECT_EQ(555, *w);
	EXPECT_EQ(1, dev_event(self->dev, &(struct uffdx_dev_event){ 0 }, WAIT_MS));
	/* the rest of the page, and the other pages, are as they were */
	EXPECT_EQ(-1, check_pattern(PG(R, 1), 64, 701));
	EXPECT_EQ(-1, check_pattern(R, ps, 700));
	EXPECT_EQ(-1, check_pattern(PG(R, 2), ps, 702));
	/* an atomic on a hole populates it (unarmed) */
	ASSERT_EQ(0, dev_atomic(self->dev, UFFDX_DEV_ATOMIC_FETCH_ADD, PG(R, 5) + 8, 9, 0, &old));
	EXPECT_EQ(0, old);
	EXPECT_EQ(9, *(uint64_t *)(PG(R, 5) + 8));
	/* an armed hole: EFAULT */
	ASSERT_EQ(0, uffdx_arm(self->ctx, RID, 6 * ps, ps, UFFDX_ARM_MISSING));
	EXPECT_EQ(-EFAULT, dev_atomic(self->dev, UFFDX_DEV_ATOMIC_FETCH_ADD, PG(R, 6), 9, 0, NULL));
	EXPECT_EQ(0, event_arrives(self->ctx, QUIET_MS));
}

/* ---- 7. write protection -------------------------------------------------------------- */

static int scan_written(int ctx, uint64_t id, size_t npages, uint8_t *bitmap, size_t bytes)
{
	struct uffdx_scan s;

	memset(&s, 0, sizeof(s));
	memset(bitmap, 0, bytes);
	s.flags = UFFDX_SCAN_BITMAP;
	s.region_id = id;
	s.offset = 0;
	s.len = npages * ps;
	s.out = (uintptr_t)bitmap;
	s.out_len = bytes;
	return uffdx_scan(ctx, &s);
}

TEST_F(dev, wp_async_device_writes_are_recorded)
{
	struct uffdx_region_map w;
	uint8_t bm[1];

	REQUIRE(F_EXCL | UFFDX_FEATURE_WP_ASYNC);
	ASSERT_EQ(0, uffdx_region_map(self->ctx, 8 * ps, UFFDX_REGION_CREATE_WP_ASYNC, &w));
	ASSERT_EQ(0, fill_pages(self->ctx, w.id, 0, 4, 800));
	ASSERT_EQ(0, uffdx_writeprotect(self->ctx, w.id, 0, 8 * ps, UFFDX_WP_PROTECT, NULL));
	ASSERT_EQ(0, scan_written(self->ctx, w.id, 8, bm, 1));
	EXPECT_EQ(0, bm[0]);
	/* an atomic writes page 1 */
	ASSERT_EQ(0, dev_atomic(self->dev, UFFDX_DEV_ATOMIC_FETCH_ADD, PG(w.addr, 1), 1, 0, NULL));
	/* an exclusive page written by DEV_WRITE (page 2), and a mirror write (page 3) */
	if (self->feat & F_MIRROR) {
		ASSERT_EQ(0, dev_cmd(self->dev, UFFDX_IOC_DEV_EXCLUSIVE, PG(w.addr, 2), NULL, 1));
		fill_pattern(self->buf, ps, 812);
		ASSERT_EQ(0, dev_cmd(self->dev, UFFDX_IOC_DEV_WRITE, PG(w.addr, 2), self->buf, 1));
		fill_pattern(self->buf, ps, 813);
		ASSERT_EQ(0, dev_cmd(self->dev, UFFDX_IOC_DEV_WRITE, PG(w.addr, 3), self->buf, 1));
	}
	/* exclusive access alone is no write */
	ASSERT_EQ(0, dev_cmd(self->dev, UFFDX_IOC_DEV_EXCLUSIVE, PG(w.addr, 0), NULL, 1));
	ASSERT_EQ(0, scan_written(self->ctx, w.id, 8, bm, 1));
	EXPECT_EQ((self->feat & F_MIRROR) ? 0x0e : 0x02, bm[0]) TH_LOG("bitmap 0x%02x", bm[0]);
	EXPECT_EQ(0, event_arrives(self->ctx, 0));
	/* the values, from the CPU */
	{
		uint64_t word;

		fill_pattern(self->buf, ps, 801);
		memcpy(&word, self->buf, 8);
		word += 1;
		memcpy(self->buf, &word, 8);
		EXPECT_EQ(0, memcmp(PG(w.addr, 1), self->buf, ps));
	}
	if (self->feat & F_MIRROR) {
		EXPECT_EQ(-1, check_pattern(PG(w.addr, 2), ps, 812));
		EXPECT_EQ(-1, check_pattern(PG(w.addr, 3), ps, 813));
	}
	EXPECT_EQ(-1, check_pattern(PG(w.addr, 0), ps, 800));
	uffdx_region_unmap(&w);
}

TEST_F(dev, wp_sync_refuses_device_writes_and_survives_revocation)
{
	struct uffdx_region_map w;
	struct uffdx_event ev;
	struct accessor *a;
	uint64_t w0;

	REQUIRE(F_EXCL | UFFDX_FEATURE_WP);
	ASSERT_EQ(0, uffdx_region_map(self->ctx, 4 * ps, UFFDX_REGION_CREATE_WP, &w));
	ASSERT_EQ(0, fill_pages(self->ctx, w.id, 0, 3, 820));
	memcpy(&w0, PG(w.addr, 0), 8);
	ASSERT_EQ(0, uffdx_writeprotect(self->ctx, w.id, 0, 2 * ps, UFFDX_WP_PROTECT, NULL));
	/* protected: the atomic and DEV_WRITE are EFAULT, data unchanged */
	EXPECT_EQ(-EFAULT, dev_atomic(self->dev, UFFDX_DEV_ATOMIC_FETCH_ADD, PG(w.addr, 0), 1, 0,
				      NULL));
	if (self->feat & F_MIRROR) {
		memset(self->buf, 0x11, ps);
		EXPECT_EQ(-EFAULT, dev_cmd(self->dev, UFFDX_IOC_DEV_WRITE, PG(w.addr, 0),
					   self->buf, 1));
		/* held exclusive: DEV_WRITE passes the same check */
		ASSERT_EQ(0, dev_cmd(self->dev, UFFDX_IOC_DEV_EXCLUSIVE, PG(w.addr, 1), NULL, 1));
		EXPECT_EQ(-EFAULT, dev_cmd(self->dev, UFFDX_IOC_DEV_WRITE, PG(w.addr, 1),
					   self->buf, 1));
		ASSERT_EQ(0, dev_cmd(self->dev, UFFDX_IOC_DEV_RELEASE, PG(w.addr, 1), NULL, 1));
	}
	EXPECT_EQ(0, event_arrives(self->ctx, QUIET_MS)) TH_LOG("a device write queued an event");
	EXPECT_EQ(0, memcmp(PG(w.addr, 0), &w0, 8));
	EXPECT_EQ(-1, check_pattern(PG(w.addr, 0), ps, 820));
	EXPECT_EQ(-1, check_pattern(PG(w.addr, 1), ps, 821));
	/* an unprotected page of the region takes the atomic */
	EXPECT_EQ(0, dev_atomic(self->dev, UFFDX_DEV_ATOMIC_FETCH_ADD, PG(w.addr, 2), 1, 0, NULL));

	/* exclusive on a protected page, then a CPU write: revoked, then the WP fault */
	ASSERT_EQ(0, dev_cmd(self->dev, UFFDX_IOC_DEV_EXCLUSIVE, PG(w.addr, 0), NULL, 1));
	EXPECT_EQ(0, dev_cmd(self->dev, UFFDX_IOC_DEV_CHECK_EXCLUSIVE, PG(w.addr, 0), NULL, 1));
	a = acc_new(PG(w.addr, 0) + 100, 1, 0x5c);
	ASSERT_NE(NULL, a);
	ASSERT_EQ(0, acc_start_thread(a));
	ASSERT_EQ(0, acc_wait_started(a, WAIT_MS));
	expect_dev_event(_metadata, self->dev, UFFDX_DEV_EVENT_REVOKED, PG(w.addr, 0), w.id, 0,
			 UFFDX_PF_WRITE, getpid(), a->tid);
	ASSERT_EQ(1, wait_event(self->ctx, &ev, WAIT_MS)) TH_LOG("no WP event after revocation");
	EXPECT_EQ(UFFDX_EVENT_PAGEFAULT, ev.type);
	EXPECT_EQ(UFFDX_PF_WP | UFFDX_PF_WRITE, ev.flags);
	EXPECT_EQ((uintptr_t)PG(w.addr, 0), ev.address);
	EXPECT_EQ(w.id, ev.region_id);
	EXPECT_EQ(0, ev.offset);
	EXPECT_TRUE(acc_blocked(a, QUIET_MS)) TH_LOG("the write went through a protected page");
	EXPECT_EQ(-1, check_pattern(PG(w.addr, 0), ps, 820));
	EXPECT_EQ(-EPERM, dev_cmd(self->dev, UFFDX_IOC_DEV_CHECK_EXCLUSIVE, PG(w.addr, 0), NULL, 1));
	/* unprotect: the write completes */
	ASSERT_EQ(0, uffdx_writeprotect(self->ctx, w.id, 0, ps, 0, NULL));
	ASSERT_EQ(0, acc_wait(a, WAIT_MS));
	EXPECT_EQ(0, a->sig);
	EXPECT_EQ(0x5c, PG(w.addr, 0)[100]);
	EXPECT_NO_DEV_EVENT(self->dev);
	acc_free(a);
	uffdx_region_unmap(&w);
}

/* ---- 8. migration ------------------------------------------------------------------ */

TEST_F(dev, migrate_data_snapshot_and_cpu_faults_back)
{
	struct uffdx_dev_stats s0, s1;
	uint8_t st[6], v = 0;
	uint64_t cp = 0;
	int pfd[2];
	long long res0;

	REQUIRE(F_MIGR);
	FILL(0, 5, 900);
	res0 = resident_pages(self->r.fd);
	STATS(s0);
	memset(st, 0xee, sizeof(st));
	ASSERT_EQ(0, dev_cmd2(self->dev, UFFDX_IOC_DEV_MIGRATE_TO_DEV, R, st, 5, &cp, NULL));
	EXPECT_EQ(5, cp);
	EXPECT_EQ(0, memcmp(st, "\1\1\1\1\1", 5));
	EXPECT_EQ(0xee, st[5]);
	STATS(s1);
	EXPECT_EQ(s0.migrated_to_dev + 5, s1.migrated_to_dev);
	EXPECT_EQ(s0.pool_used + 5, s1.pool_used);
	EXPECT_EQ(s0.allocated, s1.allocated);
	EXPECT_EQ(res0, resident_pages(self->r.fd)) TH_LOG("a resident page is the slot's page");
	/* again: already there, so not moved by this command */
	memset(st, 0xee, sizeof(st));
	ASSERT_EQ(0, DEV(MIGRATE_TO_DEV, R, st, 2));
	EXPECT_EQ(0, memcmp(st, "\0\0", 2));
	STATS(s1);
	EXPECT_EQ(s0.pool_used + 5, s1.pool_used);
	if (self->feat & F_MIRROR) {
		uint8_t b[5];

		ASSERT_EQ(0, DEV(SNAPSHOT, R, b, 5));
		for (v = 0; v < 5; v++)
			EXPECT_EQ(UFFDX_DEV_PROT_DEV_LOCAL, PROT_KIND(b[v])) TH_LOG("page %u: 0x%02x",
										   v, b[v]);
		/* the device reads resident pages in place */
		ASSERT_EQ(0, DEV(READ, R, self->buf, 5));
		EXPECT_EQ(-1, bad_page(self->buf, 0, 5, 900));
		EXPECT_EQ(UFFDX_DEV_PROT_DEV_LOCAL, PROT_KIND(snap1(self->dev, R)));
		EXPECT_NO_DEV_EVENT(self->dev);
		STATS(s1);
		EXPECT_EQ(s0.migrated_to_sys, s1.migrated_to_sys);
	}

	/* a CPU read brings page 0 back */
	ASSERT_EQ(0, try_read(R + 10, &v));
	expect_dev_event(_metadata, self->dev, UFFDX_DEV_EVENT_MIGRATED, R, RID, 0, 0, getpid(),
			 sys_gettid());
	EXPECT_EQ(-1, check_pattern(R, ps, 900));
	STATS(s1);
	EXPECT_EQ(s0.migrated_to_sys + 1, s1.migrated_to_sys);
	EXPECT_EQ(s0.pool_used + 4, s1.pool_used);
	if (self->feat & F_MIRROR)
		EXPECT_NE(UFFDX_DEV_PROT_DEV_LOCAL, PROT_KIND(snap1(self->dev, R)));

	/* a CPU write brings page 1 back */
	ASSERT_EQ(0, try_write(PG(R, 1) + 20, 0xab));
	expect_dev_event(_metadata, self->dev, UFFDX_DEV_EVENT_MIGRATED, PG(R, 1), RID, ps,
			 UFFDX_PF_WRITE, getpid(), sys_gettid());
	fill_pattern(self->buf, ps, 901);
	self->buf[20] = 0xab;
	EXPECT_EQ(0, memcmp(PG(R, 1), self->buf, ps));
	STATS(s1);
	EXPECT_EQ(s0.migrated_to_sys + 2, s1.migrated_to_sys);

	/* a kernel-mode read (write() from the page into a pipe) brings page 2 back */
	ASSERT_EQ(0, pipe(pfd));
	ASSERT_EQ((ssize_t)ps, write(pfd[1], PG(R, 2), ps));
	memset(self->buf, 0, ps);
	ASSERT_EQ((ssize_t)ps, read(pfd[0], self->buf, ps));
	EXPECT_EQ(-1, check_pattern(self->buf, ps, 902));
	close(pfd[0]);
	close(pfd[1]);
	expect_dev_event(_metadata, self->dev, UFFDX_DEV_EVENT_MIGRATED, PG(R, 2), RID, 2 * ps,
			 UFFDX_PF_KERNEL, getpid(), sys_gettid());
	STATS(s1);
	EXPECT_EQ(s0.migrated_to_sys + 3, s1.migrated_to_sys);

	/* MIGRATE_TO_SYS copies back, without an event */
	memset(st, 0xee, sizeof(st));
	ASSERT_EQ(0, dev_cmd2(self->dev, UFFDX_IOC_DEV_MIGRATE_TO_SYS, PG(R, 2), st, 3, &cp, NULL));
	EXPECT_EQ(0, memcmp(st, "\0\1\1", 3)) TH_LOG("1 only for the pages it moved");
	STATS(s1);
	EXPECT_EQ(s0.migrated_to_sys + 5, s1.migrated_to_sys);
	EXPECT_EQ(s0.pool_used, s1.pool_used);
	EXPECT_NO_DEV_EVENT(self->dev);
	EXPECT_EQ(-1, bad_page(PG(R, 3), 3, 2, 900));
	EXPECT_NO_DEV_EVENT(self->dev);
	EXPECT_EQ(res0, resident_pages(self->r.fd));
	/* process memory: into device-private memory where the kernel has it */
	memset(self->anon, 3, ps);
	if (self->feat & F_HMM_MIGR) {
		memset(st, 0xee, sizeof(st));
		EXPECT_EQ(0, DEV(MIGRATE_TO_DEV, self->anon, st, 1));
		EXPECT_EQ(1, st[0]);
		if (self->feat & F_MIRROR) {
			uint8_t b;

			ASSERT_EQ(0, DEV(SNAPSHOT, self->anon, &b, 1));
			EXPECT_EQ(UFFDX_DEV_PROT_DEV_LOCAL, b & 0xf0);
		}
		/* a CPU read brings it back, with an event */
		EXPECT_EQ(3, self->anon[5]);
		expect_dev_event(_metadata, self->dev, UFFDX_DEV_EVENT_MIGRATED, self->anon, 0, 0,
				 0, getpid(), sys_gettid());
	} else {
		EXPECT_EQ(-EINVAL, DEV(MIGRATE_TO_DEV, self->anon, st, 1));
		EXPECT_EQ(3, self->anon[5]);
	}
}

TEST_F(dev, migrate_holes_armed_holes_and_poison)
{
	struct uffdx_dev_stats s0, s1;
	struct uffdx_event ev;
	struct accessor *a;
	uint8_t st[3], v = 0xff;
	uint64_t cp = 0;
	int ret;

	REQUIRE(F_MIGR);
	STATS(s0);
	/* an unarmed hole becomes a zeroed device page */
	memset(st, 0xee, sizeof(st));
	ASSERT_EQ(0, dev_cmd2(self->dev, UFFDX_IOC_DEV_MIGRATE_TO_DEV, PG(R, 4), st, 1, &cp, NULL));
	EXPECT_EQ(1, st[0]);
	EXPECT_EQ(1, cp);
	STATS(s1);
	EXPECT_EQ(s0.allocated + 1, s1.allocated);
	EXPECT_EQ(s0.pool_used + 1, s1.pool_used);
	if (self->feat & F_MIRROR)
		EXPECT_EQ(UFFDX_DEV_PROT_DEV_LOCAL, PROT_KIND(snap1(self->dev, PG(R, 4))));
	ASSERT_EQ(0, try_read(PG(R, 4), &v));
	EXPECT_EQ(0, v);
	EXPECT_TRUE(is_zero(PG(R, 4), ps));
	expect_dev_event(_metadata, self->dev, UFFDX_DEV_EVENT_MIGRATED, PG(R, 4), RID, 4 * ps, 0,
			 getpid(), sys_gettid());

	/* an armed hole is not migrated; the CPU's touch reaches the handler */
	ASSERT_EQ(0, uffdx_arm(self->ctx, RID, 5 * ps, ps, UFFDX_ARM_MISSING));
	FILL(6, 1, 950);
	memset(st, 0xee, sizeof(st));
	ret = dev_cmd2(self->dev, UFFDX_IOC_DEV_MIGRATE_TO_DEV, PG(R, 5), st, 2, &cp, NULL);
	EXPECT_EQ(0, ret) TH_LOG("per-page migration: %s", strerror(-ret));
	EXPECT_EQ(0, st[0]);
	EXPECT_EQ(1, st[1]);
	EXPECT_EQ(0xee, st[2]);
	EXPECT_EQ(1, cp);
	EXPECT_EQ(0, event_arrives(self->ctx, 0));
	STATS(s1);
	EXPECT_EQ(s0.allocated + 1, s1.allocated);
	a = acc_new(PG(R, 5) + 1, 0, 0);
	ASSERT_NE(NULL, a);
	ASSERT_EQ(0, acc_start_thread(a));
	ASSERT_EQ(1, wait_event(self->ctx, &ev, WAIT_MS)) TH_LOG("no missing-fault event");
	EXPECT_EQ((uintptr_t)PG(R, 5), ev.address);
	EXPECT_EQ(RID, ev.region_id);
	EXPECT_EQ(5 * ps, ev.offset);
	EXPECT_EQ(0, ev.flags & UFFDX_PF_WRITE);
	FILL(5, 1, 960);
	ASSERT_EQ(0, acc_wait(a, WAIT_MS));
	EXPECT_EQ(0, a->sig);
	EXPECT_EQ(-1, check_pattern(PG(R, 5), ps, 965));
	acc_free(a);
	EXPECT_NO_DEV_EVENT(self->dev);

	/* poison is not migrated */
	if (self->feat & UFFDX_FEATURE_POISON) {
		int64_t res = 0;

		ASSERT_EQ(0, uffdx_poison(self->ctx, RID, 8 * ps, ps, 0, &res));
		st[0] = 0xee;
		EXPECT_EQ(0, DEV(MIGRATE_TO_DEV, PG(R, 8), st, 1));
		EXPECT_EQ(0, st[0]);
		EXPECT_EQ(SIGBUS, try_read(PG(R, 8), &v));
	}
	/* without a status buffer */
	FILL(9, 1, 970);
	EXPECT_EQ(0, DEV(MIGRATE_TO_DEV, PG(R, 9), NULL, 1));
	EXPECT_EQ(-1, check_pattern(PG(R, 9), ps, 979));
	expect_dev_event(_metadata, self->dev, UFFDX_DEV_EVENT_MIGRATED, PG(R, 9), RID, 9 * ps, 0,
			 getpid(), sys_gettid());
}

TEST_F(dev, migrate_discard_drops)
{
	struct uffdx_dev_stats s0, s1;
	long long res0;
	uint8_t v = 0xff;

	REQUIRE(F_MIGR);
	FILL(0, 3, 1000);
	res0 = resident_pages(self->r.fd);
	ASSERT_EQ(0, DEV(MIGRATE_TO_DEV, R, NULL, 3));
	STATS(s0);
	ASSERT_EQ(0, discard(self->ctx, RID, 1, 1));
	{
		struct uffdx_dev_event ev;

		ASSERT_EQ(1, dev_event(self->dev, &ev, WAIT_MS));
		check_dev_event(_metadata, &ev, UFFDX_DEV_EVENT_DROPPED, PG(R, 1), RID, ps, 0, 0, 0);
		EXPECT_TRUE(ev.pid == 0 || ev.pid == (uint32_t)getpid()) TH_LOG("pid %u", ev.pid);
		EXPECT_EQ(-EAGAIN, dev_read_nonblock(self->dev));
	}
	STATS(s1);
	EXPECT_EQ(s0.pool_used - 1, s1.pool_used);
	EXPECT_EQ(s0.migrated_to_sys, s1.migrated_to_sys);
	EXPECT_EQ(res0 - 1, resident_pages(self->r.fd));
	if (self->feat & F_MIRROR)
		EXPECT_EQ(UFFDX_DEV_PROT_NONE, snap1(self->dev, PG(R, 1)));
	ASSERT_EQ(0, try_read(PG(R, 1), &v));
	EXPECT_EQ(0, v);
	EXPECT_TRUE(is_zero(PG(R, 1), ps));
	EXPECT_NO_DEV_EVENT(self->dev);
	/* MOVE refuses a resident page */
	if (self->feat & UFFDX_FEATURE_MOVE) {
		int64_t res = 0;

		EXPECT_EQ(-EBUSY, uffdx_move(self->ctx, RID, 12 * ps, RID, 0, ps, 0, &res));
		EXPECT_EQ(-EBUSY, res);
	}
	/* the others are still there and come back right */
	EXPECT_EQ(-1, check_pattern(R, ps, 1000));
	EXPECT_EQ(-1, check_pattern(PG(R, 2), ps, 1002));
	{
		struct uffdx_dev_event ev[2];

		ASSERT_EQ(1, dev_event(self->dev, &ev[0], WAIT_MS));
		ASSERT_EQ(1, dev_event(self->dev, &ev[1], WAIT_MS));
		EXPECT_EQ(UFFDX_DEV_EVENT_MIGRATED, ev[0].type);
		EXPECT_EQ(UFFDX_DEV_EVENT_MIGRATED, ev[1].type);
	}
	STATS(s1);
	EXPECT_EQ(s0.pool_used - 3, s1.pool_used);
}

TEST_F(dev, migrate_pool_exhaustion)
{
	struct uffdx_dev_stats s;
	long long old = -1;
	uint8_t st[7];
	uint64_t cp = 0;
	int dev2, ret;

	REQUIRE(F_MIGR);
	if (read_ll_file(POOL_PARAM, &old) < 0)
		SKIP(return, "no %s", POOL_PARAM);
	if (geteuid() != 0 || write_ll_file(POOL_PARAM, old) < 0)
		SKIP(return, "%s is not writable here", POOL_PARAM);
	ret = write_ll_file(POOL_PARAM, 4);
	ASSERT_EQ(0, ret);
	dev2 = dev_create(self->ctx);
	write_ll_file(POOL_PARAM, old);		/* restored before anything can fail */
	ASSERT_LE(0, dev2);
	ASSERT_EQ(0, dev_stats(dev2, &s));
	EXPECT_EQ(4, s.pool_pages);
	EXPECT_EQ(0, s.pool_used);
	/* the fixture's device, made before, keeps its own bound */
	STATS(s);
	EXPECT_EQ((uint64_t)old, s.pool_pages);

	FILL(0, 6, 1100);
	memset(st, 0xee, sizeof(st));
	ret = dev_cmd2(dev2, UFFDX_IOC_DEV_MIGRATE_TO_DEV, R, st, 6, &cp, NULL);
	EXPECT_EQ(-ENOMEM, ret);
	EXPECT_EQ(4, cp);
	EXPECT_EQ(0, memcmp(st, "\1\1\1\1\0\0", 6));
	EXPECT_EQ(0xee, st[6]);
	ASSERT_EQ(0, dev_stats(dev2, &s));
	EXPECT_EQ(4, s.pool_used);
	EXPECT_EQ(4, s.migrated_to_dev);
	/* the pages left in system memory are touched without an event */
	EXPECT_EQ(-1, bad_page(PG(R, 4), 4, 2, 1100));
	EXPECT_EQ(0, wait_fd(dev2, POLLIN, QUIET_MS));
	/* a hole does not fit either */
	st[0] = 0xee;
	EXPECT_EQ(-ENOMEM, dev_cmd(dev2, UFFDX_IOC_DEV_MIGRATE_TO_DEV, PG(R, 10), st, 1));
	EXPECT_EQ(0, st[0]);
	/* one back, then one more fits */
	ASSERT_EQ(0, dev_cmd(dev2, UFFDX_IOC_DEV_MIGRATE_TO_SYS, PG(R, 0), NULL, 1));
	st[0] = 0xee;
	EXPECT_EQ(0, dev_cmd(dev2, UFFDX_IOC_DEV_MIGRATE_TO_DEV, PG(R, 4), st, 1));
	EXPECT_EQ(1, st[0]);
	ASSERT_EQ(0, dev_stats(dev2, &s));
	EXPECT_EQ(4, s.pool_used);
	/* all of it right */
	EXPECT_EQ(-1, bad_page(R, 0, 6, 1100));
	close(dev2);
}

/* ---- 9. lifetime -------------------------------------------------------------------- */

TEST_F(dev, close_device_holding_pages)
{
	long long res0;
	uint8_t v = 0;

	REQUIRE(F_EXCL | F_MIGR);
	FILL(0, 4, 1200);
	res0 = resident_pages(self->r.fd);
	ASSERT_EQ(0, DEV(EXCLUSIVE, R, NULL, 2));
	ASSERT_EQ(0, DEV(MIGRATE_TO_DEV, PG(R, 2), NULL, 2));
	ASSERT_EQ(0, DEV(MIGRATE_TO_DEV, PG(R, 6), NULL, 1));	/* a hole */
	ASSERT_EQ(0, dev_atomic(self->dev, UFFDX_DEV_ATOMIC_FETCH_ADD, PG(R, 1) + 8, 5, 0, NULL));
	close(self->dev);
	self->dev = -1;
	/* ordinary pages again, with their data; resident ones stay, as system pages */
	EXPECT_EQ(-1, bad_page(R, 0, 1, 1200));
	{
		uint64_t word;

		fill_pattern(self->buf, ps, 1201);
		memcpy(&word, self->buf + 8, 8);
		word += 5;
		memcpy(self->buf + 8, &word, 8);
		EXPECT_EQ(0, memcmp(PG(R, 1), self->buf, ps)) TH_LOG("the atomic's page");
	}
	EXPECT_EQ(-1, bad_page(PG(R, 2), 2, 2, 1200));
	ASSERT_EQ(0, try_read(PG(R, 6), &v));
	EXPECT_TRUE(is_zero(PG(R, 6), ps));
	EXPECT_EQ(res0 + 1, resident_pages(self->r.fd));
	/* nothing is held: MOVE and DISCARD treat them as any page */
	if (self->feat & UFFDX_FEATURE_MOVE) {
		int64_t res = 0;

		EXPECT_EQ(0, uffdx_move(self->ctx, RID, 12 * ps, RID, 0, 4 * ps, 0, &res));
		EXPECT_EQ((int64_t)(4 * ps), res);
		EXPECT_EQ(-1, bad_page(PG(R, 12), 0, 1, 1200));
		EXPECT_EQ(-1, bad_page(PG(R, 14), 2, 2, 1200));
	}
	EXPECT_EQ(0, discard(self->ctx, RID, 0, NPAGES));
}

TEST_F(dev, close_region_and_unmap_while_held_then_device)
{
	struct uffdx_region_map m;
	struct uffdx_dev_stats s;
	void *addr;
	int ret;

	REQUIRE(F_EXCL | F_MIGR);
	ASSERT_EQ(0, uffdx_region_map(self->ctx, 8 * ps, 0, &m));
	ASSERT_EQ(0, fill_pages(self->ctx, m.id, 0, 6, 1300));
	ASSERT_EQ(0, dev_cmd(self->dev, UFFDX_IOC_DEV_EXCLUSIVE, m.addr, NULL, 2));
	ASSERT_EQ(0, dev_cmd(self->dev, UFFDX_IOC_DEV_MIGRATE_TO_DEV, PG(m.addr, 2), NULL, 3));
	addr = m.addr;
	ASSERT_EQ(0, uffdx_region_unmap(&m));	/* munmap and close */
	/* the holds stay; the mirror of the address is gone */
	if (self->feat & F_MIRROR)
		EXPECT_EQ(-EFAULT, dev_cmd(self->dev, UFFDX_IOC_DEV_READ, addr, self->buf, 1));
	EXPECT_EQ(-EPERM, dev_cmd(self->dev, UFFDX_IOC_DEV_CHECK_EXCLUSIVE, addr, NULL, 1));
	STATS(s);
	EXPECT_EQ(3, s.pool_used);
	EXPECT_NO_DEV_EVENT(self->dev);
	/* the context still works, the region still counts until the device lets go */
	ret = discard(self->ctx, m.id, 0, 1);
	EXPECT_TRUE(ret == 0 || ret == -ENOENT || ret == -EINVAL) TH_LOG("%s", strerror(-ret));
	close(self->dev);
	self->dev = -1;
	/* a new region and device work */
	ASSERT_EQ(0, uffdx_region_map(self->ctx, 2 * ps, 0, &m));
	self->dev = dev_create(self->ctx);
	ASSERT_LE(0, self->dev);
	ASSERT_EQ(0, fill_pages(self->ctx, m.id, 0, 1, 1310));
	EXPECT_EQ(0, dev_cmd(self->dev, UFFDX_IOC_DEV_EXCLUSIVE, m.addr, NULL, 1));
	uffdx_region_unmap(&m);
}

TEST_F(dev, close_context_first)
{
	struct uffdx_dev_stats s;
	uint8_t v = 0;

	REQUIRE(F_EXCL);
	FILL(0, 3, 1400);
	ASSERT_EQ(0, DEV(EXCLUSIVE, R, NULL, 1));
	close(self->ctx);
	self->ctx = -1;
	/* the device and its holds are unaffected */
	EXPECT_EQ(0, DEV(CHECK_EXCLUSIVE, R, NULL, 1));
	ASSERT_EQ(0, try_read(R + 3, &v));
	expect_dev_event(_metadata, self->dev, UFFDX_DEV_EVENT_REVOKED, R, RID, 0, 0, getpid(),
			 sys_gettid());
	EXPECT_EQ(-1, check_pattern(R, ps, 1400));
	/* new commands still work on the region */
	EXPECT_EQ(0, DEV(EXCLUSIVE, PG(R, 1), NULL, 2));
	EXPECT_EQ(0, dev_atomic(self->dev, UFFDX_DEV_ATOMIC_FETCH_ADD, PG(R, 2), 1, 0, NULL));
	if (self->feat & F_MIRROR) {
		ASSERT_EQ(0, DEV(READ, PG(R, 1), self->buf, 1));
		EXPECT_EQ(-1, check_pattern(self->buf, ps, 1401));
	}
	if (self->feat & F_MIGR) {
		EXPECT_EQ(0, DEV(MIGRATE_TO_DEV, R, NULL, 1));
		EXPECT_EQ(-1, check_pattern(R, ps, 1400));
		EXPECT_EQ(1, dev_event(self->dev, &(struct uffdx_dev_event){ 0 }, WAIT_MS));
	}
	STATS(s);
	EXPECT_LE(1, s.revocations);
	close(self->dev);
	self->dev = -1;
	/* with the device gone the pages are ordinary, the context gone: still readable */
	EXPECT_EQ(-1, check_pattern(PG(R, 1), ps, 1401));
}

TEST_F(dev, inherited_fd_commands_eperm)
{
	int st = 0;
	pid_t pid;

	FILL(0, 2, 1500);
	memset(self->anon, 5, ps);
	if (self->feat & F_EXCL)
		ASSERT_EQ(0, DEV(EXCLUSIVE, PG(R, 1), NULL, 1));
	fflush(stdout);
	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0) {
		struct uffdx_dev_stats cs;
		unsigned long nrs[] = { UFFDX_IOC_DEV_READ, UFFDX_IOC_DEV_WRITE,
					UFFDX_IOC_DEV_SNAPSHOT, UFFDX_IOC_DEV_MIGRATE_TO_DEV,
					UFFDX_IOC_DEV_MIGRATE_TO_SYS, UFFDX_IOC_DEV_EXCLUSIVE,
					UFFDX_IOC_DEV_CHECK_EXCLUSIVE, UFFDX_IOC_DEV_RELEASE };
		uint64_t need[] = { F_MIRROR, F_MIRROR, F_MIRROR, F_MIGR, F_MIGR,
				    F_EXCL, F_EXCL, F_EXCL };
		unsigned int i;

		for (i = 0; i < sizeof(nrs) / sizeof(nrs[0]); i++) {
			if (!(self->feat & need[i]))
				continue;
			if (dev_cmd(self->dev, nrs[i], self->anon, self->buf, 1) != -EPERM)
				_exit(10 + i);
			if (dev_cmd(self->dev, nrs[i], R, self->buf, 1) != -EPERM)
				_exit(30 + i);
		}
		if ((self->feat & F_EXCL) &&
		    dev_atomic(self->dev, UFFDX_DEV_ATOMIC_FETCH_ADD, R, 1, 0, NULL) != -EPERM)
			_exit(50);
		if (dev_stats(self->dev, &cs))
			_exit(51);
		if (wait_fd(self->dev, POLLIN, 0) != 0)
			_exit(52);
		if (dev_read_nonblock(self->dev) != -EAGAIN)
			_exit(53);
		_exit(0);
	}
	ASSERT_EQ(0, wait_child(pid, &st, WAIT_MS));
	ASSERT_TRUE(WIFEXITED(st));
	EXPECT_EQ(0, WEXITSTATUS(st)) TH_LOG("the child's check %d failed", WEXITSTATUS(st));
	/* nothing the child tried happened */
	EXPECT_EQ(5, self->anon[0]);
	EXPECT_EQ(-1, bad_page(R, 0, 1, 1500));
	if (self->feat & F_EXCL)
		EXPECT_EQ(0, DEV(CHECK_EXCLUSIVE, PG(R, 1), NULL, 1));
	EXPECT_NO_DEV_EVENT(self->dev);
}

TEST(passed_fd_eperm_then_creator_exits)
{
	struct uffdx_dev_stats st;
	int sv[2], fd, cst = 0, ret;
	uint64_t addr = 0;
	pid_t pid;

	SKIP_IF_NO_DEVICE();
	if (!(supported() & F_MIRROR))
		SKIP(return, "needs HMM_MIRROR");
	ASSERT_EQ(0, socketpair(AF_UNIX, SOCK_STREAM, 0, sv));
	fflush(stdout);
	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0) {
		uint8_t *m;
		int ctx, dev;
		char c;

		close(sv[0]);
		ctx = ctx_open(dev_features(0), 0);
		if (ctx < 0)
			_exit(2);
		dev = dev_create(ctx);
		if (dev < 0)
			_exit(3);
		m = mmap(NULL, ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (m == MAP_FAILED)
			_exit(4);
		memset(m, 0x3c, ps);
		if (dev_cmd(dev, UFFDX_IOC_DEV_READ, m, m, 1))	/* its own: fine */
			_exit(5);
		addr = (uintptr_t)m;
		if (write(sv[1], &addr, sizeof(addr)) != sizeof(addr))
			_exit(6);
		if (send_fd(sv[1], dev))
			_exit(7);
		close(dev);
		close(ctx);
		/* wait for the parent's word, then exit */
		if (read_timeout(sv[1], &c, 1, 2 * WAIT_MS) != 1)
			_exit(8);
		_exit(0);
	}
	close(sv[1]);
	ASSERT_EQ((ssize_t)sizeof(addr), read_timeout(sv[0], &addr, sizeof(addr), WAIT_MS));
	fd = recv_fd(sv[0], WAIT_MS);
	ASSERT_LE(0, fd);
	/* another mm: EPERM, whatever the address */
	EXPECT_EQ(-EPERM, dev_cmd(fd, UFFDX_IOC_DEV_READ, (void *)(uintptr_t)addr, &st, 1));
	EXPECT_EQ(-EPERM, dev_cmd(fd, UFFDX_IOC_DEV_SNAPSHOT, (void *)(uintptr_t)addr, &st, 1));
	/* the counters, poll and read() are the holder's */
	ASSERT_EQ(0, dev_stats(fd, &st));
	EXPECT_LE(1, st.faults);
	EXPECT_EQ(0, wait_fd(fd, POLLIN, 0));
	EXPECT_EQ(-EAGAIN, dev_read_nonblock(fd));
	/* the creator exits */
	ASSERT_EQ(1, write(sv[0], "x", 1));
	ASSERT_EQ(0, wait_child(pid, &cst, WAIT_MS));
	EXPECT_TRUE(WIFEXITED(cst) && WEXITSTATUS(cst) == 0) TH_LOG("child 0x%x", cst);
	ret = dev_cmd(fd, UFFDX_IOC_DEV_READ, (void *)(uintptr_t)addr, &st, 1);
	EXPECT_TRUE(ret == -ESRCH || ret == -EPERM) TH_LOG("after exit: %s", strerror(-ret));
	ASSERT_EQ(0, dev_stats(fd, &st));
	EXPECT_EQ(-EAGAIN, dev_read_nonblock(fd));
	close(fd);
	close(sv[0]);
}

/*
 * ESRCH: the mirrored mm is gone while the same process still holds the
 * fd.  An exec replaces the mm and keeps the fd (CLOEXEC cleared); the new
 * image is this program again, told by argv to check.
 */
static int esrch_child_check(int fd)
{
	struct uffdx_dev_stats st;
	uint8_t b[1];
	int ret;

	ret = dev_cmd(fd, UFFDX_IOC_DEV_SNAPSHOT, (void *)(uintptr_t)0x10000, b, 1);
	if (ret != -ESRCH && ret != -EPERM)
		return 20;
	if (dev_stats(fd, &st))
		return 21;
	return ret == -ESRCH ? 0 : 1;	/* 1: EPERM came first */
}

TEST(mirrored_mm_gone_after_exec)
{
	int st = 0, fd, ctx;
	pid_t pid;

	SKIP_IF_NO_DEVICE();
	if (!(supported() & F_MIRROR))
		SKIP(return, "needs HMM_MIRROR");
	fflush(stdout);
	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0) {
		char arg[32];
		char *argv[] = { (char *)"device", (char *)"--esrch-child", arg, NULL };

		ctx = ctx_open(dev_features(0), 0);
		if (ctx < 0)
			_exit(2);
		fd = dev_create(ctx);
		if (fd < 0)
			_exit(3);
		close(ctx);
		if (fcntl(fd, F_SETFD, 0))
			_exit(4);
		snprintf(arg, sizeof(arg), "%d", fd);
		execv("/proc/self/exe", argv);
		_exit(5);
	}
	ASSERT_EQ(0, wait_child(pid, &st, WAIT_MS));
	ASSERT_TRUE(WIFEXITED(st));
	EXPECT_TRUE(WEXITSTATUS(st) == 0 || WEXITSTATUS(st) == 1) TH_LOG("check %d", WEXITSTATUS(st));
	if (WEXITSTATUS(st) == 1)
		TH_LOG("after exec: EPERM (another mm) rather than ESRCH");
}

/* ---- 10. process memory through the kernel's HMM helpers (hmm.c) ------------------ */

/*
 * Allocate on empty, process memory: untouched and zero-page entries of
 * anonymous memory get device pages; a range registered with the kernel's
 * own userfaultfd for missing faults is not populated
 * (migrate_vma_insert_page() backs off), so the fault reaches its handler.
 */
TEST_F(dev, hmm_migrate_allocates_on_empty_but_not_under_userfaultfd)
{
	struct uffdio_api api = { .api = UFFD_API };
	struct uffdio_register reg;
	struct uffdx_dev_stats s0, s1;
	uint8_t st[4], b[4];
	uint8_t *u;
	int uffd;

	REQUIRE(F_HMM_MIGR);
	STATS(s0);
	/* page 0 untouched, page 1 the zero page (read), page 2 written */
	EXPECT_EQ(0, self->anon[ps]);
	self->anon[2 * ps] = 9;
	memset(st, 0xee, sizeof(st));
	ASSERT_EQ(0, DEV(MIGRATE_TO_DEV, self->anon, st, 3));
	EXPECT_EQ(0, memcmp(st, "\1\1\1", 3)) TH_LOG("status %u %u %u", st[0], st[1], st[2]);
	STATS(s1);
	EXPECT_EQ(s0.migrated_to_dev + 3, s1.migrated_to_dev);
	EXPECT_LE(s0.allocated + 1, s1.allocated) TH_LOG("the empty entry got a device page");
	if (self->feat & F_MIRROR) {
		ASSERT_EQ(0, DEV(SNAPSHOT, self->anon, b, 3));
		EXPECT_EQ(UFFDX_DEV_PROT_DEV_LOCAL, b[0] & 0xf0);
		EXPECT_EQ(UFFDX_DEV_PROT_DEV_LOCAL, b[2] & 0xf0);
	}
	EXPECT_TRUE(is_zero(self->anon, 2 * ps));
	EXPECT_EQ(9, self->anon[2 * ps]);

	/* under the kernel's userfaultfd (missing): not populated */
	uffd = syscall(__NR_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (uffd < 0)
		SKIP(return, "userfaultfd: %s", strerror(errno));
	ASSERT_EQ(0, ioctl(uffd, UFFDIO_API, &api));
	u = mmap(NULL, 4 * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, u);
	reg.range.start = (uintptr_t)u;
	reg.range.len = 4 * ps;
	reg.mode = UFFDIO_REGISTER_MODE_MISSING;
	ASSERT_EQ(0, ioctl(uffd, UFFDIO_REGISTER, &reg));
	memset(st, 0xee, sizeof(st));
	ASSERT_EQ(0, DEV(MIGRATE_TO_DEV, u, st, 4));
	EXPECT_EQ(0, memcmp(st, "\0\0\0\0", 4)) TH_LOG("status %u %u", st[0], st[1]);
	if (self->feat & F_MIRROR) {
		ASSERT_EQ(0, DEV(SNAPSHOT, u, b, 4));
		EXPECT_EQ(UFFDX_DEV_PROT_NONE, b[0]);
	}
	/* nothing was queued on the userfaultfd, and nothing populated */
	{
		struct uffd_msg msg;

		EXPECT_EQ(-1, read(uffd, &msg, sizeof(msg)));
		EXPECT_EQ(EAGAIN, errno);
	}
	munmap(u, 4 * ps);
	close(uffd);
}

/*
 * fork() of a process whose page the device holds exclusive: the parent's
 * entry is restored (the device loses it, counted and told), and both
 * processes keep their data through the COW that follows.
 */
TEST_F(dev, hmm_exclusive_fork_cow)
{
	struct uffdx_dev_stats s0, s1;
	struct uffdx_dev_event ev;
	uint64_t old = 0;
	int status;
	pid_t pid;

	REQUIRE(F_HMM_EXCL);
	memset(self->anon, 0x41, ps);
	ASSERT_EQ(0, DEV(EXCLUSIVE, self->anon, NULL, 1));
	ASSERT_EQ(0, DEV(CHECK_EXCLUSIVE, self->anon, NULL, 1));
	STATS(s0);
	pid = fork();
	ASSERT_LE(0, pid);
	if (!pid) {
		int ok = self->anon[0] == 0x41 && self->anon[ps - 1] == 0x41;

		memset(self->anon, 0x42, ps);
		_exit(ok && self->anon[7] == 0x42 ? 0 : 1);
	}
	ASSERT_EQ(0, wait_child(pid, &status, WAIT_MS));
	EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) TH_LOG("child saw wrong data");
	/* the parent's data is its own */
	EXPECT_EQ(0x41, self->anon[0]);
	EXPECT_EQ(0x41, self->anon[ps - 1]);
	EXPECT_EQ(-EPERM, DEV(CHECK_EXCLUSIVE, self->anon, NULL, 1));
	STATS(s1);
	EXPECT_EQ(s0.revocations + 1, s1.revocations);
	ASSERT_EQ(1, dev_event(self->dev, &ev, WAIT_MS));
	EXPECT_EQ(UFFDX_DEV_EVENT_REVOKED, ev.type);
	EXPECT_EQ((uintptr_t)self->anon, ev.address);
	EXPECT_EQ(0, ev.region_id);
	/* and it can be taken again: an atomic on the parent's page */
	EXPECT_EQ(0, dev_atomic(self->dev, UFFDX_DEV_ATOMIC_FETCH_ADD, self->anon, 1, 0, &old));
	EXPECT_EQ(0x4141414141414141ULL, old);
	EXPECT_EQ(0x42, self->anon[0]);
}

/* ---- 10. stress-lite: device and CPU atomics on the same words ---------------------------- */

#define SPAGES		8
#define STRESS_MS	2500

struct stress {
	uint8_t *base;
	int dev;
	volatile int stop;
	uint64_t cpu[2][SPAGES];
	uint64_t devn[SPAGES];
	volatile uint64_t progress[3];
	volatile uint64_t dev_fail;
	volatile int dev_err;
};

struct cpu_arg {
	struct stress *s;
	int idx;
};

static void *stress_cpu(void *p)
{
	struct cpu_arg *a = p;
	struct stress *s = a->s;
	uint64_t x = 0x9e3779b97f4a7c15ull * (uint64_t)(a->idx + 1);

	while (!__atomic_load_n(&s->stop, __ATOMIC_RELAXED)) {
		int pg;

		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		pg = (int)(x % SPAGES);
		__atomic_fetch_add((uint64_t *)PG(s->base, pg), 1, __ATOMIC_SEQ_CST);
		s->cpu[a->idx][pg]++;
		/* a plain read of the rest of the page too */
		(void)*(volatile uint8_t *)(PG(s->base, pg) + 64 + (x & 1023));
		__atomic_store_n(&s->progress[a->idx], s->progress[a->idx] + 1, __ATOMIC_RELAXED);
	}
	return NULL;
}

static void *stress_dev(void *p)
{
	struct stress *s = p;
	uint64_t n = 0;

	while (!__atomic_load_n(&s->stop, __ATOMIC_RELAXED)) {
		int pg = (int)(n % SPAGES), ret;

		if (n % 5 == 0) {
			ret = dev_cmd(s->dev, UFFDX_IOC_DEV_EXCLUSIVE, PG(s->base, pg), NULL, 1);
			if (ret) {
				s->dev_fail++;
				s->dev_err = ret;
			}
		}
		ret = dev_atomic(s->dev, UFFDX_DEV_ATOMIC_FETCH_ADD, PG(s->base, pg), 1, 0, NULL);
		if (ret) {
			s->dev_fail++;
			s->dev_err = ret;
		} else {
			s->devn[pg]++;
		}
		if (n % 7 == 3)
			dev_cmd(s->dev, UFFDX_IOC_DEV_RELEASE, PG(s->base, pg), NULL, 1);
		n++;
		__atomic_store_n(&s->progress[2], n, __ATOMIC_RELAXED);
	}
	return NULL;
}

TEST_F_TIMEOUT(dev, stress_device_and_cpu_atomics, 60)
{
	struct stress *s;
	struct cpu_arg ca[2];
	pthread_t th[3];
	struct uffdx_dev_stats st;
	uint64_t end, revoked = 0, other = 0;
	uint64_t last[3] = { 0, 0, 0 };
	int i, stalled = 0;

	REQUIRE(F_EXCL);
	s = calloc(1, sizeof(*s));
	ASSERT_NE(NULL, s);
	s->base = R;
	s->dev = self->dev;
	FILL(0, SPAGES, 1600);
	for (i = 0; i < SPAGES; i++)
		*(uint64_t *)PG(R, i) = 0;
	for (i = 0; i < 2; i++) {
		ca[i].s = s;
		ca[i].idx = i;
		ASSERT_EQ(0, pthread_create(&th[i], NULL, stress_cpu, &ca[i]));
	}
	ASSERT_EQ(0, pthread_create(&th[2], NULL, stress_dev, s));
	/* run for STRESS_MS, checking that every thread keeps moving */
	end = now_ns() + (uint64_t)STRESS_MS * 1000000ull;
	while (now_ns() < end) {
		uint64_t p[3];

		sleep_ms(250);
		for (i = 0; i < 3; i++)
			p[i] = __atomic_load_n(&s->progress[i], __ATOMIC_RELAXED);
		if (p[0] == last[0] || p[1] == last[1] || p[2] == last[2])
			stalled++;
		else
			stalled = 0;
		memcpy(last, p, sizeof(last));
		if (stalled >= 8)	/* 2 s without progress of some thread */
			break;
	}
	__atomic_store_n(&s->stop, 1, __ATOMIC_SEQ_CST);
	for (i = 0; i < 3; i++)
		pthread_join(th[i], NULL);
	EXPECT_LT(stalled, 8) TH_LOG("no progress: cpu %llu %llu, device %llu",
				     (unsigned long long)last[0], (unsigned long long)last[1],
				     (unsigned long long)last[2]);
	EXPECT_LT(0, s->progress[0]);
	EXPECT_LT(0, s->progress[1]);
	EXPECT_LT(0, s->progress[2]);
	EXPECT_EQ(0, s->dev_fail) TH_LOG("device commands failed: last %s",
					 strerror(-s->dev_err));
	for (i = 0; i < SPAGES; i++) {
		uint64_t want = s->cpu[0][i] + s->cpu[1][i] + s->devn[i];
		uint64_t got = __atomic_load_n((uint64_t *)PG(R, i), __ATOMIC_SEQ_CST);

		EXPECT_EQ(want, got) TH_LOG("page %d: cpu %llu + %llu, device %llu", i,
					    (unsigned long long)s->cpu[0][i],
					    (unsigned long long)s->cpu[1][i],
					    (unsigned long long)s->devn[i]);
		/* the rest of each page is untouched */
		fill_pattern(self->buf, ps, 1600 + i);
		EXPECT_EQ(0, memcmp(PG(R, i) + 8, self->buf + 8, ps - 8));
	}
	ASSERT_EQ(0, DEV(RELEASE, R, NULL, SPAGES));
	/* every revocation is an event, or counted lost */
	ASSERT_EQ(0, set_nonblock(self->dev));
	for (;;) {
		struct uffdx_dev_event ev[64];
		ssize_t n = read(self->dev, ev, sizeof(ev));
		int k;

		if (n <= 0)
			break;
		for (k = 0; k < n / (ssize_t)sizeof(ev[0]); k++) {
			if (ev[k].type == UFFDX_DEV_EVENT_REVOKED)
				revoked++;
			else
				other++;
		}
	}
	STATS(st);
	EXPECT_LT(0, st.revocations) TH_LOG("the CPU never revoked in %d ms", STRESS_MS);
	EXPECT_EQ(st.revocations, revoked + st.events_lost);
	EXPECT_EQ(0, other);
	TH_LOG("cpu %llu + %llu, device %llu atomics; %llu revocations, %llu lost",
	       (unsigned long long)s->progress[0], (unsigned long long)s->progress[1],
	       (unsigned long long)s->progress[2], (unsigned long long)st.revocations,
	       (unsigned long long)st.events_lost);
	free(s);
}

int main(int argc, char **argv)
{
	if (argc == 3 && !strcmp(argv[1], "--esrch-child"))
		return esrch_child_check(atoi(argv[2]));
	return test_harness_run(argc, argv);
}
