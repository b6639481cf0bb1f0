/* SPDX-License-Identifier: MIT */
/*
 * The RDMA connection manager (vrdma.h), in librdmacm's spirit: a listener
 * is a control connection bound to a port of the RDMA port space; a
 * connect asks the daemon on a connection of its own (its answer waits for
 * the listener) with the QP number and a random starting PSN, and both
 * ends then move their QPs INIT -> RTR -> RTS with what the other sent.
 * Requests that arrive while the listener waits for an answer of its own
 * are kept in order for vrdma_get_request(). Between hosts the same
 * messages carry an IP address (wire.h): the daemons do the rest, and the
 * QPs get a global address (the peer's IP) and the path MTU both devices
 * allow.
 */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "common/clock.h"
#include "verbs.h"

#define CM_TIMEOUT_MS 5000
#define CM_QUEUE      64
#define CM_GRACE_MS   2000 /* between hosts: the daemon answers at the timeout, we wait longer */

int (*vrdma__cm_rtr_seam)(struct vrdma_qp *qp, struct vrdma_qp_attr *attr, int mask);

struct vrdma_listener {
	struct vrdma_context *ctx;
	struct vsk ctl;
	uint32_t port;
	struct vrdma_conn_req q[CM_QUEUE];
	unsigned qhead, qcount;
};

static uint32_t
random_psn(void)
{
	uint32_t v = 0;

	if (getrandom(&v, sizeof(v), GRND_NONBLOCK) != sizeof(v))
		v = (uint32_t)clock_ns();
	return v & 0xffffff;
}

/* Where the other side's QP is, and the path MTU to it. */
struct cm_path {
	struct vrdma_ah_attr ah;
	enum vrdma_mtu mtu;
};

static enum vrdma_mtu
mtu_enum(unsigned bytes)
{
	enum vrdma_mtu m = VRDMA_MTU_256;

	while (m < VRDMA_MTU_4096 && (256u << m) <= bytes)
		m++;
	return m;
}

/* On this host: context @cid, nothing cut into packets. */
static struct cm_path
path_local(uint32_t cid)
{
	return (struct cm_path){ .ah = { .dest_cid = cid }, .mtu = VRDMA_MTU_4096 };
}

/* Another host: @family's address @addr (IPv4: 4 bytes) as a GID, @mtu bytes. */
static struct cm_path
path_global(uint8_t family, const uint8_t *addr, unsigned mtu)
{
	struct cm_path p = { .ah = { .is_global = 1 }, .mtu = mtu_enum(mtu) };

	if (family == AF_INET) {
		p.ah.dgid[10] = p.ah.dgid[11] = 0xff;
		memcpy(p.ah.dgid + 12, addr, 4);
	} else {
		memcpy(p.ah.dgid, addr, 16);
	}
	return p;
}

/* The QP through INIT, RTR and RTS towards the other side's QP. */
static int
cm_ready(struct vrdma_qp *qp, const struct cm_path *path, uint32_t qpn, uint32_t rq_psn,
	 uint32_t sq_psn, const struct vrdma_conn_param *p, uint8_t peer_init_depth)
{
	int (*rtr)(struct vrdma_qp *, struct vrdma_qp_attr *, int) = vrdma_modify_qp;
	struct vrdma_qp_attr a = { 0 };
	int err;

	a.qp_state = VRDMA_QPS_INIT;
	a.port_num = 1;
	a.qp_access_flags = VRDMA_ACCESS_LOCAL_WRITE | VRDMA_ACCESS_REMOTE_WRITE |
			    VRDMA_ACCESS_REMOTE_READ | VRDMA_ACCESS_REMOTE_ATOMIC;
	if (atomic_load(&qp->state) == VRDMA_QPS_RESET &&
	    (err = vrdma_modify_qp(qp, &a,
				   VRDMA_QP_STATE | VRDMA_QP_PKEY_INDEX | VRDMA_QP_PORT |
					   VRDMA_QP_ACCESS_FLAGS)))
		return err;
	a.qp_state = VRDMA_QPS_RTR;
	a.ah_attr = path->ah;
	a.dest_qp_num = qpn;
	a.path_mtu = path->mtu;
	a.rq_psn = rq_psn;
	a.max_dest_rd_atomic = peer_init_depth ? peer_init_depth : 16;
	/* 10 us: an RNR costs little on one host; 0.64 ms across a network. */
	a.min_rnr_timer = path->ah.is_global ? 12 : 1;
	if (path->ah.is_global && vrdma__cm_rtr_seam)
		rtr = vrdma__cm_rtr_seam;
	err = rtr(qp, &a,
		  VRDMA_QP_STATE | VRDMA_QP_AV | VRDMA_QP_PATH_MTU | VRDMA_QP_DEST_QPN |
		      VRDMA_QP_RQ_PSN | VRDMA_QP_MAX_DEST_RD_ATOMIC | VRDMA_QP_MIN_RNR_TIMER);
	if (err)
		return err;
	a.qp_state = VRDMA_QPS_RTS;
	a.sq_psn = sq_psn;
	a.timeout = 14;
	a.retry_cnt = p && p->retry_count ? p->retry_count : 7;
	a.rnr_retry = p && p->rnr_retry_count ? p->rnr_retry_count : 7;
	a.max_rd_atomic = p && p->initiator_depth ? p->initiator_depth : 16;
	return vrdma_modify_qp(qp, &a,
			       VRDMA_QP_STATE | VRDMA_QP_SQ_PSN | VRDMA_QP_TIMEOUT |
				       VRDMA_QP_RETRY_CNT | VRDMA_QP_RNR_RETRY |
				       VRDMA_QP_MAX_QP_RD_ATOMIC);
}

static void
cm_fill(struct wire_rdma_cm *w, const struct vrdma_conn_param *p)
{
	if (!p)
		return;
	w->resp_res = p->responder_resources;
	w->init_depth = p->initiator_depth;
	w->rnr_retry = p->rnr_retry_count;
	w->priv_len = p->private_data_len > WIRE_RDMA_PRIV ? WIRE_RDMA_PRIV : p->private_data_len;
	if (p->private_data)
		memcpy(w->priv, p->private_data, w->priv_len);
}

/* ---------------------------------------------------------------------- */
/* Passive side */

int
vrdma_listen(struct vrdma_context *ctx, uint32_t port, struct vrdma_listener **out)
{
	struct wire_bind w = { .port = port ? port : 0xffffffffu };
	struct vrdma_listener *l = calloc(1, sizeof(*l));
	int err;

	if (!l)
		return -ENOMEM;
	l->ctx = ctx;
	vrdma__vsk_init(&l->ctl, ctx);
	if ((err = ctl_rpc(&l->ctl, WIRE_RDMA_CM_LISTEN, &w, NULL, 0, NULL, -1))) {
		ctl_drop(&l->ctl);
		free(l);
		return err;
	}
	l->port = w.out_port;
	*out = l;
	return 0;
}

uint32_t
vrdma_listener_port(const struct vrdma_listener *l)
{
	return l->port;
}

int
vrdma_listener_fd(const struct vrdma_listener *l)
{
	return l->ctl.ctrl;
}

void
vrdma_listener_close(struct vrdma_listener *l)
{
	if (!l)
		return;
	ctl_drop(&l->ctl); /* the daemon refuses what was not answered */
	free(l);
}

static void
queue_req(struct vrdma_listener *l, const struct wire_rdma_cm *w)
{
	struct vrdma_conn_req *r;

	if (l->qcount == CM_QUEUE)
		return; /* the connector times out, as with a full backlog */
	r = &l->q[(l->qhead + l->qcount++) % CM_QUEUE];
	memset(r, 0, sizeof(*r));
	r->id = w->id;
	r->src_cid = w->cid;
	r->src_qpn = w->qpn;
	r->psn = w->psn & 0xffffff;
	r->private_data_len = w->priv_len > WIRE_RDMA_PRIV ? WIRE_RDMA_PRIV : w->priv_len;
	memcpy(r->private_data, w->priv, r->private_data_len);
	r->responder_resources = w->resp_res;
	r->initiator_depth = w->init_depth;
	if (w->family == AF_INET) {
		struct sockaddr_in *a = (struct sockaddr_in *)&r->src_addr;

		a->sin_family = AF_INET;
		memcpy(&a->sin_addr, w->addr, 4);
	} else if (w->family == AF_INET6) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&r->src_addr;

		a->sin6_family = AF_INET6;
		memcpy(&a->sin6_addr, w->addr, 16);
	}
	if (w->family) {
		r->remote = 1;
		r->src_cid = VRDMA_CID_REMOTE;
		r->path_mtu = (uint8_t)mtu_enum(w->mtu);
	}
}

/* The family and address of a remote request's requester (IPv4: 4 bytes), or 0. */
static uint8_t
req_addr(const struct vrdma_conn_req *req, uint8_t addr[16])
{
	const struct sockaddr_in *a4 = (const struct sockaddr_in *)&req->src_addr;
	const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *)&req->src_addr;

	if (!req->remote)
		return 0;
	if (req->src_addr.ss_family == AF_INET) {
		memcpy(addr, &a4->sin_addr, 4);
		return AF_INET;
	}
	if (req->src_addr.ss_family == AF_INET6) {
		memcpy(addr, &a6->sin6_addr, 16);
		return AF_INET6;
	}
	return 0;
}

/*
 * Messages on the listener's connection until the reply to @seq (@seq 0:
 * until a request is queued) or @deadline. Requests are queued.
 */
static int
lis_wait(struct vrdma_listener *l, uint32_t seq, int64_t deadline, int *status)
{
	struct pollfd p = { .fd = l->ctl.ctrl, .events = POLLIN };
	struct wire_msg m;
	ssize_t n;

	for (;;) {
		n = wire_recv(l->ctl.ctrl, &m, MSG_DONTWAIT);
		if (n == 0 || n == -ECONNRESET)
			return -ENETDOWN;
		if (n > 0) {
			wire_msg_close_fds(&m);
			if (!(m.hdr.flags & WIRE_F_REPLY) && m.hdr.type == WIRE_RDMA_CM_REQ) {
				queue_req(l, &m.body.rdma_cm);
				if (!seq)
					return 0;
			} else if ((m.hdr.flags & WIRE_F_REPLY) && m.hdr.seq == seq && seq) {
				*status = m.hdr.status;
				return 0;
			}
			continue;
		}
		if (n != -EAGAIN)
			return (int)n;
		int64_t now = clock_ns();

		if (deadline >= 0 && now >= deadline)
			return deadline == 0 ? -EAGAIN : -ETIMEDOUT;
		if (poll(&p, 1, deadline < 0 ? -1 : (int)((deadline - now + 999999) / 1000000)) < 0 &&
		    errno != EINTR)
			return -errno;
	}
}

int
vrdma_get_request(struct vrdma_listener *l, struct vrdma_conn_req *req, int timeout_ms)
{
	int64_t deadline = timeout_ms < 0 ? -1 : timeout_ms == 0 ? 0
					  : clock_ns() + (int64_t)timeout_ms * 1000000;
	int err;

	if (!l->qcount && (err = lis_wait(l, 0, deadline, NULL)))
		return err;
	*req = l->q[l->qhead];
	l->qhead = (l->qhead + 1) % CM_QUEUE;
	l->qcount--;
	return 0;
}

/* Send ACCEPT or REJECT for @req and wait for the daemon's answer. */
static int
lis_answer(struct vrdma_listener *l, unsigned type, struct wire_rdma_cm *w)
{
	struct wire_hdr h = { .type = (uint16_t)type, .len = sizeof(*w) };
	int status = 0, err;

	h.seq = ++l->ctl.seq;
	if (wire_send(l->ctl.ctrl, &h, w, NULL, 0) < 0)
		return -ENETDOWN;
	err = lis_wait(l, h.seq, clock_ns() + (int64_t)CM_TIMEOUT_MS * 1000000, &status);
	return err ? err : status;
}

int
vrdma_accept(struct vrdma_listener *l, const struct vrdma_conn_req *req, struct vrdma_qp *qp,
	     const struct vrdma_conn_param *param)
{
	struct wire_rdma_cm w = { .id = req->id, .qpn = qp->qpn, .psn = random_psn() };
	struct vrdma_qp_attr reset = { .qp_state = VRDMA_QPS_RESET };
	struct cm_path path = path_local(req->src_cid);
	int err;

	if (qp->ctx != l->ctx || atomic_load(&qp->state) != VRDMA_QPS_RESET)
		return -EINVAL;
	cm_fill(&w, param);
	if (req->remote) {
		if (!(w.family = req_addr(req, w.addr)) || req->path_mtu < VRDMA_MTU_256 ||
		    req->path_mtu > VRDMA_MTU_4096)
			return -EINVAL;
		path = path_global(w.family, w.addr, 256u << (req->path_mtu - 1));
	}
	err = cm_ready(qp, &path, req->src_qpn, req->psn, w.psn, param, req->initiator_depth);
	if (!err)
		err = lis_answer(l, WIRE_RDMA_CM_ACCEPT, &w);
	if (err)
		vrdma_modify_qp(qp, &reset, VRDMA_QP_STATE);
	return err;
}

int
vrdma_reject(struct vrdma_listener *l, const struct vrdma_conn_req *req)
{
	struct wire_rdma_cm w = { .id = req->id };

	w.family = req_addr(req, w.addr);
	return lis_answer(l, WIRE_RDMA_CM_REJECT, &w);
}

/* ---------------------------------------------------------------------- */
/* Active side */

int
vrdma_connect(struct vrdma_qp *qp, uint32_t cid, uint32_t port,
	      const struct vrdma_conn_param *param, void *reply_data, int timeout_ms)
{
	struct wire_rdma_cm w = { .cid = cid, .port = port, .qpn = qp->qpn, .psn = random_psn() };
	struct vrdma_qp_attr reset = { .qp_state = VRDMA_QPS_RESET };
	uint32_t sq_psn = w.psn;
	struct cm_path path;
	struct vsk v;
	int err;

	if (atomic_load(&qp->state) != VRDMA_QPS_RESET)
		return -EINVAL;
	cm_fill(&w, param);
	vrdma__vsk_init(&v, qp->ctx);
	err = ctl_rpc(&v, WIRE_RDMA_CM_CONNECT, &w, NULL, 0, NULL,
		      (int64_t)(timeout_ms < 0 ? CM_TIMEOUT_MS : timeout_ms) * 1000000);
	ctl_drop(&v); /* a request not answered in time goes with the connection */
	if (err)
		return err;
	if (reply_data)
		memcpy(reply_data, w.priv, w.priv_len > WIRE_RDMA_PRIV ? WIRE_RDMA_PRIV : w.priv_len);
	path = path_local(w.cid);
	err = cm_ready(qp, &path, w.qpn, w.psn, sq_psn, param, w.init_depth);
	if (err)
		vrdma_modify_qp(qp, &reset, VRDMA_QP_STATE);
	return err;
}

/* The listener's port and the peer's address from @addr: 0 or -EINVAL. */
static int
peer_addr(const struct sockaddr *addr, socklen_t len, struct wire_rdma_cm *w)
{
	static const uint8_t mapped[12] = { [10] = 0xff, [11] = 0xff };
	const struct sockaddr_in *a4 = (const struct sockaddr_in *)addr;
	const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *)addr;

	if (!addr)
		return -EINVAL;
	if (addr->sa_family == AF_INET && len >= (socklen_t)sizeof(*a4)) {
		w->family = AF_INET;
		w->port = ntohs(a4->sin_port);
		memcpy(w->addr, &a4->sin_addr, 4);
	} else if (addr->sa_family == AF_INET6 && len >= (socklen_t)sizeof(*a6)) {
		w->port = ntohs(a6->sin6_port);
		if (!memcmp(&a6->sin6_addr, mapped, sizeof(mapped))) {
			w->family = AF_INET;
			memcpy(w->addr, (const uint8_t *)&a6->sin6_addr + 12, 4);
		} else {
			w->family = AF_INET6;
			memcpy(w->addr, &a6->sin6_addr, 16);
		}
	} else {
		return -EINVAL;
	}
	return 0;
}

int
vrdma_connect_addr(struct vrdma_qp *qp, const struct sockaddr *addr, socklen_t len,
		   const struct vrdma_conn_param *param, void *reply_data, int timeout_ms)
{
	struct wire_rdma_cm w = { .qpn = qp->qpn, .psn = random_psn() };
	struct vrdma_qp_attr reset = { .qp_state = VRDMA_QPS_RESET };
	uint32_t sq_psn = w.psn;
	struct cm_path path;
	struct vsk v;
	int err;

	if (atomic_load(&qp->state) != VRDMA_QPS_RESET || peer_addr(addr, len, &w) ||
	    (param && param->private_data_len > VRDMA_PRIVATE_DATA))
		return -EINVAL;
	cm_fill(&w, param);
	w.timeout_ms = (uint32_t)(timeout_ms < 0 ? CM_TIMEOUT_MS : timeout_ms);
	vrdma__vsk_init(&v, qp->ctx);
	err = ctl_rpc(&v, WIRE_RDMA_CM_CONNECT, &w, NULL, 0, NULL,
		      ((int64_t)w.timeout_ms + CM_GRACE_MS) * 1000000);
	ctl_drop(&v); /* an exchange not finished goes with the connection */
	if (err)
		return err;
	if (!w.family || !w.mtu)
		return -EPROTO;
	if (reply_data)
		memcpy(reply_data, w.priv,
		       w.priv_len > WIRE_RDMA_PRIV ? WIRE_RDMA_PRIV : w.priv_len);
	path = path_global(w.family, w.addr, w.mtu);
	err = cm_ready(qp, &path, w.qpn, w.psn, sq_psn, param, w.init_depth);
	if (err)
		vrdma_modify_qp(qp, &reset, VRDMA_QP_STATE);
	return err;
}
