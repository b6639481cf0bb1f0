/* SPDX-License-Identifier: MIT */
/*
 * One end of an RDMA connection on vmrdma0, as the demo and the soak make
 * it: a device, a PD, a CQ of 64, an RC QP (64 sends, 1 receive) on it,
 * and a zeroed buffer of @len bytes registered with @access.
 */
#ifndef VMFABRIC_TOOLS_VEND_H
#define VMFABRIC_TOOLS_VEND_H

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "vmfabric/vrdma.h"

struct vend {
	struct vrdma_context *ctx;
	struct vrdma_pd *pd;
	struct vrdma_cq *cq;
	struct vrdma_qp *qp;
	struct vrdma_mr *mr;
	uint8_t *buf;
};

/* What vend_open() made, given back (any part may be missing). */
static inline void
vend_close(struct vend *e)
{
	if (e->mr)
		vrdma_dereg_mr(e->mr);
	if (e->qp)
		vrdma_destroy_qp(e->qp);
	if (e->cq)
		vrdma_destroy_cq(e->cq);
	if (e->pd)
		vrdma_dealloc_pd(e->pd);
	if (e->ctx)
		vrdma_close_device(e->ctx);
	free(e->buf);
	memset(e, 0, sizeof(*e));
}

/* 0, or -errno with the call that failed in *@what (what was made stays: vend_close()). */
static inline int
vend_open(struct vend *e, size_t len, unsigned access, const char **what)
{
	struct vrdma_qp_init_attr ia = { .qp_type = VRDMA_QPT_RC,
					 .cap = { .max_send_wr = 64, .max_recv_wr = 1 } };
	int err;

	memset(e, 0, sizeof(*e));
	if ((err = vrdma_open_device("vmrdma0", &e->ctx))) {
		*what = "vrdma_open_device vmrdma0";
		return err;
	}
	if ((err = vrdma_alloc_pd(e->ctx, &e->pd))) {
		*what = "vrdma_alloc_pd";
		return err;
	}
	if ((err = vrdma_create_cq(e->ctx, 64, NULL, NULL, &e->cq))) {
		*what = "vrdma_create_cq";
		return err;
	}
	ia.send_cq = ia.recv_cq = e->cq;
	if ((err = vrdma_create_qp(e->pd, &ia, &e->qp))) {
		*what = "vrdma_create_qp";
		return err;
	}
	if (!(e->buf = calloc(1, len))) {
		*what = "buffer";
		return -ENOMEM;
	}
	*what = "vrdma_reg_mr";
	return vrdma_reg_mr(e->pd, e->buf, len, access, &e->mr);
}

#endif
