/* SPDX-License-Identifier: MIT */
/*
 * libuffdx: thin wrappers around the /dev/uffdx ioctls.
 *
 * Every ioctl goes through uffdx_ioctl(), which turns the C library's
 * -1/errno into a negative return value; nothing else looks at errno
 * except right after the open/read/mmap/munmap system calls it makes.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "lib.h"

_Static_assert(sizeof(struct uffdx_event) == 64, "uffdx_event is 64 bytes");
_Static_assert(sizeof(struct uffdx_dev_event) == 64,
	       "uffdx_dev_event is 64 bytes");

UFFDX_EXPORT int uffdx_ioctl(int fd, unsigned long cmd, void *arg)
{
	int ret = ioctl(fd, cmd, arg);

	return ret < 0 ? -errno : ret;
}

/* ---- contexts ------------------------------------------------------------ */

static const char *uffdx_device_path(void)
{
	/* secure_getenv: a set-id program does not open a path from the user. */
	const char *path = secure_getenv("UFFDX_DEVICE");

	return path && *path ? path : UFFDX_DEVICE_PATH;
}

UFFDX_EXPORT int uffdx_open(unsigned int flags)
{
	int fd;

	if (flags & ~(unsigned int)O_NONBLOCK)
		return -EINVAL;
	fd = open(uffdx_device_path(), O_RDWR | O_CLOEXEC | (int)flags);
	return fd < 0 ? -errno : fd;
}

UFFDX_EXPORT int uffdx_api(int ctx, uint64_t features, struct uffdx_api *out)
{
	struct uffdx_api api;
	int ret;

	memset(&api, 0, sizeof(api));
	api.size = sizeof(api);
	api.api = UFFDX_API_VERSION;
	api.features = features;
	ret = uffdx_ioctl(ctx, UFFDX_IOC_API, &api);
	if (ret < 0)
		return ret;
	if (out)
		*out = api;
	return 0;
}

UFFDX_EXPORT int uffdx_open_api(uint64_t features, unsigned int flags,
				struct uffdx_api *out)
{
	int fd, ret;

	fd = uffdx_open(flags);
	if (fd < 0)
		return fd;
	ret = uffdx_api(fd, features, out);
	if (ret < 0) {
		close(fd);
		return ret;
	}
	return fd;
}

/*
 * What the module supports: a context negotiates nothing to learn the
 * features, then a second one negotiates all of them (but kernel faults,
 * which need CAP_SYS_PTRACE) so that "ioctls" lists what they unlock.
 */
UFFDX_EXPORT int uffdx_query(struct uffdx_api *out)
{
	struct uffdx_api all;
	int fd;

	fd = uffdx_open_api(0, 0, out);
	if (fd < 0)
		return fd;
	close(fd);
	fd = uffdx_open_api(out->features & ~UFFDX_FEATURE_KERNEL_FAULTS, 0,
			    &all);
	if (fd >= 0) {
		out->ioctls = all.ioctls;
		close(fd);
	}
	return 0;
}

/* ---- regions ------------------------------------------------------------- */

UFFDX_EXPORT int uffdx_region_create(int ctx, uint64_t len, uint32_t flags,
				     uint64_t *region_id)
{
	struct uffdx_region_create rc;
	int ret;

	memset(&rc, 0, sizeof(rc));
	rc.size = sizeof(rc);
	rc.flags = flags;
	rc.len = len;
	rc.fd = -1;
	ret = uffdx_ioctl(ctx, UFFDX_IOC_REGION_CREATE, &rc);
	if (ret < 0)
		return ret;
	if (rc.fd < 0)		/* cannot happen with a correct module */
		return -EIO;
	if (region_id)
		*region_id = rc.region_id;
	return rc.fd;
}

static void region_map_reset(struct uffdx_region_map *map)
{
	map->fd = -1;
	map->id = 0;
	map->addr = NULL;
	map->len = 0;
}

UFFDX_EXPORT int uffdx_region_map(int ctx, uint64_t len, uint32_t flags,
				  struct uffdx_region_map *map)
{
	uint64_t id = 0;
	void *addr;
	int fd, ret;

	if (!map)
		return -EINVAL;
	region_map_reset(map);
	if (len > SIZE_MAX)
		return -EOVERFLOW;

	fd = uffdx_region_create(ctx, len, flags, &id);
	if (fd < 0)
		return fd;
	addr = mmap(NULL, (size_t)len, PROT_READ | PROT_WRITE, MAP_SHARED,
		    fd, 0);
	if (addr == MAP_FAILED) {
		ret = -errno;
		close(fd);
		return ret;
	}
	map->fd = fd;
	map->id = id;
	map->addr = addr;
	map->len = len;
	return 0;
}

UFFDX_EXPORT int uffdx_region_unmap(struct uffdx_region_map *map)
{
	int ret = 0;

	if (!map)
		return -EINVAL;
	if (map->addr && map->addr != MAP_FAILED &&
	    munmap(map->addr, (size_t)map->len) < 0)
		ret = -errno;
	if (map->fd >= 0)
		close(map->fd);	/* the fd is gone even if close() fails */
	region_map_reset(map);
	return ret;
}

UFFDX_EXPORT int uffdx_region_info(int region_fd, struct uffdx_region_info *info)
{
	struct uffdx_region_info ri;
	int ret;

	memset(&ri, 0, sizeof(ri));
	ri.size = sizeof(ri);
	ret = uffdx_ioctl(region_fd, UFFDX_IOC_REGION_INFO, &ri);
	if (ret < 0)
		return ret;
	if (info)
		*info = ri;
	return 0;
}

/* ---- range operations ---------------------------------------------------- */

static int uffdx_range_op(int ctx, unsigned long cmd, uint64_t region,
			  uint64_t offset, uint64_t len, uint64_t src,
			  uint32_t mode, int64_t *result)
{
	struct uffdx_range r;
	int ret;

	memset(&r, 0, sizeof(r));
	r.size = sizeof(r);
	r.mode = mode;
	r.region_id = region;
	r.offset = offset;
	r.len = len;
	r.src = src;
	ret = uffdx_ioctl(ctx, cmd, &r);
	/* The module reports whenever it ran the operation; else 0. */
	if (result)
		*result = r.result;
	return ret < 0 ? ret : 0;
}

UFFDX_EXPORT int uffdx_arm(int ctx, uint64_t region, uint64_t offset,
			   uint64_t len, uint32_t mode)
{
	return uffdx_range_op(ctx, UFFDX_IOC_ARM, region, offset, len, 0, mode,
			      NULL);
}

UFFDX_EXPORT int uffdx_disarm(int ctx, uint64_t region, uint64_t offset,
			      uint64_t len)
{
	/* UFFDX_ARM_MISSING is the only arm mode: disarm what can be armed. */
	return uffdx_range_op(ctx, UFFDX_IOC_DISARM, region, offset, len, 0,
			      UFFDX_ARM_MISSING, NULL);
}

UFFDX_EXPORT int uffdx_copy(int ctx, uint64_t region, uint64_t offset,
			    const void *src, uint64_t len, uint32_t mode,
			    int64_t *result)
{
	return uffdx_range_op(ctx, UFFDX_IOC_COPY, region, offset, len,
			      (uint64_t)(uintptr_t)src, mode, result);
}

UFFDX_EXPORT int uffdx_zero(int ctx, uint64_t region, uint64_t offset,
			    uint64_t len, uint32_t mode, int64_t *result)
{
	return uffdx_range_op(ctx, UFFDX_IOC_ZERO, region, offset, len, 0,
			      mode, result);
}

UFFDX_EXPORT int uffdx_poison(int ctx, uint64_t region, uint64_t offset,
			      uint64_t len, uint32_t mode, int64_t *result)
{
	return uffdx_range_op(ctx, UFFDX_IOC_POISON, region, offset, len, 0,
			      mode, result);
}

UFFDX_EXPORT int uffdx_wake(int ctx, uint64_t region, uint64_t offset,
			    uint64_t len)
{
	return uffdx_range_op(ctx, UFFDX_IOC_WAKE, region, offset, len, 0, 0,
			      NULL);
}

UFFDX_EXPORT int uffdx_discard(int ctx, uint64_t region, uint64_t offset,
			       uint64_t len, int64_t *result)
{
	return uffdx_range_op(ctx, UFFDX_IOC_DISCARD, region, offset, len, 0,
			      0, result);
}

/* ---- moves --------------------------------------------------------------- */

UFFDX_EXPORT int uffdx_move(int ctx, uint64_t dst_region, uint64_t dst_offset,
			    uint64_t src_region, uint64_t src_offset,
			    uint64_t len, uint32_t mode, int64_t *result)
{
	struct uffdx_move m;
	int ret;

	memset(&m, 0, sizeof(m));
	m.size = sizeof(m);
	m.mode = mode;
	m.dst_region = dst_region;
	m.dst_offset = dst_offset;
	m.src_region = src_region;
	m.src_offset = src_offset;
	m.len = len;
	ret = uffdx_ioctl(ctx, UFFDX_IOC_MOVE, &m);
	if (result)
		*result = m.result;
	return ret < 0 ? ret : 0;
}

UFFDX_EXPORT int uffdx_move_addr(int ctx, void *dst, const void *src,
				 uint64_t len, uint32_t mode, int64_t *result)
{
	struct uffdx_move_addr m;
	int ret;

	memset(&m, 0, sizeof(m));
	m.size = sizeof(m);
	m.mode = mode;
	m.dst = (uint64_t)(uintptr_t)dst;
	m.src = (uint64_t)(uintptr_t)src;
	m.len = len;
	ret = uffdx_ioctl(ctx, UFFDX_IOC_MOVE_ADDR, &m);
	if (result)
		*result = m.result;
	return ret < 0 ? ret : 0;
}

UFFDX_EXPORT int uffdx_move_vec(int ctx, struct uffdx_move_entry *entries,
				unsigned int nr, uint32_t mode, uint64_t *moved)
{
	struct uffdx_move_vec v;
	int ret;

	memset(&v, 0, sizeof(v));
	v.size = sizeof(v);
	v.mode = mode;
	v.entries = (uint64_t)(uintptr_t)entries;
	v.nr_entries = nr;
	v.entry_size = sizeof(*entries);
	ret = uffdx_ioctl(ctx, UFFDX_IOC_MOVE_VEC, &v);
	if (moved)
		*moved = v.moved;
	return ret < 0 ? ret : 0;
}

/* ---- write protection ---------------------------------------------------- */

UFFDX_EXPORT int uffdx_writeprotect(int ctx, uint64_t region, uint64_t offset,
				    uint64_t len, uint32_t mode,
				    int64_t *result)
{
	return uffdx_range_op(ctx, UFFDX_IOC_WRITEPROTECT, region, offset, len,
			      0, mode, result);
}

UFFDX_EXPORT int uffdx_writeprotect_addr(int ctx, void *addr, uint64_t len,
					 uint32_t mode, int64_t *result)
{
	struct uffdx_writeprotect_addr w;
	int ret;

	memset(&w, 0, sizeof(w));
	w.size = sizeof(w);
	w.mode = mode;
	w.addr = (uint64_t)(uintptr_t)addr;
	w.len = len;
	ret = uffdx_ioctl(ctx, UFFDX_IOC_WRITEPROTECT_ADDR, &w);
	if (result)
		*result = w.result;
	return ret < 0 ? ret : 0;
}

UFFDX_EXPORT int uffdx_scan(int ctx, struct uffdx_scan *scan)
{
	int ret;

	if (!scan)
		return -EINVAL;
	/* The caller's struct is the argument: outputs read 0 if rejected. */
	scan->size = sizeof(*scan);
	scan->scanned = 0;
	scan->nr_out = 0;
	scan->written = 0;
	memset(scan->reserved, 0, sizeof(scan->reserved));
	ret = uffdx_ioctl(ctx, UFFDX_IOC_SCAN, scan);
	return ret < 0 ? ret : 0;
}

/* ---- resolve and wait ---------------------------------------------------- */

UFFDX_EXPORT int uffdx_resolve_wait(int ctx, struct uffdx_resolution *res,
				    unsigned int nr, unsigned int *nr_done,
				    struct uffdx_event *ev,
				    unsigned int max_events,
				    int64_t timeout_ns, uint32_t flags)
{
	struct uffdx_resolve rs;
	int ret;

	memset(&rs, 0, sizeof(rs));
	rs.size = sizeof(rs);
	rs.flags = flags;
	rs.resolutions = (uint64_t)(uintptr_t)res;
	rs.nr_resolutions = nr;
	rs.resolution_size = sizeof(*res);
	rs.events = (uint64_t)(uintptr_t)ev;
	rs.max_events = max_events;
	rs.timeout_ns = timeout_ns;
	ret = uffdx_ioctl(ctx, UFFDX_IOC_RESOLVE, &rs);
	if (nr_done)
		*nr_done = rs.nr_done;
	return ret < 0 ? ret : (int)rs.nr_events;
}

/* ---- events -------------------------------------------------------------- */

UFFDX_EXPORT int uffdx_read_events(int ctx, struct uffdx_event *ev,
				   unsigned int max)
{
	ssize_t ret;

	if (!ev || !max)
		return -EINVAL;
	if (max > INT_MAX / sizeof(*ev))
		max = INT_MAX / sizeof(*ev);
	ret = read(ctx, ev, (size_t)max * sizeof(*ev));
	if (ret < 0)
		return -errno;
	if ((size_t)ret % sizeof(*ev))	/* the ABI promises whole messages */
		return -EIO;
	return (int)((size_t)ret / sizeof(*ev));
}

UFFDX_EXPORT int uffdx_serve_copy(int ctx, const struct uffdx_event *ev,
				  const void *src_page, uint64_t page_size)
{
	uint64_t offset;
	int ret;

	if (!ev || !src_page || ev->type != UFFDX_EVENT_PAGEFAULT)
		return -EINVAL;
	if (!page_size) {
		long ps = sysconf(_SC_PAGESIZE);

		if (ps <= 0)
			return -EINVAL;
		page_size = (uint64_t)ps;
	}
	if (page_size & (page_size - 1))
		return -EINVAL;
	offset = ev->offset & ~(page_size - 1);

	ret = uffdx_copy(ctx, ev->region_id, offset, src_page, page_size, 0,
			 NULL);
	if (ret == 0)
		return 0;
	if (ret != -EEXIST && ret != -EAGAIN)
		return ret;
	/*
	 * Someone else populated the page (or, for a multi-page unit, part
	 * of it) first: the kernel's userfaultfd convention is to wake the
	 * faulters, who then find the page present.
	 */
	ret = uffdx_wake(ctx, ev->region_id, offset, page_size);
	return ret < 0 ? ret : 1;
}

/* ---- the simulated device ------------------------------------------------ */

UFFDX_EXPORT int uffdx_device_create(int ctx, unsigned int flags)
{
	struct uffdx_device_create dc;
	int ret;

	memset(&dc, 0, sizeof(dc));
	dc.size = sizeof(dc);
	dc.flags = flags;
	dc.fd = -1;
	ret = uffdx_ioctl(ctx, UFFDX_IOC_DEVICE_CREATE, &dc);
	if (ret < 0)
		return ret;
	if (dc.fd < 0)		/* cannot happen with a correct module */
		return -EIO;
	return dc.fd;
}

/*
 * The eight commands on struct uffdx_dev_cmd: the caller's struct is the
 * argument; its outputs read 0 if the call is rejected.
 */
static int uffdx_dev_cmd_op(int dev, unsigned long cmd,
			    struct uffdx_dev_cmd *c)
{
	int ret;

	if (!c)
		return -EINVAL;
	c->size = sizeof(*c);
	c->cpages = 0;
	c->faults = 0;
	memset(c->reserved, 0, sizeof(c->reserved));
	ret = uffdx_ioctl(dev, cmd, c);
	return ret < 0 ? ret : 0;
}

UFFDX_EXPORT int uffdx_dev_read(int dev, struct uffdx_dev_cmd *cmd)
{
	return uffdx_dev_cmd_op(dev, UFFDX_IOC_DEV_READ, cmd);
}

UFFDX_EXPORT int uffdx_dev_write(int dev, struct uffdx_dev_cmd *cmd)
{
	return uffdx_dev_cmd_op(dev, UFFDX_IOC_DEV_WRITE, cmd);
}

UFFDX_EXPORT int uffdx_dev_migrate_to_dev(int dev, struct uffdx_dev_cmd *cmd)
{
	return uffdx_dev_cmd_op(dev, UFFDX_IOC_DEV_MIGRATE_TO_DEV, cmd);
}

UFFDX_EXPORT int uffdx_dev_migrate_to_sys(int dev, struct uffdx_dev_cmd *cmd)
{
	return uffdx_dev_cmd_op(dev, UFFDX_IOC_DEV_MIGRATE_TO_SYS, cmd);
}

UFFDX_EXPORT int uffdx_dev_snapshot(int dev, struct uffdx_dev_cmd *cmd)
{
	return uffdx_dev_cmd_op(dev, UFFDX_IOC_DEV_SNAPSHOT, cmd);
}

UFFDX_EXPORT int uffdx_dev_exclusive(int dev, struct uffdx_dev_cmd *cmd)
{
	return uffdx_dev_cmd_op(dev, UFFDX_IOC_DEV_EXCLUSIVE, cmd);
}

UFFDX_EXPORT int uffdx_dev_check_exclusive(int dev, struct uffdx_dev_cmd *cmd)
{
	return uffdx_dev_cmd_op(dev, UFFDX_IOC_DEV_CHECK_EXCLUSIVE, cmd);
}

UFFDX_EXPORT int uffdx_dev_release(int dev, struct uffdx_dev_cmd *cmd)
{
	return uffdx_dev_cmd_op(dev, UFFDX_IOC_DEV_RELEASE, cmd);
}

UFFDX_EXPORT int uffdx_dev_atomic(int dev, struct uffdx_dev_atomic *a)
{
	int ret;

	if (!a)
		return -EINVAL;
	a->size = sizeof(*a);
	a->old = 0;
	a->faults = 0;
	memset(a->reserved, 0, sizeof(a->reserved));
	ret = uffdx_ioctl(dev, UFFDX_IOC_DEV_ATOMIC, a);
	return ret < 0 ? ret : 0;
}

UFFDX_EXPORT int uffdx_dev_stats(int dev, struct uffdx_dev_stats *st)
{
	int ret;

	if (!st)
		return -EINVAL;
	/* Every field but size and flags is an output: all read 0 if rejected. */
	memset(st, 0, sizeof(*st));
	st->size = sizeof(*st);
	ret = uffdx_ioctl(dev, UFFDX_IOC_DEV_STATS, st);
	return ret < 0 ? ret : 0;
}

UFFDX_EXPORT ssize_t uffdx_dev_read_events(int dev, struct uffdx_dev_event *ev,
					   size_t n)
{
	ssize_t ret;

	if (!ev || !n)
		return -EINVAL;
	if (n > SSIZE_MAX / sizeof(*ev))
		n = SSIZE_MAX / sizeof(*ev);
	ret = read(dev, ev, n * sizeof(*ev));
	if (ret < 0)
		return -errno;
	if ((size_t)ret % sizeof(*ev))	/* the ABI promises whole messages */
		return -EIO;
	return (ssize_t)((size_t)ret / sizeof(*ev));
}

/* ---- diagnostics --------------------------------------------------------- */

UFFDX_EXPORT const char *uffdx_strerror(int err)
{
	if (err < 0)
		err = -err;

	switch (err) {
	case 0:
		return "success";
	case EEXIST:
		return "page already populated: wake it instead (EEXIST)";
	case EAGAIN:
		return "partial progress (see result) or retry: no event or "
		       "page ready yet (EAGAIN)";
	case ENOTTY:
		return "not a uffdx fd, or an ioctl this module does not know "
		       "(ENOTTY)";
	case EINVAL:
		return "invalid argument: API not negotiated yet, unknown "
		       "feature, flag or mode, non-zero reserved field, or a "
		       "range that is zero, unaligned, overflowing or outside "
		       "the region (EINVAL)";
	case E2BIG:
		return "argument struct from a newer header with fields this "
		       "module does not know set (E2BIG)";
	case ENOENT:
		return "no such region in this context, or no uffdx device "
		       "node (ENOENT)";
	case ENOMEM:
		return "region memory limit (max_pages_per_context) or memory "
		       "cgroup limit reached (ENOMEM)";
	case EPERM:
		return "operation not permitted: the kernel-faults feature "
		       "needs CAP_SYS_PTRACE, a device serves only the process "
		       "it mirrors, or a read-only mapping (EPERM)";
	case ESRCH:
		return "the process a device mirrors has exited (ESRCH)";
	case EACCES:
		return "permission denied opening the uffdx device (EACCES)";
	case EBADF:
		return "bad file descriptor: not an open context or region "
		       "fd (EBADF)";
	case EFAULT:
		return "bad address, or a copy source that faulted in kernel "
		       "mode without the kernel-faults feature (EFAULT)";
	case ENODEV:
		return "uffdx module not loaded (ENODEV)";
	case ENXIO:
		return "uffdx module not loaded (ENXIO)";
	case EINTR:
		return "interrupted by a signal: retry (EINTR)";
	case EOVERFLOW:
		return "length too large for this address space (EOVERFLOW)";
	default:
		return strerror(err);
	}
}

static const struct {
	uint64_t bit;
	const char *name;
} uffdx_features[] = {
	{ UFFDX_FEATURE_REGIONS,		"regions" },
	{ UFFDX_FEATURE_MISSING,		"missing" },
	{ UFFDX_FEATURE_POISON,			"poison" },
	{ UFFDX_FEATURE_KERNEL_FAULTS,		"kernel-faults" },
	{ UFFDX_FEATURE_MOVE,			"move" },
	{ UFFDX_FEATURE_MOVE_HUGE,		"move-huge" },
	{ UFFDX_FEATURE_WP,			"wp" },
	{ UFFDX_FEATURE_WP_ASYNC,		"wp-async" },
	{ UFFDX_FEATURE_DEVICE_EXCLUSIVE,	"device-exclusive" },
	{ UFFDX_FEATURE_DEVICE_MIGRATE,		"device-migrate" },
	{ UFFDX_FEATURE_HMM_MIRROR,		"hmm-mirror" },
	{ UFFDX_FEATURE_HMM_EXCLUSIVE,		"hmm-exclusive" },
	{ UFFDX_FEATURE_HMM_MIGRATE,		"hmm-migrate" },
};

UFFDX_EXPORT const char *uffdx_feature_name(uint64_t feature)
{
	size_t i;

	for (i = 0; i < sizeof(uffdx_features) / sizeof(uffdx_features[0]); i++)
		if (uffdx_features[i].bit == feature)
			return uffdx_features[i].name;
	return NULL;
}

/* ---- version ------------------------------------------------------------- */

UFFDX_EXPORT const char *uffdx_version(void)
{
	return LIBUFFDX_VERSION;
}

UFFDX_EXPORT int uffdx_check_version(int major, int minor)
{
	if (major < 0 || minor < 0)
		return -EINVAL;
	if (LIBUFFDX_VERSION_MAJOR > major ||
	    (LIBUFFDX_VERSION_MAJOR == major && LIBUFFDX_VERSION_MINOR >= minor))
		return 0;
	return -EINVAL;
}
