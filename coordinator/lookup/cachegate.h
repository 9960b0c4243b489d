/*
 * cachegate.h — decides, batch by batch, whether a coordinator uses its row
 * cache, from the measured cost per pair of recent batches with and without
 * it.
 *
 * Why measure: a hit saves a row's transfer and the shard's gather, but a
 * cached lookup also pays a hash probe and sketch count per unique row, an
 * admission test (and maybe a 512-byte copy) per fetched row, and a read
 * from an arena far larger than the CPU caches. Which side wins depends on
 * the key skew, row size, transport and how busy the shards' cores are: on
 * this box under Zipf(1.0) keys the cache halved the coordinator's bytes
 * and still ran at 0.92-0.94x the tokens/s of no cache (README,
 * bench-lookup). So the gate does not predict; it compares.
 *
 * Policy (two arms, explore/exploit): the first US_CACHEGATE_WARM batches
 * use the cache, so it fills and its admission sketch learns; they are not
 * measured (a cold cache would count against it). Then each arm
 * gets batches until it has US_CACHEGATE_MIN samples, and after that every
 * batch goes to the arm whose median cost per pair over its last
 * US_CACHEGATE_WINDOW samples is lower, except every US_CACHEGATE_PROBE-th,
 * which goes to the other arm so that a change of workload is noticed. A
 * bypassed batch neither reads nor fills the cache. Medians, not means: one
 * batch preempted by another job (2 shared cores) must not flip the choice.
 *
 * The gate only sees numbers handed to it (no clock inside), so its
 * decisions are deterministic and testable.
 */
#ifndef US_CACHEGATE_H
#define US_CACHEGATE_H

#include <stdbool.h>
#include <stdint.h>

#define US_CACHEGATE_WARM   8u
#define US_CACHEGATE_MIN    3u
#define US_CACHEGATE_WINDOW 9u
#define US_CACHEGATE_PROBE  8u

typedef struct us_cachegate {
    uint64_t decided;                          /* batches decided so far */
    bool     warming;                          /* the last decided batch warms */
    double   cost[2][US_CACHEGATE_WINDOW];     /* [arm: 0 off, 1 on] ring of s/pair */
    uint32_t n[2], next[2];                    /* samples held, next ring slot */
    uint64_t used[2];                          /* batches given to each arm */
} us_cachegate;

/* Returns: nothing (an empty gate: the next batches warm the cache). */
void us_cachegate_init(us_cachegate *g);

/* Decides the next batch (counted in g->used).
 * Returns: true when it should use the cache. */
bool us_cachegate_next(us_cachegate *g);

/* Records a finished batch of `pairs` (token, row) pairs that took
 * `seconds`, with or without the cache: call it once per us_cachegate_next,
 * in order. Warm-up batches, batches of 0 pairs and non-positive times are
 * not counted. Returns: nothing. */
void us_cachegate_record(us_cachegate *g, bool used_cache, double seconds, uint64_t pairs);

/* Returns: the median cost per pair (seconds) of the arm's recent batches,
 * or a negative number while it has fewer than US_CACHEGATE_MIN. */
double us_cachegate_median(const us_cachegate *g, bool cache_arm);

#endif
