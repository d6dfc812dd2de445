// SPDX-License-Identifier: GPL-2.0
/*
 * Fault round-trip benchmark: uffdx against the kernel's own userfaultfd.
 *
 *   bench_fault [-n ITERATIONS] [-r ROUNDS] [-s] [-k]
 *
 *   -n  faults per round and mechanism (default 2000)
 *   -r  rounds (default 5): the two mechanisms alternate, round by round,
 *       so that drift in the guest (TCG) hits both alike; the medians are
 *       over all rounds' samples
 *   -s  spread: let the scheduler place the threads (default: faulter and
 *       handler share one CPU, so a round trip is two context switches and
 *       no cross-CPU wakeup, whose cost under TCG is mostly emulation noise)
 *   -k  kernel userfaultfd only
 *
 * One round trip: a thread touches an armed, unpopulated page; the fault
 * becomes an event; a handler thread blocked in read() gets it and COPYs a
 * page in; the faulting thread resumes.  The faulting thread times each
 * access.  The same is done with userfaultfd(UFFD_USER_MODE_ONLY) on
 * anonymous memory (UFFDIO_REGISTER_MODE_MISSING, UFFDIO_COPY), in the same
 * run, and the medians are compared:
 *
 *   median fault-copy-roundtrip uffdx <ns> ns (N=<n>)
 *   median fault-copy-roundtrip kernel-uffd <ns> ns (N=<n>)
 *   ratio fault-copy-roundtrip uffdx/kernel-uffd <ratio> (<uname -r>)
 *
 * In the same run, two more comparisons, alternating with the first:
 *
 *   fault-resolve-wait-roundtrip: the same round trip, but the uffdx
 *       handler makes one call per fault, uffdx_resolve_wait() (resolve the
 *       previous fault, wait for the next), against the kernel's best loop:
 *       a blocking read() of the userfaultfd and UFFDIO_COPY, no poll; the
 *       two sides alternate RW_ALT times per round;
 *   fault-throughput-8: 8 faulting threads, each on its own pages, and one
 *       handler; the time from their start to the last fault resolved.
 *       uffdx: uffdx_resolve_wait() resolving every event of the previous
 *       call in one batch; kernel: one userfaultfd, read() of all queued
 *       messages (up to 64) and one UFFDIO_COPY per event.
 *
 * All threads of both sides run on CPU 0 (or, with -s, wherever the
 * scheduler puts them).  In every round, one more instrumented run per
 * mechanism and round-trip mode, not timed for the ratios, gives "where
 * the time goes", from user space (CLOCK_MONOTONIC stamps in the faulter
 * and the handler, syscall counts; see stage_names[]), then baselines (a
 * null system call, a clock read, a first write with no handler):
 *
 *   stage <mode>:<stage> <uffdx|kernel-uffd> <median ns, or a count>
 *
 * Not pass/fail: exit 0 unless something errors (1), 4 if either side is
 * unavailable.
 */
#include "helpers.h"

#include <fcntl.h>
#include <sched.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

#define WARMUP 100
#define HANDLER_TIMEOUT_MS 10000
#define HANDLER_TIMEOUT_NS (HANDLER_TIMEOUT_MS * 1000000LL)
/* fault-throughput-8: threads, faults per thread, repetitions per round */
#define TP_THREADS 8
#define TP_PER_THREAD 250
#define TP_REPS 3
/* events per handler call in the throughput runs */
#define TP_BATCH 64
/* fault-resolve-wait-roundtrip: the two sides alternate this often per round */
#define RW_ALT 4

static int iters = 2000;
static int rounds = 5;

/* All samples of one mechanism, over every round. */
struct samples {
	uint64_t *ns;
	int n;
};

/* How the handler serves faults. */
enum hmode {
	H_POLL,		/* poll(), read(), COPY: fault-copy-roundtrip */
	H_WAIT,		/* uffdx_resolve_wait() / blocking read() + UFFDIO_COPY */
	H_TP,		/* as H_WAIT, batched: fault-throughput-8 */
};

/* Per-fault stamps of an instrumented round (index: page). */
struct stamps {
	uint64_t *t0;		/* faulter: before the access */
	uint64_t *t1;		/* faulter: after it */
	uint64_t *wake;		/* handler: its blocking call returned with the event */
	uint64_t *ev;		/* handler: it has read the event */
	uint64_t *res;		/* handler: enters the call that resolves it */
	uint64_t *resd;		/* handler: that call returned (not for resolve_wait) */
};

struct bench {
	int fd;			/* uffdx context or userfaultfd */
	int kernel;		/* 1: userfaultfd */
	uint64_t region_id;	/* uffdx */
	uint8_t *area;
	int npages;
	uint8_t *src;
	int err;
	enum hmode mode;
	struct stamps *st;	/* instrumented round, or NULL */
	unsigned long syscalls;	/* handler's system calls */
	unsigned long waits;	/* handler calls that returned events */
	unsigned long events;	/* events they returned */
	pthread_t handler;
	void *(*fn)(void *);	/* the handler loop */
	volatile int hdone;	/* it returned */
};

static void stamp(uint64_t *arr, int k)
{
	arr[k] = now_ns();
}

/*
 * A handler that fails must not leave its faulters asleep: uffdx disarms
 * the region (its faults then fill with zeroes), the kernel side
 * unregisters the range (which wakes them, and they fault in zeroes).
 */
static void handler_failed(struct bench *b, int err)
{
	if (!b->err)
		b->err = err;
	if (b->kernel) {
		struct uffdio_range r = {
			.start = (uintptr_t)b->area,
			.len = (uint64_t)b->npages * ps,
		};

		ioctl(b->fd, UFFDIO_UNREGISTER, &r);
	} else {
		uffdx_disarm(b->fd, b->region_id, 0, (uint64_t)b->npages * ps);
	}
}

static void *uffdx_handler(void *arg)
{
	struct bench *b = arg;
	struct uffdx_event ev;
	int i, ret;

	for (i = 0; i < b->npages; i++) {
		uint64_t t = 0;
		int64_t res;
		int k;

		if (wait_fd(b->fd, POLLIN, HANDLER_TIMEOUT_MS) != 1) {
			handler_failed(b, ETIMEDOUT);
			break;
		}
		if (b->st)
			t = now_ns();
		ret = uffdx_read_events(b->fd, &ev, 1);
		b->syscalls += 2;
		if (ret != 1) {
			handler_failed(b, ret < 0 ? -ret : EIO);
			break;
		}
		k = (int)(ev.offset / ps);
		if (b->st && k < b->npages) {
			b->st->wake[k] = t;
			stamp(b->st->ev, k);
			stamp(b->st->res, k);
		}
		ret = uffdx_copy(b->fd, ev.region_id, ev.offset, b->src, ps, 0, &res);
		b->syscalls++;
		if (b->st && k < b->npages)
			stamp(b->st->resd, k);
		if (ret) {
			handler_failed(b, -ret);
			break;
		}
	}
	return NULL;
}

/*
 * One call per fault: resolve the previous fault and wait for the next.
 * H_TP: up to TP_BATCH events per call, all resolved in the next one.
 */
static void *uffdx_wait_handler(void *arg)
{
	struct bench *b = arg;
	struct uffdx_resolution res[TP_BATCH];
	struct uffdx_event ev[TP_BATCH];
	unsigned int nres = 0, done, max = b->mode == H_TP ? TP_BATCH : 1, j;
	int served = 0, n;

	memset(res, 0, sizeof(res));
	while (served < b->npages) {
		if (b->st)
			for (j = 0; j < nres; j++)
				stamp(b->st->res, (int)(res[j].offset / ps));
		n = uffdx_resolve_wait(b->fd, res, nres, &done, ev, max, HANDLER_TIMEOUT_NS, 0);
		b->syscalls++;
		if (n <= 0) {
			handler_failed(b, n < 0 ? -n : ETIMEDOUT);
			return NULL;
		}
		b->waits++;
		b->events += (unsigned long)n;
		nres = 0;
		for (j = 0; j < (unsigned int)n; j++) {
			int k = (int)(ev[j].offset / ps);

			if (b->st && k < b->npages) {
				stamp(b->st->wake, k);
				b->st->ev[k] = b->st->wake[k];
			}
			res[nres].op = _UFFDX_COPY;
			res[nres].region_id = ev[j].region_id;
			res[nres].offset = ev[j].offset;
			res[nres].len = ps;
			res[nres].src = (uintptr_t)b->src;
			nres++;
		}
		served += n;
	}
	/* the last resolutions, without waiting */
	if (b->st)
		for (j = 0; j < nres; j++)
			stamp(b->st->res, (int)(res[j].offset / ps));
	n = uffdx_resolve_wait(b->fd, res, nres, &done, NULL, 0, 0, UFFDX_RESOLVE_NOWAIT);
	b->syscalls++;
	if (n < 0)
		handler_failed(b, -n);
	return NULL;
}

static void *kernel_handler(void *arg)
{
	struct bench *b = arg;
	struct uffd_msg msg;
	int i;

	for (i = 0; i < b->npages; i++) {
		struct uffdio_copy c;
		uint64_t t = 0;
		int k, ret;

		if (wait_fd(b->fd, POLLIN, HANDLER_TIMEOUT_MS) != 1) {
			handler_failed(b, ETIMEDOUT);
			break;
		}
		if (b->st)
			t = now_ns();
		b->syscalls += 2;
		if (read(b->fd, &msg, sizeof(msg)) != sizeof(msg)) {
			handler_failed(b, errno ? errno : EIO);
			break;
		}
		if (msg.event != UFFD_EVENT_PAGEFAULT) {
			handler_failed(b, EPROTO);
			break;
		}
		memset(&c, 0, sizeof(c));
		c.dst = msg.arg.pagefault.address & ~((uint64_t)ps - 1);
		c.src = (uintptr_t)b->src;
		c.len = ps;
		k = (int)((c.dst - (uintptr_t)b->area) / ps);
		if (b->st && k < b->npages) {
			b->st->wake[k] = t;
			stamp(b->st->ev, k);
			stamp(b->st->res, k);
		}
		ret = ioctl(b->fd, UFFDIO_COPY, &c);
		b->syscalls++;
		if (b->st && k < b->npages)
			stamp(b->st->resd, k);
		if (ret) {
			handler_failed(b, errno);
			break;
		}
	}
	return NULL;
}

/* The kernel's best loop: blocking read() (of all queued messages for H_TP), UFFDIO_COPY each. */
static void *kernel_wait_handler(void *arg)
{
	struct bench *b = arg;
	struct uffd_msg msg[TP_BATCH];
	size_t want = (b->mode == H_TP ? TP_BATCH : 1) * sizeof(msg[0]);
	int served = 0;

	while (served < b->npages) {
		ssize_t n = read(b->fd, msg, want);
		int j, cnt;

		b->syscalls++;
		if (n <= 0 || n % (ssize_t)sizeof(msg[0])) {
			handler_failed(b, n < 0 ? errno : EIO);
			return NULL;
		}
		cnt = (int)(n / (ssize_t)sizeof(msg[0]));
		b->waits++;
		b->events += (unsigned long)cnt;
		for (j = 0; j < cnt; j++) {
			struct uffdio_copy c;
			int k, ret;

			if (msg[j].event != UFFD_EVENT_PAGEFAULT) {
				handler_failed(b, EPROTO);
				return NULL;
			}
			memset(&c, 0, sizeof(c));
			c.dst = msg[j].arg.pagefault.address & ~((uint64_t)ps - 1);
			c.src = (uintptr_t)b->src;
			c.len = ps;
			k = (int)((c.dst - (uintptr_t)b->area) / ps);
			if (b->st && k < b->npages) {
				stamp(b->st->wake, k);
				b->st->ev[k] = b->st->wake[k];
				b->st->res[k] = b->st->wake[k];
			}
			ret = ioctl(b->fd, UFFDIO_COPY, &c);
			b->syscalls++;
			if (b->st && k < b->npages)
				stamp(b->st->resd, k);
			if (ret) {
				handler_failed(b, errno);
				return NULL;
			}
		}
		served += cnt;
	}
	return NULL;
}

static void *handler_main(void *arg)
{
	struct bench *b = arg;

	b->fn(b);
	__atomic_store_n(&b->hdone, 1, __ATOMIC_SEQ_CST);
	return NULL;
}

static int start_handler(struct bench *b)
{
	if (b->mode == H_POLL)
		b->fn = b->kernel ? kernel_handler : uffdx_handler;
	else
		b->fn = b->kernel ? kernel_wait_handler : uffdx_wait_handler;
	return pthread_create(&b->handler, NULL, handler_main, b);
}

/*
 * The faulters stopped early (b->err): the handler waits for faults that
 * will not come.  A blocking read() has no timeout: interrupt it
 * (SIGALRM has a handler without SA_RESTART, see helpers.c).
 */
static void stop_handler(struct bench *b)
{
	int i;

	for (i = 0; i < 1000 && !__atomic_load_n(&b->hdone, __ATOMIC_SEQ_CST); i++) {
		pthread_kill(b->handler, SIGALRM);
		usleep(10000);
	}
	pthread_join(b->handler, NULL);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Time every fault of one round into @out; returns 0 or an errno. */
static int run(struct bench *b, const char *name, struct samples *out)
{
	uint64_t *lat = calloc(b->npages, sizeof(*lat));
	int i;

	if (!lat)
		return ENOMEM;
	if (start_handler(b)) {
		free(lat);
		return EAGAIN;
	}
	for (i = 0; i < b->npages && !b->err; i++) {
		volatile uint8_t *p = b->area + (size_t)i * ps;
		uint64_t t0 = now_ns(), t1;

		(void)*p;
		t1 = now_ns();
		lat[i] = t1 - t0;
		if (b->st) {
			b->st->t0[i] = t0;
			b->st->t1[i] = t1;
		}
		if (*p != b->src[0]) {
			fprintf(stderr, "%s: page %d has wrong contents\n", name, i);
			b->err = EIO;
		}
	}
	stop_handler(b);
	if (b->err) {
		fprintf(stderr, "%s: %s\n", name, strerror(b->err));
		free(lat);
		return b->err;
	}
	if (out)
		for (i = WARMUP; i < b->npages; i++)
			out->ns[out->n++] = lat[i];
	free(lat);
	return 0;
}

struct tp_arg {
	struct bench *b;
	pthread_barrier_t *start;
	int first, n;
	int err;
};

static void *tp_faulter(void *p)
{
	struct tp_arg *t = p;
	int i;

	pthread_barrier_wait(t->start);
	for (i = t->first; i < t->first + t->n && !t->b->err; i++) {
		volatile uint8_t *q = t->b->area + (size_t)i * ps;

		if (*q != t->b->src[0]) {
			t->err = EIO;
			break;
		}
	}
	return NULL;
}

/* fault-throughput-8: TP_THREADS faulters, one handler; *ns is the time. */
static int run_tp(struct bench *b, const char *name, uint64_t *ns)
{
	struct tp_arg args[TP_THREADS];
	pthread_t th[TP_THREADS];
	pthread_barrier_t start;
	uint64_t t0;
	int i, err = 0;

	pthread_barrier_init(&start, NULL, TP_THREADS + 1);
	if (start_handler(b))
		return EAGAIN;
	for (i = 0; i < TP_THREADS; i++) {
		args[i] = (struct tp_arg){ .b = b, .start = &start,
					   .first = i * TP_PER_THREAD, .n = TP_PER_THREAD };
		if (pthread_create(&th[i], NULL, tp_faulter, &args[i])) {
			fprintf(stderr, "%s: cannot start faulters\n", name);
			exit(1);
		}
	}
	pthread_barrier_wait(&start);
	t0 = now_ns();
	for (i = 0; i < TP_THREADS; i++) {
		pthread_join(th[i], NULL);
		if (args[i].err && !err)
			err = args[i].err;
	}
	*ns = now_ns() - t0;
	if (err && !b->err)
		b->err = err;
	stop_handler(b);
	pthread_barrier_destroy(&start);
	if (b->err || err) {
		fprintf(stderr, "%s throughput: %s\n", name, strerror(b->err ? b->err : err));
		return b->err ? b->err : err;
	}
	return 0;
}

static uint64_t median(uint64_t *v, int n)
{
	if (n <= 0)
		return 0;
	qsort(v, n, sizeof(*v), cmp_u64);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* Print the median (and p10/p90) of @s; returns the median, at least 1. */
static uint64_t report_metric(const char *metric, const char *name, struct samples *s)
{
	uint64_t med;
	int n = s->n;

	med = median(s->ns, n);
	printf("median %s %s %llu ns (N=%d over %d rounds, p10 %llu, p90 %llu)\n",
	       metric, name, (unsigned long long)med, n, rounds,
	       (unsigned long long)s->ns[n / 10], (unsigned long long)s->ns[n * 9 / 10]);
	fflush(stdout);
	return med ? med : 1;
}

/* Of two sorted sample sets: the ratio of their 10th percentiles. */
static double p10_ratio(const struct samples *a, const struct samples *b)
{
	uint64_t pa = a->ns[a->n / 10], pb = b->ns[b->n / 10];

	return pb ? (double)pa / (double)pb : 0.0;
}

static uint64_t report(const char *name, struct samples *s)
{
	return report_metric("fault-copy-roundtrip", name, s);
}

/* One measurement: a round of round trips, or one throughput run. */
struct job {
	enum hmode mode;
	struct samples *out;	/* round trips (H_POLL, H_WAIT) */
	struct stamps *st;	/* instrumented round */
	uint64_t tp_ns;		/* H_TP: the run's time */
	unsigned long syscalls, waits, events;	/* the handler's */
};

static int run_job(struct bench *b, const char *name, struct job *j)
{
	int ret;

	b->mode = j->mode;
	b->st = j->st;
	ret = j->mode == H_TP ? run_tp(b, name, &j->tp_ns) : run(b, name, j->out);
	j->syscalls = b->syscalls;
	j->waits = b->waits;
	j->events = b->events;
	return ret;
}

static int bench_uffdx(uint8_t *src, int npages, struct job *j)
{
	struct uffdx_region_map m;
	struct bench b = { 0 };
	int ret;

	b.fd = ctx_open(DEFAULT_FEATURES, 0);
	if (b.fd < 0) {
		fprintf(stderr, "uffdx context: %s\n", strerror(-b.fd));
		return -b.fd;
	}
	ret = uffdx_region_map(b.fd, (uint64_t)npages * ps, 0, &m);
	if (ret) {
		fprintf(stderr, "uffdx region: %s\n", strerror(-ret));
		close(b.fd);
		return -ret;
	}
	ret = uffdx_arm(b.fd, m.id, 0, m.len, UFFDX_ARM_MISSING);
	if (ret) {
		fprintf(stderr, "uffdx arm: %s\n", strerror(-ret));
		uffdx_region_unmap(&m);
		close(b.fd);
		return -ret;
	}
	b.area = m.addr;
	b.region_id = m.id;
	b.npages = npages;
	b.src = src;
	ret = run_job(&b, "uffdx", j);
	uffdx_region_unmap(&m);
	close(b.fd);
	return ret;
}

/* 0, or an errno with *skip set if userfaultfd is not available here. */
static int bench_kernel(uint8_t *src, int npages, struct job *j, int *skip)
{
	struct uffdio_register reg;
	struct uffdio_api api;
	struct bench b = { 0 };
	size_t len = (size_t)npages * ps;
	int fd, ret;

	fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | UFFD_USER_MODE_ONLY);
	if (fd < 0 && errno == EINVAL)	/* before 5.11 */
		fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "userfaultfd: %s\n", strerror(errno));
		*skip = 1;
		return errno;
	}
	memset(&api, 0, sizeof(api));
	api.api = UFFD_API;
	if (ioctl(fd, UFFDIO_API, &api)) {
		fprintf(stderr, "UFFDIO_API: %s\n", strerror(errno));
		close(fd);
		return EIO;
	}
	b.area = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (b.area == MAP_FAILED) {
		close(fd);
		return ENOMEM;
	}
	memset(&reg, 0, sizeof(reg));
	reg.range.start = (uintptr_t)b.area;
	reg.range.len = len;
	reg.mode = UFFDIO_REGISTER_MODE_MISSING;
	if (ioctl(fd, UFFDIO_REGISTER, &reg)) {
		fprintf(stderr, "UFFDIO_REGISTER: %s\n", strerror(errno));
		munmap(b.area, len);
		close(fd);
		return EIO;
	}
	b.fd = fd;
	b.kernel = 1;
	b.npages = npages;
	b.src = src;
	ret = run_job(&b, "kernel-uffd", j);
	munmap(b.area, len);
	close(fd);
	return ret;
}

/* ---- where the time goes ------------------------------------------------------- */

static struct stamps *stamps_new(int npages)
{
	struct stamps *st = calloc(1, sizeof(*st));
	uint64_t **f[] = { &st->t0, &st->t1, &st->wake, &st->ev, &st->res, &st->resd };
	unsigned int i;

	if (!st)
		return NULL;
	for (i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
		*f[i] = calloc(npages, sizeof(uint64_t));
		if (!*f[i])
			return NULL;
	}
	return st;
}

static void stamps_free(struct stamps *st)
{
	if (!st)
		return;
	free(st->t0);
	free(st->t1);
	free(st->wake);
	free(st->ev);
	free(st->res);
	free(st->resd);
	free(st);
}

/*
 * The stages of a round trip, as user space sees them; on one CPU they
 * partition it (wake-up + handler + resolve = round trip):
 *  fault-to-handler-wakeup: the access faults, the event is queued, the
 *      handler is woken and its waiting call returns (poll(), read() or
 *      RESOLVE);
 *  handler-until-resolve-call: the handler in user space until it enters
 *      the call that resolves the fault (in poll mode: including read());
 *  read-event-syscall: (poll mode) the read() of the event, after poll();
 *  resolve-call-to-faulter-resumed: the resolving call (COPY, or RESOLVE
 *      with the COPY) until the faulter is back in user space.
 */
enum { S_WAKE, S_HANDLER, S_READ, S_RESOLVE, S_RT, S_NR };

static const char *const stage_names[S_NR] = {
	"fault-to-handler-wakeup", "handler-until-resolve-call", "read-event-syscall",
	"resolve-call-to-faulter-resumed", "roundtrip-instrumented",
};

struct stage_acc {
	struct samples s[S_NR];
	unsigned long syscalls, faults;
};

static int stage_acc_init(struct stage_acc *a, size_t n)
{
	int i;

	memset(a, 0, sizeof(*a));
	for (i = 0; i < S_NR; i++) {
		a->s[i].ns = calloc(n, sizeof(uint64_t));
		if (!a->s[i].ns)
			return -1;
	}
	return 0;
}

static void stage_push(struct samples *s, const uint64_t *a, const uint64_t *b, int k)
{
	if (a[k] && b[k] && b[k] >= a[k])
		s->ns[s->n++] = b[k] - a[k];
}

static void stage_acc_add(struct stage_acc *a, const struct stamps *st, int npages,
			  const struct job *j)
{
	int k;

	for (k = WARMUP; k < npages; k++) {
		stage_push(&a->s[S_WAKE], st->t0, st->wake, k);
		stage_push(&a->s[S_HANDLER], st->wake, st->res, k);
		stage_push(&a->s[S_READ], st->wake, st->ev, k);
		stage_push(&a->s[S_RESOLVE], st->res, st->t1, k);
		stage_push(&a->s[S_RT], st->t0, st->t1, k);
	}
	a->syscalls += j->syscalls;
	a->faults += (unsigned long)npages;
}

static void stage_acc_print(const char *mode_name, const char *side, struct stage_acc *a,
			    int poll_mode)
{
	int i;

	for (i = 0; i < S_NR; i++) {
		if (i == S_READ && !poll_mode)
			continue;
		printf("stage %s:%s %s %llu\n", mode_name, stage_names[i], side,
		       (unsigned long long)median(a->s[i].ns, a->s[i].n));
	}
	printf("stage %s:handler-syscalls-per-fault %s %.2f\n", mode_name, side,
	       a->faults ? (double)a->syscalls / a->faults : 0.0);
}

/* One instrumented round of @mode on one side, added to @acc. */
static int stages_round(struct stage_acc *acc, enum hmode mode, int kernel, uint8_t *src,
			int npages)
{
	struct stamps *st = stamps_new(npages);
	struct job j = { .mode = mode, .st = st };
	int skip = 0, ret;

	if (!st)
		return ENOMEM;
	ret = kernel ? bench_kernel(src, npages, &j, &skip) : bench_uffdx(src, npages, &j);
	if (!ret)
		stage_acc_add(acc, st, npages, &j);
	stamps_free(st);
	return ret;
}

/* Per-call cost of a null system call and of the clock read the stamps use. */
static void stages_baselines(int npages)
{
	uint64_t v[21], t0;
	struct uffdx_region_map m;
	uint8_t *anon;
	int i, k;

	for (i = 0; i < 21; i++) {
		t0 = now_ns();
		for (k = 0; k < 1000; k++)
			syscall(SYS_getppid);
		v[i] = (now_ns() - t0) / 1000;
	}
	printf("stage baseline:null-syscall guest %llu\n", (unsigned long long)median(v, 21));
	for (i = 0; i < 21; i++) {
		t0 = now_ns();
		for (k = 0; k < 1000; k++)
			(void)now_ns();
		v[i] = (now_ns() - t0) / 1000;
	}
	printf("stage baseline:clock-gettime guest %llu\n", (unsigned long long)median(v, 21));

	/* a first write with no handler: a region's unarmed hole, fresh anonymous memory */
	{
		uint64_t *d = calloc(npages, sizeof(*d));
		int ctx = ctx_open(DEFAULT_FEATURES, 0);

		if (d && ctx >= 0 && !uffdx_region_map(ctx, (uint64_t)npages * ps, 0, &m)) {
			for (k = 0; k < npages; k++) {
				volatile uint8_t *p = (uint8_t *)m.addr + (size_t)k * ps;

				t0 = now_ns();
				*p = 1;
				d[k] = now_ns() - t0;
			}
			printf("stage baseline:first-touch-no-handler uffdx %llu\n",
			       (unsigned long long)median(d + WARMUP, npages - WARMUP));
			uffdx_region_unmap(&m);
		}
		if (ctx >= 0)
			close(ctx);
		anon = mmap(NULL, (size_t)npages * ps, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (d && anon != MAP_FAILED) {
			/* a page per fault, as the region: no THP, no zero page */
			madvise(anon, (size_t)npages * ps, MADV_NOHUGEPAGE);
			for (k = 0; k < npages; k++) {
				volatile uint8_t *p = anon + (size_t)k * ps;

				t0 = now_ns();
				*p = 1;
				d[k] = now_ns() - t0;
			}
			printf("stage baseline:first-touch-no-handler kernel-uffd %llu\n",
			       (unsigned long long)median(d + WARMUP, npages - WARMUP));
			munmap(anon, (size_t)npages * ps);
		}
		free(d);
	}
	fflush(stdout);
}

/* What a throughput side added up over its runs. */
struct tp_total {
	uint64_t *ns;
	int n;
	unsigned long syscalls, waits, events, faults;
};

static void tp_add(struct tp_total *t, const struct job *j)
{
	t->ns[t->n++] = j->tp_ns;
	t->syscalls += j->syscalls;
	t->waits += j->waits;
	t->events += j->events;
	t->faults += TP_THREADS * TP_PER_THREAD;
}

static uint64_t tp_report(const char *name, struct tp_total *t)
{
	uint64_t med = median(t->ns, t->n);

	printf("median fault-throughput-8 %s %llu ns for %d faults (N=%d runs, min %llu, max %llu)\n",
	       name, (unsigned long long)med, TP_THREADS * TP_PER_THREAD, t->n,
	       (unsigned long long)t->ns[0], (unsigned long long)t->ns[t->n - 1]);
	printf("stage throughput-8:per-fault %s %llu\n", name,
	       (unsigned long long)(med / (TP_THREADS * TP_PER_THREAD)));
	printf("stage throughput-8:handler-syscalls-per-fault %s %.2f\n", name,
	       (double)t->syscalls / t->faults);
	printf("stage throughput-8:events-per-wait %s %.2f\n", name,
	       t->waits ? (double)t->events / t->waits : 0.0);
	fflush(stdout);
	return med ? med : 1;
}

int main(int argc, char **argv)
{
	struct samples su = { 0 }, sk = { 0 }, wu = { 0 }, wk = { 0 };
	struct tp_total tu = { 0 }, tk = { 0 };
	struct stage_acc sa[2][2];	/* [poll, wait][uffdx, kernel] */
	int m, side;
	int opt, skip = 0, npages, kernel_only = 0, spread = 0, r, rep;
	struct utsname u;
	uint64_t mu, mk;
	uint8_t *src;

	while ((opt = getopt(argc, argv, "n:r:sk")) != -1) {
		if (opt == 'n')
			iters = atoi(optarg);
		else if (opt == 'r')
			rounds = atoi(optarg);
		else if (opt == 's')
			spread = 1;
		else if (opt == 'k')
			kernel_only = 1;
		else {
			fprintf(stderr, "usage: %s [-n ITERATIONS] [-r ROUNDS] [-s] [-k]\n", argv[0]);
			return 1;
		}
	}
	if (iters < 10 || rounds < 1) {
		fprintf(stderr, "need at least 10 iterations and 1 round\n");
		return 1;
	}
	npages = iters + WARMUP;
	src = aligned_alloc(ps, ps);
	su.ns = calloc((size_t)iters * rounds, sizeof(*su.ns));
	sk.ns = calloc((size_t)iters * rounds, sizeof(*sk.ns));
	wu.ns = calloc((size_t)iters * rounds, sizeof(*wu.ns));
	wk.ns = calloc((size_t)iters * rounds, sizeof(*wk.ns));
	tu.ns = calloc((size_t)TP_REPS * rounds, sizeof(*tu.ns));
	tk.ns = calloc((size_t)TP_REPS * rounds, sizeof(*tk.ns));
	if (!src || !su.ns || !sk.ns || !wu.ns || !wk.ns || !tu.ns || !tk.ns)
		return 1;
	for (m = 0; m < 2; m++)
		for (side = 0; side < 2; side++)
			if (stage_acc_init(&sa[m][side], (size_t)iters * rounds))
				return 1;
	memset(src, 0x5a, ps);
	uname(&u);
	if (!spread) {
		cpu_set_t cpus;

		/* The handler and faulter threads inherit this. */
		CPU_ZERO(&cpus);
		CPU_SET(0, &cpus);
		if (sched_setaffinity(0, sizeof(cpus), &cpus))
			fprintf(stderr, "sched_setaffinity: %s (threads spread)\n",
				strerror(errno));
	}
	printf("# %d rounds of %d faults per mechanism, alternating; threads %s\n",
	       rounds, iters, spread ? "spread" : "on CPU 0");
	if (kernel_only) {
		struct job j = { .mode = H_POLL, .out = &sk };

		for (r = 0; r < rounds; r++)
			if (bench_kernel(src, npages, &j, &skip))
				return skip ? 4 : 1;
		report("kernel-uffd", &sk);
		return 0;
	}
	if (!uffdx_present()) {
		printf("# SKIP " UFFDX_DEV " not present (uffdx module not loaded)\n");
		return 4;
	}

	for (r = 0; r < rounds; r++) {
		struct job ju = { .mode = H_POLL, .out = &su }, jk = { .mode = H_POLL, .out = &sk };

		if (bench_uffdx(src, npages, &ju))
			return 1;
		if (bench_kernel(src, npages, &jk, &skip)) {
			if (skip) {
				printf("# SKIP kernel userfaultfd not available: no ratio\n");
				return 4;
			}
			return 1;
		}
		/* finer alternation: bursts of host noise hit both sides alike */
		for (rep = 0; rep < RW_ALT; rep++) {
			ju = (struct job){ .mode = H_WAIT, .out = &wu };
			jk = (struct job){ .mode = H_WAIT, .out = &wk };
			if (bench_uffdx(src, iters / RW_ALT + WARMUP, &ju) ||
			    bench_kernel(src, iters / RW_ALT + WARMUP, &jk, &skip))
				return 1;
		}
		for (rep = 0; rep < TP_REPS; rep++) {
			ju = (struct job){ .mode = H_TP };
			jk = (struct job){ .mode = H_TP };
			if (bench_uffdx(src, TP_THREADS * TP_PER_THREAD, &ju) ||
			    bench_kernel(src, TP_THREADS * TP_PER_THREAD, &jk, &skip))
				return 1;
			tp_add(&tu, &ju);
			tp_add(&tk, &jk);
		}
		/* where the time goes: instrumented rounds, apart from the timed ones */
		for (m = 0; m < 2; m++)
			for (side = 0; side < 2; side++)
				if (stages_round(&sa[m][side], m ? H_WAIT : H_POLL, side, src, npages))
					return 1;
	}
	mu = report("uffdx", &su);
	mk = report("kernel-uffd", &sk);
	printf("ratio fault-copy-roundtrip uffdx/kernel-uffd %.3f (%s)\n",
	       (double)mu / (double)mk, u.release);
	printf("# p10 ratio fault-copy-roundtrip uffdx/kernel-uffd %.3f\n", p10_ratio(&su, &sk));

	printf("# fault-resolve-wait-roundtrip: uffdx_resolve_wait(), one call per fault; "
	       "kernel: blocking read() + UFFDIO_COPY; %d alternations per round\n", RW_ALT);
	mu = report_metric("fault-resolve-wait-roundtrip", "uffdx", &wu);
	mk = report_metric("fault-resolve-wait-roundtrip", "kernel-uffd", &wk);
	printf("ratio fault-resolve-wait-roundtrip uffdx/kernel-uffd %.3f (%s)\n",
	       (double)mu / (double)mk, u.release);
	printf("# p10 ratio fault-resolve-wait-roundtrip uffdx/kernel-uffd %.3f\n",
	       p10_ratio(&wu, &wk));

	printf("# fault-throughput-8: %d threads x %d faults, one handler, %d runs per round; "
	       "uffdx: uffdx_resolve_wait() batches; kernel: read() up to %d messages + "
	       "UFFDIO_COPY each\n", TP_THREADS, TP_PER_THREAD, TP_REPS, TP_BATCH);
	mu = tp_report("uffdx", &tu);
	mk = tp_report("kernel-uffd", &tk);
	printf("ratio fault-throughput-8 uffdx/kernel-uffd %.3f (%s)\n",
	       (double)mu / (double)mk, u.release);
	fflush(stdout);

	/* where the time goes */
	printf("# stages: median ns per fault from CLOCK_MONOTONIC stamps (faulter and handler) in "
	       "separate instrumented rounds, one per round and mode, alternating\n");
	for (m = 0; m < 2; m++)
		for (side = 0; side < 2; side++)
			stage_acc_print(m ? "resolve-wait-roundtrip" : "copy-roundtrip",
					side ? "kernel-uffd" : "uffdx", &sa[m][side], !m);
	stages_baselines(npages);
	return 0;
}
