/* rowcache.c — CLOCK cache of raw rows (see rowcache.h). */
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

int us_rowcache_init(us_rowcache *c, uint64_t max_bytes, uint64_t row_bytes, us_err *err)
{
    memset(c, 0, sizeof *c);
    if (row_bytes == 0)
        return us_err_set(err, US_EINVAL, "row cache: rows of 0 bytes");
    /* per slot: row bytes, scale, row id, two flag bytes, ~2 hash entries */
    uint64_t per_slot = row_bytes + 4 + 8 + 2 + 16;
    uint64_t n = max_bytes / per_slot;
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
    if (!c->arena || !c->scales || !c->slot_row || !c->slot_used || !c->slot_ref || !c->hash) {
        us_rowcache_free(c);
        return us_err_set(err, US_ENOMEM, "row cache: %" PRIu64 " slots of %" PRIu64
                          " bytes", n, row_bytes);
    }
    c->row_bytes = row_bytes;
    c->n_slots = n;
    c->hash_cap = hcap;
    return US_OK;
}

/* Index of row's hash entry, or of the empty entry where it would go. */
static uint64_t find(const us_rowcache *c, uint64_t row)
{
    uint64_t mask = c->hash_cap - 1, h = mix(row) & mask;
    while (c->hash[h] != 0 && c->slot_row[c->hash[h] - 1] != row)
        h = (h + 1) & mask;
    return h;
}

const uint8_t *us_rowcache_get(us_rowcache *c, uint64_t row, const float **scale)
{
    if (c->n_slots == 0)
        return NULL;
    uint64_t e = c->hash[find(c, row)];
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

/* Removes the hash entry at h, shifting later entries of the run back so
 * lookups never stop early (no tombstones). */
static void hash_delete(us_rowcache *c, uint64_t h)
{
    uint64_t mask = c->hash_cap - 1, j = h;
    c->hash[h] = 0;
    for (;;) {
        j = (j + 1) & mask;
        if (c->hash[j] == 0)
            return;
        uint64_t want = mix(c->slot_row[c->hash[j] - 1]) & mask;
        /* move j back to h if its home is not in the cyclic range (h, j] */
        bool in_range = h <= j ? (want > h && want <= j) : (want > h || want <= j);
        if (!in_range) {
            c->hash[h] = c->hash[j];
            c->hash[j] = 0;
            h = j;
        }
    }
}

void us_rowcache_put(us_rowcache *c, uint64_t row, const void *bytes, float scale)
{
    if (c->n_slots == 0)
        return;
    uint64_t h = find(c, row), slot;
    if (c->hash[h] != 0) {
        slot = c->hash[h] - 1;
    } else {
        if (c->n_used < c->n_slots) {
            slot = c->n_used++;
        } else {
            /* second chance: clear reference bits until one is already clear */
            while (c->slot_ref[c->hand]) {
                c->slot_ref[c->hand] = 0;
                c->hand = (c->hand + 1) % c->n_slots;
            }
            slot = c->hand;
            c->hand = (c->hand + 1) % c->n_slots;
            hash_delete(c, find(c, c->slot_row[slot]));
            c->evictions++;
        }
        c->slot_row[slot] = row;
        c->slot_used[slot] = 1;
        c->hash[find(c, row)] = slot + 1;
        c->inserts++;
    }
    c->slot_ref[slot] = 0;
    memcpy(c->arena + slot * c->row_bytes, bytes, c->row_bytes);
    c->scales[slot] = scale;
}

uint64_t us_rowcache_bytes(const us_rowcache *c)
{
    return c->n_slots * (c->row_bytes + sizeof(float) + sizeof(uint64_t) + 2) +
           c->hash_cap * sizeof(uint64_t);
}

void us_rowcache_free(us_rowcache *c)
{
    free(c->arena);
    free(c->scales);
    free(c->slot_row);
    free(c->slot_used);
    free(c->slot_ref);
    free(c->hash);
    memset(c, 0, sizeof *c);
}
