/* SPDX-License-Identifier: MIT */
/*
 * The control page of tests/failalloc.c (an LD_PRELOAD library that makes
 * allocations fail at random): a file of this size whose path is in the
 * environment variable FAILALLOC_CTL, mapped by the library and the test.
 */
#ifndef VMFABRIC_TESTS_FAILALLOC_H
#define VMFABRIC_TESTS_FAILALLOC_H

#include <stdatomic.h>
#include <stdint.h>

struct failalloc_ctl {
	_Atomic int32_t pid;  /* the process whose allocations may fail (0: none) */
	_Atomic uint32_t ppm; /* failures per million allocations (0: off) */
	uint64_t seed;	      /* of the sequence that decides (set before ppm) */
	_Atomic uint64_t calls;	 /* allocations that could have failed */
	_Atomic uint64_t failed; /* and did */
};

#endif
