// SPDX-License-Identifier: GPL-2.0
/*
 * Region slots held by a simulated device: the "held" rows of the page
 * store's slot machine (docs/design.md sections 3 and 7).  A device holds
 * a slot exclusive (the page, with no CPU mapping) or resident (a device
 * page in the slot); holds are taken and dropped under the slot's page
 * lock (and region->lock where the entry changes), a CPU access revokes
 * or migrates back (fault.c), DISCARD drops them first (store.c), MOVE
 * refuses them (move.c).  The device itself, its mirror and its file are
 * device.c's.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/highmem.h>
#include <linux/mm.h>
#include <linux/pagemap.h>
#include <linux/pid_namespace.h>
#include <linux/poll.h>
#include <linux/sched/mm.h>
#include <linux/slab.h>

#include "uffdx.h"
#include "device.h"

#if UFFDX_KERNEL_HMM_MIRROR

/* ---- region slots held by a device ------------------------------------- */

/* The region slot that @addr of @mm maps, if it is region memory. */
struct uffdx_region *uffdx_dev_region_at(struct mm_struct *mm,
					 unsigned long addr,
					 pgoff_t *index, bool *writable)
{
	struct vm_area_struct *vma;

	mmap_assert_locked(mm);
	vma = uffdx_vma_lookup(mm, addr);
	if (!vma || !uffdx_is_region_vma(vma))
		return NULL;
	*index = linear_page_index(vma, addr);
	if (writable)
		*writable = vma->vm_flags & VM_WRITE;
	return vma->vm_file->private_data;
}

/*
 * The hold of a slot: stable under its page lock; otherwise only under
 * RCU (holds are freed after a grace period), as a hint to check again.
 */
struct uffdx_hold *uffdx_slot_hold(struct uffdx_region *region, pgoff_t index)
{
	if (xa_empty(&region->held))
		return NULL;
	return xa_load(&region->held, index);
}

/*
 * Queue the event of a hold that ended: the hold becomes the event.
 * Returns false if it was not queued (the device is going, or its queue
 * is full), and the caller frees it.
 */
bool uffdx_dev_queue_event(struct uffdx_device *dev, struct uffdx_hold *hold,
			   u16 type, u32 flags)
{
	lockdep_assert_held(&dev->lock);
	if (dev->dying)
		return false;
	if (dev->nr_events >= UFFDX_DEV_MAX_EVENTS) {
		dev->stats.events_lost++;
		return false;
	}
	hold->event = (struct uffdx_dev_event) {
		.type = type,
		.flags = flags |
			 (current->mm != dev->notifier.mm ? UFFDX_PF_REMOTE : 0),
		.address = hold->addr,
		.region_id = hold->region ? hold->region->id : 0,
		.offset = (u64)hold->index << PAGE_SHIFT,
		.pid = task_tgid_nr_ns(current, dev->pidns),
		.tid = task_pid_nr_ns(current, dev->pidns),
	};
	list_add_tail(&hold->node, &dev->events);
	dev->nr_events++;
	wake_up_poll(&dev->wqh, EPOLLIN);
	return true;
}

/* Free a hold that is on no list and in no slot (or a bare event). */
void uffdx_hold_free(struct uffdx_hold *hold)
{
	if (hold->region)
		uffdx_region_put(hold->region);
	kfree_rcu(hold, rcu);
}

/*
 * End the hold on a slot, under the slot's page lock: the device forgets
 * it, and with @type non-zero it is told why (an event).  A resident page
 * stays in the slot; the callers that bring its data back have done so.
 * The region is never freed here: the caller's mapping, ioctl or own
 * reference holds it.
 */
void uffdx_hold_end(struct uffdx_hold *hold, u16 type, u32 flags)
{
	struct uffdx_device *dev = hold->dev;
	bool queued = false;

	xa_erase(&hold->region->held, hold->index);
	mutex_lock(&dev->lock);
	list_del(&hold->node);
	if (hold->kind == UFFDX_HOLD_RESIDENT)
		dev->stats.pool_used--;
	if (type == UFFDX_DEV_EVENT_REVOKED)
		dev->stats.revocations++;
	if (type == UFFDX_DEV_EVENT_MIGRATED)
		dev->stats.migrated_to_sys++;
	if (type)
		queued = uffdx_dev_queue_event(dev, hold, type, flags);
	mutex_unlock(&dev->lock);
	if (!queued)
		uffdx_hold_free(hold);
}

/*
 * Bring a resident slot's data back into a fresh system page, under the
 * device page's lock: the new page takes the slot, locked and referenced
 * for the caller, and the device page is freed.  Its charge is the slot's
 * (design.md section 7): the new page is charged, the old one uncharged.
 */
static struct page *uffdx_hold_copy_back(struct uffdx_region *region,
					 pgoff_t index, struct page *dpage)
{
	struct page *page = uffdx_alloc_page_uncharged(region->ctx, false);
	void *old;

	if (!page)
		return ERR_PTR(-ENOMEM);
	copy_highpage(page, dpage);
	lock_page(page);	/* unpublished: cannot block */
	/* Replaces an entry: nothing to allocate. */
	old = xa_cmpxchg(&region->pages, index, dpage, page, GFP_NOWAIT);
	if (WARN_ON_ONCE(old != dpage)) {
		unlock_page(page);
		put_page(page);
		return ERR_PTR(-EAGAIN);
	}
	/* The slot's charge passes to it; freeing @dpage gives it back. */
	uffdx_charge_force(region->ctx, UFFDX_PAGE_UNITS);
	get_page(page);		/* the caller's */
	return page;
}

/* Release the device page @dpage that left its slot (caller's ref too). */
static void uffdx_hold_free_dpage(struct uffdx_region *region,
				  struct page *dpage)
{
	unlock_page(dpage);
	put_page(dpage);		/* the caller's reference */
	uffdx_free_page(region->ctx, dpage);	/* the store's */
}

/*
 * A CPU access reached a held slot (fault.c, with @page, the slot's page,
 * locked and referenced): exclusive access is revoked, a resident page
 * comes back into system memory, and the device is told (@flags: the
 * event's UFFDX_PF_WRITE and UFFDX_PF_KERNEL).  Returns the page
 * to map (the same, or its replacement, locked and referenced; @page has
 * then been released) or an ERR_PTR (the fault fails with SIGBUS).
 */
struct page *uffdx_dev_cpu_access(struct uffdx_region *region, pgoff_t index,
				  struct page *page, u32 flags)
{
	struct uffdx_hold *hold = uffdx_slot_hold(region, index);
	struct uffdx_device *dev;
	struct page *new;

	if (!hold)
		return page;
	dev = hold->dev;
	kref_get(&dev->kref);	/* the file's release may be racing */
	if (hold->kind == UFFDX_HOLD_EXCLUSIVE) {
		uffdx_hold_end(hold, UFFDX_DEV_EVENT_REVOKED, flags);
		uffdx_device_put(dev);
		return page;
	}
	new = uffdx_hold_copy_back(region, index, page);
	if (IS_ERR(new)) {
		uffdx_device_put(dev);
		unlock_page(page);
		put_page(page);
		return new;
	}
	uffdx_hold_end(hold, UFFDX_DEV_EVENT_MIGRATED, flags);
	uffdx_device_put(dev);
	uffdx_hold_free_dpage(region, page);
	return new;
}

/*
 * DISCARD of [@start, @end) (store.c, under @region->lock): the holds of
 * the range end first, with an event, so that the slots empty as ordinary
 * ones (a resident page is then freed as a store page).
 */
void uffdx_dev_discard(struct uffdx_region *region, pgoff_t start,
		       pgoff_t end)
{
	struct uffdx_hold *hold;
	unsigned long index = start;
	struct page *page;

	lockdep_assert_held(&region->lock);
	while (!xa_empty(&region->held)) {
		hold = xa_find(&region->held, &index, end - 1, XA_PRESENT);
		if (!hold)
			break;
		page = uffdx_store_lock(region, index, true, NULL);
		hold = uffdx_slot_hold(region, index);
		if (page && hold) {
			struct uffdx_device *dev = hold->dev;

			kref_get(&dev->kref);
			uffdx_hold_end(hold, UFFDX_DEV_EVENT_DROPPED, 0);
			uffdx_device_put(dev);
		}
		if (page) {
			unlock_page(page);
			put_page(page);
		}
		index++;
	}
}

/*
 * Take a hold of @kind on the slot of @region at @index for @dev, the
 * slot's page locked (@page): every CPU mapping of the slot goes, and none
 * can come back while the hold is there (uffdx_store_lock()).
 */
static int uffdx_hold_take(struct uffdx_device *dev, struct uffdx_region *region,
			   pgoff_t index, unsigned long addr,
			   enum uffdx_hold_kind kind, struct uffdx_hold **holdp)
{
	struct uffdx_hold *hold = *holdp;
	int ret;

	hold->dev = dev;
	hold->region = region;
	hold->index = index;
	hold->addr = addr;
	hold->kind = kind;
	ret = xa_insert(&region->held, index, hold, GFP_KERNEL_ACCOUNT);
	if (ret)
		return ret == -EBUSY ? -EAGAIN : ret;
	mutex_lock(&dev->lock);
	if (dev->dying) {
		mutex_unlock(&dev->lock);
		xa_erase(&region->held, index);
		return -ESRCH;
	}
	kref_get(&region->kref);
	list_add_tail(&hold->node, &dev->holds);
	if (kind == UFFDX_HOLD_RESIDENT)
		dev->stats.pool_used++;
	mutex_unlock(&dev->lock);
	*holdp = NULL;
	/* Fires our own notifier too: the device's @pt never has the slot. */
	uffdx_unmap_pages(region->inode->i_mapping, index, 1);
	return 0;
}

/*
 * The device's own access to a slot it holds, with @mm locked: @fn on
 * the slot's page under its page lock.  Returns -ENOENT when @addr is not
 * a slot this device holds (the caller goes through @pt instead).
 */
int uffdx_dev_held_access(struct uffdx_dev_op *op, bool write,
			  int (*fn)(struct uffdx_dev_op *op,
				    struct uffdx_region *region,
				    pgoff_t index, struct page *page,
				    void *arg),
			  void *arg)
{
	struct uffdx_region *region;
	struct uffdx_hold *hold;
	struct page *page;
	pgoff_t index;
	int ret = -ENOENT;

	bool writable, ours;

	region = uffdx_dev_region_at(op->mm, op->addr, &index, &writable);
	if (!region)
		return -ENOENT;
	rcu_read_lock();
	hold = uffdx_slot_hold(region, index);
	ours = hold && hold->dev == op->dev;
	rcu_read_unlock();
	if (!ours)
		return -ENOENT;
	/* A device write through a read-only mapping, as a CPU one. */
	if (write && !writable)
		return -EPERM;
	page = uffdx_store_lock(region, index, true, NULL);
	if (!page)
		return -ENOENT;
	hold = uffdx_slot_hold(region, index);
	if (hold && hold->dev == op->dev) {
		ret = write ? uffdx_wp_device_write(region, index) : 0;
		if (!ret)
			ret = fn(op, region, index, page, arg);
	}
	unlock_page(page);
	put_page(page);
	return ret;
}

int uffdx_dev_copy_held(struct uffdx_dev_op *op,
			struct uffdx_region *region, pgoff_t index,
			struct page *page, void *arg)
{
	if (op->nr == _UFFDX_DEV_WRITE)
		uffdx_memcpy_to_page(page, op->bounce);
	else
		uffdx_memcpy_from_page(op->bounce, page);
	return 0;
}

/*
 * Make the page at @op->addr present, through the CPU's own fault path
 * (hmm_range_fault(), for reading): so an armed hole fails as a
 * kernel-mode access does, an unarmed one is populated, and a page
 * another device holds is taken back from it.  @write: the mapping must
 * allow writes (EPERM).  Returns the region and slot, with @mm locked, or
 * an ERR_PTR with it unlocked.
 */
static struct uffdx_region *uffdx_dev_prepare(struct uffdx_dev_op *op,
					      bool write, pgoff_t *index)
{
	struct uffdx_region *region;
	struct uffdx_hold *hold;
	bool writable;
	int ret;

	mmap_read_lock(op->mm);
	region = uffdx_dev_region_at(op->mm, op->addr, index, &writable);
	if (!region) {
		ret = uffdx_vma_lookup(op->mm, op->addr) ? -EINVAL : -EFAULT;
		goto fail;
	}
	if (write && !writable) {
		ret = -EPERM;
		goto fail;
	}
	rcu_read_lock();
	hold = uffdx_slot_hold(region, *index);
	if (hold && hold->dev == op->dev) {
		rcu_read_unlock();
		return region;
	}
	rcu_read_unlock();
	mmap_read_unlock(op->mm);

	/* Migrating a hole allocates on empty: nothing to fault in. */
	if (op->nr != _UFFDX_DEV_MIGRATE_TO_DEV) {
		ret = uffdx_dev_fault(op->dev, op->addr, op->addr + PAGE_SIZE,
				      false);
		if (ret)
			return ERR_PTR(ret);
		op->faults++;
	}
	mmap_read_lock(op->mm);
	region = uffdx_dev_region_at(op->mm, op->addr, index, NULL);
	if (!region) {
		ret = -EFAULT;
		goto fail;
	}
	return region;
fail:
	mmap_read_unlock(op->mm);
	return ERR_PTR(ret);
}

/*
 * The start of a change of the slot at @op->addr (exclusive, migration):
 * a hold allocated (no allocation under the locks the change takes), the
 * page made present (uffdx_dev_prepare(), which also refuses a read-only
 * mapping: a change of what the region holds), @mm locked, and
 * @region->lock held, which DISCARD and MOVE hold while they empty slots,
 * so that no hold outlives its page and no entry changes under them.
 */
static struct uffdx_region *uffdx_dev_begin(struct uffdx_dev_op *op,
					    pgoff_t *index,
					    struct uffdx_hold **holdp)
{
	struct uffdx_region *region;

	*holdp = kzalloc(sizeof(**holdp), GFP_KERNEL_ACCOUNT);
	if (!*holdp)
		return ERR_PTR(-ENOMEM);
	region = uffdx_dev_prepare(op, true, index);
	if (IS_ERR(region)) {
		kfree(*holdp);
		return region;
	}
	mutex_lock(&region->lock);
	return region;
}

/* The end of it: @hold is the one uffdx_dev_begin() made, or NULL if used. */
static void uffdx_dev_end(struct uffdx_dev_op *op, struct uffdx_region *region,
			  struct uffdx_hold *hold)
{
	mutex_unlock(&region->lock);
	mmap_read_unlock(op->mm);
	kfree(hold);
}

/*
 * Hold the page at @op->addr exclusive (DEV_EXCLUSIVE, DEV_ATOMIC), then
 * run @fn on it under its page lock.
 */
int uffdx_dev_exclusive_page(struct uffdx_dev_op *op,
			     int (*fn)(struct uffdx_dev_op *op,
				       struct uffdx_region *region,
				       pgoff_t index, struct page *page,
				       void *arg),
			     void *arg)
{
	struct uffdx_hold *hold = NULL, *cur;
	struct uffdx_region *region;
	struct page *page;
	pgoff_t index;
	int ret;

	/*
	 * Taking the page is not a write (dirty tracking must not see one);
	 * the device's writes while it holds it are (uffdx_wp_device_write()).
	 */
	region = uffdx_dev_begin(op, &index, &hold);
	if (IS_ERR(region))
		return PTR_ERR(region);
	page = uffdx_store_lock(region, index, true, NULL);
	if (!page) {
		/* Discarded since it was faulted in: let the caller retry. */
		ret = -EAGAIN;
		goto out;
	}
	cur = uffdx_slot_hold(region, index);
	if (!cur)
		ret = uffdx_hold_take(op->dev, region, index, op->addr,
				      UFFDX_HOLD_EXCLUSIVE, &hold);
	else
		ret = cur->dev == op->dev ? 0 : -EBUSY;
	if (!ret && fn) {
		ret = fn(op, region, index, page, arg);
		/* A refused atomic leaves the page as it found it. */
		if (ret && !cur)
			uffdx_hold_end(uffdx_slot_hold(region, index), 0, 0);
	}
	unlock_page(page);
	put_page(page);
out:
	uffdx_dev_end(op, region, hold);
	return ret;
}

int uffdx_dev_atomic_fn(struct uffdx_dev_op *op,
			struct uffdx_region *region, pgoff_t index,
			struct page *page, void *arg)
{
	struct uffdx_dev_atomic *a = arg;
	atomic64_t *word;
	int ret;

	ret = uffdx_wp_device_write(region, index);
	if (ret)
		return ret;
	/* Store pages are not highmem (GFP_USER). */
	word = page_address(page) + offset_in_page(a->addr);
	if (a->op == UFFDX_DEV_ATOMIC_FETCH_ADD) {
		a->old = atomic64_fetch_add(a->value, word);
	} else {
		s64 old = a->expected;

		atomic64_try_cmpxchg(word, &old, a->value);
		a->old = old;
	}
	return 0;
}

/* DEV_MIGRATE_TO_DEV of one page: the slot goes into device memory. */
int uffdx_dev_migrate_page(struct uffdx_dev_op *op, void *arg)
{
	struct uffdx_device *dev = op->dev;
	struct uffdx_hold *hold, *cur;
	struct uffdx_region *region;
	struct page *page, *dpage;
	void *entry;
	pgoff_t index;
	bool busy;
	int ret = 0;

	op->status = 0;
	region = uffdx_dev_begin(op, &index, &hold);
	if (IS_ERR(region))
		return PTR_ERR(region);
	rcu_read_lock();
	cur = uffdx_slot_hold(region, index);
	/* Another device's, or in device memory already: not migrated. */
	busy = cur && (cur->dev != dev || cur->kind == UFFDX_HOLD_RESIDENT);
	rcu_read_unlock();
	if (busy)
		goto out;
	/* Device memory: the bound is checked without @lock, as a hint. */
	if (READ_ONCE(dev->stats.pool_used) >= dev->pool_pages) {
		ret = -ENOMEM;
		goto out;
	}

	page = uffdx_store_lock(region, index, true, &entry);
	if (!page) {
		if (entry || uffdx_region_armed(region, index))
			goto out;	/* poison, or an armed hole: stays */
		/* Allocate on empty: a zeroed device page, no CPU page. */
		dpage = uffdx_alloc_page(region->ctx, true);
		if (!dpage) {
			ret = -ENOMEM;
			goto out;
		}
		lock_page(dpage);	/* unpublished: cannot block */
		ret = uffdx_store_publish(region, index, dpage);
		if (!ret) {
			ret = uffdx_hold_take(dev, region, index, op->addr,
					      UFFDX_HOLD_RESIDENT, &hold);
			if (ret) {
				/* The page is an ordinary store page now. */
				unlock_page(dpage);
				goto out;
			}
			mutex_lock(&dev->lock);
			dev->stats.allocated++;
			dev->stats.migrated_to_dev++;
			mutex_unlock(&dev->lock);
			unlock_page(dpage);
			op->status = 1;
			goto out;
		}
		unlock_page(dpage);
		uffdx_free_page(region->ctx, dpage);
		ret = ret == -EEXIST ? -EAGAIN : ret;	/* filled: again */
		goto out;
	}

	cur = uffdx_slot_hold(region, index);
	if (cur && cur->dev != dev)
		goto out_unlock;
	/* The slot's charge passes to the device page (design.md 7). */
	dpage = uffdx_alloc_page_uncharged(region->ctx, false);
	if (!dpage) {
		ret = -ENOMEM;
		goto out_unlock;
	}
	/*
	 * Only a page that nothing but the store (and us) references moves:
	 * once its mappings are gone, any other reference is a pin or a GUP
	 * user that would keep writing to the old page.
	 */
	uffdx_unmap_pages(region->inode->i_mapping, index, 1);
	if (page_ref_count(page) != 2) {
		put_page(dpage);
		goto out_unlock;
	}
	if (cur) {
		/* Exclusive already: it becomes resident. */
		mutex_lock(&dev->lock);
		list_del(&cur->node);
		mutex_unlock(&dev->lock);
		xa_erase(&region->held, index);
		uffdx_region_put(region);	/* the VMA holds it too */
		kfree(hold);
		hold = cur;
	}
	copy_highpage(dpage, page);
	lock_page(dpage);	/* unpublished: cannot block */
	entry = xa_cmpxchg(&region->pages, index, page, dpage, GFP_NOWAIT);
	if (WARN_ON_ONCE(entry != page)) {
		unlock_page(dpage);
		put_page(dpage);
		ret = -EAGAIN;
		goto out_unlock;
	}
	uffdx_charge_force(region->ctx, UFFDX_PAGE_UNITS);
	ret = uffdx_hold_take(dev, region, index, op->addr,
			      UFFDX_HOLD_RESIDENT, &hold);
	unlock_page(dpage);
	if (!ret) {
		mutex_lock(&dev->lock);
		dev->stats.migrated_to_dev++;
		mutex_unlock(&dev->lock);
		op->status = 1;
	}
	/* The system page left the slot: the device page has it now. */
	uffdx_hold_free_dpage(region, page);
	page = NULL;
out_unlock:
	if (page) {
		unlock_page(page);
		put_page(page);
	}
out:
	uffdx_dev_end(op, region, hold);
	return ret;
}

/* DEV_MIGRATE_TO_SYS of one page: a resident slot comes back. */
int uffdx_dev_unmigrate_page(struct uffdx_dev_op *op)
{
	struct uffdx_region *region;
	struct uffdx_hold *hold;
	struct page *page, *new;
	pgoff_t index;
	int ret = 0;

	op->status = 0;
	mmap_read_lock(op->mm);
	region = uffdx_dev_region_at(op->mm, op->addr, &index, NULL);
	if (!region) {
		ret = uffdx_vma_lookup(op->mm, op->addr) ? 0 : -EFAULT;
		goto out;
	}
	mutex_lock(&region->lock);	/* the entry changes: store.c */
	page = uffdx_store_lock(region, index, true, NULL);
	if (!page)
		goto out_region;
	hold = uffdx_slot_hold(region, index);
	if (!hold || hold->dev != op->dev ||
	    hold->kind != UFFDX_HOLD_RESIDENT) {
		unlock_page(page);
		put_page(page);
		goto out_region;
	}
	new = uffdx_hold_copy_back(region, index, page);
	if (IS_ERR(new)) {
		unlock_page(page);
		put_page(page);
		ret = PTR_ERR(new);
		goto out_region;
	}
	mutex_lock(&op->dev->lock);
	op->dev->stats.migrated_to_sys++;
	mutex_unlock(&op->dev->lock);
	uffdx_hold_end(hold, 0, 0);
	uffdx_hold_free_dpage(region, page);
	unlock_page(new);
	put_page(new);
	op->status = 1;
out_region:
	mutex_unlock(&region->lock);
out:
	mmap_read_unlock(op->mm);
	return ret;
}

/* CHECK_EXCLUSIVE and RELEASE of one page. */
int uffdx_dev_check_page(struct uffdx_dev_op *op, bool release)
{
	struct uffdx_region *region;
	struct uffdx_hold *hold;
	bool ours, exclusive;
	struct page *page;
	pgoff_t index;
	int ret = release ? 0 : -EPERM;

	mmap_read_lock(op->mm);
	region = uffdx_dev_region_at(op->mm, op->addr, &index, NULL);
	rcu_read_lock();
	hold = region ? uffdx_slot_hold(region, index) : NULL;
	ours = hold && hold->dev == op->dev;
	exclusive = ours && hold->kind == UFFDX_HOLD_EXCLUSIVE;
	rcu_read_unlock();
	if (!ours)
		goto out;
	if (!release) {
		ret = 0;
		goto out;
	}
	if (!exclusive)
		goto out;
	page = uffdx_store_lock(region, index, true, NULL);
	if (!page)
		goto out;
	hold = uffdx_slot_hold(region, index);
	if (hold && hold->dev == op->dev && hold->kind == UFFDX_HOLD_EXCLUSIVE)
		uffdx_hold_end(hold, 0, 0);
	unlock_page(page);
	put_page(page);
out:
	mmap_read_unlock(op->mm);
	return ret;
}

#else /* !UFFDX_KERNEL_HMM_MIRROR: no device, no holds */

struct uffdx_hold *uffdx_slot_hold(struct uffdx_region *region, pgoff_t index)
{
	return NULL;
}

struct page *uffdx_dev_cpu_access(struct uffdx_region *region, pgoff_t index,
				  struct page *page, u32 flags)
{
	return page;
}

void uffdx_dev_discard(struct uffdx_region *region, pgoff_t start,
		       pgoff_t end)
{
}

#endif /* UFFDX_KERNEL_HMM_MIRROR */
