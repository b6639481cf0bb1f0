/* SPDX-License-Identifier: MIT */
/*
 * The VMCI connection broker: the daemon's side of every control
 * connection. It knows the contexts and their policy, owns the port
 * tables, brokers connect/accept by passing the connector's queue pair to
 * the listener, opens datagram rings to the router, and answers management
 * requests. It is never in a stream's data path.
 */
#ifndef VMFABRIC_VMCI_BROKER_H
#define VMFABRIC_VMCI_BROKER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

#include "common/loop.h"
#include "common/wire.h"
#include "ctx.h"
#include "dgram.h"
#include "port.h"
#include "rdma/device.h"
#include "switch/dp.h"
#include "vmfabric/qp.h"
#include "vsock/vsock.h"

enum conn_state {
	CONN_NEW,	/* no HELLO yet */
	CONN_READY,	/* acting as a context */
	CONN_BOUND,	/* owns a port */
	CONN_LISTENING, /* listener */
	CONN_CONNECTED, /* stream/seqpacket established (the connector's side) */
	CONN_DGRAM,	/* datagram socket with rings */
	CONN_VNIC,	/* a process vNIC's port, or a capture */
	CONN_RDMA,	/* a verbs context (broker_rdma.c) */
	CONN_RDMA_LISTEN, /* an RDMA connection manager's listener */
};

struct broker_mgmt_req;
struct vmci_pending;
struct rdma_client;
struct wire_msg;
struct rdma_cm_pend;
struct cmnet;

struct vmci_conn {
	struct loop_src src; /* fd: the control socket */
	struct vmci_broker *b;
	struct vmci_conn *prev, *next;
	uint64_t id;
	pid_t pid;
	uid_t uid;
	gid_t gid;
	uint32_t cid; /* the context it acts as (VMCI_CID_ANY before HELLO) */
	bool privileged;
	uint32_t type; /* SOCK_STREAM / SOCK_SEQPACKET / SOCK_DGRAM */
	enum conn_state state;
	bool bound; /* owns (space, cid, port) in the port table */
	uint32_t port;
	uint32_t peer_cid, peer_port;
	uint64_t qsize;
	/* Listener: the backlog and its shared counter (struct wire_backlog). */
	uint32_t backlog;
	struct wire_backlog *bl;
	int bl_fd;
	uint64_t channels; /* handed out, for listings */
	uint64_t buf_size, buf_min, buf_max;
	/* Dialer: its connection table (read-only) and the ports it leases. */
	const struct wire_dial_slot *table;
	uint32_t *leased;
	size_t nleased;
	/* Connected: the queue pair's headers, for byte counters; listener's address. */
	struct qp_watch watch;
	bool watching;
	/* Datagram */
	struct dgram_ep *ep;
	/* A connect to a VM waiting for the guest's answer (see vm_connect). */
	struct vmci_pending *pend;
	/* A process vNIC: its port on a switch, as long as this connection. */
	struct vnic_port *vnic;
	/* A capture of a port, as long as this connection. */
	struct vsw_capture *capture;
	/* A verbs context: its MRs and QPs, as long as this connection. */
	struct rdma_client *rdma;
	/* What it holds of its context's quotas (broker__charge): given back at close. */
	uint64_t charged[VMCI_LIM_N];
};

/* The RDMA device's objects across connections (broker_rdma.c). */
struct broker_rdma {
	struct rdma_qp_rec **qps; /* by QP number - WIRE_RDMA_QPN_BASE */
	uint32_t nqps, next_qpn;
	struct rdma_cm_pend *pend; /* connection requests not answered yet */
	uint64_t next_req;
	struct cmnet *net;	/* the connection manager between hosts (rdma_cm_net.c) */
	uint32_t next_port;	/* the RDMA port space's ephemeral cursor */
	uint64_t mrs, qps_live; /* for listings */
	struct rdma_rts_wait *rts_wait; /* RTS waiting for a neighbour's MAC (broker_rdma.c) */
	struct loop_src rts_timer;	/* retries them (made when first needed: fn set) */
};

struct vmci_broker {
	struct loop *loop;
	struct vmci_reg reg;
	struct vmci_ports ports;
	struct dgram_router router;
	struct vmci_conn *conns; /* every control connection */
	uint64_t next_id;
	size_t nconns;
	struct loop_src listen; /* the daemon's socket */
	char path[108];
	const char *config_name;
	int64_t started_ns;
	struct vsock_fabric fabric; /* how VMs' devices reach listeners and each other */
	struct vsw_dp dp;	    /* the virtual switches and their dataplane */
	struct broker_rdma rdma;    /* verbs objects and connection requests */
	struct rdma_devs rdma_devs; /* the RDMA devices (rdma/device.h): loaded by the daemon */
	bool dp_loaded;		    /* dp configured by vsw_dp_load(), else the default */
	/* The daemon's other management commands (vm.*): -EOPNOTSUPP if unknown. */
	int (*mgmt_ext)(void *ctx, const struct broker_mgmt_req *r, json_t **out);
	void *mgmt_ctx;
	/* The daemon's own fields of system.status (the fd keeper's). Optional. */
	void (*status_ext)(struct vmci_broker *b, json_t *status);
};

/*
 * Listen on @path (creating its directory, refusing if a daemon answers
 * there already) and start the datagram router. The registry must be
 * loaded. Returns 0 or -errno (with a log line saying why).
 */
int broker_start(struct vmci_broker *b, struct loop *loop, const char *path);
/* The same on a listening socket inherited from the daemon before an exec. */
int broker_start_fd(struct vmci_broker *b, struct loop *loop, const char *path, int fd);
void broker_stop(struct vmci_broker *b);

/*
 * Seams for the fuzz target and tests: set up everything but the listening
 * socket, and take a connected control socket as if accepted.
 */
int broker__init(struct vmci_broker *b, struct loop *loop);
void broker__fini(struct vmci_broker *b);
struct vmci_conn *broker__adopt(struct vmci_broker *b, int fd, pid_t pid, uid_t uid, gid_t gid);

/*
 * Internals shared by the broker's files. broker__reply() answers @req on
 * @c (descriptors only with status 0); the rdma handlers return as the
 * others do: 0 when replied, -errno to reply that error, WIRE_FATAL.
 */
#define WIRE_FATAL (-10000)
int broker__reply(struct vmci_conn *c, const struct wire_hdr *req, int status, const void *body,
		  const int *fds, int nfds);
/*
 * Take @n of limit @l from @c's context for @c (0, or the quota's -errno,
 * logged and counted); broker__uncharge() gives some back before close.
 */
int broker__charge(struct vmci_conn *c, enum vmci_limit l, uint64_t n);
void broker__uncharge(struct vmci_conn *c, enum vmci_limit l, uint64_t n);
int broker__rdma_msg(struct vmci_conn *c, struct wire_msg *m);
void broker__rdma_close(struct vmci_conn *c);
void broker__rdma_fini(struct vmci_broker *b);
/* rdma.stats: verbs objects, and the RoCE v2 engine's frames and RC counters. */
json_t *broker__rdma_stats(struct vmci_broker *b);

/* A management request as the broker received it. */
struct broker_mgmt_req {
	const char *cmd, *arg;
	int fd;	  /* MGMT_FD's descriptor (the caller's), or -1 */
	uid_t uid; /* of the requesting process */
};

/*
 * Management: JSON text for @r (malloc'd, NUL-terminated) or -errno.
 * Commands the broker does not know go to b->mgmt_ext when set.
 */
int broker_mgmt(struct vmci_broker *b, const struct broker_mgmt_req *r, char **json);

#endif
