/* SPDX-License-Identifier: MIT */
/*
 * bench/run vm: QEMU guests on a private vmfabricd, as the guests' own
 * tools measure them (the gbit_s of the VMF-RESULT line of vmf-vsock or
 * vmf-tcp; the guests run it from their kernel command line):
 *   guest_to_host   vsock: the guest sends to vmf-vsock-host recv (host context)
 *   host_to_guest   vsock: vmf-vsock-host sends to the guest's recv
 *   guest_to_guest  vsock: guest A sends to guest B (both ends reported)
 *   tcp_virtio      TCP from guest A to guest B over virtio-net NICs on the
 *                   virtual switch (the daemon is the device: paravirtual)
 *   tcp_vmxnet3     the same over vmxnet3 NICs that QEMU emulates, on the
 *                   same switch (QEMU's stream netdev: the emulated path)
 * Lines: vm_vsock_stream (the vsock paths), vswitch_paravirt (nic virtio
 * or vmxnet3: the cloud kernel of the test guest has no e1000 driver, so
 * the emulated NIC is QEMU's vmxnet3 model), vm_vsock_vs_tcp (system vsock
 * or tcp, guest to guest: VMCI against the network, as the VMCI document
 * compares them). Every run boots fresh guests (256 MiB, one vCPU), which
 * power off after their command. 256 MiB a transfer and 3 rounds in which
 * the paths take turns, the median reported (--quick: 32 MiB, one round).
 * The accelerator is $VMF_ACCEL or what `vmfabricd --probe-accel` finds,
 * and every line says which one the guests ran under: under TCG the guest's
 * CPU is emulated, so the ratios say which path costs the guest less, not
 * what a KVM guest would see.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

#define BENCH_NAME  "vm_vsock_stream"
#define ROUNDS_MAX  3
#define BOOT_S	    90	      /* from `vm start` until the guest listens or connects */
#define MIN_BYTES_S (2 << 20) /* slowest transfer waited for: 2 MiB/s */
#define CHUNK	    65536     /* vmf-vsock's writes and reads (its --chunk default) */
#define VMS_MAX	    32

enum path { GUEST_TO_HOST, HOST_TO_GUEST, GUEST_TO_GUEST, TCP_VIRTIO, TCP_VMXNET3, NPATHS };
static const char *const path_name[NPATHS] = { "guest_to_host", "host_to_guest", "guest_to_guest",
					       "tcp_virtio", "tcp_vmxnet3" };

/* The private daemon and what it started; stopped by fabric_stop, also at exit. */
static struct fabric {
	pid_t daemon;
	char dir[64], sock[100], conf[128], log[128];
	char guest[1024]; /* the guest image's directory */
	char accel[8];	  /* what the guests reported running under */
	struct {
		pid_t qemu;
		char name[32];
	} vms[VMS_MAX]; /* the VMs of the current run */
	int nvms;
	pid_t host; /* the running vmf-vsock-host, or 0 */
	int failed; /* runs that did not give a figure */
} fab;

static volatile sig_atomic_t interrupted;

static void
on_signal(int sig)
{
	interrupted = sig;
}

static void fabric_stop(void);

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void
die(const char *fmt, ...)
{
	va_list ap;

	fputs("bench vm: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	fab.failed++; /* keeps the logs */
	exit(1);      /* fabric_stop runs at exit */
}

static void
check_interrupted(void)
{
	if (interrupted)
		die("interrupted by signal %d", (int)interrupted);
}

/* ---------------------------------------------------------------------- */
/* Child processes: their standard output through a pipe */

struct child {
	pid_t pid;
	int out;	/* read end of its stdout */
	char buf[8192]; /* what it printed so far */
	size_t len;
};

/* Starts ARGV[0] with stdout into C->out and stderr into the daemon's log. */
static void
child_start(struct child *c, const char *const argv[])
{
	int p[2];

	if (pipe2(p, O_CLOEXEC) < 0)
		die("pipe: %s", strerror(errno));
	fflush(NULL);
	c->pid = fork();
	if (c->pid < 0)
		die("fork: %s", strerror(errno));
	if (c->pid == 0) {
		int log = open(fab.log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
		dup2(p[1], STDOUT_FILENO);
		if (log >= 0)
			dup2(log, STDERR_FILENO);
		execv(argv[0], (char *const *)(uintptr_t)argv); /* it writes none of them */
		_exit(127);
	}
	close(p[1]);
	c->out = p[0];
	c->len = 0;
	c->buf[0] = 0;
}

/*
 * Reads what the child prints until UNTIL is in it (0), its EOF (0 when
 * UNTIL is NULL, else -EPIPE) or DEADLINE (-ETIMEDOUT).
 */
static int
child_read(struct child *c, double deadline, const char *until)
{
	for (;;) {
		struct pollfd p = { .fd = c->out, .events = POLLIN };
		ssize_t n;

		check_interrupted();
		if (until && strstr(c->buf, until))
			return 0;
		if (bench_now() >= deadline)
			return -ETIMEDOUT;
		if (poll(&p, 1, 100) <= 0)
			continue;
		if (c->len + 1 >= sizeof(c->buf))
			c->len = 0; /* only the last lines matter */
		n = read(c->out, c->buf + c->len, sizeof(c->buf) - 1 - c->len);
		if (n <= 0)
			return until ? -EPIPE : 0;
		c->len += (size_t)n;
		c->buf[c->len] = 0;
	}
}

/* Waits for the child until DEADLINE (then kills it); its exit status or -1. */
static int
child_finish(struct child *c, double deadline)
{
	int st;

	(void)child_read(c, deadline, NULL);
	close(c->out);
	while (waitpid(c->pid, &st, WNOHANG) == 0) {
		if (bench_now() >= deadline) {
			kill(c->pid, SIGKILL);
			waitpid(c->pid, &st, 0);
			return -1;
		}
		usleep(20000);
	}
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Runs ARGV to its end (at most SECS); its stdout in C->buf; the exit status. */
static int
run(struct child *c, const char *const argv[], double secs)
{
	child_start(c, argv);
	return child_finish(c, bench_now() + secs);
}

/* ---------------------------------------------------------------------- */
/* The daemon */

static bool
connectable(const char *path)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	bool ok;

	snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
	ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
	if (fd >= 0)
		close(fd);
	return ok;
}

/* vmfabricd on the private socket, its output into its log; its pid. */
static pid_t
daemon_spawn(void)
{
	pid_t pid;

	fflush(NULL);
	pid = fork();
	if (pid < 0)
		die("fork: %s", strerror(errno));
	if (pid == 0) {
		int log = open(fab.log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
		if (log >= 0) {
			dup2(log, STDOUT_FILENO);
			dup2(log, STDERR_FILENO);
		}
		execl(VMFABRICD_PATH, "vmfabricd", "-c", fab.conf, "-s", fab.sock, "-l", "info",
		      (char *)NULL);
		_exit(127);
	}
	return pid;
}

/* KVM if $VMF_ACCEL says so or a probe boot shows it runs the guest, else TCG. */
static void
accel_choose(char *accel, size_t len)
{
	char kernel[1100], initrd[1100];
	const char *e = getenv("VMF_ACCEL");
	struct child c;

	if (e && *e) {
		snprintf(accel, len, "%s", e);
		return;
	}
	snprintf(kernel, sizeof(kernel), "%s/vmlinuz", fab.guest);
	snprintf(initrd, sizeof(initrd), "%s/initramfs.cpio.gz", fab.guest);
	fprintf(stderr, "# probing KVM (set VMF_ACCEL=kvm|tcg to skip)\n");
	if (run(&c, (const char *const[]){ VMFABRICD_PATH, "--probe-accel", kernel, initrd, NULL },
		60) != 0)
		die("vmfabricd --probe-accel failed (see %s)", fab.log);
	snprintf(accel, len, "%s", strncmp(c.buf, "kvm", 3) == 0 ? "kvm" : "tcg");
}

static void
fabric_start(void)
{
	char accel[16];
	FILE *f;

	snprintf(fab.dir, sizeof(fab.dir), "/tmp/vmf-bench-vm-XXXXXX");
	if (!mkdtemp(fab.dir))
		die("mkdtemp: %s", strerror(errno));
	atexit(fabric_stop);
	snprintf(fab.sock, sizeof(fab.sock), "%s/vmfabricd.sock", fab.dir);
	snprintf(fab.conf, sizeof(fab.conf), "%s/host.cfg", fab.dir);
	snprintf(fab.log, sizeof(fab.log), "%s/vmfabricd.log", fab.dir);
	accel_choose(accel, sizeof(accel));
	f = fopen(fab.conf, "w");
	if (!f)
		die("%s: %s", fab.conf, strerror(errno));
	fprintf(f, "vmfabricd.accel = \"%s\"\n", accel);
	fclose(f);
	/* The host end acts as the host context, on this daemon. */
	setenv("VMFABRIC_SOCKET", fab.sock, 1);
	unsetenv("VMFABRIC_CONTEXT");
	fab.daemon = daemon_spawn();
	for (int i = 0; i < 500 && !connectable(fab.sock); i++) {
		if (waitpid(fab.daemon, NULL, WNOHANG) == fab.daemon) {
			fab.daemon = 0;
			die("vmfabricd exited at start (see %s)", fab.log);
		}
		usleep(10000);
	}
	if (!connectable(fab.sock))
		die("vmfabricd did not listen within 5 s (see %s)", fab.log);
}

/* Is PID still a QEMU process (not reaped, not reused)? */
static bool
is_qemu(pid_t pid)
{
	char path[64], comm[64] = "";
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return false;
	if (!fgets(comm, sizeof(comm), f))
		comm[0] = 0;
	fclose(f);
	return strncmp(comm, "qemu", 4) == 0;
}

/*
 * Stops the daemon, which stops its VMs; any QEMU it left behind is
 * killed. The directory goes too, unless a run failed (its logs say why).
 */
static void
fabric_stop(void)
{
	char cmd[128];
	int st;

	if (fab.host > 0) {
		kill(fab.host, SIGKILL);
		waitpid(fab.host, NULL, 0);
		fab.host = 0;
	}
	if (fab.daemon > 0) {
		pid_t gone = 0;

		kill(fab.daemon, SIGTERM); /* it stops its VMs first */
		for (int i = 0; i < 300 && !gone; i++) {
			gone = waitpid(fab.daemon, &st, WNOHANG);
			if (!gone)
				usleep(50000);
		}
		if (!gone) {
			kill(fab.daemon, SIGKILL);
			waitpid(fab.daemon, &st, 0);
		}
		fab.daemon = 0;
	}
	for (int i = 0; i < fab.nvms; i++)
		if (is_qemu(fab.vms[i].qemu))
			kill(fab.vms[i].qemu, SIGKILL);
	fab.nvms = 0;
	if (!fab.dir[0])
		return;
	if (fab.failed) {
		fprintf(stderr, "bench vm: logs kept in %s\n", fab.dir);
	} else {
		snprintf(cmd, sizeof(cmd), "rm -rf %s", fab.dir);
		if (system(cmd)) {
		}
	}
	fab.dir[0] = 0;
}

/* ---------------------------------------------------------------------- */
/* VMs */

/* The number after "KEY": in the CLI's JSON, or -1. */
static long
json_number(const char *json, const char *key)
{
	char k[32];
	const char *p;

	snprintf(k, sizeof(k), "\"%s\":", key);
	p = strstr(json, k);
	return p ? strtol(p + strlen(k), NULL, 10) : -1;
}

/* The string after "KEY": in the CLI's JSON into BUF, or "". */
static void
json_string(const char *json, const char *key, char *buf, size_t len)
{
	char k[32];
	const char *p;
	size_t n = 0;

	snprintf(k, sizeof(k), "\"%s\":", key);
	p = strstr(json, k);
	p = p ? strchr(p + strlen(k), '"') : NULL;
	for (p = p ? p + 1 : ""; *p && *p != '"' && n + 1 < len; p++)
		buf[n++] = *p;
	buf[n] = 0;
}

/*
 * Starts VM NAME running CMD in the guest, with NIC ethernet0 of that
 * model on "VM Network" (NULL: none); its CID, or 0 (said on stderr).
 */
static unsigned
vm_start(const char *name, const char *cmd, const char *nic)
{
	char vmx[128], accel[8];
	struct child c;
	long cid, pid;
	int st;
	FILE *f;

	snprintf(vmx, sizeof(vmx), "%s/%s.vmx", fab.dir, name);
	f = fopen(vmx, "w");
	if (!f)
		die("%s: %s", vmx, strerror(errno));
	fprintf(f, "displayName = \"%s\"\nmemsize = \"256\"\nvmci0.present = \"TRUE\"\n", name);
	if (nic)
		fprintf(f, "ethernet0.present = \"TRUE\"\nethernet0.virtualDev = \"%s\"\n", nic);
	fprintf(f, "vmfabric.kernel = \"%s/vmlinuz\"\nvmfabric.initrd = \"%s/initramfs.cpio.gz\"\n",
		fab.guest, fab.guest);
	/* |22 is a double quote in .vmx values. */
	fprintf(f, "vmfabric.append = \"panic=-1 vmf.cmd=|22%s|22\"\n", cmd);
	fclose(f);
	st = run(&c,
		 (const char *const[]){ VMFABRIC_CLI_PATH, "--socket", fab.sock, "vm", "start",
					"--format=json", vmx, NULL },
		 30);
	cid = json_number(c.buf, "cid");
	pid = json_number(c.buf, "pid");
	json_string(c.buf, "accel", accel, sizeof(accel));
	if (st != 0 || cid < 3 || pid <= 0 || !accel[0]) {
		fprintf(stderr, "bench vm: vm start %s: exit status %d, answer \"%s\" (see %s)\n",
			name, st, c.buf, fab.log);
		return 0;
	}
	if (fab.nvms < VMS_MAX) {
		fab.vms[fab.nvms].qemu = (pid_t)pid;
		snprintf(fab.vms[fab.nvms++].name, sizeof(fab.vms[0].name), "%s", name);
	}
	if (fab.accel[0] && strcmp(fab.accel, accel))
		die("VMs ran under %s, then %s", fab.accel, accel);
	snprintf(fab.accel, sizeof(fab.accel), "%s", accel);
	return (unsigned)cid;
}

/*
 * Waits until DEADLINE for a line of VM NAME's console that holds NEEDLE
 * (not the kernel's echo of its command line) and copies it to LINE.
 * 0, -ETIMEDOUT, or -ESRCH when the guest powered off without it.
 */
static int
console_wait(const char *name, const char *needle, double deadline, char *line, size_t len)
{
	char path[192], buf[1024];

	snprintf(path, sizeof(path), "%s/vms/%s/console.log", fab.dir, name);
	while (bench_now() < deadline) {
		FILE *f = fopen(path, "r");
		bool off = false;

		check_interrupted();
		while (f && fgets(buf, sizeof(buf), f)) {
			off |= strstr(buf, "vmf-guest: powering off") != NULL;
			/* Whole lines only: the guest may be in the middle of one. */
			if (strstr(buf, needle) && !strstr(buf, "vmf.cmd") && strchr(buf, '\n')) {
				buf[strcspn(buf, "\r\n")] = 0;
				snprintf(line, len, "%s", buf);
				fclose(f);
				return 0;
			}
		}
		if (f)
			fclose(f);
		if (off)
			return -ESRCH;
		usleep(50000);
	}
	return -ETIMEDOUT;
}

/*
 * Ends the VMs of this run: waits up to WAIT_S seconds for them to power
 * off, then stops the rest with `vm stop` (QEMU is killed if even that fails).
 */
static void
vms_end(double wait_s)
{
	double deadline = bench_now() + wait_s;
	struct child c;

	for (int i = 0; i < fab.nvms; i++) {
		while (is_qemu(fab.vms[i].qemu) && bench_now() < deadline) {
			check_interrupted();
			usleep(50000);
		}
		if (!is_qemu(fab.vms[i].qemu))
			continue;
		if (wait_s > 0) {
			fprintf(stderr, "bench vm: %s did not power off: stopping it\n",
				fab.vms[i].name);
			fab.failed++;
		}
		run(&c,
		    (const char *const[]){ VMFABRIC_CLI_PATH, "--socket", fab.sock, "vm", "stop",
					   fab.vms[i].name, NULL },
		    30);
		if (is_qemu(fab.vms[i].qemu))
			kill(fab.vms[i].qemu, SIGKILL);
	}
	fab.nvms = 0;
}

static int run_failed(const char *name, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A run went wrong: says why, shows the end of VM NAME's console, ends the VMs. */
static int
run_failed(const char *name, const char *fmt, ...)
{
	char cmd[256];
	va_list ap;

	fprintf(stderr, "bench vm: %s: ", name);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	snprintf(cmd, sizeof(cmd),
		 "f=%s/vms/%s/console.log; [ ! -f $f ] || { echo 'its console ends:'; tail -n 15 "
		 "$f; } >&2",
		 fab.dir, name);
	if (system(cmd)) {
	}
	fab.failed++;
	vms_end(0);
	return -1;
}

/* ---------------------------------------------------------------------- */
/* The runs */

/* Gbit/s of a VMF-RESULT line that says ok=1, else NAN. */
static double
result_gbit(const char *line)
{
	const char *p = strstr(line, " gbit_s=");

	if (!strstr(line, " ok=1") || !p)
		return NAN;
	return strtod(p + 8, NULL);
}

struct xfer {
	unsigned long long bytes;
	unsigned timeout; /* seconds for vmf-vsock's --timeout */
	double deadline;  /* for the whole run */
	int round;
};

static void
xfer_init(struct xfer *x, unsigned long long bytes, int round)
{
	x->bytes = bytes;
	x->timeout = BOOT_S + (unsigned)(bytes / MIN_BYTES_S);
	x->deadline = bench_now() + BOOT_S + x->timeout;
	x->round = round;
}

/* The host end: vmf-vsock-host ARGS (NULL-terminated, at most 4) --timeout T. */
static void
host_start(struct child *h, const struct xfer *x, const char *const args[])
{
	const char *argv[8] = { VMF_VSOCK_HOST_PATH };
	char timeout[16];
	int n = 1;

	snprintf(timeout, sizeof(timeout), "%u", x->timeout);
	for (int i = 0; args[i] && n < 5; i++)
		argv[n++] = args[i];
	argv[n++] = "--timeout";
	argv[n++] = timeout;
	argv[n] = NULL;
	child_start(h, argv);
	fab.host = h->pid;
}

/* Waits for the host end to exit (killed at DEADLINE); its VMF-RESULT line or "". */
static const char *
host_finish(struct child *h, double deadline)
{
	char *p;

	(void)child_read(h, deadline, "VMF-RESULT");
	child_finish(h, deadline);
	fab.host = 0;
	p = strstr(h->buf, "VMF-RESULT");
	if (!p)
		return "";
	p[strcspn(p, "\n")] = 0;
	return p;
}

/* guest_to_host: the guest sends, vmf-vsock-host receives; the guest's figure. */
static int
run_g2h(const struct xfer *x, double *gbit)
{
	char name[32], cmd[128], port[16], line[1024];
	struct child h;
	const char *hr;

	snprintf(name, sizeof(name), "g2h-%d", x->round);
	snprintf(port, sizeof(port), "%d", 5000 + x->round);
	host_start(&h, x, (const char *const[]){ "recv", port, NULL });
	if (child_read(&h, bench_now() + 10, "VMF-READY") < 0) {
		kill(h.pid, SIGTERM);
		host_finish(&h, bench_now() + 5);
		return run_failed(name, "vmf-vsock-host recv did not get ready");
	}
	snprintf(cmd, sizeof(cmd), "vmf-vsock send 2 %s %llu --timeout %u", port, x->bytes,
		 x->timeout);
	if (!vm_start(name, cmd, NULL)) {
		kill(h.pid, SIGTERM);
		host_finish(&h, bench_now() + 5);
		return run_failed(name, "the VM did not start");
	}
	if (console_wait(name, "VMF-RESULT", x->deadline, line, sizeof(line)) < 0) {
		kill(h.pid, SIGTERM);
		host_finish(&h, bench_now() + 5);
		return run_failed(name, "no result from the guest");
	}
	hr = host_finish(&h, x->deadline);
	gbit[0] = result_gbit(line);
	fprintf(stderr, "# round %d %s: guest sender %.3f Gbit/s (host receiver %.3f)\n",
		x->round + 1, path_name[GUEST_TO_HOST], gbit[0], result_gbit(hr));
	if (isnan(gbit[0]) || isnan(result_gbit(hr)))
		return run_failed(name, "a transfer failed: guest: %s; host: %s", line, hr);
	return 0;
}

/* host_to_guest: vmf-vsock-host sends, the guest receives; the guest's figure. */
static int
run_h2g(const struct xfer *x, double *gbit)
{
	char name[32], cmd[128], port[16], cid[16], bytes[32], line[1024];
	struct child h;
	const char *hr;
	unsigned vcid;

	snprintf(name, sizeof(name), "h2g-%d", x->round);
	snprintf(port, sizeof(port), "%d", 6000 + x->round);
	snprintf(cmd, sizeof(cmd), "vmf-vsock recv %s --timeout %u", port, x->timeout);
	vcid = vm_start(name, cmd, NULL);
	if (!vcid)
		return run_failed(name, "the VM did not start");
	snprintf(cid, sizeof(cid), "%u", vcid);
	if (console_wait(name, "VMF-READY", bench_now() + BOOT_S, line, sizeof(line)) < 0)
		return run_failed(name, "the guest's receiver did not get ready");
	snprintf(bytes, sizeof(bytes), "%llu", x->bytes);
	host_start(&h, x, (const char *const[]){ "send", cid, port, bytes, NULL });
	hr = host_finish(&h, x->deadline);
	if (isnan(result_gbit(hr)))
		return run_failed(name, "the host's sender failed: %s", hr);
	if (console_wait(name, "VMF-RESULT", x->deadline, line, sizeof(line)) < 0)
		return run_failed(name, "no result from the guest");
	gbit[0] = result_gbit(line);
	fprintf(stderr, "# round %d %s: guest receiver %.3f Gbit/s (host sender %.3f)\n",
		x->round + 1, path_name[HOST_TO_GUEST], gbit[0], result_gbit(hr));
	if (isnan(gbit[0]))
		return run_failed(name, "the transfer failed: %s", line);
	return 0;
}

/*
 * The second half of a guest pair's run: guest A (NIC model NIC, or none)
 * runs CMD, which sends to guest B, whose receiver is ready; A's figure in
 * GBIT[1], B's in GBIT[0]. WHAT names the path in the progress line.
 */
static int
run_pair_sender(const struct xfer *x, double *gbit, const char *a, const char *b, const char *cmd,
		const char *nic, const char *what)
{
	char line[1024], rline[1024];

	if (!vm_start(a, cmd, nic))
		return run_failed(a, "the VM did not start");
	if (console_wait(a, "VMF-RESULT", x->deadline, line, sizeof(line)) < 0)
		return run_failed(a, "no result from the sending guest");
	gbit[1] = result_gbit(line);
	if (isnan(gbit[1]))
		return run_failed(a, "the sender failed: %s", line);
	if (console_wait(b, "VMF-RESULT", x->deadline, rline, sizeof(rline)) < 0)
		return run_failed(b, "no result from the receiving guest");
	gbit[0] = result_gbit(rline);
	fprintf(stderr, "# round %d %s: guest receiver %.3f Gbit/s, guest sender %.3f\n",
		x->round + 1, what, gbit[0], gbit[1]);
	if (isnan(gbit[0]))
		return run_failed(b, "the receiver failed: %s", rline);
	return 0;
}

/* guest_to_guest: A sends to B; B's figure in GBIT[0], A's in GBIT[1]. */
static int
run_g2g(const struct xfer *x, double *gbit)
{
	char a[32], b[32], cmd[128], line[1024];
	unsigned port = 7000 + (unsigned)x->round, bcid;

	snprintf(a, sizeof(a), "g2g-a-%d", x->round);
	snprintf(b, sizeof(b), "g2g-b-%d", x->round);
	snprintf(cmd, sizeof(cmd), "vmf-vsock recv %u --timeout %u", port, x->timeout);
	bcid = vm_start(b, cmd, NULL);
	if (!bcid)
		return run_failed(b, "the VM did not start");
	if (console_wait(b, "VMF-READY", bench_now() + BOOT_S, line, sizeof(line)) < 0)
		return run_failed(b, "the guest's receiver did not get ready");
	snprintf(cmd, sizeof(cmd), "vmf-vsock send %u %u %llu --timeout %u", bcid, port, x->bytes,
		 x->timeout);
	return run_pair_sender(x, gbit, a, b, cmd, NULL, path_name[GUEST_TO_GUEST]);
}

/* TCP from guest A to guest B over NICs of model NIC; B's figure in GBIT[0], A's in GBIT[1]. */
static int
run_tcp(const struct xfer *x, double *gbit, const char *nic)
{
	char a[32], b[32], cmd[256], line[1024], what[32];
	unsigned port = 7100 + (unsigned)x->round;

	snprintf(a, sizeof(a), "%s-a-%d", nic, x->round);
	snprintf(b, sizeof(b), "%s-b-%d", nic, x->round);
	snprintf(cmd, sizeof(cmd),
		 "ip addr add 10.77.0.2/24 dev eth0; ip link set eth0 up; "
		 "vmf-tcp recv %u --timeout %u",
		 port, x->timeout);
	if (!vm_start(b, cmd, nic))
		return run_failed(b, "the VM did not start");
	if (console_wait(b, "VMF-READY", bench_now() + BOOT_S, line, sizeof(line)) < 0)
		return run_failed(b, "the guest's receiver did not get ready");
	/* The ping resolves B's address and waits for the link before the clock starts. */
	snprintf(cmd, sizeof(cmd),
		 "ip addr add 10.77.0.1/24 dev eth0; ip link set eth0 up; ping -c 1 -W 10 10.77.0.2 "
		 ">/dev/null; vmf-tcp send 10.77.0.2 %u %llu --timeout %u",
		 port, x->bytes, x->timeout);
	snprintf(what, sizeof(what), "TCP over %s", nic);
	return run_pair_sender(x, gbit, a, b, cmd, nic, what);
}

static int
run_tcp_virtio(const struct xfer *x, double *gbit)
{
	return run_tcp(x, gbit, "virtio");
}

static int
run_tcp_vmxnet3(const struct xfer *x, double *gbit)
{
	return run_tcp(x, gbit, "vmxnet3");
}

/* Each path's run: 0 with the guests' figures in GBIT, or -1 (said on stderr). */
static int (*const path_run[NPATHS])(const struct xfer *x, double *gbit) = {
	run_g2h, run_h2g, run_g2g, run_tcp_virtio, run_tcp_vmxnet3
};

/* ---------------------------------------------------------------------- */

/* The figures of one path and end over the rounds. */
struct series {
	double v[ROUNDS_MAX];
	int n;
};

static double
median(struct series *s)
{
	return s->n ? bench_percentile(s->v, (size_t)s->n, 50) : NAN;
}

/* A line of bench NAME for series S, with FIELDS (a JSON fragment) first. */
static void
emit_line(const char *name, const char *system, const char *fields_in, struct series *s,
	  unsigned long long bytes)
{
	char fields[384];
	double lo = INFINITY, hi = -INFINITY;

	if (!s->n)
		return;
	for (int i = 0; i < s->n; i++) {
		lo = s->v[i] < lo ? s->v[i] : lo;
		hi = s->v[i] > hi ? s->v[i] : hi;
	}
	snprintf(fields, sizeof(fields),
		 "%s,\"accel\":\"%s\",\"transfer_bytes\":%llu,\"runs\":%d,\"min\":%.4g,"
		 "\"max\":%.4g",
		 fields_in, fab.accel, bytes, s->n, lo, hi);
	bench_emit_fields(name, system, CHUNK, "blocking", fields, "gbit_s", median(s));
}

static void
emit(enum path p, const char *end, struct series *s, unsigned long long bytes)
{
	char fields[96];

	snprintf(fields, sizeof(fields), "\"path\":\"%s\",\"end\":\"%s\"", path_name[p], end);
	emit_line(BENCH_NAME, "vmfabric", fields, s, bytes);
}

static void
add(struct series *s, double v)
{
	if (s->n < ROUNDS_MAX)
		s->v[s->n++] = v;
}

/* The guest image and QEMU, or exits 0 with the reason (nothing measured). */
static void
find_guest(void)
{
	const char *dir = getenv("VMFABRIC_GUEST_DIR");
	char path[1100];
	struct stat st;

	snprintf(fab.guest, sizeof(fab.guest), "%s",
		 dir && *dir ? dir : VMFABRIC_SRC_DIR "/build/guest");
	snprintf(path, sizeof(path), "%s/initramfs.cpio.gz", fab.guest);
	if (stat(path, &st) < 0) {
		fprintf(stderr, "bench vm: skipped: no guest image in %s (make guest)\n",
			fab.guest);
		exit(0);
	}
	if (system("command -v qemu-system-x86_64 >/dev/null 2>&1") != 0) {
		fprintf(stderr, "bench vm: skipped: no qemu-system-x86_64 (tools/setup-deps vm)\n");
		exit(0);
	}
}

int
main(int argc, char **argv)
{
	struct series s[NPATHS][2] = { 0 };
	struct bench_opts o;
	unsigned long long bytes;
	int rounds;

	bench_parse(argc, argv, &o,
		    "QEMU guests on vmfabricd: vsock streams guest to host, host to guest, guest\n"
		    "to guest; TCP guest to guest over virtio-net and over emulated vmxnet3, as\n"
		    "the guests' vmf-vsock and vmf-tcp measure them ($VMF_ACCEL: kvm|tcg)");
	if (o.only && strncmp(BENCH_NAME, o.only, strlen(o.only)) &&
	    strncmp("vswitch_paravirt", o.only, strlen(o.only)) &&
	    strncmp("vm_vsock_vs_tcp", o.only, strlen(o.only)))
		return bench_report();
	bytes = o.quick ? 32ull << 20 : 256ull << 20;
	rounds = o.quick ? 1 : ROUNDS_MAX;
	signal(SIGPIPE, SIG_IGN);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	find_guest();
	fabric_start();
	for (int r = 0; r < rounds; r++) {
		for (int p = 0; p < NPATHS; p++) {
			double g[2] = { NAN, NAN };
			struct xfer x;

			xfer_init(&x, bytes, r);
			if (path_run[p](&x, g) == 0) {
				add(&s[p][0], g[0]);
				if (p >= GUEST_TO_GUEST)
					add(&s[p][1], g[1]);
			}
			vms_end(30);
		}
	}
	emit(GUEST_TO_HOST, "sender", &s[GUEST_TO_HOST][0], bytes);
	emit(HOST_TO_GUEST, "receiver", &s[HOST_TO_GUEST][0], bytes);
	emit(GUEST_TO_GUEST, "receiver", &s[GUEST_TO_GUEST][0], bytes);
	emit(GUEST_TO_GUEST, "sender", &s[GUEST_TO_GUEST][1], bytes);
	emit_line("vswitch_paravirt", "vmfabric", "\"nic\":\"virtio\",\"end\":\"receiver\"",
		  &s[TCP_VIRTIO][0], bytes);
	emit_line("vswitch_paravirt", "vmfabric", "\"nic\":\"vmxnet3\",\"end\":\"receiver\"",
		  &s[TCP_VMXNET3][0], bytes);
	emit_line("vm_vsock_vs_tcp", "vsock", "\"path\":\"guest_to_guest\",\"end\":\"receiver\"",
		  &s[GUEST_TO_GUEST][0], bytes);
	emit_line("vm_vsock_vs_tcp", "tcp",
		  "\"path\":\"guest_to_guest\",\"nic\":\"virtio\",\"end\":\"receiver\"",
		  &s[TCP_VIRTIO][0], bytes);
	bench_note("vswitch_paravirt: virtio-net over vhost-user / vmxnet3 emulated by QEMU = %.2f",
		   median(&s[TCP_VIRTIO][0]) / median(&s[TCP_VMXNET3][0]));
	bench_note("vm_vsock_vs_tcp: vsock / TCP over virtio-net, guest to guest = %.2f",
		   median(&s[GUEST_TO_GUEST][0]) / median(&s[TCP_VIRTIO][0]));
	bench_note("%s: Gbit/s measured by vmf-vsock inside the guests (QEMU -accel %s, one vCPU,",
		   BENCH_NAME, fab.accel);
	bench_note("  %llu MiB a transfer, median of %d round(s), fresh VMs each run); \"end\" is",
		   bytes >> 20, rounds);
	bench_note("  the guest whose figure it is; the host end is vmf-vsock-host (libvmfabric).");
	fabric_stop();
	bench_report();
	return fab.failed ? 1 : 0;
}
