/* SPDX-License-Identifier: MIT */
/*
 * The RDMA connection manager between hosts: the messages two vmfabricd
 * exchange over TCP, on port 4791 of the addresses of the VMkernel
 * adapters their RDMA devices are bound to (RoCE v2 itself is UDP 4791:
 * another protocol on the same number). One TCP connection carries one
 * request, as the IBA's CM does with one MAD exchange:
 *
 *   requester's daemon                 responder's daemon
 *        REQ  ------------------------>   (the listener decides)
 *             <------------------------  REP  or  REJ
 *        RTU  ------------------------>   (the connector has its answer)
 *
 * and both close. REQ carries what the listener's QP needs for its RTR
 * (the requester's QP number, first PSN, path MTU, RDMA read depths, RNR
 * retry count, up to 56 bytes of private data) and the listener's port;
 * REP the same of the acceptor's QP. Each side then uses the smaller of
 * both path MTUs.
 *
 * Every message is an 8-byte header and a body whose size is fixed per
 * type (RCM_MESSAGES); integers are big-endian:
 *
 *   header  0 u32 magic 0x5652434d ("VRCM")   4 u8 version (1)
 *           5 u8 type                         6 u16 body length
 *   REQ 80  0 u32 listener's port   4 u32 QPN   8 u32 PSN   12 u16 path MTU (bytes)
 *          14 u8 responder resources   15 u8 initiator depth   16 u8 RNR retry
 *          17 u8 private data length   18 u16 reserved   20 u32 requester's timeout (ms)
 *          24 u8[56] private data
 *   REP 72  0 u32 QPN   4 u32 PSN   8 u16 path MTU   10 u8 responder resources
 *          11 u8 initiator depth   12 u8 RNR retry   13 u8 private data length
 *          14 u16 reserved   16 u8[56] private data
 *   REJ 4   0 u32 reason (RCM_REJ_*)
 *   RTU 4   0 u32 reserved
 *
 * Reserved bytes and private data past its length are written as zeros
 * and ignored on receipt.
 *
 * Threat model: the bytes come from the network, from anyone who can reach
 * the port. rcm_parse() reads only the bytes it is given, accepts a
 * message only when its magic, version, type and exact body length are
 * right and every field is in range (QPN 2 to 2^24 - 1, PSN below 2^24, a
 * path MTU of 256 to 4096, an RNR retry count below 8, at most 56 bytes of
 * private data), and never trusts a length to size anything. What it
 * accepts is still only a peer's claim: the daemon decides who listens and
 * whether to answer.
 */
#ifndef VMFABRIC_RDMA_CM_WIRE_H
#define VMFABRIC_RDMA_CM_WIRE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define RCM_PORT    4791 /* TCP */
#define RCM_MAGIC   0x5652434du
#define RCM_VERSION 1
#define RCM_HDR	    8
#define RCM_PRIV    56

/* X(name, type number, body bytes) */
#define RCM_MESSAGES(X)                                                                            \
	X(REQ, 1, 24 + RCM_PRIV)                                                                   \
	X(REP, 2, 16 + RCM_PRIV)                                                                   \
	X(REJ, 3, 4)                                                                               \
	X(RTU, 4, 4)

enum rcm_type {
#define RCM_ENUM(n, v, len) RCM_##n = v,
	RCM_MESSAGES(RCM_ENUM)
#undef RCM_ENUM
};

#define RCM_MAX (RCM_HDR + 24 + RCM_PRIV) /* the largest message: REQ */

/* Why a request was refused (REJ). Any other value is still a refusal. */
enum rcm_reject {
	RCM_REJ_CONSUMER = 1,	 /* the listener rejected it */
	RCM_REJ_NO_LISTENER = 2, /* nobody listens on that port (in the host context) */
	RCM_REJ_INVALID = 3,	 /* the request is not one this host can take */
	RCM_REJ_VERSION = 4,	 /* another protocol version: the REJ says which we speak */
};

struct rcm_req {
	uint32_t port; /* the listener's port in the host context's RDMA port space */
	uint32_t qpn, psn;
	uint16_t mtu; /* bytes */
	uint8_t resp_res, init_depth, rnr_retry, priv_len;
	uint32_t timeout_ms; /* how long the requester waits for the answer */
	uint8_t priv[RCM_PRIV];
};

struct rcm_rep {
	uint32_t qpn, psn;
	uint16_t mtu;
	uint8_t resp_res, init_depth, rnr_retry, priv_len;
	uint8_t priv[RCM_PRIV];
};

struct rcm_msg {
	uint8_t version; /* as received; rcm_build() always writes RCM_VERSION */
	uint8_t type;	 /* RCM_* */
	union {
		struct rcm_req req;
		struct rcm_rep rep;
		uint32_t reason; /* REJ */
	} u;
};

/*
 * One message from the start of @buf (@len bytes, any length). Returns the
 * bytes it used (> 0) with *@out filled; 0 when @buf holds only the start
 * of a message; -EPROTONOSUPPORT for another version (after the header:
 * out->version and out->type are set, so that a responder can refuse with
 * RCM_REJ_VERSION); -EPROTO when it is not this protocol (magic, type,
 * body length); -EBADMSG for a field out of range. *@why (may be NULL) is
 * a constant reason for the log.
 */
ssize_t rcm_parse(const uint8_t *buf, size_t len, struct rcm_msg *out, const char **why);

/* Write @m (type, and its body) to @buf, RCM_MAX bytes at least; returns the bytes written. */
size_t rcm_build(const struct rcm_msg *m, uint8_t *buf);

/* Whether @mtu is a path MTU (256, 512, 1024, 2048 or 4096 bytes). */
int rcm_mtu_valid(unsigned mtu);

#endif
