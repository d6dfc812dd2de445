// SPDX-License-Identifier: GPL-2.0
/*
 * Device benchmark: uffdx's simulated HMM device (a device fd of
 * UFFDX_IOC_DEVICE_CREATE) against the kernel's lib/test_hmm.c
 * (/dev/hmm_dmirror0), on private anonymous memory; and uffdx's device on
 * region memory, which has no kernel peer (absolute figures only).
 *
 *   bench_device [-n ITERATIONS] [-t SECONDS] [-k] [-v]
 *
 *   -n  measured iterations per size (default: 51 for 1 and 64 pages,
 *       31 for 512 pages)
 *   -t  time budget per size (default 5 s): a size stops early once it has
 *       21 iterations and has used its budget, so that a slow guest (the
 *       debug kernel under TCG) stays within about a minute
 *   -k  test_hmm's side only (no uffdx, no ratios)
 *   -v  also print every sample, in iteration order
 *
 * Sizes: N = 1, 64 and 512 pages, each side on its own areas, MADV_NOHUGEPAGE
 * (order-0 pages on both sides), every page written with a tag first.  The
 * process is pinned to CPU 0; each iteration runs every mechanism once, in
 * an order that rotates, so that drift in the guest (TCG) hits them alike.
 *
 * migrate-roundtrip-<N>: migrate the N pages into device-private memory,
 * then fault them all back by a CPU read of one word of every page (which
 * must see the page's tag), timed together:
 *
 *  test_hmm   one HMM_DMIRROR_MIGRATE_TO_DEV ioctl.  test_hmm migrates with
 *             migrate_vma_setup/pages/finalize, 64 pages per pass, installs
 *             the device pages in its mirror, and then, unconditionally,
 *             "returns the migrated data for verification": it copies the
 *             N pages from device memory into a vmalloc'ed bounce buffer and
 *             copy_to_user()s that to cmd.ptr (N pages).  The read back is
 *             part of that ioctl and cannot be left out.
 *  uffdx      so that both sides do the same work: UFFDX_IOC_DEV_MIGRATE_TO_DEV
 *             (ptr 0: no status bytes; migrate_vma_*, 64 pages per pass, the
 *             device's own translations dropped), then UFFDX_IOC_DEV_READ of
 *             the N pages into an N-page buffer (a device read of the
 *             resident pages: uffdx does not map what it migrated into its
 *             page table, so this read takes device faults, reported as
 *             "readback faults"), two ioctls where test_hmm makes one.
 *  uffdx-no-readback   DEV_MIGRATE_TO_DEV alone, then the touch: uffdx's
 *             migration cost with nothing read back (no peer: test_hmm
 *             always reads back).
 *
 * Both sides fault back through their ->migrate_to_ram, one page per
 * fault (migrate_vma_* of one page, a fresh system page, a copy); uffdx's
 * also queues a MIGRATED event on the device fd, which is drained outside
 * the timing.  The ratio is of the totals; the migration ioctl(s) alone
 * ("to-dev", with the read back) and the faults back ("back") are printed
 * too.  In the warm-up iterations a SNAPSHOT after the migration checks
 * that every page is in the device's memory; at the end uffdx's DEV_STATS
 * must count every migration both ways.
 *
 * device-read-<N>: HMM_DMIRROR_READ against UFFDX_IOC_DEV_READ of the N
 * pages into an N-page buffer, with the pages already mirrored: the warm
 * read (no device fault: both copy from the pages their page table holds,
 * test_hmm through a vmalloc'ed bounce and one copy_to_user(), uffdx
 * through a one-page bounce and a copy_to_user() per page).  Before it,
 * each iteration drops both mirrors by an mprotect(PROT_READ) and back
 * (outside the timing: an invalidation, which both devices' notifiers
 * honour) and times the read that refills them ("device-read-cold-<N>":
 * hmm_range_fault() in 64-page windows on both sides, then the copy).
 * The cold read must take device faults, the warm one none.
 *
 * Region memory (uffdx only, on every kernel, DEVICE_MIGRATE): the same
 * migrate-roundtrip of N pages of a MAP_SHARED region mapping
 * (DEV_MIGRATE_TO_DEV into the device's pool, then the CPU touch migrates
 * each back into a fresh page of the slot, with a MIGRATED event), and
 * the same cold and warm device-read ("uffdx-region").
 *
 * test_hmm is opened at /dev/hmm_dmirror0; if that is missing the program
 * runs "modprobe test_hmm", and if devtmpfs did not make the node, makes it
 * in the current directory from the HMM_DMIRROR major in /proc/devices.  It
 * leaves test_hmm loaded: test_hmm's exit leaks its devices' names and
 * driver-core private data (cdev_device_del() without put_device() of its
 * static devices), which kmemleak on the debug kernel reports once the
 * module, which referenced them, is gone.  Output, medians:
 *
 *   bench <metric>-<N>: <side> [<what>] <ns> ns (N iterations, p10, p90)
 *   ratio migrate-roundtrip-<N> uffdx/test_hmm <ratio> (<uname -r>)
 *   ratio device-read-<N> uffdx/test_hmm <ratio> (<uname -r>)
 *   ratio device-read-cold-<N> uffdx/test_hmm <ratio> (<uname -r>)
 *
 * Not pass/fail: exit 0 unless something errors (1); 4 if uffdx or its
 * DEVICE_MIGRATE feature is unavailable, or if test_hmm is there (the
 * kernel has DEVICE_PRIVATE) but uffdx lacks HMM_MIGRATE or HMM_MIRROR:
 * what can be measured is printed first.  A kernel without test_hmm and
 * without HMM_MIGRATE (a stock Debian kernel) has the region figures only,
 * and exits 0.
 */
#include "helpers.h"

#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/utsname.h>
#include <unistd.h>

/* lib/test_hmm_uapi.h, which no package installs. */
struct bench_hmm_cmd {
	uint64_t addr;
	uint64_t ptr;
	uint64_t npages;
	uint64_t cpages;
	uint64_t faults;
};
#define HMM_DMIRROR_READ		_IOWR('H', 0x00, struct bench_hmm_cmd)
#define HMM_DMIRROR_MIGRATE_TO_DEV	_IOWR('H', 0x02, struct bench_hmm_cmd)
#define HMM_DMIRROR_SNAPSHOT		_IOWR('H', 0x04, struct bench_hmm_cmd)
#define HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL	0x20
#define HMM_PATH	"/dev/hmm_dmirror0"
#define HMM_NODE	"hmm_dmirror0"	/* made here if devtmpfs did not */

#define MIN_ITERS	21
#define WARMUP		3
#define WATCHDOG_S	60
#define TAG_MAGIC	0x6465762d62656e63ull
#define PROT_KIND(b)	((uint8_t)((b) & 0xf0))

struct size_case {
	const char *name;
	int pages;
	int iters;
};

static const struct size_case cases[] = {
	{ "1", 1, 51 },
	{ "64", 64, 51 },
	{ "512", 512, 31 },
};

static int ctx = -1, dev = -1;	/* uffdx context and device */
static int hmm = -1;		/* /dev/hmm_dmirror0 */
static uint64_t feat;		/* negotiated device features */
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
			printf("bench device: no progress for %d s: a device command or fault is stuck\n",
			       WATCHDOG_S);
			fflush(stdout);
			_exit(1);
		}
	}
	return NULL;
}

/* ---- measurement, as bench_move and bench_wp ------------------------------- */

struct series {
	uint64_t *ns;
	int n;
};

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static void raw(const char *metric, const char *side, const char *what,
		const struct series *s)
{
	int i;

	if (!verbose)
		return;
	printf("# raw %s %s%s%s:", metric, side, *what ? " " : "", what);
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

	raw(metric, side, what, s);
	m = median(s);
	printf("bench %s: %s %s%s%llu ns %s\n", metric, side, what, *what ? " " : "",
	       (unsigned long long)m, spread(s));
	return m;
}

static void ratio(const char *metric, uint64_t mine, uint64_t theirs)
{
	printf("ratio %s uffdx/test_hmm %.3f (%s)\n", metric,
	       (double)mine / (double)theirs, uts.release);
}

/* ---- the mechanisms ----------------------------------------------------------- */

enum {
	M_UFFDX,	/* process memory: migrate + DEV_READ + touch */
	M_UFFDX0,	/* process memory: migrate + touch */
	M_HMM,		/* test_hmm: MIGRATE_TO_DEV (reads back) + touch */
	M_REGION,	/* region memory: migrate + touch */
	R_UFFDX,	/* process memory: DEV_READ cold, warm */
	R_HMM,		/* test_hmm: READ cold, warm */
	R_REGION,	/* region memory: DEV_READ cold, warm */
	NSTEPS
};

static const char *const step_names[NSTEPS] = {
	"uffdx", "uffdx-no-readback", "test_hmm", "uffdx-region",
	"uffdx", "test_hmm", "uffdx-region",
};

/* Series of a migrate step, of a read step. */
enum { S_TOTAL, S_TODEV, S_BACK, S_MIGR, NSERIES };
enum { S_COLD, S_WARM };

struct step {
	int on;
	uint8_t *area;		/* N pages: the migrated or read pages */
	uint8_t *buf;		/* N pages: read back, or read into */
	uint8_t *snap;		/* N bytes: SNAPSHOT */
	struct uffdx_region_map map;	/* region steps */
	struct series s[NSERIES];
	uint64_t faults;	/* device faults of the readbacks (M_UFFDX) */
	uint64_t events;	/* MIGRATED events drained */
	int warm_faulted;	/* warm reads that took a device fault */
	int cold_unfaulted;	/* cold reads that took none */
};

static uint64_t tag(long page)
{
	return TAG_MAGIC ^ (uint64_t)page;
}

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

static void *anon(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		return NULL;
	madvise(p, len, MADV_NOHUGEPAGE);
	return p;
}

/* Read and count the device's MIGRATED events (it is O_NONBLOCK). */
static uint64_t drain_events(void)
{
	struct uffdx_dev_event ev[64];
	uint64_t n = 0;
	ssize_t got, i;

	while ((got = uffdx_dev_read_events(dev, ev, 64)) > 0) {
		for (i = 0; i < got; i++)
			n += ev[i].type == UFFDX_DEV_EVENT_MIGRATED;
	}
	return n;
}

static int uffdx_cmd(int (*op)(int, struct uffdx_dev_cmd *), void *addr,
		     void *ptr, int n, struct uffdx_dev_cmd *c)
{
	memset(c, 0, sizeof(*c));
	c->addr = (uintptr_t)addr;
	c->ptr = (uintptr_t)ptr;
	c->npages = (uint64_t)n;
	return op(dev, c);
}

static int hmm_cmd(unsigned long req, void *addr, void *ptr, int n,
		   struct bench_hmm_cmd *c)
{
	memset(c, 0, sizeof(*c));
	c->addr = (uintptr_t)addr;
	c->ptr = (uintptr_t)ptr;
	c->npages = (uint64_t)n;
	return ioctl(hmm, req, c) ? -errno : 0;
}

/* Every page of the area in this device's memory (a warm-up check). */
static int check_resident(const struct size_case *c, int k, struct step *s)
{
	struct uffdx_dev_cmd uc;
	struct bench_hmm_cmd hc;
	int i, ret;

	if (k == M_HMM)
		ret = hmm_cmd(HMM_DMIRROR_SNAPSHOT, s->area, s->snap, c->pages, &hc);
	else
		ret = uffdx_cmd(uffdx_dev_snapshot, s->area, s->snap, c->pages, &uc);
	if (ret) {
		printf("bench migrate-roundtrip-%s: %s: SNAPSHOT: %s\n", c->name,
		       step_names[k], strerror(-ret));
		return ret;
	}
	for (i = 0; i < c->pages; i++) {
		if (PROT_KIND(s->snap[i]) != UFFDX_DEV_PROT_DEV_LOCAL) {
			printf("bench migrate-roundtrip-%s: %s: page %d not in device memory after the migration (snapshot 0x%02x)\n",
			       c->name, step_names[k], i, s->snap[i]);
			return -EIO;
		}
	}
	return 0;
}

static int check_buf(const char *metric, const struct size_case *c, int k,
		     const uint8_t *buf)
{
	long bad = touch(buf, c->pages);

	if (bad < 0)
		return 0;
	printf("bench %s-%s: %s: page %ld read by the device has wrong contents (0x%llx)\n",
	       metric, c->name, step_names[k], bad,
	       (unsigned long long)*(const uint64_t *)(buf + (size_t)bad * ps));
	return -EIO;
}

static int step_migrate(const struct size_case *c, int k, struct step *s, int it,
			int measured)
{
	const char *name = step_names[k];
	struct uffdx_dev_cmd uc;
	struct bench_hmm_cmd hc;
	uint64_t t0, t1, t2, t3, expect = (uint64_t)c->pages;
	long bad;
	int ret;

	t0 = now_ns();
	if (k == M_HMM) {
		ret = hmm_cmd(HMM_DMIRROR_MIGRATE_TO_DEV, s->area, s->buf, c->pages, &hc);
		t1 = t2 = now_ns();
		if (!ret && hc.cpages != expect)
			ret = -EIO;
		uc.cpages = hc.cpages;
	} else {
		ret = uffdx_cmd(uffdx_dev_migrate_to_dev, s->area, NULL, c->pages, &uc);
		t1 = now_ns();
		if (!ret && uc.cpages != expect)
			ret = -EIO;
		t2 = t1;
		if (!ret && k == M_UFFDX) {
			struct uffdx_dev_cmd rc;

			ret = uffdx_cmd(uffdx_dev_read, s->area, s->buf, c->pages, &rc);
			t2 = now_ns();
			if (ret) {
				printf("bench migrate-roundtrip-%s: %s: DEV_READ: %s\n",
				       c->name, name, strerror(-ret));
				return ret;
			}
			if (measured)
				s->faults += rc.faults;
		}
	}
	if (ret) {
		printf("bench migrate-roundtrip-%s: %s: MIGRATE_TO_DEV: %s (%llu of %llu pages)\n",
		       c->name, name, strerror(-ret), (unsigned long long)uc.cpages,
		       (unsigned long long)expect);
		return ret;
	}
	if (it < WARMUP) {
		ret = check_resident(c, k, s);
		if (ret)
			return ret;
		t2 = now_ns();	/* not a measured iteration: only the touch */
	}
	bad = touch(s->area, c->pages);
	t3 = now_ns();
	if (bad >= 0) {
		printf("bench migrate-roundtrip-%s: %s: page %ld has wrong contents after the fault back\n",
		       c->name, name, bad);
		return -EIO;
	}
	if ((k == M_UFFDX || k == M_HMM) && check_buf("migrate-roundtrip", c, k, s->buf))
		return -EIO;
	if (k != M_HMM)
		s->events += drain_events();
	if (measured) {
		s->s[S_TOTAL].ns[s->s[S_TOTAL].n++] = t3 - t0;
		s->s[S_TODEV].ns[s->s[S_TODEV].n++] = t2 - t0;
		s->s[S_BACK].ns[s->s[S_BACK].n++] = t3 - t2;
		s->s[S_MIGR].ns[s->s[S_MIGR].n++] = t1 - t0;
	}
	return 0;
}

static int device_read(int k, struct step *s, int n, uint64_t *faults)
{
	struct uffdx_dev_cmd uc;
	struct bench_hmm_cmd hc;
	int ret;

	if (k == R_HMM) {
		ret = hmm_cmd(HMM_DMIRROR_READ, s->area, s->buf, n, &hc);
		*faults = hc.faults;
		return ret ? ret : hc.cpages == (uint64_t)n ? 0 : -EIO;
	}
	ret = uffdx_cmd(uffdx_dev_read, s->area, s->buf, n, &uc);
	*faults = uc.faults;
	return ret ? ret : uc.cpages == (uint64_t)n ? 0 : -EIO;
}

static int step_read(const struct size_case *c, int k, struct step *s, int it,
		     int measured)
{
	size_t len = (size_t)c->pages * ps;
	uint64_t t0, t1, t2, fc = 0, fw = 0;
	int ret;

	(void)it;
	/* drop both mirrors of the area: an invalidation, outside the timing */
	if (mprotect(s->area, len, PROT_READ) ||
	    mprotect(s->area, len, PROT_READ | PROT_WRITE)) {
		printf("bench device-read-%s: %s: mprotect: %s\n", c->name,
		       step_names[k], strerror(errno));
		return -EIO;
	}
	memset(s->buf, 0, len);
	t0 = now_ns();
	ret = device_read(k, s, c->pages, &fc);
	t1 = now_ns();
	if (!ret)
		ret = check_buf("device-read", c, k, s->buf);
	if (!ret) {
		memset(s->buf, 0, len);
		t1 = now_ns();
		ret = device_read(k, s, c->pages, &fw);
		t2 = now_ns();
	}
	if (!ret)
		ret = check_buf("device-read", c, k, s->buf);
	if (ret) {
		printf("bench device-read-%s: %s: read: %s\n", c->name, step_names[k],
		       strerror(-ret));
		return ret;
	}
	if (measured) {
		s->cold_unfaulted += !fc;
		s->warm_faulted += !!fw;
		s->s[S_COLD].ns[s->s[S_COLD].n++] = t1 - t0;
		s->s[S_WARM].ns[s->s[S_WARM].n++] = t2 - t1;
	}
	return 0;
}

static void step_free(struct step *s, size_t len)
{
	int i;

	if (s->map.fd >= 0)
		uffdx_region_unmap(&s->map);
	else if (s->area)
		munmap(s->area, len);
	if (s->buf)
		munmap(s->buf, len);
	free(s->snap);
	for (i = 0; i < NSERIES; i++)
		free(s->s[i].ns);
}

/* ---- one size ------------------------------------------------------------------- */

static int run_case(const struct size_case *c, int iters, double budget_s)
{
	struct step st[NSTEPS];
	size_t len = (size_t)c->pages * ps;
	uint64_t start, budget = (uint64_t)(budget_s * 1e9);
	struct uffdx_dev_stats st0, st1;
	int have_region = !!(feat & UFFDX_FEATURE_DEVICE_MIGRATE);
	int hmm_migr = !!(feat & UFFDX_FEATURE_HMM_MIGRATE);
	int hmm_mirror = !!(feat & UFFDX_FEATURE_HMM_MIRROR);
	int ret = 0, i, k, it, j, measured = 0;
	char metric[64];

	memset(st, 0, sizeof(st));
	st[M_UFFDX].on = hmm_migr && hmm_mirror;
	st[M_UFFDX0].on = hmm_migr;
	st[M_HMM].on = hmm >= 0;
	st[M_REGION].on = have_region;
	st[R_UFFDX].on = hmm_mirror;
	st[R_HMM].on = hmm >= 0;
	st[R_REGION].on = dev >= 0;
	memset(&st0, 0, sizeof(st0));
	memset(&st1, 0, sizeof(st1));

	for (k = 0; k < NSTEPS; k++) {
		st[k].map.fd = -1;
		if (!st[k].on)
			continue;
		for (j = 0; j < NSERIES; j++) {
			st[k].s[j].ns = calloc(iters, sizeof(uint64_t));
			if (!st[k].s[j].ns) {
				ret = -ENOMEM;
				goto out;
			}
		}
		st[k].snap = calloc(c->pages, 1);
		st[k].buf = anon(len);
		if (!st[k].snap || !st[k].buf) {
			ret = -ENOMEM;
			goto out;
		}
		memset(st[k].buf, 0, len);
		if (k == M_REGION || k == R_REGION) {
			ret = uffdx_region_map(ctx, len, 0, &st[k].map);
			if (ret) {
				st[k].map.fd = -1;
				printf("bench device-%s: region: %s\n", c->name, strerror(-ret));
				goto out;
			}
			st[k].area = st[k].map.addr;
		} else {
			st[k].area = anon(len);
			if (!st[k].area) {
				ret = -ENOMEM;
				goto out;
			}
		}
		populate(st[k].area, c->pages);
	}
	/* mirror the read areas: the first read faults, later ones are warm */
	for (k = R_UFFDX; k <= R_REGION; k++) {
		uint64_t f;

		if (st[k].on && (ret = device_read(k, &st[k], c->pages, &f))) {
			printf("bench device-read-%s: %s: first read: %s\n", c->name,
			       step_names[k], strerror(-ret));
			goto out;
		}
	}
	if (dev >= 0) {
		drain_events();
		uffdx_dev_stats(dev, &st0);
	}

	start = now_ns();
	for (it = 0; measured < iters; it++) {
		int m = it >= WARMUP;

		if (m && measured >= MIN_ITERS && now_ns() - start > budget)
			break;
		for (i = 0; i < NSTEPS; i++) {
			k = (it + i) % NSTEPS;
			if (!st[k].on)
				continue;
			ret = k < R_UFFDX ? step_migrate(c, k, &st[k], it, m) :
					    step_read(c, k, &st[k], it, m);
			if (ret)
				goto out;
			__atomic_add_fetch(&progress, 1, __ATOMIC_RELAXED);
		}
		measured += m;
	}

	/* uffdx's counters: every migration, both ways, and its events */
	if (dev >= 0) {
		uint64_t want = 0;

		uffdx_dev_stats(dev, &st1);
		for (k = M_UFFDX; k <= M_REGION; k++)
			if (k != M_HMM && st[k].on)
				want += (uint64_t)it * c->pages;
		if (st1.migrated_to_dev - st0.migrated_to_dev != want ||
		    st1.migrated_to_sys - st0.migrated_to_sys != want) {
			printf("bench migrate-roundtrip-%s: uffdx counted %llu pages to the device, %llu back, of %llu\n",
			       c->name,
			       (unsigned long long)(st1.migrated_to_dev - st0.migrated_to_dev),
			       (unsigned long long)(st1.migrated_to_sys - st0.migrated_to_sys),
			       (unsigned long long)want);
			ret = -EIO;
			goto out;
		}
		for (k = M_UFFDX; k <= M_REGION; k++) {
			if (k == M_HMM || !st[k].on || st[k].events == (uint64_t)it * c->pages)
				continue;
			printf("# migrate-roundtrip-%s: %s: %llu MIGRATED events for %llu faults back (lost %llu)\n",
			       c->name, step_names[k], (unsigned long long)st[k].events,
			       (unsigned long long)it * c->pages,
			       (unsigned long long)(st1.events_lost - st0.events_lost));
		}
	}

	snprintf(metric, sizeof(metric), "migrate-roundtrip-%s", c->name);
	{
		uint64_t mu = 0, mt = 0;

		for (k = M_UFFDX; k <= M_REGION; k++) {
			uint64_t tot, todev, back;

			if (!st[k].on)
				continue;
			raw(metric, step_names[k], "to-dev", &st[k].s[S_TODEV]);
			raw(metric, step_names[k], "back", &st[k].s[S_BACK]);
			todev = median(&st[k].s[S_TODEV]);
			back = median(&st[k].s[S_BACK]);
			tot = report(metric, step_names[k], "", &st[k].s[S_TOTAL]);
			if (k == M_UFFDX)
				printf("bench %s: %s to-dev %llu ns (migrate %llu ns, readback %llu device faults per round), back %llu ns\n",
				       metric, step_names[k], (unsigned long long)todev,
				       (unsigned long long)median(&st[k].s[S_MIGR]),
				       (unsigned long long)(st[k].faults / (uint64_t)st[k].s[S_TOTAL].n),
				       (unsigned long long)back);
			else
				printf("bench %s: %s to-dev %llu ns%s, back %llu ns\n", metric,
				       step_names[k], (unsigned long long)todev,
				       k == M_HMM ? " (with its readback)" : "",
				       (unsigned long long)back);
			if (k == M_UFFDX)
				mu = tot;
			if (k == M_HMM)
				mt = tot;
		}
		if (mu && mt)
			ratio(metric, mu, mt);
		else if (!kernel_only && (st[M_UFFDX].on || st[M_UFFDX0].on))
			printf("bench %s: test_hmm not available: no ratio (%s)\n", metric,
			       uts.release);
	}
	{
		uint64_t cold[NSTEPS] = { 0 }, warm[NSTEPS] = { 0 };
		char cmetric[64];

		snprintf(metric, sizeof(metric), "device-read-%s", c->name);
		snprintf(cmetric, sizeof(cmetric), "device-read-cold-%s", c->name);
		for (k = R_UFFDX; k <= R_REGION; k++) {
			if (!st[k].on)
				continue;
			warm[k] = report(metric, step_names[k], "", &st[k].s[S_WARM]);
			cold[k] = report(cmetric, step_names[k], "", &st[k].s[S_COLD]);
			if (st[k].warm_faulted || st[k].cold_unfaulted)
				printf("# %s: %s: %d warm reads took a device fault, %d cold reads none\n",
				       metric, step_names[k], st[k].warm_faulted,
				       st[k].cold_unfaulted);
		}
		if (st[R_UFFDX].on && st[R_HMM].on) {
			ratio(metric, warm[R_UFFDX], warm[R_HMM]);
			ratio(cmetric, cold[R_UFFDX], cold[R_HMM]);
		}
	}
	ret = 0;
out:
	fflush(stdout);
	for (k = 0; k < NSTEPS; k++)
		step_free(&st[k], len);
	if (dev >= 0)
		drain_events();
	return ret;
}

/* ---- test_hmm ------------------------------------------------------------------- */

/* The HMM_DMIRROR major from /proc/devices, or -1. */
static int hmm_major(void)
{
	char line[128], name[64];
	int major, ret = -1, chr = 0;
	FILE *f = fopen("/proc/devices", "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		if (!strncmp(line, "Character devices:", 18))
			chr = 1;
		else if (!strncmp(line, "Block devices:", 14))
			chr = 0;
		else if (chr && sscanf(line, "%d %63s", &major, name) == 2 &&
			 !strcmp(name, "HMM_DMIRROR"))
			ret = major;
	}
	fclose(f);
	return ret;
}

/* Open test_hmm's first device, loading the module if need be. */
static int hmm_open(int *loaded)
{
	int fd, major;

	*loaded = 0;
	fd = open(HMM_PATH, O_RDWR | O_CLOEXEC);
	if (fd >= 0 || errno != ENOENT)
		return fd >= 0 ? fd : -errno;
	if (hmm_major() < 0) {
		if (system("modprobe test_hmm >/dev/null 2>&1") != 0)
			return -ENOENT;
		*loaded = 1;
	}
	fd = open(HMM_PATH, O_RDWR | O_CLOEXEC);
	if (fd >= 0 || errno != ENOENT)
		return fd >= 0 ? fd : -errno;
	/* no devtmpfs node: make one here */
	major = hmm_major();
	if (major < 0)
		return -ENODEV;
	unlink(HMM_NODE);
	if (mknod(HMM_NODE, S_IFCHR | 0600, makedev(major, 0)))
		return -errno;
	fd = open(HMM_NODE, O_RDWR | O_CLOEXEC);
	unlink(HMM_NODE);
	return fd >= 0 ? fd : -errno;
}

int main(int argc, char **argv)
{
	double budget = 5.0;
	int opt, iters = 0, skipped = 0, hmm_loaded = 0, ret = 0;
	unsigned int i;
	struct uffdx_api api;
	cpu_set_t cpus;
	pthread_t wd;

	while ((opt = getopt(argc, argv, "n:t:kv")) != -1) {
		if (opt == 'k')
			kernel_only = 1;
		else if (opt == 'v')
			verbose = 1;
		else if (opt == 'n')
			iters = atoi(optarg);
		else if (opt == 't')
			budget = atof(optarg);
		else
			goto usage;
	}
	if (optind < argc || iters < 0 || budget <= 0)
		goto usage;
	uname(&uts);

	if (!kernel_only && !uffdx_present()) {
		printf("# uffdx: " UFFDX_DEV " not present (module not loaded): test_hmm side only\n");
		kernel_only = 2;
	}
	if (!kernel_only) {
		ret = uffdx_query(&api);
		if (ret) {
			printf("# uffdx: %s: test_hmm side only\n", strerror(-ret));
			kernel_only = 2;
		}
	}
	if (!kernel_only) {
		feat = api.features & (UFFDX_FEATURE_DEVICE_MIGRATE | UFFDX_FEATURE_HMM_MIRROR |
				       UFFDX_FEATURE_HMM_MIGRATE);
		if (feat) {
			ctx = ctx_open(DEFAULT_FEATURES | feat, 0);
			if (ctx < 0) {
				printf("# uffdx context with the device features: %s\n",
				       strerror(-ctx));
				return 1;
			}
			dev = uffdx_device_create(ctx, 0);
			if (dev < 0) {
				printf("# uffdx DEVICE_CREATE: %s\n", strerror(-dev));
				return 1;
			}
			if (fcntl(dev, F_SETFL, fcntl(dev, F_GETFL) | O_NONBLOCK)) {
				printf("# uffdx device: O_NONBLOCK: %s\n", strerror(errno));
				return 1;
			}
		}
		if (!(feat & UFFDX_FEATURE_DEVICE_MIGRATE)) {
			printf("# uffdx: module without DEVICE_MIGRATE: no region migration figures\n");
			skipped = 1;
		}
	}

	hmm = hmm_open(&hmm_loaded);
	if (hmm < 0) {
		printf("# test_hmm: " HMM_PATH ": %s: no test_hmm figures, no ratios (%s)\n",
		       strerror(-hmm), uts.release);
		skipped |= kernel_only;	/* nothing at all to measure */
	} else if (!kernel_only &&
		   (feat & (UFFDX_FEATURE_HMM_MIGRATE | UFFDX_FEATURE_HMM_MIRROR)) !=
		   (UFFDX_FEATURE_HMM_MIGRATE | UFFDX_FEATURE_HMM_MIRROR)) {
		printf("# uffdx: module without%s%s although the kernel has test_hmm: no %s ratios\n",
		       feat & UFFDX_FEATURE_HMM_MIGRATE ? "" : " HMM_MIGRATE",
		       feat & UFFDX_FEATURE_HMM_MIRROR ? "" : " HMM_MIRROR",
		       feat & UFFDX_FEATURE_HMM_MIRROR ? "migrate" : "");
		skipped = 1;
	}
	if (!kernel_only && !(feat & UFFDX_FEATURE_HMM_MIGRATE))
		printf("# uffdx: no HMM_MIGRATE (kernel without DEVICE_PRIVATE?): process memory is not migrated\n");

	CPU_ZERO(&cpus);
	CPU_SET(0, &cpus);
	if (sched_setaffinity(0, sizeof(cpus), &cpus))
		printf("# sched_setaffinity: %s (not pinned)\n", strerror(errno));
	if (pthread_create(&wd, NULL, watchdog, NULL) == 0)
		pthread_detach(wd);
	printf("# device benchmark: uffdx device (features 0x%llx) vs test_hmm (%s), pinned to CPU 0, budget %.1f s per size\n",
	       (unsigned long long)feat, hmm >= 0 ? "yes" : "no", budget);
	fflush(stdout);

	ret = 0;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct size_case *c = &cases[i];

		if (run_case(c, iters ? iters : c->iters, budget)) {
			ret = 1;
			break;
		}
	}
	if (dev >= 0)
		close(dev);
	if (ctx >= 0)
		close(ctx);
	if (hmm >= 0)
		close(hmm);
	if (hmm_loaded)	/* left loaded: see the header */
		printf("# test_hmm: loaded by this program, left loaded\n");
	if (ret)
		return ret;
	return kernel_only == 2 || skipped ? 4 : 0;

usage:
	fprintf(stderr, "usage: %s [-n ITERATIONS] [-t SECONDS] [-k] [-v]\n", argv[0]);
	return 1;
}
