/* SPDX-License-Identifier: MIT */
/*
 * Tests of the split virtqueue (src/virtio/virtq.c) against a fake driver
 * that lays out the descriptor table, the available and the used ring in
 * "guest memory": a memfd mapped through a real vhost-user memory table of
 * two regions, adjacent in guest-physical space but not in host memory, so
 * that a buffer across the boundary becomes two segments. Chains of every
 * shape, every rejection, interrupt and kick suppression with and without
 * EVENT_IDX (16-bit wrap-around included, the call eventfd's counter
 * checked), copies at every offset, and a driver thread against the device
 * (run under TSan too: both sides use the same mapping).
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include "harness.h"
#include "virtio/virtq.h"

#define MEM_SIZE  0x100000u
#define REGION	  0x80000u /* regions [0, REGION) and [REGION, 2 * REGION) */
#define UA	  0x7f0000000000ull
#define DESC_GPA  0x1000u
#define AVAIL_GPA 0x3000u
#define USED_GPA  0x4000u
#define BUF_GPA	  0x10000u

#define F_NEXT	   VIRTQ_DESC_F_NEXT
#define F_WRITE	   VIRTQ_DESC_F_WRITE
#define F_INDIRECT VIRTQ_DESC_F_INDIRECT

/* The driver's full fences; under TSan (gcc refuses fences there) seq_cst accesses. */
#ifdef __SANITIZE_THREAD__
#define DRV_FENCE()  ((void)0)
#define DRV_ORDER(o) __ATOMIC_SEQ_CST
#else
#define DRV_FENCE()  __atomic_thread_fence(__ATOMIC_SEQ_CST)
#define DRV_ORDER(o) (o)
#endif

struct tq {
	int memfd, call;
	struct vhu_mem mem;
	struct virtq q;
	uint16_t num;
	bool event_idx;
	/* The fake driver: its view of the rings and its private state. */
	struct virtq_desc *desc;
	uint16_t *avail, *used;
	uint16_t avail_idx; /* next available index to publish */
	uint16_t used_seen; /* used entries consumed */
	uint64_t next_gpa;  /* free guest memory for buffers */
};

/* Host pointer of a guest-physical address (the device's own mapping). */
static void *
g(struct tq *t, uint64_t gpa)
{
	void *p = vhu_mem_gpa(&t->mem, gpa, 1);

	ASSERT(p != NULL);
	return p;
}

static void
t_open(struct tq *t, uint16_t num, uint64_t features, uint16_t base)
{
	struct vhu_mem_region w[2] = {
		{ 0, REGION, UA, 0 },
		{ REGION, REGION, UA + REGION, REGION },
	};
	int fds[2];

	memset(t, 0, sizeof(*t));
	t->memfd = memfd_create("test-virtq", MFD_CLOEXEC);
	ASSERT_GE(t->memfd, 0);
	ASSERT_OK(ftruncate(t->memfd, MEM_SIZE));
	fds[0] = fds[1] = t->memfd;
	vhu_mem_init(&t->mem);
	ASSERT_OK(vhu_mem_set(&t->mem, w, 2, fds));
	t->call = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	ASSERT_GE(t->call, 0);
	t->num = num;
	t->event_idx = (features & VIRTIO_F_EVENT_IDX) != 0;
	t->desc = g(t, DESC_GPA);
	t->avail = g(t, AVAIL_GPA);
	t->used = g(t, USED_GPA);
	t->avail_idx = t->used_seen = base;
	t->avail[1] = base;
	t->used[1] = base;
	t->next_gpa = BUF_GPA;
	virtq_init(&t->q, &t->mem, t->desc, t->avail, t->used, num, base, features, t->call);
	ASSERT(!virtq_broken(&t->q));
}

static void
t_close(struct tq *t)
{
	vhu_mem_clear(&t->mem);
	close(t->memfd);
	close(t->call);
}

/* @len bytes of guest memory, filled with @fill + i. */
static uint64_t
t_buf(struct tq *t, uint32_t len, uint8_t fill)
{
	uint64_t gpa = t->next_gpa;

	t->next_gpa = (gpa + len + 15) & ~15ull;
	ASSERT_LE(t->next_gpa, REGION - 0x1000);
	for (uint32_t i = 0; i < len; i++)
		((uint8_t *)g(t, gpa))[i] = (uint8_t)(fill + i);
	return gpa;
}

static void
t_desc(struct tq *t, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next)
{
	struct virtq_desc d = { addr, len, flags, next };

	memcpy(&t->desc[i], &d, sizeof(d));
}

/* An indirect table at a fresh address: its guest-physical address. */
static uint64_t
t_table(struct tq *t, const struct virtq_desc *d, unsigned n)
{
	uint64_t gpa = t_buf(t, (uint32_t)(n * sizeof(*d)), 0);

	memcpy(g(t, gpa), d, n * sizeof(*d));
	return gpa;
}

static void
t_set_avail_idx(struct tq *t, uint16_t idx)
{
	t->avail_idx = idx;
	__atomic_store_n(&t->avail[1], idx, DRV_ORDER(__ATOMIC_RELEASE));
}

static void
t_publish(struct tq *t, uint16_t head)
{
	t->avail[2 + (t->avail_idx & (t->num - 1))] = head;
	t_set_avail_idx(t, (uint16_t)(t->avail_idx + 1));
}

/* What a driver decides after publishing from @old: whether to kick. */
static bool
t_should_kick(struct tq *t, uint16_t old)
{
	uint16_t v;

	/* Pairs with the fence in virtq_enable_kicks(). */
	DRV_FENCE();
	if (t->event_idx) {
		v = __atomic_load_n(&t->used[2 + 4 * t->num], DRV_ORDER(__ATOMIC_RELAXED));
		return (uint16_t)(t->avail_idx - v - 1) < (uint16_t)(t->avail_idx - old);
	}
	v = __atomic_load_n(&t->used[0], DRV_ORDER(__ATOMIC_RELAXED));
	return !(v & VIRTQ_USED_F_NO_NOTIFY);
}

static void
t_set_used_event(struct tq *t, uint16_t v)
{
	__atomic_store_n(&t->avail[2 + t->num], v, DRV_ORDER(__ATOMIC_RELAXED));
}

static uint16_t
t_avail_event(struct tq *t)
{
	return __atomic_load_n(&t->used[2 + 4 * t->num], __ATOMIC_RELAXED);
}

/* The next used entry: 1 with it, 0 if none. */
static int
t_used(struct tq *t, uint32_t *id, uint32_t *len)
{
	uint16_t idx = __atomic_load_n(&t->used[1], DRV_ORDER(__ATOMIC_ACQUIRE));
	uint32_t u[2];

	if (idx == t->used_seen)
		return 0;
	ASSERT_LE((uint16_t)(idx - t->used_seen), t->num);
	memcpy(u, &t->used[2 + 4 * (t->used_seen & (t->num - 1))], sizeof(u));
	t->used_seen++;
	*id = u[0];
	*len = u[1];
	return 1;
}

/* Interrupts since the last call (the call eventfd's counter). */
static uint64_t
t_calls(struct tq *t)
{
	uint64_t v = 0;

	if (read(t->call, &v, sizeof(v)) < 0) {
		ASSERT_EQ(errno, EAGAIN);
		return 0;
	}
	return v;
}

static void
expect_iov(const struct virtq_elem *e, unsigned i, const void *base, size_t len)
{
	ASSERT(e->iov[i].iov_base == base);
	ASSERT_EQ(e->iov[i].iov_len, len);
}

/* The next pop breaks the queue, for a reason containing @what; then nothing is touched. */
static void
expect_broken(struct tq *t, const char *what)
{
	uint16_t idx = t->used[1], flags = t->used[0], ev = t_avail_event(t);
	struct virtq_elem e;

	ASSERT_EQ(virtq_pop(&t->q, &e), -EPROTO);
	ASSERT(virtq_broken(&t->q));
	th_log("why: %s (expected: %s)", virtq_why(&t->q), what);
	ASSERT(strstr(virtq_why(&t->q), what) != NULL);
	ASSERT_EQ(virtq_pop(&t->q, &e), -EPROTO);
	ASSERT_EQ(virtq_avail(&t->q), 0);
	virtq_push(&t->q, 0, 1);
	ASSERT(!virtq_flush(&t->q));
	virtq_disable_kicks(&t->q);
	ASSERT(!virtq_enable_kicks(&t->q));
	ASSERT_EQ(t->used[1], idx);
	ASSERT_EQ(t->used[0], flags);
	ASSERT_EQ(t_avail_event(t), ev);
	ASSERT_EQ(t_calls(t), 0);
}

/* A fresh queue of @num with @features, one chain built by @build, rejected for @what. */
static void
reject(uint16_t num, uint64_t features, void (*build)(struct tq *), const char *what)
{
	struct tq t;

	t_open(&t, num, features, 0);
	build(&t);
	expect_broken(&t, what);
	t_close(&t);
}

TEST(virtq_simple)
{
	struct virtq_elem e;
	struct tq t;
	uint64_t a, b, c;
	uint32_t id, len;
	char buf[16];

	t_open(&t, 16, 0, 0);
	ASSERT_EQ(virtq_pop(&t.q, &e), 0);
	ASSERT_EQ(virtq_avail(&t.q), 0);
	a = t_buf(&t, 5, 'a');
	t_desc(&t, 3, a, 5, 0, 0);
	t_publish(&t, 3);
	ASSERT_EQ(virtq_avail(&t.q), 1);
	ASSERT_EQ(virtq_pop(&t.q, &e), 1);
	ASSERT_EQ(e.head, 3);
	ASSERT_EQ(e.nout, 1);
	ASSERT_EQ(e.nin, 0);
	ASSERT_EQ(e.out_len, 5);
	ASSERT_EQ(e.in_len, 0);
	expect_iov(&e, 0, g(&t, a), 5);
	ASSERT_EQ(virtq_read(&e, 0, buf, sizeof(buf)), 5);
	ASSERT_MEM_EQ(buf, "abcde", 5);
	ASSERT_EQ(virtq_write(&e, 0, "x", 1), 0);
	ASSERT_EQ(virtq_pop(&t.q, &e), 0);
	ASSERT_EQ(t_used(&t, &id, &len), 0);
	virtq_push(&t.q, 3, 0);
	ASSERT_EQ(t_used(&t, &id, &len), 0); /* not before the flush */
	ASSERT(virtq_flush(&t.q));
	ASSERT_EQ(t_calls(&t), 1);
	ASSERT_EQ(t_used(&t, &id, &len), 1);
	ASSERT_EQ(id, 3);
	ASSERT_EQ(len, 0);

	/* Three readable descriptors out of order in the table; two chains at once. */
	b = t_buf(&t, 7, 'A');
	c = t_buf(&t, 9, '0');
	t_desc(&t, 9, a, 5, F_NEXT, 0);
	t_desc(&t, 0, b, 7, F_NEXT, 15);
	t_desc(&t, 15, c, 9, 0, 1234);
	t_desc(&t, 4, c, 2, 0, 0);
	t_publish(&t, 9);
	t_publish(&t, 4);
	ASSERT_EQ(virtq_avail(&t.q), 2);
	ASSERT_EQ(virtq_pop(&t.q, &e), 1);
	ASSERT_EQ(virtq_avail(&t.q), 1);
	ASSERT_EQ(e.head, 9);
	ASSERT_EQ(e.nout, 3);
	ASSERT_EQ(e.out_len, 21);
	expect_iov(&e, 0, g(&t, a), 5);
	expect_iov(&e, 1, g(&t, b), 7);
	expect_iov(&e, 2, g(&t, c), 9);
	virtq_push(&t.q, e.head, 0);
	ASSERT_EQ(virtq_pop(&t.q, &e), 1);
	ASSERT_EQ(e.head, 4);
	ASSERT_EQ(e.out_len, 2);
	virtq_push(&t.q, e.head, 0);
	ASSERT(virtq_flush(&t.q));
	ASSERT_EQ(t_calls(&t), 1);
	ASSERT_EQ(t_used(&t, &id, &len), 1);
	ASSERT_EQ(id, 9);
	ASSERT_EQ(t_used(&t, &id, &len), 1);
	ASSERT_EQ(id, 4);
	ASSERT_EQ(virtq_last_avail(&t.q), 3);
	ASSERT_EQ(t.q.st.popped, 3);
	ASSERT_EQ(t.q.st.pushed, 3);
	ASSERT_EQ(t.q.st.notified, 2);
	t_close(&t);
}

TEST(virtq_read_then_write)
{
	uint8_t in[38], want[38];
	struct virtq_elem e;
	uint64_t r0, r1, w0, w1;
	uint32_t id, len;
	struct tq t;
	char out[30];

	t_open(&t, 8, 0, 0);
	r0 = t_buf(&t, 10, 'a');
	r1 = t_buf(&t, 20, 'A');
	w0 = t_buf(&t, 8, 0);
	w1 = t_buf(&t, 30, 0);
	t_desc(&t, 0, r0, 10, F_NEXT, 5);
	t_desc(&t, 5, r1, 20, F_NEXT, 2);
	t_desc(&t, 2, w0, 8, F_NEXT | F_WRITE, 7);
	t_desc(&t, 7, w1, 30, F_WRITE, 0);
	t_publish(&t, 0);
	ASSERT_EQ(virtq_pop(&t.q, &e), 1);
	ASSERT_EQ(e.nout, 2);
	ASSERT_EQ(e.nin, 2);
	ASSERT_EQ(e.out_len, 30);
	ASSERT_EQ(e.in_len, 38);
	expect_iov(&e, 0, g(&t, r0), 10);
	expect_iov(&e, 1, g(&t, r1), 20);
	expect_iov(&e, 2, g(&t, w0), 8);
	expect_iov(&e, 3, g(&t, w1), 30);
	ASSERT_EQ(virtq_read(&e, 0, out, sizeof(out)), 30);
	ASSERT_MEM_EQ(out, "abcdefghijABCDEFGHIJKLMNOPQRST", 30);
	for (unsigned i = 0; i < sizeof(in); i++)
		in[i] = (uint8_t)(200 + i);
	ASSERT_EQ(virtq_write(&e, 0, in, sizeof(in)), 38);
	memcpy(want, g(&t, w0), 8);
	memcpy(want + 8, g(&t, w1), 30);
	ASSERT_MEM_EQ(want, in, sizeof(in));
	ASSERT_MEM_EQ(g(&t, r0), "abcdefghij", 10); /* readable ones untouched */
	virtq_push(&t.q, e.head, 38);
	virtq_flush(&t.q);
	ASSERT_EQ(t_used(&t, &id, &len), 1);
	ASSERT_EQ(id, 0);
	ASSERT_EQ(len, 38);
	t_close(&t);
}

TEST(virtq_indirect)
{
	struct virtq_desc tab[3];
	struct virtq_elem e;
	uint64_t a, b, c, ta;
	struct tq t;

	t_open(&t, 4, VIRTIO_F_INDIRECT_DESC, 0);
	a = t_buf(&t, 11, 'a');
	b = t_buf(&t, 12, 0);
	c = t_buf(&t, 13, 0);
	/* One indirect descriptor; the table's chain is 0 -> 2 -> 1. */
	tab[0] = (struct virtq_desc){ a, 11, F_NEXT, 2 };
	tab[2] = (struct virtq_desc){ b, 12, F_NEXT | F_WRITE, 1 };
	tab[1] = (struct virtq_desc){ c, 13, F_WRITE, 99 };
	ta = t_table(&t, tab, 3);
	/* WRITE on the descriptor that refers to the table is ignored. */
	t_desc(&t, 2, ta, sizeof(tab), F_INDIRECT | F_WRITE, 0);
	t_publish(&t, 2);
	ASSERT_EQ(virtq_pop(&t.q, &e), 1);
	ASSERT_EQ(e.head, 2);
	ASSERT_EQ(e.nout, 1);
	ASSERT_EQ(e.nin, 2);
	ASSERT_EQ(e.out_len, 11);
	ASSERT_EQ(e.in_len, 25);
	expect_iov(&e, 0, g(&t, a), 11);
	expect_iov(&e, 1, g(&t, b), 12);
	expect_iov(&e, 2, g(&t, c), 13);

	/* Direct descriptors, then an indirect one (virtio 2.7.5.3.2). */
	tab[0] = (struct virtq_desc){ b, 5, F_WRITE | F_NEXT, 1 };
	tab[1] = (struct virtq_desc){ c, 6, F_WRITE, 0 };
	ta = t_table(&t, tab, 2);
	t_desc(&t, 0, a, 3, F_NEXT, 3);
	t_desc(&t, 3, a + 3, 4, F_NEXT, 1);
	t_desc(&t, 1, ta, 32, F_INDIRECT, 0);
	t_publish(&t, 0);
	ASSERT_EQ(virtq_pop(&t.q, &e), 1);
	ASSERT_EQ(e.head, 0);
	ASSERT_EQ(e.nout, 2);
	ASSERT_EQ(e.nin, 2);
	ASSERT_EQ(e.out_len, 7);
	ASSERT_EQ(e.in_len, 11);
	expect_iov(&e, 1, g(&t, a + 3), 4);
	expect_iov(&e, 3, g(&t, c), 6);

	/* A table as long as the queue is fine; the walk stays inside it. */
	for (unsigned i = 0; i < 3; i++)
		tab[i] = (struct virtq_desc){ a + i, 1, F_NEXT, (uint16_t)(i + 1) };
	tab[2].flags = 0;
	t_desc(&t, 3, t_table(&t, tab, 3), 48, F_INDIRECT, 0);
	t_publish(&t, 3);
	ASSERT_EQ(virtq_pop(&t.q, &e), 1);
	ASSERT_EQ(e.nout, 3);
	ASSERT_EQ(e.out_len, 3);
	ASSERT(!virtq_broken(&t.q));
	t_close(&t);
}

TEST(virtq_split_regions)
{
	struct virtq_desc tab[1] = { { REGION - 1, 3, F_WRITE, 0 } };
	struct virtq_elem e;
	uint8_t want[300], got[300];
	struct tq t;

	t_open(&t, 8, VIRTIO_F_INDIRECT_DESC, 0);
	for (unsigned i = 0; i < sizeof(want); i++)
		want[i] = (uint8_t)(i * 7);
	memcpy(g(&t, REGION - 100), want, 100);
	memcpy(g(&t, REGION), want + 100, 200);
	/* Readable across the boundary (two segments), writable in either region. */
	t_desc(&t, 0, REGION - 100, 300, F_NEXT, 1);
	t_desc(&t, 1, REGION - 200, 100, F_WRITE | F_NEXT, 2);
	t_desc(&t, 2, REGION + 300, 50, F_WRITE, 0);
	t_publish(&t, 0);
	ASSERT_EQ(virtq_pop(&t.q, &e), 1);
	ASSERT_EQ(e.nout, 2);
	ASSERT_EQ(e.nin, 2);
	ASSERT_EQ(e.out_len, 300);
	ASSERT_EQ(e.in_len, 150);
	expect_iov(&e, 0, g(&t, REGION - 100), 100);
	expect_iov(&e, 1, g(&t, REGION), 200);
	expect_iov(&e, 2, g(&t, REGION - 200), 100);
	expect_iov(&e, 3, g(&t, REGION + 300), 50);
	ASSERT_EQ(virtq_read(&e, 0, got, sizeof(got)), 300);
	ASSERT_MEM_EQ(got, want, sizeof(want));

	/* Writable across the boundary, from an indirect table. */
	t_desc(&t, 3, t_table(&t, tab, 1), 16, F_INDIRECT, 0);
	t_publish(&t, 3);
	ASSERT_EQ(virtq_pop(&t.q, &e), 1);
	ASSERT_EQ(e.nout, 0);
	ASSERT_EQ(e.nin, 2);
	expect_iov(&e, 0, g(&t, REGION - 1), 1);
	expect_iov(&e, 1, g(&t, REGION), 2);
	ASSERT_EQ(virtq_write(&e, 0, "xyz", 3), 3);
	ASSERT_EQ(*(uint8_t *)g(&t, REGION - 1), 'x');
	ASSERT_MEM_EQ(g(&t, REGION), "yz", 2);
	t_close(&t);
}

TEST(virtq_zero_length)
{
	struct virtq_elem e;
	struct tq t;
	uint64_t a;

	t_open(&t, 8, 0, 0);
	a = t_buf(&t, 4, 'a');
	/* Zero-length descriptors count nowhere, wherever they point. */
	t_desc(&t, 0, 0xffffffffffffff00ull, 0, F_NEXT, 1);
	t_desc(&t, 1, a, 4, F_NEXT, 2);
	t_desc(&t, 2, 2 * REGION + 5, 0, F_WRITE, 0);
	t_publish(&t, 0);
	t_desc(&t, 5, 0, 0, 0, 0);
	t_publish(&t, 5);
	ASSERT_EQ(virtq_pop(&t.q, &e), 1);
	ASSERT_EQ(e.nout, 1);
	ASSERT_EQ(e.nin, 0);
	ASSERT_EQ(e.out_len, 4);
	ASSERT_EQ(e.in_len, 0);
	expect_iov(&e, 0, g(&t, a), 4);
	ASSERT_EQ(virtq_pop(&t.q, &e), 1);
	ASSERT_EQ(e.head, 5);
	ASSERT_EQ(e.nout + e.nin, 0);
	ASSERT_EQ(virtq_read(&e, 0, &a, 1), 0);
	t_close(&t);
}

TEST(virtq_init_checks)
{
	struct virtq q;
	struct tq t;
	uint8_t *avail;

	t_open(&t, 8, 0, 0);
	virtq_init(&q, &t.mem, t.desc, t.avail, t.used, 0, 0, 0, -1);
	ASSERT(virtq_broken(&q));
	virtq_init(&q, &t.mem, t.desc, t.avail, t.used, 12, 0, 0, -1);
	ASSERT(virtq_broken(&q));
	avail = (uint8_t *)t.avail + 1;
	virtq_init(&q, &t.mem, t.desc, avail, t.used, 8, 0, 0, -1);
	ASSERT(virtq_broken(&q));
	virtq_init(&q, &t.mem, t.desc, t.avail, t.used + 1, 8, 0, 0, -1);
	ASSERT(virtq_broken(&q));
	virtq_init(&q, &t.mem, t.desc, t.avail, t.used, 32768, 0, 0, -1);
	ASSERT(!virtq_broken(&q));
	/* A base anywhere: the used index resumes there. */
	virtq_init(&q, &t.mem, t.desc, t.avail, t.used, 8, 40000, 0, -1);
	ASSERT(!virtq_broken(&q));
	ASSERT_EQ(virtq_last_avail(&q), 40000);
	ASSERT_EQ(q.used_idx, 40000);
	t_close(&t);
}

static void
build_head(struct tq *t)
{
	t_desc(t, 0, t_buf(t, 4, 0), 4, 0, 0);
	t_publish(t, 8);
}

static void
build_head_max(struct tq *t)
{
	t_publish(t, 0xffff);
}

static void
build_next(struct tq *t)
{
	t_desc(t, 0, t_buf(t, 4, 0), 4, F_NEXT, 8);
	t_publish(t, 0);
}

TEST(virtq_reject_head_next)
{
	reject(8, 0, build_head, "head out of range");
	reject(8, 0, build_head_max, "head out of range");
	reject(8, 0, build_next, "next descriptor index out of range");
}

static void
build_loop(struct tq *t)
{
	uint64_t a = t_buf(t, 4, 0);

	t_desc(t, 0, a, 4, F_NEXT, 1);
	t_desc(t, 1, a, 4, F_NEXT, 0);
	t_publish(t, 0);
}

static void
build_self_loop(struct tq *t)
{
	t_desc(t, 3, 0, 0, F_NEXT, 3); /* zero-length descriptors count too */
	t_publish(t, 3);
}

static void
build_indirect_loop(struct tq *t)
{
	uint64_t a = t_buf(t, 4, 0);
	struct virtq_desc tab[2] = { { a, 4, F_NEXT, 1 }, { a, 4, F_NEXT, 0 } };

	t_desc(t, 0, t_table(t, tab, 2), 32, F_INDIRECT, 0);
	t_publish(t, 0);
}

/* A table of num + 1 descriptors, no loop: longer than the queue. */
static void
build_indirect_long(struct tq *t)
{
	struct virtq_desc tab[9];
	uint64_t a = t_buf(t, 9, 0);

	for (uint16_t i = 0; i < 9; i++)
		tab[i] = (struct virtq_desc){ a + i, 1, F_NEXT, (uint16_t)(i + 1) };
	tab[8].flags = 0;
	t_desc(t, 0, t_table(t, tab, 9), sizeof(tab), F_INDIRECT, 0);
	t_publish(t, 0);
}

/* Direct ones and a table, num + 1 in all. */
static void
build_mixed_long(struct tq *t)
{
	struct virtq_desc tab[6];
	uint64_t a = t_buf(t, 9, 0);

	for (uint16_t i = 0; i < 6; i++)
		tab[i] = (struct virtq_desc){ a + i, 1, F_NEXT, (uint16_t)(i + 1) };
	tab[5].flags = 0;
	t_desc(t, 0, a, 1, F_NEXT, 1);
	t_desc(t, 1, a, 1, F_NEXT, 2);
	t_desc(t, 2, a, 1, F_NEXT, 3);
	t_desc(t, 3, t_table(t, tab, 6), sizeof(tab), F_INDIRECT, 0);
	t_publish(t, 0);
}

TEST(virtq_reject_loop_and_length)
{
	reject(8, 0, build_loop, "loop");
	reject(8, 0, build_self_loop, "loop");
	reject(8, VIRTIO_F_INDIRECT_DESC, build_indirect_loop, "loop");
	reject(8, VIRTIO_F_INDIRECT_DESC, build_indirect_long, "longer than the queue");
	reject(8, VIRTIO_F_INDIRECT_DESC, build_mixed_long, "longer than the queue");
}

static void
build_write_read(struct tq *t)
{
	uint64_t a = t_buf(t, 8, 0);

	t_desc(t, 0, a, 4, F_NEXT, 1);
	t_desc(t, 1, a, 4, F_WRITE | F_NEXT, 2);
	t_desc(t, 2, a + 4, 4, 0, 0);
	t_publish(t, 0);
}

static void
build_write_read_zero(struct tq *t)
{
	uint64_t a = t_buf(t, 8, 0);

	t_desc(t, 0, a, 4, F_WRITE | F_NEXT, 1);
	t_desc(t, 1, a, 0, 0, 0);
	t_publish(t, 0);
}

static void
build_write_read_indirect(struct tq *t)
{
	uint64_t a = t_buf(t, 8, 0);
	struct virtq_desc tab[2] = { { a, 4, F_WRITE | F_NEXT, 1 }, { a + 4, 4, 0, 0 } };

	t_desc(t, 0, t_table(t, tab, 2), 32, F_INDIRECT, 0);
	t_publish(t, 0);
}

/* Writable direct descriptors, then an indirect table starting readable. */
static void
build_write_then_indirect_read(struct tq *t)
{
	uint64_t a = t_buf(t, 8, 0);
	struct virtq_desc tab[1] = { { a + 4, 4, 0, 0 } };

	t_desc(t, 0, a, 4, F_WRITE | F_NEXT, 1);
	t_desc(t, 1, t_table(t, tab, 1), 16, F_INDIRECT, 0);
	t_publish(t, 0);
}

TEST(virtq_reject_write_then_read)
{
	const char *why = "readable descriptor after a writable";

	reject(8, 0, build_write_read, why);
	reject(8, 0, build_write_read_zero, why);
	reject(8, VIRTIO_F_INDIRECT_DESC, build_write_read_indirect, why);
	reject(8, VIRTIO_F_INDIRECT_DESC, build_write_then_indirect_read, why);
}

static void
build_nested(struct tq *t)
{
	uint64_t a = t_buf(t, 8, 0);
	struct virtq_desc inner[1] = { { a, 8, 0, 0 } };
	struct virtq_desc outer[2] = { { a, 4, F_NEXT, 1 }, { 0, 16, F_INDIRECT, 0 } };

	outer[1].addr = t_table(t, inner, 1);
	t_desc(t, 0, t_table(t, outer, 2), 32, F_INDIRECT, 0);
	t_publish(t, 0);
}

/* An indirect descriptor whose table is @len bytes at @addr (@flags added). */
static void
build_table(struct tq *t, uint64_t addr, uint32_t len, uint16_t flags)
{
	uint64_t a = t_buf(t, 8, 0);
	struct virtq_desc tab[4] = {
		{ a, 8, 0, 0 },
		{ a, 8, 0, 0 },
		{ a, 8, 0, 0 },
		{ a, 8, 0, 0 },
	};

	if (addr == 0)
		addr = t_table(t, tab, 4);
	t_desc(t, 0, a, 4, F_NEXT, 1);
	t_desc(t, 1, addr, len, F_INDIRECT | flags, 2);
	t_desc(t, 2, a, 4, 0, 0);
	t_publish(t, 0);
}

static void
build_table_ok(struct tq *t)
{
	build_table(t, 0, 64, 0);
}

static void
build_table_24(struct tq *t)
{
	build_table(t, 0, 24, 0);
}

static void
build_table_0(struct tq *t)
{
	build_table(t, 0, 0, 0);
}

static void
build_table_next(struct tq *t)
{
	build_table(t, 0, 64, F_NEXT);
}

static void
build_table_outside(struct tq *t)
{
	build_table(t, 2 * REGION - 32, 64, 0);
}

static void
build_table_huge(struct tq *t)
{
	build_table(t, 0xfffffffffffffff0ull, 0xfffffff0u, 0);
}

static void
build_table_across(struct tq *t)
{
	struct virtq_desc tab[2] = { { REGION + 64, 8, 0, 0 }, { 0 } };

	memcpy(g(t, REGION - 16), tab, 16);
	memcpy(g(t, REGION), tab + 1, 16);
	build_table(t, REGION - 16, 32, 0);
}

static void
build_table_next_out(struct tq *t)
{
	uint64_t a = t_buf(t, 8, 0);
	struct virtq_desc tab[2] = { { a, 4, F_NEXT, 1 }, { a, 4, F_NEXT, 2 } };

	t_desc(t, 0, t_table(t, tab, 2), 32, F_INDIRECT, 0);
	t_publish(t, 0);
}

TEST(virtq_reject_indirect)
{
	const uint64_t ind = VIRTIO_F_INDIRECT_DESC;
	struct virtq_elem e;
	struct tq t;

	/* The well-formed version of what follows is accepted. */
	t_open(&t, 8, ind, 0);
	build_table_ok(&t);
	ASSERT_EQ(virtq_pop(&t.q, &e), 1);
	ASSERT_EQ(e.nout, 2);
	t_close(&t);

	reject(8, 0, build_table_ok, "without VIRTIO_F_INDIRECT_DESC");
	reject(8, ind, build_nested, "indirect descriptor inside an indirect table");
	reject(8, ind, build_table_24, "multiple of 16");
	reject(8, ind, build_table_0, "multiple of 16");
	reject(8, ind, build_table_next, "indirect descriptor with NEXT");
	reject(8, ind, build_table_outside, "not inside one guest memory region");
	reject(8, ind, build_table_huge, "not inside one guest memory region");
	reject(8, ind, build_table_across, "not inside one guest memory region");
	reject(8, ind, build_table_next_out, "next index outside the indirect table");
}

static void
build_outside(struct tq *t, uint64_t addr, uint32_t len)
{
	t_desc(t, 0, t_buf(t, 4, 0), 4, F_NEXT, 1);
	t_desc(t, 1, addr, len, F_WRITE, 0);
	t_publish(t, 0);
}

static void
build_past_end(struct tq *t)
{
	build_outside(t, 2 * REGION, 1);
}

static void
build_across_end(struct tq *t)
{
	build_outside(t, 2 * REGION - 10, 11);
}

static void
build_wrap(struct tq *t)
{
	build_outside(t, 0xfffffffffffffffaull, 10);
}

static void
build_huge(struct tq *t)
{
	build_outside(t, 0x100, 0xfffffff0u); /* through both regions and past */
}

static void
build_over_4g(struct tq *t)
{
	t_desc(t, 0, t_buf(t, 4, 0), 4, F_NEXT, 1);
	t_desc(t, 1, 0, 0xfffffffdu, F_WRITE, 0); /* 4 + that: 2^32 + 1 */
	t_publish(t, 0);
}

TEST(virtq_reject_outside_memory)
{
	reject(8, 0, build_past_end, "outside guest memory");
	reject(8, 0, build_across_end, "outside guest memory");
	reject(8, 0, build_wrap, "outside guest memory");
	reject(8, 0, build_huge, "outside guest memory");
	reject(8, 0, build_over_4g, "more than 4 GiB");
}

TEST(virtq_reject_avail_idx)
{
	struct virtq_elem e;
	struct tq t;

	/* Exactly num ahead is fine, also across the 16-bit wrap. */
	t_open(&t, 8, 0, 65530);
	t_desc(&t, 0, t_buf(&t, 4, 0), 4, 0, 0);
	for (unsigned i = 0; i < 8; i++)
		t_publish(&t, 0);
	ASSERT_EQ(t.avail_idx, 2);
	ASSERT_EQ(virtq_avail(&t.q), 8);
	for (unsigned i = 0; i < 8; i++)
		ASSERT_EQ(virtq_pop(&t.q, &e), 1);
	ASSERT_EQ(virtq_pop(&t.q, &e), 0);
	ASSERT_EQ(virtq_last_avail(&t.q), 2);
	/* Then one more than num. */
	t_set_avail_idx(&t, 2 + 9);
	expect_broken(&t, "more than the queue size ahead");
	t_close(&t);

	/* Found by virtq_avail() as well, and by the re-check of enable_kicks. */
	t_open(&t, 8, 0, 0);
	t_set_avail_idx(&t, 0xffff);
	ASSERT_EQ(virtq_avail(&t.q), 0);
	ASSERT(virtq_broken(&t.q));
	t_close(&t);
	t_open(&t, 8, 0, 0);
	t_set_avail_idx(&t, 100);
	ASSERT(!virtq_enable_kicks(&t.q));
	expect_broken(&t, "more than the queue size ahead");
	t_close(&t);

	/* Backwards. */
	t_open(&t, 8, 0, 0);
	t_desc(&t, 0, t_buf(&t, 4, 0), 4, 0, 0);
	for (unsigned i = 0; i < 3; i++)
		t_publish(&t, 0);
	ASSERT_EQ(virtq_pop(&t.q, &e), 1);
	ASSERT_EQ(virtq_pop(&t.q, &e), 1);
	ASSERT_EQ(virtq_pop(&t.q, &e), 1);
	t_set_avail_idx(&t, 2);
	expect_broken(&t, "more than the queue size ahead"); /* behind what was taken */
	t_close(&t);
	t_open(&t, 8, 0, 0);
	t_desc(&t, 0, t_buf(&t, 4, 0), 4, 0, 0);
	for (unsigned i = 0; i < 3; i++)
		t_publish(&t, 0);
	ASSERT_EQ(virtq_pop(&t.q, &e), 1);
	t_set_avail_idx(&t, 2);
	/* Behind what was seen (entries 1 and 2), found at the next look at the index. */
	ASSERT_EQ(virtq_avail(&t.q), 0);
	expect_broken(&t, "moved backwards");
	t_close(&t);
}

/* @n one-byte descriptors in a row, the last one @last bytes from @last_addr. */
static void
build_segs(struct tq *t, uint16_t n, uint64_t last_addr, uint32_t last)
{
	uint64_t a = t_buf(t, n, 0);

	for (uint16_t i = 0; i + 1 < n; i++)
		t_desc(t, i, a + i, 1, F_NEXT, (uint16_t)(i + 1));
	t_desc(t, (uint16_t)(n - 1), last_addr, last, 0, 0);
	t_publish(t, 0);
}

static void
build_65(struct tq *t)
{
	build_segs(t, 65, BUF_GPA, 1);
}

static void
build_64_split(struct tq *t)
{
	build_segs(t, 64, REGION - 1, 2);
}

TEST(virtq_reject_segments)
{
	struct virtq_elem e;
	struct tq t;

	t_open(&t, 128, 0, 0);
	build_segs(&t, 64, BUF_GPA, 1);
	ASSERT_EQ(virtq_pop(&t.q, &e), 1);
	ASSERT_EQ(e.nout, VIRTQ_MAX_SEGS);
	t_close(&t);
	t_open(&t, 128, 0, 0);
	build_segs(&t, 63, REGION - 1, 2);
	ASSERT_EQ(virtq_pop(&t.q, &e), 1);
	ASSERT_EQ(e.nout, VIRTQ_MAX_SEGS);
	expect_iov(&e, 63, g(&t, REGION), 1);
	t_close(&t);
	reject(128, 0, build_65, "VIRTQ_MAX_SEGS");
	reject(128, 0, build_64_split, "VIRTQ_MAX_SEGS");
}

/*
 * The driver takes what was used, makes @n chains available (all head 0),
 * the device takes and gives them back (not flushed).
 */
static void
cycle(struct tq *t, unsigned n)
{
	struct virtq_elem e;
	uint32_t id, len;

	while (t_used(t, &id, &len))
		;
	for (unsigned i = 0; i < n; i++)
		t_publish(t, 0);
	for (unsigned i = 0; i < n; i++) {
		ASSERT_EQ(virtq_pop(&t->q, &e), 1);
		virtq_push(&t->q, e.head, 0);
	}
	ASSERT_EQ(virtq_pop(&t->q, &e), 0);
}

/* Flush; whether it interrupted must be @want, and the counter must agree. */
static void
flush_expect(struct tq *t, bool want)
{
	ASSERT_EQ(virtq_flush(&t->q), want);
	ASSERT_EQ(t_calls(t), want ? 1 : 0);
}

TEST(virtq_event_idx)
{
	struct tq t;

	t_open(&t, 8, VIRTIO_F_EVENT_IDX, 0);
	t_desc(&t, 0, t_buf(&t, 4, 'a'), 4, 0, 0);
	ASSERT_EQ(t_avail_event(&t), 0);
	flush_expect(&t, false); /* nothing pushed */
	t_set_used_event(&t, 100);
	cycle(&t, 1);
	flush_expect(&t, true); /* the first flush always interrupts */
	ASSERT_EQ(t.used[1], 1);
	/* used idx 1; the driver wants an interrupt once entry 5 is used. */
	t_set_used_event(&t, 5);
	cycle(&t, 2);
	flush_expect(&t, false); /* [1, 3) */
	ASSERT_EQ(t.used[1], 3); /* published all the same */
	cycle(&t, 3);
	flush_expect(&t, true); /* [3, 6) holds 5 */
	t_set_used_event(&t, 6);
	cycle(&t, 1);
	flush_expect(&t, true); /* [6, 7) holds 6 */
	t_set_used_event(&t, 8);
	cycle(&t, 1);
	flush_expect(&t, false); /* [7, 8) */
	t_set_used_event(&t, 2);
	cycle(&t, 4);
	flush_expect(&t, false); /* behind: [8, 12) */
	flush_expect(&t, false); /* nothing new */
	t_set_used_event(&t, 12);
	flush_expect(&t, false); /* still nothing new */
	cycle(&t, 1);
	flush_expect(&t, true);
	/* NO_INTERRUPT means nothing with EVENT_IDX. */
	t.avail[0] = VIRTQ_AVAIL_F_NO_INTERRUPT;
	t_set_used_event(&t, 13);
	cycle(&t, 1);
	flush_expect(&t, true);
	ASSERT_EQ(t.q.st.notified, 5);
	ASSERT_EQ(t.q.st.suppressed, 3);
	/* No call descriptor: still says whether the driver wanted one. */
	t.q.call = -1;
	t_set_used_event(&t, 14);
	cycle(&t, 1);
	ASSERT(virtq_flush(&t.q));
	ASSERT_EQ(t_calls(&t), 0);
	t_close(&t);
}

TEST(virtq_event_idx_wrap)
{
	struct tq t;
	static const struct {
		uint16_t event;
		bool want;
	} cases[] = {
		{ 65534, true }, { 65535, true },  { 0, true },	 { 1, true },
		{ 2, false },	 { 65533, false }, { 3, false }, { 32768, false },
	};

	for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		th_log("used_event %u", cases[i].event);
		t_open(&t, 8, VIRTIO_F_EVENT_IDX, 65530);
		t_desc(&t, 0, t_buf(&t, 4, 'a'), 4, 0, 0);
		cycle(&t, 4);
		flush_expect(&t, true); /* first */
		ASSERT_EQ(t.used[1], 65534);
		/* [65534, 2) across the wrap. */
		t_set_used_event(&t, cases[i].event);
		cycle(&t, 4);
		flush_expect(&t, cases[i].want);
		ASSERT_EQ(t.used[1], 2);
		t_close(&t);
	}

	/* A window of a whole queue ending exactly at the wrap. */
	t_open(&t, 8, VIRTIO_F_EVENT_IDX, 65528);
	t_desc(&t, 0, t_buf(&t, 4, 'a'), 4, 0, 0);
	cycle(&t, 1);
	flush_expect(&t, true);
	t_set_used_event(&t, 65535);
	cycle(&t, 7);
	flush_expect(&t, true);
	ASSERT_EQ(t.used[1], 0);
	t_set_used_event(&t, 0);
	cycle(&t, 8);
	flush_expect(&t, true);
	t_close(&t);
}

TEST(virtq_no_interrupt)
{
	struct tq t;

	t_open(&t, 8, 0, 0);
	t_desc(&t, 0, t_buf(&t, 4, 'a'), 4, 0, 0);
	t.avail[0] = VIRTQ_AVAIL_F_NO_INTERRUPT;
	cycle(&t, 2);
	flush_expect(&t, false);
	ASSERT_EQ(t.used[1], 2);
	t.avail[0] = 0;
	flush_expect(&t, false); /* nothing new */
	cycle(&t, 1);
	flush_expect(&t, true);
	/* used_event means nothing without EVENT_IDX. */
	t_set_used_event(&t, 100);
	cycle(&t, 1);
	flush_expect(&t, true);
	ASSERT_EQ(t.q.st.notified, 2);
	ASSERT_EQ(t.q.st.suppressed, 1);
	t_close(&t);
}

TEST(virtq_kicks)
{
	struct virtq_elem e;
	struct tq t;
	uint16_t old;

	t_open(&t, 8, 0, 0);
	t_desc(&t, 0, t_buf(&t, 4, 'a'), 4, 0, 0);
	t.used[0] = VIRTQ_USED_F_NO_NOTIFY; /* left by someone before us */
	virtq_init(&t.q, &t.mem, t.desc, t.avail, t.used, 8, 0, 0, t.call);
	ASSERT_EQ(t.used[0], 0);
	old = t.avail_idx;
	t_publish(&t, 0);
	ASSERT(t_should_kick(&t, old));
	ASSERT_EQ(virtq_pop(&t.q, &e), 1);

	virtq_disable_kicks(&t.q);
	ASSERT_EQ(t.used[0], VIRTQ_USED_F_NO_NOTIFY);
	virtq_disable_kicks(&t.q);
	ASSERT_EQ(t.used[0], VIRTQ_USED_F_NO_NOTIFY);
	old = t.avail_idx;
	t_publish(&t, 0);
	ASSERT(!t_should_kick(&t, old));
	ASSERT_EQ(virtq_pop(&t.q, &e), 1);
	ASSERT(!virtq_enable_kicks(&t.q));
	ASSERT_EQ(t.used[0], 0);

	/* The race: a chain made available while kicks were off, not kicked. */
	virtq_disable_kicks(&t.q);
	ASSERT_EQ(virtq_pop(&t.q, &e), 0);
	old = t.avail_idx;
	t_publish(&t, 0);
	ASSERT(!t_should_kick(&t, old));
	ASSERT(virtq_enable_kicks(&t.q)); /* the re-check sees it: poll again */
	ASSERT_EQ(t.used[0], 0);
	ASSERT_EQ(virtq_pop(&t.q, &e), 1);
	ASSERT(!virtq_enable_kicks(&t.q));
	/* Chains seen but not taken: also true. */
	t_publish(&t, 0);
	ASSERT_EQ(virtq_avail(&t.q), 1);
	ASSERT(virtq_enable_kicks(&t.q));
	t_close(&t);
}

TEST(virtq_kicks_event_idx)
{
	struct virtq_elem e;
	struct tq t;
	uint16_t old;

	t_open(&t, 8, VIRTIO_F_EVENT_IDX, 65534);
	t_desc(&t, 0, t_buf(&t, 4, 'a'), 4, 0, 0);
	ASSERT_EQ(t_avail_event(&t), 65534); /* kicks on from the start */
	old = t.avail_idx;
	t_publish(&t, 0);
	ASSERT(t_should_kick(&t, old));
	/* While the device polls, the driver does not kick. */
	virtq_disable_kicks(&t.q);
	ASSERT_EQ(t_avail_event(&t), 65534);
	ASSERT_EQ(t.used[0], 0); /* flags are not used with EVENT_IDX */
	ASSERT_EQ(virtq_pop(&t.q, &e), 1);
	old = t.avail_idx;
	t_publish(&t, 0);
	t_publish(&t, 0);
	ASSERT_EQ(t.avail_idx, 1);
	ASSERT(!t_should_kick(&t, old));
	ASSERT_EQ(virtq_pop(&t.q, &e), 1);
	ASSERT_EQ(virtq_pop(&t.q, &e), 1);
	ASSERT_EQ(virtq_pop(&t.q, &e), 0);
	ASSERT(!virtq_enable_kicks(&t.q));
	ASSERT_EQ(t_avail_event(&t), 1);
	old = t.avail_idx;
	t_publish(&t, 0);
	ASSERT(t_should_kick(&t, old));
	ASSERT_EQ(virtq_pop(&t.q, &e), 1);

	/* The race, and the re-check. */
	virtq_disable_kicks(&t.q);
	ASSERT(!virtq_enable_kicks(&t.q));
	ASSERT_EQ(t_avail_event(&t), 2);
	virtq_disable_kicks(&t.q);
	ASSERT_EQ(virtq_pop(&t.q, &e), 0);
	old = t.avail_idx;
	t_publish(&t, 0);
	ASSERT(t_should_kick(&t, old)); /* avail_event left at 2: one kick at most */
	old = t.avail_idx;
	t_publish(&t, 0);
	ASSERT(!t_should_kick(&t, old));
	/* Asked for entry 2 (the first unseen then); the re-check finds 2 and 3. */
	ASSERT(virtq_enable_kicks(&t.q));
	ASSERT_EQ(t_avail_event(&t), 2);
	ASSERT_EQ(virtq_pop(&t.q, &e), 1);
	ASSERT_EQ(virtq_pop(&t.q, &e), 1);
	ASSERT(!virtq_enable_kicks(&t.q));
	ASSERT_EQ(t_avail_event(&t), 4);
	t_close(&t);
}

TEST(virtq_read_write_offsets)
{
	static const uint32_t rlen[] = { 5, 7, 0, 9 }, wlen[] = { 4, 1, 11 };
	uint8_t flat[21], wflat[16], buf[40], src[40];
	uint64_t ra[4], wa[3];
	struct virtq_elem e;
	struct tq t;
	uint16_t d = 0;

	t_open(&t, 16, 0, 0);
	ra[0] = t_buf(&t, 5, 10);
	ra[1] = REGION - 3; /* 7 bytes across the boundary: 2 segments */
	ra[2] = 0;
	ra[3] = t_buf(&t, 9, 30);
	for (unsigned i = 0; i < 7; i++)
		*(uint8_t *)g(&t, REGION - 3 + i) = (uint8_t)(20 + i);
	for (unsigned i = 0; i < 3; i++)
		wa[i] = t_buf(&t, wlen[i], 0);
	for (unsigned i = 0; i < 4; i++, d++)
		t_desc(&t, d, ra[i], rlen[i], F_NEXT, (uint16_t)(d + 1));
	for (unsigned i = 0; i < 3; i++, d++)
		t_desc(&t, d, wa[i], wlen[i], F_WRITE | (i < 2 ? F_NEXT : 0), (uint16_t)(d + 1));
	t_publish(&t, 0);
	ASSERT_EQ(virtq_pop(&t.q, &e), 1);
	ASSERT_EQ(e.nout, 4);
	ASSERT_EQ(e.nin, 3);
	ASSERT_EQ(e.out_len, 21);
	ASSERT_EQ(e.in_len, 16);
	for (unsigned i = 0; i < 21; i++)
		flat[i] = (uint8_t)(i < 5 ? 10 + i : i < 12 ? 20 + i - 5 : 30 + i - 12);
	for (size_t off = 0; off <= 23; off++) {
		for (size_t len = 0; len <= 23; len++) {
			size_t want = off >= 21 ? 0 : (len < 21 - off ? len : 21 - off);

			memset(buf, 0xee, sizeof(buf));
			ASSERT_EQ(virtq_read(&e, off, buf, len), want);
			ASSERT_MEM_EQ(buf, flat + off, want);
			ASSERT_EQ(buf[want], 0xee);
		}
	}
	ASSERT_EQ(virtq_read(&e, SIZE_MAX, buf, 1), 0);
	for (unsigned i = 0; i < sizeof(src); i++)
		src[i] = (uint8_t)(100 + i);
	for (size_t off = 0; off <= 18; off++) {
		for (size_t len = 0; len <= 18; len++) {
			size_t want = off >= 16 ? 0 : (len < 16 - off ? len : 16 - off);

			memset(wflat, 0xee, sizeof(wflat));
			if (want)
				memcpy(wflat + off, src, want);
			for (unsigned i = 0; i < 3; i++)
				memset(g(&t, wa[i]), 0xee, wlen[i]);
			ASSERT_EQ(virtq_write(&e, off, src, len), want);
			memcpy(buf, g(&t, wa[0]), 4);
			memcpy(buf + 4, g(&t, wa[1]), 1);
			memcpy(buf + 5, g(&t, wa[2]), 11);
			ASSERT_MEM_EQ(buf, wflat, 16);
		}
	}
	/* The readable side was never written. */
	for (size_t i = 0; i < 21; i++) {
		ASSERT_EQ(virtq_read(&e, i, buf, 1), 1);
		ASSERT_EQ(buf[0], flat[i]);
	}
	t_close(&t);
}

/* ---- a driver thread against the device ---- */

#define THR_NUM	  64
#define THR_SLOTS 32 /* chains in flight; slot s: descriptors s and s + THR_SLOTS */

struct thr {
	struct tq *t;
	bool indirect;
	int kick;
	uint64_t total;
	uint64_t kicks, irqs;
};

static uint64_t
slot_buf(uint16_t s)
{
	return BUF_GPA + 64ull * s; /* 16 readable bytes, 16 writable at +32 */
}

static uint64_t
slot_table(uint16_t s)
{
	return BUF_GPA + 0x8000 + 32ull * s;
}

/* Chain number @seq in slot @s; odd ones through an indirect table if negotiated. */
static void
drv_fill(struct thr *x, uint16_t s, uint64_t seq)
{
	struct tq *t = x->t;
	uint64_t rd[2] = { seq, ~seq };

	memcpy(g(t, slot_buf(s)), rd, sizeof(rd));
	memset(g(t, slot_buf(s) + 32), 0, 16);
	if (x->indirect && (seq & 1)) {
		struct virtq_desc tab[2] = {
			{ slot_buf(s), 16, F_NEXT, 1 },
			{ slot_buf(s) + 32, 16, F_WRITE, 0 },
		};

		memcpy(g(t, slot_table(s)), tab, sizeof(tab));
		t_desc(t, s, slot_table(s), sizeof(tab), F_INDIRECT, 0);
	} else {
		t_desc(t, s, slot_buf(s), 16, F_NEXT, (uint16_t)(s + THR_SLOTS));
		t_desc(t, (uint16_t)(s + THR_SLOTS), slot_buf(s) + 32, 16, F_WRITE, 0);
	}
	t->avail[2 + (t->avail_idx & (t->num - 1))] = s;
	t->avail_idx++;
}

/* Take used entries: they come back in order, each with the device's answer. */
static unsigned
drv_collect(struct thr *x, uint16_t *fifo, uint64_t *done, uint16_t *freel, unsigned *nfree)
{
	struct tq *t = x->t;
	uint32_t id, len;
	unsigned n = 0;
	uint64_t w[2];

	while (t_used(t, &id, &len)) {
		uint16_t s = fifo[*done % THR_SLOTS];

		ASSERT_EQ(id, s);
		ASSERT_EQ(len, 16);
		memcpy(w, g(t, slot_buf(s) + 32), sizeof(w));
		ASSERT_EQ(w[0], *done * 3 + 1);
		ASSERT_EQ(w[1], ~w[0]);
		freel[(*nfree)++] = s;
		(*done)++;
		n++;
	}
	return n;
}

/* Nothing to do: ask for an interrupt, look again, sleep. */
static void
drv_wait(struct thr *x)
{
	struct tq *t = x->t;
	struct pollfd p = { .fd = t->call, .events = POLLIN };
	uint64_t v;

	if (t->event_idx)
		t_set_used_event(t, t->used_seen);
	else
		__atomic_store_n(&t->avail[0], 0, DRV_ORDER(__ATOMIC_RELAXED));
	/* Pairs with the fence in virtq_flush(). */
	DRV_FENCE();
	if (__atomic_load_n(&t->used[1], DRV_ORDER(__ATOMIC_ACQUIRE)) == t->used_seen) {
		if (poll(&p, 1, 10000) != 1)
			th_fail(__FILE__, __LINE__, "driver: lost interrupt");
		ASSERT_EQ(read(t->call, &v, sizeof(v)), 8);
		x->irqs++;
	}
	if (!t->event_idx)
		__atomic_store_n(&t->avail[0], VIRTQ_AVAIL_F_NO_INTERRUPT,
				 DRV_ORDER(__ATOMIC_RELAXED));
}

static void *
driver(void *arg)
{
	struct thr *x = arg;
	struct tq *t = x->t;
	uint16_t freel[THR_SLOTS], fifo[THR_SLOTS];
	unsigned nfree = THR_SLOTS;
	uint64_t sent = 0, done = 0, one = 1;

	for (uint16_t s = 0; s < THR_SLOTS; s++)
		freel[s] = s;
	while (done < x->total) {
		uint16_t old = t->avail_idx;
		bool more = false;

		while (nfree && sent < x->total) {
			uint16_t s = freel[--nfree];

			fifo[sent % THR_SLOTS] = s;
			drv_fill(x, s, sent++);
		}
		if (t->avail_idx != old) {
			t_set_avail_idx(t, t->avail_idx);
			if (t_should_kick(t, old)) {
				ASSERT_EQ(write(x->kick, &one, sizeof(one)), 8);
				x->kicks++;
			}
		}
		more = drv_collect(x, fifo, &done, freel, &nfree) > 0;
		if (!more && done < x->total)
			drv_wait(x);
	}
	return NULL;
}

/* The device: pops in order, answers, pushes, flushes now and then. */
static void
device(struct thr *x)
{
	struct virtq *q = &x->t->q;
	struct pollfd p = { .fd = x->kick, .events = POLLIN };
	uint64_t seq = 0, rd[2], wr[2], v;
	struct virtq_elem e;
	int r;

	while (seq < x->total) {
		virtq_disable_kicks(q);
		while ((r = virtq_pop(q, &e)) == 1) {
			ASSERT_EQ(e.nout, 1);
			ASSERT_EQ(e.nin, 1);
			ASSERT_EQ(virtq_read(&e, 0, rd, sizeof(rd)), 16);
			ASSERT_EQ(rd[0], seq);
			ASSERT_EQ(rd[1], ~seq);
			wr[0] = seq * 3 + 1;
			wr[1] = ~wr[0];
			ASSERT_EQ(virtq_write(&e, 0, wr, sizeof(wr)), 16);
			virtq_push(q, e.head, 16);
			if (++seq % 5 == 0)
				virtq_flush(q);
		}
		ASSERT_EQ(r, 0);
		virtq_flush(q);
		if (virtq_enable_kicks(q) || seq == x->total)
			continue;
		if (poll(&p, 1, 10000) != 1)
			th_fail(__FILE__, __LINE__, "device: lost kick after %llu chains",
				(unsigned long long)seq);
		ASSERT_EQ(read(x->kick, &v, sizeof(v)), 8);
	}
}

static void
threads(uint64_t features)
{
	struct thr x = { 0 };
	pthread_t th;
	struct tq t;

	t_open(&t, THR_NUM, features, 65000); /* wraps a few times */
	x.t = &t;
	x.indirect = (features & VIRTIO_F_INDIRECT_DESC) != 0;
	x.total = 200000;
	x.kick = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	ASSERT_GE(x.kick, 0);
	if (!t.event_idx)
		t.avail[0] = VIRTQ_AVAIL_F_NO_INTERRUPT;
	ASSERT_OK(pthread_create(&th, NULL, driver, &x));
	device(&x);
	ASSERT_OK(pthread_join(th, NULL));
	th_log("kicks %llu, interrupts %llu, notified %llu, suppressed %llu",
	       (unsigned long long)x.kicks, (unsigned long long)x.irqs,
	       (unsigned long long)t.q.st.notified, (unsigned long long)t.q.st.suppressed);
	ASSERT_EQ(t.q.st.popped, x.total);
	ASSERT_EQ(t.q.st.pushed, x.total);
	ASSERT(!virtq_broken(&t.q));
	close(x.kick);
	t_close(&t);
}

TEST(virtq_threads_flags)
{
	threads(VIRTIO_F_INDIRECT_DESC);
}

TEST(virtq_threads_event_idx)
{
	threads(VIRTIO_F_EVENT_IDX | VIRTIO_F_INDIRECT_DESC);
}
