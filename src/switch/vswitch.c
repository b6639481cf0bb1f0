/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "vswitch.h"

const char *const vsw_drop_name[VSW_DROP_N] = {
	[VSW_DROP_RUNT] = "runt",   [VSW_DROP_MTU] = "mtu",	  [VSW_DROP_SRC] = "bad_source",
	[VSW_DROP_VLAN] = "vlan",   [VSW_DROP_SPOOF] = "spoofed", [VSW_DROP_QUEUE] = "queue_full",
	[VSW_DROP_DOWN] = "port_down",
};

#define FDB_ENTRIES 8192
#define FDB_AGE_NS (300 * 1000000000LL) /* as bridges and ESXi: five minutes */

int
vsw_init(struct vsw *sw, const char *name, uint32_t mtu, bool vmq)
{
	int err;

	memset(sw, 0, sizeof(*sw));
	if (mtu < 68 || mtu > VSW_MTU_MAX)
		return -EINVAL;
	strncpy(sw->name, name, sizeof(sw->name) - 1);
	sw->mtu = mtu;
	sw->vmq = vmq;
	if ((err = fdb_init(&sw->fdb, FDB_ENTRIES, FDB_AGE_NS)))
		return err;
	sw->defq = malloc(VSW_DEFQ_SLOTS * sizeof(*sw->defq));
	if (!sw->defq) {
		fdb_free(&sw->fdb);
		return -ENOMEM;
	}
	return 0;
}

void
vsw_free(struct vsw *sw)
{
	fdb_free(&sw->fdb);
	free(sw->defq);
	sw->defq = NULL;
}

int
vsw_port_add(struct vsw *sw, struct vsw_port *p)
{
	unsigned i;

	if (p->vlan > VLAN_TRUNK)
		return -EINVAL;
	for (i = 0; i < VSW_MAX_PORTS && sw->port[i]; i++)
		;
	if (i == VSW_MAX_PORTS)
		return -ENOSPC;
	p->id = (uint16_t)i;
	sw->port[i] = p;
	if (i >= sw->nports)
		sw->nports = i + 1;
	return (int)i;
}

void
vsw_port_remove(struct vsw *sw, struct vsw_port *p)
{
	if (p->id >= VSW_MAX_PORTS || sw->port[p->id] != p)
		return;
	fdb_flush_port(&sw->fdb, p->id);
	sw->port[p->id] = NULL;
	while (sw->nports && !sw->port[sw->nports - 1])
		sw->nports--;
}

int
vsw_port_mac(struct vsw *sw, struct vsw_port *p, const uint8_t *mac)
{
	if (eth_is_mcast(mac))
		return -EINVAL;
	/* An access port's address lives in its VLAN; a trunk's in VLAN 0 (untagged). */
	return fdb_add_fixed(&sw->fdb, mac, p->vlan == VLAN_TRUNK ? 0 : p->vlan, p->id);
}

static void
drop(struct vsw_port *p, enum vsw_drop why)
{
	atomic_fetch_add_explicit(&p->c.drops[why], 1, memory_order_relaxed);
}

static void
add(_Atomic uint64_t *c, uint64_t n)
{
	/* One writer (the dataplane): no locked instruction needed. */
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
			      memory_order_relaxed);
}

void
vsw_port_drop(struct vsw_port *p, enum vsw_drop why)
{
	add(&p->c.rx_pkts, 1);
	drop(p, why);
}

/* Copy bytes [@off, @off + @len) of a frame in pieces. */
static void
gather(const struct iovec *iov, int n, size_t off, void *dst, size_t len)
{
	uint8_t *d = dst;

	for (int i = 0; i < n && len; i++) {
		size_t l = iov[i].iov_len;

		if (off >= l) {
			off -= l;
			continue;
		}
		size_t k = l - off < len ? l - off : len;
		memcpy(d, (const uint8_t *)iov[i].iov_base + off, k);
		d += k, len -= k, off = 0;
	}
}

/* The pieces of a frame from byte @off on (a frame comes in VSW_MAX_PIECES at most). */
static int
slice(const struct iovec *iov, int n, size_t off, struct iovec *out)
{
	int k = 0;

	for (int i = 0; i < n && k < VSW_MAX_PIECES; i++) {
		size_t l = iov[i].iov_len;

		if (off >= l) {
			off -= l;
			continue;
		}
		out[k++] = (struct iovec){ (uint8_t *)iov[i].iov_base + off, l - off };
		off = 0;
	}
	return k;
}

static bool
member(const struct vsw_port *p, uint16_t vlan)
{
	return p->vlan == VLAN_TRUNK || p->vlan == vlan;
}

/* A frame on its way out: the header the switch rewrote, then the rest. */
struct egress {
	uint8_t hdr[ETH_HDR + ETH_VLAN_HDR - 2]; /* addresses, and a tag when tagged */
	struct iovec tagged[VSW_MAX_PIECES + 1], untagged[VSW_MAX_PIECES + 1];
	int ntagged, nuntagged;
	size_t len_tagged, len_untagged;
};

static void
egress_build(struct egress *g, const struct eth_info *e, uint16_t vlan, const struct iovec *iov,
	     int n, size_t len)
{
	uint16_t tci = (uint16_t)(e->pcp_dei | vlan);
	size_t rest = len - (e->hdr_len - 2); /* from the ethertype on */

	memcpy(g->hdr, e->dst, ETH_MAC_LEN);
	memcpy(g->hdr + ETH_MAC_LEN, e->src, ETH_MAC_LEN);
	g->hdr[12] = ETH_TYPE_VLAN >> 8;
	g->hdr[13] = ETH_TYPE_VLAN & 0xff;
	g->hdr[14] = (uint8_t)(tci >> 8);
	g->hdr[15] = (uint8_t)tci;
	g->untagged[0] = (struct iovec){ g->hdr, 12 };
	g->nuntagged = 1 + slice(iov, n, e->hdr_len - 2, g->untagged + 1);
	g->len_untagged = 12 + rest;
	g->tagged[0] = (struct iovec){ g->hdr, 16 };
	g->ntagged = 1 + slice(iov, n, e->hdr_len - 2, g->tagged + 1);
	g->len_tagged = 16 + rest;
}

static void
deliver(struct vsw_port *out, const struct egress *g, uint16_t vlan, bool flood)
{
	bool tag = out->vlan == VLAN_TRUNK && vlan != VLAN_NONE;
	size_t len = tag ? g->len_tagged : g->len_untagged;

	if (!out->up) {
		drop(out, VSW_DROP_DOWN);
		return;
	}
	if (out->ops->enqueue(out, tag ? g->tagged : g->untagged, tag ? g->ntagged : g->nuntagged,
			      len)) {
		drop(out, VSW_DROP_QUEUE);
		return;
	}
	add(&out->c.tx_pkts, 1);
	add(&out->c.tx_bytes, len);
	if (flood)
		add(&out->c.flooded, 1);
	if (out->mirror)
		out->mirror(out, tag ? g->tagged : g->untagged, tag ? g->ntagged : g->nuntagged, len,
			    true);
}

/* Header checks and the frame's VLAN as port @in sends it; -1: dropped. */
static int
admit(struct vsw *sw, struct vsw_port *in, const struct iovec *iov, int n, size_t len,
      struct eth_info *e)
{
	uint8_t hdr[ETH_HDR + ETH_VLAN_HDR];

	gather(iov, n, 0, hdr, len < sizeof(hdr) ? len : sizeof(hdr));
	switch (eth_parse(hdr, len, e)) {
	case ETH_OK:
		break;
	case ETH_RUNT:
		drop(in, VSW_DROP_RUNT);
		return -1;
	case ETH_SRC_MCAST:
		drop(in, VSW_DROP_SRC);
		return -1;
	case ETH_BAD_VLAN:
		drop(in, VSW_DROP_VLAN);
		return -1;
	}
	if (e->payload_len > sw->mtu) {
		drop(in, VSW_DROP_MTU);
		return -1;
	}
	if (in->vlan == VLAN_TRUNK)
		return e->tagged ? e->vid : VLAN_NONE;
	if (e->tagged) {
		drop(in, VSW_DROP_VLAN); /* an access port's frames are untagged */
		return -1;
	}
	return in->vlan;
}

/* Classify an admitted frame and deliver it: one lookup, one copy per destination. */
static void
classify(struct vsw *sw, struct vsw_port *in, const struct eth_info *e, uint16_t vlan,
	 const struct iovec *iov, int n, size_t len, int64_t now)
{
	struct egress g;
	uint16_t to;

	if (fdb_learn(&sw->fdb, e->src, vlan, in->id, now)) {
		drop(in, VSW_DROP_SPOOF);
		return;
	}
	egress_build(&g, e, vlan, iov, n, len);
	if (!eth_is_mcast(e->dst)) {
		to = fdb_lookup(&sw->fdb, e->dst, vlan, now);
		if (to == in->id)
			return; /* its destination is where it came from: filtered */
		if (to != FDB_NO_PORT && sw->port[to] && member(sw->port[to], vlan)) {
			deliver(sw->port[to], &g, vlan, false);
			add(&sw->forwarded, 1);
			return;
		}
	}
	/* The default queue's way: everyone in the VLAN but the source. */
	add(&sw->flooded_frames, 1);
	for (unsigned i = 0; i < sw->nports; i++) {
		struct vsw_port *p = sw->port[i];

		if (p && p != in && member(p, vlan))
			deliver(p, &g, vlan, true);
	}
}

void
vsw_sort(struct vsw *sw, int64_t now)
{
	for (unsigned i = 0; i < sw->defq_n; i++) {
		struct vsw_defq_slot *s = &sw->defq[i];
		struct iovec v = { s->frame, s->len };
		struct vsw_port *in = sw->port[s->in];
		struct eth_info e;
		int vlan;

		if (!in)
			continue; /* the port went while its frame waited */
		/* The host classifies what the default queue holds (a second copy follows). */
		vlan = admit(sw, in, &v, 1, s->len, &e);
		if (vlan >= 0)
			classify(sw, in, &e, (uint16_t)vlan, &v, 1, s->len, now);
	}
	add(&sw->sorted, sw->defq_n);
	sw->defq_n = 0;
}

void
vsw_input(struct vsw *sw, struct vsw_port *in, const struct iovec *frame, int n, size_t len,
	  int64_t now)
{
	struct eth_info e;
	int vlan;

	add(&in->c.rx_pkts, 1);
	add(&in->c.rx_bytes, len);
	if (in->mirror)
		in->mirror(in, frame, n, len, false); /* as it came, dropped or not */
	if (!in->up) {
		drop(in, VSW_DROP_DOWN);
		return;
	}
	if (!sw->vmq) {
		/* One shared queue first: copy the frame in as it came, sort later. */
		if (len > VSW_FRAME_MAX) {
			drop(in, VSW_DROP_MTU);
			return;
		}
		if (sw->defq_n == VSW_DEFQ_SLOTS)
			vsw_sort(sw, now);
		struct vsw_defq_slot *s = &sw->defq[sw->defq_n++];
		s->in = in->id;
		s->len = (uint16_t)len;
		gather(frame, n, 0, s->frame, len);
		return;
	}
	vlan = admit(sw, in, frame, n, len, &e);
	if (vlan >= 0)
		classify(sw, in, &e, (uint16_t)vlan, frame, n, len, now);
}
