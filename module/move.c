// SPDX-License-Identifier: GPL-2.0
/*
 * uffdx moves: pages change slots, within a region, between regions and
 * between processes, and their contents are never copied.
 *
 * Three front ends (MOVE by region id or fd, MOVE_ADDR and MOVE_VEC by
 * address in the caller's mappings) turn their arguments into move
 * operations (struct uffdx_move_op); one engine runs them in groups of at
 * most UFFDX_MOVE_BATCH slots that share a source and a destination
 * region, and a group is one step:
 *
 *  1. lock both regions (removal is excluded), then, slot by slot, check
 *     the destination is a hole and lock the source page;
 *  2. charge the destination context, if it is another one, op by op;
 *  3. zap the source slots once, for the whole group: with the pages
 *     locked no fault can map them again, so from here on no new pin can
 *     be taken through a PTE and the pin test is exact;
 *  4. stop at the first pinned page (-EBUSY);
 *  5. publish each entry in its destination hole, then clear its source
 *     slot (the entry is in exactly one slot at every instant but for the
 *     one between the two, when both hold it and the region locks keep
 *     every other remover out);
 *  6. map the moved pages for the caller (MOVE_ADDR, MOVE_VEC), still
 *     under their page locks, then unlock them.
 *
 * A source entry carries the slot's entry state (the page, or poison) and
 * is moved as it is; its write-protect bits go with it (wp.c).  Waiters on the destination
 * are woken after the locks are dropped.  docs/design.md section 5.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/bitmap.h>
#include <linux/file.h>
#include <linux/mm.h>
#include <linux/overflow.h>
#include <linux/pagemap.h>
#include <linux/sched/signal.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

#include "uffdx.h"

/* Slots of one group: one zap, one 2 MiB unit. */
#define UFFDX_MOVE_BATCH	512
/* Vector entries handled per pass (copied in, run, results copied out). */
#define UFFDX_MOVE_CHUNK	64
/* Pages given to one vm_insert_pages() call. */
#define UFFDX_MOVE_MAP		16
/*
 * Most source slots one group's zap may span: the pieces of a vector need
 * not be adjacent, and the gaps between them are zapped too (harmless:
 * those pages fault back in), but never more than this.
 */
#define UFFDX_MOVE_SPAN		(4 * UFFDX_MOVE_BATCH)

#define UFFDX_MOVE_MODES	(UFFDX_MOVE_DONTWAKE | UFFDX_MOVE_ALLOW_SRC_HOLES)

/*
 * One move: @nr slots from @src_start of @src to @dst_start of @dst (both
 * referenced).  @dst_vma, if set, is the caller's mapping of the
 * destination (mmap_lock held), @dst_addr the address of @dst_start in it.
 * The engine advances @done and sets @err when it stops short.
 */
struct uffdx_move_op {
	struct uffdx_region *dst, *src;
	pgoff_t dst_start, src_start, nr;
	struct vm_area_struct *dst_vma;
	unsigned long dst_addr;
	pgoff_t done;
	int err;
};

/* The part of an op that one group handles. */
struct uffdx_move_piece {
	struct uffdx_move_op *op;
	pgoff_t first;		/* slot of the op where the piece starts */
	pgoff_t nr;		/* slots asked */
	pgoff_t locked;		/* slots checked (source pages locked) */
	pgoff_t moved;		/* slots moved */
	unsigned long units;	/* charge of the locked entries */
	unsigned long moved_units; /* charge of the moved entries */
	unsigned int base;	/* index of the piece's first slot in the group */
	bool charged;		/* the destination took @units */
	int err;
};

struct uffdx_move_group {
	struct uffdx_region *src, *dst;
	u32 mode;
	unsigned int nr_pieces, max_pieces, nr_slots;
	pgoff_t span_lo, span_hi;	/* source slots the pieces cover */
	struct uffdx_move_piece *pieces;
	DECLARE_BITMAP(holes, UFFDX_MOVE_BATCH);	/* source holes, by slot */
};

/* Both region locks, in address order; killable (a DISCARD may be long). */
static int uffdx_move_lock(struct uffdx_region *a, struct uffdx_region *b)
{
	if (a == b)
		return mutex_lock_killable(&a->lock);
	if (a > b)
		swap(a, b);
	if (mutex_lock_killable(&a->lock))
		return -EINTR;
	if (mutex_lock_killable_nested(&b->lock, SINGLE_DEPTH_NESTING)) {
		mutex_unlock(&a->lock);
		return -EINTR;
	}
	return 0;
}

static void uffdx_move_unlock(struct uffdx_region *a, struct uffdx_region *b)
{
	if (a != b)
		mutex_unlock(&b->lock);
	mutex_unlock(&a->lock);
}

static bool uffdx_ranges_overlap(pgoff_t a, pgoff_t an, pgoff_t b, pgoff_t bn)
{
	return a < b + bn && b < a + an;
}

/*
 * May a piece of @op over [@first, @first + @nr) join the group?  Its
 * slots must be disjoint from every slot the group already touches, so
 * that the group's pieces do not depend on each other's order (and no
 * source page is locked twice), and the group's source span must stay
 * within UFFDX_MOVE_SPAN.
 */
static bool uffdx_piece_fits(struct uffdx_move_group *g,
			     struct uffdx_move_op *op, pgoff_t first,
			     pgoff_t nr)
{
	pgoff_t s = op->src_start + first, d = op->dst_start + first;
	bool same = g->src == g->dst;
	unsigned int i;

	if (g->nr_pieces &&
	    max(g->span_hi, s + nr) - min(g->span_lo, s) > UFFDX_MOVE_SPAN)
		return false;
	for (i = 0; i < g->nr_pieces; i++) {
		struct uffdx_move_piece *p = &g->pieces[i];
		pgoff_t ps = p->op->src_start + p->first;
		pgoff_t pd = p->op->dst_start + p->first;

		if (uffdx_ranges_overlap(s, nr, ps, p->nr) ||
		    uffdx_ranges_overlap(d, nr, pd, p->nr))
			return false;
		if (same && (uffdx_ranges_overlap(s, nr, pd, p->nr) ||
			     uffdx_ranges_overlap(d, nr, ps, p->nr)))
			return false;
	}
	return true;
}

/*
 * Step 1 for one piece: check each destination slot is a hole and lock
 * each source page, stopping at the first slot that cannot move.  A page
 * pinned already stops it here, before it costs a charge and a zap; step
 * 4 catches a pin taken since.
 */
static void uffdx_piece_collect(struct uffdx_move_group *g,
				struct uffdx_move_piece *p)
{
	struct uffdx_move_op *op = p->op;
	pgoff_t i;

	lockdep_assert_held(&g->src->lock);
	lockdep_assert_held(&g->dst->lock);
	for (i = 0; i < p->nr; i++) {
		pgoff_t s = op->src_start + p->first + i;
		pgoff_t d = op->dst_start + p->first + i;
		void *entry;

		if (xa_load(&g->dst->pages, d)) {
			p->err = -EEXIST;
			break;
		}
		entry = xa_load(&g->src->pages, s);
		/* A protected hole is populated; state needs a like region. */
		p->err = uffdx_wp_move_check(g->dst, d, g->src,
					     entry ? s : ULONG_MAX);
		if (p->err)
			break;
		if (!entry) {
			if (!(g->mode & UFFDX_MOVE_ALLOW_SRC_HOLES)) {
				p->err = -ENOENT;
				break;
			}
			__set_bit(p->base + i, g->holes);
			continue;
		}
		if (xa_is_value(entry))
			continue;
		if (uffdx_page_maybe_dma_pinned(entry)) {
			p->err = -EBUSY;
			break;
		}
		/*
		 * The region locks keep the page in its slot, but for a
		 * device-resident slot that a CPU fault brings back: either
		 * is a page a device uses, busy as a pinned one is.
		 */
		lock_page(entry);
		if (xa_load(&g->src->pages, s) != entry ||
		    uffdx_slot_hold(g->src, s)) {
			unlock_page(entry);
			p->err = -EBUSY;
			break;
		}
	}
	p->locked = i;
}

/* The source entry of slot @i of piece @p: stable but for holes. */
static void *uffdx_piece_entry(struct uffdx_move_group *g,
			       struct uffdx_move_piece *p, pgoff_t i)
{
	if (test_bit(p->base + i, g->holes))
		return NULL;
	return xa_load(&g->src->pages, p->op->src_start + p->first + i);
}

/*
 * The charge of the entries @p holds, and the source slots of its pages
 * (the range to zap) folded into [*@lo, *@hi).
 */
static void uffdx_piece_units(struct uffdx_move_group *g,
			      struct uffdx_move_piece *p, pgoff_t *lo,
			      pgoff_t *hi)
{
	pgoff_t i;

	p->units = 0;
	for (i = 0; i < p->locked; i++) {
		void *entry = uffdx_piece_entry(g, p, i);
		pgoff_t s = p->op->src_start + p->first + i;

		if (!entry)
			continue;
		if (xa_is_value(entry)) {
			p->units += UFFDX_VALUE_UNITS;
			continue;
		}
		p->units += UFFDX_PAGE_UNITS;
		*lo = min(*lo, s);
		*hi = max(*hi, s + 1);
	}
}

/* Step 4: the first page with a DMA or long-term pin stops the piece. */
static void uffdx_piece_check_pins(struct uffdx_move_group *g,
				   struct uffdx_move_piece *p, pgoff_t *limit)
{
	pgoff_t i;

	for (i = 0; i < *limit; i++) {
		void *entry = uffdx_piece_entry(g, p, i);

		if (entry && !xa_is_value(entry) &&
		    uffdx_page_maybe_dma_pinned(entry)) {
			*limit = i;
			p->err = -EBUSY;
			return;
		}
	}
}

/*
 * Step 5: publish each entry in its destination hole, then clear its
 * source slot.  A destination filled since step 1 stops the piece there.
 */
static void uffdx_piece_publish(struct uffdx_move_group *g,
				struct uffdx_move_piece *p, pgoff_t limit)
{
	struct uffdx_move_op *op = p->op;
	pgoff_t i;
	int ret;

	lockdep_assert_held(&g->src->lock);
	lockdep_assert_held(&g->dst->lock);
	p->moved_units = 0;
	for (i = 0; i < limit; i++) {
		pgoff_t s = op->src_start + p->first + i;
		pgoff_t d = op->dst_start + p->first + i;
		void *entry = uffdx_piece_entry(g, p, i);

		if (!entry)
			continue;	/* a hole, allowed: moved as a hole */
		ret = uffdx_store_publish(g->dst, d, entry);
		if (ret) {
			p->err = ret;
			break;
		}
		/*
		 * Write-protect state travels with the entry; the page is
		 * still locked, so no write fault at the destination can
		 * check it before it is there.
		 */
		uffdx_wp_move(g->dst, d, g->src, s);
		xa_erase(&g->src->pages, s);
		uffdx_store_unpublish(g->src, entry);
		p->moved_units += xa_is_value(entry) ? UFFDX_VALUE_UNITS :
				  UFFDX_PAGE_UNITS;
	}
	p->moved = i;
}

/* Map @n pages at @addr of @vma; a page that fails is skipped, not fatal. */
static void uffdx_map_run(struct vm_area_struct *vma, unsigned long addr,
			  struct page **pages, unsigned long n)
{
	unsigned long off = 0, num;

	while (off < n) {
		num = n - off;
		if (!vm_insert_pages(vma, addr + (off << PAGE_SHIFT),
				     pages + off, &num))
			return;
		/* pages[n - num] failed (-EBUSY: a PTE is there already) */
		off = n - num + 1;
	}
}

/* Slot @i of piece @p after the move: where its source entry went. */
static void *uffdx_piece_moved_entry(struct uffdx_move_group *g,
				     struct uffdx_move_piece *p, pgoff_t i)
{
	if (test_bit(p->base + i, g->holes))
		return NULL;
	return xa_load(&g->dst->pages, p->op->dst_start + p->first + i);
}

/*
 * Step 6: map the moved pages in the caller's mapping of the destination,
 * in runs for vm_insert_pages().  The pages are locked and in their new
 * slots, so this follows the mapping rule of store.c.  A PTE already there
 * or a failure only leaves the page to its fault.
 */
static void uffdx_piece_map(struct uffdx_move_group *g,
			    struct uffdx_move_piece *p)
{
	struct uffdx_move_op *op = p->op;
	struct page *pages[UFFDX_MOVE_MAP];
	unsigned long addr = 0;
	unsigned int n = 0;
	pgoff_t i;

	if (!op->dst_vma)
		return;
	for (i = 0; i <= p->moved; i++) {
		void *entry = i < p->moved ? uffdx_piece_moved_entry(g, p, i) :
			      NULL;
		bool page = entry && !xa_is_value(entry);

		if (n && (!page || n == UFFDX_MOVE_MAP)) {
			uffdx_map_run(op->dst_vma, addr, pages, n);
			n = 0;
		}
		if (!page)
			continue;
		if (!n)
			addr = op->dst_addr + ((p->first + i) << PAGE_SHIFT);
		pages[n++] = entry;
	}
}

static void uffdx_piece_unlock(struct uffdx_move_group *g,
			       struct uffdx_move_piece *p)
{
	pgoff_t i;

	lockdep_assert_held(&g->src->lock);
	for (i = 0; i < p->locked; i++) {
		pgoff_t s = p->op->src_start + p->first + i;
		void *entry;

		if (test_bit(p->base + i, g->holes))
			continue;
		/* Moved or not, the page is in exactly one of the two. */
		entry = i < p->moved ? uffdx_piece_moved_entry(g, p, i) :
			xa_load(&g->src->pages, s);
		if (entry && !xa_is_value(entry))
			unlock_page(entry);
	}
}

/* Run one group: the six steps above, for all its pieces. */
static void uffdx_move_group_run(struct uffdx_move_group *g)
{
	struct uffdx_ctx *sctx = g->src->ctx, *dctx = g->dst->ctx;
	pgoff_t lo = ULONG_MAX, hi = 0, limit;
	struct uffdx_move_piece *p;
	unsigned int i;

	if (uffdx_move_lock(g->src, g->dst)) {
		for (i = 0; i < g->nr_pieces; i++)
			g->pieces[i].err = -EINTR;
		return;
	}
	/* Bitmaps for write-protect state, before any page is locked. */
	if (uffdx_wp_move_prepare(g->dst, g->src)) {
		uffdx_move_unlock(g->src, g->dst);
		for (i = 0; i < g->nr_pieces; i++)
			g->pieces[i].err = -ENOMEM;
		return;
	}
	for (i = 0; i < g->nr_pieces; i++) {
		pgoff_t plo = ULONG_MAX, phi = 0;

		p = &g->pieces[i];
		uffdx_piece_collect(g, p);
		uffdx_piece_units(g, p, &plo, &phi);
		/* The charge moves with the entries: the destination first. */
		p->charged = true;
		if (sctx != dctx && p->units &&
		    uffdx_transfer_charge(dctx, sctx, p->units)) {
			p->charged = false;
			p->err = -ENOMEM;
			continue;
		}
		lo = min(lo, plo);
		hi = max(hi, phi);
	}

	if (hi > lo) {
		uffdx_unmap_pages(g->src->inode->i_mapping, lo, hi - lo);
		/*
		 * GUP-fast pins, then re-checks the PTE: order our pin tests
		 * after the PTEs are gone (as __folio_try_share_anon_rmap()).
		 */
		smp_mb();
	}

	for (i = 0; i < g->nr_pieces; i++) {
		p = &g->pieces[i];
		if (!p->charged)
			continue;
		limit = p->locked;
		uffdx_piece_check_pins(g, p, &limit);
		uffdx_piece_publish(g, p, limit);
		uffdx_piece_map(g, p);
	}
	for (i = 0; i < g->nr_pieces; i++)
		uffdx_piece_unlock(g, &g->pieces[i]);
	uffdx_move_unlock(g->src, g->dst);

	if (sctx == dctx)
		return;
	for (i = 0; i < g->nr_pieces; i++) {
		p = &g->pieces[i];
		if (p->charged && p->units)
			uffdx_transfer_done(dctx, sctx, p->units,
					    p->moved_units);
	}
}

static bool uffdx_op_finished(const struct uffdx_move_op *op)
{
	return op->err || op->done == op->nr;
}

/* The first slot of [@start, @end) of @region holding an entry, or @end. */
static pgoff_t uffdx_next_entry(struct uffdx_region *region, pgoff_t start,
				pgoff_t end)
{
	unsigned long index = start;

	if (xa_find(&region->pages, &index, end - 1, XA_PRESENT))
		return index;
	return end;
}

/*
 * ALLOW_SRC_HOLES: skip the slots of @op, from where it is, that are holes
 * on both sides (and not protected at the destination): they move as
 * holes, which changes nothing, so a sparse source costs a lookup per
 * entry, not per slot.  Racing fills are ordered after this move.
 */
static void uffdx_op_skip_holes(struct uffdx_move_op *op)
{
	pgoff_t s = op->src_start + op->done, d = op->dst_start + op->done;
	pgoff_t left = op->nr - op->done, n;
	unsigned long *wp;

	n = uffdx_next_entry(op->src, s, s + left) - s;
	if (n)
		n = min(n, uffdx_next_entry(op->dst, d, d + n) - d);
	wp = uffdx_slot_flags(op->dst, UFFDX_SF_WP);
	if (n && wp)
		n = min_t(pgoff_t, n, find_next_bit(wp, d + n, d) - d);
	op->done += n;
}

/*
 * Run @ops in order, grouping consecutive ones that share their regions.
 * An op stops at its first failure; the others go on.  A fatal signal
 * stops everything not yet done with -EINTR.
 */
static void uffdx_move_ops(struct uffdx_move_op *ops, unsigned int n,
			   u32 mode, struct uffdx_move_piece *pieces,
			   unsigned int max_pieces)
{
	struct uffdx_move_group g = { .mode = mode, .pieces = pieces,
				      .max_pieces = max_pieces };
	unsigned int k = 0, j, i;

	while (k < n) {
		if (uffdx_op_finished(&ops[k])) {
			k++;
			continue;
		}
		if (fatal_signal_pending(current)) {
			for (; k < n; k++)
				if (!uffdx_op_finished(&ops[k]))
					ops[k].err = -EINTR;
			break;
		}

		if (mode & UFFDX_MOVE_ALLOW_SRC_HOLES) {
			uffdx_op_skip_holes(&ops[k]);
			if (uffdx_op_finished(&ops[k]))
				continue;
		}
		g.src = ops[k].src;
		g.dst = ops[k].dst;
		g.nr_pieces = 0;
		g.nr_slots = 0;
		bitmap_zero(g.holes, UFFDX_MOVE_BATCH);
		for (j = k; j < n && g.nr_pieces < g.max_pieces &&
		     g.nr_slots < UFFDX_MOVE_BATCH; j++) {
			struct uffdx_move_op *op = &ops[j];
			pgoff_t left = op->nr - op->done, take;

			if (uffdx_op_finished(op))
				continue;
			if (op->src != g.src || op->dst != g.dst)
				break;
			take = min_t(pgoff_t, left,
				     UFFDX_MOVE_BATCH - g.nr_slots);
			if (!uffdx_piece_fits(&g, op, op->done, take))
				break;
			if (!g.nr_pieces) {
				g.span_lo = op->src_start + op->done;
				g.span_hi = g.span_lo + take;
			} else {
				g.span_lo = min(g.span_lo,
						op->src_start + op->done);
				g.span_hi = max(g.span_hi, op->src_start +
						op->done + take);
			}
			g.pieces[g.nr_pieces++] = (struct uffdx_move_piece) {
				.op = op,
				.first = op->done,
				.nr = take,
				.base = g.nr_slots,
			};
			g.nr_slots += take;
			if (take < left)
				break;
		}

		uffdx_move_group_run(&g);
		for (i = 0; i < g.nr_pieces; i++) {
			struct uffdx_move_piece *p = &g.pieces[i];

			p->op->done += p->moved;
			if (p->moved < p->nr)
				p->op->err = p->err ? p->err : -EAGAIN;
		}
		cond_resched();
	}
}

/* Wake the waiters on what each op moved, unless asked not to. */
static void uffdx_move_wake(struct uffdx_move_op *ops, unsigned int n,
			    u32 mode)
{
	unsigned int i;

	if (mode & UFFDX_MOVE_DONTWAKE)
		return;
	for (i = 0; i < n; i++)
		if (ops[i].done)
			uffdx_map_and_wake(ops[i].dst->ctx, ops[i].dst,
					   ops[i].dst_start,
					   ops[i].dst_start + ops[i].done);
}

/* The progress report of a finished op: bytes moved, or -errno. */
static s64 uffdx_op_result(const struct uffdx_move_op *op)
{
	return op->done ? (s64)op->done << PAGE_SHIFT : op->err;
}

/* The ioctl's return for a single op, as for fills: -EAGAIN if partial. */
static int uffdx_op_ret(const struct uffdx_move_op *op)
{
	if (op->done == op->nr)
		return 0;
	return op->done ? -EAGAIN : op->err;
}

static void uffdx_op_put(struct uffdx_move_op *op)
{
	if (op->dst)
		uffdx_region_put(op->dst);
	if (op->src)
		uffdx_region_put(op->src);
	op->dst = NULL;
	op->src = NULL;
}

/*
 * Check a move's range against its regions: non-empty, page aligned,
 * inside both, and not overlapping itself when both sides are one region.
 */
static int uffdx_move_check(struct uffdx_move_op *op, u64 dst_off,
			    u64 src_off, u64 len)
{
	u64 dst_end, src_end;

	if (!len || !PAGE_ALIGNED(len) || !PAGE_ALIGNED(dst_off) ||
	    !PAGE_ALIGNED(src_off) ||
	    check_add_overflow(dst_off, len, &dst_end) ||
	    check_add_overflow(src_off, len, &src_end) ||
	    dst_end > op->dst->len || src_end > op->src->len)
		return -EINVAL;
	op->dst_start = dst_off >> PAGE_SHIFT;
	op->src_start = src_off >> PAGE_SHIFT;
	op->nr = len >> PAGE_SHIFT;
	if (op->dst == op->src &&
	    uffdx_ranges_overlap(op->dst_start, op->nr, op->src_start, op->nr))
		return -EINVAL;
	return 0;
}

/* A side of UFFDX_IOC_MOVE: a region id of @ctx, or a region fd. */
static struct uffdx_region *uffdx_move_region(struct uffdx_ctx *ctx, u64 v,
					      bool is_fd)
{
	struct uffdx_region *region;

	if (is_fd)
		return v > INT_MAX ? ERR_PTR(-EBADF) : uffdx_region_get_fd(v);
	region = uffdx_region_lookup(ctx, v);
	return region ? region : ERR_PTR(-ENOENT);
}

static int uffdx_move_regions(struct uffdx_ctx *ctx, struct uffdx_move *m,
			      void __user *uarg)
{
	struct uffdx_move_piece piece;
	struct uffdx_move_op op = { };
	int ret;

	if (m->mode & ~(UFFDX_MOVE_MODES | UFFDX_MOVE_DST_FD |
			UFFDX_MOVE_SRC_FD) ||
	    memchr_inv(m->reserved, 0, sizeof(m->reserved)))
		return -EINVAL;

	op.dst = uffdx_move_region(ctx, m->dst_region,
				   m->mode & UFFDX_MOVE_DST_FD);
	if (IS_ERR(op.dst)) {
		ret = PTR_ERR(op.dst);
		op.dst = NULL;
		goto out;
	}
	op.src = uffdx_move_region(ctx, m->src_region,
				   m->mode & UFFDX_MOVE_SRC_FD);
	if (IS_ERR(op.src)) {
		ret = PTR_ERR(op.src);
		op.src = NULL;
		goto out;
	}
	ret = uffdx_move_check(&op, m->dst_offset, m->src_offset, m->len);
	if (ret)
		goto out;

	uffdx_move_ops(&op, 1, m->mode, &piece, 1);
	uffdx_move_wake(&op, 1, m->mode);
	ret = uffdx_op_ret(&op);
	if (put_user(uffdx_op_result(&op),
		     &((struct uffdx_move __user *)uarg)->result))
		ret = -EFAULT;
out:
	uffdx_op_put(&op);
	return ret;
}

/*
 * The region mapped at [@addr, @addr + @len) in the caller's mm, whose
 * mmap_lock is held: one vma of a region file open for writing (a
 * read-only holder may neither take pages out nor put them in).  Returns
 * the region, referenced, with *@vmap and the first slot in *@index.
 */
static struct uffdx_region *uffdx_move_addr_region(u64 addr, u64 len,
						   struct vm_area_struct **vmap,
						   pgoff_t *index)
{
	struct vm_area_struct *vma;
	struct uffdx_region *region;
	u64 end;

	if (check_add_overflow(addr, len, &end))
		return ERR_PTR(-EINVAL);
	vma = find_vma(current->mm, addr);
	if (!vma || vma->vm_start > addr || end > vma->vm_end ||
	    !uffdx_is_region_vma(vma))
		return ERR_PTR(-EINVAL);
	if (!(vma->vm_file->f_mode & FMODE_WRITE))
		return ERR_PTR(-EBADF);
	region = vma->vm_file->private_data;
	kref_get(&region->kref);	/* the mapping's file holds one */
	*vmap = vma;
	*index = linear_page_index(vma, addr);
	return region;
}

/* Resolve one address-form move into @op (mmap_lock held); 0 or -errno. */
static int uffdx_move_addr_op(struct uffdx_move_op *op, u64 dst, u64 src,
			      u64 len)
{
	struct vm_area_struct *dvma, *svma;
	pgoff_t dix, six;

	memset(op, 0, sizeof(*op));
	if (!len || !PAGE_ALIGNED(len) || !PAGE_ALIGNED(dst) ||
	    !PAGE_ALIGNED(src))
		return -EINVAL;
	op->dst = uffdx_move_addr_region(dst, len, &dvma, &dix);
	if (IS_ERR(op->dst)) {
		int ret = PTR_ERR(op->dst);

		op->dst = NULL;
		return ret;
	}
	op->src = uffdx_move_addr_region(src, len, &svma, &six);
	if (IS_ERR(op->src)) {
		int ret = PTR_ERR(op->src);

		op->src = NULL;
		return ret;
	}
	op->dst_vma = dvma;
	op->dst_addr = dst;
	return uffdx_move_check(op, (u64)dix << PAGE_SHIFT,
				(u64)six << PAGE_SHIFT, len);
}

static int uffdx_move_addr(struct uffdx_ctx *ctx, struct uffdx_move_addr *m,
			   void __user *uarg)
{
	struct uffdx_move_piece piece;
	struct uffdx_move_op op;
	int ret;

	if (m->mode & ~UFFDX_MOVE_MODES ||
	    memchr_inv(m->reserved, 0, sizeof(m->reserved)))
		return -EINVAL;

	if (mmap_read_lock_killable(current->mm))
		return -EINTR;
	ret = uffdx_move_addr_op(&op, m->dst, m->src, m->len);
	if (!ret)
		uffdx_move_ops(&op, 1, m->mode, &piece, 1);
	mmap_read_unlock(current->mm);
	if (ret)
		goto out;

	uffdx_move_wake(&op, 1, m->mode);
	ret = uffdx_op_ret(&op);
	if (put_user(uffdx_op_result(&op),
		     &((struct uffdx_move_addr __user *)uarg)->result))
		ret = -EFAULT;
out:
	uffdx_op_put(&op);
	return ret;
}

/*
 * A MOVE resolution of UFFDX_IOC_RESOLVE (resolve.c): the pages at @src in
 * the caller's mappings into [@offset, @offset + @len) of region
 * @region_id of @ctx, as a handler hands over pages it staged.  Returns
 * as the ioctls do, with the progress report in *@result.
 */
int uffdx_move_into(struct uffdx_ctx *ctx, u64 region_id, u64 offset,
		    u64 src, u64 len, u32 mode, s64 *result)
{
	struct uffdx_move_piece piece;
	struct vm_area_struct *svma;
	struct uffdx_move_op op = { };
	pgoff_t six;
	int ret;

	if (mode & ~UFFDX_MOVE_MODES)
		return -EINVAL;
	if (!len || !PAGE_ALIGNED(len) || !PAGE_ALIGNED(src))
		return -EINVAL;
	op.dst = uffdx_region_lookup(ctx, region_id);
	if (!op.dst)
		return -ENOENT;

	if (mmap_read_lock_killable(current->mm)) {
		ret = -EINTR;
		goto out;
	}
	op.src = uffdx_move_addr_region(src, len, &svma, &six);
	if (IS_ERR(op.src)) {
		ret = PTR_ERR(op.src);
		op.src = NULL;
	} else {
		ret = uffdx_move_check(&op, offset, (u64)six << PAGE_SHIFT,
				       len);
	}
	if (!ret)
		uffdx_move_ops(&op, 1, mode, &piece, 1);
	mmap_read_unlock(current->mm);
	if (ret)
		goto out;

	uffdx_move_wake(&op, 1, mode);
	ret = uffdx_op_ret(&op);
	*result = uffdx_op_result(&op);
out:
	uffdx_op_put(&op);
	return ret;
}

/* MOVE_VEC's working set, allocated once per call. */
struct uffdx_move_vec_work {
	struct uffdx_move_entry ents[UFFDX_MOVE_CHUNK];
	struct uffdx_move_op ops[UFFDX_MOVE_CHUNK];
	struct uffdx_move_piece pieces[UFFDX_MOVE_CHUNK];
};

/*
 * One pass of MOVE_VEC over @n entries at @uents: copy them in, resolve
 * and run them under one mmap_lock, copy the results out.  Returns the
 * number of entries that fell short, or -EFAULT.
 */
static int uffdx_move_vec_chunk(struct uffdx_move_vec_work *w,
				struct uffdx_move_entry __user *uents,
				unsigned int n, u32 mode, u64 *moved)
{
	unsigned int i, short_entries = 0;
	int ret = 0;

	if (copy_from_user(w->ents, uents, n * sizeof(w->ents[0])))
		return -EFAULT;

	if (mmap_read_lock_killable(current->mm)) {
		for (i = 0; i < n; i++) {
			memset(&w->ops[i], 0, sizeof(w->ops[i]));
			w->ops[i].err = -EINTR;
			w->ops[i].nr = 1;
		}
	} else {
		for (i = 0; i < n; i++) {
			struct uffdx_move_op *op = &w->ops[i];
			int err = uffdx_move_addr_op(op, w->ents[i].dst,
						     w->ents[i].src,
						     w->ents[i].len);

			if (err) {
				op->err = err;
				op->nr = 1;
			}
		}
		uffdx_move_ops(w->ops, n, mode, w->pieces,
			       ARRAY_SIZE(w->pieces));
		mmap_read_unlock(current->mm);
	}
	uffdx_move_wake(w->ops, n, mode);

	for (i = 0; i < n; i++) {
		struct uffdx_move_op *op = &w->ops[i];

		*moved += (u64)op->done << PAGE_SHIFT;
		if (op->done != op->nr)
			short_entries++;
		if (put_user(uffdx_op_result(op), &uents[i].result))
			ret = -EFAULT;
		uffdx_op_put(op);
	}
	return ret ? ret : short_entries;
}

static int uffdx_move_vec(struct uffdx_ctx *ctx, struct uffdx_move_vec *v,
			  void __user *uarg)
{
	struct uffdx_move_entry __user *uents = u64_to_user_ptr(v->entries);
	struct uffdx_move_vec_work *w;
	unsigned int i, n, short_entries = 0;
	u64 moved = 0;
	int ret = 0;

	if (v->mode & ~UFFDX_MOVE_MODES ||
	    memchr_inv(v->reserved, 0, sizeof(v->reserved)) ||
	    v->entry_size != sizeof(struct uffdx_move_entry) ||
	    !v->nr_entries || v->nr_entries > UFFDX_MOVE_VEC_MAX)
		return -EINVAL;

	w = kmalloc(sizeof(*w), GFP_KERNEL_ACCOUNT);
	if (!w)
		return -ENOMEM;
	for (i = 0; i < v->nr_entries; i += n) {
		n = min_t(unsigned int, v->nr_entries - i, UFFDX_MOVE_CHUNK);
		ret = uffdx_move_vec_chunk(w, uents + i, n, v->mode, &moved);
		if (ret < 0)
			break;
		short_entries += ret;
		ret = 0;
	}
	kfree(w);

	if (!ret && short_entries)
		ret = -EAGAIN;
	if (put_user(moved, &((struct uffdx_move_vec __user *)uarg)->moved))
		ret = -EFAULT;
	return ret;
}

/* The MOVE ioctls of a context, dispatched from ctx.c. */
long uffdx_move_ioctl(struct uffdx_ctx *ctx, unsigned int nr, void *karg,
		      void __user *uarg)
{
	switch (nr) {
	case _UFFDX_MOVE:
		return uffdx_move_regions(ctx, karg, uarg);
	case _UFFDX_MOVE_ADDR:
		return uffdx_move_addr(ctx, karg, uarg);
	case _UFFDX_MOVE_VEC:
		return uffdx_move_vec(ctx, karg, uarg);
	default:
		return -ENOTTY;
	}
}
