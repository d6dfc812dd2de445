// SPDX-License-Identifier: GPL-2.0
/*
 * Fault round-trip benchmark: uffdx against the kernel's own userfaultfd.
 *
 *   bench_fault [-n ITERATIONS] [-k]    (default 2000; -k: kernel-uffd only)
 *
 * One round trip: a thread touches an armed, unpopulated page; the fault
 * becomes an event; a handler thread blocked in read() gets it and COPYs a
 * page in; the faulting thread resumes.  The faulting thread times each
 * access.  The same is done with userfaultfd(UFFD_USER_MODE_ONLY) on
 * anonymous memory (UFFDIO_REGISTER_MODE_MISSING, UFFDIO_COPY), in the same
 * run, and the medians are compared:
 *
 *   median fault-copy-roundtrip uffdx <ns> ns (N=<n>)
 *   median fault-copy-roundtrip kernel-uffd <ns> ns (N=<n>)
 *   ratio fault-copy-roundtrip uffdx/kernel-uffd <ratio> (<uname -r>)
 *
 * Not pass/fail: exit 0 unless something errors (1), 4 if either side is
 * unavailable.
 */
#include "helpers.h"

#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

#define WARMUP 100
#define HANDLER_TIMEOUT_MS 10000

static int iters = 2000;

struct bench {
	int fd;			/* uffdx context or userfaultfd */
	int kernel;		/* 1: userfaultfd */
	uint64_t region_id;	/* uffdx */
	uint8_t *area;
	int npages;
	uint8_t *src;
	int err;
};

static void *uffdx_handler(void *arg)
{
	struct bench *b = arg;
	struct uffdx_event ev;
	int i, ret;

	for (i = 0; i < b->npages; i++) {
		int64_t res;

		if (wait_fd(b->fd, POLLIN, HANDLER_TIMEOUT_MS) != 1) {
			b->err = ETIMEDOUT;
			break;
		}
		ret = uffdx_read_events(b->fd, &ev, 1);
		if (ret != 1) {
			b->err = ret < 0 ? -ret : EIO;
			break;
		}
		ret = uffdx_copy(b->fd, ev.region_id, ev.offset, b->src, ps, 0, &res);
		if (ret) {
			b->err = -ret;
			break;
		}
	}
	return NULL;
}

static void *kernel_handler(void *arg)
{
	struct bench *b = arg;
	struct uffd_msg msg;
	int i;

	for (i = 0; i < b->npages; i++) {
		struct uffdio_copy c;

		if (wait_fd(b->fd, POLLIN, HANDLER_TIMEOUT_MS) != 1) {
			b->err = ETIMEDOUT;
			break;
		}
		if (read(b->fd, &msg, sizeof(msg)) != sizeof(msg)) {
			b->err = errno ? errno : EIO;
			break;
		}
		if (msg.event != UFFD_EVENT_PAGEFAULT) {
			b->err = EPROTO;
			break;
		}
		memset(&c, 0, sizeof(c));
		c.dst = msg.arg.pagefault.address & ~((uint64_t)ps - 1);
		c.src = (uintptr_t)b->src;
		c.len = ps;
		if (ioctl(b->fd, UFFDIO_COPY, &c)) {
			b->err = errno;
			break;
		}
	}
	return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Time every fault; returns the median in ns, or 0 on error. */
static uint64_t run(struct bench *b, const char *name)
{
	uint64_t *lat = calloc(b->npages, sizeof(*lat));
	uint64_t med;
	pthread_t th;
	int i, n = 0;

	if (!lat)
		return 0;
	if (pthread_create(&th, NULL, b->kernel ? kernel_handler : uffdx_handler, b)) {
		free(lat);
		return 0;
	}
	for (i = 0; i < b->npages && !b->err; i++) {
		volatile uint8_t *p = b->area + (size_t)i * ps;
		uint64_t t0 = now_ns();

		(void)*p;
		lat[i] = now_ns() - t0;
		if (*p != b->src[0]) {
			fprintf(stderr, "%s: page %d has wrong contents\n", name, i);
			b->err = EIO;
		}
	}
	pthread_join(th, NULL);
	if (b->err) {
		fprintf(stderr, "%s: %s\n", name, strerror(b->err));
		free(lat);
		return 0;
	}
	for (i = WARMUP; i < b->npages; i++)
		lat[n++] = lat[i];
	qsort(lat, n, sizeof(*lat), cmp_u64);
	med = n % 2 ? lat[n / 2] : (lat[n / 2 - 1] + lat[n / 2]) / 2;
	printf("median fault-copy-roundtrip %s %llu ns (N=%d, p10 %llu, p90 %llu)\n", name,
	       (unsigned long long)med, n, (unsigned long long)lat[n / 10],
	       (unsigned long long)lat[n * 9 / 10]);
	fflush(stdout);
	free(lat);
	return med ? med : 1;
}

static uint64_t bench_uffdx(uint8_t *src, int npages)
{
	struct uffdx_region_map m;
	struct bench b = { 0 };
	uint64_t med;
	int ret;

	b.fd = ctx_open(DEFAULT_FEATURES, 0);
	if (b.fd < 0) {
		fprintf(stderr, "uffdx context: %s\n", strerror(-b.fd));
		return 0;
	}
	ret = uffdx_region_map(b.fd, (uint64_t)npages * ps, 0, &m);
	if (ret) {
		fprintf(stderr, "uffdx region: %s\n", strerror(-ret));
		close(b.fd);
		return 0;
	}
	ret = uffdx_arm(b.fd, m.id, 0, m.len, UFFDX_ARM_MISSING);
	if (ret) {
		fprintf(stderr, "uffdx arm: %s\n", strerror(-ret));
		return 0;
	}
	b.area = m.addr;
	b.region_id = m.id;
	b.npages = npages;
	b.src = src;
	med = run(&b, "uffdx");
	uffdx_region_unmap(&m);
	close(b.fd);
	return med;
}

/* 0 with *skip set if userfaultfd is not available here. */
static uint64_t bench_kernel(uint8_t *src, int npages, int *skip)
{
	struct uffdio_register reg;
	struct uffdio_api api;
	struct bench b = { 0 };
	size_t len = (size_t)npages * ps;
	uint64_t med;
	int fd;

	fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | UFFD_USER_MODE_ONLY);
	if (fd < 0 && errno == EINVAL)	/* before 5.11 */
		fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "userfaultfd: %s\n", strerror(errno));
		*skip = 1;
		return 0;
	}
	memset(&api, 0, sizeof(api));
	api.api = UFFD_API;
	if (ioctl(fd, UFFDIO_API, &api)) {
		fprintf(stderr, "UFFDIO_API: %s\n", strerror(errno));
		close(fd);
		return 0;
	}
	b.area = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (b.area == MAP_FAILED) {
		close(fd);
		return 0;
	}
	memset(&reg, 0, sizeof(reg));
	reg.range.start = (uintptr_t)b.area;
	reg.range.len = len;
	reg.mode = UFFDIO_REGISTER_MODE_MISSING;
	if (ioctl(fd, UFFDIO_REGISTER, &reg)) {
		fprintf(stderr, "UFFDIO_REGISTER: %s\n", strerror(errno));
		munmap(b.area, len);
		close(fd);
		return 0;
	}
	b.fd = fd;
	b.kernel = 1;
	b.npages = npages;
	b.src = src;
	med = run(&b, "kernel-uffd");
	munmap(b.area, len);
	close(fd);
	return med;
}

int main(int argc, char **argv)
{
	uint64_t mu, mk;
	struct utsname u;
	int opt, skip = 0, npages, kernel_only = 0;
	uint8_t *src;

	while ((opt = getopt(argc, argv, "n:k")) != -1) {
		if (opt == 'n')
			iters = atoi(optarg);
		else if (opt == 'k')
			kernel_only = 1;
		else {
			fprintf(stderr, "usage: %s [-n ITERATIONS] [-k]\n", argv[0]);
			return 1;
		}
	}
	if (iters < 10) {
		fprintf(stderr, "need at least 10 iterations\n");
		return 1;
	}
	npages = iters + WARMUP;
	src = aligned_alloc(ps, ps);
	if (!src)
		return 1;
	memset(src, 0x5a, ps);
	uname(&u);
	if (kernel_only)
		return bench_kernel(src, npages, &skip) ? 0 : skip ? 4 : 1;
	if (!uffdx_present()) {
		printf("# SKIP " UFFDX_DEV " not present (uffdx module not loaded)\n");
		return 4;
	}

	mu = bench_uffdx(src, npages);
	if (!mu)
		return 1;
	mk = bench_kernel(src, npages, &skip);
	if (!mk) {
		if (skip) {
			printf("# SKIP kernel userfaultfd not available: no ratio\n");
			return 4;
		}
		return 1;
	}
	printf("ratio fault-copy-roundtrip uffdx/kernel-uffd %.3f (%s)\n",
	       (double)mu / (double)mk, u.release);
	return 0;
}
