/* SPDX-License-Identifier: MIT */
/*
 * virtio-net ports: a switch port whose other side is a vhost-user frontend
 * (a VM's virtio-net-pci through QEMU's vhost-user netdev, or DPDK's
 * net_virtio_user). The daemon is the device: queue 0 is the guest's
 * receive queue (frames the switch delivers are written straight into the
 * guest's buffers, one copy), queue 1 its transmit queue (the switch reads
 * the guest's buffers in place).
 *
 * Two threads: the vhost-user connection (negotiation, memory table, ring
 * addresses) is served on the control plane's loop; the rings are the
 * switches' dataplane thread's from start to stop, handed over through
 * commands (vsw_dp_call()), so a ring is never used by both. The device
 * offers VIRTIO_F_VERSION_1, MRG_RXBUF, EVENT_IDX, INDIRECT_DESC, and the
 * transmit offloads CSUM and HOST_TSO4/6: a guest hands over TCP segments
 * of up to 64 KiB with the checksum left to do, and the device completes
 * and cuts them (offload.h), so that every frame leaves the switch whole
 * wherever it goes (a process vNIC, an uplink, an emulated NIC). Nothing
 * is offered for receiving: frames reach the guest whole, at most the MTU.
 *
 * Threat model: the frontend and the guest are untrusted. Chains are
 * validated by virtq.c; a transmit chain shorter than the virtio-net header
 * or with writable parts is dropped and counted; a frame that does not fit
 * the guest's buffers is not cut (the buffers are put back): it waits, with
 * up to VNET_HOLD others, for the guest's next buffers, or is dropped.
 */
#ifndef VMFABRIC_SWITCH_VNET_H
#define VMFABRIC_SWITCH_VNET_H

#include <stdbool.h>
#include <sys/types.h>

#include "common/loop.h"
#include "dp.h"
#include "vhost/vhost.h"
#include "virtio/virtq.h"

#define VIRTIO_NET_F_MRG_RXBUF (1ull << 15)
#define VNET_HDR_LEN 12u /* struct virtio_net_hdr_v1 (with num_buffers) */
#define VNET_RXQ 0
#define VNET_TXQ 1
#define VNET_MAX_BUFS 32 /* receive buffers one frame may take (MRG_RXBUF) */
#define VNET_BIG_FRAME (65536u + 128u) /* a TSO segment with its headers */
#define VNET_HOLD 128 /* frames held while the guest's receive buffers are all taken */

struct vnet_stats {
	uint64_t rx_no_buffers; /* frames for the guest dropped: no buffers, and no room to hold them */
	uint64_t rx_held;	/* frames that waited for the guest's buffers */
	uint64_t tx_bad;	/* transmit chains dropped: shorter than the header, writable parts */
	uint64_t connects;	/* frontends that connected */
	uint64_t tso_segments;	/* 64 KiB segments cut into frames */
	uint64_t ring_errors;	/* rings the guest broke (bad descriptors, indices): port down */
	const char *ring_error; /* what was wrong with the last one (NULL: never) */
};

struct vnet_port {
	struct dp_port dp; /* first */
	struct vsw_dp *d;
	/* Control plane. */
	struct loop *loop;
	struct loop_src listen; /* the vhost-user socket the frontend connects to (-1: none) */
	struct loop_src conn_src;
	struct vhu_conn *conn;
	pid_t allowed_pid; /* > 0: only that process (or root) may connect */
	char path[108];
	char why[128]; /* why the last frontend went, "" while connected or never */
	/* The dataplane's, from ring start to stop. */
	struct virtq q[2];
	bool on[2];
	bool broken[2]; /* counted in st.ring_errors; until the ring starts again */
	int kick, rx_kick, call[2]; /* copies of the frontend's descriptors: -1 when absent */
	bool mrg, offloads;
	uint32_t hdr_len;
	uint8_t *big; /* a frame gathered for its offloads */
	struct vnet_held {
		uint16_t len;
		uint8_t frame[VSW_FRAME_MAX];
	} *held; /* VNET_HOLD of them, made when first needed */
	unsigned held_head, held_n;
	struct vnet_stats st;
	uint8_t bounce[VSW_FRAME_MAX];
	struct virtq_elem e0, e; /* a frame's first receive buffer; the others */
};

/*
 * A virtio-net port on port group @pg, named @name ("": made up), with
 * @mac (NULL or all zero: made up), listening for its frontend on a UNIX
 * socket at @path (mode 0600) on @loop. The port is down until both rings
 * run. A file at @path is replaced. -ENOENT (no such port group), -EEXIST
 * (the MAC is another port's), -errno.
 */
int vnet_new(struct vsw_dp *d, struct loop *loop, const char *pg, const char *name,
	     const uint8_t *mac, const char *path, pid_t allowed_pid, struct vnet_port **out);
/* Stop (the frontend is disconnected, the socket removed) and take the port out. */
void vnet_free(struct vnet_port *v);
/* Serve a frontend connected on @sock (replacing one before): 0 or -errno; takes @sock. */
int vnet_attach(struct vnet_port *v, int sock);
bool vnet_connected(const struct vnet_port *v);

#endif
