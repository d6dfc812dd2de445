// SPDX-License-Identifier: GPL-2.0
/*
 * uffdx region tests (issue 3): creation, mmap rules, contents, REGION_INFO,
 * DISCARD and hole punching, passing regions between processes, regions
 * outliving their context, and the argument checks of the range ioctls.
 */
#include "helpers.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kselftest_harness.h"

#define NPAGES 16

FIXTURE(region) {
	int ctx;
	int rfd;
	uint64_t id;
	size_t len;
	uint8_t *map;
	uint8_t *buf;	/* one page */
};

FIXTURE_SETUP(region)
{
	self->ctx = self->rfd = -1;
	self->map = MAP_FAILED;
	self->buf = NULL;
	SKIP_IF_NO_UFFDX();
	self->len = NPAGES * ps;
	self->ctx = ctx_open(DEFAULT_FEATURES, 0);
	ASSERT_LE(0, self->ctx) TH_LOG("%s", strerror(-self->ctx));
	self->rfd = uffdx_region_create(self->ctx, self->len, 0, &self->id);
	ASSERT_LE(0, self->rfd) TH_LOG("%s", strerror(-self->rfd));
	self->map = mmap(NULL, self->len, PROT_READ | PROT_WRITE, MAP_SHARED, self->rfd, 0);
	ASSERT_NE(MAP_FAILED, self->map) TH_LOG("%s", strerror(errno));
	self->buf = malloc(ps);
	ASSERT_NE(NULL, self->buf);
}

FIXTURE_TEARDOWN(region)
{
	if (self->map != MAP_FAILED)
		munmap(self->map, self->len);
	if (self->rfd >= 0)
		close(self->rfd);
	if (self->ctx >= 0)
		close(self->ctx);
	free(self->buf);
}

static void rc_init(struct uffdx_region_create *rc, uint64_t len)
{
	memset(rc, 0, sizeof(*rc));
	rc->size = sizeof(*rc);
	rc->len = len;
}

TEST_F(region, create_bad_len)
{
	struct uffdx_region_create rc;
	uint64_t bad[] = { 0, 1, ps / 2, ps + 1, 2 * ps - 1, ~0ULL };
	unsigned int i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		rc_init(&rc, bad[i]);
		EXPECT_EQ(-1, ioctl(self->ctx, UFFDX_IOC_REGION_CREATE, &rc))
			TH_LOG("len %llu", (unsigned long long)bad[i]);
		EXPECT_EQ(EINVAL, errno) TH_LOG("len %llu", (unsigned long long)bad[i]);
	}
}

TEST_F(region, create_bad_flags_pad_reserved)
{
	struct uffdx_region_create rc;

	rc_init(&rc, ps);
	rc.flags = 1;
	EXPECT_EQ(-1, ioctl(self->ctx, UFFDX_IOC_REGION_CREATE, &rc));
	EXPECT_EQ(EINVAL, errno);

	rc_init(&rc, ps);
	rc.flags = 0x80000000u;
	EXPECT_EQ(-1, ioctl(self->ctx, UFFDX_IOC_REGION_CREATE, &rc));
	EXPECT_EQ(EINVAL, errno);

	rc_init(&rc, ps);
	rc.__pad = 1;
	EXPECT_EQ(-1, ioctl(self->ctx, UFFDX_IOC_REGION_CREATE, &rc));
	EXPECT_EQ(EINVAL, errno);

	rc_init(&rc, ps);
	rc.reserved[0] = 1;
	EXPECT_EQ(-1, ioctl(self->ctx, UFFDX_IOC_REGION_CREATE, &rc));
	EXPECT_EQ(EINVAL, errno);

	rc_init(&rc, ps);
	rc.reserved[1] = 1ULL << 63;
	EXPECT_EQ(-1, ioctl(self->ctx, UFFDX_IOC_REGION_CREATE, &rc));
	EXPECT_EQ(EINVAL, errno);

	rc_init(&rc, ps);
	rc.size = 8;
	EXPECT_EQ(-1, ioctl(self->ctx, UFFDX_IOC_REGION_CREATE, &rc));
	EXPECT_EQ(EINVAL, errno);
}

TEST_F(region, create_larger_struct)
{
	union {
		struct uffdx_region_create rc;
		uint8_t b[sizeof(struct uffdx_region_create) + 16];
	} u;
	int ret;

	memset(&u, 0, sizeof(u));
	u.rc.size = sizeof(u);
	u.rc.len = ps;
	u.b[sizeof(u) - 3] = 9;
	EXPECT_EQ(-1, ioctl(self->ctx, UFFDX_IOC_REGION_CREATE, &u));
	EXPECT_EQ(E2BIG, errno);

	u.b[sizeof(u) - 3] = 0;
	ret = ioctl(self->ctx, UFFDX_IOC_REGION_CREATE, &u);
	ASSERT_LE(0, ret) TH_LOG("%s", strerror(errno));
	EXPECT_LE(0, u.rc.fd);
	EXPECT_NE(0, u.rc.region_id);
	if (u.rc.fd >= 0)
		close(u.rc.fd);
}

TEST_F(region, create_returns_cloexec_fd_and_id)
{
	struct uffdx_region_create rc;
	uint64_t id2 = 0;
	int ret, fd2;

	rc_init(&rc, 2 * ps);
	rc.region_id = 0xccccccccccccccccULL;
	rc.fd = (int32_t)0xcccccccc;
	ret = ioctl(self->ctx, UFFDX_IOC_REGION_CREATE, &rc);
	ASSERT_LE(0, ret) TH_LOG("%s", strerror(errno));
	ASSERT_LE(0, rc.fd);
	if (ret > 0)
		EXPECT_EQ(rc.fd, ret);
	EXPECT_NE(0, rc.region_id);
	EXPECT_NE(0xccccccccccccccccULL, rc.region_id);
	EXPECT_NE(self->id, rc.region_id);
	EXPECT_EQ(FD_CLOEXEC, fcntl(rc.fd, F_GETFD) & FD_CLOEXEC);
	EXPECT_EQ(O_RDWR, fcntl(rc.fd, F_GETFL) & O_ACCMODE);

	/* and through the library */
	fd2 = uffdx_region_create(self->ctx, ps, 0, &id2);
	ASSERT_LE(0, fd2);
	EXPECT_EQ(FD_CLOEXEC, fcntl(fd2, F_GETFD) & FD_CLOEXEC);
	EXPECT_NE(0, id2);
	EXPECT_NE(rc.region_id, id2);
	close(fd2);
	close(rc.fd);
}

TEST_F(region, fstat_size)
{
	struct stat st;

	ASSERT_EQ(0, fstat(self->rfd, &st));
	EXPECT_EQ((off_t)self->len, st.st_size);
}

TEST_F(region, mmap_private_einval)
{
	void *p = mmap(NULL, ps, PROT_READ | PROT_WRITE, MAP_PRIVATE, self->rfd, 0);

	EXPECT_EQ(MAP_FAILED, p);
	EXPECT_EQ(EINVAL, errno);
	p = mmap(NULL, ps, PROT_READ, MAP_PRIVATE, self->rfd, 0);
	EXPECT_EQ(MAP_FAILED, p);
	EXPECT_EQ(EINVAL, errno);
}

TEST_F(region, mmap_beyond_region_einval)
{
	void *p;

	p = mmap(NULL, self->len + ps, PROT_READ | PROT_WRITE, MAP_SHARED, self->rfd, 0);
	EXPECT_EQ(MAP_FAILED, p);
	EXPECT_EQ(EINVAL, errno);
	p = mmap(NULL, ps, PROT_READ | PROT_WRITE, MAP_SHARED, self->rfd, self->len);
	EXPECT_EQ(MAP_FAILED, p);
	EXPECT_EQ(EINVAL, errno);
	p = mmap(NULL, 2 * ps, PROT_READ | PROT_WRITE, MAP_SHARED, self->rfd, self->len - ps);
	EXPECT_EQ(MAP_FAILED, p);
	EXPECT_EQ(EINVAL, errno);
}

TEST_F(region, mmap_at_offset)
{
	uint8_t *p;
	int k;

	for (k = 0; k < 4; k++)
		fill_pattern(self->map + (3 + k) * ps, ps, 100 + k);
	p = mmap(NULL, 4 * ps, PROT_READ | PROT_WRITE, MAP_SHARED, self->rfd, 3 * ps);
	ASSERT_NE(MAP_FAILED, p) TH_LOG("%s", strerror(errno));
	for (k = 0; k < 4; k++)
		EXPECT_EQ(-1, check_pattern(p + k * ps, ps, 100 + k)) TH_LOG("page %d", k);
	fill_pattern(p + ps, ps, 200);
	EXPECT_EQ(-1, check_pattern(self->map + 4 * ps, ps, 200));
	/* the last page of the region, mapped alone */
	munmap(p, 4 * ps);
	p = mmap(NULL, ps, PROT_READ | PROT_WRITE, MAP_SHARED, self->rfd, self->len - ps);
	ASSERT_NE(MAP_FAILED, p);
	p[7] = 0x77;
	EXPECT_EQ(0x77, self->map[self->len - ps + 7]);
	munmap(p, ps);
}

TEST_F(region, mapped_twice_same_data)
{
	uint8_t *p = mmap(NULL, self->len, PROT_READ | PROT_WRITE, MAP_SHARED, self->rfd, 0);

	ASSERT_NE(MAP_FAILED, p);
	ASSERT_NE(self->map, p);
	fill_pattern(self->map, ps, 1);
	EXPECT_EQ(-1, check_pattern(p, ps, 1));
	fill_pattern(p + 5 * ps, ps, 2);
	EXPECT_EQ(-1, check_pattern(self->map + 5 * ps, ps, 2));
	munmap(p, self->len);
}

TEST_F(region, unarmed_zero_fill_keeps_data)
{
	int k;

	for (k = 0; k < NPAGES; k++)
		EXPECT_TRUE(is_zero(self->map + k * ps, ps)) TH_LOG("page %d", k);
	for (k = 0; k < NPAGES; k++)
		fill_pattern(self->map + k * ps, ps, k);
	munmap(self->map, self->len);
	self->map = mmap(NULL, self->len, PROT_READ | PROT_WRITE, MAP_SHARED, self->rfd, 0);
	ASSERT_NE(MAP_FAILED, self->map);
	for (k = 0; k < NPAGES; k++)
		EXPECT_EQ(-1, check_pattern(self->map + k * ps, ps, k)) TH_LOG("page %d", k);
}

static void info_raw(struct __test_metadata *_metadata, int fd, struct uffdx_region_info *info)
{
	/* out fields poisoned; flags is left 0 (an out field, but see report) */
	memset(info, 0xcc, sizeof(*info));
	info->size = sizeof(*info);
	info->flags = 0;
	memset(info->reserved, 0, sizeof(info->reserved));
	ASSERT_EQ(0, ioctl(fd, UFFDX_IOC_REGION_INFO, info)) TH_LOG("%s", strerror(errno));
}

TEST_F(region, region_info_resident)
{
	struct uffdx_region_info info;
	int64_t res = 0;

	info_raw(_metadata, self->rfd, &info);
	EXPECT_EQ(self->len, info.len);
	EXPECT_EQ(self->id, info.region_id);
	EXPECT_EQ(0, info.resident);
	EXPECT_EQ(0, info.flags);

	self->map[0] = 1;
	self->map[5 * ps] = 1;
	(void)*(volatile uint8_t *)(self->map + 9 * ps);	/* read: zero fill */
	info_raw(_metadata, self->rfd, &info);
	EXPECT_EQ(3 * ps, info.resident);

	ASSERT_EQ(0, uffdx_discard(self->ctx, self->id, 5 * ps, ps, &res));
	EXPECT_EQ((int64_t)ps, res);
	info_raw(_metadata, self->rfd, &info);
	EXPECT_EQ(2 * ps, info.resident);

	/* via the library too */
	memset(&info, 0xcc, sizeof(info));
	ASSERT_EQ(0, uffdx_region_info(self->rfd, &info));
	EXPECT_EQ(2 * ps, info.resident);
	EXPECT_EQ(self->len, info.len);
}

TEST_F(region, region_info_bad_args)
{
	struct uffdx_region_info info;

	memset(&info, 0, sizeof(info));
	info.size = sizeof(info);
	info.reserved[1] = 1;
	EXPECT_EQ(-1, ioctl(self->rfd, UFFDX_IOC_REGION_INFO, &info));
	EXPECT_EQ(EINVAL, errno);

	memset(&info, 0, sizeof(info));
	info.size = 4;
	EXPECT_EQ(-1, ioctl(self->rfd, UFFDX_IOC_REGION_INFO, &info));
	EXPECT_EQ(EINVAL, errno);
}

TEST_F(region, region_fd_rejects_context_ioctls)
{
	struct uffdx_range r;
	struct uffdx_api a;
	unsigned long ops[] = { UFFDX_IOC_ARM, UFFDX_IOC_COPY, UFFDX_IOC_DISCARD,
				UFFDX_IOC_REGION_CREATE };
	unsigned int i;

	memset(&a, 0, sizeof(a));
	a.size = sizeof(a);
	a.api = UFFDX_API_VERSION;
	EXPECT_EQ(-1, ioctl(self->rfd, UFFDX_IOC_API, &a));
	EXPECT_EQ(ENOTTY, errno);
	for (i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
		memset(&r, 0, sizeof(r));
		r.size = sizeof(r);
		r.region_id = self->id;
		r.len = ps;
		r.mode = ops[i] == UFFDX_IOC_ARM ? UFFDX_ARM_MISSING : 0;
		r.src = ops[i] == UFFDX_IOC_COPY ? (uintptr_t)self->buf : 0;
		EXPECT_EQ(-1, ioctl(self->rfd, ops[i], &r)) TH_LOG("ioctl 0x%lx", ops[i]);
		EXPECT_EQ(ENOTTY, errno) TH_LOG("ioctl 0x%lx", ops[i]);
	}
	/* read() of events on a region fd is not a thing either */
	EXPECT_EQ(-1, ioctl(self->rfd, _IO('x', 1)));
	EXPECT_EQ(ENOTTY, errno);
}

TEST_F(region, context_ioctl_on_other_fd_enotty)
{
	struct uffdx_range r;
	int fd = open("/dev/null", O_RDWR | O_CLOEXEC);

	ASSERT_LE(0, fd);
	memset(&r, 0, sizeof(r));
	r.size = sizeof(r);
	r.region_id = self->id;
	r.len = ps;
	r.src = (uintptr_t)self->buf;
	EXPECT_EQ(-1, ioctl(fd, UFFDX_IOC_COPY, &r));
	EXPECT_EQ(ENOTTY, errno);
	close(fd);
}

TEST_F(region, discard_frees_pages)
{
	struct uffdx_region_info info;
	int64_t res = 0;
	int k;

	for (k = 0; k < 4; k++)
		fill_pattern(self->map + k * ps, ps, 10 + k);
	ASSERT_EQ(0, uffdx_discard(self->ctx, self->id, ps, 2 * ps, &res));
	EXPECT_EQ((int64_t)(2 * ps), res);
	ASSERT_EQ(0, uffdx_region_info(self->rfd, &info));
	EXPECT_EQ(2 * ps, info.resident);
	EXPECT_EQ(-1, check_pattern(self->map, ps, 10));
	EXPECT_TRUE(is_zero(self->map + ps, 2 * ps));
	EXPECT_EQ(-1, check_pattern(self->map + 3 * ps, ps, 13));

	/* the mapping stays usable; discarding holes is fine too */
	fill_pattern(self->map + ps, ps, 20);
	EXPECT_EQ(-1, check_pattern(self->map + ps, ps, 20));
	res = 0;
	ASSERT_EQ(0, uffdx_discard(self->ctx, self->id, 0, self->len, &res));
	EXPECT_EQ((int64_t)self->len, res);
	ASSERT_EQ(0, uffdx_region_info(self->rfd, &info));
	EXPECT_EQ(0, info.resident);
	EXPECT_TRUE(is_zero(self->map, self->len));
}

TEST_F(region, discard_seen_by_other_mapping)
{
	uint8_t *p = mmap(NULL, self->len, PROT_READ | PROT_WRITE, MAP_SHARED, self->rfd, 0);
	int64_t res;

	ASSERT_NE(MAP_FAILED, p);
	fill_pattern(self->map, 2 * ps, 3);
	EXPECT_EQ(-1, check_pattern(p, 2 * ps, 3));
	ASSERT_EQ(0, uffdx_discard(self->ctx, self->id, 0, 2 * ps, &res));
	EXPECT_TRUE(is_zero(p, 2 * ps));
	munmap(p, self->len);
}

/*
 * fallocate() and MADV_REMOVE are refused (ENODEV from the VFS: the region
 * inode is deliberately not a regular file, docs/design.md) and lose
 * nothing; DISCARD is the hole punch.
 */
TEST_F(region, punch_hole_refused_discard_instead)
{
	struct uffdx_region_info info;
	struct stat st;
	int64_t res = 0;
	uint8_t *want;

	fill_pattern(self->map, 4 * ps, 7);
	EXPECT_EQ(-1, fallocate(self->rfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				ps, 2 * ps));
	EXPECT_EQ(ENODEV, errno);
	EXPECT_EQ(-1, madvise(self->map + ps, 2 * ps, MADV_REMOVE));
	EXPECT_EQ(ENODEV, errno);
	EXPECT_EQ(-1, check_pattern(self->map, 4 * ps, 7));

	ASSERT_EQ(0, uffdx_discard(self->ctx, self->id, ps, 2 * ps, &res));
	EXPECT_EQ((int64_t)(2 * ps), res);
	ASSERT_EQ(0, uffdx_region_info(self->rfd, &info));
	EXPECT_EQ(2 * ps, info.resident);
	EXPECT_EQ(-1, check_pattern(self->map, ps, 7));
	EXPECT_TRUE(is_zero(self->map + ps, 2 * ps));
	want = malloc(4 * ps);
	ASSERT_NE(NULL, want);
	fill_pattern(want, 4 * ps, 7);
	EXPECT_EQ(0, memcmp(self->map + 3 * ps, want + 3 * ps, ps));
	free(want);
	ASSERT_EQ(0, fstat(self->rfd, &st));
	EXPECT_EQ((off_t)self->len, st.st_size);
}

/*
 * Fault-around: touching one page of a populated region maps the present
 * pages of its 16-page window (mincore() reports the PTEs), and a DISCARD
 * still zaps what fault-around mapped.
 */
TEST_F(region, fault_around_maps_window_discard_zaps)
{
	unsigned char vec[32];
	uint8_t *src, *p;
	int64_t res = 0;
	uint64_t id = 0;
	int k, rfd;

	rfd = uffdx_region_create(self->ctx, 32 * ps, 0, &id);
	ASSERT_LE(0, rfd);
	src = malloc(32 * ps);
	ASSERT_NE(NULL, src);
	fill_pattern(src, 32 * ps, 77);
	ASSERT_EQ(0, uffdx_copy(self->ctx, id, 0, src, 32 * ps, 0, &res));

	p = mmap(NULL, 32 * ps, PROT_READ | PROT_WRITE, MAP_SHARED, rfd, 0);
	ASSERT_NE(MAP_FAILED, p);
	ASSERT_EQ(0, mincore(p, 32 * ps, vec));
	for (k = 0; k < 32; k++)
		EXPECT_EQ(0, vec[k] & 1) TH_LOG("page %d mapped before any access", k);

	EXPECT_EQ(src[5 * ps + 3], p[5 * ps + 3]);
	ASSERT_EQ(0, mincore(p, 32 * ps, vec));
	for (k = 0; k < 32; k++)
		EXPECT_EQ(k < 16, vec[k] & 1) TH_LOG("page %d", k);
	EXPECT_EQ(0, memcmp(p, src, 32 * ps));

	ASSERT_EQ(0, uffdx_discard(self->ctx, id, 9 * ps, ps, &res));
	ASSERT_EQ(0, mincore(p, 32 * ps, vec));
	EXPECT_EQ(0, vec[9] & 1);
	EXPECT_EQ(1, vec[8] & 1);
	EXPECT_TRUE(is_zero(p + 9 * ps, ps));
	EXPECT_EQ(0, memcmp(p + 10 * ps, src + 10 * ps, 22 * ps));
	munmap(p, 32 * ps);
	close(rfd);
	free(src);
}

/* A 1 TiB region (the largest) can be armed: the bitmap is 32 MiB. */
TEST_F(region, arm_largest_region)
{
	uint64_t len = 1ULL << 40, id = 0;
	int64_t res = 0;
	int rfd;

	rfd = uffdx_region_create(self->ctx, len, 0, &id);
	ASSERT_LE(0, rfd) TH_LOG("%s", strerror(-rfd));
	EXPECT_EQ(0, uffdx_arm(self->ctx, id, 0, len, UFFDX_ARM_MISSING));
	/* armed at both ends: a fill works, a second one finds the page */
	EXPECT_EQ(0, uffdx_zero(self->ctx, id, len - ps, ps, 0, &res));
	EXPECT_EQ(-EEXIST, uffdx_zero(self->ctx, id, len - ps, ps, 0, &res));
	EXPECT_EQ(0, uffdx_disarm(self->ctx, id, 0, len));
	close(rfd);
}

struct create_race {
	int ctx;
	uint64_t first_id;
	unsigned int n;
	volatile int stop;
	int bad_errno;
};

static void *create_race_prober(void *arg)
{
	struct create_race *cr = arg;
	struct uffdx_range r;
	unsigned int i;

	while (!cr->stop) {
		for (i = 0; i < cr->n; i++) {
			memset(&r, 0, sizeof(r));
			r.size = sizeof(r);
			r.region_id = cr->first_id + i;
			r.len = ps;
			if (ioctl(cr->ctx, UFFDX_IOC_ZERO, &r) &&
			    errno != ENOENT && errno != EEXIST)
				cr->bad_errno = errno;
		}
	}
	return NULL;
}

/*
 * Region ids are allocated cyclically, increasing, so another thread can
 * predict the id of a region being created and name it: it must find either
 * nothing (ENOENT) or a complete region, never a half-built one (the kernel
 * log scan catches a crash).
 */
TEST_F(region, lookup_races_with_create)
{
	struct create_race cr = { .ctx = self->ctx, .first_id = self->id + 1,
				  .n = 200 };
	unsigned int i;
	uint64_t id;
	pthread_t th;
	int fd;

	ASSERT_EQ(0, pthread_create(&th, NULL, create_race_prober, &cr));
	for (i = 0; i < cr.n; i++) {
		fd = uffdx_region_create(self->ctx, ps, 0, &id);
		ASSERT_LE(0, fd);
		/* the next id each time, though the previous one was freed */
		EXPECT_EQ(cr.first_id + i, id);
		close(fd);
	}
	cr.stop = 1;
	pthread_join(th, NULL);
	EXPECT_EQ(0, cr.bad_errno) TH_LOG("%s", strerror(cr.bad_errno));
}

TEST_F(region, pass_over_unix_socket)
{
	int sv[2], status = -1;
	pid_t pid;

	fill_pattern(self->map, ps, 41);
	ASSERT_EQ(0, socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv));
	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0) {
		uint8_t *p;
		int fd;
		char c;

		/* a process that never saw the region: drop the inherited ones */
		munmap(self->map, self->len);
		close(self->rfd);
		close(self->ctx);
		close(sv[0]);
		fd = recv_fd(sv[1], WAIT_MS);
		if (fd < 0)
			_exit(10);
		p = mmap(NULL, self->len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (p == MAP_FAILED)
			_exit(11);
		if (check_pattern(p, ps, 41) != -1)
			_exit(12);
		fill_pattern(p + ps, ps, 42);
		if (write(sv[1], "d", 1) != 1)
			_exit(13);
		/* keep the mapping until the parent has looked */
		if (wait_fd(sv[1], POLLIN, WAIT_MS) != 1 || read(sv[1], &c, 1) != 1)
			_exit(14);
		if (check_pattern(p + 2 * ps, ps, 43) != -1)
			_exit(15);
		_exit(0);
	}
	close(sv[1]);
	ASSERT_EQ(0, send_fd(sv[0], self->rfd));
	{
		char c;

		ASSERT_EQ(1, wait_fd(sv[0], POLLIN, WAIT_MS));
		ASSERT_EQ(1, read(sv[0], &c, 1));
	}
	EXPECT_EQ(-1, check_pattern(self->map + ps, ps, 42));
	fill_pattern(self->map + 2 * ps, ps, 43);
	ASSERT_EQ(1, write(sv[0], "p", 1));
	ASSERT_EQ(0, wait_child(pid, &status, WAIT_MS));
	ASSERT_TRUE(WIFEXITED(status));
	EXPECT_EQ(0, WEXITSTATUS(status)) TH_LOG("child failed at step %d", WEXITSTATUS(status));
	close(sv[0]);
}

TEST_F(region, outlives_context)
{
	struct uffdx_region_info info;
	uint8_t v = 0xee;

	fill_pattern(self->map, ps, 50);
	ASSERT_EQ(0, uffdx_arm(self->ctx, self->id, ps, ps, UFFDX_ARM_MISSING));
	close(self->ctx);
	self->ctx = -1;

	/* populated pages stay readable and writable */
	EXPECT_EQ(-1, check_pattern(self->map, ps, 50));
	self->map[1] = 0x99;
	EXPECT_EQ(0x99, self->map[1]);
	ASSERT_EQ(0, uffdx_region_info(self->rfd, &info));
	EXPECT_EQ(UFFDX_REGION_OWNER_GONE, info.flags & UFFDX_REGION_OWNER_GONE);
	EXPECT_EQ(self->id, info.region_id);
	EXPECT_EQ(self->len, info.len);

	/* an armed hole of a released context: SIGBUS, read and write */
	EXPECT_EQ(SIGBUS, try_read(self->map + ps, &v));
	EXPECT_EQ(SIGBUS, try_write(self->map + ps + 8, 1));
	/* an unarmed hole still zero-fills */
	EXPECT_EQ(0, try_read(self->map + 2 * ps, &v));
	EXPECT_EQ(0, v);
	/* a fresh mapping of the surviving region sees the data */
	{
		uint8_t *p = mmap(NULL, ps, PROT_READ, MAP_SHARED, self->rfd, 0);

		ASSERT_NE(MAP_FAILED, p);
		EXPECT_EQ(0x99, p[1]);
		munmap(p, ps);
	}
}

TEST_F(region, foreign_region_id_enoent)
{
	int other = ctx_open(DEFAULT_FEATURES, 0);
	uint64_t oid = 0, id2 = 0;
	int64_t res = 0;
	int ofd, fd2;

	ASSERT_LE(0, other);
	/* ours: two regions; the other context: one */
	fd2 = uffdx_region_create(self->ctx, ps, 0, &id2);
	ASSERT_LE(0, fd2);
	ofd = uffdx_region_create(other, ps, 0, &oid);
	ASSERT_LE(0, ofd);
	fill_pattern(self->buf, ps, 1);
	/* ids name regions of the context that created them, only */
	if (id2 != oid)
		EXPECT_EQ(-ENOENT, uffdx_copy(other, id2, 0, self->buf, ps, 0, &res));
	if (self->id != oid)
		EXPECT_EQ(-ENOENT, uffdx_copy(other, self->id, 0, self->buf, ps, 0, &res));
	if (oid != self->id && oid != id2)
		EXPECT_EQ(-ENOENT, uffdx_copy(self->ctx, oid, 0, self->buf, ps, 0, &res));
	/* and nothing landed in our regions */
	EXPECT_TRUE(is_zero(self->map, ps));
	close(fd2);
	close(ofd);
	close(other);
}

/* ------------------------------------------------------------------ */
/* Argument checks of the range ioctls, table driven.                  */

struct range_op {
	const char *name;
	unsigned long nr;
	uint32_t good_mode;
	uint32_t bad_modes[3];
	int needs_src;
	int has_result;
};

static const struct range_op range_ops[] = {
	{ "ARM", UFFDX_IOC_ARM, UFFDX_ARM_MISSING, { 0, 1u << 1, 1u << 31 }, 0, 0 },
	/* DISARM takes the arm mode to clear, as libuffdx passes it */
	{ "DISARM", UFFDX_IOC_DISARM, UFFDX_ARM_MISSING, { 1u << 1, 1u << 7, 1u << 31 }, 0, 0 },
	{ "COPY", UFFDX_IOC_COPY, 0, { 1u << 1, 1u << 7, 1u << 31 }, 1, 1 },
	{ "ZERO", UFFDX_IOC_ZERO, 0, { 1u << 1, 1u << 7, 1u << 31 }, 0, 1 },
	{ "POISON", UFFDX_IOC_POISON, 0, { 1u << 1, 1u << 7, 1u << 31 }, 0, 1 },
	{ "WAKE", UFFDX_IOC_WAKE, 0, { 1u << 1, 1u << 7, 1u << 31 }, 0, 0 },
	{ "DISCARD", UFFDX_IOC_DISCARD, 0, { 1u << 1, 1u << 7, 1u << 31 }, 0, 1 },
};

static void range_init(struct uffdx_range *r, const struct range_op *op,
		       uint64_t id, uint64_t off, uint64_t len, void *src)
{
	memset(r, 0, sizeof(*r));
	r->size = sizeof(*r);
	r->mode = op->good_mode;
	r->region_id = id;
	r->offset = off;
	r->len = len;
	r->src = op->needs_src ? (uintptr_t)src : 0;
}

#define EXPECT_RANGE_ERR(err, what) do {					\
	int __ret = ioctl(self->ctx, op->nr, &r);				\
	int __e = errno;							\
	EXPECT_EQ(-1, __ret) TH_LOG("%s: %s accepted", op->name, what);	\
	EXPECT_EQ(err, __e) TH_LOG("%s: %s: errno %d (%s)", op->name, what,	\
				   __e, strerror(__e));				\
} while (0)

TEST_F(region, range_ops_bad_args)
{
	uint8_t *src = malloc(4 * ps);
	struct uffdx_range r;
	unsigned int i, j;

	ASSERT_NE(NULL, src);
	memset(src, 0x11, 4 * ps);
	for (i = 0; i < sizeof(range_ops) / sizeof(range_ops[0]); i++) {
		const struct range_op *op = &range_ops[i];

		range_init(&r, op, self->id, 1, ps, src);
		EXPECT_RANGE_ERR(EINVAL, "unaligned offset");
		range_init(&r, op, self->id, ps + ps / 2, ps, src);
		EXPECT_RANGE_ERR(EINVAL, "unaligned offset (half page)");
		range_init(&r, op, self->id, 0, ps - 1, src);
		EXPECT_RANGE_ERR(EINVAL, "unaligned len");
		range_init(&r, op, self->id, 0, ps + 1, src);
		EXPECT_RANGE_ERR(EINVAL, "unaligned len (page + 1)");
		range_init(&r, op, self->id, 0, 0, src);
		EXPECT_RANGE_ERR(EINVAL, "len 0");
		range_init(&r, op, self->id, ~0ULL & ~(uint64_t)(ps - 1), 2 * ps, src);
		EXPECT_RANGE_ERR(EINVAL, "offset + len overflows");
		range_init(&r, op, self->id, ps, ~0ULL & ~(uint64_t)(ps - 1), src);
		EXPECT_RANGE_ERR(EINVAL, "huge len overflows");
		range_init(&r, op, self->id, self->len, ps, src);
		EXPECT_RANGE_ERR(EINVAL, "offset at region end");
		range_init(&r, op, self->id, self->len - ps, 2 * ps, src);
		EXPECT_RANGE_ERR(EINVAL, "range past region end");
		range_init(&r, op, self->id, 0, self->len + ps, src);
		EXPECT_RANGE_ERR(EINVAL, "len larger than region");
		for (j = 0; j < 3; j++) {
			char what[64];

			range_init(&r, op, self->id, 0, ps, src);
			r.mode = op->bad_modes[j];
			snprintf(what, sizeof(what), "mode 0x%x", r.mode);
			EXPECT_RANGE_ERR(EINVAL, what);
		}
		if (op->nr == UFFDX_IOC_ARM) {
			range_init(&r, op, self->id, 0, ps, src);
			r.mode = UFFDX_ARM_MISSING | (1u << 1);
			EXPECT_RANGE_ERR(EINVAL, "ARM_MISSING plus an unknown bit");
		}
		range_init(&r, op, self->id, 0, ps, src);
		r.reserved[0] = 1;
		EXPECT_RANGE_ERR(EINVAL, "reserved[0]");
		range_init(&r, op, self->id, 0, ps, src);
		r.reserved[1] = 1ULL << 40;
		EXPECT_RANGE_ERR(EINVAL, "reserved[1]");
		if (!op->needs_src) {
			range_init(&r, op, self->id, 0, ps, src);
			r.src = (uintptr_t)src;
			EXPECT_RANGE_ERR(EINVAL, "src != 0");
		}
		range_init(&r, op, self->id, 0, ps, src);
		r.size = 8;
		EXPECT_RANGE_ERR(EINVAL, "size 8");
		range_init(&r, op, self->id ^ 0x5a5a0000ULL, 0, ps, src);
		EXPECT_RANGE_ERR(ENOENT, "unknown region id");
		range_init(&r, op, 0, 0, ps, src);
		EXPECT_RANGE_ERR(ENOENT, "region id 0");
	}
	/* none of it touched the region */
	{
		struct uffdx_region_info info;

		ASSERT_EQ(0, uffdx_region_info(self->rfd, &info));
		EXPECT_EQ(0, info.resident);
		EXPECT_TRUE(is_zero(self->map, self->len));
	}
	free(src);
}

TEST_F(region, range_ops_good_args)
{
	uint8_t *src = malloc(2 * ps);
	struct uffdx_range r;
	unsigned int i;

	/* every op with a valid range on an unarmed region works */
	ASSERT_NE(NULL, src);
	fill_pattern(src, 2 * ps, 60);
	for (i = 0; i < sizeof(range_ops) / sizeof(range_ops[0]); i++) {
		const struct range_op *op = &range_ops[i];
		uint64_t off = (2 * i) * ps;
		int ret;

		range_init(&r, op, self->id, off, 2 * ps, src);
		r.result = 0x5a5a;
		ret = ioctl(self->ctx, op->nr, &r);
		EXPECT_EQ(0, ret) TH_LOG("%s: %s", op->name, strerror(errno));
		if (op->has_result)
			EXPECT_EQ((int64_t)(2 * ps), r.result) TH_LOG("%s", op->name);
	}
	/* COPY landed at pages 4-5, ZERO at 6-7, POISON at 8-9 */
	EXPECT_EQ(0, memcmp(self->map + 4 * ps, src, 2 * ps));
	EXPECT_TRUE(is_zero(self->map + 6 * ps, 2 * ps));
	{
		uint8_t v;

		EXPECT_EQ(SIGBUS, try_read(self->map + 8 * ps, &v));
		EXPECT_EQ(SIGBUS, try_read(self->map + 9 * ps, &v));
	}
	free(src);
}

/* ---- region ids ------------------------------------------------------------ */

/* Raw COPY of one page, to see errno. */
static int raw_copy(int ctx, uint64_t id, uint64_t off, const void *src)
{
	struct uffdx_range r;

	memset(&r, 0, sizeof(r));
	r.size = sizeof(r);
	r.region_id = id;
	r.offset = off;
	r.len = ps;
	r.src = (uintptr_t)src;
	return ioctl(ctx, UFFDX_IOC_COPY, &r);
}

/*
 * Ids are never reused within a context: a handler holding an event of a
 * region that died cannot fill a new region by mistake.
 */
TEST_F(region, ids_never_reused)
{
	uint64_t a = 0, b = 0, c = 0, d = 0;
	struct uffdx_region_info info;
	uint8_t *p;
	int fa, fb, fc, fd;

	fill_pattern(self->buf, ps, 8);
	fa = uffdx_region_create(self->ctx, ps, 0, &a);
	ASSERT_LE(0, fa);
	EXPECT_LT(self->id, a);
	close(fa);		/* no mapping: the region is gone */
	fb = uffdx_region_create(self->ctx, ps, 0, &b);
	ASSERT_LE(0, fb);
	EXPECT_NE(a, b);
	EXPECT_LT(a, b) TH_LOG("id %llu after %llu", (unsigned long long)b,
			       (unsigned long long)a);
	/* the old id names nothing, and the new region got nothing */
	EXPECT_EQ(-1, raw_copy(self->ctx, a, 0, self->buf));
	EXPECT_EQ(ENOENT, errno);
	ASSERT_EQ(0, uffdx_region_info(fb, &info));
	EXPECT_EQ(b, info.region_id);
	EXPECT_EQ(0, info.resident);

	/* kept alive by a mapping only: still its id, until the munmap */
	p = mmap(NULL, ps, PROT_READ | PROT_WRITE, MAP_SHARED, fb, 0);
	ASSERT_NE(MAP_FAILED, p);
	close(fb);
	EXPECT_EQ(0, raw_copy(self->ctx, b, 0, self->buf)) TH_LOG("%s", strerror(errno));
	EXPECT_EQ(0, memcmp(p, self->buf, ps));
	munmap(p, ps);
	EXPECT_EQ(-1, raw_copy(self->ctx, b, 0, self->buf));
	EXPECT_EQ(ENOENT, errno);

	fc = uffdx_region_create(self->ctx, ps, 0, &c);
	ASSERT_LE(0, fc);
	EXPECT_LT(b, c);
	fd = uffdx_region_create(self->ctx, ps, 0, &d);
	ASSERT_LE(0, fd);
	EXPECT_LT(c, d);
	EXPECT_EQ(-1, raw_copy(self->ctx, a, 0, self->buf));
	EXPECT_EQ(ENOENT, errno);
	EXPECT_EQ(-1, raw_copy(self->ctx, b, 0, self->buf));
	EXPECT_EQ(ENOENT, errno);
	close(fc);
	close(fd);
}

/* ---- reopening a region through /proc/self/fd ------------------------------- */

static int reopen_fd(int fd, int flags)
{
	char path[64];

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	return open(path, flags | O_CLOEXEC);
}

TEST_F(region, reopen_rdwr_shares_region)
{
	struct uffdx_region_info info;
	uint8_t *p;
	int64_t res;
	int fd2;

	fd2 = reopen_fd(self->rfd, O_RDWR);
	ASSERT_LE(0, fd2) TH_LOG("reopen: %s", strerror(errno));
	EXPECT_EQ(O_RDWR, fcntl(fd2, F_GETFL) & O_ACCMODE);
	ASSERT_EQ(0, uffdx_region_info(fd2, &info));
	EXPECT_EQ(self->id, info.region_id);
	EXPECT_EQ(self->len, info.len);

	p = mmap(NULL, self->len, PROT_READ | PROT_WRITE, MAP_SHARED, fd2, 0);
	ASSERT_NE(MAP_FAILED, p) TH_LOG("%s", strerror(errno));
	fill_pattern(self->map + ps, ps, 31);
	EXPECT_EQ(-1, check_pattern(p + ps, ps, 31));
	fill_pattern(p + 2 * ps, ps, 32);
	EXPECT_EQ(-1, check_pattern(self->map + 2 * ps, ps, 32));
	ASSERT_EQ(0, uffdx_region_info(fd2, &info));
	EXPECT_EQ(2 * ps, info.resident);

	/* the reopened fd alone keeps the region */
	munmap(self->map, self->len);
	self->map = MAP_FAILED;
	close(self->rfd);
	self->rfd = -1;
	ASSERT_EQ(0, uffdx_region_info(fd2, &info));
	EXPECT_EQ(self->id, info.region_id);
	EXPECT_EQ(2 * ps, info.resident);
	EXPECT_EQ(-1, check_pattern(p + ps, ps, 31));
	fill_pattern(self->buf, ps, 33);
	ASSERT_EQ(0, uffdx_copy(self->ctx, self->id, 3 * ps, self->buf, ps, 0, &res));
	EXPECT_EQ(0, memcmp(p + 3 * ps, self->buf, ps));
	munmap(p, self->len);
	ASSERT_EQ(0, uffdx_region_info(fd2, &info));
	EXPECT_EQ(3 * ps, info.resident);
	close(fd2);
}

TEST_F(region, reopen_rdonly_maps_read_only)
{
	struct uffdx_region_info info;
	uint8_t *p, *q, v = 0;
	int64_t res;
	int fd2;

	fill_pattern(self->map, 2 * ps, 40);
	fd2 = reopen_fd(self->rfd, O_RDONLY);
	ASSERT_LE(0, fd2) TH_LOG("reopen: %s", strerror(errno));
	EXPECT_EQ(O_RDONLY, fcntl(fd2, F_GETFL) & O_ACCMODE);
	ASSERT_EQ(0, uffdx_region_info(fd2, &info));
	EXPECT_EQ(self->id, info.region_id);
	EXPECT_EQ(self->len, info.len);
	EXPECT_EQ(2 * ps, info.resident);

	/* writable shared mappings of a read-only file: refused */
	q = mmap(NULL, self->len, PROT_READ | PROT_WRITE, MAP_SHARED, fd2, 0);
	EXPECT_EQ(MAP_FAILED, q);
	EXPECT_EQ(EACCES, errno);
	if (q != MAP_FAILED)
		munmap(q, self->len);

	p = mmap(NULL, self->len, PROT_READ, MAP_SHARED, fd2, 0);
	ASSERT_NE(MAP_FAILED, p) TH_LOG("%s", strerror(errno));
	EXPECT_EQ(-1, check_pattern(p, 2 * ps, 40));
	/* nor can it be made writable later */
	EXPECT_EQ(-1, mprotect(p, ps, PROT_READ | PROT_WRITE));
	EXPECT_EQ(EACCES, errno);
	EXPECT_EQ(SIGSEGV, try_write(p, 1));
	EXPECT_EQ(-1, check_pattern(p, 2 * ps, 40));
	/* it sees writes made through the writable mapping */
	fill_pattern(self->map + 5 * ps, ps, 41);
	EXPECT_EQ(-1, check_pattern(p + 5 * ps, ps, 41));

	/* the read-only fd alone keeps the region */
	munmap(self->map, self->len);
	self->map = MAP_FAILED;
	close(self->rfd);
	self->rfd = -1;
	munmap(p, self->len);
	ASSERT_EQ(0, uffdx_region_info(fd2, &info));
	EXPECT_EQ(self->id, info.region_id);
	EXPECT_EQ(3 * ps, info.resident);
	fill_pattern(self->buf, ps, 42);
	ASSERT_EQ(0, uffdx_copy(self->ctx, self->id, 7 * ps, self->buf, ps, 0, &res));
	p = mmap(NULL, self->len, PROT_READ, MAP_SHARED, fd2, 0);
	ASSERT_NE(MAP_FAILED, p);
	EXPECT_EQ(-1, check_pattern(p, 2 * ps, 40));
	EXPECT_EQ(-1, check_pattern(p + 5 * ps, ps, 41));
	EXPECT_EQ(-1, check_pattern(p + 7 * ps, ps, 42));
	EXPECT_EQ(0, try_read(p + 9 * ps, &v));
	EXPECT_EQ(0, v);
	munmap(p, self->len);
	close(fd2);
}

/* ---- REGION_INFO's ioctl number ---------------------------------------------- */

/* As on the context: type, number and direction count; the size does not. */
TEST_F(region, region_info_ioctl_number_ignores_size)
{
	struct uffdx_region_info info;
	unsigned long good[] = {
		_IOWR(UFFDX_IOC_MAGIC, _UFFDX_REGION_INFO, char[8]),
		_IOWR(UFFDX_IOC_MAGIC, _UFFDX_REGION_INFO, char[1]),
		_IOWR(UFFDX_IOC_MAGIC, _UFFDX_REGION_INFO, struct uffdx_range),
		_IOC(_IOC_READ | _IOC_WRITE, UFFDX_IOC_MAGIC, _UFFDX_REGION_INFO, 0),
		UFFDX_IOC_REGION_INFO,
	};
	unsigned long bad[] = {
		_IOR(UFFDX_IOC_MAGIC, _UFFDX_REGION_INFO, struct uffdx_region_info),
		_IOW(UFFDX_IOC_MAGIC, _UFFDX_REGION_INFO, struct uffdx_region_info),
		_IO(UFFDX_IOC_MAGIC, _UFFDX_REGION_INFO),
		_IOR(UFFDX_IOC_MAGIC, _UFFDX_REGION_INFO, char[8]),
		_IOWR(UFFDX_IOC_MAGIC, _UFFDX_REGION_INFO + 1, struct uffdx_region_info),
		_IOWR(UFFDX_IOC_MAGIC, _UFFDX_REGION_INFO - 1, struct uffdx_region_info),
		_IOWR(UFFDX_IOC_MAGIC + 1, _UFFDX_REGION_INFO, struct uffdx_region_info),
		_IOWR(UFFDX_IOC_MAGIC, 0xff, struct uffdx_region_info),
	};
	unsigned int i;

	self->map[0] = 1;
	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		memset(&info, 0xcc, sizeof(info));
		info.size = sizeof(info);
		info.flags = 0;
		memset(info.reserved, 0, sizeof(info.reserved));
		EXPECT_EQ(0, ioctl(self->rfd, good[i], &info))
			TH_LOG("ioctl 0x%lx: %s", good[i], strerror(errno));
		EXPECT_EQ(self->id, info.region_id) TH_LOG("ioctl 0x%lx", good[i]);
		EXPECT_EQ(self->len, info.len);
		EXPECT_EQ(ps, info.resident);
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(&info, 0, sizeof(info));
		info.size = sizeof(info);
		EXPECT_EQ(-1, ioctl(self->rfd, bad[i], &info)) TH_LOG("ioctl 0x%lx", bad[i]);
		EXPECT_EQ(ENOTTY, errno) TH_LOG("ioctl 0x%lx: %s", bad[i], strerror(errno));
	}
}

/* ---- MADV_DONTNEED and fork ---------------------------------------------------- */

TEST_F(region, dontneed_refault_and_fork)
{
	struct uffdx_region_info info;
	unsigned char vec[32];
	uint8_t *src, *p;
	int64_t res = 0;
	uint64_t id = 0;
	int k, rfd, status = -1;
	pid_t pid;

	rfd = uffdx_region_create(self->ctx, 32 * ps, 0, &id);
	ASSERT_LE(0, rfd);
	p = mmap(NULL, 32 * ps, PROT_READ | PROT_WRITE, MAP_SHARED, rfd, 0);
	ASSERT_NE(MAP_FAILED, p);
	src = malloc(32 * ps);
	ASSERT_NE(NULL, src);
	for (k = 0; k < 32; k++)
		fill_pattern(src + k * ps, ps, 300 + k);
	ASSERT_EQ(0, uffdx_copy(self->ctx, id, 0, src, 16 * ps, 0, &res));
	memcpy(p + 16 * ps, src + 16 * ps, 16 * ps);	/* half by writes */
	EXPECT_EQ(0, memcmp(p, src, 32 * ps));

	/* DONTNEED drops the PTEs, not the data */
	ASSERT_EQ(0, madvise(p, 32 * ps, MADV_DONTNEED)) TH_LOG("%s", strerror(errno));
	ASSERT_EQ(0, mincore(p, 32 * ps, vec));
	for (k = 0; k < 32; k++)
		EXPECT_EQ(0, vec[k] & 1) TH_LOG("page %d still mapped", k);
	ASSERT_EQ(0, uffdx_region_info(rfd, &info));
	EXPECT_EQ(32 * ps, info.resident);

	/* one access refaults its aligned 16-page window */
	EXPECT_EQ(src[21 * ps + 77], p[21 * ps + 77]);
	ASSERT_EQ(0, mincore(p, 32 * ps, vec));
	for (k = 0; k < 32; k++)
		EXPECT_EQ(k >= 16, vec[k] & 1) TH_LOG("page %d", k);
	EXPECT_EQ(0, memcmp(p, src, 32 * ps));
	ASSERT_EQ(0, uffdx_region_info(rfd, &info));
	EXPECT_EQ(32 * ps, info.resident);

	/* and a fork (after another DONTNEED) sees it all, shared */
	ASSERT_EQ(0, madvise(p, 32 * ps, MADV_DONTNEED));
	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0) {
		for (k = 0; k < 32; k++)
			if (check_pattern(p + k * ps, ps, 300 + k) != -1)
				_exit(10 + k);
		fill_pattern(p + 9 * ps, ps, 399);
		_exit(0);
	}
	ASSERT_EQ(0, wait_child(pid, &status, WAIT_MS));
	ASSERT_TRUE(WIFEXITED(status));
	EXPECT_EQ(0, WEXITSTATUS(status)) TH_LOG("child saw page %d damaged",
						 WEXITSTATUS(status) - 10);
	EXPECT_EQ(-1, check_pattern(p + 9 * ps, ps, 399)) TH_LOG("child's write not seen");
	for (k = 0; k < 32; k++)
		if (k != 9)
			EXPECT_EQ(-1, check_pattern(p + k * ps, ps, 300 + k)) TH_LOG("page %d", k);
	ASSERT_EQ(0, uffdx_region_info(rfd, &info));
	EXPECT_EQ(32 * ps, info.resident);
	free(src);
	munmap(p, 32 * ps);
	close(rfd);
}

/* ---- core dumps ----------------------------------------------------------------- */

#define CORE_PATTERN "/proc/sys/kernel/core_pattern"
#define CORE_PREFIX "uffdx-core."
#define CORE_NPAGES 256

FIXTURE(coredump) {
	char old_pattern[512];
	int saved;
};

FIXTURE_SETUP(coredump)
{
	ssize_t n;

	self->saved = 0;
	SKIP_IF_NO_UFFDX();
	if (getuid() != 0)
		SKIP(return, "needs root (core_pattern)");
	n = read_str_file(CORE_PATTERN, self->old_pattern, sizeof(self->old_pattern));
	if (n < 0)
		SKIP(return, "cannot read " CORE_PATTERN ": %s", strerror((int)-n));
	/* strip the newline; write it back as it was */
	while (n > 0 && self->old_pattern[n - 1] == '\n')
		self->old_pattern[--n] = 0;
	self->saved = 1;
	n = write_str_file(CORE_PATTERN, "/tmp/" CORE_PREFIX "%p");
	if (n)
		SKIP(return, "cannot set " CORE_PATTERN ": %s", strerror((int)-n));
}

static void remove_cores(void)
{
	DIR *d = opendir("/tmp");
	struct dirent *de;
	char path[300];

	if (!d)
		return;
	while ((de = readdir(d))) {
		if (strncmp(de->d_name, CORE_PREFIX, strlen(CORE_PREFIX)))
			continue;
		snprintf(path, sizeof(path), "/tmp/%s", de->d_name);
		unlink(path);
	}
	closedir(d);
}

FIXTURE_TEARDOWN_PARENT(coredump)
{
	if (self->saved)
		write_str_file(CORE_PATTERN, self->old_pattern);
	remove_cores();
}

/* Fork a child that dumps core with the region @map mapped; its wait status. */
static int dump_core(struct __test_metadata *_metadata, int *status)
{
	pid_t pid;
	int ret;

	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		struct rlimit rl = { RLIM_INFINITY, RLIM_INFINITY };

		setrlimit(RLIMIT_CORE, &rl);
		write_str_file("/proc/self/coredump_filter", "0x3f");
		prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
		signal(SIGABRT, SIG_DFL);
		abort();
	}
	ret = wait_child(pid, status, 4 * WAIT_MS);
	if (ret) {
		TH_LOG("the dumping child hangs");
		kill_child(pid, status);
	}
	return ret;
}

TEST_F(coredump, dump_does_not_populate_holes)
{
	struct uffdx_region_info info;
	size_t len = CORE_NPAGES * ps;
	struct uffdx_region_map m;
	int ctx, ret, status = 0, k;

	ctx = ctx_open(DEFAULT_FEATURES, 0);
	ASSERT_LE(0, ctx);
	ret = uffdx_region_map(ctx, len, 0, &m);
	ASSERT_EQ(0, ret) TH_LOG("%s", strerror(-ret));
	fill_pattern(m.addr, ps, 1);
	fill_pattern((uint8_t *)m.addr + 200 * ps, ps, 2);
	ASSERT_EQ(0, uffdx_region_info(m.fd, &info));
	ASSERT_EQ(2 * ps, info.resident);

	ASSERT_EQ(0, dump_core(_metadata, &status));
	ASSERT_TRUE(WIFSIGNALED(status)) TH_LOG("status 0x%x", status);
	EXPECT_EQ(SIGABRT, WTERMSIG(status));
	if (!WCOREDUMP(status))
		SKIP(goto out, "no core was written");
	ASSERT_EQ(0, uffdx_region_info(m.fd, &info));
	EXPECT_EQ(2 * ps, info.resident) TH_LOG("the core dump populated %llu holes",
						(unsigned long long)(info.resident / ps - 2));
	EXPECT_EQ(-1, check_pattern(m.addr, ps, 1));
	EXPECT_EQ(-1, check_pattern((uint8_t *)m.addr + 200 * ps, ps, 2));
	for (k = 1; k < CORE_NPAGES; k++)
		if (k != 200)
			EXPECT_TRUE(is_zero((uint8_t *)m.addr + k * ps, ps)) TH_LOG("page %d", k);
out:
	uffdx_region_unmap(&m);
	close(ctx);
}

TEST_F(coredump, dump_with_armed_holes_does_not_hang)
{
	struct uffdx_region_info info;
	size_t len = CORE_NPAGES * ps;
	struct uffdx_region_map m;
	int ctx, ret, status = 0;
	uint8_t *buf;
	int64_t res;

	/* kernel-mode faults would wait for us: a dump must not */
	ctx = ctx_open(DEFAULT_FEATURES | UFFDX_FEATURE_KERNEL_FAULTS, 0);
	ASSERT_LE(0, ctx) TH_LOG("%s", strerror(-ctx));
	ret = uffdx_region_map(ctx, len, 0, &m);
	ASSERT_EQ(0, ret) TH_LOG("%s", strerror(-ret));
	ASSERT_EQ(0, uffdx_arm(ctx, m.id, 0, len, UFFDX_ARM_MISSING));
	buf = malloc(ps);
	ASSERT_NE(NULL, buf);
	fill_pattern(buf, ps, 3);
	ASSERT_EQ(0, uffdx_copy(ctx, m.id, 0, buf, ps, 0, &res));
	ASSERT_EQ(0, uffdx_copy(ctx, m.id, 100 * ps, buf, ps, 0, &res));

	/* we hold the context open and never resolve anything */
	ASSERT_EQ(0, dump_core(_metadata, &status)) TH_LOG("core dump hangs on armed holes");
	ASSERT_TRUE(WIFSIGNALED(status)) TH_LOG("status 0x%x", status);
	EXPECT_EQ(SIGABRT, WTERMSIG(status));
	if (!WCOREDUMP(status))
		SKIP(goto out, "no core was written");
	ASSERT_EQ(0, uffdx_region_info(m.fd, &info));
	EXPECT_EQ(2 * ps, info.resident);
out:
	free(buf);
	uffdx_region_unmap(&m);
	close(ctx);
}

TEST_HARNESS_MAIN
