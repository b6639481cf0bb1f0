/* SPDX-License-Identifier: MIT */
/*
 * The one-host RDMA engine: RC work requests between two processes of one
 * host, executed by the initiator. One-sided operations (WRITE, READ,
 * atomics) are one copy (or one atomic instruction) on the target's
 * registered memory as the daemon let this QP map it: the target
 * application does nothing. Two-sided messages (SEND, and the immediate of
 * WRITE_WITH_IMM) go through the target QP's inbound ring, a queue pair of
 * records, into the receives the target posted when it polls its CQ.
 *
 * What the wire protocol of a real RC QP carries, this engine reads from
 * the target's key page: whether the target QP is in ERR (a responder in
 * ERR answers nothing: RETRY_EXC_ERR), how many receives it posted and how
 * large (no receive: the RNR wait and retry of the IBA, with the target's
 * RNR timer; a receive too small: REM_INV_REQ_ERR), which rkeys are valid.
 *
 * Threat model: the target's key page and the messages on our inbound ring
 * come from other processes. Slot and key indices are bounded, counts that
 * go backwards are taken as "nothing", a message header is copied out of
 * the ring before it is checked, and its length must match the record's.
 */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/shm.h"
#include "rdma/roce.h"
#include "verbs.h"

int
vrdma__shm_ring(struct vrdma_qp *qp, struct qp_fds *peer)
{
	int err = qp_create(QP_SIZE_MIN, VRDMA__RING, &qp->in, peer);

	if (!err)
		qp_set_mode(qp->in, QP_NONBLOCK);
	return err;
}

int
vrdma__shm_attach(struct vrdma_qp *qp)
{
	struct wire_rdma_qp w = { .qpn = qp->qpn };
	struct wire_msg rep;
	struct qp_fds f;
	void *page;
	int err;

	err = vrdma__rpc(qp->ctx, WIRE_RDMA_QP_ATTACH, &w, NULL, 0, &rep);
	if (err)
		return err;
	err = -EPROTO;
	if (w.out_slot >= WIRE_RDMA_QP_SLOTS)
		goto fail;
	if ((err = shm_map(rep.fds[4], sizeof(struct wire_rdma_page), 0, &page)))
		goto fail;
	if (((const struct wire_rdma_page *)page)->magic != WIRE_RDMA_MAGIC) {
		munmap(page, sizeof(struct wire_rdma_page));
		err = -EPROTO;
		goto fail;
	}
	f = (struct qp_fds){ rep.fds[0], rep.fds[1], rep.fds[2], rep.fds[3] };
	if ((err = qp_attach(&f, &qp->out))) {
		munmap(page, sizeof(struct wire_rdma_page));
		goto fail;
	}
	qp_set_mode(qp->out, QP_NONBLOCK);
	close(rep.fds[4]);
	qp->peer_page = page;
	qp->peer_slot = &qp->peer_page->slots[w.out_slot];
	qp->peer_gen = atomic_load_explicit(&qp->peer_slot->gen, memory_order_acquire);
	qp->peer_qpn = w.out_qpn;
	qp->attached = true;
	return 0;
fail:
	wire_msg_close_fds(&rep);
	return err;
}

void
vrdma__shm_detach(struct vrdma_qp *qp)
{
	vrdma__rmr_drop_all(qp);
	if (qp->out)
		qp_close(qp->out);
	if (qp->peer_page)
		munmap((void *)(uintptr_t)qp->peer_page, sizeof(struct wire_rdma_page));
	qp->out = NULL;
	qp->peer_page = NULL;
	qp->peer_slot = NULL;
	qp->attached = false;
	qp->recv_used = 0;
	qp->rnr_until = 0;
}

/* ---------------------------------------------------------------------- */
/* Send side */

/* The local buffers of @w: checked against their lkeys, total bytes in *@total. */
static int
local_sges(struct vrdma_qp *qp, const struct vrdma__swqe *w, unsigned access, uint64_t *total)
{
	*total = 0;
	if (w->inl_len) {
		*total = w->inl_len;
		return 0;
	}
	for (int i = 0; i < w->wr.num_sge; i++) {
		const struct vrdma_sge *s = &w->sge[i];

		if (s->length && !vrdma__lmr(qp->ctx, qp->pd, s->lkey, s->addr, s->length, access))
			return VRDMA_WC_LOC_PROT_ERR;
		*total += s->length;
	}
	return 0;
}

/* The peer MR @rkey if [va, va + len) lies in it and it allows @access. */
static const struct vrdma__rmr *
remote_mr(struct vrdma_qp *qp, uint32_t rkey, uint64_t va, uint64_t len, unsigned access)
{
	const struct vrdma__rmr *m = vrdma__rmr_get(qp, rkey);

	/* The responder QP must allow it too (its qp_access_flags). */
	if (!m || (m->access & access) != access ||
	    (atomic_load_explicit(&qp->peer_slot->qp_access, memory_order_relaxed) & access) != access)
		return NULL;
	if (va < m->va || va + len < va || va + len > m->va + m->len)
		return NULL;
	return m;
}

/* Copy between the local buffers of @w and the peer's memory at @va. */
static int
remote_copy(const struct vrdma__rmr *m, uint64_t va, const struct vrdma__swqe *w, bool to_remote)
{
	for (int i = 0; i < (w->inl_len ? 1 : w->wr.num_sge); i++) {
		uint8_t *local = w->inl_len ? (uint8_t *)(uintptr_t)w->inl
					    : (uint8_t *)(uintptr_t)w->sge[i].addr;
		uint64_t left = w->inl_len ? w->inl_len : w->sge[i].length, avail;

		while (left) {
			uint8_t *r = vrdma__rmr_at(m, va, &avail);
			uint64_t k = left < avail ? left : avail;

			if (!r)
				return VRDMA_WC_REM_ACCESS_ERR; /* the segments do not cover it */
			if (to_remote)
				memcpy(r, local, k);
			else
				memcpy(local, r, k);
			va += k, local += k, left -= k;
		}
	}
	return 0;
}

/*
 * A receive of the peer for the next message: 0, -EAGAIN (none posted: wait
 * out the RNR timer and ask again), or RNR_RETRY_EXC_ERR / REM_INV_REQ_ERR
 * (too small for @len when @check_len).
 */
static int
peer_receive(struct vrdma_qp *qp, uint64_t len, bool check_len)
{
	const struct wire_rdma_slot *s = qp->peer_slot;
	uint64_t posted = atomic_load_explicit(&s->recv_posted, memory_order_acquire);
	int64_t now;

	if (posted > qp->recv_used && posted - qp->recv_used <= WIRE_RDMA_RECV_RING) {
		qp->rnr_until = 0;
		if (check_len && len > s->recv_len[qp->recv_used % WIRE_RDMA_RECV_RING])
			return VRDMA_WC_REM_INV_REQ_ERR;
		return 0;
	}
	now = clock_ns();
	if (qp->rnr_until) {
		if (now < qp->rnr_until)
			return -EAGAIN;
		qp->rnr_tries++; /* a retry found no receive either */
	} else {
		qp->rnr_tries = 0; /* the first RNR NAK of this message */
	}
	if (qp->attr.rnr_retry != 7 && qp->rnr_tries >= qp->attr.rnr_retry)
		return VRDMA_WC_RNR_RETRY_EXC_ERR;
	qp->rnr_until = now + roce_rnr_timer_ns(s->min_rnr_timer);
	return -EAGAIN;
}

/* A message on the peer's ring: header then @w's data (SEND) or nothing. */
static int
push_msg(struct vrdma_qp *qp, const struct vrdma__swqe *w, uint8_t op, uint64_t len)
{
	struct vrdma__msg h = { .op = op,
				.solicited = !!(w->wr.send_flags & VRDMA_SEND_SOLICITED),
				.imm = w->wr.imm_data,
				.len = (uint32_t)len,
				.with_imm = w->wr.opcode != VRDMA_WR_SEND };
	struct iovec iov[1 + VRDMA__MAX_SGE] = { { &h, sizeof(h) } };
	int n = 1;
	ssize_t r;

	if (op == VRDMA__MSG_SEND) {
		if (w->inl_len)
			iov[n++] = (struct iovec){ (void *)(uintptr_t)w->inl, w->inl_len };
		else
			for (int i = 0; i < w->wr.num_sge; i++)
				if (w->sge[i].length)
					iov[n++] = (struct iovec){ (void *)(uintptr_t)w->sge[i].addr,
								   w->sge[i].length };
	}
	r = qp_msg_sendv(qp->out, iov, n, QP_DONTWAIT);
	if (r == -EAGAIN)
		return -EAGAIN;
	if (r == -EMSGSIZE)
		return VRDMA_WC_LOC_LEN_ERR;
	if (r < 0)
		return VRDMA_WC_RETRY_EXC_ERR; /* the peer is gone: nobody acknowledges */
	qp->recv_used++;
	return 0;
}

static int
exec_atomic(struct vrdma_qp *qp, const struct vrdma__swqe *w)
{
	uint64_t va = w->wr.wr.atomic.remote_addr, avail, old;
	const struct vrdma__rmr *m;
	uint64_t *p, total;
	int st;

	if ((st = local_sges(qp, w, VRDMA_ACCESS_LOCAL_WRITE, &total)))
		return st;
	if (va & 7)
		return VRDMA_WC_REM_INV_REQ_ERR; /* the responder's "invalid request" */
	m = remote_mr(qp, w->wr.wr.atomic.rkey, va, 8, VRDMA_ACCESS_REMOTE_ATOMIC);
	if (!m || !(p = (uint64_t *)(void *)vrdma__rmr_at(m, va, &avail)) || avail < 8)
		return VRDMA_WC_REM_ACCESS_ERR;
	if (w->wr.opcode == VRDMA_WR_ATOMIC_FETCH_AND_ADD) {
		old = __atomic_fetch_add(p, w->wr.wr.atomic.compare_add, __ATOMIC_SEQ_CST);
	} else {
		old = w->wr.wr.atomic.compare_add;
		__atomic_compare_exchange_n(p, &old, w->wr.wr.atomic.swap, false,
					    __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
	}
	memcpy((void *)(uintptr_t)w->sge[0].addr, &old, 8);
	return 0;
}

int
vrdma__shm_exec(struct vrdma_qp *qp, struct vrdma__swqe *w)
{
	uint64_t total, va = w->wr.wr.rdma.remote_addr;
	const struct vrdma__rmr *m = NULL;
	int st;

	/*
	 * A responder in ERR, or reset since (another connection of its QP),
	 * answers nothing: the requester gives up (RETRY_EXC).
	 */
	if (atomic_load_explicit(&qp->peer_slot->err, memory_order_acquire) ||
	    atomic_load_explicit(&qp->peer_slot->gen, memory_order_acquire) != qp->peer_gen)
		return VRDMA_WC_RETRY_EXC_ERR;
	switch (w->wr.opcode) {
	case VRDMA_WR_SEND:
	case VRDMA_WR_SEND_WITH_IMM:
		if ((st = local_sges(qp, w, 0, &total)))
			return st;
		if (total > VRDMA__MAX_SEND)
			return VRDMA_WC_LOC_LEN_ERR;
		if ((st = peer_receive(qp, total, true)))
			return st;
		return push_msg(qp, w, VRDMA__MSG_SEND, total);
	case VRDMA_WR_RDMA_WRITE:
	case VRDMA_WR_RDMA_WRITE_WITH_IMM:
		if ((st = local_sges(qp, w, 0, &total)))
			return st;
		if (w->wr.opcode == VRDMA_WR_RDMA_WRITE_WITH_IMM && (st = peer_receive(qp, 0, false)))
			return st;
		if (total) {
			m = remote_mr(qp, w->wr.wr.rdma.rkey, va, total, VRDMA_ACCESS_REMOTE_WRITE);
			if (!m)
				return VRDMA_WC_REM_ACCESS_ERR;
			if ((st = remote_copy(m, va, w, true)))
				return st;
		}
		if (w->wr.opcode == VRDMA_WR_RDMA_WRITE_WITH_IMM)
			return push_msg(qp, w, VRDMA__MSG_WRITE_IMM, total);
		return 0;
	case VRDMA_WR_RDMA_READ:
		if ((st = local_sges(qp, w, VRDMA_ACCESS_LOCAL_WRITE, &total)))
			return st;
		if (!total)
			return 0;
		m = remote_mr(qp, w->wr.wr.rdma.rkey, va, total, VRDMA_ACCESS_REMOTE_READ);
		if (!m)
			return VRDMA_WC_REM_ACCESS_ERR;
		return remote_copy(m, va, w, false);
	default:
		return exec_atomic(qp, w);
	}
}

/* ---------------------------------------------------------------------- */
/* Receive side */

/* Place a SEND's payload (@v: the ring's one or two pieces after the header) into @r. */
static int
place(struct vrdma_qp *qp, const struct vrdma__rwqe *r, const struct iovec v[2], size_t skip,
      uint32_t len)
{
	uint64_t room = 0;
	size_t at = skip; /* offset into the record */

	for (int i = 0; i < r->num_sge; i++) {
		const struct vrdma_sge *s = &r->sge[i];

		if (s->length && !vrdma__lmr(qp->ctx, qp->pd, s->lkey, s->addr, s->length,
					     VRDMA_ACCESS_LOCAL_WRITE))
			return VRDMA_WC_LOC_PROT_ERR;
		room += s->length;
	}
	if (len > room)
		return VRDMA_WC_LOC_LEN_ERR;
	for (int i = 0; i < r->num_sge && at < skip + len; i++) {
		uint8_t *dst = (uint8_t *)(uintptr_t)r->sge[i].addr;
		size_t want = r->sge[i].length < skip + len - at ? r->sge[i].length : skip + len - at;

		while (want) {
			const struct iovec *piece = at < v[0].iov_len ? &v[0] : &v[1];
			size_t off = at < v[0].iov_len ? at : at - v[0].iov_len;
			size_t k = piece->iov_len - off < want ? piece->iov_len - off : want;

			memcpy(dst, (const uint8_t *)piece->iov_base + off, k);
			dst += k, at += k, want -= k;
		}
	}
	return 0;
}

/* The message at the head of the ring, checked: its length, or -errno. */
static ssize_t
next_msg(struct vrdma_qp *qp, struct iovec v[2], struct vrdma__msg *h)
{
	ssize_t n = qp_msg_peek(qp->in, v);
	size_t k;

	if (n < 0)
		return n;
	if ((size_t)n < sizeof(*h))
		return -EPROTO;
	/* The header is copied out once; the peer may still be writing the ring. */
	k = v[0].iov_len < sizeof(*h) ? v[0].iov_len : sizeof(*h);
	memcpy(h, v[0].iov_base, k);
	memcpy((uint8_t *)h + k, v[1].iov_base, sizeof(*h) - k);
	if (h->op == VRDMA__MSG_SEND ? h->len != (size_t)n - sizeof(*h)
				     : h->op != VRDMA__MSG_WRITE_IMM || (size_t)n != sizeof(*h))
		return -EPROTO;
	return n;
}

void
vrdma__shm_drain(struct vrdma_qp *qp)
{
	struct vrdma__msg h;
	struct iovec v[2];

	while (qp->in && qp->rq_count && atomic_load(&qp->state) != VRDMA_QPS_ERR) {
		struct vrdma__rwqe *r = &qp->rq[qp->rq_head];
		struct vrdma_wc wc = { .wr_id = r->wr_id, .qp_num = qp->qpn,
				       .src_qp = qp->attr.dest_qp_num };
		ssize_t n = next_msg(qp, v, &h);

		if (n < 0 && n != -EPROTO)
			break; /* nothing yet, or the peer is gone */
		if (vrdma__cq_reserve(qp->rcq))
			break;
		if (n < 0) {
			wc.status = VRDMA_WC_REM_OP_ERR; /* the peer broke the ring */
		} else if (h.op == VRDMA__MSG_SEND) {
			wc.opcode = VRDMA_WC_RECV;
			wc.status = place(qp, r, v, sizeof(h), h.len);
		} else {
			wc.opcode = VRDMA_WC_RECV_RDMA_WITH_IMM;
		}
		wc.byte_len = n < 0 ? 0 : h.len;
		if (n > 0 && h.with_imm) {
			wc.imm_data = h.imm;
			wc.wc_flags = VRDMA_WC_WITH_IMM;
		}
		qp_msg_consume(qp->in);
		qp->rq_head = (qp->rq_head + 1) % qp->rq_cap;
		qp->rq_count--;
		vrdma__cq_commit(qp->rcq, &wc, n > 0 && h.solicited);
		if (wc.status) {
			vrdma__qp_to_err(qp);
			break;
		}
	}
}
