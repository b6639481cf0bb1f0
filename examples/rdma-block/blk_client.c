/* SPDX-License-Identifier: MIT */
/*
 * The rdma-block host (blk.h): one connection to a target, qdepth slots.
 * A slot is a buffer of max_blocks blocks inside one registered region
 * (the target may READ and WRITE it: it moves the data) and one command id
 * at a time, (generation << 8) | slot, so that a stale or forged response
 * matches nothing. Capsules go out as inline SENDs, unsignaled (a failure
 * completes anyway and breaks the connection); one receive is posted per
 * slot for the responses, and posted again as each response is taken.
 *
 * Threat model: the target is trusted with the slot buffers it was given
 * (one MR covers them all; a host that trusts it less would register an
 * MR per command and invalidate it after), not with its responses: a
 * response of the wrong size, with reserved bits set, or whose command id
 * is not in flight breaks the connection (-EPROTO), and IDENTIFY's answer
 * must agree with what the connection manager said.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "blk.h"
#include "vmfabric/vrdma.h"

#define RX_LEN	     64u /* a response receive: larger than a response, so that a wrong size is seen */
#define WR_SEND_FLAG (1ull << 32) /* wr_id of a capsule's SEND; receives: the slot */

struct cslot {
	uint8_t *buf;
	uint64_t tag;
	uint32_t length; /* the command's data bytes */
	uint16_t cid;
	uint8_t gen, opcode;
	bool held, inflight;
};

struct blkc {
	struct blkc_config cfg;
	struct vrdma_context *ctx;
	struct vrdma_pd *pd;
	struct vrdma_comp_channel *ch;
	struct vrdma_cq *cq;
	struct vrdma_qp *qp;
	struct vrdma_mr *mr;
	uint8_t *region; /* qdepth receive buffers, then the slots */
	size_t region_len, rx_bytes, slot_bytes;
	struct cslot *slots;
	unsigned qdepth, max_blocks, inflight, held;
	int broken; /* 0, or what every call returns from now on */
	struct blkc_info info;
};

static int64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int
post_recv(struct blkc *c, unsigned i)
{
	struct vrdma_sge sge = { (uintptr_t)(c->region + (size_t)i * RX_LEN), RX_LEN, c->mr->lkey };
	struct vrdma_recv_wr wr = { .wr_id = i, .sg_list = &sge, .num_sge = 1 };
	struct vrdma_recv_wr *bad;

	return vrdma_post_recv(c->qp, &wr, &bad);
}

int
blkc_slot_get(struct blkc *c, void **buf)
{
	if (c->broken)
		return c->broken;
	for (unsigned i = 0; i < c->qdepth; i++)
		if (!c->slots[i].held) {
			c->slots[i].held = true;
			c->held++;
			if (buf)
				*buf = c->slots[i].buf;
			return (int)i;
		}
	return -EBUSY;
}

void *
blkc_slot_buf(struct blkc *c, int slot)
{
	return slot >= 0 && (unsigned)slot < c->qdepth ? c->slots[slot].buf : NULL;
}

void
blkc_slot_put(struct blkc *c, int slot)
{
	struct cslot *s;

	if (slot < 0 || (unsigned)slot >= c->qdepth)
		return;
	s = &c->slots[slot];
	if (s->held && !s->inflight) {
		s->held = false;
		c->held--;
	}
}

unsigned
blkc_inflight(const struct blkc *c)
{
	return c->inflight;
}

int
blkc_submit(struct blkc *c, int slot, uint8_t opcode, uint64_t lba, uint32_t nblocks, uint64_t tag)
{
	struct blk_cmd cmd;
	struct cslot *s;
	uint8_t bytes[BLK_CMD_SIZE];
	struct vrdma_sge sge = { (uintptr_t)bytes, sizeof(bytes), 0 };
	struct vrdma_send_wr wr, *bad;
	int err;

	if (c->broken)
		return c->broken;
	if (slot < 0 || (unsigned)slot >= c->qdepth || !c->slots[slot].held ||
	    c->slots[slot].inflight)
		return -EINVAL;
	s = &c->slots[slot];
	memset(&cmd, 0, sizeof(cmd));
	cmd.opcode = opcode;
	cmd.cid = (uint16_t)((unsigned)s->gen << 8 | (unsigned)slot);
	switch (opcode) {
	case BLK_OP_READ:
	case BLK_OP_WRITE:
		if (!nblocks || nblocks > c->max_blocks)
			return -EINVAL;
		cmd.nblocks = nblocks;
		cmd.lba = lba;
		cmd.length = nblocks * BLK_BLOCK_SIZE;
		break;
	case BLK_OP_IDENTIFY:
		cmd.length = BLK_IDENTIFY_SIZE;
		break;
	case BLK_OP_FLUSH:
	case BLK_OP_DISCONNECT:
		break;
	default:
		return -EINVAL;
	}
	if (cmd.length) {
		cmd.addr = (uintptr_t)s->buf;
		cmd.rkey = c->mr->rkey;
	}
	blk_cmd_pack(&cmd, bytes);
	memset(&wr, 0, sizeof(wr));
	wr.wr_id = WR_SEND_FLAG | (unsigned)slot;
	wr.sg_list = &sge;
	wr.num_sge = 1;
	wr.opcode = VRDMA_WR_SEND;
	wr.send_flags = VRDMA_SEND_INLINE; /* the capsule is copied: bytes may go */
	if ((err = vrdma_post_send(c->qp, &wr, &bad)))
		return err;
	s->gen++;
	s->cid = cmd.cid;
	s->length = cmd.length;
	s->opcode = opcode;
	s->tag = tag;
	s->inflight = true;
	c->inflight++;
	return 0;
}

/* Response receive @i: the completion it finishes, or -EPROTO. */
static int
take_response(struct blkc *c, unsigned i, uint32_t len, struct blkc_cpl *cpl)
{
	struct blk_rsp r;
	struct cslot *s;
	unsigned slot;
	int err;

	if (blk_rsp_unpack(c->region + (size_t)i * RX_LEN, len, &r))
		return -EPROTO;
	slot = r.cid & 0xff;
	if (slot >= c->qdepth || !c->slots[slot].inflight || c->slots[slot].cid != r.cid)
		return -EPROTO; /* no such command in flight */
	s = &c->slots[slot];
	if (r.status == BLK_SC_SUCCESS && r.result != s->length)
		return -EPROTO; /* it says it moved something else than was asked */
	if ((err = post_recv(c, i)))
		return err;
	s->inflight = false;
	c->inflight--;
	*cpl = (struct blkc_cpl){ .tag = s->tag,
				  .slot = (int)slot,
				  .opcode = s->opcode,
				  .status = r.status,
				  .result = r.result };
	return 0;
}

/*
 * Busy-poll until @spin_until, then sleep on the channel: 1 ms at most,
 * since sends that wait (an RNR) are retried only by polling.
 */
static int
wait_cq(struct blkc *c, int64_t spin_until, int64_t deadline)
{
	struct pollfd p = { vrdma_comp_channel_fd(c->ch), POLLIN, 0 };
	struct vrdma_cq *cq;
	int64_t now = now_ns();
	void *ctx;

	if (now >= deadline)
		return -ETIMEDOUT;
	if (now < spin_until)
		return 0;
	vrdma_req_notify_cq(c->cq, 0);
	if (poll(&p, 1, 1) < 0 && errno != EINTR)
		return -errno;
	for (int i = 0; i < 4 && vrdma_get_cq_event(c->ch, &cq, &ctx) == 0; i++)
		vrdma_ack_cq_events(cq, 1);
	return 0;
}

int
blkc_reap(struct blkc *c, struct blkc_cpl *cpl, int max, int timeout_ms)
{
	int64_t start = now_ns(), spin_until = start + (int64_t)c->cfg.spin_us * 1000, deadline;
	struct vrdma_wc wc[16];
	int done = 0, err;

	if (c->broken)
		return c->broken;
	if (max <= 0)
		return -EINVAL;
	if (timeout_ms < 0)
		timeout_ms = c->cfg.timeout_ms;
	deadline = start + (int64_t)timeout_ms * 1000000;
	while (c->inflight) {
		int n = vrdma_poll_cq(c->cq, max - done < 16 ? max - done : 16, wc);

		if (n < 0)
			return c->broken = n;
		for (int i = 0; i < n; i++) {
			if (wc[i].status != VRDMA_WC_SUCCESS || wc[i].wr_id & WR_SEND_FLAG ||
			    wc[i].wr_id >= c->qdepth)
				return c->broken = -ECONNRESET;
			if ((err = take_response(c, (unsigned)wc[i].wr_id, wc[i].byte_len,
						 &cpl[done])))
				return c->broken = err;
			done++;
		}
		if (done)
			return done;
		if ((err = wait_cq(c, spin_until, deadline)))
			return err;
	}
	return done;
}

/* ---------------------------------------------------------------------- */
/* Synchronous transfers */

static int
xfer(struct blkc *c, uint8_t op, uint64_t lba, uint64_t nblocks, uint8_t *buf, uint16_t *status)
{
	struct blkc_cpl cpl[16];
	uint64_t next = 0;
	uint16_t first = BLK_SC_SUCCESS;

	if (c->broken)
		return c->broken;
	if (c->inflight || c->held)
		return -EBUSY; /* not mixed with the asynchronous interface */
	while ((next < nblocks && first == BLK_SC_SUCCESS) || c->inflight) {
		void *sbuf;
		int slot, n, err;

		while (next < nblocks && first == BLK_SC_SUCCESS &&
		       (slot = blkc_slot_get(c, &sbuf)) >= 0) {
			uint32_t k = nblocks - next < c->max_blocks ? (uint32_t)(nblocks - next)
								    : c->max_blocks;

			if (op == BLK_OP_WRITE)
				memcpy(sbuf, buf + next * BLK_BLOCK_SIZE,
				       (size_t)k * BLK_BLOCK_SIZE);
			if ((err = blkc_submit(c, slot, op, lba + next, k, next))) {
				blkc_slot_put(c, slot);
				return err;
			}
			next += k;
		}
		if ((n = blkc_reap(c, cpl, 16, -1)) < 0)
			return n;
		for (int i = 0; i < n; i++) {
			if (cpl[i].status != BLK_SC_SUCCESS && first == BLK_SC_SUCCESS)
				first = cpl[i].status;
			if (op == BLK_OP_READ && cpl[i].status == BLK_SC_SUCCESS)
				memcpy(buf + cpl[i].tag * BLK_BLOCK_SIZE,
				       blkc_slot_buf(c, cpl[i].slot), cpl[i].result);
			blkc_slot_put(c, cpl[i].slot);
		}
	}
	if (status)
		*status = first;
	return blk_status_errno(first);
}

int
blkc_read(struct blkc *c, uint64_t lba, uint64_t nblocks, void *buf, uint16_t *status)
{
	return xfer(c, BLK_OP_READ, lba, nblocks, buf, status);
}

int
blkc_write(struct blkc *c, uint64_t lba, uint64_t nblocks, const void *buf, uint16_t *status)
{
	/* Only read from: xfer copies out of it for writes. */
	return xfer(c, BLK_OP_WRITE, lba, nblocks, (uint8_t *)(uintptr_t)buf, status);
}

/* One command without data (or IDENTIFY into slot 0), waited for. */
static int
one(struct blkc *c, uint8_t op, uint16_t *status)
{
	struct blkc_cpl cpl;
	int slot, n, err;

	if (c->broken)
		return c->broken;
	if (c->inflight || c->held)
		return -EBUSY;
	if ((slot = blkc_slot_get(c, NULL)) < 0)
		return slot;
	if ((err = blkc_submit(c, slot, op, 0, 0, 0))) {
		blkc_slot_put(c, slot);
		return err;
	}
	n = blkc_reap(c, &cpl, 1, -1);
	if (n < 0)
		return n;
	blkc_slot_put(c, slot);
	if (status)
		*status = cpl.status;
	return blk_status_errno(cpl.status);
}

int
blkc_flush(struct blkc *c, uint16_t *status)
{
	return one(c, BLK_OP_FLUSH, status);
}

/* ---------------------------------------------------------------------- */
/* Connection */

static int
identify(struct blkc *c, const struct blk_conn_rep *rep)
{
	struct blk_identify id;
	uint16_t st;
	int err;

	if ((err = one(c, BLK_OP_IDENTIFY, &st)))
		return err;
	blk_identify_unpack(c->slots[0].buf, &id);
	if (id.magic != BLK_MAGIC || id.version != BLK_VERSION || id.nblocks != rep->nblocks ||
	    id.block_size != BLK_BLOCK_SIZE || id.max_blocks != c->max_blocks ||
	    id.qdepth != c->qdepth)
		return -EPROTO;
	c->info.nblocks = id.nblocks;
	c->info.block_size = id.block_size;
	c->info.max_blocks = id.max_blocks;
	c->info.qdepth = id.qdepth;
	c->info.flags = id.flags;
	memcpy(c->info.serial, id.serial, sizeof(id.serial));
	memcpy(c->info.model, id.model, sizeof(id.model));
	return 0;
}

/* The region for what was granted: receive buffers, then the slots; receives posted. */
static int
make_slots(struct blkc *c)
{
	long page = sysconf(_SC_PAGESIZE);
	int err;

	c->slot_bytes = (size_t)c->max_blocks * BLK_BLOCK_SIZE;
	if (c->slot_bytes < BLK_IDENTIFY_SIZE)
		c->slot_bytes = BLK_IDENTIFY_SIZE;
	c->rx_bytes = ((size_t)c->qdepth * RX_LEN + (size_t)page - 1) / (size_t)page * (size_t)page;
	c->region_len = c->rx_bytes + c->qdepth * c->slot_bytes;
	c->region =
	    mmap(NULL, c->region_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (c->region == MAP_FAILED) {
		c->region = NULL;
		return -ENOMEM;
	}
	if (!(c->slots = calloc(c->qdepth, sizeof(*c->slots))))
		return -ENOMEM;
	for (unsigned i = 0; i < c->qdepth; i++)
		c->slots[i].buf = c->region + c->rx_bytes + (size_t)i * c->slot_bytes;
	err = vrdma_reg_mr(c->pd, c->region, c->region_len,
			   VRDMA_ACCESS_LOCAL_WRITE | VRDMA_ACCESS_REMOTE_READ |
			       VRDMA_ACCESS_REMOTE_WRITE,
			   &c->mr);
	for (unsigned i = 0; i < c->qdepth && !err; i++)
		err = post_recv(c, i);
	return err;
}

static int
open_objects(struct blkc *c)
{
	struct vrdma_qp_init_attr ia;
	int err, fd;

	if ((err = vrdma_open_device(NULL, &c->ctx)) || (err = vrdma_alloc_pd(c->ctx, &c->pd)) ||
	    (err = vrdma_create_comp_channel(c->ctx, &c->ch)))
		return err;
	fd = vrdma_comp_channel_fd(c->ch);
	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0)
		return -errno;
	if ((err = vrdma_create_cq(c->ctx, (int)(2 * c->cfg.qdepth + 8), c, c->ch, &c->cq)))
		return err;
	memset(&ia, 0, sizeof(ia));
	ia.send_cq = ia.recv_cq = c->cq;
	ia.cap.max_send_wr = c->cfg.qdepth + 2;
	ia.cap.max_recv_wr = c->cfg.qdepth;
	ia.cap.max_send_sge = ia.cap.max_recv_sge = 1;
	ia.cap.max_inline_data = BLK_CMD_SIZE;
	ia.qp_type = VRDMA_QPT_RC;
	return vrdma_create_qp(c->pd, &ia, &c->qp);
}

static void
free_objects(struct blkc *c)
{
	if (c->qp)
		vrdma_destroy_qp(c->qp);
	if (c->cq)
		vrdma_destroy_cq(c->cq);
	if (c->mr)
		vrdma_dereg_mr(c->mr);
	if (c->region)
		munmap(c->region, c->region_len);
	if (c->ch)
		vrdma_destroy_comp_channel(c->ch);
	if (c->pd)
		vrdma_dealloc_pd(c->pd);
	if (c->ctx)
		vrdma_close_device(c->ctx);
	free(c->slots);
	free(c);
}

int
blkc_connect(const struct blkc_config *cfg, struct blkc **out)
{
	struct blk_conn_req q = { .magic = BLK_MAGIC, .version = BLK_VERSION };
	uint8_t priv[sizeof(q)], reply[VRDMA_PRIVATE_DATA];
	struct vrdma_conn_param p = { .private_data = priv, .private_data_len = sizeof(priv) };
	struct blk_conn_rep rep;
	struct blkc *c;
	int err;

	if (cfg->qdepth > BLK_MAX_QDEPTH || cfg->max_blocks > BLK_MAX_BLOCKS)
		return -EINVAL;
	if (!(c = calloc(1, sizeof(*c))))
		return -ENOMEM;
	c->cfg = *cfg;
	c->cfg.qdepth = cfg->qdepth ? cfg->qdepth : 8;
	c->cfg.max_blocks = cfg->max_blocks ? cfg->max_blocks : 32;
	c->cfg.spin_us = cfg->spin_us ? cfg->spin_us : 50;
	c->cfg.timeout_ms = cfg->timeout_ms > 0 ? cfg->timeout_ms : 5000;
	if ((err = open_objects(c)))
		goto fail;
	q.qdepth = (uint16_t)c->cfg.qdepth;
	q.max_blocks = c->cfg.max_blocks;
	blk_conn_req_pack(&q, priv);
	memset(reply, 0, sizeof(reply));
	if (cfg->addr)
		err = vrdma_connect_addr(c->qp, cfg->addr, cfg->addr_len, &p, reply,
					 c->cfg.timeout_ms);
	else
		err = vrdma_connect(c->qp, cfg->cid, cfg->port, &p, reply, c->cfg.timeout_ms);
	c->cfg.addr = NULL; /* the caller's */
	if (err)
		goto fail;
	blk_conn_rep_unpack(reply, &rep);
	err = -EPROTO;
	if (rep.magic != BLK_MAGIC || rep.version != BLK_VERSION || !rep.qdepth ||
	    rep.qdepth > c->cfg.qdepth || !rep.max_blocks || rep.max_blocks > c->cfg.max_blocks ||
	    rep.block_size != BLK_BLOCK_SIZE || !rep.nblocks)
		goto fail;
	c->qdepth = rep.qdepth;
	c->max_blocks = rep.max_blocks;
	if ((err = make_slots(c)) || (err = identify(c, &rep)))
		goto fail;
	*out = c;
	return 0;
fail:
	free_objects(c);
	return err;
}

void
blkc_get_info(const struct blkc *c, struct blkc_info *info)
{
	*info = c->info;
}

void
blkc_close(struct blkc *c)
{
	if (!c)
		return;
	/* Tell the target, and wait a little for its answer: it tears down after it. */
	if (!c->broken && !c->inflight && !c->held) {
		int save = c->cfg.timeout_ms;

		c->cfg.timeout_ms = 1000;
		one(c, BLK_OP_DISCONNECT, NULL);
		c->cfg.timeout_ms = save;
	}
	free_objects(c);
}
