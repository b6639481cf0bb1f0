/* SPDX-License-Identifier: MIT */
/*
 * The fake guest of fakeguest.h: QEMU's side of vhost-user and a guest
 * driver's side of three split rings, in one memfd that stands for guest
 * memory. Guest-physical addresses are memfd offsets; QEMU's user
 * addresses (what SET_VRING_ADDR carries) are FG_UA + the same offset.
 *
 *   0x10000 * (q + 1)  ring q: descriptors, avail at +0x1000, used at +0x2000
 *   FG_BUF_GPA         one FG_SLOT per descriptor of every ring: a chain's
 *                      buffers lie in its head's slot, an indirect table at
 *                      the slot's end
 *
 * The driver keeps its own indices and never trusts the device's: a used
 * entry must name a chain the driver gave and not got back, with a length
 * that fits it, and the header's len must match the bytes written.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/fdpass.h"
#include "fakeguest.h"
#include "vhost/vhost.h"
#include "vmfabric/qp.h"

#define FG_MEM_SIZE    (32u << 20)
#define FG_UA	       0x7f5500000000ull
#define FG_SLOT	       (68u << 10)
#define FG_TABLE_OFF   (FG_SLOT - 256u)
#define FG_BUF_GPA     0x100000ull
#define FG_PUMP_ROUNDS 1000
#define FG_REMOTE_MS   5000 /* the longest a device in another process may take to answer */
#define HDR	       ((uint32_t)sizeof(struct vsock_hdr))

_Static_assert(FG_BUF_GPA + (uint64_t)VSOCK_QUEUES * FG_QUEUE_MAX * FG_SLOT <= FG_MEM_SIZE,
	       "fake guest memory holds every slot");
_Static_assert(FG_TABLE_OFF == FG_SLOT_BYTES, "the buffers end where the indirect table starts");
_Static_assert((FG_SLOT - FG_TABLE_OFF) / sizeof(struct virtq_desc) >= FG_SEGS_MAX,
	       "an indirect table of FG_SEGS_MAX descriptors fits");

#define FG_CHECK(cond)                                                                             \
	do {                                                                                       \
		if (!(cond))                                                                       \
			fg_fail(__FILE__, __LINE__, #cond);                                        \
	} while (0)

__attribute__((noreturn)) static void
fg_fail(const char *file, int line, const char *what)
{
	fprintf(stderr, "%s:%d: fake guest: check failed: %s\n", file, line, what);
	fflush(NULL);
	abort();
}

static uint64_t
ring_gpa(unsigned q)
{
	return 0x10000ull * (q + 1);
}

static uint64_t
slot_gpa(unsigned q, unsigned i)
{
	return FG_BUF_GPA + ((uint64_t)q * FG_QUEUE_MAX + i) * FG_SLOT;
}

static void *
gpa(struct fg *g, uint64_t a)
{
	return g->mem + a;
}

/* ---------------------------------------------------------------------- */
/* The stub fabric */

int
fg_fabric_accept(struct fg_fabric *f, size_t qsize, struct vsock_route *r)
{
	struct qp *peer;
	int err;

	if (f->npeers == FG_PEERS_MAX)
		return -ECONNREFUSED;
	if ((err = qp_create_pair(qsize, qsize, &r->qp, &peer)))
		return err;
	qp_set_mode(peer, QP_NONBLOCK);
	f->peer[f->npeers++] = peer;
	return 0;
}

static int
fg_route(void *ctx, struct vsock_dev *from, uint32_t src_port, uint32_t dst_cid, uint32_t dst_port,
	 int type, struct vsock_route *r)
{
	struct fg_fabric *f = ctx;

	f->calls++;
	f->from = from;
	f->src_port = src_port;
	f->dst_cid = dst_cid;
	f->dst_port = dst_port;
	f->type = type;
	switch (f->mode) {
	case FG_REFUSE:
		return f->err;
	case FG_TO_VM:
		r->vm = f->vm;
		r->qsize = f->vm_qsize;
		return 0;
	default:
		return fg_fabric_accept(f, f->qsize, r);
	}
}

void
fg_fabric_init(struct fg_fabric *f, enum fg_route_mode mode)
{
	memset(f, 0, sizeof(*f));
	f->fab = (struct vsock_fabric){ .ctx = f, .route = fg_route };
	f->mode = mode;
	f->err = -ECONNREFUSED;
	f->qsize = QP_SIZE_DEFAULT;
	f->vm_qsize = QP_SIZE_DEFAULT;
}

void
fg_fabric_free(struct fg_fabric *f)
{
	for (unsigned i = 0; i < f->npeers; i++)
		qp_close(f->peer[i]);
	f->npeers = 0;
}

/* ---------------------------------------------------------------------- */
/* Chains */

static void
desc_set(struct fg_ring *r, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next)
{
	struct virtq_desc d = { addr, len, flags, next };

	memcpy(&r->desc[i], &d, sizeof(d));
}

/* Segments of a buffer of @hdr_len header and @len payload bytes; zero-length ones left out. */
static unsigned
layout_segs(enum fg_layout l, uint32_t hdr_len, uint32_t len, uint32_t *seg)
{
	uint32_t s[3];
	unsigned n = 0, k = 0;

	switch (l) {
	case FG_ONE:
		s[n++] = hdr_len + len;
		break;
	case FG_SPLIT:
		s[n++] = hdr_len < 20 ? hdr_len : 20;
		s[n++] = hdr_len - s[0];
		s[n++] = len;
		break;
	default:
		s[n++] = hdr_len;
		s[n++] = len;
	}
	for (unsigned i = 0; i < n; i++)
		if (s[i])
			seg[k++] = s[i];
	if (!k)
		seg[k++] = 0; /* one empty descriptor */
	return k;
}

static unsigned
fg_queues(const struct fg *g)
{
	return g->dev ? VSOCK_QUEUES : g->nq;
}

/*
 * Descriptors for a chain of @nseg buffers, the first @ndirect in the ring
 * and the rest in one indirect table: its head, -ENOSPC or -EMSGSIZE.
 */
static int
chain_build(struct fg *g, unsigned q, const struct fg_seg *seg, unsigned nseg, unsigned ndirect)
{
	struct fg_ring *r = &g->ring[q];
	unsigned nind = nseg > ndirect ? nseg - ndirect : 0;
	unsigned ndesc = nseg - nind + (nind ? 1 : 0);
	uint64_t at = 0;
	struct fg_chain *c;
	uint16_t head;

	FG_CHECK(nseg >= 1 && nseg <= FG_SEGS_MAX && ndesc <= FG_SEGS_MAX);
	for (unsigned i = 0; i < nseg; i++)
		if (!seg[i].addr)
			at += ((uint64_t)seg[i].len + 63u) & ~63ull;
	if (at > FG_TABLE_OFF)
		return -EMSGSIZE;
	if (r->nfree < ndesc)
		return -ENOSPC;
	head = r->free[--r->nfree];
	c = &r->chain[head];
	FG_CHECK(!c->busy);
	memset(c, 0, sizeof(*c));
	c->busy = true;
	c->desc[c->ndesc++] = head;
	while (c->ndesc < ndesc)
		c->desc[c->ndesc++] = r->free[--r->nfree];
	at = slot_gpa(q, head);
	for (unsigned i = 0; i < nseg; i++) {
		c->seg_len[i] = seg[i].len;
		c->cap += seg[i].len;
		if (seg[i].write) {
			c->seg_write |= (uint16_t)(1u << i);
			c->wcap += seg[i].len;
		}
		if (seg[i].addr) {
			c->seg_bad |= (uint16_t)(1u << i);
			c->seg_gpa[i] = seg[i].addr;
		} else {
			c->seg_gpa[i] = at;
			at += ((uint64_t)seg[i].len + 63u) & ~63ull;
		}
	}
	c->nseg = (uint8_t)nseg;
	for (unsigned i = 0; i < nseg - nind; i++)
		desc_set(r, c->desc[i], c->seg_gpa[i], seg[i].len,
			 (uint16_t)((seg[i].write ? VIRTQ_DESC_F_WRITE : 0) |
				    (i + 1 < ndesc ? VIRTQ_DESC_F_NEXT : 0)),
			 i + 1 < ndesc ? c->desc[i + 1] : 0);
	if (nind) {
		struct virtq_desc t[FG_SEGS_MAX];
		uint64_t tab = slot_gpa(q, head) + FG_TABLE_OFF;

		for (unsigned i = 0; i < nind; i++) {
			const struct fg_seg *s = &seg[nseg - nind + i];

			t[i] = (struct virtq_desc){ c->seg_gpa[nseg - nind + i], s->len,
						    (uint16_t)((s->write ? VIRTQ_DESC_F_WRITE : 0) |
							       (i + 1 < nind ? VIRTQ_DESC_F_NEXT : 0)),
						    (uint16_t)(i + 1 < nind ? i + 1 : 0) };
		}
		memcpy(gpa(g, tab), t, nind * sizeof(t[0]));
		desc_set(r, c->desc[ndesc - 1], tab, (uint32_t)(nind * sizeof(t[0])),
			 VIRTQ_DESC_F_INDIRECT, 0);
	}
	r->inflight++;
	return head;
}

/* A chain of @nseg buffers of @len[] bytes, all writable or none: its head, or -ENOSPC. */
static int
chain_make(struct fg *g, unsigned q, unsigned nseg, const uint32_t *len, bool write, bool indirect)
{
	struct fg_seg seg[3];
	int head;

	for (unsigned i = 0; i < nseg; i++)
		seg[i] = (struct fg_seg){ .len = len[i], .write = write };
	head = chain_build(g, q, seg, nseg, indirect ? 0 : nseg);
	FG_CHECK(head != -EMSGSIZE);
	return head;
}

static void
chain_free(struct fg *g, unsigned q, uint16_t head)
{
	struct fg_ring *r = &g->ring[q];
	struct fg_chain *c = &r->chain[head];

	FG_CHECK(c->busy);
	for (unsigned i = c->ndesc; i-- > 0;)
		r->free[r->nfree++] = c->desc[i];
	c->busy = false;
	r->inflight--;
}

/*
 * Copy @n bytes between @buf and the chain's buffers from byte @off: into
 * its device-readable buffers when @in, out of its device-writable ones
 * otherwise (buffers outside guest memory are left out).
 */
static void
chain_copy(struct fg *g, const struct fg_chain *c, size_t off, void *buf, size_t n, bool in)
{
	uint8_t *b = buf;

	for (unsigned i = 0; i < c->nseg && n; i++) {
		size_t l = c->seg_len[i];

		if (((c->seg_write >> i) & 1) == in || ((c->seg_bad >> i) & 1))
			continue;
		if (off >= l) {
			off -= l;
			continue;
		}
		l -= off;
		if (l > n)
			l = n;
		if (in)
			memcpy(gpa(g, c->seg_gpa[i] + off), b, l);
		else
			memcpy(b, gpa(g, c->seg_gpa[i] + off), l);
		b += l;
		n -= l;
		off = 0;
	}
	FG_CHECK(n == 0);
}

static void
publish(struct fg *g, unsigned q, uint16_t head)
{
	struct fg_ring *r = &g->ring[q];

	r->avail[2 + (r->avail_idx & (r->num - 1))] = head;
	r->avail_idx++;
	/* Release: the entry and the descriptors before the index (virtio_wmb). */
	__atomic_store_n(&r->avail[1], r->avail_idx, __ATOMIC_RELEASE);
}

/* Kick after publishing from @old if the device asked for it (EVENT_IDX or NO_NOTIFY). */
static void
kick(struct fg *g, unsigned q, uint16_t old)
{
	struct fg_ring *r = &g->ring[q];
	uint64_t one = 1;
	uint16_t v;
	bool need;

	if (r->avail_idx == old)
		return;
	/*
	 * Pairs with the device's fence in virtq_enable_kicks() (virtio_mb).
	 * gcc refuses fences under ThreadSanitizer; the fake guest runs on the
	 * device's thread, so there it has nothing to order anyway.
	 */
#ifndef __SANITIZE_THREAD__
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
#endif
	if (g->features & VIRTIO_F_EVENT_IDX) {
		v = __atomic_load_n(&r->used[2 + 4 * (size_t)r->num], __ATOMIC_RELAXED);
		need = (uint16_t)(r->avail_idx - v - 1) < (uint16_t)(r->avail_idx - old);
	} else {
		v = __atomic_load_n(&r->used[0], __ATOMIC_RELAXED);
		need = !(v & VIRTQ_USED_F_NO_NOTIFY);
	}
	if (need && write(r->kick, &one, sizeof(one)) == sizeof(one))
		r->kicks++;
}

/* The next used entry of ring @q: 1, or 0 if none. */
static int
used_next(struct fg *g, unsigned q, uint16_t *head, uint32_t *len)
{
	struct fg_ring *r = &g->ring[q];
	uint16_t idx;
	uint32_t u[2];

	if (!r->num)
		return 0;
	/* Acquire: the entries before the index (virtio_rmb). */
	idx = __atomic_load_n(&r->used[1], __ATOMIC_ACQUIRE);
	if (idx == r->used_seen)
		return 0;
	FG_CHECK((uint16_t)(idx - r->used_seen) <= r->inflight);
	memcpy(u, &r->used[2 + 4 * (size_t)(r->used_seen & (r->num - 1))], sizeof(u));
	r->used_seen++;
	if (g->features & VIRTIO_F_EVENT_IDX) /* an interrupt at the next entry */
		__atomic_store_n(&r->avail[2 + (size_t)r->num], r->used_seen, __ATOMIC_RELAXED);
	FG_CHECK(u[0] < r->num && r->chain[u[0]].busy);
	FG_CHECK(u[1] <= r->chain[u[0]].wcap); /* "len": bytes written into the buffer */
	*head = (uint16_t)u[0];
	*len = u[1];
	return 1;
}

/* ---------------------------------------------------------------------- */
/* The driver */

unsigned
fg_rx_post(struct fg *g, unsigned n, uint32_t len, enum fg_layout layout)
{
	struct fg_ring *r = &g->ring[VSOCK_Q_RX];
	uint16_t old = r->avail_idx;
	uint32_t seg[3];
	unsigned done = 0, nseg;
	int head;

	FG_CHECK(r->num && len <= FG_BUF_MAX);
	for (; done < n; done++) {
		nseg = layout_segs(layout, HDR, len, seg);
		head = chain_make(g, VSOCK_Q_RX, nseg, seg, true, layout == FG_INDIRECT);
		if (head < 0)
			break;
		publish(g, VSOCK_Q_RX, (uint16_t)head);
	}
	kick(g, VSOCK_Q_RX, old);
	return done;
}

unsigned
fg_rx_post_raw(struct fg *g, uint32_t bytes, bool writable)
{
	uint16_t old = g->ring[VSOCK_Q_RX].avail_idx;
	int head;

	FG_CHECK(g->ring[VSOCK_Q_RX].num && bytes <= HDR + FG_BUF_MAX);
	head = chain_make(g, VSOCK_Q_RX, 1, &bytes, writable, false);
	if (head < 0)
		return 0;
	publish(g, VSOCK_Q_RX, (uint16_t)head);
	kick(g, VSOCK_Q_RX, old);
	return 1;
}

unsigned
fg_rx_posted(const struct fg *g)
{
	return g->ring[VSOCK_Q_RX].inflight;
}

int
fg_rx_get(struct fg *g, struct fg_pkt *p)
{
	struct fg_chain *c;
	uint16_t head;
	uint32_t len;

	if (!used_next(g, VSOCK_Q_RX, &head, &len))
		return 0;
	c = &g->ring[VSOCK_Q_RX].chain[head];
	FG_CHECK(len <= sizeof(g->pkt));
	chain_copy(g, c, 0, g->pkt, len, false);
	chain_free(g, VSOCK_Q_RX, head);
	memset(p, 0, sizeof(*p));
	p->used_len = len;
	if (len >= HDR) {
		memcpy(&p->h, g->pkt, HDR);
		FG_CHECK(p->h.len == len - HDR); /* the header says what was written */
	}
	p->data = g->pkt + HDR;
	return 1;
}

unsigned
fg_tx_reclaim(struct fg *g)
{
	unsigned n = 0;
	uint16_t head;
	uint32_t len;

	while (used_next(g, VSOCK_Q_TX, &head, &len)) {
		FG_CHECK(len == 0); /* the device writes nothing into tx buffers */
		chain_free(g, VSOCK_Q_TX, head);
		n++;
	}
	return n;
}

unsigned
fg_tx_inflight(const struct fg *g)
{
	return g->ring[VSOCK_Q_TX].inflight;
}

int
fg_tx_raw(struct fg *g, const void *hdr, size_t hdr_len, const void *payload, uint32_t len,
	  enum fg_layout layout)
{
	struct fg_ring *r = &g->ring[VSOCK_Q_TX];
	uint16_t old = r->avail_idx;
	uint32_t seg[3];
	unsigned nseg;
	int head;

	FG_CHECK(r->num && hdr_len <= 64 && len <= FG_BUF_MAX);
	fg_tx_reclaim(g);
	nseg = layout_segs(layout, (uint32_t)hdr_len, len, seg);
	head = chain_make(g, VSOCK_Q_TX, nseg, seg, false, layout == FG_INDIRECT);
	if (head < 0)
		return head;
	chain_copy(g, &r->chain[head], 0, (void *)(uintptr_t)hdr, hdr_len, true);
	if (len)
		chain_copy(g, &r->chain[head], hdr_len, (void *)(uintptr_t)payload, len, true);
	publish(g, VSOCK_Q_TX, (uint16_t)head);
	kick(g, VSOCK_Q_TX, old);
	return 0;
}

int
fg_tx(struct fg *g, const struct vsock_hdr *h, const void *payload, enum fg_layout layout)
{
	return fg_tx_raw(g, h, HDR, payload, h->len, layout);
}

void
fg_tx_bad_head(struct fg *g, uint16_t head)
{
	fg_bad_head(g, VSOCK_Q_TX, head);
}

unsigned
fg_event_post(struct fg *g, unsigned n)
{
	struct fg_ring *r = &g->ring[VSOCK_Q_EVENT];
	uint32_t len = sizeof(struct vsock_event);
	uint16_t old = r->avail_idx;
	unsigned done = 0;
	int head;

	if (!r->num)
		return 0;
	for (; done < n; done++) {
		head = chain_make(g, VSOCK_Q_EVENT, 1, &len, true, false);
		if (head < 0)
			break;
		publish(g, VSOCK_Q_EVENT, (uint16_t)head);
	}
	kick(g, VSOCK_Q_EVENT, old);
	return done;
}

int
fg_event_get(struct fg *g, uint32_t *id)
{
	uint16_t head;
	uint32_t len;

	if (!used_next(g, VSOCK_Q_EVENT, &head, &len))
		return 0;
	FG_CHECK(len == sizeof(*id));
	chain_copy(g, &g->ring[VSOCK_Q_EVENT].chain[head], 0, id, len, false);
	chain_free(g, VSOCK_Q_EVENT, head);
	return 1;
}

uint64_t
fg_calls(struct fg *g, unsigned q)
{
	uint64_t v = 0;

	if (g->ring[q].call < 0 || read(g->ring[q].call, &v, sizeof(v)) != sizeof(v))
		return 0;
	return v;
}

/* ---------------------------------------------------------------------- */
/* Chains of any shape */

int
fg_post(struct fg *g, unsigned q, const struct fg_seg *seg, unsigned nseg, unsigned ndirect,
	const void *data, size_t len)
{
	struct fg_ring *r = &g->ring[q];
	uint16_t old = r->avail_idx;
	int head;
	size_t n;

	FG_CHECK(q < fg_queues(g));
	if (!r->num)
		return -ENOTCONN;
	head = chain_build(g, q, seg, nseg, ndirect);
	if (head < 0)
		return head;
	n = 0;
	for (unsigned i = 0; i < nseg; i++)
		if (!seg[i].write && !seg[i].addr)
			n += seg[i].len;
	if (len > n)
		len = n;
	if (len)
		chain_copy(g, &r->chain[head], 0, (void *)(uintptr_t)data, len, true);
	publish(g, q, (uint16_t)head);
	kick(g, q, old);
	return head;
}

void
fg_bad_head(struct fg *g, unsigned q, uint16_t head)
{
	struct fg_ring *r = &g->ring[q];
	uint16_t old = r->avail_idx;

	publish(g, q, head);
	r->bad++;
	kick(g, q, old);
}

int
fg_used_take(struct fg *g, unsigned q, uint16_t *head, uint32_t *len, void *buf, uint32_t max)
{
	if (!used_next(g, q, head, len))
		return 0;
	if (max)
		chain_copy(g, &g->ring[q].chain[*head], 0, buf, *len < max ? *len : max, false);
	chain_free(g, q, *head);
	return 1;
}

unsigned
fg_used_pending(const struct fg *g, unsigned q)
{
	const struct fg_ring *r = &g->ring[q];

	if (!r->num)
		return 0;
	return (uint16_t)(__atomic_load_n(&r->used[1], __ATOMIC_ACQUIRE) - r->used_seen);
}

struct vsock_hdr
fg_hdr(const struct fg *g, uint16_t op, uint32_t src_port, uint64_t dst_cid, uint32_t dst_port,
       uint16_t type)
{
	return (struct vsock_hdr){ .src_cid = g->cid,
				   .dst_cid = dst_cid,
				   .src_port = src_port,
				   .dst_port = dst_port,
				   .type = type,
				   .op = op };
}

/* ---------------------------------------------------------------------- */
/* The frontend */

int
fg_pump(struct fg *g, int wait_ms)
{
	int busy = 0, n;

	if (!g->loop)
		return 0; /* the device runs in another process */
	for (int round = 0;; round++) {
		for (int i = 0;; i++) {
			n = loop_once(g->loop, 0);
			FG_CHECK(n >= 0);
			if (n == 0)
				break;
			busy++;
			/* Level-triggered sources that never clear: the device spins. */
			FG_CHECK(i < FG_PUMP_ROUNDS);
		}
		if (round || wait_ms <= 0)
			return busy;
		n = loop_once(g->loop, wait_ms);
		FG_CHECK(n >= 0);
		if (n == 0)
			return busy;
		busy++;
	}
}

int
fg_request(struct fg *g, uint32_t req, bool ack, const void *p, uint32_t size, const int *fds,
	   int nfds, void *reply, uint32_t max)
{
	int natural = vhu_request_has_reply(req);
	uint8_t buf[sizeof(struct vhu_hdr) + VHU_MAX_PAYLOAD];
	struct vhu_hdr h = { req, VHU_VERSION | (ack ? VHU_FLAG_NEED_REPLY : 0), size };
	struct iovec iov = { buf, sizeof(h) + size };
	uint64_t status;
	ssize_t n;

	if (g->fe < 0)
		return -ENOTCONN;
	FG_CHECK(size <= VHU_MAX_PAYLOAD);
	memcpy(buf, &h, sizeof(h));
	if (size)
		memcpy(buf + sizeof(h), p, size);
	if (fdpass_send(g->fe, &iov, 1, fds, nfds, 0) != (ssize_t)iov.iov_len)
		return -EPIPE;
	fg_pump(g, 0);
	if (natural != 1 && !ack)
		return 0;
	if (!g->loop) { /* a device in another process: its answer takes a while */
		struct pollfd pf = { .fd = g->fe, .events = POLLIN };

		if (poll(&pf, 1, FG_REMOTE_MS) != 1)
			return -ETIMEDOUT;
	}
	n = recv(g->fe, &h, sizeof(h), MSG_DONTWAIT);
	if (n == 0 || (n < 0 && errno == ECONNRESET))
		return -ECONNRESET; /* the device dropped the frontend */
	if (n < 0)
		return -errno;
	FG_CHECK(n == sizeof(h) && h.request == req && h.size <= VHU_MAX_PAYLOAD);
	FG_CHECK(h.flags == (VHU_VERSION | VHU_FLAG_REPLY));
	if (h.size)
		FG_CHECK(recv(g->fe, buf, h.size, MSG_DONTWAIT) == (ssize_t)h.size);
	if (natural != 1) {
		FG_CHECK(h.size == sizeof(status));
		memcpy(&status, buf, sizeof(status));
		return status ? -(int)status : 0;
	}
	memcpy(reply, buf, h.size < max ? h.size : max);
	return (int)h.size;
}

uint64_t
fg_config_cid(struct fg *g)
{
	struct vhu_config cfg = { .offset = 0, .size = 8 };
	uint64_t cid;

	FG_CHECK(fg_request(g, VHU_GET_CONFIG, false, &cfg, VHU_CONFIG_HDR + 8, NULL, 0, &cfg,
			    sizeof(cfg)) == VHU_CONFIG_HDR + 8);
	FG_CHECK(cfg.size == 8);
	memcpy(&cid, cfg.data, sizeof(cid));
	return cid;
}

static void
ring_setup(struct fg *g, unsigned q, uint16_t num)
{
	struct fg_ring *r = &g->ring[q];
	uint64_t base = ring_gpa(q);

	if (r->kick >= 0)
		close(r->kick);
	if (r->call >= 0)
		close(r->call);
	memset(r, 0, sizeof(*r));
	r->kick = r->call = -1;
	if (!num)
		return;
	FG_CHECK(num <= FG_QUEUE_MAX && !(num & (num - 1)));
	memset(gpa(g, base), 0, 0x10000);
	r->num = num;
	r->desc = gpa(g, base);
	r->avail = gpa(g, base + 0x1000);
	r->used = gpa(g, base + 0x2000);
	r->kick = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	r->call = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	FG_CHECK(r->kick >= 0 && r->call >= 0);
	for (unsigned i = num; i-- > 0;)
		r->free[r->nfree++] = (uint16_t)i;
}

/* SET_VRING_NUM, _BASE, _ADDR, _KICK, _CALL of ring @q, as QEMU's vhost_virtqueue_start. */
static int
ring_give(struct fg *g, unsigned q)
{
	struct fg_ring *r = &g->ring[q];
	uint64_t base = FG_UA + ring_gpa(q), idx = q;
	struct vhu_vring_state s = { q, r->num }, b = { q, 0 };
	struct vhu_vring_addr a = { .index = q,
				    .desc_user_addr = base,
				    .avail_user_addr = base + 0x1000,
				    .used_user_addr = base + 0x2000 };
	int err;

	if ((err = fg_request(g, VHU_SET_VRING_NUM, true, &s, sizeof(s), NULL, 0, NULL, 0)) ||
	    (err = fg_request(g, VHU_SET_VRING_BASE, true, &b, sizeof(b), NULL, 0, NULL, 0)) ||
	    (err = fg_request(g, VHU_SET_VRING_ADDR, true, &a, sizeof(a), NULL, 0, NULL, 0)) ||
	    (err = fg_request(g, VHU_SET_VRING_KICK, true, &idx, 8, &r->kick, 1, NULL, 0)) ||
	    (err = fg_request(g, VHU_SET_VRING_CALL, true, &idx, 8, &r->call, 1, NULL, 0)))
		return err;
	r->on = true;
	return 0;
}

int
fg_ring_stop(struct fg *g, unsigned q)
{
	struct fg_ring *r = &g->ring[q];
	struct vhu_vring_state st = { q, 0 };
	int n;

	if (!r->on)
		return -ENOENT;
	n = fg_request(g, VHU_GET_VRING_BASE, false, &st, sizeof(st), NULL, 0, &st, sizeof(st));
	if (n != sizeof(st))
		return n < 0 ? n : -EPROTO;
	/* Where the device stopped: not past what we made available. */
	FG_CHECK(st.index == q && (uint16_t)(r->avail_idx - st.num) <= r->num + r->bad);
	r->base = (uint16_t)st.num;
	return 0;
}

int
fg_ring_start(struct fg *g, unsigned q)
{
	struct fg_ring *r = &g->ring[q];
	struct vhu_vring_state st = { q, r->base };
	uint64_t idx = q;
	int n;

	if (!r->on)
		return -ENOENT;
	if ((n = fg_request(g, VHU_SET_VRING_BASE, true, &st, sizeof(st), NULL, 0, NULL, 0)))
		return n;
	return fg_request(g, VHU_SET_VRING_KICK, true, &idx, 8, &r->kick, 1, NULL, 0);
}

int
fg_ring_restart(struct fg *g, unsigned q)
{
	int err = fg_ring_stop(g, q);

	return err ? err : fg_ring_start(g, q);
}

/* Features, protocol features, owner, config, memory: the steps before the rings. */
static int
negotiate(struct fg *g, const struct fg_opts *o)
{
	uint64_t feat = 0, proto = 0, nq = 0;
	struct vhu_mem_table mt = { .nregions = 1 };
	int n;

	if ((n = fg_request(g, VHU_GET_FEATURES, false, NULL, 0, NULL, 0, &feat, 8)) != 8)
		return n < 0 ? n : -EPROTO;
	FG_CHECK((feat & VIRTIO_F_VERSION_1) && (feat & VHU_F_PROTOCOL_FEATURES));
	if ((n = fg_request(g, VHU_GET_PROTOCOL_FEATURES, false, NULL, 0, NULL, 0, &proto, 8)) != 8)
		return n < 0 ? n : -EPROTO;
	FG_CHECK((proto & VHU_PROTO_F_REPLY_ACK) && (!g->dev || (proto & VHU_PROTO_F_CONFIG)));
	proto &= VHU_PROTO_F_MQ | VHU_PROTO_F_REPLY_ACK | VHU_PROTO_F_CONFIG;
	if ((n = fg_request(g, VHU_SET_PROTOCOL_FEATURES, false, &proto, 8, NULL, 0, NULL, 0)))
		return n;
	if ((n = fg_request(g, VHU_GET_QUEUE_NUM, false, NULL, 0, NULL, 0, &nq, 8)) != 8)
		return n < 0 ? n : -EPROTO;
	FG_CHECK(nq == fg_queues(g));
	if ((n = fg_request(g, VHU_SET_OWNER, true, NULL, 0, NULL, 0, NULL, 0)))
		return n;
	if (g->dev)
		FG_CHECK(fg_config_cid(g) == g->cid);
	g->features = (o->legacy ? 0 : VIRTIO_F_VERSION_1) | VHU_F_PROTOCOL_FEATURES |
		      (feat & o->features);
	if (g->dev)
		g->features |= feat & VSOCK_F_SEQPACKET;
	if (o->event_idx)
		g->features |= feat & VIRTIO_F_EVENT_IDX;
	if (o->indirect)
		g->features |= feat & VIRTIO_F_INDIRECT_DESC;
	if ((n = fg_request(g, VHU_SET_FEATURES, true, &g->features, 8, NULL, 0, NULL, 0)))
		return n;
	mt.regions[0] = (struct vhu_mem_region){ 0, FG_MEM_SIZE, FG_UA, 0 };
	return fg_request(g, VHU_SET_MEM_TABLE, true, &mt, VHU_MEM_HDR + VHU_MEM_REGION, &g->memfd,
			  1, NULL, 0);
}

static int setup(struct fg *g, const struct fg_opts *o);

int
fg_try_attach(struct fg *g, const struct fg_opts *o)
{
	static const struct fg_opts dflt;
	int sp[2], err;

	if (!o)
		o = &dflt;
	if (g->fe >= 0)
		fg_close_frontend(g);
	FG_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) == 0);
	if ((err = g->dev ? vsock_dev_attach(g->dev, sp[0]) : g->attach(g->attach_ctx, sp[0]))) {
		close(sp[1]);
		return err;
	}
	g->fe = sp[1];
	return setup(g, o);
}

int
fg_connect(struct fg *g, const char *path, const struct fg_opts *o)
{
	static const struct fg_opts dflt;
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int fd;

	FG_CHECK(!g->loop && strlen(path) < sizeof(a.sun_path));
	if (g->fe >= 0)
		fg_close_frontend(g);
	memcpy(a.sun_path, path, strlen(path));
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	FG_CHECK(fd >= 0);
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		int err = -errno;

		close(fd);
		return err;
	}
	g->fe = fd;
	return setup(g, o ? o : &dflt);
}

/* The frontend's end is connected: negotiate, give the rings, enable them. */
static int
setup(struct fg *g, const struct fg_opts *o)
{
	int err;

	if ((err = negotiate(g, o)))
		return err;
	for (unsigned q = 0; q < fg_queues(g); q++) {
		bool give = !(q == VSOCK_Q_EVENT && o->no_event_ring);

		ring_setup(g, q, give ? (o->num[q] ? o->num[q] : FG_QUEUE_MAX) : 0);
		if (give && (err = ring_give(g, q)))
			return err;
	}
	fg_event_post(g, o->event_bufs);
	if (o->bad_tx_head)
		fg_tx_bad_head(g, o->bad_tx_head);
	for (uint32_t q = 0; q < fg_queues(g); q++) {
		struct vhu_vring_state s = { q, 1 };

		if (g->ring[q].on && (err = fg_request(g, VHU_SET_VRING_ENABLE, true, &s, sizeof(s),
						       NULL, 0, NULL, 0)))
			return err;
	}
	return 0;
}

void
fg_attach(struct fg *g, const struct fg_opts *o)
{
	int err = fg_try_attach(g, o);

	if (err) {
		fprintf(stderr, "fake guest: attach: %s (device: %s)\n", strerror(-err),
			g->dev && vsock_dev_why(g->dev) ? vsock_dev_why(g->dev) : "-");
		FG_CHECK(err == 0);
	}
}

void
fg_close_frontend(struct fg *g)
{
	if (g->fe < 0)
		return;
	close(g->fe);
	g->fe = -1;
	fg_pump(g, 0);
}

/* ---------------------------------------------------------------------- */

/* The guest's memory, no device yet. */
static void
guest_new(struct fg *g, struct loop *loop)
{
	memset(g, 0, sizeof(*g));
	g->loop = loop;
	g->fe = -1;
	for (unsigned q = 0; q < VSOCK_QUEUES; q++)
		g->ring[q].kick = g->ring[q].call = -1;
	g->memfd = memfd_create("fg-guest", MFD_CLOEXEC);
	FG_CHECK(g->memfd >= 0 && ftruncate(g->memfd, FG_MEM_SIZE) == 0);
	g->mem = mmap(NULL, FG_MEM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, g->memfd, 0);
	FG_CHECK(g->mem != MAP_FAILED);
}

void
fg_new(struct fg *g, struct loop *loop, uint32_t cid, const struct vsock_fabric *fab)
{
	char name[32];

	guest_new(g, loop);
	g->cid = cid;
	snprintf(name, sizeof(name), "guest-%u", cid);
	FG_CHECK(vsock_dev_new(loop, cid, name, fab, &g->dev) == 0);
}

void
fg_new_dev(struct fg *g, struct loop *loop, unsigned nq, fg_attach_fn *attach, void *ctx)
{
	FG_CHECK(nq >= 1 && nq <= VSOCK_QUEUES && attach);
	guest_new(g, loop);
	g->nq = nq;
	g->attach = attach;
	g->attach_ctx = ctx;
}

void
fg_new_remote(struct fg *g, unsigned nq)
{
	FG_CHECK(nq >= 1 && nq <= VSOCK_QUEUES);
	guest_new(g, NULL);
	g->nq = nq;
}

void
fg_free(struct fg *g)
{
	if (g->dev)
		vsock_dev_free(g->dev);
	g->dev = NULL;
	if (g->fe >= 0)
		close(g->fe);
	g->fe = -1;
	for (unsigned q = 0; q < VSOCK_QUEUES; q++)
		ring_setup(g, q, 0);
	munmap(g->mem, FG_MEM_SIZE);
	close(g->memfd);
}
