/* SPDX-License-Identifier: MIT */
/*
 * Split virtqueues, device side (virtio 1.x section 2.7): taking available
 * descriptor chains (direct, indirect, or direct then one indirect), giving
 * back used entries, interrupt suppression (used_event or NO_INTERRUPT) and
 * kick suppression (avail_event or NO_NOTIFY).
 *
 * Threat model (virtq.h has the full list): the guest writes the rings and
 * descriptors concurrently with us. Each shared field is loaded exactly
 * once (an __atomic load, or a memcpy to the stack behind a compiler
 * barrier) and checked before use; our own indices live only in struct
 * virtq and are never read back from shared memory. A chain walk is
 * bounded by the queue size, every buffer is translated through the memory
 * table piece by piece, and any violation breaks the queue for good.
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "common/wake.h"
#include "virtq.h"

/* Offsets in 16-bit units. avail: used_event follows ring[num]. */
#define AVAIL_FLAGS 0
#define AVAIL_IDX   1
#define AVAIL_RING  2
/* used: ring[num] of {u32 id, u32 len} (4 units each), then avail_event. */
#define USED_FLAGS 0
#define USED_IDX   1
#define USED_RING  2

struct virtq_used_elem {
	uint32_t id;
	uint32_t len;
};

/*
 * The two full fences below pair with the driver's. gcc refuses
 * __atomic_thread_fence under ThreadSanitizer, which does not model
 * fences; there the store before and the load after each fence are made
 * seq_cst instead, which keeps them in the same order and which TSan sees.
 */
#ifdef __SANITIZE_THREAD__
#define FULL_FENCE()	((void)0)
#define AROUND_FENCE(o) __ATOMIC_SEQ_CST
#else
#define FULL_FENCE()	__atomic_thread_fence(__ATOMIC_SEQ_CST)
#define AROUND_FENCE(o) (o)
#endif

_Static_assert(sizeof(struct virtq_desc) == 16, "virtq_desc layout");
_Static_assert(sizeof(struct virtq_used_elem) == 8, "virtq_used_elem layout");

/* State of one chain walk. */
struct walk {
	struct virtq *q;
	struct virtq_elem *e;
	uint32_t descs; /* buffer descriptors so far, direct and indirect */
	uint64_t bytes; /* their total length */
	bool writable;	/* a device-writable descriptor came */
};

static int
virtq_break(struct virtq *q, const char *why)
{
	if (!q->why)
		q->why = why;
	return -EPROTO;
}

/* The frontend truncated the memory (read as zeros since): nothing read is true. */
static bool
mem_lost(struct virtq *q)
{
	unsigned n = vhu_mem_faults();

	if (__builtin_expect(n == q->faults_seen, 1))
		return false;
	q->faults_seen = n;
	return q->mem && vhu_mem_lost(q->mem);
}

static uint16_t *
used_event(const struct virtq *q)
{
	return &q->avail[AVAIL_RING + (size_t)q->num];
}

static uint16_t *
avail_event(const struct virtq *q)
{
	return &q->used[USED_RING + 4 * (size_t)q->num];
}

/*
 * Copy descriptor @i of @table to @d. Tables need no alignment (an indirect
 * one is wherever the guest put it), hence memcpy; the compiler barrier
 * makes @d a real copy, never re-read from guest memory afterwards.
 */
static void
desc_read(const void *table, uint32_t i, struct virtq_desc *d)
{
	memcpy(d, (const uint8_t *)table + (size_t)i * sizeof(*d), sizeof(*d));
	__asm__ volatile("" ::: "memory");
}

/* Load avail->idx and accept it: 0, or -EPROTO. */
static int
avail_refresh(struct virtq *q)
{
	/*
	 * Acquire: the ring entries and descriptors up to this index are
	 * visible once we see it. Pairs with the driver's write barrier
	 * (virtio_wmb) before its store of avail->idx.
	 */
	uint16_t idx = __atomic_load_n(&q->avail[AVAIL_IDX], AROUND_FENCE(__ATOMIC_ACQUIRE));
	uint16_t ahead = (uint16_t)(idx - q->last_avail);

	if (mem_lost(q))
		return virtq_break(q, "guest memory was truncated under the device");
	if (ahead > q->num)
		return virtq_break(q, "available index more than the queue size ahead");
	if (ahead < (uint16_t)(q->avail_seen - q->last_avail))
		return virtq_break(q, "available index moved backwards");
	q->avail_seen = idx;
	return 0;
}

/* Append the buffer [addr, addr + len) to the element, one segment per region. */
static int
add_buffer(struct walk *w, uint64_t addr, uint32_t len, bool write)
{
	struct virtq_elem *e = w->e;

	/* Every descriptor passes here, so this also ends a loop. */
	if (++w->descs > w->q->num)
		return virtq_break(w->q, "descriptor chain longer than the queue (or a loop)");
	if (write)
		w->writable = true;
	else if (w->writable)
		return virtq_break(w->q, "device-readable descriptor after a writable one");
	w->bytes += len;
	if (w->bytes > UINT32_MAX)
		return virtq_break(w->q, "descriptor chain of more than 4 GiB");
	while (len) {
		uint64_t span;
		uint8_t *p = vhu_mem_gpa_span(w->q->mem, addr, &span);
		uint32_t n = span < len ? (uint32_t)span : len;
		uint16_t k = (uint16_t)(e->nout + e->nin);

		if (!p)
			return virtq_break(w->q, "buffer outside guest memory");
		if (k == VIRTQ_MAX_SEGS)
			return virtq_break(w->q,
					   "descriptor chain of more than VIRTQ_MAX_SEGS segments");
		e->iov[k].iov_base = p;
		e->iov[k].iov_len = n;
		if (write) {
			e->nin++;
			e->in_len += n;
		} else {
			e->nout++;
			e->out_len += n;
		}
		addr += n; /* stays inside the region: no wrap */
		len -= n;
	}
	return 0;
}

/* The rest of a chain, from the indirect descriptor @ind. */
static int
walk_indirect(struct walk *w, const struct virtq_desc *ind)
{
	struct virtq *q = w->q;
	struct virtq_desc d;
	const void *table;
	uint32_t n, i = 0;
	int err;

	if (!q->indirect)
		return virtq_break(q, "indirect descriptor without VIRTIO_F_INDIRECT_DESC");
	if (ind->flags & VIRTQ_DESC_F_NEXT)
		return virtq_break(q, "indirect descriptor with NEXT");
	if (ind->len == 0 || ind->len % sizeof(d))
		return virtq_break(q, "indirect table size not a non-zero multiple of 16");
	table = vhu_mem_gpa(q->mem, ind->addr, ind->len);
	if (!table)
		return virtq_break(q, "indirect table not inside one guest memory region");
	n = ind->len / sizeof(d);
	for (;;) {
		desc_read(table, i, &d);
		if (d.flags & VIRTQ_DESC_F_INDIRECT)
			return virtq_break(q, "indirect descriptor inside an indirect table");
		err = add_buffer(w, d.addr, d.len, d.flags & VIRTQ_DESC_F_WRITE);
		if (err)
			return err;
		if (!(d.flags & VIRTQ_DESC_F_NEXT))
			return 0;
		if (d.next >= n)
			return virtq_break(q, "next index outside the indirect table");
		i = d.next;
	}
}

/* A whole chain from @head (already checked below num). */
static int
walk_chain(struct walk *w, uint16_t head)
{
	struct virtq *q = w->q;
	struct virtq_desc d;
	uint16_t i = head;
	int err;

	for (;;) {
		desc_read(q->desc, i, &d);
		/* Zero or more direct descriptors, then at most one indirect. */
		if (d.flags & VIRTQ_DESC_F_INDIRECT)
			return walk_indirect(w, &d);
		err = add_buffer(w, d.addr, d.len, d.flags & VIRTQ_DESC_F_WRITE);
		if (err)
			return err;
		if (!(d.flags & VIRTQ_DESC_F_NEXT))
			return 0;
		if (d.next >= q->num)
			return virtq_break(q, "next descriptor index out of range");
		i = d.next;
	}
}

/* Ask for kicks (avail_event at the first entry not seen, or NO_NOTIFY clear) or not. */
static void
kicks_set(struct virtq *q, bool on)
{
	q->kicks_off = !on;
	if (q->event_idx) {
		/* Off: avail_event stays behind, so the driver kicks once more at most. */
		if (on)
			__atomic_store_n(avail_event(q), q->avail_seen,
					 AROUND_FENCE(__ATOMIC_RELAXED));
		return;
	}
	__atomic_store_n(&q->used[USED_FLAGS], on ? 0 : VIRTQ_USED_F_NO_NOTIFY,
			 AROUND_FENCE(__ATOMIC_RELAXED));
}

void
virtq_init(struct virtq *q, const struct vhu_mem *mem, void *desc, void *avail, void *used,
	   uint16_t num, uint16_t last_avail, uint64_t features, int call)
{
	memset(q, 0, sizeof(*q));
	q->mem = mem;
	q->desc = desc;
	q->avail = avail;
	q->used = used;
	q->num = num;
	q->event_idx = (features & VIRTIO_F_EVENT_IDX) != 0;
	q->indirect = (features & VIRTIO_F_INDIRECT_DESC) != 0;
	q->call = call;
	q->last_avail = q->avail_seen = q->used_idx = q->signalled = last_avail;
	if (num == 0 || (num & (num - 1)))
		virtq_break(q, "queue size not a power of two");
	else if (((uintptr_t)avail & 1) || ((uintptr_t)used & 3))
		virtq_break(q, "available or used ring misaligned in host memory");
	else
		kicks_set(q, true);
}

int
virtq_pop(struct virtq *q, struct virtq_elem *e)
{
	struct walk w = { .q = q, .e = e };
	uint16_t head;
	int err;

	if (q->why)
		return -EPROTO;
	if (q->last_avail == q->avail_seen) {
		err = avail_refresh(q);
		if (err)
			return err;
		if (q->last_avail == q->avail_seen)
			return 0;
	}
	/* Ordered by the acquire load of the avail->idx that covered this entry. */
	head = __atomic_load_n(&q->avail[AVAIL_RING + (q->last_avail & (q->num - 1))],
			       __ATOMIC_RELAXED);
	if (head >= q->num)
		return virtq_break(q, "available head out of range");
	e->head = head;
	e->nout = e->nin = 0;
	e->out_len = e->in_len = 0;
	err = walk_chain(&w, head);
	if (err)
		return err;
	q->last_avail++;
	q->st.popped++;
	return 1;
}

uint16_t
virtq_avail(struct virtq *q)
{
	if (q->why || avail_refresh(q))
		return 0;
	return (uint16_t)(q->avail_seen - q->last_avail);
}

void
virtq_unpop(struct virtq *q, uint16_t n)
{
	if (!q->why)
		q->last_avail = (uint16_t)(q->last_avail - n);
}

void
virtq_push(struct virtq *q, uint16_t head, uint32_t written)
{
	struct virtq_used_elem u = { head, written };

	if (q->why)
		return;
	/* A plain copy: virtq_flush() publishes it with a release store. */
	memcpy(&q->used[USED_RING + 4 * (size_t)(q->used_idx & (q->num - 1))], &u, sizeof(u));
	q->used_idx++;
	q->st.pushed++;
}

/* Whether the driver asked for an interrupt at an entry in [old, new) (16-bit wrap). */
static bool
need_event(uint16_t event, uint16_t new, uint16_t old)
{
	return (uint16_t)(new - event - 1) < (uint16_t)(new - old);
}

/* Whether the driver wants an interrupt for the entries [old, new) just published. */
static bool
wants_interrupt(struct virtq *q, uint16_t old, uint16_t new, bool old_valid)
{
	uint16_t v;

	if (q->event_idx) {
		v = __atomic_load_n(used_event(q), AROUND_FENCE(__ATOMIC_RELAXED));
		return !old_valid || need_event(v, new, old);
	}
	v = __atomic_load_n(&q->avail[AVAIL_FLAGS], AROUND_FENCE(__ATOMIC_RELAXED));
	return !(v & VIRTQ_AVAIL_F_NO_INTERRUPT);
}

bool
virtq_flush(struct virtq *q)
{
	uint16_t old = q->signalled, new = q->used_idx;
	bool old_valid = q->signalled_valid;

	if (q->why || new == old)
		return false;
	if (mem_lost(q)) {
		virtq_break(q, "guest memory was truncated under the device");
		return false;
	}
	/*
	 * Release: the entries virtq_push() wrote are visible before the
	 * index. Pairs with the driver's read barrier (virtio_rmb) between
	 * its load of used->idx and its reads of the used entries.
	 */
	__atomic_store_n(&q->used[USED_IDX], new, AROUND_FENCE(__ATOMIC_RELEASE));
	q->signalled = new;
	q->signalled_valid = true;
	/*
	 * Full fence: the used->idx store before the load of used_event (or
	 * avail->flags). Pairs with the driver's full barrier (virtio_mb)
	 * between its store of used_event (or clearing NO_INTERRUPT) and its
	 * re-read of used->idx: it sees our entries, or we see its request.
	 */
	FULL_FENCE();
	if (!wants_interrupt(q, old, new, old_valid)) {
		q->st.suppressed++;
		return false;
	}
	q->st.notified++;
	/*
	 * -EAGAIN: the counter is full, an interrupt is pending anyway.
	 * -EINTR: the frontend made its call descriptor hold the write.
	 */
	if (q->call >= 0 && wake_fd(q->call) == -EINTR)
		virtq_break(q, "the frontend's call descriptor blocked an interrupt");
	return true;
}

void
virtq_disable_kicks(struct virtq *q)
{
	if (q->why || q->kicks_off)
		return;
	kicks_set(q, false);
}

bool
virtq_enable_kicks(struct virtq *q)
{
	if (q->why)
		return false;
	kicks_set(q, true);
	/*
	 * Full fence: the store of avail_event (or of used->flags) before the
	 * load of avail->idx. Pairs with the driver's full barrier (virtio_mb)
	 * between its store of avail->idx and its load of avail_event (or
	 * used->flags): it sees our request and kicks, or we see its chains.
	 */
	FULL_FENCE();
	if (avail_refresh(q))
		return false;
	return q->avail_seen != q->last_avail;
}

/* The segment of @iov[0 .. n) holding byte @off, @off made relative to it; n if none. */
static unsigned
seg_seek(const struct iovec *iov, unsigned n, size_t *off)
{
	unsigned i = 0;

	while (i < n && *off >= iov[i].iov_len) {
		*off -= iov[i].iov_len;
		i++;
	}
	return i;
}

size_t
virtq_read(const struct virtq_elem *e, size_t off, void *buf, size_t len)
{
	unsigned i = seg_seek(e->iov, e->nout, &off);
	size_t done = 0;

	for (; i < e->nout && done < len; i++, off = 0) {
		size_t n = e->iov[i].iov_len - off;

		if (n > len - done)
			n = len - done;
		memcpy((uint8_t *)buf + done, (const uint8_t *)e->iov[i].iov_base + off, n);
		done += n;
	}
	return done;
}

size_t
virtq_write(const struct virtq_elem *e, size_t off, const void *buf, size_t len)
{
	const struct iovec *iov = e->iov + e->nout;
	unsigned i = seg_seek(iov, e->nin, &off);
	size_t done = 0;

	for (; i < e->nin && done < len; i++, off = 0) {
		size_t n = iov[i].iov_len - off;

		if (n > len - done)
			n = len - done;
		memcpy((uint8_t *)iov[i].iov_base + off, (const uint8_t *)buf + done, n);
		done += n;
	}
	return done;
}
