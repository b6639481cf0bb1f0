/* SPDX-License-Identifier: MIT */
/*
 * A listening UNIX socket at a path (the daemon's control socket, each VM's
 * vhost-user and hybrid vsock sockets): a stale file there is replaced.
 */
#ifndef VMFABRIC_UNIXSOCK_H
#define VMFABRIC_UNIXSOCK_H

#include <sys/types.h>

/*
 * Listen on @path with socket @type (SOCK_STREAM, SOCK_SEQPACKET),
 * non-blocking and close-on-exec, file mode @mode. Returns the descriptor
 * or -errno (-ENAMETOOLONG for a path longer than a sockaddr_un holds).
 */
int unix_listen(const char *path, int type, mode_t mode, int backlog);
/*
 * Accept one connection on @lfd (non-blocking, close-on-exec) from process
 * @pid or from root (@pid <= 0: anyone who could open the socket). Returns
 * the descriptor, -EAGAIN when none waits, -EPERM (refused and closed; the
 * peer's pid in *@peer) or -errno.
 */
int unix_accept_from(int lfd, pid_t pid, pid_t *peer);

#endif
