/* SPDX-License-Identifier: MIT */
/*
 * bench/run rdma: the verbs of include/vmfabric/vrdma.h between two
 * processes on one host, perftest-like, against UCX's ucx_perftest over
 * shared memory in the same run:
 *   rdma_write_bw, rdma_read_bw, rdma_send_bw  64 B .. 1 MiB (gbit_s, mpps):
 *       the client keeps up to 256 WRs posted, in chains of 64 whose last
 *       is signaled (perftest's selective signaling); the server posts 512
 *       receives for SEND and reposts each one that completes
 *   rdma_write_lat   8 B ping-pong as ib_write_lat and ucp_put_lat: each
 *       side RDMA-WRITEs 8 B into the other's region and polls its own
 *       memory for the peer's write; half the round trip
 *   rdma_read_lat, rdma_atomic_lat  one 8 B READ / FETCH_AND_ADD from
 *       posting to its completion, polled (ib_read_lat, ib_atomic_lat)
 * lat_us is the mean, lat_p50_us and lat_p99_us beside it. The vmfabric
 * side runs on a private vmfabricd whose configuration declares no RDMA
 * device, so that it offers vmrdma0 for this host only: a server process
 * (context a, CPU 1) listens and accepts, a client (context b, CPU 0)
 * connects, each with one registered region whose address and rkey travel
 * in the connection's private data. Only these two threads spin. The UCX
 * side is one ucx_perftest pair a round (server CPU 1, client CPU 0, all
 * tests in one batch file) in a private network namespace, so that its TCP
 * bootstrap is on loopback only; docs/BENCHMARKS.md has the command lines.
 * Rounds alternate the two systems; the median of the rounds is reported.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#endif

#include "bench.h"
#include "bench-rdmablk.h"
#include "bench-roce.h"
#include "vmfabric/vmci.h"
#include "vmfabric/vrdma.h"

#define DEVICE	"vmrdma0"
#define UCX_TLS "posix,sysv,cma,self"

#define DATA_LEN   (1u << 20)	     /* the largest message */
#define SLOT_OFF   DATA_LEN	     /* the 8 B a ping-pong peer writes into */
#define ATOMIC_OFF (DATA_LEN + 64)   /* the FETCH_AND_ADD target */
#define STAGE_OFF  (DATA_LEN + 1024) /* sources of ping-pong writes, STAGE_N of 8 B */
#define STAGE_N	   256
#define REGION_LEN (DATA_LEN + 4096)
#define ACCESS_ALL                                                                                 \
	(VRDMA_ACCESS_LOCAL_WRITE | VRDMA_ACCESS_REMOTE_WRITE | VRDMA_ACCESS_REMOTE_READ |         \
	 VRDMA_ACCESS_REMOTE_ATOMIC)
#define WANT_DEPTH  256 /* send WRs kept posted (perftest's default tx depth is 128) */
#define WANT_BATCH  64	/* WRs a post, the last signaled */
#define WANT_RECVS  512
#define WANT_INLINE 256
#define MAX_SIZES   15 /* 64 B .. 1 MiB */
#define MAX_ROUNDS  3

enum { T_WRITE_BW, T_READ_BW, T_SEND_BW, T_WRITE_LAT, T_READ_LAT, T_ATOMIC_LAT, T_N };

static const struct test {
	const char *bench;   /* the JSON lines' */
	const char *tag;     /* in ucx_perftest's batch file */
	const char *ucx;     /* ucx_perftest's test */
	const char *ucx_opt; /* more of its options */
	bool bw;
} tests[T_N] = {
	{ "rdma_write_bw", "write_bw", "ucp_put_bw", "", true },
	{ "rdma_read_bw", "read_bw", "ucp_get", "-O 32", true },
	{ "rdma_send_bw", "send_bw", "ucp_am_bw", "", true },
	{ "rdma_write_lat", "write_lat", "ucp_put_lat", "", false },
	{ "rdma_read_lat", "read_lat", "ucp_get", "", false },
	{ "rdma_atomic_lat", "atomic_lat", "ucp_fadd", "", false },
};

/* Bandwidth tests: [size][0] gbit_s, [1] mpps; latency tests: [0][0..2] mean, p50, p99. */
static const char *const bw_metric[2] = { "gbit_s", "mpps" };
static const char *const lat_metric[3] = { "lat_us", "lat_p50_us", "lat_p99_us" };
typedef double results[T_N][MAX_SIZES][3];

struct plan {
	bool want[T_N];
	long sizes[MAX_SIZES];
	int nsizes;
	double bw_warm, bw_dur; /* seconds a size */
	long lat_iters, lat_warm;
	double lat_max;		  /* seconds a latency test at most */
	long ucx_msgs, ucx_bytes; /* a UCX bandwidth test: this many messages or bytes */
};

/* Between the parent and the two processes of a round. */
struct shared {
	_Alignas(64) _Atomic uint32_t stop; /* the server phase the client ended */
	_Alignas(64) struct vrdma_device_attr attr;
	char why[256];
	uint32_t depth, batch, inline_max;
	results res;
};

/* A registered region as the peer gets it, in the connection's private data. */
struct region {
	uint64_t addr;
	uint32_t rkey, len;
};

struct side {
	const char *who;
	struct vrdma_context *ctx;
	struct vrdma_pd *pd;
	struct vrdma_cq *cq;
	struct vrdma_qp *qp;
	struct vrdma_mr *mr;
	uint8_t *buf;
	struct vrdma_device_attr attr;
	struct region peer;
	uint32_t depth, batch, recvs, inline_max;
	uint64_t writes, sig_posted, sig_done; /* ping-pong writes */
	bool recvs_posted;
};

/* Server commands over a socketpair; the server answers OP_READY. */
enum { OP_HELLO, OP_SEND_BW, OP_WRITE_LAT, OP_READY, OP_QUIT, OP_ANY };
struct msg {
	uint32_t op, arg, port, cid;
};

/* A time stamp counter where there is one (read per iteration of the latency loops). */
static inline uint64_t
ticks(void)
{
#if defined(__x86_64__) || defined(__i386__)
	return __rdtsc();
#else
	return (uint64_t)(bench_now() * 1e9);
#endif
}

/* ---------------------------------------------------------------------- */
/* The two processes of a round (they leave with _exit: no atexit handlers) */

static void __attribute__((noreturn, format(printf, 3, 4)))
sfail(const struct side *s, int err, const char *fmt, ...)
{
	char what[200];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	fprintf(stderr, "bench rdma: %s: %s%s%s\n", s->who, what, err ? ": " : "",
		err ? strerror(err < 0 ? -err : err) : "");
	_exit(1);
}

static uint32_t
min_u32(uint32_t a, uint32_t b)
{
	return a < b ? a : b;
}

static void
side_open(struct side *s, const char *who, const char *context)
{
	struct vrdma_qp_init_attr qa;
	uint32_t cqe;
	int r;

	memset(s, 0, sizeof(*s));
	s->who = who;
	vmci_set_context(context);
	if ((r = vrdma_open_device(DEVICE, &s->ctx)) < 0)
		sfail(s, r, "vrdma_open_device(\"%s\") as context %s", DEVICE, context);
	if ((r = vrdma_query_device(s->ctx, &s->attr)) < 0)
		sfail(s, r, "vrdma_query_device");
	s->buf = mmap(NULL, REGION_LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (s->buf == MAP_FAILED)
		sfail(s, errno, "mmap");
	memset(s->buf, 0x5a, DATA_LEN);
	memset(s->buf + DATA_LEN, 0, REGION_LEN - DATA_LEN);
	if ((r = vrdma_alloc_pd(s->ctx, &s->pd)) < 0)
		sfail(s, r, "vrdma_alloc_pd");
	if ((r = vrdma_reg_mr(s->pd, s->buf, REGION_LEN, ACCESS_ALL, &s->mr)) < 0)
		sfail(s, r, "vrdma_reg_mr (%u bytes)", REGION_LEN);
	s->depth = min_u32(WANT_DEPTH, s->attr.max_qp_wr);
	s->batch = min_u32(WANT_BATCH, s->depth / 4);
	s->recvs = min_u32(WANT_RECVS, s->attr.max_qp_wr);
	if (s->batch == 0)
		sfail(s, 0, "the device's max_qp_wr is %u", s->attr.max_qp_wr);
	cqe = s->depth + s->recvs + 64;
	if (s->attr.max_cqe && cqe > s->attr.max_cqe)
		sfail(s, 0, "the device's max_cqe is %u, %u needed", s->attr.max_cqe, cqe);
	if ((r = vrdma_create_cq(s->ctx, (int)cqe, NULL, NULL, &s->cq)) < 0)
		sfail(s, r, "vrdma_create_cq(%u)", cqe);
	memset(&qa, 0, sizeof(qa));
	qa.send_cq = qa.recv_cq = s->cq;
	qa.cap.max_send_wr = s->depth;
	qa.cap.max_recv_wr = s->recvs;
	qa.cap.max_send_sge = qa.cap.max_recv_sge = 1;
	qa.cap.max_inline_data = min_u32(WANT_INLINE, s->attr.max_inline_data);
	qa.qp_type = VRDMA_QPT_RC;
	if ((r = vrdma_create_qp(s->pd, &qa, &s->qp)) < 0)
		sfail(s, r, "vrdma_create_qp");
	s->inline_max = min_u32(qa.cap.max_inline_data, WANT_INLINE);
}

static void
side_close(struct side *s)
{
#define TRY(call)                                                                                  \
	do {                                                                                       \
		int r_ = (call);                                                                   \
		if (r_ < 0)                                                                        \
			fprintf(stderr, "bench rdma: %s: %s: %s\n", s->who, #call, strerror(-r_)); \
	} while (0)
	TRY(vrdma_destroy_qp(s->qp));
	TRY(vrdma_destroy_cq(s->cq));
	TRY(vrdma_dereg_mr(s->mr));
	TRY(vrdma_dealloc_pd(s->pd));
	TRY(vrdma_close_device(s->ctx));
#undef TRY
}

static void
conn_param(const struct side *s, const struct region *mine, struct vrdma_conn_param *cp)
{
	memset(cp, 0, sizeof(*cp));
	cp->private_data = mine;
	cp->private_data_len = sizeof(*mine);
	cp->responder_resources = (uint8_t)min_u32(16, s->attr.max_qp_rd_atom);
	cp->initiator_depth = (uint8_t)min_u32(16, s->attr.max_qp_init_rd_atom);
	cp->retry_count = 7;
	cp->rnr_retry_count = 7;
}

static void
region_of(const struct side *s, struct region *r)
{
	r->addr = (uintptr_t)s->buf;
	r->rkey = s->mr->rkey;
	r->len = REGION_LEN;
}

static void
msg_send(const struct side *s, int sock, uint32_t op, uint32_t arg, uint32_t port, uint32_t cid)
{
	struct msg m = { op, arg, port, cid };

	if (send(sock, &m, sizeof(m), MSG_NOSIGNAL) != sizeof(m))
		sfail(s, errno, "control message");
}

/*
 * The next message, of kind @op (or OP_ANY). The other process's end ends
 * this one too (it said why).
 */
static void
msg_recv(const struct side *s, int sock, struct msg *m, uint32_t op)
{
	ssize_t n = recv(sock, m, sizeof(*m), 0);

	if (n == 0)
		_exit(1);
	if (n != sizeof(*m) || (op != OP_ANY && m->op != op))
		sfail(s, n < 0 ? errno : 0, "control message (%zd bytes, op %u)", n,
		      n > 0 ? m->op : 0);
}

static void
check_wc(const struct side *s, const struct vrdma_wc *wc)
{
	if (wc->status != VRDMA_WC_SUCCESS)
		sfail(s, 0, "completion of opcode %d: %s (vendor_err %u)", (int)wc->opcode,
		      vrdma_wc_status_str(wc->status), wc->vendor_err);
}

/* Post @n receives of up to DATA_LEN bytes each, all into the data area. */
static void
post_recvs(struct side *s, uint32_t n)
{
	struct vrdma_recv_wr wr[32], *bad;
	struct vrdma_sge sge = { (uintptr_t)s->buf, DATA_LEN, s->mr->lkey };

	while (n) {
		uint32_t k = min_u32(n, 32);
		int r;

		for (uint32_t i = 0; i < k; i++)
			wr[i] = (struct vrdma_recv_wr){ .wr_id = i,
							.next = i + 1 < k ? &wr[i + 1] : NULL,
							.sg_list = &sge,
							.num_sge = 1 };
		if ((r = vrdma_post_recv(s->qp, wr, &bad)) < 0)
			sfail(s, r, "vrdma_post_recv");
		n -= k;
	}
}

/*
 * Completions of ping-pong writes (and receives a SEND phase left, which
 * are reposted): until at most one signaled write is outstanding.
 */
static void
pp_reap(struct side *s)
{
	struct vrdma_wc wc[8];

	while (s->sig_posted - s->sig_done >= 2) {
		int n = vrdma_poll_cq(s->cq, 8, wc);

		if (n < 0)
			sfail(s, n, "vrdma_poll_cq");
		for (int i = 0; i < n; i++) {
			check_wc(s, &wc[i]);
			if (wc[i].opcode == VRDMA_WC_RECV)
				post_recvs(s, 1);
			else
				s->sig_done++;
		}
	}
}

/*
 * One 8 B RDMA WRITE of @v into the peer's slot: inline when the QP
 * allows (else from a ring of sources that outlives the WRs in flight),
 * every batch-th signaled, at most two signaled ones outstanding.
 */
static void
pp_write(struct side *s, uint64_t v)
{
	uint64_t *src = (uint64_t *)(void *)(s->buf + STAGE_OFF) + s->writes % STAGE_N;
	struct vrdma_sge sge = { (uintptr_t)src, 8, s->mr->lkey };
	struct vrdma_send_wr wr, *bad;
	bool sig = s->writes % s->batch == s->batch - 1;
	int r;

	*src = v;
	memset(&wr, 0, sizeof(wr));
	wr.sg_list = &sge;
	wr.num_sge = 1;
	wr.opcode = VRDMA_WR_RDMA_WRITE;
	wr.send_flags =
	    (s->inline_max >= 8 ? VRDMA_SEND_INLINE : 0) | (sig ? VRDMA_SEND_SIGNALED : 0);
	wr.wr.rdma.remote_addr = s->peer.addr + SLOT_OFF;
	wr.wr.rdma.rkey = s->peer.rkey;
	if ((r = vrdma_post_send(s->qp, &wr, &bad)) < 0)
		sfail(s, r, "vrdma_post_send (ping-pong write)");
	s->writes++;
	s->sig_posted += sig;
	pp_reap(s);
}

static uint64_t
slot_load(const struct side *s)
{
	return __atomic_load_n((const uint64_t *)(const void *)(s->buf + SLOT_OFF),
			       __ATOMIC_ACQUIRE);
}

static void
slot_clear(struct side *s)
{
	__atomic_store_n((uint64_t *)(void *)(s->buf + SLOT_OFF), 0, __ATOMIC_RELEASE);
}

/* Server, SEND phase: keep receives posted until the client ends the phase. */
static void
serve_recv(struct side *s, struct shared *sh, int sock, uint32_t phase)
{
	struct vrdma_wc wc[32];

	if (!s->recvs_posted)
		post_recvs(s, s->recvs);
	s->recvs_posted = true;
	msg_send(s, sock, OP_READY, phase, 0, 0);
	while (atomic_load_explicit(&sh->stop, memory_order_acquire) != phase) {
		int n = vrdma_poll_cq(s->cq, 32, wc);
		uint32_t k = 0;

		if (n < 0)
			sfail(s, n, "vrdma_poll_cq");
		for (int i = 0; i < n; i++) {
			check_wc(s, &wc[i]);
			if (wc[i].opcode == VRDMA_WC_RECV)
				k++;
			else
				s->sig_done++;
		}
		if (k)
			post_recvs(s, k);
	}
}

/* Server, ping-pong phase: answer each write with one, until the client ends the phase. */
static void
serve_pong(struct side *s, struct shared *sh, int sock, uint32_t phase)
{
	uint64_t want = 1;

	slot_clear(s);
	msg_send(s, sock, OP_READY, phase, 0, 0);
	for (;;) {
		while (slot_load(s) != want)
			if (atomic_load_explicit(&sh->stop, memory_order_acquire) == phase)
				return;
		pp_write(s, want++);
	}
}

static void __attribute__((noreturn))
server(const struct bench_opts *o, struct shared *sh, int sock)
{
	struct vrdma_listener *l;
	struct vrdma_conn_param cp;
	struct vrdma_conn_req req;
	struct region mine;
	struct side s;
	struct msg m;
	int r;

	bench_pin(o, 1);
	side_open(&s, "server", "a");
	if ((r = vrdma_listen(s.ctx, 0, &l)) < 0)
		sfail(&s, r, "vrdma_listen");
	msg_send(&s, sock, OP_HELLO, 0, vrdma_listener_port(l), s.attr.cid);
	if ((r = vrdma_get_request(l, &req, 10000)) < 0)
		sfail(&s, r, "vrdma_get_request");
	if (req.private_data_len < sizeof(s.peer))
		sfail(&s, 0, "connection request with %u bytes of private data",
		      req.private_data_len);
	memcpy(&s.peer, req.private_data, sizeof(s.peer));
	region_of(&s, &mine);
	conn_param(&s, &mine, &cp);
	if ((r = vrdma_accept(l, &req, s.qp, &cp)) < 0)
		sfail(&s, r, "vrdma_accept");
	for (;;) {
		msg_recv(&s, sock, &m, OP_ANY);
		if (m.op == OP_SEND_BW)
			serve_recv(&s, sh, sock, m.arg);
		else if (m.op == OP_WRITE_LAT)
			serve_pong(&s, sh, sock, m.arg);
		else
			break;
	}
	vrdma_listener_close(l);
	side_close(&s);
	_exit(0);
}

static const char *
op_name(enum vrdma_wr_opcode op)
{
	return op == VRDMA_WR_RDMA_WRITE ? "write" : op == VRDMA_WR_RDMA_READ ? "read" : "send";
}

/*
 * Bandwidth, as perftest measures it: up to depth WRs of @size bytes in
 * flight, posted in chains of batch whose last is signaled (one completion
 * stands for the chain), the same local and remote buffers every time;
 * after bw_warm seconds, the messages completed over bw_dur seconds, to
 * the last completion. Inline up to the QP's inline size (not READ).
 */
static void
bw_run(struct side *s, const struct plan *p, enum vrdma_wr_opcode op, long size, double out[2])
{
	struct vrdma_send_wr wr[WANT_BATCH], *bad;
	struct vrdma_sge sge[WANT_BATCH];
	struct vrdma_wc wc[16];
	unsigned flags =
	    op != VRDMA_WR_RDMA_READ && (uint64_t)size <= s->inline_max ? VRDMA_SEND_INLINE : 0;
	uint64_t posted = 0, done = 0, done0 = 0;
	double t0 = bench_now(), start = t0 + p->bw_warm, tstart = 0, tlast = t0, secs;
	bool measuring = false, stopping = false;

	memset(wr, 0, sizeof(wr));
	for (uint32_t i = 0; i < s->batch; i++) {
		sge[i] = (struct vrdma_sge){ (uintptr_t)s->buf, (uint32_t)size, s->mr->lkey };
		wr[i].wr_id = i;
		wr[i].next = i + 1 < s->batch ? &wr[i + 1] : NULL;
		wr[i].sg_list = &sge[i];
		wr[i].num_sge = 1;
		wr[i].opcode = op;
		wr[i].send_flags = flags | (i + 1 == s->batch ? VRDMA_SEND_SIGNALED : 0);
		if (op != VRDMA_WR_SEND) {
			wr[i].wr.rdma.remote_addr = s->peer.addr;
			wr[i].wr.rdma.rkey = s->peer.rkey;
		}
	}
	for (;;) {
		double t;
		int n, r;

		while (!stopping && posted - done + s->batch <= s->depth) {
			r = vrdma_post_send(s->qp, wr, &bad);
			if (r == -ENOMEM && bad == wr)
				break; /* the send queue is full after all: completions first */
			if (r < 0)
				sfail(s, r, "vrdma_post_send (%s, %ld B)", op_name(op), size);
			posted += s->batch;
		}
		if ((n = vrdma_poll_cq(s->cq, 16, wc)) < 0)
			sfail(s, n, "vrdma_poll_cq");
		for (int i = 0; i < n; i++)
			check_wc(s, &wc[i]);
		done += (uint64_t)n * s->batch;
		t = bench_now();
		if (n > 0)
			tlast = t;
		if (!measuring && t >= start) {
			measuring = true;
			done0 = done;
			tstart = t;
		}
		if (measuring && t >= tstart + p->bw_dur)
			stopping = true;
		if (stopping && done == posted)
			break;
	}
	secs = tlast - tstart;
	out[0] = (double)(done - done0) * (double)size * 8 / secs / 1e9;
	out[1] = (double)(done - done0) / secs / 1e6;
}

/*
 * Mean, median and 99th percentile in microseconds of @n iterations whose
 * start ticks are @t[0..n-1] (@t[n]: the end), over @secs seconds, divided
 * by @div (2 for a round trip).
 */
static void
lat_stats(const uint64_t *t, long n, double secs, double div, double out[3])
{
	double *d = malloc((size_t)n * sizeof(*d)), us = secs * 1e6 / (double)(t[n] - t[0]) / div;

	out[0] = secs * 1e6 / (double)n / div;
	if (!d)
		return;
	for (long i = 0; i < n; i++)
		d[i] = (double)(t[i + 1] - t[i]) * us;
	out[1] = bench_percentile(d, (size_t)n, 50);
	out[2] = bench_percentile(d, (size_t)n, 99);
	free(d);
}

/*
 * Latency: lat_warm iterations, then up to lat_iters (lat_max seconds at
 * most), each timed. Ping-pong: write i into the peer's slot, wait for i
 * in ours (the peer answers each write with one); half the round trip.
 * READ and FETCH_AND_ADD: one signaled 8 B WR, the CQ polled to its
 * completion.
 */
static void
lat_run(struct side *s, const struct plan *p, int test, double out[3])
{
	uint64_t *t = malloc((size_t)(p->lat_iters + 1) * sizeof(*t));
	struct vrdma_sge sge = { (uintptr_t)s->buf, 8, s->mr->lkey };
	struct vrdma_send_wr wr, *bad;
	struct vrdma_wc wc;
	double t0 = 0;
	long n = p->lat_iters;

	if (!t)
		sfail(s, ENOMEM, "latency samples");
	memset(&wr, 0, sizeof(wr));
	wr.sg_list = &sge;
	wr.num_sge = 1;
	wr.send_flags = VRDMA_SEND_SIGNALED;
	if (test == T_ATOMIC_LAT) {
		wr.opcode = VRDMA_WR_ATOMIC_FETCH_AND_ADD;
		wr.wr.atomic.remote_addr = s->peer.addr + ATOMIC_OFF;
		wr.wr.atomic.compare_add = 1;
		wr.wr.atomic.rkey = s->peer.rkey;
	} else {
		wr.opcode = VRDMA_WR_RDMA_READ;
		wr.wr.rdma.remote_addr = s->peer.addr + SLOT_OFF;
		wr.wr.rdma.rkey = s->peer.rkey;
	}
	for (long i = -p->lat_warm; i < n; i++) {
		uint64_t v = (uint64_t)(i + p->lat_warm + 1);
		int r;

		if (i >= 0) {
			t[i] = ticks();
			if (i == 0)
				t0 = bench_now();
			else if ((i & 4095) == 0 && bench_now() - t0 > p->lat_max) {
				n = i;
				break;
			}
		}
		if (test == T_WRITE_LAT) {
			pp_write(s, v);
			while (slot_load(s) != v)
				;
			continue;
		}
		if ((r = vrdma_post_send(s->qp, &wr, &bad)) < 0)
			sfail(s, r, "vrdma_post_send (%s)", tests[test].bench);
		while ((r = vrdma_poll_cq(s->cq, 1, &wc)) == 0)
			;
		if (r < 0)
			sfail(s, r, "vrdma_poll_cq");
		check_wc(s, &wc);
	}
	t[n] = ticks();
	lat_stats(t, n, bench_now() - t0, test == T_WRITE_LAT ? 2 : 1, out);
	free(t);
}

static void __attribute__((noreturn))
client(const struct bench_opts *o, const struct plan *p, struct shared *sh, int sock)
{
	static const enum vrdma_wr_opcode bw_op[3] = { VRDMA_WR_RDMA_WRITE, VRDMA_WR_RDMA_READ,
						       VRDMA_WR_SEND };
	uint8_t reply[VRDMA_PRIVATE_DATA];
	struct vrdma_conn_param cp;
	struct region mine;
	struct side s;
	struct msg m;
	uint32_t phase = 0;
	int r;

	bench_pin(o, 0);
	side_open(&s, "client", "b");
	msg_recv(&s, sock, &m, OP_HELLO);
	region_of(&s, &mine);
	conn_param(&s, &mine, &cp);
	memset(reply, 0, sizeof(reply));
	if ((r = vrdma_connect(s.qp, m.cid, m.port, &cp, reply, 5000)) < 0)
		sfail(&s, r, "vrdma_connect to CID %u port %u", m.cid, m.port);
	memcpy(&s.peer, reply, sizeof(s.peer));
	if (s.peer.len < REGION_LEN || !s.peer.addr)
		sfail(&s, 0, "the server's region in the reply is %u bytes at 0x%llx", s.peer.len,
		      (unsigned long long)s.peer.addr);
	sh->depth = s.depth;
	sh->batch = s.batch;
	sh->inline_max = s.inline_max;
	for (int t = 0; t < T_N; t++) {
		if (!p->want[t])
			continue;
		if (t == T_SEND_BW || t == T_WRITE_LAT) {
			slot_clear(&s);
			msg_send(&s, sock, t == T_SEND_BW ? OP_SEND_BW : OP_WRITE_LAT, ++phase, 0,
				 0);
			msg_recv(&s, sock, &m, OP_READY);
		}
		if (tests[t].bw)
			for (int i = 0; i < p->nsizes; i++)
				bw_run(&s, p, bw_op[t], p->sizes[i], sh->res[t][i]);
		else
			lat_run(&s, p, t, sh->res[t][0]);
		if (t == T_SEND_BW || t == T_WRITE_LAT)
			atomic_store_explicit(&sh->stop, phase, memory_order_release);
	}
	msg_send(&s, sock, OP_QUIT, 0, 0, 0);
	side_close(&s);
	_exit(0);
}

/* ---------------------------------------------------------------------- */
/* The parent */

static void
results_clear(results r)
{
	for (int t = 0; t < T_N; t++)
		for (int i = 0; i < MAX_SIZES; i++)
			for (int m = 0; m < 3; m++)
				r[t][i][m] = NAN;
}

/* Wait for @n children up to @timeout seconds, then kill them; true if all exited 0. */
static bool
wait_all(pid_t *pid, int n, double timeout, const char *what)
{
	double end = bench_now() + timeout;
	bool ok = true;
	int left = n, status;

	for (int i = 0; i < n; i++)
		if (pid[i] <= 0) {
			ok = false; /* fork failed */
			left--;
		}
	while (left) {
		for (int i = 0; i < n; i++) {
			if (pid[i] <= 0 || waitpid(pid[i], &status, WNOHANG) != pid[i])
				continue;
			ok &= WIFEXITED(status) && WEXITSTATUS(status) == 0;
			pid[i] = 0;
			left--;
		}
		if (left && bench_now() > end) {
			fprintf(stderr, "bench rdma: %s: no end after %.0f s, killed\n", what,
				timeout);
			for (int i = 0; i < n; i++)
				if (pid[i] > 0) {
					kill(pid[i], SIGKILL);
					waitpid(pid[i], NULL, 0);
				}
			return false;
		}
		if (left)
			usleep(10000);
	}
	return ok;
}

/* Whether the device opens, as context a; its attributes into @sh, or why not. */
static bool
probe(struct shared *sh)
{
	pid_t pid;

	snprintf(sh->why, sizeof(sh->why), "the process opening %s failed", DEVICE);
	fflush(NULL);
	if ((pid = fork()) == 0) {
		struct vrdma_context *ctx;
		int r;

		vmci_set_context("a");
		if ((r = vrdma_open_device(DEVICE, &ctx)) < 0) {
			snprintf(sh->why, sizeof(sh->why), "vrdma_open_device(\"%s\"): %s", DEVICE,
				 strerror(-r));
			_exit(3);
		}
		if ((r = vrdma_query_device(ctx, &sh->attr)) < 0) {
			snprintf(sh->why, sizeof(sh->why), "vrdma_query_device: %s", strerror(-r));
			_exit(3);
		}
		vrdma_close_device(ctx);
		_exit(0);
	}
	return pid > 0 && wait_all(&pid, 1, 20, "opening the device");
}

/* One round of every wanted test over vmfabric: server and client processes. */
static bool
vmf_round(const struct bench_opts *o, const struct plan *p, struct shared *sh)
{
	double timeout = 60 + 2 * (3 * p->nsizes * (p->bw_warm + p->bw_dur) + 3 * p->lat_max);
	pid_t pid[2];
	int sv[2];

	atomic_store(&sh->stop, 0);
	results_clear(sh->res);
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
		perror("bench rdma: socketpair");
		return false;
	}
	fflush(NULL);
	if ((pid[0] = fork()) == 0) {
		close(sv[1]);
		server(o, sh, sv[0]);
	}
	if ((pid[1] = fork()) == 0) {
		close(sv[0]);
		client(o, p, sh, sv[1]);
	}
	close(sv[0]);
	close(sv[1]);
	return wait_all(pid, 2, timeout, "the vmfabric round");
}

/* ---------------------------------------------------------------------- */
/* UCX's ucx_perftest */

struct ucx_line {
	char label[32];
	int test, size; /* size: index in the plan's sizes */
	bool p99;
};

static bool
in_path(const char *prog)
{
	const char *path = getenv("PATH");
	char buf[4096];

	for (const char *p = path ? path : "/usr/bin:/bin"; *p;) {
		size_t n = strcspn(p, ":");

		snprintf(buf, sizeof(buf), "%.*s/%s", (int)n, p, prog);
		if (n && access(buf, X_OK) == 0)
			return true;
		p += n + (p[n] == ':');
	}
	return false;
}

/*
 * The batch file of a round: one line a test and size, "LABEL -t TEST
 * -s SIZE -n ITERS -w WARMUP ..."; latency tests once more with -R 99
 * for the 99th percentile. Both ucx_perftest processes read it.
 */
static int
ucx_batch(const struct plan *p, const char *path, struct ucx_line *line, int max)
{
	FILE *f = fopen(path, "w");
	int n = 0;

	if (!f)
		return -errno;
	for (int t = 0; t < T_N; t++) {
		if (!p->want[t])
			continue;
		for (int i = 0; i < (tests[t].bw ? p->nsizes : 2) && n < max; i++) {
			long size = tests[t].bw ? p->sizes[i] : 8;
			long iters = tests[t].bw ? p->ucx_bytes / size : p->lat_iters;

			if (tests[t].bw && iters > p->ucx_msgs)
				iters = p->ucx_msgs;
			line[n] = (struct ucx_line){ .test = t,
						     .size = tests[t].bw ? i : 0,
						     .p99 = !tests[t].bw && i == 1 };
			snprintf(line[n].label, sizeof(line[n].label), "%s_%ld%s", tests[t].tag,
				 size, line[n].p99 ? "_p99" : "");
			fprintf(f, "%s -t %s -s %ld -n %ld -w %ld %s%s\n", line[n].label,
				tests[t].ucx, size, iters,
				iters / 10 < 10000 ? iters / 10 + 1 : 10000, tests[t].ucx_opt,
				line[n].p99 ? " -R 99" : "");
			n++;
		}
	}
	return fclose(f) ? -errno : n;
}

static void
lo_up(void)
{
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct ifreq ifr;

	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "lo");
	if (fd >= 0 && ioctl(fd, SIOCGIFFLAGS, &ifr) == 0) {
		ifr.ifr_flags |= IFF_UP;
		(void)ioctl(fd, SIOCSIFFLAGS, &ifr);
	}
	if (fd >= 0)
		close(fd);
}

static bool
tcp_listening(unsigned port)
{
	FILE *f = fopen("/proc/net/tcp", "r");
	unsigned lport, st;
	bool yes = false;
	char line[256];

	while (f && !yes && fgets(line, sizeof(line), f))
		yes = sscanf(line, " %*u: %*x:%x %*x:%*x %x", &lport, &st) == 2 && lport == port &&
		      st == 0x0a;
	if (f)
		fclose(f);
	return yes;
}

static unsigned
free_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	unsigned port = 13337;

	if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&a, &len) == 0)
		port = ntohs(a.sin_port);
	if (fd >= 0)
		close(fd);
	return port;
}

static void
redirect(int fd, const char *path)
{
	int f = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	if (f >= 0)
		dup2(f, fd);
}

/*
 * The pair, in a process group of its own: a private network namespace
 * with only loopback up (when allowed), the server on CPU 1, and once it
 * listens the client on CPU 0 with its results to @out. Its first line
 * says where the bootstrap ran.
 */
static void __attribute__((noreturn))
ucx_pair(const struct bench_opts *o, const char *dir, const char *batch, int out)
{
	char port[8], log[128], first[128];
	bool ns = unshare(CLONE_NEWNET) == 0;
	int st_s = 0, st_c = 0, len;
	pid_t s, c = 0;
	unsigned p;

	if (ns)
		lo_up();
	p = ns ? 13337 : free_port();
	len = snprintf(first, sizeof(first), "# bootstrap: 127.0.0.1:%u, %s\n", p,
		       ns ? "in a private network namespace"
			  : "in the host's network namespace (no private one allowed)");
	if (write(out, first, (size_t)len) != len)
		_exit(1);
	snprintf(port, sizeof(port), "%u", p);
	setenv("UCX_TLS", UCX_TLS, 1);
	setenv("UCX_WARN_UNUSED_ENV_VARS", "n", 1);
	if ((s = fork()) == 0) {
		bench_pin(o, 1);
		snprintf(log, sizeof(log), "%s/ucx-server.log", dir);
		redirect(STDOUT_FILENO, log);
		redirect(STDERR_FILENO, log);
		execlp("ucx_perftest", "ucx_perftest", "-p", port, "-b", batch, (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 1000 && !tcp_listening(p); i++) {
		if (waitpid(s, &st_s, WNOHANG) == s) {
			s = 0;
			break;
		}
		usleep(5000);
	}
	if (s && (c = fork()) == 0) {
		bench_pin(o, 0);
		dup2(out, STDOUT_FILENO);
		snprintf(log, sizeof(log), "%s/ucx-client.log", dir);
		redirect(STDERR_FILENO, log);
		execlp("ucx_perftest", "ucx_perftest", "127.0.0.1", "-p", port, "-b", batch, "-f",
		       (char *)NULL);
		_exit(127);
	}
	close(out);
	if (s) {
		waitpid(c, &st_c, 0);
		if (!WIFEXITED(st_c) || WEXITSTATUS(st_c))
			kill(s, SIGKILL); /* it may wait for a client that never came */
		waitpid(s, &st_s, 0);
	}
	_exit(s && WIFEXITED(st_c) && !WEXITSTATUS(st_c) && WIFEXITED(st_s) && !WEXITSTATUS(st_s)
		  ? 0
		  : 1);
}

/* The first line of @dir/@name holding "ERROR", into @why. */
static bool
ucx_error(const char *dir, const char *name, char *why, size_t len)
{
	char path[128], line[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if (!(f = fopen(path, "r")))
		return false;
	while (fgets(line, sizeof(line), f)) {
		const char *e = strstr(line, "ERROR");

		if (e) {
			snprintf(why, len, "%.*s", (int)strcspn(e, "\n"), e);
			fclose(f);
			return true;
		}
	}
	fclose(f);
	return false;
}

/* One line of the client's -f output: "LABEL iters p50 avg overall bw_avg bw_overall mr_avg
 * mr_overall". */
static void
ucx_parse(const char *text, const struct ucx_line *line, int n, results res, char *boot,
	  size_t blen)
{
	double v[8];
	char label[64];

	if (!strncmp(text, "# bootstrap: ", 13)) {
		snprintf(boot, blen, "%.*s", (int)strcspn(text + 13, "\n"), text + 13);
		return;
	}
	if (sscanf(text, "%63s %lf %lf %lf %lf %lf %lf %lf %lf", label, &v[0], &v[1], &v[2], &v[3],
		   &v[4], &v[5], &v[6], &v[7]) != 9)
		return;
	for (int i = 0; i < n; i++) {
		double *r = res[line[i].test][line[i].size];

		if (strcmp(label, line[i].label))
			continue;
		if (tests[line[i].test].bw) {
			/* ucx_perftest's MB/s are MiB/s */
			r[0] = v[5] * 1048576.0 * 8 / 1e9;
			r[1] = v[7] / 1e6;
		} else if (line[i].p99) {
			r[2] = v[1];
		} else {
			r[0] = v[3];
			r[1] = v[1];
		}
	}
}

/* One round of every wanted test over UCX; false with @why when it failed. */
static bool
ucx_round(const struct bench_opts *o, const struct plan *p, const char *dir, results res, char *why,
	  size_t wlen, char *boot, size_t blen)
{
	struct ucx_line line[T_N * MAX_SIZES];
	double end = bench_now() + 300;
	char batch[128], buf[8192];
	size_t used = 0;
	int n, fd[2], status = 0;
	pid_t pid;

	results_clear(res);
	snprintf(batch, sizeof(batch), "%s/ucx.batch", dir);
	if ((n = ucx_batch(p, batch, line, T_N * MAX_SIZES)) <= 0) {
		snprintf(why, wlen, "%s: %s", batch, n ? strerror(-n) : "nothing to run");
		return false;
	}
	if (pipe2(fd, O_CLOEXEC) < 0) {
		snprintf(why, wlen, "pipe: %s", strerror(errno));
		return false;
	}
	fflush(NULL);
	if ((pid = fork()) == 0) {
		setpgid(0, 0);
		close(fd[0]);
		ucx_pair(o, dir, batch, fd[1]);
	}
	setpgid(pid, pid);
	close(fd[1]);
	for (;;) {
		struct pollfd pfd = { fd[0], POLLIN, 0 };
		ssize_t k;
		char *nl;

		if (bench_now() > end) {
			kill(-pid, SIGKILL);
			snprintf(why, wlen, "ucx_perftest did not end within 300 s");
			break;
		}
		if (poll(&pfd, 1, 200) <= 0)
			continue;
		if ((k = read(fd[0], buf + used, sizeof(buf) - 1 - used)) <= 0)
			break;
		used += (size_t)k;
		buf[used] = 0;
		while ((nl = strchr(buf, '\n'))) {
			*nl = 0;
			ucx_parse(buf, line, n, res, boot, blen);
			used -= (size_t)(nl + 1 - buf);
			memmove(buf, nl + 1, used + 1);
		}
		if (used == sizeof(buf) - 1)
			used = 0; /* a line that long is none of ours */
	}
	close(fd[0]);
	waitpid(pid, &status, 0);
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return true;
	if (!why[0] && !ucx_error(dir, "ucx-client.log", why, wlen) &&
	    !ucx_error(dir, "ucx-server.log", why, wlen))
		snprintf(why, wlen, "ucx_perftest failed (status 0x%x)", status);
	return false;
}

/* ---------------------------------------------------------------------- */

/* Contexts a and b, which the user running the benchmark may act as; no rdmaN device. */
static void
make_config(char *buf, size_t len)
{
	unsigned uid = (unsigned)getuid();

	snprintf(buf, len,
		 "context0.name = \"a\"\ncontext0.uid = \"%u\"\ncontext0.vmci0.present = \"TRUE\"\n"
		 "context0.vmci0.id = \"3\"\n"
		 "context1.name = \"b\"\ncontext1.uid = \"%u\"\ncontext1.vmci0.present = \"TRUE\"\n"
		 "context1.vmci0.id = \"4\"\n",
		 uid, uid);
}

static void
plan_init(const struct bench_opts *o, struct plan *p)
{
	memset(p, 0, sizeof(*p));
	for (int t = 0; t < T_N; t++)
		p->want[t] = !o->only || !strncmp(tests[t].bench, o->only, strlen(o->only));
	for (long s = 64; s <= DATA_LEN && p->nsizes < MAX_SIZES; s *= o->quick ? 4 : 2)
		p->sizes[p->nsizes++] = s;
	p->bw_warm = o->quick ? 0.02 : 0.05;
	p->bw_dur = o->quick ? 0.1 : 0.4;
	p->lat_iters = o->quick ? 100000 : 1000000;
	p->lat_warm = 10000;
	p->lat_max = o->quick ? 1 : 4;
	p->ucx_msgs = o->quick ? 2000000 : 4000000;
	p->ucx_bytes = o->quick ? 4L << 30 : 16L << 30;
}

static double
median(results *r, int rounds, int t, int i, int m)
{
	double v[MAX_ROUNDS];
	size_t n = 0;

	for (int k = 0; k < rounds; k++)
		if (!isnan(r[k][t][i][m]))
			v[n++] = r[k][t][i][m];
	return n ? bench_percentile(v, n, 50) : NAN;
}

static void
emit_all(const struct plan *p, const struct shared *sh, results *vr, results *ur, int rounds)
{
	char fields[128];

	for (int t = 0; t < T_N; t++) {
		if (!p->want[t])
			continue;
		for (int i = 0; i < (tests[t].bw ? p->nsizes : 1); i++) {
			long size = tests[t].bw ? p->sizes[i] : 8;

			for (int m = 0; m < (tests[t].bw ? 2 : 3); m++) {
				const char *metric = tests[t].bw ? bw_metric[m] : lat_metric[m];
				double v = median(vr, rounds, t, i, m),
				       u = median(ur, rounds, t, i, m);

				if (tests[t].bw)
					snprintf(
					    fields, sizeof(fields),
					    "\"depth\":%u,\"signal_every\":%u,\"inline_max\":%u",
					    sh->depth, sh->batch, sh->inline_max);
				else
					fields[0] = 0;
				if (!isnan(v))
					bench_emit_fields(tests[t].bench, "vmfabric", size,
							  "busy_poll", fields, metric, v);
				snprintf(fields, sizeof(fields), "\"peer_test\":\"%s%s%s\"",
					 tests[t].ucx, tests[t].ucx_opt[0] ? " " : "",
					 tests[t].ucx_opt);
				if (!isnan(u))
					bench_emit_fields(tests[t].bench, "ucx", size, "busy_poll",
							  fields, metric, u);
			}
		}
	}
}

/* @v with @prec decimals, or "-" when not measured. */
static const char *
num(char *buf, size_t len, double v, int prec)
{
	if (isnan(v))
		snprintf(buf, len, "-");
	else
		snprintf(buf, len, "%.*f", prec, v);
	return buf;
}

static double
value(int t, const char *system, long size, const char *metric)
{
	return bench_value(tests[t].bench, system, size, "busy_poll", metric);
}

/* vmfabric against UCX, size by size: the medians and their ratio. */
static void
ratio_table(const struct plan *p, int rounds, const char *ucx_why)
{
	char a[24], b[24], c[24], e[24], f[24], g[24];
	bool bw = false, lat = false;

	printf("\nvmfabric vs ucx, median of %d round%s%s%s\n", rounds, rounds > 1 ? "s" : "",
	       ucx_why[0] ? "; ucx: " : "", ucx_why);
	for (int t = 0; t < T_N; t++) {
		if (!p->want[t] || !tests[t].bw)
			continue;
		if (!bw)
			printf("%-16s %9s %12s %10s %12s %10s %8s\n", "bench", "msg_bytes",
			       "vmf gbit_s", "vmf mpps", "ucx gbit_s", "ucx mpps", "vmf/ucx");
		bw = true;
		for (int i = 0; i < p->nsizes; i++) {
			long s = p->sizes[i];
			double vg = value(t, "vmfabric", s, "gbit_s"),
			       ug = value(t, "ucx", s, "gbit_s");

			printf("%-16s %9ld %12s %10s %12s %10s %8s\n", tests[t].bench, s,
			       num(a, sizeof(a), vg, 3),
			       num(b, sizeof(b), value(t, "vmfabric", s, "mpps"), 3),
			       num(c, sizeof(c), ug, 3),
			       num(e, sizeof(e), value(t, "ucx", s, "mpps"), 3),
			       num(f, sizeof(f), vg / ug, 3));
		}
	}
	for (int t = 0; t < T_N; t++) {
		double v[3], u[3];
		char vp[56], up[56];

		if (!p->want[t] || tests[t].bw)
			continue;
		if (!lat)
			printf("%-16s %9s %12s %14s %12s %14s %8s\n", "bench", "msg_bytes",
			       "vmf lat_us", "vmf p50/p99", "ucx lat_us", "ucx p50/p99", "vmf/ucx");
		lat = true;
		for (int m = 0; m < 3; m++) {
			v[m] = value(t, "vmfabric", 8, lat_metric[m]);
			u[m] = value(t, "ucx", 8, lat_metric[m]);
		}
		snprintf(vp, sizeof(vp), "%s/%s", num(a, sizeof(a), v[1], 3),
			 num(b, sizeof(b), v[2], 3));
		snprintf(up, sizeof(up), "%s/%s", num(a, sizeof(a), u[1], 3),
			 num(b, sizeof(b), u[2], 3));
		printf("%-16s %9d %12s %14s %12s %14s %8s\n", tests[t].bench, 8,
		       num(c, sizeof(c), v[0], 3), vp, num(e, sizeof(e), u[0], 3), up,
		       num(g, sizeof(g), v[0] / u[0], 3));
	}
	printf("(vmf/ucx: above 1 is better for bandwidth, below 1 for latency)\n");
}

int
main(int argc, char **argv)
{
	static results vr[MAX_ROUNDS], ur[MAX_ROUNDS];
	char dir[] = "/tmp/vmf-bench-rdma-XXXXXX", ucx_why[256] = "", boot[160] = "", conf[512];
	bool vmf_ok = true, ucx = true;
	struct bench_daemon d;
	struct shared *sh;
	struct bench_opts o;
	struct plan p;
	int rounds;

	bench_parse(argc, argv, &o,
		    "RDMA verbs between two processes (vmrdma0) vs UCX's ucx_perftest over shared "
		    "memory");
	plan_init(&o, &p);
	rounds = o.quick ? 1 : MAX_ROUNDS;
	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED) {
		perror("bench rdma: mmap");
		return 1;
	}
	make_config(conf, sizeof(conf));
	bench_daemon_start(&d, VMFABRICD_PATH, conf);
	if (!probe(sh)) {
		fprintf(stderr, "bench rdma: %s\n", sh->why);
		return 1;
	}
	if (!in_path("ucx_perftest")) {
		ucx = false;
		snprintf(
		    ucx_why, sizeof(ucx_why),
		    "skipped: ucx_perftest not found (Debian's ucx-utils, tools/setup-deps bench)");
	} else if (!mkdtemp(dir)) {
		ucx = false;
		snprintf(ucx_why, sizeof(ucx_why), "skipped: mkdtemp: %s", strerror(errno));
	}
	for (int r = 0; r < rounds; r++) {
		vmf_ok &= vmf_round(&o, &p, sh);
		memcpy(vr[r], sh->res, sizeof(results));
		if (ucx &&
		    !ucx_round(&o, &p, dir, ur[r], ucx_why, sizeof(ucx_why), boot, sizeof(boot)))
			fprintf(stderr, "bench rdma: ucx round %d: %s\n", r + 1, ucx_why);
		if (!ucx)
			results_clear(ur[r]);
	}
	vmf_ok &= bench_rdma_block(&o);
	bench_daemon_stop(&d);
	vmf_ok &= bench_rdma_roce(&o); /* two namespace hosts of its own */
	if (ucx) {
		char cmd[64];

		snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
		if (system(cmd)) {
		}
	}
	emit_all(&p, sh, vr, ur, rounds);
	ratio_table(&p, rounds, ucx_why);
	if (ucx_why[0])
		bench_note("ucx: %s", ucx_why);
	else if (ucx)
		bench_note("ucx: ucx_perftest over UCX_TLS=%s; TCP bootstrap %s", UCX_TLS, boot);
	bench_note("lat_us: the mean; lat_p50_us, lat_p99_us: percentiles (ucx: of its last 2048 "
		   "iterations)");
	bench_target("write_bw_64k_vs_ucx",
		     bench_value("rdma_write_bw", "vmfabric", 65536, "busy_poll", "gbit_s") /
			 bench_value("rdma_write_bw", "ucx", 65536, "busy_poll", "gbit_s"),
		     ">=", 1, "RDMA WRITE Gbit/s at 64 KiB, vmfabric / UCX ucp_put_bw");
	/* The median: on a shared machine a preempted poller moves the mean. */
	bench_target("write_lat_8_p50_us",
		     bench_value("rdma_write_lat", "vmfabric", 8, "busy_poll", "lat_p50_us"),
		     "<=", 1, "8 B WRITE ping-pong, half the round trip, median, us");
	bench_report();
	if (!vmf_ok)
		fprintf(stderr, "bench rdma: vmfabric measurements failed (above); exit 1\n");
	return vmf_ok ? 0 : 1;
}
