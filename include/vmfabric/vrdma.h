/* SPDX-License-Identifier: MIT */
/*
 * libvmfabric RDMA verbs: vmfabricd's RDMA devices (vmrdma0, ...) for host
 * processes, shaped after libibverbs so that an RDMA programmer finds the
 * objects, attributes, state machine, work requests and completion
 * statuses where ibv_* has them: open a device, allocate a protection
 * domain, register memory (lkey for local use, rkey for peers), create
 * completion queues and reliable-connected queue pairs, move them RESET ->
 * INIT -> RTR -> RTS, post work requests, poll completions.
 *
 *   struct vrdma_context *ctx;  struct vrdma_pd *pd;  struct vrdma_mr *mr;
 *   vrdma_open_device("vmrdma0", &ctx);
 *   vrdma_alloc_pd(ctx, &pd);
 *   vrdma_reg_mr(pd, buf, len, VRDMA_ACCESS_LOCAL_WRITE | VRDMA_ACCESS_REMOTE_WRITE, &mr);
 *   ... vrdma_create_cq(), vrdma_create_qp(), then vrdma_connect() (or
 *   vrdma_connect_addr() to another host) or vrdma_listen() and
 *   vrdma_accept() (the connection manager below) to reach RTS ...
 *   vrdma_post_send(qp, &wr, &bad);  vrdma_poll_cq(cq, 1, &wc);
 *
 * Differences from libibverbs, on purpose: calls return 0 / a count or a
 * negative errno (never NULL or -1 with errno set; objects come back
 * through out parameters); handles are incomplete types except the fields
 * an RDMA program reads directly (struct vrdma_mr's addr, length, lkey,
 * rkey); only the RC service.
 *
 * Between hosts, the daemon carries a QP as RoCE v2 over the VMkernel
 * adapter its device is bound to (docs/RDMA.md).
 *
 * On one host (both peers' processes on this daemon) one-sided operations
 * are executed by the initiator's library on the target's registered memory,
 * shared with it by the daemon after checking the QP connection, the
 * protection domain and the access flags: the target application does
 * nothing. Registration makes the registered pages shared (the range is
 * remapped onto a sealed memfd, contents kept); deregistration makes them
 * private again, so that once vrdma_dereg_mr() returns no peer can reach
 * them, whatever it kept mapped. See docs/RDMA.md for the rules.
 *
 * Threading: every call may be made from any thread; a QP's send side, a
 * QP's receive side and a CQ each have a lock of their own.
 */
#ifndef VMFABRIC_VRDMA_H
#define VMFABRIC_VRDMA_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

struct vrdma_context;
struct vrdma_pd;
struct vrdma_cq;
struct vrdma_qp;
struct vrdma_comp_channel;

#define VRDMA_DEVNAME_MAX 32

/* ---------------------------------------------------------------------- */
/* Devices */

struct vrdma_device_attr {
	char name[VRDMA_DEVNAME_MAX];	/* "vmrdma0" */
	char uplink[32];		/* the paired uplink ("vmnic1"), or "" */
	char vmknic[32];		/* the VMkernel adapter it is bound to, or "" */
	uint64_t max_mr_size;
	uint32_t max_qp, max_qp_wr, max_sge, max_cq, max_cqe, max_mr, max_pd;
	uint32_t max_qp_rd_atom, max_qp_init_rd_atom, max_inline_data;
	unsigned active_mtu; /* bytes: 256 .. 4096 */
	uint32_t cid;	     /* the context this process acts as on the device */
};

/*
 * The devices of the daemon the process talks to (VMFABRIC_SOCKET): up to
 * @max names into @names; returns how many there are (may exceed @max) or
 * -errno (-ENETDOWN: no daemon).
 */
int vrdma_get_device_list(char (*names)[VRDMA_DEVNAME_MAX], int max);
/*
 * Open device @name (NULL: the first one). The process acts as the context
 * VMFABRIC_CONTEXT / vmci_set_context() names, as VMCI sockets do.
 * -ENODEV: no such device.
 */
int vrdma_open_device(const char *name, struct vrdma_context **out);
/* -EBUSY while PDs, CQs or channels remain. */
int vrdma_close_device(struct vrdma_context *ctx);
int vrdma_query_device(struct vrdma_context *ctx, struct vrdma_device_attr *attr);

/* ---------------------------------------------------------------------- */
/* Protection domains and memory regions */

int vrdma_alloc_pd(struct vrdma_context *ctx, struct vrdma_pd **out);
/* -EBUSY while MRs or QPs of the PD remain. */
int vrdma_dealloc_pd(struct vrdma_pd *pd);

enum vrdma_access_flags {
	VRDMA_ACCESS_LOCAL_WRITE = 1,
	VRDMA_ACCESS_REMOTE_WRITE = 2,
	VRDMA_ACCESS_REMOTE_READ = 4,
	VRDMA_ACCESS_REMOTE_ATOMIC = 8,
};

struct vrdma_mr {
	struct vrdma_pd *pd;
	void *addr;
	size_t length;
	uint32_t lkey, rkey;
	unsigned access;
};

/*
 * Register [@addr, @addr + @len) with @access (VRDMA_ACCESS_*). The IBA's
 * rule holds: REMOTE_WRITE and REMOTE_ATOMIC need LOCAL_WRITE (-EINVAL
 * otherwise). The pages holding the range become shared memory for as long
 * as a registration covers them (their contents are kept). -EINVAL: an
 * empty range, unknown flags; -EFAULT: the range is not mapped readable
 * and writable; -EBUSY: the range would need more than 4 shared segments
 * (docs/RDMA.md); -ENOSPC: the device's MR table is full.
 */
int vrdma_reg_mr(struct vrdma_pd *pd, void *addr, size_t len, unsigned access,
		 struct vrdma_mr **out);
/*
 * Invalidate the keys (peers' accesses fail with REM_ACCESS_ERR from now),
 * then make the pages private again unless another registration covers
 * them. Once it returns, no peer reaches this memory through this MR.
 */
int vrdma_dereg_mr(struct vrdma_mr *mr);

/* ---------------------------------------------------------------------- */
/* Completion queues */

enum vrdma_wc_status {
	VRDMA_WC_SUCCESS = 0,
	VRDMA_WC_LOC_LEN_ERR = 1,
	VRDMA_WC_LOC_QP_OP_ERR = 2,
	VRDMA_WC_LOC_EEC_OP_ERR = 3,
	VRDMA_WC_LOC_PROT_ERR = 4,
	VRDMA_WC_WR_FLUSH_ERR = 5,
	VRDMA_WC_MW_BIND_ERR = 6,
	VRDMA_WC_BAD_RESP_ERR = 7,
	VRDMA_WC_LOC_ACCESS_ERR = 8,
	VRDMA_WC_REM_INV_REQ_ERR = 9,
	VRDMA_WC_REM_ACCESS_ERR = 10,
	VRDMA_WC_REM_OP_ERR = 11,
	VRDMA_WC_RETRY_EXC_ERR = 12,
	VRDMA_WC_RNR_RETRY_EXC_ERR = 13,
	VRDMA_WC_GENERAL_ERR = 21,
};

enum vrdma_wc_opcode {
	VRDMA_WC_SEND = 0,
	VRDMA_WC_RDMA_WRITE = 1,
	VRDMA_WC_RDMA_READ = 2,
	VRDMA_WC_COMP_SWAP = 3,
	VRDMA_WC_FETCH_ADD = 4,
	VRDMA_WC_RECV = 128,
	VRDMA_WC_RECV_RDMA_WITH_IMM = 129,
};

#define VRDMA_WC_WITH_IMM 0x2u /* wc_flags */

struct vrdma_wc {
	uint64_t wr_id;
	enum vrdma_wc_status status;
	enum vrdma_wc_opcode opcode;
	uint32_t vendor_err;
	uint32_t byte_len; /* receives: bytes placed */
	uint32_t imm_data; /* with VRDMA_WC_WITH_IMM, as the sender gave it */
	uint32_t qp_num;
	uint32_t src_qp;
	unsigned wc_flags;
};

/* A completion channel: a descriptor to poll or epoll, readable when an
 * armed CQ of the channel has a completion. */
int vrdma_create_comp_channel(struct vrdma_context *ctx, struct vrdma_comp_channel **out);
int vrdma_comp_channel_fd(const struct vrdma_comp_channel *ch);
/* -EBUSY while CQs use it. */
int vrdma_destroy_comp_channel(struct vrdma_comp_channel *ch);

/* @cqe: capacity (rounded up); @channel may be NULL. */
int vrdma_create_cq(struct vrdma_context *ctx, int cqe, void *cq_context,
		    struct vrdma_comp_channel *channel, struct vrdma_cq **out);
/* -EBUSY while QPs use it. */
int vrdma_destroy_cq(struct vrdma_cq *cq);
/*
 * Up to @n completions into @wc; returns how many (0: none yet) or -errno.
 * Polling also makes progress: it takes messages that arrived for the
 * CQ's receive queues and retries send work that waited (RNR, full rings).
 * A CQ that overflows is an error (-EOVERFLOW from then on), as in the IBA.
 */
int vrdma_poll_cq(struct vrdma_cq *cq, int n, struct vrdma_wc *wc);
/* Ask for one event on the CQ's channel at the next completion. */
int vrdma_req_notify_cq(struct vrdma_cq *cq, int solicited_only);
/*
 * Wait for the next event on @ch (blocking unless the channel's descriptor
 * was made non-blocking: -EAGAIN). Returns the CQ and its context. Every
 * event is acknowledged with vrdma_ack_cq_events() before the CQ is
 * destroyed.
 */
int vrdma_get_cq_event(struct vrdma_comp_channel *ch, struct vrdma_cq **cq, void **cq_context);
void vrdma_ack_cq_events(struct vrdma_cq *cq, unsigned n);

/* ---------------------------------------------------------------------- */
/* Queue pairs (RC) */

enum vrdma_qp_type { VRDMA_QPT_RC = 2 };

enum vrdma_qp_state {
	VRDMA_QPS_RESET,
	VRDMA_QPS_INIT,
	VRDMA_QPS_RTR,
	VRDMA_QPS_RTS,
	VRDMA_QPS_SQD,
	VRDMA_QPS_SQE,
	VRDMA_QPS_ERR,
};

enum vrdma_mtu {
	VRDMA_MTU_256 = 1,
	VRDMA_MTU_512 = 2,
	VRDMA_MTU_1024 = 3,
	VRDMA_MTU_2048 = 4,
	VRDMA_MTU_4096 = 5,
};

struct vrdma_qp_cap {
	uint32_t max_send_wr, max_recv_wr;
	uint32_t max_send_sge, max_recv_sge;
	uint32_t max_inline_data;
};

struct vrdma_qp_init_attr {
	void *qp_context;
	struct vrdma_cq *send_cq, *recv_cq;
	struct vrdma_qp_cap cap; /* granted values written back */
	enum vrdma_qp_type qp_type;
	int sq_sig_all; /* every send WR signaled */
};

/* Where the peer QP is: a context on this host, or a RoCE v2 peer by IP. */
struct vrdma_ah_attr {
	uint32_t dest_cid;  /* on this host: the peer's context (VMADDR_CID_*) */
	uint8_t dgid[16];   /* between hosts: the peer's IPv6 or IPv4-mapped address */
	uint8_t is_global;  /* 1: dgid is the address (RoCE v2) */
};

enum vrdma_qp_attr_mask {
	VRDMA_QP_STATE = 1 << 0,
	VRDMA_QP_CUR_STATE = 1 << 1,
	VRDMA_QP_ACCESS_FLAGS = 1 << 3,
	VRDMA_QP_PKEY_INDEX = 1 << 4,
	VRDMA_QP_PORT = 1 << 5,
	VRDMA_QP_AV = 1 << 7,
	VRDMA_QP_PATH_MTU = 1 << 8,
	VRDMA_QP_TIMEOUT = 1 << 9,
	VRDMA_QP_RETRY_CNT = 1 << 10,
	VRDMA_QP_RNR_RETRY = 1 << 11,
	VRDMA_QP_RQ_PSN = 1 << 12,
	VRDMA_QP_MAX_QP_RD_ATOMIC = 1 << 13,
	VRDMA_QP_MIN_RNR_TIMER = 1 << 15,
	VRDMA_QP_SQ_PSN = 1 << 16,
	VRDMA_QP_MAX_DEST_RD_ATOMIC = 1 << 17,
	VRDMA_QP_CAP = 1 << 19,
	VRDMA_QP_DEST_QPN = 1 << 20,
};

struct vrdma_qp_attr {
	enum vrdma_qp_state qp_state;
	enum vrdma_qp_state cur_qp_state;
	enum vrdma_mtu path_mtu;
	uint32_t rq_psn, sq_psn, dest_qp_num;
	unsigned qp_access_flags; /* VRDMA_ACCESS_REMOTE_*: what peers may do through this QP */
	struct vrdma_qp_cap cap;
	struct vrdma_ah_attr ah_attr;
	uint16_t pkey_index;
	uint8_t max_rd_atomic, max_dest_rd_atomic;
	uint8_t min_rnr_timer; /* IBA RNR timer code (1: 0.01 ms ... 31: 491.52 ms; 0: 655.36 ms) */
	uint8_t port_num;
	uint8_t timeout;   /* local ACK timeout: 4.096 us * 2^timeout (0: infinite) */
	uint8_t retry_cnt; /* 0..7 */
	uint8_t rnr_retry; /* 0..7; 7: retry for ever */
};

int vrdma_create_qp(struct vrdma_pd *pd, struct vrdma_qp_init_attr *attr, struct vrdma_qp **out);
int vrdma_destroy_qp(struct vrdma_qp *qp);
uint32_t vrdma_qp_num(const struct vrdma_qp *qp);
/*
 * Move the QP as the IBA's state table allows, with the attributes each
 * transition requires (RESET->INIT: PKEY_INDEX, PORT, ACCESS_FLAGS;
 * INIT->RTR: AV, PATH_MTU, DEST_QPN, RQ_PSN, MAX_DEST_RD_ATOMIC,
 * MIN_RNR_TIMER; RTR->RTS: SQ_PSN, TIMEOUT, RETRY_CNT, RNR_RETRY,
 * MAX_QP_RD_ATOMIC); any state -> ERR or RESET. -EINVAL for a transition
 * or attribute the table does not allow.
 */
int vrdma_modify_qp(struct vrdma_qp *qp, struct vrdma_qp_attr *attr, int attr_mask);
int vrdma_query_qp(struct vrdma_qp *qp, struct vrdma_qp_attr *attr, int attr_mask,
		   struct vrdma_qp_init_attr *init_attr);

/* ---------------------------------------------------------------------- */
/* Work requests */

enum vrdma_wr_opcode {
	VRDMA_WR_RDMA_WRITE = 0,
	VRDMA_WR_RDMA_WRITE_WITH_IMM = 1,
	VRDMA_WR_SEND = 2,
	VRDMA_WR_SEND_WITH_IMM = 3,
	VRDMA_WR_RDMA_READ = 4,
	VRDMA_WR_ATOMIC_CMP_AND_SWP = 5,
	VRDMA_WR_ATOMIC_FETCH_AND_ADD = 6,
};

enum vrdma_send_flags {
	VRDMA_SEND_FENCE = 1 << 0,
	VRDMA_SEND_SIGNALED = 1 << 1,
	VRDMA_SEND_SOLICITED = 1 << 2,
	VRDMA_SEND_INLINE = 1 << 3,
};

struct vrdma_sge {
	uint64_t addr;
	uint32_t length;
	uint32_t lkey; /* ignored for VRDMA_SEND_INLINE */
};

struct vrdma_send_wr {
	uint64_t wr_id;
	struct vrdma_send_wr *next;
	struct vrdma_sge *sg_list;
	int num_sge;
	enum vrdma_wr_opcode opcode;
	unsigned send_flags;
	uint32_t imm_data;
	union {
		struct {
			uint64_t remote_addr;
			uint32_t rkey;
		} rdma;
		struct {
			uint64_t remote_addr; /* 8-byte aligned */
			uint64_t compare_add;
			uint64_t swap;
			uint32_t rkey;
		} atomic;
	} wr;
};

struct vrdma_recv_wr {
	uint64_t wr_id;
	struct vrdma_recv_wr *next;
	struct vrdma_sge *sg_list;
	int num_sge;
};

/*
 * Post a chain of send WRs. On error *@bad points at the first WR not
 * posted: -EINVAL (opcode, SGE count, inline size, an atomic whose one SGE
 * is not 8 bytes), -ENOMEM (the send queue is full), -EINVAL when the QP is not
 * in RTS. Problems found while executing a WR (keys, bounds, the peer's
 * answer) are error completions, not return values; an error completion
 * moves the QP to ERR and every later WR completes with WR_FLUSH_ERR.
 */
int vrdma_post_send(struct vrdma_qp *qp, struct vrdma_send_wr *wr, struct vrdma_send_wr **bad);
/* Receives may be posted from INIT on; in ERR they complete with WR_FLUSH_ERR. */
int vrdma_post_recv(struct vrdma_qp *qp, struct vrdma_recv_wr *wr, struct vrdma_recv_wr **bad);

const char *vrdma_wc_status_str(enum vrdma_wc_status status);
const char *vrdma_qp_state_str(enum vrdma_qp_state state);

/* ---------------------------------------------------------------------- */
/*
 * Connection manager, in the style of librdmacm: QP numbers, PSNs and the
 * rest of the RTR/RTS attributes are exchanged through the daemon(s); both
 * ends come back with their QP in RTS.
 *
 * A listener is bound to a port of the context the process acts as (its
 * own port space, apart from VMCI sockets). The active side names the
 * passive side by CID (same host) and port, or by IP and port (another
 * host: vrdma_connect_addr()).
 *
 * Between hosts, the two daemons exchange the request over TCP port 4791
 * of the IP addresses of the VMkernel adapters their devices are bound to
 * (docs/RDMA.md, "Between hosts"). A request from another host goes to
 * the listener on that port in the host context (CID 2) only: a process
 * that should take connections from other hosts listens acting as the
 * host. Both QPs come back in RTS with a global address: ah_attr.is_global
 * = 1, ah_attr.dgid the peer's IP (IPv6, or IPv4-mapped ::ffff:a.b.c.d),
 * path_mtu the smaller of both devices' path MTUs; the RoCE v2 data path
 * starts at that RTR.
 */
struct vrdma_listener;

struct vrdma_conn_param {
	const void *private_data; /* up to VRDMA_PRIVATE_DATA bytes, given to the other side */
	uint8_t private_data_len;
	uint8_t responder_resources; /* max_dest_rd_atomic (default 16) */
	uint8_t initiator_depth;     /* max_rd_atomic (default 16) */
	uint8_t retry_count;	     /* default 7 */
	uint8_t rnr_retry_count;     /* default 7 (for ever) */
};

#define VRDMA_PRIVATE_DATA 56

/* A connection request as the passive side sees it. */
struct vrdma_conn_req {
	uint64_t id;	       /* for accept / reject */
	uint32_t src_cid;      /* the connecting context; remote: VRDMA_CID_REMOTE */
	uint32_t src_qpn;
	uint32_t psn; /* the requester's first PSN */
	uint8_t private_data[VRDMA_PRIVATE_DATA];
	uint8_t private_data_len;
	uint8_t responder_resources, initiator_depth;
	uint8_t remote;			  /* 1: from another host (by IP) */
	struct sockaddr_storage src_addr; /* remote: the requester's IP (sockaddr_in or
					     sockaddr_in6, port 0) */
	uint8_t path_mtu;		  /* remote: enum vrdma_mtu, the smaller of both devices' */
};

#define VRDMA_CID_REMOTE 0xffffffffu /* src_cid of a request from another host */

/* -EADDRINUSE; @port 0: an ephemeral port, see vrdma_listener_port(). */
int vrdma_listen(struct vrdma_context *ctx, uint32_t port, struct vrdma_listener **out);
uint32_t vrdma_listener_port(const struct vrdma_listener *l);
/* Readable when a request waits. */
int vrdma_listener_fd(const struct vrdma_listener *l);
/* The next request: waits up to @timeout_ms (-1: for ever; 0: -EAGAIN at once). */
int vrdma_get_request(struct vrdma_listener *l, struct vrdma_conn_req *req, int timeout_ms);
/*
 * Accept @req on @qp (RESET, not connected): the QP goes to RTS connected to
 * the requester's, and the requester's connect returns. @param may be NULL.
 */
int vrdma_accept(struct vrdma_listener *l, const struct vrdma_conn_req *req,
		 struct vrdma_qp *qp, const struct vrdma_conn_param *param);
int vrdma_reject(struct vrdma_listener *l, const struct vrdma_conn_req *req);
void vrdma_listener_close(struct vrdma_listener *l);

/*
 * Connect @qp (RESET) to the listener at (@cid, @port): returns when the
 * other side accepted (0, @qp in RTS), refused (-ECONNREFUSED: rejected, or
 * nobody listens), or @timeout_ms passed (-ETIMEDOUT; -1: 5 s). The
 * accepting side's private data is copied to @reply_data (up to
 * VRDMA_PRIVATE_DATA bytes) when not NULL.
 */
int vrdma_connect(struct vrdma_qp *qp, uint32_t cid, uint32_t port,
		  const struct vrdma_conn_param *param, void *reply_data, int timeout_ms);

/*
 * Connect @qp (RESET) to the listener on port @addr's sin_port / sin6_port
 * in the host context of another host, whose RDMA device is bound to a
 * VMkernel adapter with the IP @addr (a sockaddr_in, or a sockaddr_in6 of
 * @len bytes; an IPv4-mapped IPv6 address counts as IPv4). The daemon
 * connects from the IP of the adapter this process's device is bound to.
 * On success (0) @qp is in RTS with ah_attr.is_global = 1, ah_attr.dgid
 * = the peer's IP (IPv4 as ::ffff:a.b.c.d), path_mtu the smaller of both
 * devices', dest_qp_num and rq_psn the acceptor's; the acceptor's private
 * data is copied to @reply_data (up to VRDMA_PRIVATE_DATA bytes) when not
 * NULL. Errors:
 *   -ECONNREFUSED  the listener rejected, or nobody listens on the port
 *                  in the peer's host context;
 *   -ETIMEDOUT     no answer within @timeout_ms (-1: 5 s), including a
 *                  peer host that does not answer at all;
 *   -EACCES        this process's context may not (VMCI off, or restricted
 *                  to the host);
 *   -ENETUNREACH   this process's device cannot carry RoCE v2 (not bound,
 *                  the adapter has no IP of @addr's family, uplink down,
 *                  ...: the daemon logs why);
 *   -EHOSTUNREACH  the peer's daemon cannot be reached (no route, nothing
 *                  listens on its TCP port 4791);
 *   -ECONNRESET    the peer's daemon went away during the exchange;
 *   -EPROTO        the peer answered something malformed;
 *   -ENOBUFS       the daemon has too many exchanges with other hosts at once;
 *   -EINVAL        @addr, @len, @param or @qp's state.
 */
int vrdma_connect_addr(struct vrdma_qp *qp, const struct sockaddr *addr, socklen_t len,
		       const struct vrdma_conn_param *param, void *reply_data, int timeout_ms);

#ifdef __cplusplus
}
#endif

#endif
