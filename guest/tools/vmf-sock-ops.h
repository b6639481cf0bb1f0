/* SPDX-License-Identifier: MIT */
/*
 * The socket calls of vmf-vsock, in three builds. By default they are the
 * kernel's AF_VSOCK (the guest tool, static, no other library); with
 * VMF_LIBVMFABRIC defined they are libvmfabric's VMCI sockets (the host tool,
 * vmf-vsock-host), acting as the context VMFABRIC_CONTEXT names through the
 * daemon VMFABRIC_SOCKET names, both read by libvmfabric itself; with
 * VMF_INET defined they are the kernel's TCP over IPv4 (vmf-tcp, guest and
 * host).
 *
 * One contract for all: every call returns 0, a descriptor or a count, or
 * -errno (errno is never read by the caller). Blocking calls return -EINTR
 * when a signal handler without SA_RESTART ran; libvmfabric's accept waits
 * through signals, so a listener there is non-blocking and sk_accept waits
 * with poll() on its descriptor, which a signal does interrupt. A
 * libvmfabric socket is not a kernel socket: only its poll() readiness
 * (after vmci_poll_arm) may be used directly, never read() or write().
 *
 * An address (sk_addr_t) is a host and a port, both held as 32-bit numbers:
 * the host is a CID, or with VMF_INET an IPv4 address in host byte order.
 */
#ifndef VMF_SOCK_OPS_H
#define VMF_SOCK_OPS_H

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/types.h>

#if defined(VMF_INET) && defined(VMF_LIBVMFABRIC)
#error "VMF_INET and VMF_LIBVMFABRIC exclude each other"
#endif

/* Room for a host as text (sk_host_format), NUL included. */
#define SK_HOST_STRLEN 16

/* A decimal number of at most MAX into *OUT; 0 or -1. */
static inline int
sk_parse_u32(const char *s, uint32_t max, uint32_t *out)
{
	unsigned long v;
	char *end;

	if (*s < '0' || *s > '9')
		return -1;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || *end || v > max)
		return -1;
	*out = (uint32_t)v;
	return 0;
}

/* ---- addresses ------------------------------------------------------------ */

#ifdef VMF_INET

#include <arpa/inet.h>
#include <netinet/in.h>

typedef struct sockaddr_in sk_addr_t;

#define SK_HOST_ARG "ADDR" /* the host in the usage */
#define SK_HOST_KEY "addr" /* the host in a result line: peer_addr= */
#define SK_HOST_ANY INADDR_ANY
#define SK_PORT_ANY 0u
#define SK_PORT_MAX 65535u

static inline void
sk_addr_set(sk_addr_t *a, uint32_t host, uint32_t port)
{
	memset(a, 0, sizeof(*a));
	a->sin_family = AF_INET;
	a->sin_addr.s_addr = htonl(host);
	a->sin_port = htons((uint16_t)port);
}

static inline uint32_t
sk_addr_host(const sk_addr_t *a)
{
	return ntohl(a->sin_addr.s_addr);
}

static inline uint32_t
sk_addr_port(const sk_addr_t *a)
{
	return ntohs(a->sin_port);
}

/* An IPv4 address in dotted-decimal form; 0 or -1. */
static inline int
sk_host_parse(const char *s, uint32_t *host)
{
	struct in_addr in;

	if (inet_pton(AF_INET, s, &in) != 1)
		return -1;
	*host = ntohl(in.s_addr);
	return 0;
}

static inline void
sk_host_format(uint32_t host, char buf[SK_HOST_STRLEN])
{
	struct in_addr in = { .s_addr = htonl(host) };

	if (!inet_ntop(AF_INET, &in, buf, SK_HOST_STRLEN))
		snprintf(buf, SK_HOST_STRLEN, "?");
}

#else /* vsock */

#include <linux/vm_sockets.h>

typedef struct sockaddr_vm sk_addr_t;

#define SK_HOST_ARG "CID"
#define SK_HOST_KEY "cid"
#define SK_HOST_ANY VMADDR_CID_ANY
#define SK_PORT_ANY VMADDR_PORT_ANY
#define SK_PORT_MAX UINT32_MAX

static inline void
sk_addr_set(sk_addr_t *a, uint32_t host, uint32_t port)
{
	memset(a, 0, sizeof(*a));
	a->svm_family = AF_VSOCK;
	a->svm_cid = host;
	a->svm_port = port;
}

static inline uint32_t
sk_addr_host(const sk_addr_t *a)
{
	return a->svm_cid;
}

static inline uint32_t
sk_addr_port(const sk_addr_t *a)
{
	return a->svm_port;
}

/* A CID: a number, "host" (2) or "local" (1); 0 or -1. */
static inline int
sk_host_parse(const char *s, uint32_t *host)
{
	if (strcmp(s, "host") == 0) {
		*host = VMADDR_CID_HOST;
		return 0;
	}
	if (strcmp(s, "local") == 0) {
		*host = VMADDR_CID_LOCAL;
		return 0;
	}
	return sk_parse_u32(s, UINT32_MAX, host);
}

static inline void
sk_host_format(uint32_t host, char buf[SK_HOST_STRLEN])
{
	snprintf(buf, SK_HOST_STRLEN, "%u", host);
}

#endif /* VMF_INET */

/* ---- calls ---------------------------------------------------------------- */

#ifdef VMF_LIBVMFABRIC

#include <poll.h>

#include "vmfabric/vmci.h"

#define VMF_PROG		"vmf-vsock-host"
#define SK_SOCKET_CALL		"vmci_socket"
#define SK_CONNECT_TIMEOUT_CALL "setsockopt(SO_VM_SOCKETS_CONNECT_TIMEOUT)"
#define SK_CID_HELP		"the CID of this process's VMCI context (VMFABRIC_CONTEXT)"

/* A socket of TYPE; LISTENER: one that will listen (see the top). */
static inline int
sk_socket(int type, int listener)
{
	return vmci_socket(type | (listener ? SOCK_NONBLOCK : 0));
}

static inline int
sk_bind(int s, const sk_addr_t *a)
{
	return vmci_bind(s, a);
}

static inline int
sk_listen(int s, int backlog)
{
	return vmci_listen(s, backlog);
}

/* One connection (a blocking socket) with its peer in *PEER; -EINTR on a signal. */
static inline int
sk_accept(int l, sk_addr_t *peer)
{
	for (;;) {
		struct pollfd p = { .fd = l, .events = POLLIN };
		int s = vmci_accept(l, peer, 0), ms;

		if (s != -EAGAIN)
			return s;
		/*
		 * Ready without a connection: the daemon is away and the
		 * listener registers again when it is back; look again soon.
		 */
		ms = vmci_poll_arm(l, POLLIN) ? 100 : -1;
		if (poll(&p, 1, ms) < 0 && errno == EINTR)
			return -EINTR;
	}
}

static inline int
sk_connect(int s, const sk_addr_t *a)
{
	return vmci_connect(s, a);
}

static inline int
sk_set_connect_timeout(int s, const struct timeval *tv)
{
	return vmci_setsockopt(s, VMCI_SOL, SO_VM_SOCKETS_CONNECT_TIMEOUT, tv, sizeof(*tv));
}

/* Small writes go out at once (TCP_NODELAY); VMCI sockets do not wait anyway. */
static inline int
sk_nodelay(int s)
{
	(void)s;
	return 0;
}

static inline ssize_t
sk_send(int s, const void *buf, size_t len)
{
	return vmci_send(s, buf, len, 0);
}

/*
 * One read into BUF; MSG_TRUNC in *FLAGS when a message was longer than LEN
 * (MSG_TRUNC asks libvmfabric for a message's full length; streams ignore it).
 */
static inline ssize_t
sk_recv(int s, void *buf, size_t len, int *flags)
{
	ssize_t n = vmci_recv(s, buf, len, MSG_TRUNC);

	*flags = 0;
	if (n > (ssize_t)len) {
		*flags = MSG_TRUNC;
		n = (ssize_t)len;
	}
	return n;
}

static inline int
sk_shutdown(int s, int how)
{
	return vmci_shutdown(s, how);
}

static inline int
sk_close(int s)
{
	return vmci_close(s);
}

static inline int
sk_getsockname(int s, sk_addr_t *a)
{
	return vmci_getsockname(s, a);
}

/* The local CID into *CID; on failure *WHAT names the call. */
static inline int
sk_local_cid(uint32_t *cid, const char **what)
{
	*what = "vmci_get_local_cid";
	return vmci_get_local_cid(cid);
}

#else /* the kernel's sockets: AF_VSOCK, or AF_INET (TCP) with VMF_INET */

#include <fcntl.h>
#include <sys/ioctl.h>
#include <unistd.h>

#ifdef VMF_INET
#include <netinet/tcp.h>

#define VMF_PROG		"vmf-tcp"
#define SK_FAMILY		AF_INET
#define SK_SOCKET_CALL		"socket(AF_INET)"
#define SK_CONNECT_TIMEOUT_CALL "setsockopt(SO_SNDTIMEO)"
#else
#define VMF_PROG		"vmf-vsock"
#define SK_FAMILY		AF_VSOCK
#define SK_SOCKET_CALL		"socket(AF_VSOCK)"
#define SK_CONNECT_TIMEOUT_CALL "setsockopt(SO_VM_SOCKETS_CONNECT_TIMEOUT)"
#define SK_CID_HELP		"this machine's local CID (ioctl on /dev/vsock)"
#endif

static inline int
sk_ret(int r)
{
	return r < 0 ? -errno : r;
}

static inline int
sk_socket(int type, int listener)
{
	int s = socket(SK_FAMILY, type | SOCK_CLOEXEC, 0);
#ifdef VMF_INET
	int one = 1;

	/* A listener takes its port again at once, whatever TIME_WAIT is left. */
	if (s >= 0 && listener && setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0) {
		int err = -errno;

		close(s);
		return err;
	}
#else
	(void)listener;
#endif
	return sk_ret(s);
}

static inline int
sk_bind(int s, const sk_addr_t *a)
{
	return sk_ret(bind(s, (const struct sockaddr *)a, sizeof(*a)));
}

static inline int
sk_listen(int s, int backlog)
{
	return sk_ret(listen(s, backlog));
}

static inline int
sk_accept(int l, sk_addr_t *peer)
{
	socklen_t len = sizeof(*peer);

	return sk_ret(accept4(l, (struct sockaddr *)peer, &len, SOCK_CLOEXEC));
}

#ifdef VMF_INET

/*
 * TCP has no connect timeout of its own: a blocking connect() waits at most
 * the send timeout (SO_SNDTIMEO, socket(7)), and fails with EINPROGRESS
 * when it ran out. sk_connect makes that ETIMEDOUT and clears the send
 * timeout again, so that it never cuts a write short.
 */
static inline int
sk_set_connect_timeout(int s, const struct timeval *tv)
{
	return sk_ret(setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, tv, sizeof(*tv)));
}

static inline int
sk_connect(int s, const sk_addr_t *a)
{
	struct timeval none = { 0 };
	int err = sk_ret(connect(s, (const struct sockaddr *)a, sizeof(*a)));

	if (err == -EINPROGRESS)
		return -ETIMEDOUT;
	if (!err)
		err = sk_ret(setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &none, sizeof(none)));
	return err;
}

/* Small writes go out at once (TCP_NODELAY), for round trips. */
static inline int
sk_nodelay(int s)
{
	int one = 1;

	return sk_ret(setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)));
}

#else /* AF_VSOCK */

static inline int
sk_set_connect_timeout(int s, const struct timeval *tv)
{
	return sk_ret(setsockopt(s, AF_VSOCK, SO_VM_SOCKETS_CONNECT_TIMEOUT, tv, sizeof(*tv)));
}

static inline int
sk_connect(int s, const sk_addr_t *a)
{
	return sk_ret(connect(s, (const struct sockaddr *)a, sizeof(*a)));
}

/* Small writes go out at once (TCP_NODELAY); vsock does not wait anyway. */
static inline int
sk_nodelay(int s)
{
	(void)s;
	return 0;
}

/* The local CID into *CID; on failure *WHAT names the call. */
static inline int
sk_local_cid(uint32_t *cid, const char **what)
{
	unsigned int c = VMADDR_CID_ANY;
	int fd, err;

	*what = "open /dev/vsock";
	fd = open("/dev/vsock", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	*what = "ioctl(IOCTL_VM_SOCKETS_GET_LOCAL_CID)";
	err = ioctl(fd, IOCTL_VM_SOCKETS_GET_LOCAL_CID, &c) < 0 ? -errno : 0;
	close(fd);
	*cid = c;
	return err;
}

#endif /* VMF_INET */

static inline ssize_t
sk_send(int s, const void *buf, size_t len)
{
	ssize_t n = send(s, buf, len, MSG_NOSIGNAL);

	return n < 0 ? -errno : n;
}

/* One read into BUF; the flags recvmsg reports (MSG_TRUNC) in *FLAGS. */
static inline ssize_t
sk_recv(int s, void *buf, size_t len, int *flags)
{
	struct iovec iov = { .iov_base = buf, .iov_len = len };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	ssize_t n = recvmsg(s, &msg, 0);

	if (n < 0)
		return -errno;
	*flags = msg.msg_flags;
	return n;
}

static inline int
sk_shutdown(int s, int how)
{
	return sk_ret(shutdown(s, how));
}

static inline int
sk_close(int s)
{
	return sk_ret(close(s));
}

static inline int
sk_getsockname(int s, sk_addr_t *a)
{
	socklen_t len = sizeof(*a);

	return sk_ret(getsockname(s, (struct sockaddr *)a, &len));
}

#endif /* VMF_LIBVMFABRIC */

#endif
