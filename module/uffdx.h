/* SPDX-License-Identifier: GPL-2.0 */
/*
 * uffdx internals shared by the module's files.  See docs/design.md for the
 * model; the locking rules are spelled out next to each structure.
 */
#ifndef UFFDX_INTERNAL_H
#define UFFDX_INTERNAL_H

#include <linux/fs.h>
#include <linux/kref.h>
#include <linux/list.h>
#include <linux/mm.h>
#include <linux/mutex.h>
#include <linux/refcount.h>
#include <linux/spinlock.h>
#include <linux/uidgid.h>
#include <linux/wait.h>
#include <linux/xarray.h>
#include <linux/uffdx.h>

#include "compat.h"

/* Regions are at most 1 TiB: bounds the arming bitmap (32 MiB). */
#define UFFDX_REGION_MAX_BYTES	BIT_ULL(40)

/* uffdx_ctx.api_state */
enum {
	UFFDX_API_NEW,		/* UFFDX_IOC_API not done yet */
	UFFDX_API_BUSY,		/* a negotiation is in progress */
	UFFDX_API_READY,	/* negotiated: features are valid */
};

/*
 * Budgets (account.c) count memory in charge units of 512 bytes: a page of
 * the store is UFFDX_PAGE_UNITS, a page-less store entry (poison) one unit,
 * an arming bitmap its size rounded up to pages.
 */
#define UFFDX_CHARGE_SHIFT	9
#define UFFDX_PAGE_UNITS	(PAGE_SIZE >> UFFDX_CHARGE_SHIFT)
#define UFFDX_VALUE_UNITS	1UL

/*
 * struct uffdx_user - what one user (the euid that opened /dev/uffdx) holds
 * across all its contexts, against the max_*_per_user module parameters.
 *
 * Lifetime: @ref is held by each context the user opened; the entry sits in
 * account.c's table under its lock while @ref is non-zero.  The counters
 * are atomics, changed without the table lock.
 */
struct uffdx_user {
	struct hlist_node node;
	refcount_t ref;
	kuid_t uid;
	atomic_long_t charged;		/* charge units */
	atomic_t nr_contexts;		/* contexts not yet freed */
	atomic_t nr_regions;		/* regions not yet freed */
};

/*
 * struct uffdx_ctx - one open() of /dev/uffdx: a fault handler's context.
 *
 * Lifetime: @kref is held by the context file and by every region the
 * context created, so regions outlive the file.  Closing the file
 * "releases" the context (@released): its sleeping faults are woken and
 * its armed holes raise SIGBUS from then on.
 *
 * @fault_lock protects @fault_pending, @fault_delivered, @released and the
 * waiters on those lists.  It is never held across a sleep or a user copy.
 */
struct uffdx_ctx {
	struct kref kref;
	atomic_t api_state;
	u64 features;			/* negotiated; valid once READY */
	u64 ioctls;			/* allowed by @features; valid once READY */

	struct xarray regions;		/* region id -> region (weak ref) */
	u32 next_region_id;		/* xa_alloc_cyclic(): never reused */
	atomic_t nr_regions;

	spinlock_t fault_lock;		/* see above */
	struct list_head fault_pending;	/* events not yet read */
	struct list_head fault_delivered; /* read, not yet resolved */
	wait_queue_head_t read_wqh;	/* read() and poll() */
	u64 event_seq;			/* under fault_lock */
	bool released;

	/*
	 * Memory accounting for this context and its regions (account.c):
	 * @charged against @max_units and against @user's budget.  @limbo
	 * holds pages that left the store while something else (a pin, a
	 * pipe) still had a reference: they stay charged until reaped.
	 */
	atomic_long_t charged;		/* charge units */
	unsigned long max_units;
	struct uffdx_user *user;
	struct mem_cgroup *memcg;	/* charged: the creator's memcg */
	spinlock_t limbo_lock;
	struct list_head limbo;		/* pages, by page->lru */
	unsigned long nr_limbo;		/* under @limbo_lock */

	struct pid_namespace *pidns;	/* event pids are in this namespace */
};

/*
 * Page store entries that are not pages: xarray value entries, so that a
 * slot can carry state without a page (holes with markers).  The slot
 * states and who may change them: store.c and docs/design.md section 3.
 */
#define UFFDX_SLOT_POISON	1UL
#define UFFDX_POISON_ENTRY	xa_mk_value(UFFDX_SLOT_POISON)

/*
 * Flag bits beside each slot, one bitmap per flag, allocated on first use
 * (uffdx_slot_flags_get()); a missing bitmap is all zeroes.  They are the
 * part of a slot's state that is not in its entry, so that they hold on
 * holes too; store.c and docs/design.md section 3.
 *  ARMED:   a hole here raises a missing event (ARM, DISARM; @lock).
 *  WP:      writes are caught (wp.c; @wp_lock).
 *  WRITTEN: written since last protected, WP_ASYNC regions (@wp_lock).
 */
enum uffdx_slot_flag {
	UFFDX_SF_ARMED,
	UFFDX_SF_WP,
	UFFDX_SF_WRITTEN,
	UFFDX_SF_NR,
};

/* What a fill installs in a hole. */
enum uffdx_fill_kind {
	UFFDX_FILL_COPY,	/* a page copied from user memory */
	UFFDX_FILL_ZERO,	/* a zeroed page */
	UFFDX_FILL_POISON,	/* poison: access raises SIGBUS */
};

/*
 * struct uffdx_region - module-owned memory, mapped through its own file.
 *
 * @pages is the page store: page offset -> struct page * (the store holds
 * one reference) or a value entry (UFFDX_SLOT_*).
 *
 * Locking (outermost first): mmap_lock (faults, MOVE_ADDR, MOVE_VEC) ->
 * @lock -> page lock -> @wp_lock -> xa_lock(@pages) -> i_mmap_rwsem ->
 * page-table lock.
 *  - @lock serialises removal of entries from the store (discard, move),
 *    the allocation of @flags bitmaps and changes to ARMED.  Moves
 *    between two regions take both @lock in ascending address order
 *    (move.c).
 *  - @wp_lock (a spinlock, never held across a sleep) makes the changes
 *    of a slot's WP and WRITTEN bits atomic with each other: page_mkwrite
 *    takes it under the page lock, SCAN once per batch.
 *  - A page is mapped only while holding its page lock and after
 *    re-checking that the slot still holds it; removal takes the page lock
 *    after clearing the slot and before zapping (discard), or zaps while
 *    holding it before clearing the slot (move), so no mapping survives a
 *    removal.
 *  - Fills only turn holes into entries, with xa_cmpxchg().
 *
 * Lifetime: @kref is held by every file of the region (the one
 * REGION_CREATE returned, and reopens through /proc/pid/fd) and,
 * temporarily, by ioctls that looked the region up by id; a sleeping fault
 * holds a file itself (which also pins the module).  The region holds a
 * reference on its inode (the address_space every mapping of it uses; its
 * i_private points back here until the region is freed), on the pseudo
 * filesystem's mount (main.c), and on its owning context.  It enters its
 * context's id table only once complete.
 */
struct uffdx_region {
	struct kref kref;
	u64 id;
	struct uffdx_ctx *ctx;
	struct inode *inode;
	u64 len;
	pgoff_t npages;

	struct xarray pages;
	struct mutex lock;		/* see above */
	unsigned long *flags[UFFDX_SF_NR];	/* slot flags, or NULL */
	u32 wp_mode;			/* 0 or UFFDX_REGION_CREATE_WP(_ASYNC) */
	spinlock_t wp_lock;		/* WP and WRITTEN bit changes */
	atomic_long_t resident;		/* pages in the store */
	atomic_long_t values;		/* page-less entries (poison) */
	/*
	 * Slots a device holds (device.c): index -> struct uffdx_hold.
	 * Changed under the slot's page lock (and @lock where the entry
	 * changes too); such a slot is never mapped by a CPU.
	 */
	struct xarray held;
	struct rcu_head rcu;		/* lookups by id run under RCU */
};

/* How a device holds a region slot (device.c, docs/design.md section 7). */
enum uffdx_hold_kind {
	UFFDX_HOLD_EXCLUSIVE,	/* the page, with every CPU mapping gone */
	UFFDX_HOLD_RESIDENT,	/* a device page: the data is in the device */
};

struct uffdx_hold;

/*
 * struct uffdx_fault_waiter - a thread asleep in a missing fault.  Lives on
 * the faulting thread's stack; queued on its context under fault_lock.
 */
struct uffdx_fault_waiter {
	struct list_head node;
	struct task_struct *task;
	struct mm_struct *mm;		/* the faulting mm (GUP: not ours) */
	struct uffdx_region *region;
	pgoff_t index;
	bool wp;			/* a write to a protected page */
	u64 seq;
	struct uffdx_event event;
};

extern const struct file_operations uffdx_ctx_fops;

/* main.c: the region pseudo filesystem */
struct vfsmount *uffdx_fs_pin(void);
void uffdx_fs_unpin(void);

/* account.c */
extern unsigned long uffdx_max_pages_per_context;
int uffdx_account_init(void);
struct uffdx_user *uffdx_user_get(kuid_t uid);
void uffdx_user_put(struct uffdx_user *user);
int uffdx_account_ctx(struct uffdx_ctx *ctx);
void uffdx_unaccount_ctx(struct uffdx_ctx *ctx);
int uffdx_account_region(struct uffdx_ctx *ctx);
void uffdx_unaccount_region(struct uffdx_ctx *ctx);
int uffdx_charge(struct uffdx_ctx *ctx, unsigned long units);
void uffdx_uncharge(struct uffdx_ctx *ctx, unsigned long units);
void uffdx_charge_force(struct uffdx_ctx *ctx, unsigned long units);
int uffdx_transfer_charge(struct uffdx_ctx *to, struct uffdx_ctx *from,
			  unsigned long units);
void uffdx_transfer_done(struct uffdx_ctx *to, struct uffdx_ctx *from,
			 unsigned long units, unsigned long moved);

/* ctx.c */
void uffdx_ctx_put(struct uffdx_ctx *ctx);
bool uffdx_ctx_ready(struct uffdx_ctx *ctx);
bool uffdx_ctx_released(struct uffdx_ctx *ctx);
u64 uffdx_supported_features(void);

/* argument checking and user copies of the size-extensible structs (ctx.c) */
int uffdx_copy_in(void *karg, size_t min_size, size_t ksize,
		  void __user *uarg, u32 *usize);
int uffdx_copy_out(void __user *uarg, u32 usize, const void *karg,
		   size_t ksize);
bool uffdx_ioctl_cmd_ok(unsigned int cmd, unsigned int nr);

/* the event queue (ctx.c) */
bool uffdx_events_pending(struct uffdx_ctx *ctx);
int uffdx_read_event(struct uffdx_ctx *ctx, struct uffdx_event *ev, u64 *seq);
void uffdx_unread_event(struct uffdx_ctx *ctx, u64 seq);

/* store.c: the page store of a region */
struct page *uffdx_alloc_page(struct uffdx_ctx *ctx, bool zero);
struct page *uffdx_alloc_page_uncharged(struct uffdx_ctx *ctx, bool zero);
void uffdx_free_page(struct uffdx_ctx *ctx, struct page *page);
void uffdx_limbo_reap(struct uffdx_ctx *ctx, bool all);
void *uffdx_store_get(struct uffdx_region *region, pgoff_t index);
struct page *uffdx_store_lock(struct uffdx_region *region, pgoff_t index,
			      bool wait, void **entryp);
int uffdx_store_publish(struct uffdx_region *region, pgoff_t index,
			void *entry);
void uffdx_store_unpublish(struct uffdx_region *region, void *entry);
int uffdx_store_fault_zero(struct uffdx_region *region, pgoff_t index,
			   struct page **pagep);
int uffdx_store_fill(struct uffdx_region *region, enum uffdx_fill_kind kind,
		     pgoff_t start, pgoff_t end, u64 src, pgoff_t *done);
int uffdx_store_discard(struct uffdx_region *region, pgoff_t start,
			pgoff_t end, pgoff_t *done);
void uffdx_store_destroy(struct uffdx_region *region);
int uffdx_store_set_armed(struct uffdx_region *region, pgoff_t start,
			  pgoff_t end, bool arm);
bool uffdx_slot_test(struct uffdx_region *region, enum uffdx_slot_flag f,
		     pgoff_t index);
unsigned long *uffdx_slot_flags(struct uffdx_region *region,
				enum uffdx_slot_flag f);
int uffdx_slot_flags_get(struct uffdx_region *region, enum uffdx_slot_flag f);
void uffdx_slot_clear(struct uffdx_region *region, enum uffdx_slot_flag f,
		      pgoff_t start, pgoff_t end);

static inline bool uffdx_region_armed(struct uffdx_region *region,
				      pgoff_t index)
{
	return uffdx_slot_test(region, UFFDX_SF_ARMED, index);
}

/* region.c */
int uffdx_region_create(struct uffdx_ctx *ctx, struct uffdx_region_create *rc,
			void __user *uarg, u32 usize);
struct uffdx_region *uffdx_region_lookup(struct uffdx_ctx *ctx, u64 id);
struct uffdx_region *uffdx_region_get_fd(int fd);
void uffdx_region_put(struct uffdx_region *region);
int uffdx_range_apply(struct uffdx_ctx *ctx, unsigned int nr,
		      struct uffdx_range *r, bool *report);
long uffdx_region_range_op(struct uffdx_ctx *ctx, unsigned int nr,
			   struct uffdx_range *r, void __user *uarg);

/* move.c */
long uffdx_move_ioctl(struct uffdx_ctx *ctx, unsigned int nr, void *karg,
		      void __user *uarg);
int uffdx_move_into(struct uffdx_ctx *ctx, u64 region_id, u64 offset,
		    u64 src, u64 len, u32 mode, s64 *result);

/* wp.c */
vm_fault_t uffdx_wp_page_mkwrite(struct vm_fault *vmf);
int uffdx_wp_apply(struct uffdx_region *region, pgoff_t start, pgoff_t end,
		   u32 mode, pgoff_t *done);
long uffdx_wp_ioctl(struct uffdx_ctx *ctx, unsigned int nr, void *karg,
		    void __user *uarg);
bool uffdx_wp_must_wait(struct uffdx_region *region, pgoff_t index);
void uffdx_wp_filled(struct uffdx_region *region, pgoff_t index);
int uffdx_wp_move_prepare(struct uffdx_region *dst, struct uffdx_region *src);
int uffdx_wp_move_check(struct uffdx_region *dst, pgoff_t d,
			struct uffdx_region *src, pgoff_t s);
void uffdx_wp_move(struct uffdx_region *dst, pgoff_t d,
		   struct uffdx_region *src, pgoff_t s);

/* device.c */
int uffdx_device_create(struct uffdx_ctx *ctx, struct uffdx_device_create *dc,
			void __user *uarg, u32 usize);
struct uffdx_hold *uffdx_slot_hold(struct uffdx_region *region, pgoff_t index);
struct page *uffdx_dev_cpu_access(struct uffdx_region *region, pgoff_t index,
				  struct page *page, u32 flags);
void uffdx_dev_discard(struct uffdx_region *region, pgoff_t start,
		       pgoff_t end);
int uffdx_wp_device_write(struct uffdx_region *region, pgoff_t index);

/* resolve.c */
long uffdx_resolve(struct uffdx_ctx *ctx, struct file *file,
		   struct uffdx_resolve *rs, void __user *uarg);

/* fault.c */
extern const struct vm_operations_struct uffdx_vm_ops;
extern const struct vm_operations_struct uffdx_wp_vm_ops;
void uffdx_wake_range(struct uffdx_ctx *ctx, struct uffdx_region *region,
		      pgoff_t start, pgoff_t end);
void uffdx_wake_wp_range(struct uffdx_region *region, pgoff_t start,
			 pgoff_t end);
void uffdx_release_waiters(struct uffdx_ctx *ctx);
void uffdx_map_and_wake(struct uffdx_ctx *ctx, struct uffdx_region *region,
			pgoff_t start, pgoff_t end);

/* A mapping of a region file (either kind of vm_operations). */
static inline bool uffdx_is_region_vma(const struct vm_area_struct *vma)
{
	return vma->vm_ops == &uffdx_vm_ops || vma->vm_ops == &uffdx_wp_vm_ops;
}

#endif /* UFFDX_INTERNAL_H */
