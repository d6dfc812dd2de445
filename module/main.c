// SPDX-License-Identifier: GPL-2.0
/*
 * uffdx: module entry points, /dev/uffdx and the region filesystem.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/mount.h>
#include <linux/pseudo_fs.h>
#include <linux/uaccess.h>

#include "uffdx.h"

#define UFFDX_FS_MAGIC	0x75666478	/* "ufdx" */

unsigned long uffdx_max_pages_per_context;
module_param_named(max_pages_per_context, uffdx_max_pages_per_context, ulong,
		   0644);
MODULE_PARM_DESC(max_pages_per_context,
		 "Most pages a context and its regions may hold; read when a context is opened (default: half of RAM)");

/*
 * Regions are inodes of this pseudo filesystem: each has an address_space
 * of its own, so unmap_mapping_pages() on it reaches every process's
 * mapping of the region and nothing else.
 */
struct vfsmount *uffdx_mnt;

static int uffdx_init_fs_context(struct fs_context *fc)
{
	return init_pseudo(fc, UFFDX_FS_MAGIC) ? 0 : -ENOMEM;
}

static struct file_system_type uffdx_fs_type = {
	.name = "uffdx",
	.init_fs_context = uffdx_init_fs_context,
	.kill_sb = kill_anon_super,
};

static struct miscdevice uffdx_misc = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "uffdx",
	.fops = &uffdx_ctx_fops,
	.mode = 0600,	/* udev/60-uffdx.rules grants the uffdx group */
};

/*
 * Copy a size-extensible output struct back: as much of it as the caller's
 * struct holds (an older caller gets the prefix it knows).
 */
int uffdx_copy_out(void __user *uarg, u32 usize, const void *karg,
		   size_t ksize)
{
	if (copy_to_user(uarg, karg, min_t(size_t, usize, ksize)))
		return -EFAULT;
	return 0;
}

static int __init uffdx_init(void)
{
	int ret;

	if (!uffdx_max_pages_per_context)
		uffdx_max_pages_per_context = totalram_pages() / 2;

	uffdx_mnt = kern_mount(&uffdx_fs_type);
	if (IS_ERR(uffdx_mnt))
		return PTR_ERR(uffdx_mnt);

	ret = misc_register(&uffdx_misc);
	if (ret)
		goto out_unmount;

	pr_info("version %s, features %#llx (hmm mirror: %s, device private: %s, device exclusive: %s)\n",
		UFFDX_VERSION_STR, uffdx_supported_features(),
		UFFDX_KERNEL_HMM_MIRROR ? "yes" : "no",
		UFFDX_KERNEL_DEVICE_PRIVATE ? "yes" : "no",
		UFFDX_KERNEL_DEVICE_EXCLUSIVE ? "yes" : "no");
	return 0;

out_unmount:
	kern_unmount(uffdx_mnt);
	return ret;
}

static void __exit uffdx_exit(void)
{
	misc_deregister(&uffdx_misc);
	kern_unmount(uffdx_mnt);
}

module_init(uffdx_init);
module_exit(uffdx_exit);

MODULE_DESCRIPTION("uffdx: userfault handling, page remapping and HMM-style device simulation on module-owned memory");
MODULE_AUTHOR("The uffdx developers");
MODULE_LICENSE("GPL");
MODULE_VERSION(UFFDX_VERSION_STR);
