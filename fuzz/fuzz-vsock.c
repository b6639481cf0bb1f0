/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: the virtio-vsock device's protocol engine (src/vsock) under
 * a hostile guest and hostile peers, through the fake guest of
 * tests/fakeguest.h: a real vhost-user setup over a socket pair, real split
 * rings in memfd guest memory, real queue pairs. The input is a sequence
 * of steps: packets whose header fields come mostly from the input (the
 * source CID right fifteen times in sixteen), payloads of any length (and
 * lengths that lie), receive buffers of every shape, event buffers, peer
 * actions on the queue pairs the stub fabric made (stream and record reads
 * and writes, shutdowns, close, death), offers from the fabric, loop
 * rounds (or none, so that events pile up for one round), time passing,
 * ring restarts, broken rings and frontends that come and go. A second
 * guest (CID 4) takes VM-to-VM connections.
 *
 * Checked: ASan/UBSan and the fake guest's checks of every used entry
 * (a chain it owns, a length that fits, a header whose len says what was
 * written), every packet addressed to its guest, the loop going idle (no
 * busy loop), every offer answered exactly once, and after the devices are
 * freed, every descriptor closed (memory: LeakSanitizer).
 *
 * Input: { u8 options } then steps { u8 op, operands } (see step()).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../tests/fakeguest.h"
#include "common/clock.h"
#include "common/log.h"
#include "fuzz.h"
#include "vmfabric/qp.h"
#include "vsock/internal.h"

#define FZ_STEPS 256
#define FZ_HOST	 2u
#define FZ_CID_A 3u
#define FZ_CID_B 4u
#define FZ_PORT	 1000u

struct fzw {
	struct fz in;
	struct loop loop;
	struct fg_fabric fab;
	struct fg *g[2];
	unsigned ng;
	struct fg_opts opts;
	uint32_t rx_bytes[2]; /* payload each guest received: a plausible fwd_cnt */
	unsigned offers, answers;
	struct fg_pkt p;
	uint8_t buf[VSOCK_MAX_PKT + 64];
};

static void
check(bool ok)
{
	if (!ok)
		abort();
}

static unsigned
take1(struct fzw *w)
{
	return (unsigned)fz_take(&w->in, 1);
}

/* The fabric: CID 2 refuses or accepts by port, CIDs 3 and 4 are the guests. */
static int
fz_route(void *ctx, struct vsock_dev *from, uint32_t src_port, uint32_t dst_cid, uint32_t dst_port,
	 int type, struct vsock_route *r)
{
	struct fzw *w = ctx;

	(void)from, (void)src_port, (void)type;
	if (dst_cid == FZ_CID_A || (dst_cid == FZ_CID_B && w->ng > 1)) {
		r->vm = w->g[dst_cid == FZ_CID_B]->dev;
		r->qsize = dst_port & 1 ? 4096 : QP_SIZE_DEFAULT;
		return 0;
	}
	if (dst_cid != FZ_HOST)
		return -EHOSTUNREACH;
	switch (dst_port % 4) {
	case 0:
		return -ECONNREFUSED;
	case 1:
		return -EACCES;
	case 2:
		return fg_fabric_accept(&w->fab, 4096, r);
	default:
		return fg_fabric_accept(&w->fab, QP_SIZE_DEFAULT, r);
	}
}

static void
fz_done(void *arg, int err)
{
	struct fzw *w = arg;

	check(err == 0 || err == -ECONNREFUSED || err == -ETIMEDOUT || err == -ECONNRESET);
	w->answers++;
}

/* Every packet the guest has: addressed to it, its header consistent. */
static void
drain_rx(struct fzw *w, unsigned gi)
{
	struct fg *g = w->g[gi];

	while (fg_rx_get(g, &w->p)) {
		check(w->p.used_len == 0 || w->p.used_len >= sizeof(struct vsock_hdr));
		if (!w->p.used_len)
			continue;
		check(w->p.h.dst_cid == g->cid);
		check(w->p.h.op >= VSOCK_OP_REQUEST && w->p.h.op <= VSOCK_OP_CREDIT_REQUEST);
		check(w->p.h.op == VSOCK_OP_RW || w->p.h.len == 0);
		w->rx_bytes[gi] += w->p.h.len;
	}
}

/*
 * A packet: header fields from the input, the payload a pattern. sel: bit
 * 0 the type, 1 a payload length that lies, 2 payload on any op, 3 a raw
 * type, 4-5 the layout; dst: 0-2 the destination, 4-7 all set: a spoofed
 * source CID; fl: 0-2 flags, 7 a header cut short.
 */
static void
step_packet(struct fzw *w, unsigned gi)
{
	struct fg *g = w->g[gi];
	unsigned sel = take1(w), cred = take1(w), dst = take1(w), fl;
	struct vsock_hdr h = { 0 };
	size_t hlen = sizeof(h);
	uint32_t plen;

	h.src_cid = (dst & 0xf0) == 0xf0 ? fz_take(&w->in, 1) : g->cid;
	h.op = (uint16_t)(take1(w) % 10);
	h.src_port = FZ_PORT + take1(w) % 4; /* one set of ports for both ends: VM-to-VM answers */
	h.dst_cid = dst % 8 < 4	   ? FZ_HOST
		    : dst % 8 == 4 ? FZ_CID_A
		    : dst % 8 == 5 ? FZ_CID_B
		    : dst % 8 == 6 ? 7
				   : fz_take(&w->in, 8);
	h.dst_port = FZ_PORT + take1(w) % 4;
	h.type = (uint16_t)(sel & 8 ? take1(w) : 1 + (sel & 1));
	fl = take1(w);
	h.flags = fl & 7;
	h.buf_alloc = cred % 5 == 0   ? 0
		      : cred % 5 == 1 ? 4096
		      : cred % 5 == 2 ? 65536
		      : cred % 5 == 3 ? 1u << 20
				      : (uint32_t)fz_take(&w->in, 4);
	h.fwd_cnt = cred & 0x80 ? (uint32_t)fz_take(&w->in, 4) : w->rx_bytes[gi];
	h.len = (uint32_t)fz_take(&w->in, 2) + (cred & 0x40 ? 0x10000u : 0);
	if (h.op != VSOCK_OP_RW && !(sel & 4))
		h.len = 0;
	plen = h.len > VSOCK_MAX_PKT ? VSOCK_MAX_PKT : h.len;
	if (sel & 2)
		plen = take1(w) * 16u;
	if (fl & 0x80)
		hlen = take1(w) % sizeof(h);
	memset(w->buf, (int)sel, plen);
	(void)fg_tx_raw(g, &h, hlen, w->buf, plen, (enum fg_layout)((sel >> 4) % FG_LAYOUTS));
}

static void
step_rx(struct fzw *w, unsigned gi)
{
	static const uint32_t lens[] = { 0, 1, 100, 4096, 65536, 4096, 4096, 30000 };
	unsigned a = take1(w), b = take1(w);

	if (a == 0xff) /* a buffer no header fits in, or one the device cannot write */
		fg_rx_post_raw(w->g[gi], b % 50, b & 0x80);
	else
		fg_rx_post(w->g[gi], 1 + a % 32, lens[b % 8],
			   (enum fg_layout)((b >> 3) % FG_LAYOUTS));
}

/* The peer of a queue pair the fabric made (or an offer's) does something. */
static void
step_peer(struct fzw *w)
{
	unsigned a = take1(w), i = take1(w);
	size_t n = (size_t)fz_take(&w->in, 2) + 1;
	struct qp *q;

	if (!w->fab.npeers || !(q = w->fab.peer[i % w->fab.npeers]))
		return;
	if (n > sizeof(w->buf))
		n = sizeof(w->buf);
	switch (a % 9) {
	case 0:
		memset(w->buf, (int)a, n);
		(void)qp_write(q, w->buf, n, QP_DONTWAIT);
		break;
	case 1:
		(void)qp_read(q, w->buf, n, QP_DONTWAIT);
		break;
	case 2:
		memset(w->buf, (int)a, n);
		(void)qp_msg_send(q, w->buf, n - 1, QP_DONTWAIT);
		break;
	case 3:
		(void)qp_msg_recv(q, w->buf, sizeof(w->buf), NULL, QP_DONTWAIT);
		break;
	case 4:
		(void)qp_shutdown(q, (int)((a >> 4) % 3)); /* SHUT_RD, SHUT_WR, SHUT_RDWR */
		break;
	case 5:
		qp_close(q);
		w->fab.peer[i % w->fab.npeers] = NULL;
		break;
	case 6:
		qp_detach(q); /* dies without a word */
		w->fab.peer[i % w->fab.npeers] = NULL;
		break;
	default:
		while (qp_read(q, w->buf, sizeof(w->buf), QP_DONTWAIT) > 0)
			;
	}
}

static void
step_offer(struct fzw *w, unsigned gi)
{
	unsigned a = take1(w);
	size_t size = a & 1 ? 4096 : QP_SIZE_DEFAULT;
	struct qp *dq, *q;

	if (w->fab.npeers == FG_PEERS_MAX || qp_create_pair(size, size, &dq, &q))
		return;
	qp_set_mode(q, QP_NONBLOCK);
	if (vsock_offer(w->g[gi]->dev, FZ_HOST, FZ_PORT + (a >> 1) % 4, FZ_PORT + (a >> 3) % 4,
			a & 0x20 ? SOCK_SEQPACKET : SOCK_STREAM, dq, fz_done, w)) {
		qp_close(dq);
		qp_close(q);
		return;
	}
	w->offers++;
	w->fab.peer[w->fab.npeers++] = q;
}

/* The rarer steps: the frontend, the rings, time. */
static void
step_device(struct fzw *w, unsigned gi)
{
	struct fg *g = w->g[gi];
	unsigned a = take1(w);
	uint32_t id;

	switch (a % 6) {
	case 0:
		fg_event_post(g, 1 + a / 64);
		while (fg_event_get(g, &id))
			check(id == VSOCK_EVENT_TRANSPORT_RESET);
		break;
	case 1: /* seconds pass: deadlines expire */
		vsock__expire(g->dev, clock_ns() + (int64_t)(a / 8) * 1000000000);
		vsock__pump(g->dev);
		break;
	case 2: /* a VM stop and start, or half of one */
		if (a & 0x40)
			(void)fg_ring_stop(g, (a / 8) % VSOCK_QUEUES);
		else if (a & 0x80)
			(void)fg_ring_start(g, (a / 8) % VSOCK_QUEUES);
		else
			(void)fg_ring_restart(g, (a / 8) % VSOCK_QUEUES);
		break;
	case 3:
		if (a & 0x80)
			fg_tx_bad_head(g, (uint16_t)(g->ring[VSOCK_Q_TX].num + a % 8));
		break;
	case 4:
		if (!vsock_dev_attached(g->dev) || (a & 0x80))
			(void)fg_try_attach(g, &w->opts);
		break;
	default:
		if (a & 0x80)
			fg_close_frontend(g);
	}
}

static void
step(struct fzw *w)
{
	unsigned op = take1(w), gi = (op >> 7) && w->ng > 1;

	switch (op % 12) {
	case 0:
	case 1:
	case 2:
		step_packet(w, gi);
		break;
	case 3:
		step_rx(w, gi);
		break;
	case 4:
		drain_rx(w, gi);
		break;
	case 5:
	case 6:
		step_peer(w);
		break;
	case 7:
		fg_pump(w->g[0], 0);
		break;
	case 8:
		loop_once(&w->loop, 0); /* one round: what the next step adds piles up */
		break;
	case 9:
		step_offer(w, gi);
		break;
	case 10:
		step_device(w, gi);
		break;
	default:
		fg_tx_reclaim(w->g[gi]);
	}
}

/* What an input did, for whoever grows the corpus by hand (FUZZ_VSOCK_TRACE set). */
static void
trace(struct fg *g)
{
	struct vsock_stats st;

	vsock_dev_stats(g->dev, &st);
	fprintf(stderr,
		"cid %u: attached %d (%s) open %llu opened %llu refused %llu pkts in %llu out %llu "
		"bytes in %llu out %llu resets %llu errors %llu no-buffers %llu\n",
		g->cid, vsock_dev_attached(g->dev),
		vsock_dev_why(g->dev) ? vsock_dev_why(g->dev) : "-", (unsigned long long)st.conns,
		(unsigned long long)st.opened, (unsigned long long)st.refused,
		(unsigned long long)st.from_guest_pkts, (unsigned long long)st.to_guest_pkts,
		(unsigned long long)st.from_guest_bytes, (unsigned long long)st.to_guest_bytes,
		(unsigned long long)st.resets, (unsigned long long)st.proto_errors,
		(unsigned long long)st.rx_no_buffers);
}


static void
setup(struct fzw *w)
{
	static const uint16_t nums[] = { 4, 16, 64, 128 };
	unsigned o = take1(w);

	w->opts.event_idx = o & 1;
	w->opts.indirect = o & 2;
	w->opts.no_event_ring = o & 4;
	w->opts.num[VSOCK_Q_RX] = nums[(o >> 3) & 3];
	w->opts.num[VSOCK_Q_TX] = nums[(o >> 5) & 3];
	w->opts.event_bufs = 1;
	w->ng = 1 + (o >> 7);
	check(loop_init(&w->loop) == 0);
	fg_fabric_init(&w->fab, FG_REFUSE);
	w->fab.fab.ctx = w;
	w->fab.fab.route = fz_route;
	for (unsigned i = 0; i < w->ng; i++) {
		w->g[i] = malloc(sizeof(*w->g[i]));
		check(w->g[i] != NULL);
		fg_new(w->g[i], &w->loop, i ? FZ_CID_B : FZ_CID_A, &w->fab.fab);
		check(fg_try_attach(w->g[i], &w->opts) == 0);
		fg_rx_post(w->g[i], 8, FG_RX_BUF_LINUX, FG_TWO);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fzw *w = calloc(1, sizeof(*w));
	int fds_before = fz_count_fds();

	check(w != NULL);
	if (!getenv("FUZZ_VSOCK_TRACE"))
		log_set_level(LOG_LVL_ERR); /* the device warns about every bad packet */
	w->in = (struct fz){ data, size };
	setup(w);
	for (int i = 0; i < FZ_STEPS && w->in.n; i++)
		step(w);
	fg_pump(w->g[0], 0);
	for (unsigned i = 0; i < w->ng; i++) {
		drain_rx(w, i);
		if (getenv("FUZZ_VSOCK_TRACE"))
			trace(w->g[i]);
	}
	for (unsigned i = w->ng; i-- > 0;) {
		fg_free(w->g[i]);
		free(w->g[i]);
	}
	check(w->answers == w->offers); /* each answered once, at the latest when freed */
	fg_fabric_free(&w->fab);
	loop_free(&w->loop);
	free(w);
	if (fz_count_fds() != fds_before)
		abort(); /* a descriptor leaked */
	return 0;
}
