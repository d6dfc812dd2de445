// SPDX-License-Identifier: GPL-2.0
/*
 * Fault round-trip benchmark: uffdx against the kernel's own userfaultfd.
 *
 *   bench_fault [-n ITERATIONS] [-r ROUNDS] [-s] [-k]
 *
 *   -n  faults per round and mechanism (default 2000)
 *   -r  rounds (default 5): the two mechanisms alternate, round by round,
 *       so that drift in the guest (TCG) hits both alike; the medians are
 *       over all rounds' samples
 *   -s  spread: let the scheduler place the threads (default: faulter and
 *       handler share one CPU, so a round trip is two context switches and
 *       no cross-CPU wakeup, whose cost under TCG is mostly emulation noise)
 *   -k  kernel userfaultfd only
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
#include <sched.h>
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
static int rounds = 5;

/* All samples of one mechanism, over every round. */
struct samples {
	uint64_t *ns;
	int n;
};

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

/* Time every fault of one round into @out; returns 0 or an errno. */
static int run(struct bench *b, const char *name, struct samples *out)
{
	uint64_t *lat = calloc(b->npages, sizeof(*lat));
	pthread_t th;
	int i;

	if (!lat)
		return ENOMEM;
	if (pthread_create(&th, NULL, b->kernel ? kernel_handler : uffdx_handler, b)) {
		free(lat);
		return EAGAIN;
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
		return b->err;
	}
	for (i = WARMUP; i < b->npages; i++)
		out->ns[out->n++] = lat[i];
	free(lat);
	return 0;
}

/* Print the median (and p10/p90) of @s; returns the median, at least 1. */
static uint64_t report(const char *name, struct samples *s)
{
	uint64_t med;
	int n = s->n;

	qsort(s->ns, n, sizeof(*s->ns), cmp_u64);
	med = n % 2 ? s->ns[n / 2] : (s->ns[n / 2 - 1] + s->ns[n / 2]) / 2;
	printf("median fault-copy-roundtrip %s %llu ns (N=%d over %d rounds, p10 %llu, p90 %llu)\n",
	       name, (unsigned long long)med, n, rounds,
	       (unsigned long long)s->ns[n / 10], (unsigned long long)s->ns[n * 9 / 10]);
	fflush(stdout);
	return med ? med : 1;
}

static int bench_uffdx(uint8_t *src, int npages, struct samples *out)
{
	struct uffdx_region_map m;
	struct bench b = { 0 };
	int ret;

	b.fd = ctx_open(DEFAULT_FEATURES, 0);
	if (b.fd < 0) {
		fprintf(stderr, "uffdx context: %s\n", strerror(-b.fd));
		return -b.fd;
	}
	ret = uffdx_region_map(b.fd, (uint64_t)npages * ps, 0, &m);
	if (ret) {
		fprintf(stderr, "uffdx region: %s\n", strerror(-ret));
		close(b.fd);
		return -ret;
	}
	ret = uffdx_arm(b.fd, m.id, 0, m.len, UFFDX_ARM_MISSING);
	if (ret) {
		fprintf(stderr, "uffdx arm: %s\n", strerror(-ret));
		uffdx_region_unmap(&m);
		close(b.fd);
		return -ret;
	}
	b.area = m.addr;
	b.region_id = m.id;
	b.npages = npages;
	b.src = src;
	ret = run(&b, "uffdx", out);
	uffdx_region_unmap(&m);
	close(b.fd);
	return ret;
}

/* 0, or an errno with *skip set if userfaultfd is not available here. */
static int bench_kernel(uint8_t *src, int npages, struct samples *out, int *skip)
{
	struct uffdio_register reg;
	struct uffdio_api api;
	struct bench b = { 0 };
	size_t len = (size_t)npages * ps;
	int fd, ret;

	fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | UFFD_USER_MODE_ONLY);
	if (fd < 0 && errno == EINVAL)	/* before 5.11 */
		fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "userfaultfd: %s\n", strerror(errno));
		*skip = 1;
		return errno;
	}
	memset(&api, 0, sizeof(api));
	api.api = UFFD_API;
	if (ioctl(fd, UFFDIO_API, &api)) {
		fprintf(stderr, "UFFDIO_API: %s\n", strerror(errno));
		close(fd);
		return EIO;
	}
	b.area = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (b.area == MAP_FAILED) {
		close(fd);
		return ENOMEM;
	}
	memset(&reg, 0, sizeof(reg));
	reg.range.start = (uintptr_t)b.area;
	reg.range.len = len;
	reg.mode = UFFDIO_REGISTER_MODE_MISSING;
	if (ioctl(fd, UFFDIO_REGISTER, &reg)) {
		fprintf(stderr, "UFFDIO_REGISTER: %s\n", strerror(errno));
		munmap(b.area, len);
		close(fd);
		return EIO;
	}
	b.fd = fd;
	b.kernel = 1;
	b.npages = npages;
	b.src = src;
	ret = run(&b, "kernel-uffd", out);
	munmap(b.area, len);
	close(fd);
	return ret;
}

int main(int argc, char **argv)
{
	struct samples su = { 0 }, sk = { 0 };
	int opt, skip = 0, npages, kernel_only = 0, spread = 0, r;
	struct utsname u;
	uint64_t mu, mk;
	uint8_t *src;

	while ((opt = getopt(argc, argv, "n:r:sk")) != -1) {
		if (opt == 'n')
			iters = atoi(optarg);
		else if (opt == 'r')
			rounds = atoi(optarg);
		else if (opt == 's')
			spread = 1;
		else if (opt == 'k')
			kernel_only = 1;
		else {
			fprintf(stderr, "usage: %s [-n ITERATIONS] [-r ROUNDS] [-s] [-k]\n", argv[0]);
			return 1;
		}
	}
	if (iters < 10 || rounds < 1) {
		fprintf(stderr, "need at least 10 iterations and 1 round\n");
		return 1;
	}
	npages = iters + WARMUP;
	src = aligned_alloc(ps, ps);
	su.ns = calloc((size_t)iters * rounds, sizeof(*su.ns));
	sk.ns = calloc((size_t)iters * rounds, sizeof(*sk.ns));
	if (!src || !su.ns || !sk.ns)
		return 1;
	memset(src, 0x5a, ps);
	uname(&u);
	if (!spread) {
		cpu_set_t cpus;

		/* The handler thread inherits this. */
		CPU_ZERO(&cpus);
		CPU_SET(0, &cpus);
		if (sched_setaffinity(0, sizeof(cpus), &cpus))
			fprintf(stderr, "sched_setaffinity: %s (threads spread)\n",
				strerror(errno));
	}
	printf("# %d rounds of %d faults per mechanism, alternating; threads %s\n",
	       rounds, iters, spread ? "spread" : "on CPU 0");
	if (kernel_only) {
		for (r = 0; r < rounds; r++)
			if (bench_kernel(src, npages, &sk, &skip))
				return skip ? 4 : 1;
		report("kernel-uffd", &sk);
		return 0;
	}
	if (!uffdx_present()) {
		printf("# SKIP " UFFDX_DEV " not present (uffdx module not loaded)\n");
		return 4;
	}

	for (r = 0; r < rounds; r++) {
		if (bench_uffdx(src, npages, &su))
			return 1;
		if (bench_kernel(src, npages, &sk, &skip)) {
			if (skip) {
				printf("# SKIP kernel userfaultfd not available: no ratio\n");
				return 4;
			}
			return 1;
		}
	}
	mu = report("uffdx", &su);
	mk = report("kernel-uffd", &sk);
	printf("ratio fault-copy-roundtrip uffdx/kernel-uffd %.3f (%s)\n",
	       (double)mu / (double)mk, u.release);
	return 0;
}
