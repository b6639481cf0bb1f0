/* SPDX-License-Identifier: MIT */
/*
 * The client side of the control protocol: one SOCK_SEQPACKET connection
 * to vmfabricd per socket, opened when first needed. The HELLO that says
 * which context this process acts as is sent together with the first
 * request, so that opening costs no extra round trip. Replies are awaited
 * with a short spin first (the daemon usually answers within microseconds,
 * a sleep and wakeup costs tens of them), then with poll() and a deadline.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "lib.h"

#define CTL_TIMEOUT_NS (5 * 1000000000LL)
#define CTL_SPIN_NS 20000

/*
 * The daemon closed connection @fd before it answered the HELLO: it may
 * have said why first (a connection it could not take, out of memory).
 * That error, or 0.
 */
static int
ctl_refusal(int fd)
{
	struct wire_msg m;
	ssize_t n = wire_recv(fd, &m, MSG_DONTWAIT);
	int err = 0;

	if (n == -ECONNRESET) /* reported before what the daemon sent */
		n = wire_recv(fd, &m, MSG_DONTWAIT);
	if (n <= 0)
		return 0;
	if (m.hdr.type == WIRE_HELLO && (m.hdr.flags & WIRE_F_REPLY) && m.hdr.status < 0)
		err = m.hdr.status;
	wire_msg_close_fds(&m);
	return err;
}

int
ctl_open(struct vsk *v)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	struct wire_hello h = { .version = WIRE_VERSION, .sock_type = (uint32_t)v->type };
	struct wire_hdr hdr = { .type = WIRE_HELLO, .len = sizeof(h) };
	const char *path = lib_daemon_path();
	int fd;

	if (v->ctrl >= 0)
		return 0;
	if (strlen(path) >= sizeof(a.sun_path))
		return -ENAMETOOLONG;
	strcpy(a.sun_path, path);
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		int err = errno;
		close(fd);
		return err == ENOENT || err == ECONNREFUSED ? -ENETDOWN : -err;
	}
	h.cid = v->want_cid;
	memcpy(h.name, v->want_name, sizeof(h.name));
	hdr.seq = ++v->seq;
	if (wire_send(fd, &hdr, &h, NULL, 0) < 0) {
		int err = ctl_refusal(fd);

		close(fd);
		return err ? err : -ENETDOWN;
	}
	v->ctrl = fd;
	v->hello_pending = true;
	return 0;
}

void
ctl_drop(struct vsk *v)
{
	if (v->ctrl >= 0)
		close(v->ctrl); /* also leaves the socket's epoll set */
	v->ctrl = -1;
	v->hello_pending = false;
}

/* One message from the daemon: spin briefly, then poll until @deadline. */
static int
ctl_wait_msg(struct vsk *v, struct wire_msg *m, int64_t deadline, bool nowait)
{
	int64_t spin_until = clock_ns() + CTL_SPIN_NS, now;
	struct pollfd p = { .fd = v->ctrl, .events = POLLIN };
	ssize_t n;

	for (;;) {
		n = wire_recv(v->ctrl, m, MSG_DONTWAIT);
		/*
		 * A daemon that closed with our request unread resets the
		 * connection; the kernel reports that before what it had
		 * sent (a refusal: out of memory), which the next read gets.
		 */
		if (n == -ECONNRESET && (n = wire_recv(v->ctrl, m, MSG_DONTWAIT)) <= 0)
			n = -ECONNRESET;
		if (n > 0)
			return 0;
		if (n == 0 || n == -ECONNRESET)
			return -ENETDOWN; /* the daemon went away */
		if (n != -EAGAIN)
			return (int)n;
		if (nowait)
			return -EAGAIN;
		now = clock_ns();
		if (now < spin_until)
			continue;
		if (now >= deadline)
			return -ETIMEDOUT;
		if (poll(&p, 1, (int)((deadline - now + 999999) / 1000000)) < 0 && errno != EINTR)
			return -errno;
	}
}

/* Take the HELLO reply: the context this connection acts as, or why not. */
static int
ctl_hello_reply(struct vsk *v, const struct wire_msg *m)
{
	v->hello_pending = false;
	if (m->hdr.status)
		return m->hdr.status;
	v->cid = m->body.hello.out_cid;
	v->privileged = !!(m->body.hello.out_flags & WIRE_CTX_PRIVILEGED);
	return 0;
}

/* Read messages until the reply to @seq. */
static int
ctl_reply(struct vsk *v, uint32_t seq, void *body, struct wire_msg *rep, int64_t deadline,
	  bool nowait)
{
	struct wire_msg m;
	int err;

	for (;;) {
		err = ctl_wait_msg(v, &m, deadline, nowait);
		if (err) {
			if (err != -EAGAIN && err != -ETIMEDOUT)
				ctl_drop(v);
			return err;
		}
		if (!(m.hdr.flags & WIRE_F_REPLY) || (m.hdr.seq != seq && m.hdr.type != WIRE_HELLO)) {
			wire_msg_close_fds(&m); /* stale or stray: not ours to act on */
			continue;
		}
		if (m.hdr.type == WIRE_HELLO && v->hello_pending) {
			err = ctl_hello_reply(v, &m);
			if (err) {
				ctl_drop(v);
				return err;
			}
			if (m.hdr.seq != seq)
				continue;
		}
		if (body)
			memcpy(body, &m.body, wire_body_size(m.hdr.type));
		if (rep)
			*rep = m;
		else
			wire_msg_close_fds(&m);
		return m.hdr.status;
	}
}

int
ctl_send(struct vsk *v, unsigned type, const void *body, const int *fds, int nfds)
{
	struct wire_hdr h = { .type = (uint16_t)type, .len = (uint32_t)wire_body_size(type) };
	ssize_t n;
	int err;

	if ((err = ctl_open(v)))
		return err;
	h.seq = ++v->seq;
	n = wire_send(v->ctrl, &h, body, fds, nfds);
	if (n == -EAGAIN)
		return -ENOBUFS;
	if (n < 0) {
		err = v->hello_pending ? ctl_refusal(v->ctrl) : 0;
		ctl_drop(v);
		return err ? err : -ENETDOWN;
	}
	return 0;
}

int
ctl_rpc(struct vsk *v, unsigned type, void *body, const int *fds, int nfds,
	struct wire_msg *rep, int64_t timeout_ns)
{
	int err = ctl_send(v, type, body, fds, nfds);

	if (rep)
		rep->nfds = 0;
	if (err)
		return err;
	return ctl_reply(v, v->seq, body, rep,
			 clock_ns() + (timeout_ns < 0 ? CTL_TIMEOUT_NS : timeout_ns), false);
}

int
ctl_poll_reply(struct vsk *v, void *body, struct wire_msg *rep)
{
	if (rep)
		rep->nfds = 0;
	if (v->ctrl < 0)
		return -ENETDOWN;
	return ctl_reply(v, v->seq, body, rep, 0, true);
}

/* ---------------------------------------------------------------------- */
/* Identity and daemon path: environment first, then the setters. */

static pthread_mutex_t id_lock = PTHREAD_MUTEX_INITIALIZER;
static char id_ctx[WIRE_NAME];
static char id_path[108];
static bool id_init;

static void
id_load(void)
{
	const char *e;

	if (id_init)
		return;
	id_init = true;
	if ((e = getenv("VMFABRIC_CONTEXT")))
		snprintf(id_ctx, sizeof(id_ctx), "%s", e);
	e = getenv("VMFABRIC_SOCKET");
	snprintf(id_path, sizeof(id_path), "%s", e && *e ? e : "/run/vmfabric/vmfabricd.sock");
}

void
lib_identity(uint32_t *cid, char name[WIRE_NAME])
{
	char *end;
	unsigned long n;

	pthread_mutex_lock(&id_lock);
	id_load();
	*cid = VMADDR_CID_ANY;
	memset(name, 0, WIRE_NAME);
	n = strtoul(id_ctx, &end, 10);
	if (id_ctx[0] && !*end && n <= 0xfffffffeul)
		*cid = (uint32_t)n;
	else
		snprintf(name, WIRE_NAME, "%s", id_ctx);
	pthread_mutex_unlock(&id_lock);
}

const char *
lib_daemon_path(void)
{
	const char *p;

	pthread_mutex_lock(&id_lock);
	id_load();
	p = id_path;
	pthread_mutex_unlock(&id_lock);
	return p;
}

int
vmci_set_context(const char *name_or_cid)
{
	if (!name_or_cid || strlen(name_or_cid) >= WIRE_NAME)
		return -EINVAL;
	pthread_mutex_lock(&id_lock);
	id_load();
	snprintf(id_ctx, sizeof(id_ctx), "%s", name_or_cid);
	pthread_mutex_unlock(&id_lock);
	return 0;
}

int
vmci_set_daemon(const char *path)
{
	if (!path || strlen(path) >= sizeof(id_path))
		return -EINVAL;
	pthread_mutex_lock(&id_lock);
	id_load();
	snprintf(id_path, sizeof(id_path), "%s", path);
	pthread_mutex_unlock(&id_lock);
	return 0;
}
