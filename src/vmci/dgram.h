/* SPDX-License-Identifier: MIT */
/*
 * The datagram router: a dataplane thread that moves VMCI datagrams between
 * sockets. Each datagram socket has a queue pair with the daemon (its
 * outbound and inbound rings); the thread drains every outbound ring in
 * batches, stamps each datagram with the sender's true CID and port, checks
 * policy, and copies it into the destination's inbound ring. When that ring
 * is full the datagram waits a little (the sender's ring then fills and a
 * blocking sender waits), then is dropped and counted: receive queues stay
 * bounded and a dead receiver never stalls a sender for long. The control plane never blocks it: it
 * posts add/remove commands, which the thread applies between batches.
 */
#ifndef VMFABRIC_VMCI_DGRAM_H
#define VMFABRIC_VMCI_DGRAM_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/cmdq.h"
#include "common/wire.h"
#include "ctx.h"

struct qp;

/* One datagram socket, as the router sees it. */
struct dgram_ep {
	struct qp *qp;	     /* daemon's side: rx = socket's outbound, tx = inbound */
	uint32_t cid, port;  /* the socket's address (stamped as the source) */
	struct vmci_ctx pol; /* policy copy of the socket's context */
	/* Counters: written by the dataplane thread, read by anyone. */
	_Atomic uint64_t tx_msgs, rx_msgs, tx_bytes, rx_bytes;
	_Atomic uint64_t rx_drops;    /* arrived while the inbound ring was full */
	_Atomic uint64_t tx_refused;  /* policy said no */
	_Atomic uint64_t tx_no_port;  /* nobody bound at the destination */
	/* Dataplane-private from here. */
	struct dgram_ep *hnext;
	bool dead; /* the socket's ring broke or it went away */
	/*
	 * A datagram whose destination's ring was full: held (and this
	 * socket's ring left alone, so its sender feels the backpressure) for
	 * up to DGRAM_HOLD_NS, then dropped and counted.
	 */
	uint8_t *held;
	size_t held_len;
	struct wire_dgram held_to;
	int64_t held_since;
	bool holding;
	/*
	 * Sockets holding a datagram for this one. While there are, new
	 * datagrams for it are held too, behind them: the room its reader
	 * frees goes one datagram per sender per round, so that a flood cannot
	 * take it all from a sender that sends a little.
	 */
	uint32_t waiters;
};

struct dgram_router {
	pthread_t thread;
	struct cmdq cmds;	/* from the control plane */
	bool stop;
	/* Dataplane thread only: */
	int ep;
	struct dgram_ep **all;
	size_t n, cap;
	struct dgram_ep **hash;
	size_t nhash;
	/* Totals, readable by anyone. */
	_Atomic uint64_t forwarded, drops, endpoints;
};

int dgram_start(struct dgram_router *d);
void dgram_stop(struct dgram_router *d);
/*
 * Hand @e (fully set up) to the router and wait until it took it, so that
 * datagrams sent to it from then on find it. Returns 0, or -ENOMEM /
 * -EADDRINUSE with @e still the caller's to free.
 */
int dgram_add(struct dgram_router *d, struct dgram_ep *e);
/* Take @e out; the router closes its queue pair and frees it. */
void dgram_remove(struct dgram_router *d, struct dgram_ep *e);

#endif
