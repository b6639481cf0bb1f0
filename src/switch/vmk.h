/* SPDX-License-Identifier: MIT */
/*
 * VMkernel adapters (vmkN): the host's own network stack on a port group,
 * through a TAP interface of the same name. The host's traffic is not the
 * fast path: one read() or write() per frame. The adapter's MAC (the TAP's)
 * is configured on its port, as a VM's is; an IPv4 address given in the
 * configuration is set on the interface and the interface brought up.
 */
#ifndef VMFABRIC_SWITCH_VMK_H
#define VMFABRIC_SWITCH_VMK_H

#include <net/if.h>
#include <netinet/in.h>

#include "vswitch.h"

struct reng;

struct vmk_port {
	struct vsw_port p; /* first: the switch's view; p.name is the interface's name */
	unsigned sw;
	char portgroup[VSW_NAME];
	char ip[24]; /* "a.b.c.d/len", or "" */
	uint8_t mac[6];
	int fd;
	struct reng *roce; /* RoCE v2 frames to the adapter go there (rdma/engine.h) */
};

/* Make the TAP interface p.name, set its address, bring it up. 0 or -errno. */
int vmk_open(struct vmk_port *v);
void vmk_close(struct vmk_port *v);
/*
 * "a.b.c.d" or "a.b.c.d/len" into @a and @len: the prefix length in
 * decimal digits only, 0 to 32 (32 when absent). 0 or -EINVAL.
 */
int vmk_cidr_parse(const char *s, struct in_addr *a, unsigned *len);
/* Set "a.b.c.d/len" on the interface (and remember it). 0 or -errno. */
int vmk_set_ipv4(struct vmk_port *v, const char *cidr);
/* Hand up to @max frames the host sent to @sw. Returns how many. */
int vmk_drain(struct vmk_port *v, struct vsw *sw, int max, int64_t now);

#endif
