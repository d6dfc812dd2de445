/* SPDX-License-Identifier: MIT */
/*
 * handler: serve missing-page faults on a uffdx region from a file.
 *
 *   handler [-v] [FILE [PAGES]]       (default: /proc/self/exe, 16 pages)
 *
 * The parent creates a region, maps it, arms it for missing faults and
 * forks two children that read every page of the mapping they inherited,
 * one front to back and one back to front, and check it against FILE.
 * The parent is the fault handler: for each event it reads the page at the
 * event's offset from FILE and COPYs it in, or ZEROes pages past the end
 * of the file, WAKEing instead when the other child's fault got there
 * first.  Its loop is one call per round, uffdx_resolve_wait(): apply the
 * resolutions of the events it read last, and wait for the next events.
 * It exits 0 if both children saw the file's contents.
 *
 * The children touch the mapping only from user mode: passing an armed,
 * unpopulated page to a system call would fail with EFAULT unless the
 * context negotiated UFFDX_FEATURE_KERNEL_FAULTS.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <libuffdx.h>

#define NCHILDREN	2
#define TIMEOUT_SEC	60

struct stats {
	unsigned int events, copied, zeroed, woken;
};

static int verbose;

/* A child: read every page of the region, compare with the file. */
static int touch_pages(const struct uffdx_region_map *map, int file,
		       size_t psize, unsigned int npages, int reverse)
{
	char *want = malloc(psize);
	unsigned int i;

	if (!want)
		return 1;
	for (i = 0; i < npages; i++) {
		unsigned int idx = reverse ? npages - 1 - i : i;
		const char *page = (const char *)map->addr + (size_t)idx * psize;
		ssize_t n;

		memset(want, 0, psize);
		n = pread(file, want, psize, (off_t)idx * (off_t)psize);
		if (n < 0) {
			perror("child: pread");
			free(want);
			return 1;
		}
		/* This read of the region faults; the parent serves it. */
		if (memcmp(page, want, psize)) {
			fprintf(stderr, "child %d: page %u differs from the "
				"file\n", getpid(), idx);
			free(want);
			return 1;
		}
	}
	free(want);
	return 0;
}

#define MAX_EVENTS	16

/*
 * The handler: turn one page fault event into a resolution, a COPY of the
 * page at the event's offset from the file (read into buf), or a ZERO
 * past the end of the file.
 */
static int prepare(const struct uffdx_event *ev, int file, char *buf,
		   size_t psize, struct uffdx_resolution *res)
{
	ssize_t n = pread(file, buf, psize, (off_t)ev->offset);

	if (n < 0)
		return -errno;
	memset(res, 0, sizeof(*res));
	res->region_id = ev->region_id;
	res->offset = ev->offset;
	res->len = psize;
	if (n == 0) {
		res->op = _UFFDX_ZERO;
	} else {
		memset(buf + n, 0, psize - (size_t)n);
		res->op = _UFFDX_COPY;
		res->src = (uint64_t)(uintptr_t)buf;
	}
	if (verbose)
		printf("  pid %u tid %u offset %#" PRIx64 " (%s): %s\n",
		       ev->pid, ev->tid, (uint64_t)ev->offset,
		       ev->flags & UFFDX_PF_WRITE ? "write" : "read",
		       n ? "copy" : "zero");
	return 0;
}

/*
 * One round: apply res[0..*nres) and wait up to 100 ms for the next
 * events.  A resolution that finds its page there already (the other
 * child's fault got there first: EEXIST, or EAGAIN for part of it) is
 * turned into a WAKE and the rest of the batch is submitted again.
 * Returns the number of events read, or -errno.
 */
static int round_trip(int ctx, struct uffdx_resolution *res, unsigned int *nres,
		      struct uffdx_event *ev, struct stats *st)
{
	unsigned int done, i;
	int n;

	for (;;) {
		n = uffdx_resolve_wait(ctx, res, *nres, &done, ev, MAX_EVENTS,
				       100 * 1000 * 1000LL, 0);
		for (i = 0; i < done && i < *nres; i++) {
			if (res[i].op == _UFFDX_COPY)
				st->copied++;
			else if (res[i].op == _UFFDX_ZERO)
				st->zeroed++;
			else
				st->woken++;
		}
		if (n != -EEXIST && n != -EAGAIN)
			break;
		/* res[done] is there already: wake its faulters instead. */
		memmove(res, res + done, (*nres - done) * sizeof(*res));
		*nres -= done;
		res[0].op = _UFFDX_WAKE;
		res[0].mode = 0;
		res[0].src = 0;
	}
	*nres = 0;
	return n;
}

int main(int argc, char **argv)
{
	const char *path = "/proc/self/exe";
	struct uffdx_region_map map;
	struct uffdx_event ev[MAX_EVENTS];
	struct uffdx_resolution res[MAX_EVENTS];
	unsigned int npages = 16, live = 0, nres = 0, i;
	struct stats st = { 0, 0, 0, 0 };
	struct uffdx_api api;
	int ctx, file, ret, status = 0, failed = 0;
	size_t psize = (size_t)sysconf(_SC_PAGESIZE);
	char *buf;

	if (argc > 1 && !strcmp(argv[1], "-v")) {
		verbose = 1;
		argv++;
		argc--;
	}
	if (argc > 1)
		path = argv[1];
	if (argc > 2)
		npages = (unsigned int)strtoul(argv[2], NULL, 0);
	if (argc > 3 || !npages) {
		fprintf(stderr, "usage: handler [-v] [FILE [PAGES]]\n");
		return 2;
	}

	file = open(path, O_RDONLY | O_CLOEXEC);
	buf = malloc(MAX_EVENTS * psize);
	if (file < 0 || !buf) {
		perror(path);
		return 1;
	}

	/* Blocking: uffdx_resolve_wait() sleeps for events (100 ms at most). */
	ctx = uffdx_open_api(UFFDX_FEATURE_REGIONS | UFFDX_FEATURE_MISSING, 0,
			     &api);
	if (ctx == -ENOENT) {
		fprintf(stderr, "no %s: is the uffdx module loaded?\n",
			UFFDX_DEVICE_PATH);
		return 1;
	}
	if (ctx < 0) {
		fprintf(stderr, "uffdx: %s\n", uffdx_strerror(ctx));
		return 1;
	}
	printf("uffdx module %u.%u.%u, features %#" PRIx64 "\n",
	       UFFDX_VERSION_MAJOR(api.module_version),
	       UFFDX_VERSION_MINOR(api.module_version),
	       UFFDX_VERSION_PATCH(api.module_version),
	       (uint64_t)api.features);

	ret = uffdx_region_map(ctx, (uint64_t)npages * psize, 0, &map);
	if (ret < 0) {
		fprintf(stderr, "region: %s\n", uffdx_strerror(ret));
		return 1;
	}
	ret = uffdx_arm(ctx, map.id, 0, map.len, UFFDX_ARM_MISSING);
	if (ret < 0) {
		fprintf(stderr, "arm: %s\n", uffdx_strerror(ret));
		return 1;
	}
	printf("region %" PRIu64 ": %u pages at %p, armed; serving from %s\n",
	       map.id, npages, map.addr, path);

	fflush(stdout);
	for (i = 0; i < NCHILDREN; i++) {
		pid_t pid = fork();

		if (pid < 0) {
			perror("fork");
			failed = 1;
			break;
		}
		if (pid == 0) {
			close(ctx);	/* the handler is the parent */
			_exit(touch_pages(&map, file, psize, npages, i & 1));
		}
		live++;
	}

	/* If the module never wakes a child, dying releases the context:
	 * the children then get SIGBUS instead of hanging. */
	alarm(TIMEOUT_SEC);
	while (live) {
		int n, j;

		n = round_trip(ctx, res, &nres, ev, &st);
		if (n < 0 && n != -EINTR) {
			fprintf(stderr, "resolve: %s\n", uffdx_strerror(n));
			failed = 1;
			break;
		}
		for (j = 0; j < n; j++) {
			st.events++;
			if (ev[j].type != UFFDX_EVENT_PAGEFAULT)
				continue;	/* no other events yet */
			ret = prepare(&ev[j], file, buf + (size_t)nres * psize,
				      psize, &res[nres]);
			if (ret < 0) {
				fprintf(stderr, "read offset %#" PRIx64 ": %s\n",
					(uint64_t)ev[j].offset,
					uffdx_strerror(ret));
				failed = 1;
				continue;
			}
			nres++;
		}
		while (live && waitpid(-1, &status, WNOHANG) > 0) {
			live--;
			if (!WIFEXITED(status) || WEXITSTATUS(status))
				failed = 1;
		}
	}

	printf("%u events: %u pages copied, %u zeroed, %u already there "
	       "(woken)\n", st.events, st.copied, st.zeroed, st.woken);
	uffdx_region_unmap(&map);
	close(ctx);
	close(file);
	free(buf);
	printf("%s\n", failed ? "FAIL" : "ok: both children saw the file");
	return failed;
}
