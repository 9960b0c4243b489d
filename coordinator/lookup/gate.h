/*
 * gate.h — a measured choice between two ways of doing a lookup batch:
 * batch by batch, the way whose recent batches cost less per pair.
 *
 * Arm true is the candidate, arm false the plain way. Two uses
 * (coordinator/lookup/lookup.c):
 *   - the row cache (true: read and fill it; false: bypass it). A hit saves
 *     a row's transfer and the shard's gather, but a cached lookup also pays
 *     a hash probe and sketch count per unique row, an admission test per
 *     fetched row and reads from an arena far larger than the CPU caches:
 *     on this box under Zipf(1.0) keys the cache halved the coordinator's
 *     bytes and ran at 0.92-0.96x the tokens/s of no cache when the box was
 *     quiet, 1.2-2x when another job held a core (README).
 *   - AUTO mode where the shards' memory is mapped here (true: one-sided
 *     pull, the coordinator sums rows in place; false: push-down, the
 *     shards sum). Which wins depends on how many cores the shards have
 *     to themselves, which no cost model here knows.
 * So the gate does not predict; it compares.
 *
 * Policy (explore/exploit):
 *  - The first US_GATE_WARM batches take arm true, unmeasured (a cold
 *    cache would count against it).
 *  - Then each arm, true first, gets batches until it has US_GATE_MIN
 *    samples.
 *  - After that every batch goes to the arm whose median cost per pair over
 *    its last US_GATE_WINDOW samples is lower (medians: one batch
 *    preempted on 2 shared cores must not flip the choice), except probes:
 *    US_GATE_PROBE_LEN batches of the other arm, every `interval` batches.
 *    A probe that confirms the choice doubles the interval (up to
 *    US_GATE_MAX_INTERVAL); one whose sample beats the chosen arm's median
 *    resets it to US_GATE_MIN_INTERVAL, so a change of workload is
 *    followed within a few probes.
 *  - The first batch after a switch of arm is not measured: after batches
 *    without the cache its hash table and hot rows have left the CPU
 *    caches, and that one-off cost (measured ~1.7x a cached batch) is not
 *    what the arm costs while it is chosen.
 *
 * The gate only sees numbers handed to it (no clock inside), so its
 * decisions are deterministic and testable.
 */
#ifndef US_GATE_H
#define US_GATE_H

#include <stdbool.h>
#include <stdint.h>

#define US_GATE_WARM         4u
#define US_GATE_MIN          3u
#define US_GATE_WINDOW       9u
#define US_GATE_PROBE_LEN    2u
#define US_GATE_MIN_INTERVAL 8u
#define US_GATE_MAX_INTERVAL 256u

typedef struct us_gate {
    uint64_t decided;                          /* batches decided so far */
    bool     measure;                          /* record the last decided batch */
    bool     last;                             /* arm of the last decided batch */
    bool     best;                             /* the chosen arm */
    uint32_t probe_left;                       /* probe batches still to run */
    bool     probed;                           /* a probe ended: judge it next */
    uint32_t interval, until_probe;            /* batches between probes */
    double   cost[2][US_GATE_WINDOW];          /* [arm] ring of seconds per pair */
    uint32_t n[2], next[2];                    /* samples held, next ring slot */
    uint64_t used[2];                          /* batches given to each arm */
} us_gate;

/* Returns: nothing (an empty gate: the next batches warm arm true). */
void us_gate_init(us_gate *g);

/* Decides the next batch (counted in g->used).
 * Returns: the arm it should take. */
bool us_gate_next(us_gate *g);

/* Records a finished batch of `pairs` (token, row) pairs that took
 * `seconds` on `arm`: call it once per us_gate_next,
 * in order. Warm-up batches, the first batch after a switch of arm,
 * batches of 0 pairs and non-positive times are not counted.
 * Returns: nothing. */
void us_gate_record(us_gate *g, bool arm, double seconds, uint64_t pairs);

/* Returns: the median cost per pair (seconds) of the arm's recent batches,
 * or a negative number while it has fewer than US_GATE_MIN. */
double us_gate_median(const us_gate *g, bool arm);

#endif
