// SPDX-License-Identifier: GPL-2.0
/*
 * uffdx under injected failures (issue 12): allocation failures (failslab,
 * fail_page_alloc) and user-copy failures (fail_usercopy) injected into
 * one call at a time, on a kernel with CONFIG_FAULT_INJECTION (the debug
 * kernel of tests/vm).
 *
 * Two techniques:
 *
 *  - deterministic, as syzkaller does it: write N to
 *    /proc/thread-self/fail-nth just before the call, so that the N-th
 *    fault-injection site this thread reaches fails; read it back after
 *    the call (0: the failure was injected); N = 1, 2, ... until the call
 *    no longer reaches an N-th site.  Once with the sites restricted to
 *    allocations and copies made from uffdx's own text (the stack-trace
 *    filter, require-start/require-end), once unrestricted;
 *  - a probability sweep: /proc/thread-self/make-it-fail around the call,
 *    each attribute's probability and interval swept over a few values,
 *    while the scenarios run round after round.
 *
 * Every scenario builds its state without injection, makes one injected
 * call, and checks without injection that:
 *
 *  - the call succeeded, or failed with an errno its man page documents
 *    (userlib/man/<function>.3, ERRORS; open(2), mmap(2), close(2) for
 *    those) and that a valid call can get from a failed allocation or
 *    copy (ENOMEM, EFAULT, EAGAIN for a partial range; EMFILE/ENFILE for
 *    a new file), and never failed when nothing was injected;
 *  - what it reports (result, nr_done, moved, ...) is what happened;
 *  - the data already in the regions is intact, nothing was lost or
 *    duplicated (a moved page is in exactly one of its two slots);
 *  - after closing everything, the context's charge and region count are
 *    zero, no fd is left over and the module's reference count is back to
 *    zero.
 *
 * After the round: the user's budgets (pages, regions, contexts) are all
 * free again, and the module unloads (then it is loaded again).
 *
 * Output: TAP, one line per scenario and pass, then exactly one line
 *
 *	fault-injection: <runs> runs, <failures> failures (<kernel>)
 *
 * where runs counts the calls made with injection armed.  Exit status 0,
 * 1 if anything failed, 4 (KSFT_SKIP) without fault injection.
 *
 *	fault_inject [-s SECONDS] [-n MAX_N]
 *
 * -s: the stress round (make stress passes its length): every N of every
 * scenario for up to 300 s each, and a sweep of -s seconds over ten
 * probabilities and intervals.  Without it (make check): up to 4 s per
 * scenario with the sites restricted to uffdx's text and 3 s
 * unrestricted (8 s for region_create's 40 sites), every 16th N of
 * fork's (its sites are the kernel's), and a 5 s sweep over three.
 * -n: the largest N tried (default 400).
 * Needs root and debugfs at /sys/kernel/debug.
 */
#include "helpers.h"

#include <elf.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/rseq.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#define DBGFS		"/sys/kernel/debug"
#define FAIL_NTH	"/proc/thread-self/fail-nth"
#define MAKE_IT_FAIL	"/proc/thread-self/make-it-fail"
#define REFCNT		"/sys/module/uffdx/refcnt"
#define P_CTX_PAGES	UFFDX_PARAM_DIR "/max_pages_per_context"
#define P_USER_PAGES	UFFDX_PARAM_DIR "/max_pages_per_user"
#define P_USER_CTXS	UFFDX_PARAM_DIR "/max_contexts_per_user"
#define P_USER_REGIONS	UFFDX_PARAM_DIR "/max_regions_per_user"

static const char *const attr_dirs[] = {
	DBGFS "/failslab", DBGFS "/fail_page_alloc", DBGFS "/fail_usercopy",
};
#define NATTRS	3

/* Pages per region; witness pages [0, WIT) hold data before every call. */
#define NP	256
#define WIT	4
/*
 * The injected calls work on [T, T + TN): far enough from the witnesses
 * that the page store (an xarray, 64 slots a node) needs new nodes for
 * them, so that its allocations can fail too.
 */
#define T	128
#define TN	4
/* Pages of a run's scratch buffer. */
#define BUFP	8

/* A result the module never writes: "not written". */
#define UNSET	0x7a7a7a7aLL

enum fi_mode { FI_NTH, FI_PROB };

struct fi {
	enum fi_mode mode;
	unsigned int nth;
	const char *pass;	/* which pass, for messages */
	const char *scen;
	int no_usercopy;	/* probability mode: no user-copy failures */
	int armed;		/* the injected call ran */
	int fired;		/* a failure was (or may have been) injected */
	int errors;		/* checks that failed in this run */
};

static int nth_fd = -1, mif_fd = -1, times_fd[NATTRS] = { -1, -1, -1 };
static unsigned long long total_runs, total_failures;
static long long prob_times;
static uint64_t features;	/* what the module supports */
static int over_time;
static unsigned int sweep_prob;	/* the probability the sweep has set */

static int attr_write(int i, const char *name, const char *val);

/* ---- errnos ----------------------------------------------------------------- */

/* What the man pages' ERRORS sections list, per call. */
static const int e_open[] = {		/* uffdx_open.3, and open(2) */
	EINVAL, ENOENT, ENODEV, ENXIO, EACCES, EMFILE, ENFILE, ENOMEM, EFAULT, 0 };
static const int e_api[] = {		/* uffdx_api.3 */
	EINVAL, EPERM, ENOTTY, E2BIG, EFAULT, 0 };
static const int e_create[] = {		/* uffdx_region_create.3 */
	EINVAL, ENOMEM, ENOSPC, EMFILE, E2BIG, EFAULT, ENOTTY, 0 };
static const int e_mmap[] = {		/* mmap(2) */
	EACCES, EAGAIN, EBADF, EEXIST, EINVAL, ENFILE, ENODEV, ENOMEM,
	EOVERFLOW, EPERM, ETXTBSY, 0 };
static const int e_info[] = {		/* uffdx_region_info.3 */
	ENOTTY, EBADF, EINVAL, E2BIG, EFAULT, 0 };
static const int e_arm[] = {		/* uffdx_arm.3 */
	EINVAL, ENOENT, ENOMEM, E2BIG, EFAULT, ENOTTY, 0 };
static const int e_fill[] = {		/* uffdx_copy.3 (zero, poison) */
	EEXIST, EAGAIN, EINVAL, ENOENT, ENOMEM, EFAULT, E2BIG, ENOTTY, 0 };
static const int e_discard[] = {	/* uffdx_discard.3 */
	EAGAIN, EINVAL, ENOENT, E2BIG, EFAULT, ENOTTY, 0 };
static const int e_move[] = {		/* uffdx_move.3 (move_addr) */
	EAGAIN, EBADF, EBUSY, E2BIG, EEXIST, EFAULT, EINTR, EINVAL, ENOENT,
	ENOMEM, ENOTTY, 0 };
static const int e_move_vec[] = {	/* uffdx_move_vec.3 */
	EAGAIN, EFAULT, EINVAL, ENOMEM, E2BIG, ENOTTY, 0 };
static const int e_resolve[] = {	/* uffdx_resolve_wait.3 */
	EAGAIN, E2BIG, EFAULT, EINTR, EINVAL, ENOTTY,
	EBADF, EBUSY, EEXIST, ENOENT, ENOMEM, 0 };
static const int e_read[] = {		/* uffdx_read_events.3 */
	EAGAIN, EINTR, EINVAL, EFAULT, 0 };	/* EFAULT: was missing there */
static const int e_wp[] = {		/* uffdx_writeprotect.3 (_addr) */
	EAGAIN, EBUSY, EINTR, EINVAL, ENOENT, ENOMEM, EPERM, E2BIG, EFAULT,
	ENOTTY, 0 };
static const int e_scan[] = {		/* uffdx_scan.3 */
	EINVAL, ENOENT, ENOMEM, EINTR, EFAULT, E2BIG, ENOTTY, 0 };
static const int e_close[] = { 0 };	/* close() of our fds never fails */
static const int e_fork[] = {		/* fork(2) */
	EAGAIN, ENOMEM, 0 };
static const int e_munmap[] = {		/* munmap(2) */
	EINVAL, ENOMEM, 0 };
static const int e_mremap[] = {		/* mremap(2) */
	EAGAIN, EFAULT, EINVAL, ENOMEM, 0 };

/*
 * What a valid call may get from an injected failure: an allocation
 * (ENOMEM; EMFILE/ENFILE where a file or fd is made), a user copy
 * (EFAULT), and a range that stopped part way (EAGAIN).
 */
static const int e_injectable[] = { ENOMEM, EFAULT, EAGAIN, EMFILE, ENFILE, 0 };

static int in_set(const int *set, int e)
{
	for (; *set; set++)
		if (*set == e)
			return 1;
	return 0;
}

static const char *ename(int e)
{
	const char *s = strerrorname_np(e);

	return s ? s : "E?";
}

/* ---- reporting ----------------------------------------------------------------- */

static void fi_fail(struct fi *fi, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fi_fail(struct fi *fi, const char *fmt, ...)
{
	va_list ap;

	fi->errors++;
	total_failures++;
	if (fi->errors > 4)
		return;
	if (fi->mode == FI_NTH)
		printf("# FAIL %s, %s, fail-nth %u: ", fi->scen, fi->pass, fi->nth);
	else
		printf("# FAIL %s, %s: ", fi->scen, fi->pass);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
}

#define CHECK(fi, cond, ...) do {					\
	if (!(cond))							\
		fi_fail(fi, __VA_ARGS__);				\
} while (0)

/* ---- injection ----------------------------------------------------------------- */

static long long times_sum(void)
{
	long long sum = 0;
	char buf[32];
	ssize_t n;
	int i;

	for (i = 0; i < NATTRS; i++) {
		n = pread(times_fd[i], buf, sizeof(buf) - 1, 0);
		if (n <= 0)
			return -1;
		buf[n] = 0;
		sum += strtoll(buf, NULL, 10);
	}
	return sum;
}

/* Arm injection for the next call of this thread. */
static void fi_arm(struct fi *fi)
{
	char buf[16];
	int len;

	fi->armed = 1;
	fi->fired = 0;
	total_runs++;
	if (fi->mode == FI_NTH) {
		len = snprintf(buf, sizeof(buf), "%u", fi->nth);
		if (pwrite(nth_fd, buf, (size_t)len, 0) != len)
			fi_fail(fi, "cannot arm " FAIL_NTH ": %s", strerror(errno));
	} else {
		if (fi->no_usercopy)
			attr_write(2, "probability", "0");
		prob_times = times_sum();
		if (pwrite(mif_fd, "1", 1, 0) != 1)
			fi_fail(fi, "cannot arm " MAKE_IT_FAIL ": %s", strerror(errno));
	}
}

/*
 * Disarm, and find out whether a failure was injected.  fail-nth reads 0
 * once its site failed; the read's own copy to user space is a site too,
 * so a read that fails with EFAULT means the call did not get there.
 * make-it-fail: the attributes' "times" count down once per failure; the
 * write that clears the flag may fail itself (EFAULT) and is retried.
 */
static void fi_disarm(struct fi *fi)
{
	char buf[16];
	ssize_t n;
	int tries;
	long long after;

	if (fi->mode == FI_NTH) {
		n = pread(nth_fd, buf, sizeof(buf) - 1, 0);
		if (n < 0 && errno != EFAULT)
			fi_fail(fi, "cannot read " FAIL_NTH ": %s", strerror(errno));
		fi->fired = n == 2 && buf[0] == '0';
		/* the reset's own copy from user space may be the site: then again */
		if (pwrite(nth_fd, "0", 1, 0) != 1 && pwrite(nth_fd, "0", 1, 0) != 1)
			fi_fail(fi, "cannot reset " FAIL_NTH ": %s", strerror(errno));
		return;
	}
	for (tries = 0; tries < 1000; tries++)
		if (pwrite(mif_fd, "0", 1, 0) == 1)
			break;
	if (tries == 1000) {
		fi_fail(fi, "cannot clear " MAKE_IT_FAIL);
		exit(1);
	}
	after = times_sum();
	fi->fired = tries || after < 0 || prob_times < 0 || after != prob_times;
	if (fi->no_usercopy) {
		snprintf(buf, sizeof(buf), "%u", sweep_prob);
		attr_write(2, "probability", buf);
	}
}

/* One call with injection armed around it; errno is the call's. */
#define INJECT(fi, expr) ({						\
	long __r;							\
	int __e;							\
	fi_arm(fi);							\
	__r = (long)(expr);						\
	__e = errno;							\
	fi_disarm(fi);							\
	errno = __e;							\
	__r;								\
})

/*
 * The injected call's outcome: success, or a documented errno that an
 * injected failure can cause; and never a failure without one.
 */
static void check_outcome(struct fi *fi, const char *call, int failed, int err,
			  const int *doc)
{
	if (!failed)
		return;
	if (!in_set(doc, err))
		fi_fail(fi, "%s failed with %s, which its man page does not document",
			call, ename(err));
	else if (!in_set(e_injectable, err))
		fi_fail(fi, "%s of a valid call failed with %s: an injected failure should give ENOMEM, EFAULT or EAGAIN",
			call, ename(err));
	if (!fi->fired)
		fi_fail(fi, "%s failed with %s, but no failure was injected", call, ename(err));
}

/* The call's result field: all of len, part on EAGAIN, -errno, or unwritten. */
static unsigned int range_done(struct fi *fi, const char *call, int failed, int err,
			       int64_t res, unsigned int n)
{
	if (!failed) {
		CHECK(fi, res == (int64_t)(n * ps), "%s succeeded, result %lld, expected %zu",
		      call, (long long)res, n * ps);
		return n;
	}
	if (err == EAGAIN) {
		CHECK(fi, res > 0 && res < (int64_t)(n * ps) && res % (int64_t)ps == 0,
		      "%s: EAGAIN with result %lld of %zu", call, (long long)res, n * ps);
		return res > 0 && res % (int64_t)ps == 0 && res < (int64_t)(n * ps) ?
		       (unsigned int)(res / (int64_t)ps) : 0;
	}
	CHECK(fi, res == UNSET || res == -err,
	      "%s failed with %s but its result is %lld", call, ename(err), (long long)res);
	return 0;
}

/* ---- a run's fixture ------------------------------------------------------------ */

struct rg {
	int owner;		/* the context fd */
	int fd;
	uint64_t id;
	uint8_t *map;
};

struct run {
	struct fi *fi;
	int ctx, ctx2;
	struct rg r[2];
	int nr;
	int fds0;
	uint8_t *buf;		/* BUFP pages: COPY sources, scratch */
};

static uint64_t seed(int tag, unsigned int k)
{
	return (uint64_t)tag << 16 | k;
}

static uint64_t ctx_features(void)
{
	return features & (UFFDX_FEATURE_REGIONS | UFFDX_FEATURE_MISSING |
			   UFFDX_FEATURE_POISON | UFFDX_FEATURE_MOVE |
			   UFFDX_FEATURE_WP | UFFDX_FEATURE_WP_ASYNC);
}

static long long fdinfo_val(int fd, const char *key)
{
	long long v = -1;

	if (fdinfo_ll(fd, key, &v))
		return -1;
	return v;
}

static long long charged(int ctx)
{
	return fdinfo_val(ctx, "uffdx-charged-pages");
}

static long long resident(struct rg *r)
{
	struct uffdx_region_info info;

	if (uffdx_region_info(r->fd, &info))
		return -1;
	return (long long)(info.resident / ps);
}

static long long refcnt(void)
{
	long long v = -1;

	if (read_ll_file(REFCNT, &v))
		return -1;
	return v;
}

/* A region of NP pages of ctx, mapped; 0 or -1 (reported). */
static int rg_new(struct run *ru, int ctx, uint32_t flags)
{
	struct rg *r = &ru->r[ru->nr];

	r->owner = ctx;
	r->map = NULL;
	r->fd = uffdx_region_create(ctx, NP * ps, flags, &r->id);
	if (r->fd < 0) {
		fi_fail(ru->fi, "setup: region create: %s", strerror(-r->fd));
		return -1;
	}
	ru->nr++;
	r->map = mmap(NULL, NP * ps, PROT_READ | PROT_WRITE, MAP_SHARED, r->fd, 0);
	if (r->map == MAP_FAILED) {
		r->map = NULL;
		fi_fail(ru->fi, "setup: mmap: %s", strerror(errno));
		return -1;
	}
	return 0;
}

/* COPY pages [first, first + n) of r with tag's patterns (uninjected). */
static int put_pages(struct run *ru, struct rg *r, unsigned int first, unsigned int n, int tag)
{
	int64_t res = 0;
	unsigned int i;
	int ret;

	for (i = 0; i < n; i++)
		fill_pattern(ru->buf + i * ps, ps, seed(tag, first + i));
	ret = uffdx_copy(r->owner, r->id, first * ps, ru->buf, n * ps, 0, &res);
	if (ret) {
		fi_fail(ru->fi, "setup: COPY of %u pages at %u: %s", n, first, strerror(-ret));
		return -1;
	}
	return 0;
}

/* Page k of r: 1 if it holds tag's pattern of slot ks, 0 if zero, -1 else. */
static int page_state(struct rg *r, unsigned int k, int tag, unsigned int ks)
{
	const uint8_t *p = r->map + k * ps;

	if (check_pattern(p, ps, seed(tag, ks)) == -1)
		return 1;
	return is_zero(p, ps) ? 0 : -1;
}

static void expect_page(struct run *ru, struct rg *r, unsigned int k, int tag,
			unsigned int ks, int want, const char *what)
{
	int st = page_state(r, k, tag, ks);

	CHECK(ru->fi, st == want, "%s: page %u of region %llu is %s, expected %s", what, k,
	      (unsigned long long)r->id, st == 1 ? "the data" : st == 0 ? "zero" : "garbage",
	      want ? "the data" : "a hole");
}

/* The witness pages of every region, tag 1 + region index. */
static int put_witness(struct run *ru)
{
	int i;

	for (i = 0; i < ru->nr; i++)
		if (put_pages(ru, &ru->r[i], 0, WIT, 1 + i))
			return -1;
	return 0;
}

static void check_witness(struct run *ru)
{
	unsigned int k;
	int i;

	for (i = 0; i < ru->nr; i++)
		for (k = 0; k < WIT; k++)
			expect_page(ru, &ru->r[i], k, 1 + i, k, 1, "witness");
}

static int run_begin(struct run *ru, struct fi *fi, int nonblock)
{
	memset(ru, 0, sizeof(*ru));
	ru->fi = fi;
	ru->ctx = ru->ctx2 = -1;
	fi->armed = fi->fired = 0;
	ru->fds0 = count_open_fds();
	ru->buf = malloc(BUFP * ps);
	if (!ru->buf) {
		fi_fail(fi, "setup: malloc");
		return -1;
	}
	memset(ru->buf, 0, BUFP * ps);
	ru->ctx = ctx_open(ctx_features(), nonblock ? O_NONBLOCK : 0);
	if (ru->ctx < 0) {
		fi_fail(fi, "setup: context: %s", strerror(-ru->ctx));
		return -1;
	}
	return 0;
}

/* A context's charge and regions once its regions are gone: zero. */
static void ctx_done(struct run *ru, int *ctx)
{
	long long c, n;

	if (*ctx < 0)
		return;
	c = charged(*ctx);
	n = fdinfo_val(*ctx, "uffdx-regions");
	CHECK(ru->fi, c == 0, "%lld pages still charged after every region was freed", c);
	CHECK(ru->fi, n == 0, "%lld regions still counted after every region was freed", n);
	close(*ctx);
	*ctx = -1;
}

static void run_end(struct run *ru)
{
	int i, fds;
	long long rc;

	for (i = 0; i < ru->nr; i++) {
		if (ru->r[i].map)
			munmap(ru->r[i].map, NP * ps);
		if (ru->r[i].fd >= 0)
			close(ru->r[i].fd);
	}
	ctx_done(ru, &ru->ctx);
	ctx_done(ru, &ru->ctx2);
	free(ru->buf);
	fds = count_open_fds();
	CHECK(ru->fi, fds == ru->fds0, "%d fds open after the run, %d before", fds, ru->fds0);
	rc = refcnt();
	CHECK(ru->fi, rc <= 0, "module reference count %lld after the run", rc);
	if (!ru->fi->armed)
		fi_fail(ru->fi, "the injected call was never made");
}

/* ---- faulters and a handler ---------------------------------------------------- */

/* Start a reader of page k of r in a thread and wait for its event to be queued. */
static struct accessor *faulter(struct run *ru, struct rg *r, unsigned int k, int write,
				long long pending)
{
	struct accessor *a = acc_new(r->map + k * ps, write, 0x5a);
	uint64_t end = now_ns() + (uint64_t)WAIT_MS * 1000000ull;

	if (!a || acc_start_thread(a)) {
		fi_fail(ru->fi, "setup: faulter thread");
		acc_free(a);
		return NULL;
	}
	while (fdinfo_val(ru->ctx, "uffdx-events-pending") < pending) {
		if (now_ns() > end) {
			fi_fail(ru->fi, "setup: the faulter's event did not arrive");
			break;
		}
		usleep(200);
	}
	return a;
}

/* Wait for a faulter; it must end as expected (signal, first byte). */
static void faulter_done(struct run *ru, struct accessor *a, int sig, int first,
			 const char *what)
{
	if (!a)
		return;
	if (acc_wait(a, WAIT_MS)) {
		fi_fail(ru->fi, "%s: the faulter is still asleep", what);
		/* it sleeps on our region: release it before the next run */
		return;
	}
	CHECK(ru->fi, a->sig == sig, "%s: the faulter got signal %d, expected %d", what, a->sig, sig);
	if (!sig && first >= 0)
		CHECK(ru->fi, a->first == first, "%s: the faulter read 0x%02x, expected 0x%02x",
		      what, a->first, first);
	acc_free(a);
}

/* First byte of tag's pattern for slot k. */
static int first_byte(int tag, unsigned int k)
{
	uint8_t b;

	fill_pattern(&b, 1, seed(tag, k));
	return b;
}

/* Read every pending event (non-blocking context); how many, offsets in *offs. */
static int drain(int ctx, uint64_t *offs, int max)
{
	struct uffdx_event ev[8];
	int n, i, got = 0;

	for (;;) {
		n = uffdx_read_events(ctx, ev, 8);
		if (n <= 0)
			return got;
		for (i = 0; i < n; i++, got++)
			if (got < max)
				offs[got] = ev[i].offset;
	}
}

struct handler {
	int ctx;
	uint64_t id;
	int tag;
	volatile int stop;
	volatile int served;
	pthread_t th;
};

/* Serves every fault of a region with COPY of tag's pattern (or WAKE). */
static void *handler_fn(void *p)
{
	struct handler *h = p;
	uint8_t *buf = malloc(ps);
	struct uffdx_event ev;
	int64_t res;

	if (!buf)
		return NULL;
	while (!h->stop) {
		if (wait_event(h->ctx, &ev, 10) != 1)
			continue;
		fill_pattern(buf, ps, seed(h->tag, (unsigned int)(ev.offset / ps)));
		if (uffdx_copy(h->ctx, h->id, ev.offset, buf, ps, 0, &res) == -EEXIST)
			uffdx_wake(h->ctx, h->id, ev.offset, ps);
		h->served++;
	}
	free(buf);
	return NULL;
}

/* ---- scenarios: the API ------------------------------------------------------- */

static void sc_open(struct fi *fi)
{
	int fds0 = count_open_fds(), fd, err, ret;

	fi->armed = 0;
	fd = (int)INJECT(fi, open(UFFDX_DEV, O_RDWR | O_CLOEXEC));
	err = errno;
	check_outcome(fi, "open", fd < 0, err, e_open);
	if (fd >= 0) {
		ret = uffdx_api(fd, ctx_features(), NULL);
		CHECK(fi, ret == 0, "the API on the context opened: %s", strerror(-ret));
		close(fd);
	}
	CHECK(fi, count_open_fds() == fds0, "an fd is left over");
	CHECK(fi, refcnt() <= 0, "module reference count %lld", refcnt());
}

static void sc_api(struct fi *fi)
{
	struct uffdx_api a;
	int fd, ret, err;

	fi->armed = 0;
	fd = open(UFFDX_DEV, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		fi_fail(fi, "setup: open: %s", strerror(errno));
		return;
	}
	memset(&a, 0, sizeof(a));
	a.size = sizeof(a);
	a.api = UFFDX_API_VERSION;
	a.features = ctx_features();
	ret = (int)INJECT(fi, ioctl(fd, UFFDX_IOC_API, &a));
	err = errno;
	check_outcome(fi, "UFFDX_IOC_API", ret < 0, err, e_api);
	if (!ret)
		CHECK(fi, a.features == features, "API reported features 0x%llx, expected 0x%llx",
		      (unsigned long long)a.features, (unsigned long long)features);
	/* a failed negotiation may be retried; a second one is EINVAL */
	if (ret < 0) {
		ret = uffdx_api(fd, ctx_features(), NULL);
		CHECK(fi, ret == 0, "retrying the API after %s: %s", ename(err), strerror(-ret));
	} else {
		ret = uffdx_api(fd, ctx_features(), NULL);
		CHECK(fi, ret == -EINVAL, "a second negotiation: %d", ret);
	}
	close(fd);
}

static void sc_region_create(struct fi *fi)
{
	struct uffdx_region_create rc;
	struct run ru;
	int ret, err, fds;

	if (run_begin(&ru, fi, 0))
		goto out;
	fds = count_open_fds();
	memset(&rc, 0, sizeof(rc));
	rc.size = sizeof(rc);
	rc.len = NP * ps;
	rc.fd = -1;
	ret = (int)INJECT(fi, ioctl(ru.ctx, UFFDX_IOC_REGION_CREATE, &rc));
	err = errno;
	check_outcome(fi, "UFFDX_IOC_REGION_CREATE", ret < 0, err, e_create);
	if (ret >= 0) {
		struct rg *r = &ru.r[ru.nr++];

		CHECK(fi, rc.fd >= 0, "created, but fd %d", rc.fd);
		CHECK(fi, (fcntl(rc.fd, F_GETFD) & FD_CLOEXEC) != 0, "region fd without FD_CLOEXEC");
		r->owner = ru.ctx;
		r->fd = rc.fd;
		r->id = rc.region_id;
		r->map = mmap(NULL, NP * ps, PROT_READ | PROT_WRITE, MAP_SHARED, r->fd, 0);
		if (r->map == MAP_FAILED) {
			r->map = NULL;
			fi_fail(fi, "mmap of the new region: %s", strerror(errno));
		} else if (!put_pages(&ru, r, 0, WIT, 1)) {
			check_witness(&ru);
		}
	} else {
		CHECK(fi, count_open_fds() == fds, "a failed create left an fd");
		CHECK(fi, fdinfo_val(ru.ctx, "uffdx-regions") == 0,
		      "a failed create left a region counted");
		CHECK(fi, charged(ru.ctx) == 0, "a failed create left a charge");
		/* and the context still creates regions */
		if (!rg_new(&ru, ru.ctx, 0) && !put_witness(&ru))
			check_witness(&ru);
	}
out:
	run_end(&ru);
}

static void sc_region_mmap(struct fi *fi)
{
	struct run ru;
	uint8_t *p;
	int err;

	if (run_begin(&ru, fi, 0) || rg_new(&ru, ru.ctx, 0) || put_witness(&ru))
		goto out;
	p = (uint8_t *)INJECT(fi, mmap(NULL, NP * ps, PROT_READ | PROT_WRITE, MAP_SHARED,
				       ru.r[0].fd, 0));
	err = errno;
	check_outcome(fi, "mmap", p == MAP_FAILED, err, e_mmap);
	if (p != MAP_FAILED) {
		unsigned int k;

		for (k = 0; k < WIT; k++)
			CHECK(fi, check_pattern(p + k * ps, ps, seed(1, k)) == -1,
			      "page %u through the new mapping", k);
		p[T * ps] = 0x77;
		CHECK(fi, ru.r[0].map[T * ps] == 0x77, "the two mappings differ");
		munmap(p, NP * ps);
	}
	check_witness(&ru);
out:
	run_end(&ru);
}

static void sc_region_info(struct fi *fi)
{
	struct uffdx_region_info info;
	struct run ru;
	int ret, err;

	if (run_begin(&ru, fi, 0) || rg_new(&ru, ru.ctx, 0) || put_witness(&ru))
		goto out;
	memset(&info, 0, sizeof(info));
	info.size = sizeof(info);
	ret = (int)INJECT(fi, ioctl(ru.r[0].fd, UFFDX_IOC_REGION_INFO, &info));
	err = errno;
	check_outcome(fi, "UFFDX_IOC_REGION_INFO", ret < 0, err, e_info);
	if (!ret)
		CHECK(fi, info.resident == WIT * ps && info.region_id == ru.r[0].id &&
		      info.len == NP * ps, "REGION_INFO: id %llu, len %llu, resident %llu",
		      (unsigned long long)info.region_id, (unsigned long long)info.len,
		      (unsigned long long)info.resident);
	check_witness(&ru);
out:
	run_end(&ru);
}

/* The context's last close, with a faulter asleep on one of its regions. */
static void sc_close_ctx(struct fi *fi)
{
	struct uffdx_region_info info;
	struct accessor *a = NULL;
	struct run ru;
	int ret, err;

	if (run_begin(&ru, fi, 1) || rg_new(&ru, ru.ctx, 0) || put_witness(&ru))
		goto out;
	if (uffdx_arm(ru.ctx, ru.r[0].id, T * ps, TN * ps, UFFDX_ARM_MISSING)) {
		fi_fail(fi, "setup: ARM");
		goto out;
	}
	a = faulter(&ru, &ru.r[0], T, 0, 1);
	if (!a)
		goto out;
	ret = (int)INJECT(fi, close(ru.ctx));
	err = errno;
	ru.ctx = -1;
	check_outcome(fi, "close", ret < 0, err, e_close);
	/* the context is released: its faulter gets SIGBUS */
	faulter_done(&ru, a, SIGBUS, -1, "after the context's close");
	a = NULL;
	ret = uffdx_region_info(ru.r[0].fd, &info);
	CHECK(fi, !ret && (info.flags & UFFDX_REGION_OWNER_GONE),
	      "REGION_INFO after the close: %d, flags 0x%x", ret, info.flags);
	check_witness(&ru);
out:
	if (a && ru.ctx >= 0) {
		close(ru.ctx);
		ru.ctx = -1;
		faulter_done(&ru, a, SIGBUS, -1, "cleanup");
	}
	run_end(&ru);
}

/* ---- mappings: fork, split, move ---------------------------------------------- */

/* fork(), the child exiting at once (it must not run INJECT's epilogue). */
static pid_t fork_exit_child(void)
{
	pid_t pid = fork();

	if (pid == 0)
		_exit(0);
	return pid;
}

/*
 * fork() of a process with region mappings (an armed one, and a
 * write-notify one if the module has WP): the copied or the half-copied
 * VMAs take and give back their region references; nothing leaks.
 */
static void sc_fork(struct fi *fi)
{
	struct run ru;
	pid_t pid;
	int err, status = -1;

	if (run_begin(&ru, fi, 1) || rg_new(&ru, ru.ctx, 0) ||
	    rg_new(&ru, ru.ctx, features & UFFDX_FEATURE_WP ? UFFDX_REGION_CREATE_WP : 0) ||
	    put_witness(&ru))
		goto out;
	if (uffdx_arm(ru.ctx, ru.r[0].id, T * ps, TN * ps, UFFDX_ARM_MISSING)) {
		fi_fail(fi, "setup: ARM");
		goto out;
	}
	check_witness(&ru);	/* mapped: PTEs to copy */
	fflush(stdout);
	pid = (pid_t)INJECT(fi, fork_exit_child());
	err = errno;
	check_outcome(fi, "fork", pid < 0, err, e_fork);
	if (pid > 0) {
		CHECK(fi, !wait_child(pid, &status, WAIT_MS) && WIFEXITED(status) &&
		      !WEXITSTATUS(status), "the child: status 0x%x", status);
	}
	check_witness(&ru);
out:
	run_end(&ru);
}

/* munmap() of one page in the middle of a region mapping: a VMA split. */
static void sc_munmap_split(struct fi *fi)
{
	struct run ru;
	uint8_t v = 1;
	int ret, err;

	if (run_begin(&ru, fi, 0) || rg_new(&ru, ru.ctx, 0) || put_witness(&ru) ||
	    put_pages(&ru, &ru.r[0], T, TN, 1))
		goto out;
	check_witness(&ru);
	ret = (int)INJECT(fi, munmap(ru.r[0].map + (T + 1) * ps, ps));
	err = errno;
	check_outcome(fi, "munmap", ret < 0, err, e_munmap);
	CHECK(fi, try_read(ru.r[0].map + (T + 1) * ps, &v) == (ret ? 0 : SIGSEGV),
	      "the page after munmap() returned %d", ret);
	expect_page(&ru, &ru.r[0], T, 1, T, 1, "beside the split");
	expect_page(&ru, &ru.r[0], T + 2, 1, T + 2, 1, "beside the split");
	CHECK(fi, resident(&ru.r[0]) == WIT + TN, "resident %lld", resident(&ru.r[0]));
	check_witness(&ru);
out:
	run_end(&ru);	/* unmaps the whole range, split or not */
}

/* mremap() of a whole region mapping to another address. */
static void sc_mremap(struct fi *fi)
{
	struct run ru;
	uint8_t *to, *p;
	int err;

	if (run_begin(&ru, fi, 0) || rg_new(&ru, ru.ctx, 0) || put_witness(&ru))
		goto out;
	check_witness(&ru);
	to = mmap(NULL, NP * ps, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (to == MAP_FAILED) {
		fi_fail(fi, "setup: mmap");
		goto out;
	}
	p = (uint8_t *)INJECT(fi, mremap(ru.r[0].map, NP * ps, NP * ps,
					 MREMAP_MAYMOVE | MREMAP_FIXED, to));
	err = errno;
	check_outcome(fi, "mremap", p == MAP_FAILED, err, e_mremap);
	if (p != MAP_FAILED) {
		CHECK(fi, p == to, "mremap moved to %p, not %p", (void *)p, (void *)to);
		ru.r[0].map = p;
	} else {
		munmap(to, NP * ps);
	}
	check_witness(&ru);
	ru.r[0].map[T * ps] = 1;
	CHECK(fi, resident(&ru.r[0]) == WIT + 1, "resident %lld", resident(&ru.r[0]));
out:
	run_end(&ru);
}

/* ---- fills, arming, discard ---------------------------------------------------- */

static void sc_arm(struct fi *fi)
{
	struct accessor *a;
	struct run ru;
	int64_t res;
	int ret, err, armed;
	long long c;

	if (run_begin(&ru, fi, 1) || rg_new(&ru, ru.ctx, 0) || put_witness(&ru))
		goto out;
	ret = (int)INJECT(fi, raw_range(ru.ctx, UFFDX_IOC_ARM, ru.r[0].id, T * ps, TN * ps,
					NULL, UFFDX_ARM_MISSING, NULL));
	err = errno;
	check_outcome(fi, "UFFDX_IOC_ARM", ret < 0, err, e_arm);
	armed = ret == 0;
	/* the bitmap is charged (a page) only if the arming happened */
	c = charged(ru.ctx);
	CHECK(fi, c == WIT + armed, "%lld pages charged, expected %d", c, WIT + armed);
	if (!armed) {
		ret = uffdx_arm(ru.ctx, ru.r[0].id, T * ps, TN * ps, UFFDX_ARM_MISSING);
		CHECK(fi, ret == 0, "ARM after the failed one: %s", strerror(-ret));
	}
	/* armed: a fault raises an event */
	a = faulter(&ru, &ru.r[0], T + 1, 0, 1);
	ret = uffdx_zero(ru.ctx, ru.r[0].id, (T + 1) * ps, ps, 0, &res);
	CHECK(fi, ret == 0, "ZERO for the faulter: %s", strerror(-ret));
	faulter_done(&ru, a, 0, 0, "armed fault");
	check_witness(&ru);
out:
	run_end(&ru);
}

enum fill_kind { F_COPY, F_ZERO, F_POISON };

static void do_fill(struct fi *fi, enum fill_kind kind)
{
	static const unsigned long nrs[] = { UFFDX_IOC_COPY, UFFDX_IOC_ZERO, UFFDX_IOC_POISON };
	static const char *const names[] = { "UFFDX_IOC_COPY", "UFFDX_IOC_ZERO", "UFFDX_IOC_POISON" };
	const unsigned long units = ps / 512;
	struct run ru;
	int64_t res = UNSET;
	unsigned int done, i;
	long long c, want;
	int ret, err;

	if (run_begin(&ru, fi, 0) || rg_new(&ru, ru.ctx, 0) || put_witness(&ru))
		goto out;
	for (i = 0; i < TN; i++)
		fill_pattern(ru.buf + i * ps, ps, seed(3, T + i));
	ret = (int)INJECT(fi, raw_range(ru.ctx, nrs[kind], ru.r[0].id, T * ps, TN * ps,
					kind == F_COPY ? ru.buf : NULL, 0, &res));
	err = errno;
	check_outcome(fi, names[kind], ret < 0, err, e_fill);
	done = range_done(fi, names[kind], ret < 0, err, res, TN);
	/* the charge: pages, or an eighth... of a page per poison entry */
	c = charged(ru.ctx);
	want = kind == F_POISON ? (long long)((WIT * units + done + units - 1) / units) :
	       WIT + done;
	CHECK(fi, c == want, "%s did %u pages: %lld pages charged, expected %lld",
	      names[kind], done, c, want);
	if (kind != F_POISON)
		CHECK(fi, resident(&ru.r[0]) == WIT + done, "resident %lld after %u pages filled",
		      resident(&ru.r[0]), done);
	for (i = 0; i < TN; i++) {
		uint8_t v = 0xff;

		switch (kind) {
		case F_COPY:
			expect_page(&ru, &ru.r[0], T + i, 3, T + i, i < done, names[kind]);
			break;
		case F_ZERO:
			expect_page(&ru, &ru.r[0], T + i, 3, T + i, 0, names[kind]);
			break;
		case F_POISON:
			ret = try_read(ru.r[0].map + (T + i) * ps, &v);
			CHECK(fi, ret == (i < done ? SIGBUS : 0), "page %u after POISON of %u: signal %d",
			      T + i, done, ret);
			break;
		}
	}
	check_witness(&ru);
out:
	run_end(&ru);
}

static void sc_copy(struct fi *fi)
{
	do_fill(fi, F_COPY);
}

static void sc_zero(struct fi *fi)
{
	do_fill(fi, F_ZERO);
}

static void sc_poison(struct fi *fi)
{
	do_fill(fi, F_POISON);
}

/* A COPY that resolves a sleeping fault: it must wake the faulter if it filled its page. */
static void sc_copy_wake(struct fi *fi)
{
	struct accessor *a;
	struct run ru;
	int64_t res = UNSET;
	unsigned int done, i;
	int ret, err;

	if (run_begin(&ru, fi, 1) || rg_new(&ru, ru.ctx, 0) || put_witness(&ru))
		goto out;
	if (uffdx_arm(ru.ctx, ru.r[0].id, T * ps, TN * ps, UFFDX_ARM_MISSING)) {
		fi_fail(fi, "setup: ARM");
		goto out;
	}
	a = faulter(&ru, &ru.r[0], T, 0, 1);
	if (!a)
		goto out;
	for (i = 0; i < TN; i++)
		fill_pattern(ru.buf + i * ps, ps, seed(3, T + i));
	ret = (int)INJECT(fi, raw_range(ru.ctx, UFFDX_IOC_COPY, ru.r[0].id, T * ps, TN * ps,
					ru.buf, 0, &res));
	err = errno;
	check_outcome(fi, "UFFDX_IOC_COPY", ret < 0, err, e_fill);
	done = range_done(fi, "UFFDX_IOC_COPY", ret < 0, err, res, TN);
	if (done) {
		/* woken by the COPY itself, nothing else */
		faulter_done(&ru, a, 0, first_byte(3, T), "a COPY that filled the faulting page");
		a = NULL;
	} else {
		CHECK(fi, acc_blocked(a, 20), "the faulter woke, but the COPY filled nothing");
	}
	/* the rest, uninjected */
	if (done < TN) {
		ret = uffdx_copy(ru.ctx, ru.r[0].id, (T + done) * ps, ru.buf + done * ps,
				 (TN - done) * ps, 0, &res);
		CHECK(fi, ret == 0, "COPY of the rest: %s", strerror(-ret));
	}
	faulter_done(&ru, a, 0, first_byte(3, T), "after the rest was copied");
	drain(ru.ctx, NULL, 0);
	CHECK(fi, resident(&ru.r[0]) == WIT + TN, "resident %lld", resident(&ru.r[0]));
	for (i = 0; i < TN; i++)
		expect_page(&ru, &ru.r[0], T + i, 3, T + i, 1, "COPY");
	check_witness(&ru);
out:
	run_end(&ru);
}

static void sc_discard(struct fi *fi)
{
	struct run ru;
	int64_t res = UNSET;
	unsigned int done, i;
	uint64_t sum = 0;
	long long c;
	int ret, err;

	if (run_begin(&ru, fi, 0) || rg_new(&ru, ru.ctx, 0) || put_witness(&ru) ||
	    put_pages(&ru, &ru.r[0], T, TN, 1))
		goto out;
	/* mapped: the discard has PTEs to zap */
	sum = checksum(ru.r[0].map + T * ps, TN * ps);
	ret = (int)INJECT(fi, raw_range(ru.ctx, UFFDX_IOC_DISCARD, ru.r[0].id, T * ps, TN * ps,
					NULL, 0, &res));
	err = errno;
	check_outcome(fi, "UFFDX_IOC_DISCARD", ret < 0, err, e_discard);
	done = range_done(fi, "UFFDX_IOC_DISCARD", ret < 0, err, res, TN);
	c = charged(ru.ctx);
	CHECK(fi, c == WIT + TN - done, "discarded %u: %lld pages charged", done, c);
	CHECK(fi, resident(&ru.r[0]) == WIT + TN - done, "discarded %u: resident %lld", done,
	      resident(&ru.r[0]));
	for (i = 0; i < TN; i++)
		expect_page(&ru, &ru.r[0], T + i, 1, T + i, i >= done, "DISCARD");
	if (!done)
		CHECK(fi, checksum(ru.r[0].map + T * ps, TN * ps) == sum, "data changed");
	check_witness(&ru);
out:
	run_end(&ru);
}

/* ---- faults --------------------------------------------------------------------- */

enum fault_kind { FK_READ_HOLE, FK_WRITE_HOLE, FK_READ_DONTNEED, FK_ARMED };

static void do_fault(struct fi *fi, enum fault_kind kind)
{
	struct handler h;
	struct run ru;
	uint8_t *p, v = 0;
	int sig, st, started = 0;

	memset(&h, 0, sizeof(h));
	if (run_begin(&ru, fi, kind == FK_ARMED) || rg_new(&ru, ru.ctx, 0) || put_witness(&ru))
		goto out;
	p = ru.r[0].map + T * ps;
	if (kind == FK_READ_DONTNEED) {
		if (put_pages(&ru, &ru.r[0], T, 1, 1))
			goto out;
		madvise(ru.r[0].map, NP * ps, MADV_DONTNEED);
	}
	if (kind == FK_ARMED) {
		if (uffdx_arm(ru.ctx, ru.r[0].id, T * ps, TN * ps, UFFDX_ARM_MISSING)) {
			fi_fail(fi, "setup: ARM");
			goto out;
		}
		h.ctx = ru.ctx;
		h.id = ru.r[0].id;
		h.tag = 3;
		if (pthread_create(&h.th, NULL, handler_fn, &h)) {
			fi_fail(fi, "setup: handler thread");
			goto out;
		}
		started = 1;
	}
	if (kind == FK_WRITE_HOLE)
		sig = (int)INJECT(fi, try_write(p, 0x42));
	else
		sig = (int)INJECT(fi, try_read(p, &v));
	/* a hole's allocation may fail: SIGBUS; a populated page must map */
	if (sig)
		CHECK(fi, sig == SIGBUS && kind != FK_READ_DONTNEED, "the access got signal %d", sig);
	if (sig && !fi->fired)
		fi_fail(fi, "SIGBUS without an injected failure");
	if (started) {
		h.stop = 1;
		pthread_join(h.th, NULL);
		started = 0;
		uffdx_disarm(ru.ctx, ru.r[0].id, T * ps, TN * ps);
	}
	switch (kind) {
	case FK_READ_HOLE:
		if (!sig)
			CHECK(fi, v == 0, "read 0x%02x from a hole", v);
		CHECK(fi, resident(&ru.r[0]) == WIT + !sig, "resident %lld after the fault (signal %d)",
		      resident(&ru.r[0]), sig);
		expect_page(&ru, &ru.r[0], T, 1, T, 0, "read of a hole");
		break;
	case FK_WRITE_HOLE:
		CHECK(fi, resident(&ru.r[0]) == WIT + !sig, "resident %lld after the fault (signal %d)",
		      resident(&ru.r[0]), sig);
		CHECK(fi, p[0] == (sig ? 0 : 0x42) && is_zero(p + 1, ps - 1),
		      "page after the write (signal %d): 0x%02x", sig, p[0]);
		break;
	case FK_READ_DONTNEED:
		CHECK(fi, sig || v == first_byte(1, T), "read 0x%02x", v);
		expect_page(&ru, &ru.r[0], T, 1, T, 1, "refault");
		break;
	case FK_ARMED:
		if (!sig)
			CHECK(fi, v == first_byte(3, T), "read 0x%02x, expected the handler's 0x%02x",
			      v, first_byte(3, T));
		st = page_state(&ru.r[0], T, 3, T);
		CHECK(fi, st == 1 || (sig && st == 0), "the page after the fault (signal %d): %d",
		      sig, st);
		break;
	}
	check_witness(&ru);
out:
	if (started) {
		h.stop = 1;
		pthread_join(h.th, NULL);
	}
	run_end(&ru);
}

static void sc_fault_read_hole(struct fi *fi)
{
	do_fault(fi, FK_READ_HOLE);
}

static void sc_fault_write_hole(struct fi *fi)
{
	do_fault(fi, FK_WRITE_HOLE);
}

static void sc_fault_refault(struct fi *fi)
{
	do_fault(fi, FK_READ_DONTNEED);
}

static void sc_fault_armed(struct fi *fi)
{
	do_fault(fi, FK_ARMED);
}

/* read() of an event: a failed copy puts it back, a good one takes it once. */
static void sc_read(struct fi *fi)
{
	struct uffdx_event ev[2];
	struct accessor *a;
	struct run ru;
	uint64_t offs[4];
	int64_t res;
	ssize_t n;
	int err, again, got;

	if (run_begin(&ru, fi, 1) || rg_new(&ru, ru.ctx, 0) || put_witness(&ru))
		goto out;
	if (uffdx_arm(ru.ctx, ru.r[0].id, T * ps, TN * ps, UFFDX_ARM_MISSING)) {
		fi_fail(fi, "setup: ARM");
		goto out;
	}
	a = faulter(&ru, &ru.r[0], T, 0, 1);
	if (!a)
		goto out;
	memset(ev, 0, sizeof(ev));
	n = INJECT(fi, read(ru.ctx, ev, sizeof(ev)));
	err = errno;
	check_outcome(fi, "read", n < 0, err, e_read);
	got = n > 0 ? (int)(n / (ssize_t)sizeof(ev[0])) : 0;
	CHECK(fi, n < 0 || n == (ssize_t)sizeof(ev[0]), "read returned %zd", n);
	if (got)
		CHECK(fi, ev[0].offset == T * ps && ev[0].region_id == ru.r[0].id,
		      "event of region %llu offset 0x%llx", (unsigned long long)ev[0].region_id,
		      (unsigned long long)ev[0].offset);
	again = drain(ru.ctx, offs, 4);
	CHECK(fi, got + again == 1, "the event was delivered %d times (%d by the injected read)",
	      got + again, got);
	res = 0;
	if (uffdx_zero(ru.ctx, ru.r[0].id, T * ps, ps, 0, &res))
		fi_fail(fi, "ZERO for the faulter");
	faulter_done(&ru, a, 0, 0, "read");
	check_witness(&ru);
out:
	run_end(&ru);
}

/* ---- moves ---------------------------------------------------------------------- */

/*
 * After a move of TN pages from A[T..] to B[T..] of which `moved` moved:
 * the resident totals, the charges, and every page in exactly one place.
 */
static void check_moved(struct run *ru, unsigned int moved, const char *what)
{
	struct fi *fi = ru->fi;
	struct rg *a = &ru->r[0], *b = &ru->r[1];
	long long ra = resident(a), rb = resident(b);
	unsigned int i;

	CHECK(fi, ra == WIT + TN - moved && rb == WIT + moved,
	      "%s: %u moved, but resident %lld and %lld", what, moved, ra, rb);
	if (b->owner != a->owner) {
		CHECK(fi, charged(a->owner) == WIT + TN - moved && charged(b->owner) == WIT + moved,
		      "%s: %u moved, but charged %lld and %lld", what, moved,
		      charged(a->owner), charged(b->owner));
	} else {
		CHECK(fi, charged(a->owner) == 2 * WIT + TN, "%s: %lld pages charged", what,
		      charged(a->owner));
	}
	for (i = 0; i < TN; i++) {
		expect_page(ru, a, T + i, 1, T + i, i >= moved, what);
		expect_page(ru, b, T + i, 1, T + i, i < moved, what);
	}
}

static int move_setup(struct run *ru, struct fi *fi, int cross)
{
	if (run_begin(ru, fi, 0) || rg_new(ru, ru->ctx, 0))
		return -1;
	if (cross) {
		ru->ctx2 = ctx_open(ctx_features(), 0);
		if (ru->ctx2 < 0) {
			fi_fail(fi, "setup: second context: %s", strerror(-ru->ctx2));
			return -1;
		}
	}
	if (rg_new(ru, cross ? ru->ctx2 : ru->ctx, 0) || put_witness(ru) ||
	    put_pages(ru, &ru->r[0], T, TN, 1))
		return -1;
	return 0;
}

static void do_move(struct fi *fi, int cross)
{
	struct uffdx_move mv;
	struct run ru;
	int ret, err;

	if (move_setup(&ru, fi, cross))
		goto out;
	memset(&mv, 0, sizeof(mv));
	mv.size = sizeof(mv);
	mv.dst_region = cross ? (uint64_t)ru.r[1].fd : ru.r[1].id;
	mv.dst_offset = T * ps;
	mv.src_region = ru.r[0].id;
	mv.src_offset = T * ps;
	mv.len = TN * ps;
	mv.mode = cross ? UFFDX_MOVE_DST_FD : 0;
	mv.result = UNSET;
	ret = (int)INJECT(fi, ioctl(ru.ctx, UFFDX_IOC_MOVE, &mv));
	err = errno;
	check_outcome(fi, "UFFDX_IOC_MOVE", ret < 0, err, e_move);
	check_moved(&ru, range_done(fi, "UFFDX_IOC_MOVE", ret < 0, err, mv.result, TN), "MOVE");
	check_witness(&ru);
out:
	run_end(&ru);
}

static void sc_move(struct fi *fi)
{
	do_move(fi, 0);
}

static void sc_move_fd(struct fi *fi)
{
	do_move(fi, 1);
}

static void sc_move_addr(struct fi *fi)
{
	struct uffdx_move_addr mv;
	struct run ru;
	int ret, err;

	if (move_setup(&ru, fi, 0))
		goto out;
	memset(&mv, 0, sizeof(mv));
	mv.size = sizeof(mv);
	mv.dst = (uintptr_t)(ru.r[1].map + T * ps);
	mv.src = (uintptr_t)(ru.r[0].map + T * ps);
	mv.len = TN * ps;
	mv.result = UNSET;
	ret = (int)INJECT(fi, ioctl(ru.ctx, UFFDX_IOC_MOVE_ADDR, &mv));
	err = errno;
	check_outcome(fi, "UFFDX_IOC_MOVE_ADDR", ret < 0, err, e_move);
	check_moved(&ru, range_done(fi, "UFFDX_IOC_MOVE_ADDR", ret < 0, err, mv.result, TN),
		    "MOVE_ADDR");
	check_witness(&ru);
out:
	run_end(&ru);
}

/* Three entries: A -> B twice (one group), and one of B's witnesses -> A. */
static void sc_move_vec(struct fi *fi)
{
	struct uffdx_move_entry e[3];
	struct uffdx_move_vec v;
	struct run ru;
	unsigned int m[3], i;
	uint64_t sum = 0;
	int ret, err;

	if (move_setup(&ru, fi, 0))
		goto out;
	e[0].dst = (uintptr_t)(ru.r[1].map + T * ps);
	e[0].src = (uintptr_t)(ru.r[0].map + T * ps);
	e[0].len = 2 * ps;
	e[1].dst = (uintptr_t)(ru.r[1].map + (T + 2) * ps);
	e[1].src = (uintptr_t)(ru.r[0].map + (T + 2) * ps);
	e[1].len = 2 * ps;
	e[2].dst = (uintptr_t)(ru.r[0].map + (NP - 1) * ps);
	e[2].src = (uintptr_t)(ru.r[1].map + (WIT - 1) * ps);
	e[2].len = ps;
	for (i = 0; i < 3; i++)
		e[i].result = UNSET;
	memset(&v, 0, sizeof(v));
	v.size = sizeof(v);
	v.entries = (uintptr_t)e;
	v.nr_entries = 3;
	v.entry_size = sizeof(e[0]);
	v.moved = UNSET;
	ret = (int)INJECT(fi, ioctl(ru.ctx, UFFDX_IOC_MOVE_VEC, &v));
	err = errno;
	check_outcome(fi, "UFFDX_IOC_MOVE_VEC", ret < 0, err, e_move_vec);
	for (i = 0; i < 3; i++) {
		int64_t r = e[i].result;
		unsigned int len = (unsigned int)(e[i].len / ps);

		m[i] = 0;
		if (r == UNSET) {
			CHECK(fi, ret < 0 && err != EAGAIN, "entry %u has no result, ioctl %d (%s)",
			      i, ret, ename(err));
			continue;
		}
		if (r > 0) {
			CHECK(fi, r % (int64_t)ps == 0 && r <= (int64_t)e[i].len, "entry %u: result %lld",
			      i, (long long)r);
			m[i] = (unsigned int)(r / (int64_t)ps);
			if (m[i] > len)
				m[i] = len;
		} else {
			CHECK(fi, in_set(e_move, (int)-r) && in_set(e_injectable, (int)-r),
			      "entry %u failed with %s", i, r < 0 ? ename((int)-r) : "0");
		}
		sum += m[i];
		if (m[i] < len)
			CHECK(fi, ret < 0, "entry %u moved %u of %u, but the ioctl succeeded", i, m[i], len);
	}
	if (v.moved != (uint64_t)UNSET)
		CHECK(fi, v.moved == sum * ps, "moved %llu, the entries say %llu pages",
		      (unsigned long long)v.moved, (unsigned long long)sum);
	/* entries 0 and 1: A -> B in order; a stop in 0 leaves 1 to run on its own */
	{
		struct rg *a = &ru.r[0], *b = &ru.r[1];

		for (i = 0; i < TN; i++) {
			unsigned int ent = i / 2, in = i % 2;
			int here = in < m[ent];

			expect_page(&ru, a, T + i, 1, T + i, !here, "MOVE_VEC source");
			expect_page(&ru, b, T + i, 1, T + i, here, "MOVE_VEC destination");
		}
		/* entry 2: B's last witness page -> A's last page */
		expect_page(&ru, a, NP - 1, 2, WIT - 1, m[2] == 1, "MOVE_VEC entry 2 destination");
		expect_page(&ru, b, WIT - 1, 2, WIT - 1, m[2] == 0, "MOVE_VEC entry 2 source");
		/* the witnesses, without B's last (entry 2 moves it) */
		for (i = 0; i < WIT; i++) {
			expect_page(&ru, a, i, 1, i, 1, "witness");
			if (i < WIT - 1)
				expect_page(&ru, b, i, 2, i, 1, "witness");
		}
	}
out:
	run_end(&ru);
}

/* ---- resolve -------------------------------------------------------------------- */

/*
 * Two faulters asleep (pages T and T + 4); the batch resolves T by COPY and
 * T + 1 by ZERO, then reads events: the second faulter's event must be
 * delivered exactly once, by this call or a later read, and both faulters
 * end with the right data.
 */
static void sc_resolve(struct fi *fi)
{
	struct uffdx_resolution rl[2];
	struct uffdx_event ev[4];
	struct uffdx_resolve rs;
	struct accessor *a1, *a2;
	struct run ru;
	uint64_t offs[8];
	unsigned int i;
	int ret, err, seen_t = 0, seen_t4 = 0, n2;
	int64_t res;

	if (run_begin(&ru, fi, 1) || rg_new(&ru, ru.ctx, 0) || put_witness(&ru))
		goto out;
	if (uffdx_arm(ru.ctx, ru.r[0].id, T * ps, (NP - T) * ps, UFFDX_ARM_MISSING)) {
		fi_fail(fi, "setup: ARM");
		goto out;
	}
	a1 = faulter(&ru, &ru.r[0], T, 0, 1);
	a2 = faulter(&ru, &ru.r[0], T + 4, 0, 2);
	if (!a1 || !a2)
		goto out;
	fill_pattern(ru.buf, ps, seed(3, T));
	memset(rl, 0, sizeof(rl));
	rl[0].op = _UFFDX_COPY;
	rl[0].region_id = ru.r[0].id;
	rl[0].offset = T * ps;
	rl[0].len = ps;
	rl[0].src = (uintptr_t)ru.buf;
	rl[0].result = UNSET;
	rl[1].op = _UFFDX_ZERO;
	rl[1].region_id = ru.r[0].id;
	rl[1].offset = (T + 1) * ps;
	rl[1].len = ps;
	rl[1].result = UNSET;
	memset(&rs, 0, sizeof(rs));
	memset(ev, 0, sizeof(ev));
	rs.size = sizeof(rs);
	rs.flags = UFFDX_RESOLVE_NOWAIT;
	rs.resolutions = (uintptr_t)rl;
	rs.nr_resolutions = 2;
	rs.resolution_size = sizeof(rl[0]);
	rs.events = (uintptr_t)ev;
	rs.max_events = 4;
	rs.timeout_ns = -1;
	rs.nr_done = 0xdead;
	rs.nr_events = 0xdead;
	ret = (int)INJECT(fi, ioctl(ru.ctx, UFFDX_IOC_RESOLVE, &rs));
	err = errno;
	check_outcome(fi, "UFFDX_IOC_RESOLVE", ret < 0, err, e_resolve);
	if (!ret)
		CHECK(fi, rs.nr_done == 2, "RESOLVE succeeded with nr_done %u", rs.nr_done);
	if (ret < 0 && rs.nr_done != 0xdead)
		CHECK(fi, rs.nr_done < 2 || err == EFAULT, "RESOLVE failed (%s) with nr_done %u",
		      ename(err), rs.nr_done);
	if (ret < 0 && err != EFAULT)
		CHECK(fi, rs.nr_events == 0 || rs.nr_events == 0xdead,
		      "a failed batch read %u events", rs.nr_events);
	for (i = 0; i < rs.nr_events && i < 4 && rs.nr_events != 0xdead; i++) {
		seen_t += ev[i].offset == T * ps;
		seen_t4 += ev[i].offset == (T + 4) * ps;
	}
	n2 = drain(ru.ctx, offs, 8);
	for (i = 0; i < (unsigned int)n2 && i < 8; i++) {
		seen_t += offs[i] == T * ps;
		seen_t4 += offs[i] == (T + 4) * ps;
	}
	CHECK(fi, seen_t4 == 1, "the second faulter's event was delivered %d times", seen_t4);
	CHECK(fi, seen_t <= 1, "the first faulter's event was delivered %d times", seen_t);
	/* finish, uninjected: what is done again is EEXIST */
	ret = uffdx_copy(ru.ctx, ru.r[0].id, T * ps, ru.buf, ps, 0, &res);
	CHECK(fi, ret == 0 || ret == -EEXIST, "COPY of page %u: %s", T, strerror(-ret));
	if (ret == -EEXIST)
		uffdx_wake(ru.ctx, ru.r[0].id, T * ps, ps);
	ret = uffdx_zero(ru.ctx, ru.r[0].id, (T + 1) * ps, ps, 0, &res);
	CHECK(fi, ret == 0 || ret == -EEXIST, "ZERO of page %u: %s", T + 1, strerror(-ret));
	fill_pattern(ru.buf + ps, ps, seed(3, T + 4));
	ret = uffdx_copy(ru.ctx, ru.r[0].id, (T + 4) * ps, ru.buf + ps, ps, 0, &res);
	CHECK(fi, ret == 0, "COPY of page %u: %s", T + 4, strerror(-ret));
	faulter_done(&ru, a1, 0, first_byte(3, T), "first faulter");
	faulter_done(&ru, a2, 0, first_byte(3, T + 4), "second faulter");
	drain(ru.ctx, NULL, 0);
	uffdx_disarm(ru.ctx, ru.r[0].id, T * ps, (NP - T) * ps);
	expect_page(&ru, &ru.r[0], T, 3, T, 1, "RESOLVE's COPY");
	expect_page(&ru, &ru.r[0], T + 1, 3, T + 1, 0, "RESOLVE's ZERO");
	check_witness(&ru);
out:
	run_end(&ru);
}

/* ---- write protection ---------------------------------------------------------- */

static int wp_range(int ctx, uint64_t id, unsigned int first, unsigned int n, uint32_t mode)
{
	int64_t res;

	return raw_range(ctx, UFFDX_IOC_WRITEPROTECT, id, first * ps, n * ps, NULL, mode, &res) ?
	       -errno : 0;
}

/*
 * PROTECT of [0, 2 * WIT) of a synchronous region (its first, which
 * allocates the flags), by id or by address.  Then a writer of page 0
 * waits for the handler exactly if the protection took.
 */
static void do_protect(struct fi *fi, int by_addr)
{
	const unsigned int n = 2 * WIT;
	struct uffdx_writeprotect_addr wa;
	struct uffdx_event ev;
	struct accessor *a;
	struct run ru;
	int64_t res = UNSET;
	unsigned int done;
	int ret, err, got;
	const char *call = by_addr ? "UFFDX_IOC_WRITEPROTECT_ADDR" : "UFFDX_IOC_WRITEPROTECT";

	if (run_begin(&ru, fi, 1) || rg_new(&ru, ru.ctx, UFFDX_REGION_CREATE_WP) ||
	    put_witness(&ru) || put_pages(&ru, &ru.r[0], WIT, WIT, 1))
		goto out;
	if (by_addr) {
		memset(&wa, 0, sizeof(wa));
		wa.size = sizeof(wa);
		wa.mode = UFFDX_WP_PROTECT;
		wa.addr = (uintptr_t)ru.r[0].map;
		wa.len = n * ps;
		wa.result = UNSET;
		ret = (int)INJECT(fi, ioctl(ru.ctx, UFFDX_IOC_WRITEPROTECT_ADDR, &wa));
		res = wa.result;
	} else {
		ret = (int)INJECT(fi, raw_range(ru.ctx, UFFDX_IOC_WRITEPROTECT, ru.r[0].id, 0,
						n * ps, NULL, UFFDX_WP_PROTECT, &res));
	}
	err = errno;
	check_outcome(fi, call, ret < 0, err, e_wp);
	done = range_done(fi, call, ret < 0, err, res, n);
	/* page 0 is protected iff anything was */
	a = acc_new(ru.r[0].map, 1, 0x42);
	if (!a || acc_start_thread(a)) {
		fi_fail(fi, "writer thread");
		acc_free(a);
		goto out;
	}
	got = wait_event(ru.ctx, &ev, done ? WAIT_MS : 50);
	if (done) {
		CHECK(fi, got == 1 && (ev.flags & UFFDX_PF_WP) && ev.offset == 0,
		      "%u pages protected, but a write raised %s", done,
		      got == 1 ? "an event without UFFDX_PF_WP" : "no event");
	} else {
		CHECK(fi, got == 0, "nothing protected, but a write raised an event");
	}
	ret = wp_range(ru.ctx, ru.r[0].id, 0, n, 0);
	CHECK(fi, ret == 0, "unprotect: %s", strerror(-ret));
	faulter_done(&ru, a, 0, 0x42, "writer");
	CHECK(fi, ru.r[0].map[0] == 0x42, "page 0 after the write: 0x%02x", ru.r[0].map[0]);
	/* the rest of the page is intact: check_witness() with its first byte back */
	ru.r[0].map[0] = (uint8_t)first_byte(1, 0);
	check_witness(&ru);
out:
	run_end(&ru);
}

static void sc_protect(struct fi *fi)
{
	do_protect(fi, 0);
}

static void sc_protect_addr(struct fi *fi)
{
	do_protect(fi, 1);
}

/* Unprotect with a writer asleep on it: it wakes, whatever the call did. */
static void sc_unprotect(struct fi *fi)
{
	struct accessor *a;
	struct run ru;
	int64_t res = UNSET;
	unsigned int done;
	int ret, err;

	if (run_begin(&ru, fi, 1) || rg_new(&ru, ru.ctx, UFFDX_REGION_CREATE_WP) ||
	    put_witness(&ru))
		goto out;
	if (wp_range(ru.ctx, ru.r[0].id, 0, NP, UFFDX_WP_PROTECT)) {
		fi_fail(fi, "setup: PROTECT");
		goto out;
	}
	a = faulter(&ru, &ru.r[0], 2, 1, 1);
	if (!a)
		goto out;
	ret = (int)INJECT(fi, raw_range(ru.ctx, UFFDX_IOC_WRITEPROTECT, ru.r[0].id, 0, NP * ps,
					NULL, 0, &res));
	err = errno;
	check_outcome(fi, "UFFDX_IOC_WRITEPROTECT (unprotect)", ret < 0, err, e_wp);
	done = range_done(fi, "UFFDX_IOC_WRITEPROTECT (unprotect)", ret < 0, err, res, NP);
	if (done > 2) {
		faulter_done(&ru, a, 0, 0x5a, "writer woken by the unprotect");
		a = NULL;
	}
	ret = wp_range(ru.ctx, ru.r[0].id, 0, NP, 0);
	CHECK(fi, ret == 0, "unprotect, uninjected: %s", strerror(-ret));
	faulter_done(&ru, a, 0, 0x5a, "writer");
	drain(ru.ctx, NULL, 0);
	CHECK(fi, ru.r[0].map[2 * ps] == 0x5a, "page 2 after the write: 0x%02x",
	      ru.r[0].map[2 * ps]);
	/* the rest of the page is intact: check_witness() with its first byte back */
	ru.r[0].map[2 * ps] = (uint8_t)first_byte(1, 2);
	check_witness(&ru);
out:
	run_end(&ru);
}

/* The written pages reported by a range-form scan: a bitmask of pages. */
static unsigned int scan_mask(const struct uffdx_scan_range *out, uint64_t nr)
{
	unsigned int mask = 0;
	uint64_t i, k;

	for (i = 0; i < nr; i++)
		for (k = out[i].offset / ps; k < (out[i].offset + out[i].len) / ps && k < 32; k++)
			mask |= 1u << k;
	return mask;
}

/*
 * Async: pages 2 and 5 written since the protection; an injected SCAN
 * with REARM, then an uninjected one: together they report each written
 * page exactly once, and the re-armed pages are recorded again when
 * written again.
 */
static void sc_scan(struct fi *fi)
{
	struct uffdx_scan_range out[8], out2[8];
	struct uffdx_scan sc;
	struct run ru;
	unsigned int m1 = 0, m2, m3;
	int ret, err;

	if (run_begin(&ru, fi, 1) || rg_new(&ru, ru.ctx, UFFDX_REGION_CREATE_WP_ASYNC) ||
	    put_witness(&ru) || put_pages(&ru, &ru.r[0], WIT, WIT, 1))
		goto out;
	if (wp_range(ru.ctx, ru.r[0].id, 0, 2 * WIT, UFFDX_WP_PROTECT)) {
		fi_fail(fi, "setup: PROTECT");
		goto out;
	}
	ru.r[0].map[2 * ps + 7] ^= 0xff;
	ru.r[0].map[5 * ps + 7] ^= 0xff;
	memset(&sc, 0, sizeof(sc));
	memset(out, 0, sizeof(out));
	sc.size = sizeof(sc);
	sc.flags = UFFDX_SCAN_REARM;
	sc.region_id = ru.r[0].id;
	sc.len = 2 * WIT * ps;
	sc.out = (uintptr_t)out;
	sc.out_len = 8;
	sc.nr_out = UNSET;
	ret = (int)INJECT(fi, ioctl(ru.ctx, UFFDX_IOC_SCAN, &sc));
	err = errno;
	check_outcome(fi, "UFFDX_IOC_SCAN", ret < 0, err, e_scan);
	if (sc.nr_out != (uint64_t)UNSET) {
		CHECK(fi, sc.nr_out <= 8, "nr_out %llu", (unsigned long long)sc.nr_out);
		if (sc.nr_out <= 8)
			m1 = scan_mask(out, sc.nr_out);
	}
	if (!ret)
		CHECK(fi, m1 == 0x24 && sc.scanned == 2 * WIT * ps, "SCAN reported 0x%x, scanned %llu",
		      m1, (unsigned long long)sc.scanned);
	/* the rest, uninjected */
	memset(&sc, 0, sizeof(sc));
	sc.size = sizeof(sc);
	sc.flags = UFFDX_SCAN_REARM;
	sc.region_id = ru.r[0].id;
	sc.len = 2 * WIT * ps;
	sc.out = (uintptr_t)out2;
	sc.out_len = 8;
	ret = ioctl(ru.ctx, UFFDX_IOC_SCAN, &sc);
	CHECK(fi, ret == 0, "SCAN, uninjected: %s", strerror(errno));
	m2 = ret ? 0 : scan_mask(out2, sc.nr_out);
	CHECK(fi, (m1 | m2) == 0x24 && !(m1 & m2),
	      "written pages 2 and 5 reported 0x%x by the injected scan, 0x%x after", m1, m2);
	/* re-armed: a new write is recorded, and only it */
	ru.r[0].map[2 * ps + 7] ^= 0xff;
	memset(&sc, 0, sizeof(sc));
	sc.size = sizeof(sc);
	sc.region_id = ru.r[0].id;
	sc.len = 2 * WIT * ps;
	sc.out = (uintptr_t)out2;
	sc.out_len = 8;
	ret = ioctl(ru.ctx, UFFDX_IOC_SCAN, &sc);
	m3 = ret ? 0 : scan_mask(out2, sc.nr_out);
	CHECK(fi, !ret && m3 == 0x4, "after writing page 2 again, SCAN reports 0x%x (%s)", m3,
	      ret ? strerror(errno) : "ok");
	ru.r[0].map[5 * ps + 7] ^= 0xff;
	check_witness(&ru);
	expect_page(&ru, &ru.r[0], 5, 1, 5, 1, "page 5");
out:
	run_end(&ru);
}

/* ---- the scenario table --------------------------------------------------------- */

struct scenario {
	const char *name;
	void (*fn)(struct fi *fi);
	uint64_t needs;
	/*
	 * An access that may raise SIGBUS: the probability sweep injects no
	 * user-copy failures into it, as one in the kernel's signal frame
	 * setup turns the SIGBUS into a SIGSEGV (force_sigsegv()), which is
	 * the kernel's doing, not uffdx's.  (fail-nth fails one site only:
	 * if the signal comes from it, the frame cannot fail too.)
	 */
	int access;
	/* make check tries every stride-th N only: sites mostly the kernel's */
	unsigned int stride;
	/* make check's time for it, per pass, if not the default: many sites */
	unsigned int budget_s;
};

static const struct scenario scenarios[] = {
	{ "open", sc_open, 0, 0, 0, 0 },
	{ "api", sc_api, 0, 0, 0, 0 },
	{ "region_create", sc_region_create, 0, 0, 0, 8 },
	{ "region_mmap", sc_region_mmap, 0, 0, 0, 0 },
	{ "region_info", sc_region_info, 0, 0, 0, 0 },
	{ "close_context", sc_close_ctx, UFFDX_FEATURE_MISSING, 0, 0, 0 },
	{ "fork", sc_fork, UFFDX_FEATURE_MISSING, 0, 16, 0 },
	{ "munmap_split", sc_munmap_split, 0, 0, 0, 0 },
	{ "mremap", sc_mremap, 0, 0, 0, 0 },
	{ "arm", sc_arm, UFFDX_FEATURE_MISSING, 0, 0, 0 },
	{ "copy", sc_copy, UFFDX_FEATURE_MISSING, 0, 0, 0 },
	{ "zero", sc_zero, UFFDX_FEATURE_MISSING, 0, 0, 0 },
	{ "poison", sc_poison, UFFDX_FEATURE_POISON, 0, 0, 0 },
	{ "copy_wakes_faulter", sc_copy_wake, UFFDX_FEATURE_MISSING, 0, 0, 0 },
	{ "discard", sc_discard, 0, 0, 0, 0 },
	{ "fault_read_hole", sc_fault_read_hole, 0, 1, 0, 0 },
	{ "fault_write_hole", sc_fault_write_hole, 0, 1, 0, 0 },
	{ "fault_refault", sc_fault_refault, 0, 1, 0, 0 },
	{ "fault_armed", sc_fault_armed, UFFDX_FEATURE_MISSING, 1, 0, 0 },
	{ "read_event", sc_read, UFFDX_FEATURE_MISSING, 0, 0, 0 },
	{ "move", sc_move, UFFDX_FEATURE_MOVE, 0, 0, 0 },
	{ "move_cross_context", sc_move_fd, UFFDX_FEATURE_MOVE, 0, 0, 0 },
	{ "move_addr", sc_move_addr, UFFDX_FEATURE_MOVE, 0, 0, 0 },
	{ "move_vec", sc_move_vec, UFFDX_FEATURE_MOVE, 0, 0, 0 },
	{ "resolve", sc_resolve, UFFDX_FEATURE_MISSING, 0, 0, 0 },
	{ "writeprotect", sc_protect, UFFDX_FEATURE_WP, 0, 0, 0 },
	{ "writeprotect_addr", sc_protect_addr, UFFDX_FEATURE_WP, 0, 0, 0 },
	{ "unprotect_wakes_writer", sc_unprotect, UFFDX_FEATURE_WP, 0, 0, 0 },
	{ "scan", sc_scan, UFFDX_FEATURE_WP_ASYNC, 0, 0, 0 },
};
#define NSCEN (sizeof(scenarios) / sizeof(scenarios[0]))

/* ---- configuration -------------------------------------------------------------- */

static int attr_write(int i, const char *name, const char *val)
{
	char path[128];
	int ret;

	snprintf(path, sizeof(path), "%s/%s", attr_dirs[i], name);
	ret = write_str_file(path, val);
	if (ret)
		printf("# cannot write %s = %s: %s\n", path, val, strerror(-ret));
	return ret;
}

/*
 * Every attribute: GFP_KERNEL allocations of any order eligible (the gates
 * of mm/failslab.c and mm/fail_page_alloc.c), quiet, probability p (0:
 * fail-nth only), only tasks with make-it-fail, and the stack filter.
 */
static int attrs_set(unsigned int prob, unsigned int interval, unsigned long start,
		     unsigned long end)
{
	char buf[32];
	int i, ret = 0;

	for (i = 0; i < NATTRS; i++) {
		ret |= attr_write(i, "probability", "0");
		ret |= attr_write(i, "verbose", "0");
		ret |= attr_write(i, "space", "0");
		ret |= attr_write(i, "task-filter", "Y");
		ret |= attr_write(i, "times", "2000000000");
		snprintf(buf, sizeof(buf), "%u", interval);
		ret |= attr_write(i, "interval", buf);
		ret |= attr_write(i, "stacktrace-depth", "32");
		ret |= attr_write(i, "reject-start", "0");
		ret |= attr_write(i, "reject-end", "0");
		snprintf(buf, sizeof(buf), "%#lx", start);
		ret |= attr_write(i, "require-start", buf);
		snprintf(buf, sizeof(buf), "%#lx", end);
		ret |= attr_write(i, "require-end", buf);
	}
	ret |= attr_write(0, "ignore-gfp-wait", "N");
	ret |= attr_write(0, "cache-filter", "N");
	ret |= attr_write(1, "ignore-gfp-wait", "N");
	ret |= attr_write(1, "ignore-gfp-highmem", "N");
	ret |= attr_write(1, "min-order", "0");
	if (prob) {
		snprintf(buf, sizeof(buf), "%u", prob);
		for (i = 0; i < NATTRS; i++)
			ret |= attr_write(i, "probability", buf);
	}
	return ret ? -1 : 0;
}

/* Back to what the kernel boots with (the gates too: other tests run after us). */
static void attrs_reset(void)
{
	int i;

	for (i = 0; i < NATTRS; i++) {
		attr_write(i, "probability", "0");
		attr_write(i, "interval", "1");
		attr_write(i, "times", "1");
		attr_write(i, "task-filter", "N");
		attr_write(i, "require-start", "0");
		attr_write(i, "require-end", "0xffffffffffffffff");
		attr_write(i, "verbose", "2");
	}
	attr_write(0, "ignore-gfp-wait", "Y");
	attr_write(1, "ignore-gfp-wait", "Y");
	attr_write(1, "ignore-gfp-highmem", "Y");
	attr_write(1, "min-order", "1");
}

/*
 * uffdx's executable sections in memory: their addresses from
 * /sys/module/uffdx/sections, their sizes from the module file the kernel
 * loaded (the DKMS-installed .ko under /lib/modules/`uname -r`).  Checked
 * against /proc/kallsyms: every [uffdx] text symbol must lie inside.
 */
static int uffdx_text(unsigned long *start, unsigned long *end)
{
	static const char *const subdirs[] = { "updates/dkms", "updates", "extra", "kernel/extra" };
	char path[256], line[512];
	struct utsname u;
	unsigned long s = ~0ul, e = 0;
	unsigned int i, in = 0, out = 0;
	struct stat st;
	const Elf64_Ehdr *eh;
	const Elf64_Shdr *sh;
	const char *strtab;
	void *file = MAP_FAILED;
	FILE *f;
	int fd = -1;

	uname(&u);
	for (i = 0; i < sizeof(subdirs) / sizeof(subdirs[0]); i++) {
		snprintf(path, sizeof(path), "/lib/modules/%s/%s/uffdx.ko", u.release, subdirs[i]);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd >= 0)
			break;
	}
	if (fd < 0) {
		printf("# no uffdx.ko under /lib/modules/%s\n", u.release);
		return -1;
	}
	if (fstat(fd, &st) || st.st_size < (off_t)sizeof(Elf64_Ehdr))
		goto bad;
	file = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (file == MAP_FAILED)
		goto bad;
	eh = file;
	if (memcmp(eh->e_ident, ELFMAG, SELFMAG) || eh->e_ident[EI_CLASS] != ELFCLASS64 ||
	    eh->e_shoff + (uint64_t)eh->e_shnum * sizeof(Elf64_Shdr) > (uint64_t)st.st_size ||
	    eh->e_shstrndx >= eh->e_shnum)
		goto bad;
	sh = (const Elf64_Shdr *)((const char *)file + eh->e_shoff);
	strtab = (const char *)file + sh[eh->e_shstrndx].sh_offset;
	for (i = 0; i < eh->e_shnum; i++) {
		const char *name = strtab + sh[i].sh_name;
		char spath[256], abuf[32];
		unsigned long addr;

		if (!(sh[i].sh_flags & SHF_ALLOC) || !(sh[i].sh_flags & SHF_EXECINSTR) ||
		    !sh[i].sh_size || !strncmp(name, ".init", 5))
			continue;
		snprintf(spath, sizeof(spath), "/sys/module/uffdx/sections/%s", name);
		if (read_str_file(spath, abuf, sizeof(abuf)) <= 0)
			continue;
		addr = strtoul(abuf, NULL, 0);
		if (!addr)
			continue;
		if (addr < s)
			s = addr;
		if (addr + sh[i].sh_size > e)
			e = addr + sh[i].sh_size;
	}
	munmap(file, (size_t)st.st_size);
	close(fd);
	if (!e || e - s > (64ul << 20)) {
		printf("# uffdx's text sections not found in /sys/module/uffdx/sections\n");
		return -1;
	}
	f = fopen("/proc/kallsyms", "re");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		unsigned long a;
		char type;

		if (!strstr(line, "[uffdx]") || sscanf(line, "%lx %c", &a, &type) != 2)
			continue;
		if (type != 't' && type != 'T')
			continue;
		if (a >= s && a < e)
			in++;
		else
			out++;
	}
	fclose(f);
	printf("# uffdx text: [%#lx, %#lx), %u kallsyms text symbols inside, %u outside\n",
	       s, e, in, out);
	if (!in || out)
		return -1;
	*start = s;
	*end = e;
	return 0;
bad:
	printf("# %s: cannot read its section headers\n", path);
	if (file != MAP_FAILED)
		munmap(file, (size_t)st.st_size);
	close(fd);
	return -1;
}

/* ---- passes ----------------------------------------------------------------------- */

static unsigned int tap_n;

static void tap(int ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void tap(int ok, const char *fmt, ...)
{
	va_list ap;

	printf("%s %u - ", ok ? "ok" : "not ok", ++tap_n);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
}

static int scenario_ok(const struct scenario *sc)
{
	return (features & sc->needs) == sc->needs;
}

/*
 * fail-nth, N = 1, 2, ... for every scenario, or every stride-th N where
 * the scenario has many sites of the kernel's own (fork), unless -s; each
 * scenario for at most budget_ns.
 */
static void pass_nth(const char *pass, unsigned int max_n, uint64_t budget_ns, int every)
{
	unsigned int i, n, calls;

	for (i = 0; i < NSCEN; i++) {
		const struct scenario *sc = &scenarios[i];
		unsigned int stride = every || !sc->stride ? 1 : sc->stride;
		uint64_t budget = every || !sc->budget_s ? budget_ns :
				  sc->budget_s * 1000000000ull;
		unsigned long long f0 = total_failures, fired = 0;
		uint64_t t0 = now_ns();
		int timed_out = 0;
		struct fi fi;

		if (!scenario_ok(sc)) {
			tap(1, "%s %s # SKIP the module lacks a feature it needs", pass, sc->name);
			continue;
		}
		memset(&fi, 0, sizeof(fi));
		fi.mode = FI_NTH;
		fi.pass = pass;
		fi.scen = sc->name;
		for (n = 1, calls = 0; n <= max_n; n += stride) {
			fi.nth = n;
			fi.errors = 0;
			sc->fn(&fi);
			calls++;
			if (!fi.fired)
				break;
			fired++;
			if (now_ns() - t0 > budget) {
				timed_out = over_time = 1;
				break;
			}
		}
		tap(total_failures == f0, "%s %s: %u calls, %llu with a failure injected, N = 1..%u%s%s (%llu ms)",
		    pass, sc->name, calls, fired, n > max_n ? max_n : n,
		    stride > 1 ? " by steps" : "",
		    n > max_n ? ", stopped at the largest N" :
		    timed_out ? ", stopped: time budget" : "",
		    (unsigned long long)((now_ns() - t0) / 1000000));
	}
}

struct sweep {
	unsigned int prob, interval;
	int uffdx_only;		/* restricted to uffdx's text, if it can be */
};

static unsigned long text_start, text_end;
static int have_text;

/* make-it-fail with each (probability, interval), scenarios round-robin. */
static void pass_sweep(const struct sweep *sw, unsigned int nsw, uint64_t total_ns)
{
	unsigned int k, i;

	for (k = 0; k < nsw; k++) {
		unsigned long long f0 = total_failures, calls = 0, fired = 0;
		uint64_t end = now_ns() + total_ns / nsw;
		char pass[48];
		struct fi fi;

		int only = sw[k].uffdx_only && have_text;

		snprintf(pass, sizeof(pass), "probability %u%% interval %u%s", sw[k].prob,
			 sw[k].interval, only ? " uffdx-text" : "");
		sweep_prob = sw[k].prob;
		if (attrs_set(sw[k].prob, sw[k].interval, only ? text_start : 0,
			      only ? text_end : ~0ul)) {
			tap(0, "%s: cannot configure the attributes", pass);
			total_failures++;
			continue;
		}
		memset(&fi, 0, sizeof(fi));
		fi.mode = FI_PROB;
		fi.pass = pass;
		while (now_ns() < end) {
			for (i = 0; i < NSCEN && now_ns() < end; i++) {
				if (!scenario_ok(&scenarios[i]))
					continue;
				fi.scen = scenarios[i].name;
				fi.no_usercopy = scenarios[i].access;
				fi.errors = 0;
				scenarios[i].fn(&fi);
				calls++;
				fired += fi.fired;
			}
		}
		attrs_set(0, 1, 0, ~0ul);
		tap(total_failures == f0, "sweep, %s: %llu calls, %llu with a failure injected",
		    pass, calls, fired);
	}
}

/* ---- after the round ------------------------------------------------------------ */

static int try_rmmod(void)
{
	return (int)syscall(SYS_delete_module, "uffdx", O_NONBLOCK);
}

static int reload(void)
{
	static const char *const paths[] = { "/sbin/modprobe", "/usr/sbin/modprobe", "/bin/modprobe" };
	const char *mp = NULL;
	unsigned int i;
	uint64_t end;
	int status = 0;
	pid_t pid;

	for (i = 0; i < sizeof(paths) / sizeof(paths[0]) && !mp; i++)
		if (!access(paths[i], X_OK))
			mp = paths[i];
	if (!mp)
		return -ENOENT;
	fflush(stdout);
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		execl(mp, "modprobe", "uffdx", (char *)NULL);
		_exit(127);
	}
	if (wait_child(pid, &status, 6 * WAIT_MS)) {
		kill_child(pid, NULL);
		return -ETIMEDOUT;
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status))
		return -EIO;
	end = now_ns() + (uint64_t)WAIT_MS * 1000000ull;
	while (access(UFFDX_DEV, F_OK)) {
		if (now_ns() > end)
			return -ETIMEDOUT;
		usleep(1000);
	}
	return 0;
}

#define BASE_PAGES	64
#define BASE_REGIONS	16
#define BASE_CTXS	8

/*
 * Nothing of the round is still charged: with small budgets, a fresh
 * context gets all of them, pages, regions and contexts alike.
 */
static int baseline(void)
{
	static const char *const params[] = { P_USER_PAGES, P_USER_REGIONS, P_USER_CTXS };
	long long old[3];
	int fds[BASE_REGIONS + 1], i, ctx, ret, bad = 0;
	int64_t res = 0;
	uint64_t id;

	for (i = 0; i < 3; i++)
		if (read_ll_file(params[i], &old[i])) {
			printf("# cannot read %s\n", params[i]);
			return 1;
		}
	write_ll_file(P_USER_PAGES, BASE_PAGES);
	write_ll_file(P_USER_REGIONS, BASE_REGIONS);
	write_ll_file(P_USER_CTXS, BASE_CTXS);

	ctx = ctx_open(DEFAULT_FEATURES, 0);
	if (ctx < 0) {
		printf("# baseline: a context: %s\n", strerror(-ctx));
		bad++;
		goto restore;
	}
	for (i = 0; i <= BASE_REGIONS; i++) {
		fds[i] = uffdx_region_create(ctx, 2 * BASE_PAGES * ps, 0, &id);
		if (i < BASE_REGIONS && fds[i] < 0) {
			printf("# baseline: region %d of %d: %s\n", i + 1, BASE_REGIONS, strerror(-fds[i]));
			bad++;
		}
		if (i == BASE_REGIONS && fds[i] != -ENOSPC) {
			printf("# baseline: region %d: %d, expected ENOSPC\n", i + 1, fds[i]);
			bad++;
		}
		if (i < BASE_REGIONS && !i && fds[0] >= 0) {
			ret = uffdx_zero(ctx, id, 0, BASE_PAGES * ps, 0, &res);
			if (ret) {
				printf("# baseline: the user's %d pages: %s (%lld bytes)\n", BASE_PAGES,
				       strerror(-ret), (long long)res);
				bad++;
			}
			ret = uffdx_zero(ctx, id, BASE_PAGES * ps, ps, 0, &res);
			if (ret != -ENOMEM) {
				printf("# baseline: a page over the budget: %d\n", ret);
				bad++;
			}
		}
	}
	for (i = 0; i <= BASE_REGIONS; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	close(ctx);
	for (i = 0; i <= BASE_CTXS; i++) {
		fds[i] = open(UFFDX_DEV, O_RDWR | O_CLOEXEC);
		if ((i < BASE_CTXS) != (fds[i] >= 0) || (i == BASE_CTXS && errno != EMFILE)) {
			printf("# baseline: context %d of %d: %s\n", i + 1, BASE_CTXS,
			       fds[i] >= 0 ? "opened" : strerror(errno));
			bad++;
		}
	}
	for (i = 0; i <= BASE_CTXS; i++)
		if (fds[i] >= 0)
			close(fds[i]);
restore:
	for (i = 0; i < 3; i++)
		write_ll_file(params[i], old[i]);
	return bad;
}

static void after_round(void)
{
	long long rc = refcnt();
	int ret;

	ret = baseline();
	tap(!ret, "baseline: the user's page, region and context budgets are free again");
	total_failures += ret ? 1 : 0;

	rc = refcnt();
	if (rc < 0) {
		tap(1, "module_unload # SKIP %s not readable", REFCNT);
		return;
	}
	ret = try_rmmod();
	if (ret) {
		tap(0, "module_unload: rmmod after the round: %s (refcnt %lld)", strerror(errno), rc);
		total_failures++;
		return;
	}
	ret = reload();
	tap(!ret, "module_unload: unloaded after the round, and loaded again%s%s",
	    ret ? ": modprobe: " : "", ret ? strerror(-ret) : "");
	if (ret)
		total_failures++;
}

/* ---- main ------------------------------------------------------------------------ */

/*
 * No restartable sequences for the injecting thread: on the way back to
 * user space after a fork() the kernel writes this thread's rseq area
 * (its CPU number), a page that fork() has just made copy-on-write; an
 * injected failure of that copy makes the kernel kill the thread with
 * SIGSEGV (rseq_handle_notify_resume(), force_sigsegv()): the kernel's
 * doing, not uffdx's.  glibc registers the area for every thread.
 */
static void rseq_unregister(void)
{
	void *area = (char *)__builtin_thread_pointer() + __rseq_offset;
	unsigned int len;

	if (!__rseq_size)
		return;	/* not registered */
	/* the length registered: 32 bytes, or a multiple of it (newer glibc) */
	for (len = 32; len <= 1024; len += 32) {
		if (!syscall(SYS_rseq, area, len, RSEQ_FLAG_UNREGISTER, RSEQ_SIG))
			return;
		if (errno != EINVAL)
			break;
	}
	printf("# cannot unregister rseq: %s\n", strerror(errno));
}

static const struct sweep sweep_check[] = {
	{ 3, 1, 0 }, { 20, 1, 1 }, { 100, 3, 0 },
};
static const struct sweep sweep_stress[] = {
	{ 1, 1, 0 }, { 5, 1, 0 }, { 10, 1, 1 }, { 25, 1, 0 }, { 50, 1, 1 },
	{ 75, 1, 0 }, { 100, 2, 1 }, { 100, 3, 0 }, { 100, 7, 1 }, { 100, 13, 0 },
};

static int skip(const char *why)
{
	printf("ok 1 - fault_inject # SKIP %s\n", why);
	printf("1..1\n");
	return 4;	/* KSFT_SKIP */
}

int main(int argc, char **argv)
{
	unsigned int max_n = 400, sweep_secs = 5;
	unsigned long start = 0, end = ~0ul;
	struct uffdx_api api;
	int opt, stress = 0, i, ret;
	struct utsname u;
	char path[128];
	uint64_t t_start;

	while ((opt = getopt(argc, argv, "s:n:")) != -1) {
		switch (opt) {
		case 's':
			sweep_secs = (unsigned int)strtoul(optarg, NULL, 0);
			stress = 1;
			break;
		case 'n':
			max_n = (unsigned int)strtoul(optarg, NULL, 0);
			break;
		default:
			fprintf(stderr, "usage: %s [-s SECONDS] [-n MAX_N]\n", argv[0]);
			return 2;
		}
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	t_start = now_ns();
	uname(&u);
	printf("TAP version 13\n");
	if (access(FAIL_NTH, F_OK))
		return skip("no " FAIL_NTH " (a kernel without CONFIG_FAULT_INJECTION)");
	if (!uffdx_present())
		return skip(UFFDX_DEV " not present");
	if (getuid())
		return skip("needs root (debugfs)");
	for (i = 0; i < NATTRS; i++) {
		snprintf(path, sizeof(path), "%s/probability", attr_dirs[i]);
		if (access(path, W_OK)) {
			snprintf(path, sizeof(path), "no %s (CONFIG_FAULT_INJECTION_DEBUG_FS, debugfs)",
				 attr_dirs[i]);
			return skip(path);
		}
	}
	ret = uffdx_query(&api);
	if (ret) {
		printf("not ok 1 - fault_inject: uffdx_query: %s\n", strerror(-ret));
		printf("fault-injection: 0 runs, 1 failures (%s)\n", u.release);
		return 1;
	}
	features = api.features;
	rseq_unregister();
	nth_fd = open(FAIL_NTH, O_RDWR | O_CLOEXEC);
	mif_fd = open(MAKE_IT_FAIL, O_RDWR | O_CLOEXEC);
	for (i = 0; i < NATTRS; i++) {
		snprintf(path, sizeof(path), "%s/times", attr_dirs[i]);
		times_fd[i] = open(path, O_RDONLY | O_CLOEXEC);
	}
	if (nth_fd < 0 || mif_fd < 0 || times_fd[0] < 0 || times_fd[1] < 0 || times_fd[2] < 0) {
		printf("not ok 1 - fault_inject: cannot open the injection controls: %s\n",
		       strerror(errno));
		printf("fault-injection: 0 runs, 1 failures (%s)\n", u.release);
		return 1;
	}
	printf("# features 0x%llx; sweep %u s%s\n", (unsigned long long)features, sweep_secs,
	       stress ? " (stress)" : "");

	if (!uffdx_text(&start, &end)) {
		have_text = 1;
		text_start = start;
		text_end = end;
		if (attrs_set(0, 1, start, end))
			total_failures++;
		pass_nth("uffdx-text", max_n, (stress ? 300ull : 4ull) * 1000000000ull, stress);
	} else {
		tap(1, "uffdx-text # SKIP uffdx's text cannot be located reliably");
	}
	if (attrs_set(0, 1, 0, ~0ul))
		total_failures++;
	pass_nth("unrestricted", max_n, (stress ? 300ull : 3ull) * 1000000000ull, stress);
	if (stress)
		pass_sweep(sweep_stress, sizeof(sweep_stress) / sizeof(sweep_stress[0]),
			   (uint64_t)sweep_secs * 1000000000ull);
	else
		pass_sweep(sweep_check, sizeof(sweep_check) / sizeof(sweep_check[0]),
			   (uint64_t)sweep_secs * 1000000000ull);
	attrs_reset();
	if (over_time)
		printf("# some scenarios stopped at the time budget before running out of sites\n");
	after_round();
	printf("# the round took %llu s\n", (unsigned long long)((now_ns() - t_start) / 1000000000ull));
	printf("1..%u\n", tap_n);
	printf("fault-injection: %llu runs, %llu failures (%s)\n", total_runs, total_failures,
	       u.release);
	return total_failures ? 1 : 0;
}
