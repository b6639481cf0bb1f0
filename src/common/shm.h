/* SPDX-License-Identifier: MIT */
/*
 * Small shared pages between processes that do not trust each other: a
 * memfd sealed against shrinking and growing (so that no holder can make
 * another's mapping fault), created by one side, mapped by the others after
 * checking the seals and the size.
 */
#ifndef VMFABRIC_SHM_H
#define VMFABRIC_SHM_H

#include <stddef.h>

/* Create, size, seal and map read-write. Returns the memfd (close-on-exec) or -errno. */
int shm_create(const char *name, size_t size, void **map);
/*
 * Map someone else's memfd of exactly @size bytes, sealed as shm_create()
 * seals. @writable: read-write, else read-only. 0 or -errno (-EINVAL: not
 * such a memfd).
 */
int shm_map(int fd, size_t size, int writable, void **map);

#endif
