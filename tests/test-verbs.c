/* SPDX-License-Identifier: MIT */
/*
 * RDMA verbs on one host (include/vmfabric/vrdma.h) against a private
 * vmfabricd: objects and the QP state machine, one-sided WRITE / READ /
 * atomics reaching another process's memory while it does nothing, the
 * IBA error completions (REM_ACCESS, LOC_PROT, REM_INV_REQ, RNR_RETRY_EXC,
 * WR_FLUSH), SEND / RECV with immediates, revocation at dereg_mr, the
 * connection manager's refusals, completion channels.
 */
#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemon.h"
#include "common/clock.h"
#include "harness.h"
#include "lib/verbs.h"
#include "vmfabric/vrdma.h"

struct end {
	struct vrdma_context *ctx;
	struct vrdma_pd *pd;
	struct vrdma_cq *cq;
	struct vrdma_qp *qp;
	struct vrdma_mr *mr;
	uint8_t *buf;
	size_t len;
};

/* What the passive side tells the active one in its private data. */
struct remote {
	uint64_t addr;
	uint32_t rkey;
	uint32_t pad;
};

static void
end_open(struct end *e, const char *ctx, size_t len, unsigned access, int max_recv_wr)
{
	struct vrdma_qp_init_attr ia = { .qp_type = VRDMA_QPT_RC,
					 .cap = { .max_send_wr = 256,
						  .max_recv_wr = (uint32_t)max_recv_wr,
						  .max_send_sge = 4,
						  .max_recv_sge = 4,
						  .max_inline_data = 64 } };

	ASSERT_OK(vmci_set_context(ctx));
	ASSERT_OK(vrdma_open_device("vmrdma0", &e->ctx));
	ASSERT_OK(vrdma_alloc_pd(e->ctx, &e->pd));
	ASSERT_OK(vrdma_create_cq(e->ctx, 1024, NULL, NULL, &e->cq));
	ia.send_cq = ia.recv_cq = e->cq;
	ASSERT_OK(vrdma_create_qp(e->pd, &ia, &e->qp));
	e->len = len;
	e->buf = malloc(len);
	ASSERT(e->buf);
	memset(e->buf, 0, len);
	ASSERT_OK(vrdma_reg_mr(e->pd, e->buf, len, access, &e->mr));
}

static void
end_close(struct end *e)
{
	ASSERT_OK(vrdma_destroy_qp(e->qp));
	ASSERT_OK(vrdma_dereg_mr(e->mr));
	ASSERT_OK(vrdma_destroy_cq(e->cq));
	ASSERT_OK(vrdma_dealloc_pd(e->pd));
	ASSERT_OK(vrdma_close_device(e->ctx));
	free(e->buf);
}

/* One completion, waited for (polling), or fail after a few seconds. */
static struct vrdma_wc
wait_wc(struct vrdma_cq *cq)
{
	struct vrdma_wc wc;
	int64_t spins = 0;
	int n;

	while (!(n = vrdma_poll_cq(cq, 1, &wc))) {
		ASSERT_LT(++spins, 2000000000LL);
		if (spins % 1024 == 0)
			usleep(10);
	}
	ASSERT_EQ(n, 1);
	return wc;
}

static int
post(struct vrdma_qp *qp, enum vrdma_wr_opcode op, uint64_t id, void *addr, uint32_t len,
     uint32_t lkey, uint64_t raddr, uint32_t rkey)
{
	struct vrdma_sge s = { (uintptr_t)addr, len, lkey };
	struct vrdma_send_wr wr = { .wr_id = id, .sg_list = &s, .num_sge = 1, .opcode = op,
				    .send_flags = VRDMA_SEND_SIGNALED };
	struct vrdma_send_wr *bad;

	wr.wr.rdma.remote_addr = raddr;
	wr.wr.rdma.rkey = rkey;
	return vrdma_post_send(qp, &wr, &bad);
}

static int
post_atomic(struct vrdma_qp *qp, enum vrdma_wr_opcode op, void *res, uint32_t lkey,
	    uint64_t raddr, uint32_t rkey, uint64_t cmp_add, uint64_t swap)
{
	struct vrdma_sge s = { (uintptr_t)res, 8, lkey };
	struct vrdma_send_wr wr = { .wr_id = 7, .sg_list = &s, .num_sge = 1, .opcode = op,
				    .send_flags = VRDMA_SEND_SIGNALED };
	struct vrdma_send_wr *bad;

	wr.wr.atomic.remote_addr = raddr;
	wr.wr.atomic.rkey = rkey;
	wr.wr.atomic.compare_add = cmp_add;
	wr.wr.atomic.swap = swap;
	return vrdma_post_send(qp, &wr, &bad);
}

static void
post_recv(struct end *e, uint64_t id, uint32_t off, uint32_t len)
{
	struct vrdma_sge s = { (uintptr_t)e->buf + off, len, e->mr->lkey };
	struct vrdma_recv_wr wr = { .wr_id = id, .sg_list = &s, .num_sge = 1 };
	struct vrdma_recv_wr *bad;

	ASSERT_OK(vrdma_post_recv(e->qp, &wr, &bad));
}

/*
 * Connect two ends by hand (modify_qp), as a program exchanging QP numbers
 * would: on one host by CID, or, with @ip (each end's host address), to
 * another host by IP (RoCE v2), PSNs 1000 and 1001.
 */
static void
connect_qps(struct end *a, struct end *b, uint8_t rnr_retry, const uint8_t *const ip[2],
	    enum vrdma_mtu mtu)
{
	struct end *e[2] = { a, b };

	for (int i = 0; i < 2; i++) {
		struct vrdma_qp_attr at = { .qp_state = VRDMA_QPS_INIT, .port_num = 1,
					    .qp_access_flags = VRDMA_ACCESS_REMOTE_WRITE |
							       VRDMA_ACCESS_REMOTE_READ |
							       VRDMA_ACCESS_REMOTE_ATOMIC };

		ASSERT_OK(vrdma_modify_qp(e[i]->qp, &at,
					  VRDMA_QP_STATE | VRDMA_QP_PKEY_INDEX | VRDMA_QP_PORT |
						  VRDMA_QP_ACCESS_FLAGS));
	}
	for (int i = 0; i < 2; i++) {
		struct vrdma_qp_attr at = { .qp_state = VRDMA_QPS_RTR,
					    .path_mtu = mtu,
					    .dest_qp_num = vrdma_qp_num(e[!i]->qp),
					    .rq_psn = 1000 + (uint32_t)!i,
					    .max_dest_rd_atomic = 16,
					    .min_rnr_timer = 1 };

		if (ip) {
			at.ah_attr.is_global = 1;
			at.ah_attr.dgid[10] = at.ah_attr.dgid[11] = 0xff;
			memcpy(at.ah_attr.dgid + 12, ip[!i], 4);
		} else {
			at.ah_attr.dest_cid = e[!i]->ctx->attr.cid;
		}
		ASSERT_OK(vrdma_modify_qp(e[i]->qp, &at,
					  VRDMA_QP_STATE | VRDMA_QP_AV | VRDMA_QP_PATH_MTU |
						  VRDMA_QP_DEST_QPN | VRDMA_QP_RQ_PSN |
						  VRDMA_QP_MAX_DEST_RD_ATOMIC |
						  VRDMA_QP_MIN_RNR_TIMER));
	}
	for (int i = 0; i < 2; i++) {
		struct vrdma_qp_attr at = { .qp_state = VRDMA_QPS_RTS, .timeout = 14,
					    .retry_cnt = 7, .rnr_retry = rnr_retry,
					    .max_rd_atomic = 16, .sq_psn = 1000 + (uint32_t)i };

		ASSERT_OK(vrdma_modify_qp(e[i]->qp, &at,
					  VRDMA_QP_STATE | VRDMA_QP_SQ_PSN | VRDMA_QP_TIMEOUT |
						  VRDMA_QP_RETRY_CNT | VRDMA_QP_RNR_RETRY |
						  VRDMA_QP_MAX_QP_RD_ATOMIC));
	}
}

static void
connect_by_hand(struct end *a, struct end *b, uint8_t rnr_retry)
{
	connect_qps(a, b, rnr_retry, NULL, VRDMA_MTU_4096);
}

static const unsigned all_access = VRDMA_ACCESS_LOCAL_WRITE | VRDMA_ACCESS_REMOTE_WRITE |
				   VRDMA_ACCESS_REMOTE_READ | VRDMA_ACCESS_REMOTE_ATOMIC;

TEST(verbs_objects)
{
	struct tdaemon d;
	struct vrdma_context *ctx;
	struct vrdma_pd *pd;
	struct vrdma_cq *cq;
	struct vrdma_qp *qp;
	struct vrdma_mr *mr;
	struct vrdma_qp_attr at = { .qp_state = VRDMA_QPS_RTR };
	struct vrdma_qp_init_attr ia = { .qp_type = VRDMA_QPT_RC };
	char names[4][VRDMA_DEVNAME_MAX];
	static char buf[8192];

	td_start(&d, NULL);
	ASSERT_EQ(vrdma_get_device_list(names, 4), 1);
	ASSERT_OK(strcmp(names[0], "vmrdma0"));
	ASSERT_EQ(vrdma_open_device("vmrdma9", &ctx), -ENODEV);
	ASSERT_OK(vmci_set_context("off"));
	ASSERT_EQ(vrdma_open_device(NULL, &ctx), -EACCES); /* VMCI off: no device either */
	ASSERT_OK(vmci_set_context("a"));
	ASSERT_OK(vrdma_open_device(NULL, &ctx));
	ASSERT_EQ(ctx->attr.cid, 3u);
	ASSERT_OK(vrdma_alloc_pd(ctx, &pd));
	/* IBA: remote write and atomics need local write. */
	ASSERT_EQ(vrdma_reg_mr(pd, buf, 100, VRDMA_ACCESS_REMOTE_WRITE, &mr), -EINVAL);
	ASSERT_EQ(vrdma_reg_mr(pd, buf, 0, 0, &mr), -EINVAL);
	ASSERT_EQ(vrdma_reg_mr(pd, buf, 100, 0x100, &mr), -EINVAL);
	ASSERT_EQ(vrdma_reg_mr(pd, (void *)4096, 100, 0, &mr), -EFAULT); /* not mapped */
	ASSERT_OK(vrdma_reg_mr(pd, buf + 10, 100, VRDMA_ACCESS_LOCAL_WRITE, &mr));
	ASSERT_EQ(mr->lkey, mr->rkey);
	ASSERT_OK(vrdma_create_cq(ctx, 16, NULL, NULL, &cq));
	ASSERT_EQ(vrdma_create_qp(pd, &ia, &qp), -EINVAL); /* no CQs */
	ia.send_cq = ia.recv_cq = cq;
	ia.cap.max_send_sge = 100;
	ASSERT_EQ(vrdma_create_qp(pd, &ia, &qp), -EINVAL);
	ia.cap.max_send_sge = 1;
	ASSERT_OK(vrdma_create_qp(pd, &ia, &qp));
	ASSERT_GE(vrdma_qp_num(qp), 2u);
	/* RESET -> RTR skips INIT; RESET -> INIT needs its attributes. */
	ASSERT_EQ(vrdma_modify_qp(qp, &at, VRDMA_QP_STATE), -EINVAL);
	at.qp_state = VRDMA_QPS_INIT;
	ASSERT_EQ(vrdma_modify_qp(qp, &at, VRDMA_QP_STATE), -EINVAL);
	at.port_num = 1;
	ASSERT_OK(vrdma_modify_qp(qp, &at,
				  VRDMA_QP_STATE | VRDMA_QP_PKEY_INDEX | VRDMA_QP_PORT |
					  VRDMA_QP_ACCESS_FLAGS));
	at.qp_state = VRDMA_QPS_RTS;
	ASSERT_EQ(vrdma_modify_qp(qp, &at, VRDMA_QP_STATE), -EINVAL); /* INIT -> RTS */
	{
		struct vrdma_sge s = { (uintptr_t)buf + 10, 8, mr->lkey };
		struct vrdma_send_wr wr = { .sg_list = &s, .num_sge = 1, .opcode = VRDMA_WR_SEND };
		struct vrdma_send_wr *bad = NULL;

		ASSERT_EQ(vrdma_post_send(qp, &wr, &bad), -EINVAL); /* not RTS */
		ASSERT(bad == &wr);
	}
	ASSERT_EQ(vrdma_dealloc_pd(pd), -EBUSY);
	ASSERT_EQ(vrdma_destroy_cq(cq), -EBUSY);
	ASSERT_EQ(vrdma_close_device(ctx), -EBUSY);
	ASSERT_OK(vrdma_destroy_qp(qp));
	ASSERT_OK(vrdma_dereg_mr(mr));
	ASSERT_OK(vrdma_destroy_cq(cq));
	ASSERT_OK(vrdma_dealloc_pd(pd));
	ASSERT_OK(vrdma_close_device(ctx));
	td_stop(&d);
	td_cleanup(&d);
}

/*
 * The passive side in a child process: registers a buffer, accepts one
 * connection, tells its address and rkey, then does nothing but wait for
 * the parent's word and check what the parent left in its memory.
 */
static void
target_child(int in, int out, unsigned access)
{
	struct end e;
	struct vrdma_listener *l;
	struct vrdma_conn_req req;
	struct remote r;
	struct vrdma_conn_param p = { .private_data = &r, .private_data_len = sizeof(r) };
	uint32_t port;
	char c;

	end_open(&e, "b", 1u << 20, access, 16);
	for (size_t i = 0; i < e.len; i++)
		e.buf[i] = (uint8_t)(i * 7);
	ASSERT_OK(vrdma_listen(e.ctx, 0, &l));
	port = vrdma_listener_port(l);
	ASSERT_GE(port, 49152u); /* ephemeral: 16 bits, so that another host can name it */
	ASSERT_LE(port, 65535u);
	ASSERT_EQ(write(out, &port, sizeof(port)), (ssize_t)sizeof(port));
	ASSERT_OK(vrdma_get_request(l, &req, 5000));
	ASSERT_EQ(req.src_cid, 3u);
	r.addr = (uintptr_t)e.buf;
	r.rkey = e.mr->rkey;
	ASSERT_OK(vrdma_accept(l, &req, e.qp, &p));
	/* Nothing to do while the parent works: no polling, no posting. */
	ASSERT_EQ(read(in, &c, 1), 1);
	/* The parent wrote 0xab over [4096, 4096 + 65536) and added 1000 to word 0. */
	for (size_t i = 4096; i < 4096 + 65536; i++)
		ASSERT_EQ(e.buf[i], 0xab);
	ASSERT_EQ(e.buf[4096 + 65536], (uint8_t)((4096 + 65536) * 7));
	ASSERT_EQ(((uint64_t *)(void *)e.buf)[1], 1000u);
	ASSERT_EQ(write(out, "k", 1), 1);
	ASSERT_EQ(read(in, &c, 1), 1);
	vrdma_listener_close(l);
	end_close(&e);
	_exit(0);
}

static pid_t
start_target(int *to, int *from, uint32_t *port, unsigned access)
{
	int a[2], b[2];
	pid_t pid;

	ASSERT_OK(pipe(a));
	ASSERT_OK(pipe(b));
	pid = fork();
	ASSERT_GE(pid, 0);
	if (pid == 0) {
		close(a[1]);
		close(b[0]);
		target_child(a[0], b[1], access);
	}
	close(a[0]);
	close(b[1]);
	*to = a[1];
	*from = b[0];
	ASSERT_EQ(read(*from, port, sizeof(*port)), (ssize_t)sizeof(*port));
	return pid;
}

static void
reap(pid_t pid)
{
	int st;

	ASSERT_EQ(waitpid(pid, &st, 0), pid);
	ASSERT(WIFEXITED(st));
	ASSERT_EQ(WEXITSTATUS(st), 0);
}

TEST(verbs_one_sided_processes)
{
	struct tdaemon d;
	struct end e;
	struct remote r;
	struct vrdma_wc wc;
	uint32_t port;
	int to, from;
	char c;
	pid_t pid;

	td_start(&d, NULL);
	pid = start_target(&to, &from, &port, all_access);
	end_open(&e, "a", 1u << 20, all_access, 16);
	ASSERT_OK(vrdma_connect(e.qp, 4, port, NULL, &r, 5000));
	/* READ the target's pattern, all of it, in pieces across its pages. */
	ASSERT_OK(post(e.qp, VRDMA_WR_RDMA_READ, 1, e.buf, 1u << 20, e.mr->lkey, r.addr, r.rkey));
	wc = wait_wc(e.cq);
	ASSERT_EQ(wc.status, VRDMA_WC_SUCCESS);
	ASSERT_EQ(wc.opcode, VRDMA_WC_RDMA_READ);
	ASSERT_EQ(wc.wr_id, 1u);
	for (size_t i = 0; i < e.len; i++)
		ASSERT_EQ(e.buf[i], (uint8_t)(i * 7));
	/* WRITE 64 KiB, unsignaled, then a signaled one: only one completion. */
	memset(e.buf, 0xab, 65536);
	{
		struct vrdma_sge s = { (uintptr_t)e.buf, 32768, e.mr->lkey };
		struct vrdma_sge s2 = { (uintptr_t)e.buf + 32768, 32768, e.mr->lkey };
		struct vrdma_send_wr w2 = { .wr_id = 3, .sg_list = &s2, .num_sge = 1,
					    .opcode = VRDMA_WR_RDMA_WRITE,
					    .send_flags = VRDMA_SEND_SIGNALED };
		struct vrdma_send_wr w1 = { .wr_id = 2, .next = &w2, .sg_list = &s, .num_sge = 1,
					    .opcode = VRDMA_WR_RDMA_WRITE };
		struct vrdma_send_wr *bad;

		w1.wr.rdma.remote_addr = r.addr + 4096;
		w1.wr.rdma.rkey = r.rkey;
		w2.wr.rdma.remote_addr = r.addr + 4096 + 32768;
		w2.wr.rdma.rkey = r.rkey;
		ASSERT_OK(vrdma_post_send(e.qp, &w1, &bad));
	}
	wc = wait_wc(e.cq);
	ASSERT_EQ(wc.wr_id, 3u);
	ASSERT_EQ(wc.status, VRDMA_WC_SUCCESS);
	/* Atomics on word 1 (zeroed first by a WRITE of zeros). */
	memset(e.buf, 0, 8);
	ASSERT_OK(post(e.qp, VRDMA_WR_RDMA_WRITE, 4, e.buf, 8, e.mr->lkey, r.addr + 8, r.rkey));
	ASSERT_EQ(wait_wc(e.cq).status, VRDMA_WC_SUCCESS);
	for (int i = 0; i < 1000; i++) {
		uint64_t *res = (uint64_t *)(void *)(e.buf + 64);

		ASSERT_OK(post_atomic(e.qp, VRDMA_WR_ATOMIC_FETCH_AND_ADD, res, e.mr->lkey,
				      r.addr + 8, r.rkey, 1, 0));
		wc = wait_wc(e.cq);
		ASSERT_EQ(wc.status, VRDMA_WC_SUCCESS);
		ASSERT_EQ(wc.opcode, VRDMA_WC_FETCH_ADD);
		ASSERT_EQ(*res, (uint64_t)i);
	}
	/* Compare-and-swap that fails leaves it: 1000 stays, the old value comes back. */
	ASSERT_OK(post_atomic(e.qp, VRDMA_WR_ATOMIC_CMP_AND_SWP, e.buf + 64, e.mr->lkey, r.addr + 8,
			      r.rkey, 5, 77));
	ASSERT_EQ(wait_wc(e.cq).status, VRDMA_WC_SUCCESS);
	ASSERT_EQ(*(uint64_t *)(void *)(e.buf + 64), 1000u);
	ASSERT_EQ(write(to, "g", 1), 1);
	ASSERT_EQ(read(from, &c, 1), 1); /* the target checked its memory */
	/* Out of bounds: REM_ACCESS_ERR, the QP in ERR, the next WR flushed. */
	ASSERT_OK(post(e.qp, VRDMA_WR_RDMA_WRITE, 5, e.buf, 16, e.mr->lkey,
		       r.addr + (1u << 20) - 8, r.rkey));
	wc = wait_wc(e.cq);
	ASSERT_EQ(wc.status, VRDMA_WC_REM_ACCESS_ERR);
	ASSERT_OK(post(e.qp, VRDMA_WR_RDMA_READ, 6, e.buf, 16, e.mr->lkey, r.addr, r.rkey));
	wc = wait_wc(e.cq);
	ASSERT_EQ(wc.wr_id, 6u);
	ASSERT_EQ(wc.status, VRDMA_WC_WR_FLUSH_ERR);
	ASSERT_EQ(write(to, "q", 1), 1);
	reap(pid);
	end_close(&e);
	close(to);
	close(from);
	td_stop(&d);
	td_cleanup(&d);
}

static void
reconnect(struct end *a, struct end *b, uint8_t rnr_retry)
{
	struct vrdma_qp_attr at = { .qp_state = VRDMA_QPS_RESET };

	ASSERT_OK(vrdma_modify_qp(a->qp, &at, VRDMA_QP_STATE));
	ASSERT_OK(vrdma_modify_qp(b->qp, &at, VRDMA_QP_STATE));
	connect_by_hand(a, b, rnr_retry);
}

static enum vrdma_wc_status
one(struct end *a, enum vrdma_wr_opcode op, void *local, uint32_t len, uint32_t lkey,
    uint64_t raddr, uint32_t rkey)
{
	struct vrdma_wc wc;

	ASSERT_OK(post(a->qp, op, 9, local, len, lkey, raddr, rkey));
	wc = wait_wc(a->cq);
	ASSERT_EQ(wc.wr_id, 9u);
	return wc.status;
}

/* Access checks in one process: two contexts, connected by hand. */
TEST(verbs_access_errors)
{
	struct tdaemon d;
	struct end a, b;
	struct vrdma_mr *ro, *nolw, *other;
	struct vrdma_pd *pd2;
	static uint8_t rbuf[16384], lbuf[4096], obuf[4096];
	uint64_t braddr;

	td_start(&d, NULL);
	end_open(&a, "a", 65536, all_access, 16);
	end_open(&b, "b", 65536, all_access, 16);
	braddr = (uintptr_t)b.buf;
	ASSERT_OK(vrdma_reg_mr(b.pd, rbuf, sizeof(rbuf), VRDMA_ACCESS_REMOTE_READ, &ro));
	ASSERT_OK(vrdma_reg_mr(a.pd, lbuf, sizeof(lbuf), 0, &nolw));
	ASSERT_OK(vrdma_alloc_pd(b.ctx, &pd2));
	ASSERT_OK(vrdma_reg_mr(pd2, obuf, sizeof(obuf), all_access, &other));
	connect_by_hand(&a, &b, 7);
	/* A read-only MR: READ works, WRITE is REM_ACCESS_ERR, then everything flushes. */
	rbuf[5] = 42;
	ASSERT_EQ(one(&a, VRDMA_WR_RDMA_READ, a.buf, 16, a.mr->lkey, (uintptr_t)rbuf, ro->rkey),
		  VRDMA_WC_SUCCESS);
	ASSERT_EQ(a.buf[5], 42);
	ASSERT_EQ(one(&a, VRDMA_WR_RDMA_WRITE, a.buf, 16, a.mr->lkey, (uintptr_t)rbuf, ro->rkey),
		  VRDMA_WC_REM_ACCESS_ERR);
	ASSERT_EQ(one(&a, VRDMA_WR_RDMA_READ, a.buf, 16, a.mr->lkey, (uintptr_t)rbuf, ro->rkey),
		  VRDMA_WC_WR_FLUSH_ERR);
	reconnect(&a, &b, 7);
	/* A wrong rkey, an MR of another PD, a bad lkey, READ into memory without LOCAL_WRITE. */
	ASSERT_EQ(one(&a, VRDMA_WR_RDMA_WRITE, a.buf, 16, a.mr->lkey, braddr, b.mr->rkey + 1),
		  VRDMA_WC_REM_ACCESS_ERR);
	reconnect(&a, &b, 7);
	ASSERT_EQ(one(&a, VRDMA_WR_RDMA_WRITE, a.buf, 16, a.mr->lkey, (uintptr_t)obuf, other->rkey),
		  VRDMA_WC_REM_ACCESS_ERR);
	reconnect(&a, &b, 7);
	ASSERT_EQ(one(&a, VRDMA_WR_RDMA_WRITE, a.buf, 16, a.mr->lkey + 256, braddr, b.mr->rkey),
		  VRDMA_WC_LOC_PROT_ERR);
	reconnect(&a, &b, 7);
	ASSERT_EQ(one(&a, VRDMA_WR_RDMA_WRITE, a.buf + 65530, 16, a.mr->lkey, braddr, b.mr->rkey),
		  VRDMA_WC_LOC_PROT_ERR); /* past the local MR */
	reconnect(&a, &b, 7);
	ASSERT_EQ(one(&a, VRDMA_WR_RDMA_READ, lbuf, 16, nolw->lkey, braddr, b.mr->rkey),
		  VRDMA_WC_LOC_PROT_ERR);
	reconnect(&a, &b, 7);
	ASSERT_EQ(post_atomic(a.qp, VRDMA_WR_ATOMIC_FETCH_AND_ADD, a.buf, a.mr->lkey, braddr + 4,
			      b.mr->rkey, 1, 0),
		  0);
	ASSERT_EQ(wait_wc(a.cq).status, VRDMA_WC_REM_INV_REQ_ERR); /* not 8-byte aligned */
	reconnect(&a, &b, 7);
	{
		struct vrdma_sge s = { (uintptr_t)a.buf, 4, a.mr->lkey };
		struct vrdma_send_wr wr = { .sg_list = &s, .num_sge = 1,
					    .opcode = VRDMA_WR_ATOMIC_FETCH_AND_ADD };
		struct vrdma_send_wr *bad;

		ASSERT_EQ(vrdma_post_send(a.qp, &wr, &bad), -EINVAL); /* result not 8 bytes */
	}
	/* The target QP reset (a new connection to come): its old peer is answered no more. */
	{
		struct vrdma_qp_attr at = { .qp_state = VRDMA_QPS_RESET };

		ASSERT_EQ(one(&a, VRDMA_WR_RDMA_WRITE, a.buf, 16, a.mr->lkey, braddr, b.mr->rkey),
			  VRDMA_WC_SUCCESS);
		ASSERT_OK(vrdma_modify_qp(b.qp, &at, VRDMA_QP_STATE));
		ASSERT_EQ(one(&a, VRDMA_WR_RDMA_WRITE, a.buf, 16, a.mr->lkey, braddr, b.mr->rkey),
			  VRDMA_WC_RETRY_EXC_ERR);
		ASSERT_OK(vrdma_modify_qp(a.qp, &at, VRDMA_QP_STATE));
		connect_by_hand(&a, &b, 7);
	}
	/* Deregistration revokes: the key fails at once, and the old mapping is detached. */
	memset(a.buf, 0x5a, 64);
	ASSERT_EQ(one(&a, VRDMA_WR_RDMA_WRITE, a.buf, 64, a.mr->lkey, braddr, b.mr->rkey),
		  VRDMA_WC_SUCCESS);
	ASSERT_EQ(b.buf[63], 0x5a);
	{
		uint32_t rkey = b.mr->rkey;
		uint8_t *stale = NULL;
		uint8_t *keep = b.buf;

		for (unsigned i = 0; i < VRDMA__RMR_CACHE; i++)
			if (a.qp->rmr[i].rkey == rkey)
				stale = a.qp->rmr[i].seg[0].map;
		ASSERT(stale != NULL);
		ASSERT_OK(vrdma_dereg_mr(b.mr));
		/* What a peer that kept its mapping writes no longer reaches the buffer. */
		memset(stale, 0x11, 4096);
		ASSERT_EQ(keep[0], 0x5a);
		ASSERT_EQ(one(&a, VRDMA_WR_RDMA_WRITE, a.buf, 64, a.mr->lkey, braddr, rkey),
			  VRDMA_WC_REM_ACCESS_ERR);
		ASSERT_OK(vrdma_reg_mr(b.pd, b.buf, b.len, all_access, &b.mr));
		ASSERT_NE(b.mr->rkey, rkey); /* a new key, not the old one back */
	}
	ASSERT_OK(vrdma_dereg_mr(ro));
	ASSERT_OK(vrdma_dereg_mr(nolw));
	ASSERT_OK(vrdma_dereg_mr(other));
	ASSERT_OK(vrdma_dealloc_pd(pd2));
	end_close(&a);
	end_close(&b);
	td_stop(&d);
	td_cleanup(&d);
}

static void
send_bytes(struct end *a, enum vrdma_wr_opcode op, uint32_t off, uint32_t len, uint32_t imm,
	   unsigned flags)
{
	struct vrdma_sge s = { (uintptr_t)a->buf + off, len, a->mr->lkey };
	struct vrdma_send_wr wr = { .wr_id = 100 + off, .sg_list = &s, .num_sge = 1, .opcode = op,
				    .send_flags = VRDMA_SEND_SIGNALED | flags, .imm_data = imm };
	struct vrdma_send_wr *bad;

	wr.wr.rdma.remote_addr = 0;
	ASSERT_OK(vrdma_post_send(a->qp, &wr, &bad));
}

TEST(verbs_send_recv)
{
	struct tdaemon d;
	struct end a, b;
	struct vrdma_wc wc;

	td_start(&d, NULL);
	end_open(&a, "a", 65536, all_access, 16);
	end_open(&b, "b", 65536, all_access, 16);
	connect_by_hand(&a, &b, 7);
	for (int i = 0; i < 1000; i++)
		a.buf[i] = (uint8_t)(i * 3 + 1);
	post_recv(&b, 1, 0, 1024);
	post_recv(&b, 2, 1024, 1024);
	send_bytes(&a, VRDMA_WR_SEND_WITH_IMM, 0, 1000, 0xdeadbeef, 0);
	wc = wait_wc(a.cq);
	ASSERT_EQ(wc.status, VRDMA_WC_SUCCESS);
	ASSERT_EQ(wc.opcode, VRDMA_WC_SEND);
	wc = wait_wc(b.cq);
	ASSERT_EQ(wc.status, VRDMA_WC_SUCCESS);
	ASSERT_EQ(wc.opcode, VRDMA_WC_RECV);
	ASSERT_EQ(wc.wr_id, 1u);
	ASSERT_EQ(wc.byte_len, 1000u);
	ASSERT_EQ(wc.wc_flags & VRDMA_WC_WITH_IMM, VRDMA_WC_WITH_IMM);
	ASSERT_EQ(wc.imm_data, 0xdeadbeefu);
	ASSERT_EQ(wc.src_qp, vrdma_qp_num(a.qp));
	ASSERT_OK(memcmp(a.buf, b.buf, 1000));
	/* WRITE_WITH_IMM: the data where it was written, the immediate in a receive. */
	{
		struct vrdma_sge s = { (uintptr_t)a.buf, 500, a.mr->lkey };
		struct vrdma_send_wr wr = { .wr_id = 5, .sg_list = &s, .num_sge = 1,
					    .opcode = VRDMA_WR_RDMA_WRITE_WITH_IMM,
					    .imm_data = 77 };
		struct vrdma_send_wr *bad;

		wr.wr.rdma.remote_addr = (uintptr_t)b.buf + 8192;
		wr.wr.rdma.rkey = b.mr->rkey;
		ASSERT_OK(vrdma_post_send(a.qp, &wr, &bad)); /* unsignaled: no completion */
	}
	wc = wait_wc(b.cq);
	ASSERT_EQ(wc.opcode, VRDMA_WC_RECV_RDMA_WITH_IMM);
	ASSERT_EQ(wc.wr_id, 2u);
	ASSERT_EQ(wc.byte_len, 500u);
	ASSERT_EQ(wc.imm_data, 77u);
	ASSERT_OK(memcmp(a.buf, b.buf + 8192, 500));
	ASSERT_EQ(vrdma_poll_cq(a.cq, 1, &wc), 0);
	/* Inline: the buffer may change as soon as post returns. */
	post_recv(&b, 3, 0, 1024);
	memset(a.buf + 2048, 'x', 32);
	{
		struct vrdma_sge s = { (uintptr_t)a.buf + 2048, 32, 0 };
		struct vrdma_send_wr wr = { .wr_id = 6, .sg_list = &s, .num_sge = 1,
					    .opcode = VRDMA_WR_SEND, .send_flags = VRDMA_SEND_INLINE };
		struct vrdma_send_wr *bad;

		ASSERT_OK(vrdma_post_send(a.qp, &wr, &bad));
	}
	memset(a.buf + 2048, 'y', 32);
	wc = wait_wc(b.cq);
	ASSERT_EQ(wc.byte_len, 32u);
	ASSERT_EQ(b.buf[31], 'x');
	/* A receive too small: REM_INV_REQ_ERR at the sender. */
	post_recv(&b, 4, 0, 16);
	send_bytes(&a, VRDMA_WR_SEND, 0, 100, 0, 0);
	ASSERT_EQ(wait_wc(a.cq).status, VRDMA_WC_REM_INV_REQ_ERR);
	/* No receive posted and rnr_retry 0: RNR_RETRY_EXC_ERR. */
	reconnect(&a, &b, 0);
	send_bytes(&a, VRDMA_WR_SEND, 0, 100, 0, 0);
	ASSERT_EQ(wait_wc(a.cq).status, VRDMA_WC_RNR_RETRY_EXC_ERR);
	/* rnr_retry 7 waits for ever: a receive posted later takes it. */
	reconnect(&a, &b, 7);
	send_bytes(&a, VRDMA_WR_SEND, 0, 100, 0, 0);
	usleep(20000);
	ASSERT_EQ(vrdma_poll_cq(a.cq, 1, &wc), 0);
	post_recv(&b, 8, 0, 1024);
	ASSERT_EQ(wait_wc(a.cq).status, VRDMA_WC_SUCCESS);
	wc = wait_wc(b.cq);
	ASSERT_EQ(wc.wr_id, 8u);
	ASSERT_EQ(wc.byte_len, 100u);
	/* A QP moved to ERR flushes its receives. */
	post_recv(&b, 9, 0, 1024);
	{
		struct vrdma_qp_attr at = { .qp_state = VRDMA_QPS_ERR };

		ASSERT_OK(vrdma_modify_qp(b.qp, &at, VRDMA_QP_STATE));
	}
	wc = wait_wc(b.cq);
	ASSERT_EQ(wc.wr_id, 9u);
	ASSERT_EQ(wc.status, VRDMA_WC_WR_FLUSH_ERR);
	/* ... and its peer's sends are not answered: RETRY_EXC_ERR. */
	send_bytes(&a, VRDMA_WR_SEND, 0, 10, 0, 0);
	ASSERT_EQ(wait_wc(a.cq).status, VRDMA_WC_RETRY_EXC_ERR);
	end_close(&a);
	end_close(&b);
	td_stop(&d);
	td_cleanup(&d);
}

/*
 * Unsignaled WRs run without reserving a completion; one that fails when
 * its CQ is full overruns the CQ, as the IBA says: -EOVERFLOW from then on.
 */
TEST(verbs_cq_overrun)
{
	struct tdaemon d;
	struct end a, b;
	struct vrdma_cq *small;
	struct vrdma_qp *qp;
	struct vrdma_qp_init_attr ia = { .qp_type = VRDMA_QPT_RC, .cap = { .max_send_wr = 8 } };
	struct vrdma_wc wc;

	td_start(&d, NULL);
	end_open(&a, "a", 4096, all_access, 4);
	end_open(&b, "b", 4096, all_access, 4);
	ASSERT_OK(vrdma_create_cq(a.ctx, 2, NULL, NULL, &small));
	ia.send_cq = ia.recv_cq = small;
	ASSERT_OK(vrdma_create_qp(a.pd, &ia, &qp));
	ASSERT_OK(vrdma_destroy_qp(a.qp));
	a.qp = qp;
	connect_by_hand(&a, &b, 7);
	/* Two signaled WRITEs fill the CQ; a third waits for room, not run. */
	for (int i = 0; i < 3; i++)
		ASSERT_OK(post(a.qp, VRDMA_WR_RDMA_WRITE, (uint64_t)i, a.buf, 8, a.mr->lkey,
			       (uintptr_t)b.buf, b.mr->rkey));
	ASSERT_EQ(vrdma_poll_cq(small, 1, &wc), 1);
	ASSERT_EQ(wc.wr_id, 0u);
	ASSERT_EQ(vrdma_poll_cq(small, 1, &wc), 1); /* the third ran meanwhile */
	ASSERT_EQ(vrdma_poll_cq(small, 1, &wc), 1);
	ASSERT_EQ(wc.wr_id, 2u);
	/* Full again, then an unsignaled WRITE that fails: overrun. */
	for (int i = 0; i < 2; i++)
		ASSERT_OK(post(a.qp, VRDMA_WR_RDMA_WRITE, 10, a.buf, 8, a.mr->lkey,
			       (uintptr_t)b.buf, b.mr->rkey));
	{
		struct vrdma_sge sge = { (uintptr_t)a.buf, 8, a.mr->lkey };
		struct vrdma_send_wr wr = { .sg_list = &sge, .num_sge = 1,
					    .opcode = VRDMA_WR_RDMA_WRITE };
		struct vrdma_send_wr *bad;

		wr.wr.rdma.remote_addr = (uintptr_t)b.buf;
		wr.wr.rdma.rkey = b.mr->rkey + 1;
		ASSERT_OK(vrdma_post_send(a.qp, &wr, &bad));
	}
	ASSERT_EQ(vrdma_poll_cq(small, 1, &wc), -EOVERFLOW);
	ASSERT_OK(vrdma_destroy_qp(a.qp));
	{
		struct vrdma_qp_init_attr ia2 = { .qp_type = VRDMA_QPT_RC, .send_cq = a.cq,
						  .recv_cq = a.cq };

		ASSERT_OK(vrdma_create_qp(a.pd, &ia2, &a.qp));
	}
	ASSERT_OK(vrdma_destroy_cq(small));
	end_close(&a);
	end_close(&b);
	td_stop(&d);
	td_cleanup(&d);
}

TEST(verbs_cm)
{
	struct tdaemon d;
	struct end a, b, r;
	struct vrdma_listener *l, *l2;
	struct vrdma_conn_req req;
	pid_t pid;

	td_start(&d, NULL);
	end_open(&a, "a", 4096, all_access, 4);
	end_open(&b, "b", 4096, all_access, 4);
	end_open(&r, "r", 4096, all_access, 4);
	ASSERT_EQ(vrdma_connect(a.qp, 4, 700, NULL, NULL, 1000), -ECONNREFUSED); /* nobody */
	ASSERT_OK(vrdma_listen(b.ctx, 7000, &l));
	ASSERT_EQ(vrdma_listen(b.ctx, 7000, &l2), -EADDRINUSE);
	ASSERT_EQ(vrdma_get_request(l, &req, 0), -EAGAIN);
	/* A restricted context reaches only the host: by the connection manager or by hand. */
	ASSERT_EQ(vrdma_connect(r.qp, 4, 7000, NULL, NULL, 1000), -EACCES);
	{
		struct vrdma_qp_attr at = { .qp_state = VRDMA_QPS_INIT, .port_num = 1 };

		ASSERT_OK(vrdma_modify_qp(r.qp, &at,
					  VRDMA_QP_STATE | VRDMA_QP_PKEY_INDEX | VRDMA_QP_PORT |
						  VRDMA_QP_ACCESS_FLAGS));
		at = (struct vrdma_qp_attr){ .qp_state = VRDMA_QPS_RTR, .path_mtu = VRDMA_MTU_4096,
					     .dest_qp_num = vrdma_qp_num(b.qp) };
		at.ah_attr.dest_cid = 4;
		ASSERT_EQ(vrdma_modify_qp(r.qp, &at,
					  VRDMA_QP_STATE | VRDMA_QP_AV | VRDMA_QP_PATH_MTU |
						  VRDMA_QP_DEST_QPN | VRDMA_QP_RQ_PSN |
						  VRDMA_QP_MAX_DEST_RD_ATOMIC | VRDMA_QP_MIN_RNR_TIMER),
			  -EACCES);
		at.ah_attr.is_global = 1; /* nor another host */
		at.ah_attr.dgid[10] = at.ah_attr.dgid[11] = 0xff;
		ASSERT_EQ(vrdma_modify_qp(r.qp, &at,
					  VRDMA_QP_STATE | VRDMA_QP_AV | VRDMA_QP_PATH_MTU |
						  VRDMA_QP_DEST_QPN | VRDMA_QP_RQ_PSN |
						  VRDMA_QP_MAX_DEST_RD_ATOMIC | VRDMA_QP_MIN_RNR_TIMER),
			  -EACCES);
		at = (struct vrdma_qp_attr){ .qp_state = VRDMA_QPS_RESET };
		ASSERT_OK(vrdma_modify_qp(r.qp, &at, VRDMA_QP_STATE));
	}
	/* Rejected: the connector hears it. */
	pid = fork();
	ASSERT_GE(pid, 0);
	if (pid == 0) {
		struct end c;

		end_open(&c, "a", 4096, all_access, 4);
		ASSERT_EQ(vrdma_connect(c.qp, 4, 7000, NULL, NULL, 5000), -ECONNREFUSED);
		_exit(0);
	}
	ASSERT_OK(vrdma_get_request(l, &req, 5000));
	ASSERT_EQ(req.src_cid, 3u);
	ASSERT_OK(vrdma_reject(l, &req));
	reap(pid);
	/* No answer in time: -ETIMEDOUT, and a late accept finds nobody. */
	ASSERT_EQ(vrdma_connect(a.qp, 4, 7000, NULL, NULL, 200), -ETIMEDOUT);
	ASSERT_OK(vrdma_get_request(l, &req, 5000));
	ASSERT_EQ(vrdma_accept(l, &req, b.qp, NULL), -ECONNABORTED);
	vrdma_listener_close(l);
	end_close(&a);
	end_close(&b);
	end_close(&r);
	td_stop(&d);
	td_cleanup(&d);
}

TEST(verbs_comp_channel)
{
	struct tdaemon d;
	struct end a, b;
	struct vrdma_comp_channel *ch;
	struct vrdma_cq *cq, *got;
	struct vrdma_qp *qp;
	struct vrdma_qp_init_attr ia = { .qp_type = VRDMA_QPT_RC, .cap = { .max_recv_wr = 4 } };
	struct vrdma_wc wc;
	void *ctx;
	struct pollfd p;

	td_start(&d, NULL);
	end_open(&a, "a", 4096, all_access, 4);
	end_open(&b, "b", 4096, all_access, 4);
	/* b's QP on a CQ with a channel instead. */
	ASSERT_OK(vrdma_create_comp_channel(b.ctx, &ch));
	ASSERT_OK(vrdma_create_cq(b.ctx, 16, &b, ch, &cq));
	ia.send_cq = ia.recv_cq = cq;
	ASSERT_OK(vrdma_create_qp(b.pd, &ia, &qp));
	ASSERT_OK(vrdma_destroy_qp(b.qp));
	b.qp = qp;
	connect_by_hand(&a, &b, 7);
	post_recv(&b, 1, 0, 1024);
	ASSERT_OK(vrdma_req_notify_cq(cq, 0));
	p = (struct pollfd){ .fd = vrdma_comp_channel_fd(ch), .events = POLLIN };
	ASSERT_EQ(poll(&p, 1, 0), 0); /* nothing yet */
	send_bytes(&a, VRDMA_WR_SEND, 0, 64, 0, 0);
	ASSERT_EQ(poll(&p, 1, 5000), 1);
	ASSERT_OK(vrdma_get_cq_event(ch, &got, &ctx));
	ASSERT(got == cq);
	ASSERT(ctx == &b);
	vrdma_ack_cq_events(cq, 1);
	ASSERT_EQ(vrdma_poll_cq(cq, 1, &wc), 1);
	ASSERT_EQ(wc.opcode, VRDMA_WC_RECV);
	ASSERT_EQ(wc.byte_len, 64u);
	ASSERT_EQ(vrdma_destroy_comp_channel(ch), -EBUSY);
	ASSERT_OK(vrdma_destroy_qp(qp));
	b.qp = NULL;
	{
		struct vrdma_qp_init_attr ia2 = { .qp_type = VRDMA_QPT_RC, .send_cq = b.cq,
						  .recv_cq = b.cq };

		ASSERT_OK(vrdma_create_qp(b.pd, &ia2, &b.qp));
	}
	ASSERT_OK(vrdma_destroy_cq(cq));
	ASSERT_OK(vrdma_destroy_comp_channel(ch));
	end_close(&a);
	end_close(&b);
	td_stop(&d);
	td_cleanup(&d);
}

/* ---------------------------------------------------------------------- */
/* Between hosts: RoCE v2 */

/* A host: vSwitch0 with uplink vmnic1 on @dev, vmk1 at @ip, vmrdma0 paired and bound. */
static void
roce_host(char *buf, size_t len, const char *dev, const char *ip, unsigned mtu)
{
	snprintf(buf, len,
		 "vswitch0.name = \"vSwitch0\"\nvswitch0.mtu = \"%u\"\n"
		 "portgroup0.name = \"VM Network\"\nportgroup0.vswitch = \"vSwitch0\"\n"
		 "uplink0.name = \"vmnic1\"\nuplink0.device = \"%s\"\n"
		 "vmk0.name = \"vmk1\"\nvmk0.portgroup = \"VM Network\"\nvmk0.ip = \"%s/24\"\n"
		 "rdma0.name = \"vmrdma0\"\nrdma0.uplink = \"vmnic1\"\nrdma0.vmknic = \"vmk1\"\n",
		 mtu, dev, ip);
}

/*
 * Two hosts (namespaces vmfr-@tag-a and -b joined by a veth pair), each with
 * its daemon: vSwitch0, vmnic1, vmk1, vmrdma0. @tag keeps tests that run
 * at the same time apart. The veth ends have ARP off: a kernel answers ARP
 * for its addresses on any interface, so the peer would learn the veth's
 * MAC for vmk1's IP, and RoCE frames would reach the host's IP stack (no
 * socket on UDP 4791) through the veth as well as the switch's vmk1.
 */
static void
two_hosts(struct tdaemon *a, struct tdaemon *b, char tag, const char *faults, unsigned mtu)
{
	char conf[512], ns[2][16], dev[2][16];

	if (geteuid() != 0)
		SKIP("needs root (network namespaces, a veth pair, TAP interfaces)");
	if (td_sh("command -v ip >/dev/null 2>&1"))
		SKIP("no ip command (iproute2)");
	for (int i = 0; i < 2; i++) {
		snprintf(ns[i], sizeof(ns[i]), "vmfr-%c%c", tag, 'a' + i);
		snprintf(dev[i], sizeof(dev[i]), "vmfr-%c%c", tag, 'a' + i);
		(void)td_sh("ip netns del %s 2>/dev/null", ns[i]);
	}
	ASSERT_EQ(td_sh("ip netns add %s && ip netns add %s && "
		 "ip -n %s link add %s type veth peer name %s netns %s && "
		 "ip -n %s link set dev %s mtu %u arp off up && "
		 "ip -n %s link set dev %s mtu %u arp off up && "
		 "{ ! command -v ethtool >/dev/null || "
		 "{ ip netns exec %s ethtool -K %s tso off gso off gro off tx off && "
		 "ip netns exec %s ethtool -K %s tso off gso off gro off tx off; } "
		 ">/dev/null 2>&1; }",
		 ns[0], ns[1], ns[0], dev[0], dev[1], ns[1], ns[0], dev[0], mtu, ns[1], dev[1], mtu,
		 ns[0], dev[0], ns[1], dev[1]),
		  0);
	if (faults)
		setenv("VMFABRIC_ROCE_FAULTS", faults, 1);
	roce_host(conf, sizeof(conf), dev[0], "10.77.9.1", mtu);
	td_start_ns(a, conf, ns[0]);
	roce_host(conf, sizeof(conf), dev[1], "10.77.9.2", mtu);
	td_start_ns(b, conf, ns[1]);
	unsetenv("VMFABRIC_ROCE_FAULTS");
	for (int i = 0; i < 2 && mtu != 1500; i++) { /* the adapters' own MTU: the host's stack */
		int t = 0;

		/* The daemon makes vmk1 beside its socket: it may not be there yet. */
		while (td_sh("ip -n %s link set dev vmk1 mtu %u 2>/dev/null", ns[i], mtu) &&
		       ++t < 200)
			usleep(10000);
		ASSERT_LT(t, 200);
	}
	/* Each daemon's XDP program bounces the veth's carrier as it loads: wait for both links. */
	for (int i = 0; i < 2; i++) {
		struct tdaemon *d = i ? b : a;
		bool up = false;

		for (int t = 0; t < 500 && !up; t++) {
			char *json = td_mgmt(d, "rdma.device.vmknic.list");

			up = strstr(json, "\"roce_usable\":true") != NULL;
			free(json);
			if (!up)
				usleep(10000);
		}
		ASSERT(up);
	}
	/* The path MTU follows: the Ethernet MTU less 80, rounded down to an IB MTU. */
	for (int i = 0; i < 2; i++) {
		char *json = td_mgmt(i ? b : a, "rdma.device.list");

		th_log("%s", json);
		ASSERT(strstr(json, mtu >= 4176 ? "\"mtu\":4096" : "\"mtu\":1024"));
		free(json);
	}
}

static void
two_hosts_end(struct tdaemon *a, struct tdaemon *b)
{
	char ns[2][32];

	memcpy(ns[0], a->netns, sizeof(ns[0])); /* td_cleanup() may clear them */
	memcpy(ns[1], b->netns, sizeof(ns[1]));
	td_stop(a);
	td_stop(b);
	td_cleanup(a);
	td_cleanup(b);
	(void)td_sh("ip netns del %s; ip netns del %s", ns[0], ns[1]);
}

/* An end on daemon @d, as the host context. */
static void
end_on(struct end *e, struct tdaemon *d, size_t len)
{
	ASSERT_OK(vmci_set_daemon(d->sock));
	end_open(e, "2", len, all_access, 64);
}

/* An RTS toward @ip, where no host answers ARP, in a thread: its result and when it came. */
struct rts_nowhere {
	struct end *e;
	const uint8_t *ip;
	int err;
	int64_t done_ns;
};

static void *
rts_nowhere(void *arg)
{
	struct rts_nowhere *n = arg;
	struct vrdma_qp_attr init = { .qp_state = VRDMA_QPS_INIT, .port_num = 1 };
	struct vrdma_qp_attr rtr = { .qp_state = VRDMA_QPS_RTR, .path_mtu = VRDMA_MTU_1024,
				     .dest_qp_num = 0x123, .rq_psn = 1, .max_dest_rd_atomic = 1 };
	struct vrdma_qp_attr rts = { .qp_state = VRDMA_QPS_RTS, .timeout = 14, .retry_cnt = 7,
				     .rnr_retry = 7, .max_rd_atomic = 1, .sq_psn = 1 };

	rtr.ah_attr.is_global = 1;
	rtr.ah_attr.dgid[10] = rtr.ah_attr.dgid[11] = 0xff;
	memcpy(rtr.ah_attr.dgid + 12, n->ip, 4);
	n->err = vrdma_modify_qp(n->e->qp, &init,
				 VRDMA_QP_STATE | VRDMA_QP_PKEY_INDEX | VRDMA_QP_PORT |
					 VRDMA_QP_ACCESS_FLAGS);
	if (!n->err)
		n->err = vrdma_modify_qp(n->e->qp, &rtr,
					 VRDMA_QP_STATE | VRDMA_QP_AV | VRDMA_QP_PATH_MTU |
						 VRDMA_QP_DEST_QPN | VRDMA_QP_RQ_PSN |
						 VRDMA_QP_MAX_DEST_RD_ATOMIC | VRDMA_QP_MIN_RNR_TIMER);
	if (!n->err)
		n->err = vrdma_modify_qp(n->e->qp, &rts,
					 VRDMA_QP_STATE | VRDMA_QP_SQ_PSN | VRDMA_QP_TIMEOUT |
						 VRDMA_QP_RETRY_CNT | VRDMA_QP_RNR_RETRY |
						 VRDMA_QP_MAX_QP_RD_ATOMIC);
	n->done_ns = clock_ns();
	return NULL;
}

static void
connect_global(struct end *x, const uint8_t xip[4], struct end *y, const uint8_t yip[4],
	       enum vrdma_mtu mtu)
{
	const uint8_t *const ip[2] = { xip, yip };

	connect_qps(x, y, 7, ip, mtu);
}

static void
roce_exercise(struct end *a, struct end *b)
{
	struct vrdma_wc wc;
	const size_t len = 1u << 20;

	/* WRITE 1 MiB (1024 packets at MTU 1024), then READ it back elsewhere. */
	for (size_t i = 0; i < len / 2; i++)
		a->buf[i] = (uint8_t)(i * 13 + 5);
	ASSERT_OK(post(a->qp, VRDMA_WR_RDMA_WRITE, 1, a->buf, (uint32_t)(len / 2), a->mr->lkey,
		       (uintptr_t)b->buf, b->mr->rkey));
	wc = wait_wc(a->cq);
	ASSERT_EQ(wc.status, VRDMA_WC_SUCCESS);
	ASSERT_EQ(wc.wr_id, 1u);
	ASSERT_OK(memcmp(a->buf, b->buf, len / 2));
	ASSERT_OK(post(a->qp, VRDMA_WR_RDMA_READ, 2, a->buf + len / 2, (uint32_t)(len / 2),
		       a->mr->lkey, (uintptr_t)b->buf, b->mr->rkey));
	wc = wait_wc(a->cq);
	ASSERT_EQ(wc.status, VRDMA_WC_SUCCESS);
	ASSERT_EQ(wc.opcode, VRDMA_WC_RDMA_READ);
	ASSERT_OK(memcmp(a->buf, a->buf + len / 2, len / 2));
	/* SEND with an immediate into a posted receive. */
	post_recv(b, 3, 0, 4096);
	memset(a->buf, 0x3c, 3000);
	send_bytes(a, VRDMA_WR_SEND_WITH_IMM, 0, 3000, 0x01020304, 0);
	ASSERT_EQ(wait_wc(a->cq).status, VRDMA_WC_SUCCESS);
	wc = wait_wc(b->cq);
	ASSERT_EQ(wc.status, VRDMA_WC_SUCCESS);
	ASSERT_EQ(wc.opcode, VRDMA_WC_RECV);
	ASSERT_EQ(wc.byte_len, 3000u);
	ASSERT_EQ(wc.imm_data, 0x01020304u);
	ASSERT_EQ(b->buf[2999], 0x3c);
	/* 200 FETCH_ADDs: exactly 200 added, whatever the network did. */
	memset(b->buf + 8192, 0, 8);
	for (int i = 0; i < 200; i++) {
		ASSERT_OK(post_atomic(a->qp, VRDMA_WR_ATOMIC_FETCH_AND_ADD, a->buf + 64, a->mr->lkey,
				      (uintptr_t)b->buf + 8192, b->mr->rkey, 1, 0));
		wc = wait_wc(a->cq);
		ASSERT_EQ(wc.status, VRDMA_WC_SUCCESS);
		ASSERT_EQ(*(uint64_t *)(void *)(a->buf + 64), (uint64_t)i);
	}
	ASSERT_EQ(*(uint64_t *)(void *)(b->buf + 8192), 200u);
	/*
	 * A region the other host deregistered: written just before, refused
	 * once vrdma_dereg_mr() returned (REM_ACCESS_ERR from the other host),
	 * its memory untouched.
	 */
	{
		static uint8_t extra[8192];
		struct vrdma_mr *mr;
		uint32_t rkey;

		ASSERT_OK(vrdma_reg_mr(b->pd, extra, sizeof(extra), all_access, &mr));
		rkey = mr->rkey;
		memset(a->buf, 0x77, 64);
		ASSERT_OK(post(a->qp, VRDMA_WR_RDMA_WRITE, 8, a->buf, 64, a->mr->lkey,
			       (uintptr_t)extra, rkey));
		ASSERT_EQ(wait_wc(a->cq).status, VRDMA_WC_SUCCESS);
		ASSERT_EQ(extra[63], 0x77);
		ASSERT_OK(vrdma_dereg_mr(mr));
		memset(a->buf, 0x55, 64);
		ASSERT_OK(post(a->qp, VRDMA_WR_RDMA_WRITE, 9, a->buf, 64, a->mr->lkey,
			       (uintptr_t)extra, rkey));
		ASSERT_EQ(wait_wc(a->cq).status, VRDMA_WC_REM_ACCESS_ERR);
		ASSERT_EQ(extra[0], 0x77);
	}
}

/* CPU time process @pid uses in the next @ms milliseconds, in milliseconds. */
static long
cpu_ms(pid_t pid, int ms)
{
	long t[2];

	for (int i = 0; i < 2; i++) {
		char path[64], buf[1024], *p;
		unsigned long ut = 0, st = 0;
		FILE *f;

		snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
		ASSERT((f = fopen(path, "r")));
		ASSERT(fgets(buf, sizeof(buf), f));
		fclose(f);
		p = strrchr(buf, ')');
		ASSERT(p);
		/* after the name: state, then fields 4..; utime and stime are fields 14 and 15 */
		ASSERT_EQ(sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut,
				 &st),
			  2);
		t[i] = (long)((ut + st) * 1000 / (unsigned long)sysconf(_SC_CLK_TCK));
		if (!i)
			usleep((useconds_t)ms * 1000);
	}
	return t[1] - t[0];
}

TEST(verbs_roce_hosts)
{
	struct tdaemon da, db;
	struct end a, b;
	static const uint8_t ipa[4] = { 10, 77, 9, 1 }, ipb[4] = { 10, 77, 9, 2 };

	two_hosts(&da, &db, 'h', NULL, 1500);
	end_on(&a, &da, 1u << 20);
	end_on(&b, &db, 1u << 20);
	connect_global(&a, ipa, &b, ipb, VRDMA_MTU_1024);
	roce_exercise(&a, &b);
	/*
	 * An RTS toward an address nobody answers waits for ARP without
	 * holding the daemon's control loop: a management request made
	 * meanwhile is answered before the RTS fails (EHOSTUNREACH).
	 */
	{
		static const uint8_t nowhere[4] = { 10, 77, 9, 3 };
		struct rts_nowhere n = { .ip = nowhere };
		struct end c;
		pthread_t t;
		int64_t mgmt_ns;
		char *json;

		end_on(&c, &da, 4096);
		n.e = &c;
		ASSERT_OK(pthread_create(&t, NULL, rts_nowhere, &n));
		usleep(30000);
		json = td_mgmt(&da, "system.status");
		mgmt_ns = clock_ns();
		free(json);
		pthread_join(t, NULL);
		th_log("RTS to nowhere: %d, %.0f ms after the management answer", n.err,
		       (double)(n.done_ns - mgmt_ns) / 1e6);
		ASSERT_EQ(n.err, -EHOSTUNREACH);
		ASSERT_LT(mgmt_ns, n.done_ns);
		end_close(&c);
	}
	/* Idle again, the daemons sleep: the rings' wakeups were taken. */
	usleep(200000);
	ASSERT_LT(cpu_ms(da.pid, 1000), 200);
	ASSERT_LT(cpu_ms(db.pid, 1000), 200);
	/*
	 * Access flags changed RTS -> RTS reach the engine: b no longer
	 * allows remote writes, and a's WRITE fails with REM_ACCESS_ERR.
	 */
	{
		struct vrdma_qp_attr ro = { .qp_access_flags = VRDMA_ACCESS_REMOTE_READ };
		struct vrdma_qp_attr reset = { .qp_state = VRDMA_QPS_RESET };

		ASSERT_OK(vrdma_modify_qp(a.qp, &reset, VRDMA_QP_STATE));
		ASSERT_OK(vrdma_modify_qp(b.qp, &reset, VRDMA_QP_STATE));
		connect_global(&a, ipa, &b, ipb, VRDMA_MTU_1024);
		ASSERT_OK(post(a.qp, VRDMA_WR_RDMA_WRITE, 1, a.buf, 64, a.mr->lkey,
			       (uintptr_t)b.buf, b.mr->rkey));
		ASSERT_EQ(wait_wc(a.cq).status, VRDMA_WC_SUCCESS);
		ASSERT_OK(vrdma_modify_qp(b.qp, &ro, VRDMA_QP_ACCESS_FLAGS));
		ASSERT_OK(post(a.qp, VRDMA_WR_RDMA_WRITE, 2, a.buf, 64, a.mr->lkey,
			       (uintptr_t)b.buf, b.mr->rkey));
		ASSERT_EQ(wait_wc(a.cq).status, VRDMA_WC_REM_ACCESS_ERR);
	}
	/*
	 * The adapter the QPs leave from is removed under them: they go to
	 * ERR (work flushes), and the daemon goes on.
	 */
	{
		struct vrdma_qp_attr reset = { .qp_state = VRDMA_QPS_RESET };
		char cmd[256], out[1024];

		ASSERT_OK(vrdma_modify_qp(a.qp, &reset, VRDMA_QP_STATE));
		ASSERT_OK(vrdma_modify_qp(b.qp, &reset, VRDMA_QP_STATE));
		connect_global(&a, ipa, &b, ipb, VRDMA_MTU_1024);
		snprintf(cmd, sizeof(cmd),
			 "%s --socket %s network ip interface remove --interface-name=vmk1",
			 VMFABRIC_CLI_PATH, da.sock);
		ASSERT_EQ(td_run(cmd, out, sizeof(out)), 0);
		ASSERT_OK(post(a.qp, VRDMA_WR_RDMA_WRITE, 1, a.buf, 64, a.mr->lkey,
			       (uintptr_t)b.buf, b.mr->rkey));
		ASSERT_NE(wait_wc(a.cq).status, VRDMA_WC_SUCCESS);
	}
	end_close(&a);
	end_close(&b);
	two_hosts_end(&da, &db);
}

TEST(verbs_roce_lossy)
{
	struct tdaemon da, db;
	struct end a, b;
	static const uint8_t ipa[4] = { 10, 77, 9, 1 }, ipb[4] = { 10, 77, 9, 2 };

	two_hosts(&da, &db, 'l', "loss=3,dup=2,reorder=3,seed=11", 9000);
	end_on(&a, &da, 1u << 20);
	end_on(&b, &db, 1u << 20);
	connect_global(&a, ipa, &b, ipb, VRDMA_MTU_4096);
	roce_exercise(&a, &b);
	/* The faults happened, and the transport made up for them. */
	{
		char *ja = td_mgmt(&da, "rdma.stats"), *jb = td_mgmt(&db, "rdma.stats");
		long long drop = 0, dup = 0, rexmit = 0, dupreq = 0;
		const char *p;

		th_log("%s\n%s", ja, jb);
		for (int i = 0; i < 2; i++) {
			const char *j = i ? jb : ja;

			drop += (p = strstr(j, "\"faults_dropped\":")) ? atoll(p + 17) : 0;
			dup += (p = strstr(j, "\"faults_duped\":")) ? atoll(p + 15) : 0;
			rexmit += (p = strstr(j, "\"retransmits\":")) ? atoll(p + 14) : 0;
			dupreq += (p = strstr(j, "\"dup_requests\":")) ? atoll(p + 15) : 0;
		}
		ASSERT_GT(drop, 0);
		ASSERT_GT(dup, 0);
		ASSERT_GT(rexmit, 0);
		ASSERT_GT(dupreq, 0);
		free(ja);
		free(jb);
	}
	/* The same counters through the CLI. */
	{
		char cmd[256], out[4096];

		snprintf(cmd, sizeof(cmd), "%s --socket %s rdma stats", VMFABRIC_CLI_PATH, da.sock);
		ASSERT_EQ(td_run(cmd, out, sizeof(out)), 0);
		th_log("%s", out);
		ASSERT(strstr(out, "roce.retransmits: "));
		ASSERT(strstr(out, "roce.faults_dropped: "));
	}
	end_close(&a);
	end_close(&b);
	two_hosts_end(&da, &db);
}

/*
 * tshark on one end of the veth: starts capturing RoCE v2 (UDP 4791) on
 * @dev inside namespace @ns into @path, and returns once it captures:
 * when the file has its header, which dumpcap writes after it opened the
 * interface (tshark says "Capturing on" before it starts dumpcap).
 */
static pid_t
capture_start(const char *ns, const char *dev, const char *path, const char *log)
{
	struct stat sb;
	pid_t pid;

	pid = fork();
	ASSERT_GE(pid, 0);
	if (pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

		dup2(fd, STDOUT_FILENO);
		dup2(fd, STDERR_FILENO);
		execlp("ip", "ip", "netns", "exec", ns, "tshark", "-n", "-i", dev, "-f",
		       "udp port 4791", "-w", path, (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 1000; i++) {
		if (stat(path, &sb) == 0 && sb.st_size > 0)
			return pid;
		if (waitpid(pid, NULL, WNOHANG) == pid) {
			char cmd[160];

			snprintf(cmd, sizeof(cmd), "cat %s >&2", log);
			(void)!system(cmd);
			th_fail(__FILE__, __LINE__, "tshark did not start capturing on %s", dev);
		}
		usleep(10000);
	}
	th_fail(__FILE__, __LINE__, "tshark did not start capturing on %s in 10 s", dev);
	return -1;
}

/*
 * Stop it once the last frames are in the file: the kernel hands dumpcap
 * a partly filled buffer after its timeout (250 ms), and dumpcap writes
 * the file at least every 100 ms; frames still in the kernel at SIGINT
 * would be lost.
 */
static void
capture_stop(pid_t pid, const char *path)
{
	off_t last = -1;
	struct stat sb;
	int st;

	usleep(500000);
	for (int i = 0; i < 20 && stat(path, &sb) == 0 && sb.st_size != last; i++) {
		last = sb.st_size;
		usleep(300000);
	}
	ASSERT_OK(kill(pid, SIGINT));
	ASSERT_EQ(waitpid(pid, &st, 0), pid);
	ASSERT(WIFEXITED(st));
	ASSERT_EQ(WEXITSTATUS(st), 0);
}

/*
 * The capture @path through tshark's InfiniBand dissector (RoCE v2 on UDP
 * 4791, Wireshark's default, said explicitly; the protocols that look for
 * themselves in IB payloads are off, as in roce_tshark): no malformed
 * packet, no expert warning or error. Counts each BTH opcode into @seen;
 * returns the frames.
 */
static int
dissect(const char *path, const char *dir, unsigned seen[32])
{
	char cmd[1024], line[512];
	int frames = 0, st;
	FILE *p;

	snprintf(cmd, sizeof(cmd),
		 "tshark -n -r %s -d udp.port==4791,infiniband "
		 "--disable-protocol rpcordma --disable-protocol iser "
		 "--disable-protocol nvme-rdma --disable-protocol smb_direct "
		 "--disable-protocol smc --disable-protocol lnet "
		 "--disable-protocol infiniband_sdp --disable-protocol fcoib -T fields "
		 "-E 'separator=|' -e frame.number -e _ws.malformed -e _ws.expert.severity "
		 "-e _ws.expert.message -e infiniband.bth.opcode 2>%s/tshark.err",
		 path, dir);
	p = popen(cmd, "r");
	ASSERT(p);
	while (fgets(line, sizeof(line), p)) {
		char *fld[5], *s = line;
		unsigned long op;

		line[strcspn(line, "\n")] = 0;
		for (int i = 0; i < 5; i++)
			fld[i] = strsep(&s, "|");
		ASSERT(fld[4]);
		if (fld[1][0] || fld[2][0])
			th_log("%s frame %s: malformed '%s', expert %s: %s", path, fld[0], fld[1],
			       fld[2], fld[3]);
		ASSERT_EQ(fld[1][0], 0); /* not malformed */
		for (char *e = fld[2], *tok; (tok = strsep(&e, ","));)
			if (*tok)
				ASSERT_LT(strtoul(tok, NULL, 0), 0x600000); /* below PI_WARN */
		ASSERT(fld[4][0]); /* decoded as InfiniBand */
		op = strtoul(fld[4], NULL, 0);
		ASSERT_LT(op, 32u);
		seen[op]++;
		frames++;
	}
	st = pclose(p);
	if (!WIFEXITED(st) || WEXITSTATUS(st)) {
		snprintf(cmd, sizeof(cmd), "cat %s/tshark.err >&2", dir);
		(void)!system(cmd);
		th_fail(__FILE__, __LINE__, "tshark -r %s failed (status %d)", path, st);
	}
	return frames;
}

/*
 * Live RoCE v2 frames between the two hosts through tshark's InfiniBand
 * dissector. Each veth end is captured in its namespace: a capture point
 * sees what its end sends, while what it receives is mostly taken by the
 * uplink's XDP program before a capture sees it, so one end shows one
 * host's frames and the two ends together both directions. The QPs run
 * roce_exercise() (WRITE, READ, SEND with immediate, 200 FETCH_ADDs, a bad
 * rkey); every frame must be well-formed and the opcodes of all of them
 * must be there.
 */
TEST(verbs_roce_tshark)
{
	static const uint8_t ipa[4] = { 10, 77, 9, 1 }, ipb[4] = { 10, 77, 9, 2 };
	/* At least one frame of each: IBA opcodes (RC), one bit each. */
	static const struct {
		const char *what;
		uint32_t ops;
	} want[] = {
		{ "RDMA WRITE", 0x3fu << 0x06 }, /* first, middle, last, only (with imm) */
		{ "RDMA READ request", 1u << 0x0c },
		{ "RDMA READ response", 0xfu << 0x0d },		    /* first, middle, last, only */
		{ "SEND with immediate", 1u << 0x03 | 1u << 0x05 }, /* last, only */
		{ "ACK", 1u << 0x11 },
		{ "ATOMIC ACK", 1u << 0x12 },
		{ "FETCH_ADD", 1u << 0x14 },
	};
	char dir[] = "/tmp/vmf-roce-tshark-XXXXXX", path[2][96], log[2][96];
	unsigned seen[32] = { 0 };
	struct tdaemon da, db;
	struct end a, b;
	pid_t cap[2];
	int frames[2];

	if (geteuid() == 0 && td_sh("command -v tshark >/dev/null 2>&1"))
		SKIP("no tshark (tools/setup-deps check)");
	two_hosts(&da, &db, 't', NULL, 1500);
	ASSERT(mkdtemp(dir));
	for (int i = 0; i < 2; i++) {
		struct tdaemon *d = i ? &db : &da;

		snprintf(path[i], sizeof(path[i]), "%s/%s.pcapng", dir, d->netns);
		snprintf(log[i], sizeof(log[i]), "%s/%s.log", dir, d->netns);
		cap[i] = capture_start(d->netns, d->netns, path[i], log[i]);
	}
	end_on(&a, &da, 1u << 20);
	end_on(&b, &db, 1u << 20);
	connect_global(&a, ipa, &b, ipb, VRDMA_MTU_1024);
	roce_exercise(&a, &b);
	for (int i = 0; i < 2; i++) {
		capture_stop(cap[i], path[i]);
		frames[i] = dissect(path[i], dir, seen);
		th_log("%s: %d RoCE v2 frames", path[i], frames[i]);
		ASSERT_GT(frames[i], 0);
	}
	for (unsigned op = 0; op < 32; op++)
		if (seen[op])
			th_log("opcode 0x%02x: %u frames", op, seen[op]);
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		unsigned n = 0;

		for (unsigned op = 0; op < 32; op++)
			n += want[i].ops >> op & 1 ? seen[op] : 0;
		if (!n)
			th_fail(__FILE__, __LINE__, "no %s frame captured", want[i].what);
	}
	ASSERT_GE(seen[0x14], 200u); /* every FETCH_ADD, and its answer */
	ASSERT_GE(seen[0x12], 200u);
	end_close(&a);
	end_close(&b);
	two_hosts_end(&da, &db);
	snprintf(path[0], sizeof(path[0]), "rm -rf %s", dir);
	(void)!system(path[0]);
}
