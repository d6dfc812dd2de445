// SPDX-License-Identifier: GPL-2.0
/*
 * MOVE benchmark: uffdx_move_addr() against the kernel's UFFDIO_MOVE and
 * UFFDIO_COPY.
 *
 *   bench_move [-n ITERATIONS] [-t SECONDS] [-k] [-v]
 *
 *   -n  measured iterations per size (default: 101 for 1 and 64 pages,
 *       51 for 512 pages and the 2 MiB chunk)
 *   -t  time budget per size (default 4 s): a size stops early once it has
 *       21 iterations and has used its budget, so that a slow guest (TCG)
 *       stays within about 20 s
 *   -k  the kernel's side only (no uffdx, no ratios)
 *   -v  also print every sample, in iteration order
 *
 * Sizes: 1, 64 and 512 pages at a page offset that is not 2 MiB aligned,
 * and "2M": 512 pages at 2 MiB aligned addresses and region offsets.  The
 * figure is "move, then read one word of every destination page", so that
 * a destination that is mapped lazily pays for its faults; the move alone
 * is timed too.  Each iteration times, in an order that alternates:
 *
 *  uffdx        uffdx_move_addr() between two MAP_SHARED region mappings
 *               (the pages go back by the next iteration's move);
 *  kernel-move  UFFDIO_MOVE between two private anonymous areas registered
 *               (MISSING) with a userfaultfd, likewise back and forth; from
 *               6.8 (UFFD_FEATURE_MOVE), else reported as not available;
 *  kernel-copy  UFFDIO_COPY from a buffer into a registered hole range,
 *               reset with MADV_DONTNEED outside the timing;
 *  memcpy       of the same bytes between populated buffers, for scale
 *               (under TCG, the sizes for which glibc uses rep movsb, 64
 *               pages here, copy far slower than the others).
 *
 * Kernel areas are MADV_NOHUGEPAGE, so that both sides move order-0 pages
 * (uffdx has no PMD moves yet).  "2M-thp" is the kernel's UFFDIO_MOVE of a
 * 2 MiB THP (one PMD) against the same uffdx move, when THP is available.
 * The process is pinned to one CPU; in the "-mt" cases (64-mt, 512-mt) a
 * second thread of the process spins on the other CPU meanwhile, as a
 * collector's mutators would, so that every TLB flush of the mm costs an
 * IPI on both sides.  Output, medians over the iterations:
 *
 *   bench move-<N>: uffdx move+touch <ns> ns, move alone <ns> ns (...)
 *   bench move-<N>: kernel-move move+touch <ns> ns, move alone <ns> ns (...)
 *   bench move-<N>: kernel-copy copy+touch <ns> ns (...)
 *   bench move-<N>: memcpy <ns> ns (...)
 *   ratio move-<N> uffdx/kernel-move <ratio> (<uname -r>)
 *   ratio move-<N> uffdx/kernel-copy <ratio> (<uname -r>)
 *   ratio move-alone-<N> uffdx/kernel-move <ratio> (<uname -r>)
 *
 * Not pass/fail: exit 0 unless something errors (1), 4 if uffdx or its MOVE
 * feature is unavailable.
 */
#include "helpers.h"

#include <fcntl.h>
#include <sched.h>
#include <linux/userfaultfd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

/* UFFDIO_MOVE (6.8), which the 6.1 headers the tests build against lack. */
#ifndef UFFD_FEATURE_MOVE
#define UFFD_FEATURE_MOVE	(1 << 16)
#endif
struct bench_uffdio_move {
	uint64_t dst;
	uint64_t src;
	uint64_t len;
	uint64_t mode;
	int64_t move;
};
_Static_assert(sizeof(struct bench_uffdio_move) == 40, "struct uffdio_move");
#define BENCH_UFFDIO_MOVE	_IOWR(UFFDIO, 0x05, struct bench_uffdio_move)

#define HUGE_SZ		(2ul << 20)
#define MIN_ITERS	21
#define WARMUP		3
#define TAG_MAGIC	0x6d6f76652d746167ull

struct size_case {
	const char *name;
	int pages;
	int aligned;		/* 2 MiB aligned addresses and offsets */
	int thp;		/* kernel side on a THP: kernel-move only */
	int iters;
	int mt;			/* a mutator thread runs on CPU 1 meanwhile */
};

static struct size_case cases[] = {
	{ "1", 1, 0, 0, 101, 0 },
	{ "64", 64, 0, 0, 101, 0 },
	{ "512", 512, 0, 0, 51, 0 },
	{ "2M", 512, 1, 0, 51, 0 },
	{ "2M-thp", 512, 1, 1, 51, 0 },
	{ "64-mt", 64, 0, 0, 101, 1 },
	{ "512-mt", 512, 0, 0, 51, 1 },
};

/*
 * The "-mt" cases: a second thread of this process spins on CPU 1, as a
 * collector's mutators do, so that a TLB flush of this mm must reach CPU 1
 * (an IPI) on both sides: per page for UFFDIO_MOVE, per group for uffdx.
 */
static volatile int mutator_stop;
static volatile uint64_t mutator_spins;

static void *mutator(void *arg)
{
	cpu_set_t cpus;

	(void)arg;
	CPU_ZERO(&cpus);
	CPU_SET(1, &cpus);
	sched_setaffinity(0, sizeof(cpus), &cpus);
	while (!mutator_stop)
		mutator_spins++;
	return NULL;
}

static int ctx = -1;		/* uffdx */
static int kmove_ok;		/* UFFD_FEATURE_MOVE */
static int kernel_only;		/* -k */
static int verbose;		/* -v */
static size_t span;		/* bytes of every area: 2 MiB + 2 pages */
static struct utsname uts;

struct series {
	uint64_t *ns;
	int n;
};

/* One mechanism's state for one size. */
struct side {
	const char *name;
	uint8_t *src, *dst;	/* at the case's offset; swapped after a move */
	uint8_t *buf;		/* kernel-copy and memcpy: the source */
	struct series total, alone;
	int uffd;
};

struct area {
	void *base;		/* the reservation, 2 MiB larger than span */
	uint8_t *addr;		/* 2 MiB aligned, span bytes */
	struct uffdx_region_map map;	/* uffdx areas */
};

static uint64_t tag(long page)
{
	return TAG_MAGIC ^ (uint64_t)page;
}

/* An aligned, still PROT_NONE, reservation of span bytes. */
static int area_reserve(struct area *a)
{
	memset(a, 0, sizeof(*a));
	a->map.fd = -1;
	a->base = mmap(NULL, span + HUGE_SZ, PROT_NONE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (a->base == MAP_FAILED) {
		a->base = NULL;
		return -errno;
	}
	a->addr = (uint8_t *)(((uintptr_t)a->base + HUGE_SZ - 1) & ~(HUGE_SZ - 1));
	return 0;
}

static int area_anon(struct area *a, int thp)
{
	int ret = area_reserve(a);

	if (ret)
		return ret;
	if (mmap(a->addr, span, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == MAP_FAILED)
		return -errno;
	if (madvise(a->addr, span, thp ? MADV_HUGEPAGE : MADV_NOHUGEPAGE))
		return -errno;
	return 0;
}

static int area_region(struct area *a)
{
	uint64_t id;
	int fd, ret = area_reserve(a);

	if (ret)
		return ret;
	fd = uffdx_region_create(ctx, span, 0, &id);
	if (fd < 0)
		return fd;
	a->map.fd = fd;
	a->map.id = id;
	if (mmap(a->addr, span, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED,
		 fd, 0) == MAP_FAILED)
		return -errno;
	return 0;
}

static void area_free(struct area *a)
{
	if (a->base)
		munmap(a->base, span + HUGE_SZ);
	if (a->map.fd >= 0)
		close(a->map.fd);
	memset(a, 0, sizeof(*a));
	a->map.fd = -1;
}

/* Write every page's tag (which populates it). */
static void populate(uint8_t *p, int n)
{
	int i;

	for (i = 0; i < n; i++)
		*(volatile uint64_t *)(p + (size_t)i * ps) = tag(i);
}

/* Read one word of every page; the index of the first wrong one, or -1. */
static long touch(const uint8_t *p, int n)
{
	long bad = -1;
	int i;

	for (i = 0; i < n; i++)
		if (*(const volatile uint64_t *)(p + (size_t)i * ps) != tag(i) && bad < 0)
			bad = i;
	return bad;
}

/* AnonHugePages of the mapping that contains addr, in kB (-1: unknown). */
static long anon_huge_kb(const void *addr)
{
	uintptr_t a = (uintptr_t)addr, lo, hi;
	char line[256];
	long kb = -1;
	int in = 0;
	FILE *f = fopen("/proc/self/smaps", "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		/* a mapping's first line; "Name: value" lines never parse so */
		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2) {
			in = lo <= a && a < hi;
			continue;
		}
		if (in && sscanf(line, "AnonHugePages: %ld kB", &kb) == 1)
			break;
	}
	fclose(f);
	return kb;
}

static int uffd_open(uint64_t features)
{
	struct uffdio_api api;
	int fd;

	fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | UFFD_USER_MODE_ONLY);
	if (fd < 0 && errno == EINVAL)	/* before 5.11 */
		fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC);
	if (fd < 0)
		return -errno;
	memset(&api, 0, sizeof(api));
	api.api = UFFD_API;
	api.features = features;
	if (ioctl(fd, UFFDIO_API, &api)) {
		int err = errno;

		close(fd);
		return -err;
	}
	return fd;
}

static int uffd_register(int uffd, void *addr, size_t len, uint64_t *ioctls)
{
	struct uffdio_register reg;

	memset(&reg, 0, sizeof(reg));
	reg.range.start = (uintptr_t)addr;
	reg.range.len = len;
	reg.mode = UFFDIO_REGISTER_MODE_MISSING;
	if (ioctl(uffd, UFFDIO_REGISTER, &reg))
		return -errno;
	if (ioctls)
		*ioctls = reg.ioctls;
	return 0;
}

static void swap_dirs(struct side *s)
{
	uint8_t *t = s->src;

	s->src = s->dst;
	s->dst = t;
}

static int record(struct side *s, int measured, uint64_t t0, uint64_t t1, uint64_t t2)
{
	if (!measured)
		return 0;
	s->alone.ns[s->alone.n++] = t1 - t0;
	s->total.ns[s->total.n++] = t2 - t0;
	return 0;
}

static int wrong_page(const char *cs, struct side *s, long bad)
{
	printf("bench move-%s: %s: destination page %ld has wrong contents (0x%llx)\n",
	       cs, s->name, bad,
	       (unsigned long long)*(volatile uint64_t *)(s->dst + (size_t)bad * ps));
	return -EIO;
}

static int step_uffdx(const struct size_case *c, struct side *s, int measured)
{
	uint64_t len = (uint64_t)c->pages * ps, t0, t1, t2;
	int64_t res = 0;
	long bad;
	int ret;

	t0 = now_ns();
	ret = uffdx_move_addr(ctx, s->dst, s->src, len, 0, &res);
	t1 = now_ns();
	if (ret || res != (int64_t)len) {
		printf("bench move-%s: uffdx_move_addr: %s, result %lld of %llu\n",
		       c->name, ret ? strerror(-ret) : "ok", (long long)res,
		       (unsigned long long)len);
		return ret ? ret : -EIO;
	}
	bad = touch(s->dst, c->pages);
	t2 = now_ns();
	if (bad >= 0)
		return wrong_page(c->name, s, bad);
	swap_dirs(s);
	return record(s, measured, t0, t1, t2);
}

static int step_kmove(const struct size_case *c, struct side *s, int measured)
{
	struct bench_uffdio_move m;
	uint64_t len = (uint64_t)c->pages * ps, t0, t1, t2;
	long bad;
	int ret;

	memset(&m, 0, sizeof(m));
	m.dst = (uintptr_t)s->dst;
	m.src = (uintptr_t)s->src;
	m.len = len;
	t0 = now_ns();
	ret = ioctl(s->uffd, BENCH_UFFDIO_MOVE, &m);
	t1 = now_ns();
	if (ret || m.move != (int64_t)len) {
		printf("bench move-%s: UFFDIO_MOVE: %s, move %lld of %llu\n", c->name,
		       ret ? strerror(errno) : "ok", (long long)m.move,
		       (unsigned long long)len);
		return -EIO;
	}
	bad = touch(s->dst, c->pages);
	t2 = now_ns();
	if (bad >= 0)
		return wrong_page(c->name, s, bad);
	swap_dirs(s);
	return record(s, measured, t0, t1, t2);
}

static int step_kcopy(const struct size_case *c, struct side *s, int measured)
{
	struct uffdio_copy cp;
	uint64_t len = (uint64_t)c->pages * ps, t0, t1, t2;
	long bad;
	int ret;

	memset(&cp, 0, sizeof(cp));
	cp.dst = (uintptr_t)s->dst;
	cp.src = (uintptr_t)s->buf;
	cp.len = len;
	t0 = now_ns();
	ret = ioctl(s->uffd, UFFDIO_COPY, &cp);
	t1 = now_ns();
	if (ret || cp.copy != (int64_t)len) {
		printf("bench move-%s: UFFDIO_COPY: %s, copy %lld of %llu\n", c->name,
		       ret ? strerror(errno) : "ok", (long long)cp.copy,
		       (unsigned long long)len);
		return -EIO;
	}
	bad = touch(s->dst, c->pages);
	t2 = now_ns();
	if (bad >= 0)
		return wrong_page(c->name, s, bad);
	if (madvise(s->dst, len, MADV_DONTNEED)) {
		printf("bench move-%s: MADV_DONTNEED: %s\n", c->name, strerror(errno));
		return -EIO;
	}
	return record(s, measured, t0, t1, t2);
}

static int step_memcpy(const struct size_case *c, struct side *s, int measured)
{
	size_t len = (size_t)c->pages * ps;
	uint64_t t0, t1;
	long bad;

	t0 = now_ns();
	memcpy(s->dst, s->buf, len);
	__asm__ __volatile__("" ::: "memory");
	t1 = now_ns();
	bad = touch(s->dst, c->pages);
	if (bad >= 0)
		return wrong_page(c->name, s, bad);
	return record(s, measured, t0, t1, t1);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static void raw(const char *cs, const char *side, const char *what,
		const struct series *s)
{
	int i;

	if (!verbose)
		return;
	printf("# raw move-%s %s %s:", cs, side, what);
	for (i = 0; i < s->n; i++)
		printf(" %llu", (unsigned long long)s->ns[i]);
	printf("\n");
}

static uint64_t median(struct series *s)
{
	int n = s->n;
	uint64_t m;

	qsort(s->ns, n, sizeof(*s->ns), cmp_u64);
	m = n % 2 ? s->ns[n / 2] : (s->ns[n / 2 - 1] + s->ns[n / 2]) / 2;
	return m ? m : 1;
}

/* "(N iterations, p10 X, p90 Y)" of a sorted series. */
static const char *spread(const struct series *s)
{
	static char buf[96];

	snprintf(buf, sizeof(buf), "(%d iterations, p10 %llu, p90 %llu)", s->n,
		 (unsigned long long)s->ns[s->n / 10],
		 (unsigned long long)s->ns[s->n * 9 / 10]);
	return buf;
}

static void ratio(const char *what, const char *cs, const char *peer,
		  uint64_t mine, uint64_t theirs)
{
	printf("ratio %s-%s uffdx/%s %.3f (%s)\n", what, cs, peer,
	       (double)mine / (double)theirs, uts.release);
}

enum { S_UFFDX, S_KMOVE, S_KCOPY, S_MEMCPY, NSIDES };

static int series_alloc(struct side *s, int n)
{
	s->total.ns = calloc(n, sizeof(uint64_t));
	s->alone.ns = calloc(n, sizeof(uint64_t));
	return s->total.ns && s->alone.ns ? 0 : -ENOMEM;
}

static void series_free(struct side *s)
{
	free(s->total.ns);
	free(s->alone.ns);
}

/* 0, or -errno after printing what failed. */
static int run_case(const struct size_case *c, int iters, double budget_s)
{
	int (*const step[NSIDES])(const struct size_case *, struct side *, int) = {
		step_uffdx, step_kmove, step_kcopy, step_memcpy,
	};
	struct area ua, ub, ka, kb, kc, buf, mdst;
	struct side sd[NSIDES];
	size_t off = c->aligned ? 0 : ps, len = (size_t)c->pages * ps;
	int on[NSIDES] = { !kernel_only, kmove_ok, !c->thp, !c->thp };
	int uffd = -1, ret, i, k, it, measured = 0;
	uint64_t ioctls = 0, start, budget = (uint64_t)(budget_s * 1e9);
	long huge;

	memset(sd, 0, sizeof(sd));
	memset(&ua, 0, sizeof(ua));
	ua.map.fd = ub.map.fd = -1;
	ub = ka = kb = kc = buf = mdst = ua;
	sd[S_UFFDX].name = "uffdx";
	sd[S_KMOVE].name = "kernel-move";
	sd[S_KCOPY].name = "kernel-copy";
	sd[S_MEMCPY].name = "memcpy";
	for (k = 0; k < NSIDES; k++) {
		ret = series_alloc(&sd[k], iters);
		if (ret)
			goto out;
	}

#define TRY(what, expr) do {						\
	ret = (expr);							\
	if (ret < 0) {							\
		printf("bench move-%s: %s: %s\n", c->name, what, strerror(-ret)); \
		goto out;						\
	}								\
} while (0)

	if (on[S_UFFDX]) {
		TRY("uffdx region", area_region(&ua));
		TRY("uffdx region", area_region(&ub));
		populate(ua.addr + off, c->pages);
		sd[S_UFFDX].src = ua.addr + off;
		sd[S_UFFDX].dst = ub.addr + off;
	}

	if (on[S_KMOVE] || on[S_KCOPY]) {
		TRY("userfaultfd", uffd = uffd_open(kmove_ok ? UFFD_FEATURE_MOVE : 0));
		sd[S_KMOVE].uffd = sd[S_KCOPY].uffd = uffd;
	}
	TRY("anonymous memory", area_anon(&buf, 0));
	populate(buf.addr + off, c->pages);
	if (on[S_KMOVE]) {
		TRY("anonymous memory", area_anon(&ka, c->thp));
		TRY("anonymous memory", area_anon(&kb, c->thp));
		populate(ka.addr + off, c->pages);
		/* registered after populating: a registered hole would fault */
		TRY("UFFDIO_REGISTER", uffd_register(uffd, ka.addr, span, NULL));
		TRY("UFFDIO_REGISTER", uffd_register(uffd, kb.addr, span, &ioctls));
		if (!(ioctls & (1ull << 0x05))) {
			printf("bench move-%s: kernel UFFDIO_MOVE not offered for anonymous memory (%s)\n",
			       c->name, uts.release);
			on[S_KMOVE] = 0;
		}
		sd[S_KMOVE].src = ka.addr + off;
		sd[S_KMOVE].dst = kb.addr + off;
		if (c->thp) {
			huge = anon_huge_kb(ka.addr);
			if (huge < (long)(HUGE_SZ >> 10)) {
				printf("bench move-%s: kernel source is not a THP (AnonHugePages %ld kB): skipped\n",
				       c->name, huge);
				ret = 0;
				goto out;
			}
		}
	}
	if (on[S_KCOPY]) {
		TRY("anonymous memory", area_anon(&kc, 0));
		TRY("UFFDIO_REGISTER", uffd_register(uffd, kc.addr, span, NULL));
		sd[S_KCOPY].dst = kc.addr + off;
		sd[S_KCOPY].buf = buf.addr + off;
	}
	if (on[S_MEMCPY]) {
		TRY("anonymous memory", area_anon(&mdst, 0));
		memset(mdst.addr + off, 0, len);
		sd[S_MEMCPY].dst = mdst.addr + off;
		sd[S_MEMCPY].buf = buf.addr + off;
	}

	start = now_ns();
	for (it = 0; measured < iters; it++) {
		int m = it >= WARMUP;

		if (m && measured >= MIN_ITERS && now_ns() - start > budget)
			break;
		/* rotate which mechanism goes first */
		for (i = 0; i < NSIDES; i++) {
			k = (it + i) % NSIDES;
			if (on[k]) {
				ret = step[k](c, &sd[k], m);
				if (ret)
					goto out;
			}
		}
		measured += m;
	}

	for (k = 0; k < NSIDES; k++) {
		if (!on[k])
			continue;
		raw(c->name, sd[k].name, "total", &sd[k].total);
		if (k != S_MEMCPY)
			raw(c->name, sd[k].name, "alone", &sd[k].alone);
	}
	if (c->thp) {
		huge = anon_huge_kb(sd[S_KMOVE].src);
		printf("bench move-%s: kernel pages after the moves: AnonHugePages %ld kB\n",
		       c->name, huge);
	}
	{
		struct side *u = &sd[S_UFFDX];
		uint64_t ut = 0, ua1 = 0;

		if (on[S_UFFDX]) {
			ut = median(&u->total);
			ua1 = median(&u->alone);
			printf("bench move-%s: uffdx move+touch %llu ns, move alone %llu ns %s\n",
			       c->name, (unsigned long long)ut, (unsigned long long)ua1,
			       spread(&u->total));
		}
		if (on[S_KMOVE]) {
			struct side *s = &sd[S_KMOVE];
			uint64_t kt = median(&s->total), ka1 = median(&s->alone);

			printf("bench move-%s: kernel-move move+touch %llu ns, move alone %llu ns %s\n",
			       c->name, (unsigned long long)kt, (unsigned long long)ka1,
			       spread(&s->total));
			if (on[S_UFFDX]) {
				ratio("move", c->name, "kernel-move", ut, kt);
				ratio("move-alone", c->name, "kernel-move", ua1, ka1);
			}
		} else if (!kmove_ok) {
			printf("bench move-%s: kernel UFFDIO_MOVE not available (%s)\n",
			       c->name, uts.release);
		}
		if (on[S_KCOPY]) {
			struct side *s = &sd[S_KCOPY];
			uint64_t kt = median(&s->total);

			printf("bench move-%s: kernel-copy copy+touch %llu ns, copy alone %llu ns %s\n",
			       c->name, (unsigned long long)kt,
			       (unsigned long long)median(&s->alone), spread(&s->total));
			if (on[S_UFFDX])
				ratio("move", c->name, "kernel-copy", ut, kt);
		}
		if (on[S_MEMCPY])
			printf("bench move-%s: memcpy %llu ns\n", c->name,
			       (unsigned long long)median(&sd[S_MEMCPY].total));
	}
	fflush(stdout);
	ret = 0;
#undef TRY
out:
	fflush(stdout);
	area_free(&ua);
	area_free(&ub);
	area_free(&ka);
	area_free(&kb);
	area_free(&kc);
	area_free(&buf);
	area_free(&mdst);
	if (uffd >= 0)
		close(uffd);
	for (k = 0; k < NSIDES; k++)
		series_free(&sd[k]);
	return ret;
}

int main(int argc, char **argv)
{
	double budget = 4.0;
	int opt, iters = 0, fd;
	unsigned int i;
	cpu_set_t cpus;

	while ((opt = getopt(argc, argv, "n:t:kv")) != -1) {
		if (opt == 'k')
			kernel_only = 1;
		else if (opt == 'v')
			verbose = 1;
		else if (opt == 'n')
			iters = atoi(optarg);
		else if (opt == 't')
			budget = atof(optarg);
		else {
			fprintf(stderr, "usage: %s [-n ITERATIONS] [-t SECONDS] [-k] [-v]\n", argv[0]);
			return 1;
		}
	}
	if (optind < argc || iters < 0 || budget <= 0) {
		fprintf(stderr, "usage: %s [-n ITERATIONS] [-t SECONDS] [-k] [-v]\n", argv[0]);
		return 1;
	}
	uname(&uts);
	span = HUGE_SZ + 2 * ps;
	if (!kernel_only && !uffdx_present()) {
		printf("# SKIP " UFFDX_DEV " not present (uffdx module not loaded)\n");
		return 4;
	}
	if (!kernel_only) {
		ctx = ctx_open(DEFAULT_FEATURES | UFFDX_FEATURE_MOVE, 0);
		if (ctx < 0) {
			printf("# SKIP uffdx context with UFFDX_FEATURE_MOVE: %s\n",
			       strerror(-ctx));
			return 4;
		}
	}
	fd = uffd_open(UFFD_FEATURE_MOVE);
	kmove_ok = fd >= 0;
	if (fd >= 0)
		close(fd);
	else if (fd != -EINVAL)
		printf("# userfaultfd: %s\n", strerror(-fd));

	CPU_ZERO(&cpus);
	CPU_SET(0, &cpus);
	if (sched_setaffinity(0, sizeof(cpus), &cpus))
		printf("# sched_setaffinity: %s (not pinned)\n", strerror(errno));
	printf("# move benchmark: uffdx_move_addr vs UFFDIO_MOVE%s and UFFDIO_COPY, pinned to CPU 0, budget %.1f s per size\n",
	       kmove_ok ? "" : " (not available)", budget);
	fflush(stdout);

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct size_case *c = &cases[i];

		pthread_t th;
		int ret;

		if (c->thp && !kmove_ok)
			continue;
		if (c->mt) {
			mutator_stop = 0;
			if (pthread_create(&th, NULL, mutator, NULL))
				continue;
		}
		ret = run_case(c, iters ? iters : c->iters, budget);
		if (c->mt) {
			mutator_stop = 1;
			pthread_join(th, NULL);
		}
		if (ret)
			return 1;
	}
	if (ctx >= 0)
		close(ctx);
	return 0;
}
