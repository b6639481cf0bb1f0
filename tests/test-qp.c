/* SPDX-License-Identifier: MIT */
/*
 * Queue pair tests: sizes and attach checks, wrap-around at every offset,
 * full/empty, scatter-gather, records of every size and straddling the end,
 * modes and timeouts, shutdown, peer death, a corrupting peer, event-loop
 * arming, two threads on one mapping (the TSan suite) and two processes
 * moving 1 GiB.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "common/clock.h"
#include "qp/qp_internal.h"

static void
pair(size_t s0, size_t s1, struct qp **a, struct qp **b)
{
	ASSERT_OK(qp_create_pair(s0, s1, a, b));
}

/*
 * Both endpoints over the creator's mapping: the same virtual addresses, so
 * ThreadSanitizer sees every shared access of both sides.
 */
static void
pair_shared_map(size_t s0, size_t s1, struct qp **a, struct qp **b)
{
	struct qp_fds peer;

	ASSERT_OK(qp_create(s0, s1, a, &peer));
	*b = malloc(sizeof(**b));
	ASSERT(*b);
	qp__init(*b, (*a)->map, s0, s1, 1);
	close(peer.mem);
	(*b)->wake = peer.wake;
	(*b)->peer_wake = peer.peer_wake;
	(*b)->alive = peer.alive;
	ASSERT_OK(qp__wait_init(*b));
}

/* b lives on a's mapping: it must go first. */
static void
unpair_shared_map(struct qp *a, struct qp *b)
{
	qp_close(b);
	qp_close(a);
}

TEST(qp_create_sizes)
{
	static const size_t bad[] = { 0, 1, 2048, 4095, 4097, 3 * 4096, 128u << 20, SIZE_MAX };
	struct qp_fds peer;
	struct qp *a, *b;

	for (size_t s = QP_SIZE_MIN; s <= QP_SIZE_MAX; s <<= 1) {
		pair(s, QP_SIZE_MIN, &a, &b);
		ASSERT_EQ(qp_tx_size(a), s);
		ASSERT_EQ(qp_rx_size(a), QP_SIZE_MIN);
		ASSERT_EQ(qp_rx_size(b), s);
		ASSERT_EQ(qp_tx_size(b), QP_SIZE_MIN);
		ASSERT_EQ(qp_msg_max(a), s - 8);
		qp_close(a);
		qp_close(b);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ASSERT_EQ(qp_create(bad[i], QP_SIZE_DEFAULT, &a, &peer), -EINVAL);
		ASSERT_EQ(qp_create(QP_SIZE_DEFAULT, bad[i], &a, &peer), -EINVAL);
		ASSERT_EQ(qp_create_pair(bad[i], QP_SIZE_DEFAULT, &a, &b), -EINVAL);
	}
}

static int
attach_fails(int mem)
{
	struct qp_fds f = { .mem = mem, .alive = -1 };
	struct qp *b = NULL;
	int r;

	f.wake = eventfd(0, 0);
	f.peer_wake = eventfd(0, 0);
	r = qp_attach(&f, &b);
	if (r == 0)
		qp_close(b);
	else
		close(f.wake), close(f.peer_wake);
	return r;
}

TEST(qp_attach_checks)
{
	size_t len = qp_layout_size(QP_SIZE_MIN, QP_SIZE_MIN);
	struct qp_meta m = { QP_MAGIC, QP_VERSION, { QP_SIZE_MIN, QP_SIZE_MIN } };
	struct qp_fds peer;
	struct qp *a, *b;
	int mem;

	/* A well-formed but unsealed object: the creator could shrink it. */
	mem = memfd_create("t", MFD_ALLOW_SEALING);
	ASSERT_OK(ftruncate(mem, (off_t)len));
	ASSERT_EQ(pwrite(mem, &m, sizeof(m), 0), (ssize_t)sizeof(m));
	ASSERT_EQ(attach_fails(mem), -EPROTO);
	/* Sealed: accepted. */
	ASSERT_OK(fcntl(mem, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL));
	ASSERT_OK(attach_fails(mem)); /* qp_attach took mem */

	/* Sizes that disagree with the object's length. */
	m.size[1] = QP_SIZE_MIN * 2;
	mem = memfd_create("t", MFD_ALLOW_SEALING);
	ASSERT_OK(ftruncate(mem, (off_t)len));
	ASSERT_EQ(pwrite(mem, &m, sizeof(m), 0), (ssize_t)sizeof(m));
	ASSERT_OK(fcntl(mem, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL));
	ASSERT_EQ(attach_fails(mem), -EPROTO);
	close(mem);

	/* Bad magic, bad version, size not a power of two. */
	for (int k = 0; k < 3; k++) {
		ASSERT_OK(qp_create(QP_SIZE_MIN, QP_SIZE_MIN, &a, &peer));
		struct qp_meta *mm = a->map;
		if (k == 0)
			mm->magic ^= 1;
		else if (k == 1)
			mm->version = 99;
		else
			mm->size[0] = QP_SIZE_MIN + 8;
		ASSERT_EQ(qp_attach(&peer, &b), -EPROTO);
		close(peer.mem), close(peer.wake), close(peer.peer_wake), close(peer.alive);
		qp_close(a);
	}
	/* Too small to hold even the meta page. */
	mem = memfd_create("t", MFD_ALLOW_SEALING);
	ASSERT_OK(ftruncate(mem, 100));
	ASSERT_OK(fcntl(mem, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL));
	ASSERT_EQ(attach_fails(mem), -EPROTO);
	close(mem);
}

TEST(qp_wrap_every_offset)
{
	enum { S = QP_SIZE_MIN };
	static uint8_t in[S], out[S];
	uint64_t rng = 1;
	struct qp *a, *b;

	pair(S, S, &a, &b);
	for (int off = 0; off < S; off++) {
		/* A full ring starting at this offset, read back in two pieces. */
		th_fill(&rng, in, S);
		ASSERT_EQ(qp_write(a, in, S, QP_DONTWAIT), S);
		ASSERT_EQ(qp_write(a, in, 1, QP_DONTWAIT), -EAGAIN);
		size_t cut = (size_t)(th_rand(&rng) % S);
		ASSERT_EQ(qp_read(b, out, cut, QP_DONTWAIT), (ssize_t)cut);
		ASSERT_EQ(qp_read(b, out + cut, S, QP_DONTWAIT), (ssize_t)(S - cut));
		ASSERT_MEM_EQ(in, out, S);
		/* A random-sized chunk, then move on by one byte. */
		size_t n = 1 + (size_t)(th_rand(&rng) % S);
		ASSERT_EQ(qp_write(a, in, n, QP_DONTWAIT), (ssize_t)n);
		ASSERT_EQ(qp_read(b, out, S, QP_DONTWAIT), (ssize_t)n);
		ASSERT_MEM_EQ(in, out, n);
		size_t shift = (S + 1 - n) % S; /* back to offset off + 1 */
		ASSERT_EQ(qp_write(a, in, shift, QP_DONTWAIT), (ssize_t)shift);
		ASSERT_EQ(qp_read(b, out, shift, QP_DONTWAIT), (ssize_t)shift);
		ASSERT_EQ(a->tx.pos % S, (uint64_t)(off + 1) % S);
	}
	qp_close(a);
	qp_close(b);
}

/*
 * Large copies take the streaming-store path (4 KiB and more): every ring
 * offset and source alignment, with partial lines at both ends, and the
 * bytes on either side of each copy untouched.
 */
TEST(qp_large_copies)
{
	enum { S = 64 << 10 };
	static uint8_t in[S + 64], out[S + 128];
	uint64_t rng = 7;
	struct qp *a, *b;

	pair(S, S, &a, &b);
	for (int i = 0; i < 3000; i++) {
		size_t n = 4096 + (size_t)(th_rand(&rng) % (S - 4096 + 1));
		size_t align = (size_t)(th_rand(&rng) % 64), got = 0;

		th_fill(&rng, in, sizeof(in));
		ASSERT_EQ(qp_write(a, in + align, n, QP_DONTWAIT), (ssize_t)n);
		memset(out, 0xa5, sizeof(out));
		while (got < n) {
			size_t want = 1 + (size_t)(th_rand(&rng) % (n - got));
			ASSERT_EQ(qp_read(b, out + 64 + got, want, QP_DONTWAIT), (ssize_t)want);
			got += want;
		}
		ASSERT_MEM_EQ(in + align, out + 64, n);
		ASSERT_EQ(out[63], 0xa5);
		ASSERT_EQ(out[64 + n], 0xa5);
		/* Move the ring's offset on by an odd amount for the next round. */
		size_t k = 1 + (size_t)(th_rand(&rng) % 4095);
		ASSERT_EQ(qp_write(a, in, k, QP_DONTWAIT), (ssize_t)k);
		ASSERT_EQ(qp_read(b, out, k, QP_DONTWAIT), (ssize_t)k);
	}
	qp_close(a);
	qp_close(b);
}

/*
 * One queue pair, one connection after another: what a side left unread
 * never reaches the next generation, EOF and EPIPE belong to a generation,
 * and renewals that do not fit, or a peer that closed for good, are refused.
 */
TEST(qp_reuse_generations)
{
	struct qp *a, *b;
	struct qp_renewal r, bad;
	char buf[64];

	pair(QP_SIZE_MIN, QP_SIZE_MIN, &a, &b);
	for (int gen = 0; gen < 5; gen++) {
		ASSERT_EQ(qp_write(a, "ping", 4, QP_DONTWAIT), 4);
		ASSERT_EQ(qp_read(b, buf, 4, QP_DONTWAIT), 4);
		ASSERT(!memcmp(buf, "ping", 4));
		ASSERT_EQ(qp_write(b, "pong", 4, QP_DONTWAIT), 4);
		ASSERT_EQ(qp_read(a, buf, 4, QP_DONTWAIT), 4);
		/* Leftovers both ways, never read. */
		ASSERT_EQ(qp_write(a, "stale-a", 7, QP_DONTWAIT), 7);
		ASSERT_EQ(qp_write(b, "stale-b", 7, QP_DONTWAIT), 7);
		ASSERT(!qp_reusable(a));
		qp_park(a);
		ASSERT(!qp_reusable(a)); /* b has not parked */
		/* b sees the end of this generation once it has read what is left. */
		ASSERT_EQ(qp_read(b, buf, sizeof(buf), QP_DONTWAIT), 7);
		ASSERT_EQ(qp_read(b, buf, sizeof(buf), QP_DONTWAIT), 0);
		qp_park(b);
		ASSERT(qp_reusable(a));
		ASSERT_OK(qp_renew(a, &r));
		ASSERT(!qp_reusable(a));
		/* a may write before b follows; b then starts exactly there. */
		ASSERT_EQ(qp_write(a, "next", 4, QP_DONTWAIT), 4);
		bad = r;
		bad.gen++;
		ASSERT_EQ(qp_follow(b, &bad), -EPROTO);
		qp_close(b);
		qp_close(a);
		pair(QP_SIZE_MIN, QP_SIZE_MIN, &a, &b);
		/* Start over on a fresh pair so that the broken one is not reused. */
		for (int k = 0; k <= gen; k++) {
			ASSERT_EQ(qp_write(b, "x", 1, QP_DONTWAIT), 1);
			qp_park(a), qp_park(b);
			ASSERT_OK(qp_renew(a, &r));
			ASSERT_OK(qp_follow(b, &r));
		}
		ASSERT_EQ(qp_write(a, "next", 4, QP_DONTWAIT), 4);
		ASSERT_EQ(qp_read(b, buf, sizeof(buf), QP_DONTWAIT), 4);
		ASSERT(!memcmp(buf, "next", 4));
		ASSERT_EQ(qp_read(a, buf, sizeof(buf), QP_DONTWAIT), -EAGAIN); /* no "x" left over */
	}
	/* A start beyond what side 0 wrote, or a tail that is not ours. */
	qp_park(a), qp_park(b);
	ASSERT_OK(qp_renew(a, &r));
	bad = r;
	bad.start[0] += 1;
	ASSERT_EQ(qp_follow(b, &bad), -EPROTO);
	qp_close(a), qp_close(b);
	pair(QP_SIZE_MIN, QP_SIZE_MIN, &a, &b);
	qp_park(a), qp_park(b);
	ASSERT_OK(qp_renew(a, &r));
	bad = r;
	bad.start[1] -= 1;
	ASSERT_EQ(qp_follow(b, &bad), -EPROTO);
	qp_close(a), qp_close(b);
	/* A peer that closed for good is never waited for. */
	pair(QP_SIZE_MIN, QP_SIZE_MIN, &a, &b);
	qp_park(a);
	qp_close(b);
	ASSERT(!qp_reusable(a));
	ASSERT_EQ(qp_renew(a, &r), -EBUSY);
	qp_close(a);
}

/* Records read in place: pieces across the wrap, several peeked, released together. */
TEST(qp_msg_peek)
{
	struct qp *a, *b;
	struct iovec v[2];
	uint8_t msg[1000], got[1000];
	uint64_t rng = 11;

	pair(QP_SIZE_MIN, QP_SIZE_MIN, &a, &b);
	ASSERT_EQ(qp_msg_peek(b, v), -EAGAIN);
	for (int round = 0; round < 300; round++) {
		size_t len[3];
		int k = 1 + (int)(th_rand(&rng) % 3);

		for (int i = 0; i < k; i++) {
			len[i] = 1 + (size_t)(th_rand(&rng) % sizeof(msg));
			memset(msg, round * 3 + i, len[i]);
			ASSERT_EQ(qp_msg_send(a, msg, len[i], QP_DONTWAIT), (ssize_t)len[i]);
		}
		for (int i = 0; i < k; i++) {
			ASSERT_EQ(qp_msg_peek(b, v), (ssize_t)len[i]);
			ASSERT_EQ(v[0].iov_len + v[1].iov_len, len[i]);
			memcpy(got, v[0].iov_base, v[0].iov_len);
			memcpy(got + v[0].iov_len, v[1].iov_base, v[1].iov_len);
			memset(msg, round * 3 + i, len[i]);
			ASSERT_MEM_EQ(got, msg, len[i]);
		}
		ASSERT_EQ(qp_msg_peek(b, v), -EAGAIN);
		qp_msg_consume(b);
	}
	/* A header the peer forged is refused, not followed. */
	ASSERT_EQ(qp_msg_send(a, msg, 8, QP_DONTWAIT), 8);
	{
		uint64_t at = b->rx.pos & (b->rx.size - 1);
		uint32_t bad = (uint32_t)b->rx.size;
		memcpy(b->rx.data + at, &bad, sizeof(bad));
	}
	ASSERT_EQ(qp_msg_peek(b, v), -EPROTO);
	qp_close(a);
	qp_close(b);
	pair(QP_SIZE_MIN, QP_SIZE_MIN, &a, &b);
	qp_shutdown(a, SHUT_WR);
	ASSERT_EQ(qp_msg_peek(b, v), -ESHUTDOWN);
	qp_close(a);
	qp_close(b);
}

/* QP_MORE: records wait until the batch is flushed; a full ring flushes before it waits. */
TEST(qp_msg_more)
{
	struct qp *a, *b;
	char buf[64];

	pair(QP_SIZE_MIN, QP_SIZE_MIN, &a, &b);
	for (int i = 0; i < 5; i++)
		ASSERT_EQ(qp_msg_send(a, "abcd", 4, QP_DONTWAIT | QP_MORE), 4);
	ASSERT_EQ(qp_msg_recv(b, buf, sizeof(buf), NULL, QP_DONTWAIT), -EAGAIN);
	qp_flush(a);
	for (int i = 0; i < 5; i++)
		ASSERT_EQ(qp_msg_recv(b, buf, sizeof(buf), NULL, QP_DONTWAIT), 4);
	/* Fill the ring with QP_MORE, then a blocking send with a timeout: it publishes first. */
	while (qp_msg_send(a, buf, sizeof(buf), QP_DONTWAIT | QP_MORE) > 0)
		;
	ASSERT_GT(qp_rx_ready(b) + 1, 0);
	qp_set_timeout(a, 1000000);
	ASSERT_EQ(qp_msg_send(a, buf, sizeof(buf), QP_MORE), -ETIMEDOUT);
	ASSERT_GT(qp_rx_ready(b), 0); /* shown to the peer before waiting */
	/* And the end of the stream comes after them. */
	ASSERT_EQ(qp_msg_recv(b, buf, sizeof(buf), NULL, QP_DONTWAIT), (ssize_t)sizeof(buf));
	ASSERT_EQ(qp_msg_send(a, "z", 1, QP_DONTWAIT | QP_MORE), 1);
	qp_shutdown(a, SHUT_WR);
	ssize_t r;
	size_t n = 0;
	while ((r = qp_msg_recv(b, buf, sizeof(buf), NULL, QP_DONTWAIT)) > 0)
		n++;
	ASSERT_EQ(r, -ESHUTDOWN);
	ASSERT_GT(n, 0);
	qp_close(a);
	qp_close(b);
}

TEST(qp_full_and_empty)
{
	enum { S = 8192 };
	static uint8_t buf[S * 2];
	struct qp *a, *b;

	pair(S, QP_SIZE_MIN, &a, &b);
	ASSERT_EQ(qp_read(b, buf, 1, QP_DONTWAIT), -EAGAIN);
	ASSERT_EQ(qp_rx_ready(b), 0);
	ASSERT_EQ(qp_write(a, buf, sizeof(buf), QP_DONTWAIT), S); /* what fits */
	ASSERT_EQ(qp_write(a, buf, 1, QP_DONTWAIT), -EAGAIN);
	ASSERT_EQ(qp_rx_ready(b), S);
	ASSERT_EQ(qp_read(b, buf, 1, QP_DONTWAIT), 1);
	ASSERT_EQ(qp_write(a, buf, 2, QP_DONTWAIT), 1);
	ASSERT_EQ(qp_read(b, buf, sizeof(buf), QP_DONTWAIT), S);
	ASSERT_EQ(qp_read(b, buf, 1, QP_DONTWAIT), -EAGAIN);
	ASSERT_EQ(qp_write(a, buf, 0, QP_DONTWAIT), 0);
	ASSERT_EQ(qp_read(b, buf, 0, QP_DONTWAIT), 0);
	/* The other direction is independent. */
	ASSERT_EQ(qp_write(b, buf, sizeof(buf), QP_DONTWAIT), QP_SIZE_MIN);
	ASSERT_EQ(qp_read(a, buf, sizeof(buf), QP_DONTWAIT), QP_SIZE_MIN);
	qp_close(a);
	qp_close(b);
}

TEST(qp_iov)
{
	enum { S = QP_SIZE_MIN };
	uint8_t x[100], y[0], z[3000], o1[7], o2[3093], all[3100], got[3100];
	struct iovec w[3] = { { x, sizeof(x) }, { y, 0 }, { z, sizeof(z) } };
	struct iovec r[2] = { { o1, sizeof(o1) }, { o2, sizeof(o2) } };
	uint64_t rng = 7;
	struct qp *a, *b;

	pair(S, S, &a, &b);
	for (int round = 0; round < 20; round++) { /* crosses the end several times */
		th_fill(&rng, x, sizeof(x));
		th_fill(&rng, z, sizeof(z));
		memcpy(all, x, sizeof(x));
		memcpy(all + sizeof(x), z, sizeof(z));
		ASSERT_EQ(qp_writev(a, w, 3, QP_DONTWAIT), 3100);
		ASSERT_EQ(qp_readv(b, r, 2, QP_DONTWAIT), 3100);
		memcpy(got, o1, sizeof(o1));
		memcpy(got + sizeof(o1), o2, sizeof(o2));
		ASSERT_MEM_EQ(all, got, 3100);
		/* Records through iovecs too, truncated into the first iovec only. */
		ASSERT_EQ(qp_msg_sendv(a, w, 3, QP_DONTWAIT), 3100);
		size_t ml = 0;
		ASSERT_EQ(qp_msg_recvv(b, r, 1, &ml, QP_DONTWAIT), 7);
		ASSERT_EQ(ml, 3100);
		ASSERT_MEM_EQ(o1, x, 7);
	}
	struct iovec huge[2] = { { x, SIZE_MAX / 2 + 1 }, { z, SIZE_MAX / 2 + 1 } };
	ASSERT_EQ(qp_writev(a, huge, 2, 0), -EINVAL);
	ASSERT_EQ(qp_writev(a, w, -1, 0), -EINVAL);
	qp_close(a);
	qp_close(b);
}

static void
msg_roundtrip(struct qp *a, struct qp *b, uint8_t *in, uint8_t *out, size_t len, uint64_t *rng)
{
	size_t ml = 12345;

	th_fill(rng, in, len);
	ASSERT_EQ(qp_msg_send(a, in, len, QP_DONTWAIT), (ssize_t)len);
	ASSERT_EQ(qp_msg_recv(b, out, len + 16, &ml, QP_DONTWAIT), (ssize_t)len);
	ASSERT_EQ(ml, len);
	ASSERT_MEM_EQ(in, out, len);
}

TEST(qp_msg_sizes)
{
	static uint8_t in[QP_SIZE_DEFAULT + 16], out[QP_SIZE_DEFAULT + 32];
	uint64_t rng = 3;
	struct qp *a, *b;

	/* Every size from 0 to the maximum on the smallest ring. */
	pair(QP_SIZE_MIN, QP_SIZE_MIN, &a, &b);
	for (size_t len = 0; len <= qp_msg_max(a); len++)
		msg_roundtrip(a, b, in, out, len, &rng);
	ASSERT_EQ(qp_msg_send(a, in, qp_msg_max(a) + 1, 0), -EMSGSIZE);
	qp_close(a);
	qp_close(b);

	/* The default ring: the edges and a sweep. */
	pair(QP_SIZE_DEFAULT, QP_SIZE_DEFAULT, &a, &b);
	ASSERT_EQ(qp_msg_max(a), QP_SIZE_DEFAULT - 8);
	for (size_t len = 0; len <= qp_msg_max(a); len += len < 64 ? 1 : 997)
		msg_roundtrip(a, b, in, out, len, &rng);
	for (size_t len = qp_msg_max(a) - 9; len <= qp_msg_max(a); len++)
		msg_roundtrip(a, b, in, out, len, &rng);
	ASSERT_EQ(qp_msg_send(a, in, qp_msg_max(a) + 1, 0), -EMSGSIZE);
	/* A full-size record needs an empty ring. */
	ASSERT_EQ(qp_msg_send(a, in, 0, 0), 0);
	ASSERT_EQ(qp_msg_send(a, in, qp_msg_max(a), QP_DONTWAIT), -EAGAIN);
	size_t ml;
	ASSERT_EQ(qp_msg_recv(b, out, 10, &ml, 0), 0);
	ASSERT_EQ(ml, 0);
	qp_close(a);
	qp_close(b);
}

TEST(qp_msg_straddle)
{
	enum { S = QP_SIZE_MIN };
	static uint8_t in[S], out[S];
	uint64_t rng = 11;
	struct qp *a, *b;

	pair(S, S, &a, &b);
	/* A record starting at each 8-byte slot, header and payload wrapping. */
	for (int slot = 0; slot < S / 8; slot++) {
		size_t len = 1 + (size_t)(th_rand(&rng) % (S - 8));
		msg_roundtrip(a, b, in, out, len, &rng);
		/* Realign to the next slot with empty records (8 bytes each). */
		while (a->tx.pos % S != (uint64_t)((slot + 1) * 8) % S) {
			ASSERT_EQ(qp_msg_send(a, in, 0, QP_DONTWAIT), 0);
			ASSERT_EQ(qp_msg_recv(b, out, 0, NULL, QP_DONTWAIT), 0);
		}
	}
	/* Several records queued at once across the end. */
	for (int i = 0; i < 5; i++)
		ASSERT_EQ(qp_msg_send(a, in, 600 + i, QP_DONTWAIT), 600 + i);
	for (int i = 0; i < 5; i++) {
		size_t ml;
		ASSERT_EQ(qp_msg_recv(b, out, S, &ml, QP_DONTWAIT), 600 + i);
		ASSERT_MEM_EQ(in, out, ml);
	}
	qp_close(a);
	qp_close(b);
}

TEST(qp_msg_truncate)
{
	uint8_t in[200], out[200];
	uint64_t rng = 5;
	size_t ml = 0;
	struct qp *a, *b;

	pair(QP_SIZE_MIN, QP_SIZE_MIN, &a, &b);
	th_fill(&rng, in, sizeof(in));
	ASSERT_EQ(qp_msg_send(a, in, 150, 0), 150);
	ASSERT_EQ(qp_msg_send(a, in + 1, 20, 0), 20);
	ASSERT_EQ(qp_msg_recv(b, out, 10, &ml, 0), 10);
	ASSERT_EQ(ml, 150);
	ASSERT_MEM_EQ(out, in, 10);
	/* The rest of the first record is gone; the second is intact. */
	ASSERT_EQ(qp_msg_recv(b, out, sizeof(out), &ml, 0), 20);
	ASSERT_EQ(ml, 20);
	ASSERT_MEM_EQ(out, in + 1, 20);
	ASSERT_EQ(qp_msg_recv(b, out, sizeof(out), &ml, QP_DONTWAIT), -EAGAIN);
	qp_close(a);
	qp_close(b);
}

TEST(qp_nonblock_and_timeout)
{
	static uint8_t buf[QP_SIZE_MIN];
	struct qp *a, *b;
	int64_t t0, dt;

	pair(QP_SIZE_MIN, QP_SIZE_MIN, &a, &b);
	qp_set_mode(b, QP_NONBLOCK);
	ASSERT_EQ(qp_read(b, buf, 1, 0), -EAGAIN);
	ASSERT_EQ(qp_msg_recv(b, buf, 1, NULL, 0), -EAGAIN);

	qp_set_mode(b, QP_BLOCKING);
	qp_set_timeout(b, 50 * 1000000);
	t0 = clock_ns();
	ASSERT_EQ(qp_read(b, buf, 1, 0), -ETIMEDOUT);
	dt = clock_ns() - t0;
	ASSERT_GE(dt, 50 * 1000000);
	ASSERT_LT(dt, 2000 * 1000000LL);

	qp_set_spin(b, 20000);
	ASSERT_EQ(qp_read(b, buf, 1, 0), -ETIMEDOUT);

	qp_set_mode(b, QP_BUSY_POLL);
	t0 = clock_ns();
	ASSERT_EQ(qp_read(b, buf, 1, 0), -ETIMEDOUT);
	ASSERT_GE(clock_ns() - t0, 50 * 1000000);

	/* Writers wait for space the same way. */
	qp_set_timeout(a, 30 * 1000000);
	ASSERT_EQ(qp_write(a, buf, sizeof(buf), 0), QP_SIZE_MIN);
	ASSERT_EQ(qp_write(a, buf, 1, 0), -ETIMEDOUT);
	ASSERT_EQ(qp_msg_send(a, buf, 1, 0), -ETIMEDOUT);
	qp_set_mode(a, QP_BUSY_POLL);
	ASSERT_EQ(qp_write(a, buf, 1, 0), -ETIMEDOUT);
	ASSERT_EQ(qp_write(a, buf, 1, QP_DONTWAIT), -EAGAIN);
	qp_close(a);
	qp_close(b);
}

TEST(qp_shutdown_eof_epipe)
{
	uint8_t buf[64] = { 1, 2, 3 };
	struct qp *a, *b;

	pair(QP_SIZE_MIN, QP_SIZE_MIN, &a, &b);
	ASSERT_EQ(qp_write(a, buf, 10, 0), 10);
	ASSERT_OK(qp_shutdown(a, SHUT_WR));
	ASSERT_EQ(qp_write(a, buf, 1, 0), -EPIPE);
	/* The data first, then EOF, again and again; blocking never hangs. */
	ASSERT_EQ(qp_read(b, buf, sizeof(buf), 0), 10);
	ASSERT_EQ(qp_read(b, buf, sizeof(buf), 0), 0);
	ASSERT_EQ(qp_read(b, buf, sizeof(buf), 0), 0);
	ASSERT_EQ(qp_msg_recv(b, buf, sizeof(buf), NULL, 0), -ESHUTDOWN);
	/* The other direction still works. */
	ASSERT_EQ(qp_write(b, buf, 5, 0), 5);
	ASSERT_EQ(qp_read(a, buf, sizeof(buf), 0), 5);
	/* A reader that shuts down makes the writer's next write EPIPE. */
	ASSERT_OK(qp_shutdown(a, SHUT_RD));
	ASSERT_EQ(qp_write(b, buf, 5, 0), -EPIPE);
	ASSERT_EQ(qp_msg_send(b, buf, 5, 0), -EPIPE);
	ASSERT_EQ(qp_shutdown(a, 42), -EINVAL);
	qp_close(a);
	qp_close(b);

	/* Close with data in flight: the reader gets all of it, then EOF. */
	pair(QP_SIZE_MIN, QP_SIZE_MIN, &a, &b);
	ASSERT_EQ(qp_msg_send(a, buf, 33, 0), 33);
	qp_close(a);
	ASSERT_EQ(qp_msg_recv(b, buf, sizeof(buf), NULL, 0), 33);
	ASSERT_EQ(qp_msg_recv(b, buf, sizeof(buf), NULL, 0), -ESHUTDOWN);
	ASSERT_EQ(qp_write(b, buf, 1, 0), -EPIPE);
	qp_close(b);
}

/* Child: attach, write, then die without closing (SIGKILL on itself). */
static void
child_writes_and_dies(struct qp_fds *peer, size_t n, int block_after)
{
	uint8_t buf[256];
	struct qp *b;

	if (qp_attach(peer, &b))
		_exit(3);
	memset(buf, 0xab, sizeof(buf));
	while (n) {
		ssize_t k = qp_write(b, buf, n < sizeof(buf) ? n : sizeof(buf), 0);
		if (k <= 0)
			_exit(4);
		n -= (size_t)k;
	}
	if (block_after) /* sleep in a blocking read until killed */
		(void)qp_read(b, buf, 1, 0);
	raise(SIGKILL);
}

TEST(qp_peer_death)
{
	uint8_t buf[4096];
	struct qp_fds peer;
	struct qp *a;
	size_t got = 0;
	int64_t t0;
	ssize_t n;
	pid_t pid;

	/* Peer dies after writing: reader drains everything, then EOF; writer EPIPE. */
	ASSERT_OK(qp_create(QP_SIZE_MIN, QP_SIZE_MIN, &a, &peer));
	pid = fork();
	ASSERT_GE(pid, 0);
	if (pid == 0)
		child_writes_and_dies(&peer, 3000, 0);
	close(peer.mem), close(peer.wake), close(peer.peer_wake), close(peer.alive);
	waitpid(pid, NULL, 0);
	while ((n = qp_read(a, buf, 100, 0)) > 0)
		got += (size_t)n;
	ASSERT_EQ(n, 0);
	ASSERT_EQ(got, 3000);
	ASSERT_EQ(qp_write(a, buf, 1, 0), -EPIPE);
	qp_close(a);

	/* Peer killed while we sleep in a blocking read: we wake up promptly. */
	ASSERT_OK(qp_create(QP_SIZE_MIN, QP_SIZE_MIN, &a, &peer));
	pid = fork();
	ASSERT_GE(pid, 0);
	if (pid == 0) {
		struct qp *b;
		if (qp_attach(&peer, &b))
			_exit(3);
		pause();
		_exit(0);
	}
	close(peer.mem), close(peer.wake), close(peer.peer_wake), close(peer.alive);
	qp_set_timeout(a, 5000 * 1000000LL);
	usleep(20000);
	kill(pid, SIGKILL);
	t0 = clock_ns();
	ASSERT_EQ(qp_read(a, buf, sizeof(buf), 0), 0);
	ASSERT_LT(clock_ns() - t0, 100 * 1000000); /* noticed within 100 ms */
	waitpid(pid, NULL, 0);
	qp_close(a);

	/* Writer blocked on a full ring when the reader dies: EPIPE. */
	ASSERT_OK(qp_create(QP_SIZE_MIN, QP_SIZE_MIN, &a, &peer));
	pid = fork();
	ASSERT_GE(pid, 0);
	if (pid == 0) {
		struct qp *b;
		if (qp_attach(&peer, &b))
			_exit(3);
		usleep(50000);
		raise(SIGKILL);
	}
	close(peer.mem), close(peer.wake), close(peer.peer_wake), close(peer.alive);
	ASSERT_EQ(qp_write(a, buf, sizeof(buf), 0), QP_SIZE_MIN);
	ASSERT_EQ(qp_write(a, buf, 1, 0), -EPIPE);
	waitpid(pid, NULL, 0);
	qp_close(a);
	(void)child_writes_and_dies;
}

/* The peer scribbles indices: every impossible value is -EPROTO, sticky. */
TEST(qp_corrupt_indices)
{
	uint8_t buf[64];
	struct qp *a, *b;

	for (int k = 0; k < 5; k++) {
		pair_shared_map(QP_SIZE_MIN, QP_SIZE_MIN, &a, &b);
		ASSERT_EQ(qp_write(b, buf, 40, 0), 40);
		ASSERT_EQ(qp_read(a, buf, 8, 0), 8);
		ASSERT_EQ(qp_write(a, buf, 40, 0), 40);
		ASSERT_EQ(qp_read(b, buf, 16, 0), 16);
		/* Let a learn the true indices (a probe refreshes both). */
		ASSERT_EQ(qp_arm(a, QP_EV_READ | QP_EV_WRITE), QP_EV_READ | QP_EV_WRITE);
		switch (k) {
		case 0: /* tail moves backwards */
			atomic_store(&a->rx.q->prod.index, 39);
			break;
		case 1: /* tail beyond head + size */
			atomic_store(&a->rx.q->prod.index, 40 + QP_SIZE_MIN + 1);
			break;
		case 2: /* tail behind our head, far away (wrapped u64) */
			atomic_store(&a->rx.q->prod.index, UINT64_MAX - 5);
			break;
		case 3: /* head moves backwards */
			atomic_store(&a->tx.q->cons.index, 3);
			break;
		case 4: /* head ahead of our tail */
			atomic_store(&a->tx.q->cons.index, 41);
			break;
		}
		if (k < 3) {
			/* Cached bytes may be read; the next refresh must catch it. */
			ssize_t n;
			while ((n = qp_read(a, buf, sizeof(buf), QP_DONTWAIT)) > 0)
				;
			ASSERT_EQ(n, -EPROTO);
		} else {
			/* Checked when a looks, before its own writes make it plausible. */
			ASSERT(qp_arm(a, QP_EV_WRITE) & QP_EV_ERR);
			ASSERT_EQ(qp_write(a, buf, sizeof(buf), QP_DONTWAIT), -EPROTO);
		}
		ASSERT(qp_broken_reason(a) != NULL);
		th_log("case %d: %s", k, qp_broken_reason(a));
		ASSERT_EQ(qp_read(a, buf, 1, 0), -EPROTO);
		ASSERT_EQ(qp_write(a, buf, 1, 0), -EPROTO);
		ASSERT_EQ(qp_msg_send(a, buf, 1, 0), -EPROTO);
		ASSERT_EQ(qp_msg_recv(a, buf, 1, NULL, 0), -EPROTO);
		ASSERT(qp_arm(a, QP_EV_READ) & QP_EV_ERR);
		ASSERT(qp_broken_reason(b) == NULL);
		unpair_shared_map(a, b);
	}
}

TEST(qp_corrupt_records)
{
	struct qp_msg_hdr h;
	uint8_t buf[QP_SIZE_MIN];
	struct qp *a, *b;

	for (int k = 0; k < 3; k++) {
		pair_shared_map(QP_SIZE_MIN, QP_SIZE_MIN, &a, &b);
		ASSERT_EQ(qp_msg_send(b, buf, 16, 0), 16);
		ASSERT_EQ(qp_msg_recv(a, buf, sizeof(buf), NULL, 0), 16);
		/* b now forges the next record by hand. */
		uint64_t at = b->tx.pos;
		uint8_t *slot = b->tx.data + (at & (QP_SIZE_MIN - 1));
		if (k == 0) { /* longer than the ring */
			h = (struct qp_msg_hdr){ QP_SIZE_MIN, 0 };
			memcpy(slot, &h, sizeof(h));
			atomic_store(&b->tx.q->prod.index, at + 8);
		} else if (k == 1) { /* beyond what was published */
			h = (struct qp_msg_hdr){ 100, 0 };
			memcpy(slot, &h, sizeof(h));
			atomic_store(&b->tx.q->prod.index, at + 8 + 64);
		} else { /* half a header */
			atomic_store(&b->tx.q->prod.index, at + 4);
		}
		ASSERT_EQ(qp_msg_recv(a, buf, sizeof(buf), NULL, 0), -EPROTO);
		th_log("case %d: %s", k, qp_broken_reason(a));
		unpair_shared_map(a, b);
	}
}

static int
readable_within(int fd, int ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	return poll(&p, 1, ms) == 1;
}

TEST(qp_arm_events)
{
	static uint8_t buf[QP_SIZE_MIN];
	struct qp *a, *b;

	pair(QP_SIZE_MIN, QP_SIZE_MIN, &a, &b);
	ASSERT_EQ(qp_arm(b, QP_EV_READ), 0);
	ASSERT(!readable_within(qp_poll_fd(b), 0));
	ASSERT_EQ(qp_write(a, buf, 1, 0), 1);
	ASSERT(readable_within(qp_poll_fd(b), 1000));
	qp_ack(b);
	ASSERT(!readable_within(qp_poll_fd(b), 0));
	ASSERT_EQ(qp_arm(b, QP_EV_READ | QP_EV_WRITE), QP_EV_READ | QP_EV_WRITE);
	/* Nobody armed: a write does not signal (no syscall while busy). */
	struct qp_stats st0, st1;
	qp_get_stats(a, &st0);
	ASSERT_EQ(qp_write(a, buf, 1, 0), 1);
	qp_get_stats(a, &st1);
	ASSERT_EQ(st1.signals, st0.signals);

	/* Writable: fill, arm, let the reader make room. */
	ASSERT_EQ(qp_write(a, buf, sizeof(buf), 0), QP_SIZE_MIN - 2);
	ASSERT_EQ(qp_arm(a, QP_EV_WRITE), 0);
	ASSERT_EQ(qp_read(b, buf, 100, 0), 100);
	ASSERT(readable_within(qp_poll_fd(a), 1000));
	qp_ack(a);
	ASSERT_EQ(qp_arm(a, QP_EV_WRITE), QP_EV_WRITE);

	/* A message writer that got EAGAIN is woken only when its record fits. */
	ASSERT_EQ(qp_write(a, buf, sizeof(buf), 0), 100);
	ASSERT_EQ(qp_read(b, buf, sizeof(buf), 0), QP_SIZE_MIN);
	ASSERT_EQ(qp_write(a, buf, QP_SIZE_MIN - 64, 0), QP_SIZE_MIN - 64);
	ASSERT_EQ(qp_msg_send(a, buf, 100, QP_DONTWAIT), -EAGAIN);
	ASSERT_EQ(qp_arm(a, QP_EV_WRITE), 0);
	ASSERT_EQ(qp_read(b, buf, 8, 0), 8); /* 72 free: not enough for 108 */
	ASSERT_EQ(qp_arm(a, QP_EV_WRITE), 0);
	ASSERT_EQ(qp_read(b, buf, 100, 0), 100);
	ASSERT(readable_within(qp_poll_fd(a), 1000));
	qp_ack(a);
	ASSERT_EQ(qp_arm(a, QP_EV_WRITE), QP_EV_WRITE);

	/* Hang-up. */
	ASSERT_EQ(qp_read(b, buf, sizeof(buf), 0), QP_SIZE_MIN - 64 - 108);
	ASSERT_EQ(qp_arm(b, QP_EV_READ), 0);
	qp_close(a);
	ASSERT(readable_within(qp_poll_fd(b), 1000));
	qp_ack(b);
	ASSERT(qp_arm(b, QP_EV_READ) & QP_EV_HUP);
	qp_close(b);
}

/* ---------------------------------------------------------------------- */
/* Two threads on one mapping: the ThreadSanitizer suite. */

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define STRESS_BYTES (64ull << 20)
#define STRESS_MSGS 100000
#else
#define STRESS_BYTES (512ull << 20)
#define STRESS_MSGS 1000000
#endif

struct stress {
	struct qp *q;
	enum qp_mode mode;
	uint64_t seed;
	int msgs;
};

/* Byte i of the test stream: a function of i alone, so any chunking checks. */
static inline uint8_t
stream_byte(uint64_t i)
{
	uint64_t x = (i >> 3) * 0x9e3779b97f4a7c15ull;

	return (uint8_t)((x ^ (x >> 29)) >> (8 * (i & 7)));
}

static void *
stress_writer(void *arg)
{
	struct stress *s = arg;
	static __thread uint8_t buf[70000];
	uint64_t rng = s->seed, sent = 0;

	qp_set_mode(s->q, s->mode);
	if (s->msgs) {
		for (int m = 0; m < s->msgs; m++) {
			size_t len = (size_t)(th_rand(&rng) % 2000);
			for (size_t i = 0; i < len; i++)
				buf[i] = (uint8_t)(m + i);
			if (qp_msg_send(s->q, buf, len, 0) != (ssize_t)len)
				th_fail(__FILE__, __LINE__, "msg_send failed at %d", m);
		}
		return NULL;
	}
	while (sent < STRESS_BYTES) {
		size_t len = 1 + (size_t)(th_rand(&rng) % sizeof(buf));
		if (len > STRESS_BYTES - sent)
			len = (size_t)(STRESS_BYTES - sent);
		for (size_t i = 0; i < len; i++)
			buf[i] = stream_byte(sent + i);
		size_t off = 0;
		while (off < len) {
			ssize_t n = qp_write(s->q, buf + off, len - off, 0);
			if (n <= 0)
				th_fail(__FILE__, __LINE__, "write: %zd", n);
			off += (size_t)n;
		}
		sent += len;
	}
	return NULL;
}

static void
stress_reader(struct stress *s)
{
	static uint8_t buf[70000];
	uint64_t rng = s->seed ^ 0xfeed, got = 0;

	qp_set_mode(s->q, s->mode);
	if (s->msgs) {
		uint64_t wrng = s->seed;
		for (int m = 0; m < s->msgs; m++) {
			size_t want = (size_t)(th_rand(&wrng) % 2000), ml;
			ssize_t n = qp_msg_recv(s->q, buf, sizeof(buf), &ml, 0);
			ASSERT_EQ(n, (ssize_t)want);
			for (size_t i = 0; i < want; i++)
				if (buf[i] != (uint8_t)(m + i))
					th_fail(__FILE__, __LINE__, "msg %d byte %zu", m, i);
		}
		return;
	}
	while (got < STRESS_BYTES) {
		size_t len = 1 + (size_t)(th_rand(&rng) % sizeof(buf));
		ssize_t n = qp_read(s->q, buf, len, 0);
		ASSERT_GT(n, 0);
		for (ssize_t i = 0; i < n; i++)
			if (buf[i] != stream_byte(got + (uint64_t)i))
				th_fail(__FILE__, __LINE__, "byte %llu differs",
					(unsigned long long)(got + (uint64_t)i));
		got += (uint64_t)n;
	}
	ASSERT_EQ(got, STRESS_BYTES);
}

static void
stress_threads(int msgs)
{
	static const enum qp_mode modes[] = { QP_BLOCKING, QP_BUSY_POLL };
	struct qp *a, *b;
	pthread_t t;

	for (size_t m = 0; m < 2; m++) {
		struct stress w, r;
		struct qp_stats st;

		pair_shared_map(QP_SIZE_MIN * 4, QP_SIZE_MIN, &a, &b);
		w = (struct stress){ a, modes[m], 42 + m, msgs };
		r = (struct stress){ b, modes[m], 42 + m, msgs };
		ASSERT_OK(pthread_create(&t, NULL, stress_writer, &w));
		stress_reader(&r);
		ASSERT_OK(pthread_join(t, NULL));
		qp_get_stats(b, &st);
		th_log("mode %d: reader slept %llu times, signalled %llu", modes[m],
		       (unsigned long long)st.sleeps, (unsigned long long)st.signals);
		unpair_shared_map(a, b);
	}
}

TEST(qp_threads_stream)
{
	stress_threads(0);
}

TEST(qp_threads_msgs)
{
	stress_threads(STRESS_MSGS);
}

/* ---------------------------------------------------------------------- */

/* Two processes, 1 GiB of random-sized writes and reads, every byte checked. */
TEST(qp_process_stream_1gib)
{
	const uint64_t total = 1ull << 30;
	enum { POOL = 1 << 20 };
	static uint8_t pool[POOL + 65536], buf[65536];
	uint64_t rng = 99, got = 0, fnv = 0xcbf29ce484222325ull, child_fnv = 0;
	struct qp_fds peer;
	struct qp *a;
	int p[2];
	pid_t pid;

	th_fill(&rng, pool, POOL);
	memcpy(pool + POOL, pool, 65536); /* so a chunk never wraps the pool */
	ASSERT_OK(pipe(p));
	ASSERT_OK(qp_create(QP_SIZE_DEFAULT, QP_SIZE_DEFAULT, &a, &peer));
	pid = fork();
	ASSERT_GE(pid, 0);
	if (pid == 0) {
		/* Writer: stream byte i is pool[i % POOL], written in random sizes. */
		uint64_t wr = 1234, sent = 0, h = 0xcbf29ce484222325ull;
		struct qp *b;

		qp_detach(a); /* the parent's endpoint: not ours to close */
		if (qp_attach(&peer, &b))
			_exit(3);
		while (sent < total) {
			size_t len = 1 + (size_t)(th_rand(&wr) % 65536);
			if (len > total - sent)
				len = (size_t)(total - sent);
			const uint8_t *src = pool + (sent % POOL);
			ssize_t n = qp_write(b, src, len, 0);
			if (n <= 0)
				_exit(4);
			for (ssize_t i = 0; i < n; i++)
				h = (h ^ src[i]) * 0x100000001b3ull;
			sent += (uint64_t)n;
		}
		if (write(p[1], &h, sizeof(h)) != sizeof(h))
			_exit(5);
		qp_close(b);
		_exit(0);
	}
	close(peer.mem), close(peer.wake), close(peer.peer_wake), close(peer.alive);
	close(p[1]);
	for (;;) {
		size_t len = 1 + (size_t)(th_rand(&rng) % sizeof(buf));
		ssize_t n = qp_read(a, buf, len, 0);
		ASSERT_GE(n, 0);
		if (n == 0)
			break;
		if (memcmp(buf, pool + (got % POOL), (size_t)n) != 0)
			th_fail(__FILE__, __LINE__, "data differs near byte %llu",
				(unsigned long long)got);
		for (ssize_t i = 0; i < n; i++)
			fnv = (fnv ^ buf[i]) * 0x100000001b3ull;
		got += (uint64_t)n;
	}
	ASSERT_EQ(got, total);
	ASSERT_EQ(read(p[0], &child_fnv, sizeof(child_fnv)), (ssize_t)sizeof(child_fnv));
	ASSERT_EQ(fnv, child_fnv);
	int status;
	ASSERT_EQ(waitpid(pid, &status, 0), pid);
	ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	th_log("1 GiB checksum %016llx", (unsigned long long)fnv);
	qp_close(a);
}

struct blocker {
	int fd;
	atomic_bool stop;
};

/* The hostile peer: keeps clearing O_NONBLOCK on the wakeup descriptor it shares. */
static void *
make_blocking(void *arg)
{
	struct blocker *k = arg;

	while (!atomic_load(&k->stop))
		fcntl(k->fd, F_SETFL, 0);
	return NULL;
}

/*
 * A peer fills its wakeup counter and races qp_signal()'s fcntl to make the
 * write block. Under the guard (the daemon's) the write is interrupted and
 * that queue pair breaks with the reason; the caller never hangs. Without
 * the guard this test would hang at the first write that lost the race.
 */
TEST(qp_guard_blocked_wakeup)
{
	struct blocker k = { .fd = -1 };
	struct qp *a, *b;
	pthread_t t;
	int64_t t0 = clock_ns();
	int i;

	pair(4096, 4096, &a, &b);
	qp_guard_wakeups();
	k.fd = a->peer_wake;
	ASSERT_OK(eventfd_write(k.fd, 0xfffffffffffffffeull)); /* full: the next write would wait */
	ASSERT_OK(pthread_create(&t, NULL, make_blocking, &k));
	for (i = 0; i < 1000000 && !a->err; i++)
		qp__shut(a, false, true);
	atomic_store(&k.stop, true);
	pthread_join(t, NULL);
	th_log("broken after %d wakeups, %.1f ms: %s", i, (double)(clock_ns() - t0) / 1e6, a->why);
	ASSERT_EQ(a->err, -EPROTO);
	ASSERT(strstr(a->why, "wakeup descriptor block") != NULL);
	ASSERT_EQ(qp_read(a, &k, 1, QP_DONTWAIT), -EPROTO);
	qp_close(a);
	qp_close(b);
}
