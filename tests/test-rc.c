/* SPDX-License-Identifier: MIT */
/*
 * The RC transport (src/rdma/rc*.c). Two QPs joined by a simulated link:
 * per direction a queue of whole RoCE v2 frames (every packet goes
 * through roce_build() and back through roce_parse(), alternating IPv4 and
 * IPv6, tags and UDP checksums), with a delay, a capacity (xmit -EAGAIN),
 * and loss, duplication and reordering drawn from a seeded PRNG; a virtual
 * clock that jumps to the next event, so that timeouts of milliseconds
 * cost nothing. Also each role alone against hand-written packets, where
 * the IBA rules are checked packet by packet.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "rdma/rc.h"
#include "rdma/rc_int.h"
#include "rdma/roce.h"

#define MIB	   (1u << 20)
#define MAX_CQE	   4096
#define TIME_LIMIT (20 * 1000000000ll) /* virtual ns per run */
#define US	   1000ll

struct world;

/* A memory region of an end, as remote_mem() sees it. */
struct mr {
	uint32_t rkey;
	uint64_t va;
	size_t len;
	uint8_t *buf;
	unsigned access;
};

struct end {
	struct world *w;
	int id;
	struct rc_qp *qp;
	struct mr mr[4];
	int nmr;
	struct rc_cqe scq[MAX_CQE], rcq[MAX_CQE]; /* send and receive completions */
	size_t ns, nr;
	bool repost_on_flush; /* the completion callback posts a receive on each flush */
	unsigned reposts;
};

struct pkt {
	int64_t at;
	size_t len;
	uint8_t frame[];
};

struct link {
	struct pkt **q; /* in flight, sorted by delivery time (FIFO among equals) */
	size_t n, cap;
	size_t limit;		     /* -EAGAIN at this many in flight; 0: none */
	unsigned loss, dup, reorder; /* per mille */
	int64_t delay;
	bool dead;
	uint64_t rng, seq;
	uint64_t sent, lost, duped, reordered, refused;
	uint64_t ops[ROCE_OPCODE_COUNT];
};

struct world {
	struct end e[2];
	struct link l[2]; /* l[i]: from e[i] to e[1 - i] */
	int64_t now;
	unsigned mtu;
	/* Sees every packet the link takes (lost ones too), before its fate is drawn. */
	void (*tap)(struct world *w, int from, const struct roce_ib *ib);
	void *tap_arg;
};

/* ---- the link ---- */

static uint8_t framebuf[ROCE_FRAME_MAX];

static unsigned
roll(struct link *l)
{
	return (unsigned)(th_rand(&l->rng) % 1000);
}

static void
enqueue(struct link *l, int64_t at, const uint8_t *frame, size_t len)
{
	struct pkt *p = malloc(sizeof(*p) + len);
	size_t i;

	ASSERT(p);
	p->at = at;
	p->len = len;
	memcpy(p->frame, frame, len);
	if (l->n == l->cap) {
		l->cap = l->cap ? 2 * l->cap : 256;
		l->q = realloc(l->q, l->cap * sizeof(*l->q));
		ASSERT(l->q);
	}
	for (i = l->n; i > 0 && l->q[i - 1]->at > at; i--)
		;
	memmove(l->q + i + 1, l->q + i, (l->n - i) * sizeof(*l->q));
	l->q[i] = p;
	l->n++;
}

/* Wrap @ib as a whole frame, varying the outer headers with @seq. */
static size_t
wrap(const struct roce_ib *ib, unsigned mtu, uint64_t seq, int from)
{
	struct roce_frame f = { .ib = *ib };
	const char *why = NULL;
	ssize_t len;

	memcpy(f.src_mac, from ? "\x02\0\0\0\0\x02" : "\x02\0\0\0\0\x01", 6);
	memcpy(f.dst_mac, from ? "\x02\0\0\0\0\x01" : "\x02\0\0\0\0\x02", 6);
	f.ipv6 = seq & 1;
	f.vlan = seq & 2;
	f.tci = 0x2000 | 7;
	f.udp_csum = f.ipv6 || (seq & 4);
	f.src_ip[0] = 10;
	f.src_ip[3] = (uint8_t)(1 + from);
	f.dst_ip[0] = 10;
	f.dst_ip[3] = (uint8_t)(2 - from);
	f.ttl = 64;
	f.ip_id = (uint16_t)seq;
	f.flow_label = (uint32_t)seq & 0xfffff;
	f.src_port = (uint16_t)(49152 + from);
	len = roce_build(&f, mtu, framebuf, sizeof(framebuf), &why);
	if (len < 0)
		th_fail(__FILE__, __LINE__, "roce_build(%s psn %u): %s",
			roce_opcode_name(ib->opcode), ib->psn, why);
	return (size_t)len;
}

static int
link_xmit(void *ctx, const struct roce_ib *ib)
{
	struct end *e = ctx;
	struct world *w = e->w;
	struct link *l = &w->l[e->id];
	size_t len;
	int64_t at = w->now + l->delay;

	ASSERT_EQ(ib->dqpn, e->id ? 0x0a0001 : 0x0b0002);
	if (l->limit && l->n >= l->limit) {
		l->refused++;
		return -EAGAIN;
	}
	if (w->tap)
		w->tap(w, e->id, ib);
	l->sent++;
	l->ops[ib->opcode]++;
	len = wrap(ib, w->mtu, l->seq++, e->id);
	if (l->dead || roll(l) < l->loss) {
		l->lost++;
		return 0;
	}
	if (roll(l) < l->reorder) {
		at += (int64_t)(1 + th_rand(&l->rng) % 20) * US;
		l->reordered++;
	}
	enqueue(l, at, framebuf, len);
	if (roll(l) < l->dup) {
		enqueue(l, at + (int64_t)(th_rand(&l->rng) % 30) * US, framebuf, len);
		l->duped++;
	}
	return 0;
}

static void
link_free(struct link *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->q[i]);
	free(l->q);
}

/* ---- the ends ---- */

static int
end_remote_mem(void *ctx, uint32_t rkey, uint64_t va, uint32_t len, unsigned access, void **out)
{
	struct end *e = ctx;

	ASSERT(len > 0);
	ASSERT(access == RC_ACCESS_REMOTE_WRITE || access == RC_ACCESS_REMOTE_READ ||
	       access == RC_ACCESS_REMOTE_ATOMIC);
	for (int i = 0; i < e->nmr; i++) {
		struct mr *m = &e->mr[i];

		if (m->rkey != rkey)
			continue;
		if (!(m->access & access) || va < m->va || len > m->len ||
		    va - m->va > m->len - len)
			return -EACCES;
		*out = m->buf + (va - m->va);
		return 0;
	}
	return -EACCES;
}

static void
end_complete(void *ctx, const struct rc_cqe *c)
{
	struct end *e = ctx;

	if (c->recv) {
		ASSERT_LT(e->nr, MAX_CQE);
		e->rcq[e->nr++] = *c;
		if (e->repost_on_flush && c->status == RC_WC_WR_FLUSH_ERR) {
			struct rc_rqe r = { .wr_id = 9000 + e->reposts++ };

			ASSERT_OK(rc_post_recv(e->qp, &r));
		}
	} else {
		ASSERT_LT(e->ns, MAX_CQE);
		e->scq[e->ns++] = *c;
	}
}

static const struct rc_ops end_ops = {
	.xmit = link_xmit,
	.remote_mem = end_remote_mem,
	.complete = end_complete,
};

static struct rc_attr
attr_for(unsigned mtu, int side)
{
	struct rc_attr a = {
		.mtu = mtu,
		.qpn = side ? 0x0b0002 : 0x0a0001,
		.dest_qpn = side ? 0x0a0001 : 0x0b0002,
		.sq_psn = side ? 0x123456 : 0xabcdef,
		.rq_psn = side ? 0xabcdef : 0x123456,
		.pkey = ROCE_PKEY_DEFAULT,
		.timeout = 8, /* 1.05 ms */
		.retry_cnt = 7,
		.rnr_retry = 7,
		.min_rnr_timer = 1, /* 10 us */
		.max_rd_atomic = 4,
		.max_dest_rd_atomic = 4,
		.sq_depth = 512,
		.rq_depth = 512,
		.max_sge = 4,
	};
	return a;
}

/* Both ends with @a[0], @a[1] (NULL: defaults at @mtu), links 2 us long and clean. */
static void
world_init(struct world *w, unsigned mtu, const struct rc_attr *a0, const struct rc_attr *a1,
	   uint64_t seed)
{
	memset(w, 0, sizeof(*w));
	w->mtu = mtu;
	for (int i = 0; i < 2; i++) {
		struct rc_attr a = attr_for(mtu, i);
		const struct rc_attr *given = i ? a1 : a0;
		struct end *e = &w->e[i];

		e->w = w;
		e->id = i;
		ASSERT_OK(rc_create(given ? given : &a, &end_ops, e, &e->qp));
		w->l[i].delay = 2 * US;
		w->l[i].rng = seed * 2 + (uint64_t)i + 1;
	}
}

static void
world_free(struct world *w)
{
	for (int i = 0; i < 2; i++) {
		rc_destroy(w->e[i].qp);
		link_free(&w->l[i]);
	}
}

static void
add_mr(struct end *e, uint32_t rkey, uint64_t va, void *buf, size_t len, unsigned access)
{
	ASSERT_LT(e->nmr, 4);
	e->mr[e->nmr++] = (struct mr){ rkey, va, len, buf, access };
}

/* Deliver the packets due on link @i to its far end. */
static bool
deliver(struct world *w, int i)
{
	struct link *l = &w->l[i];
	bool any = false;

	while (l->n && l->q[0]->at <= w->now) {
		struct pkt *p = l->q[0];
		struct roce_frame f;
		const char *why = NULL;
		int r;

		l->n--;
		memmove(l->q, l->q + 1, l->n * sizeof(*l->q));
		r = roce_parse(p->frame, p->len, w->mtu, &f, &why);
		if (r)
			th_fail(__FILE__, __LINE__, "roce_parse: %s", why);
		r = rc_input(w->e[1 - i].qp, &f.ib, w->now);
		ASSERT(r == 0 || r == -ESTALE || r == -ENOTCONN);
		free(p);
		any = true;
	}
	return any;
}

/* Run until @done, or until nothing can happen any more (then false). */
static bool
world_run(struct world *w, bool (*done)(struct world *w, const void *arg), const void *arg,
	  int64_t limit)
{
	unsigned spins = 0;

	for (;;) {
		int64_t next = INT64_MAX, d;

		deliver(w, 0);
		deliver(w, 1);
		rc_poll(w->e[0].qp, w->now);
		rc_poll(w->e[1].qp, w->now);
		if (done(w, arg))
			return true;
		for (int i = 0; i < 2; i++) {
			if (w->l[i].n && w->l[i].q[0]->at < next)
				next = w->l[i].q[0]->at;
			d = rc_next_deadline(w->e[i].qp);
			if (d < next)
				next = d;
		}
		if (next == INT64_MAX)
			return false;
		if (next <= w->now) {
			ASSERT_LT(++spins, 1000); /* something asks to run now, yet does nothing */
			continue;
		}
		spins = 0;
		w->now = next;
		if (w->now > limit)
			return false;
	}
}

/* Done when end 0 has arg[0] send completions and end 1 arg[1] receive completions. */
static bool
counts_done(struct world *w, const void *arg)
{
	const size_t *want = arg;

	return w->e[0].ns >= want[0] && w->e[1].nr >= want[1] && w->e[1].ns >= want[2] &&
	       w->e[0].nr >= want[3];
}

static void
run_counts(struct world *w, size_t s0, size_t r1, size_t s1, size_t r0)
{
	size_t want[4] = { s0, r1, s1, r0 };

	if (!world_run(w, counts_done, want, w->now + TIME_LIMIT))
		th_fail(__FILE__, __LINE__,
			"stuck at %lld ns: end 0 %zu/%zu sends %zu/%zu recvs, end 1 %zu/%zu sends "
			"%zu/%zu recvs",
			(long long)w->now, w->e[0].ns, s0, w->e[0].nr, r0, w->e[1].ns, s1,
			w->e[1].nr, r1);
}

/* ---- posting ---- */

/* @len bytes at @buf as up to 3 sg entries, cut at places chosen by @cut. */
static int
split(struct iovec *sg, void *buf, size_t len, unsigned cut)
{
	size_t a = cut % 3 == 0 ? len : len / 3 + cut % 7, b;

	if (!buf)
		return 0;
	if (a > len)
		a = len;
	b = cut % 3 == 2 ? (len - a) / 2 : len - a;
	sg[0] = (struct iovec){ buf, a };
	sg[1] = (struct iovec){ (uint8_t *)buf + a, b };
	sg[2] = (struct iovec){ (uint8_t *)buf + a + b, len - a - b };
	return 3;
}

static void
post_op(struct end *e, uint64_t wr_id, uint8_t op, void *buf, size_t len, uint64_t va,
	uint32_t rkey, bool signaled)
{
	struct iovec sg[3];
	struct rc_wqe w = {
		.wr_id = wr_id,
		.opcode = op,
		.signaled = signaled,
		.imm = (uint32_t)(wr_id * 0x01000193u),
		.remote_va = va,
		.rkey = rkey,
		.sg = sg,
		.nsg = split(sg, buf, len, (unsigned)wr_id),
	};

	ASSERT_OK(rc_post_send(e->qp, &w));
}

static void
post_atomic(struct end *e, uint64_t wr_id, uint8_t op, void *res, uint64_t va, uint32_t rkey,
	    uint64_t compare_add, uint64_t swap)
{
	struct iovec sg = { res, 8 };
	struct rc_wqe w = {
		.wr_id = wr_id,
		.opcode = op,
		.signaled = true,
		.remote_va = va,
		.rkey = rkey,
		.compare_add = compare_add,
		.swap = swap,
		.sg = &sg,
		.nsg = 1,
	};

	ASSERT_OK(rc_post_send(e->qp, &w));
}

static void
post_recv(struct end *e, uint64_t wr_id, void *buf, size_t len)
{
	struct iovec sg[3];
	struct rc_rqe r = { .wr_id = wr_id, .sg = sg, .nsg = split(sg, buf, len, (unsigned)wr_id) };

	ASSERT_OK(rc_post_recv(e->qp, &r));
}

static uint8_t *
rand_buf(uint64_t *rng, size_t len)
{
	uint8_t *p = malloc(len ? len : 1);

	ASSERT(p);
	th_fill(rng, p, len);
	return p;
}

static uint64_t
fnv(const uint8_t *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 0x100000001b3ull;
	return h;
}

/* Checksums end to end, and the bytes (which tell where they differ). */
static void
assert_same_data(const uint8_t *a, const uint8_t *b, size_t n)
{
	ASSERT_EQ(fnv(a, n), fnv(b, n));
	ASSERT_MEM_EQ(a, b, n);
}

static void
assert_cqe(const struct rc_cqe *c, uint64_t wr_id, int status)
{
	if (c->wr_id != wr_id || c->status != status)
		th_fail(__FILE__, __LINE__, "completion wr_id %llu status %d, want %llu status %d",
			(unsigned long long)c->wr_id, c->status, (unsigned long long)wr_id, status);
}

static struct rc_stats
stats(const struct end *e)
{
	struct rc_stats s;

	rc_get_stats(e->qp, &s);
	return s;
}

static struct rc_stats
qstats(const struct rc_qp *qp)
{
	struct rc_stats s;

	rc_get_stats(qp, &s);
	return s;
}

static const size_t msg_sizes[] = { 0,	  1,	3,    255,   1023,  1024, 1025,
				    4095, 4096, 4097, 12289, 65549, MIB };
#define NSIZES (sizeof(msg_sizes) / sizeof(msg_sizes[0]))

TEST(rc_send_sizes)
{
	static const unsigned mtus[] = { 1024, 4096 };

	for (int m = 0; m < 2; m++) {
		struct world w;
		uint64_t rng = 1 + (uint64_t)m;
		uint8_t *src[NSIZES], *dst[NSIZES];

		world_init(&w, mtus[m], NULL, NULL, 11);
		for (size_t i = 0; i < NSIZES; i++) {
			src[i] = rand_buf(&rng, msg_sizes[i]);
			dst[i] = calloc(1, MIB + 7);
			post_recv(&w.e[1], 100 + i, dst[i], MIB + 7);
		}
		for (size_t i = 0; i < NSIZES; i++) {
			struct iovec sg[3];
			struct rc_wqe wq = {
				.wr_id = i,
				.opcode = i % 2 ? RC_WR_SEND_IMM : RC_WR_SEND,
				.signaled = true,
				.solicited = i % 3 == 0,
				.imm = 0xa0000000u + (uint32_t)i,
				.sg = sg,
				.nsg = split(sg, src[i], msg_sizes[i], (unsigned)i),
			};
			ASSERT_OK(rc_post_send(w.e[0].qp, &wq));
		}
		run_counts(&w, NSIZES, NSIZES, 0, 0);
		for (size_t i = 0; i < NSIZES; i++) {
			const struct rc_cqe *s = &w.e[0].scq[i], *r = &w.e[1].rcq[i];

			assert_cqe(s, i, RC_WC_SUCCESS);
			ASSERT_EQ(s->opcode, i % 2 ? RC_WR_SEND_IMM : RC_WR_SEND);
			ASSERT(!s->recv);
			assert_cqe(r, 100 + i, RC_WC_SUCCESS);
			ASSERT(r->recv);
			ASSERT_EQ(r->opcode, RC_WC_RECV);
			ASSERT_EQ(r->byte_len, msg_sizes[i]);
			ASSERT_EQ(r->with_imm, i % 2 == 1);
			ASSERT_EQ(r->imm, i % 2 ? 0xa0000000u + i : 0);
			ASSERT_EQ(r->solicited, i % 3 == 0);
			assert_same_data(src[i], dst[i], msg_sizes[i]);
			free(src[i]);
			free(dst[i]);
		}
		/* A clean link: nothing sent twice, every packet arrived, ACKs coalesced. */
		struct rc_stats a = stats(&w.e[0]), b = stats(&w.e[1]);
		uint64_t pkts = 0;

		for (size_t i = 0; i < NSIZES; i++)
			pkts += msg_sizes[i] ? (msg_sizes[i] + mtus[m] - 1) / mtus[m] : 1;
		ASSERT_EQ(a.retransmits, 0);
		ASSERT_EQ(a.timeouts, 0);
		ASSERT_EQ(b.dup_requests, 0);
		ASSERT_EQ(a.packets_sent, pkts);
		ASSERT_EQ(b.packets_rcvd, pkts);
		ASSERT_EQ(a.packets_rcvd, b.packets_sent);
		ASSERT_EQ(a.acks_rcvd, b.acks_sent);
		ASSERT_GE(b.acks_sent, NSIZES);
		ASSERT_LE(b.acks_sent, NSIZES + 2 * pkts / RC__ACK_EVERY);
		ASSERT_EQ(b.naks_sent + b.rnr_naks_sent, 0);
		ASSERT_EQ(rc_state(w.e[0].qp), RC_STATE_RTS);
		world_free(&w);
	}
}

TEST(rc_write_sizes)
{
	static const unsigned mtus[] = { 1024, 4096 };

	for (int m = 0; m < 2; m++) {
		struct world w;
		uint64_t rng = 7 + (uint64_t)m, va = 0x7f0000001000ull, off = 0;
		size_t total = 0, nimm = 0;
		uint8_t *src[NSIZES], *mem;
		size_t at[NSIZES];

		for (size_t i = 0; i < NSIZES; i++)
			total += msg_sizes[i] + 64;
		mem = calloc(1, total);
		world_init(&w, mtus[m], NULL, NULL, 12);
		add_mr(&w.e[1], 0x1234, va, mem, total, RC_ACCESS_REMOTE_WRITE);
		for (size_t i = 0; i < NSIZES; i++) {
			src[i] = rand_buf(&rng, msg_sizes[i]);
			at[i] = off;
			off += msg_sizes[i] + 64;
			if (i % 2)
				post_recv(&w.e[1], 100 + i, NULL,
					  0); /* WRITE_IMM takes a receive */
			post_op(&w.e[0], i, i % 2 ? RC_WR_WRITE_IMM : RC_WR_WRITE, src[i],
				msg_sizes[i], va + at[i], 0x1234, true);
			nimm += i % 2;
		}
		run_counts(&w, NSIZES, nimm, 0, 0);
		for (size_t i = 0, k = 0; i < NSIZES; i++) {
			assert_cqe(&w.e[0].scq[i], i, RC_WC_SUCCESS);
			assert_same_data(src[i], mem + at[i], msg_sizes[i]);
			for (size_t j = 0; j < 64; j++)
				ASSERT_EQ(mem[at[i] + msg_sizes[i] + j], 0); /* nothing past it */
			if (i % 2) {
				const struct rc_cqe *r = &w.e[1].rcq[k++];

				assert_cqe(r, 100 + i, RC_WC_SUCCESS);
				ASSERT_EQ(r->opcode, RC_WC_RECV_RDMA_WITH_IMM);
				ASSERT_EQ(r->byte_len, msg_sizes[i]);
				ASSERT(r->with_imm);
				ASSERT_EQ(r->imm, (uint32_t)(i * 0x01000193u));
			}
			free(src[i]);
		}
		ASSERT_EQ(stats(&w.e[0]).retransmits, 0);
		free(mem);
		world_free(&w);
	}
}

TEST(rc_read_sizes)
{
	static const unsigned mtus[] = { 1024, 4096 };

	for (int m = 0; m < 2; m++) {
		struct world w;
		uint64_t rng = 3 + (uint64_t)m, va = 0x10000;
		uint8_t *mem = rand_buf(&rng, MIB + 4096), *dst[NSIZES];
		uint64_t resp = 0;

		world_init(&w, mtus[m], NULL, NULL, 13);
		add_mr(&w.e[1], 0x77, va, mem, MIB + 4096, RC_ACCESS_REMOTE_READ);
		for (size_t i = 0; i < NSIZES; i++) {
			size_t off = (i * 4099) % 4096;

			dst[i] = calloc(1, msg_sizes[i] + 1);
			post_op(&w.e[0], i, RC_WR_READ, dst[i], msg_sizes[i], va + off, 0x77, true);
			resp += msg_sizes[i] ? (msg_sizes[i] + mtus[m] - 1) / mtus[m] : 1;
		}
		run_counts(&w, NSIZES, 0, 0, 0);
		for (size_t i = 0; i < NSIZES; i++) {
			size_t off = (i * 4099) % 4096;

			assert_cqe(&w.e[0].scq[i], i, RC_WC_SUCCESS);
			ASSERT_EQ(w.e[0].scq[i].opcode, RC_WR_READ);
			ASSERT_EQ(w.e[0].scq[i].byte_len, msg_sizes[i]);
			assert_same_data(mem + off, dst[i], msg_sizes[i]);
			ASSERT_EQ(dst[i][msg_sizes[i]], 0);
			free(dst[i]);
		}
		ASSERT_EQ(stats(&w.e[1]).read_resps_sent, resp);
		ASSERT_EQ(w.l[0].ops[ROCE_READ_REQ], NSIZES);
		ASSERT_EQ(stats(&w.e[0]).retransmits, 0);
		free(mem);
		world_free(&w);
	}
}

TEST(rc_atomics)
{
	struct world w;
	uint64_t mem[4] = { 100, 7, 42, UINT64_MAX - 1 }, res[4] = { 0 };
	uint8_t split_res[9] = { 0 };
	struct iovec sg[2] = { { split_res, 3 }, { split_res + 3, 6 } };
	struct rc_wqe wq = {
		.wr_id = 4,
		.opcode = RC_WR_FETCH_ADD,
		.signaled = true,
		.remote_va = 0x2000 + 24,
		.rkey = 9,
		.compare_add = 10,
		.sg = sg,
		.nsg = 2,
	};
	uint64_t v;

	world_init(&w, 1024, NULL, NULL, 14);
	add_mr(&w.e[1], 9, 0x2000, mem, sizeof(mem), RC_ACCESS_REMOTE_ATOMIC);
	post_atomic(&w.e[0], 0, RC_WR_FETCH_ADD, &res[0], 0x2000, 9, 5, 0);
	post_atomic(&w.e[0], 1, RC_WR_CMP_SWP, &res[1], 0x2008, 9, 7, 99);  /* equal: swaps */
	post_atomic(&w.e[0], 2, RC_WR_CMP_SWP, &res[2], 0x2010, 9, 1, 5);   /* differs: stays */
	post_atomic(&w.e[0], 3, RC_WR_FETCH_ADD, &res[3], 0x2000, 9, 1, 0); /* sees the first */
	ASSERT_OK(rc_post_send(w.e[0].qp, &wq));			    /* wraps */
	run_counts(&w, 5, 0, 0, 0);
	for (int i = 0; i < 5; i++) {
		assert_cqe(&w.e[0].scq[i], (uint64_t)i, RC_WC_SUCCESS);
		ASSERT_EQ(w.e[0].scq[i].opcode, i == 1 || i == 2 ? RC_WR_CMP_SWP : RC_WR_FETCH_ADD);
	}
	ASSERT_EQ(res[0], 100);
	ASSERT_EQ(res[1], 7);
	ASSERT_EQ(res[2], 42);
	ASSERT_EQ(res[3], 105);
	memcpy(&v, split_res, 8); /* the result scattered over two entries */
	ASSERT_EQ(v, UINT64_MAX - 1);
	ASSERT_EQ(split_res[8], 0);
	ASSERT_EQ(mem[0], 106);
	ASSERT_EQ(mem[1], 99);
	ASSERT_EQ(mem[2], 42);
	ASSERT_EQ(mem[3], 8);
	ASSERT_EQ(stats(&w.e[1]).atomic_acks_sent, 5);
	world_free(&w);
}

static void
lossy(struct world *w, unsigned loss, unsigned dup, unsigned reorder)
{
	for (int i = 0; i < 2; i++) {
		w->l[i].loss = loss;
		w->l[i].dup = dup;
		w->l[i].reorder = reorder;
	}
}

TEST(rc_atomic_exactly_once)
{
	enum { N = 300 };
	struct rc_attr a = attr_for(1024, 0), b = attr_for(1024, 1);
	struct world w;
	uint64_t counter = 0, *res = calloc(N, 8);
	struct rc_stats sa, sb;

	a.timeout = b.timeout = 5; /* 131 us */
	world_init(&w, 1024, &a, &b, 15);
	lossy(&w, 100, 100, 100);
	add_mr(&w.e[1], 0x99, 0x9000, &counter, 8, RC_ACCESS_REMOTE_ATOMIC);
	for (int i = 0; i < N; i++)
		post_atomic(&w.e[0], (uint64_t)i, RC_WR_FETCH_ADD, &res[i], 0x9000, 0x99, 1, 0);
	run_counts(&w, N, 0, 0, 0);
	for (int i = 0; i < N; i++) {
		assert_cqe(&w.e[0].scq[i], (uint64_t)i, RC_WC_SUCCESS);
		ASSERT_EQ(res[i], i); /* executed in order, each once */
	}
	ASSERT_EQ(counter, N);
	sa = stats(&w.e[0]);
	sb = stats(&w.e[1]);
	th_log("lost %llu/%llu duplicated %llu; retransmits %llu timeouts %llu dups %llu",
	       (unsigned long long)(w.l[0].lost + w.l[1].lost),
	       (unsigned long long)(w.l[0].sent + w.l[1].sent),
	       (unsigned long long)(w.l[0].duped + w.l[1].duped),
	       (unsigned long long)sa.retransmits, (unsigned long long)sa.timeouts,
	       (unsigned long long)sb.dup_requests);
	ASSERT_GT(w.l[0].duped, 0);
	ASSERT_GT(sa.retransmits, 0);
	ASSERT_GT(sb.dup_requests, 0);
	ASSERT_GT(sb.atomic_acks_sent, N); /* some answered again from the saved results */
	free(res);
	world_free(&w);
}

/* A random mix both ways over a bad link: every byte and every completion checked. */
struct mix_op {
	uint8_t op;
	size_t len;
	uint8_t *src, *dst; /* SEND: dst is the receive buffer; READ: dst is ours */
	uint64_t off;	    /* WRITE, READ: offset in the peer's region */
	uint64_t add, orig, result;
};

struct mix_side {
	struct mix_op ops[80];
	int n;
	uint8_t *mem; /* writes land at [0, 4 MiB), reads from [4, 6), the counter at 6 */
	uint64_t counter;
	size_t nrecv;
};

#define MIX_WRITE_AREA (4 * MIB)
#define MIX_READ_AREA  (2 * MIB)
#define MIX_COUNTER    (MIX_WRITE_AREA + MIX_READ_AREA)

static void
mix_plan(struct world *w, struct mix_side *s, int me, uint64_t *rng)
{
	uint64_t woff = 0, sum = 0;
	struct end *e = &w->e[me], *peer = &w->e[1 - me];

	for (int i = 0; i < 80; i++) {
		struct mix_op *o = &s[me].ops[i];
		unsigned kind = (unsigned)(th_rand(rng) % 10);
		size_t len = (size_t)(th_rand(rng) % 20000);

		if (i == 3)
			len = MIB; /* one large of each end */
		if (th_rand(rng) % 8 == 0)
			len = th_rand(rng) % 3;
		o->len = len;
		if (kind < 3) {
			o->op = kind ? RC_WR_SEND : RC_WR_SEND_IMM;
			o->src = rand_buf(rng, len);
			o->dst = calloc(1, len + 16);
			post_recv(peer, 1000 + s[1 - me].nrecv++, o->dst, len + 16);
			post_op(e, (uint64_t)i, o->op, o->src, len, 0, 0, true);
		} else if (kind < 6 && woff + len <= MIX_WRITE_AREA) {
			o->op = kind == 5 ? RC_WR_WRITE_IMM : RC_WR_WRITE;
			o->src = rand_buf(rng, len);
			o->off = woff;
			woff += len;
			if (o->op == RC_WR_WRITE_IMM)
				post_recv(peer, 1000 + s[1 - me].nrecv++, NULL, 0);
			post_op(e, (uint64_t)i, o->op, o->src, len, 0x100000000ull + o->off, 0x51,
				i % 4 != 1);
		} else if (kind < 8) {
			o->op = RC_WR_READ;
			o->off = MIX_WRITE_AREA + th_rand(rng) % (MIX_READ_AREA - len);
			o->dst = calloc(1, len + 1);
			post_op(e, (uint64_t)i, o->op, o->dst, len, 0x100000000ull + o->off, 0x52,
				true);
		} else {
			o->op = RC_WR_FETCH_ADD;
			o->add = th_rand(rng) % 1000;
			o->orig = sum;
			sum += o->add;
			post_atomic(e, (uint64_t)i, RC_WR_FETCH_ADD, &o->result,
				    0x100000000ull + MIX_COUNTER, 0x53, o->add, 0);
		}
		s[me].n++;
	}
}

static void
mix_check(struct world *w, struct mix_side *s, int me)
{
	struct end *e = &w->e[me];
	uint8_t *peer_mem = s[1 - me].mem;
	uint64_t sum = 0;
	size_t k = 0;

	for (int i = 0; i < s[me].n; i++) {
		struct mix_op *o = &s[me].ops[i];
		bool signaled = !((o->op == RC_WR_WRITE || o->op == RC_WR_WRITE_IMM) && i % 4 == 1);

		if (signaled) {
			ASSERT_LT(k, e->ns);
			assert_cqe(&e->scq[k++], (uint64_t)i, RC_WC_SUCCESS);
		}
		switch (o->op) {
		case RC_WR_SEND:
		case RC_WR_SEND_IMM:
			assert_same_data(o->src, o->dst, o->len);
			break;
		case RC_WR_WRITE:
		case RC_WR_WRITE_IMM:
			assert_same_data(o->src, peer_mem + o->off, o->len);
			break;
		case RC_WR_READ:
			assert_same_data(peer_mem + o->off, o->dst, o->len);
			break;
		default:
			ASSERT_EQ(o->result, o->orig);
			sum += o->add;
			break;
		}
		free(o->src);
		free(o->dst);
	}
	ASSERT_EQ(k, e->ns);
	memcpy(&s[1 - me].counter, peer_mem + MIX_COUNTER, 8);
	ASSERT_EQ(s[1 - me].counter, sum);
	/* Receives complete in posting order, all successfully. */
	ASSERT_EQ(w->e[1 - me].nr, s[1 - me].nrecv);
	for (size_t i = 0; i < s[1 - me].nrecv; i++)
		assert_cqe(&w->e[1 - me].rcq[i], 1000 + i, RC_WC_SUCCESS);
}

static size_t
signaled_count(const struct mix_side *s)
{
	size_t n = 0;

	for (int i = 0; i < s->n; i++)
		n += !((s->ops[i].op == RC_WR_WRITE || s->ops[i].op == RC_WR_WRITE_IMM) &&
		       i % 4 == 1);
	return n;
}

static void
mix_run(unsigned mtu, uint64_t seed, unsigned loss, unsigned dup, unsigned reorder)
{
	struct rc_attr a = attr_for(mtu, 0), b = attr_for(mtu, 1);
	static struct mix_side s[2];
	struct world w;
	uint64_t rng = seed;
	struct rc_stats sa, sb;

	memset(s, 0, sizeof(s));
	a.timeout = b.timeout = 5;
	a.window = 64;
	world_init(&w, mtu, &a, &b, seed);
	lossy(&w, loss, dup, reorder);
	for (int i = 0; i < 2; i++) {
		s[i].mem = rand_buf(&rng, MIX_COUNTER + 8);
		memset(s[i].mem, 0, MIX_WRITE_AREA);
		memset(s[i].mem + MIX_COUNTER, 0, 8);
		add_mr(&w.e[i], 0x51, 0x100000000ull, s[i].mem, MIX_WRITE_AREA,
		       RC_ACCESS_REMOTE_WRITE);
		add_mr(&w.e[i], 0x52, 0x100000000ull, s[i].mem, MIX_WRITE_AREA + MIX_READ_AREA,
		       RC_ACCESS_REMOTE_READ);
		add_mr(&w.e[i], 0x53, 0x100000000ull + MIX_COUNTER, s[i].mem + MIX_COUNTER, 8,
		       RC_ACCESS_REMOTE_ATOMIC);
	}
	mix_plan(&w, s, 0, &rng);
	mix_plan(&w, s, 1, &rng);
	run_counts(&w, signaled_count(&s[0]), s[1].nrecv, signaled_count(&s[1]), s[0].nrecv);
	mix_check(&w, s, 0);
	mix_check(&w, s, 1);
	sa = stats(&w.e[0]);
	sb = stats(&w.e[1]);
	th_log("mtu %u: %llu+%llu packets, lost %llu dup %llu reordered %llu; retransmits "
	       "%llu+%llu timeouts %llu+%llu naks %llu+%llu implicit %llu+%llu",
	       mtu, (unsigned long long)w.l[0].sent, (unsigned long long)w.l[1].sent,
	       (unsigned long long)(w.l[0].lost + w.l[1].lost),
	       (unsigned long long)(w.l[0].duped + w.l[1].duped),
	       (unsigned long long)(w.l[0].reordered + w.l[1].reordered),
	       (unsigned long long)sa.retransmits, (unsigned long long)sb.retransmits,
	       (unsigned long long)sa.timeouts, (unsigned long long)sb.timeouts,
	       (unsigned long long)sa.naks_rcvd, (unsigned long long)sb.naks_rcvd,
	       (unsigned long long)sa.implicit_naks, (unsigned long long)sb.implicit_naks);
	ASSERT_EQ(rc_state(w.e[0].qp), RC_STATE_RTS);
	ASSERT_EQ(rc_state(w.e[1].qp), RC_STATE_RTS);
	if (loss) {
		ASSERT_GT(sa.retransmits, 0);
		ASSERT_GT(sb.retransmits, 0);
		ASSERT_GT(sa.naks_rcvd + sa.timeouts + sa.implicit_naks, 0);
		ASSERT_GT(sb.dup_requests + sa.dup_requests, 0);
	}
	for (int i = 0; i < 2; i++)
		free(s[i].mem);
	world_free(&w);
}

TEST(rc_lossy_mix)
{
	mix_run(1024, 21, 0, 0, 0);
	mix_run(1024, 22, 50, 30, 50);
	mix_run(4096, 23, 50, 30, 50);
	mix_run(1024, 24, 150, 50, 100);
}

TEST(rc_psn_wrap)
{
	struct rc_attr a = attr_for(256, 0), b = attr_for(256, 1);
	struct world w;
	uint64_t rng = 5;
	uint8_t *src = rand_buf(&rng, 1280 * 40), *dst = calloc(1, 1280 * 40);
	uint8_t *dst2 = calloc(1, 1280 * 40);

	a.sq_psn = b.rq_psn = 0xffffe0;
	b.sq_psn = a.rq_psn = 0xfffff8;
	a.timeout = b.timeout = 5;
	world_init(&w, 256, &a, &b, 16);
	lossy(&w, 50, 20, 50);
	add_mr(&w.e[0], 0x5, 0x0, dst2, 1280 * 40, RC_ACCESS_REMOTE_WRITE);
	for (int i = 0; i < 40; i++) {
		post_recv(&w.e[1], (uint64_t)i, dst + i * 1280, 1280);
		post_op(&w.e[0], (uint64_t)i, RC_WR_SEND, src + i * 1280, 1280, 0, 0, true);
		/* and the other way, WRITEs back into end 0 */
		post_op(&w.e[1], (uint64_t)i, RC_WR_WRITE, src + i * 1280, 1280, (uint64_t)i * 1280,
			0x5, true);
	}
	run_counts(&w, 40, 40, 40, 0);
	for (int i = 0; i < 40; i++) {
		assert_cqe(&w.e[0].scq[i], (uint64_t)i, RC_WC_SUCCESS);
		assert_cqe(&w.e[1].scq[i], (uint64_t)i, RC_WC_SUCCESS);
		assert_cqe(&w.e[1].rcq[i], (uint64_t)i, RC_WC_SUCCESS);
	}
	assert_same_data(src, dst, 1280 * 40);
	assert_same_data(src, dst2, 1280 * 40);
	ASSERT_GT(stats(&w.e[0]).retransmits, 0);
	ASSERT_GT(stats(&w.e[1]).retransmits, 0);
	free(src);
	free(dst);
	free(dst2);
	world_free(&w);
}

/* Bad R_Key, bounds, permission: REM_ACCESS_ERR, then WR_FLUSH_ERR for the rest. */
TEST(rc_remote_access_errors)
{
	static const struct {
		uint8_t op;
		uint64_t va;
		uint32_t rkey;
		size_t len;
	} bad[] = {
		{ RC_WR_WRITE, 0x4000, 0x999, 100 },	   /* no such R_Key */
		{ RC_WR_WRITE, 0x4000 + 4000, 0x40, 200 }, /* past the region's end */
		{ RC_WR_WRITE, 0x3ff0, 0x40, 100 },	   /* before its start */
		{ RC_WR_WRITE, 0x4000, 0x41, 10 },	   /* read-only region */
		{ RC_WR_READ, 0x4000, 0x40, 10 },	   /* write-only region */
		{ RC_WR_READ, 0x4000, 0x999, 5000 },	   /* multi-packet READ, no such key */
		{ RC_WR_FETCH_ADD, 0x4000, 0x40, 8 },	   /* no atomic access */
		{ RC_WR_WRITE_IMM, 0x4000, 0x999, 3000 },  /* WRITE_IMM: its receive is flushed */
	};

	for (size_t t = 0; t < sizeof(bad) / sizeof(bad[0]); t++) {
		struct world w;
		static uint8_t mem[4096], buf[8192];
		uint64_t res;

		world_init(&w, 1024, NULL, NULL, 17 + t);
		add_mr(&w.e[1], 0x40, 0x4000, mem, sizeof(mem), RC_ACCESS_REMOTE_WRITE);
		add_mr(&w.e[1], 0x41, 0x4000, mem, sizeof(mem), RC_ACCESS_REMOTE_READ);
		for (int i = 0; i < 3; i++)
			post_recv(&w.e[1], 50 + (uint64_t)i, buf, 2000);
		post_op(&w.e[0], 0, RC_WR_WRITE, buf, 3000, 0x4000, 0x40, true);
		if (bad[t].op == RC_WR_FETCH_ADD)
			post_atomic(&w.e[0], 1, bad[t].op, &res, bad[t].va, bad[t].rkey, 1, 0);
		else /* unsignaled: errors complete all the same */
			post_op(&w.e[0], 1, bad[t].op, buf, bad[t].len, bad[t].va, bad[t].rkey,
				false);
		post_op(&w.e[0], 2, RC_WR_SEND, buf, 10, 0, 0, true);
		post_op(&w.e[0], 3, RC_WR_READ, buf, 100, 0x4000, 0x41, false);
		run_counts(&w, 4, 3, 0, 0);
		assert_cqe(&w.e[0].scq[0], 0, RC_WC_SUCCESS);
		assert_cqe(&w.e[0].scq[1], 1, RC_WC_REM_ACCESS_ERR);
		assert_cqe(&w.e[0].scq[2], 2, RC_WC_WR_FLUSH_ERR);
		assert_cqe(&w.e[0].scq[3], 3, RC_WC_WR_FLUSH_ERR);
		ASSERT_EQ(w.e[0].ns, 4);
		/* The responder went to ERR too: its receives flushed (IBA class C). */
		for (int i = 0; i < 3; i++) {
			assert_cqe(&w.e[1].rcq[i], 50 + (uint64_t)i, RC_WC_WR_FLUSH_ERR);
			ASSERT(w.e[1].rcq[i].recv);
		}
		ASSERT_EQ(rc_state(w.e[0].qp), RC_STATE_ERR);
		ASSERT_EQ(rc_state(w.e[1].qp), RC_STATE_ERR);
		ASSERT_EQ(stats(&w.e[1]).naks_sent, 1);
		ASSERT_EQ(stats(&w.e[0]).naks_rcvd, 1);
		/* Work posted in ERR is flushed at the next poll. */
		post_op(&w.e[0], 4, RC_WR_SEND, buf, 10, 0, 0, false);
		ASSERT_EQ(w.e[0].ns, 4);
		ASSERT_EQ(rc_next_deadline(w.e[0].qp), w.now);
		rc_poll(w.e[0].qp, w.now);
		assert_cqe(&w.e[0].scq[4], 4, RC_WC_WR_FLUSH_ERR);
		world_free(&w);
	}
}

TEST(rc_invalid_requests)
{
	struct world w;
	static uint8_t buf[8192], mem[64];
	uint64_t res = 1;

	/* A misaligned atomic: NAK invalid request. */
	world_init(&w, 1024, NULL, NULL, 30);
	add_mr(&w.e[1], 0x60, 0x6000, mem, sizeof(mem), RC_ACCESS_REMOTE_ATOMIC);
	post_atomic(&w.e[0], 0, RC_WR_FETCH_ADD, &res, 0x6000, 0x60, 1, 0);
	post_atomic(&w.e[0], 1, RC_WR_CMP_SWP, &res, 0x6004, 0x60, 0, 1);
	post_atomic(&w.e[0], 2, RC_WR_FETCH_ADD, &res, 0x6008, 0x60, 1, 0);
	run_counts(&w, 3, 0, 0, 0);
	assert_cqe(&w.e[0].scq[0], 0, RC_WC_SUCCESS);
	assert_cqe(&w.e[0].scq[1], 1, RC_WC_REM_INV_REQ_ERR);
	assert_cqe(&w.e[0].scq[2], 2, RC_WC_WR_FLUSH_ERR);
	ASSERT_EQ(mem[0], 1);
	ASSERT_EQ(mem[8], 0);
	world_free(&w);

	/* A receive too small: LOC_LEN_ERR there, REM_INV_REQ_ERR here. */
	world_init(&w, 1024, NULL, NULL, 31);
	post_recv(&w.e[1], 70, buf, 100);
	post_recv(&w.e[1], 71, buf, 5000);
	post_op(&w.e[0], 0, RC_WR_SEND, buf, 3000, 0, 0, true);
	post_op(&w.e[0], 1, RC_WR_SEND, buf, 30, 0, 0, true);
	run_counts(&w, 2, 2, 0, 0);
	assert_cqe(&w.e[0].scq[0], 0, RC_WC_REM_INV_REQ_ERR);
	assert_cqe(&w.e[0].scq[1], 1, RC_WC_WR_FLUSH_ERR);
	assert_cqe(&w.e[1].rcq[0], 70, RC_WC_LOC_LEN_ERR);
	ASSERT_EQ(w.e[1].rcq[0].opcode, RC_WC_RECV);
	assert_cqe(&w.e[1].rcq[1], 71, RC_WC_WR_FLUSH_ERR);
	world_free(&w);

	/* More READs at once than the responder takes: NAK invalid request. */
	struct rc_attr b = attr_for(1024, 1);

	b.max_dest_rd_atomic = 1;
	world_init(&w, 1024, NULL, &b, 32);
	w.l[1].limit = 1; /* the responses queue up at the responder */
	add_mr(&w.e[1], 0x61, 0x0, buf, sizeof(buf), RC_ACCESS_REMOTE_READ);
	for (int i = 0; i < 4; i++)
		post_op(&w.e[0], (uint64_t)i, RC_WR_READ, buf, 8000, 0, 0x61, true);
	run_counts(&w, 4, 0, 0, 0);
	assert_cqe(&w.e[0].scq[0], 0, RC_WC_SUCCESS);
	assert_cqe(&w.e[0].scq[1], 1, RC_WC_REM_INV_REQ_ERR);
	assert_cqe(&w.e[0].scq[2], 2, RC_WC_WR_FLUSH_ERR);
	assert_cqe(&w.e[0].scq[3], 3, RC_WC_WR_FLUSH_ERR);
	world_free(&w);
}

/* Times at which end 0 sent a given opcode. */
struct sends {
	uint8_t op;
	int64_t at[256];
	int n;
};

static void
tap_sends(struct world *w, int from, const struct roce_ib *ib)
{
	struct sends *s = w->tap_arg;

	if (from == 0 && ib->opcode == s->op && s->n < 256)
		s->at[s->n++] = w->now;
}

static bool
rnr_naks_seen(struct world *w, const void *arg)
{
	return stats(&w->e[0]).rnr_naks_rcvd >= *(const uint64_t *)arg;
}

TEST(rc_rnr)
{
	struct rc_attr a = attr_for(1024, 0), b = attr_for(1024, 1);
	struct world w;
	struct sends s = { .op = ROCE_SEND_ONLY };
	uint64_t want = 3, rng = 8;
	uint8_t *src = rand_buf(&rng, 3000), dst[3000];

	/* A receive posted late: RNR NAKs, each retry after the timer, then it lands. */
	b.min_rnr_timer = 4; /* 40 us */
	a.rnr_retry = 5;
	world_init(&w, 1024, &a, &b, 40);
	w.tap = tap_sends;
	w.tap_arg = &s;
	post_op(&w.e[0], 0, RC_WR_SEND, src, 1000, 0, 0, true);
	ASSERT(world_run(&w, rnr_naks_seen, &want, TIME_LIMIT));
	ASSERT_EQ(w.e[0].ns, 0);
	post_recv(&w.e[1], 1, dst, sizeof(dst));
	run_counts(&w, 1, 1, 0, 0);
	assert_cqe(&w.e[0].scq[0], 0, RC_WC_SUCCESS);
	assert_cqe(&w.e[1].rcq[0], 1, RC_WC_SUCCESS);
	assert_same_data(src, dst, 1000);
	ASSERT_EQ(stats(&w.e[1]).rnr_naks_sent, stats(&w.e[0]).rnr_naks_rcvd);
	ASSERT_GE(s.n, 4);
	for (int i = 1; i < s.n; i++) /* a round trip of 4 us plus the RNR timer */
		ASSERT_GE(s.at[i] - s.at[i - 1], 40 * US);
	ASSERT_EQ(stats(&w.e[0]).timeouts, 0);
	world_free(&w);

	/* Never posted: rnr_retry 3 allows 3 retries after the first RNR NAK. */
	a.rnr_retry = 3;
	world_init(&w, 1024, &a, &b, 41);
	post_op(&w.e[0], 0, RC_WR_SEND, src, 100, 0, 0, true);
	post_op(&w.e[0], 1, RC_WR_SEND, src, 100, 0, 0, true);
	run_counts(&w, 2, 0, 0, 0);
	assert_cqe(&w.e[0].scq[0], 0, RC_WC_RNR_RETRY_EXC_ERR);
	assert_cqe(&w.e[0].scq[1], 1, RC_WC_WR_FLUSH_ERR);
	ASSERT_EQ(stats(&w.e[1]).rnr_naks_sent, 4);
	ASSERT_EQ(rc_state(w.e[0].qp), RC_STATE_ERR);
	ASSERT_EQ(rc_state(w.e[1].qp), RC_STATE_RTS); /* an RNR NAK is no error there */
	world_free(&w);

	/* rnr_retry 7: no limit; a multi-packet WRITE_IMM waits at its last packet. */
	a.rnr_retry = 7;
	b.min_rnr_timer = 0; /* 655.36 ms: the virtual clock does not mind */
	want = 30;
	static uint8_t mem[4096];
	world_init(&w, 1024, &a, &b, 42);
	add_mr(&w.e[1], 0x70, 0x7000, mem, sizeof(mem), RC_ACCESS_REMOTE_WRITE);
	post_op(&w.e[0], 0, RC_WR_WRITE_IMM, src, 3000, 0x7000, 0x70, true);
	ASSERT(world_run(&w, rnr_naks_seen, &want, 100 * TIME_LIMIT));
	ASSERT_GE(w.now, 29 * rc_rnr_timer_ns(0));
	post_recv(&w.e[1], 5, NULL, 0);
	run_counts(&w, 1, 1, 0, 0);
	assert_cqe(&w.e[0].scq[0], 0, RC_WC_SUCCESS);
	assert_cqe(&w.e[1].rcq[0], 5, RC_WC_SUCCESS);
	ASSERT_EQ(w.e[1].rcq[0].opcode, RC_WC_RECV_RDMA_WITH_IMM);
	ASSERT_EQ(w.e[1].rcq[0].byte_len, 3000);
	assert_same_data(src, mem, 3000);
	/* Only the last packet was sent again: the first two were taken. */
	ASSERT_EQ(w.l[0].ops[ROCE_WRITE_FIRST], 1);
	ASSERT_EQ(w.l[0].ops[ROCE_WRITE_MIDDLE], 1);
	ASSERT_GE(w.l[0].ops[ROCE_WRITE_LAST_IMM], 31);
	free(src);
	world_free(&w);
}

TEST(rc_dead_link)
{
	struct rc_attr a = attr_for(1024, 0);
	struct world w;
	static uint8_t buf[4096];
	int64_t t = rc_timeout_ns(4);

	a.timeout = 4; /* 65.5 us */
	a.retry_cnt = 3;
	world_init(&w, 1024, &a, NULL, 50);
	w.l[0].dead = true;
	post_recv(&w.e[1], 9, buf, sizeof(buf));
	post_op(&w.e[0], 0, RC_WR_SEND, buf, 3000, 0, 0, true);
	post_op(&w.e[0], 1, RC_WR_SEND, buf, 10, 0, 0, false);
	run_counts(&w, 2, 0, 0, 0);
	assert_cqe(&w.e[0].scq[0], 0, RC_WC_RETRY_EXC_ERR);
	assert_cqe(&w.e[0].scq[1], 1, RC_WC_WR_FLUSH_ERR);
	ASSERT_EQ(stats(&w.e[0]).timeouts, 4); /* 3 retries, then the error */
	ASSERT_EQ(stats(&w.e[0]).retransmits, 3 * 4);
	ASSERT_EQ(w.now, 4 * t);
	ASSERT_EQ(w.e[1].nr, 0);
	ASSERT_EQ(rc_state(w.e[1].qp), RC_STATE_RTS);
	ASSERT_EQ(rc_next_deadline(w.e[0].qp), INT64_MAX);

	/* The responder side alive, the way back dead: the same. */
	world_free(&w);
	world_init(&w, 1024, &a, NULL, 51);
	w.l[1].dead = true;
	post_recv(&w.e[1], 9, buf, sizeof(buf));
	post_op(&w.e[0], 0, RC_WR_SEND, buf, 3000, 0, 0, true);
	run_counts(&w, 1, 1, 0, 0);
	assert_cqe(&w.e[0].scq[0], 0, RC_WC_RETRY_EXC_ERR);
	assert_cqe(&w.e[1].rcq[0], 9, RC_WC_SUCCESS); /* it did arrive, once */
	ASSERT_EQ(w.e[1].nr, 1);
	ASSERT_EQ(stats(&w.e[1]).dup_requests, 3 * 3);
	world_free(&w);
}

TEST(rc_unsignaled)
{
	struct world w;
	static uint8_t mem[64 * 100], src[100];

	memset(src, 0x5a, sizeof(src));
	world_init(&w, 1024, NULL, NULL, 60);
	add_mr(&w.e[1], 0x80, 0x8000, mem, sizeof(mem), RC_ACCESS_REMOTE_WRITE);
	post_recv(&w.e[1], 7, mem, 0);
	for (int i = 0; i < 20; i++)
		post_op(&w.e[0], (uint64_t)i, RC_WR_WRITE, src, 100, 0x8000 + (uint64_t)i * 100,
			0x80, false);
	post_op(&w.e[0], 20, RC_WR_SEND, src, 0, 0, 0, true);
	run_counts(&w, 1, 1, 0, 0);
	ASSERT_EQ(w.e[0].ns, 1);
	assert_cqe(&w.e[0].scq[0], 20, RC_WC_SUCCESS);
	for (int i = 0; i < 20 * 100; i++)
		ASSERT_EQ(mem[i], 0x5a);
	/* Unsignaled and failing: completions all the same. */
	post_op(&w.e[0], 21, RC_WR_WRITE, src, 100, 0x8000, 0x81, false);
	post_op(&w.e[0], 22, RC_WR_WRITE, src, 100, 0x8000, 0x80, false);
	run_counts(&w, 3, 1, 0, 0);
	assert_cqe(&w.e[0].scq[1], 21, RC_WC_REM_ACCESS_ERR);
	assert_cqe(&w.e[0].scq[2], 22, RC_WC_WR_FLUSH_ERR);
	world_free(&w);
}

TEST(rc_set_error_flush)
{
	struct world w;
	static uint8_t buf[100];
	struct roce_ib ib = { .opcode = ROCE_ACK, .pkey = ROCE_PKEY_DEFAULT, .dqpn = 0x0a0001 };

	world_init(&w, 1024, NULL, NULL, 70);
	for (int i = 0; i < 5; i++) {
		post_op(&w.e[0], (uint64_t)i, RC_WR_SEND, buf, 10, 0, 0, i % 2);
		post_recv(&w.e[0], 100 + (uint64_t)i, buf, 10);
	}
	w.e[0].repost_on_flush = true; /* posts in the callback: flushed later, not now */
	rc_set_error(w.e[0].qp);
	ASSERT_EQ(rc_state(w.e[0].qp), RC_STATE_ERR);
	ASSERT_EQ(w.e[0].ns, 5);
	ASSERT_EQ(w.e[0].nr, 5);
	for (int i = 0; i < 5; i++) {
		assert_cqe(&w.e[0].scq[i], (uint64_t)i, RC_WC_WR_FLUSH_ERR);
		ASSERT_EQ(w.e[0].scq[i].opcode, RC_WR_SEND);
		assert_cqe(&w.e[0].rcq[i], 100 + (uint64_t)i, RC_WC_WR_FLUSH_ERR);
	}
	ASSERT_EQ(w.e[0].reposts, 5);
	ASSERT_EQ(w.l[0].sent, 0); /* nothing went out */
	w.e[0].repost_on_flush = false;
	rc_poll(w.e[0].qp, 1);
	ASSERT_EQ(w.e[0].nr, 10);
	assert_cqe(&w.e[0].rcq[9], 9004, RC_WC_WR_FLUSH_ERR);
	ASSERT_EQ(rc_next_deadline(w.e[0].qp), INT64_MAX);
	ASSERT_EQ(rc_input(w.e[0].qp, &ib, 2), -ENOTCONN);
	rc_set_error(w.e[0].qp); /* again: nothing more */
	ASSERT_EQ(w.e[0].ns, 5);
	world_free(&w);
}

static int
null_xmit(void *ctx, const struct roce_ib *ib)
{
	(void)ctx;
	(void)ib;
	return 0;
}

TEST(rc_create_checks)
{
	struct rc_attr a = attr_for(1024, 0), bad;
	struct rc_ops ops = end_ops;
	struct rc_qp *qp = (struct rc_qp *)1;

#define BAD(change)                                                                                \
	do {                                                                                       \
		bad = a;                                                                           \
		bad.change;                                                                        \
		ASSERT_EQ(rc_create(&bad, &end_ops, NULL, &qp), -EINVAL);                          \
		ASSERT(qp == NULL);                                                                \
	} while (0)
	BAD(mtu = 1000);
	BAD(mtu = 8192);
	BAD(qpn = 1u << 24);
	BAD(dest_qpn = 1u << 24);
	BAD(sq_psn = 1u << 24);
	BAD(rq_psn = 1u << 24);
	BAD(timeout = 32);
	BAD(retry_cnt = 8);
	BAD(rnr_retry = 8);
	BAD(min_rnr_timer = 32);
	BAD(max_rd_atomic = 17);
	BAD(max_dest_rd_atomic = 17);
	BAD(sq_depth = 0);
	BAD(sq_depth = 65537);
	BAD(rq_depth = 0);
	BAD(max_sge = 0);
	BAD(max_sge = 65);
	BAD(window = 65537);
#undef BAD
	ops.xmit = NULL;
	ASSERT_EQ(rc_create(&a, &ops, NULL, &qp), -EINVAL);
	ops = end_ops;
	ops.complete = NULL;
	ASSERT_EQ(rc_create(&a, &ops, NULL, &qp), -EINVAL);
	rc_destroy(NULL);

	/* IBA table 45 and the local ACK timeout. */
	ASSERT_EQ(rc_rnr_timer_ns(0), 655360000);
	ASSERT_EQ(rc_rnr_timer_ns(1), 10000);
	ASSERT_EQ(rc_rnr_timer_ns(13), 960000);
	ASSERT_EQ(rc_rnr_timer_ns(31), 491520000);
	ASSERT_EQ(rc_timeout_ns(0), INT64_MAX);
	ASSERT_EQ(rc_timeout_ns(1), 8192);
	ASSERT_EQ(rc_timeout_ns(14), 67108864);
}

TEST(rc_post_checks)
{
	struct world w;
	struct rc_attr a = attr_for(1024, 0);
	struct rc_ops ops = end_ops;
	struct rc_qp *qp;
	static uint8_t buf[64], dst[64];
	struct iovec sg[5] = { { buf, 4 }, { buf, 4 }, { buf, 4 }, { buf, 4 }, { buf, 4 } };
	struct rc_wqe wq = { .opcode = RC_WR_SEND, .sg = sg, .nsg = 1 };
	struct rc_rqe rq = { .sg = sg, .nsg = 1 };

	ops.xmit = null_xmit;
	a.sq_depth = 2;
	a.rq_depth = 1;
	ASSERT_OK(rc_create(&a, &ops, NULL, &qp));

	/* Work requests out of range. */
	wq.opcode = 7;
	ASSERT_EQ(rc_post_send(qp, &wq), -EINVAL);
	wq.opcode = RC_WR_SEND;
	wq.nsg = -1;
	ASSERT_EQ(rc_post_send(qp, &wq), -EINVAL);
	wq.nsg = 5;
	ASSERT_EQ(rc_post_send(qp, &wq), -EINVAL);
	wq.nsg = 1;
	wq.opcode = RC_WR_FETCH_ADD; /* 4 bytes for the result */
	ASSERT_EQ(rc_post_send(qp, &wq), -EINVAL);
	sg[1].iov_base = NULL;
	wq.opcode = RC_WR_SEND;
	wq.nsg = 2;
	ASSERT_EQ(rc_post_send(qp, &wq), -EINVAL);
	sg[1].iov_base = buf;
	sg[0].iov_len = (size_t)RC_MSG_MAX;
	sg[1].iov_len = 1;
	ASSERT_EQ(rc_post_send(qp, &wq), -EINVAL); /* over 2^31 bytes */
	sg[0].iov_len = sg[1].iov_len = 4;
	ASSERT_OK(rc_post_send(qp, &wq));
	ASSERT_OK(rc_post_send(qp, &wq));
	ASSERT_EQ(rc_post_send(qp, &wq), -ENOMEM);
	ASSERT_OK(rc_post_recv(qp, &rq));
	ASSERT_EQ(rc_post_recv(qp, &rq), -ENOMEM);
	rq.nsg = 5;
	ASSERT_EQ(rc_post_recv(qp, &rq), -EINVAL);
	rc_destroy(qp);

	a = attr_for(1024, 0);
	a.max_rd_atomic = 0; /* no READs from this QP */
	ASSERT_OK(rc_create(&a, &ops, NULL, &qp));
	wq.opcode = RC_WR_READ;
	ASSERT_EQ(rc_post_send(qp, &wq), -EINVAL);
	rc_destroy(qp);

	/* The sg array is copied: the caller may reuse it at once. */
	world_init(&w, 1024, NULL, NULL, 80);
	memset(buf, 0x33, sizeof(buf));
	post_recv(&w.e[1], 1, dst, sizeof(dst));
	sg[0] = (struct iovec){ buf, 64 };
	wq = (struct rc_wqe){
		.wr_id = 1, .opcode = RC_WR_SEND, .signaled = true, .sg = sg, .nsg = 1
	};
	ASSERT_OK(rc_post_send(w.e[0].qp, &wq));
	sg[0] = (struct iovec){ NULL, 0 };
	run_counts(&w, 1, 1, 0, 0);
	ASSERT_EQ(w.e[1].rcq[0].byte_len, 64);
	assert_same_data(buf, dst, 64);
	world_free(&w);
}

/* At most max_rd_atomic READ/atomics outstanding; the link full (-EAGAIN) costs nothing. */
struct rd_watch {
	unsigned first_sent, max_out;
	struct world *w;
};

static void
tap_reads(struct world *w, int from, const struct roce_ib *ib)
{
	struct rd_watch *r = w->tap_arg;
	struct rc_stats s;

	if (from != 0 || (ib->opcode != ROCE_READ_REQ && ib->opcode != ROCE_FETCH_ADD))
		return;
	rc_get_stats(w->e[0].qp, &s);
	if (s.retransmits == 0)
		r->first_sent++;
	if (r->first_sent - w->e[0].ns > r->max_out)
		r->max_out = r->first_sent - (unsigned)w->e[0].ns;
}

TEST(rc_read_limit_and_full_link)
{
	struct rc_attr a = attr_for(4096, 0);
	struct world w;
	struct rd_watch rw = { 0 };
	uint64_t rng = 9, res[8];
	uint8_t *mem = rand_buf(&rng, 2 * MIB), *dst = calloc(1, 2 * MIB), *rcv = calloc(1, MIB);

	a.max_rd_atomic = 2;
	world_init(&w, 4096, &a, NULL, 90);
	w.tap = tap_reads;
	w.tap_arg = &rw;
	w.l[0].limit = 3;
	w.l[1].limit = 2;
	add_mr(&w.e[1], 0x90, 0, mem, 2 * MIB, RC_ACCESS_REMOTE_READ | RC_ACCESS_REMOTE_ATOMIC);
	post_recv(&w.e[1], 1, rcv, MIB);
	for (int i = 0; i < 8; i++) {
		post_op(&w.e[0], (uint64_t)i, RC_WR_READ, dst + (size_t)i * 100, 100,
			(uint64_t)i * 100, 0x90, true);
		post_atomic(&w.e[0], 100 + (uint64_t)i, RC_WR_FETCH_ADD, &res[i], MIB, 0x90, 1, 0);
	}
	post_op(&w.e[0], 50, RC_WR_READ, dst + MIB, MIB, MIB / 2, 0x90, true);
	post_op(&w.e[0], 51, RC_WR_SEND, mem, MIB, 0, 0, true);
	run_counts(&w, 18, 1, 0, 0);
	for (int i = 0; i < 18; i++)
		ASSERT_EQ(w.e[0].scq[i].status, RC_WC_SUCCESS);
	assert_same_data(mem, dst, 800);
	assert_same_data(mem + MIB / 2, dst + MIB, MIB);
	assert_same_data(mem, rcv, MIB);
	ASSERT_EQ(rw.max_out, 2);
	ASSERT_GT(w.l[0].refused + w.l[1].refused, 0);
	ASSERT_EQ(stats(&w.e[0]).retransmits, 0);
	ASSERT_EQ(stats(&w.e[0]).timeouts, 0);
	free(mem);
	free(dst);
	free(rcv);
	world_free(&w);
}

/* ---- one role against hand-written packets ---- */

struct capture {
	struct roce_ib ib[512];
	uint8_t data[512][ROCE_MTU_MAX];
	int n;
	struct rc_cqe cqe[64];
	int ncqe;
	uint8_t mem[4096];
	bool full;    /* xmit says -EAGAIN */
	bool revoked; /* remote_mem refuses everything */
};

static int
cap_xmit(void *ctx, const struct roce_ib *ib)
{
	struct capture *c = ctx;

	if (c->full)
		return -EAGAIN;
	ASSERT_LT(c->n, 512);
	c->ib[c->n] = *ib;
	if (ib->payload_len) {
		memcpy(c->data[c->n], ib->payload, ib->payload_len);
		c->ib[c->n].payload = c->data[c->n];
	}
	c->n++;
	return 0;
}

static int
cap_mem(void *ctx, uint32_t rkey, uint64_t va, uint32_t len, unsigned access, void **out)
{
	struct capture *c = ctx;

	(void)access;
	if (c->revoked || rkey != 0x42 || va < 0x1000 || len > 4096 || va - 0x1000 > 4096 - len)
		return -EACCES;
	*out = c->mem + (va - 0x1000);
	return 0;
}

static void
cap_complete(void *ctx, const struct rc_cqe *cqe)
{
	struct capture *c = ctx;

	ASSERT_LT(c->ncqe, 64);
	c->cqe[c->ncqe++] = *cqe;
}

static const struct rc_ops cap_ops = { cap_xmit, cap_mem, cap_complete };

static struct roce_ib
req(uint8_t op, uint32_t psn, const void *payload, size_t len)
{
	struct roce_ib ib = {
		.opcode = op,
		.pkey = ROCE_PKEY_DEFAULT,
		.dqpn = 0x0a0001,
		.psn = psn & 0xffffff,
		.payload = payload,
		.payload_len = len,
	};
	return ib;
}

static void
expect_ack(const struct capture *c, int i, uint8_t kind, uint8_t val, uint32_t psn, uint32_t msn)
{
	const struct roce_ib *ib = &c->ib[i];

	ASSERT_LT(i, c->n);
	if (ib->opcode != ROCE_ACK || ib->aeth.kind != kind || ib->aeth.value != val ||
	    ib->psn != psn || (msn != ~0u && ib->aeth.msn != msn))
		th_fail(__FILE__, __LINE__,
			"packet %d: %s kind %u value %u psn %#x msn %u, want ACK kind %u value %u "
			"psn %#x msn %u",
			i, roce_opcode_name(ib->opcode), ib->aeth.kind, ib->aeth.value, ib->psn,
			ib->aeth.msn, kind, val, psn, msn);
	ASSERT_EQ(ib->dqpn, 0x0b0002);
}

/* A QP at MTU 256 whose packets and completions land in @c (zeroed, memory random). */
static struct rc_qp *
cap_qp(struct capture *c)
{
	struct rc_attr a = attr_for(256, 0);
	struct rc_qp *qp;
	uint64_t rng = 4;

	memset(c, 0, sizeof(*c));
	th_fill(&rng, c->mem, sizeof(c->mem));
	ASSERT_OK(rc_create(&a, &cap_ops, c, &qp));
	return qp;
}

static void
cap_recv(struct rc_qp *qp, uint64_t wr_id, void *buf, size_t len)
{
	struct iovec sg = { buf, len };
	struct rc_rqe r = { .wr_id = wr_id, .sg = &sg, .nsg = 1 };

	ASSERT_OK(rc_post_recv(qp, &r));
}

static uint8_t pl[256] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11 };
static const uint32_t RPSN = 0x123456; /* rq_psn of attr_for(256, 0) */

TEST(rc_responder_sequence)
{
	static struct capture c;
	static uint8_t rbuf[2][1024];
	struct rc_qp *qp = cap_qp(&c);
	struct roce_ib ib;

	ASSERT_EQ(RPSN, attr_for(256, 0).rq_psn);
	cap_recv(qp, 1, rbuf[0], 1024);
	cap_recv(qp, 2, rbuf[1], 1024);
	/* SEND ONLY with AckReq: executed, ACKed with MSN 1. */
	ib = req(ROCE_SEND_ONLY, RPSN, pl, 10);
	ib.ackreq = true;
	ASSERT_OK(rc_input(qp, &ib, 0));
	ASSERT_EQ(c.ncqe, 1);
	ASSERT_EQ(c.cqe[0].byte_len, 10);
	expect_ack(&c, 0, ROCE_AETH_ACK, 31, RPSN, 1);
	/* Again: a duplicate, ACKed again, not executed again. */
	ASSERT_OK(rc_input(qp, &ib, 0));
	ASSERT_EQ(c.ncqe, 1);
	expect_ack(&c, 1, ROCE_AETH_ACK, 31, RPSN, 1);
	ASSERT_EQ(qstats(qp).dup_requests, 1);

	/* A gap: one PSN sequence NAK for the expected PSN, then silence. */
	ib = req(ROCE_SEND_FIRST, RPSN + 2, pl, 256);
	ASSERT_EQ(rc_input(qp, &ib, 0), -ESTALE);
	expect_ack(&c, 2, ROCE_AETH_NAK, ROCE_NAK_PSN_SEQ, RPSN + 1, 1);
	ib.psn = RPSN + 3;
	ASSERT_EQ(rc_input(qp, &ib, 0), -ESTALE);
	ASSERT_EQ(c.n, 3);
	ib.psn = RPSN + 1;
	ASSERT_OK(rc_input(qp, &ib, 0));
	ib = req(ROCE_SEND_LAST_IMM, RPSN + 2, pl, 5);
	ib.ackreq = true;
	ib.imm = 0xdeadbeef;
	ib.se = true;
	ASSERT_OK(rc_input(qp, &ib, 0));
	ASSERT_EQ(c.ncqe, 2);
	ASSERT_EQ(c.cqe[1].wr_id, 2);
	ASSERT_EQ(c.cqe[1].byte_len, 261);
	ASSERT(c.cqe[1].with_imm && c.cqe[1].solicited);
	ASSERT_EQ(c.cqe[1].imm, 0xdeadbeef);
	ASSERT_MEM_EQ(rbuf[1], pl, 256);
	ASSERT_MEM_EQ(rbuf[1] + 256, pl, 5);
	expect_ack(&c, 3, ROCE_AETH_ACK, 31, RPSN + 2, 2);
	ASSERT_EQ(qstats(qp).naks_sent, 1);

	/* No receive posted now: RNR NAK with min_rnr_timer, then silence for later PSNs. */
	ib = req(ROCE_SEND_ONLY, RPSN + 3, pl, 1);
	ASSERT_OK(rc_input(qp, &ib, 0));
	expect_ack(&c, 4, ROCE_AETH_RNR_NAK, attr_for(256, 0).min_rnr_timer, RPSN + 3, 2);
	ib.psn = RPSN + 4;
	ASSERT_EQ(rc_input(qp, &ib, 0), -ESTALE);
	ASSERT_EQ(c.n, 5);
	/* The same PSN once a receive is there: taken. */
	cap_recv(qp, 3, rbuf[0], 1024);
	ib.psn = RPSN + 3;
	ib.ackreq = true;
	ASSERT_OK(rc_input(qp, &ib, 0));
	expect_ack(&c, 5, ROCE_AETH_ACK, 31, RPSN + 3, 3);
	ASSERT_EQ(qstats(qp).rnr_naks_sent, 1);
	rc_destroy(qp);
}

TEST(rc_responder_read_atomic)
{
	static struct capture c;
	struct rc_qp *qp = cap_qp(&c);
	struct roce_ib ib;
	uint64_t v0, v1;

	/* READ of 600 bytes at MTU 256: FIRST, MIDDLE, LAST on three PSNs. */
	ib = req(ROCE_READ_REQ, RPSN, NULL, 0);
	ib.reth = (struct roce_reth){ .va = 0x1000 + 7, .rkey = 0x42, .len = 600 };
	ASSERT_OK(rc_input(qp, &ib, 0));
	ASSERT_EQ(c.n, 3);
	ASSERT_EQ(c.ib[0].opcode, ROCE_READ_RESP_FIRST);
	ASSERT_EQ(c.ib[1].opcode, ROCE_READ_RESP_MIDDLE);
	ASSERT_EQ(c.ib[2].opcode, ROCE_READ_RESP_LAST);
	for (int i = 0; i < 3; i++) {
		ASSERT_EQ(c.ib[i].psn, RPSN + (uint32_t)i);
		ASSERT_EQ(c.ib[i].payload_len, i < 2 ? 256 : 88);
		ASSERT_MEM_EQ(c.ib[i].payload, c.mem + 7 + 256 * i, c.ib[i].payload_len);
	}
	ASSERT_EQ(c.ib[0].aeth.msn, 1);
	/* The READ again from its second packet (a requester that lost it): replayed. */
	ib.psn = RPSN + 1;
	ib.reth.va += 256;
	ib.reth.len -= 256;
	ASSERT_OK(rc_input(qp, &ib, 0));
	ASSERT_EQ(c.n, 5);
	ASSERT_EQ(c.ib[3].opcode, ROCE_READ_RESP_FIRST);
	ASSERT_EQ(c.ib[3].psn, RPSN + 1);
	ASSERT_EQ(c.ib[4].opcode, ROCE_READ_RESP_LAST);
	ASSERT_MEM_EQ(c.ib[4].payload, c.mem + 7 + 512, 88);
	/* A duplicate READ that reaches past the expected PSN is not a duplicate: dropped. */
	ib.reth.len += 1024;
	ASSERT_EQ(rc_input(qp, &ib, 0), -ESTALE);
	ASSERT_EQ(c.n, 5);

	/* FETCH_ADD, then the same again: executed once, answered twice alike. */
	memcpy(&v0, c.mem + 8, 8);
	ib = req(ROCE_FETCH_ADD, RPSN + 3, NULL, 0);
	ib.atomic = (struct roce_atomiceth){ .va = 0x1008, .rkey = 0x42, .swap_add = 5 };
	ASSERT_OK(rc_input(qp, &ib, 0));
	ASSERT_OK(rc_input(qp, &ib, 0));
	memcpy(&v1, c.mem + 8, 8);
	ASSERT_EQ(v1, v0 + 5);
	ASSERT_EQ(c.n, 7);
	for (int i = 5; i < 7; i++) {
		ASSERT_EQ(c.ib[i].opcode, ROCE_ATOMIC_ACK);
		ASSERT_EQ(c.ib[i].psn, RPSN + 3);
		ASSERT_EQ(c.ib[i].orig, v0);
		ASSERT_EQ(c.ib[i].aeth.msn, 2);
	}
	/* A duplicate atomic not saved (that PSN was a READ's): dropped, never executed. */
	ib.psn = RPSN + 1;
	ASSERT_EQ(rc_input(qp, &ib, 0), -ESTALE);
	memcpy(&v1, c.mem + 8, 8);
	ASSERT_EQ(v1, v0 + 5);
	/* CMP_SWP that matches; then one at an address not 8-byte aligned: NAK, ERR. */
	ib = req(ROCE_CMP_SWAP, RPSN + 4, NULL, 0);
	ib.atomic =
	    (struct roce_atomiceth){ .va = 0x1008, .rkey = 0x42, .swap_add = 9, .compare = v0 + 5 };
	ASSERT_OK(rc_input(qp, &ib, 0));
	memcpy(&v1, c.mem + 8, 8);
	ASSERT_EQ(v1, 9);
	ASSERT_EQ(c.ib[7].orig, v0 + 5);
	ib.psn = RPSN + 5;
	ib.atomic.va = 0x1004;
	ASSERT_OK(rc_input(qp, &ib, 0));
	expect_ack(&c, 8, ROCE_AETH_NAK, ROCE_NAK_INVALID_REQ, RPSN + 5, 3);
	ASSERT_EQ(rc_state(qp), RC_STATE_ERR);
	rc_destroy(qp);
}

TEST(rc_responder_acks_and_drops)
{
	static struct capture c;
	struct rc_qp *qp = cap_qp(&c);
	struct roce_ib ib;
	int n;

	/* 40 WRITE packets without AckReq: an ACK every RC__ACK_EVERY packets. */
	ib = req(ROCE_WRITE_FIRST, RPSN, pl, 256);
	ib.reth = (struct roce_reth){ .va = 0x1000, .rkey = 0x42, .len = 10 * 256 };
	for (int i = 0; i < 10; i++) {
		ib.opcode = i == 0 ? ROCE_WRITE_FIRST : ROCE_WRITE_MIDDLE;
		ib.opcode = i == 9 ? ROCE_WRITE_LAST : ib.opcode;
		ib.psn = RPSN + (uint32_t)i;
		ASSERT_OK(rc_input(qp, &ib, 0));
	}
	ASSERT_EQ(c.n, 0); /* 10 < 16: no ACK yet */
	for (int i = 0; i < 30; i++) {
		ib = req(ROCE_WRITE_ONLY, RPSN + 10 + (uint32_t)i, pl, 4);
		ib.reth = (struct roce_reth){ .va = 0x1000, .rkey = 0x42, .len = 4 };
		ASSERT_OK(rc_input(qp, &ib, 0));
	}
	ASSERT_EQ(c.n, 2);
	expect_ack(&c, 0, ROCE_AETH_ACK, 31, RPSN + 15, 7);
	expect_ack(&c, 1, ROCE_AETH_ACK, 31, RPSN + 31, 23);
	ASSERT_MEM_EQ(c.mem, pl, 4);

	/* Not this QP's, not this partition's, malformed: dropped unseen. */
	ib = req(ROCE_SEND_ONLY, RPSN + 40, pl, 1);
	ib.dqpn = 0x0a0002;
	ASSERT_EQ(rc_input(qp, &ib, 0), -EINVAL);
	ib.dqpn = 0x0a0001;
	ib.pkey = 0x1234;
	ASSERT_EQ(rc_input(qp, &ib, 0), -EINVAL);
	ib.pkey = ROCE_PKEY_DEFAULT;
	ib.payload_len = 257;
	ASSERT_EQ(rc_input(qp, &ib, 0), -EINVAL);
	ib.payload_len = 1;
	ib.payload = NULL;
	ASSERT_EQ(rc_input(qp, &ib, 0), -EINVAL);
	ib.payload = pl;
	ib.psn = 1u << 24;
	ASSERT_EQ(rc_input(qp, &ib, 0), -EINVAL);
	ib = req(ROCE_SEND_FIRST, RPSN, pl, 100); /* a FIRST must be the MTU */
	ASSERT_EQ(rc_input(qp, &ib, 0), -EINVAL);
	ib = req(ROCE_SEND_LAST, RPSN, pl, 0); /* a LAST at least a byte */
	ASSERT_EQ(rc_input(qp, &ib, 0), -EINVAL);
	ib = req(ROCE_READ_REQ, RPSN, pl, 4); /* no payload on a READ request */
	ASSERT_EQ(rc_input(qp, &ib, 0), -EINVAL);
	ib = req(0x15, RPSN, NULL, 0); /* not an RC opcode */
	ASSERT_EQ(rc_input(qp, &ib, 0), -EINVAL);
	ASSERT_EQ(c.n, 2);
	ASSERT_EQ(qstats(qp).dropped, 9);
	ASSERT_EQ(qstats(qp).packets_rcvd, 40);
	/* Limited members of a partition do not talk to each other (full members do). */
	{
		struct rc_attr a = attr_for(256, 0);
		struct rc_qp *lim;

		a.pkey = 0x7fff;
		ASSERT_OK(rc_create(&a, &cap_ops, &c, &lim));
		ib = req(ROCE_ACK, 0, NULL, 0);
		ib.pkey = 0x7fff;
		ASSERT_EQ(rc_input(lim, &ib, 0), -EINVAL);
		ib.pkey = 0xffff;
		ASSERT_EQ(rc_input(lim, &ib, 0), -ESTALE); /* accepted, then out of window */
		rc_destroy(lim);
	}

	/* A MIDDLE with no FIRST: NAK invalid request, the QP to ERR. */
	n = c.n;
	ib = req(ROCE_WRITE_MIDDLE, RPSN + 40, pl, 256);
	ASSERT_OK(rc_input(qp, &ib, 0));
	ASSERT_EQ(rc_state(qp), RC_STATE_ERR);
	expect_ack(&c, n, ROCE_AETH_NAK, ROCE_NAK_INVALID_REQ, RPSN + 40, 31);
	ASSERT_EQ(rc_input(qp, &ib, 0), -ENOTCONN);
	rc_destroy(qp);
}

/* A fresh responder, @first taken at rq_psn, then @second: what it answers. */
static struct rc_qp *
responder(struct capture *c, const struct roce_ib *first, const struct roce_ib *second)
{
	struct rc_qp *qp = cap_qp(c);

	ASSERT_OK(rc_input(qp, first, 0));
	if (second)
		ASSERT_OK(rc_input(qp, second, 0));
	return qp;
}

TEST(rc_responder_errors)
{
	static struct capture c;
	struct roce_ib w1 = req(ROCE_WRITE_FIRST, RPSN, pl, 256), w2;
	struct rc_qp *qp;

	/* WRITE_ONLY_IMM with no receive: RNR NAK, nothing written, not an error. */
	w2 = req(ROCE_WRITE_ONLY_IMM, RPSN, pl, 4);
	w2.reth = (struct roce_reth){ .va = 0x1000, .rkey = 0x42, .len = 4 };
	qp = responder(&c, &w2, NULL);
	expect_ack(&c, 0, ROCE_AETH_RNR_NAK, 1, RPSN, 0);
	ASSERT_NE(memcmp(c.mem, pl, 4), 0);
	ASSERT_EQ(rc_state(qp), RC_STATE_RTS);
	rc_destroy(qp);

	/* A WRITE whose LAST is longer than its RETH said: NAK invalid request. */
	w1.reth = (struct roce_reth){ .va = 0x1000, .rkey = 0x42, .len = 300 };
	w2 = req(ROCE_WRITE_LAST, RPSN + 1, pl, 100);
	qp = responder(&c, &w1, &w2);
	expect_ack(&c, 0, ROCE_AETH_NAK, ROCE_NAK_INVALID_REQ, RPSN + 1, 0);
	ASSERT_EQ(rc_state(qp), RC_STATE_ERR);
	rc_destroy(qp);
	/* ... or a MIDDLE where only the LAST may come. */
	w2 = req(ROCE_WRITE_MIDDLE, RPSN + 1, pl, 256);
	qp = responder(&c, &w1, &w2);
	expect_ack(&c, 0, ROCE_AETH_NAK, ROCE_NAK_INVALID_REQ, RPSN + 1, 0);
	rc_destroy(qp);
	/* ... or a FIRST whose RETH says it is all there is. */
	w1.reth.len = 256;
	qp = responder(&c, &w1, NULL);
	expect_ack(&c, 0, ROCE_AETH_NAK, ROCE_NAK_INVALID_REQ, RPSN, 0);
	rc_destroy(qp);

	/* The region revoked between FIRST and LAST: NAK remote access error there. */
	w1.reth.len = 300;
	qp = responder(&c, &w1, NULL);
	c.revoked = true;
	w2 = req(ROCE_WRITE_LAST, RPSN + 1, pl, 44);
	ASSERT_OK(rc_input(qp, &w2, 0));
	expect_ack(&c, 0, ROCE_AETH_NAK, ROCE_NAK_REMOTE_ACCESS, RPSN + 1, 0);
	ASSERT_EQ(rc_state(qp), RC_STATE_ERR);
	rc_destroy(qp);

	/* READ responses wait while the link is full, and leave when it is not ... */
	w1 = req(ROCE_READ_REQ, RPSN, NULL, 0);
	w1.reth = (struct roce_reth){ .va = 0x1000, .rkey = 0x42, .len = 600 };
	qp = cap_qp(&c);
	c.full = true;
	ASSERT_OK(rc_input(qp, &w1, 0));
	ASSERT_EQ(rc_next_deadline(qp), INT64_MAX); /* blocked: polled when the link frees */
	c.full = false;
	rc_poll(qp, 1);
	ASSERT_EQ(c.n, 3);
	ASSERT_EQ(c.ib[0].opcode, ROCE_READ_RESP_FIRST);
	rc_destroy(qp);
	/* ... but a region revoked meanwhile makes a NAK in place of the response. */
	qp = cap_qp(&c);
	c.full = true;
	ASSERT_OK(rc_input(qp, &w1, 0));
	c.full = false;
	c.revoked = true;
	rc_poll(qp, 1);
	expect_ack(&c, 0, ROCE_AETH_NAK, ROCE_NAK_REMOTE_ACCESS, RPSN, 1);
	ASSERT_EQ(c.n, 1);
	ASSERT_EQ(rc_state(qp), RC_STATE_ERR);
	rc_destroy(qp);
}

static const uint32_t SPSN = 0xabcdef; /* sq_psn of attr_for(256, 0) */

static struct roce_ib
ack(uint8_t kind, uint8_t value, uint32_t psn)
{
	struct roce_ib ib = req(ROCE_ACK, psn, NULL, 0);

	ib.aeth = (struct roce_aeth){ .kind = kind, .value = value };
	return ib;
}

static void
cap_send(struct rc_qp *qp, uint64_t wr_id, uint8_t op, void *buf, size_t len, bool signaled)
{
	struct iovec sg = { buf, len };
	struct rc_wqe w = { .wr_id = wr_id,
			    .opcode = op,
			    .signaled = signaled,
			    .remote_va = 0x500,
			    .rkey = 7,
			    .compare_add = 1,
			    .sg = &sg,
			    .nsg = 1 };

	ASSERT_OK(rc_post_send(qp, &w));
}

TEST(rc_requester_acks)
{
	static struct capture c;
	static uint8_t src[1024], rd[300];
	static const uint8_t ops[5] = { ROCE_SEND_FIRST, ROCE_SEND_MIDDLE, ROCE_SEND_LAST,
					ROCE_SEND_ONLY, ROCE_READ_REQ };
	struct rc_qp *qp = cap_qp(&c);
	struct roce_ib ib;
	uint64_t rng = 6;

	ASSERT_EQ(SPSN, attr_for(256, 0).sq_psn);
	th_fill(&rng, src, sizeof(src));
	cap_send(qp, 1, RC_WR_SEND, src, 600, true);
	cap_send(qp, 2, RC_WR_SEND, src + 600, 100, false);
	cap_send(qp, 3, RC_WR_READ, rd, 300, true);
	ASSERT_EQ(c.n, 0); /* nothing before the poll */
	ASSERT_EQ(rc_next_deadline(qp), 0);
	rc_poll(qp, 0);
	ASSERT_EQ(c.n, 5);
	for (int i = 0; i < 5; i++) {
		ASSERT_EQ(c.ib[i].opcode, ops[i]);
		ASSERT_EQ(c.ib[i].psn, SPSN + (uint32_t)i);
		ASSERT_EQ(c.ib[i].ackreq, i == 2 || i == 3);
		ASSERT_EQ(c.ib[i].dqpn, 0x0b0002);
		ASSERT_EQ(c.ib[i].pkey, ROCE_PKEY_DEFAULT);
	}
	ASSERT_MEM_EQ(c.ib[0].payload, src, 256);
	ASSERT_MEM_EQ(c.ib[2].payload, src + 512, 88);
	ASSERT_MEM_EQ(c.ib[3].payload, src + 600, 100);
	ASSERT_EQ(c.ib[4].reth.va, 0x500);
	ASSERT_EQ(c.ib[4].reth.len, 300);
	ASSERT_EQ(rc_next_deadline(qp), rc_timeout_ns(attr_for(256, 0).timeout));

	/* NAK sequence error at SPSN+1: SPSN acknowledged, everything from SPSN+1 sent again. */
	ib = ack(ROCE_AETH_NAK, ROCE_NAK_PSN_SEQ, SPSN + 1);
	ASSERT_OK(rc_input(qp, &ib, 10));
	ASSERT_EQ(c.n, 9);
	for (int i = 0; i < 4; i++)
		ASSERT_EQ(c.ib[5 + i].psn, SPSN + 1 + (uint32_t)i);
	ASSERT_EQ(c.ib[8].opcode, ROCE_READ_REQ);
	ASSERT_EQ(qstats(qp).retransmits, 4);
	ASSERT_EQ(c.ncqe, 0);
	/* The same NAK again (duplicated by the network): no second retransmission. */
	ASSERT_OK(rc_input(qp, &ib, 11));
	ASSERT_EQ(c.n, 9);

	/* ACK SPSN+3: both SENDs complete, the unsignaled one silently. */
	ib = ack(ROCE_AETH_ACK, 31, SPSN + 3);
	ASSERT_OK(rc_input(qp, &ib, 12));
	ASSERT_EQ(c.ncqe, 1);
	ASSERT_EQ(c.cqe[0].wr_id, 1);
	/* An ACK for what was never sent, and an old one: dropped. */
	ib.psn = SPSN + 100;
	ASSERT_EQ(rc_input(qp, &ib, 13), -ESTALE);
	ib.psn = SPSN;
	ASSERT_EQ(rc_input(qp, &ib, 13), -ESTALE);
	/* An ACK past the READ whose response never came: the READ is asked again. */
	ib.psn = SPSN + 5;
	ASSERT_EQ(rc_input(qp, &ib, 14), -ESTALE);
	ASSERT_EQ(c.n, 10);
	ASSERT_EQ(c.ib[9].opcode, ROCE_READ_REQ);
	ASSERT_EQ(c.ib[9].psn, SPSN + 4);
	ASSERT_EQ(qstats(qp).implicit_naks, 1);
	/* A fatal NAK for it: REM_ACCESS_ERR, nothing more sent. */
	ib = ack(ROCE_AETH_NAK, ROCE_NAK_REMOTE_ACCESS, SPSN + 4);
	ASSERT_OK(rc_input(qp, &ib, 15));
	ASSERT_EQ(c.ncqe, 2);
	ASSERT_EQ(c.cqe[1].wr_id, 3);
	ASSERT_EQ(c.cqe[1].status, RC_WC_REM_ACCESS_ERR);
	ASSERT_EQ(rc_state(qp), RC_STATE_ERR);
	ASSERT_EQ(qstats(qp).naks_rcvd, 3); /* the duplicate counts */
	rc_destroy(qp);
}

TEST(rc_requester_reads)
{
	static struct capture c;
	static uint8_t rd[300], rd2[600];
	struct rc_qp *qp = cap_qp(&c);
	struct roce_ib ib;
	uint64_t res = 0;

	cap_send(qp, 3, RC_WR_READ, rd, 300, true);
	rc_poll(qp, 0);
	/* The READ's two responses. */
	ib = req(ROCE_READ_RESP_FIRST, SPSN, c.mem, 256);
	ASSERT_OK(rc_input(qp, &ib, 14));
	ASSERT_EQ(c.ncqe, 0);
	ib = req(ROCE_READ_RESP_LAST, SPSN + 1, c.mem + 256, 44);
	ASSERT_OK(rc_input(qp, &ib, 15));
	ASSERT_EQ(c.ncqe, 1);
	ASSERT_EQ(c.cqe[0].wr_id, 3);
	ASSERT_EQ(c.cqe[0].byte_len, 300);
	ASSERT_MEM_EQ(rd, c.mem, 300);

	/* A READ whose middle response is lost: asked again from there, with a new RETH. */
	cap_send(qp, 4, RC_WR_READ, rd2, 600, true);
	rc_poll(qp, 20);
	ASSERT_EQ(c.n, 2);
	ASSERT_EQ(c.ib[1].psn, SPSN + 2);
	ib = req(ROCE_READ_RESP_FIRST, SPSN + 2, c.mem, 256);
	ASSERT_OK(rc_input(qp, &ib, 21));
	ib = req(ROCE_READ_RESP_LAST, SPSN + 4, c.mem + 512, 88);
	ASSERT_EQ(rc_input(qp, &ib, 22), -ESTALE);
	ASSERT_EQ(c.n, 3);
	ASSERT_EQ(c.ib[2].opcode, ROCE_READ_REQ);
	ASSERT_EQ(c.ib[2].psn, SPSN + 3);
	ASSERT_EQ(c.ib[2].reth.va, 0x500 + 256);
	ASSERT_EQ(c.ib[2].reth.len, 600 - 256);
	ib = req(ROCE_READ_RESP_FIRST, SPSN + 3, c.mem + 256, 256); /* FIRST again: accepted */
	ASSERT_OK(rc_input(qp, &ib, 23));
	ib = req(ROCE_READ_RESP_LAST, SPSN + 4, c.mem + 512, 88);
	ASSERT_OK(rc_input(qp, &ib, 24));
	ASSERT_EQ(c.ncqe, 2);
	ASSERT_MEM_EQ(rd2, c.mem, 600);
	ASSERT_EQ(qstats(qp).implicit_naks, 1);

	/* FETCH_ADD: the original value lands in the local buffer. */
	cap_send(qp, 5, RC_WR_FETCH_ADD, &res, 8, true);
	rc_poll(qp, 30);
	ASSERT_EQ(c.ib[3].opcode, ROCE_FETCH_ADD);
	ASSERT_EQ(c.ib[3].atomic.swap_add, 1);
	ib = req(ROCE_ATOMIC_ACK, SPSN + 5, NULL, 0);
	ib.orig = 77;
	ASSERT_OK(rc_input(qp, &ib, 31));
	ASSERT_EQ(c.ncqe, 3);
	ASSERT_EQ(res, 77);
	/* A READ response of the wrong length: a bad response, the QP to ERR. */
	cap_send(qp, 6, RC_WR_READ, rd, 300, true);
	rc_poll(qp, 40);
	ib = req(ROCE_READ_RESP_ONLY, SPSN + 6, c.mem, 200);
	ASSERT_OK(rc_input(qp, &ib, 41));
	ASSERT_EQ(c.cqe[3].status, RC_WC_BAD_RESP_ERR);
	ASSERT_EQ(rc_state(qp), RC_STATE_ERR);
	rc_destroy(qp);
}

TEST(rc_requester_timer)
{
	static struct capture c;
	static uint8_t src[600];
	struct rc_qp *qp = cap_qp(&c);
	struct roce_ib ib;
	int64_t t = rc_timeout_ns(attr_for(256, 0).timeout);

	/* The local ACK timer: nothing before it, a retransmission at it. */
	cap_send(qp, 1, RC_WR_SEND, src, 600, true);
	rc_poll(qp, 1000);
	ASSERT_EQ(c.n, 3);
	ASSERT_EQ(rc_next_deadline(qp), 1000 + t);
	rc_poll(qp, 1000 + t - 1);
	ASSERT_EQ(c.n, 3);
	rc_poll(qp, 1000 + t);
	ASSERT_EQ(c.n, 6);
	ASSERT_EQ(c.ib[3].psn, SPSN);
	ASSERT_EQ(qstats(qp).timeouts, 1);
	/* Progress restarts it: an ACK for the first packet at 1000 + t + 5. */
	ib = ack(ROCE_AETH_ACK, 31, SPSN);
	ASSERT_OK(rc_input(qp, &ib, 1000 + t + 5));
	ASSERT_EQ(rc_next_deadline(qp), 1000 + t + 5 + t);
	/* An RNR NAK: no timer while waiting; then from its PSN after the RNR time. */
	ib = ack(ROCE_AETH_RNR_NAK, 3, SPSN + 1);
	ASSERT_OK(rc_input(qp, &ib, 2000 + t));
	ASSERT_EQ(rc_next_deadline(qp), 2000 + t + rc_rnr_timer_ns(3));
	rc_poll(qp, 2000 + t + rc_rnr_timer_ns(3) - 1);
	ASSERT_EQ(c.n, 6);
	rc_poll(qp, 2000 + t + rc_rnr_timer_ns(3));
	ASSERT_EQ(c.n, 8);
	ASSERT_EQ(c.ib[6].psn, SPSN + 1);

	/* An ATOMIC ACK for a SEND's PSN: a bad response, the QP to ERR. */
	ib = req(ROCE_ATOMIC_ACK, SPSN + 1, NULL, 0);
	ASSERT_OK(rc_input(qp, &ib, 5000 + t));
	ASSERT_EQ(c.ncqe, 1);
	ASSERT_EQ(c.cqe[0].status, RC_WC_BAD_RESP_ERR);
	ASSERT_EQ(rc_state(qp), RC_STATE_ERR);
	rc_destroy(qp);
}
