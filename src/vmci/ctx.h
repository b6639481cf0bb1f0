/* SPDX-License-Identifier: MIT */
/*
 * VMCI contexts: who may talk to whom. A context is a CID with a name, an
 * owner (uid/gid allowed to act as it) and the VMCI settings of VMware's
 * .vmx files: vmci0.present (off by default) and restricted (host only).
 * CIDs 0 (hypervisor), 1 (local) and 2 (host) are reserved; every process
 * or VM context has a CID >= 3, unique across both kinds.
 */
#ifndef VMFABRIC_VMCI_CTX_H
#define VMFABRIC_VMCI_CTX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/conf.h"

#define VMCI_CID_HYPERVISOR 0u
#define VMCI_CID_LOCAL 1u
#define VMCI_CID_HOST 2u
#define VMCI_CID_FIRST 3u
#define VMCI_CID_ANY 0xffffffffu
#define VMCI_NAME 64

struct vsock_dev;

/*
 * Per-context quotas: what one context may hold in the daemon at once, so
 * that a context that floods runs out of its own share, not the daemon's.
 * X(id, key, default, errno of a refusal, unit). Keys: vmfabricd.limit.<key>
 * (every context's default), contextN.limit.<key> (one context's).
 */
#define VMCI_LIMITS(X)                                                               \
	X(SOCKETS, sockets, 16384, EMFILE, "")          /* control connections */   \
	X(PORTS, ports, 65536, EADDRNOTAVAIL, "")       /* bound and leased ports */ \
	X(QP_BYTES, qp_bytes, 4ull << 30, ENOBUFS, " bytes") /* rings via the daemon */ \
	X(DGRAM_BYTES, dgram_bytes, 1ull << 30, ENOBUFS, " bytes") /* datagram rx rings */ \
	X(RDMA_MRS, rdma_mrs, 65536, EDQUOT, "")        /* memory regions */        \
	X(RDMA_MR_BYTES, rdma_mr_bytes, 1ull << 40, EDQUOT, " bytes") /* registered */ \
	X(RDMA_QPS, rdma_qps, 4096, EDQUOT, "")         /* verbs QPs */

enum vmci_limit {
#define VMCI_LIM_ENUM(id, key, def, err, unit) VMCI_LIM_##id,
	VMCI_LIMITS(VMCI_LIM_ENUM)
#undef VMCI_LIM_ENUM
	VMCI_LIM_N
};

struct vmci_quota {
	uint64_t max[VMCI_LIM_N];
	uint64_t used[VMCI_LIM_N];
	uint64_t refused[VMCI_LIM_N]; /* requests refused for this limit */
	uint32_t set;		      /* bit per limit: configured for this context */
};

enum vmci_kind { VMCI_KIND_HOST, VMCI_KIND_PROCESS, VMCI_KIND_VM };

struct vmci_ctx {
	uint32_t cid;
	char name[VMCI_NAME];
	enum vmci_kind kind;
	bool present;	 /* vmci0.present: VMCI switched on */
	bool restricted; /* vmci0.restricted: the host only */
	bool privileged; /* may bind ports below 1024 */
	bool assigned;	 /* the daemon chose the CID */
	bool has_uid, has_gid;
	uid_t uid;
	gid_t gid;
	unsigned line; /* where it was configured (0: not from a file) */
	long group;    /* N of its contextN.* keys (-1: not from a file) */
	struct vmci_quota quota;
	uint32_t refs; /* control connections acting as it */
	struct vsock_dev *vsock; /* VM: its virtio-vsock device (none with VMCI off) */
};

struct vmci_reg {
	struct vmci_ctx *ctx; /* sorted by cid */
	size_t n, cap;
	uint64_t limit[VMCI_LIM_N]; /* vmfabricd.limit.*: contexts' defaults */
	/* vmfabricd.mgmt_group: who besides root may use the management API. */
	bool has_mgmt_gid;
	gid_t mgmt_gid;
	char mgmt_group[64]; /* as configured (a name or a number) */
};

/* A registry holding the host context only. */
int vmci_reg_init(struct vmci_reg *r);
void vmci_reg_free(struct vmci_reg *r);

/*
 * Add every contextN.* group of a host configuration: name, uid, gid,
 * vmci0.present, vmci0.restricted, vmci0.id (the CID; assigned when absent),
 * privileged. Marks the keys it used. Errors (-EINVAL, -EEXIST) name the
 * file, line and key in @err; nothing is added then.
 */
int vmci_reg_load(struct vmci_reg *r, struct conf *c, struct conf_error *err);

/*
 * Add one context; cid VMCI_CID_ANY assigns the lowest free CID >= 3.
 * -EINVAL for a reserved CID, -EEXIST for a CID or name in use (@why says
 * which), -ENOMEM. Returns the registry's copy in *@out (may be NULL).
 */
int vmci_reg_add(struct vmci_reg *r, const struct vmci_ctx *c, struct vmci_ctx **out, char *why,
		 size_t whylen);
int vmci_reg_remove(struct vmci_reg *r, uint32_t cid);
struct vmci_ctx *vmci_reg_find(const struct vmci_reg *r, uint32_t cid);
struct vmci_ctx *vmci_reg_find_name(const struct vmci_reg *r, const char *name);

/* The limit's key suffix ("sockets", ...). */
const char *vmci_limit_key(enum vmci_limit l);

/*
 * Take @n of @l from context @cid's quota. Returns 0, or the limit's errno
 * (negative: -EMFILE, -EADDRNOTAVAIL, -ENOBUFS, -EDQUOT) counted in the
 * context's refusals and logged (rate-limited) with the limit and its key.
 * A CID that is not registered (a VM gone meanwhile) is not counted.
 */
int vmci_quota_take(struct vmci_reg *r, uint32_t cid, enum vmci_limit l, uint64_t n);
/* Give @n of @l back (never below zero). */
void vmci_quota_give(struct vmci_reg *r, uint32_t cid, enum vmci_limit l, uint64_t n);

/* 0 if @a may exchange data with @b, -EACCES if not (policy of VMCI). */
int vmci_policy(const struct vmci_ctx *a, const struct vmci_ctx *b);

/* 0 if a process with these credentials may act as @c, -EACCES if not. */
int vmci_may_act_as(const struct vmci_ctx *c, uid_t uid, gid_t gid);

#endif
