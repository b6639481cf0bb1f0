/* SPDX-License-Identifier: MIT */
/*
 * The work a virtio-net driver leaves to its device when the device offers
 * VIRTIO_NET_F_CSUM and HOST_TSO4/6 (virtio 1.x, 5.1.6.2): a checksum to
 * complete, and TCP segments of up to 64 KiB to cut into frames of the
 * MSS. Done here, once, on the host's CPU, so that a frame leaves the
 * switch whole whatever port it goes to.
 *
 * Threat model: the frame and its header come from a guest. Offsets and
 * lengths are checked against the frame; the headers of a segment to cut
 * are parsed here (Ethernet with at most one 802.1Q tag, IPv4 with
 * options or IPv6 without extension headers, TCP) and anything else is
 * refused (-EINVAL) rather than guessed.
 */
#ifndef VMFABRIC_SWITCH_OFFLOAD_H
#define VMFABRIC_SWITCH_OFFLOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VIRTIO_NET_F_CSUM (1ull << 0)
#define VIRTIO_NET_F_HOST_TSO4 (1ull << 11)
#define VIRTIO_NET_F_HOST_TSO6 (1ull << 12)

/* struct virtio_net_hdr(_v1): flags and gso_type values. */
#define VNET_HDR_F_NEEDS_CSUM 1u
#define VNET_HDR_GSO_NONE 0u
#define VNET_HDR_GSO_TCPV4 1u
#define VNET_HDR_GSO_TCPV6 4u
#define VNET_HDR_GSO_ECN 0x80u

struct vnet_hdr {
	uint8_t flags, gso_type;
	uint16_t hdr_len, gso_size, csum_start, csum_offset;
};

/* The header's fields from its little-endian bytes (10 at least). */
void vnet_hdr_parse(const uint8_t *b, struct vnet_hdr *h);

/* Ones' complement sum of @len bytes at @p (big-endian 16-bit words), added to @sum. */
uint64_t csum_add(uint64_t sum, const uint8_t *p, size_t len);
/* Folded to 16 bits and complemented: what goes into a header. */
uint16_t csum_fold(uint64_t sum);

/*
 * Complete a partial checksum (NEEDS_CSUM): the sum of bytes [@start, @len)
 * (the field holds the pseudo-header's sum, as the driver left it) into
 * the 16-bit field at @start + @off. 0, or -EINVAL when it is outside.
 */
int offload_csum(uint8_t *f, size_t len, size_t start, size_t off);

/*
 * Cut the TCP segment @f (@len bytes, headers included) into frames of at
 * most @mss bytes of payload, each with its own IPv4 length, ID and
 * checksum (IPv6: payload length), sequence number, flags (FIN and PSH on
 * the last only, CWR on the first only) and TCP checksum, built in @out
 * (room for the headers plus @mss) and handed to @fn one after the other.
 * @v6: the driver said TCPV6. Returns the frames made, or -EINVAL.
 */
int offload_tso(const uint8_t *f, size_t len, uint16_t mss, bool v6, uint8_t *out, size_t out_len,
		void (*fn)(void *ctx, uint8_t *frame, size_t len), void *ctx);

#endif
