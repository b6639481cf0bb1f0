/* SPDX-License-Identifier: MIT */
/*
 * What the VMQ XDP program (vmq.bpf.c) and its loader (xsk.c) agree on:
 * the program's and the maps' names, the filter's key, the counters and the
 * UMEM frame size. Compiled by clang for the BPF target and by the daemon's
 * compiler alike, so only the kernel's fixed-size types are used.
 */
#ifndef VMFABRIC_SWITCH_VMQ_H
#define VMFABRIC_SWITCH_VMQ_H

#include <linux/types.h>

/* The program's name as the kernel keeps it (at most 15 characters). */
#define VMQ_PROG_NAME "vmf_vmq"

#define VMQ_MAX_SLOTS	256  /* XSKMAP entries: sockets, one per port at most */
#define VMQ_MAX_FILTERS 1024 /* (MAC, VLAN) entries */
#define VMQ_QUEUE	0    /* the receive queue the sockets are bound to */

/*
 * A UMEM frame (chunk). The kernel puts a received frame at
 * XDP_PACKET_HEADROOM (256) bytes into its chunk, so a frame longer than
 * VMQ_FRAME_MAX does not fit: the program passes those to the stack.
 */
#define VMQ_FRAME_SIZE	4096u
#define VMQ_RX_HEADROOM 256u
#define VMQ_FRAME_MAX	(VMQ_FRAME_SIZE - VMQ_RX_HEADROOM)

/* The filter's key: destination MAC and VLAN ID (host order; 0: untagged). */
struct vmq_key {
	__u8 mac[6];
	__u16 vlan;
};

/* Per-CPU counters, indexes into the vmq_stats array. */
enum vmq_counter {
	VMQ_HIT,	     /* redirected into a socket */
	VMQ_PASS,	     /* left to the stack (the default queue) */
	VMQ_REDIRECT_FAILED, /* a filter hit whose slot has no socket: passed too */
	VMQ_NCOUNTERS
};

#ifndef __bpf__
#include <stddef.h>

/* The compiled program, embedded at build time (vmq-obj.c is generated). */
extern const unsigned char vmq_bpf_obj[];
extern const size_t vmq_bpf_obj_len;
#endif

#endif
