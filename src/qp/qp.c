/* SPDX-License-Identifier: MIT */
/*
 * Queue pair data path: byte-stream and record operations on the two rings,
 * wakeup suppression and waiting.
 *
 * Threat model: the peer can write any byte of the shared mapping at any
 * time. This file therefore (1) keeps its own index privately and never reads
 * it back, (2) loads each peer index once per refresh with acquire semantics
 * and accepts it only if it moves forward and stays within the ring
 * (qp_rx_refresh / qp_tx_refresh), (3) copies record headers to the stack
 * before looking at them, (4) masks every offset with the private size.
 * Any violation makes the endpoint broken: every later call returns -EPROTO.
 *
 * Wakeups: a side about to sleep makes its line's wait sequence odd and
 * checks the ring again; the other side, after publishing an index, reads
 * the wait sequence and signals the eventfd once per odd value it sees. All
 * four accesses are seq_cst (a full barrier on the two stores). Either the sleeper sees the new index or the publisher sees the
 * sleeper (Dekker), so no wakeup is lost and no syscall is made while both
 * sides are busy.
 */
#include <errno.h>
#include <fcntl.h>
/* ThreadSanitizer does not model streaming stores: it checks the plain copy. */
#if defined(__SSE2__) && !defined(__SANITIZE_THREAD__)
#define QP_NT_STORES 1
#include <emmintrin.h>
#endif
#include <limits.h>
#include <stdio.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "qp_internal.h"
#include "common/clock.h"
#include "common/wake.h"

/* Spinning longer than this without progress starts yielding the CPU. */
#define QP_SPIN_YIELD_NS 50000

#define QP_ALIGN_UP(x, a) (((x) + (a)-1) & ~((uint64_t)(a)-1))

static inline void
cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ volatile("yield" ::: "memory");
#endif
}

static int
qp_break(struct qp *qp, const char *what, uint64_t seen, uint64_t expected)
{
	if (!qp->err) {
		qp->err = -EPROTO;
		snprintf(qp->why, sizeof(qp->why), "%s (saw %llu, expected %llu)", what,
			 (unsigned long long)seen, (unsigned long long)expected);
	}
	return -EPROTO;
}

/*
 * Load the peer's tail once and validate it. Pairs with the release store
 * of the tail in qp_tx_publish() on the peer. Returns bytes readable.
 */
static int64_t
qp_rx_refresh(struct qp *qp)
{
	struct qp_dir *d = &qp->rx;
	uint64_t tail = atomic_load_explicit(&d->q->prod.index, memory_order_seq_cst);

	if ((int64_t)(tail - d->peer) < 0)
		return qp_break(qp, "peer tail moved backwards", tail, d->peer);
	if (tail - d->pos > d->size)
		return qp_break(qp, "peer tail beyond ring size", tail, d->pos + d->size);
	d->peer = tail;
	return (int64_t)(tail - d->pos);
}

/*
 * Load the peer's head once and validate it. Pairs with the release store
 * of the head in qp_rx_publish() on the peer. Returns bytes writable.
 */
static int64_t
qp_tx_refresh(struct qp *qp)
{
	struct qp_dir *d = &qp->tx;
	uint64_t head = atomic_load_explicit(&d->q->cons.index, memory_order_seq_cst);

	if ((int64_t)(head - d->peer) < 0)
		return qp_break(qp, "peer head moved backwards", head, d->peer);
	if (d->pos - head > d->size)
		return qp_break(qp, "peer head ahead of tail", head, d->pos);
	d->peer = head;
	return (int64_t)(d->size - (d->pos - head));
}

void
qp_guard_wakeups(void)
{
	wake_guard();
}

/*
 * Wake the peer. Its eventfd's file description is shared with the peer,
 * which could have made it blocking and filled its counter to make this
 * write wait for ever (common/wake.h): under the guard (the daemon) such a
 * write is interrupted and the queue pair broken.
 */
static void
qp_signal(struct qp *qp)
{
	int err;

	if (qp->peer_wake < 0)
		return;
	err = wake_fd(qp->peer_wake);
	if (!err)
		qp->st.signals++;
	else if (err == -EINTR && !qp->err) {
		qp->err = -EPROTO;
		snprintf(qp->why, sizeof(qp->why), "peer made its wakeup descriptor block");
	}
}

/* After publishing on line @mine, wake the peer if it sleeps on @theirs. */
static void
qp_kick(struct qp *qp, struct qp_dir *d, struct qp_line *theirs)
{
	uint32_t w;

	/*
	 * Our index store (seq_cst) then this load (seq_cst), against the
	 * sleeper's wait store then index load: one of us sees the other.
	 */
	w = atomic_load_explicit(&theirs->wait, memory_order_seq_cst);
	if ((w & 1) && w != d->signalled) {
		d->signalled = w;
		qp_signal(qp);
	}
}

static void
qp_tx_publish(struct qp *qp)
{
	struct qp_dir *d = &qp->tx;

	/*
	 * Release (implied by seq_cst): the bytes copied into the ring become
	 * visible before the tail. Pairs with qp_rx_refresh() on the peer.
	 */
	atomic_store_explicit(&d->q->prod.index, d->pos, memory_order_seq_cst);
	qp_kick(qp, d, &d->q->cons);
}

static void
qp_rx_publish(struct qp *qp)
{
	struct qp_dir *d = &qp->rx;

	/*
	 * Release (implied by seq_cst): our reads of the bytes complete before
	 * the head moves. Pairs with qp_tx_refresh() on the peer.
	 */
	atomic_store_explicit(&d->q->cons.index, d->pos, memory_order_seq_cst);
	qp_kick(qp, d, &d->q->prod);
}

/* Peer liveness: the alive socket reports HUP when the peer's end is closed. */
static bool
qp_check_alive(struct qp *qp)
{
	struct pollfd p = { .fd = qp->alive, .events = POLLIN };

	if (qp->peer_gone)
		return false;
	if (qp->alive >= 0 && poll(&p, 1, 0) == 1)
		qp->peer_gone = true;
	return !qp->peer_gone;
}

bool
qp_peer_alive(struct qp *qp)
{
	return qp_check_alive(qp);
}

/*
 * Peer's CLOSED flag on the line it owns. Acquire pairs with the release
 * store in qp_shutdown()/qp_close(), so once we see the flag we also see
 * every index the peer published before it.
 */
static bool
qp_rx_eof(struct qp *qp)
{
	struct qp_dir *d = &qp->rx;

	if (!d->peer_shut &&
	    qp__line_closed(qp, atomic_load_explicit(&d->q->prod.flags, memory_order_acquire)))
		d->peer_shut = true;
	return d->shut || d->peer_shut || qp->peer_gone;
}

static bool
qp_tx_epipe(struct qp *qp)
{
	struct qp_dir *d = &qp->tx;

	if (!d->peer_shut &&
	    qp__line_closed(qp, atomic_load_explicit(&d->q->cons.flags, memory_order_acquire)))
		d->peer_shut = true;
	return d->shut || d->peer_shut || qp->peer_gone;
}

/*
 * Is the condition a waiter wants true? READ: something to read or EOF;
 * WRITE: @min bytes of space, or EPIPE. Returns the events that are true,
 * or -EPROTO. The flags are loaded before the index (see qp_rx_eof).
 */
static int
qp_probe(struct qp *qp, unsigned ev, uint64_t min)
{
	unsigned ready = 0;
	int64_t n;
	bool end;

	if (qp->err)
		return qp->err;
	if (ev & QP_EV_READ) {
		end = qp_rx_eof(qp);
		n = qp_rx_refresh(qp);
		if (n < 0)
			return (int)n;
		if (n > 0 || end)
			ready |= QP_EV_READ;
	}
	if (ev & QP_EV_WRITE) {
		end = qp_tx_epipe(qp);
		n = qp_tx_refresh(qp);
		if (n < 0)
			return (int)n;
		if ((uint64_t)n >= min || end)
			ready |= QP_EV_WRITE;
	}
	return (int)ready;
}

/*
 * Publish that we sleep on the lines we wait on: the consumer line of rx
 * (waiting for data) and/or the producer line of tx (waiting for space).
 * The sequence becomes odd. The seq_cst store, followed by the seq_cst index
 * loads of the probe that the caller makes next, pairs with qp_kick().
 */
static void
qp_sleep_prepare(struct qp *qp, unsigned ev)
{
	if ((ev & QP_EV_READ) && !(qp->rx.my_wait & 1))
		atomic_store_explicit(&qp->rx.q->cons.wait, ++qp->rx.my_wait,
				      memory_order_seq_cst);
	if ((ev & QP_EV_WRITE) && !(qp->tx.my_wait & 1))
		atomic_store_explicit(&qp->tx.q->prod.wait, ++qp->tx.my_wait,
				      memory_order_seq_cst);
}

static void
qp_sleep_finish(struct qp *qp, unsigned ev)
{
	if ((ev & QP_EV_READ) && (qp->rx.my_wait & 1))
		atomic_store_explicit(&qp->rx.q->cons.wait, ++qp->rx.my_wait,
				      memory_order_relaxed);
	if ((ev & QP_EV_WRITE) && (qp->tx.my_wait & 1))
		atomic_store_explicit(&qp->tx.q->prod.wait, ++qp->tx.my_wait,
				      memory_order_relaxed);
}

/*
 * Spin on the shared indices until the condition holds (0), the deadline
 * passes (-ETIMEDOUT) or the spin budget ends (1: go to sleep).
 */
static int
qp_spin(struct qp *qp, unsigned ev, uint64_t min, int64_t deadline, int64_t spin_until)
{
	int64_t t, yield_after = 0;
	int r;

	for (unsigned i = 1;; i++) {
		r = qp_probe(qp, ev, min);
		if (r != 0)
			return r < 0 ? r : 0;
		cpu_relax();
		if (i % 256)
			continue;
		t = clock_ns();
		if (t >= deadline)
			return -ETIMEDOUT;
		if (t >= spin_until)
			return 1;
		if (i % 4096 == 0 && !qp_check_alive(qp))
			return 0;
		/*
		 * A long wait may mean the peer is not running at all (more
		 * spinners than CPUs): give the CPU away now and then.
		 */
		if (!yield_after)
			yield_after = t + QP_SPIN_YIELD_NS;
		else if (t >= yield_after)
			sched_yield();
	}
}

/*
 * Sleep on the endpoint's epoll set: the wake eventfd, edge-triggered, so
 * every signal is one edge and the counter never needs a read() to reset it
 * (one system call per sleep), and the liveness socket.
 */
static int
qp_sleep(struct qp *qp, unsigned ev, uint64_t min, int64_t deadline)
{
	struct epoll_event e[2];
	struct timespec ts, *tsp = NULL;
	int64_t left;
	int r, n;

	if (qp__ep(qp) < 0)
		return -EAGAIN; /* no descriptors: cannot sleep */
	qp_sleep_prepare(qp, ev);
	r = qp_probe(qp, ev, min);
	if (r != 0) {
		qp_sleep_finish(qp, ev);
		return r < 0 ? r : 0;
	}
	if (deadline != INT64_MAX) {
		left = deadline - clock_ns();
		if (left <= 0) {
			qp_sleep_finish(qp, ev);
			return -ETIMEDOUT;
		}
		ts.tv_sec = left / 1000000000;
		ts.tv_nsec = left % 1000000000;
		tsp = &ts;
	}
	qp->st.sleeps++;
	n = epoll_pwait2(qp->ep, e, 2, tsp, NULL);
	if (n < 0)
		r = -errno;
	else if (n == 0)
		r = -ETIMEDOUT;
	for (int i = 0; i < n; i++)
		if (e[i].data.u64 == QP_EPOLL_ALIVE)
			qp->peer_gone = true;
	qp_sleep_finish(qp, ev);
	return r;
}

/*
 * Wait for @ev according to the mode. Returns 0 when the caller should look
 * again, or -EAGAIN, -ETIMEDOUT, -EINTR, -EPROTO.
 */
static int
qp_wait(struct qp *qp, unsigned ev, uint64_t min, int flags, int64_t *deadline)
{
	enum qp_mode mode = (flags & QP_DONTWAIT) ? QP_NONBLOCK : qp->mode;
	int r;

	if (mode == QP_NONBLOCK) {
		if (ev & QP_EV_WRITE)
			qp->tx_want = min;
		return qp_check_alive(qp) ? -EAGAIN : 0;
	}
	if (*deadline == 0)
		*deadline = qp->timeout_ns < 0 ? INT64_MAX : clock_ns() + qp->timeout_ns;
	if (mode == QP_BUSY_POLL)
		return qp_spin(qp, ev, min, *deadline, INT64_MAX);
	if (qp->spin_ns) {
		r = qp_spin(qp, ev, min, *deadline, clock_ns() + qp->spin_ns);
		if (r <= 0)
			return r;
	}
	return qp_sleep(qp, ev, min, *deadline);
}

/* ---------------------------------------------------------------------- */
/* Copies between caller memory and the ring. Offsets are masked here only. */

struct qp_cursor {
	const struct iovec *iov;
	int cnt;
	size_t off; /* within iov[0] */
};

/*
 * Copies into the ring of QP_STREAM_MIN bytes or more bypass the cache
 * (non-temporal stores): a line the reader has just read is in its cache,
 * and a normal store would first have to take it back from there (one
 * cross-core round trip per 64 bytes, which is what bounds a ring small
 * enough to be reused while its lines are still warm on the other side);
 * a streaming store needs no ownership and the reader fetches the data
 * from memory in order, which its prefetcher does well. Small copies stay
 * in the cache: a request/response message is read at once, and from the
 * writer's cache that is quicker than from memory.
 */
#define QP_STREAM_MIN (1u << 10)

static void
qp_copy_in(uint8_t *dst, const uint8_t *src, size_t len)
{
#ifdef QP_NT_STORES
	size_t head, body;

	if (len < QP_STREAM_MIN) {
		memcpy(dst, src, len);
		return;
	}
	head = -(uintptr_t)dst & 63;
	memcpy(dst, src, head);
	dst += head, src += head, len -= head;
	body = len & ~(size_t)63;
	for (size_t i = 0; i < body; i += 64) {
		__m128i a = _mm_loadu_si128((const __m128i *)(src + i));
		__m128i b = _mm_loadu_si128((const __m128i *)(src + i + 16));
		__m128i c = _mm_loadu_si128((const __m128i *)(src + i + 32));
		__m128i e = _mm_loadu_si128((const __m128i *)(src + i + 48));
		_mm_stream_si128((__m128i *)(dst + i), a);
		_mm_stream_si128((__m128i *)(dst + i + 16), b);
		_mm_stream_si128((__m128i *)(dst + i + 32), c);
		_mm_stream_si128((__m128i *)(dst + i + 48), e);
	}
	/* Streaming stores are weakly ordered: they land before the index does. */
	_mm_sfence();
	memcpy(dst + body, src + body, len - body);
#else
	memcpy(dst, src, len);
#endif
}

static void
qp_ring_in(struct qp_dir *d, uint64_t at, const void *src, size_t len)
{
	size_t off = at & (d->size - 1), first = d->size - off;

	if (first >= len) {
		qp_copy_in(d->data + off, src, len);
	} else {
		qp_copy_in(d->data + off, src, first);
		qp_copy_in(d->data, (const uint8_t *)src + first, len - first);
	}
}

static void
qp_ring_out(struct qp_dir *d, uint64_t at, void *dst, size_t len)
{
	size_t off = at & (d->size - 1), first = d->size - off;

	if (first >= len) {
		memcpy(dst, d->data + off, len);
	} else {
		memcpy(dst, d->data + off, first);
		memcpy((uint8_t *)dst + first, d->data, len - first);
	}
}

/* Move @len bytes between the cursor and the ring starting at index @at. */
static void
qp_cursor_copy(struct qp_dir *d, uint64_t at, struct qp_cursor *c, size_t len, bool to_ring)
{
	while (len > 0) {
		size_t n = c->iov->iov_len - c->off;
		uint8_t *p = (uint8_t *)c->iov->iov_base + c->off;

		if (n == 0) {
			c->iov++;
			c->cnt--;
			c->off = 0;
			continue;
		}
		if (n > len)
			n = len;
		if (to_ring)
			qp_ring_in(d, at, p, n);
		else
			qp_ring_out(d, at, p, n);
		at += n;
		len -= n;
		c->off += n;
	}
}

static ssize_t
qp_iov_total(const struct iovec *iov, int cnt)
{
	size_t total = 0;

	if (cnt < 0)
		return -EINVAL;
	for (int i = 0; i < cnt; i++) {
		if (iov[i].iov_len > (size_t)SSIZE_MAX - total)
			return -EINVAL;
		total += iov[i].iov_len;
	}
	return (ssize_t)total;
}

/* ---------------------------------------------------------------------- */
/* Byte stream */

/*
 * A large stream copy is published in pieces: the reader starts on the
 * first piece while the writer copies the next, and space comes back to the
 * writer while the reader is still copying. With whole-call publishing a
 * 64 KiB write into a 128 KiB ring leaves each side waiting for the other's
 * whole copy, long enough to fall asleep (a wakeup costs more than the copy).
 */
#define QP_PUBLISH_CHUNK (16u << 10)

/*
 * Room to write: at least @min bytes, looking at the peer's real head only
 * when the cached one shows less than @want. Returns the space, or -EPIPE,
 * -EAGAIN, -ETIMEDOUT, -EINTR, -EPROTO.
 */
static int64_t
qp_tx_room(struct qp *qp, uint64_t want, uint64_t min, int flags)
{
	struct qp_dir *d = &qp->tx;
	int64_t deadline = 0, space;
	int r;

	for (;;) {
		/* The peer's CLOSED flag sits on the line we load to kick it anyway. */
		if (qp_tx_epipe(qp))
			return -EPIPE;
		space = (int64_t)(d->size - (d->pos - d->peer));
		if ((uint64_t)space < want) {
			space = qp_tx_refresh(qp);
			if (space < 0)
				return space;
		}
		if ((uint64_t)space >= min)
			return space;
		qp_flush(qp); /* the peer frees nothing it has not been shown */
		r = qp_wait(qp, QP_EV_WRITE, min, flags, &deadline);
		if (r < 0)
			return r;
	}
}

/*
 * Bytes to read: looks at the peer's real tail only when the cached one
 * shows less than @want. Returns the bytes (> 0), 0 at end of stream, or
 * -EAGAIN, -ETIMEDOUT, -EINTR, -EPROTO.
 */
static int64_t
qp_rx_data(struct qp *qp, uint64_t want, int flags)
{
	struct qp_dir *d = &qp->rx;
	int64_t deadline = 0, avail;
	bool end;
	int r;

	for (;;) {
		avail = (int64_t)(d->peer - d->pos);
		if ((uint64_t)avail < want) {
			end = qp_rx_eof(qp); /* the flag before the index: see qp_rx_eof() */
			avail = qp_rx_refresh(qp);
			if (avail < 0)
				return avail;
			if (avail == 0 && end)
				return 0;
		}
		if (avail > 0)
			return avail;
		r = qp_wait(qp, QP_EV_READ, 1, flags, &deadline);
		if (r < 0)
			return r;
	}
}

ssize_t
qp_writev(struct qp *qp, const struct iovec *iov, int iovcnt, int flags)
{
	struct qp_dir *d = &qp->tx;
	struct qp_cursor c = { iov, iovcnt, 0 };
	ssize_t total = qp_iov_total(iov, iovcnt);
	int64_t space;
	size_t n;

	if (total < 0)
		return total;
	if (qp->err)
		return qp->err;
	if (d->shut || qp->peer_gone)
		return -EPIPE;
	if (total == 0)
		return 0;
	space = qp_tx_room(qp, (uint64_t)total, 1, flags);
	if (space < 0)
		return space;
	n = (size_t)total < (uint64_t)space ? (size_t)total : (size_t)space;
	for (size_t done = 0, k; done < n; done += k) {
		k = n - done < QP_PUBLISH_CHUNK ? n - done : QP_PUBLISH_CHUNK;
		qp_cursor_copy(d, d->pos, &c, k, true);
		d->pos += k;
		qp_tx_publish(qp);
	}
	qp->st.tx_bytes += n;
	return (ssize_t)n;
}

ssize_t
qp_write(struct qp *qp, const void *buf, size_t len, int flags)
{
	struct iovec v = { (void *)(uintptr_t)buf, len };

	return qp_writev(qp, &v, 1, flags);
}

ssize_t
qp_readv(struct qp *qp, const struct iovec *iov, int iovcnt, int flags)
{
	struct qp_dir *d = &qp->rx;
	struct qp_cursor c = { iov, iovcnt, 0 };
	ssize_t total = qp_iov_total(iov, iovcnt);
	int64_t avail;
	size_t n;

	if (total < 0)
		return total;
	if (qp->err)
		return qp->err;
	if (total == 0)
		return 0;
	qp_msg_consume(qp); /* a read releases whatever was peeked */
	avail = qp_rx_data(qp, (uint64_t)total, flags);
	if (avail <= 0)
		return avail;
	n = (size_t)total < (uint64_t)avail ? (size_t)total : (size_t)avail;
	for (size_t done = 0, k; done < n; done += k) {
		k = n - done < QP_PUBLISH_CHUNK ? n - done : QP_PUBLISH_CHUNK;
		qp_cursor_copy(d, d->pos, &c, k, false);
		d->pos += k;
		qp_rx_publish(qp);
	}
	qp->st.rx_bytes += n;
	return (ssize_t)n;
}

ssize_t
qp_read(struct qp *qp, void *buf, size_t len, int flags)
{
	struct iovec v = { buf, len };

	return qp_readv(qp, &v, 1, flags);
}

/* ---------------------------------------------------------------------- */
/* Records */

size_t
qp_msg_max(const struct qp *qp)
{
	return qp->tx.size - sizeof(struct qp_msg_hdr);
}

ssize_t
qp_msg_sendv(struct qp *qp, const struct iovec *iov, int iovcnt, int flags)
{
	struct qp_dir *d = &qp->tx;
	struct qp_cursor c = { iov, iovcnt, 0 };
	ssize_t total = qp_iov_total(iov, iovcnt);
	struct qp_msg_hdr h = { 0 };
	int64_t space;
	uint64_t rec;

	if (total < 0)
		return total;
	if (qp->err)
		return qp->err;
	if ((size_t)total > qp_msg_max(qp))
		return -EMSGSIZE;
	if (d->shut || qp->peer_gone)
		return -EPIPE;
	rec = sizeof(h) + QP_ALIGN_UP((uint64_t)total, QP_MSG_ALIGN);
	space = qp_tx_room(qp, rec, rec, flags);
	if (space < 0)
		return space;
	h.len = (uint32_t)total;
	qp_ring_in(d, d->pos, &h, sizeof(h));
	qp_cursor_copy(d, d->pos + sizeof(h), &c, (size_t)total, true);
	d->pos += rec;
	qp->st.tx_bytes += (uint64_t)total;
	qp->st.tx_msgs++;
	if (flags & QP_MORE) {
		qp->unpublished = true;
	} else {
		qp->unpublished = false;
		qp_tx_publish(qp);
	}
	return total;
}

void
qp_flush(struct qp *qp)
{
	if (qp->unpublished) {
		qp->unpublished = false;
		qp_tx_publish(qp);
	}
}

ssize_t
qp_msg_send(struct qp *qp, const void *buf, size_t len, int flags)
{
	struct iovec v = { (void *)(uintptr_t)buf, len };

	return qp_msg_sendv(qp, &v, 1, flags);
}

ssize_t
qp_msg_recvv(struct qp *qp, const struct iovec *iov, int iovcnt, size_t *msg_len, int flags)
{
	struct qp_dir *d = &qp->rx;
	struct qp_cursor c = { iov, iovcnt, 0 };
	ssize_t total = qp_iov_total(iov, iovcnt);
	struct qp_msg_hdr h;
	int64_t avail;
	uint64_t rec;
	size_t n;

	if (total < 0)
		return total;
	if (qp->err)
		return qp->err;
	qp_msg_consume(qp); /* a read releases whatever was peeked */
	avail = qp_rx_data(qp, 1, flags);
	if (avail == 0)
		return -ESHUTDOWN;
	if (avail < 0)
		return avail;
	/* Records are published whole: anything shorter than one is a lie. */
	if ((uint64_t)avail < sizeof(h))
		return qp_break(qp, "partial record header", (uint64_t)avail, sizeof(h));
	qp_ring_out(d, d->pos, &h, sizeof(h)); /* copied once; only the copy is used */
	if (h.len > d->size - sizeof(h))
		return qp_break(qp, "record longer than the ring", h.len, d->size - sizeof(h));
	rec = sizeof(h) + QP_ALIGN_UP((uint64_t)h.len, QP_MSG_ALIGN);
	if (rec > (uint64_t)avail)
		return qp_break(qp, "record beyond published tail", rec, (uint64_t)avail);
	n = (size_t)total < h.len ? (size_t)total : h.len;
	qp_cursor_copy(d, d->pos + sizeof(h), &c, n, false);
	d->pos += rec;
	qp->st.rx_bytes += h.len;
	qp->st.rx_msgs++;
	qp_rx_publish(qp);
	if (msg_len)
		*msg_len = h.len;
	return (ssize_t)n;
}

ssize_t
qp_msg_recv(struct qp *qp, void *buf, size_t len, size_t *msg_len, int flags)
{
	struct iovec v = { buf, len };

	return qp_msg_recvv(qp, &v, 1, msg_len, flags);
}

ssize_t
qp_msg_peek(struct qp *qp, struct iovec v[2])
{
	struct qp_dir *d = &qp->rx;
	uint64_t at = d->pos + qp->peeked, rec, avail;
	struct qp_msg_hdr h;
	size_t off, first;

	if (qp->err)
		return qp->err;
	avail = d->peer - at;
	if (avail < sizeof(h)) {
		bool end = qp_rx_eof(qp);
		int64_t n = qp_rx_refresh(qp);

		if (n < 0)
			return n;
		avail = d->peer - at;
		if (avail == 0)
			return end ? -ESHUTDOWN : -EAGAIN;
		if (avail < sizeof(h))
			return qp_break(qp, "partial record header", avail, sizeof(h));
	}
	qp_ring_out(d, at, &h, sizeof(h)); /* copied once; only the copy is used */
	if (h.len > d->size - sizeof(h))
		return qp_break(qp, "record longer than the ring", h.len, d->size - sizeof(h));
	rec = sizeof(h) + QP_ALIGN_UP((uint64_t)h.len, QP_MSG_ALIGN);
	if (rec > avail)
		return qp_break(qp, "record beyond published tail", rec, avail);
	off = (at + sizeof(h)) & (d->size - 1);
	first = d->size - off;
	if (first >= h.len) {
		v[0] = (struct iovec){ d->data + off, h.len };
		v[1] = (struct iovec){ d->data, 0 };
	} else {
		v[0] = (struct iovec){ d->data + off, first };
		v[1] = (struct iovec){ d->data, h.len - first };
	}
	qp->peeked += rec;
	qp->st.rx_bytes += h.len;
	qp->st.rx_msgs++;
	return (ssize_t)h.len;
}

void
qp_msg_consume(struct qp *qp)
{
	if (!qp->peeked)
		return;
	qp->rx.pos += qp->peeked;
	qp->peeked = 0;
	qp_rx_publish(qp);
}

/* ---------------------------------------------------------------------- */
/* Event-loop integration */

unsigned
qp_arm(struct qp *qp, unsigned events)
{
	unsigned ready = 0;
	int r;

	/*
	 * No liveness check here: it would cost a system call per arm, and
	 * the liveness socket is in the epoll set behind qp_poll_fd(), so a
	 * dead peer wakes the caller, whose qp_ack() records it.
	 */
	events &= QP_EV_READ | QP_EV_WRITE;
	qp_sleep_prepare(qp, events);
	r = qp_probe(qp, events, qp->tx_want);
	if (r < 0)
		ready = QP_EV_ERR | QP_EV_READ | QP_EV_WRITE;
	else
		ready = (unsigned)r;
	if (qp->peer_gone || (qp->rx.peer_shut && qp->tx.peer_shut))
		ready |= QP_EV_HUP;
	if (ready)
		qp_sleep_finish(qp, events);
	return ready;
}

void
qp_ack(struct qp *qp)
{
	struct epoll_event e[2];
	int n = qp->ep >= 0 ? epoll_wait(qp->ep, e, 2, 0) : 0;

	for (int i = 0; i < n; i++)
		if (e[i].data.u64 == QP_EPOLL_ALIVE)
			qp->peer_gone = true;
	qp_sleep_finish(qp, QP_EV_READ | QP_EV_WRITE);
}

int
qp_poll_fd(struct qp *qp)
{
	return qp__ep(qp);
}

size_t
qp_rx_ready(struct qp *qp)
{
	int64_t n = qp_rx_refresh(qp);

	return n < 0 ? 0 : (size_t)n;
}

size_t
qp_tx_pending(struct qp *qp)
{
	int64_t n = qp_tx_refresh(qp);

	return n < 0 ? qp->tx.size : (size_t)(qp->tx.size - (uint64_t)n);
}

bool
qp_rx_at_eof(struct qp *qp)
{
	/* The flag before the index, as in qp_probe(): EOF only once drained. */
	bool end = qp_rx_eof(qp);

	return end && qp_rx_refresh(qp) == 0;
}

void
qp_set_lowat(struct qp *qp, size_t bytes)
{
	qp->tx_want = bytes < 1 ? 1 : bytes > qp->tx.size ? qp->tx.size : bytes;
}

/* Tell the peer about a shutdown: release pairs with qp_rx_eof/qp_tx_epipe. */
bool
qp__line_closed(const struct qp *qp, uint32_t flags)
{
	return (flags & QP_LINE_GONE) ||
	       ((flags & QP_LINE_CLOSED) && (flags >> QP_LINE_GEN_SHIFT) == qp->gen);
}

void
qp__shut(struct qp *qp, bool rd, bool wr)
{
	qp_flush(qp); /* records written with QP_MORE come before the end */
	if (wr && !qp->tx.shut) {
		qp->tx.shut = true;
		atomic_fetch_or_explicit(&qp->tx.q->prod.flags, QP_LINE_CLOSED,
					 memory_order_seq_cst);
	}
	if (rd && !qp->rx.shut) {
		qp->rx.shut = true;
		atomic_fetch_or_explicit(&qp->rx.q->cons.flags, QP_LINE_CLOSED,
					 memory_order_seq_cst);
	}
	/* Wake the peer whatever it sleeps on: it must see the flag now. */
	qp_signal(qp);
}

/* ---------------------------------------------------------------------- */
/* Reuse (see qp_park() in qp.h) */

#define QP_GEN_MASK ((1u << (32 - QP_LINE_GEN_SHIFT)) - 1)

void
qp_park(struct qp *qp)
{
	qp_msg_consume(qp);
	qp__shut(qp, true, true);
	if (!qp->ep_owned)
		qp->ep = -1; /* the caller's set, closed with its socket */
	qp->mode = QP_BLOCKING;
	qp->timeout_ns = -1;
	qp->spin_ns = QP_SPIN_DEFAULT_NS;
	qp->tx_want = 1;
}

bool
qp_reusable(struct qp *qp)
{
	uint32_t closed = qp->gen << QP_LINE_GEN_SHIFT | QP_LINE_CLOSED;

	/* Exactly closed in this generation: not GONE, not scribbled. */
	return !qp->err && !qp->peer_gone && qp->tx.shut && qp->rx.shut &&
	       atomic_load_explicit(&qp->tx.q->cons.flags, memory_order_acquire) == closed &&
	       atomic_load_explicit(&qp->rx.q->prod.flags, memory_order_acquire) == closed;
}

/* Open generation @gen on our two lines, for the peer to see. */
static void
qp_open_gen(struct qp *qp, uint32_t gen)
{
	qp->gen = gen;
	qp->peeked = 0; /* skipped with the rest of the old generation */
	qp->tx.shut = qp->rx.shut = false;
	qp->tx.peer_shut = qp->rx.peer_shut = false;
	atomic_store_explicit(&qp->tx.q->prod.flags, gen << QP_LINE_GEN_SHIFT, memory_order_seq_cst);
	atomic_store_explicit(&qp->rx.q->cons.flags, gen << QP_LINE_GEN_SHIFT, memory_order_seq_cst);
}

int
qp_renew(struct qp *qp, struct qp_renewal *r)
{
	int64_t left;

	if (!qp_reusable(qp))
		return -EBUSY;
	/* The peer's final tail (it parked: it writes no more): skip what is unread. */
	left = qp_rx_refresh(qp);
	if (left < 0)
		return (int)left;
	qp->peeked = 0;
	qp->rx.pos = qp->rx.peer;
	qp_rx_publish(qp);
	qp_open_gen(qp, (qp->gen + 1) & QP_GEN_MASK);
	*r = (struct qp_renewal){ .gen = qp->gen, .start = { qp->tx.pos, qp->rx.pos } };
	return 0;
}

int
qp_follow(struct qp *qp, const struct qp_renewal *r)
{
	struct qp_dir *d = &qp->rx;
	int64_t avail;

	if (qp->err || !qp->tx.shut || !qp->rx.shut)
		return -EBUSY;
	if (r->gen != ((qp->gen + 1) & QP_GEN_MASK) || r->start[1] != qp->tx.pos)
		return qp_break(qp, "renewal does not follow our generation or tail", r->gen,
				(qp->gen + 1) & QP_GEN_MASK);
	/* Side 0's new start lies between what we read and what it has written. */
	avail = qp_rx_refresh(qp);
	if (avail < 0)
		return (int)avail;
	if (r->start[0] - d->pos > (uint64_t)avail)
		return qp_break(qp, "renewal starts outside what the peer wrote", r->start[0],
				d->peer);
	qp->peeked = 0;
	d->pos = r->start[0];
	qp_rx_publish(qp);
	qp_open_gen(qp, r->gen);
	return 0;
}
