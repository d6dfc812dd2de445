/* SPDX-License-Identifier: MIT */
/*
 * libuffdx: a thin library over /dev/uffdx (see libuffdx(7)).
 *
 * Conventions, as in liburing:
 *  - every function returns >= 0 on success or a negative errno value on
 *    failure, and never relies on (or promises anything about) errno;
 *  - the argument structs of <linux/uffdx.h> are used unchanged; the
 *    library fills their "size" field and zeroes their reserved fields;
 *  - what the library is, is checked with uffdx_check_version(); what the
 *    module and kernel support, with uffdx_query() or uffdx_api().
 */
#ifndef LIBUFFDX_H
#define LIBUFFDX_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <linux/uffdx.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Device node opened by uffdx_open(); the UFFDX_DEVICE variable overrides it. */
#define UFFDX_DEVICE_PATH	"/dev/uffdx"

/* The ioctl choke point: ioctl(fd, cmd, arg), or -errno. */
int uffdx_ioctl(int fd, unsigned long cmd, void *arg);

/* Contexts and feature negotiation. */
int uffdx_open(unsigned int flags);
int uffdx_api(int ctx, uint64_t features, struct uffdx_api *out);
int uffdx_open_api(uint64_t features, unsigned int flags,
		   struct uffdx_api *out);
int uffdx_query(struct uffdx_api *out);

/* Regions. */
int uffdx_region_create(int ctx, uint64_t len, uint32_t flags,
			uint64_t *region_id);

struct uffdx_region_map {
	int fd;			/* region fd, -1 when not mapped */
	uint64_t id;		/* region id in the creating context */
	void *addr;		/* MAP_SHARED mapping, NULL when not mapped */
	uint64_t len;		/* bytes */
};

int uffdx_region_map(int ctx, uint64_t len, uint32_t flags,
		     struct uffdx_region_map *map);
int uffdx_region_unmap(struct uffdx_region_map *map);
int uffdx_region_info(int region_fd, struct uffdx_region_info *info);

/*
 * Range operations on a region of the context.  Those with a "result"
 * store the kernel's progress report there when it is not NULL: bytes done
 * (all of len on success, part of it on -EAGAIN), or -errno when the
 * operation ran and did nothing (e.g. -EEXIST); 0 when the arguments were
 * rejected before it ran.
 */
int uffdx_arm(int ctx, uint64_t region, uint64_t offset, uint64_t len,
	      uint32_t mode);
int uffdx_disarm(int ctx, uint64_t region, uint64_t offset, uint64_t len);
int uffdx_copy(int ctx, uint64_t region, uint64_t offset, const void *src,
	       uint64_t len, uint32_t mode, int64_t *result);
int uffdx_zero(int ctx, uint64_t region, uint64_t offset, uint64_t len,
	       uint32_t mode, int64_t *result);
int uffdx_poison(int ctx, uint64_t region, uint64_t offset, uint64_t len,
		 uint32_t mode, int64_t *result);
int uffdx_wake(int ctx, uint64_t region, uint64_t offset, uint64_t len);
int uffdx_discard(int ctx, uint64_t region, uint64_t offset, uint64_t len,
		  int64_t *result);

/*
 * Moves (UFFDX_FEATURE_MOVE): no data is copied.  uffdx_move() names each
 * side by region id of ctx, or by region fd with UFFDX_MOVE_DST_FD /
 * UFFDX_MOVE_SRC_FD; uffdx_move_addr() by address in the caller's region
 * mappings.  "result" as for the range operations.  uffdx_move_vec()
 * moves nr independent entries, each with its own result, and stores the
 * total of bytes moved in *moved; -EAGAIN if any entry fell short.
 */
int uffdx_move(int ctx, uint64_t dst_region, uint64_t dst_offset,
	       uint64_t src_region, uint64_t src_offset, uint64_t len,
	       uint32_t mode, int64_t *result);
int uffdx_move_addr(int ctx, void *dst, const void *src, uint64_t len,
		    uint32_t mode, int64_t *result);
int uffdx_move_vec(int ctx, struct uffdx_move_entry *entries, unsigned int nr,
		   uint32_t mode, uint64_t *moved);

/*
 * Write protection (UFFDX_FEATURE_WP, UFFDX_FEATURE_WP_ASYNC), on regions
 * created with UFFDX_REGION_CREATE_WP or _WP_ASYNC.  uffdx_writeprotect()
 * protects (mode UFFDX_WP_PROTECT) or unprotects (mode 0, or
 * UFFDX_WP_DONTWAKE) a range by region id, uffdx_writeprotect_addr() by
 * address in the caller's mapping of a region of ctx; "result" as for the
 * range operations.  uffdx_scan() reports the pages of a WP_ASYNC range
 * written since they were protected (UFFDX_SCAN_REARM: and protects them
 * again, atomically); the caller fills the struct's inputs, the library
 * its size and reserved fields.
 */
int uffdx_writeprotect(int ctx, uint64_t region, uint64_t offset, uint64_t len,
		       uint32_t mode, int64_t *result);
int uffdx_writeprotect_addr(int ctx, void *addr, uint64_t len, uint32_t mode,
			    int64_t *result);
int uffdx_scan(int ctx, struct uffdx_scan *scan);

/*
 * A handler's loop in one call (UFFDX_IOC_RESOLVE): apply the nr
 * resolutions in order (each one's result in its "result"), then read up
 * to max_events events, waiting up to timeout_ns (< 0: no limit) for the
 * first unless flags has UFFDX_RESOLVE_NOWAIT.  Returns the number of
 * events read (0 on timeout), or -errno; a resolution that does not
 * complete stops the batch and its error is returned (-EAGAIN if it did
 * part), with *nr_done (if not NULL) the number that completed.
 */
int uffdx_resolve_wait(int ctx, struct uffdx_resolution *res, unsigned int nr,
		       unsigned int *nr_done, struct uffdx_event *ev,
		       unsigned int max_events, int64_t timeout_ns,
		       uint32_t flags);

/* Events: read up to max; returns how many, or -EAGAIN under O_NONBLOCK. */
int uffdx_read_events(int ctx, struct uffdx_event *ev, unsigned int max);

/*
 * Handler helper: resolve a page fault event by copying page_size bytes
 * from src_page to the faulting page (page_size 0: the system page size).
 * Returns 0 if it copied, 1 if the page was already populated (EEXIST, or
 * a partial copy) and it woke the faulters instead, or -errno.
 */
int uffdx_serve_copy(int ctx, const struct uffdx_event *ev,
		     const void *src_page, uint64_t page_size);

/*
 * The simulated device (UFFDX_FEATURE_DEVICE_EXCLUSIVE, _DEVICE_MIGRATE,
 * UFFDX_FEATURE_HMM_MIRROR): uffdx_device_create() returns a device fd
 * that mirrors the caller's address space.  Each command takes the
 * caller's struct uffdx_dev_cmd (addr, ptr, npages in; cpages, faults
 * out); the library sets its size and clears its outputs, the caller
 * fills the rest.  uffdx_dev_atomic() and uffdx_dev_stats() likewise.
 * uffdx_dev_read_events() reads up to n events; returns how many, or
 * -EAGAIN under O_NONBLOCK.
 */
int uffdx_device_create(int ctx, unsigned int flags);
int uffdx_dev_read(int dev, struct uffdx_dev_cmd *cmd);
int uffdx_dev_write(int dev, struct uffdx_dev_cmd *cmd);
int uffdx_dev_migrate_to_dev(int dev, struct uffdx_dev_cmd *cmd);
int uffdx_dev_migrate_to_sys(int dev, struct uffdx_dev_cmd *cmd);
int uffdx_dev_snapshot(int dev, struct uffdx_dev_cmd *cmd);
int uffdx_dev_exclusive(int dev, struct uffdx_dev_cmd *cmd);
int uffdx_dev_check_exclusive(int dev, struct uffdx_dev_cmd *cmd);
int uffdx_dev_release(int dev, struct uffdx_dev_cmd *cmd);
int uffdx_dev_atomic(int dev, struct uffdx_dev_atomic *a);
int uffdx_dev_stats(int dev, struct uffdx_dev_stats *st);
ssize_t uffdx_dev_read_events(int dev, struct uffdx_dev_event *ev, size_t n);

/* Diagnostics. */
const char *uffdx_strerror(int err);
const char *uffdx_feature_name(uint64_t feature);

/* Library version, e.g. "0.4.0", and a check like io_uring_check_version(). */
const char *uffdx_version(void);
int uffdx_check_version(int major, int minor);

#ifdef __cplusplus
}
#endif

#endif /* LIBUFFDX_H */
