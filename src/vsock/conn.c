/* SPDX-License-Identifier: MIT */
/*
 * virtio-vsock connections bridged to queue pairs: the connection table,
 * the state machine of the virtio specification (REQUEST, RESPONSE, RST,
 * SHUTDOWN, RW, CREDIT_UPDATE, CREDIT_REQUEST) and the credit on both
 * sides.
 *
 * Credit. Toward the guest, what we may send is the guest's buf_alloc
 * minus what it has not yet consumed (tx_cnt - fwd_cnt as it last said);
 * a guest that reports nonsense only starves itself (credit 0). From the
 * guest, our buf_alloc is the queue pair's ring and our fwd_cnt moves as
 * the peer drains it: the guest can never send more than fits, so a
 * stream byte is never held here. A guest that sends beyond its credit
 * breaks the protocol and gets RST. When the guest's view of our space is
 * low, we ask the queue pair to wake us once a quarter of the ring is free
 * again and send CREDIT_UPDATE then: a writer never stalls on a missed
 * update, however large its writes.
 *
 * SEQPACKET messages arrive in packets (the last with EOM), are assembled
 * and written as one queue-pair record; records that do not fit yet wait
 * in a per-connection overflow (bounded, counted in the credit we give).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"
#include "internal.h"
#include "vmfabric/qp.h"

#define NBUCKETS 1024u
#define CONNECT_TIMEOUT_NS (2 * 1000000000LL)
/* Linux gives a peer 8 s to answer a full SHUTDOWN with RST. */
#define CLOSE_TIMEOUT_NS (8 * 1000000000LL)
#define OVERFLOW_MAX (4u << 20)

static unsigned
bucket(uint32_t gport, uint32_t pcid, uint32_t pport)
{
	uint32_t h = gport * 0x9e3779b1u ^ pcid * 0x85ebca6bu ^ pport * 0xc2b2ae35u;

	return (h ^ (h >> 16)) & (NBUCKETS - 1);
}

int
vsock__table_init(struct vsock_dev *d)
{
	d->hash = calloc(NBUCKETS, sizeof(*d->hash));
	d->nbuckets = NBUCKETS;
	return d->hash ? 0 : -ENOMEM;
}

struct vsock_conn *
vsock__find(struct vsock_dev *d, uint32_t gport, uint32_t pcid, uint32_t pport)
{
	struct vsock_conn *c = d->hash[bucket(gport, pcid, pport)];

	while (c && !(c->gport == gport && c->pcid == pcid && c->pport == pport))
		c = c->hnext;
	return c;
}

static void conn_event(struct loop_src *s, uint32_t events);

struct vsock_conn *
vsock__conn_new(struct vsock_dev *d, uint32_t gport, uint32_t pcid, uint32_t pport, int type,
		struct qp *q)
{
	struct vsock_conn *c = calloc(1, sizeof(*c));
	unsigned b = bucket(gport, pcid, pport);

	if (!c)
		return NULL;
	c->src.fd = -1;
	c->src.fn = conn_event;
	c->d = d;
	c->gport = gport;
	c->pcid = pcid;
	c->pport = pport;
	c->type = type;
	c->qp = q;
	c->hnext = d->hash[b];
	d->hash[b] = c;
	d->st.conns++;
	return c;
}

static void
unlink_conn(struct vsock_conn *c)
{
	struct vsock_dev *d = c->d;
	struct vsock_conn **p = &d->hash[bucket(c->gport, c->pcid, c->pport)];

	while (*p && *p != c)
		p = &(*p)->hnext;
	if (*p)
		*p = c->hnext;
	if (c->ready) {
		struct vsock_conn *prev = NULL;

		for (struct vsock_conn *r = d->ready_head; r; prev = r, r = r->rnext) {
			if (r != c)
				continue;
			if (prev)
				prev->rnext = r->rnext;
			else
				d->ready_head = r->rnext;
			if (d->ready_tail == r)
				d->ready_tail = prev;
			break;
		}
	}
}

/*
 * Free @c. The peer sees a reset (@reset_peer) or the end of the stream
 * (after the shutdowns we passed on). An offer still waiting is answered
 * -ECONNRESET; a VM-to-VM partner still waiting is reset.
 */
void
vsock__conn_free(struct vsock_conn *c, bool reset_peer)
{
	struct vsock_dev *d = c->d;

	unlink_conn(c);
	if (c->watched)
		loop_del(d->loop, &c->src);
	if (c->qp) {
		if (reset_peer)
			qp_detach(c->qp);
		else
			qp_close(c->qp);
	}
	if (c->done)
		c->done(c->done_arg, -ECONNRESET);
	if (c->closed)
		c->closed(c->closed_arg);
	if (c->partner) {
		struct vsock_conn *p = c->partner;

		p->partner = NULL;
		p->owe = OWE_RST;
		vsock__ready(p);
		if (p->d != d)
			vsock__pump(p->d);
	}
	free(c->in_msg);
	free(c->ovf);
	free(c->out_msg);
	d->st.conns--;
	free(c);
}

void
vsock__table_free(struct vsock_dev *d, int err)
{
	(void)err;
	for (size_t b = 0; b < d->nbuckets; b++)
		while (d->hash[b])
			vsock__conn_free(d->hash[b], true);
	d->ready_head = d->ready_tail = NULL;
}

/* ---------------------------------------------------------------------- */
/* Credit */

/* Bytes from the guest that we hold: in the ring, assembling, or waiting. */
static uint32_t
held(struct vsock_conn *c)
{
	size_t n = qp_tx_pending(c->qp) + c->in_len + c->ovf_len;
	size_t cap = qp_tx_size(c->qp);

	return (uint32_t)(n > cap ? cap : n);
}

static uint32_t
our_fwd_cnt(struct vsock_conn *c)
{
	return c->rx_cnt - held(c);
}

/* What the guest believes it may still send us. */
static uint32_t
guest_credit(const struct vsock_conn *c)
{
	uint32_t inflight = c->rx_cnt - c->fwd_said, size = (uint32_t)qp_tx_size(c->qp);

	return inflight > size ? 0 : size - inflight;
}

/* What we may send the guest. */
static uint32_t
peer_credit(const struct vsock_conn *c)
{
	uint32_t inflight = c->tx_cnt - c->peer_fwd_cnt;

	return inflight > c->peer_buf_alloc ? 0 : c->peer_buf_alloc - inflight;
}

static void
take_credit(struct vsock_conn *c, const struct vsock_hdr *h)
{
	c->peer_buf_alloc = h->buf_alloc;
	c->peer_fwd_cnt = h->fwd_cnt;
}

/* Worth telling the guest that space came free? */
static bool
credit_due(struct vsock_conn *c)
{
	uint32_t size = (uint32_t)qp_tx_size(c->qp);

	return guest_credit(c) < size / 2 && our_fwd_cnt(c) - c->fwd_said >= size / 4;
}

/* ---------------------------------------------------------------------- */
/* Events */

static bool
stream_sendable(struct vsock_conn *c)
{
	if (c->type == SOCK_SEQPACKET && c->out_have)
		return peer_credit(c) > 0 || c->out_off == c->out_len;
	return peer_credit(c) > 0 && !(c->shut_from_guest & VSOCK_SHUT_RCV) &&
	       qp_rx_ready(c->qp) > 0;
}

static bool
owes(struct vsock_conn *c)
{
	if (c->owe & (OWE_REQUEST | OWE_RESPONSE | OWE_RST))
		return true;
	if (c->state != VC_OPEN)
		return false;
	return c->owe || stream_sendable(c);
}

/* The peer finished sending (EOF) or went away: tell the guest once drained. */
static void
check_peer_end(struct vsock_conn *c, unsigned ev)
{
	if (c->state != VC_OPEN || (c->shut_to_guest & VSOCK_SHUT_SEND) || c->out_have)
		return;
	if (!qp_rx_at_eof(c->qp) && !(ev & QP_EV_ERR))
		return;
	if (qp_peer_reset(c->qp) || (ev & QP_EV_ERR)) {
		c->owe |= OWE_RST;
		return;
	}
	c->shut_to_guest |= VSOCK_SHUT_SEND;
	if (ev & QP_EV_HUP)
		c->shut_to_guest |= VSOCK_SHUT_RCV; /* the peer is gone: it reads no more */
	c->owe |= OWE_SHUTDOWN;
}

static void flush_overflow(struct vsock_conn *c);

/*
 * The queue-pair space at which credit_due() becomes true: when the peer
 * has drained the ring to where our fwd_cnt has moved a quarter of the ring
 * past what the guest last heard (held = ring + assembling + overflow).
 */
static size_t
credit_lowat(struct vsock_conn *c)
{
	uint64_t size = qp_tx_size(c->qp), said = (uint32_t)(c->rx_cnt - c->fwd_said);
	uint64_t other = (uint64_t)c->in_len + c->ovf_len, ring_max;

	if (said < size / 4 + other)
		return (size_t)size; /* only a drained ring helps */
	ring_max = said - size / 4 - other;
	return ring_max >= size ? 1 : (size_t)(size - ring_max);
}

/* Re-evaluate @c after anything happened: what it owes, what to wait for. */
static void
conn_update(struct vsock_conn *c)
{
	size_t size, lowat;
	unsigned want, ev = 0;

	if (c->state != VC_OPEN)
		return;
	size = qp_tx_size(c->qp);
	for (int round = 0; round < 3; round++) {
		if (c->ovf_len)
			flush_overflow(c);
		if (credit_due(c))
			c->owe |= OWE_CREDIT;
		check_peer_end(c, ev);
		if (owes(c)) {
			vsock__ready(c);
			return; /* the pump comes back here when it has sent */
		}
		/* Data for the guest only helps while it has credit for it. */
		want = peer_credit(c) ? QP_EV_READ : 0;
		lowat = size;
		if (guest_credit(c) < size / 2)
			lowat = credit_lowat(c);
		if (c->ovf_len && lowat > size / 4)
			lowat = size / 4;
		if (lowat < size || guest_credit(c) < size / 2 || c->ovf_len) {
			want |= QP_EV_WRITE;
			qp_set_lowat(c->qp, lowat);
		}
		ev = qp_arm(c->qp, want);
		if (!(ev & (QP_EV_READ | QP_EV_WRITE | QP_EV_ERR)))
			return; /* asleep until the queue pair wakes us */
	}
	/*
	 * Still ready without owing anything (a peer gone with data the guest
	 * has no credit for): the guest's next credit update brings us back.
	 */
}

static void
conn_event(struct loop_src *s, uint32_t events)
{
	struct vsock_conn *c = (struct vsock_conn *)s;
	struct vsock_dev *d = c->d;

	(void)events;
	qp_ack(c->qp);
	conn_update(c);
	vsock__pump(d);
}

int
vsock__conn_watch(struct vsock_conn *c)
{
	int fd = qp_poll_fd(c->qp);

	if (fd < 0)
		return fd;
	c->src.fd = fd;
	if (loop_add(c->d->loop, &c->src, EPOLLIN) < 0)
		return -errno;
	c->watched = true;
	return 0;
}

/* ---------------------------------------------------------------------- */
/* To the guest */

/* The writable segments of @e from byte @off, at most @len bytes, as an iovec. */
static int
elem_iov(const struct virtq_elem *e, size_t off, size_t len, struct iovec *iov)
{
	int n = 0;

	for (unsigned i = e->nout; i < (unsigned)e->nout + e->nin && len; i++) {
		size_t l = e->iov[i].iov_len;

		if (off >= l) {
			off -= l;
			continue;
		}
		l -= off;
		if (l > len)
			l = len;
		iov[n].iov_base = (uint8_t *)e->iov[i].iov_base + off;
		iov[n++].iov_len = l;
		len -= l;
		off = 0;
	}
	return n;
}

static size_t
min3(size_t a, size_t b, size_t c)
{
	size_t m = a < b ? a : b;

	return m < c ? m : c;
}

/* RW from the queue pair's stream: the payload bytes, or 0 if none. */
static uint32_t
stream_payload(struct vsock_conn *c, const struct virtq_elem *e)
{
	struct iovec iov[VIRTQ_MAX_SEGS];
	size_t room = e->in_len - sizeof(struct vsock_hdr);
	size_t n = min3(room, peer_credit(c), VSOCK_MAX_PKT);
	ssize_t r;

	if (!n)
		return 0;
	r = qp_readv(c->qp, iov, elem_iov(e, sizeof(struct vsock_hdr), n, iov), QP_DONTWAIT);
	return r > 0 ? (uint32_t)r : 0;
}

/* RW carrying the next piece of a SEQPACKET message; *@eom at its end. */
static uint32_t
msg_payload(struct vsock_conn *c, const struct virtq_elem *e, bool *eom)
{
	size_t room = e->in_len - sizeof(struct vsock_hdr), n;
	ssize_t r;

	if (!c->out_have) {
		size_t cap = qp_rx_size(c->qp), len;

		if (!c->out_msg && !(c->out_msg = malloc(cap)))
			return 0;
		r = qp_msg_recv(c->qp, c->out_msg, cap, &len, QP_DONTWAIT);
		if (r < 0)
			return 0;
		c->out_len = (uint32_t)r;
		c->out_off = 0;
		c->out_have = true;
	}
	n = min3(room, peer_credit(c), c->out_len - c->out_off);
	virtq_write(e, sizeof(struct vsock_hdr), c->out_msg + c->out_off, n);
	c->out_off += (uint32_t)n;
	*eom = c->out_off == c->out_len;
	if (*eom)
		c->out_have = false;
	return (uint32_t)n;
}

/* Choose the next packet @c owes; 0 if none. Fills @h and the payload. */
static uint32_t
next_packet(struct vsock_conn *c, const struct virtq_elem *e, struct vsock_hdr *h)
{
	static const unsigned order[] = { OWE_REQUEST, OWE_RESPONSE, OWE_RST };
	static const uint16_t ops[] = { VSOCK_OP_REQUEST, VSOCK_OP_RESPONSE, VSOCK_OP_RST };
	bool eom = false;
	uint32_t n;

	for (unsigned i = 0; i < 3; i++) {
		if (c->owe & order[i]) {
			c->owe &= ~order[i];
			vsock__hdr(c, h, ops[i]);
			return 1;
		}
	}
	if (c->state != VC_OPEN)
		return 0;
	if (stream_sendable(c)) {
		n = c->type == SOCK_STREAM ? stream_payload(c, e) : msg_payload(c, e, &eom);
		if (n || eom) {
			vsock__hdr(c, h, VSOCK_OP_RW);
			h->len = n;
			h->flags = eom ? VSOCK_SEQ_EOM : 0;
			c->tx_cnt += n;
			c->d->st.to_guest_bytes += n;
			c->owe &= ~OWE_CREDIT; /* the header carries it */
			return 1;
		}
	}
	check_peer_end(c, 0);
	if (c->owe & OWE_SHUTDOWN) {
		c->owe &= ~OWE_SHUTDOWN;
		vsock__hdr(c, h, VSOCK_OP_SHUTDOWN);
		h->flags = c->shut_to_guest;
		return 1;
	}
	if (c->owe & (OWE_CREDIT | OWE_CREDIT_REQ)) {
		vsock__hdr(c, h, (c->owe & OWE_CREDIT) ? VSOCK_OP_CREDIT_UPDATE
						       : VSOCK_OP_CREDIT_REQUEST);
		c->owe &= ~(OWE_CREDIT | OWE_CREDIT_REQ);
		return 1;
	}
	return 0;
}

bool
vsock__owes(struct vsock_conn *c)
{
	return owes(c);
}

void
vsock__idle(struct vsock_conn *c)
{
	conn_update(c);
}

uint32_t
vsock__to_guest(struct vsock_conn *c, const struct virtq_elem *e, bool *gone)
{
	struct vsock_hdr h;

	*gone = false;
	if (!next_packet(c, e, &h))
		return 0;
	if (c->qp) {
		h.buf_alloc = (uint32_t)qp_tx_size(c->qp);
		h.fwd_cnt = c->fwd_said = our_fwd_cnt(c);
	}
	virtq_write(e, 0, &h, sizeof(h));
	if (h.op == VSOCK_OP_RST) {
		/* Peer already gone or reset: nothing more to say or keep. */
		vsock__conn_free(c, true);
		*gone = true;
	} else if (h.op == VSOCK_OP_SHUTDOWN && h.flags == (VSOCK_SHUT_RCV | VSOCK_SHUT_SEND)) {
		c->state = VC_CLOSING;
		c->deadline_ns = clock_ns() + CLOSE_TIMEOUT_NS;
		vsock__arm_timer(c->d);
	} else if (h.op == VSOCK_OP_REQUEST) {
		c->deadline_ns = clock_ns() + CONNECT_TIMEOUT_NS;
		vsock__arm_timer(c->d);
	}
	return (uint32_t)sizeof(h) + h.len;
}

/* ---------------------------------------------------------------------- */
/* From the guest */

static void
reset(struct vsock_conn *c, const char *why)
{
	if (why)
		log_rl(LOG_LVL_WARN, "vm %s (cid %u): port %u <-> %u:%u reset: %s", c->d->name,
		       c->d->cid, c->gport, c->pcid, c->pport, why);
	c->d->st.resets++;
	c->owe = OWE_RST;
	if (c->done) {
		c->done(c->done_arg, -ECONNREFUSED);
		c->done = NULL;
	}
	vsock__ready(c);
}

static void
open_conn(struct vsock_conn *c)
{
	c->state = VC_OPEN;
	c->d->st.opened++;
	if (!c->watched && vsock__conn_watch(c) < 0) {
		reset(c, "cannot watch the queue pair");
		return;
	}
	conn_update(c);
}

/* A REQUEST to another VM: a queue pair between the two devices. */
static void
connect_vm(struct vsock_dev *d, const struct vsock_hdr *h, const struct vsock_route *r)
{
	struct vsock_conn *a, *b;
	struct qp *qa, *qb;
	struct qp_fds f;

	if (vsock__find(r->vm, h->dst_port, d->cid, h->src_port) || !vsock_dev_attached(r->vm) ||
	    qp_create(r->qsize, r->qsize, &qa, &f)) {
		vsock__orphan_rst(d, h);
		return;
	}
	if (qp_attach(&f, &qb)) {
		qp_close(qa);
		close(f.mem), close(f.wake), close(f.peer_wake), close(f.alive);
		vsock__orphan_rst(d, h);
		return;
	}
	a = vsock__conn_new(d, h->src_port, (uint32_t)h->dst_cid, h->dst_port,
			    h->type == VSOCK_TYPE_STREAM ? SOCK_STREAM : SOCK_SEQPACKET, qa);
	b = a ? vsock__conn_new(r->vm, h->dst_port, d->cid, h->src_port, a->type, qb) : NULL;
	if (!b) {
		if (a)
			vsock__conn_free(a, true);
		else
			qp_close(qa);
		qp_close(qb);
		vsock__orphan_rst(d, h);
		return;
	}
	take_credit(a, h);
	a->state = VC_WAIT_PEER;
	b->state = VC_CONNECTING;
	a->partner = b;
	b->partner = a;
	b->owe = OWE_REQUEST;
	vsock__ready(b);
	vsock__pump(r->vm);
}

static void
on_request(struct vsock_dev *d, const struct vsock_hdr *h)
{
	int type = h->type == VSOCK_TYPE_STREAM ? SOCK_STREAM : SOCK_SEQPACKET;
	struct vsock_route r = { 0 };
	struct vsock_conn *c;
	int err;

	if (vsock__find(d, h->src_port, (uint32_t)h->dst_cid, h->dst_port) ||
	    h->dst_cid > UINT32_MAX) {
		vsock__orphan_rst(d, h);
		return;
	}
	err = d->fab->route(d->fab->ctx, d, h->src_port, (uint32_t)h->dst_cid, h->dst_port, type,
			    &r);
	if (err) {
		log_debug("vm %s (cid %u): port %u -> %u:%u refused: %s", d->name, d->cid,
			  h->src_port, (uint32_t)h->dst_cid, h->dst_port, strerror(-err));
		vsock__orphan_rst(d, h);
		return;
	}
	if (r.vm) {
		connect_vm(d, h, &r);
		return;
	}
	c = vsock__conn_new(d, h->src_port, (uint32_t)h->dst_cid, h->dst_port, type, r.qp);
	if (!c) {
		qp_detach(r.qp);
		if (r.closed)
			r.closed(r.closed_arg);
		vsock__orphan_rst(d, h);
		return;
	}
	take_credit(c, h);
	c->closed = r.closed;
	c->closed_arg = r.closed_arg;
	c->owe = OWE_RESPONSE;
	open_conn(c);
	vsock__ready(c);
}

static void
on_response(struct vsock_conn *c, const struct vsock_hdr *h)
{
	struct vsock_conn *a = c->partner;

	if (c->state != VC_CONNECTING) {
		reset(c, "RESPONSE out of turn");
		return;
	}
	take_credit(c, h);
	if (c->done) {
		c->done(c->done_arg, 0);
		c->done = NULL;
	}
	open_conn(c);
	if (a) {
		a->partner = c->partner = NULL;
		a->owe |= OWE_RESPONSE;
		open_conn(a);
		vsock__ready(a);
		vsock__pump(a->d);
	}
}

static void
on_shutdown(struct vsock_conn *c, const struct vsock_hdr *h)
{
	uint32_t f = h->flags & (VSOCK_SHUT_RCV | VSOCK_SHUT_SEND);

	c->shut_from_guest |= f;
	if (f & VSOCK_SHUT_SEND)
		qp_shutdown(c->qp, SHUT_WR); /* the peer reads what is there, then EOF */
	if (f & VSOCK_SHUT_RCV)
		qp_shutdown(c->qp, SHUT_RD);
	if (c->shut_from_guest == (VSOCK_SHUT_RCV | VSOCK_SHUT_SEND)) {
		/* The guest closed: confirm with RST (it waits for one). */
		c->owe = OWE_RST;
		vsock__ready(c);
		return;
	}
	conn_update(c);
}

/* Queue a whole message for the queue pair; false if it must be reset. */
static bool
deliver_msg(struct vsock_conn *c, const uint8_t *msg, uint32_t len)
{
	ssize_t r = c->ovf_len ? -EAGAIN : qp_msg_send(c->qp, msg, len, QP_DONTWAIT);

	if (r >= 0 || r == -EPIPE)
		return true; /* a peer that stopped reading drops it, as a socket would */
	if (r != -EAGAIN || c->ovf_len + 4 + len > OVERFLOW_MAX)
		return false;
	if (c->ovf_len + 4 + len > c->ovf_cap) {
		size_t cap = (c->ovf_len + 4 + len) * 2;
		uint8_t *p = realloc(c->ovf, cap);

		if (!p)
			return false;
		c->ovf = p;
		c->ovf_cap = cap;
	}
	memcpy(c->ovf + c->ovf_len, &len, 4);
	memcpy(c->ovf + c->ovf_len + 4, msg, len);
	c->ovf_len += 4 + len;
	return true;
}

static void
flush_overflow(struct vsock_conn *c)
{
	size_t off = 0;
	uint32_t len;

	while (off < c->ovf_len) {
		memcpy(&len, c->ovf + off, 4);
		if (qp_msg_send(c->qp, c->ovf + off + 4, len, QP_DONTWAIT) == -EAGAIN)
			break;
		off += 4 + len;
	}
	memmove(c->ovf, c->ovf + off, c->ovf_len - off);
	c->ovf_len -= off;
}

static void
on_rw_msg(struct vsock_conn *c, const struct vsock_hdr *h, const struct virtq_elem *e)
{
	size_t max = qp_msg_max(c->qp);

	if (c->in_len + h->len > max) {
		reset(c, "message larger than the queue pair");
		return;
	}
	if (!c->in_msg && !(c->in_msg = malloc(max))) {
		reset(c, "out of memory");
		return;
	}
	virtq_read(e, sizeof(*h), c->in_msg + c->in_len, h->len);
	c->in_len += h->len;
	if (!(h->flags & VSOCK_SEQ_EOM))
		return;
	if (!deliver_msg(c, c->in_msg, c->in_len))
		reset(c, "message overflow");
	c->in_len = 0;
}

static void
on_rw(struct vsock_conn *c, const struct vsock_hdr *h, const struct virtq_elem *e)
{
	struct iovec iov[VIRTQ_MAX_SEGS];
	unsigned n = 0;
	size_t off = sizeof(*h), len = h->len;
	ssize_t r;

	if (c->state != VC_OPEN || (c->shut_from_guest & VSOCK_SHUT_SEND)) {
		reset(c, "data out of turn");
		return;
	}
	if (h->len > guest_credit(c)) {
		reset(c, "guest sent beyond its credit");
		return;
	}
	c->rx_cnt += h->len;
	c->d->st.from_guest_bytes += h->len;
	if (c->type == SOCK_SEQPACKET) {
		on_rw_msg(c, h, e);
		return;
	}
	/* The payload's readable segments, after the header. */
	for (unsigned i = 0; i < e->nout && len; i++) {
		size_t l = e->iov[i].iov_len;

		if (off >= l) {
			off -= l;
			continue;
		}
		l = l - off < len ? l - off : len;
		iov[n].iov_base = (uint8_t *)e->iov[i].iov_base + off;
		iov[n++].iov_len = l;
		len -= l;
		off = 0;
	}
	r = qp_writev(c->qp, iov, (int)n, QP_DONTWAIT);
	if (r == -EPIPE) {
		c->shut_to_guest |= VSOCK_SHUT_RCV; /* the peer reads no more */
		c->owe |= OWE_SHUTDOWN;
	} else if (r != (ssize_t)h->len) {
		reset(c, r < 0 ? "queue pair broken" : "ring full despite credit");
	}
}

void
vsock__from_guest(struct vsock_dev *d, const struct vsock_hdr *h, const struct virtq_elem *e)
{
	struct vsock_conn *c;

	if (h->op == VSOCK_OP_REQUEST) {
		on_request(d, h);
		return;
	}
	c = h->dst_cid <= UINT32_MAX
		    ? vsock__find(d, h->src_port, (uint32_t)h->dst_cid, h->dst_port)
		    : NULL;
	if (!c || (c->owe & OWE_RST)) {
		vsock__orphan_rst(d, h);
		return;
	}
	if (c->state == VC_WAIT_PEER && h->op != VSOCK_OP_RST)
		return; /* nothing to do until the other VM answers */
	switch (h->op) {
	case VSOCK_OP_RESPONSE:
		on_response(c, h);
		break;
	case VSOCK_OP_RST:
		if (c->done) {
			c->done(c->done_arg, c->state == VC_CONNECTING ? -ECONNREFUSED : -ECONNRESET);
			c->done = NULL;
		}
		/* After the guest's orderly SHUTDOWN the peer has seen EOF already. */
		vsock__conn_free(c, c->state != VC_CLOSING &&
					    !(c->shut_from_guest & VSOCK_SHUT_SEND));
		break;
	case VSOCK_OP_SHUTDOWN:
		on_shutdown(c, h);
		break;
	case VSOCK_OP_RW:
		take_credit(c, h);
		on_rw(c, h, e);
		conn_update(c);
		break;
	case VSOCK_OP_CREDIT_UPDATE:
		take_credit(c, h);
		conn_update(c);
		break;
	case VSOCK_OP_CREDIT_REQUEST:
		take_credit(c, h);
		c->owe |= OWE_CREDIT;
		vsock__ready(c);
		break;
	default:
		reset(c, "unknown operation");
	}
}

/* ---------------------------------------------------------------------- */
/* Offers and deadlines */

int
vsock_offer(struct vsock_dev *d, uint32_t src_cid, uint32_t src_port, uint32_t dst_port, int type,
	    struct qp *q, void (*done)(void *arg, int err), void *arg)
{
	struct vsock_conn *c;

	if (!vsock_dev_attached(d))
		return -ENOTCONN;
	if (vsock__find(d, dst_port, src_cid, src_port))
		return -EADDRINUSE;
	c = vsock__conn_new(d, dst_port, src_cid, src_port, type, q);
	if (!c)
		return -ENOMEM;
	c->state = VC_CONNECTING;
	c->done = done;
	c->done_arg = arg;
	c->owe = OWE_REQUEST;
	vsock__ready(c);
	vsock__pump(d);
	return 0;
}

void
vsock__expire(struct vsock_dev *d, int64_t now)
{
	bool more = false;

	for (size_t b = 0; b < d->nbuckets; b++) {
		for (struct vsock_conn *c = d->hash[b], *n; c; c = n) {
			n = c->hnext;
			if (c->state != VC_CONNECTING && c->state != VC_CLOSING)
				continue;
			if (!c->deadline_ns || now < c->deadline_ns) {
				more |= c->deadline_ns != 0;
				continue;
			}
			if (c->done) {
				c->done(c->done_arg, -ETIMEDOUT);
				c->done = NULL;
			}
			reset(c, NULL);
		}
	}
	if (more)
		vsock__arm_timer(d);
}
