/* SPDX-License-Identifier: MIT */
/*
 * Control connections (see broker.h). One SOCK_SEQPACKET connection per
 * client socket; its first message says which context it acts as, which
 * the daemon checks against SO_PEERCRED and the configuration. Requests are
 * dispatched through a table built from WIRE_MESSAGES.
 *
 * Threat model: clients are untrusted. wire_recv() has already checked the
 * size and descriptor count of every message; handlers check the state,
 * every number, and that the descriptors they pass on are what they claim
 * to be (the listener's library validates the queue pair again before it
 * maps it). A client that breaks the protocol is disconnected and logged
 * (rate-limited); a client that does not read its replies is disconnected
 * rather than allowed to stall the daemon.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "broker.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/shm.h"
#include "common/unixsock.h"
#include "common/wire_io.h"
#include "rdma_cm_net.h"
#include "vmfabric/qp.h"

#define BACKLOG_MAX 4096u
/* Ports one dialer may hold at once (its open connections and its spares). */
#define VMCI_LEASE_MAX 16384u

static void conn_close(struct vmci_conn *c, const char *why);

static enum vmci_space
space_of(uint32_t type)
{
	return type == SOCK_DGRAM ? VMCI_SPACE_DGRAM : VMCI_SPACE_CONN;
}

int
broker__reply(struct vmci_conn *c, const struct wire_hdr *req, int status, const void *body,
	      const int *fds, int nfds)
{
	struct wire_hdr h = { .type = req->type, .flags = WIRE_F_REPLY, .len = req->len,
			      .seq = req->seq, .status = status };
	ssize_t n = wire_send(c->src.fd, &h, body, status ? NULL : fds, status ? 0 : nfds);

	if (n < 0) {
		/* A client that lets its replies pile up is not waited for. */
		log_rl(LOG_LVL_WARN, "conn %llu (pid %d): reply failed: %s",
		       (unsigned long long)c->id, (int)c->pid, strerror((int)-n));
		return (int)n;
	}
	return 0;
}

static int
reply(struct vmci_conn *c, const struct wire_hdr *req, int status, const void *body,
      const int *fds, int nfds)
{
	return broker__reply(c, req, status, body, fds, nfds);
}

static struct vmci_ctx *
conn_ctx(const struct vmci_conn *c)
{
	return vmci_reg_find(&c->b->reg, c->cid);
}

int
broker__charge(struct vmci_conn *c, enum vmci_limit l, uint64_t n)
{
	int err = vmci_quota_take(&c->b->reg, c->cid, l, n);

	if (!err)
		c->charged[l] += n;
	return err;
}

void
broker__uncharge(struct vmci_conn *c, enum vmci_limit l, uint64_t n)
{
	n = n < c->charged[l] ? n : c->charged[l];
	c->charged[l] -= n;
	vmci_quota_give(&c->b->reg, c->cid, l, n);
}

/* ---------------------------------------------------------------------- */
/* Handlers. Each returns 0 when it has replied, -errno to reply that error,
 * or WIRE_FATAL to end the connection. */

static int
on_hello(struct vmci_conn *c, struct wire_msg *m)
{
	struct wire_hello *h = &m->body.hello;
	struct vmci_ctx *x;
	int err;

	if (c->state != CONN_NEW || h->version != WIRE_VERSION)
		return WIRE_FATAL;
	if (h->sock_type != SOCK_STREAM && h->sock_type != SOCK_DGRAM &&
	    h->sock_type != SOCK_SEQPACKET)
		return -ESOCKTNOSUPPORT;
	h->name[sizeof(h->name) - 1] = 0;
	if (h->cid != VMCI_CID_ANY)
		x = vmci_reg_find(&c->b->reg, h->cid);
	else if (h->name[0])
		x = vmci_reg_find_name(&c->b->reg, h->name);
	else
		x = vmci_reg_find(&c->b->reg, VMCI_CID_HOST);
	if (!x)
		return -ENOENT;
	if (vmci_may_act_as(x, c->uid, c->gid)) {
		log_rl(LOG_LVL_WARN, "pid %d (uid %u) may not act as context %u \"%s\"", (int)c->pid,
		       (unsigned)c->uid, x->cid, x->name);
		return -EACCES;
	}
	if (!x->present) {
		log_rl(LOG_LVL_WARN, "pid %d: context %u \"%s\" has VMCI off (vmci0.present)",
		       (int)c->pid, x->cid, x->name);
		return -EACCES;
	}
	c->cid = x->cid;
	if ((err = broker__charge(c, VMCI_LIM_SOCKETS, 1))) {
		c->cid = VMCI_CID_ANY;
		return err;
	}
	c->type = h->sock_type;
	c->privileged = x->privileged || c->uid == 0;
	c->state = CONN_READY;
	x->refs++;
	h->out_cid = x->cid;
	h->out_flags = c->privileged ? WIRE_CTX_PRIVILEGED : 0;
	return reply(c, &m->hdr, 0, h, NULL, 0);
}

static int
do_bind(struct vmci_conn *c, uint32_t port)
{
	int err;

	if (c->bound)
		return -EINVAL;
	if (port < VMCI_PORT_PRIVILEGED && !c->privileged) {
		log_rl(LOG_LVL_WARN, "context %u (pid %d): port %u needs privilege", c->cid,
		       (int)c->pid, port);
		return -EACCES;
	}
	if ((err = broker__charge(c, VMCI_LIM_PORTS, 1)))
		return err;
	err = vmci_port_bind(&c->b->ports, space_of(c->type), c->cid, port, c, &c->port);
	if (err) {
		broker__uncharge(c, VMCI_LIM_PORTS, 1);
		return err;
	}
	c->bound = true;
	if (c->state == CONN_READY)
		c->state = CONN_BOUND;
	return 0;
}

static int
on_bind(struct vmci_conn *c, struct wire_msg *m)
{
	int err;

	if (c->state != CONN_READY)
		return c->state == CONN_NEW ? WIRE_FATAL : -EINVAL;
	err = do_bind(c, m->body.bind.port);
	if (err)
		return err;
	m->body.bind.out_port = c->port;
	return reply(c, &m->hdr, 0, &m->body.bind, NULL, 0);
}

static int
on_listen(struct vmci_conn *c, struct wire_msg *m)
{
	struct wire_listen *l = &m->body.listen;
	int err;

	if (c->type == SOCK_DGRAM)
		return -EOPNOTSUPP;
	if (c->state != CONN_READY && c->state != CONN_BOUND)
		return c->state == CONN_NEW ? WIRE_FATAL : -EINVAL;
	if (l->buf_min > l->buf_max || l->buf_size < l->buf_min || l->buf_size > l->buf_max)
		return -EINVAL;
	if (!c->bound && (err = do_bind(c, VMCI_PORT_ANY)))
		return err;
	c->bl_fd = shm_create("vmfabric-backlog", WIRE_BACKLOG_BYTES, (void **)&c->bl);
	if (c->bl_fd < 0)
		return c->bl_fd;
	c->state = CONN_LISTENING;
	loop_mod(c->b->loop, &c->src, 0); /* a listener says nothing more: hang-ups only */
	c->backlog = l->backlog < 1 ? 1 : l->backlog > BACKLOG_MAX ? BACKLOG_MAX : l->backlog;
	c->buf_size = l->buf_size;
	c->buf_min = l->buf_min;
	c->buf_max = l->buf_max;
	return reply(c, &m->hdr, 0, l, &c->bl_fd, 1);
}

/* Resolve a destination CID as seen from @c (1 = itself). */
static struct vmci_ctx *
dest_ctx(struct vmci_conn *c, uint32_t cid)
{
	if (cid == VMCI_CID_LOCAL)
		cid = c->cid;
	return vmci_reg_find(&c->b->reg, cid);
}

/*
 * The descriptors a connector passes on must be what a queue pair is made
 * of, so that a listener is never handed a pipe or a device: the memfd is
 * checked (seals, layout) by qp_watch_open() in on_connect(); eventfds are
 * anonymous inodes (no file type in st_mode); the last is a socket.
 */
static int
check_qp_fds(const int *fds)
{
	struct stat st[3];

	for (int i = 0; i < 3; i++)
		if (fstat(fds[i + 1], &st[i]) < 0)
			return -EINVAL;
	if ((st[0].st_mode & S_IFMT) || (st[1].st_mode & S_IFMT) || !S_ISSOCK(st[2].st_mode))
		return -EINVAL;
	return 0;
}

/* Give a listener a queue pair's side-1 descriptors. */
static int
send_incoming(struct vmci_conn *l, uint64_t conn, uint32_t src_cid, uint32_t src_port,
	      const int *fds, uint64_t size)
{
	struct wire_incoming in = { .conn = conn, .src_cid = src_cid, .src_port = src_port,
				    .dst_cid = l->cid, .dst_port = l->port, .size = size };
	struct wire_hdr h = { .type = WIRE_INCOMING, .len = sizeof(in) };
	ssize_t n;

	if (!wire_backlog_take(l->bl, l->backlog))
		return -ECONNREFUSED;
	n = wire_send(l->src.fd, &h, &in, fds, 4);
	if (n < 0) { /* the listener's queue is full: it is not keeping up */
		wire_backlog_give(l->bl);
		return n == -EAGAIN ? -ECONNREFUSED : (int)n;
	}
	return 0;
}

/* The listener on @cid:@port for @type, or NULL. */
static struct vmci_conn *
find_listener(struct vmci_broker *b, uint32_t cid, uint32_t port, uint32_t type)
{
	struct vmci_conn *l = vmci_port_find(&b->ports, VMCI_SPACE_CONN, cid, port);

	if (!l || l->state != CONN_LISTENING || l->type != type)
		return NULL;
	return l;
}

/* The connector's side of a connection that is now established. */
static void
connected(struct vmci_conn *c, struct wire_connect *w, uint32_t peer_cid, struct qp_watch *watch)
{
	c->watch = *watch;
	c->watching = true;
	c->state = CONN_CONNECTED;
	loop_mod(c->b->loop, &c->src, 0); /* nothing more to say but hang up */
	c->peer_cid = peer_cid;
	c->peer_port = w->dst_port;
	c->qsize = w->size;
	w->out_port = c->port;
	w->out_cid = c->cid;
	w->out_conn = c->id;
	log_debug("conn %llu: %u:%u -> %u:%u", (unsigned long long)c->id, c->cid, c->port,
		  peer_cid, w->dst_port);
}

/* ---------------------------------------------------------------------- */
/* Virtual machines: connects to a guest wait for its answer. */

struct vmci_pending {
	struct vmci_conn *c; /* NULL once the connector went away */
	struct wire_hdr hdr;
	struct wire_connect w;
	uint32_t peer_cid;
	struct qp_watch watch;
};

static void
vm_connect_done(void *arg, int err)
{
	struct vmci_pending *p = arg;
	struct vmci_conn *c = p->c;

	if (c) {
		c->pend = NULL;
		if (!err) {
			connected(c, &p->w, p->peer_cid, &p->watch);
		} else {
			qp_watch_close(&p->watch);
			broker__uncharge(c, VMCI_LIM_QP_BYTES, 2 * p->w.size); /* it may try again */
		}
		if (reply(c, &p->hdr, err, &p->w, NULL, 0) < 0)
			conn_close(c, "client not reading");
	} else {
		qp_watch_close(&p->watch);
	}
	free(p);
}

/* CONNECT to a guest: the daemon takes the listener's side and asks the guest. */
static int
vm_connect(struct vmci_conn *c, struct wire_msg *m, struct vmci_ctx *dst)
{
	struct qp_fds f = { m->fds[0], m->fds[1], m->fds[2], m->fds[3] };
	struct vmci_pending *p;
	struct qp *q;
	int err;

	if (!dst->vsock || !vsock_dev_attached(dst->vsock))
		return -EHOSTUNREACH; /* no device (VMCI off) or the VM is not running */
	if (c->pend)
		return -EALREADY;
	if (!(p = calloc(1, sizeof(*p))))
		return -ENOMEM;
	if (qp_watch_open(m->fds[0], &p->watch)) {
		free(p);
		return -EINVAL;
	}
	if ((!c->bound && (err = do_bind(c, VMCI_PORT_ANY))) ||
	    (err = broker__charge(c, VMCI_LIM_QP_BYTES, 2 * m->body.connect.size)))
		goto fail;
	if ((err = qp_attach(&f, &q))) {
		broker__uncharge(c, VMCI_LIM_QP_BYTES, 2 * m->body.connect.size);
		goto fail;
	}
	m->nfds = 0; /* the queue pair owns them now */
	p->c = c;
	p->hdr = m->hdr;
	p->w = m->body.connect;
	p->peer_cid = dst->cid;
	err = vsock_offer(dst->vsock, c->cid, c->port, p->w.dst_port, (int)c->type, q,
			  vm_connect_done, p);
	if (err) {
		qp_close(q);
		broker__uncharge(c, VMCI_LIM_QP_BYTES, 2 * p->w.size);
		goto fail;
	}
	c->pend = p;
	return 0; /* answered in vm_connect_done() */
fail:
	qp_watch_close(&p->watch);
	free(p);
	return err;
}

/*
 * The datagram relay (VSOCK_DGRAM_RELAY_PORT): the guest's SEQPACKET
 * connection's queue pair is made the rings of a datagram socket of its
 * context, bound to the connection's source port. The router reads the
 * guest's messages as datagrams (struct wire_dgram then payload) and writes
 * those for the guest the same way: nothing in between to translate.
 * A control connection without a socket (fd -1) stands for it in the port
 * table and in listings, and goes when the guest's connection does.
 */
static void
relay_closed(void *arg)
{
	conn_close(arg, "datagram relay closed");
}

static int
relay_route(struct vmci_broker *b, struct vmci_ctx *src, uint32_t port, struct vsock_route *r)
{
	struct vmci_conn *c = calloc(1, sizeof(*c));
	struct dgram_ep *e = calloc(1, sizeof(*e));
	int err = -ENOMEM;

	if (!c || !e)
		goto fail;
	*c = (struct vmci_conn){ .src.fd = -1, .b = b, .id = ++b->next_id, .cid = src->cid,
				 .type = SOCK_DGRAM, .state = CONN_READY,
				 .privileged = true /* the guest kernel guards its ports */ };
	/* A guest's relay socket counts against its context as a process's would. */
	if ((err = broker__charge(c, VMCI_LIM_SOCKETS, 1)) ||
	    (err = broker__charge(c, VMCI_LIM_QP_BYTES, 2 * QP_SIZE_DEFAULT)) ||
	    (err = broker__charge(c, VMCI_LIM_DGRAM_BYTES, QP_SIZE_DEFAULT)) ||
	    (err = do_bind(c, port)))
		goto fail;
	if ((err = qp_create_pair(QP_SIZE_DEFAULT, QP_SIZE_DEFAULT, &e->qp, &r->qp)))
		goto fail_unbind;
	e->cid = c->cid;
	e->port = c->port;
	e->pol = *src;
	if ((err = dgram_add(&b->router, e))) {
		qp_close(e->qp);
		qp_close(r->qp);
		r->qp = NULL;
		goto fail_unbind;
	}
	c->ep = e;
	c->state = CONN_DGRAM;
	c->qsize = QP_SIZE_DEFAULT;
	c->next = b->conns;
	if (b->conns)
		b->conns->prev = c;
	b->conns = c;
	b->nconns++;
	src->refs++;
	r->closed = relay_closed;
	r->closed_arg = c;
	return 0;
fail_unbind:
	vmci_port_unbind(&b->ports, VMCI_SPACE_DGRAM, c->cid, c->port);
fail:
	if (c && c->b) /* set up: give back what it took */
		for (int l = 0; l < VMCI_LIM_N; l++)
			broker__uncharge(c, l, c->charged[l]);
	free(e);
	free(c);
	return err;
}

/* What a guest's connection to a listener holds of its context's quotas. */
struct route_charge {
	struct vmci_broker *b;
	uint32_t cid;
	uint64_t bytes;
};

static void
route_closed(void *arg)
{
	struct route_charge *rc = arg;

	vmci_quota_give(&rc->b->reg, rc->cid, VMCI_LIM_SOCKETS, 1);
	vmci_quota_give(&rc->b->reg, rc->cid, VMCI_LIM_QP_BYTES, rc->bytes);
	free(rc);
}

static struct route_charge *
route_charge(struct vmci_broker *b, uint32_t cid, uint64_t bytes, int *err)
{
	struct route_charge *rc = malloc(sizeof(*rc));

	if (!rc) {
		*err = -ENOMEM;
		return NULL;
	}
	*rc = (struct route_charge){ b, cid, bytes };
	if ((*err = vmci_quota_take(&b->reg, cid, VMCI_LIM_SOCKETS, 1)))
		goto fail;
	if ((*err = vmci_quota_take(&b->reg, cid, VMCI_LIM_QP_BYTES, bytes))) {
		vmci_quota_give(&b->reg, cid, VMCI_LIM_SOCKETS, 1);
		goto fail;
	}
	return rc;
fail:
	free(rc);
	return NULL;
}

/* A guest's REQUEST: to a listener (a queue pair for it) or to another VM. */
static int
vm_route(void *ctx, struct vsock_dev *from, uint32_t src_port, uint32_t dst_cid,
	 uint32_t dst_port, int type, struct vsock_route *r)
{
	struct vmci_broker *b = ctx;
	uint32_t src_cid = vsock_dev_cid(from);
	struct vmci_ctx *src = vmci_reg_find(&b->reg, src_cid), *dst;
	struct route_charge *rc;
	struct vmci_conn *l;
	struct qp_fds f;
	uint64_t size;
	int err;

	if (!src || dst_cid == VMCI_CID_LOCAL || dst_cid == src_cid)
		return -EHOSTUNREACH;
	dst = vmci_reg_find(&b->reg, dst_cid);
	if (!dst)
		return -EHOSTUNREACH;
	if (vmci_policy(src, dst)) {
		log_rl(LOG_LVL_WARN, "refused: context %u -> %u:%u (VMCI policy)", src_cid, dst_cid,
		       dst_port);
		return -EACCES;
	}
	if (dst_cid == VMCI_CID_HOST && dst_port == VSOCK_DGRAM_RELAY_PORT && type == SOCK_SEQPACKET)
		return relay_route(b, src, src_port, r);
	if (dst->kind == VMCI_KIND_VM) {
		if (!dst->vsock)
			return -EHOSTUNREACH;
		r->vm = dst->vsock;
		r->qsize = QP_SIZE_DEFAULT;
		return 0;
	}
	l = find_listener(b, dst->cid, dst_port, (uint32_t)type);
	if (!l)
		return -ECONNREFUSED;
	size = qp_size_round(l->buf_size);
	if (!(rc = route_charge(b, src_cid, 2 * size, &err)))
		return err;
	if ((err = qp_create(size, size, &r->qp, &f))) {
		route_closed(rc);
		return err;
	}
	err = send_incoming(l, 0, src_cid, src_port, (int[]){ f.mem, f.wake, f.peer_wake, f.alive },
			    size);
	close(f.mem), close(f.wake), close(f.peer_wake), close(f.alive);
	if (err) {
		qp_close(r->qp);
		r->qp = NULL;
		route_closed(rc);
		return err;
	}
	r->closed = route_closed; /* the quota goes back with the guest's connection */
	r->closed_arg = rc;
	return 0;
}

static int
on_connect(struct vmci_conn *c, struct wire_msg *m)
{
	struct wire_connect *w = &m->body.connect;
	struct vmci_ctx *src = conn_ctx(c), *dst;
	struct qp_watch watch;
	struct vmci_conn *l;
	int err;

	if (c->state == CONN_NEW)
		return WIRE_FATAL;
	if (c->type == SOCK_DGRAM)
		return -EOPNOTSUPP;
	if (c->state != CONN_READY && c->state != CONN_BOUND)
		return -EISCONN;
	dst = dest_ctx(c, w->dst_cid);
	if (!dst)
		return -EHOSTUNREACH;
	if (vmci_policy(src, dst)) {
		log_rl(LOG_LVL_WARN, "refused: context %u -> %u:%u (VMCI policy)", c->cid,
		       dst->cid, w->dst_port);
		return -EACCES;
	}
	if (qp_size_round(w->size) != w->size || check_qp_fds(m->fds))
		return -EINVAL;
	if (dst->kind == VMCI_KIND_VM)
		return vm_connect(c, m, dst);
	if (!(l = find_listener(c->b, dst->cid, w->dst_port, c->type)))
		return -ECONNREFUSED;
	if (w->size != qp_size_round(l->buf_size) && (w->size < l->buf_min || w->size > l->buf_max)) {
		/* As VMCI: the listener's size, when the connector's is out of its range. */
		w->out_size = qp_size_round(l->buf_size);
		return reply(c, &m->hdr, -EMSGSIZE, w, NULL, 0);
	}
	/* Validates the memfd, and keeps its headers mapped for byte counters. */
	if (qp_watch_open(m->fds[0], &watch))
		return -EINVAL;
	if ((!c->bound && (err = do_bind(c, VMCI_PORT_ANY))) ||
	    (err = broker__charge(c, VMCI_LIM_QP_BYTES, 2 * w->size))) {
		qp_watch_close(&watch);
		return err;
	}
	if ((err = send_incoming(l, c->id, c->cid, c->port, m->fds, w->size))) {
		broker__uncharge(c, VMCI_LIM_QP_BYTES, 2 * w->size);
		qp_watch_close(&watch);
		return err;
	}
	connected(c, w, dst->cid, &watch);
	return reply(c, &m->hdr, 0, w, NULL, 0);
}

static void
dgram_uncharge(struct vmci_conn *c, uint64_t ring)
{
	broker__uncharge(c, VMCI_LIM_DGRAM_BYTES, ring);
	broker__uncharge(c, VMCI_LIM_QP_BYTES, 2 * ring);
}

static int
on_dgram_open(struct vmci_conn *c, struct wire_msg *m)
{
	struct wire_bind *w = &m->body.bind;
	struct dgram_ep *e;
	struct qp_fds peer;
	int err, fds[4];

	if (c->type != SOCK_DGRAM || c->state != CONN_READY)
		return c->state == CONN_NEW ? WIRE_FATAL : -EINVAL;
	w->ring = qp_size_round(w->ring < QP_SIZE_DEFAULT ? QP_SIZE_DEFAULT : w->ring);
	e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	/* Its inbound ring is the backlog of datagrams queued for the context. */
	err = broker__charge(c, VMCI_LIM_DGRAM_BYTES, w->ring);
	if (!err && (err = broker__charge(c, VMCI_LIM_QP_BYTES, 2 * w->ring)))
		broker__uncharge(c, VMCI_LIM_DGRAM_BYTES, w->ring);
	if (!err && (err = do_bind(c, w->port)))
		dgram_uncharge(c, w->ring);
	if (!err && (err = qp_create(w->ring, w->ring, &e->qp, &peer)))
		dgram_uncharge(c, w->ring); /* the port goes with the connection */
	if (err) {
		free(e);
		return err;
	}
	e->cid = c->cid;
	e->port = c->port;
	e->pol = *conn_ctx(c);
	fds[0] = peer.mem, fds[1] = peer.wake, fds[2] = peer.peer_wake, fds[3] = peer.alive;
	w->out_port = c->port;
	err = dgram_add(&c->b->router, e);
	if (err) {
		qp_close(e->qp);
		free(e);
		dgram_uncharge(c, w->ring);
	} else {
		c->ep = e;
		c->state = CONN_DGRAM;
		c->qsize = w->ring;
		err = reply(c, &m->hdr, 0, w, fds, 4);
	}
	for (int i = 0; i < 4; i++)
		close(fds[i]);
	return err;
}

static int
on_check(struct vmci_conn *c, struct wire_msg *m)
{
	struct vmci_ctx *dst;

	if (c->state == CONN_NEW)
		return WIRE_FATAL;
	dst = dest_ctx(c, m->body.check.cid);
	if (!dst)
		return -EHOSTUNREACH;
	if (vmci_policy(conn_ctx(c), dst)) {
		log_rl(LOG_LVL_WARN, "refused: context %u -> %u datagrams (VMCI policy)", c->cid,
		       dst->cid);
		return -EACCES;
	}
	return reply(c, &m->hdr, 0, &m->body.check, NULL, 0);
}

/* Is one of the peer's supplementary groups (as at its connect()) @gid? */
static bool
peer_in_group(int fd, gid_t gid)
{
	gid_t small[64], *g = small;
	socklen_t len = sizeof(small);
	bool in = false;

	if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, g, &len) < 0) {
		if (errno != ERANGE || !(g = malloc(len)))
			return false;
		if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, g, &len) < 0)
			len = 0;
	}
	for (size_t i = 0; i < len / sizeof(*g) && !in; i++)
		in = g[i] == gid;
	if (g != small)
		free(g);
	return in;
}

/*
 * Management is for root and the members of vmfabricd.mgmt_group (primary
 * group from SO_PEERCRED, supplementary ones from SO_PEERGROUPS). Anyone
 * else gets -EACCES, with the reason in the reply's arg for the CLI to show.
 */
static int
may_manage(struct vmci_conn *c, struct wire_mgmt *w)
{
	const struct vmci_reg *r = &c->b->reg;

	if (c->uid == 0)
		return 0;
	if (r->has_mgmt_gid &&
	    (c->gid == r->mgmt_gid || (c->src.fd >= 0 && peer_in_group(c->src.fd, r->mgmt_gid))))
		return 0;
	log_rl(LOG_LVL_WARN, "pid %d (uid %u): management refused: %s", (int)c->pid,
	       (unsigned)c->uid, r->has_mgmt_gid ? "not root nor in vmfabricd.mgmt_group" : "not root");
	if (r->has_mgmt_gid)
		snprintf(w->arg, sizeof(w->arg), "management is for root and the group %s",
			 r->mgmt_group);
	else
		snprintf(w->arg, sizeof(w->arg),
			 "management is for root only (vmfabricd.mgmt_group names a group that "
			 "may use it too)");
	return -EACCES;
}

static int
on_mgmt(struct vmci_conn *c, struct wire_msg *m)
{
	struct wire_mgmt *w = &m->body.mgmt;
	char *json = NULL;
	size_t len;
	int fd, err;

	struct broker_mgmt_req r = { .cmd = w->cmd, .arg = w->arg, .uid = c->uid,
				     .fd = m->hdr.type == WIRE_MGMT_FD ? m->fds[0] : -1 };

	w->cmd[sizeof(w->cmd) - 1] = 0;
	w->arg[sizeof(w->arg) - 1] = 0;
	if ((err = may_manage(c, w)))
		return err;
	err = broker_mgmt(c->b, &r, &json);
	if (err) {
		w->arg[0] = 0; /* the reply's arg carries only may_manage()'s reasons */
		return err;
	}
	len = strlen(json);
	fd = memfd_create("vmfabric-mgmt", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0 || write(fd, json, len) != (ssize_t)len ||
	    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) < 0) {
		err = -errno;
		free(json);
		if (fd >= 0)
			close(fd);
		return err ? err : -EIO;
	}
	free(json);
	w->out_len = len;
	err = reply(c, &m->hdr, 0, w, &fd, 1);
	close(fd);
	return err;
}

/* ---------------------------------------------------------------------- */
/* Dialers: direct connections (see wire.h) */

static int
on_dialer(struct vmci_conn *c, struct wire_msg *m)
{
	void *t;
	int err;

	if (c->state != CONN_READY || c->table || c->type == SOCK_DGRAM)
		return c->state == CONN_NEW ? WIRE_FATAL : -EINVAL;
	if (m->body.dialer.slots != WIRE_DIAL_SLOTS)
		return -EINVAL;
	err = shm_map(m->fds[0], WIRE_DIAL_SLOTS * sizeof(struct wire_dial_slot), 0, &t);
	if (err)
		return err;
	c->table = t;
	return reply(c, &m->hdr, 0, &m->body.dialer, NULL, 0);
}

/*
 * A channel between a dialer and a listener: the policy is checked here,
 * once; every connection on it comes from the dialer's context.
 */
static int
on_channel(struct vmci_conn *c, struct wire_msg *m)
{
	struct wire_channel *w = &m->body.channel;
	struct wire_channel_new n = { .src_cid = c->cid,
				      .flags = c->privileged ? WIRE_CTX_PRIVILEGED : 0 };
	struct wire_hdr h = { .type = WIRE_CHANNEL_NEW, .len = sizeof(n) };
	struct vmci_ctx *dst;
	struct vmci_conn *l;
	int sv[2], err;

	if (!c->table)
		return c->state == CONN_NEW ? WIRE_FATAL : -EINVAL;
	if (w->type != SOCK_STREAM && w->type != SOCK_SEQPACKET)
		return -ESOCKTNOSUPPORT;
	dst = dest_ctx(c, w->dst_cid);
	if (!dst)
		return -EHOSTUNREACH;
	if (vmci_policy(conn_ctx(c), dst)) {
		log_rl(LOG_LVL_WARN, "refused: context %u -> %u:%u (VMCI policy)", c->cid,
		       dst->cid, w->dst_port);
		return -EACCES;
	}
	if (dst->kind == VMCI_KIND_VM)
		return -EREMOTE; /* a guest answers through the daemon: CONNECT */
	if (!(l = find_listener(c->b, dst->cid, w->dst_port, w->type)))
		return -ECONNREFUSED;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return -errno;
	if (wire_send(l->src.fd, &h, &n, &sv[1], 1) < 0) {
		err = -ECONNREFUSED; /* the listener is not reading: as a full backlog */
	} else {
		l->channels++;
		w->out_cid = c->cid;
		w->out_backlog = l->backlog;
		w->buf_size = l->buf_size;
		w->buf_min = l->buf_min;
		w->buf_max = l->buf_max;
		err = reply(c, &m->hdr, 0, w, (int[]){ sv[0], l->bl_fd }, 2);
	}
	close(sv[0]);
	close(sv[1]);
	return err;
}

/* Ephemeral ports for a dialer's connections; they go with its control connection. */
static int
on_lease(struct vmci_conn *c, struct wire_msg *m)
{
	struct wire_lease *w = &m->body.lease;
	uint32_t *more;
	int err = 0;

	if (!c->table)
		return c->state == CONN_NEW ? WIRE_FATAL : -EINVAL;
	if (w->count == 0 || w->count > WIRE_LEASE_MAX)
		return -EINVAL;
	if (c->nleased + w->count > VMCI_LEASE_MAX)
		return -EADDRNOTAVAIL;
	more = realloc(c->leased, (c->nleased + w->count) * sizeof(*more));
	if (!more)
		return -ENOMEM;
	c->leased = more;
	for (w->out_count = 0; w->out_count < w->count; w->out_count++) {
		uint32_t port;

		if ((err = broker__charge(c, VMCI_LIM_PORTS, 1)))
			break;
		err = vmci_port_bind(&c->b->ports, VMCI_SPACE_CONN, c->cid, VMCI_PORT_ANY, c, &port);
		if (err) {
			broker__uncharge(c, VMCI_LIM_PORTS, 1);
			break;
		}
		c->leased[c->nleased++] = port;
		w->out_ports[w->out_count] = port;
	}
	if (!w->out_count)
		return err;
	return reply(c, &m->hdr, 0, w, NULL, 0);
}

/* ---------------------------------------------------------------------- */
/* Virtual switches */

#define VNIC_RING_DEFAULT (1u << 20)

static void
qp_fds_close(struct qp_fds *f)
{
	close(f->mem), close(f->wake), close(f->peer_wake), close(f->alive);
}

/* Reply with a queue pair's side-1 descriptors, then let go of them. */
static int
reply_qp(struct vmci_conn *c, const struct wire_hdr *req, const void *body, struct qp_fds *f)
{
	int err = reply(c, req, 0, body, (int[]){ f->mem, f->wake, f->peer_wake, f->alive }, 4);

	qp_fds_close(f);
	return err;
}

static int
on_vnic_open(struct vmci_conn *c, struct wire_msg *m)
{
	struct wire_vnic *w = &m->body.vnic;
	uint64_t ring = w->ring ? w->ring : VNIC_RING_DEFAULT;
	struct vnic_port *v;
	struct qp_fds peer;
	int err;

	if (c->state != CONN_READY || c->vnic || c->capture || c->table)
		return c->state == CONN_NEW ? WIRE_FATAL : -EINVAL;
	if (qp_size_round(ring) != ring || ring < (16u << 10) || ring > QP_SIZE_MAX)
		return -EINVAL;
	w->portgroup[sizeof(w->portgroup) - 1] = 0;
	if (!(v = calloc(1, sizeof(*v))))
		return -ENOMEM;
	memcpy(v->dp.mac, w->mac, sizeof(v->dp.mac));
	v->pid = c->pid;
	if ((err = broker__charge(c, VMCI_LIM_QP_BYTES, 2 * ring))) {
		free(v);
		return err;
	}
	if ((err = qp_create(ring, ring, &v->qp, &peer))) {
		broker__uncharge(c, VMCI_LIM_QP_BYTES, 2 * ring);
		free(v);
		return err;
	}
	qp_set_mode(v->qp, QP_NONBLOCK);
	if ((err = vsw_dp_add_vnic(&c->b->dp, v, w->portgroup))) {
		broker__uncharge(c, VMCI_LIM_QP_BYTES, 2 * ring);
		qp_close(v->qp);
		free(v);
		qp_fds_close(&peer);
		return err;
	}
	c->vnic = v;
	c->state = CONN_VNIC;
	/* Written by the dataplane before it took the port: stable from here. */
	snprintf(w->out_name, sizeof(w->out_name), "%s", v->dp.p.name);
	memcpy(w->out_mac, v->dp.mac, sizeof(w->out_mac));
	return reply_qp(c, &m->hdr, w, &peer);
}

#define CAPTURE_RING (4u << 20)

static int
on_capture_open(struct vmci_conn *c, struct wire_msg *m)
{
	struct wire_capture *w = &m->body.capture;
	struct vsw_capture *cap;
	struct qp_fds peer;
	int err;

	if (c->state != CONN_READY || c->vnic || c->capture || c->table)
		return c->state == CONN_NEW ? WIRE_FATAL : -EINVAL;
	if (c->uid != 0)
		return -EPERM; /* every frame of a port: the administrator's */
	w->port[sizeof(w->port) - 1] = 0;
	if (!(cap = calloc(1, sizeof(*cap))))
		return -ENOMEM;
	snprintf(cap->port, sizeof(cap->port), "%s", w->port);
	cap->snaplen = w->snaplen;
	if ((err = qp_create(CAPTURE_RING, QP_SIZE_MIN, &cap->qp, &peer))) {
		free(cap);
		return err;
	}
	if ((err = vsw_dp_capture_start(&c->b->dp, cap))) {
		qp_close(cap->qp);
		free(cap);
		qp_fds_close(&peer);
		return err;
	}
	c->capture = cap;
	c->state = CONN_VNIC;
	return reply_qp(c, &m->hdr, w, &peer);
}

static int
on_unexpected(struct vmci_conn *c, struct wire_msg *m)
{
	(void)c;
	(void)m;
	return WIRE_FATAL; /* INCOMING and CHANNEL_NEW come from the daemon, DIAL goes between clients */
}

typedef int handler_fn(struct vmci_conn *c, struct wire_msg *m);

static handler_fn *const handlers[WIRE_TYPE_MAX] = {
	[WIRE_HELLO] = on_hello,     [WIRE_BIND] = on_bind,
	[WIRE_LISTEN] = on_listen,   [WIRE_CONNECT] = on_connect,
	[WIRE_INCOMING] = on_unexpected,
	[WIRE_DGRAM_OPEN] = on_dgram_open, [WIRE_MGMT] = on_mgmt,
	[WIRE_CHECK] = on_check, [WIRE_MGMT_FD] = on_mgmt,
	[WIRE_DIALER] = on_dialer, [WIRE_CHANNEL] = on_channel,
	[WIRE_CHANNEL_NEW] = on_unexpected, [WIRE_LEASE] = on_lease,
	[WIRE_DIAL] = on_unexpected, [WIRE_REDIAL] = on_unexpected,
	[WIRE_VNIC_OPEN] = on_vnic_open, [WIRE_CAPTURE_OPEN] = on_capture_open,
	[WIRE_RDMA_OPEN] = broker__rdma_msg, [WIRE_RDMA_MR_REG] = broker__rdma_msg,
	[WIRE_RDMA_MR_DEREG] = broker__rdma_msg, [WIRE_RDMA_MR_MAP] = broker__rdma_msg,
	[WIRE_RDMA_QP_CREATE] = broker__rdma_msg, [WIRE_RDMA_QP_DESTROY] = broker__rdma_msg,
	[WIRE_RDMA_QP_RTR] = broker__rdma_msg, [WIRE_RDMA_QP_ATTACH] = broker__rdma_msg,
	[WIRE_RDMA_QP_RESET] = broker__rdma_msg, [WIRE_RDMA_CM_LISTEN] = broker__rdma_msg,
	[WIRE_RDMA_CM_CONNECT] = broker__rdma_msg, [WIRE_RDMA_CM_REQ] = on_unexpected,
	[WIRE_RDMA_CM_ACCEPT] = broker__rdma_msg, [WIRE_RDMA_CM_REJECT] = broker__rdma_msg,
	[WIRE_RDMA_DEVICES] = broker__rdma_msg, [WIRE_RDMA_QP_RTS] = broker__rdma_msg,
};

/* ---------------------------------------------------------------------- */
/* Connections */

static void
conn_readable(struct loop_src *s, uint32_t events)
{
	struct vmci_conn *c = (struct vmci_conn *)s;
	struct wire_msg m;
	ssize_t n;
	int r;

	for (int budget = 0; budget < 16; budget++) {
		n = wire_recv(c->src.fd, &m, MSG_DONTWAIT);
		if (n == -EAGAIN) {
			if (events & (EPOLLHUP | EPOLLERR))
				conn_close(c, "hung up");
			return;
		}
		if (n == 0) {
			conn_close(c, NULL);
			return;
		}
		if (n < 0) {
			log_rl(LOG_LVL_WARN, "conn %llu (pid %d): bad message: %s",
			       (unsigned long long)c->id, (int)c->pid, strerror((int)-n));
			conn_close(c, "protocol error");
			return;
		}
		if (m.hdr.flags & WIRE_F_REPLY) {
			wire_msg_close_fds(&m);
			conn_close(c, "protocol error: unexpected reply");
			return;
		}
		r = handlers[m.hdr.type](c, &m);
		wire_msg_close_fds(&m);
		if (r == WIRE_FATAL) {
			log_rl(LOG_LVL_WARN, "conn %llu (pid %d): %s not allowed now",
			       (unsigned long long)c->id, (int)c->pid, wire_name(m.hdr.type));
			conn_close(c, "protocol error");
			return;
		}
		if (r < 0 && reply(c, &m.hdr, r, &m.body, NULL, 0) < 0) {
			conn_close(c, "client not reading");
			return;
		}
	}
}

static struct vmci_conn *
conn_new(struct vmci_broker *b, int fd, pid_t pid, uid_t uid, gid_t gid)
{
	struct vmci_conn *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->src.fd = fd;
	c->src.fn = conn_readable;
	c->b = b;
	c->id = ++b->next_id;
	c->pid = pid;
	c->uid = uid;
	c->gid = gid;
	c->cid = VMCI_CID_ANY;
	if (loop_add(b->loop, &c->src, EPOLLIN | EPOLLRDHUP) < 0) {
		free(c);
		return NULL;
	}
	c->next = b->conns;
	if (b->conns)
		b->conns->prev = c;
	b->conns = c;
	b->nconns++;
	return c;
}

static void
conn_close(struct vmci_conn *c, const char *why)
{
	struct vmci_broker *b = c->b;
	struct vmci_ctx *x = conn_ctx(c);

	if (why)
		log_debug("conn %llu (pid %d): closed: %s", (unsigned long long)c->id, (int)c->pid,
			  why);
	if (c->bound)
		vmci_port_unbind(&b->ports, space_of(c->type), c->cid, c->port);
	for (size_t i = 0; i < c->nleased; i++)
		vmci_port_unbind(&b->ports, VMCI_SPACE_CONN, c->cid, c->leased[i]);
	free(c->leased);
	if (c->table)
		munmap((void *)(uintptr_t)c->table, WIRE_DIAL_SLOTS * sizeof(struct wire_dial_slot));
	if (c->bl) {
		munmap(c->bl, WIRE_BACKLOG_BYTES);
		close(c->bl_fd);
	}
	if (c->ep)
		dgram_remove(&b->router, c->ep);
	if (c->watching)
		qp_watch_close(&c->watch);
	if (c->pend)
		c->pend->c = NULL; /* the guest's answer finds nobody to tell */
	if (c->vnic)
		vsw_dp_remove_port(&b->dp, &c->vnic->dp);
	if (c->capture)
		vsw_dp_capture_stop(&b->dp, c->capture);
	broker__rdma_close(c);
	for (int l = 0; l < VMCI_LIM_N; l++)
		broker__uncharge(c, l, c->charged[l]);
	if (x && c->state != CONN_NEW && x->refs)
		x->refs--;
	if (c->src.fd >= 0) { /* -1: a guest's datagram relay */
		loop_del(b->loop, &c->src);
		close(c->src.fd);
	}
	if (c->prev)
		c->prev->next = c->next;
	else
		b->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	b->nconns--;
	free(c);
}

/*
 * A connection the broker cannot take (no memory for it): its HELLO is
 * answered with @err before it is closed, so that the client's call fails
 * with that (-ENOMEM) rather than as if the daemon had gone. The answer
 * needs no memory and waits for nothing.
 */
static void
refuse_conn(int fd, int err)
{
	struct wire_hdr h = { .type = WIRE_HELLO, .flags = WIRE_F_REPLY,
			      .len = sizeof(struct wire_hello), .status = -err };
	struct wire_hello hello = { .version = WIRE_VERSION };

	(void)wire_send(fd, &h, &hello, NULL, 0);
	close(fd);
}

static void
listen_readable(struct loop_src *s, uint32_t events)
{
	struct vmci_broker *b = (struct vmci_broker *)((char *)s - offsetof(struct vmci_broker, listen));
	struct ucred cr;
	socklen_t len = sizeof(cr);

	(void)events;
	for (int i = 0; i < 64; i++) {
		int fd = accept4(s->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

		if (fd < 0) {
			if (errno != EAGAIN && errno != EINTR)
				log_rl(LOG_LVL_WARN, "accept: %s", strerror(errno));
			return;
		}
		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0 ||
		    !conn_new(b, fd, cr.pid, cr.uid, cr.gid)) {
			int err = errno ? errno : ENOMEM;

			log_rl(LOG_LVL_WARN, "cannot take a connection: %s", strerror(err));
			refuse_conn(fd, err);
		}
	}
}

/* ---------------------------------------------------------------------- */

static int
make_dirs(const char *path)
{
	char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
	char *slash;

	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (!slash || slash == dir)
		return 0;
	*slash = 0;
	for (char *p = dir + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = 0;
		if (mkdir(dir, 0755) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(dir, 0755) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

static int
bind_socket(const char *path)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int probe, err;

	if (strlen(path) >= sizeof(a.sun_path))
		return -ENAMETOOLONG;
	strcpy(a.sun_path, path);
	if ((err = make_dirs(path)))
		return err;
	/* A socket file left behind by a daemon that died is reused; a live one is not. */
	probe = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (probe >= 0 && connect(probe, (struct sockaddr *)&a, sizeof(a)) == 0) {
		close(probe);
		return -EADDRINUSE;
	}
	if (probe >= 0)
		close(probe);
	return unix_listen(path, SOCK_SEQPACKET, 0666, 4096);
}

int
broker__init(struct vmci_broker *b, struct loop *loop)
{
	int err;

	b->loop = loop;
	b->started_ns = clock_ns();
	b->listen.fd = -1;
	b->fabric = (struct vsock_fabric){ .ctx = b, .route = vm_route };
	if ((err = vmci_ports_init(&b->ports)))
		return err;
	if ((err = dgram_start(&b->router))) {
		vmci_ports_free(&b->ports);
		return err;
	}
	if ((!b->dp_loaded && (err = vsw_dp_init(&b->dp))) || (err = vsw_dp_start(&b->dp))) {
		vsw_dp_stop(&b->dp);
		dgram_stop(&b->router);
		vmci_ports_free(&b->ports);
		return err;
	}
	vsw_dp_open_sockets(&b->dp, loop); /* a socket that cannot be made is logged */
	(void)cmnet_start(b);		   /* RDMA CM between hosts: logs what it cannot do */
	return 0;
}

void
broker__fini(struct vmci_broker *b)
{
	while (b->conns)
		conn_close(b->conns, NULL);
	cmnet_stop(b);
	broker__rdma_fini(b);
	vsw_dp_stop(&b->dp);
	dgram_stop(&b->router);
	vmci_ports_free(&b->ports);
}

struct vmci_conn *
broker__adopt(struct vmci_broker *b, int fd, pid_t pid, uid_t uid, gid_t gid)
{
	return conn_new(b, fd, pid, uid, gid);
}

int
broker_start_fd(struct vmci_broker *b, struct loop *loop, const char *path, int fd)
{
	int err;

	snprintf(b->path, sizeof(b->path), "%s", path);
	if ((err = broker__init(b, loop))) {
		close(fd);
		return err;
	}
	b->listen.fd = fd;
	b->listen.fn = listen_readable;
	if (fcntl(fd, F_SETFD, FD_CLOEXEC) < 0 || (err = loop_add(loop, &b->listen, EPOLLIN))) {
		err = err ? err : -errno;
		close(fd);
		broker__fini(b);
		return err;
	}
	return 0;
}

int
broker_start(struct vmci_broker *b, struct loop *loop, const char *path)
{
	int fd = bind_socket(path);

	if (fd < 0) {
		log_err("cannot listen on %s: %s%s", path, strerror(-fd),
			fd == -EADDRINUSE ? " (another vmfabricd is running there)" : "");
		return fd;
	}
	return broker_start_fd(b, loop, path, fd);
}

void
broker_stop(struct vmci_broker *b)
{
	loop_del(b->loop, &b->listen);
	close(b->listen.fd);
	unlink(b->path);
	broker__fini(b);
}
