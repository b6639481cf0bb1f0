/* SPDX-License-Identifier: MIT */
/*
 * The vhost-user server: per-connection state (negotiated features and
 * protocol features, owner, memory table, rings) and one handler per
 * request, dispatched through a table built from VHU_REQUESTS.
 *
 * Threat model: the frontend is untrusted. Every message is checked by
 * vhu_msg_check() before its handler runs; handlers check indices against
 * the device's queue count, ring sizes (a power of two up to 32768), bases
 * (16 bits, split rings only), address flags and alignment, and offered
 * features. Ring areas are translated through the memory table with their
 * full sizes when a ring starts and again when the table is replaced, so a
 * started ring's pointers always lie inside mapped memory. A refused
 * request is answered with a non-zero REPLY_ACK when the frontend asked for
 * one and negotiated it; otherwise the connection fails. Descriptors a
 * handler does not keep are closed with the message.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "vhost.h"

struct vhu_conn {
	int fd;
	const struct vhu_device_ops *ops;
	void *dev;
	uint64_t features, protocol;
	bool owner;
	struct vhu_mem mem;
	struct vhu_ring rings[VHU_MAX_QUEUES];
	struct vhu_rx rx;
	/* Natural reply of the current request. */
	uint8_t reply[VHU_CONFIG_HDR + VHU_MAX_CONFIG];
	uint32_t reply_size;
};

typedef int vhu_handler(struct vhu_conn *c, struct vhu_msg *m);

static void
close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

/* Take the message's descriptor into *slot (closing the old one). */
static void
take_fd(struct vhu_msg *m, int *slot)
{
	close_fd(slot);
	if (m->nfds == 1) {
		*slot = m->fds[0];
		m->fds[0] = -1;
	}
}

static void
ring_stop(struct vhu_conn *c, uint32_t i)
{
	struct vhu_ring *r = &c->rings[i];

	if (!r->started)
		return;
	r->started = false;
	if (c->ops->ring_stopped)
		c->ops->ring_stopped(c->dev, c, i, &r->last_avail);
	r->desc = r->avail = r->used = NULL;
}

/* Translate the ring's three areas; -EFAULT if any is not in memory. */
static int
ring_translate(struct vhu_conn *c, struct vhu_ring *r)
{
	uint64_t n = r->num;

	r->desc = vhu_mem_uva(&c->mem, r->addr.desc_user_addr, 16 * n);
	r->avail = vhu_mem_uva(&c->mem, r->addr.avail_user_addr, 6 + 2 * n);
	r->used = vhu_mem_uva(&c->mem, r->addr.used_user_addr, 6 + 8 * n);
	if (!r->desc || !r->avail || !r->used) {
		r->desc = r->avail = r->used = NULL;
		return -EFAULT;
	}
	return 0;
}

/* Start or stop ring @i to match its state. */
static int
ring_update(struct vhu_conn *c, uint32_t i)
{
	struct vhu_ring *r = &c->rings[i];
	bool enabled = (c->features & VHU_F_PROTOCOL_FEATURES) ? r->enabled : true;
	bool want = r->num && r->have_addr && r->have_kick && enabled;
	int err;

	if (!want) {
		ring_stop(c, i);
		return 0;
	}
	if (r->started)
		return 0;
	err = ring_translate(c, r);
	if (err)
		return err;
	r->started = true;
	if (c->ops->ring_started)
		c->ops->ring_started(c->dev, c, i);
	return 0;
}

static int
ring_index(struct vhu_conn *c, uint64_t index, struct vhu_ring **r)
{
	if (index >= c->ops->queues)
		return -ERANGE;
	*r = &c->rings[index];
	return 0;
}

static void
ring_reset(struct vhu_conn *c, uint32_t i)
{
	struct vhu_ring *r = &c->rings[i];

	ring_stop(c, i);
	close_fd(&r->kick);
	close_fd(&r->call);
	close_fd(&r->err);
	memset(r, 0, sizeof(*r));
	r->kick = r->call = r->err = -1;
}

static int
reply_u64(struct vhu_conn *c, uint64_t v)
{
	memcpy(c->reply, &v, sizeof(v));
	c->reply_size = sizeof(v);
	return 0;
}

static int
h_get_features(struct vhu_conn *c, struct vhu_msg *m)
{
	(void)m;
	return reply_u64(c, c->ops->features | VHU_F_PROTOCOL_FEATURES);
}

static int
h_set_features(struct vhu_conn *c, struct vhu_msg *m)
{
	uint64_t f = m->payload.u64;

	if (f & ~(c->ops->features | VHU_F_PROTOCOL_FEATURES))
		return -ENOTSUP;
	c->features = f;
	for (uint32_t i = 0; i < c->ops->queues; i++) {
		int err = ring_update(c, i);

		if (err)
			return err;
	}
	return 0;
}

static int
h_set_owner(struct vhu_conn *c, struct vhu_msg *m)
{
	(void)m;
	if (c->owner)
		return -EBUSY;
	c->owner = true;
	return 0;
}

static int
h_reset_owner(struct vhu_conn *c, struct vhu_msg *m)
{
	(void)m;
	for (uint32_t i = 0; i < c->ops->queues; i++)
		ring_reset(c, i);
	vhu_mem_clear(&c->mem);
	c->features = 0;
	c->owner = false;
	return 0;
}

static int
h_set_mem_table(struct vhu_conn *c, struct vhu_msg *m)
{
	struct vhu_mem_table *t = &m->payload.mem;
	int err = 0;

	/* Started rings point into the old mappings: stop them first. */
	for (uint32_t i = 0; i < c->ops->queues; i++)
		ring_stop(c, i);
	err = vhu_mem_set(&c->mem, t->regions, t->nregions, m->fds);
	for (uint32_t i = 0; i < c->ops->queues; i++) {
		int e = ring_update(c, i);

		if (!err)
			err = e;
	}
	return err;
}

static int
h_set_vring_num(struct vhu_conn *c, struct vhu_msg *m)
{
	uint32_t num = m->payload.state.num;
	struct vhu_ring *r;
	int err = ring_index(c, m->payload.state.index, &r);

	if (err)
		return err;
	if (r->started)
		return -EBUSY;
	if (num == 0 || num > VHU_RING_MAX || (num & (num - 1)))
		return -EINVAL;
	r->num = num;
	return 0;
}

static int
h_set_vring_addr(struct vhu_conn *c, struct vhu_msg *m)
{
	const struct vhu_vring_addr *a = &m->payload.addr;
	struct vhu_ring *r;
	int err = ring_index(c, a->index, &r);

	if (err)
		return err;
	if (r->started)
		return -EBUSY;
	if (a->flags)
		return -ENOTSUP; /* VHOST_VRING_F_LOG: logging is not offered */
	if ((a->desc_user_addr & 15) || (a->avail_user_addr & 1) || (a->used_user_addr & 3))
		return -EINVAL;
	r->addr = *a;
	r->have_addr = true;
	return ring_update(c, a->index);
}

static int
h_set_vring_base(struct vhu_conn *c, struct vhu_msg *m)
{
	struct vhu_ring *r;
	int err = ring_index(c, m->payload.state.index, &r);

	if (err)
		return err;
	if (r->started)
		return -EBUSY;
	if (m->payload.state.num > UINT16_MAX)
		return -EINVAL;
	r->last_avail = (uint16_t)m->payload.state.num;
	return 0;
}

static int
h_get_vring_base(struct vhu_conn *c, struct vhu_msg *m)
{
	struct vhu_vring_state s = m->payload.state;
	struct vhu_ring *r;
	int err = ring_index(c, s.index, &r);

	if (err)
		return err;
	ring_stop(c, s.index);
	/* Stopped until the frontend gives a kick descriptor again. */
	close_fd(&r->kick);
	r->have_kick = false;
	s.num = r->last_avail;
	memcpy(c->reply, &s, sizeof(s));
	c->reply_size = sizeof(s);
	return 0;
}

static int
h_set_vring_kick(struct vhu_conn *c, struct vhu_msg *m)
{
	struct vhu_ring *r;
	int err = ring_index(c, m->payload.u64 & VHU_VRING_IDX_MASK, &r);

	if (err)
		return err;
	/* A new kick descriptor restarts the ring: stop it around the swap. */
	ring_stop(c, (uint32_t)(m->payload.u64 & VHU_VRING_IDX_MASK));
	take_fd(m, &r->kick);
	r->have_kick = true; /* with VHU_VRING_NOFD: the ring is polled */
	return ring_update(c, (uint32_t)(m->payload.u64 & VHU_VRING_IDX_MASK));
}

static int
h_set_vring_call(struct vhu_conn *c, struct vhu_msg *m)
{
	struct vhu_ring *r;
	int err = ring_index(c, m->payload.u64 & VHU_VRING_IDX_MASK, &r);

	if (err)
		return err;
	if (r->started && c->ops->ring_call) {
		int old = r->call;

		/* The device swaps in the new one before the old one is closed. */
		r->call = m->nfds == 1 ? m->fds[0] : -1;
		c->ops->ring_call(c->dev, c, (uint32_t)(m->payload.u64 & VHU_VRING_IDX_MASK));
		if (old >= 0)
			close(old);
		if (m->nfds == 1)
			m->fds[0] = -1;
		return 0;
	}
	take_fd(m, &r->call);
	return 0;
}

static int
h_set_vring_err(struct vhu_conn *c, struct vhu_msg *m)
{
	struct vhu_ring *r;
	int err = ring_index(c, m->payload.u64 & VHU_VRING_IDX_MASK, &r);

	if (err)
		return err;
	take_fd(m, &r->err);
	return 0;
}

/*
 * The protocol features offered: CONFIG only to a device that has a config
 * space to read. Offered to one without (a virtio-net device), GET_CONFIG
 * would be refused, which fails the connection, and QEMU 7.2's vhost-user
 * netdev, which has no use for it, masks it out again with a warning
 * ("backend supports VHOST_USER_PROTOCOL_F_CONFIG but QEMU does not") for
 * every queue pair at every (re)connection.
 */
static uint64_t
proto_offered(const struct vhu_conn *c)
{
	return c->ops->get_config ? VHU_PROTO_OFFERED : VHU_PROTO_OFFERED & ~VHU_PROTO_F_CONFIG;
}

static int
h_get_protocol_features(struct vhu_conn *c, struct vhu_msg *m)
{
	(void)m;
	return reply_u64(c, proto_offered(c));
}

static int
h_set_protocol_features(struct vhu_conn *c, struct vhu_msg *m)
{
	if (m->payload.u64 & ~proto_offered(c))
		return -ENOTSUP;
	c->protocol = m->payload.u64;
	return 0;
}

static int
h_get_queue_num(struct vhu_conn *c, struct vhu_msg *m)
{
	(void)m;
	return reply_u64(c, c->ops->queues);
}

static int
h_set_vring_enable(struct vhu_conn *c, struct vhu_msg *m)
{
	struct vhu_ring *r;
	int err = ring_index(c, m->payload.state.index, &r);

	if (err)
		return err;
	if (m->payload.state.num > 1)
		return -EINVAL;
	r->enabled = m->payload.state.num == 1;
	return ring_update(c, m->payload.state.index);
}

static int
config_range(const struct vhu_conn *c, const struct vhu_config *cfg)
{
	if (!(c->protocol & VHU_PROTO_F_CONFIG))
		return -ENOTSUP;
	if (cfg->offset > VHU_MAX_CONFIG || cfg->size > VHU_MAX_CONFIG - cfg->offset)
		return -EINVAL;
	return 0;
}

static int
h_get_config(struct vhu_conn *c, struct vhu_msg *m)
{
	struct vhu_config *cfg = &m->payload.config;
	int err = config_range(c, cfg);

	if (err)
		return err;
	if (!c->ops->get_config)
		return -ENOTSUP;
	memset(cfg->data, 0, cfg->size);
	err = c->ops->get_config(c->dev, cfg->offset, cfg->data, cfg->size);
	if (err)
		return err;
	c->reply_size = VHU_CONFIG_HDR + cfg->size;
	memcpy(c->reply, cfg, c->reply_size);
	return 0;
}

static int
h_set_config(struct vhu_conn *c, struct vhu_msg *m)
{
	struct vhu_config *cfg = &m->payload.config;
	int err = config_range(c, cfg);

	if (err)
		return err;
	if (!c->ops->set_config)
		return -ENOTSUP;
	return c->ops->set_config(c->dev, cfg->offset, cfg->data, cfg->size);
}

static vhu_handler *const handlers[VHU_REQUEST_MAX] = {
#define VHU_HANDLER(n, h, v, lo, hi, fd, r) [v] = h_##h,
	VHU_REQUESTS(VHU_HANDLER)
#undef VHU_HANDLER
};

/* Handle one complete message: 0, or -errno to fail the connection. */
static int
dispatch(struct vhu_conn *c, struct vhu_msg *m)
{
	int has_reply = vhu_request_has_reply(m->hdr.request);
	bool ack = (m->hdr.flags & VHU_FLAG_NEED_REPLY) && (c->protocol & VHU_PROTO_F_REPLY_ACK);
	int err = vhu_msg_check(m);

	c->reply_size = 0;
	if (!err)
		err = handlers[m->hdr.request](c, m);
	if (has_reply == 1) {
		if (err)
			return err; /* the frontend waits for a reply of a fixed shape */
		return vhu_send_reply(c->fd, m->hdr.request, c->reply, c->reply_size);
	}
	if (ack) {
		uint64_t status = err ? (uint64_t)-err : 0;

		return vhu_send_reply(c->fd, m->hdr.request, &status, sizeof(status));
	}
	return err;
}

int
vhu_conn_process(struct vhu_conn *c)
{
	for (;;) {
		int r = vhu_rx_read(c->fd, &c->rx);

		if (r <= 0)
			return r;
		r = dispatch(c, &c->rx.msg);
		vhu_rx_reset(&c->rx);
		if (r < 0)
			return r;
	}
}

int
vhu_conn_new(int sock, const struct vhu_device_ops *ops, void *dev, struct vhu_conn **out)
{
	struct vhu_conn *c;
	int fl;

	if (!ops || ops->queues == 0 || ops->queues > VHU_MAX_QUEUES)
		return -EINVAL;
	fl = fcntl(sock, F_GETFL);
	if (fl < 0 || fcntl(sock, F_SETFL, fl | O_NONBLOCK) < 0)
		return -errno;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->fd = sock;
	c->ops = ops;
	c->dev = dev;
	vhu_mem_init(&c->mem);
	vhu_rx_init(&c->rx);
	for (uint32_t i = 0; i < VHU_MAX_QUEUES; i++)
		c->rings[i].kick = c->rings[i].call = c->rings[i].err = -1;
	*out = c;
	return 0;
}

void
vhu_conn_free(struct vhu_conn *c)
{
	if (!c)
		return;
	for (uint32_t i = 0; i < c->ops->queues; i++)
		ring_reset(c, i);
	vhu_mem_clear(&c->mem);
	vhu_rx_reset(&c->rx);
	close(c->fd);
	free(c);
}

void
vhu_conn_save(const struct vhu_conn *c, struct vhu_saved *s)
{
	memset(s, 0, sizeof(*s));
	s->sock = c->fd;
	s->features = c->features;
	s->protocol = c->protocol;
	s->owner = c->owner;
	s->nregions = c->mem.n;
	for (uint32_t i = 0; i < c->mem.n; i++) {
		const struct vhu_region *r = &c->mem.r[i];

		s->regions[i] = (struct vhu_mem_region){ .guest_phys_addr = r->gpa,
							 .memory_size = r->size,
							 .userspace_addr = r->uaddr,
							 .mmap_offset = r->mmap_offset };
		s->region_fds[i] = r->fd;
	}
	s->nrings = c->ops->queues;
	for (uint32_t i = 0; i < c->ops->queues; i++) {
		const struct vhu_ring *r = &c->rings[i];

		s->rings[i] = (struct vhu_saved_ring){ .num = r->num,
						       .last_avail = r->last_avail,
						       .have_addr = r->have_addr,
						       .have_kick = r->have_kick,
						       .enabled = r->enabled,
						       .addr = r->addr,
						       .kick = r->kick,
						       .call = r->call,
						       .err = r->err };
	}
}

/*
 * The next available index of ring @i from its used ring's index (struct
 * vring_used: le16 flags, le16 idx), read once from guest memory. A value
 * the guest wrote there is only as bad as any it could put in its avail
 * ring: the virtqueue layer bounds what it takes from there.
 */
static void
ring_resync(struct vhu_conn *c, uint32_t i)
{
	struct vhu_ring *r = &c->rings[i];

	if (!r->num || !r->have_addr || ring_translate(c, r) < 0)
		return;
	r->last_avail = __atomic_load_n((uint16_t *)r->used + 1, __ATOMIC_ACQUIRE);
	r->desc = r->avail = r->used = NULL;
}

int
vhu_conn_restore(const struct vhu_saved *s, const struct vhu_device_ops *ops, void *dev,
		 struct vhu_conn **out)
{
	struct vhu_conn *c;
	int err;

	if (s->nrings != ops->queues || s->nregions > VHU_MAX_REGIONS)
		return -EINVAL;
	if ((err = vhu_conn_new(s->sock, ops, dev, &c)))
		return err;
	if ((err = vhu_mem_set(&c->mem, s->regions, s->nregions, s->region_fds))) {
		free(c); /* the socket stays the caller's */
		return err;
	}
	for (uint32_t i = 0; i < s->nregions; i++)
		close(s->region_fds[i]); /* the table holds its own duplicates */
	c->features = s->features;
	c->protocol = s->protocol;
	c->owner = s->owner;
	for (uint32_t i = 0; i < s->nrings; i++) {
		const struct vhu_saved_ring *w = &s->rings[i];
		struct vhu_ring *r = &c->rings[i];

		r->num = w->num;
		r->last_avail = w->last_avail;
		r->have_addr = w->have_addr;
		r->have_kick = w->have_kick;
		r->enabled = w->enabled;
		r->addr = w->addr;
		r->kick = w->kick;
		r->call = w->call;
		r->err = w->err;
	}
	*out = c; /* before the rings start: the device may look at it then */
	for (uint32_t i = 0; i < s->nrings; i++) {
		if (s->resync)
			ring_resync(c, i);
		if (ring_update(c, i) < 0)
			ring_stop(c, i); /* the frontend will set it up again, or not */
		else if (s->resync && c->rings[i].started && c->rings[i].call >= 0)
			eventfd_write(c->rings[i].call, 1); /* a spurious interrupt is harmless */
	}
	return 0;
}

int
vhu_conn_fd(const struct vhu_conn *c)
{
	return c->fd;
}

const struct vhu_ring *
vhu_conn_ring(const struct vhu_conn *c, uint32_t index)
{
	return index < c->ops->queues ? &c->rings[index] : NULL;
}

const struct vhu_mem *
vhu_conn_mem(const struct vhu_conn *c)
{
	return &c->mem;
}

uint64_t
vhu_conn_features(const struct vhu_conn *c)
{
	return c->features;
}

uint64_t
vhu_conn_protocol_features(const struct vhu_conn *c)
{
	return c->protocol;
}
