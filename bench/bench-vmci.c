/* SPDX-License-Identifier: MIT */
/*
 * bench/run vmci: VMCI sockets through a private vmfabricd against the
 * kernel's sockets, two pinned processes each, in the same run:
 *   vmci_stream  one-way stream, 64 B / 4 KiB / 64 KiB writes (gbit_s)
 *   vmci_rr      64 B request/response, blocking and busy-poll (rtt_us)
 *   vmci_crr     connect, 64 B request, 64 B response, close (conn_s)
 *   vmci_dgram   64 B and 1 KiB datagrams, sender flat out (msgs_s counts
 *                what was delivered; drop_pct beside it)
 *   vmci_idle    the daemon's resident memory when idle (rss_kib)
 *   vmci_scale   1,000 contexts and 10,000 open streams on one daemon: the
 *                memory it took (rss_kib, kib_per_stream) and setup rate
 * Peers: tcp_loopback, af_unix, udp_loopback (plain sendto/recvfrom).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"
#include "common/proc.h"
#include "ends.h"
#include "vmfabric/vmci.h"

#define VMCI_SYSTEMS (1u << BSYS_VMCI | 1u << BSYS_TCP | 1u << BSYS_UNIX)

static void
die(const char *what, int err)
{
	fprintf(stderr, "bench vmci: %s: %s\n", what, strerror(err < 0 ? -err : err));
	exit(1);
}

/* A private vmfabricd with @contexts process contexts ctx0.. (a = CID 3, b = CID 4). */
static void
daemon_start(struct bench_daemon *d, int contexts)
{
	size_t len = (size_t)contexts * 160 + 1, off = 0;
	char *conf = malloc(len);

	if (!conf)
		die("config", ENOMEM);
	conf[0] = 0;
	for (int i = 0; i < contexts; i++) {
		char name[16];

		if (i < 2)
			snprintf(name, sizeof(name), "%s", i ? "b" : "a");
		else
			snprintf(name, sizeof(name), "ctx%d", i);
		off += (size_t)snprintf(conf + off, len - off,
					"context%d.name = \"%s\"\ncontext%d.vmci0.id = \"%d\"\n"
					"context%d.vmci0.present = \"TRUE\"\ncontext%d.uid = \"0\"\n",
					i, name, i, i + 3, i, i);
	}
	bench_daemon_start(d, VMFABRICD_PATH, conf);
	free(conf);
}

#define daemon_stop bench_daemon_stop

/* ---------------------------------------------------------------------- */
/* Connect, request, response, close */

/*
 * CRR_FRESH is VMCI with queue-pair reuse off (VMFABRIC_QP_REUSE=0): every
 * connection makes, maps and tears down its own queue pair, as the first
 * connection between two processes does.
 */
enum { CRR_VMCI, CRR_FRESH, CRR_TCP, CRR_UNIX, CRR_N };
static const char *const crr_name[CRR_N] = { "vmfabric_vmci", "vmfabric_vmci", "tcp_loopback",
					     "af_unix" };
static const char *const crr_mode[CRR_N] = { "blocking", "no_qp_reuse", "blocking", "blocking" };

struct crr {
	int kind, l;
	struct sockaddr_in in;
	struct sockaddr_un un;
	unsigned port;
};

static int
crr_dial(struct crr *c)
{
	int s;

	if (c->kind <= CRR_FRESH) {
		struct sockaddr_vm a = { .svm_family = AF_VSOCK, .svm_cid = 3, .svm_port = c->port };
		s = vmci_socket(SOCK_STREAM);
		if (s >= 0 && vmci_connect(s, &a) < 0) {
			vmci_close(s);
			return -1;
		}
		return s;
	}
	s = socket(c->kind == CRR_TCP ? AF_INET : AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s >= 0 && connect(s, c->kind == CRR_TCP ? (struct sockaddr *)&c->in
						     : (struct sockaddr *)&c->un,
			      c->kind == CRR_TCP ? sizeof(c->in) : sizeof(c->un)) < 0) {
		close(s);
		return -1;
	}
	return s;
}

static ssize_t
crr_io(const struct crr *c, int s, void *buf, size_t len, bool out)
{
	if (c->kind <= CRR_FRESH)
		return out ? vmci_send(s, buf, len, 0) : vmci_recv(s, buf, len, 0);
	return out ? write(s, buf, len) : read(s, buf, len);
}

static void
crr_close(const struct crr *c, int s)
{
	if (c->kind <= CRR_FRESH)
		vmci_close(s);
	else
		close(s);
}

static void
crr_listen(struct crr *c, int kind)
{
	static unsigned port = 30000;
	socklen_t len = sizeof(c->in);

	c->kind = kind;
	c->port = ++port;
	if (kind <= CRR_FRESH) {
		struct sockaddr_vm a = { .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY,
					 .svm_port = c->port };
		vmci_set_context("a");
		c->l = vmci_socket(SOCK_STREAM);
		if (c->l < 0 || vmci_bind(c->l, &a) || vmci_listen(c->l, 128))
			die("vmci listen", EINVAL);
		vmci_set_context("b");
		return;
	}
	c->l = socket(kind == CRR_TCP ? AF_INET : AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (kind == CRR_TCP) {
		c->in = (struct sockaddr_in){ .sin_family = AF_INET,
					      .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
		if (bind(c->l, (struct sockaddr *)&c->in, sizeof(c->in)) ||
		    getsockname(c->l, (struct sockaddr *)&c->in, &len))
			die("tcp bind", errno);
	} else {
		c->un = (struct sockaddr_un){ .sun_family = AF_UNIX };
		snprintf(c->un.sun_path, sizeof(c->un.sun_path), "/tmp/vmf-crr-%d-%u", (int)getpid(),
			 c->port);
		unlink(c->un.sun_path);
		if (bind(c->l, (struct sockaddr *)&c->un, sizeof(c->un)))
			die("unix bind", errno);
	}
	if (listen(c->l, 128))
		die("listen", errno);
}

/* Connections per second: the child dials flat out, the parent serves. */
static double
crr_once(const struct bench_opts *o, int kind)
{
	double dur = o->quick ? 0.4 : 1.5, t0 = 0, t1;
	char buf[64] = { 7 };
	long done = 0;
	struct crr c;
	pid_t pid;

	if (kind == CRR_FRESH)
		setenv("VMFABRIC_QP_REUSE", "0", 1);
	crr_listen(&c, kind);
	pid = bench_fork(o);
	if (pid == 0) {
		for (;;) {
			int s = crr_dial(&c);
			if (s < 0)
				continue;
			if (crr_io(&c, s, buf, 64, true) == 64)
				(void)crr_io(&c, s, buf, 64, false);
			crr_close(&c, s);
		}
	}
	double start = bench_now();
	for (;;) {
		int s = kind <= CRR_FRESH ? vmci_accept(c.l, NULL, 0)
					 : accept4(c.l, NULL, NULL, SOCK_CLOEXEC);
		t1 = bench_now();
		if (s < 0)
			continue;
		if (crr_io(&c, s, buf, 64, false) == 64)
			(void)crr_io(&c, s, buf, 64, true);
		crr_close(&c, s);
		if (!t0 && t1 - start > 0.1)
			t0 = t1;
		else if (t0)
			done++;
		if (t0 && t1 - t0 >= dur)
			break;
	}
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	crr_close(&c, c.l);
	unsetenv("VMFABRIC_QP_REUSE");
	if (kind == CRR_UNIX)
		unlink(c.un.sun_path);
	return (double)done / (t1 - t0);
}

static void
run_crr(const struct bench_opts *o)
{
	int rounds = o->quick ? 1 : 5;
	double v[CRR_N][5];

	for (int r = 0; r < rounds; r++)
		for (int k = 0; k < CRR_N; k++)
			v[k][r] = crr_once(o, k);
	for (int k = 0; k < CRR_N; k++)
		bench_emit("vmci_crr", crr_name[k], 64, crr_mode[k], "conn_s",
			   bench_percentile(v[k], (size_t)rounds, 50));
}

/* ---------------------------------------------------------------------- */
/* Datagrams */

struct dg_shared {
	_Atomic uint64_t sent;
	_Atomic int stop;
};

static void
dgram_once(const struct bench_opts *o, bool vmci, size_t size, double *rate, double *drop_pct)
{
	static char buf[2048];
	struct dg_shared *sh = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
				    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	double dur = o->quick ? 0.4 : 1.5, t0, t1;
	struct sockaddr_in in = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct sockaddr_vm vm = { .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY,
				  .svm_port = 40000 };
	socklen_t len = sizeof(in);
	uint64_t got = 0, got0 = 0, got1 = 0;
	int r, tmo = 1;
	pid_t pid;

	if (vmci) {
		vmci_set_context("a");
		r = vmci_socket(SOCK_DGRAM);
		if (r < 0 || vmci_bind(r, &vm))
			die("vmci dgram bind", EINVAL);
		vm.svm_cid = 3;
	} else {
		r = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
		if (bind(r, (struct sockaddr *)&in, sizeof(in)) ||
		    getsockname(r, (struct sockaddr *)&in, &len))
			die("udp bind", errno);
	}
	pid = bench_fork(o);
	if (pid == 0) {
		int s;
		if (vmci) {
			vmci_set_context("b");
			s = vmci_socket(SOCK_DGRAM);
		} else {
			s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
		}
		while (!atomic_load_explicit(&sh->stop, memory_order_relaxed)) {
			ssize_t n = vmci ? vmci_sendto(s, buf, size, 0, &vm)
					 : sendto(s, buf, size, 0, (struct sockaddr *)&in, sizeof(in));
			if (n == (ssize_t)size)
				atomic_fetch_add_explicit(&sh->sent, 1, memory_order_relaxed);
		}
		_exit(0);
	}
	struct timeval tv = { 0, 50000 };
	if (vmci)
		vmci_setsockopt(r, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	else
		setsockopt(r, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	t0 = bench_now() + 0.1;
	t1 = t0 + dur;
	uint64_t sent0 = 0;
	for (;;) {
		ssize_t n = vmci ? vmci_recv(r, buf, sizeof(buf), 0) : recv(r, buf, sizeof(buf), 0);
		double now = bench_now();
		if (n >= 0)
			got++;
		if (!got0 && now >= t0) {
			got0 = got;
			sent0 = atomic_load(&sh->sent);
		}
		if (got0 && !got1 && now >= t1) {
			got1 = got;
			atomic_store(&sh->stop, 1);
			tmo = 0;
		}
		if (!tmo && n < 0)
			break; /* drained: nothing more for 50 ms */
	}
	waitpid(pid, NULL, 0);
	*rate = (double)(got1 - got0) / dur;
	/* Everything sent from t0 on that never arrived. */
	uint64_t sent = atomic_load(&sh->sent) - sent0, recvd = got - got0;
	*drop_pct = sent ? 100.0 * (double)(sent > recvd ? sent - recvd : 0) / (double)sent : 0;
	if (vmci)
		vmci_close(r);
	else
		close(r);
	munmap(sh, 4096);
}

static void
run_dgram(const struct bench_opts *o)
{
	static const size_t sizes[] = { 64, 1024 };
	int rounds = o->quick ? 1 : 5;

	for (size_t i = 0; i < 2; i++) {
		double rate[2][5], drop[2][5];
		for (int r = 0; r < rounds; r++)
			for (int k = 0; k < 2; k++)
				dgram_once(o, k == 0, sizes[i], &rate[k][r], &drop[k][r]);
		for (int k = 0; k < 2; k++) {
			const char *sys = k == 0 ? "vmfabric_vmci" : "udp_loopback";
			bench_emit("vmci_dgram", sys, (long)sizes[i], "blocking", "msgs_s",
				   bench_percentile(rate[k], (size_t)rounds, 50));
			bench_emit("vmci_dgram", sys, (long)sizes[i], "blocking", "drop_pct",
				   bench_percentile(drop[k], (size_t)rounds, 50));
		}
	}
}

/* ---------------------------------------------------------------------- */
/* 1,000 contexts, 10,000 streams */

static void
raise_nofile(rlim_t n)
{
	struct rlimit r = { n, n };

	if (setrlimit(RLIMIT_NOFILE, &r) < 0) {
		getrlimit(RLIMIT_NOFILE, &r);
		r.rlim_cur = r.rlim_max;
		setrlimit(RLIMIT_NOFILE, &r);
	}
}

/*
 * One pair of processes of the scale run: a listener acting as context a
 * on its own port, and a connector opening @n streams to it, each from a
 * context taken in turn from ctx2.. Both write a byte to @ready when all
 * their streams are up, then wait to be killed.
 */
static void
scale_pair(int idx, int n, int contexts, int ready, pid_t *pids)
{
	struct sockaddr_vm a = { .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY,
				 .svm_port = 9000 + (unsigned)idx };
	int l, err;

	vmci_set_context("a");
	l = vmci_socket(SOCK_STREAM);
	if (l < 0 || (err = vmci_bind(l, &a)) || (err = vmci_listen(l, 4096)))
		die("scale listen", l < 0 ? l : err);
	pids[0] = fork();
	if (pids[0] == 0) {
		for (int i = 0; i < n; i++)
			if (vmci_accept(l, NULL, 0) < 0)
				die("scale accept", EIO);
		if (write(ready, "l", 1) != 1)
			_exit(1);
		pause();
		_exit(0);
	}
	pids[1] = fork();
	if (pids[1] == 0) {
		a.svm_cid = 3;
		for (int i = 0; i < n; i++) {
			char name[16];
			int s;

			snprintf(name, sizeof(name), "ctx%d", 2 + (idx * n + i) % (contexts - 2));
			vmci_set_context(name);
			s = vmci_socket(SOCK_STREAM);
			if (s < 0 || (err = vmci_connect(s, &a)))
				die("scale connect", s < 0 ? s : err);
		}
		if (write(ready, "c", 1) != 1)
			_exit(1);
		pause();
		_exit(0);
	}
	vmci_close(l);
}

/*
 * 1,000 contexts, 10,000 streams on one daemon. The streams are spread over
 * five pairs of processes so that no process needs more descriptors than
 * the usual hard limit (20,000) allows: a stream end holds five or six.
 */
static void
run_scale(const struct bench_opts *o)
{
	enum { PAIRS = 5 };
	const int contexts = 1000, streams = o->quick ? 2000 : 10000;
	pid_t pids[PAIRS][2];
	struct bench_daemon d;
	long before, after;
	double t0, t1;
	int p[2];
	char c;

	raise_nofile(200000);
	daemon_start(&d, contexts);
	usleep(100000);
	before = proc_rss_kib(d.pid);
	if (pipe(p))
		die("pipe", errno);
	t0 = bench_now();
	for (int i = 0; i < PAIRS; i++)
		scale_pair(i, streams / PAIRS, contexts, p[1], pids[i]);
	for (int i = 0; i < 2 * PAIRS; i++)
		if (read(p[0], &c, 1) != 1)
			die("scale processes", EIO);
	t1 = bench_now();
	usleep(100000);
	after = proc_rss_kib(d.pid);
	bench_emit("vmci_scale", "vmfabricd", streams, "blocking", "streams", streams);
	bench_emit("vmci_scale", "vmfabricd", streams, "blocking", "contexts", contexts);
	bench_emit("vmci_scale", "vmfabricd", streams, "blocking", "rss_kib", (double)after);
	bench_emit("vmci_scale", "vmfabricd", streams, "blocking", "kib_per_stream",
		   (double)(after - before) / streams);
	bench_emit("vmci_scale", "vmfabricd", streams, "blocking", "setup_conn_s",
		   streams / (t1 - t0));
	for (int i = 0; i < PAIRS; i++)
		for (int k = 0; k < 2; k++) {
			kill(pids[i][k], SIGKILL);
			waitpid(pids[i][k], NULL, 0);
		}
	close(p[0]);
	close(p[1]);
	daemon_stop(&d);
}

static bool
want(const struct bench_opts *o, const char *name)
{
	return !o->only || !strncmp(name, o->only, strlen(o->only));
}

int
main(int argc, char **argv)
{
	struct bench_opts o;
	struct bench_daemon d;
	double x, y;

	bench_parse(argc, argv, &o,
		    "VMCI sockets through vmfabricd vs TCP, AF_UNIX and UDP loopback.");
	signal(SIGPIPE, SIG_IGN);
	daemon_start(&d, 2);
	usleep(200000);
	if (want(&o, "vmci_idle"))
		bench_emit("vmci_idle", "vmfabricd", 0, "idle", "rss_kib", (double)proc_rss_kib(d.pid));
	if (want(&o, "vmci_stream"))
		bench_run_stream(&o, "vmci", VMCI_SYSTEMS, 1u << BMODE_BLOCKING);
	if (want(&o, "vmci_rr"))
		bench_run_rr(&o, "vmci", VMCI_SYSTEMS, 1u << BMODE_BLOCKING | 1u << BMODE_BUSY);
	if (want(&o, "vmci_crr"))
		run_crr(&o);
	if (want(&o, "vmci_dgram"))
		run_dgram(&o);
	daemon_stop(&d);
	if (want(&o, "vmci_scale"))
		run_scale(&o);

	x = bench_value("vmci_stream", "vmfabric_vmci", 65536, "blocking", "gbit_s");
	y = bench_value("vmci_stream", "tcp_loopback", 65536, "blocking", "gbit_s");
	bench_target("stream_64k_vs_tcp", x / y, ">=", 5, "64 KiB stream, VMCI / TCP loopback");
	x = bench_value("vmci_rr", "vmfabric_vmci", 64, "busy_poll", "rtt_us");
	y = bench_value("vmci_rr", "tcp_loopback", 64, "busy_poll", "rtt_us");
	bench_target("rr_busy_poll_vs_tcp", x / y, "<=", 0.1,
		     "busy-poll round trip, VMCI / TCP loopback busy-polling");
	x = bench_value("vmci_dgram", "vmfabric_vmci", 64, "blocking", "msgs_s");
	y = bench_value("vmci_dgram", "udp_loopback", 64, "blocking", "msgs_s");
	bench_target("dgram_64_vs_udp", x / y, ">=", 2, "64 B datagrams delivered, VMCI / UDP");
	x = bench_value("vmci_dgram", "vmfabric_vmci", 1024, "blocking", "msgs_s");
	y = bench_value("vmci_dgram", "udp_loopback", 1024, "blocking", "msgs_s");
	bench_target("dgram_1k_vs_udp", x / y, ">=", 2, "1 KiB datagrams delivered, VMCI / UDP");
	x = bench_value("vmci_dgram", "vmfabric_vmci", 64, "blocking", "drop_pct");
	bench_target("dgram_64_drops_pct", x, "<=", 1, "VMCI datagram drops, percent");
	x = bench_value("vmci_crr", "vmfabric_vmci", 64, "blocking", "conn_s");
	y = bench_value("vmci_crr", "tcp_loopback", 64, "blocking", "conn_s");
	bench_target("crr_vs_tcp", x / y, ">=", 1, "connection rate, VMCI / TCP loopback");
	x = bench_value("vmci_idle", "vmfabricd", 0, "idle", "rss_kib");
	bench_target("daemon_idle_rss_kib", x, "<=", 10240, "vmfabricd idle resident memory, KiB");
	return bench_report();
}
