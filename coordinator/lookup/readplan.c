/* readplan.c — coalesced one-sided reads (see readplan.h). */
#include "coordinator/lookup/readplan.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

typedef struct keyed {
    uint64_t key;   /* owner << 48 | row */
    uint64_t index;
} keyed;

static int cmp_keyed(const void *a, const void *b)
{
    uint64_t x = ((const keyed *)a)->key, y = ((const keyed *)b)->key;
    return (x > y) - (x < y);
}

/* Grows the per-row arrays to n rows (kept between batches). */
static int reserve_rows(us_read_plan *p, uint64_t n, us_err *err)
{
    if (n <= p->cap)
        return US_OK;
    keyed *o = realloc(p->order, n * sizeof *o);
    if (o) p->order = o;
    uint64_t *ro = realloc(p->row_off, n * sizeof *ro);
    if (ro) p->row_off = ro;
    uint64_t *rs = realloc(p->row_span, n * sizeof *rs);
    if (rs) p->row_span = rs;
    if (!o || !ro || !rs)
        return us_err_set(err, US_ENOMEM, "read plan: %" PRIu64 " rows", n);
    p->cap = n;
    return US_OK;
}

/* Cuts the m sorted (shard, row) keys in p->order into spans: rows of one
 * shard and block whose gaps cost at most gap_bytes share one read. */
static void build_spans(us_read_plan *p, const us_read_plan_input *in, uint64_t m)
{
    const keyed *order = p->order;
    const uint64_t *stride = in->stride;
    const uint64_t row_bytes = in->row_bytes, gap_bytes = in->gap_bytes;
    const uint32_t block_bits = in->block_bits;
    uint64_t mask = (1ull << block_bits) - 1, off = 0, n_spans = 0, total = 0;
    for (uint64_t a = 0; a < m;) {
        int s = (int)(order[a].key >> 48);
        uint64_t row = order[a].key & ((1ull << 48) - 1);
        uint64_t block = row >> block_bits, st = stride[s];
        uint64_t b = a + 1, last = row;
        while (b < m && (int)(order[b].key >> 48) == s) {
            uint64_t next = order[b].key & ((1ull << 48) - 1);
            if (next >> block_bits != block || (next - last - 1) * st > gap_bytes)
                break;
            last = next;
            b++;
        }
        us_read_span *sp = &p->spans[n_spans];
        sp->shard = s;
        sp->block = block;
        sp->first = row & mask;
        sp->n_rows = last - row + 1;
        sp->bytes = (sp->n_rows - 1) * st + row_bytes;
        sp->dst_off = off;
        for (uint64_t i = a; i < b; i++) {
            uint64_t r = order[i].key & ((1ull << 48) - 1);
            p->row_off[order[i].index] = off + (r - row) * st;
            p->row_span[order[i].index] = n_spans;
        }
        off = (off + sp->bytes + 7u) & ~(uint64_t)7u;
        total += sp->bytes;
        n_spans++;
        a = b;
    }
    p->n_spans = n_spans;
    p->landing_bytes = off;
    p->bytes_read = total;
}

int us_read_plan_build(us_read_plan *p, const us_read_plan_input *in, us_err *err)
{
    const uint64_t *rows = in->rows, *stride = in->stride;
    const int32_t *owner = in->owner;
    const bool *skip = in->skip;
    const uint64_t n = in->n, row_bytes = in->row_bytes;
    const uint32_t block_bits = in->block_bits;
    const int n_shards = in->n_shards;
    if (n_shards < 1 || n_shards > 65535 || block_bits > 40)
        return us_err_set(err, US_EINVAL, "read plan: %d shards, block_bits %u", n_shards,
                          block_bits);
    for (int s = 0; s < n_shards; s++)
        if (stride[s] < row_bytes)
            return us_err_set(err, US_EINVAL, "read plan: shard %d row stride %" PRIu64
                              " < %" PRIu64 " bytes per row", s, stride[s], row_bytes);
    int rc = reserve_rows(p, n, err);
    if (rc != US_OK)
        return rc;
    keyed *order = p->order;
    uint64_t m = 0;
    for (uint64_t i = 0; i < n; i++) {
        p->row_off[i] = UINT64_MAX;
        p->row_span[i] = UINT64_MAX;
        if (skip && skip[i])
            continue;
        if (owner[i] < 0 || owner[i] >= n_shards || rows[i] >> 48)
            return us_err_set(err, US_EINVAL, "read plan: row %" PRIu64 " owner %d out of "
                              "range", rows[i], owner[i]);
        order[m++] = (keyed){ ((uint64_t)owner[i] << 48) | rows[i], i };
    }
    qsort(order, m, sizeof *order, cmp_keyed);
    /* at most m spans */
    if (m > p->span_cap) {
        us_read_span *sp = realloc(p->spans, m * sizeof *sp);
        if (sp == NULL)
            return us_err_set(err, US_ENOMEM, "read plan: %" PRIu64 " spans", m);
        p->spans = sp;
        p->span_cap = m;
    }
    build_spans(p, in, m);
    return US_OK;
}

void us_read_plan_free(us_read_plan *p)
{
    free(p->spans);
    free(p->row_off);
    free(p->row_span);
    free(p->order);
    memset(p, 0, sizeof *p);
}
