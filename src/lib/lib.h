/* SPDX-License-Identifier: MIT */
/*
 * libvmfabric internals: the socket structure behind each descriptor, the
 * descriptor table, and the control connection to the daemon (ctl.c).
 */
#ifndef VMFABRIC_LIB_H
#define VMFABRIC_LIB_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/wire_io.h"
#include "vmfabric/qp.h"
#include "vmfabric/vmci.h"

enum vsk_state {
	VSK_NEW,
	VSK_BOUND,	/* stream/seqpacket: port claimed */
	VSK_LISTEN,
	VSK_CONNECTING, /* non-blocking connect sent, reply not read */
	VSK_CONNECTED,
	VSK_DGRAM,	/* datagram rings open */
};

struct vsk {
	int fd;	  /* the application's descriptor: an epoll set */
	int type; /* SOCK_STREAM / SOCK_DGRAM / SOCK_SEQPACKET */
	bool nonblock;
	enum vsk_state state;
	pthread_mutex_t lock; /* state changes (connect, accept, reconnects) */
	/* Control connection */
	int ctrl;	   /* -1: none yet, or lost */
	uint32_t want_cid; /* the context to act as, fixed when the socket is made */
	char want_name[WIRE_NAME];
	uint32_t seq;	   /* last request sent */
	bool hello_pending;
	uint32_t cid;	   /* context, from HELLO's reply */
	bool privileged;
	/* Addresses */
	uint32_t port;	   /* local port (VMADDR_PORT_ANY: unbound) */
	uint32_t peer_cid, peer_port;
	bool has_peer;	   /* connected (streams) or default destination (datagrams) */
	/* Data */
	struct qp *qp;
	struct qp *pending_qp; /* connect in flight */
	struct wire_connect connect; /* its request, then its answer */
	bool connect_retried;	/* with the listener's queue size */
	int so_error;
	/* Options */
	uint64_t buf_size, buf_min, buf_max;
	int64_t connect_timeout_ns, rcvtimeo_ns, sndtimeo_ns;
	int busy_poll_us; /* SO_BUSY_POLL: spin this long before sleeping; -1: default */
	int backlog;
	/* A direct connection (dial.c): its dialer, lease epoch and table slot. */
	uint64_t dial_id, dial_epoch;
	struct wire_dial_slot *slot;
	/* Either end of one: where its queue pair is parked when it closes. */
	uint64_t park_serial;
	uint32_t park_id;
	/* Listener: its backlog counter and the channels dialers reach it by. */
	struct wire_backlog *bl;
	struct lchan *chans;
	size_t nchans;
	/* Datagrams: CIDs the daemon said we may send to. */
	uint32_t allowed[8];
	unsigned nallowed;
	int64_t alive_ns; /* when the daemon's end of the rings was last seen alive */
};

/* A listener's end of a channel (see wire.h). */
struct lchan {
	int fd;
	uint64_t serial;  /* its parked queue pairs (dial.c) */
	uint32_t src_cid; /* the dialer's context */
	bool privileged;  /* its ports below 1024 are real */
};

/*
 * Direct connections (dial.c). dial_connect() connects @v, unbound, and
 * returns its queue pair; -EREMOTE: the destination is a VM, which only
 * the daemon can ask (CONNECT). dial_release() gives back its port and slot.
 */
int dial_connect(struct vsk *v, const struct sockaddr_vm *a, struct qp **out);
void dial_release(struct vsk *v);
/* Parked queue pairs of channels (dial.c); serials number channels. */
uint64_t lib_serial(void);
void pool_park(uint64_t serial, uint32_t id, struct qp *q);
struct qp *pool_take(uint64_t serial, uint32_t id);
void pool_purge(uint64_t serial);
uint64_t lib_pool_reuses(void); /* connections made on a parked queue pair (tests) */

/* Descriptor table */
int lib_table_put(struct vsk *v);
struct vsk *lib_table_get(int fd);
void lib_table_del(int fd);

/*
 * A daemon killed without closing its end of a queue pair (SIGKILL) leaves
 * a sender writing into a ring nobody reads until it fills: senders to the
 * daemon (datagrams, vNICs) look at its liveness every LIB_ALIVE_NS (one
 * poll(); a clock read otherwise). True when it is gone; *@alive_ns is
 * when it was last looked at.
 */
#define LIB_ALIVE_NS 20000000ll
bool lib_daemon_gone(struct qp *qp, int64_t *alive_ns);

/* Control connection (ctl.c) */
int ctl_open(struct vsk *v);
void ctl_drop(struct vsk *v);
/*
 * Send a request and wait for its reply (the HELLO reply first, if one is
 * outstanding). @timeout_ns < 0: the default (5 s). The reply's descriptors
 * are returned in @rep; its body is copied back into @body.
 */
int ctl_rpc(struct vsk *v, unsigned type, void *body, const int *fds, int nfds,
	    struct wire_msg *rep, int64_t timeout_ns);
/* Send without waiting (ACCEPTED). */
int ctl_send(struct vsk *v, unsigned type, const void *body, const int *fds, int nfds);
/* Read the reply to an outstanding request without blocking: -EAGAIN if none yet. */
int ctl_poll_reply(struct vsk *v, void *body, struct wire_msg *rep);
/* The context the process acts as now (environment or vmci_set_context()). */
void lib_identity(uint32_t *cid, char name[WIRE_NAME]);
const char *lib_daemon_path(void);

#endif
