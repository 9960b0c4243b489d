/*
 * hash.h — the project's two non-cryptographic hashes, defined once.
 *
 * Placement of blocks and sessions, synthetic table values, sampling streams
 * and resume fingerprints all depend on these exact bit patterns: a store,
 * journal or session written by one build must be found by the next. So each
 * is defined here only, and tests/unit/test_hash.c pins golden values (and
 * the published FNV-1a vectors). Changing a line here re-homes every block.
 *
 *   us_splitmix64_mix    the SplitMix64 finaliser (Steele, Lea, Flood 2014;
 *                        Vigna's constants): a bijection on 64 bits with full
 *                        avalanche, used as a keyed mixer.
 *   us_splitmix64_next   one step of the SplitMix64 stream: the state advances
 *                        by US_SPLITMIX64_GAMMA and the new state is mixed.
 *   us_fnv1a64           64-bit FNV-1a over bytes, chainable: start from
 *                        US_FNV1A64_INIT and feed the result back to hash a
 *                        concatenation piece by piece.
 *
 * Static inline: placement and synthetic values call these per row.
 */
#ifndef US_HASH_H
#define US_HASH_H

#include <stddef.h>
#include <stdint.h>

#define US_SPLITMIX64_GAMMA 0x9e3779b97f4a7c15ull   /* 2^64 / golden ratio, odd */
#define US_FNV1A64_INIT     0xcbf29ce484222325ull   /* FNV-1a 64 offset basis */
#define US_FNV1A64_PRIME    0x100000001b3ull

/* Returns: the mixed value; cannot fail (0 maps to 0). */
static inline uint64_t us_splitmix64_mix(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Advances *state. Returns: the next stream value; cannot fail. */
static inline uint64_t us_splitmix64_next(uint64_t *state)
{
    return us_splitmix64_mix(*state += US_SPLITMIX64_GAMMA);
}

/* Returns: h folded with the n bytes at data (n = 0: h itself); cannot fail. */
static inline uint64_t us_fnv1a64(uint64_t h, const void *data, size_t n)
{
    const uint8_t *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= US_FNV1A64_PRIME;
    }
    return h;
}

/* Returns: FNV-1a 64 of the NUL-terminated string s (without the NUL);
 * cannot fail. */
static inline uint64_t us_fnv1a64_str(const char *s)
{
    uint64_t h = US_FNV1A64_INIT;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * US_FNV1A64_PRIME;
    return h;
}

#endif
