/* SPDX-License-Identifier: MIT */
/*
 * vmfabric queue pair: two single-producer single-consumer byte rings in one
 * sealed memfd, shared by two endpoints that do not trust each other.
 *
 * This is the transport of VMCI-style stream and seqpacket sockets: each
 * connection owns one queue pair (128 KiB per direction by default, as in the
 * VMCI document) and data moves with two copies (writer into the ring, ring
 * into the reader) and no system call while both sides are busy.
 *
 * The shared-memory layout below is an ABI between processes. Every field a
 * peer writes is read once, validated against this endpoint's private copy
 * and, if impossible, turns the queue pair into a broken state (-EPROTO).
 * Nothing in shared memory is ever used as a pointer or an unchecked offset.
 */
#ifndef VMFABRIC_QP_H
#define VMFABRIC_QP_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

/*
 * Shared memory layout (all offsets from the start of the memfd):
 *
 *   0                 PAGE             2*PAGE            2*PAGE+S0
 *   +-----------------+-----------------+-----------------+-----------------+----------------+
 *   | struct qp_meta  | queue 0 header  | queue 0 data    | queue 1 header  | queue 1 data   |
 *   | (creator, once) | struct qp_queue | S0 bytes        | struct qp_queue | S1 bytes       |
 *   +-----------------+-----------------+-----------------+-----------------+----------------+
 *
 * The creator (side 0) produces into queue 0 and consumes queue 1; the
 * attacher (side 1) does the opposite. S0 and S1 are powers of two between
 * QP_SIZE_MIN and QP_SIZE_MAX. The memfd is sealed against shrinking and
 * growing, so a peer cannot make the other side fault (SIGBUS) by truncating.
 *
 * Indices are free-running 64-bit byte counts, never offsets: the byte at
 * count n lives at data[n & (S - 1)]; used = tail - head; 0 <= used <= S.
 * A queue is empty when head == tail and full when tail - head == S.
 */
#define QP_PAGE 4096u
#define QP_SIZE_MIN (4u << 10)
#define QP_SIZE_MAX (64u << 20)
#define QP_SIZE_DEFAULT (128u << 10)
#define QP_MAGIC 0x31505156u /* "VQP1" little-endian */
#define QP_VERSION 1u

/* First page. Written by the creator before the memfd is handed over. */
struct qp_meta {
	uint32_t magic;	  /* QP_MAGIC */
	uint32_t version; /* QP_VERSION */
	uint64_t size[2]; /* data bytes of queue 0 and queue 1 */
};

/*
 * Bits of qp_line.flags. A queue pair can carry one connection after
 * another between the same two endpoints (qp_park(), qp_renew()); each is
 * a generation, and CLOSED counts only for the generation it names.
 */
#define QP_LINE_CLOSED 0x1u /* the owner is done with this generation */
#define QP_LINE_GONE 0x2u   /* the owner closed the queue pair for good */
#define QP_LINE_GEN_SHIFT 2 /* the owner's generation, modulo 2^30 */

/*
 * One cache-line-sized block owned by one endpoint. The producer owns
 * queue.prod and the consumer owns queue.cons; each writes only its own.
 */
struct qp_line {
	_Atomic uint64_t index; /* prod: tail (bytes published); cons: head (bytes released) */
	_Atomic uint32_t flags; /* QP_LINE_* */
	/*
	 * Sleep sequence: odd while the owner is (about to be) asleep on its
	 * eventfd waiting for the other side (cons: for data; prod: for
	 * space). The other side signals once per odd value it sees.
	 */
	_Atomic uint32_t wait;
	uint8_t pad[128 - 16];
};

/*
 * Queue header, one page. prod and cons are 128 bytes apart so that the two
 * writers never share a cache line, nor an adjacent-line prefetch pair.
 */
struct qp_queue {
	struct qp_line prod; /* written by the producer only */
	struct qp_line cons; /* written by the consumer only */
};

_Static_assert(sizeof(struct qp_meta) == 24, "qp_meta layout");
_Static_assert(sizeof(struct qp_line) == 128, "qp_line layout");
_Static_assert(offsetof(struct qp_queue, cons) == 128, "qp_queue layout");
_Static_assert(sizeof(struct qp_queue) <= QP_PAGE, "qp_queue fits its page");

/*
 * Record framing for message operations (datagram, seqpacket): an 8-byte
 * header then the payload, padded to 8 bytes. A record is published whole:
 * the reader never sees half of one.
 */
struct qp_msg_hdr {
	uint32_t len;	/* payload bytes */
	uint32_t flags; /* reserved, written as 0, ignored by readers */
};
_Static_assert(sizeof(struct qp_msg_hdr) == 8, "qp_msg_hdr layout");
#define QP_MSG_ALIGN 8u

/* The queue size for a wanted buffer size: the next power of two, clamped. */
static inline size_t
qp_size_round(uint64_t want)
{
	size_t p = QP_SIZE_MIN;

	while (p < want && p < QP_SIZE_MAX)
		p <<= 1;
	return p;
}

/* Total memfd size for the given queue sizes. */
static inline size_t
qp_layout_size(size_t s0, size_t s1)
{
	return 3 * (size_t)QP_PAGE + s0 + s1;
}

/* ---------------------------------------------------------------------- */
/* Endpoint API. All functions return 0 / count on success, -errno on error. */

struct qp;

/*
 * The descriptors an endpoint needs. For the creator's peer, these are what
 * a broker passes over SCM_RIGHTS (or a child inherits).
 */
struct qp_fds {
	int mem;	/* sealed memfd with the layout above */
	int wake;	/* eventfd this endpoint sleeps on */
	int peer_wake;	/* eventfd the peer sleeps on */
	int alive;	/* socket that reports HUP when the peer is gone, or -1 */
};

enum qp_mode {
	QP_BLOCKING,  /* sleep on the eventfd when the ring is empty / full */
	QP_NONBLOCK,  /* return -EAGAIN instead of waiting */
	QP_BUSY_POLL, /* spin on the shared indices, never sleep */
};

/* Per-call flag: do not wait, whatever the mode (like MSG_DONTWAIT). */
#define QP_DONTWAIT 0x1
/*
 * qp_msg_sendv() flag: more records follow; publish them together at the
 * next call without it, or at qp_flush() (like MSG_MORE). The peer sees
 * nothing of them until then.
 */
#define QP_MORE 0x2
void qp_flush(struct qp *qp);

/*
 * qp_create() - make a queue pair and become its side 0.
 * @produce_size: bytes of the queue this endpoint writes (power of two)
 * @consume_size: bytes of the queue this endpoint reads (power of two)
 * @qpp: the new endpoint
 * @peer: filled with fresh descriptors for side 1; the caller owns them and
 *        must close them once handed over (the peer-death signal relies on
 *        the peer's @alive being held by the peer only).
 *
 * Returns 0, -EINVAL for a size that is not a power of two in
 * [QP_SIZE_MIN, QP_SIZE_MAX], or -errno from memfd/mmap/eventfd.
 */
int qp_create(size_t produce_size, size_t consume_size, struct qp **qpp, struct qp_fds *peer);
/*
 * qp_create_lent() - the same for a caller that passes the descriptors on
 * at once (SCM_RIGHTS duplicates them anyway): @peer->wake and
 * @peer->peer_wake are this endpoint's own, lent, valid while it is open and
 * never to be closed by the caller; @peer->mem and @peer->alive are the
 * caller's to close as with qp_create(). Two descriptors fewer to make and
 * close per connection.
 */
int qp_create_lent(size_t produce_size, size_t consume_size, struct qp **qpp,
		   struct qp_fds *peer);

/*
 * qp_attach() - become side 1 of a queue pair made by qp_create().
 * Takes ownership of the four descriptors on success (closed by qp_close),
 * leaves them to the caller on failure. Validates the seals, the size of the
 * memfd and the layout the creator wrote: -EINVAL / -EPROTO when wrong.
 */
int qp_attach(const struct qp_fds *fds, struct qp **qpp);
/*
 * qp_create_pair() - both ends in this process (a relay that owns both, or
 * a test): side 0 produces @size0 bytes, side 1 @size1. 0 or -errno, with
 * nothing left open on failure.
 */
int qp_create_pair(size_t size0, size_t size1, struct qp **side0, struct qp **side1);

/* Close both directions, tell the peer, unmap and close descriptors. */
void qp_close(struct qp *qp);

/*
 * Unmap and close descriptors without telling the peer anything: for a
 * process that inherited an endpoint across fork() and must not end the
 * connection its parent still uses.
 */
void qp_detach(struct qp *qp);

/* SHUT_RD, SHUT_WR or SHUT_RDWR: the peer sees EOF (SHUT_WR) or EPIPE (SHUT_RD). */
int qp_shutdown(struct qp *qp, int how);
/*
 * For a process that must never wait on a peer (vmfabricd): from now on a
 * wakeup that the peer made block (its eventfd made blocking, its counter
 * filled) is interrupted after 20 ms by a per-thread timer's signal
 * (SIGRTMIN + 7, a handler that does nothing), and that queue pair breaks
 * with -EPROTO. Idempotent.
 */
void qp_guard_wakeups(void);

void qp_set_mode(struct qp *qp, enum qp_mode mode);
/* Deadline for a blocking or busy-polling call; negative: wait forever. */
void qp_set_timeout(struct qp *qp, int64_t timeout_ns);
/*
 * Spin this long on the shared indices before sleeping in blocking mode
 * (default QP_SPIN_DEFAULT_NS; 0: sleep at once). A sleep and its wakeup
 * cost tens of microseconds on a virtual machine, far more than a short
 * spin: without it, a stream of 64 KiB writes loses two thirds of its
 * throughput (bench/run qp, mode blocking_nospin).
 */
#define QP_SPIN_DEFAULT_NS 5000u
void qp_set_spin(struct qp *qp, uint32_t spin_ns);

/*
 * Byte stream. Write what fits / read what is there; a blocking call waits
 * for at least one byte. Returns the byte count; read returns 0 at EOF (peer
 * shut down or gone, and everything it sent has been read). Errors: -EAGAIN
 * (would wait), -ETIMEDOUT, -EPIPE (peer no longer reads, or gone), -EPROTO.
 */
ssize_t qp_write(struct qp *qp, const void *buf, size_t len, int flags);
ssize_t qp_writev(struct qp *qp, const struct iovec *iov, int iovcnt, int flags);
ssize_t qp_read(struct qp *qp, void *buf, size_t len, int flags);
ssize_t qp_readv(struct qp *qp, const struct iovec *iov, int iovcnt, int flags);

/*
 * Messages. A record is written whole or not at all; a record larger than
 * the ring (payload > qp_msg_max()) fails with -EMSGSIZE. A receive copies at
 * most @len bytes, discards the rest of the record and stores the record's
 * full length in *@msg_len (may be NULL). Returns the bytes copied (0 for an
 * empty record), or -ESHUTDOWN at end of stream: the peer shut down or is
 * gone and no record is left. Other errors as for the byte stream.
 */
ssize_t qp_msg_send(struct qp *qp, const void *buf, size_t len, int flags);
ssize_t qp_msg_sendv(struct qp *qp, const struct iovec *iov, int iovcnt, int flags);
ssize_t qp_msg_recv(struct qp *qp, void *buf, size_t len, size_t *msg_len, int flags);
ssize_t qp_msg_recvv(struct qp *qp, const struct iovec *iov, int iovcnt, size_t *msg_len,
		     int flags);
/* Largest payload a message may carry toward the peer. */
size_t qp_msg_max(const struct qp *qp);

/*
 * Event-loop integration. qp_poll_fd() is readable when the peer has done
 * something this endpoint asked to hear about. qp_arm() publishes interest
 * in QP_EV_READ / QP_EV_WRITE and returns the events already true (then do
 * not sleep); after the fd fires, call qp_ack() and qp_arm() again.
 */
#define QP_EV_READ 0x1u	 /* data (or EOF) to read */
#define QP_EV_WRITE 0x2u /* space to write */
#define QP_EV_HUP 0x4u	 /* peer gone or shut down */
#define QP_EV_ERR 0x8u	 /* broken: protocol violation */
int qp_poll_fd(struct qp *qp); /* made on first use; -errno if it cannot be */

/*
 * Sleep on @ep, an epoll set the caller owns, instead of a set of the
 * endpoint's own (which costs a descriptor and, nested, a wakeup hop): the
 * wake eventfd and the liveness socket join @ep with data.u64 QP_EPOLL_WAKE
 * and QP_EPOLL_ALIVE; the caller's own members must use other values. Call
 * before anything has slept on the endpoint or asked for qp_poll_fd().
 * Returns 0, -EBUSY, or -errno from epoll_ctl.
 */
#define QP_EPOLL_WAKE 0u
#define QP_EPOLL_ALIVE 1u
int qp_share_epoll(struct qp *qp, int ep);
unsigned qp_arm(struct qp *qp, unsigned events);
void qp_ack(struct qp *qp);

struct qp_stats {
	uint64_t tx_bytes, rx_bytes; /* payload bytes */
	uint64_t tx_msgs, rx_msgs;   /* records (message operations only) */
	uint64_t signals;	     /* eventfd writes to wake the peer */
	uint64_t sleeps;	     /* times this endpoint slept */
};
void qp_get_stats(const struct qp *qp, struct qp_stats *st);
size_t qp_tx_size(const struct qp *qp);
size_t qp_rx_size(const struct qp *qp);
size_t qp_rx_ready(struct qp *qp); /* bytes published and not yet read */
/*
 * For a relay that moves a queue pair's bytes into another transport with
 * its own flow control (the daemon's virtio-vsock bridge):
 * qp_tx_pending() is the bytes written and not yet released by the peer;
 * qp_rx_at_eof() is true when the peer shut down or is gone and nothing is
 * left to read; qp_set_lowat() is the space that makes qp_arm() report
 * QP_EV_WRITE (1 by default; a blocked write raises it to what it needs).
 */
size_t qp_tx_pending(struct qp *qp);
bool qp_rx_at_eof(struct qp *qp);
void qp_set_lowat(struct qp *qp, size_t bytes);

/*
 * A broker's view of a queue pair it does not take part in, for listings:
 * qp_watch_open() validates the seals and the layout like qp_attach(), then
 * maps the two queue headers read-only (no descriptor is kept); reads give
 * each queue's indices as the endpoints last wrote them: for display,
 * never for decisions.
 */
struct qp_counts {
	uint64_t size[2]; /* queue 0 (side 0 produces), queue 1 */
	uint64_t tail[2]; /* bytes produced into each queue */
	uint64_t head[2]; /* bytes consumed from each queue */
};
struct qp_watch {
	const struct qp_queue *q[2]; /* inside one read-only mapping at q[0] */
	uint64_t size[2];
	size_t map_len;
};
int qp_watch_open(int memfd, struct qp_watch *w);
void qp_watch_read(const struct qp_watch *w, struct qp_counts *c);
void qp_watch_close(struct qp_watch *w);

/*
 * Records read in place, for a relay that copies each one straight into
 * another ring (the switch): qp_msg_peek() returns the next record as up to
 * two pieces of the ring (it may wrap), without waiting; it stays valid,
 * and further peeks return the records after it, until qp_msg_consume()
 * releases every record peeked so far. The peer may still write into
 * them: parse only a private copy of whatever decides anything. Returns
 * the record's length, -EAGAIN when there is none, -ESHUTDOWN at the end,
 * -EPROTO.
 */
ssize_t qp_msg_peek(struct qp *qp, struct iovec v[2]);
void qp_msg_consume(struct qp *qp);

/*
 * Reuse between the same two endpoints (a connection pool: making and
 * mapping a queue pair costs more than a short connection's data).
 *
 * qp_park() ends this generation as qp_close() would for the peer (it sees
 * EOF and EPIPE) but keeps the endpoint: its descriptors, its mapping, and
 * its place in the byte counts; a shared epoll set is forgotten (the
 * caller closes it) and mode, timeout and spin return to their defaults.
 *
 * Side 0 alone starts the next generation, once both ends have parked:
 * qp_reusable() says so (never after the peer closed for good, died or
 * broke the queue pair); qp_renew() skips what the peer left unread, opens
 * the next generation and fills @r, which the caller sends to the peer;
 * there qp_follow() checks @r against its own endpoint (the generation
 * that follows its own, its own tail, a start within what side 0 wrote),
 * skips what it left unread and joins. Until it does, side 0 may write:
 * its bytes wait in the ring. -EPROTO for a renewal that does not fit.
 */
struct qp_renewal {
	uint32_t gen;
	uint32_t pad;
	uint64_t start[2]; /* where queue 0 and queue 1 begin in the new generation */
};
void qp_park(struct qp *qp);
bool qp_reusable(struct qp *qp);
int qp_renew(struct qp *qp, struct qp_renewal *r);
int qp_follow(struct qp *qp, const struct qp_renewal *r);

/*
 * True when the peer is gone without having shut its sending side down: it
 * died, or its process ended without closing (a socket layer reports
 * ECONNRESET then, rather than EOF).
 */
bool qp_peer_reset(const struct qp *qp);

/*
 * Whether the peer's process is still there: one poll() of the liveness
 * socket. A writer whose ring has room never looks otherwise, so a sender
 * that must notice a peer killed without closing (a daemon's SIGKILL) asks
 * now and then.
 */
bool qp_peer_alive(struct qp *qp);

/* Why the queue pair is broken (-EPROTO), or NULL. Static storage in @qp. */
const char *qp_broken_reason(const struct qp *qp);

#endif
