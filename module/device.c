// SPDX-License-Identifier: GPL-2.0
/*
 * The simulated device: a secondary MMU that mirrors the address space of
 * the process that created it, as lib/test_hmm.c's dmirror does, and holds
 * region slots exclusive or in its own memory.  docs/design.md section 7.
 *
 * The device's page table (@pt) caches CPU translations found with
 * hmm_range_fault() and is emptied by an mmu_interval_notifier over the
 * whole address space.  Slots it holds (struct uffdx_hold, in the region's
 * @held: hold.c) are never in @pt: the device reaches them through the
 * store, under the page lock, and no CPU may map them (store.c, fault.c).
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

void uffdx_device_put(struct uffdx_device *dev)
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
int uffdx_dev_fault(struct uffdx_device *dev, unsigned long start,
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

/* ---- device commands --------------------------------------------------- */

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

int uffdx_device_create(struct uffdx_ctx *ctx, struct uffdx_device_create *dc,
			void __user *uarg, u32 usize)
{
	return -EINVAL;
}

#endif /* UFFDX_KERNEL_HMM_MIRROR */
