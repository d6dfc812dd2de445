// SPDX-License-Identifier: GPL-2.0
/*
 * uffdx contexts: one per open() of /dev/uffdx.  API negotiation, the ioctl
 * dispatcher with its argument checks and user copies for the
 * size-extensible structs, and the event queue read with read() and poll().
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/capability.h>
#include <linux/cred.h>
#include <linux/memcontrol.h>
#include <linux/module.h>
#include <linux/pid_namespace.h>
#include <linux/poll.h>
#include <linux/sched/signal.h>
#include <linux/seq_file.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

#include "uffdx.h"

/* What this build implements; masked by what the kernel offers. */
u64 uffdx_supported_features(void)
{
	u64 features = UFFDX_FEATURE_REGIONS | UFFDX_FEATURE_MISSING |
		       UFFDX_FEATURE_POISON | UFFDX_FEATURE_KERNEL_FAULTS |
		       UFFDX_FEATURE_MOVE | UFFDX_FEATURE_WP |
		       UFFDX_FEATURE_WP_ASYNC;

	/*
	 * The device (device.c) mirrors through hmm_range_fault() and an
	 * interval notifier, on regions and process memory alike.
	 */
	if (UFFDX_KERNEL_HMM_MIRROR)
		features |= UFFDX_FEATURE_HMM_MIRROR |
			    UFFDX_FEATURE_DEVICE_EXCLUSIVE |
			    UFFDX_FEATURE_DEVICE_MIGRATE;
	/* Process memory, through the helpers DEVICE_PRIVATE brings (hmm.c). */
	if (UFFDX_KERNEL_HMM_MIRROR && UFFDX_KERNEL_DEVICE_EXCLUSIVE)
		features |= UFFDX_FEATURE_HMM_EXCLUSIVE;
	if (UFFDX_KERNEL_HMM_MIRROR && UFFDX_KERNEL_DEVICE_PRIVATE)
		features |= UFFDX_FEATURE_HMM_MIGRATE;
	return features;
}

static void uffdx_ctx_free(struct kref *kref)
{
	struct uffdx_ctx *ctx = container_of(kref, struct uffdx_ctx, kref);

	WARN_ON_ONCE(!xa_empty(&ctx->regions));
	xa_destroy(&ctx->regions);
	/* Pages still pinned by others are theirs now: let go, uncharge. */
	uffdx_limbo_reap(ctx, true);
	WARN_ON_ONCE(atomic_long_read(&ctx->charged));
	uffdx_unaccount_ctx(ctx);
	uffdx_user_put(ctx->user);
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

/* Has the context's file been closed?  (uffdx_release_waiters()) */
bool uffdx_ctx_released(struct uffdx_ctx *ctx)
{
	return READ_ONCE(ctx->released);
}

/*
 * A context needs a file open for reading and writing: an O_RDONLY open
 * must not be enough to create regions, fill them or take faults, in case
 * the node is made readable for more users than may drive it.
 */
static int uffdx_ctx_open(struct inode *inode, struct file *file)
{
	struct uffdx_ctx *ctx;
	int ret;

	if ((file->f_mode & (FMODE_READ | FMODE_WRITE)) !=
	    (FMODE_READ | FMODE_WRITE))
		return -EACCES;

	ctx = kzalloc(sizeof(*ctx), GFP_KERNEL_ACCOUNT);
	if (!ctx)
		return -ENOMEM;

	kref_init(&ctx->kref);
	atomic_set(&ctx->api_state, UFFDX_API_NEW);
	xa_init_flags(&ctx->regions, XA_FLAGS_ALLOC1);
	atomic_set(&ctx->nr_regions, 0);
	spin_lock_init(&ctx->fault_lock);
	INIT_LIST_HEAD(&ctx->fault_pending);
	INIT_LIST_HEAD(&ctx->fault_delivered);
	init_waitqueue_head(&ctx->read_wqh);
	atomic_long_set(&ctx->charged, 0);
	spin_lock_init(&ctx->limbo_lock);
	INIT_LIST_HEAD(&ctx->limbo);
	ctx->user = uffdx_user_get(file->f_cred->euid);
	if (!ctx->user) {
		ret = -ENOMEM;
		goto out_free;
	}
	ret = uffdx_account_ctx(ctx);
	if (ret)
		goto out_put_user;
	ctx->memcg = uffdx_get_memcg(current->mm);
	ctx->pidns = get_pid_ns(task_active_pid_ns(current));

	file->private_data = ctx;
	return nonseekable_open(inode, file);

out_put_user:
	uffdx_user_put(ctx->user);
out_free:
	kfree(ctx);
	return ret;
}

/*
 * Closing the context releases it: every fault asleep on one of its
 * regions wakes and, finding the context released, raises SIGBUS; so do
 * later faults on its armed holes.  Regions live on with their data.
 */
static int uffdx_ctx_release(struct inode *inode, struct file *file)
{
	struct uffdx_ctx *ctx = file->private_data;

	uffdx_release_waiters(ctx);
	uffdx_ctx_put(ctx);
	return 0;
}

/*
 * Argument structs by ioctl number: the size of version 1, of this build,
 * and the feature a context must have negotiated to use the ioctl (REGIONS
 * is always granted).
 */
union uffdx_ioctl_arg {
	struct uffdx_api api;
	struct uffdx_region_create create;
	struct uffdx_range range;
	struct uffdx_move move;
	struct uffdx_move_addr move_addr;
	struct uffdx_move_vec move_vec;
	struct uffdx_resolve resolve;
	struct uffdx_writeprotect_addr wp_addr;
	struct uffdx_scan scan;
	struct uffdx_device_create device;
};

/* An ioctl's argument sizes, and the features of which it needs one. */
struct uffdx_ioctl_desc {
	size_t min_size;
	size_t size;
	u64 feature;
};

#define UFFDX_IOCTL_DESC(nr, type, feat) \
	[nr] = { .min_size = sizeof(type), .size = sizeof(type), \
		 .feature = (feat) }

static const struct uffdx_ioctl_desc uffdx_ctx_ioctls[] = {
	UFFDX_IOCTL_DESC(_UFFDX_API, struct uffdx_api, UFFDX_FEATURE_REGIONS),
	UFFDX_IOCTL_DESC(_UFFDX_REGION_CREATE, struct uffdx_region_create,
			 UFFDX_FEATURE_REGIONS),
	UFFDX_IOCTL_DESC(_UFFDX_ARM, struct uffdx_range, UFFDX_FEATURE_MISSING),
	UFFDX_IOCTL_DESC(_UFFDX_DISARM, struct uffdx_range,
			 UFFDX_FEATURE_MISSING),
	UFFDX_IOCTL_DESC(_UFFDX_COPY, struct uffdx_range, UFFDX_FEATURE_MISSING),
	UFFDX_IOCTL_DESC(_UFFDX_ZERO, struct uffdx_range, UFFDX_FEATURE_MISSING),
	UFFDX_IOCTL_DESC(_UFFDX_POISON, struct uffdx_range,
			 UFFDX_FEATURE_POISON),
	UFFDX_IOCTL_DESC(_UFFDX_WAKE, struct uffdx_range,
			 UFFDX_FEATURE_MISSING | UFFDX_FEATURE_WP),
	UFFDX_IOCTL_DESC(_UFFDX_DISCARD, struct uffdx_range,
			 UFFDX_FEATURE_REGIONS),
	UFFDX_IOCTL_DESC(_UFFDX_MOVE, struct uffdx_move, UFFDX_FEATURE_MOVE),
	UFFDX_IOCTL_DESC(_UFFDX_MOVE_ADDR, struct uffdx_move_addr,
			 UFFDX_FEATURE_MOVE),
	UFFDX_IOCTL_DESC(_UFFDX_MOVE_VEC, struct uffdx_move_vec,
			 UFFDX_FEATURE_MOVE),
	UFFDX_IOCTL_DESC(_UFFDX_RESOLVE, struct uffdx_resolve,
			 UFFDX_FEATURE_MISSING | UFFDX_FEATURE_WP),
	UFFDX_IOCTL_DESC(_UFFDX_WRITEPROTECT, struct uffdx_range,
			 UFFDX_FEATURE_WP),
	UFFDX_IOCTL_DESC(_UFFDX_WRITEPROTECT_ADDR,
			 struct uffdx_writeprotect_addr, UFFDX_FEATURE_WP),
	UFFDX_IOCTL_DESC(_UFFDX_SCAN, struct uffdx_scan,
			 UFFDX_FEATURE_WP_ASYNC),
	UFFDX_IOCTL_DESC(_UFFDX_DEVICE_CREATE, struct uffdx_device_create,
			 UFFDX_FEATURE_DEVICE_EXCLUSIVE |
			 UFFDX_FEATURE_DEVICE_MIGRATE |
			 UFFDX_FEATURE_HMM_MIRROR |
			 UFFDX_FEATURE_HMM_EXCLUSIVE |
			 UFFDX_FEATURE_HMM_MIGRATE),
};

/* The ioctls a context that negotiated @features may use. */
static u64 uffdx_ioctls_for(u64 features)
{
	u64 ioctls = 0;
	unsigned int nr;

	for (nr = 0; nr < ARRAY_SIZE(uffdx_ctx_ioctls); nr++) {
		const struct uffdx_ioctl_desc *d = &uffdx_ctx_ioctls[nr];

		if (d->size && (d->feature & features))
			ioctls |= BIT_ULL(nr);
	}
	return ioctls;
}

static int uffdx_api(struct file *file, struct uffdx_api *api,
		     void __user *uarg, u32 usize)
{
	struct uffdx_ctx *ctx = file->private_data;
	u64 supported = uffdx_supported_features();
	u64 wanted = api->features;
	int ret;

	if (api->api != UFFDX_API_VERSION || api->flags ||
	    memchr_inv(api->reserved, 0, sizeof(api->reserved)))
		return -EINVAL;
	if (wanted & ~supported)
		return -EINVAL;
	/*
	 * The opener's credentials decide (file->f_cred), not those of
	 * whoever holds the fd now: a privileged broker may open and hand
	 * the context on, but an unprivileged opener cannot get the feature
	 * by passing the fd to a privileged process that negotiates.
	 */
	if ((wanted & UFFDX_FEATURE_KERNEL_FAULTS) &&
	    !file_ns_capable(file, &init_user_ns, CAP_SYS_PTRACE))
		return -EPERM;

	/* One negotiation per context; a failed one may be retried. */
	if (atomic_cmpxchg(&ctx->api_state, UFFDX_API_NEW, UFFDX_API_BUSY) !=
	    UFFDX_API_NEW)
		return -EINVAL;

	wanted |= UFFDX_FEATURE_REGIONS;
	/* Dirty tracking is write protection that does not sleep. */
	if (wanted & UFFDX_FEATURE_WP_ASYNC)
		wanted |= UFFDX_FEATURE_WP;
	api->features = supported;
	api->ioctls = uffdx_ioctls_for(wanted);
	api->module_version = UFFDX_VERSION_CODE;
	ret = uffdx_copy_out(uarg, usize, api, sizeof(*api));
	if (ret) {
		atomic_set(&ctx->api_state, UFFDX_API_NEW);
		return ret;
	}
	ctx->features = wanted;
	ctx->ioctls = api->ioctls;
	atomic_set_release(&ctx->api_state, UFFDX_API_READY);
	return 0;
}

/*
 * Is @cmd the ioctl @nr of ours?  Type, number and direction are checked;
 * the size encoded in the number is not used (the struct's own leading
 * size field is), on context and region fds alike.
 */
bool uffdx_ioctl_cmd_ok(unsigned int cmd, unsigned int nr)
{
	return _IOC_TYPE(cmd) == UFFDX_IOC_MAGIC && _IOC_NR(cmd) == nr &&
	       _IOC_DIR(cmd) == (_IOC_READ | _IOC_WRITE);
}

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

/*
 * Copy a size-extensible output struct back: as much of it as the caller's
 * struct holds (an older caller gets the prefix it knows).
 */
int uffdx_copy_out(void __user *uarg, u32 usize, const void *karg,
		   size_t ksize)
{
	if (copy_to_user(uarg, karg, min_t(size_t, usize, ksize)))
		return -EFAULT;
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

	if (nr >= ARRAY_SIZE(uffdx_ctx_ioctls) || !uffdx_ctx_ioctls[nr].size ||
	    !uffdx_ioctl_cmd_ok(cmd, nr))
		return -ENOTTY;
	/* Before the API, and ioctls of features not negotiated: -EINVAL. */
	if (nr != _UFFDX_API &&
	    (!uffdx_ctx_ready(ctx) || !(ctx->ioctls & BIT_ULL(nr))))
		return -EINVAL;

	desc = &uffdx_ctx_ioctls[nr];
	ret = uffdx_copy_in(&karg, desc->min_size, desc->size, uarg, &usize);
	if (ret)
		return ret;

	switch (nr) {
	case _UFFDX_API:
		return uffdx_api(file, &karg.api, uarg, usize);
	case _UFFDX_REGION_CREATE:
		return uffdx_region_create(ctx, &karg.create, uarg, usize);
	case _UFFDX_MOVE:
	case _UFFDX_MOVE_ADDR:
	case _UFFDX_MOVE_VEC:
		return uffdx_move_ioctl(ctx, nr, &karg, uarg);
	case _UFFDX_RESOLVE:
		return uffdx_resolve(ctx, file, &karg.resolve, uarg);
	case _UFFDX_DEVICE_CREATE:
		return uffdx_device_create(ctx, &karg.device, uarg, usize);
	case _UFFDX_WRITEPROTECT_ADDR:
	case _UFFDX_SCAN:
		return uffdx_wp_ioctl(ctx, nr, &karg, uarg);
	default:
		return uffdx_region_range_op(ctx, nr, &karg.range, uarg);
	}
}

/*
 * The event queue.  A faulter queues its waiter on fault_pending
 * (fault.c); read() moves it to fault_delivered; a fill or wake takes it
 * off either list.
 *
 * uffdx_events_pending() is lockless: a hint for poll() and read()'s
 * wait.  Callers have queued themselves on read_wqh first (poll_wait(), or
 * wait_event()'s set_current_state()) and a faulter calls wake_up_poll()
 * after queueing its event, so an event queued before the check is seen,
 * and one queued after it wakes the caller.  A stale "pending" only costs
 * a retry.
 */
bool uffdx_events_pending(struct uffdx_ctx *ctx)
{
	smp_mb();	/* order the check after queueing on read_wqh */
	return !list_empty(&ctx->fault_pending);
}

/* Take the oldest pending event; it moves to the delivered list. */
int uffdx_read_event(struct uffdx_ctx *ctx, struct uffdx_event *ev, u64 *seq)
{
	struct uffdx_fault_waiter *w;

	spin_lock(&ctx->fault_lock);
	if (list_empty(&ctx->fault_pending)) {
		spin_unlock(&ctx->fault_lock);
		return -EAGAIN;
	}
	w = list_last_entry(&ctx->fault_pending, struct uffdx_fault_waiter,
			    node);
	list_move(&w->node, &ctx->fault_delivered);
	*ev = w->event;
	*seq = w->seq;
	spin_unlock(&ctx->fault_lock);
	return 0;
}

/*
 * Put back an event read() could not copy out, if its fault still waits,
 * and say so to the other readers and to edge-triggered epoll: for them
 * it is a new event.
 */
void uffdx_unread_event(struct uffdx_ctx *ctx, u64 seq)
{
	struct uffdx_fault_waiter *w;
	bool back = false;

	spin_lock(&ctx->fault_lock);
	list_for_each_entry(w, &ctx->fault_delivered, node) {
		if (w->seq == seq) {
			list_move_tail(&w->node, &ctx->fault_pending);
			back = true;
			break;
		}
	}
	spin_unlock(&ctx->fault_lock);
	if (back)
		wake_up_poll(&ctx->read_wqh, EPOLLIN);
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

/*
 * poll_wait() comes first, whatever the state, as in userfaultfd: an epoll
 * that registers before the API is negotiated must still be woken by the
 * events that come after it.
 */
static __poll_t uffdx_ctx_poll(struct file *file, poll_table *wait)
{
	struct uffdx_ctx *ctx = file->private_data;

	poll_wait(file, &ctx->read_wqh, wait);
	if (!uffdx_ctx_ready(ctx))
		return EPOLLERR;
	return uffdx_events_pending(ctx) ? EPOLLIN | EPOLLRDNORM : 0;
}

/* /proc/pid/fdinfo/N: who holds what, for an admin and uffdx-info. */
static void uffdx_ctx_show_fdinfo(struct seq_file *m, struct file *file)
{
	struct uffdx_ctx *ctx = file->private_data;
	unsigned int pending = 0, delivered = 0;
	struct uffdx_fault_waiter *w;

	spin_lock(&ctx->fault_lock);
	list_for_each_entry(w, &ctx->fault_pending, node)
		pending++;
	list_for_each_entry(w, &ctx->fault_delivered, node)
		delivered++;
	spin_unlock(&ctx->fault_lock);

	seq_printf(m, "uffdx-uid:\t%u\n",
		   from_kuid_munged(seq_user_ns(m), ctx->user->uid));
	seq_printf(m, "uffdx-features:\t%#llx\n",
		   uffdx_ctx_ready(ctx) ? ctx->features : 0);
	seq_printf(m, "uffdx-regions:\t%d\n", atomic_read(&ctx->nr_regions));
	seq_printf(m, "uffdx-charged-pages:\t%lu\n",
		   DIV_ROUND_UP((unsigned long)atomic_long_read(&ctx->charged),
				UFFDX_PAGE_UNITS));
	seq_printf(m, "uffdx-limbo-pages:\t%lu\n", READ_ONCE(ctx->nr_limbo));
	seq_printf(m, "uffdx-events-pending:\t%u\n", pending);
	seq_printf(m, "uffdx-events-delivered:\t%u\n", delivered);
}

const struct file_operations uffdx_ctx_fops = {
	.owner = THIS_MODULE,
	.open = uffdx_ctx_open,
	.release = uffdx_ctx_release,
	.read = uffdx_ctx_read,
	.poll = uffdx_ctx_poll,
	.unlocked_ioctl = uffdx_ctx_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.show_fdinfo = uffdx_ctx_show_fdinfo,
};
