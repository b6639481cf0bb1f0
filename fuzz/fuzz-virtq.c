/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: the split virtqueue (src/virtio/virtq.c) against a hostile
 * driver. The input chooses a guest memory layout (a memfd mapped as one to
 * three regions: adjacent, with a hole, of a size that is not a page
 * multiple, at the top of the 64-bit guest-physical space), the queue size,
 * the features and the base, then a sequence of steps. Driver steps write
 * descriptors (aimed at regions, their edges, the indirect area, or raw),
 * publish heads, move the available index anywhere, set flags and event
 * indices, scribble bytes anywhere; device steps pop, push, flush, turn
 * kicks on and off, read and write the last element at offsets.
 *
 * Checked: every segment of a popped element lies inside one region (the
 * mappings are page-rounded, so ASan alone would not see a small overrun),
 * the counts add up, a chain has at most VIRTQ_MAX_SEGS segments, the
 * private indices stay within the queue size, and a broken queue stays
 * broken and writes nothing more to the used ring.
 *
 * Input: { u8 layout, u8 size, u8 features, u16 base } then steps
 * { u8 op, operands } (see step()).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz.h"
#include "virtio/virtq.h"

#define FZ_MEM	    0x11000u /* memfd size */
#define FZ_DESC	    0x0000u  /* rings in region 0 (guest-physical = memfd offset there) */
#define FZ_AVAIL    0x1000u
#define FZ_USED	    0x2000u
#define FZ_INDIRECT 0x3000u /* where structured steps put indirect tables */
#define FZ_STEPS    512
#define FZ_INFLIGHT 1024

struct fzq {
	struct vhu_mem mem;
	struct virtq q;
	uint8_t *raw; /* the whole memfd, for scribbles */
	uint16_t *avail;
	uint16_t num, avail_idx;
	struct virtq_elem last; /* the last element popped */
	bool have_last;
	uint16_t inflight[FZ_INFLIGHT];
	unsigned nin_flight;
	uint8_t used_copy[6 + 8 * 256 + 2]; /* the used ring once broken */
};

static const struct vhu_mem_region layouts[4][3] = {
	{ { 0, 0x10000, 0x100000, 0 } },
	{ { 0, 0x8000, 0x100000, 0 }, { 0x8000, 0x8000, 0x200000, 0x8000 } },
	{ { 0, 0x8000, 0x100000, 0 }, { 0x100000, 0x8000, 0x200000, 0x8000 } },
	{ { 0, 0x8000, 0x100000, 0 },
	  { 0x8000, 0x7ff1, 0x200000, 0x8000 },
	  { 0xffffffffffffe000ull, 0x1000, 0x300000, 0x10000 } },
};
static const uint32_t nregions[4] = { 1, 2, 2, 3 };

static void
check(bool ok)
{
	if (!ok)
		abort();
}

/* Every segment inside one region of the table; lengths add up. */
static void
check_elem(const struct fzq *z, const struct virtq_elem *e)
{
	uint64_t out = 0, in = 0;

	check(e->head < z->num);
	check(e->nout + e->nin <= VIRTQ_MAX_SEGS);
	for (unsigned i = 0; i < (unsigned)(e->nout + e->nin); i++) {
		const uint8_t *p = e->iov[i].iov_base;
		size_t len = e->iov[i].iov_len;
		bool inside = false;

		check(len > 0);
		for (uint32_t r = 0; r < z->mem.n; r++) {
			const struct vhu_region *g = &z->mem.r[r];

			if (p >= g->host && len <= g->size &&
			    (uint64_t)(p - g->host) <= g->size - len)
				inside = true;
		}
		check(inside);
		if (i < e->nout)
			out += len;
		else
			in += len;
	}
	check(out == e->out_len && in == e->in_len);
	check(out + in <= UINT32_MAX);
}

static uint64_t
pick_addr(const struct fzq *z, unsigned mode, uint64_t off)
{
	const struct vhu_region *first = &z->mem.r[0], *last = &z->mem.r[z->mem.n - 1];

	switch (mode % 4) {
	case 0:
		return first->gpa + off;
	case 1:
		return last->gpa + off;
	case 2: { /* near the end of a region: across it, or just inside */
		const struct vhu_region *r = off & 0x100 ? last : first;

		return r->gpa + r->size - (off & 0xff);
	}
	default:
		return FZ_INDIRECT + (off & 0x3f0);
	}
}

static void
put_desc(struct fzq *z, unsigned table, unsigned i, const struct virtq_desc *d)
{
	uint64_t at = table & 1 ? FZ_INDIRECT + 16 * (i & 0x3f) : FZ_DESC + 16 * (i % z->num);

	memcpy(z->raw + at, d, sizeof(*d));
}

static void
publish(struct fzq *z, uint16_t idx)
{
	z->avail_idx = idx;
	__atomic_store_n(&z->avail[1], idx, __ATOMIC_RELEASE);
}

/* A driver step: writes guest memory. */
static void
driver_step(struct fzq *z, struct fz *f, unsigned op)
{
	struct virtq_desc d;
	uint64_t v;

	switch (op) {
	case 0: { /* structured descriptor */
		unsigned table = (unsigned)fz_take(f, 1), i = (unsigned)fz_take(f, 1);
		unsigned mode = (unsigned)fz_take(f, 1);

		d.addr = pick_addr(z, mode, fz_take(f, 2));
		d.len = (uint32_t)fz_take(f, 2);
		d.flags = (uint16_t)fz_take(f, 1);
		d.next = (uint16_t)fz_take(f, 1);
		put_desc(z, table, i, &d);
		break;
	}
	case 1: { /* raw descriptor */
		unsigned table = (unsigned)fz_take(f, 1), i = (unsigned)fz_take(f, 1);

		d.addr = fz_take(f, 8);
		d.len = (uint32_t)fz_take(f, 4);
		d.flags = (uint16_t)fz_take(f, 2);
		d.next = (uint16_t)fz_take(f, 2);
		put_desc(z, table, i, &d);
		break;
	}
	case 2: /* make a head available */
		z->avail[2 + (z->avail_idx & (z->num - 1))] = (uint16_t)fz_take(f, 2);
		publish(z, (uint16_t)(z->avail_idx + 1));
		break;
	case 3: /* move the index: a little, or anywhere */
		v = fz_take(f, 2);
		publish(z, (uint16_t)(v & 0x8000 ? v : z->avail_idx + (v & 0xff)));
		break;
	case 4: /* avail flags, used_event, and the device's own fields */
		v = fz_take(f, 1);
		z->avail[v & 1 ? 0 : 2 + z->num] = (uint16_t)fz_take(f, 2);
		if (v & 2)
			memcpy(z->raw + FZ_USED + (v & 4 ? 0 : 4 + 8 * z->num), &v, 2);
		break;
	default: { /* scribble */
		uint64_t at = fz_take(f, 3) % FZ_MEM, n = fz_take(f, 1);

		for (uint64_t i = 0; i < n; i++)
			z->raw[(at + i) % FZ_MEM] = (uint8_t)fz_take(f, 1);
		break;
	}
	}
}

/* A device step: the code under test. */
static void
device_step(struct fzq *z, struct fz *f, unsigned op)
{
	struct virtq_elem e;
	uint8_t buf[512];
	size_t off, len;
	int r;

	switch (op) {
	case 0:
		r = virtq_pop(&z->q, &e);
		check(r == 1 || r == 0 || r == -EPROTO);
		check((r == -EPROTO) == virtq_broken(&z->q));
		if (r == 1) {
			check_elem(z, &e);
			z->last = e;
			z->have_last = true;
			if (z->nin_flight < FZ_INFLIGHT)
				z->inflight[z->nin_flight++] = e.head;
		}
		break;
	case 1:
		if (z->nin_flight) {
			virtq_push(&z->q, z->inflight[0], (uint32_t)fz_take(f, 2));
			memmove(z->inflight, z->inflight + 1, --z->nin_flight * sizeof(uint16_t));
		}
		break;
	case 2:
		virtq_flush(&z->q);
		break;
	case 3:
		virtq_enable_kicks(&z->q);
		break;
	case 4:
		virtq_disable_kicks(&z->q);
		break;
	case 5:
		check(virtq_avail(&z->q) <= z->num);
		break;
	default:
		if (!z->have_last)
			break;
		off = (size_t)fz_take(f, 2);
		len = (size_t)fz_take(f, 2) % sizeof(buf);
		check(virtq_read(&z->last, off, buf, len) <= len);
		check(virtq_write(&z->last, off, buf, len) <= len);
		break;
	}
}

static void
fzq_open(struct fzq *z, struct fz *f, int *memfd, int *call)
{
	unsigned layout = (unsigned)fz_take(f, 1) % 4;
	unsigned shift = 1 + (unsigned)fz_take(f, 1) % 8; /* 2 .. 256 */
	uint64_t feat = fz_take(f, 1);
	uint64_t features =
	    ((feat & 1) ? VIRTIO_F_INDIRECT_DESC : 0) | ((feat & 2) ? VIRTIO_F_EVENT_IDX : 0);
	uint16_t base = (uint16_t)fz_take(f, 2);
	int fds[3];

	*memfd = memfd_create("fz-virtq", MFD_CLOEXEC);
	*call = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (*memfd < 0 || *call < 0 || ftruncate(*memfd, FZ_MEM) < 0)
		abort();
	z->raw = mmap(NULL, FZ_MEM, PROT_READ | PROT_WRITE, MAP_SHARED, *memfd, 0);
	if (z->raw == MAP_FAILED)
		abort();
	fds[0] = fds[1] = fds[2] = *memfd;
	vhu_mem_init(&z->mem);
	if (vhu_mem_set(&z->mem, layouts[layout], nregions[layout], fds))
		abort();
	z->num = (uint16_t)(1u << shift);
	z->avail = (uint16_t *)(z->raw + FZ_AVAIL);
	z->avail_idx = base;
	z->avail[1] = base;
	/* The device's pointers, as the server translates them. */
	virtq_init(&z->q, &z->mem, vhu_mem_gpa(&z->mem, FZ_DESC, 16u * z->num),
		   vhu_mem_gpa(&z->mem, FZ_AVAIL, 6u + 2u * z->num),
		   vhu_mem_gpa(&z->mem, FZ_USED, 6u + 8u * z->num), z->num, base, features, *call);
}

static size_t
used_size(const struct fzq *z)
{
	return 6 + 8 * (size_t)z->num;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct fzq z; /* large: not on the stack */
	struct fz f = { data, size };
	bool was_broken = false;
	int memfd, call;

	memset(&z, 0, sizeof(z));
	fzq_open(&z, &f, &memfd, &call);
	for (int steps = 0; f.n && steps < FZ_STEPS; steps++) {
		unsigned op = (unsigned)fz_take(&f, 1);

		if (op & 0x80)
			driver_step(&z, &f, (op & 0x7f) % 6);
		else
			device_step(&z, &f, op % 7);
		check((uint16_t)(z.q.avail_seen - z.q.last_avail) <= z.num);
		if (was_broken) {
			/*
			 * Only the driver writes the used ring now, and the device
			 * through an element taken before (its buffers may lie on
			 * the ring): after those steps, compare anew.
			 */
			if ((op & 0x80) || op % 7 == 6)
				memcpy(z.used_copy, z.raw + FZ_USED, used_size(&z));
			check(memcmp(z.used_copy, z.raw + FZ_USED, used_size(&z)) == 0);
			check(virtq_broken(&z.q) && virtq_avail(&z.q) == 0);
		} else if (virtq_broken(&z.q)) {
			was_broken = true;
			memcpy(z.used_copy, z.raw + FZ_USED, used_size(&z));
		}
	}
	vhu_mem_clear(&z.mem);
	munmap(z.raw, FZ_MEM);
	close(memfd);
	close(call);
	return 0;
}
