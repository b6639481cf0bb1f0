/* SPDX-License-Identifier: MIT */
/*
 * Tests of the vhost-user server core (src/vhost): a fake frontend drives a
 * connection over a SOCK_STREAM socket pair through QEMU 7.2's vhost-user-
 * vsock start sequence, checking every reply and the rings' host pointers;
 * the memory table's checks and translation bounds; malformed messages
 * (sizes, descriptor counts, unknown requests, flags, EOF inside a message,
 * a message written one byte at a time); REPLY_ACK. Then what QEMU 7.2
 * sends for a vhost-user netdev with two queue pairs (-netdev vhost-user,
 * queues=2 with virtio-net-pci,mq=on,vectors=0) to a fake net device: one
 * vhost device per pair on the one connection, the second pair disabled
 * until the guest asks for it, refusals answered through REPLY_ACK, and a
 * reconnection that replays the whole setup.
 */
#include <errno.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/fdpass.h"
#include "harness.h"
#include "vhost/vhost.h"

#define F_VERSION_1	  (1ull << 32)
#define F_VSOCK_SEQPACKET (1ull << 1)
#define F_NET_MRG_RXBUF	  (1ull << 15)
#define F_NET_MQ	  (1ull << 22)
#define F_EVENT_IDX	  (1ull << 29)
#define REGION		  0x10000u
#define UA0		  0x7f0000000000ull
#define UA1		  0x7f0000100000ull

struct fake {
	uint64_t cid;
	int started[4], stopped[4];
	uint16_t consumed[4]; /* buffers taken since the ring started */
};

static int
fake_get_config(void *dev, uint32_t off, void *buf, uint32_t len)
{
	struct fake *f = dev;

	if (off > sizeof(f->cid) || len > sizeof(f->cid) - off)
		return -EINVAL;
	memcpy(buf, (uint8_t *)&f->cid + off, len);
	return 0;
}

static void
fake_started(void *dev, struct vhu_conn *c, uint32_t i)
{
	(void)c;
	((struct fake *)dev)->started[i]++;
}

static void
fake_stopped(void *dev, struct vhu_conn *c, uint32_t i, uint16_t *last_avail)
{
	struct fake *f = dev;

	(void)c;
	f->stopped[i]++;
	*last_avail = (uint16_t)(*last_avail + f->consumed[i]);
	f->consumed[i] = 0;
}

static const struct vhu_device_ops vsock_ops = {
	.features = F_VERSION_1 | F_VSOCK_SEQPACKET,
	.queues = 3,
	.get_config = fake_get_config,
	.ring_started = fake_started,
	.ring_stopped = fake_stopped,
};

/* Two queue pairs (receive, transmit); no config space. */
static const struct vhu_device_ops net_ops = {
	.features = F_VERSION_1 | F_NET_MQ | F_NET_MRG_RXBUF | F_EVENT_IDX,
	.queues = 4,
	.ring_started = fake_started,
	.ring_stopped = fake_stopped,
};

struct t {
	const struct vhu_device_ops *ops;
	struct vhu_conn *c;
	int fe; /* the frontend's end */
	struct fake dev;
};

/* A new connection to the same device (as after the frontend reconnects). */
static void
t_connect(struct t *t)
{
	int sp[2];

	ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp));
	ASSERT_OK(vhu_conn_new(sp[0], t->ops, &t->dev, &t->c));
	t->fe = sp[1];
}

static void
t_open_dev(struct t *t, const struct vhu_device_ops *ops)
{
	memset(t, 0, sizeof(*t));
	t->dev.cid = 42;
	t->ops = ops;
	t_connect(t);
}

static void
t_open(struct t *t)
{
	t_open_dev(t, &vsock_ops);
}

static void
t_close(struct t *t)
{
	vhu_conn_free(t->c);
	close(t->fe);
}

static void
send_raw(int fd, const void *buf, size_t len, const int *fds, int nfds)
{
	struct iovec iov = { (void *)(uintptr_t)buf, len };

	ASSERT_EQ(fdpass_send(fd, &iov, 1, fds, nfds, 0), (ssize_t)len);
}

static size_t
build(uint8_t *buf, uint32_t req, uint32_t flags, const void *p, uint32_t size)
{
	struct vhu_hdr h = { req, flags, size };

	memcpy(buf, &h, sizeof(h));
	if (size)
		memcpy(buf + sizeof(h), p, size);
	return sizeof(h) + size;
}

/* Send one request and let the server handle it; its result. */
static int
call(struct t *t, uint32_t req, uint32_t flags, const void *p, uint32_t size, const int *fds,
     int nfds)
{
	uint8_t buf[sizeof(struct vhu_hdr) + 512];

	ASSERT_LE(size, 512);
	send_raw(t->fe, buf, build(buf, req, flags, p, size), fds, nfds);
	return vhu_conn_process(t->c);
}

static int
call_ok(struct t *t, uint32_t req, const void *p, uint32_t size, const int *fds, int nfds)
{
	return call(t, req, VHU_VERSION, p, size, fds, nfds);
}

/* Read the reply to @req: its payload size. */
static uint32_t
reply(struct t *t, uint32_t req, void *p, uint32_t max)
{
	struct vhu_hdr h;

	ASSERT_EQ(recv(t->fe, &h, sizeof(h), MSG_DONTWAIT), (ssize_t)sizeof(h));
	ASSERT_EQ(h.request, req);
	ASSERT_EQ(h.flags, VHU_VERSION | VHU_FLAG_REPLY);
	ASSERT_LE(h.size, max);
	if (h.size)
		ASSERT_EQ(recv(t->fe, p, h.size, MSG_DONTWAIT), (ssize_t)h.size);
	return h.size;
}

static uint64_t
reply_u64(struct t *t, uint32_t req)
{
	uint64_t v = 0;

	ASSERT_EQ(reply(t, req, &v, sizeof(v)), sizeof(v));
	return v;
}

static void
no_reply(struct t *t)
{
	char b;

	ASSERT_EQ(recv(t->fe, &b, 1, MSG_DONTWAIT), -1);
	ASSERT_EQ(errno, EAGAIN);
}


static int
memfd(size_t size)
{
	int fd = memfd_create("vhost-test", MFD_CLOEXEC);

	ASSERT_GE(fd, 0);
	ASSERT_OK(ftruncate(fd, (off_t)size));
	return fd;
}

/* Two regions: A at gpa 0 (offset 0), B at gpa 0x100000 (mmap_offset 4096). */
static void
two_regions(struct vhu_mem_table *mt, int fds[2])
{
	memset(mt, 0, sizeof(*mt));
	mt->nregions = 2;
	mt->regions[0] = (struct vhu_mem_region){ 0, REGION, UA0, 0 };
	mt->regions[1] = (struct vhu_mem_region){ 0x100000, REGION, UA1, 4096 };
	fds[0] = memfd(REGION);
	fds[1] = memfd(REGION + 4096);
}

static void
negotiate(struct t *t, uint64_t proto)
{
	uint64_t v;

	ASSERT_OK(call_ok(t, VHU_GET_FEATURES, NULL, 0, NULL, 0));
	v = reply_u64(t, VHU_GET_FEATURES);
	ASSERT_EQ(v, VHU_F_PROTOCOL_FEATURES | t->ops->features);
	ASSERT_OK(call_ok(t, VHU_GET_PROTOCOL_FEATURES, NULL, 0, NULL, 0));
	/* CONFIG only with a config space to read. */
	ASSERT_EQ(reply_u64(t, VHU_GET_PROTOCOL_FEATURES), (t->ops->get_config ? 0x209 : 0x9));
	ASSERT_OK(call_ok(t, VHU_SET_PROTOCOL_FEATURES, &proto, 8, NULL, 0));
	no_reply(t);
}

static void
set_call(struct t *t, uint64_t i)
{
	int efd = eventfd(0, EFD_CLOEXEC);

	ASSERT_OK(call_ok(t, VHU_SET_VRING_CALL, &i, 8, &efd, 1));
	close(efd);
	ASSERT_GE(vhu_conn_ring(t->c, (uint32_t)i)->call, 0);
}

static void
set_enable(struct t *t, uint32_t i, uint32_t on)
{
	struct vhu_vring_state s = { i, on };

	ASSERT_OK(call_ok(t, VHU_SET_VRING_ENABLE, &s, 8, NULL, 0));
	ASSERT_EQ(vhu_conn_ring(t->c, i)->enabled, on);
}

/* GET_VRING_BASE: the ring is stopped; the base it reports. */
static uint32_t
get_base(struct t *t, uint32_t i)
{
	struct vhu_vring_state s = { i, 0 };

	ASSERT_OK(call_ok(t, VHU_GET_VRING_BASE, &s, 8, NULL, 0));
	ASSERT_EQ(reply(t, VHU_GET_VRING_BASE, &s, sizeof(s)), 8);
	ASSERT_EQ(s.index, i);
	ASSERT(!vhu_conn_ring(t->c, i)->started);
	ASSERT_EQ(vhu_conn_ring(t->c, i)->kick, -1);
	return s.num;
}

static void
set_ring(struct t *t, uint32_t i, uint32_t num, uint32_t base)
{
	struct vhu_vring_state s = { i, num };
	struct vhu_vring_addr a = { .index = i,
				    .desc_user_addr = UA0 + i * 0x4000ull,
				    .avail_user_addr = UA0 + i * 0x4000ull + 0x1000,
				    .used_user_addr = UA0 + i * 0x4000ull + 0x2000 };
	uint64_t kick = i;
	int efd = eventfd(0, EFD_CLOEXEC);

	ASSERT_OK(call_ok(t, VHU_SET_VRING_NUM, &s, 8, NULL, 0));
	s.num = base;
	ASSERT_OK(call_ok(t, VHU_SET_VRING_BASE, &s, 8, NULL, 0));
	ASSERT_OK(call_ok(t, VHU_SET_VRING_ADDR, &a, sizeof(a), NULL, 0));
	ASSERT_OK(call_ok(t, VHU_SET_VRING_KICK, &kick, 8, &efd, 1));
	close(efd);
	no_reply(t);
}

TEST(vhost_vsock_sequence)
{
	struct vhu_config cfg = { .offset = 0, .size = 8 };
	uint64_t features = 0x140000000ull | F_VSOCK_SEQPACKET;
	struct vhu_mem_table mt;
	int base_fds = th_count_fds(), fds[2];
	uint8_t *a;
	struct t t;

	t_open(&t);
	negotiate(&t, 0x209);
	ASSERT_OK(call_ok(&t, VHU_GET_QUEUE_NUM, NULL, 0, NULL, 0));
	ASSERT_EQ(reply_u64(&t, VHU_GET_QUEUE_NUM), 3);
	ASSERT_OK(call_ok(&t, VHU_SET_OWNER, NULL, 0, NULL, 0));
	for (uint64_t i = 0; i < 3; i++)
		set_call(&t, i);
	ASSERT_OK(call_ok(&t, VHU_GET_CONFIG, &cfg, VHU_CONFIG_HDR + 8, NULL, 0));
	memset(&cfg, 0, sizeof(cfg));
	ASSERT_EQ(reply(&t, VHU_GET_CONFIG, &cfg, sizeof(cfg)), VHU_CONFIG_HDR + 8);
	ASSERT_EQ(cfg.size, 8);
	uint64_t cid;
	memcpy(&cid, cfg.data, sizeof(cid)); /* the payload is not 8-byte aligned */
	ASSERT_EQ(cid, 42);
	ASSERT_OK(call_ok(&t, VHU_SET_FEATURES, &features, 8, NULL, 0));
	ASSERT_EQ(vhu_conn_features(t.c), features);
	two_regions(&mt, fds);
	ASSERT_OK(call_ok(&t, VHU_SET_MEM_TABLE, &mt, 8 + 2 * 32, fds, 2));
	a = mmap(NULL, REGION, PROT_READ | PROT_WRITE, MAP_SHARED, fds[0], 0);
	ASSERT(a != MAP_FAILED);
	close(fds[0]);
	close(fds[1]);
	ASSERT_EQ(vhu_conn_mem(t.c)->n, 2);
	for (uint32_t i = 0; i < 3; i++) {
		const struct vhu_ring *r = vhu_conn_ring(t.c, i);

		set_ring(&t, i, 256, 7 + i);
		ASSERT(!r->started); /* protocol features: disabled until enabled */
		set_enable(&t, i, 1);
		ASSERT(r->started);
		ASSERT_EQ(t.dev.started[i], 1);
		a[i * 0x4000 + 0x2000] = (uint8_t)(0x55 + i);
		ASSERT_EQ(((uint8_t *)r->used)[0], 0x55 + i);
		a[i * 0x4000] = 0x11;
		ASSERT_EQ(((uint8_t *)r->desc)[0], 0x11);
	}
	for (uint32_t i = 0; i < 3; i++) {
		ASSERT_EQ(get_base(&t, i), 7 + i);
		ASSERT_EQ(t.dev.stopped[i], 1);
	}
	no_reply(&t);
	munmap(a, REGION);
	t_close(&t);
	ASSERT_EQ(th_count_fds(), base_fds);
}

TEST(vhost_translate)
{
	struct vhu_mem_region w[2] = { { 0, REGION, UA0, 0 }, { REGION, REGION, UA1, 4096 } };
	int fds[2] = { memfd(REGION), memfd(REGION + 4096) };
	struct vhu_mem m;
	uint8_t *b0, *b1;

	vhu_mem_init(&m);
	ASSERT_OK(vhu_mem_set(&m, w, 2, fds));
	b0 = vhu_mem_gpa(&m, 0, 1);
	b1 = vhu_mem_gpa(&m, REGION, 1);
	ASSERT(b0 && b1);
	ASSERT(vhu_mem_gpa(&m, 0, REGION) == b0);
	ASSERT(vhu_mem_gpa(&m, REGION - 1, 1) == b0 + REGION - 1);
	ASSERT(vhu_mem_gpa(&m, REGION - 8, 16) == NULL); /* straddles two regions */
	ASSERT(vhu_mem_gpa(&m, 0, REGION + 1) == NULL);
	ASSERT(vhu_mem_gpa(&m, 2 * REGION, 1) == NULL);
	ASSERT(vhu_mem_gpa(&m, 2 * REGION - 1, 1) == b1 + REGION - 1);
	ASSERT(vhu_mem_gpa(&m, 16, 0) == NULL);
	ASSERT(vhu_mem_gpa(&m, 16, UINT64_MAX) == NULL);
	ASSERT(vhu_mem_gpa(&m, UINT64_MAX - 1, 4) == NULL);
	ASSERT(vhu_mem_gpa(&m, REGION + 16, UINT64_MAX - 8) == NULL);
	ASSERT(vhu_mem_uva(&m, UA1 + 8, 8) == b1 + 8);
	ASSERT(vhu_mem_uva(&m, UA0 - 1, 2) == NULL);
	ASSERT(vhu_mem_uva(&m, UA0 + REGION - 4, 8) == NULL);
	ASSERT(vhu_mem_uva(&m, 0, 1) == NULL);
	/* Region 1 maps its file from mmap_offset 4096. */
	ASSERT_EQ(pwrite(fds[1], "x", 1, 4096 + 3), 1);
	ASSERT_EQ(b1[3], 'x');
	vhu_mem_clear(&m);
	ASSERT(vhu_mem_gpa(&m, 0, 1) == NULL);
	close(fds[0]);
	close(fds[1]);
}

TEST(vhost_mem_table_checks)
{
	struct vhu_mem_region ok[1] = { { 0, REGION, UA0, 0 } };
	struct vhu_mem_region w[9];
	int fds[9];
	struct vhu_mem m;
	uint8_t *old;

	for (int i = 0; i < 9; i++)
		fds[i] = memfd(REGION);
	vhu_mem_init(&m);
	ASSERT_OK(vhu_mem_set(&m, ok, 1, fds));
	old = vhu_mem_gpa(&m, 0, 1);
	for (uint32_t i = 0; i < 9; i++)
		w[i] = (struct vhu_mem_region){ i * REGION, REGION, UA0 + i * REGION, 0 };
	ASSERT_EQ(vhu_mem_set(&m, w, 9, fds), -E2BIG);
	w[1].guest_phys_addr = REGION / 2; /* overlaps region 0 */
	ASSERT_EQ(vhu_mem_set(&m, w, 2, fds), -EINVAL);
	w[1].guest_phys_addr = REGION;
	w[1].userspace_addr = UA0; /* overlaps in userspace addresses */
	ASSERT_EQ(vhu_mem_set(&m, w, 2, fds), -EINVAL);
	w[1].userspace_addr = UA0 + REGION;
	w[1].memory_size = 0;
	ASSERT_EQ(vhu_mem_set(&m, w, 2, fds), -EINVAL);
	w[1].memory_size = REGION;
	w[1].guest_phys_addr = UINT64_MAX - 100;
	ASSERT_EQ(vhu_mem_set(&m, w, 2, fds), -EOVERFLOW);
	w[1].guest_phys_addr = REGION;
	w[1].userspace_addr = UINT64_MAX - 100;
	ASSERT_EQ(vhu_mem_set(&m, w, 2, fds), -EOVERFLOW);
	w[1].userspace_addr = UA0 + REGION;
	w[1].mmap_offset = UINT64_MAX - 100;
	ASSERT_EQ(vhu_mem_set(&m, w, 2, fds), -EOVERFLOW);
	w[1].mmap_offset = 4096; /* past the end of a 64 KiB file */
	ASSERT_EQ(vhu_mem_set(&m, w, 2, fds), -EINVAL);
	/* Every refusal kept the old table. */
	ASSERT_EQ(m.n, 1);
	ASSERT(vhu_mem_gpa(&m, 0, 1) == old);
	w[1].mmap_offset = 0;
	ASSERT_OK(vhu_mem_set(&m, w, 8, fds));
	ASSERT_EQ(m.n, 8);
	ASSERT(vhu_mem_gpa(&m, 7 * REGION, REGION) != NULL);
	vhu_mem_clear(&m);
	for (int i = 0; i < 9; i++)
		close(fds[i]);
}

/* One message on a fresh connection: what vhu_conn_process says. */
static int
one(uint32_t req, uint32_t flags, const void *p, uint32_t size, int nfds)
{
	int fds[VHU_MAX_FDS + 2];
	struct t t;
	int r;

	for (int i = 0; i < nfds; i++)
		fds[i] = eventfd(0, EFD_CLOEXEC);
	t_open(&t);
	r = call(&t, req, flags, p, size, fds, nfds);
	for (int i = 0; i < nfds; i++)
		close(fds[i]);
	t_close(&t);
	return r;
}

TEST(vhost_malformed)
{
	int base_fds = th_count_fds();
	struct vhu_vring_state s = { 0, 256 };
	uint8_t big[64] = { 0 };
	uint64_t v = 0;
	struct t t;

	ASSERT_EQ(one(VHU_SET_FEATURES, VHU_VERSION, &v, 4, 0), -EBADMSG);
	ASSERT_EQ(one(VHU_GET_FEATURES, VHU_VERSION, &v, 8, 0), -EBADMSG);
	ASSERT_EQ(one(VHU_SET_VRING_NUM, VHU_VERSION, &s, 8, 1), -EBADMSG);
	ASSERT_EQ(one(VHU_SET_VRING_CALL, VHU_VERSION, &v, 8, 0), -EBADMSG);
	v = VHU_VRING_NOFD;
	ASSERT_EQ(one(VHU_SET_VRING_CALL, VHU_VERSION, &v, 8, 1), -EBADMSG);
	ASSERT_OK(one(VHU_SET_VRING_CALL, VHU_VERSION, &v, 8, 0));
	v = 1ull << 9;
	ASSERT_EQ(one(VHU_SET_VRING_CALL, VHU_VERSION, &v, 8, 1), -EINVAL);
	v = 5; /* ring 5 of 3 */
	ASSERT_EQ(one(VHU_SET_VRING_KICK, VHU_VERSION, &v, 8, 1), -ERANGE);
	ASSERT_EQ(one(99, VHU_VERSION, NULL, 0, 0), -ENOSYS);
	ASSERT_EQ(one(0, VHU_VERSION, NULL, 0, 0), -ENOSYS);
	ASSERT_EQ(one(VHU_SET_OWNER, 0, NULL, 0, 0), -EPROTO);	 /* version 0 */
	ASSERT_EQ(one(VHU_SET_OWNER, 2, NULL, 0, 0), -EPROTO);	 /* version 2 */
	ASSERT_EQ(one(VHU_SET_OWNER, 0x5, NULL, 0, 0), -EPROTO); /* REPLY on a request */
	ASSERT_EQ(one(VHU_SET_OWNER, 0x101, NULL, 0, 0), -EPROTO);
	ASSERT_EQ(one(VHU_SET_OWNER, VHU_VERSION, NULL, 0, VHU_MAX_FDS + 1), -EPROTO);
	s.num = 3;
	ASSERT_EQ(one(VHU_SET_VRING_NUM, VHU_VERSION, &s, 8, 0), -EINVAL);
	s.num = 65536;
	ASSERT_EQ(one(VHU_SET_VRING_NUM, VHU_VERSION, &s, 8, 0), -EINVAL);
	s.num = 32768;
	ASSERT_OK(one(VHU_SET_VRING_NUM, VHU_VERSION, &s, 8, 0));
	/* GET_CONFIG before CONFIG was negotiated. */
	ASSERT_EQ(one(VHU_GET_CONFIG, VHU_VERSION, big, VHU_CONFIG_HDR, 0), -ENOTSUP);
	/* SET_MEM_TABLE: nregions disagreeing with the size; fds with the count. */
	big[0] = 2;
	ASSERT_EQ(one(VHU_SET_MEM_TABLE, VHU_VERSION, big, 8 + 32, 1), -EBADMSG);
	big[0] = 1;
	ASSERT_EQ(one(VHU_SET_MEM_TABLE, VHU_VERSION, big, 8 + 32, 2), -EBADMSG);

	/* A payload larger than the buffer fails on the header alone. */
	t_open(&t);
	{
		struct vhu_hdr h = { VHU_SET_CONFIG, VHU_VERSION, VHU_MAX_PAYLOAD + 1 };

		send_raw(t.fe, &h, sizeof(h), NULL, 0);
		ASSERT_EQ(vhu_conn_process(t.c), -EMSGSIZE);
	}
	t_close(&t);
	/* End of stream between messages, and inside one. */
	t_open(&t);
	shutdown(t.fe, SHUT_WR);
	ASSERT_EQ(vhu_conn_process(t.c), -ENOTCONN);
	t_close(&t);
	t_open(&t);
	send_raw(t.fe, "\x01\x00\x00", 3, NULL, 0);
	ASSERT_OK(vhu_conn_process(t.c));
	shutdown(t.fe, SHUT_WR);
	ASSERT_EQ(vhu_conn_process(t.c), -ECONNRESET);
	t_close(&t);
	/* Every descriptor sent with a refused message was closed. */
	ASSERT_EQ(th_count_fds(), base_fds);
}

TEST(vhost_split_writes)
{
	uint8_t buf[sizeof(struct vhu_hdr) + 128];
	struct vhu_mem_table mt;
	int fds[2];
	size_t len;
	struct t t;

	t_open(&t);
	len = build(buf, VHU_GET_FEATURES, VHU_VERSION, NULL, 0);
	for (size_t i = 0; i < len; i++) {
		send_raw(t.fe, buf + i, 1, NULL, 0);
		ASSERT_OK(vhu_conn_process(t.c));
		if (i + 1 < len)
			no_reply(&t);
	}
	ASSERT_EQ(reply_u64(&t, VHU_GET_FEATURES) & VHU_F_PROTOCOL_FEATURES,
		  VHU_F_PROTOCOL_FEATURES);
	/* The descriptors travel with the first byte, as sendmsg puts them. */
	two_regions(&mt, fds);
	len = build(buf, VHU_SET_MEM_TABLE, VHU_VERSION, &mt, 8 + 2 * 32);
	for (size_t i = 0; i < len; i++) {
		send_raw(t.fe, buf + i, 1, fds, i == 0 ? 2 : 0);
		ASSERT_OK(vhu_conn_process(t.c));
		ASSERT_EQ(vhu_conn_mem(t.c)->n, i + 1 < len ? 0u : 2u);
	}
	/* Two messages in one write are both handled. */
	len = build(buf, VHU_GET_QUEUE_NUM, VHU_VERSION, NULL, 0);
	len += build(buf + len, VHU_GET_PROTOCOL_FEATURES, VHU_VERSION, NULL, 0);
	send_raw(t.fe, buf, len, NULL, 0);
	ASSERT_OK(vhu_conn_process(t.c));
	ASSERT_EQ(reply_u64(&t, VHU_GET_QUEUE_NUM), 3);
	ASSERT_EQ(reply_u64(&t, VHU_GET_PROTOCOL_FEATURES), VHU_PROTO_OFFERED);
	close(fds[0]);
	close(fds[1]);
	t_close(&t);
}

TEST(vhost_reply_ack)
{
	struct vhu_vring_state s = { 0, 3 };
	uint32_t nr = VHU_VERSION | VHU_FLAG_NEED_REPLY;
	uint64_t v;
	struct t t;

	/* Without REPLY_ACK negotiated, NEED_REPLY gets no answer. */
	t_open(&t);
	negotiate(&t, VHU_PROTO_F_MQ);
	ASSERT_OK(call(&t, VHU_SET_OWNER, nr, NULL, 0, NULL, 0));
	no_reply(&t);
	ASSERT_EQ(call(&t, VHU_SET_VRING_NUM, nr, &s, 8, NULL, 0), -EINVAL);
	t_close(&t);

	t_open(&t);
	negotiate(&t, 0x209);
	ASSERT_OK(call(&t, VHU_SET_OWNER, nr, NULL, 0, NULL, 0));
	ASSERT_EQ(reply_u64(&t, VHU_SET_OWNER), 0);
	ASSERT_EQ(call(&t, VHU_SET_OWNER, VHU_VERSION, NULL, 0, NULL, 0), -EBUSY);
	t_close(&t);

	t_open(&t);
	negotiate(&t, 0x209);
	/* Refusals are answered and the connection goes on. */
	ASSERT_OK(call(&t, VHU_SET_VRING_NUM, nr, &s, 8, NULL, 0));
	ASSERT_EQ(reply_u64(&t, VHU_SET_VRING_NUM), EINVAL);
	ASSERT_OK(call(&t, 77, nr, "abcd", 4, NULL, 0));
	ASSERT_EQ(reply_u64(&t, 77), ENOSYS);
	v = 0;
	ASSERT_OK(call(&t, VHU_SET_VRING_CALL, nr, &v, 8, NULL, 0)); /* missing fd */
	ASSERT_EQ(reply_u64(&t, VHU_SET_VRING_CALL), EBADMSG);
	v = 1ull << 40;
	ASSERT_OK(call(&t, VHU_SET_FEATURES, nr, &v, 8, NULL, 0));
	ASSERT_EQ(reply_u64(&t, VHU_SET_FEATURES), ENOTSUP);
	s.num = 128;
	ASSERT_OK(call(&t, VHU_SET_VRING_NUM, nr, &s, 8, NULL, 0));
	ASSERT_EQ(reply_u64(&t, VHU_SET_VRING_NUM), 0);
	ASSERT_EQ(vhu_conn_ring(t.c, 0)->num, 128);
	/* Requests with a reply of their own answer with it, not an ack. */
	ASSERT_OK(call(&t, VHU_GET_QUEUE_NUM, nr, NULL, 0, NULL, 0));
	ASSERT_EQ(reply_u64(&t, VHU_GET_QUEUE_NUM), 3);
	no_reply(&t);
	/* Without NEED_REPLY a refusal still fails the connection. */
	s.num = 5;
	ASSERT_EQ(call(&t, VHU_SET_VRING_NUM, VHU_VERSION, &s, 8, NULL, 0), -EINVAL);
	t_close(&t);
}

TEST(vhost_ring_rules)
{
	uint64_t features = 0x140000000ull, kick = 0;
	struct vhu_vring_state s = { 0, 256 };
	struct vhu_vring_addr a = { .index = 0,
				    .desc_user_addr = UA0,
				    .avail_user_addr = UA0 + 0x1000,
				    .used_user_addr = UA0 + 0x2000 };
	struct vhu_mem_table mt;
	int fds[2], efd;
	struct t t;

	t_open(&t);
	negotiate(&t, 0x209);
	ASSERT_OK(call_ok(&t, VHU_SET_FEATURES, &features, 8, NULL, 0));
	two_regions(&mt, fds);
	ASSERT_OK(call_ok(&t, VHU_SET_MEM_TABLE, &mt, 8 + 2 * 32, fds, 2));
	ASSERT_OK(call_ok(&t, VHU_SET_VRING_NUM, &s, 8, NULL, 0));
	ASSERT_OK(call_ok(&t, VHU_SET_VRING_ADDR, &a, sizeof(a), NULL, 0));
	ASSERT_OK(call_ok(&t, VHU_SET_VRING_KICK, &kick, 8, &fds[0], 1));
	s.num = 1;
	ASSERT_OK(call_ok(&t, VHU_SET_VRING_ENABLE, &s, 8, NULL, 0));
	ASSERT(vhu_conn_ring(t.c, 0)->started);
	/* A new kick replaces the old one: stopped and started around it. */
	efd = eventfd(0, EFD_CLOEXEC);
	ASSERT_OK(call_ok(&t, VHU_SET_VRING_KICK, &kick, 8, &efd, 1));
	close(efd);
	ASSERT_EQ(t.dev.stopped[0], 1);
	ASSERT_EQ(t.dev.started[0], 2);
	/* A new memory table re-translates the started ring. */
	ASSERT_OK(call_ok(&t, VHU_SET_MEM_TABLE, &mt, 8 + 2 * 32, fds, 2));
	ASSERT_EQ(t.dev.started[0], 3);
	/* Running rings' size and addresses cannot change. */
	s.num = 128;
	ASSERT_EQ(call_ok(&t, VHU_SET_VRING_NUM, &s, 8, NULL, 0), -EBUSY);
	t_close(&t);

	/* Areas outside memory, or crossing a region's end, do not start. */
	t_open(&t);
	ASSERT_OK(call_ok(&t, VHU_SET_MEM_TABLE, &mt, 8 + 2 * 32, fds, 2));
	s.num = 256;
	ASSERT_OK(call_ok(&t, VHU_SET_VRING_NUM, &s, 8, NULL, 0));
	a.used_user_addr = UA0 + REGION - 0x100; /* 6 + 8 * 256 bytes do not fit */
	ASSERT_OK(call_ok(&t, VHU_SET_VRING_ADDR, &a, sizeof(a), NULL, 0));
	ASSERT_EQ(call_ok(&t, VHU_SET_VRING_KICK, &kick, 8, &fds[0], 1), -EFAULT);
	ASSERT(!vhu_conn_ring(t.c, 0)->started);
	t_close(&t);
	t_open(&t);
	a.used_user_addr = UA0 + 0x2001; /* misaligned */
	ASSERT_EQ(call_ok(&t, VHU_SET_VRING_ADDR, &a, sizeof(a), NULL, 0), -EINVAL);
	t_close(&t);
	close(fds[0]);
	close(fds[1]);
}

TEST(vhost_config_and_reset)
{
	uint32_t nr = VHU_VERSION | VHU_FLAG_NEED_REPLY;
	struct vhu_config cfg = { .offset = 4, .size = 4 };
	uint64_t features = 0x140000000ull;
	struct vhu_mem_table mt;
	int base_fds = th_count_fds(), fds[2];
	struct t t;

	t_open(&t);
	t.dev.cid = 0x1122334455667788ull;
	negotiate(&t, 0x209);
	ASSERT_OK(call_ok(&t, VHU_GET_CONFIG, &cfg, VHU_CONFIG_HDR + 4, NULL, 0));
	ASSERT_EQ(reply(&t, VHU_GET_CONFIG, &cfg, sizeof(cfg)), VHU_CONFIG_HDR + 4);
	ASSERT_EQ(cfg.offset, 4);
	ASSERT_EQ(*(uint32_t *)(void *)cfg.data, 0x11223344u);
	/* No set_config in the device: refused, and acknowledged as such. */
	ASSERT_OK(call(&t, VHU_SET_CONFIG, nr, &cfg, VHU_CONFIG_HDR + 4, NULL, 0));
	ASSERT_EQ(reply_u64(&t, VHU_SET_CONFIG), ENOTSUP);
	/* Start a ring, then RESET_OWNER stops it and drops everything. */
	ASSERT_OK(call_ok(&t, VHU_SET_OWNER, NULL, 0, NULL, 0));
	ASSERT_OK(call_ok(&t, VHU_SET_FEATURES, &features, 8, NULL, 0));
	two_regions(&mt, fds);
	ASSERT_OK(call_ok(&t, VHU_SET_MEM_TABLE, &mt, 8 + 2 * 32, fds, 2));
	close(fds[0]);
	close(fds[1]);
	set_ring(&t, 1, 64, 0);
	set_enable(&t, 1, 1);
	ASSERT(vhu_conn_ring(t.c, 1)->started);
	ASSERT_OK(call(&t, VHU_RESET_OWNER, nr, NULL, 0, NULL, 0));
	ASSERT_EQ(reply_u64(&t, VHU_RESET_OWNER), 0);
	ASSERT_EQ(t.dev.stopped[1], 1);
	ASSERT(!vhu_conn_ring(t.c, 1)->started);
	ASSERT_EQ(vhu_conn_ring(t.c, 1)->kick, -1);
	ASSERT_EQ(vhu_conn_mem(t.c)->n, 0);
	ASSERT_EQ(vhu_conn_features(t.c), 0);
	ASSERT_OK(call_ok(&t, VHU_SET_OWNER, NULL, 0, NULL, 0));
	/* A config range the device refuses fails the connection (GET has a reply). */
	cfg.offset = 0;
	cfg.size = 16;
	ASSERT_EQ(call_ok(&t, VHU_GET_CONFIG, &cfg, VHU_CONFIG_HDR + 16, NULL, 0), -EINVAL);
	t_close(&t);
	ASSERT_EQ(th_count_fds(), base_fds);
}

/* ---- QEMU 7.2's vhost-user netdev, queues=2 ---- */

/* What QEMU keeps of the protocol features offered (it has no use for CONFIG). */
#define NETDEV_PROTO (VHU_PROTO_F_MQ | VHU_PROTO_F_REPLY_ACK)
#define NEED_REPLY   (VHU_VERSION | VHU_FLAG_NEED_REPLY)

/*
 * vhost_dev_init() of pair @pair's vhost device. Every pair's device
 * negotiates on the one connection; SET_OWNER and GET_QUEUE_NUM, which QEMU
 * sends once per connection, come from the first pair's only. Each ring
 * gets a call descriptor (QEMU's masked notifier) at once.
 */
static void
netdev_init(struct t *t, uint32_t pair)
{
	negotiate(t, NETDEV_PROTO);
	if (pair == 0) {
		ASSERT_OK(call_ok(t, VHU_GET_QUEUE_NUM, NULL, 0, NULL, 0));
		/* Virtqueues, not pairs: QEMU checks that queues=2 is not more. */
		ASSERT_EQ(reply_u64(t, VHU_GET_QUEUE_NUM), 4);
		ASSERT_OK(call_ok(t, VHU_SET_OWNER, NULL, 0, NULL, 0));
	}
	ASSERT_OK(call_ok(t, VHU_GET_FEATURES, NULL, 0, NULL, 0));
	ASSERT_EQ(reply_u64(t, VHU_GET_FEATURES), VHU_F_PROTOCOL_FEATURES | net_ops.features);
	set_call(t, 2 * pair);
	set_call(t, 2 * pair + 1);
	ASSERT_EQ(vhu_conn_protocol_features(t->c), NETDEV_PROTO);
	no_reply(t);
}

/* virtio-net's peer_attach() / peer_detach(): both rings of a pair. */
static void
netdev_enable(struct t *t, uint32_t pair, uint32_t on)
{
	set_enable(t, 2 * pair, on);
	set_enable(t, 2 * pair + 1, on);
}

/*
 * Guest RAM as QEMU describes one memory backend with a hole in it (a PC's
 * RAM below and above the legacy VGA window): two regions of one memfd,
 * the second from its own offset in the file, the descriptor sent once per
 * region. The rings lie in the first.
 */
static int
netdev_memory(struct vhu_mem_table *mt)
{
	memset(mt, 0, sizeof(*mt));
	mt->nregions = 2;
	mt->regions[0] = (struct vhu_mem_region){ 0, REGION, UA0, 0 };
	mt->regions[1] =
	    (struct vhu_mem_region){ 2 * REGION, REGION, UA0 + 2 * REGION, 2 * REGION };
	return memfd(3 * REGION);
}

/*
 * vhost_dev_start() of pair @pair at DRIVER_OK, after vhost_net_start()
 * restored the pair's enable state if it was enabled: SET_FEATURES; the
 * memory table from the first pair only, with NEED_REPLY; per ring
 * SET_VRING_NUM, _BASE (@base + ring), _ADDR, _KICK, then _CALL with the
 * guest notifier (vectors=0: no MSI-X, so never VHU_VRING_NOFD).
 */
static void
netdev_start(struct t *t, uint32_t pair, const struct vhu_mem_table *mt, int mfd, uint32_t base)
{
	uint64_t features = VHU_F_PROTOCOL_FEATURES | net_ops.features;
	int fds[2] = { mfd, mfd };

	ASSERT_OK(call_ok(t, VHU_SET_FEATURES, &features, 8, NULL, 0));
	if (pair == 0) {
		ASSERT_OK(call(t, VHU_SET_MEM_TABLE, NEED_REPLY, mt, 8 + 2 * 32, fds, 2));
		ASSERT_EQ(reply_u64(t, VHU_SET_MEM_TABLE), 0);
	}
	for (uint32_t i = 2 * pair; i < 2 * pair + 2; i++) {
		const struct vhu_ring *r = vhu_conn_ring(t->c, i);
		int started = t->dev.started[i], efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		uint64_t idx = i, v = 1;

		set_ring(t, i, 256, base + i);
		/* An enabled ring starts with its kick, before its call descriptor... */
		ASSERT_EQ(r->started, r->enabled);
		ASSERT_EQ(t->dev.started[i], started + r->enabled);
		ASSERT_OK(call_ok(t, VHU_SET_VRING_CALL, &idx, 8, &efd, 1));
		/* ...which changes under the running ring (the device reads it to signal). */
		ASSERT_EQ(t->dev.started[i], started + r->enabled);
		ASSERT_EQ(write(r->call, &v, sizeof(v)), (ssize_t)sizeof(v));
		ASSERT_EQ(read(efd, &v, sizeof(v)), (ssize_t)sizeof(v));
		ASSERT_EQ(v, 1);
		close(efd);
	}
	no_reply(t);
}

/* The frontend goes away: what the server says, and the connection freed. */
static void
t_hangup(struct t *t, int expect)
{
	close(t->fe);
	ASSERT_EQ(vhu_conn_process(t->c), expect);
	vhu_conn_free(t->c);
}

TEST(vhost_netdev_sequence)
{
	int base_fds = th_count_fds(), mfd;
	struct vhu_mem_table mt;
	const uint8_t *p;
	struct t t;

	t_open_dev(&t, &net_ops);
	netdev_init(&t, 0);
	netdev_init(&t, 1);
	/* Features acked, MQ among them: one pair in use until the guest asks. */
	netdev_enable(&t, 0, 1);
	netdev_enable(&t, 1, 0);
	/* DRIVER_OK: vhost_net_start(), pair by pair. */
	mfd = netdev_memory(&mt);
	netdev_enable(&t, 0, 1);
	netdev_start(&t, 0, &mt, mfd, 0);
	ASSERT_EQ(vhu_conn_mem(t.c)->n, 2);
	ASSERT_EQ(pwrite(mfd, "q", 1, 2 * REGION + 5), 1);
	p = vhu_mem_uva(vhu_conn_mem(t.c), UA0 + 2 * REGION + 5, 1);
	ASSERT(p && *p == 'q');
	ASSERT(vhu_mem_gpa(vhu_conn_mem(t.c), 2 * REGION + 5, 1) == p);
	ASSERT(vhu_mem_gpa(vhu_conn_mem(t.c), REGION, 1) == NULL); /* the hole */
	netdev_start(&t, 1, &mt, mfd, 0);
	/* The second SET_FEATURES left the first pair running; the second is off. */
	ASSERT_EQ(vhu_conn_features(t.c), VHU_F_PROTOCOL_FEATURES | net_ops.features);
	for (uint32_t i = 0; i < 4; i++) {
		ASSERT_EQ(vhu_conn_ring(t.c, i)->started, i < 2);
		ASSERT_EQ(t.dev.started[i], i < 2);
		ASSERT_EQ(t.dev.stopped[i], 0);
	}
	/* The guest sets two pairs on its control queue: QEMU enables the second. */
	netdev_enable(&t, 1, 1);
	ASSERT_EQ(t.dev.started[2], 1);
	ASSERT_EQ(t.dev.started[3], 1);
	/* Back to one: rings 2 and 3 stop where the device was. */
	t.dev.consumed[2] = 4;
	netdev_enable(&t, 1, 0);
	ASSERT_EQ(t.dev.stopped[2], 1);
	ASSERT_EQ(t.dev.stopped[3], 1);
	ASSERT_EQ(vhu_conn_ring(t.c, 2)->last_avail, 2 + 4);
	/* vhost_net_stop(): GET_VRING_BASE for every ring set up, running or not. */
	t.dev.consumed[0] = 5;
	ASSERT_EQ(get_base(&t, 0), 0 + 5);
	ASSERT_EQ(get_base(&t, 1), 1);
	ASSERT_EQ(get_base(&t, 2), 2 + 4);
	ASSERT_EQ(get_base(&t, 3), 3);
	for (uint32_t i = 0; i < 4; i++) {
		ASSERT_EQ(t.dev.started[i], 1);
		ASSERT_EQ(t.dev.stopped[i], 1);
	}
	no_reply(&t);
	/* The guest reloads its driver: features, then a start from QEMU's bases. */
	netdev_enable(&t, 0, 1);
	netdev_enable(&t, 1, 0);
	netdev_enable(&t, 0, 1);
	netdev_start(&t, 0, &mt, mfd, 40);
	netdev_start(&t, 1, &mt, mfd, 40);
	for (uint32_t i = 0; i < 4; i++)
		ASSERT_EQ(t.dev.started[i], 1 + (i < 2));
	ASSERT_EQ(get_base(&t, 1), 41);
	ASSERT_EQ(t.dev.stopped[1], 2);
	t_close(&t);
	ASSERT_EQ(t.dev.stopped[0], 2);
	ASSERT_EQ(t.dev.stopped[2], 1);
	close(mfd);
	ASSERT_EQ(th_count_fds(), base_fds);
}

TEST(vhost_netdev_refusals)
{
	struct vhu_vring_state s = { 0, 1 };
	int base_fds = th_count_fds(), mfd, efd[3], n;
	uint64_t v = 0x209, kick = 0;
	struct vhu_mem_table mt;
	struct t t;

	/* No config space: CONFIG is neither offered nor accepted. */
	t_open_dev(&t, &net_ops);
	ASSERT_OK(call_ok(&t, VHU_GET_PROTOCOL_FEATURES, NULL, 0, NULL, 0));
	ASSERT_EQ(reply_u64(&t, VHU_GET_PROTOCOL_FEATURES), NETDEV_PROTO);
	ASSERT_EQ(call_ok(&t, VHU_SET_PROTOCOL_FEATURES, &v, 8, NULL, 0), -ENOTSUP);
	t_close(&t);

	t_open_dev(&t, &net_ops);
	mfd = netdev_memory(&mt);
	netdev_init(&t, 0);
	netdev_init(&t, 1);
	netdev_enable(&t, 0, 1);
	netdev_start(&t, 0, &mt, mfd, 0);
	for (int i = 0; i < 3; i++)
		efd[i] = eventfd(0, EFD_CLOEXEC);
	n = th_count_fds();
	/* Requests the server does not know (33, with a descriptor, and 40): refused by ack. */
	ASSERT_OK(call(&t, 33, NEED_REPLY, NULL, 0, efd, 1));
	ASSERT_EQ(reply_u64(&t, 33), ENOSYS);
	ASSERT_OK(call(&t, 40, NEED_REPLY, NULL, 0, NULL, 0));
	ASSERT_EQ(reply_u64(&t, 40), ENOSYS);
	/* Descriptor counts that disagree with the payload, on running rings. */
	ASSERT_OK(call(&t, VHU_SET_MEM_TABLE, NEED_REPLY, &mt, 8 + 2 * 32, efd, 1));
	ASSERT_EQ(reply_u64(&t, VHU_SET_MEM_TABLE), EBADMSG);
	ASSERT_OK(call(&t, VHU_SET_MEM_TABLE, NEED_REPLY, &mt, 8 + 2 * 32, efd, 3));
	ASSERT_EQ(reply_u64(&t, VHU_SET_MEM_TABLE), EBADMSG);
	ASSERT_OK(call(&t, VHU_SET_VRING_KICK, NEED_REPLY, &kick, 8, efd, 2));
	ASSERT_EQ(reply_u64(&t, VHU_SET_VRING_KICK), EBADMSG);
	v = VHU_VRING_NOFD | 1;
	ASSERT_OK(call(&t, VHU_SET_VRING_CALL, NEED_REPLY, &v, 8, efd, 1));
	ASSERT_EQ(reply_u64(&t, VHU_SET_VRING_CALL), EBADMSG);
	ASSERT_OK(call(&t, VHU_SET_VRING_ENABLE, NEED_REPLY, &s, 8, efd, 1));
	ASSERT_EQ(reply_u64(&t, VHU_SET_VRING_ENABLE), EBADMSG);
	/* Nothing changed, and every descriptor sent with a refusal was closed. */
	ASSERT_EQ(vhu_conn_mem(t.c)->n, 2);
	ASSERT_GE(vhu_conn_ring(t.c, 0)->kick, 0);
	ASSERT_GE(vhu_conn_ring(t.c, 1)->call, 0);
	for (uint32_t i = 0; i < 4; i++) {
		ASSERT_EQ(t.dev.started[i], i < 2);
		ASSERT_EQ(t.dev.stopped[i], 0);
	}
	ASSERT_EQ(th_count_fds(), n);
	ASSERT_OK(call_ok(&t, VHU_GET_QUEUE_NUM, NULL, 0, NULL, 0));
	ASSERT_EQ(reply_u64(&t, VHU_GET_QUEUE_NUM), 4);
	no_reply(&t);
	/* A request with a reply of its own is not refused by an ack: the connection fails. */
	s.num = 0;
	ASSERT_EQ(call(&t, VHU_GET_VRING_BASE, NEED_REPLY, &s, 8, efd, 1), -EBADMSG);
	no_reply(&t);
	t_close(&t);
	ASSERT_EQ(t.dev.stopped[0], 1);
	ASSERT_EQ(t.dev.stopped[1], 1);
	/* Unknown requests without NEED_REPLY fail the connection. */
	t_open_dev(&t, &net_ops);
	netdev_init(&t, 0);
	ASSERT_EQ(call_ok(&t, 40, NULL, 0, NULL, 0), -ENOSYS);
	t_close(&t);
	t_open_dev(&t, &net_ops);
	ASSERT_EQ(call_ok(&t, 33, NULL, 0, efd, 1), -ENOSYS);
	t_close(&t);
	for (int i = 0; i < 3; i++)
		close(efd[i]);
	close(mfd);
	ASSERT_EQ(th_count_fds(), base_fds);
}

TEST(vhost_netdev_reconnect)
{
	int base_fds = th_count_fds(), mfd, efd = eventfd(0, EFD_CLOEXEC);
	uint8_t buf[sizeof(struct vhu_hdr) + 8];
	struct vhu_mem_table mt;
	uint64_t idx = 0;
	struct t t;

	t_open_dev(&t, &net_ops);
	mfd = netdev_memory(&mt);
	netdev_init(&t, 0);
	netdev_init(&t, 1);
	netdev_enable(&t, 0, 1);
	netdev_enable(&t, 1, 0);
	netdev_enable(&t, 0, 1);
	netdev_start(&t, 0, &mt, mfd, 0);
	netdev_start(&t, 1, &mt, mfd, 0);
	netdev_enable(&t, 1, 1);
	for (uint32_t i = 0; i < 4; i++)
		ASSERT_EQ(t.dev.started[i], 1);
	/* QEMU goes away in the middle of a message sent with a descriptor. */
	build(buf, VHU_SET_VRING_CALL, VHU_VERSION, &idx, 8);
	send_raw(t.fe, buf, 6, &efd, 1);
	ASSERT_OK(vhu_conn_process(t.c));
	t_hangup(&t, -ECONNRESET);
	for (uint32_t i = 0; i < 4; i++)
		ASSERT_EQ(t.dev.stopped[i], 1);
	ASSERT_EQ(th_count_fds(), base_fds + 2); /* efd and mfd */

	/* reconnect=: a new connection, a new vhost device per pair, gone again. */
	t_connect(&t);
	netdev_init(&t, 0);
	netdev_init(&t, 1);
	t_hangup(&t, -ENOTCONN);
	ASSERT_EQ(th_count_fds(), base_fds + 2);

	/*
	 * The next one gets the whole setup. The guest's driver runs on: no
	 * feature negotiation; vhost_net_start() restores each pair's enable
	 * state (the guest had asked for two) before starting it, from the
	 * used indices QEMU took as bases when it could not ask.
	 */
	t_connect(&t);
	netdev_init(&t, 0);
	netdev_init(&t, 1);
	netdev_enable(&t, 0, 1);
	netdev_start(&t, 0, &mt, mfd, 100);
	netdev_enable(&t, 1, 1);
	netdev_start(&t, 1, &mt, mfd, 100);
	for (uint32_t i = 0; i < 4; i++) {
		ASSERT(vhu_conn_ring(t.c, i)->started);
		ASSERT_EQ(t.dev.started[i], 2);
		ASSERT_EQ(t.dev.stopped[i], 1);
	}
	t.dev.consumed[3] = 2;
	for (uint32_t i = 0; i < 4; i++)
		ASSERT_EQ(get_base(&t, i), 100 + i + (i == 3 ? 2 : 0));
	t_close(&t);
	close(efd);
	close(mfd);
	ASSERT_EQ(th_count_fds(), base_fds);
}
