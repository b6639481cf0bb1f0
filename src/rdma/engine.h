/* SPDX-License-Identifier: MIT */
/*
 * The RoCE v2 engine: the daemon's side of QPs whose peer is on another
 * host. It runs on the switches' dataplane thread, beside the VMkernel
 * adapter its device is bound to: RoCE v2 frames for the adapter's IP
 * (UDP 4791) are taken from the adapter's port before they reach the
 * host's stack, and the engine's frames enter the switch from that port,
 * with its MAC and IP. Each QP is an RC state machine (rc.h) fed by the
 * application's work requests and receives, which arrive as records on a
 * queue pair shared with the application's library; completions go back
 * on the same queue pair. Local and remote memory is the application's
 * registered memory as the daemon maps it (struct reng_mem_ops).
 *
 * Threat model: frames come from the network (roce_parse() checks them,
 * rc_input() checks them against the QP); work-request records come from
 * the application (every field checked, every buffer resolved through its
 * MR table with bounds and access); neither may make the daemon touch
 * memory outside the application's registered regions.
 */
#ifndef VMFABRIC_RDMA_ENGINE_H
#define VMFABRIC_RDMA_ENGINE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "rc.h"

struct reng;
struct reng_qp;
struct vsw;
struct vmk_port;
struct qp;

/*
 * The application's memory as the broker knows it. get() resolves
 * (@key, @pd, [@va, @va + @len), @access) to a pointer in the daemon's
 * mapping and takes a reference on the region (kept mapped until put(),
 * even if deregistered meanwhile); -EACCES when it may not. lock() and
 * unlock() bracket each time the engine runs a QP, so that a
 * deregistration waits for the engine to leave the region.
 */
struct reng_mem_ops {
	int (*get)(void *owner, uint32_t key, uint32_t pd, uint64_t va, uint64_t len,
		   unsigned access, uint8_t **out, void **ref);
	void (*put)(void *owner, void *ref);
	void (*lock)(void *owner);
	void (*unlock)(void *owner);
};

/* Access bits for get(): the IBA's (vrdma.h) VRDMA_ACCESS_* values. */
#define RENG_LOCAL_WRITE 1u

/* Where a QP's frames go and come from. */
struct reng_path {
	struct vmk_port *vmk;	 /* the bound VMkernel adapter (its switch: sw) */
	struct vsw *sw;
	uint8_t src_mac[6], dst_mac[6];
	bool ipv6;
	uint8_t src_ip[16], dst_ip[16]; /* IPv4: the first 4 bytes */
	uint16_t src_port;		/* UDP source port (flow entropy) */
};

struct reng_qp_params {
	struct rc_attr rc;
	struct reng_path path;
	uint32_t pd;
	unsigned qp_access; /* VRDMA_ACCESS_REMOTE_*: what peers may do through it */
	/*
	 * The same, as the application keeps it in its key page (read-only
	 * here; changed RTS -> RTS), read at each request; NULL: qp_access.
	 */
	const _Atomic uint32_t *access_live;
	struct qp *ring;    /* the daemon's end of the application's queue pair (taken) */
	const struct reng_mem_ops *mem;
	void *owner;
};

/*
 * Records on a RoCE QP's queue pair (the application's library made it:
 * side 0): the application writes queue 0, the daemon queue 1
 * (completions). Fixed headers, then SGEs or inline data.
 */
#define RENG_REC_SEND 1	  /* struct reng_rec_wr, then num_sge reng_sge or inline bytes */
#define RENG_REC_RECV 2	  /* struct reng_rec_wr (opcode ignored), then reng_sge */
#define RENG_REC_ERR  3	  /* move the QP to ERR: everything flushes */
#define RENG_MAX_SGE  8
#define RENG_MAX_INLINE 256

struct reng_rec_wr {
	uint32_t kind;	     /* RENG_REC_* */
	uint32_t num_sge;    /* SGEs that follow; 0 with inline_len for inline data */
	uint64_t wr_id;
	uint32_t opcode;     /* enum rc_wr_opcode */
	uint32_t flags;	     /* RENG_F_* */
	uint32_t imm;
	uint32_t rkey;
	uint64_t remote_va;
	uint64_t compare_add, swap;
	uint32_t inline_len;
	uint32_t pad;
};
_Static_assert(sizeof(struct reng_rec_wr) == 64, "reng_rec_wr layout");
#define RENG_F_SIGNALED	 1u
#define RENG_F_SOLICITED 2u

struct reng_sge {
	uint64_t addr;
	uint32_t length, lkey;
};
_Static_assert(sizeof(struct reng_sge) == 16, "reng_sge layout");

/* A completion record (queue 1). Every send request gets one (the library frees its slot). */
struct reng_rec_wc {
	uint64_t wr_id;
	uint32_t status;  /* enum rc_wc_status: ibverbs' numbers */
	uint32_t opcode;  /* send side: the WR's; receive side: 128 / 129 */
	uint32_t byte_len;
	uint32_t imm;
	uint8_t recv, with_imm, signaled, solicited;
	uint32_t pad;
};
_Static_assert(sizeof(struct reng_rec_wc) == 32, "reng_rec_wc layout");

/*
 * Fault injection for tests (VMFABRIC_ROCE_FAULTS="loss=2,dup=1,reorder=3,seed=7":
 * percent of received frames dropped, delivered twice, held back behind the
 * next one). Read when the engine is made.
 */
struct reng_faults {
	unsigned loss, dup, reorder;
	uint64_t seed;
};

int reng_create(struct reng **out);
void reng_destroy(struct reng *e);

/* On the dataplane thread: */
int reng_qp_add(struct reng *e, const struct reng_qp_params *p, uint32_t qpn);
void reng_qp_remove(struct reng *e, uint32_t qpn);
/* A frame from the switch to @vmk: true if it was RoCE v2 for the engine (taken). */
bool reng_input(struct reng *e, struct vmk_port *vmk, const struct iovec *iov, int iovcnt,
		size_t len);
/* Work: records in, frames queued, timers, frames out. Returns how much was done. */
int reng_poll(struct reng *e, int64_t now);
/* Before the thread sleeps: arm the rings; true if work came meanwhile. *@deadline: next timer. */
bool reng_arm(struct reng *e, int64_t *deadline);
/* After the thread slept: take the rings' wakeups (else their descriptors stay readable). */
void reng_woken(struct reng *e);
/* VMkernel adapter @vmk goes: the QPs whose path it was go to ERR and send nothing more. */
void reng_vmk_gone(struct reng *e, struct vmk_port *vmk);
/* The epoll set the rings' wakeups join (the dataplane's). */
void reng_set_epoll(struct reng *e, int ep);

struct reng_stats {
	uint64_t frames_in, frames_out, bad_frames, no_qp, faults_dropped, faults_duped;
	struct rc_stats rc; /* summed over the QPs */
	unsigned qps;
};
void reng_get_stats(const struct reng *e, struct reng_stats *out);


#endif
