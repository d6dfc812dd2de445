// SPDX-License-Identifier: GPL-2.0
/*
 * uffdx stress, in the spirit of tools/testing/selftests/mm/uffd-stress.c.
 *
 *   stress [-s SECONDS] [-r REGIONS] [-p PAGES] [-f FAULTERS] [-H HANDLERS]
 *
 * Several regions, armed; faulting threads touch random pages (reads and
 * writes) and check every byte of the page afterwards; handler threads
 * resolve each fault with a COPY of the page's expected contents, which are
 * a function of (region, page, bounce).  Between bounces the main thread
 * reads every page of every region (so all contents are checked), then
 * DISARMs, DISCARDs (checking that the region holds nothing) and re-ARMs
 * them, and the bounce number changes every page's expected contents: a
 * lost, stale, duplicated or misplaced fill shows up as a wrong byte.
 *
 * Bounce variants (bounce % 4): 0 plain COPY; 1 COPY with DONTWAKE, then
 * WAKE; 2 two-page COPYs (partial fills, EAGAIN); 3 ZERO for even pages of
 * region 0 (expected contents zero) and COPY otherwise.
 *
 * Runs for -s SECONDS (default 5) and prints KTAP: one result, "stress".
 * The harness's fixed 30 s timeout does not fit a run of any length, so
 * this program uses kselftest.h directly and bounds its own waits.
 */
#include "helpers.h"

#include <fcntl.h>
#include <stdarg.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "kselftest.h"

static int nregions = 4, npages = 256, nfaulters = 4, nhandlers = 2;
static int seconds = 5;
#define ACCESSES_PER_BOUNCE 256
#define STUCK_MS 30000		/* a bounce that takes this long has hung */

static int ctx;
static struct uffdx_region_map *reg;

static volatile int bounce;
static volatile int stop_handlers;
static volatile int pause_handlers;
static int handlers_busy;		/* atomic */
static int faulters_left;		/* atomic */

static unsigned long st_events, st_copies, st_eexist, st_partial, st_wakes, st_zero,
		     st_access, st_write_events;

static pthread_mutex_t err_lock = PTHREAD_MUTEX_INITIALIZER;
static int errors;
static char first_err[256];

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
}

static inline void stat_add(unsigned long *s, unsigned long n)
{
	__atomic_add_fetch(s, n, __ATOMIC_RELAXED);
}

static uint64_t page_seed(int r, long p, int b)
{
	return ((uint64_t)(unsigned int)b << 32) | ((uint64_t)r << 20) | (uint64_t)p;
}

static int zero_page(int r, long p, int b)
{
	return (b % 4) == 3 && r == 0 && !(p & 1);
}

/* Expected contents of (r, p) in bounce b. */
static void expected(uint8_t *buf, int r, long p, int b)
{
	if (zero_page(r, p, b))
		memset(buf, 0, ps);
	else
		fill_pattern(buf, ps, page_seed(r, p, b));
}

static int find_region(uint64_t id)
{
	int r;

	for (r = 0; r < nregions; r++)
		if (reg[r].id == id)
			return r;
	return -1;
}

static void resolve(const struct uffdx_event *ev, uint8_t *buf)
{
	int b = __atomic_load_n(&bounce, __ATOMIC_SEQ_CST);
	int r = find_region(ev->region_id);
	long p = (long)(ev->offset / ps);
	int64_t res = 0;
	uint32_t mode = 0;
	uint64_t len = ps;
	int ret;

	if (ev->type != UFFDX_EVENT_PAGEFAULT || r < 0 || p < 0 || p >= npages ||
	    ev->offset % ps || ev->address != (uintptr_t)reg[r].addr + ev->offset ||
	    (ev->flags & ~UFFDX_PF_WRITE)) {
		fail("bad event: type %u flags 0x%x region %llu offset 0x%llx address 0x%llx",
		     ev->type, ev->flags, (unsigned long long)ev->region_id,
		     (unsigned long long)ev->offset, (unsigned long long)ev->address);
		return;
	}
	if (ev->flags & UFFDX_PF_WRITE)
		stat_add(&st_write_events, 1);

	if (zero_page(r, p, b)) {
		ret = uffdx_zero(ctx, ev->region_id, ev->offset, ps, 0, &res);
		stat_add(&st_zero, 1);
	} else {
		expected(buf, r, p, b);
		if (b % 4 == 1)
			mode = UFFDX_FILL_DONTWAKE;
		if (b % 4 == 2 && p + 1 < npages) {
			expected(buf + ps, r, p + 1, b);
			len = 2 * ps;
		}
		ret = uffdx_copy(ctx, ev->region_id, ev->offset, buf, len, mode, &res);
		stat_add(&st_copies, 1);
	}
	if (ret == -EAGAIN) {
		if (res <= 0 || res >= (int64_t)len)
			fail("partial fill with result %lld of %llu", (long long)res,
			     (unsigned long long)len);
		stat_add(&st_partial, 1);
		ret = 0;
	} else if (ret == -EEXIST) {
		/* someone else filled it: wake our faulter */
		if (res != 0 && res != -EEXIST)
			fail("EEXIST with result %lld", (long long)res);
		stat_add(&st_eexist, 1);
		mode = UFFDX_FILL_DONTWAKE;
		ret = 0;
	} else if (!ret && res != (int64_t)len) {
		fail("fill result %lld, wanted %llu", (long long)res, (unsigned long long)len);
	}
	if (ret) {
		fail("fill of region %d page %ld: %s", r, p, strerror(-ret));
		return;
	}
	if (mode & UFFDX_FILL_DONTWAKE) {
		ret = uffdx_wake(ctx, ev->region_id, ev->offset, ps);
		if (ret)
			fail("wake: %s", strerror(-ret));
		stat_add(&st_wakes, 1);
	}
}

static void *handler(void *arg)
{
	struct uffdx_event ev[16];
	uint8_t *buf = malloc(2 * ps);
	long idx = (long)arg;
	int i, n;

	if (!buf) {
		fail("malloc");
		return NULL;
	}
	while (!__atomic_load_n(&stop_handlers, __ATOMIC_SEQ_CST)) {
		if (__atomic_load_n(&pause_handlers, __ATOMIC_SEQ_CST)) {
			usleep(200);
			continue;
		}
		__atomic_add_fetch(&handlers_busy, 1, __ATOMIC_SEQ_CST);
		if (__atomic_load_n(&pause_handlers, __ATOMIC_SEQ_CST)) {
			__atomic_sub_fetch(&handlers_busy, 1, __ATOMIC_SEQ_CST);
			continue;
		}
		/* alternate: poll + non-blocking read, and read batch sizes */
		n = wait_fd(ctx, POLLIN, 20);
		if (n > 0) {
			n = uffdx_read_events(ctx, ev, (idx & 1) ? 16 : 1 + (bounce & 7));
			if (n == -EAGAIN)
				n = 0;	/* another handler took it */
			if (n < 0)
				fail("read: %s", strerror(-n));
			for (i = 0; i < n; i++)
				resolve(&ev[i], buf);
			if (n > 0)
				stat_add(&st_events, (unsigned long)n);
		} else if (n < 0) {
			fail("poll: %s", strerror(-n));
		}
		__atomic_sub_fetch(&handlers_busy, 1, __ATOMIC_SEQ_CST);
	}
	free(buf);
	return NULL;
}

struct faulter {
	pthread_t th;
	unsigned int seed;
};

static void *faulter(void *arg)
{
	struct faulter *f = arg;
	int b = __atomic_load_n(&bounce, __ATOMIC_SEQ_CST);
	uint8_t *want = malloc(ps);
	int i;

	if (!want) {
		fail("malloc");
		goto out;
	}
	for (i = 0; i < ACCESSES_PER_BOUNCE && !errors; i++) {
		int r = rand_r(&f->seed) % nregions;
		long p = rand_r(&f->seed) % npages;
		int wr = rand_r(&f->seed) & 1;
		size_t off = (size_t)rand_r(&f->seed) % ps;
		uint8_t *page = (uint8_t *)reg[r].addr + (size_t)p * ps;
		uint8_t v;
		int sig;

		expected(want, r, p, b);
		/* a write stores what the page holds anyway: contents stay known */
		sig = wr ? try_write(page + off, want[off]) : try_read(page + off, &v);
		if (sig) {
			fail("bounce %d region %d page %ld: signal %d", b, r, p, sig);
			break;
		}
		if (memcmp(page, want, ps)) {
			long bad = 0;

			while (bad < (long)ps && page[bad] == want[bad])
				bad++;
			fail("bounce %d region %d page %ld: wrong byte at %ld (0x%02x, want 0x%02x)",
			     b, r, p, bad, page[bad], want[bad]);
			break;
		}
		stat_add(&st_access, 1);
	}
	free(want);
out:
	__atomic_sub_fetch(&faulters_left, 1, __ATOMIC_SEQ_CST);
	return NULL;
}

/* The main thread checks every page (faulting in what is left). */
static void verify_all(int b)
{
	uint8_t *want = malloc(ps);
	int r;
	long p;

	if (!want) {
		fail("malloc");
		return;
	}
	for (r = 0; r < nregions && !errors; r++) {
		for (p = 0; p < npages && !errors; p++) {
			uint8_t *page = (uint8_t *)reg[r].addr + (size_t)p * ps;
			uint8_t v;
			int sig;

			expected(want, r, p, b);
			sig = try_read(page, &v);
			if (sig)
				fail("verify bounce %d region %d page %ld: signal %d", b, r, p, sig);
			else if (memcmp(page, want, ps))
				fail("verify bounce %d region %d page %ld: wrong contents", b, r, p);
		}
	}
	free(want);
}

static int wait_quiet(void)
{
	uint64_t end = now_ns() + (uint64_t)STUCK_MS * 1000000ull;

	while (__atomic_load_n(&handlers_busy, __ATOMIC_SEQ_CST)) {
		if (now_ns() > end)
			return -1;
		usleep(200);
	}
	return 0;
}

/* Between bounces: nothing may be resident after DISCARD; re-arm. */
static void rearm_all(void)
{
	int r, ret;

	for (r = 0; r < nregions && !errors; r++) {
		struct uffdx_region_info info;
		int64_t res = 0;

		ret = uffdx_disarm(ctx, reg[r].id, 0, reg[r].len);
		if (ret)
			fail("disarm: %s", strerror(-ret));
		ret = uffdx_discard(ctx, reg[r].id, 0, reg[r].len, &res);
		if (ret || res != (int64_t)reg[r].len)
			fail("discard: %d, result %lld", ret, (long long)res);
		ret = uffdx_region_info(reg[r].fd, &info);
		if (ret || info.resident)
			fail("after discard: %d, resident %llu", ret,
			     (unsigned long long)info.resident);
		ret = uffdx_arm(ctx, reg[r].id, 0, reg[r].len, UFFDX_ARM_MISSING);
		if (ret)
			fail("arm: %s", strerror(-ret));
	}
}

static void usage(const char *argv0)
{
	fprintf(stderr, "usage: %s [-s SECONDS] [-r REGIONS] [-p PAGES] [-f FAULTERS] [-H HANDLERS]\n",
		argv0);
	exit(KSFT_FAIL);
}

int main(int argc, char **argv)
{
	pthread_t *hth;
	struct faulter *fth;
	uint64_t deadline;
	int i, r, opt, b, nb = 0;

	while ((opt = getopt(argc, argv, "s:r:p:f:H:h")) != -1) {
		switch (opt) {
		case 's': seconds = atoi(optarg); break;
		case 'r': nregions = atoi(optarg); break;
		case 'p': npages = atoi(optarg); break;
		case 'f': nfaulters = atoi(optarg); break;
		case 'H': nhandlers = atoi(optarg); break;
		default: usage(argv[0]);
		}
	}
	if (seconds < 1 || nregions < 1 || npages < 2 || nfaulters < 1 || nhandlers < 1)
		usage(argv[0]);

	ksft_print_header();
	if (!uffdx_present())
		ksft_exit_skip(UFFDX_DEV " not present (uffdx module not loaded)\n");
	ksft_set_plan(1);
	ksft_print_msg("stress: %d regions x %d pages, %d faulters, %d handlers, %d s\n",
		       nregions, npages, nfaulters, nhandlers, seconds);

	ctx = ctx_open(DEFAULT_FEATURES, O_NONBLOCK);
	if (ctx < 0)
		ksft_exit_fail_msg("context: %s\n", strerror(-ctx));
	reg = calloc(nregions, sizeof(*reg));
	hth = calloc(nhandlers, sizeof(*hth));
	fth = calloc(nfaulters, sizeof(*fth));
	if (!reg || !hth || !fth)
		ksft_exit_fail_msg("calloc\n");
	for (r = 0; r < nregions; r++) {
		int ret = uffdx_region_map(ctx, (uint64_t)npages * ps, 0, &reg[r]);

		if (ret)
			ksft_exit_fail_msg("region %d: %s\n", r, strerror(-ret));
		ret = uffdx_arm(ctx, reg[r].id, 0, reg[r].len, UFFDX_ARM_MISSING);
		if (ret)
			ksft_exit_fail_msg("arm: %s\n", strerror(-ret));
	}
	for (i = 0; i < nhandlers; i++)
		if (pthread_create(&hth[i], NULL, handler, (void *)(long)i))
			ksft_exit_fail_msg("pthread_create\n");

	deadline = now_ns() + (uint64_t)seconds * 1000000000ull;
	for (b = 0; !errors && now_ns() < deadline; b++) {
		uint64_t stuck = now_ns() + (uint64_t)STUCK_MS * 1000000ull;

		__atomic_store_n(&bounce, b, __ATOMIC_SEQ_CST);
		__atomic_store_n(&faulters_left, nfaulters, __ATOMIC_SEQ_CST);
		for (i = 0; i < nfaulters; i++) {
			fth[i].seed = (unsigned int)(b * 7919 + i * 104729 + 1);
			if (pthread_create(&fth[i].th, NULL, faulter, &fth[i]))
				ksft_exit_fail_msg("pthread_create\n");
		}
		while (__atomic_load_n(&faulters_left, __ATOMIC_SEQ_CST)) {
			if (now_ns() > stuck) {
				ksft_test_result_fail("stress: bounce %d: faulters stuck for %d s (lost wake?)\n",
						      b, STUCK_MS / 1000);
				ksft_exit_fail();
			}
			usleep(1000);
		}
		for (i = 0; i < nfaulters; i++)
			pthread_join(fth[i].th, NULL);
		verify_all(b);
		if (errors)
			break;
		/* quiesce the handlers, then start the next bounce on holes */
		__atomic_store_n(&pause_handlers, 1, __ATOMIC_SEQ_CST);
		if (wait_quiet()) {
			ksft_test_result_fail("stress: handlers stuck\n");
			ksft_exit_fail();
		}
		if (event_arrives(ctx, 0) == 1)
			fail("bounce %d: event pending after every page was verified", b);
		rearm_all();
		__atomic_store_n(&pause_handlers, 0, __ATOMIC_SEQ_CST);
		nb++;
	}
	__atomic_store_n(&stop_handlers, 1, __ATOMIC_SEQ_CST);
	for (i = 0; i < nhandlers; i++)
		pthread_join(hth[i], NULL);

	ksft_print_msg("bounces %d, accesses %lu, events %lu (writes %lu), copies %lu, zero %lu, partial %lu, eexist %lu, wakes %lu\n",
		       nb, st_access, st_events, st_write_events, st_copies, st_zero,
		       st_partial, st_eexist, st_wakes);
	if (!errors && st_events == 0)
		fail("no fault events at all");
	if (errors)
		ksft_print_msg("%d errors; first: %s\n", errors, first_err);
	ksft_test_result(!errors, "stress\n");
	for (r = 0; r < nregions; r++)
		uffdx_region_unmap(&reg[r]);
	close(ctx);
	ksft_finished();
}
