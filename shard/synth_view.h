/*
 * synth_view.h — one shard's part of a synthetic table, materialised in RAM.
 *
 * Synthetic tables (shard/synthetic.h) have no bytes to point to, but the
 * gather kernel and one-sided reads need real rows. This builds a
 * us_rows_view holding exactly what one shard would serve:
 *   row placement     the blocks placement assigns to this shard (others NULL)
 *   column placement  every block, with only this shard's column slice
 *   whole table       shard_index = -1: every block, every column (the
 *                     single-process reference)
 * Values equal us_synth_row() (int8 scales are those of the full row, so a
 * column slice dequantises exactly like the whole row). One allocation per
 * held block, each 64-byte aligned; the view's row stride is the packed row
 * size. The synth_view owns everything; the view is valid until freed.
 */
#ifndef US_SYNTH_VIEW_H
#define US_SYNTH_VIEW_H

#include <stdbool.h>
#include <stdint.h>

#include "kernels/rows_view.h"
#include "kernels/us_status.h"

typedef struct us_synth_spec {
    us_dtype dtype;
    uint64_t synth_seed;
    uint32_t table_id;
    uint64_t rows;
    uint32_t dim;
    uint32_t block_bits;
    uint64_t placement_seed;
    bool     column;          /* column placement */
    int      n_shards;
    int      shard_index;     /* -1 = the whole table */
} us_synth_spec;

typedef struct us_synth_view {
    us_rows_view view;
    uint8_t **blocks;         /* owned, [n_blocks] */
    float   **scales;         /* owned, [n_blocks] (int8) */
    uint64_t  held_blocks;
    uint64_t  bytes;          /* memory held by rows and scales */
} us_synth_view;

/* Builds the view. US_EINVAL for bad shapes (dim 0, column placement with
 * dim < n_shards, shard out of range), US_ENOMEM.
 * Returns: US_OK; US_EINVAL for bad shapes; US_ENOMEM.
 */
int us_synth_view_build(us_synth_view *sv, const us_synth_spec *spec, us_err *err);
/* Returns: nothing; safe on a zeroed view. */
void us_synth_view_free(us_synth_view *sv);

#endif
