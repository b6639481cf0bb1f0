/* SPDX-License-Identifier: MIT */
/*
 * An LD_PRELOAD library for fault-injection tests: malloc, calloc,
 * realloc, memalign, posix_memalign and aligned_alloc fail (NULL, ENOMEM)
 * at random while the test says so. The test controls it through a page
 * of a file both map (struct failalloc_ctl, the path in FAILALLOC_CTL):
 * failures only in the process whose pid the page names, with a
 * probability in parts per million, drawn from a seeded sequence (the
 * n-th allocation's fate depends on the seed and n only), counted.
 * Without FAILALLOC_CTL, or with a page that names another process, it
 * only forwards to glibc's allocator (its __libc_* entry points, so that
 * nothing here allocates or needs dlsym).
 */
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "failalloc.h"

extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t n);
extern void *__libc_memalign(size_t align, size_t n);

static struct failalloc_ctl *ctl;
static pid_t me;

__attribute__((constructor)) static void
failalloc_init(void)
{
	const char *path = getenv("FAILALLOC_CTL");
	int fd;

	me = getpid();
	if (!path || (fd = open(path, O_RDWR | O_CLOEXEC)) < 0)
		return;
	ctl = mmap(NULL, sizeof(*ctl), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (ctl == MAP_FAILED)
		ctl = NULL;
}

/* Whether this allocation fails (splitmix64 of the seed and its number). */
static int
fail(void)
{
	uint64_t z, n;
	uint32_t ppm;

	if (!ctl || atomic_load_explicit(&ctl->pid, memory_order_relaxed) != (int32_t)me ||
	    !(ppm = atomic_load_explicit(&ctl->ppm, memory_order_relaxed)))
		return 0;
	n = atomic_fetch_add_explicit(&ctl->calls, 1, memory_order_relaxed);
	z = ctl->seed + (n + 1) * 0x9e3779b97f4a7c15ull;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	z ^= z >> 31;
	if (z % 1000000u >= ppm)
		return 0;
	atomic_fetch_add_explicit(&ctl->failed, 1, memory_order_relaxed);
	errno = ENOMEM;
	return 1;
}

void *
malloc(size_t n)
{
	return fail() ? NULL : __libc_malloc(n);
}

void *
calloc(size_t n, size_t size)
{
	return fail() ? NULL : __libc_calloc(n, size);
}

void *
realloc(void *p, size_t n)
{
	/* A realloc that fails leaves the block as it was (freeing is not failing). */
	return p && !n ? __libc_realloc(p, n) : fail() ? NULL : __libc_realloc(p, n);
}

void *
memalign(size_t align, size_t n)
{
	return fail() ? NULL : __libc_memalign(align, n);
}

void *
aligned_alloc(size_t align, size_t n)
{
	return fail() ? NULL : __libc_memalign(align, n);
}

int
posix_memalign(void **out, size_t align, size_t n)
{
	void *p;

	if (align < sizeof(void *) || (align & (align - 1)))
		return EINVAL;
	if (fail())
		return ENOMEM;
	if (!(p = __libc_memalign(align, n)))
		return ENOMEM;
	*out = p;
	return 0;
}
