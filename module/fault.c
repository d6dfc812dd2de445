// SPDX-License-Identifier: GPL-2.0
/*
 * uffdx faults: populating region mappings from the page store, and missing
 * faults delivered as events, the way fs/userfaultfd.c:handle_userfault()
 * does it: queue, drop mmap_lock, sleep, return VM_FAULT_RETRY.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/file.h>
#include <linux/mm.h>		/* mmap_read_trylock(); 5.10 mmap_lock.h is not self-contained */
#include <linux/pagemap.h>
#include <linux/pid_namespace.h>
#include <linux/poll.h>
#include <linux/sched/mm.h>
#include <linux/sched/signal.h>

#include "uffdx.h"

/*
 * Wake the waiters of @ctx on [@start, @end) of @region, or all waiters if
 * @region is NULL.  The waiter lives on the sleeper's stack, and a sleeper
 * that finds itself off the list (list_empty_careful()) returns without
 * taking the lock: so list_del_init_careful() is the last access to it,
 * after the wakeup, as in fs/userfaultfd.c.
 */
static void uffdx_wake_list(struct uffdx_ctx *ctx, struct list_head *list,
			    struct uffdx_region *region, pgoff_t start,
			    pgoff_t end)
{
	struct uffdx_fault_waiter *w, *tmp;

	lockdep_assert_held(&ctx->fault_lock);
	list_for_each_entry_safe(w, tmp, list, node) {
		if (region && (w->region != region || w->index < start ||
			       w->index >= end))
			continue;
		wake_up_process(w->task);
		list_del_init_careful(&w->node);
	}
}

void uffdx_wake_range(struct uffdx_ctx *ctx, struct uffdx_region *region,
		      pgoff_t start, pgoff_t end)
{
	spin_lock(&ctx->fault_lock);
	uffdx_wake_list(ctx, &ctx->fault_pending, region, start, end);
	uffdx_wake_list(ctx, &ctx->fault_delivered, region, start, end);
	spin_unlock(&ctx->fault_lock);
}

/* How many sleeping faulters one fill maps for; the rest map on retry. */
#define UFFDX_PREMAP_MAX	8

struct uffdx_premap {
	struct mm_struct *mm;	/* mmget() */
	unsigned long addr;
	pgoff_t index;
};

static unsigned int uffdx_premap_collect(struct uffdx_ctx *ctx,
					 struct list_head *list,
					 struct uffdx_region *region,
					 pgoff_t start, pgoff_t end,
					 struct uffdx_premap *pm, unsigned int n)
{
	struct uffdx_fault_waiter *w;

	lockdep_assert_held(&ctx->fault_lock);
	list_for_each_entry(w, list, node) {
		if (n == UFFDX_PREMAP_MAX)
			break;
		if (w->region != region || w->index < start || w->index >= end)
			continue;
		/* A queued faulter is inside a fault on this mm: it is live. */
		if (!mmget_not_zero(w->mm))
			continue;
		pm[n++] = (struct uffdx_premap) {
			.mm = w->mm,
			.addr = (unsigned long)w->event.address,
			.index = w->index,
		};
	}
	return n;
}

/*
 * Map @page, which the caller holds a reference on and found at @index of
 * @region's store, at @addr of @vma.  Only under the page lock and after
 * re-checking the slot, so that a removal (clear the slot, cycle the page
 * lock, zap) cannot leave this mapping behind.  Never waits for the page
 * lock: callers map pages other than the one being faulted, and a page
 * that is busy is simply left to its own fault.  -EBUSY from
 * vm_insert_page() means a PTE is there already.
 */
static void uffdx_map_page(struct uffdx_region *region,
			   struct vm_area_struct *vma, unsigned long addr,
			   pgoff_t index, struct page *page)
{
	if (!trylock_page(page))
		return;
	if (xa_load(&region->pages, index) == page)
		vm_insert_page(vma, addr, page);
	unlock_page(page);
}

/*
 * Map a freshly filled page into a sleeping faulter's mm before waking it,
 * as UFFDIO_COPY installs its PTE from the handler: the woken thread finds
 * its PTE instead of faulting the page in itself, and the handler, not the
 * faulter, does the work.  Only an optimisation: wherever it would block
 * or the state moved on (mmap_lock contended, page locked, the mapping
 * changed, the page left the store), the faulter's retry maps the page.
 */
static void uffdx_premap_one(struct uffdx_region *region,
			     const struct uffdx_premap *pm)
{
	struct vm_area_struct *vma;
	struct page *page;
	void *entry;

	rcu_read_lock();
	entry = xa_load(&region->pages, pm->index);
	if (!entry || xa_is_value(entry) || !get_page_unless_zero(entry)) {
		rcu_read_unlock();
		return;
	}
	rcu_read_unlock();
	page = entry;

	if (mmap_read_trylock(pm->mm)) {
		vma = find_vma(pm->mm, pm->addr);
		if (vma && vma->vm_start <= pm->addr &&
		    vma->vm_ops == &uffdx_vm_ops &&
		    vma->vm_file->private_data == region &&
		    linear_page_index(vma, pm->addr) == pm->index)
			uffdx_map_page(region, vma, pm->addr, pm->index, page);
		mmap_read_unlock(pm->mm);
	}
	put_page(page);
}

/* After a fill of [@start, @end): map the page for its waiters, wake them. */
void uffdx_map_and_wake(struct uffdx_ctx *ctx, struct uffdx_region *region,
			pgoff_t start, pgoff_t end)
{
	struct uffdx_premap pm[UFFDX_PREMAP_MAX];
	unsigned int n, i;

	spin_lock(&ctx->fault_lock);
	n = uffdx_premap_collect(ctx, &ctx->fault_delivered, region, start,
				 end, pm, 0);
	n = uffdx_premap_collect(ctx, &ctx->fault_pending, region, start,
				 end, pm, n);
	spin_unlock(&ctx->fault_lock);

	for (i = 0; i < n; i++) {
		uffdx_premap_one(region, &pm[i]);
		mmput(pm[i].mm);
	}
	uffdx_wake_range(ctx, region, start, end);
}

/* Release: no new waiters, and every current one wakes up. */
void uffdx_wake_all(struct uffdx_ctx *ctx)
{
	spin_lock(&ctx->fault_lock);
	WRITE_ONCE(ctx->released, true);
	uffdx_wake_list(ctx, &ctx->fault_pending, NULL, 0, 0);
	uffdx_wake_list(ctx, &ctx->fault_delivered, NULL, 0, 0);
	spin_unlock(&ctx->fault_lock);
}

/*
 * Lockless: a hint for poll() and read()'s wait.  Callers have queued
 * themselves on read_wqh first (poll_wait(), or wait_event()'s
 * set_current_state()) and a faulter calls wake_up_poll() after queueing
 * its event, so an event queued before the check is seen, and one queued
 * after it wakes the caller.  A stale "pending" only costs a retry.
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

/* Put back an event read() could not copy out, if its fault still waits. */
void uffdx_unread_event(struct uffdx_ctx *ctx, u64 seq)
{
	struct uffdx_fault_waiter *w;

	spin_lock(&ctx->fault_lock);
	list_for_each_entry(w, &ctx->fault_delivered, node) {
		if (w->seq == seq) {
			list_move_tail(&w->node, &ctx->fault_pending);
			break;
		}
	}
	spin_unlock(&ctx->fault_lock);
}

/* Is the slot still an armed hole?  The condition a missing fault sleeps on. */
static bool uffdx_must_wait(struct uffdx_region *region, pgoff_t index)
{
	return !xa_load(&region->pages, index) &&
	       uffdx_region_armed(region, index);
}

/*
 * A fault on an armed hole: queue an event on the region's context and
 * sleep until a fill or wake covers the page, the context is released, or
 * a signal arrives.  Returns with the fault lock dropped (VM_FAULT_RETRY)
 * unless it fails the fault outright.
 */
static vm_fault_t uffdx_handle_missing(struct uffdx_region *region,
				       struct vm_fault *vmf)
{
	struct uffdx_ctx *ctx = region->ctx;
	bool user = vmf->flags & FAULT_FLAG_USER;
	struct uffdx_fault_waiter w;
	unsigned int state;
	struct file *file;
	bool must_wait;

	/*
	 * Faults taken in kernel mode (syscall buffers, GUP) stall a
	 * syscall at the handler's will: a known exploitation primitive.
	 * They fail unless the context asked for them (CAP_SYS_PTRACE).
	 */
	if (!user && !(ctx->features & UFFDX_FEATURE_KERNEL_FAULTS))
		return VM_FAULT_SIGBUS;
	if (!(vmf->flags & FAULT_FLAG_ALLOW_RETRY))
		return VM_FAULT_SIGBUS;
	/* Asked not to drop the lock or wait: let the caller retry later. */
	if (vmf->flags & FAULT_FLAG_RETRY_NOWAIT)
		return VM_FAULT_RETRY;

	state = user && (vmf->flags & FAULT_FLAG_INTERRUPTIBLE) ?
		TASK_INTERRUPTIBLE : TASK_KILLABLE;

	INIT_LIST_HEAD(&w.node);
	w.task = current;
	w.mm = vmf->vma->vm_mm;
	w.region = region;
	w.index = vmf->pgoff;
	w.event = (struct uffdx_event) {
		.type = UFFDX_EVENT_PAGEFAULT,
		.flags = (vmf->flags & FAULT_FLAG_WRITE ? UFFDX_PF_WRITE : 0) |
			 (user ? 0 : UFFDX_PF_KERNEL),
		.address = vmf->address & PAGE_MASK,
		.region_id = region->id,
		.offset = (u64)vmf->pgoff << PAGE_SHIFT,
		.pid = task_tgid_nr_ns(current, ctx->pidns),
		.tid = task_pid_nr_ns(current, ctx->pidns),
	};

	spin_lock(&ctx->fault_lock);
	if (ctx->released) {
		spin_unlock(&ctx->fault_lock);
		return VM_FAULT_SIGBUS;
	}
	w.seq = ++ctx->event_seq;
	list_add(&w.node, &ctx->fault_pending);
	set_current_state(state);
	spin_unlock(&ctx->fault_lock);

	/*
	 * Once the fault lock is dropped the mapping may go away, and with
	 * it the last reference on the region file.  Hold the file, not just
	 * the region: the file pins the module (fops->owner), so no rmmod can
	 * free the text this thread sleeps in, and the final put happens in
	 * __fput(), outside it.
	 */
	file = get_file(vmf->vma->vm_file);

	/* A fill that raced with queueing has either woken us or is seen. */
	must_wait = uffdx_must_wait(region, w.index);
	uffdx_release_fault_lock(vmf);

	if (must_wait) {
		wake_up_poll(&ctx->read_wqh, EPOLLIN);
		schedule();
	}
	__set_current_state(TASK_RUNNING);

	/*
	 * Woken by a fill: off the list already, and no longer touched by
	 * the waker.  Else (a signal, or the waker is between its wakeup and
	 * its list_del_init_careful()) take the lock and look again.
	 */
	if (!list_empty_careful(&w.node)) {
		spin_lock(&ctx->fault_lock);
		if (!list_empty(&w.node))
			list_del(&w.node);
		spin_unlock(&ctx->fault_lock);
	}

	fput(file);
	return VM_FAULT_RETRY;
}

/*
 * Populate a hole that is not armed (or whose handler is gone): a zeroed
 * page, published locked so that it is mapped before anyone can remove it.
 */
static vm_fault_t uffdx_fault_zero(struct uffdx_region *region,
				   struct vm_fault *vmf, struct page **pagep)
{
	struct page *page;
	void *old;

	page = uffdx_alloc_page(region->ctx, true);
	if (!page)
		return VM_FAULT_SIGBUS;	/* limit: never the OOM killer */
	lock_page(page);	/* unpublished: cannot block */
	old = xa_cmpxchg(&region->pages, vmf->pgoff, NULL, page,
			 GFP_KERNEL_ACCOUNT);
	if (old) {
		unlock_page(page);
		uffdx_free_page(region->ctx, page);
		return xa_is_err(old) ? VM_FAULT_SIGBUS : 0;	/* 0: look again */
	}
	atomic_long_inc(&region->resident);
	get_page(page);		/* the mapping's reference */
	*pagep = page;
	return VM_FAULT_LOCKED;
}

/* Fault-around window, in pages (a power of two), aligned in the file. */
#define UFFDX_FAULT_AROUND	16

/*
 * Map the store's pages around a fault on a present page, as the page
 * cache's fault-around does, so that a populated region (after fork,
 * MADV_DONTNEED or a second mmap) costs one fault per window, not one per
 * page.  ->map_pages cannot do it with exported helpers (it runs under
 * RCU), so this runs in ->fault, which may sleep: the pages are referenced
 * under RCU, then each goes through uffdx_map_page().  A neighbour that is
 * locked, moved on or already mapped is simply skipped.
 */
static void uffdx_fault_around(struct uffdx_region *region,
			       struct vm_fault *vmf)
{
	struct vm_area_struct *vma = vmf->vma;
	struct page *pages[UFFDX_FAULT_AROUND];
	pgoff_t index[UFFDX_FAULT_AROUND];
	pgoff_t first, last, vma_end;
	unsigned int n = 0, i;
	void *entry;

	XA_STATE(xas, &region->pages, 0);

	vma_end = vma->vm_pgoff + vma_pages(vma);
	first = max_t(pgoff_t, ALIGN_DOWN(vmf->pgoff, UFFDX_FAULT_AROUND),
		      vma->vm_pgoff);
	last = min_t(pgoff_t, ALIGN_DOWN(vmf->pgoff, UFFDX_FAULT_AROUND) +
		     UFFDX_FAULT_AROUND, vma_end) - 1;

	xas_set(&xas, first);
	rcu_read_lock();
	xas_for_each(&xas, entry, last) {
		if (xas_retry(&xas, entry))
			continue;
		if (xa_is_value(entry) || xas.xa_index == vmf->pgoff)
			continue;
		if (!get_page_unless_zero(entry))
			continue;
		pages[n] = entry;
		index[n++] = xas.xa_index;
	}
	rcu_read_unlock();

	for (i = 0; i < n; i++) {
		uffdx_map_page(region, vma, vma->vm_start +
			       ((index[i] - vma->vm_pgoff) << PAGE_SHIFT),
			       index[i], pages[i]);
		put_page(pages[i]);
	}
}

static vm_fault_t uffdx_vm_fault(struct vm_fault *vmf)
{
	struct uffdx_region *region = vmf->vma->vm_file->private_data;
	pgoff_t index = vmf->pgoff;
	struct page *page;
	vm_fault_t ret;
	void *entry;

	if (index >= region->npages)
		return VM_FAULT_SIGBUS;

	for (;;) {
		/* The page cache's speculative lookup: ref, lock, re-check. */
		rcu_read_lock();
		entry = xa_load(&region->pages, index);
		if (entry && !xa_is_value(entry) &&
		    !get_page_unless_zero(entry)) {
			rcu_read_unlock();
			continue;
		}
		rcu_read_unlock();

		if (!entry) {
			if (uffdx_region_armed(region, index))
				return uffdx_handle_missing(region, vmf);
			ret = uffdx_fault_zero(region, vmf, &vmf->page);
			if (ret)
				return ret;
			continue;
		}
		if (xa_is_value(entry))		/* poisoned */
			return VM_FAULT_SIGBUS;

		page = entry;
		lock_page(page);
		if (likely(xa_load(&region->pages, index) == page)) {
			uffdx_fault_around(region, vmf);
			vmf->page = page;
			return VM_FAULT_LOCKED;
		}
		unlock_page(page);
		put_page(page);
	}
}

#ifdef UFFDX_HAVE_FAULT_FLAG_VMA_LOCK
/*
 * Since 6.4 a fault taken under the per-VMA lock reaches ->fault only if
 * the VMA has ->map_pages (vmf_can_call_fault()); otherwise every fault
 * is retried under mmap_lock.  This one maps nothing (fault-around is
 * done in ->fault, uffdx_fault_around()): it is here so that our faults
 * take the per-VMA lock path and do not contend on mmap_lock.
 */
static vm_fault_t uffdx_vm_map_pages(struct vm_fault *vmf, pgoff_t start,
				     pgoff_t end)
{
	return 0;
}
#endif

const struct vm_operations_struct uffdx_vm_ops = {
	.fault = uffdx_vm_fault,
#ifdef UFFDX_HAVE_FAULT_FLAG_VMA_LOCK
	.map_pages = uffdx_vm_map_pages,
#endif
};
