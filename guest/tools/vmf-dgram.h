/* SPDX-License-Identifier: MIT */
/*
 * VMCI datagrams for Linux guests, whose virtio-vsock has no SOCK_DGRAM:
 * sendto/recvfrom over vmfabric's datagram relay, a SEQPACKET connection
 * to port 1023 on the host (CID 2). The connection's source port is the
 * guest's datagram port; each message is an 8-byte header (CID and port,
 * 32-bit little-endian each: the destination going out, the true source
 * coming in, stamped by the daemon) followed by the payload, at most
 * 65,536 bytes. Policy (vmci0.present, restricted) applies as for any
 * VMCI datagram. Header only, for static guest programs.
 *
 *   int fd = vmf_dgram_open(port);            // VMADDR_PORT_ANY: any free port
 *   vmf_dgram_sendto(fd, buf, len, cid, port);
 *   vmf_dgram_recvfrom(fd, buf, len, &cid, &port);
 *
 * All return -1 with errno set on failure, like the socket calls.
 */
#ifndef VMF_DGRAM_H
#define VMF_DGRAM_H

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <linux/vm_sockets.h>

#define VMF_DGRAM_RELAY_PORT 1023u
#define VMF_DGRAM_MAX 65536u

struct vmf_dgram_hdr {
	uint32_t cid;
	uint32_t port;
};

/* A datagram socket bound to @port (VMADDR_PORT_ANY: the guest kernel picks one). */
static inline int
vmf_dgram_open(unsigned port)
{
	struct sockaddr_vm me = { .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY,
				  .svm_port = port };
	struct sockaddr_vm relay = { .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_HOST,
				     .svm_port = VMF_DGRAM_RELAY_PORT };
	int fd = socket(AF_VSOCK, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	if ((port != VMADDR_PORT_ANY && bind(fd, (struct sockaddr *)&me, sizeof(me)) < 0) ||
	    connect(fd, (struct sockaddr *)&relay, sizeof(relay)) < 0) {
		int e = errno;

		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

/* The local port the datagrams come from. */
static inline int
vmf_dgram_port(int fd, unsigned *port)
{
	struct sockaddr_vm me;
	socklen_t len = sizeof(me);

	if (getsockname(fd, (struct sockaddr *)&me, &len) < 0)
		return -1;
	*port = me.svm_port;
	return 0;
}

static inline ssize_t
vmf_dgram_sendto(int fd, const void *buf, size_t len, unsigned cid, unsigned port)
{
	struct vmf_dgram_hdr h = { (uint32_t)cid, (uint32_t)port };
	struct iovec iov[2] = { { &h, sizeof(h) }, { (void *)(uintptr_t)buf, len } };
	struct msghdr m = { .msg_iov = iov, .msg_iovlen = 2 };
	ssize_t n;

	if (len > VMF_DGRAM_MAX) {
		errno = EMSGSIZE;
		return -1;
	}
	n = sendmsg(fd, &m, 0);
	return n < 0 ? -1 : n - (ssize_t)sizeof(h);
}

static inline ssize_t
vmf_dgram_recvfrom(int fd, void *buf, size_t len, unsigned *cid, unsigned *port)
{
	struct vmf_dgram_hdr h;
	struct iovec iov[2] = { { &h, sizeof(h) }, { buf, len } };
	struct msghdr m = { .msg_iov = iov, .msg_iovlen = 2 };
	ssize_t n = recvmsg(fd, &m, 0);

	if (n < 0)
		return -1;
	if (n == 0)
		return 0; /* the relay closed */
	if ((size_t)n < sizeof(h)) {
		errno = EPROTO;
		return -1;
	}
	if (cid)
		*cid = h.cid;
	if (port)
		*port = h.port;
	return n - (ssize_t)sizeof(h);
}

#endif
