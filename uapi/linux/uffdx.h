/* SPDX-License-Identifier: (GPL-2.0 WITH Linux-syscall-note) OR MIT */
/*
 * uffdx: userfault handling, page remapping, write-protect markers and a
 * simulated HMM device for stock kernels, as a loadable module.
 *
 * This is the one ABI header, shared by the module and by user space.
 *
 * Conventions (see docs/design.md):
 *  - Every argument struct starts with "__u32 size": user space sets it to
 *    sizeof() the struct it was compiled with.  The module accepts any size
 *    from the first published version up to one page; a larger struct from
 *    a newer header is accepted if the bytes the module does not know are
 *    zero (else -E2BIG), a smaller one is zero-extended.  The size encoded
 *    in the ioctl number is not used.
 *  - Unknown flags or mode bits, and non-zero reserved fields, give -EINVAL.
 *  - Unknown ioctl numbers give -ENOTTY.  Every ioctl but UFFDX_IOC_API
 *    gives -EINVAL on a context that has not negotiated the API yet.
 *  - Lengths and offsets are bytes, page aligned, non-zero, and must not
 *    overflow.
 *  - Range operations that can stop part way report progress in "result":
 *    bytes done, or a negative errno if nothing was done.  The ioctl then
 *    returns 0 only if the whole range was done and fails with EAGAIN if
 *    part of it was (the UFFDIO_COPY convention).
 */
#ifndef _UAPI_LINUX_UFFDX_H
#define _UAPI_LINUX_UFFDX_H

#include <linux/const.h>
#include <linux/ioctl.h>
#include <linux/types.h>

/* Version of this ABI; user space passes it in uffdx_api.api. */
#define UFFDX_API_VERSION	1

/* Encoding of uffdx_api.module_version. */
#define UFFDX_VERSION(maj, min, pat)	(((maj) << 16) | ((min) << 8) | (pat))
#define UFFDX_VERSION_MAJOR(v)		(((v) >> 16) & 0xffff)
#define UFFDX_VERSION_MINOR(v)		(((v) >> 8) & 0xff)
#define UFFDX_VERSION_PATCH(v)		((v) & 0xff)

/*
 * Feature bits, negotiated with UFFDX_IOC_API.  The module reports the bits
 * that both it and the running kernel support; requesting any other bit is
 * -EINVAL.  Bits not yet defined are reserved.
 */
/* Regions: module-owned memory, mmap, discard; always present. */
#define UFFDX_FEATURE_REGIONS		_BITULL(0)
/* Missing-page faults as events; COPY, ZERO, WAKE. */
#define UFFDX_FEATURE_MISSING		_BITULL(1)
/* UFFDX_IOC_POISON. */
#define UFFDX_FEATURE_POISON		_BITULL(2)
/*
 * Let faults taken in kernel mode (syscall buffers, GUP) sleep for the
 * handler instead of failing with EFAULT.  Needs CAP_SYS_PTRACE (-EPERM).
 */
#define UFFDX_FEATURE_KERNEL_FAULTS	_BITULL(3)
/* Zero-copy MOVE between regions and processes: MOVE, MOVE_ADDR, MOVE_VEC. */
#define UFFDX_FEATURE_MOVE		_BITULL(8)
/* Reserved: MOVE mapping 2 MiB units with PMD entries. */
#define UFFDX_FEATURE_MOVE_HUGE		_BITULL(9)
/* Write-protect markers with synchronous WP faults: WRITEPROTECT(_ADDR). */
#define UFFDX_FEATURE_WP		_BITULL(16)
/* Asynchronous dirty tracking with atomic scan and re-arm: SCAN.  Implies WP. */
#define UFFDX_FEATURE_WP_ASYNC		_BITULL(17)
/*
 * The simulated device (DEVICE_CREATE and the ioctls of a device fd): a
 * mirror of the caller's address space with its own page table.
 * DEVICE_EXCLUSIVE: exclusive access and atomics on region memory.
 */
#define UFFDX_FEATURE_DEVICE_EXCLUSIVE	_BITULL(24)
/* Migration of region memory into device memory and back. */
#define UFFDX_FEATURE_DEVICE_MIGRATE	_BITULL(25)
/* Device mirror of ordinary process memory (hmm_range_fault). */
#define UFFDX_FEATURE_HMM_MIRROR	_BITULL(26)
/* Reserved: device-exclusive on process memory (needs DEVICE_PRIVATE). */
#define UFFDX_FEATURE_HMM_EXCLUSIVE	_BITULL(27)
/* Reserved: migration of process memory to device-private memory. */
#define UFFDX_FEATURE_HMM_MIGRATE	_BITULL(28)

/* ioctl type byte; free in Documentation/userspace-api/ioctl. */
#define UFFDX_IOC_MAGIC		0xD7

/* ioctl numbers (also the bit numbers of uffdx_api.ioctls). */
#define _UFFDX_API		0x00
#define _UFFDX_REGION_CREATE	0x01
#define _UFFDX_ARM		0x02
#define _UFFDX_DISARM		0x03
#define _UFFDX_COPY		0x04
#define _UFFDX_ZERO		0x05
#define _UFFDX_POISON		0x06
#define _UFFDX_WAKE		0x07
#define _UFFDX_DISCARD		0x08
#define _UFFDX_MOVE		0x09
#define _UFFDX_MOVE_ADDR	0x0a
#define _UFFDX_MOVE_VEC		0x0b
#define _UFFDX_RESOLVE		0x0c
#define _UFFDX_WRITEPROTECT	0x0d
#define _UFFDX_WRITEPROTECT_ADDR 0x0e
#define _UFFDX_SCAN		0x0f
#define _UFFDX_DEVICE_CREATE	0x10
/* 0x11-0x3f reserved. */

/* On a region fd. */
#define _UFFDX_REGION_INFO	0x40

/*
 * On a device fd: test_hmm's HMM_DMIRROR_* commands, in their order, from
 * 0x50, then the device's own.
 */
#define _UFFDX_DEV_READ		0x50
#define _UFFDX_DEV_WRITE	0x51
#define _UFFDX_DEV_MIGRATE_TO_DEV 0x52
#define _UFFDX_DEV_MIGRATE_TO_SYS 0x53
#define _UFFDX_DEV_SNAPSHOT	0x54
#define _UFFDX_DEV_EXCLUSIVE	0x55
#define _UFFDX_DEV_CHECK_EXCLUSIVE 0x56
#define _UFFDX_DEV_RELEASE	0x57
#define _UFFDX_DEV_ATOMIC	0x58
#define _UFFDX_DEV_STATS	0x59

/*
 * UFFDX_IOC_API: negotiate, once per context, before anything else.
 * A failed negotiation (-EINVAL, -EPERM) leaves the context un-negotiated
 * so that user space may retry with fewer features; a second successful
 * call is -EINVAL.
 */
struct uffdx_api {
	__u32 size;		/* in: sizeof(struct uffdx_api) */
	__u32 api;		/* in: UFFDX_API_VERSION */
	__u64 features;		/* in: wanted; out: all supported */
	__u64 ioctls;		/* out: (1ULL << _UFFDX_*) available */
	__u32 module_version;	/* out: UFFDX_VERSION(maj, min, patch) */
	__u32 flags;		/* in: must be 0 */
	__u64 reserved[4];	/* must be 0 */
};

/*
 * UFFDX_IOC_REGION_CREATE: create a region of "len" bytes of memory owned
 * by the module.  The region is returned as a new file descriptor
 * (O_CLOEXEC) that may be mmap()ed MAP_SHARED by anyone who holds it; its
 * id names it in events and in the range ioctls of this context.
 *
 * Flags choose the region's write-protect mode, fixed for its lifetime
 * (at most one; each needs its feature, and WP_ASYNC implies WP):
 *  WP:       protected pages fault synchronously: the writer sleeps and
 *            an event flagged UFFDX_PF_WP is queued (UFFDX_FEATURE_WP);
 *  WP_ASYNC: writes to protected pages proceed and are recorded for
 *            UFFDX_IOC_SCAN (UFFDX_FEATURE_WP_ASYNC).
 * The mappings of such a region take a write-notify fault on the first
 * write to each page after it is mapped, and (on 6.5 and later kernels)
 * refuse long-term writable pins: io_uring fixed buffers, VFIO, RDMA.
 */
#define UFFDX_REGION_CREATE_WP		0x1U
#define UFFDX_REGION_CREATE_WP_ASYNC	0x2U

struct uffdx_region_create {
	__u32 size;		/* in */
	__u32 flags;		/* in: UFFDX_REGION_CREATE_* */
	__u64 len;		/* in: bytes, page aligned */
	__u64 region_id;	/* out */
	__s32 fd;		/* out */
	__u32 __pad;		/* must be 0 */
	__u64 reserved[2];	/* must be 0 */
};

/* Modes of UFFDX_IOC_ARM / DISARM. */
#define UFFDX_ARM_MISSING	0x1U

/* Modes of COPY / ZERO / POISON. */
#define UFFDX_FILL_DONTWAKE	0x1U

/*
 * Modes of WRITEPROTECT and WRITEPROTECT_ADDR.  PROTECT sets protection on
 * the range, without it the range is unprotected; DONTWAKE (unprotect
 * only) leaves the writers asleep on it for a later WAKE.
 */
#define UFFDX_WP_PROTECT	0x1U
#define UFFDX_WP_DONTWAKE	0x2U

/*
 * Range operations on a region of this context: ARM, DISARM, COPY, ZERO,
 * POISON, WAKE, DISCARD, WRITEPROTECT.  "src" is the user address to copy from (COPY
 * only; 0 otherwise).  "result" is the progress report described above
 * (COPY, ZERO, POISON, DISCARD, WRITEPROTECT): written whenever the operation ran, with
 * -errno if it did nothing; not written when the arguments are rejected.
 */
struct uffdx_range {
	__u32 size;		/* in */
	__u32 mode;		/* in: UFFDX_ARM_*, UFFDX_FILL_* or UFFDX_WP_* */
	__u64 region_id;	/* in */
	__u64 offset;		/* in: bytes into the region */
	__u64 len;		/* in: bytes */
	__u64 src;		/* in: COPY source address */
	__s64 result;		/* out */
	__u64 reserved[2];	/* must be 0 */
};

/*
 * Modes of MOVE, MOVE_ADDR and MOVE_VEC.
 *  DONTWAKE:        do not wake the faults sleeping on the destination.
 *  ALLOW_SRC_HOLES: a hole in the source is not ENOENT; it counts as moved
 *                   (the destination slot stays a hole).
 *  DST_FD, SRC_FD:  (MOVE only) dst_region / src_region is a region file
 *                   descriptor, of any context, open for writing, instead
 *                   of a region id of this context.
 */
#define UFFDX_MOVE_DONTWAKE		0x1U
#define UFFDX_MOVE_ALLOW_SRC_HOLES	0x2U
#define UFFDX_MOVE_DST_FD		0x4U
#define UFFDX_MOVE_SRC_FD		0x8U

/*
 * UFFDX_IOC_MOVE: move the pages of [src_offset, src_offset + len) of one
 * region to the holes [dst_offset, dst_offset + len) of another (or of the
 * same region, not overlapping), without copying them.  "result" is the
 * progress report described at the top.
 */
struct uffdx_move {
	__u32 size;		/* in */
	__u32 mode;		/* in: UFFDX_MOVE_* */
	__u64 dst_region;	/* in: region id, or fd with UFFDX_MOVE_DST_FD */
	__u64 dst_offset;	/* in: bytes */
	__u64 src_region;	/* in: region id, or fd with UFFDX_MOVE_SRC_FD */
	__u64 src_offset;	/* in: bytes */
	__u64 len;		/* in: bytes */
	__s64 result;		/* out */
	__u64 reserved[2];	/* must be 0 */
};

/*
 * UFFDX_IOC_MOVE_ADDR: MOVE by virtual address, as UFFDIO_MOVE: each of
 * [dst, dst + len) and [src, src + len) lies in one shared mapping, in the
 * caller's address space, of a region file open for writing (any
 * context's).  The moved pages are mapped for the caller on return (best
 * effort: a page that cannot be mapped is left to its fault).
 */
struct uffdx_move_addr {
	__u32 size;		/* in */
	__u32 mode;		/* in: DONTWAKE, ALLOW_SRC_HOLES */
	__u64 dst;		/* in: address */
	__u64 src;		/* in: address */
	__u64 len;		/* in: bytes */
	__s64 result;		/* out */
	__u64 reserved[2];	/* must be 0 */
};

/* One move of a UFFDX_IOC_MOVE_VEC vector; addresses as in MOVE_ADDR. */
struct uffdx_move_entry {
	__u64 dst;		/* in: address */
	__u64 src;		/* in: address */
	__u64 len;		/* in: bytes */
	__s64 result;		/* out: bytes moved, or -errno if none */
};

/*
 * UFFDX_IOC_MOVE_VEC: many MOVE_ADDR moves in one call.  Consecutive
 * entries between the same two regions share one invalidation of the
 * source, up to 512 pages at a time.  Each entry is independent: one that
 * fails (its result says why) does not stop the others.  "moved" is the
 * total of bytes moved.  The ioctl returns 0 if every entry moved all of
 * its length, else fails with EAGAIN; entries a fatal signal kept from
 * running report -EINTR.  At most UFFDX_MOVE_VEC_MAX entries per call.
 */
#define UFFDX_MOVE_VEC_MAX	1024

struct uffdx_move_vec {
	__u32 size;		/* in */
	__u32 mode;		/* in: DONTWAKE, ALLOW_SRC_HOLES */
	__u64 entries;		/* in: address of struct uffdx_move_entry[] */
	__u32 nr_entries;	/* in: 1 .. UFFDX_MOVE_VEC_MAX */
	__u32 entry_size;	/* in: sizeof(struct uffdx_move_entry) */
	__u64 moved;		/* out: bytes */
	__u64 reserved[2];	/* must be 0 */
};

/*
 * UFFDX_IOC_WRITEPROTECT_ADDR: WRITEPROTECT by virtual address:
 * [addr, addr + len) lies in one shared mapping, in the caller's address
 * space, of a region of this context (EPERM for another context's: only
 * the owner protects a region).
 */
struct uffdx_writeprotect_addr {
	__u32 size;		/* in */
	__u32 mode;		/* in: UFFDX_WP_* */
	__u64 addr;		/* in: address */
	__u64 len;		/* in: bytes */
	__s64 result;		/* out: the progress report */
	__u64 reserved[2];	/* must be 0 */
};

/* uffdx_scan.flags */
#define UFFDX_SCAN_REARM	0x1U	/* re-protect what is reported */
#define UFFDX_SCAN_BITMAP	0x2U	/* "out" is a bitmap, not ranges */

/* A run of written pages, in UFFDX_IOC_SCAN's range form. */
struct uffdx_scan_range {
	__u64 offset;		/* bytes into the region */
	__u64 len;		/* bytes */
};

/*
 * UFFDX_IOC_SCAN (WP_ASYNC regions): report the pages of [offset,
 * offset + len) written since they were last protected.  With REARM the
 * reported records are taken and the pages protected again, atomically
 * with the report: a write that lands after the scan read a page's state
 * is recorded for a later scan.  Without REARM nothing changes.  Pages
 * pinned for DMA (which can change without a fault) are reported written
 * by every scan.  A scan that fails with EFAULT (the output could not be
 * written) or EINTR still writes "scanned", "nr_out" and "written": what
 * they cover was reported; records past it are kept.
 *
 * Output: "out_len" struct uffdx_scan_range at "out" (runs of written
 * pages, in order, adjacent ones merged), or with UFFDX_SCAN_BITMAP a
 * bitmap of "out_len" bytes (bit i, LSB first in byte i / 8: page i of
 * the range; every byte of it that the scan covers is written).  The scan
 * stops early when the output is full: "scanned" (bytes from "offset")
 * says how far it got, and a caller continues from offset + scanned.
 * Pages beyond "scanned" keep their state.
 */
struct uffdx_scan {
	__u32 size;		/* in */
	__u32 flags;		/* in: UFFDX_SCAN_* */
	__u64 region_id;	/* in */
	__u64 offset;		/* in: bytes */
	__u64 len;		/* in: bytes */
	__u64 out;		/* in: address of the output */
	__u64 out_len;		/* in: ranges, or bitmap bytes; > 0 */
	__u64 scanned;		/* out: bytes examined, from offset */
	__u64 nr_out;		/* out: ranges (or bitmap bytes) written */
	__u64 written;		/* out: bytes reported written */
	__u64 reserved[2];	/* must be 0 */
};

/*
 * One resolution of a UFFDX_IOC_RESOLVE batch.  "op" is the number of the
 * ioctl it stands for, with that ioctl's modes and semantics:
 *  _UFFDX_COPY, _UFFDX_ZERO, _UFFDX_POISON, _UFFDX_WAKE,
 *  _UFFDX_WRITEPROTECT: as uffdx_range, "src" the COPY source address
 *      (0 otherwise);
 *  _UFFDX_MOVE: move the pages at address "src" (a mapping, in the
 *      caller's address space, of a region file open for writing) into
 *      [offset, offset + len) of region "region_id"; UFFDX_MOVE_DONTWAKE
 *      and UFFDX_MOVE_ALLOW_SRC_HOLES.
 * "result" is the op's progress report.
 */
struct uffdx_resolution {
	__u32 op;		/* in: one of the _UFFDX_* above */
	__u32 mode;		/* in: the op's modes */
	__u64 region_id;	/* in */
	__u64 offset;		/* in: bytes */
	__u64 len;		/* in: bytes */
	__u64 src;		/* in: COPY or MOVE source address */
	__s64 result;		/* out */
};

/* uffdx_resolve.flags */
#define UFFDX_RESOLVE_NOWAIT	0x1U	/* return at once if no event is pending */

/*
 * UFFDX_IOC_RESOLVE: apply "nr_resolutions" resolutions in order, then
 * read up to "max_events" events into "events", sleeping (interruptibly,
 * for at most "timeout_ns" if it is not negative) until one is pending,
 * unless NOWAIT or the context file is O_NONBLOCK.  One system call per
 * fault for a handler in the steady state.
 *
 * A resolution that does not complete stops the batch: "nr_done" says how
 * many completed, the failing one's result says how far it got, no event
 * is read, and the ioctl fails with that resolution's error (EAGAIN if it
 * did part of its range).  Otherwise the ioctl returns 0 with "nr_events"
 * events read (0 on timeout or under NOWAIT), or fails with EINTR if a
 * signal ended the wait.  Either list may be empty.  Events are taken off
 * the queue as read() takes them: each is delivered once, by one of them.
 */
struct uffdx_resolve {
	__u32 size;		/* in */
	__u32 flags;		/* in: UFFDX_RESOLVE_* */
	__u64 resolutions;	/* in: address of struct uffdx_resolution[] */
	__u32 nr_resolutions;	/* in: 0 .. UFFDX_RESOLVE_MAX */
	__u32 resolution_size;	/* in: sizeof(struct uffdx_resolution) */
	__u64 events;		/* in: address of struct uffdx_event[] */
	__u32 max_events;	/* in: 0 .. UFFDX_RESOLVE_MAX */
	__u32 nr_events;	/* out */
	__s64 timeout_ns;	/* in: < 0: no limit */
	__u32 nr_done;		/* out: resolutions completed */
	__u32 __pad;		/* must be 0 */
	__u64 reserved[2];	/* must be 0 */
};

#define UFFDX_RESOLVE_MAX	1024

/*
 * UFFDX_IOC_DEVICE_CREATE: create a simulated device that mirrors the
 * caller's address space (as test_hmm's dmirror mirrors its opener's):
 * its own page table, filled on a miss, dropped on every invalidation.
 * Returned as a new file descriptor (O_CLOEXEC).  Needs one of the
 * features DEVICE_EXCLUSIVE, DEVICE_MIGRATE, HMM_MIRROR; each device
 * ioctl needs its own.
 */
struct uffdx_device_create {
	__u32 size;		/* in */
	__u32 flags;		/* in: must be 0 */
	__s32 fd;		/* out */
	__u32 __pad;		/* must be 0 */
	__u64 reserved[2];	/* must be 0 */
};

/*
 * A device command on "npages" pages from "addr" (page aligned, in the
 * mirrored address space), as struct hmm_dmirror_cmd:
 *  DEV_READ, DEV_WRITE: copy between the pages and the buffer at "ptr"
 *      (npages pages), through the device's page table;
 *  DEV_MIGRATE_TO_DEV, DEV_MIGRATE_TO_SYS: move the pages into device
 *      memory, or back; with "ptr" non-zero, one byte per page is written
 *      there: 1 if this command moved it, 0 if not (already there, an
 *      armed hole, poison, pinned, another device's);
 *  DEV_SNAPSHOT: one UFFDX_DEV_PROT_* byte per page at "ptr";
 *  DEV_EXCLUSIVE: take exclusive access (region memory): every CPU
 *      mapping goes, a CPU touch revokes it with an event;
 *  DEV_CHECK_EXCLUSIVE: EPERM unless the device holds every page so (or
 *      has it in its memory);
 *  DEV_RELEASE: give exclusive access up.
 * "cpages" counts the pages done, "faults" the device page faults taken.
 */
struct uffdx_dev_cmd {
	__u32 size;		/* in */
	__u32 flags;		/* in: must be 0 */
	__u64 addr;		/* in: address in the mirrored mm */
	__u64 ptr;		/* in: user buffer */
	__u64 npages;		/* in: 1 .. UFFDX_DEV_MAX_PAGES */
	__u64 cpages;		/* out */
	__u64 faults;		/* out */
	__u64 reserved[2];	/* must be 0 */
};

#define UFFDX_DEV_MAX_PAGES	0x100000U	/* 4 GiB of 4 KiB pages */

/* DEV_SNAPSHOT bytes, test_hmm's HMM_DMIRROR_PROT_* values. */
#define UFFDX_DEV_PROT_NONE		0x00	/* nothing there */
#define UFFDX_DEV_PROT_READ		0x01
#define UFFDX_DEV_PROT_WRITE		0x02
#define UFFDX_DEV_PROT_PMD		0x04	/* with READ/WRITE */
#define UFFDX_DEV_PROT_PUD		0x08
#define UFFDX_DEV_PROT_ZERO		0x10	/* the shared zero page */
#define UFFDX_DEV_PROT_DEV_LOCAL	0x20	/* in this device's memory */
#define UFFDX_DEV_PROT_DEV_REMOTE	0x30	/* in another device's */
#define UFFDX_DEV_PROT_EXCLUSIVE	0x60	/* held exclusive by this device */
#define UFFDX_DEV_PROT_ERROR		0xff	/* no valid translation */

/* uffdx_dev_atomic.op */
#define UFFDX_DEV_ATOMIC_FETCH_ADD	1U	/* old = *addr; *addr += value */
#define UFFDX_DEV_ATOMIC_CMPXCHG	2U	/* if old == expected: = value */

/*
 * UFFDX_IOC_DEV_ATOMIC: an atomic update of the naturally aligned 64-bit
 * word at "addr" (region memory), which takes exclusive access of its page
 * first, as a device atomic does.
 */
struct uffdx_dev_atomic {
	__u32 size;		/* in */
	__u32 op;		/* in: UFFDX_DEV_ATOMIC_* */
	__u64 addr;		/* in: 8-byte aligned */
	__u64 value;		/* in */
	__u64 expected;		/* in: CMPXCHG */
	__u64 old;		/* out: the word before */
	__u64 faults;		/* out */
	__u64 reserved[2];	/* must be 0 */
};

/* uffdx_dev_stats.invalidations[]: by the mmu notifier's reason. */
#define UFFDX_DEV_INVAL_UNMAP		0
#define UFFDX_DEV_INVAL_CLEAR		1
#define UFFDX_DEV_INVAL_PROTECTION_VMA	2
#define UFFDX_DEV_INVAL_PROTECTION_PAGE	3
#define UFFDX_DEV_INVAL_SOFT_DIRTY	4
#define UFFDX_DEV_INVAL_RELEASE		5
#define UFFDX_DEV_INVAL_MIGRATE		6
#define UFFDX_DEV_INVAL_EXCLUSIVE	7
#define UFFDX_DEV_INVAL_NR		8

/* UFFDX_IOC_DEV_STATS: the device's counters, since it was created. */
struct uffdx_dev_stats {
	__u32 size;		/* in */
	__u32 flags;		/* in: must be 0 */
	__u64 faults;		/* page-table misses filled */
	__u64 invalidations[UFFDX_DEV_INVAL_NR];
	__u64 invalidated_pages; /* mirror entries dropped */
	__u64 revocations;	/* exclusive access lost to a CPU touch */
	__u64 migrated_to_dev;	/* pages */
	__u64 migrated_to_sys;	/* pages, by command or CPU fault */
	__u64 allocated;	/* device pages made for holes */
	__u64 pool_pages;	/* device memory: the bound */
	__u64 pool_used;	/* device memory: in use */
	__u64 events_lost;	/* events dropped, queue full */
	__u64 reserved[4];
};

/*
 * Events, read() from a device fd: 64-byte messages, as on a context.
 * DEV_EVENT_REVOKED: a CPU access took exclusive access away;
 * DEV_EVENT_MIGRATED: a CPU access brought a page back from device memory;
 * DEV_EVENT_DROPPED: a DISCARD, or a region change, took the page from
 *      the device.
 */
#define UFFDX_DEV_EVENT_REVOKED		0x01
#define UFFDX_DEV_EVENT_MIGRATED	0x02
#define UFFDX_DEV_EVENT_DROPPED		0x03

struct uffdx_dev_event {
	__u16 type;		/* UFFDX_DEV_EVENT_* */
	__u16 __pad;
	__u32 flags;		/* UFFDX_PF_WRITE, _KERNEL; _REMOTE: not by
				 * the mirrored process
				 */
	__u64 address;		/* the page's address in the mirrored mm */
	__u64 region_id;	/* in its owning context */
	__u64 offset;		/* bytes into the region */
	__u32 pid;		/* the accessing task, as the device's */
	__u32 tid;		/*   creator's pid namespace sees it */
	__u64 reserved[3];
};

/* UFFDX_IOC_REGION_INFO, on a region fd. */
struct uffdx_region_info {
	__u32 size;		/* in */
	__u32 flags;		/* out: UFFDX_REGION_* */
	__u64 len;		/* out */
	__u64 region_id;	/* out: id in the owning context */
	__u64 resident;		/* out: bytes of memory the region holds */
	__u64 reserved[2];	/* must be 0 */
};

/* uffdx_region_info.flags */
#define UFFDX_REGION_OWNER_GONE	0x1U	/* owning context closed */
#define UFFDX_REGION_WP		0x2U	/* created with ..._CREATE_WP */
#define UFFDX_REGION_WP_ASYNC	0x4U	/* created with ..._CREATE_WP_ASYNC */

#define UFFDX_IOC_API		_IOWR(UFFDX_IOC_MAGIC, _UFFDX_API, struct uffdx_api)
#define UFFDX_IOC_REGION_CREATE	_IOWR(UFFDX_IOC_MAGIC, _UFFDX_REGION_CREATE, \
				      struct uffdx_region_create)
#define UFFDX_IOC_ARM		_IOWR(UFFDX_IOC_MAGIC, _UFFDX_ARM, struct uffdx_range)
#define UFFDX_IOC_DISARM	_IOWR(UFFDX_IOC_MAGIC, _UFFDX_DISARM, struct uffdx_range)
#define UFFDX_IOC_COPY		_IOWR(UFFDX_IOC_MAGIC, _UFFDX_COPY, struct uffdx_range)
#define UFFDX_IOC_ZERO		_IOWR(UFFDX_IOC_MAGIC, _UFFDX_ZERO, struct uffdx_range)
#define UFFDX_IOC_POISON	_IOWR(UFFDX_IOC_MAGIC, _UFFDX_POISON, struct uffdx_range)
#define UFFDX_IOC_WAKE		_IOWR(UFFDX_IOC_MAGIC, _UFFDX_WAKE, struct uffdx_range)
#define UFFDX_IOC_DISCARD	_IOWR(UFFDX_IOC_MAGIC, _UFFDX_DISCARD, struct uffdx_range)
#define UFFDX_IOC_MOVE		_IOWR(UFFDX_IOC_MAGIC, _UFFDX_MOVE, struct uffdx_move)
#define UFFDX_IOC_MOVE_ADDR	_IOWR(UFFDX_IOC_MAGIC, _UFFDX_MOVE_ADDR, \
				      struct uffdx_move_addr)
#define UFFDX_IOC_MOVE_VEC	_IOWR(UFFDX_IOC_MAGIC, _UFFDX_MOVE_VEC, \
				      struct uffdx_move_vec)
#define UFFDX_IOC_RESOLVE	_IOWR(UFFDX_IOC_MAGIC, _UFFDX_RESOLVE, struct uffdx_resolve)
#define UFFDX_IOC_WRITEPROTECT	_IOWR(UFFDX_IOC_MAGIC, _UFFDX_WRITEPROTECT, \
				      struct uffdx_range)
#define UFFDX_IOC_WRITEPROTECT_ADDR _IOWR(UFFDX_IOC_MAGIC, \
				      _UFFDX_WRITEPROTECT_ADDR, \
				      struct uffdx_writeprotect_addr)
#define UFFDX_IOC_SCAN		_IOWR(UFFDX_IOC_MAGIC, _UFFDX_SCAN, struct uffdx_scan)
#define UFFDX_IOC_REGION_INFO	_IOWR(UFFDX_IOC_MAGIC, _UFFDX_REGION_INFO, \
				      struct uffdx_region_info)
#define UFFDX_IOC_DEVICE_CREATE	_IOWR(UFFDX_IOC_MAGIC, _UFFDX_DEVICE_CREATE, \
				      struct uffdx_device_create)
#define UFFDX_IOC_DEV_READ	_IOWR(UFFDX_IOC_MAGIC, _UFFDX_DEV_READ, struct uffdx_dev_cmd)
#define UFFDX_IOC_DEV_WRITE	_IOWR(UFFDX_IOC_MAGIC, _UFFDX_DEV_WRITE, struct uffdx_dev_cmd)
#define UFFDX_IOC_DEV_MIGRATE_TO_DEV _IOWR(UFFDX_IOC_MAGIC, \
				      _UFFDX_DEV_MIGRATE_TO_DEV, struct uffdx_dev_cmd)
#define UFFDX_IOC_DEV_MIGRATE_TO_SYS _IOWR(UFFDX_IOC_MAGIC, \
				      _UFFDX_DEV_MIGRATE_TO_SYS, struct uffdx_dev_cmd)
#define UFFDX_IOC_DEV_SNAPSHOT	_IOWR(UFFDX_IOC_MAGIC, _UFFDX_DEV_SNAPSHOT, \
				      struct uffdx_dev_cmd)
#define UFFDX_IOC_DEV_EXCLUSIVE	_IOWR(UFFDX_IOC_MAGIC, _UFFDX_DEV_EXCLUSIVE, \
				      struct uffdx_dev_cmd)
#define UFFDX_IOC_DEV_CHECK_EXCLUSIVE _IOWR(UFFDX_IOC_MAGIC, \
				      _UFFDX_DEV_CHECK_EXCLUSIVE, struct uffdx_dev_cmd)
#define UFFDX_IOC_DEV_RELEASE	_IOWR(UFFDX_IOC_MAGIC, _UFFDX_DEV_RELEASE, \
				      struct uffdx_dev_cmd)
#define UFFDX_IOC_DEV_ATOMIC	_IOWR(UFFDX_IOC_MAGIC, _UFFDX_DEV_ATOMIC, \
				      struct uffdx_dev_atomic)
#define UFFDX_IOC_DEV_STATS	_IOWR(UFFDX_IOC_MAGIC, _UFFDX_DEV_STATS, \
				      struct uffdx_dev_stats)

/*
 * Events, read() from the context fd: fixed 64-byte messages, several per
 * call; read() blocks for the first only (EAGAIN under O_NONBLOCK) and
 * fails with EINVAL if the buffer cannot hold one message.
 */
#define UFFDX_EVENT_PAGEFAULT	0x01

/* uffdx_event.flags for UFFDX_EVENT_PAGEFAULT */
#define UFFDX_PF_WRITE		0x1U	/* write access */
#define UFFDX_PF_KERNEL		0x2U	/* taken in kernel mode */
/*
 * Taken by a task of another process than the one whose mapping faulted
 * (process_vm_readv(), /proc/pid/mem, ptrace): pid and tid are the
 * accessing task's, address is in the faulting mapping's mm.
 */
#define UFFDX_PF_REMOTE		0x4U
/* A write to a write-protected page of a UFFDX_REGION_CREATE_WP region. */
#define UFFDX_PF_WP		0x8U

struct uffdx_event {
	__u16 type;		/* UFFDX_EVENT_* */
	__u16 __pad;
	__u32 flags;		/* UFFDX_PF_* */
	__u64 address;		/* page-aligned address in the faulting mm */
	__u64 region_id;
	__u64 offset;		/* page-aligned byte offset in the region */
	__u32 pid;		/* faulting process, as the context's */
	__u32 tid;		/*   opener's pid namespace sees it */
	__u64 reserved[3];
};

#endif /* _UAPI_LINUX_UFFDX_H */
