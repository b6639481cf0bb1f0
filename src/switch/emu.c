/* SPDX-License-Identifier: MIT */
/* Emulated NIC ports over QEMU's stream netdev (see emu.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "emu.h"

/* Read the socket every loop while it brings data; once in this many loops when it does not. */
#define EMU_IDLE_EVERY 16

int
emu_parse(uint8_t *buf, uint32_t *len, void (*fn)(void *ctx, uint8_t *f, uint32_t n),
	  void *ctx)
{
	uint32_t pos = 0;
	int n = 0;

	while (*len - pos >= 4) {
		uint32_t flen = (uint32_t)buf[pos] << 24 | (uint32_t)buf[pos + 1] << 16 |
				(uint32_t)buf[pos + 2] << 8 | buf[pos + 3];

		if (flen == 0 || flen > VSW_FRAME_MAX)
			return -EPROTO;
		if (*len - pos - 4 < flen)
			break;
		fn(ctx, buf + pos + 4, flen);
		pos += 4 + flen;
		n++;
	}
	memmove(buf, buf + pos, *len - pos);
	*len -= pos;
	return n;
}

struct input {
	struct emu_port *e;
	struct vsw *sw;
	int64_t now;
};

static void
input(void *ctx, uint8_t *f, uint32_t n)
{
	struct input *in = ctx;
	struct iovec v = { f, n };

	vsw_input(in->sw, &in->e->dp.p, &v, 1, n, in->now);
}

static void
gone(struct emu_port *e, const char *why)
{
	log_info("vswitch: %s: %s", e->dp.p.name, why);
	e->dp.dead = true;
	e->dp.p.up = false;
}

static int
emu_drain(struct dp_port *p, struct vsw *sw, int max, int64_t now)
{
	struct emu_port *e = (struct emu_port *)p;
	struct input in = { e, sw, now };
	ssize_t r;
	int n;

	(void)max; /* a read takes what QEMU has written: its frames go on together */
	if (e->idle++ % EMU_IDLE_EVERY)
		return 0;
	r = read(e->fd, e->rbuf + e->rlen, sizeof(e->rbuf) - e->rlen);
	if (r <= 0) {
		if (r == 0 || (errno != EAGAIN && errno != EINTR))
			gone(e, r == 0 ? "QEMU closed its netdev" : strerror(errno));
		return 0;
	}
	e->idle = 0;
	e->rlen += (uint32_t)r;
	n = emu_parse(e->rbuf, &e->rlen, input, &in);
	if (n < 0) {
		e->bad_len++;
		gone(e, "a frame length out of range on the netdev stream");
		return 0;
	}
	return n ? n : 1;
}

static void
emu_flush(struct dp_port *p)
{
	struct emu_port *e = (struct emu_port *)p;
	ssize_t r;

	if (e->woff == e->wlen || p->dead)
		return;
	r = write(e->fd, e->wbuf + e->woff, e->wlen - e->woff);
	if (r < 0) {
		if (errno != EAGAIN && errno != EINTR)
			gone(e, strerror(errno));
		return;
	}
	e->woff += (uint32_t)r;
	if (e->woff < e->wlen) {
		e->short_writes++;
		return;
	}
	e->woff = e->wlen = 0;
}

/* The switch delivers a frame: appended to what goes to QEMU at the end of the batch. */
static int
emu_enqueue(struct vsw_port *p, const struct iovec *iov, int iovcnt, size_t len)
{
	struct emu_port *e = (struct emu_port *)p;
	uint8_t *w;

	if (e->wlen + 4 + len > sizeof(e->wbuf)) {
		emu_flush(&e->dp);
		if (e->woff) { /* what QEMU took of it: make room at the end */
			memmove(e->wbuf, e->wbuf + e->woff, e->wlen - e->woff);
			e->wlen -= e->woff;
			e->woff = 0;
		}
		if (e->wlen + 4 + len > sizeof(e->wbuf))
			return -ENOBUFS;
	}
	w = e->wbuf + e->wlen;
	w[0] = (uint8_t)(len >> 24);
	w[1] = (uint8_t)(len >> 16);
	w[2] = (uint8_t)(len >> 8);
	w[3] = (uint8_t)len;
	w += 4;
	for (int i = 0; i < iovcnt; i++) {
		memcpy(w, iov[i].iov_base, iov[i].iov_len);
		w += iov[i].iov_len;
	}
	e->wlen += 4 + (uint32_t)len;
	return 0;
}

/* The socket is in the thread's epoll set (no arming needed): it woke the thread. */
static void
emu_woken(struct dp_port *p, bool fired)
{
	if (fired)
		((struct emu_port *)p)->idle = 0; /* read at once */
}

static void
emu_json(const struct dp_port *p, json_t *o)
{
	const struct emu_port *e = (const struct emu_port *)p;

	json_object_set_new(o, "bad_lengths", json_integer((json_int_t)e->bad_len));
	json_object_set_new(o, "short_writes", json_integer((json_int_t)e->short_writes));
}

static void
emu_destroy(struct dp_port *p)
{
	close(((struct emu_port *)p)->fd);
	free(p);
}

static const struct vsw_port_ops emu_ops = { .enqueue = emu_enqueue };
static const struct dp_port_ops emu_dops = { .kind = "emulated",
					     .drain = emu_drain,
					     .flush = emu_flush,
					     .woken = emu_woken,
					     .json = emu_json,
					     .destroy = emu_destroy };

int
emu_new(struct vsw_dp *d, const char *pg, const char *name, const uint8_t *mac, int fd,
	struct emu_port **out)
{
	struct emu_port *e;
	int err;

	if (strlen(name) >= VSW_NAME)
		return -ENAMETOOLONG;
	if (fcntl(fd, F_SETFL, O_NONBLOCK) < 0)
		return -errno;
	if (!(e = calloc(1, sizeof(*e))))
		return -ENOMEM;
	e->fd = fd;
	snprintf(e->dp.p.name, sizeof(e->dp.p.name), "%s", name);
	if (mac)
		memcpy(e->dp.mac, mac, ETH_MAC_LEN);
	e->dp.p.kind = VSW_PORT_EMULATED;
	e->dp.p.ops = &emu_ops;
	e->dp.p.up = true;
	e->dp.dops = &emu_dops;
	e->dp.wake_fd = fd;
	if ((err = vsw_dp_add_port(d, &e->dp, pg))) {
		free(e);
		return err;
	}
	*out = e;
	return 0;
}
