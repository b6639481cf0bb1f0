/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: the daemon's control protocol. A broker runs without its
 * listening socket; a listener connection is set up with well-formed
 * messages, then the input is cut into messages (a descriptor count, a
 * length, the bytes) that a client sends over a real SOCK_SEQPACKET socket
 * pair, with real descriptors of the kinds the protocol passes (eventfds,
 * sealed memfds of a queue pair or of a dialer's table, sockets, a plain
 * file). After each message
 * the broker's event loop runs once; replies and whatever reached the
 * listener are drained. ASan/UBSan and the broker's own checks must hold
 * whatever the bytes say.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "common/shm.h"
#include "common/wire_io.h"
#include "fuzz.h"
#include "vmci/broker.h"
#include "vmfabric/qp.h"

static struct vmci_broker broker;
static struct loop loop;

static void
setup(void)
{
	static const struct {
		uint32_t cid;
		const char *name;
		bool restricted;
	} ctx[] = { { 3, "a", false }, { 4, "b", false }, { 5, "r", true } };

	log_set_level(getenv("FUZZ_DEBUG") ? LOG_LVL_DEBUG : LOG_LVL_ERR);
	vmci_reg_init(&broker.reg);
	for (size_t i = 0; i < sizeof(ctx) / sizeof(ctx[0]); i++) {
		struct vmci_ctx x = { .cid = ctx[i].cid, .kind = VMCI_KIND_PROCESS,
				      .present = true, .restricted = ctx[i].restricted };
		strcpy(x.name, ctx[i].name);
		vmci_reg_add(&broker.reg, &x, NULL, NULL, 0);
	}
	loop_init(&loop);
	if (broker__init(&broker, &loop))
		abort();
}

/* Drain and close everything waiting on a client's end. */
static void
drain(int fd)
{
	struct wire_msg m;
	ssize_t n;

	while ((n = wire_recv(fd, &m, MSG_DONTWAIT)) != -EAGAIN && n != 0)
		if (n > 0)
			wire_msg_close_fds(&m);
}

/* Descriptors of the kinds the protocol carries, chosen by the input. */
static int
make_fds(struct fz *f, int n, int *fds)
{
	struct qp_fds peer;
	struct qp *q;
	int k = 0;

	if (n >= 4 && fz_take(f, 1) & 1 &&
	    qp_create(QP_SIZE_MIN, QP_SIZE_MIN, &q, &peer) == 0) {
		qp_close(q); /* its side 1 stays valid: a well-formed queue pair */
		fds[k++] = peer.mem, fds[k++] = peer.wake, fds[k++] = peer.peer_wake;
		fds[k++] = peer.alive;
	}
	for (; k < n; k++) {
		int sp[2];
		void *t;
		switch (fz_take(f, 1) % 5) {
		case 4: /* a dialer's connection table */
			fds[k] = shm_create("fz", WIRE_DIAL_SLOTS * sizeof(struct wire_dial_slot), &t);
			if (fds[k] >= 0)
				munmap(t, WIRE_DIAL_SLOTS * sizeof(struct wire_dial_slot));
			break;
		case 0:
			fds[k] = eventfd(0, EFD_CLOEXEC);
			break;
		case 1:
			fds[k] = open("/dev/null", O_RDONLY | O_CLOEXEC);
			break;
		case 2:
			if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) == 0)
				close(sp[1]), fds[k] = sp[0];
			else
				fds[k] = -1;
			break;
		default:
			fds[k] = memfd_create("fz", MFD_CLOEXEC);
			break;
		}
	}
	return n;
}

/* A listener for context a on port 5000, set up the regular way. */
static int
listener(void)
{
	struct wire_hello h = { .version = WIRE_VERSION, .cid = 3, .sock_type = SOCK_STREAM };
	struct wire_bind b = { .port = 5000 };
	struct wire_listen l = { .backlog = 4, .buf_size = 1 << 16, .buf_min = 1 << 12,
				 .buf_max = 1 << 20 };
	struct wire_hdr hh = { .type = WIRE_HELLO, .len = sizeof(h), .seq = 1 };
	struct wire_hdr hb = { .type = WIRE_BIND, .len = sizeof(b), .seq = 2 };
	struct wire_hdr hl = { .type = WIRE_LISTEN, .len = sizeof(l), .seq = 3 };
	int sp[2];

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sp) < 0)
		abort();
	if (!broker__adopt(&broker, sp[0], 1, 0, 0))
		abort();
	wire_send(sp[1], &hh, &h, NULL, 0);
	wire_send(sp[1], &hb, &b, NULL, 0);
	wire_send(sp[1], &hl, &l, NULL, 0);
	loop_once(&loop, 0);
	drain(sp[1]);
	return sp[1];
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool ready;
	struct fz f = { data, size };
	int l, sp[2];

	if (!ready) {
		setup();
		ready = true;
	}
	l = listener();
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sp) < 0)
		abort();
	if (!broker__adopt(&broker, sp[0], 2, (uid_t)(fz_take(&f, 1) & 1) * 1000, 0))
		abort();
	for (int steps = 0; f.n && steps < 64; steps++) {
		uint8_t buf[512];
		size_t len = (size_t)fz_take(&f, 2) % sizeof(buf);
		int nfds = (int)fz_take(&f, 1) % 7, fds[8];

		for (size_t i = 0; i < len; i++)
			buf[i] = (uint8_t)fz_take(&f, 1);
		nfds = make_fds(&f, nfds, fds);
		struct iovec v = { buf, len };
		(void)wire_send_iov(sp[1], &v, 1, fds, nfds);
		for (int i = 0; i < nfds; i++)
			if (fds[i] >= 0)
				close(fds[i]);
		loop_once(&loop, 0);
		drain(sp[1]);
		drain(l);
	}
	close(sp[1]);
	close(l);
	/* The broker sees both hang up and frees everything they held. */
	for (int i = 0; i < 4 && broker.nconns; i++)
		loop_once(&loop, 0);
	for (int i = 0; broker.conns; i++) { /* pending sides whose listener went, etc. */
		if (i == 100)
			abort(); /* a connection outlived both its ends: a leak */
		loop_once(&loop, 10);
	}
	return 0;
}
