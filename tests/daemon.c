/* SPDX-License-Identifier: MIT */
/* Test helpers around a private vmfabricd; see daemon.h. */
#include <errno.h>
#include <fcntl.h>
#include <linux/close_range.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/wire_io.h"
#include "daemon.h"
#include "harness.h"

static bool
connectable(const char *path)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	bool ok;

	snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
	ok = connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
	close(fd);
	return ok;
}

void
td_restart(struct tdaemon *d)
{
	d->pid = fork();
	ASSERT_GE(d->pid, 0);
	if (d->pid == 0) {
		int fd = open(d->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
		if (fd >= 0) {
			dup2(fd, STDERR_FILENO);
			close(fd);
		}
		/* Nothing of the test's: a daemon started later has the same descriptors. */
		close_range(3, ~0u, CLOSE_RANGE_CLOEXEC);
		if (d->netns[0])
			execlp("ip", "ip", "netns", "exec", d->netns, VMFABRICD_PATH, "-c", d->conf,
			       "-s", d->sock, "-l", "info", (char *)NULL);
		else
			execl(VMFABRICD_PATH, "vmfabricd", "-c", d->conf, "-s", d->sock, "-l",
			      "info", (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 500; i++) {
		int status;
		if (connectable(d->sock))
			return;
		if (waitpid(d->pid, &status, WNOHANG) == d->pid) {
			char cmd[256];
			snprintf(cmd, sizeof(cmd), "cat %s >&2", d->log);
			if (system(cmd)) {
			}
			th_fail(__FILE__, __LINE__, "vmfabricd exited at start (status 0x%x)", status);
		}
		usleep(10000);
	}
	th_fail(__FILE__, __LINE__, "vmfabricd did not start listening within 5 s");
}

static void start(struct tdaemon *d, const char *config);

void
td_start_ns(struct tdaemon *d, const char *config, const char *ns)
{
	snprintf(d->netns, sizeof(d->netns), "%s", ns);
	start(d, config);
}

void
td_start(struct tdaemon *d, const char *config)
{
	d->netns[0] = 0;
	start(d, config);
}

static void
start(struct tdaemon *d, const char *config)
{
	const char *text = config ? config : TD_CONTEXTS;
	FILE *f;

	snprintf(d->dir, sizeof(d->dir), "/tmp/vmf-test-XXXXXX");
	ASSERT(mkdtemp(d->dir));
	ASSERT_OK(chmod(d->dir, 0755)); /* tests act as other users too */
	snprintf(d->sock, sizeof(d->sock), "%s/vmfabricd.sock", d->dir);
	snprintf(d->conf, sizeof(d->conf), "%s/host.cfg", d->dir);
	snprintf(d->log, sizeof(d->log), "%s/vmfabricd.log", d->dir);
	f = fopen(d->conf, "w");
	ASSERT(f);
	fputs(text, f);
	fclose(f);
	ASSERT_OK(vmci_set_daemon(d->sock));
	ASSERT_OK(setenv("VMFABRIC_SOCKET", d->sock, 1));
	td_restart(d);
}

void
td_kill(struct tdaemon *d, int sig)
{
	int status;

	if (d->pid <= 0)
		return;
	kill(d->pid, sig);
	if (sig == SIGSTOP || sig == SIGCONT)
		return;
	waitpid(d->pid, &status, 0);
	d->pid = 0;
}

void
td_crash(struct tdaemon *d)
{
	char pid[32];

	td_kill(d, SIGKILL);
	td_restart(d);
	snprintf(pid, sizeof(pid), "\"pid\":%d,", (int)d->pid);
	for (int i = 0; i < 500; i++) {
		char *s = td_mgmt(d, "system.status");
		bool up = strstr(s, pid) != NULL;

		free(s);
		if (up)
			return;
		usleep(10000);
	}
	th_fail(__FILE__, __LINE__, "the restarted vmfabricd did not answer within 5 s");
}

void
td_stop(struct tdaemon *d)
{
	int status;

	if (d->pid <= 0)
		return;
	kill(d->pid, SIGTERM);
	ASSERT_EQ(waitpid(d->pid, &status, 0), d->pid);
	d->pid = 0;
	ASSERT(WIFEXITED(status));
	ASSERT_EQ(WEXITSTATUS(status), 0);
}

void
td_cleanup(struct tdaemon *d)
{
	char cmd[128];

	td_kill(d, SIGKILL);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", d->dir);
	if (system(cmd)) {
	}
}

int
td_socket(const char *ctx, int type)
{
	int s;

	ASSERT_OK(vmci_set_context(ctx ? ctx : ""));
	s = vmci_socket(type);
	ASSERT_GE(s, 0);
	return s;
}

struct sockaddr_vm
td_addr(unsigned cid, unsigned port)
{
	return (struct sockaddr_vm){ .svm_family = AF_VSOCK, .svm_cid = cid, .svm_port = port };
}

int
td_listener(const char *ctx, int type, unsigned port)
{
	int s = td_socket(ctx, type);
	struct sockaddr_vm a = td_addr(VMADDR_CID_ANY, port);

	ASSERT_OK(vmci_bind(s, &a));
	ASSERT_OK(vmci_listen(s, 16));
	return s;
}

char *
td_mgmt(struct tdaemon *d, const char *cmd)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	struct wire_mgmt m = { 0 };
	struct wire_hdr h = { .type = WIRE_MGMT, .len = sizeof(m), .seq = 1 };
	struct wire_msg r;
	struct pollfd p;
	char *out;
	int fd;

	snprintf(a.sun_path, sizeof(a.sun_path), "%s", d->sock);
	snprintf(m.cmd, sizeof(m.cmd), "%s", cmd);
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		th_log("connect to %s: %s", d->sock, strerror(errno));
		ASSERT(!"the daemon's control socket refused a connection");
	}
	ASSERT_GT(wire_send(fd, &h, &m, NULL, 0), 0);
	p = (struct pollfd){ .fd = fd, .events = POLLIN };
	ASSERT_EQ(poll(&p, 1, 5000), 1);
	ASSERT_GT(wire_recv(fd, &r, 0), 0);
	ASSERT_EQ(r.hdr.status, 0);
	ASSERT_EQ(r.nfds, 1);
	out = calloc(1, r.body.mgmt.out_len + 1);
	ASSERT_EQ(pread(r.fds[0], out, r.body.mgmt.out_len, 0), (ssize_t)r.body.mgmt.out_len);
	close(r.fds[0]);
	close(fd);
	return out;
}


int
td_run(const char *cmd, char *out, size_t len)
{
	FILE *p = popen(cmd, "r");
	size_t n = 0;
	int status;

	ASSERT(p);
	while (n + 1 < len && fgets(out + n, (int)(len - n), p))
		n += strlen(out + n);
	out[n] = 0;
	status = pclose(p);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

int
td_sh(const char *fmt, ...)
{
	char cmd[2048];
	va_list ap;
	int st;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	st = system(cmd);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}
