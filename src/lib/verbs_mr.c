/* SPDX-License-Identifier: MIT */
/*
 * Memory regions (vrdma.h). Registering a range makes the pages holding it
 * shared: each run of pages not yet shared becomes a *segment*, a sealed
 * memfd that takes the pages' contents and is mapped over them (MAP_FIXED,
 * same addresses, so the application's pointers stay good). Segments never
 * overlap; an MR is covered by one to four of them, which go to the daemon
 * with the registration. When the last MR on a segment goes, its pages are
 * copied into private memory that replaces the mapping (mremap), so a peer
 * that still maps the segment reaches a detached copy, not the process.
 *
 * Peers' MRs are mapped per QP on first use (RDMA_MR_MAP: the daemon
 * checks the connection, the PD and the access, and hands out read-only
 * descriptors unless writes are allowed); before every access the peer's
 * key page must still list the rkey, so a deregistered MR fails at once.
 *
 * Threat model: a peer's key page and the daemon's answers are checked for
 * bounds before use (an rkey indexes the page only below WIRE_RDMA_KEYS; a
 * segment is mapped only at the size its descriptor has); a lying peer can
 * only refuse access to its own memory.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "verbs.h"

struct seg {
	uintptr_t start, end;
	int fd;
	unsigned refs;
};

/* Segments of the whole process (the address space is), sorted by start. */
static pthread_mutex_t seg_lock = PTHREAD_MUTEX_INITIALIZER;
static struct seg *segs;
static size_t nsegs, capsegs;

static uintptr_t
page_size(void)
{
	return (uintptr_t)sysconf(_SC_PAGESIZE);
}

/*
 * Copy whole pages of this process's memory at @src: the bytes around a
 * registered buffer belong to other objects, which is fine for pages but
 * not for a sanitizer watching memcpy(), so the kernel copies (and says
 * EFAULT where nothing readable is mapped).
 */
static int
copy_pages(void *dst, uintptr_t src, size_t len)
{
	while (len) {
		struct iovec l = { dst, len }, r = { (void *)src, len };
		ssize_t n = process_vm_readv(getpid(), &l, 1, &r, 1, 0);

		if (n <= 0)
			return n < 0 ? -errno : -EFAULT;
		dst = (uint8_t *)dst + n, src += (size_t)n, len -= (size_t)n;
	}
	return 0;
}

/* Share [start, end): a sealed memfd with the pages' contents, mapped over them. */
static int
seg_make(uintptr_t start, uintptr_t end, size_t at)
{
	size_t len = end - start;
	int fd, err;
	void *p, *tmp;

	if (nsegs == capsegs) {
		size_t cap = capsegs ? capsegs * 2 : 16;
		struct seg *t = realloc(segs, cap * sizeof(*t));

		if (!t)
			return -ENOMEM;
		segs = t;
		capsegs = cap;
	}
	fd = memfd_create("vmfabric-mr", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0)
		return -errno;
	if (ftruncate(fd, (off_t)len) < 0)
		goto fail_errno;
	tmp = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (tmp == MAP_FAILED)
		goto fail_errno;
	err = copy_pages(tmp, start, len);
	munmap(tmp, len);
	if (err)
		goto fail;
	if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0)
		goto fail_errno;
	p = mmap((void *)start, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0);
	if (p == MAP_FAILED)
		goto fail_errno;
	memmove(&segs[at + 1], &segs[at], (nsegs - at) * sizeof(*segs));
	segs[at] = (struct seg){ start, end, fd, 0 };
	nsegs++;
	return 0;
fail_errno:
	err = -errno;
fail:
	close(fd);
	return err;
}

/* Make segment @i's pages private again and forget it. */
static void
seg_unshare(size_t i)
{
	struct seg *s = &segs[i];
	size_t len = s->end - s->start;
	void *tmp = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (tmp != MAP_FAILED) {
		/* One step: the private copy takes the place of the shared pages. */
		if (copy_pages(tmp, s->start, len) ||
		    mremap(tmp, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, (void *)s->start) ==
			    MAP_FAILED)
			munmap(tmp, len);
	}
	/* Without memory for a copy the pages stay shared: the keys are gone already. */
	close(s->fd);
	memmove(s, s + 1, (nsegs - i - 1) * sizeof(*s));
	nsegs--;
}

/*
 * Share every page of [a0, a1) not shared yet; the segments covering it
 * (up to WIRE_RDMA_SEGS, else -EBUSY) by their start addresses, since
 * indices move. The caller takes the references.
 */
static int
seg_cover(uintptr_t a0, uintptr_t a1, uintptr_t *starts, uint32_t *n)
{
	uintptr_t at = a0;
	size_t i = 0;
	int err;

	*n = 0;
	while (i < nsegs && segs[i].end <= a0)
		i++;
	while (at < a1) {
		if (*n == WIRE_RDMA_SEGS)
			return -EBUSY;
		if (i < nsegs && segs[i].start <= at) {
			at = segs[i].end;
		} else {
			uintptr_t end = i < nsegs && segs[i].start < a1 ? segs[i].start : a1;

			if ((err = seg_make(at, end, i)))
				return err;
			at = end;
		}
		starts[(*n)++] = segs[i].start;
		i++;
	}
	return 0;
}

static size_t
seg_find(uintptr_t start)
{
	size_t lo = 0, hi = nsegs;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (segs[mid].start < start)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Drop references (and unshare what nobody covers) on @n segments. */
static void
seg_release(const uintptr_t *starts, uint32_t n, bool referenced)
{
	for (uint32_t k = 0; k < n; k++) {
		size_t i = seg_find(starts[k]);

		if (i == nsegs || segs[i].start != starts[k])
			continue;
		if (referenced)
			segs[i].refs--;
		if (!segs[i].refs)
			seg_unshare(i);
	}
}

int
vrdma_reg_mr(struct vrdma_pd *pd, void *addr, size_t len, unsigned access, struct vrdma_mr **out)
{
	const unsigned all = VRDMA_ACCESS_LOCAL_WRITE | VRDMA_ACCESS_REMOTE_WRITE |
			     VRDMA_ACCESS_REMOTE_READ | VRDMA_ACCESS_REMOTE_ATOMIC;
	struct vrdma_context *ctx = pd->ctx;
	uintptr_t pg = page_size(), a0, a1, starts[WIRE_RDMA_SEGS];
	struct wire_rdma_mr w = { .pd = pd->id, .access = access };
	int fds[WIRE_RDMA_SEGS];
	struct vrdma_mr *mr;
	uint32_t n = 0;
	int err;

	if (!addr || !len || (access & ~all) || (uintptr_t)addr + len < (uintptr_t)addr)
		return -EINVAL;
	if ((access & (VRDMA_ACCESS_REMOTE_WRITE | VRDMA_ACCESS_REMOTE_ATOMIC)) &&
	    !(access & VRDMA_ACCESS_LOCAL_WRITE))
		return -EINVAL;
	if (!(mr = calloc(1, sizeof(*mr))))
		return -ENOMEM;
	a0 = (uintptr_t)addr & ~(pg - 1);
	a1 = ((uintptr_t)addr + len + pg - 1) & ~(pg - 1);
	pthread_mutex_lock(&seg_lock);
	err = seg_cover(a0, a1, starts, &n);
	if (err) {
		seg_release(starts, n, false);
		pthread_mutex_unlock(&seg_lock);
		free(mr);
		return err;
	}
	for (uint32_t k = 0; k < n; k++) {
		struct seg *s = &segs[seg_find(starts[k])];

		s->refs++;
		fds[k] = s->fd;
		w.seg_va[k] = s->start;
		w.seg_len[k] = s->end - s->start;
	}
	pthread_mutex_unlock(&seg_lock);
	w.va = (uintptr_t)addr;
	w.len = len;
	w.nseg = n;
	err = vrdma__rpc(ctx, WIRE_RDMA_MR_REG, &w, fds, (int)n, NULL);
	if (err) {
		pthread_mutex_lock(&seg_lock);
		seg_release(starts, n, true);
		pthread_mutex_unlock(&seg_lock);
		free(mr);
		return err;
	}
	mr->pd = pd;
	mr->addr = addr;
	mr->length = len;
	mr->lkey = mr->rkey = w.out_rkey;
	mr->access = access;
	pthread_mutex_lock(&ctx->lock);
	__atomic_store_n(&ctx->mrs[mr->rkey >> 8], mr, __ATOMIC_RELEASE);
	pd->nmr++;
	pthread_mutex_unlock(&ctx->lock);
	/* Pairs with the acquire load in peers' vrdma__rmr_get(). */
	atomic_store_explicit(&ctx->page->keys[mr->rkey >> 8], mr->rkey, memory_order_release);
	*out = mr;
	return 0;
}

int
vrdma_dereg_mr(struct vrdma_mr *mr)
{
	struct vrdma_context *ctx = mr->pd->ctx;
	uintptr_t pg = page_size(), a0, a1, starts[WIRE_RDMA_SEGS];
	struct wire_rdma_mr w = { .out_rkey = mr->rkey };
	uint32_t n = 0;
	int err;

	/* Peers see the key gone before anything else happens. */
	atomic_store_explicit(&ctx->page->keys[mr->rkey >> 8], 0, memory_order_release);
	err = vrdma__rpc(ctx, WIRE_RDMA_MR_DEREG, &w, NULL, 0, NULL);
	if (err && err != -ENETDOWN)
		return err;
	pthread_mutex_lock(&ctx->lock);
	__atomic_store_n(&ctx->mrs[mr->rkey >> 8], NULL, __ATOMIC_RELEASE);
	mr->pd->nmr--;
	pthread_mutex_unlock(&ctx->lock);
	a0 = (uintptr_t)mr->addr & ~(pg - 1);
	a1 = ((uintptr_t)mr->addr + mr->length + pg - 1) & ~(pg - 1);
	pthread_mutex_lock(&seg_lock);
	for (size_t i = seg_find(0); i < nsegs && n < WIRE_RDMA_SEGS; i++)
		if (segs[i].end > a0 && segs[i].start < a1)
			starts[n++] = segs[i].start;
	seg_release(starts, n, true);
	pthread_mutex_unlock(&seg_lock);
	free(mr);
	return 0;
}

struct vrdma_mr *
vrdma__lmr(struct vrdma_context *ctx, const struct vrdma_pd *pd, uint32_t lkey, uint64_t addr,
	   uint64_t len, unsigned access)
{
	struct vrdma_mr *mr;

	if ((lkey >> 8) >= WIRE_RDMA_KEYS)
		return NULL;
	mr = __atomic_load_n(&ctx->mrs[lkey >> 8], __ATOMIC_ACQUIRE);
	if (!mr || mr->lkey != lkey || mr->pd != pd || (mr->access & access) != access)
		return NULL;
	if (addr < (uintptr_t)mr->addr || addr + len < addr ||
	    addr + len > (uintptr_t)mr->addr + mr->length)
		return NULL;
	return mr;
}

/* ---------------------------------------------------------------------- */
/* Peers' memory regions */

static void
rmr_unmap(struct vrdma__rmr *m)
{
	for (uint32_t i = 0; i < m->nseg; i++)
		if (m->seg[i].map)
			munmap(m->seg[i].map, m->seg[i].len);
	memset(m, 0, sizeof(*m));
}

void
vrdma__rmr_drop_all(struct vrdma_qp *qp)
{
	for (unsigned i = 0; i < VRDMA__RMR_CACHE; i++)
		if (qp->rmr[i].rkey)
			rmr_unmap(&qp->rmr[i]);
}

/* Map segment @piece of the peer's MR @rkey into @m. */
static int
rmr_map_piece(struct vrdma_qp *qp, uint32_t rkey, uint32_t piece, struct vrdma__rmr *m)
{
	struct wire_rdma_map w = { .qpn = qp->qpn, .rkey = rkey, .piece = piece };
	struct wire_msg rep;
	struct stat st;
	int prot = PROT_READ, err;
	void *p;

	err = vrdma__rpc(qp->ctx, WIRE_RDMA_MR_MAP, &w, NULL, 0, &rep);
	if (err)
		return err;
	if (piece == 0) {
		m->va = w.out_va;
		m->len = w.out_len;
		m->access = w.out_access;
		m->nseg = w.out_nseg;
	}
	err = -EPROTO;
	if (!w.out_nseg || w.out_nseg > WIRE_RDMA_SEGS || w.out_nseg != m->nseg ||
	    fstat(rep.fds[0], &st) < 0 || (uint64_t)st.st_size != w.out_seg_len ||
	    !w.out_seg_len)
		goto out;
	if (m->access & (VRDMA_ACCESS_REMOTE_WRITE | VRDMA_ACCESS_REMOTE_ATOMIC))
		prot |= PROT_WRITE;
	p = mmap(NULL, w.out_seg_len, prot, MAP_SHARED, rep.fds[0], 0);
	if (p == MAP_FAILED) {
		err = -errno;
		goto out;
	}
	m->seg[piece].va = w.out_seg_va;
	m->seg[piece].len = w.out_seg_len;
	m->seg[piece].map = p;
	err = 0;
out:
	wire_msg_close_fds(&rep);
	return err;
}

struct vrdma__rmr *
vrdma__rmr_get(struct vrdma_qp *qp, uint32_t rkey)
{
	struct vrdma__rmr *m = NULL, *victim = &qp->rmr[0];
	uint32_t idx = rkey >> 8;

	if (!rkey || idx >= WIRE_RDMA_KEYS || !qp->peer_page)
		return NULL;
	for (unsigned i = 0; i < VRDMA__RMR_CACHE; i++) {
		if (qp->rmr[i].rkey == rkey)
			m = &qp->rmr[i];
		if (qp->rmr[i].used < victim->used)
			victim = &qp->rmr[i];
	}
	/* Pairs with the release store of vrdma_reg_mr() / vrdma_dereg_mr() in the peer. */
	if (atomic_load_explicit(&qp->peer_page->keys[idx], memory_order_acquire) != rkey) {
		if (m)
			rmr_unmap(m);
		return NULL;
	}
	if (m) {
		m->used = ++qp->rmr_clock;
		return m;
	}
	if (victim->rkey)
		rmr_unmap(victim);
	for (uint32_t piece = 0; piece == 0 || piece < victim->nseg; piece++)
		if (rmr_map_piece(qp, rkey, piece, victim)) {
			rmr_unmap(victim);
			return NULL;
		}
	victim->rkey = rkey;
	victim->used = ++qp->rmr_clock;
	return victim;
}

uint8_t *
vrdma__rmr_at(const struct vrdma__rmr *m, uint64_t va, uint64_t *avail)
{
	for (uint32_t i = 0; i < m->nseg; i++)
		if (va >= m->seg[i].va && va - m->seg[i].va < m->seg[i].len) {
			*avail = m->seg[i].len - (va - m->seg[i].va);
			return m->seg[i].map + (va - m->seg[i].va);
		}
	return NULL;
}
