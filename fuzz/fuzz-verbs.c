/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: a verbs QP's inbound ring (src/lib/verbs_shm.c), written by
 * the peer process. The input is a series of receives to post (sizes, a
 * bad lkey now and then) and of records the "peer" puts on the ring (any
 * bytes: headers that lie about lengths, unknown operations); the QP then
 * drains them into its receives. Every completion must be well formed: a
 * successful receive placed no more bytes than it had room for, inside
 * its buffer; a bad message moves the QP to ERR and the rest flush.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "lib/verbs.h"

#define BUF 8192

static struct vrdma_context ctx;
static struct vrdma_pd pd = { .ctx = &ctx, .id = 1 };
static struct vrdma_mr mr;
static uint8_t buf[BUF]; /* exactly the MR: a write past it is an ASan report */

static void
setup(void)
{
	static struct vrdma_mr *mrs[WIRE_RDMA_KEYS];

	if (ctx.mrs)
		return;
	pthread_mutex_init(&ctx.lock, NULL);
	ctx.mrs = mrs;
	ctx.page = calloc(1, sizeof(*ctx.page));
	if (!ctx.page)
		abort();
	mr = (struct vrdma_mr){ .pd = &pd, .addr = buf, .length = BUF, .lkey = 0x101,
				.rkey = 0x101, .access = VRDMA_ACCESS_LOCAL_WRITE };
	mrs[1] = &mr;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz in = { data, size };
	struct vrdma_qp qp = { .pd = &pd, .ctx = &ctx, .qpn = 5, .rq_cap = 16 };
	struct vrdma__rwqe rq[16];
	struct vrdma_cq *cq;
	struct qp *peer;
	struct vrdma_wc wc[32];
	unsigned posted = 0, done = 0;
	uint32_t room[16];
	int k;

	setup();
	if (vrdma_create_cq(&ctx, 32, NULL, NULL, &cq) ||
	    qp_create_pair(QP_SIZE_MIN, 16384, &qp.in, &peer))
		abort();
	qp_set_mode(qp.in, QP_NONBLOCK);
	qp_set_mode(peer, QP_NONBLOCK);
	qp.rq = rq;
	qp.rcq = cq;
	pthread_mutex_init(&qp.rq_lock, NULL);
	atomic_store(&qp.state, VRDMA_QPS_RTS);
	while (in.n && posted < 16) {
		uint8_t op = (uint8_t)fz_take(&in, 1);

		if (op & 1) { /* a receive */
			struct vrdma__rwqe *r = &rq[(qp.rq_head + qp.rq_count) % 16];
			uint32_t off = (uint32_t)fz_take(&in, 2) % BUF;
			uint32_t len = (uint32_t)fz_take(&in, 2) % (BUF + 64);

			if (qp.rq_count == 16)
				continue;
			r->wr_id = posted;
			r->num_sge = 1;
			r->sge[0] = (struct vrdma_sge){ (uintptr_t)buf + off, len,
							(op & 2) ? 0x102 : mr.lkey };
			room[posted % 16] = len;
			qp.rq_count++;
			posted++;
		} else { /* a record from the peer */
			uint8_t rec[600];
			size_t n = fz_take(&in, 2) % sizeof(rec);

			for (size_t i = 0; i < n; i++)
				rec[i] = (uint8_t)fz_take(&in, 1);
			qp_msg_send(peer, rec, n, QP_DONTWAIT);
		}
		vrdma__shm_drain(&qp);
		k = vrdma_poll_cq(cq, 32, wc);
		for (int i = 0; i < k; i++, done++) {
			if (wc[i].wr_id >= posted || wc[i].qp_num != 5)
				abort();
			if (wc[i].status == VRDMA_WC_SUCCESS && wc[i].opcode == VRDMA_WC_RECV &&
			    wc[i].byte_len > room[wc[i].wr_id % 16])
				abort();
			if (wc[i].status && atomic_load(&qp.state) != VRDMA_QPS_ERR)
				abort();
		}
	}
	if (done > posted)
		abort();
	qp_close(peer);
	qp_close(qp.in);
	pthread_mutex_destroy(&qp.rq_lock);
	while (vrdma_poll_cq(cq, 32, wc) > 0)
		;
	vrdma_destroy_cq(cq);
	return 0;
}
