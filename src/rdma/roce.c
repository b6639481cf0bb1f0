/* SPDX-License-Identifier: MIT */
/* RoCE v2 frames: building, parsing, the ICRC (see roce.h). */
#include <errno.h>
#include <string.h>

#include <isa-l/crc.h>

#include "roce.h"

#define ETHERTYPE_IPV4_ 0x0800
#define ETHERTYPE_IPV6_ 0x86dd
#define ETHERTYPE_VLAN_ 0x8100
#define IPPROTO_UDP_	17
#define IPV4_DF		0x4000

/* The opcodes implemented, with the headers each carries (IBA 9.2, table 38). */
static const struct {
	const char *name;
	unsigned flags;
} opcodes[ROCE_OPCODE_COUNT] = {
	[ROCE_SEND_FIRST] = { "SEND_FIRST", ROCE_F_PAYLOAD | ROCE_F_FIRST },
	[ROCE_SEND_MIDDLE] = { "SEND_MIDDLE", ROCE_F_PAYLOAD | ROCE_F_MIDDLE },
	[ROCE_SEND_LAST] = { "SEND_LAST", ROCE_F_PAYLOAD | ROCE_F_LAST },
	[ROCE_SEND_LAST_IMM] = { "SEND_LAST_IMM", ROCE_F_IMMDT | ROCE_F_PAYLOAD | ROCE_F_LAST },
	[ROCE_SEND_ONLY] = { "SEND_ONLY", ROCE_F_PAYLOAD | ROCE_F_ONLY },
	[ROCE_SEND_ONLY_IMM] = { "SEND_ONLY_IMM", ROCE_F_IMMDT | ROCE_F_PAYLOAD | ROCE_F_ONLY },
	[ROCE_WRITE_FIRST] = { "WRITE_FIRST", ROCE_F_RETH | ROCE_F_PAYLOAD | ROCE_F_FIRST },
	[ROCE_WRITE_MIDDLE] = { "WRITE_MIDDLE", ROCE_F_PAYLOAD | ROCE_F_MIDDLE },
	[ROCE_WRITE_LAST] = { "WRITE_LAST", ROCE_F_PAYLOAD | ROCE_F_LAST },
	[ROCE_WRITE_LAST_IMM] = { "WRITE_LAST_IMM", ROCE_F_IMMDT | ROCE_F_PAYLOAD | ROCE_F_LAST },
	[ROCE_WRITE_ONLY] = { "WRITE_ONLY", ROCE_F_RETH | ROCE_F_PAYLOAD | ROCE_F_ONLY },
	[ROCE_WRITE_ONLY_IMM] = { "WRITE_ONLY_IMM",
				  ROCE_F_RETH | ROCE_F_IMMDT | ROCE_F_PAYLOAD | ROCE_F_ONLY },
	[ROCE_READ_REQ] = { "READ_REQ", ROCE_F_RETH },
	[ROCE_READ_RESP_FIRST] = { "READ_RESP_FIRST", ROCE_F_AETH | ROCE_F_PAYLOAD | ROCE_F_FIRST },
	[ROCE_READ_RESP_MIDDLE] = { "READ_RESP_MIDDLE", ROCE_F_PAYLOAD | ROCE_F_MIDDLE },
	[ROCE_READ_RESP_LAST] = { "READ_RESP_LAST", ROCE_F_AETH | ROCE_F_PAYLOAD | ROCE_F_LAST },
	[ROCE_READ_RESP_ONLY] = { "READ_RESP_ONLY", ROCE_F_AETH | ROCE_F_PAYLOAD | ROCE_F_ONLY },
	[ROCE_ACK] = { "ACK", ROCE_F_AETH },
	[ROCE_ATOMIC_ACK] = { "ATOMIC_ACK", ROCE_F_AETH | ROCE_F_ATOMICACKETH },
	[ROCE_CMP_SWAP] = { "CMP_SWAP", ROCE_F_ATOMICETH },
	[ROCE_FETCH_ADD] = { "FETCH_ADD", ROCE_F_ATOMICETH },
};

static uint16_t
get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t
get24(const uint8_t *p)
{
	return (uint32_t)p[0] << 16 | (uint32_t)p[1] << 8 | p[2];
}

static uint32_t
get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | get24(p + 1);
}

static uint64_t
get64(const uint8_t *p)
{
	return (uint64_t)get32(p) << 32 | get32(p + 4);
}

static void
put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void
put24(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 16);
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)v;
}

static void
put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	put24(p + 1, v);
}

static void
put64(uint8_t *p, uint64_t v)
{
	put32(p, (uint32_t)(v >> 32));
	put32(p + 4, (uint32_t)v);
}

static void
put32le(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t
get32le(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Internet checksum: 16-bit ones' complement sum, then folded. */
static uint32_t
sum16(uint32_t sum, const uint8_t *p, size_t len)
{
	size_t i;

	for (i = 0; i + 2 <= len; i += 2) {
		sum += get16(p + i);
		sum = (sum & 0xffff) + (sum >> 16);
	}
	if (i < len) {
		sum += (uint32_t)p[i] << 8;
		sum = (sum & 0xffff) + (sum >> 16);
	}
	return sum;
}

static uint16_t
fold(uint32_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

/* The UDP checksum of the datagram @udp (@len bytes) with its pseudo-header. */
static uint16_t
udp_csum(const uint8_t *ip, bool ipv6, const uint8_t *udp, size_t len)
{
	uint32_t sum = 0;
	uint8_t tail[8] = { 0 };
	uint16_t c;

	if (ipv6) {
		sum = sum16(sum, ip + 8, 32);
		put32(tail, (uint32_t)len);
		tail[7] = IPPROTO_UDP_;
		sum = sum16(sum, tail, 8);
	} else {
		sum = sum16(sum, ip + 12, 8);
		tail[1] = IPPROTO_UDP_;
		put16(tail + 2, (uint16_t)len);
		sum = sum16(sum, tail, 4);
	}
	/* The checksum field itself counts as zero. */
	sum = sum16(sum, udp, 6);
	sum = sum16(sum, udp + 8, len - 8);
	c = fold(sum);
	return c ? c : 0xffff; /* 0 means "no checksum" */
}

unsigned
roce_opcode_flags(uint8_t opcode)
{
	return opcode < ROCE_OPCODE_COUNT ? opcodes[opcode].flags : 0;
}

const char *
roce_opcode_name(uint8_t opcode)
{
	return opcode < ROCE_OPCODE_COUNT ? opcodes[opcode].name : NULL;
}

size_t
roce_ib_hdr_len(uint8_t opcode)
{
	unsigned fl = roce_opcode_flags(opcode);
	size_t n = ROCE_BTH_LEN;

	if (fl & ROCE_F_RETH)
		n += ROCE_RETH_LEN;
	if (fl & ROCE_F_AETH)
		n += ROCE_AETH_LEN;
	if (fl & ROCE_F_ATOMICETH)
		n += ROCE_ATOMICETH_LEN;
	if (fl & ROCE_F_ATOMICACKETH)
		n += ROCE_ATOMICACKETH_LEN;
	if (fl & ROCE_F_IMMDT)
		n += ROCE_IMMDT_LEN;
	return n;
}

bool
roce_mtu_valid(unsigned mtu)
{
	return mtu == 256 || mtu == 512 || mtu == 1024 || mtu == 2048 || mtu == 4096;
}

uint32_t
roce_icrc(const uint8_t *ip, size_t len, bool ipv6)
{
	/* The masked LRH, then the masked IP, UDP and BTH headers. */
	uint8_t h[8 + ROCE_IPV6_LEN + ROCE_UDP_LEN + ROCE_BTH_LEN];
	size_t iplen = ipv6 ? ROCE_IPV6_LEN : ROCE_IPV4_LEN;
	size_t n = iplen + ROCE_UDP_LEN + ROCE_BTH_LEN;
	uint8_t *l3 = h + 8, *udp = l3 + iplen, *bth = udp + ROCE_UDP_LEN;
	uint32_t crc;

	memset(h, 0xff, 8);
	memcpy(l3, ip, n);
	if (ipv6) {
		/* Version kept; traffic class and flow label all ones. */
		l3[0] |= 0x0f;
		memset(l3 + 1, 0xff, 3);
		l3[7] = 0xff; /* hop limit */
	} else {
		l3[1] = 0xff;		  /* TOS: DSCP and ECN */
		l3[8] = 0xff;		  /* TTL */
		memset(l3 + 10, 0xff, 2); /* header checksum */
	}
	memset(udp + 6, 0xff, 2); /* UDP checksum */
	bth[4] = 0xff;		  /* FECN, BECN, reserved */
	crc = crc32_gzip_refl(0, h, 8 + n);
	return crc32_gzip_refl(crc, ip + n, len - n - ROCE_ICRC_LEN);
}

#define FAIL(err, reason)                                                                          \
	do {                                                                                       \
		if (why)                                                                           \
			*why = (reason);                                                           \
		return -(err);                                                                     \
	} while (0)

/* The checks both directions make on the IB part, with its padded payload length. */
static int
check_ib(const struct roce_ib *ib, unsigned mtu, const char **why)
{
	unsigned fl = roce_opcode_flags(ib->opcode);
	size_t n = ib->payload_len;

	if (!fl)
		FAIL(EINVAL, "opcode not implemented");
	if (ib->dqpn >> 24)
		FAIL(EINVAL, "destination QP wider than 24 bits");
	if (ib->psn >> 24)
		FAIL(EINVAL, "PSN wider than 24 bits");
	if (!(fl & ROCE_F_PAYLOAD) && n)
		FAIL(EBADMSG, "payload on an opcode that carries none");
	if ((fl & (ROCE_F_FIRST | ROCE_F_MIDDLE)) && n != mtu)
		FAIL(EBADMSG, "first or middle packet's payload is not the path MTU");
	if ((fl & ROCE_F_LAST) && (n < 1 || n > mtu))
		FAIL(EBADMSG, "last packet's payload not 1 to path MTU bytes");
	if ((fl & ROCE_F_ONLY) && n > mtu)
		FAIL(EBADMSG, "payload larger than the path MTU");
	if (fl & ROCE_F_AETH) {
		const struct roce_aeth *a = &ib->aeth;

		if (a->msn >> 24)
			FAIL(EINVAL, "MSN wider than 24 bits");
		if (a->value > 31)
			FAIL(EINVAL, "AETH syndrome value wider than 5 bits");
		if (a->kind != ROCE_AETH_ACK && a->kind != ROCE_AETH_RNR_NAK &&
		    a->kind != ROCE_AETH_NAK)
			FAIL(EBADMSG, "AETH syndrome reserved");
		if (a->kind == ROCE_AETH_NAK && a->value > ROCE_NAK_INVALID_RD_REQ)
			FAIL(EBADMSG, "AETH NAK code reserved");
		if (ib->opcode != ROCE_ACK && a->kind != ROCE_AETH_ACK)
			FAIL(EBADMSG, "NAK in a read response or atomic acknowledge");
	}
	return 0;
}

ssize_t
roce_build(const struct roce_frame *f, unsigned mtu, uint8_t *buf, size_t cap, const char **why)
{
	const struct roce_ib *ib = &f->ib;
	unsigned fl = roce_opcode_flags(ib->opcode);
	size_t iplen = f->ipv6 ? ROCE_IPV6_LEN : ROCE_IPV4_LEN;
	size_t l2 = ROCE_ETH_LEN + (f->vlan ? ROCE_VLAN_LEN : 0);
	size_t pad, ibl, udpl, total;
	uint8_t *ip, *udp, *p;
	int err;

	if (!roce_mtu_valid(mtu))
		FAIL(EINVAL, "path MTU is not an IB MTU");
	err = check_ib(ib, mtu, why);
	if (err)
		return err;
	if (ib->payload_len && !ib->payload)
		FAIL(EINVAL, "payload length without a payload");
	if (f->ipv6 && f->flow_label >> 20)
		FAIL(EINVAL, "flow label wider than 20 bits");
	pad = (4 - ib->payload_len % 4) % 4;
	ibl = roce_ib_hdr_len(ib->opcode) + ib->payload_len + pad + ROCE_ICRC_LEN;
	udpl = ROCE_UDP_LEN + ibl;
	total = l2 + iplen + udpl;
	if (total > cap)
		FAIL(ENOSPC, "buffer too small");

	/* Ethernet */
	memcpy(buf, f->dst_mac, 6);
	memcpy(buf + 6, f->src_mac, 6);
	p = buf + 12;
	if (f->vlan) {
		put16(p, ETHERTYPE_VLAN_);
		put16(p + 2, f->tci);
		p += 4;
	}
	put16(p, f->ipv6 ? ETHERTYPE_IPV6_ : ETHERTYPE_IPV4_);
	ip = buf + l2;

	/* IP */
	memset(ip, 0, iplen);
	if (f->ipv6) {
		put32(ip, 6u << 28 | (uint32_t)f->tclass << 20 | f->flow_label);
		put16(ip + 4, (uint16_t)udpl);
		ip[6] = IPPROTO_UDP_;
		ip[7] = f->ttl;
		memcpy(ip + 8, f->src_ip, 16);
		memcpy(ip + 24, f->dst_ip, 16);
	} else {
		ip[0] = 0x45;
		ip[1] = f->tclass;
		put16(ip + 2, (uint16_t)(iplen + udpl));
		put16(ip + 4, f->ip_id);
		put16(ip + 6, IPV4_DF);
		ip[8] = f->ttl;
		ip[9] = IPPROTO_UDP_;
		memcpy(ip + 12, f->src_ip, 4);
		memcpy(ip + 16, f->dst_ip, 4);
		put16(ip + 10, fold(sum16(0, ip, ROCE_IPV4_LEN)));
	}

	/* UDP */
	udp = ip + iplen;
	put16(udp, f->src_port);
	put16(udp + 2, ROCE_UDP_PORT);
	put16(udp + 4, (uint16_t)udpl);
	put16(udp + 6, 0);

	/* BTH */
	p = udp + ROCE_UDP_LEN;
	p[0] = ib->opcode;
	p[1] = (uint8_t)((ib->se ? 0x80 : 0) | (ib->mig ? 0x40 : 0) | pad << 4); /* TVer 0 */
	put16(p + 2, ib->pkey);
	put32(p + 4, (ib->fecn ? 1u << 31 : 0) | (ib->becn ? 1u << 30 : 0) | ib->dqpn);
	put32(p + 8, (ib->ackreq ? 1u << 31 : 0) | ib->psn);
	p += ROCE_BTH_LEN;

	/* Extension headers, in the order IBA 9.2 gives them. */
	if (fl & ROCE_F_RETH) {
		put64(p, ib->reth.va);
		put32(p + 8, ib->reth.rkey);
		put32(p + 12, ib->reth.len);
		p += ROCE_RETH_LEN;
	}
	if (fl & ROCE_F_AETH) {
		put32(p, (uint32_t)(ib->aeth.kind << 5 | ib->aeth.value) << 24 | ib->aeth.msn);
		p += ROCE_AETH_LEN;
	}
	if (fl & ROCE_F_ATOMICETH) {
		put64(p, ib->atomic.va);
		put32(p + 8, ib->atomic.rkey);
		put64(p + 12, ib->atomic.swap_add);
		put64(p + 20, ib->atomic.compare);
		p += ROCE_ATOMICETH_LEN;
	}
	if (fl & ROCE_F_ATOMICACKETH) {
		put64(p, ib->orig);
		p += ROCE_ATOMICACKETH_LEN;
	}
	if (fl & ROCE_F_IMMDT) {
		put32(p, ib->imm);
		p += ROCE_IMMDT_LEN;
	}
	if (ib->payload_len)
		memmove(p, ib->payload, ib->payload_len);
	p += ib->payload_len;
	memset(p, 0, pad);
	p += pad;

	/* The UDP checksum covers the ICRC: it is computed last. */
	put32le(p, roce_icrc(ip, (size_t)(p + ROCE_ICRC_LEN - ip), f->ipv6));
	if (f->udp_csum)
		put16(udp + 6, udp_csum(ip, f->ipv6, udp, udpl));
	return (ssize_t)total;
}

int
roce_parse(const uint8_t *buf, size_t len, unsigned mtu, struct roce_frame *f, const char **why)
{
	struct roce_ib *ib = &f->ib;
	const uint8_t *ip, *udp, *p, *end;
	size_t l2 = ROCE_ETH_LEN, iplen, udpl, avail, hl;
	uint16_t type, csum;
	unsigned fl, pad;
	int err;

	memset(f, 0, sizeof(*f));
	if (!roce_mtu_valid(mtu))
		FAIL(EINVAL, "path MTU is not an IB MTU");

	/* Ethernet, at most one 802.1Q tag. */
	if (len < ROCE_ETH_LEN)
		FAIL(EBADMSG, "truncated Ethernet header");
	memcpy(f->dst_mac, buf, 6);
	memcpy(f->src_mac, buf + 6, 6);
	type = get16(buf + 12);
	if (type == ETHERTYPE_VLAN_) {
		if (len < ROCE_ETH_LEN + ROCE_VLAN_LEN)
			FAIL(EBADMSG, "truncated 802.1Q tag");
		f->vlan = true;
		f->tci = get16(buf + 14);
		type = get16(buf + 16);
		l2 += ROCE_VLAN_LEN;
	}
	ip = buf + l2;
	avail = len - l2;

	/* IP: iplen its header, udpl what it carries (bytes past it are ignored). */
	if (type == ETHERTYPE_IPV4_) {
		size_t tot;
		uint16_t frag;

		if (avail < ROCE_IPV4_LEN)
			FAIL(EBADMSG, "truncated IPv4 header");
		if (ip[0] >> 4 != 4)
			FAIL(EBADMSG, "IPv4 EtherType, IP version not 4");
		if ((ip[0] & 0x0f) != 5)
			FAIL(EINVAL, "IPv4 options");
		iplen = ROCE_IPV4_LEN;
		tot = get16(ip + 2);
		if (tot < iplen)
			FAIL(EBADMSG, "IPv4 total length shorter than its header");
		if (tot > avail)
			FAIL(EBADMSG, "truncated IPv4 packet");
		frag = get16(ip + 6);
		if (frag & 0x3fff) /* MF or an offset; DF and the reserved bit ignored */
			FAIL(EINVAL, "IPv4 fragment");
		if (ip[9] != IPPROTO_UDP_)
			FAIL(EINVAL, "not UDP");
		if (fold(sum16(0, ip, ROCE_IPV4_LEN)))
			FAIL(EBADMSG, "bad IPv4 header checksum");
		f->tclass = ip[1];
		f->ip_id = get16(ip + 4);
		f->ttl = ip[8];
		memcpy(f->src_ip, ip + 12, 4);
		memcpy(f->dst_ip, ip + 16, 4);
		udpl = tot - iplen;
	} else if (type == ETHERTYPE_IPV6_) {
		uint32_t w;

		if (avail < ROCE_IPV6_LEN)
			FAIL(EBADMSG, "truncated IPv6 header");
		w = get32(ip);
		if (w >> 28 != 6)
			FAIL(EBADMSG, "IPv6 EtherType, IP version not 6");
		if (ip[6] != IPPROTO_UDP_)
			FAIL(EINVAL, "not UDP (or IPv6 extension headers)");
		iplen = ROCE_IPV6_LEN;
		udpl = get16(ip + 4);
		if (udpl > avail - iplen)
			FAIL(EBADMSG, "truncated IPv6 packet");
		f->ipv6 = true;
		f->tclass = (uint8_t)(w >> 20);
		f->flow_label = w & 0xfffff;
		f->ttl = ip[7];
		memcpy(f->src_ip, ip + 8, 16);
		memcpy(f->dst_ip, ip + 24, 16);
	} else {
		FAIL(EINVAL, "not IPv4 or IPv6");
	}

	/* UDP */
	udp = ip + iplen;
	if (udpl < ROCE_UDP_LEN)
		FAIL(EBADMSG, "truncated UDP header");
	if (get16(udp + 2) != ROCE_UDP_PORT)
		FAIL(EINVAL, "not UDP port 4791");
	if (get16(udp + 4) != udpl)
		FAIL(EBADMSG, "UDP length differs from the IP payload length");
	f->src_port = get16(udp);
	csum = get16(udp + 6);
	if (csum) {
		if (udp_csum(ip, f->ipv6, udp, udpl) != csum)
			FAIL(EBADMSG, "bad UDP checksum");
		f->udp_csum = true;
	}

	/* The IB part: BTH, then the ICRC over all of it. */
	p = udp + ROCE_UDP_LEN;
	end = udp + udpl;
	if ((size_t)(end - p) < ROCE_BTH_LEN + ROCE_ICRC_LEN)
		FAIL(EBADMSG, "truncated BTH");
	if ((end - p) % 4)
		FAIL(EBADMSG, "IB packet length not a multiple of 4");
	end -= ROCE_ICRC_LEN;
	f->icrc = get32le(end);
	if (roce_icrc(ip, iplen + udpl, f->ipv6) != f->icrc)
		FAIL(EBADMSG, "bad ICRC");
	if (p[1] & 0x0f)
		FAIL(EINVAL, "BTH transport version not 0");
	ib->opcode = p[0];
	fl = roce_opcode_flags(ib->opcode);
	if (!fl)
		FAIL(EINVAL, "opcode not implemented");
	ib->se = p[1] & 0x80;
	ib->mig = p[1] & 0x40;
	pad = p[1] >> 4 & 3;
	ib->pkey = get16(p + 2);
	ib->fecn = p[4] & 0x80;
	ib->becn = p[4] & 0x40;
	ib->dqpn = get24(p + 5);
	ib->ackreq = p[8] & 0x80;
	ib->psn = get24(p + 9);

	hl = roce_ib_hdr_len(ib->opcode);
	if ((size_t)(end - p) < hl)
		FAIL(EBADMSG, "truncated extension headers");
	p += ROCE_BTH_LEN;
	if (fl & ROCE_F_RETH) {
		ib->reth.va = get64(p);
		ib->reth.rkey = get32(p + 8);
		ib->reth.len = get32(p + 12);
		p += ROCE_RETH_LEN;
	}
	if (fl & ROCE_F_AETH) {
		if (p[0] & 0x80)
			FAIL(EBADMSG, "AETH syndrome reserved");
		ib->aeth.kind = p[0] >> 5 & 3;
		ib->aeth.value = p[0] & 0x1f;
		ib->aeth.msn = get24(p + 1);
		p += ROCE_AETH_LEN;
	}
	if (fl & ROCE_F_ATOMICETH) {
		ib->atomic.va = get64(p);
		ib->atomic.rkey = get32(p + 8);
		ib->atomic.swap_add = get64(p + 12);
		ib->atomic.compare = get64(p + 20);
		p += ROCE_ATOMICETH_LEN;
	}
	if (fl & ROCE_F_ATOMICACKETH) {
		ib->orig = get64(p);
		p += ROCE_ATOMICACKETH_LEN;
	}
	if (fl & ROCE_F_IMMDT) {
		ib->imm = get32(p);
		p += ROCE_IMMDT_LEN;
	}

	/* Payload and pad: the pad bytes' values are not checked (IBA: ignored). */
	if ((size_t)(end - p) < pad)
		FAIL(EBADMSG, "pad count larger than the payload");
	if (pad && !(fl & ROCE_F_PAYLOAD))
		FAIL(EBADMSG, "pad count on an opcode without payload");
	ib->payload_len = (size_t)(end - p) - pad;
	ib->payload = ib->payload_len ? p : NULL;
	err = check_ib(ib, mtu, why);
	if (err) {
		ib->payload = NULL;
		return err;
	}
	return 0;
}
