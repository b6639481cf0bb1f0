/* SPDX-License-Identifier: MIT */
/*
 * The host-to-host RDMA CM messages (cm_wire.h): built into and parsed
 * from byte buffers field by field, big-endian, never through a struct
 * laid over the bytes. The parser is the part that faces the network: it
 * checks the header against the RCM_MESSAGES table before it reads a
 * body, and every field against its range before it hands it on.
 */
#include <errno.h>
#include <string.h>

#include "cm_wire.h"

#define QPN_MIN 2u /* QP 0 and 1 are the IBA's special QPs */
#define U24	0xffffffu

static void
put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void
put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static uint16_t
get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t
get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static size_t
body_len(unsigned type)
{
	switch (type) {
#define RCM_LEN(n, v, len)                                                                         \
	case v:                                                                                    \
		return len;
		RCM_MESSAGES(RCM_LEN)
#undef RCM_LEN
	}
	return 0;
}

int
rcm_mtu_valid(unsigned mtu)
{
	return mtu == 256 || mtu == 512 || mtu == 1024 || mtu == 2048 || mtu == 4096;
}

static ssize_t
bad(const char **why, const char *reason, ssize_t err)
{
	if (why)
		*why = reason;
	return err;
}

/* The QP fields REQ and REP share; -EBADMSG with the reason when one is out of range. */
static ssize_t
check_qp(uint32_t qpn, uint32_t psn, unsigned mtu, unsigned rnr_retry, unsigned priv_len,
	 const char **why)
{
	if (qpn < QPN_MIN || qpn > U24)
		return bad(why, "QP number out of range", -EBADMSG);
	if (psn > U24)
		return bad(why, "PSN wider than 24 bits", -EBADMSG);
	if (!rcm_mtu_valid(mtu))
		return bad(why, "not a path MTU", -EBADMSG);
	if (rnr_retry > 7)
		return bad(why, "RNR retry count above 7", -EBADMSG);
	if (priv_len > RCM_PRIV)
		return bad(why, "private data longer than 56 bytes", -EBADMSG);
	return 0;
}

static ssize_t
parse_req(const uint8_t *b, struct rcm_req *r, const char **why)
{
	memset(r, 0, sizeof(*r));
	r->port = get32(b);
	r->qpn = get32(b + 4);
	r->psn = get32(b + 8);
	r->mtu = get16(b + 12);
	r->resp_res = b[14];
	r->init_depth = b[15];
	r->rnr_retry = b[16];
	r->priv_len = b[17];
	r->timeout_ms = get32(b + 20);
	if (check_qp(r->qpn, r->psn, r->mtu, r->rnr_retry, r->priv_len, why))
		return -EBADMSG;
	memcpy(r->priv, b + 24, r->priv_len);
	return 0;
}

static ssize_t
parse_rep(const uint8_t *b, struct rcm_rep *r, const char **why)
{
	memset(r, 0, sizeof(*r));
	r->qpn = get32(b);
	r->psn = get32(b + 4);
	r->mtu = get16(b + 8);
	r->resp_res = b[10];
	r->init_depth = b[11];
	r->rnr_retry = b[12];
	r->priv_len = b[13];
	if (check_qp(r->qpn, r->psn, r->mtu, r->rnr_retry, r->priv_len, why))
		return -EBADMSG;
	memcpy(r->priv, b + 16, r->priv_len);
	return 0;
}

ssize_t
rcm_parse(const uint8_t *buf, size_t len, struct rcm_msg *out, const char **why)
{
	size_t want;
	ssize_t err = 0;

	memset(out, 0, sizeof(*out));
	if (len >= 4 && get32(buf) != RCM_MAGIC)
		return bad(why, "not a vmfabric RDMA CM message (magic)", -EPROTO);
	if (len < RCM_HDR)
		return 0;
	out->version = buf[4];
	out->type = buf[5];
	if (out->version != RCM_VERSION)
		return bad(why, "another protocol version", -EPROTONOSUPPORT);
	want = body_len(out->type);
	if (!want)
		return bad(why, "unknown message type", -EPROTO);
	if (get16(buf + 6) != want)
		return bad(why, "body length is not its type's", -EPROTO);
	if (len < RCM_HDR + want)
		return 0;
	switch (out->type) {
	case RCM_REQ:
		err = parse_req(buf + RCM_HDR, &out->u.req, why);
		break;
	case RCM_REP:
		err = parse_rep(buf + RCM_HDR, &out->u.rep, why);
		break;
	case RCM_REJ:
		out->u.reason = get32(buf + RCM_HDR);
		break;
	}
	return err ? err : (ssize_t)(RCM_HDR + want);
}

size_t
rcm_build(const struct rcm_msg *m, uint8_t *buf)
{
	size_t len = body_len(m->type);
	uint8_t *b = buf + RCM_HDR;

	memset(buf, 0, RCM_HDR + len);
	put32(buf, RCM_MAGIC);
	buf[4] = RCM_VERSION;
	buf[5] = m->type;
	put16(buf + 6, (uint16_t)len);
	if (m->type == RCM_REQ) {
		const struct rcm_req *r = &m->u.req;

		put32(b, r->port);
		put32(b + 4, r->qpn);
		put32(b + 8, r->psn);
		put16(b + 12, r->mtu);
		b[14] = r->resp_res;
		b[15] = r->init_depth;
		b[16] = r->rnr_retry;
		b[17] = r->priv_len > RCM_PRIV ? RCM_PRIV : r->priv_len;
		put32(b + 20, r->timeout_ms);
		memcpy(b + 24, r->priv, b[17]);
	} else if (m->type == RCM_REP) {
		const struct rcm_rep *r = &m->u.rep;

		put32(b, r->qpn);
		put32(b + 4, r->psn);
		put16(b + 8, r->mtu);
		b[10] = r->resp_res;
		b[11] = r->init_depth;
		b[12] = r->rnr_retry;
		b[13] = r->priv_len > RCM_PRIV ? RCM_PRIV : r->priv_len;
		memcpy(b + 16, r->priv, b[13]);
	} else if (m->type == RCM_REJ) {
		put32(b, m->u.reason);
	}
	return RCM_HDR + len;
}
