/* SPDX-License-Identifier: MIT */
/*
 * RC queue pairs (vrdma.h): creation with their capabilities, the IBA's
 * state machine (RESET -> INIT -> RTR -> RTS, any -> ERR or RESET) with the
 * attributes each transition requires, and the connection the daemon makes
 * at RTR: the QP's inbound ring goes to the daemon, which hands it to the
 * peer QP once that one is RTR towards this one.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "verbs.h"

static int
slot_take(struct vrdma_context *ctx)
{
	for (unsigned i = 0; i < WIRE_RDMA_QP_SLOTS; i++)
		if (!(ctx->slots[i / 64] & (1ull << (i % 64)))) {
			ctx->slots[i / 64] |= 1ull << (i % 64);
			return (int)i;
		}
	return -ENOSPC;
}

static void
slot_reset(struct vrdma_context *ctx, uint32_t slot)
{
	struct wire_rdma_slot *s = &ctx->page->slots[slot];

	atomic_store(&s->recv_posted, 0);
	atomic_store(&s->err, 0);
	atomic_store(&s->qp_access, 0);
	/* Pairs with the acquire load in the peer's vrdma__shm_exec(). */
	atomic_fetch_add_explicit(&s->gen, 1, memory_order_release);
}

static void
cq_link(struct vrdma_qp *qp)
{
	pthread_mutex_lock(&qp->scq->qlock);
	qp->snext = qp->scq->sq_list;
	qp->scq->sq_list = qp;
	pthread_mutex_unlock(&qp->scq->qlock);
	pthread_mutex_lock(&qp->rcq->qlock);
	qp->rnext = qp->rcq->rq_list;
	qp->rcq->rq_list = qp;
	pthread_mutex_unlock(&qp->rcq->qlock);
}

static void
cq_unlink(struct vrdma_qp *qp)
{
	struct vrdma_qp **p;

	pthread_mutex_lock(&qp->scq->qlock);
	for (p = &qp->scq->sq_list; *p && *p != qp; p = &(*p)->snext)
		;
	if (*p)
		*p = qp->snext;
	pthread_mutex_unlock(&qp->scq->qlock);
	pthread_mutex_lock(&qp->rcq->qlock);
	for (p = &qp->rcq->rq_list; *p && *p != qp; p = &(*p)->rnext)
		;
	if (*p)
		*p = qp->rnext;
	pthread_mutex_unlock(&qp->rcq->qlock);
}

int
vrdma_create_qp(struct vrdma_pd *pd, struct vrdma_qp_init_attr *ia, struct vrdma_qp **out)
{
	struct vrdma_context *ctx = pd->ctx;
	struct vrdma_qp_cap *c = &ia->cap;
	struct wire_rdma_qp w = { .pd = pd->id };
	struct vrdma_qp *qp;
	int slot, err;

	if (ia->qp_type != VRDMA_QPT_RC || !ia->send_cq || !ia->recv_cq ||
	    ia->send_cq->ctx != ctx || ia->recv_cq->ctx != ctx)
		return -EINVAL;
	if (c->max_send_wr > VRDMA__MAX_WR || c->max_recv_wr > VRDMA__MAX_RECV_WR ||
	    c->max_send_sge > VRDMA__MAX_SGE || c->max_recv_sge > VRDMA__MAX_SGE ||
	    c->max_inline_data > VRDMA__MAX_INLINE)
		return -EINVAL;
	c->max_send_wr = c->max_send_wr ? c->max_send_wr : 1;
	c->max_recv_wr = c->max_recv_wr ? c->max_recv_wr : 1;
	c->max_send_sge = c->max_send_sge ? c->max_send_sge : 1;
	c->max_recv_sge = c->max_recv_sge ? c->max_recv_sge : 1;
	if (!(qp = calloc(1, sizeof(*qp))))
		return -ENOMEM;
	qp->sq = calloc(c->max_send_wr, sizeof(*qp->sq));
	qp->rq = calloc(c->max_recv_wr, sizeof(*qp->rq));
	if (!qp->sq || !qp->rq) {
		err = -ENOMEM;
		goto fail;
	}
	pthread_mutex_lock(&ctx->lock);
	slot = slot_take(ctx);
	pthread_mutex_unlock(&ctx->lock);
	if (slot < 0) {
		err = slot;
		goto fail;
	}
	qp->slot = (uint32_t)slot;
	slot_reset(ctx, qp->slot);
	w.slot = qp->slot;
	if ((err = vrdma__rpc(ctx, WIRE_RDMA_QP_CREATE, &w, NULL, 0, NULL))) {
		pthread_mutex_lock(&ctx->lock);
		ctx->slots[slot / 64] &= ~(1ull << (slot % 64));
		pthread_mutex_unlock(&ctx->lock);
		goto fail;
	}
	qp->qpn = w.out_qpn;
	qp->pd = pd;
	qp->ctx = ctx;
	qp->qp_context = ia->qp_context;
	qp->scq = ia->send_cq;
	qp->rcq = ia->recv_cq;
	qp->sq_sig_all = ia->sq_sig_all;
	qp->sq_cap = c->max_send_wr;
	qp->rq_cap = c->max_recv_wr;
	qp->attr.cap = *c;
	qp->attr.qp_state = VRDMA_QPS_RESET;
	qp->peer_page_fd = -1;
	qp->tag.cq = qp->rcq;
	qp->tag.qp = qp;
	pthread_mutex_init(&qp->sq_lock, NULL);
	pthread_mutex_init(&qp->rq_lock, NULL);
	pthread_mutex_init(&qp->dring_lock, NULL);
	atomic_store(&qp->state, VRDMA_QPS_RESET);
	pthread_mutex_lock(&ctx->lock);
	pd->nqp++;
	qp->scq->nqp++;
	qp->rcq->nqp++;
	pthread_mutex_unlock(&ctx->lock);
	cq_link(qp);
	*out = qp;
	return 0;
fail:
	free(qp->sq);
	free(qp->rq);
	free(qp);
	return err;
}

uint32_t
vrdma_qp_num(const struct vrdma_qp *qp)
{
	return qp->qpn;
}

/* Back to RESET: queues emptied without completions, the connection dropped. */
static void
qp_reset(struct vrdma_qp *qp, bool tell_daemon)
{
	struct wire_rdma_qp w = { .qpn = qp->qpn };

	vrdma__shm_detach(qp);
	/* vrdma_req_notify_cq() arms the rings under the CQ's qlock. */
	pthread_mutex_lock(&qp->rcq->qlock);
	if (qp->dring) {
		if (qp->rcq->ch)
			epoll_ctl(qp->rcq->ch->ep, EPOLL_CTL_DEL, qp_poll_fd(qp->dring), NULL);
		qp_close(qp->dring);
		qp->dring = NULL;
	}
	qp->roce = false;
	if (qp->in) {
		if (qp->rcq->ch)
			epoll_ctl(qp->rcq->ch->ep, EPOLL_CTL_DEL, qp_poll_fd(qp->in), NULL);
		qp_close(qp->in);
		qp->in = NULL;
	}
	pthread_mutex_unlock(&qp->rcq->qlock);
	qp->sq_head = qp->sq_count = qp->rq_head = qp->rq_count = 0;
	qp->recv_posted = 0;
	qp->attach_retry = 0;
	slot_reset(qp->ctx, qp->slot);
	if (tell_daemon)
		vrdma__rpc(qp->ctx, WIRE_RDMA_QP_RESET, &w, NULL, 0, NULL);
}

int
vrdma_destroy_qp(struct vrdma_qp *qp)
{
	struct vrdma_context *ctx = qp->ctx;
	struct wire_rdma_qp w = { .qpn = qp->qpn };

	cq_unlink(qp);
	pthread_mutex_lock(&qp->sq_lock);
	pthread_mutex_lock(&qp->rq_lock);
	qp_reset(qp, false);
	pthread_mutex_unlock(&qp->rq_lock);
	pthread_mutex_unlock(&qp->sq_lock);
	vrdma__rpc(ctx, WIRE_RDMA_QP_DESTROY, &w, NULL, 0, NULL);
	pthread_mutex_lock(&ctx->lock);
	ctx->slots[qp->slot / 64] &= ~(1ull << (qp->slot % 64));
	qp->pd->nqp--;
	qp->scq->nqp--;
	qp->rcq->nqp--;
	pthread_mutex_unlock(&ctx->lock);
	pthread_mutex_destroy(&qp->sq_lock);
	pthread_mutex_destroy(&qp->rq_lock);
	pthread_mutex_destroy(&qp->dring_lock);
	free(qp->sq);
	free(qp->rq);
	free(qp);
	return 0;
}

/* INIT -> RTR: the inbound ring to the daemon, connected towards the peer. */
static int
qp_rtr(struct vrdma_qp *qp, const struct vrdma_qp_attr *a, int mask)
{
	struct wire_rdma_qp w = { .qpn = qp->qpn, .dest_cid = a->ah_attr.dest_cid,
				  .dest_qpn = a->dest_qp_num };
	struct qp_fds peer;
	int err, pfd;

	if (a->ah_attr.is_global)
		return vrdma__roce_rtr(qp, a, mask); /* another host: the daemon's RoCE engine */
	if ((err = vrdma__shm_ring(qp, &peer)))
		return err;
	err = vrdma__rpc(qp->ctx, WIRE_RDMA_QP_RTR, &w, (int[]){ peer.mem, peer.wake,
								  peer.peer_wake, peer.alive },
			 4, NULL);
	close(peer.mem), close(peer.wake), close(peer.peer_wake), close(peer.alive);
	if (!err && qp->rcq->ch) {
		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &qp->tag };

		if ((pfd = qp_poll_fd(qp->in)) < 0)
			err = pfd;
		else if (epoll_ctl(qp->rcq->ch->ep, EPOLL_CTL_ADD, pfd, &ev) < 0)
			err = -errno;
	}
	if (err) {
		qp_close(qp->in);
		qp->in = NULL;
		return err;
	}
	qp->ctx->page->slots[qp->slot].min_rnr_timer = a->min_rnr_timer;
	return 0;
}

#define REQ_INIT (VRDMA_QP_PKEY_INDEX | VRDMA_QP_PORT | VRDMA_QP_ACCESS_FLAGS)
#define REQ_RTR                                                                                    \
	(VRDMA_QP_AV | VRDMA_QP_PATH_MTU | VRDMA_QP_DEST_QPN | VRDMA_QP_RQ_PSN |                   \
	 VRDMA_QP_MAX_DEST_RD_ATOMIC | VRDMA_QP_MIN_RNR_TIMER)
#define REQ_RTS                                                                                    \
	(VRDMA_QP_SQ_PSN | VRDMA_QP_TIMEOUT | VRDMA_QP_RETRY_CNT | VRDMA_QP_RNR_RETRY |             \
	 VRDMA_QP_MAX_QP_RD_ATOMIC)
#define OPT_ANY (VRDMA_QP_STATE | VRDMA_QP_CUR_STATE)

/* The IBA's modify-QP table for RC: required and allowed attributes per transition. */
static int
transition(int from, int to, int mask)
{
	int req = 0, opt = OPT_ANY;

	if (to == VRDMA_QPS_RESET || to == VRDMA_QPS_ERR)
		return 0;
	if (from == VRDMA_QPS_RESET && to == VRDMA_QPS_INIT)
		req = REQ_INIT;
	else if (from == VRDMA_QPS_INIT && to == VRDMA_QPS_INIT)
		opt |= REQ_INIT;
	else if (from == VRDMA_QPS_INIT && to == VRDMA_QPS_RTR)
		req = REQ_RTR, opt |= VRDMA_QP_ACCESS_FLAGS | VRDMA_QP_PKEY_INDEX;
	else if (from == VRDMA_QPS_RTR && to == VRDMA_QPS_RTS)
		req = REQ_RTS, opt |= VRDMA_QP_ACCESS_FLAGS | VRDMA_QP_MIN_RNR_TIMER;
	else if (from == VRDMA_QPS_RTS && to == VRDMA_QPS_RTS)
		opt |= VRDMA_QP_ACCESS_FLAGS | VRDMA_QP_MIN_RNR_TIMER;
	else
		return -EINVAL;
	if ((mask & req) != req || (mask & ~(req | opt)))
		return -EINVAL;
	return 0;
}

static void
take_attrs(struct vrdma_qp *qp, const struct vrdma_qp_attr *a, int mask)
{
	struct vrdma_qp_attr *q = &qp->attr;

	if (mask & VRDMA_QP_ACCESS_FLAGS) {
		q->qp_access_flags = a->qp_access_flags;
		atomic_store(&qp->ctx->page->slots[qp->slot].qp_access, a->qp_access_flags);
	}
	if (mask & VRDMA_QP_PKEY_INDEX)
		q->pkey_index = a->pkey_index;
	if (mask & VRDMA_QP_PORT)
		q->port_num = a->port_num;
	if (mask & VRDMA_QP_AV)
		q->ah_attr = a->ah_attr;
	if (mask & VRDMA_QP_PATH_MTU)
		q->path_mtu = a->path_mtu;
	if (mask & VRDMA_QP_DEST_QPN)
		q->dest_qp_num = a->dest_qp_num;
	if (mask & VRDMA_QP_RQ_PSN)
		q->rq_psn = a->rq_psn & 0xffffff;
	if (mask & VRDMA_QP_SQ_PSN)
		q->sq_psn = a->sq_psn & 0xffffff;
	if (mask & VRDMA_QP_MAX_DEST_RD_ATOMIC)
		q->max_dest_rd_atomic = a->max_dest_rd_atomic;
	if (mask & VRDMA_QP_MAX_QP_RD_ATOMIC)
		q->max_rd_atomic = a->max_rd_atomic;
	if (mask & VRDMA_QP_MIN_RNR_TIMER) {
		q->min_rnr_timer = a->min_rnr_timer & 31;
		qp->ctx->page->slots[qp->slot].min_rnr_timer = q->min_rnr_timer;
	}
	if (mask & VRDMA_QP_TIMEOUT)
		q->timeout = a->timeout & 31;
	if (mask & VRDMA_QP_RETRY_CNT)
		q->retry_cnt = a->retry_cnt & 7;
	if (mask & VRDMA_QP_RNR_RETRY)
		q->rnr_retry = a->rnr_retry & 7;
}

static bool
attrs_valid(const struct vrdma_qp_attr *a, int mask)
{
	if ((mask & VRDMA_QP_PATH_MTU) && (a->path_mtu < VRDMA_MTU_256 || a->path_mtu > VRDMA_MTU_4096))
		return false;
	if ((mask & VRDMA_QP_ACCESS_FLAGS) &&
	    (a->qp_access_flags & ~(unsigned)(VRDMA_ACCESS_LOCAL_WRITE | VRDMA_ACCESS_REMOTE_WRITE |
					      VRDMA_ACCESS_REMOTE_READ | VRDMA_ACCESS_REMOTE_ATOMIC)))
		return false;
	if ((mask & VRDMA_QP_DEST_QPN) && (a->dest_qp_num < 2 || a->dest_qp_num >= 1u << 24))
		return false;
	if ((mask & (VRDMA_QP_RETRY_CNT)) && a->retry_cnt > 7)
		return false;
	if ((mask & VRDMA_QP_RNR_RETRY) && a->rnr_retry > 7)
		return false;
	if ((mask & VRDMA_QP_MIN_RNR_TIMER) && a->min_rnr_timer > 31)
		return false;
	if ((mask & VRDMA_QP_TIMEOUT) && a->timeout > 31)
		return false;
	return !(mask & VRDMA_QP_PORT) || a->port_num == 1;
}

int
vrdma_modify_qp(struct vrdma_qp *qp, struct vrdma_qp_attr *attr, int mask)
{
	int from, to, err = 0;

	pthread_mutex_lock(&qp->sq_lock);
	pthread_mutex_lock(&qp->rq_lock);
	from = atomic_load(&qp->state);
	to = (mask & VRDMA_QP_STATE) ? (int)attr->qp_state : from;
	if (((mask & VRDMA_QP_CUR_STATE) && (int)attr->cur_qp_state != from) ||
	    to < VRDMA_QPS_RESET || to > VRDMA_QPS_ERR || !attrs_valid(attr, mask) ||
	    transition(from, to, mask)) {
		err = -EINVAL;
		goto out;
	}
	if (to == VRDMA_QPS_RESET) {
		if (from != VRDMA_QPS_RESET)
			qp_reset(qp, true);
	} else if (to == VRDMA_QPS_ERR) {
		vrdma__qp_to_err(qp);
		if (qp->roce)
			vrdma__roce_err(qp); /* the engine flushes everything outstanding */
	} else if (from == VRDMA_QPS_INIT && to == VRDMA_QPS_RTR) {
		err = qp_rtr(qp, attr, mask);
	} else if (from == VRDMA_QPS_RTR && to == VRDMA_QPS_RTS && qp->roce) {
		err = vrdma__roce_rts(qp, attr, mask);
	}
	if (err)
		goto out;
	if (to != VRDMA_QPS_RESET && to != VRDMA_QPS_ERR)
		take_attrs(qp, attr, mask);
	qp->attr.qp_state = (enum vrdma_qp_state)to;
	atomic_store(&qp->state, to);
out:
	pthread_mutex_unlock(&qp->rq_lock);
	pthread_mutex_unlock(&qp->sq_lock);
	return err;
}

int
vrdma_query_qp(struct vrdma_qp *qp, struct vrdma_qp_attr *attr, int attr_mask,
	       struct vrdma_qp_init_attr *init_attr)
{
	(void)attr_mask; /* everything is cheap to give */
	pthread_mutex_lock(&qp->sq_lock);
	*attr = qp->attr;
	attr->qp_state = attr->cur_qp_state = (enum vrdma_qp_state)atomic_load(&qp->state);
	pthread_mutex_unlock(&qp->sq_lock);
	if (init_attr) {
		memset(init_attr, 0, sizeof(*init_attr));
		init_attr->qp_context = qp->qp_context;
		init_attr->send_cq = qp->scq;
		init_attr->recv_cq = qp->rcq;
		init_attr->cap = qp->attr.cap;
		init_attr->qp_type = VRDMA_QPT_RC;
		init_attr->sq_sig_all = qp->sq_sig_all;
	}
	return 0;
}
