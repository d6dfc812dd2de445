/* SPDX-License-Identifier: MIT */
/*
 * uffdx-info: what this machine's uffdx supports.
 *
 * Prints the library, module and kernel versions, every known feature bit
 * as supported or not, and the mask of available ioctls.  Exits 1 with a
 * one-line reason if /dev/uffdx cannot be opened or negotiated.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "libuffdx.h"

static const char *const ioctl_names[] = {
	[_UFFDX_API]		= "api",
	[_UFFDX_REGION_CREATE]	= "region-create",
	[_UFFDX_ARM]		= "arm",
	[_UFFDX_DISARM]		= "disarm",
	[_UFFDX_COPY]		= "copy",
	[_UFFDX_ZERO]		= "zero",
	[_UFFDX_POISON]		= "poison",
	[_UFFDX_WAKE]		= "wake",
	[_UFFDX_DISCARD]	= "discard",
	[_UFFDX_MOVE]		= "move",
	[_UFFDX_MOVE_ADDR]	= "move-addr",
	[_UFFDX_MOVE_VEC]	= "move-vec",
	[_UFFDX_RESOLVE]	= "resolve",
	[_UFFDX_WRITEPROTECT]	= "writeprotect",
	[_UFFDX_WRITEPROTECT_ADDR] = "writeprotect-addr",
	[_UFFDX_SCAN]		= "scan",
	[_UFFDX_DEVICE_CREATE]	= "device-create",
};

static void usage(FILE *f)
{
	fprintf(f, "usage: uffdx-info [-h] [-V] [--holders]\n"
		"  Show the uffdx library, module and kernel versions and the\n"
		"  features and ioctls the module supports.\n"
		"  --holders: list the processes holding uffdx contexts and\n"
		"  regions, with what they hold (from /proc/PID/fdinfo).\n"
		"  UFFDX_DEVICE overrides the device path (" UFFDX_DEVICE_PATH ").\n");
}

/* Print one fd's uffdx-* fdinfo lines on one row; 1 if it had any. */
static int show_fdinfo(const char *pid, const char *comm, const char *fd)
{
	char path[600], line[256], row[1024] = "";
	int found = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%s/fdinfo/%s", pid, fd);
	f = fopen(path, "r");
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		char *tab;

		if (strncmp(line, "uffdx-", 6))
			continue;
		line[strcspn(line, "\n")] = 0;
		tab = strchr(line, '\t');
		if (tab)
			*tab = ' ';
		if (strlen(row) + strlen(line) + 2 < sizeof(row)) {
			strcat(row, " ");
			strcat(row, line + 6);
		}
		found = 1;
	}
	fclose(f);
	if (found)
		printf("%-7s %-16s fd %-4s%s\n", pid, comm, fd, row);
	return found;
}

/* uffdx-info --holders: every uffdx fd of every process we may inspect. */
static int holders(void)
{
	struct dirent *p, *d;
	DIR *proc, *fds;
	int n = 0;

	proc = opendir("/proc");
	if (!proc) {
		perror("uffdx-info: /proc");
		return 1;
	}
	printf("PID     COMMAND          FD   WHAT (contexts: uid, charged "
	       "pages; regions: id, resident pages)\n");
	while ((p = readdir(proc))) {
		char path[600], comm[64] = "?";
		FILE *f;

		if (p->d_name[0] < '0' || p->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%s/comm", p->d_name);
		f = fopen(path, "r");
		if (f) {
			if (fgets(comm, sizeof(comm), f))
				comm[strcspn(comm, "\n")] = 0;
			fclose(f);
		}
		snprintf(path, sizeof(path), "/proc/%s/fdinfo", p->d_name);
		fds = opendir(path);
		if (!fds)
			continue;
		while ((d = readdir(fds)))
			if (d->d_name[0] != '.')
				n += show_fdinfo(p->d_name, comm, d->d_name);
		closedir(fds);
	}
	closedir(proc);
	printf("%d uffdx file descriptor(s)%s\n", n, geteuid() ?
	       " (as non-root: only your own processes)" : "");
	return 0;
}

int main(int argc, char **argv)
{
	const char *dev = getenv("UFFDX_DEVICE");
	struct uffdx_api api;
	struct utsname un;
	unsigned int bit;
	int ret;

	if (argc > 1) {
		if (!strcmp(argv[1], "--holders"))
			return holders();
		if (!strcmp(argv[1], "-V") || !strcmp(argv[1], "--version")) {
			printf("uffdx-info %s\n", uffdx_version());
			return 0;
		}
		usage(!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") ?
		      stdout : stderr);
		return strcmp(argv[1], "-h") && strcmp(argv[1], "--help") ? 2 : 0;
	}
	if (!dev || !*dev)
		dev = UFFDX_DEVICE_PATH;

	printf("library:  libuffdx %s\n", uffdx_version());
	if (uname(&un) == 0)
		printf("kernel:   %s %s %s\n", un.sysname, un.release,
		       un.machine);

	ret = uffdx_query(&api);
	switch (ret) {
	case 0:
		break;
	case -ENOENT:
	case -ENODEV:
	case -ENXIO:
		fprintf(stderr, "uffdx-info: %s: %s: the uffdx module is not "
			"loaded (modprobe uffdx)\n", dev, strerror(-ret));
		return 1;
	case -EACCES:
	case -EPERM:
		fprintf(stderr, "uffdx-info: %s: permission denied (check the "
			"device's group and mode, or run as root)\n", dev);
		return 1;
	default:
		fprintf(stderr, "uffdx-info: %s: %s\n", dev,
			uffdx_strerror(ret));
		return 1;
	}

	printf("module:   uffdx %u.%u.%u (API %u)\n",
	       UFFDX_VERSION_MAJOR(api.module_version),
	       UFFDX_VERSION_MINOR(api.module_version),
	       UFFDX_VERSION_PATCH(api.module_version), api.api);
	printf("features: 0x%016" PRIx64 "\n", (uint64_t)api.features);
	for (bit = 0; bit < 64; bit++) {
		uint64_t f = 1ULL << bit;
		const char *name = uffdx_feature_name(f);

		if (name)
			printf("  %-18s %s\n", name, api.features & f ?
			       "supported" : "not supported");
		else if (api.features & f)
			printf("  bit %-14u supported (unknown to this "
			       "library)\n", bit);
	}
	printf("ioctls:   0x%016" PRIx64 "\n", (uint64_t)api.ioctls);
	for (bit = 0; bit < 64; bit++) {
		const char *name = bit < sizeof(ioctl_names) /
				sizeof(ioctl_names[0]) ? ioctl_names[bit] : NULL;

		if (!(api.ioctls & (1ULL << bit)))
			continue;
		if (name)
			printf("  %s\n", name);
		else
			printf("  bit %u (unknown to this library)\n", bit);
	}
	return 0;
}
