// SPDX-License-Identifier: GPL-2.0
/*
 * uffdx hardening (issue 12): memory cgroups, permissions, exec and exit.
 *
 *  - a process in a small memory cgroup cannot push the machine into OOM
 *    through uffdx: region memory is charged to the cgroup of the
 *    context's creator, also for faults taken by other processes, and a
 *    fill or fault over the cgroup's limit gets ENOMEM or SIGBUS, never
 *    the OOM killer;
 *  - the OOM killer, when the cgroup's own anonymous memory calls it,
 *    kills a faulter asleep in a uffdx fault, or a handler, cleanly;
 *  - the node's group decides who opens it;
 *  - a region fd passed read-only allows reading it and nothing else, and
 *    a region fd gives access to that region only;
 *  - exec keeps exactly the fds given, and no uffdx mapping;
 *  - a process may exit, or be killed, with every kind of object alive.
 *
 * Root only (cgroups, setresuid, chown); the cgroup tests need cgroup v2
 * with the memory controller (the test guest mounts it).
 */
#include "helpers.h"

#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kselftest_harness.h"

#define CG_ROOT		"/sys/fs/cgroup"
#define NOBODY		65534
#define TEST_GID	4242

/* ---- memory cgroups -------------------------------------------------------------- */

FIXTURE(cg) {
	char dir[128];
	int made;
};

static int cg_write(const char *dir, const char *file, const char *val)
{
	char path[256];

	snprintf(path, sizeof(path), "%s/%s", dir, file);
	return write_str_file(path, val);
}

static long long cg_ll(const char *dir, const char *file)
{
	char path[256];
	long long v = -1;

	snprintf(path, sizeof(path), "%s/%s", dir, file);
	if (read_ll_file(path, &v))
		return -1;
	return v;
}

/* A "key value" line of a flat-keyed file (memory.events). */
static long long cg_key(const char *dir, const char *file, const char *key)
{
	char path[256], buf[1024], *p;
	size_t klen = strlen(key);

	snprintf(path, sizeof(path), "%s/%s", dir, file);
	if (read_str_file(path, buf, sizeof(buf)) <= 0)
		return -1;
	for (p = buf; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		if (!strncmp(p, key, klen) && p[klen] == ' ')
			return strtoll(p + klen + 1, NULL, 10);
	return -1;
}

/* Move the calling process into the cgroup: 0 or -errno. */
static int cg_enter(const char *dir)
{
	return cg_write(dir, "cgroup.procs", "0");
}

FIXTURE_SETUP(cg)
{
	char buf[256];

	self->made = 0;
	SKIP_IF_NO_UFFDX();
	if (getuid() != 0)
		SKIP(return, "needs root (cgroups)");
	if (access(CG_ROOT "/cgroup.controllers", F_OK))
		mount("cgroup2", CG_ROOT, "cgroup2", 0, NULL);
	if (read_str_file(CG_ROOT "/cgroup.controllers", buf, sizeof(buf)) <= 0)
		SKIP(return, "no cgroup v2 at " CG_ROOT);
	if (!strstr(buf, "memory"))
		SKIP(return, "no memory controller in cgroup v2");
	write_str_file(CG_ROOT "/cgroup.subtree_control", "+memory");
	snprintf(self->dir, sizeof(self->dir), CG_ROOT "/uffdx-hardening-%d", getpid());
	ASSERT_EQ(0, mkdir(self->dir, 0755)) TH_LOG("mkdir %s: %s", self->dir, strerror(errno));
	self->made = 1;
	snprintf(buf, sizeof(buf), "%s/memory.max", self->dir);
	if (access(buf, F_OK))
		SKIP(return, "the memory controller is not enabled for child cgroups");
	/* no swap: the limit is the limit */
	cg_write(self->dir, "memory.swap.max", "0");
}

FIXTURE_TEARDOWN_PARENT(cg)
{
	int i;

	if (!self->made)
		return;
	/* whatever is left in it (a test that died) goes */
	cg_write(self->dir, "cgroup.kill", "1");
	for (i = 0; i < 200; i++) {
		if (!rmdir(self->dir) || errno == ENOENT)
			break;
		usleep(10000);
	}
}

#define MIB		(1ULL << 20)
#define CG_LIMIT	(16 * MIB)

/*
 * A child in the cgroup and the parent outside it, in step through shared
 * memory: once the cgroup is full of region memory, any allocation the
 * child makes may call the cgroup's OOM killer (rightly: killing it frees
 * the regions), so between its uffdx calls it makes none, not even a
 * system call that could, and the parent looks at the cgroup for it.
 */
struct cg_step {
	volatile int stage;	/* the child's progress */
	volatile int go;	/* the parent's */
	volatile int step;	/* the step that failed, 0 if none */
	int64_t filled;		/* bytes the big ZERO filled */
	int sig;		/* the fault's signal */
};

static struct cg_step *step_new(void)
{
	struct cg_step *r = mmap(NULL, sizeof(*r), PROT_READ | PROT_WRITE,
				 MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	if (r == MAP_FAILED)
		return NULL;
	memset(r, 0, sizeof(*r));
	return r;
}

/* Wait for *flag >= val, polling: no allocation. */
static int step_wait(volatile int *flag, int val, int timeout_ms)
{
	struct timespec ts = { 0, 1000000 };
	int i;

	for (i = 0; i < timeout_ms; i++) {
		if (__atomic_load_n(flag, __ATOMIC_SEQ_CST) >= val)
			return 0;
		nanosleep(&ts, NULL);
	}
	return -1;
}

/* The parent's wait: as step_wait(), but -2 as soon as the child is gone. */
static int step_wait_child(volatile int *flag, int val, pid_t pid, int *status,
			   int timeout_ms)
{
	int i;

	for (i = 0; i < timeout_ms; i++) {
		if (__atomic_load_n(flag, __ATOMIC_SEQ_CST) >= val)
			return 0;
		if (waitpid(pid, status, WNOHANG) == pid)
			return -2;
		usleep(1000);
	}
	return -1;
}

#define CHILD_FAIL(r, n) do { (r)->step = (n); _exit(n); } while (0)

/* Write to the stack's next 64 KiB: copy-on-write breaks now, not later. */
static void __attribute__((noinline)) stack_prefault(void)
{
	volatile uint8_t a[64 << 10];
	size_t i;

	for (i = 0; i < sizeof(a); i += 512)
		a[i] = 1;
}

/*
 * Does the module charge region pages to memory cgroups here?  From 5.11:
 * before, a page charged with __GFP_ACCOUNT is typed PageKmemcg and may
 * not be mapped into user space (store.c).
 */
static int pages_charged_to_memcg(void)
{
	struct utsname u;
	int maj = 0, min = 0;

	uname(&u);
	sscanf(u.release, "%d.%d", &maj, &min);
	return maj > 5 || (maj == 5 && min >= 11);
}

/*
 * In a 16 MiB cgroup, ZERO of 126 MiB stops at the cgroup's limit
 * (EAGAIN, part done); then fills are ENOMEM and a fault SIGBUS; and the
 * OOM killer never ran: uffdx's allocations fail instead of calling it.
 */
TEST_F_TIMEOUT(cg, small_cgroup_fills_fail_no_oom_kill, 120)
{
	const uint64_t len = 128 * MIB, first = 2 * MIB;
	struct cg_step *st;
	long long oom0, oom_full, oom_end, cur_full, after;
	int status = -1, ret;
	pid_t pid;

	if (!pages_charged_to_memcg())
		SKIP(return, "region pages are not charged to memory cgroups before 5.11 (PageKmemcg)");
	st = step_new();
	ASSERT_NE(NULL, st);
	ASSERT_EQ(0, cg_write(self->dir, "memory.max", "16M"));
	oom0 = cg_key(self->dir, "memory.events", "oom_kill");
	ASSERT_LE(0, oom0);
	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0) {
		struct uffdx_region_map m;
		int64_t res = 0;
		uint8_t *buf = malloc(ps), v;
		int ctx, ret;

		if (!buf || cg_enter(self->dir))
			CHILD_FAIL(st, 10);
		memset(buf, 1, ps);
		stack_prefault();
		ctx = ctx_open(DEFAULT_FEATURES, 0);	/* its pages go to this cgroup */
		if (ctx < 0)
			CHILD_FAIL(st, 11);
		if (uffdx_region_map(ctx, len, 0, &m))
			CHILD_FAIL(st, 12);
		/* the page table of the first 2 MiB, now: a fault there later needs none */
		if (try_read(m.addr, &v))
			CHILD_FAIL(st, 13);
		ret = uffdx_zero(ctx, m.id, first, len - first, 0, &res);
		st->filled = res;
		if (ret != -EAGAIN)
			CHILD_FAIL(st, 14);
		__atomic_store_n(&st->stage, 1, __ATOMIC_SEQ_CST);
		if (step_wait(&st->go, 1, 60 * 1000))
			CHILD_FAIL(st, 15);
		/* over the limit: fills fail, a fault gets SIGBUS */
		if (uffdx_zero(ctx, m.id, len - ps, ps, 0, &res) != -ENOMEM)
			CHILD_FAIL(st, 16);
		if (uffdx_copy(ctx, m.id, len - 2 * ps, buf, ps, 0, &res) != -ENOMEM)
			CHILD_FAIL(st, 17);
		st->sig = try_write((uint8_t *)m.addr + 10 * ps, 1);
		if (st->sig != SIGBUS)
			CHILD_FAIL(st, 18);
		/* what is given back can be filled again */
		if (uffdx_discard(ctx, m.id, first, len - first, NULL))
			CHILD_FAIL(st, 19);
		if (uffdx_zero(ctx, m.id, len - ps, ps, 0, NULL) || try_write((uint8_t *)m.addr + 10 * ps, 1))
			CHILD_FAIL(st, 20);
		__atomic_store_n(&st->stage, 2, __ATOMIC_SEQ_CST);
		if (step_wait(&st->go, 2, 60 * 1000))
			CHILD_FAIL(st, 21);
		uffdx_region_unmap(&m);
		close(ctx);
		_exit(0);
	}
	ret = step_wait_child(&st->stage, 1, pid, &status, 100 * 1000);
	cur_full = cg_ll(self->dir, "memory.current");
	oom_full = cg_key(self->dir, "memory.events", "oom_kill");
	__atomic_store_n(&st->go, 1, __ATOMIC_SEQ_CST);
	if (!ret)
		ret = step_wait_child(&st->stage, 2, pid, &status, 60 * 1000);
	oom_end = cg_key(self->dir, "memory.events", "oom_kill");
	__atomic_store_n(&st->go, 2, __ATOMIC_SEQ_CST);
	if (ret != -2)
		ASSERT_EQ(0, wait_child(pid, &status, 60 * 1000));
	EXPECT_EQ(0, ret) TH_LOG("the child did not get through (step %d)", st->step);
	TH_LOG("filled %lld KiB of a 16 MiB cgroup (memory.current %lld KiB then), fault: signal %d",
	       (long long)(st->filled / 1024), cur_full / 1024, st->sig);
	EXPECT_TRUE(WIFEXITED(status)) TH_LOG("the child died of signal %d",
					      WIFSIGNALED(status) ? WTERMSIG(status) : 0);
	EXPECT_EQ(0, st->step)
		TH_LOG("child step %d failed (10 cgroup, 11 context, 12 region, 13 first touch, 14 the big ZERO did not stop with EAGAIN, 16 ZERO over the limit, 17 COPY over it, 18 a fault over it, 19 discard, 20 refill)",
		       st->step);
	/* charged to the cgroup: it stopped near the limit, not before */
	EXPECT_LE((int64_t)(CG_LIMIT / 2), st->filled);
	EXPECT_GE((int64_t)CG_LIMIT, st->filled);
	EXPECT_LE((long long)(CG_LIMIT * 3 / 4), cur_full);
	EXPECT_EQ(oom0, oom_full) TH_LOG("the fill called the OOM killer");
	EXPECT_EQ(oom0, oom_end) TH_LOG("the fills and the fault over the limit called the OOM killer");
	/* all given back */
	after = cg_ll(self->dir, "memory.current");
	EXPECT_GT((long long)(2 * MIB), after) TH_LOG("memory.current %lld after the exit", after);
	munmap(st, sizeof(*st));
}

/*
 * The arming bitmap of a 1 TiB region is 32 MiB: within the user's page
 * budget, but over a 16 MiB cgroup's limit.  The first ARM must fail with
 * ENOMEM, as uffdx_arm(3) says, not call the cgroup's OOM killer.
 */
TEST_F_TIMEOUT(cg, arm_bitmap_over_the_cgroup_limit_enomem, 120)
{
	struct cg_step *st = step_new();
	long long oom0, oom1;
	int status = -1, ret;
	pid_t pid;

	ASSERT_NE(NULL, st);
	ASSERT_EQ(0, cg_write(self->dir, "memory.max", "16M"));
	oom0 = cg_key(self->dir, "memory.events", "oom_kill");
	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0) {
		uint64_t id;
		int ctx, rfd, ret;

		if (cg_enter(self->dir))
			CHILD_FAIL(st, 10);
		stack_prefault();
		ctx = ctx_open(DEFAULT_FEATURES, 0);
		if (ctx < 0)
			CHILD_FAIL(st, 11);
		rfd = uffdx_region_create(ctx, 1ULL << 40, 0, &id);
		if (rfd < 0)
			CHILD_FAIL(st, 12);
		ret = uffdx_arm(ctx, id, 0, 1ULL << 40, UFFDX_ARM_MISSING);
		st->filled = ret;
		__atomic_store_n(&st->stage, 1, __ATOMIC_SEQ_CST);
		if (ret != -ENOMEM)
			CHILD_FAIL(st, 13);
		if (step_wait(&st->go, 1, 60 * 1000))
			CHILD_FAIL(st, 14);
		close(rfd);
		close(ctx);
		_exit(0);
	}
	ret = step_wait_child(&st->stage, 1, pid, &status, 100 * 1000);
	oom1 = cg_key(self->dir, "memory.events", "oom_kill");
	__atomic_store_n(&st->go, 1, __ATOMIC_SEQ_CST);
	if (ret != -2)
		ASSERT_EQ(0, wait_child(pid, &status, 100 * 1000));
	EXPECT_EQ(0, ret) TH_LOG("the ARM did not return");
	EXPECT_TRUE(WIFEXITED(status)) TH_LOG("the child died of signal %d (the OOM killer)",
					      WIFSIGNALED(status) ? WTERMSIG(status) : 0);
	EXPECT_EQ(0, st->step) TH_LOG("child step %d failed (13: ARM returned %lld, not ENOMEM)",
				      st->step, (long long)st->filled);
	EXPECT_EQ(oom0, oom1) TH_LOG("the ARM called the OOM killer");
	munmap(st, sizeof(*st));
}

/*
 * The cgroup of the context's creator pays, whoever faults: another
 * process, outside the cgroup, faulting the region through a passed fd
 * gets SIGBUS at the creator's limit.
 */
TEST_F_TIMEOUT(cg, faults_of_others_charged_to_creator, 120)
{
	const uint64_t len = 64 * MIB;
	struct utsname u;
	int sv[2], status = -1, fd, maj = 0, min = 0, sig = 0;
	long long oom0, cur;
	uint64_t k, npages = len / ps;
	uint8_t *p;
	pid_t pid;
	char c;

	uname(&u);
	sscanf(u.release, "%d.%d", &maj, &min);
	if (maj < 5 || (maj == 5 && min < 11))
		SKIP(return, "no remote memcg charging before 5.11 (int_active_memcg not exported)");
	ASSERT_EQ(0, cg_write(self->dir, "memory.max", "16M"));
	oom0 = cg_key(self->dir, "memory.events", "oom_kill");
	ASSERT_EQ(0, socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv));
	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0) {
		uint64_t id;
		int ctx, rfd;

		close(sv[0]);
		if (cg_enter(self->dir))
			_exit(10);
		ctx = ctx_open(DEFAULT_FEATURES, 0);
		if (ctx < 0)
			_exit(11);
		rfd = uffdx_region_create(ctx, len, 0, &id);
		if (rfd < 0)
			_exit(12);
		if (send_fd(sv[1], rfd))
			_exit(13);
		close(rfd);
		/* keep the context until the parent is done */
		if (wait_fd(sv[1], POLLIN, 60 * 1000) != 1 || read(sv[1], &c, 1) != 1)
			_exit(14);
		close(ctx);
		_exit(0);
	}
	close(sv[1]);
	fd = recv_fd(sv[0], WAIT_MS);
	ASSERT_LE(0, fd);
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ASSERT_NE(MAP_FAILED, p);
	for (k = 0; k < npages; k++) {
		sig = try_write(p + k * ps, 1);
		if (sig)
			break;
	}
	cur = cg_ll(self->dir, "memory.current");
	TH_LOG("faulted %llu pages from outside the cgroup before signal %d; its memory.current %lld KiB",
	       (unsigned long long)k, sig, cur / 1024);
	EXPECT_EQ(SIGBUS, sig) TH_LOG("the faults were not charged to the creator's cgroup");
	EXPECT_LE((long long)(CG_LIMIT / 2), cur);
	EXPECT_GE(CG_LIMIT / ps, k);
	EXPECT_EQ(oom0, cg_key(self->dir, "memory.events", "oom_kill"));
	munmap(p, len);
	close(fd);
	ASSERT_EQ(1, write(sv[0], "x", 1));
	ASSERT_EQ(0, wait_child(pid, &status, WAIT_MS));
	ASSERT_TRUE(WIFEXITED(status));
	EXPECT_EQ(0, WEXITSTATUS(status)) TH_LOG("child step %d", WEXITSTATUS(status));
	EXPECT_GT((long long)(2 * MIB), cg_ll(self->dir, "memory.current"));
	close(sv[0]);
}

/* Allocate and touch anonymous memory until something kills us. */
static void __attribute__((noreturn)) hog(void)
{
	for (;;) {
		uint8_t *q = mmap(NULL, MIB, PROT_READ | PROT_WRITE,
				  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		if (q != MAP_FAILED)
			memset(q, 0x33, MIB);
	}
}

/*
 * A faulter asleep in a uffdx fault, in a process the cgroup's OOM killer
 * picks: it dies, its event goes away, and the handler carries on.
 */
TEST_F_TIMEOUT(cg, oom_kill_of_a_faulter, 120)
{
	struct uffdx_region_map m;
	struct uffdx_event ev;
	int ctx, go[2], status = -1;
	long long oom0;
	int64_t res;
	pid_t pid;

	ASSERT_EQ(0, cg_write(self->dir, "memory.max", "24M"));
	oom0 = cg_key(self->dir, "memory.events", "oom_kill");
	ctx = ctx_open(DEFAULT_FEATURES, O_NONBLOCK);
	ASSERT_LE(0, ctx);
	ASSERT_EQ(0, uffdx_region_map(ctx, 16 * ps, 0, &m));
	fill_pattern(m.addr, ps, 1);
	ASSERT_EQ(0, uffdx_arm(ctx, m.id, 4 * ps, 8 * ps, UFFDX_ARM_MISSING));
	ASSERT_EQ(0, pipe2(go, O_CLOEXEC));
	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0) {
		struct accessor *a;
		char c;

		close(go[1]);
		if (cg_enter(self->dir))
			_exit(10);
		a = acc_new((uint8_t *)m.addr + 5 * ps, 0, 0);
		if (!a || acc_start_thread(a))
			_exit(11);
		if (wait_fd(go[0], POLLIN, 60 * 1000) != 1 || read(go[0], &c, 1) != 1)
			_exit(12);
		hog();
	}
	close(go[0]);
	ASSERT_EQ(1, wait_event(ctx, &ev, WAIT_MS)) TH_LOG("the faulter's event");
	EXPECT_EQ(5 * ps, ev.offset);
	/* delivered, not resolved: the faulter sleeps when the OOM killer comes */
	ASSERT_EQ(1, write(go[1], "g", 1));
	ASSERT_EQ(0, wait_child(pid, &status, 100 * 1000)) TH_LOG("the hog was never killed");
	ASSERT_TRUE(WIFSIGNALED(status)) TH_LOG("status 0x%x", status);
	EXPECT_EQ(SIGKILL, WTERMSIG(status));
	EXPECT_LT(oom0, cg_key(self->dir, "memory.events", "oom_kill"));
	/* its waiter is gone from the queue; the context works on */
	EXPECT_EQ(0, event_arrives(ctx, QUIET_MS));
	{
		long long pending = -1, delivered = -1;

		fdinfo_ll(ctx, "uffdx-events-pending", &pending);
		fdinfo_ll(ctx, "uffdx-events-delivered", &delivered);
		EXPECT_EQ(0, pending);
		EXPECT_EQ(0, delivered);
	}
	EXPECT_EQ(0, uffdx_zero(ctx, m.id, 5 * ps, ps, 0, &res));
	EXPECT_EQ(-1, check_pattern(m.addr, ps, 1));
	uffdx_region_unmap(&m);
	close(go[1]);
	close(ctx);
}

/*
 * The handler is OOM-killed (its context and region were created in the
 * cgroup): the faulter, in another process outside it, gets SIGBUS, the
 * region's data stays readable, and the cgroup's charge goes when the
 * last mapping does.
 */
TEST_F_TIMEOUT(cg, oom_kill_of_a_handler, 120)
{
	struct uffdx_region_info info;
	struct accessor *a;
	int sv[2], status = -1, fd;
	long long oom0;
	uint8_t *p;
	pid_t pid;

	ASSERT_EQ(0, cg_write(self->dir, "memory.max", "24M"));
	oom0 = cg_key(self->dir, "memory.events", "oom_kill");
	ASSERT_EQ(0, socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv));
	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0) {
		struct uffdx_region_map m;
		struct uffdx_event ev[4];
		int ctx, n;

		close(sv[0]);
		if (cg_enter(self->dir))
			_exit(10);
		ctx = ctx_open(DEFAULT_FEATURES, 0);
		if (ctx < 0)
			_exit(11);
		if (uffdx_region_map(ctx, 64 * ps, 0, &m))
			_exit(12);
		fill_pattern(m.addr, 16 * ps, 2);
		if (uffdx_arm(ctx, m.id, 32 * ps, 32 * ps, UFFDX_ARM_MISSING))
			_exit(13);
		if (send_fd(sv[1], m.fd))
			_exit(14);
		/* the handler reads the event, resolves nothing, and hogs */
		n = uffdx_resolve_wait(ctx, NULL, 0, NULL, ev, 4, 60 * 1000000000ll, 0);
		if (n < 1)
			_exit(15);
		hog();
	}
	close(sv[1]);
	fd = recv_fd(sv[0], WAIT_MS);
	ASSERT_LE(0, fd);
	p = mmap(NULL, 64 * ps, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ASSERT_NE(MAP_FAILED, p);
	a = acc_new(p + 40 * ps, 0, 0);
	ASSERT_NE(NULL, a);
	ASSERT_EQ(0, acc_start_thread(a));
	ASSERT_EQ(0, wait_child(pid, &status, 100 * 1000)) TH_LOG("the handler was never killed");
	ASSERT_TRUE(WIFSIGNALED(status))
		TH_LOG("handler status 0x%x (exit %d)", status, WEXITSTATUS(status));
	EXPECT_EQ(SIGKILL, WTERMSIG(status));
	EXPECT_LT(oom0, cg_key(self->dir, "memory.events", "oom_kill"));
	/* the faulter: SIGBUS, the handler's context is gone */
	ASSERT_EQ(0, acc_wait(a, WAIT_MS)) TH_LOG("the faulter still sleeps");
	EXPECT_EQ(SIGBUS, a->sig);
	acc_free(a);
	EXPECT_EQ(-1, check_pattern(p, 16 * ps, 2));
	ASSERT_EQ(0, uffdx_region_info(fd, &info));
	EXPECT_TRUE(info.flags & UFFDX_REGION_OWNER_GONE);
	EXPECT_LE(16 * ps, info.resident);
	/* region pages are charged to the cgroup from 5.11 (PageKmemcg before) */
	if (pages_charged_to_memcg())
		EXPECT_LE((long long)(16 * ps), cg_ll(self->dir, "memory.current"));
	munmap(p, 64 * ps);
	close(fd);
	EXPECT_GT((long long)(2 * MIB), cg_ll(self->dir, "memory.current"))
		TH_LOG("the region's pages stayed charged after its last holder went");
	close(sv[0]);
}

/* ---- what one region may be --------------------------------------------------- */

/* A region is at most 1 TiB: a bitmap, a store and a file size the module can hold. */
TEST(region_size_is_bounded)
{
	const uint64_t tib = 1ULL << 40;
	struct uffdx_region_create rc;
	uint64_t id;
	int ctx, fd;

	SKIP_IF_NO_UFFDX();
	ctx = ctx_open(DEFAULT_FEATURES, 0);
	ASSERT_LE(0, ctx);
	fd = uffdx_region_create(ctx, tib, 0, &id);
	ASSERT_LE(0, fd) TH_LOG("1 TiB: %s", strerror(-fd));
	close(fd);
	memset(&rc, 0, sizeof(rc));
	rc.size = sizeof(rc);
	rc.len = tib + ps;
	EXPECT_EQ(-1, ioctl(ctx, UFFDX_IOC_REGION_CREATE, &rc));
	EXPECT_EQ(EINVAL, errno);
	rc.len = 1ULL << 63;
	EXPECT_EQ(-1, ioctl(ctx, UFFDX_IOC_REGION_CREATE, &rc));
	EXPECT_EQ(EINVAL, errno);
	/* and the context goes on */
	fd = uffdx_region_create(ctx, ps, 0, &id);
	EXPECT_LE(0, fd);
	if (fd >= 0)
		close(fd);
	close(ctx);
}

/* ---- who may open the node ----------------------------------------------------- */

FIXTURE(node) {
	struct stat st;
	int saved;
};

FIXTURE_SETUP(node)
{
	self->saved = 0;
	SKIP_IF_NO_UFFDX();
	if (getuid() != 0)
		SKIP(return, "needs root (chown, setresuid)");
	ASSERT_EQ(0, stat(UFFDX_DEV, &self->st));
	self->saved = 1;
}

FIXTURE_TEARDOWN_PARENT(node)
{
	if (!self->saved)
		return;
	chown(UFFDX_DEV, self->st.st_uid, self->st.st_gid);
	chmod(UFFDX_DEV, self->st.st_mode & 07777);
}

/* In a child: uid NOBODY with gid and supplementary groups as given; then open. */
static int open_as(gid_t gid, const gid_t *groups, int ngroups)
{
	int fd;

	if (setgroups((size_t)ngroups, groups) || setresgid(gid, gid, gid) ||
	    setresuid(NOBODY, NOBODY, NOBODY))
		return -1000;
	fd = open(UFFDX_DEV, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (uffdx_api(fd, DEFAULT_FEATURES, NULL))
		return -1001;
	return 0;
}

static int run_open_as(gid_t gid, const gid_t *groups, int ngroups)
{
	int status = -1;
	pid_t pid = fork();

	if (pid < 0)
		return -1002;
	if (pid == 0) {
		int r = open_as(gid, groups, ngroups);

		_exit(r == 0 ? 0 : r == -EACCES ? 1 : r == -1000 ? 2 : r == -1001 ? 3 : 4);
	}
	if (wait_child(pid, &status, WAIT_MS) || !WIFEXITED(status))
		return -1003;
	return WEXITSTATUS(status);
}

/* 0660 root:G (as the udev rule installs it): members of G only. */
TEST_F(node, only_the_group_opens)
{
	const gid_t g = TEST_GID, other = NOBODY;

	ASSERT_EQ(0, chown(UFFDX_DEV, 0, TEST_GID));
	ASSERT_EQ(0, chmod(UFFDX_DEV, 0660));
	/* a supplementary member, and the primary group */
	EXPECT_EQ(0, run_open_as(NOBODY, &g, 1));
	EXPECT_EQ(0, run_open_as(TEST_GID, NULL, 0));
	/* outside the group: EACCES (1) */
	EXPECT_EQ(1, run_open_as(NOBODY, NULL, 0));
	EXPECT_EQ(1, run_open_as(NOBODY, &other, 1));
	/* read permission alone is not enough either */
	ASSERT_EQ(0, chmod(UFFDX_DEV, 0640));
	EXPECT_EQ(1, run_open_as(TEST_GID, NULL, 0));
}

/* ---- region fds: what holding one gives ---------------------------------------- */

/* A child that becomes NOBODY, with a context of its own opened before. */
struct holder {
	int ctx;		/* the child's own context, opened as root */
	uint64_t id;		/* a region of its own */
	uint8_t *own;
};

static int holder_setup(struct holder *h)
{
	struct uffdx_region_map m;

	h->ctx = ctx_open(DEFAULT_FEATURES | UFFDX_FEATURE_MOVE, 0);
	if (h->ctx < 0)
		h->ctx = ctx_open(DEFAULT_FEATURES, 0);
	if (h->ctx < 0)
		return -1;
	if (uffdx_region_map(h->ctx, 16 * ps, 0, &m))
		return -1;
	h->id = m.id;
	h->own = m.addr;
	if (setgroups(0, NULL) || setresgid(NOBODY, NOBODY, NOBODY) ||
	    setresuid(NOBODY, NOBODY, NOBODY))
		return -1;
	return 0;
}

static int reopen(int fd, int flags)
{
	char path[64];

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	return open(path, flags | O_CLOEXEC);
}

/*
 * A read-only region fd, received over a socket by another user's
 * process: it maps for reading and reads the data; it cannot map for
 * writing, make a mapping writable, be reopened for writing, change the
 * file, or give pages to or take pages from a move.
 */
TEST(readonly_region_fd_received_reads_only)
{
	struct uffdx_region_map m;
	int ctx, ro, sv[2], status = -1;
	pid_t pid;

	SKIP_IF_NO_UFFDX();
	if (getuid() != 0)
		SKIP(return, "needs root (setresuid)");
	ctx = ctx_open(DEFAULT_FEATURES, 0);
	ASSERT_LE(0, ctx);
	ASSERT_EQ(0, uffdx_region_map(ctx, 16 * ps, 0, &m));
	fill_pattern(m.addr, 8 * ps, 7);
	ro = reopen(m.fd, O_RDONLY);
	ASSERT_LE(0, ro) TH_LOG("%s", strerror(errno));
	ASSERT_EQ(0, socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv));
	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0) {
		struct uffdx_region_info info;
		struct uffdx_move_addr ma;
		struct holder h;
		uint8_t *p, *q;
		int fd, w;
		int64_t res;

		/* nothing of the parent's but what it sends */
		close(sv[0]);
		close(ro);
		munmap(m.addr, m.len);
		close(m.fd);
		close(ctx);
		if (holder_setup(&h))
			_exit(10);
		fd = recv_fd(sv[1], WAIT_MS);
		if (fd < 0)
			_exit(11);
		if ((fcntl(fd, F_GETFL) & O_ACCMODE) != O_RDONLY)
			_exit(12);
		if (uffdx_region_info(fd, &info) || info.len != 16 * ps || info.resident < 8 * ps)
			_exit(13);
		p = mmap(NULL, 16 * ps, PROT_READ, MAP_SHARED, fd, 0);
		if (p == MAP_FAILED || check_pattern(p, 8 * ps, 7) != -1)
			_exit(14);
		q = mmap(NULL, 16 * ps, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (q != MAP_FAILED || errno != EACCES)
			_exit(15);
		if (mprotect(p, ps, PROT_READ | PROT_WRITE) != -1 || errno != EACCES)
			_exit(16);
		if (try_write(p, 1) != SIGSEGV)
			_exit(17);
		/* another user: no reopen at all (the inode is the creator's, 0600) */
		w = reopen(fd, O_RDWR);
		if (w >= 0 || errno != EACCES)
			_exit(18);
		if (write(fd, "x", 1) != -1 || ftruncate(fd, 0) != -1 ||
		    fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, ps) != -1)
			_exit(19);
		/* moves: neither a source nor a destination */
		if (uffdx_move(h.ctx, h.id, 0, (uint64_t)fd, 0, ps, UFFDX_MOVE_SRC_FD, &res) != -EBADF &&
		    uffdx_move(h.ctx, h.id, 0, (uint64_t)fd, 0, ps, UFFDX_MOVE_SRC_FD, &res) != -EINVAL)
			_exit(20);
		if (uffdx_move(h.ctx, (uint64_t)fd, 10 * ps, h.id, 0, ps, UFFDX_MOVE_DST_FD, &res) != -EBADF &&
		    uffdx_move(h.ctx, (uint64_t)fd, 10 * ps, h.id, 0, ps, UFFDX_MOVE_DST_FD, &res) != -EINVAL)
			_exit(21);
		memset(&ma, 0, sizeof(ma));
		ma.size = sizeof(ma);
		ma.dst = (uintptr_t)h.own;
		ma.src = (uintptr_t)p;
		ma.len = ps;
		if (ioctl(h.ctx, UFFDX_IOC_MOVE_ADDR, &ma) != -1 || (errno != EBADF && errno != EINVAL))
			_exit(22);
		/* and still all there */
		if (check_pattern(p, 8 * ps, 7) != -1)
			_exit(23);
		if (write(sv[1], "d", 1) != 1)
			_exit(24);
		_exit(0);
	}
	close(sv[1]);
	ASSERT_EQ(0, send_fd(sv[0], ro));
	ASSERT_EQ(0, wait_child(pid, &status, 2 * WAIT_MS));
	ASSERT_TRUE(WIFEXITED(status)) TH_LOG("status 0x%x", status);
	EXPECT_EQ(0, WEXITSTATUS(status))
		TH_LOG("child step %d failed (10 setup, 11 recv, 12 access mode, 13 REGION_INFO, 14 read mapping, 15 RW mmap, 16 mprotect, 17 write through it, 18 reopen O_RDWR, 19 write/ftruncate/fallocate, 20 MOVE from it, 21 MOVE into it, 22 MOVE_ADDR from its mapping, 23 data changed)",
		       WEXITSTATUS(status));
	EXPECT_EQ(-1, check_pattern(m.addr, 8 * ps, 7));
	close(sv[0]);
	close(ro);
	uffdx_region_unmap(&m);
	close(ctx);
}

/*
 * A region fd gives that region, nothing more: not the creator's other
 * regions (ids belong to the creator's context), not its fds, not its
 * address space.
 */
TEST(region_fd_gives_that_region_only)
{
	struct uffdx_region_map m1, m2;
	int ctx, sv[2], status = -1;
	char msg[64];
	pid_t pid;

	SKIP_IF_NO_UFFDX();
	if (getuid() != 0)
		SKIP(return, "needs root (setresuid)");
	ctx = ctx_open(DEFAULT_FEATURES | UFFDX_FEATURE_MOVE, 0);
	if (ctx == -EINVAL)
		SKIP(return, "no UFFDX_FEATURE_MOVE");
	ASSERT_LE(0, ctx);
	ASSERT_EQ(0, uffdx_region_map(ctx, 16 * ps, 0, &m1));
	ASSERT_EQ(0, uffdx_region_map(ctx, 16 * ps, 0, &m2));
	fill_pattern(m1.addr, 4 * ps, 11);
	fill_pattern(m2.addr, 4 * ps, 12);
	/* the child learns R2's fd number, id and address: names, no access */
	snprintf(msg, sizeof(msg), "%d %d %llu %p", getpid(), m2.fd,
		 (unsigned long long)m2.id, m2.addr);
	ASSERT_EQ(0, socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv));
	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0) {
		unsigned long long id2;
		struct holder h;
		char path[64];
		void *addr2;	/* R2 in the parent: an address in another mm */
		int fd, ppid, fd2, x;
		uint8_t *p;
		int64_t res;

		close(sv[0]);
		munmap(m1.addr, m1.len);
		munmap(m2.addr, m2.len);
		close(m1.fd);
		close(m2.fd);
		close(ctx);
		prctl(PR_SET_DUMPABLE, 1);
		if (holder_setup(&h))
			_exit(10);
		if (sscanf(msg, "%d %d %llu %p", &ppid, &fd2, &id2, &addr2) != 4)
			_exit(11);
		fd = recv_fd(sv[1], WAIT_MS);
		if (fd < 0)
			_exit(12);
		p = mmap(NULL, 16 * ps, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (p == MAP_FAILED || check_pattern(p, 4 * ps, 11) != -1)
			_exit(13);
		/* what the fd gives: its region, to map and to move from */
		if (uffdx_move(h.ctx, h.id, 0, (uint64_t)fd, 3 * ps, ps, UFFDX_MOVE_SRC_FD, &res))
			_exit(14);
		/* R2 by its id, in our context: not ours */
		if (uffdx_move(h.ctx, h.id, ps, id2, 0, ps, 0, &res) != -ENOENT)
			_exit(15);
		if (uffdx_copy(h.ctx, id2, 8 * ps, p, ps, 0, &res) != -ENOENT)
			_exit(16);
		/* range ioctls on the region fd itself: not a context */
		if (uffdx_copy(fd, id2, 8 * ps, p, ps, 0, &res) != -ENOTTY)
			_exit(17);
		/* the creator's fds and memory: another user's */
		snprintf(path, sizeof(path), "/proc/%d/fd/%d", ppid, fd2);
		x = open(path, O_RDONLY | O_CLOEXEC);
		if (x >= 0 || (errno != EACCES && errno != EPERM))
			_exit(18);
		snprintf(path, sizeof(path), "/proc/%d/mem", ppid);
		x = open(path, O_RDONLY | O_CLOEXEC);
		if (x >= 0 || (errno != EACCES && errno != EPERM))
			_exit(19);
		{
			uint8_t b;
			struct iovec lo = { .iov_base = &b, .iov_len = 1 };
			struct iovec re = { .iov_base = addr2, .iov_len = 1 };

			if (process_vm_readv(ppid, &lo, 1, &re, 1, 0) != -1 || errno != EPERM)
				_exit(20);
		}
		if (write(sv[1], "d", 1) != 1)
			_exit(21);
		_exit(0);
	}
	close(sv[1]);
	ASSERT_EQ(0, send_fd(sv[0], m1.fd));
	ASSERT_EQ(0, wait_child(pid, &status, 2 * WAIT_MS));
	ASSERT_TRUE(WIFEXITED(status)) TH_LOG("status 0x%x", status);
	EXPECT_EQ(0, WEXITSTATUS(status))
		TH_LOG("child step %d failed (10 setup, 11 message, 12 recv, 13 map, 14 MOVE from the fd, 15/16 R2 by id, 17 range ioctl on a region fd, 18 /proc/pid/fd, 19 /proc/pid/mem, 20 process_vm_readv)",
		       WEXITSTATUS(status));
	/* R1 gave its page 3; R2 is untouched */
	EXPECT_EQ(-1, check_pattern(m1.addr, 3 * ps, 11));
	EXPECT_EQ(-1, check_pattern(m2.addr, 4 * ps, 12));
	close(sv[0]);
	uffdx_region_unmap(&m1);
	uffdx_region_unmap(&m2);
	close(ctx);
}

/* ---- exec ------------------------------------------------------------------------ */

#define EXEC_REGION_FD	100
#define EXEC_CTX_FD	101

/*
 * The program after exec (argv: --exec-probe ID): it holds exactly fds 0,
 * 1, 2, EXEC_REGION_FD (the region, whose id is ID) and EXEC_CTX_FD (the
 * context, negotiated), and no uffdx mapping.  Exit status: the failing
 * step, 0 if none.
 */
static int exec_probe(int argc, char **argv)
{
	struct uffdx_region_info info;
	struct uffdx_api a;
	char buf[256], line[512];
	struct dirent *de;
	uint64_t id, nid;
	DIR *d;
	FILE *f;
	uint8_t *p;
	int n = 0, rfd;

	if (argc < 3)
		return 30;
	id = strtoull(argv[2], NULL, 0);
	d = opendir("/proc/self/fd");
	if (!d)
		return 31;
	while ((de = readdir(d))) {
		int fd;

		if (de->d_name[0] == '.')
			continue;
		fd = atoi(de->d_name);
		if (fd == dirfd(d))
			continue;
		if (fd > 2 && fd != EXEC_REGION_FD && fd != EXEC_CTX_FD) {
			snprintf(buf, sizeof(buf), "/proc/self/fd/%d", fd);
			n = (int)readlink(buf, line, sizeof(line) - 1);
			line[n > 0 ? n : 0] = 0;
			fprintf(stderr, "exec probe: fd %d (%s) survived exec\n", fd, line);
			closedir(d);
			return 32;
		}
		n++;
	}
	closedir(d);
	if (fcntl(EXEC_REGION_FD, F_GETFD) < 0 || fcntl(EXEC_CTX_FD, F_GETFD) < 0)
		return 33;
	/* the region: its data, through a new mapping */
	if (uffdx_region_info(EXEC_REGION_FD, &info) || info.region_id != id)
		return 34;
	p = mmap(NULL, info.len, PROT_READ, MAP_SHARED, EXEC_REGION_FD, 0);
	if (p == MAP_FAILED || check_pattern(p, ps, 21) != -1)
		return 35;
	munmap(p, info.len);
	/* the context: negotiated already, and it works */
	memset(&a, 0, sizeof(a));
	a.size = sizeof(a);
	a.api = UFFDX_API_VERSION;
	if (ioctl(EXEC_CTX_FD, UFFDX_IOC_API, &a) != -1 || errno != EINVAL)
		return 36;
	rfd = uffdx_region_create(EXEC_CTX_FD, ps, 0, &nid);
	if (rfd < 0 || nid <= id)
		return 37;
	close(rfd);
	/* no mapping of a region came along */
	f = fopen("/proc/self/maps", "re");
	if (!f)
		return 38;
	while (fgets(line, sizeof(line), f))
		if (strstr(line, "uffdx")) {
			fprintf(stderr, "exec probe: mapping survived exec: %s", line);
			fclose(f);
			return 39;
		}
	fclose(f);
	return 0;
}

static char self_exe[4096];

TEST(exec_keeps_exactly_the_fds_given)
{
	struct uffdx_region_map m, m2;
	int ctx, status = -1, rfd2;
	uint64_t id2;
	char idbuf[32];
	pid_t pid;

	SKIP_IF_NO_UFFDX();
	if (!self_exe[0])
		SKIP(return, "cannot find this program's path");
	ctx = ctx_open(DEFAULT_FEATURES, 0);
	ASSERT_LE(0, ctx);
	ASSERT_TRUE(fcntl(ctx, F_GETFD) & FD_CLOEXEC);
	ASSERT_EQ(0, uffdx_region_map(ctx, 4 * ps, 0, &m));
	ASSERT_TRUE(fcntl(m.fd, F_GETFD) & FD_CLOEXEC);
	ASSERT_EQ(0, uffdx_region_map(ctx, 4 * ps, 0, &m2));
	rfd2 = uffdx_region_create(ctx, ps, 0, &id2);
	ASSERT_LE(0, rfd2);
	fill_pattern(m.addr, ps, 21);
	/* an armed hole with a mapping, in case exec faulted on it */
	ASSERT_EQ(0, uffdx_arm(ctx, m2.id, 0, 4 * ps, UFFDX_ARM_MISSING));
	snprintf(idbuf, sizeof(idbuf), "%llu", (unsigned long long)m.id);
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0) {
		/* given: the region and the context, at known numbers, without CLOEXEC */
		if (dup2(m.fd, EXEC_REGION_FD) != EXEC_REGION_FD ||
		    dup2(ctx, EXEC_CTX_FD) != EXEC_CTX_FD)
			_exit(40);
		execl(self_exe, self_exe, "--exec-probe", idbuf, (char *)NULL);
		_exit(41);
	}
	ASSERT_EQ(0, wait_child(pid, &status, 2 * WAIT_MS));
	ASSERT_TRUE(WIFEXITED(status)) TH_LOG("status 0x%x", status);
	EXPECT_EQ(0, WEXITSTATUS(status))
		TH_LOG("exec probe step %d failed (32 an fd not given survived, 33 a given fd is gone, 34 region id, 35 region data, 36 context not negotiated, 37 context unusable, 38/39 a region mapping survived, 40 dup2, 41 exec)",
		       WEXITSTATUS(status));
	/* the parent's are unchanged */
	EXPECT_EQ(-1, check_pattern(m.addr, ps, 21));
	close(rfd2);
	uffdx_region_unmap(&m2);
	uffdx_region_unmap(&m);
	close(ctx);
}

/* ---- exit with everything alive -------------------------------------------------- */

/*
 * Everything a process can hold: contexts (one never negotiated), regions
 * with pages, poison and armed holes, a fault whose event was read and
 * one whose event was not, a thread asleep in RESOLVE and one in read() on
 * another context, a moved page, a page a pipe holds after a DISCARD,
 * write-protected pages with a writer asleep (WP), written pages (WP
 * async); and one region passed to the parent.  Then exit (or SIGKILL).
 */
static void *sleeper_resolve(void *p)
{
	struct uffdx_event ev;

	uffdx_resolve_wait(*(int *)p, NULL, 0, NULL, &ev, 1, -1, 0);
	return NULL;
}

static void *sleeper_read(void *p)
{
	struct uffdx_event ev;

	uffdx_read_events(*(int *)p, &ev, 1);
	return NULL;
}

static void __attribute__((noreturn)) hold_everything(int sock, uint64_t feats)
{
	static int ctx2;
	struct uffdx_region_map m, w, wa;
	struct uffdx_event ev;
	struct accessor *a1, *a2, *a3;
	struct iovec iov;
	pthread_t th;
	uint64_t id;
	int ctx, unneg, pfd[2], rfd;
	int64_t res;

	ctx = ctx_open(feats, 0);
	ctx2 = ctx_open(feats, 0);
	unneg = open(UFFDX_DEV, O_RDWR | O_CLOEXEC);
	if (ctx < 0 || ctx2 < 0 || unneg < 0)
		_exit(50);
	if (uffdx_region_map(ctx, 64 * ps, 0, &m))
		_exit(51);
	fill_pattern(m.addr, 8 * ps, 31);
	if (uffdx_poison(ctx, m.id, 8 * ps, 2 * ps, 0, &res) ||
	    uffdx_arm(ctx, m.id, 16 * ps, 32 * ps, UFFDX_ARM_MISSING))
		_exit(52);
	/* one event read, one not */
	a1 = acc_new((uint8_t *)m.addr + 16 * ps, 0, 0);
	a2 = acc_new((uint8_t *)m.addr + 17 * ps, 1, 1);
	if (!a1 || !a2 || acc_start_thread(a1) || wait_event(ctx, &ev, WAIT_MS) != 1 ||
	    acc_start_thread(a2) || wait_fd(ctx, POLLIN, WAIT_MS) != 1)
		_exit(53);
	/* sleepers in RESOLVE and read() on the other context */
	if (pthread_create(&th, NULL, sleeper_resolve, &ctx2) ||
	    pthread_create(&th, NULL, sleeper_read, &ctx2))
		_exit(54);
	/* a page in a pipe, discarded from the region: limbo */
	if (pipe2(pfd, O_CLOEXEC))
		_exit(55);
	iov.iov_base = (uint8_t *)m.addr + 7 * ps;
	iov.iov_len = ps;
	if (vmsplice(pfd[1], &iov, 1, 0) != (ssize_t)ps ||
	    uffdx_discard(ctx, m.id, 7 * ps, ps, &res))
		_exit(56);
	/* a page moved into another context's region */
	rfd = uffdx_region_create(ctx2, 16 * ps, 0, &id);
	if (rfd < 0)
		_exit(57);
	if ((feats & UFFDX_FEATURE_MOVE) &&
	    uffdx_move(ctx, (uint64_t)rfd, 0, m.id, 6 * ps, ps, UFFDX_MOVE_DST_FD, &res))
		_exit(58);
	/* write protection, with a writer asleep; written pages */
	if (feats & UFFDX_FEATURE_WP) {
		if (uffdx_region_map(ctx, 16 * ps, UFFDX_REGION_CREATE_WP, &w))
			_exit(59);
		memset(w.addr, 5, 4 * ps);
		if (raw_range(ctx, UFFDX_IOC_WRITEPROTECT, w.id, 0, 16 * ps, NULL,
			      UFFDX_WP_PROTECT, &res))
			_exit(60);
		a3 = acc_new((uint8_t *)w.addr + ps, 1, 9);
		if (!a3 || acc_start_thread(a3) || !acc_blocked(a3, 20))
			_exit(61);
	}
	if (feats & UFFDX_FEATURE_WP_ASYNC) {
		if (uffdx_region_map(ctx, 16 * ps, UFFDX_REGION_CREATE_WP_ASYNC, &wa))
			_exit(62);
		memset(wa.addr, 5, 4 * ps);
		if (raw_range(ctx, UFFDX_IOC_WRITEPROTECT, wa.id, 0, 16 * ps, NULL,
			      UFFDX_WP_PROTECT, &res))
			_exit(63);
		memset(wa.addr, 6, 2 * ps);
	}
	/* the region goes to the parent; then, with everything alive, go */
	if (send_fd(sock, m.fd) || write(sock, "r", 1) != 1)
		_exit(64);
	if (wait_fd(sock, POLLIN, 60 * 1000) != 1)
		_exit(65);
	exit(0);
}

static void exit_with_everything(struct __test_metadata *_metadata, int killed)
{
	struct uffdx_region_info info;
	struct uffdx_api api;
	int sv[2], status = -1, fd, ctx;
	uint8_t v = 0, *p;
	pid_t pid;
	char c;

	ASSERT_EQ(0, uffdx_query(&api));
	ASSERT_EQ(0, socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv));
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0) {
		close(sv[0]);
		hold_everything(sv[1], api.features & (DEFAULT_FEATURES | UFFDX_FEATURE_MOVE |
						       UFFDX_FEATURE_WP | UFFDX_FEATURE_WP_ASYNC));
	}
	close(sv[1]);
	fd = recv_fd(sv[0], 2 * WAIT_MS);
	ASSERT_LE(0, fd) TH_LOG("the child did not get to the end: %s", strerror(-fd));
	ASSERT_EQ(1, wait_fd(sv[0], POLLIN, WAIT_MS));
	ASSERT_EQ(1, read(sv[0], &c, 1));
	if (killed)
		kill(pid, SIGKILL);
	else
		ASSERT_EQ(1, write(sv[0], "x", 1));
	ASSERT_EQ(0, wait_child(pid, &status, 2 * WAIT_MS)) TH_LOG("the child's exit hangs");
	if (killed) {
		ASSERT_TRUE(WIFSIGNALED(status));
	} else {
		ASSERT_TRUE(WIFEXITED(status)) TH_LOG("status 0x%x", status);
		EXPECT_EQ(0, WEXITSTATUS(status)) TH_LOG("child step %d failed", WEXITSTATUS(status));
	}
	/* the region it passed on lives, its owner gone */
	ASSERT_EQ(0, uffdx_region_info(fd, &info));
	EXPECT_TRUE(info.flags & UFFDX_REGION_OWNER_GONE);
	p = mmap(NULL, 64 * ps, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ASSERT_NE(MAP_FAILED, p);
	EXPECT_EQ(-1, check_pattern(p, 6 * ps, 31));
	EXPECT_EQ(SIGBUS, try_read(p + 8 * ps, &v)) TH_LOG("poison");
	EXPECT_EQ(SIGBUS, try_read(p + 20 * ps, &v)) TH_LOG("an armed hole of a gone context");
	EXPECT_EQ(0, try_read(p + 60 * ps, &v));
	munmap(p, 64 * ps);
	close(fd);
	close(sv[0]);
	/* and the module is as good as new */
	ctx = ctx_open(DEFAULT_FEATURES, 0);
	ASSERT_LE(0, ctx);
	close(ctx);
	if (!access("/sys/module/uffdx/refcnt", R_OK)) {
		long long rc = -1;
		uint64_t end = now_ns() + (uint64_t)WAIT_MS * 1000000ull;

		do {
			read_ll_file("/sys/module/uffdx/refcnt", &rc);
		} while (rc != 0 && now_ns() < end && !usleep(1000));
		EXPECT_EQ(0, rc) TH_LOG("module references left behind");
	}
}

TEST(exit_with_every_object_alive)
{
	SKIP_IF_NO_UFFDX();
	exit_with_everything(_metadata, 0);
}

TEST(killed_with_every_object_alive)
{
	SKIP_IF_NO_UFFDX();
	exit_with_everything(_metadata, 1);
}

int main(int argc, char **argv)
{
	ssize_t n;

	if (argc > 1 && !strcmp(argv[1], "--exec-probe"))
		return exec_probe(argc, argv);
	n = readlink("/proc/self/exe", self_exe, sizeof(self_exe) - 1);
	self_exe[n > 0 ? n : 0] = 0;
	return test_harness_run(argc, argv);
}
