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
 * computed without overflow. The frontend can still truncate a file after
 * it was mapped; see vhost.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vhost.h"

void
vhu_mem_init(struct vhu_mem *m)
{
	memset(m, 0, sizeof(*m));
	for (uint32_t i = 0; i < VHU_MAX_REGIONS; i++)
		m->r[i].fd = -1;
}

void
vhu_mem_clear(struct vhu_mem *m)
{
	for (uint32_t i = 0; i < m->n; i++) {
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
	if (r->fd < 0) {
		munmap(p, r->map_len);
		return -errno;
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
