// SPDX-License-Identifier: GPL-2.0
/*
 * uffdx accounting: what a context and a user may hold.
 *
 * Region memory is off the LRU and unswappable, and once unmapped it is in
 * no process's RSS, so the OOM killer cannot find its holder.  It is
 * therefore bounded here, per context and per user (the euid that opened
 * /dev/uffdx), in charge units (uffdx.h): store pages, page-less entries
 * and arming bitmaps.  Pages are also charged to the creator's memory
 * cgroup (store.c).  The holders are visible in /proc/pid/fdinfo of the
 * context and region fds (ctx.c, region.c), which uffdx-info lists.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/cred.h>
#include <linux/hashtable.h>
#include <linux/module.h>
#include <linux/slab.h>

#include "uffdx.h"

unsigned long uffdx_max_pages_per_context;
module_param_named(max_pages_per_context, uffdx_max_pages_per_context, ulong,
		   0644);
MODULE_PARM_DESC(max_pages_per_context,
		 "Most pages a context and its regions may hold, bitmaps and poison entries included; read when a context is opened (default: a quarter of RAM)");

static unsigned long uffdx_max_pages_per_user;
module_param_named(max_pages_per_user, uffdx_max_pages_per_user, ulong, 0644);
MODULE_PARM_DESC(max_pages_per_user,
		 "Most pages all contexts opened by one user may hold together (default: a quarter of RAM)");

static unsigned int uffdx_max_contexts_per_user = 1024;
module_param_named(max_contexts_per_user, uffdx_max_contexts_per_user, uint,
		   0644);
MODULE_PARM_DESC(max_contexts_per_user,
		 "Most contexts one user may have; open() beyond fails with EMFILE (default: 1024)");

static unsigned int uffdx_max_regions_per_user = 8192;
module_param_named(max_regions_per_user, uffdx_max_regions_per_user, uint,
		   0644);
MODULE_PARM_DESC(max_regions_per_user,
		 "Most regions one user's contexts may have alive; creation beyond fails with ENOSPC (default: 8192)");

/* Users with contexts, by uid; changes under uffdx_users_lock. */
static DEFINE_HASHTABLE(uffdx_users, 6);
static DEFINE_SPINLOCK(uffdx_users_lock);

int uffdx_account_init(void)
{
	unsigned long quarter = totalram_pages() / 4;

	if (!uffdx_max_pages_per_context)
		uffdx_max_pages_per_context = quarter;
	if (!uffdx_max_pages_per_user)
		uffdx_max_pages_per_user = quarter;
	return 0;
}

/* The accounting entry of @uid, created on first use. */
struct uffdx_user *uffdx_user_get(kuid_t uid)
{
	u32 key = __kuid_val(uid);
	struct uffdx_user *user, *new;

	new = kzalloc(sizeof(*new), GFP_KERNEL_ACCOUNT);
	if (!new)
		return NULL;

	spin_lock(&uffdx_users_lock);
	hash_for_each_possible(uffdx_users, user, node, key) {
		if (uid_eq(user->uid, uid)) {
			refcount_inc(&user->ref);
			spin_unlock(&uffdx_users_lock);
			kfree(new);
			return user;
		}
	}
	refcount_set(&new->ref, 1);
	new->uid = uid;
	atomic_long_set(&new->charged, 0);
	atomic_set(&new->nr_contexts, 0);
	atomic_set(&new->nr_regions, 0);
	hash_add(uffdx_users, &new->node, key);
	spin_unlock(&uffdx_users_lock);
	return new;
}

void uffdx_user_put(struct uffdx_user *user)
{
	bool last;

	/* Contexts open and close rarely: no need for dec_and_lock. */
	spin_lock(&uffdx_users_lock);
	last = refcount_dec_and_test(&user->ref);
	if (last)
		hash_del(&user->node);
	spin_unlock(&uffdx_users_lock);
	if (last) {
		WARN_ON_ONCE(atomic_long_read(&user->charged));
		kfree(user);
	}
}

/* Count one more of something against @limit; false if over it. */
static bool uffdx_count_inc(atomic_t *count, unsigned int limit)
{
	if (atomic_inc_return(count) > limit) {
		atomic_dec(count);
		return false;
	}
	return true;
}

/* A new context of ctx->user: -EMFILE past max_contexts_per_user. */
int uffdx_account_ctx(struct uffdx_ctx *ctx)
{
	ctx->max_units = READ_ONCE(uffdx_max_pages_per_context) *
			 UFFDX_PAGE_UNITS;
	if (!uffdx_count_inc(&ctx->user->nr_contexts,
			     READ_ONCE(uffdx_max_contexts_per_user)))
		return -EMFILE;
	return 0;
}

void uffdx_unaccount_ctx(struct uffdx_ctx *ctx)
{
	atomic_dec(&ctx->user->nr_contexts);
}

/* A new region of @ctx: -ENOSPC past max_regions_per_user. */
int uffdx_account_region(struct uffdx_ctx *ctx)
{
	if (!uffdx_count_inc(&ctx->user->nr_regions,
			     READ_ONCE(uffdx_max_regions_per_user)))
		return -ENOSPC;
	atomic_inc(&ctx->nr_regions);
	return 0;
}

void uffdx_unaccount_region(struct uffdx_ctx *ctx)
{
	atomic_dec(&ctx->nr_regions);
	atomic_dec(&ctx->user->nr_regions);
}

static bool uffdx_charge_one(atomic_long_t *charged, unsigned long units,
			     unsigned long limit)
{
	if (atomic_long_add_return(units, charged) > limit) {
		atomic_long_sub(units, charged);
		return false;
	}
	return true;
}

static bool uffdx_try_charge(struct uffdx_ctx *ctx, unsigned long units)
{
	unsigned long user_max = READ_ONCE(uffdx_max_pages_per_user);

	if (!uffdx_charge_one(&ctx->charged, units, ctx->max_units))
		return false;
	if (!uffdx_charge_one(&ctx->user->charged, units,
			      user_max * UFFDX_PAGE_UNITS)) {
		atomic_long_sub(units, &ctx->charged);
		return false;
	}
	return true;
}

/*
 * Charge @units to @ctx and its user, or -ENOMEM.  Before failing, free
 * the pages in limbo that nothing references any more: they are what a
 * pin or a pipe released since.
 */
int uffdx_charge(struct uffdx_ctx *ctx, unsigned long units)
{
	if (uffdx_try_charge(ctx, units))
		return 0;
	if (READ_ONCE(ctx->nr_limbo)) {
		uffdx_limbo_reap(ctx, false);
		if (uffdx_try_charge(ctx, units))
			return 0;
	}
	return -ENOMEM;
}

/*
 * Charge @units whatever the budget: for a charge that passes from one
 * page to another (device.c, a slot's page replaced by a copy of it).
 */
void uffdx_charge_force(struct uffdx_ctx *ctx, unsigned long units)
{
	atomic_long_add(units, &ctx->charged);
	atomic_long_add(units, &ctx->user->charged);
}

void uffdx_uncharge(struct uffdx_ctx *ctx, unsigned long units)
{
	atomic_long_sub(units, &ctx->charged);
	atomic_long_sub(units, &ctx->user->charged);
}

/*
 * A move takes @units of charge from @from to @to: @to is charged first,
 * or -ENOMEM.  Two contexts of one user only trade the context charge:
 * the user's total does not change, so a move never needs room in the
 * user's budget.  Settle with uffdx_transfer_done().
 */
int uffdx_transfer_charge(struct uffdx_ctx *to, struct uffdx_ctx *from,
			  unsigned long units)
{
	if (to->user != from->user)
		return uffdx_charge(to, units);
	if (uffdx_charge_one(&to->charged, units, to->max_units))
		return 0;
	if (READ_ONCE(to->nr_limbo)) {
		uffdx_limbo_reap(to, false);
		if (uffdx_charge_one(&to->charged, units, to->max_units))
			return 0;
	}
	return -ENOMEM;
}

/* @moved of the @units uffdx_transfer_charge() took did move: settle. */
void uffdx_transfer_done(struct uffdx_ctx *to, struct uffdx_ctx *from,
			 unsigned long units, unsigned long moved)
{
	if (to->user != from->user) {
		uffdx_uncharge(from, moved);
		uffdx_uncharge(to, units - moved);
		return;
	}
	atomic_long_sub(moved, &from->charged);
	atomic_long_sub(units - moved, &to->charged);
}
