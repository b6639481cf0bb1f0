/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: the RC transport (src/rdma/rc*.c). The first byte picks a
 * mode.
 *
 * Mode 0, a hostile peer: one QP with work posted on both queues (SEND,
 * WRITE, READ, atomics, receives) takes packets whose every field comes
 * from the input (PSNs near the ones it expects or anywhere, opcodes
 * valid or not, keys, lengths, syndromes), with polls at times from the
 * input between them. Every buffer and region is an exact-size heap block
 * so that ASan sees any access outside it.
 *
 * Mode 1, a hostile network: two QPs exchange fixed work over a link whose
 * drops, duplicates and delays the input picks (a clean link once the
 * input is used up). Then every request either succeeds with exactly the
 * right bytes (atomics applied once each) or fails with a retry error:
 * no protocol error may come out of mere loss.
 *
 * Both: every packet a QP emits must build as a RoCE frame; completions
 * come once per work request, in posting order, well-formed, and after an
 * error only flushes follow.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "rdma/rc.h"
#include "rdma/roce.h"

#define NSEND 8
#define NRECV 6

static struct fz in;
static uint8_t frame[ROCE_FRAME_MAX];
static bool lossy_only; /* mode 1: only retry errors and flushes may complete */

/* What was posted, and what completed: checked by the completion callback. */
struct queue_log {
	uint8_t opcode[NSEND + 64];
	uint32_t len[NSEND + 64];
	bool signaled[NSEND + 64];
	uint8_t done[NSEND + 64];
	int posted;
	int last;    /* index of the last completion, -1 */
	bool failed; /* an error completion was seen: only flushes may follow */
};

struct side {
	struct rc_qp *qp;
	struct rc_attr attr;
	int id;
	struct queue_log sq, rq;
	uint8_t *sbuf[NSEND + 64]; /* each request's local buffer, exact size */
	uint8_t *rbuf[NSEND + 64];
	uint8_t *region; /* R_Key 0x100 at va 0x10000, every access */
	size_t region_len;
	uint8_t *ro; /* R_Key 0x200 at va 0x20000, remote read only */
	bool eagain; /* mode 0: xmit says -EAGAIN when the input says so */
	struct link *out;
	int64_t *now;
};

static void
check_xmit(struct side *s, const struct roce_ib *ib)
{
	struct roce_frame f = { .ib = *ib };
	const char *why = NULL;
	ssize_t n;

	FZ_CHECK(ib->dqpn == s->attr.dest_qpn && ib->pkey == s->attr.pkey);
	n = roce_build(&f, s->attr.mtu, frame, sizeof(frame), &why);
	if (n < 0) {
		fprintf(stderr, "unbuildable %s psn %u: %s\n", roce_opcode_name(ib->opcode),
			ib->psn, why);
		abort();
	}
}

static int
side_mem(void *ctx, uint32_t rkey, uint64_t va, uint32_t len, unsigned access, void **out)
{
	struct side *s = ctx;

	FZ_CHECK(len > 0);
	FZ_CHECK(access == RC_ACCESS_REMOTE_WRITE || access == RC_ACCESS_REMOTE_READ ||
	      access == RC_ACCESS_REMOTE_ATOMIC);
	if (rkey == 0x100 && va >= 0x10000 && len <= s->region_len &&
	    va - 0x10000 <= s->region_len - len) {
		*out = s->region + (va - 0x10000);
		return 0;
	}
	if (rkey == 0x200 && access == RC_ACCESS_REMOTE_READ && va >= 0x20000 && len <= 512 &&
	    va - 0x20000 <= 512 - len) {
		*out = s->ro + (va - 0x20000);
		return 0;
	}
	return rkey == 0x300 ? -EIO : -EACCES; /* 0x300: a region that fails otherwise */
}

static void
log_complete(struct side *s, struct queue_log *q, const struct rc_cqe *c)
{
	int i = (int)(c->wr_id & 0xffff);

	FZ_CHECK((c->wr_id >> 16) == (uint64_t)(c->recv ? 2 : 1) + (uint64_t)(s->id * 4));
	FZ_CHECK(i < q->posted && !q->done[i]);
	FZ_CHECK(i > q->last); /* in posting order; unsignaled successes may be skipped */
	for (int k = q->last + 1; k < i; k++)
		FZ_CHECK(!c->recv && !q->signaled[k]); /* skipped: only unsignaled sends */
	q->done[i] = 1;
	q->last = i;
	FZ_CHECK(c->status >= RC_WC_SUCCESS && c->status <= RC_WC_RNR_RETRY_EXC_ERR);
	if (q->failed)
		FZ_CHECK(c->status == RC_WC_WR_FLUSH_ERR);
	if (c->status != RC_WC_SUCCESS)
		q->failed = true;
	if (lossy_only)
		FZ_CHECK(c->status == RC_WC_SUCCESS || c->status == RC_WC_WR_FLUSH_ERR ||
		      c->status == RC_WC_RETRY_EXC_ERR);
	if (c->recv) {
		FZ_CHECK(c->opcode == RC_WC_RECV || c->opcode == RC_WC_RECV_RDMA_WITH_IMM);
		if (c->status == RC_WC_SUCCESS && c->opcode == RC_WC_RECV)
			FZ_CHECK(c->byte_len <= q->len[i]);
		FZ_CHECK(c->with_imm || c->imm == 0);
	} else {
		FZ_CHECK(c->opcode == q->opcode[i]);
		FZ_CHECK(c->status != RC_WC_SUCCESS || q->signaled[i]);
		FZ_CHECK(c->status != RC_WC_LOC_LEN_ERR);
		if (c->status == RC_WC_SUCCESS && c->opcode == RC_WR_READ)
			FZ_CHECK(c->byte_len == q->len[i]);
	}
}

static void
side_complete(void *ctx, const struct rc_cqe *c)
{
	struct side *s = ctx;

	log_complete(s, c->recv ? &s->rq : &s->sq, c);
}

static uint8_t *
xalloc(size_t n)
{
	uint8_t *p = malloc(n ? n : 1);

	FZ_CHECK(p);
	return p;
}

static void
post_send(struct side *s, uint8_t op, uint32_t len, bool signaled, uint64_t va, uint32_t rkey,
	  uint64_t add)
{
	struct queue_log *q = &s->sq;
	int i = q->posted;
	struct iovec sg[2];
	struct rc_wqe w = {
		.wr_id = (uint64_t)(1 + s->id * 4) << 16 | (uint64_t)i,
		.opcode = op,
		.signaled = signaled,
		.imm = (uint32_t)i,
		.remote_va = va,
		.rkey = rkey,
		.compare_add = add,
		.swap = add ^ 1,
		.sg = sg,
		.nsg = 2,
	};

	if (i >= NSEND + 64)
		return;
	if (op == RC_WR_CMP_SWP || op == RC_WR_FETCH_ADD)
		len = 8;
	s->sbuf[i] = xalloc(len);
	memset(s->sbuf[i], 0x40 + i, len);
	sg[0] = (struct iovec){ s->sbuf[i], len / 3 };
	sg[1] = (struct iovec){ s->sbuf[i] + len / 3, len - len / 3 };
	if (rc_post_send(s->qp, &w)) {
		free(s->sbuf[i]);
		s->sbuf[i] = NULL;
		return;
	}
	q->opcode[i] = op;
	q->len[i] = len;
	q->signaled[i] = signaled;
	q->posted++;
}

static void
post_recv(struct side *s, uint32_t len)
{
	struct queue_log *q = &s->rq;
	int i = q->posted;
	struct iovec sg = { NULL, len };
	struct rc_rqe r = { .wr_id = (uint64_t)(2 + s->id * 4) << 16 | (uint64_t)i,
			    .sg = &sg,
			    .nsg = 1 };

	if (i >= NSEND + 64)
		return;
	s->rbuf[i] = xalloc(len);
	sg.iov_base = s->rbuf[i];
	if (rc_post_recv(s->qp, &r)) {
		free(s->rbuf[i]);
		s->rbuf[i] = NULL;
		return;
	}
	q->len[i] = len;
	q->signaled[i] = true;
	q->posted++;
}

static void
side_init(struct side *s, int id, const struct rc_attr *a, const struct rc_ops *ops)
{
	memset(s, 0, sizeof(*s));
	s->id = id;
	s->attr = *a;
	s->sq.last = s->rq.last = -1;
	s->region_len = 4096;
	s->region = xalloc(s->region_len);
	memset(s->region, 0, s->region_len);
	s->ro = xalloc(512);
	memset(s->ro, 0x77, 512);
	FZ_CHECK(rc_create(a, ops, s, &s->qp) == 0);
}

/* ERR, then every request must have completed exactly once (unsignaled successes aside). */
static void
side_finish(struct side *s)
{
	rc_set_error(s->qp);
	rc_poll(s->qp, INT64_MAX / 2);
	for (int i = 0; i < s->sq.posted; i++)
		FZ_CHECK(s->sq.done[i] || !s->sq.signaled[i]);
	for (int i = 0; i < s->rq.posted; i++)
		FZ_CHECK(s->rq.done[i]);
	rc_destroy(s->qp);
	for (int i = 0; i < NSEND + 64; i++) {
		free(s->sbuf[i]);
		free(s->rbuf[i]);
	}
	free(s->region);
	free(s->ro);
}

/* ---- mode 0: one QP, packets from the input ---- */

static int
m0_xmit(void *ctx, const struct roce_ib *ib)
{
	struct side *s = ctx;

	check_xmit(s, ib);
	if (s->eagain && (fz_take(&in, 1) & 7) == 0)
		return -EAGAIN;
	return 0;
}

static const struct rc_ops m0_ops = { m0_xmit, side_mem, side_complete };

static const uint8_t wr_ops[] = { RC_WR_SEND, RC_WR_SEND_IMM, RC_WR_WRITE,    RC_WR_WRITE_IMM,
				  RC_WR_READ, RC_WR_CMP_SWP,  RC_WR_FETCH_ADD };

static void
m0_post(struct side *s)
{
	uint8_t b = (uint8_t)fz_take(&in, 1);
	uint32_t len = (uint32_t)fz_take(&in, 2) % 3000;
	uint64_t va = 0x10000 + fz_take(&in, 2) % 4200;

	post_send(s, wr_ops[b % 7], len, b & 8, b & 16 ? va & ~7ull : va, b & 32 ? 0x100 : 0x200,
		  fz_take(&in, 1));
}

/* A packet: the fields from the input, the PSN near where it matters. */
static void
m0_packet(struct side *s, uint32_t *req_psn)
{
	static uint8_t payload[ROCE_MTU_MAX + 8];
	unsigned mtu = s->attr.mtu;
	uint8_t sel = (uint8_t)fz_take(&in, 1), flags = (uint8_t)fz_take(&in, 1);
	struct roce_ib ib = { .opcode = (uint8_t)(fz_take(&in, 1) % (ROCE_OPCODE_COUNT + 1)) };
	size_t n;
	int r;

	switch (sel & 3) {
	case 0: /* a request at the PSN it expects, or near it */
		ib.psn = (*req_psn + (uint32_t)(sel >> 5) - 2) & 0xffffff;
		break;
	case 1: /* a response near what it has sent */
		ib.psn = (s->attr.sq_psn + (uint32_t)(sel >> 2)) & 0xffffff;
		break;
	case 2:
		ib.psn = (uint32_t)fz_take(&in, 3);
		break;
	default:
		ib.psn = (uint32_t)fz_take(&in, 4);
		break;
	}
	ib.se = flags & 1;
	ib.ackreq = flags & 2;
	ib.dqpn = flags & 4 ? (uint32_t)fz_take(&in, 3) : s->attr.qpn;
	ib.pkey = flags & 8 ? (uint16_t)fz_take(&in, 2) : s->attr.pkey;
	ib.reth.va = flags & 16 ? fz_take(&in, 8) : 0x10000 + fz_take(&in, 2) % 4200;
	ib.reth.rkey = flags & 32 ? (uint32_t)fz_take(&in, 4) : 0x100u + 0x100u * (flags >> 6 & 3u);
	ib.reth.len = sel & 4 ? (uint32_t)fz_take(&in, 4) : (uint32_t)fz_take(&in, 2) % 5000;
	ib.aeth.kind = (uint8_t)fz_take(&in, 1) & 3;
	ib.aeth.value = (uint8_t)fz_take(&in, 1) & 0x3f;
	ib.aeth.msn = (uint32_t)fz_take(&in, 3);
	ib.atomic = (struct roce_atomiceth){ .va = ib.reth.va,
					     .rkey = ib.reth.rkey,
					     .swap_add = fz_take(&in, 8),
					     .compare = fz_take(&in, 2) };
	ib.orig = fz_take(&in, 8);
	ib.imm = (uint32_t)fz_take(&in, 4);
	n = sel & 8 ? mtu : (size_t)fz_take(&in, 2) % (mtu + 8);
	if (sel & 16 && !(roce_opcode_flags(ib.opcode) & ROCE_F_PAYLOAD))
		n = 0;
	for (size_t i = 0; i < n; i++)
		payload[i] = (uint8_t)(i + ib.psn);
	ib.payload = n ? payload : NULL;
	ib.payload_len = n;
	r = rc_input(s->qp, &ib, *s->now);
	FZ_CHECK(r == 0 || r == -EINVAL || r == -ESTALE || r == -ENOTCONN);
	if (r == 0 && ib.psn == *req_psn)
		*req_psn = (*req_psn + 1) & 0xffffff;
}

static void
mode0(void)
{
	static struct side s;
	int64_t now = 0;
	uint8_t b = (uint8_t)fz_take(&in, 1);
	struct rc_attr a = {
		.mtu = 256u << (b & 3),
		.qpn = 0x11,
		.dest_qpn = 0x22,
		.sq_psn = (uint32_t)fz_take(&in, 3),
		.rq_psn = (uint32_t)fz_take(&in, 3),
		.pkey = ROCE_PKEY_DEFAULT,
		.timeout = 1 + (b >> 2 & 3),
		.retry_cnt = b >> 4 & 7,
		.rnr_retry = (uint8_t)fz_take(&in, 1) & 7,
		.min_rnr_timer = 1,
		.max_rd_atomic = (unsigned)fz_take(&in, 1) % 5,
		.max_dest_rd_atomic = (unsigned)fz_take(&in, 1) % 5,
		.sq_depth = 16,
		.rq_depth = 8,
		.max_sge = 2,
		.window = (unsigned)fz_take(&in, 1) % 40,
	};
	uint32_t req_psn = a.rq_psn;

	side_init(&s, 0, &a, &m0_ops);
	s.eagain = b & 0x80;
	s.now = &now;
	for (int i = 0; i < NSEND; i++)
		m0_post(&s);
	for (int i = 0; i < NRECV / 2; i++)
		post_recv(&s, (uint32_t)fz_take(&in, 2) % 3000);
	for (int steps = 0; in.n && steps < 400; steps++) {
		uint8_t cmd = (uint8_t)fz_take(&in, 1);

		switch (cmd % 8) {
		case 0:
		case 1:
		case 2:
		case 3:
			m0_packet(&s, &req_psn);
			break;
		case 4:
			now += (int64_t)(cmd >> 3) * 1000;
			rc_poll(s.qp, now);
			break;
		case 5:
			m0_post(&s);
			break;
		case 6:
			post_recv(&s, (uint32_t)fz_take(&in, 2) % 3000);
			break;
		default:
			if (cmd == 0xff)
				rc_set_error(s.qp);
			now = rc_next_deadline(s.qp) == INT64_MAX ? now + 1
								  : rc_next_deadline(s.qp) + 1;
			rc_poll(s.qp, now);
			break;
		}
	}
	side_finish(&s);
}

/* ---- mode 1: two QPs, the network from the input ---- */

struct lpkt {
	int64_t at;
	struct roce_ib ib;
	uint8_t data[256];
};

struct link {
	struct lpkt q[256];
	int n;
};

static struct side m1[2];
static struct link links[2];
static int64_t m1_now;

static void
link_put(struct link *l, const struct roce_ib *ib, int64_t at)
{
	int i;

	if (l->n == 256)
		return;
	for (i = l->n; i > 0 && l->q[i - 1].at > at; i--)
		l->q[i] = l->q[i - 1];
	l->q[i].at = at;
	l->q[i].ib = *ib;
	if (ib->payload_len) {
		memcpy(l->q[i].data, ib->payload, ib->payload_len);
		l->q[i].ib.payload = l->q[i].data;
	}
	l->n++;
}

static int
m1_xmit(void *ctx, const struct roce_ib *ib)
{
	struct side *s = ctx;
	struct link *l = &links[s->id];
	uint8_t d;

	check_xmit(s, ib);
	if (l->n >= 250)
		return -EAGAIN;
	d = (uint8_t)fz_take(&in, 1);
	switch (d & 7) {
	case 1: /* lost */
		return 0;
	case 2: /* duplicated */
		link_put(l, ib, m1_now + 2000 + (d >> 3) * 500);
		break;
	case 3: /* late */
		link_put(l, ib, m1_now + 2000 + (d >> 3) * 1000);
		return 0;
	default:
		break;
	}
	link_put(l, ib, m1_now + 2000);
	return 0;
}

static const struct rc_ops m1_ops = { m1_xmit, side_mem, side_complete };

static bool
m1_done(void)
{
	for (int i = 0; i < 2; i++) {
		struct side *s = &m1[i];

		for (int k = 0; k < s->sq.posted; k++)
			if (!s->sq.done[k] && s->sq.signaled[k])
				return false;
	}
	return true;
}

static void
m1_run(void)
{
	for (int iter = 0; iter < 100000 && !m1_done(); iter++) {
		int64_t next = INT64_MAX;

		for (int i = 0; i < 2; i++) {
			struct link *l = &links[i];

			while (l->n && l->q[0].at <= m1_now) {
				struct lpkt p = l->q[0];

				memmove(l->q, l->q + 1, (size_t)(--l->n) * sizeof(l->q[0]));
				if (p.ib.payload_len)
					p.ib.payload = p.data;
				rc_input(m1[1 - i].qp, &p.ib, m1_now);
			}
		}
		for (int i = 0; i < 2; i++)
			rc_poll(m1[i].qp, m1_now);
		for (int i = 0; i < 2; i++) {
			int64_t d = rc_next_deadline(m1[i].qp);

			if (links[i].n && links[i].q[0].at < next)
				next = links[i].q[0].at;
			if (d < next)
				next = d;
		}
		if (next == INT64_MAX)
			break;
		m1_now = next > m1_now ? next : m1_now;
	}
}

/* Every request succeeded with the right bytes, or all failed by retries. */
static void
m1_check(struct side *s, struct side *peer, unsigned adds)
{
	uint64_t counter;

	for (int i = 0; i < s->sq.posted; i++) {
		if (!s->sq.done[i] && !s->sq.signaled[i])
			continue;
		FZ_CHECK(s->sq.done[i]);
	}
	if (s->sq.failed)
		return; /* by retries (log_complete saw to that): nothing more to say */
	/* SENDs fill the receives in order; WRITEs land at 1024 + 256 i; READs read ro. */
	for (int i = 0, r = 0; i < s->sq.posted; i++) {
		uint8_t op = s->sq.opcode[i];
		uint32_t len = s->sq.len[i];

		if (op == RC_WR_SEND || op == RC_WR_SEND_IMM)
			FZ_CHECK(!memcmp(peer->rbuf[r++], s->sbuf[i], len));
		if (op == RC_WR_WRITE_IMM)
			FZ_CHECK(peer->rq.done[r++]);
		if (op == RC_WR_WRITE || op == RC_WR_WRITE_IMM)
			FZ_CHECK(!memcmp(peer->region + 1024 + 256 * i, s->sbuf[i], len));
		else if (op == RC_WR_READ)
			for (uint32_t k = 0; k < len; k++)
				FZ_CHECK(s->sbuf[i][k] == 0x77);
	}
	memcpy(&counter, peer->region, 8);
	FZ_CHECK(counter == adds);
}

static void
mode1(void)
{
	struct rc_attr a = {
		.mtu = 256,
		.pkey = ROCE_PKEY_DEFAULT,
		.timeout = 3,
		.retry_cnt = 7,
		.rnr_retry = 7,
		.min_rnr_timer = 1,
		.max_rd_atomic = 2,
		.max_dest_rd_atomic = 2,
		.sq_depth = 32,
		.rq_depth = 32,
		.max_sge = 2,
		.window = 8,
	};
	unsigned adds = 0;

	memset(links, 0, sizeof(links));
	m1_now = 0;
	for (int i = 0; i < 2; i++) {
		a.qpn = 0x100 + (uint32_t)i;
		a.dest_qpn = 0x101 - (uint32_t)i;
		a.sq_psn = i ? 0xfffffa : 0x10;
		a.rq_psn = i ? 0x10 : 0xfffffa;
		side_init(&m1[i], i, &a, &m1_ops);
	}
	/* End 0 asks, end 1 answers: sends, writes, reads, atomics (FETCH_ADD: counted). */
	for (int i = 0; i < 12; i++) {
		uint8_t op = wr_ops[i % 7] == RC_WR_CMP_SWP ? RC_WR_FETCH_ADD : wr_ops[i % 7];
		uint32_t len = (uint32_t)(i * 97 % 250);
		uint64_t va = 0x10000 + 1024 + 256 * (uint64_t)i;

		if (op == RC_WR_SEND || op == RC_WR_SEND_IMM || op == RC_WR_WRITE_IMM)
			post_recv(&m1[1], 800);
		if (op == RC_WR_FETCH_ADD)
			adds++;
		if (op == RC_WR_READ)
			va = 0x20000;
		if (op == RC_WR_FETCH_ADD)
			va = 0x10000;
		post_send(&m1[0], op, len, true, va, op == RC_WR_READ ? 0x200 : 0x100, 1);
	}
	lossy_only = true;
	m1_run();
	m1_check(&m1[0], &m1[1], adds);
	for (int i = 0; i < 2; i++)
		side_finish(&m1[i]);
	lossy_only = false;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	in = (struct fz){ data, size };
	if (fz_take(&in, 1) & 1)
		mode1();
	else
		mode0();
	return 0;
}
