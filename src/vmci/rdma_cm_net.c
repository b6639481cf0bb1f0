/* SPDX-License-Identifier: MIT */
/*
 * The RDMA connection manager between hosts (rdma_cm_net.h): one TCP
 * connection per request, from the connector's daemon, bound to the IP of
 * the VMkernel adapter its device is bound to, to port 4791 of the peer
 * host's adapter. The responder's daemon hands the request to the listener
 * on that port in the host context (CID 2) as a CM_REQ, and sends the
 * listener's answer back as REP or REJ; the connector's daemon answers its
 * CM_CONNECT and confirms a REP with RTU, which is when the listener's
 * vrdma_accept() returns. Every socket is non-blocking and every exchange
 * has a deadline, checked by one timer that also follows the adapters'
 * addresses (once a second), so listening sockets come and go with
 * bindings.
 *
 * Threat model: anyone who can reach an adapter's address can connect and
 * send anything. Connections are accepted only on the adapters' addresses
 * (the listening sockets are bound to them, and the local address of each
 * accepted connection is checked again), at most CMNET_CONNS_MAX at once,
 * each with a deadline; input is read into a fixed buffer of one message
 * and parsed by rcm_parse() (every field range-checked); a malformed
 * message ends the connection. The requester's address is the socket's
 * peer address, never a field of the message. A request reaches only a
 * listener of the host context, which decides; nothing in it names a
 * local object but the port.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "broker.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/wire_io.h"
#include "rdma/cm_wire.h"
#include "rdma/device.h"
#include "rdma_cm_net.h"

#define CMNET_CONNS_MAX	  256		     /* exchanges at once, both ways */
#define CMNET_LISTEN_MAX  (2 * RDMA_DEV_MAX) /* an IPv4 and an IPv6 address per device */
#define CMNET_RESCAN_NS	  1000000000LL
#define CMNET_REQ_NS	  5000000000LL /* an accepted connection's REQ must come within */
#define CMNET_RTU_NS	  3000000000LL /* the RTU after our REP (the listener waits 5 s) */
#define CMNET_CLOSE_NS	  1000000000LL /* to flush a last REJ or RTU */
#define CMNET_GRACE_NS	  2000000000LL /* a request outlives its requester's timeout by this */
#define CMNET_TIMEOUT_MAX 600000u      /* ms: the longest a connector may wait */
#define CMNET_STATUS	  (RDMA_DEV_WHY_MAX + 128)

#ifndef IPV6_FREEBIND
#define IPV6_FREEBIND 78
#endif

struct cmnet_addr {
	uint8_t family; /* AF_INET / AF_INET6 */
	uint8_t ip[16]; /* IPv4: the first 4 bytes */
};

/* A listening socket on an adapter's address. */
struct cmnet_lsock {
	struct loop_src src;
	struct cmnet *n;
	size_t dev; /* in b->rdma_devs */
	struct cmnet_addr addr;
	unsigned path_mtu; /* the device's, at the last scan */
	bool seen;	   /* wanted by the scan in progress */
};

enum cmnet_state {
	ST_CONNECTING,	/* out: TCP connect in progress, REQ queued */
	ST_WAIT_REP,	/* out: REQ sent */
	ST_WAIT_REQ,	/* in: accepted, REQ not yet read */
	ST_WAIT_ANSWER, /* in: the listener has the request (CM_REQ) */
	ST_WAIT_RTU,	/* in: REP sent; the listener's ACCEPT waits for the RTU */
	ST_CLOSING,	/* a last message (REJ, RTU) to flush, then close */
};

struct cmnet_conn {
	struct loop_src src;
	struct cmnet *n;
	struct cmnet_conn *next;
	enum cmnet_state st;
	int64_t deadline;
	struct cmnet_addr peer;
	uint8_t in[RCM_MAX];
	size_t nin;
	uint8_t out[2 * RCM_MAX];
	size_t nout, off;
	uint32_t events; /* what the loop watches for */
	/*
	 * The control connection whose request waits for this exchange (the
	 * connector's CONNECT, or the listener's ACCEPT), the request, and the
	 * body of its reply; NULL once answered or gone.
	 */
	struct vmci_conn *client;
	struct wire_hdr hdr;
	struct wire_rdma_cm cm;
	/* In: the listener that has the request, and its id there. */
	struct vmci_conn *listener;
	uint64_t id;
	unsigned mtu; /* out: our device's path MTU; in: the smaller of both */
};

struct cmnet {
	struct vmci_broker *b;
	struct loop_src timer;
	int64_t next_rescan;
	struct cmnet_lsock *ls[CMNET_LISTEN_MAX];
	size_t nls;
	struct cmnet_conn *conns;
	unsigned nconns;
	char status[RDMA_DEV_MAX][CMNET_STATUS]; /* what was last logged of each device */
};

static void conn_end(struct cmnet_conn *c, int err);
static void conn_event(struct loop_src *s, uint32_t events);

/* ---------------------------------------------------------------------- */
/* Addresses */

static socklen_t
to_sockaddr(const struct cmnet_addr *a, uint16_t port, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (a->family == AF_INET) {
		struct sockaddr_in *s = (struct sockaddr_in *)ss;

		s->sin_family = AF_INET;
		s->sin_port = htons(port);
		memcpy(&s->sin_addr, a->ip, 4);
		return sizeof(*s);
	}
	struct sockaddr_in6 *s = (struct sockaddr_in6 *)ss;

	s->sin6_family = AF_INET6;
	s->sin6_port = htons(port);
	memcpy(&s->sin6_addr, a->ip, 16);
	return sizeof(*s);
}

static int
from_sockaddr(const struct sockaddr_storage *ss, struct cmnet_addr *a)
{
	memset(a, 0, sizeof(*a));
	if (ss->ss_family == AF_INET) {
		a->family = AF_INET;
		memcpy(a->ip, &((const struct sockaddr_in *)ss)->sin_addr, 4);
		return 0;
	}
	if (ss->ss_family == AF_INET6) {
		a->family = AF_INET6;
		memcpy(a->ip, &((const struct sockaddr_in6 *)ss)->sin6_addr, 16);
		return 0;
	}
	return -EAFNOSUPPORT;
}

static bool
addr_eq(const struct cmnet_addr *a, const struct cmnet_addr *b)
{
	return a->family == b->family && !memcmp(a->ip, b->ip, a->family == AF_INET ? 4 : 16);
}

static const char *
addr_str(const struct cmnet_addr *a, char *buf, size_t len)
{
	if (!inet_ntop(a->family, a->ip, buf, (socklen_t)len))
		snprintf(buf, len, "?");
	return buf;
}

/* ---------------------------------------------------------------------- */
/* The timer: deadlines and the scan of the adapters */

static void
arm(struct cmnet *n)
{
	struct itimerspec it = { 0 };
	int64_t at = n->next_rescan;

	for (struct cmnet_conn *c = n->conns; c; c = c->next)
		if (c->deadline < at)
			at = c->deadline;
	if (at != INT64_MAX) {
		at = at > 0 ? at : 1;
		it.it_value.tv_sec = at / 1000000000;
		it.it_value.tv_nsec = at % 1000000000;
	}
	timerfd_settime(n->timer.fd, TFD_TIMER_ABSTIME, &it, NULL);
}

/* ---------------------------------------------------------------------- */
/* Connections: buffers and the loop */

static struct cmnet_conn *
conn_new(struct cmnet *n, int fd, enum cmnet_state st, int64_t deadline)
{
	struct cmnet_conn *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->src.fd = fd;
	c->src.fn = conn_event;
	c->n = n;
	c->st = st;
	c->deadline = deadline;
	return c;
}

static void
conn_free(struct cmnet_conn *c)
{
	struct cmnet *n = c->n;

	for (struct cmnet_conn **p = &n->conns; *p; p = &(*p)->next)
		if (*p == c) {
			*p = c->next;
			n->nconns--;
			break;
		}
	if (c->events)
		loop_del(n->b->loop, &c->src);
	close(c->src.fd);
	free(c);
}

static void
conn_watch(struct cmnet_conn *c)
{
	uint32_t ev = EPOLLIN | EPOLLRDHUP;

	if (c->st == ST_CONNECTING || c->off < c->nout)
		ev |= EPOLLOUT;
	if (ev != c->events && !loop_mod(c->n->b->loop, &c->src, ev))
		c->events = ev;
}

/* Write what is queued. 1: all written; 0: the rest waits for EPOLLOUT; -errno. */
static int
conn_flush(struct cmnet_conn *c)
{
	while (c->off < c->nout) {
		ssize_t k =
		    send(c->src.fd, c->out + c->off, c->nout - c->off, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0 && errno == EAGAIN)
			return 0;
		if (k < 0)
			return -errno;
		c->off += (size_t)k;
	}
	c->off = c->nout = 0;
	return 1;
}

/*
 * Queue @m and write what the socket takes. Returns false when the
 * connection ended (freed): a write error, or the last message of a
 * closing one written.
 */
static bool
conn_send(struct cmnet_conn *c, const struct rcm_msg *m)
{
	int r;

	if (c->nout + RCM_MAX <= sizeof(c->out))
		c->nout += rcm_build(m, c->out + c->nout);
	if (c->st == ST_CONNECTING)
		return true; /* written once connected */
	if ((r = conn_flush(c)) < 0) {
		conn_end(c, -ECONNRESET);
		return false;
	}
	if (r > 0 && c->st == ST_CLOSING) {
		conn_free(c);
		return false;
	}
	conn_watch(c);
	return true;
}

static bool
send_rej(struct cmnet_conn *c, uint32_t reason)
{
	struct rcm_msg m = { .type = RCM_REJ, .u.reason = reason };

	c->st = ST_CLOSING;
	c->deadline = clock_ns() + CMNET_CLOSE_NS;
	return conn_send(c, &m);
}

/* Answer the control connection waiting for this exchange, if any. */
static void
reply_client(struct cmnet_conn *c, int status)
{
	if (!c->client)
		return;
	broker__reply(c->client, &c->hdr, status, &c->cm, NULL, 0);
	c->client = NULL;
}

/* The exchange is over with @err (EOF: -ECONNRESET; deadline: -ETIMEDOUT). */
static void
conn_end(struct cmnet_conn *c, int err)
{
	switch (c->st) {
	case ST_CONNECTING:
		/* Nobody answers on port 4791 of that address, or no route to it. */
		reply_client(c, err == -ETIMEDOUT ? err : -EHOSTUNREACH);
		break;
	case ST_WAIT_REP:
		reply_client(c, err);
		break;
	case ST_WAIT_RTU:
		reply_client(c, -ECONNABORTED); /* the listener's ACCEPT: the connector is gone */
		break;
	default:
		break;
	}
	conn_free(c);
}

/* ---------------------------------------------------------------------- */
/* Outgoing: this host's connector */

/* REP or REJ for our REQ. Returns false when the connection ended. */
static bool
out_answer(struct cmnet_conn *c, const struct rcm_msg *m)
{
	struct wire_rdma_cm *w = &c->cm;
	const struct rcm_rep *r = &m->u.rep;
	struct rcm_msg rtu = { .type = RCM_RTU };
	struct vmci_conn *client = c->client;

	if (m->type == RCM_REJ) {
		log_debug("rdma cm: request %u refused by the peer (reason %u)", w->port,
			  m->u.reason);
		conn_end(c, -ECONNREFUSED);
		return false;
	}
	if (m->type != RCM_REP) {
		conn_end(c, -EPROTO);
		return false;
	}
	w->id = 0;
	w->cid = VMCI_CID_ANY;
	w->qpn = r->qpn;
	w->psn = r->psn;
	w->resp_res = r->resp_res;
	w->init_depth = r->init_depth;
	w->rnr_retry = r->rnr_retry;
	w->priv_len = r->priv_len;
	memset(w->priv, 0, sizeof(w->priv));
	memcpy(w->priv, r->priv, r->priv_len);
	w->mtu = (uint16_t)(r->mtu < c->mtu ? r->mtu : c->mtu);
	c->client = NULL;
	/* Only a connector that has its answer is confirmed (RTU); else the acceptor hears it. */
	if (!client || broker__reply(client, &c->hdr, 0, w, NULL, 0)) {
		conn_free(c);
		return false;
	}
	c->st = ST_CLOSING;
	c->deadline = clock_ns() + CMNET_CLOSE_NS;
	return conn_send(c, &rtu);
}

static int
connect_errno(int err)
{
	/* bind: the adapter lost its address since the scan */
	return err == EADDRNOTAVAIL ? -ENETUNREACH : -EHOSTUNREACH;
}

/* The source address for @w's peer on device @dev, and the path MTU: 0 or -ENETUNREACH. */
static int
out_source(struct vmci_broker *b, const char *dev, const struct cmnet_addr *peer,
	   struct cmnet_addr *src, unsigned *mtu)
{
	const struct rdma_dev *d = dev ? rdma_dev_find(&b->rdma_devs, dev) : NULL;
	struct rdma_dev_source s;
	const char *why;
	char ip[INET6_ADDRSTRLEN];

	if (!d) {
		log_rl(LOG_LVL_WARN,
		       "rdma: %s cannot reach %s: no paired uplink (a device of this "
		       "host only)",
		       dev ? dev : "?", addr_str(peer, ip, sizeof(ip)));
		return -ENETUNREACH;
	}
	if (rdma_dev_roce_source(&b->rdma_devs, d, &s, &why)) {
		log_rl(LOG_LVL_WARN, "rdma: %s cannot reach %s: %s", dev,
		       addr_str(peer, ip, sizeof(ip)), why);
		return -ENETUNREACH;
	}
	memset(src, 0, sizeof(*src));
	src->family = peer->family;
	if (peer->family == AF_INET && s.has_ipv4) {
		memcpy(src->ip, &s.ipv4, 4);
	} else if (peer->family == AF_INET6 && s.has_ipv6) {
		memcpy(src->ip, &s.ipv6, 16);
	} else {
		log_rl(LOG_LVL_WARN, "rdma: %s cannot reach %s: %s has no %s address", dev,
		       addr_str(peer, ip, sizeof(ip)), s.vmknic,
		       peer->family == AF_INET ? "IPv4" : "IPv6");
		return -ENETUNREACH;
	}
	*mtu = s.path_mtu;
	return 0;
}

/* A TCP socket from @src to @peer port 4791, connecting. Returns the descriptor or -errno. */
static int
out_socket(const struct cmnet_addr *src, const struct cmnet_addr *peer)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int one = 1, fd, err;

	fd = socket(peer->family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	len = to_sockaddr(src, 0, &ss);
	if (bind(fd, (struct sockaddr *)&ss, len) < 0) {
		err = connect_errno(errno);
		close(fd);
		return err;
	}
	len = to_sockaddr(peer, RCM_PORT, &ss);
	if (connect(fd, (struct sockaddr *)&ss, len) < 0 && errno != EINPROGRESS) {
		err = connect_errno(errno);
		close(fd);
		return err;
	}
	return fd;
}

int
cmnet_connect(struct vmci_conn *vc, struct wire_msg *m, const char *dev)
{
	struct vmci_broker *b = vc->b;
	struct cmnet *n = b->rdma.net;
	struct wire_rdma_cm *w = &m->body.rdma_cm;
	struct vmci_ctx *x = vmci_reg_find(&b->reg, vc->cid);
	struct cmnet_addr peer = { .family = w->family }, src;
	struct rcm_msg req = { .type = RCM_REQ };
	struct cmnet_conn *c;
	unsigned mtu;
	int fd, err;

	if ((w->family != AF_INET && w->family != AF_INET6) || w->priv_len > RCM_PRIV ||
	    w->rnr_retry > 7 || w->qpn < 2 || w->qpn > 0xffffff)
		return -EINVAL;
	memcpy(peer.ip, w->addr, w->family == AF_INET ? 4 : 16);
	/* Another host is not "the host": a context restricted to it may not. */
	if (!x || !x->present || x->restricted) {
		log_rl(LOG_LVL_WARN, "rdma: context %u may not connect to other hosts", vc->cid);
		return -EACCES;
	}
	if (!n)
		return -ENETUNREACH;
	if (n->nconns >= CMNET_CONNS_MAX)
		return -ENOBUFS;
	if ((err = out_source(b, dev, &peer, &src, &mtu)))
		return err;
	if ((fd = out_socket(&src, &peer)) < 0)
		return fd;
	if (w->timeout_ms > CMNET_TIMEOUT_MAX)
		w->timeout_ms = CMNET_TIMEOUT_MAX;
	if (!(c = conn_new(n, fd, ST_CONNECTING, clock_ns() + (int64_t)w->timeout_ms * 1000000))) {
		close(fd);
		return -ENOMEM;
	}
	c->peer = peer;
	c->mtu = mtu;
	c->client = vc;
	c->hdr = m->hdr;
	c->cm = *w;
	req.u.req = (struct rcm_req){ .port = w->port,
				      .qpn = w->qpn,
				      .psn = w->psn & 0xffffff,
				      .mtu = (uint16_t)mtu,
				      .resp_res = w->resp_res,
				      .init_depth = w->init_depth,
				      .rnr_retry = w->rnr_retry,
				      .priv_len = w->priv_len,
				      .timeout_ms = w->timeout_ms };
	memcpy(req.u.req.priv, w->priv, w->priv_len);
	conn_send(c, &req); /* queued until connected */
	c->events = EPOLLIN | EPOLLOUT | EPOLLRDHUP;
	if (loop_add(b->loop, &c->src, c->events)) {
		c->events = 0;
		close(fd);
		free(c);
		return -ENOMEM;
	}
	c->next = n->conns;
	n->conns = c;
	n->nconns++;
	arm(n);
	return 0; /* answered with the peer's answer */
}

/* ---------------------------------------------------------------------- */
/* Incoming: a requester on another host */

/* The listener on the request's port in the host context, or REJ. false: the connection ended. */
static bool
in_request(struct cmnet_conn *c, const struct rcm_req *r)
{
	struct vmci_broker *b = c->n->b;
	struct vmci_conn *l = vmci_port_find(&b->ports, VMCI_SPACE_RDMA, VMCI_CID_HOST, r->port);
	struct wire_hdr h = { .type = WIRE_RDMA_CM_REQ, .len = sizeof(struct wire_rdma_cm) };
	struct wire_rdma_cm w = { .cid = VMCI_CID_ANY,
				  .port = r->port,
				  .qpn = r->qpn,
				  .psn = r->psn,
				  .resp_res = r->resp_res,
				  .init_depth = r->init_depth,
				  .rnr_retry = r->rnr_retry,
				  .priv_len = r->priv_len,
				  .family = c->peer.family };
	char ip[INET6_ADDRSTRLEN];

	if (!l || l->state != CONN_RDMA_LISTEN) {
		log_debug("rdma cm: %s: nobody listens on port %u",
			  addr_str(&c->peer, ip, sizeof(ip)), r->port);
		return send_rej(c, RCM_REJ_NO_LISTENER);
	}
	if (r->mtu < c->mtu)
		c->mtu = r->mtu;
	c->id = w.id = ++b->rdma.next_req;
	w.mtu = (uint16_t)c->mtu;
	memcpy(w.priv, r->priv, r->priv_len);
	memcpy(w.addr, c->peer.ip, sizeof(w.addr));
	if (wire_send(l->src.fd, &h, &w, NULL, 0) < 0)
		return send_rej(c, RCM_REJ_NO_LISTENER); /* a listener that does not read */
	c->listener = l;
	c->st = ST_WAIT_ANSWER;
	c->deadline =
	    clock_ns() +
	    (int64_t)(r->timeout_ms < CMNET_TIMEOUT_MAX ? r->timeout_ms : CMNET_TIMEOUT_MAX) *
		1000000 +
	    CMNET_GRACE_NS;
	return true;
}

static struct cmnet_conn *
find_request(struct cmnet *n, const struct vmci_conn *l, uint64_t id)
{
	for (struct cmnet_conn *c = n ? n->conns : NULL; c; c = c->next)
		if (c->st == ST_WAIT_ANSWER && c->listener == l && c->id == id)
			return c;
	return NULL;
}

int
cmnet_answer(struct vmci_conn *vc, struct wire_msg *m, bool qp_ok)
{
	struct cmnet *n = vc->b->rdma.net;
	struct wire_rdma_cm *w = &m->body.rdma_cm;
	struct cmnet_conn *c = find_request(n, vc, w->id);
	struct rcm_msg rep = { .type = RCM_REP };

	if (!c)
		return -ECONNABORTED; /* the requester gave up or went away */
	if (m->hdr.type == WIRE_RDMA_CM_REJECT) {
		send_rej(c, RCM_REJ_CONSUMER);
		arm(n);
		return broker__reply(vc, &m->hdr, 0, w, NULL, 0);
	}
	if (!qp_ok || w->priv_len > RCM_PRIV || w->rnr_retry > 7)
		return -EINVAL;
	rep.u.rep = (struct rcm_rep){ .qpn = w->qpn,
				      .psn = w->psn & 0xffffff,
				      .mtu = (uint16_t)c->mtu,
				      .resp_res = w->resp_res,
				      .init_depth = w->init_depth,
				      .rnr_retry = w->rnr_retry,
				      .priv_len = w->priv_len };
	memcpy(rep.u.rep.priv, w->priv, w->priv_len);
	c->st = ST_WAIT_RTU;
	c->deadline = clock_ns() + CMNET_RTU_NS;
	c->client = vc;
	c->hdr = m->hdr;
	c->cm = *w;
	conn_send(c, &rep); /* a failure answers the listener */
	arm(n);
	return 0; /* answered at the RTU */
}

/* ---------------------------------------------------------------------- */
/* Input */

/* One message parsed from c->in. Returns false when the connection ended. */
static bool
conn_message(struct cmnet_conn *c, const struct rcm_msg *m)
{
	switch (c->st) {
	case ST_WAIT_REP:
		return out_answer(c, m);
	case ST_WAIT_REQ:
		if (m->type == RCM_REQ)
			return in_request(c, &m->u.req);
		break;
	case ST_WAIT_RTU:
		if (m->type == RCM_RTU) {
			reply_client(c, 0);
			conn_free(c);
			return false;
		}
		break;
	case ST_CLOSING:
		return true; /* whatever follows our last word */
	default:
		break;
	}
	log_rl(LOG_LVL_WARN, "rdma cm: unexpected message %u from a peer: connection closed",
	       m->type);
	conn_end(c, -EPROTO);
	return false;
}

static void
conn_read(struct cmnet_conn *c)
{
	struct rcm_msg m;
	const char *why = "";
	char ip[INET6_ADDRSTRLEN];

	for (;;) {
		ssize_t k = recv(c->src.fd, c->in + c->nin, sizeof(c->in) - c->nin, MSG_DONTWAIT);

		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0 && errno == EAGAIN)
			return;
		if (k <= 0) {
			conn_end(c, -ECONNRESET); /* the peer closed, or reset */
			return;
		}
		c->nin += (size_t)k;
		while (c->nin) {
			ssize_t used = rcm_parse(c->in, c->nin, &m, &why);

			if (used == 0)
				break;
			if (used == -EPROTONOSUPPORT && c->st == ST_WAIT_REQ) {
				send_rej(c, RCM_REJ_VERSION);
				return;
			}
			if (used < 0) {
				log_rl(LOG_LVL_WARN, "rdma cm: %s: %s: connection closed",
				       addr_str(&c->peer, ip, sizeof(ip)), why);
				conn_end(c, -EPROTO);
				return;
			}
			c->nin -= (size_t)used;
			memmove(c->in, c->in + used, c->nin);
			if (!conn_message(c, &m))
				return;
		}
	}
}

static void
conn_event(struct loop_src *s, uint32_t events)
{
	struct cmnet_conn *c = (struct cmnet_conn *)((char *)s - offsetof(struct cmnet_conn, src));
	struct cmnet *n = c->n;
	int r;

	if (c->st == ST_CONNECTING) {
		int e = 0;
		socklen_t len = sizeof(e);

		if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
			return;
		if (getsockopt(c->src.fd, SOL_SOCKET, SO_ERROR, &e, &len) < 0)
			e = errno;
		if (e) {
			conn_end(c, -e);
			goto out;
		}
		c->st = ST_WAIT_REP;
	}
	if (c->off < c->nout) {
		if ((r = conn_flush(c)) < 0) {
			conn_end(c, -ECONNRESET);
			goto out;
		}
		if (r > 0 && c->st == ST_CLOSING) {
			conn_free(c);
			goto out;
		}
	}
	conn_watch(c);
	if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		conn_read(c);
out:
	arm(n);
}

/* ---------------------------------------------------------------------- */
/* Listening sockets */

static bool
conn_add(struct cmnet *n, struct cmnet_conn *c)
{
	c->events = EPOLLIN | EPOLLRDHUP;
	if (loop_add(n->b->loop, &c->src, c->events)) {
		c->events = 0;
		return false;
	}
	c->next = n->conns;
	n->conns = c;
	n->nconns++;
	return true;
}

static void
accept_one(struct cmnet_lsock *ls, int fd)
{
	struct cmnet *n = ls->n;
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	struct cmnet_addr local, peer;
	struct cmnet_conn *c;

	/* Only on the adapter's address (the socket is bound to it: checked once more). */
	if (n->nconns >= CMNET_CONNS_MAX || getsockname(fd, (struct sockaddr *)&ss, &len) < 0 ||
	    from_sockaddr(&ss, &local) || !addr_eq(&local, &ls->addr)) {
		log_rl(LOG_LVL_WARN, "rdma cm: connection refused (%s)",
		       n->nconns >= CMNET_CONNS_MAX ? "too many at once"
						    : "not the adapter's address");
		close(fd);
		return;
	}
	len = sizeof(ss);
	if (getpeername(fd, (struct sockaddr *)&ss, &len) < 0 || from_sockaddr(&ss, &peer) ||
	    !(c = conn_new(n, fd, ST_WAIT_REQ, clock_ns() + CMNET_REQ_NS))) {
		close(fd);
		return;
	}
	c->peer = peer;
	c->mtu = ls->path_mtu;
	if (!conn_add(n, c)) {
		close(fd);
		free(c);
	}
}

static void
lsock_event(struct loop_src *s, uint32_t events)
{
	struct cmnet_lsock *ls =
	    (struct cmnet_lsock *)((char *)s - offsetof(struct cmnet_lsock, src));

	(void)events;
	for (int i = 0; i < 16; i++) {
		int one = 1, fd = accept4(s->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0)
			break;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		accept_one(ls, fd);
	}
	arm(ls->n);
}

static int
lsock_open(struct cmnet *n, size_t dev, const struct cmnet_addr *a, unsigned mtu)
{
	struct cmnet_lsock *ls;
	struct sockaddr_storage ss;
	socklen_t len = to_sockaddr(a, RCM_PORT, &ss);
	int one = 1, fd, err;

	if (n->nls == CMNET_LISTEN_MAX)
		return -ENOSPC;
	fd = socket(a->family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	/* An IPv6 address may still be tentative (duplicate address detection). */
	if (a->family == AF_INET6) {
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
		setsockopt(fd, IPPROTO_IPV6, IPV6_FREEBIND, &one, sizeof(one));
	}
	if (bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, 64) < 0) {
		err = -errno;
		close(fd);
		return err;
	}
	if (!(ls = calloc(1, sizeof(*ls)))) {
		close(fd);
		return -ENOMEM;
	}
	ls->src.fd = fd;
	ls->src.fn = lsock_event;
	ls->n = n;
	ls->dev = dev;
	ls->addr = *a;
	ls->path_mtu = mtu;
	ls->seen = true;
	if ((err = loop_add(n->b->loop, &ls->src, EPOLLIN))) {
		close(fd);
		free(ls);
		return err;
	}
	n->ls[n->nls++] = ls;
	return 0;
}

static void
lsock_close(struct cmnet *n, size_t i)
{
	struct cmnet_lsock *ls = n->ls[i];

	loop_del(n->b->loop, &ls->src);
	close(ls->src.fd);
	free(ls);
	n->ls[i] = n->ls[--n->nls];
}

/* Listen on @a for device @dev; appends what happened to @status. */
static void
scan_addr(struct cmnet *n, size_t dev, const struct cmnet_addr *a, unsigned mtu, char *status,
	  size_t size)
{
	char ip[INET6_ADDRSTRLEN];
	size_t used = strlen(status);
	int err = 0;
	size_t i;

	for (i = 0; i < n->nls; i++)
		if (n->ls[i]->dev == dev && addr_eq(&n->ls[i]->addr, a))
			break;
	if (i < n->nls) {
		n->ls[i]->seen = true;
		n->ls[i]->path_mtu = mtu;
	} else {
		err = lsock_open(n, dev, a, mtu);
	}
	addr_str(a, ip, sizeof(ip));
	if (err)
		snprintf(status + used, size - used, "%scannot listen on %s%s%s port %u: %s",
			 used ? ", " : "", a->family == AF_INET6 ? "[" : "", ip,
			 a->family == AF_INET6 ? "]" : "", RCM_PORT, strerror(-err));
	else
		snprintf(status + used, size - used, "%s%s%s%s:%u", used ? ", " : "listening on ",
			 a->family == AF_INET6 ? "[" : "", ip, a->family == AF_INET6 ? "]" : "",
			 RCM_PORT);
}

/* Listen on every usable device's adapter's addresses, and only there; log what changed. */
static void
rescan(struct cmnet *n)
{
	const struct rdma_devs *d = &n->b->rdma_devs;

	for (size_t i = 0; i < n->nls; i++)
		n->ls[i]->seen = false;
	for (size_t k = 0; k < d->n && k < RDMA_DEV_MAX; k++) {
		struct rdma_dev_source s;
		const char *why;
		char status[CMNET_STATUS] = "";

		if (rdma_dev_roce_source(d, &d->dev[k], &s, &why)) {
			snprintf(status, sizeof(status), "no connections from other hosts: %s",
				 why);
		} else {
			struct cmnet_addr a = { .family = AF_INET };

			if (s.has_ipv4) {
				memcpy(a.ip, &s.ipv4, 4);
				scan_addr(n, k, &a, s.path_mtu, status, sizeof(status));
			}
			if (s.has_ipv6) {
				a.family = AF_INET6;
				memcpy(a.ip, &s.ipv6, 16);
				scan_addr(n, k, &a, s.path_mtu, status, sizeof(status));
			}
		}
		if (strcmp(status, n->status[k])) {
			log_info("rdma cm: %s: %s", d->dev[k].name, status);
			snprintf(n->status[k], sizeof(n->status[k]), "%s", status);
		}
	}
	for (size_t i = n->nls; i-- > 0;)
		if (!n->ls[i]->seen)
			lsock_close(n, i);
	n->next_rescan = clock_ns() + CMNET_RESCAN_NS;
}

static void
timer_event(struct loop_src *s, uint32_t events)
{
	struct cmnet *n = (struct cmnet *)((char *)s - offsetof(struct cmnet, timer));
	int64_t now = clock_ns();
	uint64_t ticks;
	struct cmnet_conn *c, *next;

	(void)events;
	(void)!read(s->fd, &ticks, sizeof(ticks));
	if (now >= n->next_rescan)
		rescan(n);
	for (c = n->conns; c; c = next) {
		next = c->next;
		if (c->deadline <= now)
			conn_end(c, -ETIMEDOUT);
	}
	arm(n);
}

/* ---------------------------------------------------------------------- */

int
cmnet_start(struct vmci_broker *b)
{
	struct cmnet *n = calloc(1, sizeof(*n));
	int err = 0;

	if (!n)
		return -ENOMEM;
	n->b = b;
	n->next_rescan = INT64_MAX;
	n->timer.fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	n->timer.fn = timer_event;
	if (n->timer.fd < 0 || (err = loop_add(b->loop, &n->timer, EPOLLIN))) {
		err = n->timer.fd < 0 ? -errno : err;
		log_err("rdma cm: no connections to or from other hosts: %s", strerror(-err));
		if (n->timer.fd >= 0)
			close(n->timer.fd);
		free(n);
		return err;
	}
	b->rdma.net = n;
	if (b->rdma_devs.n)
		rescan(n); /* and once a second from now on */
	arm(n);
	return 0;
}

void
cmnet_stop(struct vmci_broker *b)
{
	struct cmnet *n = b->rdma.net;

	if (!n)
		return;
	while (n->conns)
		conn_end(n->conns, -ECONNRESET);
	while (n->nls)
		lsock_close(n, n->nls - 1);
	loop_del(b->loop, &n->timer);
	close(n->timer.fd);
	free(n);
	b->rdma.net = NULL;
}

void
cmnet_conn_closed(struct vmci_conn *vc)
{
	struct cmnet *n = vc->b->rdma.net;
	struct cmnet_conn *c, *next;

	for (c = n ? n->conns : NULL; c; c = next) {
		next = c->next;
		if (c->client == vc) {
			c->client = NULL;
			if (c->st == ST_CONNECTING || c->st == ST_WAIT_REP) {
				conn_free(c); /* the connector gave up: the peer sees us go */
				continue;
			}
		}
		if (c->listener == vc) {
			c->listener = NULL;
			if (c->st == ST_WAIT_ANSWER)
				send_rej(c, RCM_REJ_NO_LISTENER);
		}
	}
	if (n)
		arm(n);
}

int
cmnet__adopt(struct vmci_broker *b, int fd, const unsigned char peer_ip[4], unsigned path_mtu)
{
	struct cmnet *n = b->rdma.net;
	struct cmnet_conn *c;

	if (!n || !(c = conn_new(n, fd, ST_WAIT_REQ, clock_ns() + CMNET_REQ_NS))) {
		close(fd);
		return -ENOMEM;
	}
	c->peer.family = AF_INET;
	memcpy(c->peer.ip, peer_ip, 4);
	c->mtu = path_mtu;
	if (!conn_add(n, c)) {
		close(fd);
		free(c);
		return -ENOMEM;
	}
	arm(n);
	return 0;
}
