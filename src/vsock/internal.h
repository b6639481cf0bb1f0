/* SPDX-License-Identifier: MIT */
/*
 * Internals of the virtio-vsock device shared by its files: dev.c (the
 * vhost-user side: queues, kicks, what goes to the guest and in which
 * order) and conn.c (connections: table, state, credit, the queue pairs).
 */
#ifndef VMFABRIC_VSOCK_INTERNAL_H
#define VMFABRIC_VSOCK_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto.h"
#include "vhost/vhost.h"
#include "virtio/virtq.h"
#include "vsock.h"

enum vsock_state {
	VC_CONNECTING, /* REQUEST sent to the guest, waiting for RESPONSE or RST */
	VC_WAIT_PEER,  /* the guest asked; waiting for another VM's answer */
	VC_OPEN,
	VC_CLOSING, /* full SHUTDOWN sent to the guest, waiting for its RST */
};

/* Control packets a connection owes the guest (bits of vsock_conn.owe). */
#define OWE_RESPONSE 0x1u
#define OWE_CREDIT 0x2u
#define OWE_SHUTDOWN 0x4u /* flags in vsock_conn.shut_to_guest */
#define OWE_RST 0x8u
#define OWE_REQUEST 0x10u
#define OWE_CREDIT_REQ 0x20u

struct vsock_conn {
	struct loop_src src; /* the queue pair's poll descriptor */
	struct vsock_dev *d;
	struct vsock_conn *hnext;  /* hash chain; once dead, the device's dead list */
	struct vsock_conn *rnext;  /* on the device's ready list */
	bool ready;		   /* on that list */
	bool watched;		   /* src is in the loop */
	bool dead;		   /* freed, memory kept until no loop event can name it */
	uint32_t gport;		   /* the guest's port */
	uint32_t pcid, pport;	   /* the other end as the guest sees it */
	int type;		   /* SOCK_STREAM / SOCK_SEQPACKET */
	enum vsock_state state;
	struct qp *qp;
	unsigned owe;		   /* OWE_* */
	uint32_t shut_to_guest;	   /* SHUTDOWN flags said (or owed) to the guest */
	uint32_t shut_from_guest;  /* SHUTDOWN flags the guest said */
	bool wr_shut;		   /* its SEND side passed on to the queue pair */
	int64_t deadline_ns;	   /* CONNECTING / CLOSING give up after it */
	/* To the guest. */
	uint32_t tx_cnt;	   /* payload bytes sent */
	uint32_t peer_buf_alloc, peer_fwd_cnt; /* the guest's receive buffer, as it said */
	/* From the guest. */
	uint32_t rx_cnt;	   /* payload bytes received */
	uint32_t fwd_said;	   /* fwd_cnt in the last packet sent */
	/* SEQPACKET: a message being assembled from the guest, records for
	 * the queue pair that did not fit yet ([u32 len][payload]...), and a
	 * message being cut into packets for the guest. */
	uint8_t *in_msg;
	uint32_t in_len, in_cap;
	uint8_t *ovf;
	size_t ovf_len, ovf_cap;
	uint8_t *out_msg;
	uint32_t out_len, out_off;
	bool out_have;
	/* Offer from the fabric (VC_CONNECTING), or the VM-to-VM partner. */
	void (*done)(void *arg, int err);
	void *done_arg;
	struct vsock_conn *partner; /* VC_WAIT_PEER <-> VC_CONNECTING across two devices */
	void (*closed)(void *arg);  /* the fabric's, told when this connection is freed */
	void *closed_arg;
};

struct vsock_kick {
	struct loop_src src;
	struct vsock_dev *d;
	unsigned q;
};

/* RSTs owed for packets that have no connection (refused REQUESTs …). */
#define ORPHAN_MAX 64u
struct vsock_orphan {
	uint32_t gport, pcid, pport;
	uint16_t type;
};

struct vsock_dev {
	struct loop *loop;
	char name[64];
	uint32_t cid;
	const struct vsock_fabric *fab;
	struct loop_src usrc; /* the vhost-user socket */
	struct vhu_conn *vhu;
	struct vsock_kick kick[VSOCK_QUEUES];
	struct virtq vq[VSOCK_QUEUES];
	bool vq_on[VSOCK_QUEUES];
	struct loop_src timer; /* timerfd: connection deadlines */
	bool timer_armed;
	/* Connections, hashed by (gport, pcid, pport). */
	struct vsock_conn **hash;
	size_t nbuckets;
	struct vsock_conn *ready_head, *ready_tail;
	/*
	 * Freed connections whose memory waits: a loop round may still hold
	 * an event for one (its epoll entry is gone, the round's copy is
	 * not). The reaper (an eventfd) frees @dying and moves @dead there,
	 * so memory goes one whole round after the last event could name it.
	 */
	struct loop_src reap;
	bool reap_armed;
	struct vsock_conn *dead, *dying;
	struct vsock_orphan orphan[ORPHAN_MAX];
	unsigned n_orphan;
	bool reset_event; /* TRANSPORT_RESET owed on the event queue */
	/* Hybrid vsock (hybrid.c): the UNIX socket and its connections. */
	struct loop_src hyb;
	char hyb_path[108];
	uint32_t hyb_next;
	struct vsock_bridge *bridges;
	bool in_pump;
	/*
	 * The vhost-user server is on the stack (vhu_conn_process, a restore):
	 * dropping the frontend then would free it under its own feet, so
	 * dev_detach() only marks it (drop_pending) and the caller finishes.
	 */
	bool in_vhu, drop_pending;
	char why[160];
	struct vsock_stats st;
};

/* conn.c */
int vsock__table_init(struct vsock_dev *d);
/* Reset every connection (their memory waits for the reaper). */
void vsock__table_free(struct vsock_dev *d, int err);
/* vsock__table_free(), then free everything vsock__table_init() made. */
void vsock__table_fini(struct vsock_dev *d);
struct vsock_conn *vsock__find(struct vsock_dev *d, uint32_t gport, uint32_t pcid,
			       uint32_t pport);
struct vsock_conn *vsock__conn_new(struct vsock_dev *d, uint32_t gport, uint32_t pcid,
				   uint32_t pport, int type, struct qp *q);
void vsock__conn_free(struct vsock_conn *c, bool reset_peer);
int vsock__conn_watch(struct vsock_conn *c);
void vsock__from_guest(struct vsock_dev *d, const struct vsock_hdr *h,
		       const struct virtq_elem *e);
/* Whether @c has a packet for the guest now (then vsock__to_guest writes one). */
bool vsock__owes(struct vsock_conn *c);
/* @c owes nothing now: arm its queue pair for what it waits for. */
void vsock__idle(struct vsock_conn *c);
/*
 * Write the next packet @c owes the guest into @e: its length, 0 if none.
 * *@gone: @c was freed (it sent its RST).
 */
uint32_t vsock__to_guest(struct vsock_conn *c, const struct virtq_elem *e, bool *gone);
void vsock__expire(struct vsock_dev *d, int64_t now);

/* hybrid.c */
struct vsock_bridge;
int vsock__hybrid_out(struct vsock_dev *d, uint32_t port, struct qp **qp);
void vsock__hybrid_free(struct vsock_dev *d);

/* dev.c */
void vsock__ready(struct vsock_conn *c);
void vsock__orphan_rst(struct vsock_dev *d, const struct vsock_hdr *h);
void vsock__pump(struct vsock_dev *d);
void vsock__arm_timer(struct vsock_dev *d);
void vsock__hdr(const struct vsock_conn *c, struct vsock_hdr *h, uint16_t op);

#endif
