/* route.c — dedupe, placement, request encoding, cost model (see route.h). */
#include "coordinator/lookup/route.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "proto/placement.h"

/* realloc that leaves *p untouched on failure */
static int grow(void *pp, uint64_t n, size_t elem, us_err *err, const char *what)
{
    void **p = pp;
    void *q = realloc(*p, n ? n * elem : elem);
    if (q == NULL)
        return us_err_set(err, US_ENOMEM, "route: %s for %" PRIu64 " entries", what, n);
    *p = q;
    return US_OK;
}

static inline uint64_t hash_row(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return x;
}

/* Clears the dedupe table for a new batch by moving to a fresh stamp (a
 * full memset only on growth and every 2^32 batches). */
static int dedupe_table(us_route *r, uint64_t n_pairs, us_err *err)
{
    /* load <= 1/4: at 1/2 each insert probed ~2 slots, and the occupied-or-not
     * branch of every probe mispredicted; 8192 pairs of bench lookup's keys,
     * 7146 distinct, best of 3000: 8.0 -> 5.2 ns a pair (1/8: 4.0 ns, but
     * 64 bytes of table a pair next to the batch in L2) */
    uint64_t hcap = 16;
    while (hcap < 4 * n_pairs)
        hcap *= 2;
    if (hcap > r->hash_cap) {
        int rc = grow(&r->hash_slots, hcap, sizeof *r->hash_slots, err, "hash");
        if (rc != US_OK)
            return rc;
        r->hash_cap = hcap;
        r->hash_stamp = 0;
    }
    if (++r->hash_stamp == 0 || r->hash_stamp == 1) {
        memset(r->hash_slots, 0, r->hash_cap * sizeof *r->hash_slots);
        r->hash_stamp = 1;
    }
    return US_OK;
}

int us_route_dedupe(us_route *r, const us_table_info *t, const uint64_t *rows,
                    uint32_t n_tokens, uint32_t k, us_err *err)
{
    uint64_t n_pairs = (uint64_t)n_tokens * k;
    if (n_pairs > UINT32_MAX / 2)
        return us_err_set(err, US_ERANGE, "route: batch of %" PRIu64 " pairs is too big",
                          n_pairs);
    int rc;
    if (n_pairs > r->pair_cap) {
        if ((rc = grow(&r->pair_uidx, n_pairs, sizeof *r->pair_uidx, err, "pairs")) ||
            (rc = grow(&r->uniq_rows, n_pairs, sizeof *r->uniq_rows, err, "rows")) ||
            (rc = grow(&r->uniq_owner, n_pairs, sizeof *r->uniq_owner, err, "owners")) ||
            (rc = grow(&r->uniq_ref, n_pairs, sizeof *r->uniq_ref, err, "refs")))
            return rc;
        r->pair_cap = r->uniq_cap = n_pairs;
    }
    if ((rc = dedupe_table(r, n_pairs, err)) != US_OK)
        return rc;
    /* open addressing, linear probing, load <= 1/4 (dedupe_table); only the
     * table's capacity is a power of two, so a row maps to a slot by mask */
    uint64_t mask = r->hash_cap - 1, stamp = (uint64_t)r->hash_stamp << 32;
    uint64_t *slots = r->hash_slots, *uniq = r->uniq_rows, n_rows = t->rows;
    uint32_t n_unique = 0, *pair_uidx = r->pair_uidx;   /* a local: see us_route_assign */
    for (uint64_t p = 0; p < n_pairs; p++) {
        uint64_t row = rows[p];
        if (row >= n_rows)
            return us_err_set(err, US_ERANGE, "table %u: token %" PRIu64 " pair %" PRIu64
                              ": row %" PRIu64 " out of range (table has %" PRIu64 " rows)",
                              t->table_id, p / k, p % k, row, n_rows);
        uint64_t h = hash_row(row) & mask;
        for (;;) {
            uint64_t slot = slots[h];
            if ((slot & ~0xffffffffull) != stamp) {
                slots[h] = stamp | n_unique;
                uniq[n_unique] = row;
                pair_uidx[p] = n_unique++;
                break;
            }
            if (uniq[(uint32_t)slot] == row) {
                pair_uidx[p] = (uint32_t)slot;
                break;
            }
            h = (h + 1) & mask;
        }
    }
    r->n_tokens = n_tokens;
    r->k = k;
    r->rows = rows;
    r->n_unique = n_unique;
    return US_OK;
}

/* Owner of a block under row placement, through the direct-mapped cache
 * (the scalar reference is us_placement_shard itself). */
static inline int block_owner(us_route *r, const us_table_info *t, uint64_t block,
                              int n_shards)
{
    uint32_t i = (uint32_t)(block & (US_ROUTE_OWNER_SLOTS - 1));
    if (r->owner_tag[i] == block + 1)
        return r->owner_val[i];
    int s = us_placement_shard(t->table_id, block, t->placement_seed, n_shards);
    r->owner_tag[i] = block + 1;
    r->owner_val[i] = s;
    return s;
}

/* Pass 2's write state of one shard's request. The counters are uint64_t
 * and the arrays typed pointers, so the uint32/float stores into the
 * request cannot alias them and the compiler keeps them in registers
 * across a pair (uint32_t counters next to uint32_t stores were reloaded
 * after every store). */
typedef struct enc_shard {
    uint32_t *pair_token, *pair_ref, *tok_map;
    float    *pair_weight;
    uint8_t  *pair_group;    /* NULL without groups */
    uint64_t  last, cursor, n_tok;
} enc_shard;

static int grow_shards(us_route *r, int n_shards, us_err *err)
{
    int rc;
    uint64_t n = (uint64_t)n_shards;
    if (n_shards <= r->shard_cap)
        return US_OK;
    if ((rc = grow(&r->shard_rows, n, sizeof(uint32_t), err, "shards")) ||
        (rc = grow(&r->shard_pairs, n, sizeof(uint32_t), err, "shards")) ||
        (rc = grow(&r->shard_tokens, n, sizeof(uint32_t), err, "shards")) ||
        (rc = grow(&r->shard_last, n, sizeof(uint32_t), err, "shards")) ||
        (rc = grow(&r->enc_state, n, sizeof(enc_shard), err, "shards")) ||
        (rc = grow(&r->enc_req, n, sizeof(us_wire_req), err, "shards")) ||
        (rc = grow(&r->tok_off, n + 1, sizeof(uint64_t), err, "shards")))
        return rc;
    r->shard_cap = n_shards;
    return US_OK;
}

/* The owner cache belongs to one (table, seed, shard count): start afresh
 * when the route is used for another. */
static int owner_cache_for(us_route *r, const us_table_info *t, int n_shards, us_err *err)
{
    uint64_t key[3] = { t->table_id, t->placement_seed, (uint64_t)n_shards };
    if (r->owner_tag == NULL) {
        int rc;
        if ((rc = grow(&r->owner_tag, US_ROUTE_OWNER_SLOTS, sizeof(uint64_t), err, "owners")) ||
            (rc = grow(&r->owner_val, US_ROUTE_OWNER_SLOTS, sizeof(int32_t), err, "owners")))
            return rc;
    } else if (memcmp(key, r->owner_key, sizeof key) == 0) {
        return US_OK;
    }
    memset(r->owner_tag, 0, US_ROUTE_OWNER_SLOTS * sizeof(uint64_t));
    memcpy(r->owner_key, key, sizeof key);
    return US_OK;
}

/* Tokens and pairs per shard: a token counts once for each shard it asks
 * (row_only: every unique row has one owner shard, the common case).
 * The token maps themselves are written by us_route_encode. */
static int count_tokens(us_route *r, int n_shards, bool row_only, us_err *err)
{
    for (int s = 0; s < n_shards; s++)
        r->shard_last[s] = UINT32_MAX;
    const uint32_t *uidx = r->pair_uidx;
    const int32_t *owner = r->uniq_owner;
    uint32_t *last = r->shard_last, *tokens = r->shard_tokens, *pairs = r->shard_pairs;
    /* counts in locals: r->k and r->n_tokens are uint32_t like the
     * counters, so read through r they are reloaded after every store */
    const uint32_t k = r->k, n_tokens = r->n_tokens;
    for (uint32_t tok = 0; row_only && tok < n_tokens; tok++)   /* one owner each */
        for (uint32_t i = 0; i < k; i++) {
            int32_t o = owner[uidx[(uint64_t)tok * k + i]];
            tokens[o] += last[o] != tok;
            last[o] = tok;
            pairs[o]++;
        }
    for (uint32_t tok = 0; !row_only && tok < n_tokens; tok++) {
        for (uint32_t i = 0; i < k; i++) {
            int32_t o = owner[uidx[(uint64_t)tok * k + i]];
            if (o == -1)
                continue;
            int lo = o >= 0 ? o : 0, hi = o >= 0 ? o + 1 : n_shards;
            for (int s = lo; s < hi; s++) {
                tokens[s] += last[s] != tok;
                last[s] = tok;
                pairs[s]++;
            }
        }
    }
    r->tok_off[0] = 0;
    for (int s = 0; s < n_shards; s++)
        r->tok_off[s + 1] = r->tok_off[s] + tokens[s];
    uint64_t tok_total = r->tok_off[n_shards];
    if (tok_total > r->tok_cap) {
        int rc = grow(&r->tok_map, tok_total, sizeof *r->tok_map, err, "tokens");
        if (rc != US_OK)
            return rc;
        r->tok_cap = tok_total;
    }
    return US_OK;
}

int us_route_assign(us_route *r, const us_table_info *t, int n_shards,
                    const bool *local, us_err *err)
{
    int rc;
    if (n_shards < 1)
        return us_err_set(err, US_EINVAL, "route: %d shards", n_shards);
    if ((rc = grow_shards(r, n_shards, err)) != US_OK ||
        (rc = owner_cache_for(r, t, n_shards, err)) != US_OK)
        return rc;
    r->n_shards = n_shards;
    memset(r->shard_rows, 0, (size_t)n_shards * sizeof(uint32_t));
    memset(r->shard_pairs, 0, (size_t)n_shards * sizeof(uint32_t));
    memset(r->shard_tokens, 0, (size_t)n_shards * sizeof(uint32_t));
    bool column = t->placement == US_PLACE_COLUMN;
    uint32_t n_remote = 0, n_local = 0;
    /* locals for the route's fields: its uint32_t/int32_t stores below
     * would otherwise make the compiler reload each field every row */
    const uint32_t n_unique = r->n_unique, block_bits = t->block_bits;
    const uint64_t *uniq_rows = r->uniq_rows;
    int32_t *uniq_owner = r->uniq_owner;
    uint32_t *uniq_ref = r->uniq_ref, *shard_rows = r->shard_rows;
    for (uint32_t u = 0; u < n_unique; u++) {
        if (local != NULL && local[u]) {
            uniq_owner[u] = -1;
            n_local++;
            continue;
        }
        if (column) {
            uniq_owner[u] = -2;
            uniq_ref[u] = n_remote++;
        } else {
            int s = block_owner(r, t, uniq_rows[u] >> block_bits, n_shards);
            uniq_owner[u] = s;
            uniq_ref[u] = shard_rows[s]++;
        }
    }
    r->n_local = n_local;
    if (column)
        for (int s = 0; s < n_shards; s++)
            r->shard_rows[s] = n_remote;
    /* row placement without local rows: every owner is a shard index */
    return count_tokens(r, n_shards, !column && r->n_local == 0, err);
}

/* Pass 1: lays out every shard's request in out (the buffer may move while
 * appending, so requests are addressed by offset until all are placed). */
static int layout_requests(const us_route *r, const us_table_info *t,
                           const us_route_request *q, uint8_t flags, us_wire_buf *out,
                           uint64_t *off, uint64_t *len, us_err *err)
{
    for (int s = 0; s < r->n_shards; s++) {
        uint8_t m = q->mode;
        uint32_t rows = r->shard_rows[s], pairs = 0, tokens = 0;
        if (q->mode == US_WIRE_PUSH) {
            pairs = r->shard_pairs[s];
            tokens = r->shard_tokens[s];
        }
        if (q->mode == US_WIRE_NOP || rows == 0) {
            m = US_WIRE_NOP;
            rows = pairs = tokens = 0;
        }
        uint8_t f = m == US_WIRE_PUSH ? flags : (uint8_t)(flags & ~US_WIRE_F_GROUPS);
        uint64_t bytes = us_wire_req_bytes(rows, pairs, f & US_WIRE_F_GROUPS);
        int rc = us_wire_buf_append(out, bytes, &off[s], err);
        if (rc != US_OK)
            return rc;
        len[s] = bytes;
        us_wire_req req;
        us_wire_req_desc d = { .mode = m, .flags = f, .table_id = t->table_id,
                               .batch_id = q->batch_id, .n_tokens = tokens, .n_rows = rows,
                               .n_pairs = pairs, .n_groups = q->n_groups };
        if ((rc = us_wire_req_init(out->data + off[s], bytes, &d, &req, err)) != US_OK)
            return rc;
    }
    return US_OK;
}

/* Appends a pair (token tok, request row ref, weight w, group *g) to one
 * shard's request, opening a new shard-local token (and its token-map
 * entry) when tok is new there. */
static inline void put_pair(enc_shard *e, uint32_t tok, uint32_t ref, float w,
                            const uint8_t *g)
{
    if (e->last != tok) {
        e->last = tok;
        e->tok_map[e->n_tok++] = tok;
    }
    uint64_t c = e->cursor++;
    e->pair_token[c] = (uint32_t)e->n_tok - 1;
    e->pair_ref[c] = ref;
    e->pair_weight[c] = w;
    if (e->pair_group)
        e->pair_group[c] = *g;
}

/* Pass 2: the unique rows of every request, then (PUSH) its pairs in token
 * order with shard-local token numbers, and the token maps. req[s] views
 * the laid-out requests. */
static void fill_requests(const us_route *r, const us_route_request *q, us_wire_req *req)
{
    for (uint32_t u = 0; q->mode != US_WIRE_NOP && u < r->n_unique; u++) {
        int32_t o = r->uniq_owner[u];
        if (o >= 0) {
            ((uint64_t *)req[o].rows)[r->uniq_ref[u]] = r->uniq_rows[u];
            continue;
        }
        for (int s = 0; o == -2 && s < r->n_shards; s++)
            if (req[s].hdr->n_rows > 0)
                ((uint64_t *)req[s].rows)[r->uniq_ref[u]] = r->uniq_rows[u];
    }
    if (q->mode != US_WIRE_PUSH)
        return;
    enc_shard *st = r->enc_state;
    for (int s = 0; s < r->n_shards; s++)
        st[s] = (enc_shard){
            .pair_token = (uint32_t *)req[s].pair_token, .pair_ref = (uint32_t *)req[s].pair_ref,
            .tok_map = r->tok_map + r->tok_off[s], .pair_weight = (float *)req[s].pair_weight,
            .pair_group = (uint8_t *)req[s].pair_group, .last = UINT64_MAX };
    const uint32_t *uidx = r->pair_uidx, *uref = r->uniq_ref;
    const int32_t *owner = r->uniq_owner;
    const float *weights = q->weights;
    const uint8_t *groups = q->groups;
    for (uint32_t tok = 0; tok < r->n_tokens; tok++) {
        uint64_t p = (uint64_t)tok * r->k, end = p + r->k;
        for (; p < end; p++) {
            uint32_t u = uidx[p];
            int32_t o = owner[u];
            const uint8_t *g = groups ? groups + p : NULL;
            if (o >= 0)
                put_pair(&st[o], tok, uref[u], weights[p], g);
            else
                for (int s = 0; o == -2 && s < r->n_shards; s++)
                    put_pair(&st[s], tok, uref[u], weights[p], g);
        }
    }
}

int us_route_encode(const us_route *r, const us_table_info *t, const us_route_request *q,
                    us_wire_buf *out, uint64_t *off, uint64_t *len, us_err *err)
{
    int S = r->n_shards, rc;
    if (S < 1)
        return us_err_set(err, US_EINVAL, "route: encode before assign");
    uint8_t flags = q->flags;
    if (q->groups != NULL && q->mode == US_WIRE_PUSH)
        flags |= US_WIRE_F_GROUPS;
    if ((rc = layout_requests(r, t, q, flags, out, off, len, err)) != US_OK)
        return rc;
    us_wire_req *req = r->enc_req;
    for (int s = 0; s < S; s++) {
        us_wire_req_hdr *h = (us_wire_req_hdr *)(out->data + off[s]);
        us_wire_req_desc d = { .mode = h->mode, .flags = h->flags, .table_id = h->table_id,
                               .batch_id = h->batch_id, .n_tokens = h->n_tokens,
                               .n_rows = h->n_rows, .n_pairs = h->n_pairs,
                               .n_groups = h->n_groups };
        us_wire_req_init(h, len[s], &d, &req[s], NULL);
    }
    fill_requests(r, q, req);
    return US_OK;
}

void us_route_free(us_route *r)
{
    free(r->uniq_rows);
    free(r->pair_uidx);
    free(r->uniq_owner);
    free(r->uniq_ref);
    free(r->shard_rows);
    free(r->shard_pairs);
    free(r->shard_tokens);
    free(r->tok_map);
    free(r->tok_off);
    free(r->hash_slots);
    free(r->shard_last);
    free(r->enc_state);
    free(r->enc_req);
    free(r->owner_tag);
    free(r->owner_val);
    memset(r, 0, sizeof *r);
}

us_cost_params us_cost_params_default(void)
{
    /* Rough figures for this lab (LAB.md: ~1 GB/s links, tens of us per
     * message); one-sided reads cost ~7 us (shm) to ~10 us (tcp) each in
     * `ultrashard bench lookup` here (pipelined, one per row). Tune per cluster. */
    return (us_cost_params){ .bytes_per_us = 1000.0, .msg_us = 20.0, .read_us = 8.0 };
}

void us_route_cost(const us_route *r, const us_table_info *t, uint32_t n_groups,
                   bool pull_by_rma, const us_cost_params *p, us_cost *push,
                   us_cost *pull)
{
    const uint64_t hdr = sizeof(us_wire_req_hdr);
    uint64_t push_bytes = 0, pull_bytes = 0, pull_reads = 0;
    int S = r->n_shards;
    for (int s = 0; s < S; s++) {
        uint32_t cols = t->dim, begin = 0;
        if (t->placement == US_PLACE_COLUMN)
            us_column_slice(t->dim, S, s, &begin, &cols);
        uint64_t rows = r->shard_rows[s];
        /* push: request with pairs, answer with per-token sums */
        push_bytes += us_wire_req_bytes((uint32_t)rows, r->shard_pairs[s], n_groups > 1);
        push_bytes += (uint64_t)r->shard_tokens[s] * n_groups * cols * 4u + hdr;
        uint64_t row_bytes = us_table_row_bytes(t, cols) +
                             (t->dtype == US_DTYPE_INT8 ? 4u : 0u);
        if (pull_by_rma) {
            pull_bytes += 2 * hdr + rows * row_bytes;          /* NOP round + reads */
            pull_reads += rows * (t->dtype == US_DTYPE_INT8 ? 2u : 1u);
        } else {
            pull_bytes += us_wire_req_bytes((uint32_t)rows, 0, 0) + hdr + rows * row_bytes;
        }
    }
    push->bytes = push_bytes;
    push->messages = 2u * (uint64_t)S;
    push->est_us = (double)push_bytes / p->bytes_per_us + (double)push->messages * p->msg_us;
    pull->bytes = pull_bytes;
    pull->messages = 2u * (uint64_t)S + pull_reads;
    pull->est_us = (double)pull_bytes / p->bytes_per_us + 2.0 * S * p->msg_us +
                   (double)pull_reads * p->read_us;
}
