/* SPDX-License-Identifier: MIT */
/*
 * The control protocol between libvmfabric and vmfabricd. One SOCK_SEQPACKET
 * connection per listening, bound or datagram socket (so that the kernel
 * routes a listener's messages and a socket's replies to that socket's
 * descriptor, and the daemon sees a process die the moment its connections
 * close), and one per dialer (see "Direct connections" below), which also
 * carries channels' messages between processes: DIAL and REDIAL.
 * Every message is one datagram: struct wire_hdr, then a fixed-size body
 * for its type; descriptors travel with SCM_RIGHTS. Replies carry the
 * request's seq and a status (0 or -errno).
 *
 * Threat model: both ends treat every field as untrusted. A message whose
 * length is not exactly its type's body size, whose type is unknown, or
 * which carries the wrong number of descriptors is refused (and, from a
 * client, ends that connection). Strings are fixed arrays, NUL-terminated
 * by the receiver before use.
 */
#ifndef VMFABRIC_WIRE_H
#define VMFABRIC_WIRE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WIRE_VERSION 1u
#define WIRE_MAX_FDS 5
#define WIRE_NAME 64

struct wire_hdr {
	uint16_t type;	 /* WIRE_* */
	uint16_t flags;	 /* WIRE_F_* */
	uint32_t len;	 /* body bytes after this header */
	uint32_t seq;	 /* request sequence; echoed in the reply */
	int32_t status;	 /* replies: 0 or -errno */
};
_Static_assert(sizeof(struct wire_hdr) == 16, "wire_hdr layout");

#define WIRE_F_REPLY 0x1u

/*
 * X(name, number, body struct, fds in request, fds in reply)
 * The table the daemon's dispatcher and the size checks are built from.
 */
#define WIRE_MESSAGES(X)                                               \
	X(HELLO, 1, wire_hello, 0, 0)          /* act as a context */    \
	X(BIND, 2, wire_bind, 0, 0)            /* claim a port */        \
	X(LISTEN, 3, wire_listen, 0, 1)        /* accept connections */  \
	X(CONNECT, 4, wire_connect, 4, 0)      /* with the queue pair */ \
	X(INCOMING, 5, wire_incoming, 4, 0)    /* daemon -> listener */  \
	/* 6 was ACCEPTED: the backlog is a shared counter now */        \
	X(DGRAM_OPEN, 7, wire_bind, 0, 4)      /* datagram rings */      \
	X(MGMT, 8, wire_mgmt, 0, 1)            /* management request */ \
	X(CHECK, 9, wire_check, 0, 0)          /* may I send to this CID? */ \
	X(MGMT_FD, 10, wire_mgmt, 1, 1)        /* management, with a file */ \
	X(DIALER, 11, wire_dialer, 1, 0)       /* connect directly from now on */ \
	X(CHANNEL, 12, wire_channel, 0, 2)     /* a channel to a listener */ \
	X(CHANNEL_NEW, 13, wire_channel_new, 1, 0) /* daemon -> listener */ \
	X(LEASE, 14, wire_lease, 0, 0)         /* ephemeral ports, in bulk */ \
	X(DIAL, 15, wire_dial, 4, 0)           /* dialer -> listener, on a channel */ \
	X(REDIAL, 16, wire_redial, 0, 0)       /* the same, on a queue pair reused */ \
	X(VNIC_OPEN, 17, wire_vnic, 0, 4)      /* a port on a virtual switch */ \
	X(CAPTURE_OPEN, 18, wire_capture, 0, 4) /* a copy of a port's frames */ \
	X(RDMA_OPEN, 19, wire_rdma_open, 1, 0) /* a verbs context, with its key page */ \
	X(RDMA_MR_REG, 20, wire_rdma_mr, -4, 0) /* with 1 to 4 segments */ \
	X(RDMA_MR_DEREG, 21, wire_rdma_mr, 0, 0) \
	X(RDMA_MR_MAP, 22, wire_rdma_map, 0, 1) /* a peer's MR segment */ \
	X(RDMA_QP_CREATE, 23, wire_rdma_qp, 0, 0) \
	X(RDMA_QP_DESTROY, 24, wire_rdma_qp, 0, 0) \
	X(RDMA_QP_RTR, 25, wire_rdma_qp, 4, 0) /* with its inbound ring */ \
	X(RDMA_QP_ATTACH, 26, wire_rdma_qp, 0, 5) /* the peer's ring and key page */ \
	X(RDMA_QP_RESET, 27, wire_rdma_qp, 0, 0) \
	X(RDMA_CM_LISTEN, 28, wire_bind, 0, 0) \
	X(RDMA_CM_CONNECT, 29, wire_rdma_cm, 0, 0) /* answered when accepted */ \
	X(RDMA_CM_REQ, 30, wire_rdma_cm, 0, 0) /* daemon -> listener */ \
	X(RDMA_CM_ACCEPT, 31, wire_rdma_cm, 0, 0) \
	X(RDMA_CM_REJECT, 32, wire_rdma_cm, 0, 0) \
	X(RDMA_DEVICES, 33, wire_rdma_devices, 0, 0) /* the device names */ \
	X(RDMA_QP_RTS, 34, wire_rdma_qp, 0, 0) /* a RoCE QP's RTS: the engine takes it */

enum wire_type {
#define WIRE_ENUM(n, v, s, fq, fr) WIRE_##n = v,
	WIRE_MESSAGES(WIRE_ENUM)
#undef WIRE_ENUM
	WIRE_TYPE_MAX
};

/* HELLO: which context this connection acts as. */
struct wire_hello {
	uint32_t version;	 /* WIRE_VERSION */
	uint32_t cid;		 /* wanted CID, or VMADDR_CID_ANY: by name, else host */
	char name[WIRE_NAME];	 /* context name, or "" */
	uint32_t sock_type;	 /* SOCK_STREAM / SOCK_DGRAM / SOCK_SEQPACKET */
	uint32_t pad;
	/* reply */
	uint32_t out_cid;	 /* the context granted */
	uint32_t out_flags;	 /* WIRE_CTX_* */
};
#define WIRE_CTX_PRIVILEGED 0x1u /* may bind ports below 1024 */

/* BIND / DGRAM_OPEN: claim (type, port) in the context's port space. */
struct wire_bind {
	uint32_t port;	   /* VMADDR_PORT_ANY: an ephemeral port */
	uint32_t out_port; /* reply: the port bound */
	uint64_t ring;	   /* DGRAM_OPEN: ring bytes per direction; reply: granted */
};

struct wire_listen {
	uint32_t backlog;
	uint32_t pad;
	uint64_t buf_size, buf_min, buf_max; /* SO_VM_SOCKETS_BUFFER_* */
};

/*
 * CONNECT carries side 1 of a queue pair the connector made (memfd, wake,
 * peer_wake, alive). The daemon checks policy, the listener and its backlog
 * and the size against the listener's [min, max], forwards the descriptors
 * as INCOMING, and replies. A size outside the listener's range is refused with -EMSGSIZE
 * and the size the listener wants in out_size; the connector retries once.
 */
struct wire_connect {
	uint32_t dst_cid;
	uint32_t dst_port;
	uint64_t size; /* queue bytes per direction */
	/* reply */
	uint32_t out_port;  /* local port (ephemeral when unbound) */
	uint32_t out_cid;   /* local CID */
	uint64_t out_size;  /* with -EMSGSIZE: the size to use */
	uint64_t out_conn;  /* connection id, for the CLI */
};

/*
 * INCOMING: daemon -> listener, with the queue pair's side 1 descriptors.
 * The accepted socket needs no control connection of its own; the daemon
 * follows the connection through the connector's.
 */
struct wire_incoming {
	uint64_t conn;
	uint32_t src_cid, src_port;
	uint32_t dst_cid, dst_port;
	uint64_t size;
};

/*
 * The backlog of a listener is a counter in a page the daemon makes at
 * LISTEN (the reply's descriptor, a sealed memfd) and hands to everyone who
 * may connect: a connector takes a place (compare-and-swap below the
 * backlog) before passing a connection, the listener gives it back when
 * accept() takes one. Only that listener's connectors and the listener can
 * touch it: a process that lies about it refuses or admits connections to
 * that one listener, which it could do by connecting anyway.
 */
struct wire_backlog {
	_Atomic uint32_t pending;
	uint32_t pad[15];
};
#define WIRE_BACKLOG_BYTES 4096u

/* Take a place below @max (false: the backlog is full), or give one back. */
static inline bool
wire_backlog_take(struct wire_backlog *bl, uint32_t max)
{
	uint32_t n = atomic_load_explicit(&bl->pending, memory_order_relaxed);

	do
		if (n >= max)
			return false;
	while (!atomic_compare_exchange_weak(&bl->pending, &n, n + 1));
	return true;
}

static inline void
wire_backlog_give(struct wire_backlog *bl)
{
	uint32_t n = atomic_load_explicit(&bl->pending, memory_order_relaxed);

	while (n && !atomic_compare_exchange_weak(&bl->pending, &n, n - 1))
		;
}

/*
 * Direct connections. A process that connects from unbound sockets opens
 * one control connection for all of them (a "dialer"), and the daemon,
 * once per (listener, dialer), checks the policy and gives both ends a
 * channel: a SOCK_SEQPACKET socketpair. Each connection is then one DIAL
 * on the channel, from the connecting process to the listening one, with
 * the queue pair's side-1 descriptors: no daemon in the way, as TCP's
 * handshake needs no process in the middle. Ports come leased in bulk.
 * The listener closes its channels when it stops listening or loses the
 * daemon (a daemon restarted with another policy is asked again).
 *
 * DIALER: the first message after HELLO on a dialer's connection; its
 * descriptor is the dialer's connection table (a sealed memfd of
 * WIRE_DIAL_SLOTS slots) which the daemon maps read-only for listings.
 */
struct wire_dialer {
	uint32_t slots; /* WIRE_DIAL_SLOTS */
	uint32_t pad;
};

struct wire_dial_slot {
	_Atomic uint32_t state; /* 0: free; 1: a connection */
	uint32_t type;		/* SOCK_STREAM / SOCK_SEQPACKET */
	uint32_t port;		/* local port */
	uint32_t peer_cid, peer_port;
	uint32_t pad;
	uint64_t size;		/* queue bytes per direction */
	_Atomic uint64_t tx_bytes, rx_bytes;
	uint64_t pad2[2];
};
_Static_assert(sizeof(struct wire_dial_slot) == 64, "wire_dial_slot layout");
#define WIRE_DIAL_SLOTS 4096u

/* CHANNEL: a channel to the listener on dst_cid:dst_port for @type. */
struct wire_channel {
	uint32_t dst_cid, dst_port;
	uint32_t type;
	uint32_t pad;
	/* reply (descriptors: the channel, the listener's backlog page) */
	uint32_t out_cid;     /* the dialer's context: the source of its connections */
	uint32_t out_backlog;
	uint64_t buf_size, buf_min, buf_max; /* the listener's, for the queue size */
};

/* CHANNEL_NEW: daemon -> listener, with its end of a new channel. */
struct wire_channel_new {
	uint32_t src_cid;     /* every DIAL on it comes from this context */
	uint32_t flags;	      /* WIRE_CTX_PRIVILEGED: may use ports below 1024 */
};

#define WIRE_LEASE_MAX 64u
/* LEASE: up to WIRE_LEASE_MAX ephemeral ports, owned by the dialer's connection. */
struct wire_lease {
	uint32_t count;
	uint32_t out_count;
	uint32_t out_ports[WIRE_LEASE_MAX];
};

/* DIAL: on a channel, with the queue pair's side-1 descriptors. */
struct wire_dial {
	uint32_t src_port; /* one of the dialer's leased ports */
	uint32_t id;	   /* the queue pair's number on this channel, for REDIAL */
	uint64_t size;	   /* queue bytes per direction */
};

/*
 * REDIAL: a new connection on queue pair @id of this channel, which both
 * ends parked when their last connection on it closed (qp_park() in qp.h):
 * no descriptors, no mapping, no page to fault in. The listener checks the
 * renewal against its own end (qp_follow()).
 */
struct wire_redial {
	uint32_t src_port;
	uint32_t id;
	uint32_t gen;
	uint32_t pad;
	uint64_t start[2];
};

/*
 * MGMT: a management request (the CLI); the reply's descriptor is a sealed
 * memfd holding the JSON answer, so that a listing of any size fits.
 */
struct wire_mgmt {
	char cmd[64];	  /* e.g. "vmci.context.list" */
	char arg[192];	  /* command argument, or "" */
	uint64_t out_len; /* reply: bytes of JSON in the memfd */
};

/* CHECK: policy for datagrams to @cid, answered 0 or -EACCES / -EHOSTUNREACH. */
struct wire_check {
	uint32_t cid;
	uint32_t pad;
};

/*
 * VNIC_OPEN: a process vNIC on a port group of a virtual switch. The reply
 * carries side 1 of a queue pair whose records are frames (the process
 * writes queue 1, reads queue 0). The port lives as long as this control
 * connection.
 */
struct wire_vnic {
	char portgroup[32];
	uint8_t mac[6];	 /* all zero: the daemon makes one up */
	uint16_t pad;
	uint32_t ring;	 /* bytes per direction (0: 1 MiB) */
	uint32_t out_pad;
	char out_name[32]; /* the port's name, e.g. "vnic3" */
	uint8_t out_mac[6];
	uint16_t out_pad2;
};

/*
 * CAPTURE_OPEN (root): a copy of every frame port @port sends and gets,
 * as records of struct wire_captured then the frame, on a queue pair the
 * caller reads (queue 0). Frames that find the ring full are not copied and
 * are counted in the header of the next one. Ends when the connection does,
 * or (EOF) when the port goes.
 */
struct wire_capture {
	char port[32];
	uint32_t snaplen; /* 0: whole frames */
	uint32_t pad;
};

struct wire_captured {
	uint64_t ts_ns;	 /* CLOCK_REALTIME */
	uint32_t len;	 /* the frame's length (the record may hold less: snaplen) */
	uint16_t to_port; /* 1: the switch gave it to the port; 0: the port sent it */
	uint16_t pad;
	uint64_t missed; /* frames not copied so far: the ring was full */
};
_Static_assert(sizeof(struct wire_captured) == 24, "wire_captured layout");

/*
 * RDMA verbs (include/vmfabric/vrdma.h, docs/RDMA.md). A process opens a
 * device on a control connection of its own (RDMA_OPEN, with its key page:
 * a sealed memfd of struct wire_rdma_page that peers map read-only); its
 * MRs, QPs and their connections live as long as that connection. Memory
 * regions are registered with the segments (sealed memfds) that hold
 * them; the daemon hands a segment to a peer only for a QP connected to a
 * QP of the MR's protection domain, and read-only unless the MR allows
 * remote writes or atomics.
 */
struct wire_rdma_open {
	char dev[32];
	/* reply */
	uint32_t out_cid;
	uint32_t out_mtu;
	char out_uplink[32], out_vmknic[32];
};

#define WIRE_RDMA_DEVS 8
struct wire_rdma_devices {
	uint32_t out_count; /* may exceed WIRE_RDMA_DEVS: the first ones are named */
	uint32_t pad;
	char out_names[WIRE_RDMA_DEVS][32];
};

#define WIRE_RDMA_SEGS 4

/* RDMA_MR_REG / RDMA_MR_DEREG (rkey only). */
struct wire_rdma_mr {
	uint32_t pd;
	uint32_t access; /* VRDMA_ACCESS_* */
	uint64_t va, len;
	uint32_t nseg; /* the descriptors, in address order */
	uint32_t pad;
	uint64_t seg_va[WIRE_RDMA_SEGS], seg_len[WIRE_RDMA_SEGS];
	/* reply; RDMA_MR_DEREG: the MR */
	uint32_t out_rkey; /* lkey == rkey */
	uint32_t pad2;
};

/* RDMA_MR_MAP: segment @piece of the MR @rkey of the QP @qpn is connected to. */
struct wire_rdma_map {
	uint32_t qpn, rkey, piece;
	uint32_t pad;
	/* reply (descriptor: the segment, read-only unless writes are allowed) */
	uint64_t out_va, out_len; /* the MR */
	uint32_t out_access, out_nseg;
	uint64_t out_seg_va, out_seg_len;
};

/*
 * QPs. CREATE: a QP number for PD @pd. RTR: connected to (@dest_cid,
 * @dest_qpn), with side 1 of the QP's inbound ring (its owner consumes
 * queue 1). ATTACH: once the peer QP is RTR towards this one, its inbound
 * ring (side 1: this QP produces queue 1) and its owner's key page, handed
 * out once. RESET: back to unconnected. @slot: the QP's slot in its
 * owner's key page.
 */
struct wire_rdma_qp {
	uint32_t qpn, pd;
	uint32_t dest_cid, dest_qpn;
	uint32_t slot;
	uint32_t out_slot; /* ATTACH: the peer QP's slot in its key page */
	/* reply */
	uint32_t out_qpn;
	uint32_t pad;
	/*
	 * RTR and RTS of a QP whose peer is on another host (@global): the
	 * queue pair of RTR carries its work requests to the daemon's RoCE
	 * engine (rdma/engine.h) and its completions back; RTS starts it.
	 */
	uint8_t global;
	uint8_t timeout, retry_cnt, rnr_retry, min_rnr_timer, max_rd_atomic, max_dest_rd_atomic;
	uint8_t pad2;
	uint8_t dgid[16]; /* the peer's IPv6 address or ::ffff:a.b.c.d */
	uint32_t mtu, rq_psn, sq_psn, access;
	uint32_t sq_depth, rq_depth;
};

#define WIRE_RDMA_PRIV 56

/*
 * Connection manager. CONNECT (on the QP's context connection): to the
 * listener on @cid:@port, from QP @qpn; the reply comes when the listener
 * accepts (0, with its side) or rejects (-ECONNREFUSED). REQ: the daemon
 * gives the listener @id and the connector's side. ACCEPT / REJECT (on the
 * listener's connection): @id, and for ACCEPT the accepting QP.
 *
 * Between hosts (@family AF_INET or AF_INET6; vmci/rdma_cm_net.c): CONNECT
 * names the peer host's IP in @addr and the listener's port (in the peer's
 * host context) in @port, and is answered within @timeout_ms; REQ gives
 * the listener the requester's IP; the reply, the acceptor's. @mtu is the
 * path MTU both devices allow (REQ, reply). ACCEPT and REJECT of such a
 * request carry its @family. IPv4 addresses are the first 4 bytes.
 */
struct wire_rdma_cm {
	uint64_t id;
	uint32_t cid, port; /* CONNECT: the listener; REQ / reply: the other side's CID */
	uint32_t qpn, psn;
	uint8_t resp_res, init_depth, rnr_retry, priv_len;
	uint32_t pad;
	uint8_t priv[WIRE_RDMA_PRIV];
	uint8_t family; /* 0: @cid on this host */
	uint8_t pad2;
	uint16_t mtu; /* bytes */
	uint32_t timeout_ms;
	uint8_t addr[16];
};
_Static_assert(sizeof(struct wire_rdma_cm) == 112, "wire_rdma_cm layout");

/*
 * The key page of a verbs context: the rkeys now valid (index = rkey >> 8;
 * 0: none), and one slot per QP with what a peer needs to know before it
 * sends: how many receives were posted and their sizes, the QP's state.
 * Written by its owner only; peers map it read-only and believe it only
 * about the owner's own QPs.
 */
#define WIRE_RDMA_KEYS	    16384u
#define WIRE_RDMA_QP_SLOTS  1024u
#define WIRE_RDMA_RECV_RING 1008u
struct wire_rdma_slot {
	_Atomic uint64_t recv_posted; /* receives ever posted */
	_Atomic uint32_t err;	      /* the QP is in ERR */
	uint32_t min_rnr_timer;	      /* IBA RNR timer code */
	_Atomic uint32_t qp_access;   /* VRDMA_ACCESS_REMOTE_*: what peers may do through it */
	_Atomic uint32_t gen;	      /* a new connection each time the QP is reset: a peer
				       * attached to an older one is no longer answered */
	uint32_t pad[10];
	uint32_t recv_len[WIRE_RDMA_RECV_RING]; /* [n % RING]: the n-th receive's bytes */
};
_Static_assert(sizeof(struct wire_rdma_slot) == 4096, "wire_rdma_slot layout");
struct wire_rdma_page {
	uint32_t magic, version;
	uint32_t pad[1022];
	_Atomic uint32_t keys[WIRE_RDMA_KEYS];
	struct wire_rdma_slot slots[WIRE_RDMA_QP_SLOTS];
};
#define WIRE_RDMA_MAGIC 0x766b6579u /* "vkey" */

/* Datagram records on the rings of DGRAM_OPEN (qp records, see qp.h). */
struct wire_dgram {
	uint32_t cid;	/* outbound: destination; inbound: true source (stamped) */
	uint32_t port;	/* outbound: destination; inbound: source */
};
_Static_assert(sizeof(struct wire_dgram) == 8, "wire_dgram layout");

#define WIRE_DGRAM_MAX 65536u /* payload bytes */

/* Body size of a message type, or 0 for an unknown type. */
size_t wire_body_size(unsigned type);
/* Descriptors a request / reply of this type carries. */
int wire_fds(unsigned type, int reply);
const char *wire_name(unsigned type);

#endif
