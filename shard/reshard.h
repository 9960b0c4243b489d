/*
 * reshard.h — copy a store to a new shard count and prove nothing changed.
 *
 * Runs as one process (the choice: a reshard is an offline maintenance step,
 * and one process reading the old store through mmap and writing the new one
 * needs no coordination; it is I/O bound either way). Steps:
 *   1. open the old store, all shards, mmap, verify = true: a corrupt block
 *      is never copied;
 *   2. build the new store in "<dst>.partial": for every table and new shard
 *      s, the blocks placement now gives to s, copied slot-for-slot from the
 *      old files; a block whose owner is unchanged is copied within its shard,
 *      only blocks whose owner changes move between shards (counted);
 *      each copied block's CRC must equal the old manifest's;
 *   3. open the staged store (verify = true) and compare every row of every
 *      stored table, old vs new, by its CRC-32C (row bytes, then the int8
 *      scale): the proof that no row was lost or altered;
 *   4. only then rename the stage to <dst>.
 * Jump hash makes the moved fraction 1 - min(S1,S2)/max(S1,S2) in
 * expectation (1/(S+1) when growing S -> S+1). Synthetic tables carry over
 * unchanged (no bytes). dst must not exist; src is only read.
 */
#ifndef US_RESHARD_H
#define US_RESHARD_H

#include <stdint.h>

#include "kernels/us_status.h"

typedef struct us_reshard_stats {
    uint32_t old_shards, new_shards;
    uint64_t blocks_total;      /* stored (non-synthetic) blocks */
    uint64_t blocks_moved;      /* owner changed */
    uint64_t rows_checked;
    uint64_t rows_differ;       /* 0 on success */
    uint64_t old_digest, new_digest;   /* sum of row CRCs, old vs new */
    uint64_t bytes_written;
    double   seconds;
} us_reshard_stats;

/* Copies store src into a new store dst with new_shards shards, proving
 * every row unchanged (stats->rows_differ).
 * Returns: US_OK; US_EINVAL (shard count); US_EEXIST (dst exists); errors of
 * us_store_open naming src; US_ENOTFOUND / US_ECORRUPT naming table and block
 * when a block is missing or changed, or the proof finds rows that differ;
 * US_EIO; US_ENOMEM. On error dst is absent. */
int us_reshard(const char *src, const char *dst, uint32_t new_shards,
               us_reshard_stats *stats, us_err *err);

#endif
