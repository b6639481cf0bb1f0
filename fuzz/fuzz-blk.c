/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: the rdma-block wire format (examples/rdma-block/blk_proto.h),
 * the target's one way in. The input's first 10 bytes choose a device
 * (blocks, blocks a command); the rest is a capsule of any length, given to
 * blk_cmd_check() as a receive buffer would hold it. Whatever it says, the
 * command id must be the capsule's; when it says success, every promise
 * the target relies on must hold (the size, the count, the length, the LBA
 * range, no wrapping address) and packing the command again must give the
 * same bytes. The same bytes then go through the host's response check and
 * the other records' unpacking, which must round-trip.
 */
#include <stdlib.h>
#include <string.h>

#include "../examples/rdma-block/blk_proto.h"
#include "fuzz.h"

static void
check_success(const uint8_t *cap, const struct blk_cmd *c, const struct blk_geom *g)
{
	uint8_t again[BLK_CMD_SIZE];

	switch (c->opcode) {
	case BLK_OP_READ:
	case BLK_OP_WRITE:
		if (!c->nblocks || c->nblocks > g->max_blocks ||
		    c->length != c->nblocks * BLK_BLOCK_SIZE || c->lba >= g->nblocks ||
		    c->nblocks > g->nblocks - c->lba || c->addr + c->length < c->addr)
			abort();
		break;
	case BLK_OP_IDENTIFY:
		if (c->length != BLK_IDENTIFY_SIZE || c->nblocks || c->lba ||
		    c->addr + c->length < c->addr)
			abort();
		break;
	case BLK_OP_FLUSH:
	case BLK_OP_DISCONNECT:
		if (c->nblocks || c->lba || c->addr || c->length || c->rkey)
			abort();
		break;
	default:
		abort();
	}
	blk_cmd_pack(c, again);
	if (memcmp(again, cap, BLK_CMD_SIZE))
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz f = { data, size };
	struct blk_geom g;
	struct blk_cmd c;
	struct blk_rsp r;
	struct blk_identify id;
	struct blk_conn_req q;
	struct blk_conn_rep p;
	uint8_t buf[BLK_IDENTIFY_SIZE];
	uint16_t st;

	g.nblocks = fz_take(&f, 8);
	g.max_blocks = (uint32_t)(fz_take(&f, 2) % (BLK_MAX_BLOCKS + 1));
	st = blk_cmd_check(f.p, f.n, &g, &c);
	if (c.cid != (f.n >= 4 ? (uint16_t)(f.p[2] | f.p[3] << 8) : 0xffff))
		abort();
	if (st == BLK_SC_SUCCESS) {
		if (f.n != BLK_CMD_SIZE)
			abort();
		check_success(f.p, &c, &g);
	}
	if (blk_status_str(st) == NULL || (st == BLK_SC_SUCCESS) != (blk_status_errno(st) == 0))
		abort();
	if (blk_rsp_unpack(f.p, f.n, &r) == 0) {
		blk_rsp_pack(&r, buf);
		if (memcmp(buf, f.p, BLK_RSP_SIZE) || r.rsvd)
			abort();
	}
	/* The records the host and the target read from each other, from whatever is there. */
	memset(buf, 0, sizeof(buf));
	memcpy(buf, f.p, f.n < sizeof(buf) ? f.n : sizeof(buf));
	blk_identify_unpack(buf, &id);
	if (strlen(id.serial) >= sizeof(id.serial) || strlen(id.model) >= sizeof(id.model))
		abort();
	blk_conn_req_unpack(buf, &q);
	blk_conn_req_pack(&q, buf + 1024);
	blk_conn_rep_unpack(buf, &p);
	blk_conn_rep_pack(&p, buf + 2048);
	if (memcmp(buf, buf + 1024, 16) || memcmp(buf, buf + 2048, 24))
		abort();
	return 0;
}
