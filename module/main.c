// SPDX-License-Identifier: GPL-2.0
/*
 * uffdx: module entry points, /dev/uffdx and the region filesystem.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/mount.h>
#include <linux/pseudo_fs.h>

#include "uffdx.h"

#define UFFDX_FS_MAGIC	0x75666478	/* "ufdx" */

/*
 * Regions are inodes of this pseudo filesystem: each has an address_space
 * of its own, so unmap_mapping_pages() on it reaches every process's
 * mapping of the region and nothing else.
 *
 * The filesystem is mounted only while regions exist (simple_pin_fs(), one
 * pin per region), and its superblock holds a reference on the module
 * (.owner; sget_fc() takes it, deactivate_locked_super() drops it after
 * ->kill_sb).  __fput() of a region file drops the file's module reference
 * before its final mntput(), which is what frees the superblock: without
 * that reference an rmmod in between would leave kill_sb and the
 * superblock list pointing into freed module memory.
 */
static struct vfsmount *uffdx_mnt;
static int uffdx_mnt_count;

static int uffdx_init_fs_context(struct fs_context *fc)
{
	return init_pseudo(fc, UFFDX_FS_MAGIC) ? 0 : -ENOMEM;
}

static struct file_system_type uffdx_fs_type = {
	.name = "uffdx",
	.owner = THIS_MODULE,
	.init_fs_context = uffdx_init_fs_context,
	.kill_sb = kill_anon_super,
};

/* Pin the filesystem for a new region; its mount, or an ERR_PTR. */
struct vfsmount *uffdx_fs_pin(void)
{
	int ret = simple_pin_fs(&uffdx_fs_type, &uffdx_mnt, &uffdx_mnt_count);

	return ret ? ERR_PTR(ret) : uffdx_mnt;
}

void uffdx_fs_unpin(void)
{
	simple_release_fs(&uffdx_mnt, &uffdx_mnt_count);
}

static struct miscdevice uffdx_misc = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "uffdx",
	.fops = &uffdx_ctx_fops,
	.mode = 0600,	/* udev/60-uffdx.rules grants the uffdx group */
};

static int __init uffdx_init(void)
{
	int ret;

	ret = uffdx_account_init();
	if (ret)
		return ret;
	ret = misc_register(&uffdx_misc);
	if (ret)
		return ret;

	pr_info("version %s, features %#llx (hmm mirror: %s, device private: %s, device exclusive: %s)\n",
		UFFDX_VERSION_STR, uffdx_supported_features(),
		UFFDX_KERNEL_HMM_MIRROR ? "yes" : "no",
		UFFDX_KERNEL_DEVICE_PRIVATE ? "yes" : "no",
		UFFDX_KERNEL_DEVICE_EXCLUSIVE ? "yes" : "no");
	return 0;
}

static void __exit uffdx_exit(void)
{
	misc_deregister(&uffdx_misc);
	/* Every region pinned the module: none is left, nor a mount. */
	WARN_ON_ONCE(uffdx_mnt_count);
}

module_init(uffdx_init);
module_exit(uffdx_exit);

MODULE_DESCRIPTION("uffdx: userfault handling, page remapping and HMM-style device simulation on module-owned memory");
MODULE_AUTHOR("The uffdx developers");
MODULE_LICENSE("GPL");
MODULE_VERSION(UFFDX_VERSION_STR);
