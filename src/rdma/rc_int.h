/* SPDX-License-Identifier: MIT */
/*
 * Internals of the RC transport shared by rc.c (queues, completions, the
 * error state, the public entry points), rc_req.c (the requester) and
 * rc_resp.c (the responder). Not for other modules: the QP is an
 * incomplete type outside these three files.
 *
 * Rings (send queue, receive queue, responses, atomic results) use
 * free-running 32-bit counters; a slot is counter % size. PSNs are 24-bit
 * and compared modulo 2^24 (rc__psn_diff); a requester never has more
 * than 2^23 PSNs outstanding (window + the largest READ, see rc_post_send).
 */
#ifndef VMFABRIC_RDMA_RC_INT_H
#define VMFABRIC_RDMA_RC_INT_H

#include "rc.h"

#define RC__PSN_MASK 0xffffffu
/* A requester sets AckReq at least every this many packets; a responder ACKs as often. */
#define RC__ACK_EVERY 16
/* Responses to duplicate READ/atomic requests queued at once, beyond max_dest_rd_atomic. */
#define RC__REPLAY_MAX 4
/* The most PSNs one message may take (so that window + message < 2^23). */
#define RC__MSG_PSNS_MAX   (1u << 22)
#define RC__WINDOW_DEFAULT 256

/* A send work request as the requester keeps it. Written by the requester only. */
struct rc__swqe {
	uint64_t wr_id;
	uint8_t opcode;
	bool signaled, solicited;
	uint32_t imm, rkey;
	uint64_t remote_va, compare_add, swap;
	struct iovec *sg; /* the QP's copy: rc_qp.sq_sg + slot * max_sge */
	int nsg;
	uint32_t len;  /* bytes: the sum of sg (atomics: 8) */
	uint32_t npsn; /* PSNs the request takes: packets, or READ response packets */
	bool sent;     /* psn assigned: sent at least once */
	uint32_t psn;  /* its first PSN */
	uint32_t rcvd; /* READ: response packets taken */
	uint64_t orig; /* atomics: the original value from the ATOMIC ACK */
};

struct rc__rwqe {
	uint64_t wr_id;
	struct iovec *sg; /* rc_qp.rq_sg + slot * max_sge */
	int nsg;
	uint32_t len;
};

/* A response the responder has to send, in PSN order (the response queue). */
enum rc__rsp_kind {
	RC__RSP_ACK,	/* ACK or NAK: aeth kind/value at psn */
	RC__RSP_READ,	/* READ response packets psn..last */
	RC__RSP_ATOMIC, /* ATOMIC ACK at psn with orig */
};

struct rc__rsp {
	uint8_t kind;	      /* enum rc__rsp_kind */
	uint8_t syn, val;     /* ACK: the AETH syndrome's kind and value */
	bool replay;	      /* READ/ATOMIC: answers a duplicate request */
	uint32_t psn;	      /* ACK, ATOMIC: its PSN; READ: the next response packet's */
	uint32_t first, last; /* READ: the PSNs of its first and last response packets */
	uint32_t msn;
	uint32_t rkey, len; /* READ: the region and the bytes from first */
	uint64_t va;
	uint64_t orig; /* ATOMIC */
};

/* A saved atomic result: a duplicate atomic request is answered from it. */
struct rc__atomic_res {
	bool valid;
	uint32_t psn;
	uint64_t orig;
};

/* The responder's message in progress (between FIRST and LAST). */
enum rc__msg { RC__MSG_NONE, RC__MSG_SEND, RC__MSG_WRITE };

/*
 * One QP. Single-threaded: every field is written by the rc_* call in
 * progress only (the callbacks run inside those calls).
 */
struct rc_qp {
	struct rc_attr attr;
	struct rc_ops ops;
	void *ctx;
	enum rc_state state;
	int64_t now;	/* the latest now_ns given */
	bool blocked;	/* xmit() said -EAGAIN: stop sending until the next rc_poll() */
	bool flush_due; /* work requests posted in ERR wait for rc_poll() */
	struct rc_stats stats;
	uint8_t *txbuf; /* a packet's payload gathered from several sg entries */

	/* Send queue: [sq_head, sq_tail) posted, not completed; sq_snd the next to send. */
	struct rc__swqe *sq;
	struct iovec *sq_sg;
	uint32_t sq_head, sq_snd, sq_tail;
	uint32_t snd_off;    /* packets of sq[sq_snd] already sent in this pass */
	uint32_t next_psn;   /* the first PSN of the next request never sent */
	uint32_t una;	     /* the oldest PSN not acknowledged (or responded to) */
	uint32_t psn_hi;     /* one past the highest PSN sent */
	uint32_t ackreq_psn; /* the last PSN sent with AckReq */
	int64_t timer_at;    /* local ACK timer, INT64_MAX when stopped */
	int64_t rnr_at;	     /* RNR wait until, INT64_MIN when not waiting */
	unsigned retry_left, rnr_left;
	bool rewound; /* went back to una already, since una last moved */

	/* Receive queue: [rq_head, rq_tail) posted; rq_head in use during a SEND. */
	struct rc__rwqe *rq;
	struct iovec *rq_sg;
	uint32_t rq_head, rq_tail;

	/* Responder */
	uint32_t epsn;	  /* the expected PSN */
	uint32_t msn;	  /* messages completed (24 bits) */
	bool nak_sent;	  /* a sequence or RNR NAK sent for epsn: drop new requests silently */
	unsigned unacked; /* request packets taken since the last ACK queued */
	uint8_t cur;	  /* enum rc__msg */
	uint32_t cur_off; /* bytes of the message so far */
	uint32_t w_rkey;  /* WRITE in progress: its RETH */
	uint64_t w_va;
	uint32_t w_len;
	struct rc__rsp *rsp;
	uint32_t rsp_cap, rsp_head, rsp_tail;
	unsigned rsp_new;    /* READ/ATOMIC responses queued for new requests */
	unsigned rsp_replay; /* ... for duplicates */
	struct rc__atomic_res *ares;
	uint32_t ares_n, ares_next;
};

/* a - b as a signed distance modulo 2^24. */
static inline int32_t
rc__psn_diff(uint32_t a, uint32_t b)
{
	uint32_t d = (a - b) & RC__PSN_MASK;

	return d >= 0x800000u ? (int32_t)d - 0x1000000 : (int32_t)d;
}

static inline bool
rc__psn_lt(uint32_t a, uint32_t b)
{
	return rc__psn_diff(a, b) < 0;
}

static inline uint32_t
rc__psn_add(uint32_t a, uint32_t n)
{
	return (a + n) & RC__PSN_MASK;
}

static inline bool
rc__is_rd_atomic(uint8_t wr_opcode)
{
	return wr_opcode == RC_WR_READ || wr_opcode == RC_WR_CMP_SWP ||
	       wr_opcode == RC_WR_FETCH_ADD;
}

/* rc.c */
int rc__xmit(struct rc_qp *qp, struct roce_ib *ib);
void rc__fatal(struct rc_qp *qp, int status);
void rc__complete_send(struct rc_qp *qp, int status);
void rc__complete_recv(struct rc_qp *qp, const struct rc_cqe *c);
/* Bytes [off, off + n) of a scatter list: copy in, or gather (into @bounce if split). */
void rc__sg_put(const struct iovec *sg, int nsg, uint64_t off, const void *src, size_t n);
const void *rc__sg_get(const struct iovec *sg, int nsg, uint64_t off, size_t n, uint8_t *bounce);

/* rc_req.c: the requester */
void rc__req_input(struct rc_qp *qp, const struct roce_ib *ib);
void rc__req_send(struct rc_qp *qp);
void rc__req_timers(struct rc_qp *qp);
bool rc__req_ready(const struct rc_qp *qp);
int64_t rc__req_deadline(const struct rc_qp *qp);

/* rc_resp.c: the responder */
int rc__resp_create(struct rc_qp *qp);
void rc__resp_input(struct rc_qp *qp, const struct roce_ib *ib);
void rc__resp_send(struct rc_qp *qp);
void rc__resp_clear(struct rc_qp *qp);

#endif
