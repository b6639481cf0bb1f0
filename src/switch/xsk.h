/* SPDX-License-Identifier: MIT */
/*
 * VMQ at the NIC: an uplink's receive classification done where the frame
 * arrives, as Hyper-V's VMQ does it in the NIC. An XDP program (vmq.bpf.c)
 * is the interface's filter: a frame whose (destination MAC, VLAN ID) is
 * in its table goes straight into that entry's slot, an AF_XDP socket of
 * the port it is for; every other frame (broadcast, multicast, unknown
 * destinations, malformed or too long for a UMEM frame) goes on to the
 * kernel's stack, where the uplink's AF_PACKET socket, the default queue,
 * reads it for the switch to sort.
 *
 * One xsk_dev per interface: the program, one UMEM (VMQ_FRAME_SIZE frames)
 * and its fill ring, shared by every slot's socket (XDP_SHARED_UMEM), all
 * bound to receive queue 0. Frames are received only (transmit stays on
 * AF_PACKET), in place from the UMEM, and their frames go back to the fill
 * ring after each batch.
 *
 * Attachment: native (driver) mode is tried first, then generic (skb)
 * mode; xsk_get_info() tells which one. Sockets are zero-copy where the
 * driver can, copy mode (XDP_COPY) otherwise: always on veth. The program
 * is attached through a BPF link owned by this process, so the kernel
 * removes it when the process goes, crash included. A program of ours
 * that was attached the old way (netlink) and left behind is replaced on
 * open; anyone else's program, or a live owner's, is left alone (-EBUSY).
 *
 * Limits: frames longer than VMQ_FRAME_MAX (jumbo frames) are not
 * redirected; they take the default queue. Only queue 0 is served: on a
 * multiqueue NIC, frames arriving on other queues take the default queue
 * too (steer them with ethtool: one queue, or flow rules). The program sees
 * VLAN tags only when they are in the frame: a NIC that strips them (rx VLAN
 * offload) must have that offload turned off.
 *
 * Threat model: frame contents are untrusted (from the wire) and are not
 * interpreted here; descriptors come from the kernel and are checked all
 * the same: a descriptor that does not lie inside one UMEM frame is
 * counted (bad_desc) and never handed on.
 *
 * Threads: one thread owns an xsk_dev (the dataplane's) and makes every
 * call, except xsk_get_counters() and xsk_get_slot_counters(), which any
 * thread may call while it runs (not during or after xsk_close()). Needs root
 * (CAP_NET_ADMIN, CAP_BPF, CAP_NET_RAW, CAP_IPC_LOCK) and Linux 5.9 or
 * later (XDP through a BPF link). libbpf's messages go to the daemon's log
 * (warnings; the rest at debug level).
 */
#ifndef VMFABRIC_SWITCH_XSK_H
#define VMFABRIC_SWITCH_XSK_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "vmq.h"

#define XSK_MAX_SLOTS VMQ_MAX_SLOTS
#define XSK_FRAMES    4096u /* UMEM frames: 16 MiB in all */
#define XSK_RX_RING   512u  /* descriptors per slot */

struct xsk_dev;

struct xsk_info {
	bool native;	    /* attached in driver mode; false: generic (skb) mode */
	int native_err;	    /* why driver mode was refused (-errno); 0 when native */
	bool zerocopy;	    /* the sockets are zero-copy; false: copy mode */
	uint32_t prog_id;   /* the program's id, as bpftool and `ip link` show it */
	uint32_t frame_max; /* the longest frame redirected (VMQ_FRAME_MAX) */
};

/*
 * Attach the program to @ifname and make the UMEM. 0 and *@out, or -errno:
 * -ENODEV no such interface, -EBUSY another XDP program is there (someone
 * else's, or ours with a live owner), -EAFNOSUPPORT no AF_XDP in the
 * kernel, -EPERM not privileged.
 */
int xsk_open(const char *ifname, struct xsk_dev **out);
/* Detach the program and free everything. NULL is fine. */
void xsk_close(struct xsk_dev *x);
void xsk_get_info(const struct xsk_dev *x, struct xsk_info *i);

/*
 * A new slot (a port's receive queue at the NIC): its number, 0 to
 * XSK_MAX_SLOTS - 1, or -ENOSPC or -errno. It receives nothing until a
 * filter names it.
 */
int xsk_slot_create(struct xsk_dev *x);
/*
 * Remove a slot and every filter entry that names it. Frames it had not
 * received are dropped (their UMEM frames go back to the fill ring). Its
 * socket is kept for a later slot: a frame still in flight toward it
 * lands there and is dropped when the socket is reused, never lost and
 * never delivered to another port.
 */
void xsk_slot_destroy(struct xsk_dev *x, int slot);
/* The slot's socket, for poll() (POLLIN: frames wait), or -EINVAL. */
int xsk_slot_fd(const struct xsk_dev *x, int slot);

/*
 * Frames to (@mac, @vlan) go to @slot; an existing entry for the pair is
 * moved. @vlan: 0 (untagged or priority-tagged) to 4094. -EINVAL for a
 * multicast or broadcast @mac, a VLAN out of range, or a slot that does
 * not exist; -E2BIG when VMQ_MAX_FILTERS entries exist.
 */
int xsk_filter_set(struct xsk_dev *x, const uint8_t *mac, uint16_t vlan, int slot);
/* Frames to (@mac, @vlan) go to the default queue again. -ENOENT if absent, -EINVAL as above. */
int xsk_filter_del(struct xsk_dev *x, const uint8_t *mac, uint16_t vlan);

/*
 * Receive up to @max frames from @slot, oldest first: @fn is called once
 * per frame with the frame in place in the UMEM (@frame->iov_len bytes,
 * at most VMQ_FRAME_MAX). The frame is valid only during the call: its
 * UMEM frame goes back to the fill ring when the batch ends. Returns the
 * number of descriptors consumed (bad ones included), 0 when none waits,
 * or -EINVAL for a slot that does not exist. Never blocks.
 */
typedef void xsk_frame_fn(void *ctx, const struct iovec *frame);
int xsk_recv(struct xsk_dev *x, int slot, int max, xsk_frame_fn *fn, void *ctx);

/* The program's counters, summed over the CPUs. */
struct xsk_counters {
	uint64_t hit;		  /* redirected into a slot */
	uint64_t pass;		  /* left to the default queue */
	uint64_t redirect_failed; /* a filter named a slot without a socket (passed) */
};
int xsk_get_counters(const struct xsk_dev *x, struct xsk_counters *c);

/* A slot's counters, since it was created. */
struct xsk_slot_counters {
	uint64_t rx_frames, rx_bytes; /* handed to xsk_recv()'s callback */
	uint64_t bad_desc;	      /* descriptors outside a UMEM frame: dropped */
	/* The kernel's (XDP_STATISTICS): */
	uint64_t rx_dropped;	  /* frames it could not deliver to the socket */
	uint64_t rx_ring_full;	  /* dropped: the slot's ring was full */
	uint64_t fill_ring_empty; /* no free UMEM frame (the fill ring is every slot's) */
	uint64_t rx_invalid;	  /* invalid descriptors */
};
int xsk_get_slot_counters(const struct xsk_dev *x, int slot, struct xsk_slot_counters *c);

#endif
