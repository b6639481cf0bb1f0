/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: RoCE v2 frames (src/rdma/roce.c). The first byte picks the
 * path MTU (sometimes one that is not an IB MTU) and the mode; the rest is
 * either a frame to parse, or the fields of a frame to build. A frame that
 * parses is built again from its fields and must parse to the same fields;
 * fields that build must parse back to themselves. Every refusal has a
 * reason, and a refused parse leaves no payload pointer.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "rdma/roce.h"

static uint8_t out[ROCE_FRAME_MAX], out2[ROCE_FRAME_MAX];

static void
same(const struct roce_frame *a, const struct roce_frame *b)
{
	unsigned fl = roce_opcode_flags(a->ib.opcode);
	size_t ipl = a->ipv6 ? 16 : 4;

	if (memcmp(a->dst_mac, b->dst_mac, 6) || memcmp(a->src_mac, b->src_mac, 6) ||
	    a->vlan != b->vlan || (a->vlan && a->tci != b->tci) || a->ipv6 != b->ipv6 ||
	    memcmp(a->src_ip, b->src_ip, ipl) || memcmp(a->dst_ip, b->dst_ip, ipl) ||
	    a->tclass != b->tclass || a->ttl != b->ttl || a->src_port != b->src_port ||
	    a->udp_csum != b->udp_csum)
		abort();
	if (a->ipv6 ? a->flow_label != b->flow_label : a->ip_id != b->ip_id)
		abort();
	if (a->ib.opcode != b->ib.opcode || a->ib.se != b->ib.se || a->ib.mig != b->ib.mig ||
	    a->ib.fecn != b->ib.fecn || a->ib.becn != b->ib.becn || a->ib.ackreq != b->ib.ackreq ||
	    a->ib.pkey != b->ib.pkey || a->ib.dqpn != b->ib.dqpn || a->ib.psn != b->ib.psn)
		abort();
	if ((fl & ROCE_F_RETH) &&
	    (a->ib.reth.va != b->ib.reth.va || a->ib.reth.rkey != b->ib.reth.rkey ||
	     a->ib.reth.len != b->ib.reth.len))
		abort();
	if ((fl & ROCE_F_AETH) &&
	    (a->ib.aeth.kind != b->ib.aeth.kind || a->ib.aeth.value != b->ib.aeth.value ||
	     a->ib.aeth.msn != b->ib.aeth.msn))
		abort();
	if ((fl & ROCE_F_ATOMICETH) &&
	    (a->ib.atomic.va != b->ib.atomic.va || a->ib.atomic.rkey != b->ib.atomic.rkey ||
	     a->ib.atomic.swap_add != b->ib.atomic.swap_add ||
	     a->ib.atomic.compare != b->ib.atomic.compare))
		abort();
	if ((fl & ROCE_F_ATOMICACKETH) && a->ib.orig != b->ib.orig)
		abort();
	if ((fl & ROCE_F_IMMDT) && a->ib.imm != b->ib.imm)
		abort();
	if (a->ib.payload_len != b->ib.payload_len ||
	    (a->ib.payload_len && memcmp(a->ib.payload, b->ib.payload, a->ib.payload_len)))
		abort();
}

/* Build @f; when it builds, it must parse back to the same fields. */
static void
rebuild(const struct roce_frame *f, unsigned mtu, uint8_t *buf)
{
	struct roce_frame g;
	const char *why = NULL;
	ssize_t len = roce_build(f, mtu, buf, ROCE_FRAME_MAX, &why);

	if (len < 0) {
		if (!why || (len != -EINVAL && len != -EBADMSG && len != -ENOSPC))
			abort();
		return;
	}
	if (roce_parse(buf, (size_t)len, mtu, &g, &why))
		abort();
	same(f, &g);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const unsigned mtus[8] = { 256, 512, 1024, 2048, 4096, 256, 0, 300 };
	struct fz fz = { data, size };
	unsigned sel = (unsigned)fz_take(&fz, 1), mtu = mtus[sel & 7];
	struct roce_frame f;
	const char *why = NULL;
	int r;

	if (!(sel & 0x80)) {
		/* Arbitrary bytes as a frame. */
		r = roce_parse(fz.p, fz.n, mtu, &f, &why);
		if (r) {
			if ((r != -EINVAL && r != -EBADMSG) || !why || f.ib.payload)
				abort();
			return 0;
		}
		if (f.ib.payload_len > mtu ||
		    (f.ib.payload &&
		     (f.ib.payload < fz.p || f.ib.payload + f.ib.payload_len > fz.p + fz.n)))
			abort();
		rebuild(&f, mtu, out);
		return 0;
	}

	/* Fields to build, from the input. */
	memset(&f, 0, sizeof(f));
	for (int i = 0; i < 6; i++) {
		f.dst_mac[i] = (uint8_t)fz_take(&fz, 1);
		f.src_mac[i] = (uint8_t)fz_take(&fz, 1);
	}
	unsigned bits = (unsigned)fz_take(&fz, 2);
	f.vlan = bits & 1;
	f.ipv6 = bits & 2;
	f.udp_csum = bits & 4;
	f.ib.se = bits & 8;
	f.ib.mig = bits & 16;
	f.ib.fecn = bits & 32;
	f.ib.becn = bits & 64;
	f.ib.ackreq = bits & 128;
	f.tci = (uint16_t)fz_take(&fz, 2);
	for (int i = 0; i < 16; i++) {
		f.src_ip[i] = (uint8_t)fz_take(&fz, 1);
		f.dst_ip[i] = (uint8_t)fz_take(&fz, 1);
	}
	f.tclass = (uint8_t)fz_take(&fz, 1);
	f.ttl = (uint8_t)fz_take(&fz, 1);
	f.ip_id = (uint16_t)fz_take(&fz, 2);
	f.flow_label = (uint32_t)fz_take(&fz, 3) & (bits & 256 ? 0xffffff : 0xfffff);
	f.src_port = (uint16_t)fz_take(&fz, 2);
	f.ib.opcode = (uint8_t)(fz_take(&fz, 1) % (ROCE_OPCODE_COUNT + 2));
	f.ib.pkey = (uint16_t)fz_take(&fz, 2);
	f.ib.dqpn = (uint32_t)fz_take(&fz, 4) & (bits & 512 ? 0x1ffffff : 0xffffff);
	f.ib.psn = (uint32_t)fz_take(&fz, 3);
	f.ib.reth.va = fz_take(&fz, 8);
	f.ib.reth.rkey = (uint32_t)fz_take(&fz, 4);
	f.ib.reth.len = (uint32_t)fz_take(&fz, 4);
	f.ib.aeth.kind = (uint8_t)(fz_take(&fz, 1) & 3);
	f.ib.aeth.value = (uint8_t)(fz_take(&fz, 1) & (bits & 1024 ? 0x3f : 0x1f));
	f.ib.aeth.msn = (uint32_t)fz_take(&fz, 3);
	f.ib.atomic.va = fz_take(&fz, 8);
	f.ib.atomic.rkey = (uint32_t)fz_take(&fz, 4);
	f.ib.atomic.swap_add = fz_take(&fz, 8);
	f.ib.atomic.compare = fz_take(&fz, 8);
	f.ib.orig = fz_take(&fz, 8);
	f.ib.imm = (uint32_t)fz_take(&fz, 4);
	/* Payload: the path MTU (first/middle), or the rest of the input, up to it. */
	size_t want = (bits & 2048) ? mtu : (size_t)fz_take(&fz, 2) % (ROCE_MTU_MAX + 8);
	static uint8_t pl[ROCE_MTU_MAX + 8];
	memset(pl, 0xa5, sizeof(pl));
	memcpy(pl, fz.p, fz.n < want ? fz.n : want);
	f.ib.payload = want ? pl : NULL;
	f.ib.payload_len = want;
	rebuild(&f, mtu, out2);
	return 0;
}
