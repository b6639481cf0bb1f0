/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/conf.h"
#include "common/log.h"
#include "common/wire.h"
#include "dp.h"
#include "rdma/engine.h"
#include "vnet.h"
#include "vmfabric/qp.h"

#define DP_BATCH 32
#define DP_SPIN_NS 50000
#define DP_AGE_EVERY_NS 1000000000LL
#define DP_VMK_EVERY_NS 10000 /* between reads of the VMkernel adapters' TAPs */

/* ---------------------------------------------------------------------- */
/* Configuration */

int
vsw_dp_add_switch(struct vsw_dp *d, const char *name, uint32_t mtu, bool vmq)
{
	int err;

	if (d->nsw == VSW_MAX_SWITCHES)
		return -ENOSPC;
	for (unsigned i = 0; i < d->nsw; i++)
		if (!strcmp(d->sw[i].name, name))
			return -EEXIST;
	if ((err = vsw_init(&d->sw[d->nsw], name, mtu, vmq)))
		return err;
	d->nsw++;
	return 0;
}

static int
find_switch(const struct vsw_dp *d, const char *name)
{
	for (unsigned i = 0; i < d->nsw; i++)
		if (!strcmp(d->sw[i].name, name))
			return (int)i;
	return -ENOENT;
}

static const struct vsw_portgroup *
find_pg(const struct vsw_dp *d, const char *name)
{
	for (unsigned i = 0; i < d->npg; i++)
		if (!strcmp(d->pg[i].name, name))
			return &d->pg[i];
	return NULL;
}

int
vsw_dp_add_portgroup(struct vsw_dp *d, const char *name, const char *sw, uint16_t vlan)
{
	int s = find_switch(d, sw);

	if (s < 0)
		return s;
	if (vlan > VLAN_TRUNK || !*name || strlen(name) >= VSW_NAME)
		return -EINVAL;
	if (find_pg(d, name))
		return -EEXIST;
	if (d->npg == VSW_MAX_PORTGROUPS)
		return -ENOSPC;
	d->pg[d->npg] = (struct vsw_portgroup){ .sw = (unsigned)s, .vlan = vlan };
	strcpy(d->pg[d->npg].name, name);
	d->npg++;
	return 0;
}

int
vsw_dp_init(struct vsw_dp *d)
{
	int err;

	memset(d, 0, sizeof(*d));
	d->ep = -1;
	if ((err = vsw_dp_add_switch(d, "vSwitch0", VSW_MTU_DEFAULT, true)))
		return err;
	return vsw_dp_add_portgroup(d, "VM Network", "vSwitch0", VLAN_NONE);
}

/* Every group @prefix N, once each, in file order: @fn(N, index of its first key). */
static int
each_group(struct conf *c, const char *prefix, int (*fn)(struct vsw_dp *, struct conf *, long,
							  size_t, struct conf_error *),
	   struct vsw_dp *d, struct conf_error *err)
{
	long done[VSW_MAX_PORTGROUPS + 1];
	size_t ndone = 0;
	int e;

	for (size_t i = 0; i < conf_count(c); i++) {
		long g = conf_group(conf_key(c, i), prefix);
		bool seen = false;

		if (g < 0)
			continue;
		for (size_t k = 0; k < ndone; k++)
			seen |= done[k] == g;
		if (seen)
			continue;
		if (ndone == sizeof(done) / sizeof(done[0])) {
			conf_fail_at(err, c, i, "too many groups");
			return -E2BIG;
		}
		done[ndone++] = g;
		if ((e = fn(d, c, g, i, err)))
			return e;
	}
	return 0;
}

static int
load_switch(struct vsw_dp *d, struct conf *c, long g, size_t first, struct conf_error *err)
{
	char key[64], name[VSW_NAME];
	const char *v;
	uint64_t mtu;
	bool vmq;
	int e;

#define SKEY(k) (snprintf(key, sizeof(key), "vswitch%ld." k, g), conf_mark_used(c, key), key)
	v = conf_get(c, SKEY("name"));
	snprintf(name, sizeof(name), "%s", v ? v : "");
	if (!v)
		snprintf(name, sizeof(name), "vSwitch%ld", g);
	e = conf_get_u64(c, SKEY("mtu"), 68, VSW_MTU_MAX, VSW_MTU_DEFAULT, &mtu, err);
	e = e ?: conf_get_bool(c, SKEY("vmq"), true, &vmq, err);
#undef SKEY
	if (e)
		return e;
	if (!*name || (v && strlen(v) >= VSW_NAME) || !conf_text(name)) {
		conf_fail_at(err, c, first, "a switch name is 1 to 31 printable ASCII characters");
		return -EINVAL;
	}
	e = vsw_dp_add_switch(d, name, (uint32_t)mtu, vmq);
	if (e)
		conf_fail_at(err, c, first, e == -EEXIST ? "a switch of that name exists already"
							 : "too many switches (8 at most)");
	return e;
}

static int
load_portgroup(struct vsw_dp *d, struct conf *c, long g, size_t first, struct conf_error *err)
{
	char key[64];
	const char *name, *sw;
	uint64_t vlan;
	int e;

#define PKEY(k) (snprintf(key, sizeof(key), "portgroup%ld." k, g), conf_mark_used(c, key), key)
	name = conf_get(c, PKEY("name"));
	sw = conf_get(c, PKEY("vswitch"));
	e = conf_get_u64(c, PKEY("vlan"), 0, VLAN_TRUNK, 0, &vlan, err);
#undef PKEY
	if (e)
		return e;
	if (!name || !*name || strlen(name) >= VSW_NAME || !conf_text(name)) {
		conf_fail_at(err, c, first,
			     "a port group needs a name of 1 to 31 printable ASCII characters");
		return -EINVAL;
	}
	e = vsw_dp_add_portgroup(d, name, sw ? sw : d->sw[0].name, (uint16_t)vlan);
	if (e)
		conf_fail_at(err, c, first,
			     e == -ENOENT   ? "no switch of that name (portgroupN.vswitch)"
			     : e == -EEXIST ? "a port group of that name exists already"
					    : "too many port groups (64 at most)");
	return e;
}

static int
load_uplink(struct vsw_dp *d, struct conf *c, long g, size_t first, struct conf_error *err)
{
	char key[64];
	const char *name, *dev, *sw;
	struct uplink_port *u;
	int s;

#define UKEY(k) (snprintf(key, sizeof(key), "uplink%ld." k, g), conf_mark_used(c, key), key)
	bool xdp;
	int e;

	name = conf_get(c, UKEY("name"));
	dev = conf_get(c, UKEY("device"));
	sw = conf_get(c, UKEY("vswitch"));
	e = conf_get_bool(c, UKEY("xdp"), true, &xdp, err);
#undef UKEY
	if (e)
		return e;
	if (!dev || !*dev || strlen(dev) >= IFNAMSIZ || !conf_text(dev)) {
		conf_fail_at(err, c, first, "an uplink needs a device (uplinkN.device, a host interface)");
		return -EINVAL;
	}
	if (name && (!*name || strlen(name) >= sizeof(u->p.name) || !conf_text(name))) {
		conf_fail_at(err, c, first, "uplinkN.name is 1 to 31 printable ASCII characters");
		return -EINVAL;
	}
	if ((s = find_switch(d, sw ? sw : d->sw[0].name)) < 0) {
		conf_fail_at(err, c, first, "no switch of that name (uplinkN.vswitch)");
		return s;
	}
	if (d->nuplink == VSW_MAX_UPLINKS || !(u = calloc(1, sizeof(*u)))) {
		conf_fail_at(err, c, first, "too many uplinks (8 at most)");
		return -ENOSPC;
	}
	u->fd = -1;
	u->sw = (unsigned)s;
	u->xdp = xdp;
	snprintf(u->device, sizeof(u->device), "%s", dev);
	if (name)
		snprintf(u->p.name, sizeof(u->p.name), "%s", name);
	else
		snprintf(u->p.name, sizeof(u->p.name), "vmnic%ld", g);
	/* RDMA devices name their uplink: one name, one uplink. */
	for (unsigned i = 0; i < d->nuplink; i++)
		if (!strcmp(d->uplink[i]->p.name, u->p.name)) {
			free(u);
			conf_fail_at(err, c, first, "an uplink of that name exists already");
			return -EEXIST;
		}
	d->uplink[d->nuplink++] = u;
	return 0;
}

static int
load_vmk(struct vsw_dp *d, struct conf *c, long g, size_t first, struct conf_error *err)
{
	char key[64];
	const char *name, *pg, *ip;
	const struct vsw_portgroup *p;
	struct vmk_port *v;
	struct in_addr a;
	unsigned len;

#define VKEY(k) (snprintf(key, sizeof(key), "vmk%ld." k, g), conf_mark_used(c, key), key)
	name = conf_get(c, VKEY("name"));
	pg = conf_get(c, VKEY("portgroup"));
	ip = conf_get(c, VKEY("ip"));
#undef VKEY
	if (!pg || !(p = find_pg(d, pg))) {
		conf_fail_at(err, c, first, "a VMkernel adapter needs a port group that exists (vmkN.portgroup)");
		return -EINVAL;
	}
	if (name && (!*name || strlen(name) >= IFNAMSIZ || !conf_text(name))) {
		conf_fail_at(err, c, first, "vmkN.name is an interface name (15 printable ASCII "
					    "characters at most)");
		return -EINVAL;
	}
	if (ip && *ip && (strlen(ip) >= sizeof(v->ip) || vmk_cidr_parse(ip, &a, &len))) {
		conf_fail_at(err, c, first, "vmkN.ip is an IPv4 address and prefix length "
					    "(a.b.c.d/len, len 0 to 32)");
		return -EINVAL;
	}
	if (d->nvmk == VSW_MAX_VMKS || !(v = calloc(1, sizeof(*v)))) {
		conf_fail_at(err, c, first, "too many VMkernel adapters (8 at most)");
		return -ENOSPC;
	}
	v->fd = -1;
	v->sw = p->sw;
	v->p.vlan = p->vlan;
	snprintf(v->portgroup, sizeof(v->portgroup), "%s", p->name);
	snprintf(v->ip, sizeof(v->ip), "%s", ip ? ip : "");
	if (name)
		snprintf(v->p.name, sizeof(v->p.name), "%s", name);
	else
		snprintf(v->p.name, sizeof(v->p.name), "vmk%ld", g);
	for (unsigned i = 0; i < d->nvmk; i++) /* one TAP interface each */
		if (!strcmp(d->vmk[i]->p.name, v->p.name)) {
			free(v);
			conf_fail_at(err, c, first, "a VMkernel adapter of that name exists already");
			return -EEXIST;
		}
	d->vmk[d->nvmk++] = v;
	return 0;
}

static int
load_vhostuser(struct vsw_dp *d, struct conf *c, long g, size_t first, struct conf_error *err)
{
	char key[64];
	const char *name, *pg, *path, *mac;
	struct vsw_vhostuser *h;

#define HKEY(k) (snprintf(key, sizeof(key), "vhostuser%ld." k, g), conf_mark_used(c, key), key)
	name = conf_get(c, HKEY("name"));
	pg = conf_get(c, HKEY("portgroup"));
	path = conf_get(c, HKEY("path"));
	mac = conf_get(c, HKEY("address"));
#undef HKEY
	if (!path || !*path || strlen(path) >= sizeof(h->path) || !conf_text(path)) {
		conf_fail_at(err, c, first, "a vhost-user port needs a socket path (vhostuserN.path, "
					    "up to 107 printable ASCII characters)");
		return -EINVAL;
	}
	if (!pg || !find_pg(d, pg)) {
		conf_fail_at(err, c, first, "a vhost-user port needs a port group that exists "
					    "(vhostuserN.portgroup)");
		return -EINVAL;
	}
	if (name && (!*name || strlen(name) >= VSW_NAME || !conf_text(name))) {
		conf_fail_at(err, c, first, "vhostuserN.name is 1 to 31 printable ASCII characters");
		return -EINVAL;
	}
	if (d->nvhu == VSW_MAX_VHOSTUSER) {
		conf_fail_at(err, c, first, "too many vhost-user ports (16 at most)");
		return -ENOSPC;
	}
	h = &d->vhu[d->nvhu];
	memset(h, 0, sizeof(*h));
	if (mac && (eth_mac_parse(mac, h->mac) || eth_is_mcast(h->mac))) {
		conf_fail_at(err, c, first, "vhostuserN.address is a unicast MAC address "
					    "(like 02:00:00:00:00:01)");
		return -EINVAL;
	}
	snprintf(h->path, sizeof(h->path), "%s", path);
	snprintf(h->portgroup, sizeof(h->portgroup), "%s", pg);
	if (name)
		snprintf(h->name, sizeof(h->name), "%s", name);
	else
		snprintf(h->name, sizeof(h->name), "vhostuser%ld", g);
	d->nvhu++;
	return 0;
}

int
vsw_dp_open_sockets(struct vsw_dp *d, struct loop *loop)
{
	int err, ret = 0;

	for (unsigned i = 0; i < d->nvhu; i++) {
		struct vsw_vhostuser *h = &d->vhu[i];

		err = vnet_new(d, loop, h->portgroup, h->name, h->mac, h->path, 0, &h->port);
		if (err) {
			log_err("vhost-user port %s: %s: %s", h->name, h->path, strerror(-err));
			ret = ret ?: err;
			continue;
		}
		log_info("vhost-user port %s on \"%s\": %s", h->name, h->portgroup, h->path);
	}
	return ret;
}

int
vsw_dp_load(struct vsw_dp *d, struct conf *c, struct conf_error *err)
{
	int e;

	bool own = false;

	for (size_t i = 0; i < conf_count(c); i++)
		own |= conf_group(conf_key(c, i), "vswitch") >= 0;
	/* Without switches of its own, the file's ports go on the default ones. */
	if (own) {
		memset(d, 0, sizeof(*d));
		d->ep = -1;
		e = each_group(c, "vswitch", load_switch, d, err);
	} else {
		e = vsw_dp_init(d);
	}
	e = e ?: each_group(c, "portgroup", load_portgroup, d, err);
	e = e ?: each_group(c, "uplink", load_uplink, d, err);
	e = e ?: each_group(c, "vmk", load_vmk, d, err);
	e = e ?: each_group(c, "vhostuser", load_vhostuser, d, err);
	if (e)
		vsw_dp_stop(d);
	return e;
}

/* ---------------------------------------------------------------------- */
/* Ports the thread drives */

static void capture_port_gone(struct vsw_port *p);
static int vmk_start(struct vsw_dp *d, struct vmk_port *v);

int
vsw_dp_call(struct vsw_dp *d, cmdq_fn *fn, void *arg)
{
	return d->running ? cmdq_call(&d->cmds, fn, arg) : fn(d, arg);
}

int
vsw_dp_watch(struct vsw_dp *d, struct dp_port *p, int fd, uint32_t events, bool on)
{
	struct epoll_event ev = { .events = events, .data.ptr = p };

	if (epoll_ctl(d->ep, on ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, fd, &ev) < 0)
		return -errno;
	return 0;
}

/*
 * VMQ at the NIC for switch @s: every uplink of it with the XDP program
 * gets a filter and a slot per port with a MAC (not trunks: their frames
 * carry VLANs of their own), while the switch's VMQ is on; none when it is
 * off (one queue, the AF_PACKET ring). Made anew after every change.
 */
static void
vmq_sync(struct vsw_dp *d, unsigned s)
{
	for (unsigned k = 0; k < d->nuplink; k++) {
		struct uplink_port *u = d->uplink[k];
		int err = 0;

		if (u->sw != s || !u->xsk)
			continue;
		uplink_vmq_clear(u, d->ep);
		if (!d->sw[s].vmq)
			continue;
		for (size_t i = 0; i < d->nport && !err; i++)
			if (d->port[i]->sw == s && d->port[i]->p.vlan != VLAN_TRUNK)
				err = uplink_vmq_add(u, d->ep, d->port[i]->mac, d->port[i]->p.vlan);
		for (unsigned i = 0; i < d->nvmk && !err; i++)
			if (d->vmk[i]->sw == s && d->vmk[i]->p.vlan != VLAN_TRUNK)
				err = uplink_vmq_add(u, d->ep, d->vmk[i]->mac, d->vmk[i]->p.vlan);
		if (err)
			log_rl(LOG_LVL_WARN, "uplink %s: VMQ at the NIC: %s (the other ports' "
					     "frames take the default queue)",
			       u->p.name, strerror(-err));
	}
}

static void
vmq_sync_all(struct vsw_dp *d)
{
	for (unsigned s = 0; s < d->nsw; s++)
		vmq_sync(d, s);
}

struct add_req {
	struct dp_port *p;
	const struct vsw_portgroup *pg;
};

static int
do_add(void *ctx, void *arg)
{
	struct vsw_dp *d = ctx;
	struct add_req *r = arg;
	struct dp_port *p = r->p;
	struct vsw *sw = &d->sw[r->pg->sw];
	int id, err;

	if (d->nport == d->cap) {
		size_t cap = d->cap ? d->cap * 2 : 16;
		struct dp_port **n = realloc(d->port, cap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		d->port = n;
		d->cap = cap;
	}
	p->sw = r->pg->sw;
	p->p.vlan = r->pg->vlan;
	strcpy(p->portgroup, r->pg->name);
	if ((id = vsw_port_add(sw, &p->p)) < 0)
		return id;
	if (!p->p.name[0])
		snprintf(p->p.name, sizeof(p->p.name), "vnic%d", id);
	if ((err = vsw_port_mac(sw, &p->p, p->mac)) ||
	    (p->wake_fd >= 0 && (err = vsw_dp_watch(d, p, p->wake_fd, EPOLLIN, true)))) {
		vsw_port_remove(sw, &p->p);
		return err;
	}
	d->port[d->nport++] = p;
	vmq_sync(d, p->sw);
	return 0;
}

int
vsw_dp_add_port(struct vsw_dp *d, struct dp_port *p, const char *pg)
{
	struct add_req r = { p, find_pg(d, pg) };
	static const uint8_t zero[ETH_MAC_LEN];

	if (!r.pg)
		return -ENOENT;
	if (!memcmp(p->mac, zero, ETH_MAC_LEN)) {
		/* Locally administered, unicast, from a counter: unique on this host. */
		static _Atomic uint32_t next;
		uint32_t n = atomic_fetch_add(&next, 1) + 1;
		uint8_t m[ETH_MAC_LEN] = { 0x02, 0x56, 0x4d, (uint8_t)(n >> 16), (uint8_t)(n >> 8),
					(uint8_t)n };
		memcpy(p->mac, m, ETH_MAC_LEN);
	}
	if (eth_is_mcast(p->mac))
		return -EINVAL;
	return vsw_dp_call(d, do_add, &r);
}

static int
do_remove(void *ctx, void *arg)
{
	struct vsw_dp *d = ctx;
	struct dp_port *p = arg;

	for (size_t i = 0; i < d->nport; i++)
		if (d->port[i] == p) {
			d->port[i] = d->port[--d->nport];
			break;
		}
	if (p->wake_fd >= 0)
		vsw_dp_watch(d, p, p->wake_fd, 0, false);
	capture_port_gone(&p->p);
	vsw_port_remove(&d->sw[p->sw], &p->p);
	vmq_sync(d, p->sw);
	p->dops->destroy(p);
	return 0;
}

void
vsw_dp_remove_port(struct vsw_dp *d, struct dp_port *p)
{
	if (!d->running) {
		do_remove(d, p);
		return;
	}
	if (cmdq_post(&d->cmds, do_remove, p))
		log_err("vswitch: out of memory removing %s", p->p.name);
}

/* Process vNICs: records of one frame each on a queue pair. */

static int
vnic_enqueue(struct vsw_port *p, const struct iovec *iov, int iovcnt, size_t len)
{
	struct vnic_port *v = (struct vnic_port *)p;
	ssize_t n;

	(void)len;
	if (v->dp.dead)
		return -ENOBUFS;
	/* Published at the end of the batch (vnic_flush), one index store for many frames. */
	n = qp_msg_sendv(v->qp, iov, iovcnt, QP_DONTWAIT | QP_MORE);
	return n < 0 ? -ENOBUFS : 0;
}

/* Up to @max frames, each read in place. */
static int
vnic_drain(struct dp_port *p, struct vsw *sw, int max, int64_t now)
{
	struct vnic_port *v = (struct vnic_port *)p;
	struct iovec iov[2];
	int n;

	for (n = 0; n < max; n++) {
		ssize_t len = qp_msg_peek(v->qp, iov);

		if (len < 0) {
			if (len != -EAGAIN) {
				/* -ESHUTDOWN: the process closed; -EPROTO: it broke its ring. */
				if (len == -EPROTO)
					log_rl(LOG_LVL_WARN, "vswitch: %s (pid %d): %s", p->p.name,
					       (int)v->pid, qp_broken_reason(v->qp));
				p->dead = true;
				p->p.up = false;
			}
			break;
		}
		vsw_input(sw, &p->p, iov, 2, (size_t)len, now);
	}
	qp_msg_consume(v->qp);
	return n;
}

static void
vnic_flush(struct dp_port *p)
{
	qp_flush(((struct vnic_port *)p)->qp);
}

static bool
vnic_arm(struct dp_port *p)
{
	return qp_arm(((struct vnic_port *)p)->qp, QP_EV_READ) != 0;
}

static void
vnic_woken(struct dp_port *p, bool fired)
{
	if (fired)
		qp_ack(((struct vnic_port *)p)->qp);
}

static void
vnic_json(const struct dp_port *p, json_t *o)
{
	json_object_set_new(o, "pid", json_integer((json_int_t)((const struct vnic_port *)p)->pid));
}

static void
vnic_destroy(struct dp_port *p)
{
	qp_close(((struct vnic_port *)p)->qp);
	free(p);
}

static const struct vsw_port_ops vnic_ops = { .enqueue = vnic_enqueue };
static const struct dp_port_ops vnic_dops = { .kind = "vnic",
					      .drain = vnic_drain,
					      .flush = vnic_flush,
					      .arm = vnic_arm,
					      .woken = vnic_woken,
					      .json = vnic_json,
					      .destroy = vnic_destroy };

int
vsw_dp_add_vnic(struct vsw_dp *d, struct vnic_port *v, const char *pg)
{
	int fd = qp_poll_fd(v->qp);

	if (fd < 0)
		return fd;
	v->dp.p.kind = VSW_PORT_VNIC;
	v->dp.p.ops = &vnic_ops;
	v->dp.p.up = true;
	v->dp.dops = &vnic_dops;
	v->dp.wake_fd = fd;
	return vsw_dp_add_port(d, &v->dp, pg);
}

/* ---------------------------------------------------------------------- */
/* Captures */

static void
capture_mirror(struct vsw_port *p, const struct iovec *iov, int iovcnt, size_t len, bool to_port)
{
	struct vsw_capture *c = p->mirror_ctx;
	struct wire_captured h = { .len = (uint32_t)len, .to_port = to_port, .missed = c->missed };
	struct iovec v[6] = { { &h, sizeof(h) } };
	size_t left = c->snaplen && c->snaplen < len ? c->snaplen : len;
	struct timespec ts;
	int n = 1;

	clock_gettime(CLOCK_REALTIME, &ts);
	h.ts_ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
	for (int i = 0; i < iovcnt && n < 6 && left; i++) {
		size_t k = iov[i].iov_len < left ? iov[i].iov_len : left;
		v[n++] = (struct iovec){ iov[i].iov_base, k };
		left -= k;
	}
	if (qp_msg_sendv(c->qp, v, n, QP_DONTWAIT | QP_MORE) < 0)
		c->missed++;
}

/* Every port the dataplane has, by name. */
static struct vsw_port *
port_by_name(struct vsw_dp *d, const char *name)
{
	for (size_t k = 0; k < d->nport; k++)
		if (!strcmp(d->port[k]->p.name, name))
			return &d->port[k]->p;
	for (unsigned k = 0; k < d->nuplink; k++)
		if (!strcmp(d->uplink[k]->p.name, name))
			return &d->uplink[k]->p;
	for (unsigned k = 0; k < d->nvmk; k++)
		if (!strcmp(d->vmk[k]->p.name, name))
			return &d->vmk[k]->p;
	return NULL;
}

static int
do_capture_start(void *ctx, void *arg)
{
	struct vsw_dp *d = ctx;
	struct vsw_capture *c = arg;
	struct vsw_port *p = port_by_name(d, c->port);

	if (!p)
		return -ENOENT;
	if (p->mirror)
		return -EBUSY;
	c->p = p;
	p->mirror_ctx = c;
	p->mirror = capture_mirror;
	c->next = d->captures;
	d->captures = c;
	return 0;
}

static int
do_capture_stop(void *ctx, void *arg)
{
	struct vsw_dp *d = ctx;
	struct vsw_capture *c = arg, **pp;

	for (pp = &d->captures; *pp; pp = &(*pp)->next)
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	if (c->p) {
		c->p->mirror = NULL;
		c->p->mirror_ctx = NULL;
	}
	qp_close(c->qp);
	free(c);
	return 0;
}

/* Port @p goes: its capture ends (the reader sees the end of the stream). */
static void
capture_port_gone(struct vsw_port *p)
{
	struct vsw_capture *c = p->mirror_ctx;

	if (!c)
		return;
	qp_shutdown(c->qp, SHUT_WR);
	c->p = NULL;
	p->mirror = NULL;
	p->mirror_ctx = NULL;
}

int
vsw_dp_capture_start(struct vsw_dp *d, struct vsw_capture *c)
{
	return d->running ? cmdq_call(&d->cmds, do_capture_start, c) : do_capture_start(d, c);
}

void
vsw_dp_capture_stop(struct vsw_dp *d, struct vsw_capture *c)
{
	if (!d->running)
		do_capture_stop(d, c);
	else if (cmdq_post(&d->cmds, do_capture_stop, c))
		log_err("vswitch: out of memory stopping a capture");
}

/* ---------------------------------------------------------------------- */
/* The thread */

static void
sleep_until_work(struct vsw_dp *d)
{
	struct epoll_event ev[64];
	int64_t deadline = INT64_MAX, now;
	int n, ms = 1000;

	for (size_t i = 0; i < d->nport; i++) {
		struct dp_port *p = d->port[i];

		if (!p->dead && p->dops->arm && p->dops->arm(p))
			return; /* something arrived meanwhile */
	}
	if (d->roce && reng_arm(d->roce, &deadline))
		return;
	now = clock_ns();
	if (deadline <= now)
		ms = 0;
	else if (deadline - now < 1000000000LL) /* the RoCE QPs' timers */
		ms = (int)((deadline - now + 999999) / 1000000);
	n = epoll_wait(d->ep, ev, 64, ms);
	if (d->roce)
		reng_woken(d->roce); /* its rings' wakeups, taken */
	for (int i = 0; i < n; i++)
		if (ev[i].data.ptr)
			((struct dp_port *)ev[i].data.ptr)->fired = true;
	for (size_t i = 0; i < d->nport; i++) {
		struct dp_port *p = d->port[i];

		if (p->dops->woken)
			p->dops->woken(p, p->fired);
		p->fired = false;
	}
}

static int
do_stop(void *ctx, void *arg)
{
	(void)arg;
	((struct vsw_dp *)ctx)->stop = true;
	return 0;
}

static void *
dp_main(void *arg)
{
	struct vsw_dp *d = arg;
	int64_t idle_since = clock_ns(), vmk_read = 0;

	while (!d->stop) {
		int64_t now = clock_ns();
		int work = 0;

		cmdq_run(&d->cmds, d);
		for (size_t i = 0; i < d->nport; i++) {
			struct dp_port *p = d->port[i];

			if (!p->dead)
				work += p->dops->drain(p, &d->sw[p->sw], DP_BATCH, now);
		}
		for (unsigned i = 0; i < d->nuplink; i++) {
			struct uplink_port *u = d->uplink[i];

			work += uplink_drain(u, &d->sw[u->sw], DP_BATCH, now);
			if (u->nslots)
				work += uplink_vmq_drain(u, &d->sw[u->sw], DP_BATCH, now);
		}
		/*
		 * A TAP is read with a system call: not on every poll of idle
		 * rings (they need none), at most once in DP_VMK_EVERY_NS; but
		 * on every loop of a busy switch, whose loops are longer, so
		 * that the host's own traffic (TCP's acknowledgements) is not
		 * held back behind a long burst. After a sleep the epoll set
		 * has woken us for it anyway.
		 */
		if (now - vmk_read >= DP_VMK_EVERY_NS) {
			vmk_read = now;
			for (unsigned i = 0; i < d->nvmk; i++)
				work += vmk_drain(d->vmk[i], &d->sw[d->vmk[i]->sw], DP_BATCH, now);
		}
		if (d->roce)
			work += reng_poll(d->roce, now);
		for (unsigned s = 0; s < d->nsw; s++)
			if (!d->sw[s].vmq && d->sw[s].defq_n)
				vsw_sort(&d->sw[s], now);
		for (size_t i = 0; i < d->nport; i++)
			if (d->port[i]->dops->flush)
				d->port[i]->dops->flush(d->port[i]);
		for (unsigned i = 0; i < d->nuplink; i++)
			uplink_kick(d->uplink[i]);
		for (struct vsw_capture *c = d->captures; c; c = c->next)
			qp_flush(c->qp);
		if (now - d->aged_ns > DP_AGE_EVERY_NS) {
			for (unsigned s = 0; s < d->nsw; s++)
				fdb_age(&d->sw[s].fdb, now);
			d->aged_ns = now;
		}
		if (work) {
			idle_since = now;
			continue;
		}
		if (now - idle_since < DP_SPIN_NS)
			continue;
		sleep_until_work(d);
		idle_since = clock_ns();
		vmk_read = 0; /* what woke us may be a VMkernel adapter's frame */
	}
	return NULL;
}

int
vsw_dp_start(struct vsw_dp *d)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
	int err;

	if ((err = cmdq_init(&d->cmds)))
		return err;
	d->started = true;
	d->ep = epoll_create1(EPOLL_CLOEXEC);
	if (d->ep < 0 || epoll_ctl(d->ep, EPOLL_CTL_ADD, d->cmds.ev, &ev) < 0)
		return -errno;
	if ((err = reng_create(&d->roce)))
		return err;
	reng_set_epoll(d->roce, d->ep);
	for (unsigned i = 0; i < d->nuplink; i++) {
		struct uplink_port *u = d->uplink[i];
		struct epoll_event uev = { .events = EPOLLIN, .data.ptr = NULL };

		if ((err = uplink_open(u)) == -ENODEV) {
			/* Not there (yet): the daemon runs without it, as if not configured. */
			log_warn("uplink %s: device %s does not exist: %s is left out until vmfabricd "
				 "restarts (its RDMA device, if any, is down)",
				 u->p.name, u->device, u->p.name);
			free(u);
			memmove(&d->uplink[i], &d->uplink[i + 1],
				(d->nuplink - i - 1) * sizeof(d->uplink[0]));
			d->nuplink--;
			i--;
			continue;
		}
		if (err) {
			log_err("uplink %s: device %s: %s", u->p.name, u->device, strerror(-err));
			return err;
		}
		if ((err = vsw_port_add(&d->sw[u->sw], &u->p)) < 0)
			return err;
		if (epoll_ctl(d->ep, EPOLL_CTL_ADD, u->fd, &uev) < 0)
			return -errno;
		log_info("uplink %s: %s on %s", u->p.name, u->device, d->sw[u->sw].name);
		if (u->xdp)
			(void)uplink_vmq_open(u); /* without it, every frame takes the ring */
	}
	for (unsigned i = 0; i < d->nvmk; i++)
		if ((err = vmk_start(d, d->vmk[i])))
			return err;
	vmq_sync_all(d);
	d->aged_ns = clock_ns();
	err = -pthread_create(&d->thread, NULL, dp_main, d);
	d->running = !err;
	return err;
}

void
vsw_dp_stop(struct vsw_dp *d)
{
	while (d->nvhu) {
		struct vsw_vhostuser *h = &d->vhu[--d->nvhu];

		vnet_free(h->port); /* its frontend disconnected, its port out */
		h->port = NULL;
	}
	if (d->running) {
		cmdq_call(&d->cmds, do_stop, NULL);
		pthread_join(d->thread, NULL);
		d->running = false;
	}
	while (d->captures)
		do_capture_stop(d, d->captures);
	while (d->nport)
		do_remove(d, d->port[0]);
	free(d->port);
	d->port = NULL;
	while (d->nuplink) {
		struct uplink_port *u = d->uplink[--d->nuplink];

		uplink_close(u);
		free(u);
	}
	while (d->nvmk) {
		struct vmk_port *v = d->vmk[--d->nvmk];

		vmk_close(v);
		free(v);
	}
	reng_destroy(d->roce); /* its QPs went with their verbs contexts */
	d->roce = NULL;
	for (unsigned s = 0; s < d->nsw; s++)
		vsw_free(&d->sw[s]);
	d->nsw = d->npg = 0;
	if (d->started) {
		if (d->ep >= 0)
			close(d->ep);
		cmdq_fini(&d->cmds);
		d->started = false;
	}
	d->ep = -1;
}

/* ---------------------------------------------------------------------- */
/* Listings: built on the thread, which owns what they show. */

static json_t *
counters(const struct vsw_counters *c)
{
	json_t *o = json_pack("{s:I, s:I, s:I, s:I, s:I}", "rx_packets",
			      (json_int_t)atomic_load(&c->rx_pkts), "rx_bytes",
			      (json_int_t)atomic_load(&c->rx_bytes), "tx_packets",
			      (json_int_t)atomic_load(&c->tx_pkts), "tx_bytes",
			      (json_int_t)atomic_load(&c->tx_bytes), "flooded",
			      (json_int_t)atomic_load(&c->flooded));
	json_t *drops = json_object();
	uint64_t total = 0;

	for (int i = 0; i < VSW_DROP_N; i++) {
		uint64_t n = atomic_load(&c->drops[i]);
		json_object_set_new(drops, vsw_drop_name[i], json_integer((json_int_t)n));
		total += n;
	}
	json_object_set_new(o, "drops", json_integer((json_int_t)total));
	json_object_set_new(o, "drops_by_reason", drops);
	return o;
}

/* What every port's listing has: name, kind, switch, port group, VLAN, MAC, counters. */
static json_t *
port_json(const struct vsw_dp *d, const struct vsw_port *p, unsigned sw, const char *kind,
	  const char *pg, const uint8_t *m)
{
	json_t *o = json_pack("{s:s, s:s, s:s, s:I, s:b}", "name", p->name, "kind", kind,
			      "vswitch", d->sw[sw].name, "vlan_id", (json_int_t)p->vlan, "up", p->up);
	char mac[18];

	if (pg)
		json_object_set_new(o, "portgroup", json_string(pg));
	if (m) {
		snprintf(mac, sizeof(mac), "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3],
			 m[4], m[5]);
		json_object_set_new(o, "mac", json_string(mac));
	}
	json_object_update_new(o, counters(&p->c));
	return o;
}

/* The VMkernel adapters, as ports with their address. */
static void
vmk_json(const struct vsw_dp *d, json_t *arr)
{
	for (unsigned k = 0; k < d->nvmk; k++) {
		const struct vmk_port *v = d->vmk[k];
		json_t *o = port_json(d, &v->p, v->sw, "vmk", v->portgroup, v->mac);

		json_object_set_new(o, "ip", json_string(v->ip));
		json_array_append_new(arr, o);
	}
}

static unsigned pg_ports(const struct vsw_dp *d, const char *pg);

struct mgmt_req {
	const char *cmd;
	json_t *out;
};

static int
do_mgmt(void *ctx, void *arg)
{
	struct vsw_dp *d = ctx;
	struct mgmt_req *r = arg;
	json_t *arr = json_array();

	if (!strcmp(r->cmd, "network.vswitch.list")) {
		for (unsigned s = 0; s < d->nsw; s++) {
			struct vsw *sw = &d->sw[s];
			unsigned ports = 0;
			json_t *pgs = json_array();

			for (unsigned i = 0; i < sw->nports; i++)
				ports += sw->port[i] != NULL;
			for (unsigned i = 0; i < d->npg; i++)
				if (d->pg[i].sw == s)
					json_array_append_new(pgs, json_string(d->pg[i].name));
			json_array_append_new(
				arr, json_pack("{s:s, s:I, s:s, s:I, s:o, s:I, s:I, s:I, s:I, s:I}",
					       "name", sw->name, "mtu", (json_int_t)sw->mtu, "vmq",
					       sw->vmq ? "on" : "off", "ports", (json_int_t)ports,
					       "portgroups", pgs, "fdb_entries",
					       (json_int_t)sw->fdb.n, "fdb_full",
					       (json_int_t)sw->fdb.full, "forwarded",
					       (json_int_t)atomic_load(&sw->forwarded), "flooded",
					       (json_int_t)atomic_load(&sw->flooded_frames),
					       "default_queue_sorted",
					       (json_int_t)atomic_load(&sw->sorted)));
		}
		r->out = json_pack("{s:o}", "vswitches", arr);
	} else if (!strcmp(r->cmd, "network.vmk.list")) {
		vmk_json(d, arr);
		r->out = json_pack("{s:o}", "interfaces", arr);
	} else if (!strcmp(r->cmd, "network.nic.list")) {
		for (unsigned k = 0; k < d->nuplink; k++) {
			struct uplink_port *u = d->uplink[k];
			struct uplink_info i;
			char mac[18];
			json_t *o = json_pack("{s:s, s:s, s:s}", "name", u->p.name, "device", u->device,
					      "vswitch", d->sw[u->sw].name);

			if (!uplink_info(u, &i)) {
				snprintf(mac, sizeof(mac), "%02x:%02x:%02x:%02x:%02x:%02x", i.mac[0],
					 i.mac[1], i.mac[2], i.mac[3], i.mac[4], i.mac[5]);
				json_object_update_new(
					o, json_pack("{s:s, s:s, s:I, s:s, s:s, s:I, s:I, s:I}", "admin",
						     i.admin_up ? "up" : "down", "link",
						     i.link_up ? "up" : "down", "mtu", (json_int_t)i.mtu,
						     "mac", mac, "vmq_nic", i.vmq_nic, "vmq_queues",
						     (json_int_t)u->nslots, "vmq_nic_frames",
						     (json_int_t)i.vmq_hit, "default_queue_frames",
						     (json_int_t)i.vmq_pass));
			} else {
				json_object_set_new(o, "link", json_string("gone"));
			}
			json_array_append_new(arr, o);
		}
		r->out = json_pack("{s:o}", "nics", arr);
	} else if (!strcmp(r->cmd, "network.portgroup.list")) {
		for (unsigned i = 0; i < d->npg; i++) {
			unsigned ports = pg_ports(d, d->pg[i].name);

			json_array_append_new(arr, json_pack("{s:s, s:s, s:I, s:I}", "name",
							     d->pg[i].name, "vswitch",
							     d->sw[d->pg[i].sw].name, "vlan_id",
							     (json_int_t)d->pg[i].vlan, "ports",
							     (json_int_t)ports));
		}
		r->out = json_pack("{s:o}", "portgroups", arr);
	} else {
		for (size_t k = 0; k < d->nport; k++) {
			struct dp_port *p = d->port[k];
			json_t *o = port_json(d, &p->p, p->sw, p->dops->kind, p->portgroup, p->mac);

			if (p->dops->json)
				p->dops->json(p, o);
			json_array_append_new(arr, o);
		}
		for (unsigned k = 0; k < d->nuplink; k++) {
			struct uplink_port *u = d->uplink[k];
			json_t *o = port_json(d, &u->p, u->sw, "uplink", NULL, NULL);

			json_object_set_new(o, "device", json_string(u->device));
			json_array_append_new(arr, o);
		}
		vmk_json(d, arr);
		r->out = json_pack("{s:o}", "ports", arr);
	}
	return r->out ? 0 : -ENOMEM;
}

/* ---------------------------------------------------------------------- */
/* Changes at run time (the control plane asks; the thread, which owns the switches, does) */

struct change {
	const char *cmd;
	const char *vswitch, *portgroup, *vlan, *mtu, *vmq, *interface, *ipv4; /* NULL: not given */
	char buf[256];
	char why[128];
	json_t *out;
};

/* Split "key=value" lines into @c. -EINVAL for an unknown key. */
static int
change_parse(struct change *c, const char *arg)
{
	static const char *const keys[] = { "vswitch", "portgroup", "vlan", "mtu",
					    "vmq",     "interface", "ipv4" };
	const char *v[7] = { 0 };
	int err;

	snprintf(c->buf, sizeof(c->buf), "%s", arg ? arg : "");
	if ((err = conf_kv_lines(c->buf, keys, v, 7)))
		return err;
	c->vswitch = v[0], c->portgroup = v[1], c->vlan = v[2], c->mtu = v[3], c->vmq = v[4];
	c->interface = v[5], c->ipv4 = v[6];
	return 0;
}

static int
fail(struct change *c, int err, const char *why)
{
	snprintf(c->why, sizeof(c->why), "%s", why);
	return err;
}

/* A number in [lo, hi], or -1. */
static long
number(const char *s, long lo, long hi)
{
	char *end;
	long v;

	if (!s || !*s)
		return -1;
	v = strtol(s, &end, 10);
	return *end || v < lo || v > hi ? -1 : v;
}

static int
vmq_value(const char *s)
{
	if (!strcmp(s, "on") || !strcasecmp(s, "true"))
		return 1;
	if (!strcmp(s, "off") || !strcasecmp(s, "false"))
		return 0;
	return -1;
}

static unsigned
pg_ports(const struct vsw_dp *d, const char *pg)
{
	unsigned n = 0;

	for (size_t k = 0; k < d->nport; k++)
		n += !strcmp(d->port[k]->portgroup, pg);
	for (unsigned k = 0; k < d->nvmk; k++)
		n += !strcmp(d->vmk[k]->portgroup, pg);
	return n;
}

/* A vhost-user socket's port joins its group when a frontend connects: the group must stay. */
static bool
pg_has_socket(const struct vsw_dp *d, const char *pg)
{
	for (unsigned k = 0; k < d->nvhu; k++)
		if (!strcmp(d->vhu[k].portgroup, pg))
			return true;
	return false;
}

/* Start a VMkernel adapter's port (made by load_vmk() or network.vmk.add). */
static int
vmk_start(struct vsw_dp *d, struct vmk_port *v)
{
	struct epoll_event vev = { .events = EPOLLIN, .data.ptr = NULL };
	int err;

	if ((err = vmk_open(v))) {
		log_err("VMkernel adapter %s: %s", v->p.name, strerror(-err));
		return err;
	}
	if ((err = vsw_port_add(&d->sw[v->sw], &v->p)) < 0 ||
	    (err = vsw_port_mac(&d->sw[v->sw], &v->p, v->mac))) {
		vsw_port_remove(&d->sw[v->sw], &v->p);
		vmk_close(v);
		return err;
	}
	if (epoll_ctl(d->ep, EPOLL_CTL_ADD, v->fd, &vev) < 0) {
		err = -errno;
		vsw_port_remove(&d->sw[v->sw], &v->p);
		vmk_close(v);
		return err;
	}
	v->roce = d->roce;
	log_info("VMkernel adapter %s on \"%s\"%s%s", v->p.name, v->portgroup, v->ip[0] ? ", " : "",
		 v->ip);
	return 0;
}

static int
vmk_change(struct vsw_dp *d, struct change *c)
{
	struct vmk_port *v = NULL;
	struct in_addr a;
	unsigned i, len;
	int err;

	if (!c->interface || !*c->interface || strlen(c->interface) >= IFNAMSIZ)
		return fail(c, -EINVAL, "--interface-name is an interface name (15 characters at most)");
	for (i = 0; i < d->nvmk; i++)
		if (!strcmp(d->vmk[i]->p.name, c->interface))
			v = d->vmk[i];
	if (!strcmp(c->cmd, "network.vmk.add")) {
		const struct vsw_portgroup *pg = c->portgroup ? find_pg(d, c->portgroup) : NULL;

		if (v)
			return fail(c, -EEXIST, "a VMkernel adapter of that name exists");
		if (!pg)
			return fail(c, -ENOENT, "--portgroup-name: no port group of that name");
		if (c->ipv4 && (strlen(c->ipv4) >= sizeof(v->ip) || vmk_cidr_parse(c->ipv4, &a, &len)))
			return fail(c, -EINVAL, "--ipv4 is a.b.c.d/len");
		if (d->nvmk == VSW_MAX_VMKS || !(v = calloc(1, sizeof(*v))))
			return fail(c, -ENOSPC, "too many VMkernel adapters (8 at most)");
		v->fd = -1;
		v->sw = pg->sw;
		v->p.vlan = pg->vlan;
		snprintf(v->p.name, sizeof(v->p.name), "%s", c->interface);
		snprintf(v->portgroup, sizeof(v->portgroup), "%s", pg->name);
		snprintf(v->ip, sizeof(v->ip), "%s", c->ipv4 ? c->ipv4 : "");
		if ((err = vmk_start(d, v))) {
			free(v);
			return fail(c, err, err == -EEXIST || err == -EBUSY
						    ? "the host has an interface of that name"
						    : "the TAP interface could not be made");
		}
		d->vmk[d->nvmk++] = v;
		return 0;
	}
	if (!v)
		return fail(c, -ENOENT, "no VMkernel adapter of that name");
	if (!strcmp(c->cmd, "network.vmk.remove")) {
		if (d->roce)
			reng_vmk_gone(d->roce, v); /* its RoCE QPs lose their path: ERR */
		epoll_ctl(d->ep, EPOLL_CTL_DEL, v->fd, NULL);
		capture_port_gone(&v->p);
		vsw_port_remove(&d->sw[v->sw], &v->p);
		vmk_close(v);
		for (i = 0; i < d->nvmk && d->vmk[i] != v; i++)
			;
		d->vmk[i] = d->vmk[--d->nvmk];
		free(v);
		return 0;
	}
	if (!c->ipv4)
		return fail(c, -EINVAL, "--ipv4 is needed (a.b.c.d/len)");
	return vmk_set_ipv4(v, c->ipv4) ? fail(c, -EINVAL, "--ipv4 is a.b.c.d/len") : 0;
}

static int change(struct vsw_dp *d, struct change *c);

/* A change, then VMQ at the NIC made to match (ports, VLANs and VMQ may have moved). */
static int
do_change(void *ctx, void *arg)
{
	int err = change(ctx, arg);

	if (!err)
		vmq_sync_all(ctx);
	return err;
}

static int
change(struct vsw_dp *d, struct change *c)
{
	long mtu = c->mtu ? number(c->mtu, 68, VSW_MTU_MAX) : VSW_MTU_DEFAULT;
	long vlan = c->vlan ? number(c->vlan, 0, VLAN_TRUNK) : 0;
	int vmq = c->vmq ? vmq_value(c->vmq) : 1, s, err;
	struct vsw_portgroup *pg = NULL;

	if (mtu < 0)
		return fail(c, -EINVAL, "--mtu is 68 to 9000");
	if (vlan < 0)
		return fail(c, -EINVAL, "--vlan-id is 0 to 4095");
	if (vmq < 0)
		return fail(c, -EINVAL, "--vmq is on or off");
	if (!strncmp(c->cmd, "network.vmk.", 12))
		return vmk_change(d, c);
	if (!strncmp(c->cmd, "network.vswitch.", 16)) {
		if (!c->vswitch || !*c->vswitch)
			return fail(c, -EINVAL, "--vswitch-name is needed");
		s = find_switch(d, c->vswitch);
		if (!strcmp(c->cmd, "network.vswitch.add")) {
			if (strlen(c->vswitch) >= VSW_NAME)
				return fail(c, -EINVAL, "a switch name is 1 to 31 characters");
			err = vsw_dp_add_switch(d, c->vswitch, (uint32_t)mtu, vmq);
			return err == -EEXIST ? fail(c, err, "a switch of that name exists")
			       : err	      ? fail(c, err, "too many switches (8 at most)")
					      : 0;
		}
		if (s < 0)
			return fail(c, -ENOENT, "no switch of that name");
		if (!strcmp(c->cmd, "network.vswitch.remove")) {
			for (unsigned i = 0; i < d->npg; i++)
				if (d->pg[i].sw == (unsigned)s)
					return fail(c, -EBUSY, "the switch has port groups");
			for (unsigned i = 0; i < d->nuplink; i++)
				if (d->uplink[i]->sw == (unsigned)s)
					return fail(c, -EBUSY, "the switch has uplinks");
			/* Later switches move down one (ports and port groups name theirs by index). */
			vsw_free(&d->sw[s]);
			memmove(&d->sw[s], &d->sw[s + 1], (d->nsw - (unsigned)s - 1) * sizeof(d->sw[0]));
			d->nsw--;
			for (unsigned i = 0; i < d->npg; i++)
				d->pg[i].sw -= d->pg[i].sw > (unsigned)s;
			for (size_t k = 0; k < d->nport; k++)
				d->port[k]->sw -= d->port[k]->sw > (unsigned)s;
			for (unsigned k = 0; k < d->nuplink; k++)
				d->uplink[k]->sw -= d->uplink[k]->sw > (unsigned)s;
			return 0;
		}
		if (c->mtu)
			d->sw[s].mtu = (uint32_t)mtu;
		if (c->vmq) {
			if (d->sw[s].defq_n)
				vsw_sort(&d->sw[s], clock_ns()); /* what waits goes out first */
			d->sw[s].vmq = vmq;
		}
		return 0;
	}
	if (!c->portgroup || !*c->portgroup)
		return fail(c, -EINVAL, "--portgroup-name is needed");
	for (unsigned i = 0; i < d->npg; i++)
		if (!strcmp(d->pg[i].name, c->portgroup))
			pg = &d->pg[i];
	if (!strcmp(c->cmd, "network.portgroup.add")) {
		if (!c->vswitch)
			return fail(c, -EINVAL, "--vswitch-name is needed");
		err = vsw_dp_add_portgroup(d, c->portgroup, c->vswitch, (uint16_t)vlan);
		return err == -ENOENT ? fail(c, err, "no switch of that name")
		       : err == -EEXIST ? fail(c, err, "a port group of that name exists")
		       : err == -EINVAL ? fail(c, err, "a port group name is 1 to 31 characters")
		       : err		? fail(c, err, "too many port groups (64 at most)")
					: 0;
	}
	if (!pg)
		return fail(c, -ENOENT, "no port group of that name");
	if (!strcmp(c->cmd, "network.portgroup.remove")) {
		if (pg_ports(d, pg->name))
			return fail(c, -EBUSY, "the port group has ports");
		if (pg_has_socket(d, pg->name))
			return fail(c, -EBUSY, "the port group has a vhost-user socket (vhostuserN)");
		*pg = d->pg[--d->npg];
		return 0;
	}
	if (!c->vlan)
		return fail(c, -EINVAL, "--vlan-id is needed");
	/* Its ports move to the new VLAN: what was learned on them is forgotten. */
	pg->vlan = (uint16_t)vlan;
	for (size_t k = 0; k < d->nport; k++) {
		struct dp_port *p = d->port[k];

		if (strcmp(p->portgroup, pg->name))
			continue;
		fdb_flush_port(&d->sw[p->sw].fdb, p->p.id);
		p->p.vlan = (uint16_t)vlan;
		(void)vsw_port_mac(&d->sw[p->sw], &p->p, p->mac);
	}
	return 0;
}

static const char *const changes[] = { "network.vswitch.add",	"network.vswitch.remove",
				       "network.vswitch.set",	"network.portgroup.add",
				       "network.portgroup.remove", "network.portgroup.set",
				       "network.vmk.add",	"network.vmk.remove",
				       "network.vmk.ipv4" };

int
vsw_dp_mgmt(struct vsw_dp *d, const char *cmd, const char *arg, uid_t uid, json_t **out)
{
	struct mgmt_req r = { cmd, NULL };
	int err;

	for (size_t i = 0; i < sizeof(changes) / sizeof(changes[0]); i++) {
		struct change c = { .cmd = cmd };

		if (strcmp(cmd, changes[i]))
			continue;
		if (uid != 0)
			return -EPERM;
		if (change_parse(&c, arg))
			return -EINVAL;
		err = d->running ? cmdq_call(&d->cmds, do_change, &c) : do_change(d, &c);
		if (err) {
			*out = json_pack("{s:s, s:i}", "error", c.why[0] ? c.why : strerror(-err),
					 "errno", -err);
			return *out ? 0 : -ENOMEM;
		}
		*out = json_pack("{s:s, s:s}", "done", cmd, "name",
				 c.interface ? c.interface : c.portgroup ? c.portgroup
						      : c.vswitch ? c.vswitch : "");
		return *out ? 0 : -ENOMEM;
	}
	if (strcmp(cmd, "network.vswitch.list") && strcmp(cmd, "network.portgroup.list") &&
	    strcmp(cmd, "network.port.list") && strcmp(cmd, "network.nic.list") &&
	    strcmp(cmd, "network.vmk.list"))
		return -EOPNOTSUPP;
	err = d->running ? cmdq_call(&d->cmds, do_mgmt, &r) : do_mgmt(d, &r);
	*out = r.out;
	return err;
}
