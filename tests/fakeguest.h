/* SPDX-License-Identifier: MIT */
/*
 * A fake guest for the virtio-vsock device (src/vsock), for its tests and
 * its fuzz target: a device on a loop the caller owns, attached to one end
 * of a SOCK_STREAM socket pair; on the other end this plays QEMU (the
 * vhost-user setup of a vhost-user-vsock device: features, protocol
 * features, a memfd memory table, rings with kick and call eventfds) and
 * the guest's virtio-vsock driver (rx buffers posted as Linux 6.1 does,
 * packets on the tx ring, kicks only when the device asks for them, the
 * used rings read back). A stub fabric routes REQUESTs as the caller
 * says: refused, a queue pair whose other end the caller gets, or another
 * device. Everything runs on the caller's thread: fg_pump() turns the loop.
 *
 * A broken expectation about the device (a used entry for a chain it does
 * not own, a length beyond what the chain lets the device write) aborts
 * with a message on stderr, so that the fuzz target and the tests fail
 * alike.
 *
 * Other devices (virtio-net): fg_new_dev() makes the guest's memory
 * without a device; the caller's attach function serves the frontend's
 * socket, and the driver is the caller's, through the chain calls at the
 * end (any shape of chain on any ring, the used entries read back).
 */
#ifndef VMFABRIC_TESTS_FAKEGUEST_H
#define VMFABRIC_TESTS_FAKEGUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/loop.h"
#include "virtio/virtq.h"
#include "vsock/proto.h"
#include "vsock/vsock.h"

#define FG_QUEUE_MAX	128u	      /* ring size limit (QEMU's vhost-user-vsock uses 128) */
#define FG_BUF_MAX	VSOCK_MAX_PKT /* largest rx buffer after its header */
#define FG_PEERS_MAX	64u
#define FG_RX_BUF_LINUX 4096u /* Linux 6.1: VIRTIO_VSOCK_DEFAULT_RX_BUF_SIZE */
#define FG_SEGS_MAX	16u	      /* buffers in one chain (fg_post) */
#define FG_SLOT_BYTES	((68u << 10) - 256u) /* room for a chain's buffers (fg_post) */

/* How a buffer is laid out in descriptors. */
enum fg_layout {
	FG_TWO,	     /* header, then payload (Linux 6.1); control packets: the header only */
	FG_ONE,	     /* header and payload in one descriptor */
	FG_SPLIT,    /* the header cut in two descriptors (20 + 24 bytes), then payload */
	FG_INDIRECT, /* one indirect descriptor: a table of header and payload */
	FG_LAYOUTS
};

/* ---- the stub fabric ---- */

enum fg_route_mode {
	FG_REFUSE, /* route() returns fabric.err */
	FG_ACCEPT, /* a queue pair; the other end is kept in fabric.peer[] */
	FG_TO_VM,  /* the device fabric.vm */
};

struct fg_fabric {
	struct vsock_fabric fab; /* give &fab to the device */
	enum fg_route_mode mode;
	int err;	      /* FG_REFUSE: a -errno */
	size_t qsize;	      /* FG_ACCEPT: queue size per direction */
	struct vsock_dev *vm; /* FG_TO_VM */
	uint64_t vm_qsize;
	/* What the last route() call asked. */
	unsigned calls;
	struct vsock_dev *from;
	uint32_t src_port, dst_cid, dst_port;
	int type;
	/* FG_ACCEPT: the peers' ends in order; the caller may take one (and set it NULL). */
	struct qp *peer[FG_PEERS_MAX];
	unsigned npeers;
};

void fg_fabric_init(struct fg_fabric *f, enum fg_route_mode mode);
/*
 * A queue pair of @qsize per direction for a route: the device's end in
 * @r, the other end appended to f->peer[]. 0 or -errno. For callers with
 * a route() of their own (ctx must then be @f for fg_fabric_free).
 */
int fg_fabric_accept(struct fg_fabric *f, size_t qsize, struct vsock_route *r);
/* Close the peers' ends still held. */
void fg_fabric_free(struct fg_fabric *f);

/* ---- the guest ---- */

struct fg_opts {
	uint16_t num[VSOCK_QUEUES]; /* ring sizes, powers of two <= FG_QUEUE_MAX; 0: 128 */
	bool event_idx;		    /* negotiate VIRTIO_F_EVENT_IDX */
	bool indirect;		    /* negotiate VIRTIO_F_INDIRECT_DESC */
	bool no_event_ring;	    /* give the device rx and tx only, as QEMU 7.2 does */
	unsigned event_bufs;	    /* event buffers posted before the rings start */
	uint16_t bad_tx_head;	    /* if not 0: published on tx before the rings start */
	uint64_t features;	    /* device feature bits to negotiate too, if offered */
	bool legacy;		    /* do not negotiate VIRTIO_F_VERSION_1 */
};

/* One chain the guest gave the device and has not had back. */
struct fg_chain {
	bool busy;
	uint8_t ndesc;
	uint16_t desc[FG_SEGS_MAX];
	uint32_t cap;  /* bytes the chain holds */
	uint32_t wcap; /* of them, device-writable: the most a used entry may say */
	uint8_t nseg;
	uint16_t seg_write, seg_bad; /* bit i: buffer i is writable; outside guest memory */
	uint64_t seg_gpa[FG_SEGS_MAX];
	uint32_t seg_len[FG_SEGS_MAX];
};

struct fg_ring {
	bool on; /* given to the device */
	uint16_t num;
	struct virtq_desc *desc;
	uint16_t *avail, *used;
	uint16_t avail_idx, used_seen;
	int kick, call;
	uint16_t free[FG_QUEUE_MAX];
	unsigned nfree;
	struct fg_chain chain[FG_QUEUE_MAX];
	unsigned inflight; /* chains given and not back */
	uint16_t base;	   /* where the device stopped (fg_ring_stop) */
	uint16_t bad;	   /* heads published without a chain (fg_bad_head) */
	uint64_t kicks;	   /* kicks sent */
};

/* Serve a frontend on @sock (taken, also on failure): 0 or -errno. */
typedef int fg_attach_fn(void *ctx, int sock);

struct fg {
	struct loop *loop;
	struct vsock_dev *dev; /* NULL: a device of the caller's (fg_new_dev) */
	unsigned nq;	       /* its rings */
	fg_attach_fn *attach;
	void *attach_ctx;
	uint32_t cid;
	int fe; /* the frontend's end of the vhost-user socket, or -1 */
	int memfd;
	uint8_t *mem; /* the guest's view of its memory */
	uint64_t features;
	struct fg_ring ring[VSOCK_QUEUES];
	uint8_t pkt[sizeof(struct vsock_hdr) + FG_BUF_MAX]; /* the last packet read */
};

/* A packet the device put in an rx buffer. */
struct fg_pkt {
	struct vsock_hdr h;
	uint32_t used_len;   /* what the used entry said */
	const uint8_t *data; /* h.len payload bytes (valid until the next read) */
};

/* Make the guest's memory and a device with @cid on @loop (not attached). */
void fg_new(struct fg *g, struct loop *loop, uint32_t cid, const struct vsock_fabric *fab);
/*
 * The guest of a device of the caller's with @nq rings (at most
 * VSOCK_QUEUES), attached through @attach(@ctx, socket) on @loop. The
 * caller frees its device before fg_free().
 */
void fg_new_dev(struct fg *g, struct loop *loop, unsigned nq, fg_attach_fn *attach, void *ctx);
/*
 * The guest of a device in another process (a running vmfabricd's
 * vhost-user socket) with @nq rings: no loop (fg_pump does nothing;
 * requests wait for the device's answers), attached by fg_connect().
 */
void fg_new_remote(struct fg *g, unsigned nq);
/* Connect to the vhost-user socket at @path and attach as QEMU does: 0 or -errno. */
int fg_connect(struct fg *g, const char *path, const struct fg_opts *o);
/* Close the frontend's end, free the device (a vsock one) and the memory. */
void fg_free(struct fg *g);
/* Attach as QEMU does; every step must succeed. @o may be NULL (defaults). */
void fg_attach(struct fg *g, const struct fg_opts *o);
/* The same with the outcome: 0, or -errno of the step that failed. */
int fg_try_attach(struct fg *g, const struct fg_opts *o);
/* Close the frontend's end of the socket (the device sees the frontend go). */
void fg_close_frontend(struct fg *g);

/*
 * One vhost-user request (with NEED_REPLY when @ack): the reply's payload
 * size with up to @max bytes in @reply, 0 when none was expected, or -errno
 * (a non-zero REPLY_ACK status, or the device dropped the frontend).
 */
int fg_request(struct fg *g, uint32_t req, bool ack, const void *p, uint32_t size, const int *fds,
	       int nfds, void *reply, uint32_t max);
/*
 * Stop ring @q (GET_VRING_BASE, as QEMU when the VM stops) and start it
 * again where the device left it (SET_VRING_BASE, SET_VRING_KICK); both
 * at once. 0 or -errno.
 */
int fg_ring_stop(struct fg *g, unsigned q);
int fg_ring_start(struct fg *g, unsigned q);
int fg_ring_restart(struct fg *g, unsigned q);
/* The device's virtio config: guest_cid. */
uint64_t fg_config_cid(struct fg *g);

/*
 * Turn the loop until nothing is left to do (at most @max_rounds rounds of
 * loop_once with no wait), then wait up to @wait_ms for one more round.
 * Returns the rounds that had events; aborts when the device never goes
 * idle (a busy loop).
 */
int fg_pump(struct fg *g, int wait_ms);

/* ---- the driver ---- */

/*
 * Post @n receive buffers of @len payload bytes (after the 44-byte
 * header) in @layout. Returns how many fit in the ring.
 */
unsigned fg_rx_post(struct fg *g, unsigned n, uint32_t len, enum fg_layout layout);
/* One receive buffer of @bytes in one descriptor, device-writable or not (a broken driver). */
unsigned fg_rx_post_raw(struct fg *g, uint32_t bytes, bool writable);
/* Receive buffers posted and not used yet. */
unsigned fg_rx_posted(const struct fg *g);
/* The next packet in the used rx ring: 1 with @p filled, 0 if none. */
int fg_rx_get(struct fg *g, struct fg_pkt *p);

/*
 * Put one packet on the tx ring and kick if the device asks: @hdr_len
 * bytes of @hdr (normally 44), then @len bytes of @payload. Takes back
 * used tx chains first. -ENOSPC when the ring has no descriptors free.
 */
int fg_tx_raw(struct fg *g, const void *hdr, size_t hdr_len, const void *payload, uint32_t len,
	      enum fg_layout layout);
int fg_tx(struct fg *g, const struct vsock_hdr *h, const void *payload, enum fg_layout layout);
/* Publish @head as is on the tx ring (a broken driver) and kick. */
void fg_tx_bad_head(struct fg *g, uint16_t head);
/* Take back the used tx chains; how many. */
unsigned fg_tx_reclaim(struct fg *g);
/* tx chains the device has not given back. */
unsigned fg_tx_inflight(const struct fg *g);

/* Post @n event buffers (4 bytes each). */
unsigned fg_event_post(struct fg *g, unsigned n);
/* The next event: 1 with its id, 0 if none. */
int fg_event_get(struct fg *g, uint32_t *id);

/* Interrupts on queue @q since the last call. */
uint64_t fg_calls(struct fg *g, unsigned q);

/* ---- chains of any shape, for any device ---- */

/* One buffer of a chain. */
struct fg_seg {
	uint32_t len;  /* what the descriptor says */
	bool write;    /* device-writable */
	uint64_t addr; /* 0: laid out in the chain's slot; else this address as is (a broken driver) */
};

/*
 * Publish a chain of @nseg (1..FG_SEGS_MAX) buffers on ring @q: the first
 * @ndirect in descriptors of the ring, the rest (if any) in one indirect
 * table after them; the device-readable ones filled from @data (@len
 * bytes, in order; past it they keep what memory held). Kicks if the
 * device asks. Returns the head, -ENOSPC (not enough free descriptors),
 * -EMSGSIZE (the buffers laid out in the slot exceed FG_SLOT_BYTES) or
 * -ENOTCONN (the ring was never given to the device).
 */
int fg_post(struct fg *g, unsigned q, const struct fg_seg *seg, unsigned nseg, unsigned ndirect,
	    const void *data, size_t len);
/* Publish @head as is on ring @q (a broken driver) and kick. */
void fg_bad_head(struct fg *g, unsigned q, uint16_t head);
/*
 * The next used entry of ring @q: 1 with its head and length (checked: a
 * chain given and not had back, a length within its writable bytes), the
 * first min(length, @max) bytes written in @buf, and the chain taken
 * back; 0 if none.
 */
int fg_used_take(struct fg *g, unsigned q, uint16_t *head, uint32_t *len, void *buf, uint32_t max);
/* Used entries of ring @q the device published and the driver has not taken. */
unsigned fg_used_pending(const struct fg *g, unsigned q);

/* A header from this guest: src_cid set, the rest as given, buf_alloc/fwd_cnt 0. */
struct vsock_hdr fg_hdr(const struct fg *g, uint16_t op, uint32_t src_port, uint64_t dst_cid,
			uint32_t dst_port, uint16_t type);

#endif
