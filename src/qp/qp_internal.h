/* SPDX-License-Identifier: MIT */
/*
 * Queue pair internals shared by qp.c (rings) and qp_mem.c (memfd, mapping,
 * descriptors), and the seam used by the fuzz target and the TSan tests:
 * qp__init() builds an endpoint over any mapping of the layout, so that two
 * endpoints can share one virtual mapping (TSan sees their accesses) and the
 * fuzzer can drive an endpoint over a plain heap buffer.
 */
#ifndef VMFABRIC_QP_INTERNAL_H
#define VMFABRIC_QP_INTERNAL_H

#include <stdbool.h>

#include "vmfabric/qp.h"

/* One direction as this endpoint sees it. */
struct qp_dir {
	struct qp_queue *q; /* shared header: untrusted */
	uint8_t *data;	    /* shared data area: untrusted */
	uint64_t size;	    /* private copy, power of two */
	uint64_t pos;	    /* our index (tail on tx, head on rx); never read back */
	uint64_t peer;	    /* last validated peer index (head on tx, tail on rx) */
	uint32_t my_wait;   /* our sleep sequence (private copy of our line's wait) */
	uint32_t signalled; /* peer sleep sequence we last signalled */
	bool shut;	    /* we shut this direction down */
	bool peer_shut;	    /* peer's line said CLOSED (sticky) */
};

struct qp {
	struct qp_dir tx, rx;
	void *map;	/* mapping of the whole layout */
	size_t map_len; /* 0 when the mapping is not ours (qp__init callers) */
	int wake, peer_wake, alive; /* owned; -1 when absent */
	int ep; /* epoll set: wake (edge-triggered) and alive; what sleepers wait on; -1: not yet */
	bool ep_owned; /* ours to close (not the caller's, see qp_share_epoll()) */
	enum qp_mode mode;
	int64_t timeout_ns; /* < 0: forever */
	uint32_t spin_ns;
	uint64_t tx_want; /* space that makes qp_arm() report QP_EV_WRITE */
	bool peer_gone;
	uint32_t gen; /* generation (see qp_park()), modulo 2^30 */
	uint64_t peeked; /* rx: bytes of records peeked and not yet consumed */
	bool unpublished; /* tx: records written with QP_MORE, not yet published */
	int err; /* sticky -EPROTO */
	char why[96];
	struct qp_stats st;
};

/*
 * Initialise @qp as side @side (0 or 1) over @base, which must hold
 * qp_layout_size(s0, s1) bytes. Descriptors are set to -1 (no wakeups).
 * Does not read the meta page: sizes are the caller's.
 */
void qp__init(struct qp *qp, void *base, uint64_t s0, uint64_t s1, int side);

bool qp__size_ok(uint64_t size);

/* Build qp->ep, the endpoint's own set, from qp->wake and qp->alive. 0 or -errno. */
int qp__wait_init(struct qp *qp);
/* qp->ep, made if need be: the set or -errno (-EBADF without descriptors). */
int qp__ep(struct qp *qp);

/* Mark directions shut in our lines and wake the peer. */
void qp__shut(struct qp *qp, bool rd, bool wr);
/* Is the peer's line @flags closed for our generation (or for good)? */
bool qp__line_closed(const struct qp *qp, uint32_t flags);

#endif
