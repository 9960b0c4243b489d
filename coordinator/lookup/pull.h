/*
 * pull.h — the pull half of a lookup round: bring each wanted row to the
 * coordinator, then the coordinator sums (coordinator/lookup/lookup.h).
 *
 *   us_pull_rma         one-sided: row placement points at the rows in place
 *                       when the transport maps the shards' memory here
 *                       (us_transport_rma_direct: fabric on shm with shared
 *                       regions), else reads coalesced spans of a
 *                       shard's block (coordinator/lookup/readplan.h; only
 *                       adjacent rows when the transport sets rma_span_exact)
 *                       and uses the rows in place in the transport's landing
 *                       buffer;
 *                       column placement points at each row's slice on
 *                       every shard when all are mapped here (summed slice
 *                       by slice, us_pull_sum_slices), else reads each slice
 *                       into one assembled row.
 *   us_pull_place_rows  after ROWS messages: row placement points at rows
 *                       inside the shards' responses (no copy); column
 *                       placement assembles slices into the staging buffer.
 * Either way row_ptr[u] / scale_ptr[u] (int8) are set for every unique row
 * u not already held locally (local[u]); they stay valid until the next
 * round's fetch or exchange.
 */
#ifndef US_PULL_H
#define US_PULL_H

#include <stdbool.h>
#include <stdint.h>

#include "coordinator/lookup/readplan.h"
#include "coordinator/lookup/route.h"
#include "kernels/us_status.h"
#include "proto/transport.h"
#include "proto/wire.h"
#include "proto/world.h"

typedef struct us_pull_ctx {
    const us_world *world;
    us_transport *t;
    const us_table_info *table;
    const us_route *route;
    const bool *local;            /* [n_unique] rows the coordinator holds */
    uint64_t row_bytes;           /* full row, element bytes */
    bool int8;
    const us_cost_params *cost;   /* read cost decides span coalescing */
    const uint8_t **row_ptr;      /* out: [n_unique] */
    const float **scale_ptr;      /* out: [n_unique] (int8) */
    us_read_plan *plan;           /* scratch, owned by the caller */
    uint8_t **staging;            /* scratch buffer, owned by the caller */
    uint64_t *staging_cap;
    /* column placement, shards' memory mapped here: slice_ptr[s * n_unique
     * + u] = row u's slice on shard s, in place (cached rows: into the
     * cached row); *sliced says the round used them instead of row_ptr */
    const uint8_t ***slice_ptr;   /* scratch, [n_shards * n_unique], caller's */
    uint64_t *slice_cap;
    bool *sliced;                 /* out */
} us_pull_ctx;

/* One-sided reads of every remote row (transport after rma_expose); with
 * column placement and every slice mapped here, slice pointers instead
 * (*c->sliced; rows are then summed slice by slice, us_pull_sum_slices).
 * Returns: US_OK; US_EINVAL from the read plan; US_ENOMEM; the transport's
 * error for a failed read (US_EFABRIC, US_EUNSUPP). */
int us_pull_rma(const us_pull_ctx *c, us_err *err);

/* Column placement after a sliced us_pull_rma: out[t][g][begin_s + j] =
 * the batch's weighted sum of shard s's slices (the same pair order, so
 * the same bits as summing assembled rows). partial is scratch of
 * n_tokens * n_groups * (largest slice) floats.
 * Returns: US_OK, or the gather's error. */
int us_pull_sum_slices(const us_pull_ctx *c, float *out, float *partial, const uint64_t *rows,
                       const float *weights, const uint8_t *groups, uint32_t n_tokens,
                       uint32_t k, uint32_t n_groups, int n_threads, us_err *err);

/* Rows from ROWS responses resp[0..n_shards-1] (already validated).
 * Returns: US_OK, or US_ENOMEM for the staging buffer. */
int us_pull_place_rows(const us_pull_ctx *c, const us_wire_resp *resp, us_err *err);

#endif
