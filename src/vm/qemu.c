/* SPDX-License-Identifier: MIT */
/*
 * QEMU for a VM: its command line, spawning and stopping it, and the KVM
 * probe.
 *
 * The command line follows what QEMU 7.2 needs for vhost-user (docs/VMX.md
 * explains each option): guest memory in a shared memfd so that the
 * daemon can map it, QEMU as the client of the daemon's sockets, no default
 * devices, the serial console into a file. Values that QEMU parses as
 * "key=value,..." options have their commas doubled (QEMU's escape), so a
 * path cannot add options; -kernel, -initrd, -append and -pidfile take their
 * argument whole.
 *
 * QEMU runs in its own session with a pidfd the daemon's loop can watch;
 * signals are sent through the pidfd, so a stop never reaches a recycled
 * pid.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/close_range.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/clock.h"
#include "qemu.h"

/* ---------------------------------------------------------------------- */
/* The command line */

struct vm_args {
	char **v;
	size_t n, cap;
	int err; /* sticky: the first failure */
};

__attribute__((format(printf, 2, 3))) static void
args_add(struct vm_args *a, const char *fmt, ...)
{
	va_list ap;
	char *s;
	int r;

	if (a->err)
		return;
	if (a->n + 2 > a->cap) {
		size_t cap = a->cap ? 2 * a->cap : 64;
		char **v = realloc(a->v, cap * sizeof(*v));
		if (!v) {
			a->err = -ENOMEM;
			return;
		}
		a->v = v;
		a->cap = cap;
	}
	va_start(ap, fmt);
	r = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (r < 0) {
		a->err = -ENOMEM;
		return;
	}
	a->v[a->n++] = s;
	a->v[a->n] = NULL;
}

/* @s with every ',' doubled, for a value inside a QEMU option string. */
static const char *
args_esc(struct vm_args *a, char *buf, size_t size, const char *s)
{
	size_t n = 0;

	for (; *s && n + 3 < size; s++) {
		if (*s == ',')
			buf[n++] = ',';
		buf[n++] = *s;
	}
	buf[n] = '\0';
	if (*s && !a->err)
		a->err = -ENAMETOOLONG;
	return buf;
}

/* Whether the kernel command line @s names a console ("console=" starting a word). */
static bool
has_console(const char *s)
{
	for (const char *p = strstr(s, "console="); p; p = strstr(p + 1, "console="))
		if (p == s || p[-1] == ' ' || p[-1] == '\t')
			return true;
	return false;
}

/*
 * Under TCG a loaded host can make Linux's IO-APIC timer check miss its
 * ticks and panic ("IO-APIC + timer doesn't work!"): the check is skipped.
 */
static const char *
tcg_words(const struct vm_config *c, bool tcg)
{
	return tcg && !strstr(c->append, "no_timer_check") ? " no_timer_check" : "";
}

static void
args_boot(struct vm_args *a, const struct vm_config *c, bool tcg)
{
	args_add(a, "-kernel");
	args_add(a, "%s", c->kernel);
	if (c->initrd[0]) {
		args_add(a, "-initrd");
		args_add(a, "%s", c->initrd);
	}
	/* First, not last: words after " -- " go to init, not to the kernel. */
	args_add(a, "-append");
	const char *init = strstr(c->append, " -- "); /* what follows goes to init */
	int klen = init ? (int)(init - c->append) : (int)strlen(c->append);

	if (!init)
		init = "";
	if (has_console(c->append))
		args_add(a, "%.*s%s%s", klen, c->append, tcg_words(c, tcg), init);
	else
		args_add(a, "console=ttyS0%s%.*s%s%s", klen ? " " : "", klen, c->append,
			 tcg_words(c, tcg), init);
}

static void
args_control(struct vm_args *a, const struct vm_launch *l)
{
	char esc[2 * PATH_MAX];

	args_add(a, "-display");
	args_add(a, "none");
	args_add(a, "-chardev");
	args_add(a, "file,id=serial0,path=%s", args_esc(a, esc, sizeof(esc), l->serial_log));
	args_add(a, "-serial");
	args_add(a, "chardev:serial0");
	args_add(a, "-no-reboot");
	if (l->qmp_sock) {
		args_add(a, "-chardev");
		args_add(a, "socket,id=qmp0,path=%s,server=on,wait=off",
			 args_esc(a, esc, sizeof(esc), l->qmp_sock));
		args_add(a, "-mon");
		args_add(a, "chardev=qmp0,mode=control");
	}
	if (l->pidfile) {
		args_add(a, "-pidfile");
		args_add(a, "%s", l->pidfile);
	}
}

/*
 * virtio-net-pci over vhost-user under TCG: no MSI-X (QEMU 7.2 segfaults
 * when the guest starts the device), legacy interrupts instead.
 * vhost-user-vsock-pci does not need this: it starts under TCG with MSI-X.
 */
static const char *
args_net_vectors(const struct vm_launch *l)
{
	return strcmp(l->accel, "tcg") == 0 ? ",vectors=0" : "";
}

static void
args_devices(struct vm_args *a, const struct vm_config *c, const struct vm_launch *l)
{
	char esc[2 * PATH_MAX], mac[18];
	uint8_t m[6];

	if (l->vsock_sock) {
		args_add(a, "-chardev");
		args_add(a, "socket,id=vsock0,path=%s",
			 args_esc(a, esc, sizeof(esc), l->vsock_sock));
		args_add(a, "-device");
		args_add(a, "vhost-user-vsock-pci,chardev=vsock0,id=vmci0");
	}
	for (unsigned i = 0; i < VM_MAX_NICS; i++) {
		if (!l->nic_sock[i] && !l->nic_stream[i])
			continue;
		if (c->nic[i].has_mac)
			memcpy(m, c->nic[i].mac, sizeof(m));
		else
			vm_nic_default_mac(c->name, i, m);
		if (l->nic_stream[i]) {
			/* The emulated device model, its frames on a socket the daemon made. */
			args_add(a, "-netdev");
			args_add(a, "stream,id=hostnet%u,server=off,addr.type=fd,addr.str=%d", i,
				 VM_QEMU_NIC_FD(i));
			args_add(a, "-device");
			args_add(a, "%s,netdev=hostnet%u,id=ethernet%u,mac=%s", c->nic[i].virtual_dev,
				 i, i, vm_mac_str(m, mac));
			continue;
		}
		/* reconnect: QEMU re-establishes a vhost-user netdev after a daemon restart. */
		args_add(a, "-chardev");
		args_add(a, "socket,id=net%u,path=%s,reconnect=1", i,
			 args_esc(a, esc, sizeof(esc), l->nic_sock[i]));
		args_add(a, "-netdev");
		args_add(a, "vhost-user,id=hostnet%u,chardev=net%u", i, i);
		args_add(a, "-device");
		args_add(a, "virtio-net-pci,netdev=hostnet%u,id=ethernet%u,mac=%s%s", i, i,
			 vm_mac_str(m, mac), args_net_vectors(l));
	}
}

static int
argv_check(const struct vm_config *c, const struct vm_launch *l)
{
	if (!c->name[0] || !c->kernel[0] || !l->serial_log || !l->accel)
		return -EINVAL;
	if (c->mem_mib < VM_MEM_MIN || c->mem_mib > VM_MEM_MAX || c->vcpus < 1 ||
	    c->vcpus > VM_VCPUS_MAX)
		return -EINVAL;
	if (strcmp(l->accel, "kvm") && strcmp(l->accel, "tcg"))
		return -EINVAL;
	if (c->vmci != (l->vsock_sock != NULL))
		return -EINVAL;
	for (unsigned i = 0; i < VM_MAX_NICS; i++) {
		bool virtio = !strcmp(c->nic[i].virtual_dev, "virtio");

		if (!l->nic_sock[i] && !l->nic_stream[i])
			continue;
		if (!c->nic[i].present || (l->nic_sock[i] && l->nic_stream[i]))
			return -EINVAL;
		if (virtio != (l->nic_sock[i] != NULL))
			return -EOPNOTSUPP;
	}
	return 0;
}

int
vm_qemu_argv(const struct vm_config *c, const struct vm_launch *l, char ***argv_out)
{
	struct vm_args a = { 0 };
	char esc[2 * sizeof(c->name)];
	int r;

	*argv_out = NULL;
	r = argv_check(c, l);
	if (r < 0)
		return r;
	args_add(&a, "%s", l->qemu ? l->qemu : VM_QEMU_DEFAULT);
	args_add(&a, "-name");
	args_add(&a, "guest=%s,debug-threads=on", args_esc(&a, esc, sizeof(esc), c->name));
	args_add(&a, "-nodefaults");
	args_add(&a, "-accel");
	args_add(&a, "%s", l->accel);
	args_add(&a, "-m");
	args_add(&a, "%" PRIu64, c->mem_mib);
	args_add(&a, "-smp");
	args_add(&a, "%u", c->vcpus);
	args_add(&a, "-object");
	args_add(&a, "memory-backend-memfd,id=mem0,size=%" PRIu64 "M,share=on", c->mem_mib);
	args_add(&a, "-numa");
	args_add(&a, "node,memdev=mem0");
	args_boot(&a, c, !strcmp(l->accel, "tcg"));
	args_control(&a, l);
	args_devices(&a, c, l);
	if (a.err) {
		vm_qemu_argv_free(a.v);
		return a.err;
	}
	*argv_out = a.v;
	return 0;
}

void
vm_qemu_argv_free(char **argv)
{
	if (!argv)
		return;
	for (char **p = argv; *p; p++)
		free(*p);
	free(argv);
}

/* ---------------------------------------------------------------------- */
/* Spawning, reaping, stopping */

/*
 * The kernel's struct sigaction (rt_sigaction), for signals glibc will not
 * name. Only the handler, first on every architecture, is not zero, so
 * where sa_restorer is absent the layout still reads right.
 */
struct spawn_ksigaction {
	void (*handler)(int);
	unsigned long flags;
	void (*restorer)(void);
	uint64_t mask;
};

/* Reports -errno through @errfd (close-on-exec) and exits; never returns. */
__attribute__((noreturn)) static void
spawn_fail(int errfd)
{
	int e = errno;
	ssize_t n = write(errfd, &e, sizeof(e));

	(void)n;
	_exit(127);
}

/* @fd as descriptor @to, open across exec. */
static int
spawn_dup(int fd, int to)
{
	if (fd < 0)
		return -1;
	return fd == to ? fcntl(to, F_SETFD, 0) : dup2(fd, to);
}

/*
 * In the child of fork(): async-signal-safe calls only. Every signal's
 * disposition goes back to default through the raw system call: an ignored
 * signal stays ignored across exec, and glibc's sigaction() refuses its
 * internal signals (32, 33), which glibc's own posix_spawn() leaves ignored.
 */
__attribute__((noreturn)) static void
spawn_child(char **argv, const char *qemu_log, int errfd, const int *keep, unsigned nkeep)
{
	int moved[VM_MAX_NICS];

	const struct spawn_ksigaction dfl = { .handler = SIG_DFL };
	sigset_t none;
	int fd;

	for (int s = 1; s < NSIG; s++)
		if (s != SIGKILL && s != SIGSTOP)
			syscall(SYS_rt_sigaction, s, &dfl, NULL, sizeof(dfl.mask));
	sigemptyset(&none);
	if (sigprocmask(SIG_SETMASK, &none, NULL) < 0 || setsid() < 0)
		spawn_fail(errfd);
	fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (spawn_dup(fd, 0) < 0)
		spawn_fail(errfd);
	fd = open(qemu_log ? qemu_log : "/dev/null",
		  O_WRONLY | O_CREAT | O_TRUNC | O_NOCTTY | O_CLOEXEC, 0640);
	if (spawn_dup(fd, 1) < 0 || dup2(1, 2) < 0)
		spawn_fail(errfd);
	/*
	 * The descriptors to hand on go to their numbers from above the range
	 * they land in, so that none overwrites another (or @errfd) first.
	 */
	if ((errfd = fcntl(errfd, F_DUPFD_CLOEXEC, 3 + VM_MAX_NICS)) < 0)
		_exit(127);
	for (unsigned i = 0; i < nkeep; i++)
		if (keep[i] >= 0 && (moved[i] = fcntl(keep[i], F_DUPFD_CLOEXEC, 3 + VM_MAX_NICS)) < 0)
			spawn_fail(errfd);
	/* Close-on-exec rather than closed: @errfd must work until exec. */
	if (close_range(3, ~0u, CLOSE_RANGE_CLOEXEC) < 0) {
		long max = sysconf(_SC_OPEN_MAX);
		for (long i = 3; i < (max > 0 ? max : 65536); i++)
			fcntl((int)i, F_SETFD, FD_CLOEXEC);
	}
	for (unsigned i = 0; i < nkeep; i++) /* dup2: not close-on-exec */
		if (keep[i] >= 0 && dup2(moved[i], VM_QEMU_NIC_FD(i)) < 0)
			spawn_fail(errfd);
	execvp(argv[0], argv);
	spawn_fail(errfd);
}

int
vm_qemu_spawn(char **argv, const char *qemu_log, int *pidfd, pid_t *pid)
{
	return vm_qemu_spawn_fds(argv, qemu_log, NULL, 0, pidfd, pid);
}

int
vm_qemu_spawn_fds(char **argv, const char *qemu_log, const int *keep, unsigned nkeep, int *pidfd,
		  pid_t *pid)
{
	int p[2], e = 0, fd, r;
	pid_t child;
	ssize_t n;

	*pidfd = -1;
	*pid = 0;
	if (!argv || !argv[0] || nkeep > VM_MAX_NICS)
		return -EINVAL;
	if (pipe2(p, O_CLOEXEC) < 0)
		return -errno;
	/* The child makes 0, 1 and 2 anew: the pipe must not be one of them. */
	for (int i = 0; i < 2; i++) {
		while (p[i] >= 0 && p[i] <= 2) {
			fd = fcntl(p[i], F_DUPFD_CLOEXEC, 3);
			close(p[i]);
			p[i] = fd;
		}
	}
	if (p[0] < 0 || p[1] < 0) {
		r = -errno;
		for (int i = 0; i < 2; i++)
			if (p[i] >= 0)
				close(p[i]);
		return r;
	}
	child = fork();
	if (child < 0) {
		r = -errno;
		close(p[0]);
		close(p[1]);
		return r;
	}
	if (child == 0)
		spawn_child(argv, qemu_log, p[1], keep, nkeep);
	close(p[1]);
	/* Nothing: exec succeeded (the pipe closed with it); else the child's errno. */
	while ((n = read(p[0], &e, sizeof(e))) < 0 && errno == EINTR)
		;
	close(p[0]);
	/* Not reaped before this: a zombie still has its pidfd. */
	fd = n == sizeof(e) ? -1 : pidfd_open(child, 0);
	if (fd < 0) {
		r = n == sizeof(e) ? -e : -errno;
		if (n != sizeof(e))
			kill(child, SIGKILL);
		while (waitpid(child, NULL, 0) < 0 && errno == EINTR)
			;
		return r;
	}
	*pidfd = fd;
	*pid = child;
	return 0;
}

int
vm_qemu_reap(int pidfd, int *wstatus)
{
	siginfo_t si;

	memset(&si, 0, sizeof(si));
	while (waitid((idtype_t)P_PIDFD, (id_t)pidfd, &si, WEXITED | WNOHANG) < 0)
		if (errno != EINTR)
			return -errno;
	if (si.si_pid == 0)
		return -EAGAIN;
	if (wstatus) {
		if (si.si_code == CLD_EXITED)
			*wstatus = (si.si_status & 0xff) << 8;
		else
			*wstatus = (si.si_status & 0x7f) | (si.si_code == CLD_DUMPED ? 0x80 : 0);
	}
	return 0;
}

/* 1 when @pidfd's process has exited, 0 after @timeout_ms, -errno. */
static int
pidfd_wait(int pidfd, int timeout_ms)
{
	int64_t end = clock_ns() + (int64_t)timeout_ms * 1000000;
	struct pollfd p = { .fd = pidfd, .events = POLLIN };

	for (;;) {
		int64_t left = (end - clock_ns() + 999999) / 1000000;
		int r = poll(&p, 1, left > 0 ? (int)left : 0);
		if (r > 0)
			return 1;
		if (r == 0 && left <= 0)
			return 0;
		if (r < 0 && errno != EINTR)
			return -errno;
	}
}

int
vm_qemu_stop(pid_t pid, int pidfd, int timeout_ms)
{
	bool killed = false;
	int r;

	if (pid <= 0 || pidfd < 0)
		return -EINVAL;
	if (pidfd_send_signal(pidfd, SIGTERM, NULL, 0) < 0)
		return -errno; /* ESRCH: reaped already */
	r = pidfd_wait(pidfd, timeout_ms > 0 ? timeout_ms : 0);
	if (r == 0) {
		if (pidfd_send_signal(pidfd, SIGKILL, NULL, 0) < 0 && errno != ESRCH)
			return -errno;
		killed = true;
		r = pidfd_wait(pidfd, 5000);
		if (r == 0)
			return -ETIMEDOUT;
	}
	if (r < 0)
		return r;
	r = vm_qemu_reap(pidfd, NULL);
	if (r < 0 && r != -ECHILD) /* ECHILD: not ours (a crashed daemon's): init reaps it */
		return r;
	return killed ? 1 : 0;
}

/* ---------------------------------------------------------------------- */
/* The KVM probe */

#define PROBE_BANNER "Linux version "

/* Whether the first 16 KiB of @path hold @marker (the banner is the first line). */
static bool
file_has(const char *path, const char *marker)
{
	char buf[16384];
	bool found = false;
	ssize_t n;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	n = pread(fd, buf, sizeof(buf), 0);
	if (n > 0)
		found = memmem(buf, (size_t)n, marker, strlen(marker)) != NULL;
	close(fd);
	return found;
}

/* The last non-empty line of @path (at most 4 KiB from its end), printable. */
static void
last_line(const char *path, char *out, size_t size)
{
	char buf[4096], *s, *e;
	ssize_t n = 0;
	off_t len;
	int fd;

	out[0] = '\0';
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	len = lseek(fd, 0, SEEK_END);
	if (len > (off_t)sizeof(buf) - 1)
		n = pread(fd, buf, sizeof(buf) - 1, len - (off_t)sizeof(buf) + 1);
	else if (len > 0)
		n = pread(fd, buf, sizeof(buf) - 1, 0);
	close(fd);
	buf[n > 0 ? n : 0] = '\0';
	for (e = buf + strlen(buf); e > buf && (e[-1] == '\n' || e[-1] == '\r'); e--)
		;
	*e = '\0';
	s = strrchr(buf, '\n');
	s = s ? s + 1 : buf;
	for (char *p = s; *p; p++)
		if ((unsigned char)*p < ' ' || (unsigned char)*p > '~')
			*p = '?';
	snprintf(out, size, "%s", s);
}

struct probe {
	char dir[PATH_MAX - 32], serial[PATH_MAX], qlog[PATH_MAX];
	pid_t pid;
	int pidfd;
};

/* Waits for the banner; the return of vm_accel_try(). */
static int
probe_watch(struct probe *p, const char *accel, int timeout_ms, char *why, size_t whylen)
{
	int64_t start = clock_ns(), ms;
	char msg[200];
	int r, st = 0;

	for (;;) {
		ms = (clock_ns() - start) / 1000000;
		if (file_has(p->serial, PROBE_BANNER)) {
			snprintf(why, whylen,
				 "a guest booted with -accel %s (kernel banner after "
				 "%" PRId64 " ms)",
				 accel, ms);
			return 0;
		}
		if (ms >= timeout_ms) {
			snprintf(why, whylen,
				 "no guest kernel output within %d ms with -accel %s (e.g. a "
				 "nested KVM that cannot run Linux)",
				 timeout_ms, accel);
			return -ETIMEDOUT;
		}
		r = pidfd_wait(p->pidfd, timeout_ms - ms < 50 ? (int)(timeout_ms - ms) : 50);
		if (r < 0)
			return r;
		if (r > 0 && !file_has(p->serial, PROBE_BANNER)) {
			vm_qemu_reap(p->pidfd, &st);
			p->pid = 0;
			last_line(p->qlog, msg, sizeof(msg));
			snprintf(why, whylen,
				 "QEMU with -accel %s exited (status %d) before the "
				 "kernel spoke: %s",
				 accel, WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st),
				 msg[0] ? msg : "no message");
			return -ECHILD;
		}
	}
}

static int
probe_run(struct probe *p, const char *qemu, const char *accel, const char *kernel,
	  const char *initrd, int timeout_ms, char *why, size_t whylen)
{
	struct vm_launch l = { .qemu = qemu, .accel = accel, .serial_log = p->serial };
	struct vm_config c;
	char **argv;
	int r;

	memset(&c, 0, sizeof(c));
	snprintf(c.name, sizeof(c.name), "vmfabric-accel-probe");
	c.mem_mib = VM_MEM_DEF;
	c.vcpus = 1;
	if (strlen(kernel) >= sizeof(c.kernel) || (initrd && strlen(initrd) >= sizeof(c.initrd))) {
		snprintf(why, whylen, "path of the kernel or initrd too long");
		return -ENAMETOOLONG;
	}
	snprintf(c.kernel, sizeof(c.kernel), "%s", kernel);
	snprintf(c.initrd, sizeof(c.initrd), "%s", initrd ? initrd : "");
	/* No "quiet": the banner is a notice, which quiet would hide. */
	snprintf(c.append, sizeof(c.append), "panic=-1");
	r = vm_qemu_argv(&c, &l, &argv);
	if (r < 0) {
		snprintf(why, whylen, "no command line for -accel %s: %s", accel, strerror(-r));
		return r;
	}
	r = vm_qemu_spawn(argv, p->qlog, &p->pidfd, &p->pid);
	vm_qemu_argv_free(argv);
	if (r < 0) {
		snprintf(why, whylen, "cannot start %s: %s", qemu, strerror(-r));
		return r;
	}
	r = probe_watch(p, accel, timeout_ms, why, whylen);
	if (p->pid > 0)
		vm_qemu_stop(p->pid, p->pidfd, 1000);
	close(p->pidfd);
	return r;
}

int
vm_accel_try(const char *qemu, const char *accel, const char *kernel, const char *initrd,
	     int timeout_ms, char *why, size_t whylen)
{
	const char *tmp = getenv("TMPDIR");
	struct probe p = { .pidfd = -1 };
	int r;

	snprintf(why, whylen, "no kernel or no accelerator to try");
	if (!kernel || !accel)
		return -EINVAL;
	if (access(kernel, R_OK) < 0 || (initrd && access(initrd, R_OK) < 0)) {
		r = -errno;
		snprintf(why, whylen, "%s: %s", access(kernel, R_OK) < 0 ? kernel : initrd,
			 strerror(-r));
		return r;
	}
	qemu = qemu ? qemu : VM_QEMU_DEFAULT;
	if (!tmp || tmp[0] != '/' || strlen(tmp) > sizeof(p.dir) - 32)
		tmp = "/tmp";
	snprintf(p.dir, sizeof(p.dir), "%s/vmfabric-probe-XXXXXX", tmp);
	if (!mkdtemp(p.dir)) {
		r = -errno;
		snprintf(why, whylen, "cannot make a directory in %s: %s", tmp, strerror(-r));
		return r;
	}
	snprintf(p.serial, sizeof(p.serial), "%s/serial.log", p.dir);
	snprintf(p.qlog, sizeof(p.qlog), "%s/qemu.log", p.dir);
	r = probe_run(&p, qemu, accel, kernel, initrd, timeout_ms, why, whylen);
	unlink(p.serial);
	unlink(p.qlog);
	rmdir(p.dir);
	return r;
}

int
vm_accel_probe(const char *qemu, const char *kernel, const char *initrd, int timeout_ms,
	       char *accel_out, char *why, size_t whylen)
{
	int r;

	snprintf(accel_out, 8, "tcg");
	if (!kernel) {
		snprintf(why, whylen, "no kernel to probe with");
		return -EINVAL;
	}
	if (access("/dev/kvm", R_OK | W_OK) < 0) {
		snprintf(why, whylen, "/dev/kvm: %s", strerror(errno));
		return 0;
	}
	r = vm_accel_try(qemu, "kvm", kernel, initrd,
			 timeout_ms > 0 ? timeout_ms : VM_PROBE_TIMEOUT_MS, why, whylen);
	if (r == 0)
		snprintf(accel_out, 8, "kvm");
	return r == -ETIMEDOUT || r == -ECHILD ? 0 : r;
}
