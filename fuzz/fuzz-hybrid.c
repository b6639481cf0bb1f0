/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: hybrid vsock (src/vsock/hybrid.c), the UNIX socket on which
 * host programs write "CONNECT <port>\n" to reach a guest's port, and the
 * bridges between such a program's stream and the guest's connection. The
 * device is real, its guest the fake guest of tests/fakeguest.h; the host
 * programs are real UNIX sockets whose bytes come from the input (lines of
 * any shape, well-formed ones, data, half-closes, hang-ups); the guest
 * accepts or refuses what it is offered, sends data, shuts down, resets
 * and connects out to "<path>_<port>" where a host program listens (or
 * not).
 *
 * Checked: a program gets "OK <port>\n" only for a well-formed line (the
 * model below, written independently of the parser) and only with a host
 * port of the hybrid range; every REQUEST the guest sees from the host is
 * for a port some program asked for; every packet is addressed to the
 * guest; the loop goes idle; and when the device is freed with programs
 * still connected, every descriptor is closed and the socket's file is
 * gone (memory: LeakSanitizer).
 *
 * Input: { u8 options } then steps { u8 op, operands } (see step()).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "../tests/fakeguest.h"
#include "common/clock.h"
#include "common/log.h"
#include "fuzz.h"
#include "vsock/internal.h"

#define FZ_STEPS    200
#define FZ_CID	    3u
#define FZ_PORT	    1000u
#define FZ_OUT_PORT 5000u      /* a host program listens on "<path>_5000" */
#define FZ_HYB_BASE 0xc0000000u /* host ports of hybrid connections */
#define FZ_CLIENTS  4
#define FZ_CONNS    8
#define FZ_LINE	    32 /* the bridge reads a line of at most this much, '\n' included */

struct client {
	int fd;
	char sent[FZ_LINE]; /* the first bytes written: the line, for the model */
	size_t nsent;
	char got[24]; /* the first bytes read back: "OK <port>\n" */
	size_t ngot;
};

/* A connection the guest knows of, by its ports. */
struct gconn {
	bool used;
	uint32_t local, remote; /* the guest's port, the host's */
};

struct fzh {
	struct fz in;
	struct loop loop;
	struct fg_fabric fab;
	struct fg g;
	char path[96], out_path[108];
	int out_listen;	 /* the host program on "<path>_5000" */
	int out_conn[4]; /* what it accepted */
	struct client c[FZ_CLIENTS];
	struct gconn gc[FZ_CONNS];
	uint32_t asked[FZ_CLIENTS * 4]; /* ports in well-formed lines */
	unsigned nasked;
	uint32_t rx_bytes;
	struct fg_pkt p;
	uint8_t buf[4096];
};

static unsigned
take1(struct fzh *w)
{
	return (unsigned)fz_take(&w->in, 1);
}

/* The model: "CONNECT " and decimal digits (at most UINT32_MAX), a '\r' allowed before '\n'. */
static bool
well_formed(const char *s, size_t n, uint32_t *port)
{
	const char *nl = memchr(s, '\n', n);
	unsigned long long v = 0;
	size_t len;

	if (!nl)
		return false;
	len = (size_t)(nl - s);
	if (len && s[len - 1] == '\r')
		len--;
	if (len < 9 || strncmp(s, "CONNECT ", 8))
		return false;
	for (size_t i = 8; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (unsigned)(s[i] - '0');
		if (v > 0xffffffffull)
			return false;
	}
	*port = (uint32_t)v;
	return true;
}

static void
client_write(struct fzh *w, struct client *c, const char *s, size_t n)
{
	ssize_t r = write(c->fd, s, n);
	uint32_t port;
	bool was;

	if (r <= 0)
		return;
	was = well_formed(c->sent, c->nsent, &port);
	for (ssize_t i = 0; i < r && c->nsent < sizeof(c->sent); i++)
		c->sent[c->nsent++] = s[i];
	if (!was && well_formed(c->sent, c->nsent, &port) &&
	    w->nasked < sizeof(w->asked) / sizeof(w->asked[0]))
		w->asked[w->nasked++] = port;
}

/* What a program reads: "OK <hybrid port>\n" first, and only for a well-formed line. */
static void
client_read(struct fzh *w, struct client *c)
{
	ssize_t n;
	uint32_t port;

	while ((n = read(c->fd, w->buf, sizeof(w->buf))) > 0) {
		for (ssize_t i = 0; i < n && c->ngot < sizeof(c->got) - 1; i++)
			c->got[c->ngot++] = (char)w->buf[i];
		c->got[c->ngot] = 0;
		FZ_CHECK(well_formed(c->sent, c->nsent, &port));
		FZ_CHECK(!strncmp(c->got, "OK ", c->ngot < 3 ? c->ngot : 3));
		if (strchr(c->got, '\n'))
			FZ_CHECK(strtoul(c->got + 3, NULL, 10) >= FZ_HYB_BASE);
	}
}

static void
client_close(struct client *c)
{
	if (c->fd >= 0)
		close(c->fd);
	memset(c, 0, sizeof(*c));
	c->fd = -1;
}

static void
step_client(struct fzh *w)
{
	unsigned a = take1(w), i = a % FZ_CLIENTS;
	struct client *c = &w->c[i];
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char line[48];
	size_t n;

	if (c->fd < 0) { /* a program connects */
		c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", w->path);
		if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
		    fcntl(c->fd, F_SETFL, O_NONBLOCK) < 0)
			client_close(c);
		return;
	}
	switch ((a >> 2) % 6) {
	case 0: /* bytes of any kind: a broken line, or data after the line */
		n = take1(w) % 40;
		for (size_t k = 0; k < n; k++)
			w->buf[k] = (uint8_t)take1(w);
		client_write(w, c, (const char *)w->buf, n);
		break;
	case 1: /* a well-formed line to one of the guest's ports */
		n = (size_t)snprintf(line, sizeof(line), "CONNECT %u%s\n", FZ_PORT + (a >> 5) % 4,
				     a & 0x80 ? "\r" : "");
		client_write(w, c, line, n);
		break;
	case 2:
		client_read(w, c);
		break;
	case 3:
		shutdown(c->fd, SHUT_WR);
		break;
	default:
		client_read(w, c);
		client_close(c);
	}
}

static struct gconn *
gconn_find(struct fzh *w, uint32_t local, uint32_t remote)
{
	for (unsigned i = 0; i < FZ_CONNS; i++)
		if (w->gc[i].used && w->gc[i].local == local && w->gc[i].remote == remote)
			return &w->gc[i];
	return NULL;
}

static void
gconn_add(struct fzh *w, uint32_t local, uint32_t remote)
{
	for (unsigned i = 0; i < FZ_CONNS; i++)
		if (!w->gc[i].used) {
			w->gc[i] = (struct gconn){ true, local, remote };
			return;
		}
}

/* A packet from the guest on connection @c. */
static void
guest_send(struct fzh *w, const struct gconn *c, uint16_t op, uint32_t flags, uint32_t len)
{
	struct vsock_hdr h = fg_hdr(&w->g, op, c->local, VSOCK_CID_HOST, c->remote,
				    VSOCK_TYPE_STREAM);

	h.buf_alloc = 65536;
	h.fwd_cnt = w->rx_bytes;
	h.flags = flags;
	h.len = len;
	memset(w->buf, 'g', len);
	(void)fg_tx_raw(&w->g, &h, sizeof(h), w->buf, len, FG_TWO);
}

/* What the device sent the guest; REQUESTs from the host are answered later (step_guest). */
static void
drain_rx(struct fzh *w, bool accept_all)
{
	while (fg_rx_get(&w->g, &w->p)) {
		const struct vsock_hdr *h = &w->p.h;
		struct gconn *c;
		bool asked = false;

		if (!w->p.used_len)
			continue;
		FZ_CHECK(h->dst_cid == FZ_CID && h->src_cid == VSOCK_CID_HOST);
		w->rx_bytes += h->len;
		c = gconn_find(w, h->dst_port, h->src_port);
		if (h->op == VSOCK_OP_REQUEST) {
			/* From a program's line: a port it asked for, from a hybrid host port. */
			for (unsigned i = 0; i < w->nasked; i++)
				asked |= w->asked[i] == h->dst_port;
			FZ_CHECK(asked && h->src_port >= FZ_HYB_BASE);
			if (!c)
				gconn_add(w, h->dst_port, h->src_port);
			c = gconn_find(w, h->dst_port, h->src_port);
			if (c && accept_all)
				guest_send(w, c, VSOCK_OP_RESPONSE, 0, 0);
		} else if (h->op == VSOCK_OP_RST && c) {
			c->used = false;
		}
	}
}

/* The guest: answers, data, shutdowns, resets, connections out. */
static void
step_guest(struct fzh *w)
{
	unsigned a = take1(w), b = take1(w);
	struct gconn *c = &w->gc[b % FZ_CONNS];
	struct gconn out = { true, FZ_PORT + 100 + b % 8, FZ_OUT_PORT + (b >> 7) };

	switch (a % 8) {
	case 0:
		drain_rx(w, a & 0x80);
		break;
	case 1:
		fg_rx_post(&w->g, 1 + a / 32, FG_RX_BUF_LINUX, FG_TWO);
		break;
	case 2: /* connect out: to the listening program, or to a port nobody has */
		guest_send(w, &out, VSOCK_OP_REQUEST, 0, 0);
		gconn_add(w, out.local, out.remote);
		break;
	default:
		if (!c->used)
			break;
		if (a % 8 == 3)
			guest_send(w, c, VSOCK_OP_RESPONSE, 0, 0);
		else if (a % 8 == 4)
			guest_send(w, c, VSOCK_OP_RW, 0, 1 + (a >> 3) * 100);
		else if (a % 8 == 5)
			guest_send(w, c, VSOCK_OP_SHUTDOWN, 1 + (a >> 6) % 3, 0);
		else if (a % 8 == 6)
			guest_send(w, c, VSOCK_OP_CREDIT_UPDATE, 0, 0);
		else {
			guest_send(w, c, VSOCK_OP_RST, 0, 0);
			c->used = false;
		}
	}
}

/* The host program on "<path>_5000". */
static void
step_out(struct fzh *w)
{
	unsigned a = take1(w);
	int *fd = &w->out_conn[a % 4];
	ssize_t n;

	if (*fd < 0) {
		*fd = accept4(w->out_listen, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		return;
	}
	switch ((a >> 2) % 4) {
	case 0:
		memset(w->buf, 'h', 1 + a * 8);
		n = write(*fd, w->buf, 1 + a * 8);
		(void)n;
		break;
	case 1:
		while (read(*fd, w->buf, sizeof(w->buf)) > 0)
			;
		break;
	case 2:
		shutdown(*fd, SHUT_WR);
		break;
	default:
		close(*fd);
		*fd = -1;
	}
}

static void
step(struct fzh *w)
{
	unsigned op = take1(w);

	switch (op % 8) {
	case 0:
	case 1:
	case 2:
		step_client(w);
		break;
	case 3:
	case 4:
		step_guest(w);
		break;
	case 5:
		step_out(w);
		break;
	case 6:
		fg_pump(&w->g, 0);
		break;
	default:
		if (op & 0x80) { /* seconds pass: offers the guest never answered expire */
			vsock__expire(w->g.dev, clock_ns() + (int64_t)(op >> 3) * 1000000000);
			vsock__pump(w->g.dev);
		} else {
			loop_once(&w->loop, 0);
		}
	}
}

/* One directory per process for the sockets; removed at exit. */
static const char *dir;

static void
rm_dir(void)
{
	rmdir(dir);
}

static void
setup(struct fzh *w)
{
	static char tmpl[PATH_MAX];
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct fg_opts o = { .event_idx = take1(w) & 1, .event_bufs = 1 };

	if (!dir) {
		const char *t = getenv("TMPDIR");

		signal(SIGPIPE, SIG_IGN); /* as the daemon: a program that went is an EPIPE */

		snprintf(tmpl, sizeof(tmpl), "%s/fuzz-hybrid.XXXXXX", t && *t ? t : P_tmpdir);
		dir = mkdtemp(tmpl);
		FZ_CHECK(dir != NULL && strlen(dir) < 60);
		atexit(rm_dir);
	}
	snprintf(w->path, sizeof(w->path), "%s/h.sock", dir);
	snprintf(w->out_path, sizeof(w->out_path), "%s_%u", w->path, FZ_OUT_PORT);
	FZ_CHECK(loop_init(&w->loop) == 0);
	fg_fabric_init(&w->fab, FG_REFUSE);
	w->fab.err = -ECONNREFUSED; /* CID 2 has no VMCI socket: the UNIX socket's turn */
	fg_new(&w->g, &w->loop, FZ_CID, &w->fab.fab);
	FZ_CHECK(fg_try_attach(&w->g, &o) == 0);
	fg_rx_post(&w->g, 8, FG_RX_BUF_LINUX, FG_TWO);
	FZ_CHECK(vsock_hybrid_listen(w->g.dev, w->path) == 0);
	w->out_listen = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", w->out_path);
	unlink(w->out_path);
	FZ_CHECK(w->out_listen >= 0 && bind(w->out_listen, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
		 listen(w->out_listen, 8) == 0);
	for (unsigned i = 0; i < FZ_CLIENTS; i++)
		w->c[i].fd = -1;
	for (unsigned i = 0; i < 4; i++)
		w->out_conn[i] = -1;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fzh *w = calloc(1, sizeof(*w));
	int fds_before = fz_count_fds();
	struct stat st;

	FZ_CHECK(w != NULL);
	log_set_level(getenv("FUZZ_DEBUG") ? LOG_LVL_DEBUG : LOG_LVL_ERR);
	w->in = (struct fz){ data, size };
	setup(w);
	for (int i = 0; i < FZ_STEPS && w->in.n; i++)
		step(w);
	fg_pump(&w->g, 0);
	for (unsigned i = 0; i < FZ_CLIENTS; i++)
		if (w->c[i].fd >= 0)
			client_read(w, &w->c[i]);
	drain_rx(w, false);
	/* The device goes with programs still connected: their bridges go with it. */
	fg_free(&w->g);
	FZ_CHECK(stat(w->path, &st) < 0 && errno == ENOENT);
	for (unsigned i = 0; i < FZ_CLIENTS; i++)
		client_close(&w->c[i]);
	for (unsigned i = 0; i < 4; i++)
		if (w->out_conn[i] >= 0)
			close(w->out_conn[i]);
	close(w->out_listen);
	unlink(w->out_path);
	fg_fabric_free(&w->fab);
	loop_free(&w->loop);
	free(w);
	FZ_CHECK(fz_count_fds() == fds_before); /* a descriptor leaked */
	return 0;
}
