/* SPDX-License-Identifier: MIT */
/*
 * vmfabric's test harness. Each test is a void function run in its own
 * forked child (own process group) with a timeout; an assertion that fails
 * prints the expression and both values and ends the child. SKIP() ends it
 * with the reason, counted apart from passes. Tests are listed once, in
 * tests/list.h, with their timeout.
 */
#ifndef VMFABRIC_HARNESS_H
#define VMFABRIC_HARNESS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define TH_EXIT_SKIP 77

#include "list.h"

/* Declared from the list: a test written but not listed fails to build. */
#define TH_DECLARE(name, timeout) void test_##name(void);
TEST_LIST(TH_DECLARE)

#define TEST(name) void test_##name(void)

__attribute__((noreturn, format(printf, 3, 4))) void th_fail(const char *file, int line,
							      const char *fmt, ...);
__attribute__((noreturn, format(printf, 1, 2))) void th_skip(const char *fmt, ...);
/* Progress or context for a failing test; shown only when the test fails. */
__attribute__((format(printf, 1, 2))) void th_log(const char *fmt, ...);
/* Descriptors open in this process (to check that nothing leaked). */
int th_count_fds(void);

#define SKIP(...) th_skip(__VA_ARGS__)

#define ASSERT(cond)                                                                \
	do {                                                                        \
		if (!(cond))                                                        \
			th_fail(__FILE__, __LINE__, "assertion failed: %s", #cond); \
	} while (0)

/* Compares as signed 64-bit values; prints both in decimal and hex. */
#define ASSERT_CMP(a, op, b)                                                              \
	do {                                                                              \
		long long a_ = (long long)(a), b_ = (long long)(b);                       \
		if (!(a_ op b_))                                                          \
			th_fail(__FILE__, __LINE__, "%s %s %s: %lld (0x%llx) vs %lld (0x%llx)", \
				#a, #op, #b, a_, (unsigned long long)a_, b_,              \
				(unsigned long long)b_);                                  \
	} while (0)

#define ASSERT_EQ(a, b) ASSERT_CMP(a, ==, b)
#define ASSERT_NE(a, b) ASSERT_CMP(a, !=, b)
#define ASSERT_LT(a, b) ASSERT_CMP(a, <, b)
#define ASSERT_LE(a, b) ASSERT_CMP(a, <=, b)
#define ASSERT_GT(a, b) ASSERT_CMP(a, >, b)
#define ASSERT_GE(a, b) ASSERT_CMP(a, >=, b)

/* For calls returning 0 / -errno: prints the errno name on failure. */
#define ASSERT_OK(expr)                                                                  \
	do {                                                                             \
		long long r_ = (long long)(expr);                                        \
		if (r_ != 0)                                                             \
			th_fail(__FILE__, __LINE__, "%s: returned %lld (%s)", #expr, r_, \
				r_ < 0 ? strerror((int)-r_) : "not zero");               \
	} while (0)

#define ASSERT_MEM_EQ(a, b, n)                                                        \
	do {                                                                          \
		size_t at_ = th_memdiff((a), (b), (n));                               \
		if (at_ != (size_t)-1)                                                \
			th_fail(__FILE__, __LINE__, "%s and %s differ at byte %zu of %zu", \
				#a, #b, at_, (size_t)(n));                            \
	} while (0)

size_t th_memdiff(const void *a, const void *b, size_t n);

/* Deterministic PRNG for tests (xorshift64*); seed from the test's name. */
uint64_t th_rand(uint64_t *state);
void th_fill(uint64_t *state, void *buf, size_t len);

#endif
