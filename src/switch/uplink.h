/* SPDX-License-Identifier: MIT */
/*
 * Uplinks (vmnicN): a host network interface as a port of a switch, through
 * an AF_PACKET socket with mmap rings (TPACKET_V2) on both sides. Frames
 * that arrive are handed to the switch in place, from the receive ring;
 * frames for the wire are copied once into the transmit ring, which is
 * kicked once per batch. An uplink is a trunk: frames keep or get their
 * VLAN tag on the wire. The interface is put in promiscuous mode, as a
 * switch's uplink must be; frames the socket itself sent are not received
 * back (PACKET_IGNORE_OUTGOING).
 */
#ifndef VMFABRIC_SWITCH_UPLINK_H
#define VMFABRIC_SWITCH_UPLINK_H

#include <net/if.h>

#include "vswitch.h"

struct xsk_dev;

struct uplink_port {
	struct vsw_port p; /* first: the switch's view */
	unsigned sw;
	char device[IFNAMSIZ];
	int fd;
	uint8_t *rx, *tx; /* the rings */
	unsigned rx_next, tx_next, tx_queued;
	/*
	 * VMQ at the NIC (xsk.h): the XDP program on the device and a slot
	 * (an AF_XDP socket) per port of the switch with a MAC, while the
	 * switch's VMQ is on. NULL: every frame takes the AF_PACKET ring.
	 */
	bool xdp;		/* uplinkN.xdp: try it (default) */
	struct xsk_dev *xsk;
	int slot[64];		/* the slots in use */
	unsigned nslots;
};

/* Open the rings of u->device; the port's kind, VLAN (trunk) and ops are set. 0 or -errno. */
int uplink_open(struct uplink_port *u);
void uplink_close(struct uplink_port *u);
/* Hand up to @max received frames to @sw. Returns how many. */
int uplink_drain(struct uplink_port *u, struct vsw *sw, int max, int64_t now);
/* Send what the switch queued since the last kick. */
void uplink_kick(struct uplink_port *u);

/*
 * VMQ at the NIC. uplink_vmq_open() attaches the XDP program (0, or -errno:
 * the uplink then works without it). uplink_vmq_clear() removes every
 * filter and slot; uplink_vmq_add() gives (@mac, @vlan: 0 untagged, or the
 * VLAN on the wire) a slot of its own, its socket joining epoll set @ep
 * (data.ptr NULL). uplink_vmq_drain() hands up to @max frames of each slot
 * to @sw, in place from the UMEM (one copy, into the destination's queue).
 */
int uplink_vmq_open(struct uplink_port *u);
void uplink_vmq_clear(struct uplink_port *u, int ep);
int uplink_vmq_add(struct uplink_port *u, int ep, const uint8_t *mac, uint16_t vlan);
int uplink_vmq_drain(struct uplink_port *u, struct vsw *sw, int max, int64_t now);

/* The device as the host sees it now, for `network nic list`. */
struct uplink_info {
	bool admin_up, link_up;
	const char *vmq_nic; /* "native", "generic" (XDP mode) or "off" */
	uint64_t vmq_hit, vmq_pass; /* frames the program redirected, passed */
	unsigned mtu;
	uint8_t mac[6];
};
int uplink_info(const struct uplink_port *u, struct uplink_info *i);

#endif
