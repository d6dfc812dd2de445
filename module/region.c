// SPDX-License-Identifier: GPL-2.0
/*
 * uffdx regions: module-owned memory behind a file of its own.
 *
 * The region object and its files: creation, reopen, mmap, REGION_INFO,
 * fdinfo, and the range ioctls of a context, which act on the page store
 * (store.c).  The fault side lives in fault.c; the locking rules in uffdx.h.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/file.h>
#include <linux/module.h>
#include <linux/mount.h>
#include <linux/overflow.h>
#include <linux/pagemap.h>
#include <linux/seq_file.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

#include "uffdx.h"

static void uffdx_region_free(struct kref *kref)
{
	struct uffdx_region *region = container_of(kref, struct uffdx_region,
						   kref);
	struct uffdx_ctx *ctx = region->ctx;

	xa_erase(&ctx->regions, region->id);
	/* No file holds the region now; a reopen racing with us finds none. */
	WRITE_ONCE(region->inode->i_private, NULL);

	/* No file, so no mapping: the store's references are the last. */
	uffdx_store_destroy(region);
	iput(region->inode);
	uffdx_fs_unpin();
	uffdx_unaccount_region(ctx);
	uffdx_ctx_put(ctx);
	kfree_rcu(region, rcu);
}

void uffdx_region_put(struct uffdx_region *region)
{
	kref_put(&region->kref, uffdx_region_free);
}

/* Look up a region of @ctx by id and take a reference on it. */
struct uffdx_region *uffdx_region_lookup(struct uffdx_ctx *ctx, u64 id)
{
	struct uffdx_region *region;

	if (!id || id > U32_MAX)
		return NULL;
	/* Regions are freed after an RCU grace period (uffdx_region_free). */
	rcu_read_lock();
	region = xa_load(&ctx->regions, id);
	if (region && !kref_get_unless_zero(&region->kref))
		region = NULL;
	rcu_read_unlock();
	return region;
}

static const struct file_operations uffdx_region_fops;

/*
 * The region behind @fd, referenced, if it is a region file open for
 * writing: a read-only holder may map the region for reading, not change
 * what it holds (moves).  -EBADF otherwise.
 */
struct uffdx_region *uffdx_region_get_fd(int fd)
{
	struct uffdx_region *region = ERR_PTR(-EBADF);
	struct file *file = fget(fd);

	if (!file)
		return region;
	if (file->f_op == &uffdx_region_fops &&
	    (file->f_mode & FMODE_WRITE)) {
		region = file->private_data;
		kref_get(&region->kref);	/* the file holds one */
	}
	fput(file);
	return region;
}

/*
 * Pages in the store, as a snapshot: exact when the region is quiet.  A
 * fill counts its page just before publishing it and uncounts it if it
 * loses the race for the slot, and a removal uncounts after the slot is
 * clear, so racing operations can push the count briefly past either end.
 */
static unsigned long uffdx_region_resident(struct uffdx_region *region)
{
	long n = atomic_long_read(&region->resident);

	return clamp_t(long, n, 0, region->npages);
}

static int uffdx_range_check(struct uffdx_region *region,
			     const struct uffdx_range *r, pgoff_t *start,
			     pgoff_t *end)
{
	u64 last;

	if (!r->len || !PAGE_ALIGNED(r->offset) || !PAGE_ALIGNED(r->len) ||
	    check_add_overflow(r->offset, r->len, &last) || last > region->len)
		return -EINVAL;
	*start = r->offset >> PAGE_SHIFT;
	*end = last >> PAGE_SHIFT;
	return 0;
}

/* Which modes each range ioctl accepts, and whether it takes a source. */
static int uffdx_range_args_check(unsigned int nr, const struct uffdx_range *r)
{
	if (memchr_inv(r->reserved, 0, sizeof(r->reserved)))
		return -EINVAL;
	if (nr != _UFFDX_COPY && r->src)
		return -EINVAL;

	switch (nr) {
	case _UFFDX_ARM:
		return r->mode == UFFDX_ARM_MISSING ? 0 : -EINVAL;
	case _UFFDX_DISARM:
		return r->mode & ~UFFDX_ARM_MISSING ? -EINVAL : 0;
	case _UFFDX_COPY:
	case _UFFDX_ZERO:
	case _UFFDX_POISON:
		return r->mode & ~UFFDX_FILL_DONTWAKE ? -EINVAL : 0;
	case _UFFDX_WRITEPROTECT:
		if (r->mode & ~(UFFDX_WP_PROTECT | UFFDX_WP_DONTWAKE))
			return -EINVAL;
		/* DONTWAKE is for unprotect only, as for UFFDIO_WRITEPROTECT */
		return r->mode == (UFFDX_WP_PROTECT | UFFDX_WP_DONTWAKE) ?
		       -EINVAL : 0;
	default:
		return r->mode ? -EINVAL : 0;
	}
}

/* The fill an ioctl number asks for. */
static enum uffdx_fill_kind uffdx_fill_kind_of(unsigned int nr)
{
	switch (nr) {
	case _UFFDX_ZERO:
		return UFFDX_FILL_ZERO;
	case _UFFDX_POISON:
		return UFFDX_FILL_POISON;
	default:
		return UFFDX_FILL_COPY;
	}
}

/*
 * Apply the range operation @nr to a region of @ctx (the ioctls, and the
 * resolutions of UFFDX_IOC_RESOLVE).  Operations that can stop part way
 * (the fills and discard) set r->result and *@report and, as UFFDIO_COPY
 * does, fail with -EAGAIN when they did part of the range.
 */
int uffdx_range_apply(struct uffdx_ctx *ctx, unsigned int nr,
		      struct uffdx_range *r, bool *report)
{
	struct uffdx_region *region;
	pgoff_t start, end, done = 0;
	int ret;

	*report = false;
	ret = uffdx_range_args_check(nr, r);
	if (ret)
		return ret;
	region = uffdx_region_lookup(ctx, r->region_id);
	if (!region)
		return -ENOENT;
	ret = uffdx_range_check(region, r, &start, &end);
	if (ret)
		goto out_put;

	switch (nr) {
	case _UFFDX_ARM:
		ret = uffdx_store_set_armed(region, start, end, true);
		break;
	case _UFFDX_DISARM:
		ret = uffdx_store_set_armed(region, start, end, false);
		uffdx_wake_range(ctx, region, start, end);
		break;
	case _UFFDX_WAKE:
		uffdx_map_and_wake(ctx, region, start, end);
		break;
	case _UFFDX_DISCARD:
		ret = uffdx_store_discard(region, start, end, &done);
		*report = true;
		break;
	case _UFFDX_WRITEPROTECT:
		/* Not a write-protect region: rejected, nothing reported. */
		if (!region->wp_mode) {
			ret = -EINVAL;
			break;
		}
		ret = uffdx_wp_apply(region, start, end, r->mode, &done);
		*report = true;
		break;
	default:
		ret = uffdx_store_fill(region, uffdx_fill_kind_of(nr), start,
				       end, r->src, &done);
		if (done && !(r->mode & UFFDX_FILL_DONTWAKE))
			uffdx_map_and_wake(ctx, region, start, start + done);
		*report = true;
		break;
	}

	if (*report) {
		if (done && start + done < end)
			ret = -EAGAIN;
		r->result = done ? (s64)done << PAGE_SHIFT : ret;
	}
out_put:
	uffdx_region_put(region);
	return ret;
}

/* The range ioctls of a context. */
long uffdx_region_range_op(struct uffdx_ctx *ctx, unsigned int nr,
			   struct uffdx_range *r, void __user *uarg)
{
	bool report;
	int ret = uffdx_range_apply(ctx, nr, r, &report);

	/* result is the only output; every struct version has it */
	if (report &&
	    put_user(r->result, &((struct uffdx_range __user *)uarg)->result))
		ret = -EFAULT;
	return ret;
}

/*
 * Reopen through /proc/pid/fd/N (or /proc/pid/map_files): the VFS has
 * checked the inode's permissions (owner: the creator, mode 0600) and the
 * open mode; a read-only file can be mapped only without PROT_WRITE.  The
 * region may be going away (its last file closing): then there is nothing
 * to open.
 */
static int uffdx_region_open(struct inode *inode, struct file *file)
{
	struct uffdx_region *region;

	/* Regions are freed after an RCU grace period (uffdx_region_free). */
	rcu_read_lock();
	region = READ_ONCE(inode->i_private);
	if (region && !kref_get_unless_zero(&region->kref))
		region = NULL;
	rcu_read_unlock();
	if (!region)
		return -ENOENT;
	file->private_data = region;
	return 0;
}

static int uffdx_region_release(struct inode *inode, struct file *file)
{
	uffdx_region_put(file->private_data);
	return 0;
}

static int uffdx_region_mmap(struct file *file, struct vm_area_struct *vma)
{
	struct uffdx_region *region = file->private_data;
	pgoff_t end;

	/*
	 * A private COW copy would leave the page store and every uffdx
	 * semantic with it: refuse it (docs/design.md).  VM_MAYSHARE, not
	 * VM_SHARED: the VFS clears VM_SHARED (and VM_MAYWRITE, so that
	 * mprotect() cannot add write access) for a shared mapping of a file
	 * open read-only, and refuses PROT_WRITE on one (EACCES).
	 */
	if (!(vma->vm_flags & VM_MAYSHARE))
		return -EINVAL;
	if (check_add_overflow(vma->vm_pgoff, vma_pages(vma), &end) ||
	    end > region->npages)
		return -EINVAL;

	/*
	 * VM_MIXEDMAP: fills may vm_insert_page() into a waiting faulter's
	 * mapping under its mmap_lock held for read (fault.c).  The pages
	 * stay normal, refcounted pages (vm_normal_page() finds them).
	 */
	uffdx_vm_flags_set(vma, VM_DONTEXPAND | VM_MIXEDMAP);
	/* Write-protect regions map pages read-only until written (wp.c). */
	vma->vm_ops = region->wp_mode ? &uffdx_wp_vm_ops : &uffdx_vm_ops;
	return 0;
}

static long uffdx_region_ioctl(struct file *file, unsigned int cmd,
			       unsigned long arg)
{
	struct uffdx_region *region = file->private_data;
	void __user *uarg = (void __user *)arg;
	struct uffdx_region_info info;
	u32 usize;
	int ret;

	if (!uffdx_ioctl_cmd_ok(cmd, _UFFDX_REGION_INFO))
		return -ENOTTY;
	ret = uffdx_copy_in(&info, sizeof(info), sizeof(info), uarg, &usize);
	if (ret)
		return ret;
	if (memchr_inv(info.reserved, 0, sizeof(info.reserved)))
		return -EINVAL;

	info.flags = 0;		/* out only */
	info.len = region->len;
	info.region_id = region->id;
	info.resident = (u64)uffdx_region_resident(region) << PAGE_SHIFT;
	if (uffdx_ctx_released(region->ctx))
		info.flags |= UFFDX_REGION_OWNER_GONE;
	if (region->wp_mode == UFFDX_REGION_CREATE_WP)
		info.flags |= UFFDX_REGION_WP;
	if (region->wp_mode == UFFDX_REGION_CREATE_WP_ASYNC)
		info.flags |= UFFDX_REGION_WP_ASYNC;
	return uffdx_copy_out(uarg, usize, &info, sizeof(info));
}

/* /proc/pid/fdinfo/N: what this region holds, for uffdx-info --holders. */
static void uffdx_region_show_fdinfo(struct seq_file *m, struct file *file)
{
	struct uffdx_region *region = file->private_data;

	seq_printf(m, "uffdx-region-id:\t%llu\n", region->id);
	seq_printf(m, "uffdx-len:\t%llu\n", region->len);
	seq_printf(m, "uffdx-resident-pages:\t%lu\n",
		   uffdx_region_resident(region));
	seq_printf(m, "uffdx-poison-entries:\t%ld\n",
		   max(atomic_long_read(&region->values), 0L));
	seq_printf(m, "uffdx-owner-uid:\t%u\n",
		   from_kuid_munged(seq_user_ns(m), region->ctx->user->uid));
	seq_printf(m, "uffdx-owner-gone:\t%d\n",
		   uffdx_ctx_released(region->ctx));
	seq_printf(m, "uffdx-wp-mode:\t%s\n",
		   region->wp_mode == UFFDX_REGION_CREATE_WP ? "sync" :
		   region->wp_mode ? "async" : "none");
}

static const struct file_operations uffdx_region_fops = {
	.owner = THIS_MODULE,
	.open = uffdx_region_open,
	.release = uffdx_region_release,
	.mmap = uffdx_region_mmap,
	.unlocked_ioctl = uffdx_region_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.show_fdinfo = uffdx_region_show_fdinfo,
};

int uffdx_region_create(struct uffdx_ctx *ctx, struct uffdx_region_create *rc,
			void __user *uarg, u32 usize)
{
	struct uffdx_region *region;
	struct vfsmount *mnt;
	struct inode *inode;
	struct file *file;
	u32 id;
	int fd, ret;

	if (rc->__pad || memchr_inv(rc->reserved, 0, sizeof(rc->reserved)))
		return -EINVAL;
	/* At most one write-protect mode, and its feature negotiated. */
	switch (rc->flags) {
	case 0:
		break;
	case UFFDX_REGION_CREATE_WP:
		if (!(ctx->features & UFFDX_FEATURE_WP))
			return -EINVAL;
		break;
	case UFFDX_REGION_CREATE_WP_ASYNC:
		if (!(ctx->features & UFFDX_FEATURE_WP_ASYNC))
			return -EINVAL;
		break;
	default:
		return -EINVAL;
	}
	if (!rc->len || !PAGE_ALIGNED(rc->len) ||
	    rc->len > UFFDX_REGION_MAX_BYTES)
		return -EINVAL;

	ret = uffdx_account_region(ctx);
	if (ret)
		return ret;
	region = kzalloc(sizeof(*region), GFP_KERNEL_ACCOUNT);
	if (!region) {
		ret = -ENOMEM;
		goto out_unaccount;
	}
	kref_init(&region->kref);
	xa_init(&region->pages);
	xa_init(&region->held);
	mutex_init(&region->lock);
	spin_lock_init(&region->wp_lock);
	region->wp_mode = rc->flags;
	atomic_long_set(&region->resident, 0);
	atomic_long_set(&region->values, 0);
	region->len = rc->len;
	region->npages = rc->len >> PAGE_SHIFT;

	/* Each region pins the filesystem, which pins the module (main.c). */
	mnt = uffdx_fs_pin();
	if (IS_ERR(mnt)) {
		ret = PTR_ERR(mnt);
		goto out_free_region;
	}
	inode = alloc_anon_inode(mnt->mnt_sb);
	if (IS_ERR(inode)) {
		ret = PTR_ERR(inode);
		goto out_unpin;
	}
	inode->i_size = rc->len;
	inode->i_flags |= S_NOCMTIME;
	/* For reopens through /proc/pid/fd: uffdx_region_open(). */
	inode->i_fop = &uffdx_region_fops;
	region->inode = inode;

	/*
	 * Reserve the id; the region is published only once it is complete
	 * (ids are sequential: another thread may look it up at once).  Ids
	 * are allocated cyclically, so that an id names one region for the
	 * context's lifetime: a handler that read an event of a region now
	 * gone cannot fill a new one by mistake.
	 */
	ret = xa_alloc_cyclic(&ctx->regions, &id, NULL, xa_limit_32b,
			      &ctx->next_region_id, GFP_KERNEL_ACCOUNT);
	if (ret < 0)
		goto out_iput;
	region->id = id;

	fd = get_unused_fd_flags(O_CLOEXEC);
	if (fd < 0) {
		ret = fd;
		goto out_erase;
	}

	/*
	 * The file's dentry takes over the inode reference; keep our own.
	 * alloc_file_pseudo() does not pin fops->owner, but __fput() drops
	 * it: take the module reference here (we run under the context
	 * file's, so it cannot fail).
	 */
	ihold(inode);
	__module_get(THIS_MODULE);
	file = alloc_file_pseudo(inode, mnt, "[uffdx-region]", O_RDWR,
				 &uffdx_region_fops);
	if (IS_ERR(file)) {
		ret = PTR_ERR(file);
		module_put(THIS_MODULE);
		iput(inode);
		goto out_put_fd;
	}
	kref_get(&ctx->kref);
	region->ctx = ctx;
	file->private_data = region;
	inode->i_private = region;
	/* Replaces the reserved entry: nothing to allocate, cannot fail. */
	WARN_ON_ONCE(xa_is_err(xa_store(&ctx->regions, id, region,
					GFP_KERNEL)));

	rc->region_id = id;
	rc->fd = fd;
	ret = uffdx_copy_out(uarg, usize, rc, sizeof(*rc));
	if (ret) {
		/* The release drops the region, its id and its inode. */
		put_unused_fd(fd);
		fput(file);
		return ret;
	}
	fd_install(fd, file);
	return 0;

out_put_fd:
	put_unused_fd(fd);
out_erase:
	xa_erase(&ctx->regions, id);
out_iput:
	iput(inode);
out_unpin:
	uffdx_fs_unpin();
out_free_region:
	kfree(region);
out_unaccount:
	uffdx_unaccount_region(ctx);
	return ret;
}
