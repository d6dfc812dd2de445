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
			    pgoff_t end, bool wp_only)
{
	struct uffdx_fault_waiter *w, *tmp;

	lockdep_assert_held(&ctx->fault_lock);
	list_for_each_entry_safe(w, tmp, list, node) {
		if (region && (w->region != region || w->index < start ||
			       w->index >= end))
			continue;
		if (wp_only && !w->wp)
			continue;
		wake_up_process(w->task);
		list_del_init_careful(&w->node);
	}
}

void uffdx_wake_range(struct uffdx_ctx *ctx, struct uffdx_region *region,
		      pgoff_t start, pgoff_t end)
{
	spin_lock(&ctx->fault_lock);
	uffdx_wake_list(ctx, &ctx->fault_pending, region, start, end, false);
	uffdx_wake_list(ctx, &ctx->fault_delivered, region, start, end, false);
	spin_unlock(&ctx->fault_lock);
}

/*
 * Wake only the writers asleep on write protection in [@start, @end) of
 * @region (protection went away under them): a missing fault there still
 * waits for its fill, and waking it would only queue its event again.
 */
void uffdx_wake_wp_range(struct uffdx_region *region, pgoff_t start,
			 pgoff_t end)
{
	struct uffdx_ctx *ctx = region->ctx;

	spin_lock(&ctx->fault_lock);
	uffdx_wake_list(ctx, &ctx->fault_pending, region, start, end, true);
	uffdx_wake_list(ctx, &ctx->fault_delivered, region, start, end, true);
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
 * Map the store's page at @index, if it is there and not busy, at @addr of
 * @vma: only under the page lock and after re-checking the slot
 * (uffdx_store_lock()), so that a removal (clear the slot, cycle the page
 * lock, zap) cannot leave this mapping behind.  Never waits for the page
 * lock: callers map pages other than the one being faulted, and a page
 * that is busy is simply left to its own fault.  -EBUSY from
 * vm_insert_page() means a PTE is there already.
 */
static void uffdx_map_index(struct uffdx_region *region,
			    struct vm_area_struct *vma, unsigned long addr,
			    pgoff_t index)
{
	struct page *page = uffdx_store_lock(region, index, false, NULL);

	if (!page)
		return;
	vm_insert_page(vma, addr, page);
	unlock_page(page);
	put_page(page);
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

	if (!mmap_read_trylock(pm->mm))
		return;
	vma = find_vma(pm->mm, pm->addr);
	if (vma && vma->vm_start <= pm->addr &&
	    uffdx_is_region_vma(vma) &&
	    vma->vm_file->private_data == region &&
	    linear_page_index(vma, pm->addr) == pm->index)
		uffdx_map_index(region, vma, pm->addr, pm->index);
	mmap_read_unlock(pm->mm);
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

/*
 * The context is released (its file closed): mark it, so that no new
 * waiter queues, and wake every current one; they find it released and
 * raise SIGBUS.
 */
void uffdx_release_waiters(struct uffdx_ctx *ctx)
{
	spin_lock(&ctx->fault_lock);
	WRITE_ONCE(ctx->released, true);
	uffdx_wake_list(ctx, &ctx->fault_pending, NULL, 0, 0, false);
	uffdx_wake_list(ctx, &ctx->fault_delivered, NULL, 0, 0, false);
	spin_unlock(&ctx->fault_lock);
}

/*
 * Is the slot still an armed hole (a missing fault), or still protected
 * (@wp: a write to a write-protected page)?  The condition a fault sleeps
 * on.
 */
static bool uffdx_must_wait(struct uffdx_region *region, pgoff_t index,
			    bool wp)
{
	if (wp)
		return uffdx_wp_must_wait(region, index);
	return !xa_load(&region->pages, index) &&
	       uffdx_region_armed(region, index);
}

/*
 * A fault on an armed hole, or (@wp) a write to a protected page of a
 * CREATE_WP region: queue an event on the region's context and sleep
 * until a fill, unprotect or wake covers the page, the context is
 * released, or a signal arrives.  Returns with the fault lock dropped
 * (VM_FAULT_RETRY) unless it fails the fault outright.
 */
static vm_fault_t uffdx_handle_userfault(struct uffdx_region *region,
					 struct vm_fault *vmf, bool wp)
{
	struct uffdx_ctx *ctx = region->ctx;
	bool user = vmf->flags & FAULT_FLAG_USER;
	struct uffdx_fault_waiter w;
	unsigned int state;
	struct file *file;
	bool must_wait;

	/*
	 * An exiting task (its clear_child_tid write, or a kernel-mode
	 * access after exit began) must not wait for a handler that may be
	 * itself: as handle_userfault() does, fail the access.
	 */
	if (current->flags & PF_EXITING)
		return VM_FAULT_SIGBUS;
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
	w.wp = wp;
	w.event = (struct uffdx_event) {
		.type = UFFDX_EVENT_PAGEFAULT,
		.flags = (vmf->flags & FAULT_FLAG_WRITE ? UFFDX_PF_WRITE : 0) |
			 (user ? 0 : UFFDX_PF_KERNEL) |
			 (current->mm != w.mm ? UFFDX_PF_REMOTE : 0) |
			 (wp ? UFFDX_PF_WP : 0),
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
	must_wait = uffdx_must_wait(region, w.index, wp);
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

/* Fault-around window, in pages (a power of two), aligned in the file. */
#define UFFDX_FAULT_AROUND	16

/*
 * Map the store's pages around a fault on a present page, as the page
 * cache's fault-around does, so that a populated region (after fork,
 * MADV_DONTNEED or a second mmap) costs one fault per window, not one per
 * page (a fork copies the PTEs of a VM_MIXEDMAP mapping, so it costs
 * nothing).  ->map_pages cannot do it with exported helpers (it runs under
 * RCU), so this runs in ->fault, which may sleep: each neighbour goes
 * through uffdx_map_index(), and one that is a hole, locked, moved on or
 * already mapped is simply skipped.
 */
static void uffdx_fault_around(struct uffdx_region *region,
			       struct vm_fault *vmf)
{
	struct vm_area_struct *vma = vmf->vma;
	pgoff_t first, last, index;

	first = max_t(pgoff_t, ALIGN_DOWN(vmf->pgoff, UFFDX_FAULT_AROUND),
		      vma->vm_pgoff);
	last = min_t(pgoff_t, ALIGN_DOWN(vmf->pgoff, UFFDX_FAULT_AROUND) +
		     UFFDX_FAULT_AROUND, vma->vm_pgoff + vma_pages(vma));

	for (index = first; index < last; index++) {
		if (index == vmf->pgoff)
			continue;
		uffdx_map_index(region, vma, vma->vm_start +
				((index - vma->vm_pgoff) << PAGE_SHIFT), index);
	}
}

/* The UFFDX_PF_* flags of a device event caused by this fault. */
static u32 uffdx_pf_flags(const struct vm_fault *vmf)
{
	return (vmf->flags & FAULT_FLAG_WRITE ? UFFDX_PF_WRITE : 0) |
	       (vmf->flags & FAULT_FLAG_USER ? 0 : UFFDX_PF_KERNEL);
}

static vm_fault_t uffdx_vm_fault(struct vm_fault *vmf)
{
	struct uffdx_region *region = vmf->vma->vm_file->private_data;
	bool write = vmf->flags & FAULT_FLAG_WRITE;
	pgoff_t index = vmf->pgoff;
	struct page *page;
	void *entry;
	int ret;

	if (index >= region->npages)
		return VM_FAULT_SIGBUS;

	for (;;) {
		page = uffdx_store_lock(region, index, true, &entry);
		if (page) {
			/* Held by a device: revoke, or migrate back. */
			page = uffdx_dev_cpu_access(region, index, page,
						    uffdx_pf_flags(vmf));
			if (IS_ERR(page))
				return VM_FAULT_SIGBUS;
			/*
			 * A write to a protected page (sync): page_mkwrite
			 * zapped its PTE to get here, where the fault may
			 * drop mmap_lock and sleep (wp.c).
			 */
			if (write && uffdx_wp_must_wait(region, index)) {
				unlock_page(page);
				put_page(page);
				return uffdx_handle_userfault(region, vmf,
							      true);
			}
			/*
			 * In a write-protect region a write faults page by
			 * page anyway (write notify): map around reads only,
			 * as the page cache does.
			 */
			if (!(write && region->wp_mode))
				uffdx_fault_around(region, vmf);
			vmf->page = page;
			return VM_FAULT_LOCKED;
		}
		if (entry)			/* poisoned */
			return VM_FAULT_SIGBUS;

		/*
		 * A hole.  A core dump (get_dump_page(), PF_DUMPCORE) reads
		 * what is there: it neither populates the hole nor waits for
		 * a handler; the dump gets zeroes.
		 */
		if (current->flags & PF_DUMPCORE)
			return VM_FAULT_SIGBUS;
		if (uffdx_region_armed(region, index))
			return uffdx_handle_userfault(region, vmf, false);
		/*
		 * A write to a protected hole is a WP fault before any page
		 * exists (sync); an async one is recorded by page_mkwrite,
		 * which the core calls next for this write.
		 */
		if (write && uffdx_wp_must_wait(region, index))
			return uffdx_handle_userfault(region, vmf, true);
		ret = uffdx_store_fault_zero(region, index, &vmf->page);
		if (!ret)
			return VM_FAULT_LOCKED;
		if (ret != -EEXIST)	/* the limit: never the OOM killer */
			return VM_FAULT_SIGBUS;
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

/*
 * Mappings of a write-protect region: ->page_mkwrite makes the core map
 * their pages read-only (vma_wants_writenotify()), so that every first
 * write to a mapped page is seen (wp.c, docs/design.md section 6).
 */
const struct vm_operations_struct uffdx_wp_vm_ops = {
	.fault = uffdx_vm_fault,
#ifdef UFFDX_HAVE_FAULT_FLAG_VMA_LOCK
	.map_pages = uffdx_vm_map_pages,
#endif
	.page_mkwrite = uffdx_wp_page_mkwrite,
};
