/* SPDX-License-Identifier: MIT */
/*
 * virtio-vsock on the wire (virtio 1.x section 5.10): the packet header
 * that starts every buffer on the rx and tx queues, its operations, and
 * the check a header from the guest passes before anything acts on it.
 * Little-endian hosts only, as vhost-user itself.
 */
#ifndef VMFABRIC_VSOCK_PROTO_H
#define VMFABRIC_VSOCK_PROTO_H

#include <stddef.h>
#include <stdint.h>

struct vsock_hdr {
	uint64_t src_cid;
	uint64_t dst_cid;
	uint32_t src_port;
	uint32_t dst_port;
	uint32_t len; /* payload bytes after the header */
	uint16_t type;
	uint16_t op;
	uint32_t flags;
	uint32_t buf_alloc; /* the sender's receive buffer for this connection */
	uint32_t fwd_cnt;   /* payload bytes the sender has consumed from it */
} __attribute__((packed));
_Static_assert(sizeof(struct vsock_hdr) == 44, "virtio_vsock_hdr layout");

#define VSOCK_CID_HOST 2u

/* Device feature bits. */
#define VSOCK_F_STREAM (1ull << 0)
#define VSOCK_F_SEQPACKET (1ull << 1)

#define VSOCK_TYPE_STREAM 1
#define VSOCK_TYPE_SEQPACKET 2

enum vsock_op {
	VSOCK_OP_INVALID = 0,
	VSOCK_OP_REQUEST = 1,
	VSOCK_OP_RESPONSE = 2,
	VSOCK_OP_RST = 3,
	VSOCK_OP_SHUTDOWN = 4,
	VSOCK_OP_RW = 5,
	VSOCK_OP_CREDIT_UPDATE = 6,
	VSOCK_OP_CREDIT_REQUEST = 7,
};

/* SHUTDOWN flags. */
#define VSOCK_SHUT_RCV 1u
#define VSOCK_SHUT_SEND 2u
/* RW flags of SEQPACKET: end of message, end of record (MSG_EOR). */
#define VSOCK_SEQ_EOM 1u
#define VSOCK_SEQ_EOR 2u

/* The event queue's only event: the guest must drop every connection. */
#define VSOCK_EVENT_TRANSPORT_RESET 0u
struct vsock_event {
	uint32_t id;
};

/* Queues. */
#define VSOCK_Q_RX 0u
#define VSOCK_Q_TX 1u
#define VSOCK_Q_EVENT 2u
#define VSOCK_QUEUES 3u

/* The largest payload a guest may put in one packet (Linux: 64 KiB). */
#define VSOCK_MAX_PKT 65536u

/*
 * Check a header read from the guest's tx queue, with @avail payload bytes
 * in its buffer and @cid the device's CID: 0, or -EPROTO with *why set.
 * A header that names another source CID is spoofing; one whose len
 * exceeds the buffer or VSOCK_MAX_PKT is malformed.
 */
int vsock_hdr_check(const struct vsock_hdr *h, uint64_t cid, size_t avail, const char **why);
const char *vsock_op_name(unsigned op);

#endif
