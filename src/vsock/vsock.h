/* SPDX-License-Identifier: MIT */
/*
 * The virtio-vsock device of a VM, served over vhost-user and bridged into
 * VMCI: every guest connection is relayed to a queue pair whose other end
 * is a host process (a VMCI stream socket) or another VM's connection.
 * The guest's credit (buf_alloc / fwd_cnt) is the queue pair's free space,
 * so a guest that respects it never makes the daemon buffer a stream byte.
 *
 * One device per VM, all on the daemon's event loop: the vhost-user socket,
 * the queues' kick eventfds and each connection's queue pair descriptor are
 * loop sources. The fabric (the VMCI broker) decides where a guest may
 * connect to; devices find each other for guest-to-guest connections.
 */
#ifndef VMFABRIC_VSOCK_H
#define VMFABRIC_VSOCK_H

#include <stdbool.h>
#include <stdint.h>

#include "common/loop.h"

struct qp;
struct vsock_dev;

/* Where a guest's REQUEST goes, decided by the fabric. */
struct vsock_route {
	struct qp *qp;		/* a listener took the other end (connected at once) */
	struct vsock_dev *vm;	/* or: the destination is this VM's device */
	uint64_t qsize;		/* queue size per direction for a VM-to-VM queue pair */
	/* Optional, with qp: called once when the guest's connection is gone. */
	void (*closed)(void *arg);
	void *closed_arg;
};

/*
 * The datagram relay: Linux's virtio-vsock has no SOCK_DGRAM, so a guest
 * reaches VMCI datagrams through a SEQPACKET connection to this port on
 * CID 2. Its source port is its datagram port; each message is a struct
 * wire_dgram (destination CID and port; from the daemon: the true source)
 * followed by the payload (at most 65,536 bytes). See docs/VSOCK.md.
 */
#define VSOCK_DGRAM_RELAY_PORT 1023u

struct vsock_fabric {
	void *ctx;
	/*
	 * Guest @from (CID src_cid) asks to connect from its port @src_port to
	 * @dst_cid:@dst_port (@type: SOCK_STREAM / SOCK_SEQPACKET). Fill @r and
	 * return 0, or -errno: -ECONNREFUSED (no listener), -EACCES (VMCI
	 * policy), -EHOSTUNREACH (no such context); the guest gets RST.
	 */
	int (*route)(void *ctx, struct vsock_dev *from, uint32_t src_port, uint32_t dst_cid,
		     uint32_t dst_port, int type, struct vsock_route *r);
};

struct vsock_stats {
	uint64_t conns;		   /* open now */
	uint64_t opened, refused;  /* connections set up / refused (RST to a REQUEST) */
	uint64_t to_guest_pkts, to_guest_bytes, from_guest_pkts, from_guest_bytes;
	uint64_t resets;	   /* RST sent for a protocol violation or reset */
	uint64_t proto_errors;	   /* malformed or spoofed packets */
	uint64_t rx_no_buffers;	   /* times the guest had no receive buffer */
};

/*
 * A device for the VM with @cid, named @name in logs. Returns 0 or -errno.
 * The device waits for a frontend: vsock_dev_attach().
 */
int vsock_dev_new(struct loop *loop, uint32_t cid, const char *name,
		  const struct vsock_fabric *fab, struct vsock_dev **out);
/* Reset every connection (peers see ECONNRESET), drop the frontend, free. */
void vsock_dev_free(struct vsock_dev *d);
/*
 * Serve the vhost-user frontend on connected socket @sock (QEMU's
 * vhost-user-vsock-pci chardev). Takes @sock. A frontend already attached
 * is dropped first, with its connections.
 */
int vsock_dev_attach(struct vsock_dev *d, int sock);
bool vsock_dev_attached(const struct vsock_dev *d);
uint32_t vsock_dev_cid(const struct vsock_dev *d);
const char *vsock_dev_name(const struct vsock_dev *d);
void vsock_dev_stats(const struct vsock_dev *d, struct vsock_stats *st);
/* Why the frontend was dropped last (a broken ring, a bad message), or NULL. */
const char *vsock_dev_why(const struct vsock_dev *d);

/*
 * Hybrid vsock (Firecracker's convention) on the UNIX socket @path: a host
 * program writes "CONNECT <port>\n", reads "OK <hostport>\n" once the
 * guest accepted, then talks; guest connections to CID 2 port P that no
 * VMCI socket takes go to the UNIX socket "@path_P" if one listens.
 */
int vsock_hybrid_listen(struct vsock_dev *d, const char *path);

/*
 * Restart by exec: vsock_dev_save() fills @s (false: no frontend attached)
 * with what the new daemon needs to serve the same frontend, whose
 * descriptors the caller keeps open across exec; the guest's connections
 * are not saved. vsock_dev_restore() takes the frontend back from @s (and
 * its descriptors): the rings run on where they were. The guest is sent
 * TRANSPORT_RESET if its frontend gave us the event queue (QEMU 7.2 does
 * not); otherwise it learns of each old connection's end from the RST its
 * next packet on it gets.
 */
struct vhu_saved;
bool vsock_dev_save(const struct vsock_dev *d, struct vhu_saved *s);
int vsock_dev_restore(struct vsock_dev *d, const struct vhu_saved *s);

/*
 * Offer a connection to the guest: REQUEST from @src_cid:@src_port to its
 * port @dst_port over @q (the daemon's end; the device takes it). @done is
 * called once: 0 when the guest answers RESPONSE, -ECONNREFUSED on RST (or
 * when it does not listen), -ETIMEDOUT when it does not answer in time,
 * -ECONNRESET when the device goes away. Returns 0, or -errno without
 * calling @done (and without taking @q): -ENOTCONN when no frontend is
 * attached, -EADDRINUSE when that connection exists already.
 */
int vsock_offer(struct vsock_dev *d, uint32_t src_cid, uint32_t src_port, uint32_t dst_port,
		int type, struct qp *q, void (*done)(void *arg, int err), void *arg);

#endif
