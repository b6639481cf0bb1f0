/* SPDX-License-Identifier: MIT */
/*
 * The socket calls of vmf-vsock, in two builds. By default they are the
 * kernel's AF_VSOCK (the guest tool, static, no other library); with
 * VMF_LIBVMFABRIC defined they are libvmfabric's VMCI sockets (the host tool,
 * vmf-vsock-host), acting as the context VMFABRIC_CONTEXT names through the
 * daemon VMFABRIC_SOCKET names, both read by libvmfabric itself.
 *
 * One contract for both: every call returns 0, a descriptor or a count, or
 * -errno (errno is never read by the caller). Blocking calls return -EINTR
 * when a signal handler without SA_RESTART ran; libvmfabric's accept waits
 * through signals, so a listener there is non-blocking and sk_accept waits
 * with poll() on its descriptor, which a signal does interrupt. A
 * libvmfabric socket is not a kernel socket: only its poll() readiness
 * (after vmci_poll_arm) may be used directly, never read() or write().
 */
#ifndef VMF_SOCK_OPS_H
#define VMF_SOCK_OPS_H

#include <errno.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/types.h>

#include <linux/vm_sockets.h>

#ifdef VMF_LIBVMFABRIC

#include <poll.h>

#include "vmfabric/vmci.h"

#define VMF_PROG       "vmf-vsock-host"
#define SK_SOCKET_CALL "vmci_socket"
#define SK_CID_HELP    "the CID of this process's VMCI context (VMFABRIC_CONTEXT)"

/* A socket of TYPE; LISTENER: one that will listen (see the top). */
static inline int
sk_socket(int type, int listener)
{
	return vmci_socket(type | (listener ? SOCK_NONBLOCK : 0));
}

static inline int
sk_bind(int s, const struct sockaddr_vm *a)
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
sk_accept(int l, struct sockaddr_vm *peer)
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
sk_connect(int s, const struct sockaddr_vm *a)
{
	return vmci_connect(s, a);
}

static inline int
sk_set_connect_timeout(int s, const struct timeval *tv)
{
	return vmci_setsockopt(s, VMCI_SOL, SO_VM_SOCKETS_CONNECT_TIMEOUT, tv, sizeof(*tv));
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
sk_getsockname(int s, struct sockaddr_vm *a)
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

#else /* the kernel's AF_VSOCK */

#include <fcntl.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define VMF_PROG       "vmf-vsock"
#define SK_SOCKET_CALL "socket(AF_VSOCK)"
#define SK_CID_HELP    "this machine's local CID (ioctl on /dev/vsock)"

static inline int
sk_ret(int r)
{
	return r < 0 ? -errno : r;
}

static inline int
sk_socket(int type, int listener)
{
	(void)listener;
	return sk_ret(socket(AF_VSOCK, type | SOCK_CLOEXEC, 0));
}

static inline int
sk_bind(int s, const struct sockaddr_vm *a)
{
	return sk_ret(bind(s, (const struct sockaddr *)a, sizeof(*a)));
}

static inline int
sk_listen(int s, int backlog)
{
	return sk_ret(listen(s, backlog));
}

static inline int
sk_accept(int l, struct sockaddr_vm *peer)
{
	socklen_t len = sizeof(*peer);

	return sk_ret(accept4(l, (struct sockaddr *)peer, &len, SOCK_CLOEXEC));
}

static inline int
sk_connect(int s, const struct sockaddr_vm *a)
{
	return sk_ret(connect(s, (const struct sockaddr *)a, sizeof(*a)));
}

static inline int
sk_set_connect_timeout(int s, const struct timeval *tv)
{
	return sk_ret(setsockopt(s, AF_VSOCK, SO_VM_SOCKETS_CONNECT_TIMEOUT, tv, sizeof(*tv)));
}

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
sk_getsockname(int s, struct sockaddr_vm *a)
{
	socklen_t len = sizeof(*a);

	return sk_ret(getsockname(s, (struct sockaddr *)a, &len));
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

#endif /* VMF_LIBVMFABRIC */

#endif
