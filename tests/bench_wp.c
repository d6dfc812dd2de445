// SPDX-License-Identifier: GPL-2.0
/*
 * Write-protect benchmark: uffdx WP and WP_ASYNC regions against the
 * kernel's userfaultfd write protection of private anonymous memory.
 *
 *   bench_wp [-n ITERATIONS] [-f FAULTS] [-r ROUNDS] [-t SECONDS] [-k] [-v]
 *
 *   -n  measured iterations per size (default: 101 for 1 and 64 pages, 51
 *       for 512 pages, 21 for 1 GiB)
 *   -f  write faults per round trip round and mechanism (default 1000)
 *   -r  round trip rounds (default 5): the mechanisms alternate round by
 *       round, so that drift in the guest (TCG) hits them alike
 *   -t  time budget per size (default 4 s): a size stops early once it has
 *       21 iterations and has used its budget
 *   -k  the kernel's side only (no uffdx, no ratios); also what runs, with
 *       exit status 4, when the module lacks WP or WP_ASYNC
 *   -v  also print every sample, in iteration order
 *
 * Four comparisons, each in the same run, the process pinned to CPU 0:
 *
 *  wp-fault-roundtrip: a thread writes a write-protected, populated page;
 *      a handler thread blocked in read() gets the event and unprotects
 *      the page, which wakes the writer; the writer times its write.
 *      uffdx: a UFFDX_REGION_CREATE_WP region, uffdx_read_events() and
 *      uffdx_writeprotect(); kernel: UFFDIO_REGISTER_MODE_WP, read() of
 *      the userfaultfd and UFFDIO_WRITEPROTECT (6.1 and later).  In the
 *      same rounds, a uffdx handler making one call per fault,
 *      uffdx_resolve_wait() with a _UFFDX_WRITEPROTECT resolution
 *      (wp-fault-resolve-wait-roundtrip, against the same kernel loop).
 *  dirty-track-write-<N>: one word written to each of N protected pages,
 *      each write recorded without sleeping.  uffdx: a
 *      UFFDX_REGION_CREATE_WP_ASYNC region; kernel: UFFD_FEATURE_WP_ASYNC
 *      (6.7 and later) with UFFD_FEATURE_WP_UNPOPULATED, which
 *      PM_SCAN_CHECK_WPASYNC needs on anonymous memory.
 *  dirty-scan-rearm-<N>: then one scan of the range that reports the N
 *      written pages and protects them again.  uffdx: uffdx_scan() with
 *      UFFDX_SCAN_REARM; kernel: the PAGEMAP_SCAN ioctl of
 *      /proc/self/pagemap, PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC,
 *      category PAGE_IS_WRITTEN.  Both must report exactly the N pages.
 *  wp-protect-range-<N>: protecting a range whose N populated pages were
 *      just unprotected and written (so that write permission must be
 *      taken away from each).  uffdx: uffdx_writeprotect() on a WP region;
 *      kernel: UFFDIO_WRITEPROTECT on a MODE_WP registration.
 *
 * Sizes: N = 1, 64 and 512 pages, each page of the range populated; and
 * a 1 GiB range (for protect and scan) with 512 pages populated and
 * written, the rest never touched: "1G" has them in its first 2 MiB (one
 * page table), "1G-spread" one in every 2 MiB (a page table per 2 MiB on
 * both sides, the worst case for a walk of the tables that exist).  The
 * uffdx region is 1 GiB of a sparse region; the kernel's area is a 1 GiB
 * MAP_NORESERVE anonymous mapping, registered as a whole.
 *
 * The fair kernel baseline for a 1 GiB range is an equal promise: uffdx
 * protects the holes too (a later first write to one is caught), and
 * the kernel does so only with UFFD_FEATURE_WP_UNPOPULATED (6.4 and
 * later), by installing a PTE marker in every page of the range.  So the
 * kernel side uses WP_UNPOPULATED wherever the kernel has it (6.12), and
 * for information the 1 GiB protect is also timed without it there
 * ("kernel-uffd-wp-populated-only": holes left unprotected).  6.1 has no
 * WP_UNPOPULATED: its baseline protects the populated pages only, a
 * weaker promise, and the output says so.  6.1 has no WP_ASYNC and no
 * PAGEMAP_SCAN either: the dirty-tracking figures are then uffdx's alone,
 * with a line saying that no baseline exists.
 *
 * Kernel areas are MADV_NOHUGEPAGE, so that both sides deal in order-0
 * pages.  Each iteration runs the mechanisms in an order that rotates.
 * Output, medians over the iterations (ratio: uffdx time / kernel time):
 *
 *   bench <metric>-<N>: <side> <ns> ns (...)
 *   ratio wp-fault-roundtrip uffdx/kernel-uffd-wp <ratio> (<uname -r>)
 *   ratio dirty-track-write-<N> uffdx/kernel-wp-async <ratio> (<uname -r>)
 *   ratio dirty-scan-rearm-<N> uffdx/kernel-pagemap-scan <ratio> (<uname -r>)
 *   ratio wp-protect-range-<N> uffdx/kernel-uffd-wp <ratio> (<uname -r>)
 *
 * Not pass/fail: exit 0 unless something errors (1); 4 if uffdx or its
 * WP or WP_ASYNC feature is unavailable (the kernel figures are printed).
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

/* What the 6.1 headers the tests build against lack (6.4, 6.7). */
#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED	(1 << 13)
#endif
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC		(1 << 15)
#endif
struct bench_page_region {
	uint64_t start;
	uint64_t end;
	uint64_t categories;
};

struct bench_pm_scan_arg {
	uint64_t size;
	uint64_t flags;
	uint64_t start;
	uint64_t end;
	uint64_t walk_end;
	uint64_t vec;
	uint64_t vec_len;
	uint64_t max_pages;
	uint64_t category_inverted;
	uint64_t category_mask;
	uint64_t category_anyof_mask;
	uint64_t return_mask;
};
_Static_assert(sizeof(struct bench_pm_scan_arg) == 96, "struct pm_scan_arg");
#define BENCH_PAGEMAP_SCAN		_IOWR('f', 16, struct bench_pm_scan_arg)
#define BENCH_PM_SCAN_WP_MATCHING	(1 << 0)
#define BENCH_PM_SCAN_CHECK_WPASYNC	(1 << 1)
#define BENCH_PAGE_IS_WRITTEN		(1 << 1)

#define GIB			(1ul << 30)
#define MIN_ITERS		21
#define WARMUP			3
#define RT_WARMUP		50
#define RT_TIMEOUT_NS		(10 * 1000000000LL)
#define WATCHDOG_S		60
#define TAG_MAGIC		0x77702d62656e6368ull

struct size_case {
	const char *name;
	int pages;		/* populated (and written) pages */
	int stride;		/* pages from one to the next */
	int span;		/* pages of the range; 0: 1 GiB */
	int iters;
};

static const struct size_case cases[] = {
	{ "1", 1, 1, 1, 101 },
	{ "64", 64, 1, 64, 101 },
	{ "512", 512, 1, 512, 51 },
	/* 1 GiB: its first 2 MiB populated, or one page in every 2 MiB */
	{ "1G", 512, 1, 0, 21 },
	{ "1G-spread", 512, 512, 0, 21 },
};

static int ctx = -1;		/* uffdx, with what it has of WP, WP_ASYNC */
static int have_wp, have_async;	/* uffdx features */
static int kwp_unpop;		/* kernel: UFFD_FEATURE_WP_UNPOPULATED */
static int kasync;		/* kernel: WP_ASYNC and PAGEMAP_SCAN */
static int pagemap_fd = -1;
static int kernel_only;		/* -k */
static int verbose;		/* -v */
static struct utsname uts;

/* Bumped by every step; the watchdog ends a run that stops making any. */
static volatile uint64_t progress;

static void *watchdog(void *arg)
{
	uint64_t last = ~0ull, now;
	int idle = 0;

	(void)arg;
	for (;;) {
		sleep(1);
		now = __atomic_load_n(&progress, __ATOMIC_RELAXED);
		if (now != last) {
			last = now;
			idle = 0;
		} else if (++idle >= WATCHDOG_S) {
			printf("bench wp: no progress for %d s: a writer or handler is stuck\n",
			       WATCHDOG_S);
			fflush(stdout);
			_exit(1);
		}
	}
	return NULL;
}

static void tick(void)
{
	__atomic_add_fetch(&progress, 1, __ATOMIC_RELAXED);
}

/* ---- measurement, as bench_move ------------------------------------------- */

struct series {
	uint64_t *ns;
	int n;
};

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static void raw(const char *metric, const char *side, const struct series *s)
{
	int i;

	if (!verbose)
		return;
	printf("# raw %s %s:", metric, side);
	for (i = 0; i < s->n; i++)
		printf(" %llu", (unsigned long long)s->ns[i]);
	printf("\n");
}

static uint64_t median(struct series *s)
{
	int n = s->n;
	uint64_t m;

	if (n <= 0)
		return 1;
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

/* Median of s, printed as "bench METRIC: SIDE WHAT N ns (...)". */
static uint64_t report(const char *metric, const char *side, const char *what,
		       struct series *s)
{
	uint64_t m;

	raw(metric, side, s);
	m = median(s);
	printf("bench %s: %s %s%s%llu ns %s\n", metric, side, what, *what ? " " : "",
	       (unsigned long long)m, spread(s));
	return m;
}

static void ratio(const char *metric, const char *peer, uint64_t mine,
		  uint64_t theirs)
{
	printf("ratio %s uffdx/%s %.3f (%s)\n", metric, peer,
	       (double)mine / (double)theirs, uts.release);
}

static int series_alloc(struct series *s, int n)
{
	s->ns = calloc(n, sizeof(uint64_t));
	s->n = 0;
	return s->ns ? 0 : -ENOMEM;
}

static uint64_t tag(long page, int it)
{
	return TAG_MAGIC ^ ((uint64_t)page << 16) ^ (uint64_t)it;
}

/* ---- the kernel's userfaultfd ------------------------------------------------ */

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

static int uffd_register_wp(int uffd, void *addr, size_t len)
{
	struct uffdio_register reg;

	memset(&reg, 0, sizeof(reg));
	reg.range.start = (uintptr_t)addr;
	reg.range.len = len;
	reg.mode = UFFDIO_REGISTER_MODE_WP;
	if (ioctl(uffd, UFFDIO_REGISTER, &reg))
		return -errno;
	if (!(reg.ioctls & (1ull << _UFFDIO_WRITEPROTECT)))
		return -EOPNOTSUPP;
	return 0;
}

/* UFFDIO_WRITEPROTECT: protect (wp) or unprotect and wake [addr, +len). */
static int uffd_wp(int uffd, void *addr, size_t len, int wp)
{
	struct uffdio_writeprotect w;

	memset(&w, 0, sizeof(w));
	w.range.start = (uintptr_t)addr;
	w.range.len = len;
	w.mode = wp ? UFFDIO_WRITEPROTECT_MODE_WP : 0;
	return ioctl(uffd, UFFDIO_WRITEPROTECT, &w) ? -errno : 0;
}

/* A private anonymous area of len bytes, order-0 pages only. */
static uint8_t *anon_area(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	if (p == MAP_FAILED)
		return NULL;
	madvise(p, len, MADV_NOHUGEPAGE);
	return p;
}

/*
 * PAGEMAP_SCAN of [addr, +len): report the written pages, protect them
 * again.  Returns the regions written to vec (up to n), or -errno;
 * *written is their bytes, *walk_end where the walk stopped.
 */
static long pagemap_scan_rearm(void *addr, size_t len, struct bench_page_region *vec,
			       size_t n, uint64_t *written, uint64_t *walk_end)
{
	struct bench_pm_scan_arg a;
	long ret, i;

	memset(&a, 0, sizeof(a));
	a.size = sizeof(a);
	a.flags = BENCH_PM_SCAN_WP_MATCHING | BENCH_PM_SCAN_CHECK_WPASYNC;
	a.start = (uintptr_t)addr;
	a.end = (uintptr_t)addr + len;
	a.vec = (uintptr_t)vec;
	a.vec_len = n;
	a.category_mask = BENCH_PAGE_IS_WRITTEN;
	a.return_mask = BENCH_PAGE_IS_WRITTEN;
	ret = ioctl(pagemap_fd, BENCH_PAGEMAP_SCAN, &a);
	if (ret < 0)
		return -errno;
	*written = 0;
	for (i = 0; i < ret; i++)
		*written += vec[i].end - vec[i].start;
	*walk_end = a.walk_end;
	return ret;
}

/* Probe the kernel's WP_UNPOPULATED, WP_ASYNC and PAGEMAP_SCAN. */
static void probe_kernel(void)
{
	struct bench_page_region vec[2];
	uint64_t w, end;
	uint8_t *a;
	int fd;

	fd = uffd_open(UFFD_FEATURE_WP_UNPOPULATED);
	kwp_unpop = fd >= 0;
	if (fd >= 0)
		close(fd);
	pagemap_fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	fd = uffd_open(UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED);
	if (fd < 0 || pagemap_fd < 0)
		goto out;
	a = anon_area(2 * ps);
	if (a && !uffd_register_wp(fd, a, 2 * ps) && !uffd_wp(fd, a, 2 * ps, 1)) {
		a[0] = 1;
		kasync = pagemap_scan_rearm(a, 2 * ps, vec, 2, &w, &end) == 1 &&
			 w == ps;
	}
	if (a)
		munmap(a, 2 * ps);
out:
	if (fd >= 0)
		close(fd);
}

/* ---- wp-fault-roundtrip ------------------------------------------------------ */

enum { RT_UFFDX, RT_UFFDX_WAIT, RT_KERNEL, RT_NR };

static const char *const rt_names[RT_NR] = {
	"uffdx", "uffdx-resolve-wait", "kernel-uffd-wp",
};

struct rt {
	int kind;		/* RT_* */
	int fd;			/* uffdx context or userfaultfd */
	uint64_t region_id;
	uint8_t *area;
	int npages;
	int err;
	pthread_t handler;
};

/* A failed handler must not leave its writer asleep: unprotect it all. */
static void rt_fail(struct rt *b, int err)
{
	size_t len = (size_t)b->npages * ps;

	if (!b->err)
		b->err = err;
	if (b->kind == RT_KERNEL)
		uffd_wp(b->fd, b->area, len, 0);
	else
		uffdx_writeprotect(b->fd, b->region_id, 0, len, 0, NULL);
}

static int rt_event_ok(const struct uffdx_event *ev)
{
	return ev->type == UFFDX_EVENT_PAGEFAULT &&
	       (ev->flags & (UFFDX_PF_WP | UFFDX_PF_WRITE)) ==
	       (UFFDX_PF_WP | UFFDX_PF_WRITE);
}

static void *rt_uffdx_handler(void *arg)
{
	struct rt *b = arg;
	struct uffdx_event ev;
	int i, ret;

	for (i = 0; i < b->npages; i++) {
		ret = uffdx_read_events(b->fd, &ev, 1);
		if (ret != 1) {
			rt_fail(b, ret < 0 ? -ret : EIO);
			break;
		}
		if (!rt_event_ok(&ev)) {
			rt_fail(b, EPROTO);
			break;
		}
		ret = uffdx_writeprotect(b->fd, ev.region_id, ev.offset, ps, 0, NULL);
		if (ret) {
			rt_fail(b, -ret);
			break;
		}
	}
	return NULL;
}

/* One call per fault: unprotect the previous fault's page, wait for the next. */
static void *rt_uffdx_wait_handler(void *arg)
{
	struct rt *b = arg;
	struct uffdx_resolution res;
	struct uffdx_event ev;
	unsigned int nres = 0, done;
	int served = 0, n;

	memset(&res, 0, sizeof(res));
	while (served < b->npages) {
		n = uffdx_resolve_wait(b->fd, &res, nres, &done, &ev, 1, RT_TIMEOUT_NS, 0);
		if (n != 1 || !rt_event_ok(&ev)) {
			rt_fail(b, n < 0 ? -n : n == 0 ? ETIMEDOUT : EPROTO);
			return NULL;
		}
		memset(&res, 0, sizeof(res));
		res.op = _UFFDX_WRITEPROTECT;
		res.region_id = ev.region_id;
		res.offset = ev.offset;
		res.len = ps;
		nres = 1;
		served++;
	}
	n = uffdx_resolve_wait(b->fd, &res, nres, &done, NULL, 0, 0, UFFDX_RESOLVE_NOWAIT);
	if (n < 0)
		rt_fail(b, -n);
	return NULL;
}

static void *rt_kernel_handler(void *arg)
{
	struct rt *b = arg;
	struct uffd_msg msg;
	int i, ret;

	for (i = 0; i < b->npages; i++) {
		if (read(b->fd, &msg, sizeof(msg)) != sizeof(msg)) {
			rt_fail(b, errno ? errno : EIO);
			break;
		}
		if (msg.event != UFFD_EVENT_PAGEFAULT ||
		    !(msg.arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP)) {
			rt_fail(b, EPROTO);
			break;
		}
		ret = uffd_wp(b->fd, (void *)(uintptr_t)(msg.arg.pagefault.address &
							 ~((uint64_t)ps - 1)), ps, 0);
		if (ret) {
			rt_fail(b, -ret);
			break;
		}
	}
	return NULL;
}

/* The writer: time a write to every protected page; the handler serves them. */
static int rt_run(struct rt *b, struct series *out)
{
	void *(*const fn[RT_NR])(void *) = {
		rt_uffdx_handler, rt_uffdx_wait_handler, rt_kernel_handler,
	};
	int i;

	if (pthread_create(&b->handler, NULL, fn[b->kind], b))
		return -EAGAIN;
	for (i = 0; i < b->npages && !b->err; i++) {
		volatile uint64_t *p = (volatile uint64_t *)(b->area + (size_t)i * ps);
		uint64_t t0 = now_ns(), t1;

		*p = tag(i, 1);
		t1 = now_ns();
		tick();
		if (i >= RT_WARMUP)
			out->ns[out->n++] = t1 - t0;
	}
	pthread_join(b->handler, NULL);
	if (b->err) {
		printf("bench wp-fault-roundtrip: %s handler: %s\n", rt_names[b->kind],
		       strerror(b->err));
		return -b->err;
	}
	for (i = 0; i < b->npages; i++) {
		const volatile uint64_t *p = (const volatile uint64_t *)(b->area + (size_t)i * ps);

		if (*p != tag(i, 1)) {
			printf("bench wp-fault-roundtrip: %s: page %d has wrong contents\n",
			       rt_names[b->kind], i);
			return -EIO;
		}
	}
	return 0;
}

/* Populate npages pages, protect them all, and time one round. */
static int rt_round(int kind, int npages, struct series *out)
{
	struct uffdx_region_map m = { .fd = -1 };
	size_t len = (size_t)npages * ps;
	struct rt b;
	int64_t res = 0;
	int i, ret;

	memset(&b, 0, sizeof(b));
	b.kind = kind;
	b.npages = npages;
	b.fd = -1;
	if (kind == RT_KERNEL) {
		b.fd = uffd_open(0);
		if (b.fd < 0)
			return b.fd;
		b.area = anon_area(len);
		if (!b.area) {
			close(b.fd);
			return -ENOMEM;
		}
	} else {
		ret = uffdx_region_map(ctx, len, UFFDX_REGION_CREATE_WP, &m);
		if (ret)
			return ret;
		b.fd = ctx;
		b.area = m.addr;
		b.region_id = m.id;
	}
	for (i = 0; i < npages; i++)
		*(volatile uint64_t *)(b.area + (size_t)i * ps) = tag(i, 0);
	if (kind == RT_KERNEL) {
		ret = uffd_register_wp(b.fd, b.area, len);
		if (!ret)
			ret = uffd_wp(b.fd, b.area, len, 1);
	} else {
		ret = uffdx_writeprotect(ctx, m.id, 0, len, UFFDX_WP_PROTECT, &res);
		if (!ret && res != (int64_t)len)
			ret = -EIO;
	}
	if (ret)
		printf("bench wp-fault-roundtrip: %s: protect: %s\n", rt_names[kind],
		       strerror(-ret));
	else
		ret = rt_run(&b, out);
	if (kind == RT_KERNEL) {
		munmap(b.area, len);
		close(b.fd);
	} else {
		uffdx_region_unmap(&m);
	}
	return ret;
}

static int bench_roundtrip(int faults, int rounds)
{
	struct series s[RT_NR];
	int on[RT_NR] = { have_wp, have_wp, 1 };
	int r, k, ret, npages = faults + RT_WARMUP;
	uint64_t med[RT_NR];

	for (k = 0; k < RT_NR; k++)
		if (series_alloc(&s[k], faults * rounds))
			return -ENOMEM;
	printf("# wp-fault-roundtrip: %d rounds of %d write faults per mechanism, "
	       "alternating; writer and handler on CPU 0\n", rounds, faults);
	fflush(stdout);
	for (r = 0; r < rounds; r++)
		for (k = 0; k < RT_NR; k++) {
			int kind = (r + k) % RT_NR;

			if (!on[kind])
				continue;
			ret = rt_round(kind, npages, &s[kind]);
			if (ret) {
				printf("bench wp-fault-roundtrip: %s: %s\n", rt_names[kind],
				       strerror(-ret));
				return ret;
			}
		}
	for (k = 0; k < RT_NR; k++)
		if (on[k])
			med[k] = report("wp-fault-roundtrip", rt_names[k], "", &s[k]);
	if (on[RT_UFFDX]) {
		ratio("wp-fault-roundtrip", "kernel-uffd-wp", med[RT_UFFDX], med[RT_KERNEL]);
		ratio("wp-fault-resolve-wait-roundtrip", "kernel-uffd-wp",
		      med[RT_UFFDX_WAIT], med[RT_KERNEL]);
	}
	fflush(stdout);
	for (k = 0; k < RT_NR; k++)
		free(s[k].ns);
	return 0;
}

/* ---- range cases: protect, and dirty tracking ------------------------------- */

/* One mechanism's state for one size. */
struct side {
	const char *name;
	int on;
	int kernel;
	int uffd;		/* kernel */
	struct uffdx_region_map map;	/* uffdx */
	uint8_t *addr;
	size_t len;
	struct series a, b;	/* protect; or write, scan */
	void *out;		/* scan output, pages + 1 entries */
};

static size_t case_len(const struct size_case *c)
{
	return c->span ? (size_t)c->span * ps : GIB;
}

static void write_set(const struct size_case *c, uint8_t *addr, int it)
{
	int i;

	for (i = 0; i < c->pages; i++)
		*(volatile uint64_t *)(addr + (size_t)i * c->stride * ps) = tag(i, it);
}

static void side_free(struct side *s)
{
	if (s->kernel) {
		if (s->addr)
			munmap(s->addr, s->len);
		if (s->uffd >= 0)
			close(s->uffd);
	} else {
		uffdx_region_unmap(&s->map);
	}
	free(s->a.ns);
	free(s->b.ns);
	free(s->out);
	memset(s, 0, sizeof(*s));
	s->uffd = -1;
}

/*
 * Set a side up: the area, its populated pages, registered and protected
 * as a whole.  uffdx: a region of mode flags; kernel: a userfaultfd with
 * features, MODE_WP.
 */
static int side_setup(const struct size_case *c, struct side *s, int iters,
		      uint32_t flags, uint64_t features)
{
	int64_t res = 0;
	int ret;

	s->len = case_len(c);
	s->uffd = -1;
	s->map.fd = -1;
	if (series_alloc(&s->a, iters) || series_alloc(&s->b, iters))
		return -ENOMEM;
	s->out = calloc(c->pages + 1, sizeof(struct bench_page_region));
	if (!s->out)
		return -ENOMEM;
	if (s->kernel) {
		s->uffd = uffd_open(features);
		if (s->uffd < 0)
			return s->uffd;
		s->addr = anon_area(s->len);
		if (!s->addr)
			return -ENOMEM;
		write_set(c, s->addr, 0);
		ret = uffd_register_wp(s->uffd, s->addr, s->len);
		return ret ? ret : uffd_wp(s->uffd, s->addr, s->len, 1);
	}
	ret = uffdx_region_map(ctx, s->len, flags, &s->map);
	if (ret)
		return ret;
	s->addr = s->map.addr;
	write_set(c, s->addr, 0);
	ret = uffdx_writeprotect(ctx, s->map.id, 0, s->len, UFFDX_WP_PROTECT, &res);
	return ret ? ret : res == (int64_t)s->len ? 0 : -EIO;
}

/* wp-protect-range: unprotect, write the pages (not timed), protect. */
static int step_protect(const struct size_case *c, struct side *s, int it, int measured)
{
	uint64_t t0, t1;
	int64_t res = 0;
	int ret;

	ret = s->kernel ? uffd_wp(s->uffd, s->addr, s->len, 0) :
		uffdx_writeprotect(ctx, s->map.id, 0, s->len, 0, NULL);
	if (ret) {
		printf("bench wp-protect-range-%s: %s: unprotect: %s\n", c->name,
		       s->name, strerror(-ret));
		return ret;
	}
	write_set(c, s->addr, it);
	t0 = now_ns();
	if (s->kernel)
		ret = uffd_wp(s->uffd, s->addr, s->len, 1);
	else
		ret = uffdx_writeprotect(ctx, s->map.id, 0, s->len, UFFDX_WP_PROTECT, &res);
	t1 = now_ns();
	if (!ret && !s->kernel && res != (int64_t)s->len)
		ret = -EIO;
	if (ret) {
		printf("bench wp-protect-range-%s: %s: protect: %s (result %lld)\n",
		       c->name, s->name, strerror(-ret), (long long)res);
		return ret;
	}
	if (measured)
		s->a.ns[s->a.n++] = t1 - t0;
	return 0;
}

/* dirty tracking: write the pages, then scan and re-arm; exactly those reported. */
static int step_track(const struct size_case *c, struct side *s, int it, int measured)
{
	uint64_t t0, t1, t2, written = 0, end = 0, want = (uint64_t)c->pages * ps;
	long n;

	t0 = now_ns();
	write_set(c, s->addr, it);
	t1 = now_ns();
	if (s->kernel) {
		n = pagemap_scan_rearm(s->addr, s->len, s->out, c->pages + 1, &written, &end);
		t2 = now_ns();
		if (n >= 0 && end != (uintptr_t)s->addr + s->len)
			n = -EIO;
	} else {
		struct uffdx_scan sc;

		memset(&sc, 0, sizeof(sc));
		sc.flags = UFFDX_SCAN_REARM;
		sc.region_id = s->map.id;
		sc.len = s->len;
		sc.out = (uintptr_t)s->out;
		sc.out_len = c->pages + 1;
		n = uffdx_scan(ctx, &sc);
		t2 = now_ns();
		written = sc.written;
		if (!n && sc.scanned != s->len)
			n = -EIO;
	}
	if (n < 0 || written != want) {
		printf("bench dirty-track-%s: %s: scan: %s, %llu bytes written of %llu\n",
		       c->name, s->name, n < 0 ? strerror((int)-n) : "ok",
		       (unsigned long long)written, (unsigned long long)want);
		return n < 0 ? (int)n : -EIO;
	}
	if (measured) {
		s->a.ns[s->a.n++] = t1 - t0;
		s->b.ns[s->b.n++] = t2 - t1;
	}
	return 0;
}

enum { K_PROTECT, K_TRACK };

/* 0, or -errno after printing what failed. */
static int run_case(const struct size_case *c, int kind, int iters, double budget_s)
{
	int (*const step)(const struct size_case *, struct side *, int, int) =
		kind == K_PROTECT ? step_protect : step_track;
	const char *metric = kind == K_PROTECT ? "wp-protect-range" : "dirty-track";
	struct side sd[3];	/* uffdx, kernel, kernel without WP_UNPOPULATED */
	uint64_t start, budget = (uint64_t)(budget_s * 1e9);
	int nsides = 2, it, i, k, ret = 0, measured = 0;
	char name[64];

	memset(sd, 0, sizeof(sd));
	for (k = 0; k < 3; k++) {
		sd[k].uffd = -1;
		sd[k].map.fd = -1;
		sd[k].kernel = k > 0;
	}
	sd[0].name = "uffdx";
	sd[0].on = kind == K_PROTECT ? have_wp : have_async;
	if (kind == K_PROTECT) {
		sd[1].name = "kernel-uffd-wp";
		sd[1].on = 1;
		/* the 1 GiB range: also without WP_UNPOPULATED, for information */
		sd[2].name = "kernel-uffd-wp-populated-only";
		sd[2].on = kwp_unpop && !c->span;
		nsides = 3;
	} else {
		sd[1].name = "kernel-wp-async";
		sd[1].on = kasync;
	}

	for (k = 0; k < nsides; k++) {
		uint64_t features = 0;
		uint32_t flags = kind == K_PROTECT ? UFFDX_REGION_CREATE_WP :
			UFFDX_REGION_CREATE_WP_ASYNC;

		if (!sd[k].on)
			continue;
		if (k == 1 && kind == K_TRACK)
			features = UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED;
		else if (k == 1 && kwp_unpop)
			features = UFFD_FEATURE_WP_UNPOPULATED;
		ret = side_setup(c, &sd[k], iters, flags, features);
		if (ret) {
			printf("bench %s-%s: %s: set-up: %s\n", metric, c->name, sd[k].name,
			       strerror(-ret));
			goto out;
		}
	}

	start = now_ns();
	for (it = 0; measured < iters; it++) {
		int m = it >= WARMUP;

		if (m && measured >= MIN_ITERS && now_ns() - start > budget)
			break;
		/* rotate which mechanism goes first */
		for (i = 0; i < nsides; i++) {
			k = (it + i) % nsides;
			if (!sd[k].on)
				continue;
			ret = step(c, &sd[k], it + 1, m);
			if (ret)
				goto out;
			tick();
		}
		measured += m;
	}

	if (kind == K_PROTECT) {
		uint64_t mu = 0, mk = 0;

		snprintf(name, sizeof(name), "wp-protect-range-%s", c->name);
		if (sd[0].on)
			mu = report(name, "uffdx", "", &sd[0].a);
		mk = report(name, sd[1].name, kwp_unpop ? "(WP_UNPOPULATED)" :
			    "(populated pages only: no WP_UNPOPULATED here)", &sd[1].a);
		if (sd[2].on)
			report(name, sd[2].name, "(holes left unprotected)", &sd[2].a);
		if (sd[0].on)
			ratio(name, "kernel-uffd-wp", mu, mk);
	} else {
		uint64_t uw = 0, us = 0, kw, ks;
		char scan[64];

		snprintf(name, sizeof(name), "dirty-track-write-%s", c->name);
		snprintf(scan, sizeof(scan), "dirty-scan-rearm-%s", c->name);
		if (sd[0].on) {
			uw = report(name, "uffdx", "", &sd[0].a);
			us = report(scan, "uffdx", "", &sd[0].b);
		}
		if (sd[1].on) {
			kw = report(name, "kernel-wp-async", "", &sd[1].a);
			ks = report(scan, "kernel-pagemap-scan", "", &sd[1].b);
			/* the 1 GiB cases' writes are the 512-page case's */
			if (sd[0].on && c->span)
				ratio(name, "kernel-wp-async", uw, kw);
			if (sd[0].on)
				ratio(scan, "kernel-pagemap-scan", us, ks);
		} else {
			printf("bench dirty-track-%s: kernel UFFD_FEATURE_WP_ASYNC with PAGEMAP_SCAN "
			       "not available (%s): no baseline exists, uffdx figures only\n",
			       c->name, uts.release);
		}
	}
	ret = 0;
out:
	fflush(stdout);
	for (k = 0; k < 3; k++)
		side_free(&sd[k]);
	return ret;
}

int main(int argc, char **argv)
{
	int opt, iters = 0, faults = 1000, rounds = 5, ret;
	double budget = 4.0;
	struct uffdx_api api;
	pthread_t wd;
	cpu_set_t cpus;
	unsigned int i;

	while ((opt = getopt(argc, argv, "n:f:r:t:kv")) != -1) {
		if (opt == 'k')
			kernel_only = 1;
		else if (opt == 'v')
			verbose = 1;
		else if (opt == 'n')
			iters = atoi(optarg);
		else if (opt == 'f')
			faults = atoi(optarg);
		else if (opt == 'r')
			rounds = atoi(optarg);
		else if (opt == 't')
			budget = atof(optarg);
		else
			goto usage;
	}
	if (optind < argc || iters < 0 || faults < 10 || rounds < 1 || budget <= 0)
		goto usage;
	uname(&uts);

	if (!kernel_only && !uffdx_present()) {
		printf("# uffdx: " UFFDX_DEV " not present (module not loaded): kernel side only\n");
		kernel_only = 2;
	}
	if (!kernel_only) {
		ret = uffdx_query(&api);
		if (ret) {
			printf("# uffdx: %s: kernel side only\n", strerror(-ret));
			kernel_only = 2;
		} else {
			have_wp = !!(api.features & UFFDX_FEATURE_WP);
			have_async = !!(api.features & UFFDX_FEATURE_WP_ASYNC);
		}
	}
	if (have_wp || have_async) {
		/* MISSING: uffdx_resolve_wait() needs it */
		ctx = ctx_open(DEFAULT_FEATURES |
			       (have_wp ? UFFDX_FEATURE_WP : 0) |
			       (have_async ? UFFDX_FEATURE_WP_ASYNC : 0), 0);
		if (ctx < 0) {
			printf("# uffdx context with WP, WP_ASYNC: %s\n", strerror(-ctx));
			return 1;
		}
	}
	if (!kernel_only && (!have_wp || !have_async))
		printf("# uffdx: module without%s%s: those figures are the kernel's only\n",
		       have_wp ? "" : " WP", have_async ? "" : " WP_ASYNC");
	probe_kernel();

	CPU_ZERO(&cpus);
	CPU_SET(0, &cpus);
	if (sched_setaffinity(0, sizeof(cpus), &cpus))
		printf("# sched_setaffinity: %s (not pinned)\n", strerror(errno));
	if (pthread_create(&wd, NULL, watchdog, NULL) == 0)
		pthread_detach(wd);
	printf("# write-protect benchmark, pinned to CPU 0, budget %.1f s per size; "
	       "kernel: WP_UNPOPULATED %s, WP_ASYNC + PAGEMAP_SCAN %s\n", budget,
	       kwp_unpop ? "yes" : "no", kasync ? "yes" : "no");
	fflush(stdout);

	if (bench_roundtrip(faults, rounds))
		return 1;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct size_case *c = &cases[i];

		if (run_case(c, K_PROTECT, iters ? iters : c->iters, budget))
			return 1;
		if ((have_async || kasync) &&
		    run_case(c, K_TRACK, iters ? iters : c->iters, budget))
			return 1;
	}
	if (ctx >= 0)
		close(ctx);
	if (pagemap_fd >= 0)
		close(pagemap_fd);
	return kernel_only == 2 || (kernel_only == 0 && (!have_wp || !have_async)) ? 4 : 0;

usage:
	fprintf(stderr, "usage: %s [-n ITERATIONS] [-f FAULTS] [-r ROUNDS] [-t SECONDS] [-k] [-v]\n",
		argv[0]);
	return 1;
}
