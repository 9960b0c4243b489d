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
 * and ran at 0.92-0.96x the tokens/s of no cache when the box was quiet,
 * 1.2-2x when another job held a core (README, bench-lookup). So the gate
 * does not predict; it compares.
 *
 * Policy (two arms, explore/exploit):
 *  - The first US_CACHEGATE_WARM batches use the cache, so it fills and its
 *    admission sketch learns; they are not measured (a cold cache would
 *    count against it).
 *  - Then each arm, cache first, gets batches until it has
 *    US_CACHEGATE_MIN samples.
 *  - After that every batch goes to the arm whose median cost per pair over
 *    its last US_CACHEGATE_WINDOW samples is lower (medians: one batch
 *    preempted on 2 shared cores must not flip the choice), except probes:
 *    US_CACHEGATE_PROBE_LEN batches of the other arm, every `interval`
 *    batches. A probe that confirms the choice doubles the interval (up to
 *    US_CACHEGATE_MAX_INTERVAL); one whose sample beats the chosen arm's
 *    median resets it to US_CACHEGATE_MIN_INTERVAL, so a change of workload
 *    is followed within a few probes.
 *  - The first batch after a switch of arm is not measured: after batches
 *    without the cache its hash table and hot rows have left the CPU
 *    caches, and that one-off cost (measured ~1.7x a cached batch) is not
 *    what the arm costs while it is chosen.
 * A bypassed batch neither reads nor fills the cache.
 *
 * The gate only sees numbers handed to it (no clock inside), so its
 * decisions are deterministic and testable.
 */
#ifndef US_CACHEGATE_H
#define US_CACHEGATE_H

#include <stdbool.h>
#include <stdint.h>

#define US_CACHEGATE_WARM         4u
#define US_CACHEGATE_MIN          3u
#define US_CACHEGATE_WINDOW       9u
#define US_CACHEGATE_PROBE_LEN    2u
#define US_CACHEGATE_MIN_INTERVAL 8u
#define US_CACHEGATE_MAX_INTERVAL 256u

typedef struct us_cachegate {
    uint64_t decided;                          /* batches decided so far */
    bool     measure;                          /* record the last decided batch */
    bool     last;                             /* arm of the last decided batch */
    bool     best;                             /* the chosen arm */
    uint32_t probe_left;                       /* probe batches still to run */
    bool     probed;                           /* a probe ended: judge it next */
    uint32_t interval, until_probe;            /* batches between probes */
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
 * in order. Warm-up batches, the first batch after a switch of arm,
 * batches of 0 pairs and non-positive times are not counted.
 * Returns: nothing. */
void us_cachegate_record(us_cachegate *g, bool used_cache, double seconds, uint64_t pairs);

/* Returns: the median cost per pair (seconds) of the arm's recent batches,
 * or a negative number while it has fewer than US_CACHEGATE_MIN. */
double us_cachegate_median(const us_cachegate *g, bool cache_arm);

#endif
