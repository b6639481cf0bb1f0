/* SPDX-License-Identifier: MIT */
/* The virtio-vsock device tests' shared helpers: see vsockdev.h. */
#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"
#include "vsockdev.h"


struct tw *
tw_new(enum fg_route_mode mode)
{
	struct tw *t = calloc(1, sizeof(*t));

	ASSERT(t);
	ASSERT_OK(loop_init(&t->loop));
	fg_fabric_init(&t->fab, mode);
	fg_new(&t->g, &t->loop, CID, &t->fab.fab);
	return t;
}

struct tw *
tw_open(enum fg_route_mode mode, const struct fg_opts *o)
{
	struct tw *t = tw_new(mode);

	fg_attach(&t->g, o);
	fg_pump(&t->g, 0);
	return t;
}

void
tw_close(struct tw *t)
{
	fg_free(&t->g);
	fg_fabric_free(&t->fab);
	loop_free(&t->loop);
	free(t);
}

struct vsock_stats
vd_stats(struct fg *g)
{
	struct vsock_stats st;

	vsock_dev_stats(g->dev, &st);
	return st;
}

/* Put a packet on the tx ring (waiting for descriptors if need be) and let the device run. */
void
vd_tx(struct fg *g, const struct vsock_hdr *h, const void *data, enum fg_layout l)
{
	for (int i = 0; fg_tx(g, h, data, l) == -ENOSPC; i++) {
		ASSERT_LT(i, 100);
		fg_pump(g, 10);
	}
	fg_pump(g, 0);
}

/* The next packet for the guest: it must be there. */
struct fg_pkt *
vd_next(struct fg *g, struct fg_pkt *p)
{
	if (!fg_rx_get(g, p)) {
		fg_pump(g, 0);
		ASSERT(fg_rx_get(g, p));
	}
	th_log("guest %u got %s len %u flags %u %u:%u -> %u:%u buf_alloc %u fwd_cnt %u", g->cid,
	       vsock_op_name(p->h.op), p->h.len, p->h.flags, (unsigned)p->h.src_cid, p->h.src_port,
	       (unsigned)p->h.dst_cid, p->h.dst_port, p->h.buf_alloc, p->h.fwd_cnt);
	ASSERT_GE(p->used_len, HDR);
	return p;
}

void
vd_none(struct fg *g)
{
	struct fg_pkt p;

	fg_pump(g, 0);
	if (fg_rx_get(g, &p))
		th_fail(__FILE__, __LINE__, "unexpected %s to guest %u (len %u)",
			vsock_op_name(p.h.op), g->cid, p.h.len);
}

void
vd_expect_addr(const struct fg_pkt *p, uint16_t op, uint32_t src_cid, uint32_t src_port,
	       uint32_t dst_cid, uint32_t dst_port, uint16_t type)
{
	ASSERT_EQ(p->h.op, op);
	ASSERT_EQ(p->h.src_cid, src_cid);
	ASSERT_EQ(p->h.src_port, src_port);
	ASSERT_EQ(p->h.dst_cid, dst_cid);
	ASSERT_EQ(p->h.dst_port, dst_port);
	ASSERT_EQ(p->h.type, type);
}

/* ---------------------------------------------------------------------- */
/* Guest connections */

void
gc_init(struct gc *c, struct fg *g, uint32_t port, uint32_t pcid, uint32_t pport, uint16_t type,
	uint32_t buf_alloc)
{
	*c = (struct gc){ .g = g,
			  .port = port,
			  .pcid = pcid,
			  .pport = pport,
			  .type = type,
			  .buf_alloc = buf_alloc };
}

struct vsock_hdr
gc_hdr(const struct gc *c, uint16_t op, uint32_t len, uint32_t flags)
{
	struct vsock_hdr h = fg_hdr(c->g, op, c->port, c->pcid, c->pport, c->type);

	h.len = len;
	h.flags = flags;
	h.buf_alloc = c->buf_alloc;
	h.fwd_cnt = c->fwd_cnt;
	return h;
}

void
gc_send(struct gc *c, uint16_t op, const void *data, uint32_t len, uint32_t flags, enum fg_layout l)
{
	struct vsock_hdr h = gc_hdr(c, op, len, flags);

	vd_tx(c->g, &h, data, l);
	if (op == VSOCK_OP_RW)
		c->tx_cnt += len;
}

/* Credit the device gives us. */
uint32_t
gc_credit(const struct gc *c)
{
	return c->peer_buf_alloc - (c->tx_cnt - c->peer_fwd_cnt);
}

/* Take a packet for @c: it must be @op with @c's addresses; its credit is noted. */
void
gc_take(struct gc *c, const struct fg_pkt *p, uint16_t op)
{
	vd_expect_addr(p, op, c->pcid, c->pport, c->g->cid, c->port, c->type);
	c->peer_buf_alloc = p->h.buf_alloc;
	c->peer_fwd_cnt = p->h.fwd_cnt;
	if (op != VSOCK_OP_RST) /* the device never takes back credit it gave */
		ASSERT_LE(c->tx_cnt - c->peer_fwd_cnt, c->peer_buf_alloc);
	if (op == VSOCK_OP_RW) {
		c->rx_cnt += p->h.len;
		/* Never more than the credit we gave. */
		ASSERT_LE(c->rx_cnt - c->fwd_cnt, c->buf_alloc);
	}
}

void
gc_expect(struct gc *c, struct fg_pkt *p, uint16_t op)
{
	gc_take(c, vd_next(c->g, p), op);
}

/* Connect guest port @port to HOST:@pport (the fabric accepts): the peer's end. */
struct qp *
gc_connect(struct tw *t, struct gc *c, uint32_t port, uint32_t pport, uint16_t type,
	   uint32_t buf_alloc)
{
	unsigned n = t->fab.npeers;

	gc_init(c, &t->g, port, HOST, pport, type, buf_alloc);
	if (fg_rx_posted(&t->g) < 16)
		fg_rx_post(&t->g, 64, FG_RX_BUF_LINUX, FG_TWO);
	gc_send(c, VSOCK_OP_REQUEST, NULL, 0, 0, FG_TWO);
	gc_expect(c, &t->p, VSOCK_OP_RESPONSE);
	ASSERT_EQ(t->p.h.len, 0);
	ASSERT_EQ(t->p.h.fwd_cnt, 0);
	ASSERT_EQ(t->fab.npeers, n + 1);
	return t->fab.peer[n];
}

/* Write all of @buf into the peer's end, letting the device move it. */
void
vd_peer_write(struct fg *g, struct qp *q, const uint8_t *buf, size_t len)
{
	for (int i = 0; len; i++) {
		ssize_t n = qp_write(q, buf, len, QP_DONTWAIT);

		ASSERT_LT(i, 1000);
		if (n == -EAGAIN) {
			fg_pump(g, 10);
			continue;
		}
		ASSERT_GT(n, 0);
		buf += n;
		len -= (size_t)n;
	}
	fg_pump(g, 0);
}

/* Read exactly @len bytes from the peer's end (the device must have them). */
void
vd_peer_read(struct fg *g, struct qp *q, uint8_t *buf, size_t len)
{
	for (int i = 0; len; i++) {
		ssize_t n = qp_read(q, buf, len, QP_DONTWAIT);

		ASSERT_LT(i, 1000);
		if (n == -EAGAIN) {
			fg_pump(g, 10);
			continue;
		}
		ASSERT_GT(n, 0);
		buf += n;
		len -= (size_t)n;
	}
}

void
vd_peer_eof(struct qp *q, bool reset)
{
	uint8_t b;

	ASSERT_EQ(qp_read(q, &b, 1, QP_DONTWAIT), 0);
	ASSERT_EQ(qp_peer_reset(q), reset);
}

void
vd_peer_nothing(struct qp *q)
{
	uint8_t b;

	ASSERT_EQ(qp_read(q, &b, 1, QP_DONTWAIT), -EAGAIN);
}

/* Take the peer end @q out of the fabric's hands (the test closes it). */
void
vd_take_peer(struct tw *t, struct qp *q)
{
	for (unsigned i = 0; i < t->fab.npeers; i++)
		if (t->fab.peer[i] == q)
			t->fab.peer[i] = NULL;
}

/* Receive everything the device has for @c into @buf at c->rx_cnt; packets seen. */
unsigned
gc_drain_rx(struct gc *c, struct fg_pkt *p, uint8_t *buf, size_t cap)
{
	unsigned n = 0;

	fg_pump(c->g, 0);
	while (fg_rx_get(c->g, p)) {
		uint32_t at = c->rx_cnt;

		gc_take(c, p, VSOCK_OP_RW);
		ASSERT_LE(at + p->h.len, cap);
		memcpy(buf + at, p->data, p->h.len);
		ASSERT_LE(p->h.len, FG_RX_BUF_LINUX);
		n++;
		if (fg_rx_posted(c->g) < 8)
			fg_rx_post(c->g, 32, FG_RX_BUF_LINUX, FG_TWO);
		fg_pump(c->g, 0);
	}
	return n;
}

/* Let the device use up every receive buffer posted, with 1-byte writes of the peer. */
void
vd_use_up_rx(struct tw *t, struct gc *c, struct qp *q)
{
	for (int i = 0; fg_rx_posted(&t->g); i++) {
		ASSERT_LT(i, 1000);
		vd_peer_write(&t->g, q, (const uint8_t *)"x", 1);
		while (fg_rx_get(&t->g, &t->p))
			gc_take(c, &t->p, VSOCK_OP_RW);
	}
	c->fwd_cnt = c->rx_cnt;
}
