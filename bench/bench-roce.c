/* SPDX-License-Identifier: MIT */
/*
 * bench/run rdma, measurement rdma_roce_write_bw: RDMA WRITE bandwidth
 * between two hosts over RoCE v2, against TCP over the same path. The
 * hosts are network namespaces joined by a veth pair, each with its own
 * vmfabricd (hosts.h: vSwitch0, uplink vmnic1 on the veth end, vmk1 with
 * an IP, vmrdma0 paired and bound), the veth's offloads off.
 *
 * vmfabric: a target process on host B's daemon registers 1 MiB + 4 KiB,
 * listens as the host context and accepts each connection, its region's
 * address and rkey in the private data; then it does nothing. For each
 * measurement a client process on host A's daemon connects by IP
 * (vrdma_connect_addr(): the path MTU is the smaller device's) and
 * RDMA-WRITEs messages of one size into the region, the same buffers
 * every time: up to DEPTH WRs posted, in chains of BATCH whose last is
 * signaled; after a warm-up, the bytes completed between two completions
 * about dur seconds apart. It sleeps on a completion channel when its CQ
 * is empty, as the TCP ends block: the work is the daemons', and with two
 * CPUs a third thread spinning takes a CPU from them (busy-polling ran at
 * a third to a half of this for 4 KiB and 64 KiB). Both processes stay in
 * the caller's namespace and reach their daemons by their sockets; the
 * frames go from A's vmk1 port through A's switch and uplink, the veth,
 * B's uplink and switch to B's vmk1 port.
 *
 * tcp: a sender in namespace A writes messages of the same size over one
 * TCP connection to a receiver in namespace B bound to B's vmk1 address:
 * A's kernel, its vmk1 TAP, A's switch and uplink, the veth, B's uplink
 * and switch, B's vmk1 TAP, B's kernel: the path RoCE takes, with the
 * hosts' TCP stacks at the ends. The receiver counts the bytes between
 * two reads about dur seconds apart after the warm-up.
 *
 * Ethernet MTU 1500 (path MTU 1024) and 9000 (the veth, vSwitch0 and vmk1;
 * path MTU 4096), a fresh pair of hosts for each; rounds alternate the two
 * systems, size by size; the median of the rounds is reported. Nothing is
 * pinned: the two daemons' dataplane threads and the endpoints share the
 * CPUs as the kernel schedules them.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench-roce.h"
#include "hosts.h"
#include "vmfabric/vmci.h"
#include "vmfabric/vrdma.h"

#define BENCH	   "rdma_roce_write_bw"
#define PREFIX	   "vmfr-b" /* namespaces vmfr-ba and vmfr-bb */
#define PORT	   18515    /* the target's RDMA port (perftest's); by IP: 16 bits */
#define DATA_LEN   (1u << 20)
#define REGION_LEN (DATA_LEN + 4096)
#define DEPTH	   128 /* WRs posted (perftest's default tx depth) */
#define BATCH	   16  /* a chain, its last signaled */
#define NSIZES	   3
#define NMTUS	   2
#define ROUNDS_MAX 3
#define ACCESS_ALL                                                                                 \
	(VRDMA_ACCESS_LOCAL_WRITE | VRDMA_ACCESS_REMOTE_WRITE | VRDMA_ACCESS_REMOTE_READ |         \
	 VRDMA_ACCESS_REMOTE_ATOMIC)

enum { S_VMF, S_TCP, S_N };

static const char *const sys_name[S_N] = { "vmfabric", "tcp" };
static const long sizes[NSIZES] = { 4096, 65536, 1L << 20 };
static const unsigned mtus[NMTUS] = { 1500, 9000 };

struct rplan {
	double warm, dur;
};

/* What a child tells the parent: a port it listens on, or its figure; why it failed. */
struct outcome {
	double gbit_s;
	uint32_t port, path_mtu;
	char why[200];
};

/* The target's region, in the private data of its accept. */
struct region {
	uint64_t addr;
	uint32_t rkey, len;
};

__attribute__((noreturn)) static void
report(int out, struct outcome *r, int status)
{
	if (write(out, r, sizeof(*r)) != (ssize_t)sizeof(*r))
		status = 1;
	_exit(status);
}

__attribute__((noreturn, format(printf, 3, 4))) static void
fail(int out, struct outcome *r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(r->why, sizeof(r->why), fmt, ap);
	va_end(ap);
	report(out, r, 1);
}

static void *
region_alloc(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		return NULL;
	memset(p, 0x5a, len);
	return p;
}

/* ---------------------------------------------------------------------- */
/* vmfabric */

struct end {
	struct vrdma_context *ctx;
	struct vrdma_pd *pd;
	struct vrdma_mr *mr;
	uint8_t *buf;
};

static int
end_open(struct end *e, const char *sock, size_t len)
{
	int r;

	vmci_set_daemon(sock);
	vmci_set_context(""); /* the host context: connections between hosts are its */
	if ((r = vrdma_open_device("vmrdma0", &e->ctx)) < 0 || (r = vrdma_alloc_pd(e->ctx, &e->pd)))
		return r;
	if (!(e->buf = region_alloc(len)))
		return -ENOMEM;
	return vrdma_reg_mr(e->pd, e->buf, len, ACCESS_ALL, &e->mr);
}

static int
qp_open(struct end *e, struct vrdma_comp_channel *ch, struct vrdma_cq **cq, struct vrdma_qp **qp)
{
	struct vrdma_qp_init_attr a = { .qp_type = VRDMA_QPT_RC,
					.cap = { .max_send_wr = DEPTH,
						 .max_recv_wr = 1,
						 .max_send_sge = 1,
						 .max_recv_sge = 1 } };
	int r;

	if ((r = vrdma_create_cq(e->ctx, 2 * DEPTH, NULL, ch, cq)))
		return r;
	a.send_cq = a.recv_cq = *cq;
	return vrdma_create_qp(e->pd, &a, qp);
}

/*
 * Host B's target: listens, tells the port, accepts every connection
 * (the QP of the one before is then destroyed), until @ctl is readable.
 */
__attribute__((noreturn)) static void
target(const struct bench_hosts *h, int ctl, int out)
{
	struct vrdma_cq *cq[2] = { NULL, NULL };
	struct vrdma_qp *qp[2] = { NULL, NULL };
	struct vrdma_listener *l;
	struct outcome o = { 0 };
	struct region reg;
	struct vrdma_conn_param cp = { .private_data = &reg, .private_data_len = sizeof(reg) };
	struct end e;
	int r;

	if ((r = end_open(&e, h->d[1].sock, REGION_LEN)) || (r = vrdma_listen(e.ctx, PORT, &l)))
		fail(out, &o, "target: opening vmrdma0, registering, listening: %s", strerror(-r));
	reg = (struct region){ (uintptr_t)e.buf, e.mr->rkey, REGION_LEN };
	o.port = vrdma_listener_port(l);
	if (write(out, &o, sizeof(o)) != (ssize_t)sizeof(o))
		_exit(1);
	for (;;) {
		struct pollfd p[2] = { { vrdma_listener_fd(l), POLLIN, 0 }, { ctl, POLLIN, 0 } };
		struct vrdma_conn_req req;

		if (poll(p, 2, -1) < 0 || p[1].revents)
			break;
		if (vrdma_get_request(l, &req, 0))
			continue;
		if ((r = qp_open(&e, NULL, &cq[1], &qp[1])) ||
		    (r = vrdma_accept(l, &req, qp[1], &cp)))
			fail(out, &o, "target: accepting: %s", strerror(-r));
		if (qp[0]) {
			vrdma_destroy_qp(qp[0]);
			vrdma_destroy_cq(cq[0]);
		}
		qp[0] = qp[1];
		cq[0] = cq[1];
	}
	_exit(0);
}

/*
 * Host A's client: connects to the target, then WRITEs @size bytes at a
 * time for warm + dur seconds, as bench-rdma's bandwidth loop does (but
 * sleeping on its completion channel when there is nothing to poll).
 */
__attribute__((noreturn)) static void
client(const struct bench_hosts *h, uint32_t port, long size, const struct rplan *p, int out)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	struct vrdma_send_wr wr[BATCH], *bad;
	struct vrdma_sge sge = { 0 };
	struct vrdma_qp_attr qa;
	struct vrdma_qp_init_attr ia;
	struct vrdma_wc wc[16];
	struct outcome o = { 0 };
	struct vrdma_comp_channel *ch = NULL;
	struct vrdma_cq *cq;
	struct vrdma_qp *qp;
	uint8_t reply[VRDMA_PRIVATE_DATA] = { 0 };
	struct region peer;
	struct end e;
	uint64_t posted = 0, done = 0, done0 = 0;
	double t0, tstart = 0, tlast = 0, idle = 0;
	bool measuring = false, stopping = false, armed = false;
	int r;

	inet_pton(AF_INET, h->ip[1], &sa.sin_addr);
	if ((r = end_open(&e, h->d[0].sock, (size_t)size)) ||
	    (r = vrdma_create_comp_channel(e.ctx, &ch)) || (r = qp_open(&e, ch, &cq, &qp)))
		fail(out, &o, "client: opening vmrdma0, registering, a QP: %s", strerror(-r));
	if ((r = vrdma_connect_addr(qp, (struct sockaddr *)&sa, sizeof(sa), NULL, reply, 5000)))
		fail(out, &o, "client: vrdma_connect_addr(%s:%u): %s", h->ip[1], port,
		     strerror(-r));
	memcpy(&peer, reply, sizeof(peer));
	if (peer.len < (uint64_t)size)
		fail(out, &o, "client: the target's region is %u bytes", peer.len);
	if ((r = vrdma_query_qp(qp, &qa, VRDMA_QP_PATH_MTU, &ia)))
		fail(out, &o, "client: vrdma_query_qp: %s", strerror(-r));
	o.path_mtu = 128u << qa.path_mtu;
	sge = (struct vrdma_sge){ (uintptr_t)e.buf, (uint32_t)size, e.mr->lkey };
	memset(wr, 0, sizeof(wr));
	for (int i = 0; i < BATCH; i++) {
		wr[i].next = i + 1 < BATCH ? &wr[i + 1] : NULL;
		wr[i].sg_list = &sge;
		wr[i].num_sge = 1;
		wr[i].opcode = VRDMA_WR_RDMA_WRITE;
		wr[i].send_flags = i + 1 == BATCH ? VRDMA_SEND_SIGNALED : 0;
		wr[i].wr.rdma.remote_addr = peer.addr;
		wr[i].wr.rdma.rkey = peer.rkey;
	}
	t0 = bench_now();
	for (;;) {
		double t;
		int n;

		while (!stopping && posted - done + BATCH <= DEPTH) {
			if ((r = vrdma_post_send(qp, wr, &bad)) == -ENOMEM && bad == wr)
				break;
			if (r < 0)
				fail(out, &o, "client: vrdma_post_send: %s", strerror(-r));
			posted += BATCH;
		}
		if ((n = vrdma_poll_cq(cq, 16, wc)) < 0)
			fail(out, &o, "client: vrdma_poll_cq: %s", strerror(-n));
		t = bench_now();
		if (!n) {
			struct pollfd pf = { vrdma_comp_channel_fd(ch), POLLIN, 0 };
			struct vrdma_cq *ecq;
			void *ectx;

			if (!idle)
				idle = t;
			else if (t - idle > 10)
				fail(out, &o, "client: no completion in 10 s");
			if (!armed) { /* arm, then poll once more before sleeping */
				vrdma_req_notify_cq(cq, 0);
				armed = true;
			} else if (poll(&pf, 1, 100) == 1 && !vrdma_get_cq_event(ch, &ecq, &ectx)) {
				vrdma_ack_cq_events(ecq, 1);
				armed = false;
			}
			continue;
		}
		idle = 0;
		for (int i = 0; i < n; i++)
			if (wc[i].status != VRDMA_WC_SUCCESS)
				fail(out, &o, "client: completion: %s",
				     vrdma_wc_status_str(wc[i].status));
		done += (uint64_t)n * BATCH;
		if (!measuring && t >= t0 + p->warm) {
			measuring = true; /* from a completion to a completion */
			done0 = done;
			tstart = t;
		} else if (measuring) {
			tlast = t;
			stopping |= t >= tstart + p->dur;
		}
		if (stopping && done == posted)
			break;
	}
	o.gbit_s = (double)(done - done0) * (double)size * 8 / (tlast - tstart) / 1e9;
	vrdma_destroy_qp(qp);
	vrdma_destroy_cq(cq);
	report(out, &o, 0);
}

/* ---------------------------------------------------------------------- */
/* TCP between the vmk1 addresses */

/* Host B: listens on vmk1's address, tells the port, counts what one sender sends. */
__attribute__((noreturn)) static void
tcp_receiver(const struct bench_hosts *h, const struct rplan *p, int out)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t sl = sizeof(sa);
	struct outcome o = { 0 };
	struct pollfd pf;
	uint8_t *buf = malloc(DATA_LEN);
	uint64_t bytes = 0, bytes0 = 0;
	double t0 = 0, tstart = 0, t = 0;
	int l, c, r;

	if ((r = bench_hosts_enter(h, 1)))
		fail(out, &o, "tcp receiver: entering %s: %s", h->ns[1], strerror(-r));
	inet_pton(AF_INET, h->ip[1], &sa.sin_addr);
	l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (!buf || l < 0 || bind(l, (struct sockaddr *)&sa, sizeof(sa)) || listen(l, 1) ||
	    getsockname(l, (struct sockaddr *)&sa, &sl))
		fail(out, &o, "tcp receiver: listening on %s: %s", h->ip[1], strerror(errno));
	o.port = ntohs(sa.sin_port);
	if (write(out, &o, sizeof(o)) != (ssize_t)sizeof(o))
		_exit(1);
	pf = (struct pollfd){ l, POLLIN, 0 };
	if (poll(&pf, 1, 10000) != 1 || (c = accept4(l, NULL, NULL, SOCK_CLOEXEC)) < 0)
		fail(out, &o, "tcp receiver: no connection in 10 s");
	for (;;) {
		ssize_t n = recv(c, buf, DATA_LEN, 0);

		if (n <= 0)
			fail(out, &o, "tcp receiver: %s",
			     n ? strerror(errno) : "the sender closed");
		t = bench_now();
		bytes += (uint64_t)n;
		if (!t0) {
			t0 = t;
		} else if (!tstart && t >= t0 + p->warm) {
			tstart = t; /* from a read to a read */
			bytes0 = bytes;
		} else if (tstart && t >= tstart + p->dur) {
			break;
		}
	}
	o.gbit_s = (double)(bytes - bytes0) * 8 / (t - tstart) / 1e9;
	close(c); /* the sender's next write fails: it ends */
	report(out, &o, 0);
}

/* Host A: connects to the receiver and writes @size bytes at a time until it goes away. */
__attribute__((noreturn)) static void
tcp_sender(const struct bench_hosts *h, uint32_t port, long size, int out)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	struct outcome o = { 0 };
	uint8_t *buf = region_alloc((size_t)size);
	double end = bench_now() + 60;
	int s, r;

	if ((r = bench_hosts_enter(h, 0)))
		fail(out, &o, "tcp sender: entering %s: %s", h->ns[0], strerror(-r));
	inet_pton(AF_INET, h->ip[1], &sa.sin_addr);
	s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (!buf || s < 0 || connect(s, (struct sockaddr *)&sa, sizeof(sa)))
		fail(out, &o, "tcp sender: connecting to %s:%u: %s", h->ip[1], port,
		     strerror(errno));
	while (bench_now() < end)
		if (send(s, buf, (size_t)size, MSG_NOSIGNAL) < 0)
			break;
	report(out, &o, 0);
}

/* ---------------------------------------------------------------------- */
/* The parent */

/* A child writing an outcome to a pipe: its pid and the pipe's read end. */
struct child {
	pid_t pid;
	int fd;
};

static struct child
spawn(void)
{
	struct child c = { -1, -1 };
	int fd[2];

	if (pipe2(fd, O_CLOEXEC) < 0)
		return c;
	fflush(NULL);
	c.pid = fork();
	if (c.pid == 0) {
		close(fd[0]);
		c.fd = fd[1];
		return c;
	}
	close(fd[1]);
	c.fd = fd[0];
	if (c.pid < 0)
		close(c.fd);
	return c;
}

/* The child's next outcome within @timeout seconds; false with the reason in @o->why. */
static bool
hear(struct child *c, double timeout, struct outcome *o)
{
	struct pollfd p = { c->fd, POLLIN, 0 };

	memset(o, 0, sizeof(*o));
	if (poll(&p, 1, (int)(timeout * 1000)) != 1) {
		snprintf(o->why, sizeof(o->why), "no answer within %.0f s", timeout);
		return false;
	}
	if (read(c->fd, o, sizeof(*o)) != (ssize_t)sizeof(*o)) {
		snprintf(o->why, sizeof(o->why), "the process ended without saying why");
		return false;
	}
	return !o->why[0];
}

/* End the child: it is killed unless it exits within @grace seconds. */
static void
reap(struct child *c, double grace)
{
	double end = bench_now() + grace;

	if (c->pid <= 0)
		return;
	while (waitpid(c->pid, NULL, WNOHANG) == 0) {
		if (bench_now() > end) {
			kill(c->pid, SIGKILL);
			waitpid(c->pid, NULL, 0);
			break;
		}
		usleep(5000);
	}
	close(c->fd);
	c->pid = -1;
}

static bool
measure_vmf(const struct bench_hosts *h, uint32_t port, long size, const struct rplan *p,
	    struct outcome *o)
{
	struct child c = spawn();
	bool ok;

	if (c.pid == 0)
		client(h, port, size, p, c.fd);
	ok = c.pid > 0 && hear(&c, p->warm + p->dur + 30, o);
	reap(&c, ok ? 5 : 0);
	return ok;
}

static bool
measure_tcp(const struct bench_hosts *h, long size, const struct rplan *p, struct outcome *o)
{
	struct child rx = spawn(), tx = { -1, -1 };
	bool ok;

	if (rx.pid == 0)
		tcp_receiver(h, p, rx.fd);
	ok = rx.pid > 0 && hear(&rx, 10, o);
	if (ok && (tx = spawn()).pid == 0)
		tcp_sender(h, o->port, size, tx.fd);
	ok = ok && tx.pid > 0 && hear(&rx, p->warm + p->dur + 30, o);
	reap(&rx, ok ? 5 : 0);
	reap(&tx, 5);
	return ok;
}

static double
median(double *v, int n)
{
	double k[ROUNDS_MAX];
	int m = 0;

	for (int i = 0; i < n; i++)
		if (!isnan(v[i]))
			k[m++] = v[i];
	return m ? bench_percentile(k, (size_t)m, 50) : NAN;
}

static double
extreme(const double *v, int n, bool max)
{
	double x = NAN;

	for (int i = 0; i < n; i++)
		if (!isnan(v[i]) && (isnan(x) || (max ? v[i] > x : v[i] < x)))
			x = v[i];
	return x;
}

static void
mode_of(unsigned mtu, char *buf, size_t len)
{
	snprintf(buf, len, "eth_mtu_%u", mtu);
}

/* Host B's target, listening: its port in @port; write to *@ctl to end it. */
static bool
target_start(const struct bench_hosts *h, struct child *tg, int *ctl, uint32_t *port, char *why,
	     size_t len)
{
	struct outcome o;
	int c[2];

	if (pipe2(c, O_CLOEXEC) < 0) {
		snprintf(why, len, "pipe: %s", strerror(errno));
		return false;
	}
	*tg = spawn();
	if (tg->pid == 0) {
		close(c[1]);
		target(h, c[0], tg->fd);
	}
	close(c[0]);
	*ctl = c[1];
	if (tg->pid > 0 && hear(tg, 20, &o)) {
		*port = o.port;
		return true;
	}
	snprintf(why, len, "%s", tg->pid > 0 ? o.why : "fork failed");
	close(*ctl);
	reap(tg, 0);
	return false;
}

static void
target_stop(struct child *tg, int ctl)
{
	(void)!write(ctl, "q", 1);
	close(ctl);
	reap(tg, 5);
}

/* One pair of hosts at Ethernet MTU @m: every round of both systems. False if vmfabric failed. */
static bool
run_mtu(int m, const struct rplan *p, int rounds, double res[NSIZES][S_N][ROUNDS_MAX],
	unsigned *path_mtu, bool *offloads_off)
{
	struct bench_hosts h;
	struct child tg;
	struct outcome out;
	uint32_t port;
	char why[256];
	bool ok = true;
	int ctl;

	if (bench_hosts_up(&h, PREFIX, mtus[m], VMFABRICD_PATH, VMFABRIC_CLI_PATH, why,
			   sizeof(why))) {
		printf("# %s, Ethernet MTU %u: skipped: %s\n", BENCH, mtus[m], why);
		bench_note("%s, Ethernet MTU %u: skipped: %s", BENCH, mtus[m], why);
		return mtus[m] != 1500; /* 9000 needs what a veth may refuse; 1500 must work */
	}
	*offloads_off &= h.offloads_off;
	if (!target_start(&h, &tg, &ctl, &port, why, sizeof(why))) {
		fprintf(stderr, "bench rdma: %s: %s\n", BENCH, why);
		bench_hosts_down(&h);
		return false;
	}
	for (int r = 0; r < rounds; r++)
		for (int i = 0; i < NSIZES; i++) {
			if (measure_vmf(&h, port, sizes[i], p, &out)) {
				res[i][S_VMF][r] = out.gbit_s;
				*path_mtu = out.path_mtu;
			} else {
				fprintf(stderr, "bench rdma: %s, MTU %u, %ld B: %s\n", BENCH,
					mtus[m], sizes[i], out.why);
				ok = false;
			}
			if (measure_tcp(&h, sizes[i], p, &out))
				res[i][S_TCP][r] = out.gbit_s;
			else
				fprintf(stderr, "bench rdma: %s, tcp, MTU %u, %ld B: %s\n", BENCH,
					mtus[m], sizes[i], out.why);
		}
	target_stop(&tg, ctl);
	bench_hosts_down(&h);
	return ok;
}

static void
emit(int rounds, double res[NMTUS][NSIZES][S_N][ROUNDS_MAX], const unsigned *path_mtu,
     bool offloads_off)
{
	const char *off = offloads_off ? "off" : "on";
	char mode[16], f[192];

	for (int m = 0; m < NMTUS; m++)
		for (int i = 0; i < NSIZES; i++)
			for (int s = 0; s < S_N; s++) {
				double *v = res[m][i][s], x = median(v, rounds);

				if (isnan(x))
					continue;
				mode_of(mtus[m], mode, sizeof(mode));
				if (s == S_VMF)
					snprintf(f, sizeof(f),
						 "\"path_mtu\":%u,\"offloads\":\"%s\",\"depth\":%d,"
						 "\"signal_every\":%d,\"cq\":\"events\","
						 "\"min\":%.4g,\"max\":%.4g",
						 path_mtu[m], off, DEPTH, BATCH,
						 extreme(v, rounds, false),
						 extreme(v, rounds, true));
				else
					snprintf(f, sizeof(f),
						 "\"path\":\"vmk1_to_vmk1\",\"offloads\":\"%s\","
						 "\"min\":%.4g,\"max\":%.4g",
						 off, extreme(v, rounds, false),
						 extreme(v, rounds, true));
				bench_emit_fields(BENCH, sys_name[s], sizes[i], mode, f, "gbit_s",
						  x);
			}
}

static double
value(unsigned mtu, int s, long size)
{
	char mode[16];

	mode_of(mtu, mode, sizeof(mode));
	return bench_value(BENCH, sys_name[s], size, mode, "gbit_s");
}

static void
table(int rounds, const unsigned *path_mtu)
{
	printf("\n%s: RoCE v2 between two namespace hosts vs TCP between their vmk1 addresses, "
	       "median of %d round%s\n",
	       BENCH, rounds, rounds > 1 ? "s" : "");
	printf("%-8s %-9s %9s %12s %12s %8s\n", "eth_mtu", "path_mtu", "msg_bytes", "vmf gbit_s",
	       "tcp gbit_s", "vmf/tcp");
	for (int m = 0; m < NMTUS; m++)
		for (int i = 0; i < NSIZES; i++) {
			double v = value(mtus[m], S_VMF, sizes[i]),
			       t = value(mtus[m], S_TCP, sizes[i]);

			if (isnan(v) && isnan(t))
				continue;
			printf("%-8u %-9u %9ld %12.3f %12.3f %8.3f\n", mtus[m], path_mtu[m],
			       sizes[i], v, t, v / t);
		}
}

bool
bench_rdma_roce(const struct bench_opts *o)
{
	static double res[NMTUS][NSIZES][S_N][ROUNDS_MAX];
	struct rplan p = { .warm = o->quick ? 0.1 : 0.2, .dur = o->quick ? 0.5 : 1.0 };
	int rounds = o->quick ? 1 : ROUNDS_MAX;
	unsigned path_mtu[NMTUS] = { 0 };
	bool ok = true, offloads_off = true;

	if (o->only && strncmp(BENCH, o->only, strlen(o->only)))
		return true;
	if (geteuid() != 0) {
		printf("# %s skipped: needs root (network namespaces, a veth pair, TAP "
		       "interfaces)\n",
		       BENCH);
		bench_note("%s: skipped: needs root (network namespaces, a veth pair, TAP "
			   "interfaces)",
			   BENCH);
		return true;
	}
	for (int m = 0; m < NMTUS; m++)
		for (int i = 0; i < NSIZES; i++)
			for (int s = 0; s < S_N; s++)
				for (int r = 0; r < ROUNDS_MAX; r++)
					res[m][i][s][r] = NAN;
	for (int m = 0; m < NMTUS; m++)
		ok &= run_mtu(m, &p, rounds, res[m], &path_mtu[m], &offloads_off);
	emit(rounds, res, path_mtu, offloads_off);
	table(rounds, path_mtu);
	bench_note("%s: vmfabric sleeps on a completion channel; tcp blocks; nothing pinned; "
		   "the veth's offloads %s",
		   BENCH, offloads_off ? "off (tso gso gro tx)" : "ON (no ethtool)");
	bench_target("roce_vs_tcp", value(1500, S_VMF, 65536) / value(1500, S_TCP, 65536),
		     ">=", 0.5,
		     "RDMA WRITE 64 KiB between hosts, Ethernet MTU 1500, vmfabric / TCP");
	bench_target("roce_vs_tcp_mtu9000", value(9000, S_VMF, 65536) / value(9000, S_TCP, 65536),
		     ">=", 0.5, "the same at Ethernet MTU 9000 (path MTU 4096)");
	return ok;
}
