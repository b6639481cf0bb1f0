/* SPDX-License-Identifier: MIT */
/*
 * RoCE v2 wire format (src/rdma/roce.c): round trips for every opcode, the
 * ICRC against a bitwise CRC-32 computed here, masked and unmasked fields,
 * truncations, refusals with their reasons, and Wireshark's InfiniBand
 * dissector reading the frames back from a pcap file.
 */
#include <errno.h>
#include <pcap/pcap.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "rdma/roce.h"

#define MTU 256

static uint8_t payload[ROCE_MTU_MAX];

/* CRC-32 (IEEE 802.3, reflected, polynomial 0xedb88320), a bit at a time. */
static uint32_t
crc32_bitwise(uint32_t crc, const uint8_t *p, size_t len)
{
	crc = ~crc;
	for (size_t i = 0; i < len; i++) {
		crc ^= p[i];
		for (int b = 0; b < 8; b++)
			crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1)));
	}
	return ~crc;
}

/*
 * The ICRC as IBA Annex A17 describes it, written out independently of
 * roce.c: a copy of the IP packet with the variant fields set to ones,
 * after 8 bytes of ones, without the ICRC field.
 */
static uint32_t
icrc_expected(const uint8_t *ip, size_t len, bool v6)
{
	static uint8_t copy[8 + ROCE_FRAME_MAX];
	size_t udp = v6 ? 40 : 20;

	memset(copy, 0xff, 8);
	memcpy(copy + 8, ip, len - 4);
	if (v6) {
		copy[8 + 0] |= 0x0f; /* traffic class (low nibble of byte 0 and high of byte 1) */
		copy[8 + 1] = 0xff;  /* traffic class, flow label */
		copy[8 + 2] = 0xff;
		copy[8 + 3] = 0xff;
		copy[8 + 7] = 0xff; /* hop limit */
	} else {
		copy[8 + 1] = 0xff;  /* TOS */
		copy[8 + 8] = 0xff;  /* TTL */
		copy[8 + 10] = 0xff; /* header checksum */
		copy[8 + 11] = 0xff;
	}
	copy[8 + udp + 6] = 0xff; /* UDP checksum */
	copy[8 + udp + 7] = 0xff;
	copy[8 + udp + 8 + 4] = 0xff; /* BTH byte 4: FECN, BECN, reserved */
	return crc32_bitwise(0, copy, 8 + len - 4);
}

static uint16_t
ip_csum(const uint8_t *p, size_t len)
{
	uint32_t s = 0;

	for (size_t i = 0; i + 1 < len; i += 2)
		s += (uint32_t)(p[i] << 8 | p[i + 1]);
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return (uint16_t)~s;
}

/* After a change: the IPv4 header checksum and the ICRC made right again (no VLAN). */
static void
refix(uint8_t *f, size_t len, bool v6)
{
	uint8_t *ip = f + ROCE_ETH_LEN;
	uint32_t c;

	if (!v6) {
		ip[10] = ip[11] = 0;
		uint16_t s = ip_csum(ip, 20);
		ip[10] = (uint8_t)(s >> 8);
		ip[11] = (uint8_t)s;
	}
	c = icrc_expected(ip, len - ROCE_ETH_LEN, v6);
	for (int i = 0; i < 4; i++)
		f[len - 4 + i] = (uint8_t)(c >> (8 * i));
}

/* A frame of opcode @op with fields from @seed, payload @n bytes of payload[]. */
static void
sample(struct roce_frame *f, uint8_t op, size_t n, bool v6, uint64_t seed)
{
	uint64_t r = seed * 0x9e3779b97f4a7c15ull + op + 1;

	memset(f, 0, sizeof(*f));
	memcpy(f->dst_mac, "\x02\x00\x00\x00\x00\x02", 6);
	memcpy(f->src_mac, "\x02\x00\x00\x00\x00\x01", 6);
	f->ipv6 = v6;
	if (v6) {
		memcpy(f->src_ip,
		       "\xfd\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01", 16);
		memcpy(f->dst_ip,
		       "\xfd\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02", 16);
		f->flow_label = (uint32_t)th_rand(&r) & 0xfffff;
	} else {
		memcpy(f->src_ip, "\x0a\x00\x00\x01", 4);
		memcpy(f->dst_ip, "\x0a\x00\x00\x02", 4);
	}
	f->tclass = 0x68 | 2; /* DSCP 26, ECT(0) */
	f->ttl = 64;
	f->ip_id = (uint16_t)th_rand(&r);
	f->src_port = (uint16_t)(49152 + th_rand(&r) % 16384);
	f->ib.opcode = op;
	f->ib.se = th_rand(&r) & 1;
	f->ib.ackreq = th_rand(&r) & 1;
	f->ib.pkey = ROCE_PKEY_DEFAULT;
	f->ib.dqpn = (uint32_t)th_rand(&r) & 0xffffff;
	f->ib.psn = (uint32_t)th_rand(&r) & 0xffffff;
	f->ib.reth.va = th_rand(&r);
	f->ib.reth.rkey = (uint32_t)th_rand(&r);
	f->ib.reth.len = (uint32_t)th_rand(&r);
	f->ib.aeth.kind = ROCE_AETH_ACK;
	f->ib.aeth.value = (uint8_t)(th_rand(&r) % 32);
	f->ib.aeth.msn = (uint32_t)th_rand(&r) & 0xffffff;
	f->ib.atomic.va = th_rand(&r) & ~7ull;
	f->ib.atomic.rkey = (uint32_t)th_rand(&r);
	f->ib.atomic.swap_add = th_rand(&r);
	f->ib.atomic.compare = th_rand(&r);
	f->ib.orig = th_rand(&r);
	f->ib.imm = (uint32_t)th_rand(&r);
	f->ib.payload = n ? payload : NULL;
	f->ib.payload_len = n;
}

/* The fields an opcode carries agree. */
static void
assert_same(const struct roce_frame *a, const struct roce_frame *b)
{
	unsigned fl = roce_opcode_flags(a->ib.opcode);

	ASSERT_MEM_EQ(a->dst_mac, b->dst_mac, 6);
	ASSERT_MEM_EQ(a->src_mac, b->src_mac, 6);
	ASSERT_EQ(a->vlan, b->vlan);
	if (a->vlan)
		ASSERT_EQ(a->tci, b->tci);
	ASSERT_EQ(a->ipv6, b->ipv6);
	ASSERT_MEM_EQ(a->src_ip, b->src_ip, a->ipv6 ? 16 : 4);
	ASSERT_MEM_EQ(a->dst_ip, b->dst_ip, a->ipv6 ? 16 : 4);
	ASSERT_EQ(a->tclass, b->tclass);
	ASSERT_EQ(a->ttl, b->ttl);
	if (a->ipv6)
		ASSERT_EQ(a->flow_label, b->flow_label);
	else
		ASSERT_EQ(a->ip_id, b->ip_id);
	ASSERT_EQ(a->src_port, b->src_port);
	ASSERT_EQ(a->udp_csum, b->udp_csum);
	ASSERT_EQ(a->ib.opcode, b->ib.opcode);
	ASSERT_EQ(a->ib.se, b->ib.se);
	ASSERT_EQ(a->ib.mig, b->ib.mig);
	ASSERT_EQ(a->ib.fecn, b->ib.fecn);
	ASSERT_EQ(a->ib.becn, b->ib.becn);
	ASSERT_EQ(a->ib.ackreq, b->ib.ackreq);
	ASSERT_EQ(a->ib.pkey, b->ib.pkey);
	ASSERT_EQ(a->ib.dqpn, b->ib.dqpn);
	ASSERT_EQ(a->ib.psn, b->ib.psn);
	if (fl & ROCE_F_RETH) {
		ASSERT_EQ(a->ib.reth.va, b->ib.reth.va);
		ASSERT_EQ(a->ib.reth.rkey, b->ib.reth.rkey);
		ASSERT_EQ(a->ib.reth.len, b->ib.reth.len);
	}
	if (fl & ROCE_F_AETH) {
		ASSERT_EQ(a->ib.aeth.kind, b->ib.aeth.kind);
		ASSERT_EQ(a->ib.aeth.value, b->ib.aeth.value);
		ASSERT_EQ(a->ib.aeth.msn, b->ib.aeth.msn);
	}
	if (fl & ROCE_F_ATOMICETH) {
		ASSERT_EQ(a->ib.atomic.va, b->ib.atomic.va);
		ASSERT_EQ(a->ib.atomic.rkey, b->ib.atomic.rkey);
		ASSERT_EQ(a->ib.atomic.swap_add, b->ib.atomic.swap_add);
		ASSERT_EQ(a->ib.atomic.compare, b->ib.atomic.compare);
	}
	if (fl & ROCE_F_ATOMICACKETH)
		ASSERT_EQ(a->ib.orig, b->ib.orig);
	if (fl & ROCE_F_IMMDT)
		ASSERT_EQ(a->ib.imm, b->ib.imm);
	ASSERT_EQ(a->ib.payload_len, b->ib.payload_len);
	if (a->ib.payload_len)
		ASSERT_MEM_EQ(a->ib.payload, b->ib.payload, a->ib.payload_len);
}

/* Payload sizes an opcode may carry at MTU: a few of each. */
static int
sizes(uint8_t op, size_t *out)
{
	unsigned fl = roce_opcode_flags(op);
	static const size_t any[] = { 0, 1, 2, 3, 4, 5, 7, 8, 100, MTU - 1, MTU };
	int n = 0;

	if (fl & (ROCE_F_FIRST | ROCE_F_MIDDLE)) {
		out[n++] = MTU;
	} else if (fl & (ROCE_F_LAST | ROCE_F_ONLY)) {
		for (size_t i = (fl & ROCE_F_LAST) ? 1 : 0; i < sizeof(any) / sizeof(any[0]); i++)
			out[n++] = any[i];
	} else {
		out[n++] = 0;
	}
	return n;
}

static void
fill_payload(void)
{
	uint64_t r = 42;

	th_fill(&r, payload, sizeof(payload));
}

TEST(roce_round_trip)
{
	static uint8_t buf[ROCE_FRAME_MAX + 64];
	struct roce_frame f, g;
	const char *why = NULL;
	int count = 0;

	fill_payload();
	for (uint8_t op = 0; op < ROCE_OPCODE_COUNT; op++) {
		size_t sz[16];
		int ns = sizes(op, sz);

		ASSERT(roce_opcode_name(op));
		for (int i = 0; i < ns; i++)
			for (int variant = 0; variant < 8; variant++) {
				bool v6 = variant & 1;
				ssize_t len;

				sample(&f, op, sz[i], v6, (uint64_t)variant);
				f.vlan = variant & 2;
				f.tci = 0x6000 | 100;
				f.udp_csum = variant & 4;
				f.ib.fecn = variant == 3;
				f.ib.becn = variant == 5;
				f.ib.mig = variant == 6;
				if (op == ROCE_ACK && variant >= 4) {
					f.ib.aeth.kind =
					    variant == 4 ? ROCE_AETH_RNR_NAK : ROCE_AETH_NAK;
					f.ib.aeth.value = (uint8_t)(variant - 4);
				}
				len = roce_build(&f, MTU, buf, sizeof(buf), &why);
				if (len < 0)
					th_fail(__FILE__, __LINE__, "%s %zu: %s",
						roce_opcode_name(op), sz[i], why);
				size_t pad = (4 - sz[i] % 4) % 4;
				ASSERT_EQ((size_t)len, ROCE_ETH_LEN + (f.vlan ? 4 : 0) +
							   (v6 ? 40 : 20) + 8 +
							   roce_ib_hdr_len(op) + sz[i] + pad + 4);
				/* Pad count in the BTH, pad bytes zero. */
				size_t bth = (size_t)len - 4 - pad - sz[i] - roce_ib_hdr_len(op);
				ASSERT_EQ(buf[bth], op);
				ASSERT_EQ(buf[bth + 1] >> 4 & 3, pad);
				for (size_t k = 0; k < pad; k++)
					ASSERT_EQ(buf[(size_t)len - 4 - pad + k], 0);
				ASSERT_OK(roce_parse(buf, (size_t)len, MTU, &g, &why));
				assert_same(&f, &g);
				/* Ethernet padding after the IP packet is not part of it. */
				memset(buf + len, 0xee, 20);
				ASSERT_OK(roce_parse(buf, (size_t)len + 20, MTU, &g, &why));
				assert_same(&f, &g);
				count++;
			}
	}
	th_log("%d frames", count);
	ASSERT_GT(count, 21 * 8);
	/* Not implemented: UD, UC, RD, CNP, and everything past FETCH_ADD. */
	ASSERT(!roce_opcode_flags(ROCE_OPCODE_COUNT));
	ASSERT(!roce_opcode_flags(0x64));
	ASSERT(!roce_opcode_flags(0x81));
}

TEST(roce_icrc_known)
{
	static uint8_t buf[ROCE_FRAME_MAX], want[ROCE_FRAME_MAX];
	const uint8_t msg[] = "123456789";
	struct roce_frame f;
	ssize_t len;
	size_t i = 0;

	/* The CRC itself: IEEE 802.3's check value. */
	ASSERT_EQ(crc32_bitwise(0, msg, 9), 0xcbf43926u);
	/* rxe's seed: the CRC's register after the 8 bytes of ones of the masked LRH. */
	ASSERT_EQ(~crc32_bitwise(0, (const uint8_t *)"\xff\xff\xff\xff\xff\xff\xff\xff", 8),
		  0xdebb20e3u);

	/* A SEND_ONLY of 5 bytes over IPv4, written out here byte by byte. */
	memset(&f, 0, sizeof(f));
	memcpy(f.dst_mac, "\x02\x00\x00\x00\x00\x02", 6);
	memcpy(f.src_mac, "\x02\x00\x00\x00\x00\x01", 6);
	memcpy(f.src_ip, "\xc0\xa8\x01\x01", 4);
	memcpy(f.dst_ip, "\xc0\xa8\x01\x02", 4);
	f.tclass = 0x02;
	f.ttl = 64;
	f.ip_id = 0x1234;
	f.src_port = 0xc001;
	f.ib.opcode = ROCE_SEND_ONLY;
	f.ib.ackreq = true;
	f.ib.pkey = 0xffff;
	f.ib.dqpn = 0x000011;
	f.ib.psn = 0x123456;
	f.ib.payload = (const uint8_t *)"hello";
	f.ib.payload_len = 5;
	len = roce_build(&f, 1024, buf, sizeof(buf), NULL);
	ASSERT_EQ(len, 14 + 20 + 8 + 12 + 8 + 4);

	memcpy(want + i, "\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01\x08\x00", 14), i += 14;
	/* IPv4: 20 + 8 + 24 = 52 bytes, DF, TTL 64, UDP; checksum below. */
	memcpy(want + i,
	       "\x45\x02\x00\x34\x12\x34\x40\x00\x40\x11\x00\x00"
	       "\xc0\xa8\x01\x01\xc0\xa8\x01\x02",
	       20);
	uint16_t c = ip_csum(want + i, 20);
	want[i + 10] = (uint8_t)(c >> 8), want[i + 11] = (uint8_t)c;
	i += 20;
	memcpy(want + i, "\xc0\x01\x12\xb7\x00\x20\x00\x00", 8), i += 8; /* 4791 = 0x12b7 */
	/* BTH: SEND_ONLY, pad 3, P_Key ffff, QP 0x11, AckReq, PSN 0x123456. */
	memcpy(want + i, "\x04\x30\xff\xff\x00\x00\x00\x11\x80\x12\x34\x56", 12), i += 12;
	memcpy(want + i, "hello\0\0\0", 8), i += 8;
	uint32_t icrc = icrc_expected(want + 14, i + 4 - 14, false);
	for (int k = 0; k < 4; k++)
		want[i++] = (uint8_t)(icrc >> (8 * k));
	ASSERT_EQ(i, (size_t)len);
	ASSERT_MEM_EQ(buf, want, i);
	ASSERT_EQ(roce_icrc(buf + 14, i - 14, false), icrc);

	/* Every opcode, both IP versions: the library's ICRC is the bitwise one. */
	fill_payload();
	for (uint8_t op = 0; op < ROCE_OPCODE_COUNT; op++)
		for (int v6 = 0; v6 < 2; v6++) {
			size_t sz[16];
			struct roce_frame g;

			sizes(op, sz);
			sample(&g, op, sz[0], v6, 7);
			len = roce_build(&g, MTU, buf, sizeof(buf), NULL);
			ASSERT_GT(len, 0);
			uint32_t got = (uint32_t)buf[len - 4] | (uint32_t)buf[len - 3] << 8 |
				       (uint32_t)buf[len - 2] << 16 | (uint32_t)buf[len - 1] << 24;
			ASSERT_EQ(got, icrc_expected(buf + 14, (size_t)len - 14, v6));
		}
}

TEST(roce_icrc_corrupt)
{
	static uint8_t buf[ROCE_FRAME_MAX];
	struct roce_frame f, g;
	const char *why;
	ssize_t len;

	fill_payload();
	for (int v6 = 0; v6 < 2; v6++) {
		size_t ipl = v6 ? 40 : 20, bth = 14 + ipl + 8;

		sample(&f, ROCE_WRITE_ONLY_IMM, 37, v6, 1);
		len = roce_build(&f, MTU, buf, sizeof(buf), NULL);
		ASSERT_GT(len, 0);
		/* Any bit of the IB part but BTH byte 4 (masked): bad ICRC. */
		for (size_t i = bth; i < (size_t)len; i++) {
			if (i == bth + 4)
				continue;
			for (int b = 0; b < 8; b++) {
				buf[i] ^= (uint8_t)(1 << b);
				why = NULL;
				ASSERT_EQ(roce_parse(buf, (size_t)len, MTU, &g, &why), -EBADMSG);
				ASSERT(why && !strcmp(why, "bad ICRC"));
				buf[i] ^= (uint8_t)(1 << b);
			}
		}
		/* The invariant IP and UDP fields (IP checksum made right again): bad ICRC. */
		const size_t inv4[] = { 14 + 4, 14 + 12, 14 + 19, 14 + 20, 14 + 21 };
		const size_t inv6[] = { 14 + 8, 14 + 39, 14 + 40, 14 + 41 };
		const size_t *inv = v6 ? inv6 : inv4;
		size_t ninv = v6 ? 4 : 5;
		for (size_t k = 0; k < ninv; k++) {
			uint8_t save[ROCE_FRAME_MAX];

			memcpy(save, buf, (size_t)len);
			buf[inv[k]] ^= 0x10;
			if (!v6) {
				uint8_t *ip = buf + 14;
				ip[10] = ip[11] = 0;
				uint16_t c = ip_csum(ip, 20);
				ip[10] = (uint8_t)(c >> 8), ip[11] = (uint8_t)c;
			}
			ASSERT_EQ(roce_parse(buf, (size_t)len, MTU, &g, &why), -EBADMSG);
			ASSERT(!strcmp(why, "bad ICRC"));
			memcpy(buf, save, (size_t)len);
		}
		ASSERT_OK(roce_parse(buf, (size_t)len, MTU, &g, &why));
	}
}

TEST(roce_icrc_masked)
{
	static uint8_t buf[ROCE_FRAME_MAX];
	struct roce_frame f, g;
	const char *why = NULL;
	ssize_t len;

	fill_payload();
	/* IPv4: TTL, DSCP and ECN change on the way (the IP checksum with them). */
	sample(&f, ROCE_SEND_ONLY, 64, false, 2);
	len = roce_build(&f, MTU, buf, sizeof(buf), NULL);
	ASSERT_GT(len, 0);
	uint8_t *ip = buf + 14;
	ip[8] = 3;    /* TTL */
	ip[1] = 0xbb; /* DSCP 46, ECN CE */
	ip[10] = ip[11] = 0;
	uint16_t c = ip_csum(ip, 20);
	ip[10] = (uint8_t)(c >> 8), ip[11] = (uint8_t)c;
	/* A switch marks congestion in the BTH too. */
	buf[14 + 20 + 8 + 4] |= 0xc0;
	ASSERT_OK(roce_parse(buf, (size_t)len, MTU, &g, &why));
	ASSERT_EQ(g.ttl, 3);
	ASSERT_EQ(g.tclass, 0xbb);
	ASSERT(g.ib.fecn && g.ib.becn);
	/* Without the IP checksum fixed, the IP header is refused, not the ICRC. */
	ip[8] = 4;
	ASSERT_EQ(roce_parse(buf, (size_t)len, MTU, &g, &why), -EBADMSG);
	ASSERT(!strcmp(why, "bad IPv4 header checksum"));

	/* IPv6: traffic class, flow label and hop limit. */
	sample(&f, ROCE_SEND_ONLY, 64, true, 2);
	len = roce_build(&f, MTU, buf, sizeof(buf), NULL);
	ASSERT_GT(len, 0);
	ip = buf + 14;
	ip[0] = 0x6f, ip[1] = 0xf1, ip[2] = 0x23, ip[3] = 0x45;
	ip[7] = 1;
	ASSERT_OK(roce_parse(buf, (size_t)len, MTU, &g, &why));
	ASSERT_EQ(g.tclass, 0xff);
	ASSERT_EQ(g.flow_label, 0x12345);
	ASSERT_EQ(g.ttl, 1);

	/* A nonzero UDP checksum is checked; changing it alone does not touch the ICRC. */
	sample(&f, ROCE_SEND_ONLY, 64, false, 2);
	f.udp_csum = true;
	len = roce_build(&f, MTU, buf, sizeof(buf), NULL);
	ASSERT_OK(roce_parse(buf, (size_t)len, MTU, &g, &why));
	ASSERT(g.udp_csum);
	buf[14 + 20 + 6] ^= 1;
	ASSERT_EQ(roce_parse(buf, (size_t)len, MTU, &g, &why), -EBADMSG);
	ASSERT(!strcmp(why, "bad UDP checksum"));
	buf[14 + 20 + 6] = buf[14 + 20 + 7] = 0; /* no checksum: accepted */
	ASSERT_OK(roce_parse(buf, (size_t)len, MTU, &g, &why));
	ASSERT(!g.udp_csum);
}

TEST(roce_truncated)
{
	static uint8_t buf[ROCE_FRAME_MAX];
	struct roce_frame f, g;
	const char *why;

	fill_payload();
	for (uint8_t op = 0; op < ROCE_OPCODE_COUNT; op++)
		for (int v = 0; v < 4; v++) {
			size_t sz[16];
			ssize_t len;

			sizes(op, sz);
			sample(&f, op, sz[0], v & 1, 3);
			f.vlan = v & 2;
			len = roce_build(&f, MTU, buf, sizeof(buf), NULL);
			ASSERT_GT(len, 0);
			for (size_t n = 0; n < (size_t)len; n++) {
				uint8_t *copy =
				    malloc(n ? n : 1); /* exact size: ASan sees overreads */

				ASSERT(copy);
				memcpy(copy, buf, n);
				why = NULL;
				ASSERT_EQ(roce_parse(copy, n, MTU, &g, &why), -EBADMSG);
				ASSERT(why);
				ASSERT(!g.ib.payload);
				free(copy);
			}
		}
	/* An IP total length that claims less than it holds: the ICRC moves, so refused. */
	sample(&f, ROCE_SEND_ONLY, 16, false, 3);
	ssize_t len = roce_build(&f, MTU, buf, sizeof(buf), NULL);
	buf[14 + 3] -= 4;
	refix(buf, (size_t)len, false);
	ASSERT_EQ(roce_parse(buf, (size_t)len, MTU, &g, &why), -EBADMSG);
	ASSERT(!strcmp(why, "UDP length differs from the IP payload length"));
}

/* Build @op, apply @edit at @off (XOR), make checksums right, expect @err and @reason. */
static void
refused(uint8_t op, size_t n, unsigned mtu_build, unsigned mtu_parse, size_t off, uint8_t x,
	int err, const char *reason)
{
	static uint8_t buf[ROCE_FRAME_MAX];
	struct roce_frame f, g;
	const char *why = NULL;
	ssize_t len;

	sample(&f, op, n, false, 5);
	len = roce_build(&f, mtu_build, buf, sizeof(buf), &why);
	if (len < 0)
		th_fail(__FILE__, __LINE__, "build %s: %s", roce_opcode_name(op), why);
	buf[off] ^= x;
	refix(buf, (size_t)len, false);
	why = NULL;
	int r = roce_parse(buf, (size_t)len, mtu_parse, &g, &why);
	if (r != err || !why || strcmp(why, reason))
		th_fail(__FILE__, __LINE__, "%s at %zu ^ %#x: %d (%s), expected %d (%s)",
			roce_opcode_name(op), off, x, r, why ? why : "-", err, reason);
	ASSERT(!g.ib.payload);
}

#define IP4  14
#define UDP4 (14 + 20)
#define BTH4 (14 + 20 + 8)

TEST(roce_refusals)
{
	static uint8_t buf[ROCE_FRAME_MAX];
	struct roce_frame f, g;
	const char *why;

	fill_payload();
	/* Not RoCE v2, or not what is implemented: -EINVAL. */
	refused(ROCE_SEND_ONLY, 8, MTU, MTU, UDP4 + 3, 0x01, -EINVAL, "not UDP port 4791");
	refused(ROCE_SEND_ONLY, 8, MTU, MTU, IP4 + 9, 17 ^ 6, -EINVAL, "not UDP");
	refused(ROCE_SEND_ONLY, 8, MTU, MTU, 12, 0x08 ^ 0x86, -EINVAL, "not IPv4 or IPv6");
	refused(ROCE_SEND_ONLY, 8, MTU, MTU, IP4, 0x01, -EINVAL, "IPv4 options");
	refused(ROCE_SEND_ONLY, 8, MTU, MTU, IP4 + 6, 0x20, -EINVAL, "IPv4 fragment");
	refused(ROCE_SEND_ONLY, 8, MTU, MTU, IP4 + 7, 0x01, -EINVAL, "IPv4 fragment");
	refused(ROCE_SEND_ONLY, 8, MTU, MTU, BTH4 + 1, 0x01, -EINVAL,
		"BTH transport version not 0");
	refused(ROCE_SEND_ONLY, 8, MTU, MTU, BTH4, 0x04 ^ 0x64, -EINVAL, "opcode not implemented");
	refused(ROCE_SEND_ONLY, 8, MTU, MTU, BTH4, 0x04 ^ 0x15, -EINVAL, "opcode not implemented");
	refused(ROCE_SEND_ONLY, 8, MTU, MTU, BTH4, 0x04 ^ 0x81, -EINVAL, "opcode not implemented");
	refused(ROCE_SEND_ONLY, 8, MTU, 1000, 0, 0, -EINVAL, "path MTU is not an IB MTU");

	/* RoCE v2, malformed: -EBADMSG. */
	refused(ROCE_SEND_ONLY, 8, MTU, MTU, IP4, 0x10, -EBADMSG,
		"IPv4 EtherType, IP version not 4");
	refused(ROCE_SEND_ONLY, 8, MTU, MTU, UDP4 + 5, 0x04, -EBADMSG,
		"UDP length differs from the IP payload length");
	/* Pad count: on an opcode without payload, larger than the payload. */
	refused(ROCE_ACK, 0, MTU, MTU, BTH4 + 1, 0x10, -EBADMSG,
		"pad count larger than the payload");
	refused(ROCE_READ_REQ, 0, MTU, MTU, BTH4 + 1, 0x30, -EBADMSG,
		"pad count larger than the payload");
	/* An empty SEND_ONLY relabelled SEND_FIRST. */
	refused(ROCE_SEND_ONLY, 0, MTU, MTU, BTH4, 0x04 ^ 0x00, -EBADMSG,
		"first or middle packet's payload is not the path MTU");
	/* Payload length against the path MTU. */
	refused(ROCE_SEND_MIDDLE, MTU, MTU, 512, 0, 0, -EBADMSG,
		"first or middle packet's payload is not the path MTU");
	refused(ROCE_WRITE_FIRST, 512, 512, 256, 0, 0, -EBADMSG,
		"first or middle packet's payload is not the path MTU");
	refused(ROCE_SEND_ONLY, 512, 512, 256, 0, 0, -EBADMSG, "payload larger than the path MTU");
	refused(ROCE_READ_RESP_LAST, 512, 512, 256, 0, 0, -EBADMSG,
		"last packet's payload not 1 to path MTU bytes");
	/* SEND_ONLY of 20 bytes relabelled READ_REQ: 4 bytes left after the RETH. */
	refused(ROCE_SEND_ONLY, 20, MTU, MTU, BTH4, 0x04 ^ 0x0c, -EBADMSG,
		"payload on an opcode that carries none");
	/* AETH: reserved syndromes, NAKs where only ACKs go. */
	refused(ROCE_ACK, 0, MTU, MTU, BTH4 + 12, 0x80, -EBADMSG, "AETH syndrome reserved");
	refused(ROCE_ACK, 0, MTU, MTU, BTH4 + 12, 0x40, -EBADMSG, "AETH syndrome reserved");
	refused(ROCE_READ_RESP_ONLY, 8, MTU, MTU, BTH4 + 12, 0x20, -EBADMSG,
		"NAK in a read response or atomic acknowledge");
	refused(ROCE_ATOMIC_ACK, 0, MTU, MTU, BTH4 + 12, 0x20, -EBADMSG,
		"NAK in a read response or atomic acknowledge");
	/* Extension headers cut: SEND_ONLY with 8 bytes relabelled WRITE_ONLY_IMM (needs 20). */
	refused(ROCE_SEND_ONLY, 8, MTU, MTU, BTH4, 0x04 ^ 0x0b, -EBADMSG,
		"truncated extension headers");

	/* A NAK code past the last one defined. */
	sample(&f, ROCE_ACK, 0, false, 5);
	f.ib.aeth.kind = ROCE_AETH_NAK;
	f.ib.aeth.value = ROCE_NAK_INVALID_RD_REQ;
	ssize_t len = roce_build(&f, MTU, buf, sizeof(buf), &why);
	ASSERT_GT(len, 0);
	ASSERT_OK(roce_parse(buf, (size_t)len, MTU, &g, &why));
	ASSERT_EQ(g.ib.aeth.value, ROCE_NAK_INVALID_RD_REQ);
	buf[BTH4 + 12] = 0x65;
	refix(buf, (size_t)len, false);
	ASSERT_EQ(roce_parse(buf, (size_t)len, MTU, &g, &why), -EBADMSG);
	ASSERT(!strcmp(why, "AETH NAK code reserved"));

	/* SEND_ONLY of 20 bytes relabelled READ_REQ, with a pad count: 4 bytes after the RETH. */
	sample(&f, ROCE_SEND_ONLY, 20, false, 5);
	len = roce_build(&f, MTU, buf, sizeof(buf), NULL);
	buf[BTH4] = ROCE_READ_REQ;
	buf[BTH4 + 1] |= 0x20;
	refix(buf, (size_t)len, false);
	ASSERT_EQ(roce_parse(buf, (size_t)len, MTU, &g, &why), -EBADMSG);
	ASSERT(!strcmp(why, "pad count on an opcode without payload"));

	/* IB packet length not a multiple of 4 (UDP and IP lengths agree). */
	sample(&f, ROCE_SEND_ONLY, 8, false, 5);
	len = roce_build(&f, MTU, buf, sizeof(buf), NULL);
	buf[IP4 + 3] += 1, buf[UDP4 + 5] += 1, buf[len] = 0;
	refix(buf, (size_t)len + 1, false);
	ASSERT_EQ(roce_parse(buf, (size_t)len + 1, MTU, &g, &why), -EBADMSG);
	ASSERT(!strcmp(why, "IB packet length not a multiple of 4"));

	/* What roce_build() refuses. */
	sample(&f, ROCE_SEND_MIDDLE, 100, false, 5);
	ASSERT_EQ(roce_build(&f, MTU, buf, sizeof(buf), &why), -EBADMSG);
	sample(&f, ROCE_READ_REQ, 4, false, 5);
	ASSERT_EQ(roce_build(&f, MTU, buf, sizeof(buf), &why), -EBADMSG);
	sample(&f, ROCE_SEND_LAST, 0, false, 5);
	ASSERT_EQ(roce_build(&f, MTU, buf, sizeof(buf), &why), -EBADMSG);
	sample(&f, ROCE_SEND_ONLY, 8, false, 5);
	f.ib.dqpn = 1u << 24;
	ASSERT_EQ(roce_build(&f, MTU, buf, sizeof(buf), &why), -EINVAL);
	sample(&f, ROCE_SEND_ONLY, 8, false, 5);
	f.ib.psn = 1u << 24;
	ASSERT_EQ(roce_build(&f, MTU, buf, sizeof(buf), &why), -EINVAL);
	sample(&f, ROCE_ACK, 0, false, 5);
	f.ib.aeth.msn = 1u << 24;
	ASSERT_EQ(roce_build(&f, MTU, buf, sizeof(buf), &why), -EINVAL);
	f.ib.aeth.msn = 0, f.ib.aeth.value = 32;
	ASSERT_EQ(roce_build(&f, MTU, buf, sizeof(buf), &why), -EINVAL);
	f.ib.aeth.value = 0, f.ib.aeth.kind = 2;
	ASSERT_EQ(roce_build(&f, MTU, buf, sizeof(buf), &why), -EBADMSG);
	f.ib.aeth.kind = 0, f.ib.opcode = 0x15;
	ASSERT_EQ(roce_build(&f, MTU, buf, sizeof(buf), &why), -EINVAL);
	sample(&f, ROCE_SEND_ONLY, 8, true, 5);
	f.flow_label = 1u << 20;
	ASSERT_EQ(roce_build(&f, MTU, buf, sizeof(buf), &why), -EINVAL);
	sample(&f, ROCE_SEND_ONLY, 8, false, 5);
	ASSERT_EQ(roce_build(&f, MTU, buf, 14 + 20 + 8 + 12 + 8 + 3, &why), -ENOSPC);
	ASSERT_EQ(roce_build(&f, MTU, buf, 14 + 20 + 8 + 12 + 8 + 4, &why),
		  14 + 20 + 8 + 12 + 8 + 4);
	ASSERT_EQ(roce_build(&f, 300, buf, sizeof(buf), &why), -EINVAL);
}

/*
 * Wireshark's InfiniBand dissector reads a pcap file of every opcode: no
 * malformed packet, no expert error, and its opcode, QP, PSN, pad count,
 * extension header fields and ICRC are ours. (Wireshark 4.0 shows the
 * ICRC without checking it: the check is icrc_expected() above.)
 */
TEST(roce_tshark)
{
	static uint8_t buf[ROCE_FRAME_MAX];
	struct roce_frame fr[ROCE_OPCODE_COUNT * 2];
	char dir[] = "/tmp/vmf-roce-XXXXXX", path[64], cmd[1024], line[1024];
	struct pcap_pkthdr ph = { 0 };
	pcap_dumper_t *d;
	pcap_t *pc;
	FILE *p;
	int n = 0, rows = 0;

	if (system("command -v tshark >/dev/null 2>&1") != 0)
		SKIP("no tshark (tools/setup-deps check)");
	ASSERT(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/roce.pcap", dir);
	pc = pcap_open_dead(DLT_EN10MB, 65535);
	ASSERT(pc);
	d = pcap_dump_open(pc, path);
	ASSERT(d);
	fill_payload();
	for (uint8_t op = 0; op < ROCE_OPCODE_COUNT; op++)
		for (int v6 = 0; v6 < 2; v6++) {
			size_t sz[16];
			int ns = sizes(op, sz);
			struct roce_frame *f = &fr[n];

			sample(f, op, sz[ns > 2 ? 2 : 0], v6, (uint64_t)n);
			f->vlan = op % 3 == 0;
			f->tci = 5;
			f->udp_csum = v6; /* IPv6 forbids a zero UDP checksum (RFC 8200) */
			ssize_t len = roce_build(f, MTU, buf, sizeof(buf), NULL);
			ASSERT_GT(len, 0);
			f->icrc = (uint32_t)buf[len - 4] | (uint32_t)buf[len - 3] << 8 |
				  (uint32_t)buf[len - 2] << 16 | (uint32_t)buf[len - 1] << 24;
			ph.caplen = ph.len = (bpf_u_int32)len;
			ph.ts.tv_sec = n;
			pcap_dump((u_char *)d, &ph, buf);
			n++;
		}
	pcap_dump_close(d);
	pcap_close(pc);

	/*
	 * -d: Wireshark's default for UDP port 4791, said explicitly. The
	 * protocols that look for themselves in IB payloads (random bytes
	 * here) are off: the IB headers are what is checked.
	 */
	snprintf(
	    cmd, sizeof(cmd),
	    "tshark -n -r %s -d udp.port==4791,infiniband "
	    "--disable-protocol rpcordma --disable-protocol iser "
	    "--disable-protocol nvme-rdma --disable-protocol smb_direct "
	    "--disable-protocol smc --disable-protocol lnet "
	    "--disable-protocol infiniband_sdp --disable-protocol fcoib -T fields -E 'separator=|' "
	    "-e _ws.malformed -e _ws.expert.severity -e infiniband.bth.opcode "
	    "-e infiniband.bth.destqp -e infiniband.bth.psn -e infiniband.bth.padcnt "
	    "-e infiniband.reth.dmalen -e infiniband.aeth.msn -e infiniband.atomiceth.swapdt "
	    "-e infiniband.atomicacketh.origremdt -e infiniband.invariant.crc "
	    "2>%s/err",
	    path, dir);
	p = popen(cmd, "r");
	ASSERT(p);
	while (fgets(line, sizeof(line), p)) {
		char *fld[11], *s = line;
		struct roce_frame *f = &fr[rows];
		unsigned fl = roce_opcode_flags(f->ib.opcode);

		line[strcspn(line, "\n")] = 0;
		th_log("frame %d (%s): %s", rows + 1, roce_opcode_name(f->ib.opcode), line);
		for (int i = 0; i < 11; i++)
			fld[i] = strsep(&s, "|");
		ASSERT(fld[10]);
		ASSERT_LT(rows, n);
		ASSERT_EQ(fld[0][0], 0); /* not malformed */
		/* Expert info severities (comma-separated): none a warning or an error. */
		for (char *e = fld[1], *tok; (tok = strsep(&e, ","));)
			if (*tok)
				ASSERT_LT(strtoul(tok, NULL, 0), 0x600000); /* PI_WARN */
		ASSERT(fld[2][0] && fld[3][0] && fld[4][0] && fld[10][0]);  /* decoded as IB */
		ASSERT_EQ(strtoul(fld[2], NULL, 0), f->ib.opcode);
		ASSERT_EQ(strtoul(fld[3], NULL, 0), f->ib.dqpn);
		ASSERT_EQ(strtoul(fld[4], NULL, 0), f->ib.psn);
		ASSERT_EQ(strtoul(fld[5], NULL, 0), (4 - f->ib.payload_len % 4) % 4);
		if (fl & ROCE_F_RETH)
			ASSERT_EQ(strtoul(fld[6], NULL, 0), f->ib.reth.len);
		if (fl & ROCE_F_AETH)
			ASSERT_EQ(strtoul(fld[7], NULL, 0), f->ib.aeth.msn);
		if (fl & ROCE_F_ATOMICETH)
			ASSERT_EQ(strtoull(fld[8], NULL, 0), f->ib.atomic.swap_add);
		if (fl & ROCE_F_ATOMICACKETH)
			ASSERT_EQ(strtoull(fld[9], NULL, 0), f->ib.orig);
		/* Wireshark shows the trailer's bytes in wire order, as a big-endian number. */
		ASSERT_EQ(strtoul(fld[10], NULL, 0), __builtin_bswap32(f->icrc));
		rows++;
	}
	int st = pclose(p);
	if (!WIFEXITED(st) || WEXITSTATUS(st)) {
		snprintf(cmd, sizeof(cmd), "cat %s/err >&2", dir);
		(void)!system(cmd);
		th_fail(__FILE__, __LINE__, "tshark failed (status %d)", st);
	}
	ASSERT_EQ(rows, n);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	(void)!system(cmd);
}
