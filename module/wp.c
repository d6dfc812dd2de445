// SPDX-License-Identifier: GPL-2.0
/*
 * uffdx write protection: markers that live in the page store, not in any
 * page-table entry, so that no zap, fork or remap can lose them.
 *
 * Two slot flags (uffdx.h): WP, the page or hole is protected, and
 * WRITTEN, a WP_ASYNC region's page was written since it was last
 * protected.  Both change only under region->wp_lock.  The mappings of a
 * write-protect region are write-notify mappings (uffdx_wp_vm_ops): the
 * core maps every page read-only and calls uffdx_wp_page_mkwrite() on the
 * first write, so every write is checked against the flags; PROTECT and
 * SCAN take write permission away from every mapping of their range in one
 * pass.  docs/design.md section 6.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/bitmap.h>
#include <linux/mm.h>
#include <linux/overflow.h>
#include <linux/pagemap.h>
#include <linux/sched/signal.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

#include "uffdx.h"

/* Slots handled between two checks for a fatal signal and a resched. */
#define UFFDX_WP_BATCH		512
/* Scan ranges buffered before they are copied out. */
#define UFFDX_SCAN_CHUNK	32

static bool uffdx_wp_sync(const struct uffdx_region *region)
{
	return region->wp_mode == UFFDX_REGION_CREATE_WP;
}

/* Slots given to one page-table walk: a bounded stretch, then a resched. */
#define UFFDX_WP_WALK		(8 * PAGE_SIZE)

/*
 * Take write permission away from every mapping of [@start, @end) of
 * @region: CPU PTEs and, through the mmu notifiers the helpers fire,
 * secondary MMUs.  wp_shared_mapping_range() walks only the page tables
 * that exist, one TLB flush per VMA and stretch; then the same stretch is
 * cleaned (clean_record_shared_mapping_range()), because a read-only but
 * dirty PTE of a write-notify mapping is made writable again by mprotect()
 * without a fault (can_change_pte_writable()).  Without those helpers, or
 * without memory for the walk's bitmap, a zap does the same: the pages
 * fault back in read-only and clean.
 */
static void uffdx_wp_mappings(struct uffdx_region *region, pgoff_t start,
			      pgoff_t end)
{
	struct address_space *mapping = region->inode->i_mapping;
#ifdef UFFDX_HAVE_WP_SHARED_MAPPING_RANGE
	unsigned long *dirty;
	pgoff_t n, lo, hi;

	if (start >= end)
		return;
	dirty = bitmap_zalloc(min_t(pgoff_t, end - start, UFFDX_WP_WALK),
			      GFP_KERNEL);
	if (!dirty) {
		uffdx_unmap_pages(mapping, start, end - start);
		return;
	}
	for (; start < end; start += n) {
		n = min_t(pgoff_t, end - start, UFFDX_WP_WALK);
		wp_shared_mapping_range(mapping, start, n);
		lo = 0;
		hi = 0;
		clean_record_shared_mapping_range(mapping, start, n, start,
						  dirty, &lo, &hi);
		cond_resched();
	}
	bitmap_free(dirty);
#else
	if (start < end)
		uffdx_unmap_pages(mapping, start, end - start);
#endif
}

/*
 * The span of slots whose mappings are still to be write-protected: runs
 * of present pages closer than UFFDX_WP_GAP slots share one walk, farther
 * ones get their own, so that a sparse range does not walk every PTE
 * table in between and a dense one is one invalidation.
 */
#define UFFDX_WP_GAP		64

struct uffdx_wp_span {
	pgoff_t lo, hi;		/* [lo, hi), empty if hi == lo */
	bool record_pins;	/* SCAN: pinned pages stay "written" */
};

static void uffdx_wp_record_pins(struct uffdx_region *region, pgoff_t start,
				 pgoff_t end);

static void uffdx_wp_span_flush(struct uffdx_region *region,
				struct uffdx_wp_span *span)
{
	if (span->hi > span->lo) {
		smp_mb();	/* uffdx_wp_quiesce()'s tests, before the walk */
		uffdx_wp_mappings(region, span->lo, span->hi);
		if (span->record_pins)
			uffdx_wp_record_pins(region, span->lo, span->hi);
	}
	span->lo = 0;
	span->hi = 0;
}

/* Add @index; false if the span must be flushed first. */
static bool uffdx_wp_span_add(struct uffdx_wp_span *span, pgoff_t index)
{
	if (span->hi > span->lo && index >= span->hi + UFFDX_WP_GAP)
		return false;
	if (span->hi == span->lo)
		span->lo = index;
	span->hi = index + 1;
	return true;
}

/*
 * Wait out every page_mkwrite of [@start, @end) that read the WP flag
 * before the caller set it and may still be installing a writable PTE,
 * and add the present pages to @span.  Such a page_mkwrite took the page
 * lock before it took wp_lock, which the caller has taken since (to set
 * the flag): so its page is seen locked here, and waited for, unless it is
 * done, and then its PTE is in.  The barrier in uffdx_wp_span_flush()
 * orders these tests before the page-table walk, which therefore sees
 * that PTE.  Unlocked pages cost a flag test, not a lock.  @only, if set,
 * limits this to the slots set in it (relative to @start).
 */
static void uffdx_wp_quiesce(struct uffdx_region *region, pgoff_t start,
			     pgoff_t end, const unsigned long *only,
			     struct uffdx_wp_span *span)
{
	XA_STATE(xas, &region->pages, start);
	struct page *page;
	pgoff_t index;
	void *entry;

	rcu_read_lock();
	xas_for_each(&xas, entry, end - 1) {
		if (xas_retry(&xas, entry) || xa_is_value(entry))
			continue;
		index = xas.xa_index;
		if (only && !test_bit(index - start, only))
			continue;
		if (uffdx_wp_span_add(span, index) &&
		    !PageLocked((struct page *)entry))
			continue;
		xas_pause(&xas);
		rcu_read_unlock();
		if (span->hi != index + 1) {
			/* far from the span: its pages are done, walk them */
			uffdx_wp_span_flush(region, span);
			uffdx_wp_span_add(span, index);
		}
		page = uffdx_store_lock(region, index, true, NULL);
		if (page) {
			unlock_page(page);
			put_page(page);
		}
		rcu_read_lock();
	}
	rcu_read_unlock();
}

/*
 * Sync protection: the first page of [@start, @end) that may be pinned
 * for DMA, or @end.  No reference is taken: the test reads the page's
 * count, and a page still in its slot after the read was the store's.
 */
static pgoff_t uffdx_wp_first_pinned(struct uffdx_region *region,
				     pgoff_t start, pgoff_t end)
{
	XA_STATE(xas, &region->pages, start);
	pgoff_t found = end;
	void *entry;

	/* GUP-fast pins, then re-checks the PTE: test after the walk. */
	smp_mb();
	rcu_read_lock();
	xas_for_each(&xas, entry, end - 1) {
		if (xas_retry(&xas, entry) || xa_is_value(entry))
			continue;
		if (uffdx_page_maybe_dma_pinned(entry) &&
		    xas_reload(&xas) == entry) {
			found = xas.xa_index;
			break;
		}
	}
	rcu_read_unlock();
	return found;
}

/*
 * SCAN, after re-arming [@start, @end): a page pinned through a writable
 * PTE before the walk may still be written by its device, without a
 * fault; record it written, so that the next scan reports it again.
 */
static void uffdx_wp_record_pins(struct uffdx_region *region, pgoff_t start,
				 pgoff_t end)
{
	pgoff_t index = start;

	for (;;) {
		index = uffdx_wp_first_pinned(region, index, end);
		if (index >= end)
			break;
		spin_lock(&region->wp_lock);
		__set_bit(index, region->flags[UFFDX_SF_WRITTEN]);
		spin_unlock(&region->wp_lock);
		index++;
	}
}

/* The flag bitmaps of @region's mode, allocated; region->lock held. */
static int uffdx_wp_bitmaps_locked(struct uffdx_region *region)
{
	int ret;

	ret = uffdx_slot_flags_get(region, UFFDX_SF_WP);
	if (!ret && !uffdx_wp_sync(region))
		ret = uffdx_slot_flags_get(region, UFFDX_SF_WRITTEN);
	return ret;
}

static int uffdx_wp_bitmaps(struct uffdx_region *region)
{
	int ret;

	if (mutex_lock_killable(&region->lock))
		return -EINTR;
	ret = uffdx_wp_bitmaps_locked(region);
	mutex_unlock(&region->lock);
	return ret;
}

/*
 * PROTECT [@start, @end): set the flags batch by batch, wait out the
 * page_mkwrite calls that saw them clear, then take write permission away
 * once for all that was protected.  A sync region cannot protect a page
 * pinned for DMA (it can change without a fault): -EBUSY there.
 */
static int uffdx_wp_protect(struct uffdx_region *region, pgoff_t start,
			    pgoff_t end, pgoff_t *done)
{
	struct uffdx_wp_span span = { };
	pgoff_t index = start, next, stop;
	int ret;

	ret = uffdx_wp_bitmaps(region);
	if (ret)
		goto out;
	while (index < end) {
		next = min_t(pgoff_t, end, index + UFFDX_WP_BATCH);
		stop = next;
		if (uffdx_wp_sync(region))
			stop = uffdx_wp_first_pinned(region, index, next);
		/* region->lock: a MOVE checks and carries the bits under it. */
		if (mutex_lock_killable(&region->lock)) {
			ret = -EINTR;
			break;
		}
		spin_lock(&region->wp_lock);
		bitmap_set(region->flags[UFFDX_SF_WP], index, stop - index);
		spin_unlock(&region->wp_lock);
		mutex_unlock(&region->lock);
		uffdx_wp_quiesce(region, index, stop, NULL, &span);
		index = stop;
		if (stop < next) {
			ret = -EBUSY;
			break;
		}
		cond_resched();
	}
	uffdx_wp_span_flush(region, &span);

	/*
	 * A pin taken through a writable PTE before the walk would let the
	 * device write a protected page unseen: look again now that no PTE
	 * of the range is writable (as MOVE does after its zap), and give
	 * back the protection from the first pinned page on.
	 */
	if (uffdx_wp_sync(region) && index > start) {
		stop = uffdx_wp_first_pinned(region, start, index);
		if (stop < index) {
			mutex_lock(&region->lock);
			spin_lock(&region->wp_lock);
			uffdx_slot_clear(region, UFFDX_SF_WP, stop, index);
			spin_unlock(&region->wp_lock);
			mutex_unlock(&region->lock);
			uffdx_wake_wp_range(region, stop, index);
			index = stop;
			ret = -EBUSY;
		}
	}
out:
	*done = index - start;
	return ret;
}

/*
 * UNPROTECT [@start, @end): nothing loses write permission, so nothing is
 * invalidated; the next write to a mapped page takes one write-notify
 * fault.  The written record stays until a scan takes it.
 */
static void uffdx_wp_unprotect(struct uffdx_region *region, pgoff_t start,
			       pgoff_t end, bool wake)
{
	pgoff_t index, next;

	if (uffdx_slot_flags(region, UFFDX_SF_WP)) {
		for (index = start; index < end; index = next) {
			next = min_t(pgoff_t, end, index + 64 * UFFDX_WP_BATCH);
			spin_lock(&region->wp_lock);
			uffdx_slot_clear(region, UFFDX_SF_WP, index, next);
			spin_unlock(&region->wp_lock);
			cond_resched();
		}
	}
	/* Pairs with the waiter's check after queueing (fault.c). */
	if (wake && uffdx_wp_sync(region))
		uffdx_wake_wp_range(region, start, end);
}

/* WRITEPROTECT by region: the range op (region.c, resolve.c). */
int uffdx_wp_apply(struct uffdx_region *region, pgoff_t start, pgoff_t end,
		   u32 mode, pgoff_t *done)
{
	if (!region->wp_mode)
		return -EINVAL;
	if (mode & UFFDX_WP_PROTECT)
		return uffdx_wp_protect(region, start, end, done);
	uffdx_wp_unprotect(region, start, end, !(mode & UFFDX_WP_DONTWAKE));
	*done = end - start;
	return 0;
}

/* Must a write at @index sleep for the handler (sync, protected)? */
bool uffdx_wp_must_wait(struct uffdx_region *region, pgoff_t index)
{
	return uffdx_wp_sync(region) &&
	       uffdx_slot_test(region, UFFDX_SF_WP, index);
}

/*
 * A fill published a page at @index.  In an async region, a fill into a
 * protected hole is a write like any other: recorded, protection taken
 * (an unprotected slot is not being tracked).  In a sync region the new
 * page keeps its protection.
 */
void uffdx_wp_filled(struct uffdx_region *region, pgoff_t index)
{
	if (uffdx_wp_sync(region) || !uffdx_slot_flags(region, UFFDX_SF_WP))
		return;
	spin_lock(&region->wp_lock);
	if (__test_and_clear_bit(index, region->flags[UFFDX_SF_WP]))
		__set_bit(index, region->flags[UFFDX_SF_WRITTEN]);
	spin_unlock(&region->wp_lock);
}

/*
 * Before a MOVE group from @src to @dst collects (both region locks held,
 * no page lock yet): if protection can travel, make sure the destination
 * has the bitmaps for it, so that nothing is allocated under page locks.
 */
int uffdx_wp_move_prepare(struct uffdx_region *dst, struct uffdx_region *src)
{
	lockdep_assert_held(&dst->lock);
	if (!src->wp_mode || src->wp_mode != dst->wp_mode ||
	    !uffdx_slot_flags(src, UFFDX_SF_WP))
		return 0;
	return uffdx_wp_bitmaps_locked(dst);
}

/*
 * May the entry at slot @s of @src (ULONG_MAX: a hole) move to the hole
 * @d of @dst?  A protected hole counts as populated (-EEXIST, as for
 * UFFDIO_MOVE); protection or a written record can only go to a region
 * of the same mode (-EINVAL).  Both region locks are held, which PROTECT
 * and SCAN take to set bits, so the answer holds until the entry moves
 * (page_mkwrite, which turns WP into WRITTEN, waits for the page lock).
 */
int uffdx_wp_move_check(struct uffdx_region *dst, pgoff_t d,
			struct uffdx_region *src, pgoff_t s)
{
	lockdep_assert_held(&src->lock);
	lockdep_assert_held(&dst->lock);
	if (dst->wp_mode && uffdx_slot_test(dst, UFFDX_SF_WP, d))
		return -EEXIST;
	if (s == ULONG_MAX || !src->wp_mode)
		return 0;
	if (!uffdx_slot_test(src, UFFDX_SF_WP, s) &&
	    !uffdx_slot_test(src, UFFDX_SF_WRITTEN, s))
		return 0;
	if (src->wp_mode != dst->wp_mode)
		return -EINVAL;
	/* uffdx_wp_move_prepare() allocated them, or failed the group */
	if (!dst->flags[UFFDX_SF_WP] ||
	    (!uffdx_wp_sync(dst) && !dst->flags[UFFDX_SF_WRITTEN]))
		return -ENOMEM;
	return 0;
}

/*
 * The entry at @s of @src has just been published at @d of @dst (same
 * mode, or no state: uffdx_wp_move_check()): its flags follow it, and the
 * source hole is left unprotected, its sleeping writers woken.  Its page,
 * if any, is locked.
 */
void uffdx_wp_move(struct uffdx_region *dst, pgoff_t d,
		   struct uffdx_region *src, pgoff_t s)
{
	bool wp, written;

	if (!src->wp_mode || !uffdx_slot_flags(src, UFFDX_SF_WP))
		return;
	spin_lock(&src->wp_lock);
	wp = __test_and_clear_bit(s, src->flags[UFFDX_SF_WP]);
	written = src->flags[UFFDX_SF_WRITTEN] &&
		  __test_and_clear_bit(s, src->flags[UFFDX_SF_WRITTEN]);
	spin_unlock(&src->wp_lock);
	if (!wp && !written)
		return;
	/* Same mode, bitmaps allocated: uffdx_wp_move_check() said so. */
	spin_lock(&dst->wp_lock);
	if (wp && !WARN_ON_ONCE(!dst->flags[UFFDX_SF_WP]))
		__set_bit(d, dst->flags[UFFDX_SF_WP]);
	if (written && !WARN_ON_ONCE(!dst->flags[UFFDX_SF_WRITTEN]))
		__set_bit(d, dst->flags[UFFDX_SF_WRITTEN]);
	spin_unlock(&dst->wp_lock);
	/* A writer asleep on the source slot now writes to a hole. */
	if (wp && uffdx_wp_sync(src))
		uffdx_wake_wp_range(src, s, s + 1);
}

/*
 * ->page_mkwrite of a write-protect region's mappings: the first write to
 * a page mapped read-only.  It runs with the faulting mmap_lock (or VMA
 * lock) held and without FAULT_FLAG_ALLOW_RETRY, so it never sleeps for a
 * handler: a sync-protected page has its PTEs zapped and the access is
 * retried, to reach ->fault, which can drop the lock and wait (fault.c).
 * Otherwise the page is returned locked (VM_FAULT_LOCKED): the core makes
 * the PTE writable before unlocking it, which is what PROTECT waits for
 * (uffdx_wp_quiesce()).
 */
vm_fault_t uffdx_wp_page_mkwrite(struct vm_fault *vmf)
{
	struct uffdx_region *region = vmf->vma->vm_file->private_data;
	struct page *page = vmf->page;
	pgoff_t index = vmf->pgoff;

	lock_page(page);
	/*
	 * Moved or discarded since it was mapped, or taken by a device (its
	 * PTE is gone): retry the access, which faults (fault.c).
	 */
	if (xa_load(&region->pages, index) != page ||
	    uffdx_slot_hold(region, index)) {
		unlock_page(page);
		return VM_FAULT_NOPAGE;
	}
	spin_lock(&region->wp_lock);
	if (!uffdx_slot_test(region, UFFDX_SF_WP, index))
		goto writable;
	if (uffdx_wp_sync(region)) {
		spin_unlock(&region->wp_lock);
		unlock_page(page);
		uffdx_unmap_pages(region->inode->i_mapping, index, 1);
		return VM_FAULT_NOPAGE;
	}
	/* Async: the WRITTEN bitmap was allocated with the WP one. */
	__clear_bit(index, region->flags[UFFDX_SF_WP]);
	__set_bit(index, region->flags[UFFDX_SF_WRITTEN]);
writable:
	spin_unlock(&region->wp_lock);
	return VM_FAULT_LOCKED;
}

/*
 * A device's write to a slot it holds (device.c), under the slot's page
 * lock: the check a CPU write passes.  An async region records the page
 * written; a protected page of a sync region refuses it (-EFAULT, as a
 * kernel-mode write that has no handler to wait for).
 */
int uffdx_wp_device_write(struct uffdx_region *region, pgoff_t index)
{
	int ret = 0;

	if (!region->wp_mode)
		return 0;
	spin_lock(&region->wp_lock);
	if (uffdx_slot_test(region, UFFDX_SF_WP, index)) {
		if (uffdx_wp_sync(region)) {
			ret = -EFAULT;
		} else {
			/* Async: the WRITTEN bitmap was allocated with WP. */
			__clear_bit(index, region->flags[UFFDX_SF_WP]);
			__set_bit(index, region->flags[UFFDX_SF_WRITTEN]);
		}
	}
	spin_unlock(&region->wp_lock);
	return ret;
}

/* ---- WRITEPROTECT_ADDR ------------------------------------------------ */

static long uffdx_wp_addr(struct uffdx_ctx *ctx,
			  struct uffdx_writeprotect_addr *w, void __user *uarg)
{
	struct uffdx_writeprotect_addr __user *u = uarg;
	struct vm_area_struct *vma;
	struct uffdx_region *region;
	pgoff_t start, done = 0;
	u64 end;
	int ret;

	if (w->mode & ~(UFFDX_WP_PROTECT | UFFDX_WP_DONTWAKE) ||
	    (w->mode & UFFDX_WP_PROTECT && w->mode & UFFDX_WP_DONTWAKE) ||
	    memchr_inv(w->reserved, 0, sizeof(w->reserved)))
		return -EINVAL;
	if (!w->len || !PAGE_ALIGNED(w->addr) || !PAGE_ALIGNED(w->len) ||
	    check_add_overflow(w->addr, w->len, &end))
		return -EINVAL;

	if (mmap_read_lock_killable(current->mm))
		return -EINTR;
	vma = find_vma(current->mm, w->addr);
	if (!vma || vma->vm_start > w->addr || end > vma->vm_end ||
	    !uffdx_is_region_vma(vma)) {
		mmap_read_unlock(current->mm);
		return -EINVAL;
	}
	region = vma->vm_file->private_data;
	kref_get(&region->kref);	/* the mapping's file holds one */
	start = linear_page_index(vma, w->addr);
	mmap_read_unlock(current->mm);

	/* Only the owner protects a region (docs/design.md section 6). */
	ret = -EPERM;
	if (region->ctx != ctx)
		goto out_put;
	ret = -EINVAL;
	if (!region->wp_mode)
		goto out_put;
	ret = uffdx_wp_apply(region, start, start + (w->len >> PAGE_SHIFT),
			     w->mode, &done);
	if (done && done < w->len >> PAGE_SHIFT)
		ret = -EAGAIN;
	w->result = done ? (s64)done << PAGE_SHIFT : ret;
	if (put_user(w->result, &u->result))
		ret = -EFAULT;
out_put:
	uffdx_region_put(region);
	return ret;
}

/* ---- SCAN ------------------------------------------------------------- */

/*
 * One scan: [@start, @end) of @region; output in ranges (@ranges, up to
 * @cap of them) or a bitmap (@cap bytes).  Each batch is read ("peek")
 * under wp_lock, written out with no lock held (the output may be region
 * memory, and fault), and only then taken ("commit") under wp_lock again:
 * a record is never cleared before the report of it is in the caller's
 * memory.  A page written between peek and commit is reported already; a
 * page first written then was not peeked and keeps its bit.
 */
struct uffdx_scan_state {
	struct uffdx_region *region;
	const struct uffdx_scan *sc;
	pgoff_t start, end;		/* the range, in slots */
	pgoff_t pos;			/* next slot to scan */
	u64 cap;			/* output capacity: ranges or bytes */
	u64 nr_out;			/* ranges done (or bytes written) */
	u64 visible;			/* ranges in the caller's memory */
	u64 written;			/* pages reported */
	bool open;			/* ranges: buf[nbuf - 1] may grow */
	unsigned int nbuf;
	struct uffdx_scan_range buf[UFFDX_SCAN_CHUNK];
	struct uffdx_wp_span span;	/* re-armed, still writable */
	DECLARE_BITMAP(rep, UFFDX_WP_BATCH);	/* the batch's report */
	DECLARE_BITMAP(pinned, UFFDX_WP_BATCH);
};

/* Pages of [@i, @i + @n) that may be pinned for DMA, into st->pinned. */
static void uffdx_scan_pins(struct uffdx_scan_state *st, pgoff_t i,
			    pgoff_t n)
{
	XA_STATE(xas, &st->region->pages, i);
	void *entry;

	bitmap_zero(st->pinned, UFFDX_WP_BATCH);
	rcu_read_lock();
	xas_for_each(&xas, entry, i + n - 1) {
		if (xas_retry(&xas, entry) || xa_is_value(entry))
			continue;
		/* As uffdx_wp_first_pinned(): no reference needed. */
		if (uffdx_page_maybe_dma_pinned(entry) &&
		    xas_reload(&xas) == entry)
			__set_bit(xas.xa_index - i, st->pinned);
	}
	rcu_read_unlock();
}

/* Write the buffered ranges out; the last stays buffered if still open. */
static int uffdx_scan_flush(struct uffdx_scan_state *st)
{
	struct uffdx_scan_range __user *out = u64_to_user_ptr(st->sc->out);
	unsigned int n = st->nbuf;

	if (!n)
		return 0;
	if (copy_to_user(out + st->nr_out, st->buf, n * sizeof(st->buf[0])))
		return -EFAULT;
	st->visible = st->nr_out + n;
	if (st->open) {
		/* Written so far; rewritten in place as it grows. */
		st->buf[0] = st->buf[n - 1];
		st->nr_out += n - 1;
		st->nbuf = 1;
	} else {
		st->nr_out += n;
		st->nbuf = 0;
	}
	return 0;
}

/*
 * Range form: append the batch's report at slots [@i, @i + @n) to the
 * output, at most until the output is full: returns how many slots of the
 * batch are covered (a run that needs one range more than there is room
 * for ends the scan where it starts).
 */
static pgoff_t uffdx_scan_ranges(struct uffdx_scan_state *st, pgoff_t i,
				 pgoff_t n)
{
	u64 base = st->sc->offset - ((u64)st->start << PAGE_SHIFT);
	unsigned long b = 0, e;

	for (;;) {
		struct uffdx_scan_range *last;
		u64 off;

		b = find_next_bit(st->rep, n, b);
		if (b >= n)
			break;
		e = find_next_zero_bit(st->rep, n, b);
		off = base + ((u64)(i + b) << PAGE_SHIFT);
		last = st->nbuf ? &st->buf[st->nbuf - 1] : NULL;
		if (st->open && last && last->offset + last->len == off) {
			last->len += (u64)(e - b) << PAGE_SHIFT;
		} else {
			if (st->nr_out + st->nbuf >= st->cap)
				return b;	/* full: the scan ends here */
			st->open = false;	/* a new run: the last is done */
			if (st->nbuf == UFFDX_SCAN_CHUNK && uffdx_scan_flush(st))
				return ULONG_MAX;
			st->buf[st->nbuf++] = (struct uffdx_scan_range) {
				.offset = off,
				.len = (u64)(e - b) << PAGE_SHIFT,
			};
		}
		st->open = e == n;
		b = e;
	}
	st->open = st->open && test_bit(n - 1, st->rep);
	return n;
}

/* Bitmap form: the batch's bytes (batches start on a byte of the output). */
static int uffdx_scan_bitmap(struct uffdx_scan_state *st, pgoff_t i,
			     pgoff_t n)
{
	u8 __user *out = u64_to_user_ptr(st->sc->out);
	u8 bytes[UFFDX_WP_BATCH / 8];
	unsigned int nb = DIV_ROUND_UP(n, 8), k;

	for (k = 0; k < nb; k++)
		bytes[k] = bitmap_get_value8(st->rep, k * 8);
	if (copy_to_user(out + (i - st->start) / 8, bytes, nb))
		return -EFAULT;
	st->nr_out = (i - st->start) / 8 + nb;
	return 0;
}

/* Scan one batch of up to UFFDX_WP_BATCH slots from st->pos. */
static int uffdx_scan_batch(struct uffdx_scan_state *st, pgoff_t n)
{
	struct uffdx_region *region = st->region;
	bool rearm = st->sc->flags & UFFDX_SCAN_REARM;
	pgoff_t i = st->pos, covered, b, reported;
	unsigned long *written, *wp;
	u64 visible, nr_out;

	uffdx_scan_pins(st, i, n);

	/* Peek. */
	bitmap_zero(st->rep, UFFDX_WP_BATCH);
	spin_lock(&region->wp_lock);
	written = region->flags[UFFDX_SF_WRITTEN];
	b = i;
	for_each_set_bit_from(b, written, i + n)
		__set_bit(b - i, st->rep);
	spin_unlock(&region->wp_lock);
	bitmap_or(st->rep, st->rep, st->pinned, n);

	/* Report. */
	visible = st->visible;
	nr_out = st->nr_out;
	if (st->sc->flags & UFFDX_SCAN_BITMAP) {
		if (uffdx_scan_bitmap(st, i, n))
			return -EFAULT;
		covered = n;
	} else {
		covered = uffdx_scan_ranges(st, i, n);
		if (covered == ULONG_MAX || uffdx_scan_flush(st)) {
			/* nothing of this batch is taken: it is not reported */
			st->visible = visible;
			return -EFAULT;
		}
	}
	if (covered < n)
		bitmap_clear(st->rep, covered, n - covered);
	reported = bitmap_weight(st->rep, n);

	/*
	 * Commit: the reported records are taken, and re-armed, under
	 * region->lock (a MOVE checks and carries bits under it).  A slot
	 * whose record went meanwhile (DISCARD, MOVE) is left alone; a
	 * pinned page is re-armed if it is still there.
	 */
	if (rearm && reported) {
		if (mutex_lock_killable(&region->lock)) {
			st->visible = visible;
			st->nr_out = nr_out;
			return -EINTR;
		}
		spin_lock(&region->wp_lock);
		wp = region->flags[UFFDX_SF_WP];
		for_each_set_bit(b, st->rep, n) {
			if (__test_and_clear_bit(i + b, written) ||
			    (test_bit(b, st->pinned) &&
			     xa_load(&region->pages, i + b)))
				__set_bit(i + b, wp);
			else
				__clear_bit(b, st->rep);
		}
		spin_unlock(&region->wp_lock);
		mutex_unlock(&region->lock);
		uffdx_wp_quiesce(region, i, i + n, st->rep, &st->span);
	}
	st->written += reported;
	st->pos = i + covered;
	return covered < n ? 1 : 0;
}

/*
 * The next slot from @pos worth a batch in the range form: a written
 * record or a present page (which may be pinned); @end if none.
 */
static pgoff_t uffdx_scan_next(struct uffdx_scan_state *st, pgoff_t pos)
{
	unsigned long *written = uffdx_slot_flags(st->region,
						  UFFDX_SF_WRITTEN);
	unsigned long index = pos;
	pgoff_t next = st->end;

	if (written)
		next = find_next_bit(written, st->end, pos);
	if (xa_find(&st->region->pages, &index, next - 1, XA_PRESENT))
		next = min_t(pgoff_t, next, index);
	return next;
}

static long uffdx_wp_scan(struct uffdx_ctx *ctx, struct uffdx_scan *sc,
			  void __user *uarg)
{
	struct uffdx_scan __user *u = uarg;
	struct uffdx_scan_state *st;
	struct uffdx_region *region;
	u64 last, pages;
	pgoff_t n;
	int ret = 0;

	if (sc->flags & ~(UFFDX_SCAN_REARM | UFFDX_SCAN_BITMAP) ||
	    !sc->out_len || memchr_inv(sc->reserved, 0, sizeof(sc->reserved)))
		return -EINVAL;
	region = uffdx_region_lookup(ctx, sc->region_id);
	if (!region)
		return -ENOENT;
	if (region->wp_mode != UFFDX_REGION_CREATE_WP_ASYNC ||
	    !sc->len || !PAGE_ALIGNED(sc->offset) || !PAGE_ALIGNED(sc->len) ||
	    check_add_overflow(sc->offset, sc->len, &last) ||
	    last > region->len) {
		ret = -EINVAL;
		goto out_put;
	}
	/* Pinned pages are re-armed too: both bitmaps, from the start. */
	ret = uffdx_wp_bitmaps(region);
	if (ret)
		goto out_put;
	st = kzalloc(sizeof(*st), GFP_KERNEL_ACCOUNT);
	if (!st) {
		ret = -ENOMEM;
		goto out_put;
	}
	st->span.record_pins = true;
	st->region = region;
	st->sc = sc;
	st->start = sc->offset >> PAGE_SHIFT;
	st->end = last >> PAGE_SHIFT;
	st->pos = st->start;
	st->cap = sc->out_len;
	if (sc->flags & UFFDX_SCAN_BITMAP) {
		/* The bitmap covers out_len * 8 pages at most. */
		if (!check_mul_overflow(sc->out_len, (u64)8, &pages) &&
		    pages < st->end - st->start)
			st->end = st->start + pages;
	}

	while (st->pos < st->end) {
		if (fatal_signal_pending(current)) {
			ret = -EINTR;
			break;
		}
		if (!(sc->flags & UFFDX_SCAN_BITMAP)) {
			st->pos = uffdx_scan_next(st, st->pos);
			if (st->pos >= st->end)
				break;
		}
		n = min_t(pgoff_t, st->end - st->pos, UFFDX_WP_BATCH);
		ret = uffdx_scan_batch(st, n);
		if (ret)
			break;
		cond_resched();
	}
	if (ret > 0)
		ret = 0;	/* the output is full: "scanned" says where */
	if (!ret && !(sc->flags & UFFDX_SCAN_BITMAP) && st->nbuf) {
		st->open = false;
		if (uffdx_scan_flush(st))
			ret = -EFAULT;
	}
	uffdx_wp_span_flush(region, &st->span);

	sc->scanned = (u64)(min(st->pos, st->end) - st->start) << PAGE_SHIFT;
	if (!(sc->flags & UFFDX_SCAN_BITMAP) && st->pos >= st->end)
		sc->scanned = last - sc->offset;
	sc->nr_out = sc->flags & UFFDX_SCAN_BITMAP ? st->nr_out : st->visible;
	sc->written = st->written << PAGE_SHIFT;
	kfree(st);
	/* The outputs are reported also with -EFAULT and -EINTR: progress. */
	if (put_user(sc->scanned, &u->scanned) ||
	    put_user(sc->nr_out, &u->nr_out) ||
	    put_user(sc->written, &u->written))
		ret = -EFAULT;
out_put:
	uffdx_region_put(region);
	return ret;
}

long uffdx_wp_ioctl(struct uffdx_ctx *ctx, unsigned int nr, void *karg,
		    void __user *uarg)
{
	if (nr == _UFFDX_SCAN)
		return uffdx_wp_scan(ctx, karg, uarg);
	return uffdx_wp_addr(ctx, karg, uarg);
}
