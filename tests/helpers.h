/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Shared helpers of the uffdx test programs.
 *
 * Every wait here is bounded: a broken module makes a test fail, never hang.
 * The helpers do not depend on the kselftest harness; the SKIP_IF_NO_UFFDX()
 * macro does and is only usable inside a harness test or fixture setup.
 */
#ifndef UFFDX_TESTS_HELPERS_H
#define UFFDX_TESTS_HELPERS_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <linux/uffdx.h>
#include "libuffdx.h"

#define UFFDX_DEV		"/dev/uffdx"
#define UFFDX_PARAM_DIR		"/sys/module/uffdx/parameters"

/* What a plain test context negotiates. */
#define DEFAULT_FEATURES	(UFFDX_FEATURE_REGIONS | UFFDX_FEATURE_MISSING | \
				 UFFDX_FEATURE_POISON)

/* Bound on waiting for something that must happen (a guest under TCG is slow). */
#define WAIT_MS			5000
/* How long we watch for something that must NOT happen. */
#define QUIET_MS		200

extern size_t ps;	/* page size, set by a constructor */

/* True if /dev/uffdx exists (the module is loaded). */
int uffdx_present(void);

#define SKIP_IF_NO_UFFDX() do {						\
	if (!uffdx_present())						\
		SKIP(return, UFFDX_DEV " not present (uffdx module not loaded)"); \
} while (0)

/* Open and negotiate a context; returns the fd or -errno. */
int ctx_open(uint64_t features, unsigned int flags);

pid_t sys_gettid(void);
uint64_t now_ns(void);
void sleep_ms(int ms);

/* poll() one fd; >0 ready, 0 timeout, -errno. */
int wait_fd(int fd, short events, int timeout_ms);
/* read() with a timeout (SIGALRM, no SA_RESTART): ret or -errno (-EINTR = timed out). */
ssize_t read_timeout(int fd, void *buf, size_t len, int timeout_ms);

/* Wait up to timeout_ms for one event; 1 = got it, 0 = timeout, -errno. */
int wait_event(int ctx, struct uffdx_event *ev, int timeout_ms);
/* Wait up to timeout_ms for the first event and read up to max; count, 0, -errno. */
int wait_events(int ctx, struct uffdx_event *ev, unsigned int max, int timeout_ms);
/* 0 if no event becomes readable within ms, else 1 (or -errno). */
int event_arrives(int ctx, int ms);

/* Bounded waitpid: 0 and *status on exit, -ETIMEDOUT (child left alone). */
int wait_child(pid_t pid, int *status, int timeout_ms);
/* SIGKILL and reap (bounded); returns wait_child()'s result. */
int kill_child(pid_t pid, int *status);

/* Deterministic page contents. */
void fill_pattern(void *buf, size_t len, uint64_t seed);
/* Offset of the first byte that differs from the pattern, or -1. */
long check_pattern(const void *buf, size_t len, uint64_t seed);
int is_zero(const void *buf, size_t len);
uint64_t checksum(const void *buf, size_t len);

/*
 * SIGBUS/SIGSEGV-safe single accesses from the calling thread: 0 or the
 * signal number.  sig_install() sets up the process-wide handler (done by a
 * constructor; call again after a fork that reset it).
 */
void sig_install(void);
int try_read(const void *addr, uint8_t *out);
int try_write(void *addr, uint8_t val);

/*
 * An accessor touches one byte, in a thread of this process or in a child
 * process, and records what happened in shared memory.
 */
struct accessor {
	void *addr;		/* byte to touch */
	int write;		/* write wval instead of reading */
	uint8_t wval;
	size_t check_len;	/* bytes at check_addr to checksum afterwards */
	void *check_addr;	/* default: the page of addr */
	/* results */
	volatile int started;	/* set just before the access */
	volatile int done;	/* access finished (or signalled) */
	volatile int sig;	/* 0, SIGBUS, SIGSEGV */
	volatile pid_t pid, tid;
	volatile uint8_t first;	/* byte read (or read back after the write) */
	volatile uint64_t sum;	/* checksum of the check range afterwards */
	/* bookkeeping */
	pthread_t thread;
	pid_t child;
	int is_thread;
};

/* Allocated MAP_SHARED so that child accessors can report. NULL on error. */
struct accessor *acc_new(void *addr, int write, uint8_t wval);
void acc_free(struct accessor *a);
int acc_start_thread(struct accessor *a);	/* 0 or -errno */
int acc_start_child(struct accessor *a);	/* 0 or -errno */
/* Wait until started (bounded): 0 or -ETIMEDOUT. */
int acc_wait_started(struct accessor *a, int timeout_ms);
/* Wait until done and reap the thread/child: 0 or -ETIMEDOUT. */
int acc_wait(struct accessor *a, int timeout_ms);
/* True if still not done after ms. */
int acc_blocked(struct accessor *a, int ms);
/* Kill a child accessor and reap it (for threads: nothing). */
void acc_kill(struct accessor *a);

/* Read an integer from a sysfs/proc file; -errno on error. */
long long read_ll_file(const char *path, long long *val);
int write_ll_file(const char *path, long long val);

/* Drop cap from the effective set of the calling thread (raw capset). */
int drop_effective_cap(int cap);
/* Put cap back into the effective set (it must still be permitted). */
int raise_effective_cap(int cap);

/* Whole small text files (sysfs, procfs): length read or -errno. */
ssize_t read_str_file(const char *path, char *buf, size_t len);
int write_str_file(const char *path, const char *s);

/* Entries in /proc/self/fd, or -errno. */
int count_open_fds(void);
/* State letter of a thread of this process (/proc/self/task/TID/stat), 0 if gone. */
char thread_state(pid_t tid);

/* A range ioctl, raw: ioctl()'s value with errno kept, result in *result. */
int raw_range(int ctx, unsigned long nr, uint64_t id, uint64_t off, uint64_t len,
	      const void *src, uint32_t mode, int64_t *result);

/* Pass and receive one fd over a UNIX socket. */
int send_fd(int sock, int fd);
int recv_fd(int sock, int timeout_ms);

/*
 * /proc/self/pagemap: the entries of npages pages from addr (0 or -errno).
 * Bit 63 is "present"; the PFN (bits 0-54) reads as 0 without
 * CAP_SYS_ADMIN.
 */
#define PM_PRESENT		(1ULL << 63)
#define PM_PFN(e)		((e) & ((1ULL << 55) - 1))
int pagemap_read(const void *addr, size_t npages, uint64_t *entries);
/* PFN of the page at addr (0 if not present, unreadable, or not root). */
uint64_t page_pfn(const void *addr);

/* A "key:\tvalue" integer line of /proc/self/fdinfo/fd: 0 or -errno. */
int fdinfo_ll(int fd, const char *key, long long *val);

#endif
