// SPDX-License-Identifier: GPL-2.0
/*
 * Simulated-device stress: CPU threads of two processes and device threads
 * on the same region pages (docs/design.md section 7).
 *
 *   stress_device [-s SECONDS | -n ROUNDS] [-c CPU_THREADS] [-d DEV_THREADS]
 *
 * One region, mapped twice by this process (views 0 and 1), then by a
 * forked child through its inherited views and a mapping of its own made
 * from the region fd.  One device, made by this process before the fork.
 * The region's pages:
 *
 *   counters  NCOUNT pages; the 64-bit word 0 of each is a counter, the
 *             rest a fixed pattern;
 *   dev data  one page per device thread, rewritten whole by its owner
 *             with DEV_WRITE (and now and then DISCARDed and re-filled);
 *   cpu data  one page per CPU thread (of either process), rewritten whole
 *             by its owner with CPU stores.
 *
 * A data page's writer bumps its sequence count (shared memory) to odd,
 * writes generation g (pattern of page and g), and bumps it to even: a
 * reader that sees the same even count before and after its copy must
 * have read generation g exactly.
 *
 *  - CPU threads (-c, default 2, in this process and as many in the child)
 *    pick a random view and: atomically increment a counter (its old
 *    value never below what the thread saw last), read one (never below;
 *    the pattern intact), read a data page under its count (exact),
 *    rewrite their own data page, read it back (exact).  The child's
 *    threads also issue device commands now and then: each must fail
 *    with EPERM (only DEV_STATS may be read there).
 *  - Device threads (-d, default 3) pick a random view of this process
 *    and loop over DEV_EXCLUSIVE (1-3 pages), DEV_ATOMIC fetch-add on a
 *    counter (its old value strictly above the thread's previous one on
 *    that page), DEV_MIGRATE_TO_DEV and _TO_SYS (1-3 pages, status bytes
 *    0 or 1, cpages their sum), DEV_READ (a counter page's pattern, a
 *    data page exact), DEV_WRITE of their own data page, DEV_SNAPSHOT of
 *    the region (no ERROR, no DEV_REMOTE: there is one device),
 *    DEV_RELEASE (1-3 pages), DEV_CHECK_EXCLUSIVE, and one time in 64 a
 *    DISCARD of their own data page (then a DEV_READ sees zeroes), and a
 *    COPY of the next generation into the hole (EEXIST when a touch or a
 *    migration filled it meanwhile: then DEV_WRITE).
 *  - An event thread reads the device's events: REVOKED and MIGRATED for
 *    a page of a view of this process, with the toucher's pid (this
 *    process, or the child, flagged REMOTE), DROPPED only for a dev data
 *    page.
 *
 * The errnos each command may fail with here (anything else fails the
 * run): DEV_READ, DEV_WRITE, DEV_SNAPSHOT: EBUSY (the translation could
 * not be made stable against invalidations: retried, counted);
 * DEV_CHECK_EXCLUSIVE: EPERM (not held); COPY: EEXIST; the child's device
 * commands: EPERM only; DEV_EXCLUSIVE, DEV_ATOMIC, DEV_MIGRATE_TO_DEV,
 * DEV_MIGRATE_TO_SYS, DEV_RELEASE, DEV_STATS, DISCARD: none (one device
 * only, so no EBUSY; no armed holes, protection or PROT_NONE, so no
 * EFAULT; a small region, so no ENOMEM).
 *
 * At the end (every thread stopped, the child gone): each counter equals
 * the increments counted by every CPU thread of both processes plus the
 * device's atomics, read by the CPU and by DEV_READ; every data page
 * holds its last generation; the events add up to the device's counters
 * (revocations, migrations back by CPU touch = migrated_to_sys minus what
 * MIGRATE_TO_SYS moved, unless events were lost, which are counted);
 * migrated_to_dev equals what the commands' status bytes reported, and
 * pool_used the pages a snapshot shows DEV_LOCAL (two pages are migrated
 * to the device first, so that it is not 0 by chance).
 *
 * Liveness: the run is rounds (with -s, until the time is up; with -n,
 * that many; default 4 s); each round waits until every thread of both
 * processes has made progress since the last, and a wait of STUCK_MS
 * fails the run (a hang).  No throughput is asserted.  Prints KTAP, one
 * result: "stress_device".
 */
#include "helpers.h"

#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kselftest.h"

#define STUCK_MS	30000	/* a wait this long has hung */
#define ROUND_MS	100	/* at least this between progress checks */
#define DEFAULT_SECS	4
#define NCOUNT		8
#define MAX_CPU		8
#define MAX_DEV		8
#define MAX_PAGES	(NCOUNT + MAX_DEV + 2 * MAX_CPU)
#define NVIEWS		2
#define CHILD_EPERM_EVERY 128

#define PG(map, i)	((uint8_t *)(map) + (size_t)(i) * ps)
#define DEV_FEATURES	(UFFDX_FEATURE_DEVICE_EXCLUSIVE | UFFDX_FEATURE_DEVICE_MIGRATE)

static int seconds, rounds, ncpu = 2, ndev = 3;

/* Page roles. */
static int npages;
#define DEVDATA(t)	(NCOUNT + (t))
#define CPUDATA(k)	(NCOUNT + ndev + (k))	/* k < 2 * ncpu: parent's, then child's */

static inline int is_counter(int pg) { return pg < NCOUNT; }
static inline int is_devdata(int pg) { return pg >= NCOUNT && pg < NCOUNT + ndev; }

/* Commands and their outcomes. */
enum { OP_EXCL, OP_ATOMIC, OP_TO_DEV, OP_TO_SYS, OP_READ, OP_WRITE, OP_SNAP, OP_RELEASE,
       OP_CHECK, OP_DISCARD, OP_COPY, OP_STATS, OP_CHILD, NOPS };
static const char *const op_name[NOPS] = {
	"EXCLUSIVE", "ATOMIC", "MIGRATE_TO_DEV", "MIGRATE_TO_SYS", "DEV_READ", "DEV_WRITE",
	"SNAPSHOT", "RELEASE", "CHECK_EXCLUSIVE", "DISCARD", "COPY", "DEV_STATS",
	"child's commands",
};
#define E(x)	(1ull << (x))
static const uint64_t op_allowed[NOPS] = {
	[OP_READ] = E(EBUSY), [OP_WRITE] = E(EBUSY), [OP_SNAP] = E(EBUSY),
	[OP_CHECK] = E(EPERM), [OP_COPY] = E(EEXIST), [OP_CHILD] = E(EPERM),
};
#define NERR	64	/* errnos counted; larger ones are never allowed */

/* Shared with the child (MAP_SHARED | MAP_ANONYMOUS). */
struct shared {
	volatile int stop;
	int errors;
	char first_err[512];
	uint64_t seq[MAX_PAGES];		/* data pages: odd while written */
	uint64_t cpu_progress[2 * MAX_CPU];	/* parent's threads, then child's */
	uint64_t cpu_inc[2 * MAX_CPU][NCOUNT];
	unsigned long n_ok[NOPS], n_err[NOPS][NERR];
	unsigned long cpu_incs, cpu_reads, cpu_data_reads, cpu_data_retries, cpu_writes;
	volatile int child_ready;
};
static struct shared *sh;

static int ctx, dev;
static pid_t parent_pid, child_pid;
static struct uffdx_region_map reg;
static uint8_t *view[NVIEWS];
static uint8_t *cref;		/* NCOUNT pages: the counter pages' patterns */

static unsigned long dev_incs[MAX_DEV][NCOUNT];
static uint64_t dev_progress[MAX_DEV];
static unsigned long to_dev_moved, to_sys_moved, discards, copies_eexist, zero_checks;
static unsigned long ev_revoked, ev_migrated, ev_dropped, ev_remote;
static volatile int stop_events;

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fail(const char *fmt, ...)
{
	va_list ap;

	if (__atomic_fetch_add(&sh->errors, 1, __ATOMIC_SEQ_CST) == 0) {
		va_start(ap, fmt);
		vsnprintf(sh->first_err, sizeof(sh->first_err), fmt, ap);
		va_end(ap);
	}
	__atomic_store_n(&sh->stop, 1, __ATOMIC_SEQ_CST);
}

/* Give up after the fork: stop the child first. */
static void die(const char *what)
{
	int st;

	__atomic_store_n(&sh->stop, 1, __ATOMIC_SEQ_CST);
	if (child_pid > 0)
		kill_child(child_pid, &st);
	ksft_exit_fail_msg("%s\n", what);
}

static int stopped(void)
{
	return __atomic_load_n(&sh->stop, __ATOMIC_RELAXED);
}

static inline void stat_add(unsigned long *s, unsigned long n)
{
	__atomic_add_fetch(s, n, __ATOMIC_RELAXED);
}

static uint64_t rng(uint64_t *s)
{
	uint64_t x = *s += 0x9e3779b97f4a7c15ull;

	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* Count a command's outcome; 0 if it is one the semantics allow here. */
static int outcome(int op, int ret, const char *what, int pg)
{
	int e = -ret;

	if (!ret) {
		stat_add(&sh->n_ok[op], 1);
		return 0;
	}
	if (e > 0 && e < NERR)
		stat_add(&sh->n_err[op][e], 1);
	if (e > 0 && e < NERR && (op_allowed[op] & E(e)))
		return 0;
	fail("%s%s%s (page %d): %s", op_name[op], what ? " " : "", what ? what : "", pg,
	     strerror(e));
	return -1;
}

static uint64_t data_seed(int pg, uint64_t gen)
{
	return ((uint64_t)pg << 40) ^ (gen * 0x10001ull) ^ 0xd47a;
}

static uint64_t counter_seed(int pg)
{
	return 0xc0417e5ull + (uint64_t)pg;
}

/* Which page of a view of this process addr is; -1 if none. */
static long view_page(uint64_t addr, int *v)
{
	int i;

	for (i = 0; i < NVIEWS; i++)
		if (addr >= (uintptr_t)view[i] && addr < (uintptr_t)view[i] + reg.len) {
			if (v)
				*v = i;
			return (long)((addr - (uintptr_t)view[i]) / ps);
		}
	return -1;
}

static void cmd_init(struct uffdx_dev_cmd *c, const void *addr, void *ptr, uint64_t n)
{
	memset(c, 0, sizeof(*c));
	c->addr = (uintptr_t)addr;
	c->ptr = (uintptr_t)ptr;
	c->npages = n;
}

/* A device command, again while EBUSY (READ, WRITE, SNAPSHOT), bounded. */
static int dev_run(int (*fn)(int, struct uffdx_dev_cmd *), struct uffdx_dev_cmd *c, int op)
{
	uint64_t end = 0;
	struct uffdx_dev_cmd in = *c;
	int ret;

	for (;;) {
		*c = in;
		ret = fn(dev, c);
		if (ret != -EBUSY || !(op_allowed[op] & E(EBUSY)))
			return ret;
		stat_add(&sh->n_err[op][EBUSY], 1);
		if (!end)
			end = now_ns() + (uint64_t)STUCK_MS * 1000000ull;
		else if (now_ns() > end)
			return -ETIMEDOUT;
		if (stopped())
			return -EBUSY;
	}
}

/* ---- data pages: the seqlock ---------------------------------------------------- */

static uint64_t seq_begin_write(int pg)
{
	uint64_t s = __atomic_load_n(&sh->seq[pg], __ATOMIC_RELAXED);

	__atomic_store_n(&sh->seq[pg], s + 1, __ATOMIC_SEQ_CST);
	return s / 2 + 1;	/* the generation being written */
}

static void seq_end_write(int pg)
{
	__atomic_store_n(&sh->seq[pg], __atomic_load_n(&sh->seq[pg], __ATOMIC_RELAXED) + 1,
			 __ATOMIC_RELEASE);
}

/*
 * Copy data page pg with copy() under its count: 1 and the copy checked
 * if the count held still (even, unchanged), 0 if a writer ran.
 */
static int seq_read(int pg, int (*copy)(int pg, void *buf, void *arg), void *arg, void *buf,
		    const char *who)
{
	uint64_t s1, s2;
	long bad;

	s1 = __atomic_load_n(&sh->seq[pg], __ATOMIC_ACQUIRE);
	if (s1 & 1)
		return 0;
	if (copy(pg, buf, arg))
		return 0;
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	s2 = __atomic_load_n(&sh->seq[pg], __ATOMIC_RELAXED);
	if (s1 != s2)
		return 0;
	bad = check_pattern(buf, ps, data_seed(pg, s1 / 2));
	if (bad >= 0)
		fail("%s: data page %d, generation %llu: byte %ld differs", who, pg,
		     (unsigned long long)(s1 / 2), bad);
	return 1;
}

/* ---- CPU threads (both processes) ------------------------------------------------ */

struct cpu_worker {
	pthread_t th;
	int idx;		/* 0 .. 2 * ncpu - 1: its data page and counters */
	uint8_t *views[NVIEWS + 1];
	int nviews;
	uint64_t seed;
	uint64_t last[NCOUNT];	/* the largest counter value seen */
	uint8_t *buf;
};

static int cpu_copy(int pg, void *buf, void *arg)
{
	memcpy(buf, PG(arg, pg), ps);
	return 0;
}

/* A device command from the child: EPERM and nothing else. */
static void child_expect_eperm(const char *what, int ret, int pg)
{
	if (ret == -EPERM) {
		outcome(OP_CHILD, ret, what, pg);
		return;
	}
	stat_add(&sh->n_ok[OP_CHILD], !ret);
	fail("the child's %s (page %d): %s, not EPERM", what, pg,
	     ret ? strerror(-ret) : "it worked");
}

/* The child's device commands: EPERM, whatever they name. */
static void child_commands(struct cpu_worker *w)
{
	struct uffdx_dev_atomic a;
	struct uffdx_dev_stats st;
	struct uffdx_dev_cmd c;
	uint8_t b[MAX_PAGES];
	int pg = (int)(rng(&w->seed) % NCOUNT);

	memset(&a, 0, sizeof(a));
	a.op = UFFDX_DEV_ATOMIC_FETCH_ADD;
	a.addr = (uintptr_t)PG(view[0], pg);
	a.value = 1;
	child_expect_eperm("DEV_ATOMIC", uffdx_dev_atomic(dev, &a), pg);
	cmd_init(&c, PG(view[0], pg), NULL, 1);
	child_expect_eperm("DEV_EXCLUSIVE", uffdx_dev_exclusive(dev, &c), pg);
	cmd_init(&c, PG(view[0], pg), NULL, 1);
	child_expect_eperm("DEV_RELEASE", uffdx_dev_release(dev, &c), pg);
	cmd_init(&c, view[0], b, (uint64_t)npages);
	child_expect_eperm("DEV_SNAPSHOT", uffdx_dev_snapshot(dev, &c), 0);
	cmd_init(&c, PG(view[0], pg), NULL, 1);
	child_expect_eperm("DEV_MIGRATE_TO_DEV", uffdx_dev_migrate_to_dev(dev, &c), pg);
	cmd_init(&c, PG(view[0], pg), b, 1);
	child_expect_eperm("DEV_READ", uffdx_dev_read(dev, &c), pg);
	/* the counters may be read by any holder of the fd */
	memset(&st, 0, sizeof(st));
	outcome(OP_STATS, uffdx_dev_stats(dev, &st), "in the child", 0);
}

static void *cpu_thread(void *p)
{
	struct cpu_worker *w = p;
	int mine = CPUDATA(w->idx);
	uint64_t n = 0;

	while (!stopped()) {
		uint64_t r = rng(&w->seed);
		uint8_t *v = w->views[(r >> 8) % (uint64_t)w->nviews];
		int op = (int)(r % 16), pg = (int)((r >> 16) % NCOUNT);

		if (op < 7) {
			/* an atomic increment: the old value is no older than seen */
			uint64_t old = __atomic_fetch_add((uint64_t *)PG(v, pg), 1,
							  __ATOMIC_SEQ_CST);

			if (old < w->last[pg])
				fail("cpu %d: counter %d went back: %llu after %llu", w->idx, pg,
				     (unsigned long long)old, (unsigned long long)w->last[pg]);
			w->last[pg] = old + 1;
			sh->cpu_inc[w->idx][pg]++;
			stat_add(&sh->cpu_incs, 1);
		} else if (op < 9) {
			uint64_t val = __atomic_load_n((uint64_t *)PG(v, pg), __ATOMIC_SEQ_CST);

			if (val < w->last[pg])
				fail("cpu %d: counter %d read %llu after %llu", w->idx, pg,
				     (unsigned long long)val, (unsigned long long)w->last[pg]);
			w->last[pg] = val;
			if (memcmp(PG(v, pg) + 8, PG(cref, pg) + 8, ps - 8))
				fail("cpu %d: counter page %d: its pattern changed", w->idx, pg);
			stat_add(&sh->cpu_reads, 1);
		} else if (op < 12) {
			/* somebody else's data page, under its count */
			int k = (int)((r >> 24) % (uint64_t)(ndev + 2 * ncpu));
			int dpg = NCOUNT + k;

			if (dpg == mine)
				dpg = DEVDATA(0);
			if (seq_read(dpg, cpu_copy, v, w->buf, w->idx < ncpu ? "cpu" : "child cpu"))
				stat_add(&sh->cpu_data_reads, 1);
			else
				stat_add(&sh->cpu_data_retries, 1);
		} else if (op < 14) {
			uint64_t gen = seq_begin_write(mine);

			fill_pattern(PG(v, mine), ps, data_seed(mine, gen));
			seq_end_write(mine);
			stat_add(&sh->cpu_writes, 1);
		} else {
			/* its own page: nobody else writes it */
			uint64_t gen = __atomic_load_n(&sh->seq[mine], __ATOMIC_RELAXED) / 2;
			long bad = check_pattern(PG(v, mine), ps, data_seed(mine, gen));

			if (bad >= 0)
				fail("cpu %d: own data page %d, generation %llu: byte %ld differs",
				     w->idx, mine, (unsigned long long)gen, bad);
		}
		if (w->idx >= ncpu && ++n % CHILD_EPERM_EVERY == 0)
			child_commands(w);
		__atomic_store_n(&sh->cpu_progress[w->idx], sh->cpu_progress[w->idx] + 1,
				 __ATOMIC_RELAXED);
	}
	return NULL;
}

static int start_cpu(struct cpu_worker *w, int idx, uint8_t *extra)
{
	int i;

	memset(w, 0, sizeof(*w));
	w->idx = idx;
	w->seed = 0x51ed270b27ull * (uint64_t)(idx + 1);
	for (i = 0; i < NVIEWS; i++)
		w->views[i] = view[i];
	w->nviews = NVIEWS;
	if (extra)
		w->views[w->nviews++] = extra;
	w->buf = malloc(ps);
	if (!w->buf)
		return -1;
	return pthread_create(&w->th, NULL, cpu_thread, w) ? -1 : 0;
}

/* The child: its own mapping of the region, ncpu CPU threads, until stop. */
static void child_main(void)
{
	struct cpu_worker w[MAX_CPU];
	uint8_t *mine;
	int i;

	sig_install();
	mine = mmap(NULL, reg.len, PROT_READ | PROT_WRITE, MAP_SHARED, reg.fd, 0);
	if (mine == MAP_FAILED) {
		fail("child: mmap of the region fd: %s", strerror(errno));
		_exit(1);
	}
	for (i = 0; i < ncpu; i++)
		if (start_cpu(&w[i], ncpu + i, mine)) {
			fail("child: pthread_create");
			_exit(1);
		}
	__atomic_store_n(&sh->child_ready, 1, __ATOMIC_SEQ_CST);
	for (i = 0; i < ncpu; i++)
		pthread_join(w[i].th, NULL);
	munmap(mine, reg.len);
	_exit(0);
}

/* ---- device threads ------------------------------------------------------------ */

struct dev_worker {
	pthread_t th;
	int idx;
	uint64_t seed;
	uint64_t last_old[NCOUNT];	/* previous DEV_ATOMIC's old value + 1 */
	uint8_t *buf, *pat;
};

static int dev_copy(int pg, void *buf, void *arg)
{
	struct uffdx_dev_cmd c;
	int ret;

	cmd_init(&c, PG(arg, pg), buf, 1);
	ret = dev_run(uffdx_dev_read, &c, OP_READ);
	if (outcome(OP_READ, ret, NULL, pg))
		return -1;
	return ret ? -1 : 0;
}

static int dev_write_page(uint8_t *v, int pg, void *buf)
{
	struct uffdx_dev_cmd c;

	cmd_init(&c, PG(v, pg), buf, 1);
	return outcome(OP_WRITE, dev_run(uffdx_dev_write, &c, OP_WRITE), NULL, pg);
}

/* A range of 1-3 pages from a random page, inside the region. */
static int dev_range(struct dev_worker *w, int *first)
{
	int n = 1 + (int)(rng(&w->seed) % 3);

	*first = (int)(rng(&w->seed) % (uint64_t)npages);
	if (*first + n > npages)
		n = npages - *first;
	return n;
}

static void dev_migrate(struct dev_worker *w, uint8_t *v, int to_dev)
{
	int (*fn)(int, struct uffdx_dev_cmd *) = to_dev ? uffdx_dev_migrate_to_dev :
						 uffdx_dev_migrate_to_sys;
	int op = to_dev ? OP_TO_DEV : OP_TO_SYS, first, n, i, ret;
	uint8_t st[3] = { 0xee, 0xee, 0xee };
	struct uffdx_dev_cmd c;
	uint64_t sum = 0;

	n = dev_range(w, &first);
	cmd_init(&c, PG(v, first), st, (uint64_t)n);
	ret = fn(dev, &c);
	if (outcome(op, ret, NULL, first) || ret)
		return;
	for (i = 0; i < n; i++) {
		if (st[i] > 1)
			fail("%s: status byte %d of %d is %#x", op_name[op], i, n, st[i]);
		sum += st[i];
	}
	if (c.cpages != sum)
		fail("%s: cpages %llu, status bytes say %llu", op_name[op],
		     (unsigned long long)c.cpages, (unsigned long long)sum);
	stat_add(to_dev ? &to_dev_moved : &to_sys_moved, (unsigned long)sum);
}

static void dev_snapshot_check(uint8_t *v)
{
	uint8_t b[MAX_PAGES];
	struct uffdx_dev_cmd c;
	int i, ret;

	memset(b, 0xee, sizeof(b));
	cmd_init(&c, v, b, (uint64_t)npages);
	ret = dev_run(uffdx_dev_snapshot, &c, OP_SNAP);
	if (outcome(OP_SNAP, ret, NULL, 0) || ret)
		return;
	for (i = 0; i < npages; i++) {
		uint8_t kind = b[i] & 0xf0;

		if (b[i] == UFFDX_DEV_PROT_ERROR || kind == UFFDX_DEV_PROT_DEV_REMOTE ||
		    (kind != 0 && kind != UFFDX_DEV_PROT_ZERO && kind != UFFDX_DEV_PROT_DEV_LOCAL &&
		     kind != UFFDX_DEV_PROT_EXCLUSIVE) ||
		    (b[i] && !(b[i] & (UFFDX_DEV_PROT_READ | UFFDX_DEV_PROT_WRITE))))
			fail("SNAPSHOT: page %d: state byte %#04x", i, b[i]);
	}
}

/* DISCARD its own data page, check it reads as zeroes, fill it again. */
static void dev_discard_refill(struct dev_worker *w, uint8_t *v)
{
	int pg = DEVDATA(w->idx), ret;
	uint64_t gen = seq_begin_write(pg);
	int64_t res = 0;

	ret = uffdx_discard(ctx, reg.id, (uint64_t)pg * ps, ps, &res);
	if (!outcome(OP_DISCARD, ret, NULL, pg) && res != (int64_t)ps)
		fail("DISCARD of page %d: result %lld", pg, (long long)res);
	stat_add(&discards, 1);
	if (rng(&w->seed) & 1) {
		if (!dev_copy(pg, w->buf, v) && !is_zero(w->buf, ps))
			fail("page %d, DISCARDed, reads non-zero through the device", pg);
		stat_add(&zero_checks, 1);
	}
	fill_pattern(w->pat, ps, data_seed(pg, gen));
	res = 0;
	ret = uffdx_copy(ctx, reg.id, (uint64_t)pg * ps, w->pat, ps, 0, &res);
	if (!outcome(OP_COPY, ret, NULL, pg)) {
		if (ret == -EEXIST) {
			stat_add(&copies_eexist, 1);
			dev_write_page(v, pg, w->pat);
		} else if (res != (int64_t)ps) {
			fail("COPY into page %d: result %lld", pg, (long long)res);
		}
	}
	seq_end_write(pg);
}

static void *dev_thread(void *p)
{
	struct dev_worker *w = p;
	int mine = DEVDATA(w->idx);

	while (!stopped()) {
		uint64_t r = rng(&w->seed);
		uint8_t *v = view[(r >> 8) % NVIEWS];
		int op = (int)(r % 64), pg = (int)((r >> 16) % NCOUNT), first, n, ret;
		struct uffdx_dev_cmd c;

		if (op < 8) {
			n = dev_range(w, &first);
			cmd_init(&c, PG(v, first), NULL, (uint64_t)n);
			ret = uffdx_dev_exclusive(dev, &c);
			if (!outcome(OP_EXCL, ret, NULL, first) && c.cpages != (uint64_t)n)
				fail("EXCLUSIVE of %d pages: cpages %llu", n,
				     (unsigned long long)c.cpages);
		} else if (op < 22) {
			struct uffdx_dev_atomic a;

			memset(&a, 0, sizeof(a));
			a.op = UFFDX_DEV_ATOMIC_FETCH_ADD;
			a.addr = (uintptr_t)PG(v, pg);
			a.value = 1;
			ret = uffdx_dev_atomic(dev, &a);
			if (!outcome(OP_ATOMIC, ret, NULL, pg)) {
				if (a.old < w->last_old[pg])
					fail("ATOMIC on counter %d: old %llu after %llu", pg,
					     (unsigned long long)a.old,
					     (unsigned long long)w->last_old[pg]);
				w->last_old[pg] = a.old + 1;
				dev_incs[w->idx][pg]++;
			}
		} else if (op < 28) {
			dev_migrate(w, v, 1);
		} else if (op < 34) {
			dev_migrate(w, v, 0);
		} else if (op < 40) {
			int k = (int)((r >> 24) % (uint64_t)(NCOUNT + ndev + 2 * ncpu));

			if (is_counter(k)) {
				if (!dev_copy(k, w->buf, v) &&
				    memcmp(w->buf + 8, PG(cref, k) + 8, ps - 8))
					fail("DEV_READ: counter page %d: its pattern changed", k);
			} else if (k == mine) {
				uint64_t gen = __atomic_load_n(&sh->seq[mine], __ATOMIC_RELAXED) / 2;
				long bad;

				if (!dev_copy(k, w->buf, v)) {
					bad = check_pattern(w->buf, ps, data_seed(k, gen));
					if (bad >= 0)
						fail("DEV_READ: own page %d, generation %llu: byte %ld differs",
						     k, (unsigned long long)gen, bad);
				}
			} else {
				seq_read(k, dev_copy, v, w->buf, "device");
			}
		} else if (op < 46) {
			uint64_t gen = seq_begin_write(mine);

			fill_pattern(w->pat, ps, data_seed(mine, gen));
			dev_write_page(v, mine, w->pat);
			seq_end_write(mine);
		} else if (op < 50) {
			dev_snapshot_check(v);
		} else if (op < 58) {
			n = dev_range(w, &first);
			cmd_init(&c, PG(v, first), NULL, (uint64_t)n);
			outcome(OP_RELEASE, uffdx_dev_release(dev, &c), NULL, first);
		} else if (op < 63) {
			cmd_init(&c, PG(v, pg), NULL, 1);
			outcome(OP_CHECK, uffdx_dev_check_exclusive(dev, &c), NULL, pg);
		} else {
			dev_discard_refill(w, v);
		}
		__atomic_store_n(&dev_progress[w->idx], dev_progress[w->idx] + 1,
				 __ATOMIC_RELAXED);
	}
	return NULL;
}

/* ---- events -------------------------------------------------------------------- */

static void check_event(const struct uffdx_dev_event *ev)
{
	int v = 0;
	long pg = view_page(ev->address, &v);

	if (pg < 0 || ev->address % ps || ev->region_id != reg.id ||
	    ev->offset != (uint64_t)pg * ps) {
		fail("event type %u at %#llx (region %llu, offset %#llx): not a page of a view",
		     ev->type, (unsigned long long)ev->address,
		     (unsigned long long)ev->region_id, (unsigned long long)ev->offset);
		return;
	}
	if (ev->__pad || ev->reserved[0] || ev->reserved[1] || ev->reserved[2])
		fail("event type %u: reserved fields not zero", ev->type);
	switch (ev->type) {
	case UFFDX_DEV_EVENT_REVOKED:
	case UFFDX_DEV_EVENT_MIGRATED:
		if (ev->type == UFFDX_DEV_EVENT_REVOKED)
			ev_revoked++;
		else
			ev_migrated++;
		if (ev->flags & ~(uint32_t)(UFFDX_PF_WRITE | UFFDX_PF_KERNEL | UFFDX_PF_REMOTE))
			fail("event type %u, page %ld: flags %#x", ev->type, pg, ev->flags);
		if (ev->pid == (uint32_t)parent_pid) {
			if (ev->flags & UFFDX_PF_REMOTE)
				fail("event type %u, page %ld: REMOTE for this process", ev->type,
				     pg);
		} else if (ev->pid == (uint32_t)child_pid) {
			if (!(ev->flags & UFFDX_PF_REMOTE))
				fail("event type %u, page %ld: the child's, not REMOTE", ev->type,
				     pg);
			ev_remote++;
		} else {
			fail("event type %u, page %ld: pid %u is neither process", ev->type, pg,
			     ev->pid);
		}
		break;
	case UFFDX_DEV_EVENT_DROPPED:
		ev_dropped++;
		if (!is_devdata((int)pg))
			fail("DROPPED for page %ld, which nobody DISCARDs", pg);
		if (ev->pid && ev->pid != (uint32_t)parent_pid)
			fail("DROPPED for page %ld: pid %u", pg, ev->pid);
		break;
	default:
		fail("event of unknown type %u", ev->type);
	}
}

/* Read every event queued; the count read. */
static long drain_events(void)
{
	struct uffdx_dev_event ev[64];
	long total = 0;
	ssize_t n, i;

	for (;;) {
		n = uffdx_dev_read_events(dev, ev, 64);
		if (n == -EAGAIN)
			return total;
		if (n < 0) {
			fail("reading device events: %s", strerror((int)-n));
			return total;
		}
		for (i = 0; i < n; i++)
			check_event(&ev[i]);
		total += n;
	}
}

static void *event_thread(void *p)
{
	(void)p;
	while (!__atomic_load_n(&stop_events, __ATOMIC_RELAXED)) {
		int ret = wait_fd(dev, POLLIN, 100);

		if (ret < 0) {
			fail("poll of the device fd: %s", strerror(-ret));
			break;
		}
		if (ret > 0)
			drain_events();
	}
	return NULL;
}

/* ---- main ------------------------------------------------------------------------ */

static uint64_t features(void)
{
	struct uffdx_api a;

	memset(&a, 0, sizeof(a));
	return uffdx_query(&a) ? 0 : a.features;
}

static void usage(const char *argv0)
{
	fprintf(stderr, "usage: %s [-s SECONDS | -n ROUNDS] [-c CPU_THREADS] [-d DEV_THREADS]\n",
		argv0);
	exit(KSFT_FAIL);
}

/* The progress counter of thread i: parent CPU, child CPU, then device. */
static uint64_t progress_of(int i)
{
	if (i < 2 * ncpu)
		return __atomic_load_n(&sh->cpu_progress[i], __ATOMIC_RELAXED);
	return __atomic_load_n(&dev_progress[i - 2 * ncpu], __ATOMIC_RELAXED);
}

static const char *thread_name(int i)
{
	static char buf[32];

	if (i < ncpu)
		snprintf(buf, sizeof(buf), "cpu thread %d", i);
	else if (i < 2 * ncpu)
		snprintf(buf, sizeof(buf), "child cpu thread %d", i - ncpu);
	else
		snprintf(buf, sizeof(buf), "device thread %d", i - 2 * ncpu);
	return buf;
}

/* Wait until every thread has progressed beyond since[]: 0, or -1 (hung). */
static int wait_all_progress(uint64_t *since, int n)
{
	uint64_t end = now_ns() + (uint64_t)STUCK_MS * 1000000ull;
	int i;

	for (i = 0; i < n; i++) {
		while (progress_of(i) <= since[i]) {
			if (stopped())
				return 0;
			if (now_ns() > end) {
				fail("%s made no progress for %d s (at %llu operations)",
				     thread_name(i), STUCK_MS / 1000, (unsigned long long)since[i]);
				return -1;
			}
			usleep(1000);
		}
		since[i] = progress_of(i);
	}
	return 0;
}

static void final_checks(void)
{
	struct uffdx_dev_stats st;
	struct uffdx_dev_cmd c;
	uint8_t b[MAX_PAGES], *buf = malloc(ps);
	uint64_t cpu_mig;
	int i, k, local = 0, ret;

	if (!buf) {
		fail("malloc");
		return;
	}
	/*
	 * Two pages into device memory now, so that pool_used is not 0 by
	 * chance (the CPU threads bring pages back quickly); the final
	 * reads of them below are through the device first.
	 */
	for (i = 0; i < 2; i++) {
		uint8_t one = 0;

		cmd_init(&c, PG(view[i], i ? DEVDATA(0) : 0), &one, 1);
		ret = uffdx_dev_migrate_to_dev(dev, &c);
		if (!outcome(OP_TO_DEV, ret, "at the end", i ? DEVDATA(0) : 0))
			to_dev_moved += one;
	}
	/* the events, against the counters, before any more CPU touch */
	memset(&st, 0, sizeof(st));
	ret = uffdx_dev_stats(dev, &st);
	if (outcome(OP_STATS, ret, NULL, 0)) {
		free(buf);
		return;
	}
	drain_events();
	cpu_mig = st.migrated_to_sys - to_sys_moved;
	if (st.migrated_to_sys < to_sys_moved)
		fail("migrated_to_sys %llu, but MIGRATE_TO_SYS moved %lu",
		     (unsigned long long)st.migrated_to_sys, to_sys_moved);
	else if (st.events_lost == 0 && (ev_revoked != st.revocations || ev_migrated != cpu_mig))
		fail("events: %lu REVOKED for %llu revocations, %lu MIGRATED for %llu CPU migrations back",
		     ev_revoked, (unsigned long long)st.revocations, ev_migrated,
		     (unsigned long long)cpu_mig);
	else if (ev_revoked > st.revocations || ev_migrated > cpu_mig ||
		 (st.revocations - ev_revoked) + (cpu_mig - ev_migrated) > st.events_lost)
		fail("events: %lu REVOKED for %llu revocations, %lu MIGRATED for %llu, %llu lost",
		     ev_revoked, (unsigned long long)st.revocations, ev_migrated,
		     (unsigned long long)cpu_mig, (unsigned long long)st.events_lost);
	if (ev_dropped > discards)
		fail("%lu DROPPED events for %lu DISCARDs", ev_dropped, discards);
	if (st.migrated_to_dev != to_dev_moved)
		fail("migrated_to_dev %llu, the status bytes said %lu",
		     (unsigned long long)st.migrated_to_dev, to_dev_moved);
	cmd_init(&c, view[0], b, (uint64_t)npages);
	ret = dev_run(uffdx_dev_snapshot, &c, OP_SNAP);
	if (!outcome(OP_SNAP, ret, "at the end", 0)) {
		for (i = 0; i < npages; i++)
			local += (b[i] & 0xf0) == UFFDX_DEV_PROT_DEV_LOCAL;
		if ((uint64_t)local != st.pool_used)
			fail("pool_used %llu, the snapshot shows %d pages DEV_LOCAL",
			     (unsigned long long)st.pool_used, local);
	}
	ksft_print_msg("device: %llu faults, %llu revocations, %llu to dev (%llu allocated), %llu to sys (%lu by command), pool used %llu at the end, %llu events lost; events: %lu REVOKED (%lu by the child), %lu MIGRATED, %lu DROPPED\n",
		       (unsigned long long)st.faults, (unsigned long long)st.revocations,
		       (unsigned long long)st.migrated_to_dev, (unsigned long long)st.allocated,
		       (unsigned long long)st.migrated_to_sys, to_sys_moved,
		       (unsigned long long)st.pool_used, (unsigned long long)st.events_lost,
		       ev_revoked, ev_remote, ev_migrated, ev_dropped);

	/* the counters: through the device first (resident pages stay), then the CPU */
	for (i = 0; i < NCOUNT; i++) {
		uint64_t want = 0, got_dev = ~0ull, got;

		for (k = 0; k < 2 * ncpu; k++)
			want += sh->cpu_inc[k][i];
		for (k = 0; k < ndev; k++)
			want += dev_incs[k][i];
		cmd_init(&c, PG(view[1], i), buf, 1);
		ret = dev_run(uffdx_dev_read, &c, OP_READ);
		if (!outcome(OP_READ, ret, "at the end", i))
			memcpy(&got_dev, buf, 8);
		got = __atomic_load_n((uint64_t *)PG(view[0], i), __ATOMIC_SEQ_CST);
		if (got != want || got_dev != want)
			fail("counter %d: %llu by the CPU, %llu by the device; the increments add up to %llu",
			     i, (unsigned long long)got, (unsigned long long)got_dev,
			     (unsigned long long)want);
		if (memcmp(PG(view[0], i) + 8, PG(cref, i) + 8, ps - 8))
			fail("counter page %d: its pattern changed", i);
	}
	/* the data pages: their last generation, by the device and the CPU */
	for (i = NCOUNT; i < npages; i++) {
		uint64_t gen = sh->seq[i] / 2;

		cmd_init(&c, PG(view[0], i), buf, 1);
		ret = dev_run(uffdx_dev_read, &c, OP_READ);
		if (!outcome(OP_READ, ret, "at the end", i) &&
		    check_pattern(buf, ps, data_seed(i, gen)) >= 0)
			fail("data page %d: not generation %llu (DEV_READ)", i,
			     (unsigned long long)gen);
		if (check_pattern(PG(view[1], i), ps, data_seed(i, gen)) >= 0)
			fail("data page %d: not generation %llu (CPU read)", i,
			     (unsigned long long)gen);
	}
	free(buf);
}

int main(int argc, char **argv)
{
	struct cpu_worker cw[MAX_CPU];
	struct dev_worker dw[MAX_DEV];
	uint64_t since[2 * MAX_CPU + MAX_DEV] = { 0 }, start, deadline = 0, ops = 0;
	unsigned long devsum = 0;
	pthread_t evth;
	uint8_t *buf;
	int opt, i, e, r, ret, status = 0, nthreads;

	while ((opt = getopt(argc, argv, "s:n:c:d:h")) != -1) {
		switch (opt) {
		case 's': seconds = atoi(optarg); break;
		case 'n': rounds = atoi(optarg); break;
		case 'c': ncpu = atoi(optarg); break;
		case 'd': ndev = atoi(optarg); break;
		default: usage(argv[0]);
		}
	}
	if (seconds < 0 || rounds < 0 || ncpu < 1 || ncpu > MAX_CPU || ndev < 1 ||
	    ndev > MAX_DEV)
		usage(argv[0]);
	if (!seconds && !rounds)
		seconds = DEFAULT_SECS;

	ksft_print_header();
	if (!uffdx_present())
		ksft_exit_skip(UFFDX_DEV " not present (uffdx module not loaded)\n");
	if ((features() & DEV_FEATURES) != DEV_FEATURES)
		ksft_exit_skip("the module does not offer UFFDX_FEATURE_DEVICE_EXCLUSIVE and _DEVICE_MIGRATE\n");
	ksft_set_plan(1);

	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED)
		ksft_exit_fail_msg("mmap: %s\n", strerror(errno));
	memset(sh, 0, sizeof(*sh));
	parent_pid = getpid();
	npages = NCOUNT + ndev + 2 * ncpu;
	ctx = ctx_open(DEFAULT_FEATURES | DEV_FEATURES, 0);
	if (ctx < 0)
		ksft_exit_fail_msg("context: %s\n", strerror(-ctx));
	ret = uffdx_region_map(ctx, (uint64_t)npages * ps, 0, &reg);
	if (ret)
		ksft_exit_fail_msg("region: %s\n", strerror(-ret));
	view[0] = reg.addr;
	view[1] = mmap(NULL, reg.len, PROT_READ | PROT_WRITE, MAP_SHARED, reg.fd, 0);
	if (view[1] == MAP_FAILED)
		ksft_exit_fail_msg("second mapping: %s\n", strerror(errno));
	dev = uffdx_device_create(ctx, 0);
	if (dev < 0)
		ksft_exit_fail_msg("DEVICE_CREATE: %s\n", strerror(-dev));
	ret = fcntl(dev, F_SETFL, fcntl(dev, F_GETFL) | O_NONBLOCK);
	if (ret)
		ksft_exit_fail_msg("O_NONBLOCK: %s\n", strerror(errno));

	/* the pages: counters 0 and patterns, data pages at generation 0 */
	cref = malloc((size_t)NCOUNT * ps);
	buf = malloc((size_t)npages * ps);
	if (!cref || !buf)
		ksft_exit_fail_msg("malloc\n");
	for (i = 0; i < npages; i++) {
		if (is_counter(i)) {
			fill_pattern(PG(cref, i), ps, counter_seed(i));
			memset(PG(cref, i), 0, 8);
			memcpy(PG(buf, i), PG(cref, i), ps);
		} else {
			fill_pattern(PG(buf, i), ps, data_seed(i, 0));
		}
	}
	{
		int64_t res = 0;

		ret = uffdx_copy(ctx, reg.id, 0, buf, reg.len, 0, &res);
		if (ret || res != (int64_t)reg.len)
			ksft_exit_fail_msg("COPY: %s\n", strerror(-ret));
	}
	free(buf);
	ksft_print_msg("stress_device: %d pages (%d counters, %d device-written, %d CPU-written), 2 views + the child's own mapping; %d CPU threads here and %d in a child, %d device threads; %d %s\n",
		       npages, NCOUNT, ndev, 2 * ncpu, ncpu, ncpu, ndev,
		       seconds ? seconds : rounds, seconds ? "s" : "rounds");

	fflush(stdout);
	child_pid = fork();
	if (child_pid < 0)
		ksft_exit_fail_msg("fork: %s\n", strerror(errno));
	if (child_pid == 0)
		child_main();
	for (i = 0; i < 2000 && !sh->child_ready && !stopped(); i++)
		usleep(1000);
	if (pthread_create(&evth, NULL, event_thread, NULL))
		die("pthread_create");
	for (i = 0; i < ncpu; i++)
		if (start_cpu(&cw[i], i, NULL))
			die("pthread_create");
	for (i = 0; i < ndev; i++) {
		memset(&dw[i], 0, sizeof(dw[i]));
		dw[i].idx = i;
		dw[i].seed = 0xde71ce5ull * (uint64_t)(i + 1);
		dw[i].buf = malloc(ps);
		dw[i].pat = malloc(ps);
		if (!dw[i].buf || !dw[i].pat ||
		    pthread_create(&dw[i].th, NULL, dev_thread, &dw[i]))
			die("pthread_create");
	}

	nthreads = 2 * ncpu + ndev;
	start = now_ns();
	if (seconds)
		deadline = start + (uint64_t)seconds * 1000000000ull;
	for (r = 0; !stopped(); r++) {
		if (r && (seconds ? now_ns() >= deadline : r >= rounds))
			break;
		sleep_ms(ROUND_MS);
		if (wait_all_progress(since, nthreads))
			break;
	}
	__atomic_store_n(&sh->stop, 1, __ATOMIC_SEQ_CST);
	for (i = 0; i < ncpu; i++)
		pthread_join(cw[i].th, NULL);
	for (i = 0; i < ndev; i++)
		pthread_join(dw[i].th, NULL);
	if (wait_child(child_pid, &status, STUCK_MS)) {
		fail("the child did not exit");
		kill_child(child_pid, &status);
	} else if (!WIFEXITED(status) || WEXITSTATUS(status)) {
		fail("the child exited with status %#x", status);
	}
	__atomic_store_n(&stop_events, 1, __ATOMIC_SEQ_CST);
	pthread_join(evth, NULL);
	/* errors found after the stop (not from stopping) count too */
	if (!sh->errors)
		final_checks();

	for (i = 0; i < 2 * ncpu + ndev; i++)
		ops += progress_of(i);
	for (i = 0; i < ndev; i++)
		for (e = 0; e < NCOUNT; e++)
			devsum += dev_incs[i][e];
	ksft_print_msg("%.1f s, %d rounds, %llu operations; CPU: %lu increments, %lu counter reads, %lu data-page reads (%lu retried: a writer ran), %lu data-page writes; device: %lu atomics, %lu pages migrated to it, %lu back by command, %lu DISCARD + refill (%lu zero checks, %lu COPY EEXIST)\n",
		       (double)(now_ns() - start) / 1e9, r, (unsigned long long)ops, sh->cpu_incs,
		       sh->cpu_reads, sh->cpu_data_reads, sh->cpu_data_retries, sh->cpu_writes,
		       devsum, to_dev_moved, to_sys_moved, discards, zero_checks, copies_eexist);
	for (i = 0; i < 2 * ncpu + ndev; i++)
		ksft_print_msg("  %s: %llu operations\n", thread_name(i),
			       (unsigned long long)progress_of(i));
	for (i = 0; i < NOPS; i++) {
		char line[512];
		int len = snprintf(line, sizeof(line), "  %s: %lu ok", op_name[i], sh->n_ok[i]);

		for (e = 1; e < NERR; e++)
			if (sh->n_err[i][e] && len < (int)sizeof(line))
				len += snprintf(line + len, sizeof(line) - (size_t)len, ", %s %lu",
						strerror(e), sh->n_err[i][e]);
		ksft_print_msg("%s\n", line);
	}
	if (sh->errors)
		ksft_print_msg("%d errors; first: %s\n", sh->errors, sh->first_err);
	ksft_test_result(!sh->errors, "stress_device\n");
	close(dev);
	munmap(view[1], reg.len);
	uffdx_region_unmap(&reg);
	close(ctx);
	ksft_finished();
}
