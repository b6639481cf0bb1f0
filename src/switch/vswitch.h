/* SPDX-License-Identifier: MIT */
/*
 * A standard virtual switch (ESXi's vSwitch): ports in port groups with a
 * VLAN, a filter table, and a receive queue per port.
 *
 * Classification is Hyper-V's VMQ: one lookup of (destination MAC, VLAN)
 * in the filter table; a match goes into that port's queue with one copy.
 * Broadcast, multicast and unknown destinations are flooded within their
 * VLAN (never back to the source, never across VLANs). With VMQ off, every
 * frame is first copied into one shared default queue and sorted from there
 * (vsw_sort()): two copies, as a host without VMQ does.
 *
 * VLANs: a port group has VLAN 0 (untagged), 1-4094 (access: tags are
 * removed toward the port and frames from it must be untagged) or 4095
 * (trunk: the port sees and sends tags; an untagged frame is VLAN 0).
 * Uplinks are trunks. A frame a port may not send is dropped and counted.
 *
 * Ports are the dataplane's: their queues are written by one thread. The
 * counters are atomics anyone may read.
 */
#ifndef VMFABRIC_SWITCH_VSWITCH_H
#define VMFABRIC_SWITCH_VSWITCH_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "fdb.h"
#include "frame.h"

#define VSW_MAX_PORTS 256
#define VSW_NAME 32
#define VSW_MTU_DEFAULT 1500u
#define VSW_MTU_MAX 9000u
#define VSW_FRAME_MAX (VSW_MTU_MAX + ETH_HDR + ETH_VLAN_HDR)
#define VSW_DEFQ_SLOTS 256

/* Why a frame was dropped. */
enum vsw_drop {
	VSW_DROP_RUNT,	    /* shorter than an Ethernet header */
	VSW_DROP_MTU,	    /* payload above the switch's MTU */
	VSW_DROP_SRC,	    /* multicast/broadcast source address */
	VSW_DROP_VLAN,	    /* a tag the port may not send, VID 4095, stacked tags */
	VSW_DROP_SPOOF,	    /* source address configured on another port */
	VSW_DROP_QUEUE,	    /* the destination's queue was full */
	VSW_DROP_DOWN,	    /* the port is down */
	VSW_DROP_N
};
extern const char *const vsw_drop_name[VSW_DROP_N];

struct vsw_counters {
	_Atomic uint64_t rx_pkts, rx_bytes; /* from the port into the switch */
	_Atomic uint64_t tx_pkts, tx_bytes; /* from the switch into the port's queue */
	_Atomic uint64_t flooded;	    /* of tx: copies of flooded frames */
	_Atomic uint64_t drops[VSW_DROP_N]; /* rx drops; QUEUE: tx drops */
};

enum vsw_port_kind { VSW_PORT_VNIC, VSW_PORT_VIRTIO, VSW_PORT_EMULATED, VSW_PORT_UPLINK,
		     VSW_PORT_VMK, VSW_PORT_TEST };

struct vsw_port;

struct vsw_port_ops {
	/*
	 * Put one frame, given as pieces, into the port's receive queue: 0,
	 * or -ENOBUFS when it is full (the frame is dropped and counted).
	 */
	int (*enqueue)(struct vsw_port *p, const struct iovec *iov, int iovcnt, size_t len);
};

struct vsw_port {
	char name[VSW_NAME];
	/*
	 * A copy of every frame the port sends into the switch (@to_port
	 * false) or gets from it (true), for a capture; NULL: none.
	 */
	void (*mirror)(struct vsw_port *p, const struct iovec *iov, int iovcnt, size_t len,
		       bool to_port);
	void *mirror_ctx;
	enum vsw_port_kind kind;
	uint16_t id;   /* index in the switch */
	uint16_t vlan; /* of its port group: 0, 1-4094, 4095 */
	bool up;
	const struct vsw_port_ops *ops;
	void *priv;
	struct vsw_counters c;
};

struct vsw_defq_slot {
	uint16_t in;
	uint16_t len;
	uint8_t frame[VSW_FRAME_MAX];
};

struct vsw {
	char name[VSW_NAME];
	uint32_t mtu;
	bool vmq;
	struct vsw_port *port[VSW_MAX_PORTS];
	unsigned nports; /* highest id + 1 */
	struct fdb fdb;
	/* VMQ off: the shared default queue, sorted by vsw_sort(). */
	struct vsw_defq_slot *defq;
	unsigned defq_n;
	_Atomic uint64_t forwarded, flooded_frames, sorted;
};

int vsw_init(struct vsw *sw, const char *name, uint32_t mtu, bool vmq);
void vsw_free(struct vsw *sw);
/* Add a port (its ops, name, kind and vlan filled in): its id, or -ENOSPC. */
int vsw_port_add(struct vsw *sw, struct vsw_port *p);
void vsw_port_remove(struct vsw *sw, struct vsw_port *p);
/* A configured address of port @p (a VM's ethernetN.address, a vNIC's MAC). */
int vsw_port_mac(struct vsw *sw, struct vsw_port *p, const uint8_t *mac);

/* The most pieces a frame may come in (vsw_input()). */
#define VSW_MAX_PIECES 3
/*
 * A frame from port @in, in up to VSW_MAX_PIECES pieces (a ring may wrap;
 * a guest's buffer may be split), @len bytes in all. Classified and delivered (VMQ on), or copied into the default
 * queue (off; full: sorted first). @now: monotonic ns, for learning.
 */
void vsw_input(struct vsw *sw, struct vsw_port *in, const struct iovec *frame, int n,
	       size_t len, int64_t now);
/* Count a frame a port's own code dropped before the switch saw it. */
void vsw_port_drop(struct vsw_port *p, enum vsw_drop why);
/* VMQ off: sort the default queue into the ports' queues. */
void vsw_sort(struct vsw *sw, int64_t now);

#endif
