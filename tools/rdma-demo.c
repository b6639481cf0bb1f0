/* SPDX-License-Identifier: MIT */
/*
 * make run, RDMA: two process contexts of the built-in configuration on the
 * host's vmrdma0. demo-b registers 64 MiB and accepts a connection, then
 * does nothing at all; demo-a writes a pattern into demo-b's memory with
 * RDMA WRITE, reads it back with RDMA READ and checks every byte, then adds
 * 1 to a counter there 100,000 times with FETCH_AND_ADD. Both stay
 * connected until a line arrives on stdin, so that the CLI can show the
 * daemon's view meanwhile; then demo-b checks its own memory and the
 * counter.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "vmfabric/vmci.h"
#include "vend.h"
#include "vmfabric/vrdma.h"

#define LEN   (64u << 20)
#define CHUNK (1u << 20) /* bytes per WRITE or READ */
#define ADDS  100000
#define PORT  18515

struct remote {
	uint64_t addr;
	uint32_t rkey;
	uint32_t pad;
};

static void
check(int err, const char *what)
{
	if (err < 0) {
		fprintf(stderr, "rdma-demo: %s: %s\n", what, strerror(-err));
		exit(1);
	}
}

static double
now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void
side_open(struct vend *s, const char *context)
{
	const char *what = "";

	check(vmci_set_context(context), "vmci_set_context");
	check(vend_open(s, LEN,
			VRDMA_ACCESS_LOCAL_WRITE | VRDMA_ACCESS_REMOTE_WRITE |
				VRDMA_ACCESS_REMOTE_READ | VRDMA_ACCESS_REMOTE_ATOMIC,
			&what),
	      what);
}

/* demo-b: accept, tell where the memory is, then only wait. */
static int
target(int ready, int go)
{
	struct vend s;
	struct vrdma_listener *l;
	struct vrdma_conn_req req;
	struct remote r;
	struct vrdma_conn_param p = { .private_data = &r, .private_data_len = sizeof(r) };
	struct vrdma_device_attr da;
	uint64_t counter;
	char c;

	side_open(&s, "demo-b");
	check(vrdma_listen(s.ctx, PORT, &l), "vrdma_listen");
	check(vrdma_query_device(s.ctx, &da), "vrdma_query_device");
	if (write(ready, &da.cid, sizeof(da.cid)) != sizeof(da.cid)) /* where to connect */
		return 1;
	check(vrdma_get_request(l, &req, 10000), "vrdma_get_request");
	r = (struct remote){ (uintptr_t)s.buf, s.mr->rkey, 0 };
	check(vrdma_accept(l, &req, s.qp, &p), "vrdma_accept");
	if (read(go, &c, 1) != 1) /* the whole time: no poll, no post */
		return 1;
	for (uint32_t i = 64; i < LEN; i++)
		if (s.buf[i] != (uint8_t)(i * 31 + 7)) {
			fprintf(stderr, "rdma-demo: demo-b's byte %u is wrong\n", i);
			return 1;
		}
	memcpy(&counter, s.buf, sizeof(counter));
	printf("demo-b: its 64 MiB hold the pattern, its counter is %llu; it did nothing\n",
	       (unsigned long long)counter);
	return counter == ADDS ? 0 : 1;
}

static void
wait_wc(struct vend *s, const char *what)
{
	struct vrdma_wc wc;
	int n;

	while (!(n = vrdma_poll_cq(s->cq, 1, &wc)))
		;
	check(n, "vrdma_poll_cq");
	if (wc.status != VRDMA_WC_SUCCESS) {
		fprintf(stderr, "rdma-demo: %s: %s\n", what, vrdma_wc_status_str(wc.status));
		exit(1);
	}
}

/* Move @LEN bytes with @op in CHUNK pieces, a completion every 16; Gbit/s. */
static double
bulk(struct vend *s, const struct remote *r, enum vrdma_wr_opcode op, uint8_t *local)
{
	double t0 = now();

	for (uint32_t off = 64, k = 0; off < LEN; off += CHUNK, k++) {
		uint32_t len = off + CHUNK > LEN ? LEN - off : CHUNK;
		struct vrdma_sge sge = { (uintptr_t)local + off, len, s->mr->lkey };
		struct vrdma_send_wr wr = { .sg_list = &sge, .num_sge = 1, .opcode = op };
		struct vrdma_send_wr *bad;

		wr.send_flags = (k % 16 == 15 || off + len == LEN) ? VRDMA_SEND_SIGNALED : 0;
		wr.wr.rdma.remote_addr = r->addr + off;
		wr.wr.rdma.rkey = r->rkey;
		check(vrdma_post_send(s->qp, &wr, &bad), "vrdma_post_send");
		if (wr.send_flags)
			wait_wc(s, op == VRDMA_WR_RDMA_WRITE ? "RDMA WRITE" : "RDMA READ");
	}
	return (double)(LEN - 64) * 8 / (now() - t0) / 1e9;
}

int
main(void)
{
	int ready[2], go[2], st;
	struct vend s;
	struct remote r;
	pid_t pid;
	double t0, wr_gbit, rd_gbit;
	uint64_t old = 0;
	uint32_t cid;
	char c;

	if (pipe(ready) || pipe(go))
		return 1;
	if ((pid = fork()) == 0) {
		close(ready[0]);
		close(go[1]);
		exit(target(ready[1], go[0]));
	}
	close(ready[1]);
	close(go[0]);
	if (read(ready[0], &cid, sizeof(cid)) != sizeof(cid))
		return 1;
	side_open(&s, "demo-a");
	check(vrdma_connect(s.qp, cid, PORT, NULL, &r, 5000), "vrdma_connect");
	for (uint32_t i = 0; i < LEN; i++)
		s.buf[i] = (uint8_t)(i * 31 + 7);
	wr_gbit = bulk(&s, &r, VRDMA_WR_RDMA_WRITE, s.buf);
	memset(s.buf, 0, LEN);
	rd_gbit = bulk(&s, &r, VRDMA_WR_RDMA_READ, s.buf);
	for (uint32_t i = 64; i < LEN; i++)
		if (s.buf[i] != (uint8_t)(i * 31 + 7)) {
			fprintf(stderr, "rdma-demo: byte %u read back wrong\n", i);
			return 1;
		}
	t0 = now();
	for (int i = 0; i < ADDS; i++) {
		struct vrdma_sge sge = { (uintptr_t)s.buf, 8, s.mr->lkey };
		struct vrdma_send_wr wr = { .sg_list = &sge, .num_sge = 1,
					    .opcode = VRDMA_WR_ATOMIC_FETCH_AND_ADD,
					    .send_flags = VRDMA_SEND_SIGNALED };
		struct vrdma_send_wr *bad;

		wr.wr.atomic.remote_addr = r.addr;
		wr.wr.atomic.rkey = r.rkey;
		wr.wr.atomic.compare_add = 1;
		check(vrdma_post_send(s.qp, &wr, &bad), "vrdma_post_send");
		wait_wc(&s, "FETCH_AND_ADD");
		memcpy(&old, s.buf, sizeof(old));
		if (old != (uint64_t)i)
			return 1;
	}
	printf("demo-a -> demo-b on vmrdma0 (QP %u): RDMA WRITE of 64 MiB %.1f Gbit/s, "
	       "RDMA READ back %.1f Gbit/s, every byte checked; %d FETCH_AND_ADDs, %.2f us each\n",
	       vrdma_qp_num(s.qp), wr_gbit, rd_gbit, ADDS, (now() - t0) * 1e6 / ADDS);
	printf("the QPs stay connected\n");
	fflush(stdout);
	if (read(0, &c, 1) != 1) /* the CLI runs meanwhile */
		c = 0;
	if (write(go[1], "g", 1) != 1 || waitpid(pid, &st, 0) != pid)
		return 1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
}
