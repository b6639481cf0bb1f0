/* SPDX-License-Identifier: MIT */
/*
 * Datagram router thread (see dgram.h). Adaptive polling: while any ring
 * had work in the last DGRAM_SPIN_NS the thread keeps polling the rings;
 * after that it arms every ring (the sockets then signal its epoll set when
 * they publish) and sleeps. Senders never make a system call while the
 * router is polling.
 *
 * Threat model: each socket's outbound ring is written by an untrusted
 * process. The queue pair validates indices and record framing; here every
 * record must hold a whole struct wire_dgram and at most WIRE_DGRAM_MAX
 * bytes of payload, or the socket is cut off. The source address of what
 * is forwarded comes from the daemon's records, never from the ring.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/clock.h"
#include "common/cmdq.h"
#include "common/wire.h"
#include "dgram.h"
#include "vmfabric/qp.h"

#define DGRAM_BATCH 64
#define DGRAM_SPIN_NS 50000
#define DGRAM_HOLD_NS 1000000 /* 1 ms: a live receiver frees room sooner */

/* ---------------------------------------------------------------------- */
/* (cid, port) -> endpoint, owned by the thread */

static size_t
slot(const struct dgram_router *d, uint32_t cid, uint32_t port)
{
	uint64_t k = ((uint64_t)cid << 32 | port) * 0x9e3779b97f4a7c15ull;

	return (size_t)(k >> 40) & (d->nhash - 1);
}

static struct dgram_ep *
lookup(const struct dgram_router *d, uint32_t cid, uint32_t port)
{
	for (struct dgram_ep *e = d->hash[slot(d, cid, port)]; e; e = e->hnext)
		if (e->cid == cid && e->port == port && !e->dead)
			return e;
	return NULL;
}

static void
unhash(struct dgram_router *d, struct dgram_ep *e)
{
	for (struct dgram_ep **p = &d->hash[slot(d, e->cid, e->port)]; *p; p = &(*p)->hnext)
		if (*p == e) {
			*p = e->hnext;
			return;
		}
}

static int
add(struct dgram_router *d, struct dgram_ep *e)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = e };
	size_t h = slot(d, e->cid, e->port);

	if (d->n == d->cap) {
		size_t cap = d->cap ? d->cap * 2 : 64;
		struct dgram_ep **p = realloc(d->all, cap * sizeof(*p));
		if (!p)
			return -ENOMEM;
		d->all = p;
		d->cap = cap;
	}
	if (epoll_ctl(d->ep, EPOLL_CTL_ADD, qp_poll_fd(e->qp), &ev) < 0)
		return -errno;
	d->all[d->n++] = e;
	e->hnext = d->hash[h];
	d->hash[h] = e;
	atomic_fetch_add(&d->endpoints, 1);
	return 0;
}

static void drop_held(struct dgram_router *d, struct dgram_ep *e);

static void
drop_ep(struct dgram_router *d, struct dgram_ep *e)
{
	for (size_t i = 0; i < d->n; i++)
		if (d->all[i] == e) {
			d->all[i] = d->all[--d->n];
			break;
		}
	unhash(d, e);
	epoll_ctl(d->ep, EPOLL_CTL_DEL, qp_poll_fd(e->qp), NULL);
	if (e->holding)
		drop_held(d, e);
	qp_close(e->qp);
	free(e->held);
	free(e);
	atomic_fetch_sub(&d->endpoints, 1);
}

static int drain(struct dgram_router *d, struct dgram_ep *e, int64_t now);

/* Commands from the control plane (common/cmdq.h), run between batches. */
static int
do_add(void *ctx, void *arg)
{
	return add(ctx, arg); /* the caller frees the endpoint if it failed */
}

static int
do_remove(void *ctx, void *arg)
{
	struct dgram_router *d = ctx;
	struct dgram_ep *e = arg;

	/*
	 * What the socket sent before it closed goes out first, as UDP's
	 * would: a sender that closes right after its last send loses nothing
	 * (a full receiver still drops).
	 */
	while (!e->dead && !e->holding && drain(d, e, clock_ns()) > 0)
		;
	drop_ep(d, e);
	return 0;
}

static int
do_stop(void *ctx, void *arg)
{
	(void)arg;
	((struct dgram_router *)ctx)->stop = true;
	return 0;
}

/* ---------------------------------------------------------------------- */

/* The socket a datagram of @e to @to goes to, if any. */
static struct dgram_ep *
dest(const struct dgram_router *d, const struct dgram_ep *e, const struct wire_dgram *to)
{
	return lookup(d, to->cid == VMCI_CID_LOCAL ? e->cid : to->cid, to->port);
}

/*
 * Deliver one datagram to @dst (NULL: nobody bound there). Returns 0 when
 * it is done with (delivered, or refused and counted) and -EAGAIN when the
 * destination's ring is full.
 */
static int
forward(struct dgram_router *d, struct dgram_ep *src, struct dgram_ep *dst, const uint8_t *buf,
	size_t len)
{
	struct wire_dgram from = { .cid = src->cid, .port = src->port };
	struct iovec iov[2] = { { &from, sizeof(from) }, { (void *)(uintptr_t)buf, len } };
	ssize_t r;

	if (!dst) {
		atomic_fetch_add_explicit(&src->tx_no_port, 1, memory_order_relaxed);
		return 0;
	}
	if (vmci_policy(&src->pol, &dst->pol)) {
		atomic_fetch_add_explicit(&src->tx_refused, 1, memory_order_relaxed);
		log_rl(LOG_LVL_WARN, "dgram: refused %u:%u -> %u:%u (VMCI policy)", src->cid,
		       src->port, dst->cid, dst->port);
		return 0;
	}
	r = qp_msg_sendv(dst->qp, iov, 2, QP_DONTWAIT);
	if (r == -EAGAIN)
		return -EAGAIN;
	if (r < 0) { /* that socket's ring is gone or broken */
		atomic_fetch_add_explicit(&dst->rx_drops, 1, memory_order_relaxed);
		atomic_fetch_add_explicit(&d->drops, 1, memory_order_relaxed);
		return 0;
	}
	atomic_fetch_add_explicit(&dst->rx_msgs, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&dst->rx_bytes, len, memory_order_relaxed);
	atomic_fetch_add_explicit(&d->forwarded, 1, memory_order_relaxed);
	return 0;
}

/* @e no longer holds a datagram (delivered or dropped). */
static void
unhold(struct dgram_router *d, struct dgram_ep *e)
{
	struct dgram_ep *dst = dest(d, e, &e->held_to);

	if (dst && dst->waiters)
		dst->waiters--;
	e->holding = false;
}

static void
drop_held(struct dgram_router *d, struct dgram_ep *e)
{
	struct dgram_ep *dst = dest(d, e, &e->held_to);

	if (dst)
		atomic_fetch_add_explicit(&dst->rx_drops, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&d->drops, 1, memory_order_relaxed);
	unhold(d, e);
}

/* Retry a held datagram. Returns true when the socket may be drained again. */
static bool
retry_held(struct dgram_router *d, struct dgram_ep *e, int64_t now)
{
	if (!e->holding)
		return true;
	if (forward(d, e, dest(d, e, &e->held_to), e->held, e->held_len) == 0) {
		unhold(d, e);
		return true;
	}
	if (now - e->held_since >= DGRAM_HOLD_NS) {
		drop_held(d, e);
		return true;
	}
	return false;
}

/* Keep a datagram for @dst (not NULL) to retry: see struct dgram_ep. */
static void
hold(struct dgram_ep *e, struct dgram_ep *dst, const struct wire_dgram *to, const uint8_t *buf,
     size_t len)
{
	if (!e->held)
		e->held = malloc(WIRE_DGRAM_MAX);
	if (!e->held)
		return; /* no memory: dropped */
	memcpy(e->held, buf, len);
	e->held_len = len;
	e->held_to = *to;
	e->held_since = clock_ns();
	e->holding = true;
	dst->waiters++;
}

/* Drain up to DGRAM_BATCH records of one socket. Returns how many. */
static int
drain(struct dgram_router *d, struct dgram_ep *e, int64_t now)
{
	static _Thread_local uint8_t buf[WIRE_DGRAM_MAX];
	struct wire_dgram to;
	struct iovec iov[2] = { { &to, sizeof(to) }, { buf, sizeof(buf) } };
	struct dgram_ep *dst;
	size_t ml;
	int n;

	if (!retry_held(d, e, now))
		return 0;
	for (n = 0; n < DGRAM_BATCH; n++) {
		ssize_t r = qp_msg_recvv(e->qp, iov, 2, &ml, QP_DONTWAIT);

		if (r == -EAGAIN)
			break;
		if (r < 0 || ml < sizeof(to) || ml > sizeof(to) + WIRE_DGRAM_MAX) {
			if (r != -ESHUTDOWN)
				log_rl(LOG_LVL_WARN, "dgram: socket %u:%u cut off: %s", e->cid,
				       e->port,
				       r < 0 ? (qp_broken_reason(e->qp) ?: "ring error")
					     : "malformed datagram record");
			e->dead = true;
			epoll_ctl(d->ep, EPOLL_CTL_DEL, qp_poll_fd(e->qp), NULL);
			break;
		}
		atomic_fetch_add_explicit(&e->tx_msgs, 1, memory_order_relaxed);
		atomic_fetch_add_explicit(&e->tx_bytes, ml - sizeof(to), memory_order_relaxed);
		dst = dest(d, e, &to);
		/* Others wait for room there: this one waits behind them. */
		if ((dst && dst->waiters) || forward(d, e, dst, buf, ml - sizeof(to)) == -EAGAIN) {
			hold(e, dst, &to, buf, ml - sizeof(to));
			n++;
			break;
		}
	}
	return n;
}

static void
sleep_until_work(struct dgram_router *d)
{
	struct epoll_event ev[64];
	bool holding = false;
	int n;

	for (size_t i = 0; i < d->n; i++) {
		struct dgram_ep *e = d->all[i];

		if (e->dead)
			continue;
		if (e->holding) {
			/* Woken when the receiver makes room; retried every ms anyway. */
			struct dgram_ep *dst = dest(d, e, &e->held_to);

			if (!dst || qp_arm(dst->qp, QP_EV_WRITE))
				return; /* room already, or nowhere to go: retry now */
			holding = true;
			continue;
		}
		if (qp_arm(e->qp, QP_EV_READ))
			return; /* something arrived meanwhile */
	}
	n = epoll_wait(d->ep, ev, 64, holding ? 1 : -1);
	for (int i = 0; i < n; i++)
		if (ev[i].data.ptr)
			qp_ack(((struct dgram_ep *)ev[i].data.ptr)->qp);
}

static void *
dgram_main(void *arg)
{
	struct dgram_router *d = arg;
	int64_t idle_since = clock_ns();

	for (;;) {
		int work = 0;

		int64_t now = clock_ns();

		cmdq_run(&d->cmds, d);
		if (d->stop)
			break;
		for (size_t i = 0; i < d->n; i++)
			if (!d->all[i]->dead)
				work += drain(d, d->all[i], now);
		if (work) {
			idle_since = clock_ns();
			continue;
		}
		if (clock_ns() - idle_since < DGRAM_SPIN_NS)
			continue;
		sleep_until_work(d);
		idle_since = clock_ns();
	}
	while (d->n)
		drop_ep(d, d->all[0]);
	return NULL;
}

int
dgram_start(struct dgram_router *d)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
	int err;

	memset(d, 0, sizeof(*d));
	d->nhash = 4096;
	d->hash = calloc(d->nhash, sizeof(*d->hash));
	if ((err = cmdq_init(&d->cmds)))
		return err;
	d->ep = epoll_create1(EPOLL_CLOEXEC);
	if (!d->hash || d->ep < 0 || epoll_ctl(d->ep, EPOLL_CTL_ADD, d->cmds.ev, &ev) < 0)
		return -ENOMEM;
	err = pthread_create(&d->thread, NULL, dgram_main, d);
	return -err;
}

void
dgram_stop(struct dgram_router *d)
{
	if (cmdq_call(&d->cmds, do_stop, NULL) == 0)
		pthread_join(d->thread, NULL);
	cmdq_fini(&d->cmds);
	close(d->ep);
	free(d->hash);
	free(d->all);
}

int
dgram_add(struct dgram_router *d, struct dgram_ep *e)
{
	/*
	 * Wait for the router: the control plane answers DGRAM_OPEN (or a
	 * guest's relay RESPONSE) right after, and a datagram sent to the new
	 * socket at once must find it. The router applies commands between
	 * batches, within microseconds.
	 */
	int err = cmdq_call(&d->cmds, do_add, e);

	if (err)
		log_err("dgram: cannot add %u:%u: %s", e->cid, e->port, strerror(-err));
	return err;
}

void
dgram_remove(struct dgram_router *d, struct dgram_ep *e)
{
	if (cmdq_post(&d->cmds, do_remove, e) < 0)
		log_err("dgram: out of memory removing %u:%u", e->cid, e->port);
}
