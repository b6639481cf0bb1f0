/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: the datagram router (src/vmci/dgram.c), which reads every
 * datagram socket's outbound ring, written by an untrusted process: records
 * of a destination address and a payload. A router thread runs with five
 * sockets of four contexts (two sockets of one context, one context
 * restricted to the host, one with VMCI off); the input sends records from
 * any of them (to each other, to VMCI_CID_LOCAL, to the host, to addresses
 * nobody has; payloads of every size up to past the largest; records too
 * short to hold an address), reads, closes sockets, and lets time pass.
 *
 * Checked on every datagram received: its source is the true address of
 * the socket that sent it (never what the sender wrote), the two contexts
 * may talk (VMCI policy), and the payload is the bytes that socket sent;
 * and once the router is stopped, every descriptor is closed (memory:
 * LeakSanitizer).
 *
 * Input: steps { u8 op, operands } (see step()).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "fuzz.h"
#include "vmci/dgram.h"
#include "vmfabric/qp.h"

#define FZ_SOCKS 5
#define FZ_STEPS 128

static const struct {
	uint32_t cid, port;
	bool present, restricted;
} addr[FZ_SOCKS] = {
	{ 3, 10, true, false }, { 4, 20, true, false }, { 5, 30, true, true },
	{ 3, 11, true, false }, { 6, 40, false, false },
};

struct fzd {
	struct fz in;
	struct dgram_router r;
	struct dgram_ep *ep[FZ_SOCKS];
	struct qp *sock[FZ_SOCKS]; /* the processes' ends */
	uint16_t seq[FZ_SOCKS];
	uint8_t buf[sizeof(struct wire_dgram) + WIRE_DGRAM_MAX + 64];
};

static unsigned
take1(struct fzd *w)
{
	return (unsigned)fz_take(&w->in, 1);
}

/* Payload byte @k of datagram @seq of socket @s: the receiver can tell it was not changed. */
static uint8_t
pattern(unsigned s, unsigned seq, size_t k)
{
	return k == 0 ? (uint8_t)s : k == 1 ? (uint8_t)seq : k == 2 ? (uint8_t)(seq >> 8)
								   : (uint8_t)(seq + k * 7);
}

static void
send_step(struct fzd *w)
{
	static const size_t lens[] = { 0, 1, 3, 100, 4000, WIRE_DGRAM_MAX, WIRE_DGRAM_MAX + 1, 9 };
	unsigned a = take1(w), t = take1(w), s = (a & 7) % FZ_SOCKS;
	struct wire_dgram to;
	size_t len = lens[(a >> 3) % 8], rec;

	if (!w->sock[s])
		return;
	if ((a >> 3) % 8 == 7)
		len = (size_t)fz_take(&w->in, 2);
	switch (t % 8) {
	case 5: /* VMCI_CID_LOCAL: a socket of the sender's own context */
		to = (struct wire_dgram){ VMCI_CID_LOCAL, addr[(t >> 3) % FZ_SOCKS].port };
		break;
	case 6: /* anywhere */
		to.cid = (uint32_t)fz_take(&w->in, 4);
		to.port = (uint32_t)fz_take(&w->in, 4);
		break;
	case 7:
		to = (struct wire_dgram){ 2, addr[(t >> 3) % FZ_SOCKS].port };
		break;
	default:
		to = (struct wire_dgram){ addr[t % 8].cid, addr[t % 8].port };
	}
	memcpy(w->buf, &to, sizeof(to));
	for (size_t k = 0; k < len; k++)
		w->buf[sizeof(to) + k] = pattern(s, w->seq[s], k);
	rec = sizeof(to) + len;
	if (a & 0x80 && t & 0x80) /* a record too short to hold an address */
		rec = take1(w) % sizeof(to);
	if (qp_msg_send(w->sock[s], w->buf, rec, QP_DONTWAIT) >= 0)
		w->seq[s]++;
}

/* Everything socket @s has: from a true address it may hear from, with the bytes sent. */
static void
recv_all(struct fzd *w, unsigned s)
{
	struct wire_dgram from;
	size_t ml;
	ssize_t n;

	while (w->sock[s] &&
	       (n = qp_msg_recv(w->sock[s], w->buf, sizeof(w->buf), &ml, QP_DONTWAIT)) >= 0) {
		unsigned src = FZ_SOCKS, seq;
		struct vmci_ctx a = { 0 }, b = { 0 };

		FZ_CHECK((size_t)n == ml && ml >= sizeof(from) && ml <= sizeof(from) + WIRE_DGRAM_MAX);
		memcpy(&from, w->buf, sizeof(from));
		for (unsigned i = 0; i < FZ_SOCKS; i++)
			if (from.cid == addr[i].cid && from.port == addr[i].port)
				src = i;
		FZ_CHECK(src < FZ_SOCKS);
		a = (struct vmci_ctx){ .cid = addr[src].cid, .kind = VMCI_KIND_PROCESS,
				       .present = addr[src].present,
				       .restricted = addr[src].restricted };
		b = (struct vmci_ctx){ .cid = addr[s].cid, .kind = VMCI_KIND_PROCESS,
				       .present = addr[s].present, .restricted = addr[s].restricted };
		FZ_CHECK(vmci_policy(&a, &b) == 0);
		ml -= sizeof(from);
		if (ml < 3)
			continue;
		FZ_CHECK(w->buf[sizeof(from)] == src);
		seq = w->buf[sizeof(from) + 1] | (unsigned)w->buf[sizeof(from) + 2] << 8;
		for (size_t k = 3; k < ml; k++)
			FZ_CHECK(w->buf[sizeof(from) + k] == pattern(src, seq, k));
	}
}

static void
step(struct fzd *w)
{
	unsigned op = take1(w);

	switch (op % 6) {
	case 0:
	case 1:
		send_step(w);
		break;
	case 2:
		recv_all(w, (op >> 3) % FZ_SOCKS);
		break;
	case 3: /* the router runs */
		usleep((op >> 3) * 20);
		break;
	case 4: { /* a process goes: closed, or dead without a word */
		unsigned s = (op >> 3) % FZ_SOCKS;

		if (w->sock[s]) {
			if (op & 0x80)
				qp_detach(w->sock[s]);
			else
				qp_close(w->sock[s]);
			w->sock[s] = NULL;
		}
		break;
	}
	default:
		for (unsigned s = 0; s < FZ_SOCKS; s++)
			recv_all(w, s);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fzd *w = calloc(1, sizeof(*w));
	int fds_before = fz_count_fds();

	FZ_CHECK(w != NULL);
	log_set_level(getenv("FUZZ_DEBUG") ? LOG_LVL_DEBUG : LOG_LVL_ERR);
	w->in = (struct fz){ data, size };
	FZ_CHECK(dgram_start(&w->r) == 0);
	for (unsigned i = 0; i < FZ_SOCKS; i++) {
		struct dgram_ep *e = calloc(1, sizeof(*e));

		FZ_CHECK(e != NULL);
		FZ_CHECK(qp_create_pair(QP_SIZE_DEFAULT, QP_SIZE_DEFAULT, &e->qp, &w->sock[i]) == 0);
		e->cid = addr[i].cid;
		e->port = addr[i].port;
		e->pol = (struct vmci_ctx){ .cid = addr[i].cid, .kind = VMCI_KIND_PROCESS,
					    .present = addr[i].present,
					    .restricted = addr[i].restricted };
		FZ_CHECK(dgram_add(&w->r, e) == 0);
		w->ep[i] = e;
	}
	for (int i = 0; i < FZ_STEPS && w->in.n; i++)
		step(w);
	usleep(200);
	for (unsigned s = 0; s < FZ_SOCKS; s++)
		recv_all(w, s);
	if (getenv("FUZZ_DGRAM_TRACE")) /* what an input did, for whoever grows the corpus by hand */
		fprintf(stderr, "forwarded %llu drops %llu\n",
			(unsigned long long)atomic_load(&w->r.forwarded),
			(unsigned long long)atomic_load(&w->r.drops));
	/* Removed as the broker does when a socket closes; the rest go with the router. */
	for (unsigned i = 0; i < FZ_SOCKS; i += 2)
		dgram_remove(&w->r, w->ep[i]);
	dgram_stop(&w->r);
	for (unsigned s = 0; s < FZ_SOCKS; s++)
		if (w->sock[s])
			qp_close(w->sock[s]);
	free(w);
	FZ_CHECK(fz_count_fds() == fds_before); /* a descriptor leaked */
	return 0;
}
