/* SPDX-License-Identifier: MIT */
/*
 * What the virtio-vsock device's tests (test-vsockdev.c) share on top of
 * the fake guest: a test world (a loop, a stub fabric, one guest), the
 * guest's side of a connection with both credits as a Linux driver keeps
 * them, and checks of what the device sends. Failures end the test
 * through the harness's assertions.
 */
#ifndef VMFABRIC_TESTS_VSOCKDEV_H
#define VMFABRIC_TESTS_VSOCKDEV_H

#include <stdbool.h>
#include <stdint.h>

#include "fakeguest.h"
#include "vmfabric/qp.h"

#define HOST  2u
#define CID   3u
#define CID_B 4u
#define HDR   ((uint32_t)sizeof(struct vsock_hdr))
#define ST    VSOCK_TYPE_STREAM
#define SP    VSOCK_TYPE_SEQPACKET
#define QSIZE QP_SIZE_DEFAULT

/* One loop, a fabric and a guest. */
struct tw {
	struct loop loop;
	struct fg_fabric fab;
	struct fg g;
	struct fg_pkt p;
};

/* The guest's side of one connection. */
struct gc {
	struct fg *g;
	uint32_t port, pcid, pport;
	uint16_t type;
	uint32_t buf_alloc, fwd_cnt;	       /* our receive buffer, what we consumed */
	uint32_t rx_cnt, tx_cnt;	       /* payload bytes received / sent */
	uint32_t peer_buf_alloc, peer_fwd_cnt; /* the device's, as last said */
};


/* A world whose fabric routes with @mode; tw_open() also attaches the guest (CID 3). */
struct tw *tw_new(enum fg_route_mode mode);
struct tw *tw_open(enum fg_route_mode mode, const struct fg_opts *o);
void tw_close(struct tw *t);

struct vsock_stats vd_stats(struct fg *g);
/* Put a packet on the tx ring (waiting for descriptors if need be) and let the device run. */
void vd_tx(struct fg *g, const struct vsock_hdr *h, const void *data, enum fg_layout l);
/* The next packet for the guest: it must be there (logged for a failing test). */
struct fg_pkt *vd_next(struct fg *g, struct fg_pkt *p);
/* No packet for the guest once the device is idle. */
void vd_none(struct fg *g);
void vd_expect_addr(const struct fg_pkt *p, uint16_t op, uint32_t src_cid, uint32_t src_port,
		    uint32_t dst_cid, uint32_t dst_port, uint16_t type);

void gc_init(struct gc *c, struct fg *g, uint32_t port, uint32_t pcid, uint32_t pport,
	     uint16_t type, uint32_t buf_alloc);
/* A header for @c with our buf_alloc and fwd_cnt. */
struct vsock_hdr gc_hdr(const struct gc *c, uint16_t op, uint32_t len, uint32_t flags);
/* Send; RW payload counts in tx_cnt. */
void gc_send(struct gc *c, uint16_t op, const void *data, uint32_t len, uint32_t flags,
	     enum fg_layout l);
/* The credit the device gives us. */
uint32_t gc_credit(const struct gc *c);
/*
 * Take a packet for @c: it must be @op with @c's addresses; its credit is
 * noted and checked (the device never takes credit back, never sends RW
 * beyond ours).
 */
void gc_take(struct gc *c, const struct fg_pkt *p, uint16_t op);
/* The next packet, taken by gc_take(). */
void gc_expect(struct gc *c, struct fg_pkt *p, uint16_t op);
/*
 * Connect guest port @port to HOST:@pport (the fabric must accept): the
 * RESPONSE is in t->p; returns the peer's end (the fabric keeps it).
 */
struct qp *gc_connect(struct tw *t, struct gc *c, uint32_t port, uint32_t pport, uint16_t type,
		      uint32_t buf_alloc);
/* Receive every RW the device has for @c into @buf at c->rx_cnt; packets seen. */
unsigned gc_drain_rx(struct gc *c, struct fg_pkt *p, uint8_t *buf, size_t cap);

/* Write all of @buf into the peer's end, letting the device move it. */
void vd_peer_write(struct fg *g, struct qp *q, const uint8_t *buf, size_t len);
/* Read exactly @len bytes from the peer's end. */
void vd_peer_read(struct fg *g, struct qp *q, uint8_t *buf, size_t len);
/* The peer's end reads EOF; @reset: the device went without a shutdown. */
void vd_peer_eof(struct qp *q, bool reset);
void vd_peer_nothing(struct qp *q);
/* Take the peer end @q out of the fabric's hands (the test closes it). */
void vd_take_peer(struct tw *t, struct qp *q);
/* Let the device use up every receive buffer posted, with 1-byte writes of the peer. */
void vd_use_up_rx(struct tw *t, struct gc *c, struct qp *q);

#endif
