// SPDX-License-Identifier: GPL-2.0
/*
 * uffdx ioctl fuzzer (issue 12).
 *
 *   fuzz [-s SEED] [-n CALLS] [-t SECONDS] [-j THREADS] [-c 0|1]
 *        [-w STREAM] [-W SECONDS] [-v]
 *
 * Defaults: a seed from the clock, 100000 calls or 30 s, whichever comes
 * first, 2 workers (the guests have 2 CPUs), chaos on, hangs at 30 s.
 *
 * Raw ioctl(2)s on <linux/uffdx.h>, no libuffdx.  Worker threads (-j)
 * drive one context and its regions, plus a few other contexts, with
 * arguments built from a table of every ioctl and every field of its
 * struct: a valid call first, then some of its fields replaced by values
 * at and around their boundaries (sizes too small, exact, larger with zero
 * and non-zero tails; each unknown flag or mode bit; reserved and pad
 * fields set; region ids 0, stale, beyond U32_MAX; region fds of the wrong
 * kind; offsets and lengths at 0, page - 1, page, the region's end,
 * U64_MAX, overflowing; pointers NULL, unmapped, read-only, kernel,
 * straddling an unmapped page, into an armed hole), ioctl numbers that
 * are not ours or have wrong direction bits (ENOTTY), or the right number
 * with other size bits (accepted: the size is the struct's own field).
 *
 * The simulated device's ioctls run on a few device fds (DEVICE_CREATE on
 * the contexts that negotiated a device feature), on the pages of the
 * region mappings, of ordinary memory and of bad addresses; a device
 * ioctl on a context or region fd, and a context ioctl on a device fd,
 * are ENOTTY.  A module that offers no device feature gets the device
 * ioctls on the wrong kinds of fd only.
 *
 * While they run, with -c 1 (the default), other threads mmap, munmap,
 * mremap and MADV_DONTNEED mappings of the regions, fork children that
 * touch them and exit, touch them themselves, close and re-create
 * regions, contexts and devices, and drain the devices' events; a handler
 * thread serves every fault event.
 *
 * The oracle, per call:
 *  - the errno must be one the ioctl's man page lists (tests/build/errnos.h,
 *    generated from userlib/man by gen-errnos.sh);
 *  - what the ABI header promises for the arguments as built: an unknown
 *    ioctl number is ENOTTY, an ioctl the context did not negotiate
 *    EINVAL, a bad struct size EINVAL or E2BIG, an unreadable struct
 *    EFAULT, and so on.  When the arguments are certainly invalid, the
 *    call must fail with one of the errnos of those reasons; when they are
 *    valid, it may fail only with an errno the state of the regions can
 *    explain (EEXIST, EAGAIN, ENOMEM, ...);
 *  - the outputs: progress reports ("result"), REGION_INFO and API fields.
 * Each failure prints the call (ioctl, fd, every field, the seed, the
 * stream and call index, and how to replay it).  A call that takes longer
 * than -W seconds (default 30) is a hang: the watchdog prints it with its
 * kernel stack and the program fails.  Kernel reports (KASAN, lockdep,
 * WARN) are caught by the guest's log scan (tests/vm/check.sh).
 *
 * Pointers into armed holes cannot hang a call: no context of the fuzzer
 * negotiates UFFDX_FEATURE_KERNEL_FAULTS, so the module's own accesses to
 * an armed hole fail with EFAULT at once; the "trap" page is a read-only
 * mapping of an armed region whose context is closed (every access
 * faults: SIGBUS in user mode, EFAULT in the kernel), and user-mode
 * touches of the live contexts' armed holes are served by the handler
 * thread (and by workers whose RESOLVE calls took events).
 *
 * Reproducing: each worker draws its calls from its own stream, seeded
 * from SEED and its number, and each call's shape (ioctl, fd, changed
 * fields, number, placement) from its index in the stream.  "-s SEED -w
 * STREAM -k INDEX -n 1 -j 1 -c 0" makes that one call again, with the
 * same contexts and regions as set up (what it picks among them may
 * differ if the chaos thread had changed them); "-k INDEX -n N" makes N
 * calls from there; with -c 0 and -j 1 a whole run is the same each time.
 * A failure that needs a race shows with -c 1 and -j > 1 only.  -v prints
 * every call.
 *
 * Prints KTAP with one result, "fuzz", and before it one line
 *   fuzz: <calls> calls, <failures> failures, seed <seed> (<kernel>)
 * The harness's fixed 30 s timeout does not fit a bounded run of any
 * length, so this program uses kselftest.h directly.
 */
#include "helpers.h"

#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kselftest.h"

#define PG		((uint64_t)4096)
#define U32MAX		((uint64_t)0xffffffff)
#define KERNEL_ADDR	((uint64_t)0xffff888000000000ULL)
#define NONCANON_ADDR	((uint64_t)0x0000800000000000ULL)
#define NSEC		((uint64_t)1000000000)
/*
 * The top of the user address space: 4-level paging, and the most any
 * x86-64 kernel has (5-level).  Between the two a range is beyond the top
 * (EINVAL) or, with 5-level paging, not mapped (EFAULT).
 */
#define USER_TOP_4L	((1ULL << 47) - PG)
#define USER_TOP_MAX	((1ULL << 56) - PG)

/* ---- the errno table, from the man pages -------------------------------- */

/* A set of errno values. */
typedef struct {
	uint64_t w[3];
} eset;

static void es_add(eset *s, int e)
{
	if (e > 0 && e < 192)
		s->w[e / 64] |= 1ULL << (e % 64);
}

static bool es_has(const eset *s, int e)
{
	return e > 0 && e < 192 && (s->w[e / 64] >> (e % 64)) & 1;
}

static bool es_empty(const eset *s)
{
	return !(s->w[0] | s->w[1] | s->w[2]);
}

static void es_or(eset *d, const eset *s)
{
	for (int i = 0; i < 3; i++)
		d->w[i] |= s->w[i];
}

static eset es_of(const int *e)
{
	eset s = { { 0 } };

	for (; *e; e++)
		es_add(&s, *e);
	return s;
}

static const char *ename(int e)
{
	const char *n = e > 0 ? strerrorname_np(e) : NULL;

	return n ? n : "E?";
}

static int es_str(char *buf, size_t len, const eset *s)
{
	int n = 0;

	buf[0] = 0;
	for (int e = 1; e < 192 && (size_t)n < len; e++)
		if (es_has(s, e))
			n += snprintf(buf + n, len - n, "%s%s", n ? " " : "",
				      ename(e));
	if (!n)
		snprintf(buf, len, "-");
	return n;
}

struct errtab {
	unsigned long cmd;
	const char *name;
	const char *page;	/* NULL: no man page (UFFDX_FUZZ_ALLOW_MISSING) */
	int e[32];
};

#define FUZZ_ERRNOS(ioc, pg, ...) { ioc, #ioc, pg, { __VA_ARGS__ } },
static const struct errtab errtab[] = {
#include "errnos.h"
};

/* ---- the ioctl table ----------------------------------------------------- */

/* What a field is, for generating and printing it. */
enum role {
	R_SIZE,		/* the struct's own size */
	R_MODE,		/* flags or mode: aux = valid bits */
	R_APIVER,	/* uffdx_api.api */
	R_FEAT,		/* uffdx_api.features */
	R_RLEN,		/* REGION_CREATE len */
	R_ID,		/* region id */
	R_IDFD,		/* MOVE: region id, or fd with the mode's FD bit */
	R_OFF,		/* byte offset into a region: aux = side (0 dst, 1 src) */
	R_LEN,		/* byte length */
	R_SRC,		/* COPY source address (0 for the other range ops) */
	R_ADDR,		/* address in a region mapping */
	R_PTR,		/* user buffer */
	R_COUNT,	/* element count: aux = maximum */
	R_ESIZE,	/* element size: aux = the right one */
	R_TIMEOUT,	/* RESOLVE timeout_ns */
	R_DADDR,	/* device command address: aux 8 = a word (ATOMIC) */
	R_DPTR,		/* device command buffer */
	R_OP,		/* DEV_ATOMIC op */
	R_VAL,		/* any value (DEV_ATOMIC value, expected) */
	R_RSVD,		/* reserved, must be 0 */
	R_PAD,		/* padding, must be 0 */
	R_OUT,		/* output only: any input is ignored */
};

struct field {
	const char *name;
	uint16_t off, size;
	uint8_t role;
	uint64_t aux;
};

#define FLD(t, m, role, aux) \
	{ #m, offsetof(struct t, m), sizeof(((struct t *)0)->m), role, aux }

static const struct field api_fields[] = {
	FLD(uffdx_api, size, R_SIZE, 0),
	FLD(uffdx_api, api, R_APIVER, 0),
	FLD(uffdx_api, features, R_FEAT, 0),
	FLD(uffdx_api, ioctls, R_OUT, 0),
	FLD(uffdx_api, module_version, R_OUT, 0),
	FLD(uffdx_api, flags, R_MODE, 0),
	FLD(uffdx_api, reserved, R_RSVD, 0),
};

static const struct field create_fields[] = {
	FLD(uffdx_region_create, size, R_SIZE, 0),
	FLD(uffdx_region_create, flags, R_MODE,
	    UFFDX_REGION_CREATE_WP | UFFDX_REGION_CREATE_WP_ASYNC),
	FLD(uffdx_region_create, len, R_RLEN, 0),
	FLD(uffdx_region_create, region_id, R_OUT, 0),
	FLD(uffdx_region_create, fd, R_OUT, 0),
	FLD(uffdx_region_create, __pad, R_PAD, 0),
	FLD(uffdx_region_create, reserved, R_RSVD, 0),
};

/* The mode field's valid bits depend on the ioctl: ioc->modes. */
static const struct field range_fields[] = {
	FLD(uffdx_range, size, R_SIZE, 0),
	FLD(uffdx_range, mode, R_MODE, 0),
	FLD(uffdx_range, region_id, R_ID, 0),
	FLD(uffdx_range, offset, R_OFF, 0),
	FLD(uffdx_range, len, R_LEN, 0),
	FLD(uffdx_range, src, R_SRC, 0),
	FLD(uffdx_range, result, R_OUT, 0),
	FLD(uffdx_range, reserved, R_RSVD, 0),
};

static const struct field move_fields[] = {
	FLD(uffdx_move, size, R_SIZE, 0),
	FLD(uffdx_move, mode, R_MODE, 0),
	FLD(uffdx_move, dst_region, R_IDFD, 0),
	FLD(uffdx_move, dst_offset, R_OFF, 0),
	FLD(uffdx_move, src_region, R_IDFD, 1),
	FLD(uffdx_move, src_offset, R_OFF, 1),
	FLD(uffdx_move, len, R_LEN, 0),
	FLD(uffdx_move, result, R_OUT, 0),
	FLD(uffdx_move, reserved, R_RSVD, 0),
};

static const struct field move_addr_fields[] = {
	FLD(uffdx_move_addr, size, R_SIZE, 0),
	FLD(uffdx_move_addr, mode, R_MODE, 0),
	FLD(uffdx_move_addr, dst, R_ADDR, 0),
	FLD(uffdx_move_addr, src, R_ADDR, 1),
	FLD(uffdx_move_addr, len, R_LEN, 0),
	FLD(uffdx_move_addr, result, R_OUT, 0),
	FLD(uffdx_move_addr, reserved, R_RSVD, 0),
};

static const struct field move_vec_fields[] = {
	FLD(uffdx_move_vec, size, R_SIZE, 0),
	FLD(uffdx_move_vec, mode, R_MODE, 0),
	FLD(uffdx_move_vec, entries, R_PTR, 0),
	FLD(uffdx_move_vec, nr_entries, R_COUNT, UFFDX_MOVE_VEC_MAX),
	FLD(uffdx_move_vec, entry_size, R_ESIZE,
	    sizeof(struct uffdx_move_entry)),
	FLD(uffdx_move_vec, moved, R_OUT, 0),
	FLD(uffdx_move_vec, reserved, R_RSVD, 0),
};

static const struct field resolve_fields[] = {
	FLD(uffdx_resolve, size, R_SIZE, 0),
	FLD(uffdx_resolve, flags, R_MODE, UFFDX_RESOLVE_NOWAIT),
	FLD(uffdx_resolve, resolutions, R_PTR, 0),
	FLD(uffdx_resolve, nr_resolutions, R_COUNT, UFFDX_RESOLVE_MAX),
	FLD(uffdx_resolve, resolution_size, R_ESIZE,
	    sizeof(struct uffdx_resolution)),
	FLD(uffdx_resolve, events, R_PTR, 1),
	FLD(uffdx_resolve, max_events, R_COUNT, UFFDX_RESOLVE_MAX),
	FLD(uffdx_resolve, nr_events, R_OUT, 0),
	FLD(uffdx_resolve, timeout_ns, R_TIMEOUT, 0),
	FLD(uffdx_resolve, nr_done, R_OUT, 0),
	FLD(uffdx_resolve, __pad, R_PAD, 0),
	FLD(uffdx_resolve, reserved, R_RSVD, 0),
};

static const struct field wp_addr_fields[] = {
	FLD(uffdx_writeprotect_addr, size, R_SIZE, 0),
	FLD(uffdx_writeprotect_addr, mode, R_MODE, 0),
	FLD(uffdx_writeprotect_addr, addr, R_ADDR, 0),
	FLD(uffdx_writeprotect_addr, len, R_LEN, 0),
	FLD(uffdx_writeprotect_addr, result, R_OUT, 0),
	FLD(uffdx_writeprotect_addr, reserved, R_RSVD, 0),
};

static const struct field scan_fields[] = {
	FLD(uffdx_scan, size, R_SIZE, 0),
	FLD(uffdx_scan, flags, R_MODE, UFFDX_SCAN_REARM | UFFDX_SCAN_BITMAP),
	FLD(uffdx_scan, region_id, R_ID, 0),
	FLD(uffdx_scan, offset, R_OFF, 0),
	FLD(uffdx_scan, len, R_LEN, 0),
	FLD(uffdx_scan, out, R_PTR, 2),
	FLD(uffdx_scan, out_len, R_COUNT, 4096),
	FLD(uffdx_scan, scanned, R_OUT, 0),
	FLD(uffdx_scan, nr_out, R_OUT, 0),
	FLD(uffdx_scan, written, R_OUT, 0),
	FLD(uffdx_scan, reserved, R_RSVD, 0),
};

static const struct field info_fields[] = {
	FLD(uffdx_region_info, size, R_SIZE, 0),
	FLD(uffdx_region_info, flags, R_OUT, 0),
	FLD(uffdx_region_info, len, R_OUT, 0),
	FLD(uffdx_region_info, region_id, R_OUT, 0),
	FLD(uffdx_region_info, resident, R_OUT, 0),
	FLD(uffdx_region_info, reserved, R_RSVD, 0),
};

static const struct field devc_fields[] = {
	FLD(uffdx_device_create, size, R_SIZE, 0),
	FLD(uffdx_device_create, flags, R_MODE, 0),
	FLD(uffdx_device_create, fd, R_OUT, 0),
	FLD(uffdx_device_create, __pad, R_PAD, 0),
	FLD(uffdx_device_create, reserved, R_RSVD, 0),
};

static const struct field dcmd_fields[] = {
	FLD(uffdx_dev_cmd, size, R_SIZE, 0),
	FLD(uffdx_dev_cmd, flags, R_MODE, 0),
	FLD(uffdx_dev_cmd, addr, R_DADDR, 0),
	FLD(uffdx_dev_cmd, ptr, R_DPTR, 0),
	FLD(uffdx_dev_cmd, npages, R_COUNT, UFFDX_DEV_MAX_PAGES),
	FLD(uffdx_dev_cmd, cpages, R_OUT, 0),
	FLD(uffdx_dev_cmd, faults, R_OUT, 0),
	FLD(uffdx_dev_cmd, reserved, R_RSVD, 0),
};

static const struct field datomic_fields[] = {
	FLD(uffdx_dev_atomic, size, R_SIZE, 0),
	FLD(uffdx_dev_atomic, op, R_OP, 0),
	FLD(uffdx_dev_atomic, addr, R_DADDR, 8),
	FLD(uffdx_dev_atomic, value, R_VAL, 0),
	FLD(uffdx_dev_atomic, expected, R_VAL, 0),
	FLD(uffdx_dev_atomic, old, R_OUT, 0),
	FLD(uffdx_dev_atomic, faults, R_OUT, 0),
	FLD(uffdx_dev_atomic, reserved, R_RSVD, 0),
};

/*
 * DEV_STATS: every field but size and flags is an output.  Whether the
 * module takes non-zero "reserved" (no "must be 0" in the header) is not
 * said: the model accepts either (model(), I_DEV_STATS).
 */
static const struct field dstats_fields[] = {
	FLD(uffdx_dev_stats, size, R_SIZE, 0),
	FLD(uffdx_dev_stats, flags, R_MODE, 0),
	FLD(uffdx_dev_stats, faults, R_OUT, 0),
	FLD(uffdx_dev_stats, invalidations, R_OUT, 0),
	FLD(uffdx_dev_stats, invalidated_pages, R_OUT, 0),
	FLD(uffdx_dev_stats, revocations, R_OUT, 0),
	FLD(uffdx_dev_stats, migrated_to_dev, R_OUT, 0),
	FLD(uffdx_dev_stats, migrated_to_sys, R_OUT, 0),
	FLD(uffdx_dev_stats, allocated, R_OUT, 0),
	FLD(uffdx_dev_stats, pool_pages, R_OUT, 0),
	FLD(uffdx_dev_stats, pool_used, R_OUT, 0),
	FLD(uffdx_dev_stats, events_lost, R_OUT, 0),
	FLD(uffdx_dev_stats, reserved, R_RSVD, 0),
};

/*
 * The context ioctls, REGION_INFO (a region fd's), then the device fd's
 * (is_dev_ioc()).
 */
enum {
	I_API, I_REGION_CREATE, I_ARM, I_DISARM, I_COPY, I_ZERO, I_POISON,
	I_WAKE, I_DISCARD, I_MOVE, I_MOVE_ADDR, I_MOVE_VEC, I_RESOLVE, I_WP,
	I_WP_ADDR, I_SCAN, I_DEVICE_CREATE, I_REGION_INFO,
	I_DEV_READ, I_DEV_WRITE, I_DEV_MIGRATE_TO_DEV, I_DEV_MIGRATE_TO_SYS,
	I_DEV_SNAPSHOT, I_DEV_EXCLUSIVE, I_DEV_CHECK_EXCLUSIVE, I_DEV_RELEASE,
	I_DEV_ATOMIC, I_DEV_STATS, NR_IOC
};

static bool is_dev_ioc(int ioc)
{
	return ioc >= I_DEV_READ;
}

/* The device commands on struct uffdx_dev_cmd. */
static bool is_dev_cmd(int ioc)
{
	return ioc >= I_DEV_READ && ioc <= I_DEV_RELEASE;
}

/* The features a context may negotiate to create devices. */
#define DEV_FEATURES	(UFFDX_FEATURE_DEVICE_EXCLUSIVE | \
			 UFFDX_FEATURE_DEVICE_MIGRATE | UFFDX_FEATURE_HMM_MIRROR)

struct call;

struct ioc {
	const char *name;
	unsigned long cmd;
	size_t size;
	const struct field *fields;
	unsigned int nfields;
	uint64_t modes;		/* valid bits of the mode field (range ioctls) */
	int weight;
	/* errnos a call with valid arguments may still give (the model) */
	int state[12];
	/* filled in at start-up */
	unsigned int nr;
	eset table, stateset;
	const char *page;
};

#define FUZZ_IOCTL(ioc, idx, type, fields, modes, weight, ...) \
	[idx] = { #ioc, ioc, sizeof(struct type), fields, ARRAY_SIZE(fields), \
		  modes, weight, { __VA_ARGS__ } }

/*
 * Every ioctl of the ABI header (gen-errnos.sh checks that none is missing
 * here).  "state": the errnos that the state of the regions, and not the
 * arguments, can cause; a man page must list each of them.  EINTR for a
 * fatal signal is left out: no caller ever sees it.
 */
static struct ioc iocs[NR_IOC] = {
	FUZZ_IOCTL(UFFDX_IOC_API, I_API, uffdx_api, api_fields, 0, 3,
		   EPERM, 0),
	FUZZ_IOCTL(UFFDX_IOC_REGION_CREATE, I_REGION_CREATE,
		   uffdx_region_create, create_fields, 0, 2,
		   ENOMEM, ENOSPC, EMFILE, 0),
	FUZZ_IOCTL(UFFDX_IOC_ARM, I_ARM, uffdx_range, range_fields,
		   UFFDX_ARM_MISSING, 6, ENOMEM, 0),
	FUZZ_IOCTL(UFFDX_IOC_DISARM, I_DISARM, uffdx_range, range_fields,
		   UFFDX_ARM_MISSING, 4, 0),
	FUZZ_IOCTL(UFFDX_IOC_COPY, I_COPY, uffdx_range, range_fields,
		   UFFDX_FILL_DONTWAKE, 8, EEXIST, EAGAIN, ENOMEM, EFAULT, 0),
	FUZZ_IOCTL(UFFDX_IOC_ZERO, I_ZERO, uffdx_range, range_fields,
		   UFFDX_FILL_DONTWAKE, 8, EEXIST, EAGAIN, ENOMEM, 0),
	FUZZ_IOCTL(UFFDX_IOC_POISON, I_POISON, uffdx_range, range_fields,
		   UFFDX_FILL_DONTWAKE, 5, EEXIST, EAGAIN, ENOMEM, 0),
	FUZZ_IOCTL(UFFDX_IOC_WAKE, I_WAKE, uffdx_range, range_fields, 0, 5, 0),
	FUZZ_IOCTL(UFFDX_IOC_DISCARD, I_DISCARD, uffdx_range, range_fields,
		   0, 6, EAGAIN, 0),
	FUZZ_IOCTL(UFFDX_IOC_MOVE, I_MOVE, uffdx_move, move_fields,
		   UFFDX_MOVE_DONTWAKE | UFFDX_MOVE_ALLOW_SRC_HOLES |
		   UFFDX_MOVE_DST_FD | UFFDX_MOVE_SRC_FD, 8,
		   EEXIST, ENOENT, EBUSY, ENOMEM, EAGAIN, 0),
	FUZZ_IOCTL(UFFDX_IOC_MOVE_ADDR, I_MOVE_ADDR, uffdx_move_addr,
		   move_addr_fields,
		   UFFDX_MOVE_DONTWAKE | UFFDX_MOVE_ALLOW_SRC_HOLES, 8,
		   EEXIST, ENOENT, EBUSY, ENOMEM, EAGAIN, 0),
	FUZZ_IOCTL(UFFDX_IOC_MOVE_VEC, I_MOVE_VEC, uffdx_move_vec,
		   move_vec_fields,
		   UFFDX_MOVE_DONTWAKE | UFFDX_MOVE_ALLOW_SRC_HOLES, 3,
		   EAGAIN, ENOMEM, 0),
	FUZZ_IOCTL(UFFDX_IOC_RESOLVE, I_RESOLVE, uffdx_resolve,
		   resolve_fields, 0, 6, 0),
	FUZZ_IOCTL(UFFDX_IOC_WRITEPROTECT, I_WP, uffdx_range, range_fields,
		   UFFDX_WP_PROTECT | UFFDX_WP_DONTWAKE, 5,
		   EAGAIN, EBUSY, ENOMEM, 0),
	FUZZ_IOCTL(UFFDX_IOC_WRITEPROTECT_ADDR, I_WP_ADDR,
		   uffdx_writeprotect_addr, wp_addr_fields,
		   UFFDX_WP_PROTECT | UFFDX_WP_DONTWAKE, 4,
		   EAGAIN, EBUSY, ENOMEM, 0),
	FUZZ_IOCTL(UFFDX_IOC_SCAN, I_SCAN, uffdx_scan, scan_fields, 0, 4,
		   ENOMEM, 0),
	FUZZ_IOCTL(UFFDX_IOC_DEVICE_CREATE, I_DEVICE_CREATE,
		   uffdx_device_create, devc_fields, 0, 2, ENOMEM, EMFILE, 0),
	FUZZ_IOCTL(UFFDX_IOC_REGION_INFO, I_REGION_INFO, uffdx_region_info,
		   info_fields, 0, 4, 0),
	/*
	 * The device's: its commands come from this process, which it
	 * mirrors, so never EPERM for that (nor ESRCH); EPERM for a write
	 * or a migration through a mapping without write permission, and
	 * for a page not held (CHECK_EXCLUSIVE).
	 */
	FUZZ_IOCTL(UFFDX_IOC_DEV_READ, I_DEV_READ, uffdx_dev_cmd, dcmd_fields,
		   0, 4, EFAULT, EBUSY, ENOMEM, 0),
	FUZZ_IOCTL(UFFDX_IOC_DEV_WRITE, I_DEV_WRITE, uffdx_dev_cmd,
		   dcmd_fields, 0, 4, EFAULT, EPERM, EBUSY, ENOMEM, 0),
	FUZZ_IOCTL(UFFDX_IOC_DEV_MIGRATE_TO_DEV, I_DEV_MIGRATE_TO_DEV,
		   uffdx_dev_cmd, dcmd_fields, 0, 3, EFAULT, EPERM, EBUSY,
		   ENOMEM, 0),
	FUZZ_IOCTL(UFFDX_IOC_DEV_MIGRATE_TO_SYS, I_DEV_MIGRATE_TO_SYS,
		   uffdx_dev_cmd, dcmd_fields, 0, 3, EFAULT, ENOMEM, 0),
	FUZZ_IOCTL(UFFDX_IOC_DEV_SNAPSHOT, I_DEV_SNAPSHOT, uffdx_dev_cmd,
		   dcmd_fields, 0, 3, EBUSY, ENOMEM, 0),
	FUZZ_IOCTL(UFFDX_IOC_DEV_EXCLUSIVE, I_DEV_EXCLUSIVE, uffdx_dev_cmd,
		   dcmd_fields, 0, 3, EFAULT, EPERM, EBUSY, ENOMEM, 0),
	FUZZ_IOCTL(UFFDX_IOC_DEV_CHECK_EXCLUSIVE, I_DEV_CHECK_EXCLUSIVE,
		   uffdx_dev_cmd, dcmd_fields, 0, 2, EPERM, 0),
	FUZZ_IOCTL(UFFDX_IOC_DEV_RELEASE, I_DEV_RELEASE, uffdx_dev_cmd,
		   dcmd_fields, 0, 2, 0),
	FUZZ_IOCTL(UFFDX_IOC_DEV_ATOMIC, I_DEV_ATOMIC, uffdx_dev_atomic,
		   datomic_fields, 0, 3, EFAULT, EPERM, EBUSY, ENOMEM, 0),
	FUZZ_IOCTL(UFFDX_IOC_DEV_STATS, I_DEV_STATS, uffdx_dev_stats,
		   dstats_fields, 0, 2, 0),
};

/* The ops a RESOLVE resolution may name (uapi/linux/uffdx.h). */
static const unsigned int resolve_ops[] = {
	_UFFDX_COPY, _UFFDX_ZERO, _UFFDX_POISON, _UFFDX_WAKE, _UFFDX_MOVE,
	_UFFDX_WRITEPROTECT,
};

/* ---- options and global state ------------------------------------------- */

static uint64_t opt_seed;
static uint64_t opt_calls = 100000;
static unsigned int opt_secs = 30;
static unsigned int opt_workers = 2;
static int opt_chaos = 1;
static int opt_stream = -1;
static uint64_t opt_first;
static unsigned int opt_hang = 30;
static int opt_verbose;

static atomic_uint_fast64_t calls_claimed, calls_done, failures;
static atomic_int stop, stop_handler;
static pthread_mutex_t print_lock = PTHREAD_MUTEX_INITIALIZER;
#define MAX_PRINTED 40

static uint64_t supported;	/* features the module reports */
static uint64_t all_ioctls;	/* ioctls of a context with all of them */
static uint32_t module_version;
static int devnull_fd;
#define CLOSED_FD 4000		/* never open: RLIMIT_NOFILE is raised past it */

static uint64_t *trap;		/* read-only mapping of an armed, orphaned region */
static uint64_t trap_len;
static unsigned char *anon_page;	/* an ordinary anonymous page */

/* splitmix64 */
struct rng {
	uint64_t s;
};

static uint64_t rnd(struct rng *r)
{
	uint64_t x = (r->s += 0x9e3779b97f4a7c15ULL);

	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

static uint64_t rn(struct rng *r, uint64_t n)
{
	return n ? rnd(r) % n : 0;
}

static bool chance(struct rng *r, unsigned int pct)
{
	return rn(r, 100) < pct;
}

static uint64_t stream_seed(int stream)
{
	return opt_seed + (uint64_t)(stream + 1) * 0xd1b54a32d192ed03ULL;
}

/*
 * The generator of stage @stage of call @index of a stream: each stage
 * of a call (the ioctl and fd, the baseline, the changed fields, the
 * number, the placement) draws from its own sequence, so that what one
 * stage draws, which depends on the state of the regions, does not shift
 * the others.  A call's shape is a function of the seed, the stream and
 * its index alone: -k replays it.
 */
static void call_seed(struct rng *r, uint64_t base, uint64_t index, int stage)
{
	struct rng t = { base ^ (index * 0x9e3779b97f4a7c15ULL) };

	t.s += (uint64_t)stage * 0xbf58476d1ce4e5b9ULL;
	r->s = rnd(&t);
}

/*
 * Failures by kind (the ioctl and the message's format): each kind is
 * printed in full the first time, and counted; the counts at the end.
 */
struct fkind {
	const char *fmt;
	int ioc;
	uint64_t n;
};

static struct fkind fkinds[64];
static unsigned int nfkinds, nprinted;

/* Count a failure; true if it is the first of its kind, to be printed. */
static bool fail_kind(int ioc, const char *fmt)
{
	bool first = false;
	unsigned int i;

	pthread_mutex_lock(&print_lock);
	for (i = 0; i < nfkinds; i++)
		if (fkinds[i].fmt == fmt && fkinds[i].ioc == ioc)
			break;
	if (i == nfkinds && i < ARRAY_SIZE(fkinds)) {
		fkinds[nfkinds++] = (struct fkind){ fmt, ioc, 0 };
		first = nprinted++ < MAX_PRINTED;
	}
	if (i < ARRAY_SIZE(fkinds))
		fkinds[i].n++;
	pthread_mutex_unlock(&print_lock);
	return first;
}

static void fail_kinds_print(void)
{
	for (unsigned int i = 0; i < nfkinds; i++)
		ksft_print_msg("failures: %" PRIu64 " x %s: %s\n", fkinds[i].n,
			       fkinds[i].ioc >= 0 ? iocs[fkinds[i].ioc].name : "-",
			       fkinds[i].fmt);
}

static void fail_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fail_msg(const char *fmt, ...)
{
	va_list ap;

	atomic_fetch_add(&failures, 1);
	if (!fail_kind(-1, fmt))
		return;
	pthread_mutex_lock(&print_lock);
	va_start(ap, fmt);
	printf("# FAIL: ");
	vprintf(fmt, ap);
	va_end(ap);
	fflush(stdout);
	pthread_mutex_unlock(&print_lock);
}

/* ---- contexts, regions, mappings ----------------------------------------- */

/*
 * Lock order: a context slot, then region slots in index order, then the
 * mapping table.  Slots are read-locked while a call uses what they hold
 * (the fd numbers and what the model knows stay true), write-locked by
 * the chaos thread to close and re-create.
 */
enum { CX_MAIN, CX_SEC1, CX_SEC2, CX_UNNEG, CX_MIN, NR_CTX };
static const char *const cx_names[NR_CTX] = {
	"main", "secondary-1", "secondary-2", "un-negotiated", "regions-only"
};

struct ctxslot {
	pthread_rwlock_t lock;
	int fd;			/* -1 if closed */
	uint64_t gen;		/* bumped on every re-creation */
	bool ready;		/* negotiated */
	uint64_t features, ioctls;
};

static struct ctxslot ctxs[NR_CTX];

#define NR_SLOTS	16
#define BIG_SLOT	(NR_SLOTS - 1)
#define BIG_LEN		(1ULL << 30)
#define MAX_SMALL_PAGES	64

struct regslot {
	pthread_rwlock_t lock;
	bool live;
	int fd, rofd;		/* rofd: an O_RDONLY reopen, or -1 */
	uint64_t id, len, uid;
	int ctx;		/* owning context slot */
	uint64_t ctx_gen;	/* its generation when this region was made */
	uint32_t flags;		/* REGION_CREATE flags */
};

static struct regslot slots[NR_SLOTS];
static atomic_uint_fast64_t next_uid = 1;

/*
 * Device fds, made on a context that negotiated a device feature; what
 * the device may do is fixed then, from that context's features.  Lock
 * order: a context slot, then a device slot (chaos); workers only ever
 * try-lock a device slot, before any region slot.
 */
#define NR_DEV		4

struct devslot {
	pthread_rwlock_t lock;
	int fd;			/* -1 if none */
	int ctx;		/* the context slot it was made on */
	uint64_t features;	/* that context's negotiated features */
};

static struct devslot devs[NR_DEV];

/*
 * The mappings live in an arena of fixed windows, so that an address the
 * chaos thread unmapped is never handed to anything else of this process
 * (it becomes a PROT_NONE reservation again): a stale address in a call
 * reaches a region mapping or a reservation, never the fuzzer's memory.
 * A window holds one mapping, at its start, of at most half its size:
 * two mappings never touch, so the kernel never merges them.
 */
#define NR_WIN		48
#define WIN_SIZE	(4ULL << 20)
#define MAX_MAP_PAGES	256

struct mapping {
	bool used, lost;	/* lost: re-reserving failed, never use again */
	uintptr_t addr;
	uint64_t npages, pgoff;
	int slot;
	uint64_t uid, rlen;	/* the region's identity and length */
	int owner_cx;		/* the region's context slot ... */
	uint64_t owner_gen;	/* ... and its generation then */
	uint32_t wpflags;	/* the region's REGION_CREATE flags */
	bool filewr;		/* the file is open for writing */
	bool prot_write;
};

static pthread_rwlock_t map_lock;
static struct mapping maps[NR_WIN];
static uintptr_t arena;

static void rwlock_init_wr(pthread_rwlock_t *l)
{
	pthread_rwlockattr_t a;

	pthread_rwlockattr_init(&a);
	pthread_rwlockattr_setkind_np(&a,
		PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(l, &a);
	pthread_rwlockattr_destroy(&a);
}

/* A raw ioctl: 0 or -errno. */
static int xioctl(int fd, unsigned long cmd, void *arg)
{
	return ioctl(fd, cmd, arg) < 0 ? -errno : 0;
}

/* Open a context and negotiate @features (0: leave it un-negotiated). */
static int ctx_new(uint64_t features, bool negotiate, uint64_t *ioctls)
{
	struct uffdx_api api = { .size = sizeof(api), .api = UFFDX_API_VERSION,
				 .features = features };
	int fd = open(UFFDX_DEV, O_RDWR | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	if (negotiate) {
		int ret = xioctl(fd, UFFDX_IOC_API, &api);

		if (ret) {
			close(fd);
			return ret;
		}
		if (ioctls)
			*ioctls = api.ioctls;
	}
	return fd;
}

/* (Re)create context slot @i; its write lock is held or nobody runs yet. */
static void ctx_slot_make(int i, struct rng *r)
{
	struct ctxslot *c = &ctxs[i];
	uint64_t want = supported & ~UFFDX_FEATURE_KERNEL_FAULTS;
	bool neg = true;

	if (c->fd >= 0)
		close(c->fd);
	switch (i) {
	case CX_UNNEG:
		neg = false;
		want = 0;
		break;
	case CX_MIN:
		want = UFFDX_FEATURE_REGIONS;
		break;
	case CX_SEC1:
	case CX_SEC2:
		if (r && chance(r, 50))
			want &= rnd(r) | UFFDX_FEATURE_REGIONS;
		break;
	}
	c->ioctls = 0;
	c->fd = ctx_new(want, neg, &c->ioctls);
	if (c->fd < 0) {
		fail_msg("context %s: open/negotiate %#" PRIx64 ": %s\n",
			 cx_names[i], want, strerror(-c->fd));
		c->fd = -1;
	}
	c->ready = neg && c->fd >= 0;
	/* what the module grants: REGIONS always, WP with WP_ASYNC */
	if (want & UFFDX_FEATURE_WP_ASYNC)
		want |= UFFDX_FEATURE_WP;
	c->features = c->ready ? (want | UFFDX_FEATURE_REGIONS) : 0;
	c->gen++;
}

static int region_create_raw(int ctxfd, uint64_t len, uint32_t flags,
			     uint64_t *id)
{
	struct uffdx_region_create rc = { .size = sizeof(rc), .flags = flags,
					  .len = len };
	int ret = xioctl(ctxfd, UFFDX_IOC_REGION_CREATE, &rc);

	if (ret)
		return ret;
	*id = rc.region_id;
	return rc.fd;
}

static int range_raw(int ctxfd, unsigned long cmd, uint64_t id, uint64_t off,
		     uint64_t len, uint32_t mode)
{
	struct uffdx_range r = { .size = sizeof(r), .mode = mode,
				 .region_id = id, .offset = off, .len = len };

	return xioctl(ctxfd, cmd, &r);
}

static bool has_ioctl(uint64_t ioctls, unsigned long cmd)
{
	return (ioctls >> _IOC_NR(cmd)) & 1;
}

/*
 * Fill an empty region slot with a new region of context @cx (write
 * locks of both held, or set-up): sometimes a read-only reopen, some
 * pages armed (main context only: the handler serves it) or filled.
 */
static void slot_make(int s, int cx, struct rng *r)
{
	struct regslot *sl = &slots[s];
	struct ctxslot *c = &ctxs[cx];
	uint64_t npages = 1 + rn(r, MAX_SMALL_PAGES), len, id = 0;
	uint32_t flags = 0;
	char path[64];
	int fd;

	if (!c->ready)
		return;
	len = s == BIG_SLOT ? BIG_LEN : npages * PG;
	if ((c->features & UFFDX_FEATURE_WP) && chance(r, 20))
		flags = UFFDX_REGION_CREATE_WP;
	else if ((c->features & UFFDX_FEATURE_WP_ASYNC) && chance(r, 20))
		flags = UFFDX_REGION_CREATE_WP_ASYNC;
	fd = region_create_raw(c->fd, len, flags, &id);
	if (fd < 0) {
		if (fd != -ENOMEM && fd != -ENOSPC && fd != -EMFILE)
			fail_msg("set-up: REGION_CREATE len %#" PRIx64 " on %s: %s\n",
				 len, cx_names[cx], strerror(-fd));
		return;
	}
	sl->fd = fd;
	sl->rofd = -1;
	if (chance(r, 50)) {
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		sl->rofd = open(path, O_RDONLY | O_CLOEXEC);
	}
	sl->id = id;
	sl->len = len;
	sl->uid = atomic_fetch_add(&next_uid, 1);
	sl->ctx = cx;
	sl->ctx_gen = c->gen;
	sl->flags = flags;
	sl->live = true;
	if (cx == CX_MAIN && chance(r, 60)) {
		uint64_t n = s == BIG_SLOT ? 4096 : len / PG;
		uint64_t off = rn(r, n) * PG, l = (1 + rn(r, n - off / PG)) * PG;

		range_raw(c->fd, UFFDX_IOC_ARM, id, off, l, UFFDX_ARM_MISSING);
	}
	if (chance(r, 50) && has_ioctl(c->ioctls, UFFDX_IOC_ZERO))
		range_raw(c->fd, UFFDX_IOC_ZERO, id, 0, PG, 0);
}

/* ---- the mapping table (map_lock) ----------------------------------------- */

/* The mapping that contains @a (map_lock held), or NULL. */
static struct mapping *map_find(uintptr_t a)
{
	if (a < arena || a >= arena + NR_WIN * WIN_SIZE)
		return NULL;
	return &maps[(a - arena) / WIN_SIZE];
}

enum addrclass {
	A_REGION,	/* in a mapping of a region: *mp */
	A_NOTREGION,	/* certainly not in a region mapping */
	A_UNKNOWN,	/* anything (a lost window) */
};

static enum addrclass addr_class(uint64_t a, struct mapping **mp)
{
	struct mapping *m;

	*mp = NULL;
	if (a >= arena && a < arena + NR_WIN * WIN_SIZE) {
		m = map_find(a);
		if (m->lost)
			return A_UNKNOWN;
		if (m->used && a >= m->addr && a < m->addr + m->npages * PG) {
			*mp = m;
			return A_REGION;
		}
		return A_NOTREGION;	/* a PROT_NONE reservation */
	}
	if ((uintptr_t)trap && a >= (uintptr_t)trap &&
	    a < (uintptr_t)trap + trap_len)
		return A_UNKNOWN;	/* handled by the callers */
	/*
	 * Not the arena: NULL, the kernel, our buffers and stacks, or
	 * unmapped; none is a region mapping (all of those are in the arena
	 * or the trap).
	 */
	return A_NOTREGION;
}

/* ---- per-thread state, the watchdog's view -------------------------------- */

#define SNAP 192

struct callrec {
	int ioc;
	unsigned long cmd;
	int fd;
	const char *fdname;
	const char *place;
	uint64_t uarg;
	uint32_t usize;
	uint64_t index, stream;
	unsigned char snap[SNAP];
	unsigned int nsub;		/* MOVE_VEC entries or resolutions */
	unsigned char sub[4][64];
};

enum busy { B_IDLE, B_IOCTL, B_TOUCH, B_FORK, B_CHAOS };

struct tstate {
	const char *name;
	pid_t tid;
	_Atomic uint64_t since;		/* ns, 0 when idle */
	_Atomic int busy;
	char what[160];			/* B_TOUCH, B_FORK, B_CHAOS */
	struct callrec rec;		/* B_IOCTL */
};

#define MAX_THREADS 40
static struct tstate tstates[MAX_THREADS];
static atomic_int nthreads;

static struct tstate *tstate_new(const char *name)
{
	int i = atomic_fetch_add(&nthreads, 1);
	struct tstate *t = &tstates[i];

	t->name = name;
	t->tid = sys_gettid();
	return t;
}

static void busy_set(struct tstate *t, int what)
{
	atomic_store(&t->busy, what);
	atomic_store(&t->since, now_ns());
}

static void busy_clear(struct tstate *t)
{
	atomic_store(&t->since, 0);
	atomic_store(&t->busy, B_IDLE);
}

/* ---- calls -------------------------------------------------------------- */

/* Where the argument struct (or a buffer) is. */
enum place {
	P_OK,		/* our writable buffer */
	P_RO,		/* a read-only view of it */
	P_STRADDLE,	/* the last @k bytes before an unmapped page */
	P_NULL,
	P_KERNEL,
	P_GUARD,	/* an unmapped page */
	P_TRAP,		/* a page of an armed hole whose context is gone */
	P_NONCANON,
	NR_PLACE
};

static const char *const place_names[NR_PLACE] = {
	"buffer", "read-only", "straddling", "NULL", "kernel", "unmapped",
	"armed-hole", "non-canonical"
};

/* What a file descriptor of a call is. */
enum fdkind {
	FD_CTX,		/* a context slot: c->cx */
	FD_FRESH,	/* a context opened for this call (API) */
	FD_REGION,	/* a region slot's fd (c->fdslot) */
	FD_REGION_RO,	/* its read-only reopen */
	FD_DEVNULL,
	FD_CLOSED,
	FD_DEVICE,	/* a device slot's fd (c->devslot) */
};

/* A thread's buffers: each followed by an unmapped guard page. */
#define ARG_LEN		(2 * PG)
#define DATA_LEN	(1ULL << 20)
#define VEC_LEN		(64 * 1024)

struct bufs {
	unsigned char *arg;		/* ARG_LEN */
	unsigned char *ro_rw, *ro;	/* ARG_LEN: two views of one memfd */
	unsigned char *data;		/* DATA_LEN: COPY sources */
	unsigned char *vec;		/* VEC_LEN: MOVE_VEC entries, resolutions */
	unsigned char *ev;		/* VEC_LEN: events, scan output */
	unsigned char *shadow;		/* VEC_LEN: the elements as built */
};

struct worker {
	int stream;
	struct rng rng;
	uint64_t base;			/* the stream's seed */
	struct tstate *ts;
	struct bufs b;
	timer_t timer;
	uint64_t n;			/* calls made by this stream */
	uint64_t stats[NR_IOC][3];	/* calls, successes, ns in the ioctl */
	int fresh;			/* an un-negotiated context for API, or -1 */
	uint32_t errs[NR_IOC][134];
};

/* What the model expects of a call. */
struct expect {
	int exact;		/* the call must fail with exactly this errno */
	eset exact2;		/* ... or one of these (exact == -1) */
	eset hdr;		/* the struct itself is rejected: one of these */
	eset cert;		/* certainly invalid: one of cert | maybe */
	eset maybe;		/* errnos an uncertain argument can explain */
	bool must_fail, must_succeed;
	bool may_block;		/* RESOLVE may sleep: a timer interrupts it */
	bool no_output;		/* rejected before anything is written back */
	bool einval_state;	/* an EINVAL may come from the pages' state */
	char why[160];
};

struct call {
	struct worker *w;
	struct rng *r;
	int ioc;
	unsigned long cmd;
	int cmdkind;			/* 0 exact, 1 other size bits, 2 not ours */
	int fd, fdkind, cx, fdslot;
	struct ctxslot ctx;		/* snapshot of the context slot */
	int devslot;			/* FD_DEVICE: the device slot, locked */
	uint64_t dev_features;		/* ... and what its context negotiated */
	int place;
	unsigned int k;			/* P_STRADDLE: bytes before the guard */
	void *uarg;
	unsigned char *out;		/* where to read outputs back, or NULL */
	uint32_t usize;
	/* what the call holds and knows */
	uint32_t locked;		/* region slots read-locked */
	bool ctx_locked, map_locked, dev_locked;
	int slot[2];			/* region slots picked: dst/primary, src */
	uint64_t L[2];			/* their lengths (or a guess) */
	/* MOVE_VEC entries or resolutions */
	unsigned int nsub;
	int subplace;			/* where they are */
	unsigned int subk;		/* P_STRADDLE: whole elements readable */
	int evplace;			/* RESOLVE events, SCAN output */
	unsigned int evk;
	uint64_t subfail[UFFDX_MOVE_VEC_MAX / 64];	/* entries that must fail */
	struct expect ex;
	int ret, err;
	size_t blen;			/* bytes of b the call may have set */
	unsigned char b[2 * PG];	/* the struct as built (last: not zeroed) */
};

static uint32_t get32(const void *p, size_t off)
{
	uint32_t v;

	memcpy(&v, (const unsigned char *)p + off, 4);
	return v;
}

static uint64_t get64(const void *p, size_t off)
{
	uint64_t v;

	memcpy(&v, (const unsigned char *)p + off, 8);
	return v;
}

static void put32(void *p, size_t off, uint32_t v)
{
	memcpy((unsigned char *)p + off, &v, 4);
}

static void put64(void *p, size_t off, uint64_t v)
{
	memcpy((unsigned char *)p + off, &v, 8);
}

static uint64_t getv(const void *p, size_t off, size_t size)
{
	return size == 4 ? get32(p, off) : get64(p, off);
}

static void setv(void *p, size_t off, size_t size, uint64_t v)
{
	if (size == 4)
		put32(p, off, (uint32_t)v);
	else
		put64(p, off, v);
}

static uint64_t fget(const void *p, const struct field *f)
{
	return getv(p, f->off, f->size);
}

static void fset(void *p, const struct field *f, uint64_t v)
{
	setv(p, f->off, f->size, v);
}

static const struct field *field_of(int ioc, const char *name)
{
	const struct ioc *d = &iocs[ioc];

	for (unsigned int i = 0; i < d->nfields; i++)
		if (!strcmp(d->fields[i].name, name))
			return &d->fields[i];
	return NULL;
}

/* Field @m of struct uffdx_@t as built. */
#define MSZ(t, m)	sizeof(((struct uffdx_##t *)0)->m)
#define GV(c, t, m)	getv((c)->b, offsetof(struct uffdx_##t, m), MSZ(t, m))
#define SV(c, t, m, v)	setv((c)->b, offsetof(struct uffdx_##t, m), MSZ(t, m), (v))

static void serve_event(int ctxfd, uint64_t ioctls, const struct uffdx_event *ev);

/* ---- locking helpers ----------------------------------------------------- */

/*
 * Read-lock region slot @s for the call, if that can be done at once: a
 * slot the chaos thread is re-creating is skipped, not waited for (a
 * worker that waited could hold up the handler, and the faults with it).
 */
static bool lock_slot(struct call *c, int s)
{
	if (s < 0)
		return false;
	if (c->locked & (1U << s))
		return true;
	/* Ascending order: only ever lock above what is held. */
	if (c->locked >> s)
		return false;
	if (pthread_rwlock_tryrdlock(&slots[s].lock))
		return false;
	c->locked |= 1U << s;
	return true;
}

static void unlock_all(struct call *c)
{
	if (c->map_locked)
		pthread_rwlock_unlock(&map_lock);
	c->map_locked = false;
	for (int s = 0; s < NR_SLOTS; s++)
		if (c->locked & (1U << s))
			pthread_rwlock_unlock(&slots[s].lock);
	c->locked = 0;
	if (c->ctx_locked)
		pthread_rwlock_unlock(&ctxs[c->cx].lock);
	c->ctx_locked = false;
	if (c->dev_locked)
		pthread_rwlock_unlock(&devs[c->devslot].lock);
	c->dev_locked = false;
}

static void lock_maps(struct call *c)
{
	if (!c->map_locked)
		pthread_rwlock_rdlock(&map_lock);
	c->map_locked = true;
}

/* Is region slot @s locked, live and owned by the call's context? */
static bool slot_owned(struct call *c, int s)
{
	return s >= 0 && (c->locked & (1U << s)) && slots[s].live &&
	       c->fdkind == FD_CTX && slots[s].ctx == c->cx &&
	       slots[s].ctx_gen == c->ctx.gen;
}

/* The locked, owned slot whose region id is @id, or -1. */
static int slot_by_id(struct call *c, uint64_t id)
{
	for (int s = 0; s < NR_SLOTS; s++)
		if (slot_owned(c, s) && slots[s].id == id)
			return s;
	return -1;
}

/*
 * Pick a region slot for a call on context @cx and read-lock it: one of
 * that context's mostly, any other sometimes.  Slots can only be locked
 * in ascending order, so a second pick is above the first or nothing.
 */
static int pick_slot(struct call *c, int above)
{
	int s, tries = 8;

	while (tries--) {
		s = above + 1 + (int)rn(c->r, NR_SLOTS - above - 1);
		if (s >= NR_SLOTS)
			return -1;
		lock_slot(c, s);
		if (!(c->locked & (1U << s)))
			continue;
		if (slot_owned(c, s) || (slots[s].live && chance(c->r, 10)))
			return s;
	}
	return -1;
}

/* ---- value generators ---------------------------------------------------- */

static uint64_t gen_mode(struct rng *r, uint64_t valid, unsigned int bits)
{
	uint64_t unknown = ~valid & (bits == 32 ? U32MAX : ~0ULL);
	uint64_t v;

	switch (rn(r, 8)) {
	case 0:
		return 0;
	case 1:
		return valid;
	case 2:
		return valid & rnd(r);
	case 3:
	case 4:
		/* one unknown bit */
		do {
			v = 1ULL << rn(r, bits);
		} while (!(v & unknown) && unknown);
		return v | (valid & rnd(r));
	case 5:
		return bits == 32 ? U32MAX : ~0ULL;
	case 6:
		return rnd(r) & (bits == 32 ? U32MAX : ~0ULL);
	default:
		return valid ? 1ULL << __builtin_ctzll(valid) : 0;
	}
}

static uint64_t gen_off(struct rng *r, uint64_t L)
{
	switch (rn(r, 14)) {
	case 0: return 0;
	case 1: return 1;
	case 2: return PG - 1;
	case 3: return PG;
	case 4: return L >= PG ? L - PG : 0;
	case 5: return L;
	case 6: return L + PG;
	case 7: return L ? L - 1 : 0;
	case 8: return ~0ULL;
	case 9: return ~0ULL & ~(PG - 1);
	case 10: return 1ULL << 63;
	case 11: return (U32MAX + 1) * PG;
	case 12: return rnd(r);
	default: return rn(r, L / PG + 1) * PG;
	}
}

static uint64_t gen_len(struct rng *r, uint64_t L, uint64_t off)
{
	switch (rn(r, 16)) {
	case 0: return 0;
	case 1: return 1;
	case 2: return PG - 1;
	case 3: return PG;
	case 4: return PG + 1;
	case 5: return 2 * PG;
	case 6: return L;
	case 7: return L > off ? L - off : PG;
	case 8: return (L > off ? L - off : 0) + PG;
	case 9: return -off;			/* off + len wraps to 0 */
	case 10: return -off + PG;		/* wraps past 0 */
	case 11: return ~0ULL;
	case 12: return ~0ULL & ~(PG - 1);
	case 13: return 1ULL << 63;
	case 14: return rnd(r);
	default: return (1 + rn(r, 16)) * PG;
	}
}

static uint64_t gen_region_len(struct rng *r)
{
	switch (rn(r, 14)) {
	case 0: return 0;
	case 1: return 1;
	case 2: return PG - 1;
	case 3: return PG + 1;
	case 4: return 1ULL << 40;			/* the largest */
	case 5: return (1ULL << 40) + PG;
	case 6: return (1ULL << 40) - PG;
	case 7: return ~0ULL;
	case 8: return ~0ULL & ~(PG - 1);
	case 9: return 1ULL << 63;
	case 10: return (U32MAX + 1) * PG;
	case 11: return rnd(r);
	case 12: return rn(r, 1ULL << 28) * PG;
	default: return (1 + rn(r, 64)) * PG;
	}
}

static uint64_t gen_id(struct call *c)
{
	struct rng *r = c->r;
	int s;

	switch (rn(r, 10)) {
	case 0: return 0;
	case 1: return U32MAX;
	case 2: return U32MAX + 1;
	case 3: return ~0ULL;
	case 4:
		/* a live id with high bits: must not be truncated */
		s = c->slot[0] >= 0 ? c->slot[0] : 0;
		return (1ULL << 32) | slots[s].id;
	case 5:
		s = (int)rn(r, NR_SLOTS);
		return slots[s].id + (chance(r, 50) ? 0 : 1000);
	case 6: return 1 + rn(r, 64);
	case 7: return rnd(r);
	default:
		s = (int)rn(r, NR_SLOTS);
		return slots[s].id;
	}
}

/* A file descriptor that is not a writable region file, or one that is. */
static uint64_t gen_fd(struct call *c, int side)
{
	struct rng *r = c->r;
	int s = c->slot[side];

	switch (rn(r, 12)) {
	case 0: return (uint64_t)ctxs[CX_MAIN].fd;
	case 1: return (uint64_t)devnull_fd;
	case 2: return CLOSED_FD;
	case 3: return ~0ULL;			/* -1 */
	case 4: return 0x7fffffffULL;
	case 5: return (1ULL << 32) | (uint64_t)(s >= 0 ? slots[s].fd : 3);
	case 6: return 0;
	case 7:
		if (s >= 0 && slots[s].rofd >= 0)
			return (uint64_t)slots[s].rofd;
		return CLOSED_FD;
	case 8: return rn(r, 64);
	default:
		return s >= 0 ? (uint64_t)slots[s].fd : CLOSED_FD;
	}
}

/* An address: in a region mapping (map_lock held) mostly, else not. */
static uint64_t gen_addr(struct call *c, uint64_t *room)
{
	struct rng *r = c->r;
	struct mapping *m;
	uint64_t p;

	*room = 0;
	switch (rn(r, 16)) {
	case 0: return 0;
	case 1: return KERNEL_ADDR;
	case 2: return NONCANON_ADDR;
	case 3: return (uint64_t)(uintptr_t)anon_page;
	case 4: return ~0ULL & ~(PG - 1);
	case 5: return (uint64_t)(uintptr_t)trap;
	case 6: return (uint64_t)(uintptr_t)c->w->b.arg + 2 * PG;  /* guard */
	case 7: return arena + rn(r, NR_WIN) * WIN_SIZE + WIN_SIZE / 2;
	default:
		break;
	}
	for (int tries = 0; tries < 8; tries++) {
		m = &maps[rn(r, NR_WIN)];
		if (!m->used)
			continue;
		p = rn(r, m->npages);
		*room = m->npages - p;
		switch (rn(r, 10)) {
		case 0: return m->addr + p * PG + 1 + rn(r, PG - 1);
		case 1: *room = 0; return m->addr + m->npages * PG;
		default: return m->addr + p * PG;
		}
	}
	return (uint64_t)(uintptr_t)anon_page;
}

/* Where a struct or buffer goes: ours mostly, else a bad place. */
static int gen_place(struct rng *r, bool allow_trap)
{
	unsigned int x = (unsigned int)rn(r, 100);

	if (x < 85)
		return P_OK;
	if (x < 89)
		return P_RO;
	if (x < 93)
		return P_STRADDLE;
	switch (x % 5) {
	case 0: return P_NULL;
	case 1: return P_KERNEL;
	case 2: return P_GUARD;
	case 3: return allow_trap ? P_TRAP : P_GUARD;
	default: return P_NONCANON;
	}
}

static uint64_t gen_timeout(struct rng *r)
{
	switch (rn(r, 10)) {
	case 0: return 0;
	case 1: return 1;
	case 2: return 1000;
	case 3: return 1000000;		/* 1 ms */
	case 4: return 20000000;	/* 20 ms */
	case 5: return (uint64_t)-1;
	case 6: return 1ULL << 63;	/* S64_MIN */
	case 7: return ~0ULL >> 1;	/* S64_MAX */
	case 8: return 1000000000;	/* 1 s */
	default: return rn(r, 5000000);
	}
}

static uint64_t gen_count(struct rng *r, uint64_t max)
{
	switch (rn(r, 8)) {
	case 0: return 0;
	case 1: return 1;
	case 2: return max;
	case 3: return max + 1;
	case 4: return U32MAX;
	case 5: return rnd(r) & U32MAX;
	default: return 1 + rn(r, 8);
	}
}

static uint64_t map_addr(struct call *c, uint64_t *room);

/*
 * A device command's address (map_lock held): a region mapping's page
 * mostly, else ordinary memory, nothing, the trap, the top of the user
 * address space, the kernel; @word: a word of a page (DEV_ATOMIC).
 */
static uint64_t gen_daddr(struct call *c, uint64_t word)
{
	struct rng *r = c->r;
	uint64_t room, a;

	switch (rn(r, 16)) {
	case 0: return 0;
	case 1: return KERNEL_ADDR;
	case 2: return NONCANON_ADDR;
	/*
	 * Just past the last user page (4-level): not the last page itself,
	 * which may be the top of our stack.
	 */
	case 3: return USER_TOP_4L;
	case 4: return ~0ULL & ~(PG - 1);
	case 5: return (uint64_t)(uintptr_t)anon_page + (word ? 8 * rn(r, PG / 8) : 0);
	case 6: return (uint64_t)(uintptr_t)trap;
	case 7: return (uint64_t)(uintptr_t)c->w->b.arg + ARG_LEN;	/* guard */
	case 8: return arena + rn(r, NR_WIN) * WIN_SIZE + WIN_SIZE / 2;
	case 9: return (uint64_t)(uintptr_t)c->w->b.ev;	/* ordinary memory */
	default: break;
	}
	a = map_addr(c, &room);
	switch (rn(r, 6)) {
	case 0: return a + 1 + rn(r, PG - 1);		/* unaligned */
	case 1: return a + 4;				/* not a word */
	case 2: return a + room * PG;			/* past the mapping */
	default: return a + (word ? 8 * rn(r, PG / 8) : 0);
	}
}

/* A device command's buffer: ours mostly, else a bad one. */
static uint64_t gen_dptr(struct call *c)
{
	struct bufs *b = &c->w->b;

	switch (rn(c->r, 11)) {
	case 0: return 0;
	case 1: return KERNEL_ADDR;
	case 2: return NONCANON_ADDR;
	case 3: return (uint64_t)(uintptr_t)b->ro;		/* read-only */
	case 4: return (uint64_t)(uintptr_t)b->data + DATA_LEN - PG;
	case 5: return (uint64_t)(uintptr_t)b->data + DATA_LEN;	/* the guard */
	case 6: return (uint64_t)(uintptr_t)trap;
	case 7: return (uint64_t)(uintptr_t)b->ev + VEC_LEN - 1 - rn(c->r, 16);
	case 8: return (uint64_t)(uintptr_t)b->ev;
	default: return (uint64_t)(uintptr_t)b->data;
	}
}

/* Replace field @f of the struct with a boundary value. */
static void perturb(struct call *c, const struct field *f)
{
	struct rng *r = c->r;
	const struct ioc *d = &iocs[c->ioc];
	unsigned char *b = c->b;
	uint64_t v, room;

	switch (f->role) {
	case R_SIZE: {
		bool tail = chance(r, 50);

		switch (rn(r, 12)) {
		case 0: v = 0; break;
		case 1: v = 4; break;
		case 2: v = d->size - 8; break;
		case 3: v = d->size - 1; break;
		case 4: v = d->size + 1; break;
		case 5: v = d->size + 8; break;
		case 6: v = d->size + 64; break;
		case 7: v = PG; break;
		case 8: v = PG + 1 + rn(r, 16); break;
		case 9: v = 0x80000000ULL; break;
		case 10: v = U32MAX; break;
		default: v = d->size + 1 + rn(r, PG - d->size); break;
		}
		put32(b, 0, (uint32_t)v);
		/* a non-zero byte in the tail the module does not know */
		if (tail && v > d->size && v <= sizeof(c->b)) {
			size_t at = d->size + rn(r, v - d->size);

			b[at] = 1 + (uint8_t)rn(r, 255);
			if (at + 1 > c->blen)
				c->blen = at + 1;
		}
		return;
	}
	case R_MODE:
		v = f->aux ? f->aux : d->modes;
		fset(b, f, gen_mode(r, v, 32));
		return;
	case R_APIVER:
		fset(b, f, chance(r, 50) ? 0 : (chance(r, 50) ? 2 : rnd(r)));
		return;
	case R_FEAT:
		switch (rn(r, 5)) {
		case 0: v = ~0ULL; break;
		case 1: v = 1ULL << rn(r, 64); break;
		case 2: v = UFFDX_FEATURE_KERNEL_FAULTS; break;
		case 3: v = 0; break;
		default: v = rnd(r); break;
		}
		fset(b, f, v);
		return;
	case R_RLEN:
		fset(b, f, gen_region_len(r));
		return;
	case R_ID:
		fset(b, f, gen_id(c));
		return;
	case R_IDFD:
		/* The mode's FD bit says which this is; perturb either way. */
		v = get32(b, 4) & (f->aux ? UFFDX_MOVE_SRC_FD : UFFDX_MOVE_DST_FD);
		fset(b, f, v ? gen_fd(c, (int)f->aux) : gen_id(c));
		return;
	case R_OFF:
		fset(b, f, gen_off(r, c->L[f->aux]));
		return;
	case R_LEN: {
		const struct field *o = field_of(c->ioc, "offset");

		if (!o)
			o = field_of(c->ioc, "dst_offset");
		fset(b, f, gen_len(r, c->L[0], o ? fget(b, o) : 0));
		return;
	}
	case R_SRC:
		switch (rn(r, 6)) {
		case 0: v = 0; break;
		case 1: v = KERNEL_ADDR; break;
		case 2: v = (uint64_t)(uintptr_t)trap; break;
		case 3: v = (uint64_t)(uintptr_t)c->w->b.data + DATA_LEN - PG; break;
		case 4: v = (uint64_t)(uintptr_t)c->w->b.ro; break;
		default: v = gen_addr(c, &room); break;
		}
		fset(b, f, v);
		return;
	case R_ADDR:
		fset(b, f, gen_addr(c, &room));
		return;
	case R_PTR:
		/* handled with the placement of the elements */
		return;
	case R_COUNT:
		fset(b, f, gen_count(r, f->aux));
		return;
	case R_ESIZE:
		switch (rn(r, 4)) {
		case 0: v = 0; break;
		case 1: v = f->aux - 8; break;
		case 2: v = f->aux + 8; break;
		default: v = U32MAX; break;
		}
		fset(b, f, v);
		return;
	case R_TIMEOUT:
		fset(b, f, gen_timeout(r));
		return;
	case R_DADDR:
		fset(b, f, gen_daddr(c, f->aux));
		return;
	case R_DPTR:
		fset(b, f, gen_dptr(c));
		return;
	case R_OP:
		switch (rn(r, 6)) {
		case 0: v = 0; break;
		case 1: v = UFFDX_DEV_ATOMIC_CMPXCHG + 1; break;
		case 2: v = U32MAX; break;
		case 3: v = 1ULL << rn(r, 32); break;
		case 4: v = rnd(r) & U32MAX; break;
		default: v = UFFDX_DEV_ATOMIC_FETCH_ADD + rn(r, 2); break;
		}
		fset(b, f, v);
		return;
	case R_VAL:
		fset(b, f, chance(r, 30) ? 0 : chance(r, 30) ? ~0ULL : rnd(r));
		return;
	case R_RSVD:
		v = chance(r, 50) ? 1ULL << rn(r, 64) : rnd(r) | 1;
		put64(b, f->off + 8 * rn(r, f->size / 8), v);
		return;
	case R_PAD:
		fset(b, f, 1 + rn(r, U32MAX));
		return;
	case R_OUT:
		fset(b, f, rnd(r));
		return;
	}
}

/* ---- per-ioctl baselines (a valid call) ------------------------------------ */

static uint64_t pick_pages(struct call *c, uint64_t L, uint64_t max,
			   uint64_t *off)
{
	uint64_t n = L / PG;
	uint64_t o = n > 1 ? rn(c->r, n) : 0;
	uint64_t l = 1 + rn(c->r, n - o < max ? n - o : max);

	*off = o * PG;
	return l * PG;
}

static void gen_api(struct call *c)
{
	uint64_t want = supported & ~UFFDX_FEATURE_KERNEL_FAULTS;

	SV(c, api, api, UFFDX_API_VERSION);
	SV(c, api, features, chance(c->r, 50) ? want : want & rnd(c->r));
}

static void gen_create(struct call *c)
{
	uint32_t flags = 0;

	if ((c->ctx.features & UFFDX_FEATURE_WP) && chance(c->r, 10))
		flags = UFFDX_REGION_CREATE_WP;
	if ((c->ctx.features & UFFDX_FEATURE_WP_ASYNC) && chance(c->r, 10))
		flags = UFFDX_REGION_CREATE_WP_ASYNC;
	SV(c, region_create, flags, flags);
	SV(c, region_create, len, (1 + rn(c->r, MAX_SMALL_PAGES)) * PG);
}

static void gen_range(struct call *c)
{
	const struct ioc *d = &iocs[c->ioc];
	int s = pick_slot(c, -1);
	uint64_t off, len, max;
	uint32_t mode = 0;

	c->slot[0] = s;
	c->L[0] = s >= 0 ? slots[s].len : 16 * PG;
	/*
	 * A few pages mostly (every page costs, most on the debug kernel);
	 * fills at most 16, the others sometimes up to 4096.
	 */
	switch (c->ioc) {
	case I_COPY: case I_ZERO: case I_POISON:
		max = chance(c->r, 80) ? 4 : 16;
		break;
	default:
		max = chance(c->r, 90) ? 16 : 4096;
		break;
	}
	len = pick_pages(c, c->L[0], max, &off);
	SV(c, range, region_id, s >= 0 ? slots[s].id : gen_id(c));
	SV(c, range, offset, off);
	SV(c, range, len, len);
	switch (c->ioc) {
	case I_ARM:
		mode = UFFDX_ARM_MISSING;
		break;
	case I_DISARM:
		mode = chance(c->r, 50) ? UFFDX_ARM_MISSING : 0;
		break;
	case I_WP:
		mode = chance(c->r, 50) ? UFFDX_WP_PROTECT :
		       chance(c->r, 50) ? UFFDX_WP_DONTWAKE : 0;
		break;
	default:
		mode = (uint32_t)(d->modes & rnd(c->r));
		break;
	}
	SV(c, range, mode, mode);
	if (c->ioc == I_COPY)
		SV(c, range, src, (uint64_t)(uintptr_t)c->w->b.data +
		    rn(c->r, (DATA_LEN - len) / PG) * PG);
	SV(c, range, result, 0x5afe5afe00000000ULL | rn(c->r, 1 << 16));
}

static void gen_move(struct call *c)
{
	int a = pick_slot(c, -1), b = chance(c->r, 30) ? a : pick_slot(c, a);
	int d, s;
	uint32_t mode = (uint32_t)(rnd(c->r) & 3);
	uint64_t doff, soff, len, Lmin;

	if (b < 0)
		b = a;
	d = chance(c->r, 50) ? a : b;
	s = d == a ? b : a;
	c->slot[0] = d;
	c->slot[1] = s;
	c->L[0] = d >= 0 ? slots[d].len : 16 * PG;
	c->L[1] = s >= 0 ? slots[s].len : 16 * PG;
	if (d >= 0 && (chance(c->r, 20) || !slot_owned(c, d)))
		mode |= UFFDX_MOVE_DST_FD;
	if (s >= 0 && (chance(c->r, 20) || !slot_owned(c, s)))
		mode |= UFFDX_MOVE_SRC_FD;
	Lmin = c->L[0] < c->L[1] ? c->L[0] : c->L[1];
	len = (1 + rn(c->r, Lmin / PG < 16 ? Lmin / PG : 16)) * PG;
	doff = rn(c->r, (c->L[0] - len) / PG + 1) * PG;
	soff = rn(c->r, (c->L[1] - len) / PG + 1) * PG;
	if (d == s && d >= 0 && 2 * len <= c->L[0]) {
		/* one region: two disjoint ranges */
		uint64_t lo = rn(c->r, (c->L[0] - 2 * len) / PG + 1) * PG;
		uint64_t hi = lo + len + rn(c->r, (c->L[0] - lo - 2 * len) / PG + 1) * PG;

		doff = chance(c->r, 50) ? lo : hi;
		soff = doff == lo ? hi : lo;
	}
	SV(c, move, mode, mode);
	SV(c, move, dst_region, d < 0 ? gen_id(c) : (mode & UFFDX_MOVE_DST_FD) ?
	   (uint64_t)slots[d].fd : slots[d].id);
	SV(c, move, src_region, s < 0 ? gen_id(c) : (mode & UFFDX_MOVE_SRC_FD) ?
	   (uint64_t)slots[s].fd : slots[s].id);
	SV(c, move, dst_offset, doff);
	SV(c, move, src_offset, soff);
	SV(c, move, len, len);
	SV(c, move, result, 0x5afe5afe00000000ULL | rn(c->r, 1 << 16));
}

/* A region mapping address for an address-form call, and the pages after it. */
static uint64_t map_addr(struct call *c, uint64_t *room)
{
	for (int tries = 0; tries < 16; tries++) {
		struct mapping *m = &maps[rn(c->r, NR_WIN)];
		uint64_t p;

		if (!m->used || (!m->filewr && chance(c->r, 80)))
			continue;
		p = rn(c->r, m->npages);
		*room = m->npages - p;
		return m->addr + p * PG;
	}
	*room = 1;
	return (uint64_t)(uintptr_t)anon_page;
}

static void gen_addr_move(struct call *c, uint64_t *dst, uint64_t *src,
			  uint64_t *len)
{
	uint64_t dr, sr, max;

	*dst = map_addr(c, &dr);
	*src = map_addr(c, &sr);
	max = dr < sr ? dr : sr;
	if (max > 16)
		max = 16;
	*len = (1 + rn(c->r, max ? max : 1)) * PG;
}

static void gen_move_addr(struct call *c)
{
	uint64_t dst, src, len;

	lock_maps(c);
	gen_addr_move(c, &dst, &src, &len);
	SV(c, move_addr, mode, rnd(c->r) & 3);
	SV(c, move_addr, dst, dst);
	SV(c, move_addr, src, src);
	SV(c, move_addr, len, len);
	SV(c, move_addr, result, 0x5afe5afe00000000ULL | rn(c->r, 1 << 16));
	c->L[0] = len;
}

/* The elements of MOVE_VEC and RESOLVE: where they go, how many fit. */
static unsigned char *sub_base(struct call *c, unsigned int n, size_t esz)
{
	unsigned char *base = c->w->b.vec;

	c->subplace = gen_place(c->r, true);
	c->subk = n;
	switch (c->subplace) {
	case P_STRADDLE:
		/* the guard follows vec + VEC_LEN: only subk whole elements fit */
		c->subk = n ? (unsigned int)rn(c->r, n) : 0;
		return base + VEC_LEN - c->subk * esz;
	case P_RO:
		/* vec has no read-only view: use the arg buffer's second page */
		return NULL;
	default:
		return base;
	}
}

static uint64_t sub_uptr(struct call *c, unsigned char *base)
{
	switch (c->subplace) {
	case P_OK:
	case P_STRADDLE: return (uint64_t)(uintptr_t)base;
	case P_RO: return (uint64_t)(uintptr_t)(c->w->b.ro + PG);
	case P_NULL: return 0;
	case P_KERNEL: return KERNEL_ADDR;
	case P_GUARD: return (uint64_t)(uintptr_t)c->w->b.vec + VEC_LEN;
	case P_TRAP: return (uint64_t)(uintptr_t)trap;
	default: return NONCANON_ADDR;
	}
}

static void gen_move_vec(struct call *c)
{
	struct uffdx_move_entry e[UFFDX_MOVE_VEC_MAX];
	unsigned int x = (unsigned int)rn(c->r, 100);
	/* a few entries mostly; past one pass of 64 sometimes; the most rarely */
	unsigned int n = x < 98 ? 1 + (unsigned int)rn(c->r, 8) :
			 chance(c->r, 80) ? 60 + (unsigned int)rn(c->r, 10) :
			 UFFDX_MOVE_VEC_MAX - (unsigned int)rn(c->r, 2);
	unsigned char *base;

	lock_maps(c);
	if (!n)
		n = 1;
	for (unsigned int i = 0; i < n; i++) {
		uint64_t dst, src, len;

		gen_addr_move(c, &dst, &src, &len);
		e[i].dst = dst;
		e[i].src = src;
		e[i].len = len;
		e[i].result = (int64_t)(0x5afe5afe00000000ULL | i);
		if (chance(c->r, 15)) {
			uint64_t room;

			switch (rn(c->r, 4)) {
			case 0: e[i].dst = gen_addr(c, &room); break;
			case 1: e[i].src = gen_addr(c, &room); break;
			default: e[i].len = gen_len(c->r, 16 * PG, 0); break;
			}
		}
	}
	/* RO: the second page of the read-only view holds at most 128. */
	base = sub_base(c, n, sizeof(e[0]));
	if (c->subplace == P_RO && n > PG / sizeof(e[0]))
		c->subplace = P_OK, base = c->w->b.vec;
	c->nsub = n;
	if (c->subplace == P_OK)
		memcpy(base, e, n * sizeof(e[0]));
	else if (c->subplace == P_STRADDLE)
		memcpy(base, e, c->subk * sizeof(e[0]));
	else if (c->subplace == P_RO)
		memcpy(c->w->b.ro_rw + PG, e, n * sizeof(e[0]));
	SV(c, move_vec, mode, rnd(c->r) & 3);
	SV(c, move_vec, entries, sub_uptr(c, base));
	SV(c, move_vec, nr_entries, n);
	SV(c, move_vec, entry_size, sizeof(struct uffdx_move_entry));
	/* remember the entries as built, for the model and the checks */
	memcpy(c->w->b.shadow, e, n * sizeof(e[0]));
}

static void gen_resolve(struct call *c)
{
	struct uffdx_resolution res[64];
	unsigned int n = chance(c->r, 80) ? (unsigned int)rn(c->r, 4) :
			 (unsigned int)rn(c->r, 64);
	unsigned char *base;
	int s0 = pick_slot(c, -1), s1 = pick_slot(c, s0);

	c->slot[0] = s0;
	c->slot[1] = s1;
	lock_maps(c);
	for (unsigned int i = 0; i < n; i++) {
		int s = chance(c->r, 50) ? s0 : s1;
		uint64_t L = s >= 0 ? slots[s].len : 16 * PG, off, room;
		struct uffdx_resolution *x = &res[i];

		memset(x, 0, sizeof(*x));
		x->op = resolve_ops[rn(c->r, ARRAY_SIZE(resolve_ops))];
		x->region_id = s >= 0 ? slots[s].id : gen_id(c);
		x->len = pick_pages(c, L, 16, &off);
		x->offset = off;
		x->result = (int64_t)(0x5afe5afe00000000ULL | i);
		switch (x->op) {
		case _UFFDX_COPY:
			x->src = (uint64_t)(uintptr_t)c->w->b.data;
			/* fall through */
		case _UFFDX_ZERO:
		case _UFFDX_POISON:
			x->mode = (uint32_t)(rnd(c->r) & UFFDX_FILL_DONTWAKE);
			break;
		case _UFFDX_MOVE:
			x->src = map_addr(c, &room);
			if (x->len > room * PG)
				x->len = room * PG;
			x->mode = (uint32_t)(rnd(c->r) & 3);
			break;
		case _UFFDX_WRITEPROTECT:
			x->mode = (uint32_t)(rnd(c->r) & 3);
			break;
		}
		if (chance(c->r, 15)) {
			switch (rn(c->r, 7)) {
			case 0: x->op = (uint32_t)rnd(c->r) & 0x7f; break;
			case 1: x->mode = (uint32_t)gen_mode(c->r, 3, 32); break;
			case 2: x->region_id = gen_id(c); break;
			case 3: x->offset = gen_off(c->r, L); break;
			case 4: x->len = gen_len(c->r, L, x->offset); break;
			case 5: x->src = gen_addr(c, &room); break;
			default: x->op = chance(c->r, 50) ? _UFFDX_API : _UFFDX_ARM; break;
			}
		}
	}
	base = sub_base(c, n, sizeof(res[0]));
	c->nsub = n;
	if (c->subplace == P_OK)
		memcpy(base, res, n * sizeof(res[0]));
	else if (c->subplace == P_STRADDLE)
		memcpy(base, res, c->subk * sizeof(res[0]));
	else if (c->subplace == P_RO)
		memcpy(c->w->b.ro_rw + PG, res, n * sizeof(res[0]));
	memcpy(c->w->b.shadow, res, n * sizeof(res[0]));

	c->evplace = chance(c->r, 85) ? P_OK : gen_place(c->r, true);
	if (c->evplace == P_RO)
		c->evplace = P_GUARD;
	SV(c, resolve, flags, rnd(c->r) & UFFDX_RESOLVE_NOWAIT);
	SV(c, resolve, resolutions, sub_uptr(c, base));
	SV(c, resolve, nr_resolutions, n);
	SV(c, resolve, resolution_size, sizeof(struct uffdx_resolution));
	SV(c, resolve, max_events, rn(c->r, 17));
	/* waits cost time: mostly none, sometimes short, rarely for a signal */
	SV(c, resolve, timeout_ns, chance(c->r, 70) ? 0 : chance(c->r, 65) ?
	   rn(c->r, 200000) : gen_timeout(c->r));
	c->evk = 1 + (unsigned int)rn(c->r, 4);
	switch (c->evplace) {
	case P_OK:
		SV(c, resolve, events, (uint64_t)(uintptr_t)c->w->b.ev);
		break;
	case P_STRADDLE:
		/* room for evk events before the guard */
		SV(c, resolve, events, (uint64_t)(uintptr_t)c->w->b.ev + VEC_LEN -
		    c->evk * sizeof(struct uffdx_event));
		break;
	case P_NULL: SV(c, resolve, events, 0); break;
	case P_KERNEL: SV(c, resolve, events, KERNEL_ADDR); break;
	case P_TRAP: SV(c, resolve, events, (uint64_t)(uintptr_t)trap); break;
	case P_NONCANON: SV(c, resolve, events, NONCANON_ADDR); break;
	default: SV(c, resolve, events, (uint64_t)(uintptr_t)c->w->b.ev + VEC_LEN); break;
	}
}

static void gen_wp_addr(struct call *c)
{
	uint64_t room, a;

	lock_maps(c);
	a = map_addr(c, &room);
	SV(c, writeprotect_addr, mode, chance(c->r, 50) ? UFFDX_WP_PROTECT :
	   chance(c->r, 50) ? UFFDX_WP_DONTWAKE : 0);
	SV(c, writeprotect_addr, addr, a);
	SV(c, writeprotect_addr, len, (1 + rn(c->r, room > 16 ? 16 : room)) * PG);
	SV(c, writeprotect_addr, result, 0x5afe5afe00000000ULL);
	c->L[0] = 16 * PG;
}

static void gen_scan(struct call *c)
{
	int s = pick_slot(c, -1);
	uint64_t off, len;

	c->slot[0] = s;
	c->L[0] = s >= 0 ? slots[s].len : 16 * PG;
	len = pick_pages(c, c->L[0], 4096, &off);
	SV(c, scan, flags, rnd(c->r) & 3);
	SV(c, scan, region_id, s >= 0 ? slots[s].id : gen_id(c));
	SV(c, scan, offset, off);
	SV(c, scan, len, len);
	c->evplace = chance(c->r, 85) ? P_OK : gen_place(c->r, true);
	SV(c, scan, out, c->evplace == P_OK ? (uint64_t)(uintptr_t)c->w->b.ev :
	    c->evplace == P_NULL ? 0 : KERNEL_ADDR);
	if (c->evplace != P_OK && c->evplace != P_NULL)
		c->evplace = P_KERNEL;
	SV(c, scan, out_len, 1 + rn(c->r, VEC_LEN / sizeof(struct uffdx_scan_range)));
}

static void gen_info(struct call *c)
{
	(void)c;
}

/*
 * A device command on a few pages of a region mapping mostly, else of
 * ordinary memory (the anonymous page, our event buffer); the buffer
 * ours, of the size the command takes.
 */
static void gen_dev_cmd(struct call *c)
{
	struct bufs *b = &c->w->b;
	unsigned int x = (unsigned int)rn(c->r, 100);
	uint64_t a, room, n, p;

	lock_maps(c);
	if (x < 80) {
		a = map_addr(c, &room);
	} else if (x < 90) {
		a = (uint64_t)(uintptr_t)anon_page;
		room = 1;
	} else {
		a = (uint64_t)(uintptr_t)b->ev;
		room = VEC_LEN / PG;
	}
	n = 1 + rn(c->r, room < 16 ? room : 16);
	switch (c->ioc) {
	case I_DEV_READ:
	case I_DEV_WRITE:
		p = (uint64_t)(uintptr_t)b->data + rn(c->r, DATA_LEN / PG - n + 1) * PG;
		break;
	case I_DEV_SNAPSHOT:
		p = (uint64_t)(uintptr_t)b->ev;
		break;
	case I_DEV_MIGRATE_TO_DEV:
	case I_DEV_MIGRATE_TO_SYS:
		/* the status bytes are optional */
		p = chance(c->r, 30) ? 0 : (uint64_t)(uintptr_t)b->ev;
		break;
	default:
		/* not used */
		p = chance(c->r, 80) ? 0 : rnd(c->r);
		break;
	}
	SV(c, dev_cmd, addr, a);
	SV(c, dev_cmd, ptr, p);
	SV(c, dev_cmd, npages, n);
	SV(c, dev_cmd, cpages, 0x5afe5afe00000000ULL | rn(c->r, 1 << 16));
	SV(c, dev_cmd, faults, 0x5afe5afe00000000ULL);
}

static void gen_dev_atomic(struct call *c)
{
	uint64_t room, a;

	lock_maps(c);
	a = map_addr(c, &room);
	SV(c, dev_atomic, op, UFFDX_DEV_ATOMIC_FETCH_ADD + rn(c->r, 2));
	SV(c, dev_atomic, addr, a + 8 * rn(c->r, PG / 8));
	SV(c, dev_atomic, value, rnd(c->r));
	SV(c, dev_atomic, expected, chance(c->r, 50) ? 0 : rnd(c->r));
	SV(c, dev_atomic, old, 0x5afe5afe00000000ULL);
}

/* ---- the model ---------------------------------------------------------- */

static bool aligned(uint64_t v)
{
	return !(v & (PG - 1));
}

static void why(struct call *c, const char *s)
{
	size_t n = strlen(c->ex.why);

	snprintf(c->ex.why + n, sizeof(c->ex.why) - n, "%s%s", n ? ", " : "", s);
}

static void cert(struct call *c, int e, const char *s)
{
	es_add(&c->ex.cert, e);
	why(c, s);
}

static void maybe(struct call *c, int e)
{
	es_add(&c->ex.maybe, e);
}

static bool rsvd_set(struct call *c)
{
	const struct field *f = field_of(c->ioc, "reserved");
	const struct field *p = field_of(c->ioc, "__pad");

	for (unsigned int i = 0; f && i < f->size; i += 8)
		if (get64(c->b, f->off + i))
			return true;
	return p && fget(c->b, p);
}

/* A region range of a known region of length @L (0: unknown). */
static void model_range_args(struct call *c, uint64_t off, uint64_t len,
			     uint64_t L, bool known)
{
	uint64_t end;

	if (!len)
		cert(c, EINVAL, "len 0");
	if (!aligned(off) || !aligned(len))
		cert(c, EINVAL, "unaligned");
	if (__builtin_add_overflow(off, len, &end))
		cert(c, EINVAL, "offset + len overflows");
	else if (known && end > L)
		cert(c, EINVAL, "beyond the region");
	else if (!known)
		maybe(c, EINVAL);
}

/* The region named by id @id for a call on its context: known or not. */
static bool model_id(struct call *c, uint64_t id, uint64_t *L)
{
	int s;

	if (!id || id > U32MAX) {
		cert(c, ENOENT, "region id 0 or > U32_MAX");
		return false;
	}
	s = slot_by_id(c, id);
	if (s < 0) {
		maybe(c, ENOENT);
		return false;
	}
	*L = slots[s].len;
	return true;
}

static bool mode_ok(int ioc, uint32_t mode)
{
	switch (ioc) {
	case I_ARM:
		return mode == UFFDX_ARM_MISSING;
	case I_WP:
	case I_WP_ADDR:
		/* DONTWAKE is for unprotecting only */
		return !(mode & ~iocs[ioc].modes) &&
		       mode != (UFFDX_WP_PROTECT | UFFDX_WP_DONTWAKE);
	default:
		return !(mode & ~iocs[ioc].modes);
	}
}

/* ARM ... DISCARD, WRITEPROTECT: shared by the ioctls and resolutions. */
static void model_range(struct call *c, int ioc, uint32_t mode, uint64_t id,
			uint64_t off, uint64_t len, uint64_t src, bool rsvd)
{
	uint64_t L = 0;
	bool known;

	if (rsvd)
		cert(c, EINVAL, "reserved set");
	if (ioc != I_COPY && src)
		cert(c, EINVAL, "src set for a non-COPY");
	if (!mode_ok(ioc, mode))
		cert(c, EINVAL, "mode invalid");
	known = model_id(c, id, &L);
	model_range_args(c, off, len, L, known);
	if (ioc == I_WP && known && !slots[slot_by_id(c, id)].flags)
		cert(c, EINVAL, "not a write-protect region");
}

/* An address range of an address-form call; the mapping, if known. */
static struct mapping *model_addr(struct call *c, uint64_t a, uint64_t len,
				  const char *what)
{
	struct mapping *m;
	uint64_t end;
	char buf[64];

	if (!aligned(a)) {
		snprintf(buf, sizeof(buf), "%s unaligned", what);
		cert(c, EINVAL, buf);
		return NULL;
	}
	if ((uintptr_t)trap && a >= (uintptr_t)trap &&
	    a < (uintptr_t)trap + trap_len) {
		/* a mapping of a region file open read-only */
		if (!__builtin_add_overflow(a, len, &end) &&
		    end <= (uintptr_t)trap + trap_len) {
			snprintf(buf, sizeof(buf), "%s read-only region mapping", what);
			cert(c, EBADF, buf);
		} else {
			snprintf(buf, sizeof(buf), "%s beyond its mapping", what);
			cert(c, EINVAL, buf);
		}
		return NULL;
	}
	switch (addr_class(a, &m)) {
	case A_NOTREGION:
		snprintf(buf, sizeof(buf), "%s not a region mapping", what);
		cert(c, EINVAL, buf);
		return NULL;
	case A_UNKNOWN:
		maybe(c, EINVAL);
		maybe(c, EBADF);
		return NULL;
	default:
		break;
	}
	if (__builtin_add_overflow(a, len, &end) ||
	    end > m->addr + m->npages * PG) {
		snprintf(buf, sizeof(buf), "%s beyond its mapping", what);
		cert(c, EINVAL, buf);
		return NULL;
	}
	if (!m->filewr) {
		snprintf(buf, sizeof(buf), "%s read-only region file", what);
		cert(c, EBADF, buf);
		return NULL;
	}
	return m;
}

/*
 * A move from a region of write-protect mode @sflags to one of @dflags
 * (-1: unknown) may stop at a protected or written page with EINVAL (its
 * state cannot go to a region of another mode), a state the fuzzer does
 * not track.
 */
static void wp_state(struct call *c, int sflags, int dflags)
{
	/* unknown (-1) on either side may be a region of another mode */
	if (!has_ioctl(all_ioctls, UFFDX_IOC_WRITEPROTECT) || !sflags ||
	    (sflags == dflags && sflags != -1))
		return;
	maybe(c, EINVAL);
	c->ex.einval_state = true;
}

static void model_move_addr(struct call *c, uint64_t dst, uint64_t src,
			    uint64_t len)
{
	struct mapping *dm, *sm;
	uint64_t dp, sp, n;

	if (!len || !aligned(len)) {
		cert(c, EINVAL, "len 0 or unaligned");
		return;
	}
	dm = model_addr(c, dst, len, "dst");
	sm = model_addr(c, src, len, "src");
	if (es_empty(&c->ex.cert))
		wp_state(c, sm ? (int)sm->wpflags : -1, dm ? (int)dm->wpflags : -1);
	if (!dm || !sm)
		return;
	if (dm->uid == sm->uid) {
		dp = dm->pgoff + (dst - dm->addr) / PG;
		sp = sm->pgoff + (src - sm->addr) / PG;
		n = len / PG;
		if (dp < sp + n && sp < dp + n)
			cert(c, EINVAL, "ranges overlap in one region");
	}
}

/*
 * A MOVE side by id or fd: the region slot it certainly names (locked),
 * -1 if unknown, -2 if it certainly fails.
 */
static int model_side(struct call *c, uint64_t v, bool is_fd)
{
	uint64_t L;
	int s;

	if (!is_fd) {
		if (!model_id(c, v, &L))
			return es_empty(&c->ex.cert) ? -1 : -2;
		return slot_by_id(c, v);
	}
	if (v > 0x7fffffffULL) {
		cert(c, EBADF, "fd > INT_MAX");
		return -2;
	}
	if (v == (uint64_t)devnull_fd || v == CLOSED_FD ||
	    v == (uint64_t)ctxs[CX_MAIN].fd || v <= 2) {
		cert(c, EBADF, "fd not a region");
		return -2;
	}
	for (s = 0; s < NR_SLOTS; s++) {
		if (!(c->locked & (1U << s)) || !slots[s].live)
			continue;
		if (v == (uint64_t)slots[s].rofd) {
			cert(c, EBADF, "fd read-only");
			return -2;
		}
		if (v == (uint64_t)slots[s].fd)
			return s;
	}
	maybe(c, EBADF);
	return -1;
}

static void model_move(struct call *c)
{
	uint32_t mode = (uint32_t)GV(c, move, mode);
	uint64_t len = GV(c, move, len), e;
	uint64_t doff = GV(c, move, dst_offset), soff = GV(c, move, src_offset);
	int d, s;

	if (mode & ~iocs[I_MOVE].modes)
		cert(c, EINVAL, "mode invalid");
	if (rsvd_set(c))
		cert(c, EINVAL, "reserved set");
	d = model_side(c, GV(c, move, dst_region), mode & UFFDX_MOVE_DST_FD);
	s = model_side(c, GV(c, move, src_region), mode & UFFDX_MOVE_SRC_FD);
	if (!len || !aligned(len) || !aligned(doff) || !aligned(soff))
		cert(c, EINVAL, "len 0 or unaligned");
	if (__builtin_add_overflow(doff, len, &e) ||
	    __builtin_add_overflow(soff, len, &e))
		cert(c, EINVAL, "offset + len overflows");
	if (d >= 0 && (__builtin_add_overflow(doff, len, &e) || e > slots[d].len))
		cert(c, EINVAL, "dst beyond the region");
	if (s >= 0 && (__builtin_add_overflow(soff, len, &e) || e > slots[s].len))
		cert(c, EINVAL, "src beyond the region");
	if (d == -1 || s == -1)
		maybe(c, EINVAL);
	if (d >= 0 && d == s && len && doff < soff + len && soff < doff + len)
		cert(c, EINVAL, "ranges overlap in one region");
	wp_state(c, s >= 0 ? (int)slots[s].flags : -1,
		 d >= 0 ? (int)slots[d].flags : -1);
}

static void model_move_vec(struct call *c)
{
	uint64_t n = GV(c, move_vec, nr_entries);

	if (GV(c, move_vec, mode) & ~iocs[I_MOVE_VEC].modes)
		cert(c, EINVAL, "mode invalid");
	if (rsvd_set(c))
		cert(c, EINVAL, "reserved set");
	if (GV(c, move_vec, entry_size) != sizeof(struct uffdx_move_entry))
		cert(c, EINVAL, "entry_size");
	if (!n || n > UFFDX_MOVE_VEC_MAX)
		cert(c, EINVAL, "nr_entries 0 or > max");
	if (!es_empty(&c->ex.cert))
		return;
	maybe(c, ENOMEM);
	/*
	 * Entries: unreadable ones fail the call, unwritable results too;
	 * an entry that cannot move makes it EAGAIN.
	 */
	if (n != c->nsub) {
		maybe(c, EFAULT);
		maybe(c, EAGAIN);
		return;
	}
	switch (c->subplace) {
	case P_OK:
		break;
	case P_STRADDLE:
		if (c->subk < n) {
			cert(c, EFAULT, "entries run into an unmapped page");
			maybe(c, EAGAIN);
			return;
		}
		break;
	default:
		cert(c, EFAULT, "entries not readable or not writable");
		return;
	}
	/* each entry on its own: must it fail? */
	for (unsigned int i = 0; i < n; i++) {
		struct uffdx_move_entry *e = (void *)(c->w->b.shadow + i * sizeof(*e));
		eset save = c->ex.cert;
		char w[sizeof(c->ex.why)];

		memcpy(w, c->ex.why, sizeof(w));
		model_move_addr(c, e->dst, e->src, e->len);
		if (!es_empty(&c->ex.cert)) {
			c->ex.must_fail = true;
			c->subfail[i / 64] |= 1ULL << (i % 64);
			c->ex.cert = save;
			memcpy(c->ex.why, w, sizeof(w));
			snprintf(c->ex.why + strlen(c->ex.why),
				 sizeof(c->ex.why) - strlen(c->ex.why),
				 "%sentry %u cannot move", c->ex.why[0] ? ", " : "", i);
		}
	}
	maybe(c, EAGAIN);
}

/* One resolution of a RESOLVE: into c->ex.cert and c->ex.maybe. */
static void model_resolution(struct call *c, const struct uffdx_resolution *x)
{
	uint64_t L = 0, e;
	struct mapping *sm;
	bool known;
	int ioc = -1, s;

	switch (x->op) {
	case _UFFDX_COPY: ioc = I_COPY; break;
	case _UFFDX_ZERO: ioc = I_ZERO; break;
	case _UFFDX_POISON: ioc = I_POISON; break;
	case _UFFDX_WAKE: ioc = I_WAKE; break;
	case _UFFDX_MOVE: ioc = I_MOVE; break;
	case _UFFDX_WRITEPROTECT: ioc = I_WP; break;
	}
	if (ioc < 0 || !has_ioctl(c->ctx.ioctls, iocs[ioc].cmd)) {
		cert(c, EINVAL, "resolution op invalid or not negotiated");
		return;
	}
	es_or(&c->ex.maybe, &iocs[ioc].stateset);
	if (ioc != I_MOVE) {
		model_range(c, ioc, x->mode, x->region_id, x->offset, x->len,
			    x->src, false);
		return;
	}
	/* uffdx_move_into(): the pages at src into [offset, + len) */
	if (x->mode & ~(uint32_t)(UFFDX_MOVE_DONTWAKE | UFFDX_MOVE_ALLOW_SRC_HOLES))
		cert(c, EINVAL, "move mode invalid");
	if (!x->len || !aligned(x->len) || !aligned(x->src))
		cert(c, EINVAL, "len or src unaligned");
	if (!es_empty(&c->ex.cert))
		return;
	known = model_id(c, x->region_id, &L);
	if (!es_empty(&c->ex.cert))
		return;
	sm = model_addr(c, x->src, x->len, "src");
	if (!es_empty(&c->ex.cert))
		return;
	if (!aligned(x->offset) || __builtin_add_overflow(x->offset, x->len, &e))
		cert(c, EINVAL, "offset unaligned or overflows");
	else if (known && e > L)
		cert(c, EINVAL, "beyond the region");
	else if (!known || !sm)
		maybe(c, EINVAL);
	s = known ? slot_by_id(c, x->region_id) : -1;
	wp_state(c, sm ? (int)sm->wpflags : -1, s >= 0 ? (int)slots[s].flags : -1);
	if (sm && s >= 0 && slots[s].uid == sm->uid) {
		uint64_t sp = sm->pgoff + (x->src - sm->addr) / PG;
		uint64_t dp = x->offset / PG, n = x->len / PG;

		if (dp < sp + n && sp < dp + n)
			cert(c, EINVAL, "ranges overlap in one region");
	}
}

static void model_resolve(struct call *c)
{
	uint64_t nres = GV(c, resolve, nr_resolutions);
	uint64_t maxev = GV(c, resolve, max_events);
	int64_t timeout = (int64_t)GV(c, resolve, timeout_ns);
	bool nowait = GV(c, resolve, flags) & UFFDX_RESOLVE_NOWAIT;
	eset possible = { { 0 } };

	if (GV(c, resolve, flags) & ~(uint64_t)UFFDX_RESOLVE_NOWAIT)
		cert(c, EINVAL, "flags invalid");
	if (rsvd_set(c))
		cert(c, EINVAL, "reserved or pad set");
	if (GV(c, resolve, resolution_size) != sizeof(struct uffdx_resolution))
		cert(c, EINVAL, "resolution_size");
	if (nres > UFFDX_RESOLVE_MAX || maxev > UFFDX_RESOLVE_MAX)
		cert(c, EINVAL, "count > max");
	if (!es_empty(&c->ex.cert)) {
		c->ex.no_output = true;
		return;
	}
	/*
	 * A call that may reach the wait gets the timer, whatever the model
	 * decides below (the batch may end in stale bytes that do anything).
	 */
	if (maxev && !nowait && timeout)
		c->ex.may_block = true;
	if (nres) {
		switch (c->subplace) {
		case P_OK:
		case P_STRADDLE:
			break;
		case P_RO:
			/* the first result cannot be written back */
			cert(c, EFAULT, "resolutions read-only");
			return;
		default:
			cert(c, EFAULT, "resolutions not readable");
			return;
		}
	}

	/* the batch, in order, up to the first that must fail */
	for (unsigned int i = 0; i < nres; i++) {
		if (c->subplace == P_STRADDLE && i >= c->subk) {
			if (!i) {
				cert(c, EFAULT, "resolutions not readable");
				return;
			}
			es_add(&possible, EFAULT);
			c->ex.must_fail = true;
			why(c, "a resolution is not readable");
			c->ex.maybe = possible;
			return;
		}
		if (i >= c->nsub) {
			/* stale bytes of the buffer: anything, a wait too */
			es_or(&possible, &iocs[I_RESOLVE].table);
			if (c->ex.may_block)
				es_add(&possible, EINTR);
			c->ex.maybe = possible;
			return;
		}
		memset(&c->ex.maybe, 0, sizeof(eset));
		model_resolution(c, (void *)(c->w->b.shadow +
					     i * sizeof(struct uffdx_resolution)));
		es_or(&possible, &c->ex.maybe);
		if (!es_empty(&c->ex.cert)) {
			/* this one fails, or one before it did */
			es_or(&possible, &c->ex.cert);
			memset(&c->ex.cert, 0, sizeof(eset));
			c->ex.must_fail = true;
			c->ex.maybe = possible;
			return;
		}
	}
	/* then the events */
	if (maxev && c->evplace != P_OK)
		es_add(&possible, EFAULT);
	if (maxev && !nowait && timeout) {
		c->ex.may_block = true;
		es_add(&possible, EINTR);
	}
	c->ex.maybe = possible;
}

static void model_api(struct call *c)
{
	uint64_t f = GV(c, api, features);

	if (GV(c, api, api) != UFFDX_API_VERSION)
		cert(c, EINVAL, "api version");
	if (GV(c, api, flags))
		cert(c, EINVAL, "flags set");
	if (rsvd_set(c))
		cert(c, EINVAL, "reserved set");
	if (f & ~supported)
		cert(c, EINVAL, "unsupported feature");
	if (c->fdkind == FD_CTX)
		cert(c, EINVAL, "already negotiated");
	if ((f & UFFDX_FEATURE_KERNEL_FAULTS) && geteuid())
		maybe(c, EPERM);
}

static void model_create(struct call *c)
{
	uint32_t fl = (uint32_t)GV(c, region_create, flags);
	uint64_t len = GV(c, region_create, len);

	if (fl & ~(UFFDX_REGION_CREATE_WP | UFFDX_REGION_CREATE_WP_ASYNC))
		cert(c, EINVAL, "flags invalid");
	if (fl == (UFFDX_REGION_CREATE_WP | UFFDX_REGION_CREATE_WP_ASYNC))
		cert(c, EINVAL, "WP and WP_ASYNC");
	if ((fl & UFFDX_REGION_CREATE_WP) &&
	    !(c->ctx.features & UFFDX_FEATURE_WP))
		cert(c, EINVAL, "WP not negotiated");
	if ((fl & UFFDX_REGION_CREATE_WP_ASYNC) &&
	    !(c->ctx.features & UFFDX_FEATURE_WP_ASYNC))
		cert(c, EINVAL, "WP_ASYNC not negotiated");
	if (rsvd_set(c))
		cert(c, EINVAL, "reserved or pad set");
	if (!len || !aligned(len))
		cert(c, EINVAL, "len 0 or unaligned");
	if (len > (1ULL << 40))
		cert(c, EINVAL, "len > 1 TiB");
}

static void model_scan(struct call *c)
{
	uint64_t L = 0;
	bool known;

	if (GV(c, scan, flags) & ~(uint64_t)(UFFDX_SCAN_REARM | UFFDX_SCAN_BITMAP))
		cert(c, EINVAL, "flags invalid");
	if (rsvd_set(c))
		cert(c, EINVAL, "reserved set");
	if (!GV(c, scan, out_len))
		cert(c, EINVAL, "out_len 0");
	known = model_id(c, GV(c, scan, region_id), &L);
	model_range_args(c, GV(c, scan, offset), GV(c, scan, len), L, known);
	if (known && slots[slot_by_id(c, GV(c, scan, region_id))].flags !=
	    UFFDX_REGION_CREATE_WP_ASYNC)
		cert(c, EINVAL, "not a WP_ASYNC region");
	if (c->evplace != P_OK)
		maybe(c, EFAULT);
}

static void model_wp_addr(struct call *c)
{
	uint64_t a = GV(c, writeprotect_addr, addr);
	uint64_t len = GV(c, writeprotect_addr, len), e;
	struct mapping *m;

	if (!mode_ok(I_WP_ADDR, (uint32_t)GV(c, writeprotect_addr, mode)))
		cert(c, EINVAL, "mode invalid");
	if (rsvd_set(c))
		cert(c, EINVAL, "reserved set");
	if (!len || !aligned(len) || !aligned(a))
		cert(c, EINVAL, "len 0 or unaligned");
	if (__builtin_add_overflow(a, len, &e))
		cert(c, EINVAL, "addr + len overflows");
	if (!es_empty(&c->ex.cert))
		return;
	/* a read-only mapping will do; only the owner may protect */
	if ((uintptr_t)trap && a >= (uintptr_t)trap &&
	    a < (uintptr_t)trap + trap_len) {
		if (e > (uintptr_t)trap + trap_len)
			cert(c, EINVAL, "beyond its mapping");
		else
			cert(c, EPERM, "another context's region (the trap's)");
		return;
	}
	switch (addr_class(a, &m)) {
	case A_NOTREGION:
		cert(c, EINVAL, "not a region mapping");
		return;
	case A_UNKNOWN:
		maybe(c, EINVAL);
		maybe(c, EPERM);
		return;
	default:
		break;
	}
	if (e > m->addr + m->npages * PG) {
		cert(c, EINVAL, "beyond its mapping");
		return;
	}
	if (c->fdkind != FD_CTX || m->owner_cx != c->cx ||
	    m->owner_gen != c->ctx.gen) {
		cert(c, EPERM, "another context's region");
		return;
	}
	if (!m->wpflags)
		cert(c, EINVAL, "not a write-protect region");
}

/* The feature a device command needs beyond the device itself. */
static uint64_t dev_feature_of(int ioc)
{
	switch (ioc) {
	case I_DEV_EXCLUSIVE: case I_DEV_CHECK_EXCLUSIVE: case I_DEV_RELEASE:
	case I_DEV_ATOMIC:
		return UFFDX_FEATURE_DEVICE_EXCLUSIVE | UFFDX_FEATURE_HMM_EXCLUSIVE;
	case I_DEV_MIGRATE_TO_DEV: case I_DEV_MIGRATE_TO_SYS:
		return UFFDX_FEATURE_DEVICE_MIGRATE | UFFDX_FEATURE_HMM_MIGRATE;
	default:
		return 0;
	}
}

/* Of dev_feature_of()'s pair, the one for region memory, or process memory. */
static uint64_t dev_feature_for(int ioc, bool region)
{
	uint64_t f = dev_feature_of(ioc);

	return f & (region ? (UFFDX_FEATURE_DEVICE_EXCLUSIVE |
			      UFFDX_FEATURE_DEVICE_MIGRATE) :
			     (UFFDX_FEATURE_HMM_EXCLUSIVE |
			      UFFDX_FEATURE_HMM_MIGRATE));
}

static bool in_buf(uint64_t p, uint64_t e, const void *buf, uint64_t len)
{
	uint64_t b = (uint64_t)(uintptr_t)buf;

	return p >= b && e <= b + len;
}

/*
 * A device command's buffer [p, p + len): certainly usable for the
 * access (1), certainly not (0), or not known (-1).
 */
static int buf_class(struct call *c, uint64_t p, uint64_t len, bool write)
{
	struct bufs *b = &c->w->b;
	uint64_t e, d = (uint64_t)(uintptr_t)b->data, v = (uint64_t)(uintptr_t)b->ev;

	if (__builtin_add_overflow(p, len, &e) || !p || p >= (1ULL << 47))
		return 0;
	if (in_buf(p, e, b->data, DATA_LEN) || in_buf(p, e, b->ev, VEC_LEN))
		return 1;
	if (in_buf(p, p + 1, b->ro, ARG_LEN))
		return write ? 0 : in_buf(p, e, b->ro, ARG_LEN) ? 1 : -1;
	/* runs into the guard page after data or ev, or is in the trap */
	if ((p >= d && p <= d + DATA_LEN) || (p >= v && p <= v + VEC_LEN))
		return 0;
	if ((uintptr_t)trap && p >= (uintptr_t)trap && p < (uintptr_t)trap + trap_len)
		return 0;
	return -1;
}

enum { DR_REGION, DR_NOTREGION, DR_UNKNOWN };

/*
 * The pages of a device command, [a, a + n pages) (no overflow; map_lock
 * held): all region memory (DR_REGION: in one mapping, *mp, or in the
 * trap), some page certainly not region memory (ordinary memory, nothing
 * mapped, a PROT_NONE reservation, past the end of a mapping), or not
 * known.
 */
static int dev_pages(uint64_t a, uint64_t n, struct mapping **mp)
{
	uint64_t e = a + n * PG;
	struct mapping *m;

	*mp = NULL;
	if ((uintptr_t)trap && a >= (uintptr_t)trap &&
	    a < (uintptr_t)trap + trap_len)
		return e <= (uintptr_t)trap + trap_len ? DR_REGION : DR_UNKNOWN;
	switch (addr_class(a, &m)) {
	case A_REGION:
		if (e > m->addr + m->npages * PG)
			return DR_NOTREGION;	/* the reservation after it */
		*mp = m;
		return DR_REGION;
	case A_NOTREGION:
		return DR_NOTREGION;
	default:
		return DR_UNKNOWN;
	}
}

/* READ ... RELEASE on struct uffdx_dev_cmd. */
static void model_dev_cmd(struct call *c)
{
	uint64_t a = GV(c, dev_cmd, addr), p = GV(c, dev_cmd, ptr);
	uint64_t n = GV(c, dev_cmd, npages), e;
	bool mirror = c->dev_features & UFFDX_FEATURE_HMM_MIRROR;
	struct mapping *m;
	int pages, buf = 1;

	if (GV(c, dev_cmd, flags))
		cert(c, EINVAL, "flags set");
	if (rsvd_set(c))
		cert(c, EINVAL, "reserved set");
	if (!aligned(a))
		cert(c, EINVAL, "addr unaligned");
	if (!n || n > UFFDX_DEV_MAX_PAGES) {
		cert(c, EINVAL, "npages 0 or > UFFDX_DEV_MAX_PAGES");
	} else if (__builtin_add_overflow(a, n * PG, &e) || e > USER_TOP_MAX) {
		cert(c, EINVAL, "addr + npages overflows or passes the top");
	} else if (e > USER_TOP_4L) {
		cert(c, EINVAL, "addr + npages passes the top (4-level)");
		maybe(c, EFAULT);
	}
	if (!es_empty(&c->ex.cert))
		return;

	/* the buffer: pages (READ, WRITE) or a byte a page */
	switch (c->ioc) {
	case I_DEV_READ: buf = buf_class(c, p, n * PG, true); break;
	case I_DEV_WRITE: buf = buf_class(c, p, n * PG, false); break;
	case I_DEV_SNAPSHOT: buf = buf_class(c, p, n, true); break;
	case I_DEV_MIGRATE_TO_DEV:
	case I_DEV_MIGRATE_TO_SYS:
		buf = p ? buf_class(c, p, n, true) : 1;
		break;
	}
	if (buf <= 0)
		maybe(c, EFAULT);
	if (!buf) {
		c->ex.must_fail = true;
		why(c, "the buffer is not usable");
	}

	pages = dev_pages(a, n, &m);
	if (pages == DR_REGION) {
		/* region memory takes the DEVICE_* feature of the pair */
		uint64_t f = dev_feature_for(c->ioc, true);

		if (f && c->ioc != I_DEV_CHECK_EXCLUSIVE &&
		    c->ioc != I_DEV_RELEASE && !(c->dev_features & f))
			cert(c, EINVAL, "region memory, no DEVICE_* feature");
		return;
	}
	/* some page is (or may be) not region memory, or not mapped */
	maybe(c, EFAULT);
	switch (c->ioc) {
	case I_DEV_READ: case I_DEV_WRITE: case I_DEV_SNAPSHOT:
		if (mirror)
			break;
		maybe(c, EINVAL);
		/* a snapshot of nothing mapped is ERROR bytes, not a failure */
		if (pages == DR_NOTREGION && c->ioc != I_DEV_SNAPSHOT) {
			c->ex.must_fail = true;
			why(c, "a page is not region memory, no HMM_MIRROR");
		}
		break;
	case I_DEV_EXCLUSIVE: case I_DEV_MIGRATE_TO_DEV:
	case I_DEV_MIGRATE_TO_SYS: case I_DEV_CHECK_EXCLUSIVE:
		maybe(c, EINVAL);
		/* process memory: the HMM_* feature of the pair, or refused */
		if (c->dev_features & dev_feature_for(c->ioc, false))
			break;
		if (pages == DR_NOTREGION && c->ioc != I_DEV_MIGRATE_TO_SYS) {
			c->ex.must_fail = true;
			why(c, "a page is not region memory, no HMM_* feature");
		}
		break;
	case I_DEV_RELEASE:
		maybe(c, EINVAL);
		break;
	}
}

static void model_dev_atomic(struct call *c)
{
	uint32_t op = (uint32_t)GV(c, dev_atomic, op);
	uint64_t a = GV(c, dev_atomic, addr);
	struct mapping *m;
	int pages;

	if (op != UFFDX_DEV_ATOMIC_FETCH_ADD && op != UFFDX_DEV_ATOMIC_CMPXCHG)
		cert(c, EINVAL, "op unknown");
	if (a & 7)
		cert(c, EINVAL, "addr not 8-byte aligned");
	if (rsvd_set(c))
		cert(c, EINVAL, "reserved set");
	if (!es_empty(&c->ex.cert))
		return;
	pages = dev_pages(a & ~(PG - 1), 1, &m);
	if (pages == DR_REGION) {
		if (!(c->dev_features & UFFDX_FEATURE_DEVICE_EXCLUSIVE))
			cert(c, EINVAL, "region memory, no DEVICE_EXCLUSIVE");
		return;
	}
	maybe(c, EINVAL);
	maybe(c, EFAULT);
	if (pages == DR_NOTREGION &&
	    !(c->dev_features & UFFDX_FEATURE_HMM_EXCLUSIVE)) {
		c->ex.must_fail = true;
		why(c, "not region memory, no HMM_EXCLUSIVE");
	}
}

/* Does the ioctl write an output on its way to success? */
static bool writes_output(int ioc)
{
	switch (ioc) {
	case I_ARM: case I_DISARM: case I_WAKE:
	/* nothing to report but cpages, which they may leave alone */
	case I_DEV_CHECK_EXCLUSIVE: case I_DEV_RELEASE:
		return false;
	default:
		return true;
	}
}

/*
 * The expectation: first what the dispatcher decides from the number and
 * the file alone, then the struct's header, then its payload.
 */
static void model(struct call *c)
{
	struct expect *ex = &c->ex;
	const struct ioc *d = &iocs[c->ioc];
	uint32_t usize = c->usize;

	memset(ex, 0, sizeof(*ex));
	ex->exact2 = (eset){ { 0 } };
	if (c->fdkind == FD_CLOSED) {
		ex->exact = EBADF;
		why(c, "fd closed");
		return;
	}
	if (c->cmdkind == 2) {
		ex->exact = ENOTTY;
		why(c, "ioctl number not ours");
		return;
	}
	if (c->ioc == I_REGION_INFO) {
		if (c->fdkind != FD_REGION && c->fdkind != FD_REGION_RO) {
			ex->exact = ENOTTY;
			why(c, "not a region fd");
			return;
		}
	} else if (is_dev_ioc(c->ioc)) {
		uint64_t f = dev_feature_of(c->ioc);

		if (c->fdkind != FD_DEVICE) {
			ex->exact = ENOTTY;
			why(c, "not a device fd");
			return;
		}
		/* decided from the fd alone, as on a context */
		if (f && !(c->dev_features & f)) {
			ex->exact = EINVAL;
			why(c, "the device's context did not negotiate the "
			    "command's feature");
			return;
		}
	} else {
		if (c->fdkind != FD_CTX && c->fdkind != FD_FRESH) {
			ex->exact = ENOTTY;
			why(c, "not a context fd");
			return;
		}
		if (!has_ioctl(all_ioctls, d->cmd) && c->ioc != I_API) {
			/* the module does not know it, or the kernel lacks it */
			ex->exact = -1;
			es_add(&ex->exact2, ENOTTY);
			es_add(&ex->exact2, EINVAL);
			why(c, "ioctl not offered by this module/kernel");
			return;
		}
		if (c->ioc != I_API && (!c->ctx.ready ||
					!has_ioctl(c->ctx.ioctls, d->cmd))) {
			ex->exact = EINVAL;
			why(c, c->ctx.ready ? "ioctl not negotiated" :
			    "context not negotiated");
			return;
		}
	}

	/* the header: readable, and a size the module takes */
	switch (c->place) {
	case P_NULL: case P_KERNEL: case P_GUARD: case P_TRAP: case P_NONCANON:
		es_add(&ex->hdr, EFAULT);
		why(c, "struct not readable");
		return;
	case P_STRADDLE:
		if (c->k < 4) {
			es_add(&ex->hdr, EFAULT);
			why(c, "size not readable");
			return;
		}
		break;
	}
	if (usize < d->size) {
		es_add(&ex->hdr, EINVAL);
		why(c, "size too small");
		return;
	}
	if (usize > PG) {
		es_add(&ex->hdr, E2BIG);
		why(c, "size > page");
		return;
	}
	if (c->place == P_STRADDLE && c->k < usize) {
		es_add(&ex->hdr, EFAULT);
		es_add(&ex->hdr, E2BIG);	/* a non-zero tail byte may come first */
		why(c, "struct runs into an unmapped page");
		return;
	}
	for (uint32_t i = (uint32_t)d->size; i < usize; i++) {
		if (c->b[i]) {
			es_add(&ex->hdr, E2BIG);
			why(c, "non-zero tail");
			return;
		}
	}

	switch (c->ioc) {
	case I_API:
		model_api(c);
		break;
	case I_REGION_CREATE:
		model_create(c);
		break;
	case I_ARM: case I_DISARM: case I_COPY: case I_ZERO: case I_POISON:
	case I_WAKE: case I_DISCARD: case I_WP:
		model_range(c, c->ioc, (uint32_t)GV(c, range, mode),
			    GV(c, range, region_id), GV(c, range, offset),
			    GV(c, range, len), GV(c, range, src), rsvd_set(c));
		break;
	case I_MOVE:
		model_move(c);
		break;
	case I_MOVE_ADDR:
		if (GV(c, move_addr, mode) & ~iocs[I_MOVE_ADDR].modes)
			cert(c, EINVAL, "mode invalid");
		if (rsvd_set(c))
			cert(c, EINVAL, "reserved set");
		model_move_addr(c, GV(c, move_addr, dst), GV(c, move_addr, src),
				GV(c, move_addr, len));
		break;
	case I_MOVE_VEC:
		model_move_vec(c);
		break;
	case I_RESOLVE:
		model_resolve(c);
		break;
	case I_WP_ADDR:
		model_wp_addr(c);
		break;
	case I_SCAN:
		model_scan(c);
		break;
	case I_REGION_INFO:
		if (rsvd_set(c))
			cert(c, EINVAL, "reserved set");
		break;
	case I_DEVICE_CREATE:
		if (GV(c, device_create, flags))
			cert(c, EINVAL, "flags set");
		if (rsvd_set(c))
			cert(c, EINVAL, "reserved or pad set");
		break;
	case I_DEV_ATOMIC:
		model_dev_atomic(c);
		break;
	case I_DEV_STATS:
		if (GV(c, dev_stats, flags))
			cert(c, EINVAL, "flags set");
		/* the header does not say that reserved must be 0 here */
		if (rsvd_set(c))
			maybe(c, EINVAL);
		break;
	default:
		if (is_dev_cmd(c->ioc))
			model_dev_cmd(c);
		break;
	}

	/* a read-only struct: the output cannot be written */
	if (c->place == P_RO && writes_output(c->ioc)) {
		es_add(&ex->maybe, EFAULT);
		if (es_empty(&ex->cert))
			ex->must_fail = true;
	} else if (c->place == P_RO && is_dev_ioc(c->ioc)) {
		es_add(&ex->maybe, EFAULT);
	}
	if (es_empty(&ex->cert) && c->ioc == I_REGION_INFO && c->place == P_OK)
		ex->must_succeed = true;
	if (es_empty(&ex->cert) && c->ioc == I_DEV_STATS && c->place == P_OK &&
	    es_empty(&ex->maybe))
		ex->must_succeed = true;
	if (es_empty(&ex->cert) && c->ioc == I_API && c->place == P_OK &&
	    es_empty(&ex->maybe))
		ex->must_succeed = true;
	if (es_empty(&ex->cert) && c->place == P_OK && es_empty(&ex->maybe) &&
	    (c->ioc == I_DISARM || c->ioc == I_WAKE))
		ex->must_succeed = true;
}

/* ---- printing a call ----------------------------------------------------- */

static int fmt_fields(char *buf, size_t len, int ioc, const unsigned char *p)
{
	const struct ioc *d = &iocs[ioc];
	int n = 0;

	for (unsigned int i = 0; i < d->nfields && (size_t)n < len; i++) {
		const struct field *f = &d->fields[i];

		if (f->role == R_RSVD) {
			for (unsigned int j = 0; j < f->size / 8; j++)
				n += snprintf(buf + n, len - n, " %s[%u]=%#" PRIx64,
					      f->name, j, get64(p, f->off + 8 * j));
			continue;
		}
		n += snprintf(buf + n, len - n, " %s=%#" PRIx64, f->name,
			      fget(p, f));
	}
	return n;
}

static void print_call(const struct callrec *rec, const char *verdict)
{
	char buf[1400];
	int n = 0;

	n += snprintf(buf + n, sizeof(buf) - n,
		      "%s cmd %#lx on fd %d (%s), struct at %#" PRIx64 " (%s):",
		      iocs[rec->ioc].name, rec->cmd, rec->fd, rec->fdname,
		      rec->uarg, rec->place);
	n += fmt_fields(buf + n, sizeof(buf) - n, rec->ioc, rec->snap);
	printf("#   %s\n#   %s\n", verdict, buf);
	for (unsigned int i = 0; i < rec->nsub && i < 4; i++) {
		const unsigned char *e = rec->sub[i];

		if (rec->ioc == I_MOVE_VEC)
			printf("#     entry %u: dst=%#" PRIx64 " src=%#" PRIx64
			       " len=%#" PRIx64 "\n", i, get64(e, 0), get64(e, 8),
			       get64(e, 16));
		else
			printf("#     resolution %u: op=%#x mode=%#x region_id=%#"
			       PRIx64 " offset=%#" PRIx64 " len=%#" PRIx64
			       " src=%#" PRIx64 "\n", i, get32(e, 0), get32(e, 4),
			       get64(e, 8), get64(e, 16), get64(e, 24), get64(e, 32));
	}
	printf("#   seed %#" PRIx64 ", stream %" PRIu64 ", call %" PRIu64
	       "; replay: fuzz -s %#" PRIx64 " -w %" PRIu64 " -k %" PRIu64
	       " -n 1 -j 1 -c 0\n", opt_seed, rec->stream, rec->index, opt_seed,
	       rec->stream, rec->index);
}

static void record(struct call *c, struct callrec *rec)
{
	static const char *const fdnames[] = {
		"context", "fresh context", "region", "read-only region",
		"/dev/null", "closed", "device"
	};

	rec->ioc = c->ioc;
	rec->cmd = c->cmd;
	rec->fd = c->fd;
	rec->fdname = c->fdkind == FD_CTX ? cx_names[c->cx] : fdnames[c->fdkind];
	rec->place = place_names[c->place];
	rec->uarg = (uint64_t)(uintptr_t)c->uarg;
	rec->usize = c->usize;
	rec->index = c->w->n;
	rec->stream = (uint64_t)c->w->stream;
	memcpy(rec->snap, c->b, iocs[c->ioc].size < SNAP ? iocs[c->ioc].size : SNAP);
	rec->nsub = 0;
	if (c->ioc == I_MOVE_VEC || c->ioc == I_RESOLVE) {
		size_t esz = c->ioc == I_MOVE_VEC ? sizeof(struct uffdx_move_entry) :
			     sizeof(struct uffdx_resolution);
		const unsigned char *src = c->w->b.shadow;

		rec->nsub = c->nsub < 4 ? c->nsub : 4;
		for (unsigned int i = 0; i < rec->nsub; i++)
			memcpy(rec->sub[i], src + i * esz, esz);
	}
}

static void call_fail(struct call *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void call_fail(struct call *c, const char *fmt, ...)
{
	char msg[600], a[400], b[400];
	va_list ap;

	atomic_fetch_add(&failures, 1);
	if (!fail_kind(c->ioc, fmt))
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&print_lock);
	printf("# FAIL: %s\n", msg);
	if (c->ex.exact > 0)
		snprintf(a, sizeof(a), "exactly %s", ename(c->ex.exact));
	else if (c->ex.exact < 0)
		es_str(a, sizeof(a), &c->ex.exact2);
	else if (!es_empty(&c->ex.hdr))
		es_str(a, sizeof(a), &c->ex.hdr);
	else {
		eset s = c->ex.cert;

		es_or(&s, &c->ex.maybe);
		if (es_empty(&c->ex.cert))
			es_or(&s, &iocs[c->ioc].stateset);
		es_str(a, sizeof(a), &s);
	}
	es_str(b, sizeof(b), &iocs[c->ioc].table);
	printf("#   expected: %s%s%s [%s]; man page %s: %s\n", a,
	       c->ex.must_fail ? ", must fail" : "",
	       c->ex.must_succeed ? ", must succeed" : "", c->ex.why,
	       iocs[c->ioc].page ? iocs[c->ioc].page : "(none)", b);
	{
		struct callrec rec;

		record(c, &rec);
		snprintf(a, sizeof(a), "returned %d%s%s", c->ret,
			 c->ret < 0 ? " " : "", c->ret < 0 ? ename(c->err) : "");
		print_call(&rec, a);
	}
	fflush(stdout);
	pthread_mutex_unlock(&print_lock);
}

/* ---- checking a call ------------------------------------------------------ */

static void check_errno(struct call *c)
{
	struct expect *ex = &c->ex;
	const struct ioc *d = &iocs[c->ioc];
	bool failed = c->ret < 0;
	int e = c->err;

	if (ex->exact > 0) {
		if (!failed || e != ex->exact)
			call_fail(c, "%s: want %s", d->name, ename(ex->exact));
		return;
	}
	if (ex->exact < 0) {
		if (!failed || !es_has(&ex->exact2, e))
			call_fail(c, "%s: not an offered ioctl", d->name);
		return;
	}
	if (failed && d->page && !es_has(&d->table, e)) {
		call_fail(c, "%s: %s is not in %s's ERRORS", d->name, ename(e),
			  d->page);
		return;
	}
	if (!es_empty(&ex->hdr)) {
		if (!failed || !es_has(&ex->hdr, e))
			call_fail(c, "%s: the struct must be rejected", d->name);
		return;
	}
	if (!es_empty(&ex->cert)) {
		if (!failed || !(es_has(&ex->cert, e) || es_has(&ex->maybe, e)))
			call_fail(c, "%s: invalid arguments not rejected as documented",
				  d->name);
		return;
	}
	if (ex->must_succeed && failed) {
		call_fail(c, "%s: valid call failed", d->name);
		return;
	}
	if (ex->must_fail && !failed) {
		call_fail(c, "%s: call must fail", d->name);
		return;
	}
	if (failed && !es_has(&ex->maybe, e) && !es_has(&d->stateset, e))
		call_fail(c, "%s: %s with valid arguments", d->name, ename(e));
}

/*
 * The progress report of a range or move call, read back from our buffer:
 * @reports says whether the ioctl has one; @enoent where an ENOENT comes
 * from: 0 a failed lookup (nothing written), 1 the source hole of a move
 * that ran (-ENOENT written), 2 either.
 */
static void check_result(struct call *c, const char *field, uint64_t len,
			 bool reports, int enoent)
{
	const struct field *f = field_of(c->ioc, field);
	int64_t before = (int64_t)fget(c->b, f), after;
	bool rejected;
	int e = c->err;

	if (c->place != P_OK || !c->out)
		return;
	after = (int64_t)fget(c->out, f);
	if (c->ret && e == EINVAL && c->ex.einval_state &&
	    (after == before || after == -EINVAL))
		return;
	rejected = c->ex.exact || !es_empty(&c->ex.hdr) || !reports ||
		   (c->ret && (e == EINVAL || e == EBADF || e == E2BIG ||
			       e == ENOTTY || e == EPERM ||
			       (e == ENOENT && enoent == 0)));
	if (rejected) {
		if (after != before)
			call_fail(c, "%s: result written (%" PRId64 ") by a call "
				  "that did not run", iocs[c->ioc].name, after);
		return;
	}
	if (c->ret == 0) {
		if ((uint64_t)after != len)
			call_fail(c, "%s: success, but result %" PRId64 " != len",
				  iocs[c->ioc].name, after);
		return;
	}
	if (e == EAGAIN) {
		if (after <= 0 || (uint64_t)after >= len || !aligned((uint64_t)after))
			call_fail(c, "%s: EAGAIN, but result %" PRId64,
				  iocs[c->ioc].name, after);
		return;
	}
	if (e == ENOENT && enoent == 2 && after == before)
		return;
	if (after != -e)
		call_fail(c, "%s: %s, but result %" PRId64, iocs[c->ioc].name,
			  ename(e), after);
}

static void check_outputs(struct call *c)
{
	unsigned char *o = c->out;

	if (c->ex.exact || !es_empty(&c->ex.hdr) || c->ex.no_output) {
		/* nothing ran: a range call's result is untouched */
		if ((c->ioc >= I_ARM && c->ioc <= I_MOVE_ADDR) || c->ioc == I_WP ||
		    c->ioc == I_WP_ADDR)
			check_result(c, "result", 0, false, 0);
		return;
	}

	switch (c->ioc) {
	case I_API:
		if (c->ret || !o || c->place != P_OK)
			return;
		if (get64(o, offsetof(struct uffdx_api, features)) != supported)
			call_fail(c, "API: features %#" PRIx64 " != %#" PRIx64,
				  get64(o, offsetof(struct uffdx_api, features)), supported);
		if (get64(o, offsetof(struct uffdx_api, ioctls)) & ~all_ioctls)
			call_fail(c, "API: ioctls %#" PRIx64 " beyond %#" PRIx64,
				  get64(o, offsetof(struct uffdx_api, ioctls)), all_ioctls);
		if (get32(o, offsetof(struct uffdx_api, module_version)) != module_version)
			call_fail(c, "API: module_version changed");
		return;
	case I_REGION_CREATE: {
		uint64_t id;
		int fd;

		if (c->ret || !o)
			return;
		id = get64(o, offsetof(struct uffdx_region_create, region_id));
		fd = (int)get32(o, offsetof(struct uffdx_region_create, fd));
		if (fd < 0 || !id || id > U32MAX)
			call_fail(c, "REGION_CREATE: fd %d, id %#" PRIx64, fd, id);
		if (fd >= 0) {
			struct uffdx_region_info info = { .size = sizeof(info) };

			if (chance(c->r, 10) &&
			    (xioctl(fd, UFFDX_IOC_REGION_INFO, &info) ||
			     info.region_id != id || info.len != GV(c, region_create, len)))
				call_fail(c, "REGION_CREATE: REGION_INFO of the new fd "
					  "says id %#llx len %#llx",
					  (unsigned long long)info.region_id,
					  (unsigned long long)info.len);
			close(fd);
		}
		return;
	}
	case I_ARM: case I_DISARM: case I_WAKE:
		check_result(c, "result", GV(c, range, len), false, 0);
		return;
	case I_COPY: case I_ZERO: case I_POISON: case I_DISCARD: case I_WP:
		check_result(c, "result", GV(c, range, len), true, 0);
		return;
	case I_MOVE:
		check_result(c, "result", GV(c, move, len), true, 2);
		return;
	case I_MOVE_ADDR:
		check_result(c, "result", GV(c, move_addr, len), true, 1);
		return;
	case I_WP_ADDR:
		check_result(c, "result", GV(c, writeprotect_addr, len), true, 0);
		return;
	case I_SCAN: {
		uint64_t len = GV(c, scan, len), out_len = GV(c, scan, out_len);
		uint64_t scanned, nr_out, written;
		bool bitmap = GV(c, scan, flags) & UFFDX_SCAN_BITMAP;

		if (!o || c->place != P_OK)
			return;
		scanned = get64(o, offsetof(struct uffdx_scan, scanned));
		nr_out = get64(o, offsetof(struct uffdx_scan, nr_out));
		written = get64(o, offsetof(struct uffdx_scan, written));
		if (c->ret && c->err != EFAULT && c->err != EINTR) {
			/* rejected: nothing written back */
			if (scanned != GV(c, scan, scanned) ||
			    nr_out != GV(c, scan, nr_out) ||
			    written != GV(c, scan, written))
				call_fail(c, "SCAN: outputs written by a call that "
					  "did not run");
			return;
		}
		if (scanned > len || !aligned(scanned) || written > scanned ||
		    !aligned(written) || nr_out > out_len ||
		    (!c->ret && !bitmap && scanned < len && nr_out != out_len) ||
		    (bitmap && scanned / PG > out_len * 8))
			call_fail(c, "SCAN: scanned %#" PRIx64 " nr_out %" PRIu64
				  " written %#" PRIx64, scanned, nr_out, written);
		return;
	}
	case I_MOVE_VEC: {
		uint64_t n = GV(c, move_vec, nr_entries), moved = 0, full = 1;
		const struct uffdx_move_entry *e = (void *)c->w->b.vec;
		const struct uffdx_move_entry *in = (void *)c->w->b.shadow;

		if (c->place != P_OK || c->subplace != P_OK || n != c->nsub ||
		    (c->ret && c->err != EAGAIN))
			return;
		for (uint64_t i = 0; i < n; i++) {
			int64_t r = e[i].result;

			if (r > 0) {
				moved += (uint64_t)r;
				if ((uint64_t)r > in[i].len || !aligned((uint64_t)r))
					call_fail(c, "MOVE_VEC: entry %" PRIu64
						  " result %" PRId64, i, r);
			}
			if ((uint64_t)r != in[i].len)
				full = 0;
			if (r < 0 && !es_has(&iocs[I_MOVE_ADDR].table, (int)-r))
				call_fail(c, "MOVE_VEC: entry %" PRIu64 " result %s is "
					  "not in MOVE_ADDR's ERRORS", i, ename((int)-r));
			if (r == 0 && in[i].len)
				call_fail(c, "MOVE_VEC: entry %" PRIu64 " result 0", i);
			if (r >= 0 && (c->subfail[i / 64] >> (i % 64) & 1))
				call_fail(c, "MOVE_VEC: entry %" PRIu64 " has invalid "
					  "arguments, result %" PRId64, i, r);
		}
		if (moved != get64(c->out, offsetof(struct uffdx_move_vec, moved)))
			call_fail(c, "MOVE_VEC: moved %" PRIu64 " != sum of results %"
				  PRIu64, get64(c->out, offsetof(struct uffdx_move_vec,
								 moved)), moved);
		if (!c->ret && !full)
			call_fail(c, "MOVE_VEC: success with an entry short");
		if (c->ret && full)
			call_fail(c, "MOVE_VEC: EAGAIN with every entry done");
		return;
	}
	case I_RESOLVE: {
		uint32_t done, nev;
		uint64_t nres = GV(c, resolve, nr_resolutions);

		if (!o || c->place != P_OK)
			return;
		done = get32(o, offsetof(struct uffdx_resolve, nr_done));
		nev = get32(o, offsetof(struct uffdx_resolve, nr_events));
		if (done > nres || nev > GV(c, resolve, max_events) ||
		    (!c->ret && done != nres))
			call_fail(c, "RESOLVE: nr_done %u nr_events %u", done, nev);
		if (c->subplace == P_OK) {
			const struct uffdx_resolution *x = (void *)c->w->b.vec;

			for (uint32_t i = 0; i < done && i < c->nsub; i++)
				if ((uint64_t)x[i].result != x[i].len)
					call_fail(c, "RESOLVE: resolution %u done, "
						  "result %lld", i,
						  (long long)x[i].result);
		}
		return;
	}
	case I_REGION_INFO: {
		const struct uffdx_region_info *in = (void *)o;
		struct regslot *sl = &slots[c->fdslot];

		if (c->ret || !o || c->place != P_OK)
			return;
		if (in->len != sl->len || in->region_id != sl->id ||
		    in->resident > in->len || !aligned(in->resident) ||
		    (in->flags & ~(uint32_t)(UFFDX_REGION_OWNER_GONE |
					     UFFDX_REGION_WP | UFFDX_REGION_WP_ASYNC)))
			call_fail(c, "REGION_INFO: flags %#x len %#llx id %#llx "
				  "resident %#llx; region len %#" PRIx64 " id %#" PRIx64,
				  in->flags, (unsigned long long)in->len,
				  (unsigned long long)in->region_id,
				  (unsigned long long)in->resident, sl->len, sl->id);
		if (sl->ctx == CX_MAIN && (in->flags & UFFDX_REGION_OWNER_GONE))
			call_fail(c, "REGION_INFO: OWNER_GONE, owner alive");
		if (!!(in->flags & UFFDX_REGION_WP) !=
		    !!(sl->flags & UFFDX_REGION_CREATE_WP) ||
		    !!(in->flags & UFFDX_REGION_WP_ASYNC) !=
		    !!(sl->flags & UFFDX_REGION_CREATE_WP_ASYNC))
			call_fail(c, "REGION_INFO: WP flags %#x, created with %#x",
				  in->flags, sl->flags);
		return;
	}
	case I_DEVICE_CREATE: {
		struct uffdx_dev_stats st = { .size = sizeof(st) };
		int fd, ret;

		if (c->ret || !o)
			return;
		fd = (int)get32(o, offsetof(struct uffdx_device_create, fd));
		if (fd < 0) {
			call_fail(c, "DEVICE_CREATE: fd %d", fd);
			return;
		}
		/* a new device has done nothing yet */
		if (chance(c->r, 10)) {
			ret = xioctl(fd, UFFDX_IOC_DEV_STATS, &st);
			if (ret || st.faults || st.pool_used || st.migrated_to_dev ||
			    st.revocations)
				call_fail(c, "DEVICE_CREATE: STATS of the new device: "
					  "%s, faults %llu pool_used %llu", strerror(-ret),
					  (unsigned long long)st.faults,
					  (unsigned long long)st.pool_used);
		}
		close(fd);
		return;
	}
	case I_DEV_STATS: {
		const struct uffdx_dev_stats *st = (void *)o;

		if (c->ret || !o || c->place != P_OK)
			return;
		if (st->pool_used > st->pool_pages)
			call_fail(c, "DEV_STATS: pool_used %llu > pool_pages %llu",
				  (unsigned long long)st->pool_used,
				  (unsigned long long)st->pool_pages);
		return;
	}
	default:
		break;
	}
	if (is_dev_cmd(c->ioc) && !c->ret && o && c->place == P_OK) {
		uint64_t n = GV(c, dev_cmd, npages), p = GV(c, dev_cmd, ptr);
		uint64_t cp = get64(o, offsetof(struct uffdx_dev_cmd, cpages));
		const unsigned char *st = c->w->b.ev;

		if (cp > n || ((c->ioc == I_DEV_READ || c->ioc == I_DEV_WRITE) &&
			       cp != n))
			call_fail(c, "%s: success, cpages %" PRIu64 " of %" PRIu64,
				  iocs[c->ioc].name, cp, n);
		/* the migrations' status: a byte a page, 1 or 0 */
		if ((c->ioc == I_DEV_MIGRATE_TO_DEV ||
		     c->ioc == I_DEV_MIGRATE_TO_SYS) &&
		    p == (uint64_t)(uintptr_t)st && n <= VEC_LEN) {
			for (uint64_t i = 0; i < n; i++) {
				if (st[i] > 1) {
					call_fail(c, "%s: status byte %" PRIu64 " is %u",
						  iocs[c->ioc].name, i, st[i]);
					break;
				}
			}
		}
	}
}

/* ---- one call ------------------------------------------------------------ */

static int pick_ioc(struct rng *r)
{
	static int total;
	int x;

	if (!total)
		for (int i = 0; i < NR_IOC; i++)
			total += iocs[i].weight;
	x = (int)rn(r, (uint64_t)total);
	for (int i = 0; i < NR_IOC; i++) {
		x -= iocs[i].weight;
		if (x < 0)
			return i;
	}
	return 0;
}

/* A command number: the ioctl's, or one like it that is not ours. */
static void pick_cmd(struct call *c)
{
	unsigned long cmd = iocs[c->ioc].cmd;
	unsigned int x = (unsigned int)rn(c->r, 100), nr, type;

	c->cmdkind = 0;
	if (x < 88) {
		c->cmd = cmd;
		return;
	}
	if (x < 93) {
		/* other size bits: accepted, the struct's own size counts */
		c->cmd = _IOC(_IOC_READ | _IOC_WRITE, UFFDX_IOC_MAGIC,
			      _IOC_NR(cmd), rn(c->r, 1U << _IOC_SIZEBITS));
		c->cmdkind = 1;
		return;
	}
	c->cmdkind = 2;
	switch (x % 4) {
	case 0:
		/* wrong direction */
		c->cmd = _IOC((unsigned int)rn(c->r, 3), UFFDX_IOC_MAGIC,
			      _IOC_NR(cmd), _IOC_SIZE(cmd));
		return;
	case 1:
		/* a number no ioctl has */
		do {
			nr = (unsigned int)rn(c->r, 256);
		} while (nr <= _UFFDX_DEVICE_CREATE || nr == _UFFDX_REGION_INFO ||
			 (nr >= _UFFDX_DEV_READ && nr <= _UFFDX_DEV_STATS));
		c->cmd = _IOC(_IOC_READ | _IOC_WRITE, UFFDX_IOC_MAGIC, nr,
			      _IOC_SIZE(cmd));
		return;
	case 2:
		/* the other kind of fd's number: a context's on a region, ... */
		if (c->fdkind == FD_DEVICE) {
			/* a context's or a region's on a device */
			c->cmd = iocs[rn(c->r, I_REGION_INFO + 1)].cmd;
			return;
		}
		if (c->ioc == I_REGION_INFO && (c->fdkind == FD_REGION ||
						c->fdkind == FD_REGION_RO)) {
			c->cmd = iocs[rn(c->r, I_REGION_INFO)].cmd;
			return;
		}
		if (c->ioc != I_REGION_INFO && (c->fdkind == FD_CTX ||
						c->fdkind == FD_FRESH)) {
			c->cmd = UFFDX_IOC_REGION_INFO;
			return;
		}
		c->cmd = _IOC(_IOC_READ | _IOC_WRITE, UFFDX_IOC_MAGIC, 0xff,
			      _IOC_SIZE(cmd));
		return;
	default:
		/* another type byte; not one the VFS handles for any file */
		do {
			type = (unsigned int)rn(c->r, 256);
		} while (type == UFFDX_IOC_MAGIC || type == 0 || type == 'T' ||
			 type == 'f' || type == 'X' || type == 0x94 || type == 0x15);
		c->cmd = _IOC((unsigned int)rn(c->r, 4), type,
			      (unsigned int)rn(c->r, 256), _IOC_SIZE(cmd));
		return;
	}
}

/* Device slot @s as the call's fd, if it has a device (read-locked). */
static bool pick_dev(struct call *c, int s)
{
	if (c->dev_locked || pthread_rwlock_tryrdlock(&devs[s].lock))
		return false;
	if (devs[s].fd < 0) {
		pthread_rwlock_unlock(&devs[s].lock);
		return false;
	}
	c->dev_locked = true;
	c->devslot = s;
	c->fdkind = FD_DEVICE;
	c->fd = devs[s].fd;
	c->dev_features = devs[s].features;
	return true;
}

/* The file descriptor: mostly the right kind, sometimes not. */
static void pick_fd(struct call *c)
{
	struct rng *r = c->r;
	unsigned int x = (unsigned int)rn(r, 100);
	int s;

	c->cx = CX_MAIN;
	c->fdslot = -1;
	c->fdkind = FD_CTX;
	if (c->ioc == I_REGION_INFO) {
		s = (int)rn(r, NR_SLOTS);
		c->fdslot = s;
		if (x < 80 && lock_slot(c, s) && slots[s].live) {
			c->fdkind = FD_REGION;
			c->fd = slots[s].fd;
			if (chance(r, 30) && slots[s].rofd >= 0) {
				c->fdkind = FD_REGION_RO;
				c->fd = slots[s].rofd;
			}
			return;
		}
		x = 90 + x % 10;
	} else if (is_dev_ioc(c->ioc)) {
		/* no device (none offered, or being re-made): a wrong kind */
		if (x < 85 && pick_dev(c, (int)rn(r, NR_DEV)))
			return;
		x = 90 + x % 10;
	} else if (c->ioc == I_API && x < 75) {
		c->fdkind = FD_FRESH;
		/* a failed negotiation leaves the context new: reuse it */
		if (c->w->fresh < 0)
			c->w->fresh = ctx_new(0, false, NULL);
		c->fd = c->w->fresh;
		c->ctx.ready = false;
		if (c->fd < 0) {
			c->fdkind = FD_CLOSED;
			c->fd = CLOSED_FD;
		}
		return;
	} else if (x < 75) {
		c->ctx = ctxs[CX_MAIN];
		c->fd = c->ctx.fd;
		return;
	} else if (x < 90) {
		c->cx = (int)(CX_SEC1 + rn(r, NR_CTX - CX_SEC1));
		/* a valid API would negotiate the un-negotiated one */
		if (c->ioc == I_API && c->cx == CX_UNNEG)
			c->cx = CX_MIN;
		if (pthread_rwlock_tryrdlock(&ctxs[c->cx].lock)) {
			/* being re-created: the main context instead */
			c->cx = CX_MAIN;
			c->ctx = ctxs[CX_MAIN];
			c->fd = c->ctx.fd;
			return;
		}
		c->ctx_locked = true;
		c->ctx = ctxs[c->cx];
		c->fd = c->ctx.fd;
		if (c->fd < 0) {
			c->fdkind = FD_CLOSED;
			c->fd = CLOSED_FD;
		}
		return;
	}
	/* the wrong kind */
	switch (x % 10) {
	case 0: case 1: case 2:
		s = (int)rn(r, NR_SLOTS);
		if (lock_slot(c, s) && slots[s].live) {
			c->fdkind = x % 10 == 2 && slots[s].rofd >= 0 ?
				    FD_REGION_RO : FD_REGION;
			c->fd = c->fdkind == FD_REGION ? slots[s].fd : slots[s].rofd;
			c->fdslot = s;
			if (c->ioc != I_REGION_INFO)
				return;
		}
		/* fall through */
	case 3: case 4:
		/* a device's for a context's or a region's ioctl */
		if (!is_dev_ioc(c->ioc) && (c->ioc != I_REGION_INFO || x % 10 == 4) &&
		    pick_dev(c, (int)rn(r, NR_DEV)))
			return;
		if (c->ioc == I_REGION_INFO || is_dev_ioc(c->ioc)) {
			c->fdkind = FD_CTX;
			c->ctx = ctxs[CX_MAIN];
			c->fd = c->ctx.fd;
			return;
		}
		/* fall through */
	case 5: case 6:
		c->fdkind = FD_DEVNULL;
		c->fd = devnull_fd;
		return;
	default:
		c->fdkind = FD_CLOSED;
		c->fd = CLOSED_FD;
		return;
	}
}

/* The part of our events buffer a RESOLVE may write. */
static unsigned char *events_area(struct call *c, size_t *len)
{
	size_t n = GV(c, resolve, max_events);

	if (c->evplace == P_STRADDLE) {
		*len = c->evk * sizeof(struct uffdx_event);
		return c->w->b.ev + VEC_LEN - *len;
	}
	if (c->evplace != P_OK)
		return NULL;
	if (n > VEC_LEN / sizeof(struct uffdx_event))
		n = VEC_LEN / sizeof(struct uffdx_event);
	*len = n * sizeof(struct uffdx_event);
	return c->w->b.ev;
}

static void events_clear(struct call *c)
{
	size_t len;
	unsigned char *p = events_area(c, &len);

	if (p)
		memset(p, 0, len);
}

/*
 * Events a RESOLVE took must be served, or their faulters sleep for ever:
 * serve every event in the buffer, whatever the call returned (one whose
 * struct could not be written back has still taken them).
 */
static void events_serve(struct call *c)
{
	size_t len;
	const struct uffdx_event *ev = (void *)events_area(c, &len);

	for (size_t i = 0; ev && i < len / sizeof(*ev); i++)
		if (ev[i].type)
			serve_event(c->fd, c->ctx.ioctls, &ev[i]);
}

/* Put the struct where c->place says, and point uarg at it. */
static void place(struct call *c)
{
	struct bufs *b = &c->w->b;
	size_t len = c->usize > iocs[c->ioc].size ? c->usize : iocs[c->ioc].size;

	if (len > sizeof(c->b))
		len = sizeof(c->b);
	c->out = NULL;
	switch (c->place) {
	case P_OK:
		memcpy(b->arg, c->b, len);
		c->uarg = b->arg;
		c->out = b->arg;
		break;
	case P_RO:
		/* the second page of the view holds MOVE_VEC / RESOLVE arrays */
		memcpy(b->ro_rw, c->b, len > PG ? PG : len);
		c->uarg = b->ro;
		break;
	case P_STRADDLE:
		c->k = (unsigned int)rn(c->r, 8) < 3 ? (unsigned int)rn(c->r, 4) :
		       (unsigned int)rn(c->r, len + 1);
		memcpy(b->arg + ARG_LEN - c->k, c->b, c->k);
		c->uarg = b->arg + ARG_LEN - c->k;
		c->out = b->arg + ARG_LEN - c->k;
		break;
	case P_NULL: c->uarg = NULL; break;
	case P_KERNEL: c->uarg = (void *)(uintptr_t)KERNEL_ADDR; break;
	case P_GUARD: c->uarg = b->arg + ARG_LEN; break;
	case P_TRAP: c->uarg = trap; break;
	default: c->uarg = (void *)(uintptr_t)NONCANON_ADDR; break;
	}
}

/*
 * Interrupt a RESOLVE that may wait without a bound: SIGUSR1 (no
 * SA_RESTART) every @ns until disarmed, so that one that fires before the
 * call sleeps (a slow guest) is followed by one that ends the wait.
 */
static void arm_timer(struct worker *w, long ns)
{
	struct itimerspec its = {
		.it_value = { ns / 1000000000L, ns % 1000000000L },
		.it_interval = { ns / 1000000000L, ns % 1000000000L },
	};

	timer_settime(w->timer, 0, &its, NULL);
}

static void one_call(struct worker *w)
{
	struct call *c;
	const struct ioc *d;
	unsigned int nperturb;
	uint64_t t0;
	static __thread struct call cbuf;

	c = &cbuf;
	/* b is all zero between calls: only what a call used is cleared */
	memset(c, 0, offsetof(struct call, b));
	c->w = w;
	c->r = &w->rng;
	c->slot[0] = c->slot[1] = -1;
	call_seed(c->r, w->base, w->n, 1);
	c->ioc = pick_ioc(c->r);
	d = &iocs[c->ioc];
	pick_fd(c);
	if (c->fdkind != FD_CTX && c->fdkind != FD_FRESH)
		c->ctx = ctxs[CX_MAIN];	/* the model never asks it */

	put32(c->b, 0, (uint32_t)d->size);
	call_seed(c->r, w->base, w->n, 2);
	switch (c->ioc) {
	case I_API: gen_api(c); break;
	case I_REGION_CREATE: gen_create(c); break;
	case I_MOVE: gen_move(c); break;
	case I_MOVE_ADDR: gen_move_addr(c); break;
	case I_MOVE_VEC: gen_move_vec(c); break;
	case I_RESOLVE: gen_resolve(c); break;
	case I_WP_ADDR: gen_wp_addr(c); break;
	case I_SCAN: gen_scan(c); break;
	case I_REGION_INFO: gen_info(c); break;
	case I_DEVICE_CREATE: case I_DEV_STATS: break;
	case I_DEV_ATOMIC: gen_dev_atomic(c); break;
	default:
		if (is_dev_cmd(c->ioc))
			gen_dev_cmd(c);
		else
			gen_range(c);
		break;
	}
	/* half the calls valid (as far as the baseline goes), half not */
	call_seed(c->r, w->base, w->n, 3);
	nperturb = chance(c->r, 50) ? 0 : chance(c->r, 70) ? 1 :
		   2 + (unsigned int)rn(c->r, 2);
	for (unsigned int i = 0; i < nperturb; i++)
		perturb(c, &d->fields[rn(c->r, d->nfields)]);
	c->usize = get32(c->b, 0);
	if (c->usize > c->blen)
		c->blen = c->usize;
	if (d->size > c->blen)
		c->blen = d->size;
	if (c->blen > sizeof(c->b))
		c->blen = sizeof(c->b);
	call_seed(c->r, w->base, w->n, 4);
	pick_cmd(c);
	/* no struct in a region mapping: see place(); RO only where it fits */
	call_seed(c->r, w->base, w->n, 5);
	c->place = gen_place(c->r, true);
	place(c);
	model(c);

	if (opt_verbose) {
		struct callrec rec;

		record(c, &rec);
		pthread_mutex_lock(&print_lock);
		print_call(&rec, "call");
		pthread_mutex_unlock(&print_lock);
	}
	record(c, &w->ts->rec);
	if (c->ioc == I_RESOLVE)
		events_clear(c);
	if (c->ex.may_block) {
		int64_t t = (int64_t)GV(c, resolve, timeout_ns);

		if (t < 0 || t > 50000000)
			arm_timer(w, 5000000);
	}
	t0 = now_ns();
	atomic_store(&w->ts->busy, B_IOCTL);
	atomic_store(&w->ts->since, t0);
	c->ret = ioctl(c->fd, c->cmd, c->uarg);
	c->err = c->ret < 0 ? errno : 0;
	w->stats[c->ioc][2] += now_ns() - t0;
	busy_clear(w->ts);
	if (c->ex.may_block)
		arm_timer(w, 0);

	w->stats[c->ioc][0]++;
	if (c->ret < 0 && c->err < 134)
		w->errs[c->ioc][c->err]++;
	else if (!c->ret)
		w->stats[c->ioc][1]++;
	if (c->place == P_RO && !c->out)
		c->out = w->b.ro_rw;
	check_errno(c);
	check_outputs(c);
	if (c->ioc == I_RESOLVE)
		events_serve(c);
	if (c->fdkind == FD_FRESH && c->fd >= 0 && c->ret == 0) {
		close(c->fd);
		w->fresh = -1;
	}
	unlock_all(c);
	memset(c->b, 0, c->blen);
}

static void *worker_main(void *p)
{
	struct worker *w = p;
	struct sigevent sev = { .sigev_notify = SIGEV_THREAD_ID,
				.sigev_signo = SIGUSR1 };

	w->ts = tstate_new("worker");
	sev._sigev_un._tid = w->ts->tid;
	if (timer_create(CLOCK_MONOTONIC, &sev, &w->timer))
		fail_msg("timer_create: %s\n", strerror(errno));
	while (!atomic_load(&stop)) {
		if (atomic_fetch_add(&calls_claimed, 1) >= opt_calls)
			break;
		one_call(w);
		w->n++;
		atomic_fetch_add(&calls_done, 1);
	}
	timer_delete(w->timer);
	return NULL;
}

/* ---- serving faults ------------------------------------------------------- */

/*
 * Resolve one fault event: unprotect (a WP fault) or fill the page with
 * zeroes, then wake it in any case (a racing fill wins with EEXIST).
 */
static void serve_event(int ctxfd, uint64_t ioctls, const struct uffdx_event *ev)
{
	if (ev->type != UFFDX_EVENT_PAGEFAULT)
		return;
	if ((ev->flags & UFFDX_PF_WP) && has_ioctl(ioctls, UFFDX_IOC_WRITEPROTECT))
		range_raw(ctxfd, UFFDX_IOC_WRITEPROTECT, ev->region_id,
			  ev->offset, PG, 0);
	else if (has_ioctl(ioctls, UFFDX_IOC_ZERO))
		range_raw(ctxfd, UFFDX_IOC_ZERO, ev->region_id, ev->offset, PG, 0);
	if (has_ioctl(ioctls, UFFDX_IOC_WAKE))
		range_raw(ctxfd, UFFDX_IOC_WAKE, ev->region_id, ev->offset, PG, 0);
}

static void *handler_main(void *p)
{
	struct uffdx_event ev[32];
	struct tstate *ts = tstate_new("handler");
	unsigned long served = 0;

	(void)p;
	while (!atomic_load(&stop_handler)) {
		for (int i = 0; i < NR_CTX; i++) {
			struct uffdx_resolve rs = {
				.size = sizeof(rs),
				.flags = i == CX_MAIN ? 0 : UFFDX_RESOLVE_NOWAIT,
				.resolution_size = sizeof(struct uffdx_resolution),
				.events = (uint64_t)(uintptr_t)ev,
				.max_events = ARRAY_SIZE(ev),
				.timeout_ns = 2000000,
			};
			struct ctxslot *cs = &ctxs[i];
			int ret;

			if (i == CX_UNNEG || i == CX_MIN)
				continue;
			/* main is never re-created; a busy other one waits a round */
			if (i != CX_MAIN && pthread_rwlock_tryrdlock(&cs->lock))
				continue;
			if (cs->fd >= 0 && cs->ready &&
			    has_ioctl(cs->ioctls, UFFDX_IOC_RESOLVE)) {
				snprintf(ts->what, sizeof(ts->what),
					 "handler: RESOLVE on %s", cx_names[i]);
				busy_set(ts, B_CHAOS);
				ret = xioctl(cs->fd, UFFDX_IOC_RESOLVE, &rs);
				busy_clear(ts);
				if (ret && ret != -EINTR)
					fail_msg("handler: RESOLVE on %s: %s\n",
						 cx_names[i], strerror(-ret));
				for (uint32_t k = 0; !ret && k < rs.nr_events; k++)
					serve_event(cs->fd, cs->ioctls, &ev[k]);
				served += ret ? 0 : rs.nr_events;
			}
			if (i != CX_MAIN)
				pthread_rwlock_unlock(&cs->lock);
		}
	}
	ksft_print_msg("handler: served %lu events\n", served);
	return NULL;
}

/* ---- chaos: mappings, forks, touches, close and re-create ------------------ */

static void map_drop(struct mapping *m, uintptr_t addr, uint64_t npages)
{
	void *p;

	munmap((void *)addr, npages * PG);
	p = mmap((void *)addr, npages * PG, PROT_NONE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE,
		 -1, 0);
	if (p != (void *)addr) {
		if (p != MAP_FAILED)
			munmap(p, npages * PG);
		m->lost = true;
	}
}

/* Unmap the mappings of slot @s (slot and map_lock write-locked). */
static void maps_of_slot_drop(int s)
{
	for (int i = 0; i < NR_WIN; i++) {
		struct mapping *m = &maps[i];

		if (m->used && m->slot == s) {
			m->used = false;
			map_drop(m, m->addr, m->npages);
		}
	}
}

static void chaos_mmap(struct rng *r)
{
	int s = (int)rn(r, NR_SLOTS), w = (int)rn(r, NR_WIN);
	struct regslot *sl = &slots[s];
	struct mapping *m = &maps[w];
	uint64_t npages, pgoff, rp;
	int prot = PROT_READ, fd;
	void *p;

	pthread_rwlock_rdlock(&sl->lock);
	pthread_rwlock_wrlock(&map_lock);
	if (!sl->live || m->used || m->lost)
		goto out;
	rp = sl->len / PG;
	npages = 1 + rn(r, rp < MAX_MAP_PAGES ? rp : MAX_MAP_PAGES);
	pgoff = rn(r, rp - npages + 1);
	fd = sl->fd;
	if (sl->rofd >= 0 && chance(r, 25))
		fd = sl->rofd;
	else if (chance(r, 85))
		prot |= PROT_WRITE;
	if (chance(r, 5)) {
		/* a private mapping is refused */
		p = mmap((void *)(arena + w * WIN_SIZE), npages * PG, prot,
			 MAP_PRIVATE | MAP_FIXED_NOREPLACE, fd, (off_t)(pgoff * PG));
		if (p != MAP_FAILED || (errno != EINVAL && errno != EEXIST))
			fail_msg("mmap MAP_PRIVATE of a region: %s\n",
				 p == MAP_FAILED ? strerror(errno) : "succeeded");
		if (p != MAP_FAILED)
			munmap(p, npages * PG);
		goto out;
	}
	p = mmap((void *)(arena + w * WIN_SIZE), npages * PG, prot,
		 MAP_SHARED | MAP_FIXED, fd, (off_t)(pgoff * PG));
	if (p == MAP_FAILED) {
		fail_msg("mmap of region slot %d (%" PRIu64 " pages at %" PRIu64 "): %s\n",
			 s, npages, pgoff, strerror(errno));
		/* MAP_FIXED may have dropped the reservation */
		map_drop(m, arena + w * WIN_SIZE, npages);
		goto out;
	}
	*m = (struct mapping){ .used = true, .addr = (uintptr_t)p,
			       .npages = npages, .pgoff = pgoff, .slot = s,
			       .uid = sl->uid, .rlen = sl->len,
			       .owner_cx = sl->ctx, .owner_gen = sl->ctx_gen,
			       .wpflags = sl->flags,
			       .filewr = fd == sl->fd,
			       .prot_write = prot & PROT_WRITE };
out:
	pthread_rwlock_unlock(&map_lock);
	pthread_rwlock_unlock(&sl->lock);
}

static void chaos_munmap(struct rng *r)
{
	struct mapping *m = &maps[rn(r, NR_WIN)];
	uint64_t k;

	pthread_rwlock_wrlock(&map_lock);
	if (!m->used)
		goto out;
	k = 1 + rn(r, m->npages);
	if (k == m->npages || chance(r, 50)) {
		m->used = false;
		map_drop(m, m->addr, m->npages);
	} else if (chance(r, 50)) {
		/* the head */
		map_drop(m, m->addr, k);
		m->addr += k * PG;
		m->pgoff += k;
		m->npages -= k;
	} else {
		map_drop(m, m->addr + (m->npages - k) * PG, k);
		m->npages -= k;
	}
out:
	pthread_rwlock_unlock(&map_lock);
}

static void chaos_mremap(struct rng *r)
{
	int from = (int)rn(r, NR_WIN), to = (int)rn(r, NR_WIN);
	struct mapping *m = &maps[from], *t = &maps[to];
	uintptr_t dst = arena + to * WIN_SIZE;
	void *p;

	pthread_rwlock_wrlock(&map_lock);
	if (!m->used || from == to || t->used || t->lost)
		goto out;
	if (chance(r, 30) && m->npages > 1) {
		/* shrink in place */
		uint64_t k = 1 + rn(r, m->npages - 1);

		p = mremap((void *)m->addr, m->npages * PG, (m->npages - k) * PG, 0);
		if (p == MAP_FAILED) {
			fail_msg("mremap shrink: %s\n", strerror(errno));
			goto out;
		}
		map_drop(m, m->addr + (m->npages - k) * PG, k);
		m->npages -= k;
		goto out;
	}
	p = mremap((void *)m->addr, m->npages * PG, m->npages * PG,
		   MREMAP_MAYMOVE | MREMAP_FIXED, (void *)dst);
	if (p == MAP_FAILED) {
		fail_msg("mremap move: %s\n", strerror(errno));
		goto out;
	}
	*t = *m;
	t->addr = dst;
	m->used = false;
	map_drop(m, m->addr, m->npages);
out:
	pthread_rwlock_unlock(&map_lock);
}

static void chaos_madvise(struct rng *r)
{
	struct mapping *m = &maps[rn(r, NR_WIN)];

	pthread_rwlock_rdlock(&map_lock);
	if (m->used) {
		uint64_t p = rn(r, m->npages), n = 1 + rn(r, m->npages - p);

		if (madvise((void *)(m->addr + p * PG), n * PG, MADV_DONTNEED))
			fail_msg("madvise(MADV_DONTNEED): %s\n", strerror(errno));
	}
	pthread_rwlock_unlock(&map_lock);
}

/* Touch a few pages of the mappings (map_lock held for reading). */
static unsigned int touch_some(struct rng *r, unsigned int n, char *what,
			       size_t wlen, bool child)
{
	unsigned int sigs = 0;

	for (unsigned int i = 0; i < n; i++) {
		struct mapping *m = &maps[rn(r, NR_WIN)];
		uint8_t v;
		uintptr_t a;

		if (!m->used)
			continue;
		a = m->addr + rn(r, m->npages) * PG + rn(r, PG);
		if (what)
			snprintf(what, wlen, "touching %#lx (region uid %" PRIu64
				 " page %" PRIu64 ")", (unsigned long)a, m->uid,
				 m->pgoff + (a - m->addr) / PG);
		if (m->prot_write && chance(r, 50))
			sigs += try_write((void *)a, (uint8_t)rnd(r)) != 0;
		else
			sigs += try_read((void *)a, &v) != 0;
	}
	/* the trap faults every time */
	if (!child && chance(r, 5) && trap) {
		uint8_t v;

		if (!try_read(trap, &v))
			fail_msg("read of an armed hole of a closed context did not fault\n");
	}
	return sigs;
}

static void chaos_fork(struct rng *r, struct tstate *ts)
{
	pid_t pid;
	int st;

	pthread_rwlock_rdlock(&map_lock);
	pid = fork();
	if (!pid) {
		touch_some(r, 8, NULL, 0, true);
		_exit(0);
	}
	pthread_rwlock_unlock(&map_lock);
	if (pid < 0)
		return;
	snprintf(ts->what, sizeof(ts->what), "waiting for fork child %d", pid);
	busy_set(ts, B_FORK);
	if (wait_child(pid, &st, (int)opt_hang * 1000 + 5000)) {
		fail_msg("fork child %d touching region mappings did not exit\n", pid);
		kill_child(pid, &st);
	} else if (!WIFEXITED(st) || WEXITSTATUS(st)) {
		fail_msg("fork child: status %#x\n", st);
	}
	busy_clear(ts);
}

/* Close region slot @s and make a new region there. */
static void chaos_recycle_region(struct rng *r)
{
	int s = (int)rn(r, NR_SLOTS), cx;
	struct regslot *sl = &slots[s];

	cx = s == BIG_SLOT || chance(r, 70) ? CX_MAIN :
	     (int)(CX_SEC1 + rn(r, 2));
	pthread_rwlock_rdlock(&ctxs[cx].lock);
	pthread_rwlock_wrlock(&sl->lock);
	pthread_rwlock_wrlock(&map_lock);
	maps_of_slot_drop(s);
	pthread_rwlock_unlock(&map_lock);
	if (sl->live) {
		close(sl->fd);
		if (sl->rofd >= 0)
			close(sl->rofd);
		sl->live = false;
	}
	slot_make(s, cx, r);
	pthread_rwlock_unlock(&sl->lock);
	pthread_rwlock_unlock(&ctxs[cx].lock);
}

/*
 * Make a device in slot @s on context @cx (the slot write-locked, the
 * context read-locked, or set-up), if that context negotiated a device
 * feature.
 */
static void dev_make(int s, int cx)
{
	struct uffdx_device_create dc = { .size = sizeof(dc), .fd = -1 };
	struct devslot *d = &devs[s];
	struct ctxslot *c = &ctxs[cx];
	int ret;

	d->fd = -1;
	if (!c->ready || c->fd < 0 ||
	    !has_ioctl(c->ioctls, UFFDX_IOC_DEVICE_CREATE))
		return;
	ret = xioctl(c->fd, UFFDX_IOC_DEVICE_CREATE, &dc);
	if (ret) {
		if (ret != -ENOMEM && ret != -EMFILE)
			fail_msg("DEVICE_CREATE on %s: %s\n", cx_names[cx],
				 strerror(-ret));
		return;
	}
	if (dc.fd < 0) {
		fail_msg("DEVICE_CREATE on %s: fd %d\n", cx_names[cx], dc.fd);
		return;
	}
	d->fd = dc.fd;
	d->ctx = cx;
	d->features = c->features;
}

/* Close device slot @s and make a new device there. */
static void chaos_recycle_dev(struct rng *r)
{
	int s = (int)rn(r, NR_DEV);
	int cx = chance(r, 60) ? CX_MAIN : (int)(CX_SEC1 + rn(r, 2));

	pthread_rwlock_rdlock(&ctxs[cx].lock);
	pthread_rwlock_wrlock(&devs[s].lock);
	if (devs[s].fd >= 0)
		close(devs[s].fd);
	dev_make(s, cx);
	pthread_rwlock_unlock(&devs[s].lock);
	pthread_rwlock_unlock(&ctxs[cx].lock);
}

static atomic_uint_fast64_t dev_events;

/*
 * Read a device's events, non-blocking: whole 64-byte messages of known
 * types, EAGAIN when there is none, EINVAL for a buffer too small.
 */
static void chaos_dev_events(struct rng *r)
{
	struct uffdx_dev_event ev[32];
	struct devslot *d = &devs[rn(r, NR_DEV)];
	bool small = chance(r, 10);
	ssize_t n;
	int fl;

	pthread_rwlock_rdlock(&d->lock);
	if (d->fd < 0)
		goto out;
	fl = fcntl(d->fd, F_GETFL);
	if (fl >= 0 && !(fl & O_NONBLOCK))
		fcntl(d->fd, F_SETFL, fl | O_NONBLOCK);
	n = read(d->fd, ev, small ? sizeof(ev[0]) - 1 : sizeof(ev));
	if (small) {
		if (n >= 0 || errno != EINVAL)
			fail_msg("read(%zu) of a device fd: %s, not EINVAL\n",
				 sizeof(ev[0]) - 1, n >= 0 ? "succeeded" : strerror(errno));
		goto out;
	}
	if (n < 0) {
		if (errno != EAGAIN && errno != EINTR)
			fail_msg("read of a device fd: %s\n", strerror(errno));
		goto out;
	}
	if (!n || n % sizeof(ev[0])) {
		fail_msg("read of a device fd: %zd bytes\n", n);
		goto out;
	}
	for (size_t i = 0; i < (size_t)n / sizeof(ev[0]); i++) {
		if (ev[i].type < UFFDX_DEV_EVENT_REVOKED ||
		    ev[i].type > UFFDX_DEV_EVENT_DROPPED ||
		    (ev[i].flags & ~(UFFDX_PF_WRITE | UFFDX_PF_KERNEL |
				     UFFDX_PF_REMOTE)))
			fail_msg("device event: type %u flags %#x\n", ev[i].type,
				 ev[i].flags);
	}
	atomic_fetch_add(&dev_events, (size_t)n / sizeof(ev[0]));
out:
	pthread_rwlock_unlock(&d->lock);
}

static void chaos_recycle_ctx(struct rng *r)
{
	int cx = (int)(CX_SEC1 + rn(r, 2));

	pthread_rwlock_wrlock(&ctxs[cx].lock);
	ctx_slot_make(cx, r);
	pthread_rwlock_unlock(&ctxs[cx].lock);
}

static void *chaos_main(void *p)
{
	struct rng r = { stream_seed(1000) };
	struct tstate *ts = tstate_new("chaos");
	bool have_devices = has_ioctl(all_ioctls, UFFDX_IOC_DEVICE_CREATE);
	unsigned long n = 0;
	uint64_t t;

	(void)p;
	while (!atomic_load(&stop)) {
		unsigned int x = (unsigned int)rn(&r, 100);

		snprintf(ts->what, sizeof(ts->what), "chaos op %u", x);
		t = now_ns();
		busy_set(ts, B_CHAOS);
		if (x < 30)
			chaos_mmap(&r);
		else if (x < 45)
			chaos_munmap(&r);
		else if (x < 55)
			chaos_mremap(&r);
		else if (x < 70)
			chaos_madvise(&r);
		else if (x < 73)
			chaos_fork(&r, ts);
		else if (x >= 90 && x < 93 && have_devices)
			chaos_recycle_dev(&r);
		else if (x >= 93 && x < 95 && have_devices)
			chaos_dev_events(&r);
		else if (x < 95)
			chaos_recycle_region(&r);
		else
			chaos_recycle_ctx(&r);
		busy_clear(ts);
		n++;
		/* at most a third of a CPU: the CPUs are the workers' */
		t = (now_ns() - t) / 500000;
		sleep_ms(t < 2 ? 2 : t > 200 ? 200 : (int)t);
	}
	return NULL;
}

static void *toucher_main(void *p)
{
	struct rng r = { stream_seed(2000) };
	struct tstate *ts = tstate_new("toucher");

	(void)p;
	while (!atomic_load(&stop)) {
		pthread_rwlock_rdlock(&map_lock);
		busy_set(ts, B_TOUCH);
		touch_some(&r, 4, ts->what, sizeof(ts->what), false);
		busy_clear(ts);
		pthread_rwlock_unlock(&map_lock);
		sleep_ms(2);
	}
	return NULL;
}

/* ---- set-up ---------------------------------------------------------------- */

static void *map_guarded(size_t len)
{
	unsigned char *p = mmap(NULL, len + PG, PROT_READ | PROT_WRITE,
				MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		ksft_exit_fail_msg("mmap: %s\n", strerror(errno));
	munmap(p + len, PG);
	return p;
}

static void bufs_init(struct bufs *b)
{
	int fd = memfd_create("fuzz-ro", MFD_CLOEXEC);

	b->arg = map_guarded(ARG_LEN);
	if (fd < 0 || ftruncate(fd, (off_t)ARG_LEN))
		ksft_exit_fail_msg("memfd: %s\n", strerror(errno));
	b->ro_rw = mmap(NULL, ARG_LEN, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	b->ro = mmap(NULL, ARG_LEN, PROT_READ, MAP_SHARED, fd, 0);
	if (b->ro_rw == MAP_FAILED || b->ro == MAP_FAILED)
		ksft_exit_fail_msg("mmap memfd: %s\n", strerror(errno));
	close(fd);
	b->data = map_guarded(DATA_LEN);
	for (uint64_t i = 0; i < DATA_LEN; i += 8)
		put64(b->data, i, i * 0x9e3779b97f4a7c15ULL);
	b->vec = map_guarded(VEC_LEN);
	b->ev = map_guarded(VEC_LEN);
	b->shadow = map_guarded(VEC_LEN);
}

/*
 * The trap: a region of a context that is then closed, armed all over,
 * mapped read-only through an O_RDONLY reopen; every fd is closed, so
 * nothing can fill or disarm it.  Any access faults for ever.
 */
static void trap_init(void)
{
	uint64_t id = 0;
	char path[64];
	int cfd = ctx_new(UFFDX_FEATURE_MISSING, true, NULL), fd, ro;

	trap_len = 4 * PG;
	if (cfd < 0)
		ksft_exit_fail_msg("trap context: %s\n", strerror(-cfd));
	fd = region_create_raw(cfd, trap_len, 0, &id);
	if (fd < 0 || range_raw(cfd, UFFDX_IOC_ARM, id, 0, trap_len,
				UFFDX_ARM_MISSING))
		ksft_exit_fail_msg("trap region\n");
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	ro = open(path, O_RDONLY | O_CLOEXEC);
	if (ro < 0)
		ksft_exit_fail_msg("reopen %s: %s\n", path, strerror(errno));
	trap = mmap(NULL, trap_len, PROT_READ, MAP_SHARED, ro, 0);
	if (trap == MAP_FAILED)
		ksft_exit_fail_msg("trap mmap: %s\n", strerror(errno));
	close(ro);
	close(fd);
	close(cfd);
}

static void setup(void)
{
	struct rng r = { stream_seed(3000) };
	struct rlimit rl;
	uint64_t ioctls;
	int fd;

	/* fds up to CLOSED_FD exist, CLOSED_FD itself is never open */
	getrlimit(RLIMIT_NOFILE, &rl);
	if (rl.rlim_cur <= CLOSED_FD) {
		rl.rlim_cur = rl.rlim_max > CLOSED_FD ? CLOSED_FD + 1 : rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	devnull_fd = open("/dev/null", O_RDWR | O_CLOEXEC);

	/* what the module offers */
	{
		struct uffdx_api api = { .size = sizeof(api),
					 .api = UFFDX_API_VERSION };

		fd = open(UFFDX_DEV, O_RDWR | O_CLOEXEC);
		if (fd < 0 || xioctl(fd, UFFDX_IOC_API, &api))
			ksft_exit_fail_msg("probe context: %s\n", strerror(errno));
		supported = api.features;
		module_version = api.module_version;
		close(fd);
	}
	fd = ctx_new(supported & ~UFFDX_FEATURE_KERNEL_FAULTS, true, &ioctls);
	if (fd < 0)
		ksft_exit_fail_msg("context with all features: %s\n", strerror(-fd));
	all_ioctls = ioctls;
	close(fd);

	for (int i = 0; i < NR_CTX; i++) {
		rwlock_init_wr(&ctxs[i].lock);
		ctxs[i].fd = -1;
		ctx_slot_make(i, &r);
	}
	if (ctxs[CX_MAIN].fd < 0)
		ksft_exit_fail_msg("main context\n");
	for (int s = 0; s < NR_SLOTS; s++) {
		rwlock_init_wr(&slots[s].lock);
		slots[s].fd = slots[s].rofd = -1;
		slot_make(s, s == BIG_SLOT || s < 10 ? CX_MAIN :
			  (int)(CX_SEC1 + s % 2), &r);
	}
	/* devices on the main context and the secondary ones, if offered */
	for (int i = 0; i < NR_DEV; i++) {
		rwlock_init_wr(&devs[i].lock);
		dev_make(i, i < 2 ? CX_MAIN : (int)(CX_SEC1 + i % 2));
	}
	if ((supported & DEV_FEATURES) &&
	    !has_ioctl(all_ioctls, UFFDX_IOC_DEVICE_CREATE))
		fail_msg("the module reports device features %#" PRIx64
			 " but no DEVICE_CREATE\n", (uint64_t)(supported & DEV_FEATURES));
	/* no device: its ioctls only ever meet the wrong fds, now and then */
	if (!has_ioctl(all_ioctls, UFFDX_IOC_DEVICE_CREATE))
		for (int i = I_DEV_READ; i < NR_IOC; i++)
			iocs[i].weight = 1;
	rwlock_init_wr(&map_lock);
	arena = (uintptr_t)mmap(NULL, NR_WIN * WIN_SIZE, PROT_NONE,
				MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if ((void *)arena == MAP_FAILED)
		ksft_exit_fail_msg("arena: %s\n", strerror(errno));
	for (int i = 0; i < 16; i++)
		chaos_mmap(&r);
	anon_page = map_guarded(PG);
	trap_init();
}

/* The man pages' tables, and the model's state errnos checked against them. */
static int tables_init(void)
{
	int bad = 0;

	for (int i = 0; i < NR_IOC; i++) {
		struct ioc *d = &iocs[i];
		const struct errtab *t = NULL;

		d->nr = _IOC_NR(d->cmd);
		for (size_t j = 0; j < ARRAY_SIZE(errtab); j++)
			if (errtab[j].cmd == d->cmd)
				t = &errtab[j];
		if (!t) {
			ksft_print_msg("%s has no entry in errnos.h\n", d->name);
			bad++;
			continue;
		}
		d->page = t->page;
		d->table = es_of(t->e);
		d->stateset = es_of(d->state);
		if (!d->page) {
			/* no man page yet: anything goes but what the ABI says */
			for (int e = 1; e < 134; e++)
				es_add(&d->table, e);
			ksft_print_msg("warning: %s has no man page; its errnos are "
				       "not checked\n", d->name);
			continue;
		}
		for (int e = 1; e < 192; e++) {
			if (es_has(&d->stateset, e) && !es_has(&d->table, e)) {
				ksft_print_msg("%s: the module can return %s, "
					       "%s does not list it\n",
					       d->name, ename(e), d->page);
				bad++;
			}
		}
	}
	return bad;
}

/* ---- the watchdog and the end ---------------------------------------------- */

static void print_stack(pid_t tid)
{
	char path[64], buf[2048];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/self/task/%d/stack", tid);
	fd = open(path, O_RDONLY);
	if (fd < 0)
		return;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return;
	buf[n] = 0;
	for (char *l = strtok(buf, "\n"); l; l = strtok(NULL, "\n"))
		printf("#     %s\n", l);
}

/* A thread stuck longer than -W seconds: print it; true if one is. */
static bool watchdog_check(void)
{
	uint64_t now = now_ns(), lim = (uint64_t)opt_hang * NSEC;
	bool hung = false;

	for (int i = 0; i < atomic_load(&nthreads); i++) {
		struct tstate *t = &tstates[i];
		uint64_t since = atomic_load(&t->since);

		if (!since || since > now || now - since < lim)
			continue;
		hung = true;
		atomic_fetch_add(&failures, 1);
		pthread_mutex_lock(&print_lock);
		printf("# FAIL: hang: %s thread %d busy for %" PRIu64 " s:\n",
		       t->name, t->tid, (now - since) / NSEC);
		if (atomic_load(&t->busy) == B_IOCTL)
			print_call(&t->rec, "stuck in");
		else
			printf("#   %s\n", t->what);
		printf("#   kernel stack:\n");
		print_stack(t->tid);
		pthread_mutex_unlock(&print_lock);
	}
	return hung;
}

static void noop(int sig)
{
	(void)sig;
}

static void usage(void)
{
	fprintf(stderr, "usage: fuzz [-s SEED] [-n CALLS] [-t SECONDS] [-j THREADS] "
		"[-c 0|1] [-w STREAM] [-k FIRST] [-W HANG_SECONDS] [-v]\n");
	exit(2);
}

static void print_stats(struct worker *ws, unsigned int n)
{
	uint64_t in = 0, calls = 0;

	for (unsigned int w = 0; w < n; w++) {
		calls += ws[w].n;
		for (int i = 0; i < NR_IOC; i++)
			in += ws[w].stats[i][2];
	}
	if (calls)
		ksft_print_msg("per call: %" PRIu64 " us in the ioctl\n",
			       in / calls / 1000);
	for (int i = 0; i < NR_IOC; i++) {
		uint64_t calls = 0, ok = 0, ns = 0;
		uint32_t errs[134] = { 0 };
		char buf[600];
		int len = 0;

		for (unsigned int w = 0; w < n; w++) {
			calls += ws[w].stats[i][0];
			ok += ws[w].stats[i][1];
			ns += ws[w].stats[i][2];
			for (int e = 0; e < 134; e++)
				errs[e] += ws[w].errs[i][e];
		}
		for (int e = 1; e < 134; e++)
			if (errs[e])
				len += snprintf(buf + len, sizeof(buf) - len, " %s %u",
						ename(e), errs[e]);
		buf[len] = 0;
		ksft_print_msg("%-28s %8" PRIu64 " calls, %5" PRIu64 " us, ok %" PRIu64
			       ",%s\n", iocs[i].name, calls,
			       calls ? ns / calls / 1000 : 0, ok, len ? buf : " no errors");
	}
}

int main(int argc, char **argv)
{
	pthread_t tids[MAX_THREADS], htid;
	unsigned int nt = 0;
	struct worker *ws;
	struct utsname u;
	struct sigaction sa = { .sa_handler = noop };
	uint64_t start, deadline;
	bool hung = false;
	int opt;

	opt_seed = now_ns() ^ ((uint64_t)getpid() << 32);
	while ((opt = getopt(argc, argv, "s:n:t:j:c:w:k:W:vh")) != -1) {
		switch (opt) {
		case 's': opt_seed = strtoull(optarg, NULL, 0); break;
		case 'n': opt_calls = strtoull(optarg, NULL, 0); break;
		case 't': opt_secs = (unsigned int)strtoul(optarg, NULL, 0); break;
		case 'j': opt_workers = (unsigned int)strtoul(optarg, NULL, 0); break;
		case 'c': opt_chaos = atoi(optarg); break;
		case 'w': opt_stream = atoi(optarg); break;
		case 'k': opt_first = strtoull(optarg, NULL, 0); break;
		case 'W': opt_hang = (unsigned int)strtoul(optarg, NULL, 0); break;
		case 'v': opt_verbose = 1; break;
		default: usage();
		}
	}
	if (!opt_workers || opt_workers > 32)
		usage();
	uname(&u);

	ksft_print_header();
	if (!uffdx_present())
		ksft_exit_skip(UFFDX_DEV " not present (uffdx module not loaded)\n");
	ksft_set_plan(1);
	ksft_print_msg("fuzz: seed %#" PRIx64 ", %" PRIu64 " calls or %u s, %u workers, "
		       "chaos %s\n", opt_seed, opt_calls, opt_secs, opt_workers,
		       opt_chaos ? "on" : "off");
	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR1, &sa, NULL);

	if (tables_init())
		ksft_exit_fail_msg("the model and the man pages disagree (above)\n");
	setup();
	ksft_print_msg("module features %#" PRIx64 ", ioctls %#" PRIx64 "\n",
		       supported, all_ioctls);

	ws = calloc(opt_workers, sizeof(*ws));
	if (!ws)
		ksft_exit_fail_msg("calloc\n");
	start = now_ns();
	deadline = start + (uint64_t)opt_secs * NSEC;
	for (unsigned int i = 0; i < opt_workers; i++) {
		ws[i].stream = opt_stream >= 0 ? opt_stream + (int)i : (int)i;
		ws[i].base = stream_seed(ws[i].stream);
		ws[i].n = opt_first;
		ws[i].fresh = -1;
		bufs_init(&ws[i].b);
		if (pthread_create(&tids[nt++], NULL, worker_main, &ws[i]))
			ksft_exit_fail_msg("pthread_create\n");
	}
	if (pthread_create(&htid, NULL, handler_main, NULL))
		ksft_exit_fail_msg("pthread_create\n");
	if (opt_chaos) {
		if (pthread_create(&tids[nt++], NULL, chaos_main, NULL) ||
		    pthread_create(&tids[nt++], NULL, toucher_main, NULL))
			ksft_exit_fail_msg("pthread_create\n");
	}

	/* run until the calls are made or the time is up; watch for hangs */
	while (!atomic_load(&stop)) {
		sleep_ms(250);
		if (atomic_load(&calls_done) >= opt_calls || now_ns() >= deadline)
			atomic_store(&stop, 1);
		if (watchdog_check()) {
			hung = true;
			break;
		}
	}
	atomic_store(&stop, 1);
	/* the handler last: the others may wait for it */
	for (unsigned int i = 0; !hung && i <= nt; i++) {
		pthread_t t = i < nt ? tids[i] : htid;

		if (i == nt)
			atomic_store(&stop_handler, 1);
		while (pthread_tryjoin_np(t, NULL)) {
			sleep_ms(50);
			if (watchdog_check()) {
				hung = true;
				break;
			}
		}
	}

	ksft_print_msg("%" PRIu64 " calls in %.1f s (%.0f/s)\n",
		       (uint64_t)atomic_load(&calls_done),
		       (now_ns() - start) / 1e9,
		       atomic_load(&calls_done) / ((now_ns() - start) / 1e9));
	if (!hung) {
		long long charged = 0, regions = 0;

		print_stats(ws, opt_workers);
		fdinfo_ll(ctxs[CX_MAIN].fd, "uffdx-charged-pages", &charged);
		fdinfo_ll(ctxs[CX_MAIN].fd, "uffdx-regions", &regions);
		ksft_print_msg("at the end: %d fds open; the main context holds %lld "
			       "regions, %lld pages charged\n", count_open_fds(),
			       regions, charged);
		if (has_ioctl(all_ioctls, UFFDX_IOC_DEVICE_CREATE))
			ksft_print_msg("devices: %" PRIu64 " events read\n",
				       (uint64_t)atomic_load(&dev_events));
		else
			ksft_print_msg("devices: not offered by the module; the "
				       "device ioctls ran on other fds only\n");
	}
	fail_kinds_print();
	printf("fuzz: %" PRIu64 " calls, %" PRIu64 " failures, seed %#" PRIx64 " (%s)\n",
	       (uint64_t)atomic_load(&calls_done), (uint64_t)atomic_load(&failures),
	       opt_seed, u.release);
	fflush(stdout);
	ksft_test_result(!atomic_load(&failures), "fuzz\n");
	if (hung) {
		/* a thread is stuck in the kernel: do not wait for it */
		ksft_print_cnts();
		fflush(stdout);
		_exit(KSFT_FAIL);
	}
	ksft_finished();
}
