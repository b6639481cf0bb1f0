/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: emulated NIC ports (src/switch/emu.c), whose input is QEMU's
 * stream netdev: 32-bit big-endian lengths and frames on a socket. The
 * first input byte chooses one of two ways in.
 *
 * The parser alone (first byte even): arbitrary bytes, or frames and bad
 * lengths built from a few input bytes, delivered in reads of arbitrary
 * sizes into a buffer of EMU_BUF bytes as the port does (append what fits,
 * parse, keep the rest). Checked after every emu_parse(): each frame handed
 * on has 1..VSW_FRAME_MAX bytes, lies inside the buffer after its own
 * length, and is the next frame of the stream as a reference parser reads
 * it; the frames' bytes, their lengths (4 each) and the remainder add up
 * to the bytes appended; the remainder is what follows the last frame and
 * holds no whole frame (so the buffer never fills up); -EPROTO comes
 * exactly at a length of 0 or above VSW_FRAME_MAX, and nothing is parsed
 * after it.
 *
 * A real port (first byte odd): a dataplane set up (vsw_dp_init(), a
 * switch and port group from the input) and never started, so that the
 * hooks run here as the dataplane thread would run them (every port's
 * drain, the default queue sorted, every port's flush) and commands run
 * directly; the epoll set the thread would have is made here, because a
 * port's descriptor joins it. An emulated port over a socket pair whose
 * other end plays QEMU (writes of the input's stream, reads of any size,
 * small socket buffers so that writes come short, shutdowns, a close),
 * and a test port on the same port group that injects frames toward it
 * and receives its frames. Checked: the frames the port hands to the
 * switch (seen through the port's mirror hook, which is a capture's: the
 * target sets its own) are exactly the stream's frames in order, all of
 * them once the stream is drained, none after a bad length (which kills
 * the port and is counted); what QEMU reads is exactly the frames the
 * switch gave the port (the mirror hook again), each framed by its
 * length, all of them once the port has flushed, unless the port died;
 * every frame the test port gets is, in order, one the emulated port sent
 * (a VLAN-0 tag removed on a trunk); ASan/UBSan, no leak, no descriptor
 * left open.
 *
 * Input: { u8 mode } then, for a port, { u8 setup[3] } and steps
 * { u8 op, operands } (see step()); for the parser, steps of fuzz_parse().
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "fuzz.h"
#include "switch/emu.h"

#define FZ_STEPS      256
#define FZ_STREAM_MAX (8u << 20) /* what QEMU writes in one input, at most */

static void
check(bool ok)
{
	if (!ok)
		abort();
}

static uint32_t
be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* A growing byte array. */
struct bytes {
	uint8_t *p;
	size_t n, cap;
};

static void
bytes_add(struct bytes *b, const void *p, size_t n)
{
	if (!n)
		return;
	if (b->n + n > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;

		while (cap < b->n + n)
			cap *= 2;
		b->p = realloc(b->p, cap);
		check(b->p != NULL);
		b->cap = cap;
	}
	memcpy(b->p + b->n, p, n);
	b->n += n;
}

/* Append a length in QEMU's framing, then @n bytes of @f. */
static void
bytes_frame(struct bytes *b, const void *f, uint32_t n)
{
	uint8_t l[4] = { (uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n };

	bytes_add(b, l, 4);
	bytes_add(b, f, n);
}

/*
 * A reference parser of QEMU's stream: the state of reading @s from @pos.
 * 1 with the frame at s[*off, *off + *len) and @pos moved past it; 0 when
 * no whole frame is there yet; -1 at a bad length (pos stays on it).
 */
static int
ref_next(const struct bytes *s, size_t *pos, size_t end, size_t *off, uint32_t *len)
{
	uint32_t l;

	if (end - *pos < 4)
		return 0;
	l = be32(s->p + *pos);
	if (l == 0 || l > VSW_FRAME_MAX)
		return -1;
	if (end - *pos - 4 < l)
		return 0;
	*off = *pos + 4;
	*len = l;
	*pos += 4 + (size_t)l;
	return 1;
}

/*
 * Bytes QEMU writes, from the input: raw bytes, a frame (a length and
 * bytes, its first 18 from a few addresses and tags so that the switch
 * forwards some), or a bad length. Appended to @out.
 */
static void
qemu_bytes(struct fz *in, unsigned op, const uint8_t *emu_mac, const uint8_t *t_mac,
	   struct bytes *out)
{
	static uint8_t f[VSW_FRAME_MAX];
	static const uint16_t sizes[] = { 1, 13, 14, 17, 18, 60, 64, 1514, 1518, 1522, 9014, 9018 };
	unsigned kind = (op >> 2) % 4, a = (unsigned)fz_take(in, 1);
	uint32_t len;

	if (kind == 0) { /* raw */
		size_t n = (size_t)fz_take(in, 1) + 1;

		if (n > in->n)
			n = in->n;
		bytes_add(out, in->p, n);
		in->p += n, in->n -= n;
		return;
	}
	if (kind == 1) { /* a bad length, or one that is just right */
		uint32_t l = a & 1   ? 0
			     : a & 2 ? VSW_FRAME_MAX + 1 + (uint32_t)fz_take(in, 1)
			     : a & 4 ? VSW_FRAME_MAX
				     : (uint32_t)fz_take(in, 4);
		uint8_t b[4] = { (uint8_t)(l >> 24), (uint8_t)(l >> 16), (uint8_t)(l >> 8),
				 (uint8_t)l };

		bytes_add(out, b, 4);
		return;
	}
	/* A frame. */
	len = a & 0x80 ? sizes[(a & 0x0f) % 12] : (uint32_t)fz_take(in, 2) % VSW_FRAME_MAX + 1;
	memset(f, (int)(a * 7 + 1), len);
	if (len >= 18) {
		unsigned d = (unsigned)fz_take(in, 1);
		static const uint8_t bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
		uint8_t other[6] = { 0x02, 0, 0, 0, 0x11, (uint8_t)(d >> 4) };

		memcpy(f,
		       d % 4 == 0   ? t_mac
		       : d % 4 == 1 ? bcast
		       : d % 4 == 2 ? emu_mac
				    : other,
		       6);
		memcpy(f + 6, (d >> 2) % 4 == 0 ? emu_mac : other, 6);
		if ((d >> 2) % 4 == 2)
			f[6] = 0x01; /* a multicast source */
		else if ((d >> 2) % 4 == 3)
			memcpy(f + 6, t_mac, 6); /* another port's address */
		f[12] = 0x08, f[13] = 0x00;
		if (a & 0x40) { /* a tag: VID 0, 10, 4095 or any */
			uint16_t vid = a & 0x20 ? (uint16_t)(d & 0xfff) : (a & 0x10 ? 10 : 0);

			f[12] = 0x81, f[13] = 0x00;
			f[14] = (uint8_t)(0xa0 | vid >> 8), f[15] = (uint8_t)vid;
			f[16] = 0x08, f[17] = 0x00;
		}
	}
	bytes_frame(out, f, len);
}

/* ---------------------------------------------------------------------- */
/* The parser alone */

struct pstate {
	struct bytes s; /* what QEMU wrote */
	size_t read;	/* of it, appended to the buffer */
	size_t ref;	/* where the reference parser is */
	uint8_t *buf;	/* EMU_BUF */
	uint32_t len;	/* bytes in it */
	uint64_t appended, handed, frames;
	unsigned calls;	     /* frames this emu_parse() handed on */
	uint32_t len_before; /* the buffer's bytes when it was called */
	bool broken;
};

static void
on_frame(void *ctx, uint8_t *f, uint32_t n)
{
	struct pstate *p = ctx;
	size_t off;
	uint32_t l;

	check(n >= 1 && n <= VSW_FRAME_MAX);
	check(f >= p->buf + 4 && f + n <= p->buf + p->len_before);
	check(be32(f - 4) == n);
	check(ref_next(&p->s, &p->ref, p->read, &off, &l) == 1);
	check(l == n && !memcmp(p->s.p + off, f, n));
	p->calls++;
	p->handed += n;
	p->frames++;
}

/* One read of up to @n bytes, as emu_drain does, then the parse and its checks. */
static void
parse_read(struct pstate *p, size_t n)
{
	size_t pos, off;
	uint32_t l;
	int r;

	if (n > p->s.n - p->read)
		n = p->s.n - p->read;
	if (n > EMU_BUF - p->len)
		n = EMU_BUF - p->len;
	if (!n)
		return;
	memcpy(p->buf + p->len, p->s.p + p->read, n);
	p->len += (uint32_t)n;
	p->read += n;
	p->appended += n;
	p->calls = 0;
	p->len_before = p->len;
	r = emu_parse(p->buf, &p->len, on_frame, p);
	pos = p->ref;
	if (r < 0) {
		check(r == -EPROTO);
		check(ref_next(&p->s, &pos, p->read, &off, &l) == -1); /* at the bad length */
		p->broken = true; /* the port is gone: nothing more is read */
		return;
	}
	check((unsigned)r == p->calls);
	check(ref_next(&p->s, &pos, p->read, &off, &l) == 0); /* nothing whole is left */
	check(p->len == p->read - p->ref && !memcmp(p->buf, p->s.p + p->ref, p->len));
	check(p->len < 4 + VSW_FRAME_MAX);
	check(p->handed + p->len + 4 * p->frames == p->appended);
}

static void
fuzz_parse(struct fz *in)
{
	static const uint8_t mac[6] = { 0x02, 0, 0, 0, 0, 1 }, tmac[6] = { 0x02, 0, 0, 0, 0, 2 };
	struct pstate p = { 0 };

	p.buf = malloc(EMU_BUF);
	check(p.buf != NULL);
	for (int i = 0; i < FZ_STEPS && in->n && !p.broken; i++) {
		unsigned op = (unsigned)fz_take(in, 1);

		if (op % 2 == 0) {
			if (p.s.n < FZ_STREAM_MAX)
				qemu_bytes(in, op, mac, tmac, &p.s);
			continue;
		}
		/* A read: a few bytes, up to a page, up to the buffer, or all there is. */
		switch ((op >> 1) % 4) {
		case 0:
			parse_read(&p, 1 + (op >> 3) % 16);
			break;
		case 1:
			parse_read(&p, (size_t)fz_take(in, 2) % 4096 + 1);
			break;
		case 2:
			parse_read(&p, (size_t)fz_take(in, 3) % EMU_BUF + 1);
			break;
		default:
			while (p.read < p.s.n && !p.broken)
				parse_read(&p, EMU_BUF);
		}
	}
	while (p.read < p.s.n && !p.broken)
		parse_read(&p, EMU_BUF);
	free(p.buf);
	free(p.s.p);
}

/* ---------------------------------------------------------------------- */
/* A port on a dataplane */

struct tport {
	struct dp_port dp; /* first */
	struct fzw *w;
	unsigned room; /* frames it takes in this batch (then -ENOBUFS) */
};

struct fzw {
	struct fz in;
	struct vsw_dp *d;
	int ep;
	struct emu_port *e;
	struct tport t;
	int qemu; /* QEMU's end, or -1 once closed */
	bool qemu_wr_shut;
	int64_t now;
	unsigned max; /* frames a drain may take */
	/* QEMU to the port. */
	struct bytes s;	  /* written (the socket took it) */
	struct bytes out; /* still to write */
	size_t out_off;
	size_t ref;	 /* the reference parser's place in s: frames handed so far */
	uint64_t handed; /* frames */
	/* The port to QEMU. */
	struct bytes to_qemu; /* every frame the switch gave the port, framed */
	size_t got;	      /* of it, bytes QEMU read (each compared) */
	/* The port's frames through the switch, for the test port (one batch). */
	struct bytes sent; /* framed */
	size_t sent_pos;
	/* Frames the test port injects in its next drain. */
	struct bytes inject; /* framed */
	uint64_t t_rx;
};

/* The frame as a port on the same port group gets it: a VLAN-0 tag goes on a trunk. */
static size_t
egress(const uint8_t *f, size_t len, uint16_t vlan, uint8_t *out)
{
	memcpy(out, f, len);
	if (vlan == VLAN_TRUNK && len >= 18 && f[12] == 0x81 && f[13] == 0 &&
	    !((f[14] & 0x0f) | f[15])) {
		memmove(out + 12, out + 16, len - 16);
		return len - 4;
	}
	return len;
}

static void
gather(const struct iovec *iov, int n, size_t len, uint8_t *out)
{
	size_t off = 0;

	for (int i = 0; i < n; i++) {
		check(off + iov[i].iov_len <= len);
		memcpy(out + off, iov[i].iov_base, iov[i].iov_len);
		off += iov[i].iov_len;
	}
	check(off == len);
}

/* The emulated port's frames, both ways, as the switch sees them. */
static void
emu_mirror(struct vsw_port *p, const struct iovec *iov, int n, size_t len, bool to_port)
{
	struct fzw *w = p->mirror_ctx;
	static uint8_t f[VSW_FRAME_MAX];
	size_t off;
	uint32_t l;

	check(len >= 1 && len <= VSW_FRAME_MAX);
	gather(iov, n, len, f);
	if (to_port) { /* taken for QEMU */
		bytes_frame(&w->to_qemu, f, (uint32_t)len);
		return;
	}
	/* From QEMU: the stream's next frame. */
	check(ref_next(&w->s, &w->ref, w->s.n, &off, &l) == 1);
	check(l == len && !memcmp(w->s.p + off, f, len));
	w->handed++;
	bytes_frame(&w->sent, f, (uint32_t)len);
}

/* The test port gets a frame: the next one the emulated port sent that got through. */
static int
t_enqueue(struct vsw_port *p, const struct iovec *iov, int n, size_t len)
{
	struct tport *t = (struct tport *)p;
	struct fzw *w = t->w;
	static uint8_t f[VSW_FRAME_MAX], x[VSW_FRAME_MAX];

	check(len >= ETH_HDR && len <= VSW_FRAME_MAX);
	gather(iov, n, len, f);
	if (!t->room)
		return -ENOBUFS;
	t->room--;
	for (;;) {
		uint32_t l;

		check(w->sent.n - w->sent_pos >= 4); /* not one the port sent */
		l = be32(w->sent.p + w->sent_pos);
		w->sent_pos += 4 + (size_t)l;
		if (egress(w->sent.p + w->sent_pos - l, l, p->vlan, x) == len && !memcmp(x, f, len))
			break;
	}
	w->t_rx++;
	return 0;
}

/* Its drain: the frames the input queued, into the switch. */
static int
t_drain(struct dp_port *p, struct vsw *sw, int max, int64_t now)
{
	struct tport *t = (struct tport *)p;
	struct fzw *w = t->w;
	size_t pos = 0;
	int n = 0;

	while (n < max && w->inject.n - pos >= 4) {
		uint32_t l = be32(w->inject.p + pos);
		struct iovec v[2] = { { w->inject.p + pos + 4, l / 3 },
				      { w->inject.p + pos + 4 + l / 3, l - l / 3 } };

		vsw_input(sw, &p->p, v, 2, l, now);
		pos += 4 + (size_t)l;
		n++;
	}
	if (pos) {
		memmove(w->inject.p, w->inject.p + pos, w->inject.n - pos);
		w->inject.n -= pos;
	}
	return n;
}

static void
t_destroy(struct dp_port *p)
{
	(void)p; /* part of struct fzw */
}

static const struct vsw_port_ops t_ops = { .enqueue = t_enqueue };
static const struct dp_port_ops t_dops = { .kind = "test", .drain = t_drain, .destroy = t_destroy };

/* One loop of the dataplane thread (dp_main), without its commands and sleeps. */
static int
batch(struct fzw *w)
{
	struct vsw_dp *d = w->d;
	int work = 0;

	for (size_t i = 0; i < d->nport; i++) {
		struct dp_port *p = d->port[i];

		if (!p->dead)
			work += p->dops->drain(p, &d->sw[p->sw], (int)w->max, w->now);
	}
	for (unsigned s = 0; s < d->nsw; s++)
		if (!d->sw[s].vmq && d->sw[s].defq_n)
			vsw_sort(&d->sw[s], w->now);
	for (size_t i = 0; i < d->nport; i++)
		if (d->port[i]->dops->flush)
			d->port[i]->dops->flush(d->port[i]);
	/* Whatever of the port's frames the test port did not get went nowhere. */
	w->sent.n = w->sent_pos = 0;
	return work;
}

/* QEMU writes what it has (as much as the socket takes). */
static void
qemu_write(struct fzw *w)
{
	while (w->qemu >= 0 && !w->qemu_wr_shut && w->out_off < w->out.n) {
		ssize_t r = write(w->qemu, w->out.p + w->out_off, w->out.n - w->out_off);

		if (r <= 0) {
			check(r < 0 && (errno == EAGAIN || errno == EPIPE || errno == ECONNRESET));
			break;
		}
		bytes_add(&w->s, w->out.p + w->out_off, (size_t)r);
		w->out_off += (size_t)r;
	}
	if (w->out_off == w->out.n)
		w->out.n = w->out_off = 0;
}

/* QEMU reads up to @n bytes: the next bytes of the frames the port took, framed. */
static size_t
qemu_read(struct fzw *w, size_t n)
{
	static uint8_t b[64 << 10];
	ssize_t r;

	if (w->qemu < 0)
		return 0;
	if (n > sizeof(b))
		n = sizeof(b);
	r = read(w->qemu, b, n);
	if (r <= 0) {
		check(r < 0 && errno == EAGAIN);
		return 0;
	}
	check(w->got + (size_t)r <= w->to_qemu.n);
	check(!memcmp(w->to_qemu.p + w->got, b, (size_t)r));
	w->got += (size_t)r;
	return (size_t)r;
}

/* A frame for the test port to inject toward the emulated port (or not). */
static void
t_frame(struct fzw *w, unsigned op)
{
	static uint8_t f[VSW_FRAME_MAX];
	unsigned a = (unsigned)fz_take(&w->in, 1);
	uint32_t len =
	    a & 0x80 ? (uint32_t)fz_take(&w->in, 2) % VSW_FRAME_MAX + 1 : 60 + (a & 0x3f) * 23;
	static const uint8_t bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };

	memset(f, (int)op, len);
	if (len >= 18) {
		memcpy(f, a & 0x40 ? bcast : w->e->dp.mac, 6);
		memcpy(f + 6, w->t.dp.mac, 6);
		f[12] = 0x08, f[13] = 0x00;
		if (op & 0x80) /* tagged */
			f[12] = 0x81, f[13] = 0, f[14] = 0, f[15] = op & 0x40 ? 10 : 0;
	}
	if (w->inject.n < FZ_STREAM_MAX)
		bytes_frame(&w->inject, f, len);
}

static void
step(struct fzw *w)
{
	unsigned op = (unsigned)fz_take(&w->in, 1);

	switch (op % 10) {
	case 0:
	case 1:
	case 2: /* QEMU writes */
		if (w->out.n < FZ_STREAM_MAX && w->s.n < FZ_STREAM_MAX)
			qemu_bytes(&w->in, op, w->e->dp.mac, w->t.dp.mac, &w->out);
		qemu_write(w);
		break;
	case 3:
	case 4: /* a loop of the dataplane */
		w->t.room = op & 0x80 ? 0 : 1 + (op >> 4) % 8;
		w->max = 1 + (op >> 3) % 32;
		batch(w);
		break;
	case 5: /* QEMU reads */
		qemu_read(w, op & 0x80 ? (size_t)fz_take(&w->in, 2) + 1 : 1 + (op >> 4) % 8);
		break;
	case 6:
		t_frame(w, op);
		break;
	case 7: /* the thread sleeps and wakes */
		if (w->e->dp.dops->arm && !w->e->dp.dops->arm(&w->e->dp))
			w->e->dp.dops->woken(&w->e->dp, op & 0x10);
		break;
	case 8: /* time passes */
		w->now += (int64_t)fz_take(&w->in, 2) * 1000000;
		break;
	default: /* QEMU goes, or stops writing */
		if (w->qemu < 0)
			break;
		if (op & 0x80) {
			close(w->qemu);
			w->qemu = -1;
		} else if (op & 0x40) {
			shutdown(w->qemu, SHUT_WR);
			w->qemu_wr_shut = true;
		}
	}
}

static void
setup(struct fzw *w)
{
	static const uint16_t vlans[] = { 0, 10, VLAN_TRUNK, 0 };
	static const char *const pgs[] = { "pg0", "pg10", "trunk", "VM Network" };
	unsigned a = (unsigned)fz_take(&w->in, 1), b = (unsigned)fz_take(&w->in, 1),
		 c = (unsigned)fz_take(&w->in, 1);
	uint8_t mac[6] = { 0x02, 0x00, 0x00, 0x00, 0x00, 0x01 };
	int sp[2], sz;

	w->d = calloc(1, sizeof(*w->d));
	check(w->d && vsw_dp_init(w->d) == 0);
	/* The epoll set vsw_dp_start() would make: a port's descriptor joins it. */
	w->ep = epoll_create1(EPOLL_CLOEXEC);
	check(w->ep >= 0);
	w->d->ep = w->ep;
	check(vsw_dp_add_switch(w->d, "fz", a & 1 ? VSW_MTU_MAX : 68 + (a >> 1) * 40, a & 0x80) ==
	      0);
	for (int i = 0; i < 3; i++)
		check(vsw_dp_add_portgroup(w->d, pgs[i], "fz", vlans[i]) == 0);
	check(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sp) == 0);
	/* Small buffers: writes come short both ways. */
	sz = 1024 << (b % 8);
	if (b & 0x08)
		check(setsockopt(sp[0], SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz)) == 0);
	if (b & 0x10)
		check(setsockopt(sp[1], SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz)) == 0);
	w->qemu = sp[1];
	if (c & 0x80) { /* refused: the socket stays ours */
		check(emu_new(w->d, "no such group", "", NULL, sp[0], &w->e) == -ENOENT);
		check(emu_new(w->d, pgs[0], "a name longer than thirty-one bytes", NULL, sp[0],
			      &w->e) == -ENAMETOOLONG);
	}
	check(emu_new(w->d, pgs[(c >> 2) % 4], c & 1 ? "eth0" : "", c & 2 ? mac : NULL, sp[0],
		      &w->e) == 0);
	w->e->dp.p.mirror = emu_mirror;
	w->e->dp.p.mirror_ctx = w;
	w->t.w = w;
	w->t.dp.p.kind = VSW_PORT_TEST;
	w->t.dp.p.ops = &t_ops;
	w->t.dp.p.up = true;
	w->t.dp.dops = &t_dops;
	w->t.dp.wake_fd = -1;
	memcpy(w->t.dp.mac, (uint8_t[6]){ 0x02, 0, 0, 0, 0, 0x77 }, 6);
	check(vsw_dp_add_port(w->d, &w->t.dp, pgs[(c >> 2) % 4]) == 0);
	w->t.room = 8;
	w->max = 32;
}

static void
fuzz_port(struct fz *in)
{
	struct fzw *w = calloc(1, sizeof(*w));
	size_t pos, off;
	uint32_t l;
	int r;

	check(w != NULL);
	w->in = *in;
	setup(w);
	for (int i = 0; i < FZ_STEPS && w->in.n; i++)
		step(w);
	/* Until nothing moves: QEMU writes the rest and reads everything, the port runs. */
	w->t.room = ~0u;
	w->max = 32;
	for (int i = 0; i < 1000; i++) {
		size_t before = w->s.n + w->got;

		qemu_write(w);
		if (!w->e->dp.dead)
			w->e->dp.dops->woken(&w->e->dp, true); /* read now */
		r = batch(w);
		while (qemu_read(w, SIZE_MAX))
			;
		if (!r && w->s.n + w->got == before && !w->inject.n)
			break;
	}
	/*
	 * The port died of a bad length (counted once) or of QEMU going, or
	 * is alive with everything QEMU wrote handed on (and, by then, any
	 * bad length would have been read). What it handed on is the stream's
	 * frames up to a bad length (checked as they came).
	 */
	pos = w->ref;
	r = ref_next(&w->s, &pos, w->s.n, &off, &l);
	check(w->e->bad_len <= 1);
	check(w->e->dp.dead == (w->e->bad_len || w->qemu < 0 || w->qemu_wr_shut));
	if (w->e->bad_len)
		check(r == -1); /* it stopped at the bad length */
	if (!w->e->dp.dead) {
		check(r == 0 && w->ref + 4 + VSW_FRAME_MAX > w->s.n);
		check(w->got == w->to_qemu.n); /* QEMU read every frame the port took */
	}
	check(atomic_load(&w->e->dp.p.c.rx_pkts) == w->handed);
	if (getenv("FUZZ_NETDEV_TRACE")) /* what an input did, for whoever grows the corpus */
		fprintf(
		    stderr,
		    "port: dead %d bad lengths %llu short writes %llu; QEMU wrote %zu, handed %llu "
		    "frames; to QEMU %zu bytes, read %zu; test port got %llu, queue drops %llu\n",
		    w->e->dp.dead, (unsigned long long)w->e->bad_len,
		    (unsigned long long)w->e->short_writes, w->s.n, (unsigned long long)w->handed,
		    w->to_qemu.n, w->got, (unsigned long long)w->t_rx,
		    (unsigned long long)atomic_load(&w->e->dp.p.c.drops[VSW_DROP_QUEUE]));
	{
		json_t *o = json_object();

		w->e->dp.dops->json(&w->e->dp, o);
		json_decref(o);
	}
	/* The dataplane takes a port's mirror context for a capture's: ours goes first. */
	w->e->dp.p.mirror = NULL;
	w->e->dp.p.mirror_ctx = NULL;
	vsw_dp_stop(w->d); /* removes the ports: the emulated one closes its end */
	close(w->ep);
	if (w->qemu >= 0)
		close(w->qemu);
	free(w->d);
	free(w->s.p);
	free(w->out.p);
	free(w->to_qemu.p);
	free(w->sent.p);
	free(w->inject.p);
	free(w);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz in = { data, size };
	int fds_before = fz_count_fds();

	signal(SIGPIPE, SIG_IGN); /* as the daemon: a write to a closed netdev is EPIPE */
	log_set_level(LOG_LVL_ERR);
	if (fz_take(&in, 1) & 1)
		fuzz_port(&in);
	else
		fuzz_parse(&in);
	if (fz_count_fds() != fds_before)
		abort(); /* a descriptor leaked */
	return 0;
}
