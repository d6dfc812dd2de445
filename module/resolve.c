// SPDX-License-Identifier: GPL-2.0
/*
 * uffdx RESOLVE: a fault handler's loop in one system call.  Apply a batch
 * of resolutions (COPY, ZERO, POISON, WAKE, MOVE, WRITEPROTECT) in order,
 * then take up to N events off the queue, sleeping until one is pending.
 * In the steady state a handler makes one crossing per fault where a
 * userfaultfd handler makes two or three (poll, read, UFFDIO_COPY).
 *
 * Each resolution goes through the same code as its own ioctl
 * (uffdx_range_apply(), uffdx_move_into()); events through the same queue
 * as read() (ctx.c), so an event is delivered once, to one reader.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/hrtimer.h>
#include <linux/ktime.h>
#include <linux/sched/signal.h>
#include <linux/uaccess.h>
#include <linux/wait.h>

#include "uffdx.h"

/* Apply one resolution; its progress report goes to res->result. */
static int uffdx_resolve_one(struct uffdx_ctx *ctx,
			     struct uffdx_resolution *res)
{
	struct uffdx_range r;
	bool report = false;
	int ret;

	switch (res->op) {
	case _UFFDX_COPY:
	case _UFFDX_ZERO:
	case _UFFDX_POISON:
	case _UFFDX_WAKE:
	case _UFFDX_MOVE:
	case _UFFDX_WRITEPROTECT:
		break;
	default:
		res->result = -EINVAL;
		return -EINVAL;
	}
	/* The context must have negotiated the op's own ioctl. */
	if (!(ctx->ioctls & BIT_ULL(res->op))) {
		res->result = -EINVAL;
		return -EINVAL;
	}

	if (res->op == _UFFDX_MOVE) {
		res->result = 0;
		ret = uffdx_move_into(ctx, res->region_id, res->offset,
				      res->src, res->len, res->mode,
				      &res->result);
		if (ret && !res->result)
			res->result = ret;
		return ret;
	}

	r = (struct uffdx_range) {
		.size = sizeof(r),
		.mode = res->mode,
		.region_id = res->region_id,
		.offset = res->offset,
		.len = res->len,
		.src = res->src,
	};
	ret = uffdx_range_apply(ctx, res->op, &r, &report);
	if (report)
		res->result = r.result;
	else
		res->result = ret ? ret : (s64)res->len;
	return ret;
}

/*
 * The batch, in order, stopping at the first resolution that does not
 * complete.  *@done counts those that did, also the one whose result
 * could not be written back (it was applied: doing it again would fail).
 */
static int uffdx_resolve_batch(struct uffdx_ctx *ctx,
			       const struct uffdx_resolve *rs, u32 *done)
{
	struct uffdx_resolution __user *ures =
		u64_to_user_ptr(rs->resolutions);
	struct uffdx_resolution res;
	u32 i;
	int ret;

	for (i = 0; i < rs->nr_resolutions; i++) {
		if (copy_from_user(&res, &ures[i], sizeof(res)))
			return -EFAULT;
		ret = uffdx_resolve_one(ctx, &res);
		if (!ret)
			*done = i + 1;
		if (put_user(res.result, &ures[i].result))
			return -EFAULT;
		if (ret)
			return ret;
	}
	return 0;
}

/* The condition a RESOLVE sleeps on (lockless, see ctx.c). */
static bool uffdx_ready(struct uffdx_ctx *ctx)
{
	return uffdx_events_pending(ctx);
}

/* Sleep until an event is pending: 0, -ETIME at @deadline, or -EINTR. */
static int uffdx_resolve_sleep(struct uffdx_ctx *ctx, s64 timeout_ns,
			       ktime_t deadline)
{
	wait_queue_head_t *wq = &ctx->read_wqh;
	ktime_t left;
	int ret;

	if (timeout_ns < 0)
		return wait_event_interruptible(*wq, uffdx_ready(ctx)) ?
		       -EINTR : 0;
	left = ktime_sub(deadline, ktime_get());
	if (ktime_to_ns(left) <= 0)
		return -ETIME;
	ret = wait_event_interruptible_hrtimeout(*wq, uffdx_ready(ctx), left);
	if (ret == -ETIME)
		return ret;
	return ret ? -EINTR : 0;
}

/*
 * Take up to rs->max_events events, waiting for the first as the flags
 * and timeout say.  An event that cannot be copied out is put back (as
 * read() does), so a bad buffer loses nothing.  A signal ends the wait
 * with -EINTR, never a restart: the batch has been applied already.
 */
static int uffdx_resolve_events(struct uffdx_ctx *ctx,
				const struct uffdx_resolve *rs, bool nonblock,
				u32 *nr)
{
	struct uffdx_event __user *uev = u64_to_user_ptr(rs->events);
	ktime_t deadline = 0;
	struct uffdx_event ev;
	u64 seq;
	int ret;

	if (rs->timeout_ns > 0)
		deadline = ktime_add_ns(ktime_get(), rs->timeout_ns);
	for (;;) {
		while (*nr < rs->max_events) {
			if (uffdx_read_event(ctx, &ev, &seq))
				break;
			if (copy_to_user(&uev[*nr], &ev, sizeof(ev))) {
				uffdx_unread_event(ctx, seq);
				return *nr ? 0 : -EFAULT;
			}
			(*nr)++;
		}
		if (*nr || !rs->max_events || nonblock ||
		    (rs->flags & UFFDX_RESOLVE_NOWAIT) || !rs->timeout_ns)
			return 0;
		ret = uffdx_resolve_sleep(ctx, rs->timeout_ns, deadline);
		if (ret == -ETIME)
			return 0;
		if (ret)
			return ret;
	}
}

/* An O_NONBLOCK context file never sleeps here either, as with read(). */
long uffdx_resolve(struct uffdx_ctx *ctx, struct file *file,
		   struct uffdx_resolve *rs, void __user *uarg)
{
	struct uffdx_resolve __user *urs = uarg;
	u32 done = 0, nr = 0;
	int ret;

	if (rs->flags & ~UFFDX_RESOLVE_NOWAIT || rs->__pad ||
	    memchr_inv(rs->reserved, 0, sizeof(rs->reserved)) ||
	    rs->resolution_size != sizeof(struct uffdx_resolution) ||
	    rs->nr_resolutions > UFFDX_RESOLVE_MAX ||
	    rs->max_events > UFFDX_RESOLVE_MAX)
		return -EINVAL;

	ret = uffdx_resolve_batch(ctx, rs, &done);
	if (!ret)
		ret = uffdx_resolve_events(ctx, rs,
					   file->f_flags & O_NONBLOCK, &nr);
	if (put_user(done, &urs->nr_done) || put_user(nr, &urs->nr_events))
		ret = -EFAULT;
	return ret;
}
