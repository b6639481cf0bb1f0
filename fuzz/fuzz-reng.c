/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: the RoCE v2 engine (src/rdma/engine.c), what an application
 * and the network can send it. Two QPs of one engine are joined through a
 * real switch (each on a VMkernel adapter port of its own, the frames of
 * one delivered to the other), with a memory region of exact size behind
 * each. The input is a series of: records written on a QP's queue pair by
 * its "application" (any bytes: lying lengths, bad SGEs and keys, unknown
 * kinds), frames from "the network" (any bytes, or a RoCE frame built from
 * fields for one of the QPs), and polls at times from the input.
 * Invariants: no access outside the regions (ASan), every completion
 * record well formed, and every region reference the engine took given
 * back once its QPs are gone.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "rdma/engine.h"
#include "switch/vmk.h"
#include "switch/vswitch.h"
#include "vmfabric/qp.h"

#define MR_LEN 16384
#define KEY    0x101u

static uint8_t *mem[2]; /* each QP's region: exact-size heap blocks */
static long refs;
static struct reng *eng_now;

/* The adapter ports' delivery, as vmk.c's: RoCE v2 to the engine, the rest nowhere. */
static int
f_enqueue(struct vsw_port *p, const struct iovec *iov, int iovcnt, size_t len)
{
	return reng_input(eng_now, (struct vmk_port *)p, iov, iovcnt, len) ? 0 : -ENOBUFS;
}

static const struct vsw_port_ops fops = { .enqueue = f_enqueue };

static int
f_get(void *owner, uint32_t key, uint32_t pd, uint64_t va, uint64_t len, unsigned access,
      uint8_t **out, void **ref)
{
	uint8_t *m = mem[(uintptr_t)owner];

	(void)access;
	if (key != KEY || pd != 1 || va < (uintptr_t)m || va + len < va ||
	    va + len > (uintptr_t)m + MR_LEN)
		return -EACCES;
	*out = (uint8_t *)(uintptr_t)va;
	*ref = m;
	refs++;
	return 0;
}

static void
f_put(void *owner, void *ref)
{
	(void)owner;
	(void)ref;
	refs--;
}

static void
f_nop(void *owner)
{
	(void)owner;
}

static const struct reng_mem_ops fmem = { .get = f_get, .put = f_put, .lock = f_nop,
					  .unlock = f_nop };

/* A frame for QP @qpn built from the input's fields, or the input's bytes as they are. */
static void
inject(struct reng *e, struct vmk_port *vmk, struct fz *in, const struct reng_path *to,
       uint32_t qpn)
{
	static uint8_t buf[ROCE_FRAME_MAX + 64];
	uint8_t payload[1024];
	struct roce_frame f = { .ttl = 64 };
	size_t len;
	struct iovec io;

	if (fz_take(in, 1) & 1) {
		len = fz_take(in, 2) % sizeof(buf);
		for (size_t i = 0; i < len; i++)
			buf[i] = (uint8_t)fz_take(in, 1);
	} else {
		ssize_t n;

		memcpy(f.dst_mac, to->src_mac, 6);
		memcpy(f.src_mac, to->dst_mac, 6);
		memcpy(f.dst_ip, to->src_ip, 4);
		memcpy(f.src_ip, to->dst_ip, 4);
		f.ib.opcode = (uint8_t)(fz_take(in, 1) % ROCE_OPCODE_COUNT);
		f.ib.pkey = ROCE_PKEY_DEFAULT;
		f.ib.dqpn = qpn;
		f.ib.psn = (uint32_t)fz_take(in, 3) & 0xffffff;
		f.ib.ackreq = fz_take(in, 1) & 1;
		f.ib.reth = (struct roce_reth){ (uintptr_t)mem[qpn == 6] + fz_take(in, 2) % MR_LEN,
						fz_take(in, 1) & 1 ? KEY : (uint32_t)fz_take(in, 4),
						(uint32_t)fz_take(in, 2) };
		f.ib.aeth = (struct roce_aeth){ (uint8_t)(fz_take(in, 1) % 4 == 2 ? 3 : 0),
						(uint8_t)(fz_take(in, 1) & 31),
						(uint32_t)fz_take(in, 3) & 0xffffff };
		if (f.ib.aeth.kind == 3)
			f.ib.aeth.value %= 5;
		f.ib.atomic = (struct roce_atomiceth){ f.ib.reth.va & ~7ull, f.ib.reth.rkey,
						       fz_take(in, 8), fz_take(in, 8) };
		f.ib.orig = fz_take(in, 8);
		f.ib.imm = (uint32_t)fz_take(in, 4);
		f.ib.payload_len = fz_take(in, 2) % (sizeof(payload) + 1);
		for (size_t i = 0; i < f.ib.payload_len; i++)
			payload[i] = (uint8_t)fz_take(in, 1);
		f.ib.payload = payload;
		n = roce_build(&f, 1024, buf, sizeof(buf), NULL);
		if (n < 0)
			return;
		len = (size_t)n;
	}
	io = (struct iovec){ buf, len };
	reng_input(e, vmk, &io, 1, len);
}

/* A record as the application would write it, with fields from the input. */
static void
record(struct qp *app, struct fz *in, int side)
{
	uint8_t b[sizeof(struct reng_rec_wr) + 9 * sizeof(struct reng_sge) + 300];
	struct reng_rec_wr h = { .kind = (uint32_t)fz_take(in, 1) % 4,
				 .num_sge = (uint32_t)fz_take(in, 1) % 10,
				 .wr_id = fz_take(in, 2),
				 .opcode = (uint32_t)fz_take(in, 1) % 8,
				 .flags = (uint32_t)fz_take(in, 1) & 3,
				 .imm = (uint32_t)fz_take(in, 4),
				 .rkey = fz_take(in, 1) & 1 ? KEY : (uint32_t)fz_take(in, 4),
				 .remote_va = (uintptr_t)mem[!side] + fz_take(in, 2) % (MR_LEN + 64),
				 .compare_add = fz_take(in, 8),
				 .swap = fz_take(in, 8),
				 .inline_len = (uint32_t)(fz_take(in, 1) & 1 ? fz_take(in, 2) % 300 : 0) };
	size_t len = sizeof(h), want;

	for (uint32_t i = 0; i < h.num_sge && i < 9; i++) {
		struct reng_sge s = { (uintptr_t)mem[side] + fz_take(in, 2) % (MR_LEN + 64),
				      (uint32_t)fz_take(in, 2) % 5000,
				      fz_take(in, 1) & 1 ? KEY : (uint32_t)fz_take(in, 4) };

		memcpy(b + len, &s, sizeof(s));
		len += sizeof(s);
	}
	for (uint32_t i = 0; i < h.inline_len && len < sizeof(b); i++)
		b[len++] = (uint8_t)fz_take(in, 1);
	memcpy(b, &h, sizeof(h));
	/* Sometimes the record's length lies about what it holds. */
	want = fz_take(in, 1) & 1 ? fz_take(in, 2) % sizeof(b) : len;
	qp_msg_send(app, b, want, QP_DONTWAIT);
}

/* Every completion record is 32 bytes with a known status; read them all. */
static void
completions(struct qp *app)
{
	struct reng_rec_wc wc;
	size_t full;
	ssize_t n;

	while ((n = qp_msg_recv(app, &wc, sizeof(wc), &full, QP_DONTWAIT)) >= 0) {
		FZ_CHECK(full == sizeof(wc));
		FZ_CHECK(wc.status <= RC_WC_RNR_RETRY_EXC_ERR);
		FZ_CHECK(wc.recv == 0 || wc.recv == 1);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz in = { data, size };
	static struct vsw sw;
	static struct vmk_port vmk[2];
	struct qp *app[2], *eng[2];
	struct reng *e;
	int64_t now = 1000000000;

	for (int i = 0; i < 2; i++)
		FZ_CHECK((mem[i] = malloc(MR_LEN)));
	FZ_CHECK(!vsw_init(&sw, "fuzz", 9000, true));
	FZ_CHECK(!reng_create(&e));
	eng_now = e;
	for (int i = 0; i < 2; i++) {
		struct reng_qp_params p = {
			.rc = { .mtu = 1024, .qpn = 5u + (uint32_t)i, .dest_qpn = 6u - (uint32_t)i,
				.sq_psn = 100, .rq_psn = 100, .pkey = ROCE_PKEY_DEFAULT,
				.timeout = 8, .retry_cnt = 3, .rnr_retry = 2, .min_rnr_timer = 1,
				.max_rd_atomic = 4, .max_dest_rd_atomic = 4, .sq_depth = 16,
				.rq_depth = 16, .max_sge = RENG_MAX_SGE },
			.pd = 1,
			.qp_access = 14,
			.mem = &fmem,
			.owner = (void *)(uintptr_t)i,
		};

		memset(&vmk[i], 0, sizeof(vmk[i]));
		snprintf(vmk[i].p.name, sizeof(vmk[i].p.name), "vmk%d", i);
		vmk[i].fd = -1;
		vmk[i].roce = e;
		vmk[i].p.kind = VSW_PORT_VMK;
		vmk[i].p.ops = &fops;
		vmk[i].mac[0] = 2, vmk[i].mac[5] = (uint8_t)(i + 1);
		FZ_CHECK(vsw_port_add(&sw, &vmk[i].p) >= 0);
		vmk[i].p.up = true;
		FZ_CHECK(!vsw_port_mac(&sw, &vmk[i].p, vmk[i].mac));
		p.path.vmk = &vmk[i];
		p.path.sw = &sw;
		memcpy(p.path.src_mac, vmk[i].mac, 6);
		memcpy(p.path.dst_mac, vmk[!i].mac, 6);
		memcpy(p.path.src_ip, (uint8_t[]){ 10, 0, 0, (uint8_t)(i + 1) }, 4);
		memcpy(p.path.dst_ip, (uint8_t[]){ 10, 0, 0, (uint8_t)(2 - i) }, 4);
		p.path.src_port = 0xc000;
		FZ_CHECK(!qp_create_pair(65536, 65536, &app[i], &eng[i]));
		qp_set_mode(app[i], QP_NONBLOCK);
		p.ring = eng[i];
		FZ_CHECK(!reng_qp_add(e, &p, p.rc.qpn));
	}
	while (in.n) {
		uint8_t op = (uint8_t)fz_take(&in, 1);
		int side = op & 1;

		switch ((op >> 1) % 3) {
		case 0:
			record(app[side], &in, side);
			break;
		case 1: {
			struct reng_path to = { 0 };

			memcpy(to.src_mac, vmk[side].mac, 6);
			memcpy(to.dst_mac, vmk[!side].mac, 6);
			memcpy(to.src_ip, (uint8_t[]){ 10, 0, 0, (uint8_t)(side + 1) }, 4);
			memcpy(to.dst_ip, (uint8_t[]){ 10, 0, 0, (uint8_t)(2 - side) }, 4);
			inject(e, &vmk[side], &in, &to, 5u + (uint32_t)side);
			break;
		}
		default:
			now += (int64_t)fz_take(&in, 2) * 1000;
			break;
		}
		reng_poll(e, now);
		completions(app[0]);
		completions(app[1]);
	}
	/* Let timers run out the rest. */
	for (int i = 0; i < 50; i++) {
		now += 20000000;
		reng_poll(e, now);
	}
	completions(app[0]);
	completions(app[1]);
	reng_destroy(e); /* its QPs close their rings */
	FZ_CHECK(refs == 0);
	for (int i = 0; i < 2; i++) {
		qp_close(app[i]);
		vsw_port_remove(&sw, &vmk[i].p);
		free(mem[i]);
	}
	vsw_free(&sw);
	return 0;
}
