/* SPDX-License-Identifier: MIT */
/*
 * libvmfabric verbs internals (include/vmfabric/vrdma.h): the objects behind
 * the public handles, and the seams between verbs.c (objects, state
 * machine, posting and polling), verbs_mr.c (shared segments, memory
 * regions, peers' regions mapped), verbs_shm.c (the one-host engine:
 * executing work requests on a peer's memory and taking its messages) and
 * verbs_cm.c (the connection manager).
 *
 * Locks, in the order they are taken: qp->sq_lock or qp->rq_lock, then
 * cq->lock; ctx->lock (control connection, object tables) is taken alone or
 * inside a QP lock, never the other way round.
 */
#ifndef VMFABRIC_LIB_VERBS_H
#define VMFABRIC_LIB_VERBS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "lib.h"
#include "vmfabric/vrdma.h"

#define VRDMA__MAX_SGE	   8u
#define VRDMA__MAX_INLINE  256u
#define VRDMA__MAX_WR	   4096u
#define VRDMA__MAX_RECV_WR WIRE_RDMA_RECV_RING
#define VRDMA__MAX_CQE	   65536u
#define VRDMA__RING	   (4u << 20) /* a QP's inbound ring: SEND and WRITE_WITH_IMM */
#define VRDMA__MAX_SEND	   (1u << 20) /* the largest SEND (a quarter of the ring) */
#define VRDMA__RMR_CACHE   8u

struct vrdma_context {
	struct vsk ctl;	      /* the device's control connection */
	pthread_mutex_t lock; /* ctl requests, tables, counts */
	int page_fd;
	struct wire_rdma_page *page; /* our key page (peers map it read-only) */
	struct vrdma_mr **mrs;	     /* by rkey >> 8 */
	uint64_t slots[WIRE_RDMA_QP_SLOTS / 64]; /* QP slots in use */
	uint32_t next_pd;
	unsigned npd, ncq, nch;
	struct vrdma_device_attr attr;
};

struct vrdma_pd {
	struct vrdma_context *ctx;
	uint32_t id;
	unsigned nmr, nqp; /* under ctx->lock */
};

struct vrdma__tag { /* epoll data of a channel's members */
	struct vrdma_cq *cq;
	struct vrdma_qp *qp; /* NULL: the CQ's own eventfd */
};

struct vrdma_comp_channel {
	struct vrdma_context *ctx;
	int ep; /* epoll set: CQs' eventfds, receive rings */
	pthread_mutex_t lock; /* cqs */
	struct vrdma_cq **cqs; /* its CQs, for sends that wait (RNR, attach, a full ring) */
	unsigned ncq;
};

struct vrdma_cq {
	struct vrdma_context *ctx;
	void *cq_context;
	struct vrdma_comp_channel *ch;
	pthread_mutex_t lock; /* entries */
	struct vrdma_wc *e;
	uint32_t cap, head, count, reserved;
	bool overflow;
	int efd; /* with a channel: written when an armed CQ gets a completion */
	struct vrdma__tag tag;
	atomic_int armed; /* 0, 1: any completion, 2: solicited or error only */
	unsigned events, acked;
	pthread_mutex_t qlock; /* the QP lists */
	struct vrdma_qp *sq_list, *rq_list;
	unsigned nqp;
};

/* A peer's memory region as this process maps it (through one QP). */
struct vrdma__rmr {
	uint32_t rkey; /* 0: free entry */
	uint32_t access, nseg;
	uint64_t va, len;
	struct {
		uint64_t va, len;
		uint8_t *map;
	} seg[WIRE_RDMA_SEGS];
	uint64_t used; /* for replacement */
};

struct vrdma__swqe {
	struct vrdma_send_wr wr; /* next and sg_list not used */
	struct vrdma_sge sge[VRDMA__MAX_SGE];
	uint32_t inl_len;
	bool signaled;
	uint8_t inl[VRDMA__MAX_INLINE];
};

struct vrdma__rwqe {
	uint64_t wr_id;
	int num_sge;
	struct vrdma_sge sge[VRDMA__MAX_SGE];
};

struct vrdma_qp {
	struct vrdma_pd *pd;
	struct vrdma_context *ctx;
	void *qp_context;
	uint32_t qpn, slot;
	_Atomic int state; /* enum vrdma_qp_state */
	struct vrdma_qp_attr attr;
	int sq_sig_all;
	struct vrdma_cq *scq, *rcq;
	struct vrdma_qp *snext, *rnext; /* in the CQs' lists (cq->qlock) */
	struct vrdma__tag tag;
	/* Send side (sq_lock) */
	pthread_mutex_t sq_lock;
	struct vrdma__swqe *sq;
	uint32_t sq_cap, sq_head, sq_count;
	bool attached;	      /* the peer's ring and key page are ours */
	int64_t attach_retry; /* next ATTACH attempt */
	struct qp *out;	      /* the peer's inbound ring (we produce queue 1) */
	int peer_page_fd;
	const struct wire_rdma_page *peer_page;
	const struct wire_rdma_slot *peer_slot;
	uint32_t peer_qpn;
	uint32_t peer_gen; /* the peer QP's connection we attached to (its slot's gen) */
	uint64_t recv_used;    /* messages sent that took a peer's receive */
	int64_t rnr_until;     /* waiting out an RNR */
	unsigned rnr_tries;
	struct vrdma__rmr rmr[VRDMA__RMR_CACHE];
	uint64_t rmr_clock;
	/* Receive side (rq_lock) */
	pthread_mutex_t rq_lock;
	struct vrdma__rwqe *rq;
	uint32_t rq_cap, rq_head, rq_count;
	uint64_t recv_posted;
	struct qp *in; /* our inbound ring (we consume queue 1) */
	/*
	 * A QP to another host (RTR with a global address): the daemon's RoCE
	 * engine runs it; work requests go as records on @dring (queue 0),
	 * completions come back (queue 1), consumed under sq_lock.
	 */
	bool roce;
	struct qp *dring;
	pthread_mutex_t dring_lock; /* its one producer: post_send, post_recv, to ERR */
};

/* Messages on a QP's inbound ring: this header, then a SEND's payload. */
struct vrdma__msg {
	uint8_t op; /* VRDMA__MSG_* */
	uint8_t solicited;
	uint16_t pad;
	uint32_t imm;
	uint32_t len; /* SEND: the payload after the header; WRITE_IMM: bytes written */
	uint32_t with_imm;
};
_Static_assert(sizeof(struct vrdma__msg) == 16, "vrdma__msg layout");
#define VRDMA__MSG_SEND	     1
#define VRDMA__MSG_WRITE_IMM 2

/* verbs.c */
/* A control connection to open, acting as @ctx's context (NULL: the process's now). */
void vrdma__vsk_init(struct vsk *v, const struct vrdma_context *ctx);
int vrdma__rpc(struct vrdma_context *ctx, unsigned type, void *body, const int *fds, int nfds,
	       struct wire_msg *rep);
/* A send WR's fields against the QP's caps (-EINVAL), its room (-ENOMEM); its bytes in *@total. */
int vrdma__check_wr(const struct vrdma_qp *qp, const struct vrdma_send_wr *wr, uint64_t *total);
int vrdma__cq_reserve(struct vrdma_cq *cq);
void vrdma__cq_unreserve(struct vrdma_cq *cq);
/* An error completion found the CQ full: the CQ is in error (IBA CQ overrun). */
void vrdma__cq_overrun(struct vrdma_cq *cq);
void vrdma__cq_commit(struct vrdma_cq *cq, const struct vrdma_wc *wc, bool solicited);
void vrdma__qp_to_err(struct vrdma_qp *qp);
int vrdma__modify(struct vrdma_qp *qp, struct vrdma_qp_attr *attr, int mask);

/* verbs_mr.c */
/* The local MR @lkey if [addr, addr + len) lies in it, in @pd, with @access. */
struct vrdma_mr *vrdma__lmr(struct vrdma_context *ctx, const struct vrdma_pd *pd, uint32_t lkey,
			    uint64_t addr, uint64_t len, unsigned access);
/* The peer's MR @rkey through @qp, mapped on first use; NULL: no access. */
struct vrdma__rmr *vrdma__rmr_get(struct vrdma_qp *qp, uint32_t rkey);
void vrdma__rmr_drop_all(struct vrdma_qp *qp);
/*
 * The bytes at @va of a mapped peer MR, and how many follow in the same
 * segment (*@avail); NULL if @va is outside the MR's segments.
 */
uint8_t *vrdma__rmr_at(const struct vrdma__rmr *m, uint64_t va, uint64_t *avail);

/* verbs_shm.c */
/*
 * Execute @w on the peer: 0 done, -EAGAIN to retry later (RNR wait, ring
 * full), or a completion status > 0.
 */
int vrdma__shm_exec(struct vrdma_qp *qp, struct vrdma__swqe *w);
/* Take messages from the inbound ring into posted receives; completions to @qp->rcq. */
void vrdma__shm_drain(struct vrdma_qp *qp);
int vrdma__shm_attach(struct vrdma_qp *qp);
void vrdma__shm_detach(struct vrdma_qp *qp);
int vrdma__shm_ring(struct vrdma_qp *qp, struct qp_fds *peer);

/* verbs_roce.c: QPs the daemon's RoCE engine runs */
int vrdma__roce_rtr(struct vrdma_qp *qp, const struct vrdma_qp_attr *a, int mask);
int vrdma__roce_rts(struct vrdma_qp *qp, const struct vrdma_qp_attr *a, int mask);
void vrdma__roce_err(struct vrdma_qp *qp);
int vrdma__roce_post_send(struct vrdma_qp *qp, const struct vrdma_send_wr *wr);
int vrdma__roce_post_recv(struct vrdma_qp *qp, const struct vrdma_recv_wr *wr);
/* Completions from the engine into the QP's CQs (sq_lock held). */
void vrdma__roce_drain(struct vrdma_qp *qp);

/*
 * verbs_cm.c. A test seam: when set, the connection manager moves a QP
 * towards another host (global address) to RTR with this instead of
 * vrdma_modify_qp(), so that tests can check what the daemons exchanged
 * and the QP's attributes without the RoCE data path. NULL in programs.
 */
extern int (*vrdma__cm_rtr_seam)(struct vrdma_qp *qp, struct vrdma_qp_attr *attr, int mask);

#endif
