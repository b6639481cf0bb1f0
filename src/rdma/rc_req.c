/* SPDX-License-Identifier: MIT */
/*
 * The RC requester (IBA vol. 1 ch. 9, the requester side): turns the send queue
 * into request packets and takes what the responder answers.
 *
 * PSNs: each request takes its PSNs when first sent (SEND and WRITE one
 * per packet, READ as many as response packets will come back, atomics
 * one). una is the oldest PSN not yet acknowledged, psn_hi one past the
 * highest sent; responses outside [una, psn_hi) are stale or forged and
 * dropped. ACKs are cumulative; a READ response or ATOMIC ACK also
 * acknowledges every request before it (implicit ACK), but an ACK that
 * covers a READ whose response has not arrived means that response was
 * lost: the requester goes back (implicit NAK). Going back is go-back-N:
 * the cursor (sq_snd, snd_off) returns to una and everything from there is
 * sent again, a READ from the first response packet it still lacks.
 *
 * Completions leave in posting order from the head of the queue: a request
 * completes when all its PSNs are acknowledged and, for READ and atomics,
 * their data is in. Errors (fatal NAKs, retries exceeded, bad responses)
 * complete the oldest request with their status and move the QP to ERR.
 *
 * Threat model: response packets are untrusted; their PSN must fall in
 * the window, their opcode and length must be what the oldest request
 * expects, and a READ response's payload is written only inside that
 * request's own scatter list at the offset its PSN implies.
 */
#include <errno.h>
#include <string.h>

#include "rc_int.h"

static struct rc__swqe *
swqe(const struct rc_qp *qp, uint32_t idx)
{
	return &qp->sq[idx % qp->attr.sq_depth];
}

/* The PSN the cursor would send next. */
static uint32_t
cursor_psn(const struct rc_qp *qp)
{
	const struct rc__swqe *w;

	if (qp->sq_snd == qp->sq_tail)
		return qp->next_psn;
	w = swqe(qp, qp->sq_snd);
	return w->sent ? rc__psn_add(w->psn, qp->snd_off) : qp->next_psn;
}

/* READ/atomic requests sent in this pass and not completed (IBA: max_rd_atomic). */
static unsigned
rd_outstanding(const struct rc_qp *qp)
{
	unsigned n = 0;

	for (uint32_t i = qp->sq_head; i != qp->sq_snd; i++)
		n += rc__is_rd_atomic(swqe(qp, i)->opcode);
	return n;
}

bool
rc__req_ready(const struct rc_qp *qp)
{
	const struct rc__swqe *w;

	if (qp->state != RC_STATE_RTS || qp->rnr_at != INT64_MIN || qp->sq_snd == qp->sq_tail)
		return false;
	if (rc__psn_diff(cursor_psn(qp), qp->una) >= (int32_t)qp->attr.window)
		return false;
	w = swqe(qp, qp->sq_snd);
	return !rc__is_rd_atomic(w->opcode) || rd_outstanding(qp) < qp->attr.max_rd_atomic;
}

int64_t
rc__req_deadline(const struct rc_qp *qp)
{
	int64_t d = qp->timer_at;

	if (qp->rnr_at != INT64_MIN && qp->rnr_at < d)
		d = qp->rnr_at;
	return d;
}

static void
arm_timer(struct rc_qp *qp)
{
	int64_t t = rc_timeout_ns(qp->attr.timeout);

	qp->timer_at = t == INT64_MAX || qp->now > INT64_MAX - t ? INT64_MAX : qp->now + t;
}

/* SEND or WRITE packet @k of @w: opcode by position (IBA table 38). */
static uint8_t
data_opcode(const struct rc__swqe *w, uint32_t k)
{
	bool write = w->opcode == RC_WR_WRITE || w->opcode == RC_WR_WRITE_IMM;
	bool imm = w->opcode == RC_WR_SEND_IMM || w->opcode == RC_WR_WRITE_IMM;
	uint8_t base = write ? ROCE_WRITE_FIRST : ROCE_SEND_FIRST;

	if (w->npsn == 1)
		return (uint8_t)(base + (imm ? 5 : 4)); /* ONLY, ONLY_IMM */
	if (k == 0)
		return base; /* FIRST */
	if (k == w->npsn - 1)
		return (uint8_t)(base + (imm ? 3 : 2)); /* LAST, LAST_IMM */
	return (uint8_t)(base + 1);			/* MIDDLE */
}

/* The packet at the cursor, into @ib (its payload may be qp->txbuf). */
static void
build(struct rc_qp *qp, const struct rc__swqe *w, struct roce_ib *ib)
{
	uint32_t k = qp->snd_off, mtu = qp->attr.mtu;
	uint64_t off = (uint64_t)k * mtu;

	memset(ib, 0, sizeof(*ib));
	ib->psn = rc__psn_add(w->psn, k);
	switch (w->opcode) {
	case RC_WR_READ:
		/* From the first response packet still missing, with a RETH for the rest. */
		ib->opcode = ROCE_READ_REQ;
		ib->reth.va = w->remote_va + off;
		ib->reth.rkey = w->rkey;
		ib->reth.len = w->len - (uint32_t)off;
		return;
	case RC_WR_CMP_SWP:
	case RC_WR_FETCH_ADD:
		ib->opcode = w->opcode == RC_WR_CMP_SWP ? ROCE_CMP_SWAP : ROCE_FETCH_ADD;
		ib->atomic.va = w->remote_va;
		ib->atomic.rkey = w->rkey;
		ib->atomic.swap_add = w->opcode == RC_WR_CMP_SWP ? w->swap : w->compare_add;
		ib->atomic.compare = w->opcode == RC_WR_CMP_SWP ? w->compare_add : 0;
		return;
	default:
		break;
	}
	bool last = k == w->npsn - 1;
	size_t n = w->len - off < mtu ? (size_t)(w->len - off) : mtu;

	ib->opcode = data_opcode(w, k);
	if (k == 0 && (w->opcode == RC_WR_WRITE || w->opcode == RC_WR_WRITE_IMM)) {
		ib->reth.va = w->remote_va;
		ib->reth.rkey = w->rkey;
		ib->reth.len = w->len;
	}
	if (last) {
		ib->imm = w->imm;
		ib->se = w->solicited && w->opcode != RC_WR_WRITE;
	}
	ib->payload = rc__sg_get(w->sg, w->nsg, off, n, qp->txbuf);
	ib->payload_len = n;
	/* AckReq: a message's end, every RC__ACK_EVERY packets, and when the window fills. */
	ib->ackreq = last || rc__psn_diff(ib->psn, qp->ackreq_psn) >= RC__ACK_EVERY ||
		     rc__psn_diff(rc__psn_add(ib->psn, 1), qp->una) >= (int32_t)qp->attr.window;
}

/* Send the packet at the cursor. 0, or -EAGAIN when the link is full. */
static int
send_one(struct rc_qp *qp)
{
	struct rc__swqe *w = swqe(qp, qp->sq_snd);
	struct roce_ib ib;
	uint32_t end;

	if (!w->sent) {
		w->sent = true;
		w->psn = qp->next_psn;
		qp->next_psn = rc__psn_add(qp->next_psn, w->npsn);
	}
	build(qp, w, &ib);
	if (rc__xmit(qp, &ib))
		return -EAGAIN;
	if (rc__psn_lt(ib.psn, qp->psn_hi))
		qp->stats.retransmits++;
	end = w->opcode == RC_WR_READ ? rc__psn_add(w->psn, w->npsn) : rc__psn_add(ib.psn, 1);
	if (rc__psn_lt(qp->psn_hi, end))
		qp->psn_hi = end;
	if (ib.ackreq)
		qp->ackreq_psn = ib.psn;
	if (qp->timer_at == INT64_MAX)
		arm_timer(qp);
	if (rc__is_rd_atomic(w->opcode) || ++qp->snd_off == w->npsn) {
		qp->sq_snd++;
		qp->snd_off = 0;
	}
	return 0;
}

void
rc__req_send(struct rc_qp *qp)
{
	while (!qp->blocked && rc__req_ready(qp))
		if (send_one(qp))
			break;
}

/* The cursor back to una: the oldest request, from its first unacknowledged PSN. */
static void
rewind_to_una(struct rc_qp *qp)
{
	const struct rc__swqe *w = swqe(qp, qp->sq_head);

	qp->sq_snd = qp->sq_head;
	qp->snd_off = 0;
	if (qp->sq_head != qp->sq_tail && w->sent)
		qp->snd_off = (uint32_t)rc__psn_diff(qp->una, w->psn);
	qp->rewound = true;
}

/* Forward progress: una moved. Retry counters and the timer start again. */
static void
progress(struct rc_qp *qp)
{
	qp->retry_left = qp->attr.retry_cnt;
	qp->rnr_left = qp->attr.rnr_retry;
	qp->rewound = false;
	if (qp->una == qp->psn_hi)
		qp->timer_at = INT64_MAX;
	else if (qp->rnr_at == INT64_MIN)
		arm_timer(qp);
	/* Acknowledged beyond what is being sent again: skip ahead. */
	if (rc__psn_lt(cursor_psn(qp), qp->una)) {
		rewind_to_una(qp);
		qp->rewound = false;
	}
}

/*
 * Everything before @upto is acknowledged: SEND and WRITE requests that
 * end there complete. Returns true when a READ or atomic before @upto
 * still lacks its response (the responder is past it: implicit NAK).
 */
static bool
acked(struct rc_qp *qp, uint32_t upto)
{
	bool moved = false, gap = false;

	while (qp->sq_head != qp->sq_tail && qp->state == RC_STATE_RTS) {
		struct rc__swqe *w = swqe(qp, qp->sq_head);
		uint32_t end = rc__psn_add(w->psn, w->npsn);

		if (!w->sent)
			break;
		if (rc__is_rd_atomic(w->opcode)) {
			gap = rc__psn_lt(qp->una, upto);
			break;
		}
		if (rc__psn_diff(end, upto) <= 0) {
			qp->una = end;
			moved = true;
			rc__complete_send(qp, RC_WC_SUCCESS);
			continue;
		}
		if (rc__psn_lt(qp->una, upto)) {
			qp->una = upto;
			moved = true;
		}
		break;
	}
	if (moved)
		progress(qp);
	return gap;
}

/* A gap in the responses: go back to una, once until una moves again. */
static void
implicit_nak(struct rc_qp *qp)
{
	qp->stats.dropped++;
	if (qp->rewound)
		return;
	qp->stats.implicit_naks++;
	rewind_to_una(qp);
}

/* @psn in [una - @slack, psn_hi): something this requester sent. */
static bool
in_window(const struct rc_qp *qp, uint32_t psn, int slack)
{
	return rc__psn_diff(psn, qp->una) >= -slack && rc__psn_lt(psn, qp->psn_hi);
}

/*
 * Take the responses before @psn as implicitly acknowledged; false (and
 * the packet dropped) when one is missing or the QP went to ERR.
 */
static bool
take_before(struct rc_qp *qp, uint32_t psn)
{
	if (acked(qp, psn)) {
		implicit_nak(qp);
		return false;
	}
	return qp->state == RC_STATE_RTS;
}

static void
read_resp(struct rc_qp *qp, const struct roce_ib *ib)
{
	struct rc__swqe *w;
	uint32_t idx, mtu = qp->attr.mtu;
	uint64_t off;
	bool last, says_last;

	if (!take_before(qp, ib->psn))
		return;
	w = swqe(qp, qp->sq_head);
	idx = (uint32_t)rc__psn_diff(ib->psn, w->psn);
	if (w->opcode != RC_WR_READ || idx >= w->npsn) {
		rc__fatal(qp, RC_WC_BAD_RESP_ERR); /* a READ response for something else */
		return;
	}
	/* take_before() saw to it that ib->psn is una: no response of this READ is missing. */
	/* FIRST and MIDDLE alike (a READ asked again starts with FIRST); the end must be right. */
	last = idx == w->npsn - 1;
	says_last = ib->opcode == ROCE_READ_RESP_LAST || ib->opcode == ROCE_READ_RESP_ONLY;
	off = (uint64_t)idx * mtu;
	if (last != says_last || ib->payload_len != (last ? w->len - off : mtu)) {
		rc__fatal(qp, RC_WC_BAD_RESP_ERR);
		return;
	}
	rc__sg_put(w->sg, w->nsg, off, ib->payload, ib->payload_len);
	w->rcvd = idx + 1;
	qp->una = rc__psn_add(ib->psn, 1);
	progress(qp);
	if (last)
		rc__complete_send(qp, RC_WC_SUCCESS);
}

static void
atomic_ack(struct rc_qp *qp, const struct roce_ib *ib)
{
	struct rc__swqe *w;

	if (!take_before(qp, ib->psn))
		return;
	w = swqe(qp, qp->sq_head);
	if ((w->opcode != RC_WR_CMP_SWP && w->opcode != RC_WR_FETCH_ADD) || w->psn != ib->psn) {
		rc__fatal(qp, RC_WC_BAD_RESP_ERR);
		return;
	}
	w->orig = ib->orig;
	rc__sg_put(w->sg, w->nsg, 0, &w->orig, sizeof(w->orig));
	qp->una = rc__psn_add(ib->psn, 1);
	progress(qp);
	rc__complete_send(qp, RC_WC_SUCCESS);
}

/* RNR NAK: wait the timer it names, then send again from its PSN. */
static void
rnr_nak(struct rc_qp *qp, const struct roce_ib *ib)
{
	qp->stats.rnr_naks_rcvd++;
	if (!take_before(qp, ib->psn) || qp->rnr_at != INT64_MIN)
		return;
	if (qp->rnr_left == 0) {
		rc__fatal(qp, RC_WC_RNR_RETRY_EXC_ERR);
		return;
	}
	if (qp->attr.rnr_retry != 7)
		qp->rnr_left--;
	qp->rnr_at = qp->now + rc_rnr_timer_ns(ib->aeth.value);
	qp->timer_at = INT64_MAX;
	rewind_to_una(qp);
}

static void
nak(struct rc_qp *qp, const struct roce_ib *ib)
{
	static const int status[] = {
		[ROCE_NAK_INVALID_REQ] = RC_WC_REM_INV_REQ_ERR,
		[ROCE_NAK_REMOTE_ACCESS] = RC_WC_REM_ACCESS_ERR,
		[ROCE_NAK_REMOTE_OP] = RC_WC_REM_OP_ERR,
		[ROCE_NAK_INVALID_RD_REQ] = RC_WC_REM_INV_REQ_ERR,
	};

	qp->stats.naks_rcvd++;
	if (ib->aeth.value == ROCE_NAK_PSN_SEQ) {
		/* Everything before is acknowledged; send again from there, once. */
		if (take_before(qp, ib->psn) && !qp->rewound)
			rewind_to_una(qp);
		return;
	}
	/* Fatal: the requests before it succeeded, the one it names failed. */
	acked(qp, ib->psn);
	rc__fatal(qp, status[ib->aeth.value]);
}

void
rc__req_input(struct rc_qp *qp, const struct roce_ib *ib)
{
	bool is_ack = ib->opcode == ROCE_ACK && ib->aeth.kind == ROCE_AETH_ACK;

	if (!in_window(qp, ib->psn, is_ack ? 1 : 0)) {
		qp->stats.dropped++; /* stale, duplicated or never asked for */
		return;
	}
	switch (ib->opcode) {
	case ROCE_READ_RESP_FIRST:
	case ROCE_READ_RESP_MIDDLE:
	case ROCE_READ_RESP_LAST:
	case ROCE_READ_RESP_ONLY:
		read_resp(qp, ib);
		return;
	case ROCE_ATOMIC_ACK:
		atomic_ack(qp, ib);
		return;
	default:
		break;
	}
	if (ib->aeth.kind == ROCE_AETH_RNR_NAK) {
		rnr_nak(qp, ib);
	} else if (ib->aeth.kind == ROCE_AETH_NAK) {
		nak(qp, ib);
	} else {
		qp->stats.acks_rcvd++;
		if (acked(qp, rc__psn_add(ib->psn, 1)))
			implicit_nak(qp);
	}
}

void
rc__req_timers(struct rc_qp *qp)
{
	if (qp->rnr_at != INT64_MIN && qp->now >= qp->rnr_at)
		qp->rnr_at = INT64_MIN; /* the cursor is at the PSN the RNR NAK named */
	if (qp->timer_at == INT64_MAX || qp->now < qp->timer_at)
		return;
	qp->stats.timeouts++;
	if (qp->una == qp->psn_hi) {
		qp->timer_at = INT64_MAX;
		return;
	}
	if (qp->retry_left == 0) {
		rc__fatal(qp, RC_WC_RETRY_EXC_ERR);
		return;
	}
	qp->retry_left--;
	rewind_to_una(qp);
	arm_timer(qp);
}
