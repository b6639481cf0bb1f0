/* SPDX-License-Identifier: MIT */
/* virtio-net ports over vhost-user (see vnet.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "common/unixsock.h"
#include "offload.h"
#include "vnet.h"

#define VNET_FEATURES                                                                         \
	(VIRTIO_F_VERSION_1 | VIRTIO_NET_F_MRG_RXBUF | VIRTIO_F_EVENT_IDX |                     \
	 VIRTIO_F_INDIRECT_DESC | VIRTIO_NET_F_CSUM | VIRTIO_NET_F_HOST_TSO4 |                  \
	 VIRTIO_NET_F_HOST_TSO6)

/* ---------------------------------------------------------------------- */
/* The dataplane: rings */

/* The virtio-net header of a received frame: nothing to offload, @n buffers. */
static void
rx_hdr(uint8_t *h, uint16_t n)
{
	memset(h, 0, VNET_HDR_LEN);
	h[10] = (uint8_t)n; /* num_buffers, little-endian */
	h[11] = (uint8_t)(n >> 8);
}

/* Copy pieces [@iov, @iovcnt) from byte @from on into element @e at @off; bytes copied. */
static size_t
copy_in(const struct virtq_elem *e, size_t off, const struct iovec *iov, int iovcnt, size_t *from,
	size_t room)
{
	size_t done = 0, skip = *from;

	for (int i = 0; i < iovcnt && done < room; i++) {
		size_t l = iov[i].iov_len;

		if (skip >= l) {
			skip -= l;
			continue;
		}
		size_t k = l - skip < room - done ? l - skip : room - done;
		virtq_write(e, off + done, (const uint8_t *)iov[i].iov_base + skip, k);
		done += k;
		skip = 0;
	}
	*from += done;
	return done;
}

/*
 * The guest broke ring @index (virtq_pop() said so): counted once, the
 * port down until the frontend starts the ring again (a reconnection, or
 * QEMU's stop and start of the ring at a reset).
 */
static void
ring_broken(struct vnet_port *v, unsigned index)
{
	if (v->broken[index])
		return;
	v->broken[index] = true;
	v->st.ring_errors++;
	v->st.ring_error = virtq_why(&v->q[index]);
	v->dp.p.up = false;
	log_rl(LOG_LVL_WARN, "vswitch: %s: %s queue: %s (port down until the ring is reset)",
	       v->dp.p.name, index == VNET_TXQ ? "transmit" : "receive", v->st.ring_error);
}

/* A frame into the guest's receive buffers: 0, or -ENOBUFS (the buffers are not there). */
static int
rx_put(struct vnet_port *v, const struct iovec *iov, int iovcnt, size_t len)
{
	struct virtq *q = &v->q[VNET_RXQ];
	uint16_t n = 0, most = v->mrg ? VNET_MAX_BUFS : 1;
	uint8_t hdr[VNET_HDR_LEN];
	size_t from = 0;
	struct {
		uint16_t head;
		uint32_t len;
	} used[VNET_MAX_BUFS];

	if (!v->on[VNET_RXQ])
		return -ENOBUFS;
	/*
	 * Without MRG_RXBUF one buffer holds the header and the frame; with
	 * it, as many as the frame needs (num_buffers in the first header).
	 */
	for (;;) {
		struct virtq_elem *e = n ? &v->e : &v->e0;
		size_t off = n ? 0 : v->hdr_len;
		int r;

		if (n == most)
			goto no_room;
		if ((r = virtq_pop(q, e)) != 1) {
			if (r < 0)
				ring_broken(v, VNET_RXQ);
			goto no_room;
		}
		n++;
		if (e->in_len < off)
			goto no_room;
		used[n - 1].head = e->head;
		used[n - 1].len = (uint32_t)(off + copy_in(e, off, iov, iovcnt, &from,
							   e->in_len - off));
		if (from == len)
			break;
	}
	rx_hdr(hdr, n);
	virtq_write(&v->e0, 0, hdr, v->hdr_len);
	for (uint16_t i = 0; i < n; i++)
		virtq_push(q, used[i].head, used[i].len);
	return 0;
no_room:
	virtq_unpop(q, n); /* the guest keeps its buffers for the next frame */
	return -ENOBUFS;
}

/* Frames held for the guest go in as its buffers come back, oldest first. */
static void
rx_release(struct vnet_port *v)
{
	while (v->held_n) {
		struct vnet_held *h = &v->held[v->held_head];
		struct iovec f = { h->frame, h->len };

		if (rx_put(v, &f, 1, h->len))
			return;
		v->held_head = (v->held_head + 1) % VNET_HOLD;
		v->held_n--;
	}
}

/*
 * The switch delivers a frame: into the guest's receive buffers. When they
 * are all taken (a guest that has not refilled them yet), up to VNET_HOLD
 * frames wait in the port, as a NIC's queue would hold them, and go in
 * first when buffers come; only then is a frame dropped (-ENOBUFS).
 */
static int
vnet_enqueue(struct vsw_port *p, const struct iovec *iov, int iovcnt, size_t len)
{
	struct vnet_port *v = (struct vnet_port *)p;
	struct vnet_held *h;
	uint8_t *d;

	if (!v->on[VNET_RXQ])
		return -ENOBUFS;
	if (v->held_n)
		rx_release(v);
	if (!v->held_n && !rx_put(v, iov, iovcnt, len))
		return 0;
	if (v->held_n == VNET_HOLD || len > VSW_FRAME_MAX ||
	    (!v->held && !(v->held = malloc(VNET_HOLD * sizeof(*v->held))))) {
		v->st.rx_no_buffers++;
		return -ENOBUFS;
	}
	h = &v->held[(v->held_head + v->held_n++) % VNET_HOLD];
	h->len = (uint16_t)len;
	d = h->frame;
	for (int i = 0; i < iovcnt; i++) {
		memcpy(d, iov[i].iov_base, iov[i].iov_len);
		d += iov[i].iov_len;
	}
	v->st.rx_held++;
	return 0;
}

struct seg_ctx {
	struct vnet_port *v;
	struct vsw *sw;
	int64_t now;
};

static void
seg_input(void *ctx, uint8_t *frame, size_t len)
{
	struct seg_ctx *c = ctx;
	struct iovec f = { frame, len };

	vsw_input(c->sw, &c->v->dp.p, &f, 1, len, c->now);
}

/*
 * A transmit chain whose header asks for a checksum or segmentation: the
 * frame is gathered into the port's buffer (the guest's may not be
 * written), its checksum completed or its segment cut into frames, which
 * go into the switch one by one. False: nothing to do, the frame goes in
 * as it is.
 */
static bool
offloaded(struct vnet_port *v, struct vsw *sw, const struct virtq_elem *e, size_t len, int64_t now)
{
	uint8_t b[VNET_HDR_LEN];
	struct vnet_hdr h;
	struct seg_ctx c = { v, sw, now };
	bool tso;

	virtq_read(e, 0, b, v->hdr_len);
	vnet_hdr_parse(b, &h);
	tso = (h.gso_type & ~VNET_HDR_GSO_ECN) != VNET_HDR_GSO_NONE;
	if (!tso && !(h.flags & VNET_HDR_F_NEEDS_CSUM))
		return false;
	if (len > VNET_BIG_FRAME) {
		v->st.tx_bad++;
		vsw_port_drop(&v->dp.p, VSW_DROP_MTU);
		return true;
	}
	virtq_read(e, v->hdr_len, v->big, len);
	if ((h.flags & VNET_HDR_F_NEEDS_CSUM) &&
	    offload_csum(v->big, len, h.csum_start, h.csum_offset)) {
		v->st.tx_bad++;
		vsw_port_drop(&v->dp.p, VSW_DROP_RUNT);
		return true;
	}
	if (!tso) {
		seg_input(&c, v->big, len);
		return true;
	}
	v->st.tso_segments++;
	if (offload_tso(v->big, len, h.gso_size, (h.gso_type & ~VNET_HDR_GSO_ECN) == VNET_HDR_GSO_TCPV6,
			v->bounce, sizeof(v->bounce), seg_input, &c) < 0) {
		v->st.tx_bad++;
		vsw_port_drop(&v->dp.p, VSW_DROP_RUNT);
	}
	return true;
}

static int
vnet_drain(struct dp_port *p, struct vsw *sw, int max, int64_t now)
{
	struct vnet_port *v = (struct vnet_port *)p;
	struct virtq *q = &v->q[VNET_TXQ];
	struct virtq_elem *e = &v->e;
	int n;

	if (!v->on[VNET_TXQ])
		return 0;
	for (n = 0; n < max; n++) {
		struct iovec f[VSW_MAX_PIECES];
		size_t skip = v->hdr_len, len;
		int k = 0, r = virtq_pop(q, e);

		if (r < 0) {
			ring_broken(v, VNET_TXQ);
			break;
		}
		if (r == 0)
			break;
		if (e->nin || e->out_len < v->hdr_len) {
			v->st.tx_bad++;
			vsw_port_drop(&p->p, VSW_DROP_RUNT);
			virtq_push(q, e->head, 0);
			continue;
		}
		len = e->out_len - v->hdr_len;
		if (v->offloads && offloaded(v, sw, e, len, now)) {
			virtq_push(q, e->head, 0);
			continue;
		}
		/* The frame after the header: in place, or gathered when in many pieces. */
		for (unsigned i = 0; i < e->nout; i++) {
			if (skip >= e->iov[i].iov_len) {
				skip -= e->iov[i].iov_len;
				continue;
			}
			if (k == VSW_MAX_PIECES) {
				k = -1;
				break;
			}
			f[k++] = (struct iovec){ (uint8_t *)e->iov[i].iov_base + skip,
						 e->iov[i].iov_len - skip };
			skip = 0;
		}
		if (k < 0) {
			if (len > sizeof(v->bounce)) { /* longer than any frame: dropped whole */
				vsw_port_drop(&p->p, VSW_DROP_MTU);
				virtq_push(q, e->head, 0);
				continue;
			}
			virtq_read(e, v->hdr_len, v->bounce, len);
			f[0] = (struct iovec){ v->bounce, len };
			k = 1;
		}
		vsw_input(sw, &p->p, f, k, len, now);
		virtq_push(q, e->head, 0);
	}
	return n;
}

static void
vnet_flush(struct dp_port *p)
{
	struct vnet_port *v = (struct vnet_port *)p;

	if (v->held_n && v->on[VNET_RXQ])
		rx_release(v);
	for (int i = 0; i < 2; i++)
		if (v->on[i])
			virtq_flush(&v->q[i]);
}

static bool
vnet_arm(struct dp_port *p)
{
	struct vnet_port *v = (struct vnet_port *)p;

	/* Frames held for the guest: woken by its next receive buffers. */
	if (v->held_n && v->on[VNET_RXQ] &&
	    (v->rx_kick < 0 || virtq_enable_kicks(&v->q[VNET_RXQ])))
		return true;
	if (!v->on[VNET_TXQ])
		return false;
	if (v->kick < 0)
		return true; /* a ring without a kick descriptor is polled */
	return virtq_enable_kicks(&v->q[VNET_TXQ]);
}

static void
vnet_woken(struct dp_port *p, bool fired)
{
	struct vnet_port *v = (struct vnet_port *)p;

	(void)fired; /* the kick descriptors are edge-triggered: never read */
	for (int i = 0; i < 2; i++)
		if (v->on[i])
			virtq_disable_kicks(&v->q[i]);
}

static void
vnet_json(const struct dp_port *p, json_t *o)
{
	const struct vnet_port *v = (const struct vnet_port *)p;
	json_t *qs = json_array();
	static const char *const names[2] = { "rx", "tx" };

	for (int i = 0; i < 2; i++) {
		const struct virtq_stats *s = &v->q[i].st;

		json_array_append_new(qs, json_pack("{s:s, s:b, s:I, s:I, s:I, s:I}", "queue",
						    names[i], "running", v->on[i], "buffers",
						    (json_int_t)s->pushed, "interrupts",
						    (json_int_t)s->notified, "interrupts_suppressed",
						    (json_int_t)s->suppressed, "size",
						    (json_int_t)(v->on[i] ? v->q[i].num : 0)));
	}
	json_object_set_new(o, "queues", qs);
	json_object_set_new(o, "rx_no_buffers", json_integer((json_int_t)v->st.rx_no_buffers));
	json_object_set_new(o, "rx_held", json_integer((json_int_t)v->st.rx_held));
	json_object_set_new(o, "tx_bad", json_integer((json_int_t)v->st.tx_bad));
	json_object_set_new(o, "tso_segments", json_integer((json_int_t)v->st.tso_segments));
	json_object_set_new(o, "ring_errors", json_integer((json_int_t)v->st.ring_errors));
	json_object_set_new(o, "ring_error",
			    v->st.ring_error ? json_string(v->st.ring_error) : json_null());
	json_object_set_new(o, "frontend_connected", json_boolean(v->conn != NULL));
	json_object_set_new(o, "socket", json_string(v->path));
}

static void
vnet_destroy(struct dp_port *p)
{
	free(((struct vnet_port *)p)->held);
	free(((struct vnet_port *)p)->big);
	free(p); /* the rings were stopped and the connection freed before */
}

static const struct vsw_port_ops vnet_ops = { .enqueue = vnet_enqueue };
static const struct dp_port_ops vnet_dops = { .kind = "virtio",
					      .drain = vnet_drain,
					      .flush = vnet_flush,
					      .arm = vnet_arm,
					      .woken = vnet_woken,
					      .json = vnet_json,
					      .destroy = vnet_destroy };

/* ---------------------------------------------------------------------- */
/* Ring hand-over between the control plane and the dataplane */

struct ring_cmd {
	struct vnet_port *v;
	uint32_t index;
	const struct vhu_ring *r;
	const struct vhu_mem *mem;
	uint64_t features;
	int kick, call;
	uint16_t last_avail;
};

static void
close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

static int
do_ring_start(void *ctx, void *arg)
{
	struct ring_cmd *c = arg;
	struct vnet_port *v = c->v;
	struct virtq *q = &v->q[c->index];

	v->mrg = c->features & VIRTIO_NET_F_MRG_RXBUF;
	v->offloads = c->features & (VIRTIO_NET_F_CSUM | VIRTIO_NET_F_HOST_TSO4 | VIRTIO_NET_F_HOST_TSO6);
	/* A legacy device without MRG_RXBUF has the 10-byte header. */
	v->hdr_len = (c->features & (VIRTIO_F_VERSION_1 | VIRTIO_NET_F_MRG_RXBUF)) ? 12 : 10;
	v->call[c->index] = c->call;
	virtq_init(q, c->mem, c->r->desc, c->r->avail, c->r->used, (uint16_t)c->r->num,
		   c->r->last_avail, c->features, c->call);
	/*
	 * Kicks are asked for only before the thread sleeps: on the transmit
	 * queue always, on the receive queue while frames wait for buffers.
	 */
	virtq_disable_kicks(q);
	{
		int *kick = c->index == VNET_TXQ ? &v->kick : &v->rx_kick;
		int err;

		*kick = c->kick;
		err = *kick < 0 ? 0 : vsw_dp_watch(ctx, &v->dp, *kick, EPOLLIN | EPOLLET, true);
		if (err)
			log_warn("vswitch: %s: kick descriptor: %s", v->dp.p.name, strerror(-err));
	}
	v->on[c->index] = true;
	v->broken[c->index] = false;
	v->dp.p.up = v->on[0] && v->on[1];
	return 0;
}

static int
do_ring_stop(void *ctx, void *arg)
{
	struct ring_cmd *c = arg;
	struct vnet_port *v = c->v;

	if (!v->on[c->index])
		return -ENOENT;
	v->on[c->index] = false;
	v->dp.p.up = false;
	c->last_avail = virtq_last_avail(&v->q[c->index]);
	{
		int *kick = c->index == VNET_TXQ ? &v->kick : &v->rx_kick;

		if (*kick >= 0) {
			vsw_dp_watch(ctx, &v->dp, *kick, 0, false);
			close_fd(kick);
		}
	}
	if (c->index == VNET_RXQ)
		v->held_n = 0; /* frames for a guest that stopped receiving: gone */
	close_fd(&v->call[c->index]);
	return 0;
}

static int
do_ring_call(void *ctx, void *arg)
{
	struct ring_cmd *c = arg;
	struct vnet_port *v = c->v;

	(void)ctx;
	close_fd(&v->call[c->index]);
	v->call[c->index] = c->call;
	v->q[c->index].call = c->call;
	return 0;
}

static int
dup_fd(int fd)
{
	return fd < 0 ? -1 : fcntl(fd, F_DUPFD_CLOEXEC, 3);
}

static void
ring_started(void *dev, struct vhu_conn *conn, uint32_t index)
{
	struct vnet_port *v = dev;
	const struct vhu_ring *r = vhu_conn_ring(conn, index);
	struct ring_cmd c = { .v = v,
			      .index = index,
			      .r = r,
			      .mem = vhu_conn_mem(conn),
			      .features = vhu_conn_features(conn),
			      .kick = dup_fd(r->kick),
			      .call = dup_fd(r->call) };

	vsw_dp_call(v->d, do_ring_start, &c);
	log_info("vswitch: %s: %s queue running (%u entries)", v->dp.p.name,
		 index == VNET_RXQ ? "receive" : "transmit", r->num);
}

static void
ring_stopped(void *dev, struct vhu_conn *conn, uint32_t index, uint16_t *last_avail)
{
	struct vnet_port *v = dev;
	struct ring_cmd c = { .v = v, .index = index };

	(void)conn;
	if (!vsw_dp_call(v->d, do_ring_stop, &c))
		*last_avail = c.last_avail;
}

static void
ring_call(void *dev, struct vhu_conn *conn, uint32_t index)
{
	struct vnet_port *v = dev;
	struct ring_cmd c = { .v = v, .index = index, .call = dup_fd(vhu_conn_ring(conn, index)->call) };

	vsw_dp_call(v->d, do_ring_call, &c);
}

static const struct vhu_device_ops vhu_net_ops = { .features = VNET_FEATURES,
						   .queues = 2,
						   .ring_started = ring_started,
						   .ring_stopped = ring_stopped,
						   .ring_call = ring_call };

/* ---------------------------------------------------------------------- */
/* The control plane: the socket and the frontend's connection */

static void
detach(struct vnet_port *v, const char *why)
{
	if (!v->conn)
		return;
	loop_del(v->loop, &v->conn_src);
	vhu_conn_free(v->conn); /* stops the rings first (through the thread) */
	v->conn = NULL;
	v->conn_src.fd = -1;
	snprintf(v->why, sizeof(v->why), "%s", why);
	log_info("vswitch: %s: frontend gone: %s", v->dp.p.name, why);
}

static void
on_conn(struct loop_src *s, uint32_t events)
{
	struct vnet_port *v = (struct vnet_port *)((char *)s - offsetof(struct vnet_port, conn_src));
	int err = vhu_conn_process(v->conn);

	(void)events;
	if (err)
		detach(v, err == -ENOTCONN ? "disconnected" : strerror(-err));
}

int
vnet_attach(struct vnet_port *v, int sock)
{
	int err;

	detach(v, "a new frontend connected");
	if ((err = vhu_conn_new(sock, &vhu_net_ops, v, &v->conn))) {
		close(sock);
		return err;
	}
	v->conn_src.fd = sock;
	if (loop_add(v->loop, &v->conn_src, EPOLLIN) < 0) {
		err = -errno;
		vhu_conn_free(v->conn);
		v->conn = NULL;
		v->conn_src.fd = -1;
		return err;
	}
	v->why[0] = 0;
	v->st.connects++;
	return 0;
}

static void
on_listen(struct loop_src *s, uint32_t events)
{
	struct vnet_port *v = (struct vnet_port *)((char *)s - offsetof(struct vnet_port, listen));
	pid_t peer;
	int fd, err;

	(void)events;
	fd = unix_accept_from(s->fd, v->allowed_pid, &peer);
	if (fd == -EPERM)
		log_warn("vswitch: %s: refused vhost-user connection from pid %d", v->dp.p.name,
			 (int)peer);
	if (fd < 0)
		return;
	if ((err = vnet_attach(v, fd)))
		log_warn("vswitch: %s: vhost-user: %s", v->dp.p.name, strerror(-err));
	else
		log_info("vswitch: %s: frontend connected (pid %d)", v->dp.p.name, (int)peer);
}

int
vnet_new(struct vsw_dp *d, struct loop *loop, const char *pg, const char *name,
	 const uint8_t *mac, const char *path, pid_t allowed_pid, struct vnet_port **out)
{
	struct vnet_port *v;
	int err;

	if (strlen(path) >= sizeof(v->path) || strlen(name) >= VSW_NAME)
		return -ENAMETOOLONG;
	if (!(v = calloc(1, sizeof(*v))) || !(v->big = malloc(VNET_BIG_FRAME))) {
		free(v);
		return -ENOMEM;
	}
	v->d = d;
	v->loop = loop;
	v->allowed_pid = allowed_pid;
	v->kick = v->rx_kick = v->call[0] = v->call[1] = -1;
	v->hdr_len = VNET_HDR_LEN;
	v->listen = (struct loop_src){ .fd = -1, .fn = on_listen };
	v->conn_src = (struct loop_src){ .fd = -1, .fn = on_conn };
	snprintf(v->path, sizeof(v->path), "%s", path);
	snprintf(v->dp.p.name, sizeof(v->dp.p.name), "%s", name);
	if (mac)
		memcpy(v->dp.mac, mac, ETH_MAC_LEN);
	v->dp.p.kind = VSW_PORT_VIRTIO;
	v->dp.p.ops = &vnet_ops;
	v->dp.dops = &vnet_dops;
	v->dp.wake_fd = -1;
	v->listen.fd = unix_listen(path, SOCK_STREAM, 0600, 4);
	if (v->listen.fd < 0) {
		err = v->listen.fd;
		free(v->big);
		free(v);
		return err;
	}
	if (loop_add(loop, &v->listen, EPOLLIN) < 0) {
		err = -errno;
		goto fail;
	}
	if ((err = vsw_dp_add_port(d, &v->dp, pg))) {
		loop_del(loop, &v->listen);
		goto fail;
	}
	*out = v;
	return 0;
fail:
	close(v->listen.fd);
	unlink(path);
	free(v->big);
	free(v);
	return err;
}

void
vnet_free(struct vnet_port *v)
{
	if (!v)
		return;
	detach(v, "port removed");
	if (v->listen.fd >= 0) {
		loop_del(v->loop, &v->listen);
		close(v->listen.fd);
		unlink(v->path);
	}
	vsw_dp_remove_port(v->d, &v->dp); /* freed on the thread */
}

bool
vnet_connected(const struct vnet_port *v)
{
	return v->conn != NULL;
}
