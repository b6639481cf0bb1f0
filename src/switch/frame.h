/* SPDX-License-Identifier: MIT */
/*
 * Ethernet frames as the switch sees them: untrusted bytes from guests,
 * processes and the wire. The header is parsed from a private copy (the
 * sender may still be writing into the ring it came from); the payload is
 * never interpreted.
 */
#ifndef VMFABRIC_SWITCH_FRAME_H
#define VMFABRIC_SWITCH_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define ETH_MAC_LEN 6
#define ETH_HDR 14u
#define ETH_VLAN_HDR 4u
#define ETH_TYPE_VLAN 0x8100u   /* 802.1Q */
#define ETH_TYPE_QINQ 0x88a8u   /* 802.1ad */
#define VLAN_NONE 0u	  /* port group VLAN 0: untagged */
#define VLAN_TRUNK 4095u /* port group VLAN 4095: the VM sees the tags */

/* Why a frame was dropped, counted per port (see enum vsw_drop). */
enum eth_bad {
	ETH_OK = 0,
	ETH_RUNT,	/* shorter than its header */
	ETH_SRC_MCAST,	/* source address is multicast or broadcast */
	ETH_BAD_VLAN,	/* VID 4095, or stacked tags */
};

struct eth_info {
	uint8_t dst[ETH_MAC_LEN], src[ETH_MAC_LEN];
	bool tagged;
	uint16_t vid;	    /* 0 when untagged or priority-tagged */
	uint16_t pcp_dei;   /* the tag's top four bits, kept when re-tagging */
	uint16_t ethertype; /* after the tag */
	size_t hdr_len;	    /* 14 or 18 */
	size_t payload_len; /* bytes after the header */
};

static inline bool
eth_is_mcast(const uint8_t *mac)
{
	return mac[0] & 1; /* broadcast included */
}

/* "xx:xx:xx:xx:xx:xx" (either case) into @mac: 0, or -1 for anything else. */
static inline int
eth_mac_parse(const char *s, uint8_t mac[ETH_MAC_LEN])
{
	for (int i = 0; i < ETH_MAC_LEN; i++) {
		int v = 0;

		for (int k = 0; k < 2; k++) {
			char ch = s[3 * i + k];
			int d = ch >= '0' && ch <= '9'	 ? ch - '0'
				: ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
				: ch >= 'A' && ch <= 'F' ? ch - 'A' + 10
							 : -1;
			if (d < 0)
				return -1;
			v = v << 4 | d;
		}
		if (s[3 * i + 2] != (i < ETH_MAC_LEN - 1 ? ':' : 0))
			return -1;
		mac[i] = (uint8_t)v;
	}
	return 0;
}

static inline uint64_t
eth_mac64(const uint8_t *mac)
{
	return (uint64_t)mac[0] << 40 | (uint64_t)mac[1] << 32 | (uint64_t)mac[2] << 24 |
	       (uint64_t)mac[3] << 16 | (uint64_t)mac[4] << 8 | mac[5];
}

/*
 * Parse @hdr, the first min(@len, 18) bytes of a frame of @len bytes (a
 * private copy). Fills @e and returns ETH_OK or why the frame is bad.
 */
static inline enum eth_bad
eth_parse(const uint8_t *hdr, size_t len, struct eth_info *e)
{
	uint16_t type;

	if (len < ETH_HDR)
		return ETH_RUNT;
	memcpy(e->dst, hdr, ETH_MAC_LEN);
	memcpy(e->src, hdr + ETH_MAC_LEN, ETH_MAC_LEN);
	if (eth_is_mcast(e->src))
		return ETH_SRC_MCAST;
	type = (uint16_t)(hdr[12] << 8 | hdr[13]);
	e->tagged = false;
	e->vid = 0;
	e->pcp_dei = 0;
	e->hdr_len = ETH_HDR;
	if (type == ETH_TYPE_VLAN) {
		uint16_t tci;

		if (len < ETH_HDR + ETH_VLAN_HDR)
			return ETH_RUNT;
		tci = (uint16_t)(hdr[14] << 8 | hdr[15]);
		type = (uint16_t)(hdr[16] << 8 | hdr[17]);
		if ((tci & 0xfff) == 0xfff || type == ETH_TYPE_VLAN || type == ETH_TYPE_QINQ)
			return ETH_BAD_VLAN;
		e->tagged = true;
		e->vid = tci & 0xfff;
		e->pcp_dei = tci & 0xf000;
		e->hdr_len = ETH_HDR + ETH_VLAN_HDR;
	} else if (type == ETH_TYPE_QINQ) {
		return ETH_BAD_VLAN; /* stacked VLANs are not switched here */
	}
	e->ethertype = type;
	e->payload_len = len - e->hdr_len;
	return ETH_OK;
}

#endif
