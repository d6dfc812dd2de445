// SPDX-License-Identifier: GPL-2.0
/*
 * uffdx regions: module-owned memory behind a file of its own.
 *
 * The page store, its fills (copy, zero, poison), arming and discard.  The
 * fault side lives in fault.c; the locking rules in uffdx.h.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/anon_inodes.h>
#include <linux/bitmap.h>
#include <linux/file.h>
#include <linux/module.h>
#include <linux/mount.h>
#include <linux/overflow.h>
#include <linux/pagemap.h>
#include <linux/sched/signal.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

#include "uffdx.h"

/* Pages handled between two checks for a fatal signal and a resched. */
#define UFFDX_BATCH	64

/*
 * Allocate a page for @ctx's store: bounded by the context's page limit and
 * charged to the memory cgroup of the process that opened the context.
 * __GFP_RETRY_MAYFAIL: fail rather than invoke the OOM killer.
 */
struct page *uffdx_alloc_page(struct uffdx_ctx *ctx, bool zero)
{
	gfp_t gfp = GFP_USER | __GFP_ACCOUNT | __GFP_RETRY_MAYFAIL;
	struct mem_cgroup *old;
	struct page *page;

	if (atomic_long_inc_return(&ctx->nr_pages) > ctx->max_pages) {
		atomic_long_dec(&ctx->nr_pages);
		return NULL;
	}
	if (zero)
		gfp |= __GFP_ZERO;
	old = uffdx_set_active_memcg(ctx->memcg);
	page = alloc_page(gfp);
	uffdx_set_active_memcg(old);
	if (!page)
		atomic_long_dec(&ctx->nr_pages);
	return page;
}

/* Drop the store's reference on a page that has left the store. */
void uffdx_free_page(struct uffdx_ctx *ctx, struct page *page)
{
	put_page(page);
	atomic_long_dec(&ctx->nr_pages);
}

bool uffdx_region_armed(struct uffdx_region *region, pgoff_t index)
{
	/* Pairs with the release in uffdx_set_armed(): a zeroed bitmap. */
	unsigned long *armed = smp_load_acquire(&region->armed);

	return armed && test_bit(index, armed);
}

static void uffdx_region_free(struct kref *kref)
{
	struct uffdx_region *region = container_of(kref, struct uffdx_region,
						   kref);
	struct uffdx_ctx *ctx = region->ctx;
	unsigned long index;
	void *entry;

	xa_erase(&ctx->regions, region->id);

	/* No file, so no mapping: the store's references are the last. */
	xa_for_each(&region->pages, index, entry) {
		if (!xa_is_value(entry))
			uffdx_free_page(ctx, entry);
	}
	xa_destroy(&region->pages);
	kvfree(region->armed);
	iput(region->inode);
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

/*
 * Remove the entries of [@start, @end) from the store and zap their
 * mappings.  Entries are taken out first; then each page's lock is taken
 * and dropped, which waits for any fault that found the page before it
 * left the store and is installing a PTE for it; then one zap covers the
 * batch, so the TLB is flushed once per batch, not once per page.
 */
static void uffdx_remove_batch(struct uffdx_region *region, pgoff_t start,
			       pgoff_t end)
{
	struct page *pages[UFFDX_BATCH];
	unsigned int nr = 0, i;
	unsigned long index;
	void *entry;

	lockdep_assert_held(&region->lock);

	xa_for_each_range(&region->pages, index, entry, start, end - 1) {
		if (!xa_is_value(entry)) {
			/* Callers pass at most a batch. */
			if (WARN_ON_ONCE(nr == UFFDX_BATCH))
				break;
			pages[nr++] = entry;
			atomic_long_dec(&region->resident);
		}
		xa_erase(&region->pages, index);
	}
	for (i = 0; i < nr; i++) {
		lock_page(pages[i]);
		unlock_page(pages[i]);
	}
	uffdx_unmap_pages(region->inode->i_mapping, start, end - start);
	for (i = 0; i < nr; i++)
		uffdx_free_page(region->ctx, pages[i]);
}

static int uffdx_discard(struct uffdx_region *region, pgoff_t start,
			 pgoff_t end, pgoff_t *done)
{
	pgoff_t index = start, next;
	int ret = 0;

	mutex_lock(&region->lock);
	while (index < end) {
		if (fatal_signal_pending(current)) {
			ret = -EINTR;
			break;
		}
		next = min_t(pgoff_t, end, index + UFFDX_BATCH);
		uffdx_remove_batch(region, index, next);
		index = next;
		cond_resched();
	}
	mutex_unlock(&region->lock);
	*done = index - start;
	return ret;
}

/* Arm or disarm [@start, @end) for missing faults. */
static int uffdx_set_armed(struct uffdx_region *region, pgoff_t start,
			   pgoff_t end, bool arm)
{
	unsigned long *armed;

	mutex_lock(&region->lock);
	armed = region->armed;
	if (!armed && arm) {
		/* Up to 32 MiB for a 1 TiB region: vmalloc if need be. */
		armed = kvcalloc(BITS_TO_LONGS(region->npages), sizeof(long),
				 GFP_KERNEL_ACCOUNT);
		if (!armed) {
			mutex_unlock(&region->lock);
			return -ENOMEM;
		}
		/* Publish the bitmap zeroed; uffdx_region_armed() acquires. */
		smp_store_release(&region->armed, armed);
	}
	if (armed) {
		if (arm)
			bitmap_set(armed, start, end - start);
		else
			bitmap_clear(armed, start, end - start);
	}
	mutex_unlock(&region->lock);
	return 0;
}

/*
 * Produce the entry a fill installs at one slot.  A COPY's source is read
 * here, into a fresh page, before any lock is taken: it may fault, even on
 * an armed page of a region, and sleep for a handler.
 */
static void *uffdx_fill_entry(struct uffdx_ctx *ctx, unsigned int nr,
			      const char __user *src)
{
	struct page *page;

	if (nr == _UFFDX_POISON)
		return UFFDX_POISON_ENTRY;

	page = uffdx_alloc_page(ctx, nr == _UFFDX_ZERO);
	if (!page)
		return ERR_PTR(-ENOMEM);
	/* Not highmem (GFP_USER): the page has a kernel address. */
	if (nr == _UFFDX_COPY &&
	    copy_from_user(page_address(page), src, PAGE_SIZE)) {
		uffdx_free_page(ctx, page);
		return ERR_PTR(-EFAULT);
	}
	return page;
}

static void uffdx_drop_entry(struct uffdx_ctx *ctx, void *entry)
{
	if (!xa_is_value(entry))
		uffdx_free_page(ctx, entry);
}

/*
 * COPY, ZERO, POISON: fill the holes [@start, @end), stopping at the first
 * slot that is not a hole (-EEXIST), a failure, or a fatal signal.
 */
static int uffdx_fill(struct uffdx_region *region, unsigned int nr,
		      pgoff_t start, pgoff_t end, u64 src, pgoff_t *done)
{
	struct uffdx_ctx *ctx = region->ctx;
	pgoff_t index;
	void *entry, *old;
	int ret = 0;

	for (index = start; index < end; index++) {
		if (fatal_signal_pending(current)) {
			ret = -EINTR;
			break;
		}
		/* Cheap early -EEXIST; xa_cmpxchg() below is the real test. */
		if (xa_load(&region->pages, index)) {
			ret = -EEXIST;
			break;
		}
		entry = uffdx_fill_entry(ctx, nr, u64_to_user_ptr(src) +
					 ((index - start) << PAGE_SHIFT));
		if (IS_ERR(entry)) {
			ret = PTR_ERR(entry);
			break;
		}
		old = xa_cmpxchg(&region->pages, index, NULL, entry,
				 GFP_KERNEL_ACCOUNT);
		if (old) {
			uffdx_drop_entry(ctx, entry);
			ret = xa_is_err(old) ? xa_err(old) : -EEXIST;
			break;
		}
		if (!xa_is_value(entry))
			atomic_long_inc(&region->resident);
		if ((index - start) % UFFDX_BATCH == UFFDX_BATCH - 1)
			cond_resched();
	}
	*done = index - start;
	return ret;
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
	default:
		return r->mode ? -EINVAL : 0;
	}
}

/*
 * The range ioctls of a context.  Operations that can stop part way (the
 * fills and discard) report progress in r->result and, as UFFDIO_COPY
 * does, fail with -EAGAIN when they did part of the range.
 */
long uffdx_region_range_op(struct uffdx_ctx *ctx, unsigned int nr,
			   struct uffdx_range *r, void __user *uarg)
{
	struct uffdx_region *region;
	pgoff_t start, end, done = 0;
	bool report = false;
	int ret;

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
		ret = uffdx_set_armed(region, start, end, true);
		break;
	case _UFFDX_DISARM:
		ret = uffdx_set_armed(region, start, end, false);
		uffdx_wake_range(ctx, region, start, end);
		break;
	case _UFFDX_WAKE:
		uffdx_map_and_wake(ctx, region, start, end);
		break;
	case _UFFDX_DISCARD:
		ret = uffdx_discard(region, start, end, &done);
		report = true;
		break;
	default:
		ret = uffdx_fill(region, nr, start, end, r->src, &done);
		if (done && !(r->mode & UFFDX_FILL_DONTWAKE))
			uffdx_map_and_wake(ctx, region, start, start + done);
		report = true;
		break;
	}

	if (report) {
		if (done && start + done < end)
			ret = -EAGAIN;
		r->result = done ? (s64)done << PAGE_SHIFT : ret;
		/* result is the only output; every struct version has it */
		if (put_user(r->result,
			     &((struct uffdx_range __user *)uarg)->result))
			ret = -EFAULT;
	}
out_put:
	uffdx_region_put(region);
	return ret;
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
	 * semantic with it: refuse it (docs/design.md).
	 */
	if (!(vma->vm_flags & VM_SHARED))
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
	vma->vm_ops = &uffdx_vm_ops;
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

	if (cmd != UFFDX_IOC_REGION_INFO)
		return -ENOTTY;
	ret = uffdx_copy_in(&info, sizeof(info), sizeof(info), uarg, &usize);
	if (ret)
		return ret;
	if (memchr_inv(info.reserved, 0, sizeof(info.reserved)))
		return -EINVAL;

	info.flags = 0;		/* out only */
	info.len = region->len;
	info.region_id = region->id;
	info.resident = (u64)atomic_long_read(&region->resident) << PAGE_SHIFT;
	spin_lock(&region->ctx->fault_lock);
	if (region->ctx->released)
		info.flags |= UFFDX_REGION_OWNER_GONE;
	spin_unlock(&region->ctx->fault_lock);
	return uffdx_copy_out(uarg, usize, &info, sizeof(info));
}

static const struct file_operations uffdx_region_fops = {
	.owner = THIS_MODULE,
	.release = uffdx_region_release,
	.mmap = uffdx_region_mmap,
	.unlocked_ioctl = uffdx_region_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
};

int uffdx_region_create(struct uffdx_ctx *ctx, struct uffdx_region_create *rc,
			void __user *uarg, u32 usize)
{
	struct uffdx_region *region;
	struct inode *inode;
	struct file *file;
	u32 id;
	int fd, ret;

	if (rc->flags || rc->__pad ||
	    memchr_inv(rc->reserved, 0, sizeof(rc->reserved)))
		return -EINVAL;
	if (!rc->len || !PAGE_ALIGNED(rc->len) ||
	    rc->len > UFFDX_REGION_MAX_BYTES)
		return -EINVAL;

	region = kzalloc(sizeof(*region), GFP_KERNEL_ACCOUNT);
	if (!region)
		return -ENOMEM;
	kref_init(&region->kref);
	xa_init(&region->pages);
	mutex_init(&region->lock);
	atomic_long_set(&region->resident, 0);
	region->len = rc->len;
	region->npages = rc->len >> PAGE_SHIFT;

	inode = alloc_anon_inode(uffdx_mnt->mnt_sb);
	if (IS_ERR(inode)) {
		ret = PTR_ERR(inode);
		goto out_free_region;
	}
	inode->i_size = rc->len;
	inode->i_flags |= S_NOCMTIME;
	region->inode = inode;

	/*
	 * Reserve the id; the region is published only once it is complete
	 * (ids are sequential: another thread may look it up at once).
	 */
	ret = xa_alloc(&ctx->regions, &id, NULL, xa_limit_32b, GFP_KERNEL);
	if (ret)
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
	file = alloc_file_pseudo(inode, uffdx_mnt, "[uffdx-region]", O_RDWR,
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
out_free_region:
	kfree(region);
	return ret;
}
