/* SPDX-License-Identifier: MIT */
/*
 * The reliable-connected (RC) transport of RoCE v2 (InfiniBand Architecture
 * Specification, Vol. 1, chapter 9, "Transport layer"): one end of an RC
 * connection as a state machine without I/O. A requester executes the
 * local send queue (segments messages by the path MTU into PSN-numbered
 * request packets, handles ACKs, NAKs, RDMA READ responses and ATOMIC
 * acknowledgements, retransmits go-back-N); a responder takes request
 * packets, executes them against local memory and answers. Packets in and
 * out are the InfiniBand part only (struct roce_ib): the caller wraps them
 * with roce_build() and unwraps them with roce_parse() (roce.h). Time is
 * the caller's (now_ns arguments, any monotonic clock), so that tests are
 * deterministic.
 *
 * Threat model: every packet given to rc_input() comes from the network
 * and may have been written by anyone: each field is checked against the
 * QP's state before it is used; remote addresses only ever reach memory
 * through rc_ops.remote_mem(), which the caller implements with the bounds
 * and permissions of its memory regions; a peer can make its own
 * connection fail (IBA's NAKs and error states) but not make this module
 * read or write outside what remote_mem() returned, loop, or allocate.
 *
 * Not here: UC/UD/RD, SRQs, memory windows, fences, end-to-end credits (the
 * responder advertises none; the requester relies on RNR NAKs), automatic
 * path migration, congestion control (FECN/BECN are ignored).
 */
#ifndef VMFABRIC_RDMA_RC_H
#define VMFABRIC_RDMA_RC_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "roce.h"

struct rc_qp;

/* Send work request opcodes (ibverbs' enum ibv_wr_opcode numbering). */
enum rc_wr_opcode {
	RC_WR_WRITE = 0,
	RC_WR_WRITE_IMM = 1,
	RC_WR_SEND = 2,
	RC_WR_SEND_IMM = 3,
	RC_WR_READ = 4,
	RC_WR_CMP_SWP = 5,
	RC_WR_FETCH_ADD = 6,
};

/* Receive completion opcodes (ibverbs' IBV_WC_RECV, IBV_WC_RECV_RDMA_WITH_IMM). */
#define RC_WC_RECV		 128
#define RC_WC_RECV_RDMA_WITH_IMM 129

/* Completion status (ibverbs' enum ibv_wc_status numbering). */
enum rc_wc_status {
	RC_WC_SUCCESS = 0,
	RC_WC_LOC_LEN_ERR = 1,	      /* receive buffer too small for the SEND */
	RC_WC_LOC_QP_OP_ERR = 2,      /* (not produced yet) */
	RC_WC_LOC_PROT_ERR = 4,	      /* (not produced yet) */
	RC_WC_WR_FLUSH_ERR = 5,	      /* the QP went to ERR before the WR was done */
	RC_WC_BAD_RESP_ERR = 7,	      /* the responder answered what IBA does not allow */
	RC_WC_LOC_ACCESS_ERR = 8,     /* (not produced yet) */
	RC_WC_REM_INV_REQ_ERR = 9,    /* NAK invalid request (or invalid RD request) */
	RC_WC_REM_ACCESS_ERR = 10,    /* NAK remote access error; responder: access refused */
	RC_WC_REM_OP_ERR = 11,	      /* NAK remote operational error */
	RC_WC_RETRY_EXC_ERR = 12,     /* retry_cnt timeouts without progress */
	RC_WC_RNR_RETRY_EXC_ERR = 13, /* rnr_retry RNR NAKs without progress */
};

/* Remote access rights asked of rc_ops.remote_mem() (ibverbs' IBV_ACCESS_* bits). */
#define RC_ACCESS_REMOTE_WRITE	(1u << 1)
#define RC_ACCESS_REMOTE_READ	(1u << 2)
#define RC_ACCESS_REMOTE_ATOMIC (1u << 3)

/* Largest message (IBA: 2^31 bytes). */
#define RC_MSG_MAX (1u << 31)

/*
 * A send work request. The local buffers are already resolved to
 * pointers by the caller; rc_post_send() copies the request and the
 * array @sg, but the buffers @sg points to must stay valid (and, for
 * SEND and WRITE, unchanged) until the request completes or is flushed.
 * SEND, WRITE: @sg is the data. READ: @sg receives the data, the READ's
 * length is its total. CMP_SWP and FETCH_ADD: the original remote value
 * (host byte order) is written to the first 8 bytes of @sg.
 */
struct rc_wqe {
	uint64_t wr_id;
	uint8_t opcode;	      /* enum rc_wr_opcode */
	bool signaled;	      /* a completion on success (errors always complete) */
	bool solicited;	      /* SEND, SEND_IMM, WRITE_IMM: the SE bit on the last packet */
	uint32_t imm;	      /* SEND_IMM, WRITE_IMM: to roce_ib.imm (ImmDt) as it is */
	uint64_t remote_va;   /* WRITE, READ, atomics */
	uint32_t rkey;	      /* WRITE, READ, atomics */
	uint64_t compare_add; /* CMP_SWP: compare; FETCH_ADD: the addend */
	uint64_t swap;	      /* CMP_SWP: the new value when equal */
	const struct iovec *sg;
	int nsg; /* 0 .. rc_attr.max_sge */
};

/* A receive work request: where an incoming SEND's data goes (copied like rc_wqe). */
struct rc_rqe {
	uint64_t wr_id;
	const struct iovec *sg;
	int nsg;
};

/*
 * A completion. opcode: the WR's on the send side; RC_WC_RECV or
 * RC_WC_RECV_RDMA_WITH_IMM on the receive side. byte_len: receive, the
 * SEND's bytes or the WRITE_IMM's length; send side, the WR's length
 * (atomics: 8).
 */
struct rc_cqe {
	uint64_t wr_id;
	int status; /* enum rc_wc_status */
	uint8_t opcode;
	bool recv;	/* a receive WR's completion */
	bool with_imm;	/* receive: imm is valid */
	bool solicited; /* receive: the SE bit was set */
	uint32_t byte_len;
	uint32_t imm;
};

struct rc_ops {
	/*
	 * Emit one packet. @ib and the payload it points to are valid during
	 * the call only. Return 0; -EAGAIN if the link is full (the same
	 * packet is emitted again at a later rc_poll()); any other negative
	 * value drops the packet as if lost on the wire. Must not call back
	 * into this QP.
	 */
	int (*xmit)(void *ctx, const struct roce_ib *ib);
	/*
	 * Responder: the local memory for a remote access of @len bytes (>= 1)
	 * at @va under @rkey with the right @access (one RC_ACCESS_REMOTE_*
	 * bit). Return 0 and a pointer to @len contiguous bytes in *@out,
	 * valid until the next call into this QP; -EACCES (bad R_Key, bounds
	 * or permission: NAK remote access error), any other negative errno
	 * (NAK remote operational error). Called again for every packet, so
	 * that a region may be deregistered at any time.
	 */
	int (*remote_mem)(void *ctx, uint32_t rkey, uint64_t va, uint32_t len, unsigned access,
			  void **out);
	/*
	 * A completion, send side or receive side, each side in posting order
	 * (as the IBA requires). May call rc_post_send() and rc_post_recv() on this QP,
	 * nothing else of it.
	 */
	void (*complete)(void *ctx, const struct rc_cqe *c);
};

struct rc_attr {
	unsigned mtu;	   /* path MTU: 256, 512, 1024, 2048 or 4096 */
	uint32_t qpn;	   /* this QP's number (24 bits): incoming packets must carry it */
	uint32_t dest_qpn; /* the peer's (24 bits) */
	uint32_t sq_psn;   /* the first PSN this requester sends (24 bits) */
	uint32_t rq_psn;   /* the first PSN this responder expects: the peer's sq_psn */
	uint16_t pkey;	   /* P_Key of the partition (ROCE_PKEY_DEFAULT) */
	uint8_t timeout;   /* local ACK timeout: 4.096 us * 2^timeout; 0: none (IBA: infinite) */
	uint8_t retry_cnt; /* 0..7: retransmissions after timeouts without progress */
	uint8_t rnr_retry; /* 0..7: retries after RNR NAKs without progress; 7: no limit */
	uint8_t min_rnr_timer;	     /* 0..31: the RNR NAK timer code it sends (IBA table 45) */
	unsigned max_rd_atomic;	     /* 0..16: READ/atomics this requester has outstanding */
	unsigned max_dest_rd_atomic; /* 0..16: READ/atomics this responder takes at once */
	unsigned sq_depth;	     /* 1..65536 send work requests */
	unsigned rq_depth;	     /* 1..65536 receive work requests */
	unsigned max_sge;	     /* 1..64 entries per work request's sg */
	unsigned window;	     /* unacknowledged PSNs in flight: 0 (256) or 1..65536 */
};

enum rc_state {
	RC_STATE_RTS, /* ready to send: both directions work */
	RC_STATE_ERR, /* error: everything outstanding flushed, packets dropped */
};

/* Counters, for this QP's life. A duplicated or retransmitted packet counts each time. */
struct rc_stats {
	uint64_t packets_sent, packets_rcvd; /* every packet through xmit() / rc_input() */
	uint64_t bytes_sent, bytes_rcvd;     /* their payload bytes */
	uint64_t retransmits;		     /* request packets sent again */
	uint64_t timeouts;		     /* local ACK timer expiries */
	uint64_t implicit_naks;		     /* rewinds on a gap in responses */
	uint64_t acks_sent, acks_rcvd;	     /* ACK packets with an ACK syndrome */
	uint64_t naks_sent, naks_rcvd;	     /* NAKs other than RNR: sequence error and fatal */
	uint64_t rnr_naks_sent, rnr_naks_rcvd;
	uint64_t dup_requests; /* responder: duplicate request packets */
	uint64_t read_resps_sent, atomic_acks_sent;
	uint64_t dropped; /* rc_input() refusals, stale and out-of-window packets */
};

/*
 * Create a QP in RTS with @attr (copied). @ops is copied; @ctx is passed
 * to each callback. Returns 0 and the QP in *@out, -EINVAL (an attribute
 * out of range, a callback missing) or -ENOMEM.
 */
int rc_create(const struct rc_attr *attr, const struct rc_ops *ops, void *ctx, struct rc_qp **out);

/* Free @qp (NULL is fine): no completions, nothing sent. */
void rc_destroy(struct rc_qp *qp);

/*
 * Queue a send work request (copied, see struct rc_wqe). Nothing is sent
 * before the next rc_poll() (or rc_input()). In ERR the request is taken
 * and completes with RC_WC_WR_FLUSH_ERR at the next rc_poll(). Returns 0;
 * -ENOMEM when the send queue is full; -EINVAL for an opcode that does not
 * exist, nsg out of range, a message over RC_MSG_MAX (or over 2^22
 * packets), an atomic whose sg has fewer than 8 bytes, READ or atomic
 * with max_rd_atomic 0.
 */
int rc_post_send(struct rc_qp *qp, const struct rc_wqe *wqe);

/*
 * Queue a receive work request (copied). In ERR it completes with
 * RC_WC_WR_FLUSH_ERR at the next rc_poll(). Returns 0, -ENOMEM (the
 * receive queue is full) or -EINVAL (nsg out of range, over RC_MSG_MAX).
 */
int rc_post_recv(struct rc_qp *qp, const struct rc_rqe *rqe);

/*
 * A packet for this QP (roce_parse()'s ib, or any fields at all: they are
 * checked). Executes requests, takes responses, may complete work and
 * emit packets. @now_ns: the caller's clock. Returns 0 when the packet
 * was taken (duplicates included); -EINVAL when it was dropped as not
 * this QP's or malformed (destination QP, P_Key, opcode, payload rules);
 * -ESTALE when it was dropped as out of sequence or out of window;
 * -ENOTCONN in ERR.
 */
int rc_input(struct rc_qp *qp, const struct roce_ib *ib, int64_t now_ns);

/* Transmit what can be sent, fire the timers that are due, deliver flushes. */
void rc_poll(struct rc_qp *qp, int64_t now_ns);

/*
 * When rc_poll() must be called next: the earliest timer, the time of the
 * last call when there is something to send now, or INT64_MAX. After an
 * xmit() returned -EAGAIN the QP does not ask to be polled until a timer:
 * call rc_poll() when the link takes packets again.
 */
int64_t rc_next_deadline(const struct rc_qp *qp);

/*
 * Move @qp to ERR (ibv_modify_qp to IBV_QPS_ERR): every outstanding send
 * and receive work request completes with RC_WC_WR_FLUSH_ERR, in posting
 * order, before this returns; nothing more is sent or taken.
 */
void rc_set_error(struct rc_qp *qp);

/* RC_STATE_RTS, or RC_STATE_ERR after an error or rc_set_error(). */
enum rc_state rc_state(const struct rc_qp *qp);
/* A copy of @qp's counters into *@out. */
void rc_get_stats(const struct rc_qp *qp, struct rc_stats *out);

/* The RNR NAK timer of IBA table 45, code 0..31, in nanoseconds. */
int64_t rc_rnr_timer_ns(unsigned code);
/* The local ACK timeout for @timeout (1..31), nanoseconds; INT64_MAX for 0. */
int64_t rc_timeout_ns(unsigned timeout);

#endif
