// SPDX-License-Identifier: GPL-2.0
/*
 * uffdx contexts: one per open() of /dev/uffdx.  API negotiation, the ioctl
 * dispatcher for the size-extensible argument structs, and the event queue
 * read with read() and poll().
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/capability.h>
#include <linux/memcontrol.h>
#include <linux/module.h>
#include <linux/pid_namespace.h>
#include <linux/poll.h>
#include <linux/sched/signal.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

#include "uffdx.h"

/* What this build implements; masked by what the kernel offers. */
u64 uffdx_supported_features(void)
{
	return UFFDX_FEATURE_REGIONS | UFFDX_FEATURE_MISSING |
	       UFFDX_FEATURE_POISON | UFFDX_FEATURE_KERNEL_FAULTS;
}

#define UFFDX_BIT(nr)	BIT_ULL(nr)
#define UFFDX_CTX_IOCTLS (UFFDX_BIT(_UFFDX_API) |			\
			  UFFDX_BIT(_UFFDX_REGION_CREATE) |		\
			  UFFDX_BIT(_UFFDX_ARM) | UFFDX_BIT(_UFFDX_DISARM) |	\
			  UFFDX_BIT(_UFFDX_COPY) | UFFDX_BIT(_UFFDX_ZERO) |	\
			  UFFDX_BIT(_UFFDX_POISON) | UFFDX_BIT(_UFFDX_WAKE) |	\
			  UFFDX_BIT(_UFFDX_DISCARD))

static void uffdx_ctx_free(struct kref *kref)
{
	struct uffdx_ctx *ctx = container_of(kref, struct uffdx_ctx, kref);

	WARN_ON_ONCE(!xa_empty(&ctx->regions));
	WARN_ON_ONCE(atomic_long_read(&ctx->nr_pages));
	xa_destroy(&ctx->regions);
	uffdx_put_memcg(ctx->memcg);
	put_pid_ns(ctx->pidns);
	kfree(ctx);
}

void uffdx_ctx_put(struct uffdx_ctx *ctx)
{
	kref_put(&ctx->kref, uffdx_ctx_free);
}

bool uffdx_ctx_ready(struct uffdx_ctx *ctx)
{
	return atomic_read_acquire(&ctx->api_state) == UFFDX_API_READY;
}

static int uffdx_ctx_open(struct inode *inode, struct file *file)
{
	struct uffdx_ctx *ctx;

	ctx = kzalloc(sizeof(*ctx), GFP_KERNEL_ACCOUNT);
	if (!ctx)
		return -ENOMEM;

	kref_init(&ctx->kref);
	atomic_set(&ctx->api_state, UFFDX_API_NEW);
	xa_init_flags(&ctx->regions, XA_FLAGS_ALLOC1);
	spin_lock_init(&ctx->fault_lock);
	INIT_LIST_HEAD(&ctx->fault_pending);
	INIT_LIST_HEAD(&ctx->fault_delivered);
	init_waitqueue_head(&ctx->read_wqh);
	atomic_long_set(&ctx->nr_pages, 0);
	ctx->max_pages = READ_ONCE(uffdx_max_pages_per_context);
	ctx->memcg = uffdx_get_memcg(current->mm);
	ctx->pidns = get_pid_ns(task_active_pid_ns(current));

	file->private_data = ctx;
	return nonseekable_open(inode, file);
}

/*
 * Closing the context releases it: every fault asleep on one of its
 * regions wakes and, finding the context released, raises SIGBUS; so do
 * later faults on its armed holes.  Regions live on with their data.
 */
static int uffdx_ctx_release(struct inode *inode, struct file *file)
{
	struct uffdx_ctx *ctx = file->private_data;

	uffdx_wake_all(ctx);
	uffdx_ctx_put(ctx);
	return 0;
}

static int uffdx_api(struct uffdx_ctx *ctx, struct uffdx_api *api,
		     void __user *uarg, u32 usize)
{
	u64 supported = uffdx_supported_features();
	u64 wanted = api->features;
	int ret;

	if (api->api != UFFDX_API_VERSION || api->flags ||
	    memchr_inv(api->reserved, 0, sizeof(api->reserved)))
		return -EINVAL;
	if (wanted & ~supported)
		return -EINVAL;
	if ((wanted & UFFDX_FEATURE_KERNEL_FAULTS) && !capable(CAP_SYS_PTRACE))
		return -EPERM;

	/* One negotiation per context; a failed one may be retried. */
	if (atomic_cmpxchg(&ctx->api_state, UFFDX_API_NEW, UFFDX_API_BUSY) !=
	    UFFDX_API_NEW)
		return -EINVAL;

	api->features = supported;
	api->ioctls = UFFDX_CTX_IOCTLS;
	api->module_version = UFFDX_VERSION_CODE;
	ret = uffdx_copy_out(uarg, usize, api, sizeof(*api));
	if (ret) {
		atomic_set(&ctx->api_state, UFFDX_API_NEW);
		return ret;
	}
	ctx->features = wanted;
	atomic_set_release(&ctx->api_state, UFFDX_API_READY);
	return 0;
}

/* Argument structs, by ioctl number: size of version 1 and of this build. */
union uffdx_ioctl_arg {
	struct uffdx_api api;
	struct uffdx_region_create create;
	struct uffdx_range range;
};

struct uffdx_ioctl_desc {
	size_t min_size;
	size_t size;
};

#define UFFDX_IOCTL_DESC(nr, type) \
	[nr] = { .min_size = sizeof(type), .size = sizeof(type) }

static const struct uffdx_ioctl_desc uffdx_ctx_ioctls[] = {
	UFFDX_IOCTL_DESC(_UFFDX_API, struct uffdx_api),
	UFFDX_IOCTL_DESC(_UFFDX_REGION_CREATE, struct uffdx_region_create),
	UFFDX_IOCTL_DESC(_UFFDX_ARM, struct uffdx_range),
	UFFDX_IOCTL_DESC(_UFFDX_DISARM, struct uffdx_range),
	UFFDX_IOCTL_DESC(_UFFDX_COPY, struct uffdx_range),
	UFFDX_IOCTL_DESC(_UFFDX_ZERO, struct uffdx_range),
	UFFDX_IOCTL_DESC(_UFFDX_POISON, struct uffdx_range),
	UFFDX_IOCTL_DESC(_UFFDX_WAKE, struct uffdx_range),
	UFFDX_IOCTL_DESC(_UFFDX_DISCARD, struct uffdx_range),
};

/*
 * Copy in a size-extensible argument: the struct's own leading __u32 size
 * says how much user space passed (the iommufd model).  Shorter than
 * version 1 is -EINVAL; longer is accepted if the unknown tail is zero
 * (copy_struct_from_user(), else -E2BIG); more than a page is -E2BIG.
 */
int uffdx_copy_in(void *karg, size_t min_size, size_t ksize,
		  void __user *uarg, u32 *usize)
{
	int ret;

	if (get_user(*usize, (u32 __user *)uarg))
		return -EFAULT;
	if (*usize < min_size)
		return -EINVAL;
	if (*usize > PAGE_SIZE)
		return -E2BIG;
	ret = copy_struct_from_user(karg, ksize, uarg, *usize);
	if (ret)
		return ret;
	/* Our copy says what we understood, not what the caller sent. */
	*(u32 *)karg = ksize;
	return 0;
}

static long uffdx_ctx_ioctl(struct file *file, unsigned int cmd,
			    unsigned long arg)
{
	struct uffdx_ctx *ctx = file->private_data;
	void __user *uarg = (void __user *)arg;
	const struct uffdx_ioctl_desc *desc;
	unsigned int nr = _IOC_NR(cmd);
	union uffdx_ioctl_arg karg;
	u32 usize;
	int ret;

	if (_IOC_TYPE(cmd) != UFFDX_IOC_MAGIC ||
	    _IOC_DIR(cmd) != (_IOC_READ | _IOC_WRITE) ||
	    nr >= ARRAY_SIZE(uffdx_ctx_ioctls) || !uffdx_ctx_ioctls[nr].size)
		return -ENOTTY;
	if (nr != _UFFDX_API && !uffdx_ctx_ready(ctx))
		return -EINVAL;

	desc = &uffdx_ctx_ioctls[nr];
	ret = uffdx_copy_in(&karg, desc->min_size, desc->size, uarg, &usize);
	if (ret)
		return ret;

	switch (nr) {
	case _UFFDX_API:
		return uffdx_api(ctx, &karg.api, uarg, usize);
	case _UFFDX_REGION_CREATE:
		return uffdx_region_create(ctx, &karg.create, uarg, usize);
	default:
		return uffdx_region_range_op(ctx, nr, &karg.range, uarg);
	}
}

/*
 * read(): fixed-size events, oldest first; blocks (interruptibly) for the
 * first only.  An event whose copy to user space fails is put back, so a
 * bad buffer loses nothing.
 */
static ssize_t uffdx_ctx_read(struct file *file, char __user *buf,
			      size_t count, loff_t *ppos)
{
	struct uffdx_ctx *ctx = file->private_data;
	struct uffdx_event ev;
	ssize_t done = 0;
	u64 seq;
	int ret;

	if (!uffdx_ctx_ready(ctx) || count < sizeof(ev))
		return -EINVAL;

	while (count - done >= sizeof(ev)) {
		ret = uffdx_read_event(ctx, &ev, &seq);
		if (ret == -EAGAIN) {
			if (done)
				break;
			if (file->f_flags & O_NONBLOCK)
				return -EAGAIN;
			ret = wait_event_interruptible(ctx->read_wqh,
						       uffdx_events_pending(ctx));
			if (ret)
				return ret;
			continue;
		}
		if (copy_to_user(buf + done, &ev, sizeof(ev))) {
			uffdx_unread_event(ctx, seq);
			return done ? done : -EFAULT;
		}
		done += sizeof(ev);
	}
	return done;
}

static __poll_t uffdx_ctx_poll(struct file *file, poll_table *wait)
{
	struct uffdx_ctx *ctx = file->private_data;

	if (!uffdx_ctx_ready(ctx))
		return EPOLLERR;
	poll_wait(file, &ctx->read_wqh, wait);
	return uffdx_events_pending(ctx) ? EPOLLIN | EPOLLRDNORM : 0;
}

const struct file_operations uffdx_ctx_fops = {
	.owner = THIS_MODULE,
	.open = uffdx_ctx_open,
	.release = uffdx_ctx_release,
	.read = uffdx_ctx_read,
	.poll = uffdx_ctx_poll,
	.unlocked_ioctl = uffdx_ctx_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
};
