/* SPDX-License-Identifier: MIT */
/*
 * Emulated NIC ports: a VM's e1000, e1000e or vmxnet3 is emulated by QEMU,
 * whose stream netdev carries the frames over a socket: each frame is a
 * 32-bit big-endian length and the bytes (QEMU 7.2's -netdev stream). The
 * daemon makes a socketpair, QEMU gets one end as a descriptor, the switch
 * the other. This is the fully emulated path the paravirtual one
 * (vnet.h) is measured against: QEMU traps the guest's register accesses,
 * copies each frame out of guest memory, and one read() or write() moves
 * a batch of frames between QEMU and the switch.
 *
 * Threat model: QEMU runs the guest's device model; a length of 0 or above
 * VSW_FRAME_MAX desynchronises nothing we trust but ends the port.
 */
#ifndef VMFABRIC_SWITCH_EMU_H
#define VMFABRIC_SWITCH_EMU_H

#include "dp.h"

#define EMU_BUF (256u << 10)

struct emu_port {
	struct dp_port dp; /* first */
	int fd;
	unsigned idle; /* loops since a read brought data */
	uint32_t rlen, wlen, woff;
	uint64_t bad_len, short_writes;
	uint8_t rbuf[EMU_BUF], wbuf[EMU_BUF];
};

/*
 * A port on port group @pg named @name ("": made up) with @mac (NULL: made
 * up) over @fd, the switch's end of a SOCK_STREAM socketpair whose other
 * end is QEMU's (made non-blocking here; taken on success). The dataplane
 * owns the port from here: vsw_dp_remove_port(&(*out)->dp) takes it out.
 */
int emu_new(struct vsw_dp *d, const char *pg, const char *name, const uint8_t *mac, int fd,
	    struct emu_port **out);

/*
 * Parse the frames in @buf[0 .. *@len): each whole one to @fn; the bytes
 * of an incomplete one are moved to the front and *@len set to their count.
 * Returns the frames handed on, or -EPROTO for a length of 0 or above
 * VSW_FRAME_MAX (nothing after it is used). For the fuzz target too.
 */
int emu_parse(uint8_t *buf, uint32_t *len, void (*fn)(void *ctx, uint8_t *f, uint32_t n),
	      void *ctx);

#endif
