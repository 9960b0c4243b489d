/*
 * rowcache.h — a bounded coordinator-side cache of hot table rows (CLOCK,
 * with frequency-based admission).
 *
 * Holds raw stored rows (dtype bytes, plus the f32 scale for int8 tables) of
 * one table in a fixed arena of max_bytes / (row_bytes +
 * US_ROWCACHE_SLOT_OVERHEAD) slots, so memory use is bounded and known up
 * front. A hit sets the slot's reference bit; inserting into a full cache
 * sweeps the clock hand, clearing reference bits, and takes the first slot
 * whose bit is clear (second-chance LRU approximation, O(1) amortised).
 * Lookup is an open-addressing hash from row id to slot (row id and slot in
 * one entry: one cache line per probe) with backward-shift deletion.
 *
 * Admission (TinyLFU-style): on this box a cache operation costs what it
 * touches in memory (hash probe, victim's entry, a 512-byte copy), not its
 * instructions, and under skewed keys most fetched rows are one-off tail
 * rows. So every lookup also counts the row in a small count-min sketch
 * (2 one-byte counters per row id, halved every 10 x n_slots counts so old
 * popularity fades), and us_rowcache_offer admits a fetched row only when it
 * was seen before (estimate >= 2) and, once the cache is full, is seen more
 * often than the CLOCK victim it would replace. A row that is not admitted
 * costs two sketch reads. us_rowcache_put inserts unconditionally.
 *
 * Rows enter the cache from pull rounds (the coordinator has the bytes);
 * push-down rounds then sum cached rows locally and send only the rest.
 * Pointers returned by us_rowcache_get stay valid until the next
 * us_rowcache_put / us_rowcache_offer (which may evict) or us_rowcache_free.
 */
#ifndef US_ROWCACHE_H
#define US_ROWCACHE_H

#include <stdbool.h>
#include <stdint.h>

#include "kernels/us_status.h"

/* Bytes per slot beyond the row itself: scale 4, row id 8, flags 2, ~2
 * hash entries of 16, ~2 sketch counters. */
#define US_ROWCACHE_SLOT_OVERHEAD 48u

typedef struct us_rowcache_entry {
    uint64_t row;            /* row id, valid when slot1 != 0 */
    uint64_t slot1;          /* slot + 1, 0 = empty */
} us_rowcache_entry;

typedef struct us_rowcache {
    uint64_t row_bytes;      /* element bytes per row */
    uint64_t n_slots;
    uint8_t *arena;          /* n_slots * row_bytes */
    float   *scales;         /* n_slots */
    uint64_t *slot_row;      /* row id held by each slot */
    uint8_t  *slot_used, *slot_ref;
    uint64_t  hand, n_used;
    us_rowcache_entry *hash; /* hash_cap entries */
    uint64_t  hash_cap;
    uint8_t  *sketch;        /* sketch_mask + 1 saturating counters */
    uint64_t  sketch_mask, sketch_adds;
    uint64_t  hits, misses, inserts, evictions;
    uint64_t  rejected;      /* offers not admitted */
} us_rowcache;

/* Sizes the cache for max_bytes (each slot row_bytes + US_ROWCACHE_SLOT_OVERHEAD).
 * Returns: US_OK; US_EINVAL for rows of 0 bytes or max_bytes too small for
 * one row; US_ENOMEM. */
int us_rowcache_init(us_rowcache *c, uint64_t max_bytes, uint64_t row_bytes, us_err *err);

/* Looks row up, counts a hit or a miss and counts the row in the sketch
 * (sets *scale when non-NULL).
 * Returns: the cached bytes of row (lifetime in the top comment), or NULL
 * on a miss. */
const uint8_t *us_rowcache_get(us_rowcache *c, uint64_t row, const float **scale);

/* us_rowcache_get for rows[0..n-1] (as many lookups, in order), with the
 * hash entries of later rows prefetched so the misses overlap. out[i] and
 * scales[i] (scales may be NULL) get each row's bytes/scale or NULL.
 * Returns: the number of hits. */
uint64_t us_rowcache_get_many(us_rowcache *c, const uint64_t *rows, uint64_t n,
                              const uint8_t **out, const float **scales);

/* Copies row's bytes (and scale) in, evicting by CLOCK when full. A row
 * already present is refreshed in place. Returns: nothing. */
void us_rowcache_put(us_rowcache *c, uint64_t row, const void *bytes, float scale);

/* us_rowcache_put behind the admission test of the top comment, for a row
 * the last lookup missed (a row already present is refreshed only when it
 * passes the test; the presence check would cost a probe for every row).
 * Returns: true when the row was inserted or refreshed. */
bool us_rowcache_offer(us_rowcache *c, uint64_t row, const void *bytes, float scale);

/* Returns: the memory held by the cache, in bytes (arena + tables). */
uint64_t us_rowcache_bytes(const us_rowcache *c);

/* Frees the cache. Returns: nothing. */
void us_rowcache_free(us_rowcache *c);

#endif
