/* SPDX-License-Identifier: MIT */
/*
 * Descriptors over UNIX sockets (SCM_RIGHTS), for every protocol that
 * carries them (the control protocol, vhost-user) and their tests.
 */
#ifndef VMFABRIC_FDPASS_H
#define VMFABRIC_FDPASS_H

#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#define FDPASS_MAX 16
/* The kernel's limit of descriptors in one message (SCM_MAX_FD). */
#define FDPASS_SCM_MAX 253

/*
 * sendmsg() of @iov with @nfds descriptors (at most FDPASS_SCM_MAX), with
 * @flags | MSG_NOSIGNAL, retried on EINTR. Returns bytes sent or -errno.
 */
ssize_t fdpass_send(int sock, const struct iovec *iov, int iovcnt, const int *fds, int nfds,
		    int flags);

/*
 * Append the SCM_RIGHTS descriptors of a received message to fds[*nfds]
 * (at most @max in all). Anything else in the control data, a truncated
 * one, or more descriptors than @max is -EPROTO, and every descriptor
 * that did not fit is closed; the ones kept stay the caller's to close.
 */
int fdpass_collect(struct msghdr *mh, int *fds, int *nfds, int max);

/*
 * recvmsg() into @iov with MSG_CMSG_CLOEXEC | @flags, retried on EINTR,
 * room for FDPASS_SCM_MAX descriptors, collected into @fds as
 * fdpass_collect() does (*@nfds set). Returns the bytes received, or
 * -errno, or -EPROTO for bad control data (the descriptors then closed);
 * *@mflags gets the message's flags (MSG_TRUNC).
 */
ssize_t fdpass_recv(int sock, struct iovec *iov, int iovcnt, int *fds, int *nfds, int max,
		    int flags, int *mflags);

#endif
