// SPDX-License-Identifier: GPL-2.0
/*
 * uffdx walk-through for "make demo": negotiate, create and map a region,
 * arm it, fault on it from another thread, show the event, COPY a greeting
 * into the page, and show the faulting thread reading it; then MOVE the
 * page to a second region and show it is the same physical page; then a
 * round of dirty tracking (WP_ASYNC): protect, write two pages, scan.
 */
#include "helpers.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

static const char greeting[] = "Hello from the uffdx fault handler!";

struct faulter {
	const char *addr;
	pid_t tid;
	volatile int done;
	char seen[64];
};

static void *faulter(void *arg)
{
	struct faulter *f = arg;

	f->tid = sys_gettid();
	printf("  [faulter %d] reading %p ... (this blocks until the handler fills the page)\n",
	       f->tid, (const void *)f->addr);
	fflush(stdout);
	memcpy(f->seen, f->addr, sizeof(f->seen) - 1);	/* the fault happens here */
	f->seen[sizeof(f->seen) - 1] = 0;
	__atomic_store_n(&f->done, 1, __ATOMIC_SEQ_CST);
	return NULL;
}

static void print_features(uint64_t f)
{
	int bit;

	for (bit = 0; bit < 64; bit++) {
		if (f & (1ULL << bit)) {
			const char *n = uffdx_feature_name(1ULL << bit);

			printf(" %s", n ? n : "?");
		}
	}
	printf("\n");
}

#define DIE(...) do { fprintf(stderr, "demo: " __VA_ARGS__); fputc('\n', stderr); exit(1); } while (0)

/* One scan with re-arm of all of m; prints and returns the pages reported. */
static int scan_print(int ctx, const struct uffdx_region_map *m, const char *what)
{
	struct uffdx_scan_range r[8];
	struct uffdx_scan sc;
	uint64_t i;
	int ret;

	memset(&sc, 0, sizeof(sc));
	sc.flags = UFFDX_SCAN_REARM;
	sc.region_id = m->id;
	sc.len = m->len;
	sc.out = (uint64_t)(uintptr_t)r;
	sc.out_len = 8;
	ret = uffdx_scan(ctx, &sc);
	if (ret)
		DIE("uffdx_scan: %s", uffdx_strerror(ret));
	printf("   %s: %llu page(s) written", what,
	       (unsigned long long)(sc.written / ps));
	for (i = 0; i < sc.nr_out; i++) {
		unsigned long long first = r[i].offset / ps, n = r[i].len / ps;

		if (n == 1)
			printf("%s page %llu", i ? "," : ":", first);
		else
			printf("%s pages %llu-%llu", i ? "," : ":", first, first + n - 1);
	}
	printf("%s\n", sc.nr_out ? " (re-protected)" : "");
	return (int)(sc.written / ps);
}

/* Dirty tracking: exactly the pages written since the last scan, no more. */
static void dirty_tracking(uint64_t supported)
{
	struct uffdx_region_map m;
	int ctx, ret, i;
	int64_t res;

	printf("9. Dirty tracking: a WP_ASYNC region, protected, then two pages written\n");
	if (!(supported & UFFDX_FEATURE_WP_ASYNC)) {
		printf("   skipped: this module does not offer wp-async\n");
		return;
	}
	ctx = uffdx_open_api(UFFDX_FEATURE_REGIONS | UFFDX_FEATURE_WP_ASYNC, 0, NULL);
	if (ctx < 0)
		DIE("uffdx_open_api(WP_ASYNC): %s", uffdx_strerror(ctx));
	ret = uffdx_region_map(ctx, 8 * ps, UFFDX_REGION_CREATE_WP_ASYNC, &m);
	if (ret)
		DIE("uffdx_region_map(WP_ASYNC): %s", uffdx_strerror(ret));
	for (i = 0; i < 8; i++)
		((char *)m.addr)[i * ps] = 1;
	ret = uffdx_writeprotect(ctx, m.id, 0, m.len, UFFDX_WP_PROTECT, &res);
	if (ret)
		DIE("uffdx_writeprotect: %s", uffdx_strerror(ret));
	printf("   8 pages populated and protected (%lld bytes); writing pages 2 and 5\n",
	       (long long)res);
	((char *)m.addr)[2 * ps] = 2;	/* the writes do not wait: recorded */
	((char *)m.addr)[5 * ps + 100] = 5;
	if (scan_print(ctx, &m, "scan") != 2)
		DIE("the scan did not report exactly the two pages written");
	if (scan_print(ctx, &m, "scan again, nothing written") != 0)
		DIE("the second scan reported pages nobody wrote");
	((char *)m.addr)[5 * ps] = 6;
	if (scan_print(ctx, &m, "page 5 written again") != 1)
		DIE("the re-armed page's write was not reported");
	uffdx_region_unmap(&m);
	close(ctx);
}

int main(void)
{
	struct uffdx_region_map m;
	struct uffdx_api api;
	struct uffdx_event ev;
	struct faulter f;
	struct utsname u;
	pthread_t th;
	char *page;
	int ctx, ret, i;
	int64_t res;

	setvbuf(stdout, NULL, _IOLBF, 0);
	uname(&u);
	printf("uffdx demo on Linux %s\n\n", u.release);
	if (!uffdx_present()) {
		printf("%s not present: load the module first (modprobe uffdx)\n", UFFDX_DEV);
		return 4;
	}

	printf("1. Open %s and negotiate the API\n", UFFDX_DEV);
	memset(&api, 0, sizeof(api));
	ctx = uffdx_open_api(DEFAULT_FEATURES | UFFDX_FEATURE_MOVE, 0, &api);
	if (ctx < 0)
		DIE("uffdx_open_api: %s", uffdx_strerror(ctx));
	printf("   module version %u.%u.%u, features supported:",
	       UFFDX_VERSION_MAJOR(api.module_version), UFFDX_VERSION_MINOR(api.module_version),
	       UFFDX_VERSION_PATCH(api.module_version));
	print_features(api.features);

	printf("2. Create a 4-page region (module-owned memory) and mmap it\n");
	ret = uffdx_region_map(ctx, 4 * ps, 0, &m);
	if (ret)
		DIE("uffdx_region_map: %s", uffdx_strerror(ret));
	printf("   region id %llu, fd %d, mapped at %p\n",
	       (unsigned long long)m.id, m.fd, m.addr);

	printf("3. Arm it for missing-page faults\n");
	ret = uffdx_arm(ctx, m.id, 0, m.len, UFFDX_ARM_MISSING);
	if (ret)
		DIE("uffdx_arm: %s", uffdx_strerror(ret));

	printf("4. Touch page 2 from another thread\n");
	page = (char *)m.addr + 2 * ps;
	memset(&f, 0, sizeof(f));
	f.addr = page;
	if (pthread_create(&th, NULL, faulter, &f))
		DIE("pthread_create");
	sleep_ms(50);	/* let the faulter say what it does first */

	printf("5. The handler (this thread) reads the fault event\n");
	ret = wait_event(ctx, &ev, WAIT_MS);
	if (ret != 1)
		DIE("no event: %s", ret < 0 ? uffdx_strerror(ret) : "timeout");
	printf("   event: type %s, %s access at %#llx\n",
	       ev.type == UFFDX_EVENT_PAGEFAULT ? "PAGEFAULT" : "?",
	       ev.flags & UFFDX_PF_WRITE ? "write" : "read",
	       (unsigned long long)ev.address);
	printf("          region %llu, offset %#llx (page %llu), pid %u, tid %u\n",
	       (unsigned long long)ev.region_id, (unsigned long long)ev.offset,
	       (unsigned long long)(ev.offset / ps), ev.pid, ev.tid);
	sleep_ms(100);
	printf("   the faulting thread is %s\n", f.done ? "NOT blocked (unexpected)" : "still blocked");

	printf("6. COPY a greeting into the page and wait for the next event, in one call\n");
	{
		struct uffdx_resolution r;
		struct uffdx_event next;
		char *buf = calloc(1, ps);
		unsigned int done = 0;

		if (!buf)
			DIE("calloc");
		memcpy(buf, greeting, sizeof(greeting));
		memset(&r, 0, sizeof(r));
		r.op = _UFFDX_COPY;
		r.region_id = ev.region_id;
		r.offset = ev.offset;
		r.len = ps;
		r.src = (uint64_t)(uintptr_t)buf;
		/* resolve, then wait up to 100 ms for another fault (none comes) */
		ret = uffdx_resolve_wait(ctx, &r, 1, &done, &next, 1, 100000000LL, 0);
		free(buf);
		if (ret < 0)
			DIE("uffdx_resolve_wait: %s", uffdx_strerror(ret));
		res = r.result;
		printf("   uffdx_resolve_wait: %u resolution done, %d new events\n", done, ret);
	}
	printf("   copied %lld bytes; this woke the faulter\n", (long long)res);

	for (i = 0; i < WAIT_MS && !f.done; i++)
		usleep(1000);
	if (!f.done)
		DIE("the faulting thread did not resume");
	pthread_join(th, NULL);
	printf("7. The faulter resumed and read: \"%s\"\n", f.seen);
	if (strcmp(f.seen, greeting))
		DIE("the faulter read the wrong data");

	printf("8. MOVE the page to page 0 of a second region: no copy\n");
	{
		struct uffdx_region_map m2;
		uint64_t pfn_before = page_pfn(page), pfn_after;

		ret = uffdx_region_map(ctx, 4 * ps, 0, &m2);
		if (ret)
			DIE("uffdx_region_map: %s", uffdx_strerror(ret));
		ret = uffdx_move_addr(ctx, m2.addr, page, ps, 0, &res);
		if (ret)
			DIE("uffdx_move_addr: %s", uffdx_strerror(ret));
		pfn_after = page_pfn(m2.addr);
		printf("   moved %lld bytes; the new place reads \"%s\"\n",
		       (long long)res, (const char *)m2.addr);
		if (pfn_before && pfn_after)
			printf("   physical page before %#llx, after %#llx: %s\n",
			       (unsigned long long)pfn_before, (unsigned long long)pfn_after,
			       pfn_before == pfn_after ? "the same page" : "DIFFERENT (unexpected)");
		else
			printf("   (physical page numbers need root: /proc/self/pagemap)\n");
		/* Disarm first: the old place is an armed hole again. */
		ret = uffdx_disarm(ctx, m.id, 0, m.len);
		if (ret)
			DIE("uffdx_disarm: %s", uffdx_strerror(ret));
		printf("   the old place (disarmed) reads %s\n",
		       is_zero(page, ps) ? "zeroes (a hole again)" : "OLD DATA (unexpected)");
		if (strcmp(m2.addr, greeting) || (pfn_before && pfn_before != pfn_after))
			DIE("the move went wrong");
		uffdx_region_unmap(&m2);
	}

	uffdx_region_unmap(&m);
	close(ctx);
	dirty_tracking(api.features);
	printf("\nDone.\n");
	return 0;
}
