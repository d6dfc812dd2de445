// SPDX-License-Identifier: GPL-2.0
/*
 * The simulated device: a secondary MMU that mirrors the address space of
 * the process that created it, as lib/test_hmm.c's dmirror does, and holds
 * region slots exclusive or in its own memory.  docs/design.md section 7.
 *
 * The device's page table (@pt) caches CPU translations found with
 * hmm_range_fault() and is emptied by an mmu_interval_notifier over the
 * whole address space.  Slots it holds (struct uffdx_hold, in the region's
 * @held) are never in @pt: the device reaches them through the store,
 * under the page lock, and no CPU may map them (store.c, fault.c).
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/anon_inodes.h>
#include <linux/file.h>
#include <linux/hmm.h>
#include <linux/highmem.h>
#include <linux/mmu_notifier.h>
#include <linux/module.h>
#include <linux/pagemap.h>
#include <linux/pid_namespace.h>
#include <linux/poll.h>
#include <linux/sched/mm.h>
#include <linux/sched/signal.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

#include "uffdx.h"
#include "device.h"

#if UFFDX_KERNEL_HMM_MIRROR

static unsigned long uffdx_device_pool_pages = 65536;	/* 256 MiB */
module_param_named(device_pool_pages, uffdx_device_pool_pages, ulong, 0644);
MODULE_PARM_DESC(device_pool_pages,
		 "Device memory of each simulated device, in pages (read at creation)");

static void uffdx_device_free(struct kref *kref)
{
	struct uffdx_device *dev = container_of(kref, struct uffdx_device,
						kref);

	xa_destroy(&dev->pt);
	put_pid_ns(dev->pidns);
	uffdx_unaccount_region(dev->ctx);
	uffdx_ctx_put(dev->ctx);
	kfree(dev);
}

static void uffdx_device_put(struct uffdx_device *dev)
{
	kref_put(&dev->kref, uffdx_device_free);
}

/* ---- the mirror -------------------------------------------------------- */

static unsigned int uffdx_dev_inval_reason(enum mmu_notifier_event event)
{
	switch (event) {
	case MMU_NOTIFY_UNMAP:
		return UFFDX_DEV_INVAL_UNMAP;
	case MMU_NOTIFY_CLEAR:
		return UFFDX_DEV_INVAL_CLEAR;
	case MMU_NOTIFY_PROTECTION_VMA:
		return UFFDX_DEV_INVAL_PROTECTION_VMA;
	case MMU_NOTIFY_PROTECTION_PAGE:
		return UFFDX_DEV_INVAL_PROTECTION_PAGE;
	case MMU_NOTIFY_SOFT_DIRTY:
		return UFFDX_DEV_INVAL_SOFT_DIRTY;
	case MMU_NOTIFY_RELEASE:
		return UFFDX_DEV_INVAL_RELEASE;
	case MMU_NOTIFY_MIGRATE:
		return UFFDX_DEV_INVAL_MIGRATE;
	default:
		return UFFDX_DEV_INVAL_EXCLUSIVE;
	}
}

/*
 * Every invalidation of the mirrored mm drops the device's translations of
 * the range.  None is filtered: the device causes none of its own (it
 * holds region slots through the store, not through page tables).
 */
static bool uffdx_dev_invalidate(struct mmu_interval_notifier *mni,
				 const struct mmu_notifier_range *range,
				 unsigned long cur_seq)
{
	struct uffdx_device *dev = container_of(mni, struct uffdx_device,
						notifier);
	struct uffdx_hold *ev;
	unsigned long pfn;
	void *entry;

	/*
	 * Its own exclusive grabs of process memory (hmm.c) carry the device
	 * as owner and keep the page: nothing to drop, and no restart of its
	 * own grab (which reads the sequence around it).
	 */
	if (uffdx_range_owner(range) == dev &&
	    uffdx_notify_is_exclusive(range->event))
		return true;

	if (mmu_notifier_range_blockable(range))
		mutex_lock(&dev->lock);
	else if (!mutex_trylock(&dev->lock))
		return false;

	/*
	 * Its own migrations update its table themselves, but still end a
	 * device fault that read the page tables meanwhile (the sequence).
	 */
	mmu_interval_set_seq(mni, cur_seq);
	if (uffdx_range_owner(range) == dev &&
	    range->event == MMU_NOTIFY_MIGRATE) {
		mutex_unlock(&dev->lock);
		return true;
	}
	dev->stats.invalidations[uffdx_dev_inval_reason(range->event)]++;
	xa_for_each_range(&dev->pt, pfn, entry, range->start >> PAGE_SHIFT,
			  (range->end - 1) >> PAGE_SHIFT) {
		xa_erase(&dev->pt, pfn);
		dev->stats.invalidated_pages++;
		if (!(xa_pointer_tag(entry) & UFFDX_PT_ATOMIC))
			continue;
		/* Exclusive access to process memory lost: tell the device. */
		dev->stats.revocations++;
		ev = kzalloc(sizeof(*ev), GFP_NOWAIT | __GFP_ACCOUNT);
		if (ev) {
			ev->addr = pfn << PAGE_SHIFT;
			if (!uffdx_dev_queue_event(dev, ev,
						   UFFDX_DEV_EVENT_REVOKED, 0))
				kfree(ev);
		} else {
			dev->stats.events_lost++;
		}
	}
	mutex_unlock(&dev->lock);
	return true;
}

static const struct mmu_interval_notifier_ops uffdx_dev_notifier_ops = {
	.invalidate = uffdx_dev_invalidate,
};

/* Is one of @pfns a device-private page that is not writable? */
static bool uffdx_dev_private_ro(const unsigned long *pfns, unsigned long n)
{
	unsigned long i;

	for (i = 0; i < n; i++)
		if (!(pfns[i] & HMM_PFN_WRITE) &&
		    is_device_private_page(hmm_pfn_to_page(pfns[i])))
			return true;
	return false;
}

/*
 * A device fault: hmm_range_fault() on [@start, @end) of the mirrored mm
 * (faulting pages in, for writing with @write), then the translations go
 * into @pt unless an invalidation ran meanwhile, as test_hmm's
 * dmirror_range_fault() does.  Called with no lock held.
 */
static int uffdx_dev_fault(struct uffdx_device *dev, unsigned long start,
			   unsigned long end, bool write)
{
	struct mm_struct *mm = dev->notifier.mm;
	unsigned long pfns[UFFDX_DEV_FAULT_PAGES];
	unsigned long timeout = jiffies +
				msecs_to_jiffies(HMM_RANGE_DEFAULT_TIMEOUT);
	struct hmm_range range = {
		.notifier = &dev->notifier,
		.start = start,
		.end = end,
		.hmm_pfns = pfns,
		.default_flags = HMM_PFN_REQ_FAULT |
				 (write ? HMM_PFN_REQ_WRITE : 0),
		.dev_private_owner = dev,
	};
	unsigned long i, n = (end - start) >> PAGE_SHIFT;
	int ret;

	for (;;) {
		if (fatal_signal_pending(current))
			return -EINTR;
		if (time_after(jiffies, timeout))
			return -EBUSY;
		range.notifier_seq = mmu_interval_read_begin(&dev->notifier);
		mmap_read_lock(mm);
		ret = hmm_range_fault(&range);
		mmap_read_unlock(mm);
		if (ret == -EBUSY)
			continue;
		if (ret)
			return ret;
		/*
		 * hmm_range_fault() returns the device's own private pages
		 * as they are, even read-only ones for a write: those come
		 * back to system memory first (no owner: a CPU fault).
		 */
		if (write && range.dev_private_owner &&
		    uffdx_dev_private_ro(pfns, n)) {
			range.dev_private_owner = NULL;
			continue;
		}
		mutex_lock(&dev->lock);
		if (!mmu_interval_read_retry(&dev->notifier,
					     range.notifier_seq))
			break;
		mutex_unlock(&dev->lock);
	}

	for (i = 0; i < n; i++) {
		struct page *page = hmm_pfn_to_page(pfns[i]);
		void *entry;

		/* Its own device memory: the data is in the backing page. */
		if (is_device_private_page(page))
			page = uffdx_hmm_backing(page);
		entry = page;
		if (pfns[i] & HMM_PFN_WRITE)
			entry = xa_tag_pointer(entry, UFFDX_PT_WRITE);
		/* Under @lock: no reclaim (it may call our notifier). */
		entry = xa_store(&dev->pt, (start >> PAGE_SHIFT) + i, entry,
				 GFP_NOWAIT | __GFP_ACCOUNT);
		if (xa_is_err(entry)) {
			ret = xa_err(entry);
			break;
		}
	}
	dev->stats.faults++;
	mutex_unlock(&dev->lock);
	return ret;
}

/* ---- region slots held by a device ------------------------------------- */

/* The region slot that @addr of @mm maps, if it is region memory. */
static struct uffdx_region *uffdx_dev_region_at(struct mm_struct *mm,
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
static void uffdx_hold_end(struct uffdx_hold *hold, u16 type, u32 flags)
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

/* ---- device commands --------------------------------------------------- */

/*
 * The device's own access to a slot it holds, with @mm locked: @fn on
 * the slot's page under its page lock.  Returns -ENOENT when @addr is not
 * a slot this device holds (the caller goes through @pt instead).
 */
static int uffdx_dev_held_access(struct uffdx_dev_op *op, bool write,
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

static int uffdx_dev_copy_held(struct uffdx_dev_op *op,
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
 * One page of DEV_READ or DEV_WRITE between @op->bounce and the device's
 * view of @op->addr: a slot it holds, else its page table, faulting on a
 * miss.  The region form of the fault is one page, so that it cannot
 * fault (revoke) a neighbouring slot the device holds.
 */
static int uffdx_dev_rw_page(struct uffdx_dev_op *op, unsigned long end)
{
	struct uffdx_device *dev = op->dev;
	bool write = op->nr == _UFFDX_DEV_WRITE;
	unsigned long pfn = op->addr >> PAGE_SHIFT, fend, vm_end = 0;
	struct vm_area_struct *vma;
	struct page *page;
	bool region;
	void *entry;
	int ret;

	for (;;) {
		mutex_lock(&dev->lock);
		entry = xa_load(&dev->pt, pfn);
		page = xa_untag_pointer(entry);
		if (page && (!write || xa_pointer_tag(entry) & UFFDX_PT_WRITE)) {
			if (write)
				uffdx_memcpy_to_page(page, op->bounce);
			else
				uffdx_memcpy_from_page(op->bounce, page);
			mutex_unlock(&dev->lock);
			return 0;
		}
		mutex_unlock(&dev->lock);

		mmap_read_lock(op->mm);
		ret = uffdx_dev_held_access(op, write, uffdx_dev_copy_held,
					    NULL);
		vma = uffdx_vma_lookup(op->mm, op->addr);
		region = vma && uffdx_is_region_vma(vma);
		if (vma)
			vm_end = vma->vm_end;
		mmap_read_unlock(op->mm);
		if (ret != -ENOENT)
			return ret;
		/* Process memory is mirrored with the HMM_MIRROR feature. */
		if (vm_end && !region &&
		    !(dev->ctx->features & UFFDX_FEATURE_HMM_MIRROR))
			return -EINVAL;

		/*
		 * A window of process memory, within its VMA (a region
		 * beside it must not be faulted: its holds would go).
		 */
		fend = region || !vm_end ? op->addr + PAGE_SIZE :
		       min3(end, vm_end,
			    op->addr + UFFDX_DEV_FAULT_PAGES * PAGE_SIZE);
		ret = uffdx_dev_fault(dev, op->addr, fend, write);
		if (ret)
			return ret;
		op->faults++;
	}
}

static int uffdx_dev_rw(struct uffdx_dev_op *op, struct uffdx_dev_cmd *cmd)
{
	unsigned long end = cmd->addr + (cmd->npages << PAGE_SHIFT);
	char __user *ptr = u64_to_user_ptr(cmd->ptr);
	int ret = 0;

	op->bounce = kmalloc(PAGE_SIZE, GFP_KERNEL);
	if (!op->bounce)
		return -ENOMEM;
	for (op->addr = cmd->addr; op->addr < end; op->addr += PAGE_SIZE) {
		if (op->nr == _UFFDX_DEV_WRITE &&
		    copy_from_user(op->bounce, ptr, PAGE_SIZE)) {
			ret = -EFAULT;
			break;
		}
		ret = uffdx_dev_rw_page(op, end);
		if (ret)
			break;
		if (op->nr == _UFFDX_DEV_READ &&
		    copy_to_user(ptr, op->bounce, PAGE_SIZE)) {
			ret = -EFAULT;
			break;
		}
		op->cpages++;
		ptr += PAGE_SIZE;
		cond_resched();
	}
	kfree(op->bounce);
	return ret;
}

/* Does the device hold the page at @addr of process memory exclusive? */
static bool uffdx_dev_pt_atomic(struct uffdx_device *dev, unsigned long addr,
				bool release)
{
	void *entry;
	bool ret;

	mutex_lock(&dev->lock);
	entry = xa_load(&dev->pt, addr >> PAGE_SHIFT);
	ret = entry && (xa_pointer_tag(entry) & UFFDX_PT_ATOMIC);
	if (ret && release)
		xa_erase(&dev->pt, addr >> PAGE_SHIFT);
	mutex_unlock(&dev->lock);
	return ret;
}

/*
 * Without HMM_MIRROR the device sees region memory only: -EINVAL if
 * [@start, @end) has process memory in it.
 */
static int uffdx_dev_process_in(struct mm_struct *mm, unsigned long start,
				unsigned long end)
{
	struct vm_area_struct *vma;

	while (start < end) {
		vma = find_vma(mm, start);
		if (!vma || vma->vm_start >= end)
			return 0;
		if (!uffdx_is_region_vma(vma))
			return -EINVAL;
		start = vma->vm_end;
	}
	return 0;
}

/*
 * The snapshot byte of one page, from its hmm pfn and any hold: a state
 * (test_hmm's values, and EXCLUSIVE) with READ or WRITE, as test_hmm's
 * dmirror_mkentry() reports them.
 */
static u8 uffdx_dev_prot(struct uffdx_device *dev, struct mm_struct *mm,
			 unsigned long addr, unsigned long hpfn)
{
	struct uffdx_region *region;
	struct uffdx_hold *hold;
	struct page *page;
	bool writable;
	pgoff_t index;
	u8 prot;

	region = uffdx_dev_region_at(mm, addr, &index, &writable);
	rcu_read_lock();
	hold = region ? uffdx_slot_hold(region, index) : NULL;
	if (hold) {
		if (hold->kind == UFFDX_HOLD_RESIDENT)
			prot = hold->dev == dev ? UFFDX_DEV_PROT_DEV_LOCAL :
			       UFFDX_DEV_PROT_DEV_REMOTE;
		else if (hold->dev == dev)
			prot = UFFDX_DEV_PROT_EXCLUSIVE;
		else
			prot = 0;	/* no CPU mapping: NONE */
		rcu_read_unlock();
		if (!prot)
			return UFFDX_DEV_PROT_NONE;
		return prot | (writable ? UFFDX_DEV_PROT_WRITE :
			       UFFDX_DEV_PROT_READ);
	}
	rcu_read_unlock();
	if (!region && uffdx_dev_pt_atomic(dev, addr, false))
		return UFFDX_DEV_PROT_EXCLUSIVE | UFFDX_DEV_PROT_WRITE;
	if (hpfn & HMM_PFN_ERROR)
		return UFFDX_DEV_PROT_ERROR;
	if (!(hpfn & HMM_PFN_VALID))
		return UFFDX_DEV_PROT_NONE;
	page = hmm_pfn_to_page(hpfn);
	if (is_device_private_page(page))
		prot = uffdx_hmm_is_ours(dev, page) ? UFFDX_DEV_PROT_DEV_LOCAL :
		       UFFDX_DEV_PROT_DEV_REMOTE;
	else if (is_zero_pfn(page_to_pfn(page)))
		prot = UFFDX_DEV_PROT_ZERO;
	else
		prot = UFFDX_DEV_PROT_NONE;
	prot |= hpfn & HMM_PFN_WRITE ? UFFDX_DEV_PROT_WRITE :
		UFFDX_DEV_PROT_READ;
	if (uffdx_hmm_pfn_order(hpfn) == PMD_SHIFT - PAGE_SHIFT)
		prot |= UFFDX_DEV_PROT_PMD;
	else if (uffdx_hmm_pfn_order(hpfn) == PUD_SHIFT - PAGE_SHIFT)
		prot |= UFFDX_DEV_PROT_PUD;
	return prot;
}

/*
 * DEV_SNAPSHOT: the CPU page table as hmm_range_fault() sees it without
 * faulting, with the slots the devices hold, one byte a page.
 */
static int uffdx_dev_snapshot(struct uffdx_dev_op *op,
			      struct uffdx_dev_cmd *cmd)
{
	unsigned long pfns[UFFDX_DEV_FAULT_PAGES];
	u8 prot[UFFDX_DEV_FAULT_PAGES];
	unsigned long end = cmd->addr + (cmd->npages << PAGE_SHIFT);
	u8 __user *ptr = u64_to_user_ptr(cmd->ptr);
	struct hmm_range range = {
		.notifier = &op->dev->notifier,
		.hmm_pfns = pfns,
		.dev_private_owner = op->dev,
	};
	unsigned long timeout, i, n;
	int ret;

	for (op->addr = cmd->addr; op->addr < end; op->addr = range.end) {
		range.start = op->addr;
		range.end = min(end, op->addr +
				UFFDX_DEV_FAULT_PAGES * PAGE_SIZE);
		n = (range.end - range.start) >> PAGE_SHIFT;
		timeout = jiffies + msecs_to_jiffies(HMM_RANGE_DEFAULT_TIMEOUT);
		for (;;) {
			if (fatal_signal_pending(current))
				return -EINTR;
			if (time_after(jiffies, timeout))
				return -EBUSY;
			range.notifier_seq =
				mmu_interval_read_begin(&op->dev->notifier);
			mmap_read_lock(op->mm);
			ret = hmm_range_fault(&range);
			if (!ret && !(op->dev->ctx->features &
				      UFFDX_FEATURE_HMM_MIRROR))
				ret = uffdx_dev_process_in(op->mm, range.start,
							   range.end);
			for (i = 0; !ret && i < n; i++)
				prot[i] = uffdx_dev_prot(op->dev, op->mm,
							 range.start +
							 (i << PAGE_SHIFT),
							 pfns[i]);
			mmap_read_unlock(op->mm);
			if (ret == -EBUSY)
				continue;
			if (ret)
				return ret;
			if (!mmu_interval_read_retry(&op->dev->notifier,
						     range.notifier_seq))
				break;
		}
		if (copy_to_user(ptr, prot, n))
			return -EFAULT;
		ptr += n;
		op->cpages += n;
		cond_resched();
	}
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
static int uffdx_dev_exclusive_page(struct uffdx_dev_op *op,
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

static int uffdx_dev_atomic_fn(struct uffdx_dev_op *op,
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

/* Run a per-page step, again while the page's slot changed under it. */
static int uffdx_dev_retry(struct uffdx_dev_op *op,
			   int (*step)(struct uffdx_dev_op *op, void *arg),
			   void *arg)
{
	int ret;

	do {
		if (fatal_signal_pending(current))
			return -EINTR;
		ret = step(op, arg);
	} while (ret == -EAGAIN);
	return ret;
}

/* DEV_MIGRATE_TO_DEV of one page: the slot goes into device memory. */
static int uffdx_dev_migrate_page(struct uffdx_dev_op *op, void *arg)
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
static int uffdx_dev_unmigrate_page(struct uffdx_dev_op *op)
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
static int uffdx_dev_check_page(struct uffdx_dev_op *op, bool release)
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

static int uffdx_dev_exclusive_step(struct uffdx_dev_op *op, void *arg)
{
	return uffdx_dev_exclusive_page(op, NULL, NULL);
}

static int uffdx_dev_atomic_step(struct uffdx_dev_op *op, void *arg)
{
	return uffdx_dev_exclusive_page(op, uffdx_dev_atomic_fn, arg);
}

/* Is @op->addr process memory (mapped, not a region)? */
static bool uffdx_dev_is_process(struct uffdx_dev_op *op)
{
	struct vm_area_struct *vma;
	bool ret;

	mmap_read_lock(op->mm);
	vma = uffdx_vma_lookup(op->mm, op->addr);
	ret = vma && !uffdx_is_region_vma(vma);
	mmap_read_unlock(op->mm);
	return ret;
}

/*
 * The per-page commands on process memory (hmm.c), from @op->addr, up to
 * a window: advances @op->addr, and for MIGRATE_* fills @status and *@n.
 */
static int uffdx_dev_process_pages(struct uffdx_dev_op *op, unsigned long end,
				   u8 *status, unsigned long *n)
{
	u64 features = op->dev->ctx->features;
	unsigned long start = op->addr;
	int ret;

	*n = 0;
	switch (op->nr) {
	case _UFFDX_DEV_EXCLUSIVE:
		if (!(features & UFFDX_FEATURE_HMM_EXCLUSIVE))
			return -EINVAL;
		return uffdx_hmm_exclusive(op, end);
	case _UFFDX_DEV_CHECK_EXCLUSIVE:
	case _UFFDX_DEV_RELEASE:
		if (!uffdx_dev_pt_atomic(op->dev, op->addr,
					 op->nr == _UFFDX_DEV_RELEASE) &&
		    op->nr == _UFFDX_DEV_CHECK_EXCLUSIVE)
			return -EPERM;
		op->addr += PAGE_SIZE;
		op->cpages++;
		return 0;
	default:
		if (!(features & UFFDX_FEATURE_HMM_MIGRATE))
			return -EINVAL;
		mmap_read_lock(op->mm);
		ret = uffdx_hmm_migrate(op, end,
					op->nr == _UFFDX_DEV_MIGRATE_TO_DEV,
					status);
		mmap_read_unlock(op->mm);
		if (op->addr > start)
			*n = (op->addr - start) >> PAGE_SHIFT;
		return ret;
	}
}

/* Write the status bytes of pages done and count them. */
static int uffdx_dev_status(struct uffdx_dev_op *op, u8 __user **status,
			    const u8 *st, unsigned long n)
{
	unsigned long i;

	for (i = 0; i < n; i++)
		op->cpages += st[i];
	if (!*status)
		return 0;
	if (copy_to_user(*status, st, n))
		return -EFAULT;
	*status += n;
	return 0;
}

/*
 * Region memory takes exclusive access with DEVICE_EXCLUSIVE and migrates
 * with DEVICE_MIGRATE (process memory: HMM_*, uffdx_dev_process_pages()).
 */
static int uffdx_dev_region_feature(struct uffdx_dev_op *op)
{
	u64 features = op->dev->ctx->features;

	switch (op->nr) {
	case _UFFDX_DEV_MIGRATE_TO_DEV:
	case _UFFDX_DEV_MIGRATE_TO_SYS:
		return features & UFFDX_FEATURE_DEVICE_MIGRATE ? 0 : -EINVAL;
	case _UFFDX_DEV_ATOMIC:
	case _UFFDX_DEV_EXCLUSIVE:
		return features & UFFDX_FEATURE_DEVICE_EXCLUSIVE ? 0 : -EINVAL;
	default:
		return 0;
	}
}

/* The per-page commands: EXCLUSIVE, CHECK, RELEASE, MIGRATE_*. */
static int uffdx_dev_pages(struct uffdx_dev_op *op, struct uffdx_dev_cmd *cmd)
{
	unsigned long end = cmd->addr + (cmd->npages << PAGE_SHIFT);
	u8 __user *status = u64_to_user_ptr(cmd->ptr);
	bool migrate = op->nr == _UFFDX_DEV_MIGRATE_TO_DEV ||
		       op->nr == _UFFDX_DEV_MIGRATE_TO_SYS;
	u8 st[UFFDX_DEV_FAULT_PAGES];
	unsigned long n;
	int ret = 0, err, nomem = 0;

	op->addr = cmd->addr;
	while (op->addr < end) {
		if (fatal_signal_pending(current)) {
			ret = -EINTR;
			break;
		}
		if (uffdx_dev_is_process(op)) {
			err = uffdx_dev_process_pages(op, end, st, &n);
			if (migrate && uffdx_dev_status(op, &status, st, n))
				err = -EFAULT;
			/* Out of device memory: the rest is examined, not moved. */
			if (err == -ENOMEM && migrate && n) {
				nomem = err;
				err = 0;
			}
			if (err) {
				ret = err;
				break;
			}
			cond_resched();
			continue;
		}
		ret = uffdx_dev_region_feature(op);
		if (ret)
			break;
		switch (op->nr) {
		case _UFFDX_DEV_EXCLUSIVE:
			ret = uffdx_dev_retry(op, uffdx_dev_exclusive_step,
					      NULL);
			break;
		case _UFFDX_DEV_CHECK_EXCLUSIVE:
			ret = uffdx_dev_check_page(op, false);
			break;
		case _UFFDX_DEV_RELEASE:
			ret = uffdx_dev_check_page(op, true);
			break;
		case _UFFDX_DEV_MIGRATE_TO_DEV:
			ret = uffdx_dev_retry(op, uffdx_dev_migrate_page,
					      NULL);
			break;
		default:
			ret = uffdx_dev_unmigrate_page(op);
			break;
		}
		if (ret == -ENOMEM && migrate) {
			nomem = ret;
			op->status = 0;
			ret = 0;
		}
		if (ret)
			break;
		if (migrate) {
			ret = uffdx_dev_status(op, &status, &op->status, 1);
			if (ret)
				break;
		} else {
			op->cpages++;
		}
		op->addr += PAGE_SIZE;
		cond_resched();
	}
	return ret ?: nomem;
}

/* DEV_ATOMIC on process memory: exclusive (hmm.c), then the update. */
static int uffdx_dev_atomic_process(struct uffdx_dev_op *op,
				    struct uffdx_dev_atomic *a)
{
	struct uffdx_device *dev = op->dev;
	struct page *page;
	atomic64_t *word;
	void *entry, *kaddr;
	int ret;

	if (!(dev->ctx->features & UFFDX_FEATURE_HMM_EXCLUSIVE))
		return -EINVAL;
	for (;;) {
		if (fatal_signal_pending(current))
			return -EINTR;
		op->addr = a->addr & PAGE_MASK;
		ret = uffdx_hmm_exclusive(op, op->addr + PAGE_SIZE);
		if (ret)
			return ret;
		/* A CPU touch since then revokes it (the notifier): again. */
		mutex_lock(&dev->lock);
		entry = xa_load(&dev->pt, a->addr >> PAGE_SHIFT);
		if (entry && (xa_pointer_tag(entry) & UFFDX_PT_ATOMIC))
			break;
		mutex_unlock(&dev->lock);
	}
	page = xa_untag_pointer(entry);
	kaddr = uffdx_kmap(page);
	word = kaddr + offset_in_page(a->addr);
	if (a->op == UFFDX_DEV_ATOMIC_FETCH_ADD) {
		a->old = atomic64_fetch_add(a->value, word);
	} else {
		s64 old = a->expected;

		atomic64_try_cmpxchg(word, &old, a->value);
		a->old = old;
	}
	uffdx_kunmap(kaddr);
	mutex_unlock(&dev->lock);
	return 0;
}

static int uffdx_dev_atomic(struct uffdx_dev_op *op, struct uffdx_dev_atomic *a)
{
	if (!a->op || a->op > UFFDX_DEV_ATOMIC_CMPXCHG ||
	    !IS_ALIGNED(a->addr, sizeof(u64)) ||
	    memchr_inv(a->reserved, 0, sizeof(a->reserved)))
		return -EINVAL;
	if (a->addr >= TASK_SIZE)
		return -EINVAL;
	op->addr = a->addr & PAGE_MASK;
	if (uffdx_dev_is_process(op))
		return uffdx_dev_atomic_process(op, a);
	if (uffdx_dev_region_feature(op))
		return -EINVAL;
	return uffdx_dev_retry(op, uffdx_dev_atomic_step, a);
}

/* ---- the device file --------------------------------------------------- */

union uffdx_dev_arg {
	struct uffdx_dev_cmd cmd;
	struct uffdx_dev_atomic atomic;
	struct uffdx_dev_stats stats;
};

/* Each device ioctl: its struct and the features of which it needs one. */
static const struct {
	size_t size;
	u64 feature;
} uffdx_dev_ioctls[] = {
#define UFFDX_DEV_IOCTL(nr, type, feat) \
	[(nr) - _UFFDX_DEV_READ] = { sizeof(type), (feat) }
#define UFFDX_DEV_ANY	(UFFDX_FEATURE_DEVICE_EXCLUSIVE | \
			 UFFDX_FEATURE_DEVICE_MIGRATE | UFFDX_FEATURE_HMM_MIRROR | \
			 UFFDX_FEATURE_HMM_EXCLUSIVE | UFFDX_FEATURE_HMM_MIGRATE)
#define UFFDX_DEV_EXCL	(UFFDX_FEATURE_DEVICE_EXCLUSIVE | \
			 UFFDX_FEATURE_HMM_EXCLUSIVE)
#define UFFDX_DEV_MIGR	(UFFDX_FEATURE_DEVICE_MIGRATE | UFFDX_FEATURE_HMM_MIGRATE)
	UFFDX_DEV_IOCTL(_UFFDX_DEV_READ, struct uffdx_dev_cmd, UFFDX_DEV_ANY),
	UFFDX_DEV_IOCTL(_UFFDX_DEV_WRITE, struct uffdx_dev_cmd, UFFDX_DEV_ANY),
	UFFDX_DEV_IOCTL(_UFFDX_DEV_MIGRATE_TO_DEV, struct uffdx_dev_cmd,
			UFFDX_DEV_MIGR),
	UFFDX_DEV_IOCTL(_UFFDX_DEV_MIGRATE_TO_SYS, struct uffdx_dev_cmd,
			UFFDX_DEV_MIGR),
	UFFDX_DEV_IOCTL(_UFFDX_DEV_SNAPSHOT, struct uffdx_dev_cmd,
			UFFDX_DEV_ANY),
	UFFDX_DEV_IOCTL(_UFFDX_DEV_EXCLUSIVE, struct uffdx_dev_cmd,
			UFFDX_DEV_EXCL),
	UFFDX_DEV_IOCTL(_UFFDX_DEV_CHECK_EXCLUSIVE, struct uffdx_dev_cmd,
			UFFDX_DEV_EXCL),
	UFFDX_DEV_IOCTL(_UFFDX_DEV_RELEASE, struct uffdx_dev_cmd,
			UFFDX_DEV_EXCL),
	UFFDX_DEV_IOCTL(_UFFDX_DEV_ATOMIC, struct uffdx_dev_atomic,
			UFFDX_DEV_EXCL),
	UFFDX_DEV_IOCTL(_UFFDX_DEV_STATS, struct uffdx_dev_stats,
			UFFDX_DEV_ANY),
#undef UFFDX_DEV_IOCTL
};

static int uffdx_dev_cmd_check(const struct uffdx_dev_cmd *cmd)
{
	u64 len;

	if (cmd->flags || memchr_inv(cmd->reserved, 0, sizeof(cmd->reserved)))
		return -EINVAL;
	if (!cmd->npages || cmd->npages > UFFDX_DEV_MAX_PAGES ||
	    !PAGE_ALIGNED(cmd->addr))
		return -EINVAL;
	len = cmd->npages << PAGE_SHIFT;
	if (cmd->addr >= TASK_SIZE || len > TASK_SIZE - cmd->addr)
		return -EINVAL;
	return 0;
}

static long uffdx_dev_stats_ioctl(struct uffdx_device *dev,
				  struct uffdx_dev_stats *st,
				  void __user *uarg, u32 usize)
{
	if (st->flags || memchr_inv(st->reserved, 0, sizeof(st->reserved)))
		return -EINVAL;
	mutex_lock(&dev->lock);
	*st = dev->stats;
	mutex_unlock(&dev->lock);
	st->size = sizeof(*st);
	st->pool_pages = dev->pool_pages;
	st->pool_used += atomic_long_read(&dev->private_used);
	return uffdx_copy_out(uarg, usize, st, sizeof(*st));
}

static long uffdx_dev_ioctl(struct file *file, unsigned int cmd,
			    unsigned long arg)
{
	struct uffdx_device *dev = file->private_data;
	void __user *uarg = (void __user *)arg;
	unsigned int nr = _IOC_NR(cmd);
	struct uffdx_dev_op op = { .dev = dev, .nr = nr };
	union uffdx_dev_arg karg;
	size_t size;
	u32 usize;
	int ret;

	if (nr < _UFFDX_DEV_READ ||
	    nr - _UFFDX_DEV_READ >= ARRAY_SIZE(uffdx_dev_ioctls) ||
	    !uffdx_ioctl_cmd_ok(cmd, nr))
		return -ENOTTY;
	if (!(dev->ctx->features &
	      uffdx_dev_ioctls[nr - _UFFDX_DEV_READ].feature))
		return -EINVAL;
	size = uffdx_dev_ioctls[nr - _UFFDX_DEV_READ].size;
	ret = uffdx_copy_in(&karg, size, size, uarg, &usize);
	if (ret)
		return ret;
	if (nr == _UFFDX_DEV_STATS)
		return uffdx_dev_stats_ioctl(dev, &karg.stats, uarg, usize);
	if (nr != _UFFDX_DEV_ATOMIC) {
		ret = uffdx_dev_cmd_check(&karg.cmd);
		if (ret)
			return ret;
	}

	/* The device serves the process it mirrors (design.md section 7). */
	op.mm = dev->notifier.mm;
	if (!mmget_not_zero(op.mm))
		return -ESRCH;
	if (current->mm != op.mm) {
		mmput(op.mm);
		return -EPERM;
	}

	switch (nr) {
	case _UFFDX_DEV_READ:
	case _UFFDX_DEV_WRITE:
		ret = uffdx_dev_rw(&op, &karg.cmd);
		break;
	case _UFFDX_DEV_SNAPSHOT:
		ret = uffdx_dev_snapshot(&op, &karg.cmd);
		break;
	case _UFFDX_DEV_ATOMIC:
		ret = uffdx_dev_atomic(&op, &karg.atomic);
		karg.atomic.faults = op.faults;
		mmput(op.mm);
		if (ret)
			return ret;
		return uffdx_copy_out(uarg, usize, &karg.atomic,
				      sizeof(karg.atomic));
	default:
		ret = uffdx_dev_pages(&op, &karg.cmd);
		break;
	}
	mmput(op.mm);
	karg.cmd.cpages = op.cpages;
	karg.cmd.faults = op.faults;
	/* Progress is written also when the command stopped part way. */
	if (uffdx_copy_out(uarg, usize, &karg.cmd, sizeof(karg.cmd)))
		return -EFAULT;
	return ret;
}

static ssize_t uffdx_dev_read(struct file *file, char __user *buf,
			      size_t count, loff_t *ppos)
{
	struct uffdx_device *dev = file->private_data;
	struct uffdx_dev_event ev;
	struct uffdx_hold *hold;
	ssize_t done = 0;
	int ret;

	if (count < sizeof(ev))
		return -EINVAL;
	while (done + sizeof(ev) <= count) {
		mutex_lock(&dev->lock);
		hold = list_first_entry_or_null(&dev->events,
						struct uffdx_hold, node);
		if (hold) {
			list_del(&hold->node);
			dev->nr_events--;
		}
		mutex_unlock(&dev->lock);
		if (!hold) {
			if (done)
				break;
			if (file->f_flags & O_NONBLOCK)
				return -EAGAIN;
			ret = wait_event_interruptible(dev->wqh,
						       READ_ONCE(dev->nr_events));
			if (ret)
				return ret;
			continue;
		}
		ev = hold->event;
		uffdx_hold_free(hold);
		if (copy_to_user(buf + done, &ev, sizeof(ev)))
			return done ? done : -EFAULT;
		done += sizeof(ev);
	}
	return done;
}

static __poll_t uffdx_dev_poll(struct file *file, poll_table *wait)
{
	struct uffdx_device *dev = file->private_data;

	poll_wait(file, &dev->wqh, wait);
	return READ_ONCE(dev->nr_events) ? EPOLLIN | EPOLLRDNORM : 0;
}

/*
 * The last close: no more invalidations, then every hold ends (exclusive
 * pages become ordinary, resident ones stay as system memory), then the
 * queued events go.  A CPU fault that is revoking a hold at this moment
 * holds its page lock and a device reference; the loop waits it out.
 */
static int uffdx_dev_release(struct inode *inode, struct file *file)
{
	struct uffdx_device *dev = file->private_data;
	struct uffdx_region *region;
	struct uffdx_hold *hold, *tmp;
	LIST_HEAD(events);
	struct page *page;
	pgoff_t index;

	mmu_interval_notifier_remove(&dev->notifier);
	/* Device-private memory goes back to the processes that use it. */
	uffdx_hmm_release(dev);

	mutex_lock(&dev->lock);
	dev->dying = true;
	while ((hold = list_first_entry_or_null(&dev->holds,
						struct uffdx_hold, node))) {
		region = hold->region;
		index = hold->index;
		kref_get(&region->kref);
		mutex_unlock(&dev->lock);

		page = uffdx_store_lock(region, index, true, NULL);
		if (page) {
			hold = uffdx_slot_hold(region, index);
			if (hold && hold->dev == dev)
				uffdx_hold_end(hold, 0, 0);
			unlock_page(page);
			put_page(page);
		}
		uffdx_region_put(region);
		cond_resched();
		mutex_lock(&dev->lock);
	}
	list_splice_init(&dev->events, &events);
	dev->nr_events = 0;
	mutex_unlock(&dev->lock);
	list_for_each_entry_safe(hold, tmp, &events, node)
		uffdx_hold_free(hold);
	mmdrop(dev->notifier.mm);
	uffdx_device_put(dev);
	return 0;
}

static void uffdx_dev_show_fdinfo(struct seq_file *m, struct file *file)
{
	struct uffdx_device *dev = file->private_data;

	mutex_lock(&dev->lock);
	seq_printf(m, "uffdx_device_pool_used:\t%llu\n", dev->stats.pool_used);
	seq_printf(m, "uffdx_device_pool_pages:\t%lu\n", dev->pool_pages);
	seq_printf(m, "uffdx_device_events:\t%u\n", dev->nr_events);
	mutex_unlock(&dev->lock);
}

static const struct file_operations uffdx_dev_fops = {
	.owner = THIS_MODULE,
	.release = uffdx_dev_release,
	.read = uffdx_dev_read,
	.poll = uffdx_dev_poll,
	.unlocked_ioctl = uffdx_dev_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.show_fdinfo = uffdx_dev_show_fdinfo,
	.llseek = noop_llseek,
};

/* UFFDX_IOC_DEVICE_CREATE */
int uffdx_device_create(struct uffdx_ctx *ctx, struct uffdx_device_create *dc,
			void __user *uarg, u32 usize)
{
	struct uffdx_device *dev;
	struct file *file;
	int fd, ret;

	if (dc->flags || dc->__pad ||
	    memchr_inv(dc->reserved, 0, sizeof(dc->reserved)))
		return -EINVAL;
	if (!current->mm)
		return -ESRCH;

	/* A device counts as a region against max_regions_per_user. */
	ret = uffdx_account_region(ctx);
	if (ret)
		return ret;
	dev = kzalloc(sizeof(*dev), GFP_KERNEL_ACCOUNT);
	if (!dev) {
		uffdx_unaccount_region(ctx);
		return -ENOMEM;
	}
	kref_init(&dev->kref);
	mutex_init(&dev->lock);
	xa_init(&dev->pt);
	INIT_LIST_HEAD(&dev->holds);
	INIT_LIST_HEAD(&dev->events);
	init_waitqueue_head(&dev->wqh);
	spin_lock_init(&dev->mem_lock);
	mutex_init(&dev->chunk_lock);
	atomic_long_set(&dev->private_used, 0);
	dev->pool_pages = READ_ONCE(uffdx_device_pool_pages);
	dev->pidns = get_pid_ns(task_active_pid_ns(current));
	kref_get(&ctx->kref);
	dev->ctx = ctx;

	/* Holds the mm (mmgrab) until mmu_interval_notifier_remove(). */
	ret = mmu_interval_notifier_insert(&dev->notifier, current->mm, 0,
					   ULONG_MAX & PAGE_MASK,
					   &uffdx_dev_notifier_ops);
	if (ret)
		goto out_free;
	mmgrab(current->mm);

	fd = get_unused_fd_flags(O_CLOEXEC);
	if (fd < 0) {
		ret = fd;
		goto out_remove;
	}
	file = anon_inode_getfile("[uffdx-device]", &uffdx_dev_fops, dev,
				  O_RDWR);
	if (IS_ERR(file)) {
		ret = PTR_ERR(file);
		goto out_put_fd;
	}
	dc->fd = fd;
	ret = uffdx_copy_out(uarg, usize, dc, sizeof(*dc));
	if (ret) {
		put_unused_fd(fd);
		fput(file);		/* the release frees the device */
		return ret;
	}
	fd_install(fd, file);
	return 0;

out_put_fd:
	put_unused_fd(fd);
out_remove:
	mmu_interval_notifier_remove(&dev->notifier);
	mmdrop(current->mm);
out_free:
	uffdx_device_put(dev);
	return ret;
}

#else /* !UFFDX_KERNEL_HMM_MIRROR: no device (its features are not offered) */

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

int uffdx_device_create(struct uffdx_ctx *ctx, struct uffdx_device_create *dc,
			void __user *uarg, u32 usize)
{
	return -EINVAL;
}

#endif /* UFFDX_KERNEL_HMM_MIRROR */
