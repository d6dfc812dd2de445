// SPDX-License-Identifier: GPL-2.0
/*
 * uffdx walk-through for "make demo": negotiate, create and map a region,
 * arm it, fault on it from another thread, show the event, COPY a greeting
 * into the page, and show the faulting thread reading it; then MOVE the
 * page to a second region and show it is the same physical page; then a
 * round of dirty tracking (WP_ASYNC): protect, write two pages, scan; then
 * the simulated device: exclusive access and an atomic on a region page,
 * revoked by a CPU touch from a forked child, and a page migrated into
 * device memory that a CPU read brings back.
 */
#include "helpers.h"

#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/utsname.h>
#include <sys/wait.h>
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

/* ---- the simulated device --------------------------------------------------- */

static const char migrated_text[] = "This page went to device memory and came back.";

static void dev_cmd_init(struct uffdx_dev_cmd *c, const void *addr, void *ptr, uint64_t n)
{
	memset(c, 0, sizeof(*c));
	c->addr = (uint64_t)(uintptr_t)addr;
	c->ptr = (uint64_t)(uintptr_t)ptr;
	c->npages = n;
}

/* One SNAPSHOT byte of the page at addr (DIE on failure). */
static uint8_t dev_snapshot1(int dev, const void *addr)
{
	struct uffdx_dev_cmd c;
	uint8_t b = 0xee;
	int ret;

	dev_cmd_init(&c, addr, &b, 1);
	ret = uffdx_dev_snapshot(dev, &c);
	if (ret)
		DIE("uffdx_dev_snapshot: %s", uffdx_strerror(ret));
	return b;
}

static const char *snapshot_name(uint8_t b)
{
	static char buf[64];
	const char *kind;

	if (b == UFFDX_DEV_PROT_ERROR)
		return "ERROR";
	switch (b & 0xf0) {
	case UFFDX_DEV_PROT_DEV_LOCAL: kind = "DEV_LOCAL"; break;
	case UFFDX_DEV_PROT_DEV_REMOTE: kind = "DEV_REMOTE"; break;
	case UFFDX_DEV_PROT_EXCLUSIVE: kind = "EXCLUSIVE"; break;
	case UFFDX_DEV_PROT_ZERO: kind = "ZERO"; break;
	default: kind = b ? "system page" : "NONE (not mapped)"; break;
	}
	snprintf(buf, sizeof(buf), "%s%s%s", kind,
		 b & UFFDX_DEV_PROT_WRITE ? "|WRITE" : b & UFFDX_DEV_PROT_READ ? "|READ" : "",
		 b & UFFDX_DEV_PROT_PMD ? "|PMD" : "");
	return buf;
}

/* Wait (bounded) for one device event. */
static void dev_event1(int dev, struct uffdx_dev_event *ev)
{
	ssize_t n;
	int ret = wait_fd(dev, POLLIN, WAIT_MS);

	if (ret <= 0)
		DIE("no device event: %s", ret < 0 ? uffdx_strerror(ret) : "timeout");
	n = uffdx_dev_read_events(dev, ev, 1);
	if (n != 1)
		DIE("uffdx_dev_read_events: %s", n < 0 ? uffdx_strerror((int)n) : "no event");
}

static const char *dev_event_name(uint16_t type)
{
	switch (type) {
	case UFFDX_DEV_EVENT_REVOKED: return "REVOKED";
	case UFFDX_DEV_EVENT_MIGRATED: return "MIGRATED";
	case UFFDX_DEV_EVENT_DROPPED: return "DROPPED";
	}
	return "?";
}

static void print_dev_event(const struct uffdx_dev_event *ev, uint64_t page)
{
	printf("   device event: %s, %s access at %#llx (page %llu), pid %u%s\n",
	       dev_event_name(ev->type), ev->flags & UFFDX_PF_WRITE ? "write" : "read",
	       (unsigned long long)ev->address, (unsigned long long)page, ev->pid,
	       ev->flags & UFFDX_PF_REMOTE ? " (another process: REMOTE)" :
	       ev->pid == (uint32_t)getpid() ? " (this process)" : "");
}

static void dev_stats_get(int dev, struct uffdx_dev_stats *st)
{
	int ret;

	memset(st, 0, sizeof(*st));
	ret = uffdx_dev_stats(dev, st);
	if (ret)
		DIE("uffdx_dev_stats: %s", uffdx_strerror(ret));
}

/* A context, a 4-page region mapped, a device mirroring this process. */
static int dev_setup(uint64_t features, struct uffdx_region_map *m, int *dev)
{
	int ctx, ret;

	ctx = uffdx_open_api(UFFDX_FEATURE_REGIONS | features, 0, NULL);
	if (ctx < 0)
		DIE("uffdx_open_api(device): %s", uffdx_strerror(ctx));
	ret = uffdx_region_map(ctx, 4 * ps, 0, m);
	if (ret)
		DIE("uffdx_region_map: %s", uffdx_strerror(ret));
	*dev = uffdx_device_create(ctx, 0);
	if (*dev < 0)
		DIE("uffdx_device_create: %s", uffdx_strerror(*dev));
	return ctx;
}

/*
 * Exclusive access: the device holds a page (no CPU may map it), adds to a
 * counter in it atomically, and a forked child's read of the page through
 * its own mapping of the region revokes the hold, with an event.
 */
static void device_exclusive(uint64_t supported)
{
	struct uffdx_region_map m;
	struct uffdx_dev_atomic a;
	struct uffdx_dev_stats st;
	struct uffdx_dev_event ev;
	struct uffdx_dev_cmd c;
	volatile uint64_t *counter;
	uint64_t seen = 0;
	int ctx, dev, ret, pfd[2], status = 0;
	pid_t pid;

	printf("10. A device takes a region page exclusive and adds to it; a CPU touch revokes it\n");
	if (!(supported & UFFDX_FEATURE_DEVICE_EXCLUSIVE)) {
		printf("   skipped: this module does not offer device-exclusive\n");
		return;
	}
	ctx = dev_setup(UFFDX_FEATURE_DEVICE_EXCLUSIVE, &m, &dev);
	counter = (volatile uint64_t *)m.addr;
	*counter = 41;
	printf("   device fd %d mirrors this process; the CPU stored 41 in page 0 of a new region\n",
	       dev);
	dev_cmd_init(&c, m.addr, NULL, 1);
	ret = uffdx_dev_exclusive(dev, &c);
	if (ret)
		DIE("uffdx_dev_exclusive: %s", uffdx_strerror(ret));
	dev_cmd_init(&c, m.addr, NULL, 1);
	ret = uffdx_dev_check_exclusive(dev, &c);
	printf("   the device holds page 0 exclusive (check: %s); no CPU mapping of it is left\n",
	       ret ? uffdx_strerror(ret) : "yes");
	if (ret)
		DIE("the device does not hold the page");
	memset(&a, 0, sizeof(a));
	a.op = UFFDX_DEV_ATOMIC_FETCH_ADD;
	a.addr = (uint64_t)(uintptr_t)m.addr;
	a.value = 1;
	ret = uffdx_dev_atomic(dev, &a);
	if (ret)
		DIE("uffdx_dev_atomic: %s", uffdx_strerror(ret));
	printf("   device atomic fetch-add of 1: the word was %llu\n", (unsigned long long)a.old);

	if (pipe(pfd))
		DIE("pipe");
	fflush(stdout);
	pid = fork();
	if (pid < 0)
		DIE("fork");
	if (pid == 0) {
		struct uffdx_dev_cmd cc;
		uint64_t v;
		void *p;

		close(pfd[0]);
		/* the device serves its creator only: a command from here is EPERM */
		dev_cmd_init(&cc, m.addr, NULL, 1);
		ret = uffdx_dev_check_exclusive(dev, &cc);
		printf("   [child %d] its own command on the device fd: %s\n", getpid(),
		       ret == -EPERM ? "EPERM (a device serves only the process it mirrors)" :
		       uffdx_strerror(ret));
		fflush(stdout);
		p = mmap(NULL, m.len, PROT_READ, MAP_SHARED, m.fd, 0);
		if (p == MAP_FAILED)
			_exit(2);
		printf("   [child %d] mapped the region fd at %p and reads page 0 ...\n",
		       getpid(), p);
		fflush(stdout);
		v = *(volatile uint64_t *)p;	/* the revocation happens here */
		if (write(pfd[1], &v, sizeof(v)) != (ssize_t)sizeof(v))
			_exit(3);
		_exit(ret == -EPERM ? 0 : 4);
	}
	close(pfd[1]);
	if (wait_child(pid, &status, WAIT_MS))
		DIE("the child did not finish");
	if (read(pfd[0], &seen, sizeof(seen)) != (ssize_t)sizeof(seen))
		DIE("the child did not report what it read");
	close(pfd[0]);
	if (!WIFEXITED(status) || WEXITSTATUS(status))
		DIE("the child failed (status 0x%x)", status);
	dev_event1(dev, &ev);
	print_dev_event(&ev, ev.offset / ps);
	printf("   the child (pid %d) read %llu: the device's add is there\n", pid,
	       (unsigned long long)seen);
	dev_cmd_init(&c, m.addr, NULL, 1);
	ret = uffdx_dev_check_exclusive(dev, &c);
	dev_stats_get(dev, &st);
	printf("   the device holds it no more (check: %s); revocations %llu\n",
	       ret == -EPERM ? "EPERM" : ret ? uffdx_strerror(ret) : "STILL HELD",
	       (unsigned long long)st.revocations);
	if (ev.type != UFFDX_DEV_EVENT_REVOKED || ev.address != (uintptr_t)m.addr ||
	    ev.pid != (uint32_t)pid || (ev.flags & UFFDX_PF_WRITE) || seen != 42 ||
	    *counter != 42 || ret != -EPERM || st.revocations != 1)
		DIE("the revocation went wrong");
	close(dev);
	uffdx_region_unmap(&m);
	close(ctx);
}

/*
 * Migration: a page's data moves into the device's memory (the slot keeps
 * it, the CPU cannot map it), and a CPU read brings it back, with an event.
 */
static void device_migrate(uint64_t supported)
{
	struct uffdx_region_map m;
	struct uffdx_dev_stats st;
	struct uffdx_dev_event ev;
	struct uffdx_dev_cmd c;
	char *page, seen[64];
	uint8_t moved = 0, b;
	int ctx, dev, ret;

	printf("11. A region page migrates to device memory; a CPU read brings it back\n");
	if (!(supported & UFFDX_FEATURE_DEVICE_MIGRATE)) {
		printf("   skipped: this module does not offer device-migrate\n");
		return;
	}
	ctx = dev_setup(UFFDX_FEATURE_DEVICE_MIGRATE, &m, &dev);
	page = (char *)m.addr + ps;
	memcpy(page, migrated_text, sizeof(migrated_text));
	printf("   the CPU wrote \"%s\" to page 1\n", migrated_text);
	dev_cmd_init(&c, page, &moved, 1);
	ret = uffdx_dev_migrate_to_dev(dev, &c);
	if (ret)
		DIE("uffdx_dev_migrate_to_dev: %s", uffdx_strerror(ret));
	b = dev_snapshot1(dev, page);
	dev_stats_get(dev, &st);
	printf("   migrated to the device: %s; snapshot byte %#04x (%s)\n",
	       moved ? "yes" : "NO", b, snapshot_name(b));
	printf("   device stats: migrated_to_dev %llu, device memory %llu of %llu pages used\n",
	       (unsigned long long)st.migrated_to_dev, (unsigned long long)st.pool_used,
	       (unsigned long long)st.pool_pages);
	if (!moved || (b & 0xf0) != UFFDX_DEV_PROT_DEV_LOCAL || st.pool_used != 1)
		DIE("the page did not migrate");

	memcpy(seen, page, sizeof(seen) - 1);	/* the migration back happens here */
	seen[sizeof(seen) - 1] = 0;
	dev_event1(dev, &ev);
	print_dev_event(&ev, ev.offset / ps);
	printf("   the CPU read: \"%s\"\n", seen);
	b = dev_snapshot1(dev, page);
	dev_stats_get(dev, &st);
	printf("   back in system memory: snapshot byte %#04x (%s); migrated_to_sys %llu, device memory %llu pages used\n",
	       b, snapshot_name(b), (unsigned long long)st.migrated_to_sys,
	       (unsigned long long)st.pool_used);
	if (ev.type != UFFDX_DEV_EVENT_MIGRATED || ev.address != (uintptr_t)page ||
	    ev.pid != (uint32_t)getpid() || (ev.flags & UFFDX_PF_WRITE) ||
	    strcmp(seen, migrated_text) || (b & 0xf0) == UFFDX_DEV_PROT_DEV_LOCAL ||
	    st.migrated_to_sys != 1 || st.pool_used != 0)
		DIE("the migration back went wrong");
	close(dev);
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
	device_exclusive(api.features);
	device_migrate(api.features);
	printf("\nDone.\n");
	return 0;
}
