/* SPDX-License-Identifier: MIT */
/*
 * The test data pattern and checksum shared by the guest tools (vmf-vsock)
 * and the host tests, so that both ends of a stream agree on every byte
 * without exchanging anything but a seed and a length.
 *
 * Header only, C11, no library beyond <stdint.h>, <stddef.h> and <string.h>:
 * it is compiled into a static guest binary and into the host test suite.
 * Everything is defined on byte values, never on memory layout, so both
 * ends compute the same bytes and sums on any host.
 */
#ifndef VMF_PATTERN_H
#define VMF_PATTERN_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/*
 * Pattern. The stream of a 32-bit seed is a sequence of 64-bit words laid
 * out little-endian: the byte at stream offset n is byte (n % 8) of word
 * n / 8, and word i is
 *
 *   key    = mix(seed + G)
 *   word_i = mix(key + i * G)                (mod 2^64)
 *
 * where G = 0x9e3779b97f4a7c15 and mix() is the splitmix64 finalizer
 *
 *   z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
 *   z = (z ^ (z >> 27)) * 0x94d049bb133111eb
 *   z =  z ^ (z >> 31)
 *
 * Any offset is generated without the bytes before it, so a sender can
 * produce and a receiver check any chunk on its own. mix() is a bijection,
 * so two seeds' streams overlap only at a shift of about 2^64 words.
 */
#define VMF_PATTERN_G 0x9e3779b97f4a7c15ull

/*
 * Checksum. Chunk-independent and word-based: the stream is cut into 8-byte
 * little-endian words at stream offsets 0, 8, 16, ... (the bytes of a word
 * may arrive in different update calls: a carry word collects them), a last
 * partial word is padded with zero bytes, and
 *
 *   h = VMF_SUM_INIT
 *   for each word w:  h = rotl(h ^ (w * K1), 31) * K2     (K1, K2 below)
 *   sum = mix(h ^ length_in_bytes)
 *
 * Each step is a bijection in w for a fixed h and in h for a fixed w, so a
 * stream of the same length with one word changed always has another sum;
 * swapped or shifted data changes it with probability 1 - 2^-64.
 */
#define VMF_SUM_INIT 0x6a09e667f3bcc908ull
#define VMF_SUM_K1 0x87c37b91114253d5ull
#define VMF_SUM_K2 0x4cf5ad432745937full

/* A running checksum; fields are private (use the functions below). */
struct vmf_sum {
	uint64_t h;	  /* over the complete words so far */
	uint64_t len;	  /* bytes fed */
	uint64_t carry;	  /* the bytes of the current partial word, little-endian */
	unsigned ncarry;  /* how many (0..7) */
};

static inline uint64_t
vmf__mix(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* The little-endian 64-bit word at P (any alignment). */
static inline uint64_t
vmf_le64_load(const unsigned char *p)
{
	/* Compilers turn this into one load on little-endian machines. */
	return (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 |
	       (uint64_t)p[3] << 24 | (uint64_t)p[4] << 32 | (uint64_t)p[5] << 40 |
	       (uint64_t)p[6] << 48 | (uint64_t)p[7] << 56;
}

/* Stores V little-endian at P (any alignment). */
static inline void
vmf_le64_store(unsigned char *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

/* The key of a seed's stream (see "Pattern" above). */
static inline uint64_t
vmf__pattern_key(uint32_t seed)
{
	return vmf__mix((uint64_t)seed + VMF_PATTERN_G);
}

/* Word INDEX (bytes 8*INDEX .. 8*INDEX+7) of SEED's stream. */
static inline uint64_t
vmf_pattern_word(uint32_t seed, uint64_t index)
{
	return vmf__mix(vmf__pattern_key(seed) + index * VMF_PATTERN_G);
}

/* The byte at stream offset OFFSET of SEED's stream. */
static inline unsigned char
vmf_pattern_byte(uint32_t seed, uint64_t offset)
{
	return (unsigned char)(vmf_pattern_word(seed, offset / 8) >> (8 * (offset % 8)));
}

/* Fills BUF with LEN bytes of SEED's stream starting at stream offset OFFSET. */
static inline void
vmf_pattern_fill(uint32_t seed, uint64_t offset, void *buf, size_t len)
{
	unsigned char *p = buf;
	uint64_t x = vmf__pattern_key(seed) + (offset / 8) * VMF_PATTERN_G;
	unsigned skip = (unsigned)(offset % 8);
	uint64_t w;

	if (skip && len) {
		w = vmf__mix(x) >> (8 * skip);
		for (; skip < 8 && len; skip++, len--, w >>= 8)
			*p++ = (unsigned char)w;
		x += VMF_PATTERN_G;
	}
	for (; len >= 8; len -= 8, p += 8, x += VMF_PATTERN_G)
		vmf_le64_store(p, vmf__mix(x));
	for (w = vmf__mix(x); len; len--, w >>= 8)
		*p++ = (unsigned char)w;
}

/*
 * Checks BUF (LEN bytes) against SEED's stream at stream offset OFFSET.
 * Returns the index in BUF of the first byte that differs, or LEN when all
 * match.
 */
static inline size_t
vmf_pattern_find_diff(uint32_t seed, uint64_t offset, const void *buf, size_t len)
{
	const unsigned char *p = buf;
	uint64_t x = vmf__pattern_key(seed) + (offset / 8) * VMF_PATTERN_G;
	unsigned skip = (unsigned)(offset % 8);
	size_t i = 0;
	uint64_t w;

	if (skip) {
		w = vmf__mix(x) >> (8 * skip);
		for (; skip < 8 && i < len; skip++, i++, w >>= 8)
			if (p[i] != (unsigned char)w)
				return i;
		x += VMF_PATTERN_G;
	}
	for (; len - i >= 8; i += 8, x += VMF_PATTERN_G)
		if (vmf_le64_load(p + i) != vmf__mix(x))
			break;
	for (w = vmf__mix(x); i < len; i++, w >>= 8)
		if (p[i] != (unsigned char)w)
			return i;
	return len;
}

static inline uint64_t
vmf__sum_step(uint64_t h, uint64_t w)
{
	h ^= w * VMF_SUM_K1;
	h = h << 31 | h >> 33;
	return h * VMF_SUM_K2;
}

static inline void
vmf_sum_init(struct vmf_sum *s)
{
	memset(s, 0, sizeof(*s));
	s->h = VMF_SUM_INIT;
}

/* Feeds LEN bytes of the stream; any split of a stream gives the same sum. */
static inline void
vmf_sum_update(struct vmf_sum *s, const void *buf, size_t len)
{
	const unsigned char *p = buf;
	uint64_t h = s->h;

	s->len += len;
	while (s->ncarry && len) {
		s->carry |= (uint64_t)*p++ << (8 * s->ncarry);
		len--;
		if (++s->ncarry == 8) {
			h = vmf__sum_step(h, s->carry);
			s->carry = 0;
			s->ncarry = 0;
		}
	}
	for (; len >= 8; len -= 8, p += 8)
		h = vmf__sum_step(h, vmf_le64_load(p));
	for (; len; len--)
		s->carry |= (uint64_t)*p++ << (8 * s->ncarry++);
	s->h = h;
}

/* The checksum of everything fed so far; S stays usable. */
static inline uint64_t
vmf_sum_final(const struct vmf_sum *s)
{
	uint64_t h = s->h;

	if (s->ncarry)
		h = vmf__sum_step(h, s->carry);
	return vmf__mix(h ^ s->len);
}

/* The checksum of the first LEN bytes of SEED's stream. */
static inline uint64_t
vmf_pattern_sum(uint32_t seed, uint64_t len)
{
	unsigned char buf[4096];
	struct vmf_sum s;
	uint64_t off = 0;

	vmf_sum_init(&s);
	while (off < len) {
		size_t n = len - off < sizeof(buf) ? (size_t)(len - off) : sizeof(buf);
		vmf_pattern_fill(seed, off, buf, n);
		vmf_sum_update(&s, buf, n);
		off += n;
	}
	return vmf_sum_final(&s);
}

#endif
