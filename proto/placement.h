/*
 * placement.h — which shard owns a block: a pure function both sides compute.
 *
 *   owner(table, block) = jump_hash(mix64(table, block, seed), n_shards)
 *
 * Jump consistent hash (Lamping & Veach 2014) moves only ~1/(S+1) of the
 * blocks when S grows to S+1, and needs no directory. mix64 is the
 * SplitMix64 finaliser (kernels/hash.h) over the packed key, so nearby
 * blocks spread evenly.
 * Results are fixed forever for a given (table, block, seed, S): stores on
 * disk depend on them, and golden values in tests/unit pin them.
 *
 * Replicas: us_placement_owners() returns R distinct owners; the first is
 * the primary (= us_placement_shard). R = 1 today.
 */
#ifndef US_PLACEMENT_H
#define US_PLACEMENT_H

#include <stdint.h>

/* Returns: the 64-bit placement key of (table, block, seed). */
uint64_t us_mix64(uint32_t table_id, uint64_t block_id, uint64_t seed);

/* Bucket in [0, n_buckets) for key; n_buckets >= 1.
 * Returns: the bucket in [0, n_buckets).
 */
int32_t us_jump_hash(uint64_t key, int32_t n_buckets);

/* Primary owner shard index in [0, n_shards).
 * Returns: the shard index in [0, n_shards).
 */
int us_placement_shard(uint32_t table_id, uint64_t block_id, uint64_t seed, int n_shards);

/* Fills owners[0..replicas-1] with distinct shard indices (replicas <= n_shards);
 * returns the number written (min(replicas, n_shards)).
 * Returns: the number of owners written, min(replicas, n_shards).
 */
int us_placement_owners(uint32_t table_id, uint64_t block_id, uint64_t seed,
                        int n_shards, int replicas, int *owners);

#endif
