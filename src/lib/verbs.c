/* SPDX-License-Identifier: MIT */
/*
 * libvmfabric verbs (vrdma.h): devices, protection domains, completion
 * queues and channels, RC queue pairs with the IBA's state machine, posting
 * and polling. A QP's send queue is executed in order by whoever holds its
 * lock (vrdma_post_send, then vrdma_poll_cq for work that had to wait);
 * its receive queue is filled from its inbound ring when its CQ is polled.
 * Completions go into a CQ only after a place was reserved: a signaled
 * work request is not executed without the room to report it; an
 * unsignaled one is (it needs a completion only if it fails, and one that
 * fails on a full CQ overruns it, as in the IBA).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/shm.h"
#include "verbs.h"

#define ATTACH_WAIT_NS (5 * 1000000000LL) /* a peer that never becomes RTR: RETRY_EXC */

int
vrdma__rpc(struct vrdma_context *ctx, unsigned type, void *body, const int *fds, int nfds,
	   struct wire_msg *rep)
{
	struct wire_msg tmp;
	int err;

	pthread_mutex_lock(&ctx->lock);
	err = ctl_rpc(&ctx->ctl, type, body, fds, nfds, rep ? rep : &tmp, -1);
	pthread_mutex_unlock(&ctx->lock);
	if (!err && !rep)
		wire_msg_close_fds(&tmp);
	return err;
}

/* ---------------------------------------------------------------------- */
/* Devices */

void
vrdma__vsk_init(struct vsk *v, const struct vrdma_context *ctx)
{
	memset(v, 0, sizeof(*v));
	v->fd = -1;
	v->ctrl = -1;
	v->type = SOCK_SEQPACKET;
	if (ctx) {
		v->want_cid = ctx->ctl.want_cid;
		memcpy(v->want_name, ctx->ctl.want_name, sizeof(v->want_name));
	} else {
		lib_identity(&v->want_cid, v->want_name);
	}
}

int
vrdma_get_device_list(char (*names)[VRDMA_DEVNAME_MAX], int max)
{
	struct wire_rdma_devices w = { 0 };
	struct wire_msg rep;
	struct vsk v;
	int err;

	vrdma__vsk_init(&v, NULL);
	err = ctl_rpc(&v, WIRE_RDMA_DEVICES, &w, NULL, 0, &rep, -1);
	ctl_drop(&v);
	if (err)
		return err;
	for (uint32_t i = 0; i < w.out_count && i < WIRE_RDMA_DEVS && (int)i < max; i++) {
		memcpy(names[i], w.out_names[i], VRDMA_DEVNAME_MAX);
		names[i][VRDMA_DEVNAME_MAX - 1] = 0;
	}
	return (int)w.out_count;
}

int
vrdma_open_device(const char *name, struct vrdma_context **out)
{
	struct wire_rdma_open w = { 0 };
	struct vrdma_context *ctx;
	void *page;
	int err;

	if (name && strlen(name) >= sizeof(w.dev))
		return -ENODEV;
	if (!(ctx = calloc(1, sizeof(*ctx))))
		return -ENOMEM;
	if (!(ctx->mrs = calloc(WIRE_RDMA_KEYS, sizeof(*ctx->mrs)))) {
		free(ctx);
		return -ENOMEM;
	}
	pthread_mutex_init(&ctx->lock, NULL);
	vrdma__vsk_init(&ctx->ctl, NULL);
	ctx->page_fd = shm_create("vmfabric-keys", sizeof(struct wire_rdma_page), &page);
	if (ctx->page_fd < 0) {
		err = ctx->page_fd;
		goto fail;
	}
	ctx->page = page;
	ctx->page->magic = WIRE_RDMA_MAGIC;
	ctx->page->version = 1;
	if (name)
		strcpy(w.dev, name);
	err = ctl_rpc(&ctx->ctl, WIRE_RDMA_OPEN, &w, &ctx->page_fd, 1, NULL, -1);
	if (err)
		goto fail_page;
	w.out_uplink[sizeof(w.out_uplink) - 1] = w.out_vmknic[sizeof(w.out_vmknic) - 1] = 0;
	w.dev[sizeof(w.dev) - 1] = 0;
	snprintf(ctx->attr.name, sizeof(ctx->attr.name), "%s", w.dev);
	memcpy(ctx->attr.uplink, w.out_uplink, sizeof(ctx->attr.uplink));
	memcpy(ctx->attr.vmknic, w.out_vmknic, sizeof(ctx->attr.vmknic));
	ctx->attr.active_mtu = w.out_mtu;
	ctx->attr.cid = w.out_cid;
	ctx->attr.max_mr_size = 1ull << 40;
	ctx->attr.max_qp = WIRE_RDMA_QP_SLOTS;
	ctx->attr.max_qp_wr = VRDMA__MAX_WR;
	ctx->attr.max_sge = VRDMA__MAX_SGE;
	ctx->attr.max_cq = 4096;
	ctx->attr.max_cqe = VRDMA__MAX_CQE;
	ctx->attr.max_mr = WIRE_RDMA_KEYS - 1;
	ctx->attr.max_pd = 1u << 20;
	ctx->attr.max_qp_rd_atom = ctx->attr.max_qp_init_rd_atom = 16;
	ctx->attr.max_inline_data = VRDMA__MAX_INLINE;
	*out = ctx;
	return 0;
fail_page:
	munmap(ctx->page, sizeof(struct wire_rdma_page));
	close(ctx->page_fd);
fail:
	ctl_drop(&ctx->ctl);
	free(ctx->mrs);
	free(ctx);
	return err;
}

int
vrdma_close_device(struct vrdma_context *ctx)
{
	if (ctx->npd || ctx->ncq || ctx->nch)
		return -EBUSY;
	ctl_drop(&ctx->ctl);
	munmap(ctx->page, sizeof(struct wire_rdma_page));
	close(ctx->page_fd);
	pthread_mutex_destroy(&ctx->lock);
	free(ctx->mrs);
	free(ctx);
	return 0;
}

int
vrdma_query_device(struct vrdma_context *ctx, struct vrdma_device_attr *attr)
{
	*attr = ctx->attr;
	return 0;
}

int
vrdma_alloc_pd(struct vrdma_context *ctx, struct vrdma_pd **out)
{
	struct vrdma_pd *pd = calloc(1, sizeof(*pd));

	if (!pd)
		return -ENOMEM;
	pd->ctx = ctx;
	pthread_mutex_lock(&ctx->lock);
	pd->id = ++ctx->next_pd;
	ctx->npd++;
	pthread_mutex_unlock(&ctx->lock);
	*out = pd;
	return 0;
}

int
vrdma_dealloc_pd(struct vrdma_pd *pd)
{
	struct vrdma_context *ctx = pd->ctx;

	pthread_mutex_lock(&ctx->lock);
	if (pd->nmr || pd->nqp) {
		pthread_mutex_unlock(&ctx->lock);
		return -EBUSY;
	}
	ctx->npd--;
	pthread_mutex_unlock(&ctx->lock);
	free(pd);
	return 0;
}

/* ---------------------------------------------------------------------- */
/* Completion queues and channels */

int
vrdma_create_comp_channel(struct vrdma_context *ctx, struct vrdma_comp_channel **out)
{
	struct vrdma_comp_channel *ch = calloc(1, sizeof(*ch));

	if (!ch)
		return -ENOMEM;
	ch->ctx = ctx;
	if ((ch->ep = epoll_create1(EPOLL_CLOEXEC)) < 0) {
		free(ch);
		return -errno;
	}
	pthread_mutex_init(&ch->lock, NULL);
	pthread_mutex_lock(&ctx->lock);
	ctx->nch++;
	pthread_mutex_unlock(&ctx->lock);
	*out = ch;
	return 0;
}

int
vrdma_comp_channel_fd(const struct vrdma_comp_channel *ch)
{
	return ch->ep;
}

int
vrdma_destroy_comp_channel(struct vrdma_comp_channel *ch)
{
	struct vrdma_context *ctx = ch->ctx;

	pthread_mutex_lock(&ctx->lock);
	if (ch->ncq) {
		pthread_mutex_unlock(&ctx->lock);
		return -EBUSY;
	}
	ctx->nch--;
	pthread_mutex_unlock(&ctx->lock);
	close(ch->ep);
	pthread_mutex_destroy(&ch->lock);
	free(ch->cqs);
	free(ch);
	return 0;
}

static int
channel_add(struct vrdma_comp_channel *ch, int fd, struct vrdma__tag *tag)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = tag };

	return epoll_ctl(ch->ep, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

int
vrdma_create_cq(struct vrdma_context *ctx, int cqe, void *cq_context,
		struct vrdma_comp_channel *channel, struct vrdma_cq **out)
{
	struct vrdma_cq *cq;
	int err;

	if (cqe < 1 || (unsigned)cqe > VRDMA__MAX_CQE || (channel && channel->ctx != ctx))
		return -EINVAL;
	if (!(cq = calloc(1, sizeof(*cq))) || !(cq->e = calloc((size_t)cqe, sizeof(*cq->e)))) {
		free(cq);
		return -ENOMEM;
	}
	cq->ctx = ctx;
	cq->cq_context = cq_context;
	cq->cap = (uint32_t)cqe;
	cq->ch = channel;
	cq->efd = -1;
	cq->tag.cq = cq;
	pthread_mutex_init(&cq->lock, NULL);
	pthread_mutex_init(&cq->qlock, NULL);
	if (channel) {
		cq->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (cq->efd < 0 || (err = channel_add(channel, cq->efd, &cq->tag))) {
			err = cq->efd < 0 ? -errno : err;
			if (cq->efd >= 0)
				close(cq->efd);
			free(cq->e);
			free(cq);
			return err;
		}
	}
	if (channel) {
		struct vrdma_cq **t;

		pthread_mutex_lock(&channel->lock);
		t = realloc(channel->cqs, (channel->ncq + 1) * sizeof(*t));
		if (t) {
			channel->cqs = t;
			t[channel->ncq++] = cq;
		}
		pthread_mutex_unlock(&channel->lock);
		if (!t) {
			epoll_ctl(channel->ep, EPOLL_CTL_DEL, cq->efd, NULL);
			close(cq->efd);
			free(cq->e);
			free(cq);
			return -ENOMEM;
		}
	}
	pthread_mutex_lock(&ctx->lock);
	ctx->ncq++;
	pthread_mutex_unlock(&ctx->lock);
	*out = cq;
	return 0;
}

int
vrdma_destroy_cq(struct vrdma_cq *cq)
{
	struct vrdma_context *ctx = cq->ctx;

	pthread_mutex_lock(&ctx->lock);
	if (cq->nqp) {
		pthread_mutex_unlock(&ctx->lock);
		return -EBUSY;
	}
	ctx->ncq--;
	pthread_mutex_unlock(&ctx->lock);
	if (cq->ch) {
		pthread_mutex_lock(&cq->ch->lock);
		for (unsigned i = 0; i < cq->ch->ncq; i++)
			if (cq->ch->cqs[i] == cq) {
				cq->ch->cqs[i] = cq->ch->cqs[--cq->ch->ncq];
				break;
			}
		pthread_mutex_unlock(&cq->ch->lock);
	}
	if (cq->efd >= 0) {
		epoll_ctl(cq->ch->ep, EPOLL_CTL_DEL, cq->efd, NULL);
		close(cq->efd);
	}
	pthread_mutex_destroy(&cq->lock);
	pthread_mutex_destroy(&cq->qlock);
	free(cq->e);
	free(cq);
	return 0;
}

int
vrdma__cq_reserve(struct vrdma_cq *cq)
{
	int err = 0;

	pthread_mutex_lock(&cq->lock);
	if (cq->count + cq->reserved >= cq->cap)
		err = -ENOSPC;
	else
		cq->reserved++;
	pthread_mutex_unlock(&cq->lock);
	return err;
}

void
vrdma__cq_overrun(struct vrdma_cq *cq)
{
	pthread_mutex_lock(&cq->lock);
	cq->overflow = true;
	pthread_mutex_unlock(&cq->lock);
}

void
vrdma__cq_unreserve(struct vrdma_cq *cq)
{
	pthread_mutex_lock(&cq->lock);
	cq->reserved--;
	pthread_mutex_unlock(&cq->lock);
}

void
vrdma__cq_commit(struct vrdma_cq *cq, const struct vrdma_wc *wc, bool solicited)
{
	bool notify;
	int armed;

	pthread_mutex_lock(&cq->lock);
	cq->reserved--;
	cq->e[(cq->head + cq->count) % cq->cap] = *wc;
	cq->count++;
	armed = atomic_load_explicit(&cq->armed, memory_order_relaxed);
	notify = armed == 1 || (armed == 2 && (solicited || wc->status));
	if (notify)
		atomic_store_explicit(&cq->armed, 0, memory_order_relaxed);
	pthread_mutex_unlock(&cq->lock);
	if (notify && cq->efd >= 0) {
		uint64_t one = 1;

		(void)!write(cq->efd, &one, sizeof(one));
	}
}

/* ---------------------------------------------------------------------- */
/* Progress */

static enum vrdma_wc_opcode
wc_opcode(enum vrdma_wr_opcode op)
{
	switch (op) {
	case VRDMA_WR_RDMA_WRITE:
	case VRDMA_WR_RDMA_WRITE_WITH_IMM:
		return VRDMA_WC_RDMA_WRITE;
	case VRDMA_WR_SEND:
	case VRDMA_WR_SEND_WITH_IMM:
		return VRDMA_WC_SEND;
	case VRDMA_WR_RDMA_READ:
		return VRDMA_WC_RDMA_READ;
	case VRDMA_WR_ATOMIC_CMP_AND_SWP:
		return VRDMA_WC_COMP_SWAP;
	default:
		return VRDMA_WC_FETCH_ADD;
	}
}

void
vrdma__qp_to_err(struct vrdma_qp *qp)
{
	atomic_store(&qp->state, VRDMA_QPS_ERR);
	/* Pairs with the acquire load in the peer's vrdma__shm_exec(). */
	atomic_store_explicit(&qp->ctx->page->slots[qp->slot].err, 1, memory_order_release);
}

/* Whether the QP can reach its peer now: 0, -EAGAIN, or a completion status. */
static int
sq_ready(struct vrdma_qp *qp)
{
	int64_t now;
	int err;

	if (qp->attached)
		return 0;
	now = clock_ns();
	if (now < qp->attach_retry)
		return -EAGAIN;
	err = vrdma__shm_attach(qp);
	if (!err)
		return 0;
	if (err != -EAGAIN)
		return VRDMA_WC_RETRY_EXC_ERR;
	/* The peer is not RTR towards us yet: its packets would not be answered. */
	if (!qp->attach_retry)
		qp->attach_retry = now;
	else if (now - qp->attach_retry > ATTACH_WAIT_NS)
		return VRDMA_WC_RETRY_EXC_ERR;
	qp->attach_retry = now + 20000;
	return -EAGAIN;
}

/* Execute the send queue in order as far as it goes (sq_lock held). */
static void
sq_progress(struct vrdma_qp *qp)
{
	while (qp->sq_count) {
		struct vrdma__swqe *w = &qp->sq[qp->sq_head];
		struct vrdma_wc wc = { .wr_id = w->wr.wr_id, .opcode = wc_opcode(w->wr.opcode),
				       .qp_num = qp->qpn };
		bool in_err = atomic_load(&qp->state) == VRDMA_QPS_ERR, reserved = false;
		int st;

		/*
		 * A signaled WR runs only with room for its completion. An
		 * unsignaled one needs room only if it fails: it runs without
		 * taking the CQ's lock, and an error that finds the CQ full
		 * overruns it (the IBA's CQ overrun: -EOVERFLOW from then on).
		 */
		if (w->signaled || in_err) {
			if (vrdma__cq_reserve(qp->scq))
				break;
			reserved = true;
		}
		if (in_err)
			st = VRDMA_WC_WR_FLUSH_ERR;
		else if (!(st = sq_ready(qp)))
			st = vrdma__shm_exec(qp, w);
		if (st == -EAGAIN) {
			if (reserved)
				vrdma__cq_unreserve(qp->scq);
			break;
		}
		qp->sq_head = (qp->sq_head + 1) % qp->sq_cap;
		__atomic_store_n(&qp->sq_count, qp->sq_count - 1, __ATOMIC_RELAXED);
		if (!st && !w->signaled)
			continue;
		wc.status = (enum vrdma_wc_status)st;
		if (!reserved && vrdma__cq_reserve(qp->scq)) {
			vrdma__cq_overrun(qp->scq);
			vrdma__qp_to_err(qp);
			continue;
		}
		vrdma__cq_commit(qp->scq, &wc, false);
		if (st && st != VRDMA_WC_WR_FLUSH_ERR)
			vrdma__qp_to_err(qp);
	}
}

/* Receives of a QP in ERR complete with WR_FLUSH_ERR (rq_lock held). */
static void
rq_flush(struct vrdma_qp *qp)
{
	while (qp->rq_count && !vrdma__cq_reserve(qp->rcq)) {
		struct vrdma_wc wc = { .wr_id = qp->rq[qp->rq_head].wr_id,
				       .status = VRDMA_WC_WR_FLUSH_ERR,
				       .opcode = VRDMA_WC_RECV,
				       .qp_num = qp->qpn };

		qp->rq_head = (qp->rq_head + 1) % qp->rq_cap;
		qp->rq_count--;
		vrdma__cq_commit(qp->rcq, &wc, false);
	}
}

static void
rq_progress(struct vrdma_qp *qp)
{
	if (atomic_load(&qp->state) == VRDMA_QPS_ERR)
		rq_flush(qp);
	else
		vrdma__shm_drain(qp);
}

/* Work for @cq's QPs: waiting sends, arrived messages. */
static void
cq_progress(struct vrdma_cq *cq)
{
	pthread_mutex_lock(&cq->qlock);
	for (struct vrdma_qp *qp = cq->sq_list; qp; qp = qp->snext)
		if ((qp->roce || __atomic_load_n(&qp->sq_count, __ATOMIC_RELAXED)) &&
		    !pthread_mutex_trylock(&qp->sq_lock)) {
			if (qp->roce)
				vrdma__roce_drain(qp);
			else
				sq_progress(qp);
			pthread_mutex_unlock(&qp->sq_lock);
		}
	for (struct vrdma_qp *qp = cq->rq_list; qp; qp = qp->rnext)
		if (qp->roce) {
			/* One ring brings both sides' completions: its consumer holds sq_lock. */
			if (!pthread_mutex_trylock(&qp->sq_lock)) {
				vrdma__roce_drain(qp);
				pthread_mutex_unlock(&qp->sq_lock);
			}
		} else if (!pthread_mutex_trylock(&qp->rq_lock)) {
			rq_progress(qp);
			pthread_mutex_unlock(&qp->rq_lock);
		}
	pthread_mutex_unlock(&cq->qlock);
}

int
vrdma_poll_cq(struct vrdma_cq *cq, int n, struct vrdma_wc *wc)
{
	int k;

	if (n < 0)
		return -EINVAL;
	cq_progress(cq);
	pthread_mutex_lock(&cq->lock);
	if (cq->overflow) {
		pthread_mutex_unlock(&cq->lock);
		return -EOVERFLOW;
	}
	k = (uint32_t)n < cq->count ? n : (int)cq->count;
	for (int i = 0; i < k; i++)
		wc[i] = cq->e[(cq->head + (uint32_t)i) % cq->cap];
	cq->head = (cq->head + (uint32_t)k) % cq->cap;
	cq->count -= (uint32_t)k;
	pthread_mutex_unlock(&cq->lock);
	return k;
}

int
vrdma_req_notify_cq(struct vrdma_cq *cq, int solicited_only)
{
	bool ready = false;

	if (!cq->ch)
		return -EINVAL;
	atomic_store(&cq->armed, solicited_only ? 2 : 1);
	pthread_mutex_lock(&cq->qlock);
	for (struct vrdma_qp *qp = cq->rq_list; qp; qp = qp->rnext)
		if ((qp->roce ? qp->dring : qp->in) &&
		    (qp_arm(qp->roce ? qp->dring : qp->in, QP_EV_READ) & (QP_EV_READ | QP_EV_HUP)))
			ready = true;
	pthread_mutex_unlock(&cq->qlock);
	if (ready) { /* a message came before the arming: it is the event */
		uint64_t one = 1;

		(void)!write(cq->efd, &one, sizeof(one));
	}
	return 0;
}

int
vrdma_get_cq_event(struct vrdma_comp_channel *ch, struct vrdma_cq **cq, void **cq_context)
{
	bool nonblock = fcntl(ch->ep, F_GETFL) & O_NONBLOCK;
	struct epoll_event ev;
	struct vrdma__tag *t;
	uint64_t v;
	int n;

	for (;;) {
		/* Sends that wait (RNR, a full ring) make progress only when polled: look every ms. */
		n = epoll_wait(ch->ep, &ev, 1, nonblock ? 0 : 1);
		if (n < 0 && errno != EINTR)
			return -errno;
		if (n > 0)
			break;
		if (nonblock)
			return -EAGAIN;
		/* Sends that waited (an RNR timer, a peer not RTR yet): on, and signal if done. */
		pthread_mutex_lock(&ch->lock);
		for (unsigned i = 0; i < ch->ncq; i++)
			if (atomic_load(&ch->cqs[i]->armed))
				cq_progress(ch->cqs[i]);
		pthread_mutex_unlock(&ch->lock);
	}
	t = ev.data.ptr;
	if (t->qp)
		qp_ack(t->qp->roce ? t->qp->dring : t->qp->in);
	else
		(void)!read(t->cq->efd, &v, sizeof(v));
	atomic_store(&t->cq->armed, 0);
	t->cq->events++;
	*cq = t->cq;
	if (cq_context)
		*cq_context = t->cq->cq_context;
	return 0;
}

void
vrdma_ack_cq_events(struct vrdma_cq *cq, unsigned n)
{
	cq->acked += n;
}

/* ---------------------------------------------------------------------- */
/* Posting */

int
vrdma__check_wr(const struct vrdma_qp *qp, const struct vrdma_send_wr *wr, uint64_t *total)
{
	*total = 0;
	if (wr->num_sge < 0 || (uint32_t)wr->num_sge > qp->attr.cap.max_send_sge ||
	    wr->opcode > VRDMA_WR_ATOMIC_FETCH_AND_ADD)
		return -EINVAL;
	for (int i = 0; i < wr->num_sge; i++)
		*total += wr->sg_list[i].length;
	if (wr->opcode >= VRDMA_WR_ATOMIC_CMP_AND_SWP && (wr->num_sge != 1 || *total != 8))
		return -EINVAL;
	if ((wr->send_flags & VRDMA_SEND_INLINE) && *total &&
	    (*total > qp->attr.cap.max_inline_data || wr->opcode == VRDMA_WR_RDMA_READ ||
	     wr->opcode >= VRDMA_WR_ATOMIC_CMP_AND_SWP))
		return -EINVAL;
	return qp->sq_count == qp->sq_cap ? -ENOMEM : 0;
}

static int
post_one(struct vrdma_qp *qp, const struct vrdma_send_wr *wr)
{
	struct vrdma__swqe *w;
	uint64_t total;
	int err;

	if ((err = vrdma__check_wr(qp, wr, &total)))
		return err;
	w = &qp->sq[(qp->sq_head + qp->sq_count) % qp->sq_cap];
	w->wr = *wr;
	w->wr.next = NULL;
	w->wr.sg_list = NULL;
	w->signaled = qp->sq_sig_all || (wr->send_flags & VRDMA_SEND_SIGNALED);
	w->inl_len = 0;
	if (wr->send_flags & VRDMA_SEND_INLINE) {
		/* The caller may reuse its buffers once this returns. */
		for (int i = 0; i < wr->num_sge; i++) {
			memcpy(w->inl + w->inl_len, (const void *)(uintptr_t)wr->sg_list[i].addr,
			       wr->sg_list[i].length);
			w->inl_len += wr->sg_list[i].length;
		}
		w->wr.num_sge = 0;
		if (!w->inl_len) /* nothing inline: an empty message, no buffers */
			w->wr.send_flags &= ~(unsigned)VRDMA_SEND_INLINE;
	} else if (wr->num_sge) {
		memcpy(w->sge, wr->sg_list, (size_t)wr->num_sge * sizeof(*w->sge));
	}
	__atomic_store_n(&qp->sq_count, qp->sq_count + 1, __ATOMIC_RELAXED);
	return 0;
}

int
vrdma_post_send(struct vrdma_qp *qp, struct vrdma_send_wr *wr, struct vrdma_send_wr **bad)
{
	int err = 0, st;

	pthread_mutex_lock(&qp->sq_lock);
	st = atomic_load(&qp->state);
	for (; wr; wr = wr->next) {
		if (st != VRDMA_QPS_RTS && st != VRDMA_QPS_ERR)
			err = -EINVAL;
		else if (qp->roce)
			err = vrdma__roce_post_send(qp, wr);
		else
			err = post_one(qp, wr);
		if (err) {
			if (bad)
				*bad = wr;
			break;
		}
	}
	if (!qp->roce)
		sq_progress(qp);
	pthread_mutex_unlock(&qp->sq_lock);
	return err;
}

int
vrdma_post_recv(struct vrdma_qp *qp, struct vrdma_recv_wr *wr, struct vrdma_recv_wr **bad)
{
	struct wire_rdma_slot *slot = &qp->ctx->page->slots[qp->slot];
	int err = 0;

	pthread_mutex_lock(&qp->rq_lock);
	for (; wr; wr = wr->next) {
		struct vrdma__rwqe *r;
		uint64_t total = 0;

		err = -EINVAL;
		if (atomic_load(&qp->state) == VRDMA_QPS_RESET || wr->num_sge < 0 ||
		    (uint32_t)wr->num_sge > qp->attr.cap.max_recv_sge)
			break;
		if (qp->roce) {
			if ((err = vrdma__roce_post_recv(qp, wr)))
				break;
			continue;
		}
		err = -ENOMEM;
		if (qp->rq_count == qp->rq_cap)
			break;
		err = 0;
		r = &qp->rq[(qp->rq_head + qp->rq_count) % qp->rq_cap];
		r->wr_id = wr->wr_id;
		r->num_sge = wr->num_sge;
		for (int i = 0; i < wr->num_sge; i++) {
			r->sge[i] = wr->sg_list[i];
			total += wr->sg_list[i].length;
		}
		qp->rq_count++;
		slot->recv_len[qp->recv_posted % WIRE_RDMA_RECV_RING] =
			total > UINT32_MAX ? UINT32_MAX : (uint32_t)total;
		qp->recv_posted++;
		/* Pairs with the acquire load in the sender's peer_receive(). */
		atomic_store_explicit(&slot->recv_posted, qp->recv_posted, memory_order_release);
	}
	if (err && bad)
		*bad = wr;
	if (atomic_load(&qp->state) == VRDMA_QPS_ERR && !qp->roce)
		rq_flush(qp);
	pthread_mutex_unlock(&qp->rq_lock);
	return err;
}

static const char *const status_names[] = {
	[VRDMA_WC_SUCCESS] = "success",
	[VRDMA_WC_LOC_LEN_ERR] = "local length error",
	[VRDMA_WC_LOC_QP_OP_ERR] = "local QP operation error",
	[VRDMA_WC_LOC_EEC_OP_ERR] = "local EE context operation error",
	[VRDMA_WC_LOC_PROT_ERR] = "local protection error",
	[VRDMA_WC_WR_FLUSH_ERR] = "Work Request Flushed Error",
	[VRDMA_WC_MW_BIND_ERR] = "memory management operation error",
	[VRDMA_WC_BAD_RESP_ERR] = "bad response error",
	[VRDMA_WC_LOC_ACCESS_ERR] = "local access error",
	[VRDMA_WC_REM_INV_REQ_ERR] = "remote invalid request error",
	[VRDMA_WC_REM_ACCESS_ERR] = "remote access error",
	[VRDMA_WC_REM_OP_ERR] = "remote operation error",
	[VRDMA_WC_RETRY_EXC_ERR] = "transport retry counter exceeded",
	[VRDMA_WC_RNR_RETRY_EXC_ERR] = "RNR retry counter exceeded",
	[VRDMA_WC_GENERAL_ERR] = "general error",
};

const char *
vrdma_wc_status_str(enum vrdma_wc_status status)
{
	if ((unsigned)status < sizeof(status_names) / sizeof(status_names[0]) &&
	    status_names[status])
		return status_names[status];
	return "unknown";
}

const char *
vrdma_qp_state_str(enum vrdma_qp_state state)
{
	static const char *const n[] = { "RESET", "INIT", "RTR", "RTS", "SQD", "SQE", "ERR" };

	return (unsigned)state < 7 ? n[state] : "unknown";
}
