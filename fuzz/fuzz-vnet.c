/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: the virtio-net device (src/switch/vnet.c) under a hostile
 * guest, through the fake guest of tests/fakeguest.h: real vhost-user over
 * a socket pair, split rings in memfd guest memory. A dataplane is set up
 * and never started: commands (the rings handed over at start and stop)
 * run directly, and the hooks run here as the dataplane thread runs them
 * (every port's drain, then every port's flush; sleeps: arm, then woken);
 * the thread's epoll set is made here, since the transmit ring's kick
 * descriptor joins it. The port is made by vnet_new() (its listening
 * socket in a temporary directory); the fake guest's frontend is attached
 * with vnet_attach(). A test port on the same switch injects frames
 * toward the guest and receives the guest's frames.
 *
 * Steps from the input: the guest posts transmit chains of every shape
 * (the header in its own descriptor or not, frames in up to 16
 * descriptors, indirect tables after direct descriptors, empty
 * descriptors, writable parts, chains shorter than the header, addresses
 * outside memory, header fields for checksum and segmentation offloads
 * that may lie) and receive chains of every size (none, smaller than the
 * header, the header, one byte, many small ones for MRG_RXBUF); the test
 * port injects frames toward the guest's address, broadcast or elsewhere;
 * the dataplane runs a loop, or sleeps and wakes; the guest takes its
 * used entries; rings stop and start (GET_VRING_BASE, SET_VRING_BASE and
 * _KICK), get a new call descriptor, lose their kick descriptor (polled),
 * or get a bad head; another frontend connects through the socket (the
 * guest's is dropped); the frontend goes and comes back with other
 * features (MRG_RXBUF, EVENT_IDX, INDIRECT_DESC, the offloads, no
 * VERSION_1) and other ring sizes; time passes; the test port goes down.
 *
 * The fuzz target keeps a model of both rings (the chains posted, in
 * order, and what the device must do with each) and checks:
 *   - every used entry names a chain the guest gave and did not get back,
 *     with a length within its writable bytes (the fake guest);
 *   - transmit: the chains come back in order, with length 0; each frame
 *     the device hands to the switch (seen through the port's mirror hook,
 *     which is a capture's: the target sets its own) is exactly the bytes
 *     after the header of the next chain (its checksum completed when the
 *     guest asked for it); chains with writable parts or shorter than the
 *     header give none and are counted; a chain the ring cannot take (bad
 *     address, an indirect table not negotiated, readable after writable,
 *     more descriptors than the ring) is never taken; a chain asking for
 *     segmentation gives frames no larger than the largest frame; each
 *     frame reaches the test port whole (as its VLAN sees it), or a drop
 *     is counted, or it went nowhere for a reason (its destination is the
 *     guest's own port, or nobody else is in its VLAN); a frame longer
 *     than any never reaches it;
 *   - receive: each frame the switch gives the port is the test port's
 *     (as the guest's VLAN sees it) and takes exactly the buffers the
 *     model says (in order; the first holds the header; at most 32 with
 *     MRG_RXBUF, one without), or is refused exactly when they are not
 *     there (counted); the guest finds it in its used ring behind a
 *     virtio_net_hdr_v1 of zeros but num_buffers, which is the number of
 *     used entries it took, with exactly the lengths written;
 *   - no interrupt is lost: a flush that publishes entries to a guest
 *     that had seen all of them signals its call descriptor; no kick is
 *     lost: after the device armed and slept, a chain posted makes the
 *     guest kick;
 *   - ASan/UBSan; after teardown nothing leaks and every descriptor is
 *     closed.
 *
 * Input: { u8 setup[3] } then steps { u8 op, operands } (see step()).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "../tests/fakeguest.h"
#include "common/log.h"
#include "fuzz.h"
#include "switch/vnet.h"

#define FZ_STEPS  256
#define FZ_CHAINS 256 /* model entries per ring: its size and a bad head */

/* Feature bits of virtio-net (virtio 1.x, 5.1.3). */
#define FZ_NET_F_CSUM	   (1ull << 0)
#define FZ_NET_F_HOST_TSO4 (1ull << 11)
#define FZ_NET_F_HOST_TSO6 (1ull << 12)
#define FZ_NET_F_MRG_RXBUF (1ull << 15)
#define FZ_OFFLOADS	   (FZ_NET_F_CSUM | FZ_NET_F_HOST_TSO4 | FZ_NET_F_HOST_TSO6)

static void
check(bool ok)
{
	if (!ok)
		abort();
}

/* What the device must do with a chain. */
enum kind {
	K_FRAME,  /* one frame: the bytes after the header (checksum completed if asked) */
	K_BAD,	  /* no frame; counted as a bad transmit chain */
	K_BREAK,  /* the ring cannot take it: never taken */
	K_OPAQUE, /* segmentation asked (or a checksum the device may refuse): any frames */
	K_LONG,	  /* a frame longer than any: none, or one that reaches nobody */
};

/* A chain the guest posted, in the model. */
struct mchain {
	uint16_t head;
	enum kind kind;
	uint32_t wlen;	/* receive: writable bytes */
	uint8_t *frame; /* transmit K_FRAME, K_LONG: what the switch must get */
	size_t len;
	bool tso; /* K_OPAQUE: segmentation (each frame fits the largest one) */
};

struct mring {
	struct mchain c[FZ_CHAINS];
	unsigned first, n;
};

/* A frame the guest must find in its receive ring. */
struct rxexp {
	uint8_t *frame;
	size_t len;
	uint16_t nb;
	uint16_t head[VNET_MAX_BUFS];
	uint32_t used[VNET_MAX_BUFS];
};

struct tport {
	struct dp_port dp; /* first */
	struct fzw *w;
	unsigned room; /* frames it takes in this batch (then -ENOBUFS) */
};

struct fzw {
	struct fz in;
	struct loop loop;
	struct fg g;
	struct fg_opts opts;
	bool connected;
	struct vsw_dp *d;
	int ep;
	struct vnet_port *v;
	char path[108]; /* its socket */
	struct tport t;
	struct vsw *sw;
	int64_t now;
	/* The model. */
	struct mring tx, rx;
	bool tx_bad_head, rx_bad_head; /* one of each per connection */
	bool rx_broken;
	uint16_t taken[FZ_CHAINS]; /* transmit heads the device took, in order */
	unsigned taken_first, taken_n;
	struct rxexp rxq[256]; /* frames given to the guest, not yet read */
	unsigned rx_first, rx_n;
	/* Frames the port took while the guest had no buffers for them, oldest first. */
	struct {
		uint8_t *frame;
		size_t len;
	} held[VNET_HOLD];
	unsigned held_first, held_n;
	/* The frame the port is handing to the switch (the mirror saw it). */
	struct {
		bool valid, delivered;
		uint8_t *frame; /* what the test port must get (as its VLAN sees it) */
		size_t len;
		uint8_t hdr[18]; /* what the switch parsed */
		size_t hlen, wire_len;
		uint64_t drops0;
	} pend;
	unsigned mcur;	  /* model entry the mirror is at, during a drain */
	unsigned mframes; /* frames of a K_LONG entry */
	/* The frame the test port is injecting. */
	struct {
		bool valid, delivered;
		const uint8_t *frame;
		size_t len;
	} inj;
	struct {
		uint8_t *p;
		size_t n, cap;
	} inject; /* frames queued for the test port's next drain, each { u32 len, bytes } */
	/* What happened, for whoever grows the corpus (FUZZ_VNET_TRACE set). */
	uint64_t n_tx, n_tport, n_rx, n_conn;
	/* Sleeping. */
	bool asleep;
	uint64_t kicks0;
	/* Scratch. */
	uint8_t data[FG_SLOT_BYTES + 64], buf[FG_SLOT_BYTES + 64], x[FG_SLOT_BYTES + 64];
};

static unsigned
take1(struct fzw *w)
{
	return (unsigned)fz_take(&w->in, 1);
}

static uint16_t
le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint8_t *
dup_bytes(const void *p, size_t n)
{
	uint8_t *c = malloc(n ? n : 1);

	check(c != NULL);
	memcpy(c, p, n);
	return c;
}

static struct mchain *
mr_at(struct mring *r, unsigned i)
{
	return &r->c[(r->first + i) % FZ_CHAINS];
}

static struct mchain *
mr_push(struct mring *r)
{
	struct mchain *c;

	check(r->n < FZ_CHAINS);
	c = mr_at(r, r->n++);
	memset(c, 0, sizeof(*c));
	return c;
}

static void
mr_pop(struct mring *r)
{
	free(mr_at(r, 0)->frame);
	r->first = (r->first + 1) % FZ_CHAINS;
	r->n--;
}

static void
mr_clear(struct mring *r)
{
	while (r->n)
		mr_pop(r);
}

/* ---------------------------------------------------------------------- */
/* The switch's view of a frame */

static bool
member(uint16_t port_vlan, uint16_t vlan)
{
	return port_vlan == VLAN_TRUNK || port_vlan == vlan;
}

/* The VLAN a port in @in_vlan sends @f in, or -1 when the switch does not take it. */
static int
frame_vlan(const uint8_t *f, size_t len, uint16_t in_vlan, uint32_t mtu, struct eth_info *e)
{
	if (eth_parse(f, len, e) != ETH_OK || e->payload_len > mtu)
		return -1;
	if (in_vlan == VLAN_TRUNK)
		return e->tagged ? e->vid : VLAN_NONE;
	return e->tagged ? -1 : in_vlan;
}

/*
 * The frame a port in @out_vlan gets when a port in @in_vlan sends @f: its
 * length in @o, or 0 when it does not get it (not taken, or another VLAN).
 */
static size_t
egress(const uint8_t *f, size_t len, uint16_t in_vlan, uint16_t out_vlan, uint32_t mtu, uint8_t *o)
{
	struct eth_info e;
	int vlan = frame_vlan(f, len, in_vlan, mtu, &e);
	size_t n = 12;

	if (vlan < 0 || !member(out_vlan, (uint16_t)vlan))
		return 0;
	memcpy(o, f, 12);
	if (out_vlan == VLAN_TRUNK && vlan != VLAN_NONE) {
		uint16_t tci = (uint16_t)(e.pcp_dei | vlan);

		o[12] = 0x81, o[13] = 0x00, o[14] = (uint8_t)(tci >> 8), o[15] = (uint8_t)tci;
		n = 16;
	}
	memcpy(o + n, f + e.hdr_len - 2, len - (e.hdr_len - 2));
	return n + len - (e.hdr_len - 2);
}

static void
gather(const struct iovec *iov, int n, size_t len, uint8_t *out, size_t max)
{
	size_t off = 0;

	for (int i = 0; i < n; i++) {
		check(off + iov[i].iov_len <= max);
		memcpy(out + off, iov[i].iov_base, iov[i].iov_len);
		off += iov[i].iov_len;
	}
	check(off == len);
}

/* Drops the switch counted for the guest's frames: not the bad chains the port counts itself. */
static uint64_t
drops(struct fzw *w)
{
	uint64_t n = 0;

	for (int i = 0; i < VSW_DROP_N; i++)
		n += atomic_load(&w->v->dp.p.c.drops[i]);
	n += atomic_load(&w->t.dp.p.c.drops[VSW_DROP_QUEUE]);
	n += atomic_load(&w->t.dp.p.c.drops[VSW_DROP_DOWN]);
	return n - w->v->st.tx_bad;
}

/*
 * What became of the frame the port handed on last: the test port got it
 * (whole: see t_enqueue()), or a drop was counted since, or it went
 * nowhere for a reason. (Since, not for it: the port may count chains it
 * drops itself in the same window, in whichever counter.)
 */
static void
settle(struct fzw *w)
{
	uint64_t d;
	struct eth_info e;
	int vlan;

	if (!w->pend.valid)
		return;
	w->pend.valid = false;
	d = drops(w) - w->pend.drops0;
	free(w->pend.frame);
	w->pend.frame = NULL;
	if (w->pend.delivered || d)
		return;
	vlan = frame_vlan(w->pend.hdr, w->pend.wire_len, w->v->dp.p.vlan, w->sw->mtu, &e);
	check(vlan >= 0); /* taken */
	/* To the port it came from, or nobody else is in its VLAN. */
	if (!eth_is_mcast(e.dst) &&
	    fdb_lookup(&w->sw->fdb, e.dst, (uint16_t)vlan, w->now) == w->v->dp.p.id)
		return;
	check(!member(w->t.dp.p.vlan, (uint16_t)vlan));
}

/* ---------------------------------------------------------------------- */
/* The receive model: which buffers a frame of @len bytes takes */

static bool
rx_predict(struct fzw *w, size_t len, struct rxexp *x)
{
	uint32_t hdr = w->v->hdr_len;
	unsigned most = w->v->mrg ? VNET_MAX_BUFS : 1;
	size_t from = 0;
	unsigned n = 0;

	if (w->rx_broken)
		return false;
	for (;;) {
		struct mchain *c;
		uint32_t off = n ? 0 : hdr, k;

		if (n == most || n == w->rx.n)
			return false;
		c = mr_at(&w->rx, n);
		if (c->kind == K_BREAK) {
			w->rx_broken = true; /* for good: a restart takes it again */
			return false;
		}
		if (c->wlen < off)
			return false;
		k = (uint32_t)(len - from < c->wlen - off ? len - from : c->wlen - off);
		x->head[n] = c->head;
		x->used[n] = off + k;
		n++;
		from += k;
		if (from == len)
			break;
	}
	x->nb = (uint16_t)n;
	return true;
}

/* A frame into the guest's buffers, if the model has them: true, its buffers taken. */
static bool
m_place(struct fzw *w, uint8_t *frame, size_t len)
{
	struct rxexp *x;

	check(w->rx_n < 256);
	x = &w->rxq[(w->rx_first + w->rx_n) % 256];
	if (!rx_predict(w, len, x))
		return false;
	for (unsigned i = 0; i < x->nb; i++)
		mr_pop(&w->rx);
	x->frame = frame;
	x->len = len;
	w->rx_n++;
	return true;
}

/* The held frames go in, oldest first, while the guest has buffers (rx_release). */
static void
m_release(struct fzw *w)
{
	while (w->held_n && m_place(w, w->held[w->held_first].frame, w->held[w->held_first].len)) {
		w->held_first = (w->held_first + 1) % VNET_HOLD;
		w->held_n--;
	}
}

/* The receive ring stopped: what was held for it is gone. */
static void
m_held_clear(struct fzw *w)
{
	while (w->held_n) {
		free(w->held[w->held_first].frame);
		w->held_first = (w->held_first + 1) % VNET_HOLD;
		w->held_n--;
	}
}

/* ---------------------------------------------------------------------- */
/* The ports' hooks */

/* The guest's frames, both ways, as the switch sees them. */
static void
v_mirror(struct vsw_port *p, const struct iovec *iov, int n, size_t len, bool to_port)
{
	struct fzw *w = p->mirror_ctx;
	uint8_t *f = w->buf;

	check(len <= sizeof(w->buf));
	gather(iov, n, len, f, sizeof(w->buf));
	if (to_port) {
		/* A frame from the test port, for the guest: the buffers the model says. */
		size_t l;

		check(w->inj.valid && !w->inj.delivered);
		w->inj.delivered = true;
		l = egress(w->inj.frame, w->inj.len, w->t.dp.p.vlan, w->v->dp.p.vlan, w->sw->mtu,
			   w->x);
		check(l == len && !memcmp(w->x, f, len));
		/* Taken: into the guest's buffers behind what was held, or held itself. */
		m_release(w);
		if (!w->held_n) {
			uint8_t *c = dup_bytes(f, len);

			if (m_place(w, c, len))
				return;
			free(c);
		}
		check(w->held_n < VNET_HOLD);
		w->held[(w->held_first + w->held_n) % VNET_HOLD].frame = dup_bytes(f, len);
		w->held[(w->held_first + w->held_n) % VNET_HOLD].len = len;
		w->held_n++;
		return;
	}
	/* The guest's frame: from the next chains that give one. */
	settle(w);
	for (;;) {
		struct mchain *c;

		check(w->mcur < w->tx.n);
		c = mr_at(&w->tx, w->mcur);
		check(c->kind != K_BREAK);
		if (c->kind == K_BAD) {
			w->mcur++;
			continue;
		}
		if (c->kind == K_OPAQUE) {
			/* Alone in its drain: every frame is its. */
			check(len <= VSW_FRAME_MAX || !c->tso);
			w->pend.frame = dup_bytes(f, len);
			w->pend.len = len;
			break;
		}
		if (c->kind == K_LONG) {
			/*
			 * Alone in its drain: one frame at most, whole or cut to
			 * the largest frame (the switch must drop it either way:
			 * t_enqueue() compares with the whole frame).
			 */
			check(!w->mframes++);
			check(len == c->len || len == VSW_FRAME_MAX);
			check(!memcmp(f, c->frame, len));
			w->pend.frame = dup_bytes(c->frame, c->len);
			w->pend.len = c->len;
			break;
		}
		check(len == c->len && !memcmp(f, c->frame, len));
		w->pend.frame = dup_bytes(c->frame, c->len);
		w->pend.len = c->len;
		w->mcur++;
		break;
	}
	w->n_tx++;
	w->pend.valid = true;
	w->pend.delivered = false;
	w->pend.wire_len = len;
	w->pend.hlen = len < 18 ? len : 18;
	memcpy(w->pend.hdr, f, w->pend.hlen);
	w->pend.drops0 = drops(w);
}

/* The test port gets a frame: the guest's, whole, as the test port's VLAN sees it. */
static int
t_enqueue(struct vsw_port *p, const struct iovec *iov, int n, size_t len)
{
	struct tport *t = (struct tport *)p;
	struct fzw *w = t->w;
	size_t l;

	check(len >= ETH_HDR && len <= VSW_FRAME_MAX);
	gather(iov, n, len, w->x, sizeof(w->x));
	check(w->pend.valid && !w->pend.delivered);
	l = egress(w->pend.frame, w->pend.len, w->v->dp.p.vlan, p->vlan, w->sw->mtu, w->buf);
	check(l == len && !memcmp(w->buf, w->x, len));
	if (!t->room)
		return -ENOBUFS;
	t->room--;
	w->pend.delivered = true;
	w->n_tport++;
	return 0;
}

/* The test port's drain: the frames queued, into the switch. */
static int
t_drain(struct dp_port *p, struct vsw *sw, int max, int64_t now)
{
	struct tport *t = (struct tport *)p;
	struct fzw *w = t->w;
	size_t pos = 0;
	int n = 0;

	while (n < max && w->inject.n - pos >= 4) {
		uint32_t l;
		uint64_t q0 = atomic_load(&w->v->dp.p.c.drops[VSW_DROP_QUEUE]), nb0;
		struct iovec v[2];

		memcpy(&l, w->inject.p + pos, 4);
		v[0] = (struct iovec){ w->inject.p + pos + 4, l / 2 };
		v[1] = (struct iovec){ w->inject.p + pos + 4 + l / 2, l - l / 2 };
		w->inj.valid = true;
		w->inj.delivered = false;
		w->inj.frame = w->inject.p + pos + 4;
		w->inj.len = l;
		nb0 = w->v->st.rx_no_buffers;
		vsw_input(sw, &p->p, v, 2, l, now);
		if (atomic_load(&w->v->dp.p.c.drops[VSW_DROP_QUEUE]) != q0) {
			/* Refused: exactly when the model has no buffers and no room to hold it. */
			size_t el =
			    egress(w->inj.frame, l, p->p.vlan, w->v->dp.p.vlan, w->sw->mtu, w->x);

			check(!w->inj.delivered && el);
			m_release(w);
			check(w->held_n == VNET_HOLD);
			check(w->v->st.rx_no_buffers == nb0 + 1);
		} else {
			check(w->v->st.rx_no_buffers == nb0);
		}
		w->inj.valid = false;
		pos += 4 + (size_t)l;
		n++;
	}
	if (pos) {
		memmove(w->inject.p, w->inject.p + pos, w->inject.n - pos);
		w->inject.n -= pos;
	}
	return n;
}

static void
t_destroy(struct dp_port *p)
{
	(void)p; /* part of struct fzw */
}

static const struct vsw_port_ops t_ops = { .enqueue = t_enqueue };
static const struct dp_port_ops t_dops = { .kind = "test", .drain = t_drain, .destroy = t_destroy };

/* ---------------------------------------------------------------------- */
/* The dataplane */

/* The guest's port drains: every frame checked against the chains it took. */
static int
v_drain(struct fzw *w, struct dp_port *p, int max)
{
	unsigned bad = 0, other = 0;
	uint64_t tx_bad0 = w->v->st.tx_bad;
	int n;

	/* A chain whose frames cannot be told from the next chain's is alone in its drain. */
	for (unsigned i = 0; i < w->tx.n && i < (unsigned)max; i++)
		if (mr_at(&w->tx, i)->kind >= K_OPAQUE) {
			max = i ? (int)i : 1;
			break;
		}
	w->mcur = 0;
	w->mframes = 0;
	n = p->dops->drain(p, w->sw, max, w->now);
	settle(w);
	check(n >= 0 && n <= max && (unsigned)n <= w->tx.n && w->mcur <= (unsigned)n);
	for (int i = 0; i < n; i++) {
		struct mchain *c = mr_at(&w->tx, 0);

		check(c->kind != K_BREAK);
		check(c->kind != K_FRAME || i < (int)w->mcur); /* its frame came */
		bad += c->kind == K_BAD;
		other += c->kind >= K_OPAQUE;
		/* Taken: back in the used ring, in this order (see reclaim()). */
		check(w->taken_n < FZ_CHAINS);
		w->taken[(w->taken_first + w->taken_n++) % FZ_CHAINS] = c->head;
		mr_pop(&w->tx);
	}
	check(w->v->st.tx_bad - tx_bad0 >= bad && w->v->st.tx_bad - tx_bad0 <= bad + other);
	return n;
}

static void
wake(struct fzw *w, bool fired)
{
	struct vsw_dp *d = w->d;

	if (!w->asleep)
		return;
	w->asleep = false;
	for (size_t i = 0; i < d->nport; i++)
		if (d->port[i]->dops->woken)
			d->port[i]->dops->woken(d->port[i], fired);
}

/* Interrupts owed: a ring whose used entries the guest had all seen. */
struct irq {
	bool seen_all[2];
};

static void
irq_before(struct fzw *w, struct irq *s)
{
	for (unsigned q = 0; q < 2; q++) {
		s->seen_all[q] = w->connected && w->g.ring[q].num && !fg_used_pending(&w->g, q);
		(void)fg_calls(&w->g, q);
	}
}

static void
irq_after(struct fzw *w, const struct irq *s)
{
	for (unsigned q = 0; q < 2; q++)
		if (s->seen_all[q] && fg_used_pending(&w->g, q))
			check(fg_calls(&w->g, q) > 0);
}

/* One loop of the dataplane thread (dp_main), without its commands and sleeps. */
static void
batch(struct fzw *w, int max)
{
	struct vsw_dp *d = w->d;
	struct irq s;

	wake(w, true);
	irq_before(w, &s);
	for (size_t i = 0; i < d->nport; i++) {
		struct dp_port *p = d->port[i];

		if (p->dead)
			continue;
		if (p == &w->v->dp)
			v_drain(w, p, max);
		else
			p->dops->drain(p, &d->sw[p->sw], max, w->now);
	}
	for (size_t i = 0; i < d->nport; i++)
		if (d->port[i]->dops->flush)
			d->port[i]->dops->flush(d->port[i]);
	m_release(w); /* the port's flush let held frames in */
	irq_after(w, &s);
}

/* The thread arms every port and sleeps, unless one says work came. */
static void
sleep_dp(struct fzw *w)
{
	struct vsw_dp *d = w->d;

	if (w->asleep)
		return;
	for (size_t i = 0; i < d->nport; i++)
		if (d->port[i]->dops->arm && d->port[i]->dops->arm(d->port[i]))
			return; /* polls on */
	w->asleep = true;
	w->kicks0 = w->g.ring[VNET_TXQ].kicks;
}

/* ---------------------------------------------------------------------- */
/* The guest */

/* Take the used transmit chains back: in the order taken, nothing written. */
static void
reclaim(struct fzw *w)
{
	uint16_t head;
	uint32_t len;

	while (w->connected && fg_used_take(&w->g, VNET_TXQ, &head, &len, NULL, 0)) {
		check(len == 0);
		check(w->taken_n && w->taken[w->taken_first] == head);
		w->taken_first = (w->taken_first + 1) % FZ_CHAINS;
		w->taken_n--;
	}
}

/* Read every frame the guest got: the header, num_buffers, the used entries, the bytes. */
static void
receive(struct fzw *w)
{
	uint32_t hdr = w->v->hdr_len;

	while (w->connected && fg_used_pending(&w->g, VNET_RXQ)) {
		struct rxexp *x;
		uint16_t head, nb;
		uint32_t len;
		size_t got;

		check(w->rx_n > 0);
		x = &w->rxq[w->rx_first];
		check(fg_used_take(&w->g, VNET_RXQ, &head, &len, w->buf, sizeof(w->buf)));
		check(head == x->head[0] && len == x->used[0] && len >= hdr);
		for (unsigned i = 0; i < 10; i++)
			check(w->buf[i] == 0); /* nothing offloaded */
		nb = hdr == 12 ? le16(w->buf + 10) : 1;
		check(nb == x->nb && nb >= 1 && nb <= (w->v->mrg ? VNET_MAX_BUFS : 1));
		/* The frame's other buffers were published with it. */
		check(fg_used_pending(&w->g, VNET_RXQ) >= (unsigned)nb - 1);
		got = len - hdr;
		memmove(w->buf, w->buf + hdr, got);
		for (unsigned i = 1; i < nb; i++) {
			check(fg_used_take(&w->g, VNET_RXQ, &head, &len, w->buf + got,
					   (uint32_t)(sizeof(w->buf) - got)));
			check(head == x->head[i] && len == x->used[i]);
			got += len;
		}
		check(got == x->len && !memcmp(w->buf, x->frame, got));
		w->n_rx++;
		free(x->frame);
		w->rx_first = (w->rx_first + 1) % 256;
		w->rx_n--;
	}
}

/* The Internet checksum of [@start, @len) into the field at @start + @off (virtio 5.1.6.2). */
static void
complete_csum(uint8_t *f, size_t len, size_t start, size_t off)
{
	uint64_t sum = 0;

	for (size_t i = start; i < len; i += 2)
		sum += (uint32_t)f[i] << 8 | (i + 1 < len ? f[i + 1] : 0);
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	f[start + off] = (uint8_t)(~sum >> 8);
	f[start + off + 1] = (uint8_t)~sum;
}

static const uint8_t bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };

/*
 * A frame of @len bytes at @f: addresses and a tag from @sel (bits 0-1 the
 * destination, 2-3 the source, 5-6 a VID, 7 a tag), then (bit 4) IPv4 or
 * IPv6 and TCP headers whose fields may lie, then a pattern.
 */
static void
build_frame(struct fzw *w, uint8_t *f, size_t len, unsigned sel, bool from_guest)
{
	uint8_t h[18 + 60 + 60];
	uint8_t other[6] = { 0x02, 0, 0, 0, 0x22, (uint8_t)(sel >> 5) };
	const uint8_t *me = from_guest ? w->v->dp.mac : w->t.dp.mac;
	const uint8_t *peer = from_guest ? w->t.dp.mac : w->v->dp.mac;
	size_t n = 12;

	memset(f, (int)(sel * 13 + 5), len);
	memcpy(h, sel % 4 == 0 ? peer : sel % 4 == 1 ? bcast : sel % 4 == 2 ? me : other, 6);
	switch ((sel >> 2) & 3) {
	case 0:
	case 1:
		memcpy(h + 6, me, 6);
		break;
	case 2:
		memcpy(h + 6, other, 6);
		break;
	default: /* a multicast source, or another port's address */
		memcpy(h + 6, sel & 0x20 ? bcast : peer, 6);
	}
	if (sel & 0x80) { /* a tag: VID 0, 10, 20 or 4095 */
		static const uint16_t vids[] = { 0, 10, 20, 4095 };
		uint16_t tci = (uint16_t)(0x2000 | vids[(sel >> 5) & 3]);

		h[12] = 0x81, h[13] = 0x00, h[14] = (uint8_t)(tci >> 8), h[15] = (uint8_t)tci;
		n = 16;
	}
	if (sel & 0x10) { /* IPv4 or IPv6, and TCP */
		unsigned a = take1(w), b = take1(w);
		uint8_t *ip = h + n + 2, *tcp;

		if (a & 1) {
			h[n] = 0x86, h[n + 1] = 0xdd;
			memset(ip, 0, 40);
			ip[0] = 0x60;
			ip[6] = a & 2 ? 17 : 6;
			ip[7] = 64;
			tcp = ip + 40;
		} else {
			size_t ihl = a & 2 ? 5 + (b & 3) * 2 : 5;

			h[n] = 0x08, h[n + 1] = 0x00;
			memset(ip, 0, ihl * 4);
			ip[0] = (uint8_t)(0x40 | ihl);
			ip[6] = a & 4 ? 0x20 : 0x40; /* a fragment, or don't fragment */
			ip[8] = 64;
			ip[9] = a & 8 ? 17 : 6;
			ip[12] = 10, ip[15] = 1, ip[16] = 10, ip[19] = 2;
			tcp = ip + ihl * 4;
		}
		memset(tcp, 0, 20);
		tcp[0] = 0x30, tcp[1] = 0x39, tcp[2] = 0x00, tcp[3] = 0x50;
		tcp[4] = (uint8_t)b, tcp[7] = 1;
		tcp[12] = (uint8_t)((a & 0x10 ? 5 + (b >> 4) % 11 : 5) << 4);
		tcp[13] = (uint8_t)(0x18 | (a & 0x20 ? 0x81 : 0)); /* PSH ACK (FIN CWR) */
		n = (size_t)(tcp + 20 - h);
	} else {
		h[n] = 0x08, h[n + 1] = 0x06; /* ARP */
		n += 2;
	}
	memcpy(f, h, n < len ? n : len);
}

/*
 * Whether the guest may publish on ring @q: never more entries ahead of
 * the device than the ring's size (with a head that is no chain, the
 * descriptors would allow one more; the device would refuse the ring at
 * its next look at the index, wherever that is).
 */
static bool
room(struct fzw *w, unsigned q)
{
	return (q ? w->tx.n : w->rx.n) < w->g.ring[q].num;
}

/*
 * Cut @len bytes into @k pieces at places from the input (pieces may be
 * empty) after the @n pieces in @seg: the new count.
 */
static unsigned
cut(struct fzw *w, struct fg_seg *seg, unsigned n, size_t len, unsigned k)
{
	for (unsigned i = 0; i + 1 < k && n + 1 < FG_SEGS_MAX; i++) {
		size_t c = len * take1(w) / 255;

		seg[n++] = (struct fg_seg){ .len = (uint32_t)c };
		len -= c;
	}
	seg[n++] = (struct fg_seg){ .len = (uint32_t)len };
	return n;
}

/*
 * A transmit chain from the input. shape: bits 0-1 the layout (the header
 * alone then the frame in pieces, one piece, pieces anywhere, many
 * pieces), 2-3 how many pieces, 4 an indirect table, 5 a broken driver's
 * extras, 6 fewer bytes than the header, 7 offload fields.
 */
static void
tx_post(struct fzw *w)
{
	unsigned shape = take1(w), sel = take1(w), l16 = (unsigned)fz_take(&w->in, 2);
	uint32_t hdr = w->v->hdr_len;
	size_t flen = l16 & 0x8000 ? (l16 & 0x7fff) * 21u / 10 : l16 % 9100, rlen, out = 0;
	struct fg_seg seg[FG_SEGS_MAX];
	unsigned nseg = 0, ndirect, k = 1 + ((shape >> 2) & 3);
	bool offl = w->g.features & FZ_OFFLOADS, writable = false, nin = false, brk = false;
	uint8_t *h = w->data;
	struct mchain *c;
	enum kind kind;
	int head;

	if (!w->connected || !room(w, VNET_TXQ))
		return;
	if (flen + hdr > FG_SLOT_BYTES - FG_SEGS_MAX * 64)
		flen = FG_SLOT_BYTES - FG_SEGS_MAX * 64 - hdr;
	memset(h, 0, hdr);
	if (shape & 0x80) { /* offload fields, true or not */
		static const uint8_t gso[] = { 0, 1, 4, 0x81, 3, 0x84, 5, 0 };
		static const uint16_t mss[] = { 1448, 536, 1, 8960 };
		unsigned a = take1(w);

		h[0] = a & 1 ? 1 : (uint8_t)(a & 0x10 ? take1(w) : 0); /* NEEDS_CSUM */
		h[1] = a & 0x20 ? (uint8_t)take1(w) : gso[(a >> 1) % 8];
		h[2] = (uint8_t)take1(w); /* hdr_len: a hint nobody should trust */
		/* gso_size, csum_start, csum_offset: anything, or as a driver sets them */
		if (a & 0x40) {
			for (int i = 4; i < 10; i++)
				h[i] = (uint8_t)take1(w);
		} else { /* for the TCP header build_frame() makes */
			uint16_t start = (uint16_t)((sel & 0x80 ? 18 : 14) + (a & 0x80 ? 40 : 20));

			h[4] = (uint8_t)mss[(a >> 4) & 3], h[5] = (uint8_t)(mss[(a >> 4) & 3] >> 8);
			h[6] = (uint8_t)start, h[7] = (uint8_t)(start >> 8);
			h[8] = 16; /* TCP's checksum */
		}
	}
	build_frame(w, h + hdr, flen, sel, true);
	rlen = hdr + flen;
	if (shape & 0x40) /* a chain shorter than the header, or just the header */
		rlen = take1(w) % (hdr + 1);
	switch (shape & 3) {
	case 0: /* the header alone, then the frame (if any) */
		seg[nseg++] = (struct fg_seg){ .len = (uint32_t)(rlen < hdr ? rlen : hdr) };
		if (rlen > hdr)
			nseg = cut(w, seg, nseg, rlen - hdr, k);
		break;
	case 1:
		seg[nseg++] = (struct fg_seg){ .len = (uint32_t)rlen };
		break;
	case 2:
		nseg = cut(w, seg, 0, rlen, 1 + k);
		break;
	default: /* many pieces of about the same size */
		for (unsigned i = 0; i < 13; i++)
			seg[nseg++] = (struct fg_seg){ .len = (uint32_t)(rlen / 13) };
		seg[nseg - 1].len += (uint32_t)(rlen % 13);
	}
	if (shape & 0x20) { /* a broken driver */
		unsigned bad = take1(w), at;

		if (bad & 0x10 && nseg < FG_SEGS_MAX) { /* a writable part, last or not */
			at = bad & 0x20 ? nseg : (bad >> 6) % nseg;
			memmove(&seg[at + 1], &seg[at], (nseg - at) * sizeof(seg[0]));
			seg[at] = (struct fg_seg){ .len = bad & 0x80 ? 0 : 1 + (bad >> 1) % 64,
						   .write = true };
			nseg++;
		}
		if (bad & 0x08) { /* outside guest memory, or a length running past its end */
			at = (bad >> 5) % nseg;
			seg[at].addr = bad & 0x04 ? 1ull << 40 : 0x100000ull;
			seg[at].len = bad & 0x04 ? 1 + (bad & 3) : 0xfffffff0u;
		}
	}
	ndirect = shape & 0x10 ? take1(w) % nseg : nseg;
	/* What the device must do with it. */
	for (unsigned i = 0; i < nseg; i++) {
		if (seg[i].addr && seg[i].len)
			brk = true;
		if (seg[i].write) {
			writable = true;
			nin |= seg[i].len > 0;
		} else {
			brk |= writable; /* readable after writable */
			out += seg[i].len;
		}
	}
	if ((ndirect < nseg && !(w->g.features & VIRTIO_F_INDIRECT_DESC)) ||
	    nseg > w->g.ring[VNET_TXQ].num)
		brk = true;
	kind = brk ? K_BREAK : (nin || out < hdr) ? K_BAD : K_FRAME;
	if (kind == K_FRAME && offl && ((h[1] & 0x7f) || (h[0] & 1))) {
		size_t len = out - hdr;

		/* Segmentation; a checksum the device may refuse, or one too long for it. */
		if ((h[1] & 0x7f) || len > 65536 || (size_t)le16(h + 6) + le16(h + 8) + 2 > len)
			kind = K_OPAQUE;
	}
	head = fg_post(&w->g, VNET_TXQ, seg, nseg, ndirect, w->data, out);
	if (head < 0)
		return; /* no room */
	c = mr_push(&w->tx);
	c->head = (uint16_t)head;
	c->kind = kind;
	if (kind == K_FRAME) {
		c->len = out - hdr;
		c->frame = dup_bytes(w->data + hdr, c->len);
		if (offl && (h[0] & 1))
			complete_csum(c->frame, c->len, le16(h + 6), le16(h + 8));
		if (c->len > VSW_FRAME_MAX)
			c->kind = K_LONG;
	}
	c->tso = kind == K_OPAQUE && (h[1] & 0x7f);
	if (w->asleep) { /* armed and asleep: the chain must wake the thread */
		check(w->g.ring[VNET_TXQ].kicks > w->kicks0 || !w->v->on[VNET_TXQ] ||
		      w->v->kick < 0 || virtq_broken(&w->v->q[VNET_TXQ]));
		wake(w, true);
	}
}

/*
 * Receive chains from the input. a: bits 0-4 how many, 5 a readable part
 * first (skipped by the device), 6 many descriptors, 7 a broken driver (a
 * readable part last, or an address outside memory); then for each, b:
 * bits 0-3 the size, 4-5 descriptors, 6 an indirect table, 7 smaller
 * descriptors after the first.
 */
static void
rx_post(struct fzw *w)
{
	static const uint32_t sizes[] = { 0,  1,  5,   10,   11,   12,	 13,   14,
					  60, 64, 100, 1000, 1514, 1526, 4096, 9100 };
	unsigned a = take1(w), count = 1 + (a & 7) * ((a >> 3) & 3) * 2;

	for (unsigned k = 0; k < count && w->connected && room(w, VNET_RXQ); k++) {
		unsigned b = take1(w), nseg = 1 + ((b >> 4) & 3) + (a & 0x40 ? 12 : 0), ndirect;
		struct fg_seg seg[FG_SEGS_MAX];
		bool writable = false, brk = false;
		uint32_t wlen = 0;
		struct mchain *c;
		int head;

		for (unsigned i = 0; i < nseg; i++)
			seg[i] = (struct fg_seg){ .len = sizes[b & 15] >> (i && (b & 0x80) ? 4 : 0),
						  .write = true };
		if (a & 0x20 && nseg > 1) /* the device must skip it */
			seg[0].write = false;
		if (a & 0x80 && a & 0x20) /* readable after writable */
			seg[nseg - 1].write = false;
		else if (a & 0x80) /* outside guest memory */
			seg[nseg - 1].addr = 1ull << 40, seg[nseg - 1].len |= 1;
		ndirect = b & 0x40 ? (nseg - 1) / 2 : nseg;
		for (unsigned i = 0; i < nseg; i++) {
			if (seg[i].addr && seg[i].len)
				brk = true;
			if (seg[i].write) {
				writable = true;
				wlen += seg[i].len;
			} else {
				brk |= writable;
			}
		}
		if ((ndirect < nseg && !(w->g.features & VIRTIO_F_INDIRECT_DESC)) ||
		    nseg > w->g.ring[VNET_RXQ].num)
			brk = true;
		head = fg_post(&w->g, VNET_RXQ, seg, nseg, ndirect, NULL, 0);
		if (head < 0)
			return;
		c = mr_push(&w->rx);
		c->head = (uint16_t)head;
		c->kind = brk ? K_BREAK : K_FRAME;
		c->wlen = wlen;
	}
}

/* Frames for the test port to inject toward the guest (or not). */
static void
t_frames(struct fzw *w)
{
	unsigned a = take1(w), count = 1 + (a & 3) * (a & 4 ? 16 : 1);

	for (unsigned k = 0; k < count; k++) {
		unsigned sel = take1(w);
		uint32_t len = a & 0x80 ? (uint32_t)fz_take(&w->in, 2) % (VSW_FRAME_MAX + 1)
					: 14 + (sel * 37 + k * 101) % 1600;
		size_t at = w->inject.n;

		if (w->inject.n > (8u << 20))
			return;
		if (w->inject.n + 4 + len > w->inject.cap) {
			w->inject.cap = (w->inject.n + 4 + len) * 2;
			w->inject.p = realloc(w->inject.p, w->inject.cap);
			check(w->inject.p != NULL);
		}
		memcpy(w->inject.p + at, &len, 4);
		build_frame(w, w->inject.p + at + 4, len, a & 0x40 ? sel & ~3u : sel, false);
		w->inject.n += 4 + len;
	}
}

/* ---------------------------------------------------------------------- */
/* The frontend */

static int
attach(void *ctx, int sock)
{
	struct fzw *w = ctx;

	return vnet_attach(w->v, sock);
}

/* A new connection: features and ring sizes from the input. */
static void
connect_guest(struct fzw *w, unsigned a)
{
	static const uint16_t nums[] = { 128, 8, 32, 4 };
	static const uint64_t feats[] = { 0,
					  FZ_NET_F_MRG_RXBUF,
					  FZ_NET_F_MRG_RXBUF | FZ_OFFLOADS,
					  FZ_NET_F_CSUM,
					  FZ_NET_F_HOST_TSO4 | FZ_NET_F_CSUM,
					  FZ_NET_F_MRG_RXBUF | FZ_NET_F_HOST_TSO6 | FZ_NET_F_CSUM,
					  FZ_NET_F_MRG_RXBUF,
					  0 };
	unsigned b = take1(w);

	w->opts = (struct fg_opts){ .event_idx = a & 1,
				    .indirect = a & 2,
				    .legacy = (b & 0x18) == 0x18,
				    .features = feats[(a >> 2) % 8] };
	w->opts.num[VNET_RXQ] = nums[b & 3];
	w->opts.num[VNET_TXQ] = nums[(b >> 2) & 3];
	/* Back to nothing: what the device had of the old connection is gone. */
	mr_clear(&w->tx);
	mr_clear(&w->rx);
	m_held_clear(w);
	w->taken_n = w->taken_first = 0;
	while (w->rx_n) {
		free(w->rxq[w->rx_first].frame);
		w->rx_first = (w->rx_first + 1) % 256;
		w->rx_n--;
	}
	w->tx_bad_head = w->rx_bad_head = w->rx_broken = false;
	w->connected = fg_try_attach(&w->g, &w->opts) == 0;
	w->n_conn++;
	check(w->connected);
	check(vnet_connected(w->v) && w->v->dp.p.up);
}

static void
disconnect(struct fzw *w)
{
	if (!w->connected)
		return;
	receive(w);
	reclaim(w);
	fg_close_frontend(&w->g);
	w->connected = false;
	check(!vnet_connected(w->v) && !w->v->dp.p.up);
}

/* The rarer steps: rings, the frontend, time, the test port. */
static void
step_ctl(struct fzw *w)
{
	unsigned a = take1(w), q = (a >> 3) & 1;

	wake(w, false); /* a command wakes the thread */
	switch (a % 8) {
	case 0: /* a VM stop and start, or half of one */
		if (!w->connected)
			break;
		if (a & 0x40)
			(void)fg_ring_stop(&w->g, q);
		else if (a & 0x80)
			(void)fg_ring_start(&w->g, q);
		else
			(void)fg_ring_restart(&w->g, q);
		if (q == VNET_RXQ && !(a & 0x80))
			m_held_clear(w);
		check(!w->v->dp.p.up || (w->v->on[0] && w->v->on[1]));
		break;
	case 1: /* a new call descriptor while the ring runs */
		if (w->connected) {
			uint64_t idx = q;

			check(fg_request(&w->g, VHU_SET_VRING_CALL, true, &idx, 8,
					 &w->g.ring[q].call, 1, NULL, 0) == 0);
		}
		break;
	case 2: /* a head the ring does not have */
		if (w->connected && !(q ? w->tx_bad_head : w->rx_bad_head) && room(w, q)) {
			struct mring *r = q ? &w->tx : &w->rx;

			fg_bad_head(&w->g, q, (uint16_t)(w->g.ring[q].num + (a >> 4)));
			mr_push(r)->kind = K_BREAK;
			*(q ? &w->tx_bad_head : &w->rx_bad_head) = true;
		}
		break;
	case 3:
		if (a & 0x80)
			disconnect(w);
		else if (!w->connected || (a & 0x40)) {
			disconnect(w);
			connect_guest(w, take1(w));
		}
		break;
	case 4: /* time passes: learned addresses age */
		w->now += (int64_t)take1(w) * 10 * 1000000000LL;
		fdb_age(&w->sw->fdb, w->now);
		break;
	case 5:
		w->t.dp.p.up = !(a & 0x80);
		break;
	case 6: /* a ring without a kick descriptor: polled */
		if (w->connected && a & 0x80) {
			uint64_t idx = q | VHU_VRING_NOFD;

			check(fg_request(&w->g, VHU_SET_VRING_KICK, true, &idx, 8, NULL, 0, NULL,
					 0) == 0);
			check(w->v->dp.p.up == (w->v->on[0] && w->v->on[1]));
		} else if (a & 0x40) { /* another frontend on the socket: the guest's is dropped */
			struct sockaddr_un sa = { .sun_family = AF_UNIX };
			int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

			check(fd >= 0);
			snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", w->path);
			check(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
			if (w->connected) {
				receive(w);
				reclaim(w);
			}
			fg_pump(&w->g, 0);
			check(vnet_connected(w->v) && !w->v->dp.p.up);
			close(fd);
			fg_pump(&w->g, 0);
			check(!vnet_connected(w->v));
			fg_close_frontend(&w->g);
			w->connected = false;
		}
		break;
	case 7: {
		json_t *o = json_object();

		w->v->dp.dops->json(&w->v->dp, o);
		json_decref(o);
	}
	}
}

static void
step(struct fzw *w)
{
	unsigned op = take1(w);

	switch (op % 10) {
	case 0:
	case 1:
		tx_post(w);
		break;
	case 2:
		rx_post(w);
		break;
	case 3:
		t_frames(w);
		break;
	case 4:
	case 5:
		w->t.room = op & 0x80 ? 0 : 1 + ((op >> 4) & 3) * 3;
		batch(w, op & 0x40 ? 1 + ((op >> 1) & 7) : 32);
		break;
	case 6:
		receive(w);
		reclaim(w);
		break;
	case 7:
		sleep_dp(w);
		break;
	default:
		step_ctl(w);
	}
}

/* ---------------------------------------------------------------------- */

static char dir[64];

static void
rm_dir(void)
{
	rmdir(dir);
}

static void
setup(struct fzw *w)
{
	static const uint16_t vlans[] = { 0, 10, VLAN_TRUNK, 20 };
	static const char *const pgs[] = { "pg0", "pg10", "trunk", "pg20" };
	unsigned a = take1(w), b = take1(w), c = take1(w);
	uint8_t mac[6] = { 0x02, 0x00, 0x00, 0x00, 0x00, 0x01 };
	char other[108];

	if (!dir[0]) { /* one directory for the process: the socket comes and goes */
		const char *t = getenv("TMPDIR");

		snprintf(dir, sizeof(dir), "%s/fuzz-vnet-XXXXXX", t && strlen(t) < 40 ? t : P_tmpdir);
		check(mkdtemp(dir) != NULL);
		atexit(rm_dir);
	}
	check(loop_init(&w->loop) == 0);
	w->d = calloc(1, sizeof(*w->d));
	check(w->d && vsw_dp_init(w->d) == 0);
	/* The epoll set vsw_dp_start() would make: the kick descriptor joins it. */
	w->ep = epoll_create1(EPOLL_CLOEXEC);
	check(w->ep >= 0);
	w->d->ep = w->ep;
	check(vsw_dp_add_switch(w->d, "fz",
				a & 1	? VSW_MTU_MAX
				: a & 2 ? 1500
					: 68 + (a >> 2) * 35,
				true) == 0);
	for (int i = 0; i < 4; i++)
		check(vsw_dp_add_portgroup(w->d, pgs[i], "fz", vlans[i]) == 0);
	snprintf(w->path, sizeof(w->path), "%s/vnet.sock", dir);
	snprintf(other, sizeof(other), "%s/other.sock", dir);
	if (b & 0x80) { /* refused: nothing left behind */
		check(vnet_new(w->d, &w->loop, "no such group", "", NULL, other, 0, &w->v) ==
		      -ENOENT);
		check(vnet_new(w->d, &w->loop, pgs[0], "a name longer than thirty-one bytes", NULL,
			       other, 0, &w->v) == -ENAMETOOLONG);
		check(access(other, F_OK) < 0);
	}
	check(vnet_new(w->d, &w->loop, pgs[(a >> 4) % 4], a & 0x40 ? "vm0.eth0" : "",
		       a & 0x80 ? mac : NULL, w->path, 0, &w->v) == 0);
	w->sw = &w->d->sw[w->v->dp.sw];
	w->v->dp.p.mirror = v_mirror;
	w->v->dp.p.mirror_ctx = w;
	w->t.w = w;
	w->t.dp.p.kind = VSW_PORT_TEST;
	w->t.dp.p.ops = &t_ops;
	w->t.dp.p.up = true;
	w->t.dp.dops = &t_dops;
	w->t.dp.wake_fd = -1;
	memcpy(w->t.dp.mac, (uint8_t[6]){ 0x02, 0, 0, 0, 0, 0x77 }, 6);
	check(vsw_dp_add_port(w->d, &w->t.dp, pgs[(a >> 4) % 4 == 3 ? b % 4 : (a >> 4) % 4]) == 0);
	w->now = 1000000000;
	fg_new_dev(&w->g, &w->loop, 2, attach, w);
	connect_guest(w, c);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fzw *w = calloc(1, sizeof(*w));
	int fds_before = fz_count_fds();

	check(w != NULL);
	signal(SIGPIPE, SIG_IGN);
	log_set_level(LOG_LVL_ERR); /* the device warns about every broken ring */
	w->in = (struct fz){ data, size };
	setup(w);
	for (int i = 0; i < FZ_STEPS && w->in.n; i++)
		step(w);
	/* Everything the test port queued goes, the guest reads what it got. */
	w->t.room = ~0u;
	batch(w, 32);
	batch(w, 32);
	receive(w);
	reclaim(w);
	check(w->v->st.rx_no_buffers == atomic_load(&w->v->dp.p.c.drops[VSW_DROP_QUEUE]));
	if (getenv("FUZZ_VNET_TRACE"))
		fprintf(stderr,
			"vnet: connections %llu features %#llx rings %u/%u; guest frames %llu (bad "
			"chains %llu, tso %llu), to the test port %llu; to the guest %llu, refused "
			"%llu; rings: rx %s, tx %s\n",
			(unsigned long long)w->n_conn, (unsigned long long)w->g.features,
			w->g.ring[0].num, w->g.ring[1].num, (unsigned long long)w->n_tx,
			(unsigned long long)w->v->st.tx_bad,
			(unsigned long long)w->v->st.tso_segments, (unsigned long long)w->n_tport,
			(unsigned long long)w->n_rx, (unsigned long long)w->v->st.rx_no_buffers,
			w->v->q[0].why ? w->v->q[0].why : "ok",
			w->v->q[1].why ? w->v->q[1].why : "ok");
	/* The dataplane takes a port's mirror context for a capture's: ours goes first. */
	w->v->dp.p.mirror = NULL;
	w->v->dp.p.mirror_ctx = NULL;
	vnet_free(w->v); /* the frontend disconnected, the socket removed, the port out */
	vsw_dp_stop(w->d);
	close(w->ep);
	fg_free(&w->g);
	loop_free(&w->loop);
	mr_clear(&w->tx);
	mr_clear(&w->rx);
	m_held_clear(w);
	while (w->rx_n) {
		free(w->rxq[w->rx_first].frame);
		w->rx_first = (w->rx_first + 1) % 256;
		w->rx_n--;
	}
	free(w->pend.frame);
	free(w->inject.p);
	free(w->d);
	free(w);
	if (fz_count_fds() != fds_before)
		abort(); /* a descriptor leaked */
	return 0;
}
