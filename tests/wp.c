// SPDX-License-Identifier: GPL-2.0
/*
 * uffdx write-protect tests (issue 8): WRITEPROTECT, WRITEPROTECT_ADDR and
 * SCAN (UFFDX_FEATURE_WP, UFFDX_FEATURE_WP_ASYNC), against docs/design.md
 * section 6.
 *
 *  - the ABI: features and the ioctls they grant, the region flags and
 *    REGION_INFO, every malformed argument with its errno, nothing changed;
 *  - sync regions: WP events (flags, address, region, offset, pid, tid), the
 *    writer asleep until unprotect, DONTWAKE then WAKE, WAKE alone, signals,
 *    SIGKILL, the context's release (SIGBUS), PROTECT taking write
 *    permission from writers that are running, in this and other processes;
 *  - protected holes, and holes both protected and armed (the missing event
 *    first, then the WP event); fills keep protection (and mark async pages
 *    written);
 *  - protection and the written state kept across MADV_DONTNEED, munmap and
 *    mmap, mremap, fork (both orders), mprotect, MADV_COLLAPSE, MADV_COLD and
 *    MADV_PAGEOUT, in both modes;
 *  - kernel-mode writes (read() into a protected page, process_vm_writev,
 *    local and remote) with and without UFFDX_FEATURE_KERNEL_FAULTS;
 *  - pinned pages (FOLL_PIN, held by a process_vm_writev() that waits for
 *    its source): EBUSY in sync mode, reported by every scan in async mode,
 *    and the write through the pin reported after the unpin;
 *  - SCAN: ranges, merged; the bitmap; a full output and continuing;
 *    REARM and without; EFAULT losing no report; DISCARD and unprotect;
 *  - MOVE carrying protection and the written state; EEXIST, EINVAL;
 *  - RESOLVE with _UFFDX_WRITEPROTECT.
 *
 * Every wait is bounded (helpers.h: WAIT_MS); "still asleep" is watched
 * for QUIET_MS.  A write that might sleep is done by a thread or a child
 * process, never by the test's own thread.
 */
#include "helpers.h"

#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kselftest_harness.h"

#ifndef MADV_COLD
#define MADV_COLD	20
#endif
#ifndef MADV_PAGEOUT
#define MADV_PAGEOUT	21
#endif
#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE	25
#endif

#define NPAGES		64	/* the sync fixture's region */
#define APAGES		256	/* the async fixture's: several 64-page batches */
/* "result" as preset before an ioctl that must not write it */
#define SENTINEL	0x5a5a5a5a5aLL
#define WAIT_NS		((int64_t)WAIT_MS * 1000000LL)
/* The flags of a user-mode WP fault. */
#define PF_WPW		(UFFDX_PF_WP | UFFDX_PF_WRITE)
#define MAX_ACC		48
/* An empty list of pages for EXPECT_SCAN(). */
#define NONE		-1

#define PG(map, i)	((uint8_t *)(map) + (size_t)(i) * ps)

/* ---- features ---------------------------------------------------------------- */

static uint64_t supported(void)
{
	struct uffdx_api a;

	memset(&a, 0, sizeof(a));
	if (uffdx_query(&a))
		return 0;
	return a.features;
}

#define SKIP_IF_NO(feat, name) do {						\
	SKIP_IF_NO_UFFDX();							\
	if (!(supported() & (feat)))						\
		SKIP(return, "the module does not report " name);		\
} while (0)
#define SKIP_IF_NO_WP()		SKIP_IF_NO(UFFDX_FEATURE_WP, "UFFDX_FEATURE_WP")
#define SKIP_IF_NO_WPA()	SKIP_IF_NO(UFFDX_FEATURE_WP_ASYNC, "UFFDX_FEATURE_WP_ASYNC")
#define SKIP_IF_NO_MOVE() do {							\
	if (!(supported() & UFFDX_FEATURE_MOVE))				\
		SKIP(return, "the module does not report UFFDX_FEATURE_MOVE");	\
} while (0)

/*
 * What a test context negotiates: the defaults, both write-protect modes
 * and MOVE as far as they are supported, and extra.  (An async tracker
 * needs WRITEPROTECT to protect its memory in the first place; the ABI
 * grants it with WP, so async contexts negotiate WP too.)
 */
static uint64_t ctx_features(uint64_t extra)
{
	return DEFAULT_FEATURES | extra |
	       (supported() & (UFFDX_FEATURE_WP | UFFDX_FEATURE_WP_ASYNC | UFFDX_FEATURE_MOVE));
}

/* ---- raw ioctls: ioctl()'s value with errno kept, out fields preset ------------ */

static void wp_init(struct uffdx_range *r, uint64_t id, uint64_t off, uint64_t len,
		    uint32_t mode)
{
	memset(r, 0, sizeof(*r));
	r->size = sizeof(*r);
	r->mode = mode;
	r->region_id = id;
	r->offset = off;
	r->len = len;
	r->result = SENTINEL;
}

static int raw_wp(int ctx, uint64_t id, uint64_t off, uint64_t len, uint32_t mode,
		  int64_t *res)
{
	struct uffdx_range r;
	int ret, err;

	wp_init(&r, id, off, len, mode);
	ret = ioctl(ctx, UFFDX_IOC_WRITEPROTECT, &r);
	err = errno;
	if (res)
		*res = r.result;
	errno = err;
	return ret;
}

/* Protect (mode PROTECT) or unprotect (0, DONTWAKE) all of a range: 0 or -errno. */
static int wp_op(int ctx, uint64_t id, uint64_t off, uint64_t len, uint32_t mode)
{
	int64_t res = 0;

	if (raw_wp(ctx, id, off, len, mode, &res))
		return -errno;
	return res == (int64_t)len ? 0 : -EIO;
}

#define PROTECT(e, first, n) \
	ASSERT_EQ(0, wp_op((e)->ctx, (e)->r.id, (first) * ps, (n) * ps, UFFDX_WP_PROTECT))
#define UNPROTECT(e, first, n) \
	ASSERT_EQ(0, wp_op((e)->ctx, (e)->r.id, (first) * ps, (n) * ps, 0))

static void wpa_init(struct uffdx_writeprotect_addr *w, const void *addr, uint64_t len,
		     uint32_t mode)
{
	memset(w, 0, sizeof(*w));
	w->size = sizeof(*w);
	w->mode = mode;
	w->addr = (uintptr_t)addr;
	w->len = len;
	w->result = SENTINEL;
}

static int raw_wp_addr(int ctx, const void *addr, uint64_t len, uint32_t mode, int64_t *res)
{
	struct uffdx_writeprotect_addr w;
	int ret, err;

	wpa_init(&w, addr, len, mode);
	ret = ioctl(ctx, UFFDX_IOC_WRITEPROTECT_ADDR, &w);
	err = errno;
	if (res)
		*res = w.result;
	errno = err;
	return ret;
}

static void scan_init(struct uffdx_scan *s, uint64_t id, uint64_t off, uint64_t len,
		      uint32_t flags, void *out, uint64_t out_len)
{
	memset(s, 0, sizeof(*s));
	s->size = sizeof(*s);
	s->flags = flags;
	s->region_id = id;
	s->offset = off;
	s->len = len;
	s->out = (uintptr_t)out;
	s->out_len = out_len;
	s->scanned = s->nr_out = s->written = (uint64_t)SENTINEL;
}

static int raw_scan(int ctx, struct uffdx_scan *s)
{
	return ioctl(ctx, UFFDX_IOC_SCAN, s);
}

static struct uffdx_resolution wp_res(uint64_t id, uint64_t off, uint64_t len, uint32_t mode);
static int rsv(int ctx, struct uffdx_resolution *res, unsigned int nr, struct uffdx_event *ev,
	       unsigned int max, int64_t timeout_ns, uint32_t flags, struct uffdx_resolve *out);

/* A call that must have done all of len. */
#define EXPECT_DONE(ret, res, len) do {						\
	int __e = errno;							\
	EXPECT_EQ(0, ret) TH_LOG("failed: %s", strerror(__e));			\
	EXPECT_EQ((int64_t)(len), res);						\
} while (0)

/* A call that failed with err and reported want_res. */
#define EXPECT_ERR(ret, res, err, want_res) do {				\
	int __e = errno;							\
	EXPECT_EQ(-1, ret) TH_LOG("succeeded, expected %s", strerror(err));	\
	EXPECT_EQ(err, __e) TH_LOG("errno %d (%s), expected %d (%s)", __e,	\
				   strerror(__e), err, strerror(err));		\
	EXPECT_EQ((int64_t)(want_res), res);					\
} while (0)

/* ---- the environment of a test: a context, a region, its writers --------------- */

struct env {
	int ctx;
	int async;		/* the region is WP_ASYNC (else WP) */
	struct uffdx_region_map r;
	uint8_t *buf;		/* one page */
	struct accessor *acc[MAX_ACC];
	int nacc;
};

static void env_init(struct env *e)
{
	memset(e, 0, sizeof(*e));
	e->ctx = -1;
	e->r.fd = -1;
}

static uint32_t mode_flag(int async)
{
	return async ? UFFDX_REGION_CREATE_WP_ASYNC : UFFDX_REGION_CREATE_WP;
}

static void env_setup(struct __test_metadata *_metadata, struct env *e, int async,
		      size_t npages, uint64_t extra)
{
	int ret;

	e->async = async;
	e->ctx = ctx_open(ctx_features(extra), 0);
	ASSERT_LE(0, e->ctx) TH_LOG("ctx_open: %s", strerror(-e->ctx));
	ret = uffdx_region_map(e->ctx, npages * ps, mode_flag(async), &e->r);
	ASSERT_EQ(0, ret) TH_LOG("region (%s): %s", async ? "WP_ASYNC" : "WP", strerror(-ret));
	e->buf = malloc(ps);
	ASSERT_NE(NULL, e->buf);
}

static void env_teardown(struct env *e)
{
	int i;

	if (e->ctx >= 0)
		close(e->ctx);	/* releases the writers left asleep (SIGBUS) */
	e->ctx = -1;
	for (i = 0; i < e->nacc; i++)
		acc_kill(e->acc[i]);	/* children; threads are gone with us */
	uffdx_region_unmap(&e->r);
	free(e->buf);
	e->buf = NULL;
}

/* An accessor the teardown will reap (children) if the test does not. */
static struct accessor *env_acc(struct env *e, void *addr, int write, uint8_t val)
{
	struct accessor *a = acc_new(addr, write, val);

	if (a && e->nacc < MAX_ACC)
		e->acc[e->nacc++] = a;
	return a;
}

static void close_fds_from(int first)
{
	int fd;

#ifdef __NR_close_range
	if (!syscall(__NR_close_range, (unsigned int)first, ~0U, 0))
		return;
#endif
	for (fd = first; fd < 4096; fd++)
		close(fd);
}

/* The access of an accessor, in the calling task (as helpers.c does it). */
static void acc_do(struct accessor *a)
{
	uint8_t v = 0;
	int sig;

	a->pid = getpid();
	a->tid = sys_gettid();
	__atomic_store_n(&a->started, 1, __ATOMIC_SEQ_CST);
	if (a->write) {
		sig = try_write(a->addr, a->wval);
		if (!sig)
			sig = try_read(a->addr, &v);
	} else {
		sig = try_read(a->addr, &v);
	}
	a->first = v;
	a->sig = sig;
	if (!sig && a->check_len)
		a->sum = checksum(a->check_addr, a->check_len);
	__atomic_store_n(&a->done, 1, __ATOMIC_SEQ_CST);
}

/*
 * A child process accessor that holds no file descriptor, so that closing
 * the context releases it (acc_start_child()'s child would keep the
 * context open).  With go, it waits (bounded) until *go is set.
 */
static int child_start(struct accessor *a, volatile int *go)
{
	pid_t pid;

	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		uint64_t end = now_ns() + 2ull * WAIT_MS * 1000000ull;

		close_fds_from(3);
		sig_install();
		while (go && !__atomic_load_n(go, __ATOMIC_SEQ_CST)) {
			if (now_ns() > end)
				_exit(3);
			usleep(500);
		}
		acc_do(a);
		_exit(0);
	}
	a->is_thread = 0;
	a->child = pid;
	return 0;
}

/* A writer of val at addr, started: a thread, or (child) a process. */
static struct accessor *writer(struct __test_metadata *_metadata, struct env *e, void *addr,
			       uint8_t val, int child)
{
	struct accessor *a = env_acc(e, addr, 1, val);

	ASSERT_NE(NULL, a);
	if (child) {
		ASSERT_EQ(0, child_start(a, NULL));
	} else {
		ASSERT_EQ(0, acc_start_thread(a));
	}
	ASSERT_EQ(0, acc_wait_started(a, WAIT_MS));
	return a;
}

/* The accessor's process (set by the accessor itself, thread or child). */
static pid_t acc_pid(const struct accessor *a)
{
	return a->pid;
}

/* A write that must not sleep: done (by a thread) within WAIT_MS. */
static void write_ok(struct __test_metadata *_metadata, struct env *e, void *addr, uint8_t val)
{
	struct accessor *a = writer(_metadata, e, addr, val, 0);

	ASSERT_EQ(0, acc_wait(a, WAIT_MS)) TH_LOG("a write to %p sleeps", addr);
	EXPECT_EQ(0, a->sig) TH_LOG("a write to %p: signal %d", addr, a->sig);
	EXPECT_EQ(val, a->first);
}

struct rewriter {
	uint8_t *base;
	const int *pages;	/* ends with -1 */
	uint8_t delta;
	volatile int done, sig;
};

static void *rewriter_fn(void *p)
{
	struct rewriter *w = p;
	int i, sig = 0;

	for (i = 0; w->pages[i] >= 0 && !sig; i++) {
		uint8_t *b = PG(w->base, w->pages[i]);

		sig = try_write(b + 8, (uint8_t)(b[8] + w->delta));
	}
	w->sig = sig;
	__atomic_store_n(&w->done, 1, __ATOMIC_SEQ_CST);
	return NULL;
}

/*
 * Write byte 8 of each page of the list, adding delta (0: the same value, a
 * write all the same); none of them may sleep.
 */
static void write_pages(struct __test_metadata *_metadata, uint8_t *base, const int *pages,
			uint8_t delta)
{
	struct rewriter w = { .base = base, .pages = pages, .delta = delta };
	uint64_t end = now_ns() + (uint64_t)WAIT_MS * 1000000ull;
	pthread_t th;

	ASSERT_EQ(0, pthread_create(&th, NULL, rewriter_fn, &w));
	while (!__atomic_load_n(&w.done, __ATOMIC_SEQ_CST) && now_ns() < end)
		usleep(500);
	ASSERT_TRUE(w.done) TH_LOG("a write of the list sleeps");
	pthread_join(th, NULL);
	EXPECT_EQ(0, w.sig);
}

#define WRITE_PAGES(base, ...) \
	write_pages(_metadata, (uint8_t *)(base), (const int[]){ __VA_ARGS__, -1 }, 1)
/* Writes that leave the contents as they are (the PTEs writable and dirty). */
#define TOUCH_PAGES(base, ...) \
	write_pages(_metadata, (uint8_t *)(base), (const int[]){ __VA_ARGS__, -1 }, 0)

/* COPY pages [first, first + n) of region id: page first + i gets pattern seed + i. */
static int fill_pages(int ctx, uint64_t id, size_t first, size_t n, uint64_t seed)
{
	uint8_t *b = malloc(n * ps);
	int64_t res = 0;
	size_t i;
	int ret;

	if (!b)
		return -ENOMEM;
	for (i = 0; i < n; i++)
		fill_pattern(b + i * ps, ps, seed + i);
	ret = uffdx_copy(ctx, id, first * ps, b, n * ps, 0, &res);
	free(b);
	if (!ret && res != (int64_t)(n * ps))
		ret = -EIO;
	return ret;
}

#define FILL(e, first, n, seed) \
	ASSERT_EQ(0, fill_pages((e)->ctx, (e)->r.id, first, n, seed))

/* Index (from first) of the first of n pages that is not pattern seed + i, or -1. */
static long bad_page(const void *map, size_t first, size_t n, uint64_t seed)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (check_pattern(PG(map, first + i), ps, seed + i) != -1)
			return (long)i;
	return -1;
}

#define EXPECT_PAGES(map, first, n, seed) do {					\
	long __b = bad_page(map, first, n, seed);				\
	EXPECT_EQ(-1, __b) TH_LOG("page %zu of " #map " is not pattern %llu",	\
				  (size_t)(first) + (size_t)__b,		\
				  (unsigned long long)(seed) + (unsigned long long)__b); \
} while (0)

/* REGION_INFO.resident in pages, or -1. */
static long long resident(int rfd)
{
	struct uffdx_region_info info;

	if (uffdx_region_info(rfd, &info))
		return -1;
	return (long long)(info.resident / ps);
}

#define EXPECT_RESIDENT(rfd, pages) \
	EXPECT_EQ((long long)(pages), resident(rfd)) TH_LOG("resident of " #rfd)

static uint32_t region_flags(int rfd)
{
	struct uffdx_region_info info;

	if (uffdx_region_info(rfd, &info))
		return 0xffffffffu;
	return info.flags;
}

/* A shared mapping of a region fd at an address aligned to align. */
static void *map_aligned(int fd, size_t len, size_t align)
{
	uint8_t *r = mmap(NULL, len + align, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint8_t *a;

	if (r == MAP_FAILED)
		return MAP_FAILED;
	a = (uint8_t *)(((uintptr_t)r + align - 1) & ~(uintptr_t)(align - 1));
	if (a > r)
		munmap(r, (size_t)(a - r));
	if (r + align > a)
		munmap(a + len, (size_t)(r + align - a));
	return mmap(a, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0);
}

/* ---- events ------------------------------------------------------------------- */

static void check_event(struct __test_metadata *_metadata, const struct uffdx_event *ev,
			const void *addr, uint64_t id, uint64_t off, uint32_t flags,
			pid_t pid, pid_t tid)
{
	EXPECT_EQ(UFFDX_EVENT_PAGEFAULT, ev->type);
	EXPECT_EQ(flags, ev->flags) TH_LOG("flags 0x%x, want 0x%x", ev->flags, flags);
	EXPECT_EQ((uintptr_t)addr, ev->address);
	EXPECT_EQ(id, ev->region_id);
	EXPECT_EQ(off, ev->offset) TH_LOG("offset 0x%llx, want 0x%llx",
					  (unsigned long long)ev->offset, (unsigned long long)off);
	EXPECT_EQ((uint32_t)pid, ev->pid);
	EXPECT_EQ((uint32_t)tid, ev->tid);
	EXPECT_EQ(0, ev->__pad);
	EXPECT_EQ(0, ev->reserved[0]);
	EXPECT_EQ(0, ev->reserved[1]);
	EXPECT_EQ(0, ev->reserved[2]);
}

/* The next event is this one. */
static void expect_event(struct __test_metadata *_metadata, int ctx, const void *addr,
			 uint64_t id, uint64_t off, uint32_t flags, pid_t pid, pid_t tid)
{
	struct uffdx_event ev;

	memset(&ev, 0xcc, sizeof(ev));
	ASSERT_EQ(1, wait_event(ctx, &ev, WAIT_MS))
		TH_LOG("no event for %p (flags 0x%x)", addr, flags);
	check_event(_metadata, &ev, addr, id, off, flags, pid, tid);
}

/* ---- scans -------------------------------------------------------------------- */

/*
 * Scan pages [first, first + n) of region id in the range form, cap ranges
 * per call, continuing from offset + scanned until all of it is scanned;
 * mark the reported pages in pages[] (indexed from first).  Checks the
 * output's shape: ranges in order, page aligned, inside what the call
 * scanned, adjacent ones merged, "written" their sum, nothing written past
 * out_len, a short scan only with a full output.  Returns the number of
 * calls, or -1 (logged, and the test failed).
 */
static int scan_ranges(struct __test_metadata *_metadata, int ctx, uint64_t id, size_t first,
		       size_t n, uint32_t flags, unsigned int cap, uint8_t *pages)
{
	struct uffdx_scan_range *out = calloc((size_t)cap + 1, sizeof(*out));
	uint64_t off = first * ps, end = (first + n) * ps;
	int calls = 0, bad = 0;
	struct uffdx_scan s;
	uint64_t i, p;

	if (!out)
		return -1;
	memset(pages, 0, n);
	while (off < end && !bad) {
		uint64_t prev = 0, sum = 0, left = end - off;

		memset(out, 0xa5, ((size_t)cap + 1) * sizeof(*out));
		scan_init(&s, id, off, left, flags, out, cap);
		if (raw_scan(ctx, &s)) {
			TH_LOG("SCAN of pages %llu-%llu (flags 0x%x): %s",
			       (unsigned long long)(off / ps), (unsigned long long)(end / ps - 1),
			       flags, strerror(errno));
			bad = 1;
			break;
		}
		calls++;
		if (!s.scanned || s.scanned % ps || s.scanned > left || s.nr_out > cap ||
		    (s.scanned < left && s.nr_out != cap)) {
			TH_LOG("SCAN at page %llu, %llu pages, %u ranges: scanned 0x%llx bytes, nr_out %llu",
			       (unsigned long long)(off / ps), (unsigned long long)(left / ps), cap,
			       (unsigned long long)s.scanned, (unsigned long long)s.nr_out);
			bad = 1;
			break;
		}
		if (out[cap].offset != 0xa5a5a5a5a5a5a5a5ull || out[cap].len != 0xa5a5a5a5a5a5a5a5ull) {
			TH_LOG("SCAN wrote past out_len (%u ranges)", cap);
			bad = 1;
		}
		for (i = 0; i < s.nr_out && !bad; i++) {
			const struct uffdx_scan_range *r = &out[i];

			if (!r->len || r->len % ps || r->offset % ps || r->offset < off ||
			    r->offset + r->len < r->offset || r->offset + r->len > off + s.scanned ||
			    (i && r->offset <= prev)) {
				TH_LOG("SCAN range %llu: offset 0x%llx len 0x%llx (call at 0x%llx, scanned 0x%llx, previous end 0x%llx)%s",
				       (unsigned long long)i, (unsigned long long)r->offset,
				       (unsigned long long)r->len, (unsigned long long)off,
				       (unsigned long long)s.scanned, (unsigned long long)prev,
				       i && r->offset == prev ? ": adjacent ranges not merged" : "");
				bad = 1;
				break;
			}
			for (p = r->offset; p < r->offset + r->len; p += ps)
				pages[p / ps - first] = 1;
			sum += r->len;
			prev = r->offset + r->len;
		}
		if (!bad && s.written != sum) {
			TH_LOG("SCAN: written 0x%llx, its ranges add up to 0x%llx",
			       (unsigned long long)s.written, (unsigned long long)sum);
			bad = 1;
		}
		off += s.scanned;
	}
	free(out);
	EXPECT_FALSE(bad);
	return bad ? -1 : calls;
}

/*
 * The same with the bitmap form, cap bytes per call.  Checks: a short scan
 * only with a full bitmap (out_len * 8 pages), nr_out the bytes it covers,
 * nothing written past them, no bit set past the pages scanned, "written"
 * the bits set.
 */
static int scan_bitmap(struct __test_metadata *_metadata, int ctx, uint64_t id, size_t first,
		       size_t n, uint32_t flags, unsigned int cap, uint8_t *pages)
{
	uint8_t *out = malloc((size_t)cap + 16);
	uint64_t off = first * ps, end = (first + n) * ps;
	int calls = 0, bad = 0;
	struct uffdx_scan s;
	uint64_t i;

	if (!out)
		return -1;
	memset(pages, 0, n);
	while (off < end && !bad) {
		uint64_t left = end - off, np, bytes, bits = 0, full = (uint64_t)cap * 8 * ps;

		memset(out, 0xa5, (size_t)cap + 16);
		scan_init(&s, id, off, left, flags | UFFDX_SCAN_BITMAP, out, cap);
		if (raw_scan(ctx, &s)) {
			TH_LOG("SCAN (bitmap) of pages %llu-%llu (flags 0x%x): %s",
			       (unsigned long long)(off / ps), (unsigned long long)(end / ps - 1),
			       flags, strerror(errno));
			bad = 1;
			break;
		}
		calls++;
		np = s.scanned / ps;
		bytes = (np + 7) / 8;
		if (!s.scanned || s.scanned % ps || s.scanned != (left < full ? left : full) ||
		    s.nr_out != bytes) {
			TH_LOG("SCAN (bitmap) at page %llu, %llu pages, %u bytes: scanned 0x%llx bytes, nr_out %llu",
			       (unsigned long long)(off / ps), (unsigned long long)(left / ps), cap,
			       (unsigned long long)s.scanned, (unsigned long long)s.nr_out);
			bad = 1;
			break;
		}
		for (i = bytes; i < (uint64_t)cap + 16; i++)
			if (out[i] != 0xa5) {
				TH_LOG("SCAN (bitmap) wrote byte %llu, past the %llu it covers",
				       (unsigned long long)i, (unsigned long long)bytes);
				bad = 1;
				break;
			}
		for (i = np; i < bytes * 8 && !bad; i++)
			if (out[i / 8] & (1u << (i % 8))) {
				TH_LOG("SCAN (bitmap): bit %llu set, past the %llu pages scanned",
				       (unsigned long long)i, (unsigned long long)np);
				bad = 1;
			}
		for (i = 0; i < np && !bad; i++)
			if (out[i / 8] & (1u << (i % 8))) {
				pages[off / ps + i - first] = 1;
				bits++;
			}
		if (!bad && s.written != bits * ps) {
			TH_LOG("SCAN (bitmap): written 0x%llx, %llu bits set",
			       (unsigned long long)s.written, (unsigned long long)bits);
			bad = 1;
		}
		off += s.scanned;
	}
	free(out);
	EXPECT_FALSE(bad);
	return bad ? -1 : calls;
}

static void compare_pages(struct __test_metadata *_metadata, const char *what, size_t first,
			  size_t n, const uint8_t *got, const int *want)
{
	uint8_t *exp = calloc(n, 1);
	size_t i;

	ASSERT_NE(NULL, exp);
	for (i = 0; want[i] >= 0; i++) {
		ASSERT_TRUE((size_t)want[i] >= first && (size_t)want[i] < first + n);
		exp[want[i] - first] = 1;
	}
	for (i = 0; i < n; i++) {
		EXPECT_EQ(exp[i], got[i]) TH_LOG("%s: page %zu %s", what, first + i,
						 exp[i] ? "written, not reported" :
							  "reported, not written");
	}
	free(exp);
}

/* A scan (range form) of pages [first, first + n) reports exactly want (absolute pages). */
static void expect_scan(struct __test_metadata *_metadata, int ctx, uint64_t id, size_t first,
			size_t n, uint32_t flags, const int *want)
{
	uint8_t *got = calloc(n, 1);

	ASSERT_NE(NULL, got);
	ASSERT_LE(0, scan_ranges(_metadata, ctx, id, first, n, flags, 64, got));
	compare_pages(_metadata, "scan", first, n, got, want);
	free(got);
}

/* The whole region of e reports exactly the listed pages. */
#define EXPECT_SCAN(e, flags, ...)						\
	expect_scan(_metadata, (e)->ctx, (e)->r.id, 0, (e)->r.len / ps, flags,	\
		    (const int[]){ __VA_ARGS__, -1 })
#define EXPECT_SCAN_R(ctx, r, flags, ...)					\
	expect_scan(_metadata, ctx, (r)->id, 0, (r)->len / ps, flags,		\
		    (const int[]){ __VA_ARGS__, -1 })

/* ---- caught and free writes ----------------------------------------------------- */

/*
 * A write at addr (page pg of region r) is caught.  sync: the writer (a
 * thread, or with child a process) sleeps with its WP event queued, the page
 * unchanged, until the page is unprotected; then the write lands.  async:
 * the write proceeds at once and a scan (REARM) of the page reports it.
 * Either way: no other event.
 */
static void caught_finish(struct __test_metadata *_metadata, struct env *e,
			  const struct uffdx_region_map *r, struct accessor *a, size_t pg,
			  uint8_t old)
{
	uint8_t *addr = a->addr, *page = (uint8_t *)((uintptr_t)addr & ~(uintptr_t)(ps - 1));
	uint8_t got[1];

	if (!e->async) {
		expect_event(_metadata, e->ctx, page, r->id, pg * ps, PF_WPW, acc_pid(a), a->tid);
		EXPECT_TRUE(acc_blocked(a, QUIET_MS)) TH_LOG("the writer of page %zu did not sleep", pg);
		EXPECT_EQ(old, *(volatile uint8_t *)addr) TH_LOG("the write landed while protected");
		EXPECT_EQ(0, event_arrives(e->ctx, 0));
		ASSERT_EQ(0, wp_op(e->ctx, r->id, pg * ps, ps, 0));
	}
	ASSERT_EQ(0, acc_wait(a, WAIT_MS)) TH_LOG("the writer of page %zu %s", pg,
						  e->async ? "sleeps" : "is not woken by unprotect");
	EXPECT_EQ(0, a->sig);
	EXPECT_EQ(a->wval, a->first);
	EXPECT_EQ(a->wval, *(volatile uint8_t *)addr);
	if (e->async) {
		uint8_t *one = got;

		ASSERT_LE(0, scan_ranges(_metadata, e->ctx, r->id, pg, 1, UFFDX_SCAN_REARM, 4, one));
		EXPECT_EQ(1, one[0]) TH_LOG("the write to page %zu was not recorded", pg);
	}
	EXPECT_EQ(0, event_arrives(e->ctx, 0));
}

static void caught(struct __test_metadata *_metadata, struct env *e,
		   const struct uffdx_region_map *r, uint8_t *addr, size_t pg, int child)
{
	uint8_t old = *(volatile uint8_t *)addr;	/* reads never fault for WP */
	struct accessor *a = writer(_metadata, e, addr, (uint8_t)(old ^ 0x5a), child);

	caught_finish(_metadata, e, r, a, pg, old);
}

/* The same through the fixture's region and a thread. */
#define CAUGHT(e, addr, pg) caught(_metadata, e, &(e)->r, (uint8_t *)(addr), pg, 0)

/* A write at addr (page pg of r) that is not caught: it does not sleep, no event, not recorded. */
static void free_write(struct __test_metadata *_metadata, struct env *e,
		       const struct uffdx_region_map *r, uint8_t *addr, size_t pg)
{
	uint8_t old = *(volatile uint8_t *)addr;

	write_ok(_metadata, e, addr, (uint8_t)(old ^ 0xa5));
	EXPECT_EQ((uint8_t)(old ^ 0xa5), *(volatile uint8_t *)addr);
	EXPECT_EQ(0, event_arrives(e->ctx, 0)) TH_LOG("an event for a write to page %zu", pg);
	if (e->async) {
		uint8_t one[1];

		ASSERT_LE(0, scan_ranges(_metadata, e->ctx, r->id, pg, 1, 0, 4, one));
		EXPECT_EQ(0, one[0]) TH_LOG("a write to unprotected page %zu was recorded", pg);
	}
}

#define FREE_WRITE(e, addr, pg) free_write(_metadata, e, &(e)->r, (uint8_t *)(addr), pg)

/* ---- the fixtures ---------------------------------------------------------------- */

/* A sync (WP) region of NPAGES pages. */
FIXTURE(wp) {
	struct env e;
};

FIXTURE_SETUP(wp)
{
	env_init(&self->e);
	SKIP_IF_NO_WP();
	env_setup(_metadata, &self->e, 0, NPAGES, 0);
}

FIXTURE_TEARDOWN(wp)
{
	env_teardown(&self->e);
}

/* An async (WP_ASYNC) region of APAGES pages. */
FIXTURE(wpa) {
	struct env e;
};

FIXTURE_SETUP(wpa)
{
	env_init(&self->e);
	SKIP_IF_NO_WPA();
	env_setup(_metadata, &self->e, 1, APAGES, 0);
}

FIXTURE_TEARDOWN(wpa)
{
	env_teardown(&self->e);
}

/* Either mode, for what both must do alike. */
FIXTURE(both) {
	struct env e;
};

FIXTURE_VARIANT(both) {
	int async;
};

FIXTURE_VARIANT_ADD(both, sync) {
	.async = 0,
};

FIXTURE_VARIANT_ADD(both, async) {
	.async = 1,
};

FIXTURE_SETUP(both)
{
	env_init(&self->e);
	if (variant->async)
		SKIP_IF_NO_WPA();
	else
		SKIP_IF_NO_WP();
	env_setup(_metadata, &self->e, variant->async, NPAGES, 0);
}

FIXTURE_TEARDOWN(both)
{
	env_teardown(&self->e);
}

#define E	(&self->e)
#define MAP	(self->e.r.addr)

/* ---- 1. the ABI ------------------------------------------------------------------ */

#define WP_IOCTLS	((1ULL << _UFFDX_WRITEPROTECT) | (1ULL << _UFFDX_WRITEPROTECT_ADDR))
#define SCAN_IOCTLS	(1ULL << _UFFDX_SCAN)

/* Negotiate features on a fresh context: its ioctls, or 0 (and logged) on failure. */
static uint64_t ioctls_of(struct __test_metadata *_metadata, uint64_t features)
{
	struct uffdx_api a;
	int fd;

	memset(&a, 0, sizeof(a));
	fd = uffdx_open_api(features, 0, &a);
	EXPECT_LE(0, fd) TH_LOG("features 0x%llx: %s", (unsigned long long)features,
				strerror(-fd));
	if (fd < 0)
		return 0;
	close(fd);
	return a.ioctls;
}

TEST(features_grant_their_ioctls)
{
	uint64_t f, io;

	SKIP_IF_NO_UFFDX();
	f = supported();
	if (!(f & (UFFDX_FEATURE_WP | UFFDX_FEATURE_WP_ASYNC)))
		SKIP(return, "the module reports neither UFFDX_FEATURE_WP nor UFFDX_FEATURE_WP_ASYNC");
	io = ioctls_of(_metadata, DEFAULT_FEATURES);
	EXPECT_EQ(0, io & (WP_IOCTLS | SCAN_IOCTLS)) TH_LOG("ioctls 0x%llx", (unsigned long long)io);
	if (f & UFFDX_FEATURE_WP) {
		io = ioctls_of(_metadata, DEFAULT_FEATURES | UFFDX_FEATURE_WP);
		EXPECT_EQ(WP_IOCTLS, io & (WP_IOCTLS | SCAN_IOCTLS))
			TH_LOG("WP: ioctls 0x%llx", (unsigned long long)io);
	}
	if (f & UFFDX_FEATURE_WP_ASYNC) {
		io = ioctls_of(_metadata, DEFAULT_FEATURES | UFFDX_FEATURE_WP_ASYNC);
		/* an async tracker protects its region in the first place */
		EXPECT_EQ(WP_IOCTLS | SCAN_IOCTLS, io & (WP_IOCTLS | SCAN_IOCTLS))
			TH_LOG("WP_ASYNC: ioctls 0x%llx", (unsigned long long)io);
	}
	if ((f & UFFDX_FEATURE_WP) && (f & UFFDX_FEATURE_WP_ASYNC)) {
		io = ioctls_of(_metadata, DEFAULT_FEATURES | UFFDX_FEATURE_WP | UFFDX_FEATURE_WP_ASYNC);
		EXPECT_EQ(WP_IOCTLS | SCAN_IOCTLS, io & (WP_IOCTLS | SCAN_IOCTLS));
		/* REGIONS alone: the region ioctls, nothing of write-protect */
		io = ioctls_of(_metadata, UFFDX_FEATURE_WP | UFFDX_FEATURE_WP_ASYNC);
		EXPECT_EQ(WP_IOCTLS | SCAN_IOCTLS, io & (WP_IOCTLS | SCAN_IOCTLS))
			TH_LOG("WP | WP_ASYNC without MISSING: ioctls 0x%llx", (unsigned long long)io);
	}
}

/* A context that did not negotiate the feature: its ioctls are EINVAL, nothing written. */
TEST(ioctls_need_their_features)
{
	struct uffdx_region_map m;
	struct uffdx_scan_range out[4];
	struct uffdx_scan s;
	int64_t res = 0;
	uint64_t f;
	int ctx, ret;

	SKIP_IF_NO_UFFDX();
	f = supported();
	if (!(f & (UFFDX_FEATURE_WP | UFFDX_FEATURE_WP_ASYNC)))
		SKIP(return, "the module reports neither UFFDX_FEATURE_WP nor UFFDX_FEATURE_WP_ASYNC");
	ctx = ctx_open(DEFAULT_FEATURES, 0);
	ASSERT_LE(0, ctx);
	ASSERT_EQ(0, uffdx_region_map(ctx, 8 * ps, 0, &m));
	ASSERT_EQ(0, fill_pages(ctx, m.id, 0, 2, 10));
	ret = raw_wp(ctx, m.id, 0, ps, UFFDX_WP_PROTECT, &res);
	EXPECT_ERR(ret, res, EINVAL, SENTINEL);
	ret = raw_wp(ctx, m.id, 0, ps, 0, &res);
	EXPECT_ERR(ret, res, EINVAL, SENTINEL);
	ret = raw_wp_addr(ctx, m.addr, ps, UFFDX_WP_PROTECT, &res);
	EXPECT_ERR(ret, res, EINVAL, SENTINEL);
	scan_init(&s, m.id, 0, 8 * ps, 0, out, 4);
	EXPECT_EQ(-1, raw_scan(ctx, &s));
	EXPECT_EQ(EINVAL, errno);
	/* the library's choke point says the same */
	{
		struct uffdx_range r;

		wp_init(&r, m.id, 0, ps, UFFDX_WP_PROTECT);
		EXPECT_EQ(-EINVAL, uffdx_ioctl(ctx, UFFDX_IOC_WRITEPROTECT, &r));
	}
	EXPECT_PAGES(m.addr, 0, 2, 10);
	uffdx_region_unmap(&m);
	close(ctx);

	/* WP without WP_ASYNC: no SCAN, even on its own WP region */
	if (f & UFFDX_FEATURE_WP) {
		ctx = ctx_open(DEFAULT_FEATURES | UFFDX_FEATURE_WP, 0);
		ASSERT_LE(0, ctx);
		ASSERT_EQ(0, uffdx_region_map(ctx, 8 * ps, UFFDX_REGION_CREATE_WP, &m));
		scan_init(&s, m.id, 0, 8 * ps, 0, out, 4);
		EXPECT_EQ(-1, raw_scan(ctx, &s));
		EXPECT_EQ(EINVAL, errno);
		uffdx_region_unmap(&m);
		close(ctx);
	}
}

static int raw_create(int ctx, uint32_t flags, uint64_t len, int *fd)
{
	struct uffdx_region_create rc;
	int ret, err;

	memset(&rc, 0, sizeof(rc));
	rc.size = sizeof(rc);
	rc.flags = flags;
	rc.len = len;
	rc.fd = -1;
	ret = ioctl(ctx, UFFDX_IOC_REGION_CREATE, &rc);
	err = errno;
	*fd = ret ? -1 : rc.fd;
	errno = err;
	return ret;
}

#define EXPECT_CREATE_EINVAL(ctx, flags) do {					\
	int __fd, __r = raw_create(ctx, flags, 4 * ps, &__fd), __e = errno;	\
	EXPECT_EQ(-1, __r) TH_LOG("REGION_CREATE flags 0x%x accepted", flags);	\
	if (__r) {								\
		EXPECT_EQ(EINVAL, __e) TH_LOG("flags 0x%x: %s", flags, strerror(__e)); \
	} else {								\
		close(__fd);							\
	}									\
} while (0)

TEST(region_create_flags_and_info)
{
	const uint32_t W = UFFDX_REGION_CREATE_WP, A = UFFDX_REGION_CREATE_WP_ASYNC;
	int ctx, fd, fds;
	uint64_t f;

	SKIP_IF_NO_UFFDX();
	f = supported();
	if (!(f & (UFFDX_FEATURE_WP | UFFDX_FEATURE_WP_ASYNC)))
		SKIP(return, "the module reports neither UFFDX_FEATURE_WP nor UFFDX_FEATURE_WP_ASYNC");
	fds = count_open_fds();

	/* neither feature: neither flag */
	ctx = ctx_open(DEFAULT_FEATURES, 0);
	ASSERT_LE(0, ctx);
	EXPECT_CREATE_EINVAL(ctx, W);
	EXPECT_CREATE_EINVAL(ctx, A);
	EXPECT_CREATE_EINVAL(ctx, W | A);
	ASSERT_EQ(0, raw_create(ctx, 0, 4 * ps, &fd));
	EXPECT_EQ(0, region_flags(fd));
	close(fd);
	close(ctx);

	/* one feature: its flag only */
	if (f & UFFDX_FEATURE_WP) {
		ctx = ctx_open(DEFAULT_FEATURES | UFFDX_FEATURE_WP, 0);
		ASSERT_LE(0, ctx);
		EXPECT_CREATE_EINVAL(ctx, A);
		EXPECT_CREATE_EINVAL(ctx, W | A);
		ASSERT_EQ(0, raw_create(ctx, W, 4 * ps, &fd)) TH_LOG("%s", strerror(errno));
		EXPECT_EQ(UFFDX_REGION_WP, region_flags(fd));
		/* the flags outlive the context */
		close(ctx);
		EXPECT_EQ(UFFDX_REGION_WP | UFFDX_REGION_OWNER_GONE, region_flags(fd));
		close(fd);
	}
	if (f & UFFDX_FEATURE_WP_ASYNC) {
		ctx = ctx_open(DEFAULT_FEATURES | UFFDX_FEATURE_WP_ASYNC, 0);
		ASSERT_LE(0, ctx);
		EXPECT_CREATE_EINVAL(ctx, W | A);
		ASSERT_EQ(0, raw_create(ctx, A, 4 * ps, &fd)) TH_LOG("%s", strerror(errno));
		EXPECT_EQ(UFFDX_REGION_WP_ASYNC, region_flags(fd));
		close(ctx);
		EXPECT_EQ(UFFDX_REGION_WP_ASYNC | UFFDX_REGION_OWNER_GONE, region_flags(fd));
		close(fd);
	}

	/* both features: one mode per region, and no unknown flag */
	ctx = ctx_open(ctx_features(0), 0);
	ASSERT_LE(0, ctx);
	EXPECT_CREATE_EINVAL(ctx, W | A);
	EXPECT_CREATE_EINVAL(ctx, 0x4);
	EXPECT_CREATE_EINVAL(ctx, (f & UFFDX_FEATURE_WP ? W : A) | 0x8);
	EXPECT_CREATE_EINVAL(ctx, 1u << 31);
	close(ctx);
	/* the failed creations left no fd behind */
	EXPECT_EQ(fds, count_open_fds());
}

/*
 * Dirty tracking is write protection that does not sleep: negotiating
 * WP_ASYNC negotiates WP, so such a context may create either kind.
 */
TEST(wp_async_implies_wp)
{
	struct uffdx_region_info info;
	uint64_t id = 0;
	int ctx, rfd;

	SKIP_IF_NO_WPA();
	ctx = ctx_open(DEFAULT_FEATURES | UFFDX_FEATURE_WP_ASYNC, 0);
	ASSERT_LE(0, ctx);
	rfd = uffdx_region_create(ctx, 4 * ps, UFFDX_REGION_CREATE_WP, &id);
	ASSERT_LE(0, rfd) TH_LOG("%s", strerror(-rfd));
	ASSERT_EQ(0, uffdx_region_info(rfd, &info));
	EXPECT_EQ(UFFDX_REGION_WP, info.flags & (UFFDX_REGION_WP | UFFDX_REGION_WP_ASYNC));
	close(rfd);
	close(ctx);
}

/* WAKE and RESOLVE are a WP handler's too: a context with WP alone (no MISSING) has them. */
TEST(wp_alone_wakes_and_resolves)
{
	struct uffdx_region_map m;
	struct uffdx_resolution res;
	struct uffdx_resolve out;
	struct uffdx_event ev;
	struct accessor *a;
	struct env e;
	uint64_t io;

	SKIP_IF_NO_WP();
	io = ioctls_of(_metadata, UFFDX_FEATURE_WP);
	EXPECT_EQ((1ULL << _UFFDX_WAKE) | (1ULL << _UFFDX_RESOLVE),
		  io & ((1ULL << _UFFDX_WAKE) | (1ULL << _UFFDX_RESOLVE)))
		TH_LOG("WP alone: ioctls 0x%llx", (unsigned long long)io);
	EXPECT_EQ(0, io & (1ULL << _UFFDX_COPY));
	env_init(&e);
	e.ctx = ctx_open(UFFDX_FEATURE_WP, 0);
	ASSERT_LE(0, e.ctx);
	ASSERT_EQ(0, uffdx_region_map(e.ctx, 4 * ps, UFFDX_REGION_CREATE_WP, &m));
	ASSERT_EQ(0, wp_op(e.ctx, m.id, 0, 4 * ps, UFFDX_WP_PROTECT));
	/* DONTWAKE, then WAKE */
	a = writer(_metadata, &e, PG(m.addr, 0), 0x11, 0);
	expect_event(_metadata, e.ctx, m.addr, m.id, 0, PF_WPW, getpid(), a->tid);
	ASSERT_EQ(0, wp_op(e.ctx, m.id, 0, ps, UFFDX_WP_DONTWAKE));
	EXPECT_TRUE(acc_blocked(a, QUIET_MS));
	ASSERT_EQ(0, uffdx_wake(e.ctx, m.id, 0, ps));
	ASSERT_EQ(0, acc_wait(a, WAIT_MS));
	EXPECT_EQ(0x11, PG(m.addr, 0)[0]);
	/* a RESOLVE that unprotects */
	a = writer(_metadata, &e, PG(m.addr, 1), 0x22, 0);
	ASSERT_EQ(1, wait_event(e.ctx, &ev, WAIT_MS));
	res = wp_res(m.id, ps, ps, 0);
	ASSERT_EQ(0, rsv(e.ctx, &res, 1, &ev, 1, 0, UFFDX_RESOLVE_NOWAIT, &out))
		TH_LOG("%s", strerror(errno));
	EXPECT_EQ(1, out.nr_done);
	ASSERT_EQ(0, acc_wait(a, WAIT_MS));
	EXPECT_EQ(0x22, PG(m.addr, 1)[0]);
	uffdx_region_unmap(&m);
	close(e.ctx);
}

/* ---- 2. sync: events, sleeping writers, waking them ----------------------------------- */

TEST_F(wp, write_event_fields_unprotect_wakes)
{
	struct accessor *a, *c;
	int64_t res = 0;
	int ret;

	FILL(E, 0, 4, 100);
	EXPECT_PAGES(MAP, 0, 4, 100);	/* mapped now */
	TOUCH_PAGES(MAP, 0, 1, 2, 3);	/* and writable */
	ret = raw_wp(E->ctx, E->r.id, ps, 2 * ps, UFFDX_WP_PROTECT, &res);
	EXPECT_DONE(ret, res, 2 * ps);
	memcpy(E->buf, PG(MAP, 1), ps);

	/* reads never fault for protection */
	EXPECT_EQ(0, memcmp(PG(MAP, 1), E->buf, ps));
	EXPECT_EQ(0, event_arrives(E->ctx, 0));
	/* the neighbours take writes */
	FREE_WRITE(E, PG(MAP, 0) + 1, 0);
	FREE_WRITE(E, PG(MAP, 3) + ps - 1, 3);

	/* a thread */
	a = writer(_metadata, E, PG(MAP, 1) + 123, (uint8_t)(E->buf[123] ^ 0xff), 0);
	expect_event(_metadata, E->ctx, PG(MAP, 1), E->r.id, ps, PF_WPW, getpid(), a->tid);
	EXPECT_TRUE(acc_blocked(a, QUIET_MS)) TH_LOG("the writer did not sleep");
	EXPECT_EQ(0, memcmp(PG(MAP, 1), E->buf, ps)) TH_LOG("the page changed while protected");
	EXPECT_EQ(0, event_arrives(E->ctx, 0)) TH_LOG("more than one event");
	ret = raw_wp(E->ctx, E->r.id, ps, ps, 0, &res);
	EXPECT_DONE(ret, res, ps);
	ASSERT_EQ(0, acc_wait(a, WAIT_MS)) TH_LOG("unprotect did not wake the writer");
	EXPECT_EQ(0, a->sig);
	EXPECT_EQ((uint8_t)(E->buf[123] ^ 0xff), a->first);
	E->buf[123] ^= 0xff;
	EXPECT_EQ(0, memcmp(PG(MAP, 1), E->buf, ps));

	/* a process */
	memcpy(E->buf, PG(MAP, 2), ps);
	c = writer(_metadata, E, PG(MAP, 2) + 7, (uint8_t)(E->buf[7] ^ 0x0f), 1);
	expect_event(_metadata, E->ctx, PG(MAP, 2), E->r.id, 2 * ps, PF_WPW, c->child, c->child);
	EXPECT_TRUE(acc_blocked(c, QUIET_MS));
	EXPECT_EQ(0, memcmp(PG(MAP, 2), E->buf, ps));
	UNPROTECT(E, 2, 1);
	ASSERT_EQ(0, acc_wait(c, WAIT_MS));
	EXPECT_EQ(0, c->sig);
	E->buf[7] ^= 0x0f;
	EXPECT_EQ(0, memcmp(PG(MAP, 2), E->buf, ps));
	EXPECT_EQ(0, event_arrives(E->ctx, QUIET_MS));
	EXPECT_RESIDENT(E->r.fd, 4);
}

TEST_F(wp, wake_without_unprotect_refaults)
{
	struct accessor *a;

	FILL(E, 5, 1, 110);
	PROTECT(E, 5, 1);
	a = writer(_metadata, E, PG(MAP, 5) + 1, 0x11, 0);
	expect_event(_metadata, E->ctx, PG(MAP, 5), E->r.id, 5 * ps, PF_WPW, getpid(), a->tid);
	EXPECT_TRUE(acc_blocked(a, QUIET_MS));
	/* woken, the write is retried: still protected, a second event */
	ASSERT_EQ(0, uffdx_wake(E->ctx, E->r.id, 5 * ps, ps));
	expect_event(_metadata, E->ctx, PG(MAP, 5), E->r.id, 5 * ps, PF_WPW, getpid(), a->tid);
	EXPECT_TRUE(acc_blocked(a, QUIET_MS)) TH_LOG("WAKE let the write through a protected page");
	EXPECT_PAGES(MAP, 5, 1, 110);
	UNPROTECT(E, 5, 1);
	ASSERT_EQ(0, acc_wait(a, WAIT_MS));
	EXPECT_EQ(0, a->sig);
	EXPECT_EQ(0x11, PG(MAP, 5)[1]);
	EXPECT_EQ(0, event_arrives(E->ctx, QUIET_MS));
}

TEST_F(wp, unprotect_dontwake_then_wake)
{
	struct accessor *a;
	int64_t res = 0;
	int ret;

	FILL(E, 6, 2, 120);
	PROTECT(E, 6, 2);
	a = writer(_metadata, E, PG(MAP, 7) + 2, 0x22, 0);
	expect_event(_metadata, E->ctx, PG(MAP, 7), E->r.id, 7 * ps, PF_WPW, getpid(), a->tid);
	ret = raw_wp(E->ctx, E->r.id, 6 * ps, 2 * ps, UFFDX_WP_DONTWAKE, &res);
	EXPECT_DONE(ret, res, 2 * ps);
	EXPECT_TRUE(acc_blocked(a, QUIET_MS)) TH_LOG("DONTWAKE woke the writer");
	EXPECT_EQ(0, event_arrives(E->ctx, 0));
	/* unprotected: another writer goes through at once */
	FREE_WRITE(E, PG(MAP, 6), 6);
	ASSERT_EQ(0, uffdx_wake(E->ctx, E->r.id, 7 * ps, ps));
	ASSERT_EQ(0, acc_wait(a, WAIT_MS)) TH_LOG("WAKE did not wake the writer");
	EXPECT_EQ(0, a->sig);
	EXPECT_EQ(0x22, PG(MAP, 7)[2]);
	EXPECT_EQ(0, event_arrives(E->ctx, QUIET_MS));
}

TEST_F(wp, two_writers_one_page_two_events)
{
	struct uffdx_event ev[2];
	struct accessor *a, *b;
	int i, n = 0, seen_a = 0, seen_b = 0;

	FILL(E, 9, 1, 130);
	PROTECT(E, 9, 1);
	a = writer(_metadata, E, PG(MAP, 9) + 10, 0x33, 0);
	b = writer(_metadata, E, PG(MAP, 9) + 20, 0x44, 1);
	while (n < 2) {
		int got = wait_events(E->ctx, ev + n, 2 - n, WAIT_MS);

		ASSERT_LT(0, got) TH_LOG("%d of 2 events", n);
		n += got;
	}
	for (i = 0; i < 2; i++) {
		check_event(_metadata, &ev[i], PG(MAP, 9), E->r.id, 9 * ps, PF_WPW, ev[i].pid,
			    ev[i].tid);
		seen_a += ev[i].tid == (uint32_t)a->tid && ev[i].pid == (uint32_t)getpid();
		seen_b += ev[i].tid == (uint32_t)b->child && ev[i].pid == (uint32_t)b->child;
	}
	EXPECT_EQ(1, seen_a);
	EXPECT_EQ(1, seen_b);
	EXPECT_TRUE(acc_blocked(a, QUIET_MS));
	EXPECT_FALSE(b->done);
	/* one unprotect wakes both */
	UNPROTECT(E, 9, 1);
	ASSERT_EQ(0, acc_wait(a, WAIT_MS));
	ASSERT_EQ(0, acc_wait(b, WAIT_MS));
	EXPECT_EQ(0, a->sig);
	EXPECT_EQ(0, b->sig);
	EXPECT_EQ(0x33, PG(MAP, 9)[10]);
	EXPECT_EQ(0x44, PG(MAP, 9)[20]);
	EXPECT_EQ(0, event_arrives(E->ctx, QUIET_MS));
}

static volatile int usr1_seen;

static void usr1_handler(int sig)
{
	(void)sig;
	__atomic_add_fetch(&usr1_seen, 1, __ATOMIC_SEQ_CST);
}

TEST_F(wp, signal_ends_the_sleep_and_the_write_faults_again)
{
	struct sigaction sa;
	struct accessor *a;
	uint64_t end;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = usr1_handler;
	sigemptyset(&sa.sa_mask);
	ASSERT_EQ(0, sigaction(SIGUSR1, &sa, NULL));
	FILL(E, 11, 1, 140);
	PROTECT(E, 11, 1);
	a = writer(_metadata, E, PG(MAP, 11) + 5, 0x55, 0);
	expect_event(_metadata, E->ctx, PG(MAP, 11), E->r.id, 11 * ps, PF_WPW, getpid(), a->tid);
	ASSERT_EQ(0, pthread_kill(a->thread, SIGUSR1));
	end = now_ns() + (uint64_t)WAIT_MS * 1000000ull;
	while (!__atomic_load_n(&usr1_seen, __ATOMIC_SEQ_CST) && now_ns() < end)
		usleep(1000);
	EXPECT_EQ(1, usr1_seen) TH_LOG("the sleeping writer did not handle the signal");
	/* after the handler the store runs again: a second event, asleep again */
	expect_event(_metadata, E->ctx, PG(MAP, 11), E->r.id, 11 * ps, PF_WPW, getpid(), a->tid);
	EXPECT_TRUE(acc_blocked(a, QUIET_MS));
	EXPECT_PAGES(MAP, 11, 1, 140);
	UNPROTECT(E, 11, 1);
	ASSERT_EQ(0, acc_wait(a, WAIT_MS));
	EXPECT_EQ(0, a->sig);
	EXPECT_EQ(0x55, PG(MAP, 11)[5]);
}

TEST_F(wp, writer_killed_while_asleep)
{
	struct uffdx_event ev;
	struct accessor *a, *b;
	int status = 0;

	FILL(E, 12, 2, 150);
	PROTECT(E, 12, 2);
	/* killed after its event was read */
	a = writer(_metadata, E, PG(MAP, 12) + 3, 0x66, 1);
	expect_event(_metadata, E->ctx, PG(MAP, 12), E->r.id, 12 * ps, PF_WPW, a->child, a->child);
	EXPECT_TRUE(acc_blocked(a, QUIET_MS));
	ASSERT_EQ(0, kill_child(a->child, &status)) TH_LOG("the killed writer does not exit");
	a->child = -1;
	EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) TH_LOG("status 0x%x", status);
	EXPECT_PAGES(MAP, 12, 1, 150);

	/* killed with its event still pending */
	b = writer(_metadata, E, PG(MAP, 13) + 3, 0x67, 1);
	ASSERT_EQ(1, wait_fd(E->ctx, POLLIN, WAIT_MS));
	ASSERT_EQ(0, kill_child(b->child, &status));
	b->child = -1;
	EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	/* whether its event is still readable is not specified; drain */
	while (event_arrives(E->ctx, 50) == 1) {
		ASSERT_EQ((ssize_t)sizeof(ev), read_timeout(E->ctx, &ev, sizeof(ev), 1000));
	}
	EXPECT_PAGES(MAP, 12, 2, 150);
	/* the pages are still protected, and work as before */
	CAUGHT(E, PG(MAP, 12) + 3, 12);
	CAUGHT(E, PG(MAP, 13) + 3, 13);
	EXPECT_RESIDENT(E->r.fd, 2);
}

TEST_F(wp, context_closed_sleepers_get_sigbus)
{
	struct accessor *a, *b, *c, *late, *ok;
	int i, n = 0;

	FILL(E, 0, 8, 160);
	PROTECT(E, 0, 6);
	PROTECT(E, 10, 1);	/* a hole */
	a = writer(_metadata, E, PG(MAP, 1), 0x71, 0);
	b = writer(_metadata, E, PG(MAP, 2), 0x72, 1);
	c = writer(_metadata, E, PG(MAP, 10), 0x73, 0);
	for (i = 0; i < 3 * WAIT_MS && n < 3; i++) {
		struct uffdx_event ev;

		if (wait_event(E->ctx, &ev, 1) == 1) {
			EXPECT_EQ(PF_WPW, ev.flags);
			n++;
		}
	}
	ASSERT_EQ(3, n) TH_LOG("%d of 3 events", n);
	EXPECT_TRUE(acc_blocked(a, QUIET_MS));
	EXPECT_FALSE(b->done);
	EXPECT_FALSE(c->done);

	close(E->ctx);
	E->ctx = -1;
	ASSERT_EQ(0, acc_wait(a, WAIT_MS)) TH_LOG("a sleeping writer hangs after the close");
	ASSERT_EQ(0, acc_wait(b, WAIT_MS)) TH_LOG("a sleeping writer process hangs after the close");
	ASSERT_EQ(0, acc_wait(c, WAIT_MS)) TH_LOG("a writer asleep on a hole hangs after the close");
	EXPECT_EQ(SIGBUS, a->sig);
	EXPECT_EQ(SIGBUS, b->sig);
	EXPECT_EQ(SIGBUS, c->sig);
	EXPECT_PAGES(MAP, 0, 8, 160);
	EXPECT_RESIDENT(E->r.fd, 8);

	/* protection outlives the context: later writes get SIGBUS too */
	late = env_acc(E, PG(MAP, 3), 1, 0x74);
	ASSERT_NE(NULL, late);
	ASSERT_EQ(0, acc_start_thread(late));
	ASSERT_EQ(0, acc_wait(late, WAIT_MS)) TH_LOG("a write after the close sleeps");
	EXPECT_EQ(SIGBUS, late->sig);
	EXPECT_PAGES(MAP, 3, 1, 163);
	/* unprotected pages take writes; every page reads */
	ok = env_acc(E, PG(MAP, 7), 1, 0x75);
	ASSERT_NE(NULL, ok);
	ASSERT_EQ(0, acc_start_thread(ok));
	ASSERT_EQ(0, acc_wait(ok, WAIT_MS));
	EXPECT_EQ(0, ok->sig);
	EXPECT_EQ(0x75, PG(MAP, 7)[0]);
	EXPECT_PAGES(MAP, 0, 6, 160);
	EXPECT_EQ(UFFDX_REGION_WP | UFFDX_REGION_OWNER_GONE, region_flags(E->r.fd));
}

struct spinner {
	volatile uint64_t *p;
	volatile int stop, running, done;
	volatile pid_t tid;
	uint64_t n;
};

static void spin_run(struct spinner *s)
{
	uint64_t n = 0;

	s->tid = sys_gettid();
	while (!__atomic_load_n(&s->stop, __ATOMIC_RELAXED)) {
		*s->p = ++n;
		if (n == 1000)
			__atomic_store_n(&s->running, 1, __ATOMIC_SEQ_CST);
	}
	s->n = n;
	__atomic_store_n(&s->done, 1, __ATOMIC_SEQ_CST);
}

static void *spin_thread(void *p)
{
	spin_run(p);
	return NULL;
}

static int flag_wait(volatile int *flag, int ms)
{
	uint64_t end = now_ns() + (uint64_t)ms * 1000000ull;

	while (!__atomic_load_n(flag, __ATOMIC_SEQ_CST)) {
		if (now_ns() > end)
			return -ETIMEDOUT;
		usleep(200);
	}
	return 0;
}

/*
 * A writer storing a counter in a loop, its PTE writable: once PROTECT
 * returns, no store lands (no writable translation survives, in this mm
 * on another CPU, or in another process's), the writer sleeps with its
 * event, and after the unprotect exactly the one store it was making lands.
 */
static void running_writer(struct __test_metadata *_metadata, struct env *e, uint8_t *map2,
			   int child)
{
	struct spinner *s = mmap(NULL, sizeof(*s), PROT_READ | PROT_WRITE,
				 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	volatile uint64_t *w = (volatile uint64_t *)PG(map2, 14);
	uint64_t v;
	pthread_t th;
	pid_t pid = -1;

	ASSERT_NE(MAP_FAILED, s);
	memset(s, 0, sizeof(*s));
	s->p = w;
	if (child) {
		fflush(stdout);
		fflush(stderr);
		pid = fork();
		ASSERT_LE(0, pid);
		if (pid == 0) {
			close_fds_from(3);
			spin_run(s);
			_exit(0);
		}
	} else {
		ASSERT_EQ(0, pthread_create(&th, NULL, spin_thread, s));
	}
	ASSERT_EQ(0, flag_wait(&s->running, WAIT_MS));
	PROTECT(e, 14, 1);
	v = *(volatile uint64_t *)PG(e->r.addr, 14);
	expect_event(_metadata, e->ctx, PG(map2, 14), e->r.id, 14 * ps, PF_WPW,
		     child ? pid : getpid(), s->tid);
	sleep_ms(QUIET_MS);
	EXPECT_EQ(v, *(volatile uint64_t *)PG(e->r.addr, 14))
		TH_LOG("stores landed after PROTECT returned (%s)", child ? "another process" : "a thread");
	EXPECT_FALSE(s->done);
	__atomic_store_n(&s->stop, 1, __ATOMIC_SEQ_CST);
	UNPROTECT(e, 14, 1);
	EXPECT_EQ(0, flag_wait(&s->done, WAIT_MS)) TH_LOG("the writer was not woken");
	if (child) {
		EXPECT_EQ(0, wait_child(pid, NULL, WAIT_MS));
	} else if (s->done) {
		pthread_join(th, NULL);
	}
	/* the store it was making, once */
	EXPECT_EQ(v + 1, s->n);
	EXPECT_EQ(v + 1, *(volatile uint64_t *)PG(e->r.addr, 14));
	munmap(s, sizeof(*s));
}

TEST_F(wp, protect_stops_a_running_writer_thread)
{
	FILL(E, 14, 1, 170);
	running_writer(_metadata, E, MAP, 0);
}

TEST_F(wp, protect_stops_a_running_writer_process_through_another_mapping)
{
	uint8_t *m2 = mmap(NULL, NPAGES * ps, PROT_READ | PROT_WRITE, MAP_SHARED, E->r.fd, 0);

	ASSERT_NE(MAP_FAILED, m2);
	FILL(E, 14, 1, 171);
	running_writer(_metadata, E, m2, 1);
	munmap(m2, NPAGES * ps);
}

TEST_F(wp, every_mapping_and_by_address)
{
	uint8_t *m2 = mmap(NULL, 16 * ps, PROT_READ | PROT_WRITE, MAP_SHARED, E->r.fd, 8 * ps);
	struct accessor *a;
	int64_t res = 0;
	int ret;

	ASSERT_NE(MAP_FAILED, m2);
	FILL(E, 8, 4, 180);
	EXPECT_PAGES(m2, 0, 4, 180);
	TOUCH_PAGES(m2, 0, 1, 2, 3);
	/* by address, through the second mapping: region pages 9 and 10 */
	ret = raw_wp_addr(E->ctx, PG(m2, 1), 2 * ps, UFFDX_WP_PROTECT, &res);
	EXPECT_DONE(ret, res, 2 * ps);
	CAUGHT(E, PG(MAP, 9) + 5, 9);		/* through the first mapping */
	a = writer(_metadata, E, PG(m2, 2) + 6, 0x1b, 0);
	expect_event(_metadata, E->ctx, PG(m2, 2), E->r.id, 10 * ps, PF_WPW, getpid(), a->tid);
	EXPECT_TRUE(acc_blocked(a, QUIET_MS));
	/* unprotect by address through the first, DONTWAKE, then WAKE */
	ret = raw_wp_addr(E->ctx, PG(MAP, 10), ps, UFFDX_WP_DONTWAKE, &res);
	EXPECT_DONE(ret, res, ps);
	EXPECT_TRUE(acc_blocked(a, QUIET_MS));
	ASSERT_EQ(0, uffdx_wake(E->ctx, E->r.id, 10 * ps, ps));
	ASSERT_EQ(0, acc_wait(a, WAIT_MS));
	EXPECT_EQ(0x1b, PG(MAP, 10)[6]);
	FREE_WRITE(E, PG(m2, 0), 8);
	FREE_WRITE(E, PG(MAP, 11), 11);
	/* protect by address again, unprotect by address (waking) */
	ret = raw_wp_addr(E->ctx, PG(m2, 3), ps, UFFDX_WP_PROTECT, &res);
	EXPECT_DONE(ret, res, ps);
	a = writer(_metadata, E, PG(MAP, 11) + 1, 0x1c, 0);
	expect_event(_metadata, E->ctx, PG(MAP, 11), E->r.id, 11 * ps, PF_WPW, getpid(), a->tid);
	ret = raw_wp_addr(E->ctx, PG(m2, 3), ps, 0, &res);
	EXPECT_DONE(ret, res, ps);
	ASSERT_EQ(0, acc_wait(a, WAIT_MS));
	EXPECT_EQ(0x1c, PG(m2, 3)[1]);
	munmap(m2, 16 * ps);
}

TEST_F(wp, protect_twice_unprotect_twice)
{
	int64_t res = 0;
	int ret;

	FILL(E, 20, 2, 190);
	/* pages and holes alike, and idempotent */
	ret = raw_wp(E->ctx, E->r.id, 20 * ps, 4 * ps, UFFDX_WP_PROTECT, &res);
	EXPECT_DONE(ret, res, 4 * ps);
	ret = raw_wp(E->ctx, E->r.id, 20 * ps, 4 * ps, UFFDX_WP_PROTECT, &res);
	EXPECT_DONE(ret, res, 4 * ps);
	CAUGHT(E, PG(MAP, 21), 21);
	CAUGHT(E, PG(MAP, 23), 23);
	ret = raw_wp(E->ctx, E->r.id, 20 * ps, 4 * ps, 0, &res);
	EXPECT_DONE(ret, res, 4 * ps);
	ret = raw_wp(E->ctx, E->r.id, 20 * ps, 4 * ps, 0, &res);
	EXPECT_DONE(ret, res, 4 * ps);
	ret = raw_wp(E->ctx, E->r.id, 20 * ps, 4 * ps, UFFDX_WP_DONTWAKE, &res);
	EXPECT_DONE(ret, res, 4 * ps);
	FREE_WRITE(E, PG(MAP, 20), 20);
	FREE_WRITE(E, PG(MAP, 22), 22);
	/* the whole region at once */
	ret = raw_wp(E->ctx, E->r.id, 0, NPAGES * ps, UFFDX_WP_PROTECT, &res);
	EXPECT_DONE(ret, res, NPAGES * ps);
	CAUGHT(E, PG(MAP, NPAGES - 1), NPAGES - 1);
	CAUGHT(E, PG(MAP, 0), 0);
	EXPECT_RESIDENT(E->r.fd, 6);
}

/* ---- 3. protected holes, and holes also armed for missing faults ------------------------ */

TEST_F(wp, protected_hole_read_maps_zeroes_write_waits_unallocated)
{
	struct accessor *a;
	uint8_t v = 0xff;

	PROTECT(E, 4, 4);
	EXPECT_RESIDENT(E->r.fd, 0);
	/* a read maps a zeroed page: no event */
	EXPECT_EQ(0, try_read(PG(MAP, 4) + 9, &v));
	EXPECT_EQ(0, v);
	EXPECT_EQ(0, event_arrives(E->ctx, 0));
	EXPECT_RESIDENT(E->r.fd, 1);
	/* and that page is protected */
	CAUGHT(E, PG(MAP, 4) + 9, 4);

	/* a write first: the event before the page is allocated */
	a = writer(_metadata, E, PG(MAP, 5) + 9, 0x5e, 0);
	expect_event(_metadata, E->ctx, PG(MAP, 5), E->r.id, 5 * ps, PF_WPW, getpid(), a->tid);
	EXPECT_TRUE(acc_blocked(a, QUIET_MS));
	EXPECT_RESIDENT(E->r.fd, 1);
	UNPROTECT(E, 5, 1);
	ASSERT_EQ(0, acc_wait(a, WAIT_MS));
	EXPECT_EQ(0, a->sig);
	EXPECT_RESIDENT(E->r.fd, 2);
	memset(E->buf, 0, ps);
	E->buf[9] = 0x5e;
	EXPECT_EQ(0, memcmp(PG(MAP, 5), E->buf, ps));
	/* a process, on the next hole */
	caught(_metadata, E, &E->r, PG(MAP, 6) + 1, 6, 1);
	EXPECT_RESIDENT(E->r.fd, 3);
}

TEST_F(wpa, protected_hole_write_recorded_read_not)
{
	uint8_t v = 0xff;

	PROTECT(E, 0, 8);
	EXPECT_EQ(0, try_read(PG(MAP, 0), &v));
	EXPECT_EQ(0, try_read(PG(MAP, 1) + 100, &v));
	EXPECT_EQ(0, v);
	EXPECT_RESIDENT(E->r.fd, 2);
	EXPECT_SCAN(E, UFFDX_SCAN_REARM, NONE);
	WRITE_PAGES(MAP, 2, 1);
	EXPECT_RESIDENT(E->r.fd, 3);
	EXPECT_SCAN(E, UFFDX_SCAN_REARM, 1, 2);
	EXPECT_EQ(1, PG(MAP, 2)[8]);
	EXPECT_EQ(0, event_arrives(E->ctx, 0)) TH_LOG("async writes queue no event");
	/* rearmed: written again, reported again; reads still never */
	EXPECT_EQ(0, try_read(PG(MAP, 2), &v));
	WRITE_PAGES(MAP, 1);
	EXPECT_SCAN(E, UFFDX_SCAN_REARM, 1);
	caught(_metadata, E, &E->r, PG(MAP, 3) + 1, 3, 1);
}

TEST_F(wp, armed_protected_hole_missing_event_then_wp_event)
{
	struct accessor *a, *r;
	int64_t res = 0;

	ASSERT_EQ(0, uffdx_arm(E->ctx, E->r.id, 3 * ps, 2 * ps, UFFDX_ARM_MISSING));
	PROTECT(E, 3, 2);
	a = writer(_metadata, E, PG(MAP, 3) + 30, 0x3c, 0);
	/* first the missing event: a plain write fault */
	expect_event(_metadata, E->ctx, PG(MAP, 3), E->r.id, 3 * ps, UFFDX_PF_WRITE, getpid(),
		     a->tid);
	EXPECT_TRUE(acc_blocked(a, QUIET_MS));
	EXPECT_RESIDENT(E->r.fd, 0);
	/* the fill keeps protection: the retried write raises the WP event */
	fill_pattern(E->buf, ps, 200);
	ASSERT_EQ(0, uffdx_copy(E->ctx, E->r.id, 3 * ps, E->buf, ps, 0, &res));
	expect_event(_metadata, E->ctx, PG(MAP, 3), E->r.id, 3 * ps, PF_WPW, getpid(), a->tid);
	EXPECT_TRUE(acc_blocked(a, QUIET_MS));
	EXPECT_EQ(0, memcmp(PG(MAP, 3), E->buf, ps)) TH_LOG("the write landed on the fill");
	EXPECT_EQ(0, event_arrives(E->ctx, 0));
	UNPROTECT(E, 3, 1);
	ASSERT_EQ(0, acc_wait(a, WAIT_MS));
	EXPECT_EQ(0, a->sig);
	E->buf[30] = 0x3c;
	EXPECT_EQ(0, memcmp(PG(MAP, 3), E->buf, ps));

	/* a read of an armed, protected hole: the missing event only */
	r = env_acc(E, PG(MAP, 4) + 40, 0, 0);
	ASSERT_NE(NULL, r);
	ASSERT_EQ(0, acc_start_thread(r));
	ASSERT_EQ(0, acc_wait_started(r, WAIT_MS));
	expect_event(_metadata, E->ctx, PG(MAP, 4), E->r.id, 4 * ps, 0, getpid(), r->tid);
	ASSERT_EQ(0, uffdx_zero(E->ctx, E->r.id, 4 * ps, ps, 0, &res));
	ASSERT_EQ(0, acc_wait(r, WAIT_MS));
	EXPECT_EQ(0, r->sig);
	EXPECT_EQ(0, r->first);
	EXPECT_EQ(0, event_arrives(E->ctx, QUIET_MS)) TH_LOG("a read raised a WP event");
	/* and the zeroed page is protected */
	CAUGHT(E, PG(MAP, 4) + 40, 4);
}

TEST_F(wp, fills_into_protected_holes_keep_protection)
{
	int64_t res = 0;
	uint8_t v;

	PROTECT(E, 0, 4);
	fill_pattern(E->buf, ps, 210);
	ASSERT_EQ(0, uffdx_copy(E->ctx, E->r.id, 0, E->buf, ps, 0, &res));
	ASSERT_EQ(0, uffdx_zero(E->ctx, E->r.id, ps, ps, 0, &res));
	ASSERT_EQ(0, uffdx_poison(E->ctx, E->r.id, 2 * ps, ps, 0, &res));
	EXPECT_EQ(0, memcmp(PG(MAP, 0), E->buf, ps));
	CAUGHT(E, PG(MAP, 0) + 1, 0);
	CAUGHT(E, PG(MAP, 1) + 1, 1);
	EXPECT_EQ(SIGBUS, try_read(PG(MAP, 2), &v));
	/* a fill into a protected hole a writer sleeps on: the writer stays asleep */
	{
		struct accessor *a = writer(_metadata, E, PG(MAP, 3) + 2, 0x2f, 0);

		expect_event(_metadata, E->ctx, PG(MAP, 3), E->r.id, 3 * ps, PF_WPW, getpid(),
			     a->tid);
		ASSERT_EQ(0, uffdx_copy(E->ctx, E->r.id, 3 * ps, E->buf, ps, 0, &res));
		/* woken by the fill, it may fault again; it must not write */
		EXPECT_TRUE(acc_blocked(a, QUIET_MS)) TH_LOG("a fill let the write through");
		EXPECT_EQ(0, memcmp(PG(MAP, 3), E->buf, ps));
		UNPROTECT(E, 3, 1);
		ASSERT_EQ(0, acc_wait(a, WAIT_MS));
		EXPECT_EQ(0x2f, PG(MAP, 3)[2]);
		while (event_arrives(E->ctx, 0) == 1) {
			struct uffdx_event ev;

			ASSERT_EQ(1, uffdx_read_events(E->ctx, &ev, 1));
			check_event(_metadata, &ev, PG(MAP, 3), E->r.id, 3 * ps, PF_WPW, getpid(),
				    a->tid);
		}
	}
	/* DISCARD drops the poison and the protection */
	ASSERT_EQ(0, uffdx_discard(E->ctx, E->r.id, 2 * ps, ps, &res));
	FREE_WRITE(E, PG(MAP, 2), 2);
}

TEST_F(wpa, armed_protected_holes_and_fills_mark_written)
{
	struct accessor *a;
	int64_t res = 0;
	uint8_t v;

	ASSERT_EQ(0, uffdx_arm(E->ctx, E->r.id, 0, 8 * ps, UFFDX_ARM_MISSING));
	PROTECT(E, 0, 8);
	a = writer(_metadata, E, PG(MAP, 1) + 1, 0x4d, 0);
	expect_event(_metadata, E->ctx, PG(MAP, 1), E->r.id, ps, UFFDX_PF_WRITE, getpid(), a->tid);
	EXPECT_TRUE(acc_blocked(a, QUIET_MS));
	fill_pattern(E->buf, ps, 220);
	ASSERT_EQ(0, uffdx_copy(E->ctx, E->r.id, ps, E->buf, ps, 0, &res));
	ASSERT_EQ(0, acc_wait(a, WAIT_MS)) TH_LOG("the async write after the fill sleeps");
	EXPECT_EQ(0, a->sig);
	E->buf[1] = 0x4d;
	EXPECT_EQ(0, memcmp(PG(MAP, 1), E->buf, ps));
	EXPECT_EQ(0, event_arrives(E->ctx, QUIET_MS)) TH_LOG("an event besides the missing one");
	/* fills into protected holes mark them written, with no access */
	ASSERT_EQ(0, uffdx_copy(E->ctx, E->r.id, 2 * ps, E->buf, ps, 0, &res));
	ASSERT_EQ(0, uffdx_zero(E->ctx, E->r.id, 3 * ps, ps, 0, &res));
	EXPECT_SCAN(E, UFFDX_SCAN_REARM, 1, 2, 3);
	EXPECT_SCAN(E, UFFDX_SCAN_REARM, NONE);
	/* populated now: reads raise nothing, writes are recorded */
	EXPECT_EQ(0, try_read(PG(MAP, 3), &v));
	EXPECT_EQ(0, event_arrives(E->ctx, 0));
	EXPECT_SCAN(E, UFFDX_SCAN_REARM, NONE);
	WRITE_PAGES(MAP, 2, 3);
	EXPECT_SCAN(E, UFFDX_SCAN_REARM, 2, 3);
}

/*
 * Only fills into *protected* holes are written ("COPY, ZERO into a
 * protected hole: set"); POISON leaves the record unchanged.
 */
TEST_F(wpa, fills_record_only_protected_holes_and_poison_none)
{
	int64_t res = 0;
	uint8_t v;

	PROTECT(E, 0, 4);	/* the region's state exists from here on */
	fill_pattern(E->buf, ps, 230);
	ASSERT_EQ(0, uffdx_copy(E->ctx, E->r.id, 10 * ps, E->buf, ps, 0, &res));
	ASSERT_EQ(0, uffdx_zero(E->ctx, E->r.id, 11 * ps, ps, 0, &res));
	ASSERT_EQ(0, uffdx_poison(E->ctx, E->r.id, 12 * ps, ps, 0, &res));
	ASSERT_EQ(0, uffdx_poison(E->ctx, E->r.id, 2 * ps, ps, 0, &res));
	EXPECT_SCAN(E, 0, NONE);
	ASSERT_EQ(0, uffdx_copy(E->ctx, E->r.id, ps, E->buf, ps, 0, &res));
	EXPECT_SCAN(E, UFFDX_SCAN_REARM, 1);
	EXPECT_EQ(SIGBUS, try_read(PG(MAP, 2), &v));
	EXPECT_EQ(SIGBUS, try_read(PG(MAP, 12), &v));
	/* the unprotected pages take writes unrecorded; the protected ones not */
	WRITE_PAGES(MAP, 0, 1, 3, 10, 11);
	EXPECT_SCAN(E, UFFDX_SCAN_REARM, 0, 1, 3);
}

/* ---- 4. protection is region state: what page-table operations cannot lose -------------- */

/*
 * Pages 0-15 filled (pattern seed + i) and written once (their PTEs
 * writable and dirty), 16-19 holes; with protect, 0-19 protected and (async)
 * nothing recorded yet.
 */
static void prep(struct __test_metadata *_metadata, struct env *e, uint64_t seed, int protect)
{
	FILL(e, 0, 16, seed);
	TOUCH_PAGES(e->r.addr, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
	if (!protect)
		return;
	PROTECT(e, 0, 20);
	if (e->async)
		EXPECT_SCAN(e, UFFDX_SCAN_REARM, NONE);
}

/* After prep and whatever the test did: pages 3 and 17 (a hole) and 9, by a process, caught. */
static void still_caught(struct __test_metadata *_metadata, struct env *e)
{
	caught(_metadata, e, &e->r, PG(e->r.addr, 3) + 100, 3, 0);
	caught(_metadata, e, &e->r, PG(e->r.addr, 17) + 1, 17, 0);
	caught(_metadata, e, &e->r, PG(e->r.addr, 9) + 2, 9, 1);
	FREE_WRITE(e, PG(e->r.addr, 30), 30);
}

TEST_F(both, survives_madv_dontneed)
{
	prep(_metadata, E, 300, 1);
	ASSERT_EQ(0, madvise(MAP, NPAGES * ps, MADV_DONTNEED)) TH_LOG("%s", strerror(errno));
	EXPECT_PAGES(MAP, 10, 6, 310);
	still_caught(_metadata, E);
	/* and again, with the pages mapped by the reads above */
	PROTECT(E, 0, 20);
	if (E->async)
		EXPECT_SCAN(E, UFFDX_SCAN_REARM, NONE);
	ASSERT_EQ(0, madvise(PG(MAP, 3), ps, MADV_DONTNEED));
	still_caught(_metadata, E);
}

TEST_F(both, survives_munmap_and_a_fresh_mmap)
{
	uint8_t *m;

	prep(_metadata, E, 310, 1);
	ASSERT_EQ(0, munmap(MAP, NPAGES * ps));
	MAP = NULL;
	m = mmap(NULL, NPAGES * ps, PROT_READ | PROT_WRITE, MAP_SHARED, E->r.fd, 0);
	ASSERT_NE(MAP_FAILED, m);
	MAP = m;
	still_caught(_metadata, E);
	/* a mapping of part of it, at an offset */
	PROTECT(E, 0, 20);
	if (E->async)
		EXPECT_SCAN(E, UFFDX_SCAN_REARM, NONE);
	m = mmap(NULL, 8 * ps, PROT_READ | PROT_WRITE, MAP_SHARED, E->r.fd, 8 * ps);
	ASSERT_NE(MAP_FAILED, m);
	caught(_metadata, E, &E->r, PG(m, 1) + 3, 9, 0);
	munmap(m, 8 * ps);
}

TEST_F(both, survives_mremap)
{
	uint8_t *dst = mmap(NULL, NPAGES * ps, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint8_t *m;

	ASSERT_NE(MAP_FAILED, dst);
	prep(_metadata, E, 320, 1);
	m = mremap(MAP, NPAGES * ps, NPAGES * ps, MREMAP_MAYMOVE | MREMAP_FIXED, dst);
	ASSERT_EQ(dst, m) TH_LOG("mremap: %s", strerror(errno));
	MAP = m;
	EXPECT_PAGES(m, 10, 6, 330);
	/* events carry the new address */
	still_caught(_metadata, E);
}

TEST_F(both, survives_fork_child_and_parent_writes)
{
	prep(_metadata, E, 340, 1);
	/* the child's mapping is the fork's copy of ours */
	caught(_metadata, E, &E->r, PG(MAP, 5) + 1, 5, 1);
	caught(_metadata, E, &E->r, PG(MAP, 18) + 1, 18, 1);
	/* the parent's after the fork */
	caught(_metadata, E, &E->r, PG(MAP, 6) + 1, 6, 0);
}

TEST_F(both, protect_after_fork_reaches_the_child)
{
	volatile int *go = mmap(NULL, sizeof(int), PROT_READ | PROT_WRITE,
				MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	struct accessor *a;
	uint8_t old;

	ASSERT_NE(MAP_FAILED, go);
	*go = 0;
	prep(_metadata, E, 350, 0);
	old = PG(MAP, 7)[1];
	a = env_acc(E, PG(MAP, 7) + 1, 1, (uint8_t)(old ^ 0x5a));
	ASSERT_NE(NULL, a);
	/* forked with writable PTEs for page 7, then the page is protected */
	ASSERT_EQ(0, child_start(a, go));
	PROTECT(E, 0, 20);
	if (E->async)
		EXPECT_SCAN(E, UFFDX_SCAN_REARM, NONE);
	__atomic_store_n(go, 1, __ATOMIC_SEQ_CST);
	ASSERT_EQ(0, acc_wait_started(a, WAIT_MS));
	caught_finish(_metadata, E, &E->r, a, 7, old);
	munmap((void *)go, sizeof(int));
}

TEST_F(both, survives_mprotect)
{
	prep(_metadata, E, 360, 1);
	/* read-only and back: the PTEs rebuilt must not come back writable */
	ASSERT_EQ(0, mprotect(MAP, NPAGES * ps, PROT_READ));
	EXPECT_PAGES(MAP, 10, 6, 370);
	ASSERT_EQ(0, mprotect(MAP, NPAGES * ps, PROT_READ | PROT_WRITE));
	still_caught(_metadata, E);
	/* a single page's worth, the VMA split */
	PROTECT(E, 0, 20);
	if (E->async)
		EXPECT_SCAN(E, UFFDX_SCAN_REARM, NONE);
	ASSERT_EQ(0, mprotect(PG(MAP, 3), ps, PROT_READ));
	ASSERT_EQ(0, mprotect(PG(MAP, 3), ps, PROT_READ | PROT_WRITE));
	caught(_metadata, E, &E->r, PG(MAP, 3) + 100, 3, 0);
}

TEST_F(both, survives_memory_pressure_hints)
{
	int r1, r2, r3;

	prep(_metadata, E, 380, 1);
	r1 = madvise(MAP, NPAGES * ps, MADV_COLD);
	r2 = madvise(MAP, NPAGES * ps, MADV_PAGEOUT);
	r3 = getuid() == 0 ? write_str_file("/proc/sys/vm/drop_caches", "3") : 0;
	TH_LOG("MADV_COLD: %s, MADV_PAGEOUT: %s, drop_caches: %s", r1 ? strerror(errno) : "ok",
	       r2 ? strerror(errno) : "ok", r3 ? strerror(-r3) : "ok");
	EXPECT_PAGES(MAP, 10, 6, 390);
	still_caught(_metadata, E);
}

TEST_F(both, survives_madv_collapse)
{
	const size_t n = 2 * 512, huge = 512 * ps;
	struct uffdx_region_map big;
	uint8_t *m;
	int ret;

	if (ps != 4096)
		SKIP(return, "2 MiB is 512 pages only with 4 KiB pages");
	ret = uffdx_region_map(E->ctx, n * ps, mode_flag(E->async), &big);
	ASSERT_EQ(0, ret) TH_LOG("%s", strerror(-ret));
	m = map_aligned(big.fd, huge, huge);
	ASSERT_NE(MAP_FAILED, m);
	ASSERT_EQ(0, fill_pages(E->ctx, big.id, 0, 256, 400));
	TOUCH_PAGES(m, 0, 1, 100, 255);
	ASSERT_EQ(0, wp_op(E->ctx, big.id, 0, 512 * ps, UFFDX_WP_PROTECT));
	if (E->async)
		EXPECT_SCAN_R(E->ctx, &big, UFFDX_SCAN_REARM, NONE);
	ret = madvise(m, huge, MADV_HUGEPAGE);
	TH_LOG("MADV_HUGEPAGE: %s", ret ? strerror(errno) : "ok");
	ret = madvise(m, huge, MADV_COLLAPSE);
	TH_LOG("MADV_COLLAPSE: %s", ret ? strerror(errno) : "ok");
	EXPECT_PAGES(m, 2, 98, 402);
	caught(_metadata, E, &big, PG(m, 1) + 1, 1, 0);
	caught(_metadata, E, &big, PG(m, 100) + 1, 100, 0);
	caught(_metadata, E, &big, PG(m, 400) + 1, 400, 0);	/* a hole */
	caught(_metadata, E, &big, PG(m, 255) + 1, 255, 1);
	munmap(m, huge);
	close(big.fd);
	munmap(big.addr, n * ps);
}

/* ---- 5. kernel-mode writes ------------------------------------------------------------------ */

/* A write by the kernel: read() from a pipe, or process_vm_writev() to a pid. */
struct kwrite {
	int how;		/* KW_READ, KW_VM */
	int fd;			/* KW_READ: the pipe */
	pid_t target;		/* KW_VM */
	void *local;		/* KW_VM: the source, if not data */
	void *addr;
	size_t len;
	uint8_t data[128];
	volatile pid_t pid, tid;
	volatile int started, done;
	ssize_t ret;
	int err;
};

enum { KW_READ, KW_VM };

static void kw_run(struct kwrite *k)
{
	struct iovec local = { .iov_base = k->local ? k->local : k->data, .iov_len = k->len };
	struct iovec remote = { .iov_base = k->addr, .iov_len = k->len };

	k->pid = getpid();
	k->tid = sys_gettid();
	__atomic_store_n(&k->started, 1, __ATOMIC_SEQ_CST);
	if (k->how == KW_READ)
		k->ret = read(k->fd, k->addr, k->len);
	else
		k->ret = process_vm_writev(k->target, &local, 1, &remote, 1, 0);
	k->err = errno;
	__atomic_store_n(&k->done, 1, __ATOMIC_SEQ_CST);
}

static void *kw_thread(void *p)
{
	kw_run(p);
	return NULL;
}

/* Shared memory, so that a child can report too. */
static struct kwrite *kw_new(int how, int fd, void *addr, size_t len, uint8_t byte)
{
	struct kwrite *k = mmap(NULL, sizeof(*k), PROT_READ | PROT_WRITE,
				MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	if (k == MAP_FAILED)
		return NULL;
	memset(k, 0, sizeof(*k));
	k->how = how;
	k->fd = fd;
	k->target = getpid();
	k->addr = addr;
	k->len = len;
	memset(k->data, byte, sizeof(k->data));
	return k;
}

/* A pipe holding n bytes of byte. */
static int pipe_with(int p[2], uint8_t byte, size_t n)
{
	uint8_t b[512];

	if (pipe2(p, O_CLOEXEC))
		return -errno;
	memset(b, byte, sizeof(b));
	return write(p[1], b, n) == (ssize_t)n ? 0 : -EIO;
}

/* The page at addr is its old contents with [off, off + len) set to byte. */
static int page_is(const uint8_t *page, const uint8_t *old, size_t off, size_t len, uint8_t byte)
{
	size_t i;

	for (i = 0; i < ps; i++)
		if (page[i] != (i >= off && i < off + len ? byte : old[i]))
			return 0;
	return 1;
}

TEST_F(wp, kernel_writes_fail_efault_without_kernel_faults)
{
	struct iovec local, remote;
	uint8_t data[100];
	int p[2];

	FILL(E, 0, 2, 500);
	EXPECT_PAGES(MAP, 0, 2, 500);
	TOUCH_PAGES(MAP, 0, 1);
	PROTECT(E, 0, 3);	/* and hole 2 */
	ASSERT_EQ(0, pipe_with(p, 'k', 300));
	EXPECT_EQ(-1, read(p[0], PG(MAP, 0) + 10, 100));
	EXPECT_EQ(EFAULT, errno);
	EXPECT_EQ(-1, read(p[0], PG(MAP, 2) + 10, 100));
	EXPECT_EQ(EFAULT, errno);
	memset(data, 'v', sizeof(data));
	local.iov_base = data;
	local.iov_len = sizeof(data);
	remote.iov_base = PG(MAP, 1) + 10;
	remote.iov_len = sizeof(data);
	EXPECT_EQ(-1, process_vm_writev(getpid(), &local, 1, &remote, 1, 0));
	EXPECT_EQ(EFAULT, errno);
	/* nothing written, nothing allocated, nobody asked */
	EXPECT_PAGES(MAP, 0, 2, 500);
	EXPECT_RESIDENT(E->r.fd, 2);
	EXPECT_EQ(0, event_arrives(E->ctx, QUIET_MS));
	/* unprotected, the same calls work */
	UNPROTECT(E, 0, 3);
	EXPECT_EQ(100, read(p[0], PG(MAP, 0) + 10, 100));
	EXPECT_EQ(100, read(p[0], PG(MAP, 2) + 10, 100));
	EXPECT_EQ(100, process_vm_writev(getpid(), &local, 1, &remote, 1, 0));
	EXPECT_EQ('k', PG(MAP, 0)[109]);
	EXPECT_EQ('k', PG(MAP, 2)[10]);
	EXPECT_EQ('v', PG(MAP, 1)[10]);
	close(p[0]);
	close(p[1]);
}

/* A sync region on a context with UFFDX_FEATURE_KERNEL_FAULTS (root). */
FIXTURE(wpk) {
	struct env e;
};

FIXTURE_SETUP(wpk)
{
	env_init(&self->e);
	SKIP_IF_NO_WP();
	if (getuid() != 0)
		SKIP(return, "UFFDX_FEATURE_KERNEL_FAULTS needs CAP_SYS_PTRACE");
	env_setup(_metadata, &self->e, 0, NPAGES, UFFDX_FEATURE_KERNEL_FAULTS);
}

FIXTURE_TEARDOWN(wpk)
{
	env_teardown(&self->e);
}

/*
 * A kernel write k to page pg sleeps with its event (flags), the page
 * unchanged, until the page is unprotected; then it completes.
 */
static void kernel_write_sleeps(struct __test_metadata *_metadata, struct env *e,
				struct kwrite *k, size_t pg, uint32_t flags, int child,
				long long resident_asleep)
{
	uint8_t *page = PG(e->r.addr, pg), *old = malloc(ps);
	size_t off = (size_t)((uint8_t *)k->addr - page);
	pthread_t th;
	pid_t pid = -1;

	ASSERT_NE(NULL, old);
	if (resident_asleep >= 0)
		memset(old, 0, ps);	/* a hole: reading it would allocate it */
	else
		memcpy(old, page, ps);
	if (child) {
		fflush(stdout);
		fflush(stderr);
		pid = fork();
		ASSERT_LE(0, pid);
		if (pid == 0) {
			close_fds_from(3);
			kw_run(k);
			_exit(0);
		}
	} else {
		ASSERT_EQ(0, pthread_create(&th, NULL, kw_thread, k));
	}
	ASSERT_EQ(0, flag_wait(&k->started, WAIT_MS));
	expect_event(_metadata, e->ctx, page, e->r.id, pg * ps, flags, k->pid, k->tid);
	EXPECT_FALSE(flag_wait(&k->done, QUIET_MS) == 0) TH_LOG("the kernel write did not sleep");
	if (resident_asleep >= 0) {
		EXPECT_RESIDENT(e->r.fd, resident_asleep);
	}
	EXPECT_EQ(0, memcmp(page, old, ps));
	UNPROTECT(e, pg, 1);
	ASSERT_EQ(0, flag_wait(&k->done, WAIT_MS)) TH_LOG("the kernel write was not woken");
	if (child) {
		EXPECT_EQ(0, wait_child(pid, NULL, WAIT_MS));
	} else {
		pthread_join(th, NULL);
	}
	EXPECT_EQ((ssize_t)k->len, k->ret) TH_LOG("%s", strerror(k->err));
	EXPECT_TRUE(page_is(page, old, off, k->len, k->how == KW_READ ? 'k' : k->data[0]));
	EXPECT_EQ(0, event_arrives(e->ctx, 0));
	free(old);
}

TEST_F(wpk, kernel_writes_sleep_with_kernel_faults)
{
	const uint32_t K = PF_WPW | UFFDX_PF_KERNEL;
	struct kwrite *k;
	int p[2];

	FILL(E, 0, 4, 510);
	EXPECT_PAGES(MAP, 0, 4, 510);
	PROTECT(E, 0, 6);	/* and holes 4, 5 */
	ASSERT_EQ(0, pipe_with(p, 'k', 400));

	/* read() into a page, and into a hole: nothing allocated while it sleeps */
	k = kw_new(KW_READ, p[0], PG(MAP, 1) + 10, 100, 0);
	ASSERT_NE(NULL, k);
	kernel_write_sleeps(_metadata, E, k, 1, K, 0, -1);
	munmap(k, sizeof(*k));
	k = kw_new(KW_READ, p[0], PG(MAP, 4) + 10, 100, 0);
	ASSERT_NE(NULL, k);
	kernel_write_sleeps(_metadata, E, k, 4, K, 0, 4);
	EXPECT_RESIDENT(E->r.fd, 5);
	munmap(k, sizeof(*k));

	/* process_vm_writev to ourselves: not remote */
	k = kw_new(KW_VM, -1, PG(MAP, 2) + 20, 64, 'v');
	ASSERT_NE(NULL, k);
	kernel_write_sleeps(_metadata, E, k, 2, K, 0, -1);
	munmap(k, sizeof(*k));

	/* process_vm_writev from another process: remote, the writer's ids */
	k = kw_new(KW_VM, -1, PG(MAP, 3) + 30, 64, 'w');
	ASSERT_NE(NULL, k);
	kernel_write_sleeps(_metadata, E, k, 3, K | UFFDX_PF_REMOTE, 1, -1);
	munmap(k, sizeof(*k));
	close(p[0]);
	close(p[1]);
}

TEST_F(wpa, kernel_writes_are_recorded)
{
	struct iovec local, remote;
	uint8_t data[64];
	int p[2];

	FILL(E, 0, 4, 520);
	EXPECT_PAGES(MAP, 0, 4, 520);
	PROTECT(E, 0, 8);
	ASSERT_EQ(0, pipe_with(p, 'k', 200));
	/* no KERNEL_FAULTS needed: nothing sleeps */
	EXPECT_EQ(100, read(p[0], PG(MAP, 1) + 10, 100)) TH_LOG("%s", strerror(errno));
	EXPECT_EQ(100, read(p[0], PG(MAP, 5) + 10, 100)) TH_LOG("%s", strerror(errno));
	memset(data, 'v', sizeof(data));
	local.iov_base = data;
	local.iov_len = sizeof(data);
	remote.iov_base = PG(MAP, 2) + 20;
	remote.iov_len = sizeof(data);
	EXPECT_EQ(64, process_vm_writev(getpid(), &local, 1, &remote, 1, 0)) TH_LOG("%s", strerror(errno));
	if (getuid() == 0) {
		struct kwrite *k = kw_new(KW_VM, -1, PG(MAP, 3) + 30, 64, 'w');
		pid_t pid;

		ASSERT_NE(NULL, k);
		fflush(stdout);
		fflush(stderr);
		pid = fork();
		ASSERT_LE(0, pid);
		if (pid == 0) {
			close_fds_from(3);
			kw_run(k);
			_exit(0);
		}
		EXPECT_EQ(0, wait_child(pid, NULL, WAIT_MS));
		EXPECT_EQ(64, k->ret) TH_LOG("%s", strerror(k->err));
		munmap(k, sizeof(*k));
		EXPECT_SCAN(E, UFFDX_SCAN_REARM, 1, 2, 3, 5);
	} else {
		EXPECT_SCAN(E, UFFDX_SCAN_REARM, 1, 2, 5);
	}
	EXPECT_EQ('k', PG(MAP, 1)[109]);
	EXPECT_EQ('k', PG(MAP, 5)[10]);
	EXPECT_EQ('v', PG(MAP, 2)[20]);
	EXPECT_EQ(0, event_arrives(E->ctx, 0));
	close(p[0]);
	close(p[1]);
}

/* ---- 6. pinned pages ------------------------------------------------------------------------ */

/*
 * A FOLL_PIN pin of a region page, held as long as the test likes, on every
 * kernel (io_uring refuses file pages on 6.1, and long-term write pins of
 * write-notify mappings since 6.5): process_vm_writev() into the page, from
 * a source the kernel cannot read yet, an armed hole of a region of a
 * UFFDX_FEATURE_KERNEL_FAULTS context.  It pins the target page, then
 * sleeps in the copy from the source until the source is filled; then it
 * writes 64 bytes of pattern seed through the pin, and unpins.
 */
struct pin {
	int ctx;
	struct uffdx_region_map src;
	struct kwrite *k;
	pthread_t th;
	uint64_t seed;
};

#define PIN_BYTES	64

#define SKIP_IF_NO_PIN() do {							\
	if (getuid() != 0)							\
		SKIP(return, "holding a pin needs UFFDX_FEATURE_KERNEL_FAULTS (CAP_SYS_PTRACE)"); \
} while (0)

static void pin_start(struct __test_metadata *_metadata, struct pin *pn, void *target,
		      uint64_t seed)
{
	struct uffdx_event ev;

	memset(pn, 0, sizeof(*pn));
	pn->seed = seed;
	pn->ctx = ctx_open(DEFAULT_FEATURES | UFFDX_FEATURE_KERNEL_FAULTS, 0);
	ASSERT_LE(0, pn->ctx) TH_LOG("%s", strerror(-pn->ctx));
	ASSERT_EQ(0, uffdx_region_map(pn->ctx, ps, 0, &pn->src));
	ASSERT_EQ(0, uffdx_arm(pn->ctx, pn->src.id, 0, ps, UFFDX_ARM_MISSING));
	pn->k = kw_new(KW_VM, -1, target, PIN_BYTES, 0);
	ASSERT_NE(NULL, pn->k);
	pn->k->local = pn->src.addr;
	ASSERT_EQ(0, pthread_create(&pn->th, NULL, kw_thread, pn->k));
	/* its copy from the source faults: the target is pinned by now */
	ASSERT_EQ(1, wait_event(pn->ctx, &ev, WAIT_MS)) TH_LOG("the pinning write did not start");
	ASSERT_EQ(UFFDX_PF_KERNEL, ev.flags);
	ASSERT_FALSE(pn->k->done) TH_LOG("process_vm_writev: %s", strerror(pn->k->err));
}

/* Let the write through the pin finish, and unpin: 0 or -1. */
static int pin_end(struct __test_metadata *_metadata, struct pin *pn)
{
	uint8_t *b = malloc(ps);
	int64_t res = 0;

	ASSERT_NE(NULL, b);
	fill_pattern(b, ps, pn->seed);
	ASSERT_EQ(0, uffdx_copy(pn->ctx, pn->src.id, 0, b, ps, 0, &res));
	free(b);
	ASSERT_EQ(0, flag_wait(&pn->k->done, WAIT_MS)) TH_LOG("the write through the pin hangs");
	pthread_join(pn->th, NULL);
	EXPECT_EQ(PIN_BYTES, pn->k->ret) TH_LOG("%s", strerror(pn->k->err));
	munmap(pn->k, sizeof(*pn->k));
	uffdx_region_unmap(&pn->src);
	close(pn->ctx);
	return 0;
}

/* PROTECT after an unpin: the unpin is synchronous, but allow for a deferred one. */
static int protect_after_unpin(int ctx, uint64_t id, uint64_t off, uint64_t len, int64_t *res,
			       int *retries)
{
	uint64_t end = now_ns() + (uint64_t)WAIT_MS * 1000000ull;
	int ret;

	*retries = 0;
	for (;;) {
		ret = raw_wp(ctx, id, off, len, UFFDX_WP_PROTECT, res);
		if (ret == 0 || (errno != EBUSY && errno != EAGAIN) || now_ns() > end)
			return ret;
		++*retries;
		sleep_ms(10);
	}
}

TEST_F(wp, protect_pinned_page_ebusy)
{
	struct pin pn;
	int64_t res = 0;
	int ret, retries;

	SKIP_IF_NO_PIN();
	FILL(E, 0, 8, 600);
	EXPECT_PAGES(MAP, 0, 8, 600);
	pin_start(_metadata, &pn, PG(MAP, 0) + 100, 601);
	/* the first page pinned: nothing done */
	ret = raw_wp(E->ctx, E->r.id, 0, 8 * ps, UFFDX_WP_PROTECT, &res);
	EXPECT_ERR(ret, res, EBUSY, -EBUSY);
	FREE_WRITE(E, PG(MAP, 1), 1);
	FREE_WRITE(E, PG(MAP, 0) + 1, 0);
	pin_end(_metadata, &pn);
	fill_pattern(E->buf, ps, 601);
	EXPECT_EQ(0, memcmp(PG(MAP, 0) + 100, E->buf, PIN_BYTES)) TH_LOG("the write through the pin");

	/* a page in the middle: the pages before it protected, the rest not */
	pin_start(_metadata, &pn, PG(MAP, 3) + 100, 602);
	ret = raw_wp(E->ctx, E->r.id, 0, 8 * ps, UFFDX_WP_PROTECT, &res);
	EXPECT_ERR(ret, res, EAGAIN, 3 * ps);
	CAUGHT(E, PG(MAP, 2) + 1, 2);
	CAUGHT(E, PG(MAP, 0) + 1, 0);
	FREE_WRITE(E, PG(MAP, 3) + 1, 3);
	FREE_WRITE(E, PG(MAP, 5) + 1, 5);
	/* unpinned, it can be protected */
	pin_end(_metadata, &pn);
	ret = protect_after_unpin(E->ctx, E->r.id, 0, 8 * ps, &res, &retries);
	EXPECT_DONE(ret, res, 8 * ps);
	if (retries)
		TH_LOG("the protect after the unpin needed %d retries (deferred unpin)", retries);
	CAUGHT(E, PG(MAP, 3) + 2, 3);

	/* a protected page cannot be pinned for writing: the pin's write faults (EFAULT) */
	{
		struct kwrite *k = kw_new(KW_VM, -1, PG(MAP, 6) + 10, 16, 'p');

		ASSERT_NE(NULL, k);
		kw_run(k);
		EXPECT_EQ(-1, k->ret);
		EXPECT_EQ(EFAULT, k->err);
		munmap(k, sizeof(*k));
	}
	EXPECT_EQ(0, event_arrives(E->ctx, 0));
	CAUGHT(E, PG(MAP, 6) + 2, 6);
}

TEST_F(wpa, pinned_page_reported_by_every_scan)
{
	struct pin pn;
	uint8_t *got;
	uint64_t end;
	int rounds = 0, ret;

	SKIP_IF_NO_PIN();
	FILL(E, 0, 8, 610);
	PROTECT(E, 0, 8);
	EXPECT_SCAN(E, UFFDX_SCAN_REARM, NONE);
	/* pinned after the protect: the pin's own write is recorded, and then every scan */
	pin_start(_metadata, &pn, PG(MAP, 2) + 8, 611);
	EXPECT_SCAN(E, UFFDX_SCAN_REARM, 2);
	EXPECT_SCAN(E, UFFDX_SCAN_REARM, 2);
	EXPECT_SCAN(E, 0, 2);
	WRITE_PAGES(MAP, 5);
	EXPECT_SCAN(E, UFFDX_SCAN_REARM, 2, 5);
	got = calloc(APAGES, 1);
	ASSERT_NE(NULL, got);
	ASSERT_LE(0, scan_bitmap(_metadata, E->ctx, E->r.id, 0, APAGES, UFFDX_SCAN_REARM, 8, got));
	compare_pages(_metadata, "bitmap scan", 0, APAGES, got, (const int[]){ 2, -1 });
	/* async PROTECT of a pinned page is fine */
	ret = wp_op(E->ctx, E->r.id, 0, 8 * ps, 0);
	EXPECT_EQ(0, ret);
	ret = wp_op(E->ctx, E->r.id, 0, 8 * ps, UFFDX_WP_PROTECT);
	EXPECT_EQ(0, ret) TH_LOG("async PROTECT of a pinned page: %s", strerror(-ret));
	EXPECT_SCAN(E, UFFDX_SCAN_REARM, 2);

	/* unpinned: reported no more (allowing for a deferred unpin) */
	pin_end(_metadata, &pn);
	end = now_ns() + (uint64_t)WAIT_MS * 1000000ull;
	for (;;) {
		ASSERT_LE(0, scan_ranges(_metadata, E->ctx, E->r.id, 0, APAGES, UFFDX_SCAN_REARM, 8,
					 got));
		if (!got[2] || now_ns() > end)
			break;
		rounds++;
		sleep_ms(10);
	}
	EXPECT_EQ(0, got[2]) TH_LOG("page 2 is still reported %d scans after the unpin", rounds);
	if (rounds)
		TH_LOG("reported %d more scans after the unpin", rounds);
	EXPECT_SCAN(E, UFFDX_SCAN_REARM, NONE);
	free(got);
}

/*
 * A page written through a pin after the last scan that reported it, and
 * then unpinned: "no write is lost", so a scan after the unpin reports it.
 */
TEST_F(wpa, write_through_a_pin_before_the_unpin_is_reported)
{
	struct pin pn;

	SKIP_IF_NO_PIN();
	FILL(E, 0, 8, 620);
	PROTECT(E, 0, 8);
	pin_start(_metadata, &pn, PG(MAP, 4) + 8, 621);
	EXPECT_SCAN(E, UFFDX_SCAN_REARM, 4);
	EXPECT_SCAN(E, UFFDX_SCAN_REARM, 4);
	/* the write lands through the pin (no fault), then the unpin */
	pin_end(_metadata, &pn);
	fill_pattern(E->buf, ps, 621);
	EXPECT_EQ(0, memcmp(PG(MAP, 4) + 8, E->buf, PIN_BYTES));
	EXPECT_SCAN(E, UFFDX_SCAN_REARM, 4);
	EXPECT_SCAN(E, UFFDX_SCAN_REARM, NONE);
}

/* ---- 7. SCAN ---------------------------------------------------------------------------------- */

/* Pages written in the scan tests: runs across the 64-page batch boundaries. */
#define SCAN_SET	0, 2, 3, 4, 60, 61, 62, 63, 64, 65, 66, 67, 68, 69, 70, 127, 128, 200, 255
#define SCAN_SET_PAGES	19

TEST_F(wpa, scan_ranges_merged)
{
	static const struct uffdx_scan_range want[] = {
		{ 0, 1 }, { 2, 3 }, { 60, 11 }, { 127, 2 }, { 200, 1 }, { 255, 1 },
	};
	struct uffdx_scan_range out[17];
	struct uffdx_scan s;
	unsigned int i;

	PROTECT(E, 0, APAGES);
	WRITE_PAGES(MAP, SCAN_SET);
	memset(out, 0xa5, sizeof(out));
	scan_init(&s, E->r.id, 0, APAGES * ps, UFFDX_SCAN_REARM, out, 16);
	ASSERT_EQ(0, raw_scan(E->ctx, &s)) TH_LOG("%s", strerror(errno));
	EXPECT_EQ(APAGES * ps, s.scanned);
	EXPECT_EQ(6, s.nr_out);
	EXPECT_EQ(SCAN_SET_PAGES * ps, s.written);
	for (i = 0; i < 6 && i < s.nr_out; i++) {
		EXPECT_EQ(want[i].offset * ps, out[i].offset) TH_LOG("range %u", i);
		EXPECT_EQ(want[i].len * ps, out[i].len) TH_LOG("range %u", i);
	}
	EXPECT_EQ(0xa5a5a5a5a5a5a5a5ull, out[6].offset) TH_LOG("wrote past nr_out");
	/* rearmed: nothing until written again */
	scan_init(&s, E->r.id, 0, APAGES * ps, UFFDX_SCAN_REARM, out, 16);
	ASSERT_EQ(0, raw_scan(E->ctx, &s));
	EXPECT_EQ(APAGES * ps, s.scanned);
	EXPECT_EQ(0, s.nr_out);
	EXPECT_EQ(0, s.written);
	/* a sub-range reports region offsets, clipped to the range */
	WRITE_PAGES(MAP, SCAN_SET);
	scan_init(&s, E->r.id, 62 * ps, 66 * ps, 0, out, 16);
	ASSERT_EQ(0, raw_scan(E->ctx, &s));
	EXPECT_EQ(66 * ps, s.scanned);
	ASSERT_EQ(2, s.nr_out);
	EXPECT_EQ(62 * ps, out[0].offset);
	EXPECT_EQ(9 * ps, out[0].len);
	EXPECT_EQ(127 * ps, out[1].offset);
	EXPECT_EQ(1 * ps, out[1].len);
	EXPECT_EQ(10 * ps, s.written);
	/* without REARM it only reported: every record is still there */
	EXPECT_SCAN(E, UFFDX_SCAN_REARM, SCAN_SET);
	EXPECT_SCAN(E, UFFDX_SCAN_REARM, NONE);
}

TEST_F(wpa, scan_output_full_then_continue)
{
	struct uffdx_scan_range out[3];
	struct uffdx_scan s;
	uint8_t *got = calloc(APAGES, 1);
	int calls;

	ASSERT_NE(NULL, got);
	PROTECT(E, 0, APAGES);
	WRITE_PAGES(MAP, SCAN_SET);
	/* two ranges fit: it stops after the second run, before the third */
	memset(out, 0xa5, sizeof(out));
	scan_init(&s, E->r.id, 0, APAGES * ps, UFFDX_SCAN_REARM, out, 2);
	ASSERT_EQ(0, raw_scan(E->ctx, &s)) TH_LOG("%s", strerror(errno));
	EXPECT_EQ(2, s.nr_out);
	EXPECT_LE(5 * ps, s.scanned) TH_LOG("scanned 0x%llx", (unsigned long long)s.scanned);
	EXPECT_GE(60 * ps, s.scanned) TH_LOG("scanned 0x%llx: past a run it did not report",
					     (unsigned long long)s.scanned);
	EXPECT_EQ(0, out[0].offset);
	EXPECT_EQ(ps, out[0].len);
	EXPECT_EQ(2 * ps, out[1].offset);
	EXPECT_EQ(3 * ps, out[1].len);
	EXPECT_EQ(4 * ps, s.written);
	EXPECT_EQ(0xa5a5a5a5a5a5a5a5ull, out[2].len);
	/* the pages past "scanned" kept their state: continuing reports them */
	calls = scan_ranges(_metadata, E->ctx, E->r.id, s.scanned / ps, APAGES - s.scanned / ps,
			    UFFDX_SCAN_REARM, 2, got);
	EXPECT_LE(2, calls);
	compare_pages(_metadata, "continued", s.scanned / ps, APAGES - s.scanned / ps, got,
		      (const int[]){ 60, 61, 62, 63, 64, 65, 66, 67, 68, 69, 70, 127, 128, 200,
				     255, -1 });
	EXPECT_SCAN(E, UFFDX_SCAN_REARM, NONE);

	/* one range at a time, without REARM (twice: it takes nothing), then with */
	WRITE_PAGES(MAP, SCAN_SET);
	calls = scan_ranges(_metadata, E->ctx, E->r.id, 0, APAGES, 0, 1, got);
	EXPECT_LE(6, calls);
	compare_pages(_metadata, "one at a time", 0, APAGES, got, (const int[]){ SCAN_SET, -1 });
	calls = scan_ranges(_metadata, E->ctx, E->r.id, 0, APAGES, 0, 1, got);
	compare_pages(_metadata, "one at a time, again", 0, APAGES, got,
		      (const int[]){ SCAN_SET, -1 });
	calls = scan_ranges(_metadata, E->ctx, E->r.id, 0, APAGES, UFFDX_SCAN_REARM, 1, got);
	EXPECT_LE(6, calls);
	compare_pages(_metadata, "one at a time, REARM", 0, APAGES, got,
		      (const int[]){ SCAN_SET, -1 });
	EXPECT_SCAN(E, 0, NONE);
	free(got);
}

TEST_F(wpa, scan_bitmap)
{
	uint8_t out[40], *got = calloc(APAGES, 1);
	struct uffdx_scan s;
	unsigned int i;
	int calls;

	ASSERT_NE(NULL, got);
	PROTECT(E, 0, APAGES);
	WRITE_PAGES(MAP, SCAN_SET);
	memset(out, 0xa5, sizeof(out));
	scan_init(&s, E->r.id, 0, APAGES * ps, UFFDX_SCAN_BITMAP | UFFDX_SCAN_REARM, out, 32);
	ASSERT_EQ(0, raw_scan(E->ctx, &s)) TH_LOG("%s", strerror(errno));
	EXPECT_EQ(APAGES * ps, s.scanned);
	EXPECT_EQ(32, s.nr_out);
	EXPECT_EQ(SCAN_SET_PAGES * ps, s.written);
	{
		static const int set[] = { SCAN_SET, -1 };
		uint8_t want[32] = { 0 };

		for (i = 0; set[i] >= 0; i++)
			want[set[i] / 8] |= (uint8_t)(1u << (set[i] % 8));
		for (i = 0; i < 32; i++) {
			EXPECT_EQ(want[i], out[i]) TH_LOG("byte %u", i);
		}
	}
	for (i = 32; i < sizeof(out); i++) {
		EXPECT_EQ(0xa5, out[i]) TH_LOG("byte %u, past out_len", i);
	}
	EXPECT_SCAN(E, 0, NONE);

	/* a sub-range: bit 0 is its first page; the last byte is covered in part */
	WRITE_PAGES(MAP, SCAN_SET);
	memset(out, 0xa5, sizeof(out));
	scan_init(&s, E->r.id, 60 * ps, 12 * ps, UFFDX_SCAN_BITMAP, out, 8);
	ASSERT_EQ(0, raw_scan(E->ctx, &s)) TH_LOG("%s", strerror(errno));
	EXPECT_EQ(12 * ps, s.scanned);
	EXPECT_EQ(2, s.nr_out);
	EXPECT_EQ(11 * ps, s.written);
	EXPECT_EQ(0xff, out[0]);
	EXPECT_EQ(0x07, out[1]) TH_LOG("pages 68-71, and nothing past the range: 0x%02x", out[1]);
	for (i = 2; i < sizeof(out); i++) {
		EXPECT_EQ(0xa5, out[i]) TH_LOG("byte %u, not covered", i);
	}

	/* a full bitmap: 2 bytes are 16 pages; continuing gives the rest */
	memset(out, 0xa5, sizeof(out));
	scan_init(&s, E->r.id, 0, APAGES * ps, UFFDX_SCAN_BITMAP, out, 2);
	ASSERT_EQ(0, raw_scan(E->ctx, &s));
	EXPECT_EQ(16 * ps, s.scanned);
	EXPECT_EQ(2, s.nr_out);
	EXPECT_EQ(0x1d, out[0]);
	EXPECT_EQ(0, out[1]);
	EXPECT_EQ(0xa5, out[2]);
	calls = scan_bitmap(_metadata, E->ctx, E->r.id, 16, APAGES - 16, UFFDX_SCAN_REARM, 2, got);
	EXPECT_EQ((APAGES - 16) / 16, calls);
	/* 60-70 too: the sub-range scan, without REARM, took nothing */
	compare_pages(_metadata, "bitmap, continued", 16, APAGES - 16, got,
		      (const int[]){ 60, 61, 62, 63, 64, 65, 66, 67, 68, 69, 70, 127, 128, 200,
				     255, -1 });
	/* re-armed from 16 on; 0-15 still hold their records */
	WRITE_PAGES(MAP, 64, 127);
	EXPECT_SCAN(E, UFFDX_SCAN_REARM, 0, 2, 3, 4, 64, 127);
	free(got);
}

TEST_F(wpa, scan_rearm_and_without)
{
	FILL(E, 0, 8, 700);
	PROTECT(E, 0, 8);
	WRITE_PAGES(MAP, 1, 3);
	EXPECT_SCAN(E, UFFDX_SCAN_REARM, 1, 3);
	EXPECT_SCAN(E, UFFDX_SCAN_REARM, NONE);
	/* re-protected: a write after the scan is reported by the next */
	WRITE_PAGES(MAP, 1);
	EXPECT_SCAN(E, UFFDX_SCAN_REARM, 1);
	WRITE_PAGES(MAP, 1, 1, 1);
	EXPECT_SCAN(E, UFFDX_SCAN_REARM, 1);

	/* without REARM a scan only reports: the record stays, the page unprotected */
	WRITE_PAGES(MAP, 2);
	EXPECT_SCAN(E, 0, 2);
	EXPECT_SCAN(E, 0, 2);
	WRITE_PAGES(MAP, 2);
	EXPECT_SCAN(E, 0, 2);
	/* REARM takes the record and protects the page again */
	EXPECT_SCAN(E, UFFDX_SCAN_REARM, 2);
	EXPECT_SCAN(E, 0, NONE);
	WRITE_PAGES(MAP, 2);
	EXPECT_SCAN(E, 0, 2);
	/* a scan without REARM leaves protected pages protected */
	WRITE_PAGES(MAP, 4);
	EXPECT_SCAN(E, 0, 2, 4);
	EXPECT_SCAN(E, UFFDX_SCAN_REARM, 2, 4);
	/* REARM protects what it reports, nothing else */
	UNPROTECT(E, 5, 1);
	EXPECT_SCAN(E, UFFDX_SCAN_REARM, NONE);
	WRITE_PAGES(MAP, 2, 5);
	EXPECT_SCAN(E, UFFDX_SCAN_REARM, 2);
	EXPECT_PAGES(MAP, 6, 2, 706);
	EXPECT_EQ(0, event_arrives(E->ctx, 0));
}

TEST_F(wpa, unprotect_keeps_written_until_scanned)
{
	FILL(E, 0, 8, 710);
	PROTECT(E, 0, 8);
	WRITE_PAGES(MAP, 1, 2);
	UNPROTECT(E, 0, 8);
	EXPECT_SCAN(E, 0, 1, 2);
	EXPECT_SCAN(E, 0, 1, 2);
	/* unprotected: not recorded */
	WRITE_PAGES(MAP, 3);
	EXPECT_SCAN(E, UFFDX_SCAN_REARM, 1, 2);
	EXPECT_SCAN(E, UFFDX_SCAN_REARM, NONE);
	/* the REARM protected the reported pages again, and only them */
	WRITE_PAGES(MAP, 1, 3);
	EXPECT_SCAN(E, UFFDX_SCAN_REARM, 1);
	/* DONTWAKE has no sleeper to leave here; the range is unprotected all the same */
	PROTECT(E, 0, 8);
	ASSERT_EQ(0, wp_op(E->ctx, E->r.id, 0, 8 * ps, UFFDX_WP_DONTWAKE));
	WRITE_PAGES(MAP, 4);
	EXPECT_SCAN(E, UFFDX_SCAN_REARM, NONE);
	/* unprotect then REARM scan: the written page comes back protected */
	PROTECT(E, 0, 8);
	WRITE_PAGES(MAP, 6);
	UNPROTECT(E, 0, 8);
	EXPECT_SCAN(E, UFFDX_SCAN_REARM, 6);
	WRITE_PAGES(MAP, 6, 7);
	EXPECT_SCAN(E, UFFDX_SCAN_REARM, 6);
}

TEST_F(wpa, discard_drops_protection_and_written)
{
	int64_t res = 0;

	FILL(E, 0, 8, 720);
	PROTECT(E, 0, 8);
	PROTECT(E, 20, 2);	/* holes */
	WRITE_PAGES(MAP, 1, 2, 20);
	ASSERT_EQ(0, uffdx_discard(E->ctx, E->r.id, ps, 3 * ps, &res));
	ASSERT_EQ(0, uffdx_discard(E->ctx, E->r.id, 20 * ps, 2 * ps, &res));
	EXPECT_SCAN(E, UFFDX_SCAN_REARM, NONE);
	EXPECT_RESIDENT(E->r.fd, 5);
	/* holes again, unprotected: written, not recorded */
	WRITE_PAGES(MAP, 1, 3, 20, 21);
	EXPECT_SCAN(E, UFFDX_SCAN_REARM, NONE);
	/* the rest kept its protection */
	WRITE_PAGES(MAP, 0, 4);
	EXPECT_SCAN(E, UFFDX_SCAN_REARM, 0, 4);
}

TEST_F(wp, discard_drops_protection)
{
	int64_t res = 0;

	FILL(E, 0, 4, 730);
	TOUCH_PAGES(MAP, 0, 1, 2, 3);
	PROTECT(E, 0, 4);
	PROTECT(E, 10, 1);
	ASSERT_EQ(0, uffdx_discard(E->ctx, E->r.id, 0, 3 * ps, &res));
	EXPECT_EQ((int64_t)(3 * ps), res);
	ASSERT_EQ(0, uffdx_discard(E->ctx, E->r.id, 10 * ps, ps, &res));
	EXPECT_RESIDENT(E->r.fd, 1);
	FREE_WRITE(E, PG(MAP, 0), 0);
	FREE_WRITE(E, PG(MAP, 2) + 5, 2);
	FREE_WRITE(E, PG(MAP, 10), 10);
	CAUGHT(E, PG(MAP, 3), 3);
}

/* DISCARD drops the protection a writer sleeps on, and wakes it: its write lands in a hole. */
TEST_F(wp, discard_wakes_sleeping_writers)
{
	struct accessor *a, *b;
	int64_t res = 0;

	FILL(E, 0, 2, 740);
	PROTECT(E, 0, 2);
	PROTECT(E, 5, 1);	/* a hole */
	a = writer(_metadata, E, PG(MAP, 1) + 3, 0x3d, 0);
	expect_event(_metadata, E->ctx, PG(MAP, 1), E->r.id, ps, PF_WPW, getpid(), a->tid);
	b = writer(_metadata, E, PG(MAP, 5) + 4, 0x4d, 1);
	expect_event(_metadata, E->ctx, PG(MAP, 5), E->r.id, 5 * ps, PF_WPW, b->child, b->child);
	EXPECT_TRUE(acc_blocked(a, QUIET_MS));
	ASSERT_EQ(0, uffdx_discard(E->ctx, E->r.id, ps, 5 * ps, &res));
	ASSERT_EQ(0, acc_wait(a, WAIT_MS)) TH_LOG("DISCARD did not wake the writer of a page");
	ASSERT_EQ(0, acc_wait(b, WAIT_MS)) TH_LOG("DISCARD did not wake the writer of a hole");
	EXPECT_EQ(0, a->sig);
	EXPECT_EQ(0, b->sig);
	memset(E->buf, 0, ps);
	E->buf[3] = 0x3d;
	EXPECT_EQ(0, memcmp(PG(MAP, 1), E->buf, ps)) TH_LOG("the write did not land in a fresh hole");
	EXPECT_EQ(0x4d, PG(MAP, 5)[4]);
	EXPECT_EQ(0, event_arrives(E->ctx, QUIET_MS));
	/* page 0 kept its protection */
	CAUGHT(E, PG(MAP, 0) + 1, 0);
}

/*
 * An output SCAN cannot write: EFAULT, with "scanned" saying what was
 * reported (and taken, with REARM); every record past that is kept for the
 * next scan, and none it took is reported twice.
 */
TEST_F(wpa, scan_efault_loses_no_report)
{
	uint8_t *ro = mmap(NULL, 2 * ps, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint8_t *got = calloc(APAGES, 1), *left, *dup;
	struct uffdx_scan_range *out;
	struct uffdx_scan s;
	int i, ret, err;
	uint64_t k;

	ASSERT_NE(MAP_FAILED, ro);
	ASSERT_NE(NULL, got);
	PROTECT(E, 0, APAGES);
	WRITE_PAGES(MAP, 1, 5, 6, 7, 40);
	for (i = 0; i < 3; i++) {
		/* range form, REARM; bitmap, REARM; range form without */
		uint32_t flags = i == 0 ? UFFDX_SCAN_REARM :
				 i == 1 ? UFFDX_SCAN_BITMAP | UFFDX_SCAN_REARM : 0;

		scan_init(&s, E->r.id, 0, APAGES * ps, flags, ro, 16);
		EXPECT_EQ(-1, raw_scan(E->ctx, &s)) TH_LOG("flags 0x%x: wrote to a read-only buffer", flags);
		EXPECT_EQ(EFAULT, errno);
		/* nothing reported, so nothing taken; at most the clean page 0 examined */
		EXPECT_EQ(0, s.nr_out) TH_LOG("flags 0x%x", flags);
		EXPECT_EQ(0, s.written) TH_LOG("flags 0x%x", flags);
		EXPECT_GE(ps, s.scanned) TH_LOG("flags 0x%x: scanned 0x%llx", flags,
						(unsigned long long)s.scanned);
	}
	EXPECT_SCAN(E, UFFDX_SCAN_REARM, 1, 5, 6, 7, 40);
	EXPECT_SCAN(E, UFFDX_SCAN_REARM, NONE);

	/*
	 * An output whose first 32 ranges are writable and the rest not, for
	 * 128 runs: the failing call has taken exactly what "scanned" covers
	 * (its ranges may reach past it: duplicates); the next scan reports
	 * the rest, and nothing it took.
	 */
	ASSERT_EQ(0, mprotect(ro, ps, PROT_READ | PROT_WRITE));
	ASSERT_EQ(0, mprotect(ro + ps, ps, PROT_NONE));
	out = (struct uffdx_scan_range *)(ro + ps - 32 * sizeof(*out));
	{
		int even[APAGES / 2 + 1];

		for (k = 0; k < APAGES / 2; k++)
			even[k] = (int)(2 * k);
		even[APAGES / 2] = -1;
		write_pages(_metadata, MAP, even, 1);
	}
	scan_init(&s, E->r.id, 0, APAGES * ps, UFFDX_SCAN_REARM, out, 100);
	ret = raw_scan(E->ctx, &s);
	err = errno;
	TH_LOG("a straddling output: %s, nr_out %llu, scanned 0x%llx, written 0x%llx",
	       ret ? strerror(err) : "ok", (unsigned long long)s.nr_out,
	       (unsigned long long)s.scanned, (unsigned long long)s.written);
	EXPECT_EQ(-1, ret);
	EXPECT_EQ(EFAULT, err);
	ASSERT_GE(32, s.nr_out) TH_LOG("more ranges reported than fit");
	ASSERT_GE(APAGES * ps, s.scanned);
	EXPECT_EQ(0, s.scanned % ps);
	dup = calloc(APAGES, 1);
	ASSERT_NE(NULL, dup);
	memset(got, 0, APAGES);
	for (k = 0; k < s.nr_out; k++) {
		uint64_t p;

		for (p = out[k].offset; p < out[k].offset + out[k].len && p < APAGES * ps; p += ps) {
			if (p < s.scanned)
				got[p / ps] = 1;	/* taken */
			else
				dup[p / ps] = 1;	/* written out, not taken */
		}
	}
	left = calloc(APAGES, 1);
	ASSERT_NE(NULL, left);
	ASSERT_LE(0, scan_ranges(_metadata, E->ctx, E->r.id, 0, APAGES, UFFDX_SCAN_REARM, 64, left));
	for (k = 0; k < APAGES; k++) {
		EXPECT_EQ(k % 2 == 0, got[k] | left[k] | dup[k])
			TH_LOG("page %llu %s", (unsigned long long)k,
			       k % 2 ? "reported, not written" : "written, its report lost");
		EXPECT_FALSE(got[k] && left[k])
			TH_LOG("page %llu: taken by the failing scan (below scanned), reported again",
			       (unsigned long long)k);
		EXPECT_FALSE(dup[k] && !left[k])
			TH_LOG("page %llu: reported past scanned, and not kept", (unsigned long long)k);
	}
	EXPECT_SCAN(E, UFFDX_SCAN_REARM, NONE);
	free(dup);
	free(left);
	free(got);
	munmap(ro, 2 * ps);
}

/* ---- 8. malformed arguments, and who may protect ---------------------------------------------- */

struct bad_wp {
	const char *what;
	uint64_t off, len;
	uint32_t mode;
	int field;		/* 1 reserved[0], 2 reserved[1], 3 size, 4 src, 5 region id */
	uint64_t val;
	int err;
};

TEST_F(wp, writeprotect_bad_args)
{
	const uint64_t P = ps, END = NPAGES * ps, TOP = ~0ULL & ~(uint64_t)(ps - 1);
	const uint32_t PR = UFFDX_WP_PROTECT;
	const struct bad_wp bad[] = {
		{ "unaligned offset", 1, P, PR, 0, 0, EINVAL },
		{ "unaligned offset (half page)", P + P / 2, P, PR, 0, 0, EINVAL },
		{ "unaligned len", 0, P - 1, PR, 0, 0, EINVAL },
		{ "unaligned len (page + 1)", 0, P + 1, PR, 0, 0, EINVAL },
		{ "len 0", 0, 0, PR, 0, 0, EINVAL },
		{ "len 0, unprotect", 0, 0, 0, 0, 0, EINVAL },
		{ "offset + len overflows", TOP, 2 * P, PR, 0, 0, EINVAL },
		{ "huge len", P, TOP, PR, 0, 0, EINVAL },
		{ "offset at region end", END, P, PR, 0, 0, EINVAL },
		{ "past region end", END - P, 2 * P, PR, 0, 0, EINVAL },
		{ "len larger than the region", 0, END + P, PR, 0, 0, EINVAL },
		{ "mode 0x4", 0, P, 0x4, 0, 0, EINVAL },
		{ "mode 0x8", 0, P, 0x8, 0, 0, EINVAL },
		{ "mode 1 << 31", 0, P, 1u << 31, 0, 0, EINVAL },
		{ "PROTECT | DONTWAKE", 0, P, PR | UFFDX_WP_DONTWAKE, 0, 0, EINVAL },
		{ "PROTECT | 0x4", 0, P, PR | 0x4, 0, 0, EINVAL },
		{ "DONTWAKE | 0x10", 0, P, UFFDX_WP_DONTWAKE | 0x10, 0, 0, EINVAL },
		{ "reserved[0]", 0, P, PR, 1, 1, EINVAL },
		{ "reserved[1]", 0, P, PR, 2, 1ULL << 40, EINVAL },
		{ "size 8", 0, P, PR, 3, 8, EINVAL },
		{ "size 0", 0, P, PR, 3, 0, EINVAL },
		{ "src != 0", 0, P, PR, 4, 0x10000, EINVAL },
		{ "unknown region id", 0, P, PR, 5, 0x5a5a0000ULL, ENOENT },
		{ "region id 0", 0, P, PR, 5, 0, ENOENT },
	};
	struct uffdx_region_map plain, dead;
	struct uffdx_range r;
	unsigned int i;
	int64_t res = 0;
	int ret;

	FILL(E, 0, 2, 800);
	TOUCH_PAGES(MAP, 0, 1);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const struct bad_wp *c = &bad[i];
		int e;

		wp_init(&r, E->r.id, c->off, c->len, c->mode);
		if (c->field == 1)
			r.reserved[0] = c->val;
		else if (c->field == 2)
			r.reserved[1] = c->val;
		else if (c->field == 3)
			r.size = (uint32_t)c->val;
		else if (c->field == 4)
			r.src = c->val;
		else if (c->field == 5)
			r.region_id = c->val ? E->r.id ^ c->val : 0;
		ret = ioctl(E->ctx, UFFDX_IOC_WRITEPROTECT, &r);
		e = errno;
		EXPECT_EQ(-1, ret) TH_LOG("%s: accepted", c->what);
		EXPECT_EQ(c->err, e) TH_LOG("%s: errno %d (%s)", c->what, e, strerror(e));
		EXPECT_EQ(SENTINEL, r.result) TH_LOG("%s: result written (%lld)", c->what,
						     (long long)r.result);
	}
	/* a newer, larger struct with a non-zero tail */
	{
		union {
			struct uffdx_range r;
			uint8_t b[sizeof(struct uffdx_range) + 8];
		} u;

		memset(&u, 0, sizeof(u));
		wp_init(&u.r, E->r.id, 0, ps, UFFDX_WP_PROTECT);
		u.r.size = sizeof(u);
		u.b[sizeof(u) - 1] = 1;
		EXPECT_EQ(-1, ioctl(E->ctx, UFFDX_IOC_WRITEPROTECT, &u.r));
		EXPECT_EQ(E2BIG, errno);
		/* and with a zero tail it is fine: the page is protected */
		u.b[sizeof(u) - 1] = 0;
		EXPECT_EQ(0, ioctl(E->ctx, UFFDX_IOC_WRITEPROTECT, &u.r)) TH_LOG("%s", strerror(errno));
		EXPECT_EQ((int64_t)ps, u.r.result);
		UNPROTECT(E, 0, 1);
	}
	/* a region of ours without a write-protect mode */
	ASSERT_EQ(0, uffdx_region_map(E->ctx, 4 * ps, 0, &plain));
	ret = raw_wp(E->ctx, plain.id, 0, ps, UFFDX_WP_PROTECT, &res);
	EXPECT_ERR(ret, res, EINVAL, SENTINEL);
	ret = raw_wp(E->ctx, plain.id, 0, ps, 0, &res);
	EXPECT_ERR(ret, res, EINVAL, SENTINEL);
	/* one freed: its id is not reused */
	ASSERT_EQ(0, uffdx_region_map(E->ctx, 4 * ps, UFFDX_REGION_CREATE_WP, &dead));
	{
		uint64_t id = dead.id;

		uffdx_region_unmap(&dead);
		ret = raw_wp(E->ctx, id, 0, ps, UFFDX_WP_PROTECT, &res);
		EXPECT_ERR(ret, res, ENOENT, SENTINEL);
	}
	/* nothing was protected */
	FREE_WRITE(E, PG(MAP, 0), 0);
	FREE_WRITE(E, PG(MAP, 1), 1);
	FREE_WRITE(E, PG(MAP, 2), 2);
	FREE_WRITE(E, PG(MAP, NPAGES - 1), NPAGES - 1);
	uffdx_region_unmap(&plain);
}

TEST_F(wp, writeprotect_addr_bad_args)
{
	const uint64_t TOP = ~0ULL & ~(uint64_t)(ps - 1);
	struct uffdx_region_map plain, other;
	struct uffdx_writeprotect_addr w;
	uint8_t *anon, *split, *hole, *om;
	unsigned int i;
	int64_t res = 0;
	int ret, e, ctx2;

	FILL(E, 0, 4, 810);
	TOUCH_PAGES(MAP, 0, 1, 2, 3);
	anon = mmap(NULL, 4 * ps, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, anon);
	/* two adjacent mappings of the region that cannot merge: offsets 32.. then 0.. */
	split = mmap(NULL, 16 * ps, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, split);
	ASSERT_EQ(split, mmap(split, 8 * ps, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED,
			      E->r.fd, 32 * ps));
	ASSERT_EQ(PG(split, 8), mmap(PG(split, 8), 8 * ps, PROT_READ | PROT_WRITE,
				     MAP_SHARED | MAP_FIXED, E->r.fd, 0));
	hole = mmap(NULL, 4 * ps, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, hole);
	munmap(hole, 4 * ps);
	ASSERT_EQ(0, uffdx_region_map(E->ctx, 4 * ps, 0, &plain));
	{
		const struct {
			const char *what;
			const void *addr;
			uint64_t len;
			uint32_t mode;
			int field;
		} bad[] = {
			{ "mode 0x4", MAP, ps, 0x4, 0 },
			{ "mode 1 << 31", MAP, ps, 1u << 31, 0 },
			{ "PROTECT | DONTWAKE", MAP, ps, UFFDX_WP_PROTECT | UFFDX_WP_DONTWAKE, 0 },
			{ "reserved[0]", MAP, ps, UFFDX_WP_PROTECT, 1 },
			{ "reserved[1]", MAP, ps, UFFDX_WP_PROTECT, 2 },
			{ "size 8", MAP, ps, UFFDX_WP_PROTECT, 3 },
			{ "unaligned addr", PG(MAP, 1) + 8, ps, UFFDX_WP_PROTECT, 0 },
			{ "unaligned len", MAP, ps + 1, UFFDX_WP_PROTECT, 0 },
			{ "len 0", MAP, 0, UFFDX_WP_PROTECT, 0 },
			{ "addr + len overflows", MAP, TOP, UFFDX_WP_PROTECT, 0 },
			{ "at the top of the address space", (void *)(uintptr_t)TOP, 2 * ps,
			  UFFDX_WP_PROTECT, 0 },
			{ "past the mapping", PG(MAP, NPAGES - 1), 2 * ps, UFFDX_WP_PROTECT, 0 },
			{ "anonymous memory", anon, ps, UFFDX_WP_PROTECT, 0 },
			{ "nothing mapped", hole, ps, UFFDX_WP_PROTECT, 0 },
			{ "across two mappings", PG(split, 6), 4 * ps, UFFDX_WP_PROTECT, 0 },
			{ "a region without a WP mode", plain.addr, ps, UFFDX_WP_PROTECT, 0 },
			{ "a region without a WP mode, unprotect", plain.addr, ps, 0, 0 },
		};

		for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			wpa_init(&w, bad[i].addr, bad[i].len, bad[i].mode);
			if (bad[i].field == 1)
				w.reserved[0] = 1;
			else if (bad[i].field == 2)
				w.reserved[1] = 1ULL << 33;
			else if (bad[i].field == 3)
				w.size = 8;
			ret = ioctl(E->ctx, UFFDX_IOC_WRITEPROTECT_ADDR, &w);
			e = errno;
			EXPECT_EQ(-1, ret) TH_LOG("%s: accepted", bad[i].what);
			EXPECT_EQ(EINVAL, e) TH_LOG("%s: errno %d (%s)", bad[i].what, e, strerror(e));
			EXPECT_EQ(SENTINEL, w.result) TH_LOG("%s: result written", bad[i].what);
		}
	}

	/* another context's region, mapped here: only its owner protects it */
	ctx2 = ctx_open(ctx_features(0), 0);
	ASSERT_LE(0, ctx2);
	ASSERT_EQ(0, uffdx_region_map(ctx2, 8 * ps, UFFDX_REGION_CREATE_WP, &other));
	ASSERT_EQ(0, fill_pages(ctx2, other.id, 0, 2, 820));
	om = mmap(NULL, 8 * ps, PROT_READ | PROT_WRITE, MAP_SHARED, other.fd, 0);
	ASSERT_NE(MAP_FAILED, om);
	ret = raw_wp_addr(E->ctx, om, ps, UFFDX_WP_PROTECT, &res);
	EXPECT_ERR(ret, res, EPERM, SENTINEL);
	ret = raw_wp_addr(E->ctx, other.addr, 2 * ps, 0, &res);
	EXPECT_ERR(ret, res, EPERM, SENTINEL);
	/* and by id: ids name regions of the context that created them */
	if (other.id != E->r.id) {
		ret = raw_wp(E->ctx, other.id, 0, ps, UFFDX_WP_PROTECT, &res);
		EXPECT_ERR(ret, res, ENOENT, SENTINEL);
	}
	/* the owner can, through our mapping too */
	ret = raw_wp_addr(ctx2, om, ps, UFFDX_WP_PROTECT, &res);
	EXPECT_DONE(ret, res, ps);
	ret = raw_wp_addr(ctx2, om, ps, 0, &res);
	EXPECT_DONE(ret, res, ps);
	/* and ctx2 cannot protect ours */
	ret = raw_wp_addr(ctx2, MAP, ps, UFFDX_WP_PROTECT, &res);
	EXPECT_ERR(ret, res, EPERM, SENTINEL);
	munmap(om, 8 * ps);
	uffdx_region_unmap(&other);
	close(ctx2);

	/* nothing was protected */
	FREE_WRITE(E, PG(MAP, 0), 0);
	FREE_WRITE(E, PG(MAP, 1), 1);
	FREE_WRITE(E, PG(MAP, 32), 32);
	FREE_WRITE(E, PG(MAP, NPAGES - 1), NPAGES - 1);
	EXPECT_EQ(0, anon[0]);
	uffdx_region_unmap(&plain);
	munmap(anon, 4 * ps);
	munmap(split, 16 * ps);
}

TEST_F(wpa, scan_bad_args)
{
	const uint64_t P = ps, END = APAGES * ps, TOP = ~0ULL & ~(uint64_t)(ps - 1);
	struct uffdx_scan_range out[8];
	struct uffdx_region_map plain, sync;
	struct uffdx_scan s;
	unsigned int i;
	int ret, e;
	const struct {
		const char *what;
		uint64_t off, len;
		uint32_t flags;
		int field;	/* 1 reserved[0], 2 reserved[1], 3 size, 4 out_len, 5 id */
		uint64_t val;
		int err;
	} bad[] = {
		{ "flags 0x4", 0, END, 0x4, 0, 0, EINVAL },
		{ "flags 1 << 31", 0, END, 1u << 31, 0, 0, EINVAL },
		{ "REARM | 0x8", 0, END, UFFDX_SCAN_REARM | 0x8, 0, 0, EINVAL },
		{ "out_len 0", 0, END, 0, 4, 0, EINVAL },
		{ "out_len 0, bitmap", 0, END, UFFDX_SCAN_BITMAP, 4, 0, EINVAL },
		{ "reserved[0]", 0, END, 0, 1, 1, EINVAL },
		{ "reserved[1]", 0, END, 0, 2, 1ULL << 50, EINVAL },
		{ "size 8", 0, END, 0, 3, 8, EINVAL },
		{ "size 0", 0, END, 0, 3, 0, EINVAL },
		{ "unaligned offset", 1, P, 0, 0, 0, EINVAL },
		{ "unaligned len", 0, P + 1, 0, 0, 0, EINVAL },
		{ "len 0", 0, 0, 0, 0, 0, EINVAL },
		{ "offset + len overflows", TOP, 2 * P, 0, 0, 0, EINVAL },
		{ "offset at region end", END, P, 0, 0, 0, EINVAL },
		{ "past region end", END - P, 2 * P, 0, 0, 0, EINVAL },
		{ "len larger than the region", 0, END + P, UFFDX_SCAN_REARM, 0, 0, EINVAL },
		{ "unknown region id", 0, P, 0, 5, 0x5a5a0000ULL, ENOENT },
		{ "region id 0", 0, P, 0, 5, 0, ENOENT },
	};

	PROTECT(E, 0, 8);
	WRITE_PAGES(MAP, 3);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		scan_init(&s, E->r.id, bad[i].off, bad[i].len, bad[i].flags, out, 8);
		if (bad[i].field == 1)
			s.reserved[0] = bad[i].val;
		else if (bad[i].field == 2)
			s.reserved[1] = bad[i].val;
		else if (bad[i].field == 3)
			s.size = (uint32_t)bad[i].val;
		else if (bad[i].field == 4)
			s.out_len = bad[i].val;
		else if (bad[i].field == 5)
			s.region_id = bad[i].val ? E->r.id ^ bad[i].val : 0;
		ret = raw_scan(E->ctx, &s);
		e = errno;
		EXPECT_EQ(-1, ret) TH_LOG("%s: accepted", bad[i].what);
		EXPECT_EQ(bad[i].err, e) TH_LOG("%s: errno %d (%s)", bad[i].what, e, strerror(e));
	}
	{
		union {
			struct uffdx_scan s;
			uint8_t b[sizeof(struct uffdx_scan) + 8];
		} u;

		memset(&u, 0, sizeof(u));
		scan_init(&u.s, E->r.id, 0, END, 0, out, 8);
		u.s.size = sizeof(u);
		u.b[sizeof(u) - 1] = 1;
		EXPECT_EQ(-1, raw_scan(E->ctx, &u.s));
		EXPECT_EQ(E2BIG, errno);
	}
	/* regions of other modes */
	ASSERT_EQ(0, uffdx_region_map(E->ctx, 4 * ps, 0, &plain));
	scan_init(&s, plain.id, 0, 4 * ps, 0, out, 8);
	EXPECT_EQ(-1, raw_scan(E->ctx, &s));
	EXPECT_EQ(EINVAL, errno) TH_LOG("SCAN of a plain region: %s", strerror(errno));
	uffdx_region_unmap(&plain);
	if (supported() & UFFDX_FEATURE_WP) {
		ASSERT_EQ(0, uffdx_region_map(E->ctx, 4 * ps, UFFDX_REGION_CREATE_WP, &sync));
		ASSERT_EQ(0, wp_op(E->ctx, sync.id, 0, 4 * ps, UFFDX_WP_PROTECT));
		scan_init(&s, sync.id, 0, 4 * ps, UFFDX_SCAN_REARM, out, 8);
		EXPECT_EQ(-1, raw_scan(E->ctx, &s));
		EXPECT_EQ(EINVAL, errno) TH_LOG("SCAN of a sync region: %s", strerror(errno));
		uffdx_region_unmap(&sync);
	}
	/* another context cannot scan ours */
	{
		int ctx2 = ctx_open(ctx_features(0), 0);

		ASSERT_LE(0, ctx2);
		scan_init(&s, E->r.id, 0, END, 0, out, 8);
		EXPECT_EQ(-1, raw_scan(ctx2, &s));
		EXPECT_EQ(ENOENT, errno);
		close(ctx2);
	}
	/* nothing changed: page 3's report is still there, the rest still protected */
	EXPECT_SCAN(E, UFFDX_SCAN_REARM, 3);
	WRITE_PAGES(MAP, 7);
	EXPECT_SCAN(E, UFFDX_SCAN_REARM, 7);
}

/* ---- 9. MOVE carries the state ------------------------------------------------------------------ */

static int raw_move(int ctx, uint64_t dst, uint64_t doff, uint64_t src, uint64_t soff,
		    uint64_t len, uint32_t mode, int64_t *result)
{
	struct uffdx_move m;
	int ret, err;

	memset(&m, 0, sizeof(m));
	m.size = sizeof(m);
	m.mode = mode;
	m.dst_region = dst;
	m.dst_offset = doff;
	m.src_region = src;
	m.src_offset = soff;
	m.len = len;
	m.result = SENTINEL;
	ret = ioctl(ctx, UFFDX_IOC_MOVE, &m);
	err = errno;
	if (result)
		*result = m.result;
	errno = err;
	return ret;
}

static int raw_move_addr(int ctx, const void *dst, const void *src, uint64_t len, int64_t *result)
{
	struct uffdx_move_addr m;
	int ret, err;

	memset(&m, 0, sizeof(m));
	m.size = sizeof(m);
	m.dst = (uintptr_t)dst;
	m.src = (uintptr_t)src;
	m.len = len;
	m.result = SENTINEL;
	ret = ioctl(ctx, UFFDX_IOC_MOVE_ADDR, &m);
	err = errno;
	if (result)
		*result = m.result;
	errno = err;
	return ret;
}

TEST_F(wp, move_carries_protection)
{
	struct uffdx_region_map b;
	int64_t res = 0;
	int ret;

	SKIP_IF_NO_MOVE();
	ASSERT_EQ(0, uffdx_region_map(E->ctx, 32 * ps, UFFDX_REGION_CREATE_WP, &b));
	FILL(E, 0, 4, 900);
	TOUCH_PAGES(MAP, 0, 1, 2, 3);
	PROTECT(E, 1, 2);
	ret = raw_move(E->ctx, b.id, 8 * ps, E->r.id, 0, 4 * ps, 0, &res);
	EXPECT_DONE(ret, res, 4 * ps);
	EXPECT_PAGES(b.addr, 8, 4, 900);
	/* protected at the destination, which names the events */
	caught(_metadata, E, &b, PG(b.addr, 9) + 1, 9, 0);
	free_write(_metadata, E, &b, PG(b.addr, 8) + 1, 8);
	free_write(_metadata, E, &b, PG(b.addr, 11) + 1, 11);
	/* the source slots are holes, unprotected */
	FREE_WRITE(E, PG(MAP, 1), 1);
	FREE_WRITE(E, PG(MAP, 2), 2);
	/* by address, back: the protection comes along */
	ret = raw_move_addr(E->ctx, PG(MAP, 20), PG(b.addr, 10), ps, &res);
	EXPECT_DONE(ret, res, ps);
	EXPECT_PAGES(MAP, 20, 1, 902);
	CAUGHT(E, PG(MAP, 20) + 5, 20);
	free_write(_metadata, E, &b, PG(b.addr, 10) + 1, 10);
	uffdx_region_unmap(&b);
}

TEST_F(wp, move_into_protected_hole_eexist_other_mode_einval)
{
	struct uffdx_region_map b, plain, as;
	int64_t res = 0;
	int ret;

	SKIP_IF_NO_MOVE();
	ASSERT_EQ(0, uffdx_region_map(E->ctx, 32 * ps, UFFDX_REGION_CREATE_WP, &b));
	ASSERT_EQ(0, uffdx_region_map(E->ctx, 32 * ps, 0, &plain));
	FILL(E, 30, 2, 910);
	/* a protected hole counts as populated */
	ASSERT_EQ(0, wp_op(E->ctx, b.id, 20 * ps, ps, UFFDX_WP_PROTECT));
	ret = raw_move(E->ctx, b.id, 20 * ps, E->r.id, 30 * ps, ps, 0, &res);
	EXPECT_ERR(ret, res, EEXIST, -EEXIST);
	ret = raw_move_addr(E->ctx, PG(b.addr, 20), PG(MAP, 30), ps, &res);
	EXPECT_ERR(ret, res, EEXIST, -EEXIST);
	EXPECT_RESIDENT(b.fd, 0);
	caught(_metadata, E, &b, PG(b.addr, 20) + 1, 20, 0);

	/* protected state into a region of another mode */
	PROTECT(E, 31, 1);
	ret = raw_move(E->ctx, plain.id, 0, E->r.id, 31 * ps, ps, 0, &res);
	EXPECT_ERR(ret, res, EINVAL, -EINVAL);
	ret = raw_move_addr(E->ctx, plain.addr, PG(MAP, 31), ps, &res);
	EXPECT_ERR(ret, res, EINVAL, -EINVAL);
	if (supported() & UFFDX_FEATURE_WP_ASYNC) {
		ASSERT_EQ(0, uffdx_region_map(E->ctx, 32 * ps, UFFDX_REGION_CREATE_WP_ASYNC, &as));
		ret = raw_move(E->ctx, as.id, 0, E->r.id, 31 * ps, ps, 0, &res);
		EXPECT_ERR(ret, res, EINVAL, -EINVAL);
		EXPECT_RESIDENT(as.fd, 0);
		uffdx_region_unmap(&as);
	}
	EXPECT_RESIDENT(plain.fd, 0);
	EXPECT_PAGES(MAP, 31, 1, 911);
	CAUGHT(E, PG(MAP, 31) + 1, 31);

	/* no state, no objection: either way */
	ret = raw_move(E->ctx, plain.id, ps, E->r.id, 30 * ps, ps, 0, &res);
	EXPECT_DONE(ret, res, ps);
	ret = raw_move(E->ctx, E->r.id, 40 * ps, plain.id, ps, ps, 0, &res);
	EXPECT_DONE(ret, res, ps);
	EXPECT_PAGES(MAP, 40, 1, 910);
	FREE_WRITE(E, PG(MAP, 40), 40);

	/* a stop in the middle: the clean pages before the protected one move */
	FILL(E, 44, 4, 920);
	PROTECT(E, 46, 1);
	ret = raw_move(E->ctx, plain.id, 8 * ps, E->r.id, 44 * ps, 4 * ps, 0, &res);
	EXPECT_ERR(ret, res, EAGAIN, 2 * ps);
	EXPECT_PAGES(plain.addr, 8, 2, 920);
	EXPECT_PAGES(MAP, 46, 2, 922);
	CAUGHT(E, PG(MAP, 46) + 1, 46);
	uffdx_region_unmap(&plain);
	uffdx_region_unmap(&b);
}

TEST_F(wpa, move_carries_the_written_state)
{
	struct uffdx_region_map d, plain, sy;
	int64_t res = 0;
	int ret;

	SKIP_IF_NO_MOVE();
	ASSERT_EQ(0, uffdx_region_map(E->ctx, 32 * ps, UFFDX_REGION_CREATE_WP_ASYNC, &d));
	ASSERT_EQ(0, uffdx_region_map(E->ctx, 32 * ps, 0, &plain));
	FILL(E, 0, 4, 930);
	FILL(E, 20, 2, 940);	/* before any protection: not written */
	PROTECT(E, 0, 4);
	WRITE_PAGES(MAP, 1);	/* written, so unprotected */
	ret = raw_move(E->ctx, d.id, 10 * ps, E->r.id, 0, 4 * ps, 0, &res);
	EXPECT_DONE(ret, res, 4 * ps);
	EXPECT_SCAN(E, UFFDX_SCAN_REARM, NONE);
	EXPECT_SCAN_R(E->ctx, &d, 0, 11);
	/* and protection: 10, 12, 13 are still protected */
	WRITE_PAGES(d.addr, 12);
	EXPECT_SCAN_R(E->ctx, &d, UFFDX_SCAN_REARM, 11, 12);
	/* the source slots: unprotected holes */
	WRITE_PAGES(MAP, 0, 2);
	EXPECT_SCAN(E, UFFDX_SCAN_REARM, NONE);

	/* written state (unprotected) into another mode: EINVAL */
	PROTECT(E, 20, 2);
	WRITE_PAGES(MAP, 20);
	ret = raw_move(E->ctx, plain.id, 0, E->r.id, 20 * ps, ps, 0, &res);
	EXPECT_ERR(ret, res, EINVAL, -EINVAL);
	/* protected, not written: EINVAL too */
	ret = raw_move(E->ctx, plain.id, 0, E->r.id, 21 * ps, ps, 0, &res);
	EXPECT_ERR(ret, res, EINVAL, -EINVAL);
	if (supported() & UFFDX_FEATURE_WP) {
		ASSERT_EQ(0, uffdx_region_map(E->ctx, 32 * ps, UFFDX_REGION_CREATE_WP, &sy));
		ret = raw_move(E->ctx, sy.id, 0, E->r.id, 20 * ps, 2 * ps, 0, &res);
		EXPECT_ERR(ret, res, EINVAL, -EINVAL);
		EXPECT_RESIDENT(sy.fd, 0);
		uffdx_region_unmap(&sy);
	}
	EXPECT_RESIDENT(plain.fd, 0);
	/* nothing changed */
	EXPECT_SCAN(E, UFFDX_SCAN_REARM, 20);
	WRITE_PAGES(MAP, 21);
	EXPECT_SCAN(E, UFFDX_SCAN_REARM, 21);
	uffdx_region_unmap(&plain);
	uffdx_region_unmap(&d);
}

/* ---- 10. RESOLVE with _UFFDX_WRITEPROTECT ----------------------------------------------------------- */

static struct uffdx_resolution wp_res(uint64_t id, uint64_t off, uint64_t len, uint32_t mode)
{
	struct uffdx_resolution r;

	memset(&r, 0, sizeof(r));
	r.op = _UFFDX_WRITEPROTECT;
	r.mode = mode;
	r.region_id = id;
	r.offset = off;
	r.len = len;
	r.result = SENTINEL;
	return r;
}

static int rsv(int ctx, struct uffdx_resolution *res, unsigned int nr, struct uffdx_event *ev,
	       unsigned int max, int64_t timeout_ns, uint32_t flags, struct uffdx_resolve *out)
{
	struct uffdx_resolve rs;
	int ret, err;

	memset(&rs, 0, sizeof(rs));
	rs.size = sizeof(rs);
	rs.flags = flags;
	rs.resolutions = (uintptr_t)res;
	rs.nr_resolutions = nr;
	rs.resolution_size = sizeof(struct uffdx_resolution);
	rs.events = (uintptr_t)ev;
	rs.max_events = max;
	rs.timeout_ns = timeout_ns;
	rs.nr_done = 0xa5a5a5a5u;
	rs.nr_events = 0xa5a5a5a5u;
	ret = ioctl(ctx, UFFDX_IOC_RESOLVE, &rs);
	err = errno;
	if (out)
		*out = rs;
	errno = err;
	return ret;
}

TEST_F(wp, resolve_unprotects_and_waits_for_the_next_event)
{
	struct uffdx_resolution res[2];
	struct uffdx_resolve out;
	struct uffdx_event ev[4];
	struct accessor *a, *b, *x, *y, *c;
	size_t px, py;

	FILL(E, 0, 4, 950);
	PROTECT(E, 0, 4);
	a = writer(_metadata, E, PG(MAP, 1) + 1, 0x91, 0);
	b = writer(_metadata, E, PG(MAP, 2) + 2, 0x92, 0);
	ASSERT_EQ(1, wait_event(E->ctx, &ev[0], WAIT_MS));
	ASSERT_TRUE(ev[0].offset == ps || ev[0].offset == 2 * ps);
	px = ev[0].offset / ps;
	py = px == 1 ? 2 : 1;
	x = px == 1 ? a : b;
	y = px == 1 ? b : a;
	check_event(_metadata, &ev[0], PG(MAP, px), E->r.id, px * ps, PF_WPW, getpid(), x->tid);
	/* unprotect the first, and get the second's event, in one call */
	res[0] = wp_res(E->r.id, px * ps, ps, 0);
	memset(ev, 0xcc, sizeof(ev));
	ASSERT_EQ(0, rsv(E->ctx, res, 1, ev, 4, WAIT_NS, 0, &out)) TH_LOG("%s", strerror(errno));
	EXPECT_EQ(1, out.nr_done);
	EXPECT_EQ((int64_t)ps, res[0].result);
	ASSERT_EQ(1, out.nr_events);
	check_event(_metadata, &ev[0], PG(MAP, py), E->r.id, py * ps, PF_WPW, getpid(), y->tid);
	ASSERT_EQ(0, acc_wait(x, WAIT_MS)) TH_LOG("the resolution did not wake the writer");
	EXPECT_EQ(0, x->sig);
	EXPECT_TRUE(acc_blocked(y, QUIET_MS));

	/* PROTECT and unprotect as resolutions, no wait */
	res[0] = wp_res(E->r.id, 0, ps, UFFDX_WP_PROTECT);
	res[1] = wp_res(E->r.id, py * ps, ps, 0);
	ASSERT_EQ(0, rsv(E->ctx, res, 2, ev, 4, 0, UFFDX_RESOLVE_NOWAIT, &out));
	EXPECT_EQ(2, out.nr_done);
	EXPECT_EQ(0, out.nr_events);
	EXPECT_EQ((int64_t)ps, res[0].result);
	EXPECT_EQ((int64_t)ps, res[1].result);
	ASSERT_EQ(0, acc_wait(y, WAIT_MS));
	EXPECT_EQ(0x91, PG(MAP, 1)[1]);
	EXPECT_EQ(0x92, PG(MAP, 2)[2]);
	CAUGHT(E, PG(MAP, 0) + 3, 0);

	/* DONTWAKE as a resolution, then a WAKE resolution */
	c = writer(_metadata, E, PG(MAP, 3) + 3, 0x93, 0);
	expect_event(_metadata, E->ctx, PG(MAP, 3), E->r.id, 3 * ps, PF_WPW, getpid(), c->tid);
	res[0] = wp_res(E->r.id, 3 * ps, ps, UFFDX_WP_DONTWAKE);
	ASSERT_EQ(0, rsv(E->ctx, res, 1, ev, 4, 0, UFFDX_RESOLVE_NOWAIT, &out));
	EXPECT_TRUE(acc_blocked(c, QUIET_MS)) TH_LOG("a DONTWAKE resolution woke the writer");
	memset(&res[0], 0, sizeof(res[0]));
	res[0].op = _UFFDX_WAKE;
	res[0].region_id = E->r.id;
	res[0].offset = 3 * ps;
	res[0].len = ps;
	ASSERT_EQ(0, rsv(E->ctx, res, 1, ev, 4, 0, UFFDX_RESOLVE_NOWAIT, &out));
	ASSERT_EQ(0, acc_wait(c, WAIT_MS));
	EXPECT_EQ(0x93, PG(MAP, 3)[3]);

	/* malformed: the errors of WRITEPROTECT itself, in "result" */
	{
		const struct {
			const char *what;
			uint64_t id_xor, off, len;
			uint32_t mode;
			int src;
		} bad[] = {
			{ "PROTECT | DONTWAKE", 0, 0, ps, UFFDX_WP_PROTECT | UFFDX_WP_DONTWAKE, 0 },
			{ "mode 0x4", 0, 0, ps, 0x4, 0 },
			{ "unaligned offset", 0, 1, ps, UFFDX_WP_PROTECT, 0 },
			{ "len 0", 0, 0, 0, UFFDX_WP_PROTECT, 0 },
			{ "past the end", 0, (NPAGES - 1) * ps, 2 * ps, UFFDX_WP_PROTECT, 0 },
			{ "with src", 0, 0, ps, UFFDX_WP_PROTECT, 1 },
			{ "unknown region", 0x5a5a0000ULL, 0, ps, UFFDX_WP_PROTECT, 0 },
		};
		unsigned int i;

		for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			uint64_t id = E->r.id ^ bad[i].id_xor;
			struct uffdx_range r;
			int want;

			wp_init(&r, id, bad[i].off, bad[i].len, bad[i].mode);
			r.src = bad[i].src ? (uintptr_t)E->buf : 0;
			EXPECT_EQ(-1, ioctl(E->ctx, UFFDX_IOC_WRITEPROTECT, &r))
				TH_LOG("%s: ioctl accepted", bad[i].what);
			want = errno;
			res[0] = wp_res(id, bad[i].off, bad[i].len, bad[i].mode);
			res[0].src = r.src;
			EXPECT_EQ(-1, rsv(E->ctx, res, 1, ev, 4, 0, UFFDX_RESOLVE_NOWAIT, &out))
				TH_LOG("%s: accepted", bad[i].what);
			EXPECT_EQ(want, errno) TH_LOG("%s: %s, its ioctl %s", bad[i].what,
						       strerror(errno), strerror(want));
			EXPECT_EQ(0, out.nr_done);
			EXPECT_EQ(-want, res[0].result) TH_LOG("%s", bad[i].what);
		}
	}
	FREE_WRITE(E, PG(MAP, 1), 1);
	EXPECT_EQ(0, event_arrives(E->ctx, 0));
}

TEST_HARNESS_MAIN
