/* SPDX-License-Identifier: MIT */
/*
 * The rdma-block wire format (blk_proto.h): packing to and from
 * little-endian bytes, field by field at fixed offsets, and the target's
 * check of a command capsule. Nothing here trusts a length or a field: a
 * capsule is copied out of the receive buffer once, decoded, then checked;
 * arithmetic on peer values is done so that it cannot wrap.
 */
#include <endian.h>
#include <errno.h>
#include <string.h>

#include "blk_proto.h"

static void
put16(uint8_t *p, uint16_t v)
{
	v = htole16(v);
	memcpy(p, &v, sizeof(v));
}

static void
put32(uint8_t *p, uint32_t v)
{
	v = htole32(v);
	memcpy(p, &v, sizeof(v));
}

static void
put64(uint8_t *p, uint64_t v)
{
	v = htole64(v);
	memcpy(p, &v, sizeof(v));
}

static uint16_t
get16(const uint8_t *p)
{
	uint16_t v;

	memcpy(&v, p, sizeof(v));
	return le16toh(v);
}

static uint32_t
get32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, sizeof(v));
	return le32toh(v);
}

static uint64_t
get64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, sizeof(v));
	return le64toh(v);
}

void
blk_cmd_pack(const struct blk_cmd *cmd, void *buf)
{
	uint8_t *p = buf;

	p[0] = cmd->opcode;
	p[1] = cmd->flags;
	put16(p + 2, cmd->cid);
	put32(p + 4, cmd->nblocks);
	put64(p + 8, cmd->lba);
	put64(p + 16, cmd->addr);
	put32(p + 24, cmd->length);
	put32(p + 28, cmd->rkey);
	memcpy(p + 32, cmd->rsvd, sizeof(cmd->rsvd));
}

static void
cmd_unpack(const uint8_t *p, struct blk_cmd *cmd)
{
	cmd->opcode = p[0];
	cmd->flags = p[1];
	cmd->cid = get16(p + 2);
	cmd->nblocks = get32(p + 4);
	cmd->lba = get64(p + 8);
	cmd->addr = get64(p + 16);
	cmd->length = get32(p + 24);
	cmd->rkey = get32(p + 28);
	memcpy(cmd->rsvd, p + 32, sizeof(cmd->rsvd));
}

void
blk_rsp_pack(const struct blk_rsp *rsp, void *buf)
{
	uint8_t *p = buf;

	put16(p, rsp->cid);
	put16(p + 2, rsp->status);
	put32(p + 4, rsp->rsvd);
	put64(p + 8, rsp->result);
}

int
blk_rsp_unpack(const void *buf, size_t len, struct blk_rsp *rsp)
{
	const uint8_t *p = buf;

	if (len != BLK_RSP_SIZE)
		return -EPROTO;
	rsp->cid = get16(p);
	rsp->status = get16(p + 2);
	rsp->rsvd = get32(p + 4);
	rsp->result = get64(p + 8);
	return rsp->rsvd ? -EPROTO : 0;
}

void
blk_identify_pack(const struct blk_identify *id, void *buf)
{
	uint8_t *p = buf;

	memset(p, 0, BLK_IDENTIFY_SIZE);
	put32(p, id->magic);
	put16(p + 4, id->version);
	put16(p + 6, id->flags);
	put64(p + 8, id->nblocks);
	put32(p + 16, id->block_size);
	put32(p + 20, id->max_blocks);
	put32(p + 24, id->qdepth);
	memcpy(p + 32, id->serial, sizeof(id->serial));
	memcpy(p + 52, id->model, sizeof(id->model));
}

void
blk_identify_unpack(const void *buf, struct blk_identify *id)
{
	const uint8_t *p = buf;

	memset(id, 0, sizeof(*id));
	id->magic = get32(p);
	id->version = get16(p + 4);
	id->flags = get16(p + 6);
	id->nblocks = get64(p + 8);
	id->block_size = get32(p + 16);
	id->max_blocks = get32(p + 20);
	id->qdepth = get32(p + 24);
	memcpy(id->serial, p + 32, sizeof(id->serial));
	memcpy(id->model, p + 52, sizeof(id->model));
	/* Strings from the peer: always terminated here. */
	id->serial[sizeof(id->serial) - 1] = 0;
	id->model[sizeof(id->model) - 1] = 0;
}

void
blk_conn_req_pack(const struct blk_conn_req *r, void *buf)
{
	uint8_t *p = buf;

	put32(p, r->magic);
	put16(p + 4, r->version);
	put16(p + 6, r->qdepth);
	put32(p + 8, r->max_blocks);
	put32(p + 12, r->rsvd);
}

void
blk_conn_req_unpack(const void *buf, struct blk_conn_req *r)
{
	const uint8_t *p = buf;

	r->magic = get32(p);
	r->version = get16(p + 4);
	r->qdepth = get16(p + 6);
	r->max_blocks = get32(p + 8);
	r->rsvd = get32(p + 12);
}

void
blk_conn_rep_pack(const struct blk_conn_rep *r, void *buf)
{
	uint8_t *p = buf;

	put32(p, r->magic);
	put16(p + 4, r->version);
	put16(p + 6, r->qdepth);
	put32(p + 8, r->max_blocks);
	put32(p + 12, r->block_size);
	put64(p + 16, r->nblocks);
}

void
blk_conn_rep_unpack(const void *buf, struct blk_conn_rep *r)
{
	const uint8_t *p = buf;

	r->magic = get32(p);
	r->version = get16(p + 4);
	r->qdepth = get16(p + 6);
	r->max_blocks = get32(p + 8);
	r->block_size = get32(p + 12);
	r->nblocks = get64(p + 16);
}

static int
all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return 0;
	return 1;
}

/* READ and WRITE: count, length, address range, LBA range. */
static uint16_t
check_rw(const struct blk_cmd *c, const struct blk_geom *g)
{
	if (c->nblocks == 0 || c->nblocks > g->max_blocks)
		return BLK_SC_INVALID_FIELD;
	/* nblocks <= BLK_MAX_BLOCKS (max_blocks is no more): the product fits. */
	if ((uint64_t)c->length != (uint64_t)c->nblocks * BLK_BLOCK_SIZE)
		return BLK_SC_DATA_LENGTH;
	if (c->addr + c->length < c->addr)
		return BLK_SC_INVALID_FIELD;
	if (c->lba >= g->nblocks || c->nblocks > g->nblocks - c->lba)
		return BLK_SC_LBA_RANGE;
	return BLK_SC_SUCCESS;
}

uint16_t
blk_cmd_check(const void *buf, size_t len, const struct blk_geom *g, struct blk_cmd *cmd)
{
	uint8_t copy[BLK_CMD_SIZE];

	memset(cmd, 0, sizeof(*cmd));
	cmd->cid = 0xffff;
	if (len >= 4)
		cmd->cid = get16((const uint8_t *)buf + 2);
	if (len != BLK_CMD_SIZE)
		return BLK_SC_CAPSULE_SIZE;
	/* One copy, then only the copy is looked at. */
	memcpy(copy, buf, sizeof(copy));
	cmd_unpack(copy, cmd);
	switch (cmd->opcode) {
	case BLK_OP_FLUSH:
	case BLK_OP_WRITE:
	case BLK_OP_READ:
	case BLK_OP_IDENTIFY:
	case BLK_OP_DISCONNECT:
		break;
	default:
		return BLK_SC_INVALID_OPCODE;
	}
	if (cmd->flags || !all_zero(cmd->rsvd, sizeof(cmd->rsvd)))
		return BLK_SC_INVALID_FIELD;
	switch (cmd->opcode) {
	case BLK_OP_READ:
	case BLK_OP_WRITE:
		if (g->max_blocks > BLK_MAX_BLOCKS)
			return BLK_SC_INTERNAL; /* a target configured beyond the protocol */
		return check_rw(cmd, g);
	case BLK_OP_IDENTIFY:
		if (cmd->nblocks || cmd->lba)
			return BLK_SC_INVALID_FIELD;
		if (cmd->length != BLK_IDENTIFY_SIZE)
			return BLK_SC_DATA_LENGTH;
		if (cmd->addr + cmd->length < cmd->addr)
			return BLK_SC_INVALID_FIELD;
		return BLK_SC_SUCCESS;
	default: /* FLUSH, DISCONNECT: no data, no range */
		if (cmd->nblocks || cmd->lba || cmd->addr || cmd->length || cmd->rkey)
			return BLK_SC_INVALID_FIELD;
		return BLK_SC_SUCCESS;
	}
}

const char *
blk_status_str(uint16_t status)
{
	switch (status) {
	case BLK_SC_SUCCESS:
		return "success";
	case BLK_SC_INVALID_OPCODE:
		return "invalid opcode";
	case BLK_SC_INVALID_FIELD:
		return "invalid field in command";
	case BLK_SC_CID_CONFLICT:
		return "command id conflict";
	case BLK_SC_INTERNAL:
		return "internal error (the store failed)";
	case BLK_SC_DATA_LENGTH:
		return "data length invalid";
	case BLK_SC_CAPSULE_SIZE:
		return "capsule size invalid";
	case BLK_SC_LBA_RANGE:
		return "LBA out of range";
	}
	return "unknown status";
}

int
blk_status_errno(uint16_t status)
{
	switch (status) {
	case BLK_SC_SUCCESS:
		return 0;
	case BLK_SC_LBA_RANGE:
		return -ERANGE;
	case BLK_SC_INVALID_OPCODE:
		return -EOPNOTSUPP;
	case BLK_SC_INVALID_FIELD:
	case BLK_SC_DATA_LENGTH:
	case BLK_SC_CAPSULE_SIZE:
		return -EINVAL;
	case BLK_SC_CID_CONFLICT:
		return -EBUSY;
	case BLK_SC_INTERNAL:
		return -EIO;
	}
	return -EPROTO;
}
