/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: frames through the switch's classifier. The input sets up a
 * switch (MTU, VMQ on or off) with ports in VLANs (access, untagged,
 * trunks) and configured addresses, then sends frames: arbitrary bytes,
 * or headers built from a few chosen addresses and tags so that learning,
 * lookups, moves and floods happen, in pieces cut anywhere, with time
 * moving on and the table aged now and then. Every frame a port receives
 * must be whole (its pieces add up), within the largest frame, and carry a
 * tag exactly when the port is a trunk and the VLAN is not 0.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "switch/vswitch.h"

#define NPORTS 6

struct fport {
	struct vsw_port p;
	int n;
};

static uint8_t sink[VSW_FRAME_MAX];

static int
fenqueue(struct vsw_port *vp, const struct iovec *iov, int iovcnt, size_t len)
{
	struct fport *f = (struct fport *)vp;
	size_t off = 0;

	for (int i = 0; i < iovcnt; i++) {
		if (off + iov[i].iov_len > sizeof(sink))
			abort();
		memcpy(sink + off, iov[i].iov_base, iov[i].iov_len);
		off += iov[i].iov_len;
	}
	if (off != len || len < ETH_HDR)
		abort();
	bool tagged = sink[12] == 0x81 && sink[13] == 0x00;
	if (vp->vlan != VLAN_TRUNK && tagged)
		abort(); /* an access or untagged port never sees a tag */
	if (++f->n > 8)
		return -1; /* a small queue: full queues happen */
	return 0;
}

static const struct vsw_port_ops fops = { .enqueue = fenqueue };

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t frame[VSW_FRAME_MAX + 64];
	struct fz f = { data, size };
	struct fport port[NPORTS];
	struct vsw sw;
	int64_t now = 0;
	uint32_t mtu = 68 + (uint32_t)(fz_take(&f, 2) % (VSW_MTU_MAX - 67));

	if (vsw_init(&sw, "fz", mtu, fz_take(&f, 1) & 1))
		abort();
	for (int i = 0; i < NPORTS; i++) {
		static const uint16_t vlans[] = { 0, 10, 20, VLAN_TRUNK };
		memset(&port[i], 0, sizeof(port[i]));
		port[i].p.ops = &fops;
		port[i].p.up = fz_take(&f, 1) % 8 != 0;
		port[i].p.vlan = vlans[fz_take(&f, 1) % 4];
		if (vsw_port_add(&sw, &port[i].p) < 0)
			abort();
	}
	for (int steps = 0; f.n && steps < 256; steps++) {
		unsigned op = (unsigned)fz_take(&f, 1);
		struct fport *in = &port[op % NPORTS];
		size_t len = (size_t)fz_take(&f, 2) % sizeof(frame), cut;

		switch ((op >> 3) % 4) {
		case 0: /* raw bytes */
			for (size_t i = 0; i < len && f.n; i++)
				frame[i] = (uint8_t)fz_take(&f, 1);
			break;
		case 1: { /* a header from a handful of addresses and tags */
			unsigned a = (unsigned)fz_take(&f, 1), tag = (unsigned)fz_take(&f, 2);
			memset(frame, 0, sizeof(frame));
			frame[0] = (a & 0x80) ? 0xff : 0x02, frame[5] = a & 7;
			frame[6] = 0x02, frame[11] = (a >> 3) & 7;
			if (tag & 0x8000)
				frame[12] = 0x81, frame[14] = (uint8_t)(tag >> 8 & 0x0f),
				frame[15] = (uint8_t)tag;
			break;
		}
		case 2: { /* a configured address */
			uint8_t m[6] = { 0x02, 0, 0, 0, 0, (uint8_t)fz_take(&f, 1) };
			(void)vsw_port_mac(&sw, &in->p, m);
			continue;
		}
		default: /* time passes; the table is aged */
			now += (int64_t)fz_take(&f, 4) * 1000000;
			fdb_age(&sw.fdb, now);
			if (op & 0x80)
				vsw_sort(&sw, now);
			continue;
		}
		cut = len ? (size_t)fz_take(&f, 2) % (len + 1) : 0;
		struct iovec v[2] = { { frame, cut }, { frame + cut, len - cut } };
		vsw_input(&sw, &in->p, v, 2, len, now);
		if (op & 0x40)
			vsw_sort(&sw, now);
		for (int i = 0; i < NPORTS; i++)
			port[i].n = 0;
	}
	vsw_sort(&sw, now);
	vsw_free(&sw);
	return 0;
}
