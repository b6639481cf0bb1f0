/* SPDX-License-Identifier: MIT */
/*
 * RoCE v2 wire format (InfiniBand Architecture Specification, Vol. 1,
 * chapter 9 "Transport layer" and Annex A17 "RoCEv2"): the InfiniBand
 * transport headers of the reliable-connected (RC) service carried in UDP
 * (destination port 4791) over IPv4 or IPv6 over Ethernet, with the
 * invariant CRC (ICRC) trailer. Building a whole frame from a struct, and
 * parsing one back with every field checked. Nothing else: no queue pairs,
 * no memory regions, no retransmission (docs/RDMA.md).
 *
 * Frame: Ethernet [802.1Q tag] | IPv4 (no options, not fragmented) or IPv6
 * (no extension headers) | UDP | BTH | [RETH] [AETH] [AtomicETH]
 * [AtomicAckETH] [ImmDt] | payload | pad to 4 bytes | ICRC (4 bytes). All
 * multi-byte header fields are big-endian; the ICRC is a CRC-32 stored
 * least significant byte first, as an Ethernet FCS.
 *
 * Threat model: a frame to parse is any bytes of any length from the
 * network or a guest. Every offset and length is checked before it is
 * read; nothing is cast over the buffer; the parsed struct points into the
 * frame for the payload only.
 */
#ifndef VMFABRIC_RDMA_ROCE_H
#define VMFABRIC_RDMA_ROCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define ROCE_UDP_PORT 4791

/* Header sizes, bytes. */
#define ROCE_ETH_LEN	      14
#define ROCE_VLAN_LEN	      4
#define ROCE_IPV4_LEN	      20
#define ROCE_IPV6_LEN	      40
#define ROCE_UDP_LEN	      8
#define ROCE_BTH_LEN	      12
#define ROCE_RETH_LEN	      16
#define ROCE_AETH_LEN	      4
#define ROCE_ATOMICETH_LEN    28
#define ROCE_ATOMICACKETH_LEN 8
#define ROCE_IMMDT_LEN	      4
#define ROCE_ICRC_LEN	      4

/* The largest IB path MTU (payload bytes per packet) and the largest frame. */
#define ROCE_MTU_MAX 4096
#define ROCE_FRAME_MAX                                                                             \
	(ROCE_ETH_LEN + ROCE_VLAN_LEN + ROCE_IPV6_LEN + ROCE_UDP_LEN + ROCE_BTH_LEN +              \
	 ROCE_RETH_LEN + ROCE_IMMDT_LEN + ROCE_MTU_MAX + ROCE_ICRC_LEN)

/* The partition key of the default partition (full membership). */
#define ROCE_PKEY_DEFAULT 0xffff

/* BTH opcodes of the RC service (transport 000, IBA table 38). */
enum roce_opcode {
	ROCE_SEND_FIRST = 0x00,
	ROCE_SEND_MIDDLE = 0x01,
	ROCE_SEND_LAST = 0x02,
	ROCE_SEND_LAST_IMM = 0x03,
	ROCE_SEND_ONLY = 0x04,
	ROCE_SEND_ONLY_IMM = 0x05,
	ROCE_WRITE_FIRST = 0x06,
	ROCE_WRITE_MIDDLE = 0x07,
	ROCE_WRITE_LAST = 0x08,
	ROCE_WRITE_LAST_IMM = 0x09,
	ROCE_WRITE_ONLY = 0x0a,
	ROCE_WRITE_ONLY_IMM = 0x0b,
	ROCE_READ_REQ = 0x0c,
	ROCE_READ_RESP_FIRST = 0x0d,
	ROCE_READ_RESP_MIDDLE = 0x0e,
	ROCE_READ_RESP_LAST = 0x0f,
	ROCE_READ_RESP_ONLY = 0x10,
	ROCE_ACK = 0x11,
	ROCE_ATOMIC_ACK = 0x12,
	ROCE_CMP_SWAP = 0x13,
	ROCE_FETCH_ADD = 0x14,
	ROCE_OPCODE_COUNT
};

/* What an opcode carries (roce_opcode_flags()). */
#define ROCE_F_RETH	    (1u << 0)
#define ROCE_F_AETH	    (1u << 1)
#define ROCE_F_ATOMICETH    (1u << 2)
#define ROCE_F_ATOMICACKETH (1u << 3)
#define ROCE_F_IMMDT	    (1u << 4)
#define ROCE_F_PAYLOAD	    (1u << 5) /* a payload (possibly empty, for ONLY and LAST) */
#define ROCE_F_FIRST	    (1u << 6) /* payload exactly the path MTU */
#define ROCE_F_MIDDLE	    (1u << 7) /* payload exactly the path MTU */
#define ROCE_F_LAST	    (1u << 8) /* payload 1 to path MTU bytes */
#define ROCE_F_ONLY	    (1u << 9) /* payload 0 to path MTU bytes */

/* AETH syndrome: bits 6-5 the kind, bits 4-0 its value (bit 7 reserved). */
enum roce_aeth_kind {
	ROCE_AETH_ACK = 0,     /* value: credit count (31: no credits advertised) */
	ROCE_AETH_RNR_NAK = 1, /* value: RNR timer code */
	ROCE_AETH_NAK = 3,     /* value: enum roce_nak */
};

enum roce_nak {
	ROCE_NAK_PSN_SEQ = 0,
	ROCE_NAK_INVALID_REQ = 1,
	ROCE_NAK_REMOTE_ACCESS = 2,
	ROCE_NAK_REMOTE_OP = 3,
	ROCE_NAK_INVALID_RD_REQ = 4,
};

struct roce_reth {
	uint64_t va;
	uint32_t rkey, len;
};

struct roce_aeth {
	uint8_t kind;  /* enum roce_aeth_kind */
	uint8_t value; /* 0..31 */
	uint32_t msn;  /* 24 bits */
};

struct roce_atomiceth {
	uint64_t va;
	uint32_t rkey;
	uint64_t swap_add, compare;
};

/*
 * The InfiniBand part. The extension headers an opcode does not carry are
 * ignored by roce_build() and zeroed by roce_parse(). The pad count is
 * not a field: it follows from payload_len.
 */
struct roce_ib {
	uint8_t opcode;
	bool se, mig, fecn, becn, ackreq;
	uint16_t pkey;
	uint32_t dqpn, psn; /* 24 bits each */
	struct roce_reth reth;
	struct roce_aeth aeth;
	struct roce_atomiceth atomic;
	uint64_t orig; /* AtomicAckETH: the original remote data */
	uint32_t imm;  /* ImmDt, as the bytes read big-endian */
	const uint8_t *payload;
	size_t payload_len;
};

struct roce_frame {
	uint8_t dst_mac[6], src_mac[6];
	bool vlan;    /* an 802.1Q tag ... */
	uint16_t tci; /* ... with this PCP, DEI and VLAN ID */
	bool ipv6;
	uint8_t src_ip[16], dst_ip[16]; /* IPv4: the first 4 bytes */
	uint8_t tclass;			/* IPv4 TOS / IPv6 traffic class: DSCP << 2 | ECN */
	uint8_t ttl;			/* IPv4 TTL / IPv6 hop limit */
	uint16_t ip_id;			/* IPv4 identification (DF is always set) */
	uint32_t flow_label;		/* IPv6, 20 bits */
	uint16_t src_port;		/* UDP source port: flow entropy, per QP */
	bool udp_csum;			/* UDP checksum computed (else 0; parse: it was not 0) */
	struct roce_ib ib;
	uint32_t icrc; /* parse: the trailer's value (checked); build: ignored */
};

/*
 * The RNR NAK timer an AETH's RNR syndrome carries (IBA table 45), code
 * 0..31, in nanoseconds; code 0 is the longest. Used wherever a responder's
 * RNR timer is waited out: the RC transport, and the one-host engine.
 */
static inline int64_t
roce_rnr_timer_ns(unsigned code)
{
	static const uint32_t us[32] = {
		655360, 10,    20,    30,    40,    60,	    80,	    120,    160,    240,    320,
		480,	640,   960,   1280,  1920,  2560,   3840,   5120,   7680,   10240,  15360,
		20480,	30720, 40960, 61440, 81920, 122880, 163840, 245760, 327680, 491520,
	};

	return (int64_t)us[code & 31] * 1000;
}

/* ROCE_F_* for an opcode; 0 for an opcode not implemented here. */
unsigned roce_opcode_flags(uint8_t opcode);
/* "SEND_FIRST", ...; NULL for an opcode not implemented here. */
const char *roce_opcode_name(uint8_t opcode);
/* Bytes of the IB headers (BTH and extension headers) an opcode carries. */
size_t roce_ib_hdr_len(uint8_t opcode);
/* Whether @mtu is an IB path MTU (256, 512, 1024, 2048, 4096). */
bool roce_mtu_valid(unsigned mtu);

/*
 * The ICRC of the IP packet at @ip (@len bytes: IP header to the end of
 * the ICRC field, whose value is not read): CRC-32 over 8 bytes of ones
 * (the masked LRH), the IP header with its variant fields set to ones
 * (IPv4 TOS, TTL, header checksum; IPv6 traffic class, flow label, hop
 * limit), the UDP header with its checksum set to ones, the BTH with its
 * byte 4 (FECN, BECN, reserved) set to ones, and the rest up to the ICRC.
 * The caller has checked the header lengths (@len >= IP + UDP + BTH + 4).
 */
uint32_t roce_icrc(const uint8_t *ip, size_t len, bool ipv6);

/*
 * Build the frame @f into @buf (@cap bytes); the payload is copied from
 * f->ib.payload, padded with zeros. @mtu: the path MTU the payload rules
 * are checked against. Returns the frame's length, or -EINVAL (a field out
 * of range, with the reason in *@why when @why is not NULL) or -ENOSPC.
 */
ssize_t roce_build(const struct roce_frame *f, unsigned mtu, uint8_t *buf, size_t cap,
		   const char **why);

/*
 * Parse the frame @buf (@len bytes, the Ethernet header to the end; bytes
 * past the IP packet, such as Ethernet padding, are ignored) into @f,
 * whose payload points into @buf. @mtu: the path MTU for the payload
 * rules. Returns 0; -EINVAL when it is not a RoCE v2 frame this module
 * handles (EtherType, IP version, IPv4 options or fragments, IPv6
 * extension headers, not UDP, not port 4791, BTH version, opcode not
 * implemented, @mtu not an IB MTU); -EBADMSG when it is one but malformed
 * (truncated, lengths that disagree, bad IPv4 or UDP checksum, bad ICRC,
 * pad count, payload length, AETH syndrome). *@why (when not NULL) says
 * which, as a constant string.
 */
int roce_parse(const uint8_t *buf, size_t len, unsigned mtu, struct roce_frame *f,
	       const char **why);

#endif
