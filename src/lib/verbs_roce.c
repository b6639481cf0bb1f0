/* SPDX-License-Identifier: MIT */
/*
 * QPs to other hosts (vrdma.h): RTR with a global address (the peer's IP)
 * hands the QP to the daemon's RoCE v2 engine (src/rdma/engine.h). Work
 * requests and receives become records on a queue pair shared with the
 * daemon, checked there against this process's memory regions; every
 * request's completion comes back as a record, in order, and is put into
 * the right CQ here (unsignaled successes only free their slot).
 */
#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "rdma/engine.h"
#include "verbs.h"

#define DRING_WR (1u << 20)  /* records to the daemon */
#define DRING_WC (256u << 10) /* completions: holds every outstanding request's */

_Static_assert(sizeof(struct vrdma_sge) == sizeof(struct reng_sge), "sge layouts");
_Static_assert(RENG_MAX_SGE == VRDMA__MAX_SGE && RENG_MAX_INLINE == VRDMA__MAX_INLINE,
	       "limits agree");

static const uint8_t v4mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

int
vrdma__roce_rtr(struct vrdma_qp *qp, const struct vrdma_qp_attr *a, int mask)
{
	struct wire_rdma_qp w = { .qpn = qp->qpn, .dest_qpn = a->dest_qp_num, .global = 1,
				  .mtu = 128u << a->path_mtu, .rq_psn = a->rq_psn & 0xffffff,
				  .max_dest_rd_atomic = a->max_dest_rd_atomic,
				  .min_rnr_timer = a->min_rnr_timer };
	struct qp_fds peer;
	int err, pfd;

	if (memcmp(a->ah_attr.dgid, v4mapped, sizeof(v4mapped)))
		return -EOPNOTSUPP; /* IPv6 paths: not yet */
	memcpy(w.dgid, a->ah_attr.dgid, 16);
	w.access = (mask & VRDMA_QP_ACCESS_FLAGS) ? a->qp_access_flags : qp->attr.qp_access_flags;
	if ((err = qp_create(DRING_WR, DRING_WC, &qp->dring, &peer)))
		return err;
	err = vrdma__rpc(qp->ctx, WIRE_RDMA_QP_RTR, &w,
			 (int[]){ peer.mem, peer.wake, peer.peer_wake, peer.alive }, 4, NULL);
	close(peer.mem), close(peer.wake), close(peer.peer_wake), close(peer.alive);
	qp_set_mode(qp->dring, QP_NONBLOCK);
	if (!err && qp->rcq->ch) {
		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &qp->tag };

		if ((pfd = qp_poll_fd(qp->dring)) < 0)
			err = pfd;
		else if (epoll_ctl(qp->rcq->ch->ep, EPOLL_CTL_ADD, pfd, &ev) < 0)
			err = -errno;
	}
	if (err) {
		qp_close(qp->dring);
		qp->dring = NULL;
		return err;
	}
	qp->roce = true;
	/* Receives posted in INIT go to the engine, in order; they still count. */
	for (uint32_t i = 0; i < qp->rq_count; i++) {
		const struct vrdma__rwqe *r = &qp->rq[(qp->rq_head + i) % qp->rq_cap];
		struct reng_rec_wr h = { .kind = RENG_REC_RECV, .wr_id = r->wr_id,
					 .num_sge = (uint32_t)r->num_sge };
		struct iovec iov[2] = { { &h, sizeof(h) },
					{ (void *)(uintptr_t)r->sge,
					  (size_t)r->num_sge * sizeof(*r->sge) } };

		qp_msg_sendv(qp->dring, iov, r->num_sge ? 2 : 1, QP_DONTWAIT);
	}
	return 0;
}

int
vrdma__roce_rts(struct vrdma_qp *qp, const struct vrdma_qp_attr *a, int mask)
{
	struct wire_rdma_qp w = { .qpn = qp->qpn, .sq_psn = a->sq_psn & 0xffffff,
				  .access = (mask & VRDMA_QP_ACCESS_FLAGS) ? a->qp_access_flags
									   : qp->attr.qp_access_flags,
				  .timeout = a->timeout, .retry_cnt = a->retry_cnt,
				  .rnr_retry = a->rnr_retry, .max_rd_atomic = a->max_rd_atomic,
				  .sq_depth = qp->sq_cap, .rq_depth = qp->rq_cap };

	return vrdma__rpc(qp->ctx, WIRE_RDMA_QP_RTS, &w, NULL, 0, NULL);
}

void
vrdma__roce_err(struct vrdma_qp *qp)
{
	struct reng_rec_wr h = { .kind = RENG_REC_ERR };
	struct iovec io = { &h, sizeof(h) };

	pthread_mutex_lock(&qp->dring_lock);
	if (qp->dring)
		qp_msg_sendv(qp->dring, &io, 1, QP_DONTWAIT);
	pthread_mutex_unlock(&qp->dring_lock);
}

int
vrdma__roce_post_send(struct vrdma_qp *qp, const struct vrdma_send_wr *wr)
{
	struct reng_rec_wr h = { .kind = RENG_REC_SEND, .wr_id = wr->wr_id,
				 .opcode = (uint32_t)wr->opcode, .imm = wr->imm_data };
	struct iovec iov[1 + VRDMA__MAX_SGE] = { { &h, sizeof(h) } };
	uint64_t total;
	int n = 1, err;
	ssize_t r;

	if ((err = vrdma__check_wr(qp, wr, &total)))
		return err;
	if (qp->sq_sig_all || (wr->send_flags & VRDMA_SEND_SIGNALED))
		h.flags |= RENG_F_SIGNALED;
	if (wr->send_flags & VRDMA_SEND_SOLICITED)
		h.flags |= RENG_F_SOLICITED;
	if (wr->opcode >= VRDMA_WR_ATOMIC_CMP_AND_SWP) {
		h.remote_va = wr->wr.atomic.remote_addr;
		h.rkey = wr->wr.atomic.rkey;
		h.compare_add = wr->wr.atomic.compare_add;
		h.swap = wr->wr.atomic.swap;
	} else {
		h.remote_va = wr->wr.rdma.remote_addr;
		h.rkey = wr->wr.rdma.rkey;
	}
	if ((wr->send_flags & VRDMA_SEND_INLINE) && total) {
		h.inline_len = (uint32_t)total;
		for (int i = 0; i < wr->num_sge; i++)
			iov[n++] = (struct iovec){ (void *)(uintptr_t)wr->sg_list[i].addr,
						   wr->sg_list[i].length };
	} else if (wr->num_sge) {
		h.num_sge = (uint32_t)wr->num_sge;
		iov[n++] = (struct iovec){ wr->sg_list, (size_t)wr->num_sge * sizeof(*wr->sg_list) };
	}
	pthread_mutex_lock(&qp->dring_lock);
	r = qp_msg_sendv(qp->dring, iov, n, QP_DONTWAIT);
	pthread_mutex_unlock(&qp->dring_lock);
	if (r == -EAGAIN)
		return -ENOMEM;
	if (r < 0)
		return -ENETDOWN; /* the daemon went away: nothing runs this QP now */
	__atomic_store_n(&qp->sq_count, qp->sq_count + 1, __ATOMIC_RELAXED);
	return 0;
}

int
vrdma__roce_post_recv(struct vrdma_qp *qp, const struct vrdma_recv_wr *wr)
{
	struct reng_rec_wr h = { .kind = RENG_REC_RECV, .wr_id = wr->wr_id,
				 .num_sge = (uint32_t)wr->num_sge };
	struct iovec iov[2] = { { &h, sizeof(h) },
				{ wr->sg_list, (size_t)wr->num_sge * sizeof(*wr->sg_list) } };
	ssize_t r;

	/*
	 * rq_count: raised here (rq_lock), lowered by the completions' consumer
	 * (sq_lock): atomics, and a race can only make room.
	 */
	if (__atomic_load_n(&qp->rq_count, __ATOMIC_RELAXED) == qp->rq_cap)
		return -ENOMEM;
	pthread_mutex_lock(&qp->dring_lock);
	r = qp_msg_sendv(qp->dring, iov, wr->num_sge ? 2 : 1, QP_DONTWAIT);
	pthread_mutex_unlock(&qp->dring_lock);
	if (r == -EAGAIN)
		return -ENOMEM;
	if (r < 0)
		return -ENETDOWN;
	__atomic_fetch_add(&qp->rq_count, 1, __ATOMIC_RELAXED);
	return 0;
}

static enum vrdma_wc_opcode
send_opcode(uint32_t op)
{
	static const enum vrdma_wc_opcode map[] = {
		VRDMA_WC_RDMA_WRITE, VRDMA_WC_RDMA_WRITE, VRDMA_WC_SEND,      VRDMA_WC_SEND,
		VRDMA_WC_RDMA_READ,  VRDMA_WC_COMP_SWAP,  VRDMA_WC_FETCH_ADD,
	};

	return op < sizeof(map) / sizeof(map[0]) ? map[op] : VRDMA_WC_SEND;
}

void
vrdma__roce_drain(struct vrdma_qp *qp)
{
	struct reng_rec_wc r;
	struct iovec v[2];

	while (qp->dring) {
		ssize_t n = qp_msg_peek(qp->dring, v);
		struct vrdma_cq *cq;
		size_t k;

		if (n != (ssize_t)sizeof(r)) {
			if (n >= 0)
				qp_msg_consume(qp->dring); /* not a completion: the daemon's bug */
			break;
		}
		k = v[0].iov_len < sizeof(r) ? v[0].iov_len : sizeof(r);
		memcpy(&r, v[0].iov_base, k);
		memcpy((uint8_t *)&r + k, v[1].iov_base, sizeof(r) - k);
		cq = r.recv ? qp->rcq : qp->scq;
		if (!r.recv && !r.signaled && !r.status) {
			/* An unsignaled success: its slot is free, nobody hears of it. */
			qp_msg_consume(qp->dring);
			__atomic_store_n(&qp->sq_count, qp->sq_count - 1, __ATOMIC_RELAXED);
			continue;
		}
		if (vrdma__cq_reserve(cq))
			break;
		qp_msg_consume(qp->dring);
		if (r.recv)
			__atomic_fetch_sub(&qp->rq_count, 1, __ATOMIC_RELAXED);
		else
			__atomic_store_n(&qp->sq_count, qp->sq_count - !!qp->sq_count,
					 __ATOMIC_RELAXED);
		{
			struct vrdma_wc wc = {
				.wr_id = r.wr_id,
				.status = (enum vrdma_wc_status)r.status,
				.opcode = r.recv ? (enum vrdma_wc_opcode)(r.opcode == 129
										   ? VRDMA_WC_RECV_RDMA_WITH_IMM
										   : VRDMA_WC_RECV)
						 : send_opcode(r.opcode),
				.byte_len = r.byte_len,
				.imm_data = r.imm,
				.qp_num = qp->qpn,
				.src_qp = qp->attr.dest_qp_num,
				.wc_flags = r.with_imm ? VRDMA_WC_WITH_IMM : 0,
			};

			vrdma__cq_commit(cq, &wc, r.solicited);
			if (wc.status && wc.status != VRDMA_WC_WR_FLUSH_ERR)
				vrdma__qp_to_err(qp);
		}
	}
}
