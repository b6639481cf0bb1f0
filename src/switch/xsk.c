/* SPDX-License-Identifier: MIT */
/*
 * VMQ at the NIC: the XDP program's loader and the AF_XDP receive path.
 * The rings are the kernel's (linux/if_xdp.h), used directly: libbpf loads
 * and attaches the program and reaches its maps.
 */
#include <errno.h>
#include <linux/if_link.h>
#include <linux/if_xdp.h>
#include <net/if.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "common/log.h"
#include "xsk.h"

#ifndef SOL_XDP
#define SOL_XDP 283
#endif
#ifndef AF_XDP
#define AF_XDP 44
#endif
#ifndef XDP_PKT_CONTD
#define XDP_PKT_CONTD (1 << 0) /* multi-buffer frames: not enabled here */
#endif

#define UMEM_LEN      ((size_t)XSK_FRAMES * VMQ_FRAME_SIZE)
#define FILL_RING     XSK_FRAMES /* room for every frame: giving one back never fails */
#define COMP_RING     64u	 /* required by bind(); nothing is sent */
#define OWNER_RX_RING 64u	 /* the UMEM's own socket: never in the XSKMAP */

_Static_assert((VMQ_FRAME_SIZE & (VMQ_FRAME_SIZE - 1)) == 0, "frame size: a power of two");
_Static_assert((XSK_FRAMES & (XSK_FRAMES - 1)) == 0, "frames: a power of two");
_Static_assert((XSK_RX_RING & (XSK_RX_RING - 1)) == 0, "ring: a power of two");
_Static_assert(sizeof(struct vmq_key) == 8, "the key has no padding");

/* One side of a kernel ring, as mapped. */
struct ring {
	uint32_t *prod, *cons, *flags;
	void *desc;
	uint32_t mask;
	uint32_t local; /* our index: the producer's (fill) or the consumer's (rx) */
	void *map;
	size_t map_len;
};

struct xsk_slot {
	int fd;		   /* -1: no socket yet; kept after the slot is destroyed */
	_Atomic bool used; /* set after fd, read by xsk_get_slot_counters() anywhere */
	struct ring rx;
	_Atomic uint64_t rx_frames, rx_bytes, bad_desc;
	struct xdp_statistics base; /* the kernel's counts when the slot was made */
};

struct xsk_dev {
	char ifname[IFNAMSIZ];
	int ifindex;
	struct bpf_object *obj;
	int prog_fd, link_fd, filter_fd, xsks_fd, stats_fd;
	int ncpus;
	/* The UMEM and its own socket, which holds the fill ring every slot shares. */
	uint8_t *umem;
	int umem_fd;
	struct ring fill, comp, owner_rx;
	bool need_wakeup;
	struct xsk_info info;
	struct xsk_slot slot[XSK_MAX_SLOTS];
	struct vmq_key keys[VMQ_MAX_FILTERS]; /* scratch for xsk_slot_destroy() */
};

/* ---------------------------------------------------------------------- */
/* libbpf's messages into the daemon's log */

__attribute__((format(printf, 2, 0))) static int
bpf_log(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	char msg[512];
	size_t n;

	if (level == LIBBPF_DEBUG || (level == LIBBPF_INFO && log_get_level() < LOG_LVL_DEBUG))
		return 0;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	n = strlen(msg);
	while (n && msg[n - 1] == '\n')
		msg[--n] = 0;
	log_msg(level == LIBBPF_WARN ? LOG_LVL_WARN : LOG_LVL_DEBUG, "%s", msg); /* "libbpf: ..." */
	return 0;
}

/* ---------------------------------------------------------------------- */
/* Rings */

static int
ring_map(struct ring *r, int fd, uint32_t n, const struct xdp_ring_offset *o, size_t esz,
	 off_t pgoff)
{
	uint8_t *m;

	r->map_len = o->desc + n * esz;
	m = mmap(NULL, r->map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, pgoff);
	if (m == MAP_FAILED) {
		r->map = NULL;
		return -errno;
	}
	r->map = m;
	r->prod = (uint32_t *)(m + o->producer);
	r->cons = (uint32_t *)(m + o->consumer);
	r->flags = (uint32_t *)(m + o->flags);
	r->desc = m + o->desc;
	r->mask = n - 1;
	r->local = 0;
	return 0;
}

static void
ring_unmap(struct ring *r)
{
	if (r->map)
		munmap(r->map, r->map_len);
	r->map = NULL;
}

static int
ring_size(int fd, int opt, uint32_t n)
{
	return setsockopt(fd, SOL_XDP, opt, &n, sizeof(n)) < 0 ? -errno : 0;
}

static int
mmap_offsets(int fd, struct xdp_mmap_offsets *off)
{
	socklen_t len = sizeof(*off);

	if (getsockopt(fd, SOL_XDP, XDP_MMAP_OFFSETS, off, &len) < 0)
		return -errno;
	return len == sizeof(*off) ? 0 : -EPROTO; /* a kernel older than 5.4 */
}

/* Room in the fill ring. */
static uint32_t
fill_free(const struct xsk_dev *x)
{
	return FILL_RING - (x->fill.local - __atomic_load_n(x->fill.cons, __ATOMIC_ACQUIRE));
}

static void
fill_publish(struct xsk_dev *x)
{
	__atomic_store_n(x->fill.prod, x->fill.local, __ATOMIC_RELEASE);
	/* Zero-copy drivers may wait to be told that frames are there. */
	if (x->need_wakeup &&
	    (__atomic_load_n(x->fill.flags, __ATOMIC_ACQUIRE) & XDP_RING_NEED_WAKEUP))
		(void)recvfrom(x->umem_fd, NULL, 0, MSG_DONTWAIT, NULL, NULL);
}

/*
 * Consume up to @max descriptors of @s's receive ring; hand the good ones
 * to @fn (NULL: drop them) and give their frames back to the fill ring.
 */
static int
rx_batch(struct xsk_dev *x, struct xsk_slot *s, uint32_t max, xsk_frame_fn *fn, void *ctx)
{
	const struct xdp_desc *desc = s->rx.desc;
	uint64_t *fill = x->fill.desc;
	uint64_t bytes = 0;
	uint32_t n, i, frames = 0, bad = 0, room;

	n = __atomic_load_n(s->rx.prod, __ATOMIC_ACQUIRE) - s->rx.local;
	if (n > max)
		n = max;
	if (n > XSK_RX_RING)
		n = XSK_RX_RING; /* a bogus producer index */
	room = fill_free(x);
	if (n > room)
		n = room; /* cannot happen (room for every frame); the rest waits */
	if (!n)
		return 0;
	for (i = 0; i < n; i++) {
		const struct xdp_desc *d = &desc[(s->rx.local + i) & s->rx.mask];
		uint64_t addr = d->addr, base = addr & ~(uint64_t)(VMQ_FRAME_SIZE - 1);
		uint32_t len = d->len, options = d->options;

		if (base >= UMEM_LEN) {
			bad++; /* not one of our frames: nothing to give back */
			continue;
		}
		if (len > VMQ_FRAME_MAX || len > VMQ_FRAME_SIZE - (addr - base) ||
		    (options & XDP_PKT_CONTD)) {
			bad++;
		} else if (fn) {
			struct iovec v = { x->umem + addr, len };

			fn(ctx, &v);
			frames++;
			bytes += len;
		}
		fill[x->fill.local++ & x->fill.mask] = base;
	}
	s->rx.local += n;
	__atomic_store_n(s->rx.cons, s->rx.local, __ATOMIC_RELEASE);
	fill_publish(x);
	if (frames) {
		atomic_fetch_add_explicit(&s->rx_frames, frames, memory_order_relaxed);
		atomic_fetch_add_explicit(&s->rx_bytes, bytes, memory_order_relaxed);
	}
	if (bad)
		atomic_fetch_add_explicit(&s->bad_desc, bad, memory_order_relaxed);
	return (int)n;
}

static void
rx_drop_all(struct xsk_dev *x, struct xsk_slot *s)
{
	while (rx_batch(x, s, XSK_RX_RING, NULL, NULL) > 0)
		;
}

/* ---------------------------------------------------------------------- */
/* The program on the interface */

/* Whether a BPF link holds XDP program @prog_id: then a live process owns it. */
static bool
held_by_link(uint32_t prog_id)
{
	uint32_t id = 0;

	while (!bpf_link_get_next_id(id, &id)) {
		struct bpf_link_info li;
		uint32_t len = sizeof(li);
		int fd = bpf_link_get_fd_by_id(id);
		bool held;

		if (fd < 0)
			continue; /* gone meanwhile */
		memset(&li, 0, sizeof(li));
		held = !bpf_obj_get_info_by_fd(fd, &li, &len) && li.type == BPF_LINK_TYPE_XDP &&
		       li.prog_id == prog_id;
		close(fd);
		if (held)
			return true;
	}
	return false;
}

/*
 * A program already on the interface: ours left behind (attached through
 * netlink, so nobody owns it) is removed; ours through a link (a live
 * owner) or anyone else's is -EBUSY.
 */
static int
clear_stale(struct xsk_dev *x)
{
	LIBBPF_OPTS(bpf_xdp_query_opts, q);
	struct {
		uint32_t id, flag;
	} mode[2];
	int err;

	err = bpf_xdp_query(x->ifindex, 0, &q);
	if (err)
		return err;
	if (q.hw_prog_id)
		return -EBUSY;
	mode[0].id = q.drv_prog_id, mode[0].flag = XDP_FLAGS_DRV_MODE;
	mode[1].id = q.skb_prog_id, mode[1].flag = XDP_FLAGS_SKB_MODE;
	for (int i = 0; i < 2; i++) {
		struct bpf_prog_info pi;
		uint32_t len = sizeof(pi);
		int fd;

		if (!mode[i].id)
			continue;
		fd = bpf_prog_get_fd_by_id(mode[i].id);
		if (fd == -ENOENT)
			continue; /* gone meanwhile */
		if (fd < 0)
			return fd;
		memset(&pi, 0, sizeof(pi));
		err = bpf_obj_get_info_by_fd(fd, &pi, &len);
		if (!err && strncmp(pi.name, VMQ_PROG_NAME, sizeof(pi.name)) != 0) {
			log_warn("xsk: %s: XDP program %u (%.*s) is not vmfabric's: left alone",
				 x->ifname, mode[i].id, (int)sizeof(pi.name), pi.name);
			err = -EBUSY;
		} else if (!err && held_by_link(mode[i].id)) {
			log_warn("xsk: %s: the VMQ program %u has a live owner", x->ifname,
				 mode[i].id);
			err = -EBUSY;
		}
		if (!err) {
			LIBBPF_OPTS(bpf_xdp_attach_opts, a, .old_prog_fd = fd);

			/* The kernel refuses (-EBUSY) if a link got it meanwhile. */
			err = bpf_xdp_detach(x->ifindex, mode[i].flag, &a);
			if (!err)
				log_warn(
				    "xsk: %s: removed the VMQ program %u an earlier owner left",
				    x->ifname, mode[i].id);
		}
		close(fd);
		if (err)
			return err;
	}
	return 0;
}

static int
load(struct xsk_dev *x)
{
	LIBBPF_OPTS(bpf_object_open_opts, o, .object_name = "vmq");
	struct bpf_prog_info pi;
	struct bpf_program *p;
	uint32_t len = sizeof(pi);
	int err;

	x->obj = bpf_object__open_mem(vmq_bpf_obj, vmq_bpf_obj_len, &o);
	if (!x->obj)
		return -errno;
	err = bpf_object__load(x->obj);
	if (err)
		return err;
	p = bpf_object__find_program_by_name(x->obj, VMQ_PROG_NAME);
	if (!p)
		return -ENOENT;
	x->prog_fd = bpf_program__fd(p);
	x->filter_fd = bpf_object__find_map_fd_by_name(x->obj, "vmq_filter");
	x->xsks_fd = bpf_object__find_map_fd_by_name(x->obj, "vmq_xsks");
	x->stats_fd = bpf_object__find_map_fd_by_name(x->obj, "vmq_stats");
	if (x->prog_fd < 0 || x->filter_fd < 0 || x->xsks_fd < 0 || x->stats_fd < 0)
		return -ENOENT;
	memset(&pi, 0, sizeof(pi));
	if (!bpf_obj_get_info_by_fd(x->prog_fd, &pi, &len))
		x->info.prog_id = pi.id;
	x->ncpus = libbpf_num_possible_cpus();
	return x->ncpus > 0 ? 0 : x->ncpus;
}

/* Through a link: driver mode, else generic mode. */
static int
attach(struct xsk_dev *x)
{
	LIBBPF_OPTS(bpf_link_create_opts, o, .flags = XDP_FLAGS_DRV_MODE);

	x->link_fd = bpf_link_create(x->prog_fd, x->ifindex, BPF_XDP, &o);
	if (x->link_fd >= 0) {
		x->info.native = true;
		return 0;
	}
	x->info.native_err = x->link_fd;
	o.flags = XDP_FLAGS_SKB_MODE;
	x->link_fd = bpf_link_create(x->prog_fd, x->ifindex, BPF_XDP, &o);
	return x->link_fd >= 0 ? 0 : x->link_fd;
}

/* ---------------------------------------------------------------------- */
/* The UMEM and its socket */

static int
umem_open(struct xsk_dev *x)
{
	struct xdp_umem_reg reg;
	struct xdp_mmap_offsets off;
	struct xdp_options opt = { 0 };
	struct sockaddr_xdp a = { .sxdp_family = AF_XDP };
	socklen_t olen = sizeof(opt);
	int err;

	x->umem = mmap(NULL, UMEM_LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (x->umem == MAP_FAILED) {
		x->umem = NULL;
		return -errno;
	}
	x->umem_fd = socket(AF_XDP, SOCK_RAW | SOCK_CLOEXEC, 0);
	if (x->umem_fd < 0)
		return -errno;
	/* Zeroed whole: newer kernels read fields (tx_metadata_len) from the padding. */
	memset(&reg, 0, sizeof(reg));
	reg.addr = (uintptr_t)x->umem;
	reg.len = UMEM_LEN;
	reg.chunk_size = VMQ_FRAME_SIZE;
	reg.headroom = 0;
	if (setsockopt(x->umem_fd, SOL_XDP, XDP_UMEM_REG, &reg, sizeof(reg)) < 0)
		return -errno;
	if ((err = ring_size(x->umem_fd, XDP_UMEM_FILL_RING, FILL_RING)) ||
	    (err = ring_size(x->umem_fd, XDP_UMEM_COMPLETION_RING, COMP_RING)) ||
	    (err = ring_size(x->umem_fd, XDP_RX_RING, OWNER_RX_RING)) ||
	    (err = mmap_offsets(x->umem_fd, &off)) ||
	    (err = ring_map(&x->fill, x->umem_fd, FILL_RING, &off.fr, sizeof(uint64_t),
			    XDP_UMEM_PGOFF_FILL_RING)) ||
	    (err = ring_map(&x->comp, x->umem_fd, COMP_RING, &off.cr, sizeof(uint64_t),
			    XDP_UMEM_PGOFF_COMPLETION_RING)) ||
	    (err = ring_map(&x->owner_rx, x->umem_fd, OWNER_RX_RING, &off.rx,
			    sizeof(struct xdp_desc), XDP_PGOFF_RX_RING)))
		return err;
	a.sxdp_ifindex = (uint32_t)x->ifindex;
	a.sxdp_queue_id = VMQ_QUEUE;
	/* Zero-copy needs the driver's mode; generic mode is copy mode. */
	a.sxdp_flags = x->info.native ? XDP_USE_NEED_WAKEUP : XDP_COPY;
	if (bind(x->umem_fd, (struct sockaddr *)&a, sizeof(a)) < 0)
		return -errno;
	if (getsockopt(x->umem_fd, SOL_XDP, XDP_OPTIONS, &opt, &olen) == 0)
		x->info.zerocopy = opt.flags & XDP_OPTIONS_ZEROCOPY;
	x->need_wakeup = x->info.native;
	/* Every frame to the kernel. */
	for (uint32_t i = 0; i < XSK_FRAMES; i++)
		((uint64_t *)x->fill.desc)[x->fill.local++ & x->fill.mask] =
		    (uint64_t)i * VMQ_FRAME_SIZE;
	fill_publish(x);
	return 0;
}

int
xsk_open(const char *ifname, struct xsk_dev **out)
{
	static bool log_set;
	struct xsk_dev *x;
	int err;

	if (strlen(ifname) >= IFNAMSIZ)
		return -EINVAL;
	if (!log_set) {
		libbpf_set_print(bpf_log);
		log_set = true;
	}
	x = calloc(1, sizeof(*x));
	if (!x)
		return -ENOMEM;
	x->prog_fd = x->link_fd = x->filter_fd = x->xsks_fd = x->stats_fd = x->umem_fd = -1;
	for (int i = 0; i < XSK_MAX_SLOTS; i++)
		x->slot[i].fd = -1;
	strcpy(x->ifname, ifname);
	x->info.frame_max = VMQ_FRAME_MAX;
	x->ifindex = (int)if_nametoindex(ifname);
	if (!x->ifindex) {
		err = -ENODEV;
		goto fail;
	}
	if ((err = clear_stale(x)) || (err = load(x)) || (err = attach(x)) || (err = umem_open(x)))
		goto fail;
	*out = x;
	return 0;
fail:
	xsk_close(x);
	return err;
}

void
xsk_close(struct xsk_dev *x)
{
	if (!x)
		return;
	/* The link first: the program leaves the interface. */
	if (x->link_fd >= 0)
		close(x->link_fd);
	for (int i = 0; i < XSK_MAX_SLOTS; i++) {
		if (x->slot[i].fd < 0)
			continue;
		ring_unmap(&x->slot[i].rx);
		close(x->slot[i].fd);
	}
	ring_unmap(&x->owner_rx);
	ring_unmap(&x->comp);
	ring_unmap(&x->fill);
	if (x->umem_fd >= 0)
		close(x->umem_fd);
	if (x->umem)
		munmap(x->umem, UMEM_LEN);
	bpf_object__close(x->obj); /* the program and the maps */
	free(x);
}

void
xsk_get_info(const struct xsk_dev *x, struct xsk_info *i)
{
	*i = x->info;
}

/* ---------------------------------------------------------------------- */
/* Slots */

static bool
slot_ok(const struct xsk_dev *x, int slot)
{
	return slot >= 0 && slot < XSK_MAX_SLOTS &&
	       atomic_load_explicit(&x->slot[slot].used, memory_order_acquire);
}

static int
kernel_stats(int fd, struct xdp_statistics *st)
{
	socklen_t len = sizeof(*st);

	memset(st, 0, sizeof(*st));
	return getsockopt(fd, SOL_XDP, XDP_STATISTICS, st, &len) < 0 ? -errno : 0;
}

static int
slot_socket(struct xsk_dev *x, struct xsk_slot *s)
{
	struct sockaddr_xdp a = { .sxdp_family = AF_XDP };
	struct xdp_mmap_offsets off;
	int err;

	s->fd = socket(AF_XDP, SOCK_RAW | SOCK_CLOEXEC, 0);
	if (s->fd < 0)
		return -errno;
	if ((err = ring_size(s->fd, XDP_RX_RING, XSK_RX_RING)) ||
	    (err = mmap_offsets(s->fd, &off)) ||
	    (err = ring_map(&s->rx, s->fd, XSK_RX_RING, &off.rx, sizeof(struct xdp_desc),
			    XDP_PGOFF_RX_RING)))
		goto fail;
	/* Same interface and queue: the UMEM's fill ring is this socket's too. */
	a.sxdp_flags = XDP_SHARED_UMEM;
	a.sxdp_ifindex = (uint32_t)x->ifindex;
	a.sxdp_queue_id = VMQ_QUEUE;
	a.sxdp_shared_umem_fd = (uint32_t)x->umem_fd;
	if (bind(s->fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		err = -errno;
		goto fail;
	}
	return 0;
fail:
	ring_unmap(&s->rx);
	close(s->fd);
	s->fd = -1;
	return err;
}

int
xsk_slot_create(struct xsk_dev *x)
{
	struct xsk_slot *s = NULL;
	uint32_t key;
	int err, i;

	for (i = 0; i < XSK_MAX_SLOTS && !s; i++)
		if (!slot_ok(x, i))
			s = &x->slot[i];
	if (!s)
		return -ENOSPC;
	key = (uint32_t)(s - x->slot);
	if (s->fd < 0) {
		if ((err = slot_socket(x, s)))
			return err;
	} else {
		rx_drop_all(x, s); /* frames that were in flight when it was last destroyed */
	}
	if ((err = bpf_map_update_elem(x->xsks_fd, &key, &s->fd, BPF_ANY)))
		return err;
	(void)kernel_stats(s->fd, &s->base);
	atomic_store_explicit(&s->rx_frames, 0, memory_order_relaxed);
	atomic_store_explicit(&s->rx_bytes, 0, memory_order_relaxed);
	atomic_store_explicit(&s->bad_desc, 0, memory_order_relaxed);
	atomic_store_explicit(&s->used, true, memory_order_release);
	return (int)key;
}

void
xsk_slot_destroy(struct xsk_dev *x, int slot)
{
	uint32_t key = (uint32_t)slot, v;
	size_t n = 0;

	if (!slot_ok(x, slot))
		return;
	/* Every key first (deleting while iterating restarts the walk), then the slot's. */
	while (n < VMQ_MAX_FILTERS &&
	       !bpf_map_get_next_key(x->filter_fd, n ? &x->keys[n - 1] : NULL, &x->keys[n]))
		n++;
	for (size_t i = 0; i < n; i++)
		if (!bpf_map_lookup_elem(x->filter_fd, &x->keys[i], &v) && v == key)
			(void)bpf_map_delete_elem(x->filter_fd, &x->keys[i]);
	(void)bpf_map_delete_elem(x->xsks_fd, &key);
	atomic_store_explicit(&x->slot[slot].used, false, memory_order_relaxed);
	rx_drop_all(x, &x->slot[slot]);
}

int
xsk_slot_fd(const struct xsk_dev *x, int slot)
{
	return slot_ok(x, slot) ? x->slot[slot].fd : -EINVAL;
}

/* ---------------------------------------------------------------------- */
/* Filters */

static int
make_key(struct vmq_key *k, const uint8_t *mac, uint16_t vlan)
{
	if ((mac[0] & 1) || vlan > 4094)
		return -EINVAL;
	memset(k, 0, sizeof(*k));
	memcpy(k->mac, mac, sizeof(k->mac));
	k->vlan = vlan;
	return 0;
}

int
xsk_filter_set(struct xsk_dev *x, const uint8_t *mac, uint16_t vlan, int slot)
{
	struct vmq_key k;
	uint32_t v = (uint32_t)slot;
	int err;

	if (!slot_ok(x, slot))
		return -EINVAL;
	if ((err = make_key(&k, mac, vlan)))
		return err;
	return bpf_map_update_elem(x->filter_fd, &k, &v, BPF_ANY);
}

int
xsk_filter_del(struct xsk_dev *x, const uint8_t *mac, uint16_t vlan)
{
	struct vmq_key k;
	int err;

	if ((err = make_key(&k, mac, vlan)))
		return err;
	return bpf_map_delete_elem(x->filter_fd, &k);
}

/* ---------------------------------------------------------------------- */
/* Receiving and counting */

int
xsk_recv(struct xsk_dev *x, int slot, int max, xsk_frame_fn *fn, void *ctx)
{
	if (!slot_ok(x, slot) || !fn)
		return -EINVAL;
	if (max <= 0)
		return 0;
	return rx_batch(x, &x->slot[slot], (uint32_t)max, fn, ctx);
}

int
xsk_get_counters(const struct xsk_dev *x, struct xsk_counters *c)
{
	uint64_t *v = calloc((size_t)x->ncpus, sizeof(uint64_t));
	uint64_t sum[VMQ_NCOUNTERS] = { 0 };
	int err = 0;

	if (!v)
		return -ENOMEM;
	for (uint32_t i = 0; i < VMQ_NCOUNTERS && !err; i++) {
		err = bpf_map_lookup_elem(x->stats_fd, &i, v);
		for (int cpu = 0; cpu < x->ncpus && !err; cpu++)
			sum[i] += v[cpu];
	}
	free(v);
	c->hit = sum[VMQ_HIT];
	c->pass = sum[VMQ_PASS];
	c->redirect_failed = sum[VMQ_REDIRECT_FAILED];
	return err;
}

int
xsk_get_slot_counters(const struct xsk_dev *x, int slot, struct xsk_slot_counters *c)
{
	const struct xsk_slot *s;
	struct xdp_statistics st;
	int err;

	if (!slot_ok(x, slot))
		return -EINVAL;
	s = &x->slot[slot];
	if ((err = kernel_stats(s->fd, &st)))
		return err;
	c->rx_frames = atomic_load_explicit(&s->rx_frames, memory_order_relaxed);
	c->rx_bytes = atomic_load_explicit(&s->rx_bytes, memory_order_relaxed);
	c->bad_desc = atomic_load_explicit(&s->bad_desc, memory_order_relaxed);
	c->rx_dropped = st.rx_dropped - s->base.rx_dropped;
	c->rx_ring_full = st.rx_ring_full - s->base.rx_ring_full;
	c->fill_ring_empty = st.rx_fill_ring_empty_descs - s->base.rx_fill_ring_empty_descs;
	c->rx_invalid = st.rx_invalid_descs - s->base.rx_invalid_descs;
	return 0;
}
