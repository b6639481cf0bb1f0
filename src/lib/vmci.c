/* SPDX-License-Identifier: MIT */
/*
 * libvmfabric VMCI sockets (see include/vmfabric/vmci.h). A socket is an
 * epoll descriptor holding its control connection and, once it has one, its
 * queue pair's wake set; the application polls that descriptor. Streams and
 * seqpacket connections run over a queue pair the connector creates and
 * the daemon hands to the listener; datagrams over rings to the daemon.
 *
 * The daemon is soft state: established streams do not need it, and a
 * socket that finds its control connection gone (daemon restarted) opens a
 * new one when it next needs the daemon, re-registering its listener or its
 * datagram port.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/shm.h"
#include "lib.h"

#define CONNECT_TIMEOUT_NS (2 * 1000000000LL)

/* ---------------------------------------------------------------------- */
/* Descriptor table: two levels, allocated on demand, never shrunk, so that a
 * lookup is two loads without a lock. */

#define TBL_CHUNK 1024
#define TBL_CHUNKS 1024

static _Atomic(struct vsk *) *tbl[TBL_CHUNKS];
static pthread_mutex_t tbl_lock = PTHREAD_MUTEX_INITIALIZER;

int
lib_table_put(struct vsk *v)
{
	unsigned c = (unsigned)v->fd / TBL_CHUNK;

	if (v->fd < 0 || c >= TBL_CHUNKS)
		return -EMFILE;
	pthread_mutex_lock(&tbl_lock);
	if (!tbl[c])
		tbl[c] = calloc(TBL_CHUNK, sizeof(*tbl[c]));
	pthread_mutex_unlock(&tbl_lock);
	if (!tbl[c])
		return -ENOMEM;
	atomic_store(&tbl[c][v->fd % TBL_CHUNK], v);
	return 0;
}

struct vsk *
lib_table_get(int fd)
{
	unsigned c = (unsigned)fd / TBL_CHUNK;

	if (fd < 0 || c >= TBL_CHUNKS || !tbl[c])
		return NULL;
	return atomic_load(&tbl[c][fd % TBL_CHUNK]);
}

void
lib_table_del(int fd)
{
	unsigned c = (unsigned)fd / TBL_CHUNK;

	if (fd >= 0 && c < TBL_CHUNKS && tbl[c])
		atomic_store(&tbl[c][fd % TBL_CHUNK], NULL);
}

/* ---------------------------------------------------------------------- */

/*
 * The socket's own members of its epoll set; the queue pair's are QP_EPOLL_*.
 * A listener's channels are VSK_EPOLL_CHAN + their descriptor.
 */
#define VSK_EPOLL_CTRL 2u
#define VSK_EPOLL_CHAN 16u

static int
ep_add_as(struct vsk *v, int fd, uint64_t tag)
{
	struct epoll_event e = { .events = EPOLLIN, .data.u64 = tag };

	return epoll_ctl(v->fd, EPOLL_CTL_ADD, fd, &e) < 0 ? -errno : 0;
}

static int
ep_add(struct vsk *v, int fd)
{
	return ep_add_as(v, fd, VSK_EPOLL_CTRL);
}

/* A listener lets go of its channels (closing, or the daemon went away). */
static void
chans_close(struct vsk *v)
{
	for (size_t i = 0; i < v->nchans; i++) {
		pool_purge(v->chans[i].serial);
		close(v->chans[i].fd); /* also leaves the epoll set */
	}
	v->nchans = 0;
}

static void
backlog_unmap(struct vsk *v)
{
	if (v->bl)
		munmap(v->bl, WIRE_BACKLOG_BYTES);
	v->bl = NULL;
}

static struct vsk *
vsk_new(int type, bool nonblock)
{
	struct vsk *v = calloc(1, sizeof(*v));

	if (!v)
		return NULL;
	v->fd = epoll_create1(EPOLL_CLOEXEC);
	if (v->fd < 0) {
		free(v);
		return NULL;
	}
	v->type = type;
	v->nonblock = nonblock;
	v->ctrl = -1;
	lib_identity(&v->want_cid, v->want_name);
	v->port = VMADDR_PORT_ANY;
	v->buf_size = VMCI_BUFFER_DEFAULT;
	v->buf_min = VMCI_BUFFER_MIN_DEFAULT;
	v->buf_max = VMCI_BUFFER_MAX_DEFAULT;
	v->connect_timeout_ns = CONNECT_TIMEOUT_NS;
	v->rcvtimeo_ns = v->sndtimeo_ns = -1;
	v->busy_poll_us = -1;
	pthread_mutex_init(&v->lock, NULL);
	if (lib_table_put(v) < 0) {
		close(v->fd);
		free(v);
		return NULL;
	}
	return v;
}

static void
vsk_free(struct vsk *v)
{
	lib_table_del(v->fd);
	if (v->park_serial && v->qp && v->state == VSK_CONNECTED) {
		pool_park(v->park_serial, v->park_id, v->qp); /* for the next connection */
		v->qp = NULL;
	}
	dial_release(v);
	chans_close(v);
	free(v->chans);
	backlog_unmap(v);
	qp_close(v->qp);
	qp_close(v->pending_qp);
	ctl_drop(v);
	close(v->fd);
	pthread_mutex_destroy(&v->lock);
	free(v);
}

int
vmci_socket(int type)
{
	bool nb = type & SOCK_NONBLOCK;
	struct vsk *v;

	type &= ~(SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (type != SOCK_STREAM && type != SOCK_DGRAM && type != SOCK_SEQPACKET)
		return -ESOCKTNOSUPPORT;
	v = vsk_new(type, nb);
	return v ? v->fd : -ENOMEM;
}

static struct vsk *
get(int s)
{
	return lib_table_get(s);
}

/* Queue-pair flags for one call: the socket's mode, or MSG_DONTWAIT. */
static int
qflags(const struct vsk *v, int flags)
{
	return (v->nonblock || (flags & MSG_DONTWAIT)) ? QP_DONTWAIT : 0;
}

static int
attach_qp(struct vsk *v, struct qp *q)
{
	/* The queue pair sleeps on the socket's own set: one set, no nesting. */
	int err = qp_share_epoll(q, v->fd);

	if (err)
		return err;
	v->qp = q;
	qp_set_timeout(q, v->rcvtimeo_ns);
	if (v->busy_poll_us >= 0)
		qp_set_spin(q, (uint32_t)v->busy_poll_us * 1000);
	return 0;
}

/* ---------------------------------------------------------------------- */
/* bind, listen, accept */

static int
open_dgram(struct vsk *v, uint32_t port)
{
	struct wire_bind b = { .port = port, .ring = 0 };
	struct wire_msg rep;
	struct qp_fds f;
	struct qp *q;
	int err;

	err = ctl_rpc(v, WIRE_DGRAM_OPEN, &b, NULL, 0, &rep, -1);
	if (err)
		return err;
	f = (struct qp_fds){ rep.fds[0], rep.fds[1], rep.fds[2], rep.fds[3] };
	err = qp_attach(&f, &q);
	if (err) {
		wire_msg_close_fds(&rep);
		ctl_drop(v);
		return err;
	}
	err = attach_qp(v, q);
	if (err) {
		qp_close(q);
		return err;
	}
	v->port = b.out_port;
	v->state = VSK_DGRAM;
	return 0;
}

static int
do_bind(struct vsk *v, uint32_t port)
{
	struct wire_bind b = { .port = port };
	int err;

	if (v->type == SOCK_DGRAM)
		return open_dgram(v, port);
	err = ctl_rpc(v, WIRE_BIND, &b, NULL, 0, NULL, -1);
	if (err)
		return err;
	v->port = b.out_port;
	v->state = VSK_BOUND;
	return 0;
}

int
vmci_bind(int s, const struct sockaddr_vm *addr)
{
	struct vsk *v = get(s);
	int err;

	if (!v)
		return -EBADF;
	if (!addr || addr->svm_family != AF_VSOCK)
		return -EAFNOSUPPORT;
	pthread_mutex_lock(&v->lock);
	if (v->state != VSK_NEW)
		err = -EINVAL;
	else
		err = do_bind(v, addr->svm_port);
	/* svm_cid is this process's own context or ANY: nothing else to claim. */
	if (!err && addr->svm_cid != VMADDR_CID_ANY && addr->svm_cid != v->cid &&
	    addr->svm_cid != VMADDR_CID_LOCAL)
		err = -EADDRNOTAVAIL;
	pthread_mutex_unlock(&v->lock);
	return err;
}

static int
send_listen(struct vsk *v)
{
	struct wire_listen l = { .backlog = (uint32_t)v->backlog, .buf_size = v->buf_size,
				 .buf_min = v->buf_min, .buf_max = v->buf_max };
	struct wire_msg rep;
	int err;

	err = ctl_rpc(v, WIRE_LISTEN, &l, NULL, 0, &rep, -1);
	if (err)
		return err;
	backlog_unmap(v);
	err = shm_map(rep.fds[0], WIRE_BACKLOG_BYTES, 1, (void **)&v->bl);
	close(rep.fds[0]);
	if (err)
		ctl_drop(v);
	return err;
}

int
vmci_listen(int s, int backlog)
{
	struct vsk *v = get(s);
	int err;

	if (!v)
		return -EBADF;
	if (v->type == SOCK_DGRAM)
		return -EOPNOTSUPP;
	pthread_mutex_lock(&v->lock);
	v->backlog = backlog < 0 ? 0 : backlog;
	if (v->state == VSK_LISTEN)
		err = 0;
	else if (v->state != VSK_NEW && v->state != VSK_BOUND)
		err = -EINVAL;
	else if (v->state == VSK_NEW && (err = do_bind(v, VMADDR_PORT_ANY)))
		;
	else if (!(err = send_listen(v))) {
		v->state = VSK_LISTEN;
		err = ep_add(v, v->ctrl);
	}
	pthread_mutex_unlock(&v->lock);
	return err;
}

/* The daemon restarted: register the listener again under the same port. */
static int
relisten(struct vsk *v)
{
	struct wire_bind b = { .port = v->port };
	int err;

	ctl_drop(v);
	chans_close(v); /* dialers ask the daemon again: its policy may have changed */
	err = ctl_rpc(v, WIRE_BIND, &b, NULL, 0, NULL, -1);
	if (!err)
		err = send_listen(v);
	if (!err)
		err = ep_add(v, v->ctrl);
	if (err)
		ctl_drop(v);
	return err;
}

/* accept() took a connection: its place in the backlog is free again. */
static void
backlog_give(struct vsk *l)
{
	if (l->bl)
		wire_backlog_give(l->bl);
}

/* A new socket for connection @q the listener @l was handed (the queue pair is taken). */
static int
adopt_qp(struct vsk *l, struct qp *q, uint32_t src_cid, uint32_t src_port,
	 struct sockaddr_vm *peer, int flags, uint64_t serial, uint32_t id)
{
	struct vsk *n;
	int err;

	n = vsk_new(l->type, flags & SOCK_NONBLOCK);
	if (!n) {
		qp_close(q);
		return -ENOMEM;
	}
	/* An accepted socket needs no control connection: it acts as the listener's context. */
	n->want_cid = l->want_cid;
	memcpy(n->want_name, l->want_name, sizeof(n->want_name));
	n->cid = l->cid;
	n->port = l->port;
	n->peer_cid = src_cid;
	n->peer_port = src_port;
	n->has_peer = true;
	n->state = VSK_CONNECTED;
	n->park_serial = serial;
	n->park_id = id;
	n->rcvtimeo_ns = l->rcvtimeo_ns;
	n->busy_poll_us = l->busy_poll_us;
	if ((err = attach_qp(n, q))) {
		qp_close(q);
		vsk_free(n);
		return err;
	}
	if (peer)
		*peer = (struct sockaddr_vm){ .svm_family = AF_VSOCK, .svm_cid = n->peer_cid,
					      .svm_port = n->peer_port };
	return n->fd;
}

/* The same for a queue pair's side-1 descriptors (closed on failure). */
static int
adopt(struct vsk *l, int *fds, uint32_t src_cid, uint32_t src_port, struct sockaddr_vm *peer,
      int flags, uint64_t serial, uint32_t id)
{
	struct qp_fds f = { fds[0], fds[1], fds[2], fds[3] };
	struct qp *q;

	backlog_give(l);
	if (qp_attach(&f, &q)) {
		for (int i = 0; i < 4; i++)
			close(fds[i]);
		return -ECONNABORTED; /* the connector's queue pair was not valid */
	}
	return adopt_qp(l, q, src_cid, src_port, peer, flags, serial, id);
}

static void
chan_remove(struct vsk *l, struct lchan *c)
{
	pool_purge(c->serial);
	close(c->fd);
	*c = l->chans[--l->nchans];
}

/* The daemon gave the listener a channel to a dialer. */
static void
chan_add(struct vsk *l, struct wire_msg *m)
{
	struct lchan *more;

	if (m->nfds != 1)
		return;
	more = realloc(l->chans, (l->nchans + 1) * sizeof(*more));
	if (!more || ep_add_as(l, m->fds[0], VSK_EPOLL_CHAN + (uint64_t)m->fds[0])) {
		if (more)
			l->chans = more;
		close(m->fds[0]);
		return;
	}
	l->chans = more;
	l->chans[l->nchans++] = (struct lchan){ .fd = m->fds[0], .serial = lib_serial(),
						.src_cid = m->body.channel_new.src_cid,
						.privileged = m->body.channel_new.flags &
							      WIRE_CTX_PRIVILEGED };
}

/*
 * One message from the daemon: a brokered connection (a socket, returned)
 * or a channel (0: look again). -ENETDOWN when the daemon went away.
 */
static int
take_ctrl(struct vsk *l, struct sockaddr_vm *peer, int flags)
{
	struct wire_msg m;
	ssize_t n = wire_recv(l->ctrl, &m, MSG_DONTWAIT);

	if (n == -EAGAIN)
		return 0;
	if (n == 0 || n == -ECONNRESET || n == -ENETDOWN) {
		ctl_drop(l);
		chans_close(l);
		return -ENETDOWN;
	}
	if (n < 0 || (m.hdr.flags & WIRE_F_REPLY))
		goto ignore;
	if (m.hdr.type == WIRE_INCOMING)
		return adopt(l, m.fds, m.body.incoming.src_cid, m.body.incoming.src_port, peer, flags,
			     0, 0);
	if (m.hdr.type == WIRE_CHANNEL_NEW) {
		chan_add(l, &m);
		return 0;
	}
ignore:
	if (n > 0)
		wire_msg_close_fds(&m);
	return 0;
}

/*
 * One DIAL or REDIAL from a channel: a socket, or 0 to look again. The
 * source context is the channel's (the daemon said whose it is), never the
 * message's; a port below 1024 only from a privileged one. A channel that
 * closes or breaks the protocol is dropped; a connection that does not fit
 * (its size, its port, a renewal of a queue pair we do not hold) is
 * refused: the connector sees its peer gone.
 */
static int
take_dial(struct vsk *l, struct lchan *c, struct sockaddr_vm *peer, int flags)
{
	struct wire_msg m;
	ssize_t n = wire_recv(c->fd, &m, MSG_DONTWAIT);
	struct wire_redial *rw = &m.body.redial;
	struct wire_dial *w = &m.body.dial;
	uint32_t port;
	struct qp *q;

	if (n == -EAGAIN)
		return 0;
	if (n <= 0 || (m.hdr.type != WIRE_DIAL && m.hdr.type != WIRE_REDIAL) ||
	    (m.hdr.flags & WIRE_F_REPLY)) {
		if (n > 0)
			wire_msg_close_fds(&m);
		chan_remove(l, c);
		return 0;
	}
	port = m.hdr.type == WIRE_DIAL ? w->src_port : rw->src_port;
	if ((port < 1024 && !c->privileged) || port == VMADDR_PORT_ANY)
		goto refuse;
	if (m.hdr.type == WIRE_DIAL) {
		if (w->size != qp_size_round(l->buf_size) &&
		    (w->size < l->buf_min || w->size > l->buf_max))
			goto refuse;
		return adopt(l, m.fds, c->src_cid, port, peer, flags, c->serial, w->id);
	}
	q = pool_take(c->serial, rw->id);
	if (!q)
		goto refuse;
	if (qp_follow(q, &(struct qp_renewal){ .gen = rw->gen,
					       .start = { rw->start[0], rw->start[1] } })) {
		qp_close(q);
		goto refuse;
	}
	backlog_give(l);
	return adopt_qp(l, q, c->src_cid, port, peer, flags, c->serial, rw->id);
refuse:
	wire_msg_close_fds(&m);
	backlog_give(l);
	return 0;
}

/*
 * What is ready on the listener's set, taken in turn: 0 when nothing is.
 * The daemon first: if it went away, its channels go before anything is
 * taken from them; a channel it announces is looked at in the next round.
 */
static int
take_one(struct vsk *l, struct sockaddr_vm *peer, int flags)
{
	struct epoll_event ev[8];
	int r;

	for (int round = 0; round < 4; round++) {
		int n = epoll_wait(l->fd, ev, 8, 0);
		bool again = false;

		for (int i = 0; i < n; i++)
			if (ev[i].data.u64 == VSK_EPOLL_CTRL && l->ctrl >= 0) {
				if ((r = take_ctrl(l, peer, flags)) != 0)
					return r;
				again = true;
			}
		for (int i = 0; i < n; i++)
			for (size_t k = 0; k < l->nchans; k++)
				if (VSK_EPOLL_CHAN + (uint64_t)l->chans[k].fd == ev[i].data.u64) {
					if ((r = take_dial(l, &l->chans[k], peer, flags)) != 0)
						return r;
					break;
				}
		if (!again)
			break;
	}
	return 0;
}

int
vmci_accept(int s, struct sockaddr_vm *peer, int flags)
{
	struct vsk *v = get(s);
	int64_t deadline;
	int r = 0;

	if (!v)
		return -EBADF;
	if (v->state != VSK_LISTEN)
		return -EINVAL;
	deadline = v->rcvtimeo_ns < 0 ? INT64_MAX : clock_ns() + v->rcvtimeo_ns;
	pthread_mutex_lock(&v->lock);
	for (;;) {
		if (v->ctrl < 0 && (r = relisten(v)) && r != -ENETDOWN)
			break;
		r = take_one(v, peer, flags);
		if (r != 0 && r != -ENETDOWN)
			break;
		if (v->nonblock || clock_ns() >= deadline) {
			r = -EAGAIN;
			break;
		}
		if (v->ctrl >= 0) {
			struct pollfd p = { .fd = v->fd, .events = POLLIN };
			int64_t left = deadline - clock_ns();
			poll(&p, 1, deadline == INT64_MAX ? -1 : (int)(left / 1000000 + 1));
		} else {
			usleep(100000); /* daemon away: try again shortly */
		}
	}
	pthread_mutex_unlock(&v->lock);
	return r;
}

/* ---------------------------------------------------------------------- */
/* connect */

static int
connect_finish(struct vsk *v, int status, const struct wire_connect *w)
{
	struct qp *q = v->pending_qp;

	/* Only listeners and connects in flight need to hear from the daemon. */
	if (v->ctrl >= 0)
		epoll_ctl(v->fd, EPOLL_CTL_DEL, v->ctrl, NULL);
	v->pending_qp = NULL;
	if (status) {
		qp_close(q);
		v->state = v->port == VMADDR_PORT_ANY ? VSK_NEW : VSK_BOUND;
		return status;
	}
	v->cid = w->out_cid;
	v->port = w->out_port;
	v->has_peer = true;
	v->state = VSK_CONNECTED;
	if (attach_qp(v, q) < 0) {
		qp_close(q);
		return -ENOMEM;
	}
	return 0;
}

/* Make the queue pair and send CONNECT with its side-1 descriptors. */
static int
connect_send(struct vsk *v, struct wire_connect *w)
{
	struct qp_fds peer;
	int fds[4], err;

	err = qp_create_lent(w->size, w->size, &v->pending_qp, &peer);
	if (err)
		return err;
	fds[0] = peer.mem, fds[1] = peer.wake, fds[2] = peer.peer_wake, fds[3] = peer.alive;
	err = ctl_send(v, WIRE_CONNECT, w, fds, 4);
	close(peer.mem), close(peer.alive); /* in flight now; the eventfds are lent */
	if (err) {
		qp_close(v->pending_qp);
		v->pending_qp = NULL;
	}
	return err;
}

/*
 * The daemon answered CONNECT. A listener that wants another queue size
 * (VMCI's negotiation: the connector's size outside the listener's range)
 * gets one more CONNECT with its size. Returns -EINPROGRESS while waiting.
 */
static int
connect_answered(struct vsk *v, int err, struct wire_connect *w)
{
	if (err == -EMSGSIZE && w->out_size && !v->connect_retried) {
		v->connect_retried = true;
		qp_close(v->pending_qp);
		v->pending_qp = NULL;
		w->size = w->out_size;
		err = connect_send(v, w);
		if (err)
			return connect_finish(v, err, w);
		return -EINPROGRESS;
	}
	return connect_finish(v, err, w);
}

/* Blocking: wait for the answer until the connect timeout. */
static int
connect_wait(struct vsk *v, struct wire_connect *w)
{
	int64_t deadline = clock_ns() + v->connect_timeout_ns;
	struct pollfd p = { .fd = v->ctrl, .events = POLLIN };
	int err;

	for (;;) {
		err = ctl_poll_reply(v, w, NULL);
		if (err != -EAGAIN) {
			err = connect_answered(v, err, w);
			if (err != -EINPROGRESS)
				return err;
			p.fd = v->ctrl;
			continue;
		}
		int64_t left = deadline - clock_ns();
		if (left <= 0)
			break;
		poll(&p, 1, (int)(left / 1000000 + 1));
	}
	ctl_drop(v); /* a late answer must not be taken for the next request's */
	return connect_finish(v, -ETIMEDOUT, w);
}

static int
stream_connect(struct vsk *v, const struct sockaddr_vm *a)
{
	struct qp *q;
	int err;

	if (v->state == VSK_NEW) {
		err = dial_connect(v, a, &q);
		if (!err) {
			v->peer_cid = a->svm_cid;
			v->peer_port = a->svm_port;
			v->has_peer = true;
			v->state = VSK_CONNECTED;
			if ((err = attach_qp(v, q))) {
				qp_close(q);
				dial_release(v);
				v->state = VSK_NEW;
			}
			return err;
		}
		if (err != -EREMOTE)
			return err;
	}
	v->connect = (struct wire_connect){ .dst_cid = a->svm_cid, .dst_port = a->svm_port,
					    .size = qp_size_round(v->buf_size) };
	v->connect_retried = false;
	v->peer_cid = a->svm_cid;
	v->peer_port = a->svm_port;
	if ((err = connect_send(v, &v->connect)))
		return err;
	v->state = VSK_CONNECTING;
	if (v->nonblock)
		return ep_add(v, v->ctrl) ?: -EINPROGRESS;
	return connect_wait(v, &v->connect);
}

int
vmci_connect(int s, const struct sockaddr_vm *a)
{
	struct vsk *v = get(s);
	int err;

	if (!v)
		return -EBADF;
	if (!a || a->svm_family != AF_VSOCK)
		return -EAFNOSUPPORT;
	pthread_mutex_lock(&v->lock);
	if (v->type == SOCK_DGRAM) {
		/* A default destination, as for UDP; and only it is received from. */
		v->peer_cid = a->svm_cid;
		v->peer_port = a->svm_port;
		v->has_peer = true;
		err = 0;
	} else if (v->state == VSK_CONNECTED) {
		err = -EISCONN;
	} else if (v->state == VSK_CONNECTING) {
		err = -EALREADY;
	} else if (v->state == VSK_LISTEN) {
		err = -EINVAL;
	} else {
		err = stream_connect(v, a);
	}
	pthread_mutex_unlock(&v->lock);
	return err;
}

/* A non-blocking connect: has the reply come? */
static void
progress(struct vsk *v)
{
	int err;

	if (v->state != VSK_CONNECTING)
		return;
	pthread_mutex_lock(&v->lock);
	if (v->state == VSK_CONNECTING) {
		err = ctl_poll_reply(v, &v->connect, NULL);
		if (err != -EAGAIN) {
			err = connect_answered(v, err, &v->connect);
			if (err != -EINPROGRESS)
				v->so_error = err;
		}
	}
	pthread_mutex_unlock(&v->lock);
}

/* ---------------------------------------------------------------------- */
/* Data */

static ssize_t
stream_err(const struct vsk *v, ssize_t r)
{
	if (r == -EPIPE && qp_peer_reset(v->qp))
		return -ECONNRESET;
	if (r == -ETIMEDOUT)
		return -EAGAIN; /* SO_RCVTIMEO / SO_SNDTIMEO expired, as for sockets */
	return r;
}

/* A direct connection's byte counter in its dialer's table (only this socket writes it). */
static void
count(_Atomic uint64_t *c, size_t n)
{
	if (c)
		atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
				      memory_order_relaxed);
}

static ssize_t
conn_send(struct vsk *v, const void *buf, size_t len, int flags)
{
	const char *p = buf;
	size_t done = 0;
	ssize_t r = 0;
	int qf = qflags(v, flags);

	if (v->type == SOCK_SEQPACKET) {
		r = qp_msg_send(v->qp, buf, len, qf);
		if (r > 0)
			count(v->slot ? &v->slot->tx_bytes : NULL, (size_t)r);
		return r == -EMSGSIZE ? -EMSGSIZE : stream_err(v, r);
	}
	while (done < len) {
		r = qp_write(v->qp, p + done, len - done, qf);
		if (r < 0)
			break;
		done += (size_t)r;
		if (qf)
			break; /* non-blocking: what fitted */
	}
	count(v->slot ? &v->slot->tx_bytes : NULL, done);
	return done ? (ssize_t)done : stream_err(v, r);
}

static ssize_t
conn_recv(struct vsk *v, void *buf, size_t len, int flags)
{
	size_t ml;
	ssize_t r;

	if (v->type == SOCK_SEQPACKET) {
		r = qp_msg_recv(v->qp, buf, len, &ml, qflags(v, flags));
		if (r > 0)
			count(v->slot ? &v->slot->rx_bytes : NULL, (size_t)r);
		if (r == -ESHUTDOWN)
			return qp_peer_reset(v->qp) ? -ECONNRESET : 0;
		if (r >= 0 && (flags & MSG_TRUNC))
			return (ssize_t)ml;
		return stream_err(v, r);
	}
	r = qp_read(v->qp, buf, len, qflags(v, flags));
	if (r > 0 && (size_t)r < len && (flags & MSG_WAITALL) && !qflags(v, flags)) {
		/* As for TCP: wait for all of it, unless the stream ends or fails first. */
		size_t done = (size_t)r;

		while (done < len && (r = qp_read(v->qp, (char *)buf + done, len - done, 0)) > 0)
			done += (size_t)r;
		r = (ssize_t)done;
	}
	if (r > 0)
		count(v->slot ? &v->slot->rx_bytes : NULL, (size_t)r);
	if (r == 0 && len && qp_peer_reset(v->qp))
		return -ECONNRESET;
	return stream_err(v, r);
}

/* Datagrams: may this context send to @cid? Asked once, then cached. */
static int
dgram_allowed(struct vsk *v, uint32_t cid)
{
	struct wire_check c = { .cid = cid };
	int err;

	for (unsigned i = 0; i < v->nallowed; i++)
		if (v->allowed[i] == cid)
			return 0;
	err = ctl_rpc(v, WIRE_CHECK, &c, NULL, 0, NULL, -1);
	if (err)
		return err;
	v->allowed[v->nallowed++ % 8] = cid;
	if (v->nallowed > 8)
		v->nallowed = 8;
	return 0;
}

static int
dgram_ready(struct vsk *v)
{
	int err = 0;

	if (v->state == VSK_DGRAM && v->ctrl >= 0)
		return 0;
	pthread_mutex_lock(&v->lock);
	if (v->state != VSK_DGRAM || v->ctrl < 0) {
		/* First use, or the daemon restarted: open (again) on the same port. */
		if (v->qp) {
			qp_close(v->qp);
			v->qp = NULL;
		}
		ctl_drop(v);
		v->nallowed = 0;
		err = open_dgram(v, v->port);
	}
	pthread_mutex_unlock(&v->lock);
	return err;
}

bool
lib_daemon_gone(struct qp *qp, int64_t *alive_ns)
{
	int64_t now = clock_ns();

	if (now - __atomic_load_n(alive_ns, __ATOMIC_RELAXED) < LIB_ALIVE_NS)
		return false;
	__atomic_store_n(alive_ns, now, __ATOMIC_RELAXED);
	return !qp_peer_alive(qp);
}

static ssize_t
dgram_send(struct vsk *v, const void *buf, size_t len, int flags, const struct sockaddr_vm *to)
{
	struct wire_dgram h;
	struct iovec iov[2] = { { &h, sizeof(h) }, { (void *)(uintptr_t)buf, len } };
	ssize_t r;
	int err;

	if (len > VMCI_DGRAM_MAX)
		return -EMSGSIZE;
	if (!to && !v->has_peer)
		return -EDESTADDRREQ;
	h.cid = to ? to->svm_cid : v->peer_cid;
	h.port = to ? to->svm_port : v->peer_port;
	for (int attempt = 0; attempt < 2; attempt++) {
		if ((err = dgram_ready(v)) || (err = dgram_allowed(v, h.cid)))
			return err;
		r = lib_daemon_gone(v->qp, &v->alive_ns) ? -EPIPE
							  : qp_msg_sendv(v->qp, iov, 2, qflags(v, flags));
		if (r != -EPIPE)
			return r < 0 ? stream_err(v, r) : (ssize_t)len;
		ctl_drop(v); /* the daemon's end is gone: reopen once */
	}
	return -ENETDOWN;
}

static ssize_t
dgram_recv(struct vsk *v, void *buf, size_t len, int flags, struct sockaddr_vm *from)
{
	struct wire_dgram h;
	struct iovec iov[2] = { { &h, sizeof(h) }, { buf, len } };
	size_t ml;
	ssize_t r;
	int err;

	if ((err = dgram_ready(v)))
		return err;
	for (;;) {
		r = qp_msg_recvv(v->qp, iov, 2, &ml, qflags(v, flags));
		if (r == -ESHUTDOWN || r == -EPIPE) {
			/* The daemon went away: reopen on the same port and go on waiting. */
			ctl_drop(v);
			if ((err = dgram_ready(v)))
				return err;
			continue;
		}
		if (r < 0)
			return stream_err(v, r);
		if (ml < sizeof(h))
			continue;
		if (v->has_peer && (h.cid != v->peer_cid || h.port != v->peer_port))
			continue; /* connected: only from the peer, as UDP */
		break;
	}
	if (from)
		*from = (struct sockaddr_vm){ .svm_family = AF_VSOCK, .svm_cid = h.cid,
					      .svm_port = h.port };
	ml -= sizeof(h);
	if (flags & MSG_TRUNC)
		return (ssize_t)ml;
	return (ssize_t)(ml < len ? ml : len);
}

ssize_t
vmci_sendto(int s, const void *buf, size_t len, int flags, const struct sockaddr_vm *to)
{
	struct vsk *v = get(s);

	if (!v)
		return -EBADF;
	if (v->type == SOCK_DGRAM)
		return dgram_send(v, buf, len, flags, to);
	progress(v);
	if (v->state != VSK_CONNECTED)
		return v->state == VSK_CONNECTING ? -EAGAIN : -ENOTCONN;
	return conn_send(v, buf, len, flags);
}

ssize_t
vmci_send(int s, const void *buf, size_t len, int flags)
{
	return vmci_sendto(s, buf, len, flags, NULL);
}

ssize_t
vmci_recvfrom(int s, void *buf, size_t len, int flags, struct sockaddr_vm *from)
{
	struct vsk *v = get(s);

	if (!v)
		return -EBADF;
	if (v->type == SOCK_DGRAM)
		return dgram_recv(v, buf, len, flags, from);
	progress(v);
	if (v->state != VSK_CONNECTED)
		return v->state == VSK_CONNECTING ? -EAGAIN : -ENOTCONN;
	if (from)
		*from = (struct sockaddr_vm){ .svm_family = AF_VSOCK, .svm_cid = v->peer_cid,
					      .svm_port = v->peer_port };
	return conn_recv(v, buf, len, flags);
}

ssize_t
vmci_recv(int s, void *buf, size_t len, int flags)
{
	return vmci_recvfrom(s, buf, len, flags, NULL);
}

int
vmci_shutdown(int s, int how)
{
	struct vsk *v = get(s);

	if (!v)
		return -EBADF;
	if (v->type == SOCK_DGRAM || v->state != VSK_CONNECTED)
		return -ENOTCONN;
	return qp_shutdown(v->qp, how);
}

int
vmci_close(int s)
{
	struct vsk *v = get(s);

	if (!v)
		return -EBADF;
	vsk_free(v);
	return 0;
}

/* ---------------------------------------------------------------------- */
/* Options and names */

static int64_t
tv_ns(const void *val, socklen_t len)
{
	struct timeval tv;

	if (len < sizeof(tv))
		return -1;
	memcpy(&tv, val, sizeof(tv));
	if (tv.tv_sec < 0 || tv.tv_usec < 0 || tv.tv_usec >= 1000000)
		return -1;
	return (int64_t)tv.tv_sec * 1000000000 + tv.tv_usec * 1000;
}

static int
put_tv(int64_t ns, void *val, socklen_t *len)
{
	struct timeval tv = { 0 };

	if (*len < sizeof(tv))
		return -EINVAL;
	if (ns > 0) {
		tv.tv_sec = ns / 1000000000;
		tv.tv_usec = ns % 1000000000 / 1000;
	}
	memcpy(val, &tv, sizeof(tv));
	*len = sizeof(tv);
	return 0;
}

static int
put_u64(uint64_t x, void *val, socklen_t *len)
{
	if (*len < sizeof(x))
		return -EINVAL;
	memcpy(val, &x, sizeof(x));
	*len = sizeof(x);
	return 0;
}

static int
put_int(int x, void *val, socklen_t *len)
{
	if (*len < sizeof(x))
		return -EINVAL;
	memcpy(val, &x, sizeof(x));
	*len = sizeof(x);
	return 0;
}

int
vmci_getsockopt(int s, int level, int name, void *val, socklen_t *len)
{
	struct vsk *v = get(s);
	int e;

	if (!v)
		return -EBADF;
	if (!val || !len)
		return -EFAULT;
	if (level == SOL_SOCKET) {
		switch (name) {
		case SO_TYPE:
			return put_int(v->type, val, len);
		case SO_ERROR:
			progress(v);
			e = v->so_error;
			v->so_error = 0;
			return put_int(-e, val, len);
		case SO_RCVTIMEO:
			return put_tv(v->rcvtimeo_ns, val, len);
		case SO_SNDTIMEO:
			return put_tv(v->sndtimeo_ns, val, len);
		case SO_BUSY_POLL:
			return put_int(v->busy_poll_us < 0 ? (int)(QP_SPIN_DEFAULT_NS / 1000)
							   : v->busy_poll_us,
				       val, len);
		}
		return -ENOPROTOOPT;
	}
	if (level != AF_VSOCK)
		return -ENOPROTOOPT;
	switch (name) {
	case SO_VM_SOCKETS_BUFFER_SIZE:
		return put_u64(v->buf_size, val, len);
	case SO_VM_SOCKETS_BUFFER_MIN_SIZE:
		return put_u64(v->buf_min, val, len);
	case SO_VM_SOCKETS_BUFFER_MAX_SIZE:
		return put_u64(v->buf_max, val, len);
	case SO_VM_SOCKETS_CONNECT_TIMEOUT_OLD:
	case SO_VM_SOCKETS_CONNECT_TIMEOUT_NEW:
		return put_tv(v->connect_timeout_ns, val, len);
	case SO_VM_SOCKETS_PEER_HOST_VM_ID:
		if (!v->has_peer)
			return -ENOTCONN;
		return put_int((int)v->peer_cid, val, len);
	}
	return -ENOPROTOOPT;
}

/* As AF_VSOCK: the size is kept within [min, max]; moving a bound moves it. */
static void
clamp_buffer(struct vsk *v)
{
	if (v->buf_size < v->buf_min)
		v->buf_size = v->buf_min;
	if (v->buf_size > v->buf_max)
		v->buf_size = v->buf_max;
}

int
vmci_setsockopt(int s, int level, int name, const void *val, socklen_t len)
{
	struct vsk *v = get(s);
	uint64_t u;
	int64_t ns;

	if (!v)
		return -EBADF;
	if (!val)
		return -EFAULT;
	if (level == SOL_SOCKET && (name == SO_RCVTIMEO || name == SO_SNDTIMEO)) {
		if ((ns = tv_ns(val, len)) < 0)
			return -EINVAL;
		ns = ns ? ns : -1; /* zero: wait forever, as for sockets */
		if (name == SO_RCVTIMEO)
			v->rcvtimeo_ns = ns;
		else
			v->sndtimeo_ns = ns;
		/* One queue pair has one deadline: the later option sets it. */
		if (v->qp)
			qp_set_timeout(v->qp, ns);
		return 0;
	}
	if (level == SOL_SOCKET && name == SO_BUSY_POLL) {
		int us;

		if (len < sizeof(us))
			return -EINVAL;
		memcpy(&us, val, sizeof(us));
		if (us < 0 || us > 4000000)
			return -EINVAL;
		v->busy_poll_us = us;
		if (v->qp)
			qp_set_spin(v->qp, (uint32_t)us * 1000);
		return 0;
	}
	if (level != AF_VSOCK)
		return -ENOPROTOOPT;
	switch (name) {
	case SO_VM_SOCKETS_BUFFER_SIZE:
	case SO_VM_SOCKETS_BUFFER_MIN_SIZE:
	case SO_VM_SOCKETS_BUFFER_MAX_SIZE:
		if (len < sizeof(u))
			return -EINVAL;
		memcpy(&u, val, sizeof(u));
		if (name == SO_VM_SOCKETS_BUFFER_SIZE)
			v->buf_size = u;
		else if (name == SO_VM_SOCKETS_BUFFER_MIN_SIZE)
			v->buf_min = u, v->buf_max = u > v->buf_max ? u : v->buf_max;
		else
			v->buf_max = u, v->buf_min = u < v->buf_min ? u : v->buf_min;
		clamp_buffer(v);
		return 0;
	case SO_VM_SOCKETS_CONNECT_TIMEOUT_OLD:
	case SO_VM_SOCKETS_CONNECT_TIMEOUT_NEW:
		if ((ns = tv_ns(val, len)) <= 0)
			return -EDOM;
		v->connect_timeout_ns = ns;
		return 0;
	}
	return -ENOPROTOOPT;
}

int
vmci_getsockname(int s, struct sockaddr_vm *a)
{
	struct vsk *v = get(s);

	if (!v)
		return -EBADF;
	*a = (struct sockaddr_vm){ .svm_family = AF_VSOCK,
				   .svm_cid = v->ctrl >= 0 || v->cid ? v->cid : VMADDR_CID_ANY,
				   .svm_port = v->port };
	return 0;
}

int
vmci_getpeername(int s, struct sockaddr_vm *a)
{
	struct vsk *v = get(s);

	if (!v)
		return -EBADF;
	if (!v->has_peer || (v->type != SOCK_DGRAM && v->state != VSK_CONNECTED))
		return -ENOTCONN;
	*a = (struct sockaddr_vm){ .svm_family = AF_VSOCK, .svm_cid = v->peer_cid,
				   .svm_port = v->peer_port };
	return 0;
}

int
vmci_get_local_cid(uint32_t *cid)
{
	struct vsk *v = vsk_new(SOCK_STREAM, false);
	struct wire_check c = { .cid = VMADDR_CID_LOCAL };
	int err;

	if (!v)
		return -ENOMEM;
	/* The HELLO reply names the context; CHECK is just something to send. */
	err = ctl_rpc(v, WIRE_CHECK, &c, NULL, 0, NULL, -1);
	if (!err)
		*cid = v->cid;
	vsk_free(v);
	return err;
}

short
vmci_poll_arm(int s, short events)
{
	struct vsk *v = get(s);
	unsigned want = 0, r;
	short out = 0;

	if (!v)
		return POLLNVAL;
	progress(v);
	if (v->state == VSK_CONNECTING)
		return 0;
	if (v->state == VSK_LISTEN) {
		struct pollfd p = { .fd = v->fd, .events = POLLIN };
		if (v->ctrl < 0 || poll(&p, 1, 0) > 0)
			out |= POLLIN; /* a connection, or the daemon to re-register with */
		return out & events;
	}
	if (!v->qp)
		return v->so_error ? POLLERR : (events & POLLOUT);
	if (events & POLLIN)
		want |= QP_EV_READ;
	if (events & POLLOUT)
		want |= QP_EV_WRITE;
	/* Consume any wakeup already delivered, then publish interest. */
	qp_ack(v->qp);
	r = qp_arm(v->qp, want);
	if (r & QP_EV_READ)
		out |= POLLIN;
	if (r & QP_EV_WRITE)
		out |= POLLOUT;
	if (r & QP_EV_HUP)
		out |= POLLHUP;
	if (r & QP_EV_ERR)
		out |= POLLERR;
	return out;
}
