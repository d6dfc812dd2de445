/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The simulated device's internals, shared by device.c (the device, its
 * page table and file), hold.c (the region slots it holds) and hmm.c
 * (process memory through the kernel's HMM helpers).  docs/design.md section 7.
 */
#ifndef UFFDX_DEVICE_H
#define UFFDX_DEVICE_H

#include <linux/memremap.h>
#include <linux/mmu_notifier.h>

/* Device events queued and not read, per device; more are counted lost. */
#define UFFDX_DEV_MAX_EVENTS	4096

/*
 * @pt entries: a page, tagged WRITE if the CPU mapping was writable, and
 * ATOMIC if the device holds it exclusive (process memory, hmm.c).
 */
#define UFFDX_PT_WRITE		1UL
#define UFFDX_PT_ATOMIC		2UL

/* Pages one device fault asks hmm_range_fault() for. */
#define UFFDX_DEV_FAULT_PAGES	64

/*
 * struct uffdx_device - one simulated device.
 *
 * Lifetime: @kref is held by the device file and, for a moment, by a CPU
 * fault that revokes one of its holds (which may race with the file's
 * release).  The device holds its context, the mirrored mm (mmgrab; the
 * notifier's), and a reference on each region it holds slots of (through
 * the holds).
 *
 * @lock (a mutex, innermost: taken by the notifier from inside zaps, under
 * page locks and i_mmap_rwsem) protects @pt, @holds, @events, @dying and
 * the counters.  Nothing under it allocates with reclaim, copies to or
 * from user memory, or takes a page lock.
 */
struct uffdx_device {
	struct kref kref;
	struct uffdx_ctx *ctx;
	struct mmu_interval_notifier notifier;
	struct pid_namespace *pidns;

	struct mutex lock;		/* see above */
	struct xarray pt;		/* pfn -> page (| UFFDX_PT_WRITE) */
	struct list_head holds;		/* struct uffdx_hold.node */
	struct list_head events;	/* struct uffdx_hold.node, as events */
	unsigned int nr_events;
	bool dying;			/* the file is being released */
	wait_queue_head_t wqh;		/* read() and poll() */

	unsigned long pool_pages;	/* device memory bound */
	struct uffdx_dev_stats stats;	/* counters, under @lock */

	/*
	 * Device-private memory (hmm.c): chunks of ZONE_DEVICE pages, each
	 * backed by a system page that holds its data (zone_device_data).
	 * @free_pages and @nr_chunks under @mem_lock (a spinlock).
	 */
	spinlock_t mem_lock;
	struct page *free_pages;	/* linked by zone_device_data */
	atomic_long_t private_used;	/* device-private pages in use */
	struct uffdx_dev_chunk **chunks;
	unsigned int nr_chunks;
	struct mutex chunk_lock;	/* adding chunks */
};

/*
 * struct uffdx_hold - a region slot held by a device, in @region->held
 * (index -> hold) and on the device's @holds.  Taken and dropped under the
 * slot's page lock; whoever erases it from @region->held owns it, then
 * unlinks it under the device's lock.  A hold that ends by a CPU access
 * becomes that access's event (@event), so a fault never allocates.
 */
struct uffdx_hold {
	struct list_head node;
	struct uffdx_device *dev;
	struct uffdx_region *region;	/* referenced */
	pgoff_t index;
	unsigned long addr;		/* in the mirrored mm */
	enum uffdx_hold_kind kind;
	struct uffdx_dev_event event;
	struct rcu_head rcu;		/* lookups without the page lock */
};

/* The state of one command: where it is and what it did. */
struct uffdx_dev_op {
	struct uffdx_device *dev;
	struct mm_struct *mm;
	unsigned int nr;
	unsigned long addr;		/* the current page */
	void *bounce;			/* one page, READ and WRITE */
	u8 status;			/* MIGRATE: this page done */
	u64 cpages;
	u64 faults;
};

/* device.c: the device and its mirror */
void uffdx_device_put(struct uffdx_device *dev);
int uffdx_dev_fault(struct uffdx_device *dev, unsigned long start,
		    unsigned long end, bool write);

/* hold.c: region slots a device holds, and the events that end them */
bool uffdx_dev_queue_event(struct uffdx_device *dev, struct uffdx_hold *hold,
			   u16 type, u32 flags);
void uffdx_hold_free(struct uffdx_hold *hold);
void uffdx_hold_end(struct uffdx_hold *hold, u16 type, u32 flags);
struct uffdx_region *uffdx_dev_region_at(struct mm_struct *mm,
					 unsigned long addr, pgoff_t *index,
					 bool *writable);
int uffdx_dev_held_access(struct uffdx_dev_op *op, bool write,
			  int (*fn)(struct uffdx_dev_op *op,
				    struct uffdx_region *region,
				    pgoff_t index, struct page *page,
				    void *arg),
			  void *arg);
int uffdx_dev_copy_held(struct uffdx_dev_op *op, struct uffdx_region *region,
			pgoff_t index, struct page *page, void *arg);
int uffdx_dev_exclusive_page(struct uffdx_dev_op *op,
			     int (*fn)(struct uffdx_dev_op *op,
				       struct uffdx_region *region,
				       pgoff_t index, struct page *page,
				       void *arg),
			     void *arg);
int uffdx_dev_atomic_fn(struct uffdx_dev_op *op, struct uffdx_region *region,
			pgoff_t index, struct page *page, void *arg);
int uffdx_dev_migrate_page(struct uffdx_dev_op *op, void *arg);
int uffdx_dev_unmigrate_page(struct uffdx_dev_op *op);
int uffdx_dev_check_page(struct uffdx_dev_op *op, bool release);

/* hmm.c: process memory */
int uffdx_hmm_exclusive(struct uffdx_dev_op *op, unsigned long end);
int uffdx_hmm_migrate(struct uffdx_dev_op *op, unsigned long end,
		      bool to_dev, u8 *status);
bool uffdx_hmm_is_ours(struct uffdx_device *dev, struct page *page);
struct page *uffdx_hmm_backing(struct page *page);
void uffdx_hmm_release(struct uffdx_device *dev);

#endif /* UFFDX_DEVICE_H */
