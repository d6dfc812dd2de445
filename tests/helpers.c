// SPDX-License-Identifier: GPL-2.0
/*
 * Shared helpers of the uffdx test programs.  See helpers.h.
 */
#include "helpers.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

size_t ps;

/* volatile: the stores around the faulting access must not be elided. */
static __thread sigjmp_buf *volatile acc_jmp;
#define barrier() __asm__ __volatile__("" ::: "memory")

static void fault_handler(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	if (acc_jmp)
		siglongjmp(*acc_jmp, sig);
	/* Not ours: say where, and die of it. */
	{
		char msg[128];
		int n = snprintf(msg, sizeof(msg), "# unexpected signal %d (code %d) at %p, tid %d\n",
				 sig, si ? si->si_code : 0, si ? si->si_addr : NULL,
				 (int)syscall(SYS_gettid));

		if (n > 0 && write(2, msg, (size_t)n) < 0)
			n = 0;
	}
	signal(sig, SIG_DFL);
	raise(sig);
}

void sig_install(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = fault_handler;
	sa.sa_flags = SA_SIGINFO | SA_NODEFER;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGBUS, &sa, NULL);
	sigaction(SIGSEGV, &sa, NULL);
	/* A blocked SIGBUS would be forced to its default action: unblock. */
	sigemptyset(&sa.sa_mask);
	sigaddset(&sa.sa_mask, SIGBUS);
	sigaddset(&sa.sa_mask, SIGSEGV);
	sigaddset(&sa.sa_mask, SIGALRM);
	pthread_sigmask(SIG_UNBLOCK, &sa.sa_mask, NULL);
}

static void noop_handler(int sig)
{
	(void)sig;
}

__attribute__((constructor)) static void helpers_init(void)
{
	struct sigaction sa;

	ps = (size_t)sysconf(_SC_PAGESIZE);
	sig_install();
	/* SIGALRM without SA_RESTART: interrupts a blocking read (read_timeout). */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = noop_handler;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGALRM, &sa, NULL);
}

int uffdx_present(void)
{
	return access(UFFDX_DEV, F_OK) == 0;
}

int ctx_open(uint64_t features, unsigned int flags)
{
	struct uffdx_api api;

	memset(&api, 0, sizeof(api));
	return uffdx_open_api(features, flags, &api);
}

pid_t sys_gettid(void)
{
	return (pid_t)syscall(SYS_gettid);
}

uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

int wait_fd(int fd, short events, int timeout_ms)
{
	struct pollfd pfd = { .fd = fd, .events = events };
	uint64_t end = now_ns() + (uint64_t)timeout_ms * 1000000ull;
	int ret;

	for (;;) {
		uint64_t now = now_ns();
		int left = now >= end ? 0 : (int)((end - now) / 1000000ull);

		ret = poll(&pfd, 1, left);
		if (ret >= 0)
			return ret;
		if (errno != EINTR)
			return -errno;
		if (!left)
			return 0;
	}
}

ssize_t read_timeout(int fd, void *buf, size_t len, int timeout_ms)
{
	struct itimerval it, old;
	ssize_t ret;
	int err;

	memset(&it, 0, sizeof(it));
	it.it_value.tv_sec = timeout_ms / 1000;
	it.it_value.tv_usec = (timeout_ms % 1000) * 1000;
	setitimer(ITIMER_REAL, &it, &old);
	ret = read(fd, buf, len);
	err = errno;
	memset(&it, 0, sizeof(it));
	setitimer(ITIMER_REAL, &it, NULL);
	return ret < 0 ? -err : ret;
}

int wait_events(int ctx, struct uffdx_event *ev, unsigned int max, int timeout_ms)
{
	int ret = wait_fd(ctx, POLLIN, timeout_ms);

	if (ret <= 0)
		return ret;
	return uffdx_read_events(ctx, ev, max);
}

int wait_event(int ctx, struct uffdx_event *ev, int timeout_ms)
{
	return wait_events(ctx, ev, 1, timeout_ms);
}

int event_arrives(int ctx, int ms)
{
	int ret = wait_fd(ctx, POLLIN, ms);

	return ret < 0 ? ret : ret > 0;
}

int wait_child(pid_t pid, int *status, int timeout_ms)
{
	uint64_t end = now_ns() + (uint64_t)timeout_ms * 1000000ull;
	int st = 0;

	for (;;) {
		pid_t r = waitpid(pid, &st, WNOHANG);

		if (r == pid) {
			if (status)
				*status = st;
			return 0;
		}
		if (r < 0 && errno != EINTR)
			return -errno;
		if (now_ns() >= end)
			return -ETIMEDOUT;
		usleep(1000);
	}
}

int kill_child(pid_t pid, int *status)
{
	kill(pid, SIGKILL);
	return wait_child(pid, status, WAIT_MS);
}

/* splitmix64 */
static inline uint64_t mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

void fill_pattern(void *buf, size_t len, uint64_t seed)
{
	uint8_t *p = buf;
	size_t i;

	for (i = 0; i < len; i += 8) {
		uint64_t v = mix(seed * 0x100000001b3ull + i);
		size_t n = len - i < 8 ? len - i : 8;

		memcpy(p + i, &v, n);
	}
}

long check_pattern(const void *buf, size_t len, uint64_t seed)
{
	const uint8_t *p = buf;
	size_t i, j;

	for (i = 0; i < len; i += 8) {
		uint64_t v = mix(seed * 0x100000001b3ull + i);
		size_t n = len - i < 8 ? len - i : 8;

		if (memcmp(p + i, &v, n)) {
			for (j = 0; j < n; j++)
				if (p[i + j] != ((uint8_t *)&v)[j])
					return (long)(i + j);
		}
	}
	return -1;
}

int is_zero(const void *buf, size_t len)
{
	const uint8_t *p = buf;
	size_t i;

	for (i = 0; i < len; i++)
		if (p[i])
			return 0;
	return 1;
}

uint64_t checksum(const void *buf, size_t len)
{
	const uint8_t *p = buf;
	uint64_t h = 0xcbf29ce484222325ull;
	size_t i;

	for (i = 0; i < len; i++)
		h = (h ^ p[i]) * 0x100000001b3ull;
	return h;
}

/*
 * One access to @addr (a write of *@val if @write, else a read into *@val)
 * that returns the signal it raised instead of dying of it.  noinline: the
 * sigsetjmp() frame must be this function's own.
 */
static __attribute__((noinline)) int try_access(void *addr, int write,
						uint8_t *val)
{
	sigjmp_buf jb;
	int sig;

	sig = sigsetjmp(jb, 1);
	if (sig) {
		acc_jmp = NULL;
		return sig;
	}
	acc_jmp = &jb;
	barrier();
	if (write)
		*(volatile uint8_t *)addr = *val;
	else
		*val = *(volatile uint8_t *)addr;
	barrier();
	acc_jmp = NULL;
	return 0;
}

int try_read(const void *addr, uint8_t *out)
{
	return try_access((void *)addr, 0, out);
}

int try_write(void *addr, uint8_t val)
{
	return try_access(addr, 1, &val);
}

struct accessor *acc_new(void *addr, int write, uint8_t wval)
{
	struct accessor *a = mmap(NULL, sizeof(*a), PROT_READ | PROT_WRITE,
				  MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	if (a == MAP_FAILED)
		return NULL;
	memset(a, 0, sizeof(*a));
	a->addr = addr;
	a->write = write;
	a->wval = wval;
	a->check_addr = (void *)((uintptr_t)addr & ~(uintptr_t)(ps - 1));
	a->check_len = ps;
	a->child = -1;
	return a;
}

void acc_free(struct accessor *a)
{
	if (a)
		munmap(a, sizeof(*a));
}

static void acc_run(struct accessor *a)
{
	uint8_t v = 0;
	int sig;

	a->pid = getpid();
	a->tid = sys_gettid();
	__atomic_store_n(&a->started, 1, __ATOMIC_SEQ_CST);
	if (a->write) {
		sig = try_write(a->addr, a->wval);
		if (!sig)
			sig = try_read(a->addr, &v);
	} else {
		sig = try_read(a->addr, &v);
	}
	a->first = v;
	a->sig = sig;
	if (!sig && a->check_len)
		a->sum = checksum(a->check_addr, a->check_len);
	__atomic_store_n(&a->done, 1, __ATOMIC_SEQ_CST);
}

static void *acc_thread(void *arg)
{
	acc_run(arg);
	return NULL;
}

int acc_start_thread(struct accessor *a)
{
	int ret;

	a->is_thread = 1;
	ret = pthread_create(&a->thread, NULL, acc_thread, a);
	return -ret;
}

int acc_start_child(struct accessor *a)
{
	pid_t pid;

	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		sig_install();
		acc_run(a);
		_exit(0);
	}
	a->is_thread = 0;
	a->child = pid;
	return 0;
}

int acc_wait_started(struct accessor *a, int timeout_ms)
{
	uint64_t end = now_ns() + (uint64_t)timeout_ms * 1000000ull;

	while (!__atomic_load_n(&a->started, __ATOMIC_SEQ_CST)) {
		if (now_ns() >= end)
			return -ETIMEDOUT;
		usleep(500);
	}
	return 0;
}

int acc_wait(struct accessor *a, int timeout_ms)
{
	uint64_t end = now_ns() + (uint64_t)timeout_ms * 1000000ull;

	while (!__atomic_load_n(&a->done, __ATOMIC_SEQ_CST)) {
		/* a child that died of a signal it could not catch */
		if (!a->is_thread && a->child > 0) {
			int st;

			if (waitpid(a->child, &st, WNOHANG) == a->child) {
				a->child = -1;
				/*
				 * It may have finished (done, sig stored) and
				 * exited between the test above and waitpid():
				 * then its own report stands.
				 */
				if (!__atomic_load_n(&a->done, __ATOMIC_SEQ_CST)) {
					a->sig = WIFSIGNALED(st) ? WTERMSIG(st) : -1;
					a->done = 1;
				}
				return 0;
			}
		}
		if (now_ns() >= end)
			return -ETIMEDOUT;
		usleep(500);
	}
	if (a->is_thread) {
		pthread_join(a->thread, NULL);
		a->is_thread = -1;	/* joined */
	} else if (a->child > 0) {
		int ret = wait_child(a->child, NULL, WAIT_MS);

		if (ret)
			return ret;
		a->child = -1;
	}
	return 0;
}

int acc_blocked(struct accessor *a, int ms)
{
	uint64_t end = now_ns() + (uint64_t)ms * 1000000ull;

	while (now_ns() < end) {
		if (__atomic_load_n(&a->done, __ATOMIC_SEQ_CST))
			return 0;
		usleep(1000);
	}
	return !__atomic_load_n(&a->done, __ATOMIC_SEQ_CST);
}

void acc_kill(struct accessor *a)
{
	if (!a->is_thread && a->child > 0) {
		kill_child(a->child, NULL);
		a->child = -1;
	}
}

long long read_ll_file(const char *path, long long *val)
{
	char buf[64];
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return n < 0 ? -errno : -EIO;
	buf[n] = 0;
	*val = strtoll(buf, NULL, 0);
	return 0;
}

int write_ll_file(const char *path, long long val)
{
	char buf[64];
	int len = snprintf(buf, sizeof(buf), "%lld\n", val);
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = write(fd, buf, (size_t)len);
	if (n < 0) {
		int err = errno;

		close(fd);
		return -err;
	}
	close(fd);
	return n == len ? 0 : -EIO;
}

int drop_effective_cap(int cap)
{
	struct __user_cap_header_struct hdr = {
		.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0,
	};
	struct __user_cap_data_struct data[2];

	memset(data, 0, sizeof(data));
	if (syscall(SYS_capget, &hdr, data))
		return -errno;
	data[cap / 32].effective &= ~(1u << (cap % 32));
	if (syscall(SYS_capset, &hdr, data))
		return -errno;
	return 0;
}

int raise_effective_cap(int cap)
{
	struct __user_cap_header_struct hdr = {
		.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0,
	};
	struct __user_cap_data_struct data[2];

	memset(data, 0, sizeof(data));
	if (syscall(SYS_capget, &hdr, data))
		return -errno;
	data[cap / 32].effective |= 1u << (cap % 32);
	if (syscall(SYS_capset, &hdr, data))
		return -errno;
	return 0;
}

ssize_t read_str_file(const char *path, char *buf, size_t len)
{
	ssize_t n, done = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	while ((size_t)done < len - 1) {
		n = read(fd, buf + done, len - 1 - (size_t)done);
		if (n < 0) {
			int err = errno;

			close(fd);
			return -err;
		}
		if (!n)
			break;
		done += n;
	}
	close(fd);
	buf[done] = 0;
	return done;
}

int write_str_file(const char *path, const char *s)
{
	size_t len = strlen(s);
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = write(fd, s, len);
	if (n < 0) {
		int err = errno;

		close(fd);
		return -err;
	}
	close(fd);
	return (size_t)n == len ? 0 : -EIO;
}

int count_open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;
	int n = 0;

	if (!d)
		return -errno;
	while ((de = readdir(d)))
		if (de->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1;	/* the directory's own fd */
}

char thread_state(pid_t tid)
{
	char path[64], buf[512], *p;

	snprintf(path, sizeof(path), "/proc/self/task/%d/stat", (int)tid);
	if (read_str_file(path, buf, sizeof(buf)) <= 0)
		return 0;
	/* "tid (comm) S ...": comm may hold anything, the last ')' ends it */
	p = strrchr(buf, ')');
	if (!p || p[1] != ' ')
		return 0;
	return p[2];
}

int send_fd(int sock, int fd)
{
	char c = 'F';
	struct iovec iov = { .iov_base = &c, .iov_len = 1 };
	union {
		struct cmsghdr hdr;
		char buf[CMSG_SPACE(sizeof(int))];
	} u;
	struct msghdr msg;
	struct cmsghdr *cm;

	memset(&msg, 0, sizeof(msg));
	memset(&u, 0, sizeof(u));
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = u.buf;
	msg.msg_controllen = sizeof(u.buf);
	cm = CMSG_FIRSTHDR(&msg);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	return sendmsg(sock, &msg, 0) == 1 ? 0 : -errno;
}

int recv_fd(int sock, int timeout_ms)
{
	char c;
	struct iovec iov = { .iov_base = &c, .iov_len = 1 };
	union {
		struct cmsghdr hdr;
		char buf[CMSG_SPACE(sizeof(int))];
	} u;
	struct msghdr msg;
	struct cmsghdr *cm;
	int fd, ret;

	ret = wait_fd(sock, POLLIN, timeout_ms);
	if (ret <= 0)
		return ret ? ret : -ETIMEDOUT;
	memset(&msg, 0, sizeof(msg));
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = u.buf;
	msg.msg_controllen = sizeof(u.buf);
	if (recvmsg(sock, &msg, MSG_CMSG_CLOEXEC) != 1)
		return -errno ? -errno : -EIO;
	cm = CMSG_FIRSTHDR(&msg);
	if (!cm || cm->cmsg_type != SCM_RIGHTS)
		return -EBADMSG;
	memcpy(&fd, CMSG_DATA(cm), sizeof(int));
	return fd;
}

/* Raw range ioctl, to see errno and result together (result preset). */
int raw_range(int ctx, unsigned long nr, uint64_t id, uint64_t off, uint64_t len,
	      const void *src, uint32_t mode, int64_t *result)
{
	struct uffdx_range r;
	int ret;

	memset(&r, 0, sizeof(r));
	r.size = sizeof(r);
	r.mode = mode;
	r.region_id = id;
	r.offset = off;
	r.len = len;
	r.src = (uintptr_t)src;
	r.result = 0x7a7a7a7a;
	ret = ioctl(ctx, nr, &r);
	if (result)
		*result = r.result;
	return ret;
}

int pagemap_read(const void *addr, size_t npages, uint64_t *entries)
{
	off_t off = (off_t)((uintptr_t)addr / ps * sizeof(uint64_t));
	size_t want = npages * sizeof(uint64_t), done = 0;
	int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	while (done < want) {
		ssize_t n = pread(fd, (char *)entries + done, want - done,
				  off + (off_t)done);

		if (n <= 0) {
			int err = n < 0 ? errno : EIO;

			close(fd);
			return -err;
		}
		done += (size_t)n;
	}
	close(fd);
	return 0;
}

uint64_t page_pfn(const void *addr)
{
	uint64_t e = 0;

	if (pagemap_read(addr, 1, &e) || !(e & PM_PRESENT))
		return 0;
	return PM_PFN(e);
}

int fdinfo_ll(int fd, const char *key, long long *val)
{
	char path[64], buf[4096], *p;
	size_t klen = strlen(key);
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	n = read_str_file(path, buf, sizeof(buf));
	if (n < 0)
		return (int)n;
	for (p = buf; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
		if (!strncmp(p, key, klen) && p[klen] == ':') {
			*val = strtoll(p + klen + 1, NULL, 0);
			return 0;
		}
	}
	return -ENOENT;
}
