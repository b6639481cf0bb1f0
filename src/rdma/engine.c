/* SPDX-License-Identifier: MIT */
/*
 * The RoCE v2 engine (engine.h): QPs whose peer is on another host, on the
 * switches' dataplane thread. Frames for a bound VMkernel adapter's IP on
 * UDP 4791 are copied into a small queue when the switch delivers them
 * (the switch is in the middle of a batch then) and handled at the next
 * reng_poll(); the engine's own frames enter the switch from the adapter's
 * port there too. Per QP: the application's records (work requests,
 * receives) are resolved against its memory regions and given to the RC
 * state machine; its completions are written back as records, in order.
 * The region of every buffer a work request names is referenced until
 * the request completes, so that a deregistration cannot unmap it under
 * the engine.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "common/log.h"
#include "engine.h"
#include "switch/vmk.h"
#include "switch/vswitch.h"
#include "vmfabric/qp.h"

#define RX_SLOTS 256

struct wctx { /* what a posted request holds until it completes */
	void *ref[RENG_MAX_SGE];
	int nref;
	uint8_t *inl;
	bool signaled;
};

struct reng_qp {
	uint32_t qpn;
	struct rc_qp *rc;
	struct reng_path path;
	uint32_t pd;
	unsigned qp_access;
	const _Atomic uint32_t *access_live; /* the key page's, when given */
	struct qp *ring;
	int ring_fd; /* in the dataplane's epoll set */
	const struct reng_mem_ops *mem;
	void *owner;
	struct reng *e;
	struct wctx *s, *r; /* FIFOs in posting order */
	uint32_t s_cap, s_head, s_n, r_cap, r_head, r_n;
	uint16_t ip_id;
	unsigned mtu;
	bool broken; /* the application's end went away or broke the ring */
};

struct rx_slot {
	size_t len;
	uint8_t buf[ROCE_FRAME_MAX];
};

struct reng {
	struct reng_qp **qp;
	size_t nqp, cap;
	int ep;
	int64_t now;
	struct rx_slot *rx;
	unsigned rx_head, rx_n;
	struct rx_slot held; /* reordering: a frame kept back behind the next */
	bool has_held;
	struct reng_faults f;
	uint64_t rng;
	struct reng_stats st;
	struct rc_stats gone; /* counters of QPs removed */
};

/* ---------------------------------------------------------------------- */

static void
faults_from_env(struct reng_faults *f)
{
	const char *s = getenv("VMFABRIC_ROCE_FAULTS");
	char buf[128], *save, *tok;

	*f = (struct reng_faults){ .seed = 1 };
	if (!s)
		return;
	snprintf(buf, sizeof(buf), "%s", s);
	for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		unsigned long v = strtoul(strchr(tok, '=') ? strchr(tok, '=') + 1 : "0", NULL, 10);

		if (!strncmp(tok, "loss=", 5))
			f->loss = v > 100 ? 100 : (unsigned)v;
		else if (!strncmp(tok, "dup=", 4))
			f->dup = v > 100 ? 100 : (unsigned)v;
		else if (!strncmp(tok, "reorder=", 8))
			f->reorder = v > 100 ? 100 : (unsigned)v;
		else if (!strncmp(tok, "seed=", 5))
			f->seed = v ? v : 1;
	}
	log_warn("roce: injecting faults on receipt: loss %u%%, dup %u%%, reorder %u%%", f->loss,
		 f->dup, f->reorder);
}

int
reng_create(struct reng **out)
{
	struct reng *e = calloc(1, sizeof(*e));

	if (!e || !(e->rx = calloc(RX_SLOTS, sizeof(*e->rx)))) {
		free(e);
		return -ENOMEM;
	}
	e->ep = -1;
	faults_from_env(&e->f);
	e->rng = e->f.seed;
	*out = e;
	return 0;
}

void
reng_destroy(struct reng *e)
{
	if (!e)
		return;
	while (e->nqp)
		reng_qp_remove(e, e->qp[e->nqp - 1]->qpn);
	free(e->qp);
	free(e->rx);
	free(e);
}

void
reng_set_epoll(struct reng *e, int ep)
{
	e->ep = ep;
}

/* ---------------------------------------------------------------------- */
/* Callbacks of the RC state machine */

static int
q_xmit(void *ctx, const struct roce_ib *ib)
{
	struct reng_qp *q = ctx;
	struct roce_frame f = { .ib = *ib, .ttl = 64, .ipv6 = q->path.ipv6,
				.udp_csum = q->path.ipv6, .src_port = q->path.src_port };
	static uint8_t buf[ROCE_FRAME_MAX]; /* the dataplane thread's only */
	struct iovec io;
	ssize_t n;

	if (!q->path.vmk)
		return -ENETDOWN; /* its adapter went: lost on the wire */
	memcpy(f.dst_mac, q->path.dst_mac, 6);
	memcpy(f.src_mac, q->path.src_mac, 6);
	memcpy(f.src_ip, q->path.src_ip, 16);
	memcpy(f.dst_ip, q->path.dst_ip, 16);
	f.ip_id = q->ip_id++;
	n = roce_build(&f, q->mtu, buf, sizeof(buf), NULL);
	if (n < 0)
		return (int)n; /* dropped as if lost: the peer asks again */
	io = (struct iovec){ buf, (size_t)n };
	vsw_input(q->path.sw, &q->path.vmk->p, &io, 1, (size_t)n, q->e->now);
	q->e->st.frames_out++;
	return 0;
}

static int
q_remote_mem(void *ctx, uint32_t rkey, uint64_t va, uint32_t len, unsigned access, void **out)
{
	struct reng_qp *q = ctx;
	uint8_t *p;
	void *ref;
	int err;

	unsigned allowed = q->access_live ? atomic_load_explicit(q->access_live, memory_order_relaxed)
					  : q->qp_access;

	if ((allowed & access) != access)
		return -EACCES;
	err = q->mem->get(q->owner, rkey, q->pd, va, len, access, &p, &ref);
	if (err)
		return -EACCES;
	/* The owner's lock is held while the QP runs: the mapping stays until it is released. */
	q->mem->put(q->owner, ref);
	*out = p;
	return 0;
}

static void
wctx_release(struct reng_qp *q, struct wctx *w)
{
	for (int i = 0; i < w->nref; i++)
		q->mem->put(q->owner, w->ref[i]);
	w->nref = 0;
	free(w->inl);
	w->inl = NULL;
}

static void
emit_wc(struct reng_qp *q, const struct reng_rec_wc *wc)
{
	struct iovec io = { (void *)(uintptr_t)wc, sizeof(*wc) };

	/* The ring holds every request's completion: full means the application broke it. */
	if (qp_msg_sendv(q->ring, &io, 1, QP_DONTWAIT | QP_MORE) < 0)
		q->broken = true;
}

static void
q_complete(void *ctx, const struct rc_cqe *c)
{
	struct reng_qp *q = ctx;
	struct reng_rec_wc wc = { .wr_id = c->wr_id, .status = (uint32_t)c->status,
				  .opcode = c->opcode, .byte_len = c->byte_len, .imm = c->imm,
				  .recv = c->recv, .with_imm = c->with_imm,
				  .solicited = c->solicited };
	struct wctx *w;

	if (c->recv) {
		if (!q->r_n)
			return;
		w = &q->r[q->r_head];
		q->r_head = (q->r_head + 1) % q->r_cap;
		q->r_n--;
		wc.signaled = 1;
	} else {
		if (!q->s_n)
			return;
		w = &q->s[q->s_head];
		q->s_head = (q->s_head + 1) % q->s_cap;
		q->s_n--;
		wc.signaled = w->signaled;
	}
	wctx_release(q, w);
	emit_wc(q, &wc);
}

static const struct rc_ops q_ops = { .xmit = q_xmit, .remote_mem = q_remote_mem,
				     .complete = q_complete };

/* ---------------------------------------------------------------------- */
/* QPs */

int
reng_qp_add(struct reng *e, const struct reng_qp_params *p, uint32_t qpn)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
	struct reng_qp *q;
	int err = -ENOMEM;

	if (e->nqp == e->cap) {
		size_t cap = e->cap ? e->cap * 2 : 16;
		struct reng_qp **t = realloc(e->qp, cap * sizeof(*t));

		if (!t)
			return -ENOMEM;
		e->qp = t;
		e->cap = cap;
	}
	if (!(q = calloc(1, sizeof(*q))))
		return -ENOMEM;
	q->qpn = qpn;
	q->e = e;
	q->path = p->path;
	q->pd = p->pd;
	q->qp_access = p->qp_access;
	q->access_live = p->access_live;
	q->mtu = p->rc.mtu;
	q->mem = p->mem;
	q->owner = p->owner;
	q->s_cap = p->rc.sq_depth;
	q->r_cap = p->rc.rq_depth;
	q->ring_fd = -1;
	q->s = calloc(q->s_cap, sizeof(*q->s));
	q->r = calloc(q->r_cap, sizeof(*q->r));
	if (!q->s || !q->r || (err = rc_create(&p->rc, &q_ops, q, &q->rc)))
		goto fail;
	q->ring = p->ring;
	qp_set_mode(q->ring, QP_NONBLOCK);
	if (e->ep >= 0 && ((q->ring_fd = qp_poll_fd(q->ring)) < 0 ||
			   epoll_ctl(e->ep, EPOLL_CTL_ADD, q->ring_fd, &ev) < 0)) {
		err = q->ring_fd < 0 ? q->ring_fd : -errno;
		q->ring = NULL;
		goto fail;
	}
	e->qp[e->nqp++] = q;
	return 0;
fail:
	rc_destroy(q->rc);
	free(q->s);
	free(q->r);
	free(q);
	return err;
}

static void
add_stats(struct rc_stats *a, const struct rc_stats *b)
{
	const uint64_t *s = (const uint64_t *)b;
	uint64_t *d = (uint64_t *)a;

	for (size_t i = 0; i < sizeof(*a) / sizeof(uint64_t); i++)
		d[i] += s[i];
}

void
reng_qp_remove(struct reng *e, uint32_t qpn)
{
	for (size_t i = 0; i < e->nqp; i++) {
		struct reng_qp *q = e->qp[i];
		struct rc_stats st;

		if (q->qpn != qpn)
			continue;
		rc_get_stats(q->rc, &st);
		add_stats(&e->gone, &st);
		q->mem->lock(q->owner);
		rc_destroy(q->rc);
		while (q->s_n--) {
			wctx_release(q, &q->s[q->s_head]);
			q->s_head = (q->s_head + 1) % q->s_cap;
		}
		while (q->r_n--) {
			wctx_release(q, &q->r[q->r_head]);
			q->r_head = (q->r_head + 1) % q->r_cap;
		}
		q->mem->unlock(q->owner);
		if (q->ring_fd >= 0 && e->ep >= 0)
			epoll_ctl(e->ep, EPOLL_CTL_DEL, q->ring_fd, NULL);
		qp_close(q->ring);
		free(q->s);
		free(q->r);
		free(q);
		e->qp[i] = e->qp[--e->nqp];
		return;
	}
}

static struct reng_qp *
qp_by_num(const struct reng *e, uint32_t qpn)
{
	for (size_t i = 0; i < e->nqp; i++)
		if (e->qp[i]->qpn == qpn)
			return e->qp[i];
	return NULL;
}

/* ---------------------------------------------------------------------- */
/* Records from the application */

/* The record's buffers as iovecs, each region referenced in @w. */
static int
resolve(struct reng_qp *q, const struct reng_sge *sg, uint32_t n, unsigned access,
	struct iovec *iov, struct wctx *w)
{
	for (uint32_t i = 0; i < n; i++) {
		uint8_t *p = NULL;

		if (sg[i].length && q->mem->get(q->owner, sg[i].lkey, q->pd, sg[i].addr,
						sg[i].length, access, &p, &w->ref[w->nref]))
			return -EACCES;
		if (sg[i].length)
			w->nref++;
		iov[i] = (struct iovec){ p, sg[i].length };
	}
	return 0;
}

/* A request that could not even be posted: the QP errs, then this one completes. */
static void
fail_now(struct reng_qp *q, const struct reng_rec_wr *h, int status, bool recv)
{
	struct reng_rec_wc wc = { .wr_id = h->wr_id, .status = (uint32_t)status,
				  .opcode = recv ? RC_WC_RECV : h->opcode, .recv = recv,
				  .signaled = 1 };

	rc_set_error(q->rc);
	emit_wc(q, &wc);
}

/* One record (@len bytes at @b, a private copy): 0, or -ENOMEM to try it again later. */
static int
take_record(struct reng_qp *q, const uint8_t *b, size_t len)
{
	struct reng_rec_wr h;
	const struct reng_sge *sg = (const struct reng_sge *)(const void *)(b + sizeof(h));
	struct iovec iov[RENG_MAX_SGE];
	struct wctx w = { 0 };
	bool recv;
	int err;

	if (len < sizeof(h)) {
		q->broken = true;
		return 0;
	}
	memcpy(&h, b, sizeof(h));
	if (h.kind == RENG_REC_ERR) {
		rc_set_error(q->rc);
		return 0;
	}
	recv = h.kind == RENG_REC_RECV;
	if ((h.kind != RENG_REC_SEND && !recv) || h.num_sge > RENG_MAX_SGE ||
	    h.inline_len > RENG_MAX_INLINE || (h.inline_len && (h.num_sge || recv)) ||
	    len != sizeof(h) + h.num_sge * sizeof(*sg) + h.inline_len ||
	    (!recv && h.opcode > RC_WR_FETCH_ADD)) {
		q->broken = true; /* a library that writes this is not ours */
		return 0;
	}
	if (recv ? q->r_n == q->r_cap : q->s_n == q->s_cap)
		return -ENOMEM;
	if (h.inline_len) {
		if (!(w.inl = malloc(h.inline_len)))
			return -ENOMEM;
		memcpy(w.inl, b + sizeof(h), h.inline_len);
		iov[0] = (struct iovec){ w.inl, h.inline_len };
		err = 0;
	} else {
		/* READ and atomics write into the local buffers; receives too. */
		unsigned access = recv || h.opcode == RC_WR_READ || h.opcode >= RC_WR_CMP_SWP
					  ? RENG_LOCAL_WRITE
					  : 0;

		err = resolve(q, sg, h.num_sge, access, iov, &w);
	}
	if (!err && recv) {
		struct rc_rqe r = { .wr_id = h.wr_id, .sg = iov, .nsg = (int)h.num_sge };

		err = rc_post_recv(q->rc, &r);
	} else if (!err) {
		struct rc_wqe s = { .wr_id = h.wr_id, .opcode = (uint8_t)h.opcode,
				    .signaled = true, /* every completion goes back: the SQ's slots */
				    .solicited = !!(h.flags & RENG_F_SOLICITED), .imm = h.imm,
				    .remote_va = h.remote_va, .rkey = h.rkey,
				    .compare_add = h.compare_add, .swap = h.swap, .sg = iov,
				    .nsg = h.inline_len ? 1 : (int)h.num_sge };

		w.signaled = !!(h.flags & RENG_F_SIGNALED);
		err = rc_post_send(q->rc, &s);
	}
	if (err) {
		wctx_release(q, &w);
		if (err == -ENOMEM)
			return -ENOMEM;
		fail_now(q, &h, err == -EACCES ? RC_WC_LOC_PROT_ERR : RC_WC_LOC_QP_OP_ERR, recv);
		return 0;
	}
	if (recv) {
		q->r[(q->r_head + q->r_n) % q->r_cap] = w;
		q->r_n++;
	} else {
		q->s[(q->s_head + q->s_n) % q->s_cap] = w;
		q->s_n++;
	}
	return 0;
}

static int
drain_records(struct reng_qp *q)
{
	uint8_t b[sizeof(struct reng_rec_wr) + RENG_MAX_SGE * sizeof(struct reng_sge) +
		  RENG_MAX_INLINE];
	struct iovec v[2];
	int n = 0;

	while (!q->broken && n < 64) {
		ssize_t len = qp_msg_peek(q->ring, v);
		size_t k;

		if (len < 0) {
			if (len != -EAGAIN)
				q->broken = true; /* gone: it idles until its verbs context closes */
			break;
		}
		if ((size_t)len > sizeof(b)) {
			q->broken = true;
			break;
		}
		/* Copied once: the application may still write its ring. */
		k = v[0].iov_len < (size_t)len ? v[0].iov_len : (size_t)len;
		memcpy(b, v[0].iov_base, k);
		memcpy(b + k, v[1].iov_base, (size_t)len - k);
		if (take_record(q, b, (size_t)len) == -ENOMEM)
			break;
		qp_msg_consume(q->ring);
		n++;
	}
	return n;
}

/* ---------------------------------------------------------------------- */
/* Frames */

/* The destination QP of a RoCE v2 frame, read before parsing (the path MTU is the QP's). */
static bool
peek_dqpn(const uint8_t *f, size_t len, uint32_t *dqpn)
{
	size_t at = 14, ip;
	uint16_t type;

	if (len < 14)
		return false;
	type = (uint16_t)(f[12] << 8 | f[13]);
	if (type == 0x8100 && len >= 18) {
		type = (uint16_t)(f[16] << 8 | f[17]);
		at = 18;
	}
	if (type == 0x0800 && len > at && (f[at] >> 4) == 4) {
		if (f[at + 9] != 17)
			return false;
		ip = (size_t)(f[at] & 15) * 4;
	} else if (type == 0x86dd && len > at + 6) {
		if (f[at + 6] != 17)
			return false;
		ip = 40;
	} else {
		return false;
	}
	at += ip; /* UDP */
	if (len < at + 8 + 12 || (f[at + 2] << 8 | f[at + 3]) != ROCE_UDP_PORT)
		return false;
	at += 8; /* BTH */
	*dqpn = (uint32_t)f[at + 5] << 16 | (uint32_t)f[at + 6] << 8 | f[at + 7];
	return true;
}

bool
reng_input(struct reng *e, struct vmk_port *vmk, const struct iovec *iov, int iovcnt,
	   size_t len)
{
	uint8_t head[128];
	size_t k = 0;
	uint32_t dqpn;
	struct rx_slot *s;

	(void)vmk;
	if (!e->nqp)
		return false; /* no RoCE QP: the host stack's, without a look */
	for (int i = 0; i < iovcnt && k < sizeof(head); i++) {
		size_t c = iov[i].iov_len < sizeof(head) - k ? iov[i].iov_len : sizeof(head) - k;

		memcpy(head + k, iov[i].iov_base, c);
		k += c;
	}
	if (!peek_dqpn(head, k, &dqpn))
		return false;
	/* UDP 4791 to the adapter: the engine's, whatever becomes of it. */
	if (len > ROCE_FRAME_MAX || e->rx_n == RX_SLOTS) {
		e->st.bad_frames++;
		return true;
	}
	s = &e->rx[(e->rx_head + e->rx_n) % RX_SLOTS];
	k = 0;
	for (int i = 0; i < iovcnt; i++) {
		memcpy(s->buf + k, iov[i].iov_base, iov[i].iov_len);
		k += iov[i].iov_len;
	}
	s->len = len;
	e->rx_n++;
	return true;
}

static uint32_t
rnd(struct reng *e)
{
	e->rng ^= e->rng << 13;
	e->rng ^= e->rng >> 7;
	e->rng ^= e->rng << 17;
	return (uint32_t)(e->rng % 100);
}

static void
deliver(struct reng *e, const uint8_t *buf, size_t len)
{
	struct roce_frame f;
	struct reng_qp *q;
	uint32_t dqpn;

	e->st.frames_in++;
	if (!peek_dqpn(buf, len, &dqpn) || !(q = qp_by_num(e, dqpn))) {
		e->st.no_qp++;
		return;
	}
	if (roce_parse(buf, len, q->mtu, &f, NULL) ||
	    memcmp(f.dst_ip, q->path.src_ip, q->path.ipv6 ? 16 : 4) ||
	    memcmp(f.src_ip, q->path.dst_ip, q->path.ipv6 ? 16 : 4)) {
		e->st.bad_frames++;
		return;
	}
	q->mem->lock(q->owner);
	rc_input(q->rc, &f.ib, e->now);
	q->mem->unlock(q->owner);
}

/* The next received frame, through the injected faults. */
static int
rx_run(struct reng *e)
{
	int n = 0;

	while (e->rx_n) {
		/*
		 * The slot stays taken while its frame is handled: what the QPs
		 * send may come back to this engine (two adapters on one
		 * switch) and be queued meanwhile, never over it.
		 */
		struct rx_slot *s = &e->rx[e->rx_head];
		bool delivered = false;

		n++;
		if (e->f.loss && rnd(e) < e->f.loss) {
			e->st.faults_dropped++;
		} else if (e->f.reorder && !e->has_held && rnd(e) < e->f.reorder) {
			e->held.len = s->len;
			memcpy(e->held.buf, s->buf, s->len);
			e->has_held = true;
		} else {
			deliver(e, s->buf, s->len);
			if (e->f.dup && rnd(e) < e->f.dup) {
				e->st.faults_duped++;
				deliver(e, s->buf, s->len);
			}
			delivered = true;
		}
		e->rx_head = (e->rx_head + 1) % RX_SLOTS;
		e->rx_n--;
		if (delivered && e->has_held) { /* the frame held back goes behind this one */
			e->has_held = false;
			deliver(e, e->held.buf, e->held.len);
		}
	}
	if (!n && e->has_held) { /* nothing came behind it: let it go */
		e->has_held = false;
		deliver(e, e->held.buf, e->held.len);
		n++;
	}
	return n;
}

int
reng_poll(struct reng *e, int64_t now)
{
	int work;

	e->now = now;
	work = rx_run(e);
	for (size_t i = 0; i < e->nqp; i++) {
		struct reng_qp *q = e->qp[i];
		int n;

		q->mem->lock(q->owner);
		n = q->broken ? 0 : drain_records(q);
		if (n || rc_next_deadline(q->rc) <= now)
			rc_poll(q->rc, now);
		q->mem->unlock(q->owner);
		qp_flush(q->ring);
		work += n;
	}
	return work;
}

bool
reng_arm(struct reng *e, int64_t *deadline)
{
	if (e->rx_n || e->has_held)
		return true;
	for (size_t i = 0; i < e->nqp; i++) {
		struct reng_qp *q = e->qp[i];
		int64_t t = rc_next_deadline(q->rc);

		if (!q->broken && (qp_arm(q->ring, QP_EV_READ) & QP_EV_READ))
			return true;
		if (t < *deadline)
			*deadline = t;
	}
	return false;
}

void
reng_woken(struct reng *e)
{
	for (size_t i = 0; i < e->nqp; i++)
		qp_ack(e->qp[i]->ring);
}

void
reng_vmk_gone(struct reng *e, struct vmk_port *vmk)
{
	for (size_t i = 0; i < e->nqp; i++) {
		struct reng_qp *q = e->qp[i];

		if (q->path.vmk != vmk)
			continue;
		q->path.vmk = NULL; /* q_xmit drops from now on */
		q->mem->lock(q->owner);
		rc_set_error(q->rc);
		q->mem->unlock(q->owner);
		qp_flush(q->ring);
	}
}

void
reng_get_stats(const struct reng *e, struct reng_stats *out)
{
	*out = e->st;
	out->rc = e->gone;
	out->qps = (unsigned)e->nqp;
	for (size_t i = 0; i < e->nqp; i++) {
		struct rc_stats st;

		rc_get_stats(e->qp[i]->rc, &st);
		add_stats(&out->rc, &st);
	}
}
