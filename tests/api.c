// SPDX-License-Identifier: GPL-2.0
/*
 * uffdx API tests (issue 2): negotiation, argument checking, contexts used
 * by many threads and processes, fork, exit.
 *
 * The kernel side is /dev/uffdx; see uapi/linux/uffdx.h and docs/design.md.
 */
#include "helpers.h"

#include <fcntl.h>
#include <linux/capability.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <grp.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kselftest_harness.h"

#ifndef UFFDX_EXPECTED_VERSION
#error "build with -DUFFDX_EXPECTED_VERSION=\"x.y.z\" (from dkms.conf)"
#endif

/* What DEFAULT_FEATURES (regions, missing faults, poison) grant. */
#define DEFAULT_CTX_IOCTLS ((1ULL << _UFFDX_API) | (1ULL << _UFFDX_REGION_CREATE) | \
			    (1ULL << _UFFDX_ARM) | (1ULL << _UFFDX_DISARM) | \
			    (1ULL << _UFFDX_COPY) | (1ULL << _UFFDX_ZERO) | \
			    (1ULL << _UFFDX_POISON) | (1ULL << _UFFDX_WAKE) | \
			    (1ULL << _UFFDX_DISCARD) | (1ULL << _UFFDX_RESOLVE))
/* What UFFDX_FEATURE_MOVE adds. */
#define MOVE_IOCTLS ((1ULL << _UFFDX_MOVE) | (1ULL << _UFFDX_MOVE_ADDR) | \
		     (1ULL << _UFFDX_MOVE_VEC))
/* What UFFDX_FEATURE_WP adds (WAKE and RESOLVE: for its writers). */
#define WP_IOCTLS ((1ULL << _UFFDX_WRITEPROTECT) | \
		   (1ULL << _UFFDX_WRITEPROTECT_ADDR) | \
		   (1ULL << _UFFDX_WAKE) | (1ULL << _UFFDX_RESOLVE))
/* What UFFDX_FEATURE_WP_ASYNC adds (it implies WP). */
#define WP_ASYNC_IOCTLS (WP_IOCTLS | (1ULL << _UFFDX_SCAN))
/* What each of the device features adds (the device's own are on its fd). */
#define DEVICE_IOCTLS (1ULL << _UFFDX_DEVICE_CREATE)
/* Every ioctl number of this ABI version that a context implements. */
#define ALL_CTX_IOCTLS (DEFAULT_CTX_IOCTLS | MOVE_IOCTLS | WP_ASYNC_IOCTLS | \
			DEVICE_IOCTLS)
#define DEVICE_FEATURES (UFFDX_FEATURE_DEVICE_EXCLUSIVE | \
			 UFFDX_FEATURE_DEVICE_MIGRATE | UFFDX_FEATURE_HMM_MIRROR)

/* What every negotiated context may use: REGIONS is always granted. */
#define BASE_CTX_IOCTLS ((1ULL << _UFFDX_API) | (1ULL << _UFFDX_REGION_CREATE) | \
			 (1ULL << _UFFDX_DISCARD))
/* What UFFDX_FEATURE_MISSING adds. */
#define MISSING_IOCTLS ((1ULL << _UFFDX_ARM) | (1ULL << _UFFDX_DISARM) | \
			(1ULL << _UFFDX_COPY) | (1ULL << _UFFDX_ZERO) | \
			(1ULL << _UFFDX_WAKE) | (1ULL << _UFFDX_RESOLVE))
/* What UFFDX_FEATURE_POISON adds. */
#define POISON_IOCTLS (1ULL << _UFFDX_POISON)

/* All feature bits the header defines. */
static const uint64_t defined_features[] = {
	UFFDX_FEATURE_REGIONS, UFFDX_FEATURE_MISSING, UFFDX_FEATURE_POISON,
	UFFDX_FEATURE_KERNEL_FAULTS, UFFDX_FEATURE_MOVE, UFFDX_FEATURE_MOVE_HUGE,
	UFFDX_FEATURE_WP, UFFDX_FEATURE_WP_ASYNC, UFFDX_FEATURE_DEVICE_EXCLUSIVE,
	UFFDX_FEATURE_DEVICE_MIGRATE, UFFDX_FEATURE_HMM_MIRROR,
	UFFDX_FEATURE_HMM_EXCLUSIVE, UFFDX_FEATURE_HMM_MIGRATE,
};

static void api_init(struct uffdx_api *a, uint64_t features)
{
	memset(a, 0, sizeof(*a));
	a->size = sizeof(*a);
	a->api = UFFDX_API_VERSION;
	a->features = features;
}

static int raw_open(int flags)
{
	return open(UFFDX_DEV, O_RDWR | O_CLOEXEC | flags);
}

/* Negotiate with the raw ioctl; returns ioctl()'s value (errno kept). */
static int raw_api(int fd, uint64_t features)
{
	struct uffdx_api a;

	api_init(&a, features);
	return ioctl(fd, UFFDX_IOC_API, &a);
}

static unsigned int parse_version(const char *s)
{
	unsigned int maj = 0, min = 0, pat = 0;

	sscanf(s, "%u.%u.%u", &maj, &min, &pat);
	return UFFDX_VERSION(maj, min, pat);
}

/* A fresh, un-negotiated context. */
FIXTURE(raw) {
	int fd;
};

FIXTURE_SETUP(raw)
{
	self->fd = -1;
	SKIP_IF_NO_UFFDX();
	self->fd = raw_open(0);
	ASSERT_LE(0, self->fd) TH_LOG("open %s: %s", UFFDX_DEV, strerror(errno));
}

FIXTURE_TEARDOWN(raw)
{
	if (self->fd >= 0)
		close(self->fd);
}

/* A negotiated context (DEFAULT_FEATURES). */
FIXTURE(ctx) {
	int fd;
};

FIXTURE_SETUP(ctx)
{
	self->fd = -1;
	SKIP_IF_NO_UFFDX();
	self->fd = ctx_open(DEFAULT_FEATURES, 0);
	ASSERT_LE(0, self->fd) TH_LOG("ctx_open: %s", strerror(-self->fd));
}

FIXTURE_TEARDOWN(ctx)
{
	if (self->fd >= 0)
		close(self->fd);
}

TEST_F(raw, api_reports_features_ioctls_version)
{
	struct uffdx_api a;
	int ret;

	memset(&a, 0xcc, sizeof(a));
	a.size = sizeof(a);
	a.api = UFFDX_API_VERSION;
	a.features = 0;
	a.flags = 0;
	memset(a.reserved, 0, sizeof(a.reserved));
	ret = ioctl(self->fd, UFFDX_IOC_API, &a);
	ASSERT_EQ(0, ret) TH_LOG("API: %s", strerror(errno));

	EXPECT_EQ(DEFAULT_FEATURES, a.features & DEFAULT_FEATURES)
		TH_LOG("features 0x%llx", (unsigned long long)a.features);
	/* Root in the guest has CAP_SYS_PTRACE; the bit is reported anyway. */
	EXPECT_TRUE(a.features & UFFDX_FEATURE_KERNEL_FAULTS)
		TH_LOG("features 0x%llx", (unsigned long long)a.features);
	/* negotiated nothing: only what REGIONS (always granted) allows */
	EXPECT_EQ(BASE_CTX_IOCTLS, a.ioctls)
		TH_LOG("ioctls 0x%llx", (unsigned long long)a.ioctls);
	EXPECT_EQ(parse_version(UFFDX_EXPECTED_VERSION), a.module_version)
		TH_LOG("module_version %u.%u.%u, dkms.conf says %s",
		       UFFDX_VERSION_MAJOR(a.module_version),
		       UFFDX_VERSION_MINOR(a.module_version),
		       UFFDX_VERSION_PATCH(a.module_version),
		       UFFDX_EXPECTED_VERSION);
	EXPECT_EQ(sizeof(a), a.size);
	EXPECT_EQ(UFFDX_API_VERSION, a.api);
	EXPECT_EQ(0, a.flags);
	EXPECT_EQ(0, a.reserved[0]);
	EXPECT_EQ(0, a.reserved[3]);
}

TEST_F(raw, api_with_features_reports_all_supported)
{
	struct uffdx_api a, b;
	int fd2;

	api_init(&a, 0);
	ASSERT_EQ(0, ioctl(self->fd, UFFDX_IOC_API, &a));

	fd2 = raw_open(0);
	ASSERT_LE(0, fd2);
	memset(&b, 0xcc, sizeof(b));
	api_init(&b, DEFAULT_FEATURES | UFFDX_FEATURE_KERNEL_FAULTS);
	ASSERT_EQ(0, ioctl(fd2, UFFDX_IOC_API, &b)) TH_LOG("%s", strerror(errno));
	/* out: all supported features, not just the requested ones */
	EXPECT_EQ(a.features, b.features);
	/* but only the ioctls of the negotiated ones: no MOVE unless asked for */
	EXPECT_EQ(BASE_CTX_IOCTLS, a.ioctls);
	EXPECT_EQ(DEFAULT_CTX_IOCTLS, b.ioctls)
		TH_LOG("ioctls 0x%llx", (unsigned long long)b.ioctls);
	close(fd2);

	if (!(a.features & UFFDX_FEATURE_MOVE))
		return;
	fd2 = raw_open(0);
	ASSERT_LE(0, fd2);
	api_init(&b, DEFAULT_FEATURES | UFFDX_FEATURE_MOVE);
	ASSERT_EQ(0, ioctl(fd2, UFFDX_IOC_API, &b)) TH_LOG("%s", strerror(errno));
	EXPECT_EQ(a.features, b.features);
	EXPECT_EQ(DEFAULT_CTX_IOCTLS | MOVE_IOCTLS, b.ioctls)
		TH_LOG("ioctls 0x%llx", (unsigned long long)b.ioctls);
	close(fd2);
}

TEST_F(raw, api_bad_version)
{
	struct uffdx_api a;
	uint32_t bad[] = { 0, UFFDX_API_VERSION + 1, 0xffffffffu };
	unsigned int i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		api_init(&a, DEFAULT_FEATURES);
		a.api = bad[i];
		EXPECT_EQ(-1, ioctl(self->fd, UFFDX_IOC_API, &a));
		EXPECT_EQ(EINVAL, errno) TH_LOG("api=%u", bad[i]);
	}
	/* the context is still un-negotiated */
	EXPECT_EQ(0, raw_api(self->fd, DEFAULT_FEATURES)) TH_LOG("%s", strerror(errno));
}

TEST_F(raw, api_unknown_features)
{
	struct uffdx_api sup;
	unsigned int i;
	int bit, fd2;

	fd2 = raw_open(0);
	ASSERT_LE(0, fd2);
	api_init(&sup, 0);
	ASSERT_EQ(0, ioctl(fd2, UFFDX_IOC_API, &sup));
	close(fd2);

	/* Undefined bits. */
	for (bit = 0; bit < 64; bit++) {
		uint64_t f = 1ULL << bit;
		int known = 0;

		for (i = 0; i < sizeof(defined_features) / sizeof(defined_features[0]); i++)
			known |= defined_features[i] == f;
		if (known)
			continue;
		EXPECT_EQ(-1, raw_api(self->fd, f)) TH_LOG("bit %d accepted", bit);
		EXPECT_EQ(EINVAL, errno) TH_LOG("bit %d", bit);
	}
	/* Defined (reserved) bits the module does not report as supported. */
	for (i = 0; i < sizeof(defined_features) / sizeof(defined_features[0]); i++) {
		uint64_t f = defined_features[i];

		if (sup.features & f)
			continue;
		EXPECT_EQ(-1, raw_api(self->fd, f | UFFDX_FEATURE_REGIONS))
			TH_LOG("unsupported 0x%llx accepted", (unsigned long long)f);
		EXPECT_EQ(EINVAL, errno);
	}
	/* Both limits at once, plus good bits. */
	EXPECT_EQ(-1, raw_api(self->fd, DEFAULT_FEATURES | (1ULL << 63)));
	EXPECT_EQ(EINVAL, errno);
	/* A failed API leaves the context usable: retry with fewer features. */
	ASSERT_EQ(0, raw_api(self->fd, DEFAULT_FEATURES)) TH_LOG("%s", strerror(errno));
}

TEST_F(raw, api_flags_nonzero)
{
	struct uffdx_api a;
	uint32_t bad[] = { 1, 0x80000000u };
	unsigned int i;

	for (i = 0; i < 2; i++) {
		api_init(&a, DEFAULT_FEATURES);
		a.flags = bad[i];
		EXPECT_EQ(-1, ioctl(self->fd, UFFDX_IOC_API, &a));
		EXPECT_EQ(EINVAL, errno);
	}
	EXPECT_EQ(0, raw_api(self->fd, DEFAULT_FEATURES));
}

TEST_F(raw, api_reserved_nonzero)
{
	struct uffdx_api a;
	int i;

	for (i = 0; i < 4; i++) {
		api_init(&a, DEFAULT_FEATURES);
		a.reserved[i] = 1ULL << (i * 8);
		EXPECT_EQ(-1, ioctl(self->fd, UFFDX_IOC_API, &a)) TH_LOG("reserved[%d]", i);
		EXPECT_EQ(EINVAL, errno) TH_LOG("reserved[%d]", i);
	}
	EXPECT_EQ(0, raw_api(self->fd, DEFAULT_FEATURES));
}

TEST_F(raw, api_size_too_small)
{
	struct uffdx_api a;
	uint32_t sizes[] = { 0, 4, 8, sizeof(a) - 8, sizeof(a) - 1 };
	unsigned int i;

	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		api_init(&a, DEFAULT_FEATURES);
		a.size = sizes[i];
		EXPECT_EQ(-1, ioctl(self->fd, UFFDX_IOC_API, &a)) TH_LOG("size %u", sizes[i]);
		EXPECT_EQ(EINVAL, errno) TH_LOG("size %u", sizes[i]);
	}
	EXPECT_EQ(0, raw_api(self->fd, DEFAULT_FEATURES));
}

TEST_F(raw, api_size_larger_nonzero_tail_e2big)
{
	union {
		struct uffdx_api a;
		uint8_t b[sizeof(struct uffdx_api) + 8];
	} u;

	memset(&u, 0, sizeof(u));
	api_init(&u.a, DEFAULT_FEATURES);
	u.a.size = sizeof(u);
	u.b[sizeof(u) - 1] = 1;
	EXPECT_EQ(-1, ioctl(self->fd, UFFDX_IOC_API, &u));
	EXPECT_EQ(E2BIG, errno);

	/* Tail of a "newer" struct, zeroed: accepted. */
	memset(&u, 0, sizeof(u));
	api_init(&u.a, DEFAULT_FEATURES);
	u.a.size = sizeof(u);
	memset(u.b + sizeof(u.a), 0, sizeof(u) - sizeof(u.a));
	ASSERT_EQ(0, ioctl(self->fd, UFFDX_IOC_API, &u)) TH_LOG("%s", strerror(errno));
	EXPECT_EQ(DEFAULT_FEATURES, u.a.features & DEFAULT_FEATURES);
	EXPECT_EQ(0, u.b[sizeof(u) - 1]);
}

TEST_F(raw, api_size_page_and_beyond)
{
	uint8_t *buf;
	struct uffdx_api *a;

	buf = calloc(1, 2 * ps);
	ASSERT_NE(NULL, buf);
	a = (struct uffdx_api *)buf;

	api_init(a, DEFAULT_FEATURES);
	a->size = ps + 1;
	EXPECT_EQ(-1, ioctl(self->fd, UFFDX_IOC_API, buf));
	EXPECT_EQ(E2BIG, errno);

	api_init(a, DEFAULT_FEATURES);
	a->size = 0xffffffffu;
	EXPECT_EQ(-1, ioctl(self->fd, UFFDX_IOC_API, buf));
	EXPECT_EQ(E2BIG, errno);

	/* Exactly one page, zero tail: accepted. */
	api_init(a, DEFAULT_FEATURES);
	a->size = ps;
	EXPECT_EQ(0, ioctl(self->fd, UFFDX_IOC_API, buf)) TH_LOG("%s", strerror(errno));
	free(buf);
}

TEST_F(ctx, api_twice_einval)
{
	EXPECT_EQ(-1, raw_api(self->fd, DEFAULT_FEATURES));
	EXPECT_EQ(EINVAL, errno);
	EXPECT_EQ(-1, raw_api(self->fd, 0));
	EXPECT_EQ(EINVAL, errno);
	/* still a working context */
	{
		uint64_t id = 0;
		int rfd = uffdx_region_create(self->fd, ps, 0, &id);

		EXPECT_LE(0, rfd) TH_LOG("%s", strerror(-rfd));
		if (rfd >= 0)
			close(rfd);
	}
}

/* The device features the module offers (0: none, or no module). */
static uint64_t device_supported(void)
{
	struct uffdx_api a;

	memset(&a, 0, sizeof(a));
	return uffdx_query(&a) ? 0 : a.features & DEVICE_FEATURES;
}

TEST_F(raw, ioctls_before_api_einval)
{
	static const struct { unsigned long nr; const char *name; } ops[] = {
		{ UFFDX_IOC_ARM, "ARM" }, { UFFDX_IOC_DISARM, "DISARM" },
		{ UFFDX_IOC_COPY, "COPY" }, { UFFDX_IOC_ZERO, "ZERO" },
		{ UFFDX_IOC_POISON, "POISON" }, { UFFDX_IOC_WAKE, "WAKE" },
		{ UFFDX_IOC_DISCARD, "DISCARD" },
	};
	struct uffdx_region_create rc;
	struct uffdx_move_addr ma;
	struct uffdx_move_vec mv;
	struct uffdx_move_entry e;
	struct uffdx_move mo;
	struct uffdx_range r;
	unsigned int i;

	memset(&rc, 0, sizeof(rc));
	rc.size = sizeof(rc);
	rc.len = ps;
	EXPECT_EQ(-1, ioctl(self->fd, UFFDX_IOC_REGION_CREATE, &rc));
	EXPECT_EQ(EINVAL, errno);

	{
		struct uffdx_resolve rs;

		memset(&rs, 0, sizeof(rs));
		rs.size = sizeof(rs);
		rs.resolution_size = sizeof(struct uffdx_resolution);
		rs.flags = UFFDX_RESOLVE_NOWAIT;
		rs.nr_done = 0x5a5a;
		EXPECT_EQ(-1, ioctl(self->fd, UFFDX_IOC_RESOLVE, &rs));
		EXPECT_EQ(EINVAL, errno) TH_LOG("RESOLVE");
		EXPECT_EQ(0x5a5a, rs.nr_done);
	}

	/* the move ioctls, with their own argument structs */
	memset(&mo, 0, sizeof(mo));
	mo.size = sizeof(mo);
	mo.dst_region = 1;
	mo.src_region = 2;
	mo.len = ps;
	mo.result = 0x5a5a;
	EXPECT_EQ(-1, ioctl(self->fd, UFFDX_IOC_MOVE, &mo));
	EXPECT_EQ(EINVAL, errno) TH_LOG("MOVE");
	EXPECT_EQ(0x5a5a, mo.result);
	memset(&ma, 0, sizeof(ma));
	ma.size = sizeof(ma);
	ma.dst = (uintptr_t)&rc & ~(uintptr_t)(ps - 1);
	ma.src = ma.dst + ps;
	ma.len = ps;
	ma.result = 0x5a5a;
	EXPECT_EQ(-1, ioctl(self->fd, UFFDX_IOC_MOVE_ADDR, &ma));
	EXPECT_EQ(EINVAL, errno) TH_LOG("MOVE_ADDR");
	EXPECT_EQ(0x5a5a, ma.result);
	memset(&e, 0, sizeof(e));
	e.dst = ma.dst;
	e.src = ma.src;
	e.len = ps;
	e.result = 0x5a5a;
	memset(&mv, 0, sizeof(mv));
	mv.size = sizeof(mv);
	mv.entries = (uintptr_t)&e;
	mv.nr_entries = 1;
	mv.entry_size = sizeof(e);
	mv.moved = 0x5a5a;
	EXPECT_EQ(-1, ioctl(self->fd, UFFDX_IOC_MOVE_VEC, &mv));
	EXPECT_EQ(EINVAL, errno) TH_LOG("MOVE_VEC");
	EXPECT_EQ(0x5a5a, mv.moved);
	EXPECT_EQ(0x5a5a, e.result);

	for (i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
		memset(&r, 0, sizeof(r));
		r.size = sizeof(r);
		r.region_id = 1;
		r.len = ps;
		EXPECT_EQ(-1, ioctl(self->fd, ops[i].nr, &r)) TH_LOG("%s", ops[i].name);
		EXPECT_EQ(EINVAL, errno) TH_LOG("%s", ops[i].name);
	}
	/* a module without devices does not know DEVICE_CREATE (ENOTTY) */
	if (device_supported()) {
		struct uffdx_device_create dc;

		memset(&dc, 0, sizeof(dc));
		dc.size = sizeof(dc);
		dc.fd = -2;
		EXPECT_EQ(-1, ioctl(self->fd, UFFDX_IOC_DEVICE_CREATE, &dc));
		EXPECT_EQ(EINVAL, errno) TH_LOG("DEVICE_CREATE");
		EXPECT_EQ(-2, dc.fd);
	}
	/* and API still works afterwards */
	EXPECT_EQ(0, raw_api(self->fd, DEFAULT_FEATURES));
}

TEST_F(raw, read_before_api_einval)
{
	struct uffdx_event ev[2];
	ssize_t ret;

	ret = read_timeout(self->fd, ev, sizeof(ev), 1000);
	EXPECT_EQ(-EINVAL, ret);

	/* O_NONBLOCK context: EINVAL too, not EAGAIN */
	{
		int fd = raw_open(O_NONBLOCK);

		ASSERT_LE(0, fd);
		EXPECT_EQ(-1, read(fd, ev, sizeof(ev)));
		EXPECT_EQ(EINVAL, errno);
		close(fd);
	}
}

static void check_unknown_ioctls(struct __test_metadata *_metadata, int fd)
{
	struct uffdx_range r;
	unsigned long nrs[] = {
		_IOWR(UFFDX_IOC_MAGIC, 0x3f, struct uffdx_range),
		/* the first number after the last one defined (DEVICE_CREATE) */
		_IOWR(UFFDX_IOC_MAGIC, 0x11, struct uffdx_range),
		/* a device fd's, and a region fd's, on a context */
		UFFDX_IOC_DEV_READ, UFFDX_IOC_DEV_STATS, UFFDX_IOC_REGION_INFO,
		_IOWR(UFFDX_IOC_MAGIC, 0xff, struct uffdx_range),
		_IO('x', 1),
		_IOWR('x', _UFFDX_COPY, struct uffdx_range),
		_IOWR(UFFDX_IOC_MAGIC + 1, _UFFDX_COPY, struct uffdx_range),
	};
	unsigned int i;

	for (i = 0; i < sizeof(nrs) / sizeof(nrs[0]); i++) {
		memset(&r, 0, sizeof(r));
		r.size = sizeof(r);
		EXPECT_EQ(-1, ioctl(fd, nrs[i], &r)) TH_LOG("ioctl 0x%lx", nrs[i]);
		EXPECT_EQ(ENOTTY, errno) TH_LOG("ioctl 0x%lx", nrs[i]);
	}
}

TEST_F(raw, unknown_ioctls_enotty)
{
	check_unknown_ioctls(_metadata, self->fd);
	ASSERT_EQ(0, raw_api(self->fd, DEFAULT_FEATURES));
	check_unknown_ioctls(_metadata, self->fd);
}

TEST_F(raw, kernel_faults_as_root)
{
	if (getuid() != 0)
		SKIP(return, "needs root (CAP_SYS_PTRACE)");
	EXPECT_EQ(0, raw_api(self->fd, DEFAULT_FEATURES | UFFDX_FEATURE_KERNEL_FAULTS))
		TH_LOG("%s", strerror(errno));
}

TEST_F(raw, kernel_faults_without_cap_sys_ptrace_eperm)
{
	int status = -1;
	pid_t pid;

	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0) {
		int fd;

		if (drop_effective_cap(CAP_SYS_PTRACE))
			_exit(10);
		fd = raw_open(0);
		if (fd < 0)
			_exit(11);
		if (raw_api(fd, DEFAULT_FEATURES | UFFDX_FEATURE_KERNEL_FAULTS) != -1)
			_exit(12);
		if (errno != EPERM)
			_exit(13);
		/* the failure left it un-negotiated: retry without the bit */
		if (raw_api(fd, DEFAULT_FEATURES))
			_exit(14);
		_exit(0);
	}
	ASSERT_EQ(0, wait_child(pid, &status, WAIT_MS));
	ASSERT_TRUE(WIFEXITED(status));
	EXPECT_EQ(0, WEXITSTATUS(status))
		TH_LOG("child step %d failed (10 capset, 11 open, 12 accepted, 13 wrong errno, 14 retry)",
		       WEXITSTATUS(status));
}

TEST_F(raw, nonblock_ctx_via_library)
{
	int fd = ctx_open(DEFAULT_FEATURES, O_NONBLOCK);
	int fl;

	ASSERT_LE(0, fd) TH_LOG("%s", strerror(-fd));
	fl = fcntl(fd, F_GETFL);
	EXPECT_TRUE(fl & O_NONBLOCK);
	EXPECT_TRUE(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	close(fd);
}

#define MANY_CTX 512

TEST(many_contexts)
{
	static int fds[MANY_CTX];
	static uint8_t *maps[MANY_CTX];
	static uint64_t ids[MANY_CTX];
	struct rlimit rl;
	uint8_t *buf;
	int i, n = 0;

	SKIP_IF_NO_UFFDX();
	getrlimit(RLIMIT_NOFILE, &rl);
	if (rl.rlim_cur < 2 * MANY_CTX + 64) {
		rl.rlim_cur = rl.rlim_max < 2 * MANY_CTX + 64 ? rl.rlim_max : 2 * MANY_CTX + 64;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	buf = malloc(ps);
	ASSERT_NE(NULL, buf);

	for (i = 0; i < MANY_CTX; i++) {
		int64_t res = 0;
		int rfd, ret;

		fds[i] = ctx_open(DEFAULT_FEATURES, 0);
		ASSERT_LE(0, fds[i]) TH_LOG("context %d: %s", i, strerror(-fds[i]));
		n = i + 1;
		rfd = uffdx_region_create(fds[i], 2 * ps, 0, &ids[i]);
		ASSERT_LE(0, rfd) TH_LOG("context %d region: %s", i, strerror(-rfd));
		EXPECT_NE(0, ids[i]);
		maps[i] = mmap(NULL, 2 * ps, PROT_READ | PROT_WRITE, MAP_SHARED, rfd, 0);
		ASSERT_NE(MAP_FAILED, maps[i]) TH_LOG("mmap %d: %s", i, strerror(errno));
		close(rfd);	/* the mapping keeps the region */
		fill_pattern(buf, ps, i);
		ret = uffdx_copy(fds[i], ids[i], 0, buf, ps, 0, &res);
		ASSERT_EQ(0, ret) TH_LOG("copy %d: %s", i, strerror(-ret));
		EXPECT_EQ((int64_t)ps, res);
		maps[i][ps] = (uint8_t)i;
	}
	for (i = 0; i < n; i++) {
		EXPECT_EQ(-1, check_pattern(maps[i], ps, i)) TH_LOG("context %d", i);
		EXPECT_EQ((uint8_t)i, maps[i][ps]);
		EXPECT_TRUE(is_zero(maps[i] + ps + 1, ps - 1));
	}
	for (i = 0; i < n; i++)
		close(fds[i]);
	/* regions outlive their contexts */
	for (i = 0; i < n; i++) {
		EXPECT_EQ(-1, check_pattern(maps[i], ps, i)) TH_LOG("context %d", i);
		munmap(maps[i], 2 * ps);
	}
	free(buf);
}

#define NTHREADS 8
#define THREAD_LOOPS 40

struct thr_arg {
	int ctx;
	int idx;
	char err[160];
};

static void *ctx_thread(void *p)
{
	struct thr_arg *t = p;
	size_t len = 4 * ps;
	uint8_t *buf = malloc(len);
	int loop;

	if (!buf) {
		snprintf(t->err, sizeof(t->err), "malloc");
		return NULL;
	}
	for (loop = 0; loop < THREAD_LOOPS && !t->err[0]; loop++) {
		struct uffdx_region_info info;
		uint64_t seed = (uint64_t)t->idx << 32 | loop;
		uint64_t id = 0;
		int64_t res = 0;
		uint8_t *map;
		int rfd, ret;

		rfd = uffdx_region_create(t->ctx, len, 0, &id);
		if (rfd < 0) {
			snprintf(t->err, sizeof(t->err), "create: %s", strerror(-rfd));
			break;
		}
		map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, rfd, 0);
		if (map == MAP_FAILED) {
			snprintf(t->err, sizeof(t->err), "mmap: %s", strerror(errno));
			close(rfd);
			break;
		}
		fill_pattern(buf, len, seed);
		ret = uffdx_copy(t->ctx, id, 0, buf, len, 0, &res);
		if (ret || res != (int64_t)len)
			snprintf(t->err, sizeof(t->err), "copy: %d res %lld", ret, (long long)res);
		else if (check_pattern(map, len, seed) != -1)
			snprintf(t->err, sizeof(t->err), "data mismatch after copy (loop %d)", loop);
		else if ((ret = uffdx_discard(t->ctx, id, ps, 2 * ps, &res)) || res != (int64_t)(2 * ps))
			snprintf(t->err, sizeof(t->err), "discard: %d res %lld", ret, (long long)res);
		else if (!is_zero(map + ps, 2 * ps))
			snprintf(t->err, sizeof(t->err), "discarded pages not zero");
		else if (memcmp(map, buf, ps) || memcmp(map + 3 * ps, buf + 3 * ps, ps))
			snprintf(t->err, sizeof(t->err), "kept page damaged");
		else if ((ret = uffdx_region_info(rfd, &info)))
			snprintf(t->err, sizeof(t->err), "info: %s", strerror(-ret));
		else if (info.region_id != id || info.len != len)
			snprintf(t->err, sizeof(t->err), "info id/len mismatch");
		munmap(map, len);
		close(rfd);
	}
	free(buf);
	return NULL;
}

TEST_F(ctx, threads_share_context)
{
	struct thr_arg args[NTHREADS];
	pthread_t th[NTHREADS];
	int i;

	for (i = 0; i < NTHREADS; i++) {
		memset(&args[i], 0, sizeof(args[i]));
		args[i].ctx = self->fd;
		args[i].idx = i;
		ASSERT_EQ(0, pthread_create(&th[i], NULL, ctx_thread, &args[i]));
	}
	for (i = 0; i < NTHREADS; i++)
		pthread_join(th[i], NULL);
	for (i = 0; i < NTHREADS; i++)
		EXPECT_EQ(0, args[i].err[0]) TH_LOG("thread %d: %s", i, args[i].err);
}

TEST_F(ctx, fork_child_uses_context)
{
	struct uffdx_region_map m;
	int sync1[2], sync2[2];
	int status = -1, ret;
	uint8_t *buf;
	pid_t pid;
	char c;

	ret = uffdx_region_map(self->fd, 4 * ps, 0, &m);
	ASSERT_EQ(0, ret) TH_LOG("%s", strerror(-ret));
	buf = malloc(ps);
	ASSERT_NE(NULL, buf);
	ASSERT_EQ(0, pipe(sync1));
	ASSERT_EQ(0, pipe(sync2));

	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0) {
		int64_t res = 0;
		struct uffdx_region_info info;
		uint8_t *p = m.addr;

		/* child: write through the inherited mapping */
		fill_pattern(p, ps, 1);
		/* child: fill page 1 through the inherited context */
		fill_pattern(buf, ps, 2);
		if (uffdx_copy(self->fd, m.id, ps, buf, ps, 0, &res) || res != (int64_t)ps)
			_exit(10);
		if (uffdx_region_info(m.fd, &info) || info.region_id != m.id)
			_exit(11);
		if (write(sync1[1], "x", 1) != 1)
			_exit(12);
		/* wait for the parent's write to page 2 */
		if (wait_fd(sync2[0], POLLIN, WAIT_MS) != 1 || read(sync2[0], &c, 1) != 1)
			_exit(13);
		if (check_pattern(p + 2 * ps, ps, 3) != -1)
			_exit(14);
		_exit(0);
	}
	ASSERT_EQ(1, wait_fd(sync1[0], POLLIN, WAIT_MS));
	ASSERT_EQ(1, read(sync1[0], &c, 1));
	EXPECT_EQ(-1, check_pattern(m.addr, ps, 1));
	EXPECT_EQ(-1, check_pattern((uint8_t *)m.addr + ps, ps, 2));
	fill_pattern((uint8_t *)m.addr + 2 * ps, ps, 3);
	ASSERT_EQ(1, write(sync2[1], "y", 1));
	ASSERT_EQ(0, wait_child(pid, &status, WAIT_MS));
	ASSERT_TRUE(WIFEXITED(status));
	EXPECT_EQ(0, WEXITSTATUS(status)) TH_LOG("child failed at step %d", WEXITSTATUS(status));
	/* the child's copy is ours too: COPY again is EEXIST */
	{
		int64_t res = 0;

		EXPECT_EQ(-EEXIST, uffdx_copy(self->fd, m.id, ps, buf, ps, 0, &res));
	}
	free(buf);
	uffdx_region_unmap(&m);
}

static void child_exits_without_closing(int pending_fault)
{
	struct uffdx_region_map m[3];
	struct accessor *a;
	int ctx, i;

	ctx = ctx_open(DEFAULT_FEATURES, 0);
	if (ctx < 0)
		_exit(10);
	for (i = 0; i < 3; i++) {
		if (uffdx_region_map(ctx, 8 * ps, 0, &m[i]))
			_exit(11);
		memset(m[i].addr, 0x5a, 2 * ps);	/* populate (unarmed) */
	}
	if (uffdx_arm(ctx, m[1].id, 0, 8 * ps, UFFDX_ARM_MISSING) ||
	    uffdx_arm(ctx, m[2].id, 4 * ps, 4 * ps, UFFDX_ARM_MISSING))
		_exit(12);
	if (pending_fault) {
		/* a thread sleeps in a fault when the process exits */
		a = acc_new((uint8_t *)m[1].addr + 5 * ps, 1, 1);
		if (!a || acc_start_thread(a))
			_exit(13);
		if (wait_fd(ctx, POLLIN, WAIT_MS) != 1)
			_exit(14);
	}
	exit(0);	/* no close, no munmap */
}

static void exit_test(struct __test_metadata *_metadata, int pending_fault)
{
	int status = -1, ctx;
	pid_t pid;

	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0)
		child_exits_without_closing(pending_fault);
	ASSERT_EQ(0, wait_child(pid, &status, WAIT_MS)) TH_LOG("exiting child hangs");
	ASSERT_TRUE(WIFEXITED(status)) TH_LOG("status 0x%x", status);
	EXPECT_EQ(0, WEXITSTATUS(status)) TH_LOG("child failed at step %d", WEXITSTATUS(status));
	/* the module still works */
	ctx = ctx_open(DEFAULT_FEATURES, 0);
	ASSERT_LE(0, ctx);
	close(ctx);
}

TEST(exit_without_close)
{
	SKIP_IF_NO_UFFDX();
	exit_test(_metadata, 0);
}

TEST(exit_with_fault_pending)
{
	SKIP_IF_NO_UFFDX();
	exit_test(_metadata, 1);
}

TEST(close_unnegotiated_and_reopen)
{
	int i, fd;

	SKIP_IF_NO_UFFDX();
	for (i = 0; i < 64; i++) {
		fd = raw_open(i & 1 ? O_NONBLOCK : 0);
		ASSERT_LE(0, fd);
		close(fd);
	}
}

/* ---- features gate the ioctls ---------------------------------------------- */

/* RESOLVE comes with missing faults: without them, EINVAL; with, it runs. */
TEST(resolve_needs_missing)
{
	struct uffdx_resolve rs;
	int fd;

	SKIP_IF_NO_UFFDX();
	memset(&rs, 0, sizeof(rs));
	rs.size = sizeof(rs);
	rs.resolution_size = sizeof(struct uffdx_resolution);
	rs.flags = UFFDX_RESOLVE_NOWAIT;
	rs.nr_done = 0x5a5a;
	fd = ctx_open(UFFDX_FEATURE_REGIONS, 0);
	ASSERT_LE(0, fd) TH_LOG("%s", strerror(-fd));
	EXPECT_EQ(-1, ioctl(fd, UFFDX_IOC_RESOLVE, &rs));
	EXPECT_EQ(EINVAL, errno);
	EXPECT_EQ(0x5a5a, rs.nr_done);
	close(fd);

	fd = ctx_open(DEFAULT_FEATURES, 0);
	ASSERT_LE(0, fd) TH_LOG("%s", strerror(-fd));
	rs.nr_events = 0x5a5a;
	EXPECT_EQ(0, ioctl(fd, UFFDX_IOC_RESOLVE, &rs)) TH_LOG("%s", strerror(errno));
	EXPECT_EQ(0, rs.nr_done);
	EXPECT_EQ(0, rs.nr_events);
	close(fd);
}

struct gated_op {
	const char *name;
	unsigned long nr;
	unsigned int bit;
	uint32_t mode;
	int src;
};

/* In this order on pages 0-2 (fills) and 3 (arm, disarm, wake), then all. */
static const struct gated_op gated_ops[] = {
	{ "COPY", UFFDX_IOC_COPY, _UFFDX_COPY, 0, 1 },
	{ "ZERO", UFFDX_IOC_ZERO, _UFFDX_ZERO, 0, 0 },
	{ "POISON", UFFDX_IOC_POISON, _UFFDX_POISON, 0, 0 },
	{ "ARM", UFFDX_IOC_ARM, _UFFDX_ARM, UFFDX_ARM_MISSING, 0 },
	{ "DISARM", UFFDX_IOC_DISARM, _UFFDX_DISARM, UFFDX_ARM_MISSING, 0 },
	{ "WAKE", UFFDX_IOC_WAKE, _UFFDX_WAKE, 0, 0 },
	{ "DISCARD", UFFDX_IOC_DISCARD, _UFFDX_DISCARD, 0, 0 },
};

/* One gated move ioctl: works if allowed, else EINVAL without writing "out". */
static void check_gated_move(struct __test_metadata *_metadata, int ret, int err,
			     int want, int64_t out, const char *name)
{
	if (want) {
		EXPECT_EQ(0, ret) TH_LOG("%s refused: %s", name, strerror(err));
		EXPECT_EQ((int64_t)ps, out) TH_LOG("%s", name);
	} else {
		EXPECT_EQ(-1, ret) TH_LOG("%s allowed without UFFDX_FEATURE_MOVE", name);
		EXPECT_EQ(EINVAL, err) TH_LOG("%s: %s", name, strerror(err));
		EXPECT_EQ(0x5a5a, out) TH_LOG("%s wrote its result", name);
	}
}

/*
 * MOVE, MOVE_ADDR and MOVE_VEC of the (zero-filled, then marked) pages 0-2
 * of the region to the holes 4-6: done if @allowed has them, else nothing.
 */
static void check_gated_moves(struct __test_metadata *_metadata, int fd, int rfd,
			      uint64_t id, uint8_t *map, uint64_t allowed)
{
	const unsigned int bits[3] = { _UFFDX_MOVE, _UFFDX_MOVE_ADDR, _UFFDX_MOVE_VEC };
	struct uffdx_region_info info;
	struct uffdx_move_addr ma;
	struct uffdx_move_vec mv;
	struct uffdx_move_entry e;
	struct uffdx_move mo;
	unsigned int i;
	int64_t res;
	int ret;

	for (i = 0; i < 3; i++)
		map[i * ps] = (uint8_t)(0xa0 + i);
	ASSERT_EQ(0, uffdx_discard(fd, id, 4 * ps, 4 * ps, &res));

	memset(&mo, 0, sizeof(mo));
	mo.size = sizeof(mo);
	mo.dst_region = id;
	mo.dst_offset = 4 * ps;
	mo.src_region = id;
	mo.src_offset = 0;
	mo.len = ps;
	mo.result = 0x5a5a;
	ret = ioctl(fd, UFFDX_IOC_MOVE, &mo);
	check_gated_move(_metadata, ret, errno, !!(allowed & (1ULL << _UFFDX_MOVE)),
			 mo.result, "MOVE");

	memset(&ma, 0, sizeof(ma));
	ma.size = sizeof(ma);
	ma.dst = (uintptr_t)(map + 5 * ps);
	ma.src = (uintptr_t)(map + ps);
	ma.len = ps;
	ma.result = 0x5a5a;
	ret = ioctl(fd, UFFDX_IOC_MOVE_ADDR, &ma);
	check_gated_move(_metadata, ret, errno, !!(allowed & (1ULL << _UFFDX_MOVE_ADDR)),
			 ma.result, "MOVE_ADDR");

	memset(&e, 0, sizeof(e));
	e.dst = (uintptr_t)(map + 6 * ps);
	e.src = (uintptr_t)(map + 2 * ps);
	e.len = ps;
	e.result = 0x5a5a;
	memset(&mv, 0, sizeof(mv));
	mv.size = sizeof(mv);
	mv.entries = (uintptr_t)&e;
	mv.nr_entries = 1;
	mv.entry_size = sizeof(e);
	mv.moved = 0x5a5a;
	ret = ioctl(fd, UFFDX_IOC_MOVE_VEC, &mv);
	check_gated_move(_metadata, ret, errno, !!(allowed & (1ULL << _UFFDX_MOVE_VEC)),
			 (int64_t)mv.moved, "MOVE_VEC");
	if (allowed & (1ULL << _UFFDX_MOVE_VEC)) {
		EXPECT_EQ((int64_t)ps, e.result);
	} else {
		EXPECT_EQ(0x5a5a, e.result) TH_LOG("MOVE_VEC wrote an entry's result");
	}

	/* one region: 4 pages, wherever they are */
	ASSERT_EQ(0, uffdx_region_info(rfd, &info));
	EXPECT_EQ(4 * ps, info.resident);
	for (i = 0; i < 3; i++) {
		if (allowed & (1ULL << bits[i])) {
			EXPECT_EQ(0xa0 + i, map[(4 + i) * ps]) TH_LOG("move %u", i);
			EXPECT_EQ(0, map[i * ps]) TH_LOG("move %u left old data", i);
		} else {
			EXPECT_EQ(0xa0 + i, map[i * ps]) TH_LOG("move %u", i);
			EXPECT_EQ(0, map[(4 + i) * ps]) TH_LOG("move %u", i);
		}
	}
}

/*
 * Negotiate @features on a fresh context and check that exactly the
 * ioctls in @allowed are reported and work, with valid arguments, and that
 * every other one fails with EINVAL and changes nothing.
 */
static void check_gating(struct __test_metadata *_metadata, uint64_t features,
			 uint64_t allowed)
{
	struct uffdx_region_info info;
	struct uffdx_api a, all;
	struct uffdx_range r;
	uint8_t *buf, *map;
	uint64_t id = 0;
	unsigned int i;
	int fd, rfd, ret;

	/* what the module supports, from a context that asked for nothing */
	fd = raw_open(0);
	ASSERT_LE(0, fd);
	api_init(&all, 0);
	ASSERT_EQ(0, ioctl(fd, UFFDX_IOC_API, &all));
	close(fd);

	fd = raw_open(0);
	ASSERT_LE(0, fd);
	memset(&a, 0xcc, sizeof(a));
	api_init(&a, features);
	ASSERT_EQ(0, ioctl(fd, UFFDX_IOC_API, &a)) TH_LOG("%s", strerror(errno));
	EXPECT_EQ(allowed, a.ioctls) TH_LOG("features 0x%llx: ioctls 0x%llx",
					    (unsigned long long)features,
					    (unsigned long long)a.ioctls);
	/* features out: still everything supported */
	EXPECT_EQ(all.features, a.features);
	EXPECT_EQ(DEFAULT_FEATURES, a.features & DEFAULT_FEATURES);

	/* REGION_CREATE is always there, and the region maps and zero-fills */
	rfd = uffdx_region_create(fd, 8 * ps, 0, &id);
	ASSERT_LE(0, rfd) TH_LOG("create: %s", strerror(-rfd));
	map = mmap(NULL, 8 * ps, PROT_READ | PROT_WRITE, MAP_SHARED, rfd, 0);
	ASSERT_NE(MAP_FAILED, map);
	buf = malloc(ps);
	ASSERT_NE(NULL, buf);
	fill_pattern(buf, ps, 5);

	for (i = 0; i < sizeof(gated_ops) / sizeof(gated_ops[0]); i++) {
		const struct gated_op *op = &gated_ops[i];
		int want = !!(allowed & (1ULL << op->bit));

		memset(&r, 0, sizeof(r));
		r.size = sizeof(r);
		r.mode = op->mode;
		r.region_id = id;
		r.offset = (i < 3 ? i : 3) * ps;
		r.len = ps;
		if (op->nr == UFFDX_IOC_DISCARD) {
			r.offset = 0;
			r.len = 8 * ps;
		}
		r.src = op->src ? (uintptr_t)buf : 0;
		r.result = 0x5a5a;
		ret = ioctl(fd, op->nr, &r);
		if (want) {
			EXPECT_EQ(0, ret) TH_LOG("%s refused: %s", op->name, strerror(errno));
		} else {
			EXPECT_EQ(-1, ret) TH_LOG("%s allowed without its feature", op->name);
			EXPECT_EQ(EINVAL, errno) TH_LOG("%s: %s", op->name, strerror(errno));
			EXPECT_EQ(0x5a5a, r.result) TH_LOG("%s wrote result", op->name);
		}
		/* after the fills: what landed is what was allowed */
		if (op->nr == UFFDX_IOC_POISON) {
			size_t want_res = 0;
			unsigned int k;

			/* COPY and ZERO each add a page; poison is not resident */
			for (k = 0; k < 2; k++)
				if (allowed & (1ULL << gated_ops[k].bit))
					want_res += ps;
			ASSERT_EQ(0, uffdx_region_info(rfd, &info));
			EXPECT_EQ(want_res, info.resident);
			if (allowed & (1ULL << _UFFDX_COPY))
				EXPECT_EQ(0, memcmp(map, buf, ps));
			if (allowed & POISON_IOCTLS) {
				uint8_t v;

				EXPECT_EQ(SIGBUS, try_read(map + 2 * ps, &v));
			}
		}
	}
	/* DISCARD emptied it; an unarmed hole zero-fills */
	ASSERT_EQ(0, uffdx_region_info(rfd, &info));
	EXPECT_EQ(0, info.resident);
	EXPECT_TRUE(is_zero(map, 8 * ps));
	ASSERT_EQ(0, uffdx_region_info(rfd, &info));
	EXPECT_EQ(8 * ps, info.resident);
	check_gated_moves(_metadata, fd, rfd, id, map, allowed);
	free(buf);
	munmap(map, 8 * ps);
	close(rfd);
	close(fd);
}

TEST(features_gate_ioctls_none)
{
	SKIP_IF_NO_UFFDX();
	check_gating(_metadata, 0, BASE_CTX_IOCTLS);
	/* REGIONS alone is the same as nothing */
	check_gating(_metadata, UFFDX_FEATURE_REGIONS, BASE_CTX_IOCTLS);
}

TEST(features_gate_ioctls_missing_only)
{
	SKIP_IF_NO_UFFDX();
	check_gating(_metadata, UFFDX_FEATURE_MISSING, BASE_CTX_IOCTLS | MISSING_IOCTLS);
}

TEST(features_gate_ioctls_poison_only)
{
	SKIP_IF_NO_UFFDX();
	check_gating(_metadata, UFFDX_FEATURE_POISON, BASE_CTX_IOCTLS | POISON_IOCTLS);
}

TEST(features_gate_ioctls_default)
{
	SKIP_IF_NO_UFFDX();
	check_gating(_metadata, DEFAULT_FEATURES, DEFAULT_CTX_IOCTLS);
}

static int move_supported(void)
{
	struct uffdx_api a;

	memset(&a, 0, sizeof(a));
	return !uffdx_query(&a) && (a.features & UFFDX_FEATURE_MOVE);
}

TEST(features_gate_ioctls_move_only)
{
	SKIP_IF_NO_UFFDX();
	if (!move_supported())
		SKIP(return, "the module does not report UFFDX_FEATURE_MOVE");
	check_gating(_metadata, UFFDX_FEATURE_MOVE, BASE_CTX_IOCTLS | MOVE_IOCTLS);
}

static int wp_supported(void)
{
	struct uffdx_api a;

	memset(&a, 0, sizeof(a));
	return !uffdx_query(&a) && (a.features & UFFDX_FEATURE_WP) &&
	       (a.features & UFFDX_FEATURE_WP_ASYNC);
}

TEST(features_gate_ioctls_wp_only)
{
	SKIP_IF_NO_UFFDX();
	if (!wp_supported())
		SKIP(return, "the module does not report UFFDX_FEATURE_WP(_ASYNC)");
	check_gating(_metadata, UFFDX_FEATURE_WP, BASE_CTX_IOCTLS | WP_IOCTLS);
	/* dirty tracking is write protection: it grants WP's ioctls too */
	check_gating(_metadata, UFFDX_FEATURE_WP_ASYNC,
		     BASE_CTX_IOCTLS | WP_ASYNC_IOCTLS);
}

/* Each device feature alone grants DEVICE_CREATE, and nothing else. */
TEST(features_gate_ioctls_device_only)
{
	uint64_t devs;
	unsigned int bit;

	SKIP_IF_NO_UFFDX();
	devs = device_supported();
	if (!devs)
		SKIP(return, "the module reports no device feature");
	for (bit = 0; bit < 64; bit++)
		if (devs & (1ULL << bit))
			check_gating(_metadata, 1ULL << bit,
				     BASE_CTX_IOCTLS | DEVICE_IOCTLS);
	check_gating(_metadata, DEFAULT_FEATURES | devs,
		     DEFAULT_CTX_IOCTLS | DEVICE_IOCTLS);
}

TEST(features_gate_ioctls_all)
{
	SKIP_IF_NO_UFFDX();
	if (!move_supported() || !wp_supported())
		SKIP(return, "the module does not report MOVE and WP(_ASYNC)");
	check_gating(_metadata, DEFAULT_FEATURES | UFFDX_FEATURE_MOVE |
		     UFFDX_FEATURE_WP_ASYNC,
		     ALL_CTX_IOCTLS & ~DEVICE_IOCTLS);
	if (!device_supported())
		return;
	check_gating(_metadata, DEFAULT_FEATURES | UFFDX_FEATURE_MOVE |
		     UFFDX_FEATURE_WP_ASYNC | device_supported(), ALL_CTX_IOCTLS);
}

/* ---- the simulated device: feature gating, fds of the wrong kind ------------ */

static int raw_device_create(int ctx, struct uffdx_device_create *dc)
{
	return ioctl(ctx, UFFDX_IOC_DEVICE_CREATE, dc);
}

TEST(device_create_needs_a_device_feature)
{
	struct uffdx_device_create dc;
	uint64_t devs;
	unsigned int bit;
	int fd, dev;

	SKIP_IF_NO_UFFDX();
	devs = device_supported();
	if (!devs)
		SKIP(return, "the module reports no device feature");

	/* negotiated, but no device feature: EINVAL, nothing written */
	fd = ctx_open(DEFAULT_FEATURES, 0);
	ASSERT_LE(0, fd) TH_LOG("%s", strerror(-fd));
	memset(&dc, 0, sizeof(dc));
	dc.size = sizeof(dc);
	dc.fd = -2;
	EXPECT_EQ(-1, raw_device_create(fd, &dc));
	EXPECT_EQ(EINVAL, errno);
	EXPECT_EQ(-2, dc.fd);
	EXPECT_EQ(-EINVAL, uffdx_device_create(fd, 0));
	close(fd);

	for (bit = 0; bit < 64; bit++) {
		uint64_t f = 1ULL << bit;

		if (!(devs & f))
			continue;
		fd = ctx_open(UFFDX_FEATURE_REGIONS | f, 0);
		ASSERT_LE(0, fd) TH_LOG("%s: %s", uffdx_feature_name(f),
					strerror(-fd));
		dev = uffdx_device_create(fd, 0);
		EXPECT_LE(0, dev) TH_LOG("%s: %s", uffdx_feature_name(f),
					 strerror(-dev));
		if (dev >= 0) {
			EXPECT_NE(0, fcntl(dev, F_GETFD) & FD_CLOEXEC);
			close(dev);
		}
		/* flags, pad and reserved must be 0 */
		EXPECT_EQ(-EINVAL, uffdx_device_create(fd, 1));
		EXPECT_EQ(-EINVAL, uffdx_device_create(fd, 0x80000000U));
		memset(&dc, 0, sizeof(dc));
		dc.size = sizeof(dc);
		dc.__pad = 1;
		dc.fd = -2;
		EXPECT_EQ(-1, raw_device_create(fd, &dc));
		EXPECT_EQ(EINVAL, errno);
		EXPECT_EQ(-2, dc.fd);
		memset(&dc, 0, sizeof(dc));
		dc.size = sizeof(dc);
		dc.reserved[1] = 1;
		EXPECT_EQ(-1, raw_device_create(fd, &dc));
		EXPECT_EQ(EINVAL, errno);
		close(fd);
	}
}

/* A command: 0, or -errno (raw ioctl, the struct as given). */
static int dev_cmd(int dev, unsigned long nr, void *addr, void *ptr,
		   uint64_t npages)
{
	struct uffdx_dev_cmd c;

	memset(&c, 0, sizeof(c));
	c.size = sizeof(c);
	c.addr = (uintptr_t)addr;
	c.ptr = (uintptr_t)ptr;
	c.npages = npages;
	return ioctl(dev, nr, &c) < 0 ? -errno : 0;
}

/*
 * A device of a context that negotiated only @f: READ and STATS always,
 * the exclusive commands and atomics with DEVICE_EXCLUSIVE, migration
 * with DEVICE_MIGRATE, ordinary memory with HMM_MIRROR; the others are
 * EINVAL.
 */
static void check_device_gating(struct __test_metadata *_metadata, uint64_t f)
{
	const int excl = !!(f & UFFDX_FEATURE_DEVICE_EXCLUSIVE);
	const int migr = !!(f & UFFDX_FEATURE_DEVICE_MIGRATE);
	const int mirror = !!(f & UFFDX_FEATURE_HMM_MIRROR);
	const char *name = uffdx_feature_name(f);
	struct uffdx_region_map map;
	struct uffdx_dev_stats st;
	struct uffdx_dev_atomic a;
	uint8_t *buf, *anon, status = 0xcc;
	int fd, dev, ret;
	unsigned int i;

	fd = ctx_open(UFFDX_FEATURE_REGIONS | f, 0);
	ASSERT_LE(0, fd) TH_LOG("%s: %s", name, strerror(-fd));
	ASSERT_EQ(0, uffdx_region_map(fd, 4 * ps, 0, &map));
	for (i = 0; i < 4; i++)
		((uint8_t *)map.addr)[i * ps] = (uint8_t)(i + 1);
	buf = malloc(ps);
	ASSERT_NE(NULL, buf);
	anon = mmap(NULL, ps, PROT_READ | PROT_WRITE,
		    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, anon);
	anon[0] = 7;
	dev = uffdx_device_create(fd, 0);
	ASSERT_LE(0, dev) TH_LOG("%s: %s", name, strerror(-dev));

	/* any device: counters, and reads of region memory */
	EXPECT_EQ(0, uffdx_dev_stats(dev, &st)) TH_LOG("%s: STATS", name);
	ret = dev_cmd(dev, UFFDX_IOC_DEV_READ, map.addr, buf, 1);
	EXPECT_EQ(0, ret) TH_LOG("%s: READ: %s", name, strerror(-ret));
	if (!ret)
		EXPECT_EQ(1, buf[0]);

	/* ordinary memory: HMM_MIRROR */
	ret = dev_cmd(dev, UFFDX_IOC_DEV_READ, anon, buf, 1);
	EXPECT_EQ(mirror ? 0 : -EINVAL, ret) TH_LOG("%s: READ of anonymous "
						     "memory: %s", name,
						     strerror(-ret));
	if (!ret)
		EXPECT_EQ(7, buf[0]);

	/* DEVICE_EXCLUSIVE */
	ret = dev_cmd(dev, UFFDX_IOC_DEV_EXCLUSIVE, (uint8_t *)map.addr + ps,
		      NULL, 1);
	EXPECT_EQ(excl ? 0 : -EINVAL, ret) TH_LOG("%s: EXCLUSIVE: %s", name,
						   strerror(-ret));
	ret = dev_cmd(dev, UFFDX_IOC_DEV_CHECK_EXCLUSIVE,
		      (uint8_t *)map.addr + ps, NULL, 1);
	EXPECT_EQ(excl ? 0 : -EINVAL, ret) TH_LOG("%s: CHECK_EXCLUSIVE: %s",
						   name, strerror(-ret));
	ret = dev_cmd(dev, UFFDX_IOC_DEV_RELEASE, (uint8_t *)map.addr + ps,
		      NULL, 1);
	EXPECT_EQ(excl ? 0 : -EINVAL, ret) TH_LOG("%s: RELEASE: %s", name,
						   strerror(-ret));
	memset(&a, 0, sizeof(a));
	a.op = UFFDX_DEV_ATOMIC_FETCH_ADD;
	a.addr = (uintptr_t)map.addr + 2 * ps;
	a.value = 1;
	ret = uffdx_dev_atomic(dev, &a);
	EXPECT_EQ(excl ? 0 : -EINVAL, ret) TH_LOG("%s: ATOMIC: %s", name,
						   strerror(-ret));
	if (!ret) {
		EXPECT_EQ(3, a.old);
		EXPECT_EQ(4, ((uint8_t *)map.addr)[2 * ps]);
	}

	/* DEVICE_MIGRATE */
	ret = dev_cmd(dev, UFFDX_IOC_DEV_MIGRATE_TO_DEV,
		      (uint8_t *)map.addr + 3 * ps, &status, 1);
	EXPECT_EQ(migr ? 0 : -EINVAL, ret) TH_LOG("%s: MIGRATE_TO_DEV: %s",
						   name, strerror(-ret));
	if (!ret)
		EXPECT_EQ(1, status);
	ret = dev_cmd(dev, UFFDX_IOC_DEV_MIGRATE_TO_SYS,
		      (uint8_t *)map.addr + 3 * ps, NULL, 1);
	EXPECT_EQ(migr ? 0 : -EINVAL, ret) TH_LOG("%s: MIGRATE_TO_SYS: %s",
						   name, strerror(-ret));
	EXPECT_EQ(4, ((uint8_t *)map.addr)[3 * ps]);

	close(dev);
	munmap(anon, ps);
	free(buf);
	uffdx_region_unmap(&map);
	close(fd);
}

TEST(device_commands_gated_by_feature)
{
	uint64_t devs;
	unsigned int bit;

	SKIP_IF_NO_UFFDX();
	devs = device_supported();
	if (!devs)
		SKIP(return, "the module reports no device feature");
	for (bit = 0; bit < 64; bit++)
		if (devs & (1ULL << bit))
			check_device_gating(_metadata, 1ULL << bit);
}

/*
 * A device fd's ioctls on a context or region fd, and a context's or
 * region's on a device fd: ENOTTY, whatever the struct.
 */
TEST(device_ioctls_on_wrong_fds_enotty)
{
	static const unsigned long dev_nrs[] = {
		UFFDX_IOC_DEV_READ, UFFDX_IOC_DEV_WRITE,
		UFFDX_IOC_DEV_MIGRATE_TO_DEV, UFFDX_IOC_DEV_MIGRATE_TO_SYS,
		UFFDX_IOC_DEV_SNAPSHOT, UFFDX_IOC_DEV_EXCLUSIVE,
		UFFDX_IOC_DEV_CHECK_EXCLUSIVE, UFFDX_IOC_DEV_RELEASE,
		UFFDX_IOC_DEV_ATOMIC, UFFDX_IOC_DEV_STATS,
	};
	static const unsigned long other_nrs[] = {
		UFFDX_IOC_API, UFFDX_IOC_REGION_CREATE, UFFDX_IOC_ARM,
		UFFDX_IOC_COPY, UFFDX_IOC_RESOLVE, UFFDX_IOC_DEVICE_CREATE,
		UFFDX_IOC_REGION_INFO,
		/* the right number, the wrong direction; no number at all */
		_IOR(UFFDX_IOC_MAGIC, _UFFDX_DEV_READ, struct uffdx_dev_cmd),
		_IOWR(UFFDX_IOC_MAGIC, 0x5a, struct uffdx_dev_cmd),
	};
	union {
		struct uffdx_dev_stats st;
		unsigned char b[512];
	} arg;
	struct uffdx_region_map map;
	int fd, dev, i;

	SKIP_IF_NO_UFFDX();
	fd = ctx_open(DEFAULT_FEATURES | device_supported(), 0);
	ASSERT_LE(0, fd) TH_LOG("%s", strerror(-fd));
	ASSERT_EQ(0, uffdx_region_map(fd, ps, 0, &map));
	for (i = 0; i < (int)(sizeof(dev_nrs) / sizeof(dev_nrs[0])); i++) {
		memset(&arg, 0, sizeof(arg));
		arg.st.size = sizeof(arg.st);
		EXPECT_EQ(-1, ioctl(fd, dev_nrs[i], &arg)) TH_LOG("0x%lx", dev_nrs[i]);
		EXPECT_EQ(ENOTTY, errno) TH_LOG("0x%lx on a context", dev_nrs[i]);
		EXPECT_EQ(-1, ioctl(map.fd, dev_nrs[i], &arg));
		EXPECT_EQ(ENOTTY, errno) TH_LOG("0x%lx on a region", dev_nrs[i]);
	}
	if (!device_supported())
		goto out;
	dev = uffdx_device_create(fd, 0);
	ASSERT_LE(0, dev) TH_LOG("%s", strerror(-dev));
	for (i = 0; i < (int)(sizeof(other_nrs) / sizeof(other_nrs[0])); i++) {
		memset(&arg, 0, sizeof(arg));
		arg.st.size = sizeof(arg.st);
		EXPECT_EQ(-1, ioctl(dev, other_nrs[i], &arg)) TH_LOG("0x%lx", other_nrs[i]);
		EXPECT_EQ(ENOTTY, errno) TH_LOG("0x%lx on a device", other_nrs[i]);
	}
	/* the device's own still work */
	EXPECT_EQ(0, uffdx_dev_stats(dev, &arg.st));
	close(dev);
out:
	uffdx_region_unmap(&map);
	close(fd);
}

/* ---- open modes and credentials --------------------------------------------- */

/* A context needs O_RDWR: read (or write) permission alone drives nothing. */
TEST(open_rdonly_wronly_eacces)
{
	int fd;

	SKIP_IF_NO_UFFDX();
	fd = open(UFFDX_DEV, O_RDONLY | O_CLOEXEC);
	EXPECT_EQ(-1, fd);
	EXPECT_EQ(EACCES, errno) TH_LOG("O_RDONLY: %s", strerror(errno));
	if (fd >= 0)
		close(fd);
	fd = open(UFFDX_DEV, O_WRONLY | O_CLOEXEC);
	EXPECT_EQ(-1, fd);
	EXPECT_EQ(EACCES, errno) TH_LOG("O_WRONLY: %s", strerror(errno));
	if (fd >= 0)
		close(fd);
	fd = open(UFFDX_DEV, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	EXPECT_EQ(-1, fd);
	EXPECT_EQ(EACCES, errno);
	if (fd >= 0)
		close(fd);
	/* and O_RDWR works */
	fd = raw_open(0);
	ASSERT_LE(0, fd) TH_LOG("%s", strerror(errno));
	EXPECT_EQ(0, raw_api(fd, DEFAULT_FEATURES));
	close(fd);
}

/* The node's mode, restored whatever a test did to it. */
FIXTURE(node) {
	mode_t mode;
	int saved;
};

FIXTURE_SETUP(node)
{
	struct stat st;

	self->saved = 0;
	SKIP_IF_NO_UFFDX();
	if (getuid() != 0)
		SKIP(return, "needs root (setresuid, chmod)");
	ASSERT_EQ(0, stat(UFFDX_DEV, &st));
	self->mode = st.st_mode & 07777;
	self->saved = 1;
}

FIXTURE_TEARDOWN_PARENT(node)
{
	if (self->saved)
		chmod(UFFDX_DEV, self->mode);
}

/* In a child: become uid/gid 65534 with no groups; 0 or -errno. */
static int become_nobody(void)
{
	if (setgroups(0, NULL))
		return -errno;
	if (setresgid(65534, 65534, 65534))
		return -errno;
	if (setresuid(65534, 65534, 65534))
		return -errno;
	return 0;
}

TEST_F(node, other_uid_default_mode_eacces)
{
	int status = -1;
	pid_t pid;

	/* the module's default mode (udev may grant a group more) */
	ASSERT_EQ(0, chmod(UFFDX_DEV, 0600));
	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0) {
		int fd;

		if (become_nobody())
			_exit(10);
		fd = open(UFFDX_DEV, O_RDWR | O_CLOEXEC);
		if (fd >= 0)
			_exit(11);
		if (errno != EACCES)
			_exit(12);
		_exit(0);
	}
	ASSERT_EQ(0, wait_child(pid, &status, WAIT_MS));
	ASSERT_TRUE(WIFEXITED(status));
	EXPECT_EQ(0, WEXITSTATUS(status))
		TH_LOG("child step %d failed (10 setresuid, 11 open succeeded, 12 wrong errno)",
		       WEXITSTATUS(status));
}

/* KERNEL_FAULTS is decided by the opener's credentials, not the caller's. */
TEST(kernel_faults_checks_opener_creds)
{
	int status = -1;
	pid_t pid;

	SKIP_IF_NO_UFFDX();
	if (getuid() != 0)
		SKIP(return, "needs root (CAP_SYS_PTRACE)");
	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0) {
		int fd;

		/* opened without the capability, negotiated with it: EPERM */
		if (drop_effective_cap(CAP_SYS_PTRACE))
			_exit(10);
		fd = raw_open(0);
		if (fd < 0)
			_exit(11);
		if (raise_effective_cap(CAP_SYS_PTRACE))
			_exit(12);
		if (raw_api(fd, DEFAULT_FEATURES | UFFDX_FEATURE_KERNEL_FAULTS) != -1)
			_exit(13);
		if (errno != EPERM)
			_exit(14);
		/* still un-negotiated: without the bit it works */
		if (raw_api(fd, DEFAULT_FEATURES))
			_exit(15);
		close(fd);

		/* opened with it, negotiated without it: fine */
		fd = raw_open(0);
		if (fd < 0)
			_exit(16);
		if (drop_effective_cap(CAP_SYS_PTRACE))
			_exit(17);
		if (raw_api(fd, DEFAULT_FEATURES | UFFDX_FEATURE_KERNEL_FAULTS))
			_exit(18);
		close(fd);
		_exit(0);
	}
	ASSERT_EQ(0, wait_child(pid, &status, WAIT_MS));
	ASSERT_TRUE(WIFEXITED(status));
	EXPECT_EQ(0, WEXITSTATUS(status))
		TH_LOG("child step %d failed (10/12/17 capset, 11/16 open, 13 accepted without the opener's cap, 14 wrong errno, 15 retry, 18 refused with the opener's cap)",
		       WEXITSTATUS(status));
}

/* ---- epoll registered before the API ----------------------------------------- */

TEST(epoll_before_api_wakes_after_negotiation)
{
	struct epoll_event eev = { .events = EPOLLIN };
	struct uffdx_region_map m;
	struct uffdx_event ev;
	struct accessor *a;
	int fd, ep, ret;
	int64_t res;

	SKIP_IF_NO_UFFDX();
	fd = raw_open(0);
	ASSERT_LE(0, fd);
	ep = epoll_create1(EPOLL_CLOEXEC);
	ASSERT_LE(0, ep);
	eev.data.fd = fd;
	/* registered while poll() still says EPOLLERR */
	ASSERT_EQ(0, epoll_ctl(ep, EPOLL_CTL_ADD, fd, &eev));

	ASSERT_EQ(0, raw_api(fd, DEFAULT_FEATURES));
	/* now nothing is ready */
	EXPECT_EQ(0, epoll_wait(ep, &eev, 1, 0));
	ret = uffdx_region_map(fd, 4 * ps, 0, &m);
	ASSERT_EQ(0, ret) TH_LOG("%s", strerror(-ret));
	ASSERT_EQ(0, uffdx_arm(fd, m.id, 0, 4 * ps, UFFDX_ARM_MISSING));

	a = acc_new((uint8_t *)m.addr + 2 * ps, 0, 0);
	ASSERT_NE(NULL, a);
	ASSERT_EQ(0, acc_start_thread(a));
	memset(&eev, 0, sizeof(eev));
	ASSERT_EQ(1, epoll_wait(ep, &eev, 1, WAIT_MS))
		TH_LOG("epoll set up before the API never woke");
	EXPECT_EQ(fd, eev.data.fd);
	EXPECT_TRUE(eev.events & EPOLLIN);
	ASSERT_EQ(1, uffdx_read_events(fd, &ev, 1));
	EXPECT_EQ(2 * ps, ev.offset);
	EXPECT_EQ(m.id, ev.region_id);
	ASSERT_EQ(0, uffdx_zero(fd, m.id, 2 * ps, ps, 0, &res));
	ASSERT_EQ(0, acc_wait(a, WAIT_MS));
	EXPECT_EQ(0, a->sig);
	acc_free(a);
	uffdx_region_unmap(&m);
	close(ep);
	close(fd);
}

/* ---- a rejected argument struct leaks nothing --------------------------------- */

TEST_F(ctx, region_create_e2big_leaks_nothing)
{
	union {
		struct uffdx_region_create rc;
		uint8_t b[sizeof(struct uffdx_region_create) + 8];
	} u;
	uint64_t id1 = 0, id2 = 0;
	int fd1, fd2, nfds, i;

	fd1 = uffdx_region_create(self->fd, ps, 0, &id1);
	ASSERT_LE(0, fd1);
	nfds = count_open_fds();
	ASSERT_LT(0, nfds);
	for (i = 0; i < 16; i++) {
		memset(&u, 0, sizeof(u));
		u.rc.size = sizeof(u);
		u.rc.len = ps;
		u.rc.fd = -1;
		u.b[sizeof(u.rc) + (i % 8)] = (uint8_t)(1 + i);
		EXPECT_EQ(-1, ioctl(self->fd, UFFDX_IOC_REGION_CREATE, &u));
		EXPECT_EQ(E2BIG, errno);
		EXPECT_EQ(-1, u.rc.fd);
	}
	/* no fd installed, no id used up */
	EXPECT_EQ(nfds, count_open_fds());
	fd2 = uffdx_region_create(self->fd, ps, 0, &id2);
	ASSERT_LE(0, fd2);
	EXPECT_EQ(id1 + 1, id2);
	EXPECT_EQ(nfds + 1, count_open_fds());
	close(fd2);
	close(fd1);
}

TEST_HARNESS_MAIN
