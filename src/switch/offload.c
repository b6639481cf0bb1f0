/* SPDX-License-Identifier: MIT */
/* Checksum completion and TCP segmentation for virtio-net offloads (see offload.h). */
#include <errno.h>
#include <string.h>

#include "frame.h"
#include "offload.h"

#define IPPROTO_TCP_ 6

static uint16_t
get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static void
put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static uint32_t
get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void
put32(uint8_t *p, uint32_t v)
{
	put16(p, (uint16_t)(v >> 16));
	put16(p + 2, (uint16_t)v);
}

void
vnet_hdr_parse(const uint8_t *b, struct vnet_hdr *h)
{
	h->flags = b[0];
	h->gso_type = b[1];
	h->hdr_len = (uint16_t)(b[2] | b[3] << 8);
	h->gso_size = (uint16_t)(b[4] | b[5] << 8);
	h->csum_start = (uint16_t)(b[6] | b[7] << 8);
	h->csum_offset = (uint16_t)(b[8] | b[9] << 8);
}

uint64_t
csum_add(uint64_t sum, const uint8_t *p, size_t len)
{
	size_t i = 0;

	/* Four bytes at a time into 64 bits: no carry is lost before the fold. */
	for (; i + 4 <= len; i += 4)
		sum += get32(p + i);
	for (; i + 2 <= len; i += 2)
		sum += get16(p + i);
	if (i < len)
		sum += (uint64_t)p[i] << 8;
	return sum;
}

uint16_t
csum_fold(uint64_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

int
offload_csum(uint8_t *f, size_t len, size_t start, size_t off)
{
	if (start >= len || off > len - start || len - start - off < 2)
		return -EINVAL;
	put16(f + start + off, csum_fold(csum_add(0, f + start, len - start)));
	return 0;
}

/* TCP flags in byte 13 of its header. */
#define TCP_FIN 0x01u
#define TCP_PSH 0x08u
#define TCP_CWR 0x80u

int
offload_tso(const uint8_t *f, size_t len, uint16_t mss, bool v6, uint8_t *out, size_t out_len,
	    void (*fn)(void *ctx, uint8_t *frame, size_t len), void *ctx)
{
	size_t l2 = ETH_HDR, l3, l4, hdrs, payload, done;
	uint16_t type, ip_id = 0;
	uint32_t seq;
	int n = 0;

	if (len < ETH_HDR + 4 || !mss)
		return -EINVAL;
	type = get16(f + 12);
	if (type == ETH_TYPE_VLAN) {
		l2 += ETH_VLAN_HDR;
		type = get16(f + 16);
	}
	if (!v6 && type == 0x0800 && len >= l2 + 20 && (f[l2] >> 4) == 4) {
		l3 = (size_t)(f[l2] & 0xf) * 4;
		if (l3 < 20 || f[l2 + 9] != IPPROTO_TCP_ || (get16(f + l2 + 6) & 0x3fff))
			return -EINVAL; /* not TCP, or a fragment */
		ip_id = get16(f + l2 + 4);
	} else if (v6 && type == 0x86dd && len >= l2 + 40 && (f[l2] >> 4) == 6) {
		l3 = 40;
		if (f[l2 + 6] != IPPROTO_TCP_)
			return -EINVAL; /* extension headers: not cut here */
	} else {
		return -EINVAL;
	}
	if (len < l2 + l3 + 20)
		return -EINVAL;
	l4 = (size_t)(f[l2 + l3 + 12] >> 4) * 4;
	hdrs = l2 + l3 + l4;
	if (l4 < 20 || len < hdrs || out_len < hdrs + mss)
		return -EINVAL;
	payload = len - hdrs;
	seq = get32(f + l2 + l3 + 4);
	done = 0;
	do {
		size_t k = payload - done < mss ? payload - done : mss, flen = hdrs + k;
		uint8_t *ip = out + l2, *tcp = out + l2 + l3;
		uint64_t sum;

		memcpy(out, f, hdrs);
		memcpy(out + hdrs, f + hdrs + done, k);
		if (!v6) {
			put16(ip + 2, (uint16_t)(l3 + l4 + k));
			put16(ip + 4, (uint16_t)(ip_id + n));
			put16(ip + 10, 0);
			put16(ip + 10, csum_fold(csum_add(0, ip, l3)));
			/* Pseudo-header: addresses, protocol, TCP length. */
			sum = csum_add(0, ip + 12, 8) + IPPROTO_TCP_ + l4 + k;
		} else {
			put16(ip + 4, (uint16_t)(l4 + k));
			sum = csum_add(0, ip + 8, 32) + IPPROTO_TCP_ + l4 + k;
		}
		put32(tcp + 4, seq + (uint32_t)done);
		if (done + k < payload)
			tcp[13] &= (uint8_t)~(TCP_FIN | TCP_PSH);
		if (n)
			tcp[13] &= (uint8_t)~TCP_CWR;
		put16(tcp + 16, 0);
		put16(tcp + 16, csum_fold(csum_add(sum, tcp, l4 + k)));
		fn(ctx, out, flen);
		done += k;
		n++;
	} while (done < payload);
	return n;
}
