/* SPDX-License-Identifier: MIT */
/*
 * The guest memory table of a vhost-user connection (SET_MEM_TABLE): each
 * region's descriptor is mapped MAP_SHARED from its mmap_offset (rounded
 * down to a page), and guest-physical or QEMU-userspace addresses are
 * translated to host pointers.
 *
 * Threat model: the region list comes from the untrusted frontend. A table
 * is refused (the old one kept) when it has more than VHU_MAX_REGIONS
 * regions, a zero size, any end (guest-physical, userspace, file offset)
 * that overflows 64 bits or size_t, a region that overlaps another in
 * either address space, or a regular file too short for the range (a
 * mapping past the end of a file faults on access). Translation accepts a
 * range only when all of [addr, addr + len) lies inside a single region,
 * computed without overflow.
 *
 * The frontend can still truncate a file after it was mapped (QEMU's memfd
 * memory is sealed against that; an outside frontend's need not be), and
 * an access past the new end raises SIGBUS in whichever daemon thread made
 * it. Every mapping is therefore registered with a SIGBUS handler: a fault
 * inside one replaces the whole mapping with private zero pages (the access
 * completes, reading zeros, its writes going nowhere), marks the mapping
 * lost and counts it. The virtqueues look at that count (vhu_mem_faults())
 * and break with a reason when their memory was lost, so the device drops
 * that frontend as for any broken ring. A fault anywhere else goes to the
 * handler that was there before, or kills the process as SIGBUS would.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vhost.h"

/* ---------------------------------------------------------------------- */
/* SIGBUS guard */

#define GUARD_SLOTS 4096 /* mappings of guest memory at once (8 per connection at most) */

static struct guard {
	_Atomic uintptr_t start; /* 0: free */
	_Atomic size_t len;
	atomic_bool lost;
} guard[GUARD_SLOTS];
static atomic_uint guard_faults;
static struct sigaction guard_prev;
static pthread_mutex_t guard_lock = PTHREAD_MUTEX_INITIALIZER;
static bool guard_installed;

static void
on_sigbus(int sig, siginfo_t *si, void *uc)
{
	uintptr_t a = (uintptr_t)si->si_addr;

	for (unsigned i = 0; i < GUARD_SLOTS; i++) {
		uintptr_t s = atomic_load_explicit(&guard[i].start, memory_order_acquire);
		size_t len = atomic_load_explicit(&guard[i].len, memory_order_relaxed);

		if (!s || a - s >= len)
			continue;
		/* mmap is a plain system call: safe in a handler in practice. */
		if (mmap((void *)s, len, PROT_READ | PROT_WRITE,
			 MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) == MAP_FAILED)
			break;
		atomic_store(&guard[i].lost, true);
		atomic_fetch_add(&guard_faults, 1);
		return; /* the access is made again, on zero pages */
	}
	if ((guard_prev.sa_flags & SA_SIGINFO) && guard_prev.sa_sigaction) {
		guard_prev.sa_sigaction(sig, si, uc);
	} else if (guard_prev.sa_handler != SIG_DFL && guard_prev.sa_handler != SIG_IGN) {
		guard_prev.sa_handler(sig);
	} else {
		/* As if never handled: a fault repeats, a signal sent by kill() is raised again. */
		signal(SIGBUS, SIG_DFL);
		if (si->si_code <= 0)
			raise(SIGBUS);
	}
}

/* A slot for [p, p + len), the handler installed on first use; -1 when full. */
static int
guard_add(void *p, size_t len)
{
	int slot = -1;

	pthread_mutex_lock(&guard_lock);
	if (!guard_installed) {
		struct sigaction sa = { .sa_sigaction = on_sigbus,
					.sa_flags = SA_SIGINFO | SA_NODEFER | SA_ONSTACK };

		sigemptyset(&sa.sa_mask);
		guard_installed = sigaction(SIGBUS, &sa, &guard_prev) == 0;
	}
	for (int i = 0; guard_installed && i < GUARD_SLOTS && slot < 0; i++)
		if (!atomic_load(&guard[i].start)) {
			atomic_store(&guard[i].lost, false);
			atomic_store(&guard[i].len, len);
			atomic_store_explicit(&guard[i].start, (uintptr_t)p, memory_order_release);
			slot = i;
		}
	pthread_mutex_unlock(&guard_lock);
	return slot;
}

static void
guard_del(int slot)
{
	if (slot >= 0)
		atomic_store(&guard[slot].start, 0);
}

unsigned
vhu_mem_faults(void)
{
	return atomic_load_explicit(&guard_faults, memory_order_relaxed);
}

bool
vhu_mem_lost(const struct vhu_mem *m)
{
	for (uint32_t i = 0; i < m->n; i++)
		if (m->r[i].guard >= 0 && atomic_load(&guard[m->r[i].guard].lost))
			return true;
	return false;
}

/* ---------------------------------------------------------------------- */

void
vhu_mem_init(struct vhu_mem *m)
{
	memset(m, 0, sizeof(*m));
	for (uint32_t i = 0; i < VHU_MAX_REGIONS; i++)
		m->r[i].fd = m->r[i].guard = -1;
}

void
vhu_mem_clear(struct vhu_mem *m)
{
	for (uint32_t i = 0; i < m->n; i++) {
		guard_del(m->r[i].guard);
		if (m->r[i].map)
			munmap(m->r[i].map, m->r[i].map_len);
		if (m->r[i].fd >= 0)
			close(m->r[i].fd);
	}
	vhu_mem_init(m);
}

/* [a, a + alen) and [b, b + blen) intersect (both ends known not to overflow). */
static bool
overlap(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
	return a < b + blen && b < a + alen;
}

static int
check_region(const struct vhu_mem_region *w, uint64_t page)
{
	uint64_t off = w->mmap_offset & ~(page - 1);
	uint64_t end;

	if (w->memory_size == 0)
		return -EINVAL;
	if (w->guest_phys_addr + w->memory_size < w->guest_phys_addr ||
	    w->userspace_addr + w->memory_size < w->userspace_addr ||
	    __builtin_add_overflow(w->mmap_offset, w->memory_size, &end))
		return -EOVERFLOW;
	/* The mapping: from off to end rounded up to a page. */
	if (end > UINT64_MAX - page || end - off > SIZE_MAX || end > (uint64_t)INT64_MAX)
		return -EOVERFLOW;
	return 0;
}

static int
check_table(const struct vhu_mem_region *w, uint32_t n, uint64_t page)
{
	if (n > VHU_MAX_REGIONS)
		return -E2BIG;
	for (uint32_t i = 0; i < n; i++) {
		int err = check_region(&w[i], page);

		if (err)
			return err;
		for (uint32_t j = 0; j < i; j++) {
			if (overlap(w[i].guest_phys_addr, w[i].memory_size, w[j].guest_phys_addr,
				    w[j].memory_size) ||
			    overlap(w[i].userspace_addr, w[i].memory_size, w[j].userspace_addr,
				    w[j].memory_size))
				return -EINVAL;
		}
	}
	return 0;
}

static int
map_region(struct vhu_region *r, const struct vhu_mem_region *w, int fd, uint64_t page)
{
	uint64_t off = w->mmap_offset & ~(page - 1);
	uint64_t end = w->mmap_offset + w->memory_size; /* checked */
	struct stat st;
	void *p;

	if (fstat(fd, &st) < 0)
		return -errno;
	if (S_ISREG(st.st_mode) && (uint64_t)st.st_size < end)
		return -EINVAL;
	r->map_len = (size_t)(((end + page - 1) & ~(page - 1)) - off);
	p = mmap(NULL, r->map_len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)off);
	if (p == MAP_FAILED)
		return -errno;
	r->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	if (r->fd < 0 || (r->guard = guard_add(p, r->map_len)) < 0) {
		int err = r->fd < 0 ? -errno : -ENOSPC;

		if (r->fd >= 0)
			close(r->fd);
		r->fd = -1;
		munmap(p, r->map_len);
		return err;
	}
	r->map = p;
	r->host = (uint8_t *)p + (w->mmap_offset - off);
	r->gpa = w->guest_phys_addr;
	r->size = w->memory_size;
	r->uaddr = w->userspace_addr;
	r->mmap_offset = w->mmap_offset;
	return 0;
}

int
vhu_mem_set(struct vhu_mem *m, const struct vhu_mem_region *w, uint32_t n, const int *fds)
{
	long ps = sysconf(_SC_PAGESIZE);
	uint64_t page = ps > 0 ? (uint64_t)ps : 4096;
	struct vhu_mem next;
	int err;

	err = check_table(w, n, page);
	if (err)
		return err;
	vhu_mem_init(&next);
	for (uint32_t i = 0; i < n; i++) {
		err = map_region(&next.r[i], &w[i], fds[i], page);
		if (err) {
			vhu_mem_clear(&next);
			return err;
		}
		next.n = i + 1;
	}
	vhu_mem_clear(m);
	*m = next;
	return 0;
}

/* Offset of [addr, addr + len) inside [base, base + size), or -1. */
static int64_t
inside(uint64_t base, uint64_t size, uint64_t addr, uint64_t len)
{
	uint64_t off;

	if (len == 0 || addr < base)
		return -1;
	off = addr - base;
	if (off >= size || len > size - off)
		return -1;
	return (int64_t)off;
}

/* The host address of [addr, addr + len) in guest-physical or QEMU-user space. */
static void *
translate(const struct vhu_mem *m, uint64_t addr, uint64_t len, bool user)
{
	for (uint32_t i = 0; i < m->n; i++) {
		int64_t off = inside(user ? m->r[i].uaddr : m->r[i].gpa, m->r[i].size, addr, len);

		if (off >= 0)
			return m->r[i].host + off;
	}
	return NULL;
}

void *
vhu_mem_gpa(const struct vhu_mem *m, uint64_t gpa, uint64_t len)
{
	return translate(m, gpa, len, false);
}

void *
vhu_mem_uva(const struct vhu_mem *m, uint64_t uva, uint64_t len)
{
	return translate(m, uva, len, true);
}

void *
vhu_mem_gpa_span(const struct vhu_mem *m, uint64_t gpa, uint64_t *len)
{
	for (uint32_t i = 0; i < m->n; i++) {
		const struct vhu_region *r = &m->r[i];

		if (gpa >= r->gpa && gpa - r->gpa < r->size) {
			*len = r->size - (gpa - r->gpa);
			return r->host + (gpa - r->gpa);
		}
	}
	*len = 0;
	return NULL;
}
