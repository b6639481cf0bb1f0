/* SPDX-License-Identifier: MIT */
/*
 * libvmfabric process vNICs: a port on one of vmfabricd's virtual switches
 * for a host process, with the switch's per-port receive queue as a ring in
 * shared memory. Frames are whole Ethernet frames without FCS (14-byte
 * header, tagged on trunk port groups). While the switch is busy a send or
 * receive is a copy into or out of shared memory, without a system call.
 *
 *   struct vmf_vnic *n;
 *   vmf_vnic_open("VM Network", NULL, &n);      // the daemon picks the MAC
 *   vmf_vnic_send(n, frame, len, 0);
 *   vmf_vnic_recv(n, buf, sizeof(buf), 0);      // blocks; MSG_DONTWAIT: -EAGAIN
 *   vmf_vnic_close(n);
 *
 * Errors are negative errno values. The port goes when the vNIC is closed or
 * the process exits.
 */
#ifndef VMFABRIC_VNIC_H
#define VMFABRIC_VNIC_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#ifdef __cplusplus
extern "C" {
#endif

struct vmf_vnic;

/*
 * Open a vNIC on port group @portgroup with @mac (NULL: the daemon makes
 * up a locally administered one). The process acts as the context
 * VMFABRIC_CONTEXT / vmci_set_context() names, as VMCI sockets do.
 * -ENOENT: no such port group; -EEXIST: the MAC is another port's.
 */
int vmf_vnic_open(const char *portgroup, const uint8_t mac[6], struct vmf_vnic **out);
/* flags: MSG_DONTWAIT. Returns @len or -errno (-EMSGSIZE above the ring). */
ssize_t vmf_vnic_send(struct vmf_vnic *n, const void *frame, size_t len, int flags);
/* One frame (truncated to @len; its length is returned). flags: MSG_DONTWAIT. */
ssize_t vmf_vnic_recv(struct vmf_vnic *n, void *buf, size_t len, int flags);
/*
 * Batches: up to @count frames, published to the switch once (send), or
 * read and released once (receive: @bufs[i] filled, lens[i] set to each
 * frame's length, truncated to the buffer). Return how many (0 when none
 * fit or none waited) or -errno; never wait.
 */
int vmf_vnic_send_batch(struct vmf_vnic *n, const struct iovec *frames, int count);
int vmf_vnic_recv_batch(struct vmf_vnic *n, const struct iovec *bufs, size_t *lens, int count);
void vmf_vnic_mac(const struct vmf_vnic *n, uint8_t mac[6]);
const char *vmf_vnic_name(const struct vmf_vnic *n); /* the switch's name for the port */
void vmf_vnic_close(struct vmf_vnic *n);

#ifdef __cplusplus
}
#endif

#endif
