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

int us_route_dedupe(us_route *r, const us_table_info *t, const uint64_t *rows,
                    uint32_t n_tokens, uint32_t k, us_err *err)
{
    uint64_t n_pairs = (uint64_t)n_tokens * k;
    if (n_pairs > UINT32_MAX / 2)
        return us_err_set(err, US_ERANGE, "route: batch of %" PRIu64 " pairs is too big",
                          n_pairs);
    for (uint64_t p = 0; p < n_pairs; p++)
        if (rows[p] >= t->rows)
            return us_err_set(err, US_ERANGE, "table %u: token %" PRIu64 " pair %" PRIu64
                              ": row %" PRIu64 " out of range (table has %" PRIu64 " rows)",
                              t->table_id, p / k, p % k, rows[p], t->rows);
    int rc;
    if (n_pairs > r->pair_cap) {
        if ((rc = grow(&r->pair_uidx, n_pairs, sizeof *r->pair_uidx, err, "pairs")) ||
            (rc = grow(&r->uniq_rows, n_pairs, sizeof *r->uniq_rows, err, "rows")) ||
            (rc = grow(&r->uniq_owner, n_pairs, sizeof *r->uniq_owner, err, "owners")) ||
            (rc = grow(&r->uniq_ref, n_pairs, sizeof *r->uniq_ref, err, "refs")))
            return rc;
        r->pair_cap = r->uniq_cap = n_pairs;
    }
    uint64_t hcap = 16;
    while (hcap < 2 * n_pairs)
        hcap *= 2;
    if (hcap > r->hash_cap) {
        if ((rc = grow(&r->hash_slots, hcap, sizeof *r->hash_slots, err, "hash")))
            return rc;
        r->hash_cap = hcap;
    }
    /* open addressing, linear probing; load <= 1/2 */
    memset(r->hash_slots, 0, hcap * sizeof *r->hash_slots);
    uint64_t mask = hcap - 1;
    uint32_t n_unique = 0;
    for (uint64_t p = 0; p < n_pairs; p++) {
        uint64_t h = hash_row(rows[p]) & mask;
        for (;;) {
            uint32_t slot = r->hash_slots[h];
            if (slot == 0) {
                r->hash_slots[h] = n_unique + 1;
                r->uniq_rows[n_unique] = rows[p];
                r->pair_uidx[p] = n_unique++;
                break;
            }
            if (r->uniq_rows[slot - 1] == rows[p]) {
                r->pair_uidx[p] = slot - 1;
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

int us_route_assign(us_route *r, const us_table_info *t, int n_shards,
                    const bool *local, us_err *err)
{
    int rc;
    if (n_shards < 1)
        return us_err_set(err, US_EINVAL, "route: %d shards", n_shards);
    if (n_shards > r->shard_cap) {
        if ((rc = grow(&r->shard_rows, (uint64_t)n_shards, sizeof(uint32_t), err, "shards")) ||
            (rc = grow(&r->shard_pairs, (uint64_t)n_shards, sizeof(uint32_t), err, "shards")) ||
            (rc = grow(&r->shard_tokens, (uint64_t)n_shards, sizeof(uint32_t), err, "shards")) ||
            (rc = grow(&r->shard_last, (uint64_t)n_shards, sizeof(uint32_t), err, "shards")) ||
            (rc = grow(&r->shard_cursor, (uint64_t)n_shards, sizeof(uint32_t), err, "shards")) ||
            (rc = grow(&r->tok_off, (uint64_t)n_shards + 1, sizeof(uint64_t), err, "shards")))
            return rc;
        r->shard_cap = n_shards;
    }
    r->n_shards = n_shards;
    memset(r->shard_rows, 0, (size_t)n_shards * sizeof(uint32_t));
    memset(r->shard_pairs, 0, (size_t)n_shards * sizeof(uint32_t));
    memset(r->shard_tokens, 0, (size_t)n_shards * sizeof(uint32_t));
    bool column = t->placement == US_PLACE_COLUMN;
    uint32_t n_remote = 0;
    r->n_local = 0;
    for (uint32_t u = 0; u < r->n_unique; u++) {
        if (local != NULL && local[u]) {
            r->uniq_owner[u] = -1;
            r->n_local++;
            continue;
        }
        if (column) {
            r->uniq_owner[u] = -2;
            r->uniq_ref[u] = n_remote++;
        } else {
            int s = us_placement_shard(t->table_id, r->uniq_rows[u] >> t->block_bits,
                                       t->placement_seed, n_shards);
            r->uniq_owner[u] = s;
            r->uniq_ref[u] = r->shard_rows[s]++;
        }
    }
    if (column)
        for (int s = 0; s < n_shards; s++)
            r->shard_rows[s] = n_remote;

    /* tokens per shard: a token counts once for each shard it asks; pass 0
     * counts, pass 1 fills the token maps */
    for (int pass = 0; pass < 2; pass++) {
        for (int s = 0; s < n_shards; s++)
            r->shard_last[s] = UINT32_MAX;
        if (pass == 1) {
            r->tok_off[0] = 0;
            for (int s = 0; s < n_shards; s++)
                r->tok_off[s + 1] = r->tok_off[s] + r->shard_tokens[s];
            uint64_t tok_total = r->tok_off[n_shards];
            if (tok_total > r->tok_cap) {
                if ((rc = grow(&r->tok_map, tok_total, sizeof *r->tok_map, err, "tokens")))
                    return rc;
                r->tok_cap = tok_total;
            }
            memset(r->shard_tokens, 0, (size_t)n_shards * sizeof(uint32_t));
            memset(r->shard_pairs, 0, (size_t)n_shards * sizeof(uint32_t));
        }
        for (uint32_t tok = 0; tok < r->n_tokens; tok++) {
            for (uint32_t i = 0; i < r->k; i++) {
                int32_t o = r->uniq_owner[r->pair_uidx[(uint64_t)tok * r->k + i]];
                if (o == -1)
                    continue;
                int lo = o >= 0 ? o : 0, hi = o >= 0 ? o + 1 : n_shards;
                for (int s = lo; s < hi; s++) {
                    if (r->shard_last[s] != tok) {
                        r->shard_last[s] = tok;
                        if (pass == 1)
                            r->tok_map[r->tok_off[s] + r->shard_tokens[s]] = tok;
                        r->shard_tokens[s]++;
                    }
                    r->shard_pairs[s]++;
                }
            }
        }
    }
    return US_OK;
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

/* Shards that receive unique row u: its owner, or all of them (-2, column
 * placement); none for a row the coordinator holds (-1). */
static void row_targets(const us_route *r, uint32_t u, int *lo, int *hi)
{
    int32_t o = r->uniq_owner[u];
    *lo = o >= 0 ? o : 0;
    *hi = o == -1 ? 0 : o >= 0 ? o + 1 : r->n_shards;
}

/* Pass 2: the unique rows of every request, then (PUSH) its pairs in token
 * order with shard-local token numbers. req[s] views the laid-out requests. */
static void fill_requests(const us_route *r, const us_route_request *q, us_wire_req *req,
                          uint32_t *n_tok)
{
    for (uint32_t u = 0; u < r->n_unique; u++) {
        int lo, hi;
        row_targets(r, u, &lo, &hi);
        for (int s = lo; s < hi; s++)
            if (req[s].hdr->n_rows > 0)
                ((uint64_t *)req[s].rows)[r->uniq_ref[u]] = r->uniq_rows[u];
    }
    for (uint32_t tok = 0; q->mode == US_WIRE_PUSH && tok < r->n_tokens; tok++) {
        for (uint32_t i = 0; i < r->k; i++) {
            uint64_t p = (uint64_t)tok * r->k + i;
            uint32_t u = r->pair_uidx[p];
            int lo, hi;
            row_targets(r, u, &lo, &hi);
            for (int s = lo; s < hi; s++) {
                if (r->shard_last[s] != tok) {
                    r->shard_last[s] = tok;
                    n_tok[s]++;
                }
                uint32_t c = r->shard_cursor[s]++;
                ((uint32_t *)req[s].pair_token)[c] = n_tok[s] - 1;
                ((uint32_t *)req[s].pair_ref)[c] = r->uniq_ref[u];
                ((float *)req[s].pair_weight)[c] = q->weights[p];
                if (req[s].pair_group)
                    ((uint8_t *)req[s].pair_group)[c] = q->groups[p];
            }
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
    us_wire_req *req = calloc((size_t)(unsigned)S, sizeof *req);
    uint32_t *n_tok = calloc((size_t)(unsigned)S, sizeof *n_tok);   /* local token count */
    if (req == NULL || n_tok == NULL) {
        free(req);
        free(n_tok);
        return us_err_set(err, US_ENOMEM, "route: encode cursors for %d shards", S);
    }
    for (int s = 0; s < S; s++) {
        us_wire_req_hdr *h = (us_wire_req_hdr *)(out->data + off[s]);
        us_wire_req_desc d = { .mode = h->mode, .flags = h->flags, .table_id = h->table_id,
                               .batch_id = h->batch_id, .n_tokens = h->n_tokens,
                               .n_rows = h->n_rows, .n_pairs = h->n_pairs,
                               .n_groups = h->n_groups };
        us_wire_req_init(h, len[s], &d, &req[s], NULL);
        r->shard_last[s] = UINT32_MAX;
        r->shard_cursor[s] = 0;
    }
    fill_requests(r, q, req, n_tok);
    free(req);
    free(n_tok);
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
    free(r->shard_cursor);
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
