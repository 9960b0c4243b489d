/*
 * rowcache.h — a bounded coordinator-side cache of hot table rows (CLOCK).
 *
 * Holds raw stored rows (dtype bytes, plus the f32 scale for int8 tables) of
 * one table in a fixed arena of max_bytes / slot_bytes slots, so memory use
 * is bounded and known up front. A hit sets the slot's reference bit;
 * inserting into a full cache sweeps the clock hand, clearing reference bits,
 * and evicts the first slot whose bit is clear (second-chance LRU
 * approximation, O(1) amortised). Lookup is an open-addressing hash from row
 * id to slot with backward-shift deletion.
 *
 * Rows enter the cache from pull rounds (the coordinator has the bytes);
 * push-down rounds then sum cached rows locally and send only the rest.
 * Pointers returned by us_rowcache_get stay valid until the next
 * us_rowcache_put (which may evict) or us_rowcache_free.
 */
#ifndef US_ROWCACHE_H
#define US_ROWCACHE_H

#include <stdbool.h>
#include <stdint.h>

#include "kernels/us_status.h"

typedef struct us_rowcache {
    uint64_t row_bytes;      /* element bytes per row */
    uint64_t n_slots;
    uint8_t *arena;          /* n_slots * row_bytes */
    float   *scales;         /* n_slots */
    uint64_t *slot_row;      /* row id held by each slot */
    uint8_t  *slot_used, *slot_ref;
    uint64_t  hand, n_used;
    uint64_t *hash;          /* hash_cap entries: slot + 1, 0 = empty */
    uint64_t  hash_cap;
    uint64_t  hits, misses, inserts, evictions;
} us_rowcache;

/* Sizes the cache for max_bytes of rows (each row_bytes + 4 for its scale);
 * Returns: US_OK; US_EINVAL for rows of 0 bytes or max_bytes too small for
 * one row; US_ENOMEM. */
int us_rowcache_init(us_rowcache *c, uint64_t max_bytes, uint64_t row_bytes, us_err *err);

/* Looks row up and counts a hit or a miss (sets *scale when non-NULL).
 * Returns: the cached bytes of row (lifetime in the top comment), or NULL
 * on a miss. */
const uint8_t *us_rowcache_get(us_rowcache *c, uint64_t row, const float **scale);

/* Copies row's bytes (and scale) in, evicting by CLOCK when full. A row
 * already present is refreshed in place. Returns: nothing. */
void us_rowcache_put(us_rowcache *c, uint64_t row, const void *bytes, float scale);

/* Returns: the memory held by the cache, in bytes (arena + tables). */
uint64_t us_rowcache_bytes(const us_rowcache *c);

/* Frees the cache. Returns: nothing. */
void us_rowcache_free(us_rowcache *c);

#endif
