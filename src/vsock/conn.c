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
#include <sys/eventfd.h>
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

static void
free_list(struct vsock_conn *c)
{
	for (struct vsock_conn *n; c; c = n) {
		n = c->hnext;
		free(c);
	}
}

/* Free what died a round ago; what died since waits one more round. */
static void
reap(struct loop_src *s, uint32_t events)
{
	struct vsock_dev *d = (struct vsock_dev *)((char *)s - offsetof(struct vsock_dev, reap));
	uint64_t v;

	(void)events;
	if (read(s->fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		return;
	d->reap_armed = false;
	free_list(d->dying);
	d->dying = d->dead;
	d->dead = NULL;
	if (d->dying && eventfd_write(s->fd, 1) == 0)
		d->reap_armed = true;
}

int
vsock__table_init(struct vsock_dev *d)
{
	d->reap = (struct loop_src){ .fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC), .fn = reap };
	d->hash = calloc(NBUCKETS, sizeof(*d->hash));
	d->nbuckets = NBUCKETS;
	if (d->reap.fd >= 0 && d->hash && loop_add(d->loop, &d->reap, EPOLLIN) == 0)
		return 0;
	if (d->reap.fd >= 0)
		close(d->reap.fd);
	free(d->hash);
	d->hash = NULL;
	return -ENOMEM;
}

void
vsock__table_fini(struct vsock_dev *d)
{
	vsock__table_free(d, -ECONNRESET);
	free_list(d->dead);
	free_list(d->dying);
	d->dead = d->dying = NULL;
	loop_del(d->loop, &d->reap);
	close(d->reap.fd);
	free(d->hash);
	d->hash = NULL;
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

static void
conn_unwatch(struct vsock_conn *c)
{
	if (c->watched)
		loop_del(c->d->loop, &c->src);
	c->watched = false;
}

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
	conn_unwatch(c);
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
	/* An event of this loop round may still name @c: the reaper frees it later. */
	c->dead = true;
	c->qp = NULL;
	c->hnext = d->dead;
	d->dead = c;
	if (!d->reap_armed && eventfd_write(d->reap.fd, 1) == 0)
		d->reap_armed = true;
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

/*
 * Our receive buffer as the guest hears it: the ring, or for SEQPACKET the
 * largest message the ring carries (a guest sends no message longer than
 * buf_alloc, and one longer than qp_msg_max() would be a reset).
 */
static uint32_t
buf_alloc(const struct vsock_conn *c)
{
	return (uint32_t)(c->type == SOCK_SEQPACKET ? qp_msg_max(c->qp) : qp_tx_size(c->qp));
}

/* Bytes from the guest that we hold: in the ring, assembling, or waiting. */
static uint32_t
held(struct vsock_conn *c)
{
	size_t n = qp_tx_pending(c->qp) + c->in_len + c->ovf_len;
	size_t cap = buf_alloc(c);

	return (uint32_t)(n > cap ? cap : n);
}

/*
 * What we tell the guest it has been forwarded: what it sent minus what we
 * hold, never less than we said before. Credit once given is the guest's;
 * SEQPACKET records cost the ring more than their payload, and a fwd_cnt
 * that went back would turn a guest that kept to its credit into one that
 * did not.
 */
static uint32_t
our_fwd_cnt(struct vsock_conn *c)
{
	uint32_t f = c->rx_cnt - held(c);

	return (int32_t)(f - c->fwd_said) < 0 ? c->fwd_said : f;
}

/* What the guest believes it may still send us. */
static uint32_t
guest_credit(const struct vsock_conn *c)
{
	uint32_t inflight = c->rx_cnt - c->fwd_said, size = buf_alloc(c);

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

/* The guest may still send and its view of our space is low. */
static bool
credit_low(const struct vsock_conn *c)
{
	return !(c->shut_from_guest & VSOCK_SHUT_SEND) && guest_credit(c) < buf_alloc(c) / 2;
}

/*
 * Worth telling the guest that space came free? A quarter of the buffer,
 * or whatever came free once the ring is empty: a SEQPACKET message sent
 * in pieces as the credit allows may wait for just that.
 */
static bool
credit_due(struct vsock_conn *c)
{
	uint32_t adv;

	if (!credit_low(c))
		return false;
	adv = our_fwd_cnt(c) - c->fwd_said;
	return adv >= buf_alloc(c) / 4 || (adv && qp_tx_pending(c->qp) == 0);
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

/*
 * The peer finished sending (EOF) or went away: tell the guest once it has
 * everything. SHUTDOWN(SEND) for a half close; RCV too when the peer is
 * gone or shut both ways (HUP), also after SEND alone was said, so that the
 * guest closes without waiting; RST when it died or broke the queue pair.
 * After the guest's own SHUTDOWN(RCV) we shut our reading side, which is
 * no end of the peer's: then only HUP counts.
 */
static void
check_peer_end(struct vsock_conn *c, unsigned ev)
{
	uint32_t f = VSOCK_SHUT_SEND;
	bool hup;

	if (c->state != VC_OPEN || c->out_have || (c->owe & OWE_RST))
		return;
	if ((ev & QP_EV_ERR) || qp_broken_reason(c->qp)) {
		c->owe |= OWE_RST;
		return;
	}
	hup = ((ev | qp_arm(c->qp, 0)) & QP_EV_HUP) != 0; /* arm(0): a query, no interest */
	if ((c->shut_from_guest & VSOCK_SHUT_RCV) ? !hup : !qp_rx_at_eof(c->qp))
		return;
	if (qp_peer_reset(c->qp)) {
		c->owe |= OWE_RST;
		return;
	}
	if (hup)
		f |= VSOCK_SHUT_RCV;
	if ((c->shut_to_guest & f) == f)
		return;
	c->shut_to_guest |= f;
	c->owe |= OWE_SHUTDOWN;
}

/*
 * The guest's SHUTDOWN(SEND) goes to the peer (which reads what is there,
 * then EOF) once the last records are in the ring: a shut queue pair takes
 * no more.
 */
static void
pass_shut_wr(struct vsock_conn *c)
{
	if (!(c->shut_from_guest & VSOCK_SHUT_SEND) || c->ovf_len || c->wr_shut)
		return;
	qp_shutdown(c->qp, SHUT_WR);
	c->wr_shut = true;
}

/* The guest closed both ways and what it sent is in the ring: confirm with RST. */
static bool
guest_done(struct vsock_conn *c)
{
	if (c->shut_from_guest != (VSOCK_SHUT_RCV | VSOCK_SHUT_SEND) ||
	    (c->state == VC_OPEN && c->ovf_len))
		return false;
	c->owe = OWE_RST;
	vsock__ready(c);
	return true;
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
	uint64_t ring = qp_tx_size(c->qp), quarter = buf_alloc(c) / 4;
	uint64_t said = (uint32_t)(c->rx_cnt - c->fwd_said);
	uint64_t other = (uint64_t)c->in_len + c->ovf_len, ring_max;

	if (said < quarter + other)
		return (size_t)ring; /* only a drained ring helps */
	ring_max = said - quarter - other;
	return ring_max >= ring ? 1 : (size_t)(ring - ring_max);
}

/*
 * What the queue pair should wake us for. READ only when we could act on
 * it: the guest has credit, still reads, and has not heard EOF (a peer at
 * EOF is always readable, and a READ that is always there would clear the
 * WRITE interest with it). WRITE when the guest's credit is low (see
 * credit_lowat) or records wait in the overflow.
 */
static unsigned
conn_want(struct vsock_conn *c)
{
	size_t ring = qp_tx_size(c->qp), lowat = ring;
	unsigned want = 0;

	if (peer_credit(c) && !(c->shut_from_guest & VSOCK_SHUT_RCV) &&
	    !(c->shut_to_guest & VSOCK_SHUT_SEND))
		want = QP_EV_READ;
	if (credit_low(c))
		lowat = credit_lowat(c);
	if (c->ovf_len && lowat > ring / 4)
		lowat = ring / 4;
	if (credit_low(c) || c->ovf_len) {
		want |= QP_EV_WRITE;
		qp_set_lowat(c->qp, lowat);
	}
	return want;
}

/* Re-evaluate @c after anything happened: what it owes, what to wait for. */
static void
conn_update(struct vsock_conn *c)
{
	unsigned ev = 0;

	if (c->state != VC_OPEN || c->dead)
		return;
	for (int round = 0; round < 3; round++) {
		if (c->ovf_len)
			flush_overflow(c);
		pass_shut_wr(c);
		if (guest_done(c))
			return;
		if (credit_due(c))
			c->owe |= OWE_CREDIT;
		check_peer_end(c, ev);
		if (owes(c)) {
			vsock__ready(c);
			return; /* the pump comes back here when it has sent */
		}
		ev = qp_arm(c->qp, conn_want(c));
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
	if (c->dead)
		return; /* freed earlier in this loop round */
	qp_ack(c->qp);
	/*
	 * A peer gone (or shut both ways) has nothing more to tell us, and its
	 * liveness socket stays readable: watching it on would spin the loop.
	 */
	if (qp_arm(c->qp, 0) & QP_EV_HUP)
		conn_unwatch(c);
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
		h.buf_alloc = buf_alloc(c);
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
	/* To itself on the same port: both ends would have one name in one table. */
	bool same = r->vm == d && h->src_port == h->dst_port && h->dst_cid == d->cid;
	struct vsock_conn *a, *b;
	struct qp *qa, *qb;

	if (same || vsock__find(r->vm, h->dst_port, d->cid, h->src_port) ||
	    !vsock_dev_attached(r->vm) || qp_create_pair(r->qsize, r->qsize, &qa, &qb)) {
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
	/* From now, not from when the REQUEST goes out: a guest without buffers times out too. */
	b->deadline_ns = clock_ns() + CONNECT_TIMEOUT_NS;
	vsock__arm_timer(r->vm);
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

	if (h->dst_cid > UINT32_MAX) {
		vsock__orphan_rst(d, h);
		return;
	}
	c = vsock__find(d, h->src_port, (uint32_t)h->dst_cid, h->dst_port);
	if (c) {
		/*
		 * The guest has no such connection any more (it asks again): an
		 * RST for the name resets it on both sides, not only in the guest.
		 */
		if (!(c->owe & OWE_RST))
			reset(c, "REQUEST for a connection that exists");
		return;
	}
	err = d->fab->route(d->fab->ctx, d, h->src_port, (uint32_t)h->dst_cid, h->dst_port, type,
			    &r);
	if (err == -ECONNREFUSED && h->dst_cid == VSOCK_CID_HOST && type == SOCK_STREAM)
		err = vsock__hybrid_out(d, h->dst_port, &r.qp); /* a UNIX socket may take it */
	if (!err && !r.vm && !r.qp)
		err = -ECONNREFUSED; /* the fabric said yes to nothing */
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
	if (f & VSOCK_SHUT_RCV)
		qp_shutdown(c->qp, SHUT_RD);
	pass_shut_wr(c);
	if (!guest_done(c))
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
	/* From now, not from when the REQUEST goes out: a guest without buffers times out too. */
	c->deadline_ns = clock_ns() + CONNECT_TIMEOUT_NS;
	vsock__arm_timer(d);
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
			if (c->dead || (c->state != VC_CONNECTING && c->state != VC_CLOSING))
				continue;
			if (!c->deadline_ns || now < c->deadline_ns) {
				more |= c->deadline_ns != 0;
				continue;
			}
			c->deadline_ns = 0; /* once: the RST waits for a buffer at most */
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
