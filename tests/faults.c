// SPDX-License-Identifier: GPL-2.0
/*
 * uffdx missing-fault tests (issue 3): events, COPY/ZERO/POISON/WAKE/
 * DONTWAKE, partial fills, faulting threads and processes, handlers in
 * other processes, killed faulters and handlers, kernel-mode faults, the
 * per-context memory limit, and mremap.
 *
 * Every wait is bounded (helpers.h: WAIT_MS); "still blocked" is checked
 * by watching a faulter for QUIET_MS.
 */
#include "helpers.h"

#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kselftest_harness.h"

#define NPAGES 64

FIXTURE(fault) {
	int ctx;
	int rfd;
	uint64_t id;
	size_t len;
	uint8_t *map;
	uint8_t *buf;	/* one page */
};

/* A context, a 64-page region mapped MAP_SHARED, armed entirely. */
FIXTURE_SETUP(fault)
{
	int ret;

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
	self->buf = malloc(ps);
	ASSERT_NE(NULL, self->buf);
}

FIXTURE_TEARDOWN(fault)
{
	if (self->ctx >= 0)
		close(self->ctx);	/* releases any faulter left asleep */
	if (self->map != MAP_FAILED)
		munmap(self->map, self->len);
	if (self->rfd >= 0)
		close(self->rfd);
	free(self->buf);
}

/* Check every field of a page-fault event. */
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

#define PAGE(i) (self->map + (size_t)(i) * ps)

TEST_F(fault, read_fault_event_then_copy)
{
	struct accessor *a = acc_new(PAGE(3) + 123, 0, 0);
	struct uffdx_event ev;
	int64_t res = 0;

	ASSERT_NE(NULL, a);
	EXPECT_EQ(0, event_arrives(self->ctx, 0));	/* nothing pending yet */
	ASSERT_EQ(0, acc_start_thread(a));
	memset(&ev, 0xcc, sizeof(ev));
	ASSERT_EQ(1, wait_event(self->ctx, &ev, WAIT_MS)) TH_LOG("no event");
	check_event(_metadata, &ev, PAGE(3), self->id, 3 * ps, 0, getpid(), a->tid);
	EXPECT_TRUE(acc_blocked(a, QUIET_MS)) TH_LOG("faulter did not wait");
	EXPECT_EQ(0, event_arrives(self->ctx, 0));	/* one fault, one event */

	fill_pattern(self->buf, ps, 3);
	ASSERT_EQ(0, uffdx_copy(self->ctx, self->id, 3 * ps, self->buf, ps, 0, &res));
	EXPECT_EQ((int64_t)ps, res);
	ASSERT_EQ(0, acc_wait(a, WAIT_MS)) TH_LOG("faulter not woken by COPY");
	EXPECT_EQ(0, a->sig);
	EXPECT_EQ(self->buf[123], a->first);
	EXPECT_EQ(checksum(self->buf, ps), a->sum);
	EXPECT_EQ(-1, check_pattern(PAGE(3), ps, 3));
	EXPECT_EQ(0, event_arrives(self->ctx, QUIET_MS));
	acc_free(a);
}

TEST_F(fault, write_fault_event_then_copy)
{
	struct accessor *a = acc_new(PAGE(7) + 5, 1, 0xab);
	struct uffdx_event ev;
	int64_t res = 0;

	ASSERT_NE(NULL, a);
	ASSERT_EQ(0, acc_start_thread(a));
	ASSERT_EQ(1, wait_event(self->ctx, &ev, WAIT_MS));
	check_event(_metadata, &ev, PAGE(7), self->id, 7 * ps, UFFDX_PF_WRITE, getpid(), a->tid);
	EXPECT_TRUE(acc_blocked(a, QUIET_MS));
	fill_pattern(self->buf, ps, 7);
	ASSERT_EQ(0, uffdx_copy(self->ctx, self->id, 7 * ps, self->buf, ps, 0, &res));
	ASSERT_EQ(0, acc_wait(a, WAIT_MS));
	EXPECT_EQ(0, a->sig);
	EXPECT_EQ(0xab, a->first);
	/* the write landed on top of the copied page */
	self->buf[5] = 0xab;
	EXPECT_EQ(0, memcmp(PAGE(7), self->buf, ps));
	acc_free(a);
}

TEST_F(fault, event_address_and_offset_of_offset_mapping)
{
	uint8_t *p = mmap(NULL, 2 * ps, PROT_READ | PROT_WRITE, MAP_SHARED, self->rfd, 50 * ps);
	struct accessor *a;
	struct uffdx_event ev;
	int64_t res;

	ASSERT_NE(MAP_FAILED, p);
	a = acc_new(p + ps + 9, 0, 0);
	ASSERT_NE(NULL, a);
	ASSERT_EQ(0, acc_start_thread(a));
	ASSERT_EQ(1, wait_event(self->ctx, &ev, WAIT_MS));
	check_event(_metadata, &ev, p + ps, self->id, 51 * ps, 0, getpid(), a->tid);
	ASSERT_EQ(0, uffdx_zero(self->ctx, self->id, 51 * ps, ps, 0, &res));
	ASSERT_EQ(0, acc_wait(a, WAIT_MS));
	EXPECT_EQ(0, a->sig);
	munmap(p, 2 * ps);
	acc_free(a);
}

TEST_F(fault, zero_resolves)
{
	struct accessor *a = acc_new(PAGE(2) + 77, 0, 0);
	struct uffdx_event ev;
	int64_t res = 0;

	ASSERT_NE(NULL, a);
	ASSERT_EQ(0, acc_start_thread(a));
	ASSERT_EQ(1, wait_event(self->ctx, &ev, WAIT_MS));
	EXPECT_EQ(2 * ps, ev.offset);
	ASSERT_EQ(0, uffdx_zero(self->ctx, self->id, 2 * ps, ps, 0, &res));
	EXPECT_EQ((int64_t)ps, res);
	ASSERT_EQ(0, acc_wait(a, WAIT_MS));
	EXPECT_EQ(0, a->sig);
	EXPECT_EQ(0, a->first);
	EXPECT_TRUE(is_zero(PAGE(2), ps));
	acc_free(a);
}

TEST_F(fault, poison_sigbus_until_discard)
{
	struct accessor *a = acc_new(PAGE(4), 0, 0), *b;
	struct uffdx_event ev;
	int64_t res = 0;
	uint8_t v = 1;

	ASSERT_NE(NULL, a);
	ASSERT_EQ(0, acc_start_thread(a));
	ASSERT_EQ(1, wait_event(self->ctx, &ev, WAIT_MS));
	ASSERT_EQ(0, uffdx_poison(self->ctx, self->id, 4 * ps, ps, 0, &res));
	EXPECT_EQ((int64_t)ps, res);
	ASSERT_EQ(0, acc_wait(a, WAIT_MS)) TH_LOG("faulter not woken by POISON");
	EXPECT_EQ(SIGBUS, a->sig);

	/* later accesses: SIGBUS straight away, no event */
	EXPECT_EQ(SIGBUS, try_read(PAGE(4), &v));
	EXPECT_EQ(SIGBUS, try_write(PAGE(4) + 1, 1));
	EXPECT_EQ(0, event_arrives(self->ctx, QUIET_MS));
	/* a poisoned slot is not a hole: fills fail with EEXIST */
	fill_pattern(self->buf, ps, 4);
	EXPECT_EQ(-1, raw_range(self->ctx, UFFDX_IOC_COPY, self->id, 4 * ps, ps, self->buf, 0, &res));
	EXPECT_EQ(EEXIST, errno);
	EXPECT_EQ(-EEXIST, res);

	/* DISCARD clears the poison; the page is armed, so: event again */
	ASSERT_EQ(0, uffdx_discard(self->ctx, self->id, 4 * ps, ps, &res));
	EXPECT_EQ((int64_t)ps, res);
	b = acc_new(PAGE(4) + 8, 0, 0);
	ASSERT_NE(NULL, b);
	ASSERT_EQ(0, acc_start_thread(b));
	ASSERT_EQ(1, wait_event(self->ctx, &ev, WAIT_MS)) TH_LOG("no event after DISCARD");
	check_event(_metadata, &ev, PAGE(4), self->id, 4 * ps, 0, getpid(), b->tid);
	ASSERT_EQ(0, uffdx_copy(self->ctx, self->id, 4 * ps, self->buf, ps, 0, &res));
	ASSERT_EQ(0, acc_wait(b, WAIT_MS));
	EXPECT_EQ(0, b->sig);
	EXPECT_EQ(self->buf[8], b->first);

	/* unarmed: POISON a hole, SIGBUS, DISCARD, then a zero page */
	ASSERT_EQ(0, uffdx_disarm(self->ctx, self->id, 5 * ps, ps));
	ASSERT_EQ(0, uffdx_poison(self->ctx, self->id, 5 * ps, ps, 0, &res));
	EXPECT_EQ(SIGBUS, try_read(PAGE(5), &v));
	ASSERT_EQ(0, uffdx_discard(self->ctx, self->id, 5 * ps, ps, &res));
	v = 1;
	EXPECT_EQ(0, try_read(PAGE(5) + 3, &v));
	EXPECT_EQ(0, v);
	/* POISON on a populated page: EEXIST */
	EXPECT_EQ(-1, raw_range(self->ctx, UFFDX_IOC_POISON, self->id, 5 * ps, ps, NULL, 0, &res));
	EXPECT_EQ(EEXIST, errno);
	EXPECT_EQ(-EEXIST, res);
	acc_free(a);
	acc_free(b);
}

TEST_F(fault, wake_without_fill_refaults)
{
	struct accessor *a = acc_new(PAGE(6), 1, 0x66);
	struct uffdx_event ev, ev2;
	int64_t res;

	ASSERT_NE(NULL, a);
	ASSERT_EQ(0, acc_start_thread(a));
	ASSERT_EQ(1, wait_event(self->ctx, &ev, WAIT_MS));
	ASSERT_EQ(0, uffdx_wake(self->ctx, self->id, 6 * ps, ps));
	/* the faulter retries, finds the armed hole, and faults again */
	memset(&ev2, 0xcc, sizeof(ev2));
	ASSERT_EQ(1, wait_event(self->ctx, &ev2, WAIT_MS)) TH_LOG("no second event after WAKE");
	check_event(_metadata, &ev2, PAGE(6), self->id, 6 * ps, UFFDX_PF_WRITE, getpid(), a->tid);
	EXPECT_TRUE(acc_blocked(a, QUIET_MS));
	ASSERT_EQ(0, uffdx_zero(self->ctx, self->id, 6 * ps, ps, 0, &res));
	ASSERT_EQ(0, acc_wait(a, WAIT_MS));
	EXPECT_EQ(0, a->sig);
	EXPECT_EQ(0x66, PAGE(6)[0]);
	acc_free(a);
}

TEST_F(fault, dontwake_until_wake)
{
	struct accessor *a = acc_new(PAGE(8) + 1, 0, 0);
	struct uffdx_event ev;
	int64_t res = 0;

	ASSERT_NE(NULL, a);
	ASSERT_EQ(0, acc_start_thread(a));
	ASSERT_EQ(1, wait_event(self->ctx, &ev, WAIT_MS));
	fill_pattern(self->buf, ps, 8);
	ASSERT_EQ(0, uffdx_copy(self->ctx, self->id, 8 * ps, self->buf, ps,
				UFFDX_FILL_DONTWAKE, &res));
	EXPECT_EQ((int64_t)ps, res);
	EXPECT_TRUE(acc_blocked(a, QUIET_MS)) TH_LOG("DONTWAKE fill woke the faulter");
	EXPECT_EQ(0, event_arrives(self->ctx, 0));
	ASSERT_EQ(0, uffdx_wake(self->ctx, self->id, 8 * ps, ps));
	ASSERT_EQ(0, acc_wait(a, WAIT_MS)) TH_LOG("WAKE did not wake the faulter");
	EXPECT_EQ(0, a->sig);
	EXPECT_EQ(self->buf[1], a->first);
	EXPECT_EQ(checksum(self->buf, ps), a->sum);
	acc_free(a);
}

TEST_F(fault, zero_dontwake_until_wake)
{
	struct accessor *a = acc_new(PAGE(9), 0, 0);
	struct uffdx_event ev;
	int64_t res = 0;

	ASSERT_NE(NULL, a);
	ASSERT_EQ(0, acc_start_thread(a));
	ASSERT_EQ(1, wait_event(self->ctx, &ev, WAIT_MS));
	ASSERT_EQ(0, uffdx_zero(self->ctx, self->id, 9 * ps, ps, UFFDX_FILL_DONTWAKE, &res));
	EXPECT_TRUE(acc_blocked(a, QUIET_MS));
	ASSERT_EQ(0, uffdx_wake(self->ctx, self->id, 0, self->len));
	ASSERT_EQ(0, acc_wait(a, WAIT_MS));
	EXPECT_EQ(0, a->sig);
	EXPECT_EQ(0, a->first);
	acc_free(a);
}

TEST_F(fault, fill_populated_eexist)
{
	int64_t res = 0;

	fill_pattern(self->buf, ps, 1);
	ASSERT_EQ(0, raw_range(self->ctx, UFFDX_IOC_COPY, self->id, 9 * ps, ps, self->buf, 0, &res));
	EXPECT_EQ((int64_t)ps, res);
	EXPECT_EQ(-1, raw_range(self->ctx, UFFDX_IOC_COPY, self->id, 9 * ps, ps, self->buf, 0, &res));
	EXPECT_EQ(EEXIST, errno);
	EXPECT_EQ(-EEXIST, res);
	EXPECT_EQ(-1, raw_range(self->ctx, UFFDX_IOC_ZERO, self->id, 9 * ps, ps, NULL, 0, &res));
	EXPECT_EQ(EEXIST, errno);
	EXPECT_EQ(-EEXIST, res);
	/* first page populated: nothing done at all */
	EXPECT_EQ(-1, raw_range(self->ctx, UFFDX_IOC_ZERO, self->id, 9 * ps, 3 * ps, NULL, 0, &res));
	EXPECT_EQ(EEXIST, errno);
	EXPECT_EQ(-EEXIST, res);
	EXPECT_EQ(-1, check_pattern(PAGE(9), ps, 1));
	{
		struct uffdx_region_info info;

		ASSERT_EQ(0, uffdx_region_info(self->rfd, &info));
		EXPECT_EQ(ps, info.resident);
	}
	/* the library reports it as -EEXIST */
	EXPECT_EQ(-EEXIST, uffdx_copy(self->ctx, self->id, 9 * ps, self->buf, ps, 0, &res));
}

TEST_F(fault, partial_copy_eagain_wakes_done_part)
{
	struct accessor *a0 = acc_new(PAGE(10) + 10, 0, 0);
	struct accessor *a1 = acc_new(PAGE(11) + 11, 1, 0x11);
	struct uffdx_region_info info;
	struct uffdx_event ev[4];
	uint8_t *src = malloc(4 * ps);
	int64_t res = 0;
	int n = 0, ret;

	ASSERT_NE(NULL, a0);
	ASSERT_NE(NULL, a1);
	ASSERT_NE(NULL, src);
	/* page 12 is populated */
	fill_pattern(self->buf, ps, 12);
	ASSERT_EQ(0, uffdx_copy(self->ctx, self->id, 12 * ps, self->buf, ps, 0, &res));

	ASSERT_EQ(0, acc_start_thread(a0));
	ASSERT_EQ(0, acc_start_thread(a1));
	while (n < 2) {
		ret = wait_events(self->ctx, ev + n, 4 - n, WAIT_MS);
		ASSERT_LT(0, ret) TH_LOG("got %d of 2 events", n);
		n += ret;
	}
	EXPECT_EQ(2, n);

	fill_pattern(src, 4 * ps, 99);
	ret = raw_range(self->ctx, UFFDX_IOC_COPY, self->id, 10 * ps, 4 * ps, src, 0, &res);
	EXPECT_EQ(-1, ret);
	EXPECT_EQ(EAGAIN, errno);
	EXPECT_EQ((int64_t)(2 * ps), res);

	/* the done part is woken */
	ASSERT_EQ(0, acc_wait(a0, WAIT_MS)) TH_LOG("page 10 faulter not woken");
	ASSERT_EQ(0, acc_wait(a1, WAIT_MS)) TH_LOG("page 11 faulter not woken");
	EXPECT_EQ(0, a0->sig);
	EXPECT_EQ(0, a1->sig);
	EXPECT_EQ(src[10], a0->first);
	EXPECT_EQ(0, memcmp(PAGE(10), src, ps));
	src[ps + 11] = 0x11;
	EXPECT_EQ(0, memcmp(PAGE(11), src + ps, ps));
	/* page 12 untouched, page 13 still a hole */
	EXPECT_EQ(-1, check_pattern(PAGE(12), ps, 12));
	ASSERT_EQ(0, uffdx_region_info(self->rfd, &info));
	EXPECT_EQ(3 * ps, info.resident);

	/* through the library: -EAGAIN, and the result too */
	ASSERT_EQ(0, uffdx_zero(self->ctx, self->id, 15 * ps, ps, 0, &res));
	res = 0;
	EXPECT_EQ(-EAGAIN, uffdx_copy(self->ctx, self->id, 13 * ps, src, 3 * ps, 0, &res));
	EXPECT_EQ((int64_t)(2 * ps), res);	/* 13 and 14; 15 was populated */
	EXPECT_EQ(0, memcmp(PAGE(13), src, 2 * ps));
	EXPECT_TRUE(is_zero(PAGE(15), ps));
	free(src);
	acc_free(a0);
	acc_free(a1);
}

TEST_F(fault, read_nonblock_eagain)
{
	struct uffdx_event ev;
	int fd = ctx_open(DEFAULT_FEATURES, O_NONBLOCK);

	ASSERT_LE(0, fd);
	EXPECT_EQ(-1, read(fd, &ev, sizeof(ev)));
	EXPECT_EQ(EAGAIN, errno);
	EXPECT_EQ(-EAGAIN, uffdx_read_events(fd, &ev, 1));
	EXPECT_EQ(0, wait_fd(fd, POLLIN, 0));
	close(fd);
	/* a blocking context blocks (here: until our timer interrupts it) */
	EXPECT_EQ(-EINTR, read_timeout(self->ctx, &ev, sizeof(ev), 300));
}

/*
 * poll() and epoll: POLLERR before negotiation; readable exactly while an
 * event is unread (a read event whose fault still sleeps is not "ready").
 */
TEST_F(fault, poll_and_epoll_readiness)
{
	struct accessor *a = acc_new(PAGE(15), 0, 0);
	struct epoll_event eev = { .events = EPOLLIN };
	struct pollfd pfd;
	struct uffdx_event ev;
	int raw, ep;
	int64_t res;

	ASSERT_NE(NULL, a);
	raw = uffdx_open(0);
	ASSERT_LE(0, raw);
	pfd = (struct pollfd){ .fd = raw, .events = POLLIN };
	EXPECT_EQ(1, poll(&pfd, 1, 0));
	EXPECT_EQ(POLLERR, pfd.revents & (POLLERR | POLLIN));
	close(raw);

	ep = epoll_create1(EPOLL_CLOEXEC);
	ASSERT_LE(0, ep);
	eev.data.fd = self->ctx;
	ASSERT_EQ(0, epoll_ctl(ep, EPOLL_CTL_ADD, self->ctx, &eev));
	EXPECT_EQ(0, epoll_wait(ep, &eev, 1, 0));

	ASSERT_EQ(0, acc_start_thread(a));
	memset(&eev, 0, sizeof(eev));
	ASSERT_EQ(1, epoll_wait(ep, &eev, 1, WAIT_MS));
	EXPECT_EQ(self->ctx, eev.data.fd);
	EXPECT_TRUE(eev.events & EPOLLIN);

	ASSERT_EQ(1, uffdx_read_events(self->ctx, &ev, 1));
	EXPECT_EQ(15 * ps, ev.offset);
	/* read, not resolved: the faulter sleeps, nothing is ready */
	EXPECT_TRUE(acc_blocked(a, QUIET_MS));
	EXPECT_EQ(0, epoll_wait(ep, &eev, 1, 0));
	EXPECT_EQ(0, wait_fd(self->ctx, POLLIN, 0));

	fill_pattern(self->buf, ps, 15);
	ASSERT_EQ(0, uffdx_copy(self->ctx, self->id, 15 * ps, self->buf, ps, 0, &res));
	ASSERT_EQ(0, acc_wait(a, WAIT_MS));
	EXPECT_EQ(0, a->sig);
	EXPECT_EQ(self->buf[0], a->first);
	close(ep);
	acc_free(a);
}

TEST_F(fault, read_buffer_too_small_einval)
{
	struct accessor *a = acc_new(PAGE(14), 0, 0);
	uint8_t small[sizeof(struct uffdx_event)];
	struct uffdx_event ev;
	int64_t res;

	ASSERT_NE(NULL, a);
	ASSERT_EQ(0, acc_start_thread(a));
	ASSERT_EQ(1, wait_fd(self->ctx, POLLIN, WAIT_MS));
	EXPECT_EQ(-1, read(self->ctx, small, sizeof(small) - 1));
	EXPECT_EQ(EINVAL, errno);
	EXPECT_EQ(-1, read(self->ctx, small, 1));
	EXPECT_EQ(EINVAL, errno);
	/* the event was not consumed */
	ASSERT_EQ(1, wait_event(self->ctx, &ev, WAIT_MS));
	check_event(_metadata, &ev, PAGE(14), self->id, 14 * ps, 0, getpid(), a->tid);
	ASSERT_EQ(0, uffdx_zero(self->ctx, self->id, 14 * ps, ps, 0, &res));
	ASSERT_EQ(0, acc_wait(a, WAIT_MS));
	acc_free(a);
}

#define NMANY 8

/*
 * Wait until the n accessor threads are all asleep ('S': a missing fault
 * sleeps TASK_INTERRUPTIBLE) or timeout_ms pass; returns how many were.
 */
static int wait_threads_sleeping(struct accessor **a, int n, int timeout_ms)
{
	uint64_t end = now_ns() + (uint64_t)timeout_ms * 1000000ull;
	int i, asleep;

	for (;;) {
		for (asleep = 0, i = 0; i < n; i++)
			asleep += !a[i]->done && thread_state(a[i]->tid) == 'S';
		if (asleep == n || now_ns() >= end)
			return asleep;
		usleep(2000);
	}
}

TEST_F(fault, several_events_per_read)
{
	struct accessor *a[NMANY];
	struct uffdx_event ev[2 * NMANY];
	int seen[NMANY] = { 0 };
	int i, n = 0, max1 = 0, ret;
	uint8_t *src = malloc(NMANY * ps);
	int64_t res = 0;

	ASSERT_NE(NULL, src);
	for (i = 0; i < NMANY; i++) {
		a[i] = acc_new(PAGE(16 + i) + i, i & 1, (uint8_t)(0x80 + i));
		ASSERT_NE(NULL, a[i]);
		ASSERT_EQ(0, acc_start_thread(a[i]));
	}
	for (i = 0; i < NMANY; i++)
		ASSERT_EQ(0, acc_wait_started(a[i], WAIT_MS));
	/*
	 * Let them all fault and queue: wait until every faulter sleeps
	 * (interruptibly: the missing-fault wait), however long that takes
	 * on a slow kernel, instead of a fixed pause.
	 */
	EXPECT_EQ(NMANY, wait_threads_sleeping(a, NMANY, 4 * WAIT_MS))
		TH_LOG("not every faulter went to sleep");
	while (n < NMANY) {
		ret = wait_events(self->ctx, ev + n, 2 * NMANY - n, WAIT_MS);
		ASSERT_LT(0, ret) TH_LOG("got %d of %d events", n, NMANY);
		if (ret > max1)
			max1 = ret;
		n += ret;
	}
	EXPECT_EQ(NMANY, n);
	EXPECT_LE(2, max1) TH_LOG("never more than one event per read()");
	for (i = 0; i < n; i++) {
		int k = (int)(ev[i].offset / ps) - 16;

		ASSERT_TRUE(k >= 0 && k < NMANY) TH_LOG("offset 0x%llx", (unsigned long long)ev[i].offset);
		seen[k]++;
		check_event(_metadata, &ev[i], PAGE(16 + k), self->id, (16 + k) * ps,
			    k & 1 ? UFFDX_PF_WRITE : 0, getpid(), a[k]->tid);
	}
	for (i = 0; i < NMANY; i++)
		EXPECT_EQ(1, seen[i]) TH_LOG("page %d", 16 + i);
	fill_pattern(src, NMANY * ps, 16);
	ASSERT_EQ(0, uffdx_copy(self->ctx, self->id, 16 * ps, src, NMANY * ps, 0, &res));
	for (i = 0; i < NMANY; i++) {
		ASSERT_EQ(0, acc_wait(a[i], WAIT_MS));
		EXPECT_EQ(0, a[i]->sig);
		EXPECT_EQ(i & 1 ? (uint8_t)(0x80 + i) : src[i * ps + i], a[i]->first);
		acc_free(a[i]);
	}
	free(src);
}

/* ---- many threads, many pages ------------------------------------------ */

#define MT_THREADS 8

struct mt_arg {
	uint8_t *map;
	int idx;
	volatile int done;
	char err[128];
};

static void *mt_thread(void *p)
{
	struct mt_arg *t = p;
	uint8_t *want = malloc(ps);
	int k;

	for (k = t->idx; k < NPAGES && !t->err[0]; k += MT_THREADS) {
		uint8_t *page = t->map + (size_t)k * ps;
		size_t off = (size_t)(k * 37) % ps;
		uint8_t v;
		int sig;

		fill_pattern(want, ps, 1000 + k);
		if (k & 2)	/* write the value the page will hold anyway */
			sig = try_write(page + off, want[off]);
		else
			sig = try_read(page + off, &v);
		if (sig) {
			snprintf(t->err, sizeof(t->err), "page %d: signal %d", k, sig);
			break;
		}
		if (check_pattern(page, ps, 1000 + k) != -1)
			snprintf(t->err, sizeof(t->err), "page %d: wrong contents", k);
	}
	free(want);
	__atomic_store_n(&t->done, 1, __ATOMIC_SEQ_CST);
	return NULL;
}

TEST_F_TIMEOUT(fault, many_threads_many_pages, 120)
{
	struct mt_arg args[MT_THREADS];
	pthread_t th[MT_THREADS];
	struct uffdx_event ev[16];
	int i, nev = 0, eexist = 0, ndone = 0, last_nev = 0, last_ndone = 0;
	/* fail only when nothing moves for this long, not on a slow run */
	const uint64_t stall_ns = 20000000000ull;
	uint64_t last_progress = now_ns();
	int64_t res;

	for (i = 0; i < MT_THREADS; i++) {
		memset(&args[i], 0, sizeof(args[i]));
		args[i].map = self->map;
		args[i].idx = i;
		ASSERT_EQ(0, pthread_create(&th[i], NULL, mt_thread, &args[i]));
	}
	while (ndone < MT_THREADS && now_ns() - last_progress < stall_ns) {
		int n = wait_events(self->ctx, ev, 16, 50);

		ASSERT_LE(0, n) TH_LOG("read: %s", strerror(-n));
		for (i = 0; i < n; i++) {
			uint64_t k = ev[i].offset / ps;
			int ret;

			nev++;
			EXPECT_EQ(self->id, ev[i].region_id);
			EXPECT_EQ((uintptr_t)PAGE(k), ev[i].address);
			EXPECT_EQ((k & 2) ? UFFDX_PF_WRITE : 0, ev[i].flags);
			ASSERT_LT(k, NPAGES);
			fill_pattern(self->buf, ps, 1000 + k);
			ret = uffdx_copy(self->ctx, self->id, k * ps, self->buf, ps, 0, &res);
			if (ret == -EEXIST) {
				eexist++;
				ret = uffdx_wake(self->ctx, self->id, k * ps, ps);
			}
			ASSERT_EQ(0, ret) TH_LOG("resolve page %llu: %s",
						 (unsigned long long)k, strerror(-ret));
		}
		for (ndone = 0, i = 0; i < MT_THREADS; i++)
			ndone += __atomic_load_n(&args[i].done, __ATOMIC_SEQ_CST);
		if (nev != last_nev || ndone != last_ndone) {
			last_nev = nev;
			last_ndone = ndone;
			last_progress = now_ns();
		}
	}
	ASSERT_EQ(MT_THREADS, ndone) TH_LOG("faulting threads stuck: no progress for %llu s",
					    (unsigned long long)(stall_ns / 1000000000ull));
	for (i = 0; i < MT_THREADS; i++) {
		pthread_join(th[i], NULL);
		EXPECT_EQ(0, args[i].err[0]) TH_LOG("thread %d: %s", i, args[i].err);
	}
	EXPECT_EQ(NPAGES, nev);
	EXPECT_EQ(0, eexist);
	for (i = 0; i < NPAGES; i++)
		EXPECT_EQ(-1, check_pattern(PAGE(i), ps, 1000 + i)) TH_LOG("page %d", i);
}

/* ---- other processes ------------------------------------------------------- */

TEST_F(fault, faulter_in_child_handler_in_parent)
{
	struct accessor *a = acc_new(PAGE(30) + 300, 0, 0);
	struct uffdx_event ev;
	int64_t res;

	ASSERT_NE(NULL, a);
	ASSERT_EQ(0, acc_start_child(a));
	ASSERT_EQ(1, wait_event(self->ctx, &ev, WAIT_MS));
	check_event(_metadata, &ev, PAGE(30), self->id, 30 * ps, 0, a->child, a->child);
	EXPECT_TRUE(acc_blocked(a, QUIET_MS));
	fill_pattern(self->buf, ps, 30);
	ASSERT_EQ(0, uffdx_copy(self->ctx, self->id, 30 * ps, self->buf, ps, 0, &res));
	ASSERT_EQ(0, acc_wait(a, WAIT_MS));
	EXPECT_EQ(0, a->sig);
	EXPECT_EQ(self->buf[300], a->first);
	EXPECT_EQ(checksum(self->buf, ps), a->sum);
	acc_free(a);
}

TEST_F(fault, handler_in_child_with_inherited_ctx)
{
	struct accessor *a;
	int status = -1;
	pid_t pid, parent = getpid();

	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0) {
		struct uffdx_event ev;
		int64_t res;

		if (wait_event(self->ctx, &ev, WAIT_MS) != 1)
			_exit(10);
		if (ev.offset != 31 * ps || ev.pid != (uint32_t)parent ||
		    ev.flags != UFFDX_PF_WRITE || ev.region_id != self->id)
			_exit(11);
		fill_pattern(self->buf, ps, 31);
		if (uffdx_copy(self->ctx, self->id, ev.offset, self->buf, ps, 0, &res))
			_exit(12);
		_exit(0);
	}
	a = acc_new(PAGE(31) + 31, 1, 0x31);
	ASSERT_NE(NULL, a);
	ASSERT_EQ(0, acc_start_thread(a));
	ASSERT_EQ(0, acc_wait(a, WAIT_MS)) TH_LOG("child handler did not resolve");
	EXPECT_EQ(0, a->sig);
	ASSERT_EQ(0, wait_child(pid, &status, WAIT_MS));
	ASSERT_TRUE(WIFEXITED(status));
	EXPECT_EQ(0, WEXITSTATUS(status)) TH_LOG("child failed at step %d", WEXITSTATUS(status));
	fill_pattern(self->buf, ps, 31);
	self->buf[31] = 0x31;
	EXPECT_EQ(0, memcmp(PAGE(31), self->buf, ps));
	acc_free(a);
}

TEST_F(fault, two_processes_same_page_two_events_one_copy)
{
	struct accessor *c = acc_new(PAGE(33) + 1, 0, 0);
	struct accessor *t = acc_new(PAGE(33) + 2, 0, 0);
	struct uffdx_event ev[4];
	int n = 0, ret, from_child = 0, from_thread = 0, i;
	int64_t res;

	ASSERT_NE(NULL, c);
	ASSERT_NE(NULL, t);
	ASSERT_EQ(0, acc_start_child(c));
	ASSERT_EQ(0, acc_start_thread(t));
	while (n < 2) {
		ret = wait_events(self->ctx, ev + n, 4 - n, WAIT_MS);
		ASSERT_LT(0, ret) TH_LOG("got %d of 2 events", n);
		n += ret;
	}
	EXPECT_EQ(0, event_arrives(self->ctx, QUIET_MS));
	for (i = 0; i < n; i++) {
		EXPECT_EQ(33 * ps, ev[i].offset);
		EXPECT_EQ((uintptr_t)PAGE(33), ev[i].address);
		if (ev[i].pid == (uint32_t)c->child && ev[i].tid == (uint32_t)c->child)
			from_child++;
		if (ev[i].pid == (uint32_t)getpid() && ev[i].tid == (uint32_t)t->tid)
			from_thread++;
	}
	EXPECT_EQ(1, from_child);
	EXPECT_EQ(1, from_thread);

	fill_pattern(self->buf, ps, 33);
	ASSERT_EQ(0, uffdx_copy(self->ctx, self->id, 33 * ps, self->buf, ps, 0, &res));
	ASSERT_EQ(0, acc_wait(c, WAIT_MS)) TH_LOG("child faulter not woken");
	ASSERT_EQ(0, acc_wait(t, WAIT_MS)) TH_LOG("thread faulter not woken");
	EXPECT_EQ(self->buf[1], c->first);
	EXPECT_EQ(self->buf[2], t->first);
	EXPECT_EQ(-1, raw_range(self->ctx, UFFDX_IOC_COPY, self->id, 33 * ps, ps, self->buf, 0, &res));
	EXPECT_EQ(EEXIST, errno);
	EXPECT_EQ(-EEXIST, res);
	acc_free(c);
	acc_free(t);
}

TEST_F(fault, faulter_killed_while_asleep)
{
	struct accessor *a = acc_new(PAGE(34), 1, 1), *b = acc_new(PAGE(35), 0, 0);
	struct uffdx_event ev;
	int status = 0;
	int64_t res;

	ASSERT_NE(NULL, a);
	ASSERT_NE(NULL, b);
	/* killed after its event was read */
	ASSERT_EQ(0, acc_start_child(a));
	ASSERT_EQ(1, wait_event(self->ctx, &ev, WAIT_MS));
	EXPECT_EQ((uint32_t)a->child, ev.pid);
	ASSERT_EQ(0, kill_child(a->child, &status)) TH_LOG("killed faulter did not exit");
	a->child = -1;
	EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	fill_pattern(self->buf, ps, 34);
	ASSERT_EQ(0, uffdx_copy(self->ctx, self->id, 34 * ps, self->buf, ps, 0, &res));
	EXPECT_EQ(-1, check_pattern(PAGE(34), ps, 34));

	/* killed while its event is still pending */
	ASSERT_EQ(0, acc_start_child(b));
	ASSERT_EQ(1, wait_fd(self->ctx, POLLIN, WAIT_MS));
	ASSERT_EQ(0, kill_child(b->child, &status));
	b->child = -1;
	EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	/* whether its event is still readable is not specified; drain */
	while (event_arrives(self->ctx, 50) == 1)
		ASSERT_EQ((ssize_t)sizeof(ev), read_timeout(self->ctx, &ev, sizeof(ev), 1000));
	ASSERT_EQ(0, uffdx_zero(self->ctx, self->id, 35 * ps, ps, 0, &res));
	EXPECT_TRUE(is_zero(PAGE(35), ps));
	EXPECT_EQ(0, event_arrives(self->ctx, QUIET_MS));
	acc_free(a);
	acc_free(b);
}

TEST_F(fault, handler_killed_faulter_gets_sigbus)
{
	struct accessor *a = acc_new(PAGE(36), 0, 0);
	int pfd[2], status = 0;
	uint8_t v;
	pid_t h;
	char c;

	ASSERT_NE(NULL, a);
	ASSERT_EQ(0, pipe(pfd));
	h = fork();
	ASSERT_LE(0, h);
	if (h == 0) {
		struct uffdx_event ev;

		/* the handler: sees the fault, then never resolves it */
		if (wait_event(self->ctx, &ev, WAIT_MS) != 1)
			_exit(10);
		if (write(pfd[1], "e", 1) != 1)
			_exit(11);
		sleep_ms(20000);
		_exit(12);
	}
	/* the handler child now holds the only context fd */
	close(self->ctx);
	self->ctx = -1;
	ASSERT_EQ(0, acc_start_child(a));
	ASSERT_EQ(1, wait_fd(pfd[0], POLLIN, WAIT_MS)) TH_LOG("handler saw no event");
	ASSERT_EQ(1, read(pfd[0], &c, 1));
	EXPECT_TRUE(acc_blocked(a, QUIET_MS));
	ASSERT_EQ(0, kill_child(h, &status));
	ASSERT_EQ(0, acc_wait(a, WAIT_MS)) TH_LOG("faulter hangs after the handler died");
	EXPECT_EQ(SIGBUS, a->sig);
	/* other armed holes: SIGBUS at once */
	EXPECT_EQ(SIGBUS, try_read(PAGE(37), &v));
	acc_free(a);
}

/* ---- the handler's own process ---------------------------------------------- */

/* Rounds the main thread must see completed, and the bound on any one. */
#define MM_MIN_ROUNDS	20
#define MM_ROUND_MAX_NS	10000000000ull

struct mm_arg {
	int rfd;
	size_t len;
	volatile int stop;
	volatile int done;
	unsigned long rounds;		/* atomic: completed rounds */
	uint64_t max_round_ns;		/* longest round */
	int err;
};

static void *mm_thread(void *p)
{
	struct mm_arg *m = p;

	while (!__atomic_load_n(&m->stop, __ATOMIC_SEQ_CST) && !m->err) {
		uint64_t t0 = now_ns(), dt;
		uint8_t *q = mmap(NULL, 16 * ps, PROT_READ | PROT_WRITE,
				  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		if (q == MAP_FAILED) {
			m->err = errno;
			break;
		}
		q[0] = 1;
		q[15 * ps] = 2;
		if (mprotect(q, ps, PROT_READ))
			m->err = errno;
		munmap(q, 16 * ps);
		/* and the region itself, mapped and unmapped again */
		q = mmap(NULL, m->len, PROT_READ, MAP_SHARED, m->rfd, 0);
		if (q == MAP_FAILED)
			m->err = errno;
		else
			munmap(q, m->len);
		dt = now_ns() - t0;
		if (dt > m->max_round_ns)
			m->max_round_ns = dt;
		__atomic_add_fetch(&m->rounds, 1, __ATOMIC_SEQ_CST);
	}
	__atomic_store_n(&m->done, 1, __ATOMIC_SEQ_CST);
	return NULL;
}

/*
 * A fault pending in the handler's process must not block its mmap and
 * munmap: the mapping thread keeps completing rounds.  What is checked is
 * progress (MM_MIN_ROUNDS rounds, none longer than MM_ROUND_MAX_NS), not
 * how many rounds fit in some time: a debug kernel under TCG is slow.
 */
TEST_F_TIMEOUT(fault, mmap_munmap_while_fault_pending, 120)
{
	struct accessor *a = acc_new(PAGE(38), 0, 0);
	struct mm_arg m = { .rfd = self->rfd, .len = self->len };
	unsigned long seen = 0, now_rounds;
	uint64_t last = 0;
	struct uffdx_event ev;
	pthread_t th;
	int64_t res;

	ASSERT_NE(NULL, a);
	ASSERT_EQ(0, acc_start_thread(a));
	ASSERT_EQ(1, wait_event(self->ctx, &ev, WAIT_MS));
	ASSERT_EQ(0, pthread_create(&th, NULL, mm_thread, &m));
	last = now_ns();
	while (seen < MM_MIN_ROUNDS && !m.err && !m.done) {
		now_rounds = __atomic_load_n(&m.rounds, __ATOMIC_SEQ_CST);
		if (now_rounds != seen) {
			seen = now_rounds;
			last = now_ns();
		} else if (now_ns() - last > MM_ROUND_MAX_NS) {
			break;
		}
		usleep(1000);
	}
	__atomic_store_n(&m.stop, 1, __ATOMIC_SEQ_CST);
	ASSERT_LE(MM_MIN_ROUNDS, seen)
		TH_LOG("mmap/munmap stalled after %lu rounds with a fault pending", seen);
	/* the round in progress ends too */
	last = now_ns();
	while (!__atomic_load_n(&m.done, __ATOMIC_SEQ_CST) && now_ns() - last < MM_ROUND_MAX_NS)
		usleep(1000);
	ASSERT_TRUE(m.done) TH_LOG("mmap/munmap blocked by a pending fault");
	pthread_join(th, NULL);
	EXPECT_EQ(0, m.err) TH_LOG("%s", strerror(m.err));
	EXPECT_GE(MM_ROUND_MAX_NS, m.max_round_ns)
		TH_LOG("a round took %llu ms", (unsigned long long)(m.max_round_ns / 1000000));
	TH_LOG("%lu rounds, longest %llu ms", m.rounds,
	       (unsigned long long)(m.max_round_ns / 1000000));
	/* all along, the fault stayed pending */
	EXPECT_TRUE(acc_blocked(a, 0));
	fill_pattern(self->buf, ps, 38);
	ASSERT_EQ(0, uffdx_copy(self->ctx, self->id, 38 * ps, self->buf, ps, 0, &res));
	ASSERT_EQ(0, acc_wait(a, WAIT_MS));
	EXPECT_EQ(self->buf[0], a->first);
	acc_free(a);
}

TEST_F(fault, disarm_wakes_to_zero_page)
{
	struct accessor *a = acc_new(PAGE(44) + 4, 0, 0);
	struct uffdx_event ev;

	ASSERT_NE(NULL, a);
	ASSERT_EQ(0, acc_start_thread(a));
	ASSERT_EQ(1, wait_event(self->ctx, &ev, WAIT_MS));
	ASSERT_EQ(0, uffdx_disarm(self->ctx, self->id, 44 * ps, ps));
	ASSERT_EQ(0, acc_wait(a, WAIT_MS)) TH_LOG("DISARM did not wake");
	EXPECT_EQ(0, a->sig);
	EXPECT_EQ(0, a->first);
	EXPECT_EQ(0, event_arrives(self->ctx, QUIET_MS));
	acc_free(a);
}

/*
 * A read() that cannot copy its event out puts it back and wakes the
 * readers again: for an edge-triggered epoll the event is new.
 */
TEST_F(fault, read_efault_puts_back_and_wakes_epollet)
{
	struct accessor *a = acc_new(PAGE(46) + 46, 0, 0);
	struct epoll_event eev = { .events = EPOLLIN | EPOLLET };
	struct uffdx_event ev[2];
	/* volatile: the compiler must not see through the bad address */
	void *volatile bad = (void *)(uintptr_t)1;
	int ep;
	int64_t res;

	ASSERT_NE(NULL, a);
	ep = epoll_create1(EPOLL_CLOEXEC);
	ASSERT_LE(0, ep);
	eev.data.fd = self->ctx;
	ASSERT_EQ(0, epoll_ctl(ep, EPOLL_CTL_ADD, self->ctx, &eev));
	EXPECT_EQ(0, epoll_wait(ep, &eev, 1, 0));

	ASSERT_EQ(0, acc_start_thread(a));
	memset(&eev, 0, sizeof(eev));
	ASSERT_EQ(1, epoll_wait(ep, &eev, 1, WAIT_MS)) TH_LOG("no edge for the fault");
	EXPECT_EQ(self->ctx, eev.data.fd);
	/* the edge is used up */
	EXPECT_EQ(0, epoll_wait(ep, &eev, 1, 0));

	EXPECT_EQ(-1, read(self->ctx, bad, sizeof(struct uffdx_event)));
	EXPECT_EQ(EFAULT, errno);
	/* put back: a new edge */
	memset(&eev, 0, sizeof(eev));
	ASSERT_EQ(1, epoll_wait(ep, &eev, 1, WAIT_MS))
		TH_LOG("event put back without waking edge-triggered epoll");
	EXPECT_EQ(self->ctx, eev.data.fd);
	EXPECT_TRUE(eev.events & EPOLLIN);

	/* the same event, once */
	memset(ev, 0xcc, sizeof(ev));
	ASSERT_EQ(1, uffdx_read_events(self->ctx, ev, 2));
	check_event(_metadata, &ev[0], PAGE(46), self->id, 46 * ps, 0, getpid(), a->tid);
	EXPECT_EQ(0, event_arrives(self->ctx, 0));
	EXPECT_TRUE(acc_blocked(a, 0));

	fill_pattern(self->buf, ps, 46);
	ASSERT_EQ(0, uffdx_copy(self->ctx, self->id, 46 * ps, self->buf, ps, 0, &res));
	ASSERT_EQ(0, acc_wait(a, WAIT_MS));
	EXPECT_EQ(0, a->sig);
	EXPECT_EQ(self->buf[46], a->first);
	close(ep);
	acc_free(a);
}

/* ---- kernel-mode accesses ----------------------------------------------------- */

TEST_F(fault, copy_from_armed_source_efault)
{
	struct uffdx_region_info info;
	struct accessor *a;
	struct uffdx_event ev;
	int64_t res = 0;

	/* src: page 40 of our own region, an armed hole */
	EXPECT_EQ(-1, raw_range(self->ctx, UFFDX_IOC_COPY, self->id, 41 * ps, ps, PAGE(40), 0, &res));
	EXPECT_EQ(EFAULT, errno);
	EXPECT_EQ(-EFAULT, res);
	EXPECT_EQ(0, event_arrives(self->ctx, QUIET_MS)) TH_LOG("kernel-mode fault queued an event");
	ASSERT_EQ(0, uffdx_region_info(self->rfd, &info));
	EXPECT_EQ(0, info.resident);

	/* nothing lost: page 41 is still an armed hole */
	a = acc_new(PAGE(41), 0, 0);
	ASSERT_NE(NULL, a);
	ASSERT_EQ(0, acc_start_thread(a));
	ASSERT_EQ(1, wait_event(self->ctx, &ev, WAIT_MS));
	EXPECT_EQ(41 * ps, ev.offset);
	fill_pattern(self->buf, ps, 41);
	ASSERT_EQ(0, uffdx_copy(self->ctx, self->id, 41 * ps, self->buf, ps, 0, &res));
	ASSERT_EQ(0, acc_wait(a, WAIT_MS));
	EXPECT_EQ(self->buf[0], a->first);
	acc_free(a);
}

TEST_F(fault, syscall_into_armed_page_efault)
{
	struct uffdx_region_info info;
	char data[100];
	int p[2];

	memset(data, 'q', sizeof(data));
	ASSERT_EQ(0, pipe(p));
	ASSERT_EQ((ssize_t)sizeof(data), write(p[1], data, sizeof(data)));
	/* the kernel writes into an armed hole */
	EXPECT_EQ(-1, read(p[0], PAGE(42), sizeof(data)));
	EXPECT_EQ(EFAULT, errno);
	/* the kernel reads from an armed hole */
	EXPECT_EQ(-1, write(p[1], PAGE(43), sizeof(data)));
	EXPECT_EQ(EFAULT, errno);
	EXPECT_EQ(0, event_arrives(self->ctx, QUIET_MS));
	ASSERT_EQ(0, uffdx_region_info(self->rfd, &info));
	EXPECT_EQ(0, info.resident);
	close(p[0]);
	close(p[1]);
}

struct kcopy_arg {
	int ctx;
	uint64_t id;
	uint64_t dst_off;
	const void *src;
	volatile pid_t tid;
	volatile int started, done;
	int ret;
	int64_t res;
};

static void *kcopy_thread(void *p)
{
	struct kcopy_arg *k = p;

	k->tid = sys_gettid();
	__atomic_store_n(&k->started, 1, __ATOMIC_SEQ_CST);
	k->ret = uffdx_copy(k->ctx, k->id, k->dst_off, k->src, ps, 0, &k->res);
	__atomic_store_n(&k->done, 1, __ATOMIC_SEQ_CST);
	return NULL;
}

TEST_F(fault, kernel_faults_copy_waits_for_source)
{
	struct kcopy_arg k;
	struct uffdx_region_map m;
	struct uffdx_event ev;
	int kctx, ret, i;
	int64_t res;
	pthread_t th;

	if (getuid() != 0)
		SKIP(return, "needs CAP_SYS_PTRACE");
	kctx = ctx_open(DEFAULT_FEATURES | UFFDX_FEATURE_KERNEL_FAULTS, 0);
	ASSERT_LE(0, kctx) TH_LOG("%s", strerror(-kctx));
	ret = uffdx_region_map(kctx, 4 * ps, 0, &m);
	ASSERT_EQ(0, ret);
	ASSERT_EQ(0, uffdx_arm(kctx, m.id, 0, 4 * ps, UFFDX_ARM_MISSING));

	memset(&k, 0, sizeof(k));
	k.ctx = kctx;
	k.id = m.id;
	k.dst_off = ps;
	k.src = m.addr;		/* page 0: an armed hole */
	ASSERT_EQ(0, pthread_create(&th, NULL, kcopy_thread, &k));
	ASSERT_EQ(1, wait_event(kctx, &ev, WAIT_MS)) TH_LOG("no event for the COPY source");
	for (i = 0; i < 100 && !k.tid; i++)
		usleep(1000);
	check_event(_metadata, &ev, m.addr, m.id, 0, UFFDX_PF_KERNEL, getpid(), k.tid);
	/* the copying thread waits */
	sleep_ms(QUIET_MS);
	EXPECT_FALSE(k.done);

	/* a second handler resolves the source */
	fill_pattern(self->buf, ps, 400);
	ASSERT_EQ(0, uffdx_copy(kctx, m.id, 0, self->buf, ps, 0, &res));
	for (i = 0; i < WAIT_MS && !k.done; i++)
		usleep(1000);
	ASSERT_TRUE(k.done) TH_LOG("COPY did not finish after its source was resolved");
	pthread_join(th, NULL);
	EXPECT_EQ(0, k.ret) TH_LOG("%s", strerror(-k.ret));
	EXPECT_EQ((int64_t)ps, k.res);
	EXPECT_EQ(-1, check_pattern((uint8_t *)m.addr + ps, ps, 400));
	uffdx_region_unmap(&m);
	close(kctx);
}

/* ---- exiting and remote faulters --------------------------------------------- */

struct exiter_arg {
	void *tidptr;
	volatile pid_t tid;
};

static void *exiter_thread(void *p)
{
	struct exiter_arg *e = p;

	__atomic_store_n(&e->tid, sys_gettid(), __ATOMIC_SEQ_CST);
	/* at exit the kernel writes 0 there: a kernel-mode fault, exiting */
	syscall(SYS_set_tid_address, e->tidptr);
	syscall(SYS_exit, 0);
	return NULL;
}

/*
 * A thread whose clear_child_tid points into an armed hole faults in its
 * exit path (mm_release() writes it while other threads share the mm).  An
 * exiting task must not sleep for a handler: the thread goes away.
 */
TEST(exit_clear_child_tid_in_armed_hole)
{
	int status = -1;
	pid_t pid;

	SKIP_IF_NO_UFFDX();
	if (getuid() != 0)
		SKIP(return, "needs CAP_SYS_PTRACE (kernel faults)");
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0) {
		static struct exiter_arg e;
		struct uffdx_region_info info;
		struct uffdx_region_map m;
		char path[64];
		uint64_t end;
		pthread_t th;
		int ctx;

		ctx = ctx_open(DEFAULT_FEATURES | UFFDX_FEATURE_KERNEL_FAULTS, 0);
		if (ctx < 0)
			_exit(10);
		if (uffdx_region_map(ctx, 4 * ps, 0, &m))
			_exit(11);
		if (uffdx_arm(ctx, m.id, 0, 4 * ps, UFFDX_ARM_MISSING))
			_exit(12);
		e.tidptr = (uint8_t *)m.addr + ps + 64;
		if (pthread_create(&th, NULL, exiter_thread, &e))
			_exit(13);
		/* never joined: its glibc tid word is not cleared any more */
		end = now_ns() + (uint64_t)WAIT_MS * 1000000ull;
		while (!__atomic_load_n(&e.tid, __ATOMIC_SEQ_CST)) {
			if (now_ns() > end)
				_exit(14);
			usleep(1000);
		}
		/* this thread stays alive, so that mm_users > 1 at its exit */
		snprintf(path, sizeof(path), "/proc/self/task/%d", (int)e.tid);
		end = now_ns() + (uint64_t)WAIT_MS * 1000000ull;
		while (access(path, F_OK) == 0) {
			if (now_ns() > end)
				_exit(20);	/* it sleeps in its exit */
			usleep(1000);
		}
		/* the write failed: the hole is still a hole */
		if (uffdx_region_info(m.fd, &info))
			_exit(21);
		if (info.resident)
			_exit(22);
		_exit(0);
	}
	if (wait_child(pid, &status, 3 * WAIT_MS)) {
		kill_child(pid, &status);
		ASSERT_TRUE(0) TH_LOG("child hangs");
	}
	ASSERT_TRUE(WIFEXITED(status)) TH_LOG("status 0x%x", status);
	EXPECT_EQ(0, WEXITSTATUS(status))
		TH_LOG("child step %d failed (1x setup, 20 the exiting thread sleeps in its fault, 2x after)",
		       WEXITSTATUS(status));
}

/* True if *flag is still 0 after ms. */
static int acc_blocked_flag(volatile int *flag, int ms)
{
	uint64_t end = now_ns() + (uint64_t)ms * 1000000ull;

	while (now_ns() < end) {
		if (__atomic_load_n(flag, __ATOMIC_SEQ_CST))
			return 0;
		usleep(1000);
	}
	return !__atomic_load_n(flag, __ATOMIC_SEQ_CST);
}

struct remote_res {
	volatile int done;
	ssize_t ret;
	int err;
	uint8_t data[64];
};

/*
 * process_vm_readv() from another process faults on our mapping: the event
 * names the accessor (pid, tid) and carries PF_KERNEL | PF_REMOTE, at our
 * address.
 */
TEST(remote_fault_flagged)
{
	struct uffdx_region_map m;
	struct remote_res *rr;
	struct uffdx_event ev;
	pid_t parent = getpid(), pid;
	uint8_t *page, *buf;
	int ctx, ret, status = -1;
	int64_t res;

	SKIP_IF_NO_UFFDX();
	if (getuid() != 0)
		SKIP(return, "needs CAP_SYS_PTRACE (kernel faults)");
	ctx = ctx_open(DEFAULT_FEATURES | UFFDX_FEATURE_KERNEL_FAULTS, 0);
	ASSERT_LE(0, ctx) TH_LOG("%s", strerror(-ctx));
	ret = uffdx_region_map(ctx, 4 * ps, 0, &m);
	ASSERT_EQ(0, ret);
	ASSERT_EQ(0, uffdx_arm(ctx, m.id, 0, 4 * ps, UFFDX_ARM_MISSING));
	rr = mmap(NULL, sizeof(*rr), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, rr);
	memset(rr, 0, sizeof(*rr));
	page = (uint8_t *)m.addr + 2 * ps;
	buf = malloc(ps);
	ASSERT_NE(NULL, buf);
	fill_pattern(buf, ps, 77);

	fflush(stdout);
	fflush(stderr);
	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0) {
		struct iovec local = { .iov_base = rr->data, .iov_len = sizeof(rr->data) };
		struct iovec remote = { .iov_base = page + 100, .iov_len = sizeof(rr->data) };

		/* our copy of the mapping is not what is read: drop it */
		munmap(m.addr, 4 * ps);
		rr->ret = process_vm_readv(parent, &local, 1, &remote, 1, 0);
		rr->err = errno;
		__atomic_store_n(&rr->done, 1, __ATOMIC_SEQ_CST);
		_exit(0);
	}
	memset(&ev, 0xcc, sizeof(ev));
	ret = wait_event(ctx, &ev, WAIT_MS);
	if (ret != 1)
		kill_child(pid, NULL);
	ASSERT_EQ(1, ret) TH_LOG("no event for the remote access");
	check_event(_metadata, &ev, page, m.id, 2 * ps, UFFDX_PF_KERNEL | UFFDX_PF_REMOTE,
		    pid, pid);
	EXPECT_TRUE(acc_blocked_flag(&rr->done, QUIET_MS)) TH_LOG("remote reader did not wait");

	ASSERT_EQ(0, uffdx_copy(ctx, m.id, 2 * ps, buf, ps, 0, &res));
	if (wait_child(pid, &status, WAIT_MS)) {
		kill_child(pid, NULL);
		ASSERT_TRUE(0) TH_LOG("remote reader not woken by COPY");
	}
	ASSERT_TRUE(rr->done);
	EXPECT_EQ((ssize_t)sizeof(rr->data), rr->ret) TH_LOG("%s", strerror(rr->err));
	EXPECT_EQ(0, memcmp(rr->data, buf + 100, sizeof(rr->data)));
	/* our own later access is local: no event, the page is there */
	EXPECT_EQ(-1, check_pattern(page, ps, 77));
	EXPECT_EQ(0, event_arrives(ctx, 0));
	free(buf);
	munmap(rr, sizeof(*rr));
	uffdx_region_unmap(&m);
	close(ctx);
}

/* ---- mremap ---------------------------------------------------------------- */

TEST_F(fault, mremap_data_and_events_follow)
{
	struct accessor *a;
	struct uffdx_event ev;
	uint8_t *dst, *np;
	int64_t res;

	ASSERT_EQ(0, uffdx_disarm(self->ctx, self->id, 0, ps));
	fill_pattern(PAGE(0), ps, 500);
	dst = mmap(NULL, self->len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, dst);
	np = mremap(self->map, self->len, self->len, MREMAP_MAYMOVE | MREMAP_FIXED, dst);
	ASSERT_EQ(dst, np) TH_LOG("mremap: %s", strerror(errno));
	self->map = np;

	EXPECT_EQ(-1, check_pattern(PAGE(0), ps, 500));
	a = acc_new(PAGE(2) + 2, 0, 0);
	ASSERT_NE(NULL, a);
	ASSERT_EQ(0, acc_start_thread(a));
	ASSERT_EQ(1, wait_event(self->ctx, &ev, WAIT_MS));
	check_event(_metadata, &ev, PAGE(2), self->id, 2 * ps, 0, getpid(), a->tid);
	fill_pattern(self->buf, ps, 502);
	ASSERT_EQ(0, uffdx_copy(self->ctx, self->id, 2 * ps, self->buf, ps, 0, &res));
	ASSERT_EQ(0, acc_wait(a, WAIT_MS));
	EXPECT_EQ(self->buf[2], a->first);
	acc_free(a);

	/* growing a region mapping is refused */
	np = mremap(self->map, self->len, self->len + ps, MREMAP_MAYMOVE);
	EXPECT_EQ(MAP_FAILED, np);
	EXPECT_EQ(EFAULT, errno);
}

/* ---- memory limit ------------------------------------------------------------ */

#define LIMIT_PARAM UFFDX_PARAM_DIR "/max_pages_per_context"

FIXTURE(limit) {
	long long old;
};

FIXTURE_SETUP(limit)
{
	self->old = -1;
	SKIP_IF_NO_UFFDX();
	if (getuid() != 0)
		SKIP(return, "needs root to set the module parameter");
	/* the parameter must exist: fail, do not skip */
	ASSERT_EQ(0, read_ll_file(LIMIT_PARAM, &self->old)) TH_LOG("cannot read " LIMIT_PARAM);
}

FIXTURE_TEARDOWN(limit)
{
	if (self->old >= 0)
		write_ll_file(LIMIT_PARAM, self->old);
}

TEST_F(limit, max_pages_per_context)
{
	struct uffdx_region_info info;
	struct uffdx_region_map m;
	struct accessor *a;
	uint8_t *src;
	int64_t res = 0;
	int ctx, ret, i;

	ASSERT_EQ(0, write_ll_file(LIMIT_PARAM, 64));
	ctx = ctx_open(DEFAULT_FEATURES, 0);
	/* read when the context is opened: restore it right away */
	write_ll_file(LIMIT_PARAM, self->old);
	ASSERT_LE(0, ctx);
	ret = uffdx_region_map(ctx, 128 * ps, 0, &m);
	ASSERT_EQ(0, ret);
	src = malloc(16 * ps);
	ASSERT_NE(NULL, src);

	for (i = 0; i < 64; i++)
		ASSERT_EQ(0, try_write((uint8_t *)m.addr + (size_t)i * ps, (uint8_t)i))
			TH_LOG("page %d", i);
	ASSERT_EQ(0, uffdx_region_info(m.fd, &info));
	EXPECT_EQ(64 * ps, info.resident);

	/* page 65: over the limit, SIGBUS (in a child) */
	a = acc_new((uint8_t *)m.addr + 64 * ps, 1, 1);
	ASSERT_NE(NULL, a);
	ASSERT_EQ(0, acc_start_child(a));
	ASSERT_EQ(0, acc_wait(a, WAIT_MS));
	EXPECT_EQ(SIGBUS, a->sig);
	acc_free(a);

	/* ioctl fills: ENOMEM */
	fill_pattern(src, 16 * ps, 1);
	EXPECT_EQ(-1, raw_range(ctx, UFFDX_IOC_COPY, m.id, 100 * ps, ps, src, 0, &res));
	EXPECT_EQ(ENOMEM, errno);
	EXPECT_EQ(-ENOMEM, res);
	EXPECT_EQ(-1, raw_range(ctx, UFFDX_IOC_ZERO, m.id, 100 * ps, ps, NULL, 0, &res));
	EXPECT_EQ(ENOMEM, errno);

	/* free 8 pages: a 16-page copy does 8 and stops (EAGAIN) */
	ASSERT_EQ(0, uffdx_discard(ctx, m.id, 0, 8 * ps, &res));
	EXPECT_EQ(-1, raw_range(ctx, UFFDX_IOC_COPY, m.id, 64 * ps, 16 * ps, src, 0, &res));
	EXPECT_EQ(EAGAIN, errno);
	EXPECT_EQ((int64_t)(8 * ps), res);
	EXPECT_EQ(0, memcmp((uint8_t *)m.addr + 64 * ps, src, 8 * ps));
	ASSERT_EQ(0, uffdx_region_info(m.fd, &info));
	EXPECT_EQ(64 * ps, info.resident);

	/* other contexts are not affected */
	{
		struct uffdx_region_map m2;
		int c2 = ctx_open(DEFAULT_FEATURES, 0);

		ASSERT_LE(0, c2);
		ASSERT_EQ(0, uffdx_region_map(c2, 128 * ps, 0, &m2));
		for (i = 0; i < 128; i++)
			EXPECT_EQ(0, try_write((uint8_t *)m2.addr + (size_t)i * ps, 1));
		uffdx_region_unmap(&m2);
		close(c2);
	}
	free(src);
	uffdx_region_unmap(&m);
	close(ctx);
}

TEST_HARNESS_MAIN
