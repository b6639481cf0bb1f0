/* SPDX-License-Identifier: MIT */
/*
 * libvmfabric VMCI sockets: AF_VSOCK-style stream, datagram and seqpacket
 * sockets between contexts (processes now, VMs through vmfabricd), brokered
 * by the daemon. Addresses are struct sockaddr_vm from <linux/vm_sockets.h>
 * (svm_cid, svm_port; VMADDR_CID_ANY, VMADDR_PORT_ANY, VMADDR_CID_LOCAL,
 * VMADDR_CID_HOST).
 *
 * Every call returns 0 / a count on success and a negative errno on error
 * (never -1 with errno set). A socket is a file descriptor that can be
 * polled: it becomes readable whenever the socket may have changed state.
 * To wait for writability too, call vmci_poll_arm() first (see there).
 *
 * Data paths: a stream or seqpacket connection is a queue pair shared by the
 * two processes (the daemon only brokers setup); datagrams go through the
 * daemon's router over shared-memory rings, stamped with the sender's true
 * CID and port.
 *
 * Which context a process acts as: the environment variable
 * VMFABRIC_CONTEXT (a context name or CID) or vmci_set_context(); by
 * default the host context (CID 2). The daemon's socket: VMFABRIC_SOCKET or
 * vmci_set_daemon(); by default /run/vmfabric/vmfabricd.sock.
 *
 * Errors beyond the usual socket ones: -EACCES (VMCI policy: the context has
 * VMCI off, the destination may not be reached, the process may not act as
 * the context, or a port below 1024 without privilege), -ENETDOWN (the
 * daemon cannot be reached), -EHOSTUNREACH (no such CID).
 */
#ifndef VMFABRIC_VMCI_H
#define VMFABRIC_VMCI_H

#include <linux/vm_sockets.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

/* Level for vmci_getsockopt/vmci_setsockopt, as AF_VSOCK's. */
#define VMCI_SOL AF_VSOCK

/* Default and limits of SO_VM_SOCKETS_BUFFER_SIZE (bytes per direction). */
#define VMCI_BUFFER_DEFAULT (128u << 10)
#define VMCI_BUFFER_MIN_DEFAULT 128u
#define VMCI_BUFFER_MAX_DEFAULT (256u << 10)
/* Largest datagram payload. */
#define VMCI_DGRAM_MAX 65536u

/* type: SOCK_STREAM, SOCK_DGRAM or SOCK_SEQPACKET, optionally | SOCK_NONBLOCK. */
int vmci_socket(int type);
int vmci_bind(int s, const struct sockaddr_vm *addr);
int vmci_listen(int s, int backlog);
/* flags: SOCK_NONBLOCK for the new socket. @peer may be NULL. */
int vmci_accept(int s, struct sockaddr_vm *peer, int flags);
/*
 * From an unbound socket to a process's listener the connection is made
 * directly and connect() returns 0 at once, blocking or not (the first
 * connection to a listener asks the daemon for a channel: one round trip).
 * Otherwise (a bound socket, a VM), non-blocking sockets get -EINPROGRESS;
 * then vmci_poll_arm(s, POLLOUT) (polling the descriptor between calls)
 * until it reports POLLOUT or POLLERR, and SO_ERROR says how it went.
 */
int vmci_connect(int s, const struct sockaddr_vm *addr);
/* flags: MSG_DONTWAIT. Streams send everything unless non-blocking. */
ssize_t vmci_send(int s, const void *buf, size_t len, int flags);
/*
 * flags: MSG_DONTWAIT, MSG_TRUNC (return a message's full length),
 * MSG_WAITALL (streams: wait for @len bytes unless the stream ends or
 * fails first). 0 = EOF.
 */
ssize_t vmci_recv(int s, void *buf, size_t len, int flags);
ssize_t vmci_sendto(int s, const void *buf, size_t len, int flags,
		    const struct sockaddr_vm *to);
ssize_t vmci_recvfrom(int s, void *buf, size_t len, int flags, struct sockaddr_vm *from);
int vmci_shutdown(int s, int how);
int vmci_close(int s);
/*
 * Options: level AF_VSOCK: SO_VM_SOCKETS_BUFFER_SIZE, _MIN_SIZE, _MAX_SIZE
 * (uint64_t; a connection's queues are that size rounded up to a power of
 * two, 4 KiB to 64 MiB), SO_VM_SOCKETS_CONNECT_TIMEOUT (struct timeval;
 * default 2 s), SO_VM_SOCKETS_PEER_HOST_VM_ID (the peer's CID);
 * level SOL_SOCKET: SO_TYPE, SO_ERROR, SO_RCVTIMEO, SO_SNDTIMEO, SO_BUSY_POLL
 * (int, microseconds a blocking call spins on the queue before it sleeps;
 * default 5, at most 4000000).
 */
int vmci_getsockopt(int s, int level, int name, void *val, socklen_t *len);
int vmci_setsockopt(int s, int level, int name, const void *val, socklen_t len);
int vmci_getsockname(int s, struct sockaddr_vm *addr);
int vmci_getpeername(int s, struct sockaddr_vm *addr);
/* The CID of the context this process acts as. */
int vmci_get_local_cid(uint32_t *cid);

/*
 * Event-loop use: returns the events among @events (POLLIN, POLLOUT) that
 * are ready now, plus POLLHUP/POLLERR; 0 means "not yet": wait for the
 * socket's descriptor to become readable (POLLIN), then call again.
 */
short vmci_poll_arm(int s, short events);

/* For sockets created afterwards: act as this context ("name" or "CID"). */
int vmci_set_context(const char *name_or_cid);
/* For sockets created afterwards: the daemon's control socket. */
int vmci_set_daemon(const char *path);

#endif
