/* pull.c — the pull half of a lookup round (see pull.h). */
#include "coordinator/lookup/pull.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/gather.h"

/* The read of `bytes` of row's bytes on shard s (from the row's start). */
static us_rma_op row_op(const us_pull_ctx *c, int s, uint64_t row, uint64_t bytes)
{
    uint64_t bits = c->table->block_bits;
    int rank = us_world_shard_rank(c->world, s);
    return (us_rma_op){ .rank = rank, .block_id = row >> bits,
                        .offset = (row & ((1ull << bits) - 1)) * c->t->rma_row_stride[rank],
                        .bytes = bytes };
}

/* The read of row's int8 scale on shard s. */
static us_rma_op scale_op(const us_pull_ctx *c, int s, uint64_t row)
{
    uint64_t bits = c->table->block_bits;
    return (us_rma_op){ .rank = us_world_shard_rank(c->world, s), .scales = true,
                        .block_id = row >> bits, .offset = (row & ((1ull << bits) - 1)) * 4,
                        .bytes = 4 };
}

/* Row placement where the transport maps the shards' memory here: point at
 * every remote row (and int8 scale) in place: no plan, no copy. Shards map
 * whole regions, so either all rows of a round are mapped or the caller
 * reads them all. Returns: true when every remote row was pointed at. */
static bool point_at_mapped(const us_pull_ctx *c)
{
    const us_route *r = c->route;
    for (uint32_t u = 0; u < r->n_unique; u++) {
        if (c->local[u])
            continue;
        uint64_t row = r->uniq_rows[u];
        us_rma_op op = row_op(c, r->uniq_owner[u], row, c->row_bytes);
        if ((c->row_ptr[u] = us_transport_rma_direct(c->t, &op)) == NULL)
            return false;
        op = scale_op(c, r->uniq_owner[u], row);
        if (c->int8 && (c->scale_ptr[u] = us_transport_rma_direct(c->t, &op)) == NULL)
            return false;
    }
    return true;
}

/* Coordinator, one-sided pull with row placement: rows in place where the
 * shards' memory is mapped here, else coalesced spans
 * (coordinator/lookup/readplan.h) used in place in the landing buffer. */
static int rma_fetch_spans(const us_pull_ctx *c, us_err *err)
{
    if (point_at_mapped(c))
        return US_OK;
    const us_route *r = c->route;
    const us_table_info *t = c->table;
    const us_world *w = c->world;
    uint64_t *stride = malloc((size_t)w->n_shards * sizeof *stride);
    if (stride == NULL)
        return us_err_set(err, US_ENOMEM, "lookup: stride table");
    for (int s = 0; s < w->n_shards; s++)
        stride[s] = c->t->rma_row_stride[us_world_shard_rank(w, s)];
    uint64_t gap = c->t->rma_span_exact ? 0
                 : (uint64_t)(c->cost->read_us * c->cost->bytes_per_us);
    us_read_plan_input in = { .rows = r->uniq_rows, .owner = r->uniq_owner, .skip = c->local,
                              .n = r->n_unique, .block_bits = t->block_bits,
                              .n_shards = w->n_shards, .stride = stride,
                              .row_bytes = c->row_bytes, .gap_bytes = gap };
    int rc = us_read_plan_build(c->plan, &in, err);
    free(stride);
    if (rc != US_OK)
        return rc;
    const us_read_plan *p = c->plan;
    uint64_t scale_bytes = 0;   /* scales first (4-aligned), then the spans */
    for (uint64_t i = 0; c->int8 && i < p->n_spans; i++)
        scale_bytes += p->spans[i].n_rows * 4;
    scale_bytes = us_wire_pad8(scale_bytes);
    uint8_t *land;
    if ((rc = us_transport_rma_buffer(c->t, scale_bytes + p->landing_bytes, (void **)&land,
                                      err)) != US_OK)
        return rc;
    uint64_t n_ops = p->n_spans * (c->int8 ? 2u : 1u);
    us_rma_op *ops = malloc(n_ops * sizeof *ops);
    uint64_t *scale_off = malloc((p->n_spans + 1) * sizeof *scale_off);
    if (ops == NULL || scale_off == NULL) {
        free(ops);
        free(scale_off);
        return us_err_set(err, US_ENOMEM, "lookup: %" PRIu64 " read descriptors", n_ops);
    }
    uint8_t *rows_at = land + scale_bytes;
    uint64_t n = 0, so = 0;
    for (uint64_t i = 0; i < p->n_spans; i++) {
        const us_read_span *sp = &p->spans[i];
        int rank = us_world_shard_rank(w, sp->shard);
        ops[n++] = (us_rma_op){ .rank = rank, .block_id = sp->block,
                                .offset = sp->first * c->t->rma_row_stride[rank],
                                .bytes = sp->bytes, .dst = rows_at + sp->dst_off };
        scale_off[i] = so;
        if (c->int8) {
            ops[n++] = (us_rma_op){ .rank = rank, .scales = true, .block_id = sp->block,
                                    .offset = sp->first * 4, .bytes = sp->n_rows * 4,
                                    .dst = land + so };
            so += sp->n_rows * 4;
        }
    }
    for (uint32_t u = 0; u < r->n_unique; u++) {
        if (c->local[u])
            continue;
        const us_read_span *sp = &p->spans[p->row_span[u]];
        c->row_ptr[u] = rows_at + p->row_off[u];
        uint64_t in_span = (r->uniq_rows[u] & ((1ull << t->block_bits) - 1)) - sp->first;
        c->scale_ptr[u] = (const float *)(land + scale_off[p->row_span[u]]) + in_span;
    }
    rc = us_transport_rma_read(c->t, n, ops, err);
    free(ops);
    free(scale_off);
    return rc;
}

/* Column placement where every shard's slice of every remote row is mapped
 * here: slice pointers in place, no copy. Returns: true when all were. */
static bool point_at_mapped_slices(const us_pull_ctx *c)
{
    const us_route *r = c->route;
    const us_table_info *t = c->table;
    int S = c->world->n_shards;
    uint64_t n = r->n_unique;
    size_t elem = us_dtype_size(t->dtype);
    if ((uint64_t)S * n > *c->slice_cap) {
        const uint8_t **p = realloc(*c->slice_ptr, (size_t)S * n * sizeof *p);
        if (p == NULL)
            return false;
        *c->slice_ptr = p;
        *c->slice_cap = (uint64_t)S * n;
    }
    const uint8_t **sp = *c->slice_ptr;
    for (uint32_t u = 0; u < n; u++) {
        uint64_t row = r->uniq_rows[u];
        for (int s = 0; s < S; s++) {
            uint32_t begin, cols;
            us_column_slice(t->dim, S, s, &begin, &cols);
            us_rma_op op = row_op(c, s, row, (uint64_t)cols * elem);
            sp[(size_t)s * n + u] = c->local[u] ? c->row_ptr[u] + (size_t)begin * elem
                                                : us_transport_rma_direct(c->t, &op);
            if (sp[(size_t)s * n + u] == NULL)
                return false;
        }
        us_rma_op op = scale_op(c, 0, row);   /* full-row scales, read from shard 0 */
        if (c->int8 && !c->local[u] &&
            (c->scale_ptr[u] = us_transport_rma_direct(c->t, &op)) == NULL)
            return false;
    }
    return true;
}

int us_pull_sum_slices(const us_pull_ctx *c, float *out, float *partial, const uint64_t *rows,
                       const float *weights, const uint8_t *groups, uint32_t n_tokens,
                       uint32_t k, uint32_t n_groups, int n_threads, us_err *err)
{
    const us_table_info *t = c->table;
    int S = c->world->n_shards;
    uint64_t n = c->route->n_unique;
    size_t elem = us_dtype_size(t->dtype);
    uint32_t G = n_groups > 1 ? n_groups : 1;
    for (int s = 0; s < S; s++) {
        uint32_t begin, cols;
        us_column_slice(t->dim, S, s, &begin, &cols);
        us_rows_view v = {
            .dtype = t->dtype, .dim = cols, .block_bits = 0, .row_stride_bytes = cols * elem,
            .rows = n, .n_blocks = n, .blocks = *c->slice_ptr + (size_t)s * n,
            .block_scales = c->int8 ? c->scale_ptr : NULL,
        };
        int rc = G == 1
            ? us_gather_sum(partial, &v, rows, weights, n_tokens, k, n_threads, err)
            : us_gather_sum_grouped(partial, &v, rows, weights, groups, n_tokens, k, (int)G,
                                    n_threads, err);
        if (rc != US_OK)
            return rc;
        for (uint64_t tg = 0; tg < (uint64_t)n_tokens * G; tg++)
            memcpy(out + tg * t->dim + begin, partial + tg * cols, cols * sizeof *out);
    }
    return US_OK;
}

/* Coordinator, one-sided pull. Row placement: rma_fetch_spans. Column
 * placement: slice pointers in place when every shard is mapped here, else
 * one read per row and shard into the landing buffer, slices assembled. */
int us_pull_rma(const us_pull_ctx *c, us_err *err)
{
    const us_route *r = c->route;
    const us_table_info *t = c->table;
    uint64_t remote = r->n_unique - r->n_local;
    *c->sliced = false;
    if (remote == 0)
        return US_OK;
    bool column = t->placement == US_PLACE_COLUMN;
    if (!column)
        return rma_fetch_spans(c, err);
    if (c->t->rma_mapped && point_at_mapped_slices(c)) {
        *c->sliced = true;
        return US_OK;
    }
    int S = c->world->n_shards;
    uint64_t n_ops = remote * (uint64_t)S + (c->int8 ? remote : 0);
    uint8_t *land;
    /* scales first so they stay 4-aligned whatever the row size */
    uint64_t scale_bytes = us_wire_pad8((uint64_t)r->n_unique * 4);
    int rc = us_transport_rma_buffer(c->t, scale_bytes + r->n_unique * c->row_bytes,
                                     (void **)&land, err);
    if (rc != US_OK)
        return rc;
    us_rma_op *ops = malloc(n_ops * sizeof *ops);
    if (ops == NULL)
        return us_err_set(err, US_ENOMEM, "lookup: %" PRIu64 " read descriptors", n_ops);
    float *land_scales = (float *)land;
    land += scale_bytes;
    uint64_t n = 0;
    size_t elem = us_dtype_size(t->dtype);
    for (uint32_t u = 0; u < r->n_unique; u++) {
        if (c->local[u])
            continue;
        uint64_t row = r->uniq_rows[u];
        for (int s = 0; s < S; s++) {
            uint32_t begin, cols;
            us_column_slice(t->dim, S, s, &begin, &cols);
            ops[n] = row_op(c, s, row, (uint64_t)cols * elem);
            ops[n++].dst = land + u * c->row_bytes + (uint64_t)begin * elem;
        }
        if (c->int8) {
            ops[n] = scale_op(c, 0, row);
            ops[n++].dst = &land_scales[u];
        }
        c->row_ptr[u] = land + u * c->row_bytes;
        c->scale_ptr[u] = &land_scales[u];
    }
    rc = us_transport_rma_read(c->t, n, ops, err);
    free(ops);
    return rc;
}

/* Pull over ROWS messages: point at (row placement) or assemble (column
 * placement) each fetched row. */
int us_pull_place_rows(const us_pull_ctx *c, const us_wire_resp *resp, us_err *err)
{
    const us_route *r = c->route;
    const us_table_info *t = c->table;
    int S = c->world->n_shards;
    size_t elem = us_dtype_size(t->dtype);
    if (t->placement == US_PLACE_ROW) {
        for (uint32_t u = 0; u < r->n_unique; u++) {
            if (c->local[u])
                continue;
            const us_wire_resp *a = &resp[r->uniq_owner[u]];
            c->row_ptr[u] = a->row_bytes + (uint64_t)r->uniq_ref[u] * c->row_bytes;
            c->scale_ptr[u] = a->row_scales ? &a->row_scales[r->uniq_ref[u]] : NULL;
        }
        return US_OK;
    }
    uint64_t scale_bytes = us_wire_pad8((uint64_t)r->n_unique * 4);   /* scales first: aligned */
    uint64_t need = scale_bytes + (uint64_t)r->n_unique * c->row_bytes;
    if (need > *c->staging_cap) {
        uint8_t *p = realloc(*c->staging, need);
        if (p == NULL)
            return us_err_set(err, US_ENOMEM, "lookup: staging of %" PRIu64 " bytes", need);
        *c->staging = p;
        *c->staging_cap = need;
    }
    float *scales = (float *)*c->staging;
    uint8_t *rows_at = *c->staging + scale_bytes;
    for (int s = 0; s < S; s++) {
        uint32_t begin, cols;
        us_column_slice(t->dim, S, s, &begin, &cols);
        for (uint32_t u = 0; u < r->n_unique; u++) {
            if (c->local[u])
                continue;
            memcpy(rows_at + u * c->row_bytes + (uint64_t)begin * elem,
                   resp[s].row_bytes + (uint64_t)r->uniq_ref[u] * cols * elem,
                   (size_t)cols * elem);
            if (s == 0 && resp[s].row_scales)
                scales[u] = resp[s].row_scales[r->uniq_ref[u]];
        }
    }
    for (uint32_t u = 0; u < r->n_unique; u++) {
        if (c->local[u])
            continue;
        c->row_ptr[u] = rows_at + u * c->row_bytes;
        c->scale_ptr[u] = &scales[u];
    }
    return US_OK;
}

