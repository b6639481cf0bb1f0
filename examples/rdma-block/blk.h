/* SPDX-License-Identifier: MIT */
/*
 * rdma-block: an example block service over vmfabric's RDMA verbs, in the
 * spirit of NVMe over Fabrics' RDMA transport (wire format: blk_proto.h;
 * docs/RDMA.md, "Storage over RDMA"). Three parts:
 *   blks_*  the store a target exports: a file (pread / pwrite on staging
 *           buffers, FLUSH = fdatasync) or anonymous memory;
 *   blkt_*  the target: listens on a port of the RDMA connection manager,
 *           serves any number of hosts from one thread;
 *   blkc_*  the host (client): one connection, up to qdepth commands in
 *           flight, each with its own registered buffer slot.
 * Calls return 0 (or a count) or -errno. A target or a client is used by
 * one thread at a time.
 */
#ifndef VMFABRIC_BLK_H
#define VMFABRIC_BLK_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "blk_proto.h"

/* ---------------------------------------------------------------------- */
/* Stores */

struct blk_store;

/*
 * The file @path as a device of its whole 4 KiB blocks (a last partial
 * block is not exported). @size > 0: the file is created if need be and
 * resized to @size (a multiple of the block size) first. -EINVAL: no
 * whole block.
 */
int blks_open_file(const char *path, uint64_t size, struct blk_store **out);
/* @size bytes of zeroed anonymous memory (a multiple of the block size). */
int blks_open_memory(uint64_t size, struct blk_store **out);
void blks_close(struct blk_store *s);
uint64_t blks_nblocks(const struct blk_store *s);
/* A memory store's bytes (the target moves data straight to and from them), else NULL. */
void *blks_memory(const struct blk_store *s);
/* Whole transfers or -errno (-EIO for a file that shrank under the store). */
int blks_read(struct blk_store *s, uint64_t lba, uint32_t nblocks, void *buf);
int blks_write(struct blk_store *s, uint64_t lba, uint32_t nblocks, const void *buf);
/* fdatasync for a file; nothing for memory. */
int blks_flush(struct blk_store *s);

/* ---------------------------------------------------------------------- */
/* Target */

struct blkt;

struct blkt_config {
	struct blk_store *store; /* exported; not owned */
	uint32_t port;		 /* of the RDMA connection manager; 0: an ephemeral one */
	unsigned max_qdepth;	 /* granted at most, per connection (default 32) */
	unsigned max_blocks;	 /* per command at most (default 64: 256 KiB) */
	unsigned max_conns;	 /* connections at once (default 16); more are rejected */
	int spin_us; /* busy-poll this long after work before sleeping (default 50; < 0: none) */
	const char *serial; /* IDENTIFY's serial number (default "vmf-blk") */
	/* Connections coming and going, and why one was dropped; may be NULL. */
	void (*log)(void *arg, const char *msg);
	void *log_arg;
};

struct blkt_stats {
	uint64_t conns;	   /* accepted */
	uint64_t rejected; /* connection requests refused */
	uint64_t dropped;  /* connections torn down on an error (a transfer or a dead host) */
	uint64_t cmds;	   /* commands answered */
	uint64_t errors;   /* of them, with an error status */
};

/*
 * Open the RDMA device as the process's context (VMFABRIC_CONTEXT), listen
 * on cfg->port. -ENODEV / -EACCES: no device for this context;
 * -EADDRINUSE: the port is taken.
 */
int blkt_create(const struct blkt_config *cfg, struct blkt **out);
uint32_t blkt_port(const struct blkt *t);
uint32_t blkt_cid(const struct blkt *t);
/*
 * Serve for up to @timeout_ms (-1: for ever): accept hosts, execute their
 * commands, drop connections that fail. Returns 0 when the time is up or
 * a signal interrupted the wait, -errno when the listener failed.
 */
int blkt_run(struct blkt *t, int timeout_ms);
/* One pass without waiting: how much work it found (0: none), or -errno. */
int blkt_poll(struct blkt *t);
unsigned blkt_conns(const struct blkt *t);
void blkt_get_stats(const struct blkt *t, struct blkt_stats *st);
/* Every connection torn down, the listener closed, the device released. */
void blkt_destroy(struct blkt *t);

/* ---------------------------------------------------------------------- */
/* Host */

struct blkc;

struct blkc_config {
	uint32_t cid, port; /* the target's context (on this host) and port */
	/*
	 * Or a target on another host (RoCE v2): its VMkernel adapter's IP and
	 * the port, a sockaddr_in / sockaddr_in6 of @addr_len bytes, read by
	 * blkc_connect only; NULL: by cid. The target listens as the host
	 * context there (docs/RDMA.md, "Between hosts").
	 */
	const struct sockaddr *addr;
	socklen_t addr_len;
	unsigned qdepth;     /* commands in flight (default 8); the target may grant fewer */
	unsigned max_blocks; /* per command (default 32: 128 KiB); likewise */
	int spin_us;	/* busy-poll this long before sleeping in a wait (default 50; < 0: none) */
	int timeout_ms; /* connecting, and each wait for a response (default 5000) */
};

struct blkc_info {
	uint64_t nblocks;
	uint32_t block_size, max_blocks, qdepth; /* as granted */
	uint16_t flags;				 /* BLK_ID_* */
	char serial[20], model[40];
};

/*
 * Connect to the target at (cid, port) or addr and IDENTIFY it.
 * -ECONNREFUSED (nobody listens, or the target refused: too many hosts, a
 * version it does not speak), -ETIMEDOUT, -EPROTO (its answers broke the
 * protocol), and vrdma_connect_addr()'s errors for another host.
 */
int blkc_connect(const struct blkc_config *cfg, struct blkc **out);
void blkc_get_info(const struct blkc *c, struct blkc_info *info);
/* Send DISCONNECT (best effort) and free everything. */
void blkc_close(struct blkc *c);

/*
 * The asynchronous interface. A slot is a registered buffer of max_blocks
 * blocks and one command id at a time:
 *   slot = blkc_slot_get(c, &buf);      -EBUSY: all qdepth slots are taken
 *   (a WRITE: fill buf)  blkc_submit(c, slot, BLK_OP_WRITE, lba, n, tag);
 *   blkc_reap(c, cpl, max, timeout)     completions, any order
 *   (a READ: the data is in buf)        blkc_slot_put(c, slot);
 * blkc_submit does not check the LBA range (the target does); nblocks
 * above max_blocks is -EINVAL. FLUSH takes a slot too (no data).
 */
struct blkc_cpl {
	uint64_t tag;
	int slot;
	uint8_t opcode;
	uint16_t status; /* enum blk_status */
	uint64_t result; /* bytes moved */
};

int blkc_slot_get(struct blkc *c, void **buf);
void *blkc_slot_buf(struct blkc *c, int slot);
int blkc_submit(struct blkc *c, int slot, uint8_t opcode, uint64_t lba, uint32_t nblocks,
		uint64_t tag);
/*
 * Up to @max completions; waits up to @timeout_ms (-1: the configured
 * timeout) for the first when none is ready. Returns how many, 0 when
 * nothing is in flight, -ETIMEDOUT, or for a broken connection
 * -ECONNRESET (a work request failed: the QP is in error) or -EPROTO (a
 * response that matches no command in flight); after those, only
 * blkc_close is left.
 */
int blkc_reap(struct blkc *c, struct blkc_cpl *cpl, int max, int timeout_ms);
void blkc_slot_put(struct blkc *c, int slot);
unsigned blkc_inflight(const struct blkc *c);

/*
 * Synchronous transfers of any length, pipelined over the queue depth
 * (commands of max_blocks), copied between @buf and the slots. A status
 * other than success is returned as blk_status_errno() (-ERANGE: LBA out
 * of range) and *@status, when not NULL, gets it.
 */
int blkc_read(struct blkc *c, uint64_t lba, uint64_t nblocks, void *buf, uint16_t *status);
int blkc_write(struct blkc *c, uint64_t lba, uint64_t nblocks, const void *buf, uint16_t *status);
int blkc_flush(struct blkc *c, uint16_t *status);

#endif
