// SPDX-License-Identifier: GPL-2.0
/*
 * MOVE stress: a compacting copying collector over two uffdx regions.
 *
 *   stress_move [-s SECONDS | -n CYCLES] [-p PAGES] [-m MUTATORS] [-b BATCH]
 *
 * Two regions of PAGES pages (default 1024) are from-space and to-space,
 * each mapped twice (two views, so that a move must invalidate a mapping
 * it was not given).  Objects of 1-4 pages, half a space in all, start
 * with a header (id, version, size); every other word is a function of
 * (id, version, word).  A forwarding table gives each object's address and
 * version under a per-object sequence count, odd while the object is
 * locked.
 *
 *  - Mutator threads (default 2) pick random objects and a random view.  A
 *    read takes a seqlock snapshot: the address, then every word of the
 *    object there; it retries if the count moved meanwhile (so it may have
 *    read a page that was being moved away, or the hole it left, which
 *    zero-fills that from-space slot).  A consistent snapshot must be
 *    exact.  A write locks the object, checks it, and rewrites it with
 *    version + 1.
 *  - The collector (the main thread) evacuates every object from from-space
 *    into to-space, compacted.  To-space is armed (MISSING) and from-space
 *    not.  The cycles rotate through five ways:
 *      0  uffdx_move_vec(), one entry per object in a random order, in
 *         batches of BATCH (default 32), each object locked across its move;
 *      1  uffdx_move_addr() of runs of objects that are adjacent in both
 *         spaces (address order), locked likewise;
 *      2  uffdx_move_vec() of such runs;
 *      3  eager forwarding: a batch's new addresses are published (and the
 *         objects unlocked) before the move, so mutators fault on the armed
 *         to-space holes and sleep until the move fills and wakes them;
 *      4  the same with UFFDX_MOVE_DONTWAKE, then UFFDX_IOC_WAKE.
 *    Each move names the two sides through random views.  An event thread
 *    reads (and checks) the fault events but never resolves them.  After a
 *    cycle the collector waits until no mutator is still in an access that
 *    began before the cycle ended, checks through both views that no
 *    from-space PTE maps a page that moved (/proc/self/pagemap: what is
 *    mapped there reads as zeroes and is no to-space page), and every 8th
 *    cycle that all of from-space reads as zeroes; DISCARDs it, checks both
 *    spaces' resident counts, and swaps the roles.
 *
 * At the end every word of every object is checked through both views.
 * No timing assertion: with -n (default 15 when no -s) the collector runs
 * that many cycles, and each waits for every mutator to make progress;
 * with -s it runs cycles until the time is up.  A wait that lasts 30 s
 * (a lost wake, say) fails the test.  Prints KTAP, one result:
 * "stress_move".
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
#include <unistd.h>

#include "kselftest.h"

#define OBJ_MAX_PAGES	4
#define HDR_MAGIC	0x4f424a4543543a00ull	/* "OBJECT:" */
#define STUCK_MS	30000	/* a wait this long has hung */
#define MIN_PROGRESS	20	/* accesses per mutator per cycle (-n form) */
#define RUN_MAX_PAGES	64
#define NVIEWS		2
#define NVARIANTS	5
#define FULL_SCAN	8	/* read all of from-space every this many cycles */

static int npages = 1024, nmutators = 2, batch = 32, seconds, cycles = 15;

struct obj {
	uint32_t seq;		/* odd: locked (a write, or a move) */
	uint32_t pages;
	uint64_t version;	/* under seq */
	uint8_t *addr;		/* under seq; in view 0 */
	uint64_t moves;		/* collector only */
};

static int ctx;
static struct uffdx_region_map space[2];
static uint8_t *view[NVIEWS][2];	/* view 0 is space[s].addr */
static struct obj *objs;
static int nobj, live_pages;

struct mutator {
	pthread_t th;
	unsigned int seed;
	uint64_t qs;		/* odd while in an access */
	uint64_t accesses;	/* completed */
};
static struct mutator *mut;
static volatile int stop, stop_events;

static unsigned long st_reads, st_writes, st_retries, st_lock_waits, st_moved_objs,
		     st_moved_pages, st_vec_calls, st_addr_calls, st_stale_fills, st_events,
		     st_wakes;

static pthread_mutex_t err_lock = PTHREAD_MUTEX_INITIALIZER;
static int errors;
static char first_err[512];

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

static inline void stat_add(unsigned long *s, unsigned long n)
{
	__atomic_add_fetch(s, n, __ATOMIC_RELAXED);
}

static inline uint64_t mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* Word w of object id at version v. */
static uint64_t want_word(int id, uint64_t v, size_t w)
{
	switch (w) {
	case 0: return HDR_MAGIC | (uint64_t)id << 8;
	case 1: return v;
	case 2: return objs[id].pages;
	}
	return mix(((uint64_t)id << 44) ^ (v << 16) ^ w);
}

static size_t obj_words(int id)
{
	return (size_t)objs[id].pages * ps / 8;
}

/* Which space a view-0 address is in (-1: neither). */
static int space_of(const uint8_t *a)
{
	int s;

	for (s = 0; s < 2; s++)
		if (a >= (uint8_t *)space[s].addr && a < (uint8_t *)space[s].addr + space[s].len)
			return s;
	return -1;
}

/* A view-0 address as seen through view v. */
static uint8_t *in_view(uint8_t *a, int v)
{
	int s = space_of(a);

	return s < 0 ? a : view[v][s] + (a - (uint8_t *)space[s].addr);
}

static const char *where(const uint8_t *addr)
{
	static __thread char bufs[4][64];
	static __thread unsigned int next;
	char *buf = bufs[next++ % 4];
	int s, v;

	for (v = 0; v < NVIEWS; v++)
		for (s = 0; s < 2; s++)
			if (addr >= view[v][s] && addr < view[v][s] + space[s].len) {
				snprintf(buf, sizeof(bufs[0]), "space %d page %ld (view %d)", s,
					 (long)((addr - view[v][s]) / ps), v);
				return buf;
			}
	snprintf(buf, sizeof(bufs[0]), "%p (outside both spaces)", (const void *)addr);
	return buf;
}

static void obj_write(int id, uint8_t *addr, uint64_t v)
{
	volatile uint64_t *p = (volatile uint64_t *)addr;
	size_t w, n = obj_words(id);

	for (w = 0; w < n; w++)
		p[w] = want_word(id, v, w);
}

/* Index of the first wrong word, or -1. */
static long obj_check(int id, const uint8_t *addr, uint64_t v, uint64_t *got)
{
	const volatile uint64_t *p = (const volatile uint64_t *)addr;
	size_t w, n = obj_words(id);

	for (w = 0; w < n; w++) {
		uint64_t x = p[w];

		if (x != want_word(id, v, w)) {
			*got = x;
			return (long)w;
		}
	}
	return -1;
}

static void report_bad(const char *what, int id, const uint8_t *addr, uint64_t v, long bad,
		       uint64_t got)
{
	fail("%s: object %d version %llu at %s: word %ld is 0x%llx, want 0x%llx", what, id,
	     (unsigned long long)v, where(addr), bad, (unsigned long long)got,
	     (unsigned long long)want_word(id, v, (size_t)bad));
}

/* Spin until the object is ours (seq odd): 0, or -1 after STUCK_MS. */
static int obj_lock(struct obj *o)
{
	uint64_t end = 0;
	unsigned int spins = 0;

	for (;;) {
		uint32_t s = __atomic_load_n(&o->seq, __ATOMIC_RELAXED);

		if (!(s & 1) && __atomic_compare_exchange_n(&o->seq, &s, s + 1, 0,
							    __ATOMIC_ACQUIRE,
							    __ATOMIC_RELAXED))
			return 0;
		if (++spins % 64 == 0) {
			if (!end) {
				stat_add(&st_lock_waits, 1);
				end = now_ns() + (uint64_t)STUCK_MS * 1000000ull;
			} else if (now_ns() > end) {
				return -1;
			}
			sched_yield();
		}
	}
}

static void obj_unlock(struct obj *o)
{
	__atomic_add_fetch(&o->seq, 1, __ATOMIC_SEQ_CST);
}

static void mutator_read(int id, int v)
{
	struct obj *o = &objs[id];
	unsigned int spins = 0;

	for (;;) {
		uint32_t s1 = __atomic_load_n(&o->seq, __ATOMIC_ACQUIRE), s2;
		uint8_t *addr;
		uint64_t ver, got = 0;
		long bad;

		if (s1 & 1) {
			if (++spins % 64 == 0)
				sched_yield();
			continue;
		}
		addr = in_view(__atomic_load_n(&o->addr, __ATOMIC_RELAXED), v);
		ver = __atomic_load_n(&o->version, __ATOMIC_RELAXED);
		bad = obj_check(id, addr, ver, &got);
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		s2 = __atomic_load_n(&o->seq, __ATOMIC_RELAXED);
		if (s1 != s2) {
			stat_add(&st_retries, 1);
			continue;
		}
		if (bad >= 0)
			report_bad("read", id, addr, ver, bad, got);
		stat_add(&st_reads, 1);
		return;
	}
}

static void mutator_write(int id, int v)
{
	struct obj *o = &objs[id];
	uint64_t got = 0;
	uint8_t *addr;
	long bad;

	if (obj_lock(o)) {
		fail("write: object %d locked for %d s", id, STUCK_MS / 1000);
		return;
	}
	addr = in_view(o->addr, v);
	bad = obj_check(id, addr, o->version, &got);
	if (bad >= 0) {
		report_bad("write", id, addr, o->version, bad, got);
	} else {
		obj_write(id, addr, o->version + 1);
		__atomic_store_n(&o->version, o->version + 1, __ATOMIC_RELAXED);
		stat_add(&st_writes, 1);
	}
	obj_unlock(o);
}

static void *mutator(void *arg)
{
	struct mutator *m = arg;

	while (!__atomic_load_n(&stop, __ATOMIC_SEQ_CST)) {
		int id = rand_r(&m->seed) % nobj;
		int wr = rand_r(&m->seed) % 4 == 0;
		int v = rand_r(&m->seed) % NVIEWS;

		/* odd: in an access (a full barrier before the loads below) */
		__atomic_add_fetch(&m->qs, 1, __ATOMIC_SEQ_CST);
		if (wr)
			mutator_write(id, v);
		else
			mutator_read(id, v);
		__atomic_add_fetch(&m->qs, 1, __ATOMIC_SEQ_CST);
		__atomic_add_fetch(&m->accesses, 1, __ATOMIC_RELAXED);
	}
	return NULL;
}

/* Reads the fault events (to-space faults) and checks them; never resolves. */
static void *event_reader(void *arg)
{
	struct uffdx_event ev[16];
	int i, n, s, v, ok;

	(void)arg;
	while (!__atomic_load_n(&stop_events, __ATOMIC_SEQ_CST)) {
		n = wait_fd(ctx, POLLIN, 20);
		if (n <= 0) {
			if (n < 0)
				fail("poll: %s", strerror(-n));
			continue;
		}
		n = uffdx_read_events(ctx, ev, 16);
		if (n == -EAGAIN)
			continue;
		if (n < 0) {
			fail("read events: %s", strerror(-n));
			continue;
		}
		for (i = 0; i < n; i++) {
			ok = 0;
			for (s = 0; s < 2; s++)
				for (v = 0; v < NVIEWS; v++)
					if (ev[i].region_id == space[s].id &&
					    ev[i].offset < space[s].len && !(ev[i].offset % ps) &&
					    ev[i].address == (uintptr_t)view[v][s] + ev[i].offset)
						ok = 1;
			if (ev[i].type != UFFDX_EVENT_PAGEFAULT || !ok ||
			    (ev[i].flags & ~UFFDX_PF_WRITE))
				fail("bad event: type %u flags 0x%x region %llu offset 0x%llx address 0x%llx",
				     ev[i].type, ev[i].flags, (unsigned long long)ev[i].region_id,
				     (unsigned long long)ev[i].offset,
				     (unsigned long long)ev[i].address);
		}
		stat_add(&st_events, (unsigned long)n);
	}
	return NULL;
}

/* Wait until no mutator is in an access it began before now. */
static int quiesce(void)
{
	uint64_t snap[64], end = now_ns() + (uint64_t)STUCK_MS * 1000000ull;
	int i;

	for (i = 0; i < nmutators; i++)
		snap[i] = __atomic_load_n(&mut[i].qs, __ATOMIC_SEQ_CST);
	for (i = 0; i < nmutators; i++) {
		while ((snap[i] & 1) &&
		       __atomic_load_n(&mut[i].qs, __ATOMIC_SEQ_CST) == snap[i]) {
			if (now_ns() > end)
				return -1;
			sched_yield();
		}
	}
	return 0;
}

/* A batch of objects being moved together. */
struct batch {
	int *ids;		/* nobj of them */
	uint8_t **to;		/* new (view 0) address of each */
	int nids;
	int locked;		/* ids are locked (else published already) */
	struct uffdx_move_entry ent[UFFDX_MOVE_VEC_MAX];
	int nent;
	uint64_t bytes;
};

static int batch_add(struct batch *b, int id, uint8_t *to)
{
	struct obj *o = &objs[id];

	if (obj_lock(o)) {
		fail("collector: object %d locked for %d s", id, STUCK_MS / 1000);
		return -1;
	}
	b->ids[b->nids] = id;
	b->to[b->nids] = to;
	b->nids++;
	if (!b->locked) {
		/* eager forwarding: publish before the move */
		__atomic_store_n(&o->addr, to, __ATOMIC_RELAXED);
		obj_unlock(o);
	}
	return 0;
}

/* After the move: publish (if not yet) and unlock; count it if it moved. */
static void batch_finish(struct batch *b, int moved)
{
	int i;

	for (i = 0; i < b->nids; i++) {
		struct obj *o = &objs[b->ids[i]];

		if (!b->locked) {
			o->moves += moved;
			continue;
		}
		if (moved) {
			__atomic_store_n(&o->addr, b->to[i], __ATOMIC_RELAXED);
			o->moves++;
		}
		obj_unlock(o);
	}
	if (moved) {
		stat_add(&st_moved_objs, (unsigned long)b->nids);
		stat_add(&st_moved_pages, (unsigned long)(b->bytes / ps));
	}
	b->nids = b->nent = 0;
	b->bytes = 0;
}

/* uffdx_wake() the destination of every entry (after DONTWAKE). */
static int batch_wake(struct batch *b, int t, int cycle)
{
	int i, v, ret;

	for (i = 0; i < b->nent; i++) {
		uint64_t off = 0;

		for (v = 0; v < NVIEWS; v++)
			if ((uint8_t *)(uintptr_t)b->ent[i].dst >= view[v][t] &&
			    (uint8_t *)(uintptr_t)b->ent[i].dst < view[v][t] + space[t].len)
				off = (uint64_t)((uint8_t *)(uintptr_t)b->ent[i].dst - view[v][t]);
		ret = uffdx_wake(ctx, space[t].id, off, b->ent[i].len);
		stat_add(&st_wakes, 1);
		if (ret) {
			fail("cycle %d: wake of to-space offset 0x%llx: %s", cycle,
			     (unsigned long long)off, strerror(-ret));
			return -1;
		}
	}
	return 0;
}

static int batch_move_vec(struct batch *b, int cycle, int t, uint32_t mode)
{
	uint64_t moved = 0;
	int i, ret;

	if (!b->nent)
		return 0;
	for (i = 0; i < b->nent; i++)
		b->ent[i].result = 0x5a5a5a5a;	/* must be overwritten */
	ret = uffdx_move_vec(ctx, b->ent, (unsigned int)b->nent, mode, &moved);
	stat_add(&st_vec_calls, 1);
	for (i = 0; i < b->nent; i++)
		if (b->ent[i].result != (int64_t)b->ent[i].len)
			break;
	if (ret || moved != b->bytes || i < b->nent) {
		fail("cycle %d: uffdx_move_vec of %d entries (mode 0x%x): %s, moved %llu of %llu",
		     cycle, b->nent, mode, ret ? strerror(-ret) : "ok",
		     (unsigned long long)moved, (unsigned long long)b->bytes);
		for (i = 0; i < b->nent; i++)
			if (b->ent[i].result != (int64_t)b->ent[i].len)
				ksft_print_msg("  entry %d: %s -> %s, %llu pages: result %lld\n", i,
					       where((uint8_t *)(uintptr_t)b->ent[i].src),
					       where((uint8_t *)(uintptr_t)b->ent[i].dst),
					       (unsigned long long)(b->ent[i].len / ps),
					       (long long)b->ent[i].result);
		batch_finish(b, 0);
		return -1;
	}
	if ((mode & UFFDX_MOVE_DONTWAKE) && batch_wake(b, t, cycle)) {
		batch_finish(b, 1);
		return -1;
	}
	batch_finish(b, 1);
	return 0;
}

static int batch_move_addr(struct batch *b, int cycle)
{
	int64_t res = 0;
	int ret;

	if (!b->nent)
		return 0;
	ret = uffdx_move_addr(ctx, (void *)(uintptr_t)b->ent[0].dst,
			      (void *)(uintptr_t)b->ent[0].src, b->ent[0].len, 0, &res);
	stat_add(&st_addr_calls, 1);
	if (ret || res != (int64_t)b->ent[0].len) {
		fail("cycle %d: uffdx_move_addr %s -> %s, %llu pages: %s, result %lld",
		     cycle, where((uint8_t *)(uintptr_t)b->ent[0].src),
		     where((uint8_t *)(uintptr_t)b->ent[0].dst),
		     (unsigned long long)(b->ent[0].len / ps),
		     ret ? strerror(-ret) : "ok", (long long)res);
		batch_finish(b, 0);
		return -1;
	}
	batch_finish(b, 1);
	return 0;
}

static int cmp_addr(const void *a, const void *b)
{
	const uint8_t *x = objs[*(const int *)a].addr, *y = objs[*(const int *)b].addr;

	return x < y ? -1 : x > y;
}

/* One collection, from-space f to to-space t (see the top). */
static int collect(int cycle, int f, int t, unsigned int *seed)
{
	static struct batch b;
	int variant = cycle % NVARIANTS, runs = variant == 1 || variant == 2, i, *order;
	uint32_t mode = variant == 4 ? UFFDX_MOVE_DONTWAKE : 0;
	uint8_t *to = space[t].addr, *run_end = NULL;
	int run_cap = 0, run_pages = 0;

	order = malloc(sizeof(*order) * (size_t)nobj);
	if (!b.ids) {
		b.ids = calloc((size_t)nobj, sizeof(*b.ids));
		b.to = calloc((size_t)nobj, sizeof(*b.to));
	}
	if (!order || !b.ids || !b.to) {
		free(order);
		fail("malloc");
		return -1;
	}
	for (i = 0; i < nobj; i++)
		order[i] = i;
	if (runs) {
		/* addresses are stable: only the collector changes them */
		qsort(order, nobj, sizeof(*order), cmp_addr);
	} else {
		for (i = nobj - 1; i > 0; i--) {
			int k = rand_r(seed) % (i + 1), x = order[i];

			order[i] = order[k];
			order[k] = x;
		}
	}
	b.nids = b.nent = 0;
	b.bytes = 0;
	b.locked = variant < 3;
	for (i = 0; i < nobj && !errors; i++) {
		int id = order[i];
		struct obj *o = &objs[id];
		uint64_t len = (uint64_t)o->pages * ps;
		uint8_t *from = o->addr;

		if (space_of(from) != f) {
			fail("cycle %d: object %d is at %s, not in from-space %d", cycle, id,
			     where(from), f);
			break;
		}
		if (!runs) {
			if (batch_add(&b, id, to))
				break;
			b.ent[b.nent].dst = (uintptr_t)in_view(to, rand_r(seed) % NVIEWS);
			b.ent[b.nent].src = (uintptr_t)in_view(from, rand_r(seed) % NVIEWS);
			b.ent[b.nent].len = len;
			b.nent++;
			b.bytes += len;
			if (b.nent == batch && batch_move_vec(&b, cycle, t, mode))
				break;
		} else {
			/* extend the current run, or start a new one */
			int extend = b.nent && from == run_end &&
				     run_pages + (int)o->pages <= run_cap;

			if (!extend) {
				if (variant == 1 && batch_move_addr(&b, cycle))
					break;
				if (variant == 2 && b.nent == batch &&
				    batch_move_vec(&b, cycle, t, mode))
					break;
				run_cap = 1 + rand_r(seed) % (variant == 1 ? RUN_MAX_PAGES : 16);
				run_pages = 0;
				b.ent[b.nent].dst = (uintptr_t)in_view(to, rand_r(seed) % NVIEWS);
				b.ent[b.nent].src = (uintptr_t)in_view(from, rand_r(seed) % NVIEWS);
				b.ent[b.nent].len = 0;
				b.nent++;
			}
			if (batch_add(&b, id, to))
				break;
			b.ent[b.nent - 1].len += len;
			b.bytes += len;
			run_pages += (int)o->pages;
			run_end = from + len;
		}
		to += len;
	}
	if (!errors) {
		if (variant == 1)
			batch_move_addr(&b, cycle);
		else
			batch_move_vec(&b, cycle, t, mode);
	}
	if (b.nids)	/* an error left objects locked */
		batch_finish(&b, 0);
	free(order);
	return errors ? -1 : 0;
}

static uint64_t resident(int s)
{
	struct uffdx_region_info info;
	int ret = uffdx_region_info(space[s].fd, &info);

	if (ret) {
		fail("region info: %s", strerror(-ret));
		return 0;
	}
	return info.resident;
}

static int arm(int s, int on)
{
	int ret = on ? uffdx_arm(ctx, space[s].id, 0, space[s].len, UFFDX_ARM_MISSING) :
		       uffdx_disarm(ctx, space[s].id, 0, space[s].len);

	if (ret)
		fail("%s space %d: %s", on ? "arm" : "disarm", s, strerror(-ret));
	return ret;
}

/* Every page of space s from page p on reads as zeroes, through each view. */
static void check_empty(const char *what, int s, long from)
{
	long p;
	int v;

	for (v = 0; v < NVIEWS; v++)
		for (p = from; p < npages && !errors; p++) {
			const uint8_t *page = view[v][s] + (size_t)p * ps;

			if (!is_zero(page, ps))
				fail("%s: space %d page %ld (view %d) is not empty (word 0 0x%llx)",
				     what, s, p, v, (unsigned long long)*(const uint64_t *)page);
		}
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/*
 * No mapping of from-space f may still map a page that moved: every page
 * mapped in f, through either view, reads as zeroes (a stale reader's fill)
 * and (when pagemap shows PFNs: root) is none of to-space t's pages.
 */
static void check_from_ptes(int cycle, int f, int t)
{
	static uint64_t *pm, *pfns;
	size_t npfn = 0;
	long p;
	int v, ret;

	if (!pm) {
		pm = calloc((size_t)npages, sizeof(*pm));
		pfns = calloc((size_t)npages * NVIEWS, sizeof(*pfns));
		if (!pm || !pfns) {
			fail("calloc");
			return;
		}
	}
	for (v = 0; v < NVIEWS; v++) {
		ret = pagemap_read(view[v][t], (size_t)live_pages, pm);
		if (ret) {
			fail("pagemap: %s", strerror(-ret));
			return;
		}
		for (p = 0; p < live_pages; p++)
			if ((pm[p] & PM_PRESENT) && PM_PFN(pm[p]))
				pfns[npfn++] = PM_PFN(pm[p]);
	}
	qsort(pfns, npfn, sizeof(*pfns), cmp_u64);
	for (v = 0; v < NVIEWS && !errors; v++) {
		ret = pagemap_read(view[v][f], (size_t)npages, pm);
		if (ret) {
			fail("pagemap: %s", strerror(-ret));
			return;
		}
		for (p = 0; p < npages && !errors; p++) {
			const uint8_t *page = view[v][f] + (size_t)p * ps;
			uint64_t pfn = PM_PFN(pm[p]);

			if (!(pm[p] & PM_PRESENT))
				continue;
			if (pfn && bsearch(&pfn, pfns, npfn, sizeof(*pfns), cmp_u64))
				fail("cycle %d: from-space %d page %ld (view %d) still maps pfn 0x%llx, now a to-space page",
				     cycle, f, p, v, (unsigned long long)pfn);
			else if (!is_zero(page, ps))
				fail("cycle %d: from-space %d page %ld (view %d) is mapped and not empty (word 0 0x%llx)",
				     cycle, f, p, v, (unsigned long long)*(const uint64_t *)page);
		}
	}
}

/*
 * After a cycle: nothing of from-space f is still mapped or readable; (every
 * FULL_SCAN cycles) all of it reads as zeroes; discard it; check counts.
 */
static void clean_from(int cycle, int f, int t)
{
	char what[64];
	uint64_t res;
	int64_t dres = 0;
	int ret;

	res = resident(f);
	stat_add(&st_stale_fills, (unsigned long)(res / ps));
	check_from_ptes(cycle, f, t);
	if (cycle % FULL_SCAN == FULL_SCAN - 1) {
		snprintf(what, sizeof(what), "cycle %d: from-space after evacuation", cycle);
		check_empty(what, f, 0);
	}
	ret = uffdx_discard(ctx, space[f].id, 0, space[f].len, &dres);
	if (ret || dres != (int64_t)space[f].len)
		fail("cycle %d: discard of from-space: %s, result %lld", cycle,
		     ret ? strerror(-ret) : "ok", (long long)dres);
	res = resident(f);
	if (res)
		fail("cycle %d: from-space resident %llu bytes after discard", cycle,
		     (unsigned long long)res);
	res = resident(t);
	if (res != (uint64_t)live_pages * ps)
		fail("cycle %d: to-space resident %llu bytes, want %llu", cycle,
		     (unsigned long long)res, (unsigned long long)live_pages * ps);
}

/* Wait until every mutator did MIN_PROGRESS accesses since *since. */
static int wait_progress(uint64_t *since)
{
	uint64_t end = now_ns() + (uint64_t)STUCK_MS * 1000000ull;
	int i;

	for (i = 0; i < nmutators; i++) {
		while (__atomic_load_n(&mut[i].accesses, __ATOMIC_RELAXED) < since[i] + MIN_PROGRESS) {
			if (errors)
				return 0;
			if (now_ns() > end)
				return -1;
			usleep(500);
		}
		since[i] = __atomic_load_n(&mut[i].accesses, __ATOMIC_RELAXED);
	}
	return 0;
}

/* Quiet now: every object, through both views; the rest of both spaces. */
static void verify_final(int cur)
{
	uint8_t *end = (uint8_t *)space[cur].addr + (size_t)live_pages * ps;
	uint64_t res = resident(cur), res2 = resident(!cur);
	int id, v;

	if (res != (uint64_t)live_pages * ps || res2)
		fail("final: resident %llu and %llu bytes, want %llu and 0",
		     (unsigned long long)res, (unsigned long long)res2,
		     (unsigned long long)live_pages * ps);
	for (id = 0; id < nobj && !errors; id++) {
		struct obj *o = &objs[id];

		if (o->seq & 1)
			fail("final: object %d still locked", id);
		if (o->addr < (uint8_t *)space[cur].addr || o->addr >= end)
			fail("final: object %d at %s, outside the compacted space", id,
			     where(o->addr));
		for (v = 0; v < NVIEWS && !errors; v++) {
			uint8_t *addr = in_view(o->addr, v);
			uint64_t got = 0;
			long bad = obj_check(id, addr, o->version, &got);

			if (bad >= 0)
				report_bad("final", id, addr, o->version, bad, got);
		}
	}
	check_empty("final: past the objects", cur, live_pages);
	check_empty("final: the other space", !cur, 0);
}

static void usage(const char *argv0)
{
	fprintf(stderr, "usage: %s [-s SECONDS | -n CYCLES] [-p PAGES] [-m MUTATORS] [-b BATCH]\n",
		argv0);
	exit(KSFT_FAIL);
}

int main(int argc, char **argv)
{
	uint64_t deadline = 0, since[64] = { 0 }, start, moves_min = ~0ull, moves_max = 0;
	unsigned int seed = 12345;
	int opt, i, s, cur = 0, c, ret;
	pthread_t evth;
	uint8_t *p;

	while ((opt = getopt(argc, argv, "s:n:p:m:b:h")) != -1) {
		switch (opt) {
		case 's': seconds = atoi(optarg); break;
		case 'n': cycles = atoi(optarg); break;
		case 'p': npages = atoi(optarg); break;
		case 'm': nmutators = atoi(optarg); break;
		case 'b': batch = atoi(optarg); break;
		default: usage(argv[0]);
		}
	}
	if (seconds < 0 || cycles < 1 || npages < 2 * OBJ_MAX_PAGES || nmutators < 1 ||
	    nmutators > 64 || batch < 1 || batch > UFFDX_MOVE_VEC_MAX)
		usage(argv[0]);

	ksft_print_header();
	if (!uffdx_present())
		ksft_exit_skip(UFFDX_DEV " not present (uffdx module not loaded)\n");
	ctx = ctx_open(DEFAULT_FEATURES | UFFDX_FEATURE_MOVE, O_NONBLOCK);
	if (ctx == -EINVAL)
		ksft_exit_skip("the module does not offer UFFDX_FEATURE_MOVE\n");
	ksft_set_plan(1);
	if (ctx < 0)
		ksft_exit_fail_msg("context: %s\n", strerror(-ctx));

	for (s = 0; s < 2; s++) {
		ret = uffdx_region_map(ctx, (uint64_t)npages * ps, 0, &space[s]);
		if (ret)
			ksft_exit_fail_msg("region %d: %s\n", s, strerror(-ret));
		view[0][s] = space[s].addr;
		for (i = 1; i < NVIEWS; i++) {
			view[i][s] = mmap(NULL, space[s].len, PROT_READ | PROT_WRITE, MAP_SHARED,
					  space[s].fd, 0);
			if (view[i][s] == MAP_FAILED)
				ksft_exit_fail_msg("second mapping: %s\n", strerror(errno));
		}
	}
	/* objects of 1..4 pages, half of a space in all */
	objs = calloc((size_t)npages, sizeof(*objs));
	mut = calloc((size_t)nmutators, sizeof(*mut));
	if (!objs || !mut)
		ksft_exit_fail_msg("calloc\n");
	p = space[0].addr;
	for (nobj = 0; live_pages < npages / 2; nobj++) {
		struct obj *o = &objs[nobj];

		o->pages = 1 + (uint32_t)(mix((uint64_t)nobj) % OBJ_MAX_PAGES);
		o->addr = p;
		obj_write(nobj, p, 0);
		p += (size_t)o->pages * ps;
		live_pages += (int)o->pages;
	}
	ksft_print_msg("stress_move: 2 x %d pages (%d views), %d objects (%d pages), %d mutators, batch %d, %d %s\n",
		       npages, NVIEWS, nobj, live_pages, nmutators, batch,
		       seconds ? seconds : cycles, seconds ? "s" : "cycles");

	if (pthread_create(&evth, NULL, event_reader, NULL))
		ksft_exit_fail_msg("pthread_create\n");
	for (i = 0; i < nmutators; i++) {
		mut[i].seed = (unsigned int)(i * 104729 + 7);
		if (pthread_create(&mut[i].th, NULL, mutator, &mut[i]))
			ksft_exit_fail_msg("pthread_create\n");
	}
	start = now_ns();
	if (seconds)
		deadline = start + (uint64_t)seconds * 1000000000ull;
	for (c = 0; !errors; c++) {
		if (c && (seconds ? now_ns() >= deadline : c >= cycles))
			break;
		/* from-space unarmed: stale readers' holes zero-fill */
		if (arm(cur, 0) || arm(!cur, 1))
			break;
		if (collect(c, cur, !cur, &seed))
			break;
		if (quiesce()) {
			fail("cycle %d: a mutator stayed in one access for %d s", c, STUCK_MS / 1000);
			break;
		}
		clean_from(c, cur, !cur);
		cur = !cur;
		if (!seconds && wait_progress(since))
			fail("cycle %d: mutators made no progress for %d s", c, STUCK_MS / 1000);
	}
	__atomic_store_n(&stop, 1, __ATOMIC_SEQ_CST);
	/* wakes anyone a failed move left asleep */
	for (s = 0; s < 2; s++)
		uffdx_disarm(ctx, space[s].id, 0, space[s].len);
	for (i = 0; i < nmutators; i++)
		pthread_join(mut[i].th, NULL);
	__atomic_store_n(&stop_events, 1, __ATOMIC_SEQ_CST);
	pthread_join(evth, NULL);
	if (!errors)
		verify_final(cur);
	for (i = 0; i < nobj; i++) {
		moves_min = objs[i].moves < moves_min ? objs[i].moves : moves_min;
		moves_max = objs[i].moves > moves_max ? objs[i].moves : moves_max;
	}

	ksft_print_msg("%.1f s: %d cycles; moved %lu objects (%lu pages, %llu-%llu moves each) in %lu vec and %lu addr calls; reads %lu (retries %lu), writes %lu, lock waits %lu; stale zero-fills %lu; to-space fault events %lu, wakes %lu\n",
		       (double)(now_ns() - start) / 1e9, c, st_moved_objs, st_moved_pages,
		       (unsigned long long)moves_min, (unsigned long long)moves_max,
		       st_vec_calls, st_addr_calls, st_reads, st_retries, st_writes,
		       st_lock_waits, st_stale_fills, st_events, st_wakes);
	if (!errors && (st_moved_objs == 0 || st_reads + st_writes == 0))
		fail("no progress: %lu objects moved, %lu accesses", st_moved_objs,
		     st_reads + st_writes);
	if (errors)
		ksft_print_msg("%d errors; first: %s\n", errors, first_err);
	ksft_test_result(!errors, "stress_move\n");
	for (s = 0; s < 2; s++) {
		for (i = 1; i < NVIEWS; i++)
			munmap(view[i][s], space[s].len);
		uffdx_region_unmap(&space[s]);
	}
	close(ctx);
	ksft_finished();
}
