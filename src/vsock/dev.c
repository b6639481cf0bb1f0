/* SPDX-License-Identifier: MIT */
/*
 * The virtio-vsock device's vhost-user side: the frontend connection, the
 * three queues (rx: to the guest, tx: from the guest, event), their kicks,
 * and the order in which packets go to the guest: RSTs for packets without
 * a connection first, then connections on the ready list in turn, each
 * writing a bounded number of packets before the next one's turn.
 *
 * Threat model: the guest and the frontend are untrusted. The vhost-user
 * server (src/vhost) checks every message; the virtqueue layer
 * (src/virtio) every descriptor; here every packet header is checked
 * (vsock_hdr_check: source CID, lengths) before conn.c acts on it. A
 * broken queue or frontend drops the frontend and resets this VM's
 * connections; other VMs never notice.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"
#include "internal.h"

/* Packets from the guest handled before the used ring is published. */
#define TX_BATCH 64u
/* Packets one connection may write before the next connection's turn. */
#define TURN_PKTS 8u
/*
 * Packets one device handles per kick, each way, before the loop's other
 * sources (other VMs' devices, clients) get their turn: a guest that keeps
 * its queue full would otherwise keep the main loop to itself. One batch:
 * the yield costs an eventfd write and a turn of the loop per 64 packets.
 */
#define ROUND_PKTS TX_BATCH

static const uint64_t dev_features = VIRTIO_F_VERSION_1 | VIRTIO_F_EVENT_IDX |
				     VIRTIO_F_INDIRECT_DESC | VSOCK_F_STREAM | VSOCK_F_SEQPACKET;

int
vsock_hdr_check(const struct vsock_hdr *h, uint64_t cid, size_t avail, const char **why)
{
	if (h->src_cid != cid)
		*why = "source CID is not the guest's (spoofed)";
	else if (h->len > avail)
		*why = "payload length beyond the buffer";
	else if (h->len > VSOCK_MAX_PKT)
		*why = "payload longer than 64 KiB";
	else if (h->type != VSOCK_TYPE_STREAM && h->type != VSOCK_TYPE_SEQPACKET)
		*why = "unknown socket type";
	else if (h->op != VSOCK_OP_RW && h->len)
		*why = "payload on a control packet";
	else
		return 0;
	return -EPROTO;
}

const char *
vsock_op_name(unsigned op)
{
	static const char *const n[] = { "INVALID", "REQUEST",	     "RESPONSE",
					 "RST",	    "SHUTDOWN",	     "RW",
					 "CREDIT_UPDATE", "CREDIT_REQUEST" };

	return op < sizeof(n) / sizeof(n[0]) ? n[op] : "?";
}

/* ---------------------------------------------------------------------- */
/* Dropping the frontend */

static void
kick_unwatch(struct vsock_dev *d, unsigned q)
{
	struct vsock_kick *k = &d->kick[q];

	if (k->src.fd >= 0)
		loop_del(d->loop, &k->src);
	k->src.fd = -1; /* the vhost-user server owns the descriptor */
}

/*
 * Drop the frontend: rings, memory, and every connection (their peers see a
 * reset). @why is logged once. A new frontend may attach afterwards. Called
 * back from the vhost-user server (a ring that starts broken), it only
 * marks the drop: the caller of the server finishes it (see in_vhu).
 */
static void
dev_detach(struct vsock_dev *d, const char *why)
{
	if (!d->vhu)
		return;
	if (why && !d->drop_pending) {
		snprintf(d->why, sizeof(d->why), "%s", why);
		log_warn("vm %s (cid %u): vsock frontend dropped: %s", d->name, d->cid, why);
	}
	d->drop_pending = true; /* no new work from here: not attached */
	if (d->in_vhu)
		return;
	/* The rings first: what the connections' ends call back finds them off. */
	for (unsigned q = 0; q < VSOCK_QUEUES; q++) {
		kick_unwatch(d, q);
		d->vq_on[q] = false;
	}
	vsock__table_free(d, -ECONNRESET);
	d->n_orphan = 0;
	loop_del(d->loop, &d->usrc);
	vhu_conn_free(d->vhu); /* closes the socket and the kick/call descriptors */
	d->vhu = NULL;
	d->usrc.fd = -1;
	d->drop_pending = false;
	loop_mark_dirty(d->loop); /* the fd keeper's copy names what was just closed */
}

/* The frontend is attached and not being dropped. */
static bool
dev_up(const struct vsock_dev *d)
{
	return d->vhu && !d->drop_pending;
}

static void
queue_broken(struct vsock_dev *d, unsigned q)
{
	char why[160];

	snprintf(why, sizeof(why), "%s queue: %s", q == VSOCK_Q_RX ? "rx" : q == VSOCK_Q_TX ? "tx" : "event",
		 virtq_why(&d->vq[q]));
	dev_detach(d, why);
}

/* ---------------------------------------------------------------------- */
/* To the guest */

void
vsock__ready(struct vsock_conn *c)
{
	struct vsock_dev *d = c->d;

	if (c->ready)
		return;
	c->ready = true;
	c->rnext = NULL;
	if (d->ready_tail)
		d->ready_tail->rnext = c;
	else
		d->ready_head = c;
	d->ready_tail = c;
}

static struct vsock_conn *
ready_pop(struct vsock_dev *d)
{
	struct vsock_conn *c = d->ready_head;

	if (!c)
		return NULL;
	d->ready_head = c->rnext;
	if (!d->ready_head)
		d->ready_tail = NULL;
	c->ready = false;
	c->rnext = NULL;
	return c;
}

void
vsock__orphan_rst(struct vsock_dev *d, const struct vsock_hdr *h)
{
	if (h->op == VSOCK_OP_RST)
		return; /* never answer a reset with one */
	d->st.refused += h->op == VSOCK_OP_REQUEST;
	if (d->n_orphan == ORPHAN_MAX)
		return; /* the guest times out instead */
	d->orphan[d->n_orphan++] = (struct vsock_orphan){ .gport = h->src_port,
							  .pcid = (uint32_t)h->dst_cid,
							  .pport = h->dst_port,
							  .type = h->type };
}

void
vsock__hdr(const struct vsock_conn *c, struct vsock_hdr *h, uint16_t op)
{
	*h = (struct vsock_hdr){ .src_cid = c->pcid, .dst_cid = c->d->cid, .src_port = c->pport,
				 .dst_port = c->gport, .type = (uint16_t)(c->type == SOCK_STREAM
									  ? VSOCK_TYPE_STREAM
									  : VSOCK_TYPE_SEQPACKET),
				 .op = op };
}

static uint32_t
orphan_packet(struct vsock_dev *d, const struct virtq_elem *e)
{
	struct vsock_orphan *o = &d->orphan[--d->n_orphan];
	struct vsock_hdr h = { .src_cid = o->pcid, .dst_cid = d->cid, .src_port = o->pport,
			       .dst_port = o->gport, .type = o->type, .op = VSOCK_OP_RST };

	return (uint32_t)virtq_write(e, 0, &h, sizeof(h));
}

/*
 * More work than one round: make the queue's kick readable again, so that
 * the loop comes back to it after the sources that are ready now.
 */
static bool
come_back(struct vsock_dev *d, unsigned q)
{
	uint64_t one = 1;

	return d->kick[q].src.fd >= 0 && write(d->kick[q].src.fd, &one, sizeof(one)) == sizeof(one);
}

/* Fill the guest's receive buffers from what is owed, in turn. */
void
vsock__pump(struct vsock_dev *d)
{
	struct virtq *q = &d->vq[VSOCK_Q_RX];
	struct vsock_conn *c = NULL;
	struct virtq_elem e;
	unsigned turn = 0, sent = 0;
	bool gone = false;
	uint32_t n;
	int r;

	if (!d->vq_on[VSOCK_Q_RX] || d->in_pump || !dev_up(d))
		return;
	d->in_pump = true; /* what the connections do may call back in here */
	for (;;) {
		if (!c && !d->n_orphan) {
			c = ready_pop(d);
			turn = 0;
			if (!c)
				break;
		}
		if (c && !vsock__owes(c)) {
			vsock__idle(c); /* sleep on its queue pair, or back in line */
			c = NULL;
			continue;
		}
		r = virtq_pop(q, &e);
		if (r <= 0) {
			if (c)
				vsock__ready(c); /* its turn again when buffers come */
			if (r == 0) {
				d->st.rx_no_buffers++;
				if (virtq_enable_kicks(q)) {
					c = NULL;
					continue; /* buffers arrived meanwhile */
				}
			}
			break;
		}
		if (e.in_len < sizeof(struct vsock_hdr) || e.nout) {
			virtq_push(q, e.head, 0);
			q->why = "receive buffer too small or device-readable";
			if (c)
				vsock__ready(c);
			break;
		}
		n = c ? vsock__to_guest(c, &e, &gone) : orphan_packet(d, &e);
		virtq_push(q, e.head, n); /* n == 0 cannot happen after owes(); harmless */
		d->st.to_guest_pkts++;
		if (c && (gone || ++turn == TURN_PKTS)) {
			if (!gone)
				vsock__ready(c); /* back of the line */
			c = NULL;
		}
		if (++sent == ROUND_PKTS && come_back(d, VSOCK_Q_RX)) {
			if (c)
				vsock__ready(c);
			break;
		}
	}
	d->in_pump = false;
	q->call = vhu_conn_ring(d->vhu, VSOCK_Q_RX)->call;
	virtq_flush(q);
	if (virtq_broken(q))
		queue_broken(d, VSOCK_Q_RX);
}

static void
send_reset_event(struct vsock_dev *d)
{
	struct virtq *q = &d->vq[VSOCK_Q_EVENT];
	struct vsock_event ev = { .id = VSOCK_EVENT_TRANSPORT_RESET };
	struct virtq_elem e;
	int r;

	if (!d->reset_event || !d->vq_on[VSOCK_Q_EVENT] || !dev_up(d))
		return;
	while ((r = virtq_pop(q, &e)) == 0)
		if (!virtq_enable_kicks(q))
			return; /* when the guest gives an event buffer */
	if (r < 0) {
		queue_broken(d, VSOCK_Q_EVENT);
		return;
	}
	virtq_push(q, e.head, (uint32_t)virtq_write(&e, 0, &ev, sizeof(ev)));
	d->reset_event = false;
	q->call = vhu_conn_ring(d->vhu, VSOCK_Q_EVENT)->call;
	virtq_flush(q);
}

/* ---------------------------------------------------------------------- */
/* From the guest */

static void
tx_drain(struct vsock_dev *d)
{
	struct virtq *q = &d->vq[VSOCK_Q_TX];
	struct virtq_elem e;
	struct vsock_hdr h;
	const char *why;
	unsigned n = 0, done = 0;
	int r;

	if (!dev_up(d))
		return;
	for (;;) {
		while (n < TX_BATCH && (r = virtq_pop(q, &e)) == 1) {
			n++;
			why = "packet shorter than its header";
			if (virtq_read(&e, 0, &h, sizeof(h)) < sizeof(h) ||
			    vsock_hdr_check(&h, d->cid, e.out_len - sizeof(h), &why)) {
				d->st.proto_errors++;
				log_rl(LOG_LVL_WARN, "vm %s (cid %u): bad packet: %s", d->name,
				       d->cid, why);
			} else {
				d->st.from_guest_pkts++;
				vsock__from_guest(d, &h, &e);
				if (!dev_up(d))
					return; /* the frontend was dropped meanwhile */
			}
			virtq_push(q, e.head, 0);
		}
		if (virtq_broken(q)) {
			queue_broken(d, VSOCK_Q_TX);
			return;
		}
		q->call = vhu_conn_ring(d->vhu, VSOCK_Q_TX)->call;
		virtq_flush(q);
		if (n < TX_BATCH && !virtq_enable_kicks(q))
			break;
		done += n;
		n = 0;
		if (done >= ROUND_PKTS && come_back(d, VSOCK_Q_TX))
			break;
	}
	vsock__pump(d);
}

static void
kick_readable(struct loop_src *s, uint32_t events)
{
	struct vsock_kick *k = (struct vsock_kick *)s;
	struct vsock_dev *d = k->d;
	uint64_t v;

	(void)events;
	if (read(s->fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		return;
	if (!d->vq_on[k->q] || !dev_up(d))
		return;
	if (k->q == VSOCK_Q_TX)
		tx_drain(d);
	else if (k->q == VSOCK_Q_RX)
		vsock__pump(d);
	else
		send_reset_event(d);
}

/* ---------------------------------------------------------------------- */
/* vhost-user device operations */

static int
dev_get_config(void *dev, uint32_t off, void *buf, uint32_t len)
{
	struct vsock_dev *d = dev;
	uint64_t cfg[1] = { d->cid }; /* struct virtio_vsock_config: le64 guest_cid */

	if (off > sizeof(cfg) || len > sizeof(cfg) - off)
		return -EINVAL;
	memcpy(buf, (uint8_t *)cfg + off, len);
	return 0;
}

static void
dev_ring_started(void *dev, struct vhu_conn *c, uint32_t i)
{
	struct vsock_dev *d = dev;
	const struct vhu_ring *r = vhu_conn_ring(c, i);
	struct vsock_kick *k = &d->kick[i];

	virtq_init(&d->vq[i], vhu_conn_mem(c), r->desc, r->avail, r->used, (uint16_t)r->num,
		   r->last_avail, vhu_conn_features(c), r->call);
	d->vq_on[i] = true;
	k->src.fd = r->kick;
	if (k->src.fd >= 0 && loop_add(d->loop, &k->src, EPOLLIN) < 0)
		k->src.fd = -1;
	/* Whatever the guest queued before we looked. */
	if (i == VSOCK_Q_TX)
		tx_drain(d);
	else if (i == VSOCK_Q_RX)
		vsock__pump(d);
	else
		send_reset_event(d);
}

static void
dev_ring_stopped(void *dev, struct vhu_conn *c, uint32_t i, uint16_t *last_avail)
{
	struct vsock_dev *d = dev;

	(void)c;
	kick_unwatch(d, i);
	if (d->vq_on[i])
		*last_avail = virtq_last_avail(&d->vq[i]);
	d->vq_on[i] = false;
}

static const struct vhu_device_ops vsock_ops = {
	.features = dev_features,
	.queues = VSOCK_QUEUES,
	.get_config = dev_get_config,
	.ring_started = dev_ring_started,
	.ring_stopped = dev_ring_stopped,
};

static void
frontend_readable(struct loop_src *s, uint32_t events)
{
	struct vsock_dev *d = (struct vsock_dev *)((char *)s - offsetof(struct vsock_dev, usrc));
	int err;

	(void)events;
	if (!d->vhu)
		return; /* dropped earlier in this loop round */
	d->in_vhu = true;
	err = vhu_conn_process(d->vhu);
	d->in_vhu = false;
	/* Rare messages (setup), each of which may change what a restart needs. */
	loop_mark_dirty(d->loop);
	if (d->drop_pending)
		dev_detach(d, NULL); /* a ring broke while the server ran */
	else if (err == -ENOTCONN)
		dev_detach(d, "frontend closed the connection");
	else if (err) {
		char why[160];

		snprintf(why, sizeof(why), "vhost-user: %s", strerror(-err));
		dev_detach(d, why);
	}
}

/* ---------------------------------------------------------------------- */
/* Deadlines */

static void
timer_fired(struct loop_src *s, uint32_t events)
{
	struct vsock_dev *d = (struct vsock_dev *)((char *)s - offsetof(struct vsock_dev, timer));
	uint64_t v;

	(void)events;
	if (read(s->fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		return;
	d->timer_armed = false;
	vsock__expire(d, clock_ns());
	vsock__pump(d);
}

/* Tick every 100 ms while some connection has a deadline (vsock__expire re-arms). */
void
vsock__arm_timer(struct vsock_dev *d)
{
	struct itimerspec it = { .it_value = { .tv_nsec = 100 * 1000000 } };

	if (d->timer_armed || d->timer.fd < 0)
		return;
	if (timerfd_settime(d->timer.fd, 0, &it, NULL) == 0)
		d->timer_armed = true;
}

/* ---------------------------------------------------------------------- */
/* Public */

int
vsock_dev_new(struct loop *loop, uint32_t cid, const char *name, const struct vsock_fabric *fab,
	      struct vsock_dev **out)
{
	struct vsock_dev *d = calloc(1, sizeof(*d));
	int err;

	if (!d)
		return -ENOMEM;
	d->loop = loop;
	d->cid = cid;
	d->fab = fab;
	snprintf(d->name, sizeof(d->name), "%s", name);
	d->usrc.fd = -1;
	d->usrc.fn = frontend_readable;
	d->hyb.fd = -1;
	for (unsigned q = 0; q < VSOCK_QUEUES; q++)
		d->kick[q] = (struct vsock_kick){ .src = { .fd = -1, .fn = kick_readable },
						  .d = d,
						  .q = q };
	d->timer.fn = timer_fired;
	d->timer.fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (d->timer.fd < 0)
		err = -errno;
	else if (!(err = vsock__table_init(d)) && loop_add(loop, &d->timer, EPOLLIN) < 0) {
		err = -errno;
		vsock__table_fini(d);
	}
	if (err)
		goto fail;
	*out = d;
	return 0;
fail:
	if (d->timer.fd >= 0)
		close(d->timer.fd);
	free(d);
	return err;
}

void
vsock_dev_free(struct vsock_dev *d)
{
	if (!d)
		return;
	dev_detach(d, NULL);
	vsock__table_free(d, -ECONNRESET);
	vsock__hybrid_free(d); /* after the table: offers in flight free their bridges */
	loop_del(d->loop, &d->timer);
	close(d->timer.fd);
	vsock__table_fini(d); /* the table, the reaper and what waits for it */
	free(d);
}

int
vsock_dev_attach(struct vsock_dev *d, int sock)
{
	int err;

	dev_detach(d, d->vhu ? "a new frontend connected" : NULL);
	err = vhu_conn_new(sock, &vsock_ops, d, &d->vhu);
	if (err)
		return err;
	d->usrc.fd = sock;
	if (loop_add(d->loop, &d->usrc, EPOLLIN) < 0) {
		err = -errno;
		vhu_conn_free(d->vhu); /* closes @sock: the caller's copy is gone either way */
		d->vhu = NULL;
		d->usrc.fd = -1;
		return err;
	}
	d->why[0] = 0;
	/* Connections from before (a daemon restart) are gone: tell the guest. */
	d->reset_event = true;
	loop_mark_dirty(d->loop);
	return 0;
}

bool
vsock_dev_save(const struct vsock_dev *d, struct vhu_saved *s)
{
	if (!d->vhu)
		return false;
	vhu_conn_save(d->vhu, s);
	for (unsigned q = 0; q < VSOCK_QUEUES; q++)
		if (d->vq_on[q])
			s->rings[q].last_avail = virtq_last_avail(&d->vq[q]);
	return true;
}

int
vsock_dev_restore(struct vsock_dev *d, const struct vhu_saved *s)
{
	int err;

	dev_detach(d, d->vhu ? "restored from a saved state" : NULL);
	/* Before the rings start: the guest learns at once that connections are gone. */
	d->reset_event = true;
	d->in_vhu = true; /* the rings start in there: one found broken is dropped below */
	err = vhu_conn_restore(s, &vsock_ops, d, &d->vhu);
	d->in_vhu = false;
	if (err)
		return err;
	d->usrc.fd = s->sock;
	if (loop_add(d->loop, &d->usrc, EPOLLIN) < 0) {
		err = -errno;
		dev_detach(d, "cannot watch the restored frontend");
		return err;
	}
	if (d->drop_pending)
		dev_detach(d, NULL);
	loop_mark_dirty(d->loop);
	return 0;
}

bool
vsock_dev_attached(const struct vsock_dev *d)
{
	return dev_up(d);
}

uint32_t
vsock_dev_cid(const struct vsock_dev *d)
{
	return d->cid;
}

const char *
vsock_dev_name(const struct vsock_dev *d)
{
	return d->name;
}

void
vsock_dev_stats(const struct vsock_dev *d, struct vsock_stats *st)
{
	*st = d->st;
}

const char *
vsock_dev_why(const struct vsock_dev *d)
{
	return d->why[0] ? d->why : NULL;
}
