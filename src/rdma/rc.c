/* SPDX-License-Identifier: MIT */
/*
 * RC queue pairs (rc.h): creation, the send and receive queues,
 * completions in posting order, the error state and its flushes, packet
 * validation common to both roles, and the entry points that drive the
 * requester (rc_req.c) and the responder (rc_resp.c).
 *
 * Completions are delivered from inside rc_input(), rc_poll() and
 * rc_set_error(): a ring slot is released before its completion callback
 * runs, so that the callback may post again. In ERR, work posted is
 * flushed at the next rc_poll(), never from inside rc_post_*(), so that a
 * callback that posts on every flush cannot recurse without end.
 *
 * Threat model: rc_input() takes any struct roce_ib, parsed from network
 * bytes or not; everything about it is checked here (opcode, QP, P_Key,
 * 24-bit fields, payload rules against the path MTU, AETH syndrome) or by
 * the role it goes to (PSNs, lengths, keys).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "rc_int.h"

int64_t
rc_rnr_timer_ns(unsigned code)
{
	return roce_rnr_timer_ns(code);
}

int64_t
rc_timeout_ns(unsigned timeout)
{
	if (timeout == 0 || timeout > 31)
		return INT64_MAX;
	return (int64_t)4096 << timeout;
}

static bool
attr_valid(const struct rc_attr *a)
{
	return roce_mtu_valid(a->mtu) && !(a->qpn >> 24) && !(a->dest_qpn >> 24) &&
	       !(a->sq_psn >> 24) && !(a->rq_psn >> 24) && a->timeout <= 31 && a->retry_cnt <= 7 &&
	       a->rnr_retry <= 7 && a->min_rnr_timer <= 31 && a->max_rd_atomic <= 16 &&
	       a->max_dest_rd_atomic <= 16 && a->sq_depth >= 1 && a->sq_depth <= 65536 &&
	       a->rq_depth >= 1 && a->rq_depth <= 65536 && a->max_sge >= 1 && a->max_sge <= 64 &&
	       a->window <= 65536;
}

int
rc_create(const struct rc_attr *attr, const struct rc_ops *ops, void *ctx, struct rc_qp **out)
{
	struct rc_qp *qp;

	*out = NULL;
	if (!attr_valid(attr) || !ops->xmit || !ops->remote_mem || !ops->complete)
		return -EINVAL;
	qp = calloc(1, sizeof(*qp));
	if (!qp)
		return -ENOMEM;
	qp->attr = *attr;
	if (!qp->attr.window)
		qp->attr.window = RC__WINDOW_DEFAULT;
	qp->ops = *ops;
	qp->ctx = ctx;
	qp->state = RC_STATE_RTS;
	qp->txbuf = malloc(attr->mtu);
	qp->sq = calloc(attr->sq_depth, sizeof(*qp->sq));
	qp->sq_sg = calloc((size_t)attr->sq_depth * attr->max_sge, sizeof(*qp->sq_sg));
	qp->rq = calloc(attr->rq_depth, sizeof(*qp->rq));
	qp->rq_sg = calloc((size_t)attr->rq_depth * attr->max_sge, sizeof(*qp->rq_sg));
	if (!qp->txbuf || !qp->sq || !qp->sq_sg || !qp->rq || !qp->rq_sg || rc__resp_create(qp)) {
		rc_destroy(qp);
		return -ENOMEM;
	}
	qp->next_psn = qp->una = qp->psn_hi = attr->sq_psn;
	qp->ackreq_psn = (attr->sq_psn - 1) & RC__PSN_MASK;
	qp->timer_at = INT64_MAX;
	qp->rnr_at = INT64_MIN;
	qp->retry_left = attr->retry_cnt;
	qp->rnr_left = attr->rnr_retry;
	qp->epsn = attr->rq_psn;
	*out = qp;
	return 0;
}

void
rc_destroy(struct rc_qp *qp)
{
	if (!qp)
		return;
	free(qp->txbuf);
	free(qp->sq);
	free(qp->sq_sg);
	free(qp->rq);
	free(qp->rq_sg);
	free(qp->rsp);
	free(qp->ares);
	free(qp);
}

/* Copy @n entries of @sg into @dst; their total in *@len. 0 or -EINVAL. */
static int
copy_sg(struct iovec *dst, const struct iovec *sg, int n, uint32_t *len)
{
	uint64_t total = 0;

	for (int i = 0; i < n; i++) {
		if (!sg[i].iov_base && sg[i].iov_len)
			return -EINVAL;
		total += sg[i].iov_len;
		if (sg[i].iov_len > RC_MSG_MAX || total > RC_MSG_MAX)
			return -EINVAL;
		dst[i] = sg[i];
	}
	*len = (uint32_t)total;
	return 0;
}

static uint32_t
packets(uint32_t len, unsigned mtu)
{
	return len ? (uint32_t)((len + (uint64_t)mtu - 1) / mtu) : 1;
}

int
rc_post_send(struct rc_qp *qp, const struct rc_wqe *wqe)
{
	uint32_t slot = qp->sq_tail % qp->attr.sq_depth;
	struct rc__swqe *w = &qp->sq[slot];
	struct iovec *sg = qp->sq_sg + (size_t)slot * qp->attr.max_sge;
	uint32_t len;

	if (wqe->opcode > RC_WR_FETCH_ADD || wqe->nsg < 0 ||
	    (unsigned)wqe->nsg > qp->attr.max_sge || (wqe->nsg && !wqe->sg))
		return -EINVAL;
	if (rc__is_rd_atomic(wqe->opcode) && !qp->attr.max_rd_atomic)
		return -EINVAL;
	if (qp->sq_tail - qp->sq_head >= qp->attr.sq_depth)
		return -ENOMEM;
	if (copy_sg(sg, wqe->sg, wqe->nsg, &len))
		return -EINVAL;
	if (packets(len, qp->attr.mtu) > RC__MSG_PSNS_MAX)
		return -EINVAL;
	if (wqe->opcode == RC_WR_CMP_SWP || wqe->opcode == RC_WR_FETCH_ADD) {
		if (len < 8)
			return -EINVAL;
		len = 8;
	}
	memset(w, 0, sizeof(*w));
	w->wr_id = wqe->wr_id;
	w->opcode = wqe->opcode;
	w->signaled = wqe->signaled;
	w->solicited = wqe->solicited;
	w->imm = wqe->imm;
	w->rkey = wqe->rkey;
	w->remote_va = wqe->remote_va;
	w->compare_add = wqe->compare_add;
	w->swap = wqe->swap;
	w->sg = sg;
	w->nsg = wqe->nsg;
	w->len = len;
	w->npsn =
	    rc__is_rd_atomic(w->opcode) && w->opcode != RC_WR_READ ? 1 : packets(len, qp->attr.mtu);
	qp->sq_tail++;
	if (qp->state == RC_STATE_ERR)
		qp->flush_due = true;
	return 0;
}

int
rc_post_recv(struct rc_qp *qp, const struct rc_rqe *rqe)
{
	uint32_t slot = qp->rq_tail % qp->attr.rq_depth;
	struct rc__rwqe *r = &qp->rq[slot];
	struct iovec *sg = qp->rq_sg + (size_t)slot * qp->attr.max_sge;
	uint32_t len;

	if (rqe->nsg < 0 || (unsigned)rqe->nsg > qp->attr.max_sge || (rqe->nsg && !rqe->sg))
		return -EINVAL;
	if (qp->rq_tail - qp->rq_head >= qp->attr.rq_depth)
		return -ENOMEM;
	if (copy_sg(sg, rqe->sg, rqe->nsg, &len))
		return -EINVAL;
	r->wr_id = rqe->wr_id;
	r->sg = sg;
	r->nsg = rqe->nsg;
	r->len = len;
	qp->rq_tail++;
	if (qp->state == RC_STATE_ERR)
		qp->flush_due = true;
	return 0;
}

void
rc__sg_put(const struct iovec *sg, int nsg, uint64_t off, const void *src, size_t n)
{
	const uint8_t *s = src;

	for (int i = 0; i < nsg && n; i++) {
		size_t l = sg[i].iov_len, k;

		if (off >= l) {
			off -= l;
			continue;
		}
		k = l - off < n ? l - (size_t)off : n;
		memcpy((uint8_t *)sg[i].iov_base + off, s, k);
		s += k;
		n -= k;
		off = 0;
	}
}

const void *
rc__sg_get(const struct iovec *sg, int nsg, uint64_t off, size_t n, uint8_t *bounce)
{
	uint8_t *d = bounce;

	if (!n)
		return NULL;
	for (int i = 0; i < nsg && n; i++) {
		size_t l = sg[i].iov_len, k;

		if (off >= l) {
			off -= l;
			continue;
		}
		if (d == bounce && l - off >= n) /* all of it in this entry */
			return (const uint8_t *)sg[i].iov_base + off;
		k = l - off < n ? l - (size_t)off : n;
		memcpy(d, (const uint8_t *)sg[i].iov_base + off, k);
		d += k;
		n -= k;
		off = 0;
	}
	return bounce;
}

int
rc__xmit(struct rc_qp *qp, struct roce_ib *ib)
{
	int r;

	ib->pkey = qp->attr.pkey;
	ib->dqpn = qp->attr.dest_qpn;
	ib->psn &= RC__PSN_MASK;
	r = qp->ops.xmit(qp->ctx, ib);
	if (r == -EAGAIN) {
		qp->blocked = true;
		return r;
	}
	/* Sent, or dropped by the caller: either way it is on its way (or lost). */
	qp->stats.packets_sent++;
	qp->stats.bytes_sent += ib->payload_len;
	return 0;
}

/* Retire the oldest send WR with @status: a completion if signaled or in error. */
void
rc__complete_send(struct rc_qp *qp, int status)
{
	struct rc__swqe *w = &qp->sq[qp->sq_head % qp->attr.sq_depth];
	struct rc_cqe c = {
		.wr_id = w->wr_id,
		.status = status,
		.opcode = w->opcode,
		.byte_len = w->len,
	};
	bool report = w->signaled || status != RC_WC_SUCCESS;

	qp->sq_head++;
	if ((int32_t)(qp->sq_snd - qp->sq_head) < 0) {
		qp->sq_snd = qp->sq_head;
		qp->snd_off = 0;
	}
	if (report)
		qp->ops.complete(qp->ctx, &c);
}

/* Retire the oldest receive WR with the completion @c (its wr_id filled in here). */
void
rc__complete_recv(struct rc_qp *qp, const struct rc_cqe *c)
{
	struct rc_cqe cc = *c;

	cc.wr_id = qp->rq[qp->rq_head % qp->attr.rq_depth].wr_id;
	cc.recv = true;
	qp->rq_head++;
	qp->ops.complete(qp->ctx, &cc);
}

/* Flush what is posted now (not what the callbacks post meanwhile). */
static void
flush_all(struct rc_qp *qp)
{
	uint32_t send_end = qp->sq_tail, recv_end = qp->rq_tail;
	struct rc_cqe c = { .status = RC_WC_WR_FLUSH_ERR, .opcode = RC_WC_RECV };

	qp->flush_due = false;
	while (qp->sq_head != send_end)
		rc__complete_send(qp, RC_WC_WR_FLUSH_ERR);
	while (qp->rq_head != recv_end)
		rc__complete_recv(qp, &c);
}

/*
 * To ERR (the IBA's QP error state): @status for the oldest send WR
 * when it is >= 0 (the request that failed), then everything flushed. The
 * responses queued (a NAK saying why, last) are still sent.
 */
void
rc__fatal(struct rc_qp *qp, int status)
{
	if (qp->state == RC_STATE_ERR)
		return;
	qp->state = RC_STATE_ERR;
	qp->timer_at = INT64_MAX;
	qp->rnr_at = INT64_MIN;
	qp->cur = RC__MSG_NONE;
	if (status >= 0 && qp->sq_head != qp->sq_tail)
		rc__complete_send(qp, status);
	flush_all(qp);
}

void
rc_set_error(struct rc_qp *qp)
{
	rc__resp_clear(qp);
	if (qp->state == RC_STATE_ERR) {
		flush_all(qp);
		return;
	}
	rc__fatal(qp, -1);
}

enum rc_state
rc_state(const struct rc_qp *qp)
{
	return qp->state;
}

void
rc_get_stats(const struct rc_qp *qp, struct rc_stats *out)
{
	*out = qp->stats;
}

/* The header checks every packet passes before either role sees it (IBA packet validation). */
static int
valid_packet(const struct rc_qp *qp, const struct roce_ib *ib)
{
	unsigned fl = roce_opcode_flags(ib->opcode);
	size_t n = ib->payload_len;
	uint16_t a = qp->attr.pkey, b = ib->pkey;

	if (!fl || ib->dqpn != qp->attr.qpn || ib->psn >> 24)
		return -EINVAL;
	/* P_Key: the same partition, and not both limited members. */
	if ((a & 0x7fff) != (b & 0x7fff) || !((a | b) & 0x8000))
		return -EINVAL;
	if (n && !ib->payload)
		return -EINVAL;
	if (!(fl & ROCE_F_PAYLOAD) ? n != 0 : n > qp->attr.mtu)
		return -EINVAL;
	if ((fl & (ROCE_F_FIRST | ROCE_F_MIDDLE)) && n != qp->attr.mtu)
		return -EINVAL;
	if ((fl & ROCE_F_LAST) && n == 0)
		return -EINVAL;
	if (fl & ROCE_F_AETH) {
		const struct roce_aeth *e = &ib->aeth;

		if (e->msn >> 24 || e->value > 31)
			return -EINVAL;
		if (e->kind != ROCE_AETH_ACK && e->kind != ROCE_AETH_RNR_NAK &&
		    e->kind != ROCE_AETH_NAK)
			return -EINVAL;
		if (e->kind == ROCE_AETH_NAK && e->value > ROCE_NAK_INVALID_RD_REQ)
			return -EINVAL;
		if (ib->opcode != ROCE_ACK && e->kind != ROCE_AETH_ACK)
			return -EINVAL;
	}
	return 0;
}

static bool
is_response(uint8_t opcode)
{
	return opcode >= ROCE_READ_RESP_FIRST && opcode <= ROCE_ATOMIC_ACK;
}

static void
send_all(struct rc_qp *qp)
{
	rc__resp_send(qp);
	if (qp->state == RC_STATE_RTS)
		rc__req_send(qp);
}

int
rc_input(struct rc_qp *qp, const struct roce_ib *ib, int64_t now_ns)
{
	uint64_t dropped;
	int r;

	qp->now = now_ns;
	if (qp->state == RC_STATE_ERR) {
		qp->stats.dropped++;
		return -ENOTCONN;
	}
	r = valid_packet(qp, ib);
	if (r) {
		qp->stats.dropped++;
		return r;
	}
	qp->stats.packets_rcvd++;
	qp->stats.bytes_rcvd += ib->payload_len;
	dropped = qp->stats.dropped;
	if (is_response(ib->opcode))
		rc__req_input(qp, ib);
	else
		rc__resp_input(qp, ib);
	send_all(qp);
	return qp->stats.dropped != dropped ? -ESTALE : 0;
}

void
rc_poll(struct rc_qp *qp, int64_t now_ns)
{
	qp->now = now_ns;
	qp->blocked = false;
	if (qp->state == RC_STATE_ERR) {
		if (qp->flush_due)
			flush_all(qp);
		rc__resp_send(qp);
		return;
	}
	rc__req_timers(qp);
	send_all(qp);
}

int64_t
rc_next_deadline(const struct rc_qp *qp)
{
	bool now = qp->rsp_head != qp->rsp_tail;

	if (qp->flush_due)
		return qp->now; /* needs no link */
	if (qp->state == RC_STATE_RTS)
		now = now || rc__req_ready(qp);
	if (now && !qp->blocked)
		return qp->now;
	return qp->state == RC_STATE_RTS ? rc__req_deadline(qp) : INT64_MAX;
}
