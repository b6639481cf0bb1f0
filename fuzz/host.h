/* SPDX-License-Identifier: MIT */
/*
 * Checks shared by the fuzz targets of the host's configuration and its
 * management requests (fuzz-hostconf, fuzz-mgmt): what a loaded or changed
 * host must look like, and the listings that show it.
 */
#ifndef VMFABRIC_FUZZ_HOST_H
#define VMFABRIC_FUZZ_HOST_H

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf_check.h"
#include "rdma/device.h"
#include "switch/dp.h"
#include "switch/uplink.h"
#include "switch/vmk.h"
#include "vmci/broker.h"
#include "vmci/ctx.h"

static inline void
check_refused(int r, const struct conf_error *e, const uint8_t *text, size_t len)
{
	FZ_CHECK(r == -EINVAL || r == -EEXIST || r == -ENOENT || r == -ENOSPC || r == -E2BIG ||
		 r == -ENOMEM);
	fz_check_conf_error(e, text, len);
}

static inline void
check_reg(const struct vmci_reg *r)
{
	FZ_CHECK(r->n >= 1 && r->n <= r->cap);
	for (size_t i = 0; i < r->n; i++) {
		const struct vmci_ctx *x = &r->ctx[i];

		FZ_CHECK(i == 0 || x->cid > r->ctx[i - 1].cid);
		FZ_CHECK(x->cid != VMCI_CID_ANY && (x->kind == VMCI_KIND_HOST || x->cid >= 3));
		FZ_CHECK(memchr(x->name, 0, sizeof(x->name)) && conf_text(x->name));
		for (size_t k = 0; k < i; k++)
			FZ_CHECK(strcmp(x->name, r->ctx[k].name));
	}
}

static inline bool
has_switch(const struct vsw_dp *d, unsigned sw)
{
	return sw < d->nsw;
}

static inline void
check_dp(const struct vsw_dp *d)
{
	FZ_CHECK(d->nsw >= 1 && d->nsw <= VSW_MAX_SWITCHES && !d->started && !d->running);
	for (unsigned s = 0; s < d->nsw; s++) {
		FZ_CHECK(d->sw[s].name[0] && conf_text(d->sw[s].name));
		FZ_CHECK(d->sw[s].mtu >= 68 && d->sw[s].mtu <= VSW_MTU_MAX);
		for (unsigned k = 0; k < s; k++)
			FZ_CHECK(strcmp(d->sw[s].name, d->sw[k].name));
	}
	for (unsigned i = 0; i < d->npg; i++) {
		FZ_CHECK(d->pg[i].name[0] && conf_text(d->pg[i].name));
		FZ_CHECK(has_switch(d, d->pg[i].sw) && d->pg[i].vlan <= 4095);
		for (unsigned k = 0; k < i; k++)
			FZ_CHECK(strcmp(d->pg[i].name, d->pg[k].name));
	}
	for (unsigned i = 0; i < d->nuplink; i++) {
		FZ_CHECK(has_switch(d, d->uplink[i]->sw) && d->uplink[i]->fd < 0 &&
			 d->uplink[i]->device[0] && conf_text(d->uplink[i]->p.name));
		for (unsigned k = 0; k < i; k++)
			FZ_CHECK(strcmp(d->uplink[i]->p.name, d->uplink[k]->p.name));
	}
	for (unsigned i = 0; i < d->nvmk; i++) {
		struct in_addr a;
		unsigned len;

		FZ_CHECK(has_switch(d, d->vmk[i]->sw) && d->vmk[i]->fd < 0 &&
			 conf_text(d->vmk[i]->p.name));
		FZ_CHECK(!d->vmk[i]->ip[0] || vmk_cidr_parse(d->vmk[i]->ip, &a, &len) == 0);
		for (unsigned k = 0; k < i; k++)
			FZ_CHECK(strcmp(d->vmk[i]->p.name, d->vmk[k]->p.name));
	}
	for (unsigned i = 0; i < d->nvhu; i++) {
		bool pg = false;

		for (unsigned k = 0; k < d->npg; k++)
			pg |= !strcmp(d->pg[k].name, d->vhu[i].portgroup);
		FZ_CHECK(pg && d->vhu[i].path[0] && !d->vhu[i].port);
	}
}

static inline void
check_rdma(const struct rdma_devs *r, const struct vsw_dp *d)
{
	for (size_t i = 0; i < r->n; i++) {
		const struct rdma_dev *x = &r->dev[i];
		bool up = false;

		for (unsigned k = 0; k < d->nuplink; k++)
			up |= !strcmp(d->uplink[k]->p.name, x->uplink);
		FZ_CHECK(up && x->name[0] && conf_text(x->vmknic) && conf_text(x->description));
		for (size_t k = 0; k < i; k++) {
			FZ_CHECK(strcmp(x->name, r->dev[k].name) && strcmp(x->uplink, r->dev[k].uplink));
			FZ_CHECK(!x->vmknic[0] || strcmp(x->vmknic, r->dev[k].vmknic));
		}
	}
}

/* A listing through the management API: answered, with @n entries in its array @key. */
static inline void
check_list(struct vmci_broker *b, const char *cmd, const char *key, size_t n)
{
	struct broker_mgmt_req r = { .cmd = cmd, .arg = "", .uid = 0, .fd = -1 };
	char *out = NULL;
	json_error_t je;
	json_t *doc;

	FZ_CHECK(broker_mgmt(b, &r, &out) == 0 && out);
	doc = json_loads(out, 0, &je);
	FZ_CHECK(doc && json_array_size(json_object_get(doc, key)) == n);
	json_decref(doc);
	free(out);
}

static inline void
check_lists(struct vmci_broker *b)
{
	check_list(b, "vmci.context.list", "contexts", b->reg.n);
	check_list(b, "network.vswitch.list", "vswitches", b->dp.nsw);
	check_list(b, "network.portgroup.list", "portgroups", b->dp.npg);
	check_list(b, "network.nic.list", "nics", b->dp.nuplink);
	check_list(b, "network.vmk.list", "interfaces", b->dp.nvmk);
	check_list(b, "rdma.device.list", "devices", b->rdma_devs.n);
}

#endif
