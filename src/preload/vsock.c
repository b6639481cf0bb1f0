/* SPDX-License-Identifier: MIT */
/*
 * libvmfabric-vsock.so: AF_VSOCK for unmodified programs, through
 * libvmfabric. Preloaded (LD_PRELOAD), it takes socket(AF_VSOCK, ...) and
 * makes a VMCI socket of libvmfabric instead; every later call on that
 * descriptor (bind, listen, accept, connect, read, write, send*, recv*,
 * shutdown, close, get/setsockopt, get*name, fcntl, ioctl FIONBIO/FIONREAD,
 * poll, ppoll, select, pselect) goes to libvmfabric, and every other call
 * goes on to the C library untouched. The process acts as the context
 * VMFABRIC_CONTEXT names (default: the host, CID 2) and reaches the daemon
 * at VMFABRIC_SOCKET, as any libvmfabric program does.
 *
 *   LD_PRELOAD=libvmfabric-vsock.so socat - VSOCK-CONNECT:5:7000
 *
 * A VMCI socket's descriptor is an epoll set that becomes readable when the
 * socket may have changed; poll() and select() here ask libvmfabric what
 * is really ready (vmci_poll_arm) and sleep on those sets otherwise, so
 * POLLOUT works too. epoll on such a descriptor sees readability only (a
 * program that uses epoll must use non-blocking sockets and expect
 * EAGAIN). What is not there: descriptors passed to another process or
 * inherited across fork() or exec() (the socket's state lives in this
 * process: in a child its descriptor is a plain one, which it may close),
 * dup() of a VMCI socket, and sendfile/splice.
 *
 * libvmfabric itself calls poll(), read(), close() ... on its own
 * descriptors, some of which are the sockets' descriptors: inside the
 * library (a per-thread depth) every call goes straight to the C library.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "lib/lib.h"
#include "vmfabric/vmci.h"

#define EXPORT __attribute__((visibility("default")))

static __thread int depth; /* > 0: inside libvmfabric */
/*
 * In a child of fork() the sockets it inherited (their queue pairs and
 * control connections) are the parent's: there their descriptors are
 * plain descriptors again, so that closing one (as a child about to exec
 * does) cannot tear down the parent's connection. Sockets the child makes
 * itself are its own.
 */
#define FD_BITS 65536
static uint64_t inherited[FD_BITS / 64];
static bool forked; /* inherited[] may have bits */
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static bool
was_inherited(int fd)
{
	return forked && fd < FD_BITS && (inherited[fd / 64] >> (fd % 64) & 1);
}

static void
in_child(void)
{
	for (int fd = 0; fd < FD_BITS; fd++)
		if (lib_table_get(fd))
			inherited[fd / 64] |= 1ull << (fd % 64);
	forked = true;
}

static void
watch_fork(void)
{
	pthread_atfork(NULL, NULL, in_child);
}

/* The C library's function @name, found once. */
#define REAL(ret, name, ...)                                        \
	static ret (*real_##name)(__VA_ARGS__);                     \
	static ret (*get_##name(void))(__VA_ARGS__)                 \
	{                                                           \
		if (!real_##name)                                   \
			real_##name = (ret(*)(__VA_ARGS__))dlsym(RTLD_NEXT, #name); \
		return real_##name;                                 \
	}

REAL(int, socket, int, int, int)
REAL(int, bind, int, const struct sockaddr *, socklen_t)
REAL(int, listen, int, int)
REAL(int, accept, int, struct sockaddr *, socklen_t *)
REAL(int, accept4, int, struct sockaddr *, socklen_t *, int)
REAL(int, connect, int, const struct sockaddr *, socklen_t)
REAL(int, getsockname, int, struct sockaddr *, socklen_t *)
REAL(int, getpeername, int, struct sockaddr *, socklen_t *)
REAL(int, getsockopt, int, int, int, void *, socklen_t *)
REAL(int, setsockopt, int, int, int, const void *, socklen_t)
REAL(ssize_t, send, int, const void *, size_t, int)
REAL(ssize_t, sendto, int, const void *, size_t, int, const struct sockaddr *, socklen_t)
REAL(ssize_t, sendmsg, int, const struct msghdr *, int)
REAL(ssize_t, recv, int, void *, size_t, int)
REAL(ssize_t, recvfrom, int, void *, size_t, int, struct sockaddr *, socklen_t *)
REAL(ssize_t, recvmsg, int, struct msghdr *, int)
REAL(ssize_t, read, int, void *, size_t)
REAL(ssize_t, write, int, const void *, size_t)
REAL(ssize_t, readv, int, const struct iovec *, int)
REAL(ssize_t, writev, int, const struct iovec *, int)
REAL(int, close, int)
REAL(int, shutdown, int, int)
REAL(int, fcntl, int, int, ...)
REAL(int, ioctl, int, unsigned long, ...)
REAL(int, poll, struct pollfd *, nfds_t, int)
REAL(int, ppoll, struct pollfd *, nfds_t, const struct timespec *, const sigset_t *)
REAL(int, select, int, fd_set *, fd_set *, fd_set *, struct timeval *)
REAL(int, pselect, int, fd_set *, fd_set *, fd_set *, const struct timespec *, const sigset_t *)

/* The VMCI socket behind @fd, outside the library; NULL: a descriptor of the C library's. */
static struct vsk *
vsock(int fd)
{
	return depth || fd < 0 || was_inherited(fd) ? NULL : lib_table_get(fd);
}

/* A libvmfabric result (-errno) as the C library's (-1, errno). */
static long
ret(long r)
{
	if (r >= 0)
		return r;
	errno = (int)-r;
	return -1;
}

#define IN_LIB(expr) (depth++, _lib = (expr), depth--, _lib)

static const struct sockaddr_vm *
vm_addr(const struct sockaddr *a, socklen_t len)
{
	return a && len >= sizeof(struct sockaddr_vm) && a->sa_family == AF_VSOCK
		       ? (const struct sockaddr_vm *)a
		       : NULL;
}

/* Copy a VMCI address out as the kernel does: truncated to *@len, *@len set to its size. */
static void
put_addr(const struct sockaddr_vm *v, struct sockaddr *a, socklen_t *len)
{
	if (!a || !len)
		return;
	memcpy(a, v, *len < sizeof(*v) ? *len : sizeof(*v));
	*len = sizeof(*v);
}

EXPORT int
socket(int domain, int type, int protocol)
{
	long _lib;

	if (domain != AF_VSOCK || depth)
		return get_socket()(domain, type, protocol);
	if (protocol != 0)
		return (int)ret(-EPROTONOSUPPORT);
	pthread_once(&atfork_once, watch_fork);
	return (int)ret(IN_LIB(vmci_socket(type)));
}

EXPORT int
bind(int fd, const struct sockaddr *a, socklen_t len)
{
	const struct sockaddr_vm *v;
	long _lib;

	if (!vsock(fd))
		return get_bind()(fd, a, len);
	if (!(v = vm_addr(a, len)))
		return (int)ret(-EINVAL);
	return (int)ret(IN_LIB(vmci_bind(fd, v)));
}

EXPORT int
listen(int fd, int backlog)
{
	long _lib;

	if (!vsock(fd))
		return get_listen()(fd, backlog);
	return (int)ret(IN_LIB(vmci_listen(fd, backlog)));
}

EXPORT int
accept4(int fd, struct sockaddr *a, socklen_t *len, int flags)
{
	struct sockaddr_vm peer;
	long _lib;
	int c;

	if (!vsock(fd))
		return get_accept4()(fd, a, len, flags);
	c = (int)IN_LIB(vmci_accept(fd, &peer, flags & SOCK_NONBLOCK));
	if (c >= 0)
		put_addr(&peer, a, len);
	return (int)ret(c);
}

EXPORT int
accept(int fd, struct sockaddr *a, socklen_t *len)
{
	if (!vsock(fd))
		return get_accept()(fd, a, len);
	return accept4(fd, a, len, 0);
}

EXPORT int
connect(int fd, const struct sockaddr *a, socklen_t len)
{
	const struct sockaddr_vm *v;
	long _lib;

	if (!vsock(fd))
		return get_connect()(fd, a, len);
	if (!(v = vm_addr(a, len)))
		return (int)ret(a && a->sa_family != AF_VSOCK ? -EAFNOSUPPORT : -EINVAL);
	return (int)ret(IN_LIB(vmci_connect(fd, v)));
}

EXPORT int
getsockname(int fd, struct sockaddr *a, socklen_t *len)
{
	struct sockaddr_vm v;
	long _lib;
	int err;

	if (!vsock(fd))
		return get_getsockname()(fd, a, len);
	if (!(err = (int)IN_LIB(vmci_getsockname(fd, &v))))
		put_addr(&v, a, len);
	return (int)ret(err);
}

EXPORT int
getpeername(int fd, struct sockaddr *a, socklen_t *len)
{
	struct sockaddr_vm v;
	long _lib;
	int err;

	if (!vsock(fd))
		return get_getpeername()(fd, a, len);
	if (!(err = (int)IN_LIB(vmci_getpeername(fd, &v))))
		put_addr(&v, a, len);
	return (int)ret(err);
}

/* SOL_SOCKET options that mean nothing for a VMCI socket: accepted, as the kernel's vsock does. */
static bool
harmless(int level, int name)
{
	return level == SOL_SOCKET && (name == SO_REUSEADDR || name == SO_REUSEPORT ||
				       name == SO_KEEPALIVE || name == SO_LINGER ||
				       name == SO_SNDBUF || name == SO_RCVBUF ||
				       name == SO_OOBINLINE || name == SO_PRIORITY);
}

EXPORT int
getsockopt(int fd, int level, int name, void *val, socklen_t *len)
{
	long _lib;

	if (!vsock(fd))
		return get_getsockopt()(fd, level, name, val, len);
	return (int)ret(IN_LIB(vmci_getsockopt(fd, level, name, val, len)));
}

EXPORT int
setsockopt(int fd, int level, int name, const void *val, socklen_t len)
{
	long _lib;
	int err;

	if (!vsock(fd))
		return get_setsockopt()(fd, level, name, val, len);
	err = (int)IN_LIB(vmci_setsockopt(fd, level, name, val, len));
	if (err == -ENOPROTOOPT && harmless(level, name))
		err = 0;
	return (int)ret(err);
}

EXPORT ssize_t
sendto(int fd, const void *buf, size_t n, int flags, const struct sockaddr *a, socklen_t len)
{
	long _lib;

	if (!vsock(fd))
		return get_sendto()(fd, buf, n, flags, a, len);
	flags &= ~MSG_NOSIGNAL; /* a closed peer is -EPIPE, never SIGPIPE, here */
	if (a)
		return ret(IN_LIB(vmci_sendto(fd, buf, n, flags, vm_addr(a, len))));
	return ret(IN_LIB(vmci_send(fd, buf, n, flags)));
}

EXPORT ssize_t
send(int fd, const void *buf, size_t n, int flags)
{
	if (!vsock(fd))
		return get_send()(fd, buf, n, flags);
	return sendto(fd, buf, n, flags, NULL, 0);
}

EXPORT ssize_t
write(int fd, const void *buf, size_t n)
{
	if (!vsock(fd))
		return get_write()(fd, buf, n);
	return sendto(fd, buf, n, 0, NULL, 0);
}

EXPORT ssize_t
recvfrom(int fd, void *buf, size_t n, int flags, struct sockaddr *a, socklen_t *len)
{
	struct sockaddr_vm from;
	long _lib;
	ssize_t r;

	if (!vsock(fd))
		return get_recvfrom()(fd, buf, n, flags, a, len);
	if (flags & MSG_ERRQUEUE)
		return ret(-EAGAIN); /* no error queue */
	r = IN_LIB(vmci_recvfrom(fd, buf, n, flags, &from));
	if (r >= 0 && a)
		put_addr(&from, a, len);
	return ret(r);
}

EXPORT ssize_t
recv(int fd, void *buf, size_t n, int flags)
{
	if (!vsock(fd))
		return get_recv()(fd, buf, n, flags);
	return recvfrom(fd, buf, n, flags, NULL, NULL);
}

EXPORT ssize_t
read(int fd, void *buf, size_t n)
{
	if (!vsock(fd))
		return get_read()(fd, buf, n);
	return recvfrom(fd, buf, n, 0, NULL, NULL);
}

/* Scatter-gather through one bounce buffer: a message stays one message. */
static size_t
iov_len(const struct iovec *iov, size_t n)
{
	size_t len = 0;

	for (size_t i = 0; i < n; i++)
		len += iov[i].iov_len;
	return len;
}

EXPORT ssize_t
sendmsg(int fd, const struct msghdr *m, int flags)
{
	size_t len, off = 0;
	ssize_t r;
	char *buf;

	if (!vsock(fd))
		return get_sendmsg()(fd, m, flags);
	if (m->msg_controllen)
		return ret(-EOPNOTSUPP); /* no descriptors or credentials over VMCI */
	len = iov_len(m->msg_iov, m->msg_iovlen);
	if (!(buf = malloc(len ? len : 1)))
		return ret(-ENOMEM);
	for (size_t i = 0; i < m->msg_iovlen; i++) {
		memcpy(buf + off, m->msg_iov[i].iov_base, m->msg_iov[i].iov_len);
		off += m->msg_iov[i].iov_len;
	}
	r = sendto(fd, buf, len, flags, m->msg_name, m->msg_namelen);
	free(buf);
	return r;
}

EXPORT ssize_t
writev(int fd, const struct iovec *iov, int n)
{
	struct msghdr m = { .msg_iov = (struct iovec *)(uintptr_t)iov, .msg_iovlen = (size_t)n };

	if (!vsock(fd))
		return get_writev()(fd, iov, n);
	if (n < 0)
		return ret(-EINVAL);
	return sendmsg(fd, &m, 0);
}

EXPORT ssize_t
recvmsg(int fd, struct msghdr *m, int flags)
{
	size_t len, off = 0;
	socklen_t namelen = m->msg_namelen;
	ssize_t r;
	char *buf;

	if (!vsock(fd))
		return get_recvmsg()(fd, m, flags);
	len = iov_len(m->msg_iov, m->msg_iovlen);
	if (!(buf = malloc(len ? len : 1)))
		return ret(-ENOMEM);
	r = recvfrom(fd, buf, len, flags, m->msg_name, m->msg_name ? &namelen : NULL);
	for (size_t i = 0; r > 0 && i < m->msg_iovlen && off < (size_t)r; i++) {
		size_t k = m->msg_iov[i].iov_len < (size_t)r - off ? m->msg_iov[i].iov_len
								    : (size_t)r - off;

		memcpy(m->msg_iov[i].iov_base, buf + off, k);
		off += k;
	}
	free(buf);
	if (r >= 0) {
		m->msg_namelen = m->msg_name ? namelen : 0;
		m->msg_controllen = 0;
		m->msg_flags = (flags & MSG_TRUNC) == 0 && (size_t)r > len ? MSG_TRUNC : 0;
		if ((size_t)r > len && !(flags & MSG_TRUNC))
			r = (ssize_t)len;
	}
	return r;
}

EXPORT ssize_t
readv(int fd, const struct iovec *iov, int n)
{
	struct msghdr m = { .msg_iov = (struct iovec *)(uintptr_t)iov, .msg_iovlen = (size_t)n };

	if (!vsock(fd))
		return get_readv()(fd, iov, n);
	if (n < 0)
		return ret(-EINVAL);
	return recvmsg(fd, &m, 0);
}

EXPORT int
shutdown(int fd, int how)
{
	long _lib;

	if (!vsock(fd))
		return get_shutdown()(fd, how);
	return (int)ret(IN_LIB(vmci_shutdown(fd, how)));
}

EXPORT int
close(int fd)
{
	long _lib;

	if (was_inherited(fd))
		inherited[fd / 64] &= ~(1ull << (fd % 64)); /* the number may be a socket of ours next */
	if (!vsock(fd))
		return get_close()(fd);
	return (int)ret(IN_LIB(vmci_close(fd)));
}

REAL(int, dup2, int, int)
REAL(int, dup3, int, int, int)

/* dup2()/dup3() onto a VMCI socket's number close that socket first, as the kernel would. */
EXPORT int
dup3(int old, int new, int flags)
{
	long _lib;

	if (old != new && vsock(new))
		(void)IN_LIB(vmci_close(new));
	return get_dup3()(old, new, flags);
}

EXPORT int
dup2(int old, int new)
{
	long _lib;

	if (old != new && vsock(new))
		(void)IN_LIB(vmci_close(new));
	return get_dup2()(old, new);
}

EXPORT int
fcntl(int fd, int cmd, ...)
{
	struct vsk *v = vsock(fd);
	va_list ap;
	long arg;
	int r;

	va_start(ap, cmd);
	arg = va_arg(ap, long); /* every command's argument fits a long, or is ignored */
	va_end(ap);
	if (!v || (cmd != F_GETFL && cmd != F_SETFL))
		return get_fcntl()(fd, cmd, arg);
	if (cmd == F_SETFL) {
		v->nonblock = arg & O_NONBLOCK;
		return 0;
	}
	r = get_fcntl()(fd, F_GETFL, 0);
	return r < 0 ? r : (r & ~O_NONBLOCK) | O_RDWR | (v->nonblock ? O_NONBLOCK : 0);
}

EXPORT int
ioctl(int fd, unsigned long req, ...)
{
	struct vsk *v = vsock(fd);
	va_list ap;
	void *arg;

	va_start(ap, req);
	arg = va_arg(ap, void *);
	va_end(ap);
	if (!v)
		return get_ioctl()(fd, req, arg);
	if (req == FIONBIO) {
		v->nonblock = *(const int *)arg != 0;
		return 0;
	}
	if (req == FIONREAD) {
		long _lib;
		short ev = (short)IN_LIB(vmci_poll_arm(fd, POLLIN));

		/* Whether there is something, not how much: enough for "wait or read". */
		*(int *)arg = (ev & POLLIN) ? 1 : 0;
		return 0;
	}
	return (int)ret(-ENOTTY);
}

/* ---------------------------------------------------------------------- */
/* Waiting */

static int64_t
now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/*
 * poll() over a set with VMCI sockets: ask each what is ready (arming its
 * wakeup), then sleep on everything with those sockets' sets asked for
 * POLLIN; a socket that woke is asked again. @ns < 0: no limit.
 */
static int
vpoll(struct pollfd *fds, nfds_t n, int64_t ns, const sigset_t *mask)
{
	int64_t end = ns < 0 ? -1 : now_ns() + ns;
	struct pollfd *tmp = malloc((n ? n : 1) * sizeof(*tmp));
	short *vr = malloc((n ? n : 1) * sizeof(*vr));
	int r = -1;

	if (!tmp || !vr) {
		errno = ENOMEM;
		goto out;
	}
	for (;;) {
		int ready = 0, count = 0;
		int64_t left = end < 0 ? -1 : end - now_ns();
		struct timespec ts = { 0, 0 };

		if (end >= 0 && left < 0)
			left = 0;
		for (nfds_t i = 0; i < n; i++) {
			tmp[i] = fds[i];
			vr[i] = -1;
			if (vsock(fds[i].fd)) {
				long _lib;
				short want = fds[i].events & (POLLIN | POLLOUT | POLLRDNORM | POLLWRNORM);

				want |= (want & POLLRDNORM ? POLLIN : 0) | (want & POLLWRNORM ? POLLOUT : 0);
				vr[i] = (short)IN_LIB(vmci_poll_arm(fds[i].fd, want));
				vr[i] &= (short)(fds[i].events | POLLIN | POLLOUT | POLLHUP | POLLERR |
						 POLLNVAL);
				if (vr[i] & POLLIN)
					vr[i] |= fds[i].events & POLLRDNORM;
				if (vr[i] & POLLOUT)
					vr[i] |= fds[i].events & POLLWRNORM;
				vr[i] &= (short)(fds[i].events | POLLHUP | POLLERR | POLLNVAL);
				ready += vr[i] != 0;
				tmp[i].events = POLLIN;
			}
		}
		if (!ready && left > 0)
			ts = (struct timespec){ left / 1000000000, left % 1000000000 };
		r = get_ppoll()(tmp, n, left < 0 && !ready ? NULL : &ts, mask);
		if (r < 0)
			goto out;
		for (nfds_t i = 0; i < n; i++) {
			fds[i].revents = vr[i] >= 0 ? vr[i] : tmp[i].revents;
			count += fds[i].revents != 0;
		}
		if (count || ready || (end >= 0 && now_ns() >= end)) {
			r = count;
			goto out;
		}
		/* Only VMCI sockets woke (or nothing, early): ask them again. */
	}
out:
	free(tmp);
	free(vr);
	return r;
}

static bool
any_vsock(const struct pollfd *fds, nfds_t n)
{
	for (nfds_t i = 0; i < n; i++)
		if (vsock(fds[i].fd))
			return true;
	return false;
}

EXPORT int
poll(struct pollfd *fds, nfds_t n, int timeout)
{
	if (depth || !any_vsock(fds, n))
		return get_poll()(fds, n, timeout);
	return vpoll(fds, n, timeout < 0 ? -1 : (int64_t)timeout * 1000000, NULL);
}

EXPORT int
ppoll(struct pollfd *fds, nfds_t n, const struct timespec *t, const sigset_t *mask)
{
	if (depth || !any_vsock(fds, n))
		return get_ppoll()(fds, n, t, mask);
	return vpoll(fds, n, t ? (int64_t)t->tv_sec * 1000000000 + t->tv_nsec : -1, mask);
}

/* select() as poll(): only when a VMCI socket is in the sets. */
static int
vselect(int nfds, fd_set *r, fd_set *w, fd_set *x, int64_t ns, const sigset_t *mask)
{
	struct pollfd *p = malloc((size_t)(nfds > 0 ? nfds : 1) * sizeof(*p));
	nfds_t n = 0;
	int res;

	if (!p) {
		errno = ENOMEM;
		return -1;
	}
	for (int fd = 0; fd < nfds; fd++) {
		short ev = (short)((r && FD_ISSET(fd, r) ? POLLIN : 0) |
				   (w && FD_ISSET(fd, w) ? POLLOUT : 0) |
				   (x && FD_ISSET(fd, x) ? POLLPRI : 0));

		if (ev)
			p[n++] = (struct pollfd){ .fd = fd, .events = ev };
	}
	res = vpoll(p, n, ns, mask);
	if (res >= 0) {
		res = 0;
		if (r)
			FD_ZERO(r);
		if (w)
			FD_ZERO(w);
		if (x)
			FD_ZERO(x);
		for (nfds_t i = 0; i < n; i++) {
			short re = p[i].revents;

			if (re & POLLNVAL) {
				free(p);
				errno = EBADF;
				return -1;
			}
			if (r && (re & (POLLIN | POLLHUP | POLLERR)) && (p[i].events & POLLIN))
				FD_SET(p[i].fd, r), res++;
			if (w && (re & (POLLOUT | POLLERR)) && (p[i].events & POLLOUT))
				FD_SET(p[i].fd, w), res++;
			if (x && (re & POLLPRI))
				FD_SET(p[i].fd, x), res++;
		}
	}
	free(p);
	return res;
}

static bool
sets_have_vsock(int nfds, const fd_set *r, const fd_set *w, const fd_set *x)
{
	if (depth)
		return false;
	for (int fd = 0; fd < nfds && fd < FD_SETSIZE; fd++)
		if (((r && FD_ISSET(fd, r)) || (w && FD_ISSET(fd, w)) || (x && FD_ISSET(fd, x))) &&
		    vsock(fd))
			return true;
	return false;
}

EXPORT int
select(int nfds, fd_set *r, fd_set *w, fd_set *x, struct timeval *t)
{
	if (!sets_have_vsock(nfds, r, w, x))
		return get_select()(nfds, r, w, x, t);
	return vselect(nfds, r, w, x, t ? (int64_t)t->tv_sec * 1000000000 + t->tv_usec * 1000 : -1,
		       NULL);
}

EXPORT int
pselect(int nfds, fd_set *r, fd_set *w, fd_set *x, const struct timespec *t, const sigset_t *mask)
{
	if (!sets_have_vsock(nfds, r, w, x))
		return get_pselect()(nfds, r, w, x, t, mask);
	return vselect(nfds, r, w, x, t ? (int64_t)t->tv_sec * 1000000000 + t->tv_nsec : -1, mask);
}
