/* SPDX-License-Identifier: MIT */
/*
 * Direct connections (the protocol is in common/wire.h): a connect() from
 * an unbound stream or seqpacket socket goes straight to the listening
 * process over a channel the daemon set up once, with a port from a leased
 * block, and is established when the DIAL is sent, as a TCP connect() is
 * when the SYN-ACK comes back without the listening process running.
 *
 * One dialer per context the process acts as: its control connection, its
 * channels (a small cache: a channel that fails is dropped and asked for
 * again), its spare ports, and its connection table, which the daemon reads
 * for `vmfabric vmci socket list`. Everything here runs under dial_lock.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/shm.h"
#include "lib.h"

#define DIAL_CHANS 64
#define DIAL_LEASE 32u
#define DIAL_TABLE_BYTES (WIRE_DIAL_SLOTS * sizeof(struct wire_dial_slot))
#define DIALERS 16

struct chan {
	int fd; /* -1: free */
	uint64_t serial; /* its parked queue pairs are filed under this */
	uint32_t next_id;
	uint32_t cid, port, type;
	uint32_t src_cid, backlog;
	struct wire_backlog *bl;
	uint64_t buf_size, buf_min, buf_max;
};

struct dialer {
	struct vsk ctl; /* its control connection (ctl.c); not a socket of the application */
	uint64_t id;	/* sockets find their dialer by this, never by a pointer */
	uint64_t epoch; /* registrations with the daemon: ports are leased per epoch */
	bool registered;
	int table_fd;
	struct wire_dial_slot *table;
	uint32_t free_slots[WIRE_DIAL_SLOTS];
	uint32_t nfree_slots; /* a connection per slot in use: none without one */
	uint32_t *ports; /* spare leased ports */
	size_t nports, ports_cap;
	struct chan chans[DIAL_CHANS];
	unsigned evict;
};

static pthread_mutex_t dial_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t dial_init_once = PTHREAD_ONCE_INIT;
static struct dialer *dialers[DIALERS];
static unsigned dialers_evict;
static uint64_t dialers_made;

/* ---------------------------------------------------------------------- */
/*
 * Parked queue pairs, both sides of channels: when a direct connection
 * closes, its queue pair waits here, filed under its channel's serial and
 * its number, for the next connection between the same two processes
 * (qp_park() in qp.h). Bounded: the oldest is closed to make room.
 */

#define POOL_MAX 32

struct parked {
	uint64_t serial;
	uint32_t id;
	struct qp *qp;
};

static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static struct parked pool[POOL_MAX];
static unsigned npool;
static uint64_t serials;
static _Atomic uint64_t reuses;

uint64_t
lib_pool_reuses(void)
{
	return atomic_load(&reuses);
}

uint64_t
lib_serial(void)
{
	uint64_t s;

	pthread_mutex_lock(&pool_lock);
	s = ++serials;
	pthread_mutex_unlock(&pool_lock);
	return s;
}

static struct qp *
pool_remove(unsigned i)
{
	struct qp *q = pool[i].qp;

	memmove(&pool[i], &pool[i + 1], (--npool - i) * sizeof(pool[0]));
	return q;
}

/* VMFABRIC_QP_REUSE=0: every connection makes its own queue pair (for comparisons). */
static bool
pool_enabled(void)
{
	const char *e = getenv("VMFABRIC_QP_REUSE");

	return !(e && !strcmp(e, "0"));
}

void
pool_park(uint64_t serial, uint32_t id, struct qp *q)
{
	struct qp *old = NULL;

	if (!pool_enabled()) {
		qp_close(q);
		return;
	}
	qp_park(q);
	pthread_mutex_lock(&pool_lock);
	if (npool == POOL_MAX)
		old = pool_remove(0);
	pool[npool++] = (struct parked){ serial, id, q };
	pthread_mutex_unlock(&pool_lock);
	qp_close(old);
}

/* Side 0: a queue pair of this channel that both ends parked, of @size. */
static struct qp *
pool_take_reusable(uint64_t serial, uint64_t size, uint32_t *id)
{
	struct qp *q = NULL;

	pthread_mutex_lock(&pool_lock);
	for (unsigned i = 0; i < npool; i++)
		if (pool[i].serial == serial && qp_tx_size(pool[i].qp) == size &&
		    qp_reusable(pool[i].qp)) {
			*id = pool[i].id;
			q = pool_remove(i);
			break;
		}
	pthread_mutex_unlock(&pool_lock);
	return q;
}

struct qp *
pool_take(uint64_t serial, uint32_t id)
{
	struct qp *q = NULL;

	pthread_mutex_lock(&pool_lock);
	for (unsigned i = 0; i < npool; i++)
		if (pool[i].serial == serial && pool[i].id == id) {
			q = pool_remove(i);
			break;
		}
	pthread_mutex_unlock(&pool_lock);
	return q;
}

void
pool_purge(uint64_t serial)
{
	struct qp *gone[POOL_MAX];
	unsigned n = 0;

	pthread_mutex_lock(&pool_lock);
	for (unsigned i = 0; i < npool;)
		if (pool[i].serial == serial)
			gone[n++] = pool_remove(i);
		else
			i++;
	pthread_mutex_unlock(&pool_lock);
	while (n)
		qp_close(gone[--n]);
}

/* ---------------------------------------------------------------------- */

static void
chan_drop(struct chan *c)
{
	if (c->fd < 0)
		return;
	pool_purge(c->serial);
	close(c->fd);
	munmap(c->bl, WIRE_BACKLOG_BYTES);
	c->fd = -1;
}

/*
 * In a forked child, the parent's dialers are the parent's: their control
 * connection and channels would be shared by two processes. The child
 * forgets them (their memory is left as it is: sockets inherited from the
 * parent may still point at their table) and makes its own when it dials.
 */
static void
dial_atfork_child(void)
{
	pthread_mutex_init(&dial_lock, NULL);
	pthread_mutex_init(&pool_lock, NULL);
	while (npool)
		qp_detach(pool_remove(npool - 1)); /* the parent's connections */
	for (unsigned i = 0; i < DIALERS; i++) {
		struct dialer *d = dialers[i];

		if (!d)
			continue;
		for (unsigned k = 0; k < DIAL_CHANS; k++)
			if (d->chans[k].fd >= 0)
				close(d->chans[k].fd);
		if (d->ctl.ctrl >= 0)
			close(d->ctl.ctrl);
		if (d->table_fd >= 0)
			close(d->table_fd);
		dialers[i] = NULL;
	}
}

static void
dial_init(void)
{
	pthread_atfork(NULL, NULL, dial_atfork_child);
}

static void
dialer_free(struct dialer *d)
{
	for (unsigned k = 0; k < DIAL_CHANS; k++)
		chan_drop(&d->chans[k]);
	ctl_drop(&d->ctl);
	/* The table stays mapped: open sockets count their bytes in it. */
	if (d->table_fd >= 0)
		close(d->table_fd);
	free(d->ports);
	free(d);
}

static struct dialer *
dialer_new(uint32_t cid, const char name[WIRE_NAME])
{
	struct dialer *d = calloc(1, sizeof(*d));

	if (!d)
		return NULL;
	d->id = ++dialers_made;
	d->ctl.fd = -1;
	d->ctl.ctrl = -1;
	d->ctl.type = SOCK_STREAM;
	d->ctl.want_cid = cid;
	memcpy(d->ctl.want_name, name, WIRE_NAME);
	d->table_fd = shm_create("vmfabric-dialer", DIAL_TABLE_BYTES, (void **)&d->table);
	if (d->table_fd < 0) {
		free(d);
		return NULL;
	}
	for (uint32_t i = 0; i < WIRE_DIAL_SLOTS; i++)
		d->free_slots[i] = WIRE_DIAL_SLOTS - 1 - i;
	d->nfree_slots = WIRE_DIAL_SLOTS;
	for (unsigned k = 0; k < DIAL_CHANS; k++)
		d->chans[k].fd = -1;
	return d;
}

/*
 * The daemon went away if the dialer's control connection is readable: it
 * never says anything unasked. Then the channels it set up are not used
 * again (a new daemon may have another policy) nor the ports it leased.
 */
static void
dialer_check(struct dialer *d)
{
	struct pollfd p = { .fd = d->ctl.ctrl, .events = POLLIN };

	if (d->ctl.ctrl >= 0 && poll(&p, 1, 0) != 0)
		ctl_drop(&d->ctl);
	if (d->ctl.ctrl < 0 && d->registered) {
		d->registered = false;
		d->nports = 0;
		for (unsigned k = 0; k < DIAL_CHANS; k++)
			chan_drop(&d->chans[k]);
	}
}

/*
 * The dialer for the context @v acts as, registered with the daemon.
 * -EREMOTE when none can be had without dropping one that holds
 * connections (their ports and listing go with it): connect through the
 * daemon instead.
 */
static int
dialer_get(const struct vsk *v, struct dialer **out)
{
	struct wire_dialer w = { .slots = WIRE_DIAL_SLOTS };
	struct dialer *d = NULL;
	unsigned i;
	int err;

	for (i = 0; i < DIALERS; i++)
		if (dialers[i] && dialers[i]->ctl.want_cid == v->want_cid &&
		    !memcmp(dialers[i]->ctl.want_name, v->want_name, WIRE_NAME)) {
			d = dialers[i];
			break;
		}
	if (!d) {
		for (i = 0; i < DIALERS && dialers[i]; i++)
			;
		for (unsigned k = 0; i == DIALERS && k < DIALERS; k++) {
			unsigned j = dialers_evict++ % DIALERS;

			if (dialers[j]->nfree_slots == WIRE_DIAL_SLOTS) {
				dialer_free(dialers[j]);
				dialers[j] = NULL;
				i = j;
			}
		}
		if (i == DIALERS)
			return -EREMOTE;
		if (!(d = dialer_new(v->want_cid, v->want_name)))
			return -ENOMEM;
		dialers[i] = d;
	}
	dialer_check(d);
	if (!d->nfree_slots)
		return -EREMOTE; /* as many connections as its table lists */
	if (!d->registered) {
		err = ctl_rpc(&d->ctl, WIRE_DIALER, &w, &d->table_fd, 1, NULL, -1);
		if (err)
			return err;
		d->registered = true;
		d->epoch++;
	}
	*out = d;
	return 0;
}

static struct chan *
chan_find(struct dialer *d, uint32_t cid, uint32_t port, uint32_t type)
{
	for (unsigned k = 0; k < DIAL_CHANS; k++) {
		struct chan *c = &d->chans[k];

		if (c->fd >= 0 && c->cid == cid && c->port == port && c->type == type)
			return c;
	}
	return NULL;
}

/* Ask the daemon for a channel to the listener on @cid:@port. */
static int
chan_open(struct dialer *d, const struct vsk *v, uint32_t cid, uint32_t port, struct chan **out)
{
	struct wire_channel w = { .dst_cid = cid, .dst_port = port, .type = (uint32_t)v->type };
	struct wire_msg rep;
	struct chan *c = NULL;
	void *bl;
	int err;

	err = ctl_rpc(&d->ctl, WIRE_CHANNEL, &w, NULL, 0, &rep, v->connect_timeout_ns);
	if (err)
		return err;
	err = shm_map(rep.fds[1], WIRE_BACKLOG_BYTES, 1, &bl);
	close(rep.fds[1]);
	if (err) {
		close(rep.fds[0]);
		return -EPROTO;
	}
	for (unsigned k = 0; k < DIAL_CHANS && !c; k++)
		if (d->chans[k].fd < 0)
			c = &d->chans[k];
	if (!c) {
		c = &d->chans[d->evict++ % DIAL_CHANS];
		chan_drop(c);
	}
	*c = (struct chan){ .fd = rep.fds[0], .serial = lib_serial(), .cid = cid, .port = port,
			    .type = w.type,
			    .src_cid = w.out_cid, .backlog = w.out_backlog, .bl = bl,
			    .buf_size = w.buf_size, .buf_min = w.buf_min, .buf_max = w.buf_max };
	*out = c;
	return 0;
}

static int
port_put(struct dialer *d, uint32_t port)
{
	if (d->nports == d->ports_cap) {
		size_t cap = d->ports_cap ? d->ports_cap * 2 : 64;
		uint32_t *p = realloc(d->ports, cap * sizeof(*p));

		if (!p)
			return -ENOMEM; /* the port stays leased, unused, until the dialer goes */
		d->ports = p;
		d->ports_cap = cap;
	}
	d->ports[d->nports++] = port;
	return 0;
}

static int
port_get(struct dialer *d, uint32_t *port)
{
	struct wire_lease w = { .count = DIAL_LEASE };
	int err;

	if (!d->nports) {
		err = ctl_rpc(&d->ctl, WIRE_LEASE, &w, NULL, 0, NULL, -1);
		if (err)
			return err;
		for (uint32_t i = 0; i < w.out_count && i < WIRE_LEASE_MAX; i++)
			port_put(d, w.out_ports[i]);
		if (!d->nports)
			return -EADDRNOTAVAIL;
	}
	*port = d->ports[--d->nports];
	return 0;
}

/* The queue size VMCI would agree on: ours, unless the listener's range excludes it. */
static uint64_t
chan_size(const struct chan *c, uint64_t want)
{
	uint64_t size = qp_size_round(want);

	if (size != qp_size_round(c->buf_size) && (size < c->buf_min || size > c->buf_max))
		size = qp_size_round(c->buf_size);
	return size;
}

/*
 * Pass one connection on @c: on a parked queue pair of the channel if one
 * is ready (REDIAL), else a new one (DIAL). 0, -EPIPE (the channel is dead)
 * or another -errno.
 */
static int
dial_once(struct chan *c, uint32_t port, uint64_t size, struct qp **out, uint32_t *id)
{
	struct wire_hdr h = { .type = WIRE_DIAL, .len = sizeof(struct wire_dial) };
	struct wire_dial w = { .src_port = port, .size = size };
	struct wire_redial rw = { .src_port = port };
	struct qp_renewal r;
	struct qp_fds peer;
	struct qp *q;
	ssize_t n;
	int err;

	if (!wire_backlog_take(c->bl, c->backlog))
		return -ECONNREFUSED;
	if ((q = pool_take_reusable(c->serial, size, id)) && !qp_renew(q, &r)) {
		h = (struct wire_hdr){ .type = WIRE_REDIAL, .len = sizeof(rw) };
		rw.id = *id;
		rw.gen = r.gen;
		rw.start[0] = r.start[0];
		rw.start[1] = r.start[1];
		n = wire_send(c->fd, &h, &rw, NULL, 0);
		if (n >= 0)
			atomic_fetch_add_explicit(&reuses, 1, memory_order_relaxed);
	} else {
		qp_close(q);
		if ((err = qp_create_lent(size, size, &q, &peer))) {
			wire_backlog_give(c->bl);
			return err;
		}
		w.id = *id = c->next_id++;
		n = wire_send(c->fd, &h, &w,
			      (int[]){ peer.mem, peer.wake, peer.peer_wake, peer.alive }, 4);
		close(peer.mem), close(peer.alive); /* the eventfds are lent: the queue pair's */
	}
	if (n < 0) {
		qp_close(q);
		wire_backlog_give(c->bl);
		/* Full: the listener is not accepting, as a full backlog. */
		return n == -EAGAIN ? -ECONNREFUSED : -EPIPE;
	}
	*out = q;
	return 0;
}

int
dial_connect(struct vsk *v, const struct sockaddr_vm *a, struct qp **out)
{
	struct wire_dial_slot *t;
	struct dialer *d;
	struct chan *c;
	uint32_t port, slot, id;
	int err;

	pthread_once(&dial_init_once, dial_init);
	pthread_mutex_lock(&dial_lock);
	if ((err = dialer_get(v, &d)))
		goto out;
	if ((err = port_get(d, &port)))
		goto out;
	for (int attempt = 0;; attempt++) {
		c = chan_find(d, a->svm_cid, a->svm_port, (uint32_t)v->type);
		if (!c && (err = chan_open(d, v, a->svm_cid, a->svm_port, &c)))
			break;
		err = dial_once(c, port, chan_size(c, v->buf_size), out, &id);
		if (err != -EPIPE)
			break;
		/* The listener closed or lost the daemon: ask again (once). */
		chan_drop(c);
		if (attempt) {
			err = -ECONNREFUSED;
			break;
		}
	}
	if (err) {
		port_put(d, port);
		goto out;
	}
	v->cid = c->src_cid;
	v->port = port;
	v->dial_id = d->id;
	v->dial_epoch = d->epoch;
	v->park_serial = c->serial;
	v->park_id = id;
	slot = d->free_slots[--d->nfree_slots]; /* dialer_get() made sure of one */
	t = &d->table[slot];
	t->type = (uint32_t)v->type;
	t->port = port;
	t->peer_cid = a->svm_cid;
	t->peer_port = a->svm_port;
	t->size = qp_tx_size(*out);
	atomic_store_explicit(&t->tx_bytes, 0, memory_order_relaxed);
	atomic_store_explicit(&t->rx_bytes, 0, memory_order_relaxed);
	atomic_store_explicit(&t->state, 1, memory_order_release);
	v->slot = t;
out:
	pthread_mutex_unlock(&dial_lock);
	return err;
}

void
dial_release(struct vsk *v)
{
	struct dialer *d = NULL;

	if (!v->dial_id)
		return;
	pthread_mutex_lock(&dial_lock);
	for (unsigned i = 0; i < DIALERS; i++)
		if (dialers[i] && dialers[i]->id == v->dial_id)
			d = dialers[i];
	if (d) {
		if (v->slot) {
			atomic_store_explicit(&v->slot->state, 0, memory_order_release);
			d->free_slots[d->nfree_slots++] = (uint32_t)(v->slot - d->table);
		}
		/* A port leased before the daemon restarted is not ours to use again. */
		if (v->dial_epoch == d->epoch && d->registered)
			port_put(d, v->port);
	}
	v->dial_id = 0;
	v->slot = NULL;
	pthread_mutex_unlock(&dial_lock);
}
