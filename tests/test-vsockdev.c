/* SPDX-License-Identifier: MIT */
/*
 * Tests of the virtio-vsock device's protocol engine (src/vsock) against
 * the fake guest of fakeguest.h: no QEMU, no daemon, one thread. A guest
 * connection is modelled by struct gc (its ports and both credits, as a
 * Linux driver keeps them); its peer is the other end of the queue pair
 * the stub fabric made. Every packet the device sends is checked: op,
 * addresses, type, credit fields; every stream byte-exact.
 */
#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/clock.h"
#include "harness.h"
#include "vmfabric/qp.h"
#include "vsockdev.h"

TEST(vsockdev_setup)
{
	static const struct fg_opts opts[] = {
		{ .event_idx = false },
		{ .event_idx = true, .indirect = true },
		{ .no_event_ring = true, .num = { 16, 32, 0 } },
	};
	int base = th_count_fds();

	for (unsigned i = 0; i < sizeof(opts) / sizeof(opts[0]); i++) {
		struct tw *t = tw_new(FG_ACCEPT);
		uint64_t feat = 0;
		struct gc c;

		th_log("options %u", i);
		ASSERT(!vsock_dev_attached(t->g.dev));
		ASSERT_EQ(vsock_dev_cid(t->g.dev), CID);
		ASSERT(strcmp(vsock_dev_name(t->g.dev), "guest-3") == 0);
		fg_attach(&t->g, &opts[i]);
		ASSERT(vsock_dev_attached(t->g.dev));
		ASSERT(vsock_dev_why(t->g.dev) == NULL);
		ASSERT_EQ(fg_config_cid(&t->g), CID);
		ASSERT_EQ(fg_request(&t->g, VHU_GET_FEATURES, false, NULL, 0, NULL, 0, &feat, 8),
			  8);
		ASSERT_EQ(feat & (VIRTIO_F_VERSION_1 | VIRTIO_F_EVENT_IDX | VIRTIO_F_INDIRECT_DESC |
				  VSOCK_F_SEQPACKET),
			  VIRTIO_F_VERSION_1 | VIRTIO_F_EVENT_IDX | VIRTIO_F_INDIRECT_DESC |
			      VSOCK_F_SEQPACKET);
		/* The device works: one connection. */
		gc_connect(t, &c, 1000, 5000, ST, 65536);
		ASSERT_EQ(vd_stats(&t->g).conns, 1);
		tw_close(t);
	}
	ASSERT_EQ(th_count_fds(), base);
}

TEST(vsockdev_reset_event)
{
	struct fg_opts o = { .event_bufs = 2 };
	struct tw *t = tw_open(FG_ACCEPT, &o);
	uint32_t id = 99;

	/* TRANSPORT_RESET once, right after the rings start. */
	ASSERT_EQ(fg_event_get(&t->g, &id), 1);
	ASSERT_EQ(id, VSOCK_EVENT_TRANSPORT_RESET);
	ASSERT_EQ(fg_event_get(&t->g, &id), 0);
	fg_pump(&t->g, 0);
	ASSERT_EQ(fg_event_get(&t->g, &id), 0);
	ASSERT_GE(fg_calls(&t->g, VSOCK_Q_EVENT), 1);
	tw_close(t);

	/* No event buffer at start: the event waits for one. */
	t = tw_open(FG_ACCEPT, NULL);
	ASSERT_EQ(fg_event_get(&t->g, &id), 0);
	ASSERT_EQ(fg_event_post(&t->g, 1), 1);
	fg_pump(&t->g, 0);
	ASSERT_EQ(fg_event_get(&t->g, &id), 1);
	ASSERT_EQ(id, VSOCK_EVENT_TRANSPORT_RESET);
	/* A new frontend (a daemon restart seen from the guest): another reset. */
	fg_event_post(&t->g, 1);
	fg_attach(&t->g, &o);
	ASSERT_EQ(fg_event_get(&t->g, &id), 1);
	ASSERT_EQ(fg_event_get(&t->g, &id), 0);
	tw_close(t);
}

TEST(vsockdev_refused)
{
	static const int errs[] = { -ECONNREFUSED, -EACCES, -EHOSTUNREACH, -ENOMEM };
	struct tw *t = tw_open(FG_REFUSE, NULL);
	struct vsock_hdr h;

	fg_rx_post(&t->g, 16, FG_RX_BUF_LINUX, FG_TWO);
	for (unsigned i = 0; i < 4; i++) {
		uint16_t type = i & 1 ? SP : ST;

		t->fab.err = errs[i];
		h = fg_hdr(&t->g, VSOCK_OP_REQUEST, 1000 + i, HOST + i, 5000 + i, type);
		h.buf_alloc = 65536;
		vd_tx(&t->g, &h, NULL, FG_TWO);
		ASSERT_EQ(t->fab.calls, i + 1);
		ASSERT(t->fab.from == t->g.dev);
		ASSERT_EQ(t->fab.src_port, 1000 + i);
		ASSERT_EQ(t->fab.dst_cid, HOST + i);
		ASSERT_EQ(t->fab.dst_port, 5000 + i);
		ASSERT_EQ(t->fab.type, type == ST ? SOCK_STREAM : SOCK_SEQPACKET);
		vd_next(&t->g, &t->p);
		vd_expect_addr(&t->p, VSOCK_OP_RST, HOST + i, 5000 + i, CID, 1000 + i, type);
		ASSERT_EQ(t->p.h.len, 0);
		vd_none(&t->g);
	}
	/* A destination beyond 32 bits is refused without asking the fabric. */
	h = fg_hdr(&t->g, VSOCK_OP_REQUEST, 1100, 1ull << 32 | HOST, 5000, ST);
	vd_tx(&t->g, &h, NULL, FG_TWO);
	ASSERT_EQ(t->fab.calls, 4);
	vd_next(&t->g, &t->p);
	ASSERT_EQ(t->p.h.op, VSOCK_OP_RST);
	ASSERT_EQ(t->p.h.dst_port, 1100);
	ASSERT_EQ(vd_stats(&t->g).refused, 5);
	ASSERT_EQ(vd_stats(&t->g).conns, 0);
	ASSERT_EQ(vd_stats(&t->g).opened, 0);
	tw_close(t);
}

TEST(vsockdev_accept)
{
	struct tw *t = tw_open(FG_ACCEPT, NULL);
	struct gc c;

	gc_connect(t, &c, 1000, 5000, ST, 65536);
	ASSERT_EQ(t->p.h.buf_alloc, QSIZE);
	ASSERT_EQ(t->p.h.flags, 0);
	ASSERT_EQ(t->fab.type, SOCK_STREAM);
	ASSERT_EQ(t->fab.dst_cid, HOST);
	ASSERT_EQ(t->fab.src_port, 1000);
	vd_none(&t->g);
	/* A smaller queue pair: a smaller buffer. */
	t->fab.qsize = 16384;
	gc_connect(t, &c, 1001, 5000, ST, 65536);
	ASSERT_EQ(t->p.h.buf_alloc, 16384);
	ASSERT_EQ(vd_stats(&t->g).opened, 2);
	ASSERT_EQ(vd_stats(&t->g).conns, 2);
	tw_close(t);
}

/* Guest to peer in every layout and with every option set. */
TEST(vsockdev_guest_to_peer)
{
	static const uint32_t sizes[] = { 1, 43, 44, 4096, 4097, 65536, 3000 };
	static const struct fg_opts opts[] = { { .event_idx = false },
					       { .event_idx = true, .indirect = true } };
	uint64_t seed = 1;
	uint8_t *buf = malloc(65536), *got = malloc(65536);

	ASSERT(buf && got);
	for (unsigned o = 0; o < 2; o++) {
		struct tw *t = tw_open(FG_ACCEPT, &opts[o]);
		uint64_t total = 0;
		struct gc c;
		struct qp *q = gc_connect(t, &c, 1000, 5000, ST, 65536);

		for (unsigned l = 0; l < FG_LAYOUTS; l++) {
			if (l == FG_INDIRECT && !opts[o].indirect)
				continue;
			for (unsigned i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
				th_fill(&seed, buf, sizes[i]);
				ASSERT_LE(sizes[i], gc_credit(&c));
				gc_send(&c, VSOCK_OP_RW, buf, sizes[i], 0, (enum fg_layout)l);
				vd_peer_read(&t->g, q, got, sizes[i]);
				ASSERT_MEM_EQ(got, buf, sizes[i]);
				vd_peer_nothing(q);
				total += sizes[i];
				/* Keep our view of the credit current. */
				gc_send(&c, VSOCK_OP_CREDIT_REQUEST, NULL, 0, 0, FG_TWO);
				gc_expect(&c, &t->p, VSOCK_OP_CREDIT_UPDATE);
			}
		}
		ASSERT_EQ(vd_stats(&t->g).from_guest_bytes, total);
		ASSERT_EQ(c.peer_fwd_cnt, (uint32_t)total);
		fg_tx_reclaim(&t->g);
		ASSERT_EQ(fg_tx_inflight(&t->g), 0);
		tw_close(t);
	}
	free(buf);
	free(got);
}

TEST(vsockdev_peer_to_guest_credit)
{
	static const struct fg_opts opts[] = { { .event_idx = false }, { .event_idx = true } };
	const size_t len = 50000;
	uint8_t *buf = malloc(len), *got = malloc(len);
	uint64_t seed = 2;

	ASSERT(buf && got);
	th_fill(&seed, buf, len);
	for (unsigned o = 0; o < 2; o++) {
		struct tw *t = tw_open(FG_ACCEPT, &opts[o]);
		struct gc c;
		struct qp *q = gc_connect(t, &c, 1000, 5000, ST, 10000);

		vd_peer_write(&t->g, q, buf, len);
		/* Exactly the guest's buffer, then nothing. */
		gc_drain_rx(&c, &t->p, got, len);
		ASSERT_EQ(c.rx_cnt, 10000);
		/* The guest consumed 6000: it says so, and gets 6000 more. */
		c.fwd_cnt = 6000;
		gc_send(&c, VSOCK_OP_CREDIT_UPDATE, NULL, 0, 0, FG_TWO);
		gc_drain_rx(&c, &t->p, got, len);
		ASSERT_EQ(c.rx_cnt, 16000);
		/* Credit also comes with data from the guest. */
		c.fwd_cnt = 16000;
		gc_send(&c, VSOCK_OP_RW, "x", 1, 0, FG_TWO);
		gc_drain_rx(&c, &t->p, got, len);
		ASSERT_EQ(c.rx_cnt, 26000);
		while (c.rx_cnt < len) {
			c.fwd_cnt = c.rx_cnt;
			gc_send(&c, VSOCK_OP_CREDIT_UPDATE, NULL, 0, 0, FG_TWO);
			ASSERT_GT(gc_drain_rx(&c, &t->p, got, len), 0);
		}
		ASSERT_EQ(c.rx_cnt, len);
		ASSERT_MEM_EQ(got, buf, len);
		ASSERT_EQ(vd_stats(&t->g).to_guest_bytes, len);
		/* A guest buffer of 0 stops the device until the guest says more. */
		c.fwd_cnt = c.rx_cnt;
		c.buf_alloc = 0;
		gc_send(&c, VSOCK_OP_CREDIT_UPDATE, NULL, 0, 0, FG_TWO);
		vd_peer_write(&t->g, q, buf, 100);
		vd_none(&t->g);
		c.buf_alloc = 1000;
		gc_send(&c, VSOCK_OP_CREDIT_UPDATE, NULL, 0, 0, FG_TWO);
		gc_expect(&c, &t->p, VSOCK_OP_RW);
		ASSERT_EQ(t->p.h.len, 100);
		ASSERT_MEM_EQ(t->p.data, buf, 100);
		tw_close(t);
	}
	free(buf);
	free(got);
}

/* The guest's receive buffers: shapes, running out, and coming back. */
TEST(vsockdev_rx_buffers)
{
	static const struct fg_opts opts[] = { { .event_idx = false },
					       { .event_idx = true, .indirect = true } };
	uint8_t buf[5000];
	uint64_t seed = 3;

	th_fill(&seed, buf, sizeof(buf));
	for (unsigned o = 0; o < 2; o++) {
		struct tw *t = tw_open(FG_ACCEPT, &opts[o]);
		struct qp *q;
		struct gc c;

		q = gc_connect(t, &c, 1000, 5000, ST, 1 << 20);
		vd_use_up_rx(t, &c, q);
		for (unsigned l = 0; l < FG_LAYOUTS; l++) {
			uint64_t none = vd_stats(&t->g).rx_no_buffers;

			if (l == FG_INDIRECT && !opts[o].indirect)
				continue;
			th_log("layout %u", l);
			/* Two small buffers of this shape, more data than fits. */
			ASSERT_EQ(fg_rx_post(&t->g, 2, 1000, (enum fg_layout)l), 2);
			vd_peer_write(&t->g, q, buf, 5000);
			for (unsigned i = 0; i < 2; i++) {
				gc_expect(&c, &t->p, VSOCK_OP_RW);
				ASSERT_EQ(t->p.h.len, 1000);
				ASSERT_MEM_EQ(t->p.data, buf + 1000 * i, 1000);
			}
			vd_none(&t->g);
			ASSERT_GT(vd_stats(&t->g).rx_no_buffers, none);
			/* One more buffer: the rest arrives (the device asked for a kick). */
			ASSERT_EQ(fg_rx_post(&t->g, 1, 4096, (enum fg_layout)l), 1);
			fg_pump(&t->g, 0);
			gc_expect(&c, &t->p, VSOCK_OP_RW);
			ASSERT_EQ(t->p.h.len, 3000);
			ASSERT_MEM_EQ(t->p.data, buf + 2000, 3000);
			ASSERT_EQ(fg_rx_posted(&t->g), 0);
			c.fwd_cnt = c.rx_cnt;
		}
		ASSERT(vsock_dev_attached(t->g.dev));
		ASSERT_GT(fg_calls(&t->g, VSOCK_Q_RX), 0);
		tw_close(t);
	}
}

TEST(vsockdev_credit_request)
{
	struct tw *t = tw_open(FG_ACCEPT, NULL);
	uint8_t buf[1000] = { 1, 2, 3 }, got[600];
	struct gc c;
	struct qp *q = gc_connect(t, &c, 1000, 5000, ST, 65536);

	gc_send(&c, VSOCK_OP_RW, buf, sizeof(buf), 0, FG_TWO);
	vd_peer_read(&t->g, q, got, sizeof(got));
	vd_none(&t->g); /* nothing worth an update yet */
	gc_send(&c, VSOCK_OP_CREDIT_REQUEST, NULL, 0, 0, FG_TWO);
	gc_expect(&c, &t->p, VSOCK_OP_CREDIT_UPDATE);
	ASSERT_EQ(t->p.h.len, 0);
	ASSERT_EQ(t->p.h.buf_alloc, QSIZE);
	ASSERT_EQ(t->p.h.fwd_cnt, 600);
	ASSERT_EQ(gc_credit(&c), QSIZE - 400);
	vd_none(&t->g);
	tw_close(t);
}

/*
 * The guest sends @total bytes in 64 KiB packets, never beyond its credit,
 * while the peer reads @chunk bytes a round; every byte arrives and the
 * guest never waits for credit that does not come.
 */
static void
stream_against_reader(struct tw *t, struct gc *c, struct qp *q, size_t total, size_t chunk)
{
	uint8_t *buf = malloc(total), *got = malloc(total);
	size_t sent = 0, recvd = 0;
	uint64_t seed = 4;
	unsigned updates = 0;

	ASSERT(buf && got);
	th_fill(&seed, buf, total);
	for (int round = 0; recvd < total; round++) {
		uint32_t n = gc_credit(c);
		ssize_t r;

		if (round > 20000)
			th_fail(__FILE__, __LINE__, "stalled: sent %zu, peer read %zu, credit %u",
				sent, recvd, n);
		if (n > VSOCK_MAX_PKT)
			n = VSOCK_MAX_PKT;
		if (n > total - sent)
			n = (uint32_t)(total - sent);
		if (n) {
			gc_send(c, VSOCK_OP_RW, buf + sent, n, 0, FG_TWO);
			sent += n;
		}
		r = qp_read(q, got + recvd, chunk < total - recvd ? chunk : total - recvd,
			    QP_DONTWAIT);
		if (r > 0)
			recvd += (size_t)r;
		else
			ASSERT_EQ(r, -EAGAIN);
		fg_pump(&t->g, 0);
		while (fg_rx_get(&t->g, &t->p)) {
			gc_take(c, &t->p, VSOCK_OP_CREDIT_UPDATE);
			updates++;
		}
		if (fg_rx_posted(&t->g) < 8)
			fg_rx_post(&t->g, 16, FG_RX_BUF_LINUX, FG_TWO);
		if (!n && r == -EAGAIN)
			fg_pump(&t->g, 1); /* nothing to do for either: the device must act */
	}
	ASSERT_EQ(sent, total);
	ASSERT_MEM_EQ(got, buf, total);
	ASSERT_GT(updates, 0);
	ASSERT_EQ(vd_stats(&t->g).resets, 0);
	th_log("%u credit updates for %zu bytes", updates, total);
	free(buf);
	free(got);
}

TEST(vsockdev_writer_never_stalls)
{
	static const size_t chunks[] = { 10000, 65536, 1 << 20, 3000 };

	for (unsigned i = 0; i < sizeof(chunks) / sizeof(chunks[0]); i++) {
		struct tw *t = tw_open(FG_ACCEPT, NULL);
		struct gc c;
		struct qp *q = gc_connect(t, &c, 1000, 5000, ST, 65536);

		th_log("peer reads %zu a round", chunks[i]);
		stream_against_reader(t, &c, q, 1 << 20, chunks[i]);
		tw_close(t);
	}
}

/* A peer that half-closed still reads, and the guest's writes still get credit. */
TEST(vsockdev_half_close_writer)
{
	struct tw *t = tw_open(FG_ACCEPT, NULL);
	struct gc c;
	struct qp *q = gc_connect(t, &c, 1000, 5000, ST, 65536);

	ASSERT_OK(qp_shutdown(q, SHUT_WR));
	fg_pump(&t->g, 0);
	gc_expect(&c, &t->p, VSOCK_OP_SHUTDOWN);
	ASSERT_EQ(t->p.h.flags, VSOCK_SHUT_SEND);
	stream_against_reader(t, &c, q, 1 << 20, 20000);
	tw_close(t);
}

TEST(vsockdev_credit_violation)
{
	struct tw *t = tw_open(FG_ACCEPT, NULL);
	uint8_t *buf = calloc(1, 65536), *got = malloc(QSIZE);
	struct gc c;
	struct qp *q = gc_connect(t, &c, 1000, 5000, ST, 65536);

	ASSERT(buf && got);
	/* The whole credit is fine. */
	gc_send(&c, VSOCK_OP_RW, buf, 65536, 0, FG_TWO);
	gc_send(&c, VSOCK_OP_RW, buf, 65536, 0, FG_ONE);
	ASSERT_EQ(gc_credit(&c), 0);
	vd_none(&t->g);
	ASSERT_EQ(vd_stats(&t->g).resets, 0);
	/* One byte more is a reset. */
	gc_send(&c, VSOCK_OP_RW, buf, 1, 0, FG_TWO);
	gc_expect(&c, &t->p, VSOCK_OP_RST);
	vd_none(&t->g);
	ASSERT_EQ(vd_stats(&t->g).resets, 1);
	ASSERT_EQ(vd_stats(&t->g).conns, 0);
	/* The peer reads what was within the credit, then sees a reset. */
	vd_peer_read(&t->g, q, got, QSIZE);
	vd_peer_eof(q, true);
	/* Packets for the dead connection get RST. */
	gc_send(&c, VSOCK_OP_RW, buf, 1, 0, FG_TWO);
	vd_next(&t->g, &t->p);
	ASSERT_EQ(t->p.h.op, VSOCK_OP_RST);
	free(buf);
	free(got);
	tw_close(t);
}

TEST(vsockdev_shutdown_send)
{
	struct tw *t = tw_open(FG_ACCEPT, NULL);
	uint8_t got[5];
	struct gc c;
	struct qp *q = gc_connect(t, &c, 1000, 5000, ST, 65536);

	gc_send(&c, VSOCK_OP_RW, "hello", 5, 0, FG_TWO);
	gc_send(&c, VSOCK_OP_SHUTDOWN, NULL, 0, VSOCK_SHUT_SEND, FG_TWO);
	vd_none(&t->g);
	vd_peer_read(&t->g, q, got, 5);
	ASSERT_MEM_EQ(got, "hello", 5);
	vd_peer_eof(q, false);
	/* The other direction still works. */
	vd_peer_write(&t->g, q, (const uint8_t *)"world", 5);
	gc_expect(&c, &t->p, VSOCK_OP_RW);
	ASSERT_EQ(t->p.h.len, 5);
	ASSERT_MEM_EQ(t->p.data, "world", 5);
	/* Data after SHUTDOWN(SEND) is a protocol violation. */
	gc_send(&c, VSOCK_OP_RW, "x", 1, 0, FG_TWO);
	gc_expect(&c, &t->p, VSOCK_OP_RST);
	ASSERT_EQ(vd_stats(&t->g).conns, 0);
	tw_close(t);
}

TEST(vsockdev_peer_close)
{
	struct tw *t = tw_open(FG_ACCEPT, NULL);
	struct gc c;
	struct qp *q = gc_connect(t, &c, 1000, 5000, ST, 65536);

	/* The peer writes and closes: data first, then a full SHUTDOWN. */
	vd_peer_write(&t->g, q, (const uint8_t *)"bye", 3);
	vd_take_peer(t, q);
	qp_close(q);
	fg_pump(&t->g, 0);
	gc_expect(&c, &t->p, VSOCK_OP_RW);
	ASSERT_EQ(t->p.h.len, 3);
	ASSERT_MEM_EQ(t->p.data, "bye", 3);
	gc_expect(&c, &t->p, VSOCK_OP_SHUTDOWN);
	ASSERT_EQ(t->p.h.flags, VSOCK_SHUT_RCV | VSOCK_SHUT_SEND);
	vd_none(&t->g);
	ASSERT_EQ(vd_stats(&t->g).conns, 1);
	/* The guest answers RST: gone, nothing more said. */
	gc_send(&c, VSOCK_OP_RST, NULL, 0, 0, FG_TWO);
	vd_none(&t->g);
	ASSERT_EQ(vd_stats(&t->g).conns, 0);
	ASSERT_EQ(vd_stats(&t->g).resets, 0);

	/* A peer that dies (no shutdown) is a reset for the guest. */
	q = gc_connect(t, &c, 1001, 5000, ST, 65536);
	vd_take_peer(t, q);
	qp_detach(q);
	fg_pump(&t->g, 0);
	gc_expect(&c, &t->p, VSOCK_OP_RST);
	ASSERT_EQ(vd_stats(&t->g).conns, 0);
	vd_none(&t->g);
	tw_close(t);
}

TEST(vsockdev_guest_close)
{
	struct tw *t = tw_open(FG_ACCEPT, NULL);
	uint8_t got[4];
	struct gc c;
	struct qp *q = gc_connect(t, &c, 1000, 5000, ST, 65536);

	gc_send(&c, VSOCK_OP_RW, "data", 4, 0, FG_TWO);
	gc_send(&c, VSOCK_OP_SHUTDOWN, NULL, 0, VSOCK_SHUT_RCV | VSOCK_SHUT_SEND, FG_TWO);
	gc_expect(&c, &t->p, VSOCK_OP_RST);
	vd_none(&t->g);
	ASSERT_EQ(vd_stats(&t->g).conns, 0);
	/* An orderly close: the peer reads the data, then EOF, not a reset. */
	vd_peer_read(&t->g, q, got, 4);
	ASSERT_MEM_EQ(got, "data", 4);
	vd_peer_eof(q, false);

	/* Two half shutdowns make a full one. */
	q = gc_connect(t, &c, 1001, 5000, ST, 65536);
	gc_send(&c, VSOCK_OP_SHUTDOWN, NULL, 0, VSOCK_SHUT_RCV, FG_TWO);
	vd_none(&t->g);
	ASSERT_EQ(qp_write(q, "x", 1, QP_DONTWAIT), -EPIPE); /* the guest reads no more */
	gc_send(&c, VSOCK_OP_SHUTDOWN, NULL, 0, VSOCK_SHUT_SEND, FG_TWO);
	gc_expect(&c, &t->p, VSOCK_OP_RST);
	vd_peer_eof(q, false);
	ASSERT_EQ(vd_stats(&t->g).conns, 0);
	tw_close(t);
}

TEST(vsockdev_guest_rst)
{
	struct tw *t = tw_open(FG_ACCEPT, NULL);
	uint8_t got[3];
	struct gc c;
	struct qp *q = gc_connect(t, &c, 1000, 5000, ST, 65536);

	gc_send(&c, VSOCK_OP_RW, "abc", 3, 0, FG_TWO);
	gc_send(&c, VSOCK_OP_RST, NULL, 0, 0, FG_TWO);
	vd_none(&t->g);
	ASSERT_EQ(vd_stats(&t->g).conns, 0);
	vd_peer_read(&t->g, q, got, 3);
	vd_peer_eof(q, true);
	/* An RST for nothing is not answered. */
	gc_send(&c, VSOCK_OP_RST, NULL, 0, 0, FG_TWO);
	vd_none(&t->g);
	tw_close(t);
}

TEST(vsockdev_bad_packets)
{
	struct tw *t = tw_open(FG_ACCEPT, NULL);
	uint8_t pay[64] = { 0 }, got[8];
	uint64_t errors = 0;
	struct vsock_hdr h;
	struct gc c;
	struct qp *q = gc_connect(t, &c, 1000, 5000, ST, 65536);

	/* Spoofed source CIDs: dropped, counted, no answer, nobody asked. */
	for (uint64_t src = 0; src < 6; src++) {
		if (src == CID)
			continue;
		h = gc_hdr(&c, VSOCK_OP_REQUEST, 0, 0);
		h.src_cid = src;
		h.src_port = 2000;
		vd_tx(&t->g, &h, NULL, FG_TWO);
		errors++;
	}
	h = gc_hdr(&c, VSOCK_OP_RW, 8, 0);
	h.src_cid = (uint64_t)CID << 32 | CID;
	vd_tx(&t->g, &h, "spoofed!", FG_TWO);
	errors++;
	vd_none(&t->g);
	ASSERT_EQ(t->fab.calls, 1);
	ASSERT_EQ(vd_stats(&t->g).proto_errors, errors);
	vd_peer_nothing(q);
	/* len beyond the buffer: dropped. */
	h = gc_hdr(&c, VSOCK_OP_RW, 1000, 0);
	ASSERT_OK(fg_tx_raw(&t->g, &h, HDR, pay, 10, FG_TWO));
	/* Shorter than a header; an unknown type; payload on a control packet. */
	ASSERT_OK(fg_tx_raw(&t->g, &h, 20, NULL, 0, FG_TWO));
	ASSERT_OK(fg_tx_raw(&t->g, NULL, 0, NULL, 0, FG_ONE));
	h = gc_hdr(&c, VSOCK_OP_RW, 0, 0);
	h.type = 3;
	ASSERT_OK(fg_tx(&t->g, &h, NULL, FG_TWO));
	h = gc_hdr(&c, VSOCK_OP_CREDIT_REQUEST, 4, 0);
	ASSERT_OK(fg_tx(&t->g, &h, pay, FG_TWO));
	errors += 5;
	fg_pump(&t->g, 0);
	vd_none(&t->g);
	ASSERT_EQ(vd_stats(&t->g).proto_errors, errors);
	vd_peer_nothing(q);
	/* Nothing broke: the connection still carries data. */
	ASSERT(vsock_dev_attached(t->g.dev));
	gc_send(&c, VSOCK_OP_RW, "still ok", 8, 0, FG_TWO);
	vd_peer_read(&t->g, q, got, 8);
	ASSERT_MEM_EQ(got, "still ok", 8);
	/* Packets for unknown connections: RST with their addresses. */
	for (uint16_t op = VSOCK_OP_RESPONSE; op <= VSOCK_OP_CREDIT_REQUEST; op++) {
		if (op == VSOCK_OP_RST)
			continue;
		h = fg_hdr(&t->g, op, 3000 + op, HOST, 6000, ST);
		h.len = op == VSOCK_OP_RW ? 2 : 0;
		vd_tx(&t->g, &h, "zz", FG_TWO);
		vd_next(&t->g, &t->p);
		vd_expect_addr(&t->p, VSOCK_OP_RST, HOST, 6000, CID, 3000 + op, ST);
	}
	vd_none(&t->g);
	ASSERT_EQ(vd_stats(&t->g).conns, 1);
	tw_close(t);
}

TEST(vsockdev_unknown_op)
{
	static const uint16_t ops[] = { VSOCK_OP_INVALID, 8, 99, 0xffff };
	struct tw *t = tw_open(FG_ACCEPT, NULL);

	for (unsigned i = 0; i < 4; i++) {
		struct gc c, u;
		struct qp *q = gc_connect(t, &c, 1000 + i, 5000, ST, 65536);

		gc_send(&c, ops[i], NULL, 0, 0, FG_TWO);
		gc_expect(&c, &t->p, VSOCK_OP_RST);
		vd_none(&t->g);
		vd_peer_eof(q, true);
		/* The same op for no connection: RST. */
		gc_init(&u, &t->g, 2000 + i, HOST, 5000, ST, 0);
		gc_send(&u, ops[i], NULL, 0, 0, FG_TWO);
		gc_expect(&u, &t->p, VSOCK_OP_RST);
	}
	ASSERT_EQ(vd_stats(&t->g).conns, 0);
	tw_close(t);
}

/* A REQUEST for a connection that exists resets it: the guest and we agree it is gone. */
TEST(vsockdev_duplicate_request)
{
	struct tw *t = tw_open(FG_ACCEPT, NULL);
	struct gc c;
	struct qp *q = gc_connect(t, &c, 1000, 5000, ST, 65536);

	gc_send(&c, VSOCK_OP_REQUEST, NULL, 0, 0, FG_TWO);
	gc_expect(&c, &t->p, VSOCK_OP_RST);
	vd_none(&t->g);
	ASSERT_EQ(vd_stats(&t->g).conns, 0);
	vd_peer_eof(q, true);
	/* The port is free again. */
	gc_connect(t, &c, 1000, 5000, ST, 65536);
	ASSERT_EQ(vd_stats(&t->g).conns, 1);
	tw_close(t);
}

TEST(vsockdev_seqpacket)
{
	struct tw *t = tw_open(FG_ACCEPT, NULL);
	uint8_t msg[10000], got[10000];
	uint64_t seed = 5;
	size_t mlen;
	struct gc c;
	struct qp *q = gc_connect(t, &c, 1000, 5000, SP, 1 << 20);

	ASSERT_EQ(t->fab.type, SOCK_SEQPACKET);
	/* The largest message the queue pair carries. */
	ASSERT_EQ(t->p.h.buf_alloc, qp_msg_max(q));
	th_fill(&seed, msg, sizeof(msg));
	/* Fragments assembled into one record; then a one-packet and an empty message. */
	gc_send(&c, VSOCK_OP_RW, msg, 1000, 0, FG_TWO);
	gc_send(&c, VSOCK_OP_RW, msg + 1000, 2000, 0, FG_SPLIT);
	ASSERT_EQ(qp_msg_recv(q, got, sizeof(got), &mlen, QP_DONTWAIT), -EAGAIN);
	gc_send(&c, VSOCK_OP_RW, msg + 3000, 500, VSOCK_SEQ_EOM, FG_ONE);
	gc_send(&c, VSOCK_OP_RW, "0123456789", 10, VSOCK_SEQ_EOM | VSOCK_SEQ_EOR, FG_TWO);
	gc_send(&c, VSOCK_OP_RW, NULL, 0, VSOCK_SEQ_EOM, FG_TWO);
	ASSERT_EQ(qp_msg_recv(q, got, sizeof(got), &mlen, QP_DONTWAIT), 3500);
	ASSERT_EQ(mlen, 3500);
	ASSERT_MEM_EQ(got, msg, 3500);
	ASSERT_EQ(qp_msg_recv(q, got, sizeof(got), &mlen, QP_DONTWAIT), 10);
	ASSERT_MEM_EQ(got, "0123456789", 10);
	ASSERT_EQ(qp_msg_recv(q, got, sizeof(got), &mlen, QP_DONTWAIT), 0);
	ASSERT_EQ(mlen, 0);
	ASSERT_EQ(qp_msg_recv(q, got, sizeof(got), &mlen, QP_DONTWAIT), -EAGAIN);
	/* Peer records cut into receive buffers, EOM on the last piece only. */
	ASSERT_EQ(qp_msg_send(q, msg, 10000, QP_DONTWAIT), 10000);
	ASSERT_EQ(qp_msg_send(q, "abcde", 5, QP_DONTWAIT), 5);
	ASSERT_EQ(qp_msg_send(q, NULL, 0, QP_DONTWAIT), 0);
	fg_pump(&t->g, 0);
	for (uint32_t off = 0; off < 10000;) {
		gc_expect(&c, &t->p, VSOCK_OP_RW);
		ASSERT_EQ(t->p.h.len, off + 4096 < 10000 ? 4096 : 10000 - off);
		ASSERT_EQ(t->p.h.flags, off + t->p.h.len == 10000 ? VSOCK_SEQ_EOM : 0);
		memcpy(got + off, t->p.data, t->p.h.len);
		off += t->p.h.len;
	}
	ASSERT_MEM_EQ(got, msg, 10000);
	gc_expect(&c, &t->p, VSOCK_OP_RW);
	ASSERT_EQ(t->p.h.len, 5);
	ASSERT_EQ(t->p.h.flags, VSOCK_SEQ_EOM);
	gc_expect(&c, &t->p, VSOCK_OP_RW);
	ASSERT_EQ(t->p.h.len, 0);
	ASSERT_EQ(t->p.h.flags, VSOCK_SEQ_EOM);
	vd_none(&t->g);
	/* A message larger than the queue pair carries is a reset. */
	for (uint32_t sent = 0; sent <= qp_msg_max(q); sent += 10000)
		gc_send(&c, VSOCK_OP_RW, msg, 10000, 0, FG_TWO);
	gc_expect(&c, &t->p, VSOCK_OP_RST);
	tw_close(t);
}

/* A big message sent as credit allows: the device's update must come even for a little credit. */
TEST(vsockdev_seqpacket_credit)
{
	struct tw *t = tw_new(FG_ACCEPT);
	uint8_t *msg = malloc(16384), *got = malloc(16384);
	uint32_t n, max;
	uint64_t seed = 6;
	size_t mlen;
	struct gc c;
	struct qp *q;

	ASSERT(msg && got);
	t->fab.qsize = 16384;
	fg_attach(&t->g, NULL);
	q = gc_connect(t, &c, 1000, 5000, SP, 1 << 20);
	max = (uint32_t)qp_msg_max(q);
	th_fill(&seed, msg, 16384);
	gc_send(&c, VSOCK_OP_RW, msg, 3000, VSOCK_SEQ_EOM, FG_TWO);
	/* A message of max bytes: as much as the credit allows, then wait. */
	n = gc_credit(&c);
	ASSERT_LT(n, max);
	gc_send(&c, VSOCK_OP_RW, msg, n, 0, FG_TWO);
	ASSERT_EQ(gc_credit(&c), 0);
	/* The peer takes the first message: the ring is empty, the credit must follow. */
	ASSERT_EQ(qp_msg_recv(q, got, 16384, &mlen, QP_DONTWAIT), 3000);
	fg_pump(&t->g, 0);
	gc_expect(&c, &t->p, VSOCK_OP_CREDIT_UPDATE);
	ASSERT_EQ(gc_credit(&c), max - n);
	gc_send(&c, VSOCK_OP_RW, msg + n, max - n, VSOCK_SEQ_EOM, FG_TWO);
	ASSERT_EQ(qp_msg_recv(q, got, 16384, &mlen, QP_DONTWAIT), max);
	ASSERT_MEM_EQ(got, msg, max);
	ASSERT_EQ(vd_stats(&t->g).resets, 0);
	free(msg);
	free(got);
	tw_close(t);
}

/* Many small messages cost the ring more than their payload: nothing is lost. */
TEST(vsockdev_seqpacket_small)
{
	struct tw *t = tw_new(FG_ACCEPT);
	uint8_t got[64];
	unsigned sent = 0, recvd = 0;
	size_t mlen;
	struct gc c;
	struct qp *q;

	t->fab.qsize = 4096;
	fg_attach(&t->g, NULL);
	q = gc_connect(t, &c, 1000, 5000, SP, 1 << 20);
	/* The guest fills its credit with 1-byte messages (16 ring bytes each). */
	while (gc_credit(&c) > 0) {
		uint8_t b = (uint8_t)sent++;

		gc_send(&c, VSOCK_OP_RW, &b, 1, VSOCK_SEQ_EOM, FG_TWO);
	}
	ASSERT_EQ(vd_stats(&t->g).resets, 0);
	/* Then closes; every message still reaches the peer, in order. */
	gc_send(&c, VSOCK_OP_SHUTDOWN, NULL, 0, VSOCK_SHUT_RCV | VSOCK_SHUT_SEND, FG_TWO);
	for (int i = 0; recvd < sent; i++) {
		ssize_t r = qp_msg_recv(q, got, sizeof(got), &mlen, QP_DONTWAIT);

		ASSERT_LT(i, 100000);
		if (r == -EAGAIN) {
			fg_pump(&t->g, 1);
			continue;
		}
		ASSERT_EQ(r, 1);
		ASSERT_EQ(got[0], (uint8_t)recvd);
		recvd++;
	}
	gc_expect(&c, &t->p, VSOCK_OP_RST);
	ASSERT_EQ(qp_msg_recv(q, got, sizeof(got), &mlen, QP_DONTWAIT), -ESHUTDOWN);
	ASSERT(!qp_peer_reset(q));
	ASSERT_EQ(vd_stats(&t->g).conns, 0);
	tw_close(t);
}

/* ---------------------------------------------------------------------- */
/* Offers from the fabric */

struct offer {
	int calls, err;
};

static void
offer_done(void *arg, int err)
{
	struct offer *o = arg;

	o->calls++;
	o->err = err;
}

/* A queue pair for an offer: the daemon's end in *@dq, the other returned. */
static struct qp *
offer_qp(struct qp **dq, size_t size)
{
	struct qp *q;

	ASSERT_OK(qp_create_pair(size, size, dq, &q));
	qp_set_mode(q, QP_NONBLOCK);
	return q;
}

TEST(vsockdev_offer)
{
	struct tw *t = tw_open(FG_REFUSE, NULL);
	struct offer o1 = { 0 }, o2 = { 0 }, o3 = { 0 };
	struct qp *dq, *q, *dq2, *q2;
	uint8_t got[5];
	struct gc c;

	fg_rx_post(&t->g, 32, FG_RX_BUF_LINUX, FG_TWO);
	q = offer_qp(&dq, 32768);
	ASSERT_OK(vsock_offer(t->g.dev, 7, 7000, 8000, SOCK_STREAM, dq, offer_done, &o1));
	gc_init(&c, &t->g, 8000, 7, 7000, ST, 65536);
	gc_expect(&c, &t->p, VSOCK_OP_REQUEST);
	ASSERT_EQ(t->p.h.buf_alloc, 32768);
	ASSERT_EQ(t->p.h.fwd_cnt, 0);
	ASSERT_EQ(o1.calls, 0);
	/* The same connection again: in use, the queue pair stays the caller's. */
	q2 = offer_qp(&dq2, 4096);
	ASSERT_EQ(vsock_offer(t->g.dev, 7, 7000, 8000, SOCK_STREAM, dq2, offer_done, &o2),
		  -EADDRINUSE);
	qp_close(dq2);
	qp_close(q2);
	gc_send(&c, VSOCK_OP_RESPONSE, NULL, 0, 0, FG_TWO);
	ASSERT_EQ(o1.calls, 1);
	ASSERT_EQ(o1.err, 0);
	ASSERT_EQ(vd_stats(&t->g).opened, 1);
	/* Data both ways. */
	gc_send(&c, VSOCK_OP_RW, "guest", 5, 0, FG_TWO);
	vd_peer_read(&t->g, q, got, 5);
	ASSERT_MEM_EQ(got, "guest", 5);
	vd_peer_write(&t->g, q, (const uint8_t *)"host!", 5);
	gc_expect(&c, &t->p, VSOCK_OP_RW);
	ASSERT_MEM_EQ(t->p.data, "host!", 5);
	/* The guest does not listen there: RST, -ECONNREFUSED. */
	q2 = offer_qp(&dq2, 4096);
	ASSERT_OK(vsock_offer(t->g.dev, 7, 7001, 8001, SOCK_SEQPACKET, dq2, offer_done, &o2));
	gc_init(&c, &t->g, 8001, 7, 7001, SP, 65536);
	gc_expect(&c, &t->p, VSOCK_OP_REQUEST);
	gc_send(&c, VSOCK_OP_RST, NULL, 0, 0, FG_TWO);
	ASSERT_EQ(o2.calls, 1);
	ASSERT_EQ(o2.err, -ECONNREFUSED);
	vd_peer_eof(q2, true);
	qp_close(q2);
	/* The device goes away with an offer pending: -ECONNRESET. */
	q2 = offer_qp(&dq2, 4096);
	ASSERT_OK(vsock_offer(t->g.dev, 7, 7002, 8002, SOCK_STREAM, dq2, offer_done, &o3));
	fg_close_frontend(&t->g);
	ASSERT_EQ(o3.calls, 1);
	ASSERT_EQ(o3.err, -ECONNRESET);
	vd_peer_eof(q2, true);
	qp_close(q2);
	ASSERT_EQ(o1.calls, 1);
	vd_peer_eof(q, true);
	qp_close(q);
	/* No frontend: -ENOTCONN, the queue pair stays the caller's. */
	q2 = offer_qp(&dq2, 4096);
	ASSERT_EQ(vsock_offer(t->g.dev, 7, 7003, 8003, SOCK_STREAM, dq2, offer_done, &o3),
		  -ENOTCONN);
	ASSERT_EQ(o3.calls, 1);
	qp_close(dq2);
	qp_close(q2);
	tw_close(t);
}

/* Wait for @o to be answered, at most @max_ms; the milliseconds it took. */
static int64_t
offer_wait(struct fg *g, struct offer *o, int max_ms)
{
	int64_t start = clock_ns(), ms = 0;

	while (!o->calls && ms < max_ms) {
		fg_pump(g, 50);
		ms = (clock_ns() - start) / 1000000;
	}
	return ms;
}

TEST(vsockdev_offer_timeout)
{
	struct tw *t = tw_open(FG_REFUSE, NULL);
	struct offer o = { 0 };
	struct qp *dq, *q;
	int64_t ms;

	/* The guest gets the REQUEST and never answers. */
	fg_rx_post(&t->g, 8, FG_RX_BUF_LINUX, FG_TWO);
	q = offer_qp(&dq, 4096);
	ASSERT_OK(vsock_offer(t->g.dev, 7, 7000, 8000, SOCK_STREAM, dq, offer_done, &o));
	vd_next(&t->g, &t->p);
	ASSERT_EQ(t->p.h.op, VSOCK_OP_REQUEST);
	ms = offer_wait(&t->g, &o, 4000);
	th_log("timed out after %lld ms", (long long)ms);
	ASSERT_EQ(o.calls, 1);
	ASSERT_EQ(o.err, -ETIMEDOUT);
	ASSERT_GE(ms, 1900);
	ASSERT_LE(ms, 3000);
	/* The guest hears RST; the queue pair's other end a reset. */
	vd_next(&t->g, &t->p);
	vd_expect_addr(&t->p, VSOCK_OP_RST, 7, 7000, CID, 8000, ST);
	vd_peer_eof(q, true);
	qp_close(q);
	ASSERT_EQ(vd_stats(&t->g).conns, 0);

	tw_close(t);

	/* A guest with no receive buffer at all times out the same. */
	t = tw_open(FG_REFUSE, NULL);
	q = offer_qp(&dq, 4096);
	o.calls = 0;
	ASSERT_OK(vsock_offer(t->g.dev, 7, 7000, 8000, SOCK_STREAM, dq, offer_done, &o));
	ms = offer_wait(&t->g, &o, 4000);
	ASSERT_EQ(o.calls, 1);
	ASSERT_EQ(o.err, -ETIMEDOUT);
	ASSERT_LE(ms, 3000);
	qp_close(q);
	tw_close(t);
}

/* ---------------------------------------------------------------------- */

/* Two guests on one loop: A (CID 3) routes to B (CID 4), B's fabric refuses. */
struct vm2 {
	struct tw *t;
	struct fg_fabric fb;
	struct fg *b;
};

static void
vm2_open(struct vm2 *v)
{
	v->t = tw_new(FG_TO_VM);
	v->b = calloc(1, sizeof(*v->b));
	ASSERT(v->b);
	fg_fabric_init(&v->fb, FG_REFUSE);
	fg_new(v->b, &v->t->loop, CID_B, &v->fb.fab);
	v->t->fab.vm = v->b->dev;
	fg_attach(&v->t->g, NULL);
	fg_attach(v->b, NULL);
	fg_rx_post(&v->t->g, 64, FG_RX_BUF_LINUX, FG_TWO);
	fg_rx_post(v->b, 64, FG_RX_BUF_LINUX, FG_TWO);
}

static void
vm2_close(struct vm2 *v)
{
	fg_free(v->b);
	free(v->b);
	fg_fabric_free(&v->fb);
	tw_close(v->t);
}

/* A's port @pa asks for B's port @pb: B hears a REQUEST from A. */
static void
vm2_request(struct vm2 *v, struct gc *ca, struct gc *cb, uint32_t pa, uint32_t pb)
{
	gc_init(ca, &v->t->g, pa, CID_B, pb, ST, 65536);
	gc_init(cb, v->b, pb, CID, pa, ST, 65536);
	gc_send(ca, VSOCK_OP_REQUEST, NULL, 0, 0, FG_TWO);
	ASSERT_EQ(v->t->fab.dst_cid, CID_B);
	vd_none(&v->t->g);
	gc_expect(cb, &v->t->p, VSOCK_OP_REQUEST);
	ASSERT_EQ(v->t->p.h.buf_alloc, QSIZE);
}

TEST(vsockdev_vm_to_vm)
{
	uint8_t buf[30000];
	struct gc ca, cb;
	uint64_t seed = 7;
	uint32_t got = 0;
	struct vm2 v;

	vm2_open(&v);
	th_fill(&seed, buf, sizeof(buf));
	/* B answers, A hears RESPONSE. */
	vm2_request(&v, &ca, &cb, 1000, 2000);
	gc_send(&cb, VSOCK_OP_RESPONSE, NULL, 0, 0, FG_TWO);
	gc_expect(&ca, &v.t->p, VSOCK_OP_RESPONSE);
	ASSERT_EQ(v.t->p.h.buf_alloc, QSIZE);
	ASSERT_EQ(vd_stats(&v.t->g).conns, 1);
	ASSERT_EQ(vd_stats(v.b).conns, 1);
	/* 30000 bytes A to B; B's credit (64 KiB) holds them all. */
	gc_send(&ca, VSOCK_OP_RW, buf, 30000, 0, FG_TWO);
	fg_pump(v.b, 0);
	while (got < 30000) {
		gc_expect(&cb, &v.t->p, VSOCK_OP_RW);
		ASSERT_MEM_EQ(v.t->p.data, buf + got, v.t->p.h.len);
		got += v.t->p.h.len;
	}
	vd_none(v.b);
	/* B to A. */
	gc_send(&cb, VSOCK_OP_RW, "pong", 4, 0, FG_TWO);
	gc_expect(&ca, &v.t->p, VSOCK_OP_RW);
	ASSERT_MEM_EQ(v.t->p.data, "pong", 4);
	/* A closes: RST for A, a full SHUTDOWN for B, whose RST ends it. */
	gc_send(&ca, VSOCK_OP_SHUTDOWN, NULL, 0, VSOCK_SHUT_RCV | VSOCK_SHUT_SEND, FG_TWO);
	gc_expect(&ca, &v.t->p, VSOCK_OP_RST);
	gc_expect(&cb, &v.t->p, VSOCK_OP_SHUTDOWN);
	ASSERT_EQ(v.t->p.h.flags, VSOCK_SHUT_RCV | VSOCK_SHUT_SEND);
	gc_send(&cb, VSOCK_OP_RST, NULL, 0, 0, FG_TWO);
	vd_none(&v.t->g);
	vd_none(v.b);
	ASSERT_EQ(vd_stats(&v.t->g).conns, 0);
	ASSERT_EQ(vd_stats(v.b).conns, 0);
	vm2_close(&v);
}

TEST(vsockdev_vm_refused)
{
	struct gc ca, cb;
	int64_t start;
	struct vm2 v;

	vm2_open(&v);
	/* B refuses: A hears RST. */
	vm2_request(&v, &ca, &cb, 1001, 2001);
	gc_send(&cb, VSOCK_OP_RST, NULL, 0, 0, FG_TWO);
	gc_expect(&ca, &v.t->p, VSOCK_OP_RST);
	/* B never answers: after the connect deadline both hear RST. */
	vm2_request(&v, &ca, &cb, 1003, 2003);
	start = clock_ns();
	while (!fg_rx_get(&v.t->g, &v.t->p)) {
		ASSERT_LT(clock_ns() - start, 3000 * 1000000LL);
		fg_pump(&v.t->g, 50);
	}
	ASSERT_GE(clock_ns() - start, 1900 * 1000000LL);
	gc_take(&ca, &v.t->p, VSOCK_OP_RST);
	gc_expect(&cb, &v.t->p, VSOCK_OP_RST);
	/* B goes away while connected: A hears RST. */
	vm2_request(&v, &ca, &cb, 1002, 2002);
	gc_send(&cb, VSOCK_OP_RESPONSE, NULL, 0, 0, FG_TWO);
	gc_expect(&ca, &v.t->p, VSOCK_OP_RESPONSE);
	fg_close_frontend(v.b);
	fg_pump(&v.t->g, 0);
	gc_expect(&ca, &v.t->p, VSOCK_OP_RST);
	ASSERT_EQ(vd_stats(&v.t->g).conns, 0);
	/* B not attached: refused. */
	gc_send(&ca, VSOCK_OP_REQUEST, NULL, 0, 0, FG_TWO);
	gc_expect(&ca, &v.t->p, VSOCK_OP_RST);
	vd_none(&v.t->g);
	vm2_close(&v);
}

/* A guest connecting to itself through the fabric (loopback) on the same port twice. */
TEST(vsockdev_vm_loopback)
{
	struct tw *t = tw_new(FG_TO_VM);
	struct gc ca, cb;

	t->fab.vm = t->g.dev;
	fg_attach(&t->g, NULL);
	fg_rx_post(&t->g, 32, FG_RX_BUF_LINUX, FG_TWO);
	gc_init(&ca, &t->g, 1000, CID, 2000, ST, 65536);
	gc_init(&cb, &t->g, 2000, CID, 1000, ST, 65536);
	gc_send(&ca, VSOCK_OP_REQUEST, NULL, 0, 0, FG_TWO);
	gc_expect(&cb, &t->p, VSOCK_OP_REQUEST);
	gc_send(&cb, VSOCK_OP_RESPONSE, NULL, 0, 0, FG_TWO);
	gc_expect(&ca, &t->p, VSOCK_OP_RESPONSE);
	gc_send(&ca, VSOCK_OP_RW, "loop", 4, 0, FG_TWO);
	gc_expect(&cb, &t->p, VSOCK_OP_RW);
	ASSERT_MEM_EQ(t->p.data, "loop", 4);
	ASSERT_EQ(vd_stats(&t->g).conns, 2);
	/* Both ends the same address: refused, not two connections under one name. */
	gc_init(&ca, &t->g, 3000, CID, 3000, ST, 65536);
	gc_send(&ca, VSOCK_OP_REQUEST, NULL, 0, 0, FG_TWO);
	gc_expect(&ca, &t->p, VSOCK_OP_RST);
	vd_none(&t->g);
	ASSERT_EQ(vd_stats(&t->g).conns, 2);
	tw_close(t);
}

/* ---------------------------------------------------------------------- */
/* Broken drivers and frontends */

TEST(vsockdev_broken_ring)
{
	struct tw *t = tw_open(FG_ACCEPT, NULL);
	struct gc c;
	struct qp *q = gc_connect(t, &c, 1000, 5000, ST, 65536);
	uint8_t got[2];
	int err;

	gc_send(&c, VSOCK_OP_RW, "ok", 2, 0, FG_TWO);
	fg_tx_bad_head(&t->g, 500);
	fg_pump(&t->g, 0);
	ASSERT(!vsock_dev_attached(t->g.dev));
	ASSERT(vsock_dev_why(t->g.dev) != NULL);
	th_log("why: %s", vsock_dev_why(t->g.dev));
	ASSERT(strstr(vsock_dev_why(t->g.dev), "tx queue") != NULL);
	ASSERT(strstr(vsock_dev_why(t->g.dev), "head") != NULL);
	ASSERT_EQ(vd_stats(&t->g).conns, 0);
	/* What came before the broken entry was delivered; then the reset. */
	vd_peer_read(&t->g, q, got, 2);
	ASSERT_MEM_EQ(got, "ok", 2);
	vd_peer_eof(q, true);
	/* The frontend's socket was closed. */
	err = fg_request(&t->g, VHU_GET_QUEUE_NUM, false, NULL, 0, NULL, 0, got, 0);
	ASSERT(err == -EPIPE || err == -ECONNRESET);
	/* A new frontend works. */
	fg_attach(&t->g, NULL);
	ASSERT(vsock_dev_attached(t->g.dev));
	ASSERT(vsock_dev_why(t->g.dev) == NULL);
	gc_connect(t, &c, 1000, 5000, ST, 65536);
	tw_close(t);
}

/*
 * The frontend truncates guest memory under the device (an outside
 * frontend's memory need not be sealed): the device's next access faults,
 * reads zeros instead of dying of SIGBUS, and the frontend is dropped with
 * the reason; its connections are reset; memory given again works.
 */
TEST(vsockdev_memory_truncated)
{
	struct tw *t = tw_open(FG_ACCEPT, NULL);
	struct gc c;
	struct qp *q = gc_connect(t, &c, 1000, 5000, ST, 65536);
	uint64_t one = 1;
	struct stat st;

	ASSERT_OK(fstat(t->g.memfd, &st));
	ASSERT_OK(ftruncate(t->g.memfd, 0));
	ASSERT_EQ(write(t->g.ring[VSOCK_Q_TX].kick, &one, sizeof(one)), (ssize_t)sizeof(one));
	fg_pump(&t->g, 0);
	ASSERT(!vsock_dev_attached(t->g.dev));
	th_log("why: %s", vsock_dev_why(t->g.dev));
	ASSERT(strstr(vsock_dev_why(t->g.dev), "truncated") != NULL);
	vd_peer_eof(q, true);
	ASSERT_OK(ftruncate(t->g.memfd, st.st_size));
	fg_attach(&t->g, NULL);
	ASSERT(vsock_dev_attached(t->g.dev));
	gc_connect(t, &c, 1000, 5000, ST, 65536);
	tw_close(t);
}

/* The ring is broken before it starts: the device drops the frontend while it serves it. */
TEST(vsockdev_broken_at_start)
{
	struct fg_opts o = { .bad_tx_head = 300, .event_idx = true };
	struct tw *t = tw_new(FG_ACCEPT);
	int err = fg_try_attach(&t->g, &o);

	ASSERT(err == -EPIPE || err == -ECONNRESET);
	ASSERT(!vsock_dev_attached(t->g.dev));
	th_log("why: %s", vsock_dev_why(t->g.dev));
	ASSERT(strstr(vsock_dev_why(t->g.dev), "tx queue") != NULL);
	fg_attach(&t->g, NULL);
	ASSERT(vsock_dev_attached(t->g.dev));
	tw_close(t);
}

TEST(vsockdev_bad_rx_buffer)
{
	struct tw *t = tw_open(FG_ACCEPT, NULL);
	struct gc c;
	struct qp *q = gc_connect(t, &c, 1000, 5000, ST, 65536);

	vd_use_up_rx(t, &c, q);
	/* A receive buffer that cannot hold a header. */
	ASSERT_EQ(fg_rx_post_raw(&t->g, HDR - 1, true), 1);
	vd_peer_write(&t->g, q, (const uint8_t *)"x", 1);
	fg_pump(&t->g, 0);
	ASSERT(!vsock_dev_attached(t->g.dev));
	th_log("why: %s", vsock_dev_why(t->g.dev));
	ASSERT(strstr(vsock_dev_why(t->g.dev), "rx queue") != NULL);
	vd_peer_eof(q, true);
	tw_close(t);

	/* A device-readable receive buffer. */
	t = tw_open(FG_ACCEPT, NULL);
	ASSERT_EQ(fg_rx_post_raw(&t->g, 100, false), 1);
	gc_init(&c, &t->g, 1000, HOST, 5000, ST, 0);
	gc_send(&c, VSOCK_OP_RW, NULL, 0, 0, FG_TWO); /* owes an RST */
	ASSERT(!vsock_dev_attached(t->g.dev));
	ASSERT(strstr(vsock_dev_why(t->g.dev), "rx queue") != NULL);
	tw_close(t);
}

TEST(vsockdev_frontend_close)
{
	int base = th_count_fds();
	struct tw *t = tw_open(FG_ACCEPT, NULL);
	struct qp *q[3], *dq, *oq;
	struct offer o = { 0 };
	struct gc c;

	uint8_t got[16];

	for (unsigned i = 0; i < 3; i++) {
		q[i] = gc_connect(t, &c, 1000 + i, 5000, i == 2 ? SP : ST, 65536);
		vd_take_peer(t, q[i]);
	}
	vd_peer_write(&t->g, q[0], (const uint8_t *)"pending", 7);
	gc_send(&c, VSOCK_OP_RW, "pending", 7, VSOCK_SEQ_EOM, FG_TWO);
	oq = offer_qp(&dq, 4096);
	ASSERT_OK(vsock_offer(t->g.dev, 7, 7000, 8000, SOCK_STREAM, dq, offer_done, &o));
	fg_close_frontend(&t->g);
	ASSERT(!vsock_dev_attached(t->g.dev));
	ASSERT(strstr(vsock_dev_why(t->g.dev), "closed") != NULL);
	ASSERT_EQ(vd_stats(&t->g).conns, 0);
	ASSERT_EQ(o.calls, 1);
	ASSERT_EQ(o.err, -ECONNRESET);
	for (unsigned i = 0; i < 2; i++)
		vd_peer_eof(q[i], true);
	ASSERT_EQ(qp_msg_recv(q[2], got, sizeof(got), NULL, QP_DONTWAIT), 7);
	ASSERT_MEM_EQ(got, "pending", 7);
	ASSERT_EQ(qp_msg_recv(q[2], got, sizeof(got), NULL, QP_DONTWAIT), -ESHUTDOWN);
	ASSERT(qp_peer_reset(q[2]));
	for (unsigned i = 0; i < 3; i++)
		qp_close(q[i]);
	qp_close(oq);
	/* Everything the device held is gone; the device itself too. */
	tw_close(t);
	ASSERT_EQ(th_count_fds(), base);
}

/* A dead peer and a guest without receive buffers: the loop must sleep, not spin. */
TEST(vsockdev_no_spin)
{
	struct tw *t = tw_open(FG_ACCEPT, NULL);
	struct gc c;
	struct qp *q = gc_connect(t, &c, 1000, 5000, ST, 65536);
	int64_t start;

	vd_use_up_rx(t, &c, q);
	vd_take_peer(t, q);
	qp_close(q);
	fg_pump(&t->g, 0); /* aborts if the device never goes idle */
	start = clock_ns();
	ASSERT_EQ(fg_pump(&t->g, 200), 0);
	ASSERT_GE(clock_ns() - start, 150 * 1000000LL);
	/* Buffers come: the guest hears the end. */
	fg_rx_post(&t->g, 4, FG_RX_BUF_LINUX, FG_TWO);
	gc_expect(&c, &t->p, VSOCK_OP_SHUTDOWN);
	ASSERT_EQ(t->p.h.flags, VSOCK_SHUT_RCV | VSOCK_SHUT_SEND);
	tw_close(t);
}

/*
 * Events for a connection the same loop round frees: the guest's RST and
 * the peer's write are both pending when the loop wakes up.
 */
TEST(vsockdev_stale_event)
{
	struct tw *t = tw_open(FG_ACCEPT, NULL);

	for (unsigned i = 0; i < 20; i++) {
		struct gc c;
		struct qp *q = gc_connect(t, &c, 1000 + i, 5000, ST, 65536);
		struct vsock_hdr h = gc_hdr(&c, VSOCK_OP_RST, 0, 0);

		ASSERT_OK(fg_tx(&t->g, &h, NULL, FG_TWO));
		if (i & 1) /* and the frontend goes in the same round */
			ASSERT_OK(shutdown(t->g.fe, SHUT_WR));
		ASSERT_EQ(qp_write(q, "late", 4, QP_DONTWAIT), 4);
		ASSERT_OK(qp_shutdown(q, SHUT_RDWR));
		fg_pump(&t->g, 0);
		ASSERT_EQ(vd_stats(&t->g).conns, 0);
		if (i & 1) {
			fg_close_frontend(&t->g);
			fg_attach(&t->g, NULL);
		}
		vd_none(&t->g);
	}
	tw_close(t);
}

/* The rings stop and start again (QEMU around a VM stop): connections carry on. */
TEST(vsockdev_ring_restart)
{
	static const struct fg_opts opts[] = { { .event_idx = false }, { .event_idx = true } };

	for (unsigned o = 0; o < 2; o++) {
		struct tw *t = tw_open(FG_ACCEPT, &opts[o]);
		uint8_t got[5];
		struct gc c;
		struct qp *q = gc_connect(t, &c, 1000, 5000, ST, 65536);

		gc_send(&c, VSOCK_OP_RW, "one", 3, 0, FG_TWO);
		for (unsigned r = 0; r < VSOCK_QUEUES; r++)
			ASSERT_OK(fg_ring_restart(&t->g, r));
		ASSERT(vsock_dev_attached(t->g.dev));
		/* Buffers posted before the stop are used after it. */
		vd_peer_write(&t->g, q, (const uint8_t *)"two", 3);
		gc_expect(&c, &t->p, VSOCK_OP_RW);
		ASSERT_MEM_EQ(t->p.data, "two", 3);
		/* What the guest queues while a ring is stopped waits for its start. */
		ASSERT_OK(fg_ring_stop(&t->g, VSOCK_Q_TX));
		ASSERT_OK(fg_ring_stop(&t->g, VSOCK_Q_RX));
		gc_send(&c, VSOCK_OP_RW, "three", 5, 0, FG_ONE);
		vd_peer_write(&t->g, q, (const uint8_t *)"four", 4);
		vd_none(&t->g);
		vd_peer_read(&t->g, q, got, 3);
		ASSERT_MEM_EQ(got, "one", 3);
		vd_peer_nothing(q);
		ASSERT_OK(fg_ring_start(&t->g, VSOCK_Q_TX));
		ASSERT_OK(fg_ring_start(&t->g, VSOCK_Q_RX));
		vd_peer_read(&t->g, q, got, 5);
		ASSERT_MEM_EQ(got, "three", 5);
		gc_expect(&c, &t->p, VSOCK_OP_RW);
		ASSERT_MEM_EQ(t->p.data, "four", 4);
		ASSERT_EQ(vd_stats(&t->g).conns, 1);
		tw_close(t);
	}
}

/* The keeper's copies: duplicates of every descriptor the saved state names. */
static void
dup_saved(struct vhu_saved *s)
{
	ASSERT_GE(s->sock = dup(s->sock), 0);
	for (uint32_t i = 0; i < s->nregions; i++)
		ASSERT_GE(s->region_fds[i] = dup(s->region_fds[i]), 0);
	for (uint32_t i = 0; i < s->nrings; i++) {
		int *f[] = { &s->rings[i].kick, &s->rings[i].call, &s->rings[i].err };

		for (unsigned k = 0; k < 3; k++)
			if (*f[k] >= 0)
				ASSERT_GE(*f[k] = dup(*f[k]), 0);
	}
}

/*
 * A daemon killed after the fd keeper took its last copy: the guest sent
 * packets since, which the dead device handled. A new device restored from
 * the copy with resync resumes each ring at its used index, so none of
 * them is handled twice (with the copy's stale index, each would be
 * replayed and answered with a reset); the old connection is unknown (RST
 * at its next packet) and a new one works.
 */
TEST(vsockdev_crash_restore)
{
	int base = th_count_fds();
	struct tw *t = tw_open(FG_ACCEPT, NULL);
	struct vsock_dev *d2;
	struct vhu_saved s;
	struct gc c, c2;

	gc_connect(t, &c, 1000, 5000, ST, 65536);
	ASSERT(vsock_dev_save(t->g.dev, &s));
	dup_saved(&s);
	for (int i = 0; i < 5; i++)
		gc_send(&c, VSOCK_OP_RW, "x", 1, 0, FG_ONE);
	fg_pump(&t->g, 0);
	ASSERT_GE(vd_stats(&t->g).from_guest_pkts, 6);
	/* The daemon goes; the keeper's copies keep the guest's side open. */
	vsock_dev_free(t->g.dev);
	ASSERT_OK(vsock_dev_new(&t->loop, CID, "guest-3", &t->fab.fab, &d2));
	t->g.dev = d2;
	s.resync = true;
	ASSERT_OK(vsock_dev_restore(d2, &s));
	ASSERT(vsock_dev_attached(d2));
	vd_none(&t->g);
	ASSERT_EQ(vd_stats(&t->g).from_guest_pkts, 0);
	gc_send(&c, VSOCK_OP_RW, "y", 1, 0, FG_ONE);
	vd_expect_addr(vd_next(&t->g, &t->p), VSOCK_OP_RST, HOST, 5000, CID, 1000, ST);
	gc_connect(t, &c2, 1001, 5000, ST, 65536);
	ASSERT_EQ(vd_stats(&t->g).conns, 1);
	tw_close(t);
	ASSERT_EQ(th_count_fds(), base);
}
