/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: a queue-pair endpoint whose peer writes arbitrary header
 * contents and ring bytes. The input is a program of operations: the
 * endpoint's own calls interleaved with a well-behaved peer's calls and with
 * raw scribbles over the peer-owned lines and the data areas. After every
 * step the endpoint's private invariants must hold; ASan catches any access
 * outside the exact-size mapping.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "qp/qp_internal.h"

#define S0 QP_SIZE_MIN
#define S1 (2 * QP_SIZE_MIN)

static void
check(const struct qp *q)
{
	if (q->rx.peer - q->rx.pos > q->rx.size || q->tx.pos - q->tx.peer > q->tx.size)
		abort();
	if (q->err && !qp_broken_reason(q))
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t buf[S1 + 64];
	size_t len = qp_layout_size(S0, S1);
	struct fz f = { data, size };
	uint8_t *base = calloc(1, len);
	struct qp a, b;
	struct qp_queue *q[2] = { (struct qp_queue *)(base + QP_PAGE),
				  (struct qp_queue *)(base + 2 * QP_PAGE + S0) };
	uint8_t *d[2] = { base + 2 * QP_PAGE, base + 3 * QP_PAGE + S0 };
	size_t ml;

	qp__init(&a, base, S0, S1, 0); /* under test */
	qp__init(&b, base, S0, S1, 1); /* the peer, when it behaves */
	qp_set_mode(&a, QP_NONBLOCK);
	qp_set_mode(&b, QP_NONBLOCK);
	for (int steps = 0; f.n && steps < 4096; steps++) {
		unsigned op = (unsigned)fz_take(&f, 1);
		size_t n = (size_t)fz_take(&f, 2) % (S1 + 64);
		int qi = op & 1;

		switch ((op >> 1) % 15) {
		case 0: /* scribble an index */
			atomic_store(qi ? &q[1]->prod.index : &q[0]->cons.index, fz_take(&f, 8));
			break;
		case 1: /* small nudge of an index, the common forgery */
			atomic_fetch_add(qi ? &q[1]->prod.index : &q[0]->cons.index,
					 (uint64_t)(int64_t)(int8_t)fz_take(&f, 1));
			break;
		case 2: /* scribble flags and wait sequences */
			atomic_store(&q[qi]->prod.flags, (uint32_t)fz_take(&f, 1));
			atomic_store(&q[qi]->cons.wait, (uint32_t)fz_take(&f, 4));
			break;
		case 3: { /* raw bytes into a data area */
			size_t sz = qi ? S1 : S0, off = (size_t)fz_take(&f, 4) % sz;
			size_t k = n % 64;
			for (size_t i = 0; i < k; i++)
				d[qi][(off + i) % sz] = (uint8_t)fz_take(&f, 1);
			break;
		}
		case 4:
			(void)qp_read(&a, buf, n, 0);
			break;
		case 5:
			(void)qp_msg_recv(&a, buf, n, &ml, 0);
			break;
		case 6:
			(void)qp_write(&a, buf, n, 0);
			break;
		case 7:
			(void)qp_msg_send(&a, buf, n, 0);
			break;
		case 8:
			(void)qp_arm(&a, op >> 5);
			break;
		case 9: /* the peer behaves for a while */
			(void)(qi ? qp_msg_send(&b, buf, n, 0) : qp_write(&b, buf, n, 0));
			break;
		case 10:
			(void)(qi ? qp_msg_recv(&b, buf, n, &ml, 0) : qp_read(&b, buf, n, 0));
			break;
		case 11: {
			struct iovec v[3] = { { buf, n / 3 }, { buf + 1, 0 }, { buf + 2, n - n / 3 } };
			(void)(qi ? qp_msg_recvv(&a, v, 3, &ml, 0) : qp_readv(&a, v, 3, 0));
			break;
		}
		case 12: /* one end parks */
			qp_park(qi ? &b : &a);
			break;
		case 14: { /* records in place, released now and then */
			struct iovec v[2];
			ssize_t r = qp_msg_peek(&a, v);
			if (r >= 0 && v[0].iov_len + v[1].iov_len != (size_t)r)
				abort();
			if (r >= 0 && (size_t)r <= sizeof(buf)) {
				memcpy(buf, v[0].iov_base, v[0].iov_len);
				memcpy(buf + v[0].iov_len, v[1].iov_base, v[1].iov_len);
			}
			if (qi)
				qp_msg_consume(&a);
			break;
		}
		case 13: { /* a renews; b follows that renewal, or a forged one */
			struct qp_renewal r = { 0 };
			unsigned forge = (unsigned)fz_take(&f, 1);

			if (qp_renew(&a, &r) && !(forge & 1))
				break;
			if (forge & 2)
				r.gen += (uint32_t)fz_take(&f, 1);
			if (forge & 4)
				r.start[0] += (uint64_t)(int64_t)(int16_t)fz_take(&f, 2);
			if (forge & 8)
				r.start[1] += (uint64_t)(int64_t)(int16_t)fz_take(&f, 2);
			(void)qp_follow(&b, &r);
			break;
		}
		}
		check(&a);
		check(&b);
	}
	free(base);
	return 0;
}
