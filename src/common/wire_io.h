/* SPDX-License-Identifier: MIT */
/* Sending and receiving control messages (see wire.h for the protocol). */
#ifndef VMFABRIC_WIRE_IO_H
#define VMFABRIC_WIRE_IO_H

#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "wire.h"

/* A received message: header, the largest body, descriptors. */
struct wire_msg {
	struct wire_hdr hdr;
	union {
		struct wire_hello hello;
		struct wire_bind bind;
		struct wire_listen listen;
		struct wire_connect connect;
		struct wire_incoming incoming;
		struct wire_dialer dialer;
		struct wire_channel channel;
		struct wire_channel_new channel_new;
		struct wire_lease lease;
		struct wire_dial dial;
		struct wire_redial redial;
		struct wire_vnic vnic;
		struct wire_capture capture;
		struct wire_mgmt mgmt;
		struct wire_check check;
		struct wire_rdma_open rdma_open;
		struct wire_rdma_mr rdma_mr;
		struct wire_rdma_map rdma_map;
		struct wire_rdma_qp rdma_qp;
		struct wire_rdma_cm rdma_cm;
		struct wire_rdma_devices rdma_devices;
	} body;
	int fds[WIRE_MAX_FDS];
	int nfds;
};
/* wire_recv() reads header and body in one piece. */
_Static_assert(offsetof(struct wire_msg, body) == sizeof(struct wire_hdr), "wire_msg layout");

/*
 * Send one message (non-blocking: the peer's queue being full is -EAGAIN).
 * Returns bytes sent or -errno. Descriptors stay the caller's.
 */
ssize_t wire_send(int sock, const struct wire_hdr *h, const void *body, const int *fds, int nfds);
/* The same for any bytes (the fuzz target sends malformed messages with it). */
ssize_t wire_send_iov(int sock, const struct iovec *iov, int iovcnt, const int *fds, int nfds);

/*
 * Receive and validate one message. Returns bytes, 0 on orderly close,
 * -EAGAIN, -EPROTO (malformed: every descriptor closed) or -errno.
 * @flags: recvmsg flags (MSG_DONTWAIT).
 */
ssize_t wire_recv(int sock, struct wire_msg *msg, int flags);

/* Validate a header against the bytes and descriptors that came with it. */
int wire_validate(const struct wire_hdr *h, size_t got, int nfds);

void wire_msg_close_fds(struct wire_msg *msg);

#endif
