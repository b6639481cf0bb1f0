/* SPDX-License-Identifier: MIT */
/*
 * The RC responder (IBA vol. 1 ch. 9, the responder side): takes request packets in
 * PSN order, executes them against local memory and answers.
 *
 * Sequence: a request with the expected PSN (epsn) is executed; one ahead
 * of it means packets were lost: one PSN sequence error NAK, then new
 * requests are dropped silently until epsn arrives (go-back-N). One
 * behind it is a duplicate: SEND and WRITE are not executed again but
 * ACKed again (when they ask for it), a READ is executed again from
 * memory for the range it names, an atomic is answered from the saved
 * results of recent atomics, never executed twice.
 *
 * Answers go through the response queue, in PSN order: coalesced ACKs
 * (every RC__ACK_EVERY packets or when AckReq is set; a later ACK or NAK
 * replaces one not yet sent), READ responses, ATOMIC ACKs and NAKs. READ
 * responses are sent as the link takes them, each packet's bytes looked
 * up again through remote_mem(), so that nothing here points to caller
 * memory between calls.
 *
 * Threat model: request packets are untrusted. Opcode sequences are
 * checked (a MIDDLE without a FIRST is an invalid request); lengths are
 * checked against the RETH and the receive buffer before a byte is
 * written; remote memory is only reached through remote_mem() for exactly
 * the bytes of one packet; READ lengths are bounded (RC_MSG_MAX, 2^22
 * packets) and READ/atomic requests are limited to max_dest_rd_atomic at
 * once (then NAK invalid request). Errors that IBA makes fatal (class
 * A/C: invalid request, remote access or operational error) send their NAK
 * and move the QP to ERR.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "rc_int.h"

int
rc__resp_create(struct rc_qp *qp)
{
	qp->rsp_cap = 2 * (qp->attr.max_dest_rd_atomic + RC__REPLAY_MAX) + 2;
	qp->rsp = calloc(qp->rsp_cap, sizeof(*qp->rsp));
	qp->ares_n = qp->attr.max_dest_rd_atomic ? qp->attr.max_dest_rd_atomic : 1;
	qp->ares = calloc(qp->ares_n, sizeof(*qp->ares));
	return qp->rsp && qp->ares ? 0 : -ENOMEM;
}

void
rc__resp_clear(struct rc_qp *qp)
{
	qp->rsp_head = qp->rsp_tail;
	qp->rsp_new = qp->rsp_replay = 0;
}

static struct rc__rsp *
rsp_at(const struct rc_qp *qp, uint32_t i)
{
	return &qp->rsp[i % qp->rsp_cap];
}

static bool
rsp_full(const struct rc_qp *qp)
{
	return qp->rsp_tail - qp->rsp_head >= qp->rsp_cap;
}

/* What an ACK/NAK record acknowledges: the PSNs before this. */
static uint32_t
acked_upto(const struct rc__rsp *r)
{
	return r->syn == ROCE_AETH_ACK ? rc__psn_add(r->psn, 1) : r->psn;
}

/*
 * Queue an ACK or NAK at @psn. An ACK or NAK at the tail not yet sent is
 * replaced when the new one acknowledges more (or as much, and is a NAK):
 * acknowledgements are cumulative, so only the latest matters.
 */
static void
push_ack(struct rc_qp *qp, uint8_t syn, uint8_t val, uint32_t psn)
{
	struct rc__rsp n = { .kind = RC__RSP_ACK, .syn = syn, .val = val, .psn = psn };
	struct rc__rsp *t = qp->rsp_tail != qp->rsp_head ? rsp_at(qp, qp->rsp_tail - 1) : NULL;

	n.msn = qp->msn;
	if (t && t->kind == RC__RSP_ACK) {
		int32_t d = rc__psn_diff(acked_upto(&n), acked_upto(t));

		if (d > 0 || (d == 0 && syn != ROCE_AETH_ACK))
			*t = n;
		return;
	}
	if (rsp_full(qp))
		return; /* cannot happen (sized for it); the requester's timer would recover */
	*rsp_at(qp, qp->rsp_tail++) = n;
}

static void
push(struct rc_qp *qp, const struct rc__rsp *r)
{
	*rsp_at(qp, qp->rsp_tail++) = *r;
	if (r->replay)
		qp->rsp_replay++;
	else
		qp->rsp_new++;
}

/* The IBA's fatal responder errors: NAK @code at @psn; the receive in use gets @recv_status. */
static void
nak_fatal(struct rc_qp *qp, uint32_t psn, uint8_t code, int recv_status)
{
	push_ack(qp, ROCE_AETH_NAK, code, psn);
	if (qp->cur == RC__MSG_SEND && recv_status >= 0) {
		struct rc_cqe c = { .status = recv_status, .opcode = RC_WC_RECV };

		qp->cur = RC__MSG_NONE;
		rc__complete_recv(qp, &c);
	}
	rc__fatal(qp, -1);
}

/* remote_mem() failures: -EACCES is a remote access error, anything else operational. */
static void
nak_mem(struct rc_qp *qp, uint32_t psn, int err)
{
	if (err == -EACCES)
		nak_fatal(qp, psn, ROCE_NAK_REMOTE_ACCESS, RC_WC_REM_ACCESS_ERR);
	else
		nak_fatal(qp, psn, ROCE_NAK_REMOTE_OP, RC_WC_REM_OP_ERR);
}

static void
nak_invalid(struct rc_qp *qp, uint32_t psn)
{
	nak_fatal(qp, psn, ROCE_NAK_INVALID_REQ, RC_WC_REM_INV_REQ_ERR);
}

/* No receive posted: RNR NAK, then wait for this PSN again. */
static void
rnr(struct rc_qp *qp, uint32_t psn)
{
	push_ack(qp, ROCE_AETH_RNR_NAK, qp->attr.min_rnr_timer, psn);
	qp->nak_sent = true;
}

static uint32_t
packets(uint32_t len, unsigned mtu)
{
	return len ? (uint32_t)((len + (uint64_t)mtu - 1) / mtu) : 1;
}

static bool
op_first(uint8_t op)
{
	return op == ROCE_SEND_FIRST || op == ROCE_SEND_ONLY || op == ROCE_SEND_ONLY_IMM ||
	       op == ROCE_WRITE_FIRST || op == ROCE_WRITE_ONLY || op == ROCE_WRITE_ONLY_IMM;
}

static bool
op_last(uint8_t op)
{
	return op == ROCE_SEND_LAST || op == ROCE_SEND_LAST_IMM || op == ROCE_SEND_ONLY ||
	       op == ROCE_SEND_ONLY_IMM || op == ROCE_WRITE_LAST || op == ROCE_WRITE_LAST_IMM ||
	       op == ROCE_WRITE_ONLY || op == ROCE_WRITE_ONLY_IMM;
}

static bool
op_imm(uint8_t op)
{
	return op == ROCE_SEND_LAST_IMM || op == ROCE_SEND_ONLY_IMM || op == ROCE_WRITE_LAST_IMM ||
	       op == ROCE_WRITE_ONLY_IMM;
}

/* SEND packets. Returns 1 (taken), or 0 (RNR NAK or error, handled). */
static int
do_send(struct rc_qp *qp, const struct roce_ib *ib)
{
	struct rc__rwqe *r;
	bool last = op_last(ib->opcode);

	if (op_first(ib->opcode)) {
		if (qp->rq_head == qp->rq_tail) {
			rnr(qp, ib->psn);
			return 0;
		}
		qp->cur = RC__MSG_SEND;
		qp->cur_off = 0;
	}
	r = &qp->rq[qp->rq_head % qp->attr.rq_depth];
	if (ib->payload_len > r->len - qp->cur_off) {
		/* The receive completes in error, the requester's request with the NAK. */
		nak_fatal(qp, ib->psn, ROCE_NAK_INVALID_REQ, RC_WC_LOC_LEN_ERR);
		return 0;
	}
	rc__sg_put(r->sg, r->nsg, qp->cur_off, ib->payload, ib->payload_len);
	qp->cur_off += (uint32_t)ib->payload_len;
	if (last) {
		struct rc_cqe c = {
			.status = RC_WC_SUCCESS,
			.opcode = RC_WC_RECV,
			.byte_len = qp->cur_off,
			.with_imm = op_imm(ib->opcode),
			.imm = op_imm(ib->opcode) ? ib->imm : 0,
			.solicited = ib->se,
		};

		qp->cur = RC__MSG_NONE;
		qp->msn = rc__psn_add(qp->msn, 1);
		rc__complete_recv(qp, &c);
	}
	return 1;
}

/* WRITE packets. Returns 1 (taken), or 0 (RNR NAK or error, handled). */
static int
do_write(struct rc_qp *qp, const struct roce_ib *ib)
{
	uint32_t n = (uint32_t)ib->payload_len;
	bool last = op_last(ib->opcode), imm = op_imm(ib->opcode);
	void *p;
	int err;

	if (op_first(ib->opcode)) {
		/* The whole RETH range is checked up front (not for length 0). */
		if (ib->reth.len > RC_MSG_MAX || (last && ib->reth.len != n) ||
		    (!last && ib->reth.len <= n)) {
			nak_invalid(qp, ib->psn);
			return 0;
		}
		if (ib->reth.len &&
		    (err = qp->ops.remote_mem(qp->ctx, ib->reth.rkey, ib->reth.va, ib->reth.len,
					      RC_ACCESS_REMOTE_WRITE, &p))) {
			nak_mem(qp, ib->psn, err);
			return 0;
		}
		if (imm && qp->rq_head == qp->rq_tail) {
			rnr(qp, ib->psn);
			return 0;
		}
		qp->cur = RC__MSG_WRITE;
		qp->cur_off = 0;
		qp->w_rkey = ib->reth.rkey;
		qp->w_va = ib->reth.va;
		qp->w_len = ib->reth.len;
	} else {
		if (n > qp->w_len - qp->cur_off || (last && n != qp->w_len - qp->cur_off) ||
		    (!last && n == qp->w_len - qp->cur_off)) {
			nak_invalid(qp, ib->psn);
			return 0;
		}
		if (imm && qp->rq_head == qp->rq_tail) {
			rnr(qp, ib->psn); /* the data before it stays written; LAST comes again */
			return 0;
		}
	}
	if (n) {
		err = qp->ops.remote_mem(qp->ctx, qp->w_rkey, qp->w_va + qp->cur_off, n,
					 RC_ACCESS_REMOTE_WRITE, &p);
		if (err) {
			nak_mem(qp, ib->psn, err);
			return 0;
		}
		memcpy(p, ib->payload, n);
	}
	qp->cur_off += n;
	if (last) {
		qp->cur = RC__MSG_NONE;
		qp->msn = rc__psn_add(qp->msn, 1);
		if (imm) {
			struct rc_cqe c = {
				.status = RC_WC_SUCCESS,
				.opcode = RC_WC_RECV_RDMA_WITH_IMM,
				.byte_len = qp->w_len,
				.with_imm = true,
				.imm = ib->imm,
				.solicited = ib->se,
			};

			rc__complete_recv(qp, &c);
		}
	}
	return 1;
}

/* A READ's length and range. 0, or the NAK code to answer with (or a remote_mem errno). */
static int
check_read(struct rc_qp *qp, const struct roce_ib *ib, uint32_t *npkts)
{
	void *p;

	if (ib->reth.len > RC_MSG_MAX)
		return ROCE_NAK_INVALID_REQ;
	*npkts = packets(ib->reth.len, qp->attr.mtu);
	if (*npkts > RC__MSG_PSNS_MAX)
		return ROCE_NAK_INVALID_REQ;
	if (ib->reth.len)
		return qp->ops.remote_mem(qp->ctx, ib->reth.rkey, ib->reth.va, ib->reth.len,
					  RC_ACCESS_REMOTE_READ, &p);
	return 0;
}

static void
queue_read(struct rc_qp *qp, const struct roce_ib *ib, uint32_t npkts, bool replay)
{
	struct rc__rsp r = {
		.kind = RC__RSP_READ,
		.replay = replay,
		.psn = ib->psn,
		.first = ib->psn,
		.last = rc__psn_add(ib->psn, npkts - 1),
		.msn = qp->msn,
		.rkey = ib->reth.rkey,
		.len = ib->reth.len,
		.va = ib->reth.va,
	};

	push(qp, &r);
}

/* READ request. Returns the PSNs it takes, or 0 (NAK sent). */
static uint32_t
do_read(struct rc_qp *qp, const struct roce_ib *ib)
{
	uint32_t npkts = 0;
	int r;

	if (qp->rsp_new >= qp->attr.max_dest_rd_atomic || rsp_full(qp)) {
		nak_invalid(qp, ib->psn); /* more than max_dest_rd_atomic outstanding */
		return 0;
	}
	r = check_read(qp, ib, &npkts);
	if (r > 0)
		nak_invalid(qp, ib->psn);
	if (r < 0)
		nak_mem(qp, ib->psn, r);
	if (r)
		return 0;
	qp->msn = rc__psn_add(qp->msn, 1);
	queue_read(qp, ib, npkts, false);
	return npkts;
}

/*
 * Execute an atomic on @p, atomically with respect to local CPUs when the
 * host address is 8-byte aligned (the GCC/Clang __atomic builtins on a
 * plain object: the caller's memory is not ours to declare _Atomic; local
 * readers pair with these with their own atomic loads or locks).
 */
static uint64_t
exec_atomic(void *p, uint8_t op, uint64_t swap_add, uint64_t compare)
{
	uint64_t v;

	if (((uintptr_t)p & 7) == 0) {
		uint64_t *q = p;

		if (op == ROCE_FETCH_ADD)
			return __atomic_fetch_add(q, swap_add, __ATOMIC_SEQ_CST);
		v = compare;
		__atomic_compare_exchange_n(q, &v, swap_add, false, __ATOMIC_SEQ_CST,
					    __ATOMIC_SEQ_CST);
		return v; /* the original value: compare when it swapped */
	}
	uint64_t nv;

	memcpy(&v, p, sizeof(v));
	nv = op == ROCE_FETCH_ADD ? v + swap_add : (v == compare ? swap_add : v);
	memcpy(p, &nv, sizeof(nv));
	return v;
}

/* CMP_SWP and FETCH_ADD. Returns 1, or 0 (NAK sent). */
static uint32_t
do_atomic(struct rc_qp *qp, const struct roce_ib *ib)
{
	struct rc__rsp r = { .kind = RC__RSP_ATOMIC, .psn = ib->psn };
	struct rc__atomic_res *s;
	void *p;
	int err;

	if (qp->rsp_new >= qp->attr.max_dest_rd_atomic || rsp_full(qp) || (ib->atomic.va & 7)) {
		nak_invalid(qp, ib->psn); /* too many outstanding, or not 8-byte aligned */
		return 0;
	}
	err = qp->ops.remote_mem(qp->ctx, ib->atomic.rkey, ib->atomic.va, 8,
				 RC_ACCESS_REMOTE_ATOMIC, &p);
	if (err) {
		nak_mem(qp, ib->psn, err);
		return 0;
	}
	r.orig = exec_atomic(p, ib->opcode, ib->atomic.swap_add, ib->atomic.compare);
	s = &qp->ares[qp->ares_next++ % qp->ares_n];
	*s = (struct rc__atomic_res){ .valid = true, .psn = ib->psn, .orig = r.orig };
	qp->msn = rc__psn_add(qp->msn, 1);
	r.msn = qp->msn;
	push(qp, &r);
	return 1;
}

/* Which message an opcode continues (or RC__MSG_NONE when it begins one). */
static uint8_t
needs(uint8_t op)
{
	switch (op) {
	case ROCE_SEND_MIDDLE:
	case ROCE_SEND_LAST:
	case ROCE_SEND_LAST_IMM:
		return RC__MSG_SEND;
	case ROCE_WRITE_MIDDLE:
	case ROCE_WRITE_LAST:
	case ROCE_WRITE_LAST_IMM:
		return RC__MSG_WRITE;
	default:
		return RC__MSG_NONE;
	}
}

/* The request at epsn. */
static void
new_request(struct rc_qp *qp, const struct roce_ib *ib)
{
	uint8_t op = ib->opcode;
	uint32_t n;

	if (needs(op) != qp->cur) {
		nak_invalid(qp, ib->psn); /* an opcode out of sequence */
		return;
	}
	if (op <= ROCE_SEND_ONLY_IMM)
		n = (uint32_t)do_send(qp, ib);
	else if (op <= ROCE_WRITE_ONLY_IMM)
		n = (uint32_t)do_write(qp, ib);
	else if (op == ROCE_READ_REQ)
		n = do_read(qp, ib);
	else
		n = do_atomic(qp, ib);
	if (!n)
		return;
	qp->epsn = rc__psn_add(qp->epsn, n);
	qp->nak_sent = false;
	if (op == ROCE_READ_REQ || op == ROCE_CMP_SWAP || op == ROCE_FETCH_ADD) {
		qp->unacked = 0; /* its response acknowledges it and everything before */
		return;
	}
	if (ib->ackreq || ++qp->unacked >= RC__ACK_EVERY) {
		push_ack(qp, ROCE_AETH_ACK, 31, ib->psn);
		qp->unacked = 0;
	}
}

/*
 * A duplicate READ inside a READ whose responses are still being sent:
 * the requester lost one of them. Send again from there (go-back-N), with
 * the range checked when the READ was new; true when it was one.
 */
static bool
restart_read(struct rc_qp *qp, uint32_t psn)
{
	for (uint32_t i = qp->rsp_head; i != qp->rsp_tail; i++) {
		struct rc__rsp *r = rsp_at(qp, i);

		if (r->kind != RC__RSP_READ || rc__psn_lt(psn, r->first) ||
		    rc__psn_lt(r->last, psn))
			continue;
		if (rc__psn_lt(psn, r->psn))
			r->psn = psn;
		return true;
	}
	return false;
}

/* A duplicate READ: executed again for the range it names, if that is all old PSNs. */
static void
dup_read(struct rc_qp *qp, const struct roce_ib *ib)
{
	uint32_t npkts = 0;

	if (restart_read(qp, ib->psn))
		return;
	if (qp->rsp_replay >= RC__REPLAY_MAX || rsp_full(qp) || check_read(qp, ib, &npkts) ||
	    !rc__psn_lt(rc__psn_add(ib->psn, npkts - 1), qp->epsn)) {
		qp->stats.dropped++;
		return;
	}
	queue_read(qp, ib, npkts, true);
}

/* A duplicate atomic: the saved result, or nothing (never executed twice). */
static void
dup_atomic(struct rc_qp *qp, const struct roce_ib *ib)
{
	for (uint32_t i = 0; i < qp->ares_n; i++) {
		const struct rc__atomic_res *s = &qp->ares[i];

		if (!s->valid || s->psn != ib->psn)
			continue;
		if (qp->rsp_replay >= RC__REPLAY_MAX || rsp_full(qp))
			break;
		struct rc__rsp r = {
			.kind = RC__RSP_ATOMIC,
			.replay = true,
			.psn = ib->psn,
			.msn = qp->msn,
			.orig = s->orig,
		};
		push(qp, &r);
		return;
	}
	qp->stats.dropped++;
}

static void
duplicate(struct rc_qp *qp, const struct roce_ib *ib)
{
	qp->stats.dup_requests++;
	if (ib->opcode == ROCE_READ_REQ) {
		dup_read(qp, ib);
	} else if (ib->opcode == ROCE_CMP_SWAP || ib->opcode == ROCE_FETCH_ADD) {
		dup_atomic(qp, ib);
	} else if (ib->ackreq) {
		/* Acknowledged again, with the latest PSN taken; not executed again. */
		push_ack(qp, ROCE_AETH_ACK, 31, rc__psn_add(qp->epsn, RC__PSN_MASK));
		qp->unacked = 0;
	}
}

void
rc__resp_input(struct rc_qp *qp, const struct roce_ib *ib)
{
	int32_t d = rc__psn_diff(ib->psn, qp->epsn);

	if (d < 0) {
		duplicate(qp, ib);
	} else if (d > 0) {
		/* Lost packets before it: one NAK, then silence until epsn comes. */
		if (!qp->nak_sent)
			push_ack(qp, ROCE_AETH_NAK, ROCE_NAK_PSN_SEQ, qp->epsn);
		qp->nak_sent = true;
		qp->stats.dropped++;
	} else {
		new_request(qp, ib);
	}
}

/* The next packet of the READ response @r. 0, -EAGAIN, or 1 when it became a NAK. */
static int
send_read(struct rc_qp *qp, struct rc__rsp *r)
{
	uint32_t mtu = qp->attr.mtu, idx = (uint32_t)rc__psn_diff(r->psn, r->first);
	uint64_t off = (uint64_t)idx * mtu;
	uint32_t n = r->len - off < mtu ? (uint32_t)(r->len - off) : mtu;
	struct roce_ib ib = { .psn = r->psn };
	void *p = NULL;
	int err;

	if (n) {
		err =
		    qp->ops.remote_mem(qp->ctx, r->rkey, r->va + off, n, RC_ACCESS_REMOTE_READ, &p);
		if (err) {
			/* Gone since the request: a NAK in place of this response. */
			*r = (struct rc__rsp){ .kind = RC__RSP_ACK,
					       .syn = ROCE_AETH_NAK,
					       .val = err == -EACCES ? ROCE_NAK_REMOTE_ACCESS
								     : ROCE_NAK_REMOTE_OP,
					       .psn = r->psn,
					       .msn = qp->msn };
			qp->rsp_tail = qp->rsp_head + 1;
			qp->rsp_new = qp->rsp_replay = 0;
			rc__fatal(qp, -1);
			return 1;
		}
	}
	if (r->first == r->last)
		ib.opcode = ROCE_READ_RESP_ONLY;
	else if (r->psn == r->first)
		ib.opcode = ROCE_READ_RESP_FIRST;
	else if (r->psn == r->last)
		ib.opcode = ROCE_READ_RESP_LAST;
	else
		ib.opcode = ROCE_READ_RESP_MIDDLE;
	ib.aeth = (struct roce_aeth){ .kind = ROCE_AETH_ACK, .value = 31, .msn = r->msn };
	ib.payload = p;
	ib.payload_len = n;
	if (rc__xmit(qp, &ib))
		return -EAGAIN;
	qp->stats.read_resps_sent++;
	r->psn = rc__psn_add(r->psn, 1);
	return 0;
}

/* Send the head of the response queue. 0 when it is all sent, -EAGAIN, or 1 (not done). */
static int
send_rsp(struct rc_qp *qp, struct rc__rsp *r)
{
	struct roce_ib ib = { .psn = r->psn };
	int err;

	if (r->kind == RC__RSP_READ) {
		err = send_read(qp, r);
		if (err)
			return err;
		return r->psn == rc__psn_add(r->last, 1) ? 0 : 1;
	}
	ib.opcode = r->kind == RC__RSP_ATOMIC ? ROCE_ATOMIC_ACK : ROCE_ACK;
	ib.aeth = (struct roce_aeth){ .kind = r->syn, .value = r->val, .msn = r->msn };
	if (r->kind == RC__RSP_ATOMIC)
		ib.aeth = (struct roce_aeth){ .kind = ROCE_AETH_ACK, .value = 31, .msn = r->msn };
	ib.orig = r->orig;
	if (rc__xmit(qp, &ib))
		return -EAGAIN;
	if (r->kind == RC__RSP_ATOMIC)
		qp->stats.atomic_acks_sent++;
	else if (r->syn == ROCE_AETH_ACK)
		qp->stats.acks_sent++;
	else if (r->syn == ROCE_AETH_RNR_NAK)
		qp->stats.rnr_naks_sent++;
	else
		qp->stats.naks_sent++;
	return 0;
}

void
rc__resp_send(struct rc_qp *qp)
{
	while (!qp->blocked && qp->rsp_head != qp->rsp_tail) {
		struct rc__rsp *r = rsp_at(qp, qp->rsp_head);
		int err = send_rsp(qp, r);

		if (err < 0)
			return;
		if (err > 0)
			continue;
		if (r->kind != RC__RSP_ACK) {
			if (r->replay)
				qp->rsp_replay--;
			else
				qp->rsp_new--;
		}
		qp->rsp_head++;
	}
}
