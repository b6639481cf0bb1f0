/* SPDX-License-Identifier: MIT */
/*
 * Hybrid vsock, the convention Firecracker made common, so that existing
 * host tooling reaches guests without libvmfabric: a host program connects
 * to the VM's UNIX socket, writes "CONNECT <port>\n" and, once the guest
 * accepted, reads "OK <hostport>\n"; from then on the UNIX stream is the
 * connection. A guest connecting to CID 2 port P where no VMCI socket
 * listens reaches the UNIX socket "<path>_P" if a program listens there.
 *
 * Each such connection is a bridge: a queue pair whose other end is an
 * ordinary guest connection of the device, pumped to and from the UNIX
 * socket here (one more copy than a VMCI socket, none of its setup).
 *
 * Threat model: host programs on the UNIX socket are as trusted as its
 * file permissions (0600, the daemon's user); their bytes are data, the
 * one line they send is parsed with bounds. Guests are untrusted as
 * everywhere: what they send is written to the UNIX socket, never parsed.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/log.h"
#include "common/unixsock.h"
#include "internal.h"
#include "vmfabric/qp.h"

#define LINE_MAX_BYTES 32u
#define CHUNK (64u << 10)
/* Host ports of hybrid connections: far above the broker's ephemeral ones. */
#define HYBRID_PORT_BASE 0xc0000000u

enum br_state { BR_LINE, BR_OFFERED, BR_RUN };

struct vsock_bridge {
	struct loop_src usrc; /* the UNIX socket */
	struct loop_src qsrc; /* the queue pair's poll descriptor */
	struct vsock_dev *d;
	struct vsock_bridge *next, **pprev;
	enum br_state state;
	struct qp *qp;
	uint32_t port; /* our (host) port for the guest */
	char line[LINE_MAX_BYTES];
	size_t line_len;
	uint8_t *out; /* queue pair -> UNIX socket, not yet written */
	size_t out_len, out_off;
	bool unix_eof, qp_eof;
	bool uwatched, qwatched; /* usrc, qsrc are in the loop's epoll set */
};

static void
br_free(struct vsock_bridge *b)
{
	if (b->pprev) {
		*b->pprev = b->next;
		if (b->next)
			b->next->pprev = b->pprev;
	}
	if (b->uwatched)
		loop_del(b->d->loop, &b->usrc);
	close(b->usrc.fd);
	if (b->qwatched)
		loop_del(b->d->loop, &b->qsrc);
	qp_close(b->qp);
	free(b->out);
	free(b);
}

static void br_in(struct vsock_bridge *b);
static void br_out(struct vsock_bridge *b);

/*
 * Watch source @s (the UNIX socket or the queue pair's poll descriptor)
 * for @ev. Nothing to watch takes it out of the epoll set: EPOLLHUP and
 * EPOLLERR are reported whatever the mask, and a queue pair whose peer is
 * gone stays readable, so a bridge waiting on the other side would wake
 * the loop again and again.
 */
static void
br_watch(struct vsock_bridge *b, struct loop_src *s, bool *watched, uint32_t ev)
{
	if (!ev) {
		if (*watched)
			loop_del(b->d->loop, s);
		*watched = false;
	} else if (*watched) {
		loop_mod(b->d->loop, s, ev);
	} else {
		*watched = loop_add(b->d->loop, s, ev) == 0;
	}
}

/*
 * Watch what the bridge waits for now; frees it when both ends are done.
 * When the queue pair moved while we armed it, pump again here rather than
 * wait for an event that already happened.
 */
static void
br_update(struct vsock_bridge *b)
{
	for (int round = 0;; round++) {
		uint32_t uev = 0;
		unsigned qev = 0, ready;

		if (b->unix_eof && b->qp_eof && !b->out_len) {
			br_free(b);
			return;
		}
		if (b->out_len)
			uev |= EPOLLOUT;
		else if (!b->qp_eof)
			qev |= QP_EV_READ;
		if (!b->unix_eof) {
			if (qp_tx_pending(b->qp) < qp_tx_size(b->qp))
				uev |= EPOLLIN;
			else
				qev |= QP_EV_WRITE; /* the guest must read first */
		}
		if (!qev || !(ready = qp_arm(b->qp, qev))) {
			br_watch(b, &b->usrc, &b->uwatched, uev);
			br_watch(b, &b->qsrc, &b->qwatched, qev ? EPOLLIN : 0);
			return;
		}
		if (ready & (QP_EV_HUP | QP_EV_ERR) && !b->unix_eof) {
			/*
			 * The guest's end is gone (or shut both ways): it will never
			 * make room for the program's bytes. What it sent still goes
			 * to the program, then the bridge ends.
			 */
			b->unix_eof = true;
			continue;
		}
		if (round == 8) { /* still moving: come back after other sources */
			br_watch(b, &b->usrc, &b->uwatched, uev | EPOLLOUT | EPOLLIN);
			br_watch(b, &b->qsrc, &b->qwatched, EPOLLIN);
			return;
		}
		br_out(b);
		br_in(b);
	}
}

/* UNIX socket -> queue pair, as much as fits. */
static void
br_in(struct vsock_bridge *b)
{
	static uint8_t buf[CHUNK];

	while (!b->unix_eof) {
		size_t room = qp_tx_size(b->qp) - qp_tx_pending(b->qp);
		ssize_t n, w;

		if (!room)
			return;
		n = read(b->usrc.fd, buf, room < sizeof(buf) ? room : sizeof(buf));
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0) {
			b->unix_eof = true;
			qp_shutdown(b->qp, SHUT_WR); /* the guest reads EOF */
			return;
		}
		w = qp_write(b->qp, buf, (size_t)n, QP_DONTWAIT);
		if (w != n) { /* cannot happen with the room checked; the guest broke it */
			b->unix_eof = b->qp_eof = true;
			b->out_len = 0;
			return;
		}
	}
}

/* Queue pair -> UNIX socket. */
static void
br_out(struct vsock_bridge *b)
{
	ssize_t n;

	for (;;) {
		if (!b->out_len) {
			n = b->qp_eof ? 0 : qp_read(b->qp, b->out, CHUNK, QP_DONTWAIT);
			if (n == -EAGAIN)
				return;
			if (n <= 0) {
				b->qp_eof = true; /* EOF, reset or broken: the stream ends */
				shutdown(b->usrc.fd, SHUT_WR);
				return;
			}
			b->out_len = (size_t)n;
			b->out_off = 0;
		}
		n = write(b->usrc.fd, b->out + b->out_off, b->out_len - b->out_off);
		if (n < 0) {
			if (errno != EAGAIN) /* the host program went away */
				b->unix_eof = b->qp_eof = true, b->out_len = 0;
			return;
		}
		b->out_off += (size_t)n;
		if (b->out_off == b->out_len)
			b->out_len = 0;
	}
}

static void
br_qp_event(struct loop_src *s, uint32_t events)
{
	struct vsock_bridge *b = (struct vsock_bridge *)((char *)s - offsetof(struct vsock_bridge, qsrc));

	(void)events;
	qp_ack(b->qp);
	br_out(b);
	br_in(b);
	br_update(b);
}

static int
br_start(struct vsock_bridge *b)
{
	int fd = qp_poll_fd(b->qp);

	b->out = malloc(CHUNK);
	if (fd < 0 || !b->out)
		return fd < 0 ? fd : -ENOMEM;
	b->qsrc = (struct loop_src){ .fd = fd, .fn = br_qp_event };
	br_watch(b, &b->qsrc, &b->qwatched, EPOLLIN);
	if (!b->qwatched)
		return -errno;
	b->state = BR_RUN;
	return 0;
}

/* The guest answered the REQUEST for a host program's CONNECT. */
static void
br_offer_done(void *arg, int err)
{
	struct vsock_bridge *b = arg;
	char ok[32];

	snprintf(ok, sizeof(ok), "OK %u\n", b->port);
	if (!err && !b->unix_eof && write(b->usrc.fd, ok, strlen(ok)) == (ssize_t)strlen(ok) &&
	    !br_start(b)) {
		br_update(b);
		return;
	}
	log_debug("vm %s: hybrid connect from host port %u: %s", b->d->name, b->port,
		  err ? strerror(-err) : "the host program went away");
	br_free(b); /* the host program sees its socket close without "OK" */
}

/*
 * "CONNECT <port>" of @len bytes (without its '\n'; a '\r' before it is
 * allowed): the port in decimal digits only, no sign, space or NUL (what
 * strtoul() would skip or stop at), at most UINT32_MAX.
 */
static int
br_parse(const char *line, size_t len, uint32_t *port)
{
	uint64_t v = 0;

	if (len && line[len - 1] == '\r')
		len--;
	if (len <= 8 || memcmp(line, "CONNECT ", 8))
		return -EPROTO;
	for (size_t i = 8; i < len; i++) {
		if (line[i] < '0' || line[i] > '9')
			return -EPROTO;
		v = v * 10 + (uint64_t)(line[i] - '0');
		if (v > UINT32_MAX)
			return -EPROTO;
	}
	*port = (uint32_t)v;
	return 0;
}

/* "CONNECT <port>\n": offer the connection to the guest. */
static int
br_connect(struct vsock_bridge *b)
{
	uint32_t port;
	struct qp *peer;
	int err;

	if ((err = br_parse(b->line, b->line_len - 1, &port)))
		return err;
	if ((err = qp_create_pair(QP_SIZE_DEFAULT, QP_SIZE_DEFAULT, &b->qp, &peer)))
		return err;
	b->port = HYBRID_PORT_BASE + (b->d->hyb_next++ & 0x3fffffffu);
	b->state = BR_OFFERED;
	br_watch(b, &b->usrc, &b->uwatched, 0); /* until the guest answers; a hang-up is seen then */
	err = vsock_offer(b->d, VSOCK_CID_HOST, b->port, port, SOCK_STREAM, peer,
			  br_offer_done, b);
	if (err)
		qp_close(peer);
	return err;
}

static void
br_unix_event(struct loop_src *s, uint32_t events)
{
	struct vsock_bridge *b = (struct vsock_bridge *)s;
	ssize_t n;

	(void)events;
	if (b->state == BR_RUN) {
		br_out(b);
		br_in(b);
		br_update(b);
		return;
	}
	if (b->state != BR_LINE)
		return;
	/* Byte by byte: nothing after the newline may be taken from the stream. */
	while (b->line_len < sizeof(b->line)) {
		n = read(b->usrc.fd, b->line + b->line_len, 1);
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0)
			break;
		if (b->line[b->line_len++] == '\n') {
			int err = br_connect(b);

			if (!err)
				return;
			for (size_t i = 0; i + 1 < b->line_len; i++) /* the log gets text only */
				if (b->line[i] < ' ' || b->line[i] > '~')
					b->line[i] = '?';
			log_debug("vm %s: hybrid: refused \"%.*s\": %s", b->d->name,
				  (int)b->line_len - 1, b->line, strerror(-err));
			break;
		}
	}
	br_free(b);
}

static void
hybrid_accept(struct loop_src *s, uint32_t events)
{
	struct vsock_dev *d = (struct vsock_dev *)((char *)s - offsetof(struct vsock_dev, hyb));
	struct vsock_bridge *b;
	int fd;

	(void)events;
	while ((fd = accept4(s->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
		b = calloc(1, sizeof(*b));
		if (!b) {
			close(fd);
			return;
		}
		b->d = d;
		b->usrc = (struct loop_src){ .fd = fd, .fn = br_unix_event };
		if (loop_add(d->loop, &b->usrc, EPOLLIN) < 0) {
			close(fd);
			free(b);
			continue;
		}
		b->uwatched = true;
		b->next = d->bridges;
		if (b->next)
			b->next->pprev = &b->next;
		b->pprev = &d->bridges;
		d->bridges = b;
	}
}

int
vsock_hybrid_listen(struct vsock_dev *d, const char *path)
{
	struct sockaddr_un a;
	int fd;

	/* Room for "_<port>" after it, for guest-initiated connections. */
	if (strlen(path) + 12 > sizeof(a.sun_path))
		return -ENAMETOOLONG;
	fd = unix_listen(path, SOCK_STREAM, 0600, 64);
	if (fd < 0)
		return fd;
	snprintf(d->hyb_path, sizeof(d->hyb_path), "%s", path);
	d->hyb = (struct loop_src){ .fd = fd, .fn = hybrid_accept };
	if (loop_add(d->loop, &d->hyb, EPOLLIN) < 0) {
		close(fd);
		d->hyb.fd = -1;
		return -errno;
	}
	return 0;
}

/*
 * A guest connects to CID 2 port @port where no VMCI socket listens: the
 * UNIX socket "<path>_<port>", if one accepts. Returns the device's end of
 * a queue pair bridged to it, or -ECONNREFUSED.
 */
int
vsock__hybrid_out(struct vsock_dev *d, uint32_t port, struct qp **qp)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	struct vsock_bridge *b;
	int fd, err;

	if (d->hyb.fd < 0)
		return -ECONNREFUSED;
	if ((size_t)snprintf(a.sun_path, sizeof(a.sun_path), "%.*s_%u", (int)sizeof(a.sun_path) - 12,
			     d->hyb_path, port) >= sizeof(a.sun_path))
		return -ECONNREFUSED;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* Blocking connect: a listening UNIX socket answers at once, or refuses. */
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || !(b = calloc(1, sizeof(*b)))) {
		close(fd);
		return -ECONNREFUSED;
	}
	b->d = d;
	b->usrc = (struct loop_src){ .fd = fd, .fn = br_unix_event };
	err = qp_create_pair(QP_SIZE_DEFAULT, QP_SIZE_DEFAULT, &b->qp, qp);
	if (err) {
		close(fd);
		free(b);
		return err;
	}
	b->uwatched = fcntl(fd, F_SETFL, O_NONBLOCK) == 0 && loop_add(d->loop, &b->usrc, EPOLLIN) == 0;
	if (!b->uwatched || br_start(b)) {
		err = -errno;
		qp_close(*qp);
		br_free(b);
		return err ? err : -ENOMEM;
	}
	b->next = d->bridges;
	if (b->next)
		b->next->pprev = &b->next;
	b->pprev = &d->bridges;
	d->bridges = b;
	br_update(b);
	return 0;
}

void
vsock__hybrid_free(struct vsock_dev *d)
{
	while (d->bridges)
		br_free(d->bridges);
	if (d->hyb.fd >= 0) {
		loop_del(d->loop, &d->hyb);
		close(d->hyb.fd);
		unlink(d->hyb_path);
		d->hyb.fd = -1;
	}
}
