/* SPDX-License-Identifier: MIT */
/* The libFuzzer entry point every target defines (fuzz-main.c replays corpora). */
#ifndef VMFABRIC_FUZZ_H
#define VMFABRIC_FUZZ_H

#include <dirent.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* An invariant: abort, saying which, when it does not hold. */
#define FZ_CHECK(c)                                                                                \
	do {                                                                                       \
		if (!(c)) {                                                                        \
			fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, #c);                    \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

/* Descriptors open in this process: a target checks that none leaked. */
static inline int
fz_count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	if (!d)
		abort();
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

/* Input cursor: targets take bytes as they need them, zeros past the end. */
struct fz {
	const uint8_t *p;
	size_t n;
};

static inline uint64_t
fz_take(struct fz *f, unsigned bytes)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < bytes; i++) {
		uint8_t b = 0;
		if (f->n) {
			b = *f->p++;
			f->n--;
		}
		v |= (uint64_t)b << (8 * i);
	}
	return v;
}

#endif
