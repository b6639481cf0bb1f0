/* SPDX-License-Identifier: MIT */
/*
 * The rdma-block wire format: a block service over the verbs of
 * vmfabric/vrdma.h in the spirit of NVMe over Fabrics' RDMA transport. The
 * host SENDs 64-byte command capsules; the target moves the data itself,
 * with RDMA READ from the host's buffer for a host write and RDMA WRITE
 * into it for a host read, then SENDs a 16-byte response capsule on the
 * same QP (RC ordering places the data before the response is seen).
 * Every field is little-endian; blocks are 4 KiB.
 *
 * Threat model: each side parses what the other wrote. blk_cmd_check() is
 * the target's only way in: it copies a capsule out of the receive buffer
 * once and checks its size, opcode, reserved bytes, block count, data
 * length and LBA range before anything touches the store or the host's
 * memory; a capsule that fails gets an error status, never a crash. The
 * host checks every response with blk_rsp_unpack() and its command id.
 */
#ifndef VMFABRIC_BLK_PROTO_H
#define VMFABRIC_BLK_PROTO_H

#include <stddef.h>
#include <stdint.h>

#define BLK_BLOCK_SHIFT	  12
#define BLK_BLOCK_SIZE	  (1u << BLK_BLOCK_SHIFT)
#define BLK_CMD_SIZE	  64u
#define BLK_RSP_SIZE	  16u
#define BLK_IDENTIFY_SIZE 4096u
#define BLK_MAGIC	  0x6b6c4276u /* "vBlk" */
#define BLK_VERSION	  1
#define BLK_MAX_QDEPTH	  128u /* commands in flight on one connection */
#define BLK_MAX_BLOCKS	  256u /* blocks one command moves: 1 MiB */

/* Opcodes: NVMe's numbers where NVMe has the command. */
enum blk_opcode {
	BLK_OP_FLUSH = 0x00,	  /* fdatasync the store */
	BLK_OP_WRITE = 0x01,	  /* host -> store: the target RDMA READs the host's buffer */
	BLK_OP_READ = 0x02,	  /* store -> host: the target RDMA WRITEs the host's buffer */
	BLK_OP_IDENTIFY = 0x06,	  /* struct blk_identify, RDMA WRITTEN into the host's buffer */
	BLK_OP_DISCONNECT = 0x7f, /* the host is done: the target tears the connection down */
};

/* Response statuses: NVMe's generic status codes where one fits. */
enum blk_status {
	BLK_SC_SUCCESS = 0x00,
	BLK_SC_INVALID_OPCODE = 0x01,
	BLK_SC_INVALID_FIELD = 0x02, /* flags, reserved bytes, a count of 0 or too many blocks */
	BLK_SC_CID_CONFLICT = 0x03,  /* the command id is in flight already */
	BLK_SC_INTERNAL = 0x06,	     /* the store failed (pread, pwrite, fdatasync) */
	BLK_SC_DATA_LENGTH = 0x0f,   /* length is not count x block size (IDENTIFY: 4096) */
	BLK_SC_CAPSULE_SIZE = 0x40,  /* a SEND that is not BLK_CMD_SIZE bytes */
	BLK_SC_LBA_RANGE = 0x80,     /* [lba, lba + count) is not inside the device */
};

/*
 * A command capsule (64 bytes on the wire). Bytes 16..31 are NVMe's keyed
 * SGL data block descriptor in spirit: where the data is in the host
 * (address, length, rkey of a host MR the target may reach).
 */
struct blk_cmd {
	uint8_t opcode;	  /* enum blk_opcode */
	uint8_t flags;	  /* 0 */
	uint16_t cid;	  /* command id, echoed in the response */
	uint32_t nblocks; /* READ, WRITE: blocks; others: 0 */
	uint64_t lba;	  /* READ, WRITE: the first block; others: 0 */
	uint64_t addr;	  /* the host buffer (READ, WRITE, IDENTIFY; others: 0) */
	uint32_t length;  /* its bytes: nblocks * BLK_BLOCK_SIZE, IDENTIFY: BLK_IDENTIFY_SIZE */
	uint32_t rkey;	  /* the host MR's rkey */
	uint8_t rsvd[32]; /* 0 */
};
_Static_assert(sizeof(struct blk_cmd) == BLK_CMD_SIZE, "blk_cmd layout");
_Static_assert(offsetof(struct blk_cmd, lba) == 8 && offsetof(struct blk_cmd, addr) == 16 &&
		   offsetof(struct blk_cmd, length) == 24 && offsetof(struct blk_cmd, rkey) == 28,
	       "blk_cmd layout");

/* A response capsule (16 bytes on the wire). */
struct blk_rsp {
	uint16_t cid;	 /* the command's */
	uint16_t status; /* enum blk_status */
	uint32_t rsvd;	 /* 0 */
	uint64_t result; /* bytes moved to or from the host */
};
_Static_assert(sizeof(struct blk_rsp) == BLK_RSP_SIZE, "blk_rsp layout");

/*
 * The connection manager's private data (vrdma_connect / vrdma_accept, 56
 * bytes at most), as NVMe/RDMA's request and accept records: the host
 * asks for a queue depth and a transfer size, the target grants at most
 * that. A host never has more than qdepth commands in flight: the target
 * keeps exactly qdepth receives posted.
 */
struct blk_conn_req {
	uint32_t magic;	     /* BLK_MAGIC */
	uint16_t version;    /* BLK_VERSION */
	uint16_t qdepth;     /* 1 .. BLK_MAX_QDEPTH */
	uint32_t max_blocks; /* 1 .. BLK_MAX_BLOCKS */
	uint32_t rsvd;
};
_Static_assert(sizeof(struct blk_conn_req) == 16, "blk_conn_req layout");

struct blk_conn_rep {
	uint32_t magic;
	uint16_t version;
	uint16_t qdepth;     /* granted, <= asked */
	uint32_t max_blocks; /* granted, <= asked */
	uint32_t block_size; /* BLK_BLOCK_SIZE */
	uint64_t nblocks;    /* the device's size */
};
_Static_assert(sizeof(struct blk_conn_rep) == 24, "blk_conn_rep layout");

/* IDENTIFY's answer, 4096 bytes, in the host's buffer. */
#define BLK_ID_VOLATILE_CACHE 1u /* writes reach stable storage only after FLUSH */
struct blk_identify {
	uint32_t magic;
	uint16_t version;
	uint16_t flags; /* BLK_ID_* */
	uint64_t nblocks;
	uint32_t block_size;
	uint32_t max_blocks; /* per command, on this connection */
	uint32_t qdepth;     /* this connection's */
	uint32_t rsvd0;
	char serial[20]; /* NUL-padded */
	char model[40];	 /* NUL-padded */
	uint8_t rsvd[BLK_IDENTIFY_SIZE - 92];
};
_Static_assert(sizeof(struct blk_identify) == BLK_IDENTIFY_SIZE, "blk_identify layout");

/* What the target checks commands against. */
struct blk_geom {
	uint64_t nblocks;    /* the device */
	uint32_t max_blocks; /* per command (granted) */
};

/* Host order <-> wire (little-endian); @buf holds BLK_CMD_SIZE / BLK_RSP_SIZE bytes. */
void blk_cmd_pack(const struct blk_cmd *cmd, void *buf);
void blk_rsp_pack(const struct blk_rsp *rsp, void *buf);
void blk_identify_pack(const struct blk_identify *id, void *buf);
void blk_identify_unpack(const void *buf, struct blk_identify *id);
void blk_conn_req_pack(const struct blk_conn_req *r, void *buf);
void blk_conn_req_unpack(const void *buf, struct blk_conn_req *r);
void blk_conn_rep_pack(const struct blk_conn_rep *r, void *buf);
void blk_conn_rep_unpack(const void *buf, struct blk_conn_rep *r);

/*
 * The target's check of @len bytes received at @buf: BLK_SC_SUCCESS with
 * the command in *@cmd, or the status to answer with. Whatever the
 * verdict, cmd->cid is the capsule's command id when @len covers it (else
 * 0xffff), so that a malformed capsule still gets a response the host can
 * match. Checked in this order: the size, the opcode, flags and reserved
 * bytes, the fields an opcode does not use (0), the block count (1 ..
 * max_blocks), the data length, an address range that wraps, the LBA range.
 */
uint16_t blk_cmd_check(const void *buf, size_t len, const struct blk_geom *g, struct blk_cmd *cmd);

/* The host's check of a response: 0, or -EPROTO (size, reserved bytes). */
int blk_rsp_unpack(const void *buf, size_t len, struct blk_rsp *rsp);

/* "LBA out of range", ...; "unknown status" for others. */
const char *blk_status_str(uint16_t status);
/* 0 for success, else a negative errno for the status (-ERANGE, -EINVAL, -EIO, ...). */
int blk_status_errno(uint16_t status);

#endif
