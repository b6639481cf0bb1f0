/* SPDX-License-Identifier: MIT */
/*
 * The rdma-block target (blk.h): one thread serving any number of hosts.
 * Each connection has its own CQ, QP and region: qdepth receive buffers
 * and qdepth staging slots. Receive j and slot j go together: the capsule
 * that lands in receive j is served with slot j, and receive j is posted
 * again just before the command's response is posted, so a host can never
 * have more than qdepth commands at the target (a further SEND waits for
 * a receive: RNR). A command's life:
 *   WRITE     RDMA READ host buffer -> slot (or the memory store itself),
 *             then pwrite, then the response
 *   READ      pread -> slot, then RDMA WRITE slot -> host buffer and the
 *             response in one post (RC keeps them in order)
 *   IDENTIFY  RDMA WRITE of struct blk_identify, then the response
 *   FLUSH     fdatasync, then the response
 * Slot j is free again when its response's SEND completes; a capsule that
 * arrives in receive j before that waits for it.
 *
 * Why staging buffers and not the file mapped and registered: registering
 * memory with vrdma_reg_mr() moves its pages onto a sealed memfd mapped
 * over them (docs/RDMA.md), so a MAP_SHARED mapping of the file would be
 * replaced by anonymous shared memory and writes would never reach the
 * file. A memory store has no such problem: it is registered once and the
 * RDMA operations move data straight in and out of it.
 *
 * Threat model: hosts are untrusted. Every capsule goes through
 * blk_cmd_check() (malformed: an error status); the target's memory is
 * registered for local access only, so a host reaches nothing of it; a
 * host's bad rkey or buffer fails the target's RDMA READ / WRITE, which
 * moves that QP to ERR: that connection is torn down, no other. A host
 * on this host that disappears without DISCONNECT is noticed by its
 * completion channel, which keeps firing with nothing to take once the
 * host's end of the connection is closed; one on another host, by the RC
 * transport's retries (a response that cannot be delivered fails).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "blk.h"
#include "vmfabric/vrdma.h"

#define RECV_LEN     256u /* a receive: a SEND larger than a capsule still lands, and is refused */
#define POLL_BATCH   32
#define EMPTY_WAKES  64	     /* channel events in a row with nothing to take: the host is gone */
#define LISTEN_EVERY 1000000 /* ns between looks at the listener while busy */

enum { WR_RECV, WR_READ, WR_RSP };
#define WR_ID(kind, slot) ((uint64_t)(kind) << 32 | (slot))
#define MAX_EVENTS	  64 /* taken from the channel a wait (a closed host's end stays ready) */

struct slot {
	struct blk_cmd cmd;  /* the command it serves */
	uint32_t queued_len; /* the capsule waiting in its receive buffer */
	bool queued;	     /* a capsule waits for the response before it */
	bool cid_held;	     /* cmd.cid is marked in flight */
	bool rsp_pending;    /* its response is posted, not completed */
	bool disconnect;     /* that response answers DISCONNECT */
};

struct conn {
	struct blkt *t;
	struct conn *next;
	struct vrdma_cq *cq;
	struct vrdma_qp *qp;
	struct vrdma_mr *mr; /* the region: receive buffers, then slots */
	uint8_t *region;
	size_t region_len, slot_bytes, rx_bytes;
	unsigned qdepth, empty_wakes;
	struct blk_geom geom;
	struct slot *slots;
	char host[64];		       /* "CID 3", or another host's IP */
	bool remote;		       /* over RoCE v2: the RC transport notices a dead host */
	bool woken;		       /* its CQ's event came since the last poll */
	bool dead;		       /* torn down at the end of the pass */
	bool bye;		       /* ... because the host said DISCONNECT */
	char why[96];		       /* ... or for this reason */
	uint64_t cid_busy[65536 / 64]; /* command ids in flight */
};

struct blkt {
	struct blkt_config cfg;
	struct vrdma_context *ctx;
	struct vrdma_pd *pd;
	struct vrdma_comp_channel *ch;
	struct vrdma_listener *l;
	struct vrdma_mr *store_mr; /* a memory store, registered */
	struct conn *conns;
	unsigned nconns;
	uint32_t cid;
	int64_t last_work, last_listen;
	struct blkt_stats st;
};

static int64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

__attribute__((format(printf, 2, 3))) static void
tlog(const struct blkt *t, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	if (!t->cfg.log)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	t->cfg.log(t->cfg.log_arg, msg);
}

static uint8_t *
rx_buf(const struct conn *c, unsigned j)
{
	return c->region + (size_t)j * RECV_LEN;
}

static uint8_t *
slot_buf(const struct conn *c, unsigned j)
{
	return c->region + c->rx_bytes + (size_t)j * c->slot_bytes;
}

/* Tear @c down at the end of this pass; the first reason is kept. */
__attribute__((format(printf, 2, 3))) static void
drop(struct conn *c, const char *fmt, ...)
{
	va_list ap;

	if (c->dead)
		return;
	c->dead = true;
	va_start(ap, fmt);
	vsnprintf(c->why, sizeof(c->why), fmt, ap);
	va_end(ap);
}

static void
cid_set(struct conn *c, uint16_t cid, bool on)
{
	if (on)
		c->cid_busy[cid / 64] |= 1ull << (cid % 64);
	else
		c->cid_busy[cid / 64] &= ~(1ull << (cid % 64));
}

static bool
cid_busy(const struct conn *c, uint16_t cid)
{
	return c->cid_busy[cid / 64] >> (cid % 64) & 1;
}

static int
post_recv(struct conn *c, unsigned j)
{
	struct vrdma_sge sge = { (uintptr_t)rx_buf(c, j), RECV_LEN, c->mr->lkey };
	struct vrdma_recv_wr wr = { .wr_id = WR_ID(WR_RECV, j), .sg_list = &sge, .num_sge = 1 };
	struct vrdma_recv_wr *bad;

	return vrdma_post_recv(c->qp, &wr, &bad);
}

/* Where a command's data is at the target: the memory store itself, or slot @j. */
static void
local_data(const struct conn *c, unsigned j, struct vrdma_sge *sge)
{
	const struct slot *s = &c->slots[j];
	uint8_t *mem = blks_memory(c->t->cfg.store);

	sge->length = s->cmd.length;
	if (mem && s->cmd.opcode != BLK_OP_IDENTIFY) {
		sge->addr = (uintptr_t)(mem + s->cmd.lba * BLK_BLOCK_SIZE);
		sge->lkey = c->t->store_mr->lkey;
	} else {
		sge->addr = (uintptr_t)slot_buf(c, j);
		sge->lkey = c->mr->lkey;
	}
}

/*
 * Answer slot @j's command with @status; with @data, an RDMA WRITE of the
 * command's data to the host goes first, in the same post. Receive j is
 * posted again first: from here on the command is done as far as the
 * host's flow control goes.
 */
static void
respond(struct conn *c, unsigned j, uint16_t status, bool data)
{
	struct slot *s = &c->slots[j];
	struct blk_rsp r = { .cid = s->cmd.cid, .status = status };
	uint8_t bytes[BLK_RSP_SIZE];
	struct vrdma_sge dsge, rsge = { (uintptr_t)bytes, sizeof(bytes), 0 };
	struct vrdma_send_wr w[2], *bad;
	int err;

	if (status == BLK_SC_SUCCESS &&
	    (s->cmd.opcode == BLK_OP_READ || s->cmd.opcode == BLK_OP_WRITE ||
	     s->cmd.opcode == BLK_OP_IDENTIFY))
		r.result = s->cmd.length;
	blk_rsp_pack(&r, bytes);
	if (s->cid_held)
		cid_set(c, s->cmd.cid, false);
	s->cid_held = false;
	if ((err = post_recv(c, j))) {
		drop(c, "posting a receive failed: %s", strerror(-err));
		return;
	}
	memset(w, 0, sizeof(w));
	w[1].wr_id = WR_ID(WR_RSP, j);
	w[1].sg_list = &rsge;
	w[1].num_sge = 1;
	w[1].opcode = VRDMA_WR_SEND;
	w[1].send_flags = VRDMA_SEND_INLINE | VRDMA_SEND_SIGNALED;
	if (data) {
		local_data(c, j, &dsge);
		w[0].wr_id = WR_ID(WR_RSP, j);
		w[0].next = &w[1];
		w[0].sg_list = &dsge;
		w[0].num_sge = 1;
		w[0].opcode = VRDMA_WR_RDMA_WRITE; /* unsignaled: a failure completes anyway */
		w[0].wr.rdma.remote_addr = s->cmd.addr;
		w[0].wr.rdma.rkey = s->cmd.rkey;
	}
	if ((err = vrdma_post_send(c->qp, data ? &w[0] : &w[1], &bad))) {
		drop(c, "posting a response failed: %s", strerror(-err));
		return;
	}
	s->rsp_pending = true;
	s->disconnect = s->cmd.opcode == BLK_OP_DISCONNECT && status == BLK_SC_SUCCESS;
	c->t->st.cmds++;
	c->t->st.errors += status != BLK_SC_SUCCESS;
}

static void
identify(struct conn *c, unsigned j)
{
	struct blk_identify id;

	memset(&id, 0, sizeof(id));
	id.magic = BLK_MAGIC;
	id.version = BLK_VERSION;
	id.flags = blks_memory(c->t->cfg.store) ? 0 : BLK_ID_VOLATILE_CACHE;
	id.nblocks = c->geom.nblocks;
	id.block_size = BLK_BLOCK_SIZE;
	id.max_blocks = c->geom.max_blocks;
	id.qdepth = c->qdepth;
	snprintf(id.serial, sizeof(id.serial), "%s", c->t->cfg.serial);
	snprintf(id.model, sizeof(id.model), "vmfabric rdma-block %s",
		 blks_memory(c->t->cfg.store) ? "memory" : "file");
	blk_identify_pack(&id, slot_buf(c, j));
}

/* A host write: fetch the data from the host's buffer. */
static void
fetch(struct conn *c, unsigned j)
{
	struct vrdma_sge sge;
	struct vrdma_send_wr wr, *bad;
	int err;

	memset(&wr, 0, sizeof(wr));
	local_data(c, j, &sge);
	wr.wr_id = WR_ID(WR_READ, j);
	wr.sg_list = &sge;
	wr.num_sge = 1;
	wr.opcode = VRDMA_WR_RDMA_READ;
	wr.send_flags = VRDMA_SEND_SIGNALED;
	wr.wr.rdma.remote_addr = c->slots[j].cmd.addr;
	wr.wr.rdma.rkey = c->slots[j].cmd.rkey;
	if ((err = vrdma_post_send(c->qp, &wr, &bad)))
		drop(c, "posting an RDMA READ failed: %s", strerror(-err));
}

/* Serve the capsule of @len bytes in receive @j. */
static void
execute(struct conn *c, unsigned j, uint32_t len)
{
	struct slot *s = &c->slots[j];
	struct blk_store *store = c->t->cfg.store;
	uint16_t st = blk_cmd_check(rx_buf(c, j), len, &c->geom, &s->cmd);
	int err;

	if (st != BLK_SC_SUCCESS) {
		respond(c, j, st, false);
		return;
	}
	if (cid_busy(c, s->cmd.cid)) {
		respond(c, j, BLK_SC_CID_CONFLICT, false);
		return;
	}
	cid_set(c, s->cmd.cid, true);
	s->cid_held = true;
	switch (s->cmd.opcode) {
	case BLK_OP_WRITE:
		fetch(c, j);
		return;
	case BLK_OP_READ:
		if (!blks_memory(store) &&
		    blks_read(store, s->cmd.lba, s->cmd.nblocks, slot_buf(c, j)) < 0) {
			respond(c, j, BLK_SC_INTERNAL, false);
			return;
		}
		respond(c, j, BLK_SC_SUCCESS, true);
		return;
	case BLK_OP_IDENTIFY:
		identify(c, j);
		respond(c, j, BLK_SC_SUCCESS, true);
		return;
	case BLK_OP_FLUSH:
		err = blks_flush(store);
		respond(c, j, err ? BLK_SC_INTERNAL : BLK_SC_SUCCESS, false);
		return;
	default: /* DISCONNECT */
		respond(c, j, BLK_SC_SUCCESS, false);
		return;
	}
}

/* The host's data of slot @j's WRITE arrived: store it, answer. */
static void
fetched(struct conn *c, unsigned j)
{
	struct slot *s = &c->slots[j];
	struct blk_store *store = c->t->cfg.store;

	if (!blks_memory(store) &&
	    blks_write(store, s->cmd.lba, s->cmd.nblocks, slot_buf(c, j)) < 0) {
		respond(c, j, BLK_SC_INTERNAL, false);
		return;
	}
	respond(c, j, BLK_SC_SUCCESS, false);
}

static const char *
wr_name(uint64_t kind)
{
	return kind == WR_RECV ? "a receive" : kind == WR_READ ? "an RDMA READ" : "a response";
}

static void
completion(struct conn *c, const struct vrdma_wc *wc)
{
	uint64_t kind = wc->wr_id >> 32;
	unsigned j = (unsigned)(wc->wr_id & 0xffffffffu);
	struct slot *s;

	if (j >= c->qdepth || kind > WR_RSP) {
		drop(c, "a completion of no work request of ours");
		return;
	}
	s = &c->slots[j];
	if (wc->status != VRDMA_WC_SUCCESS) {
		drop(c, "%s of slot %u failed: %s", wr_name(kind), j,
		     vrdma_wc_status_str(wc->status));
		return;
	}
	switch (kind) {
	case WR_RECV:
		if (s->rsp_pending) {
			s->queued = true; /* served when the response completes */
			s->queued_len = wc->byte_len;
		} else {
			execute(c, j, wc->byte_len);
		}
		return;
	case WR_READ:
		fetched(c, j);
		return;
	default:
		s->rsp_pending = false;
		if (s->disconnect) {
			c->bye = true;
			drop(c, "disconnected");
		} else if (s->queued) {
			s->queued = false;
			execute(c, j, s->queued_len);
		}
		return;
	}
}

static void
conn_free(struct conn *c)
{
	if (c->qp)
		vrdma_destroy_qp(c->qp);
	if (c->cq)
		vrdma_destroy_cq(c->cq);
	if (c->mr)
		vrdma_dereg_mr(c->mr);
	if (c->region)
		munmap(c->region, c->region_len);
	free(c->slots);
	free(c);
}

static uint32_t
min_u32(uint32_t a, uint32_t b)
{
	return a < b ? a : b;
}

/* A connection's objects for what the host asked; granted values in *@rep. */
static int
conn_new(struct blkt *t, const struct blk_conn_req *q, struct blk_conn_rep *rep, struct conn **out)
{
	long page = sysconf(_SC_PAGESIZE);
	struct vrdma_qp_init_attr ia;
	struct conn *c = calloc(1, sizeof(*c));
	int err = -ENOMEM;

	if (!c)
		return -ENOMEM;
	c->t = t;
	c->qdepth = min_u32(q->qdepth, t->cfg.max_qdepth);
	c->geom.nblocks = blks_nblocks(t->cfg.store);
	c->geom.max_blocks = min_u32(q->max_blocks, t->cfg.max_blocks);
	c->slot_bytes = blks_memory(t->cfg.store) ? BLK_IDENTIFY_SIZE
						  : (size_t)c->geom.max_blocks * BLK_BLOCK_SIZE;
	if (c->slot_bytes < BLK_IDENTIFY_SIZE)
		c->slot_bytes = BLK_IDENTIFY_SIZE;
	c->rx_bytes =
	    ((size_t)c->qdepth * RECV_LEN + (size_t)page - 1) / (size_t)page * (size_t)page;
	c->region_len = c->rx_bytes + c->qdepth * c->slot_bytes;
	if (!(c->slots = calloc(c->qdepth, sizeof(*c->slots))))
		goto fail;
	c->region =
	    mmap(NULL, c->region_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (c->region == MAP_FAILED) {
		c->region = NULL;
		goto fail;
	}
	/* Local access only: a host reaches nothing of the target's memory. */
	if ((err = vrdma_reg_mr(t->pd, c->region, c->region_len, VRDMA_ACCESS_LOCAL_WRITE, &c->mr)))
		goto fail;
	if ((err = vrdma_create_cq(t->ctx, (int)(3 * c->qdepth + 8), c, t->ch, &c->cq)))
		goto fail;
	memset(&ia, 0, sizeof(ia));
	ia.qp_context = c;
	ia.send_cq = ia.recv_cq = c->cq;
	ia.cap.max_send_wr = 2 * c->qdepth + 4;
	ia.cap.max_recv_wr = c->qdepth;
	ia.cap.max_send_sge = ia.cap.max_recv_sge = 1;
	ia.cap.max_inline_data = BLK_RSP_SIZE;
	ia.qp_type = VRDMA_QPT_RC;
	if ((err = vrdma_create_qp(t->pd, &ia, &c->qp)))
		goto fail;
	memset(rep, 0, sizeof(*rep));
	rep->magic = BLK_MAGIC;
	rep->version = BLK_VERSION;
	rep->qdepth = (uint16_t)c->qdepth;
	rep->max_blocks = c->geom.max_blocks;
	rep->block_size = BLK_BLOCK_SIZE;
	rep->nblocks = c->geom.nblocks;
	*out = c;
	return 0;
fail:
	conn_free(c);
	return err;
}

/* Who asks, for the log: "CID 3" on this host, the IP of another. */
static void
host_name(const struct vrdma_conn_req *req, char *buf, size_t len)
{
	const struct sockaddr_in *a4 = (const struct sockaddr_in *)&req->src_addr;
	const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *)&req->src_addr;
	char ip[INET6_ADDRSTRLEN] = "?";

	if (!req->remote) {
		snprintf(buf, len, "CID %u", req->src_cid);
		return;
	}
	if (a4->sin_family == AF_INET)
		inet_ntop(AF_INET, &a4->sin_addr, ip, sizeof(ip));
	else if (a6->sin6_family == AF_INET6)
		inet_ntop(AF_INET6, &a6->sin6_addr, ip, sizeof(ip));
	snprintf(buf, len, "%s", ip);
}

/* A connection request: refused unless it speaks our version and there is room. */
static void
accept_one(struct blkt *t, const struct vrdma_conn_req *req)
{
	struct blk_conn_req q;
	struct blk_conn_rep rep;
	uint8_t priv[sizeof(struct blk_conn_rep)];
	struct vrdma_conn_param p = { .private_data = priv, .private_data_len = sizeof(priv) };
	const char *why = NULL;
	struct conn *c = NULL;
	char who[64];
	int err = 0;

	host_name(req, who, sizeof(who));
	memset(&q, 0, sizeof(q));
	if (req->private_data_len >= sizeof(struct blk_conn_req))
		blk_conn_req_unpack(req->private_data, &q);
	if (q.magic != BLK_MAGIC || q.version != BLK_VERSION)
		why = "not an rdma-block host of this version";
	else if (!q.qdepth || q.qdepth > BLK_MAX_QDEPTH || !q.max_blocks ||
		 q.max_blocks > BLK_MAX_BLOCKS)
		why = "a queue depth or transfer size out of range";
	else if (t->nconns >= t->cfg.max_conns)
		why = "too many hosts";
	else if ((err = conn_new(t, &q, &rep, &c)))
		why = strerror(-err);
	if (why) {
		vrdma_reject(t->l, req);
		t->st.rejected++;
		tlog(t, "host %s refused: %s", who, why);
		return;
	}
	blk_conn_rep_pack(&rep, priv);
	if ((err = vrdma_accept(t->l, req, c->qp, &p))) {
		tlog(t, "host %s: accept: %s", who, strerror(-err));
		conn_free(c);
		return;
	}
	for (unsigned j = 0; j < c->qdepth && !err; j++)
		err = post_recv(c, j);
	if (err) {
		tlog(t, "host %s: receives: %s", who, strerror(-err));
		conn_free(c);
		return;
	}
	snprintf(c->host, sizeof(c->host), "%s", who);
	c->remote = req->remote;
	c->next = t->conns;
	t->conns = c;
	t->nconns++;
	t->st.conns++;
	tlog(t, "host %s connected: queue depth %u, %u blocks a command", c->host, c->qdepth,
	     c->geom.max_blocks);
}

static int
listen_pass(struct blkt *t)
{
	struct vrdma_conn_req req;
	int n = 0, err;

	while (!(err = vrdma_get_request(t->l, &req, 0))) {
		accept_one(t, &req);
		n++;
	}
	return err == -EAGAIN ? n : err;
}

/* One connection's completions; a dead connection is torn down. */
static int
conn_pass(struct blkt *t, struct conn **link)
{
	struct conn *c = *link;
	struct vrdma_wc wc[POLL_BATCH];
	int n = vrdma_poll_cq(c->cq, POLL_BATCH, wc);

	if (n < 0)
		drop(c, "its completion queue failed");
	for (int i = 0; i < n && !c->dead; i++)
		completion(c, &wc[i]);
	/*
	 * On this host, a host's closed end keeps its channel ready with
	 * nothing to take; over RoCE v2 the RC transport's retries notice a
	 * dead host instead (its sends fail).
	 */
	if (c->woken) {
		c->woken = false;
		c->empty_wakes = n > 0 || c->remote ? 0 : c->empty_wakes + 1;
		if (c->empty_wakes >= EMPTY_WAKES)
			drop(c, "the host is gone");
	} else if (n > 0) {
		c->empty_wakes = 0;
	}
	if (c->dead) {
		tlog(t, "host %s %s%s", c->host, c->bye ? "" : "dropped: ", c->why);
		t->st.dropped += !c->bye;
		*link = c->next;
		t->nconns--;
		conn_free(c);
	}
	return n > 0 ? n : 0;
}

int
blkt_poll(struct blkt *t)
{
	int64_t now = now_ns();
	int work = 0, n;

	if (now - t->last_listen >= LISTEN_EVERY) {
		t->last_listen = now;
		if ((n = listen_pass(t)) < 0)
			return n;
		work += n;
	}
	for (struct conn **link = &t->conns; *link;) {
		struct conn *c = *link;

		work += conn_pass(t, link);
		if (*link == c)
			link = &c->next;
	}
	return work;
}

/* Commands at the target or responses not completed: sends may wait to be retried. */
static bool
busy(const struct blkt *t)
{
	for (const struct conn *c = t->conns; c; c = c->next)
		for (unsigned j = 0; j < c->qdepth; j++)
			if (c->slots[j].cid_held || c->slots[j].rsp_pending)
				return true;
	return false;
}

/*
 * Sleep until a CQ's event, a connection request or @ms; the work found
 * by the last look (> 0), 0 or -errno. Every CQ is armed, then polled
 * once more (a completion before the arming is no event). Work requests that wait (an RNR, a full
 * ring) are retried only by polling: with work at the target the sleep is 1 ms at most.
 */
static int
wait_work(struct blkt *t, int ms)
{
	struct pollfd p[2] = { { vrdma_comp_channel_fd(t->ch), POLLIN, 0 },
			       { vrdma_listener_fd(t->l), POLLIN, 0 } };
	struct vrdma_cq *cq;
	void *ctx;
	int n;

	for (struct conn *c = t->conns; c; c = c->next)
		vrdma_req_notify_cq(c->cq, 0);
	if ((n = blkt_poll(t)) != 0)
		return n;
	if (busy(t) && ms > 1)
		ms = 1;
	if ((n = poll(p, 2, ms)) < 0)
		return -errno;
	if (p[1].revents)
		t->last_listen = 0; /* look at once */
	for (int i = 0; i < MAX_EVENTS && vrdma_get_cq_event(t->ch, &cq, &ctx) == 0; i++) {
		vrdma_ack_cq_events(cq, 1);
		((struct conn *)ctx)->woken = true;
	}
	return 0;
}

int
blkt_run(struct blkt *t, int timeout_ms)
{
	int64_t deadline = timeout_ms < 0 ? INT64_MAX : now_ns() + (int64_t)timeout_ms * 1000000;
	int64_t spin = (int64_t)t->cfg.spin_us * 1000;

	for (;;) {
		int64_t now;
		int n = blkt_poll(t);

		if (n < 0)
			return n;
		now = now_ns();
		if (n > 0)
			t->last_work = now;
		if (now >= deadline)
			return 0;
		if (n > 0 || now - t->last_work < spin)
			continue;
		n = wait_work(
		    t, deadline - now > 100000000 ? 100 : (int)((deadline - now) / 1000000) + 1);
		if (n == -EINTR)
			return 0;
		if (n < 0)
			return n;
		if (n > 0)
			t->last_work = now_ns();
	}
}

int
blkt_create(const struct blkt_config *cfg, struct blkt **out)
{
	struct vrdma_device_attr attr;
	struct blkt *t;
	void *mem;
	int err, fd;

	if (!cfg->store || cfg->max_qdepth > BLK_MAX_QDEPTH || cfg->max_blocks > BLK_MAX_BLOCKS)
		return -EINVAL;
	if (!(t = calloc(1, sizeof(*t))))
		return -ENOMEM;
	t->cfg = *cfg;
	t->cfg.max_qdepth = cfg->max_qdepth ? cfg->max_qdepth : 32;
	t->cfg.max_blocks = cfg->max_blocks ? cfg->max_blocks : 64;
	t->cfg.max_conns = cfg->max_conns ? cfg->max_conns : 16;
	t->cfg.spin_us = cfg->spin_us ? cfg->spin_us : 50;
	t->cfg.serial = cfg->serial ? cfg->serial : "vmf-blk";
	if ((err = vrdma_open_device(NULL, &t->ctx)))
		goto fail;
	if ((err = vrdma_query_device(t->ctx, &attr)) || (err = vrdma_alloc_pd(t->ctx, &t->pd)) ||
	    (err = vrdma_create_comp_channel(t->ctx, &t->ch)))
		goto fail;
	fd = vrdma_comp_channel_fd(t->ch);
	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0) {
		err = -errno;
		goto fail;
	}
	t->cid = attr.cid;
	mem = blks_memory(cfg->store);
	if (mem && (err = vrdma_reg_mr(t->pd, mem, blks_nblocks(cfg->store) * BLK_BLOCK_SIZE,
				       VRDMA_ACCESS_LOCAL_WRITE, &t->store_mr)))
		goto fail;
	if ((err = vrdma_listen(t->ctx, cfg->port, &t->l)))
		goto fail;
	*out = t;
	return 0;
fail:
	blkt_destroy(t);
	return err;
}

uint32_t
blkt_port(const struct blkt *t)
{
	return vrdma_listener_port(t->l);
}

uint32_t
blkt_cid(const struct blkt *t)
{
	return t->cid;
}

unsigned
blkt_conns(const struct blkt *t)
{
	return t->nconns;
}

void
blkt_get_stats(const struct blkt *t, struct blkt_stats *st)
{
	*st = t->st;
}

void
blkt_destroy(struct blkt *t)
{
	if (!t)
		return;
	while (t->conns) {
		struct conn *c = t->conns;

		t->conns = c->next;
		conn_free(c);
	}
	if (t->l)
		vrdma_listener_close(t->l);
	if (t->store_mr)
		vrdma_dereg_mr(t->store_mr);
	if (t->ch)
		vrdma_destroy_comp_channel(t->ch);
	if (t->pd)
		vrdma_dealloc_pd(t->pd);
	if (t->ctx)
		vrdma_close_device(t->ctx);
	free(t);
}
