/* SPDX-License-Identifier: MIT */
/* A listening UNIX socket at a path; see unixsock.h. */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "unixsock.h"

int
unix_listen(const char *path, int type, mode_t mode, int backlog)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int fd, err;

	if (strlen(path) >= sizeof(a.sun_path))
		return -ENAMETOOLONG;
	strcpy(a.sun_path, path);
	unlink(path);
	fd = socket(AF_UNIX, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || chmod(path, mode) < 0 ||
	    listen(fd, backlog) < 0) {
		err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

int
unix_accept_from(int lfd, pid_t pid, pid_t *peer)
{
	struct ucred cr = { 0 };
	socklen_t len = sizeof(cr);
	int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

	if (fd < 0)
		return -errno;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0 ||
	    (pid > 0 && cr.pid != pid && cr.uid != 0)) {
		close(fd);
		fd = -EPERM;
	}
	*peer = cr.pid;
	return fd;
}
