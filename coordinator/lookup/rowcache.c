/* rowcache.c — CLOCK cache of raw rows with TinyLFU-style admission (see rowcache.h). */
#include "coordinator/lookup/rowcache.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

static inline uint64_t mix(uint64_t x)
{
    x ^= x >> 31;
    x *= 0x9e3779b97f4a7c15ull;
    x ^= x >> 29;
    return x;
}

/* Sketch counters saturate here; the admission test only compares small
 * counts, and aging halves them. */
#define SKETCH_MAX 255u

/* Writes one byte per page (its own value) so the kernel maps the page. */
static void prefault(void *p, uint64_t bytes)
{
    volatile uint8_t *v = p;
    for (uint64_t i = 0; i < bytes; i += 4096)
        v[i] = v[i];
}

int us_rowcache_init(us_rowcache *c, uint64_t max_bytes, uint64_t row_bytes, us_err *err)
{
    memset(c, 0, sizeof *c);
    if (row_bytes == 0)
        return us_err_set(err, US_EINVAL, "row cache: rows of 0 bytes");
    uint64_t n = max_bytes / (row_bytes + US_ROWCACHE_SLOT_OVERHEAD);
    if (n == 0)
        return us_err_set(err, US_EINVAL, "row cache: %" PRIu64 " bytes cannot hold one "
                          "row of %" PRIu64 " bytes", max_bytes, row_bytes);
    uint64_t hcap = 4;
    while (hcap < 2 * n)
        hcap *= 2;
    c->arena = malloc(n * row_bytes);
    c->scales = calloc(n, sizeof *c->scales);
    c->slot_row = calloc(n, sizeof *c->slot_row);
    c->slot_used = calloc(n, 1);
    c->slot_ref = calloc(n, 1);
    c->hash = calloc(hcap, sizeof *c->hash);
    c->sketch = calloc(hcap, 1);
    if (!c->arena || !c->scales || !c->slot_row || !c->slot_used || !c->slot_ref || !c->hash ||
        !c->sketch) {
        us_rowcache_free(c);
        return us_err_set(err, US_ENOMEM, "row cache: %" PRIu64 " slots of %" PRIu64
                          " bytes", n, row_bytes);
    }
    /* Touch every page now: a first-touch page fault costs ~7 us in this
     * VM (measured: 1 MB copied into fresh arena pages at 260 MB/s), and
     * the cache is long-lived, so it pays once here instead of on the
     * lookups. (A memset after malloc would be turned into calloc, whose
     * pages stay unmapped until written.) */
    prefault(c->arena, n * row_bytes);
    prefault(c->hash, hcap * sizeof *c->hash);
    prefault(c->sketch, hcap);
    prefault(c->slot_row, n * sizeof *c->slot_row);
    c->row_bytes = row_bytes;
    c->n_slots = n;
    c->hash_cap = hcap;
    c->sketch_mask = hcap - 1;
    return US_OK;
}

/* Index of row's hash entry, or of the empty entry where it would go. */
static uint64_t find(const us_rowcache *c, uint64_t row)
{
    uint64_t mask = c->hash_cap - 1, h = mix(row) & mask;
    while (c->hash[h].slot1 != 0 && c->hash[h].row != row)
        h = (h + 1) & mask;
    return h;
}

/* The two counters of row (independent halves of one 64-bit hash). */
static inline void sketch_at(const us_rowcache *c, uint64_t row, uint64_t *a, uint64_t *b)
{
    uint64_t h = mix(row ^ 0x2545f4914f6cdd1dull) * 0xbf58476d1ce4e5b9ull;
    *a = (h >> 40) & c->sketch_mask;
    *b = (h >> 8) & c->sketch_mask;
}

static unsigned sketch_estimate(const us_rowcache *c, uint64_t row)
{
    uint64_t a, b;
    sketch_at(c, row, &a, &b);
    return c->sketch[a] < c->sketch[b] ? c->sketch[a] : c->sketch[b];
}

/* Conservative update (only the smaller counter grows), then aging: every
 * 10 x n_slots counts all counters are halved. */
static void sketch_count(us_rowcache *c, uint64_t row)
{
    uint64_t a, b;
    sketch_at(c, row, &a, &b);
    unsigned m = c->sketch[a] < c->sketch[b] ? c->sketch[a] : c->sketch[b];
    if (m < SKETCH_MAX) {
        if (c->sketch[a] == m)
            c->sketch[a]++;
        if (c->sketch[b] == m)
            c->sketch[b]++;
    }
    if (++c->sketch_adds >= 10 * c->n_slots) {
        for (uint64_t i = 0; i <= c->sketch_mask; i++)
            c->sketch[i] >>= 1;
        c->sketch_adds = 0;
    }
}

/* Lookup of a row whose hash entry is at h (from find). */
static const uint8_t *get_at(us_rowcache *c, uint64_t h, uint64_t row, const float **scale)
{
    sketch_count(c, row);
    uint64_t e = c->hash[h].slot1;
    if (e == 0) {
        c->misses++;
        return NULL;
    }
    uint64_t slot = e - 1;
    c->hits++;
    c->slot_ref[slot] = 1;
    if (scale)
        *scale = &c->scales[slot];
    return c->arena + slot * c->row_bytes;
}

const uint8_t *us_rowcache_get(us_rowcache *c, uint64_t row, const float **scale)
{
    if (c->n_slots == 0)
        return NULL;
    return get_at(c, find(c, row), row, scale);
}

uint64_t us_rowcache_get_many(us_rowcache *c, const uint64_t *rows, uint64_t n,
                              const uint8_t **out, const float **scales)
{
    enum { AHEAD = 8 };   /* lookups in flight: the hash does not fit the caches */
    uint64_t hits = 0, mask = c->hash_cap - 1;
    for (uint64_t i = 0; i < n; i++) {
        if (c->n_slots == 0) {
            out[i] = NULL;
            continue;
        }
        if (i + AHEAD < n) {
            uint64_t a, b;
            __builtin_prefetch(&c->hash[mix(rows[i + AHEAD]) & mask]);
            sketch_at(c, rows[i + AHEAD], &a, &b);
            __builtin_prefetch(&c->sketch[a]);
            __builtin_prefetch(&c->sketch[b]);
        }
        const float *s = NULL;
        out[i] = get_at(c, find(c, rows[i]), rows[i], &s);
        if (scales)
            scales[i] = out[i] ? s : NULL;
        hits += out[i] != NULL;
    }
    return hits;
}

/* Removes the hash entry at h, shifting later entries of the run back so
 * lookups never stop early (no tombstones). */
static void hash_delete(us_rowcache *c, uint64_t h)
{
    uint64_t mask = c->hash_cap - 1, j = h;
    c->hash[h].slot1 = 0;
    for (;;) {
        j = (j + 1) & mask;
        if (c->hash[j].slot1 == 0)
            return;
        uint64_t want = mix(c->hash[j].row) & mask;
        /* move j back to h if its home is not in the cyclic range (h, j] */
        bool in_range = h <= j ? (want > h && want <= j) : (want > h || want <= j);
        if (!in_range) {
            c->hash[h] = c->hash[j];
            c->hash[j].slot1 = 0;
            h = j;
        }
    }
}

/* The CLOCK victim: clears reference bits until a slot's bit is clear and
 * leaves the hand on it (taken by evict_at, or compared again next time). */
static uint64_t clock_victim(us_rowcache *c)
{
    while (c->slot_ref[c->hand]) {
        c->slot_ref[c->hand] = 0;
        c->hand = (c->hand + 1) % c->n_slots;
    }
    return c->hand;
}

/* Stores row into a free or victim slot; h is find(c, row) (empty). */
static void insert_new(us_rowcache *c, uint64_t h, uint64_t row, const void *bytes, float scale)
{
    uint64_t slot;
    if (c->n_used < c->n_slots) {
        slot = c->n_used++;
    } else {
        slot = clock_victim(c);
        c->hand = (c->hand + 1) % c->n_slots;
        hash_delete(c, find(c, c->slot_row[slot]));
        h = find(c, row);   /* the deletion may have moved entries */
        c->evictions++;
    }
    c->slot_row[slot] = row;
    c->slot_used[slot] = 1;
    c->hash[h] = (us_rowcache_entry){ .row = row, .slot1 = slot + 1 };
    c->inserts++;
    c->slot_ref[slot] = 0;
    memcpy(c->arena + slot * c->row_bytes, bytes, c->row_bytes);
    c->scales[slot] = scale;
}

void us_rowcache_put(us_rowcache *c, uint64_t row, const void *bytes, float scale)
{
    if (c->n_slots == 0)
        return;
    uint64_t h = find(c, row);
    if (c->hash[h].slot1 == 0) {
        insert_new(c, h, row, bytes, scale);
        return;
    }
    uint64_t slot = c->hash[h].slot1 - 1;
    c->slot_ref[slot] = 0;
    memcpy(c->arena + slot * c->row_bytes, bytes, c->row_bytes);
    c->scales[slot] = scale;
}

bool us_rowcache_offer(us_rowcache *c, uint64_t row, const void *bytes, float scale)
{
    if (c->n_slots == 0)
        return false;
    unsigned freq = sketch_estimate(c, row);
    if (freq < 2) {            /* not re-referenced yet: touch nothing else */
        c->rejected++;
        return false;
    }
    if (c->n_used == c->n_slots && freq <= sketch_estimate(c, c->slot_row[clock_victim(c)])) {
        c->rejected++;
        return false;
    }
    us_rowcache_put(c, row, bytes, scale);
    return true;
}

uint64_t us_rowcache_bytes(const us_rowcache *c)
{
    return c->n_slots * (c->row_bytes + sizeof(float) + sizeof(uint64_t) + 2) +
           c->hash_cap * (sizeof(us_rowcache_entry) + 1);
}

void us_rowcache_free(us_rowcache *c)
{
    free(c->arena);
    free(c->scales);
    free(c->slot_row);
    free(c->slot_used);
    free(c->slot_ref);
    free(c->hash);
    free(c->sketch);
    memset(c, 0, sizeof *c);
}
