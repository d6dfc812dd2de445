// SPDX-License-Identifier: GPL-2.0
/*
 * uffdx UFFDX_IOC_RESOLVE tests (issue 11): batches of resolutions that
 * succeed (COPY, ZERO, POISON, WAKE, MOVE from a staging mapping), the
 * steady-state handler loop, a batch that fails in the middle or does part
 * of an entry, timeouts, NOWAIT, signals, faulters and handlers killed,
 * events shared between RESOLVE and read() in two threads, and malformed
 * arguments.
 *
 * Every wait is bounded: either by the call's own timeout_ns, or by a
 * thread-directed signal (never a process-wide one: a faulter that takes a
 * signal faults again and queues a second event).  Liveness is checked by
 * progress, never by how long something took.
 */
#include "helpers.h"

#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kselftest_harness.h"

#define NPAGES 64

/* What the module must not write, or has not written yet. */
#define SENT32 0xa5a5a5a5u
#define SENT64 ((int64_t)0x5a5a5a5a5a5a5a5aLL)
/* A timeout long enough for anything that must happen (a TCG guest is slow). */
#define WAIT_NS ((int64_t)WAIT_MS * 1000000LL)

/* ---- helpers ----------------------------------------------------------------- */

static struct uffdx_resolution resolution(uint32_t op, uint64_t id, uint64_t off,
					  uint64_t len, const void *src, uint32_t mode)
{
	struct uffdx_resolution r;

	memset(&r, 0, sizeof(r));
	r.op = op;
	r.mode = mode;
	r.region_id = id;
	r.offset = off;
	r.len = len;
	r.src = (uintptr_t)src;
	r.result = SENT64;
	return r;
}

static void rs_init(struct uffdx_resolve *rs, struct uffdx_resolution *res, unsigned int nr,
		    struct uffdx_event *ev, unsigned int max, int64_t timeout_ns, uint32_t flags)
{
	memset(rs, 0, sizeof(*rs));
	rs->size = sizeof(*rs);
	rs->flags = flags;
	rs->resolutions = (uintptr_t)res;
	rs->nr_resolutions = nr;
	rs->resolution_size = sizeof(struct uffdx_resolution);
	rs->events = (uintptr_t)ev;
	rs->max_events = max;
	rs->timeout_ns = timeout_ns;
	rs->nr_done = SENT32;
	rs->nr_events = SENT32;
}

/* The raw ioctl: its value with errno kept; the struct as the module left it in *out. */
static int rsv(int ctx, struct uffdx_resolution *res, unsigned int nr, struct uffdx_event *ev,
	       unsigned int max, int64_t timeout_ns, uint32_t flags, struct uffdx_resolve *out)
{
	struct uffdx_resolve rs;
	int ret, err;

	rs_init(&rs, res, nr, ev, max, timeout_ns, flags);
	ret = ioctl(ctx, UFFDX_IOC_RESOLVE, &rs);
	err = errno;
	if (out)
		*out = rs;
	errno = err;
	return ret;
}

/* A "key:\tvalue" line of the context's fdinfo; -1 if absent. */
static long long ctx_fdinfo(int fd, const char *key)
{
	char path[64], buf[4096], *p;
	size_t klen = strlen(key);

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	if (read_str_file(path, buf, sizeof(buf)) <= 0)
		return -1;
	for (p = buf; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		if (!strncmp(p, key, klen) && p[klen] == ':')
			return strtoll(p + klen + 1, NULL, 0);
	return -1;
}

/* Events queued and not read yet (without taking them). */
static long long nr_pending(int ctx)
{
	return ctx_fdinfo(ctx, "uffdx-events-pending");
}

/* Wait until exactly n events are pending (bounded); returns the last count seen. */
static long long wait_pending(int ctx, long long n, int timeout_ms)
{
	uint64_t end = now_ns() + (uint64_t)timeout_ms * 1000000ull;
	long long got;

	for (;;) {
		got = nr_pending(ctx);
		if (got == n || now_ns() >= end)
			return got;
		usleep(1000);
	}
}

/* State letter of any task (/proc/PID/stat), 0 if gone. */
static char proc_state(pid_t pid)
{
	char path[64], buf[512], *p;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if (read_str_file(path, buf, sizeof(buf)) <= 0)
		return 0;
	p = strrchr(buf, ')');
	if (!p || p[1] != ' ')
		return 0;
	return p[2];
}

/* Wait until the thread tid of this process sleeps interruptibly: 1, or 0 on timeout. */
static int wait_thread_sleeping(pid_t tid, int timeout_ms)
{
	uint64_t end = now_ns() + (uint64_t)timeout_ms * 1000000ull;

	for (;;) {
		if (thread_state(tid) == 'S')
			return 1;
		if (now_ns() >= end)
			return 0;
		usleep(1000);
	}
}

static int wait_flag(volatile int *flag, int timeout_ms)
{
	uint64_t end = now_ns() + (uint64_t)timeout_ms * 1000000ull;

	while (!__atomic_load_n(flag, __ATOMIC_SEQ_CST)) {
		if (now_ns() >= end)
			return 0;
		usleep(1000);
	}
	return 1;
}

static void check_event(struct __test_metadata *_metadata, const struct uffdx_event *ev,
			const void *addr, uint64_t region_id, uint64_t offset,
			uint32_t flags, pid_t pid, pid_t tid)
{
	EXPECT_EQ(UFFDX_EVENT_PAGEFAULT, ev->type);
	EXPECT_EQ(flags, ev->flags);
	EXPECT_EQ((uintptr_t)addr, ev->address);
	EXPECT_EQ(region_id, ev->region_id);
	EXPECT_EQ(offset, ev->offset);
	EXPECT_EQ((uint32_t)pid, ev->pid);
	EXPECT_EQ((uint32_t)tid, ev->tid);
	EXPECT_EQ(0, ev->__pad);
	EXPECT_EQ(0, ev->reserved[0]);
	EXPECT_EQ(0, ev->reserved[1]);
	EXPECT_EQ(0, ev->reserved[2]);
}

/* SIGUSR1 without SA_RESTART: interrupts a blocking call of the thread it is sent to. */
static volatile int usr1_count;

static void usr1_handler(int sig)
{
	(void)sig;
	__atomic_add_fetch(&usr1_count, 1, __ATOMIC_SEQ_CST);
}

static void usr1_install(void)
{
	struct sigaction sa;
	sigset_t set;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = usr1_handler;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR1, &sa, NULL);
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);
}

/*
 * A RESOLVE call in its own thread, for calls that wait: the test watches
 * it, and can interrupt it with pthread_kill(SIGUSR1).
 */
struct waiter {
	int ctx;
	struct uffdx_resolution res[4];
	unsigned int nr;
	struct uffdx_event ev[8];
	unsigned int max;
	int64_t timeout_ns;
	uint32_t flags;
	struct uffdx_resolve out;
	int ret, err;
	volatile pid_t tid;
	volatile int started, done;
	pthread_t th;
};

static void *waiter_thread(void *p)
{
	struct waiter *w = p;

	w->tid = sys_gettid();
	__atomic_store_n(&w->started, 1, __ATOMIC_SEQ_CST);
	w->ret = rsv(w->ctx, w->nr ? w->res : NULL, w->nr, w->ev, w->max, w->timeout_ns,
		     w->flags, &w->out);
	w->err = errno;
	__atomic_store_n(&w->done, 1, __ATOMIC_SEQ_CST);
	return NULL;
}

static void waiter_init(struct waiter *w, int ctx, unsigned int max, int64_t timeout_ns)
{
	memset(w, 0, sizeof(*w));
	memset(w->ev, 0xcc, sizeof(w->ev));
	w->ctx = ctx;
	w->max = max;
	w->timeout_ns = timeout_ns;
}

static int waiter_start(struct waiter *w)
{
	int ret = pthread_create(&w->th, NULL, waiter_thread, w);

	if (ret)
		return -ret;
	return wait_flag(&w->started, WAIT_MS) ? 0 : -ETIMEDOUT;
}

/* Wait for the call to return (bounded), interrupting it at the end if it did not. */
static int waiter_join(struct waiter *w, int timeout_ms)
{
	int ok = wait_flag(&w->done, timeout_ms), i;

	for (i = 0; !ok && i < 100; i++) {
		pthread_kill(w->th, SIGUSR1);
		ok = wait_flag(&w->done, 50);
	}
	pthread_join(w->th, NULL);
	return ok;
}

/* ---- fixture: a context, a 64-page region mapped and armed ------------------ */

FIXTURE(rs) {
	int ctx;
	int rfd;
	uint64_t id;
	size_t len;
	uint8_t *map;
	uint8_t *buf;	/* NPAGES pages: page k holds pattern k */
};

FIXTURE_SETUP(rs)
{
	int ret, k;

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
	ret = uffdx_arm(self->ctx, self->id, 0, self->len, UFFDX_ARM_MISSING);
	ASSERT_EQ(0, ret) TH_LOG("ARM: %s", strerror(-ret));
	self->buf = aligned_alloc(ps, NPAGES * ps);
	ASSERT_NE(NULL, self->buf);
	for (k = 0; k < NPAGES; k++)
		fill_pattern(self->buf + (size_t)k * ps, ps, 1000 + k);
	usr1_install();
}

FIXTURE_TEARDOWN(rs)
{
	if (self->ctx >= 0)
		close(self->ctx);	/* releases any faulter left asleep */
	if (self->map != MAP_FAILED)
		munmap(self->map, self->len);
	if (self->rfd >= 0)
		close(self->rfd);
	free(self->buf);
}

#define PAGE(i) (self->map + (size_t)(i) * ps)
#define SRC(i) (self->buf + (size_t)(i) * ps)

static uint64_t resident(int rfd)
{
	struct uffdx_region_info info;

	if (uffdx_region_info(rfd, &info))
		return (uint64_t)-1;
	return info.resident;
}

/*
 * Read n events with RESOLVE alone (no batch), bounded; returns how many.
 * The events land in ev[0..n).
 */
static int take_events(int ctx, struct uffdx_event *ev, int n)
{
	struct uffdx_resolve out;
	int got = 0, tries;

	for (tries = 0; got < n && tries < 20; tries++) {
		if (rsv(ctx, NULL, 0, ev + got, (unsigned int)(n - got), WAIT_NS / 4, 0, &out))
			return got;
		got += (int)out.nr_events;
	}
	return got;
}

/* ---- batches that succeed ----------------------------------------------------- */

TEST_F(rs, copy_batch_wakes_its_faulters_only)
{
	struct accessor *a[4];
	int pages[4] = { 1, 2, 3, 5 };
	struct uffdx_resolution res[2];
	struct uffdx_event ev[8];
	struct uffdx_resolve out;
	int i, n, seen[4] = { 0 };

	for (i = 0; i < 4; i++) {
		a[i] = acc_new(PAGE(pages[i]) + 17 * i, i == 1, 0x42);
		ASSERT_NE(NULL, a[i]);
		ASSERT_EQ(0, acc_start_thread(a[i]));
	}
	memset(ev, 0xcc, sizeof(ev));
	n = take_events(self->ctx, ev, 4);
	ASSERT_EQ(4, n) TH_LOG("got %d of 4 events", n);
	for (i = 0; i < n; i++) {
		int k, j = -1;

		for (k = 0; k < 4; k++)
			if (ev[i].offset == pages[k] * ps)
				j = k;
		ASSERT_LE(0, j) TH_LOG("offset 0x%llx", (unsigned long long)ev[i].offset);
		seen[j]++;
		check_event(_metadata, &ev[i], PAGE(pages[j]), self->id, pages[j] * ps,
			    j == 1 ? UFFDX_PF_WRITE : 0, getpid(), a[j]->tid);
	}
	for (i = 0; i < 4; i++)
		EXPECT_EQ(1, seen[i]) TH_LOG("page %d", pages[i]);

	/* page 1 alone, pages 2-3 in one entry; page 5 is not resolved */
	res[0] = resolution(_UFFDX_COPY, self->id, 1 * ps, ps, SRC(1), 0);
	res[1] = resolution(_UFFDX_COPY, self->id, 2 * ps, 2 * ps, SRC(2), 0);
	memset(ev, 0xcc, sizeof(ev));
	ASSERT_EQ(0, rsv(self->ctx, res, 2, ev, 8, 0, UFFDX_RESOLVE_NOWAIT, &out))
		TH_LOG("%s", strerror(errno));
	EXPECT_EQ(2, out.nr_done);
	EXPECT_EQ(0, out.nr_events);
	EXPECT_EQ((int64_t)ps, res[0].result);
	EXPECT_EQ((int64_t)(2 * ps), res[1].result);
	for (i = 0; i < 3; i++) {
		ASSERT_EQ(0, acc_wait(a[i], WAIT_MS)) TH_LOG("page %d faulter not woken", pages[i]);
		EXPECT_EQ(0, a[i]->sig);
	}
	EXPECT_EQ(SRC(1)[0], a[0]->first);
	EXPECT_EQ(checksum(SRC(1), ps), a[0]->sum);
	EXPECT_EQ(0x42, a[1]->first);	/* the write landed on the copied page */
	EXPECT_EQ(SRC(3)[34], a[2]->first);
	EXPECT_EQ(checksum(SRC(3), ps), a[2]->sum);
	EXPECT_EQ(-1, check_pattern(PAGE(1), ps, 1001));
	EXPECT_EQ(-1, check_pattern(PAGE(3), ps, 1003));
	EXPECT_EQ(3 * ps, resident(self->rfd));

	/* the faulter of page 5 was not woken, and faulted only once */
	EXPECT_TRUE(acc_blocked(a[3], QUIET_MS)) TH_LOG("a batch woke another page's faulter");
	EXPECT_EQ(0, nr_pending(self->ctx));
	res[0] = resolution(_UFFDX_COPY, self->id, 5 * ps, ps, SRC(5), 0);
	ASSERT_EQ(0, rsv(self->ctx, res, 1, ev, 8, 0, UFFDX_RESOLVE_NOWAIT, &out));
	EXPECT_EQ(1, out.nr_done);
	EXPECT_EQ(0, out.nr_events);
	ASSERT_EQ(0, acc_wait(a[3], WAIT_MS));
	EXPECT_EQ(SRC(5)[51], a[3]->first);
	for (i = 0; i < 4; i++)
		acc_free(a[i]);
}

/*
 * ZERO, POISON and WAKE in one batch, then the wait in the same call
 * returns the event of the WAKEd faulter, which faults again.
 */
TEST_F(rs, zero_poison_wake_then_next_event)
{
	struct accessor *z = acc_new(PAGE(10) + 1, 0, 0);
	struct accessor *p = acc_new(PAGE(11) + 2, 0, 0);
	struct accessor *w = acc_new(PAGE(12) + 3, 1, 0x77);
	struct uffdx_resolution res[3];
	struct uffdx_event ev[8];
	struct uffdx_resolve out;
	uint8_t v;

	ASSERT_NE(NULL, z);
	ASSERT_NE(NULL, p);
	ASSERT_NE(NULL, w);
	ASSERT_EQ(0, acc_start_thread(z));
	ASSERT_EQ(0, acc_start_thread(p));
	ASSERT_EQ(0, acc_start_thread(w));
	ASSERT_EQ(3, take_events(self->ctx, ev, 3));

	res[0] = resolution(_UFFDX_ZERO, self->id, 10 * ps, ps, NULL, 0);
	res[1] = resolution(_UFFDX_POISON, self->id, 11 * ps, ps, NULL, 0);
	res[2] = resolution(_UFFDX_WAKE, self->id, 12 * ps, ps, NULL, 0);
	memset(ev, 0xcc, sizeof(ev));
	ASSERT_EQ(0, rsv(self->ctx, res, 3, ev, 8, WAIT_NS, 0, &out)) TH_LOG("%s", strerror(errno));
	EXPECT_EQ(3, out.nr_done);
	EXPECT_EQ((int64_t)ps, res[0].result);
	EXPECT_EQ((int64_t)ps, res[1].result);
	EXPECT_EQ((int64_t)ps, res[2].result);
	/* the only new event: page 12 again, from the same thread */
	ASSERT_EQ(1, out.nr_events) TH_LOG("no event after the WAKE");
	check_event(_metadata, &ev[0], PAGE(12), self->id, 12 * ps, UFFDX_PF_WRITE, getpid(),
		    w->tid);
	EXPECT_EQ((uint16_t)0xcccc, ev[1].type);	/* nothing past nr_events */

	ASSERT_EQ(0, acc_wait(z, WAIT_MS));
	EXPECT_EQ(0, z->sig);
	EXPECT_EQ(0, z->first);
	EXPECT_TRUE(is_zero(PAGE(10), ps));
	ASSERT_EQ(0, acc_wait(p, WAIT_MS)) TH_LOG("POISON did not wake");
	EXPECT_EQ(SIGBUS, p->sig);
	EXPECT_EQ(SIGBUS, try_read(PAGE(11), &v));
	EXPECT_TRUE(acc_blocked(w, QUIET_MS));

	res[0] = resolution(_UFFDX_COPY, self->id, 12 * ps, ps, SRC(12), 0);
	ASSERT_EQ(0, rsv(self->ctx, res, 1, ev, 8, 0, UFFDX_RESOLVE_NOWAIT, &out));
	EXPECT_EQ(1, out.nr_done);
	EXPECT_EQ(0, out.nr_events);
	ASSERT_EQ(0, acc_wait(w, WAIT_MS));
	EXPECT_EQ(0, w->sig);
	EXPECT_EQ(0x77, w->first);
	EXPECT_EQ(2 * ps, resident(self->rfd));	/* pages 10 and 12; poison is not resident */
	acc_free(z);
	acc_free(p);
	acc_free(w);
}

TEST_F(rs, dontwake_mode_then_wake_resolution)
{
	struct accessor *a = acc_new(PAGE(8) + 8, 0, 0);
	struct uffdx_resolution res[2];
	struct uffdx_event ev[2];
	struct uffdx_resolve out;

	ASSERT_NE(NULL, a);
	ASSERT_EQ(0, acc_start_thread(a));
	ASSERT_EQ(1, take_events(self->ctx, ev, 1));
	res[0] = resolution(_UFFDX_COPY, self->id, 8 * ps, ps, SRC(8), UFFDX_FILL_DONTWAKE);
	ASSERT_EQ(0, rsv(self->ctx, res, 1, ev, 2, 0, UFFDX_RESOLVE_NOWAIT, &out));
	EXPECT_EQ(1, out.nr_done);
	EXPECT_EQ((int64_t)ps, res[0].result);
	EXPECT_TRUE(acc_blocked(a, QUIET_MS)) TH_LOG("DONTWAKE resolution woke the faulter");
	res[0] = resolution(_UFFDX_WAKE, self->id, 0, self->len, NULL, 0);
	ASSERT_EQ(0, rsv(self->ctx, res, 1, ev, 2, 0, UFFDX_RESOLVE_NOWAIT, &out));
	EXPECT_EQ((int64_t)self->len, res[0].result);
	ASSERT_EQ(0, acc_wait(a, WAIT_MS)) TH_LOG("WAKE resolution did not wake");
	EXPECT_EQ(SRC(8)[8], a->first);
	EXPECT_EQ(checksum(SRC(8), ps), a->sum);
	acc_free(a);
}

/* MOVE from a staging region's mapping into the faulting region. */
TEST(move_from_staging_mapping)
{
	struct uffdx_region_map t, s;
	struct uffdx_resolution res[2];
	struct uffdx_event ev[4];
	struct uffdx_resolve out;
	struct accessor *a0, *a1;
	uint8_t *want, *ro;
	char path[64];
	int ctx, n, rofd;

	SKIP_IF_NO_UFFDX();
	ctx = ctx_open(DEFAULT_FEATURES | UFFDX_FEATURE_MOVE, 0);
	if (ctx == -EINVAL)
		SKIP(return, "UFFDX_FEATURE_MOVE not supported here");
	ASSERT_LE(0, ctx) TH_LOG("%s", strerror(-ctx));
	ASSERT_EQ(0, uffdx_region_map(ctx, 8 * ps, 0, &t));
	ASSERT_EQ(0, uffdx_region_map(ctx, 8 * ps, 0, &s));
	ASSERT_EQ(0, uffdx_arm(ctx, t.id, 0, 8 * ps, UFFDX_ARM_MISSING));
	want = malloc(2 * ps);
	ASSERT_NE(NULL, want);
	fill_pattern(want, 2 * ps, 2000);
	/* the handler stages two pages in its own (unarmed) region */
	memcpy(s.addr, want, 2 * ps);
	EXPECT_EQ(2 * ps, resident(s.fd));

	a0 = acc_new((uint8_t *)t.addr + 3 * ps + 5, 0, 0);
	a1 = acc_new((uint8_t *)t.addr + 4 * ps + 6, 0, 0);
	ASSERT_NE(NULL, a0);
	ASSERT_NE(NULL, a1);
	ASSERT_EQ(0, acc_start_thread(a0));
	ASSERT_EQ(0, acc_start_thread(a1));
	n = take_events(ctx, ev, 2);
	ASSERT_EQ(2, n);
	EXPECT_EQ(t.id, ev[0].region_id);

	res[0] = resolution(_UFFDX_MOVE, t.id, 3 * ps, 2 * ps, s.addr, 0);
	ASSERT_EQ(0, rsv(ctx, res, 1, ev, 4, 0, UFFDX_RESOLVE_NOWAIT, &out))
		TH_LOG("%s", strerror(errno));
	EXPECT_EQ(1, out.nr_done);
	EXPECT_EQ(0, out.nr_events);
	EXPECT_EQ((int64_t)(2 * ps), res[0].result);
	ASSERT_EQ(0, acc_wait(a0, WAIT_MS)) TH_LOG("MOVE did not wake");
	ASSERT_EQ(0, acc_wait(a1, WAIT_MS));
	EXPECT_EQ(0, a0->sig);
	EXPECT_EQ(want[5], a0->first);
	EXPECT_EQ(checksum(want, ps), a0->sum);
	EXPECT_EQ(want[ps + 6], a1->first);
	EXPECT_EQ(0, memcmp((uint8_t *)t.addr + 3 * ps, want, 2 * ps));
	/* moved, not copied: the staging slots are holes again */
	EXPECT_EQ(0, resident(s.fd));
	EXPECT_EQ(2 * ps, resident(t.fd));

	/* a source hole: ENOENT, nothing done; ALLOW_SRC_HOLES: counted as moved */
	res[0] = resolution(_UFFDX_MOVE, t.id, 5 * ps, ps, (uint8_t *)s.addr + 6 * ps, 0);
	EXPECT_EQ(-1, rsv(ctx, res, 1, ev, 4, 0, UFFDX_RESOLVE_NOWAIT, &out));
	EXPECT_EQ(ENOENT, errno);
	EXPECT_EQ(0, out.nr_done);
	EXPECT_EQ(-ENOENT, res[0].result);
	res[0] = resolution(_UFFDX_MOVE, t.id, 5 * ps, ps, (uint8_t *)s.addr + 6 * ps,
			    UFFDX_MOVE_ALLOW_SRC_HOLES);
	EXPECT_EQ(0, rsv(ctx, res, 1, ev, 4, 0, UFFDX_RESOLVE_NOWAIT, &out)) TH_LOG("%s", strerror(errno));
	EXPECT_EQ(1, out.nr_done);
	EXPECT_EQ((int64_t)ps, res[0].result);
	/* onto a populated page: EEXIST */
	memcpy((uint8_t *)s.addr + 7 * ps, want, ps);
	res[0] = resolution(_UFFDX_MOVE, t.id, 3 * ps, ps, (uint8_t *)s.addr + 7 * ps, 0);
	EXPECT_EQ(-1, rsv(ctx, res, 1, ev, 4, 0, UFFDX_RESOLVE_NOWAIT, &out));
	EXPECT_EQ(EEXIST, errno);
	EXPECT_EQ(-EEXIST, res[0].result);
	EXPECT_EQ(ps, resident(s.fd));
	/* the source is not a region mapping: EINVAL */
	res[0] = resolution(_UFFDX_MOVE, t.id, 6 * ps, ps, want, 0);
	EXPECT_EQ(-1, rsv(ctx, res, 1, ev, 4, 0, UFFDX_RESOLVE_NOWAIT, &out));
	EXPECT_EQ(EINVAL, errno);
	/* an unknown mode bit: EINVAL */
	res[0] = resolution(_UFFDX_MOVE, t.id, 6 * ps, ps, (uint8_t *)s.addr + 7 * ps, 0x100);
	EXPECT_EQ(-1, rsv(ctx, res, 1, ev, 4, 0, UFFDX_RESOLVE_NOWAIT, &out));
	EXPECT_EQ(EINVAL, errno);
	/* a mapping of a read-only region fd: EBADF */
	snprintf(path, sizeof(path), "/proc/self/fd/%d", s.fd);
	rofd = open(path, O_RDONLY | O_CLOEXEC);
	ASSERT_LE(0, rofd) TH_LOG("%s", strerror(errno));
	ro = mmap(NULL, 8 * ps, PROT_READ, MAP_SHARED, rofd, 0);
	ASSERT_NE(MAP_FAILED, ro);
	res[0] = resolution(_UFFDX_MOVE, t.id, 6 * ps, ps, ro + 7 * ps, 0);
	EXPECT_EQ(-1, rsv(ctx, res, 1, ev, 4, 0, UFFDX_RESOLVE_NOWAIT, &out));
	EXPECT_EQ(EBADF, errno);
	EXPECT_EQ(ps, resident(s.fd));
	EXPECT_EQ(2 * ps, resident(t.fd));
	munmap(ro, 8 * ps);
	close(rofd);
	acc_free(a0);
	acc_free(a1);
	free(want);
	uffdx_region_unmap(&s);
	uffdx_region_unmap(&t);
	close(ctx);
}

/* ---- the steady-state handler loop --------------------------------------------- */

#define LOOP_THREADS 4

struct loop_arg {
	uint8_t *map;
	int idx, nthreads;
	volatile pid_t tid;
	volatile int done;
	char err[128];
};

/* Touch the pages idx, idx + nthreads, ...: a write of the byte the page will hold, or a read. */
static void *loop_faulter(void *p)
{
	struct loop_arg *t = p;
	uint8_t *want = malloc(ps);
	int k;

	t->tid = sys_gettid();
	for (k = t->idx; want && k < NPAGES && !t->err[0]; k += t->nthreads) {
		uint8_t *page = t->map + (size_t)k * ps;
		size_t off = (size_t)(k * 37) % ps;
		uint8_t v;
		int sig;

		fill_pattern(want, ps, 1000 + k);
		if (k & 2)
			sig = try_write(page + off, want[off]);
		else
			sig = try_read(page + off, &v);
		if (sig)
			snprintf(t->err, sizeof(t->err), "page %d: signal %d", k, sig);
		else if (check_pattern(page, ps, 1000 + k) != -1)
			snprintf(t->err, sizeof(t->err), "page %d: wrong contents", k);
	}
	free(want);
	__atomic_store_n(&t->done, 1, __ATOMIC_SEQ_CST);
	return NULL;
}

/*
 * One call per round: resolve the events of the previous round, wait for
 * the next ones.  Every page is faulted once, by one thread, and resolved
 * once.
 */
TEST_F_TIMEOUT(rs, steady_state_loop_several_threads, 120)
{
	struct loop_arg args[LOOP_THREADS];
	pthread_t th[LOOP_THREADS];
	struct uffdx_resolution res[16];
	struct uffdx_event ev[16];
	struct uffdx_resolve out;
	int seen[NPAGES] = { 0 };
	unsigned int nres = 0;
	int i, nev = 0, ndone = 0, calls = 0, last_nev = -1, last_ndone = -1;
	const uint64_t stall_ns = 20000000000ull;
	uint64_t last_progress = now_ns();

	for (i = 0; i < LOOP_THREADS; i++) {
		memset(&args[i], 0, sizeof(args[i]));
		args[i].map = self->map;
		args[i].idx = i;
		args[i].nthreads = LOOP_THREADS;
		ASSERT_EQ(0, pthread_create(&th[i], NULL, loop_faulter, &args[i]));
	}
	while (now_ns() - last_progress < stall_ns) {
		int ret = rsv(self->ctx, res, nres, ev, 16, 50000000, 0, &out);

		calls++;
		ASSERT_EQ(0, ret) TH_LOG("call %d: %s (nr_done %u of %u)", calls, strerror(errno),
					 out.nr_done, nres);
		ASSERT_EQ(nres, out.nr_done);
		for (i = 0; i < (int)nres; i++)
			EXPECT_EQ((int64_t)ps, res[i].result);
		ASSERT_GE(16, out.nr_events);
		nres = 0;
		for (i = 0; i < (int)out.nr_events; i++) {
			uint64_t k = ev[i].offset / ps;

			ASSERT_LT(k, NPAGES) TH_LOG("offset 0x%llx", (unsigned long long)ev[i].offset);
			nev++;
			seen[k]++;
			EXPECT_EQ(self->id, ev[i].region_id);
			EXPECT_EQ((uintptr_t)PAGE(k), ev[i].address);
			EXPECT_EQ((k & 2) ? UFFDX_PF_WRITE : 0, ev[i].flags);
			EXPECT_EQ((uint32_t)args[k % LOOP_THREADS].tid, ev[i].tid);
			res[nres++] = resolution(_UFFDX_COPY, self->id, k * ps, ps, SRC(k), 0);
		}
		for (ndone = 0, i = 0; i < LOOP_THREADS; i++)
			ndone += __atomic_load_n(&args[i].done, __ATOMIC_SEQ_CST);
		if (ndone == LOOP_THREADS && !nres)
			break;
		if (nev != last_nev || ndone != last_ndone) {
			last_nev = nev;
			last_ndone = ndone;
			last_progress = now_ns();
		}
	}
	ASSERT_EQ(LOOP_THREADS, ndone) TH_LOG("faulters stuck: no progress for 20 s (%d events)", nev);
	for (i = 0; i < LOOP_THREADS; i++) {
		pthread_join(th[i], NULL);
		EXPECT_EQ(0, args[i].err[0]) TH_LOG("thread %d: %s", i, args[i].err);
	}
	EXPECT_EQ(NPAGES, nev);
	for (i = 0; i < NPAGES; i++) {
		EXPECT_EQ(1, seen[i]) TH_LOG("page %d: %d events", i, seen[i]);
		EXPECT_EQ(-1, check_pattern(PAGE(i), ps, 1000 + i)) TH_LOG("page %d", i);
	}
	EXPECT_EQ(0, nr_pending(self->ctx));
	TH_LOG("%d faults served in %d calls", nev, calls);
}

/* ---- batches that stop ------------------------------------------------------------ */

/*
 * Entry 2 of 4 fails (EEXIST): entry 1 is applied, 3 and 4 are not, no
 * event is read, and the pending events are all still there.
 */
TEST_F(rs, batch_stops_at_failing_entry)
{
	struct accessor *a = acc_new(PAGE(20) + 20, 0, 0);
	struct accessor *c = acc_new(PAGE(22) + 22, 0, 0);
	struct accessor *d = acc_new(PAGE(23) + 23, 1, 0x23);
	struct uffdx_resolution res[4];
	struct uffdx_event ev[8];
	struct uffdx_resolve out;
	int64_t r64;
	int i, got_c = 0, got_d = 0;

	ASSERT_NE(NULL, a);
	ASSERT_NE(NULL, c);
	ASSERT_NE(NULL, d);
	/* page 21 is populated */
	ASSERT_EQ(0, uffdx_copy(self->ctx, self->id, 21 * ps, SRC(21), ps, 0, &r64));
	ASSERT_EQ(0, acc_start_thread(a));
	ASSERT_EQ(0, acc_start_thread(c));
	ASSERT_EQ(0, acc_start_thread(d));
	ASSERT_EQ(3, wait_pending(self->ctx, 3, WAIT_MS)) TH_LOG("faults not queued");

	res[0] = resolution(_UFFDX_COPY, self->id, 20 * ps, ps, SRC(20), 0);
	res[1] = resolution(_UFFDX_COPY, self->id, 21 * ps, ps, SRC(40), 0);
	res[2] = resolution(_UFFDX_ZERO, self->id, 22 * ps, ps, NULL, 0);
	res[3] = resolution(_UFFDX_COPY, self->id, 23 * ps, ps, SRC(23), 0);
	memset(ev, 0xcc, sizeof(ev));
	EXPECT_EQ(-1, rsv(self->ctx, res, 4, ev, 8, WAIT_NS, 0, &out));
	EXPECT_EQ(EEXIST, errno);
	EXPECT_EQ(1, out.nr_done);
	EXPECT_EQ(0, out.nr_events);
	EXPECT_EQ((int64_t)ps, res[0].result);
	EXPECT_EQ(-EEXIST, res[1].result);
	EXPECT_EQ(SENT64, res[2].result) TH_LOG("entry 3 ran");
	EXPECT_EQ(SENT64, res[3].result) TH_LOG("entry 4 ran");
	for (i = 0; i < 8; i++)
		EXPECT_EQ((uint16_t)0xcccc, ev[i].type) TH_LOG("event %d written", i);

	/* entry 1 done and woken; 2 unchanged; 3 and 4 not done */
	ASSERT_EQ(0, acc_wait(a, WAIT_MS));
	EXPECT_EQ(SRC(20)[20], a->first);
	EXPECT_EQ(-1, check_pattern(PAGE(21), ps, 1021));
	EXPECT_EQ(2 * ps, resident(self->rfd));
	EXPECT_TRUE(acc_blocked(c, QUIET_MS));
	EXPECT_TRUE(acc_blocked(d, 0));
	/* the events of 22 and 23 are still queued, once each */
	EXPECT_EQ(2, nr_pending(self->ctx));
	memset(ev, 0xcc, sizeof(ev));
	ASSERT_EQ(0, rsv(self->ctx, NULL, 0, ev, 8, 0, UFFDX_RESOLVE_NOWAIT, &out));
	ASSERT_EQ(2, out.nr_events);
	for (i = 0; i < 2; i++) {
		if (ev[i].offset == 22 * ps) {
			got_c++;
			check_event(_metadata, &ev[i], PAGE(22), self->id, 22 * ps, 0, getpid(), c->tid);
		} else {
			got_d++;
			check_event(_metadata, &ev[i], PAGE(23), self->id, 23 * ps, UFFDX_PF_WRITE,
				    getpid(), d->tid);
		}
	}
	EXPECT_EQ(1, got_c);
	EXPECT_EQ(1, got_d);

	/* the failing entry first: nothing done; last: three done */
	res[0] = resolution(_UFFDX_ZERO, self->id, 21 * ps, ps, NULL, 0);
	res[1] = resolution(_UFFDX_ZERO, self->id, 22 * ps, ps, NULL, 0);
	EXPECT_EQ(-1, rsv(self->ctx, res, 2, ev, 8, 0, UFFDX_RESOLVE_NOWAIT, &out));
	EXPECT_EQ(EEXIST, errno);
	EXPECT_EQ(0, out.nr_done);
	EXPECT_EQ(-EEXIST, res[0].result);
	EXPECT_EQ(SENT64, res[1].result);
	EXPECT_TRUE(acc_blocked(c, QUIET_MS));

	res[0] = resolution(_UFFDX_ZERO, self->id, 22 * ps, ps, NULL, 0);
	res[1] = resolution(_UFFDX_COPY, self->id, 23 * ps, ps, SRC(23), 0);
	res[2] = resolution(_UFFDX_WAKE, self->id, 0, self->len, NULL, 0);
	res[3] = resolution(_UFFDX_POISON, self->id, 20 * ps, ps, NULL, 0);
	EXPECT_EQ(-1, rsv(self->ctx, res, 4, ev, 8, 0, UFFDX_RESOLVE_NOWAIT, &out));
	EXPECT_EQ(EEXIST, errno);
	EXPECT_EQ(3, out.nr_done);
	EXPECT_EQ(-EEXIST, res[3].result);
	ASSERT_EQ(0, acc_wait(c, WAIT_MS));
	ASSERT_EQ(0, acc_wait(d, WAIT_MS));
	EXPECT_EQ(0, c->first);
	EXPECT_EQ(0x23, d->first);
	EXPECT_EQ(0, nr_pending(self->ctx));
	acc_free(a);
	acc_free(c);
	acc_free(d);
}

/* An entry that does part of its range: EAGAIN, its result the bytes done, the rest not run. */
TEST_F(rs, partial_entry_eagain)
{
	struct accessor *a0 = acc_new(PAGE(30) + 30, 0, 0);
	struct accessor *a1 = acc_new(PAGE(31) + 31, 0, 0);
	struct accessor *b = acc_new(PAGE(41) + 41, 0, 0);
	struct uffdx_resolution res[2];
	struct uffdx_event ev[4];
	struct uffdx_resolve out;
	int64_t r64;

	ASSERT_NE(NULL, a0);
	ASSERT_NE(NULL, a1);
	ASSERT_NE(NULL, b);
	ASSERT_EQ(0, uffdx_zero(self->ctx, self->id, 32 * ps, ps, 0, &r64));
	ASSERT_EQ(0, acc_start_thread(a0));
	ASSERT_EQ(0, acc_start_thread(a1));
	ASSERT_EQ(0, acc_start_thread(b));
	ASSERT_EQ(3, wait_pending(self->ctx, 3, WAIT_MS));

	res[0] = resolution(_UFFDX_COPY, self->id, 30 * ps, 3 * ps, SRC(30), 0);
	res[1] = resolution(_UFFDX_ZERO, self->id, 40 * ps, ps, NULL, 0);
	memset(ev, 0xcc, sizeof(ev));
	EXPECT_EQ(-1, rsv(self->ctx, res, 2, ev, 4, WAIT_NS, 0, &out));
	EXPECT_EQ(EAGAIN, errno);
	EXPECT_EQ(0, out.nr_done);
	EXPECT_EQ(0, out.nr_events);
	EXPECT_EQ((int64_t)(2 * ps), res[0].result);
	EXPECT_EQ(SENT64, res[1].result);
	EXPECT_EQ((uint16_t)0xcccc, ev[0].type);
	/* the done part is woken */
	ASSERT_EQ(0, acc_wait(a0, WAIT_MS));
	ASSERT_EQ(0, acc_wait(a1, WAIT_MS));
	EXPECT_EQ(SRC(30)[30], a0->first);
	EXPECT_EQ(SRC(31)[31], a1->first);
	EXPECT_TRUE(is_zero(PAGE(32), ps));
	EXPECT_EQ(3 * ps, resident(self->rfd));	/* 30, 31, 32: not 40 */
	/* page 41's event was neither read nor lost */
	EXPECT_EQ(1, nr_pending(self->ctx));
	ASSERT_EQ(0, rsv(self->ctx, NULL, 0, ev, 4, 0, UFFDX_RESOLVE_NOWAIT, &out));
	ASSERT_EQ(1, out.nr_events);
	check_event(_metadata, &ev[0], PAGE(41), self->id, 41 * ps, 0, getpid(), b->tid);
	res[0] = resolution(_UFFDX_COPY, self->id, 41 * ps, ps, SRC(41), 0);
	ASSERT_EQ(0, rsv(self->ctx, res, 1, ev, 4, 0, UFFDX_RESOLVE_NOWAIT, &out));
	ASSERT_EQ(0, acc_wait(b, WAIT_MS));
	EXPECT_EQ(SRC(41)[41], b->first);

	/* through the library: -EAGAIN and nr_done */
	{
		unsigned int done = SENT32;

		res[0] = resolution(_UFFDX_ZERO, self->id, 44 * ps, ps, NULL, 0);
		res[1] = resolution(_UFFDX_ZERO, self->id, 45 * ps, 2 * ps, NULL, 0);
		ASSERT_EQ(0, uffdx_zero(self->ctx, self->id, 46 * ps, ps, 0, &r64));
		EXPECT_EQ(-EAGAIN, uffdx_resolve_wait(self->ctx, res, 2, &done, ev, 4, 0,
						      UFFDX_RESOLVE_NOWAIT));
		EXPECT_EQ(1, done);
		EXPECT_EQ((int64_t)ps, res[1].result);
	}
	acc_free(a0);
	acc_free(a1);
	acc_free(b);
}

/* ---- waiting ------------------------------------------------------------------------ */

TEST_F(rs, timeout_returns_no_event)
{
	struct uffdx_resolution res[1];
	struct uffdx_event ev[4];
	struct uffdx_resolve out;
	unsigned int done = SENT32;

	memset(ev, 0xcc, sizeof(ev));
	ASSERT_EQ(0, rsv(self->ctx, NULL, 0, ev, 4, 1000000, 0, &out)) TH_LOG("%s", strerror(errno));
	EXPECT_EQ(0, out.nr_events);
	EXPECT_EQ(0, out.nr_done);
	EXPECT_EQ((uint16_t)0xcccc, ev[0].type);
	/* timeout 0 without NOWAIT: no wait at all */
	ASSERT_EQ(0, rsv(self->ctx, NULL, 0, ev, 4, 0, 0, &out));
	EXPECT_EQ(0, out.nr_events);
	/* with a batch: applied, then the timeout */
	res[0] = resolution(_UFFDX_ZERO, self->id, 5 * ps, ps, NULL, 0);
	ASSERT_EQ(0, rsv(self->ctx, res, 1, ev, 4, 2000000, 0, &out));
	EXPECT_EQ(1, out.nr_done);
	EXPECT_EQ(0, out.nr_events);
	EXPECT_EQ((int64_t)ps, res[0].result);
	EXPECT_EQ(ps, resident(self->rfd));
	/* the library: 0 events */
	EXPECT_EQ(0, uffdx_resolve_wait(self->ctx, NULL, 0, &done, ev, 4, 1000000, 0));
	EXPECT_EQ(0, done);
	/* an O_NONBLOCK context never waits, as read() does not: 0 events at once */
	{
		int fd = ctx_open(DEFAULT_FEATURES, O_NONBLOCK);
		uint64_t t0;

		ASSERT_LE(0, fd);
		t0 = now_ns();
		EXPECT_EQ(0, rsv(fd, NULL, 0, ev, 4, -1, 0, &out)) TH_LOG("%s", strerror(errno));
		EXPECT_EQ(0, out.nr_events);
		/* it returned at all, with no timeout given: it did not sleep */
		TH_LOG("O_NONBLOCK RESOLVE returned after %llu us",
		       (unsigned long long)((now_ns() - t0) / 1000));
		close(fd);
	}
	/* both lists empty: returns at once, whatever the timeout */
	ASSERT_EQ(0, rsv(self->ctx, NULL, 0, NULL, 0, -1, 0, &out));
	EXPECT_EQ(0, out.nr_events);
	EXPECT_EQ(0, out.nr_done);
}

/* An event queued while the call sleeps ends the wait, long before the timeout. */
TEST_F(rs, event_during_wait_is_returned)
{
	struct accessor *a = acc_new(PAGE(9) + 9, 0, 0);
	struct waiter w;

	ASSERT_NE(NULL, a);
	waiter_init(&w, self->ctx, 8, 4 * WAIT_NS);
	ASSERT_EQ(0, waiter_start(&w));
	ASSERT_TRUE(wait_thread_sleeping(w.tid, WAIT_MS));
	EXPECT_FALSE(w.done);
	ASSERT_EQ(0, acc_start_thread(a));
	ASSERT_TRUE(waiter_join(&w, 5 * WAIT_MS)) TH_LOG("the waiting call never returned");
	ASSERT_EQ(0, w.ret) TH_LOG("%s", strerror(w.err));
	ASSERT_EQ(1, w.out.nr_events) TH_LOG("woken without the event (or timed out)");
	check_event(_metadata, &w.ev[0], PAGE(9), self->id, 9 * ps, 0, getpid(), a->tid);
	EXPECT_TRUE(acc_blocked(a, 0));
	ASSERT_EQ(0, uffdx_zero(self->ctx, self->id, 9 * ps, ps, 0, NULL));
	ASSERT_EQ(0, acc_wait(a, WAIT_MS));

	/* and with no limit at all (timeout_ns < 0) */
	acc_free(a);
	a = acc_new(PAGE(13) + 13, 1, 0x13);
	ASSERT_NE(NULL, a);
	waiter_init(&w, self->ctx, 8, -1);
	ASSERT_EQ(0, waiter_start(&w));
	ASSERT_TRUE(wait_thread_sleeping(w.tid, WAIT_MS));
	ASSERT_EQ(0, acc_start_thread(a));
	ASSERT_TRUE(waiter_join(&w, 5 * WAIT_MS)) TH_LOG("the waiting call never returned");
	ASSERT_EQ(0, w.ret) TH_LOG("%s", strerror(w.err));
	ASSERT_EQ(1, w.out.nr_events);
	check_event(_metadata, &w.ev[0], PAGE(13), self->id, 13 * ps, UFFDX_PF_WRITE, getpid(),
		    a->tid);
	ASSERT_EQ(0, uffdx_zero(self->ctx, self->id, 13 * ps, ps, 0, NULL));
	ASSERT_EQ(0, acc_wait(a, WAIT_MS));
	EXPECT_EQ(0x13, a->first);
	acc_free(a);
}

TEST_F(rs, nowait_with_and_without_events)
{
	struct accessor *a[3];
	struct uffdx_event ev[8];
	struct uffdx_resolve out;
	int i, j, n = 0, seen[3] = { 0 };

	/* nothing pending: at once, even with no timeout */
	memset(ev, 0xcc, sizeof(ev));
	ASSERT_EQ(0, rsv(self->ctx, NULL, 0, ev, 8, -1, UFFDX_RESOLVE_NOWAIT, &out));
	EXPECT_EQ(0, out.nr_events);
	EXPECT_EQ(0, out.nr_done);
	EXPECT_EQ((uint16_t)0xcccc, ev[0].type);
	EXPECT_EQ(0, uffdx_resolve_wait(self->ctx, NULL, 0, NULL, ev, 8, -1, UFFDX_RESOLVE_NOWAIT));

	for (i = 0; i < 3; i++) {
		a[i] = acc_new(PAGE(50 + i), 0, 0);
		ASSERT_NE(NULL, a[i]);
		ASSERT_EQ(0, acc_start_thread(a[i]));
	}
	ASSERT_EQ(3, wait_pending(self->ctx, 3, WAIT_MS));
	/* max_events 0: nothing taken */
	ASSERT_EQ(0, rsv(self->ctx, NULL, 0, ev, 0, -1, UFFDX_RESOLVE_NOWAIT, &out));
	EXPECT_EQ(0, out.nr_events);
	EXPECT_EQ(3, nr_pending(self->ctx));
	/* two, then one, then none */
	ASSERT_EQ(0, rsv(self->ctx, NULL, 0, ev, 2, -1, UFFDX_RESOLVE_NOWAIT, &out));
	EXPECT_EQ(2, out.nr_events);
	n += out.nr_events;
	EXPECT_EQ(1, nr_pending(self->ctx));
	EXPECT_EQ(1, uffdx_resolve_wait(self->ctx, NULL, 0, NULL, ev + n, 8 - n, -1,
					UFFDX_RESOLVE_NOWAIT));
	n++;
	ASSERT_EQ(0, rsv(self->ctx, NULL, 0, ev + n, 8 - n, -1, UFFDX_RESOLVE_NOWAIT, &out));
	EXPECT_EQ(0, out.nr_events);
	ASSERT_EQ(3, n);
	for (i = 0; i < n; i++) {
		for (j = 0; j < 3; j++)
			if (ev[i].offset == (uint64_t)(50 + j) * ps) {
				seen[j]++;
				check_event(_metadata, &ev[i], PAGE(50 + j), self->id,
					    (50 + j) * ps, 0, getpid(), a[j]->tid);
			}
	}
	for (j = 0; j < 3; j++)
		EXPECT_EQ(1, seen[j]);
	ASSERT_EQ(0, uffdx_zero(self->ctx, self->id, 50 * ps, 3 * ps, 0, NULL));
	for (i = 0; i < 3; i++) {
		ASSERT_EQ(0, acc_wait(a[i], WAIT_MS));
		acc_free(a[i]);
	}
}

/* ---- signals --------------------------------------------------------------------------- */

static void signal_ends_wait(struct __test_metadata *_metadata, FIXTURE_DATA(rs) *self,
			     int page, int64_t timeout_ns)
{
	struct accessor *a = acc_new(PAGE(page) + 7, 0, 0);
	struct uffdx_event ev[1];
	struct waiter w;
	int before;

	ASSERT_NE(NULL, a);
	ASSERT_EQ(0, acc_start_thread(a));
	ASSERT_EQ(1, take_events(self->ctx, ev, 1));
	waiter_init(&w, self->ctx, 8, timeout_ns);
	w.res[0] = resolution(_UFFDX_COPY, self->id, page * ps, ps, SRC(page), 0);
	w.nr = 1;
	ASSERT_EQ(0, waiter_start(&w));
	/* the batch is applied (the faulter runs), then the call sleeps */
	ASSERT_EQ(0, acc_wait(a, WAIT_MS)) TH_LOG("the batch was not applied");
	EXPECT_EQ(SRC(page)[7], a->first);
	ASSERT_TRUE(wait_thread_sleeping(w.tid, WAIT_MS));
	EXPECT_FALSE(w.done);
	before = usr1_count;
	pthread_kill(w.th, SIGUSR1);
	ASSERT_TRUE(wait_flag(&w.done, WAIT_MS)) TH_LOG("a signal did not end the wait");
	ASSERT_TRUE(waiter_join(&w, 0));
	EXPECT_EQ(before + 1, usr1_count);
	EXPECT_EQ(-1, w.ret);
	EXPECT_EQ(EINTR, w.err) TH_LOG("%s", strerror(w.err));
	EXPECT_EQ(1, w.out.nr_done);
	EXPECT_EQ(0, w.out.nr_events);
	EXPECT_EQ((int64_t)ps, w.res[0].result);
	EXPECT_EQ((uint16_t)0xcccc, w.ev[0].type);
	EXPECT_EQ(-1, check_pattern(PAGE(page), ps, 1000 + page));
	acc_free(a);
}

TEST_F(rs, signal_ends_wait_without_limit)
{
	signal_ends_wait(_metadata, self, 14, -1);
}

TEST_F(rs, signal_ends_wait_with_timeout)
{
	signal_ends_wait(_metadata, self, 15, 60 * 1000000000LL);
}

/* ---- faulters and handlers that die ----------------------------------------------------- */

TEST_F(rs, faulters_killed_while_handler_waits)
{
	struct accessor *c[3], *t, *e[2];
	struct uffdx_resolution res[1];
	struct uffdx_event ev[8];
	struct uffdx_resolve out;
	struct waiter w;
	int i, status;

	for (i = 0; i < 3; i++) {
		c[i] = acc_new(PAGE(40 + i), 1, 1);
		ASSERT_NE(NULL, c[i]);
		ASSERT_EQ(0, acc_start_child(c[i]));
	}
	ASSERT_EQ(3, take_events(self->ctx, ev, 3));
	for (i = 0; i < 3; i++)
		EXPECT_NE((uint32_t)getpid(), ev[i].pid);

	/* the handler waits; its three faulters die */
	waiter_init(&w, self->ctx, 8, 6 * WAIT_NS);
	ASSERT_EQ(0, waiter_start(&w));
	ASSERT_TRUE(wait_thread_sleeping(w.tid, WAIT_MS));
	for (i = 0; i < 3; i++) {
		ASSERT_EQ(0, kill_child(c[i]->child, &status));
		c[i]->child = -1;
		EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	}
	sleep_ms(QUIET_MS);
	EXPECT_FALSE(__atomic_load_n(&w.done, __ATOMIC_SEQ_CST)) TH_LOG("dead faulters ended the wait");
	EXPECT_EQ(0, nr_pending(self->ctx));
	EXPECT_EQ(0, ctx_fdinfo(self->ctx, "uffdx-events-delivered"));
	/* the next fault is what the wait returns */
	t = acc_new(PAGE(43) + 43, 0, 0);
	ASSERT_NE(NULL, t);
	ASSERT_EQ(0, acc_start_thread(t));
	ASSERT_TRUE(waiter_join(&w, 6 * WAIT_MS));
	ASSERT_EQ(0, w.ret) TH_LOG("%s", strerror(w.err));
	ASSERT_EQ(1, w.out.nr_events);
	check_event(_metadata, &w.ev[0], PAGE(43), self->id, 43 * ps, 0, getpid(), t->tid);
	/* resolving the dead faulters' pages too is fine */
	res[0] = resolution(_UFFDX_COPY, self->id, 40 * ps, 4 * ps, SRC(40), 0);
	ASSERT_EQ(0, rsv(self->ctx, res, 1, ev, 8, 0, UFFDX_RESOLVE_NOWAIT, &out));
	EXPECT_EQ(1, out.nr_done);
	EXPECT_EQ(0, out.nr_events);
	EXPECT_EQ((int64_t)(4 * ps), res[0].result);
	ASSERT_EQ(0, acc_wait(t, WAIT_MS));
	EXPECT_EQ(SRC(43)[43], t->first);

	/* faulters killed while their events are still queued */
	for (i = 0; i < 2; i++) {
		e[i] = acc_new(PAGE(44 + i), 0, 0);
		ASSERT_NE(NULL, e[i]);
		ASSERT_EQ(0, acc_start_child(e[i]));
	}
	ASSERT_EQ(2, wait_pending(self->ctx, 2, WAIT_MS));
	for (i = 0; i < 2; i++) {
		ASSERT_EQ(0, kill_child(e[i]->child, &status));
		e[i]->child = -1;
	}
	/* whether a dead faulter's event is still readable is not specified */
	memset(ev, 0xcc, sizeof(ev));
	ASSERT_EQ(0, rsv(self->ctx, NULL, 0, ev, 8, 0, UFFDX_RESOLVE_NOWAIT, &out));
	EXPECT_GE(2, out.nr_events);
	for (i = 0; i < (int)out.nr_events; i++)
		EXPECT_TRUE(ev[i].offset == 44 * ps || ev[i].offset == 45 * ps);
	ASSERT_EQ(0, rsv(self->ctx, NULL, 0, ev, 8, 0, UFFDX_RESOLVE_NOWAIT, &out));
	EXPECT_EQ(0, out.nr_events);
	EXPECT_EQ(0, nr_pending(self->ctx));
	for (i = 0; i < 3; i++)
		acc_free(c[i]);
	for (i = 0; i < 2; i++)
		acc_free(e[i]);
	acc_free(t);
}

/*
 * The only holder of the context sits in RESOLVE's wait and is killed:
 * the context is released and its faulters get SIGBUS.
 */
TEST_F(rs, handler_killed_in_wait_faulters_sigbus)
{
	struct accessor *a[3];
	int pfd[2], status = 0, got = 0, i;
	uint8_t v;
	pid_t h;

	ASSERT_EQ(0, pipe(pfd));
	fflush(stdout);
	fflush(stderr);
	h = fork();
	ASSERT_LE(0, h);
	if (h == 0) {
		struct uffdx_event ev[8];
		struct uffdx_resolve out;
		char c[8] = "eeeeeeee";

		close(pfd[0]);
		for (;;) {
			if (rsv(self->ctx, NULL, 0, ev, 8, -1, 0, &out))
				_exit(10);
			if (write(pfd[1], c, out.nr_events) != (ssize_t)out.nr_events)
				_exit(11);
		}
	}
	close(pfd[1]);
	/* the handler child now holds the only context fd */
	close(self->ctx);
	self->ctx = -1;
	for (i = 0; i < 3; i++) {
		a[i] = acc_new(PAGE(46 + i), i & 1, 1);
		ASSERT_NE(NULL, a[i]);
		ASSERT_EQ(0, acc_start_child(a[i]));
	}
	while (got < 3) {
		char buf[8];
		ssize_t n;

		ASSERT_EQ(1, wait_fd(pfd[0], POLLIN, WAIT_MS)) TH_LOG("handler saw %d of 3 events", got);
		n = read(pfd[0], buf, sizeof(buf));
		ASSERT_LT(0, n);
		got += (int)n;
	}
	EXPECT_EQ(3, got);
	for (i = 0; i < 3; i++)
		EXPECT_TRUE(acc_blocked(a[i], i ? 0 : QUIET_MS));
	/* it is back in the wait */
	{
		uint64_t end = now_ns() + (uint64_t)WAIT_MS * 1000000ull;

		while (proc_state(h) != 'S' && now_ns() < end)
			usleep(1000);
		EXPECT_EQ('S', proc_state(h));
	}
	ASSERT_EQ(0, kill_child(h, &status)) TH_LOG("handler did not die in its wait");
	EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	for (i = 0; i < 3; i++) {
		ASSERT_EQ(0, acc_wait(a[i], WAIT_MS)) TH_LOG("faulter %d hangs after the handler died", i);
		EXPECT_EQ(SIGBUS, a[i]->sig);
		acc_free(a[i]);
	}
	EXPECT_EQ(SIGBUS, try_read(PAGE(49), &v));
	close(pfd[0]);
}

/* ---- RESOLVE and read() in two threads ---------------------------------------------------- */

#define EO_THREADS 8

struct eo {
	int ctx;
	uint64_t id;
	uint8_t *map;
	const uint8_t *src;		/* page k: pattern 1000 + k */
	pthread_mutex_t lock;
	int count[NPAGES];
	pid_t want_tid[NPAGES];	/* the only thread that touches page k */
	int by[2];			/* events taken by RESOLVE, by read() */
	int calls[2];
	char err[160];
	volatile int stop;
	volatile int rdone, ddone;
};

static __attribute__((format(printf, 2, 3))) void eo_fail(struct eo *e, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&e->lock);
	if (!e->err[0]) {
		va_start(ap, fmt);
		vsnprintf(e->err, sizeof(e->err), fmt, ap);
		va_end(ap);
	}
	pthread_mutex_unlock(&e->lock);
}

static int eo_record(struct eo *e, const struct uffdx_event *ev, int who)
{
	uint64_t k = ev->offset / ps;

	if (ev->type != UFFDX_EVENT_PAGEFAULT || ev->region_id != e->id || k >= NPAGES ||
	    ev->address != (uintptr_t)(e->map + k * ps)) {
		eo_fail(e, "bad event at offset 0x%llx (type %u)", (unsigned long long)ev->offset,
			ev->type);
		return -1;
	}
	pthread_mutex_lock(&e->lock);
	e->count[k]++;
	e->by[who]++;
	if (e->count[k] > 1 && !e->err[0])
		snprintf(e->err, sizeof(e->err), "page %llu delivered %d times (last by %s)",
			 (unsigned long long)k, e->count[k], who ? "read" : "RESOLVE");
	if (ev->tid != (uint32_t)e->want_tid[k] && !e->err[0])
		snprintf(e->err, sizeof(e->err), "page %llu: tid %u, faulted by %d",
			 (unsigned long long)k, ev->tid, (int)e->want_tid[k]);
	pthread_mutex_unlock(&e->lock);
	return (int)k;
}

static void *eo_resolver(void *p)
{
	struct eo *e = p;
	struct uffdx_resolution res[16];
	struct uffdx_event ev[16];
	struct uffdx_resolve out;
	unsigned int nres = 0, i;

	while (!__atomic_load_n(&e->stop, __ATOMIC_SEQ_CST) && !e->err[0]) {
		if (rsv(e->ctx, res, nres, ev, 16, 100000000, 0, &out)) {
			eo_fail(e, "RESOLVE: %s, nr_done %u", strerror(errno), out.nr_done);
			break;
		}
		e->calls[0]++;
		if (out.nr_done != nres)
			eo_fail(e, "RESOLVE: nr_done %u of %u", out.nr_done, nres);
		nres = 0;
		for (i = 0; i < out.nr_events; i++) {
			int k = eo_record(e, &ev[i], 0);

			if (k >= 0)
				res[nres++] = resolution(_UFFDX_COPY, e->id, (uint64_t)k * ps, ps,
							 e->src + (size_t)k * ps, 0);
		}
	}
	if (nres && rsv(e->ctx, res, nres, NULL, 0, 0, UFFDX_RESOLVE_NOWAIT, &out))
		eo_fail(e, "RESOLVE (last batch): %s, nr_done %u", strerror(errno), out.nr_done);
	__atomic_store_n(&e->rdone, 1, __ATOMIC_SEQ_CST);
	return NULL;
}

static void *eo_reader(void *p)
{
	struct eo *e = p;
	struct uffdx_event ev[4];
	int i;

	while (!__atomic_load_n(&e->stop, __ATOMIC_SEQ_CST) && !e->err[0]) {
		/* blocking: the test ends it with SIGUSR1 */
		ssize_t n = read(e->ctx, ev, sizeof(ev));

		if (n < 0) {
			if (errno == EINTR)
				continue;
			eo_fail(e, "read: %s", strerror(errno));
			break;
		}
		e->calls[1]++;
		if (n % sizeof(ev[0])) {
			eo_fail(e, "read returned %zd bytes", n);
			break;
		}
		for (i = 0; i < n / (ssize_t)sizeof(ev[0]); i++) {
			int k = eo_record(e, &ev[i], 1), ret;

			if (k < 0)
				continue;
			ret = uffdx_copy(e->ctx, e->id, (uint64_t)k * ps, e->src + (size_t)k * ps, ps,
					 0, NULL);
			if (ret)
				eo_fail(e, "COPY page %d after read(): %s", k, strerror(-ret));
		}
	}
	__atomic_store_n(&e->ddone, 1, __ATOMIC_SEQ_CST);
	return NULL;
}

struct eo_faulter {
	struct eo *e;
	int idx;
	volatile int ready, done;
	char err[96];
};

static void *eo_faulter_thread(void *p)
{
	struct eo_faulter *f = p;
	pid_t tid = sys_gettid();
	int k;

	for (k = f->idx; k < NPAGES; k += EO_THREADS)
		f->e->want_tid[k] = tid;
	__atomic_store_n(&f->ready, 1, __ATOMIC_SEQ_CST);
	for (k = f->idx; k < NPAGES && !f->err[0]; k += EO_THREADS) {
		uint8_t *page = f->e->map + (size_t)k * ps;
		uint8_t v;
		int sig = (k & 1) ? try_write(page + k, f->e->src[(size_t)k * ps + k])
				  : try_read(page + k, &v);

		if (sig)
			snprintf(f->err, sizeof(f->err), "page %d: signal %d", k, sig);
		else if (check_pattern(page, ps, 1000 + k) != -1)
			snprintf(f->err, sizeof(f->err), "page %d: wrong contents", k);
	}
	__atomic_store_n(&f->done, 1, __ATOMIC_SEQ_CST);
	return NULL;
}

TEST_F_TIMEOUT(rs, resolve_and_read_deliver_each_event_once, 120)
{
	struct eo_faulter f[EO_THREADS];
	pthread_t ft[EO_THREADS], rt, dt;
	struct eo *e = calloc(1, sizeof(*e));
	const uint64_t stall_ns = 20000000000ull;
	uint64_t last_progress;
	int i, k, ndone = 0, last = -1, total = 0;

	ASSERT_NE(NULL, e);
	e->ctx = self->ctx;
	e->id = self->id;
	e->map = self->map;
	e->src = self->buf;
	pthread_mutex_init(&e->lock, NULL);
	ASSERT_EQ(0, pthread_create(&rt, NULL, eo_resolver, e));
	ASSERT_EQ(0, pthread_create(&dt, NULL, eo_reader, e));
	for (i = 0; i < EO_THREADS; i++) {
		memset(&f[i], 0, sizeof(f[i]));
		f[i].e = e;
		f[i].idx = i;
		ASSERT_EQ(0, pthread_create(&ft[i], NULL, eo_faulter_thread, &f[i]));
	}
	last_progress = now_ns();
	while (ndone < EO_THREADS && now_ns() - last_progress < stall_ns && !e->err[0]) {
		usleep(2000);
		pthread_mutex_lock(&e->lock);
		total = e->by[0] + e->by[1];
		pthread_mutex_unlock(&e->lock);
		for (ndone = 0, i = 0; i < EO_THREADS; i++)
			ndone += __atomic_load_n(&f[i].done, __ATOMIC_SEQ_CST);
		if (total * 16 + ndone != last) {
			last = total * 16 + ndone;
			last_progress = now_ns();
		}
	}
	/* stop both handlers: the reader sleeps in read() until a signal */
	__atomic_store_n(&e->stop, 1, __ATOMIC_SEQ_CST);
	for (i = 0; i < 200 && !__atomic_load_n(&e->ddone, __ATOMIC_SEQ_CST); i++) {
		pthread_kill(dt, SIGUSR1);
		usleep(10000);
	}
	ASSERT_TRUE(e->ddone) TH_LOG("read() thread does not stop");
	ASSERT_TRUE(wait_flag(&e->rdone, WAIT_MS)) TH_LOG("RESOLVE thread does not stop");
	pthread_join(dt, NULL);
	pthread_join(rt, NULL);
	ASSERT_EQ(EO_THREADS, ndone) TH_LOG("faulters stuck: %d events, err '%s'", total, e->err);
	for (i = 0; i < EO_THREADS; i++) {
		pthread_join(ft[i], NULL);
		EXPECT_EQ(0, f[i].err[0]) TH_LOG("faulter %d: %s", i, f[i].err);
	}
	EXPECT_EQ(0, e->err[0]) TH_LOG("%s", e->err);
	for (k = 0; k < NPAGES; k++) {
		EXPECT_EQ(1, e->count[k]) TH_LOG("page %d: %d events", k, e->count[k]);
		EXPECT_EQ(-1, check_pattern(PAGE(k), ps, 1000 + k)) TH_LOG("page %d", k);
	}
	EXPECT_EQ(NPAGES, e->by[0] + e->by[1]);
	EXPECT_EQ(0, nr_pending(self->ctx));
	TH_LOG("events: %d by RESOLVE (%d calls), %d by read() (%d calls)", e->by[0],
	       e->calls[0], e->by[1], e->calls[1]);
	pthread_mutex_destroy(&e->lock);
	free(e);
}

/* ---- malformed arguments ---------------------------------------------------------------- */

/*
 * One pending event and a COPY in the batch: a rejected call applies
 * nothing, writes no output, and leaves the event queued.
 */
TEST_F(rs, malformed_arguments)
{
	static const struct {
		const char *name;
		int field;	/* what to break */
		uint64_t val;
		int err;
	} cases[] = {
		{ "flags bit 1", 0, 0x2, EINVAL },
		{ "flags bit 31", 0, 0x80000000u, EINVAL },
		{ "__pad", 1, 1, EINVAL },
		{ "reserved[0]", 2, 1, EINVAL },
		{ "reserved[1]", 3, 1ull << 63, EINVAL },
		{ "resolution_size 0", 4, 0, EINVAL },
		{ "resolution_size - 8", 4, sizeof(struct uffdx_resolution) - 8, EINVAL },
		{ "resolution_size + 8", 4, sizeof(struct uffdx_resolution) + 8, EINVAL },
		{ "nr_resolutions MAX + 1", 5, UFFDX_RESOLVE_MAX + 1, EINVAL },
		{ "nr_resolutions ~0", 5, 0xffffffffu, EINVAL },
		{ "max_events MAX + 1", 6, UFFDX_RESOLVE_MAX + 1, EINVAL },
		{ "max_events ~0", 6, 0xffffffffu, EINVAL },
		{ "size too small", 7, sizeof(struct uffdx_resolve) - 8, EINVAL },
		{ "size 0", 7, 0, EINVAL },
		{ "size over a page", 7, 2 * 4096 + 8, E2BIG },
	};
	struct accessor *a = acc_new(PAGE(60) + 60, 0, 0);
	struct uffdx_resolution res[2];
	struct uffdx_event ev[4];
	struct uffdx_resolve rs;
	unsigned int i;

	ASSERT_NE(NULL, a);
	ASSERT_EQ(0, acc_start_thread(a));
	ASSERT_EQ(1, wait_pending(self->ctx, 1, WAIT_MS));
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		res[0] = resolution(_UFFDX_COPY, self->id, 61 * ps, ps, SRC(61), 0);
		rs_init(&rs, res, 1, ev, 4, 0, UFFDX_RESOLVE_NOWAIT);
		memset(ev, 0xcc, sizeof(ev));
		switch (cases[i].field) {
		case 0: rs.flags = (uint32_t)cases[i].val; break;
		case 1: rs.__pad = (uint32_t)cases[i].val; break;
		case 2: rs.reserved[0] = cases[i].val; break;
		case 3: rs.reserved[1] = cases[i].val; break;
		case 4: rs.resolution_size = (uint32_t)cases[i].val; break;
		case 5: rs.nr_resolutions = (uint32_t)cases[i].val; break;
		case 6: rs.max_events = (uint32_t)cases[i].val; break;
		case 7: rs.size = (uint32_t)cases[i].val; break;
		}
		EXPECT_EQ(-1, ioctl(self->ctx, UFFDX_IOC_RESOLVE, &rs)) TH_LOG("%s accepted", cases[i].name);
		EXPECT_EQ(cases[i].err, errno) TH_LOG("%s: %s", cases[i].name, strerror(errno));
		EXPECT_EQ(SENT32, rs.nr_done) TH_LOG("%s: nr_done written", cases[i].name);
		EXPECT_EQ(SENT32, rs.nr_events) TH_LOG("%s: nr_events written", cases[i].name);
		EXPECT_EQ(SENT64, res[0].result) TH_LOG("%s: the resolution ran", cases[i].name);
		EXPECT_EQ((uint16_t)0xcccc, ev[0].type) TH_LOG("%s: an event was read", cases[i].name);
	}
	EXPECT_EQ(0, resident(self->rfd));
	EXPECT_EQ(1, nr_pending(self->ctx));

	/* a larger struct: a non-zero tail is E2BIG, a zero one is accepted */
	{
		struct {
			struct uffdx_resolve rs;
			uint64_t tail[2];
		} big;

		memset(&big, 0, sizeof(big));
		rs_init(&big.rs, NULL, 0, ev, 4, 0, UFFDX_RESOLVE_NOWAIT);
		big.rs.size = sizeof(big);
		big.tail[1] = 1;
		EXPECT_EQ(-1, ioctl(self->ctx, UFFDX_IOC_RESOLVE, &big));
		EXPECT_EQ(E2BIG, errno);
		EXPECT_EQ(1, nr_pending(self->ctx));
		big.tail[1] = 0;
		big.rs.max_events = 0;
		EXPECT_EQ(0, ioctl(self->ctx, UFFDX_IOC_RESOLVE, &big)) TH_LOG("%s", strerror(errno));
		EXPECT_EQ(0, big.rs.nr_events);
		EXPECT_EQ(0, big.rs.nr_done);
	}
	/* UFFDX_RESOLVE_MAX of each: accepted */
	{
		struct uffdx_resolution *many = calloc(UFFDX_RESOLVE_MAX, sizeof(*many));
		struct uffdx_event *evs = calloc(UFFDX_RESOLVE_MAX, sizeof(*evs));
		struct uffdx_resolve out;

		ASSERT_NE(NULL, many);
		ASSERT_NE(NULL, evs);
		for (i = 0; i < UFFDX_RESOLVE_MAX; i++)
			many[i] = resolution(_UFFDX_WAKE, self->id, 62 * ps, ps, NULL, 0);
		EXPECT_EQ(0, rsv(self->ctx, many, UFFDX_RESOLVE_MAX, evs, UFFDX_RESOLVE_MAX, 0,
				 UFFDX_RESOLVE_NOWAIT, &out)) TH_LOG("%s", strerror(errno));
		EXPECT_EQ(UFFDX_RESOLVE_MAX, out.nr_done);
		EXPECT_EQ((int64_t)ps, many[UFFDX_RESOLVE_MAX - 1].result);
		/* it took the pending event */
		EXPECT_EQ(1, out.nr_events);
		if (out.nr_events == 1)
			check_event(_metadata, &evs[0], PAGE(60), self->id, 60 * ps, 0, getpid(), a->tid);
		free(many);
		free(evs);
	}
	ASSERT_EQ(0, uffdx_zero(self->ctx, self->id, 60 * ps, ps, 0, NULL));
	ASSERT_EQ(0, acc_wait(a, WAIT_MS));
	acc_free(a);
}

/* Resolutions with a bad op, or arguments their own ioctl rejects. */
TEST_F(rs, malformed_resolutions)
{
	static const uint32_t bad_ops[] = {
		_UFFDX_API, _UFFDX_REGION_CREATE, _UFFDX_ARM, _UFFDX_DISARM, _UFFDX_DISCARD,
		_UFFDX_MOVE_ADDR, _UFFDX_MOVE_VEC, _UFFDX_RESOLVE, _UFFDX_WRITEPROTECT_ADDR,
		_UFFDX_SCAN, _UFFDX_DEVICE_CREATE, 0x11, 0x3f, _UFFDX_REGION_INFO,
		_UFFDX_DEV_READ, _UFFDX_DEV_ATOMIC, 0xffffffffu,
	};
	struct accessor *a = acc_new(PAGE(60) + 60, 0, 0);
	struct uffdx_resolution res[3];
	struct uffdx_event ev[4];
	struct uffdx_resolve out;
	unsigned int i;

	ASSERT_NE(NULL, a);
	ASSERT_EQ(0, acc_start_thread(a));
	ASSERT_EQ(1, wait_pending(self->ctx, 1, WAIT_MS));

	for (i = 0; i < sizeof(bad_ops) / sizeof(bad_ops[0]); i++) {
		res[0] = resolution(_UFFDX_WAKE, self->id, 1 * ps, ps, NULL, 0);
		res[1] = resolution(bad_ops[i], self->id, 2 * ps, ps, NULL, 0);
		res[2] = resolution(_UFFDX_ZERO, self->id, 3 * ps, ps, NULL, 0);
		memset(ev, 0xcc, sizeof(ev));
		EXPECT_EQ(-1, rsv(self->ctx, res, 3, ev, 4, 0, UFFDX_RESOLVE_NOWAIT, &out))
			TH_LOG("op 0x%x accepted", bad_ops[i]);
		EXPECT_EQ(EINVAL, errno) TH_LOG("op 0x%x: %s", bad_ops[i], strerror(errno));
		EXPECT_EQ(1, out.nr_done) TH_LOG("op 0x%x", bad_ops[i]);
		EXPECT_EQ(0, out.nr_events);
		EXPECT_EQ((int64_t)ps, res[0].result);
		/* the bad entry's result says why */
		EXPECT_EQ(-EINVAL, res[1].result)
			TH_LOG("op 0x%x: result %lld", bad_ops[i], (long long)res[1].result);
		EXPECT_EQ(SENT64, res[2].result);
		EXPECT_EQ((uint16_t)0xcccc, ev[0].type);
	}
	EXPECT_EQ(0, resident(self->rfd));

	/* MOVE without UFFDX_FEATURE_MOVE: EINVAL */
	res[0] = resolution(_UFFDX_MOVE, self->id, 2 * ps, ps, PAGE(1), 0);
	EXPECT_EQ(-1, rsv(self->ctx, res, 1, ev, 4, 0, UFFDX_RESOLVE_NOWAIT, &out));
	EXPECT_EQ(EINVAL, errno);
	EXPECT_EQ(0, out.nr_done);
	EXPECT_EQ(0, resident(self->rfd));

	/* the errors of the op's own ioctl */
	{
		static const struct {
			const char *name;
			uint32_t op, mode;
			uint64_t id_add;
			uint64_t offp, offx, lenp, lenx;	/* offset, len: pages * ps + bytes */
			int src;
		} bad[] = {
			{ "COPY len 0", _UFFDX_COPY, 0, 0, 5, 0, 0, 0, 1 },
			{ "COPY unaligned offset", _UFFDX_COPY, 0, 0, 5, 1, 1, 0, 1 },
			{ "COPY unaligned len", _UFFDX_COPY, 0, 0, 5, 0, 1, 1, 1 },
			{ "COPY past the end", _UFFDX_COPY, 0, 0, NPAGES, 0, 1, 0, 1 },
			{ "COPY across the end", _UFFDX_COPY, 0, 0, NPAGES - 1, 0, 2, 0, 1 },
			{ "COPY unknown region", _UFFDX_COPY, 0, 999, 5, 0, 1, 0, 1 },
			{ "COPY src NULL", _UFFDX_COPY, 0, 0, 5, 0, 1, 0, 0 },
			{ "COPY unknown mode", _UFFDX_COPY, 0x4, 0, 5, 0, 1, 0, 1 },
			{ "ZERO unknown mode", _UFFDX_ZERO, 0x2, 0, 5, 0, 1, 0, 0 },
			{ "ZERO with src", _UFFDX_ZERO, 0, 0, 5, 0, 1, 0, 1 },
			{ "POISON len 0", _UFFDX_POISON, 0, 0, 5, 0, 0, 0, 0 },
			{ "WAKE with a mode", _UFFDX_WAKE, UFFDX_FILL_DONTWAKE, 0, 5, 0, 1, 0, 0 },
			{ "WAKE past the end", _UFFDX_WAKE, 0, 0, NPAGES - 1, 0, 2, 0, 0 },
		};

		for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			static const unsigned long nrs[] = {
				[_UFFDX_COPY] = UFFDX_IOC_COPY, [_UFFDX_ZERO] = UFFDX_IOC_ZERO,
				[_UFFDX_POISON] = UFFDX_IOC_POISON, [_UFFDX_WAKE] = UFFDX_IOC_WAKE,
			};
			uint64_t id = self->id + bad[i].id_add;
			uint64_t off = bad[i].offp * ps + bad[i].offx;
			uint64_t len = bad[i].lenp * ps + bad[i].lenx;
			const void *src = bad[i].src ? SRC(5) : NULL;
			int64_t r64 = SENT64;
			int want;

			EXPECT_EQ(-1, raw_range(self->ctx, nrs[bad[i].op], id, off, len, src,
						bad[i].mode, &r64)) TH_LOG("%s: ioctl accepted", bad[i].name);
			want = errno;
			res[0] = resolution(bad[i].op, id, off, len, src, bad[i].mode);
			EXPECT_EQ(-1, rsv(self->ctx, res, 1, ev, 4, 0, UFFDX_RESOLVE_NOWAIT, &out))
				TH_LOG("%s accepted", bad[i].name);
			EXPECT_EQ(want, errno) TH_LOG("%s: %s, its ioctl %s", bad[i].name,
						       strerror(errno), strerror(want));
			EXPECT_EQ(0, out.nr_done);
			EXPECT_EQ(0, out.nr_events);
			EXPECT_EQ(-want, res[0].result) TH_LOG("%s", bad[i].name);
		}
	}
	EXPECT_EQ(0, resident(self->rfd));
	/* all along, the event stayed queued */
	EXPECT_EQ(1, nr_pending(self->ctx));
	ASSERT_EQ(0, uffdx_zero(self->ctx, self->id, 60 * ps, ps, 0, NULL));
	ASSERT_EQ(0, acc_wait(a, WAIT_MS));
	acc_free(a);
}

/* Bad pointers: EFAULT, and nothing lost. */
TEST_F(rs, bad_pointers_efault_nothing_lost)
{
	struct accessor *a = acc_new(PAGE(56) + 56, 0, 0);
	struct accessor *b = acc_new(PAGE(57) + 57, 0, 0);
	void *volatile bad = (void *)(uintptr_t)8;
	struct uffdx_resolution res[2], *edge_res;
	struct uffdx_event ev[4], *edge_ev;
	struct uffdx_resolve out;
	uint8_t *two;
	int i, seen56 = 0, seen57 = 0;

	ASSERT_NE(NULL, a);
	ASSERT_NE(NULL, b);
	/* two pages, the second inaccessible: arrays that run into it */
	two = mmap(NULL, 2 * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, two);
	ASSERT_EQ(0, mprotect(two + ps, ps, PROT_NONE));
	edge_res = (struct uffdx_resolution *)(two + ps) - 1;
	edge_ev = (struct uffdx_event *)(two + ps) - 1;

	ASSERT_EQ(0, acc_start_thread(a));
	ASSERT_EQ(1, wait_pending(self->ctx, 1, WAIT_MS));

	/* the resolution array */
	EXPECT_EQ(-1, rsv(self->ctx, bad, 1, ev, 4, 0, UFFDX_RESOLVE_NOWAIT, &out));
	EXPECT_EQ(EFAULT, errno);
	EXPECT_EQ(0, out.nr_done);
	EXPECT_EQ(1, nr_pending(self->ctx));
	/* its second entry: the first is applied */
	edge_res[0] = resolution(_UFFDX_ZERO, self->id, 1 * ps, ps, NULL, 0);
	EXPECT_EQ(-1, rsv(self->ctx, edge_res, 2, ev, 4, 0, UFFDX_RESOLVE_NOWAIT, &out));
	EXPECT_EQ(EFAULT, errno);
	EXPECT_EQ(1, out.nr_done);
	EXPECT_EQ((int64_t)ps, edge_res[0].result);
	EXPECT_EQ(ps, resident(self->rfd));
	EXPECT_EQ(1, nr_pending(self->ctx));
	/*
	 * A read-only array: the resolution runs, its result cannot be
	 * written back: EFAULT, and nr_done counts it (it was applied:
	 * doing it again would fail EEXIST).
	 */
	{
		struct uffdx_resolution *ro = mmap(NULL, ps, PROT_READ | PROT_WRITE,
						   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		ASSERT_NE(MAP_FAILED, ro);
		ro[0] = resolution(_UFFDX_ZERO, self->id, 4 * ps, ps, NULL, 0);
		ASSERT_EQ(0, mprotect(ro, ps, PROT_READ));
		EXPECT_EQ(-1, rsv(self->ctx, ro, 1, ev, 4, 0, UFFDX_RESOLVE_NOWAIT, &out));
		EXPECT_EQ(EFAULT, errno);
		EXPECT_EQ(1, out.nr_done);
		EXPECT_EQ(0, out.nr_events);
		EXPECT_EQ(2 * ps, resident(self->rfd));
		munmap(ro, ps);
		EXPECT_EQ(1, nr_pending(self->ctx));
		ASSERT_EQ(0, uffdx_discard(self->ctx, self->id, 4 * ps, ps, NULL));
	}
	/* a COPY source: EFAULT as from UFFDX_IOC_COPY */
	res[0] = resolution(_UFFDX_COPY, self->id, 2 * ps, ps, two + ps, 0);
	EXPECT_EQ(-1, rsv(self->ctx, res, 1, ev, 4, 0, UFFDX_RESOLVE_NOWAIT, &out));
	EXPECT_EQ(EFAULT, errno);
	EXPECT_EQ(0, out.nr_done);
	EXPECT_EQ(-EFAULT, res[0].result);
	EXPECT_EQ(ps, resident(self->rfd));

	/* the event buffer, with an event pending: EFAULT, the event stays */
	EXPECT_EQ(-1, rsv(self->ctx, NULL, 0, bad, 4, 0, UFFDX_RESOLVE_NOWAIT, &out));
	EXPECT_EQ(EFAULT, errno);
	EXPECT_EQ(0, out.nr_events);
	EXPECT_EQ(1, nr_pending(self->ctx)) TH_LOG("an event that could not be copied was lost");
	/* the same after a batch: applied, nr_done says so, the event stays */
	res[0] = resolution(_UFFDX_ZERO, self->id, 3 * ps, ps, NULL, 0);
	EXPECT_EQ(-1, rsv(self->ctx, res, 1, bad, 4, WAIT_NS, 0, &out));
	EXPECT_EQ(EFAULT, errno);
	EXPECT_EQ(1, out.nr_done);
	EXPECT_EQ((int64_t)ps, res[0].result);
	EXPECT_EQ(2 * ps, resident(self->rfd));
	EXPECT_EQ(1, nr_pending(self->ctx));
	/* still there, once */
	ASSERT_EQ(0, rsv(self->ctx, NULL, 0, ev, 4, 0, UFFDX_RESOLVE_NOWAIT, &out));
	ASSERT_EQ(1, out.nr_events);
	check_event(_metadata, &ev[0], PAGE(56), self->id, 56 * ps, 0, getpid(), a->tid);
	/* a bad buffer and nothing pending under NOWAIT: nothing to copy, no error */
	EXPECT_EQ(0, rsv(self->ctx, NULL, 0, bad, 4, 0, UFFDX_RESOLVE_NOWAIT, &out));
	EXPECT_EQ(0, out.nr_events);

	/* a buffer with room for one: two pending, one copied, one stays */
	ASSERT_EQ(0, acc_start_thread(b));
	ASSERT_EQ(1, wait_pending(self->ctx, 1, WAIT_MS));
	res[0] = resolution(_UFFDX_WAKE, self->id, 56 * ps, ps, NULL, 0);	/* 56 faults again */
	ASSERT_EQ(0, rsv(self->ctx, res, 1, NULL, 0, 0, UFFDX_RESOLVE_NOWAIT, &out));
	ASSERT_EQ(2, wait_pending(self->ctx, 2, WAIT_MS));
	memset(edge_ev, 0xcc, sizeof(*edge_ev));
	EXPECT_EQ(0, rsv(self->ctx, NULL, 0, edge_ev, 2, 0, UFFDX_RESOLVE_NOWAIT, &out))
		TH_LOG("%s", strerror(errno));
	EXPECT_EQ(1, out.nr_events);
	EXPECT_EQ(1, nr_pending(self->ctx));
	memcpy(&ev[1], edge_ev, sizeof(ev[1]));
	ASSERT_EQ(0, rsv(self->ctx, NULL, 0, ev, 1, 0, UFFDX_RESOLVE_NOWAIT, &out));
	ASSERT_EQ(1, out.nr_events);
	for (i = 0; i < 2; i++) {
		if (ev[i].offset == 56 * ps && ev[i].tid == (uint32_t)a->tid)
			seen56++;
		if (ev[i].offset == 57 * ps && ev[i].tid == (uint32_t)b->tid)
			seen57++;
	}
	EXPECT_EQ(1, seen56);
	EXPECT_EQ(1, seen57);
	EXPECT_EQ(0, nr_pending(self->ctx));
	ASSERT_EQ(0, uffdx_zero(self->ctx, self->id, 56 * ps, 2 * ps, 0, NULL));
	ASSERT_EQ(0, acc_wait(a, WAIT_MS));
	ASSERT_EQ(0, acc_wait(b, WAIT_MS));
	munmap(two, 2 * ps);
	acc_free(a);
	acc_free(b);
}

/* Before the API, and without UFFDX_FEATURE_MISSING: EINVAL. */
TEST(resolve_needs_missing_feature)
{
	struct uffdx_event ev[1];
	struct uffdx_resolve rs;
	int fd;

	SKIP_IF_NO_UFFDX();
	fd = uffdx_open(0);
	ASSERT_LE(0, fd);
	rs_init(&rs, NULL, 0, ev, 1, 0, UFFDX_RESOLVE_NOWAIT);
	EXPECT_EQ(-1, ioctl(fd, UFFDX_IOC_RESOLVE, &rs));
	EXPECT_EQ(EINVAL, errno);
	EXPECT_EQ(SENT32, rs.nr_events);
	close(fd);

	fd = ctx_open(UFFDX_FEATURE_POISON, 0);
	ASSERT_LE(0, fd);
	EXPECT_EQ(-1, ioctl(fd, UFFDX_IOC_RESOLVE, &rs));
	EXPECT_EQ(EINVAL, errno);
	close(fd);

	/* MISSING alone: RESOLVE works, but not a POISON resolution */
	fd = ctx_open(UFFDX_FEATURE_MISSING, 0);
	ASSERT_LE(0, fd);
	{
		struct uffdx_resolution res[1];
		uint64_t id;
		int rfd = uffdx_region_create(fd, 4 * ps, 0, &id);

		ASSERT_LE(0, rfd);
		EXPECT_EQ(0, rsv(fd, NULL, 0, ev, 1, 0, UFFDX_RESOLVE_NOWAIT, NULL));
		res[0] = resolution(_UFFDX_POISON, id, 0, ps, NULL, 0);
		EXPECT_EQ(-1, rsv(fd, res, 1, ev, 1, 0, UFFDX_RESOLVE_NOWAIT, NULL));
		EXPECT_EQ(EINVAL, errno);
		res[0] = resolution(_UFFDX_ZERO, id, 0, ps, NULL, 0);
		EXPECT_EQ(0, rsv(fd, res, 1, ev, 1, 0, UFFDX_RESOLVE_NOWAIT, NULL));
		EXPECT_EQ((int64_t)ps, res[0].result);
		close(rfd);
	}
	close(fd);
}

TEST_HARNESS_MAIN
