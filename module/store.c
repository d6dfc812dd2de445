// SPDX-License-Identifier: GPL-2.0
/*
 * uffdx page store: the slots of a region, and every change made to them.
 *
 * A slot (an index of region->pages) is in one of these states, and has
 * the flag bits of enum uffdx_slot_flag beside it (armed; write-protected
 * and written, wp.c).  docs/design.md section 3 draws the whole machine
 * with its invalidations.
 *
 *   hole     NULL             fill -> page/poison; fault: armed -> event,
 *                             protected write -> WP event (sync) or
 *                             written (async), else -> page (zeroed)
 *   page     struct page *    discard -> hole (zap); move -> hole here,
 *                             page there (zap), flags WP/WRITTEN with it;
 *                             protect -> write permission taken away
 *   poison   value entry      discard -> hole (zap not needed: never mapped)
 *
 * and a page slot may be held by a device (region->held, device.c):
 * exclusive (the page, no CPU mapping) or resident (a device page), until
 * a CPU access, DISCARD, the device's release or its own command.
 *
 * Rules every path here follows:
 *  - Pages enter a slot only by xa_cmpxchg() from a hole, so racing fills
 *    cannot both win.  The slot's charge (account.c) is taken before.
 *  - A page is looked up with uffdx_store_get() and mapped only under its
 *    page lock after re-checking the slot (uffdx_store_lock()).
 *  - Removal clears the slot, cycles the page lock (waiting out a fault
 *    that is installing a PTE for the page), then zaps once per batch.
 *  - A removed page that something else still references (a pin, a pipe
 *    buffer) stays charged in the context's limbo until it is released.
 *
 * The lock order is in uffdx.h, beside struct uffdx_region.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/bitmap.h>
#include <linux/pagemap.h>
#include <linux/sched/signal.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

#include "uffdx.h"

/* Slots handled between two checks for a fatal signal and a resched. */
#define UFFDX_BATCH	64

/*
 * Allocate a page for @ctx's store: charged to the context and its user
 * (account.c) and to the memory cgroup of the process that opened the
 * context.  __GFP_RETRY_MAYFAIL: fail rather than invoke the OOM killer.
 */
struct page *uffdx_alloc_page(struct uffdx_ctx *ctx, bool zero)
{
	struct page *page;

	if (uffdx_charge(ctx, UFFDX_PAGE_UNITS))
		return NULL;
	page = uffdx_alloc_page_uncharged(ctx, zero);
	if (!page)
		uffdx_uncharge(ctx, UFFDX_PAGE_UNITS);
	return page;
}

/*
 * The same without the context's charge, for a page that takes over the
 * charge of another (device.c): still the creator's memory cgroup's.
 */
struct page *uffdx_alloc_page_uncharged(struct uffdx_ctx *ctx, bool zero)
{
	gfp_t gfp = GFP_USER | UFFDX_GFP_USER_ACCOUNT | __GFP_RETRY_MAYFAIL;
	struct mem_cgroup *old;
	struct page *page;

	if (zero)
		gfp |= __GFP_ZERO;
	old = uffdx_set_active_memcg(ctx->memcg);
	page = alloc_page(gfp);
	uffdx_set_active_memcg(old);
	return page;
}

/*
 * Drop the store's reference on a page that has left the store.  If
 * nothing else holds the page, it is freed and uncharged now; otherwise it
 * waits in the context's limbo, still charged, so that map, pin, discard
 * in a loop cannot hold more than the budget.
 */
void uffdx_free_page(struct uffdx_ctx *ctx, struct page *page)
{
	if (page_ref_count(page) == 1) {
		put_page(page);
		uffdx_uncharge(ctx, UFFDX_PAGE_UNITS);
		return;
	}
	spin_lock(&ctx->limbo_lock);
	list_add_tail(&page->lru, &ctx->limbo);
	ctx->nr_limbo++;
	spin_unlock(&ctx->limbo_lock);
}

/*
 * Free the limbo pages that only the store still references, or with @all
 * (the context is being freed) every one: the module lets go, and whoever
 * still holds a page keeps it alive on its own reference.
 */
void uffdx_limbo_reap(struct uffdx_ctx *ctx, bool all)
{
	struct page *page, *tmp;
	unsigned long freed = 0;

	spin_lock(&ctx->limbo_lock);
	list_for_each_entry_safe(page, tmp, &ctx->limbo, lru) {
		if (!all && page_ref_count(page) != 1)
			continue;
		list_del(&page->lru);
		put_page(page);
		freed++;
	}
	ctx->nr_limbo -= freed;
	spin_unlock(&ctx->limbo_lock);
	if (freed)
		uffdx_uncharge(ctx, freed * UFFDX_PAGE_UNITS);
}

/*
 * The slot at @index with a reference on its page, as the page cache's
 * filemap_get_entry() does it: the reference is taken under RCU, then the
 * slot is read again, so a page that left the store meanwhile (and may
 * already belong to someone else) is never returned.  Returns a page with
 * a reference, a value entry, or NULL for a hole.
 */
void *uffdx_store_get(struct uffdx_region *region, pgoff_t index)
{
	XA_STATE(xas, &region->pages, index);
	void *entry;

	rcu_read_lock();
repeat:
	xas_reset(&xas);
	entry = xas_load(&xas);
	if (xas_retry(&xas, entry))
		goto repeat;
	if (!entry || xa_is_value(entry))
		goto out;
	if (!get_page_unless_zero(entry))
		goto repeat;
	if (unlikely(entry != xas_reload(&xas))) {
		put_page(entry);
		goto repeat;
	}
out:
	rcu_read_unlock();
	return entry;
}

/*
 * The page at @index, referenced and locked, with the slot re-checked
 * under the lock: the one way to get a page that may be mapped (faults,
 * fault-around, pre-mapping for waiters).  With @wait false the lock is
 * only tried: callers that map pages other than the faulting one leave a
 * busy page to its own fault.  Returns NULL for a hole, a value entry
 * (then in *@entryp, if given) or a page that was busy or left the store.
 */
struct page *uffdx_store_lock(struct uffdx_region *region, pgoff_t index,
			      bool wait, void **entryp)
{
	struct page *page;
	void *entry;

	for (;;) {
		entry = uffdx_store_get(region, index);
		if (entryp)
			*entryp = entry;
		if (!entry || xa_is_value(entry))
			return NULL;
		page = entry;
		if (wait) {
			lock_page(page);
		} else if (!trylock_page(page)) {
			put_page(page);
			return NULL;
		}
		if (likely(xa_load(&region->pages, index) == page)) {
			/*
			 * A slot a device holds is never mapped: the one
			 * caller that waits (the fault) takes it back from
			 * the device first (device.c); the others skip it.
			 */
			if (wait || !uffdx_slot_hold(region, index))
				return page;
			unlock_page(page);
			put_page(page);
			return NULL;
		}
		unlock_page(page);
		put_page(page);
		if (!wait)
			return NULL;
	}
}

/*
 * Publish @entry in the hole at @index.  Returns NULL on success, else
 * what was there (or an xarray error).  Store nodes are charged to the
 * context creator's memory cgroup, as its pages are.
 */
static void *uffdx_store_insert(struct uffdx_region *region, pgoff_t index,
				void *entry)
{
	struct mem_cgroup *old;
	void *prev;

	old = uffdx_set_active_memcg(region->ctx->memcg);
	prev = xa_cmpxchg(&region->pages, index, NULL, entry,
			  GFP_KERNEL_ACCOUNT | __GFP_RETRY_MAYFAIL);
	uffdx_set_active_memcg(old);
	return prev;
}

/*
 * Publish @entry in the hole at @index of @region, counted (resident or
 * poison entries) before it is visible, so that a racing removal cannot
 * drive the count below zero (a losing racer may push it briefly past the
 * region's size instead: readers clamp it): 0, -EEXIST, or an xarray
 * error.  The caller has charged the entry.
 */
int uffdx_store_publish(struct uffdx_region *region, pgoff_t index,
			void *entry)
{
	atomic_long_t *count = xa_is_value(entry) ? &region->values :
			       &region->resident;
	void *old;

	atomic_long_inc(count);
	old = uffdx_store_insert(region, index, entry);
	if (!old)
		return 0;
	atomic_long_dec(count);
	return xa_is_err(old) ? xa_err(old) : -EEXIST;
}

/* Uncount an entry that left @region's store (its charge is the caller's). */
void uffdx_store_unpublish(struct uffdx_region *region, void *entry)
{
	atomic_long_dec(xa_is_value(entry) ? &region->values :
			&region->resident);
}

/*
 * A fault on a hole that is not armed (or whose handler is gone): publish a
 * zeroed page, locked, so that it is mapped before anyone can remove it.
 * Returns 0 with the page locked and referenced for the mapping, -EEXIST if
 * the slot was filled meanwhile (look again), or -ENOMEM.
 */
int uffdx_store_fault_zero(struct uffdx_region *region, pgoff_t index,
			   struct page **pagep)
{
	struct page *page;
	int ret;

	page = uffdx_alloc_page(region->ctx, true);
	if (!page)
		return -ENOMEM;
	lock_page(page);	/* unpublished: cannot block */
	ret = uffdx_store_publish(region, index, page);
	if (ret) {
		unlock_page(page);
		uffdx_free_page(region->ctx, page);
		return ret;
	}
	get_page(page);		/* the mapping's reference */
	*pagep = page;
	return 0;
}

/* Account for an entry that left the store for good. */
static void uffdx_entry_gone(struct uffdx_region *region, void *entry)
{
	uffdx_store_unpublish(region, entry);
	if (xa_is_value(entry))
		uffdx_uncharge(region->ctx, UFFDX_VALUE_UNITS);
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

	/* Slots a device holds are taken back, and the device told, first. */
	uffdx_dev_discard(region, start, end);

	/*
	 * Discard drops write protection and the written record, first: a
	 * fill or write fault that lands in a slot once it is empty comes
	 * after the discard, and keeps its record.
	 */
	if (region->wp_mode) {
		spin_lock(&region->wp_lock);
		uffdx_slot_clear(region, UFFDX_SF_WP, start, end);
		uffdx_slot_clear(region, UFFDX_SF_WRITTEN, start, end);
		spin_unlock(&region->wp_lock);
	}
	xa_for_each_range(&region->pages, index, entry, start, end - 1) {
		/* Callers pass at most a batch. */
		if (!xa_is_value(entry) && WARN_ON_ONCE(nr == UFFDX_BATCH))
			break;
		xa_erase(&region->pages, index);
		uffdx_entry_gone(region, entry);
		if (!xa_is_value(entry))
			pages[nr++] = entry;
	}
	for (i = 0; i < nr; i++) {
		lock_page(pages[i]);
		unlock_page(pages[i]);
	}
	if (nr)
		uffdx_unmap_pages(region->inode->i_mapping, start, end - start);
	for (i = 0; i < nr; i++)
		uffdx_free_page(region->ctx, pages[i]);
	/* Writers asleep on protection that is gone: their slots are holes. */
	if (region->wp_mode == UFFDX_REGION_CREATE_WP)
		uffdx_wake_wp_range(region, start, end);
}

/* DISCARD: [@start, @end) become holes; *@done counts the slots handled. */
int uffdx_store_discard(struct uffdx_region *region, pgoff_t start,
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
	/* Pages a pipe or pin released since their discard: free them now. */
	if (READ_ONCE(region->ctx->nr_limbo))
		uffdx_limbo_reap(region->ctx, false);
	*done = index - start;
	return ret;
}

static unsigned long uffdx_bitmap_units(struct uffdx_region *region)
{
	size_t bytes = BITS_TO_LONGS(region->npages) * sizeof(long);

	return DIV_ROUND_UP(bytes, PAGE_SIZE) * UFFDX_PAGE_UNITS;
}

/*
 * Free everything the store holds: the region is gone (no file, so no
 * mapping), the store's references are the last but for pins.  A region
 * can hold 2^28 pages: reschedule between batches.
 */
void uffdx_store_destroy(struct uffdx_region *region)
{
	unsigned long index, n = 0;
	unsigned int f;
	void *entry;

	xa_for_each(&region->pages, index, entry) {
		uffdx_entry_gone(region, entry);
		if (!xa_is_value(entry))
			uffdx_free_page(region->ctx, entry);
		if (++n % UFFDX_BATCH == 0)
			cond_resched();
	}
	xa_destroy(&region->pages);
	/* Each hold references the region: none is left when it is freed. */
	WARN_ON_ONCE(!xa_empty(&region->held));
	xa_destroy(&region->held);
	for (f = 0; f < UFFDX_SF_NR; f++) {
		if (!region->flags[f])
			continue;
		kvfree(region->flags[f]);
		uffdx_uncharge(region->ctx, uffdx_bitmap_units(region));
	}
}

/* The bitmap of slot flag @f, or NULL while no slot has it set. */
unsigned long *uffdx_slot_flags(struct uffdx_region *region,
				enum uffdx_slot_flag f)
{
	/* Pairs with the release in uffdx_slot_flags_get(): zeroed bitmap. */
	return smp_load_acquire(&region->flags[f]);
}

bool uffdx_slot_test(struct uffdx_region *region, enum uffdx_slot_flag f,
		     pgoff_t index)
{
	unsigned long *bits = uffdx_slot_flags(region, f);

	return bits && test_bit(index, bits);
}

/*
 * Make sure the bitmap of slot flag @f exists, under @region->lock: up to
 * 32 MiB for a 1 TiB region, charged like pages; 0 or -ENOMEM.
 */
int uffdx_slot_flags_get(struct uffdx_region *region, enum uffdx_slot_flag f)
{
	struct uffdx_ctx *ctx = region->ctx;
	unsigned long *bits;
	int ret;

	lockdep_assert_held(&region->lock);
	if (region->flags[f])
		return 0;
	ret = uffdx_charge(ctx, uffdx_bitmap_units(region));
	if (ret)
		return ret;
	/* __GFP_RETRY_MAYFAIL: over a memcg's limit, ENOMEM, not an OOM kill */
	bits = kvcalloc(BITS_TO_LONGS(region->npages), sizeof(long),
			GFP_KERNEL_ACCOUNT | __GFP_RETRY_MAYFAIL);
	if (!bits) {
		uffdx_uncharge(ctx, uffdx_bitmap_units(region));
		return -ENOMEM;
	}
	/* Publish the bitmap zeroed; uffdx_slot_flags() acquires. */
	smp_store_release(&region->flags[f], bits);
	return 0;
}

/*
 * Clear flag @f of [@start, @end).  The caller holds the lock that flag's
 * writers hold (uffdx.h): bitmap_clear() is not atomic against them.
 */
void uffdx_slot_clear(struct uffdx_region *region, enum uffdx_slot_flag f,
		      pgoff_t start, pgoff_t end)
{
	unsigned long *bits = uffdx_slot_flags(region, f);

	if (bits)
		bitmap_clear(bits, start, end - start);
}

/* Arm or disarm [@start, @end) for missing faults. */
int uffdx_store_set_armed(struct uffdx_region *region, pgoff_t start,
			  pgoff_t end, bool arm)
{
	int ret = 0;

	mutex_lock(&region->lock);
	if (arm) {
		ret = uffdx_slot_flags_get(region, UFFDX_SF_ARMED);
		if (!ret)
			bitmap_set(region->flags[UFFDX_SF_ARMED], start,
				   end - start);
	} else if (region->flags[UFFDX_SF_ARMED]) {
		bitmap_clear(region->flags[UFFDX_SF_ARMED], start, end - start);
	}
	mutex_unlock(&region->lock);
	return ret;
}

/*
 * Produce the entry a fill installs at one slot, charged.  A COPY's source
 * is read here, into a fresh page, before any lock is taken: it may fault,
 * even on an armed page of a region, and sleep for a handler.
 */
static void *uffdx_fill_entry(struct uffdx_ctx *ctx, enum uffdx_fill_kind kind,
			      const char __user *src)
{
	struct page *page;

	if (kind == UFFDX_FILL_POISON) {
		if (uffdx_charge(ctx, UFFDX_VALUE_UNITS))
			return ERR_PTR(-ENOMEM);
		return UFFDX_POISON_ENTRY;
	}

	page = uffdx_alloc_page(ctx, kind == UFFDX_FILL_ZERO);
	if (!page)
		return ERR_PTR(-ENOMEM);
	/* Not highmem (GFP_USER): the page has a kernel address. */
	if (kind == UFFDX_FILL_COPY &&
	    copy_from_user(page_address(page), src, PAGE_SIZE)) {
		uffdx_free_page(ctx, page);
		return ERR_PTR(-EFAULT);
	}
	return page;
}

/* Undo uffdx_fill_entry() for an entry that was never published. */
static void uffdx_drop_entry(struct uffdx_ctx *ctx, void *entry)
{
	if (xa_is_value(entry))
		uffdx_uncharge(ctx, UFFDX_VALUE_UNITS);
	else
		uffdx_free_page(ctx, entry);
}

/*
 * COPY, ZERO, POISON: fill the holes [@start, @end), stopping at the first
 * slot that is not a hole (-EEXIST), a failure, or a fatal signal.
 */
int uffdx_store_fill(struct uffdx_region *region, enum uffdx_fill_kind kind,
		     pgoff_t start, pgoff_t end, u64 src, pgoff_t *done)
{
	struct uffdx_ctx *ctx = region->ctx;
	pgoff_t index;
	void *entry;
	int ret = 0;

	for (index = start; index < end; index++) {
		if (fatal_signal_pending(current)) {
			ret = -EINTR;
			break;
		}
		/* Cheap early -EEXIST; the insert below is the real test. */
		if (xa_load(&region->pages, index)) {
			ret = -EEXIST;
			break;
		}
		entry = uffdx_fill_entry(ctx, kind, u64_to_user_ptr(src) +
					 ((index - start) << PAGE_SHIFT));
		if (IS_ERR(entry)) {
			ret = PTR_ERR(entry);
			break;
		}
		ret = uffdx_store_publish(region, index, entry);
		if (ret) {
			uffdx_drop_entry(ctx, entry);
			break;
		}
		/* Poison is not a write: its slot keeps its state. */
		if (region->wp_mode && kind != UFFDX_FILL_POISON)
			uffdx_wp_filled(region, index);
		if ((index - start) % UFFDX_BATCH == UFFDX_BATCH - 1)
			cond_resched();
	}
	*done = index - start;
	return ret;
}
