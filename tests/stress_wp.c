// SPDX-License-Identifier: GPL-2.0
/*
 * Write-protect stress: a live snapshot and dirty tracking (issue 8).
 *
 *   stress_wp [-s SECONDS | -n CYCLES] [-p PAGES] [-w WRITERS] [-t snapshot|tracking]
 *
 * Two KTAP results.  With -n each runs that many cycles (default: 20
 * snapshots, 4 tracking cycles), with -s for half the time (-t: all of it).  No timing assertion: every
 * cycle waits (bounded by STUCK_MS, a hang) for every writer to make
 * progress.
 *
 * snapshot (UFFDX_FEATURE_WP): a sync region of PAGES pages (default 128),
 * mapped twice.  Writer threads (default 2) own the pages i % WRITERS and
 * rewrite random ones, through a random view, word by word with a stamp of
 * (page, generation), publishing the generation once the page is written.
 * Every cycle the main thread reads the generations, protects the whole
 * region (by id, or by address through the second view), reads them again,
 * and copies the region as it stands (the reference: reads never fault for
 * protection).  Each page of it must be a state a writer can leave: words
 * [0, k) of generation g, the rest of g - 1, with g - 1 no older than what
 * was published before the protect and, if the page is torn, exactly what
 * was published after it (its writer sleeps).  A copier thread then copies
 * the region page by page, in a random order but first the pages whose WP
 * events it reads (a writer waits on them), unprotecting each after copying
 * it: by id, by address, with DONTWAKE then WAKE, or with a RESOLVE
 * resolution, a run of up to 8 pages at a time.  Its copy must equal the
 * reference: the region's contents at the instant of protection.  An eighth
 * of the pages start as holes.
 *
 * tracking (UFFDX_FEATURE_WP_ASYNC): an async region of PAGES pages
 * (default 256 with -s, else 128), all protected, mapped twice (A and B) and once more (C).
 * Writer threads store increasing generations into the pages they own,
 * through A or B, and publish them; a disruptor thread meanwhile does
 * MADV_DONTNEED on A and B, maps B again over itself (MAP_FIXED: an munmap
 * and an mmap), mremaps C back and forth and reads through it, MADV_COLD
 * and MADV_PAGEOUT, and forks children that write pages of their own
 * through the inherited mapping.  The main thread scans and re-arms the
 * region in a loop (ranges, a few at a time; the bitmap, whole or in
 * parts), reads each reported page's generation, and checks that every
 * write published before a scan began is in what the scans reported so far
 * (no lost write), and that no page is reported that nobody writes (an
 * eighth of them; beyond a page held pinned (FOLL_PIN) by a
 * process_vm_writev() that waits for its source, as root, which every scan
 * must report).  Every cycle pauses the writers, scans
 * twice, and checks that the second scan reports nothing (the disruptor
 * still running) and that every page's last write was reported.
 */
#include "helpers.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kselftest.h"

#define STUCK_MS	30000	/* a wait this long has hung */
#define MIN_PROGRESS	3	/* writes per writer per cycle (-n form) */
#define MAX_WRITERS	16
#define RUN_MAX		8
#define CP_SCANS	8	/* tracking, per cycle at least: scans, */
#define CP_DIS_OPS	16	/* disruptions, */
#define CP_WRITES	200	/* and writes by each writer */
#define YIELD_EVERY	256	/* tracking: writes between a writer's yields */

#define PG(map, i)	((uint8_t *)(map) + (size_t)(i) * ps)

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE	0x100000
#endif
#ifndef MADV_COLD
#define MADV_COLD		20
#endif
#ifndef MADV_PAGEOUT
#define MADV_PAGEOUT		21
#endif

/* -n, or each test's own default (snapshot cycles are cheap) */
static int seconds, cycles, npages, nwriters = 2;
#define SNAP_CYCLES	8
#define TRACK_CYCLES	3
static const char *only;

static pthread_mutex_t err_lock = PTHREAD_MUTEX_INITIALIZER;
static int errors;
static char first_err[512];
static volatile int stop;

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fail(const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&err_lock);
	if (!errors++) {
		va_start(ap, fmt);
		vsnprintf(first_err, sizeof(first_err), fmt, ap);
		va_end(ap);
	}
	pthread_mutex_unlock(&err_lock);
	__atomic_store_n(&stop, 1, __ATOMIC_SEQ_CST);
}

static int failed(void)
{
	return __atomic_load_n(&errors, __ATOMIC_SEQ_CST) != 0;
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

static uint64_t features(void)
{
	struct uffdx_api a;

	memset(&a, 0, sizeof(a));
	return uffdx_query(&a) ? 0 : a.features;
}

/* Wait (bounded) until every counter of n reached since[i] + min; 0 or -1. */
static int wait_progress(const uint64_t *count, size_t stride, uint64_t *since, int n,
			 uint64_t min)
{
	uint64_t end = now_ns() + (uint64_t)STUCK_MS * 1000000ull;
	int i;

	for (i = 0; i < n; i++) {
		const uint64_t *c = (const uint64_t *)((const uint8_t *)count + (size_t)i * stride);

		while (__atomic_load_n(c, __ATOMIC_RELAXED) < since[i] + min) {
			if (failed())
				return 0;
			if (now_ns() > end)
				return -1;
			usleep(500);
		}
		since[i] = __atomic_load_n(c, __ATOMIC_RELAXED);
	}
	return 0;
}

static int flag_wait(volatile int *flag, int ms)
{
	uint64_t end = now_ns() + (uint64_t)ms * 1000000ull;

	while (!__atomic_load_n(flag, __ATOMIC_SEQ_CST)) {
		if (now_ns() > end)
			return -1;
		usleep(500);
	}
	return 0;
}

static int wp_range(int ctx, uint64_t id, uint64_t off, uint64_t len, uint32_t mode)
{
	struct uffdx_range r;

	memset(&r, 0, sizeof(r));
	r.size = sizeof(r);
	r.mode = mode;
	r.region_id = id;
	r.offset = off;
	r.len = len;
	if (uffdx_ioctl(ctx, UFFDX_IOC_WRITEPROTECT, &r))
		return -errno ? -errno : -EIO;
	return r.result == (int64_t)len ? 0 : -EIO;
}

static int wp_addr(int ctx, void *addr, uint64_t len, uint32_t mode)
{
	struct uffdx_writeprotect_addr w;
	int ret;

	memset(&w, 0, sizeof(w));
	w.size = sizeof(w);
	w.mode = mode;
	w.addr = (uintptr_t)addr;
	w.len = len;
	ret = uffdx_ioctl(ctx, UFFDX_IOC_WRITEPROTECT_ADDR, &w);
	if (ret)
		return ret;
	return w.result == (int64_t)len ? 0 : -EIO;
}

/* ================================ snapshot ================================ */

#define WORDS		(ps / 8)
#define GEN_MASK	((1ull << 40) - 1)

struct writer {
	pthread_t th;
	int k;
	uint64_t seed;
	uint64_t writes;
	volatile pid_t tid;
	volatile int paused;	/* tracking: acknowledged a pause */
	volatile int done;
};

static struct {
	int ctx;
	struct uffdx_region_map r;
	uint8_t *view[2];
	size_t n;
	uint64_t *gen;		/* last generation written in full, per page */
	uint64_t *before, *after;
	uint8_t *ref, *copy, *copied;
	struct writer w[MAX_WRITERS];
	volatile int cycle_go, cycle_done, copier_stop, copier_exited;
	int cycle;
	unsigned long events, stale_events, priority, runs, by_id, by_addr, dontwake, resolves,
		      torn, writes_blocked;
} sn;

/* Every word of page i at generation g (0: a hole, zeroes). */
static uint64_t sword(size_t i, uint64_t g)
{
	return g ? ((uint64_t)(i + 1) << 40) | g : 0;
}

/*
 * The state a writer leaves page i in: words [0, k) generation g, the rest
 * g - 1 (k == WORDS: all g).  0, or -1 if the page is no such state.
 */
static int parse_page(const uint64_t *w, size_t i, uint64_t *g, size_t *k)
{
	uint64_t top = w[0], low;
	size_t j;

	if (top && (top >> 40) != i + 1)
		return -1;
	*g = top & GEN_MASK;
	for (j = 1; j < WORDS && w[j] == top; j++)
		;
	*k = j;
	if (j == WORDS)
		return 0;
	if (!*g)
		return -1;
	low = sword(i, *g - 1);
	for (; j < WORDS; j++)
		if (w[j] != low)
			return -1;
	return 0;
}

static void *snap_writer(void *arg)
{
	struct writer *wr = arg;
	size_t owned = (sn.n - (size_t)wr->k + (size_t)nwriters - 1) / (size_t)nwriters;

	wr->tid = sys_gettid();
	while (!__atomic_load_n(&stop, __ATOMIC_RELAXED)) {
		size_t i = (size_t)wr->k + (size_t)(rng(&wr->seed) % owned) * (size_t)nwriters;
		volatile uint64_t *p = (volatile uint64_t *)PG(sn.view[rng(&wr->seed) & 1], i);
		uint64_t g = sn.gen[i] + 1, v = sword(i, g);
		size_t j;

		for (j = 0; j < WORDS; j++)
			p[j] = v;
		__atomic_store_n(&sn.gen[i], g, __ATOMIC_RELEASE);
		__atomic_add_fetch(&wr->writes, 1, __ATOMIC_RELAXED);
	}
	__atomic_store_n(&wr->done, 1, __ATOMIC_SEQ_CST);
	return NULL;
}

static int is_writer_tid(uint32_t tid)
{
	int k;

	for (k = 0; k < nwriters; k++)
		if ((uint32_t)sn.w[k].tid == tid)
			return 1;
	return 0;
}

/* A WP event of the snapshot region must be one of our writers' writes. */
static int snap_event_ok(const struct uffdx_event *ev)
{
	int v;

	if (ev->type != UFFDX_EVENT_PAGEFAULT || ev->flags != (UFFDX_PF_WP | UFFDX_PF_WRITE) ||
	    ev->region_id != sn.r.id || ev->offset % ps || ev->offset >= sn.r.len ||
	    ev->pid != (uint32_t)getpid() || !is_writer_tid(ev->tid))
		return 0;
	for (v = 0; v < 2; v++)
		if (ev->address == (uintptr_t)sn.view[v] + ev->offset)
			return 1;
	return 0;
}

/* Copy pages [i, i + n) and unprotect them, one of four ways. */
static int copy_unprotect(size_t i, size_t n, uint64_t *seed)
{
	unsigned int how = (unsigned int)(rng(seed) % 8);
	uint64_t off = i * ps, len = n * ps;
	int ret;

	memcpy(sn.copy + off, PG(sn.view[rng(seed) & 1], i), len);
	memset(sn.copied + i, 1, n);
	if (how < 4) {
		ret = wp_range(sn.ctx, sn.r.id, off, len, 0);
		sn.by_id++;
	} else if (how < 6) {
		ret = wp_addr(sn.ctx, PG(sn.view[how & 1], i), len, 0);
		sn.by_addr++;
	} else if (how == 6) {
		ret = wp_range(sn.ctx, sn.r.id, off, len, UFFDX_WP_DONTWAKE);
		if (!ret)
			ret = uffdx_wake(sn.ctx, sn.r.id, off, len);
		sn.dontwake++;
	} else {
		struct uffdx_resolution res;
		unsigned int done = 0;

		memset(&res, 0, sizeof(res));
		res.op = _UFFDX_WRITEPROTECT;
		res.region_id = sn.r.id;
		res.offset = off;
		res.len = len;
		ret = uffdx_resolve_wait(sn.ctx, &res, 1, &done, NULL, 0, 0, UFFDX_RESOLVE_NOWAIT);
		if (ret > 0 || (!ret && (done != 1 || res.result != (int64_t)len)))
			ret = -EIO;
		sn.resolves++;
	}
	if (ret)
		fail("cycle %d: unprotect of pages %zu-%zu (way %u): %s", sn.cycle, i, i + n - 1, how,
		     strerror(-ret));
	sn.runs++;
	return ret;
}

/* Read the pending WP events; copy (and unprotect) the pages writers wait on first. */
static int copier_events(uint64_t *seed)
{
	struct uffdx_event ev[16];
	int n, k;

	for (;;) {
		n = uffdx_read_events(sn.ctx, ev, 16);
		if (n == -EAGAIN)
			return 0;
		if (n < 0) {
			fail("read events: %s", strerror(-n));
			return -1;
		}
		for (k = 0; k < n; k++) {
			size_t i = (size_t)(ev[k].offset / ps);

			if (!snap_event_ok(&ev[k])) {
				fail("cycle %d: bad event: type %u flags 0x%x region %llu offset 0x%llx address 0x%llx pid %u tid %u",
				     sn.cycle, ev[k].type, ev[k].flags,
				     (unsigned long long)ev[k].region_id,
				     (unsigned long long)ev[k].offset,
				     (unsigned long long)ev[k].address, ev[k].pid, ev[k].tid);
				return -1;
			}
			sn.events++;
			if (sn.copied[i]) {
				sn.stale_events++;
				continue;
			}
			sn.priority++;
			if (copy_unprotect(i, 1, seed))
				return -1;
		}
	}
}

static void *snap_copier(void *arg)
{
	uint64_t seed = 777;
	size_t *order = malloc(sn.n * sizeof(*order)), i, j;

	(void)arg;
	if (!order) {
		fail("malloc");
		return NULL;
	}
	for (;;) {
		uint64_t end;

		while (!__atomic_load_n(&sn.cycle_go, __ATOMIC_SEQ_CST)) {
			if (__atomic_load_n(&sn.copier_stop, __ATOMIC_SEQ_CST)) {
				free(order);
				__atomic_store_n(&sn.copier_exited, 1, __ATOMIC_SEQ_CST);
				return NULL;
			}
			usleep(200);
		}
		__atomic_store_n(&sn.cycle_go, 0, __ATOMIC_SEQ_CST);
		end = now_ns() + (uint64_t)STUCK_MS * 1000000ull;
		for (i = 0; i < sn.n; i++)
			order[i] = i;
		for (i = sn.n - 1; i > 0; i--) {
			size_t k = (size_t)(rng(&seed) % (i + 1)), x = order[i];

			order[i] = order[k];
			order[k] = x;
		}
		memset(sn.copied, 0, sn.n);
		for (j = 0; j < sn.n && !failed(); j++) {
			size_t first = order[j], n = 1, max = 1 + (size_t)(rng(&seed) % RUN_MAX);

			if (copier_events(&seed))
				break;
			if (sn.copied[first])
				continue;
			while (n < max && first + n < sn.n && !sn.copied[first + n])
				n++;
			if (copy_unprotect(first, n, &seed))
				break;
			if (now_ns() > end) {
				fail("cycle %d: the copy took over %d s", sn.cycle, STUCK_MS / 1000);
				break;
			}
		}
		copier_events(&seed);
		__atomic_store_n(&sn.cycle_done, 1, __ATOMIC_SEQ_CST);
	}
}

/* The reference at the instant of protection: each page a state its writer can leave. */
static void snap_check_ref(void)
{
	size_t i, k;
	uint64_t g;

	for (i = 0; i < sn.n && !failed(); i++) {
		const uint64_t *w = (const uint64_t *)PG(sn.ref, i);
		uint64_t done;

		if (parse_page(w, i, &g, &k)) {
			fail("cycle %d: page %zu at the protect is no writer's state (word 0 0x%llx)",
			     sn.cycle, i, (unsigned long long)w[0]);
			return;
		}
		done = k == WORDS ? g : g - 1;
		if (k < WORDS)
			sn.torn++;
		if (done < sn.before[i])
			fail("cycle %d: page %zu holds generation %llu, %llu was written before the protect",
			     sn.cycle, i, (unsigned long long)done, (unsigned long long)sn.before[i]);
		else if (k < WORDS && sn.after[i] != g - 1)
			fail("cycle %d: page %zu is torn at word %zu (generations %llu/%llu) but its writer published %llu after the protect: it did not sleep",
			     sn.cycle, i, k, (unsigned long long)g, (unsigned long long)g - 1,
			     (unsigned long long)sn.after[i]);
		else if (k == WORDS && sn.after[i] != g && sn.after[i] + 1 != g)
			fail("cycle %d: page %zu holds generation %llu, its writer published %llu after the protect",
			     sn.cycle, i, (unsigned long long)g, (unsigned long long)sn.after[i]);
	}
}

static void snap_compare(void)
{
	size_t i, j;

	for (i = 0; i < sn.n && !failed(); i++) {
		const uint64_t *a = (const uint64_t *)PG(sn.ref, i);
		const uint64_t *b = (const uint64_t *)PG(sn.copy, i);

		if (!sn.copied[i]) {
			fail("cycle %d: page %zu was never copied", sn.cycle, i);
			return;
		}
		for (j = 0; j < WORDS; j++)
			if (a[j] != b[j]) {
				fail("cycle %d: page %zu word %zu: the copy has 0x%llx, the region had 0x%llx at the protect: a write landed on a protected page",
				     sn.cycle, i, j, (unsigned long long)b[j],
				     (unsigned long long)a[j]);
				return;
			}
	}
}

static int snap_run(int secs)
{
	uint64_t since[MAX_WRITERS] = { 0 }, start, deadline = 0, seed = 99, total = 0;
	pthread_t copier;
	size_t i;
	int k, c, ret, ncycles;
	uint8_t *b;

	memset(&sn, 0, sizeof(sn));
	sn.n = npages ? (size_t)npages : 128;
	sn.ctx = ctx_open(DEFAULT_FEATURES | UFFDX_FEATURE_WP, O_NONBLOCK);
	if (sn.ctx < 0) {
		fail("context: %s", strerror(-sn.ctx));
		return -1;
	}
	ret = uffdx_region_map(sn.ctx, sn.n * ps, UFFDX_REGION_CREATE_WP, &sn.r);
	if (ret) {
		fail("region: %s", strerror(-ret));
		return -1;
	}
	sn.view[0] = sn.r.addr;
	sn.view[1] = mmap(NULL, sn.r.len, PROT_READ | PROT_WRITE, MAP_SHARED, sn.r.fd, 0);
	sn.gen = calloc(sn.n, sizeof(*sn.gen));
	sn.before = calloc(sn.n, sizeof(*sn.before));
	sn.after = calloc(sn.n, sizeof(*sn.after));
	sn.copied = calloc(sn.n, 1);
	sn.ref = malloc(sn.r.len);
	sn.copy = malloc(sn.r.len);
	b = malloc(ps);
	if (sn.view[1] == MAP_FAILED || !sn.gen || !sn.before || !sn.after || !sn.copied ||
	    !sn.ref || !sn.copy || !b) {
		fail("setup: out of memory");
		return -1;
	}
	/* generation 1 everywhere but every eighth page, a hole (generation 0) */
	for (i = 0; i < sn.n; i++) {
		uint64_t *w = (uint64_t *)b;
		size_t j;
		int64_t res = 0;

		if (i % 8 == 7)
			continue;
		for (j = 0; j < WORDS; j++)
			w[j] = sword(i, 1);
		ret = uffdx_copy(sn.ctx, sn.r.id, i * ps, b, ps, 0, &res);
		if (ret) {
			fail("COPY: %s", strerror(-ret));
			return -1;
		}
		sn.gen[i] = 1;
	}
	free(b);
	ncycles = cycles ? cycles : SNAP_CYCLES;
	ksft_print_msg("snapshot: %zu pages (2 views), %d writers, %d %s\n", sn.n, nwriters,
		       secs ? secs : ncycles, secs ? "s" : "cycles");
	for (k = 0; k < nwriters; k++) {
		sn.w[k].k = k;
		sn.w[k].seed = (uint64_t)k * 104729 + 1;
		if (pthread_create(&sn.w[k].th, NULL, snap_writer, &sn.w[k])) {
			fail("pthread_create");
			return -1;
		}
	}
	if (pthread_create(&copier, NULL, snap_copier, NULL)) {
		fail("pthread_create");
		return -1;
	}
	/* the events name the writers: know their tids first */
	for (k = 0; k < nwriters; k++) {
		uint64_t end = now_ns() + (uint64_t)STUCK_MS * 1000000ull;

		while (!__atomic_load_n(&sn.w[k].tid, __ATOMIC_SEQ_CST) && now_ns() < end)
			usleep(500);
	}
	start = now_ns();
	if (secs)
		deadline = start + (uint64_t)secs * 1000000000ull;
	for (c = 0; !failed(); c++) {
		if (c && (secs ? now_ns() >= deadline : c >= ncycles))
			break;
		sn.cycle = c;
		for (i = 0; i < sn.n; i++)
			sn.before[i] = __atomic_load_n(&sn.gen[i], __ATOMIC_ACQUIRE);
		ret = c % 2 ? wp_addr(sn.ctx, sn.view[1], sn.r.len, UFFDX_WP_PROTECT) :
			      wp_range(sn.ctx, sn.r.id, 0, sn.r.len, UFFDX_WP_PROTECT);
		if (ret) {
			fail("cycle %d: PROTECT %s: %s", c, c % 2 ? "by address" : "by id",
			     strerror(-ret));
			break;
		}
		for (i = 0; i < sn.n; i++)
			sn.after[i] = __atomic_load_n(&sn.gen[i], __ATOMIC_ACQUIRE);
		memcpy(sn.ref, sn.view[rng(&seed) & 1], sn.r.len);
		snap_check_ref();
		if (failed())
			break;
		__atomic_store_n(&sn.cycle_done, 0, __ATOMIC_SEQ_CST);
		__atomic_store_n(&sn.cycle_go, 1, __ATOMIC_SEQ_CST);
		if (flag_wait(&sn.cycle_done, STUCK_MS)) {
			fail("cycle %d: the copier did not finish in %d s", c, STUCK_MS / 1000);
			break;
		}
		snap_compare();
		if (!secs && wait_progress(&sn.w[0].writes, sizeof(sn.w[0]), since, nwriters,
					   MIN_PROGRESS))
			fail("cycle %d: writers made no progress for %d s after the snapshot", c,
			     STUCK_MS / 1000);
	}
	/* let every writer finish: nothing stays protected */
	__atomic_store_n(&stop, 1, __ATOMIC_SEQ_CST);
	wp_range(sn.ctx, sn.r.id, 0, sn.r.len, 0);
	__atomic_store_n(&sn.copier_stop, 1, __ATOMIC_SEQ_CST);
	for (k = 0; k < nwriters; k++) {
		if (flag_wait(&sn.w[k].done, STUCK_MS)) {
			fail("writer %d hangs", k);
			ksft_print_msg("snapshot: writer %d hangs; giving up\n", k);
			return -1;
		}
		pthread_join(sn.w[k].th, NULL);
		total += sn.w[k].writes;
	}
	if (flag_wait(&sn.copier_exited, STUCK_MS)) {
		fail("the copier hangs");
		ksft_print_msg("snapshot: the copier hangs; giving up\n");
		return -1;
	}
	pthread_join(copier, NULL);
	/* every page as its writer left it */
	for (i = 0; i < sn.n && !failed(); i++) {
		uint64_t g;
		size_t kk;

		if (parse_page((const uint64_t *)PG(sn.view[0], i), i, &g, &kk) || kk != WORDS ||
		    g != sn.gen[i])
			fail("final: page %zu: word 0 0x%llx, its writer's last generation %llu", i,
			     (unsigned long long)*(uint64_t *)PG(sn.view[0], i),
			     (unsigned long long)sn.gen[i]);
	}
	ksft_print_msg("snapshot: %.1f s, %d cycles, %llu writes; copied in %lu runs (%lu by id, %lu by address, %lu DONTWAKE+WAKE, %lu RESOLVE), %lu first for a waiting writer; %lu WP events (%lu for pages copied already); %lu torn pages at a protect\n",
		       (double)(now_ns() - start) / 1e9, c, (unsigned long long)total, sn.runs,
		       sn.by_id, sn.by_addr, sn.dontwake, sn.resolves, sn.priority, sn.events,
		       sn.stale_events, sn.torn);
	if (!failed() && (!total || !sn.events))
		fail("no progress: %llu writes, %lu WP events", (unsigned long long)total, sn.events);
	munmap(sn.view[1], sn.r.len);
	uffdx_region_unmap(&sn.r);
	close(sn.ctx);
	free(sn.gen);
	free(sn.before);
	free(sn.after);
	free(sn.copied);
	free(sn.ref);
	free(sn.copy);
	return failed() ? -1 : 0;
}

/* ================================ tracking ================================ */

enum { P_WRITER, P_FORK, P_CLEAN };

static struct {
	int ctx;
	struct uffdx_region_map r;
	uint8_t *a, *b, *c, *c_alt;	/* views; C moves between c and c_alt */
	size_t n;
	uint64_t *gen;		/* MAP_SHARED: fork children publish too */
	uint64_t *seen;		/* highest generation read after a report */
	uint64_t *snap;
	uint8_t *rep;
	int pinned;		/* a page pinned (see pin_thread), or -1 */
	int unpinned;		/* the page once pinned, or -1: may be reported once more */
	int had_pin;
	int pin_ctx;
	struct uffdx_region_map pin_src;
	pthread_t pin_th;
	volatile int pin_done;
	ssize_t pin_ret;
	int pin_err;
	struct writer w[MAX_WRITERS];
	volatile int pause;
	volatile int fork_busy, dis_done;
	uint64_t dis_ops, forks;
	int scans, cycle;
	unsigned long reported, rereported, by_kind[4], dontneeds, remaps, mremaps, coldouts;
} tk;

static int page_kind(size_t p)
{
	return p % 8 == 7 ? P_CLEAN : p % 8 == 6 ? P_FORK : P_WRITER;
}

static int page_owner(size_t p)
{
	return (int)((p % 8) % (size_t)nwriters);
}

/* The generation a page holds: its word 0 (written last). */
static uint64_t page_gen(size_t p)
{
	return *(volatile uint64_t *)PG(tk.a, p);
}

static void track_store(uint8_t *view, size_t p, uint64_t g)
{
	volatile uint64_t *w = (volatile uint64_t *)PG(view, p);

	w[1 + g % (WORDS - 1)] = g;
	w[0] = g;
	__atomic_store_n(&tk.gen[p], g, __ATOMIC_RELEASE);
}

static void pause_point(volatile int *ack)
{
	if (!__atomic_load_n(&tk.pause, __ATOMIC_ACQUIRE))
		return;
	__atomic_store_n(ack, 1, __ATOMIC_SEQ_CST);
	while (__atomic_load_n(&tk.pause, __ATOMIC_ACQUIRE) &&
	       !__atomic_load_n(&stop, __ATOMIC_RELAXED))
		usleep(200);
	__atomic_store_n(ack, 0, __ATOMIC_SEQ_CST);
}

static void *track_writer(void *arg)
{
	struct writer *wr = arg;
	size_t *mine = malloc(tk.n * sizeof(*mine)), nmine = 0, p;

	if (!mine) {
		fail("malloc");
		return NULL;
	}
	for (p = 0; p < tk.n; p++)
		if (page_kind(p) == P_WRITER && page_owner(p) == wr->k)
			mine[nmine++] = p;
	wr->tid = sys_gettid();
	while (!__atomic_load_n(&stop, __ATOMIC_RELAXED)) {
		pause_point(&wr->paused);
		p = mine[rng(&wr->seed) % nmine];
		track_store(rng(&wr->seed) & 1 ? tk.b : tk.a, p, tk.gen[p] + 1);
		/* two CPUs: let the scanner in (the -n form also paces the writers) */
		if (__atomic_add_fetch(&wr->writes, 1, __ATOMIC_RELAXED) % YIELD_EVERY == 0) {
			if (seconds)
				sched_yield();
			else
				usleep(20);
		}
	}
	free(mine);
	__atomic_store_n(&wr->done, 1, __ATOMIC_SEQ_CST);
	return NULL;
}

/* A child writes one of the fork pages through the mapping it inherited. */
static void track_fork(uint64_t *seed)
{
	size_t p;
	pid_t pid;
	int st = 0;

	do
		p = (size_t)(rng(seed) % tk.n);
	while (page_kind(p) != P_FORK);
	pid = fork();
	if (pid < 0) {
		fail("fork: %s", strerror(errno));
		return;
	}
	if (pid == 0) {
		track_store(tk.a, p, tk.gen[p] + 1);
		_exit(0);
	}
	if (wait_child(pid, &st, STUCK_MS) || !WIFEXITED(st) || WEXITSTATUS(st)) {
		fail("a forked writer of page %zu: status 0x%x", p, st);
		kill_child(pid, NULL);
	}
	tk.forks++;
}

static void *track_disruptor(void *arg)
{
	uint64_t seed = 4242;
	uint64_t v = 0;

	(void)arg;
	while (!__atomic_load_n(&stop, __ATOMIC_RELAXED)) {
		unsigned int op = (unsigned int)(rng(&seed) % 10);
		size_t first = (size_t)(rng(&seed) % tk.n), n = 1 + (size_t)(rng(&seed) % 32);
		uint8_t *m;

		if (first + n > tk.n)
			n = tk.n - first;
		switch (op) {
		case 0: case 1: case 2:
			if (madvise(PG(tk.a, first), n * ps, MADV_DONTNEED))
				fail("MADV_DONTNEED: %s", strerror(errno));
			tk.dontneeds++;
			break;
		case 3:
			if (madvise(PG(tk.b, first), n * ps, MADV_DONTNEED))
				fail("MADV_DONTNEED: %s", strerror(errno));
			tk.dontneeds++;
			break;
		case 4: case 5:
			/* an munmap and an mmap, in one step: writers through B never see a gap */
			m = mmap(tk.b, tk.r.len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED,
				 tk.r.fd, 0);
			if (m != tk.b)
				fail("mmap over B: %s", strerror(errno));
			tk.remaps++;
			break;
		case 6:
			/* C moves onto its reserved spare place, whose old place is reserved next */
			m = mremap(tk.c, tk.r.len, tk.r.len, MREMAP_MAYMOVE | MREMAP_FIXED, tk.c_alt);
			if (m != tk.c_alt) {
				fail("mremap of C: %s", strerror(errno));
				break;
			}
			tk.c_alt = mmap(tk.c, tk.r.len, PROT_NONE,
					MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
			if (tk.c_alt != tk.c) {
				if (tk.c_alt != MAP_FAILED)
					munmap(tk.c_alt, tk.r.len);
				tk.c_alt = mmap(NULL, tk.r.len, PROT_NONE,
						MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
				if (tk.c_alt == MAP_FAILED)
					fail("mmap: %s", strerror(errno));
			}
			tk.c = m;
			tk.mremaps++;
			break;
		case 7:
			madvise(PG(tk.a, first), n * ps, first & 1 ? MADV_COLD : MADV_PAGEOUT);
			tk.coldouts++;
			break;
		case 8:
			/* no fork during a pause (see track_pause) */
			__atomic_store_n(&tk.fork_busy, 1, __ATOMIC_SEQ_CST);
			if (!__atomic_load_n(&tk.pause, __ATOMIC_SEQ_CST) &&
			    !__atomic_load_n(&stop, __ATOMIC_RELAXED))
				track_fork(&seed);
			__atomic_store_n(&tk.fork_busy, 0, __ATOMIC_SEQ_CST);
			break;
		default:
			/* reads are never recorded */
			for (; n; n--, first = (first + 1) % tk.n)
				v += *(volatile uint64_t *)PG(tk.c, first);
			break;
		}
		__atomic_add_fetch(&tk.dis_ops, 1, __ATOMIC_RELAXED);
		usleep(50);
	}
	(void)v;
	__atomic_store_n(&tk.dis_done, 1, __ATOMIC_SEQ_CST);
	return NULL;
}

/*
 * A scan and re-arm of the whole region, by one of four ways; tk.rep[p]
 * set for every page reported.  Checks the output's shape.  0 or -1.
 */
static int track_scan(uint64_t *seed)
{
	static struct uffdx_scan_range out[64];
	static uint8_t bits[1024];
	unsigned int way = (unsigned int)(tk.scans % 4);
	unsigned int cap = way == 0 ? 64 : way == 1 ? 2 + (unsigned int)(rng(seed) % 15) :
			   way == 2 ? (unsigned int)((tk.n + 7) / 8) : 4;
	uint64_t off = 0, end = tk.r.len, i, p;
	struct uffdx_scan s;

	if (cap > sizeof(bits))
		cap = sizeof(bits);
	memset(tk.rep, 0, tk.n);
	while (off < end) {
		uint64_t left = end - off, sum = 0, prev = 0;
		int bitmap = way >= 2;

		memset(&s, 0, sizeof(s));
		s.size = sizeof(s);
		s.flags = UFFDX_SCAN_REARM | (bitmap ? UFFDX_SCAN_BITMAP : 0);
		s.region_id = tk.r.id;
		s.offset = off;
		s.len = left;
		s.out = bitmap ? (uintptr_t)bits : (uintptr_t)out;
		s.out_len = cap;
		if (uffdx_ioctl(tk.ctx, UFFDX_IOC_SCAN, &s)) {
			fail("scan %d (way %u) at page %llu: %s", tk.scans, way,
			     (unsigned long long)(off / ps), strerror(errno));
			return -1;
		}
		if (!s.scanned || s.scanned % ps || s.scanned > left) {
			fail("scan %d (way %u): scanned 0x%llx of 0x%llx", tk.scans, way,
			     (unsigned long long)s.scanned, (unsigned long long)left);
			return -1;
		}
		if (bitmap) {
			for (i = 0; i < s.scanned / ps; i++)
				if (bits[i / 8] & (1u << (i % 8))) {
					tk.rep[off / ps + i] = 1;
					sum += ps;
				}
		} else {
			if (s.nr_out > cap || (s.scanned < left && s.nr_out != cap)) {
				fail("scan %d: nr_out %llu of %u, scanned 0x%llx of 0x%llx", tk.scans,
				     (unsigned long long)s.nr_out, cap,
				     (unsigned long long)s.scanned, (unsigned long long)left);
				return -1;
			}
			for (i = 0; i < s.nr_out; i++) {
				if (!out[i].len || out[i].len % ps || out[i].offset % ps ||
				    out[i].offset < off || out[i].offset + out[i].len > off + s.scanned ||
				    (i && out[i].offset <= prev)) {
					fail("scan %d: range %llu: offset 0x%llx len 0x%llx (call at 0x%llx)",
					     tk.scans, (unsigned long long)i,
					     (unsigned long long)out[i].offset,
					     (unsigned long long)out[i].len, (unsigned long long)off);
					return -1;
				}
				for (p = out[i].offset; p < out[i].offset + out[i].len; p += ps)
					tk.rep[p / ps] = 1;
				sum += out[i].len;
				prev = out[i].offset + out[i].len;
			}
		}
		if (s.written != sum) {
			fail("scan %d (way %u): written 0x%llx, reported 0x%llx", tk.scans, way,
			     (unsigned long long)s.written, (unsigned long long)sum);
			return -1;
		}
		off += s.scanned;
	}
	tk.by_kind[way]++;
	tk.scans++;
	return 0;
}

/*
 * One scan with the checks: nothing clean reported (but the pinned page,
 * always), and every write published before the scan began seen in a
 * page reported so far.  Returns the number of pages reported, or -1.
 */
static int track_round(uint64_t *seed)
{
	size_t p;
	int n = 0;

	for (p = 0; p < tk.n; p++)
		tk.snap[p] = __atomic_load_n(&tk.gen[p], __ATOMIC_ACQUIRE);
	if (track_scan(seed))
		return -1;
	for (p = 0; p < tk.n; p++) {
		if (tk.unpinned >= 0 && p == (size_t)tk.unpinned && tk.rep[p]) {
			tk.unpinned = -1;	/* the write through the pin, reported once */
			continue;
		}
		if (tk.pinned >= 0 && p == (size_t)tk.pinned) {
			if (!tk.rep[p]) {
				fail("scan %d: the pinned page %zu was not reported", tk.scans - 1, p);
				return -1;
			}
			continue;
		}
		if (!tk.rep[p])
			continue;
		n++;
		if (page_kind(p) == P_CLEAN) {
			fail("scan %d: page %zu reported, nothing ever writes it", tk.scans - 1, p);
			return -1;
		}
		{
			uint64_t g = page_gen(p);

			tk.reported++;
			if (g == tk.seen[p])
				tk.rereported++;
			if (g > tk.seen[p])
				tk.seen[p] = g;
		}
	}
	for (p = 0; p < tk.n; p++)
		if (tk.seen[p] < tk.snap[p]) {
			fail("scan %d: page %zu: generation %llu was written before the scan began, the scans so far saw %llu: a lost write",
			     tk.scans - 1, p, (unsigned long long)tk.snap[p],
			     (unsigned long long)tk.seen[p]);
			return -1;
		}
	return n;
}

/*
 * Pause every writer, and wait out a fork in progress (bounded).  The
 * disruptor goes on with everything else.
 */
static int track_pause(void)
{
	uint64_t end = now_ns() + (uint64_t)STUCK_MS * 1000000ull;
	int k;

	__atomic_store_n(&tk.pause, 1, __ATOMIC_SEQ_CST);
	for (k = 0; k < nwriters; k++)
		if (flag_wait(&tk.w[k].paused, STUCK_MS))
			return -1;
	while (__atomic_load_n(&tk.fork_busy, __ATOMIC_SEQ_CST)) {
		if (now_ns() > end)
			return -1;
		usleep(200);
	}
	return 0;
}

/* Quiet: the first scan takes what is left, the second must report nothing. */
static void track_checkpoint(uint64_t *seed)
{
	size_t p;
	int n;

	if (track_pause()) {
		fail("cycle %d: a writer did not pause in %d s", tk.cycle, STUCK_MS / 1000);
		return;
	}
	if (track_round(seed) < 0)
		return;
	n = track_round(seed);
	if (n > 0)
		for (p = 0; p < tk.n; p++)
			if (tk.rep[p] && (tk.pinned < 0 || p != (size_t)tk.pinned)) {
				fail("cycle %d: page %zu reported again with no write since the last scan",
				     tk.cycle, p);
				break;
			}
	for (p = 0; p < tk.n && !failed(); p++)
		if (tk.seen[p] != tk.gen[p] || page_gen(p) != tk.gen[p])
			fail("cycle %d: page %zu: last write %llu, holds %llu, the scans saw %llu",
			     tk.cycle, p, (unsigned long long)tk.gen[p],
			     (unsigned long long)page_gen(p), (unsigned long long)tk.seen[p]);
	__atomic_store_n(&tk.pause, 0, __ATOMIC_SEQ_CST);
}

/*
 * A FOLL_PIN pin of clean page 7 for the whole run: process_vm_writev()
 * into it from an armed hole of a KERNEL_FAULTS context's region pins the
 * page, then sleeps in the copy until pin_finish() fills the hole.
 */
static void *pin_thread(void *arg)
{
	struct iovec local = { .iov_base = tk.pin_src.addr, .iov_len = 64 };
	struct iovec remote = { .iov_base = PG(tk.a, 7) + 8, .iov_len = 64 };

	(void)arg;
	tk.pin_ret = process_vm_writev(getpid(), &local, 1, &remote, 1, 0);
	tk.pin_err = errno;
	__atomic_store_n(&tk.pin_done, 1, __ATOMIC_SEQ_CST);
	return NULL;
}

static void pin_begin(void)
{
	struct uffdx_event ev;

	tk.pin_ctx = ctx_open(DEFAULT_FEATURES | UFFDX_FEATURE_KERNEL_FAULTS, 0);
	if (tk.pin_ctx < 0 || uffdx_region_map(tk.pin_ctx, ps, 0, &tk.pin_src) ||
	    uffdx_arm(tk.pin_ctx, tk.pin_src.id, 0, ps, UFFDX_ARM_MISSING) ||
	    pthread_create(&tk.pin_th, NULL, pin_thread, NULL)) {
		fail("setting up the pin");
		return;
	}
	if (wait_event(tk.pin_ctx, &ev, STUCK_MS) != 1 || tk.pin_done) {
		fail("the pinning write did not start: %s", strerror(tk.pin_err));
		return;
	}
	tk.pinned = 7;
	tk.had_pin = 1;
}

static void pin_finish(void)
{
	int64_t res = 0;
	uint8_t *b;

	if (tk.pin_ctx < 0)
		return;
	b = malloc(ps);
	if (!b) {
		fail("malloc");
		return;
	}
	memset(b, 0x5a, ps);
	if (tk.pinned >= 0) {
		if (uffdx_copy(tk.pin_ctx, tk.pin_src.id, 0, b, ps, 0, &res) ||
		    flag_wait(&tk.pin_done, STUCK_MS) || tk.pin_ret != 64) {
			fail("the write through the pin: %s", strerror(tk.pin_err));
		} else {
			pthread_join(tk.pin_th, NULL);
			tk.unpinned = tk.pinned;
		}
		tk.pinned = -1;
	}
	free(b);
	uffdx_region_unmap(&tk.pin_src);
	close(tk.pin_ctx);
	tk.pin_ctx = -1;
}

static int track_run(int secs)
{
	uint64_t since[MAX_WRITERS] = { 0 }, start, deadline = 0, seed = 31337, total = 0;
	int k, c, ret, scans_at, ncycles = cycles ? cycles : TRACK_CYCLES;
	uint64_t dis_at, end;
	pthread_t dis;
	size_t p;

	memset(&tk, 0, sizeof(tk));
	tk.pinned = -1;
	tk.unpinned = -1;
	tk.pin_ctx = -1;
	tk.n = npages ? (size_t)npages : seconds ? 256 : 128;
	tk.ctx = ctx_open(DEFAULT_FEATURES | (features() & UFFDX_FEATURE_WP) | UFFDX_FEATURE_WP_ASYNC,
			  0);
	if (tk.ctx < 0) {
		fail("context: %s", strerror(-tk.ctx));
		return -1;
	}
	ret = uffdx_region_map(tk.ctx, tk.n * ps, UFFDX_REGION_CREATE_WP_ASYNC, &tk.r);
	if (ret) {
		fail("region: %s", strerror(-ret));
		return -1;
	}
	tk.a = tk.r.addr;
	tk.b = mmap(NULL, tk.r.len, PROT_READ | PROT_WRITE, MAP_SHARED, tk.r.fd, 0);
	tk.c = mmap(NULL, tk.r.len, PROT_READ, MAP_SHARED, tk.r.fd, 0);
	tk.c_alt = mmap(NULL, tk.r.len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	tk.gen = mmap(NULL, tk.n * sizeof(*tk.gen), PROT_READ | PROT_WRITE,
		      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	tk.seen = calloc(tk.n, sizeof(*tk.seen));
	tk.snap = calloc(tk.n, sizeof(*tk.snap));
	tk.rep = calloc(tk.n, 1);
	if (tk.b == MAP_FAILED || tk.c == MAP_FAILED || tk.c_alt == MAP_FAILED ||
	    tk.gen == MAP_FAILED || !tk.seen || !tk.snap || !tk.rep) {
		fail("setup: out of memory");
		return -1;
	}
	memset(tk.gen, 0, tk.n * sizeof(*tk.gen));
	/* half the pages populated (zeroes: generation 0), half holes; all protected */
	for (p = 0; p < tk.n; p += 2) {
		int64_t res = 0;

		ret = uffdx_zero(tk.ctx, tk.r.id, p * ps, ps, 0, &res);
		if (ret) {
			fail("ZERO: %s", strerror(-ret));
			return -1;
		}
	}
	ret = wp_range(tk.ctx, tk.r.id, 0, tk.r.len, UFFDX_WP_PROTECT);
	if (ret) {
		fail("PROTECT: %s", strerror(-ret));
		return -1;
	}
	/* a clean page pinned (FOLL_PIN) all along, as root */
	if (getuid() == 0)
		pin_begin();
	else
		ksft_print_msg("tracking: no page pinned (needs UFFDX_FEATURE_KERNEL_FAULTS)\n");
	ksft_print_msg("tracking: %zu pages (views A, B, C), %d writers, %d %s\n", tk.n, nwriters,
		       secs ? secs : ncycles, secs ? "s" : "cycles");
	/* nothing written yet */
	{
		int n1 = track_round(&seed), n2 = n1 < 0 ? -1 : track_round(&seed);

		if (n1 || n2) {
			if (!failed())
				fail("the first scans report pages nobody wrote (%d, %d)", n1, n2);
			return -1;
		}
	}
	for (k = 0; k < nwriters; k++) {
		tk.w[k].k = k;
		tk.w[k].seed = (uint64_t)k * 7919 + 3;
		if (pthread_create(&tk.w[k].th, NULL, track_writer, &tk.w[k])) {
			fail("pthread_create");
			return -1;
		}
	}
	if (pthread_create(&dis, NULL, track_disruptor, NULL)) {
		fail("pthread_create");
		return -1;
	}
	start = now_ns();
	if (secs)
		deadline = start + (uint64_t)secs * 1000000000ull;
	for (c = 0; !failed(); c++) {
		if (c && (secs ? now_ns() >= deadline : c >= ncycles))
			break;
		tk.cycle = c;
		/* scan until the scans, the disruptor and every writer have done their share */
		scans_at = tk.scans;
		dis_at = __atomic_load_n(&tk.dis_ops, __ATOMIC_RELAXED);
		end = now_ns() + (uint64_t)STUCK_MS * 1000000ull;
		while (!failed()) {
			int more = tk.scans < scans_at + CP_SCANS ||
				   __atomic_load_n(&tk.dis_ops, __ATOMIC_RELAXED) < dis_at + CP_DIS_OPS;

			for (k = 0; k < nwriters && !more; k++)
				more = __atomic_load_n(&tk.w[k].writes, __ATOMIC_RELAXED) <
				       since[k] + CP_WRITES;
			if (!more)
				break;
			if (now_ns() > end) {
				fail("cycle %d: no progress for %d s (%d scans, %llu disruptions)", c,
				     STUCK_MS / 1000, tk.scans - scans_at,
				     (unsigned long long)(tk.dis_ops - dis_at));
				break;
			}
			if (track_round(&seed) < 0)
				break;
		}
		for (k = 0; k < nwriters; k++)
			since[k] = __atomic_load_n(&tk.w[k].writes, __ATOMIC_RELAXED);
		if (!failed())
			track_checkpoint(&seed);
	}
	__atomic_store_n(&stop, 1, __ATOMIC_SEQ_CST);
	__atomic_store_n(&tk.pause, 0, __ATOMIC_SEQ_CST);
	for (k = 0; k < nwriters; k++) {
		if (flag_wait(&tk.w[k].done, STUCK_MS)) {
			ksft_print_msg("tracking: writer %d hangs; giving up\n", k);
			fail("writer %d hangs", k);
			return -1;
		}
		pthread_join(tk.w[k].th, NULL);
		total += tk.w[k].writes;
	}
	if (flag_wait(&tk.dis_done, STUCK_MS)) {
		fail("the disruptor hangs");
		return -1;
	}
	pthread_join(dis, NULL);
	pin_finish();
	if (!failed()) {
		/* the last writes, then nothing */
		if (track_round(&seed) >= 0 && track_round(&seed) > 0)
			fail("final: pages reported with no write since the last scan");
		for (p = 0; p < tk.n && !failed(); p++)
			if (tk.seen[p] != tk.gen[p])
				fail("final: page %zu: last write %llu, the scans saw %llu", p,
				     (unsigned long long)tk.gen[p], (unsigned long long)tk.seen[p]);
	}
	ksft_print_msg("tracking: %.1f s, %d cycles, %llu writes by threads, %llu by %llu forked children; %d scans (%lu ranges, %lu ranges a few at a time, %lu bitmap, %lu bitmap in parts), %lu pages reported (%lu with no newer generation); %lu DONTNEED, %lu remaps, %lu mremaps, %lu COLD/PAGEOUT; pinned page: %s\n",
		       (double)(now_ns() - start) / 1e9, c, (unsigned long long)total,
		       (unsigned long long)tk.forks, (unsigned long long)tk.forks, tk.scans,
		       tk.by_kind[0], tk.by_kind[1], tk.by_kind[2], tk.by_kind[3], tk.reported,
		       tk.rereported, tk.dontneeds, tk.remaps, tk.mremaps, tk.coldouts,
		       tk.had_pin ? "yes" : "no");
	if (!failed() && (!total || !tk.reported))
		fail("no progress: %llu writes, %lu reports", (unsigned long long)total, tk.reported);
	munmap(tk.b, tk.r.len);
	munmap(tk.c, tk.r.len);
	munmap(tk.c_alt, tk.r.len);
	uffdx_region_unmap(&tk.r);
	close(tk.ctx);
	munmap(tk.gen, tk.n * sizeof(*tk.gen));
	free(tk.seen);
	free(tk.snap);
	free(tk.rep);
	return failed() ? -1 : 0;
}

/* ================================ main ================================ */

static void usage(const char *argv0)
{
	fprintf(stderr, "usage: %s [-s SECONDS | -n CYCLES] [-p PAGES] [-w WRITERS] [-t snapshot|tracking]\n",
		argv0);
	exit(KSFT_FAIL);
}

static void result(const char *name, int (*run)(int), uint64_t feature, const char *fname,
		   int secs)
{
	if (only && strcmp(only, name)) {
		ksft_test_result_skip("%s # not selected\n", name);
		return;
	}
	if (!(features() & feature)) {
		ksft_test_result_skip("%s # the module does not report %s\n", name, fname);
		return;
	}
	errors = 0;
	first_err[0] = 0;
	stop = 0;
	run(secs);
	if (errors)
		ksft_print_msg("%s: %d errors; first: %s\n", name, errors, first_err);
	ksft_test_result(!errors, "%s\n", name);
}

int main(int argc, char **argv)
{
	int opt, secs;

	while ((opt = getopt(argc, argv, "s:n:p:w:t:h")) != -1) {
		switch (opt) {
		case 's': seconds = atoi(optarg); break;
		case 'n': cycles = atoi(optarg); break;
		case 'p': npages = atoi(optarg); break;
		case 'w': nwriters = atoi(optarg); break;
		case 't': only = optarg; break;
		default: usage(argv[0]);
		}
	}
	if (seconds < 0 || cycles < 0 || (npages && npages < 16) || nwriters < 1 ||
	    nwriters > MAX_WRITERS || (only && strcmp(only, "snapshot") && strcmp(only, "tracking")))
		usage(argv[0]);

	ksft_print_header();
	if (!uffdx_present())
		ksft_exit_skip(UFFDX_DEV " not present (uffdx module not loaded)\n");
	ksft_set_plan(2);
	secs = seconds ? (only ? seconds : (seconds + 1) / 2) : 0;
	result("snapshot", snap_run, UFFDX_FEATURE_WP, "UFFDX_FEATURE_WP", secs);
	result("tracking", track_run, UFFDX_FEATURE_WP_ASYNC, "UFFDX_FEATURE_WP_ASYNC", secs);
	ksft_finished();
}
