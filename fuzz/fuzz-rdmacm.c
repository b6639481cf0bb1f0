/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: the RDMA connection manager between hosts. Two parts run on
 * every input.
 *
 * The parser (rdma/cm_wire.c) on the input as bytes from the network: a
 * message it accepts must build back to a message of the same length that
 * parses to the same fields; the same bytes fed in pieces, as the daemon
 * reads them from a TCP stream, must give the same messages as parsing
 * them in one piece.
 *
 * The daemon's service (vmci/rdma_cm_net.c) on a broker with a listener in
 * the host context and a QP of the same process: the input is a series of
 * steps on one incoming connection (a stream socket pair in place of TCP):
 * raw bytes, a well-formed REQ, the listener's ACCEPT or REJECT of the last
 * request it was given, an RTU, the peer's half close. Whatever the daemon
 * writes back must parse; once the peer hangs up, every descriptor the
 * exchange took must be closed again.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "common/shm.h"
#include "common/wire_io.h"
#include "fuzz.h"
#include "rdma/cm_wire.h"
#include "vmci/broker.h"
#include "vmci/rdma_cm_net.h"

#define LISTEN_PORT 7000

static struct vmci_broker broker;
static struct loop loop;
static int lis = -1; /* the listener's end of its control connection */
static uint32_t qpn; /* a QP of the listener's process */

/* ---------------------------------------------------------------------- */
/* The parser */

static void
parse_whole(const uint8_t *data, size_t size)
{
	struct rcm_msg m, again;
	uint8_t buf[RCM_MAX];
	const char *why = NULL;
	ssize_t used = rcm_parse(data, size, &m, &why);

	if (used < 0 && !why)
		abort(); /* every refusal says why */
	if (used <= 0)
		return;
	if ((size_t)used > size || rcm_build(&m, buf) != (size_t)used)
		abort();
	if (rcm_parse(buf, (size_t)used, &again, NULL) != used || memcmp(&m, &again, sizeof(m)))
		abort();
}

/* The messages of @data one after the other, from the whole and from pieces. */
static void
parse_stream(const uint8_t *data, size_t size)
{
	struct rcm_msg whole[64], piece;
	size_t nwhole = 0, at = 0, cut = size ? data[0] % 7 + 1 : 1;
	uint8_t in[RCM_MAX];
	size_t nin = 0, npiece = 0;
	ssize_t r = 0;

	while (nwhole < 64 && (r = rcm_parse(data + at, size - at, &whole[nwhole], NULL)) > 0) {
		at += (size_t)r;
		nwhole++;
	}
	/* As the daemon reads: at most a buffer of one message at a time, in pieces of @cut. */
	for (at = 0; at < size && npiece < nwhole;) {
		size_t k = size - at < cut ? size - at : cut;

		if (k > sizeof(in) - nin)
			k = sizeof(in) - nin;
		memcpy(in + nin, data + at, k);
		nin += k;
		at += k;
		while (npiece < nwhole && (r = rcm_parse(in, nin, &piece, NULL)) > 0) {
			if (memcmp(&piece, &whole[npiece], sizeof(piece)))
				abort();
			npiece++;
			nin -= (size_t)r;
			memmove(in, in + r, nin);
		}
		if (r < 0)
			abort(); /* the whole parse went on past here */
	}
	if (npiece != nwhole)
		abort();
}

/* ---------------------------------------------------------------------- */
/* The service */

static void
drain(int fd)
{
	struct wire_msg m;
	ssize_t n;

	while ((n = wire_recv(fd, &m, MSG_DONTWAIT)) != -EAGAIN && n != 0)
		if (n > 0)
			wire_msg_close_fds(&m);
}

/* A client connection of pid 1 acting as the host, HELLO sent. */
static int
client(void)
{
	struct wire_hello h = { .version = WIRE_VERSION,
				.cid = 0xffffffffu,
				.sock_type = SOCK_SEQPACKET };
	struct wire_hdr hh = { .type = WIRE_HELLO, .len = sizeof(h), .seq = 1 };
	int sp[2];

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sp) < 0 ||
	    !broker__adopt(&broker, sp[0], 1, 0, 0))
		abort();
	wire_send(sp[1], &hh, &h, NULL, 0);
	return sp[1];
}

static void
setup(void)
{
	struct wire_bind b = { .port = LISTEN_PORT };
	struct wire_hdr hb = { .type = WIRE_RDMA_CM_LISTEN, .len = sizeof(b), .seq = 2 };
	struct wire_rdma_open o = { .dev = "" };
	struct wire_hdr ho = { .type = WIRE_RDMA_OPEN, .len = sizeof(o), .seq = 2 };
	struct wire_rdma_qp q = { .pd = 1 };
	struct wire_hdr hq = { .type = WIRE_RDMA_QP_CREATE, .len = sizeof(q), .seq = 3 };
	struct wire_msg m;
	void *map;
	int page, verbs;

	log_set_level(getenv("FUZZ_DEBUG") ? LOG_LVL_DEBUG : LOG_LVL_ERR);
	vmci_reg_init(&broker.reg);
	loop_init(&loop);
	if (broker__init(&broker, &loop))
		abort();
	lis = client();
	wire_send(lis, &hb, &b, NULL, 0);
	/* A verbs context of the same process, and a QP to accept with. */
	verbs = client();
	page = shm_create("fz", sizeof(struct wire_rdma_page), &map);
	if (page < 0)
		abort();
	munmap(map, sizeof(struct wire_rdma_page));
	wire_send(verbs, &ho, &o, &page, 1);
	close(page);
	wire_send(verbs, &hq, &q, NULL, 0);
	for (int i = 0; i < 4; i++)
		loop_once(&loop, 0);
	drain(lis);
	while (wire_recv(verbs, &m, MSG_DONTWAIT) > 0) {
		if (m.hdr.type == WIRE_RDMA_QP_CREATE && !m.hdr.status)
			qpn = m.body.rdma_qp.out_qpn;
		wire_msg_close_fds(&m);
	}
	if (!qpn)
		abort();
	/* @verbs stays open: the QP lives as long as it. */
}

/* What the daemon wrote to the requester: whole messages only, each one well formed. */
static void
check_output(int fd, uint8_t *buf, size_t *n)
{
	struct rcm_msg m;
	ssize_t k, r;

	while ((k = recv(fd, buf + *n, 2 * RCM_MAX - *n, MSG_DONTWAIT)) > 0) {
		*n += (size_t)k;
		while ((r = rcm_parse(buf, *n, &m, NULL)) > 0) {
			*n -= (size_t)r;
			memmove(buf, buf + r, *n);
		}
		if (r < 0)
			abort();
	}
}

/* The listener's side: the id of the last request it was given (0: none yet). */
static uint64_t
listener_take(uint64_t id)
{
	struct wire_msg m;
	ssize_t n;

	while ((n = wire_recv(lis, &m, MSG_DONTWAIT)) != -EAGAIN && n != 0) {
		if (n < 0)
			continue;
		if (m.hdr.type == WIRE_RDMA_CM_REQ && !(m.hdr.flags & WIRE_F_REPLY)) {
			if (!m.body.rdma_cm.family || m.body.rdma_cm.cid != 0xffffffffu)
				abort(); /* a request from another host says so */
			id = m.body.rdma_cm.id;
		}
		wire_msg_close_fds(&m);
	}
	return id;
}

static void
listener_answer(struct fz *f, uint64_t id, unsigned type)
{
	struct wire_rdma_cm w = { .id = id, .family = 2 /* AF_INET */ };
	struct wire_hdr h = { .type = (uint16_t)type, .len = sizeof(w), .seq = 9 };

	w.qpn = fz_take(f, 1) & 1 ? qpn : (uint32_t)fz_take(f, 3);
	w.psn = (uint32_t)fz_take(f, 4);
	w.priv_len = (uint8_t)(fz_take(f, 1) % 60);
	w.rnr_retry = (uint8_t)(fz_take(f, 1) % 9);
	w.init_depth = (uint8_t)fz_take(f, 1);
	memset(w.priv, 0x5a, sizeof(w.priv));
	wire_send(lis, &h, &w, NULL, 0);
}

static void
send_req(struct fz *f, int fd)
{
	struct rcm_msg m = { .type = RCM_REQ };
	uint8_t buf[RCM_MAX];

	m.u.req.port = fz_take(f, 1) & 1 ? LISTEN_PORT : LISTEN_PORT + 1;
	m.u.req.qpn = 2 + (uint32_t)fz_take(f, 2);
	m.u.req.psn = (uint32_t)fz_take(f, 3);
	m.u.req.mtu = (uint16_t)(256u << (fz_take(f, 1) % 5));
	m.u.req.priv_len = (uint8_t)(fz_take(f, 1) % (RCM_PRIV + 1));
	m.u.req.timeout_ms = (uint32_t)fz_take(f, 2);
	(void)!send(fd, buf, rcm_build(&m, buf), MSG_NOSIGNAL | MSG_DONTWAIT);
}

static void
service(const uint8_t *data, size_t size)
{
	static const uint8_t peer[4] = { 192, 0, 2, 7 };
	struct fz f = { data, size };
	uint8_t out[2 * RCM_MAX], raw[128];
	size_t nout = 0;
	uint64_t id = 0;
	int sp[2], base;

	if (lis < 0)
		setup();
	base = fz_count_fds();
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sp) < 0)
		abort();
	if (cmnet__adopt(&broker, sp[0], peer, 256u << (fz_take(&f, 1) % 5)))
		abort();
	for (int steps = 0; f.n && steps < 32; steps++) {
		unsigned op = (unsigned)fz_take(&f, 1) % 6, len;

		switch (op) {
		case 0: /* bytes */
			len = (unsigned)fz_take(&f, 1) % sizeof(raw);
			for (unsigned i = 0; i < len; i++)
				raw[i] = (uint8_t)fz_take(&f, 1);
			(void)!send(sp[1], raw, len, MSG_NOSIGNAL | MSG_DONTWAIT);
			break;
		case 1:
			send_req(&f, sp[1]);
			break;
		case 2:
		case 3:
			id = listener_take(id);
			listener_answer(&f, id,
					op == 2 ? WIRE_RDMA_CM_ACCEPT : WIRE_RDMA_CM_REJECT);
			break;
		case 4: {
			struct rcm_msg m = { .type = RCM_RTU };

			(void)!send(sp[1], raw, rcm_build(&m, raw), MSG_NOSIGNAL | MSG_DONTWAIT);
			break;
		}
		default:
			shutdown(sp[1], SHUT_WR);
			break;
		}
		loop_once(&loop, 0);
		loop_once(&loop, 0);
		check_output(sp[1], out, &nout);
		id = listener_take(id);
	}
	close(sp[1]);
	/* The service sees the peer go and lets go of everything the exchange held. */
	for (int i = 0; fz_count_fds() != base; i++) {
		if (i == 100)
			abort();
		loop_once(&loop, 1);
		listener_take(0);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	parse_whole(data, size);
	parse_stream(data, size);
	service(data, size);
	return 0;
}
