// SPDX-License-Identifier: GPL-2.0
/*
 * The simulated device on ordinary process memory, through the kernel's
 * HMM helpers, where the kernel has them (docs/design.md section 7):
 *  - exclusive access with make_device_exclusive_range() (before 6.15,
 *    exported only with CONFIG_DEVICE_PRIVATE);
 *  - migration into device-private memory, ZONE_DEVICE pages from
 *    memremap_pages(MEMORY_DEVICE_PRIVATE), with migrate_vma_*(), faulting
 *    back through ->migrate_to_ram.
 * The shapes follow lib/test_hmm.c: device pages are backed by system
 * pages that hold their data, chunks are added lazily up to the device's
 * pool, and the notifier ignores the invalidations the device causes itself
 * (owner cookie: the device).  The mirror (hmm_range_fault()) is device.c's.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/delay.h>
#include <linux/hmm.h>
#include <linux/highmem.h>
#include <linux/ioport.h>
#include <linux/memremap.h>
#include <linux/migrate.h>
#include <linux/pagemap.h>
#include <linux/rmap.h>
#include <linux/sched/mm.h>
#include <linux/slab.h>

#include "uffdx.h"
#include "device.h"

#if UFFDX_KERNEL_DEVICE_PRIVATE

/*
 * Device memory is added in chunks of (at least) this many bytes; the
 * kernel rounds a free region up to a memory section (128 MiB on x86-64).
 */
#define UFFDX_CHUNK_BYTES	(16UL << 20)

struct uffdx_dev_chunk {
	struct dev_pagemap pagemap;
	struct uffdx_device *dev;
	unsigned long npages;
};

/* A device page's data lives in its backing system page. */
struct page *uffdx_hmm_backing(struct page *page)
{
	return page->zone_device_data;
}

bool uffdx_hmm_is_ours(struct uffdx_device *dev, struct page *page)
{
	return is_device_private_page(page) && page->pgmap->owner == dev;
}

static void uffdx_hmm_page_free(struct page *page)
{
	struct uffdx_dev_chunk *chunk = container_of(page->pgmap,
						     struct uffdx_dev_chunk,
						     pagemap);
	struct uffdx_device *dev = chunk->dev;
	struct page *rpage = page->zone_device_data;

	if (rpage)
		__free_page(rpage);
	spin_lock(&dev->mem_lock);
	page->zone_device_data = dev->free_pages;
	dev->free_pages = page;
	spin_unlock(&dev->mem_lock);
	atomic_long_dec(&dev->private_used);
}

/*
 * A CPU touched a page in device memory: migrate it back into a fresh
 * system page (test_hmm's dmirror_devmem_fault()), and tell the device.
 */
static vm_fault_t uffdx_hmm_migrate_to_ram(struct vm_fault *vmf)
{
	struct uffdx_dev_chunk *chunk = container_of(vmf->page->pgmap,
						     struct uffdx_dev_chunk,
						     pagemap);
	struct uffdx_device *dev = chunk->dev;
	unsigned long src = 0, dst = 0;
	struct migrate_vma args = {
		.vma = vmf->vma,
		.start = vmf->address & PAGE_MASK,
		.end = (vmf->address & PAGE_MASK) + PAGE_SIZE,
		.src = &src,
		.dst = &dst,
		.pgmap_owner = dev,
		.flags = MIGRATE_VMA_SELECT_DEVICE_PRIVATE,
		.fault_page = vmf->page,
	};
	struct uffdx_hold *ev;
	struct page *spage, *dpage;

	if (migrate_vma_setup(&args))
		return VM_FAULT_SIGBUS;
	spage = migrate_pfn_to_page(src);
	if (spage && (src & MIGRATE_PFN_MIGRATE)) {
		dpage = alloc_page_vma(GFP_HIGHUSER_MOVABLE, vmf->vma,
				       vmf->address);
		if (!dpage) {
			migrate_vma_finalize(&args);
			return VM_FAULT_OOM;
		}
		lock_page(dpage);
		/* The device's own writes land before the copy, not after. */
		mutex_lock(&dev->lock);
		xa_erase(&dev->pt, args.start >> PAGE_SHIFT);
		mutex_unlock(&dev->lock);
		copy_highpage(dpage, uffdx_hmm_backing(spage));
		dst = migrate_pfn(page_to_pfn(dpage));
		if (src & MIGRATE_PFN_WRITE)
			dst |= MIGRATE_PFN_WRITE;
	}
	migrate_vma_pages(&args);
	if (dst && (src & MIGRATE_PFN_MIGRATE)) {
		/* An event for the device; none if memory is short. */
		ev = kzalloc(sizeof(*ev), GFP_NOWAIT | __GFP_ACCOUNT);
		mutex_lock(&dev->lock);
		dev->stats.migrated_to_sys++;
		if (ev) {
			ev->addr = args.start;
			if (!uffdx_dev_queue_event(dev, ev,
						   UFFDX_DEV_EVENT_MIGRATED,
						   vmf->flags & FAULT_FLAG_WRITE ?
						   UFFDX_PF_WRITE : 0)) {
				kfree(ev);
			}
		} else {
			dev->stats.events_lost++;
		}
		mutex_unlock(&dev->lock);
	}
	migrate_vma_finalize(&args);
	return 0;
}

static const struct dev_pagemap_ops uffdx_hmm_pagemap_ops = {
	.page_free = uffdx_hmm_page_free,
	.migrate_to_ram = uffdx_hmm_migrate_to_ram,
};

/* Add a chunk of device memory. */
static int uffdx_hmm_add_chunk(struct uffdx_device *dev)
{
	struct uffdx_dev_chunk *chunk, **chunks;
	unsigned long first, i;
	struct resource *res;
	void *ptr;
	int ret = -ENOMEM;

	mutex_lock(&dev->chunk_lock);
	/* Another thread added one meanwhile. */
	if (READ_ONCE(dev->free_pages)) {
		ret = 0;
		goto out_unlock;
	}
	/* No more device memory than the pool: chunks are at least its size. */
	if (dev->nr_chunks && dev->nr_chunks * dev->chunks[0]->npages >=
	    dev->pool_pages)
		goto out_unlock;
	chunk = kzalloc(sizeof(*chunk), GFP_KERNEL_ACCOUNT);
	if (!chunk)
		goto out_unlock;
	chunks = krealloc(dev->chunks, (dev->nr_chunks + 1) * sizeof(*chunks),
			  GFP_KERNEL_ACCOUNT);
	if (!chunks)
		goto out_free;
	dev->chunks = chunks;
	res = request_free_mem_region(&iomem_resource, UFFDX_CHUNK_BYTES,
				      "uffdx-device");
	if (IS_ERR(res)) {
		ret = PTR_ERR(res);
		goto out_free;
	}
	chunk->dev = dev;
	chunk->npages = resource_size(res) >> PAGE_SHIFT;
	chunk->pagemap.type = MEMORY_DEVICE_PRIVATE;
	chunk->pagemap.range.start = res->start;
	chunk->pagemap.range.end = res->end;
	chunk->pagemap.nr_range = 1;
	chunk->pagemap.ops = &uffdx_hmm_pagemap_ops;
	chunk->pagemap.owner = dev;
	ptr = memremap_pages(&chunk->pagemap, numa_node_id());
	if (IS_ERR_OR_NULL(ptr)) {
		ret = ptr ? PTR_ERR(ptr) : -EFAULT;
		goto out_release;
	}
	first = res->start >> PAGE_SHIFT;
	spin_lock(&dev->mem_lock);
	for (i = 0; i < chunk->npages; i++) {
		struct page *page = pfn_to_page(first + i);

		page->zone_device_data = dev->free_pages;
		dev->free_pages = page;
	}
	spin_unlock(&dev->mem_lock);
	dev->chunks[dev->nr_chunks++] = chunk;
	mutex_unlock(&dev->chunk_lock);
	return 0;

out_release:
	release_mem_region(res->start, resource_size(res));
out_free:
	kfree(chunk);
out_unlock:
	mutex_unlock(&dev->chunk_lock);
	return ret;
}

static struct page *uffdx_hmm_take_free(struct uffdx_device *dev)
{
	struct page *dpage;

	spin_lock(&dev->mem_lock);
	dpage = dev->free_pages;
	if (dpage)
		dev->free_pages = dpage->zone_device_data;
	spin_unlock(&dev->mem_lock);
	return dpage;
}

/*
 * A free device page with a fresh backing page, locked (as
 * zone_device_page_init() leaves it), or NULL (pool full).
 */
static struct page *uffdx_hmm_alloc_page(struct uffdx_device *dev)
{
	struct page *rpage, *dpage;

	/* The pool bounds device memory of both kinds (a hint: racy). */
	if (atomic_long_read(&dev->private_used) +
	    READ_ONCE(dev->stats.pool_used) >= dev->pool_pages)
		return NULL;
	rpage = alloc_page(GFP_HIGHUSER | __GFP_ACCOUNT | __GFP_RETRY_MAYFAIL);
	if (!rpage)
		return NULL;
	while (!(dpage = uffdx_hmm_take_free(dev))) {
		if (uffdx_hmm_add_chunk(dev)) {
			__free_page(rpage);
			return NULL;
		}
	}
	atomic_long_inc(&dev->private_used);
	zone_device_page_init(dpage);
	dpage->zone_device_data = rpage;
	return dpage;
}

/*
 * DEV_MIGRATE_TO_DEV / _TO_SYS of [@op->addr, @end), one VMA of process
 * memory, as test_hmm migrates: up to 64 pages per migrate_vma pass.
 * @status gets one byte per page.
 */
int uffdx_hmm_migrate(struct uffdx_dev_op *op, unsigned long end,
		      bool to_dev, u8 *status)
{
	struct uffdx_device *dev = op->dev;
	unsigned long src[UFFDX_DEV_FAULT_PAGES], dst[UFFDX_DEV_FAULT_PAGES];
	struct migrate_vma args = {
		.src = src,
		.dst = dst,
		.pgmap_owner = dev,
		.flags = to_dev ? MIGRATE_VMA_SELECT_SYSTEM :
				  MIGRATE_VMA_SELECT_DEVICE_PRIVATE,
	};
	struct vm_area_struct *vma;
	bool full = false;
	unsigned long i, n;
	int ret;

	mmap_assert_locked(op->mm);
	vma = uffdx_vma_lookup(op->mm, op->addr);
	if (!vma || !(vma->vm_flags & VM_READ))
		return -EFAULT;
	args.vma = vma;
	args.start = op->addr;
	args.end = min3(end, vma->vm_end,
			op->addr + UFFDX_DEV_FAULT_PAGES * PAGE_SIZE);
	n = (args.end - args.start) >> PAGE_SHIFT;
	memset(src, 0, sizeof(src));
	memset(dst, 0, sizeof(dst));
	ret = migrate_vma_setup(&args);
	if (ret)
		return ret;
	/*
	 * The CPU's PTEs are migration entries now; the device's own
	 * translations go before the copy, so that no device write lands in
	 * a page after it was copied.
	 */
	mutex_lock(&dev->lock);
	for (i = 0; i < n; i++)
		if (src[i] & MIGRATE_PFN_MIGRATE)
			xa_erase(&dev->pt, (args.start >> PAGE_SHIFT) + i);
	mutex_unlock(&dev->lock);

	for (i = 0; i < n; i++) {
		struct page *spage = migrate_pfn_to_page(src[i]);
		struct page *dpage;

		if (!(src[i] & MIGRATE_PFN_MIGRATE))
			continue;
		if (to_dev) {
			if (spage && is_zone_device_page(spage))
				continue;
			dpage = full ? NULL : uffdx_hmm_alloc_page(dev);
			if (!dpage) {
				full = true;
				continue;
			}
			/* Locked by zone_device_page_init(). */
			if (spage)
				copy_highpage(uffdx_hmm_backing(dpage), spage);
			else
				clear_highpage(uffdx_hmm_backing(dpage));
		} else {
			if (!spage || !uffdx_hmm_is_ours(dev, spage))
				continue;
			dpage = alloc_page_vma(GFP_HIGHUSER_MOVABLE, vma,
					       args.start + (i << PAGE_SHIFT));
			if (!dpage) {
				full = true;
				continue;
			}
			lock_page(dpage);
			copy_highpage(dpage, uffdx_hmm_backing(spage));
		}
		dst[i] = migrate_pfn(page_to_pfn(dpage));
		if ((src[i] & MIGRATE_PFN_WRITE) ||
		    (!spage && (vma->vm_flags & VM_WRITE)))
			dst[i] |= MIGRATE_PFN_WRITE;
	}
	migrate_vma_pages(&args);

	mutex_lock(&dev->lock);
	for (i = 0; i < n; i++) {
		bool done = (src[i] & MIGRATE_PFN_MIGRATE) && dst[i];
		struct page *spage = migrate_pfn_to_page(src[i]);

		status[i] = done;
		if (!done)
			continue;
		if (to_dev) {
			dev->stats.migrated_to_dev++;
			if (!spage)
				dev->stats.allocated++;
		} else {
			dev->stats.migrated_to_sys++;
		}
	}
	mutex_unlock(&dev->lock);
	migrate_vma_finalize(&args);
	op->addr = args.end;
	return full ? -ENOMEM : 0;
}

/* Give every device page back to system memory, then the chunks. */
static void uffdx_hmm_evict(struct uffdx_dev_chunk *chunk)
{
	unsigned long start = chunk->pagemap.range.start >> PAGE_SHIFT;
	unsigned long *src, *dst, i, n = chunk->npages;

	src = kvcalloc(n, sizeof(*src), GFP_KERNEL | __GFP_NOFAIL);
	dst = kvcalloc(n, sizeof(*dst), GFP_KERNEL | __GFP_NOFAIL);
	migrate_device_range(src, start, n);
	for (i = 0; i < n; i++) {
		struct page *spage = migrate_pfn_to_page(src[i]);
		struct page *dpage;

		if (!spage || !(src[i] & MIGRATE_PFN_MIGRATE))
			continue;
		dpage = alloc_page(GFP_HIGHUSER_MOVABLE | __GFP_NOFAIL);
		lock_page(dpage);
		copy_highpage(dpage, uffdx_hmm_backing(spage));
		dst[i] = migrate_pfn(page_to_pfn(dpage));
		if (src[i] & MIGRATE_PFN_WRITE)
			dst[i] |= MIGRATE_PFN_WRITE;
	}
	migrate_device_pages(src, dst, n);
	migrate_device_finalize(src, dst, n);
	kvfree(src);
	kvfree(dst);
}

void uffdx_hmm_release(struct uffdx_device *dev)
{
	unsigned int i, pass;

	/*
	 * memunmap_pages() waits for every device page: evict until none is
	 * left (a page busy in a CPU fault at the first pass is not
	 * taken), a bounded number of times.
	 */
	for (pass = 0; pass < 100 && atomic_long_read(&dev->private_used);
	     pass++) {
		for (i = 0; i < dev->nr_chunks; i++)
			uffdx_hmm_evict(dev->chunks[i]);
		if (atomic_long_read(&dev->private_used))
			msleep(20);
	}
	for (i = 0; i < dev->nr_chunks; i++) {
		struct uffdx_dev_chunk *chunk = dev->chunks[i];

		memunmap_pages(&chunk->pagemap);
		release_mem_region(chunk->pagemap.range.start,
				   range_len(&chunk->pagemap.range));
		kfree(chunk);
	}
	kfree(dev->chunks);
	dev->chunks = NULL;
	dev->nr_chunks = 0;
}

#else /* !UFFDX_KERNEL_DEVICE_PRIVATE */

struct page *uffdx_hmm_backing(struct page *page)
{
	return page;
}

bool uffdx_hmm_is_ours(struct uffdx_device *dev, struct page *page)
{
	return false;
}

int uffdx_hmm_migrate(struct uffdx_dev_op *op, unsigned long end,
		      bool to_dev, u8 *status)
{
	return -EINVAL;
}

void uffdx_hmm_release(struct uffdx_device *dev)
{
}

#endif /* UFFDX_KERNEL_DEVICE_PRIVATE */

#if UFFDX_KERNEL_DEVICE_EXCLUSIVE
/*
 * DEV_EXCLUSIVE (and DEV_ATOMIC) of [@op->addr, @end) of process memory,
 * within one VMA: make_device_exclusive_range() replaces the CPU's PTEs by
 * device-exclusive entries (a CPU touch restores them, with an
 * MMU_NOTIFY_EXCLUSIVE the notifier counts as a revocation), and the pages
 * go into the device's page table tagged exclusive, inside an interval
 * notifier section as its kerneldoc asks: an invalidation between the grab
 * and the store (MADV_DONTNEED zaps the entries without the page lock)
 * makes it start again.  -EBUSY if a page could not be taken.
 */
/* Count the pages from @op->addr the device holds exclusive already. */
static bool uffdx_hmm_skip_held(struct uffdx_dev_op *op, unsigned long end)
{
	struct uffdx_device *dev = op->dev;
	void *entry;

	mutex_lock(&dev->lock);
	while (op->addr < end) {
		entry = xa_load(&dev->pt, op->addr >> PAGE_SHIFT);
		if (!entry || !(xa_pointer_tag(entry) & UFFDX_PT_ATOMIC))
			break;
		op->addr += PAGE_SIZE;
		op->cpages++;
	}
	mutex_unlock(&dev->lock);
	return op->addr >= end;
}

/* The first page of [@addr, @end) that the device holds exclusive, or @end. */
static unsigned long uffdx_hmm_first_held(struct uffdx_device *dev,
					  unsigned long addr,
					  unsigned long end)
{
	unsigned long index = addr >> PAGE_SHIFT;
	void *entry;

	mutex_lock(&dev->lock);
	xa_for_each_range(&dev->pt, index, entry, addr >> PAGE_SHIFT,
			  (end >> PAGE_SHIFT) - 1) {
		if (xa_pointer_tag(entry) & UFFDX_PT_ATOMIC) {
			end = index << PAGE_SHIFT;
			break;
		}
	}
	mutex_unlock(&dev->lock);
	return end;
}

int uffdx_hmm_exclusive(struct uffdx_dev_op *op, unsigned long end)
{
	struct uffdx_device *dev = op->dev;
	struct page *pages[UFFDX_DEV_FAULT_PAGES];
	struct vm_area_struct *vma;
	unsigned long next, seq, i;
	unsigned int tries = 0;
	int n, ret;

again:
	if (fatal_signal_pending(current))
		return -EINTR;
	/*
	 * A page held already is not grabbed again: the grab restores it
	 * first (an invalidation), and would restart itself for ever.
	 */
	if (uffdx_hmm_skip_held(op, end))
		return 0;
	if (++tries > 16)
		return -EBUSY;	/* invalidated every time: let the caller retry */
	seq = mmu_interval_read_begin(&dev->notifier);
	mmap_read_lock(op->mm);
	vma = uffdx_vma_lookup(op->mm, op->addr);
	if (!vma) {
		mmap_read_unlock(op->mm);
		return -EFAULT;
	}
	next = min3(end, vma->vm_end,
		    op->addr + UFFDX_DEV_FAULT_PAGES * PAGE_SIZE);
	next = uffdx_hmm_first_held(dev, op->addr, next);
	n = make_device_exclusive_range(op->mm, op->addr, next, pages, dev);
	mmap_read_unlock(op->mm);
	if (n < 0)
		return n;

	ret = 0;
	mutex_lock(&dev->lock);
	if (mmu_interval_read_retry(&dev->notifier, seq)) {
		ret = -EAGAIN;
		goto unlock;
	}
	for (i = 0; i < n; i++) {
		void *entry;

		if (!pages[i]) {
			ret = -EBUSY;
			continue;
		}
		entry = xa_tag_pointer(pages[i], UFFDX_PT_WRITE | UFFDX_PT_ATOMIC);
		entry = xa_store(&dev->pt, (op->addr >> PAGE_SHIFT) + i, entry,
				 GFP_NOWAIT | __GFP_ACCOUNT);
		if (xa_is_err(entry))
			ret = xa_err(entry);
	}
unlock:
	mutex_unlock(&dev->lock);
	for (i = 0; i < n; i++) {
		if (pages[i]) {
			unlock_page(pages[i]);
			put_page(pages[i]);
		}
	}
	if (ret == -EAGAIN)
		goto again;
	if (!ret && n < (next - op->addr) >> PAGE_SHIFT)
		ret = -EBUSY;
	op->cpages += ret ? 0 : n;
	op->addr = next;
	return ret;
}
#else
int uffdx_hmm_exclusive(struct uffdx_dev_op *op, unsigned long end)
{
	return -EINVAL;
}
#endif
