/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Kernel API differences, resolved from the probes in uffdx_conftest.h
 * (module/conftest.sh).  Nothing here tests a version number.
 */
#ifndef UFFDX_COMPAT_H
#define UFFDX_COMPAT_H

#include <linux/highmem.h>
#include <linux/hmm.h>
#include <linux/memcontrol.h>
#include <linux/mm.h>
#include <linux/mmu_notifier.h>
#include <linux/sched/mm.h>
#include "uffdx_conftest.h"

static inline void uffdx_vm_flags_set(struct vm_area_struct *vma,
				      unsigned long flags)
{
#ifdef UFFDX_HAVE_VM_FLAGS_SET
	vm_flags_set(vma, flags);
#else
	vma->vm_flags |= flags;
#endif
}

/* Drop the lock a ->fault handler was called with, before sleeping. */
static inline void uffdx_release_fault_lock(struct vm_fault *vmf)
{
#if defined(UFFDX_HAVE_RELEASE_FAULT_LOCK)
	release_fault_lock(vmf);
#elif defined(UFFDX_HAVE_FAULT_FLAG_VMA_LOCK)
	if (vmf->flags & FAULT_FLAG_VMA_LOCK)
		vma_end_read(vmf->vma);
	else
		mmap_read_unlock(vmf->vma->vm_mm);
#else
	mmap_read_unlock(vmf->vma->vm_mm);
#endif
}

/*
 * Zap every mapping of [@start, @start + @nr) of @mapping.
 *
 * even_cows is true: before 5.17, zap_pte_range() with even_cows false
 * skipped every page whose page->mapping is not @mapping, and region pages
 * have no ->mapping.  Regions are never mapped MAP_PRIVATE, so there are
 * no private COW copies that "true" could wrongly zap.
 */
static inline void uffdx_unmap_pages(struct address_space *mapping,
				     pgoff_t start, pgoff_t nr)
{
#ifdef UFFDX_HAVE_UNMAP_MAPPING_PAGES
	unmap_mapping_pages(mapping, start, nr, true);
#else
	unmap_mapping_range(mapping, (loff_t)start << PAGE_SHIFT,
			    (loff_t)nr << PAGE_SHIFT, 1);
#endif
}

/*
 * May @page, a page of a region's store, be pinned for DMA or long term
 * (FOLL_PIN: io_uring fixed buffers, O_DIRECT, pin_user_pages())?  As
 * folio_maybe_dma_pinned() for an order-0 page (no false negatives), but
 * without counting the references the store and each mapping hold: a page
 * mapped a thousand times is not pinned.  Region pages are never compound,
 * so the mapcount is _mapcount + 1 on every kernel.
 */
static inline bool uffdx_page_maybe_dma_pinned(struct page *page)
{
	int refs = page_ref_count(page) - 1 -
		   (atomic_read(&page->_mapcount) + 1);

	return refs >= (int)GUP_PIN_COUNTING_BIAS;
}

/* Charge region pages to the memory cgroup of the context's creator. */
static inline struct mem_cgroup *uffdx_get_memcg(struct mm_struct *mm)
{
#ifdef UFFDX_HAVE_SET_ACTIVE_MEMCG
	return get_mem_cgroup_from_mm(mm);
#else
	return NULL;
#endif
}

static inline void uffdx_put_memcg(struct mem_cgroup *memcg)
{
#ifdef UFFDX_HAVE_SET_ACTIVE_MEMCG
	mem_cgroup_put(memcg);
#endif
}

static inline struct mem_cgroup *uffdx_set_active_memcg(struct mem_cgroup *memcg)
{
#ifdef UFFDX_HAVE_SET_ACTIVE_MEMCG
	return set_active_memcg(memcg);
#else
	return NULL;
#endif
}

/*
 * What the running kernel offers the simulated device (later features).
 * Device-private memory needs CONFIG_DEVICE_PRIVATE, which Debian's
 * kernels lack; mirroring and migration with system pages do not.
 */
#if defined(UFFDX_HAVE_HMM_RANGE_FAULT) && defined(UFFDX_HAVE_MMU_INTERVAL_NOTIFIER)
#define UFFDX_KERNEL_HMM_MIRROR		1
#else
#define UFFDX_KERNEL_HMM_MIRROR		0
#endif

#if IS_ENABLED(CONFIG_DEVICE_PRIVATE) && defined(UFFDX_HAVE_MEMREMAP_PAGES) && \
	defined(UFFDX_HAVE_MIGRATE_VMA) && defined(UFFDX_HAVE_DEVICE_PRIVATE_API) && \
	UFFDX_KERNEL_HMM_MIRROR
#define UFFDX_KERNEL_DEVICE_PRIVATE	1
#else
#define UFFDX_KERNEL_DEVICE_PRIVATE	0
#endif

/* hmm.c drives the range form (until 6.14); the 6.15 one-page form later. */
#if defined(UFFDX_HAVE_MAKE_DEVICE_EXCLUSIVE_RANGE) && \
	defined(UFFDX_HAVE_MMU_NOTIFY_EXCLUSIVE) && UFFDX_KERNEL_HMM_MIRROR
#define UFFDX_KERNEL_DEVICE_EXCLUSIVE	1
#else
#define UFFDX_KERNEL_DEVICE_EXCLUSIVE	0
#endif

/*
 * Region pages are charged to the creator's memory cgroup with
 * __GFP_ACCOUNT, except where that types the page PageKmemcg (before
 * 5.11), which no page mapped into user space may be: there only the
 * module's own budgets bound them.
 */
#ifdef UFFDX_HAVE_PAGE_KMEMCG
#define UFFDX_GFP_USER_ACCOUNT	0
#else
#define UFFDX_GFP_USER_ACCOUNT	__GFP_ACCOUNT
#endif

/* vma_lookup() (5.14). */
static inline struct vm_area_struct *uffdx_vma_lookup(struct mm_struct *mm,
						      unsigned long addr)
{
#ifdef UFFDX_HAVE_VMA_LOOKUP
	return vma_lookup(mm, addr);
#else
	struct vm_area_struct *vma = find_vma(mm, addr);

	return vma && addr >= vma->vm_start ? vma : NULL;
#endif
}

/* A page's contents from and to a kernel buffer (memcpy_*_page(), 5.11). */
static inline void uffdx_memcpy_to_page(struct page *page, const void *buf)
{
#ifdef UFFDX_HAVE_MEMCPY_TO_PAGE
	memcpy_to_page(page, 0, buf, PAGE_SIZE);
#else
	/* 5.10: the module is built for 64-bit kernels, without highmem. */
	memcpy(page_address(page), buf, PAGE_SIZE);
#endif
}

static inline void uffdx_memcpy_from_page(void *buf, struct page *page)
{
#ifdef UFFDX_HAVE_MEMCPY_TO_PAGE
	memcpy_from_page(buf, page, 0, PAGE_SIZE);
#else
	memcpy(buf, page_address(page), PAGE_SIZE);
#endif
}

static inline void *uffdx_kmap(struct page *page)
{
#ifdef UFFDX_HAVE_KMAP_LOCAL
	return kmap_local_page(page);
#else
	return page_address(page);	/* 5.10, 64-bit: no highmem */
#endif
}

static inline void uffdx_kunmap(void *addr)
{
#ifdef UFFDX_HAVE_KMAP_LOCAL
	kunmap_local(addr);
#endif
}

/* Who caused an invalidation (5.9 migrate_pgmap_owner, 5.14 owner). */
static inline void *uffdx_range_owner(const struct mmu_notifier_range *range)
{
#ifdef UFFDX_HAVE_NOTIFIER_RANGE_OWNER
	return range->owner;
#elif defined(UFFDX_HAVE_NOTIFIER_RANGE_PGMAP_OWNER)
	return range->migrate_pgmap_owner;
#else
	return NULL;
#endif
}

static inline bool uffdx_notify_is_exclusive(enum mmu_notifier_event event)
{
#ifdef UFFDX_HAVE_MMU_NOTIFY_EXCLUSIVE
	return event == MMU_NOTIFY_EXCLUSIVE;
#else
	return false;
#endif
}

static inline unsigned int uffdx_hmm_pfn_order(unsigned long hpfn)
{
#ifdef UFFDX_HAVE_HMM_PFN_TO_MAP_ORDER
	return hmm_pfn_to_map_order(hpfn);
#else
	return 0;
#endif
}

#endif /* UFFDX_COMPAT_H */
